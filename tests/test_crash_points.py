"""Crash ordering: a training run that fails at ANY of its file operations resumes with the same
command and finishes with a valid run folder.

Every operation that changes the run folder (a rename that publishes an atomic write, a file opened
for writing, a delete, a folder created, Keras saving a model or weights, a history row, a figure,
the SavedModel written and published) is counted in a clean run; then for each N the N-th operation
raises before it happens (tests/faults.py), and the same ``train`` call is made again without
faults. A write fails as on a full disk (the error h5py, zipfile or TensorFlow raises there): the
``tfseg train`` command must then exit with code 2 and one line naming the file (issue: disk full
is a user error); any other operation fails as a crash would. The ``kill -9`` variant is
``tests/test_resume.py``; the other verbs' write points are ``tests/test_disk_full.py``.
"""

import contextlib
import csv
import io
import os

import pytest
import tensorflow as tf

from faults import inject_faults
from tfseg import cli, fileio
from tfseg.config import TrainConfig
from tfseg.saving import load_keras_model
from tfseg.training import train

EPOCHS = 2
# keep_backup: these runs are extended and their backups inspected (a run deletes its weights backup when
# it completes otherwise: tests/test_training.py)
TINY = dict(data="synthetic:24", image_size=16, base_filters=2, depth=1, batch_size=8, epochs=EPOCHS, patience=20,
            keep_backup=True)
TINY_FLAGS = ["--data", "synthetic:24", "--image-size", "16", "--base-filters", "2", "--depth", "1",
              "--batch-size", "8", "--epochs", str(EPOCHS), "--patience", "20", "--quiet", "--keep-backup"]


def check_run_folder(run):
    """The run folder a complete run leaves, and nothing half-done in it."""
    metrics = fileio.read_json(os.path.join(run, "metrics.json"))
    assert metrics["epochs_completed"] == EPOCHS
    load_keras_model(os.path.join(run, "model.keras"))  # loads, finite weights
    with open(os.path.join(run, "history.csv")) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, EPOCHS + 1))  # each epoch once
    assert "serving_default" in tf.saved_model.load(os.path.join(run, "saved_model", "1")).signatures
    for folder in (run, os.path.join(run, "backup"), os.path.join(run, "saved_model")):
        assert not [name for name in os.listdir(folder) if fileio.is_temporary(name)], folder
    backups = [name for name in os.listdir(os.path.join(run, "backup")) if name.endswith(".weights.h5")]
    assert backups == [f"epoch-{EPOCHS:04d}.weights.h5"]


def plant_stale_temporaries(run):
    """What a ``kill -9`` at the wrong moment leaves: hidden temporaries of a dead process (pid 2**22+1)."""
    dead = 2**22 + 1
    for folder, name in [(run, f".model.tmp-{dead}-abcdef.keras"),
                         (os.path.join(run, "backup"), f".epoch-0001.tmp-{dead}-abcdef.weights.h5"),
                         (os.path.join(run, "saved_model"), f".tmp-{dead}-export-xyz")]:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "w") as f:
            f.write("half")


@pytest.fixture(scope="module")
def write_points(tmp_path_factory):
    """The number of file operations of a clean run (and that run's folder, checked)."""
    run = str(tmp_path_factory.mktemp("clean") / "run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        counter = inject_faults(monkeypatch, fail_at=0)
        train(TrainConfig(**TINY, out=run), verbose=0)
    check_run_folder(run)
    assert counter["calls"] > 20, counter  # every epoch: weights, state.json, checkpoint, history row...
    return counter["calls"]


def test_stale_temporaries_of_a_killed_run_are_removed_on_resume(tmp_path, monkeypatch):
    run = str(tmp_path / "run")
    counter = inject_faults(monkeypatch, fail_at=10**9)
    train(TrainConfig(**{**TINY, "epochs": 1}, out=run), verbose=0)
    assert counter["calls"] > 0
    plant_stale_temporaries(run)
    train(TrainConfig(**TINY, out=run), verbose=0)  # one more epoch: a resume
    check_run_folder(run)


def test_weights_left_by_a_crash_before_their_deletion_are_removed_on_resume(tmp_path):
    from tfseg.training.run_folder import start_run_dir

    run = str(tmp_path / "run")
    backup = os.path.join(run, "backup")
    os.makedirs(backup)
    for name in ("epoch-0001.weights.h5", "epoch-0002.weights.h5"):
        with open(os.path.join(backup, name), "w") as f:
            f.write("weights")
    fileio.write_json_atomic(os.path.join(backup, "state.json"), {"epoch": 2, "weights": "epoch-0002.weights.h5"})
    start_run_dir(TrainConfig(**TINY, out=run), "resume", log=lambda message: None)
    assert sorted(os.listdir(backup)) == ["epoch-0002.weights.h5", "state.json"]


def _fault_then_rerun(folder, fail_at):
    """One write point (run in a worker process): ``tfseg train`` failing at operation ``fail_at``, then
    the same command.

    Returns ``(what failed, None)`` when the failing run ended as it should (a full disk: exit 2 and one
    line naming the file; a crash: the fault) and the rerun finished with a valid run folder, else the error."""
    run = os.path.join(folder, f"run-{fail_at}")
    config = TrainConfig(**TINY, out=run)
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stderr(stderr):
        counter = inject_faults(monkeypatch, fail_at)
        code = cli.main(["train", *TINY_FLAGS, "--out", run])
    outcome, said = counter.get("failed", "no fault (the operation is not reached when it fails?)"), stderr.getvalue()
    if outcome.startswith("disk full"):
        if code != 2 or said.count("\n") != 1 or "no space left on the device" not in said or fileio.TEMP_MARK in said:
            return outcome, f"fault at operation {fail_at} ({outcome}): exit {code}, not one line naming the file: {said}"
    elif code != 1 or "InjectedFault" not in said:
        return outcome, f"fault at operation {fail_at} ({outcome}): exit {code}: {said}"
    try:
        train(config, verbose=0)  # the same command, no faults
        check_run_folder(run)
    except Exception as err:  # noqa: BLE001 - collect every failing write point, then report them all
        return outcome, f"fault at operation {fail_at}: {type(err).__name__}: {err}"
    return outcome, None


@pytest.mark.slow
def test_a_fault_at_every_write_point_then_the_same_command_finishes(tmp_path, write_points):
    # Two worker processes (each point is two short, mostly single-threaded training runs): about
    # half the time on two cores. Each worker imports TensorFlow once and takes points in turn.
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        results = list(pool.map(_fault_then_rerun, [str(tmp_path)] * write_points, range(1, write_points + 1)))
    failures = []
    for fail_at, (outcome, failure) in enumerate(results, start=1):
        print(f"write point {fail_at}/{write_points}: {outcome}", flush=True)  # pytest -s shows them
        if failure:
            failures.append(failure)
    assert not failures, "\n".join(failures)
    assert sum(" operation " in outcome for outcome, _ in results) == write_points  # each one hit
    assert sum(outcome.startswith("disk full") for outcome, _ in results) > 10  # every write, a full disk
