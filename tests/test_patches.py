"""Patch training data (issue 20): random crops at native resolution, foreground-centred share, scale."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg.data import load_dataset
from tfseg.data.patches import random_patch
from tfseg.errors import ConfigError


def coordinate_image(height, width):
    """int32 image whose channels 0/1 hold each pixel's row/column (+1, so padding reads 0)."""
    rows, cols = np.meshgrid(np.arange(height) + 1, np.arange(width) + 1, indexing="ij")
    return tf.constant(np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.int32))


def one_pixel_mask(height, width, row, col):
    mask = np.zeros((height, width, 1), np.uint8)
    mask[row, col] = 1
    return tf.constant(mask)


def test_foreground_crop_is_centred_on_the_foreground_pixel_and_kept_inside():
    image, mask = coordinate_image(300, 500), one_pixel_mask(300, 500, 250, 100)
    for s in range(5):
        crop, crop_mask = random_patch(image, mask, 128, tf.constant([s, 3]), foreground_fraction=1.0)
        # centre (250, 100) -> corner (186, 36), moved up to the last valid row 300 - 128 = 172
        assert crop.numpy()[0, 0, :2].tolist() == [173, 37]
        assert crop_mask.numpy().sum() == 1 and crop_mask.numpy()[250 - 172, 100 - 36, 0] == 1


def test_uniform_crops_cover_the_image_and_stay_inside():
    image, mask = coordinate_image(300, 500), one_pixel_mask(300, 500, 250, 100)
    corners = []
    for s in range(60):
        crop, crop_mask = random_patch(image, mask, 128, tf.constant([s, 9]), foreground_fraction=0.0)
        corner = crop.numpy()[0, 0, :2] - 1
        assert 0 <= corner[0] <= 172 and 0 <= corner[1] <= 372
        np.testing.assert_array_equal(crop.numpy()[-1, -1, :2] - 1, corner + 127)  # a contiguous crop
        corners.append(tuple(corner))
    corners = np.array(corners)
    assert len(set(map(tuple, corners))) > 50
    assert corners[:, 0].max() - corners[:, 0].min() > 120 and corners[:, 1].max() - corners[:, 1].min() > 300


def test_foreground_fraction_is_the_share_of_centred_crops():
    image, mask = coordinate_image(400, 400), one_pixel_mask(400, 400, 200, 200)
    hits = [int(random_patch(image, mask, 32, tf.constant([s, 1]), 0.5)[1].numpy().sum()) for s in range(200)]
    # a uniform 32 px crop holds the pixel with chance (32/369)^2 < 1%; a centred one always
    assert 0.4 < np.mean(hits) < 0.6


def test_an_image_smaller_than_the_patch_is_padded_at_the_bottom_right():
    image, mask = coordinate_image(20, 30), one_pixel_mask(20, 30, 5, 6)
    crop, crop_mask = random_patch(image, mask, 64, tf.constant([1, 2]), 0.5)
    crop = crop.numpy()
    assert crop.shape == (64, 64, 3) and crop[0, 0, :2].tolist() == [1, 1]
    assert crop[19, 29, :2].tolist() == [20, 30] and crop[20:].max() == 0 and crop[:, 30:].max() == 0
    assert crop_mask.numpy()[5, 6, 0] == 1 and crop_mask.numpy().sum() == 1


def test_same_seed_same_crop():
    image, mask = coordinate_image(200, 300), one_pixel_mask(200, 300, 10, 10)
    a = random_patch(image, mask, 50, tf.constant([4, 4]), 0.5)[0].numpy()
    b = random_patch(image, mask, 50, tf.constant([4, 4]), 0.5)[0].numpy()
    c = random_patch(image, mask, 50, tf.constant([4, 5]), 0.5)[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.fixture
def mixed_folder(tmp_path):
    """A folder source of three images of different sizes, each with a 4x4 foreground square."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(90, 130), (64, 64), (150, 71)]):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 2 : h // 2 + 4, w // 3 : w // 3 + 4] = 255
        Image.fromarray(image).save(tmp_path / "images" / f"im{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"im{i}.png")
    return f"folder:{tmp_path}"


def test_pipeline_crops_images_of_different_sizes_into_one_batch(mixed_folder):
    ds = load_dataset(mixed_folder, split="all", patch_size=32, batch_size=3, augment=False, shuffle=False,
                      foreground_fraction=1.0)
    images, masks = next(iter(ds))
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32, 1)
    assert images.dtype == tf.float32 and masks.dtype == tf.float32
    assert set(np.unique(masks.numpy())) == {0.0, 1.0}
    assert (masks.numpy().reshape(3, -1).sum(1) == 16).all()  # every crop holds its whole 4x4 square


def test_augmentation_runs_on_the_crop_and_keeps_masks_binary(mixed_folder):
    ds = load_dataset(mixed_folder, split="all", patch_size=32, batch_size=3, seed=3, repeat=True)
    for images, masks in ds.take(4):
        assert images.shape == (3, 32, 32, 3)
        assert set(np.unique(masks.numpy())) <= {0.0, 1.0}


def test_whole_images_at_their_own_size_times_scale(mixed_folder):
    ds = load_dataset(mixed_folder, split="all", image_size=None, batch_size=1, shuffle=False, scale=0.5)
    shapes = [tuple(images.shape[1:3]) for images, _ in ds]
    assert shapes == [(45, 65), (32, 32), (75, 36)]  # round(h / 2), round(w / 2)
    full = [tuple(images.shape[1:3]) for images, _ in load_dataset(mixed_folder, split="all", image_size=None,
                                                                     batch_size=1, shuffle=False)]
    assert full == [(90, 130), (64, 64), (150, 71)]


@pytest.mark.parametrize("kwargs, match", [
    ({"patch_size": 4}, "patch_size 4"),
    ({"patch_size": 32, "scale": 0.0}, "scale 0.0"),
    ({"patch_size": 32, "scale": 5}, "scale 5"),
    ({"patch_size": 32, "foreground_fraction": 1.5}, "foreground_fraction 1.5"),
    ({"image_size": None, "batch_size": 2}, "batch_size 2"),
])
def test_bad_patch_options_are_user_errors(mixed_folder, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset(mixed_folder, split="all", **kwargs)


@pytest.mark.parametrize("sizes, patch_size, scale, warned", [
    ([(20, 30), (40, 10)], 32, 1.0, True),   # the largest square that fits is 20 px
    ([(20, 30), (40, 32)], 32, 1.0, False),  # fits one image exactly
    ([(64, 64)], 32, 0.25, True),            # scaled to 16 x 16
    ([(64, 64)], 32, 0.5, False),            # scaled to 32 x 32
    ([(1, 500)], 8, 1.0, True),              # 1 px high
    (None, 32, 1.0, False), ([], 32, 1.0, False),  # sizes unknown: no warning
])
def test_a_patch_larger_than_every_image_is_named(sizes, patch_size, scale, warned):
    from tfseg.data.patches import patch_larger_than_every_image

    message = patch_larger_than_every_image(sizes, patch_size, scale)
    assert (message is not None) is warned
    if warned:
        assert message.startswith(f"patch_size {patch_size} is larger than every training image"), message


def test_training_with_a_patch_larger_than_every_image_warns_once(tmp_path, caplog):
    from conftest import write_folder_dataset
    from tfseg import cli

    data = write_folder_dataset(str(tmp_path / "data"), count=8, size=16)
    args = ["train", "--data", data, "--patch-size", "32", "--base-filters", "2", "--depth", "1",
            "--batch-size", "4", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]
    with caplog.at_level("WARNING"):
        assert cli.main(args) == 0
    warned = [r.getMessage() for r in caplog.records if "larger than every training image" in r.getMessage()]
    assert len(warned) == 1 and "choose a patch size up to 16" in warned[0], warned
