"""Dice/IoU/... metrics and boundary distances against independent NumPy references."""

import doctest
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfseg import boundary, losses, metrics
from tfseg.errors import ConfigError, TfsegError
from tfseg.metrics import (
    IoU,
    Dice,
    FBeta,
    PixelAccuracy,
    Precision,
    Recall,
    default_metrics,
    dice_score,
    iou_score,
)

TOL = 1e-5


# --------------------------------------------------------------------------
# NumPy references (written from the definitions, not from tfseg's code)
# --------------------------------------------------------------------------
def np_f1(t, p, empty=1.0):
    """F1 of boolean arrays; ``empty`` when both are empty."""
    tp, fp, fn = np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)
    return empty if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def np_jaccard(t, p, empty=1.0):
    union = np.sum(t | p)
    return empty if union == 0 else np.sum(t & p) / union


def binary_batches(seed, n_batches=3, batch=4, size=16):
    """Random probability maps and masks; image 0 of each batch is empty in both truth and prediction,
    image 1 has an empty truth but a predicted blob."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        density = rng.uniform(0.1, 0.6, size=(batch, 1, 1, 1))
        y_true = (rng.uniform(size=(batch, size, size, 1)) < density).astype("float32")
        y_pred = rng.uniform(0.0, 1.0, size=(batch, size, size, 1)).astype("float32")
        y_true[0], y_pred[0] = 0.0, rng.uniform(0.0, 0.4, size=(size, size, 1))
        y_true[1] = 0.0
        out.append((y_true, y_pred))
    return out


def multiclass_batches(seed, classes=4, n_batches=3, batch=3, size=12, void=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        ids = rng.integers(0, classes, size=(batch, size, size, 1)).astype("int32")
        if void is not None:
            ids[rng.uniform(size=ids.shape) < 0.2] = void
        logits = rng.normal(size=(batch, size, size, classes)) + 2.0 * np.eye(classes)[np.clip(ids[..., 0], 0, classes - 1)]
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        out.append((ids, probs.astype("float32")))
    return out


def run_metric(metric, batches):
    for y_true, y_pred in batches:
        metric.update_state(y_true, y_pred)
    return float(metric.result())


# --------------------------------------------------------------------------
# Binary
# --------------------------------------------------------------------------
def test_global_binary_dice_and_iou_equal_f1_and_jaccard_of_all_pixels():
    batches = binary_batches(0)
    t = np.concatenate([b[0] for b in batches]) > 0.5
    p = np.concatenate([b[1] for b in batches]) >= 0.5
    assert run_metric(Dice(), batches) == pytest.approx(np_f1(t, p), abs=TOL)
    assert run_metric(IoU(), batches) == pytest.approx(np_jaccard(t, p), abs=TOL)


def test_iou_equals_keras_binary_iou():
    batches = binary_batches(1)
    ours, theirs = IoU(), keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5)
    for y_true, y_pred in batches:
        ours.update_state(y_true, y_pred)
        theirs.update_state(y_true, y_pred)
    assert float(ours.result()) == pytest.approx(float(theirs.result()), abs=TOL)


@pytest.mark.parametrize("metric_class, reference", [(Dice, np_f1), (IoU, np_jaccard)])
def test_per_image_mean_matches_numpy_loop_with_empty_mask_convention(metric_class, reference):
    batches = binary_batches(2)
    pairs = [(t > 0.5, p >= 0.5) for y_true, y_pred in batches for t, p in zip(y_true, y_pred)]
    # an image with nothing true and nothing predicted has no score and stays out of the mean...
    expected = [reference(t, p, empty=np.nan) for t, p in pairs]
    assert np.isnan(expected[0]) and expected[1] == 0.0  # empty/empty: none; empty truth + prediction: 0
    assert run_metric(metric_class(per_image=True), batches) == pytest.approx(np.nanmean(expected), abs=TOL)
    # ...unless asked to count it as 1
    expected = [reference(t, p) for t, p in pairs]
    assert run_metric(metric_class(per_image=True, ignore_empty=False), batches) == pytest.approx(
        np.mean(expected), abs=TOL)


def test_empty_truth_and_empty_prediction_have_no_score_unless_counted_as_one():
    zeros = np.zeros((2, 8, 8, 1), "float32")
    assert np.isnan(run_metric(Dice(), [(zeros, zeros)]))
    assert np.isnan(run_metric(IoU(per_image=True), [(zeros, zeros)]))
    assert np.isnan(dice_score(zeros[0], zeros[0]))
    assert run_metric(Dice(ignore_empty=False), [(zeros, zeros)]) == 1.0
    assert run_metric(IoU(per_image=True, ignore_empty=False), [(zeros, zeros)]) == 1.0


@pytest.mark.parametrize("per_image", [False, True])
def test_a_class_absent_from_truth_and_prediction_does_not_raise_the_mean(per_image):
    # classes 0..3; class 3 is in no mask and never predicted; class 2 is predicted once where it is not true
    true = np.array([[0, 1], [2, 1]]).reshape(1, 2, 2, 1)
    pred = np.eye(4, dtype="float32")[[[0, 1], [0, 1]]][None]
    dice = {0: 2 / 3, 1: 1.0, 2: 0.0}
    want = np.mean(list(dice.values()))
    assert run_metric(Dice(num_classes=4, per_image=per_image), [(true, pred)]) == pytest.approx(want, abs=TOL)
    assert run_metric(Dice(num_classes=4, per_image=per_image, ignore_empty=False), [(true, pred)]) == pytest.approx(
        (sum(dice.values()) + 1.0) / 4, abs=TOL)
    assert dice_score(true[0], pred[0]) == pytest.approx(want, abs=TOL)
    # a second image where class 3 appears: in the global counts it is then scored for both images
    true2, pred2 = np.full((1, 2, 2, 1), 3), np.eye(4, dtype="float32")[[[3, 3], [3, 3]]][None]
    both = run_metric(Dice(num_classes=4, per_image=per_image), [(true, pred), (true2, pred2)])
    if per_image:  # image 1: 0.5556 over its 3 classes, image 2: 1.0 over class 3 alone
        assert both == pytest.approx((want + 1.0) / 2, abs=TOL)
    else:  # class 0: 2/3, 1: 1, 2: 0, 3: 1
        assert both == pytest.approx((2 / 3 + 1 + 0 + 1) / 4, abs=TOL)


def test_result_is_zero_before_update_and_after_reset():
    metric = Dice()
    assert float(metric.result()) == 0.0
    run_metric(metric, binary_batches(3))
    metric.reset_state()
    assert float(metric.result()) == 0.0
    batches = binary_batches(4, n_batches=1)
    t, p = batches[0][0] > 0.5, batches[0][1] >= 0.5
    assert run_metric(metric, batches) == pytest.approx(np_f1(t, p), abs=TOL)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_from_logits_thresholds_sigmoid_of_logits(threshold):
    batches = binary_batches(5)
    logit_batches = [(t, np.log(p / (1 - p))) for t, p in batches]
    t = np.concatenate([b[0] for b in batches]) > 0.5
    p = np.concatenate([b[1] for b in batches]) >= threshold
    got = run_metric(Dice(threshold=threshold, from_logits=True), logit_batches)
    assert got == pytest.approx(np_f1(t, p), abs=TOL)


def test_targets_0_255_and_without_channel_axis():
    (y_true, y_pred), = binary_batches(6, n_batches=1)
    expected = np_f1(y_true > 0.5, y_pred >= 0.5)
    assert run_metric(Dice(), [(255 * y_true, y_pred)]) == pytest.approx(expected, abs=TOL)
    assert run_metric(Dice(), [(y_true[..., 0], y_pred)]) == pytest.approx(expected, abs=TOL)


def test_float16_inputs_give_the_float32_result_where_float16_sums_overflow():
    rng = np.random.default_rng(7)
    y_true = (rng.uniform(size=(8, 512, 512, 1)) < 0.4).astype("float32")
    y_pred = rng.uniform(size=(8, 512, 512, 1)).astype("float32")
    with np.errstate(over="ignore"):  # float16 sums of these masks are inf: the bug this guards against
        assert np.isinf(np.sum(y_true.astype("float16"), dtype="float16"))
    for metric_class in (Dice, IoU):
        f32 = run_metric(metric_class(), [(y_true, y_pred)])
        f16 = run_metric(metric_class(), [(y_true.astype("float16"), y_pred.astype("float16"))])
        t, p16 = y_true > 0.5, y_pred.astype("float16") >= 0.5  # thresholds see float16-rounded values
        reference = (np_f1 if metric_class is Dice else np_jaccard)(t, p16)
        assert f16 == pytest.approx(reference, abs=TOL)
        assert f16 == pytest.approx(f32, abs=1e-3)  # only rounding of p near 0.5 differs


def test_precision_recall_fbeta_pixel_accuracy_match_numpy():
    batches = binary_batches(8)
    t = np.concatenate([b[0] for b in batches]) > 0.5
    p = np.concatenate([b[1] for b in batches]) >= 0.5
    tp, fp, fn, tn = (np.sum(x) for x in (t & p, ~t & p, t & ~p, ~t & ~p))
    beta2 = 4.0
    assert run_metric(Precision(), batches) == pytest.approx(tp / (tp + fp), abs=TOL)
    assert run_metric(Recall(), batches) == pytest.approx(tp / (tp + fn), abs=TOL)
    expected_f2 = (1 + beta2) * tp / ((1 + beta2) * tp + beta2 * fn + fp)
    assert run_metric(FBeta(beta=2.0), batches) == pytest.approx(expected_f2, abs=TOL)
    assert run_metric(PixelAccuracy(), batches) == pytest.approx((tp + tn) / t.size, abs=TOL)
    assert run_metric(FBeta(beta=1.0), batches) == pytest.approx(run_metric(Dice(), batches), abs=TOL)
    assert run_metric(FBeta(), batches) == pytest.approx(2 * tp / (2 * tp + fn + fp), abs=TOL)  # default beta 1


def test_binary_class_ids_zero_and_one_average_background_and_foreground():
    batches = binary_batches(9)
    t = np.concatenate([b[0] for b in batches]) > 0.5
    p = np.concatenate([b[1] for b in batches]) >= 0.5
    expected = (np_f1(t, p) + np_f1(~t, ~p)) / 2
    assert run_metric(Dice(class_ids=[0, 1]), batches) == pytest.approx(expected, abs=TOL)


def test_sample_weight_is_per_pixel_and_zero_weight_equals_removing_pixels():
    (y_true, y_pred), = binary_batches(10, n_batches=1)
    rng = np.random.default_rng(10)
    keep = rng.uniform(size=y_true.shape) < 0.7
    metric = Dice()
    metric.update_state(y_true, y_pred, sample_weight=keep.astype("float32"))
    assert float(metric.result()) == pytest.approx(np_f1((y_true > 0.5)[keep], (y_pred >= 0.5)[keep]), abs=TOL)
    # a per-image weight [B] scales every count of that image
    weights = np.array([0.0, 1.0, 2.0, 1.0], "float32")
    t, p = y_true > 0.5, y_pred >= 0.5
    tp, fp, fn = (np.sum(weights[:, None, None, None] * x) for x in (t & p, ~t & p, t & ~p))
    metric = Dice()
    metric.update_state(y_true, y_pred, sample_weight=weights)
    assert float(metric.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=TOL)


def np_weighted_scores(t, p, w, empty=np.nan):
    """Weighted ``(dice, iou, precision, recall, f2, pixel accuracy)`` of boolean arrays, per the module docstring
    (``empty``: the score of a class absent from truth and prediction, none by default)."""
    tp, fp, fn, tn = (np.sum(w * x) for x in (t & p, ~t & p, t & ~p, ~t & ~p))

    def ratio(num, den):
        return empty if tp + fp + fn == 0 else (num / den if den > 0 else 0.0)

    accuracy = 1.0 if tp + fp + fn + tn == 0 else (tp + tn) / (tp + fp + fn + tn)
    return (ratio(2 * tp, 2 * tp + fp + fn), ratio(tp, tp + fp + fn), ratio(tp, tp + fp), ratio(tp, tp + fn),
            ratio(5 * tp, 5 * tp + 4 * fn + fp), accuracy)


WEIGHTED_METRICS = [(Dice, {}), (IoU, {}), (Precision, {}), (Recall, {}), (FBeta, {"beta": 2.0}), (PixelAccuracy, {})]


@pytest.mark.parametrize("index", range(len(WEIGHTED_METRICS)), ids=[m.__name__ for m, _ in WEIGHTED_METRICS])
@pytest.mark.parametrize("shape", ["B", "BHW", "BHW1"])
@pytest.mark.parametrize("per_image", [False, True])
def test_every_metric_takes_sample_weight_of_every_documented_shape(index, shape, per_image):
    metric_class, options = WEIGHTED_METRICS[index]
    (y_true, y_pred), = binary_batches(12, n_batches=1)
    rng = np.random.default_rng(13)
    full = {"B": rng.uniform(0.5, 2.0, size=(4, 1, 1, 1)), "BHW": rng.uniform(0.0, 2.0, size=(4, 16, 16, 1))}
    full["BHW1"] = full["BHW"]
    weights = np.broadcast_to(full[shape], y_true.shape).astype("float64")
    given = {"B": full["B"].reshape(4), "BHW": full["BHW"][..., 0], "BHW1": full["BHW"]}[shape].astype("float32")
    t, p = y_true > 0.5, y_pred >= 0.5
    if per_image:
        expected = np.nanmean([np_weighted_scores(t[i], p[i], weights[i])[index] for i in range(4)])
    else:
        expected = np_weighted_scores(t, p, weights)[index]
    metric = metric_class(per_image=per_image, **options)
    metric.update_state(y_true, y_pred, sample_weight=given)
    assert float(metric.result()) == pytest.approx(expected, abs=TOL)


def test_per_image_skips_images_with_no_valid_pixel():
    (y_true, y_pred), = binary_batches(11, n_batches=1)
    weights = np.array([1.0, 0.0, 1.0, 1.0], "float32")  # image 1 (empty truth, a prediction) is dropped
    metric = Dice(per_image=True)
    metric.update_state(y_true, y_pred, sample_weight=weights)
    # image 0 (empty truth and prediction) has no score either
    expected = np.nanmean([np_f1(y_true[i] > 0.5, y_pred[i] >= 0.5, empty=np.nan) for i in (0, 2, 3)])
    assert float(metric.result()) == pytest.approx(expected, abs=TOL)


# --------------------------------------------------------------------------
# Multi-class
# --------------------------------------------------------------------------
def np_macro(reference, batches, classes, chosen, void=None, per_image=False):
    ids = np.concatenate([b[0] for b in batches])[..., 0]
    pred = np.concatenate([b[1] for b in batches]).argmax(-1)
    valid = np.ones_like(ids, bool) if void is None else ids != void
    if per_image:
        return np.mean([
            np.mean([reference((i == c)[v], (q == c)[v]) for c in chosen])
            for i, q, v in zip(ids, pred, valid)
        ])
    return np.mean([reference((ids == c)[valid], (pred == c)[valid]) for c in chosen])


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
def test_multiclass_macro_dice_matches_numpy_per_class_loop(include_background, per_image):
    batches = multiclass_batches(12)
    chosen = range(0 if include_background else 1, 4)
    expected = np_macro(np_f1, batches, 4, chosen, per_image=per_image)
    metric = Dice(num_classes=4, include_background=include_background, per_image=per_image)
    assert run_metric(metric, batches) == pytest.approx(expected, abs=TOL)


def test_multiclass_ignore_class_excludes_its_pixels_from_every_count():
    batches = multiclass_batches(13, void=255)
    expected_dice = np_macro(np_f1, batches, 4, range(4), void=255)
    expected_iou = np_macro(np_jaccard, batches, 4, range(1, 4), void=255)
    assert run_metric(Dice(num_classes=4, ignore_class=255), batches) == pytest.approx(expected_dice, abs=TOL)
    iou = IoU(num_classes=4, ignore_class=255, include_background=False)
    assert run_metric(iou, batches) == pytest.approx(expected_iou, abs=TOL)


def test_ignore_class_inside_the_label_range_is_left_out_of_the_mean():
    batches = multiclass_batches(14, classes=4)
    expected = np_macro(np_f1, batches, 4, [0, 1, 3], void=2)
    assert run_metric(Dice(num_classes=4, ignore_class=2), batches) == pytest.approx(expected, abs=TOL)


def test_multiclass_one_hot_targets_equal_id_targets_and_class_ids_select():
    batches = multiclass_batches(15)
    one_hot = [(np.eye(4, dtype="float32")[ids[..., 0]], probs) for ids, probs in batches]
    assert run_metric(Dice(num_classes=4), one_hot) == pytest.approx(run_metric(Dice(num_classes=4), batches), abs=TOL)
    expected = np_macro(np_jaccard, batches, 4, [2, 3])
    assert run_metric(IoU(num_classes=4, class_ids=[2, 3]), batches) == pytest.approx(expected, abs=TOL)


def test_multiclass_pixel_accuracy_is_fraction_of_correct_pixels():
    batches = multiclass_batches(16)
    ids = np.concatenate([b[0] for b in batches])[..., 0]
    pred = np.concatenate([b[1] for b in batches]).argmax(-1)
    assert run_metric(PixelAccuracy(num_classes=4), batches) == pytest.approx(np.mean(ids == pred), abs=TOL)
    fg = ids != 0
    no_bg = PixelAccuracy(num_classes=4, include_background=False)
    assert run_metric(no_bg, batches) == pytest.approx(np.mean(ids[fg] == pred[fg]), abs=TOL)


# --------------------------------------------------------------------------
# Functions, config, errors, backends
# --------------------------------------------------------------------------
def test_score_functions_accept_single_images_and_batches():
    (y_true, y_pred), = binary_batches(17, n_batches=1)
    t, p = y_true[2, ..., 0], y_pred[2, ..., 0]
    assert dice_score(t, p) == pytest.approx(np_f1(t > 0.5, p >= 0.5), abs=TOL)
    assert iou_score(t[..., None], p[..., None]) == pytest.approx(np_jaccard(t > 0.5, p >= 0.5), abs=TOL)
    assert dice_score(y_true, y_pred, per_image=True) == pytest.approx(run_metric(Dice(per_image=True), [(y_true, y_pred)]), abs=TOL)


@pytest.mark.parametrize("metric", [
    Dice(per_image=True, threshold=0.3),
    IoU(num_classes=3, ignore_class=255, include_background=False),
    Precision(class_ids=[0, 1]),
    Recall(from_logits=True),
    FBeta(beta=0.5, num_classes=4),
    PixelAccuracy(num_classes=2),
])
def test_config_round_trip_and_registration(metric):
    config = metric.get_config()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(clone) is type(metric) and clone.get_config() == config
    assert keras.saving.get_registered_object(f"tfseg>{type(metric).__name__}") is type(metric)


def test_default_metrics_names():
    assert [m.name for m in default_metrics()] == ["dice", "iou"]
    assert all(m.num_classes == 3 for m in default_metrics(3))


@pytest.mark.parametrize("make, words", [
    (lambda: Dice(threshold=1.5), "threshold"),
    (lambda: Dice(num_classes=0), "num_classes"),
    (lambda: IoU(num_classes=3, class_ids=[3]), "class_ids"),
    (lambda: FBeta(beta=0), "beta"),
    (lambda: Dice(num_classes=2, class_ids=[0], include_background=False), "no class"),
])
def test_bad_arguments_raise_config_error(make, words):
    with pytest.raises(ConfigError, match=words):
        make()


def test_channel_mismatch_names_the_fix():
    with pytest.raises(ConfigError, match="num_classes=3"):
        Dice(num_classes=1).update_state(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 3)))


@pytest.mark.parametrize("channel_axis", [True, False], ids=["BHW1", "BHW"])
def test_binary_ignore_class_255_leaves_void_pixels_out(channel_axis):
    # binary masks with a void value (e.g. 255 on uncertain borders): the raw label is compared, not the
    # thresholded one (255 > 0.5 would count as foreground)
    (y_true, y_pred), = binary_batches(30, n_batches=1)
    void = np.random.default_rng(31).uniform(size=y_true.shape) < 0.2
    labels = np.where(void, 255.0, y_true).astype("float32")
    given = labels if channel_axis else labels[..., 0]
    keep = ~void
    expected = np_f1((y_true > 0.5)[keep], (y_pred >= 0.5)[keep])
    metric = Dice(ignore_class=255)
    metric.update_state(given, y_pred)
    assert float(metric.result()) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("threshold,foreground", [(0.0, True), (1.0, False)])
def test_from_logits_threshold_at_the_ends(threshold, foreground):
    # t = 0: every pixel is foreground (logit(0) = -inf); t = 1: none is, but for p = 1 exactly
    y_true = np.array([1.0, 0.0, 1.0, 0.0]).reshape(1, 2, 2, 1)
    logits = np.array([-30.0, -1.0, 2.0, 30.0]).reshape(1, 2, 2, 1).astype("float32")
    metric = Precision(threshold=threshold, from_logits=True, class_ids=[1])
    metric.update_state(y_true, logits)
    assert float(metric.result()) == pytest.approx(0.5 if foreground else 0.0, abs=TOL)


def test_global_dice_after_an_update_whose_background_class_has_more_fp_than_the_rest():
    # truth all foreground, one pixel of three found: for class 0, FP (2) > TP + FN + TN (1);
    # the result is the Dice of class 1, 2 * 1 / (2 * 1 + 2) = 0.5 (not "nothing seen yet")
    y_true = np.ones((1, 1, 3, 1), "float32")
    y_pred = np.array([0.9, 0.1, 0.2], "float32").reshape(1, 1, 3, 1)
    for metric, expected in ((Dice(), 0.5), (IoU(), 1 / 3), (Recall(), 1 / 3), (PixelAccuracy(), 1 / 3)):
        metric.update_state(y_true, y_pred)
        assert float(metric.result()) == pytest.approx(expected, abs=TOL), metric.name


def test_pixel_accuracy_without_selected_true_pixels_has_no_score_unless_counted_as_one():
    ids = np.zeros((1, 4, 4, 1), "int32")
    probs = np.eye(3, dtype="float32")[np.zeros((1, 4, 4), int)]
    for per_image in (False, True):
        metric = PixelAccuracy(num_classes=3, include_background=False, per_image=per_image)
        metric.update_state(ids, probs)
        assert np.isnan(float(metric.result()))
        metric = PixelAccuracy(num_classes=3, include_background=False, per_image=per_image, ignore_empty=False)
        metric.update_state(ids, probs)
        assert float(metric.result()) == 1.0


@pytest.mark.parametrize("module", [metrics, losses, boundary])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_metrics_and_losses_run_under_jax_without_tensorflow():
    code = textwrap.dedent("""
        import sys, numpy as np
        from tfseg.metrics import Dice
        from tfseg.losses import BCEDiceLoss
        t = np.array([1, 1, 0, 0], "float32").reshape(1, 2, 2, 1)
        p = np.array([0.9, 0.2, 0.6, 0.1], "float32").reshape(1, 2, 2, 1)
        m = Dice(); m.update_state(t, p)
        print(float(m.result()), float(BCEDiceLoss()(t, p)), "tensorflow" in sys.modules)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    dice, loss, tf_loaded = out.stdout.split()
    bce = -np.mean(np.log([0.9, 0.2, 0.4, 0.9]))
    soft_dice = 1 - (2 * 1.1 + 1) / (1.8 + 2 + 1)
    assert float(dice) == pytest.approx(0.5, abs=TOL)  # TP=1, FP=1, FN=1
    assert float(loss) == pytest.approx(bce + soft_dice, abs=TOL)
    assert tf_loaded == "False"


# --------------------------------------------------------------------------
# Boundary distances
# --------------------------------------------------------------------------
def np_edges(mask):
    """Boundary by explicit loops: a foreground pixel with a 4-neighbour outside the mask or the image."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for r, c in zip(*np.nonzero(mask)):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < h and 0 <= cc < w) or not mask[rr, cc]:
                out[r, c] = True
    return out


def np_surface_distances(pred, true, spacing):
    a, b = np.argwhere(np_edges(pred)) * spacing, np.argwhere(np_edges(true)) * spacing
    pair = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return np.concatenate([pair.min(1), pair.min(0)])


@pytest.mark.parametrize("seed", range(6))
def test_boundary_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(5, 24, size=2))
    pred = rng.uniform(size=shape) < rng.uniform(0.1, 0.7)
    true = rng.uniform(size=shape) < rng.uniform(0.1, 0.7)
    pred[0, 0] = true[-1, -1] = True  # never empty
    spacing = np.array([1.0, 1.0]) if seed % 2 else np.array([0.7, 1.9])
    distances = np_surface_distances(pred, true, spacing)
    assert boundary.hausdorff95(pred, true, spacing) == pytest.approx(np.percentile(distances, 95), abs=TOL)
    assert boundary.mean_surface_distance(pred, true, spacing) == pytest.approx(distances.mean(), abs=TOL)
    assert boundary.hausdorff_distance(pred, true, 100, spacing) == pytest.approx(distances.max(), abs=TOL)


def test_boundary_of_solid_shapes_and_full_mask():
    disk = np.add.outer((np.arange(15) - 7) ** 2, (np.arange(15) - 7) ** 2) <= 25
    assert np.array_equal(boundary.boundary_mask(disk), np_edges(disk))
    full = np.ones((6, 6), bool)
    assert np.array_equal(boundary.boundary_mask(full), np_edges(full))
    assert boundary.hausdorff95(full, full) == 0.0


def test_boundary_empty_mask_conventions_and_errors():
    empty, dot = np.zeros((8, 8)), np.zeros((8, 8))
    dot[3, 3] = 255  # {0, 255} masks are foreground > 0.5
    assert boundary.hausdorff95(empty, empty) == 0.0
    assert boundary.mean_surface_distance(empty, empty) == 0.0
    assert boundary.hausdorff95(dot, empty) == np.inf
    assert boundary.mean_surface_distance(empty, dot) == np.inf
    with pytest.raises(TfsegError, match="same shape"):
        boundary.hausdorff95(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(TfsegError, match="spacing"):
        boundary.hausdorff95(dot, dot, spacing=(1.0, 0.0))


def fixed_shapes():
    disk = np.add.outer((np.arange(20) - 9) ** 2, (np.arange(24) - 11) ** 2) <= 49
    square = np.zeros((20, 24), bool)
    square[5:15, 8:20] = True
    ring = disk.copy()
    ring[8:11, 9:14] = False  # a hole: an inner boundary too
    line = np.zeros((20, 24), bool)
    line[3, 2:22] = True
    return {"disk": disk, "square": square, "ring": ring, "line": line, "full": np.ones((20, 24), bool)}


# (pred, true, spacing) -> (hd95, mean surface distance, Hausdorff), as the earlier NumPy-only
# transform of tfseg.boundary computed them.
EARLIER_VALUES = [
    ("disk", "square", (1.0, 1.0), 3.0, 1.7604195915889944, 4.0),
    ("disk", "square", (0.7, 1.9), 5.699999999999999, 2.055837110288152, 7.6),
    ("ring", "disk", (1.0, 1.0), 4.0, 0.6476474053798641, 4.123105625617661),
    ("line", "square", (1.0, 1.0), 11.0, 5.23193995937378, 11.0),
    ("full", "disk", (1.0, 1.0), 7.810249675906654, 5.16071111794581, 9.219544457292887),
    ("square", "line", (2.0, 0.5), 22.0, 10.046159956553675, 22.0),
]


@pytest.mark.parametrize("pred, true, spacing, hd95, mean, hausdorff", EARLIER_VALUES)
def test_boundary_values_are_unchanged_on_fixed_shapes(pred, true, spacing, hd95, mean, hausdorff):
    shapes = fixed_shapes()
    pred, true = shapes[pred], shapes[true]
    assert boundary.hausdorff95(pred, true, spacing) == pytest.approx(hd95, abs=1e-9)
    assert boundary.mean_surface_distance(pred, true, spacing) == pytest.approx(mean, abs=1e-9)
    assert boundary.hausdorff_distance(pred, true, 100, spacing) == pytest.approx(hausdorff, abs=1e-9)
    both = boundary.surface_metrics(pred, true, spacing)
    assert both == pytest.approx({"hausdorff95": hd95, "mean_surface_distance": mean}, abs=1e-9)


def test_surface_metrics_empty_conventions():
    empty, dot = np.zeros((6, 6)), np.zeros((6, 6))
    dot[2, 2] = 1
    assert boundary.surface_metrics(empty, empty) == {"hausdorff95": 0.0, "mean_surface_distance": 0.0}
    assert boundary.surface_metrics(dot, empty) == {"hausdorff95": np.inf, "mean_surface_distance": np.inf}


def test_evaluate_rows_take_one_pair_of_distance_maps_per_image(monkeypatch):
    from scipy import ndimage

    from tfseg.evaluation import ImageRows
    from tfseg.segment import Settings

    calls = []
    transform = ndimage.distance_transform_edt
    monkeypatch.setattr(ndimage, "distance_transform_edt", lambda *a, **k: calls.append(1) or transform(*a, **k))
    shapes = fixed_shapes()
    truth = np.stack([shapes["disk"], shapes["square"], shapes["ring"]])[..., None].astype("float32")
    predicted = np.stack([shapes["square"], shapes["ring"], shapes["disk"]])[..., None].astype("float32")
    table = ImageRows(Settings(window=truth.shape[1:3]))
    for true, probabilities in zip(truth, predicted):  # the planted probabilities, image by image
        table.add(np.zeros(true.shape[:2] + (3,), np.uint8), true, probabilities)
    rows = table.named(["a", "b", "c"])
    assert len(calls) == 2 * 3  # one transform per direction, per image
    assert rows[0]["hausdorff95"] == pytest.approx(boundary.hausdorff95(shapes["square"], shapes["disk"]))
    assert rows[0]["mean_surface_distance"] == pytest.approx(
        boundary.mean_surface_distance(shapes["square"], shapes["disk"]))


@pytest.mark.parametrize("cls", [Dice, IoU, Precision, Recall, FBeta, PixelAccuracy])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("classes", [1, 3])
def test_ignore_class_with_pixel_sample_weight_multiplies_both(cls, per_image, classes):
    rng = np.random.default_rng(50)
    if classes == 1:
        y_true = (rng.uniform(size=(3, 8, 8, 1)) > 0.6).astype("float32")
        y_pred = rng.uniform(size=(3, 8, 8, 1)).astype("float32")
    else:
        y_true = rng.integers(0, 3, size=(3, 8, 8, 1)).astype("int32")
        y_pred = rng.dirichlet([1, 1, 1], size=(3, 8, 8)).astype("float32")
    y_true[0, :3] = 255
    y_true[2, :, :2] = 255
    weights = rng.uniform(0.2, 2.0, size=(3, 8, 8)).astype("float32")
    keep = (y_true[..., 0] != 255).astype("float32")
    ignoring = cls(num_classes=classes, ignore_class=255, per_image=per_image)
    ignoring.update_state(y_true, y_pred, sample_weight=weights)
    plain = cls(num_classes=classes, per_image=per_image, class_ids=ignoring.class_ids)
    plain.update_state(np.where(y_true == 255, 0, y_true), y_pred, sample_weight=weights * keep)
    assert float(ignoring.result()) == pytest.approx(float(plain.result()), abs=1e-6)


@pytest.mark.parametrize("metric_class", [Dice, IoU])
def test_per_image_counts_an_image_whose_every_pixel_is_missed(metric_class):
    # image 0: all foreground, nothing predicted (score 0); image 1: perfect (score 1)
    y_true = np.stack([np.ones((4, 4, 1)), np.pad(np.ones((2, 2, 1)), ((1, 1), (1, 1), (0, 0)))]).astype("float32")
    y_pred = np.stack([np.zeros((4, 4, 1)), y_true[1]]).astype("float32")
    assert run_metric(metric_class(per_image=True), [(y_true, y_pred)]) == pytest.approx(0.5, abs=TOL)


def test_an_image_whose_background_is_all_predicted_as_another_class_is_seen():
    # every pixel true class 0, predicted class 2: classes 0 and 2 score 0, class 1 (absent) counts 1 on request
    y_true = np.zeros((1, 2, 2, 1), "int32")
    y_pred = np.eye(3, dtype="float32")[np.full((1, 2, 2), 2)]
    assert run_metric(Dice(num_classes=3, ignore_empty=False), [(y_true, y_pred)]) == pytest.approx(1 / 3, abs=TOL)
    assert run_metric(Dice(num_classes=3), [(y_true, y_pred)]) == 0.0
    # and the other way round: every pixel true class 2, predicted class 0
    y_true, y_pred = np.full((1, 2, 2, 1), 2, "int32"), np.eye(3, dtype="float32")[np.zeros((1, 2, 2), int)]
    assert run_metric(Dice(num_classes=3, ignore_empty=False), [(y_true, y_pred)]) == pytest.approx(1 / 3, abs=TOL)
