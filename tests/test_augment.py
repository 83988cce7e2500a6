"""Joint image + mask augmentation (tfseg.data.augment)."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfseg.data.augment import AugmentConfig, augment_config, augment_example
from tfseg.errors import ConfigError

STRONG = AugmentConfig(zoom=(0.6, 1.2), rotation=45.0, shear=0.2, transform_probability=1.0, elastic=0.03)
CONFIGS = {"default": AugmentConfig(), "strong+elastic": STRONG}


def _blobs(size=48, seed=0, height=None):
    """A mask of random blobs and an image that encodes it: grey 0.85 on the mask, 0.15 off it, plus noise."""
    rng = np.random.default_rng(seed)
    height = height or size
    rows, cols = np.mgrid[:height, :size]
    mask = np.zeros((height, size), bool)
    for _ in range(3):
        r, c, radius = rng.uniform(0, height), rng.uniform(0, size), rng.uniform(4, 12)
        mask |= (rows - r) ** 2 + (cols - c) ** 2 < radius**2
    image = np.where(mask, 0.85, 0.15)[..., None] * np.ones(3) + rng.normal(0, 0.02, (height, size, 3))
    return tf.constant(np.clip(image, 0, 1), tf.float32), tf.constant(mask[..., None], tf.float32)


def _misaligned_fraction(image, mask):
    """Pixels where the image (thresholded) and the mask disagree, ignoring pixels next to a mask edge.

    Bilinear resampling blurs the image's edges by up to a pixel, so only
    disagreements farther than one pixel from any mask edge count.
    """
    decoded = image.numpy().mean(-1) > 0.5
    truth = mask.numpy()[..., 0] > 0.5
    padded = np.pad(truth, 1, mode="edge")
    near_edge = np.zeros_like(truth)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            near_edge |= padded[dr : dr + truth.shape[0], dc : dc + truth.shape[1]] != truth
    return float(np.mean((decoded != truth) & ~near_edge))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_image_and_mask_stay_aligned(name):
    for s in range(12):
        image, mask = _blobs(seed=s)
        out_image, out_mask = augment_example(image, mask, tf.constant([s, 1]), CONFIGS[name])
        assert _misaligned_fraction(out_image, out_mask) < 0.002, (name, s)


def test_alignment_check_detects_drift():
    # Negative control: the same check must fail when image and mask get different transforms.
    failures = 0
    for s in range(6):
        image, mask = _blobs(seed=s)
        out_image, _ = augment_example(image, mask, tf.constant([s, 1]), STRONG)
        _, out_mask = augment_example(image, mask, tf.constant([s, 2]), STRONG)
        failures += _misaligned_fraction(out_image, out_mask) >= 0.002
    assert failures >= 5


def test_masks_stay_binary_and_class_ids_stay_valid():
    image, mask = _blobs(seed=1)
    ids = tf.cast(mask, tf.int32) * 2 + tf.cast(tf.range(48)[None, :, None] > 30, tf.int32)  # ids {0,1,2,3}
    for s in range(8):
        _, out = augment_example(image, mask, tf.constant([s, 0]), STRONG)
        assert out.dtype == tf.float32 and set(np.unique(out.numpy())) <= {0.0, 1.0}
        _, out_ids = augment_example(image, ids, tf.constant([s, 0]), STRONG)
        assert out_ids.dtype == tf.int32 and set(np.unique(out_ids.numpy())) <= {0, 1, 2, 3}


def test_same_seed_same_result_different_seed_different_result():
    image, mask = _blobs(seed=2)
    a = augment_example(image, mask, tf.constant([4, 2]))
    b = augment_example(image, mask, tf.constant([4, 2]))
    c = augment_example(image, mask, tf.constant([4, 3]))
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and np.array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


def test_geometry_off_leaves_mask_untouched_and_colour_changes_image_only():
    image, mask = _blobs(seed=3)
    colour_only = AugmentConfig(flip=False, rotate90=False, transform_probability=0.0)
    out_image, out_mask = augment_example(image, mask, tf.constant([1, 1]), colour_only)
    assert np.array_equal(out_mask.numpy(), mask.numpy())
    assert not np.allclose(out_image.numpy(), image.numpy())
    assert 0.0 <= out_image.numpy().min() and out_image.numpy().max() <= 1.0


def test_flips_and_rotations_are_exact_permutations():
    image, mask = _blobs(seed=4)
    exact = AugmentConfig(transform_probability=0.0, brightness=0, contrast=0, saturation=0, hue=0, gamma=0)
    changed = 0
    for s in range(8):
        out_image, out_mask = augment_example(image, mask, tf.constant([s, 5]), exact)
        assert np.isclose(out_image.numpy().sum(), image.numpy().sum(), rtol=1e-6)
        assert out_mask.numpy().sum() == mask.numpy().sum()
        changed += not np.array_equal(out_mask.numpy(), mask.numpy())
    assert changed >= 5


def test_zoom_in_enlarges_objects():
    rows, cols = np.mgrid[:48, :48]
    disc = ((rows - 23.5) ** 2 + (cols - 23.5) ** 2 < 16)[..., None]
    image, mask = tf.constant(disc * np.ones(3), tf.float32), tf.constant(disc, tf.float32)
    zoom = AugmentConfig(flip=False, rotate90=False, zoom=(0.5, 0.5), rotation=0, shear=0, transform_probability=1.0)
    areas = [augment_example(image, mask, tf.constant([s, 0]), zoom)[1].numpy().sum() for s in range(6)]
    # 2x zoom: 4x the area where the crop holds the whole centred disc
    assert np.mean(areas) > 2.5 * disc.sum()


def test_non_square_images_keep_their_shape():
    image, mask = _blobs(size=40, height=24, seed=6)
    for s in range(4):
        out_image, out_mask = augment_example(image, mask, tf.constant([s, 0]), STRONG)
        assert out_image.shape == (24, 40, 3) and out_mask.shape == (24, 40, 1)


def test_augment_config_from_user_values():
    assert augment_config(False) is None and augment_config(None) is None
    assert augment_config(True) == AugmentConfig()
    assert augment_config({"rotation": 5}).rotation == 5.0
    with pytest.raises(ConfigError, match="rotatoin"):
        augment_config({"rotatoin": 5})
    assert augment_config({"zoom": (0.5, 2.0)}).zoom == (0.5, 2.0)  # the documented bounds: 0 < low <= high <= 2
    for bad in ({"zoom": (0.0, 1.0)}, {"zoom": (1.0, 2.5)}, {"zoom": (1.2, 1.1)}, {"contrast": 1.5},
                {"transform_probability": 2}, {"fill_mode": "mirror"}, {"gamma": -1}):
        with pytest.raises(ConfigError):
            augment_config(bad)
    with pytest.raises(ConfigError):
        augment_config("yes")


@settings(max_examples=20, deadline=None)
@given(
    height=st.sampled_from([1, 2, 3, 7, 31, 64]),
    width=st.sampled_from([1, 3, 8, 33, 200]),
    channels=st.sampled_from([1, 3, 4]),
    multi_class=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_shape_comes_out_with_its_shape_and_valid_mask(height, width, channels, multi_class, seed):
    rng = np.random.default_rng(seed)
    image = tf.constant(rng.uniform(size=(height, width, channels)), tf.float32)
    if multi_class:
        mask = tf.constant(rng.integers(0, 5, (height, width, 1)), tf.int32)
        allowed = set(np.unique(mask.numpy()))
    else:
        mask = tf.constant(rng.integers(0, 2, (height, width, 1)), tf.float32)
        allowed = {0.0, 1.0}
    out_image, out_mask = augment_example(image, mask, tf.constant([seed, 0]), STRONG)
    assert out_image.shape == image.shape and out_mask.shape == mask.shape
    assert out_mask.dtype == mask.dtype and set(np.unique(out_mask.numpy())) <= allowed
    assert np.all(np.isfinite(out_image.numpy())) and 0 <= out_image.numpy().min() and out_image.numpy().max() <= 1


# --------------------------------------------------------------------------
# Exact alignment, op by op: an image that encodes its own pixel coordinates
# --------------------------------------------------------------------------
NO_COLOUR = dict(brightness=0, contrast=0, saturation=0, hue=0, gamma=0)
GEOMETRY = {
    "flips": AugmentConfig(rotate90=False, transform_probability=0.0, **NO_COLOUR),
    "rotate90": AugmentConfig(flip=False, transform_probability=0.0, **NO_COLOUR),
    "zoom_in": AugmentConfig(flip=False, rotate90=False, zoom=(0.5, 0.9), rotation=0, shear=0,
                             transform_probability=1.0, **NO_COLOUR),
    "zoom_out": AugmentConfig(flip=False, rotate90=False, zoom=(1.1, 1.6), rotation=0, shear=0,
                              transform_probability=1.0, **NO_COLOUR),
    "rotation": AugmentConfig(flip=False, rotate90=False, zoom=(1.0, 1.0), rotation=40, shear=0,
                              transform_probability=1.0, **NO_COLOUR),
    "shear": AugmentConfig(flip=False, rotate90=False, zoom=(1.0, 1.0), rotation=0, shear=0.3,
                           transform_probability=1.0, **NO_COLOUR),
    "elastic": AugmentConfig(flip=False, rotate90=False, transform_probability=0.0, elastic=0.04, **NO_COLOUR),
    "everything": AugmentConfig(zoom=(0.6, 1.3), rotation=30, shear=0.2, transform_probability=1.0,
                                elastic=0.03, **NO_COLOUR),
}


def _coordinate_pair(height, width):
    """An image whose channels are the row and column ramps, and a mask of class id ``row * width + col``.

    Bilinear resampling of a linear ramp returns the sampled position exactly, so the
    augmented image says where each output pixel was read from; the mask says which
    input pixel nearest-neighbour sampling picked.
    """
    rows, cols = np.mgrid[:height, :width].astype("float32")
    image = np.stack([rows / (height - 1), cols / (width - 1), np.zeros_like(rows)], -1)
    mask = (rows * width + cols).astype("int32")[..., None]
    return tf.constant(image), tf.constant(mask)


@pytest.mark.parametrize("name", sorted(GEOMETRY))
@pytest.mark.parametrize("height,width", [(24, 24), (20, 28)])
def test_every_geometric_op_samples_the_mask_at_the_nearest_pixel_of_the_image_position(name, height, width):
    image, mask = _coordinate_pair(height, width)
    moved = 0
    for s in range(6):
        out_image, out_mask = augment_example(image, mask, tf.constant([s, 11]), GEOMETRY[name])
        row = out_image.numpy()[..., 0] * (height - 1)
        col = out_image.numpy()[..., 1] * (width - 1)
        ids = out_mask.numpy()[..., 0]
        mask_row, mask_col = ids // width, ids % width
        error = np.concatenate([np.abs(mask_row - row).ravel(), np.abs(mask_col - col).ravel()])
        # nearest neighbour: within half a pixel of where the image was read (plus float slack);
        # "everything" resamples twice (affine, then elastic): two roundings, the first scaled by the affine map
        assert error.max() <= (1.5 if name == "everything" else 0.5) + 1e-3, (name, s, error.max())
        # rounding errors spread over [0, 0.5]: mean 0.25 at most; floor would give 0.5
        assert error.mean() <= (0.45 if name == "everything" else 0.3), (name, s, error.mean())
        moved += not np.array_equal(ids, mask.numpy()[..., 0])
    if not (name == "rotate90" and height != width):  # rot90 leaves non-square images alone
        assert moved >= 3, name  # the op did move pixels in most draws


def test_elastic_mask_is_the_rounded_not_floored_position():
    # A 1-px shift test: a field of exactly +0.75 px would read row r+1 when rounded, r when floored.
    from tfseg.data.augment import _sample_nearest

    mask = tf.constant(np.arange(6 * 6, dtype="int32").reshape(6, 6, 1))
    rows, cols = np.mgrid[:6, :6].astype("float32")
    out = _sample_nearest(mask, tf.constant(np.minimum(rows + 0.75, 5.0)), tf.constant(np.maximum(cols - 0.75, 0.0)))
    expected = mask.numpy()[np.minimum(rows.astype(int) + 1, 5), np.maximum(cols.astype(int) - 1, 0)]
    assert np.array_equal(out.numpy(), expected)


def test_zoom_resamples_a_0_3_mask_without_inventing_ids():
    # nearest neighbour: a 0/3 mask stays 0/3 when zoomed in or out (bilinear-then-round would make 1 and 2)
    rows, cols = np.mgrid[:32, :32]
    ids = np.where((rows // 3 + cols // 5) % 2 == 0, 3, 0).astype("int32")[..., None]
    image = tf.constant(np.repeat(ids / 3.0, 3, axis=-1), tf.float32)
    for name in ("zoom_in", "zoom_out", "rotation", "elastic", "everything"):
        for s in range(4):
            _, out = augment_example(image, tf.constant(ids), tf.constant([s, 3]), GEOMETRY[name])
            assert set(np.unique(out.numpy())) == {0, 3}, (name, s)


def test_default_augmentation_is_pinned():
    # The defaults are part of every run's config: a changed value changes what `tfseg train` does.
    assert AugmentConfig().to_dict() == {
        "flip": True, "rotate90": True, "zoom": (0.8, 1.0), "rotation": 20.0, "shear": 0.05,
        "transform_probability": 0.75, "fill_mode": "reflect", "elastic": 0.0, "elastic_grid": 4,
        "brightness": 0.08, "contrast": 0.15, "saturation": 0.15, "hue": 0.02, "gamma": 0.15,
    }


# --------------------------------------------------------------------------
# The transforms drawn: recovered from the coordinate-ramp image
# --------------------------------------------------------------------------
def _positions(image, mask, seed, config):
    """Where each output pixel was read from, ``(rows, cols)`` in input pixels (from the ramp image)."""
    out_image, _ = augment_example(image, mask, tf.constant(seed), config)
    height, width = image.shape[:2]
    return out_image.numpy()[..., 0] * (height - 1), out_image.numpy()[..., 1] * (width - 1)


def _fit_affine(rows, cols, margin):
    """Least-squares ``(M, t)`` with ``[x_in, y_in] = M [x_out, y_out] + t`` (x = column) on the centre pixels."""
    height, width = rows.shape
    out_r, out_c = np.mgrid[margin:height - margin, margin:width - margin]
    inner = (slice(margin, height - margin), slice(margin, width - margin))
    design = np.stack([out_c.ravel(), out_r.ravel(), np.ones(out_r.size)], 1)
    solution, *_ = np.linalg.lstsq(design, np.stack([cols[inner].ravel(), rows[inner].ravel()], 1), rcond=None)
    return solution[:2].T, solution[2]


def test_affine_matrix_is_the_documented_map():
    from tfseg.data.augment import affine_matrix

    height, width, scale, angle, shear, offset = 30, 50, 0.8, 0.3, 0.1, (2.0, -3.0)
    got = affine_matrix(height, width, tf.constant(scale), tf.constant(angle), tf.constant(shear),
                        tf.constant(offset)).numpy()
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = scale * rotation @ np.array([[1.0, shear], [0.0, 1.0]])
    for x, y in [(0, 0), (49, 0), (0, 29), (17, 11), (centre[0], centre[1])]:
        expected = centre + np.array(offset) + m @ (np.array([x, y]) - centre)
        mapped = np.array([got[0] * x + got[1] * y + got[2], got[3] * x + got[4] * y + got[5]])
        np.testing.assert_allclose(mapped, expected, atol=1e-4)
    assert got[6] == got[7] == 0.0


def test_random_affine_draws_cover_the_configured_ranges():
    config = AugmentConfig(flip=False, rotate90=False, zoom=(0.6, 0.9), rotation=15.0, shear=0.1,
                           transform_probability=1.0, **NO_COLOUR)
    size = 40
    image, mask = _coordinate_pair(size, size)
    scales, angles, shears, offsets = [], [], [], []
    for s in range(16):
        m, t = _fit_affine(*_positions(image, mask, [s, 21], config), margin=12)
        scale = np.sqrt(np.linalg.det(m))
        angle = np.arctan2(m[1, 0], m[0, 0])
        shear = (m[0, 1] / scale + np.sin(angle)) / np.cos(angle)
        centre = np.array([(size - 1) / 2] * 2)
        offset = m @ centre + t - centre
        room = (1 - scale) * (size - 1) / 2
        assert np.all(np.abs(offset) <= room + 0.05), (s, offset, room)
        scales.append(scale), angles.append(np.degrees(angle)), shears.append(shear), offsets.append(offset)
    assert 0.6 - 1e-3 <= min(scales) and max(scales) <= 0.9 + 1e-3 and max(scales) - min(scales) > 0.15
    assert -15 - 0.1 <= min(angles) and max(angles) <= 15 + 0.1 and max(angles) - min(angles) > 10
    assert -0.1 - 1e-3 <= min(shears) and max(shears) <= 0.1 + 1e-3 and max(shears) - min(shears) > 0.05
    assert np.abs(offsets).max() > 1.0  # the crop window moves


def test_transform_probability_leaves_the_other_draws_exactly_untouched():
    config = AugmentConfig(flip=False, rotate90=False, transform_probability=0.5, **NO_COLOUR)
    image, mask = _coordinate_pair(24, 24)
    untouched = 0
    for s in range(16):
        rows, cols = _positions(image, mask, [s, 22], config)
        grid_r, grid_c = np.mgrid[:24, :24]
        if np.allclose(rows, grid_r, atol=1e-4) and np.allclose(cols, grid_c, atol=1e-4):
            untouched += 1
    assert 3 <= untouched <= 13  # about half, and those exactly the identity


def test_rotate90_with_unknown_static_shape():
    from tfseg.data.augment import random_rotate90

    rotate = tf.function(random_rotate90, input_signature=[tf.TensorSpec([None, None, 1], tf.float32),
                                                           tf.TensorSpec([None, None, 1], tf.int32),
                                                           tf.TensorSpec([2], tf.int32)])
    square = np.arange(16, dtype="float32").reshape(4, 4, 1)
    turned = {np.asarray(rotate(square, square.astype("int32"), tf.constant([s, 0])))[0].tobytes()
              for s in range(8)}
    assert len(turned) >= 3  # several quarter turns drawn
    wide = np.arange(12, dtype="float32").reshape(3, 4, 1)
    for s in range(4):
        out_image, out_mask = rotate(wide, wide.astype("int32"), tf.constant([s, 0]))
        assert np.array_equal(out_image.numpy(), wide) and np.array_equal(out_mask.numpy(), wide.astype("int32"))


def _elastic_displacements(height, width, seeds=8):
    config = AugmentConfig(flip=False, rotate90=False, transform_probability=0.0, elastic=0.03, **NO_COLOUR)
    image, mask = _coordinate_pair(height, width)
    grid_r, grid_c = np.mgrid[:height, :width]
    moved = [_positions(image, mask, [s, 23], config) for s in range(seeds)]
    return np.stack([r - grid_r for r, _ in moved]), np.stack([c - grid_c for _, c in moved])


def test_elastic_strength_follows_the_larger_side_and_rows_and_columns_move_independently():
    square_r, square_c = _elastic_displacements(48, 48)
    wide_r, wide_c = _elastic_displacements(16, 48)
    # std = elastic x the larger side: a 16x48 image moves as much as a 48x48 one (not a third)
    ratio = np.std(wide_c) / np.std(square_c)
    assert 0.6 < ratio < 1.6, ratio
    assert 0.3 * 0.03 * 48 < np.std(square_c) < 1.5 * 0.03 * 48
    # two independent fields: rows and columns are not displaced alike
    assert abs(np.corrcoef(square_r.ravel(), square_c.ravel())[0, 1]) < 0.5


# --------------------------------------------------------------------------
# Colour jitter: each step alone has its documented form
# --------------------------------------------------------------------------
COLOUR_OFF = dict(flip=False, rotate90=False, transform_probability=0.0, brightness=0, contrast=0, saturation=0,
                  hue=0, gamma=0)


def _colour_only(step, spread, image, seed):
    config = AugmentConfig(**{**COLOUR_OFF, step: spread})
    out, _ = augment_example(tf.constant(image), tf.zeros(image.shape[:2] + (1,)), tf.constant([seed, 31]), config)
    return out.numpy().astype("float64")


def _hsv(image):
    import colorsys

    return np.array([colorsys.rgb_to_hsv(*pixel) for pixel in image.reshape(-1, 3)]).reshape(image.shape)


def _colour_image():
    return np.random.default_rng(40).uniform(0.1, 0.9, (6, 6, 3)).astype("float32")


def test_brightness_adds_one_shift_within_its_range():
    image = _colour_image()
    shifts = []
    for s in range(8):
        shift = _colour_only("brightness", 0.08, image, s) - image
        assert np.ptp(shift) < 1e-5 and abs(shift.mean()) <= 0.08 + 1e-6
        shifts.append(shift.mean())
    assert np.ptp(shifts) > 0.04


def test_contrast_scales_around_the_image_mean_within_its_range():
    image = _colour_image()
    mean = image.mean(axis=(0, 1))
    factors = []
    for s in range(8):
        out = _colour_only("contrast", 0.15, image, s)
        factor = (out - mean) / (image - mean)
        assert np.ptp(factor) < 1e-3 and abs(factor.mean() - 1) <= 0.15 + 1e-4
        factors.append(factor.mean())
    assert np.ptp(factors) > 0.08


def test_gamma_is_one_power_within_its_range():
    image = _colour_image()
    exponents = []
    for s in range(8):
        exponent = np.log(_colour_only("gamma", 0.15, image, s)) / np.log(image)
        assert np.ptp(exponent) < 1e-3 and abs(np.log(exponent.mean())) <= 0.15 + 1e-4
        exponents.append(exponent.mean())
    assert np.ptp(exponents) > 0.08


def test_saturation_scales_saturation_only_and_hue_turns_hue_only():
    image = _colour_image()
    before = _hsv(image)
    factors, turns = [], []
    for s in range(8):
        after = _hsv(_colour_only("saturation", 0.15, image, s))
        np.testing.assert_allclose(after[..., [0, 2]], before[..., [0, 2]], atol=1e-4)
        factor = after[..., 1] / before[..., 1]
        assert np.ptp(factor) < 1e-3 and abs(factor.mean() - 1) <= 0.15 + 1e-4
        factors.append(factor.mean())
        after = _hsv(_colour_only("hue", 0.02, image, s))
        np.testing.assert_allclose(after[..., 1:], before[..., 1:], atol=1e-4)
        turn = (after[..., 0] - before[..., 0] + 0.5) % 1.0 - 0.5
        assert np.ptp(turn) < 1e-3 and abs(turn.mean()) <= 0.02 + 1e-4
        turns.append(turn.mean())
    assert np.ptp(factors) > 0.08 and np.ptp(turns) > 0.01


def test_saturation_sees_the_clipped_brightness():
    # Brightness then clip, then saturation: two pixels that differ only above the clip give the same colour.
    grey = [0.5, 0.5, 0.5]
    config = AugmentConfig(**{**COLOUR_OFF, "brightness": 0.3, "saturation": 0.5})
    compared = 0
    for s in range(16):
        outs = []
        for red in (1.0, 0.9):
            image = tf.constant([[[red, 0.4, 0.4], grey]], tf.float32)
            out, _ = augment_example(image, tf.zeros([1, 2, 1]), tf.constant([s, 32]), config)
            outs.append(out.numpy())
        if outs[0][0, 1, 0] - 0.5 > 0.1 + 1e-4:  # the shift pushed both reds past 1
            np.testing.assert_allclose(outs[0][0, 0], outs[1][0, 0], atol=1e-5)
            compared += 1
    assert compared >= 2
