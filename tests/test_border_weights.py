"""The U-Net paper's border weight map (``--border-weight W0,SIGMA``): the map, the pipeline, the loss, the CLI."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tfseg.config import TrainConfig
from tfseg.data.borders import border_weight_map, objects, parse_border_weight
from tfseg.errors import ConfigError


def reference_map(mask, w0, sigma, object_masks):
    """Brute force: for each background pixel, the distances to every pixel of every object, sorted."""
    height, width = mask.shape
    weights = np.ones((height, width))
    points = [np.argwhere(o) for o in object_masks]
    for y in range(height):
        for x in range(width):
            if any(o[y, x] for o in object_masks) or len(points) < 2:
                continue
            d = sorted(np.sqrt(((p - (y, x)) ** 2).sum(1)).min() for p in points)
            weights[y, x] += w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
    return weights


def two_touching_cells():
    """Two rectangles separated by a one-pixel gap (column 6), a third object far away."""
    mask = np.zeros((12, 16), np.float32)
    mask[2:8, 1:6] = 1
    mask[2:8, 7:12] = 1
    mask[10:12, 14:16] = 1
    return mask


def test_the_map_matches_a_brute_force_reference_and_the_gap_weighs_most():
    mask = two_touching_cells()
    labels, count = objects(mask)
    assert count == 3
    weights = border_weight_map(mask, 10, 5)
    expected = reference_map(mask, 10, 5, [labels == k for k in (1, 2, 3)])
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    assert weights.dtype == np.float32 and weights.shape == mask.shape
    gap = weights[2:8, 6]
    assert gap.min() > weights[mask == 0][~np.isin(np.flatnonzero(mask == 0),
                                                   np.ravel_multi_index((np.arange(2, 8), [6] * 6), mask.shape))].max()
    np.testing.assert_allclose(gap, 1 + 10 * np.exp(-4 / 50), rtol=1e-6)  # d1 = d2 = 1
    assert (weights[mask == 1] == 1).all()
    # the [H, W, 1] form of the pipeline gives the same map; w0 = 0 and sigma scale as the formula says
    np.testing.assert_array_equal(border_weight_map(mask[..., None], 10, 5), weights)
    assert (border_weight_map(mask, 0, 5) == 1).all()
    np.testing.assert_allclose(border_weight_map(mask, 3, 2), reference_map(mask, 3, 2, [labels == k for k in (1, 2, 3)]),
                               rtol=1e-5)


def test_fewer_than_two_objects_get_no_border_term():
    mask = np.zeros((8, 8), np.float32)
    assert (border_weight_map(mask) == 1).all()
    mask[2:5, 2:5] = 1
    assert (border_weight_map(mask) == 1).all()
    mask[5, 5] = 1  # diagonal neighbour: the same (8-connected) object
    assert objects(mask)[1] == 1 and (border_weight_map(mask) == 1).all()


def test_class_id_masks_objects_of_every_class_and_the_ignored_value():
    mask = np.zeros((6, 9), np.int32)
    mask[:, :4] = 1
    mask[:, 5:] = 2  # two classes touching across a one-pixel gap
    labels, count = objects(mask, num_classes=3)
    assert count == 2
    weights = border_weight_map(mask, 10, 5, num_classes=3)
    np.testing.assert_allclose(weights[:, 4], 1 + 10 * np.exp(-4 / 50), rtol=1e-6)
    mask[:, 4] = 255  # the gap is the ignored value: neither an object nor background
    assert objects(mask, 3, ignore_class=255)[1] == 2
    assert (border_weight_map(mask, 10, 5, 3, ignore_class=255) == 1).all()
    mask[:, 5:] = 1  # two objects of the same class
    mask[:, 4] = 0
    np.testing.assert_allclose(border_weight_map(mask, 10, 5, 3)[:, 4], 1 + 10 * np.exp(-4 / 50), rtol=1e-6)


@pytest.mark.parametrize("value", ["10", "10,5,1", "a,5", "-1,5", "10,0", "10,nan", "10,inf", ""])
def test_a_bad_border_weight_is_named(value):
    with pytest.raises(ConfigError, match=f"border_weight {value!r}: expected W0,SIGMA"):
        parse_border_weight(value)
    with pytest.raises(ConfigError, match=f"border_weight {value!r}"):
        TrainConfig(border_weight=value)


def test_parse_border_weight():
    assert parse_border_weight(None) is None
    assert parse_border_weight("10,5") == (10.0, 5.0) and parse_border_weight((0, 0.5)) == (0.0, 0.5)


def test_cli_flag_help_config_and_a_bad_value(capsys):
    from tfseg.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--border-weight W0,SIGMA" in capsys.readouterr().out
    assert TrainConfig.from_dict(json.loads(TrainConfig(border_weight="10,5").to_json())).border_weight == "10,5"
    assert main(["train", "--border-weight", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--border-weight '10': expected W0,SIGMA" in err[0]


def write_cells_folder(root, count=16, size=32):
    """Binary masks of two squares with a one-pixel gap, at a random place (images: the squares, darker gap)."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        top, left = rng.integers(2, size - 14, 2)
        mask[top : top + 10, left : left + 5] = 255
        mask[top : top + 10, left + 6 : left + 11] = 255
        image = (rng.random((size, size, 3)) * 60 + (mask[..., None] > 0) * 150).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, "images", f"c{i:02d}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"c{i:02d}.png"))
    return f"folder:{root}"


@pytest.mark.parametrize("patch_size", [None, 16])
def test_the_pipeline_carries_each_augmented_masks_map(tmp_path, patch_size):
    from tfseg.data import load_dataset

    data = write_cells_folder(str(tmp_path / "data"))
    size = {"image_size": 32} if patch_size is None else {"patch_size": patch_size}
    ds = load_dataset(data, split="train", batch_size=4, border_weight="10,5", augment=True, seed=0, **size)
    images, masks, weights = next(iter(ds))
    side = 32 if patch_size is None else patch_size
    assert tuple(weights.shape) == (4, side, side, 1) and weights.dtype.name == "float32"
    for mask, weight in zip(masks.numpy(), weights.numpy()):
        np.testing.assert_allclose(weight[..., 0], border_weight_map(mask, 10, 5), rtol=1e-6)
    if patch_size is None:
        assert weights.numpy().max() > 9  # the gaps are in every (flipped, rotated) mask
    plain = load_dataset(data, split="val", batch_size=4, image_size=32)
    assert len(next(iter(plain))) == 2


def test_the_weights_reach_the_loss_through_fit_and_evaluate(tmp_path):
    import keras

    from tfseg.data import load_dataset
    from tfseg.losses import get_loss

    data = write_cells_folder(str(tmp_path / "data"), count=8)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(1, 3, padding="same",
                                                                            activation="sigmoid")])
    model.compile(loss=get_loss("bce", 1))
    plain = load_dataset(data, split="train", batch_size=4, image_size=32, augment=False, shuffle=False)
    weighted = load_dataset(data, split="train", batch_size=4, image_size=32, augment=False, shuffle=False,
                            border_weight="10,5")
    expected, sizes = [], []
    for (images, masks), (_, _, weights) in zip(plain, weighted):
        expected.append(float(model.loss(masks, model(images), sample_weight=weights)))
        sizes.append(len(images))
    assert model.evaluate(weighted, verbose=0) == pytest.approx(np.average(expected, weights=sizes), rel=1e-5)
    assert model.evaluate(weighted, verbose=0) > 1.1 * model.evaluate(plain, verbose=0)
    model.fit(weighted, epochs=1, verbose=0, shuffle=False)  # trains with them


@pytest.mark.slow
def test_a_run_trains_with_border_and_class_weights(tmp_path, capsys):
    from tfseg.cli import main

    data = write_cells_folder(str(tmp_path / "data"), count=16)
    run = str(tmp_path / "run")
    argv = ["train", "--data", data, "--loss", "bce", "--class-weights", "1,2", "--border-weight", "10,5",
            "--epochs", "1", "--image-size", "32", "--base-filters", "4", "--depth", "2", "--batch-size", "8",
            "--precision", "float32", "--out", run]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "border weights (U-Net paper's map): w0 10, sigma 5 px" in out and "class weights (as given)" in out
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["border_weight"] == "10,5" and config["class_weights"] == "1,2"
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["epochs_completed"] == 1 and np.isfinite(metrics["test"]["loss"])
    history = open(os.path.join(run, "history.csv")).read()
    assert "loss" in history


def test_binary_foreground_is_above_half_whatever_its_values():
    """The binary rule (> 0.5): a 0.5 pixel is background (weighted), values 0.8 and 1 one object."""
    mask = two_touching_cells()
    mask[2:8, 3:6] = 0.8  # the left object in two values, still one object
    mask[4, 6] = 0.5      # in the gap: background
    labels, count = objects(mask)
    assert count == 3 and len(np.unique(labels[2:8, 1:6])) == 1
    weights = border_weight_map(mask, 10, 5)
    np.testing.assert_allclose(weights[2:8, 6], 1 + 10 * np.exp(-4 / 50), rtol=1e-6)


def full_distances_map(mask, w0, sigma):
    """The map with every object's distance transform over the whole image (no window)."""
    from scipy import ndimage

    labels, count = objects(mask)
    distances = np.sort(np.stack([ndimage.distance_transform_edt(labels != k) for k in range(1, count + 1)]), 0)
    term = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    return np.where(mask > 0.5, 1.0, 1.0 + term).astype(np.float32)


@pytest.mark.parametrize("w0, sigma", [(10, 5), (10, 2), (50, 8), (1e-9, 5)])
def test_distances_in_windows_give_the_whole_images_map(w0, sigma):
    """Far apart objects on a large mask: each distance transform runs in its object's box grown by the reach
    beyond which float32 keeps no term; the map equals the whole-image computation."""
    mask = np.zeros((120, 150), np.float32)
    mask[10:20, 10:20] = 1
    mask[10:20, 40:50] = 1   # 20 px from the first: small terms all along the way
    mask[90:110, 120:140] = 1
    mask[100:104, 60:64] = 1
    np.testing.assert_allclose(border_weight_map(mask, w0, sigma), full_distances_map(mask, w0, sigma),
                               rtol=2e-7, atol=0)
