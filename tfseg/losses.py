"""Segmentation losses: soft Dice, Tversky, focal, cross-entropy and their sums.

Written with ``keras.ops`` only (no TensorFlow import), so they run under the
TensorFlow, JAX and PyTorch backends. Everything is computed in float32: the
prediction is cast first, so mixed-precision (float16) outputs cannot overflow
the sums (float16 stops at 65504, one 256x256 mask already has 65536 pixels).

Inputs (``num_classes``, when not given, is ``y_pred``'s last axis: one sigmoid channel is
binary, ``C`` softmax channels categorical):
    * binary (``num_classes=1``): ``y_pred`` ``[B, H, W, 1]`` sigmoid probabilities
      (logits with ``from_logits=True``); ``y_true`` the {0, 1} mask ``[B, H, W, 1]``
      or ``[B, H, W]`` (soft labels in [0, 1] work too).
    * categorical (``num_classes=C > 1``): ``y_pred`` ``[B, H, W, C]`` softmax
      probabilities (or logits); ``y_true`` class ids ``[B, H, W, 1]``/``[B, H, W]``
      or one-hot ``[B, H, W, C]``.

Soft counts per class ``c`` (sums over pixels, and over the batch unless
``per_image=True``), with ``p`` the probability and ``t`` the target::

    TP = sum(p * t)    FP = sum(p * (1 - t))    FN = sum((1 - p) * t)

    Dice loss            1 - (2 TP + s) / (2 TP + FP + FN + s)      s = smooth, default 1.0
    Tversky loss         1 - (TP + s) / (TP + alpha FP + beta FN + s)
    Focal Tversky loss   (1 - Tversky index) ** gamma
    Cross-entropy        mean over pixels of -[t log p + (1 - t) log(1 - p)]  (binary)
                         mean over pixels of -sum_c t_c log p_c               (categorical)
    Focal                mean over pixels of -alpha_t (1 - p_t) ** gamma log p_t

The smoothing ``s`` keeps the loss defined on empty masks: with no true and no
predicted pixel the Dice loss is 0, and on an empty truth it is
``1 - s / (sum(p) + s)``, which pushes the predictions to 0. Probabilities in
logarithms are clipped to ``[1e-7, 1 - 1e-7]``.

Multi-class scores are averaged over classes (weighted by ``class_weights`` when
given; ``include_background=False`` drops class 0).

Every loss returns one value per image (``[B]``); Keras averages them over the
batch. With ``per_image=False`` the Dice-type term is one batch-wide value
repeated for every image.

``sample_weight`` (the loss classes' ``__call__``, so also ``model.fit``), as in
:mod:`tfseg.metrics`:

* ``[B]`` (or ``[B, 1]``): one weight per image, applied by Keras to the per-image losses;
* ``[B, H, W]`` or ``[B, H, W, 1]``: one weight per pixel, applied inside the loss:
  the soft counts become ``TP = sum(w p t)``, ``FP = sum(w p) - TP``,
  ``FN = sum(w t) - TP``, and the cross-entropy/focal pixel mean becomes
  ``mean(w * ce)`` (normalised by the pixel count, not the weights, as Keras'
  pixel-wise losses do). Weight 0 removes a pixel from the Dice-type counts.

The function forms take the per-pixel weights as ``pixel_weights``.

After ``import tfseg`` every loss also works as a string in ``model.compile(loss=...)``: the
``--loss`` names (:data:`tfseg.config.LOSSES`), each class's name and its default ``name``
(:data:`COMPILE_NAMES`; ``"dice"``, ``"bce"`` and ``"tversky"`` then mean tfseg's losses, not Keras').

Example:
    >>> import keras
    >>> from tfseg.losses import BCEDiceLoss
    >>> from tfseg.metrics import Dice, IoU
    >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    >>> model.compile(optimizer="adam", loss=BCEDiceLoss(), metrics=[Dice(), IoU()])
    >>> model.compile(optimizer="adam", loss="bce_dice", metrics=["dice", "iou"])   # the same, by name
"""

from __future__ import annotations

import inspect

import keras
from keras import ops

from tfseg import keras_compat
from tfseg.config import LOSSES
from tfseg.errors import ConfigError
from tfseg.masks import check_num_classes
from tfseg.metrics import prediction_classes

EPSILON = 1e-7

__all__ = [
    "COMPILE_NAMES",
    "LOSS_NAMES",
    "get_loss",
    "IgnoreClassLoss",
    "soft_counts",
    "is_pixel_weight",
    "dice_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "cross_entropy_loss",
    "focal_loss",
    "bce_dice_loss",
    "cce_dice_loss",
    "DiceLoss",
    "CategoricalDiceLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "BCEDiceLoss",
    "CCEDiceLoss",
]


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------
def _probabilities(y_pred, num_classes, from_logits):
    """float32 probabilities (sigmoid/softmax applied to logits)."""
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if not from_logits:
        return y_pred
    return ops.sigmoid(y_pred) if num_classes == 1 else ops.softmax(y_pred, axis=-1)


def _targets(y_true, rank, num_classes):
    """float32 targets shaped like the prediction: the mask (binary) or one-hot (categorical)."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == rank - 1:
        y_true = ops.expand_dims(y_true, -1)
    if num_classes == 1 or y_true.shape[-1] == num_classes:
        return ops.cast(y_true, "float32")
    return ops.one_hot(ops.cast(y_true[..., 0], "int32"), num_classes, dtype="float32")


def _check(num_classes=None, class_weights=None, binary_weights=False, **non_negative):
    """Validate options; ConfigError naming the bad value.

    ``num_classes=None`` (inferred from the predictions when the loss is called) leaves the
    checks that need the class count to that call. ``binary_weights``: the loss takes
    ``[background, foreground]`` weights for one channel.
    """
    if num_classes is not None:
        check_num_classes(num_classes)  # tfseg.masks: the one bound and message
    for name, value in non_negative.items():
        if value is None or not float(value) >= 0.0:
            raise ConfigError(f"{name}={value!r}: must be a non-negative number")
    if class_weights is None:
        return
    weights = [float(w) for w in class_weights]
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"class_weights={list(class_weights)!r}: need non-negative weights, not all 0")
    if num_classes is None:
        return
    if num_classes == 1 and not binary_weights:
        raise ConfigError(f"class_weights={list(class_weights)!r}: only for num_classes > 1 with this loss")
    expected = 2 if num_classes == 1 else num_classes
    if len(weights) != expected:
        raise ConfigError(
            f"class_weights={list(class_weights)!r}: need {expected} non-negative weights, not all 0"
        )


def _channels(num_classes, class_weights, include_background):
    """(channel indices, weights) averaged over by the overlap losses."""
    if num_classes == 1:
        return [0], [1.0]
    weights = [1.0] * num_classes if class_weights is None else [float(w) for w in class_weights]
    first = 0 if include_background else 1
    return list(range(first, num_classes)), weights[first:]


def _class_mean(per_class, num_classes, class_weights, include_background):
    """``[N, K] -> [N]``: weighted mean over the selected channels."""
    channels, weights = _channels(num_classes, class_weights, include_background)
    selected = ops.take(per_class, channels, axis=-1)
    weights = ops.convert_to_tensor(weights, dtype="float32")
    return ops.sum(selected * weights, axis=-1) / ops.sum(weights)


def _pixel_weights(pixel_weights, rank):
    """float32 ``[B, ..., 1]`` weights from ``[B, ...]`` or ``[B, ..., 1]``; None stays None."""
    if pixel_weights is None:
        return None
    weights = ops.cast(ops.convert_to_tensor(pixel_weights), "float32")
    if len(weights.shape) == rank - 1:
        weights = ops.expand_dims(weights, -1)
    if len(weights.shape) != rank:
        raise ConfigError(
            f"pixel weights of shape {tuple(weights.shape)}: expected [batch, height, width] or "
            "[batch, height, width, 1]"
        )
    return weights


def is_pixel_weight(sample_weight, y_pred) -> bool:
    """Whether ``sample_weight`` weighs pixels (``[B, H, W]``/``[B, H, W, 1]``) rather than images (``[B]``)."""
    if sample_weight is None:
        return False
    rank = len(ops.shape(y_pred))
    return len(ops.shape(sample_weight)) >= rank - 1 >= 2


def _per_image(values, y_pred):
    """Broadcast ``[1]`` or ``[B]`` float32 values to ``[B]`` (one per image)."""
    rank = len(y_pred.shape)
    return ops.zeros_like(ops.sum(y_pred, axis=tuple(range(1, rank))), dtype="float32") + values


def soft_counts(y_true, y_pred, num_classes=None, from_logits=False, per_image=False, pixel_weights=None):
    """Soft ``(TP, FP, FN)`` per class, float32 ``[B, K]`` (``per_image``) or ``[1, K]``.

    ``TP = sum(p t)``, ``FP = sum(p) - TP``, ``FN = sum(t) - TP``; ``K = 1`` for binary;
    ``num_classes`` defaults to ``y_pred``'s last axis.
    With ``pixel_weights`` ``w`` (``[B, H, W]`` or ``[B, H, W, 1]``) every sum is of ``w`` times its term.

    Example:
        >>> import numpy as np
        >>> tp, fp, fn = soft_counts(np.ones((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.75))
        >>> float(tp[0, 0]), float(fp[0, 0]), float(fn[0, 0])
        (3.0, 0.0, 1.0)
    """
    num_classes = prediction_classes(y_pred, num_classes)
    p = _probabilities(y_pred, num_classes, from_logits)
    rank = len(p.shape)
    t = _targets(y_true, rank, num_classes)
    weights = _pixel_weights(pixel_weights, rank)
    weighted_p = p if weights is None else p * weights
    weighted_t = t if weights is None else t * weights
    axes = tuple(range(1, rank - 1)) if per_image else tuple(range(0, rank - 1))
    tp = ops.sum(weighted_p * t, axis=axes)
    fp = ops.sum(weighted_p, axis=axes) - tp
    fn = ops.sum(weighted_t, axis=axes) - tp
    if not per_image:
        tp, fp, fn = (ops.expand_dims(c, 0) for c in (tp, fp, fn))
    return tp, fp, fn


# --------------------------------------------------------------------------
# Function forms: (y_true, y_pred, **options) -> float32 [B]
# --------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="tfseg")
def dice_loss(y_true, y_pred, smooth=1.0, per_image=False, num_classes=None, from_logits=False,
              class_weights=None, include_background=True, pixel_weights=None):
    """Soft Dice loss ``1 - (2 TP + s) / (2 TP + FP + FN + s)`` per image ``[B]``.

    Args:
        smooth: ``s``, added to numerator and denominator (default 1.0).
        per_image: True: one Dice per image; False: one over the whole batch.
        num_classes: 1 (sigmoid) or ``C`` (softmax; macro mean over classes); default: ``y_pred``'s last axis.
        from_logits: ``y_pred`` holds logits.
        class_weights: ``C`` weights of the class mean (categorical only).
        include_background: categorical only: False leaves class 0 out of the mean.
        pixel_weights: ``[B, H, W]`` or ``[B, H, W, 1]`` weights of the soft counts (see the module docstring).

    Example:
        >>> import numpy as np
        >>> float(dice_loss(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1)))[0])
        0.0
    """
    num_classes = prediction_classes(y_pred, num_classes)
    _check(num_classes, class_weights, smooth=smooth)
    tp, fp, fn = soft_counts(y_true, y_pred, num_classes, from_logits, per_image, pixel_weights)
    per_class = 1.0 - (2.0 * tp + smooth) / (2.0 * tp + fp + fn + smooth)
    value = _class_mean(per_class, num_classes, class_weights, include_background)
    return _per_image(value, ops.convert_to_tensor(y_pred))


@keras.saving.register_keras_serializable(package="tfseg")
def tversky_loss(y_true, y_pred, alpha=0.3, beta=0.7, smooth=1.0, per_image=False, num_classes=None,
                 from_logits=False, class_weights=None, include_background=True, pixel_weights=None):
    """Tversky loss ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` per image ``[B]``.

    ``alpha`` weighs false positives, ``beta`` false negatives (Salehi et al., 2017);
    ``alpha = beta = 0.5`` is a Dice loss. Other options as :func:`dice_loss`.
    """
    num_classes = prediction_classes(y_pred, num_classes)
    _check(num_classes, class_weights, smooth=smooth, alpha=alpha, beta=beta)
    value = _class_mean(
        1.0 - _tversky_index(y_true, y_pred, alpha, beta, smooth, per_image, num_classes, from_logits,
                             pixel_weights),
        num_classes, class_weights, include_background,
    )
    return _per_image(value, ops.convert_to_tensor(y_pred))


@keras.saving.register_keras_serializable(package="tfseg")
def focal_tversky_loss(y_true, y_pred, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0, per_image=False,
                       num_classes=None, from_logits=False, class_weights=None, include_background=True,
                       pixel_weights=None):
    """Focal Tversky loss ``(1 - TI) ** gamma`` (Abraham & Khan, 2019), per image ``[B]``.

    ``TI`` is the Tversky index of :func:`tversky_loss`; ``gamma < 1`` boosts the
    gradient of hard (low ``TI``) cases. ``1 - TI`` is floored at 1e-7 so the
    gradient stays finite at a perfect prediction.
    """
    num_classes = prediction_classes(y_pred, num_classes)
    _check(num_classes, class_weights, smooth=smooth, alpha=alpha, beta=beta, gamma=gamma)
    index = _tversky_index(y_true, y_pred, alpha, beta, smooth, per_image, num_classes, from_logits, pixel_weights)
    per_class = ops.power(ops.maximum(1.0 - index, EPSILON), gamma)
    value = _class_mean(per_class, num_classes, class_weights, include_background)
    return _per_image(value, ops.convert_to_tensor(y_pred))


def _tversky_index(y_true, y_pred, alpha, beta, smooth, per_image, num_classes, from_logits, pixel_weights=None):
    tp, fp, fn = soft_counts(y_true, y_pred, num_classes, from_logits, per_image, pixel_weights)
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def _pixel_cross_entropy(t, y_pred, num_classes, from_logits):
    """float32 per-pixel cross-entropy ``[B, H, W, K]`` (binary: K=1, categorical: terms per class)."""
    x = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if num_classes == 1:
        if from_logits:  # stable form of -[t log s(x) + (1-t) log(1-s(x))]
            return ops.relu(x) - x * t + ops.log1p(ops.exp(-ops.abs(x)))
        p = ops.clip(x, EPSILON, 1.0 - EPSILON)
        return -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))
    log_p = ops.log_softmax(x, axis=-1) if from_logits else ops.log(ops.clip(x, EPSILON, 1.0))
    return -t * log_p


@keras.saving.register_keras_serializable(package="tfseg")
def cross_entropy_loss(y_true, y_pred, num_classes=None, from_logits=False, class_weights=None, pixel_weights=None):
    """Pixel-mean cross-entropy per image ``[B]``: binary for 1 class, categorical otherwise.

    Args:
        class_weights: per-pixel weight by true class: ``[background, foreground]``
            for binary, ``C`` weights for categorical. The mean is over pixels (not
            normalised by the weights).
        pixel_weights: ``[B, H, W]`` or ``[B, H, W, 1]``: each pixel's term is multiplied
            by its weight (the mean stays over all pixels).
    """
    num_classes = prediction_classes(y_pred, num_classes)
    _check(num_classes, class_weights, binary_weights=True)
    rank = len(ops.shape(y_pred))
    t = _targets(y_true, rank, num_classes)
    pixel = ops.sum(_pixel_cross_entropy(t, y_pred, num_classes, from_logits), axis=-1)
    if class_weights is not None:
        pixel = pixel * _true_class_weight(t, num_classes, class_weights)
    weights = _pixel_weights(pixel_weights, rank)
    if weights is not None:
        pixel = pixel * weights[..., 0]
    return ops.mean(pixel, axis=tuple(range(1, rank - 1)))


def _true_class_weight(t, num_classes, class_weights):
    weights = ops.convert_to_tensor([float(w) for w in class_weights], dtype="float32")
    if num_classes == 1:
        return (1.0 - t[..., 0]) * weights[0] + t[..., 0] * weights[1]
    return ops.sum(t * weights, axis=-1)


@keras.saving.register_keras_serializable(package="tfseg")
def focal_loss(y_true, y_pred, gamma=2.0, alpha=0.25, num_classes=None, from_logits=False, pixel_weights=None):
    """Focal loss (Lin et al., 2017), pixel mean per image ``[B]``.

    Binary: ``-alpha_t (1 - p_t) ** gamma log p_t`` with ``p_t = p t + (1 - p)(1 - t)``
    and ``alpha_t = alpha t + (1 - alpha)(1 - t)``. Categorical:
    ``-sum_c alpha t_c (1 - p_c) ** gamma log p_c``. ``gamma = 0, alpha = 0.5`` is
    half the cross-entropy. ``pixel_weights`` multiply each pixel's term, as in :func:`cross_entropy_loss`.
    """
    num_classes = prediction_classes(y_pred, num_classes)
    _check(num_classes, gamma=gamma, alpha=alpha)
    rank = len(ops.shape(y_pred))
    t = _targets(y_true, rank, num_classes)
    p = ops.clip(_probabilities(y_pred, num_classes, from_logits), EPSILON, 1.0 - EPSILON)
    ce = _pixel_cross_entropy(t, y_pred, num_classes, from_logits)
    if num_classes == 1:
        p_t = p * t + (1.0 - p) * (1.0 - t)
        alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
        pixel = alpha_t * ops.power(1.0 - p_t, gamma) * ce
    else:
        pixel = alpha * ops.power(1.0 - p, gamma) * ce
    weights = _pixel_weights(pixel_weights, rank)
    if weights is not None:
        pixel = pixel * weights
    return ops.mean(ops.sum(pixel, axis=-1), axis=tuple(range(1, rank - 1)))


@keras.saving.register_keras_serializable(package="tfseg")
def bce_dice_loss(y_true, y_pred, bce_weight=1.0, dice_weight=1.0, smooth=1.0, per_image=False,
                  from_logits=False, pixel_weights=None, num_classes=None, class_weights=None,
                  include_background=True):
    """``bce_weight * cross-entropy + dice_weight * DiceLoss`` per image ``[B]``.

    Binary cross-entropy for one sigmoid channel; for ``C`` softmax channels both terms are
    categorical (:func:`cce_dice_loss`, what ``--loss bce_dice`` trains on class-id masks).
    ``class_weights`` weigh both terms (the cross-entropy per pixel, the Dice in the class mean;
    categorical only), ``include_background`` the Dice term.

    Example:
        >>> import numpy as np
        >>> y = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
        >>> round(float(bce_dice_loss(y, np.array([0.1, 0.9]).reshape(1, 1, 2, 1))[0]), 4)   # -ln(0.9) + 1 - 2.8/3
        0.172
    """
    num_classes = prediction_classes(y_pred, num_classes)
    _check(num_classes, class_weights, bce_weight=bce_weight, dice_weight=dice_weight)
    return (bce_weight * cross_entropy_loss(y_true, y_pred, num_classes, from_logits, class_weights, pixel_weights)
            + dice_weight * dice_loss(y_true, y_pred, smooth, per_image, num_classes, from_logits,
                                      class_weights, include_background, pixel_weights))


@keras.saving.register_keras_serializable(package="tfseg")
def cce_dice_loss(y_true, y_pred, num_classes=None, cce_weight=1.0, dice_weight=1.0, smooth=1.0,
                  per_image=False, from_logits=False, class_weights=None, include_background=True,
                  pixel_weights=None):
    """``cce_weight * CCE + dice_weight * categorical DiceLoss`` per image ``[B]``: :func:`bce_dice_loss`
    for 2 or more classes (``num_classes`` default: ``y_pred``'s last axis).

    ``class_weights`` weigh both terms (CCE per pixel, Dice in the class mean).
    """
    num_classes = _at_least_two(prediction_classes(y_pred, num_classes), "cce_dice_loss", "bce_dice_loss")
    return bce_dice_loss(y_true, y_pred, cce_weight, dice_weight, smooth, per_image, from_logits, pixel_weights,
                         num_classes, class_weights, include_background)


def _at_least_two(num_classes, owner, binary_form):
    """``num_classes`` if 2 or more, else a ConfigError naming ``owner`` and its binary form."""
    if num_classes < 2:
        raise ConfigError(f"{owner} num_classes={num_classes!r}: needs 2 or more classes; use {binary_form}")
    return num_classes


# --------------------------------------------------------------------------
# Loss classes: thin, serialisable wrappers of the functions above
# --------------------------------------------------------------------------
class _FunctionLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` calling ``_function(y_true, y_pred, **options)``."""

    _function = None
    _binary_class_weights = False  # True where one channel takes [background, foreground] weights
    _binary_form = None  # the class to use for one channel, where this one needs 2 or more classes

    def __init__(self, name, reduction, dtype, **options):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if options.get("class_weights") is not None:
            options["class_weights"] = [float(w) for w in options["class_weights"]]
        self.options = options
        self._validate()

    def _validate(self):
        # Fail at construction, not at the first training step.
        probe = {k: v for k, v in self.options.items()
                 if k in ("smooth", "alpha", "beta", "gamma", "bce_weight", "cce_weight", "dice_weight")}
        num_classes = self.options.get("num_classes")
        if num_classes is not None and self._binary_form:
            _at_least_two(num_classes, type(self).__name__, self._binary_form)
        _check(num_classes, self.options.get("class_weights"), self._binary_class_weights, **probe)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Keras applies sample_weight to the per-image losses; pixel weights must act inside the loss.
        if not is_pixel_weight(sample_weight, y_pred):
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        self._pixel_weights = sample_weight
        try:
            return super().__call__(y_true, y_pred)
        finally:
            self._pixel_weights = None

    def call(self, y_true, y_pred):
        options = dict(self.options)
        if "num_classes" in options:  # inferred from this call's predictions when not given
            options["num_classes"] = prediction_classes(y_pred, options["num_classes"])
            if self._binary_form:
                _at_least_two(options["num_classes"], type(self).__name__, self._binary_form)
        pixel_weights = getattr(self, "_pixel_weights", None)
        if pixel_weights is not None:
            options["pixel_weights"] = pixel_weights
        return type(self)._function(y_true, y_pred, **options)

    def get_config(self):
        return {**self.options, "name": self.name, "reduction": self.reduction, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tfseg")
class DiceLoss(_FunctionLoss):
    """Soft Dice loss ``1 - (2 TP + s) / (2 TP + FP + FN + s)``; see :func:`dice_loss`.

    Args:
        smooth: ``s`` (default 1.0): an empty truth with empty prediction gives 0.
        per_image: False (default): one Dice over the batch's pixels (smoother,
            as segmentation_models); True: the mean of per-image Dice losses.
        num_classes: 1 (sigmoid) or ``C`` (softmax, macro mean over classes); ``None`` (default):
            the predictions' last axis, at each call.
        from_logits: ``y_pred`` holds logits.
        class_weights: ``C`` weights of the class mean (categorical only).
        include_background: categorical only: False leaves class 0 out.
        name, reduction, dtype: as ``keras.losses.Loss``.

    Example:
        >>> import numpy as np
        >>> y = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
        >>> round(float(DiceLoss()(y, np.array([0.2, 0.8]).reshape(1, 1, 2, 1))), 4)   # 1 - 2.6/3
        0.1333
    """

    _function = staticmethod(dice_loss)

    def __init__(self, smooth=1.0, per_image=False, num_classes=None, from_logits=False, class_weights=None,
                 include_background=True, name="dice_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype, smooth=smooth, per_image=per_image, num_classes=num_classes,
                         from_logits=from_logits, class_weights=class_weights,
                         include_background=include_background)


@keras.saving.register_keras_serializable(package="tfseg")
class CategoricalDiceLoss(DiceLoss):
    """Soft Dice loss over ``num_classes >= 2`` softmax channels (macro mean); see :class:`DiceLoss`.

    Targets: class ids ``[B, H, W, 1]`` or one-hot ``[B, H, W, C]``. ``num_classes=None`` (default):
    the predictions' last axis, at each call (2 or more).
    """

    _binary_form = "DiceLoss"

    def __init__(self, num_classes=None, smooth=1.0, per_image=False, from_logits=False, class_weights=None,
                 include_background=True, name="categorical_dice_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(smooth, per_image, num_classes, from_logits, class_weights, include_background,
                         name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="tfseg")
class TverskyLoss(_FunctionLoss):
    """Tversky loss ``1 - (TP + s) / (TP + alpha FP + beta FN + s)``; see :func:`tversky_loss`.

    Args:
        alpha: weight of false positives (default 0.3).
        beta: weight of false negatives (default 0.7: missing lesion pixels costs more).
        smooth, per_image, num_classes, from_logits, class_weights, include_background,
        name, reduction, dtype: as :class:`DiceLoss`.
    """

    _function = staticmethod(tversky_loss)

    def __init__(self, alpha=0.3, beta=0.7, smooth=1.0, per_image=False, num_classes=None, from_logits=False,
                 class_weights=None, include_background=True, name="tversky_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype, alpha=alpha, beta=beta, smooth=smooth, per_image=per_image,
                         num_classes=num_classes, from_logits=from_logits, class_weights=class_weights,
                         include_background=include_background)


@keras.saving.register_keras_serializable(package="tfseg")
class FocalTverskyLoss(_FunctionLoss):
    """Focal Tversky loss ``(1 - TI) ** gamma``; see :func:`focal_tversky_loss`.

    Args:
        alpha, beta: as :class:`TverskyLoss` (0.3, 0.7).
        gamma: exponent (default 0.75, i.e. the paper's 1/gamma with gamma = 4/3).
        smooth, per_image, num_classes, from_logits, class_weights, include_background,
        name, reduction, dtype: as :class:`DiceLoss`.
    """

    _function = staticmethod(focal_tversky_loss)

    def __init__(self, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0, per_image=False, num_classes=None,
                 from_logits=False, class_weights=None, include_background=True, name="focal_tversky_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype, alpha=alpha, beta=beta, gamma=gamma, smooth=smooth,
                         per_image=per_image, num_classes=num_classes, from_logits=from_logits,
                         class_weights=class_weights, include_background=include_background)


@keras.saving.register_keras_serializable(package="tfseg")
class CrossEntropyLoss(_FunctionLoss):
    """Pixel-mean cross-entropy: binary for ``num_classes=1``, categorical otherwise.

    Args:
        num_classes: 1 (sigmoid, {0, 1} mask) or ``C`` (softmax, class ids or one-hot); ``None``
            (default): the predictions' last axis, at each call.
        from_logits: ``y_pred`` holds logits (computed stably, without clipping).
        class_weights: per-pixel weight of the true class: ``[background, foreground]``
            for binary, ``C`` values for categorical.
        name, reduction, dtype: as ``keras.losses.Loss``.
    """

    _function = staticmethod(cross_entropy_loss)
    _binary_class_weights = True

    def __init__(self, num_classes=None, from_logits=False, class_weights=None, name="cross_entropy_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype, num_classes=num_classes, from_logits=from_logits,
                         class_weights=class_weights)


@keras.saving.register_keras_serializable(package="tfseg")
class FocalLoss(_FunctionLoss):
    """Focal loss ``-alpha_t (1 - p_t) ** gamma log p_t``; see :func:`focal_loss`.

    Args:
        gamma: focusing exponent (default 2).
        alpha: weight of the foreground (binary; background gets ``1 - alpha``), or of
            every class (categorical). Default 0.25 as in the paper.
        num_classes, from_logits: as :class:`CrossEntropyLoss`.
        name, reduction, dtype: as ``keras.losses.Loss``.
    """

    _function = staticmethod(focal_loss)

    def __init__(self, gamma=2.0, alpha=0.25, num_classes=None, from_logits=False, name="focal_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype, gamma=gamma, alpha=alpha, num_classes=num_classes,
                         from_logits=from_logits)


@keras.saving.register_keras_serializable(package="tfseg")
class BCEDiceLoss(_FunctionLoss):
    """``bce_weight * BCE + dice_weight * soft Dice loss``: binary for one sigmoid channel, categorical
    (the same as :class:`CCEDiceLoss`) for ``C`` softmax channels; see :func:`bce_dice_loss`.

    Cross-entropy gives smooth per-pixel gradients early on; the Dice term counters
    class imbalance (a small lesion on a large background).

    Args:
        bce_weight, dice_weight: weights of the two terms (default 1, 1).
        smooth, per_image: of the Dice term, as :class:`DiceLoss`.
        from_logits: ``y_pred`` holds logits.
        name, reduction, dtype: as ``keras.losses.Loss``.
        num_classes, class_weights, include_background: as :class:`DiceLoss` (``num_classes=None``:
            the predictions' last axis, at each call).

    Example:
        >>> import numpy as np
        >>> y = np.array([0.0, 1.0]).reshape(1, 1, 2, 1)
        >>> round(float(BCEDiceLoss()(y, np.array([0.1, 0.9]).reshape(1, 1, 2, 1))), 4)
        0.172
    """

    _function = staticmethod(bce_dice_loss)

    def __init__(self, bce_weight=1.0, dice_weight=1.0, smooth=1.0, per_image=False, from_logits=False,
                 name="bce_dice_loss", reduction="sum_over_batch_size", dtype=None, num_classes=None,
                 class_weights=None, include_background=True):
        super().__init__(name, reduction, dtype, bce_weight=bce_weight, dice_weight=dice_weight, smooth=smooth,
                         per_image=per_image, from_logits=from_logits, num_classes=num_classes,
                         class_weights=class_weights, include_background=include_background)


@keras.saving.register_keras_serializable(package="tfseg")
class CCEDiceLoss(_FunctionLoss):
    """``cce_weight * categorical cross-entropy + dice_weight * categorical Dice loss``.

    Args:
        num_classes: number of softmax channels (2 or more); ``None`` (default): the predictions'
            last axis, at each call.
        cce_weight, dice_weight: weights of the two terms (default 1, 1).
        smooth, per_image, from_logits, class_weights, include_background: as :class:`DiceLoss`.
        name, reduction, dtype: as ``keras.losses.Loss``.
    """

    _function = staticmethod(cce_dice_loss)
    _binary_form = "BCEDiceLoss"

    def __init__(self, num_classes=None, cce_weight=1.0, dice_weight=1.0, smooth=1.0, per_image=False,
                 from_logits=False, class_weights=None, include_background=True, name="cce_dice_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name, reduction, dtype, num_classes=num_classes, cce_weight=cce_weight,
                         dice_weight=dice_weight, smooth=smooth, per_image=per_image, from_logits=from_logits,
                         class_weights=class_weights, include_background=include_background)


# --------------------------------------------------------------------------
# By name (the CLI's --loss, and strings in model.compile)
# --------------------------------------------------------------------------
#: ``--loss`` name -> (class for one sigmoid channel, class for ``C`` softmax channels); None: not for that case.
_BY_NAME = {
    "bce_dice": (BCEDiceLoss, CCEDiceLoss),
    "dice": (DiceLoss, CategoricalDiceLoss),
    "bce": (CrossEntropyLoss, CrossEntropyLoss),
    "focal": (FocalLoss, FocalLoss),
    "tversky": (TverskyLoss, TverskyLoss),
    "focal_tversky": (FocalTverskyLoss, FocalTverskyLoss),
    "cce": (None, CrossEntropyLoss),
    "cce_dice": (None, CCEDiceLoss),
}
LOSS_NAMES = LOSSES  # the names --loss accepts (defined once, in tfseg.config)


@keras.saving.register_keras_serializable(package="tfseg")
class IgnoreClassLoss(keras.losses.Loss):
    """``loss`` with the pixels whose target is ``ignore_class`` left out (VOC's 255 object borders).

    Those pixels get weight 0 (a per-pixel ``sample_weight``, see the module docstring: they leave the
    Dice-type counts; a cross-entropy still divides by all pixels) and their target is
    replaced by class 0 so that one-hot encoding stays in range. A ``sample_weight`` given
    to the call (per image ``[B]`` or per pixel) is multiplied in.

    Args:
        loss: a ``keras.losses.Loss`` taking class-id targets ``[B, H, W(, 1)]``.
        ignore_class: the target value to leave out.
        name, reduction, dtype: as ``keras.losses.Loss`` (the wrapped loss reduces).

    Example:
        >>> import numpy as np
        >>> loss = IgnoreClassLoss(get_loss("dice", num_classes=2), ignore_class=255)
        >>> y = np.array([[[[1], [255]]]])                                # one pixel ignored
        >>> p = np.array([[[[0.0, 1.0], [1.0, 0.0]]]], np.float32)       # right where it counts
        >>> round(float(loss(y, p)), 4)
        0.0
    """

    def __init__(self, loss, ignore_class=255, name=None, reduction="sum_over_batch_size", dtype=None):
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        self.loss = loss
        self.ignore_class = int(ignore_class)
        super().__init__(name=name or f"{getattr(loss, 'name', 'loss')}_ignore_{self.ignore_class}",
                         reduction=reduction, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) - 1:
            y_true = ops.expand_dims(y_true, -1)
        ignored = ops.equal(y_true, ops.cast(self.ignore_class, y_true.dtype))
        weights = 1.0 - ops.cast(ignored, "float32")  # [B, H, W, 1]
        if sample_weight is not None:
            sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            if is_pixel_weight(sample_weight, y_pred):
                weights = weights * ops.reshape(sample_weight, ops.shape(weights))
            else:
                weights = weights * ops.reshape(sample_weight, (-1, 1, 1, 1))
        y_true = ops.where(ignored, ops.zeros_like(y_true), y_true)
        return self.loss(y_true, y_pred, sample_weight=weights)

    def call(self, y_true, y_pred):
        return self.__call__(y_true, y_pred)

    def get_config(self):
        return {"loss": keras.saving.serialize_keras_object(self.loss), "ignore_class": self.ignore_class,
                "name": self.name, "reduction": self.reduction, "dtype": self.dtype}


def get_loss(name: str, num_classes: int = 1, ignore_class=None, class_weights=None) -> keras.losses.Loss:
    """The loss called ``name`` with its defaults, for one sigmoid or ``num_classes`` softmax channels.

    For ``num_classes > 1`` the binary names map to their categorical forms
    (``bce`` -> categorical cross-entropy, ``bce_dice`` -> :class:`CCEDiceLoss`, ``dice``
    -> :class:`CategoricalDiceLoss`); ``cce``/``cce_dice`` need ``num_classes >= 2``.

    Raises:
        ConfigError: unknown name (the message lists the choices), or ``cce*`` with one class.

    ``ignore_class``: a target value whose pixels the loss leaves out (:class:`IgnoreClassLoss`).
    ``class_weights``: the loss's own ``class_weights`` (``C`` weights; one class: ``[background,
    foreground]``, cross-entropy only); a loss that takes none raises :class:`ConfigError`.

    Example:
        >>> type(get_loss("bce_dice")).__name__, type(get_loss("dice", num_classes=3)).__name__
        ('BCEDiceLoss', 'CategoricalDiceLoss')
    """
    key = str(name).lower()
    _check(num_classes)
    if key not in LOSS_NAMES:
        raise ConfigError(f"loss {name!r}: unknown loss; choose one of {', '.join(LOSS_NAMES)}")
    binary, categorical = _BY_NAME[key]
    cls = binary if num_classes == 1 else categorical
    if cls is None:
        raise ConfigError(f"loss {name!r} needs --num-classes 2 or more; for one class use bce or bce_dice")
    options = {} if class_weights is None else {"class_weights": class_weights}
    if options and "class_weights" not in inspect.signature(cls).parameters:
        raise ConfigError(f"class_weights {list(class_weights)!r}: loss {name!r} takes no class weights")
    loss = cls(num_classes=int(num_classes), **options)
    return loss if ignore_class is None else IgnoreClassLoss(loss, ignore_class)


def _compile_names():
    """Every string ``model.compile(loss=...)`` accepts after ``import tfseg``: ``{name: loss class}``.

    The ``--loss`` names (the class that infers the class count: ``"bce_dice"`` is
    :class:`BCEDiceLoss`, categorical on a softmax output), each class's own name and its default
    ``name`` (``"dice_loss"``, ``"bce_dice_loss"``, ...).
    """
    names = {name: binary or categorical for name, (binary, categorical) in _BY_NAME.items()}
    for cls in {c for pair in _BY_NAME.values() for c in pair if c is not None}:
        names[cls.__name__] = cls
        names[inspect.signature(cls).parameters["name"].default] = cls
    return dict(sorted(names.items()))


#: ``model.compile`` strings of the losses (registered with Keras when this module is imported).
COMPILE_NAMES = _compile_names()
keras_compat.register_compile_names("losses", COMPILE_NAMES)
