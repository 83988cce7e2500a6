"""load_dataset and its resize/scale steps (tfseg.data.pipeline)."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfseg.data import SourceSpec, dataset_summary, load_dataset, open_source, resize_example, scale_example
from tfseg.data.pipeline import open_dataset_source
from tfseg.data.sources import Source
from tfseg.errors import ConfigError, TfsegError


class ArraySource(Source):
    """An in-memory source of numpy (image, mask) pairs of any size; ``bad`` ids fail to decode."""

    def __init__(self, pairs, num_classes=1, bad=()):
        self.spec = SourceSpec("folder", path="memory", text="folder:memory")
        self.num_classes = num_classes
        self._pairs = {f"s{i:03d}": pair for i, pair in enumerate(pairs)}
        self._bad = set(bad)

    def ids(self):
        return sorted(self._pairs)

    def examples(self, ids):
        def rows():
            for sample_id in ids:
                image, mask = self._pairs[sample_id]
                # a corrupt file: bytes that are no image, decoded in the graph
                yield sample_id, image, mask, sample_id in self._bad

        def decode(sample_id, image, mask, bad):
            image = tf.cond(bad, lambda: tf.io.decode_png(tf.constant(b"not a png"), channels=3), lambda: image)
            return {"id": sample_id, "image": image, "mask": mask}

        signature = (
            tf.TensorSpec([], tf.string),
            tf.TensorSpec([None, None, 3], tf.uint8),
            tf.TensorSpec([None, None, 1], tf.uint8),
            tf.TensorSpec([], tf.bool),
        )
        return tf.data.Dataset.from_generator(rows, output_signature=signature).map(decode)


def _pairs(count, seed=0, num_classes=1):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        height, width = rng.integers(9, 50, 2)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.integers(0, num_classes if num_classes > 1 else 2, (height, width, 1), dtype=np.uint8)
        pairs.append((image, mask))
    return pairs


def _epoch(ds):
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(masks)


def test_synthetic_batches_have_the_contract_shapes_dtypes_and_ranges():
    ds = load_dataset("synthetic:20", image_size=32, batch_size=4)
    images, masks = _epoch(ds)
    assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3] and ds.element_spec[0].dtype == tf.float32
    assert ds.element_spec[1].shape.as_list() == [None, 32, 32, 1] and ds.element_spec[1].dtype == tf.float32
    assert images.shape == (14, 32, 32, 3) and masks.shape == (14, 32, 32, 1)  # 70% of 20
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05
    assert set(np.unique(masks)) == {0.0, 1.0}


def test_synthetic_is_generated_at_the_pipeline_size():
    assert open_dataset_source("synthetic:5", image_size=48).image_size == 48
    assert open_dataset_source("synthetic:5", image_size=(24, 40)).image_size == 40
    images, _ = _epoch(load_dataset("synthetic:10", split="all", image_size=(24, 40), batch_size=5))
    assert images.shape == (10, 24, 40, 3)


def test_same_seed_same_stream_new_epochs_differ_other_seed_differs():
    def first_two_epochs(seed):
        ds = load_dataset("synthetic:12", image_size=32, batch_size=4, seed=seed)
        return _epoch(ds), _epoch(ds)

    (a1, m1), (a2, _) = first_two_epochs(0)
    (b1, n1), (b2, _) = first_two_epochs(0)
    (c1, _), _ = first_two_epochs(1)
    assert np.array_equal(a1, b1) and np.array_equal(m1, n1) and np.array_equal(a2, b2)
    assert not np.array_equal(a1, a2)  # reshuffled and re-augmented each epoch
    assert not np.array_equal(a1, c1)


def test_val_and_test_are_not_augmented_nor_shuffled_and_disjoint():
    source = open_source("synthetic:20", image_size=32)
    val1, _ = _epoch(load_dataset(source, split="val", image_size=32, batch_size=2))
    val2, _ = _epoch(load_dataset(source, split="val", image_size=32, batch_size=3, seed=9))
    test, _ = _epoch(load_dataset(source, split="test", image_size=32, batch_size=2))
    raw = np.stack([s["image"] for s in source.examples(source.split_ids("val")).as_numpy_iterator()])
    assert np.array_equal(val1, raw / np.float32(255.0))
    assert len(val2) == 3 and not any(np.array_equal(v, t) for v in val1 for t in test)


def test_augment_flags():
    plain, _ = _epoch(load_dataset("synthetic:10", split="val", image_size=32, batch_size=8))
    forced, _ = _epoch(load_dataset("synthetic:10", split="val", image_size=32, batch_size=8, augment=True))
    off = load_dataset("synthetic:10", image_size=32, batch_size=8, augment=False, shuffle=False)
    dict_config = load_dataset("synthetic:10", image_size=32, batch_size=8, augment={"rotation": 0, "elastic": 0.02})
    assert not np.array_equal(plain, forced)
    source = open_source("synthetic:10", image_size=32)
    raw = np.stack([s["image"] for s in source.examples(source.split_ids("train")).as_numpy_iterator()])
    assert np.array_equal(_epoch(off)[0], raw / np.float32(255.0))
    assert _epoch(dict_config)[0].shape == (7, 32, 32, 3)


def test_odd_sized_sources_are_resized_masks_stay_binary():
    source = ArraySource(_pairs(10))
    images, masks = _epoch(load_dataset(source, split="all", image_size=24, batch_size=3))
    assert images.shape == (10, 24, 24, 3) and masks.shape == (10, 24, 24, 1)
    assert set(np.unique(masks)) <= {0.0, 1.0} and masks.dtype == np.float32


def test_a_folder_of_png_files_goes_through_the_pipeline(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (image, mask) in enumerate(_pairs(5, seed=3)):
        Image.fromarray(image).save(tmp_path / "images" / f"im{i}.png")
        Image.fromarray(mask[..., 0] * 255).save(tmp_path / "masks" / f"im{i}.png")
    images, masks = _epoch(load_dataset(f"folder:{tmp_path}", split="all", image_size=24, batch_size=2))
    assert images.shape == (5, 24, 24, 3) and set(np.unique(masks)) == {0.0, 1.0}


def test_multi_class_masks_are_int32_ids_in_range():
    source = ArraySource(_pairs(10, num_classes=4), num_classes=4)
    _, masks = _epoch(load_dataset(source, split="all", image_size=20, batch_size=4))
    assert masks.dtype == np.int32 and set(np.unique(masks)) <= {0, 1, 2, 3}
    ds = load_dataset(source, split="all", image_size=20, batch_size=4, num_classes=6)
    assert ds.element_spec[1].dtype == tf.int32
    with pytest.raises(ConfigError, match="4 classes"):
        load_dataset(source, num_classes=1)
    with pytest.raises(ConfigError, match="4 classes"):
        load_dataset(source, num_classes=3)


def test_class_ids_beyond_num_classes_stop_with_the_sample_id():
    pairs = _pairs(3, num_classes=4)
    pairs[1][1][0, 0, 0] = 9
    source = ArraySource(pairs, num_classes=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="s001"):
        _epoch(load_dataset(source, split="all", image_size=16, batch_size=3))


def test_skip_bad_drops_undecodable_samples():
    source = ArraySource(_pairs(6), bad={"s002"})
    with pytest.raises(tf.errors.InvalidArgumentError):
        _epoch(load_dataset(source, split="all", image_size=16, batch_size=2))
    images, _ = _epoch(load_dataset(source, split="all", image_size=16, batch_size=2, skip_bad=True))
    assert len(images) == 5


@pytest.mark.parametrize("cache", ["memory", "none", "auto", False, True])
def test_cache_modes_give_the_same_data(cache, caplog):
    with caplog.at_level(logging.INFO, logger="tfseg.data.pipeline"):
        images, _ = _epoch(load_dataset("synthetic:10", split="val", image_size=16, batch_size=2, cache=cache))
    assert images.shape == (dataset_summary("synthetic:10")["counts"]["val"], 16, 16, 3)
    reference, _ = _epoch(load_dataset("synthetic:10", split="val", image_size=16, batch_size=2, cache="none"))
    assert np.array_equal(images, reference)
    if cache == "auto":
        assert "caching in memory" in caplog.text


def test_repeat_and_drop_remainder():
    ds = load_dataset("synthetic:10", image_size=16, batch_size=3, repeat=True, drop_remainder=True)
    assert ds.element_spec[0].shape.as_list() == [3, 16, 16, 3]
    assert len(list(ds.take(6))) == 6  # 7 training samples, more batches than one epoch


def test_dataset_summary_counts_splits_without_decoding():
    summary = dataset_summary("synthetic:40", fractions=(0.5, 0.25, 0.25))
    assert summary == {"source": "synthetic:40", "num_classes": 1, "counts": {"train": 20, "val": 10, "test": 10}, "total": 40}
    assert dataset_summary(ArraySource(_pairs(3), num_classes=2))["counts"] == {"train": 1, "val": 1, "test": 1}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "validation"}, "split"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": (32,)}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"cache": "disk"}, "cache"),
        ({"fractions": (0.5, 0.5)}, "fractions"),
        ({"augment": {"spin": 1}}, "spin"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(kwargs, match):
    with pytest.raises(TfsegError, match=match) as info:
        load_dataset("synthetic:10", **kwargs)
    assert "\n" not in str(info.value)


def test_bad_sources_are_user_errors():
    with pytest.raises(TfsegError, match="nosuch"):
        load_dataset("nosuch:path")
    with pytest.raises(ConfigError, match="source options"):
        load_dataset(ArraySource(_pairs(3)), seed=0, colour="red")
    with pytest.raises(TfsegError, match="'val' split is empty"):
        load_dataset(ArraySource(_pairs(1)), split="val")


# --- property tests (issue 9): any shape or encoding -> right shapes or a clear TfsegError -------

MASK_ENCODINGS = ["01", "0_255", "bool", "float", "rgb", "rgba_opaque", "rank2"]


def _encode_mask(truth, encoding):
    if encoding == "01":
        return truth[..., None].astype(np.uint8)
    if encoding == "0_255":
        return truth[..., None].astype(np.uint8) * 255
    if encoding == "bool":
        return truth[..., None]
    if encoding == "float":
        return truth[..., None].astype(np.float32)
    if encoding == "rgb":
        return np.repeat(truth[..., None], 3, -1).astype(np.uint8) * 255
    if encoding == "rgba_opaque":
        rgb = np.repeat(truth[..., None], 3, -1).astype(np.uint8) * 255
        return np.concatenate([rgb, np.full(truth.shape + (1,), 255, np.uint8)], -1)
    return truth.astype(np.uint8)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.one_of(
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        st.sampled_from([(1, 1), (3, 200), (200, 3), (1, 97)]),
    ),
    channels=st.sampled_from([None, 1, 2, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, bool]),
    encoding=st.sampled_from(MASK_ENCODINGS),
    fill=st.sampled_from(["empty", "full", "random"]),
    size=st.sampled_from([1, 7, 16, (5, 12)]),
    seed=st.integers(0, 1000),
)
def test_any_image_and_mask_encoding_resizes_to_the_contract(shape, channels, dtype, encoding, fill, size, seed):
    rng = np.random.default_rng(seed)
    image_shape = shape if channels is None else shape + (channels,)
    image = rng.uniform(size=image_shape)
    image = (image > 0.5) if dtype is bool else (image * np.iinfo(dtype).max).astype(dtype) if dtype != np.float32 else image.astype(np.float32)
    truth = {"empty": np.zeros(shape, bool), "full": np.ones(shape, bool), "random": rng.uniform(size=shape) > 0.5}[fill]
    out_image, out_mask = resize_example(image, _encode_mask(truth, encoding), size)
    out_image, out_mask = scale_example(out_image, out_mask)
    height, width = (size, size) if isinstance(size, int) else size
    assert out_image.shape == (height, width, 3) and out_image.dtype == tf.float32
    assert out_mask.shape == (height, width, 1) and out_mask.dtype == tf.float32
    assert 0.0 <= out_image.numpy().min() and out_image.numpy().max() <= 1.0
    values = set(np.unique(out_mask.numpy()))
    assert values <= {0.0, 1.0}
    if fill != "random":  # the encoding was read right (an opaque alpha is not foreground)
        assert values == {1.0 if fill == "full" else 0.0}


@settings(max_examples=15, deadline=None)
@given(
    image_shape=st.sampled_from([(8, 8, 5), (8, 8, 0), (0, 8, 3), (8,), (2, 8, 8, 3)]),
    dtype=st.sampled_from([np.uint8, np.int64, np.complex64]),
)
def test_impossible_images_raise_a_clear_tfseg_error(image_shape, dtype):
    image = np.zeros(image_shape, dtype)
    with pytest.raises(TfsegError, match="image"):
        resize_example(image, np.zeros((8, 8, 1), np.uint8), 16)


@settings(max_examples=10, deadline=None)
@given(mask_shape=st.sampled_from([(8, 8, 3), (8, 8, 2)]), num_classes=st.integers(2, 256))
def test_multi_class_masks_need_one_channel(mask_shape, num_classes):
    with pytest.raises(TfsegError, match="one channel"):
        resize_example(np.zeros((8, 8, 3), np.uint8), np.zeros(mask_shape, np.uint8), 16, num_classes=num_classes)
    _, ids = resize_example(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), num_classes - 1, np.int32), 4, num_classes)
    assert set(np.unique(ids.numpy())) == {num_classes - 1}


# --------------------------------------------------------------------------
# Exact resizing: masks nearest neighbour, images antialiased
# --------------------------------------------------------------------------
def np_nearest(mask, size):
    """Nearest-neighbour resize with half-pixel centres: output pixel i reads input floor((i + 0.5) * in / out)."""
    (h, w), (height, width) = mask.shape[:2], size
    rows = np.minimum(np.floor((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    cols = np.minimum(np.floor((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    return mask[rows][:, cols]


def test_resize_example_mask_literal_up_and_down():
    up = np.array([[0, 3], [3, 0]], np.uint8)[..., None]
    _, out = resize_example(np.zeros((2, 2, 3), np.uint8), up, (3, 5), num_classes=4)
    assert out.numpy()[..., 0].tolist() == [[0, 0, 3, 3, 3], [3, 3, 0, 0, 0], [3, 3, 0, 0, 0]]
    down = np.array([[0, 0, 3, 3, 0, 3], [3, 3, 0, 0, 3, 0], [0, 3, 0, 3, 0, 3]], np.uint8)[..., None]
    _, out = resize_example(np.zeros((3, 6, 3), np.uint8), down, (2, 4), num_classes=4)
    assert out.numpy()[..., 0].tolist() == [[0, 3, 3, 3], [0, 0, 3, 3]]


def test_float_class_id_masks_round_to_the_nearest_id():
    # Class ids saved as floats come back with round-off (2.9999 for 3): they mean the nearest id.
    mask = np.array([[0.0, 0.9999, 1.0001], [2.4999, 2.5001, 2.9999]], np.float32)[..., None]
    _, out = resize_example(np.zeros((2, 3, 3), np.uint8), mask, (2, 3), num_classes=4)
    assert out.numpy()[..., 0].tolist() == [[0, 1, 1], [2, 3, 3]]


def test_uint16_binary_masks_cut_at_half_their_range():
    # 16-bit masks (0/65535 from some tools): a pixel is foreground above 32767.5, as 8-bit ones above 127.5.
    mask = np.array([[0, 255, 32767], [32768, 40000, 65535]], np.uint16)[..., None]
    _, out = resize_example(np.zeros((2, 3, 3), np.uint8), mask, (2, 3))
    assert out.numpy()[..., 0].tolist() == [[0, 0, 0], [1, 1, 1]]
    _, out = resize_example(np.zeros((2, 3, 3), np.uint8), np.array([[0, 1, 0]] * 2, np.uint16), (2, 3))
    assert out.numpy().tolist() == [[[0], [1], [0]]] * 2  # {0, 1} masks: > 0 is foreground at any dtype
    for values, expected in (([0, 2, 200], [0, 0, 1]), ([0, 1, 2], [0, 0, 0])):
        _, out = resize_example(np.zeros((1, 3, 3), np.uint8), np.array([values], np.uint8), (1, 3))
        assert out.numpy().ravel().tolist() == expected  # any value above 1: the cut is half the range (127.5)
    soft = np.array([[0.0, 0.5, 0.5001, 1.0]], np.float32)  # float masks: strictly above 0.5
    _, out = resize_example(np.zeros((1, 4, 3), np.uint8), soft, (1, 4))
    assert out.numpy().ravel().tolist() == [0, 0, 1, 1]


def test_masks_with_alpha_cut_on_every_colour_channel():
    # Grey + alpha (LA PNGs) and RGBA masks: alpha is dropped, any colour channel above the cut counts.
    grey = np.array([[0, 255, 0, 255]], np.uint8)
    opaque = np.full_like(grey, 255)
    blue_only = np.stack([np.zeros_like(grey), np.zeros_like(grey), grey, opaque], -1)
    for mask in (np.stack([grey, opaque], -1), blue_only):
        _, out = resize_example(np.zeros((1, 4, 3), np.uint8), mask, (1, 4))
        assert out.numpy().ravel().tolist() == [0, 1, 0, 1], mask.shape


@pytest.mark.parametrize("mask_size,size", [((37, 53), (16, 16)), ((10, 7), (64, 40)), ((96, 70), (24, 24)),
                                            ((9, 9), (20, 31))])
def test_pipeline_resizes_0_3_masks_by_nearest_neighbour_exactly(mask_size, size):
    rng = np.random.default_rng(sum(mask_size))
    pairs = []
    for _ in range(3):
        blocks = rng.integers(0, 2, (mask_size[0] // 3 + 1, mask_size[1] // 3 + 1)) * 3
        mask = np.kron(blocks, np.ones((3, 3)))[: mask_size[0], : mask_size[1], None].astype(np.uint8)
        pairs.append((rng.integers(0, 256, mask_size + (3,), dtype=np.uint8), mask))
    source = ArraySource(pairs, num_classes=4)
    _, masks = _epoch(load_dataset(source, split="all", image_size=size, batch_size=3, augment=False, shuffle=False))
    for (_, mask), got in zip(pairs, masks):
        assert np.array_equal(got, np_nearest(mask, size).astype(np.int32))
        assert set(np.unique(got)) <= {0, 3}  # bilinear-then-round would invent 1 and 2


def test_binary_0_255_masks_resize_by_nearest_neighbour_exactly():
    rng = np.random.default_rng(5)
    mask = (rng.integers(0, 2, (31, 45, 1)) * 255).astype(np.uint8)
    for size in ((12, 12), (70, 90)):
        _, out = resize_example(np.zeros((31, 45, 3), np.uint8), mask, size)
        assert np.array_equal(out.numpy(), np_nearest(mask // 255, size))


def test_pipeline_downscales_images_with_antialiasing():
    # Stripes 2 px wide every 8 px, shrunk 8x: antialiasing averages them to 255 * 2/8;
    # plain bilinear reads only the two pixels around each sample point (3.5 + 8k): 255.
    cols = np.arange(192) % 8
    image = np.broadcast_to(np.where((cols == 3) | (cols == 4), 255, 0).astype(np.uint8)[None, :, None], (192, 192, 3))
    out, _ = resize_example(image, np.zeros((192, 192, 1), np.uint8), 24)
    inner = out.numpy()[:, 1:-1].astype(float)  # the border columns see a truncated filter
    assert np.abs(inner - 255 * 2 / 8).max() <= 1.0


def test_images_at_the_size_pass_through_and_float_images_round_to_nearest():
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
    out, _ = resize_example(every_value, np.zeros((16, 16, 1), np.uint8), 16)
    assert np.array_equal(out.numpy(), every_value)
    # float in [0, 1]: 100.7 / 255 -> 101 (nearest), not 100
    out, _ = resize_example(np.full((16, 16, 3), 100.7 / 255, np.float32), np.zeros((16, 16, 1), np.uint8), 16)
    assert np.all(out.numpy() == 101)


def _encodings(rgb):
    """The same picture as every image encoding the pipeline accepts, with the RGB it must decode to."""
    grey = rgb[..., 0]
    alpha = np.full(grey.shape, 77, np.uint8)
    grey_rgb = np.repeat(grey[..., None], 3, -1)
    return {
        "grey2d": (grey, grey_rgb),
        "grey": (grey[..., None], grey_rgb),
        "grey_alpha": (np.stack([grey, alpha], -1), grey_rgb),
        "rgb": (rgb, rgb),
        "rgba": (np.concatenate([rgb, alpha[..., None]], -1), rgb),
        "uint16": (rgb.astype(np.uint16) * 257, rgb),  # 257 x v / 65535 = v / 255
        "float": (rgb.astype(np.float32) / 255.0, rgb),
        "bool": (grey[..., None] > 127, np.repeat(np.where(grey > 127, 255, 0).astype(np.uint8)[..., None], 3, -1)),
    }


@pytest.mark.parametrize("static_channels", [True, False], ids=["static", "unknown-channels"])
def test_every_image_encoding_decodes_to_its_rgb_values(static_channels):
    rgb = np.random.default_rng(8).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    mask = np.zeros((6, 7, 1), np.uint8)
    for name, (image, expected) in _encodings(rgb).items():
        if static_channels:
            out, _ = resize_example(image, mask, (6, 7))
        else:
            spec = tf.TensorSpec([None, None, None] if image.ndim == 3 else [None, None], tf.as_dtype(image.dtype))
            resize = tf.function(lambda x: resize_example(x, mask, (6, 7))[0], input_signature=[spec])
            out = resize(image)
        assert np.array_equal(out.numpy(), expected), name


def test_uint8_images_three_pixels_wide_resize_as_grey_not_rgb():
    # The uint8 RGB fast path must look at the channel axis of a rank-3 image, not at the width.
    rng = np.random.default_rng(9)
    grey = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    mask = np.zeros((8, 3, 1), np.uint8)
    for image in (grey, grey[..., None], np.concatenate([np.repeat(grey[..., None], 3, -1),
                                                         np.full((8, 3, 1), 255, np.uint8)], -1)):
        out, _ = resize_example(image, mask, (8, 3))
        assert np.array_equal(out.numpy(), np.repeat(grey[..., None], 3, -1)), image.shape


def test_scale_example_maps_the_storage_form_to_the_model_form_exactly():
    image = np.array([[[0, 128, 255]]], np.uint8)
    out, mask = scale_example(image, np.array([[[1]]], np.uint8))
    np.testing.assert_allclose(out.numpy(), [[[0.0, 128 / 255, 1.0]]], rtol=0, atol=1e-7)
    assert mask.dtype == tf.float32 and mask.numpy().tolist() == [[[1.0]]]
    _, ids = scale_example(image, np.array([[[3]]], np.uint8), num_classes=4)
    assert ids.dtype == tf.int32 and ids.numpy().tolist() == [[[3]]]
