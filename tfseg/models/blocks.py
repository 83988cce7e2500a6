"""Building blocks shared by the architectures, plus the checks on their arguments.

Each block is a function ``tensor -> tensor`` over the functional API (keras.layers only,
never TensorFlow), named after what it returns. Layer names are prefixed with ``name``
so that a model summary reads as the architecture (``enc1_conv1``, ``dec2_up``, ...).
"""

from __future__ import annotations

import inspect
import numbers
from typing import Iterable, Optional, Tuple, Union

import keras
from keras import layers

from tfseg.errors import ConfigError
from tfseg.masks import check_num_classes
from tfseg.layers import BatchNorm, SizeCheck

from tfseg.config import BATCH_NORM_LAYERS, image_hw  # noqa: E402

#: ``batch_norm`` option -> layer class. ``True`` is Keras' own layer, so that a model.keras loads with
#: plain Keras; ``"bfloat16"`` is :class:`tfseg.layers.BatchNorm` (see BENCHMARKS.md for where it pays).
BATCH_NORM_CLASSES = {True: layers.BatchNormalization, "keras": layers.BatchNormalization, "bfloat16": BatchNorm}
BATCH_NORM_CHOICES = (True, False, *BATCH_NORM_LAYERS)


def batch_normalization(batch_norm, name):
    """The batch normalization layer that option ``batch_norm`` (``True``, ``"keras"`` or ``"bfloat16"``) names."""
    return BATCH_NORM_CLASSES[batch_norm](name=name)


def conv_bn_relu(x, filters, *, kernel_size=3, dilation_rate=1, batch_norm=True, name="conv", suffix=""):
    """Conv (no bias when batch normalization follows) -> (batch normalization) -> ReLU: the one convolution
    unit of every model.

    Layers are named ``{name}_conv{suffix}``, ``{name}_bn{suffix}``, ``{name}_relu{suffix}``.
    ``batch_norm``: ``True``/``"keras"`` (``keras.layers.BatchNormalization``), ``"bfloat16"``
    (:class:`tfseg.layers.BatchNorm`) or ``False`` (none).

    Returns:
        ``[B, H, W, filters]`` (``padding="same"``).
    """
    x = layers.Conv2D(
        filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=not batch_norm,
        kernel_initializer="he_normal", name=f"{name}_conv{suffix}",
    )(x)
    if batch_norm:
        x = batch_normalization(batch_norm, name=f"{name}_bn{suffix}")(x)
    return layers.Activation("relu", name=f"{name}_relu{suffix}")(x)


def conv_block(x, filters, *, convs=2, batch_norm=True, dropout=0.0, name="block"):
    """``convs`` x :func:`conv_bn_relu` (3x3), then SpatialDropout2D if ``dropout``.

    Args:
        x: feature map ``[B, H, W, C]``.
        filters: output channels of every convolution.
        convs: number of convolutions.
        batch_norm: batch normalization after each convolution (the conv then has no bias):
            ``True`` (Keras' layer), ``"bfloat16"`` (:class:`tfseg.layers.BatchNorm`) or ``False``.
        dropout: rate of SpatialDropout2D (drops whole channels) after the block; 0 = none.
        name: prefix of the layer names.

    Returns:
        ``[B, H, W, filters]``.
    """
    for i in range(1, convs + 1):
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=name, suffix=str(i))
    if dropout:
        x = layers.SpatialDropout2D(dropout, name=f"{name}_dropout")(x)
    return x


def encoder_block(x, filters, *, batch_norm=True, dropout=0.0, name="enc"):
    """A U-Net encoder stage.

    Returns:
        ``(features [B, H, W, filters], pooled [B, H/2, W/2, filters])``: ``features`` is
        the skip connection, ``pooled`` feeds the next stage.
    """
    features = conv_block(x, filters, batch_norm=batch_norm, dropout=dropout, name=name)
    pooled = layers.MaxPooling2D(2, name=f"{name}_pool")(features)
    return features, pooled


def upsampled(x, filters, upsampling="transpose", name="up"):
    """``x`` at twice the height and width.

    ``"transpose"``: a learned 2x2 stride-2 Conv2DTranspose to ``filters`` channels.
    ``"bilinear"``: fixed bilinear interpolation (channels unchanged, no weights).
    """
    if upsampling == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=name)(x)
    return layers.UpSampling2D(2, interpolation="bilinear", name=name)(x)


def decoder_block(x, skip, filters, *, upsampling="transpose", batch_norm=True, dropout=0.0, name="dec"):
    """A U-Net decoder stage: upsample ``x``, concatenate the encoder's ``skip``, conv_block.

    Returns:
        ``[B, 2H, 2W, filters]`` where ``x`` is ``[B, H, W, C]`` and ``skip`` ``[B, 2H, 2W, C']``.
    """
    x = upsampled(x, filters, upsampling, name=f"{name}_up")
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return conv_block(x, filters, batch_norm=batch_norm, dropout=dropout, name=name)


def output_head(x, num_classes=1, name="probabilities", upsample=1):
    """1x1 convolution to ``num_classes`` logits, then the probabilities in float32.

    Sigmoid for one class (``[B, H, W, 1]``, P(foreground)), softmax over the last axis
    otherwise (``[B, H, W, num_classes]``, sums to 1). The activation layer has
    ``dtype="float32"`` so the output is float32 under a ``mixed_float16`` or
    ``mixed_bfloat16`` policy too (keeps losses and thresholds out of half precision).
    ``upsample > 1`` resizes the logits bilinearly by that factor first (DeepLabV3+'s
    stride-4 decoder).
    """
    if upsample == 1:
        logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    else:
        logits = layers.Conv2D(num_classes, 1, name=f"logits_stride{upsample}")(x)
        logits = layers.UpSampling2D(upsample, interpolation="bilinear", name="logits_up")(logits)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name=name)(logits)


# --- argument checks (one ConfigError line each) ---------------------------------------

def image_shape(image_size: Union[None, int, Iterable[int]], multiple: int, model: str
                ) -> Tuple[Optional[int], Optional[int]]:
    """``(height, width)`` from an int or a pair, each a positive multiple of ``multiple``; ``(None, None)``
    for ``image_size=None`` (a model of any input size, checked when called: :func:`checked_size_input`).

    Raises:
        ConfigError: a size that is not a positive integer or not divisible by ``multiple``.
    """
    if image_size is None:
        return None, None
    sizes = image_hw(image_size)
    for size in sizes:
        if size % multiple:
            lower = size // multiple * multiple
            nearest = " or ".join(str(n) for n in (lower, lower + multiple) if n > 0)
            raise ConfigError(
                f"image_size {size}: {model} needs a multiple of {multiple} (2**depth); try {nearest}"
            )
    return sizes


def model_input(height, width, multiple: int, channels: int = 3):
    """``(keras.Input named "images" with ``channels`` bands, the tensor the model continues from)``.

    A fixed size was checked when the model was built (:func:`image_shape`); a model of any size
    (``height``/``width`` ``None``) checks each call's size with :class:`tfseg.layers.SizeCheck`.
    """
    inputs = keras.Input(shape=(height, width, check_channels(channels)), name="images")
    if height is not None and width is not None:
        return inputs, inputs
    return inputs, SizeCheck(multiple, name=f"size_multiple_of_{multiple}")(inputs)


def check_channels(channels) -> int:
    """``channels`` (the input's bands) as a positive int, else :class:`ConfigError` naming it."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"channels {channels!r}: must be a positive integer (the images' bands)")
    return channels


def check_choice(option: str, value, choices) -> None:
    """ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{option} {value!r}: choose one of {', '.join(map(str, choices))}")


def check_common(num_classes, depth, base_filters, dropout, batch_norm=True) -> None:
    """ConfigError for a non-positive count, a dropout rate outside [0, 1) or an unknown ``batch_norm``."""
    check_choice("batch_norm", batch_norm, BATCH_NORM_CHOICES)
    check_num_classes(num_classes)  # tfseg.masks: the one bound and message
    for flag, value in (("depth", depth), ("base_filters", base_filters)):
        if not _is_count(value):
            raise ConfigError(f"{flag} {value!r}: must be a positive integer")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout {dropout!r}: must be in [0, 1)")


def check_options(model: str, options, known) -> None:
    """ConfigError naming the first option of ``options`` that is not in ``known``."""
    for option in options:
        if option not in known:
            raise ConfigError(
                f"{model}: unknown option {option!r}; known options: {', '.join(sorted(known))}"
            )


def option_names(builder):
    """Keyword options of a model builder besides ``image_size`` and ``num_classes``."""
    return [name for name in inspect.signature(builder).parameters if name not in ("image_size", "num_classes")]


def _is_count(value) -> bool:
    """True for a positive integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
