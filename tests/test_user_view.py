"""What a user sees: progress bars with a time estimate, one quiet flag, train's first and last lines,
epochs numbered from 1 everywhere, sample ids in picture titles, predict decoding each image once."""

import csv
import os

import keras
import numpy as np
import pytest
from PIL import Image

from tfseg import cli, viz
from tfseg.training.run_folder import truncate_history

from conftest import write_folder_dataset


def red_square_model(path, size=32):
    """A saved ``.keras`` model whose mask is exactly the pixels with red > 0.5 (a 1x1 convolution)."""
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([100.0, 0, 0], np.float32).reshape(1, 1, 3, 1),
                                  np.array([-50.0], np.float32)])
    model.save(path)
    return path


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model_path(tmp_path):
    return red_square_model(str(tmp_path / "model.keras"))


def write_square_images(folder, count, size):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        image = np.zeros((size, size, 3), np.uint8)
        image[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
        paths.append(os.path.join(folder, f"img{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def test_predict_on_a_list_of_files_shows_a_bar_with_a_time_estimate(capsys, tmp_path, model_path, monkeypatch):
    monkeypatch.setenv("TFSEG_PROGRESS", "1")  # stderr is not a terminal under pytest
    paths = write_square_images(str(tmp_path / "in"), 3, 40)
    code, _, err = run_cli(capsys, "predict", "--model", model_path, *paths, "--out", str(tmp_path / "out"),
                           "--batch-size", "2")
    assert code == 0, err
    assert "predicting" in err and "3/3 [" in err and "<00:00" in err, err  # [elapsed<remaining]
    # --quiet wins over the environment
    code, _, err = run_cli(capsys, "predict", "--model", model_path, *paths, "--out", str(tmp_path / "out2"),
                           "--quiet")
    assert code == 0 and "predicting" not in err and "%" not in err, err
    code, _, err = run_cli(capsys, "predict", "--model", model_path, paths[0], "--out", str(tmp_path / "out3"))
    assert "predicting" in err


def test_no_bar_when_stderr_is_not_a_terminal(capsys, tmp_path, model_path, monkeypatch):
    monkeypatch.delenv("TFSEG_PROGRESS", raising=False)
    write_square_images(str(tmp_path / "in"), 2, 40)
    code, _, err = run_cli(capsys, "predict", "--model", model_path, str(tmp_path / "in"), "--out",
                           str(tmp_path / "out"))
    assert code == 0 and err == "", err  # a log stays free of bars (and of per-batch lines)


def test_evaluate_and_the_file_check_show_progress(capsys, tmp_path, model_path, monkeypatch):
    monkeypatch.setenv("TFSEG_PROGRESS", "1")
    data = write_folder_dataset(str(tmp_path / "data"), count=12)
    code, out, err = run_cli(capsys, "evaluate", "--model", model_path, "--data", data, "--split", "test")
    assert code == 0, err
    for step in ("checking files", "scoring test"):  # one pass gives the scores and the per-image rows
        assert step in err, err
    assert "test: dice" in out


def test_every_verb_takes_quiet(capsys):
    for verb in cli.VERBS:
        with pytest.raises(SystemExit):
            cli.main([verb, "--help"])
        assert "--quiet" in capsys.readouterr().out, verb


def test_predict_decodes_each_image_once(capsys, tmp_path, model_path, monkeypatch):
    from tfseg.data import files

    calls = []
    real = files.read_rgb
    monkeypatch.setattr(files, "read_rgb", lambda path: calls.append(path) or real(path))
    paths = write_square_images(str(tmp_path / "in"), 3, 40)
    code, _, err = run_cli(capsys, "predict", "--model", model_path, *paths, "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert sorted(calls) == sorted(paths)


def test_predict_outlines_scale_with_the_image(capsys, tmp_path, model_path):
    paths = write_square_images(str(tmp_path / "in"), 1, 1200)
    code, _, err = run_cli(capsys, "predict", "--model", model_path, *paths, "--out", str(tmp_path / "out"),
                           "--overlay-format", "png")  # lossless: the line's pixels are exactly red
    assert code == 0, err
    overlay = np.asarray(Image.open(str(tmp_path / "out" / "img0_overlay.png")))
    row = overlay[600]
    red = (row[:, 0] == 255) & (row[:, 1] == 0) & (row[:, 2] == 0)
    assert red.sum() == 2 * 3  # a 3-pixel line (1200 / 400) on each side of the square


def test_outline_width_rule():
    assert [viz.outline_width((h, w)) for h, w in ((32, 32), (599, 300), (1024, 768), (3000, 4000))] == [1, 1, 3, 10]


def test_picture_titles_name_the_sample_ids():
    images = np.zeros((3, 8, 8, 3), np.uint8)
    masks = np.zeros((3, 8, 8), np.uint8)
    ids = ["IMD002", "IMD010", "IMD437"]
    fig = viz.plot_best_worst(images, masks, masks, [0.9, 0.2, 0.5], k=1, ids=ids)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("best 1: IMD002") and titles[1].startswith("worst 1: IMD010"), titles
    fig = viz.plot_predictions(images, masks, masks, dice=[1, 1, 1], ids=ids)
    assert [ax.get_title().split()[0] for ax in fig.axes if ax.get_title()] == ids


def write_history(path, epochs, val_dice):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "val_dice"])
        for epoch, dice in zip(epochs, val_dice):
            writer.writerow([epoch, 1.0, dice])


def test_best_epoch_of_a_history_counting_from_one_and_from_zero(tmp_path):
    path = str(tmp_path / "history.csv")
    write_history(path, [1, 2, 3], [0.2, 0.7, 0.5])
    assert viz.best_epoch(path) == 2
    write_history(path, [0, 1, 2], [0.2, 0.7, 0.5])  # tfseg 0.1.0 / Keras' CSVLogger
    assert viz.best_epoch(path) == 2


def test_resuming_renumbers_an_old_zero_based_history(tmp_path):
    path = str(tmp_path / "history.csv")
    write_history(path, [0, 1, 2], [0.2, 0.7, 0.5])
    truncate_history(path, 2)
    with open(path) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]
    write_history(path, [1, 2, 3], [0.2, 0.7, 0.5])
    truncate_history(path, 2)
    with open(path) as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]


@pytest.mark.slow
def test_train_says_what_it_trains_and_ends_with_one_summary_line(capsys, tmp_path):
    run = str(tmp_path / "run")
    code, out, err = run_cli(capsys, "train", "--data", "synthetic:24", "--image-size", "32", "--base-filters",
                             "4", "--depth", "2", "--epochs", "2", "--out", run, "--verbose", "2")
    assert code == 0, err
    lines = out.splitlines()
    first = lines[0]
    for words in ("training unet on synthetic:24", "24 samples", "train ", "val ", "test ", "32x32",
                  "precision float32", "strategy default"):
        assert words in first, first
    for step in ("scoring the best model", "drawing curves.png", "exporting the SavedModel"):
        assert any(line.startswith(step) for line in lines), out
    summaries = [line for line in lines if "test dice" in line]
    assert len(summaries) == 1 and summaries[0] == lines[-1] and run in lines[-1], out

    with open(os.path.join(run, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    import json

    metrics = json.load(open(os.path.join(run, "metrics.json")))
    best_row = max(rows, key=lambda row: float(row["val_dice"]))  # ties: the first, like the checkpoint
    assert metrics["best_epoch"] == int(best_row["epoch"]) == viz.best_epoch(os.path.join(run, "history.csv"))
    assert f"best {metrics['best_epoch']}" in lines[-1]

    # Quiet: the summary line only.
    code, out, err = run_cli(capsys, "train", "--data", "synthetic:24", "--image-size", "32", "--base-filters",
                             "4", "--depth", "2", "--epochs", "1", "--out", str(tmp_path / "quiet"), "--quiet")
    assert code == 0, err
    assert len(out.splitlines()) == 1 and "test dice" in out and err == "", (out, err)


def test_tensorboard_scalars_number_epochs_from_one(tmp_path):
    import glob

    import tensorflow as tf

    from tfseg.tensorboard import EpochTensorBoard

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile("adam", "binary_crossentropy")
    data = np.random.default_rng(0).random((4, 4, 4, 3)).astype(np.float32)
    model.fit(data, data[..., :1], epochs=2, verbose=0, callbacks=[EpochTensorBoard(str(tmp_path / "logs"))])
    steps = []
    for path in glob.glob(str(tmp_path / "logs" / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for value in event.summary.value if value.tag == "epoch_loss"]
    assert sorted(steps) == [1, 2]
