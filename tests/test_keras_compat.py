"""The private Keras behaviour tfseg.keras_compat works around: fail loudly when it changes."""

import inspect
import os

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


# --- register_compile_names -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["losses", "metrics"])
def test_keras_get_still_reads_strings_from_its_module_table(kind):
    """register_compile_names writes into the dict Keras' `get` reads a string from; if `get` reads
    elsewhere, compile(loss="bce_dice") stops working: re-check keras_compat.register_compile_names."""
    import importlib

    module = importlib.import_module(f"keras.src.{kind}")
    assert "ALL_OBJECTS_DICT.get(identifier" in inspect.getsource(module.get)
    import tfseg.losses
    import tfseg.metrics

    assert isinstance(keras.losses.get("bce_dice"), tfseg.losses.BCEDiceLoss)
    assert isinstance(keras.metrics.get("dice"), tfseg.metrics.Dice)


# --- the callback state RunBackup saves and restores ------------------------------------------------
def _model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    return model


def test_callback_state_names_are_the_attributes_keras_reads():
    """RunBackup restores CALLBACK_STATE by setattr after the callbacks' on_train_begin (which resets them):
    setting them must still steer EarlyStopping and ReduceLROnPlateau."""
    from tfseg.training.callbacks import CALLBACK_STATE

    model = _model()
    stopper = keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=3, restore_best_weights=True)
    stopper.set_model(model)
    stopper.wait = 7
    stopper.on_train_begin()
    assert stopper.wait == 0  # reset by on_train_begin: RunBackup must come after it
    for attribute in CALLBACK_STATE["early_stopping"]:
        assert hasattr(stopper, attribute), attribute
    stopper.on_epoch_end(0, {"val_dice": 0.8})
    assert stopper.best == 0.8 and stopper.best_epoch == 0 and stopper.best_weights is not None
    stopper.best, stopper.wait = 0.9, 2  # as restored from state.json
    stopper.on_epoch_end(5, {"val_dice": 0.5})
    assert model.stop_training and stopper.stopped_epoch == 5

    reducer = keras.callbacks.ReduceLROnPlateau(monitor="val_dice", mode="max", factor=0.5, patience=2)
    reducer.set_model(model)
    reducer.on_train_begin()
    for attribute in CALLBACK_STATE["reduce_lr"]:
        assert hasattr(reducer, attribute), attribute
    reducer.best, reducer.wait, reducer.cooldown_counter = 0.9, 1, 0
    reducer.on_epoch_end(3, {"val_dice": 0.5})
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)


# --- keras_cache_dir ---------------------------------------------------------------------------
def test_get_file_caches_where_weights_cache_dir_says(tmp_path):
    """The offline error names the file keras.utils.get_file would write: the same folder."""
    from tfseg.models.encoders import weights_cache_dir

    source = tmp_path / "weights.h5"
    source.write_bytes(b"weights")
    name = f"tfseg-keras-compat-{os.getpid()}.h5"
    path = keras.utils.get_file(name, origin=source.as_uri(), cache_subdir="models")
    try:
        assert os.path.dirname(path) == weights_cache_dir()
    finally:
        os.remove(path)
