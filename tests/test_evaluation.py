"""Scoring (tfseg.evaluation): the per-class table and boundary distances at their edges, and one run's
scores equal to what ``tfseg evaluate`` and ``tfseg predict`` give for the same images."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from tfseg import boundary
from tfseg.evaluation import ImageRows, per_class_scores, write_per_class_csv
from tfseg.segment import Settings


def one_hot(ids, classes):
    return np.eye(classes, dtype=np.float32)[ids]


def test_a_class_predicted_but_never_true_scores_iou_and_dice_0(tmp_path):
    true = np.zeros((6, 8), np.uint8)
    true[:, 4:] = 1  # classes 0 and 1 are true; 2 never is; 3 is neither true nor predicted
    predicted = true.copy()
    predicted[:2, :2] = 2  # 4 pixels of class 0 predicted as class 2
    table = ImageRows(Settings(window=(6, 8), num_classes=4))
    table.add(np.zeros((6, 8, 3), np.uint8), true[..., None], one_hot(predicted, 4))
    scores = per_class_scores(table.confusion)
    rows = {row["class"]: row for row in scores["classes"]}
    assert rows[2]["iou"] == 0.0 and rows[2]["dice"] == 0.0  # a score of 0, not "no score"
    assert (rows[2]["true_pixels"], rows[2]["predicted_pixels"]) == (0, 4)
    assert rows[3]["iou"] is None and rows[3]["dice"] is None  # no pixel either way: no score
    assert rows[0]["iou"] == pytest.approx(20 / 24) and rows[1]["iou"] == 1.0
    # the means leave out the background (by default) and class 3 (no pixel): classes 1 and 2
    assert scores["classes_scored"] == 2 and scores["mean_iou"] == pytest.approx((1.0 + 0.0) / 2)
    assert scores["background_included"] is False
    everything = per_class_scores(table.confusion, include_background=True)
    assert everything["classes_scored"] == 3 and everything["mean_iou"] == pytest.approx((20 / 24 + 1.0 + 0.0) / 3)
    # counted as 1 on request, class 3 joins the means
    counted = per_class_scores(table.confusion, include_background=True, ignore_empty=False)
    assert counted["classes_scored"] == 4 and counted["mean_iou"] == pytest.approx((20 / 24 + 1.0 + 0.0 + 1.0) / 4)
    # the image's own row: the same rule (classes 0, 1, 2 of this image; class 3 absent)
    assert table.rows[0]["iou"] == pytest.approx((20 / 24 + 1.0 + 0.0) / 3)
    write_per_class_csv(str(tmp_path / "per_class.csv"), scores)
    with open(tmp_path / "per_class.csv") as f:
        written = {row["class"]: row for row in csv.DictReader(f)}
    assert float(written["2"]["iou"]) == 0.0 and written["3"]["iou"] == ""


@pytest.mark.parametrize("ignore_empty", [True, False])
def test_keras_metrics_and_evaluation_rows_follow_one_rule_for_absent_classes(ignore_empty, tmp_path):
    from tfseg.evaluation import SplitScores, summarize_rows
    from tfseg.metrics import Dice, IoU

    rng = np.random.default_rng(3)
    classes = 5  # truth uses 0..2, predictions 0..3 (3 predicted, never true); 4 appears nowhere
    trues = [rng.integers(0, 3, (8, 8)).astype(np.uint8) for _ in range(4)]
    trues[1][:] = 0  # an image holding only the background
    preds = [np.where(rng.uniform(size=(8, 8)) < 0.7, t, rng.integers(0, 4, (8, 8))) for t in trues]
    rows = ImageRows(Settings(window=(8, 8), num_classes=classes), ignore_empty=ignore_empty)
    split = SplitScores(classes, ignore_empty=ignore_empty)
    metrics = {}
    for name, cls in (("dice", Dice), ("iou", IoU)):
        for per_image, reduction in ((True, "image"), (False, "split")):
            metrics[f"{name}_{reduction}"] = cls(num_classes=classes, per_image=per_image, ignore_empty=ignore_empty)
    for true, pred in zip(trues, preds):
        probabilities = one_hot(pred, classes)
        rows.add(np.zeros((8, 8, 3), np.uint8), true[..., None], probabilities)
        split.add(true[..., None], probabilities)
        for metric in metrics.values():
            metric.update_state(true[None, ..., None], probabilities[None])
    summary = summarize_rows(rows.named([f"i{i}" for i in range(4)]))
    table = per_class_scores(rows.confusion, include_background=True, ignore_empty=ignore_empty)
    scores = split.result()
    for name in ("dice", "iou"):
        # per image: the rows' mean is the per-image metric's
        assert summary[f"{name}_mean"] == pytest.approx(float(metrics[f"{name}_image"].result()), abs=1e-6)
        # over the split: the table's mean (background included) is the Keras metric's and evaluate's
        assert table[f"mean_{name}"] == pytest.approx(float(metrics[f"{name}_split"].result()), abs=1e-6)
        assert scores[name] == pytest.approx(table[f"mean_{name}"], abs=1e-6)
    # image 1 (background only, predicted 0..3): by hand, from its own classes
    t, p = trues[1], preds[1]
    dice = [2 * np.sum((t == c) & (p == c)) / (np.sum(t == c) + np.sum(p == c)) for c in range(classes)
            if np.sum(t == c) + np.sum(p == c)]
    dice += [] if ignore_empty else [1.0] * (classes - len(dice))
    assert rows.rows[1]["dice"] == pytest.approx(np.mean(dice), abs=1e-6)
    assert table["classes_scored"] == (4 if ignore_empty else 5)


def test_an_image_with_nothing_true_and_nothing_predicted_has_no_score(tmp_path):
    from tfseg.evaluation import summarize_rows, write_rows_csv

    rows = ImageRows(Settings(window=(4, 4), num_classes=1))
    full = np.zeros((4, 4, 1), np.uint8)
    full[:2] = 1
    rows.add(np.zeros((4, 4, 3), np.uint8), full, full.astype(np.float32))  # Dice 1
    rows.add(np.zeros((4, 4, 3), np.uint8), np.zeros_like(full), np.zeros((4, 4, 1), np.float32))  # nothing
    named = rows.named(["a", "b"])
    assert named[0]["dice"] == 1.0 and np.isnan(named[1]["dice"])
    summary = summarize_rows(named)
    assert summary["dice_mean"] == 1.0 and summary["scored_images"] == 1
    write_rows_csv(str(tmp_path / "per_image.csv"), named)
    with open(tmp_path / "per_image.csv") as f:
        assert [row["dice"] for row in csv.DictReader(f)] == ["1.0", ""]


def test_boundary_distances_never_count_ignored_pixels():
    ignore = 255
    true = np.zeros((20, 20), np.uint8)
    true[4:9, 4:9] = 1
    true[:, 15:] = ignore  # a void band far from the object
    right = one_hot(np.where(true == 1, 1, 0), 2)
    band = one_hot(np.where((true == 1) | (true == ignore), 1, 0), 2)  # also "finds" the void band
    table = ImageRows(Settings(window=(20, 20), num_classes=2), ignore_class=ignore)
    for probabilities in (right, band):
        table.add(np.zeros((20, 20, 3), np.uint8), true[..., None], probabilities)
    for row in table.rows:  # the object is found exactly; the band counts neither as truth nor as a miss
        assert row["hausdorff95"] == 0.0 and row["mean_surface_distance"] == 0.0 and row["dice"] == 1.0
    # Without leaving the band out, both images would be far off: the check above can fail.
    assert boundary.surface_metrics(band[..., 1] > 0.5, true == 1)["hausdorff95"] > 5
    assert boundary.surface_metrics(right[..., 1] > 0.5, true > 0)["hausdorff95"] > 5
    assert table.confusion.sum() == 2 * (20 * 15)  # ignored pixels are in no per-class count either
    assert not (table.trues[0] == ignore).any()  # nor outlined in the figures


SIZES = [(40, 52), (29, 37), (56, 30), (33, 33), (47, 61), (25, 44), (38, 27), (51, 45), (30, 58), (44, 36)]


def write_mixed_folder(root):
    """Images of several sizes (none the model's): bright rectangles on dark noise."""
    rng = np.random.default_rng(3)
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    for i, (height, width) in enumerate(SIZES):
        image = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
        mask = np.zeros((height, width), np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[top : top + height // 3, left : left + width // 3] = 255
        image[mask > 0] = (210, 190, 60)
        Image.fromarray(image).save(os.path.join(root, "images", f"m{i}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"m{i}.png"))
    return f"folder:{root}"


@pytest.fixture(scope="module")
def resize_run(tmp_path_factory):
    from tfseg.config import TrainConfig
    from tfseg.training import train

    root = tmp_path_factory.mktemp("mixed")
    data = write_mixed_folder(str(root / "data"))
    config = TrainConfig(data=data, image_size=16, base_filters=4, depth=2, epochs=2, batch_size=4,
                         precision="float32", val_fraction=0.2, test_fraction=0.3, out=str(root / "run"))
    return root, config, train(config, verbose=0)


@pytest.mark.slow
def test_run_scores_evaluate_and_predict_agree_on_native_sizes(resize_run, capsys):
    from tfseg.cli import main
    from tfseg.evaluation import evaluate

    root, config, metrics = resize_run
    for split in ("val", "test"):  # the run's metrics.json and tfseg evaluate: one path, the same numbers
        result = evaluate(config.out, split=split)
        for key in ("dice", "iou", "loss"):
            assert result[split][key] == pytest.approx(metrics[split][key], abs=1e-6), (split, key)
    # ... and both score what tfseg predict writes: each image at its own size against its own mask
    test_ids = json.load(open(os.path.join(config.out, "splits.json")))["test"]
    stems = [os.path.splitext(os.path.basename(sample_id))[0] for sample_id in test_ids]
    images = [str(root / "data" / "images" / f"{stem}.png") for stem in stems]
    assert main(["predict", "--model", config.out, *images, "--out", str(root / "pred"), "--no-overlays"]) == 0
    tp = fp = fn = 0
    for stem in stems:
        predicted = np.asarray(Image.open(root / "pred" / f"{stem}_mask.png")) > 0
        true = np.asarray(Image.open(root / "data" / "masks" / f"{stem}.png")) > 0
        assert predicted.shape == true.shape and true.shape != (16, 16)
        tp, fp, fn = tp + (predicted & true).sum(), fp + (predicted & ~true).sum(), fn + (~predicted & true).sum()
    assert metrics["test"]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0, abs=1e-6)
    capsys.readouterr()


# --------------------------------------------------------------------------- intervals and compare
def brightness_model(path, bias):
    """A saved binary model: foreground where the pixels' sum is bright (``bias`` moves the cut)."""
    import keras

    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.full((1, 1, 3, 1), 10.0, np.float32), np.array([bias], np.float32)])
    model.save(path)
    return path


def write_grouped_folder(root):
    """write_mixed_folder's images, two per group: ``s<k>_f<j>``."""
    data = write_mixed_folder(root)
    for kind in ("images", "masks"):
        for i in range(len(SIZES)):
            os.rename(os.path.join(root, kind, f"m{i}.png"), os.path.join(root, kind, f"s{i // 2}_f{i % 2}.png"))
    return data


def test_evaluate_reports_an_interval_for_every_headline_score(tmp_path, capsys):
    from tfseg.cli import main
    from tfseg.evaluation import evaluate

    data = write_mixed_folder(str(tmp_path / "data"))
    model = brightness_model(str(tmp_path / "a.keras"), -13.0)
    result = evaluate(model, data=data, split="train", fractions=(0.6, 0.2, 0.2))
    scores, per_image = result["train"], result["per_image"]
    for key, value in (("dice", scores["dice"]), ("iou", scores["iou"])):
        low, high = scores[f"{key}_ci95"]
        assert low <= value <= high and low < high
    low, high = per_image["dice_mean_ci95"]
    assert low <= per_image["dice_mean"] <= high
    assert "loss_ci95" not in scores  # a model saved without its loss has no loss to bracket
    assert result["bootstrap"] == {"method": "percentile", "resamples": 1000, "seed": 0, "level": 0.95,
                                   "units": "images", "num_units": scores["num_images"]}
    again = evaluate(model, data=data, split="train", fractions=(0.6, 0.2, 0.2))
    assert again["train"]["dice_ci95"] == scores["dice_ci95"]  # seeded: the same interval
    out = str(tmp_path / "eval")
    assert main(["evaluate", "--model", model, "--data", data, "--split", "train", "--val-fraction", "0.2",
                 "--test-fraction", "0.2", "--out", out, "--resamples", "200"]) == 0
    printed = capsys.readouterr().out
    written = json.load(open(os.path.join(out, "metrics.json")))
    low, high = written["train"]["dice_ci95"]
    assert f"dice {written['train']['dice']:.4f} [{low:.4f}, {high:.4f}]" in printed
    assert "200 resamples" in printed and written["bootstrap"]["resamples"] == 200
    assert evaluate(model, data=data, split="train", fractions=(0.6, 0.2, 0.2), resamples=0).get("bootstrap") is None


def test_groups_are_resampled_when_the_source_has_them(tmp_path):
    from tfseg.evaluation import evaluate

    root = str(tmp_path / "data")
    write_grouped_folder(root)
    model = brightness_model(str(tmp_path / "a.keras"), -13.0)
    result = evaluate(model, data=f"mads:{root}?group_pattern=(s\\d+)_", split="train", fractions=(0.6, 0.2, 0.2))
    info = result["bootstrap"]
    assert info["units"] == "groups" and info["num_units"] * 2 == result["train"]["num_images"]


def test_compare_scores_both_models_on_the_same_images(tmp_path, capsys):
    from tfseg.cli import main
    from tfseg.evaluation import compare, evaluate

    data = write_mixed_folder(str(tmp_path / "data"))
    good = brightness_model(str(tmp_path / "good.keras"), -13.0)
    loose = brightness_model(str(tmp_path / "loose.keras"), -5.0)  # bright background pixels become lesion
    result = compare(good, loose, data=data, split="train")
    each = {key: evaluate(path, data=data, split="train") for key, path in (("a", good), ("b", loose))}
    for key in ("a", "b"):
        assert result[key]["dice"] == pytest.approx(each[key]["train"]["dice"], abs=1e-9)
        assert result[key]["dice_ci95"] == pytest.approx(each[key]["train"]["dice_ci95"])
    difference = result["difference"]
    assert difference["dice"] == pytest.approx(result["a"]["dice"] - result["b"]["dice"])
    low, high = difference["dice_ci95"]
    assert 0 < low <= difference["dice"] <= high  # the looser cut is worse on every draw of these images
    # paired: the difference's interval is narrower than the two intervals side by side suggest
    assert high - low < (result["a"]["dice_ci95"][1] - result["a"]["dice_ci95"][0]) + \
        (result["b"]["dice_ci95"][1] - result["b"]["dice_ci95"][0])
    same = compare(good, good, data=data, split="train", resamples=100)["difference"]
    assert same["dice"] == 0.0 and same["dice_ci95"] == [0.0, 0.0]
    out = str(tmp_path / "cmp" / "compare.json")
    assert main(["compare", good, loose, "--data", data, "--split", "train", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert json.load(open(out))["difference"]["dice_ci95"] == pytest.approx([low, high])
    assert f"A - B dice {difference['dice']:+.4f} [{low:+.4f}, {high:+.4f}]" in printed and "A is better" in printed
    # the file is replaced only with --overwrite; a model is never written over
    assert main(["compare", good, loose, "--data", data, "--split", "train", "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["compare", good, loose, "--data", data, "--split", "train", "--out", out, "--overwrite"]) == 0
    assert main(["compare", good, loose, "--data", data, "--out", str(tmp_path / "x.txt")]) == 2
    assert ".json" in capsys.readouterr().err


def test_a_single_pixel_of_a_class_predicted_but_never_true_is_scored():
    # one pixel of class 1 predicted where the truth is 0: Dice 0, not "no score"
    table = per_class_scores(np.array([[10, 1], [0, 0]]))
    assert table["classes"][1]["dice"] == 0.0 and table["classes"][1]["iou"] == 0.0
    assert table["mean_dice"] == 0.0 and table["classes_scored"] == 1
