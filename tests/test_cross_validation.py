"""Cross-validation (``tfseg train --folds K``): folds by the splits' rule, one run folder per fold, cv.json."""

import collections
import json
import os

import numpy as np
import pytest

from tfseg import cli
from tfseg.config import TrainConfig
from tfseg.data.splits import FoldSplit, assign_folds, assign_splits, split_ids
from tfseg.errors import ConfigError

IDS = [f"s{i:03d}" for i in range(60)]


def group_of(sample_id):
    return f"g{int(sample_id[1:]) // 3}"  # groups of three samples


@pytest.mark.parametrize("folds", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("grouped", [False, True])
def test_folds_cut_the_non_test_samples_and_keep_the_test_split(folds, seed, grouped):
    groups = group_of if grouped else None
    assigned = assign_folds(IDS, seed, (0.7, 0.15, 0.15), folds, group_of=groups)
    plain = assign_splits(IDS, seed, (0.7, 0.15, 0.15), group_of=groups)
    assert {i for i, f in assigned.items() if f == 0} == {i for i, s in plain.items() if s == "test"}
    sizes = collections.Counter(f for f in assigned.values() if f)
    assert sorted(sizes) == list(range(1, folds + 1))  # every fold, none empty
    assert max(sizes.values()) - min(sizes.values()) <= (3 if grouped else 1) + 1
    if grouped:  # a group is never in two folds
        by_group = collections.defaultdict(set)
        for sample_id, fold in assigned.items():
            by_group[group_of(sample_id)].add(fold)
        assert all(len(f) == 1 for f in by_group.values())
    # the order the ids come in changes nothing
    assert assign_folds(list(reversed(IDS)), seed, (0.7, 0.15, 0.15), folds, group_of=groups) == assigned
    # a fold's run: its fold is the validation split, the other folds the training split
    for fold in range(1, folds + 1):
        split = FoldSplit((0.7, 0.15, 0.15), fold, folds)
        val = split_ids(IDS, "val", seed, split, group_of=groups)
        train = split_ids(IDS, "train", seed, split, group_of=groups)
        assert val == sorted(i for i, f in assigned.items() if f == fold)
        assert set(train) == {i for i, f in assigned.items() if f not in (0, fold)}
        assert split_ids(IDS, "test", seed, split, group_of=groups) == split_ids(IDS, "test", seed, group_of=groups)


def test_bad_fold_settings_are_one_line():
    with pytest.raises(ConfigError, match="cannot make 9 folds"):
        assign_folds(IDS[:10], 0, (0.7, 0.15, 0.15), 9)
    with pytest.raises(ConfigError, match="folds 1: an integer, 2 or more"):
        TrainConfig(folds=1)
    with pytest.raises(ConfigError, match=r"fold 4: one of 1..3"):
        TrainConfig(folds=3, fold=4)
    with pytest.raises(ConfigError, match="needs --folds"):
        TrainConfig(fold=1)
    fold = TrainConfig(folds=3, fold=2).split_fractions()
    assert tuple(fold) == TrainConfig().split_fractions() and isinstance(fold, FoldSplit)
    # another fold, or no fold, is another split
    assert fold != TrainConfig().split_fractions() and fold != TrainConfig(folds=3, fold=1).split_fractions()
    assert fold == TrainConfig(folds=3, fold=2).split_fractions()
    assert cli.main(["train", "--folds", "3", "--fold", "5"]) == 2


@pytest.mark.slow
def test_train_folds_writes_a_run_per_fold_and_cv_json(tmp_path, capsys):
    from tfseg.evaluation import evaluate

    root = str(tmp_path / "cv")
    args = ["train", "--data", "synthetic:30", "--image-size", "32", "--base-filters", "4", "--depth", "2",
            "--epochs", "1", "--batch-size", "8", "--folds", "2", "--out", root, "--verbose", "0"]
    assert cli.main(args + ["--fold", "2"]) == 0  # one fold (e.g. on another machine)
    printed = capsys.readouterr().out
    assert "folds not complete yet: 1" in printed
    assert json.load(open(os.path.join(root, "cv.json")))["complete"] == [2]
    assert cli.main(args) == 0  # the rest; fold 2 is found complete
    printed = capsys.readouterr().out
    summary = json.load(open(os.path.join(root, "cv.json")))
    assert summary["complete"] == [1, 2] and not summary["missing"]
    val = [row["val_dice"] for row in summary["per_fold"]]
    assert summary["mean"]["val_dice"] == pytest.approx(np.mean(val))
    assert summary["std"]["val_dice"] == pytest.approx(np.std(val, ddof=1))
    assert "mean" in printed and "std" in printed
    splits = [json.load(open(os.path.join(root, f"fold-{i}", "splits.json"))) for i in (1, 2)]
    assert splits[0]["test"] == splits[1]["test"]  # the test split is fixed
    assert splits[0]["val"] == sorted(splits[1]["train"]) or set(splits[0]["val"]) == set(splits[1]["train"])
    assert not set(splits[0]["val"]) & set(splits[1]["val"])
    config = json.load(open(os.path.join(root, "fold-1", "config.json")))
    assert (config["folds"], config["fold"]) == (2, 1)
    # a fold's run folder is an ordinary run: evaluate scores its own validation fold
    result = evaluate(os.path.join(root, "fold-1"), split="val")
    assert result["val"]["dice"] == pytest.approx(summary["per_fold"][0]["val_dice"], abs=1e-6)
