"""Class weights for imbalanced data: ``--class-weights auto`` or ``--class-weights w0,w1,...``.

``auto`` is median-frequency balancing (Eigen & Fergus 2015, the weighting SegNet trains with),
measured on the training split only::

    f_c = pixels of class c / pixels of every class      (over the training split's masks)
    w_c = median(f) / f_c                                (median over the classes present)
    w_c clipped to [1 / MAX_WEIGHT, MAX_WEIGHT]

so the class of median frequency weighs 1, a class ten times rarer 10 and a class ten times
more frequent (the background, usually) 0.1; the clip keeps a class of a few pixels from
dominating the loss. ``f_c`` is over all pixels of the split (SegNet's variant divides by the
pixels of the images holding ``c`` only). A class absent from the training split weighs 1; the
``ignore_class`` value counts nowhere. The counts are those ``tfseg inspect`` reports as the class
balance (:func:`tfseg.data.inspect.class_pixels`).

The weights go to the loss's own ``class_weights`` (:mod:`tfseg.losses`): the cross-entropy
weighs each pixel by its true class, the Dice/Tversky terms weigh the class mean. One class
(binary masks): ``[background, foreground]``, taken by ``--loss bce`` only (the Dice-type losses
already score the foreground alone).

Example:
    >>> median_frequency_weights([900, 90, 10])
    [0.1, 1.0, 9.0]
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from tfseg.errors import ConfigError

AUTO = "auto"
MAX_WEIGHT = 50.0
RULE = "median frequency"
# Losses that take class weights: with one class only the cross-entropy (binary [background, foreground]).
BINARY_WEIGHTED_LOSSES = ("bce",)
UNWEIGHTED_LOSSES = ("focal",)


def parse_class_weights(value) -> Union[None, str, List[float]]:
    """``None``, ``"auto"`` or a list of non-negative floats (not all 0) from ``"w0,w1,..."`` or a sequence.

    Raises:
        ConfigError: naming the value (``class_weights '1,x': ...``).
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    items = value.split(",") if isinstance(value, str) else value
    try:
        weights = [float(item) for item in items]
    except (TypeError, ValueError):
        weights = []
    if len(weights) < 2 or not all(np.isfinite(weights)) or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"class_weights {value!r}: expected auto or w0,w1,... (one non-negative number per "
                          "class, background first, not all 0)")
    return weights


def check_class_weights_loss(value, loss: str, num_classes: int) -> None:
    """Raise :class:`ConfigError` when ``loss`` cannot take class weights for ``num_classes``."""
    if parse_class_weights(value) is None:
        return
    if loss in UNWEIGHTED_LOSSES:
        raise ConfigError(f"class_weights {value!r}: loss {loss!r} takes no class weights (its alpha and gamma "
                          "already weigh the rare pixels); use cce_dice, dice, tversky or bce")
    if num_classes == 1 and loss not in BINARY_WEIGHTED_LOSSES:
        raise ConfigError(f"class_weights {value!r}: with one class (binary masks) only loss 'bce' takes class "
                          f"weights [background, foreground], not {loss!r} (whose Dice term already scores the "
                          "foreground alone)")


def median_frequency_weights(pixels: Sequence[int], max_weight: float = MAX_WEIGHT) -> List[float]:
    """``w_c = median(f) / f_c`` from pixel counts per class, clipped (module docstring); rounded to 4 digits.

    Raises:
        ConfigError: no class has a pixel.
    """
    counts = np.asarray(pixels, np.float64)
    if counts.sum() <= 0:
        raise ConfigError("class_weights 'auto': the training split's masks have no pixels to count")
    frequency = counts / counts.sum()
    present = frequency > 0
    median = float(np.median(frequency[present]))
    weights = np.ones_like(frequency)
    weights[present] = np.clip(median / frequency[present], 1.0 / max_weight, max_weight)
    return [round(float(w), 4) for w in weights]


def resolve_class_weights(value, num_classes: int, count_pixels, ignore_class: Optional[int] = None
                          ) -> Optional[Dict]:
    """The weights a run trains with: ``None`` (none), or ``{"rule", "weights", "class_pixels"}``.

    Args:
        value: the ``class_weights`` setting (``None``, ``"auto"``, ``"w0,w1,..."``).
        num_classes: the model's classes (1: binary, weights ``[background, foreground]``).
        count_pixels: a function returning ``{mask value: pixels}`` of the training split
            (:func:`tfseg.data.inspect.class_pixels`); called for ``auto`` only.
        ignore_class: a mask value left out of the counts.

    Raises:
        ConfigError: not one weight per class.
    """
    parsed = parse_class_weights(value)
    if parsed is None:
        return None
    classes = max(int(num_classes), 2)
    if parsed != AUTO:
        if len(parsed) != classes:
            raise ConfigError(f"class_weights {value!r}: {len(parsed)} weights for {classes} classes "
                              f"({'background, foreground' if num_classes == 1 else 'class 0 first'})")
        return {"rule": "given", "weights": parsed, "class_pixels": None}
    counts: Mapping[int, int] = count_pixels()
    pixels = [0 if c == ignore_class else int(counts.get(c, 0)) for c in range(classes)]
    return {"rule": RULE, "weights": median_frequency_weights(pixels), "class_pixels": pixels}


def describe(resolved: Dict) -> str:
    """One line: ``class weights (median frequency of the training split): 0: 0.12, 1: 1.0, 2: 9.5``."""
    pairs = ", ".join(f"{c}: {w:g}" for c, w in enumerate(resolved["weights"]))
    rule = "as given" if resolved["rule"] == "given" else f"{resolved['rule']} of the training split's pixels"
    return f"class weights ({rule}): {pairs}"
