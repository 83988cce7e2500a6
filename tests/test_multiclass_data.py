"""Real multi-class data: an ignore label (VOC's 255 borders) through the loss, the metrics and
``evaluate``'s per-class table; colour-coded masks with a class-to-colour map."""

import csv
import os

import keras
import numpy as np
import pytest
from PIL import Image

from tfseg import cli
from tfseg.config import LOSSES, TrainConfig
from tfseg.errors import ConfigError, DataError
from tfseg.losses import IgnoreClassLoss, get_loss

IGNORE = 255


def labels_and_two_predictions(num_classes=3, seed=0):
    """Class ids with some 255 pixels, and two predictions that differ only on those pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, (2, 6, 6, 1)).astype(np.int32)
    y[:, 2, :, 0] = IGNORE
    p1 = rng.dirichlet(np.ones(num_classes), (2, 6, 6)).astype(np.float32)
    p2 = p1.copy()
    p2[:, 2] = rng.dirichlet(np.ones(num_classes), (2, 6)).astype(np.float32)
    return y, p1, p2


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_ignores_the_pixels_of_the_ignore_class(name):
    y, p1, p2 = labels_and_two_predictions()
    loss = get_loss(name, num_classes=3, ignore_class=IGNORE)
    a, b = float(loss(y, p1)), float(loss(y, p2))
    assert np.isfinite(a) and a == pytest.approx(b, abs=1e-6)
    # ...while the same loss without the ignore class does see them
    plain = get_loss(name, num_classes=3)
    assert float(plain(np.where(y == IGNORE, 0, y), p1)) != pytest.approx(
        float(plain(np.where(y == IGNORE, 0, y), p2)), abs=1e-6)


def test_ignored_pixels_leave_the_dice_loss_as_if_they_were_not_there():
    y, p1, _ = labels_and_two_predictions()
    keep = y[..., 0] != IGNORE
    loss = get_loss("dice", num_classes=3, ignore_class=IGNORE)
    plain = get_loss("dice", num_classes=3)
    # the kept pixels as one row of pixels: the Dice counts are sums, so the layout does not matter
    expected = float(plain(y[keep].reshape(1, 1, -1, 1), p1[keep].reshape(1, 1, -1, 3)))
    assert float(loss(y, p1)) == pytest.approx(expected, abs=1e-6)


def test_ignore_class_loss_round_trips_through_keras_serialization():
    y, p1, _ = labels_and_two_predictions()
    loss = get_loss("cce_dice", num_classes=3, ignore_class=IGNORE)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again, IgnoreClassLoss) and again.ignore_class == IGNORE
    assert float(again(y, p1)) == pytest.approx(float(loss(y, p1)), abs=1e-7)


def test_ignore_class_needs_class_id_masks(capsys):
    with pytest.raises(ConfigError, match="ignore_class 255: needs class-id masks"):
        TrainConfig(ignore_class=IGNORE).validate()
    with pytest.raises(ConfigError, match="0..255"):
        TrainConfig(ignore_class=300, num_classes=3).validate()
    assert cli.main(["train", "--ignore-class", "255"]) == 2
    assert "needs class-id masks" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate with an ignore label
SIZE = 32


def colour_classifier(path):
    """A saved model whose class is the brightest channel: red -> 0, green -> 1, blue -> 2."""
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", dtype="float32")(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3) * 50, np.zeros(3, np.float32)])
    model.save(path)
    return path


def write_voc_like_folder(root, count=8):
    """Left half red (class 0), right half green (class 1); the mask has a 255 border in columns
    15-16 and row 0 of the right half labelled 2 (the model predicts 1 there)."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, :16, 0] = 255
    image[:, 16:, 1] = 255
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, 16:] = 1
    mask[0, 17:] = 2
    mask[:, 15:17] = IGNORE
    for i in range(count):
        Image.fromarray(image).save(os.path.join(root, "images", f"v{i}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"v{i}.png"))
    return f"folder:{root}"


def test_a_255_border_is_a_problem_without_the_ignore_class(tmp_path):
    from tfseg.data.sources import open_source

    data = write_voc_like_folder(str(tmp_path / "voc"))
    with pytest.raises(DataError, match="255"):
        open_source(data, num_classes=3)
    assert len(open_source(data, num_classes=3, ignore_class=IGNORE).ids()) == 8


def test_evaluate_prints_and_writes_the_per_class_table(tmp_path, capsys):
    model = colour_classifier(str(tmp_path / "model.keras"))
    data = write_voc_like_folder(str(tmp_path / "voc"))
    out = str(tmp_path / "eval")
    code = cli.main(["evaluate", "--model", model, "--data", data, "--split", "test", "--ignore-class", "255",
                     "--out", out])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    import json

    result = json.load(open(os.path.join(out, "metrics.json")))
    images = result["test"]["num_images"]
    per_class = result["per_class"]
    # per image: class 0 480 pixels all right; class 1 465 right + 15 predicted where the truth is 2
    expected_iou = [1.0, 465 / 480, 0.0]
    expected_dice = [1.0, 930 / 945, 0.0]
    assert [row["iou"] for row in per_class["classes"]] == pytest.approx(expected_iou)
    assert [row["dice"] for row in per_class["classes"]] == pytest.approx(expected_dice)
    assert [row["true_pixels"] for row in per_class["classes"]] == [480 * images, 465 * images, 15 * images]
    assert per_class["mean_iou"] == pytest.approx(np.mean(expected_iou))
    assert per_class["mean_dice"] == pytest.approx(np.mean(expected_dice))
    with open(os.path.join(out, "per_class.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["class"] for row in rows] == ["0", "1", "2", "mean"]
    assert float(rows[-1]["iou"]) == pytest.approx(np.mean(expected_iou))
    assert "mask value 255 ignored" in printed.out and "mean" in printed.out
    assert f"{465 / 480:.4f}" in printed.out
