"""File sources: ``ph2:PATH``, ``mads:PATH`` and ``folder:PATH``.

Each lists its (image, mask) pairs cheaply, then checks every file once, up
front, so that a bad file stops a run before training rather than in epoch 7:

* every file is read with Pillow in a thread pool (Pillow and zlib release
  the GIL), and its pixel data is known to decode, not only its header: masks
  are fully decoded; images are checked as cheaply as that can be proved
  enough: a PNG's chunk CRCs, its IDAT stream inflated (zlib's Adler-32
  included), the inflated size and every row's filter byte
  (:func:`png_problem`, no unfiltering); an uncompressed BMP's header and
  that all its pixel bytes are there (any byte is a valid pixel); a JPEG
  decoded at 1/8 scale (every block is still entropy-decoded, so truncation
  and corruption show); other formats fully decoded. Results are cached per
  process by ``(path, size, mtime)``, so opening the same folder for the
  train, val and test splits checks it once;
* every mask's values are counted: a binary source accepts masks holding only
  ``{0, 1}`` or only ``{0, 255}`` (after the channel rule below); a multi-class
  source (``num_classes=N``, N >= 2) accepts class ids ``0..N-1``.

Problems (fatal: :class:`~tfseg.errors.DataError` listing EVERY offending file,
or dropped with ``skip_bad=True`` and listed in ``source.skipped``): an
unreadable or damaged file, an image without a mask or a mask without an
image, two files claiming one sample, unexpected mask values, a mask whose
encoding would read as one value (a colour-coded mask whose max over R, G, B
is constant, 16-bit values that are neither below 256 nor multiples of 257,
fractional or negative values), a mask with another aspect ratio than its
image (a wrong pair or a rotated mask). Warnings (reported by ``tfseg inspect``,
not fatal): a mask of another size but the same aspect ratio (it is resized to
the image with nearest neighbour), ignored files. The list of skipped samples
is logged once per process, however often the source is opened.

Decoding (:meth:`FileSource.examples`) runs in ``Dataset.map(num_parallel_calls=AUTOTUNE)``
with graph ops (:mod:`tfseg.data.decode`: ``tf.io.decode_image`` plus 1/4/8-bit
palette BMPs) for PNG, JPEG, GIF and BMP. Files that TensorFlow cannot decode or
would decode differently (TIFF, WebP, RLE BMP, palette/16-bit masks, GIF masks)
go through a Pillow fallback
(``tf.numpy_function``) in a second branch; the two are merged back in the
requested order with ``Dataset.choose_from_datasets``, so a folder without such
files never touches Python while decoding.

Pixel rules (one definition, used by both decoders):

* image -> RGB uint8: grayscale is repeated to 3 channels, alpha is dropped,
  palette images use their colours, 16-bit images keep their high byte.
* mask -> one channel: grayscale as is; grayscale+alpha: the gray channel;
  RGB(A): the maximum over R, G, B (so "any channel > 127" is white); a mask
  drawn only in the alpha channel (colour the same everywhere, alpha varying):
  its alpha channel; palette PNG/GIF/BMP: the palette INDEX (not the colour;
  a BMP whose colour table is Pillow's grey one: the grey level); 1-bit: 0/255;
  16-bit: as is when all values fit in 8 bits (class ids), divided by 257 when
  all are multiples of 257 (0/65535), else refused.
* binary source: foreground = ``value > 0`` for a mask whose values are all
  <= 1 (0/1 masks), ``value > 127`` otherwise (0/255 masks); with the source
  option ``mask_threshold=T``: ``value > T`` and any values are accepted
  (e.g. noisy JPEG masks: ``mask_threshold=127``).
* multi-class source: the value is the class id.

Layouts (sample ids are stable relative names, sorted; a group is never split
across train/val/test):

* ``ph2:PATH`` -- ``PATH/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp``
  with mask ``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``; PATH may also be the
  folder above (``PH2Dataset``'s parent) or ``PH2 Dataset images`` itself.
  Id and group: ``IMDxxx``.
* ``folder:PATH`` -- ``PATH/images/*`` and ``PATH/masks/*`` matched by file
  stem; a mask may carry one of :data:`MASK_SUFFIXES` (``a.jpg`` <->
  ``a_mask.png``). Id and group: the image's stem.
* ``mads:PATH`` -- the same, where PATH may be the Kaggle archive's folder
  with ``images/`` and ``masks/`` one or two levels down. Id: the stem; group:
  the recorded sequence, i.e. the stem without its camera and frame number
  (``HipHop_HipHop1_C0_00180`` -> ``HipHop_HipHop1``), so that frames and
  camera views of one performance never leak across splits. Override with
  ``group_pattern``: a regular expression whose first capturing group, matched
  against the stem, is the group.

Example:
    >>> from tfseg.data import open_source                    # doctest: +SKIP
    >>> source = open_source("folder:my_data", skip_bad=True)  # doctest: +SKIP
    >>> source.skipped                                         # doctest: +SKIP
    [('my_data/images/c.png', 'no mask (looked for masks/c.* and c_mask.* ...)')]
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfseg import fileio
from tfseg.data.sources import Source, register_source
from tfseg.data.spec import SourceSpec
from tfseg.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = ("_mask", "-mask", "_masks", "_segmentation", "_seg", "_label", "_labels", "_gt",
                 "_lesion", "_annotation")
MADS_GROUP_PATTERN = r"^(.+?)(?:_C\d+)?[_-]?\d+$"
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_CACHE_LIMIT = 200_000


# --------------------------------------------------------------------------- pixel rules (Pillow side)

def rgb_array(image) -> np.ndarray:
    """A Pillow image as RGB uint8 ``[H, W, 3]`` (the image rule of the module docstring)."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image)
        if values.max(initial=0) > 255:
            # The high byte, as TensorFlow's PNG decoder (training and serving) does for 16-bit PNGs.
            values = values // 256 if image.mode.startswith("I") else values / 257.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def mask_array(image) -> np.ndarray:
    """A Pillow mask as one uint8 channel ``[H, W]`` of raw values (the mask rule of the module docstring)."""
    return _mask_values(image)[0]


def _alpha_or(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # A mask drawn only in the alpha channel: the colour is the same everywhere, the alpha is not.
    if np.all(colour == colour[:1, :1]) and np.any(alpha != alpha.flat[0]):
        return alpha
    return colour.max(axis=-1) if colour.ndim == 3 else colour


def _mask_values(image) -> Tuple[np.ndarray, str]:
    """``(one uint8 channel [H, W], why the encoding hides the mask or "")`` of a Pillow mask."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.uint8) * 255, ""
    if mode in ("L", "P"):
        return np.asarray(image, dtype=np.uint8), ""
    if mode in ("LA", "PA"):
        pixels = np.asarray(image, dtype=np.uint8)
        return _alpha_or(pixels[..., 0], pixels[..., 1]), ""
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image)
        why = ""
        if mode == "F" and np.any(values != np.round(values)):
            why = "floating-point mask with fractional values: save it as 8-bit 0/255 or class ids"
        elif values.min(initial=0) < 0:
            why = "negative mask values: save it as 8-bit 0/255 or class ids"
        elif values.max(initial=0) > 255:
            if np.all(values % 257 == 0):  # 16-bit scaled from 8 bits: 0/65535, k*257
                values = values // 257
            else:
                found = _describe_values(np.unique(values)[:9].astype(int).tolist())
                why = (f"16-bit mask values {found} do not fit 8 bits (neither class ids below 256 nor "
                       "multiples of 257 such as 0/65535): they would all read as one value")
        return np.clip(values, 0, 255).astype(np.uint8), why
    if mode not in ("RGB", "RGBA", "RGBX"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
        mode = image.mode
    pixels = np.asarray(image, dtype=np.uint8)
    if mode == "RGBA":
        values = _alpha_or(pixels[..., :3], pixels[..., 3])
    else:
        values = pixels[..., :3].max(axis=-1)
    why = ""
    if values.size and np.all(values == values.flat[0]) and np.any(pixels[..., :3] != pixels[:1, :1, :3]):
        why = (f"colour-coded mask: its colours differ but the mask value (max of R, G, B) is {values.flat[0]} "
               "everywhere, so it would read as one class; save it as grayscale 0/255 (or class ids)")
    return values, why


# --------------------------------------------------------------------------- checking files

@dataclass(frozen=True)
class FileInfo:
    """What the up-front check learnt about one file.

    Attributes:
        format: Pillow's format name (``PNG``, ``JPEG``, ``BMP``, ``TIFF``...), ``""`` if unreadable.
        mode: Pillow's mode (``RGB``, ``L``, ``P``, ``I;16``...).
        width, height: pixels.
        values: for a mask, ``{raw value: pixel count}``; empty for an image.
        coloured: for a mask, True when some pixel has R, G, B not all equal.
        graph: True when a graph decoder gives the same pixels (no Pillow fallback needed).
        decoder: that graph decoder: ``"image"`` (``tf.io.decode_image``; for a mask
            ``"image:C"``, the file's C channels) or ``"palette_bmp"``; ``""``: Pillow.
        error: why the file cannot be read, else ``""``.
        encoding: for a mask, why its encoding hides the mask (read as one value), else ``""``.
        note: for a mask, how it was read when that is unusual (alpha as the mask), else ``""``.
    """

    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    values: Dict[int, int] = field(default_factory=dict)
    coloured: bool = False
    graph: bool = True
    error: str = ""
    encoding: str = ""
    decoder: str = ""
    note: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


_INFO_CACHE: Dict[Tuple[str, int, int, bool], FileInfo] = {}


def _bmp_header(path) -> Optional[Tuple[int, int, int, int, int, int]]:
    """``(pixel offset, header size, width, height, bits, compression)`` of a BMP (a path or its bytes)."""
    if isinstance(path, bytes):
        header = path[:34]
    else:
        with fileio.open_file(path, "rb") as f:
            header = f.read(34)
    if len(header) < 34:
        return None
    offset, dib_size, width, height, _, bits, compression = struct.unpack_from("<IIiiHHI", header, 10)
    return offset, dib_size, width, height, bits, compression


_MASK_CHANNELS = {"1": 1, "L": 1, "P": 1, "LA": 2, "RGB": 3, "CMYK": 3, "RGBA": 4}


def graph_decoder(path, fmt: str, mode: str, is_mask: bool) -> str:
    """The graph decoder that yields exactly what :func:`rgb_array`/:func:`mask_array` do, ``""`` if none.

    ``"palette_bmp"``: an uncompressed 1/4/8-bit BMP (:mod:`tfseg.data.decode`);
    ``"image"`` (``"image:C"`` for a mask of C channels): ``tf.io.decode_image``.
    ``path`` may be the file's bytes.
    """
    if fmt == "BMP":
        header = _bmp_header(path)
        if header is None or header[1] < 40 or header[5] != 0:
            return ""
        if header[4] == 8 and (mode == "L" or (is_mask and mode == "P")):
            # TensorFlow's own BMP decoder gives the 8-bit values (the grey level or the index) 4x faster.
            return "image:1" if is_mask else "image"
        if header[4] in (1, 4, 8):
            return "palette_bmp"
        if header[4] not in (24, 32):
            return ""
    elif fmt == "PNG":
        # TF decodes palette PNGs to colours and scales 16-bit to 8 bits: fine for images, not for masks.
        if is_mask and (mode in ("P", "PA", "F") or mode.startswith("I")):
            return ""
    elif fmt == "JPEG":
        # CMYK too: the serving graph can only use TensorFlow's conversion, so training uses it as well.
        if mode not in ("L", "RGB", "CMYK"):
            return ""
    elif fmt != "GIF" or is_mask:
        return ""
    if not is_mask:
        return "image"
    channels = _MASK_CHANNELS.get(mode)
    return f"image:{channels}" if channels else ""


def _graph_decodable(path, fmt: str, mode: str, is_mask: bool) -> bool:
    """True when a graph decoder yields exactly what :func:`rgb_array`/:func:`mask_array` do."""
    return bool(graph_decoder(path, fmt, mode, is_mask))


def read_rgb(path) -> np.ndarray:
    """An image file as the training pipeline reads it: RGB uint8 ``[H, W, 3]`` (for ``tfseg predict``).

    The graph decoder (:func:`tfseg.data.decode.decode_rgb`, as in the serving
    graph) where it gives the same pixels as :func:`rgb_array`, else Pillow:
    so every file training accepts (TIFF, WebP, palette and 1-bit BMP, CMYK
    JPEG, 16-bit PNG...) is read, and read the same way.

    Raises:
        OSError, ValueError, tf.errors.OpError: the file cannot be decoded.
    """
    from PIL import Image

    from tfseg import fileio

    data = fileio.read_bytes(path)
    with Image.open(io.BytesIO(data)) as image:
        if not _graph_decodable(data, image.format or "", image.mode, False):
            return rgb_array(image)
    from tfseg.data.decode import decode_rgb

    return decode_rgb(data).numpy()


# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_problem(data: bytes) -> str:
    """Why a PNG's pixel data cannot be decoded (``""`` when it can), without unfiltering it.

    A PNG decodes when every chunk's CRC is right, the concatenated IDAT
    stream inflates completely (zlib's own Adler-32 check included), the
    inflated size is what IHDR's size, bit depth, colour type and interlacing
    require, and every row's filter byte is 0..4: those are all the ways
    libpng's or Pillow's decoding can fail. About 2x cheaper than decoding.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "not a PNG signature"
    pos, ihdr, idat = 8, None, []
    while True:
        if pos + 12 > len(data):
            return "PNG file is truncated (no IEND chunk)"
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return f"PNG file is truncated inside its {kind.decode('latin-1')} chunk"
        body = data[pos + 8: end - 4]
        if zlib.crc32(kind + body) != struct.unpack_from(">I", data, end - 4)[0]:
            return f"PNG {kind.decode('latin-1')} chunk has a wrong CRC (corrupted file)"
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body[:13]) if length >= 13 else None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos = end
    if ihdr is None or ihdr[3] not in _PNG_CHANNELS:
        return "PNG without a valid IHDR header"
    width, height, depth, colour, _, _, interlace = ihdr
    inflater = zlib.decompressobj()
    try:
        pixels = inflater.decompress(b"".join(idat))
    except zlib.error as err:
        return f"PNG pixel data is corrupted (zlib: {err})"
    if not inflater.eof:
        return "PNG pixel data is cut short (compressed stream does not end)"
    bits = _PNG_CHANNELS[colour] * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    offset = 0
    rows_of_filters = []
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns <= 0 or rows <= 0:
            continue
        stride = 1 + (columns * bits + 7) // 8
        rows_of_filters.append((offset, stride, rows))
        offset += stride * rows
    if len(pixels) < offset:
        return f"PNG pixel data is cut short ({len(pixels)} of {offset} bytes)"
    buffer = np.frombuffer(pixels, np.uint8)
    for start, stride, rows in rows_of_filters:
        if np.any(buffer[start: start + stride * rows: stride] > 4):
            return "PNG pixel data is corrupted (invalid row filter)"
    return ""


def _bmp_problem(data: bytes, file_size: int) -> Optional[str]:
    """For an uncompressed BMP: ``""`` if its pixel bytes are all there, else why; None: needs a full decode.

    Any byte values are valid pixels of an uncompressed BMP, so a header that
    Pillow parsed plus enough bytes after the pixel offset is all a decode checks.
    """
    header = _bmp_header(data)
    if header is None:
        return "BMP file is truncated (no header)"
    offset, _, width, height, bits, compression = header
    if compression not in (0, 3, 6):  # RLE or embedded JPEG/PNG: decode it
        return None
    needed = offset + (abs(width) * bits + 31) // 32 * 4 * abs(height)
    if file_size < needed:
        return f"BMP file is truncated ({file_size} of {needed} bytes)"
    return ""


def _verify_image(data: bytes, image, fmt: str) -> None:
    """Raise when the pixel data of an image file (its bytes ``data``) cannot be decoded, as cheaply as
    that can be known."""
    if fmt == "PNG":
        why = png_problem(data)
    elif fmt == "BMP":
        why = _bmp_problem(data, len(data))
        if why is None:
            image.load()
            why = ""
    elif fmt == "JPEG":
        # Decoding at 1/8 scale still entropy-decodes every block: truncation and corruption show.
        image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
        image.load()
        why = ""
    else:
        image.load()
        why = ""
    if why:
        raise ValueError(why)


def _check_file(path: str, is_mask: bool) -> FileInfo:
    """Check one file with Pillow (see :func:`check_file`); never raises for a bad file."""
    from PIL import Image

    try:
        # read once, whole: one request on an object store, and Pillow's decoders seek freely in memory
        data = fileio.read_bytes(path)
        with Image.open(io.BytesIO(data)) as image:
            fmt, mode, (width, height) = image.format or "", image.mode, image.size
            if not is_mask:
                _verify_image(data, image, fmt)
                decoder = graph_decoder(data, fmt, mode, False)
                return FileInfo(fmt, mode, width, height, graph=bool(decoder), decoder=decoder)
            image.load()
            values, encoding = _mask_values(image)
            alpha = ""
            if "A" in mode and not encoding:
                pixels = np.asarray(image)
                if not np.array_equal(values, pixels[..., :-1].max(axis=-1)):
                    alpha = "mask drawn only in the alpha channel (colour constant): its alpha is the mask"
            coloured = False
            if mode in ("RGB", "RGBA", "RGBX"):
                rgb = np.asarray(image)[..., :3]
                coloured = bool(np.any(rgb.min(axis=-1) != rgb.max(axis=-1)))
        counts = np.bincount(values.ravel(), minlength=256)
        found = {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
        decoder = graph_decoder(data, fmt, mode, True)
        return FileInfo(fmt, mode, width, height, found, coloured, bool(decoder), encoding=encoding,
                        decoder=decoder, note=alpha)
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable", reported per file
        if type(err).__name__ == "UnidentifiedImageError":
            return FileInfo(error="not an image format Pillow or TensorFlow can read")
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return FileInfo(error=reason if isinstance(err, ValueError) else f"{type(err).__name__}: {reason}")


def check_file(path: str, is_mask: bool) -> FileInfo:
    """:func:`_check_file`, cached by ``(path, size, mtime)``."""
    try:
        stat = fileio.stat(path)
    except Exception as err:  # noqa: BLE001 - OSError or tf.errors.OpError: reported per file
        return FileInfo(error=f"cannot read: {getattr(err, 'strerror', None) or getattr(err, 'message', None) or err}")
    key = (fileio.abspath(path), stat.length, stat.mtime_nsec, is_mask)
    info = _INFO_CACHE.get(key)
    if info is None:
        info = _check_file(path, is_mask)
        if len(_INFO_CACHE) > _CACHE_LIMIT:
            _INFO_CACHE.clear()
        _INFO_CACHE[key] = info
    return info


def _check_files(paths_and_kinds: Sequence[Tuple[str, bool]]) -> List[FileInfo]:
    from tfseg import progress

    workers = min(16, 2 * (os.cpu_count() or 1))
    with progress.bar(len(paths_and_kinds), "checking files", unit="file") as counter:
        def check(item):
            info = check_file(*item)
            counter.update()
            return info

        if len(paths_and_kinds) < 8:
            return [check(item) for item in paths_and_kinds]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(check, paths_and_kinds))


def _describe_values(values: Sequence[int]) -> str:
    values = sorted(values)
    if len(values) > 8:
        return f"({len(values)} distinct values, {values[0]}..{values[-1]})"
    return "{" + ", ".join(map(str, values)) + "}"


def mask_value_problem(info: FileInfo, num_classes: int, mask_threshold: Optional[int],
                       ignore_class: Optional[int] = None) -> str:
    """Why a mask's values do not fit the source (``""`` when they do; ``ignore_class`` is allowed)."""
    values = set(info.values)
    if num_classes == 1:
        if mask_threshold is not None or values <= {0, 1} or values <= {0, 255}:
            return ""
        return (f"unexpected mask values {_describe_values(values)}: a binary mask holds 0/1 or 0/255 "
                "(noisy JPEG or anti-aliased masks: pass mask_threshold=127; class-id masks: num_classes=N)")
    if info.coloured:
        return "colour mask: class-id masks must be single-channel (grayscale or palette PNG)"
    bad = sorted(v for v in values if v >= num_classes and v != ignore_class)
    if bad:
        return f"mask values {_describe_values(bad)} are not class ids 0..{num_classes - 1} (num_classes={num_classes})"
    return ""


# --------------------------------------------------------------------------- decoding (TensorFlow side)

def _graph_decode(image_decoder: str, mask_decoder: str):
    """``(image_path, mask_path) -> (image [H,W,3], mask [H,W,1])`` with the named graph decoders."""
    import tensorflow as tf

    from tfseg.data import decode

    def image(data):
        return decode.palette_bmp_rgb(data) if image_decoder == "palette_bmp" else decode.image_rgb(data)

    def mask(data):
        if mask_decoder == "palette_bmp":
            return decode.palette_bmp_mask(data)
        return decode.image_mask(data, int(mask_decoder.partition(":")[2]))

    return lambda image_path, mask_path: (image(tf.io.read_file(image_path)), mask(tf.io.read_file(mask_path)))


def _decode_in_graph(image_path, mask_path):
    """Either file with the serving graph's generic decoders (:mod:`tfseg.data.decode`)."""
    import tensorflow as tf

    from tfseg.data.decode import decode_mask, decode_rgb

    return decode_rgb(tf.io.read_file(image_path)), decode_mask(tf.io.read_file(mask_path))


def _decode_with_pillow_numpy(image_path: bytes, mask_path: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(fileio.read_bytes(image_path.decode()))) as image:
        rgb = rgb_array(image)
    with Image.open(io.BytesIO(fileio.read_bytes(mask_path.decode()))) as mask:
        values = mask_array(mask)
    return rgb, values[..., None]


def _decode_with_pillow(image_path, mask_path):
    import tensorflow as tf

    image, mask = tf.numpy_function(_decode_with_pillow_numpy, [image_path, mask_path], [tf.uint8, tf.uint8],
                                    stateful=False)
    return image, mask


def _finish(sample_id, image, mask, num_classes: int, mask_threshold: Optional[int],
            same_size: Optional[bool] = None):
    """Mask at the image's size (nearest neighbour) and in the source's value convention.

    ``same_size``: whether the check found mask and image of one size (``None``: unknown, test it).
    """
    import tensorflow as tf

    image = tf.ensure_shape(image, [None, None, 3])
    mask = tf.ensure_shape(mask, [None, None, 1])
    image_size = tf.shape(image)[:2]
    if same_size is None:
        mask = tf.cond(
            tf.reduce_all(tf.shape(mask)[:2] == image_size),
            lambda: mask,
            lambda: tf.image.resize(mask, image_size, method="nearest"),
        )
    elif not same_size:
        mask = tf.image.resize(mask, image_size, method="nearest")
    if num_classes == 1:
        if mask_threshold is None:
            threshold = tf.where(tf.reduce_max(mask) > 1, tf.constant(127, tf.uint8), tf.constant(0, tf.uint8))
        else:
            threshold = tf.constant(mask_threshold, tf.uint8)
        mask = tf.cast(mask > threshold, tf.uint8)
    return {"id": sample_id, "image": image, "mask": mask}


# --------------------------------------------------------------------------- colour-coded masks

# What TensorFlow's graph decoder reads (a colour mask is decoded with tf.io.decode_image).
COLOUR_MASK_FORMATS = ("PNG", "BMP", "GIF")


class ColourMap:
    """A class-to-colour map read from a CSV file (:func:`read_colormap`).

    Attributes:
        path: the file.
        colours: ``{(r, g, b): class id}`` (several colours may share a class, e.g. every
            "void" colour -> the ignore value).
        names: ``{class id: name}`` where the file names them.
    """

    def __init__(self, path: str, colours: Dict[Tuple[int, int, int], int], names: Dict[int, str]):
        self.path, self.colours, self.names = path, colours, names

    def num_classes(self, spec: SourceSpec, num_classes: Optional[int], ignore_class: Optional[int]) -> int:
        """The classes of the map (highest id + 1, the ignore value left out), checked against ``num_classes``."""
        ids = [i for i in self.colours.values() if i != ignore_class]
        own = max(ids) + 1 if ids else 1
        if own < 2:
            raise ConfigError(f"colormap {self.path}: maps colours to {own} class; a colour map needs 2 or more")
        if num_classes is not None and int(num_classes) != own:
            raise ConfigError(f"num_classes {num_classes!r}: colormap {self.path} has classes 0..{own - 1}")
        return own

    def check(self, path: str, info: FileInfo) -> Tuple[FileInfo, str]:
        """``(info with values = {class id: pixels}, problem or "")`` for one colour mask."""
        import dataclasses

        from PIL import Image

        if info.format not in COLOUR_MASK_FORMATS:
            return info, (f"colour mask in {info.format or 'an unknown'} format: save colour masks as PNG "
                          "(lossless; JPEG changes colours)")
        with Image.open(io.BytesIO(fileio.read_bytes(path))) as image:
            rgb = np.asarray(image.convert("RGB"), np.uint8)
        packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        found, counts = np.unique(packed, return_counts=True)
        keys = {(r << 16) | (g << 8) | b: i for (r, g, b), i in self.colours.items()}
        unknown = [(int(v), int(n)) for v, n in zip(found, counts) if int(v) not in keys]
        values: Dict[int, int] = {}
        for value, count in zip(found, counts):
            if int(value) in keys:
                values[keys[int(value)]] = values.get(keys[int(value)], 0) + int(count)
        info = dataclasses.replace(info, values=values, coloured=True, encoding="")
        if unknown:
            listed = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255}) x{n}" for v, n in unknown[:4])
            more = f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
            return info, f"colour(s) {listed}{more} not in the colour map {self.path}"
        return info, ""

    def table(self):
        """A ``tf.lookup.StaticHashTable`` from ``r * 65536 + g * 256 + b`` to the class id."""
        import tensorflow as tf

        keys = [(r << 16) | (g << 8) | b for r, g, b in self.colours]
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.int64),
                                                tf.constant(list(self.colours.values()), tf.int64)),
            default_value=0)


def read_colormap(path: str) -> ColourMap:
    """Read a class-to-colour map: CSV lines ``class_id,r,g,b[,name]``.

    A first line that does not start with a number is a header; empty lines and lines
    starting with ``#`` are skipped. Values are integers 0..255. A colour may appear once;
    a class may have several colours.

    Example file (CamVid style)::

        class_id,r,g,b,name
        0,0,0,0,void
        1,128,128,128,sky
        2,128,0,0,building

    Raises:
        DataError: the file is missing or a line is not ``id,r,g,b[,name]`` with values 0..255
            (names the file and the line), or a colour is given twice.
    """
    import csv

    path = fileio.fspath(path)
    if not fileio.exists(path):
        raise DataError(f"colormap {path}: no such file")
    colours: Dict[Tuple[int, int, int], int] = {}
    names: Dict[int, str] = {}
    rows = list(csv.reader(io.StringIO(fileio.read_text(path))))
    for number, row in enumerate(rows, 1):
        fields = [f.strip() for f in row]
        if not fields or not "".join(fields) or fields[0].startswith("#"):
            continue
        if number == 1 and not fields[0].lstrip("-").isdigit():
            continue  # a header
        try:
            if len(fields) not in (4, 5):
                raise ValueError
            class_id, r, g, b = (int(f) for f in fields[:4])
            if not all(0 <= v <= 255 for v in (class_id, r, g, b)):
                raise ValueError
        except ValueError:
            raise DataError(f"colormap {path}: line {number} {','.join(row)!r} is not class_id,r,g,b[,name] "
                            "with integers 0..255") from None
        if (r, g, b) in colours:
            raise DataError(f"colormap {path}: line {number}: colour ({r}, {g}, {b}) given twice")
        colours[(r, g, b)] = class_id
        if len(fields) == 5 and fields[4]:
            names.setdefault(class_id, fields[4])
    if not colours:
        raise DataError(f"colormap {path}: no class_id,r,g,b lines")
    return ColourMap(path, colours, names)


def _colour_decode(image_kind: str, table):
    """``(image_path, mask_path) -> (image [H,W,3], class ids [H,W,1] uint8)`` for a colour-coded mask."""
    import tensorflow as tf

    from tfseg.data import decode

    def image(image_path):
        if image_kind == "pillow":  # formats only Pillow reads the same as training
            return tf.numpy_function(_pillow_rgb, [image_path], tf.uint8, stateful=False)
        data = tf.io.read_file(image_path)
        return decode.palette_bmp_rgb(data) if image_kind == "palette_bmp" else decode.image_rgb(data)

    def mask(mask_path):
        rgb = tf.cast(tf.io.decode_image(tf.io.read_file(mask_path), channels=3, expand_animations=False), tf.int64)
        ids = table.lookup(rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2])
        return tf.cast(ids, tf.uint8)[..., None]

    return lambda image_path, mask_path: (image(image_path), mask(mask_path))


def _pillow_rgb(image_path: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(fileio.read_bytes(image_path.decode()))) as image:
        return rgb_array(image)


# --------------------------------------------------------------------------- sources

@dataclass
class Pair:
    """One listed sample: its id, group and files."""

    id: str
    group: str
    image: str
    mask: str
    image_info: FileInfo = field(default_factory=FileInfo)
    mask_info: FileInfo = field(default_factory=FileInfo)


class FileSource(Source):
    """Base of the file sources: listing (subclasses), checking, decoding.

    Args:
        spec: the parsed SOURCE.
        num_classes: ``None`` or 1 for binary masks; N >= 2 for class-id masks.
        skip_bad: drop samples with problems (listed in :attr:`skipped` and
            logged as a warning) instead of raising :class:`DataError`.
        mask_threshold: binary sources only: foreground is ``value > mask_threshold``
            and any mask values are accepted; default: the 0/1 vs 0/255 rule.

    Attributes:
        root: the folder the layout was found in.
        skipped: ``[(path, why), ...]`` of dropped samples (``skip_bad=True``).
        warnings: ``[(path, what), ...]`` that do not stop a run.
        pairs: ``{id: Pair}`` of the usable samples, with what the check found.
    """

    checked = True

    def __init__(self, spec: SourceSpec, num_classes: Optional[int] = None, skip_bad: bool = False,
                 mask_threshold: Optional[int] = None, ignore_class: Optional[int] = None,
                 colormap: Optional[str] = None):
        self.spec = spec
        self.colormap: Optional[ColourMap] = None
        if colormap is not None:  # RGB colour-coded masks: the file says which colour is which class
            self.colormap = read_colormap(colormap)
            num_classes = self.colormap.num_classes(spec, num_classes, ignore_class)
        self.num_classes = _num_classes(spec, num_classes)
        if ignore_class is not None:
            from tfseg.config import check_ignore_class

            ignore_class = check_ignore_class(ignore_class, self.num_classes)
        self.ignore_class = ignore_class  # a mask value allowed beside the class ids (left out of scores)
        if mask_threshold is not None:
            if self.num_classes != 1 or isinstance(mask_threshold, bool) or not 0 <= int(mask_threshold) <= 254:
                raise ConfigError(f"mask_threshold={mask_threshold!r}: an integer 0..254, for binary sources only")
            mask_threshold = int(mask_threshold)
        self.mask_threshold = mask_threshold
        self.skip_bad = bool(skip_bad)
        self.root = self._find_root(fileio.fspath(spec.path))
        pairs, problems, self.warnings = self._list()
        if not pairs and not problems:
            raise DataError(f"data source {spec.text!r}: no images found in {self.root}")
        pairs, more = self._check(pairs)
        self._problems = sorted(problems + more)
        self.pairs: Dict[str, Pair] = {p.id: p for p in pairs}
        self.skipped: List[Tuple[str, str]] = []
        if self._problems:
            self._handle_problems()

    # -- subclass hooks
    def _find_root(self, path: str) -> str:
        raise NotImplementedError

    def _list(self) -> Tuple[List[Pair], List[Tuple[str, str]], List[Tuple[str, str]]]:
        """``(pairs, problems, warnings)`` from file names only (no decoding)."""
        raise NotImplementedError

    # -- Source interface
    def ids(self) -> List[str]:
        return sorted(self.pairs)

    def group(self, sample_id: str) -> str:
        return self.pairs[sample_id].group

    def problems(self) -> List[Tuple[str, str]]:
        """Every problem found, including those of skipped samples."""
        return list(self._problems)

    def image_sizes(self, ids: Sequence[str]) -> Optional[List[Tuple[int, int]]]:
        """From the up-front check of every file."""
        sizes = [(self.pairs[i].image_info.height, self.pairs[i].image_info.width) for i in ids]
        return sizes if all(h > 0 and w > 0 for h, w in sizes) else None

    def folders(self) -> List[str]:
        """The folders of the listed images and masks."""
        return sorted({fileio.dirname(path) for pair in self.pairs.values() for path in (pair.image, pair.mask)})

    def examples(self, ids: Sequence[str]):
        import tensorflow as tf

        unknown = [i for i in ids if i not in self.pairs]
        if unknown:
            raise DataError(f"data source {self.spec.text!r}: unknown sample id(s) {', '.join(unknown[:5])}")
        pairs = [self.pairs[i] for i in ids]
        # One dataset per pair of decoders, each a straight-line graph (quick to trace and to start).
        kinds = [(p.image_info.decoder, p.mask_info.decoder, p.image_info.size == p.mask_info.size)
                 if p.image_info.decoder and p.mask_info.decoder else ("pillow", "pillow", None) for p in pairs]
        groups = sorted(set(kinds), key=str)

        def decoded(kind):
            selected = [p for p, k in zip(pairs, kinds) if k == kind]
            columns = {
                "id": [p.id for p in selected],
                "image": [str(p.image) for p in selected],
                "mask": [str(p.mask) for p in selected],
            }
            decode = _decode_with_pillow if kind[0] == "pillow" else _graph_decode(*kind[:2])
            if self.colormap is not None:
                decode = _colour_decode(kind[0], self.colormap.table())
            # Plain TensorFlow ops: autograph's source conversion would only add tracing time.
            return tf.data.Dataset.from_tensor_slices(columns).map(
                tf.autograph.experimental.do_not_convert(
                    lambda row: _finish(row["id"], *decode(row["image"], row["mask"]), self.num_classes,
                                        self.mask_threshold, kind[2])),
                num_parallel_calls=tf.data.AUTOTUNE,
            )

        if not groups:
            return _empty_examples()
        if len(groups) == 1:
            return decoded(groups[0])
        choice = tf.data.Dataset.from_tensor_slices(tf.constant([groups.index(k) for k in kinds], tf.int64))
        return tf.data.Dataset.choose_from_datasets([decoded(k) for k in groups], choice)

    # -- checking
    def _check(self, pairs: List[Pair]) -> Tuple[List[Pair], List[Tuple[str, str]]]:
        infos = _check_files([(p.image, False) for p in pairs] + [(p.mask, True) for p in pairs])
        good, problems = [], []
        for pair, image_info, mask_info in zip(pairs, infos[: len(pairs)], infos[len(pairs):]):
            pair.image_info, pair.mask_info = image_info, mask_info
            found = []
            if image_info.error:
                found.append((str(pair.image), f"unreadable image ({image_info.error})"))
            if mask_info.error:
                found.append((str(pair.mask), f"unreadable mask ({mask_info.error})"))
            elif self.colormap is not None:
                pair.mask_info, why = self.colormap.check(pair.mask, mask_info)
                if why:
                    found.append((str(pair.mask), why))
            elif mask_info.encoding:
                found.append((str(pair.mask), mask_info.encoding))
            else:
                why = mask_value_problem(mask_info, self.num_classes, self.mask_threshold, self.ignore_class)
                if why:
                    found.append((str(pair.mask), why))
            if not found and mask_info.note:
                self.warnings.append((str(pair.mask), mask_info.note))
            if not found and image_info.size != mask_info.size:
                if _same_shape(image_info, mask_info):
                    self.warnings.append((str(pair.mask), f"mask {mask_info.size} differs from image "
                                                          f"{image_info.size}: resized with nearest neighbour"))
                else:
                    found.append((str(pair.mask), f"mask {mask_info.size} does not fit image {image_info.size} "
                                                  "(another aspect ratio: a wrong pair, or a rotated mask?)"))
            problems.extend(found)
            if not found:
                good.append(pair)
        return good, problems

    def _handle_problems(self):
        text = self.spec.text
        count = len(self._problems)
        if not self.skip_bad:
            raise DataError(f"data source {text!r}: {count} problem(s) (fix them, or skip these samples "
                            "with --skip-bad / skip_bad=True)", self._problems)
        self.skipped = list(self._problems)
        if not self.pairs:
            raise DataError(f"data source {text!r}: no usable samples left after skipping {count} problem(s)",
                            self._problems)
        key = (text, tuple(self._problems))
        if key not in _REPORTED_SKIPS:  # once per process, however often the source is opened
            _REPORTED_SKIPS.add(key)
            logger.warning("%s: skipped %d problem(s); %d samples left:\n%s", text, count, len(self.pairs),
                           "\n".join(f"  {path}: {why}" for path, why in self._problems))


_REPORTED_SKIPS: set = set()


def _same_shape(image: FileInfo, mask: FileInfo) -> bool:
    """Whether a mask of another size has the image's aspect ratio (to within one pixel of rounding)."""
    return abs(mask.width * image.height - mask.height * image.width) <= max(image.width, image.height,
                                                                            mask.width, mask.height)


def _num_classes(spec: SourceSpec, num_classes) -> int:
    if num_classes is None:
        return 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} for {spec.text!r}: a positive integer (1 = binary masks)")
    if num_classes > 256:
        raise ConfigError(f"num_classes={num_classes!r} for {spec.text!r}: masks are 8-bit, at most 256 classes")
    return int(num_classes)


def _empty_examples():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices({
        "id": tf.zeros([0], tf.string),
        "image": tf.zeros([0, 1, 1, 3], tf.uint8),
        "mask": tf.zeros([0, 1, 1, 1], tf.uint8),
    }).map(lambda row: {"id": row["id"], "image": tf.ensure_shape(row["image"], [None, None, 3]),
                        "mask": tf.ensure_shape(row["mask"], [None, None, 1])})


def _is_image_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _is_ignored(path: str) -> bool:
    name = fileio.basename(path)
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _files_by_stem(folder: str, warnings) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for path in (fileio.join(folder, name) for name in fileio.listdir(folder)):
        if _is_ignored(path):
            continue
        if _is_image_file(path):  # no per-file folder test: one request each on an object store
            found.setdefault(fileio.stem(path), []).append(path)
        elif fileio.isdir(path):
            warnings.append((path, "subfolder ignored (images and masks are read from one level)"))
        else:
            warnings.append((path, f"ignored: not an image file type ({', '.join(IMAGE_EXTENSIONS)})"))
    return found


def _strip_mask_suffix(stem: str) -> Optional[str]:
    lowered = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


class FolderSource(FileSource):
    """``folder:PATH``: ``PATH/images/*`` + ``PATH/masks/*`` matched by stem (see the module docstring)."""

    def _find_root(self, path: str) -> str:
        if not fileio.isdir(path):
            raise DataError(f"data source {self.spec.text!r}: {path} is not a folder")
        missing = [name for name in ("images", "masks") if not fileio.isdir(fileio.join(path, name))]
        if missing:
            raise DataError(f"data source {self.spec.text!r}: {path} has no {' and no '.join(missing)} folder "
                            "(expected PATH/images/* and PATH/masks/*)")
        return path

    def group_of(self, stem: str) -> str:
        return stem

    def _list(self):
        warnings: List[Tuple[str, str]] = []
        problems: List[Tuple[str, str]] = []
        images = _files_by_stem(fileio.join(self.root, "images"), warnings)
        masks = _files_by_stem(fileio.join(self.root, "masks"), warnings)
        claims: Dict[str, List[str]] = {}
        for stem, paths in masks.items():
            base = stem if stem in images else _strip_mask_suffix(stem)
            claims.setdefault(base if base in images else stem, []).extend(paths)
        pairs = []
        for stem, paths in images.items():
            if len(paths) > 1:
                problems.extend((p, f"{len(paths)} images share the stem {stem!r}") for p in paths)
                continue
            candidates = claims.get(stem, [])
            if not candidates:
                problems.append((paths[0], f"no mask (looked for masks/{stem}.* and {stem}_mask.*, "
                                                 f"{stem}_segmentation.* ...)"))
            elif len(candidates) > 1:
                names = ", ".join(fileio.basename(p) for p in candidates)
                problems.append((paths[0], f"{len(candidates)} masks match: {names}"))
            else:
                pairs.append(Pair(stem, self.group_of(stem), paths[0], candidates[0]))
        for stem, paths in claims.items():
            if stem not in images:
                problems.extend((p, "no image for this mask") for p in paths)
        return pairs, problems, warnings


class MadsSource(FolderSource):
    """``mads:PATH``: a folder layout whose group is the recorded sequence (see the module docstring).

    Args:
        group_pattern: regular expression; the group is its first capturing
            group (or the whole match) with ``re.match`` on the file stem.
            Default :data:`MADS_GROUP_PATTERN`. A stem it does not match is
            its own group (and a warning).
    """

    def __init__(self, spec: SourceSpec, group_pattern: Optional[str] = None, **options):
        try:
            self.group_pattern = re.compile(group_pattern or MADS_GROUP_PATTERN)
        except re.error as err:
            raise ConfigError(f"group_pattern={group_pattern!r}: not a regular expression ({err})") from None
        self._unmatched: List[str] = []
        super().__init__(spec, **options)

    def _find_root(self, path: str) -> str:
        # The Kaggle archive nests images/ and masks/ one or two folders down.
        for candidate in (path, *fileio.glob(fileio.join(path, "*")), *fileio.glob(fileio.join(path, "*", "*"))):
            if fileio.isdir(fileio.join(candidate, "images")) and fileio.isdir(fileio.join(candidate, "masks")):
                return candidate
        return super()._find_root(path)

    def group_of(self, stem: str) -> str:
        match = self.group_pattern.match(stem)
        if match is None:
            self._unmatched.append(stem)
            return stem
        return match.group(1) if match.groups() and match.group(1) else match.group(0)

    def _list(self):
        pairs, problems, warnings = super()._list()
        if self._unmatched:
            warnings.append((fileio.join(self.root, "images"), f"{len(self._unmatched)} file name(s) do not match "
                             f"group_pattern {self.group_pattern.pattern!r} and form their own group "
                             f"(e.g. {self._unmatched[0]!r})"))
        return pairs, problems, warnings


PH2_IMAGES_FOLDER = "PH2 Dataset images"


class Ph2Source(FileSource):
    """``ph2:PATH``: the PH2 archive as unpacked (see the module docstring)."""

    def _find_root(self, path: str) -> str:
        if not fileio.isdir(path):
            raise DataError(f"data source {self.spec.text!r}: {path} is not a folder")
        for candidate in (fileio.join(path, PH2_IMAGES_FOLDER), fileio.join(path, "PH2Dataset", PH2_IMAGES_FOLDER),
                          path):
            if fileio.isdir(candidate) and (fileio.basename(candidate) == PH2_IMAGES_FOLDER
                                            or _ph2_cases(candidate)):
                return candidate
        raise DataError(f"data source {self.spec.text!r}: no '{PH2_IMAGES_FOLDER}' folder in {path} (expected "
                        f"PATH/{PH2_IMAGES_FOLDER}/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp)")

    def _list(self):
        problems, pairs = [], []
        cases = _ph2_cases(self.root)
        if not cases:
            raise DataError(f"data source {self.spec.text!r}: no IMDxxx folders in {self.root}")
        for case in cases:
            name = fileio.basename(case)
            image = _find_by_stem(fileio.join(case, f"{name}_Dermoscopic_Image"), name)
            mask = _find_by_stem(fileio.join(case, f"{name}_lesion"), f"{name}_lesion")
            if image is None:
                problems.append((fileio.join(case, f"{name}_Dermoscopic_Image", f"{name}.bmp"), "missing image"))
            if mask is None:
                problems.append((fileio.join(case, f"{name}_lesion", f"{name}_lesion.bmp"), "missing mask"))
            if image is not None and mask is not None:
                pairs.append(Pair(name, name, image, mask))
        return pairs, problems, []


def _ph2_cases(folder: str) -> List[str]:
    return [fileio.join(folder, name) for name in fileio.listdir(folder)
            if re.fullmatch(r"IMD\d+", name) and fileio.isdir(fileio.join(folder, name))]


def _find_by_stem(folder: str, stem: str) -> Optional[str]:
    """``folder/stem.<any image extension>`` (case-insensitive extension), else None."""
    if not fileio.isdir(folder):
        return None
    for name in fileio.listdir(folder):
        if fileio.stem(name) == stem and _is_image_file(name):
            return fileio.join(folder, name)
    return None


# --------------------------------------------------------------------------- openers

_FILE_OPTIONS = ("num_classes", "skip_bad", "mask_threshold", "ignore_class", "colormap")
# Options a file SOURCE string may carry after '?' (folder:PATH?colormap=FILE).
STRING_OPTIONS = ("colormap",)


def _open(cls, spec: SourceSpec, options, extra=()):
    unknown = sorted(set(options) - set(_FILE_OPTIONS) - set(extra))
    if unknown:
        accepted = ", ".join(_FILE_OPTIONS + tuple(extra))
        raise ConfigError(f"data source {spec.text!r}: unknown option(s) {', '.join(unknown)}; accepted: {accepted}")
    options = dict(options)
    for key, text in spec.options:
        if key not in STRING_OPTIONS:
            raise ConfigError(f"data source {spec.text!r}: unknown option {key!r}; accepted after '?': "
                              f"{', '.join(STRING_OPTIONS)}")
        given = options.get(key)
        if given is not None and fileio.fspath(given) != fileio.fspath(text):
            raise ConfigError(f"data source {spec.text!r}: {key}={text!r} in the string, but {key}={given!r} "
                              "given too")
        options[key] = text
    return cls(spec, **options)


@register_source("folder")
def open_folder(spec: SourceSpec, **options) -> FolderSource:
    """Opener for ``folder:PATH``; options: ``num_classes``, ``skip_bad``, ``mask_threshold``."""
    return _open(FolderSource, spec, options)


@register_source("mads")
def open_mads(spec: SourceSpec, **options) -> MadsSource:
    """Opener for ``mads:PATH``; options: those of ``folder`` and ``group_pattern``."""
    return _open(MadsSource, spec, options, extra=("group_pattern",))


@register_source("ph2")
def open_ph2(spec: SourceSpec, **options) -> Ph2Source:
    """Opener for ``ph2:PATH``; options: ``num_classes``, ``skip_bad``, ``mask_threshold``."""
    return _open(Ph2Source, spec, options)
