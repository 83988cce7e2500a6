"""Clean-up of predicted masks (tfseg.postprocess) at its edges, and every path that applies it:
tfseg predict, tfseg evaluate (scores with and without), tfseg.inference, an export's stored clean-up."""

import itertools
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage

from tfseg import export
from tfseg.cli import main
from tfseg.errors import ConfigError
from tfseg.evaluation import ImageRows, per_class_scores, score_split
from tfseg.inference import load_predictor, predict_images
from tfseg.metrics import probabilities_to_mask
from tfseg.postprocess import Cleanup, as_cleanup, clean_mask, mask_as_probabilities
from tfseg.segment import Settings

from test_predict import red_detector

EVERY_CLEANUP = [dict(keep_largest=k, min_size=m, fill_holes=f)
                 for k, m, f in itertools.product((False, True), (0, 1, 5), (False, True))]


def blob(shape, *boxes, value=1):
    mask = np.zeros(shape, np.uint8)
    for top, left, bottom, right in boxes:
        mask[top:bottom, left:right] = value
    return mask


# --- the rules at their edges -------------------------------------------------------------------


@pytest.mark.parametrize("options", EVERY_CLEANUP)
def test_an_empty_mask_and_an_all_foreground_mask_stay_as_they_are(options):
    for mask in (np.zeros((6, 9), np.uint8), np.ones((6, 9), np.uint8), np.full((6, 9), 2, np.uint8)):
        cleaned = clean_mask(mask, **options)
        if options["min_size"] > mask.size:  # pragma: no cover - sizes here are all smaller
            continue
        assert (cleaned == mask).all() and cleaned.dtype == mask.dtype


def test_a_one_pixel_wide_image():
    column = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.uint8)[:, None]  # runs of 2, 3 and 1 pixels
    assert clean_mask(column, keep_largest=True)[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    assert clean_mask(column, min_size=2)[:, 0].tolist() == [1, 1, 0, 1, 1, 1, 0, 0]
    assert (clean_mask(column, fill_holes=True) == column).all()  # every background pixel is on the border
    assert (clean_mask(column.T, keep_largest=True) == clean_mask(column, keep_largest=True).T).all()
    assert clean_mask(np.ones((1, 1), np.uint8), keep_largest=True, min_size=1, fill_holes=True).tolist() == [[1]]
    assert clean_mask(np.ones((1, 1), np.uint8), min_size=2).tolist() == [[0]]


def test_of_two_components_of_equal_size_the_first_in_row_major_order_stays():
    lower_left_first = blob((8, 8), (5, 0, 7, 2), (1, 6, 3, 8))  # 4 pixels each; the top-most one stays
    assert (clean_mask(lower_left_first, keep_largest=True) == blob((8, 8), (1, 6, 3, 8))).all()
    same_row = blob((8, 8), (2, 5, 4, 7), (2, 1, 4, 3))  # same top row: the left-most one stays
    assert (clean_mask(same_row, keep_largest=True) == blob((8, 8), (2, 1, 4, 3))).all()
    larger_later = blob((8, 8), (0, 0, 2, 2), (4, 4, 7, 7))
    assert (clean_mask(larger_later, keep_largest=True) == blob((8, 8), (4, 4, 7, 7))).all()


def test_components_are_8_connected_and_holes_4_connected():
    diagonal = np.eye(4, dtype=np.uint8)  # four pixels touching by their corners: one component
    diagonal[3, 0] = 1
    assert clean_mask(diagonal, keep_largest=True)[3, 0] == 0 and clean_mask(diagonal, keep_largest=True).sum() == 4
    assert clean_mask(diagonal, min_size=4).sum() == 4
    diamond = np.zeros((7, 7), np.uint8)  # a ring drawn with diagonal steps around one pixel
    for y, x in [(1, 3), (2, 2), (2, 4), (3, 1), (3, 5), (4, 2), (4, 4), (5, 3)]:
        diamond[y, x] = 1
    filled = clean_mask(diamond, fill_holes=True)
    assert filled[3, 3] == 1 and filled.sum() == 13  # inside: (2,3), (3,2), (3,3), (3,4), (4,3)
    assert clean_mask(diamond, keep_largest=True).sum() == 8  # one 8-connected ring


def test_min_size_keeps_a_component_of_exactly_n_pixels():
    mask = blob((6, 10), (0, 0, 2, 2), (4, 5, 5, 8))  # 4 and 3 pixels
    assert (clean_mask(mask, min_size=4) == blob((6, 10), (0, 0, 2, 2))).all()
    assert (clean_mask(mask, min_size=3) == mask).all()
    assert (clean_mask(mask, min_size=0) == mask).all()
    assert clean_mask(mask, min_size=5).sum() == 0
    assert clean_mask(mask, keep_largest=True, min_size=5).sum() == 0  # the largest must reach N too
    assert (clean_mask(mask, keep_largest=True, min_size=4) == blob((6, 10), (0, 0, 2, 2))).all()


def test_each_class_keeps_its_own_largest_component_and_background_stays():
    mask = blob((10, 12), (0, 0, 4, 4))              # class 1: a 16-pixel square ...
    mask[9, 0] = 1                                     # ... and a speck
    mask[5:9, 6:12] = 2                                # class 2: 24 pixels ...
    mask[0, 11] = 2                                    # ... and a speck
    mask[2, 5] = 2                                     # a class-2 speck touching class 1 is still class 2's
    cleaned = clean_mask(mask, keep_largest=True)
    expected = blob((10, 12), (0, 0, 4, 4))
    expected[5:9, 6:12] = 2
    assert (cleaned == expected).all()
    assert ((mask == 0) <= (cleaned == 0)).all()  # background never becomes a class without fill_holes


def test_fill_holes_fills_background_enclosed_by_one_class_only():
    cell = blob((12, 12), (1, 1, 11, 11))
    cell[3:9, 3:9] = 0                                 # a hole in class 1 ...
    cell[5:7, 5:7] = 2                                 # ... holding a class-2 nucleus: the gap touches 2
    filled = clean_mask(cell, fill_holes=True)
    assert (filled == cell).all()  # neither the nucleus nor the gap around it is a hole of class 1
    cell[4, 4] = 1                                     # a wall of class 1 ...
    cell[3, 3] = 0
    lone = cell.copy()
    lone[5:7, 5:7] = 0                                 # no nucleus: the whole gap is a hole of class 1
    assert (clean_mask(lone, fill_holes=True)[3:9, 3:9] == 1).all()
    nucleus_speck = blob((9, 9), (1, 1, 8, 8))
    nucleus_speck[4, 4] = 2                            # a class-2 speck inside class 1, removed by min_size,
    assert clean_mask(nucleus_speck, min_size=2)[4, 4] == 0  # leaves background ...
    assert clean_mask(nucleus_speck, min_size=2, fill_holes=True)[4, 4] == 1  # ... that filling gives to class 1


def test_fill_holes_of_a_binary_mask_is_scipys_binary_fill_holes():
    rng = np.random.default_rng(0)
    for _ in range(100):
        mask = (rng.random((rng.integers(1, 14), rng.integers(1, 14))) < 0.55).astype(np.uint8)
        assert (clean_mask(mask, fill_holes=True) == ndimage.binary_fill_holes(mask)).all()


def test_a_batch_is_cleaned_image_by_image():
    rng = np.random.default_rng(1)
    batch = (rng.random((3, 2, 9, 11)) < 0.4).astype(np.uint8) * rng.integers(1, 3, (3, 2, 9, 11)).astype(np.uint8)
    options = dict(keep_largest=True, min_size=2, fill_holes=True)
    cleaned = clean_mask(batch, **options)
    for index in np.ndindex(3, 2):
        assert (cleaned[index] == clean_mask(batch[index], **options)).all()
    assert (batch == clean_mask(batch)).all() and clean_mask(batch) is not batch  # never in place


@pytest.mark.parametrize("min_size", [-1, 1.5, True, "3"])
def test_a_bad_min_size_is_named(min_size):
    with pytest.raises(ConfigError, match=f"min_size {min_size!r}"):
        Cleanup(min_size=min_size)
    with pytest.raises(ConfigError, match="min_size"):
        clean_mask(np.zeros((2, 2), np.uint8), min_size=min_size)


def test_cleanup_values_merge_and_describe_themselves():
    stored = Cleanup(keep_largest=True, min_size=20)
    assert as_cleanup(None, stored) is stored
    assert as_cleanup({"keep_largest": False, "min_size": None}, stored) == Cleanup(min_size=20)
    assert as_cleanup(Cleanup(fill_holes=True), stored) == Cleanup(fill_holes=True)
    assert stored.describe() == "--keep-largest --min-size 20" and Cleanup().describe() == "none"
    assert not Cleanup().enabled and Cleanup(min_size=1).enabled and Cleanup(fill_holes=True).enabled
    with pytest.raises(ConfigError, match="keep_larges"):
        as_cleanup({"keep_larges": True})
    with pytest.raises(ConfigError, match="cleanup"):
        as_cleanup("keep_largest")
    with pytest.raises(ConfigError, match="mask of shape"):
        clean_mask(np.zeros(4, np.uint8), keep_largest=True)


@pytest.mark.parametrize("num_classes, threshold", [(1, 0.01), (1, 0.5), (1, 0.99), (2, 0.5), (4, 0.5)])
def test_a_mask_as_probabilities_gives_the_mask_back(num_classes, threshold):
    rng = np.random.default_rng(2)
    mask = rng.integers(0, max(num_classes, 2), (2, 5, 7)).astype(np.uint8)
    probabilities = mask_as_probabilities(mask, num_classes)
    assert probabilities.shape == (2, 5, 7, num_classes) and probabilities.dtype == np.float32
    assert (np.asarray(probabilities_to_mask(probabilities, threshold)) == mask).all()


def test_settings_carry_the_cleanup_through_json():
    settings = Settings(window=(8, 8), num_classes=3, cleanup={"keep_largest": True, "min_size": 4})
    assert settings.cleanup == Cleanup(keep_largest=True, min_size=4)
    assert Settings.from_json(settings.to_json()) == settings
    assert Settings.from_json('{"window": [8, 8]}').cleanup == Cleanup()  # an export without one
    probabilities = mask_as_probabilities(blob((8, 8), (0, 0, 3, 3), (6, 6, 7, 7)), 1)
    assert settings.replace(num_classes=1).cleaned_mask(probabilities).sum() == 9
    assert Settings(window=(8, 8)).cleaned_mask(probabilities).sum() == 10


# --- scoring with and without (tfseg evaluate's core) ---------------------------------------------


def test_a_class_predicted_but_never_true_is_scored_after_the_cleanup():
    true = blob((8, 8), (0, 0, 4, 4))
    predicted = true.copy()
    predicted[7, 7] = 2  # a one-pixel class 2 that is never true
    image = np.zeros((8, 8, 3), np.uint8)
    raw = ImageRows(Settings(window=(8, 8), num_classes=3))
    cleaned = ImageRows(Settings(window=(8, 8), num_classes=3, cleanup={"min_size": 2}))
    largest = ImageRows(Settings(window=(8, 8), num_classes=3, cleanup={"keep_largest": True}))
    for rows in (raw, cleaned, largest):
        rows.add(image, true[..., None], mask_as_probabilities(predicted, 3))
    assert per_class_scores(raw.confusion)["classes"][2]["dice"] == 0.0
    assert per_class_scores(cleaned.confusion)["classes"][2]["dice"] is None  # no pixel either way: no score
    assert per_class_scores(largest.confusion)["classes"][2]["dice"] == 0.0  # its only component is its largest
    assert raw.rows[0]["dice"] < cleaned.rows[0]["dice"] == 1.0
    assert (cleaned.preds[0] == true).all()


def test_score_split_reports_the_dice_with_and_without_the_cleanup():
    true = blob((16, 16), (2, 2, 10, 10))
    predicted = true.copy()
    predicted[14, 14] = predicted[0, 15] = 1  # specks
    images = [(np.zeros((16, 16, 3), np.uint8), true[..., None])] * 2

    def predict(windows):  # the adapter: every window predicts the same specky mask
        return tf.constant(np.repeat(mask_as_probabilities(predicted, 1)[None], len(windows), 0))

    settings = Settings(window=(16, 16))
    plain = score_split(settings, predict, images)
    cleaned = score_split(settings.replace(cleanup=Cleanup(keep_largest=True)), predict, images)
    assert "without_cleanup" not in plain and plain["dice"] == pytest.approx(128 / 130)
    assert cleaned["dice"] == 1.0 and cleaned["iou"] == 1.0
    assert cleaned["without_cleanup"] == {"dice": plain["dice"], "iou": plain["iou"]}


# --- every path: predict, the Python API, evaluate, an export ---------------------------------------


def specky_image(size=32):
    """Grey with a red square (the object) and two red specks; its true mask is the square."""
    image = np.full((size, size, 3), 60, np.uint8)
    truth = blob((size, size), (8, 8, 20, 20))
    image[truth > 0] = (230, 30, 30)
    image[2, 28] = image[29, 3] = (230, 30, 30)
    return image, truth


@pytest.fixture(scope="module")
def specks(tmp_path_factory):
    root = tmp_path_factory.mktemp("specks")
    red_detector().save(str(root / "model.keras"))
    image, truth = specky_image()
    Image.fromarray(image).save(root / "specky.png")
    for folder in ("images", "masks"):
        (root / "data" / folder).mkdir(parents=True)
    for i in range(8):
        Image.fromarray(image).save(root / "data" / "images" / f"s{i}.png")
        Image.fromarray(truth * 255).save(root / "data" / "masks" / f"s{i}.png")
    return root, truth


def test_cli_predict_cleans_the_written_masks(specks, tmp_path, capsys):
    root, truth = specks
    for flags, expected in (([], truth.sum() + 2), (["--keep-largest"], truth.sum()),
                            (["--min-size", "2", "--fill-holes"], truth.sum())):
        out = tmp_path / "-".join(["out", *flags])
        assert main(["predict", "--model", str(root / "model.keras"), str(root / "specky.png"), "--out", str(out),
                     *flags]) == 0
        mask = np.asarray(Image.open(out / "specky_mask.png"))
        assert (mask > 0).sum() == expected and set(np.unique(mask)) == {0, 255}
    assert "clean-up --min-size 2 --fill-holes" in capsys.readouterr().out
    assert main(["predict", "--model", str(root / "model.keras"), str(root / "specky.png"), "--out",
                 str(tmp_path / "bad"), "--min-size", "-3"]) == 2
    assert "--min-size -3: must be a non-negative integer" in capsys.readouterr().err


def test_multiclass_predictions_are_cleaned_per_class(tmp_path):
    image = np.zeros((30, 30, 3), np.uint8)
    image[2:12, 2:12, 0] = 255   # class 1 ...
    image[25, 25, 0] = 255       # ... and its speck
    image[15:28, 2:10, 1] = 255  # class 2 ...
    image[3, 27, 1] = 255        # ... and its speck
    Image.fromarray(image).save(tmp_path / "two.png")
    red_detector(num_classes=3, size=30).save(str(tmp_path / "model.keras"))
    predictor = load_predictor(str(tmp_path / "model.keras"), cleanup={"keep_largest": True})
    [(_, _, mask)] = predict_images(predictor, [str(tmp_path / "two.png")])
    assert (mask == 1).sum() == 100 and (mask == 2).sum() == 13 * 8 and mask[25, 25] == mask[3, 27] == 0


def test_evaluate_scores_the_cleaned_masks_beside_the_plain_ones(specks, tmp_path, capsys):
    root, _ = specks
    argv = ["evaluate", "--model", str(root / "model.keras"), "--data", f"folder:{root / 'data'}", "--split", "train"]
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert "without clean-up" not in plain
    assert main([*argv, "--keep-largest", "--out", str(tmp_path / "eval")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    # 288/290, 144/146; the intervals are of the cleaned masks (every image perfect after the clean-up)
    assert ("dice 1.0000 [1.0000, 1.0000] (without clean-up 0.9931)  iou 1.0000 [1.0000, 1.0000] "
            "(without clean-up 0.9863)") in line
    assert "clean-up --keep-largest" in line
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["train"]["dice"] == 1.0 and metrics["train"]["without_cleanup"]["dice"] == pytest.approx(288 / 290)
    assert metrics["cleanup"] == {"keep_largest": True, "min_size": 0, "fill_holes": False, "flags": "--keep-largest"}
    assert metrics["per_image"]["dice_mean"] == 1.0 and metrics["per_class"]["mean_dice"] == 1.0


def test_an_export_stores_its_cleanup_and_tfseg_applies_it_client_side(specks, tmp_path, capsys):
    root, truth = specks
    assert main(["export", "--model", str(root / "model.keras"), "--out", str(tmp_path / "serving"),
                 "--keep-largest", "--min-size", "3"]) == 0
    assert "the serving graph's mask is without it" in capsys.readouterr().out
    version = str(tmp_path / "serving" / "1")
    loaded = tf.saved_model.load(version)
    assert json.loads(loaded.inference_settings[0].numpy())["cleanup"] == {"keep_largest": True, "min_size": 3,
                                                                           "fill_holes": False}
    image, _ = specky_image()
    served = loaded.signatures["serving_default"](images=tf.constant(image[None]))["mask"][0].numpy()
    assert served.sum() == truth.sum() + 2  # the graph does not clean
    # ... a client does, with the lines of docs/guide.md ("Clean-up of masks"):
    mask = served
    labels, count = ndimage.label(mask == 1, structure=np.ones((3, 3)))  # 8-connected components
    sizes = np.bincount(labels.ravel())[1:]
    mask = (labels == 1 + np.argmax(sizes)).astype(np.uint8) if count else mask  # the doc snippet
    client = mask
    assert (client == clean_mask(served, keep_largest=True)).all()
    predictor = load_predictor(version)
    assert predictor.cleanup == Cleanup(keep_largest=True, min_size=3)
    [(_, _, mask)] = predict_images(predictor, [str(root / "specky.png")])
    assert (mask == truth).all() and (client == truth).all()
    [(_, _, kept)] = predict_images(load_predictor(version, cleanup={"keep_largest": False, "min_size": 0}),
                                    [str(root / "specky.png")])
    assert kept.sum() == truth.sum() + 2
    assert main(["export", "--model", str(root / "model.keras"), "--out", str(tmp_path / "m.tflite"), "--format",
                 "tflite", "--fill-holes"]) == 2  # a clean-up is stored with a SavedModel only
    assert "--fill-holes: only applies to --format saved_model" in capsys.readouterr().err
