"""Sliding-window prediction and flip TTA (tfseg.tiling) against a NumPy reference (issue 20)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from path_reference import reference_sliding_window
from tfseg import tiling
from tfseg.tiling import flip_tta, sliding_window, window_starts


def ramp_predict(windows):
    """A position-dependent "model": the same pixel gets a different value from each window covering it."""
    windows = np.asarray(windows, np.float32)
    height, width = windows.shape[1:3]
    ramp = (np.arange(height)[:, None] / height - np.arange(width)[None, :] / width).astype(np.float32)
    first = 1.0 / (1.0 + np.exp(-(2.0 * windows[..., 0] + ramp)))
    second = windows[..., 1] * (1.0 + ramp)
    return np.stack([first, second], axis=-1)


def keras_ramp_predict(windows):
    from keras import ops

    height, width = windows.shape[1:3]
    ramp = ops.convert_to_tensor(
        (np.arange(height)[:, None] / height - np.arange(width)[None, :] / width).astype(np.float32))
    first = ops.sigmoid(2.0 * windows[..., 0] + ramp)
    second = windows[..., 1] * (1.0 + ramp)
    return ops.stack([first, second], axis=-1)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(size=shape + (3,)).astype(np.float32)


def test_window_starts_step_by_the_stride_and_end_at_the_edge():
    assert window_starts(100, 32, 0.25) == [0, 24, 48, 68]
    assert window_starts(64, 32, 0.5) == [0, 16, 32]
    assert window_starts(64, 32, 0.0) == [0, 32]
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(20, 32, 0.5) == [0]  # smaller than the window: padded, one window
    assert window_starts(33, 32, 0.25) == [0, 1]


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 400), window=st.integers(1, 64), overlap=st.floats(0.0, 0.95))
def test_window_starts_cover_every_pixel_and_step_by_the_stride(length, window, overlap):
    starts = window_starts(length, window, overlap)
    stride = tiling.window_stride(window, overlap)
    assert stride == max(1, round(window * (1 - overlap)))
    assert starts[0] == 0 and starts == sorted(set(starts))  # sorted, no window twice
    assert starts[-1] == max(length - window, 0)  # the last window ends at the edge (or the image is padded)
    assert all(0 <= start <= max(length - window, 0) for start in starts)  # every window inside the image
    steps = np.diff(starts)
    assert all(step == stride for step in steps[:-1]) and all(0 < step <= stride for step in steps[-1:])
    covered = np.zeros(max(length, window), bool)
    for start in starts:
        covered[start : start + window] = True
    assert covered[:length].all()  # every pixel covered
    # the graph twin (unknown image size) gives the same starts
    assert tiling._starts_tensor(tf.constant(length), window, overlap).numpy().tolist() == starts


@pytest.mark.parametrize("blend", tiling.BLENDS)
def test_uniform_windows_give_that_value_everywhere(blend):
    # Every window predicts 0.3: whatever the weights, the blend is exactly 0.3.
    images = random_images((2, 45, 77))
    out = sliding_window(lambda w: 0.3 + 0.0 * w[..., :1], images, (16, 16), 1, blend=blend, overlap=0.5)
    np.testing.assert_allclose(np.asarray(out), 0.3, atol=1e-6)


def test_constant_blend_averages_the_windows_covering_a_pixel():
    # Window k predicts its own start column (read from a channel that holds x / 100).
    width = 64
    images = np.zeros((1, 32, width, 3), np.float32)
    images[..., 0] = np.arange(width)[None, None, :] / 100.0

    def start_column(windows):
        return np.broadcast_to(np.asarray(windows)[:, :1, :1, :1] * 100.0, np.asarray(windows).shape[:3] + (1,))

    out = np.asarray(sliding_window(start_column, images, (32, 32), 1, overlap=0.5, blend="constant"))[0, 0, :, 0]
    # windows start at 0, 16, 32: columns 0-15 see only window 0, 16-31 windows 0 and 16, ...
    expected = np.repeat([0.0, 8.0, 24.0, 32.0], 16)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("blend", tiling.BLENDS)
@pytest.mark.parametrize("shape, window, overlap", [
    ((1, 70, 50), (32, 32), 0.25),    # several windows per axis, last one moved back to the edge
    ((2, 33, 97), (16, 24), 0.5),     # odd sizes, a non-square window, two images
    ((1, 10, 7), (32, 32), 0.25),     # smaller than the window: padded, cropped back
    ((1, 32, 32), (32, 32), 0.5),     # exactly one window
    ((1, 20, 90), (32, 32), 0.0),     # shorter than the window on one axis only, no overlap
])
def test_matches_the_numpy_reference(blend, shape, window, overlap):
    images = random_images(shape)
    expected = reference_sliding_window(ramp_predict, images, window, overlap, blend)
    out = sliding_window(ramp_predict, images, window, 2, overlap=overlap, blend=blend, window_batch=3)
    assert tuple(out.shape) == shape + (2,)
    np.testing.assert_allclose(np.asarray(out), expected, atol=2e-6)


def test_the_result_does_not_depend_on_the_window_batch():
    images = random_images((2, 61, 45))
    outs = [np.asarray(sliding_window(ramp_predict, images, (16, 16), 2, window_batch=n)) for n in (1, 4, 7, 1000)]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], atol=1e-6)


def test_the_window_budget_is_the_documented_512_mib():
    # bytes per window: h * w * 4 * (channels + K) * 32 (input + output float32, activations 32x)
    assert tiling.windows_per_call((1, 1), 1) == 512 * 2**20 // (4 * 4 * 32)
    assert tiling.windows_per_call((256, 256), 1) == 16  # docs/native_resolution.md
    assert tiling.windows_per_call((256, 256), 1, memory_bytes=10) == 1  # at least one


def test_window_batch_bounds_every_model_call():
    sizes = []

    def counting(windows):
        sizes.append(int(np.asarray(windows).shape[0]))
        return ramp_predict(windows)

    sliding_window(counting, random_images((1, 100, 100)), (32, 32), 2, overlap=0.25, window_batch=5)
    # 4 x 4 = 16 windows: four calls of 5 (the last one filled up with weight-0 copies)
    assert sizes == [5, 5, 5, 5]


def test_flip_tta_averages_the_three_flips():
    images = random_images((2, 24, 24))
    expected = (ramp_predict(images) + ramp_predict(images[:, :, ::-1])[:, :, ::-1]
                + ramp_predict(images[:, ::-1])[:, ::-1]) / 3
    np.testing.assert_allclose(np.asarray(flip_tta(ramp_predict)(images)), expected, atol=1e-6)
    # Inside the sliding window: each window is augmented on its own.
    tiled = sliding_window(ramp_predict, random_images((1, 40, 40)), (24, 24), 2, tta="flips")
    reference = reference_sliding_window(flip_tta(ramp_predict), random_images((1, 40, 40)), (24, 24), 0.25,
                                         "gaussian")
    np.testing.assert_allclose(np.asarray(tiled), reference, atol=2e-6)


def test_graph_of_unknown_image_size_matches_eager():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def tiled(images):
        return sliding_window(keras_ramp_predict, images, (16, 24), 2, overlap=0.5, window_batch=4)

    for shape in [(1, 70, 50), (2, 9, 13), (1, 16, 24), (1, 17, 100)]:
        images = random_images(shape, seed=sum(shape))
        expected = reference_sliding_window(ramp_predict, images, (16, 24), 0.5, "gaussian")
        np.testing.assert_allclose(tiled(tf.constant(images)).numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"overlap": 1.0}, "overlap"),
    ({"overlap": -0.1}, "overlap"),
    ({"blend": "cosine"}, "blend"),
    ({"tta": "rot90"}, "tta"),
    ({"window_batch": 0}, "window_batch"),
])
def test_bad_options_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sliding_window(ramp_predict, random_images((1, 8, 8)), (4, 4), 2, **kwargs)


JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    from keras import ops
    from tfseg.tiling import sliding_window

    assert keras.backend.backend() == "jax"
    images = np.random.default_rng(0).uniform(size=(2, 45, 70, 3)).astype("float32")
    ramp = (np.arange(16)[:, None] / 16 - np.arange(24)[None, :] / 24).astype("float32")

    def predict(windows):
        return ops.stack([ops.sigmoid(2.0 * windows[..., 0] + ramp), windows[..., 1] * (1.0 + ramp)], axis=-1)

    out = sliding_window(predict, images, (16, 24), 2, overlap=0.5, blend="linear", window_batch=5, tta="flips")
    print(type(out).__module__)
    np.save(sys.argv[1], np.asarray(out))
    """
)


@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None, reason="jax is not installed")
def test_runs_under_jax_and_matches_the_reference(tmp_path):
    out_file = tmp_path / "out.npy"
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(out_file)],
        env=dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("jax")
    images = np.random.default_rng(0).uniform(size=(2, 45, 70, 3)).astype("float32")
    expected = reference_sliding_window(flip_tta(ramp_predict), images, (16, 24), 0.5, "linear")
    np.testing.assert_allclose(np.load(out_file), expected, atol=2e-6)
