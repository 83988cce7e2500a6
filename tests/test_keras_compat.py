"""The private Keras behaviour tfseg.keras_compat works around: fail loudly when it changes."""

import inspect

import keras
import pytest

from tfseg import keras_compat


def _version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def test_keras_is_at_least_the_checked_version():
    assert _version(keras.__version__) >= _version(keras_compat.CHECKED_KERAS)


def test_tf_trainer_still_reduces_a_batch_nest_through_the_strategy():
    """with_nested_reduce answers exactly these two calls of Keras' TF trainer (keras-team/keras#20585)."""
    pytest.importorskip("tensorflow")
    from keras.src.backend.tensorflow import trainer

    source = inspect.getsource(trainer)
    assert "data_batch = self.distribute_strategy.reduce(" in source, (
        "Keras' TF trainer no longer reduces a data batch with strategy.reduce: re-check "
        "tfseg.keras_compat.with_nested_reduce (it may no longer be needed)")
    assert 'strategy.reduce("MEAN", v, axis=0)' in source, (
        "Keras' TF trainer no longer averages step logs with reduce(MEAN, axis=0): re-check "
        "tfseg.keras_compat.with_nested_reduce")


def test_nested_reduce_answers_a_nest_with_local_values_and_scalars_without_axis():
    tf = pytest.importorskip("tensorflow")
    strategy = keras_compat.with_nested_reduce(tf.distribute.get_strategy())
    images, masks = tf.ones([2, 4, 4, 3]), tf.zeros([2, 4, 4, 1])
    reduced = strategy.reduce("MEAN", (images, masks))
    assert reduced[0].shape == (2, 4, 4, 3) and float(tf.reduce_sum(reduced[0])) == 96.0
    assert float(strategy.reduce("MEAN", tf.constant(3.0), axis=0)) == 3.0
