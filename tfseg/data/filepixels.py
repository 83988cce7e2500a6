"""Pixel rules of image and mask files, Pillow side (the file check, ``predict``, the TFDS builders).

One definition each; the graph decoders of :mod:`tfseg.data.decode` are their TensorFlow
twins (checked equal, file by file, by ``tests/test_decode_formats.py``), and
:func:`tfseg.data.filecheck.graph_decoder` says when a twin gives the same pixels.

* image -> RGB uint8: grayscale is repeated to 3 channels, alpha is dropped,
  palette images use their colours, 16-bit images keep their high byte.
* mask -> one channel of raw values: grayscale as is; grayscale+alpha: the gray
  channel; RGB(A): the maximum over R, G, B (so "any channel > 127" is white); a mask
  drawn only in the alpha channel (colour the same everywhere, alpha varying): its
  alpha channel; palette PNG/GIF/BMP: the palette INDEX (not the colour; a BMP whose
  colour table is Pillow's grey one: the grey level); 1-bit: 0/255; 16-bit: as is when
  all values fit in 8 bits (class ids), divided by 257 when all are multiples of 257
  (0/65535), else refused; float: refused when fractional or negative.

Orientation: both are read as a viewer shows the file: its EXIF Orientation tag is
applied by Pillow's ``ImageOps.exif_transpose`` (:func:`upright`, the one place on this
side; :func:`tfseg.data.decode.orient` is the graph's twin), so a photo turned by its
camera pairs with a mask drawn on the photo as displayed.

What the raw values then mean (foreground, class ids) is :mod:`tfseg.masks`.
"""

from __future__ import annotations

import io
from typing import Sequence, Tuple

import numpy as np


def open_bytes(data: bytes):
    """A Pillow image of an encoded file's bytes (read whole: one request on an object store, and
    Pillow's decoders seek freely in memory). Use it as a context manager."""
    from PIL import Image

    return Image.open(io.BytesIO(data))


_ORIENTATION = 0x0112


def orientation(image, data: bytes = None) -> int:
    """The EXIF Orientation (1..8) that :func:`upright` applies to a Pillow image; 1 when none.

    ``data`` (the file's bytes), when given, spares loading a PNG's pixels to look for an
    ``eXIf`` chunk after them when it has none.
    """
    if image.format == "PNG" and "exif" not in image.info and data is not None and b"eXIf" not in data:
        return 1
    value = image.getexif().get(_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def displayed_size(image, data: bytes = None) -> Tuple[int, int]:
    """``(width, height)`` of a Pillow image as displayed, before its pixels are read.

    Turned a quarter (orientations 5..8): the stored size transposed, except for a TIFF, whose
    Pillow reader reports the displayed size already (and turns the pixels itself when loading).
    """
    width, height = image.size
    if orientation(image, data) >= 5 and image.format != "TIFF":
        return height, width
    return width, height


def exif_block_orientation(image) -> int:
    """The Orientation tag of the image's EXIF block alone (1 when none), not an XMP one: what the
    graph decoders read (:func:`tfseg.data.decode.exif_orientation`)."""
    from PIL import Image

    exif = Image.Exif()
    if image.info.get("exif"):
        exif.load(image.info["exif"])
    value = exif.get(_ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def graph_orients(image, data: bytes = None) -> bool:
    """Whether the graph decoders show this image as :func:`upright` does: no orientation, or a
    JPEG's EXIF one (:func:`tfseg.data.decode.exif_orientation`); not a PNG/WebP/TIFF tag, nor
    a JPEG's XMP-only one."""
    value = orientation(image, data)
    return value == 1 or (image.format == "JPEG" and exif_block_orientation(image) == value)


def upright(image):
    """A Pillow image as displayed: its EXIF orientation applied (``ImageOps.exif_transpose``), else itself."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image) if orientation(image) != 1 else image


def rgb_array(image) -> np.ndarray:
    """A Pillow image as RGB uint8 ``[H, W, 3]``, as displayed (the image rule of the module docstring)."""
    image = upright(image)
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
    return mask_values(image)[0]


def binary_mask(image, threshold=None) -> np.ndarray:
    """A Pillow mask as uint8 0/1 ``[H, W, 1]``: one channel (:func:`mask_array`), then the foreground
    rule of :func:`tfseg.masks.foreground` (the TFDS builders; the file sources apply it in the graph)."""
    from tfseg.masks import foreground

    values = mask_array(image)
    return foreground(values, top=values.max(initial=0), threshold=threshold).astype(np.uint8)[..., None]


def _alpha_or(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # A mask drawn only in the alpha channel: the colour is the same everywhere, the alpha is not.
    if np.all(colour == colour[:1, :1]) and np.any(alpha != alpha.flat[0]):
        return alpha
    return colour.max(axis=-1) if colour.ndim == 3 else colour


def mask_values(image) -> Tuple[np.ndarray, str]:
    """``(one uint8 channel [H, W], why the encoding hides the mask or "")`` of a Pillow mask, as displayed."""
    image = upright(image)
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
                found = describe_values(np.unique(values)[:9].astype(int).tolist())
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


def read_rgb(path) -> np.ndarray:
    """An image file as the training pipeline reads it: RGB uint8 ``[H, W, 3]`` (for ``tfseg predict``).

    The graph decoder (:func:`tfseg.data.decode.decode_rgb`, as in the serving
    graph) where it gives the same pixels as :func:`rgb_array`, else Pillow:
    so every file training accepts (TIFF, WebP, palette and 1-bit BMP, CMYK
    JPEG, 16-bit PNG...) is read, and read the same way.

    Raises:
        OSError, ValueError, tf.errors.OpError: the file cannot be decoded.
    """
    from tfseg import fileio
    from tfseg.data.filecheck import graph_decoder

    data = fileio.read_bytes(path)
    with open_bytes(data) as image:
        if not graph_decoder(data, image.format or "", image.mode, False, graph_orients(image, data)):
            return rgb_array(image)
    from tfseg.data.decode import decode_rgb

    return decode_rgb(data).numpy()


def describe_values(values: Sequence[int]) -> str:
    """``{0, 1, 255}``, or ``(56 distinct values, 0..255)`` when there are more than 8 (for messages)."""
    values = sorted(values)
    if len(values) > 8:
        return f"({len(values)} distinct values, {values[0]}..{values[-1]})"
    return "{" + ", ".join(map(str, values)) + "}"

