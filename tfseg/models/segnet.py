"""SegNet (Badrinarayanan, Kendall & Cipolla, 2017) and the lesson's simplified SegNet.

``variant="indices"`` (default) is the paper's network: a VGG-style encoder whose max
poolings remember the position of each maximum, and a decoder that *unpools* with those
indices (each value back at its max position, zeros elsewhere) before its convolutions.
No encoder feature maps are carried to the decoder, only the small integer indices.

``variant="simple"`` is the lesson's network: one conv per
stage, plain max pooling, bilinear upsampling in the decoder, no indices. Its defects are
fixed: the model outputs probabilities (not logits), and the encoder runs once.

keras.layers and (for the indices) tfseg.layers only; never imports TensorFlow.
"""

from __future__ import annotations

import keras
from keras import layers

from tfseg.config import default
from tfseg.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from tfseg.models.blocks import (
    batch_normalization, check_choice, check_common, conv_block, image_shape, model_input, output_head,
)
from tfseg.models.registry import register_model

VARIANTS = ("indices", "simple")


@register_model("segnet")
def build_segnet(
    image_size=256,
    num_classes=1,
    variant=default("variant"),
    depth=default("depth"),
    base_filters=default("base_filters"),
    batch_norm=default("batch_norm"),
    dropout=default("dropout"),
    channels=3,
):
    """A SegNet returning per-pixel probabilities.

    Every option's default is :class:`tfseg.config.TrainConfig`'s (what ``tfseg train --model segnet`` builds).

    Args:
        image_size: int or ``(height, width)``, multiples of ``2**depth``; ``None``: any such size,
            checked when the model is called.
        num_classes: 1 = binary (sigmoid, ``[B, H, W, 1]``); more = softmax over
            ``[B, H, W, num_classes]``.
        channels: bands of the input images (3: RGB).
        variant: ``"indices"`` (paper: pooling indices + unpooling; also ``None``) or ``"simple"``
            (the lesson's: bilinear upsampling, no indices). Only ``"simple"`` is built from Keras
            layers alone (its ``.keras`` file loads with plain Keras); the indices need
            :mod:`tfseg.layers`.
        depth: number of poolings (the paper's VGG16 SegNet has 5).
        base_filters: channels of the first stage (the paper: 64).
        batch_norm: batch normalization after every convolution: ``True`` (``keras.layers.BatchNormalization``),
            ``"bfloat16"`` (:class:`tfseg.layers.BatchNorm`) or ``False``.
        dropout: SpatialDropout2D rate; ``"indices"``: after the two deepest encoder and
            decoder stages (Bayesian SegNet's "central" units); ``"simple"``: after the
            bottleneck. 0 = none.

    Returns:
        A functional ``keras.Model`` named ``segnet``: input ``images`` float32
        ``[B, H, W, 3]`` in [0, 1], output ``probabilities`` float32.

    Raises:
        ConfigError: impossible value, or an image size that is not a multiple of ``2**depth``.

    Example:

    >>> model = build_segnet(32, num_classes=3, depth=2, base_filters=4)
    >>> model.output_shape
    (None, 32, 32, 3)
    """
    variant = VARIANTS[0] if variant is None else variant
    check_choice("variant", variant, VARIANTS)
    check_common(num_classes, depth, base_filters, dropout, batch_norm)
    height, width = image_shape(image_size, 2**depth, "segnet")
    inputs, x = model_input(height, width, 2**depth, channels)
    if variant == "indices":
        features = _indices_segnet(x, depth, base_filters, batch_norm, dropout)
    else:
        features = _simple_segnet(x, depth, base_filters, batch_norm, dropout)
    return keras.Model(inputs, output_head(features, num_classes), name="segnet")


def _stage_filters(level, base_filters):
    """VGG16's widths: doubling per stage, capped at 8x (64, 128, 256, 512, 512 for base 64)."""
    return base_filters * 2 ** min(level, 3)


def _stage_convs(level):
    """VGG16's convolutions per stage: 2, 2, then 3."""
    return 2 if level < 2 else 3


def _indices_segnet(x, depth, base_filters, batch_norm, dropout):
    """The paper's encoder-decoder; returns the last decoder features ``[B, H, W, base_filters]``.

    With ``depth=5, base_filters=64`` the encoder is VGG16's 13 convolutions.
    """
    all_indices = []
    for level in range(depth):
        rate = dropout if level >= depth - 2 else 0.0
        x = conv_block(
            x, _stage_filters(level, base_filters), convs=_stage_convs(level),
            batch_norm=batch_norm, dropout=rate, name=f"enc{level + 1}",
        )
        x, indices = MaxPoolingWithArgmax2D(name=f"enc{level + 1}_pool")(x)
        all_indices.append(indices)
    for level in reversed(range(depth)):
        rate = dropout if level >= depth - 2 else 0.0
        x = MaxUnpooling2D(name=f"dec{level + 1}_unpool")(x, all_indices[level])
        # the decoder mirrors the encoder; its last conv narrows to the next stage up
        x = conv_block(
            x, _stage_filters(level, base_filters), convs=_stage_convs(level) - 1,
            batch_norm=batch_norm, name=f"dec{level + 1}",
        )
        x = conv_block(
            x, _stage_filters(max(level - 1, 0), base_filters), convs=1,
            batch_norm=batch_norm, dropout=rate, name=f"dec{level + 1}_out",
        )
    return x


def _simple_segnet(x, depth, base_filters, batch_norm, dropout):
    """The lesson's SegNet: returns features at full resolution before the 1x1 head.

    Encoder ``depth`` x [Conv3x3 -> BN -> ReLU -> MaxPool] (16, 32, 64, 128 for the
    defaults), bottleneck Conv ``base_filters * 2**depth``, decoder
    [Conv3x3 -> bilinear 2x -> BN -> ReLU] (128, 64, 32), a last bilinear 2x.
    """
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, convs=1, batch_norm=batch_norm, name=f"enc{level + 1}")
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    x = conv_block(x, base_filters * 2**depth, convs=1, batch_norm=batch_norm, dropout=dropout, name="bottleneck")
    for level in reversed(range(1, depth)):
        name = f"dec{level + 1}"
        x = layers.Conv2D(
            base_filters * 2**level, 3, padding="same", use_bias=not batch_norm,
            kernel_initializer="he_normal", name=f"{name}_conv",
        )(x)
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
        if batch_norm:
            x = batch_normalization(batch_norm, name=f"{name}_bn")(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.UpSampling2D(2, interpolation="bilinear", name="dec1_up")(x)
