"""Deterministic, group-aware train/val/test splits.

The rule: every group (by default every sample is its own group; a MADS video
sequence is one group) gets a position ``sha256(f"{seed}:{group}")``. Groups are
ordered by that position and the order is cut where the cumulative sample count
crosses ``fractions``: a group belongs to the split that holds the middle of its
samples in that order. So

* the split depends on the seed and the set of ids only: not on file-system
  order, the machine, Python's salted ``hash`` or the order ids are given in;
* a group is never separated;
* the sizes follow ``fractions`` to within one group at each of the two cuts;
* with 3 or more groups, train, val and test each get at least one group.

Trade-off (why we cut rather than threshold the hash): thresholding the hash
(``position < 0.7`` -> train) would keep every sample's split fixed when samples
are added, but its sizes are binomial (15% of 200 samples gives 30 +- 5 test
images) and groups of unequal size skew it further; small sets can end up with
an empty val or test split. Cutting honours the fractions exactly; the price is
that adding M samples to a data set moves a few existing samples (about
sqrt(M)) across each cut. Compare models on one version of a data set.

Cross-validation (:class:`FoldSplit`, ``tfseg train --folds K``) keeps the test split of this
rule and cuts the other samples into K folds the same way: their groups in the order of the
same positions, cut where the cumulative sample count crosses ``k / K``. Fold ``i`` is the
validation split of run ``i`` and the other folds its training split; a group is never in two
folds, and the folds' sizes differ by at most about one group.

Example:
    >>> ids = [f"img{i}" for i in range(10)]
    >>> test = split_ids(ids, "test", seed=0)
    >>> len(test), sorted(test) == sorted(split_ids(list(reversed(ids)), "test", seed=0))
    (2, True)
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from tfseg.config import DEFAULT_FRACTIONS, SPLITS
from tfseg.errors import ConfigError, DataError



class FoldSplit(tuple):
    """Split fractions ``(train, val, test)`` that also say which fold of K is the validation split.

    What a cross-validated run's :meth:`TrainConfig.split_fractions` gives: every function that
    takes ``fractions`` (the pipeline, the sources, ``evaluate``) passes it on unchanged, and
    :func:`assign_splits` then keeps the test split of ``fractions`` and makes fold ``fold`` of
    ``folds`` the validation split (see the module docstring).

    Example:
        >>> folds = FoldSplit((0.7, 0.15, 0.15), fold=2, folds=5)
        >>> tuple(folds), folds.fold, folds.folds
        ((0.7, 0.15, 0.15), 2, 5)
    """

    def __new__(cls, fractions, fold: int, folds: int):
        values = super().__new__(cls, fractions)
        values.fold, values.folds = int(fold), int(folds)
        return values

    def __repr__(self):
        return f"FoldSplit({tuple(self)!r}, fold={self.fold}, folds={self.folds})"

    # another fold (or no fold) is another split, whatever the fractions
    def __eq__(self, other):
        return (tuple(self) == tuple(other) and isinstance(other, FoldSplit)
                and (self.fold, self.folds) == (other.fold, other.folds))

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((tuple(self), self.fold, self.folds))

    def __reduce__(self):
        return (FoldSplit, (tuple(self), self.fold, self.folds))


def check_folds(folds, fold=None) -> None:
    """``folds`` an integer >= 2 and ``fold`` (``None``: every fold) one of ``1..folds``.

    Raises:
        ConfigError: naming the value.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds {folds!r}: an integer, 2 or more")
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= folds):
        raise ConfigError(f"fold {fold!r}: one of 1..{folds} (the folds of --folds {folds})")


def validate_fractions(fractions) -> Tuple[float, float, float]:
    """``(train, val, test)`` as floats, each in (0, 1), summing to 1 (a :class:`FoldSplit` stays one).

    Raises:
        ConfigError: naming the value.
    """
    if isinstance(fractions, FoldSplit):
        check_folds(fractions.folds, fractions.fold)
        return FoldSplit(validate_fractions(tuple(fractions)), fractions.fold, fractions.folds)
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"fractions {fractions!r}: expected three numbers (train, val, test)") from None
    if len(values) != 3:
        raise ConfigError(f"fractions {fractions!r}: expected three numbers (train, val, test)")
    if not all(0.0 < v < 1.0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions {fractions!r}: each must be in (0, 1) and they must sum to 1")
    return values


def group_position(seed: int, group: str) -> int:
    """A group's place in the split order: the first 8 bytes of ``sha256(f"{seed}:{group}")``."""
    digest = hashlib.sha256(f"{seed}:{group}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def assign_splits(
    ids: Sequence[str], seed: int = 0, fractions=DEFAULT_FRACTIONS, group_of: Optional[Callable[[str], str]] = None
) -> Dict[str, str]:
    """``{sample id: "train"|"val"|"test"}`` for every id (see the module docstring for the rule;
    with a :class:`FoldSplit`, the validation split is its fold, :func:`assign_folds`).

    Raises:
        DataError: an id appears twice.
        ConfigError: bad ``fractions``.
    """
    fractions = validate_fractions(fractions)
    groups = _groups(ids, group_of or (lambda sample_id: sample_id))
    order = sorted(groups, key=lambda g: (group_position(seed, g), g))
    first_val, first_test = _cut_points([len(groups[g]) for g in order], fractions)
    result = {}
    for rank, group in enumerate(order):
        split = "train" if rank < first_val else "val" if rank < first_test else "test"
        for sample_id in groups[group]:
            result[sample_id] = split
    if isinstance(fractions, FoldSplit):
        folds = assign_folds(ids, seed, fractions, group_of=group_of)
        result = {i: "test" if f == 0 else "val" if f == fractions.fold else "train" for i, f in folds.items()}
    return result


def assign_folds(ids: Sequence[str], seed: int = 0, fractions=DEFAULT_FRACTIONS, folds: Optional[int] = None,
                 group_of: Optional[Callable[[str], str]] = None) -> Dict[str, int]:
    """``{sample id: fold 1..K, or 0 for the test split}``: the cross-validation folds of the non-test samples.

    The test split is :func:`assign_splits`'s for ``seed`` and ``fractions``; the other groups,
    in the order of their positions (:func:`group_position`), are cut into ``folds`` parts of
    about equal sample counts (a group goes where the middle of its samples falls).
    ``fractions`` may be a :class:`FoldSplit` (then ``folds`` defaults to its own).

    Raises:
        ConfigError: bad ``folds``, or fewer groups outside the test split than folds.
    """
    if folds is None:
        folds = getattr(fractions, "folds", None)
    check_folds(folds)
    plain = tuple(validate_fractions(fractions))
    groups = _groups(ids, group_of or (lambda sample_id: sample_id))
    order = sorted(groups, key=lambda g: (group_position(seed, g), g))
    first_val, first_test = _cut_points([len(groups[g]) for g in order], plain)
    pool = order[:first_test]
    if len(pool) < folds:
        raise ConfigError(f"folds {folds}: the {len(pool)} group(s) outside the test split cannot make {folds} "
                          "folds; use fewer folds or more samples")
    total = sum(len(groups[g]) for g in pool)
    result = {sample_id: 0 for group in order[first_test:] for sample_id in groups[group]}
    before = fold = 0
    for rank, group in enumerate(pool):
        middle = before + len(groups[group]) / 2.0
        # the fold where the middle of the group falls, nudged so that no fold is skipped or left empty
        wanted = max(min(folds, int(middle * folds // total) + 1), folds - (len(pool) - rank) + 1)
        fold = min(wanted, fold + 1)
        for sample_id in groups[group]:
            result[sample_id] = fold
        before += len(groups[group])
    return result


def split_ids(
    ids: Iterable[str],
    split: str,
    seed: int = 0,
    fractions=DEFAULT_FRACTIONS,
    group_of: Optional[Callable[[str], str]] = None,
) -> List[str]:
    """The ids of one split, sorted.

    Args:
        ids: every sample id of the source (any order; each once).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (every id).
        seed: changes the split; the same seed always gives the same split.
        fractions: ``(train, val, test)``, each in (0, 1), summing to 1.
        group_of: ``id -> group``; samples of one group share a split.
            Default: each sample is its own group.

    Returns:
        The sorted ids in ``split``.

    Raises:
        ConfigError: unknown ``split`` or bad ``fractions``.
        DataError: an id appears twice.
    """
    ids = list(ids)
    if split == "all":
        validate_fractions(fractions)
        _groups(ids, lambda sample_id: sample_id)
        return sorted(ids)
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: choose one of train, val, test, all")
    assigned = assign_splits(ids, seed=seed, fractions=fractions, group_of=group_of)
    return sorted(i for i, s in assigned.items() if s == split)


def _groups(ids: Sequence[str], group_of: Callable[[str], str]) -> Dict[str, List[str]]:
    groups: Dict[str, List[str]] = {}
    seen = set()
    duplicates = []
    for sample_id in ids:
        if sample_id in seen:
            duplicates.append((sample_id, "sample id appears more than once"))
        seen.add(sample_id)
        groups.setdefault(str(group_of(sample_id)), []).append(sample_id)
    if duplicates:
        raise DataError(f"{len(duplicates)} duplicate sample id(s); ids must be unique", duplicates)
    return groups


def _cut_points(sizes: Sequence[int], fractions) -> Tuple[int, int]:
    """``(first val rank, first test rank)`` over groups in split order.

    A group goes where the middle of its samples falls on the cumulative
    count; then, with >= 3 groups, the cuts are nudged so that no split is empty.
    """
    total = sum(sizes)
    train_end = fractions[0] * total
    val_end = (fractions[0] + fractions[1]) * total
    first_val = first_test = len(sizes)
    before = 0
    for rank, size in enumerate(sizes):
        middle = before + size / 2.0
        if middle >= train_end and first_val == len(sizes):
            first_val = rank
        if middle >= val_end:
            first_test = rank
            break
        before += size
    first_val = min(first_val, first_test)
    n = len(sizes)
    if n >= 3:
        first_test = min(first_test, n - 1)
        first_val = max(1, min(first_val, first_test - 1))
        first_test = max(first_test, first_val + 1)
    return first_val, first_test
