"""U-Net (Ronneberger et al., 2015): encoder, bottleneck, decoder with concatenated skips.

Functional Keras (keras.layers only; never imports TensorFlow). With ``encoder=...`` the
encoder is a keras.applications backbone, built by ``tfseg.models.encoder_unet``.
"""

from __future__ import annotations

import keras

from tfseg.errors import ConfigError
from tfseg.config import UPSAMPLINGS, default
from tfseg.models.blocks import (
    check_choice,
    check_common,
    check_options,
    conv_block,
    decoder_block,
    encoder_block,
    image_shape,
    model_input,
    option_names,
    output_head,
)
from tfseg.models.registry import register_model


@register_model("unet")
def build_unet(image_size=256, num_classes=1, encoder=default("encoder"), encoder_weights=default("encoder_weights"),
               **options):
    """A U-Net returning per-pixel probabilities.

    Every option's default is :class:`tfseg.config.TrainConfig`'s (what a bare ``tfseg train`` builds).

    Args:
        image_size: int or ``(height, width)``; each a multiple of ``2**depth``; ``None``: any size
            that is (checked when the model is called).
        num_classes: 1 = binary (sigmoid, ``[B, H, W, 1]``); more = softmax over
            ``[B, H, W, num_classes]``.
        encoder: ``None`` for the plain U-Net below; a backbone name (``"mobilenetv2"``,
            ``"resnet50"``, ``"efficientnetv2b0"``) delegates everything to
            ``tfseg.models.encoder_unet.build_encoder_unet``.
        encoder_weights: backbone weights (``None`` or ``"imagenet"``); only with ``encoder``.
        **options: for the plain U-Net, those of :func:`build_plain_unet` (``depth=4``,
            ``base_filters=8``, ``batch_norm=True``, ``dropout=0.0``,
            ``upsampling="transpose"``); with ``encoder``, passed on as given.

    Returns:
        A functional ``keras.Model`` named ``unet``: input ``images`` float32
        ``[B, H, W, 3]`` in [0, 1], output ``probabilities`` float32.

    Raises:
        ConfigError: unknown option, impossible value, or an image size that is not a
            multiple of ``2**depth``.

    Example:

    >>> model = build_unet(64, num_classes=1, depth=3, base_filters=4)
    >>> model.output_shape
    (None, 64, 64, 1)
    """
    if encoder is not None:
        return _encoder_unet(image_size, num_classes, encoder, encoder_weights, options)
    if encoder_weights is not None:
        raise ConfigError(f"encoder_weights {encoder_weights!r}: only used with encoder")
    check_options("unet", options, [*option_names(build_plain_unet), "encoder", "encoder_weights"])
    return build_plain_unet(image_size, num_classes, **options)


def build_plain_unet(
    image_size=256,
    num_classes=1,
    depth=default("depth"),
    base_filters=default("base_filters"),
    batch_norm=default("batch_norm"),
    dropout=default("dropout"),
    upsampling=default("upsampling"),
    channels=3,
):
    """The U-Net of the paper, scaled by ``depth`` and ``base_filters``.

    Stage ``i`` (0-based) of the encoder has ``base_filters * 2**i`` channels (two 3x3
    convolutions, each followed by batch normalization and ReLU, then 2x2 max pooling); the bottleneck
    has ``base_filters * 2**depth``; the decoder mirrors the encoder, concatenating the
    encoder stage of the same resolution (the skip) after upsampling. The encoder runs once
    per step (the lesson's U-Net ran it twice).

    Args:
        image_size: int or ``(height, width)``, multiples of ``2**depth``; ``None``: any such size,
            checked when the model is called (:class:`tfseg.layers.SizeCheck`).
        num_classes: output channels (sigmoid for 1, softmax otherwise).
        channels: bands of the input images (3: RGB).
        depth: number of poolings (and of decoder stages).
        base_filters: channels of the first stage; doubled at each stage down.
        batch_norm: batch normalization after every convolution: ``True`` (``keras.layers.BatchNormalization``),
            ``"bfloat16"`` (:class:`tfseg.layers.BatchNorm`) or ``False``.
        dropout: SpatialDropout2D rate at the end of the contracting path (deepest encoder
            stage and bottleneck), where the paper puts it; 0 = none.
        upsampling: ``"transpose"`` (learned Conv2DTranspose) or ``"bilinear"`` (fixed).

    Returns:
        A functional ``keras.Model`` named ``unet``.
    """
    check_common(num_classes, depth, base_filters, dropout, batch_norm)
    check_choice("upsampling", upsampling, UPSAMPLINGS)
    height, width = image_shape(image_size, 2**depth, "unet")

    inputs, x = model_input(height, width, 2**depth, channels)
    skips = []
    for level in range(depth):
        rate = dropout if level == depth - 1 else 0.0
        skip, x = encoder_block(
            x, base_filters * 2**level, batch_norm=batch_norm, dropout=rate, name=f"enc{level + 1}"
        )
        skips.append(skip)
    x = conv_block(x, base_filters * 2**depth, batch_norm=batch_norm, dropout=dropout, name="bottleneck")
    for level in reversed(range(depth)):
        x = decoder_block(
            x, skips[level], base_filters * 2**level,
            upsampling=upsampling, batch_norm=batch_norm, name=f"dec{level + 1}",
        )
    return keras.Model(inputs, output_head(x, num_classes), name="unet")


def _encoder_unet(image_size, num_classes, encoder, encoder_weights, options):
    """The backbone U-Net of ``tfseg.models.encoder_unet`` (loaded only when asked for)."""
    from tfseg.models.encoder_unet import build_encoder_unet

    return build_encoder_unet(
        image_size=image_size,
        num_classes=num_classes,
        encoder=encoder,
        encoder_weights=encoder_weights,
        **options,
    )


def unet_options(encoder=None, **_):
    """The option names :func:`build_unet` takes: the plain U-Net's, or the backbone U-Net's with ``encoder``."""
    if encoder is not None:
        from tfseg.models.encoder_unet import build_encoder_unet

        return (*option_names(build_encoder_unet), "encoder", "encoder_weights")
    return (*option_names(build_plain_unet), "encoder", "encoder_weights")


build_unet.accepted_options = unet_options
