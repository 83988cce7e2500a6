"""User mistakes and damaged run folders end with exit code 2 and one line naming the path, never
"internal error"; `--force-new` recovers every damaged run folder (docs/reliability.md)."""

import errno
import json
import os
import shutil
import sys

import keras
import pytest

from tfseg import cli
from tfseg.config import TrainConfig
from tfseg.errors import TfsegError
from tfseg.training.run_folder import truncate_history

TRAIN = ["train", "--data", "synthetic:24", "--image-size", "16", "--base-filters", "2", "--depth", "1",
         "--batch-size", "4", "--verbose", "0"]


def run_cli(capsys, argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    inputs = keras.Input((16, 16, 3), name="images")
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    path = str(tmp_path_factory.mktemp("model") / "model.keras")
    model.save(path)
    return path


# --------------------------------------------------------------------------- --out in the wrong place
@pytest.mark.parametrize("verb", ["predict", "evaluate", "export", "export-tflite", "prepare", "train"])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_that_is_a_file_or_under_one_is_exit_2_naming_it(tmp_path, capsys, model_file, verb, where):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    out = str(blocker) if where == "file" else str(blocker / "sub")
    image = tmp_path / "a.png"
    keras.utils.save_img(str(image), keras.ops.convert_to_numpy(keras.ops.ones((8, 8, 3))) * 100)
    args = {
        "predict": ["predict", "--model", model_file, str(image)],
        "evaluate": ["evaluate", "--model", model_file, "--data", "synthetic:8"],
        "export": ["export", "--model", model_file],
        "export-tflite": ["export", "--model", model_file, "--format", "tflite"],
        "prepare": ["prepare", "--data", "synthetic:4", "--quiet"],
        "train": [*TRAIN, "--epochs", "1"],
    }[verb]
    code, err = run_cli(capsys, [*args, "--out", out])
    assert code == 2 and err.count("\n") == 1 and "internal error" not in err, err
    assert str(blocker) in err
    assert blocker.read_text() == "a file"


# --------------------------------------------------------------------------- file-system refusals
@pytest.mark.parametrize("error", [
    PermissionError(errno.EACCES, "Permission denied", "/data/out/x.png"),
    IsADirectoryError(errno.EISDIR, "Is a directory", "/data/out/x.png"),
    NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/out/x.png"),
])
def test_file_system_refusals_are_exit_2_naming_the_path(monkeypatch, capsys, error):
    from tfseg.commands import inspect as inspect_command

    def refuse(args):
        raise error

    monkeypatch.setattr(inspect_command, "run", refuse)
    code, err = run_cli(capsys, ["inspect"])
    assert code == 2 and err.strip() == f"tfseg inspect: error: /data/out/x.png: {error.strerror}"


def test_tensorflow_permission_error_is_exit_2(monkeypatch, capsys):
    import tensorflow as tf

    from tfseg.commands import inspect as inspect_command

    def refuse(args):
        raise tf.errors.PermissionDeniedError(None, None, "/data/out/x.png; Permission denied")

    monkeypatch.setattr(inspect_command, "run", refuse)
    code, err = run_cli(capsys, ["inspect"])
    assert code == 2 and "/data/out/x.png" in err and "internal error" not in err


@pytest.mark.parametrize("error", [
    "tf", OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "Disk quota exceeded", "/d/x.png"),
    RuntimeError("Can't write data (file write failed: filename = '/d/.w.tmp-1.h5', errno = 28, error message = "
                 "'No space left on device')"),
])
def test_a_full_disk_that_no_write_point_named_is_still_exit_2(monkeypatch, capsys, error):
    # The net under the write points (which name their file, tests/test_disk_full.py): never "internal error".
    import tensorflow as tf

    from tfseg.commands import inspect as inspect_command

    def full(args):
        raise tf.errors.ResourceExhaustedError(None, None, "/d/x.png; No space left on device") if error == "tf" \
            else error

    monkeypatch.setattr(inspect_command, "run", full)
    code, err = run_cli(capsys, ["inspect"])
    assert code == 2 and err.count("\n") == 1 and "no space left on the device" in err.lower(), err


@pytest.mark.parametrize("verb", ["train", "evaluate", "predict", "export", "prepare"])
def test_ram_output_from_the_command_line_is_refused(capsys, monkeypatch, model_file, verb):
    # The process's memory is gone when the command ends: success would keep nothing. (A Python caller
    # passing argv to cli.main keeps its process and its ram:// files: tests/test_cloud_paths.py.)
    args = {"train": ["train"], "evaluate": ["evaluate", "--model", model_file], "prepare": ["prepare"],
            "predict": ["predict", "--model", model_file, "a.png"], "export": ["export", "--model", model_file]}[verb]
    monkeypatch.setattr(sys, "argv", ["tfseg", *args, "--out", "ram://runs/x"])
    code = cli.main()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out ram://runs/x: ram:// is this process's memory" in err, err


def unreachable(monkeypatch):
    """gs:// answers as TensorFlow does without a network (exists raises; isdir says False)."""
    import tensorflow as tf

    message = ("Error executing an HTTP request: libcurl code 6 meaning 'Could not resolve hostname', error "
               "details: Could not resolve host: www.googleapis.com\n\t when reading metadata of gs://b/x")
    for name in ("exists", "isdir", "listdir", "makedirs", "stat"):
        real = getattr(tf.io.gfile, name)

        def fake(path, *args, _real=real, _name=name, **kwargs):
            if str(path).startswith("gs://"):
                if _name == "isdir":
                    return False
                raise tf.errors.FailedPreconditionError(None, None, message)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(tf.io.gfile, name, fake)


@pytest.mark.parametrize("args", [["prepare", "--data", "synthetic:4", "--out", "gs://b/shards"],
                                  ["inspect", "--data", "folder:gs://b/data"],
                                  ["train", *TRAIN[1:], "--out", "gs://b/run"]])
def test_an_unreachable_bucket_is_named_unreachable_with_exit_2(monkeypatch, capsys, args):
    unreachable(monkeypatch)
    code, err = run_cli(capsys, args)
    assert code == 2 and err.count("\n") == 1 and "gs://b" in err, err
    assert "cannot reach the storage (Could not resolve host: www.googleapis.com)" in err, err
    assert "not a folder" not in err


def test_sigterm_stops_a_command_with_one_line_as_ctrl_c_does(monkeypatch, capsys):
    import signal
    import time

    from tfseg.commands import inspect as inspect_command

    def long_work(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the signal
        return 0

    def unhandled(signum, frame):  # instead of ending the test process when tfseg does not handle it
        raise RuntimeError("SIGTERM not handled by tfseg")

    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        monkeypatch.setattr(inspect_command, "run", long_work)
        code, err = run_cli(capsys, ["inspect"])
        assert code == 143 and err == "tfseg inspect: terminated (SIGTERM)\n", err
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back when the command ends
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_bug_is_still_an_internal_error(monkeypatch, capsys):
    from tfseg.commands import inspect as inspect_command

    def bug(args):
        raise KeyError("oops")

    monkeypatch.setattr(inspect_command, "run", bug)
    code, err = run_cli(capsys, ["inspect"])
    assert code == 1 and "internal error" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
@pytest.mark.parametrize("verb", ["predict", "evaluate", "prepare"])
def test_read_only_out_is_exit_2(tmp_path, capsys, model_file, verb):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    image = tmp_path / "a.png"
    keras.utils.save_img(str(image), keras.ops.convert_to_numpy(keras.ops.ones((8, 8, 3))) * 100)
    args = {"predict": ["predict", "--model", model_file, str(image)],
            "evaluate": ["evaluate", "--model", model_file, "--data", "synthetic:8"],
            "prepare": ["prepare", "--data", "synthetic:4", "--quiet"]}[verb]
    try:
        code, err = run_cli(capsys, [*args, "--out", str(locked / "out")])
    finally:
        locked.chmod(0o755)
    assert code == 2 and str(locked) in err and "permission" in err.lower()


def test_damaged_history_names_the_file(tmp_path):
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\n0,0.5\n\x00\x13garbage,1\n")
    with pytest.raises(TfsegError, match="history.csv: damaged"):
        truncate_history(str(path), 1)


# --------------------------------------------------------------------------- damaged run folders
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A complete 2-epoch run folder to damage copies of (its backup weights kept: more epochs may follow)."""
    run = str(tmp_path_factory.mktemp("runs") / "run")
    assert cli.main([*TRAIN, "--epochs", "2", "--out", run, "--keep-backup"]) == 0
    return run


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


DAMAGE = {
    "config.json": lambda run: open(os.path.join(run, "config.json"), "w").write("{damaged"),
    "state.json": lambda run: open(os.path.join(run, "backup", "state.json"), "w").write("{damaged"),
    "weights missing": lambda run: os.remove(os.path.join(run, "backup", "epoch-0002.weights.h5")),
    "weights damaged": lambda run: _truncate(os.path.join(run, "backup", "epoch-0002.weights.h5")),
    "history.csv": lambda run: open(os.path.join(run, "history.csv"), "ab").write(b"\x00\x13junk,1\n"),
    "splits.json": lambda run: open(os.path.join(run, "splits.json"), "w").write('{"train": 3}'),
    "model.keras": lambda run: _truncate(os.path.join(run, "model.keras")),
    "metrics.json": lambda run: open(os.path.join(run, "metrics.json"), "w").write("{damaged"),
}
NAMED = {"weights missing": "epoch-0002.weights.h5", "weights damaged": "epoch-0002.weights.h5"}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_run_folder_is_exit_2_naming_the_file_and_force_new_recovers(tmp_path, capsys, finished_run, damage):
    run = str(tmp_path / "run")
    shutil.copytree(finished_run, run)
    DAMAGE[damage](run)
    # one more epoch: a resume (a complete run with a damaged metrics.json is read as it is)
    epochs = "2" if damage == "metrics.json" else "3"
    code, err = run_cli(capsys, [*TRAIN, "--epochs", epochs, "--out", run, "--keep-backup"])
    assert code == 2 and err.count("\n") == 1 and "internal error" not in err, err
    assert NAMED.get(damage, damage) in err
    code, err = run_cli(capsys, [*TRAIN, "--epochs", epochs, "--out", run, "--force-new"])
    assert code == 0, err
    assert [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    with open(os.path.join(run, "config.json")) as f:
        assert TrainConfig.from_dict(json.load(f)).epochs == int(epochs)
