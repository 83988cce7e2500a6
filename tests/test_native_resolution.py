"""Patch training end to end (issue 20): whole-image scoring, tiled predict/evaluate, TTA, tiled serving."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from tfseg.cli import main
from tfseg.config import TrainConfig
from tfseg.errors import ConfigError

SIZES = [(40, 56), (33, 47), (64, 30), (50, 50), (27, 61), (45, 38), (58, 44), (36, 36), (41, 69), (30, 52),
         (62, 40), (48, 33), (35, 57), (52, 46)]


def write_folder(root):
    """Mixed-size images: dark noise with bright red rectangles (the foreground)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (h, w) in enumerate(SIZES):
        image = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        for _ in range(2):
            top, left = rng.integers(0, h - 6), rng.integers(0, w - 6)
            mask[top : top + rng.integers(3, 7), left : left + rng.integers(3, 12)] = 255
        image[mask > 0] = (220, 40, 40)
        Image.fromarray(image).save(root / "images" / f"im{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"im{i:02d}.png")
    return f"folder:{root}"


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    from tfseg.training import train

    root = tmp_path_factory.mktemp("native")
    data = write_folder(root / "data")
    config = TrainConfig(data=data, patch_size=16, scale=0.75, depth=2, base_filters=4, epochs=2, batch_size=4,
                         steps_per_epoch=3, precision="float32", out=str(root / "run"))
    metrics = train(config, verbose=0)
    return {"root": root, "data": data, "run": str(root / "run"), "metrics": metrics}


def numpy_dice(truths, probabilities):
    """Global hard Dice over all pixels: 2 TP / (2 TP + FP + FN); 1 when both are empty."""
    tp = fp = fn = 0
    for truth, p in zip(truths, probabilities):
        pred, true = p[..., 0] >= 0.5, truth > 0
        tp, fp, fn = tp + np.sum(pred & true), fp + np.sum(pred & ~true), fn + np.sum(~pred & true)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def test_patch_flags_are_generated_and_checked(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--patch-size N" in text and "--scale" in text and "--foreground-fraction" in text
    with pytest.raises(ConfigError, match="--scale 0.5: only applies with --patch-size"):
        TrainConfig(scale=0.5)
    assert TrainConfig(patch_size=64).model_input_size() == 64 and TrainConfig().model_input_size() == 96
    assert main(["train", "--patch-size", "4", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--patch-size 4" in err  # the CLI names the flag


@pytest.mark.slow
def test_patch_run_is_validated_and_tested_on_whole_images(patch_run):
    import tensorflow as tf

    from tfseg.saving import load_keras_model

    run = patch_run["run"]
    with open(os.path.join(run, "history.csv")) as f:
        header = f.readline().strip().split(",")
    assert {"val_dice", "val_iou", "val_loss"} <= set(header)
    assert load_keras_model(os.path.join(run, "model.keras")).inputs[0].shape[1:3] == (16, 16)
    # Recompute the test Dice in NumPy from the SavedModel's whole-image probabilities at each image's own size.
    with open(os.path.join(run, "splits.json")) as f:
        test_ids = json.load(f)["test"]
    serve = tf.saved_model.load(os.path.join(run, "saved_model", "1")).signatures["serving_default"]
    truths, probabilities = [], []
    for sample_id in test_ids:
        stem = os.path.splitext(os.path.basename(sample_id))[0]
        image = np.array(Image.open(patch_run["root"] / "data" / "images" / f"{stem}.png"))
        truths.append(np.array(Image.open(patch_run["root"] / "data" / "masks" / f"{stem}.png")))
        probabilities.append(serve(images=tf.constant(image[None]))["probabilities"].numpy()[0])
        assert probabilities[-1].shape[:2] == image.shape[:2]
    expected = numpy_dice(truths, probabilities)
    assert expected > 0.01  # a model that finds something, so that the comparison means something
    assert patch_run["metrics"]["test"]["dice"] == pytest.approx(expected, abs=2e-4)


@pytest.mark.slow
def test_evaluate_tiles_a_patch_run_by_itself_and_tta_changes_it(patch_run, capsys):
    run = patch_run["run"]
    assert main(["evaluate", "--model", run]) == 0
    out = capsys.readouterr().out
    assert "whole images, sliding window" in out
    assert f"dice {patch_run['metrics']['test']['dice']:.4f}" in out
    assert main(["evaluate", "--model", run, "--tta", "flips"]) == 0
    out_tta = capsys.readouterr().out
    assert "flip TTA" in out_tta and out_tta != out
    with pytest.raises(SystemExit) as stop:  # argparse's choices: one line, exit 2
        main(["evaluate", "--model", run, "--tta", "rot"])
    assert stop.value.code == 2


SERVE_WITHOUT_TFSEG = textwrap.dedent(
    """
    import sys
    sys.modules["tfseg"] = None  # tfseg is installed editable: block it so only TensorFlow is used
    import numpy as np
    import tensorflow as tf

    model_dir, png_path, out = sys.argv[1:]
    data = open(png_path, "rb").read()
    loaded = tf.saved_model.load(model_dir)
    default = loaded.signatures["serving_default"](images=tf.io.decode_png(data, channels=3)[tf.newaxis])
    encoded = loaded.signatures["serving_bytes"](image_bytes=tf.constant([data]))
    np.savez(out, default=default["probabilities"].numpy(), default_mask=default["mask"].numpy(),
             encoded=encoded["probabilities"].numpy())
    """
)

# served (in-graph sliding window) vs tfseg predict (the same windows run eagerly): float32 round-off only
SERVING_TOLERANCE = 1e-5


@pytest.mark.slow
def test_served_whole_image_equals_tfseg_predict_without_tfseg(patch_run, tmp_path):
    from tfseg.inference import load_predictor, read_image

    image = np.random.default_rng(5).integers(0, 256, (77, 123, 3), dtype=np.uint8)
    image[20:26, 30:90] = (220, 40, 40)
    png = tmp_path / "big.png"
    Image.fromarray(image).save(png)
    script = tmp_path / "serve.py"
    script.write_text(SERVE_WITHOUT_TFSEG)
    done = subprocess.run(
        [sys.executable, "-I", str(script), os.path.join(patch_run["run"], "saved_model", "1"), str(png),
         str(tmp_path / "out.npz")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    served = np.load(tmp_path / "out.npz")
    predictor = load_predictor(patch_run["run"])  # a patch run: tiled automatically, with its scale
    assert predictor.tiled and predictor.scale == 0.75
    local = predictor.probabilities([read_image(str(png))])[0]
    assert served["default"].shape == (1, 77, 123, 1)
    np.testing.assert_allclose(served["default"][0], local, atol=SERVING_TOLERANCE)
    np.testing.assert_allclose(served["encoded"][0], local, atol=SERVING_TOLERANCE)
    assert main(["predict", "--model", patch_run["run"], str(png), "--out", str(tmp_path / "pred")]) == 0
    mask = np.array(Image.open(tmp_path / "pred" / "big_mask.png")) > 0
    clear = np.abs(local[..., 0] - 0.5) > SERVING_TOLERANCE
    np.testing.assert_array_equal(mask[clear], served["default_mask"][0][clear] > 0)
    # Without the sliding window the same model gives another answer (the image is squashed to 16 x 16).
    resized = load_predictor(patch_run["run"], tiled=False).probabilities([read_image(str(png))])[0]
    assert np.abs(resized - local).max() > 0.01


def test_tiled_keras_model_on_a_window_sized_image_equals_plain_prediction(tmp_path):
    import keras

    from tfseg.inference import KerasPredictor
    from tfseg.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("unet", 32, base_filters=4, depth=2)
    plain = KerasPredictor("memory", model=model)
    tiled = KerasPredictor("memory", model=model).configure(tiled=True)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(tiled.probabilities([image])[0], plain.probabilities([image])[0], atol=1e-6)
    big = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert tiled.probabilities([big])[0].shape == (50, 70, 1)


def test_flip_tta_of_a_predictor_averages_the_flipped_predictions():
    import keras

    from tfseg.inference import KerasPredictor
    from tfseg.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("unet", 32, base_filters=4, depth=2)
    plain = KerasPredictor("memory", model=model)
    tta = KerasPredictor("memory", model=model).configure(tta="flips")
    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    expected = (plain.probabilities([image])[0] + plain.probabilities([image[:, ::-1]])[0][:, ::-1]
                + plain.probabilities([image[::-1]])[0][::-1]) / 3
    np.testing.assert_allclose(tta.probabilities([image])[0], expected, atol=1e-5)
    assert np.abs(expected - plain.probabilities([image])[0]).max() > 1e-4  # the flips do change something
