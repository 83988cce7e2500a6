"""Graph decoders shared by the training pipeline, ``tfseg predict`` and the serving signatures.

``tf.io.decode_image`` reads PNG, JPEG, GIF, WebP and 24/32-bit BMP, but not
1- or 4-bit BMP (an error), and it returns the palette *indices* of an 8-bit
colour-mapped BMP as grey levels (silently wrong colours). The functions here
add a graph decoder for uncompressed palette BMPs (1, 4 and 8 bits per pixel,
colours looked up in the file's colour table) in front of it, so that every
consumer decodes these files the same way and the same as Pillow does.

Pixel rules (the graph twins of :func:`tfseg.data.files.rgb_array` and
:func:`tfseg.data.files.mask_array`):

* :func:`decode_rgb`: RGB uint8 ``[H, W, 3]``; palette BMPs use their colours.
* :func:`decode_mask`: one uint8 channel ``[H, W, 1]`` of raw values: grey as
  is; grey+alpha: the grey channel; RGB(A): the maximum over R, G, B; an image
  whose colour is the same everywhere but whose alpha channel varies (a mask
  drawn only in the alpha channel) gives its alpha channel. Palette BMP: the
  grey level when the colour table is Pillow's "grey" one (``[0, 255]`` for
  2 colours, ``0..n-1`` otherwise), else the palette index.

Example:
    >>> import tensorflow as tf
    >>> from tfseg.data.decode import decode_rgb                # doctest: +SKIP
    >>> decode_rgb(tf.io.read_file("IMD002.bmp")).shape          # doctest: +SKIP
    TensorShape([None, None, 3])
"""

from __future__ import annotations

import tensorflow as tf

_BMP_HEADER = 54


def _uint(header, start: int, size: int):
    """Little-endian unsigned integer of ``size`` bytes at ``start`` of a uint8 vector, as int64."""
    value = tf.constant(0, tf.int64)
    for i in range(size):
        value += tf.bitwise.left_shift(tf.cast(header[start + i], tf.int64), tf.constant(8 * i, tf.int64))
    return value


def _bmp_header(data):
    """The first 54 bytes of ``data`` as uint8 (zero-padded when shorter)."""
    padded = tf.strings.join([tf.strings.substr(data, 0, _BMP_HEADER), tf.constant(b"\0" * _BMP_HEADER)])
    return tf.io.decode_raw(tf.strings.substr(padded, 0, _BMP_HEADER), tf.uint8)


def is_palette_bmp(data):
    """Scalar bool: ``data`` is an uncompressed BMP with 1, 4 or 8 bits per pixel (a colour table)."""
    header = _bmp_header(data)
    magic = tf.equal(tf.strings.substr(data, 0, 2), b"BM")
    bits = _uint(header, 28, 2)
    compression = _uint(header, 30, 4)
    dib = _uint(header, 14, 4)
    return (magic & (tf.strings.length(data) >= _BMP_HEADER) & (dib >= 40)
            & ((bits == 1) | (bits == 4) | (bits == 8)) & (compression == 0))


def _palette_bmp(data):
    """``(indices uint8 [H, W], colour table uint8 [N, 3] RGB)`` of an uncompressed palette BMP."""
    header = _bmp_header(data)
    offset = _uint(header, 10, 4)
    dib = _uint(header, 14, 4)
    width = _uint(header, 18, 4)
    height = _uint(header, 22, 4)
    height = tf.where(height >= 2**31, height - 2**32, height)  # negative: rows stored top-down
    bits = _uint(header, 28, 2)
    used = _uint(header, 46, 4)
    colours = tf.where(used > 0, used, tf.bitwise.left_shift(tf.constant(1, tf.int64), bits))
    table = tf.io.decode_raw(tf.strings.substr(data, 14 + dib, colours * 4), tf.uint8)
    table = tf.reverse(tf.reshape(table, [-1, 4])[:, :3], axis=[1])  # BGRX -> RGB
    rows = tf.abs(height)
    stride = (width * bits + 31) // 32 * 4  # rows are padded to 4 bytes
    pixels = tf.io.decode_raw(tf.strings.substr(data, offset, stride * rows), tf.uint8)
    tf.debugging.assert_equal(tf.size(pixels, tf.int64), stride * rows,
                              message="BMP file is truncated: fewer pixel bytes than its header says")
    per_byte = 8 // bits
    shifts = tf.cast(8 - bits * (tf.range(per_byte) + 1), tf.uint8)
    unpacked = tf.bitwise.bitwise_and(
        tf.bitwise.right_shift(tf.reshape(pixels, tf.stack([rows, stride]))[..., None], shifts),
        tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1, tf.uint8),
    )
    indices = tf.reshape(unpacked, tf.stack([rows, stride * per_byte]))[:, :width]
    indices = tf.cond(height > 0, lambda: tf.reverse(indices, axis=[0]), lambda: indices)
    # An index past the table reads its last colour (Pillow's behaviour for such files).
    indices = tf.minimum(indices, tf.cast(tf.shape(table)[0] - 1, tf.uint8))
    return indices, table


def _palette_bmp_rgb(data):
    indices, table = _palette_bmp(data)
    return tf.gather(table, tf.cast(indices, tf.int32))


def _palette_bmp_mask(data):
    indices, table = _palette_bmp(data)
    count = tf.shape(table)[0]
    grey_levels = tf.cond(count == 2, lambda: tf.constant([0, 255], tf.int32), lambda: tf.range(count))
    grey = tf.reduce_all(tf.cast(table, tf.int32) == grey_levels[:, None])
    values = tf.cond(grey, lambda: tf.gather(table[:, 0], tf.cast(indices, tf.int32)), lambda: indices)
    return values[..., None]


def decode_rgb(data):
    """Encoded PNG/JPEG/GIF/WebP/BMP bytes (scalar string) -> RGB uint8 ``[H, W, 3]`` (see the module docstring)."""
    data = tf.convert_to_tensor(data, tf.string)
    image = tf.cond(
        is_palette_bmp(data),
        lambda: _palette_bmp_rgb(data),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    return tf.ensure_shape(image, [None, None, 3])


def mask_channel(mask):
    """A decoded mask ``[H, W, C]`` (C = 1..4) -> ``[H, W, 1]`` by the mask rule of the module docstring."""
    channels = tf.shape(mask)[-1]

    def colour_or_alpha():
        colour = tf.cond(channels % 2 == 0, lambda: mask[..., : channels - 1], lambda: mask)
        alpha = mask[..., -1:]
        flat_colour = tf.reduce_all(colour == colour[:1, :1, :])
        varying_alpha = tf.reduce_any(alpha != alpha[:1, :1, :])
        use_alpha = (channels % 2 == 0) & flat_colour & varying_alpha
        return tf.cond(use_alpha, lambda: alpha, lambda: tf.reduce_max(colour, axis=-1, keepdims=True))

    return tf.cond(channels == 1, lambda: mask, colour_or_alpha)


def decode_mask(data):
    """Encoded mask bytes -> one uint8 channel ``[H, W, 1]`` (see the module docstring)."""
    data = tf.convert_to_tensor(data, tf.string)
    mask = tf.cond(
        is_palette_bmp(data),
        lambda: _palette_bmp_mask(data),
        lambda: mask_channel(tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)),
    )
    return tf.ensure_shape(mask, [None, None, 1])
