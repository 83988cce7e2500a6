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



def validate_fractions(fractions) -> Tuple[float, float, float]:
    """``(train, val, test)`` as floats, each in (0, 1), summing to 1.

    Raises:
        ConfigError: naming the value.
    """
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
    """``{sample id: "train"|"val"|"test"}`` for every id (see the module docstring for the rule).

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
