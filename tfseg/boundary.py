"""Boundary metrics of binary 2-D masks: Hausdorff distance (HD95) and mean surface distance.

NumPy and SciPy (no TensorFlow): ``tfseg evaluate`` calls :func:`surface_metrics`
once per image.

Definitions (the conventions of MedPy ``hd95`` and MONAI's symmetric average
surface distance):
    * The *boundary* of a mask is its foreground pixels with at least one
      4-neighbour outside the mask; pixels on the image border count as boundary
      (outside the image is background), so a full mask has a boundary too.
    * ``d(a, B)`` is the Euclidean distance, in ``spacing`` units, from the centre
      of boundary pixel ``a`` to the nearest boundary pixel of the other mask ``B``.
    * The *surface distances* are the pooled set ``{d(a, T) : a in boundary(P)}``
      union ``{d(b, P) : b in boundary(T)}``.
    * ``hausdorff_distance(percentile=q)``: the ``q``-th percentile of the pooled
      surface distances (``numpy.percentile``, linear interpolation); ``q = 100``
      is the classic Hausdorff distance ``max(h(P, T), h(T, P))``; ``hausdorff95``
      uses ``q = 95`` to ignore a few outlier pixels.
    * ``mean_surface_distance``: the mean of the pooled surface distances (average
      symmetric surface distance, ASSD).

Empty masks: both empty -> 0.0 (nothing to disagree on); exactly one empty ->
``inf`` (there is no surface to measure to). Average over images with care:
``numpy.mean`` of a column with an ``inf`` is ``inf``; report the number of
``inf`` images and the median, or the mean of the finite values.

Foreground is ``mask > 0.5`` (:func:`tfseg.masks.foreground`; bool, {0, 1} and {0, 255} masks all work).

Distances are exact: ``scipy.ndimage.distance_transform_edt`` of the complement
of one boundary (with ``sampling=spacing``) gives every pixel's distance to that
boundary; it is read at the other mask's boundary pixels. Two transforms per
pair of masks give both directions, and every metric here comes from those two.

Example:
    >>> import numpy as np
    >>> a = np.zeros((8, 8), bool); a[2:6, 2:6] = True
    >>> b = np.zeros((8, 8), bool); b[2:6, 3:7] = True     # shifted right by one pixel
    >>> float(hausdorff95(a, b)), round(float(mean_surface_distance(a, b)), 4)
    (1.0, 0.5)
    >>> surface_metrics(a, b)     # both from one pair of distance transforms
    {'hausdorff95': 1.0, 'mean_surface_distance': 0.5}
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from tfseg.errors import TfsegError
from tfseg.masks import foreground

__all__ = ["boundary_mask", "surface_distances", "surface_metrics", "hausdorff_distance", "hausdorff95",
           "mean_surface_distance"]


def boundary_mask(mask, width: int = 1) -> np.ndarray:
    """bool ``[H, W]``: foreground pixels within ``width`` 4-neighbour steps of the background.

    ``mask & ~erode^width(mask)`` (``scipy.ndimage.binary_erosion``, 4-neighbour
    structure); pixels off the image count as background. ``width=1``: the
    foreground pixels with a 4-neighbour in the background or off the image (the
    boundary of the distances here; :func:`tfseg.viz.mask_outline` draws it).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
        >>> int(boundary_mask(m).sum())   # the 3x3 square minus its centre
        8
    """
    from scipy import ndimage  # imported here: `import tfseg` and the CLI start-up do not pay for SciPy

    mask = np.asarray(mask, dtype=bool)
    four_neighbours = ndimage.generate_binary_structure(2, 1)
    return mask & ~ndimage.binary_erosion(mask, four_neighbours, iterations=int(width), border_value=0)


def _distances_to(features: np.ndarray, points: np.ndarray, spacing: Tuple[float, float]) -> np.ndarray:
    """Exact Euclidean distance from each pixel of bool ``points`` to the nearest ``features`` pixel."""
    from scipy import ndimage  # imported here: `import tfseg` and the CLI start-up do not pay for SciPy

    return ndimage.distance_transform_edt(~features, sampling=spacing)[points]


def _binary_pair(pred, true) -> Tuple[np.ndarray, np.ndarray]:
    pred, true = (np.asarray(m) for m in (pred, true))
    pred, true = (m[..., 0] if m.ndim == 3 and m.shape[-1] == 1 else m for m in (pred, true))
    if pred.ndim != 2 or pred.shape != true.shape:
        raise TfsegError(
            f"boundary metrics need two 2-D masks of the same shape, got {pred.shape} and {true.shape}"
        )
    return foreground(pred), foreground(true)


def _check_spacing(spacing) -> Tuple[float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 2 or min(values) <= 0:
        raise TfsegError(f"spacing={tuple(spacing)!r}: need two positive numbers (row, column)")
    return values


def surface_distances(pred, true, spacing: Sequence[float] = (1.0, 1.0)):
    """Directed surface distances ``(pred -> true, true -> pred)`` as float64 arrays.

    Args:
        pred, true: binary masks ``[H, W]`` (or ``[H, W, 1]``); foreground ``> 0.5``.
        spacing: pixel size ``(row, column)``, e.g. millimetres.

    Returns:
        ``(d_pred, d_true)``: distance of each boundary pixel of ``pred`` to the boundary
        of ``true``, and the reverse. Both empty arrays when either mask is empty.
    """
    spacing = _check_spacing(spacing)
    pred, true = _binary_pair(pred, true)
    edge_pred, edge_true = boundary_mask(pred), boundary_mask(true)
    if not edge_pred.any() or not edge_true.any():
        return np.zeros(0), np.zeros(0)
    return _distances_to(edge_true, edge_pred, spacing), _distances_to(edge_pred, edge_true, spacing)


def surface_metrics(pred, true, spacing: Sequence[float] = (1.0, 1.0), percentile: float = 95.0) -> Dict[str, float]:
    """``{"hausdorff95", "mean_surface_distance"}`` of one pair of masks, from one pair of distance maps.

    Same values as :func:`hausdorff_distance` (at ``percentile``, default 95) and
    :func:`mean_surface_distance`, with half the work of calling both.

    Args:
        pred, true: binary masks ``[H, W]`` (or ``[H, W, 1]``); foreground ``> 0.5``.
        spacing: pixel size ``(row, column)``.
        percentile: the Hausdorff percentile reported under the key ``hausdorff95``.

    Returns:
        Both 0.0 when both masks are empty, both ``inf`` when exactly one is.
    """
    _check_percentile(percentile)
    empty = _empty_result(pred, true)
    if empty is not None:
        return {"hausdorff95": empty, "mean_surface_distance": empty}
    pooled = np.concatenate(surface_distances(pred, true, spacing))
    return {"hausdorff95": float(np.percentile(pooled, percentile)), "mean_surface_distance": float(pooled.mean())}


def hausdorff_distance(pred, true, percentile: float = 100.0, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """The ``percentile``-th percentile of the pooled surface distances (100: Hausdorff).

    Both masks empty -> 0.0; exactly one empty -> ``inf``.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((9, 9)); a[4, 4] = 1
        >>> b = np.zeros((9, 9)); b[1, 0] = 1
        >>> hausdorff_distance(a, b, spacing=(2.0, 1.0))   # rows 3 apart (x2), columns 4 apart
        7.211102550927978
    """
    _check_percentile(percentile)
    empty = _empty_result(pred, true)
    if empty is not None:
        return empty
    return float(np.percentile(np.concatenate(surface_distances(pred, true, spacing)), percentile))


def hausdorff95(pred, true, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """95th-percentile Hausdorff distance (pooled, as MedPy ``hd95``); 0 if both empty, inf if one is."""
    return hausdorff_distance(pred, true, 95.0, spacing)


def mean_surface_distance(pred, true, spacing: Sequence[float] = (1.0, 1.0)) -> float:
    """Average symmetric surface distance: the mean of the pooled surface distances.

    Both masks empty -> 0.0; exactly one empty -> ``inf``.
    """
    empty = _empty_result(pred, true)
    if empty is not None:
        return empty
    return float(np.mean(np.concatenate(surface_distances(pred, true, spacing))))


def _check_percentile(percentile) -> None:
    if not 0.0 <= float(percentile) <= 100.0:
        raise TfsegError(f"percentile={percentile!r}: must be in [0, 100]")


def _empty_result(pred, true):
    """0.0 when both masks are empty, inf when one is, None otherwise."""
    pred, true = _binary_pair(pred, true)
    has_pred, has_true = bool(pred.any()), bool(true.any())
    if has_pred and has_true:
        return None
    return 0.0 if not (has_pred or has_true) else float("inf")
