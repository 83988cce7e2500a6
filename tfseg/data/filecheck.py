"""Byte-level checks of image and mask files, once, up front (the file sources, ``tfseg predict``).

Every file is read with Pillow and its pixel data is known to decode, not only
its header: masks are fully decoded; images are checked as cheaply as that can
be proved enough: a PNG's chunk CRCs, its IDAT stream inflated (zlib's Adler-32
included), the inflated size and every row's filter byte (:func:`png_problem`,
no unfiltering); an uncompressed BMP's header and that all its pixel bytes are
there (any byte is a valid pixel); a JPEG decoded at 1/8 scale (every block is
still entropy-decoded, so truncation and corruption show); other formats fully
decoded. :func:`check_files` runs in a thread pool (Pillow and zlib release the
GIL); results are cached per process by :func:`file_version`, so opening the
same folder for the train, val and test splits checks it once.

A file's width and height are read here, once (:attr:`FileInfo.width`,
:attr:`FileInfo.height`, from the file's header), and written ``WxH`` by
:func:`size_text` wherever a size is shown.

Example:
    >>> from tfseg.data.filecheck import check_file            # doctest: +SKIP
    >>> check_file("IMD002.bmp", is_mask=False).size            # doctest: +SKIP
    '768x560'
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfseg import fileio
from tfseg.data.bands import PHOTO, Form, file_form
from tfseg.data.filepixels import displayed_size, graph_orients, mask_values, open_bytes, orientation, upright

_CACHE_LIMIT = 200_000


def size_text(width: int, height: int) -> str:
    """``"WxH"``: how tfseg writes an image size (``inspect``, warnings)."""
    return f"{width}x{height}"


@dataclass(frozen=True)
class FileInfo:
    """What the up-front check learnt about one file.

    Attributes:
        format: Pillow's format name (``PNG``, ``JPEG``, ``BMP``, ``TIFF``...), ``""`` if unreadable.
        mode: Pillow's mode (``RGB``, ``L``, ``P``, ``I;16``...).
        width, height: pixels, as displayed (after the EXIF orientation).
        orientation: the EXIF orientation (1..8) applied to the stored pixels; 1 when none.
        values: for a mask, ``{raw value: pixel count}``; empty for an image.
        coloured: for a mask, True when some pixel has R, G, B not all equal.
        graph: True when a graph decoder gives the same pixels (no Pillow fallback needed).
        decoder: that graph decoder: ``"image"`` (``tf.io.decode_image``; for a mask
            ``"image:C"``, the file's C channels) or ``"palette_bmp"``; ``""``: Pillow.
        error: why the file cannot be read, else ``""``.
        encoding: for a mask, why its encoding hides the mask (read as one value), else ``""``.
        note: for a mask, how it was read when that is unusual (alpha as the mask), else ``""``.
        form: for an image, its bands and value type (:class:`tfseg.data.bands.Form`): ``PHOTO``
            for 8-bit photographs; data images have the decoder ``"bands"``.
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
    orientation: int = 1
    form: Form = PHOTO

    @property
    def size(self) -> str:
        return size_text(self.width, self.height)


_INFO_CACHE: Dict[Tuple, FileInfo] = {}


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


def graph_decoder(path, fmt: str, mode: str, is_mask: bool, orients: bool = True) -> str:
    """The graph decoder that yields exactly what :func:`~tfseg.data.filepixels.rgb_array` /
    :func:`~tfseg.data.filepixels.mask_array` do, ``""`` if none.

    ``"palette_bmp"``: an uncompressed 1/4/8-bit BMP (:mod:`tfseg.data.decode`);
    ``"image"`` (``"image:C"`` for a mask of C channels): ``tf.io.decode_image``.
    ``path`` may be the file's bytes. ``orients``: whether the graph shows the file's
    orientation as Pillow does (:func:`~tfseg.data.filepixels.graph_orients`); if not, Pillow.
    """
    if not orients:
        return ""
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
    try:
        data = fileio.read_bytes(path)
        if not is_mask:
            form, values = file_form(data)
            if not form.photo:  # data: every band and value kept (tfseg.data.bands), read as stored
                height, width = values.shape[:2]
                fmt = "TIFF" if data[:2] in (b"II", b"MM") else "PNG"
                return FileInfo(fmt, f"{form.channels}x{form.dtype}", width, height, graph=False, decoder="bands",
                                form=form)
        with open_bytes(data) as image:
            fmt, mode, (width, height) = image.format or "", image.mode, displayed_size(image, data)
            turn = orientation(image, data)
            orients = graph_orients(image, data)
            if not is_mask:
                _verify_image(data, image, fmt)
                decoder = graph_decoder(data, fmt, mode, False, orients)
                return FileInfo(fmt, mode, width, height, graph=bool(decoder), decoder=decoder, orientation=turn)
            image.load()
            image = upright(image)
            values, encoding = mask_values(image)
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
        decoder = graph_decoder(data, fmt, mode, True, orients)
        return FileInfo(fmt, mode, width, height, found, coloured, bool(decoder), encoding=encoding,
                        decoder=decoder, note=alpha, orientation=turn)
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable", reported per file
        if type(err).__name__ == "UnidentifiedImageError":
            return FileInfo(error="not an image format Pillow or TensorFlow can read")
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return FileInfo(error=reason if isinstance(err, ValueError) else f"{type(err).__name__}: {reason}")


def file_version(path: str) -> Tuple:
    """What changes whenever a file's bytes change: the key of the per-process check caches.

    ``(path, size, mtime)``, plus, for a local file, its inode and ctime: a file rewritten in
    place at the same size within the file system's mtime resolution, or with its mtime set
    back (``cp -p``, ``rsync -t``, ``os.utime``), still changes its ctime, which no program can set.

    Raises:
        OSError, tf.errors.OpError: the file cannot be read.
    """
    stat = fileio.stat(path)
    key = (fileio.abspath(path), stat.length, stat.mtime_nsec)
    if not fileio.is_url(path):
        local = os.stat(fileio.fspath(path))  # tf.io.gfile's stat has no inode or ctime
        key += (local.st_ino, local.st_ctime_ns)
    return key


def check_file(path: str, is_mask: bool) -> FileInfo:
    """:func:`_check_file`, cached by :func:`file_version`."""
    try:
        key = file_version(path) + (is_mask,)
    except Exception as err:  # noqa: BLE001 - OSError or tf.errors.OpError: reported per file
        return FileInfo(error=f"cannot read: {getattr(err, 'strerror', None) or getattr(err, 'message', None) or err}")
    info = _INFO_CACHE.get(key)
    if info is None:
        info = _check_file(path, is_mask)
        if len(_INFO_CACHE) > _CACHE_LIMIT:
            _INFO_CACHE.clear()
        _INFO_CACHE[key] = info
    return info


def check_files(paths_and_kinds: Sequence[Tuple[str, bool]]) -> List[FileInfo]:
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

