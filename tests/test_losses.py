"""Dice-family losses against NumPy references; mixed precision; gradients; .keras round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg import losses
from tfseg.config import LOSSES
from tfseg.errors import ConfigError
from tfseg.losses import (
    BCEDiceLoss,
    CategoricalDiceLoss,
    CCEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    TverskyLoss,
    get_loss,
)
from tfseg.metrics import IoU, Dice

TOL = 1e-5
EPS = 1e-7
HIGH = float(np.float32(1 - EPS))  # the upper clip as float32 represents it (0.99999988)


# --------------------------------------------------------------------------
# NumPy references (float64)
# --------------------------------------------------------------------------
def np_soft_dice(t, p, s=1.0):
    return 1 - (2 * np.sum(p * t) + s) / (np.sum(p) + np.sum(t) + s)


def np_bce(t, p):
    p = np.clip(p, EPS, HIGH)
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


def np_tversky_index(t, p, alpha, beta, s=1.0):
    tp, fp, fn = np.sum(p * t), np.sum(p * (1 - t)), np.sum((1 - p) * t)
    return (tp + s) / (tp + alpha * fp + beta * fn + s)


def binary_data(seed, shape=(4, 16, 16, 1)):
    rng = np.random.default_rng(seed)
    y_true = (rng.uniform(size=shape) < 0.3).astype("float32")
    y_true[0] = 0.0  # an empty mask
    y_pred = rng.uniform(0.01, 0.99, size=shape).astype("float32")
    return y_true, y_pred


def categorical_data(seed, classes=3, shape=(3, 8, 8)):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, classes, size=shape + (1,)).astype("int32")
    logits = rng.normal(size=shape + (classes,))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return ids, probs.astype("float32"), logits.astype("float32")


def as_float(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


# --------------------------------------------------------------------------
# Binary losses
# --------------------------------------------------------------------------
def test_dice_and_bce_dice_on_float16_8x512x512_are_finite_and_match_numpy():
    rng = np.random.default_rng(0)
    y_true = (rng.uniform(size=(8, 512, 512, 1)) < 0.4).astype("float16")
    y_pred = rng.uniform(size=(8, 512, 512, 1)).astype("float16")
    with np.errstate(over="ignore"):  # what a float16 reduction would produce
        assert np.isinf(np.sum(y_pred, dtype="float16"))
    t, p = y_true.astype("float64"), y_pred.astype("float64")
    dice = float(DiceLoss()(y_true, y_pred))
    both = float(BCEDiceLoss()(y_true, y_pred))
    assert np.isfinite(dice) and np.isfinite(both)
    # the function form gets the float16 tensor itself (a Loss object casts before calling it)
    assert float(losses.dice_loss(y_true, y_pred)[0]) == pytest.approx(dice, abs=TOL)
    assert dice == pytest.approx(np_soft_dice(t, p), abs=TOL)
    assert both == pytest.approx(np_bce(t, p) + np_soft_dice(t, p), abs=TOL)


def test_dice_loss_per_image_and_global_match_numpy():
    y_true, y_pred = binary_data(1)
    t, p = y_true.astype("float64"), y_pred.astype("float64")
    per_image = np.mean([np_soft_dice(a, b) for a, b in zip(t, p)])
    assert float(DiceLoss(per_image=True)(y_true, y_pred)) == pytest.approx(per_image, abs=TOL)
    assert float(DiceLoss(smooth=0.5)(y_true, y_pred)) == pytest.approx(np_soft_dice(t, p, 0.5), abs=TOL)
    per_sample = as_float(losses.dice_loss(y_true, y_pred, per_image=True))
    assert per_sample == pytest.approx([np_soft_dice(a, b) for a, b in zip(t, p)], abs=TOL)


def test_dice_loss_of_empty_truth_and_empty_prediction_is_zero():
    zeros = np.zeros((2, 8, 8, 1), "float32")
    assert float(DiceLoss(per_image=True)(zeros, zeros)) == 0.0


def test_bce_dice_weights_and_logits():
    y_true, y_pred = binary_data(2)
    t, p = y_true.astype("float64"), y_pred.astype("float64")
    weighted = float(BCEDiceLoss(bce_weight=0.3, dice_weight=2.0)(y_true, y_pred))
    assert weighted == pytest.approx(0.3 * np_bce(t, p) + 2.0 * np_soft_dice(t, p), abs=TOL)
    logits = np.log(y_pred / (1 - y_pred))
    from_logits = float(BCEDiceLoss(from_logits=True)(y_true, logits))
    assert from_logits == pytest.approx(float(BCEDiceLoss()(y_true, y_pred)), abs=1e-4)


def test_tversky_and_focal_tversky_match_numpy():
    y_true, y_pred = binary_data(3)
    t, p = y_true.astype("float64"), y_pred.astype("float64")
    index = np_tversky_index(t, p, 0.3, 0.7)
    assert float(TverskyLoss()(y_true, y_pred)) == pytest.approx(1 - index, abs=TOL)
    assert float(FocalTverskyLoss()(y_true, y_pred)) == pytest.approx((1 - index) ** 0.75, abs=TOL)
    # alpha = beta = 0.5 with smooth s / 2 is the Dice loss with smooth s
    assert float(TverskyLoss(0.5, 0.5, smooth=0.5)(y_true, y_pred)) == pytest.approx(np_soft_dice(t, p), abs=TOL)


def test_focal_loss_matches_numpy():
    y_true, y_pred = binary_data(4)
    t, p = y_true.astype("float64"), np.clip(y_pred.astype("float64"), EPS, HIGH)
    p_t = np.where(t == 1, p, 1 - p)
    alpha_t = np.where(t == 1, 0.25, 0.75)
    expected = np.mean(-alpha_t * (1 - p_t) ** 2 * np.log(p_t))
    assert float(FocalLoss()(y_true, y_pred)) == pytest.approx(expected, abs=TOL)


def test_binary_cross_entropy_class_weights_weigh_pixels_by_true_class():
    y_true, y_pred = binary_data(5)
    t, p = y_true.astype("float64"), np.clip(y_pred.astype("float64"), EPS, HIGH)
    w = np.where(t == 1, 3.0, 0.5)
    expected = np.mean(-w * (t * np.log(p) + (1 - t) * np.log(1 - p)))
    assert float(CrossEntropyLoss(class_weights=[0.5, 3.0])(y_true, y_pred)) == pytest.approx(expected, abs=TOL)
    assert float(CrossEntropyLoss()(y_true, y_pred)) == pytest.approx(
        float(keras.losses.BinaryCrossentropy()(y_true, y_pred)), abs=TOL)


# --------------------------------------------------------------------------
# Categorical losses
# --------------------------------------------------------------------------
def np_categorical_dice(ids, probs, classes, chosen, weights=None, s=1.0):
    one_hot = np.eye(classes)[ids[..., 0]]
    per_class = np.array([np_soft_dice(one_hot[..., c], probs[..., c], s) for c in chosen])
    weights = np.ones(len(chosen)) if weights is None else np.asarray(weights)[list(chosen)]
    return np.sum(per_class * weights) / np.sum(weights)


@pytest.mark.parametrize("include_background", [True, False])
def test_categorical_dice_matches_numpy_with_ids_and_one_hot_targets(include_background):
    ids, probs, _ = categorical_data(6)
    chosen = range(0 if include_background else 1, 3)
    expected = np_categorical_dice(ids, probs.astype("float64"), 3, chosen)
    loss = CategoricalDiceLoss(num_classes=3, include_background=include_background)
    assert float(loss(ids, probs)) == pytest.approx(expected, abs=TOL)
    one_hot = np.eye(3, dtype="float32")[ids[..., 0]]
    assert float(loss(one_hot, probs)) == pytest.approx(expected, abs=TOL)


def test_cce_dice_with_class_weights_and_logits_matches_numpy():
    ids, probs, logits = categorical_data(7)
    weights = [0.2, 1.0, 3.0]
    p = probs.astype("float64")
    one_hot = np.eye(3)[ids[..., 0]]
    cce = np.mean(np.sum(-one_hot * np.log(np.clip(p, EPS, 1)), -1) * np.asarray(weights)[ids[..., 0]])
    expected = cce + np_categorical_dice(ids, p, 3, range(3), weights)
    loss = CCEDiceLoss(num_classes=3, class_weights=weights)
    assert float(loss(ids, probs)) == pytest.approx(expected, abs=TOL)
    from_logits = CCEDiceLoss(num_classes=3, class_weights=weights, from_logits=True)
    assert float(from_logits(ids, logits)) == pytest.approx(expected, abs=1e-4)
    assert float(CrossEntropyLoss(num_classes=3)(ids, probs)) == pytest.approx(
        float(keras.losses.SparseCategoricalCrossentropy()(ids, probs)), abs=TOL)


def test_categorical_focal_matches_numpy():
    ids, probs, _ = categorical_data(8)
    p = np.clip(probs.astype("float64"), EPS, HIGH)
    one_hot = np.eye(3)[ids[..., 0]]
    expected = np.mean(np.sum(-0.25 * one_hot * (1 - p) ** 2 * np.log(p), -1))
    assert float(FocalLoss(num_classes=3)(ids, probs)) == pytest.approx(expected, abs=TOL)


# --------------------------------------------------------------------------
# Gradients and mixed precision
# --------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [DiceLoss(), BCEDiceLoss(), TverskyLoss(), FocalTverskyLoss(), DiceLoss(per_image=True)])
def test_loss_decreases_toward_the_truth_with_finite_gradients(loss):
    y_true, y_pred = binary_data(9)
    values = []
    for step in np.linspace(0.0, 1.0, 5):
        x = tf.Variable((1 - step) * y_pred + step * y_true)
        with tf.GradientTape() as tape:
            value = loss(y_true, x)
        grad = tape.gradient(value, x).numpy()
        assert np.all(np.isfinite(grad))
        values.append(float(value))
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_mixed_float16_fit_step_has_no_nan():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((128, 128, 3))
        hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        # the output stays float16 on purpose: the loss and metrics must cast it themselves
        outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(hidden)
        model = keras.Model(inputs, outputs)
        assert model.output.dtype == "float16"
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BCEDiceLoss(), metrics=[Dice(), IoU()])
        rng = np.random.default_rng(10)
        x = rng.uniform(size=(8, 128, 128, 3)).astype("float32")
        y = (x[..., :1] > 0.5).astype("float32")  # 8x128x128 = 131072 pixels: float16 sums would overflow
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for key in ("loss", "dice", "iou"):
        assert all(np.isfinite(history[key])), history
    assert keras.mixed_precision.global_policy().name == previous.name


# --------------------------------------------------------------------------
# Serialization, names
# --------------------------------------------------------------------------
def test_keras_round_trip_of_a_compiled_model_and_history_keys(tmp_path):
    inputs = keras.Input((16, 16, 3), name="images")
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="probabilities")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=BCEDiceLoss(dice_weight=2.0, per_image=True),
                  metrics=[Dice(), IoU(per_image=True)])
    rng = np.random.default_rng(11)
    x = rng.uniform(size=(6, 16, 16, 3)).astype("float32")
    y = (x[..., :1] > 0.5).astype("float32")
    history = model.fit(x, y, validation_data=(x[:2], y[:2]), batch_size=3, epochs=1, verbose=0).history
    assert {"loss", "dice", "iou", "val_loss", "val_dice", "val_iou"} <= set(history)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)  # no custom_objects: registered names suffice
    assert isinstance(loaded.loss, BCEDiceLoss) and loaded.loss.get_config() == model.loss.get_config()
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert set(after) == set(before)
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=TOL)


@pytest.mark.parametrize("loss", [
    DiceLoss(smooth=0.1, per_image=True),
    CategoricalDiceLoss(num_classes=4, class_weights=[1, 2, 3, 4], include_background=False),
    BCEDiceLoss(bce_weight=0.5, from_logits=True),
    CCEDiceLoss(num_classes=3, cce_weight=2.0),
    FocalLoss(gamma=1.5, alpha=0.4),
    TverskyLoss(alpha=0.6, beta=0.4, num_classes=3),
    FocalTverskyLoss(gamma=0.5),
    CrossEntropyLoss(num_classes=1, class_weights=[1.0, 5.0]),
])
def test_loss_config_round_trip(loss):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    assert keras.saving.get_registered_object(f"tfseg>{type(loss).__name__}") is type(loss)


def test_function_forms_are_registered_and_usable_in_compile():
    config = keras.saving.serialize_keras_object(losses.bce_dice_loss)
    assert keras.saving.deserialize_keras_object(config) is losses.bce_dice_loss
    y_true, y_pred = binary_data(12)
    assert float(np.mean(as_float(losses.bce_dice_loss(y_true, y_pred)))) == pytest.approx(
        float(BCEDiceLoss()(y_true, y_pred)), abs=TOL)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_get_loss_knows_every_config_name(num_classes):
    ids, probs, _ = categorical_data(13)
    y_true, y_pred = binary_data(13)
    for name in LOSSES:
        if num_classes == 1 and name.startswith("cce"):
            with pytest.raises(ConfigError, match="num-classes"):
                get_loss(name, num_classes)
            continue
        loss = get_loss(name, num_classes)
        value = loss(ids, probs) if num_classes > 1 else loss(y_true, y_pred)
        assert isinstance(loss, keras.losses.Loss) and np.isfinite(float(value))


def test_get_loss_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match="choose one of bce_dice, dice, bce"):
        get_loss("hinge")


@pytest.mark.parametrize("make, words", [
    (lambda: DiceLoss(smooth=-1), "smooth"),
    (lambda: CategoricalDiceLoss(num_classes=1), "num_classes"),
    (lambda: CCEDiceLoss(num_classes=3, class_weights=[1, 2]), "class_weights"),
    (lambda: TverskyLoss(alpha=-0.1), "alpha"),
    (lambda: DiceLoss(num_classes=1, class_weights=[1, 2]), "num_classes > 1"),
    # without num_classes the class count is the predictions': checked at the call
    (lambda: DiceLoss(class_weights=[1, 2])(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1), "float32")),
     "num_classes > 1"),
    (lambda: CCEDiceLoss(class_weights=[1, 2])(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 3), "float32")),
     "class_weights"),
    (lambda: CCEDiceLoss(class_weights=[-1, 2]), "class_weights"),
])
def test_bad_loss_options_raise_config_error(make, words):
    with pytest.raises(ConfigError, match=words):
        make()


# --------------------------------------------------------------------------
# sample_weight: [B] per image, [B, H, W] / [B, H, W, 1] per pixel
# --------------------------------------------------------------------------
def np_weighted_soft_counts(t, p, w):
    return np.sum(w * p * t), np.sum(w * p) - np.sum(w * p * t), np.sum(w * t) - np.sum(w * p * t)


def np_pixel_weighted(name, t, p, w):
    """float64 reference of each loss (defaults) with per-pixel weights ``w`` shaped like ``t``."""
    tp, fp, fn = np_weighted_soft_counts(t, p, w)
    dice = 1 - (2 * tp + 1) / (2 * tp + fp + fn + 1)
    tversky = 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)
    pc = np.clip(p, EPS, HIGH)
    ce_pixels = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    ce = np.mean(np.mean(w * ce_pixels, axis=(1, 2, 3)))
    p_t = pc * t + (1 - pc) * (1 - t)
    alpha_t = 0.25 * t + 0.75 * (1 - t)
    focal = np.mean(w * alpha_t * (1 - p_t) ** 2 * ce_pixels)
    return {"DiceLoss": dice, "TverskyLoss": tversky, "FocalTverskyLoss": max(tversky, EPS) ** 0.75,
            "CrossEntropyLoss": ce, "FocalLoss": focal, "BCEDiceLoss": ce + dice}[name]


BINARY_LOSSES = [DiceLoss, TverskyLoss, FocalTverskyLoss, CrossEntropyLoss, FocalLoss, BCEDiceLoss]


@pytest.mark.parametrize("loss_class", BINARY_LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("trailing_axis", [False, True], ids=["BHW", "BHW1"])
def test_pixel_sample_weight_of_every_binary_loss_matches_numpy(loss_class, trailing_axis):
    y_true, y_pred = binary_data(20)
    weights = np.random.default_rng(21).uniform(0.0, 3.0, size=y_true.shape[:3]).astype("float32")
    weights[1, :8] = 0.0  # half an image removed
    given = weights[..., None] if trailing_axis else weights
    expected = np_pixel_weighted(loss_class.__name__, y_true.astype("float64"), y_pred.astype("float64"),
                                 weights[..., None].astype("float64"))
    assert float(loss_class()(y_true, y_pred, sample_weight=given)) == pytest.approx(expected, rel=1e-4)
    # and the weights change the value (a loss ignoring them would give the unweighted one)
    assert float(loss_class()(y_true, y_pred)) != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("loss_class", BINARY_LOSSES, ids=lambda c: c.__name__)
def test_zero_pixel_weight_removes_pixels_from_the_dice_counts_and_image_weight_scales(loss_class):
    y_true, y_pred = binary_data(22)
    keep = np.ones(y_true.shape[:3], "float32")
    keep[:, :, 10:] = 0.0
    loss = loss_class()
    if loss_class in (DiceLoss, TverskyLoss, FocalTverskyLoss):
        assert float(loss(y_true, y_pred, sample_weight=keep)) == pytest.approx(
            float(loss(y_true[:, :, :10], y_pred[:, :, :10])), rel=1e-5)
    # [B]: Keras' per-image weighting, sum(w_b * loss_b) / B
    image_weights = np.array([0.0, 1.0, 2.0, 0.5], "float32")
    per_image = as_float(type(loss)._function(y_true, y_pred, **loss.options))
    assert float(loss(y_true, y_pred, sample_weight=image_weights)) == pytest.approx(
        float(np.sum(image_weights * per_image) / 4), rel=1e-5)


@pytest.mark.parametrize("loss_class", [CategoricalDiceLoss, CCEDiceLoss, TverskyLoss, CrossEntropyLoss, FocalLoss],
                         ids=lambda c: c.__name__)
def test_pixel_sample_weight_of_categorical_losses_weighs_every_class_count(loss_class):
    ids, probs, _ = categorical_data(23, classes=3)
    weights = np.random.default_rng(24).uniform(0.0, 2.0, size=ids.shape[:3]).astype("float32")
    loss = loss_class(num_classes=3)
    got = float(loss(ids, probs, sample_weight=weights))
    assert got == pytest.approx(float(loss(ids, probs, sample_weight=weights[..., None])), rel=1e-6)
    t = np.eye(3)[ids[..., 0]]
    w = weights[..., None].astype("float64")
    per_class = [np_weighted_soft_counts(t[..., c], probs[..., c].astype("float64"), w[..., 0]) for c in range(3)]
    dice = np.mean([1 - (2 * tp + 1) / (2 * tp + fp + fn + 1) for tp, fp, fn in per_class])
    ce = np.mean(np.sum(w * -t * np.log(np.clip(probs, EPS, 1.0)), axis=-1))
    tversky = np.mean([1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1) for tp, fp, fn in per_class])
    focal = np.mean(np.sum(w * 0.25 * (1 - np.clip(probs, EPS, HIGH)) ** 2 * -t * np.log(np.clip(probs, EPS, 1.0)),
                           axis=-1))
    expected = {"CategoricalDiceLoss": dice, "CCEDiceLoss": ce + dice, "TverskyLoss": tversky,
                "CrossEntropyLoss": ce, "FocalLoss": focal}[loss_class.__name__]
    assert got == pytest.approx(expected, rel=1e-4)


def test_fit_with_pixel_sample_weights_of_shape_bhw():
    rng = np.random.default_rng(25)
    x = rng.uniform(size=(4, 8, 8, 3)).astype("float32")
    y = (x[..., :1] > 0.5).astype("float32")
    w = np.ones((4, 8, 8), "float32")
    w[:, :4] = 0.0
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    # Keras passes sample_weight to `weighted_metrics` only; `metrics` stay unweighted.
    model.compile(optimizer="adam", loss=BCEDiceLoss(), metrics=[Dice()],
                  weighted_metrics=[Dice(name="weighted_dice"), IoU(name="weighted_iou")])
    history = model.fit(x, y, sample_weight=w, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    logs = model.evaluate(x, y, sample_weight=w, batch_size=4, verbose=0, return_dict=True)
    p = np.asarray(model.predict(x, verbose=0)) >= 0.5
    t = y > 0.5
    keep = np.broadcast_to(w[..., None] > 0, t.shape)
    tp, fp, fn = (np.sum(a & keep) for a in (t & p, ~t & p, t & ~p))
    assert logs["weighted_dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-5)
    assert logs["weighted_iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-5)
    tp, fp, fn = (np.sum(a) for a in (t & p, ~t & p, t & ~p))
    assert logs["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-5)
    pixel = np.asarray(losses.bce_dice_loss(y, model.predict(x, verbose=0), pixel_weights=w))
    assert logs["loss"] == pytest.approx(float(np.mean(pixel)), rel=1e-4)


def test_every_loss_name_of_the_cli_has_a_loss_and_back():
    from tfseg import losses
    from tfseg.config import LOSSES

    assert set(LOSSES) == set(losses._BY_NAME)
    for name in LOSSES:
        assert losses.get_loss(name, num_classes=3) is not None


@pytest.mark.parametrize("loss_class", BINARY_LOSSES, ids=lambda c: c.__name__)
def test_binary_targets_without_channel_axis_give_the_same_loss(loss_class):
    y_true, y_pred = binary_data(26)
    assert float(loss_class()(y_true[..., 0], y_pred)) == pytest.approx(float(loss_class()(y_true, y_pred)), rel=1e-6)


@pytest.mark.parametrize("loss_class", [CategoricalDiceLoss, CCEDiceLoss, TverskyLoss, CrossEntropyLoss, FocalLoss],
                         ids=lambda c: c.__name__)
def test_class_id_targets_without_channel_axis_give_the_same_loss(loss_class):
    ids, probs, _ = categorical_data(27)
    loss = loss_class(num_classes=3)
    assert float(loss(ids[..., 0], probs)) == pytest.approx(float(loss(ids, probs)), rel=1e-6)


FUNCTION_FORMS = [
    (losses.dice_loss, DiceLoss), (losses.tversky_loss, TverskyLoss), (losses.focal_tversky_loss, FocalTverskyLoss),
    (losses.cross_entropy_loss, CrossEntropyLoss), (losses.focal_loss, FocalLoss), (losses.bce_dice_loss, BCEDiceLoss),
]


@pytest.mark.parametrize("function,loss_class", FUNCTION_FORMS, ids=lambda x: getattr(x, "__name__", ""))
def test_function_form_defaults_equal_the_class_defaults(function, loss_class):
    y_true, y_pred = binary_data(28)
    assert float(np.mean(as_float(function(y_true, y_pred)))) == pytest.approx(
        float(loss_class()(y_true, y_pred)), rel=1e-6)


CATEGORICAL_FUNCTION_FORMS = [(losses.dice_loss, DiceLoss), (losses.tversky_loss, TverskyLoss),
                              (losses.focal_tversky_loss, FocalTverskyLoss), (losses.cce_dice_loss, CCEDiceLoss)]


@pytest.mark.parametrize("function,loss_class", CATEGORICAL_FUNCTION_FORMS, ids=lambda x: getattr(x, "__name__", ""))
def test_function_form_defaults_equal_the_class_defaults_for_class_ids(function, loss_class):
    # The defaults that only matter with several classes (include_background, cce_weight) agree too.
    ids, probs, _ = categorical_data(31)
    assert float(np.mean(as_float(function(ids, probs, num_classes=3)))) == pytest.approx(
        float(loss_class(num_classes=3)(ids, probs)), rel=1e-6)


def test_zero_weights_and_smoothing_are_allowed():
    # Non-negative means 0 too: a zero weight switches a term off.
    y_true, y_pred = binary_data(32)
    dice = float(DiceLoss()(y_true, y_pred))
    assert float(BCEDiceLoss(bce_weight=0.0)(y_true, y_pred)) == pytest.approx(dice, rel=1e-6)
    assert np.isfinite(float(DiceLoss(smooth=0.0)(y_true, y_pred)))


@pytest.mark.parametrize("loss_class", [DiceLoss, CategoricalDiceLoss, TverskyLoss, FocalTverskyLoss, CCEDiceLoss],
                         ids=lambda c: c.__name__)
def test_categorical_losses_include_the_background_by_default(loss_class):
    ids, probs, _ = categorical_data(29)
    default = float(loss_class(num_classes=3)(ids, probs))
    assert default == pytest.approx(float(loss_class(num_classes=3, include_background=True)(ids, probs)), rel=1e-6)
    assert default != pytest.approx(float(loss_class(num_classes=3, include_background=False)(ids, probs)), rel=1e-3)


# --------------------------------------------------------------------------
# ignore_class together with per-pixel sample_weight
# --------------------------------------------------------------------------
def void_case(seed):
    """3-class ids with void (255) pixels in two images, per-pixel weights, and the same without void."""
    ids, probs, _ = categorical_data(seed, classes=3, shape=(3, 8, 8))
    rng = np.random.default_rng(seed)
    ids[0, :3] = 255
    ids[2, :, :2] = 255
    weights = rng.uniform(0.2, 2.0, size=ids.shape[:3]).astype("float32")
    keep = (ids[..., 0] != 255).astype("float32")
    return ids, probs, weights, np.where(ids == 255, 0, ids), keep


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("weight_shape", ["BHW", "BHW1", "B"])
def test_ignore_class_with_sample_weight_multiplies_both(name, weight_shape):
    ids, probs, weights, cleaned, keep = void_case(41)
    given = {"BHW": weights, "BHW1": weights[..., None], "B": np.array([0.5, 2.0, 1.0], "float32")}[weight_shape]
    combined = keep * (weights if weight_shape != "B" else given[:, None, None])
    got = float(losses.get_loss(name, 3, ignore_class=255)(ids, probs, sample_weight=given))
    expected = float(losses.get_loss(name, 3)(cleaned, probs, sample_weight=combined))
    assert got == pytest.approx(expected, rel=1e-5)


def test_ignore_class_with_pixel_weights_in_model_evaluate():
    """The Keras path: compile with the ignoring loss and weighted metrics, evaluate with per-pixel weights."""
    ids, _, weights, cleaned, keep = void_case(42)
    rng = np.random.default_rng(42)
    x = rng.uniform(size=(3, 8, 8, 3)).astype("float32")
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1, activation="softmax")])
    model.compile(loss=losses.get_loss("bce_dice", 3, ignore_class=255),
                  weighted_metrics=[Dice(num_classes=3, ignore_class=255, name="weighted_dice")])
    logs = model.evaluate(x, ids, sample_weight=weights, batch_size=3, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    expected_loss = float(losses.get_loss("bce_dice", 3)(cleaned, probs, sample_weight=weights * keep))
    assert logs["loss"] == pytest.approx(expected_loss, rel=1e-4)
    dice = Dice(num_classes=3)
    dice.update_state(cleaned, probs, sample_weight=weights * keep)
    assert logs["weighted_dice"] == pytest.approx(float(dice.result()), abs=1e-6)
