"""Deterministic, group-aware splits (tfseg.data.splits); no TensorFlow needed."""

import os
import random
import subprocess
import sys

import pytest

from tfseg.data.sources import Source
from tfseg.data.spec import SourceSpec
from tfseg.data.splits import assign_splits, group_position, split_ids
from tfseg.errors import ConfigError, DataError

IDS = [f"IMD{i:03d}" for i in range(200)]


def _all_splits(ids, **kwargs):
    return {s: split_ids(ids, s, **kwargs) for s in ("train", "val", "test")}


# Golden splits: written out literally, so any change of the rule (hash input, byte order,
# tie-breaking, cut rule) fails here. Changing them moves users' test images into training:
# such a change needs a migration note, not a new golden list.
GOLDEN_IDS = [f"seq{g}_f{f}" for g in "ABCDEFGH" for f in range(1 + "ABCDEFGH".index(g) % 3)] + [
    f"IMD{i:03d}" for i in (2, 3, 4, 10, 17, 21, 35, 48)
]
GOLDEN_SEED_7_GROUPED = {
    "train": ["IMD002", "IMD003", "IMD004", "IMD017", "IMD035", "IMD048", "seqA_f0", "seqB_f0", "seqB_f1",
              "seqC_f0", "seqC_f1", "seqC_f2", "seqD_f0", "seqF_f0", "seqF_f1", "seqF_f2"],
    "val": ["seqE_f0", "seqE_f1", "seqG_f0"],
    "test": ["IMD010", "IMD021", "seqH_f0", "seqH_f1"],
}
GOLDEN_SEED_0 = {
    "train": ["IMD000", "IMD003", "IMD005", "IMD006", "IMD007", "IMD008", "IMD010", "IMD011", "IMD013", "IMD014",
              "IMD015", "IMD017", "IMD018", "IMD019"],
    "val": ["IMD004", "IMD009", "IMD012"],
    "test": ["IMD001", "IMD002", "IMD016"],
}
GOLDEN_SEED_3_HALF = {
    "train": ["IMD001", "IMD003", "IMD004", "IMD006", "IMD007", "IMD008", "IMD010", "IMD012", "IMD016", "IMD019"],
    "val": ["IMD000", "IMD002", "IMD005", "IMD015", "IMD017"],
    "test": ["IMD009", "IMD011", "IMD013", "IMD014", "IMD018"],
}


def test_golden_split_with_groups():
    group_of = lambda sample_id: sample_id.split("_")[0]  # noqa: E731
    assert _all_splits(GOLDEN_IDS, seed=7, group_of=group_of) == GOLDEN_SEED_7_GROUPED


def test_golden_split_default_fractions_and_other_fractions():
    ids = [f"IMD{i:03d}" for i in range(20)]
    assert _all_splits(ids, seed=0) == GOLDEN_SEED_0
    assert _all_splits(ids, seed=3, fractions=(0.5, 0.25, 0.25)) == GOLDEN_SEED_3_HALF


def test_golden_split_without_a_seed_is_the_seed_0_split():
    # The documented default seed is 0, in both public functions.
    ids = [f"IMD{i:03d}" for i in range(20)]
    assert {split: split_ids(ids, split) for split in GOLDEN_SEED_0} == GOLDEN_SEED_0
    assigned = assign_splits(ids)
    assert {split: sorted(i for i in ids if assigned[i] == split) for split in GOLDEN_SEED_0} == GOLDEN_SEED_0


def test_golden_split_of_tiny_sets_keeps_one_group_in_val_and_test():
    # 3, 5 and 7 samples: the cuts are nudged so that val and test are not empty, and no further
    assert _all_splits(["a", "b", "c"], seed=0) == {"train": ["a"], "val": ["c"], "test": ["b"]}
    five, seven = [f"s{i}" for i in range(5)], [f"s{i}" for i in range(7)]
    assert _all_splits(five, seed=0) == {"train": ["s0", "s3", "s4"], "val": ["s1"], "test": ["s2"]}
    assert _all_splits(seven, seed=0) == {"train": ["s0", "s3", "s4", "s5", "s6"], "val": ["s1"], "test": ["s2"]}


def test_a_group_whose_middle_falls_on_a_cut_goes_to_the_later_split():
    # 5 groups of 4 samples, fractions (0.5, 0.3, 0.2): cuts at 10 and 16; the middles are 2, 6, 10, 14, 18,
    # so the third group (middle exactly 10) goes to val: 8 / 8 / 4 samples, not 12 / 4 / 4
    ids = [f"g{g}-{j}" for g in range(5) for j in range(4)]
    for seed in range(3):
        splits = _all_splits(ids, seed=seed, fractions=(0.5, 0.3, 0.2), group_of=lambda i: i.split("-")[0])
        assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 8, 4]
        # cuts at 6 and 14: the middles 6 and 14 fall on both cuts: 4 / 8 / 8
        splits = _all_splits(ids, seed=seed, fractions=(0.3, 0.4, 0.3), group_of=lambda i: i.split("-")[0])
        assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 8, 8]


def test_golden_group_positions():
    # sha256("7:seqA") and sha256("0:IMD002"), first 8 bytes big-endian
    assert group_position(7, "seqA") == 10215708210128005259
    assert group_position(0, "IMD002") == 17882624791622281464


def test_same_seed_same_split_whatever_the_input_order():
    shuffled = list(IDS)
    random.Random(3).shuffle(shuffled)
    assert _all_splits(IDS, seed=5) == _all_splits(shuffled, seed=5)
    assert _all_splits(IDS, seed=5) == _all_splits(tuple(reversed(IDS)), seed=5)


def test_different_seed_different_split():
    assert split_ids(IDS, "test", seed=0) != split_ids(IDS, "test", seed=1)


def test_splits_are_disjoint_sorted_and_cover_every_id():
    splits = _all_splits(IDS, seed=0)
    seen = [i for ids in splits.values() for i in ids]
    assert sorted(seen) == sorted(IDS) and len(seen) == len(set(seen))
    assert all(ids == sorted(ids) for ids in splits.values())
    assert split_ids(reversed(IDS), "all") == sorted(IDS)


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.5, 0.3, 0.2)])
def test_fractions_are_honoured_to_one_sample(fractions):
    counts = [len(ids) for ids in _all_splits(IDS, seed=2, fractions=fractions).values()]
    for count, fraction in zip(counts, fractions):
        assert abs(count - fraction * len(IDS)) <= 1


def test_groups_are_never_separated_and_fractions_follow_sample_counts():
    rng = random.Random(0)
    ids = [f"seq{g:02d}-frame{j:03d}" for g in range(30) for j in range(rng.randint(1, 40))]
    group_of = lambda sample_id: sample_id.split("-")[0]  # noqa: E731
    splits = _all_splits(ids, seed=0, group_of=group_of)
    owner = {}
    for split, members in splits.items():
        for sample_id in members:
            assert owner.setdefault(group_of(sample_id), split) == split
    largest_group = max(sum(1 for i in ids if group_of(i) == group_of(j)) for j in ids)
    for split, fraction in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        assert abs(len(splits[split]) - fraction * len(ids)) <= largest_group


@pytest.mark.parametrize("sizes", [[1, 1, 1], [500, 1, 1], [1, 1, 500], [10, 10, 10, 10], [1] * 5])
def test_val_and_test_are_not_empty_with_three_groups(sizes):
    ids = [f"g{g}-{j}" for g, n in enumerate(sizes) for j in range(n)]
    for seed in range(5):
        splits = _all_splits(ids, seed=seed, group_of=lambda i: i.split("-")[0])
        assert all(splits[s] for s in ("train", "val", "test")), (sizes, seed, splits)


def test_one_or_two_samples_still_split_without_error():
    assert split_ids(["only"], "train") == ["only"]
    assert sorted(split_ids(["a", "b"], "train") + split_ids(["a", "b"], "val") + split_ids(["a", "b"], "test")) == ["a", "b"]


def test_adding_samples_moves_few_existing_ones():
    before = assign_splits(IDS, seed=0)
    after = assign_splits(IDS + [f"NEW{i:03d}" for i in range(20)], seed=0)
    moved = [i for i in IDS if before[i] != after[i]]
    # about sqrt(20) per cut (module docstring); far from a reshuffle (~80 of 200)
    assert len(moved) <= 16


def test_split_does_not_depend_on_python_hash_seed():
    code = "from tfseg.data.splits import split_ids; print(split_ids([f'x{i}' for i in range(50)], 'test', seed=3))"
    outputs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        outputs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outputs) == 1


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.3), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.8, -0.1, 0.3), ("a", "b", "c"), 0.7]
)
def test_bad_fractions_raise_config_error(fractions):
    with pytest.raises(ConfigError, match="fractions"):
        split_ids(IDS, "train", fractions=fractions)


def test_unknown_split_and_duplicate_ids_are_user_errors():
    with pytest.raises(ConfigError, match="'validation'"):
        split_ids(IDS, "validation")
    with pytest.raises(DataError, match="IMD001"):
        split_ids(IDS + ["IMD001"], "train")


class _Sequences(Source):
    """Frames of video sequences: the group is the sequence."""

    def __init__(self, ids):
        self.spec = SourceSpec("folder", path="mem", text="folder:mem")
        self._ids = sorted(ids)

    def ids(self):
        return list(self._ids)

    def group(self, sample_id):
        return sample_id.split("_")[0]

    def examples(self, ids):
        raise NotImplementedError


def test_source_split_ids_keeps_its_groups_together():
    source = _Sequences([f"s{g}_{f}" for g in range(12) for f in range(5)])
    for split in ("train", "val", "test"):
        ids = source.split_ids(split, seed=1)
        assert ids and len(ids) % 5 == 0
        for group in {source.group(i) for i in ids}:
            assert all(f"{group}_{f}" in ids for f in range(5))
