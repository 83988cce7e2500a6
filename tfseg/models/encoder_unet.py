"""U-Net decoder on a pretrained encoder (keras.applications backbone).

The encoder (:func:`tfseg.models.encoders.build_encoder`) gives feature maps at
strides 2, 4, 8, 16 and 32. The decoder starts from the stride-32 map and, five
times, upsamples by 2, concatenates the encoder feature of the same size (none
at full resolution) and applies two 3x3 conv-BN-ReLU; a 1x1 convolution and a
float32 sigmoid (1 class) or softmax gives ``probabilities``. This is the
"U-Net with a classification backbone" layout of segmentation_models.

``tfseg.models.build_model("unet", encoder=...)`` delegates here; this module
can also be used on its own. Keras only, never TensorFlow.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from tfseg.errors import ConfigError
from tfseg.config import UPSAMPLINGS, default
from tfseg.models.blocks import check_channels, check_common, conv_bn_relu, output_head, upsampled
from tfseg.models.encoders import STRIDES, build_encoder, check_image_size, get_encoder_spec



def decoder_block(x, skip, filters: int, upsampling: str, batch_norm: bool, dropout: float, name: str):
    """Upsample ``x`` by 2, concatenate ``skip`` (if any), then two 3x3 conv-BN-ReLU."""
    x = upsampled(x, filters, upsampling, name=f"{name}_up")
    if skip is not None:
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"{name}_1")
    return conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"{name}_2")


def check_common_options(num_classes: int, dropout: float, batch_norm=True) -> None:
    """ConfigError for a class count, dropout rate or ``batch_norm`` that cannot work (:func:`check_common`)."""
    check_common(num_classes, 1, 1, dropout, batch_norm)


def build_encoder_unet(
    image_size: int = 256,
    num_classes: int = 1,
    encoder: str = "mobilenetv2",
    encoder_weights: Optional[str] = default("encoder_weights"),
    decoder_filters: Optional[Sequence[int]] = None,
    batch_norm=default("batch_norm"),
    dropout: float = default("dropout"),
    upsampling: str = default("upsampling"),
    base_filters: int = default("base_filters"),
    channels: int = 3,
    standardized_inputs: bool = False,
) -> keras.Model:
    """A U-Net whose encoder is a keras.applications backbone.

    The options :class:`tfseg.config.TrainConfig` also has take its defaults from there (``encoder``
    aside: it selects this builder, where TrainConfig's ``None`` means the plain U-Net).

    Args:
        image_size: int or ``(height, width)``; multiples of 32, at least 32.
        num_classes: 1 -> sigmoid output ``[B, H, W, 1]``; C > 1 -> softmax ``[B, H, W, C]``.
        encoder: a name of :data:`tfseg.models.encoders.ENCODERS`.
        encoder_weights: ``"imagenet"`` (downloaded once to ``$KERAS_HOME/models``),
            ``None`` (random init, the default) or a path to a weights file.
        decoder_filters: filters of the five decoder blocks, from stride 16 to full size;
            default ``base_filters * (16, 8, 4, 2, 1)`` = (128, 64, 32, 16, 8).
        batch_norm: batch normalization in the decoder: ``True`` (Keras' layer), ``"bfloat16"``
            (:class:`tfseg.layers.BatchNorm`) or ``False``.
        dropout: dropout rate after each decoder concatenation (0 = none).
        upsampling: ``"transpose"`` (learned 2x2) or ``"bilinear"``.
        base_filters: sets ``decoder_filters`` when that is not given (the plain
            U-Net's option of the same name, so ``tfseg train --base-filters`` works).
        channels: input bands; pretrained RGB weights are adapted to other counts
            (:mod:`tfseg.models.encoders`).
        standardized_inputs: the input is z-scored per band (``--normalization per_band``), not in
            [0, 1] (:func:`tfseg.models.encoders.build_encoder`).

    Returns:
        A functional ``keras.Model`` named ``unet_<encoder>``: input ``images`` float32
        ``[B, H, W, 3]`` in ``[0, 1]`` -> output ``probabilities`` float32.

    Example:

    >>> model = build_encoder_unet(64, encoder="mobilenetv2", encoder_weights=None,
    ...                            decoder_filters=(32, 16, 16, 8, 8))
    >>> tuple(model.output.shape)
    (None, 64, 64, 1)
    """
    get_encoder_spec(encoder)
    height, width = check_image_size(encoder, image_size)
    check_common_options(num_classes, dropout, batch_norm)
    if decoder_filters is None:
        decoder_filters = [int(base_filters) * 2**i for i in reversed(range(len(STRIDES)))]
    decoder_filters = tuple(int(f) for f in decoder_filters)
    if len(decoder_filters) != len(STRIDES) or min(decoder_filters) < 1:
        raise ConfigError(f"decoder_filters {decoder_filters!r}: need {len(STRIDES)} positive integers")
    if upsampling not in UPSAMPLINGS:
        raise ConfigError(f"upsampling {upsampling!r}: choose one of {', '.join(UPSAMPLINGS)}")

    images = keras.Input((height, width, check_channels(channels)), name="images", dtype="float32")
    features = build_encoder(encoder, images, weights=encoder_weights, channels=channels,
                             standardized_inputs=standardized_inputs)
    x = features[STRIDES[-1]]
    skip_strides = list(reversed(STRIDES[:-1])) + [None]  # 16, 8, 4, 2, then full size
    for index, (filters, stride) in enumerate(zip(decoder_filters, skip_strides), start=1):
        skip = features[stride] if stride else None
        x = decoder_block(x, skip, filters, upsampling, batch_norm, float(dropout), name=f"decoder{index}")
    outputs = output_head(x, int(num_classes))
    return keras.Model(images, outputs, name=f"unet_{str(encoder).lower()}")
