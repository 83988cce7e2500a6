"""The generators of the built-in ``synthetic[:N]`` (dermoscopy-like lesions with exact masks) and
``synthetic-large[:N]`` data (the sources: :mod:`tfseg.data.kinds.synthetic`, ``synthetic_large``).

Every sample is drawn in TensorFlow graph ops from stateless random numbers
seeded by ``(seed, sample index)``, so sample 17 is the same image on every
machine, whatever N is and in whatever order the samples are asked for, and
generation runs in parallel inside ``Dataset.map``. Images are generated
directly at the requested size (``image_size`` source option, default 256):
nothing is drawn large and shrunk, and the mask is exact at that size.

What an image contains (each part random per sample):

* skin: a tone from pale to tan, a reddish or yellowish cast, blotches
  (erythema), fine texture and sensor noise, an uneven illumination gradient;
* dermoscope optics: vignetting (dark corners) and, in about a third of the
  images, the black circular edge of the lens;
* one lesion: an ellipse whose radius is perturbed by random harmonics and a
  smooth noise field (irregular, sometimes lobed borders), 0.15 to 0.65 of
  the half-width in radius; colour mixed from brown, dark brown, reddish, light tan
  and blue-grey; contrast from faint to strong; a border that fades in over part
  of the radius; internal structure (mottled pigment, a darker centre, sometimes
  a pigment network, dark globules, a light regression area or a blue-white veil);
* distractors that are NOT lesion: dark hairs (thin anti-aliased arcs, up to
  10, which also cross the lesion), small faint freckles and bright gel air
  bubbles.

The mask is the lesion's region (clipped to the lens), hairs and bubbles on top
of it included, as a dermatologist would outline it.

Example:
    >>> from tfseg.data import open_source
    >>> source = open_source("synthetic:8", image_size=64)
    >>> sample = next(iter(source.examples(source.ids()[:1])))
    >>> sample["image"].shape, sample["mask"].shape
    (TensorShape([64, 64, 3]), TensorShape([64, 64, 1]))
"""

from __future__ import annotations

import functools
import math
import tensorflow as tf


DEFAULT_IMAGE_SIZE = 256
MAX_HAIRS = 10
MAX_FRECKLES = 6
MAX_BUBBLES = 3

# Lesion colours as factors of the sample's skin colour (so a lesion is never the
# skin's own colour); a sample mixes them with random weights.
_LESION_COLOURS = (
    (0.55, 0.45, 0.40),  # brown
    (0.24, 0.19, 0.18),  # dark brown / black
    (0.85, 0.55, 0.55),  # reddish
    (0.85, 0.74, 0.66),  # light tan
    (0.45, 0.50, 0.66),  # blue-grey
)
_PALE_SKIN = (0.96, 0.80, 0.72)
_TAN_SKIN = (0.70, 0.49, 0.37)


_PHILOX = 1  # tf.random.Algorithm.PHILOX: explicit, so every device draws the same numbers


class _Random:
    """Stateless Philox random numbers for one sample, from one ``[2]`` seed.

    The seed is scrambled into a Philox key once (as ``tf.random.stateless_*``
    does); draw ``k`` then reads its own counter range ``[k * 2**40, ...)``. Each
    draw is one raw op instead of ~50 ops of the ``tf.random.stateless_*``
    wrappers, so the per-sample graph stays small and traces fast. Small draws
    are sliced from two pools. Draws happen in a fixed order: adding one at the
    end never changes the earlier ones.
    """

    UNIFORM_POOL = 512
    NORMAL_POOL = 64

    def __init__(self, seed):
        mix = tf.raw_ops.StatelessRandomUniformFullIntV2(
            shape=[4],
            key=tf.constant([0x02461E293EC8F720], tf.uint64),
            counter=tf.cast(seed, tf.uint64),
            alg=_PHILOX,
            dtype=tf.uint32,
        )
        mix = tf.cast(mix, tf.uint64)
        self._key = tf.reshape(tf.bitwise.bitwise_or(mix[0], tf.bitwise.left_shift(mix[1], tf.constant(32, tf.uint64))), [1])
        self._counter_high = tf.bitwise.bitwise_or(mix[2], tf.bitwise.left_shift(mix[3], tf.constant(32, tf.uint64)))
        self._draws = 0
        self._uniform = self._raw(tf.raw_ops.StatelessRandomUniformV2, [self.UNIFORM_POOL])
        self._normal = self._raw(tf.raw_ops.StatelessRandomNormalV2, [self.NORMAL_POOL])
        self._used = {"uniform": 0, "normal": 0}

    def _raw(self, op, shape):
        self._draws += 1
        counter = tf.stack([tf.constant(self._draws << 40, tf.uint64), self._counter_high])
        return op(shape=shape, key=self._key, counter=counter, alg=_PHILOX)

    def _take(self, pool, values, shape):
        count = math.prod(shape)
        start = self._used[pool]
        self._used[pool] += count
        if self._used[pool] > values.shape[0]:
            raise RuntimeError(f"_Random: the {pool} pool is too small; raise its size")
        return tf.reshape(values[start : start + count], shape)

    def uniform(self, shape=(), low=0.0, high=1.0):
        return low + (high - low) * self._take("uniform", self._uniform, tuple(shape))

    def normal(self, shape=(), stddev=1.0):
        return stddev * self._take("normal", self._normal, tuple(shape))

    def chance(self, probability, shape=()):
        return tf.cast(self.uniform(shape) < probability, tf.float32)

    def field_normal(self, shape):
        """A fresh ``shape`` of standard normals (for grids and per-pixel noise)."""
        return self._raw(tf.raw_ops.StatelessRandomNormalV2, list(shape))

    def smooth_field(self, grid, size):
        """A smooth noise field ``[size, size]`` of about unit std: a ``grid x grid`` normal grid upsampled bicubically."""
        field = tf.image.resize(self.field_normal((1, grid, grid, 1)), (size, size), method="bicubic")
        return field[0, :, :, 0]


def _smoothstep(edge0, edge1, x):
    t = tf.clip_by_value((x - edge0) / tf.maximum(edge1 - edge0, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _grid(size):
    """Pixel-centre coordinates ``(u, v)`` in (-1, 1), each ``[size, size]``."""
    axis = (tf.range(size, dtype=tf.float32) + 0.5) / size * 2.0 - 1.0
    v, u = tf.meshgrid(axis, axis, indexing="ij")
    return u, v


def _blend(image, colour, alpha):
    """``image * (1 - alpha) + colour * alpha`` with ``alpha [H, W]`` and ``colour [3]`` or ``[H, W, 3]``."""
    alpha = alpha[..., None]
    return image * (1.0 - alpha) + colour * alpha


def _skin(rng, size):
    """``(skin image [H, W, 3], its base colour [3])``."""
    tone = rng.uniform() ** 1.3
    base = tf.constant(_PALE_SKIN) * (1.0 - tone) + tf.constant(_TAN_SKIN) * tone
    # A reddish (erythema) or yellowish cast and a camera white balance.
    cast = rng.uniform((), -0.03, 0.06) * tf.constant([1.0, -0.5, -0.6])
    base = (base + cast) * (1.0 + rng.normal((3,), 0.03))
    blotches = rng.smooth_field(6, size) * rng.uniform((), 0.02, 0.06)
    redness = tf.nn.relu(rng.smooth_field(5, size)) * rng.uniform((), 0.0, 0.06)
    texture = rng.smooth_field(max(size // 6, 8), size) * rng.uniform((), 0.01, 0.03)
    skin = base[None, None, :] * (1.0 + blotches + texture)[..., None]
    return skin + redness[..., None] * tf.constant([0.3, -0.5, -0.4]), base


def _lesion_shape(rng, u, v, size):
    """Normalised radius ``rho [H, W]``: the lesion is ``rho < 1``."""
    centre = tf.clip_by_value(rng.normal((2,), 0.18), -0.35, 0.35)
    radius = rng.uniform((), 0.15, 0.65)
    aspect = rng.uniform((), 0.65, 1.0)
    angle = rng.uniform((), 0.0, math.pi)
    du, dv = u - centre[0], v - centre[1]
    cos, sin = tf.cos(angle), tf.sin(angle)
    along, across = du * cos + dv * sin, (-du * sin + dv * cos) / aspect
    distance = tf.sqrt(along * along + across * across)
    theta = tf.atan2(across, along)
    # Border irregularity: radial harmonics with amplitude ~ 1/k, then local noise.
    irregularity = rng.uniform((), 0.02, 0.22)
    k = tf.range(2, 8, dtype=tf.float32)
    amplitudes = rng.normal((6,)) * irregularity / k
    phases = rng.uniform((6,), 0.0, 2.0 * math.pi)
    wobble = tf.reduce_sum(amplitudes * tf.cos(k * theta[..., None] + phases), axis=-1)
    rho = distance / (radius * tf.maximum(1.0 + wobble, 0.3))
    return rho + rng.smooth_field(7, size) * rng.uniform((), 0.0, 0.12)


def _mixed_colour(rng, skin):
    weights = tf.nn.softmax(rng.normal((len(_LESION_COLOURS),), 2.0))
    return skin * tf.reduce_sum(weights[:, None] * tf.constant(_LESION_COLOURS), axis=0)


def _lesion_colour(rng, u, v, rho, skin, size):
    """Per-pixel lesion colour ``[H, W, 3]`` with internal structure, relative to the skin colour ``[3]``."""
    # Two colours blended by a smooth field: uniform naevi to variegated melanoma-like lesions.
    variegation = _smoothstep(-1.0, 1.0, rng.smooth_field(5, size)) * rng.uniform((), 0.0, 1.0)
    lesion = _blend(tf.ones((size, size, 3)) * _mixed_colour(rng, skin), _mixed_colour(rng, skin), variegation)
    mottling = rng.smooth_field(12, size) * rng.uniform((), 0.05, 0.3)
    centre_dark = tf.nn.relu(1.0 - rho) * rng.uniform((), 0.0, 0.6)
    shade = tf.clip_by_value(1.0 + mottling - centre_dark, 0.3, 1.6)
    lesion = lesion * shade[..., None]
    # Pigment network: a dark, irregular honeycomb-like mesh in about half of the lesions.
    turn = rng.uniform((), 0.0, math.pi)
    frequency = rng.uniform((), 7.0, 14.0) * math.pi
    across_a = (u * tf.cos(turn) + v * tf.sin(turn)) * frequency + rng.smooth_field(8, size) * 2.2
    across_b = (v * tf.cos(turn) - u * tf.sin(turn)) * frequency + rng.smooth_field(8, size) * 2.2
    holes = tf.abs(tf.sin(across_a)) * tf.abs(tf.sin(across_b))
    # Patchy, and fading towards the border, as real networks do.
    patches = _smoothstep(-0.1, 0.15, mottling) * _smoothstep(-0.2, 0.4, 1.0 - rho)
    network = rng.chance(0.5) * rng.uniform((), 0.15, 0.4) * (1.0 - _smoothstep(0.0, 0.3, holes)) * patches
    # Globules: dark dots where a fine noise field peaks, in about a third of the lesions.
    globules = rng.chance(0.35) * _smoothstep(1.4, 2.0, rng.smooth_field(max(size // 8, 6), size)) * 0.6
    lesion = lesion * (1.0 - tf.maximum(network, globules)[..., None])
    # Blue-white veil: a bluish whitish patch inside the lesion in some samples.
    veil = rng.chance(0.2) * _smoothstep(0.6, 1.2, rng.smooth_field(4, size)) * rng.uniform((), 0.3, 0.7)
    return _blend(lesion, tf.constant([0.55, 0.62, 0.75]), veil)


def _lesion_alpha(rng, rho, size):
    """How much lesion colour covers the skin ``[H, W]``; exactly 0 outside the mask."""
    low_contrast = rng.chance(0.25)
    contrast = low_contrast * rng.uniform((), 0.3, 0.5) + (1.0 - low_contrast) * rng.uniform((), 0.5, 0.95)
    # The border fades in over ``fade`` of the radius but starts at ``floor``: soft yet defined.
    fade = rng.uniform((), 0.02, 0.3)
    floor = rng.uniform((), 0.5, 0.9)
    profile = floor + (1.0 - floor) * _smoothstep(0.0, fade, 1.0 - rho)
    # Regression: a lighter, scar-like area inside some lesions (still lesion).
    regression = rng.chance(0.25) * _smoothstep(0.5, 1.3, rng.smooth_field(4, size)) * rng.uniform((), 0.3, 0.7)
    inside = tf.cast(rho < 1.0, tf.float32)
    return inside * contrast * profile * (1.0 - regression)


def _spots(rng, u, v, count, radius_range):
    """Up to ``count`` random discs: ``(active [count, 1, 1] in {0, 1}, distance to centre / radius [count, H, W])``."""
    centres = rng.uniform((count, 2), -0.95, 0.95)
    radii = rng.uniform((count,), *radius_range)
    active = tf.cast(tf.range(count) < tf.cast(rng.uniform((), 0.0, count + 1.0), tf.int32), tf.float32)
    du = u[None] - centres[:, 0, None, None]
    dv = v[None] - centres[:, 1, None, None]
    relative = tf.sqrt(du * du + dv * dv) / radii[:, None, None]
    return active[:, None, None], relative


def _freckles(rng, u, v):
    """Coverage ``[H, W]`` of small faint brown spots (not lesion)."""
    active, relative = _spots(rng, u, v, MAX_FRECKLES, (0.008, 0.03))
    present = rng.chance(0.4)
    strength = rng.uniform((MAX_FRECKLES, 1, 1), 0.08, 0.25)
    return present * tf.reduce_max(active * strength * (1.0 - _smoothstep(0.6, 1.0, relative)), axis=0)


def _hairs(rng, u, v, size):
    """Hair coverage ``[H, W]`` in [0, 1]: thin anti-aliased arcs of random curvature."""
    pixel = 2.0 / size
    count = tf.cast(rng.chance(0.65) * rng.uniform((), 1.0, MAX_HAIRS + 1.0), tf.int32)
    active = tf.cast(tf.range(MAX_HAIRS) < count, tf.float32)[:, None, None]
    through = rng.uniform((MAX_HAIRS, 2), -1.0, 1.0)
    direction = rng.uniform((MAX_HAIRS,), 0.0, 2.0 * math.pi)
    bend = rng.uniform((MAX_HAIRS,), 1.2, 6.0) * tf.sign(rng.uniform((MAX_HAIRS,), -1.0, 1.0))
    # Each hair is an arc of the circle of radius |bend| through ``through``.
    cx = through[:, 0] - bend * tf.sin(direction)
    cy = through[:, 1] + bend * tf.cos(direction)
    du = u[None] - cx[:, None, None]
    dv = v[None] - cy[:, None, None]
    off_curve = tf.abs(tf.sqrt(du * du + dv * dv) - tf.abs(bend)[:, None, None])
    # The hair is the part of the arc within half its length of ``through`` (a disc: no atan2 needed).
    tu = u[None] - through[:, 0, None, None]
    tv = v[None] - through[:, 1, None, None]
    half_length = rng.uniform((MAX_HAIRS, 1, 1), 0.15, 1.2)
    along = 1.0 - _smoothstep(half_length - 0.05, half_length, tf.sqrt(tu * tu + tv * tv))
    half_width = rng.uniform((MAX_HAIRS, 1, 1), 0.0045, 0.012)
    # Box-filtered coverage of a line of this half-width by a pixel (no aliasing at small sizes).
    coverage = tf.clip_by_value(
        tf.minimum((half_width + 0.5 * pixel - off_curve) / pixel, 2.0 * half_width / pixel), 0.0, 1.0
    )
    opacity = rng.uniform((MAX_HAIRS, 1, 1), 0.6, 0.95)
    return tf.reduce_max(active * coverage * along * opacity, axis=0)


def _bubbles(rng, u, v):
    """Bright rims of gel air bubbles ``[H, W]``."""
    active, relative = _spots(rng, u, v, MAX_BUBBLES, (0.05, 0.2))
    present = rng.chance(0.25)
    rim = tf.exp(-tf.square((relative - 1.0) / 0.06))
    inner = 0.15 * tf.cast(relative < 1.0, tf.float32)
    return present * tf.reduce_max(active * (rim + inner), axis=0)


def _optics(rng, u, v, size):
    """``(illumination [H, W], lens [H, W])``: vignetting times a gradient, and the lens aperture (1 inside)."""
    r = tf.sqrt(u * u + v * v)
    start = rng.uniform((), 0.6, 1.1)
    vignette = 1.0 - rng.uniform((), 0.1, 0.75) * _smoothstep(start, start + rng.uniform((), 0.3, 0.7), r)
    gradient = 1.0 + rng.uniform((), 0.0, 0.15) * (u * tf.cos(rng.uniform((), 0.0, 6.3)) + v * tf.sin(rng.uniform((), 0.0, 6.3)))
    has_lens = rng.chance(0.35)
    lens_radius = rng.uniform((), 0.98, 1.3)
    pixel = 2.0 / size
    lens = 1.0 - has_lens * _smoothstep(lens_radius - pixel, lens_radius + pixel, r)
    return vignette * gradient, lens


def generate_sample(seed, index, image_size: int = DEFAULT_IMAGE_SIZE):
    """One synthetic sample, deterministic from ``(seed, index)``.

    Args:
        seed: integer (or scalar int64 tensor) naming the data set.
        index: sample index (scalar int64 tensor or int).
        image_size: side of the square image in pixels (Python int, >= 8).

    Returns:
        ``(image uint8 [S, S, 3], mask uint8 [S, S, 1] in {0, 1})``.
    """
    size = int(image_size)
    pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    rng = _Random(pair)
    u, v = _grid(size)
    image, skin = _skin(rng, size)
    rho = _lesion_shape(rng, u, v, size)
    image = _blend(image, _lesion_colour(rng, u, v, rho, skin, size), _lesion_alpha(rng, rho, size))
    image = _blend(image, tf.constant([0.55, 0.38, 0.28]), _freckles(rng, u, v))
    hair_colour = rng.uniform((), 0.05, 0.22) * tf.constant([1.0, 0.8, 0.7])
    image = _blend(image, hair_colour, _hairs(rng, u, v, size))
    illumination, lens = _optics(rng, u, v, size)
    image = image * illumination[..., None]
    image = image + _bubbles(rng, u, v)[..., None] * rng.uniform((), 0.25, 0.5)
    dark = rng.uniform((), 0.01, 0.05)
    image = _blend(image, tf.fill([3], dark), 1.0 - lens)
    image = image + rng.field_normal((size, size, 3)) * rng.uniform((), 0.004, 0.025)
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    mask = tf.logical_and(rho < 1.0, lens > 0.5)
    return image, tf.cast(mask, tf.uint8)[..., None]


@functools.lru_cache(maxsize=None)
def traced_generator(image_size: int):
    # Traced once per size and process: every split and every test reuses the graph.
    return tf.function(
        lambda seed, index: generate_sample(seed, index, image_size),
        input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)],
    )


# ---------------------------------------------------------------------------
# ``synthetic-large[:N]``: native-resolution images of thin and small structures
# ---------------------------------------------------------------------------

LARGE_MAX_SIZE = (768, 1024)  # (height, width) drawn; each sample is a crop of 640-768 x 896-1024
LARGE_MIN_SIZE = (640, 896)
MAX_VESSELS = 8
MAX_DOTS = 12
MAX_BLOBS = 5


def _pixel_grid(height, width):
    """Pixel-centre coordinates ``(x, y)`` in pixels, each ``[height, width]``."""
    y, x = tf.meshgrid(tf.range(height, dtype=tf.float32) + 0.5, tf.range(width, dtype=tf.float32) + 0.5,
                       indexing="ij")
    return x, y


def _smooth_rect(rng, grid, height, width):
    """A smooth noise field ``[height, width]`` of about unit std (a coarse normal grid upsampled bicubically)."""
    coarse = rng.field_normal((1, grid, max(2, grid * width // height), 1))
    return tf.image.resize(coarse, (height, width), method="bicubic")[0, :, :, 0]


def _vessels(rng, x, y, height, width):
    """Coverage ``[H, W]`` of 3-8 thin curved lines 2-5 px wide (box-filtered, so sub-pixel widths are exact)."""
    count = tf.cast(rng.uniform((), 3.0, MAX_VESSELS + 1.0), tf.int32)
    active = tf.cast(tf.range(MAX_VESSELS) < count, tf.float32)[:, None, None]
    through = rng.uniform((MAX_VESSELS, 2)) * tf.constant([width, height], tf.float32)
    direction = rng.uniform((MAX_VESSELS,), 0.0, 2.0 * math.pi)
    bend = rng.uniform((MAX_VESSELS,), 150.0, 1500.0) * tf.sign(rng.uniform((MAX_VESSELS,), -1.0, 1.0))
    cx = through[:, 0] - bend * tf.sin(direction)
    cy = through[:, 1] + bend * tf.cos(direction)
    dx, dy = x[None] - cx[:, None, None], y[None] - cy[:, None, None]
    off_curve = tf.abs(tf.sqrt(dx * dx + dy * dy) - tf.abs(bend)[:, None, None])
    tx, ty = x[None] - through[:, 0, None, None], y[None] - through[:, 1, None, None]
    half_length = rng.uniform((MAX_VESSELS, 1, 1), 120.0, 500.0)
    along = tf.cast(tf.sqrt(tx * tx + ty * ty) < half_length, tf.float32)
    half_width = rng.uniform((MAX_VESSELS, 1, 1), 1.0, 2.5)
    coverage = tf.clip_by_value(tf.minimum(half_width + 0.5 - off_curve, 2.0 * half_width), 0.0, 1.0)
    return tf.reduce_max(active * coverage * along, axis=0)


def _dots(rng, x, y, height, width):
    """Coverage ``[H, W]`` of 4-12 small discs of radius 2-6 px."""
    count = tf.cast(rng.uniform((), 4.0, MAX_DOTS + 1.0), tf.int32)
    active = tf.cast(tf.range(MAX_DOTS) < count, tf.float32)[:, None, None]
    centres = rng.uniform((MAX_DOTS, 2)) * tf.constant([width, height], tf.float32)
    radii = rng.uniform((MAX_DOTS, 1, 1), 2.0, 6.0)
    dx, dy = x[None] - centres[:, 0, None, None], y[None] - centres[:, 1, None, None]
    coverage = tf.clip_by_value(radii + 0.5 - tf.sqrt(dx * dx + dy * dy), 0.0, 1.0)
    return tf.reduce_max(active * coverage, axis=0)


def _blobs(rng, x, y, height, width):
    """Soft dark patches ``[H, W]`` 25-90 px in radius: the same colour as the structures, but not them."""
    active = tf.cast(tf.range(MAX_BLOBS) < tf.cast(rng.uniform((), 1.0, MAX_BLOBS + 1.0), tf.int32), tf.float32)
    centres = rng.uniform((MAX_BLOBS, 2)) * tf.constant([width, height], tf.float32)
    radii = rng.uniform((MAX_BLOBS, 1, 1), 25.0, 90.0)
    strength = rng.uniform((MAX_BLOBS, 1, 1), 0.3, 0.6)
    dx, dy = x[None] - centres[:, 0, None, None], y[None] - centres[:, 1, None, None]
    return tf.reduce_max(active[:, None, None] * strength * tf.exp(-(dx * dx + dy * dy) / (2.0 * radii * radii)),
                         axis=0)


def generate_large_sample(seed, index):
    """One ``synthetic-large`` sample, deterministic from ``(seed, index)``.

    The scene is drawn at :data:`LARGE_MAX_SIZE` and cropped to a per-sample size
    between :data:`LARGE_MIN_SIZE` and it, so one data set holds images of
    different sizes. Foreground (mask 1): thin curved lines 2-5 px wide and small
    discs of radius 2-6 px, drawn with exact box-filtered coverage (mask: coverage
    >= 0.5). Background: a skin-like colour with blotches, fine texture, soft dark
    patches of the foreground's colour (distractors, 25-90 px) and sensor noise.
    Shrinking such an image 4x (to 256 px) makes most lines thinner than a pixel.

    Returns:
        ``(image uint8 [h, w, 3], mask uint8 [h, w, 1] in {0, 1})``, ``h`` in [640, 768], ``w`` in [896, 1024].
    """
    height, width = LARGE_MAX_SIZE
    rng = _Random(tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)]))
    x, y = _pixel_grid(height, width)
    tone = rng.uniform() ** 1.3
    base = (tf.constant(_PALE_SKIN) * (1.0 - tone) + tf.constant(_TAN_SKIN) * tone) * (1.0 + rng.normal((3,), 0.03))
    blotches = _smooth_rect(rng, 6, height, width) * rng.uniform((), 0.03, 0.08)
    texture = _smooth_rect(rng, 96, height, width) * rng.uniform((), 0.01, 0.04)
    image = base[None, None, :] * (1.0 + blotches + texture)[..., None]
    colour = base * rng.uniform((), 0.25, 0.55) * tf.constant([1.0, 0.75, 0.75])
    image = _blend(image, colour, _blobs(rng, x, y, height, width))
    structures = tf.maximum(_vessels(rng, x, y, height, width), _dots(rng, x, y, height, width))
    image = _blend(image, colour, structures * rng.uniform((), 0.55, 0.9))
    image = image + rng.field_normal((height, width, 3)) * rng.uniform((), 0.005, 0.03)
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    mask = tf.cast(structures >= 0.5, tf.uint8)[..., None]
    crop_h = tf.cast(rng.uniform((), LARGE_MIN_SIZE[0], height + 1.0), tf.int32)
    crop_w = tf.cast(rng.uniform((), LARGE_MIN_SIZE[1], width + 1.0), tf.int32)
    top = tf.cast(rng.uniform() * tf.cast(height - crop_h + 1, tf.float32), tf.int32)
    left = tf.cast(rng.uniform() * tf.cast(width - crop_w + 1, tf.float32), tf.int32)
    top, left = tf.minimum(top, height - crop_h), tf.minimum(left, width - crop_w)
    return (tf.slice(image, [top, left, 0], [crop_h, crop_w, 3]),
            tf.slice(mask, [top, left, 0], [crop_h, crop_w, 1]))


@functools.lru_cache(maxsize=None)
def traced_large_generator():
    return tf.function(generate_large_sample,
                       input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)])
