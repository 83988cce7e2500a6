"""Resume after a crash: ``kill -9`` mid-run, rerun the same command, end with every epoch once.

Also: the callback state that Keras' BackupAndRestore does not keep (best values,
patience counters) comes back, a changed configuration is refused with the
differences, and ``--force-new`` starts over.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tfseg import cli, training
from tfseg.config import TrainConfig

from conftest import write_folder_dataset

TIMEOUT = 300


def history_epochs(run):
    path = os.path.join(run, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def run_cli(capsys, argv):
    """``(exit code, stdout + stderr)`` of ``tfseg argv`` run in this process."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def train_in_background(tmp_path, epochs, until_epoch):
    """``(process, run folder, arguments)`` of a ``tfseg train`` subprocess that has finished ``until_epoch`` epochs."""
    data = write_folder_dataset(str(tmp_path / "data"), count=24)
    run = str(tmp_path / "run")
    # 30 steps of 8 images per epoch: long enough to stop mid-run, short enough for CI.
    args = ["train", "--data", data, "--image-size", "32", "--base-filters", "4", "--depth", "2",
            "--batch-size", "8", "--steps-per-epoch", "30", "--epochs", str(epochs), "--patience", "20",
            "--out", run, "--verbose", "2"]
    process = subprocess.Popen([sys.executable, "-m", "tfseg", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + TIMEOUT
    while len(history_epochs(run)) < until_epoch and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    return process, run, args


@pytest.mark.slow
def test_kill_minus_9_then_the_same_command_resumes(tmp_path, capsys):
    process, run, args = train_in_background(tmp_path, epochs=6, until_epoch=2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_after = history_epochs(run)
    assert 2 <= len(killed_after) < 6, f"not killed mid-run: {killed_after}, {process.stderr.read()[-2000:]}"
    assert not os.path.exists(os.path.join(run, "metrics.json"))

    # The same command again (in this process: it is the run folder that carries the state).
    code, err = run_cli(capsys, args)
    assert code == 0, err
    assert "resuming after epoch" in err
    assert history_epochs(run) == [1, 2, 3, 4, 5, 6]
    with open(os.path.join(run, "metrics.json")) as f:
        assert json.load(f)["epochs_completed"] == 6
    model = keras.models.load_model(os.path.join(run, "model.keras"))
    assert model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 32, 32, 1)

    # The complete run again: nothing to do.
    code, err = run_cli(capsys, args)
    assert code == 0 and "already complete" in err

    # A changed setting is refused, naming it; nothing is touched.
    code, err = run_cli(capsys, [*args, "--learning-rate", "0.01"])
    assert code == 2 and f"learning_rate {TrainConfig().learning_rate!r} -> 0.01" in err
    assert history_epochs(run) == [1, 2, 3, 4, 5, 6]

    # --force-new moves the old run aside and trains the new settings.
    code, err = run_cli(capsys, [*args, "--epochs", "1", "--force-new"])
    assert code == 0, err
    assert history_epochs(run) == [1]
    old = [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    assert len(old) == 1 and history_epochs(str(tmp_path / old[0])) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_sigterm_prints_one_line_then_the_same_command_resumes(tmp_path, capsys):
    # What a scheduler or `docker stop` sends: stopped like Ctrl-C, one line, the run stays resumable.
    process, run, args = train_in_background(tmp_path, epochs=4, until_epoch=1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=TIMEOUT)
    lines = [line for line in err.splitlines() if line.startswith("tfseg")]
    assert process.returncode == 143 and lines == [
        "tfseg train: terminated (SIGTERM); run the same command again to resume after the last completed epoch"
    ], (process.returncode, err[-2000:])
    stopped_after = history_epochs(run)
    assert 1 <= len(stopped_after) < 4 and not os.path.exists(os.path.join(run, "metrics.json"))
    code, err = run_cli(capsys, args)
    assert code == 0 and "resuming after epoch" in err, err
    assert history_epochs(run) == [1, 2, 3, 4]


def _tiny_model():
    from tfseg.metrics import Dice

    inputs = keras.Input((8, 8, 3), name="images")
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="probabilities")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=[Dice()])
    return model


def _callbacks(run, config):
    throughput = training.Throughput(batch_size=4, epoch_images=8)
    backup = training.RunBackup(run, {}, throughput)
    callbacks = training.make_callbacks(config, run, throughput, training.NaNGuard(), backup, None)
    return callbacks, backup


def test_backup_restores_what_keras_backup_and_restore_forgets(tmp_path):
    run = str(tmp_path)
    config = TrainConfig(patience=6, lr_schedule="plateau")  # the schedule with the most callback state
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 8, 8, 3)).astype("float32")
    y = (rng.uniform(size=(8, 8, 8, 1)) > 0.5).astype("float32")
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    callbacks, backup = _callbacks(run, config)
    model.fit(x, y, validation_data=(x, y), batch_size=4, epochs=3, callbacks=callbacks, verbose=0)
    tracked = backup.tracked
    # Pretend ReduceLROnPlateau had acted, then save the state of this epoch again.
    model.optimizer.learning_rate.assign(1e-4)
    tracked["reduce_lr"].wait, tracked["early_stopping"].wait = 1, 2
    backup.save(3)
    expected_weights = [w.copy() for w in model.get_weights()]
    expected = {name: tracked[name].best for name in ("checkpoint", "early_stopping", "reduce_lr")}

    restored_model = _tiny_model()  # as a new process would build it
    assert training.callbacks.restore_weights(restored_model, run, phase=0) == 3  # weights + optimizer
    callbacks, backup = _callbacks(run, config)
    for callback in callbacks:
        callback.set_model(restored_model)
        callback.on_train_begin()  # the others reset their state, the backup (last) restores it
    tracked = backup.tracked
    assert float(restored_model.optimizer.learning_rate) == pytest.approx(1e-4)
    assert int(restored_model.optimizer.iterations) == 6
    for a, b in zip(restored_model.get_weights(), expected_weights):
        np.testing.assert_array_equal(a, b)
    for name, best in expected.items():
        assert tracked[name].best == pytest.approx(best), name
    assert (tracked["reduce_lr"].wait, tracked["early_stopping"].wait) == (1, 2)
    assert tracked["early_stopping"].best_weights is not None  # from model.keras
    assert backup.throughput.images == 16  # epochs 2 and 3 were timed


def test_the_backup_names_a_complete_weights_file(tmp_path):
    run = str(tmp_path)
    model = _tiny_model()
    callbacks, backup = _callbacks(run, TrainConfig())
    for callback in callbacks:
        callback.set_model(model)
    backup.on_epoch_end(0, {"loss": 0.5})
    backup.on_epoch_end(1, {"loss": 0.4})
    backup.on_epoch_end(2, {"loss": float("nan")})  # not backed up
    state = training.training_state(run)
    assert state["epoch"] == 2
    assert sorted(os.listdir(os.path.join(run, "backup"))) == [state["weights"], "state.json"]
