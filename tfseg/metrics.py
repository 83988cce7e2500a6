"""Segmentation metrics: one counting core, every score a small reduction of it.

Written with ``keras.ops`` only (no TensorFlow import), so the metrics run under
the TensorFlow, JAX and PyTorch backends.

The core, :func:`confusion_counts`, turns a batch into per-image, per-class
counts ``tp, fp, fn, tn`` (float32 ``[batch, classes]``). Every metric is a
function of those counts, as in segmentation_models.pytorch
``metrics/functional.py``::

    Dice      = 2TP / (2TP + FP + FN)        (= F1 score of the pixels)
    IoU       = TP / (TP + FP + FN)          (= Jaccard index; IoU = Dice / (2 - Dice))
    Precision = TP / (TP + FP)
    Recall    = TP / (TP + FN)               (= sensitivity)
    F-beta    = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP)
    PixelAccuracy = correctly labelled pixels / pixels of the selected true classes

Predictions (``num_classes``, when not given, is the predictions' last axis, read at the first
update: one sigmoid channel is binary, ``C`` softmax channels multi-class; :func:`prediction_classes`):
    * binary (``num_classes=1``, one sigmoid channel): a pixel is foreground when
      ``p >= threshold``; with ``from_logits=True`` when ``logit >= log(t / (1 - t))``,
      which is the same as thresholding ``sigmoid(logit)``. Targets: foreground
      when ``> 0.5`` (so {0, 1}, {0, 255} and bool masks all work). Internally
      the binary case has two classes, 0 = background and 1 = foreground, and
      the score is of class 1 unless ``class_ids`` says otherwise.
    * multi-class (``num_classes > 1``, softmax channel-last): the predicted class
      is the argmax (``threshold`` and ``from_logits`` change nothing). Targets are
      class ids ``[B, H, W, 1]`` (or ``[B, H, W]``) or one-hot ``[B, H, W, C]``.
      Scores are the macro mean over the selected classes.

Empty classes (``ignore_empty``, as MONAI's ``ignore_empty``): a class with no true pixel and
no predicted pixel (``TP + FP + FN = 0``) has no score and is left out of the mean over the
classes (:func:`mean_over_classes`, the one rule), so that classes absent from an image (or
from the whole split) do not raise the mean. When no selected class has a pixel at all (an
empty truth and an empty prediction), there is no score: ``NaN`` (the per-image functions and
``evaluate``'s rows), and ``per_image=True`` leaves such an image out of its mean.
``ignore_empty=False`` counts an empty class as 1 (a perfect "nothing there"), as earlier
versions did. When only the denominator is zero (e.g. precision with no predicted pixel but
some true ones) the score is 0. This holds per image (``per_image=True``) and for the global
reduction over everything seen since ``reset_state()``. Before any pixel is seen a metric
returns 0, like Keras' own metrics.

Reductions:
    * ``per_image=False`` (default, "micro" over pixels): counts are summed over all
      images seen since ``reset_state()``; the score is computed once from the sums.
      Large lesions weigh more. State: ``tp, fp, fn, tn`` per class, float32
      (integer counts are exact up to 2**24 per image; beyond that float32
      rounding is ~1e-7 relative).
    * ``per_image=True`` ("imagewise"): the score of each image, averaged over
      images. Images with no valid pixel (all ignored or zero weight) are skipped.

``sample_weight`` is applied per pixel: any shape broadcastable to
``[B, H, W, 1]`` after ``[B]`` becomes ``[B, 1, 1, 1]`` and ``[B, H, W]`` becomes
``[B, H, W, 1]``. A weight multiplies that pixel's contribution to every count;
weight 0 removes the pixel. ``ignore_class`` is the same as weight 0 on the
pixels whose target equals it (both together: the product).

Names (the keys in ``model.fit``'s logs, chosen not to collide with Keras' own metrics):
``dice``, ``iou``, ``pixel_precision``, ``pixel_recall``, ``pixel_fbeta``, ``pixel_accuracy``.
After ``import tfseg`` each name also works as a string in ``model.compile(metrics=[...])``
(:data:`COMPILE_NAMES`; so do ``seg_precision``, ``seg_recall`` and ``seg_fbeta``, the names
files saved by earlier versions use).

Example:
    >>> import numpy as np
    >>> from tfseg.metrics import Dice
    >>> m = Dice()
    >>> m.update_state(np.ones((1, 2, 2, 1)), np.array([0.9, 0.8, 0.2, 0.7]).reshape(1, 2, 2, 1))
    >>> round(float(m.result()), 4)   # TP=3, FN=1: 6 / 7
    0.8571
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

from tfseg import keras_compat
from tfseg.errors import ConfigError
from tfseg.masks import check_num_classes, foreground

__all__ = [
    "COMPILE_NAMES",
    "prediction_classes",
    "confusion_counts",
    "dice_from_counts",
    "iou_from_counts",
    "precision_from_counts",
    "recall_from_counts",
    "fbeta_from_counts",
    "mean_over_classes",
    "Dice",
    "IoU",
    "Precision",
    "Recall",
    "FBeta",
    "PixelAccuracy",
    "default_metrics",
    "dice_score",
    "iou_score",
]


# --------------------------------------------------------------------------
# The counting core
# --------------------------------------------------------------------------
def confusion_counts(
    y_true,
    y_pred,
    num_classes: Optional[int] = None,
    threshold: float = 0.5,
    from_logits: bool = False,
    ignore_class: Optional[int] = None,
    sample_weight=None,
):
    """Per-image, per-class confusion counts, in float32 whatever the input dtype.

    Args:
        y_true: binary: ``[B, H, W, 1]`` or ``[B, H, W]``, foreground where ``> 0.5``.
            Multi-class: class ids ``[B, H, W, 1]``/``[B, H, W]`` or one-hot ``[B, H, W, C]``.
        y_pred: ``[B, H, W, 1]`` sigmoid probabilities (binary) or ``[B, H, W, C]``
            softmax probabilities; logits with ``from_logits=True``.
        num_classes: 1 for binary, ``C`` for multi-class; default: ``y_pred``'s last axis.
        threshold: binary decision threshold on probabilities.
        from_logits: ``y_pred`` holds logits (binary: thresholded at ``logit(threshold)``).
        ignore_class: target value whose pixels are left out of every count.
        sample_weight: per-pixel weights (see the module docstring), or None.

    Returns:
        ``(tp, fp, fn, tn)``, each float32 ``[B, K]`` with ``K = 2`` for binary
        (class 0 background, 1 foreground) and ``K = num_classes`` otherwise.
        Weighted counts when ``sample_weight`` is given.

    Example:
        >>> import numpy as np
        >>> tp, fp, fn, tn = confusion_counts(np.array([[[[1.], [0.]]]]), np.array([[[[0.7], [0.6]]]]))
        >>> [float(c[0, 1]) for c in (tp, fp, fn, tn)]
        [1.0, 1.0, 0.0, 0.0]
    """
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.convert_to_tensor(y_true)
    rank = len(y_pred.shape)
    if rank < 2:
        raise ConfigError(f"predictions of shape {tuple(y_pred.shape)}: expected [batch, ..., channels]")
    num_classes = prediction_classes(y_pred, num_classes)
    classes = max(num_classes, 2)

    true_ids = _true_ids(y_true, rank, num_classes)  # int32 [B, ..., 1]
    predicted = _predicted_one_hot(y_pred, num_classes, threshold, from_logits)
    truth = ops.one_hot(true_ids[..., 0], classes, dtype="float32")
    weight = _pixel_weights(y_true, true_ids, rank, num_classes, ignore_class, sample_weight)

    axes = tuple(range(1, rank - 1))
    tp = ops.sum(weight * predicted * truth, axis=axes)
    predicted_sum = ops.sum(weight * predicted, axis=axes)
    true_sum = ops.sum(weight * truth, axis=axes)
    total = ops.sum(weight, axis=axes)  # [B, 1], broadcasts over classes
    fp = predicted_sum - tp
    fn = true_sum - tp
    tn = total - tp - fp - fn
    return tp, fp, fn, tn


def _check_num_classes(num_classes) -> Optional[int]:
    """``num_classes`` as an int (``None`` stays ``None``: inferred from the predictions)."""
    return None if num_classes is None else check_num_classes(num_classes)  # tfseg.masks: the one bound


def prediction_classes(y_pred, num_classes: Optional[int] = None) -> int:
    """The class count of predictions ``y_pred`` ``[..., C]``: ``num_classes`` when given (checked against
    the last axis), else the last axis itself (1 = one sigmoid channel, binary). The one rule of
    every loss and metric here.

    Raises:
        ConfigError: ``num_classes`` is not a positive integer, differs from the last axis, or is
            not given while the last axis is unknown.

    Example:
        >>> import numpy as np
        >>> prediction_classes(np.zeros((2, 4, 4, 3))), prediction_classes(np.zeros((2, 4, 4, 1)), 1)
        (3, 1)
    """
    num_classes = _check_num_classes(num_classes)
    channels = ops.convert_to_tensor(y_pred).shape[-1] if not hasattr(y_pred, "shape") else y_pred.shape[-1]
    if num_classes is None:
        if channels is None:
            raise ConfigError("num_classes: not given, and the predictions' last axis (the classes) is unknown; "
                              "pass num_classes")
        return int(channels)
    if channels is not None and channels != num_classes:
        hint = "" if num_classes > 1 or channels < 2 else f"; pass num_classes={channels} (or leave it out)"
        raise ConfigError(
            f"predictions have {channels} channel(s) but num_classes={num_classes}{hint}"
        )
    return num_classes


def _true_ids(y_true, rank, num_classes):
    """Target class ids, int32 ``[B, ..., 1]`` (binary: 1 where ``> 0.5``, :func:`tfseg.masks.foreground`)."""
    if len(y_true.shape) == rank - 1:
        y_true = ops.expand_dims(y_true, -1)
    if num_classes == 1:
        return ops.cast(foreground(ops.cast(y_true, "float32"), xp=ops), "int32")
    if y_true.shape[-1] == num_classes:  # one-hot
        return ops.expand_dims(ops.cast(ops.argmax(ops.cast(y_true, "float32"), axis=-1), "int32"), -1)
    return ops.cast(y_true, "int32")


def probabilities_to_mask(probabilities, threshold: float = 0.5, dtype: str = "uint8"):
    """Class ids ``[..., H, W]`` from probabilities ``[..., H, W, C]``: the one rule of tfseg.

    One channel (sigmoid): ``1 where p >= threshold else 0`` (a tie is foreground).
    Several channels (softmax): ``argmax`` over the last axis (a tie goes to the lower
    class id). Training metrics, ``evaluate``, ``predict``, the figures and the
    SavedModel's ``mask`` output all use this function.

    Example:
        >>> import numpy as np
        >>> np.asarray(probabilities_to_mask(np.array([[[0.2], [0.5], [0.9]]]))).tolist()
        [[0, 1, 1]]
    """
    probabilities = ops.convert_to_tensor(probabilities)
    if probabilities.shape[-1] == 1:
        return ops.cast(probabilities[..., 0] >= threshold, dtype)
    return ops.cast(ops.argmax(probabilities, axis=-1), dtype)


def _predicted_one_hot(y_pred, num_classes, threshold, from_logits):
    """Hard predictions as float32 one-hot ``[B, ..., K]`` (:func:`probabilities_to_mask`'s rule)."""
    if num_classes == 1 and from_logits:
        threshold = _logit(threshold)  # sigmoid(x) >= t  <=>  x >= logit(t)
    ids = probabilities_to_mask(y_pred, threshold, dtype="int32")
    return ops.one_hot(ids, max(num_classes, 2), dtype="float32")


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _pixel_weights(y_true, true_ids, rank, num_classes, ignore_class, sample_weight):
    """float32 ``[B, ..., 1]``: sample weights times 0 on ``ignore_class`` pixels."""
    weight = ops.ones_like(true_ids, dtype="float32")
    if ignore_class is not None:
        raw = true_ids
        if num_classes == 1:  # the raw label, before thresholding, carries the void value
            raw = y_true if len(y_true.shape) == rank else ops.expand_dims(y_true, -1)
            raw = ops.cast(raw, "float32")
            weight = weight * ops.cast(ops.not_equal(raw, float(ignore_class)), "float32")
        else:
            weight = weight * ops.cast(ops.not_equal(raw, int(ignore_class)), "float32")
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
        while len(sample_weight.shape) < rank:
            sample_weight = ops.expand_dims(sample_weight, -1)
        weight = weight * sample_weight
    return weight


# --------------------------------------------------------------------------
# Scores as functions of the counts (elementwise: [..., K] -> [..., K])
# --------------------------------------------------------------------------
def _ratio(numerator, denominator, tp, fp, fn):
    """``numerator / denominator``; 1 when the class is absent from truth and prediction, 0 when only the denominator is 0."""
    empty = ops.equal(tp + fp + fn, 0.0)
    positive = denominator > 0.0
    safe = ops.where(positive, denominator, ops.ones_like(denominator))
    return ops.where(empty, 1.0, ops.where(positive, numerator / safe, 0.0))


def dice_from_counts(tp, fp, fn, tn=None):
    """Dice = 2TP / (2TP + FP + FN); 1 where TP + FP + FN = 0."""
    return _ratio(2.0 * tp, 2.0 * tp + fp + fn, tp, fp, fn)


def iou_from_counts(tp, fp, fn, tn=None):
    """IoU = TP / (TP + FP + FN); 1 where TP + FP + FN = 0."""
    return _ratio(tp, tp + fp + fn, tp, fp, fn)


def precision_from_counts(tp, fp, fn, tn=None):
    """Precision = TP / (TP + FP); 1 where TP + FP + FN = 0, 0 where only TP + FP = 0."""
    return _ratio(tp, tp + fp, tp, fp, fn)


def recall_from_counts(tp, fp, fn, tn=None):
    """Recall = TP / (TP + FN); 1 where TP + FP + FN = 0, 0 where only TP + FN = 0."""
    return _ratio(tp, tp + fn, tp, fp, fn)


def fbeta_from_counts(tp, fp, fn, tn=None, beta=1.0):
    """F-beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP); beta=1 is Dice."""
    b2 = float(beta) ** 2
    return _ratio((1.0 + b2) * tp, (1.0 + b2) * tp + b2 * fn + fp, tp, fp, fn)


def mean_over_classes(scores, tp, fp, fn, ignore_empty: bool = True):
    """The mean of per-class ``scores`` ``[..., K]`` over the classes that count: the one rule of every
    multi-class (and binary) score in tfseg, the Keras metrics and ``evaluate``'s rows and table alike.

    With ``ignore_empty`` (the default) a class with ``TP + FP + FN = 0`` (absent from the truth and
    from the prediction) is left out; ``ignore_empty=False`` counts every class (an empty one
    scores what ``scores`` holds for it: 1 for the ``*_from_counts`` functions).

    Returns:
        ``(mean [...], classes counted [...])``, float32; the mean is ``NaN`` where no class counts.

    Example:
        >>> import numpy as np
        >>> tp, fp, fn = np.array([[3., 0.]]), np.array([[1., 0.]]), np.array([[0., 0.]])
        >>> mean, counted = mean_over_classes(dice_from_counts(tp, fp, fn), tp, fp, fn)
        >>> round(float(mean[0]), 4), float(counted[0])   # class 1 is absent: only class 0 counts
        (0.8571, 1.0)
    """
    scores = ops.cast(ops.convert_to_tensor(scores), "float32")
    if ignore_empty:
        present = ops.cast(ops.convert_to_tensor(tp + fp + fn) > 0.0, "float32")
    else:
        present = ops.ones_like(scores)
    counted = ops.sum(present, axis=-1)
    total = ops.sum(ops.where(present > 0.0, scores, 0.0), axis=-1)
    mean = ops.where(counted > 0.0, total / ops.maximum(counted, 1.0), float("nan"))
    return mean, counted


# --------------------------------------------------------------------------
# Stateful metrics
# --------------------------------------------------------------------------
class _CountMetric(keras.metrics.Metric):
    """Base of every metric here: accumulate :func:`confusion_counts`, reduce in ``result``.

    Subclasses set ``_class_score`` (counts -> per-class score) or override ``_reduce``.
    With ``num_classes=None`` the class count (and with it the size of the count variables)
    is read from the predictions at the first update (:func:`prediction_classes`), as
    ``keras.metrics.F1Score`` does; ``num_classes`` keeps the value given (``get_config``).
    """

    _binary_default_classes = (1,)

    def __init__(
        self,
        threshold: float = 0.5,
        per_image: bool = False,
        num_classes: Optional[int] = None,
        from_logits: bool = False,
        ignore_class: Optional[int] = None,
        class_ids: Optional[Sequence[int]] = None,
        include_background: bool = True,
        name: Optional[str] = None,
        dtype=None,
        ignore_empty: bool = True,
    ):
        super().__init__(name=name, dtype=dtype)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold={threshold!r}: must be in [0, 1]")
        self.threshold = float(threshold)
        self.per_image = bool(per_image)
        self.num_classes = _check_num_classes(num_classes)
        self.from_logits = bool(from_logits)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.class_ids = None if class_ids is None else [int(c) for c in class_ids]
        self.include_background = bool(include_background)
        self.ignore_empty = bool(ignore_empty)
        self._classes = None  # the class count in use: num_classes, or the predictions' at the first update
        if self.per_image:
            self.score_sum = self.add_variable((), "zeros", dtype="float32", name="score_sum")
            self.images = self.add_variable((), "zeros", dtype="float32", name="images")
            # images with valid pixels but no score (nothing true, nothing predicted)
            self.unscored = self.add_variable((), "zeros", dtype="float32", name="unscored")
        if self.num_classes is not None:
            self._build(self.num_classes)

    def _build(self, num_classes: int) -> None:
        """Fix the class count: the selected classes and (for the global reduction) the count variables."""
        self._selected = self._selected_classes(num_classes)
        if not self.per_image:
            k = max(num_classes, 2)
            self.tp = self.add_variable((k,), "zeros", dtype="float32", name="tp")
            self.fp = self.add_variable((k,), "zeros", dtype="float32", name="fp")
            self.fn = self.add_variable((k,), "zeros", dtype="float32", name="fn")
            self.tn = self.add_variable((k,), "zeros", dtype="float32", name="tn")
        self._classes = num_classes

    def _selected_classes(self, num_classes: int):
        """The class indices averaged over (validated; never empty)."""
        k = max(num_classes, 2)
        if self.class_ids is not None:
            chosen = list(self.class_ids)
        elif num_classes == 1:
            chosen = list(self._binary_default_classes)
        else:
            chosen = [c for c in range(k) if c != self.ignore_class]
        if num_classes > 1 and not self.include_background:
            chosen = [c for c in chosen if c != 0]
        bad = [c for c in chosen if not 0 <= c < k]
        if bad:
            raise ConfigError(f"class_ids {bad}: must be in [0, {k - 1}] for num_classes={num_classes}")
        if not chosen:
            raise ConfigError(f"{self.name}: no class left to score (class_ids={self.class_ids}, include_background=False)")
        return chosen

    def _class_score(self, tp, fp, fn, tn):
        raise NotImplementedError

    def _reduce(self, tp, fp, fn, tn):
        """``[..., K]`` counts -> ``([...] score, [...] classes counted)``: the mean of the selected
        classes (:func:`mean_over_classes`; ``NaN`` where none counts)."""
        tp, fp, fn, tn = (ops.take(c, self._selected, axis=-1) for c in (tp, fp, fn, tn))
        return mean_over_classes(self._class_score(tp, fp, fn, tn), tp, fp, fn, self.ignore_empty)

    def score_counts(self, tp, fp, fn, tn) -> np.ndarray:
        """The score of confusion counts ``[..., K]`` (:func:`confusion_counts`, e.g. summed over some
        images): float64 ``[...]``, what :meth:`result` gives after exactly those counts (the global
        reduction), ``NaN`` where no class counts. Resampled sums are scored with it (:mod:`tfseg.stats`).

        Raises:
            ConfigError: the metric has no class count yet (give ``num_classes``).
        """
        if self._classes is None:
            raise ConfigError(f"{self.name}: score_counts needs num_classes")
        counts = [ops.convert_to_tensor(np.asarray(c, np.float32)) for c in (tp, fp, fn, tn)]
        value, _ = self._reduce(*counts)
        return np.asarray(ops.convert_to_numpy(value), np.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._classes is None:
            self._build(prediction_classes(y_pred))
        tp, fp, fn, tn = confusion_counts(
            y_true,
            y_pred,
            num_classes=self._classes,
            threshold=self.threshold,
            from_logits=self.from_logits,
            ignore_class=self.ignore_class,
            sample_weight=sample_weight,
        )
        if self.per_image:
            # an image counts when it has a valid pixel and a class with a score
            score, counted = self._reduce(tp, fp, fn, tn)
            valid = (tp + fp + fn + tn)[:, 0] > 0.0
            seen = ops.logical_and(valid, counted > 0.0)
            self.score_sum.assign_add(ops.sum(ops.where(seen, score, 0.0)))
            self.images.assign_add(ops.sum(ops.cast(seen, "float32")))
            self.unscored.assign_add(ops.sum(ops.cast(ops.logical_and(valid, counted == 0.0), "float32")))
        else:
            for variable, count in zip((self.tp, self.fp, self.fn, self.tn), (tp, fp, fn, tn)):
                variable.assign_add(ops.sum(count, axis=0))

    def result(self):
        if self._classes is None:  # nothing seen yet, and no class count to size the counts by
            return ops.cast(ops.convert_to_tensor(0.0), self.dtype)
        if self.per_image:
            images = ops.convert_to_tensor(self.images)
            seen = images + self.unscored
            value = ops.where(images > 0.0, self.score_sum / ops.maximum(images, 1.0), float("nan"))
        else:
            counts = [ops.convert_to_tensor(v) for v in (self.tp, self.fp, self.fn, self.tn)]
            seen = counts[0][0] + counts[1][0] + counts[2][0] + counts[3][0]
            value, _ = self._reduce(*counts)  # NaN when pixels were seen but no class has a score
        return ops.cast(ops.where(seen > 0.0, value, 0.0), self.dtype)

    def get_config(self):
        return {
            "threshold": self.threshold,
            "per_image": self.per_image,
            "num_classes": self.num_classes,
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
            "class_ids": self.class_ids,
            "include_background": self.include_background,
            "ignore_empty": self.ignore_empty,
            "name": self.name,
            "dtype": self.dtype,
        }


_ARGS_DOC = """
    Args:
        threshold: binary only: a pixel is foreground when ``probability >= threshold``.
        per_image: False: one score from the counts of all pixels seen since
            ``reset_state()``; True: the mean of per-image scores.
        num_classes: 1 for one sigmoid channel; ``C > 1`` for ``C`` softmax channels; ``None``
            (default): the predictions' last axis, read at the first update.
        from_logits: ``y_pred`` holds logits (binary: sigmoid is applied before thresholding).
        ignore_class: a target value (e.g. 255) whose pixels are excluded from all counts.
        class_ids: the classes averaged over. Default: multi-class, all classes but
            ``ignore_class``; binary, the foreground ``[1]`` (``[0, 1]`` adds background).
        include_background: multi-class only: False drops class 0 from the mean.
            (Binary metrics score the foreground unless ``class_ids`` says otherwise.)
        name: the key in ``model.fit`` logs.
        dtype: dtype of the result; the counts are always float32.
        ignore_empty: True (default): a class absent from truth and prediction is left out of
            the mean (:func:`mean_over_classes`); False: it counts as 1.
"""


@keras.saving.register_keras_serializable(package="tfseg")
class Dice(_CountMetric):
    __doc__ = (
        """Dice coefficient, ``2TP / (2TP + FP + FN)``: the F1 score of the pixels.

    Equals ``2|P & T| / (|P| + |T|)`` for predicted set ``P`` and true set ``T``,
    and ``2 IoU / (1 + IoU)``. Empty truth and empty prediction score 1 (see the
    module docstring); multi-class scores are the macro mean over ``class_ids``.
"""
        + _ARGS_DOC
        + """
    Example:
        >>> import numpy as np
        >>> m = Dice(num_classes=3, include_background=False)
        >>> y_true = np.array([0, 1, 2, 2]).reshape(1, 2, 2, 1)
        >>> y_pred = np.eye(3)[[0, 1, 2, 0]].reshape(1, 2, 2, 3)
        >>> m.update_state(y_true, y_pred)
        >>> round(float(m.result()), 4)   # class 1: 1.0, class 2: 2/3
        0.8333
"""
    )

    def __init__(self, threshold=0.5, per_image=False, num_classes=None, from_logits=False,
                 ignore_class=None, class_ids=None, include_background=True,
                 name="dice", dtype=None, ignore_empty=True):
        super().__init__(threshold, per_image, num_classes, from_logits, ignore_class,
                         class_ids, include_background, name=name, dtype=dtype, ignore_empty=ignore_empty)

    def _class_score(self, tp, fp, fn, tn):
        return dice_from_counts(tp, fp, fn, tn)


@keras.saving.register_keras_serializable(package="tfseg")
class IoU(_CountMetric):
    __doc__ = (
        """Intersection over union (Jaccard index), ``TP / (TP + FP + FN)``.

    Equals ``|P & T| / |P | T|`` and ``Dice / (2 - Dice)`` per class. With
    ``per_image=False`` and ``num_classes=1`` it equals
    ``keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold)``.
    Empty truth and empty prediction score 1.
"""
        + _ARGS_DOC
    )

    def __init__(self, threshold=0.5, per_image=False, num_classes=None, from_logits=False,
                 ignore_class=None, class_ids=None, include_background=True,
                 name="iou", dtype=None, ignore_empty=True):
        super().__init__(threshold, per_image, num_classes, from_logits, ignore_class,
                         class_ids, include_background, name=name, dtype=dtype, ignore_empty=ignore_empty)

    def _class_score(self, tp, fp, fn, tn):
        return iou_from_counts(tp, fp, fn, tn)


@keras.saving.register_keras_serializable(package="tfseg")
class Precision(_CountMetric):
    __doc__ = (
        """Pixel precision ``TP / (TP + FP)``, logged as ``pixel_precision`` (``keras.metrics.Precision`` is
    ``precision``; files of earlier versions name it ``seg_precision``).

    1 when the class is absent from truth and prediction; 0 when nothing is
    predicted but the class is present.
"""
        + _ARGS_DOC
    )

    def __init__(self, threshold=0.5, per_image=False, num_classes=None, from_logits=False,
                 ignore_class=None, class_ids=None, include_background=True, name="pixel_precision", dtype=None,
                 ignore_empty=True):
        super().__init__(threshold, per_image, num_classes, from_logits, ignore_class,
                         class_ids, include_background, name=name, dtype=dtype, ignore_empty=ignore_empty)

    def _class_score(self, tp, fp, fn, tn):
        return precision_from_counts(tp, fp, fn, tn)


@keras.saving.register_keras_serializable(package="tfseg")
class Recall(_CountMetric):
    __doc__ = (
        """Pixel recall (sensitivity) ``TP / (TP + FN)``, logged as ``pixel_recall`` (``keras.metrics.Recall``
    is ``recall``; earlier versions: ``seg_recall``).

    1 when the class is absent from truth and prediction; 0 when the class is
    predicted but absent from the truth.
"""
        + _ARGS_DOC
    )

    def __init__(self, threshold=0.5, per_image=False, num_classes=None, from_logits=False,
                 ignore_class=None, class_ids=None, include_background=True,
                 name="pixel_recall", dtype=None, ignore_empty=True):
        super().__init__(threshold, per_image, num_classes, from_logits, ignore_class,
                         class_ids, include_background, name=name, dtype=dtype, ignore_empty=ignore_empty)

    def _class_score(self, tp, fp, fn, tn):
        return recall_from_counts(tp, fp, fn, tn)


@keras.saving.register_keras_serializable(package="tfseg")
class FBeta(_CountMetric):
    __doc__ = (
        """F-beta ``(1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP)``, logged as ``pixel_fbeta``
    (``keras.metrics.FBetaScore`` is ``fbeta_score``; earlier versions: ``seg_fbeta``).

    ``beta > 1`` weighs recall more, ``beta < 1`` precision; ``beta = 1`` is Dice.

    Args:
        beta: positive weight of recall relative to precision.
"""
        + _ARGS_DOC
    )

    def __init__(self, beta=1.0, threshold=0.5, per_image=False, num_classes=None, from_logits=False,
                 ignore_class=None, class_ids=None, include_background=True,
                 name="pixel_fbeta", dtype=None, ignore_empty=True):
        if not float(beta) > 0.0:
            raise ConfigError(f"beta={beta!r}: must be positive")
        super().__init__(threshold, per_image, num_classes, from_logits, ignore_class,
                         class_ids, include_background, name=name, dtype=dtype, ignore_empty=ignore_empty)
        self.beta = float(beta)

    def _class_score(self, tp, fp, fn, tn):
        return fbeta_from_counts(tp, fp, fn, tn, beta=self.beta)

    def get_config(self):
        return {"beta": self.beta, **super().get_config()}


@keras.saving.register_keras_serializable(package="tfseg")
class PixelAccuracy(_CountMetric):
    __doc__ = (
        """Fraction of pixels labelled correctly, among pixels whose true class is selected.

    ``sum_c TP_c / sum_c (TP_c + FN_c)`` over the selected classes: with all classes
    (the default, binary included) it is ``(TP + TN) / all pixels``;
    ``include_background=False`` gives the accuracy on the non-background pixels.
    1 when no selected true pixel and no prediction exist.
"""
        + _ARGS_DOC
    )

    _binary_default_classes = (0, 1)

    def __init__(self, threshold=0.5, per_image=False, num_classes=None, from_logits=False,
                 ignore_class=None, class_ids=None, include_background=True, name="pixel_accuracy", dtype=None,
                 ignore_empty=True):
        super().__init__(threshold, per_image, num_classes, from_logits, ignore_class,
                         class_ids, include_background, name=name, dtype=dtype, ignore_empty=ignore_empty)

    def _reduce(self, tp, fp, fn, tn):
        tp, fn = (ops.take(c, self._selected, axis=-1) for c in (tp, fn))
        correct, total = ops.sum(tp, axis=-1), ops.sum(tp + fn, axis=-1)
        counted = ops.cast(total > 0.0, "float32")  # no selected true pixel: no score (ignore_empty) or 1
        if not self.ignore_empty:
            counted = ops.ones_like(counted)
        empty = float("nan") if self.ignore_empty else 1.0
        return ops.where(total > 0.0, correct / ops.maximum(total, 1e-30), empty), counted


def default_metrics(num_classes: int = 1, ignore_class: Optional[int] = None, ignore_empty: bool = True):
    """The metrics every run reports: ``[Dice(...), IoU(...)]`` (logged as ``dice``, ``iou``).

    ``ignore_class``: a mask value whose pixels no metric counts (e.g. 255). ``ignore_empty``: a class
    absent from truth and prediction stays out of the mean (False: it counts as 1).

    Example:
        >>> [m.name for m in default_metrics()]
        ['dice', 'iou']
    """
    return [Dice(num_classes=num_classes, ignore_class=ignore_class, ignore_empty=ignore_empty),
            IoU(num_classes=num_classes, ignore_class=ignore_class, ignore_empty=ignore_empty)]


def _compile_names():
    """``{string: metric class}`` for ``model.compile(metrics=[...])``: each metric's log name, and the
    names of earlier versions (Keras names a metric made from a string after the string)."""
    import inspect

    names = {inspect.signature(cls).parameters["name"].default: cls
             for cls in (Dice, IoU, Precision, Recall, FBeta, PixelAccuracy)}
    names.update({"seg_precision": Precision, "seg_recall": Recall, "seg_fbeta": FBeta})
    return names


#: ``model.compile`` strings of the metrics (registered with Keras when this module is imported).
COMPILE_NAMES = _compile_names()
keras_compat.register_compile_names("metrics", COMPILE_NAMES)


# --------------------------------------------------------------------------
# Plain functions (per-image evaluation, notebooks)
# --------------------------------------------------------------------------
def dice_score(y_true, y_pred, **options) -> float:
    """Dice of arrays as a Python float; the options are :class:`Dice`'s.

    A single image may be given without the batch axis (``[H, W]`` or ``[H, W, C]``).

    Example:
        >>> import numpy as np
        >>> round(dice_score(np.array([[1, 1], [0, 0]]), np.array([[0.9, 0.2], [0.1, 0.0]])), 4)
        0.6667
    """
    return _score(Dice, y_true, y_pred, options)


def iou_score(y_true, y_pred, **options) -> float:
    """IoU of arrays as a Python float; the options are :class:`IoU`'s.

    Example:
        >>> import numpy as np
        >>> iou_score(np.array([[1, 1], [0, 0]]), np.array([[0.9, 0.2], [0.1, 0.0]]))
        0.5
    """
    return _score(IoU, y_true, y_pred, options)


def _score(metric_class, y_true, y_pred, options) -> float:
    metric = metric_class(**options)
    metric.update_state(_as_batch(y_true), _as_batch(y_pred))
    return float(ops.convert_to_numpy(metric.result()))


def _as_batch(x):
    """``[H, W] -> [1, H, W, 1]``, ``[H, W, C] -> [1, H, W, C]``; batches unchanged."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x[None, :, :, None]
    if x.ndim == 3:
        return x[None]
    return x
