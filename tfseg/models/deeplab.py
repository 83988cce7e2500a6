"""DeepLabV3+ (Chen et al., 2018, "Encoder-Decoder with Atrous Separable Convolution").

Layout, for an input of size S (a multiple of 16)::

    images [0,1] -> encoder (keras.applications backbone, stopped at stride 16)
      stride-16 features -> ASPP: 1x1 conv | 3x3 atrous r=6 | r=12 | r=18 | image pooling
                         -> concat -> 1x1 conv (aspp_filters) -> dropout -> bilinear x4
      stride-4 features  -> 1x1 conv to 48 channels ("low-level" projection)
      concat -> two 3x3 conv (decoder_filters) -> 1x1 conv to classes -> bilinear x4
      -> sigmoid/softmax in float32 = probabilities [B, S, S, classes]

Every convolution is followed by BatchNormalization and ReLU. Image pooling is a
global average (``keepdims``) -> 1x1 conv -> bilinear resize back to the static
stride-16 size, so any input size that is a multiple of 16 works.

Difference from the paper: the paper keeps output stride 16 by making the last
ResNet/Xception block atrous; here the backbone is simply cut after stride 16
(as the Keras DeepLabV3+ example does), which drops ResNet50's last stage
(15M parameters) and needs no change to keras.applications. Convolutions are
plain, not depthwise-separable.

Keras only, never TensorFlow.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from tfseg.config import default
from tfseg.errors import ConfigError
from tfseg.models.blocks import check_channels, conv_bn_relu, output_head
from tfseg.models.encoder_unet import check_common_options
from tfseg.models.encoders import build_encoder, check_image_size, get_encoder_spec
from tfseg.models.registry import register_model


def image_pooling(x, filters: int, batch_norm: bool = True):
    """ASPP image-level branch: global average -> 1x1 conv -> resize to ``x``'s static size."""
    height, width = x.shape[1], x.shape[2]
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = conv_bn_relu(pooled, filters, kernel_size=1, batch_norm=batch_norm, name="aspp_pool_proj")
    return keras.layers.UpSampling2D((height, width), interpolation="bilinear", name="aspp_pool_up")(pooled)


def aspp(x, filters: int = 256, atrous_rates: Sequence[int] = (6, 12, 18), batch_norm: bool = True, dropout: float = 0.0):
    """Atrous Spatial Pyramid Pooling: parallel 1x1, atrous 3x3 and image pooling, fused by a 1x1 conv."""
    branches = [conv_bn_relu(x, filters, kernel_size=1, batch_norm=batch_norm, name="aspp_1x1")]
    for rate in atrous_rates:
        branches.append(conv_bn_relu(x, filters, dilation_rate=int(rate), batch_norm=batch_norm, name=f"aspp_rate{rate}"))
    branches.append(image_pooling(x, filters, batch_norm))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(x, filters, kernel_size=1, batch_norm=batch_norm, name="aspp_proj")
    if dropout:
        x = keras.layers.Dropout(dropout, name="aspp_dropout")(x)
    return x


@register_model("deeplabv3plus")
def build_deeplabv3plus(
    image_size: int = 256,
    num_classes: int = 1,
    encoder: Optional[str] = default("encoder"),
    encoder_weights: Optional[str] = default("encoder_weights"),
    aspp_filters: int = 256,
    atrous_rates: Sequence[int] = (6, 12, 18),
    low_level_filters: int = 48,
    decoder_filters: int = 256,
    batch_norm=default("batch_norm"),
    dropout: float = default("dropout"),
    channels: int = 3,
    standardized_inputs: bool = False,
) -> keras.Model:
    """DeepLabV3+ on a keras.applications encoder.

    The options :class:`tfseg.config.TrainConfig` also has take their defaults from there.

    Args:
        image_size: int or ``(height, width)``; multiples of 16, at least 32.
        num_classes: 1 -> sigmoid output ``[B, H, W, 1]``; C > 1 -> softmax ``[B, H, W, C]``.
        encoder: a name of :data:`tfseg.models.encoders.ENCODERS`; ``None`` = ``resnet50``.
        encoder_weights: ``"imagenet"`` (downloaded once to ``$KERAS_HOME/models``),
            ``None`` (random init, the default) or a path to a weights file.
        aspp_filters: channels of every ASPP branch and of its projection (paper: 256).
        atrous_rates: dilation rates of the three 3x3 ASPP branches (paper, output stride 16: 6, 12, 18).
        low_level_filters: channels of the stride-4 projection (paper: 48).
        decoder_filters: channels of the two 3x3 decoder convolutions (paper: 256).
        batch_norm: batch normalization after every ASPP/decoder convolution: ``True`` (Keras' layer),
            ``"bfloat16"`` (:class:`tfseg.layers.BatchNorm`) or ``False``.
        dropout: dropout after the ASPP projection (default 0, as ``tfseg train``; the reference
            implementation uses 0.1).
        channels: input bands; pretrained RGB weights are adapted to other counts
            (:mod:`tfseg.models.encoders`).
        standardized_inputs: the input is z-scored per band (``--normalization per_band``), not in
            [0, 1] (:func:`tfseg.models.encoders.build_encoder`).

    Returns:
        A functional ``keras.Model`` named ``deeplabv3plus_<encoder>``: input ``images``
        float32 ``[B, H, W, 3]`` in ``[0, 1]`` -> output ``probabilities`` float32.

    Example:

    >>> model = build_deeplabv3plus(64, num_classes=3, encoder="mobilenetv2",
    ...                             encoder_weights=None, aspp_filters=16,
    ...                             low_level_filters=8, decoder_filters=16)
    >>> tuple(model.output.shape)
    (None, 64, 64, 3)
    """
    encoder = (encoder or "resnet50").lower()
    get_encoder_spec(encoder)
    height, width = check_image_size(encoder, image_size, multiple=16)
    check_common_options(num_classes, dropout, batch_norm)
    rates = tuple(int(r) for r in atrous_rates)
    if not rates or min(rates) < 1:
        raise ConfigError(f"atrous_rates {atrous_rates!r}: need positive integers")
    for label, value in (("aspp_filters", aspp_filters), ("low_level_filters", low_level_filters),
                         ("decoder_filters", decoder_filters)):
        if int(value) < 1:
            raise ConfigError(f"{label} {value!r}: must be a positive integer")

    images = keras.Input((height, width, check_channels(channels)), name="images", dtype="float32")
    features = build_encoder(encoder, images, weights=encoder_weights, strides=(4, 16), channels=channels,
                             standardized_inputs=standardized_inputs)
    x = aspp(features[16], int(aspp_filters), rates, batch_norm, float(dropout))
    x = keras.layers.UpSampling2D(4, interpolation="bilinear", name="aspp_up")(x)
    low = conv_bn_relu(features[4], int(low_level_filters), kernel_size=1, batch_norm=batch_norm, name="low_level_proj")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low])
    x = conv_bn_relu(x, int(decoder_filters), batch_norm=batch_norm, name="decoder_1")
    x = conv_bn_relu(x, int(decoder_filters), batch_norm=batch_norm, name="decoder_2")
    outputs = output_head(x, int(num_classes), upsample=4)
    return keras.Model(images, outputs, name=f"deeplabv3plus_{encoder}")
