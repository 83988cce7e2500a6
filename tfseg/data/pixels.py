"""An image's pixels, from storage to model input: the rules every path shares.

Training (:mod:`tfseg.data.pipeline`, :mod:`tfseg.data.patches`), ``tfseg prepare`` and
every prediction path (:mod:`tfseg.segment`: ``predict``, ``evaluate``, the serving
graph) call these functions, so an image reaches the model the same way everywhere::

    uint8 pixels [..., H, W, C]                      (decoded: tfseg.data.decode)
      -> resize_pixels(pixels, size)                 resize_image, then rounded to uint8 levels
      -> model_inputs(pixels)                        float32, x / 255

    data pixels [..., H, W, C] (uint16, float32...)  (tfseg.data.bands: every band, raw values)
      -> resize_pixels(pixels, size)                 resize_image, float32 raw values (never rounded)
      -> model_inputs(pixels, normalization)         the run's normalisation (tfseg.data.bands.Normalization)

* :func:`resize_image`: bilinear with antialiasing, the one image resize;
* :func:`stored_pixels`: ``uint8(round(clip(x, 0, 255)))``, the one rounding to the
  pipeline's storage form (a resized image is stored, cached and served at uint8 levels);
* :func:`scaled_size`: ``max(1, round(side * scale))`` per side, the ``--scale`` rule;
* :func:`model_inputs`: pixels -> what the model takes (``x / 255`` for 8-bit images, else the
  stored :class:`~tfseg.data.bands.Normalization`).

Example:
    >>> import tensorflow as tf
    >>> pixels = tf.fill([1, 5, 7, 3], tf.constant(200, tf.uint8))
    >>> small = resize_pixels(pixels, (2, 3))
    >>> small.dtype.name, small.shape, float(model_inputs(small)[0, 0, 0, 0]) == 200 / 255
    ('uint8', TensorShape([1, 2, 3, 3]), True)
"""

from __future__ import annotations

import tensorflow as tf

# Image resize: the training pipeline, `tfseg prepare --image-size` and the serving graph all call this.
RESIZE_METHOD = "bilinear"
RESIZE_ANTIALIAS = True
# 8-bit pixels: the model sees x / PIXEL_RANGE in [0, 1].
PIXEL_RANGE = 255.0


def resize_image(images, size):
    """Images ``[..., H, W, C]`` (any real dtype; float32 out) to ``size``: the one image resize of tfseg.

    Bilinear with antialiasing (a triangle filter widened by the scale factor
    when shrinking, so every input pixel counts). Measured on PH2-size images
    (768x560 -> 256, ``benchmarks/data_sources.py --ph2-cold``): 47.0 dB PSNR
    against a Lanczos resize; ``area`` is about 2.8x faster at 46.2 dB but
    repeats pixels when enlarging, plain bilinear about 4.6x faster at 34.8 dB
    (aliasing). Changing it here changes training, ``prepare`` and serving together.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    return tf.image.resize(images, size, method=RESIZE_METHOD, antialias=RESIZE_ANTIALIAS)


def stored_pixels(values):
    """Pixel values in [0, 255] (float) -> uint8 ``round(clip(values, 0, 255))``: the pipeline's storage form.

    Round half to even (``tf.round``); values outside the range are clipped first.
    """
    values = tf.cast(values, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value(values, 0.0, PIXEL_RANGE)), tf.uint8)


def resize_pixels(pixels, size, rounded=None):
    """Pixels ``[..., H, W, C]`` resized to ``size`` as the pipeline stores them.

    :func:`resize_image`, then for uint8 pixels :func:`stored_pixels`: a resized 8-bit image is
    rounded to uint8 levels once, here, whether it is cached for training, cut into patches or
    served. Pixels of any other dtype (data images: 16-bit, float) stay float32 raw values.
    ``rounded``: force the uint8 rounding on (values already on the 0..255 scale) or off.
    """
    pixels = tf.convert_to_tensor(pixels)
    resized = resize_image(pixels, size)
    return stored_pixels(resized) if (pixels.dtype == tf.uint8 if rounded is None else rounded) else resized


def scaled_size(height, width, scale: float):
    """``(round(height * scale), round(width * scale))``, at least 1 pixel each: int32 ``[2]`` tensor.

    ``height`` and ``width`` may be Python ints or (symbolic) int32 tensors.

    Example:
        >>> [int(v) for v in scaled_size(560, 768, 0.5)]
        [280, 384]
    """
    sides = tf.cast(tf.stack([height, width]), tf.float32)
    return tf.maximum(tf.cast(tf.round(sides * float(scale)), tf.int32), 1)


def model_inputs(pixels, normalization=None):
    """Pixels ``[..., C]`` -> float32 model inputs: the one normalisation of tfseg.

    The pipeline's ``scale_example`` and every prediction path (:mod:`tfseg.segment`: ``predict``,
    ``evaluate``, the serving graph) call it.

    Args:
        pixels: uint8, or any real dtype (data images' raw values).
        normalization: a :class:`tfseg.data.bands.Normalization` (or its dict); ``None`` or
            ``uint8``: ``x / 255`` in [0, 1]; ``per_band``: ``(x - mean) / std`` per band;
            ``minmax``: ``(x - min) / (max - min)``.

    Example:
        >>> float(model_inputs(tf.constant([[3000.0]]), {"kind": "per_band", "mean": [2000.0], "std": [500.0]})[0, 0])
        2.0
    """
    from tfseg.data.bands import Normalization

    values = tf.cast(pixels, tf.float32)
    norm = Normalization.parse(normalization)
    if norm is None or norm.kind == "uint8":
        return values / PIXEL_RANGE
    if norm.kind == "minmax":
        return (values - norm.min) / (norm.max - norm.min)
    if not norm.measured:
        raise ValueError("normalization per_band without its measured mean and std")
    return (values - tf.constant(norm.mean, tf.float32)) / tf.constant(norm.std, tf.float32)
