"""Images that are data, not photographs: their bands and value type, read as they are; normalisation.

A file is a **photograph** when it holds 8-bit values in at most three bands (grey, palette,
RGB; an alpha band that is the same everywhere, fully opaque, is left out). Photographs are read
as RGB uint8 and reach the model as ``x / 255``, as tfseg always read them
(:mod:`tfseg.data.filepixels`). Every other image is **data** and keeps every band and its values:

* a TIFF whose values are not 8-bit, or that has more than three bands (or an extra band
  that varies), read with tifffile: uint16 (12-bit values too), int16, float32 (float16/64
  read as float32), one to many bands (samples per pixel, or one page per band);
* a 16-bit PNG (grey, grey+alpha, RGB, RGBA): its 16-bit values, every band;
* an 8-bit PNG or TIFF whose alpha band varies (e.g. near-infrared stored as alpha): 4 bands
  (2 for grey+alpha) of uint8.

A source's images must agree on bands and value type (a file that differs is a problem naming it;
:mod:`tfseg.data.filesource`). The folder option ``channels=N`` overrides the rule: every image
gives its first ``N`` bands (``channels=3`` reads RGBA files as RGB; ``channels=4`` keeps an opaque
alpha band).

**Normalisation** (:class:`Normalization`, stored in a run's ``config.json`` and in an export's
settings; applied by :func:`tfseg.data.pixels.model_inputs` everywhere a model sees pixels):

* ``uint8``: ``x / 255``, photographs' and the default for 8-bit data;
* ``per_band``: ``(x - mean[b]) / std[b]``, with the mean and standard deviation of each band
  measured on the training split (the default for every other data);
* ``minmax``: ``(x - min) / (max - min)``, fixed numbers (``--normalization minmax:0,4095``).

Storage: 8-bit data is stored (cached, resized, written to shards) as uint8 like photographs;
other data as float32 holding the raw values (a resize never rounds them to 8 bits).

Example:
    >>> Normalization.parse("minmax:0,4095").to_dict()
    {'kind': 'minmax', 'min': 0.0, 'max': 4095.0}
    >>> Normalization.parse({"kind": "per_band", "mean": [1.0], "std": [2.0]}).describe()
    'per band: mean 1, std 2'
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

from tfseg.errors import ConfigError

PHOTO_DTYPE = "uint8"
PHOTO_CHANNELS = 3
# Value types a data image keeps (and its serving signature takes); others are read as the mapped one.
DTYPES = ("uint8", "uint16", "int16", "int32", "float32")
_READ_AS = {"float16": "float32", "float64": "float32", "uint32": "int32", "int8": "int16", "bool": "uint8"}
NORMALIZATIONS = ("auto", "uint8", "per_band", "minmax")
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


@dataclass(frozen=True)
class Form:
    """What a source's images are: ``channels`` bands of ``dtype`` (``photo``: 8-bit RGB photographs)."""

    channels: int = PHOTO_CHANNELS
    dtype: str = PHOTO_DTYPE
    photo: bool = True

    def describe(self) -> str:
        if self.photo:
            return "RGB photographs (8-bit)"
        return f"{self.channels} band{'s' if self.channels != 1 else ''} of {self.dtype}"

    @property
    def storage_dtype(self) -> str:
        """How the pipeline stores pixels: uint8 for 8-bit images, float32 raw values otherwise."""
        return "uint8" if self.dtype == "uint8" else "float32"


PHOTO = Form()


def data_dtype(dtype) -> str:
    """The value type tfseg keeps for a file's numpy ``dtype`` (:data:`DTYPES`); ConfigError if none."""
    name = np.dtype(dtype).name
    name = _READ_AS.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"pixel values of type {np.dtype(dtype).name} are not supported "
                         f"({', '.join(DTYPES)})")
    return name


@dataclass(frozen=True)
class Normalization:
    """How stored pixels become model inputs (module docstring). ``kind``: ``uint8``, ``per_band``, ``minmax``."""

    kind: str = "uint8"
    mean: Tuple[float, ...] = field(default=())
    std: Tuple[float, ...] = field(default=())
    min: float = 0.0
    max: float = 255.0

    def __post_init__(self):
        if self.kind not in NORMALIZATIONS[1:]:
            raise ConfigError(f"normalization {self.kind!r}: choose one of {', '.join(NORMALIZATIONS)} "
                              "(minmax:MIN,MAX)")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.kind == "minmax" and not float(self.max) > float(self.min):
            raise ConfigError(f"normalization minmax:{self.min:g},{self.max:g}: MAX must be above MIN")
        if self.kind == "per_band" and (len(self.mean) != len(self.std)
                                        or any(not s > 0 or not np.isfinite(s) for s in self.std)
                                        or any(not np.isfinite(m) for m in self.mean)):
            raise ConfigError(f"normalization per_band: mean {list(self.mean)} and std {list(self.std)} need one "
                              "finite value per band, every std above 0")

    @property
    def measured(self) -> bool:
        """Whether the numbers are known (``per_band`` without them is measured on the training split)."""
        return self.kind != "per_band" or bool(self.mean)

    @classmethod
    def parse(cls, value) -> Optional["Normalization"]:
        """``None``/``"auto"`` -> ``None`` (the data decides); ``"uint8"``, ``"per_band"``, ``"minmax:MIN,MAX"``,
        a dict of :meth:`to_dict` or a Normalization -> a Normalization.

        Raises:
            ConfigError: naming the value.
        """
        if value is None or isinstance(value, Normalization):
            return value
        if isinstance(value, dict):
            values = dict(value)
            kind = values.pop("kind", None)
            known = {"mean", "std", "min", "max"}
            if kind is None or set(values) - known:
                raise ConfigError(f"normalization {value!r}: expected kind and {', '.join(sorted(known))}")
            return cls(kind, **values)
        text = str(value).strip()
        if text == "auto":
            return None
        kind, _, numbers = text.partition(":")
        if kind == "minmax":
            try:
                low, high = (float(v) for v in numbers.split(","))
            except ValueError:
                raise ConfigError(f"normalization {text!r}: expected minmax:MIN,MAX (e.g. minmax:0,4095)") from None
            return cls("minmax", min=low, max=high)
        if numbers:
            raise ConfigError(f"normalization {text!r}: only minmax takes numbers (minmax:MIN,MAX)")
        return cls(kind)

    def to_dict(self) -> dict:
        if self.kind == "per_band":
            return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std)}
        if self.kind == "minmax":
            return {"kind": self.kind, "min": float(self.min), "max": float(self.max)}
        return {"kind": self.kind}

    def describe(self) -> str:
        if self.kind == "per_band" and not self.measured:
            return "per band: (x - mean) / std, measured on the training split"
        if self.kind == "per_band":
            numbers = lambda values: ", ".join(f"{v:.4g}" for v in values)  # noqa: E731
            return f"per band: mean {numbers(self.mean)}, std {numbers(self.std)}"
        if self.kind == "minmax":
            return f"minmax: (x - {self.min:g}) / ({self.max:g} - {self.min:g})"
        return "x / 255"

    def check_channels(self, channels: int, what: str = "the images") -> None:
        """ConfigError when ``per_band`` numbers do not have one value per band of ``what``."""
        if self.kind == "per_band" and self.mean and len(self.mean) != channels:
            raise ConfigError(f"normalization per_band has {len(self.mean)} bands of statistics but {what} "
                              f"have {channels} bands")


def default_normalization(form: Form) -> Normalization:
    """``uint8`` (``x / 255``) for 8-bit images, ``per_band`` (measured on the training split) otherwise."""
    return Normalization("uint8" if form.dtype == "uint8" else "per_band")


def band_statistics(images) -> Normalization:
    """``per_band`` mean and standard deviation over every pixel of ``images`` (arrays ``[H, W, C]``),
    accumulated in float64 (exact for any number of 16-bit pixels). A band that is constant gets std 1."""
    total = squares = None
    count = 0
    for image in images:
        values = np.asarray(image, np.float64).reshape(-1, np.shape(image)[-1])
        total = values.sum(0) if total is None else total + values.sum(0)
        squares = (values ** 2).sum(0) if squares is None else squares + (values ** 2).sum(0)
        count += values.shape[0]
    if not count:
        raise ConfigError("normalization per_band: no training pixels to measure")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    std = np.where(std > 1e-6 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return Normalization("per_band", mean=tuple(mean.tolist()), std=tuple(std.tolist()))


# --------------------------------------------------------------------------- reading files

def is_tiff(data: bytes) -> bool:
    return data[:4] in _TIFF_MAGIC


def png_header(data: bytes) -> Optional[Tuple[int, int]]:
    """``(bit depth, colour type)`` of a PNG's IHDR, or None when ``data`` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 26 or data[12:16] != b"IHDR":
        return None
    depth, colour = struct.unpack_from(">BB", data, 24)
    return depth, colour


class StackError(ValueError):
    """A TIFF holding more than one 2-D image (a time series, a z-stack)."""


def tiff_bands(data: bytes) -> np.ndarray:
    """A TIFF's first image as ``[H, W, C]`` in its own value type (tifffile; bands from samples per
    pixel, or from pages when each page is one band).

    Raises:
        ValueError: a stack of images (more than one axis besides the bands), or values of a type
            tfseg does not read.
    """
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        series = tiff.series[0]
        values = series.asarray()
        axes = series.axes
    keep = [i for i, (axis, size) in enumerate(zip(axes, values.shape)) if size > 1 or axis in "YX"]
    values = values.reshape([values.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "Y" not in axes or "X" not in axes or len(axes) > 3:
        raise StackError(f"TIFF holds a stack of axes {axes} (shape {values.shape}): tfseg reads one 2-D image "
                         "per file, with any number of bands")
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a not in "YX"]
    values = np.transpose(values, order)
    if values.ndim == 2:
        values = values[..., None]
    return values.astype(data_dtype(values.dtype), copy=False)


def png_bands(data: bytes) -> np.ndarray:
    """A PNG as ``[H, W, C]`` of its own bands, uint16 for a 16-bit file (TensorFlow's PNG decoder)."""
    import tensorflow as tf

    header = png_header(data)
    dtype = tf.uint16 if header is not None and header[0] == 16 else tf.uint8
    return tf.io.decode_png(data, channels=0, dtype=dtype).numpy()


def _varies(band: np.ndarray) -> bool:
    return bool(np.any(band != band.flat[0])) if band.size else False


def file_form(data: bytes, mode: str = "") -> Tuple[Form, Optional[np.ndarray]]:
    """``(Form of one image file, its bands [H, W, C] when it is data, else None)`` by the rule of
    the module docstring; ``mode``: Pillow's mode when Pillow read the file.

    Raises:
        ValueError, OSError: the file cannot be read as data.
    """
    if is_tiff(data):
        try:
            values = tiff_bands(data)
        except StackError:
            raise
        except Exception:  # noqa: BLE001 - what tifffile cannot read, Pillow may (checked as a photograph)
            return PHOTO, None
    else:
        header = png_header(data)
        if header is None or (header[0] != 16 and header[1] not in (4, 6)):
            return PHOTO, None
        values = png_bands(data)
    dtype, channels = np.dtype(values.dtype).name, values.shape[-1]
    if dtype == "uint8":
        alpha = channels in (2, 4) and _varies(values[..., -1])
        if channels <= 3 or (channels == 4 and not alpha) or (channels == 2 and not alpha):
            return PHOTO, None
    return Form(int(channels), dtype, photo=False), values


def read_bands(data: bytes, form: Form) -> np.ndarray:
    """An image file (its bytes) in ``form``: ``[H, W, form.channels]`` of the storage dtype
    (uint8, or float32 raw values). The first ``form.channels`` bands when the file has more.

    Raises:
        ValueError: the file has fewer bands than ``form``, or cannot be read as data.
    """
    if is_tiff(data):
        values = tiff_bands(data)
    elif png_header(data) is not None:
        values = png_bands(data)
    else:
        from tfseg.data.filepixels import open_bytes

        with open_bytes(data) as image:
            if image.mode in ("P", "PA"):  # a palette's colours, as TensorFlow's PNG decoder gives them
                image = image.convert("RGBA" if image.mode == "PA" else "RGB")
            values = np.asarray(image)
        values = values[..., None] if values.ndim == 2 else values
    if values.shape[-1] < form.channels:
        raise ValueError(f"{values.shape[-1]} bands, fewer than the source's {form.channels}")
    return np.ascontiguousarray(values[..., : form.channels]).astype(form.storage_dtype, copy=False)


def bit_depth(values: np.ndarray) -> int:
    """Bits the integer values use (e.g. 12 for a uint16 image whose maximum is 4095); 0 for floats."""
    if not np.issubdtype(values.dtype, np.integer) or not values.size:
        return 0
    return max(1, int(values.max()).bit_length())


def display_rgb(values: np.ndarray) -> np.ndarray:
    """A data image ``[H, W, C]`` for the eye: uint8 ``[H, W, 3]`` of its first three bands (one band:
    grey; two: the first), each stretched linearly between its 1st and 99th percentiles."""
    values = np.asarray(values, np.float64)
    bands = values[..., :3] if values.shape[-1] >= 3 else np.repeat(values[..., :1], 3, axis=-1)
    low, high = percentiles(bands, (1, 99))
    scaled = (bands - low) / np.where(high > low, high - low, 1.0)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def percentiles(values: np.ndarray, points: Sequence[float] = (1, 50, 99)) -> np.ndarray:
    """``[len(points), C]``: each band's percentiles of ``values`` ``[..., C]``."""
    flat = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
    return np.percentile(flat, points, axis=0)
