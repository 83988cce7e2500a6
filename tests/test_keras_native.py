"""tfseg's pieces used the Keras way: strings in compile, class counts read from the predictions,
metric names apart from Keras' own, any-size models, and a get_config round trip of every registered object."""

import inspect

import keras
import numpy as np
import pytest

import tfseg  # noqa: F401 - registers the compile strings
from tfseg import layers as tfseg_layers
from tfseg import losses, metrics
from tfseg.config import LOSSES
from tfseg.errors import ConfigError
from tfseg.models import build_model
from tfseg.models.encoders import ImageNetPreprocessing


def binary_batch(seed=0, size=16):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(4, size, size, 3)).astype("float32")
    return images, (images[..., :1] > 0.5).astype("float32")


def class_id_batch(seed=0, size=16, classes=3):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(4, size, size, 3)).astype("float32")
    return images, np.minimum((images[..., :1] * classes).astype("int32"), classes - 1)


def tiny(num_classes=1, image_size=16):
    keras.utils.set_random_seed(0)
    return build_model("unet", image_size=image_size, num_classes=num_classes, depth=2, base_filters=2)


# --------------------------------------------------------------------------- a Keras user's script
def test_a_keras_users_script_compiles_with_strings_fits_saves_and_loads(tmp_path):
    images, masks = binary_batch()
    model = tiny()
    model.compile(optimizer="adam", loss="bce_dice", metrics=["dice", "iou"])
    history = model.fit(images, masks, epochs=2, batch_size=2, verbose=0)
    assert {"loss", "dice", "iou"} <= set(history.history)
    logs = model.evaluate(images, masks, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(float(losses.BCEDiceLoss()(masks, model.predict(images, verbose=0))),
                                         rel=1e-5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    before = model.evaluate(images, masks, verbose=0, return_dict=True)
    after = loaded.evaluate(images, masks, verbose=0, return_dict=True)
    for name in ("loss", "dice", "iou"):
        assert after[name] == pytest.approx(before[name], abs=1e-6), name


def test_the_same_strings_train_a_three_class_model_on_class_ids():
    images, ids = class_id_batch()
    model = tiny(num_classes=3)
    model.compile(optimizer="adam", loss="bce_dice", metrics=["dice", "iou", "pixel_accuracy"])
    logs = model.fit(images, ids, epochs=1, batch_size=2, verbose=0).history
    assert all(np.isfinite(logs[name][-1]) for name in ("loss", "dice", "iou", "pixel_accuracy"))
    # the string built the loss and metrics tfseg builds for 3 classes: same values
    explicit = tiny(num_classes=3)
    explicit.set_weights(model.get_weights())
    explicit.compile(loss=losses.CCEDiceLoss(num_classes=3),
                     metrics=[metrics.Dice(num_classes=3), metrics.IoU(num_classes=3)])
    by_name = model.evaluate(images, ids, verbose=0, return_dict=True)
    by_object = explicit.evaluate(images, ids, verbose=0, return_dict=True)
    for name in ("loss", "dice", "iou"):
        assert by_name[name] == pytest.approx(by_object[name], rel=1e-6), name


@pytest.mark.parametrize("name", sorted(losses.COMPILE_NAMES))
def test_every_loss_name_resolves_to_tfseg_loss(name):
    assert type(keras.losses.get(name)) is losses.COMPILE_NAMES[name]


def test_every_config_loss_name_is_a_compile_string():
    assert set(LOSSES) <= set(losses.COMPILE_NAMES)
    # the names Keras has too mean tfseg's losses after import tfseg (as --loss does)
    assert isinstance(keras.losses.get("dice"), losses.DiceLoss)
    assert isinstance(keras.losses.get("tversky"), losses.TverskyLoss)


@pytest.mark.parametrize("name, classes", [("dice", 1), ("focal_tversky_loss", 3), ("CCEDiceLoss", 3), ("bce", 3)])
def test_loss_names_train_in_compile(name, classes):
    images, targets = class_id_batch() if classes > 1 else binary_batch()
    model = tiny(num_classes=classes)
    model.compile(loss=name, run_eagerly=True)
    value = model.evaluate(images, targets, verbose=0, return_dict=True)["loss"]
    expected = float(losses.COMPILE_NAMES[name]()(targets, model.predict(images, verbose=0)))
    assert value == pytest.approx(expected, rel=1e-5)


def test_every_metric_name_compiles_and_logs_under_that_name():
    images, masks = binary_batch()
    model = tiny()
    names = sorted(metrics.COMPILE_NAMES)
    model.compile(loss="bce", metrics=names, run_eagerly=True)
    logs = model.evaluate(images, masks, verbose=0, return_dict=True)
    probabilities = model.predict(images, verbose=0)
    for name in names:
        metric = metrics.COMPILE_NAMES[name]()
        metric.update_state(masks, probabilities)
        assert logs[name] == pytest.approx(float(metric.result()), abs=1e-6), name


def test_metric_names_are_documented_and_apart_from_keras_own():
    names = {cls().name for cls in (metrics.Dice, metrics.IoU, metrics.Precision, metrics.Recall, metrics.FBeta,
                                    metrics.PixelAccuracy)}
    assert names == {"dice", "iou", "pixel_precision", "pixel_recall", "pixel_fbeta", "pixel_accuracy"}
    keras_names = set()
    for _, cls in inspect.getmembers(keras.metrics, inspect.isclass):
        try:
            keras_names.add(cls().name)
        except Exception:  # noqa: BLE001 - metrics that need arguments have no default name to collide with
            continue
    assert "precision" in keras_names and not names & keras_names
    for name in names:
        assert f"`{name}`" in open("docs/guide.md").read(), f"{name} is not in docs/guide.md"


def test_old_metric_names_still_load_from_a_keras_file(tmp_path):
    """Files written before the rename hold ``seg_precision``; they load with that name."""
    images, masks = binary_batch()
    model = tiny()
    model.compile(loss="bce", metrics=[metrics.Precision(name="seg_precision"), "seg_recall"])
    model.evaluate(images, masks, verbose=0)
    path = str(tmp_path / "old.keras")
    model.save(path)
    logs = keras.models.load_model(path).evaluate(images, masks, verbose=0, return_dict=True)
    assert {"seg_precision", "seg_recall"} <= set(logs)


# --------------------------------------------------------------------------- class count from y_pred
def test_cce_dice_loss_without_num_classes_on_a_three_class_output():
    """The case of the issue: CCEDiceLoss() on a 3-class output failed 'Dimensions must be equal, but are 2 and 3'."""
    _, ids = class_id_batch()
    probs = np.random.default_rng(1).dirichlet([1, 1, 1], size=ids.shape[:3]).astype("float32")
    assert float(losses.CCEDiceLoss()(ids, probs)) == pytest.approx(
        float(losses.CCEDiceLoss(num_classes=3)(ids, probs)), rel=1e-6)


LOSS_CLASSES = sorted({cls for cls in losses.COMPILE_NAMES.values()}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", LOSS_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("classes", [1, 3])
def test_every_loss_infers_the_class_count(cls, classes):
    if classes == 1 and getattr(cls, "_binary_form", None):
        _, masks = binary_batch()
        with pytest.raises(ConfigError, match=f"use {cls._binary_form}"):
            cls()(masks, np.full(masks.shape, 0.5, "float32"))
        return
    _, targets = class_id_batch(classes=classes) if classes > 1 else binary_batch()
    rng = np.random.default_rng(2)
    probs = (rng.dirichlet([1] * classes, size=targets.shape[:3]) if classes > 1
             else rng.uniform(size=targets.shape)).astype("float32")
    assert float(cls()(targets, probs)) == pytest.approx(float(cls(num_classes=classes)(targets, probs)), rel=1e-6)


METRIC_CLASSES = [metrics.Dice, metrics.IoU, metrics.Precision, metrics.Recall, metrics.FBeta, metrics.PixelAccuracy]


@pytest.mark.parametrize("cls", METRIC_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("per_image", [False, True])
def test_every_metric_infers_the_class_count(cls, classes, per_image):
    _, targets = class_id_batch(classes=classes) if classes > 1 else binary_batch()
    rng = np.random.default_rng(3)
    probs = (rng.dirichlet([1] * classes, size=targets.shape[:3]) if classes > 1
             else rng.uniform(size=targets.shape)).astype("float32")
    inferred, explicit = cls(per_image=per_image), cls(num_classes=classes, per_image=per_image)
    assert float(inferred.result()) == 0.0  # before any update, as Keras' metrics
    for metric in (inferred, explicit):
        metric.update_state(targets, probs)
        metric.update_state(targets[::-1], probs)
    assert float(inferred.result()) == pytest.approx(float(explicit.result()), abs=1e-7)
    assert inferred.get_config()["num_classes"] is None
    inferred.reset_state()
    assert float(inferred.result()) == 0.0


def test_a_given_class_count_must_match_the_predictions():
    with pytest.raises(ConfigError, match="3 channel.*num_classes=1.*pass num_classes=3"):
        metrics.Dice(num_classes=1).update_state(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 3)))
    with pytest.raises(ConfigError, match="3 channel.*num_classes=2"):
        losses.DiceLoss(num_classes=2)(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 3), "float32"))


# --------------------------------------------------------------------------- any input size
@pytest.mark.parametrize("name", ["unet", "segnet"])
def test_image_size_none_builds_a_model_of_any_size_that_is_a_multiple(name):
    model = build_model(name, image_size=None, depth=2, base_filters=2)
    assert model.input.shape == (None, None, None, 3)
    for height, width in ((16, 16), (24, 40), (4, 8)):
        out = model.predict(np.zeros((1, height, width, 3), "float32"), verbose=0)
        assert out.shape == (1, height, width, 1)
    with pytest.raises(ValueError, match="image height 30 is not a multiple of 4.*resize or pad it to 32"):
        model(np.zeros((1, 30, 16, 3), "float32"))
    with pytest.raises(ValueError, match="image width 6 is not a multiple of 4"):
        model(np.zeros((1, 8, 6, 3), "float32"))


def test_image_size_none_checks_sizes_known_only_when_a_tensorflow_graph_runs():
    tf = pytest.importorskip("tensorflow")
    model = build_model("unet", image_size=None, depth=2, base_filters=2)
    serve = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    images = tf.random.stateless_uniform([2, 12, 20, 3], seed=(1, 2))
    np.testing.assert_allclose(serve(images).numpy(), model(images).numpy(), atol=1e-6)  # the check changes nothing
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?s)reshape.*size_multiple_of_4"):
        serve(tf.zeros([2, 10, 20, 3]))
    # only the width unknown when traced: still checked when the graph runs
    wide = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, 12, None, 3], tf.float32)])
    assert wide(tf.zeros([2, 12, 8, 3])).shape == (2, 12, 8, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?s)reshape.*size_multiple_of_4"):
        wide(tf.zeros([2, 12, 10, 3]))


def test_size_check_arguments_and_its_message():
    for bad in (0, -4, True, 2.0, "16"):
        with pytest.raises(ValueError, match="multiple"):
            tfseg_layers.SizeCheck(bad)
    assert tfseg_layers.SizeCheck(1)(np.zeros((1, 3, 5, 3), "float32")).shape == (1, 3, 5, 3)
    with pytest.raises(ValueError, match=r"^image height 24 is not a multiple of 16 \(the model halves it 4 times\); "
                                         r"resize or pad it to 32 \(or 16\)$"):
        tfseg_layers.SizeCheck()(np.zeros((1, 24, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"^image width 3 is not a multiple of 4 \(the model halves it 2 times\); "
                                         r"resize or pad it to 4$"):
        tfseg_layers.SizeCheck(4)(np.zeros((1, 4, 3, 3), "float32"))


def test_image_size_none_model_round_trips_through_keras_file(tmp_path):
    model = build_model("segnet", image_size=None, depth=2, base_filters=2)
    path = str(tmp_path / "any.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    images = np.random.default_rng(4).uniform(size=(1, 8, 12, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        loaded(np.zeros((1, 8, 10, 3), "float32"))


# --------------------------------------------------------------------------- get_config round trips
def registered(kind):
    """Every object registered with package "tfseg" that is a ``kind`` (a class) or a function."""
    objects = {name: obj for name, obj in keras.saving.get_custom_objects().items() if name.startswith("tfseg>")}
    if kind == "function":
        return {name: obj for name, obj in objects.items() if inspect.isfunction(obj)}
    return {name: obj for name, obj in objects.items() if inspect.isclass(obj) and issubclass(obj, kind)}


# Classes whose constructor needs an argument, or whose defaults would leave an option untested.
SAMPLES = {
    "tfseg>IgnoreClassLoss": lambda: losses.IgnoreClassLoss(losses.DiceLoss(num_classes=3), ignore_class=255),
    "tfseg>ImageNetPreprocessing": lambda: ImageNetPreprocessing("caffe"),
    "tfseg>SizeCheck": lambda: tfseg_layers.SizeCheck(4),
    "tfseg>CCEDiceLoss": lambda: losses.CCEDiceLoss(class_weights=[1, 2, 3], smooth=2.0),
    "tfseg>FBeta": lambda: metrics.FBeta(beta=2.0, num_classes=3, ignore_class=255, include_background=False),
    "tfseg>Dice": lambda: metrics.Dice(threshold=0.3, per_image=True, class_ids=[0, 1]),
}


def sample(name, cls):
    return SAMPLES[name]() if name in SAMPLES else cls()


def three_class_case():
    _, ids = class_id_batch(seed=5)
    probs = np.random.default_rng(5).dirichlet([1, 2, 3], size=ids.shape[:3]).astype("float32")
    return ids, probs


def binary_case():
    _, masks = binary_batch(seed=6)
    return masks, np.random.default_rng(6).uniform(size=masks.shape).astype("float32")


def case_for(obj):
    """A 3-class case for objects set up (or made) for classes, a binary one otherwise."""
    config = obj.get_config()
    three = (config.get("num_classes") == 3 or len(config.get("class_weights") or []) == 3
             or isinstance(obj, losses.IgnoreClassLoss) or getattr(obj, "_binary_form", None))
    return three_class_case() if three else binary_case()


def test_the_round_trip_tests_cover_something_of_each_kind():
    assert len(registered(keras.losses.Loss)) >= 9 and len(registered(keras.metrics.Metric)) >= 6
    assert {"tfseg>MaxPoolingWithArgmax2D", "tfseg>MaxUnpooling2D", "tfseg>BatchNorm", "tfseg>SizeCheck"} <= set(
        registered(keras.layers.Layer))


def value_of(obj, y_true, y_pred):
    """A loss's value, or a metric's result after one update, on ``(y_true, y_pred)``."""
    if isinstance(obj, keras.metrics.Metric):
        obj.update_state(y_true, y_pred)
        return float(obj.result())
    return float(obj(y_true, y_pred))


@pytest.mark.parametrize("name, cls", sorted({**registered(keras.losses.Loss),
                                              **registered(keras.metrics.Metric)}.items()))
def test_every_loss_and_metric_round_trips_through_its_config(name, cls):
    obj = sample(name, cls)
    config = obj.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    y_true, y_pred = case_for(obj)
    assert value_of(clone, y_true, y_pred) == pytest.approx(value_of(obj, y_true, y_pred), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name, cls", sorted(registered(keras.layers.Layer).items()))
def test_every_layer_round_trips_through_its_config(name, cls):
    layer = sample(name, cls)
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(7).uniform(size=(2, 8, 8, 3)).astype("float32")
    if name == "tfseg>MaxUnpooling2D":
        values, indices = tfseg_layers.MaxPoolingWithArgmax2D()(x)
        args = (values, indices)
    else:
        args = (x,)
    out, cloned = layer(*args), clone(*args)
    if layer.weights:
        clone.set_weights(layer.get_weights())
        cloned = clone(*args)
    for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(cloned)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6)


@pytest.mark.parametrize("name, function", sorted(registered("function").items()))
def test_every_registered_function_round_trips(name, function):
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(function)) is function
