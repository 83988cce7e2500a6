"""Bootstrap confidence intervals of scores over a split (``evaluate``'s ``<metric>_ci95``, ``tfseg compare``).

A split of a small data set (PH2's 15% test split is 30 images) gives a score that would move
with another draw of the images. The percentile bootstrap (Efron & Tibshirani 1993, ch. 13)
says by how much: draw the split's images again, with replacement, as many as it holds,
recompute the score, and repeat (:data:`RESAMPLES` times); the middle 95% of those scores is
the interval. When the source groups its samples (several images of one patient or one video,
:meth:`tfseg.data.sources.Source.group`), the groups are drawn instead of the images, since the
images of a group are not independent; the splits never separate a group either.

Every score here is a function of sums over images (:func:`bootstrap`): the pixel counts behind
a split's Dice (:meth:`tfseg.metrics.Dice.score_counts`, the one rule of the metrics), the
per-image losses and their number. A resample is a vector of how many times each unit was
drawn, so its sums are one matrix product, and a paired comparison of two models uses the same
draws for both (:func:`tfseg.evaluation.compare`). The draws come from a fixed seed: the same
data give the same interval.

Example:
    >>> import numpy as np
    >>> values = np.linspace(0.5, 0.9, 30)
    >>> low, high = bootstrap(lambda s: s["v"][:, 0] / s["n"][:, 0],
    ...                       {"v": values[:, None], "n": np.ones((30, 1))})
    >>> bool(low < values.mean() < high)
    True
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfseg.errors import ConfigError

#: Resamples of an interval (the percentile bootstrap's usual 1000; ``evaluate --resamples``).
RESAMPLES = 1000
#: The seed of the draws: the same data give the same interval.
SEED = 0
#: The interval's coverage.
LEVEL = 0.95


def units_of(groups: Optional[Sequence[str]], count: int) -> Tuple[np.ndarray, int, str]:
    """``(unit index per image [count], number of units, "images" or "groups")``.

    ``groups``: the group of each image (:meth:`Source.group`), ``None`` for none; when every
    image is its own group the units are the images.
    """
    if groups is None:
        return np.arange(count), count, "images"
    if len(groups) != count:
        raise ConfigError(f"bootstrap: {len(groups)} groups for {count} images")
    names, index = np.unique(np.asarray(list(groups), dtype=object).astype(str), return_inverse=True)
    kind = "images" if len(names) == count else "groups"
    return index.reshape(-1), len(names), kind


def draws(units: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``float64 [resamples, units]``: how many times each unit is drawn in each resample (rows sum to ``units``)."""
    if units < 1:
        raise ConfigError("bootstrap: no images to resample")
    if resamples < 1:
        raise ConfigError(f"bootstrap: resamples {resamples!r}: must be a positive integer")
    picks = np.random.default_rng(seed).integers(0, units, size=(resamples, units))
    counts = np.zeros((resamples, units))
    np.add.at(counts, (np.repeat(np.arange(resamples), units), picks.reshape(-1)), 1.0)
    return counts


def resampled_sums(values: Dict[str, np.ndarray], weights: np.ndarray, unit: np.ndarray,
                   units: int) -> Dict[str, np.ndarray]:
    """``{name: [resamples, ...]}``: each value ``[images, ...]`` summed by unit, then by the draws ``weights``."""
    sums = {}
    for name, value in values.items():
        value = np.asarray(value, np.float64)
        per_unit = np.zeros((units,) + value.shape[1:])
        np.add.at(per_unit, unit, value)
        sums[name] = np.tensordot(weights, per_unit, axes=1)
    return sums


def percentile_interval(statistics: np.ndarray, level: float = LEVEL) -> Optional[List[float]]:
    """``[low, high]``: the central ``level`` of the resampled statistics (``NaN``s, resamples with no
    score, left out); ``None`` when none has a score."""
    statistics = np.asarray(statistics, np.float64)
    statistics = statistics[np.isfinite(statistics)]
    if not statistics.size:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(statistics, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap(statistic: Callable[[Dict[str, np.ndarray]], np.ndarray], values: Dict[str, np.ndarray],
              groups: Optional[Sequence[str]] = None, resamples: int = RESAMPLES, seed: int = SEED,
              level: float = LEVEL) -> Optional[List[float]]:
    """The percentile bootstrap interval ``[low, high]`` of a statistic of sums over images.

    Args:
        statistic: ``{name: [resamples, ...]}`` sums -> ``[resamples]`` scores (vectorised).
            On the sums over every image once it gives the point estimate.
        values: ``{name: [images, ...]}`` per-image quantities that add up (pixel counts,
            losses, an indicator for "this image counts").
        groups: the group of each image; groups are drawn as wholes (see the module docstring).
        resamples, seed, level: the draws (:func:`draws`) and the interval's coverage.
    """
    count = len(next(iter(values.values())))
    unit, units, _ = units_of(groups, count)
    return percentile_interval(statistic(resampled_sums(values, draws(units, resamples, seed), unit, units)), level)


def mean_statistic(name: str, counted: str) -> Callable[[Dict[str, np.ndarray]], np.ndarray]:
    """The statistic "mean of ``name`` over the images that count": ``sums[name] / sums[counted]``
    (``NaN`` where no image counts)."""
    def statistic(sums):
        total, number = sums[name][:, 0], sums[counted][:, 0]
        return np.where(number > 0, total / np.maximum(number, 1e-300), np.nan)

    return statistic


def per_image_values(scores: Sequence[float]) -> Dict[str, np.ndarray]:
    """``{"value", "counted"}`` ``[images, 1]`` for :func:`mean_statistic` from per-image scores (``NaN``: no
    score, not counted)."""
    scores = np.asarray(scores, np.float64)
    counted = np.isfinite(scores)
    return {"value": np.where(counted, scores, 0.0)[:, None], "counted": counted.astype(np.float64)[:, None]}
