"""Segmentation models behind one name: ``build_model("unet" | "segnet" | ...)``.

Every model is a functional ``keras.Model`` with input ``images`` (float32
``[B, H, W, 3]`` in [0, 1]) and output ``probabilities`` (float32; sigmoid for one
class, softmax otherwise), built with keras.layers only: this package never imports
TensorFlow and runs under the JAX backend too.

Example:

>>> import tfseg.models
>>> model = tfseg.models.build_model("segnet", image_size=32, base_filters=4, depth=2)
>>> model.input.name, model.output.shape
('images', (None, 32, 32, 1))
"""

from __future__ import annotations

import inspect

from tfseg.models.blocks import check_options, option_names
from tfseg.models.registry import available_models, get_builder, register_model
from tfseg.models.segnet import build_segnet
from tfseg.models.unet import build_plain_unet, build_unet

import tfseg.models.deeplab  # noqa: F401,E402 - registers itself

__all__ = [
    "accepted_options",
    "available_models",
    "build_model",
    "build_plain_unet",
    "build_segnet",
    "build_unet",
    "register_model",
]


def build_model(name, image_size=256, num_classes=1, channels=3, **options):
    """The registered model ``name`` (see :func:`available_models`).

    Args:
        name: ``"unet"``, ``"segnet"``, ... (case-insensitive).
        image_size: int or ``(height, width)``.
        num_classes: 1 for a binary mask (sigmoid), more for class ids (softmax).
        channels: bands of the input images (3 for RGB photographs; the data's own for
            multi-band images, :mod:`tfseg.data.bands`). Passed to the builder only when it is not 3,
            so a builder registered without a ``channels`` option keeps working for RGB.
        **options: the builder's own options, e.g. ``depth``, ``base_filters``,
            ``batch_norm``, ``dropout``, ``upsampling``, ``encoder`` for ``unet``;
            ``variant`` for ``segnet``.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ConfigError: unknown model name, unknown option name, or impossible value.
    """
    builder = get_builder(name)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
    if not takes_any:  # builders with **options check them themselves
        check_options(str(name).lower(), options, option_names(builder))
    if channels != 3:
        options["channels"] = channels
    return builder(image_size=image_size, num_classes=num_classes, **options)


def accepted_options(name, **options):
    """The option names model ``name`` takes (given ``options``: ``unet`` with ``encoder`` takes others).

    Example:
        >>> sorted(accepted_options("segnet"))
        ['base_filters', 'batch_norm', 'depth', 'dropout', 'variant']
    """
    builder = get_builder(name)
    hook = getattr(builder, "accepted_options", None)
    return tuple(hook(**options)) if hook else tuple(option_names(builder))
