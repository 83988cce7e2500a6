"""tfseg.layers.BatchNorm: the same numbers as keras.layers.BatchNormalization (values, every
gradient, moving statistics) in float32, close in bfloat16, and bfloat16 activations stay bfloat16."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras

from tfseg.layers import BatchNorm

tf = pytest.importorskip("tensorflow")

SHAPE = (4, 6, 6, 5)


def pair(dtype="float32", trainable=True, seed=0):
    """Keras' layer and ours with the same random gamma, beta and moving statistics."""
    rng = np.random.default_rng(seed)
    layers = keras.layers.BatchNormalization(dtype=dtype), BatchNorm(dtype=dtype)
    for layer in layers:
        layer.build(SHAPE)
        layer.trainable = trainable
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        value = rng.uniform(0.5, 2.0, SHAPE[-1]).astype("float32")
        for layer in layers:
            getattr(layer, name).assign(value)
    return layers


def forward_backward(layer, x, weights, training, graph):
    variable = tf.Variable(x)

    def step():
        with tf.GradientTape() as tape:
            y = layer(variable, training=training)
            loss = tf.reduce_sum(tf.cast(y, "float32") * weights)
        return y, tape.gradient(loss, [variable] + layer.trainable_variables)

    y, grads = tf.function(step)() if graph else step()
    return np.asarray(tf.cast(y, "float32")), [np.asarray(tf.cast(g, "float32")) for g in grads], y.dtype


def data(seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=SHAPE) * 3.0 + 2.0).astype("float32")  # a mean far from 0: no cancellation allowed
    return x, rng.normal(size=SHAPE).astype("float32")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("trainable", [True, False])
@pytest.mark.parametrize("graph", [False, True])
def test_float32_matches_keras_values_gradients_and_moving_statistics(training, trainable, graph):
    x, weights = data()
    ref, new = pair(trainable=trainable)
    y_ref, g_ref, _ = forward_backward(ref, x, weights, training, graph)
    y_new, g_new, _ = forward_backward(new, x, weights, training, graph)
    np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)
    assert len(g_new) == len(g_ref) == (3 if trainable else 1)
    for a, b in zip(g_new, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(new, name).numpy(), getattr(ref, name).numpy(), rtol=1e-6, atol=1e-6)
    if training and trainable:  # the update really happened (momentum 0.99 from the assigned values)
        assert not np.allclose(new.moving_mean.numpy(), pair()[1].moving_mean.numpy())


def test_bfloat16_stays_bfloat16_and_is_close_to_float32():
    x, weights = data()
    ref, _ = pair()
    _, new = pair(dtype="mixed_bfloat16")
    y_ref, g_ref, _ = forward_backward(ref, x, weights, True, True)
    y_new, g_new, dtype = forward_backward(new, tf.cast(x, "bfloat16"), weights, True, True)
    assert dtype == tf.bfloat16
    assert np.abs(y_new - y_ref).max() < 0.05  # outputs of order 1-4, bfloat16 has 8 bits of mantissa
    for a, b in zip(g_new, g_ref):
        assert np.abs(a - b).max() <= 0.02 * np.abs(b).max()
    np.testing.assert_allclose(new.moving_mean.numpy(), ref.moving_mean.numpy(), rtol=1e-2)
    np.testing.assert_allclose(new.moving_variance.numpy(), ref.moving_variance.numpy(), rtol=1e-2)


def test_variance_about_a_large_mean_is_not_lost_in_bfloat16():
    # E[x^2] - E[x]^2 in bfloat16 would return garbage here; the variance about a first mean does not
    x = (100.0 + np.random.default_rng(2).normal(size=SHAPE)).astype("float32")
    layer = BatchNorm(dtype="mixed_bfloat16", momentum=0.0)
    y = np.asarray(tf.cast(layer(tf.cast(x, "bfloat16"), training=True), "float32"))
    assert abs(float(layer.moving_mean.numpy().mean()) - 100.0) < 0.5
    np.testing.assert_allclose(layer.moving_variance.numpy(), x.var(axis=(0, 1, 2)), rtol=0.1)
    assert abs(y.std() - 1.0) < 0.2


def test_fallbacks_to_keras_compute_the_same():
    x, _ = data()
    for kwargs in ({"axis": 1}, {"center": False}, {"dtype": "mixed_float16"}):
        ref, new = keras.layers.BatchNormalization(**kwargs), BatchNorm(**kwargs)
        np.testing.assert_allclose(np.asarray(new(x, training=True), "float32"),
                                   np.asarray(ref(x, training=True), "float32"), rtol=1e-3, atol=1e-3)


def test_saved_and_loaded_with_the_same_weights_as_keras_layer(tmp_path):
    inputs = keras.Input(shape=SHAPE[1:])
    model = keras.Model(inputs, BatchNorm(name="bn")(keras.layers.Conv2D(5, 3, padding="same")(inputs)))
    x, _ = data()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x, epochs=1, verbose=0)
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("bn")) is BatchNorm
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # the weights are Keras' own: a model with keras.layers.BatchNormalization takes them unchanged
    plain = keras.Model(inputs, keras.layers.BatchNormalization()(model.layers[1].output))
    plain.layers[-1].set_weights(model.get_layer("bn").get_weights())
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


JAX_CHECK = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, keras
    from tfseg.layers import BatchNorm
    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.normal(size=(4, 6, 6, 5)) * 3 + 2).astype("float32"))
    w = jnp.asarray(rng.normal(size=x.shape).astype("float32"))
    out = {}
    for training in (True, False):
        grads = []
        for layer in (keras.layers.BatchNormalization(), BatchNorm()):
            layer.build(x.shape)
            def loss(tv, xx, layer=layer):
                y, _ = layer.stateless_call(tv, [v.value for v in layer.non_trainable_variables], xx, training=training)
                return jnp.sum(y * w)
            tv = [v.value for v in layer.trainable_variables]
            grads.append(jax.tree_util.tree_leaves(jax.jit(jax.grad(loss, argnums=(0, 1)))(tv, x)))
        out[str(training)] = max(float(jnp.abs(a - b).max()) for a, b in zip(*grads))
    print(json.dumps(out))
    """
)


def test_gradients_match_keras_under_jax():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", JAX_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    diffs = json.loads(done.stdout.strip().splitlines()[-1])
    assert diffs.keys() == {"True", "False"}
    assert max(diffs.values()) < 1e-4, diffs


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
def test_any_channel_axis_matches_keras(axis):
    # the fast path assumes channels last; any other axis must give Keras' numbers too
    x, weights = data()
    ref, new = keras.layers.BatchNormalization(axis=axis), BatchNorm(axis=axis)
    for layer in (ref, new):
        layer.build(SHAPE)
    y_ref, g_ref, _ = forward_backward(ref, x, weights, True, False)
    y_new, g_new, _ = forward_backward(new, x, weights, True, False)
    np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_new, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, 3])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_channels_last_takes_the_own_path_not_keras(axis, dtype, monkeypatch):
    # the layer exists for this path (bfloat16 activations, float32 statistics): it must not fall back
    def fallback(*args, **kwargs):
        raise AssertionError("fell back to keras.layers.BatchNormalization.call")

    layer = BatchNorm(axis=axis, dtype=dtype)
    layer.build(SHAPE)
    monkeypatch.setattr(keras.layers.BatchNormalization, "call", fallback)
    x, _ = data()
    for training in (True, False):
        assert np.isfinite(np.asarray(tf.cast(layer(x, training=training), "float32"))).all()


@pytest.mark.parametrize("mean,std,seed", [(100.0, 1.0, 3), (100.25, 0.5, 4)], ids=["mean-100", "mean-100.25"])
def test_bfloat16_batch_statistics_are_float32_accurate(mean, std, seed):
    # Mean 100 in bfloat16 (steps of 0.5 there): the statistics must not inherit bfloat16's rounding.
    # Mean 100.25 lies halfway between two steps: the first mean, in bfloat16, is off by about 0.25,
    # which the variance must take out (E[(x - m0)^2] - shift^2) against a variance of 0.25.
    x = tf.cast(np.random.default_rng(seed).normal(mean, std, (64, 8, 8, 4)), "bfloat16")
    layer = BatchNorm(momentum=0.0, dtype="mixed_bfloat16")
    layer.build(x.shape)
    layer(x, training=True)
    values = np.asarray(tf.cast(x, "float64"))
    np.testing.assert_allclose(layer.moving_mean.numpy(), values.mean(axis=(0, 1, 2)), atol=2e-3)
    np.testing.assert_allclose(layer.moving_variance.numpy(), values.var(axis=(0, 1, 2)), rtol=2e-2)
