"""The U-Net paper's border weight map: ``tfseg train --border-weight W0,SIGMA`` (paper: ``10,5``).

Ronneberger et al. (2015) weigh each pixel ``x`` of the cross-entropy by::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

where ``d1`` and ``d2`` are the distances (in pixels) to the nearest and the second nearest object,
so the narrow background gaps between touching objects weigh most and the network learns to keep
them open. Here, per training mask (:func:`border_weight_map`):

* the objects are the connected components (8-connected, the clean-up's rule:
  :func:`tfseg.postprocess.components`) of each foreground class: of the
  foreground for binary masks, of every class id ``1..C-1`` for class-id masks (the
  ``ignore_class`` value is no object);
* ``d_k(x)`` is the Euclidean distance from ``x`` to object ``k`` (``scipy.ndimage
  .distance_transform_edt``), and the term is added on background pixels only (inside an object
  ``d1 = 0``); an image with fewer than two objects gets no term;
* the map is ``1 + w0 * exp(...)``: the class part ``w_c`` is ``--class-weights``, which the
  loss applies itself (:mod:`tfseg.balance`), so combined the cross-entropy weighs a pixel by
  ``w_c(x) * (1 + w0 * exp(...))`` — the paper's sum when ``w_c = 1``.

The map reaches the loss as ``model.fit``'s per-pixel ``sample_weight`` (the training dataset
yields ``(image, mask, weights [H, W, 1])``, :func:`with_border_weights`); every tfseg loss takes
it (:mod:`tfseg.losses`: the cross-entropy weighs its pixels, the Dice-type terms their soft
counts). Metrics and validation are not weighted.

Cost: connected components and one distance transform per object, over the object's box grown by
the distance beyond which the term is below float32's resolution (``6.2 sigma`` for ``w0 = 10``), in
NumPy/SciPy through ``tf.numpy_function`` (TensorFlow has neither operation) after augmentation,
for every training sample and epoch; docs/imbalance.md has the measured time per mask.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from tfseg.errors import ConfigError

#: The U-Net paper's values (w0, sigma in pixels).
PAPER = (10.0, 5.0)


def parse_border_weight(value: Union[None, str, Sequence[float]]) -> Optional[Tuple[float, float]]:
    """``None`` or ``(w0, sigma)`` from ``"w0,sigma"`` (or a pair): ``w0 >= 0`` and ``sigma > 0``, finite.

    Raises:
        ConfigError: naming the value (``border_weight '10': expected W0,SIGMA ...``).

    Example:
        >>> parse_border_weight("10,5")
        (10.0, 5.0)
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    try:
        pair = tuple(float(item) for item in items)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or pair[0] < 0 or pair[1] <= 0:
        raise ConfigError(f"border_weight {value!r}: expected W0,SIGMA (a weight >= 0 and a distance in pixels "
                          f"> 0; the U-Net paper uses {PAPER[0]:g},{PAPER[1]:g})")
    return pair


def objects(mask, num_classes: int = 1, ignore_class: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """``(labels [H, W] int32, count)``: the components (:func:`tfseg.postprocess.components`) of each foreground
    class, numbered 1..count.

    ``mask``: ``[H, W]`` or ``[H, W, 1]``; binary (``num_classes == 1``) {0, 1}, foreground ``> 0.5``;
    or class ids, where every id but 0 and ``ignore_class`` is a foreground class.
    """
    from tfseg.postprocess import components

    mask = np.asarray(mask)
    mask = mask.reshape(mask.shape[:2])
    labels = np.zeros(mask.shape, np.int32)
    count = 0
    classes = [None] if num_classes == 1 else [c for c in np.unique(mask) if c != 0 and c != ignore_class]
    for value in classes:
        members = mask > 0.5 if value is None else mask == value
        found, n = components(members)
        labels[found > 0] = found[found > 0] + count
        count += n
    return labels, count


def border_weight_map(mask, w0: float = PAPER[0], sigma: float = PAPER[1], num_classes: int = 1,
                      ignore_class: Optional[int] = None) -> np.ndarray:
    """``1 + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on background pixels, 1 elsewhere (module docstring).

    Args:
        mask: ``[H, W]`` or ``[H, W, 1]`` training mask (binary {0, 1} or class ids).
        w0, sigma: the paper's weight and distance (pixels).
        num_classes: 1 for binary masks, else the class count.
        ignore_class: a mask value that is neither object nor background (weight 1; the loss drops it).

    Returns:
        float32 ``[H, W]``.

    Example:
        >>> mask = np.zeros((1, 7)); mask[0, :3] = mask[0, 4:] = 1      # two objects, a 1 px gap
        >>> weights = border_weight_map(mask, 10, 5)   # the gap: d1 = d2 = 1, 1 + 10 exp(-4 / 50)
        >>> round(float(weights[0, 3]), 2), float(weights[0, 0])
        (10.23, 1.0)
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    labels, count = objects(mask, num_classes, ignore_class)
    weights = np.ones(labels.shape, np.float32)
    if count < 2 or w0 == 0:
        return weights
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    reach = _reach(w0, sigma)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        # Only pixels within `reach` of object k can get a term that float32 keeps: its box grown by it.
        window = tuple(slice(max(side.start - reach, 0), min(side.stop + reach, size))
                       for side, size in zip(box, labels.shape))
        d = ndimage.distance_transform_edt(labels[window] != k)
        d1_here, d2_here = d1[window], d2[window]
        d2[window] = np.minimum(d2_here, np.maximum(d1_here, d))
        d1[window] = np.minimum(d1_here, d)
    flat = mask.reshape(labels.shape)
    background = (flat <= 0.5) if num_classes == 1 else (flat == 0)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma * sigma))
    weights[background] += term[background].astype(np.float32)
    return weights


def _reach(w0: float, sigma: float) -> int:
    """The distance ``D`` (pixels, rounded up) beyond which ``w0 exp(-D**2 / 2 sigma**2) < 2**-25``: a term
    that small added to 1 rounds to 1 in float32, so distances to objects further than ``D`` change nothing."""
    return int(math.ceil(sigma * math.sqrt(2.0 * max(math.log(w0 / 2.0**-25), 0.0)))) + 1


def with_border_weights(ds, border_weight, num_classes: int = 1, ignore_class: Optional[int] = None):
    """``ds`` of ``(image, mask)`` -> ``(image, mask, weights float32 [H, W, 1])``: :func:`border_weight_map`
    of each mask (``border_weight``: ``(w0, sigma)`` or ``"w0,sigma"``), ``model.fit``'s per-pixel sample weight."""
    import tensorflow as tf

    w0, sigma = parse_border_weight(border_weight)

    def weighted(image, mask):
        weights = tf.numpy_function(
            lambda m: border_weight_map(m, w0, sigma, num_classes, ignore_class), [mask], tf.float32, stateful=False)
        weights = tf.reshape(weights, tf.shape(mask)[:2])[..., None]
        weights.set_shape(mask.shape[:2].concatenate([1]))
        return image, mask, weights

    return ds.map(weighted, num_parallel_calls=tf.data.AUTOTUNE)


def describe(border_weight) -> str:
    """One line: ``border weights (U-Net paper's map): w0 10, sigma 5 px, on the gaps between objects``."""
    w0, sigma = parse_border_weight(border_weight)
    return f"border weights (U-Net paper's map): w0 {w0:g}, sigma {sigma:g} px, on the gaps between objects"
