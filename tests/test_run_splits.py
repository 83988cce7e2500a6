"""A run's splits.json is its split for good: a resumed run and `tfseg evaluate` compare with it.

If the data or the split rule changed, images that were in the test split could end up in
training unnoticed; instead the command stops (exit 2) naming the ids that moved, and
splits.json is left as it was.
"""

import hashlib
import json
import os
import shutil

import pytest

from tfseg import cli, training
from tfseg.config import TrainConfig
from tfseg.data import splits
from tfseg.errors import DataError
from tfseg.training.run_folder import check_stored_splits, split_changes

from conftest import TINY, write_folder_dataset


def little_endian_position(seed, group):
    """The split rule with one plausible bug: the hash read little-endian."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{group}".encode("utf-8")).digest()[:8], "little")


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("split_runs")
    data = write_folder_dataset(str(root / "data"), count=20)
    config = TrainConfig(data=data, epochs=1, out=str(root / "run"), keep_backup=True, **TINY)  # more epochs follow
    training.train(config, verbose=0)
    return config


def _copy(config, tmp_path):
    target = str(tmp_path / "run")
    shutil.copytree(config.out, target)
    return target


def _read(run):
    with open(os.path.join(run, "splits.json"), "rb") as f:
        return f.read()


def _tamper(run):
    """Move the first test id into train in splits.json; returns that id."""
    path = os.path.join(run, "splits.json")
    with open(path) as f:
        stored = json.load(f)
    moved = stored["test"].pop(0)
    stored["train"].append(moved)
    with open(path, "w") as f:
        json.dump(stored, f)
    return moved


def test_split_changes_names_moved_gone_and_new_ids():
    stored = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    now = {"train": ["a", "d"], "val": ["c"], "test": ["e"]}
    assert split_changes(stored, now) == [
        ("b", "was train, not in the data now"), ("d", "was test, now train"), ("e", "new in the data, now test")]
    assert split_changes(stored, stored) == []


def test_check_stored_splits_lists_at_most_20_ids(tmp_path):
    with open(tmp_path / "splits.json", "w") as f:
        json.dump({"train": [f"x{i:02d}" for i in range(30)], "val": [], "test": []}, f)
    with pytest.raises(DataError, match="30 sample") as err:
        check_stored_splits(str(tmp_path), {"train": [], "val": [], "test": [f"x{i:02d}" for i in range(30)]})
    assert "x19: was train, now test" in str(err.value) and "x20" not in str(err.value)
    assert "and 10 more" in str(err.value)
    assert check_stored_splits(str(tmp_path / "none"), {}) is False


@pytest.mark.slow
def test_resume_with_a_changed_split_rule_exits_2_naming_the_moved_ids(one_epoch_run, tmp_path, monkeypatch, capsys):
    run = _copy(one_epoch_run, tmp_path)
    before = _read(run)
    monkeypatch.setattr(splits, "group_position", little_endian_position)
    args = ["train", "--data", one_epoch_run.data, "--image-size", "32", "--base-filters", "4", "--depth", "2",
            "--batch-size", "8", "--epochs", "2", "--out", run]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "splits.json" in err and "Traceback" not in err
    assert "was test, now" in err or "was val, now" in err  # the ids that moved are named
    assert _read(run) == before
    assert training.run_folder.training_state(run)["epoch"] == 1  # nothing was trained


@pytest.mark.slow
def test_resume_with_an_edited_splits_json_names_the_id(one_epoch_run, tmp_path):
    run = _copy(one_epoch_run, tmp_path)
    moved = _tamper(run)
    before = _read(run)
    config = TrainConfig(**{**json.loads(one_epoch_run.to_json()), "out": run, "epochs": 2})
    with pytest.raises(DataError, match="splits.json") as err:
        training.train(config, verbose=0)
    assert f"{moved}: was train, now test" in str(err.value)
    assert _read(run) == before


@pytest.mark.slow
def test_resume_with_the_same_split_does_not_rewrite_splits_json(one_epoch_run, tmp_path, monkeypatch):
    run = _copy(one_epoch_run, tmp_path)
    before = _read(run)
    written = []
    real = training.run.fileio.write_json_atomic
    monkeypatch.setattr(training.run.fileio, "write_json_atomic",
                        lambda path, value: (written.append(os.path.basename(path)), real(path, value)))
    config = TrainConfig(**{**json.loads(one_epoch_run.to_json()), "out": run, "epochs": 2})
    assert training.train(config, verbose=0)["epochs_completed"] == 2
    assert "splits.json" not in written and _read(run) == before


@pytest.mark.slow
def test_evaluate_compares_the_runs_split_with_splits_json(one_epoch_run, tmp_path, monkeypatch, capsys):
    run = _copy(one_epoch_run, tmp_path)
    assert cli.main(["evaluate", "--model", run]) == 0  # unchanged: evaluates
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(splits, "group_position", little_endian_position)
        assert cli.main(["evaluate", "--model", run]) == 2
        err = capsys.readouterr().err
        assert "splits.json" in err and "now" in err and "Traceback" not in err
        # another seed is another split, asked for explicitly: nothing to compare with
        assert cli.main(["evaluate", "--model", run, "--seed", "5"]) == 0
    moved = _tamper(run)
    before = _read(run)
    with pytest.raises(DataError, match=f"{moved}: was train, now test"):
        training.evaluate(run)
    assert _read(run) == before
