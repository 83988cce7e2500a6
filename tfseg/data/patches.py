"""Native-resolution samples for patch training: optional pre-scaling and random ``N x N`` crops.

With ``patch_size`` (``--patch-size``) the pipeline keeps every image at its own
resolution (optionally multiplied by ``scale`` first, ``--scale``: image bilinear
with antialiasing, mask nearest neighbour) and cuts one random ``N x N`` crop per
sample and epoch; augmentation then works on the crop. Images of different sizes
mix freely, since every crop has the same size.

A crop is *foreground-centred* with probability ``foreground_fraction`` (when the
mask has foreground, i.e. any non-zero value other than ``ignore_class``, whose
pixels are unlabelled): a foreground pixel is drawn
uniformly and the crop centred on it, moved inside the image. Otherwise the crop's
corner is uniform over the image. Small structures that cover 1% of an image
are then seen in about ``foreground_fraction`` of the crops instead of in a few.
An image smaller than the patch is padded with zeros (mask 0) at the bottom and
right, as :mod:`tfseg.tiling` pads it at prediction.

Every random number comes from a stateless op seeded by the sample's ``[2]`` seed,
so the same seed gives the same crop.

Example:
    >>> import tensorflow as tf
    >>> image = tf.zeros([300, 500, 3], tf.uint8)
    >>> mask = tf.zeros([300, 500, 1], tf.uint8)
    >>> crop, crop_mask = random_patch(image, mask, 128, tf.constant([0, 1]))
    >>> crop.shape, crop_mask.shape
    (TensorShape([128, 128, 3]), TensorShape([128, 128, 1]))
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from tfseg.config import DEFAULT_FOREGROUND_FRACTION, check_patch_options  # noqa: F401 - re-exported
from tfseg.data.pixels import resize_pixels, scaled_size


logger = logging.getLogger(__name__)


def patch_larger_than_every_image(sizes: Optional[Sequence[Tuple[int, int]]], patch_size: int,
                                  scale: float = 1.0) -> Optional[str]:
    """A warning when a ``patch_size`` crop does not fit in any image (each scaled by ``scale``), else ``None``.

    Every crop is then padded with zeros (:func:`random_patch`): the model sees more padding than
    image. ``sizes``: ``(height, width)`` per image (``None``: unknown, no warning).
    """
    if not sizes:
        return None
    heights, widths = scaled_size(tf.constant([h for h, _ in sizes]), tf.constant([w for _, w in sizes]), scale)
    scaled = list(zip(heights.numpy().tolist(), widths.numpy().tolist()))
    fits = [min(h, w) for h, w in scaled]
    if max(fits) >= int(patch_size):
        return None
    largest = max(scaled, key=lambda hw: min(hw))
    scaled_by = "" if float(scale) == 1.0 else f" scaled by {float(scale):g}"
    return (f"patch_size {patch_size} is larger than every training image{scaled_by} (the largest fitting square "
            f"is {max(fits)} px, in a {largest[1]}x{largest[0]} image): every crop is padded with zeros; "
            f"choose a patch size up to {max(fits)}")


def warn_if_patch_larger_than_every_image(sizes, patch_size: int, scale: float = 1.0) -> None:
    """Log :func:`patch_larger_than_every_image`'s warning (once: call it once per run)."""
    message = patch_larger_than_every_image(sizes, patch_size, scale)
    if message:
        logger.warning(message)


def rescale_example(image, mask, scale: float):
    """Image (uint8) to ``scale`` x its size as the pipeline stores it
    (:func:`~tfseg.data.pixels.resize_pixels`), mask nearest neighbour."""
    if float(scale) == 1.0:
        return image, mask
    shape = tf.shape(image)
    size = scaled_size(shape[0], shape[1], scale)
    mask = tf.cast(tf.image.resize(mask, size, method="nearest"), mask.dtype)
    return resize_pixels(image, size), mask


def random_patch(image, mask, patch_size: int, seed, foreground_fraction: float = DEFAULT_FOREGROUND_FRACTION,
                 ignore_class=None):
    """One random ``patch_size`` x ``patch_size`` crop of ``(image [H, W, C], mask [H, W, 1])``.

    Args:
        image, mask: one sample at any size (any dtypes; the mask's non-zero values are foreground).
        patch_size: side of the crop in pixels.
        seed: int ``[2]`` tensor; the same seed gives the same crop.
        foreground_fraction: chance of a crop centred on a random foreground pixel.
        ignore_class: a mask value that is not foreground (unlabelled pixels), or None.

    Returns:
        ``(image [N, N, C], mask [N, N, 1])`` with the input dtypes.
    """
    n = int(patch_size)
    seeds = tf.random.split(tf.convert_to_tensor(seed), num=3, alg="philox")
    shape = tf.shape(image)
    # Pad an image smaller than the patch (bottom/right zeros), as the sliding window does.
    pad_h, pad_w = tf.maximum(n - shape[0], 0), tf.maximum(n - shape[1], 0)
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    mask = tf.pad(mask, [[0, pad_h], [0, pad_w], [0, 0]])
    height, width = shape[0] + pad_h, shape[1] + pad_w
    room = tf.stack([height - n, width - n])  # the largest valid top-left corner

    uniform_corner = tf.cast(
        tf.floor(tf.random.stateless_uniform([2], seeds[0], alg="philox") * tf.cast(room + 1, tf.float32)), tf.int32)
    labels = mask[..., 0]
    labelled = labels > 0 if ignore_class is None else (labels > 0) & (labels != ignore_class)
    foreground = tf.where(labelled)  # [count, 2] (row, column)
    count = tf.shape(foreground)[0]
    pick = tf.minimum(
        tf.cast(tf.random.stateless_uniform([], seeds[1], alg="philox") * tf.cast(count, tf.float32), tf.int32),
        tf.maximum(count - 1, 0))
    centre = tf.cond(count > 0, lambda: tf.cast(foreground[pick], tf.int32), lambda: tf.zeros([2], tf.int32))
    centred_corner = tf.clip_by_value(centre - n // 2, 0, room)
    use_foreground = tf.logical_and(
        count > 0, tf.random.stateless_uniform([], seeds[2], alg="philox") < float(foreground_fraction))
    corner = tf.where(use_foreground, centred_corner, tf.minimum(uniform_corner, room))

    crop = tf.slice(image, [corner[0], corner[1], 0], [n, n, -1])
    crop_mask = tf.slice(mask, [corner[0], corner[1], 0], [n, n, -1])
    crop.set_shape([n, n, image.shape[-1]])
    crop_mask.set_shape([n, n, mask.shape[-1]])
    return crop, crop_mask
