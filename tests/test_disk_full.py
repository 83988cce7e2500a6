"""A full disk at any write point of any verb: exit 2 with one line naming the file, no crash, nothing
half-written that a later run takes for complete, and the same command finishes once there is room.

Each write point of ``export`` (SavedModel and ``--format tflite``), ``predict --overwrite``,
``prepare`` and ``evaluate --overwrite`` is counted in a clean run, then made to fail as a full disk
makes it fail (tests/faults.py: the error h5py, zipfile or TensorFlow raises there). ``train``'s write
points are ``tests/test_crash_points.py`` (the same faults, then the same command resumes). The crash
that h5py caused after a failed write (a segmentation fault at exit) is
:func:`test_a_failed_weights_write_does_not_crash_the_process`.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from faults import inject_faults
from tfseg import cli, fileio, outputs


def tiny_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3), name="images")
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))


def digest(folder):
    """``{name: sha256}`` of the files in ``folder`` (none when it does not exist)."""
    if not os.path.isdir(folder):
        return {}
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder)) if os.path.isfile(os.path.join(folder, name))}


def setup(root):
    """Two models (the old and the new one of an --overwrite), images, a data folder."""
    os.makedirs(root, exist_ok=True)
    for seed, name in [(1, "old"), (2, "new")]:
        tiny_model(seed).save(os.path.join(root, f"{name}.keras"))
    rng = np.random.default_rng(0)
    for i in range(6):
        for sub, array in [("images", rng.integers(0, 255, (20, 24, 3), np.uint8)),
                           ("masks", (rng.random((20, 24)) > 0.5).astype(np.uint8) * 255)]:
            os.makedirs(os.path.join(root, "data", sub), exist_ok=True)
            Image.fromarray(array).save(os.path.join(root, "data", sub, f"s{i}.png"))
            if sub == "images" and i < 2:  # predict's inputs: two photos (each write point costs a run)
                os.makedirs(os.path.join(root, "photos"), exist_ok=True)
                Image.fromarray(array).save(os.path.join(root, "photos", f"s{i}.png"))
    return root


def commands(root, model):
    """``{verb: (tfseg arguments, the output folder)}``, writing with ``model`` (``old``/``new``)."""
    data, keras_file = os.path.join(root, "data"), os.path.join(root, f"{model}.keras")
    return {
        "export": (["export", "--model", keras_file, "--out", os.path.join(root, "serving"), "--version", "1",
                    "--overwrite"], os.path.join(root, "serving", "1")),
        "export-tflite": (["export", "--model", keras_file, "--out", os.path.join(root, "lite"), "--format", "tflite",
                           "--overwrite"], os.path.join(root, "lite")),
        "predict": (["predict", "--model", keras_file, os.path.join(root, "photos"), "--out",
                     os.path.join(root, "masks"), "--overwrite"], os.path.join(root, "masks")),
        "prepare": (["prepare", "--data", f"folder:{data}", "--out", os.path.join(root, "shards"), "--shards", "2",
                     "--overwrite", "--quiet"], os.path.join(root, "shards")),
        "evaluate": (["evaluate", "--model", keras_file, "--data", f"folder:{data}", "--test-fraction", "0.5", "--out",
                      os.path.join(root, "eval"), "--overwrite"], os.path.join(root, "eval")),
    }


def run(args, fail_at=None):
    """``(exit code, stderr, what failed)`` of ``tfseg args`` in this process, failing at write ``fail_at``."""
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()):
        counter = inject_faults(monkeypatch, 0 if fail_at is None else fail_at)
        # one writer thread: write point N is the same file in every run
        monkeypatch.setattr("tfseg.commands.predict.WRITER_THREADS", 1)
        code = cli.main(args)
    return code, stderr.getvalue(), counter


def complete(verb, out):
    """What a complete output of ``verb`` in ``out`` holds, as ``{name: sha256}`` (what is compared)."""
    found = digest(out)
    if verb in ("predict", "evaluate", "export-tflite"):
        assert outputs.unfinished(out) == [], out
        found.pop(outputs.MARKER, None)
    if verb == "export":  # saved_model.pb differs between two exports of one model: compare what it serves
        import tensorflow as tf

        serve = tf.saved_model.load(out).signatures["serving_default"]
        served = serve(images=tf.constant(np.full((1, 16, 16, 3), 100, np.uint8)))["probabilities"].numpy()
        return {"served": hashlib.sha256(served.round(5).tobytes()).hexdigest()}
    if verb == "evaluate":
        found = {name: value for name, value in found.items() if name.endswith(".csv")}  # figures: fonts vary
    if verb == "prepare":
        found.pop("manifest.json")
    return found


def not_taken_for_complete(verb, out, old, new):
    """After a failed run: the old complete output, a new complete one, or one that says it is unfinished."""
    parent = os.path.dirname(out) if verb == "export" else out
    assert not [name for name in os.listdir(parent) if fileio.is_temporary(name)], os.listdir(parent)
    if verb in ("predict", "evaluate") and outputs.unfinished(out):
        # metrics.json is written last: with it, every file is the new one (only the marker's last update failed)
        if verb == "evaluate" and os.path.exists(os.path.join(out, "metrics.json")):
            with pytest.MonkeyPatch.context() as monkeypatch:
                monkeypatch.setattr(outputs, "unfinished", lambda folder: [])
                assert complete(verb, out) == new, "metrics.json beside files of the old set"
            return
        # no file of the old set is left beside new ones
        assert not [name for name, value in digest(out).items() if old.get(name) == value and name in new], \
            "files of the old set left in an unfinished one"
        return
    assert complete(verb, out) in (old, new), "neither the old nor the new complete output"


def _verb_at_every_write_point(root, verb):
    """Run in a worker process: ``verb --overwrite`` with a full disk at each of its write points."""
    setup(root)
    args_old, out = commands(root, "old")[verb]
    args_new, _ = commands(root, "new")[verb]
    assert run(args_new)[0] == 0  # the new output, for comparisons
    new = complete(verb, out)
    assert run(args_old)[0] == 0  # the old output, replaced below
    old = complete(verb, out)
    code, said, counter = run(args_new, fail_at=0)  # counts the write points
    points = counter["calls"]
    assert code == 0 and points >= 2, (said, points)
    failures, hit = [], 0
    for fail_at in range(1, points + 1):
        assert run(args_old)[0] == 0  # start from the old complete output
        code, said, counter = run(args_new, fail_at)
        what = counter.get("failed", "no fault")
        hit += what.startswith("disk full")
        if not what.startswith("disk full"):
            if code == 1 and "InjectedFault" in said:  # a crash point (a rename, a delete): not a disk's fault
                continue
            failures.append(f"{verb} point {fail_at} ({what}): exit {code}: {said}")
            continue
        if code != 2 or said.count("\n") != 1 or "no space left on the device" not in said or \
                fileio.TEMP_MARK in said or not any(folder in said for folder in (out, os.path.dirname(out))):
            failures.append(f"{verb} point {fail_at} ({what}): exit {code}, not one line naming the file: {said}")
            continue
        try:
            not_taken_for_complete(verb, out, old, new)
            code, said, _ = run(args_new)  # the same command, with room
            assert code == 0, said
            assert complete(verb, out) == new
        except AssertionError as err:
            failures.append(f"{verb} point {fail_at} ({what}): {err}")
    return verb, points, hit, failures


VERBS = ["export", "export-tflite", "predict", "prepare", "evaluate"]


@pytest.mark.slow
def test_a_full_disk_at_every_write_point_of_every_verb(tmp_path):
    # Two worker processes, as the crash-point test: each imports TensorFlow once and takes verbs in turn.
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        results = list(pool.map(_verb_at_every_write_point, [str(tmp_path / verb) for verb in VERBS], VERBS))
    failures = []
    for verb, points, hit, found in results:
        print(f"{verb}: {points} file operations, {hit} writes failed as on a full disk", flush=True)
        assert hit >= 1, verb
        failures += found
    assert not failures, "\n".join(failures)


def test_an_interrupted_predict_overwrite_leaves_an_unfinished_set_that_the_same_command_finishes(tmp_path):
    # The fast case of the test above, for every run of the suite: the disk fills at the 2nd mask.
    root = setup(str(tmp_path))
    args_old, out = commands(root, "old")["predict"]
    args_new, _ = commands(root, "new")["predict"]
    assert run(args_old)[0] == 0
    old = digest(out)
    seen = run(args_new, fail_at=0)[2]["seen"]
    files = [point for point, name in enumerate(seen, start=1) if name == "open_file"]
    assert run(args_old)[0] == 0
    code, said, counter = run(args_new, fail_at=files[-3])  # a mask or overlay near the end
    assert code == 2 and counter["failed"].startswith("disk full") and "no space left on the device" in said, (said, counter)
    assert said.count("\n") == 1 and out in said, said
    assert outputs.unfinished(out)  # the marker says so ...
    assert not [name for name, value in digest(out).items() if name != outputs.MARKER and old.get(name) == value]
    code, said, _ = run(args_old)  # ... and the same command finishes it
    assert code == 0 and outputs.unfinished(out) == [] and digest(out) == old, said


def test_an_interrupted_evaluate_leaves_no_metrics_json(tmp_path):
    root = setup(str(tmp_path))
    args, out = commands(root, "old")["evaluate"]
    assert run(args)[0] == 0
    seen = run(args, fail_at=0)[2]["seen"]
    files = [point for point, name in enumerate(seen, start=1) if name == "open_file"]
    code, said, counter = run(args, fail_at=files[-2])  # metrics.json, written last
    assert code == 2 and counter["failed"].startswith("disk full"), said
    assert not os.path.exists(os.path.join(out, "metrics.json")) and "metrics.json" in outputs.unfinished(out)
    assert run(args)[0] == 0 and json.load(open(os.path.join(out, "metrics.json")))["test"]["num_images"] >= 2


# A Keras .weights.h5 write that fails (here: past the file size limit, as on a full disk) left the
# h5py file open; HDF5 wrote it again when Python freed it and the process died (exit 139).
WEIGHTS_PAST_THE_LIMIT = """
import os, resource, signal, sys, tempfile
import keras
from tfseg import fileio
folder = tempfile.mkdtemp()
inputs = keras.Input((16, 16, 3))
x = keras.layers.Conv2D(64, 3, padding="same")(inputs)
x = keras.layers.Conv2D(64, 3, padding="same")(x)
model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(x))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, resource.RLIM_INFINITY))
try:
    with fileio.atomic_path(os.path.join(folder, "w.weights.h5")) as tmp:
        model.save_weights(tmp)
except Exception as err:
    print("failed:", type(err).__name__)
print("left:", os.listdir(folder))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX file size limit")
def test_a_failed_weights_write_does_not_crash_the_process():
    process = subprocess.run([sys.executable, "-c", WEIGHTS_PAST_THE_LIMIT], capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert process.returncode == 0, (process.returncode, process.stderr[-2000:])
    assert "failed:" in process.stdout and "left: []" in process.stdout, process.stdout


def test_weights_are_not_started_without_room_for_them(tmp_path, monkeypatch):
    # h5py cannot fail cleanly halfway, so the backup and the best checkpoint check the free space first.
    from tfseg.saving import weights_file_size
    from tfseg.training.callbacks import BestCheckpoint, RunBackup

    model = tiny_model(1)
    needed = weights_file_size(model)
    assert needed > sum(w.size * 4 for w in model.get_weights())
    monkeypatch.setattr(fileio, "free_bytes", lambda path: needed - 1)
    checkpoint = BestCheckpoint(str(tmp_path / "model.keras"))
    checkpoint.set_model(model)
    with pytest.raises(fileio.DiskFullError, match=r"model.keras: cannot be written.*missing"):
        checkpoint.on_epoch_end(0, {checkpoint.monitor: 0.5})
    backup = RunBackup.__new__(RunBackup)
    backup.backup_dir = str(tmp_path / "backup")
    backup.set_model(model)
    with pytest.raises(fileio.DiskFullError, match=r"epoch-0001.weights.h5: cannot be written"):
        RunBackup.save(backup, 1)
    assert not [name for _, _, files in os.walk(tmp_path) for name in files]
