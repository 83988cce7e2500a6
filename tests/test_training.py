"""tfseg.training: the run folder, its files, and the pieces that make resume safe.

End-to-end runs use tiny settings (32 px, 4 base filters, depth 2) and a tiny
``folder:`` data set written here (decoding PNGs is much cheaper than generating
``synthetic`` samples); one run uses ``synthetic:24``, the default source.
"""

import csv
import dataclasses
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from tfseg.config import TrainConfig
from tfseg.errors import ConfigError, TfsegError
from tfseg import fileio, training
from tfseg.training import callbacks, run_folder

from conftest import TINY, write_folder_dataset  # noqa: E402,F401 - shared with other test files


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "synthetic")
    # precision and strategy named: "auto" picks others on a GPU machine (tested with stand-ins elsewhere)
    config = TrainConfig(data="synthetic:24", epochs=2, out=out, precision="float32", strategy="default", **TINY)
    return config, training.train(config, verbose=0)


def numpy_test_dice(config):
    """Dice over all test pixels of the run's model.keras, counted in NumPy (p >= 0.5, truth > 0.5)."""
    from tfseg.data import load_dataset

    model = keras.models.load_model(os.path.join(config.out, "model.keras"))
    dataset = load_dataset(config.data, "test", image_size=config.image_size, batch_size=8, seed=config.seed,
                           fractions=config.split_fractions(), augment=False, shuffle=False)
    tp = fp = fn = 0
    for images, masks in dataset:
        predicted = np.asarray(model.predict_on_batch(images)) >= 0.5
        truth = np.asarray(masks) > 0.5
        tp, fp, fn = tp + np.sum(predicted & truth), fp + np.sum(predicted & ~truth), fn + np.sum(~predicted & truth)
    return 2 * tp / (2 * tp + fp + fn)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_writes_every_file_of_the_run_folder(synthetic_run):
    config, metrics = synthetic_run
    run = config.out
    for name in ("config.json", "splits.json", "model.keras", "history.csv", "metrics.json",
                 "curves.png", "predictions.png"):
        assert os.path.getsize(os.path.join(run, name)) > 0, name
    assert os.path.isfile(os.path.join(run, "saved_model", "1", "saved_model.pb"))
    with open(os.path.join(run, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(metrics))
    assert not [n for n in os.listdir(run) if ".tmp" in n], "temporary files left behind"


@pytest.mark.slow
def test_metrics_json_has_the_documented_keys(synthetic_run):
    config, metrics = synthetic_run
    for key in ("val", "test", "train_images_per_second", "seconds", "precision", "strategy",
                "epochs_completed"):
        assert key in metrics
    assert set(metrics["test"]) == {"dice", "iou", "loss", "num_images"}
    assert {"dice", "iou", "loss"} <= set(metrics["val"])
    assert metrics["test"]["dice"] == pytest.approx(numpy_test_dice(config), abs=1e-4)
    assert metrics["epochs_completed"] == 2
    assert metrics["precision"] == "float32"
    assert metrics["strategy"] == "default"
    assert metrics["train_images_per_second"] > 0  # epoch 2 was timed
    with open(os.path.join(config.out, "splits.json")) as f:
        splits = json.load(f)
    assert metrics["test"]["num_images"] == len(splits["test"])
    assert sum(len(ids) for ids in splits.values()) == 24


@pytest.mark.slow
def test_history_has_one_row_per_epoch(synthetic_run):
    config, _ = synthetic_run
    with open(os.path.join(config.out, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2"]  # epochs counted from 1, as everywhere
    assert {"loss", "dice", "val_dice", "val_loss", "learning_rate"} <= set(rows[0])


@pytest.mark.slow
def test_config_json_round_trips_into_trainconfig(synthetic_run):
    config, _ = synthetic_run
    with open(os.path.join(config.out, "config.json")) as f:
        stored = TrainConfig.from_dict(json.load(f))
    # the settings as given, with what the data decided: 3-band 8-bit photographs, x / 255
    assert stored == dataclasses.replace(config, normalization={"kind": "uint8"}, channels=3, input_dtype="uint8")


@pytest.mark.slow
def test_model_keras_loads_in_safe_mode(synthetic_run):
    config, _ = synthetic_run
    model = keras.models.load_model(os.path.join(config.out, "model.keras"), safe_mode=True)
    assert model.input.name == "images" and model.output.dtype == "float32"


@pytest.mark.slow
def test_a_complete_run_is_not_trained_again(synthetic_run):
    config, metrics = synthetic_run
    before = os.stat(os.path.join(config.out, "model.keras")).st_mtime_ns
    assert training.train(config, verbose=0) == json.loads(json.dumps(metrics))
    assert os.stat(os.path.join(config.out, "model.keras")).st_mtime_ns == before


@pytest.mark.slow
def test_evaluate_scores_the_runs_test_split_like_training_did(synthetic_run, tmp_path):
    config, metrics = synthetic_run
    out = str(tmp_path / "eval")
    result = training.evaluate(config.out, out=out)  # data, seed, fractions from config.json
    assert result["test"]["num_images"] == metrics["test"]["num_images"]
    assert result["test"]["dice"] == pytest.approx(metrics["test"]["dice"], abs=1e-5)
    with open(os.path.join(out, "per_image.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(config.out, "splits.json")) as f:
        assert [row["id"] for row in rows] == json.load(f)["test"]
    assert set(rows[0]) == {"id", "dice", "iou", "hausdorff95", "mean_surface_distance"}
    assert result["per_image"]["dice_mean"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]))
    for name in ("metrics.json", "dice_histogram.png", "best_worst.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0


@pytest.mark.slow
def test_tfseg_evaluate_prints_the_scores(synthetic_run, capsys):
    from tfseg import cli

    config, metrics = synthetic_run
    assert cli.main(["evaluate", "--model", config.out, "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"val: dice {metrics['val']['dice']:.4f}"), out


@pytest.mark.slow
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_nan_loss_stops_with_advice(folder_data, tmp_path, monkeypatch, value):
    import tfseg.losses

    def nan_loss(y_true, y_pred):  # NaN, or +inf: an infinite loss stops training the same way
        return keras.ops.mean(y_pred) * 0.0 + float(value)

    monkeypatch.setattr(tfseg.losses, "get_loss", lambda name, num_classes=1, ignore_class=None, **options: nan_loss)
    config = TrainConfig(data=folder_data, epochs=2, out=str(tmp_path / "run"), **TINY)
    with pytest.raises(TfsegError, match="--learning-rate") as error:
        training.train(config, verbose=0)
    assert "--precision float32" in str(error.value) and "\n" not in str(error.value)
    assert not os.path.exists(os.path.join(config.out, "backup", "state.json"))  # NaN weights not backed up


@pytest.mark.slow
def test_a_complete_run_deletes_its_backup_weights_and_refuses_more_epochs_by_name(synthetic_run):
    config, _ = synthetic_run
    backup = os.path.join(config.out, "backup")
    assert os.listdir(backup) == ["state.json"]
    with open(os.path.join(backup, "state.json")) as f:
        state = json.load(f)
    assert state["weights"] is None and state["epoch"] == 2
    assert training.run_status(config) == "complete"
    with pytest.raises(ConfigError, match=r"backup weights were removed then; .*--keep-backup.*--force-new"):
        training.run_status(dataclasses.replace(config, epochs=3))


@pytest.mark.slow
def test_keep_backup_keeps_the_weights_and_more_epochs_continue_the_run(folder_data, tmp_path):
    config = TrainConfig(data=folder_data, epochs=1, keep_backup=True, out=str(tmp_path / "run"), **TINY)
    training.train(config, verbose=0)
    assert any(name.endswith(".weights.h5") for name in os.listdir(os.path.join(config.out, "backup")))
    # keep_backup may change between the calls: without it, the extended run then deletes them.
    metrics = training.train(dataclasses.replace(config, epochs=2, keep_backup=False), verbose=0)
    assert metrics["epochs_completed"] == 2
    assert os.listdir(os.path.join(config.out, "backup")) == ["state.json"]


@pytest.mark.slow
def test_tensorboard_logs_scalars_and_prediction_images(folder_data, tmp_path):
    pytest.importorskip("tensorboard")
    config = TrainConfig(data=folder_data, epochs=1, tensorboard=True, out=str(tmp_path / "run"), **TINY)
    training.train(config, verbose=0)
    logs = os.path.join(config.out, "logs")
    for folder in ("train", "validation", "images"):
        assert any(name.startswith("events.out") for name in os.listdir(os.path.join(logs, folder))), folder


def test_bad_data_leaves_no_run_folder(tmp_path):
    config = TrainConfig(data=f"folder:{tmp_path}/missing", out=str(tmp_path / "run"), **TINY)
    with pytest.raises(TfsegError):
        training.train(config, verbose=0)
    assert not os.path.exists(config.out)


def test_bad_model_option_leaves_no_run_folder(folder_data, tmp_path):
    config = TrainConfig(data=folder_data, out=str(tmp_path / "run"), **{**TINY, "image_size": 34})
    with pytest.raises(ConfigError, match="image_size 34"):
        training.train(config, verbose=0)
    assert not os.path.exists(config.out)


# ----------------------------------------------------------------------------- run folder rules
def test_default_run_dir_is_model_and_data_kind():
    assert training.default_run_dir(TrainConfig()) == os.path.join("runs", "unet-synthetic")
    assert training.default_run_dir(TrainConfig(model="segnet", data="ph2:/x")) == os.path.join("runs", "segnet-ph2")


def _fake_run(folder, config):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config.to_json())


def test_changed_settings_are_refused_with_the_differences(tmp_path):
    old = TrainConfig(out=str(tmp_path / "run"), learning_rate=1e-3)
    _fake_run(old.out, old)
    new = dataclasses.replace(old, learning_rate=1e-2, loss="dice")
    with pytest.raises(ConfigError) as error:
        training.run_status(new)
    message = str(error.value)
    assert "learning_rate 0.001 -> 0.01" in message and "loss 'bce_dice' -> 'dice'" in message
    assert "--force-new" in message and "\n" not in message
    assert training.run_status(new, force_new=True) == "replace"
    assert training.run_status(dataclasses.replace(old, epochs=99)) == "resume"  # more epochs: continue


def test_a_folder_that_is_not_a_run_is_refused_even_with_force_new(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for force_new in (False, True):
        with pytest.raises(ConfigError, match="not a tfseg run folder"):
            training.run_status(TrainConfig(out=str(tmp_path)), force_new=force_new)


def test_force_new_moves_the_old_run_aside(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"))
    _fake_run(config.out, config)
    run_folder.start_run_dir(config, "replace", log=lambda message: None)
    moved = [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    assert len(moved) == 1 and os.path.exists(tmp_path / moved[0] / "config.json")
    assert os.listdir(config.out) == ["config.json"]


def test_truncate_history_drops_rows_of_unfinished_epochs(tmp_path):
    path = str(tmp_path / "history.csv")
    with open(path, "w") as f:
        f.write("epoch,loss\n0,0.9\n1,0.8\n2,0.7\n")
    run_folder.truncate_history(path, 2)
    # a 0-based history (tfseg 0.1.0) comes back numbered from 1, as tfseg writes it now
    assert open(path).read().split() == ["epoch,loss", "1,0.9", "2,0.8"]
    run_folder.truncate_history(path, 0)
    assert not os.path.exists(path)


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "metrics.json")
    fileio.write_json_atomic(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert json.load(open(path)) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


# ----------------------------------------------------------------------------- schedule and timing
def test_freeze_schedule_trains_frozen_then_everything_at_a_tenth():
    config = TrainConfig(model="deeplabv3plus", epochs=10, freeze_encoder_epochs=3, learning_rate=1e-3)
    first, second = training.training_phases(config)
    assert (first["start"], first["end"], first["frozen"], first["learning_rate"]) == (0, 3, True, 1e-3)
    assert (second["start"], second["end"], second["frozen"]) == (3, 10, False)
    assert second["learning_rate"] == pytest.approx(1e-4)
    resumed = training.remaining_phases(config, done=5)
    assert [(p["index"], p["start"], p["end"]) for p in resumed] == [(1, 5, 10)]
    assert training.training_phases(TrainConfig(epochs=4, learning_rate=0.01)) == [
        {"start": 0, "end": 4, "frozen": False, "learning_rate": 0.01}
    ]


def test_throughput_leaves_out_the_first_epoch(monkeypatch):
    clock = iter([0.0, 10.0,  # epoch 1: begin, one batch (tracing: not counted)
                  20.0, 21.0, 22.0,  # epoch 2: begin, two batches
                  30.0, 31.0, 32.0])  # epoch 3
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    timer = training.Throughput(batch_size=8, epoch_images=12)
    timer.on_train_begin()
    timer.on_epoch_begin(0); timer.on_train_batch_end(0); timer.on_epoch_end(0)
    assert timer.images_per_second() is None
    for epoch in (1, 2):
        timer.on_epoch_begin(epoch); timer.on_train_batch_end(0); timer.on_train_batch_end(1)
        timer.on_epoch_end(epoch)
    assert timer.images_per_second() == pytest.approx(24 / 4.0)  # 12 images (not 16) per 2 s epoch


def test_cosine_schedule_warms_up_for_one_epoch_then_decays_to_zero():
    from tfseg.training.fit import learning_rate_schedule, remaining_phases

    config = TrainConfig(epochs=10, learning_rate=1e-2)
    phase = remaining_phases(config, done=0)[0]
    schedule = learning_rate_schedule(config, phase, steps_per_epoch=5)
    rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert rate(0) == pytest.approx(1e-3)  # a tenth of the peak
    assert rate(5) == pytest.approx(1e-2)  # peak after one epoch of warm-up
    assert rate(5 + 45 // 2) == pytest.approx(1e-2 * (1 + np.cos(np.pi * 22 / 45)) / 2, rel=1e-5)
    assert rate(50) == pytest.approx(0.0, abs=1e-9)  # zero at the last step
    # A resumed run keeps the curve of the whole phase (its optimizer's step count is restored).
    resumed = learning_rate_schedule(config, remaining_phases(config, done=4)[0], steps_per_epoch=5)
    assert float(keras.ops.convert_to_numpy(resumed(30))) == pytest.approx(rate(30))
    assert learning_rate_schedule(TrainConfig(lr_schedule="plateau"), phase, 5) == 1e-2  # constant: the peak


def test_a_config_json_without_lr_schedule_keeps_the_old_plateau_schedule():
    values = TrainConfig().to_dict()
    del values["lr_schedule"]
    assert TrainConfig.from_dict(values).lr_schedule == "plateau"
    assert TrainConfig().lr_schedule == "cosine"
