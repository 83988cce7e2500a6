"""Training phases, stops and checkpoints: the phase after --freeze-encoder-epochs keeps the cosine schedule, early
stopping in the frozen phase moves on to fine-tuning, an infinite loss stops like NaN, and a non-finite
learning rate is refused before anything trains."""

import csv
import math
import os

import keras
import pytest

from tfseg import cli
from tfseg.config import TrainConfig
from tfseg.errors import ConfigError
from tfseg.training import NaNGuard, train
from tfseg.training import fit as fit_module
from tfseg.training.callbacks import not_finite


class FakeValidationDice(keras.callbacks.Callback):
    """Writes a chosen ``val_dice`` per epoch into the logs (before the checkpoint and early stopping read it)."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_dice"] = self.values[epoch]


class StartingWeights(keras.callbacks.Callback):
    """Whether each ``fit`` (phase) starts from the weights of the best checkpoint, where there is one."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.from_best = []

    def on_train_begin(self, logs=None):
        import numpy as np

        if os.path.exists(self.path):
            best = keras.models.load_model(self.path).get_weights()
            self.from_best.append(all(np.array_equal(a, b) for a, b in zip(best, self.model.get_weights())))


def history(run):
    with open(os.path.join(run, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_early_stop_in_the_frozen_phase_moves_on_and_the_second_phase_keeps_the_cosine_schedule(
        tmp_path, monkeypatch):
    # epochs 1-3 frozen, 4-5 everything at a tenth of the rate. val_dice falls in epoch 2: with patience 1
    # the frozen phase stops there; it rises in the second phase, which must run to its end.
    values = [0.5, 0.4, 0.3, 0.6, 0.7]
    real = fit_module.make_callbacks

    run = str(tmp_path / "run")
    starts = StartingWeights(os.path.join(run, "model.keras"))

    def with_fake_dice(*args, **kwargs):
        callbacks = real(*args, **kwargs)
        return [starts, *callbacks[:2], FakeValidationDice(values), *callbacks[2:]]

    monkeypatch.setattr(fit_module, "make_callbacks", with_fake_dice)
    config = TrainConfig(data="synthetic:24", image_size=32, encoder="mobilenetv2", freeze_encoder_epochs=3,
                         epochs=5, patience=1, learning_rate=1e-2, batch_size=8, base_filters=2, out=run)
    metrics = train(config, verbose=0)
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 4, 5]  # epoch 3 of the frozen phase was not trained
    assert not metrics["stopped_early"] and metrics["epochs_completed"] == 5
    rates = [float(r["learning_rate"]) for r in rows]
    # frozen phase (3 epochs): warm-up to the peak in epoch 1, then cosine; stopped after epoch 2
    assert rates[0] == pytest.approx(1e-2)
    assert rates[1] == pytest.approx(1e-2 * (1 + math.cos(math.pi / 2)) / 2, rel=1e-4)
    # second phase (2 epochs) at a tenth: warm-up to 1e-3 in its first epoch, cosine to 0 at its end
    assert rates[2] == pytest.approx(1e-3)
    assert rates[3] == pytest.approx(0.0, abs=1e-9)
    assert metrics["best_epoch"] == 5
    # fine-tuning starts from the frozen phase's best epoch (1), not from epoch 2 (the weights compared are
    # model.keras's, rebuilt without compile state)
    assert starts.from_best == [True]


def test_an_infinite_loss_stops_training_like_nan():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for value in (math.inf, -math.inf, math.nan):
        guard = NaNGuard()
        guard.set_model(model)
        model.stop_training = False
        guard.on_train_batch_end(0, {"loss": value})
        assert guard.fired and model.stop_training, value
    guard = NaNGuard()
    guard.set_model(model)
    model.stop_training = False
    guard.on_train_batch_end(0, {"loss": 1e30})
    assert not guard.fired and not model.stop_training
    assert not not_finite(None) and not_finite(float("inf"))


@pytest.mark.parametrize("rate", ["inf", "nan", "-inf", "0"])
def test_a_non_finite_learning_rate_is_refused_before_training(rate, tmp_path, capsys):
    with pytest.raises(ConfigError, match="learning_rate .*positive finite"):
        TrainConfig(learning_rate=float(rate))
    run = tmp_path / "run"
    code = cli.main(["train", f"--learning-rate={rate}", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--learning-rate" in err and "finite" in err, err
    assert not run.exists()


@pytest.mark.parametrize("steps_per_epoch", [5, 1])
def test_a_one_epoch_phase_still_warms_up_and_ends_at_zero(steps_per_epoch):
    """The schedule's guards for short phases: a one-epoch phase peaks on its last-but-one step and reaches 0
    on its last; a one-step phase starts at the peak (no room for a warm-up) and reaches 0 after it."""
    from tfseg.training.fit import learning_rate_schedule, remaining_phases

    config = TrainConfig(epochs=1, learning_rate=1e-2)
    schedule = learning_rate_schedule(config, remaining_phases(config, done=0)[0], steps_per_epoch=steps_per_epoch)
    rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    if steps_per_epoch == 1:
        assert rate(0) == pytest.approx(1e-2) and rate(1) == pytest.approx(0.0, abs=1e-9)
        return
    assert rate(0) == pytest.approx(1e-3)
    assert rate(steps_per_epoch - 1) == pytest.approx(1e-2)
    assert rate(steps_per_epoch) == pytest.approx(0.0, abs=1e-9)


def test_steps_per_epoch_is_one_pass_over_the_train_split_rounded_up():
    from tfseg.training.fit import steps_per_epoch

    assert steps_per_epoch(TrainConfig(batch_size=4), 10) == 3
    assert steps_per_epoch(TrainConfig(batch_size=4), 8) == 2
    assert steps_per_epoch(TrainConfig(batch_size=4), 0) == 1  # never 0 steps
    assert steps_per_epoch(TrainConfig(batch_size=4, steps_per_epoch=7), 10) == 7


def test_best_checkpoint_keeps_the_first_of_equal_scores(tmp_path):
    """Ties keep the earlier epoch, the one EarlyStopping reports as best_epoch."""
    import numpy as np

    from tfseg.training import BestCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "model.keras")
    checkpoint = BestCheckpoint(path)
    checkpoint.set_model(model)
    first = [w.copy() for w in model.get_weights()]
    checkpoint.on_epoch_end(0, {"val_dice": 0.5})
    model.set_weights([w + 1.0 for w in first])
    checkpoint.on_epoch_end(1, {"val_dice": 0.5})
    saved = keras.models.load_model(path).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, first))
    checkpoint.on_epoch_end(2, {"val_dice": 0.6})
    assert all(np.array_equal(a, b + 1.0) for a, b in zip(keras.models.load_model(path).get_weights(), first))


def test_a_freeze_of_one_epoch_is_a_phase_and_only_the_last_phase_is_final():
    from tfseg.training.fit import remaining_phases, training_phases

    config = TrainConfig(model="deeplabv3plus", epochs=3, freeze_encoder_epochs=1)
    assert [(p["start"], p["end"], p["frozen"]) for p in training_phases(config)] == [(0, 1, True), (1, 3, False)]
    assert [p["final"] for p in remaining_phases(config, done=0)] == [False, True]
    assert [p["final"] for p in remaining_phases(TrainConfig(epochs=3), done=1)] == [True]


def test_nan_guard_stops_at_the_end_of_an_epoch_whose_weights_are_not_finite():
    import numpy as np

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    guard = NaNGuard()
    guard.set_model(model)
    model.stop_training = False
    guard.on_epoch_end(0, {"loss": 0.5})
    assert not guard.fired and not model.stop_training
    model.set_weights([np.full_like(w, np.inf) for w in model.get_weights()])
    guard.on_epoch_end(1, {"loss": 0.5})  # a finite loss, as batch normalization allows
    assert guard.fired and model.stop_training


def test_throughput_counts_the_steps_of_each_timed_epoch(monkeypatch):
    from tfseg.training import Throughput, callbacks

    clock = iter([0.0, 1.0, 10.0, 11.0, 12.0, 13.0])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    timer = Throughput(batch_size=8)  # no cap on the images of an epoch
    timer.on_train_begin()
    timer.on_epoch_begin(0); timer.on_train_batch_end(0); timer.on_epoch_end(0)  # first epoch: not counted
    timer.on_epoch_begin(1)
    for batch in range(3):
        timer.on_train_batch_end(batch)
    timer.on_epoch_end(1)
    assert (timer.images, timer.seconds) == (24, 3.0)


def _backup(run, final_phase=True, stopper=None):
    from tfseg.training import RunBackup, Throughput

    tracked = {} if stopper is None else {"early_stopping": stopper}
    return RunBackup(run, tracked, Throughput(batch_size=4), final_phase=final_phase)


@pytest.mark.parametrize("stop, final, expected", [(False, True, False), (True, False, False), (True, True, True)])
def test_only_an_early_stop_in_the_final_phase_ends_the_run(tmp_path, stop, final, expected):
    from tfseg.training import training_state

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup = _backup(str(tmp_path), final_phase=final)
    backup.set_model(model)
    model.stop_training = stop
    backup.on_epoch_end(0, {"loss": 0.5})
    assert training_state(str(tmp_path))["stopped_early"] is expected


def test_resuming_without_a_best_model_keeps_early_stopping_without_best_weights(tmp_path):
    """A state.json can exist before any model.keras (no finite val_dice yet): resuming must not fail."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    writer = _backup(str(tmp_path))
    writer.set_model(model)
    writer.on_epoch_end(0, {"loss": 0.5})
    stopper = keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", restore_best_weights=True)
    stopper.set_model(model)
    stopper.on_train_begin()
    reader = _backup(str(tmp_path), stopper=stopper)
    reader.set_model(model)
    reader.on_train_begin()
    assert stopper.best_weights is None


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_callback_list_of_each_schedule(tmp_path, schedule):
    """cosine: the schedule sets the rate and LearningRateLog logs it; plateau: ReduceLROnPlateau does both.
    Early stopping restores the best weights (the next phase starts from them); the backup comes last."""
    from tfseg.training import NaNGuard as Guard, RunBackup, Throughput, make_callbacks
    from tfseg.training.callbacks import LearningRateLog

    throughput = Throughput(batch_size=4)
    backup = RunBackup(str(tmp_path), {}, throughput)
    callbacks = make_callbacks(TrainConfig(lr_schedule=schedule), str(tmp_path), throughput, Guard(), backup, None)
    kinds = [type(c) for c in callbacks]
    plateau = keras.callbacks.ReduceLROnPlateau in kinds
    assert plateau == (schedule == "plateau") and (LearningRateLog in kinds) == (schedule == "cosine")
    assert callbacks[-1] is backup and set(backup.tracked) == {"checkpoint", "early_stopping"} | (
        {"reduce_lr"} if plateau else set())
    assert backup.tracked["early_stopping"].restore_best_weights
