"""User mistakes and damaged run folders end with exit code 2 and one line naming the path, never
"internal error"; `--force-new` recovers every damaged run folder (docs/reliability.md)."""

import errno
import json
import os
import shutil

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
    """A complete 2-epoch run folder to damage copies of."""
    run = str(tmp_path_factory.mktemp("runs") / "run")
    assert cli.main([*TRAIN, "--epochs", "2", "--out", run]) == 0
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
    code, err = run_cli(capsys, [*TRAIN, "--epochs", epochs, "--out", run])
    assert code == 2 and err.count("\n") == 1 and "internal error" not in err, err
    assert NAMED.get(damage, damage) in err
    code, err = run_cli(capsys, [*TRAIN, "--epochs", epochs, "--out", run, "--force-new"])
    assert code == 0, err
    assert [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    with open(os.path.join(run, "config.json")) as f:
        assert TrainConfig.from_dict(json.load(f)).epochs == int(epochs)
