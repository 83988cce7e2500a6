"""Patch training data (issue 20): random crops at native resolution, foreground-centred share, scale."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tfseg.data import load_dataset
from tfseg.data.patches import random_patch, rescale_example
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


@settings(max_examples=15, deadline=None)
@given(patch=st.integers(1, 9), extra=st.tuples(st.integers(-6, 3), st.integers(-6, 3)),
       foreground=st.tuples(st.integers(0, 11), st.integers(0, 11)), fraction=st.sampled_from([0.0, 1.0]))
def test_every_corner_is_reachable_and_every_crop_inside(patch, extra, foreground, fraction):
    # at most 4 x 4 corners, so 300 seeds reach each one (a miss has chance (15/16)^300 < 1e-8)
    height, width = max(1, patch + extra[0]), max(1, patch + extra[1])
    row, col = min(foreground[0], height - 1), min(foreground[1], width - 1)
    image, mask = coordinate_image(height, width), one_pixel_mask(height, width, row, col)
    seeds = tf.stack([tf.range(300), tf.fill([300], 5)], axis=1)
    crops, masks = tf.function(lambda seeds: tf.map_fn(lambda s: random_patch(image, mask, patch, s, fraction), seeds,
                                                       fn_output_signature=(tf.int32, tf.uint8)))(seeds)
    crops, masks = crops.numpy(), masks.numpy()
    assert crops.shape == (300, patch, patch, 3) and masks.shape == (300, patch, patch, 1)
    room = (max(height - patch, 0), max(width - patch, 0))  # the largest corner
    corners = {(int(c[0, 0, 0]) - 1, int(c[0, 0, 1]) - 1) for c in crops}
    for crop, crop_mask in zip(crops, masks):
        top, left = int(crop[0, 0, 0]) - 1, int(crop[0, 0, 1]) - 1
        inside = crop[: height - top, : width - left]  # the crop is the image from its corner on...
        rows, cols = np.mgrid[top : top + inside.shape[0], left : left + inside.shape[1]]
        np.testing.assert_array_equal(inside[..., 0], rows + 1)
        np.testing.assert_array_equal(inside[..., 1], cols + 1)
        assert not crop[height - top :].any() and not crop[:, width - left :].any()  # ...zero padded beyond it
        assert crop_mask.sum() == int(top <= row < top + patch and left <= col < left + patch)
    if fraction == 0.0:  # uniform: every corner, the last one included
        assert corners == {(y, x) for y in range(room[0] + 1) for x in range(room[1] + 1)}
    else:  # centred on the foreground pixel, moved inside: it is in every crop
        assert masks.reshape(300, -1).sum(axis=1).min() == 1
        assert corners == {(min(max(row - patch // 2, 0), room[0]), min(max(col - patch // 2, 0), room[1]))}


def test_every_foreground_pixel_can_be_the_centre_and_an_empty_mask_crops_uniformly():
    height, width, patch = 40, 50, 9
    image = coordinate_image(height, width)
    mask = np.zeros((height, width, 1), np.uint8)
    pixels = [(3, 45), (12, 5), (20, 25), (31, 10), (38, 48)]  # tf.where's order; the last one included
    for row, col in pixels:
        mask[row, col] = 1
    seeds = tf.stack([tf.range(200), tf.fill([200], 2)], axis=1)

    def corners(mask):
        crops = tf.function(lambda seeds: tf.map_fn(lambda s: random_patch(image, mask, patch, s, 1.0)[0], seeds,
                                                    fn_output_signature=tf.int32))(seeds).numpy()
        return {(int(c[0, 0, 0]) - 1, int(c[0, 0, 1]) - 1) for c in crops}

    room = (height - patch, width - patch)
    centred = {(min(max(r - patch // 2, 0), room[0]), min(max(c - patch // 2, 0), room[1])) for r, c in pixels}
    assert corners(tf.constant(mask)) == centred
    uniform = corners(tf.zeros_like(tf.constant(mask)))  # no foreground: the corner is uniform over the image
    assert len(uniform) > 150 and all(0 <= y <= room[0] and 0 <= x <= room[1] for y, x in uniform)


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


@pytest.mark.parametrize("scale", [0.5, 0.7, 1.5])
def test_scale_resizes_the_mask_by_nearest_neighbour_and_stores_the_image(scale):
    # A 0/3 class-id checkerboard: any other resize than nearest invents ids 1 and 2 or moves edges.
    rows, cols = np.mgrid[:37, :53]
    mask = np.where((rows // 5 + cols // 7) % 2 == 0, 3, 0).astype(np.uint8)[..., None]
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    scaled_image, scaled_mask = rescale_example(tf.constant(image), tf.constant(mask), scale)
    size = (max(1, round(37 * scale)), max(1, round(53 * scale)))
    expected_mask = tf.image.resize(mask, size, method="nearest").numpy()
    np.testing.assert_array_equal(scaled_mask.numpy(), expected_mask)
    assert scaled_mask.dtype == tf.uint8 and set(np.unique(scaled_mask.numpy())) == {0, 3}
    expected_image = tf.image.resize(image.astype(np.float32), size, antialias=True).numpy()
    np.testing.assert_array_equal(scaled_image.numpy(), np.clip(np.round(expected_image), 0, 255).astype(np.uint8))
    same_image, same_mask = rescale_example(tf.constant(image), tf.constant(mask), 1.0)  # scale 1: as it is
    np.testing.assert_array_equal(same_image.numpy(), image)
    np.testing.assert_array_equal(same_mask.numpy(), mask)


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
