"""Joint image + mask augmentation in TensorFlow graph ops.

Geometry moves the image and the mask together (the image is resampled
bilinearly, the mask with nearest neighbour, so mask values stay {0, 1} or valid
class ids); colour changes touch the image only. Every random number comes from
a stateless op seeded by the ``[2]`` seed given per sample, so the same seed
always gives the same augmented sample (the pipeline derives that seed from
``(seed, epoch, position)``; see :func:`tfseg.data.pipeline.load_dataset`).

The steps, in order (each can be switched off in :class:`AugmentConfig`):

1. flips left-right and up-down (each with probability 1/2), exact;
2. a rotation by a multiple of 90 degrees (square images), exact;
3. with probability ``transform_probability``, one affine resampling
   (``tf.raw_ops.ImageProjectiveTransformV3``) that combines a random crop-and-scale
   (zoom by ``1/s``, ``s`` in ``zoom``, at a random offset), a small rotation
   (``+-rotation`` degrees) and a shear (``+-shear``); outside the image it
   reflects, so no black corners are invented;
4. optionally an elastic warp: a smooth random displacement field of standard
   deviation ``elastic`` times the image size;
5. colour jitter on the image: brightness (+- ``brightness``), contrast (factor
   ``1 +- contrast`` around the image mean), saturation (factor ``1 +- saturation``),
   hue (+- ``hue`` of a turn), gamma (``image ** exp(+- gamma)``); then clipped to [0, 1]; off for
   inputs that are not in [0, 1] (data images normalised per band or by min/max, :mod:`tfseg.data.bands`).

The defaults suit dermoscopy: lesions have no up or down, so every flip and
rotation is a valid new sample; zoom, colour and gamma mimic dermoscope
distance, lighting and camera differences.

Example:
    >>> import tensorflow as tf
    >>> image, mask = tf.random.uniform([32, 32, 3]), tf.zeros([32, 32, 1])
    >>> out_image, out_mask = augment_example(image, mask, tf.constant([0, 7]))
    >>> out_image.shape, out_mask.shape
    (TensorShape([32, 32, 3]), TensorShape([32, 32, 1]))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import tensorflow as tf

from tfseg.errors import ConfigError

FILL_MODES = ("reflect", "nearest", "wrap", "constant")


# The colour jitter (photographs: inputs in [0, 1]).
COLOUR_FIELDS = ("brightness", "contrast", "saturation", "hue", "gamma")

@dataclass(frozen=True)
class AugmentConfig:
    """What :func:`augment_example` does; every field's zero/False switches that step off.

    Args:
        flip: random left-right and up-down flips.
        rotate90: random multiples of 90 degrees (square images only).
        zoom: ``(low, high)`` range of the crop side as a fraction of the image
            side; ``(0.8, 1.0)`` zooms in by up to 1.25x; values above 1 zoom out.
        rotation: maximum small rotation in degrees.
        shear: maximum shear (the tangent of the shear angle).
        transform_probability: chance that a sample gets the zoom/rotation/shear resampling.
        fill_mode: how the resampling fills outside the image:
            ``reflect``, ``nearest``, ``wrap`` or ``constant`` (zeros).
        elastic: standard deviation of the elastic displacement as a fraction of
            the image size (0 = off; 0.01 to 0.03 is a mild warp).
        elastic_grid: the displacement field is smooth over a ``grid x grid`` lattice.
        brightness: maximum added brightness (image in [0, 1]).
        contrast: maximum relative contrast change.
        saturation: maximum relative saturation change.
        hue: maximum hue shift, as a fraction of a full turn.
        gamma: maximum ``|log(gamma)|``.
    """

    flip: bool = True
    rotate90: bool = True
    zoom: Tuple[float, float] = (0.8, 1.0)
    rotation: float = 20.0
    shear: float = 0.05
    transform_probability: float = 0.75
    fill_mode: str = "reflect"
    elastic: float = 0.0
    elastic_grid: int = 4
    brightness: float = 0.08
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.02
    gamma: float = 0.15

    def __post_init__(self):
        zoom = tuple(float(z) for z in self.zoom)
        object.__setattr__(self, "zoom", zoom)
        if len(zoom) != 2 or not 0.0 < zoom[0] <= zoom[1] <= 2.0:
            raise ConfigError(f"augment zoom {self.zoom!r}: expected (low, high) with 0 < low <= high <= 2")
        for name in ("rotation", "shear", "elastic", "brightness", "contrast", "saturation", "hue", "gamma"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"augment {name} {getattr(self, name)!r}: must be >= 0")
        if self.contrast >= 1 or self.saturation >= 1:
            raise ConfigError("augment contrast/saturation: must be below 1 (a factor 1 +- value)")
        if not 0.0 <= self.transform_probability <= 1.0:
            raise ConfigError(f"augment transform_probability {self.transform_probability!r}: must be in [0, 1]")
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(f"augment fill_mode {self.fill_mode!r}: choose one of {', '.join(FILL_MODES)}")
        if int(self.elastic_grid) < 2:
            raise ConfigError(f"augment elastic_grid {self.elastic_grid!r}: must be an integer >= 2")

    @property
    def has_transform(self) -> bool:
        return self.transform_probability > 0 and (self.zoom != (1.0, 1.0) or self.rotation > 0 or self.shear > 0)

    @property
    def has_colour(self) -> bool:
        return any(getattr(self, name) > 0 for name in COLOUR_FIELDS)

    def without_colour(self) -> "AugmentConfig":
        """This config with the colour jitter off: for inputs not in [0, 1] (data images normalised per
        band or by min/max, :mod:`tfseg.data.bands`), which the jitter's clipping to [0, 1] would destroy."""
        return dataclasses.replace(self, **{name: 0.0 for name in COLOUR_FIELDS})

    def to_dict(self):
        return dataclasses.asdict(self)


def augment_config(augment) -> Optional[AugmentConfig]:
    """The :class:`AugmentConfig` for ``augment``: ``True`` -> defaults, ``False``/``None`` -> ``None`` (off),
    a dict -> those fields over the defaults, an ``AugmentConfig`` -> itself.

    Raises:
        ConfigError: unknown field or impossible value.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        return AugmentConfig()
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        known = {f.name for f in dataclasses.fields(AugmentConfig)}
        unknown = sorted(set(augment) - known)
        if unknown:
            raise ConfigError(f"augment option(s) {', '.join(unknown)}: unknown; known: {', '.join(sorted(known))}")
        return AugmentConfig(**augment)
    raise ConfigError(f"augment {augment!r}: expected True, False, None, a dict or an AugmentConfig")


def augment_example(image, mask, seed, config: Optional[AugmentConfig] = None):
    """Augment one sample; the image and the mask move together.

    Args:
        image: float32 ``[H, W, C]`` in [0, 1].
        mask: ``[H, W, 1]`` float32 {0, 1} or int32 class ids.
        seed: int32/int64 ``[2]`` tensor; the same seed gives the same result.
        config: an :class:`AugmentConfig` (default: ``AugmentConfig()``).

    Returns:
        ``(image, mask)`` with the input shapes and dtypes; mask values are a
        subset of the input's.
    """
    config = config or AugmentConfig()
    seeds = tf.random.split(tf.convert_to_tensor(seed), num=6, alg="philox")
    image = tf.convert_to_tensor(image)
    mask = tf.convert_to_tensor(mask)
    image_shape, mask_shape = image.shape, mask.shape
    if config.flip:
        image, mask = random_flips(image, mask, seeds[0])
    if config.rotate90:
        image, mask = random_rotate90(image, mask, seeds[1])
    if config.has_transform:
        image, mask = random_affine(image, mask, seeds[2], config)
    if config.elastic > 0:
        image, mask = random_elastic(image, mask, seeds[3], config.elastic, int(config.elastic_grid))
    if config.has_colour:
        image = random_colour(image, seeds[4], config)
    image.set_shape(image_shape)
    mask.set_shape(mask_shape)
    return image, mask


def _coin(seed, probability=0.5):
    return tf.random.stateless_uniform([], seed, alg="philox") < probability


def random_flips(image, mask, seed):
    """Flip left-right and up-down, each with probability 1/2 (exact permutations)."""
    seeds = tf.random.split(seed, 2, alg="philox")
    for axis, s in ((1, seeds[0]), (0, seeds[1])):
        flip = _coin(s)
        image = tf.where(flip, tf.reverse(image, [axis]), image)
        mask = tf.where(flip, tf.reverse(mask, [axis]), mask)
    return image, mask


def random_rotate90(image, mask, seed):
    """Rotate by 0, 90, 180 or 270 degrees; non-square images are left as they are."""
    height, width = image.shape[0], image.shape[1]
    if height is not None and width is not None and height != width:
        return image, mask
    k = tf.random.stateless_uniform([], seed, 0, 4, dtype=tf.int32, alg="philox")
    if height is None or width is None:
        shape = tf.shape(image)
        k = k * tf.cast(tf.equal(shape[0], shape[1]), tf.int32)
    return tf.image.rot90(image, k), tf.image.rot90(mask, k)


def affine_matrix(height, width, scale, angle, shear, offset):
    """The 8-vector of ``ImageProjectiveTransformV3``: output pixel -> input pixel.

    ``input = centre + offset + scale * R(angle) @ Shear(shear) @ (output - centre)``
    in (x = column, y = row) pixel coordinates; ``scale < 1`` zooms in.
    """
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    a00, a01 = scale * cos, scale * (cos * shear - sin)
    a10, a11 = scale * sin, scale * (sin * shear + cos)
    a02 = cx + offset[0] - a00 * cx - a01 * cy
    a12 = cy + offset[1] - a10 * cx - a11 * cy
    zero = tf.zeros([])
    return tf.stack([a00, a01, a02, a10, a11, a12, zero, zero])


def random_affine(image, mask, seed, config: AugmentConfig):
    """Zoom (crop-and-scale), small rotation and shear in one resampling: image bilinear, mask nearest."""
    seeds = tf.random.split(seed, 5, alg="philox")
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    scale = tf.random.stateless_uniform([], seeds[0], config.zoom[0], config.zoom[1], alg="philox")
    limit = config.rotation * math.pi / 180.0
    angle = tf.random.stateless_uniform([], seeds[1], -limit, limit, alg="philox")
    shear = tf.random.stateless_uniform([], seeds[2], -config.shear, config.shear, alg="philox")
    # The crop window of side ``scale`` may sit anywhere inside the image.
    room = tf.abs(1.0 - scale) * (tf.cast(tf.stack([width, height]), tf.float32) - 1.0) / 2.0
    offset = tf.random.stateless_uniform([2], seeds[3], -1.0, 1.0, alg="philox") * room
    matrix = affine_matrix(height, width, scale, angle, shear, offset)
    identity = tf.constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    matrix = tf.where(_coin(seeds[4], config.transform_probability), matrix, identity)
    return (
        _transform(image, matrix, "BILINEAR", config.fill_mode),
        _transform(mask, matrix, "NEAREST", config.fill_mode),
    )


def _transform(tensor, matrix, interpolation, fill_mode):
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tensor[None],
        transforms=matrix[None],
        output_shape=tf.shape(tensor)[:2],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode=fill_mode.upper(),
    )
    return out[0]


def random_elastic(image, mask, seed, strength, grid):
    """Warp by a smooth random displacement field (std ``strength`` x image size): image bilinear, mask nearest."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    size = tf.cast(tf.maximum(height, width), tf.float32)
    coarse = tf.random.stateless_normal([1, grid, grid, 2], seed, alg="philox") * strength * size
    field = tf.image.resize(coarse, tf.stack([height, width]), method="bicubic")[0]
    rows, cols = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    rows = tf.clip_by_value(rows + field[..., 0], 0.0, tf.cast(height - 1, tf.float32))
    cols = tf.clip_by_value(cols + field[..., 1], 0.0, tf.cast(width - 1, tf.float32))
    return _sample_bilinear(image, rows, cols), _sample_nearest(mask, rows, cols)


def _sample_nearest(tensor, rows, cols):
    index = tf.stack([tf.cast(tf.round(rows), tf.int32), tf.cast(tf.round(cols), tf.int32)], axis=-1)
    return tf.gather_nd(tensor, index)


def _sample_bilinear(tensor, rows, cols):
    shape = tf.shape(tensor)
    r0, c0 = tf.floor(rows), tf.floor(cols)
    r1 = tf.minimum(r0 + 1.0, tf.cast(shape[0] - 1, tf.float32))
    c1 = tf.minimum(c0 + 1.0, tf.cast(shape[1] - 1, tf.float32))
    wr, wc = (rows - r0)[..., None], (cols - c0)[..., None]

    def at(r, c):
        return tf.gather_nd(tensor, tf.stack([tf.cast(r, tf.int32), tf.cast(c, tf.int32)], axis=-1))

    top = at(r0, c0) * (1.0 - wc) + at(r0, c1) * wc
    bottom = at(r1, c0) * (1.0 - wc) + at(r1, c1) * wc
    return top * (1.0 - wr) + bottom * wr


def random_colour(image, seed, config: AugmentConfig):
    """Brightness, contrast, saturation, hue and gamma jitter; the result is clipped to [0, 1]."""
    seeds = tf.random.split(seed, 5, alg="philox")

    def factor(s, spread):
        return tf.random.stateless_uniform([], s, -spread, spread, alg="philox")

    if config.brightness > 0:
        image = image + factor(seeds[0], config.brightness)
    if config.contrast > 0:
        mean = tf.reduce_mean(image, axis=[0, 1], keepdims=True)
        image = (image - mean) * (1.0 + factor(seeds[1], config.contrast)) + mean
    image = tf.clip_by_value(image, 0.0, 1.0)
    # Saturation and hue are defined for RGB only.
    if image.shape[-1] == 3:
        if config.saturation > 0:
            image = tf.image.adjust_saturation(image, 1.0 + factor(seeds[2], config.saturation))
        if config.hue > 0:
            image = tf.image.adjust_hue(image, factor(seeds[3], config.hue))
    if config.gamma > 0:
        image = tf.pow(tf.clip_by_value(image, 0.0, 1.0), tf.exp(factor(seeds[4], config.gamma)))
    return tf.clip_by_value(image, 0.0, 1.0)
