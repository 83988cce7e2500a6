"""SegNet's pooling-with-indices and unpooling layers against a NumPy reference."""

import numpy as np
import pytest

import keras
from keras import ops

from tfseg.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D


def reference_pool(x):
    """NumPy 2x2/2 max pooling: (pooled, first row-major argmax in each window)."""
    b, h, w, c = x.shape
    windows = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, c, 4)
    return windows.max(-1), windows.argmax(-1)  # np.argmax returns the first maximum


def reference_unpool(values, indices):
    """NumPy unpooling by explicit loops: out[2i + k // 2, 2j + k % 2] = value."""
    b, h, w, c = values.shape
    out = np.zeros((b, 2 * h, 2 * w, c), values.dtype)
    for n, i, j, ch in np.ndindex(b, h, w, c):
        k = indices[n, i, j, ch]
        out[n, 2 * i + k // 2, 2 * j + k % 2, ch] = values[n, i, j, ch]
    return out


def gradient(fn, x):
    """d sum(fn(x)) / dx on the active backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v).sum())(x))
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(fn(x))
        return tape.gradient(total, x).numpy()
    pytest.skip(f"no gradient helper for backend {backend}")


def test_pooling_matches_numpy_max_and_argmax():
    x = np.random.RandomState(0).normal(size=(2, 6, 8, 3)).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    expected_pooled, expected_indices = reference_pool(x)
    np.testing.assert_array_equal(np.asarray(pooled), expected_pooled)
    np.testing.assert_array_equal(np.asarray(indices), expected_indices)
    assert ops.dtype(indices) == "int32"


def test_pooling_ties_go_to_the_first_position():
    # window [[1, 3], [3, 3]]: maxima at 1, 2, 3 -> index 1; constant window -> index 0
    x = np.array([[1, 3, 2, 2], [3, 3, 2, 2]], "float32").reshape(1, 2, 4, 1)
    _, indices = MaxPoolingWithArgmax2D()(x)
    assert np.asarray(indices).ravel().tolist() == [1, 0]


def test_unpooling_puts_each_value_at_its_argmax():
    x = np.random.RandomState(1).uniform(size=(2, 4, 6, 5)).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    out = np.asarray(MaxUnpooling2D()(pooled, indices))
    np.testing.assert_array_equal(out, reference_unpool(np.asarray(pooled), np.asarray(indices)))
    # the kept pixels are exactly the maxima of the input, the rest are zero
    np.testing.assert_array_equal(out[out != 0], x[out != 0])
    assert np.count_nonzero(out) == np.prod(pooled.shape)


def test_unpooling_with_given_indices():
    values = np.arange(1, 9, dtype="float32").reshape(1, 2, 2, 2)
    indices = np.array([0, 1, 2, 3, 3, 2, 1, 0], "int32").reshape(1, 2, 2, 2)
    out = np.asarray(MaxUnpooling2D()(values, indices))
    np.testing.assert_array_equal(out, reference_unpool(values, indices))


def test_gradient_flows_through_unpooling_to_the_placed_values():
    indices = np.random.RandomState(2).randint(0, 4, size=(2, 3, 3, 4)).astype("int32")
    values = np.random.RandomState(3).normal(size=(2, 3, 3, 4)).astype("float32")
    weights = np.random.RandomState(4).normal(size=(2, 6, 6, 4)).astype("float32")
    grad = gradient(lambda v: MaxUnpooling2D()(v, indices) * weights, values)
    # d/dv sum(w * unpool(v)) = w at the position where v was placed
    b, i, j, c = np.indices(values.shape)
    expected = weights[b, 2 * i + indices // 2, 2 * j + indices % 2, c]
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_gradient_of_pooling_goes_to_the_recorded_position_only():
    x = np.array([[2, 2], [2, 2]], "float32").reshape(1, 2, 2, 1)  # all tied -> index 0
    grad = gradient(lambda v: MaxPoolingWithArgmax2D()(v)[0], x)
    assert grad.ravel().tolist() == [1.0, 0.0, 0.0, 0.0]


def test_unknown_batch_and_spatial_sizes():
    images = keras.Input(shape=(None, None, 2))
    pooled, indices = MaxPoolingWithArgmax2D()(images)
    model = keras.Model(images, MaxUnpooling2D()(pooled, indices))
    assert model.output_shape == (None, None, None, 2)
    for batch, size in ((1, 4), (3, 8)):
        x = np.random.RandomState(batch).uniform(size=(batch, size, size + 2, 2)).astype("float32")
        out = np.asarray(model.predict(x, verbose=0))
        expected_pooled, expected_indices = reference_pool(x)
        np.testing.assert_array_equal(out, reference_unpool(expected_pooled, expected_indices))


def test_odd_size_is_refused_when_known():
    with pytest.raises(ValueError, match="odd"):
        MaxPoolingWithArgmax2D()(keras.Input(shape=(5, 4, 1)))


def test_half_precision_keeps_dtypes():
    pool = MaxPoolingWithArgmax2D(dtype="mixed_float16")
    pooled, indices = pool(np.ones((1, 4, 4, 2), "float32"))
    out = MaxUnpooling2D(dtype="mixed_float16")(pooled, indices)
    assert ops.dtype(pooled) == "float16" and ops.dtype(out) == "float16"
    assert ops.dtype(indices) == "int32"


@pytest.mark.parametrize("layer_class", [MaxPoolingWithArgmax2D, MaxUnpooling2D])
def test_config_round_trip(layer_class):
    layer = layer_class(name="custom", dtype="mixed_bfloat16")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is layer_class
    assert restored.get_config() == layer.get_config()


def test_layers_survive_keras_file(tmp_path):
    images = keras.Input(shape=(8, 8, 3))
    pooled, indices = MaxPoolingWithArgmax2D()(images)
    model = keras.Model(images, MaxUnpooling2D()(keras.layers.Conv2D(3, 1)(pooled), indices))
    x = np.random.RandomState(5).uniform(size=(2, 8, 8, 3)).astype("float32")
    path = tmp_path / "layers.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (None, 8, 10, 1), (1, None, None, 2)])
def test_declared_output_shapes_match_what_the_layers_compute(shape):
    pool, unpool = MaxPoolingWithArgmax2D(), MaxUnpooling2D()
    pooled_spec, indices_spec = pool.compute_output_spec(keras.KerasTensor(shape))
    half = tuple(None if d is None else d // 2 for d in shape[1:3])
    assert pooled_spec.shape == indices_spec.shape == (shape[0], *half, shape[3])
    assert unpool.compute_output_shape(shape, shape) == (
        shape[0], *(None if d is None else 2 * d for d in shape[1:3]), shape[3])
    concrete = tuple(d or 4 for d in shape)
    x = np.random.default_rng(0).normal(size=concrete).astype("float32")
    pooled, indices = pool(x)
    assert tuple(pooled.shape) == (concrete[0], concrete[1] // 2, concrete[2] // 2, concrete[3])
    assert tuple(unpool(pooled, indices).shape) == concrete
