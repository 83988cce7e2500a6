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

Orientation: every decoder here returns the image as a viewer shows it. A JPEG's
EXIF Orientation tag (APP1 ``Exif``, IFD0 tag 0x0112, values 2..8) is read in
the graph (:func:`exif_orientation`) and applied (:func:`orient`), the twin of
Pillow's ``ImageOps.exif_transpose`` (:func:`tfseg.data.filepixels.upright`). Other
formats are decoded as stored: a PNG, WebP or TIFF with an orientation tag goes
through Pillow (:func:`tfseg.data.filecheck.graph_decoder`); the serving graph's
``serving_bytes`` reads it as stored.

Example:
    >>> import tensorflow as tf
    >>> from tfseg.data.decode import decode_rgb                # doctest: +SKIP
    >>> decode_rgb(tf.io.read_file("IMD002.bmp")).shape          # doctest: +SKIP
    TensorShape([None, None, 3])
"""

from __future__ import annotations

import tensorflow as tf

_BMP_HEADER = 54


# How many IFD0 entries the orientation search reads (TIFF sorts tags: 0x0112 is among the first 8).
_IFD_ENTRIES = 64
# Junk bytes and segments walked before the first APP1 (Pillow skips junk byte by byte too).
_JPEG_STEPS = 4096


def _read(data, pos, n: int):
    """int32 ``[n]``: ``n`` bytes of ``data`` from ``pos``, zeros past its end (no out-of-range error)."""
    pos = tf.clip_by_value(tf.cast(pos, tf.int32), 0, tf.strings.length(data))
    chunk = tf.strings.join([tf.strings.substr(data, pos, n), tf.constant(b"\0" * n)])
    return tf.ensure_shape(tf.cast(tf.io.decode_raw(tf.strings.substr(chunk, 0, n), tf.uint8), tf.int32), [n])


def _exif_segment(data):
    """``(start, end)`` of the TIFF block of a JPEG's first APP1 ``Exif`` segment; ``(-1, -1)`` when none.

    Walks the JPEG markers as Pillow does: fill and junk bytes one at a time, markers without
    a length (SOI, RSTn, TEM) two bytes, every other segment by its length, up to SOS or EOI.
    """
    length = tf.strings.length(data)

    def step(pos, start, end, done):
        head = _read(data, pos, 4)
        junk = (head[0] != 0xFF) | (head[1] == 0xFF)
        marker = head[1]
        standalone = (marker == 0x00) | (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD8))
        size = head[2] * 256 + head[3]
        exif = ~junk & (marker == 0xE1) & tf.equal(tf.strings.substr(data, tf.minimum(pos + 4, length), 6),
                                                     b"Exif\0\0")
        stop = ~junk & ((marker == 0xDA) | (marker == 0xD9))
        after = tf.where(junk, pos + 1, tf.where(standalone, pos + 2, pos + 2 + size))
        return (after, tf.where(exif, pos + 10, start), tf.where(exif, tf.minimum(pos + 2 + size, length), end),
                done | exif | stop)

    jpeg = tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8")
    _, start, end, _ = tf.while_loop(
        lambda pos, start, end, done: ~done & (pos + 1 < length), step,
        (tf.constant(2), tf.constant(-1), tf.constant(-1), ~jpeg), maximum_iterations=_JPEG_STEPS)
    return start, end


def exif_orientation(data):
    """Scalar int32 1..8: the EXIF Orientation tag of encoded JPEG bytes, as Pillow reads it (the first
    APP1 ``Exif`` segment, IFD0, the first value of a BYTE, SHORT or LONG entry held inline; the last
    of repeated entries); 1 for other formats, no tag, or a value outside 1..8."""
    start, end = _exif_segment(data)
    header = _read(data, start, 8)
    little = (header[0] == 0x49) & (header[1] == 0x49)  # "II"; "MM" is big-endian
    valid = (start >= 0) & (little | ((header[0] == 0x4D) & (header[1] == 0x4D)))

    def number(values):  # unsigned integer of 2 or 4 bytes in the block's byte order (last axis)
        weights = 256 ** tf.range(values.shape[-1] - 1, -1, -1, dtype=tf.int64)
        weights = tf.where(little, tf.reverse(weights, [0]), weights)
        return tf.reduce_sum(tf.cast(values, tf.int64) * weights, axis=-1)

    ifd = tf.cast(start, tf.int64) + number(header[4:8])
    count = number(_read(data, ifd, 2))
    entries = tf.reshape(_read(data, ifd + 2, 12 * _IFD_ENTRIES), [_IFD_ENTRIES, 12])
    index = tf.range(_IFD_ENTRIES, dtype=tf.int64)
    kind, values_count = number(entries[:, 2:4]), number(entries[:, 4:8])
    # BYTE, SHORT or LONG values held in the entry itself (Pillow takes the first of several).
    inline = (values_count >= 1) & (((kind == 1) & (values_count <= 4)) | ((kind == 3) & (values_count <= 2))
                                    | ((kind == 4) & (values_count == 1)))
    match = ((number(entries[:, 0:2]) == 0x0112) & inline & (index < count)
             & (ifd + 2 + 12 * (index + 1) <= tf.cast(end, tf.int64)))
    values = tf.where(kind == 1, tf.cast(entries[:, 8], tf.int64),
                      tf.where(kind == 3, number(entries[:, 8:10]), number(entries[:, 8:12])))
    # The last matching entry, as Pillow's directory keeps the last of repeated tags.
    last = tf.reduce_max(tf.where(match, index, -1))
    value = tf.where(last >= 0, tf.gather(values, tf.maximum(last, 0)), 1)
    return tf.cast(tf.where(valid & (value >= 1) & (value <= 8), value, 1), tf.int32)


def orient(image, orientation):
    """A decoded image ``[H, W, C]`` as displayed under EXIF ``orientation`` (scalar 1..8; no ``tf.cond``).

    2: mirrored left-right; 3: turned 180 degrees; 4: mirrored top-bottom; 5: transposed;
    6: turned 90 degrees clockwise; 7: transversed; 8: turned 90 degrees counter-clockwise.
    Each is a transpose (5..8) followed by reversing rows and/or columns.
    """
    swap = orientation >= 5
    image = tf.transpose(image, tf.where(swap, [1, 0, 2], [0, 1, 2]))
    rows = (orientation == 3) | (orientation == 4) | (orientation == 7) | (orientation == 8)
    columns = (orientation == 2) | (orientation == 3) | (orientation == 6) | (orientation == 7)
    return tf.reverse(image, tf.boolean_mask(tf.constant([0, 1]), tf.stack([rows, columns])))


def upright(image, data):
    """``image`` decoded from ``data``, as displayed (:func:`orient` by :func:`exif_orientation`)."""
    return orient(image, exif_orientation(data))


class _Header:
    """The BMP header fields tfseg reads, from one ``decode_raw`` (few ops: tracing stays cheap).

    Bytes 2..53 as 13 little-endian int32 words: word k starts at byte 2 + 4k.
    """

    def __init__(self, data):
        padded = tf.strings.join([tf.strings.substr(data, 0, _BMP_HEADER), tf.constant(b"\0" * _BMP_HEADER)])
        words = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 2, _BMP_HEADER - 2), tf.int32), tf.int64)
        words = tf.where(words < 0, words + 2**32, words)  # as unsigned
        self.offset, self.dib, self.width = words[2], words[3], words[4]
        self.height = tf.where(words[5] >= 2**31, words[5] - 2**32, words[5])  # negative: rows stored top-down
        self.bits = tf.bitwise.right_shift(words[6], 16)
        self.compression, self.used = words[7], words[11]


def is_palette_bmp(data):
    """Scalar bool: ``data`` is an uncompressed BMP with 1, 4 or 8 bits per pixel (a colour table)."""
    header = _Header(data)
    bits = header.bits
    return (tf.equal(tf.strings.substr(data, 0, 2), b"BM") & (tf.strings.length(data) >= _BMP_HEADER)
            & (header.dib >= 40) & ((bits == 1) | (bits == 4) | (bits == 8)) & (header.compression == 0))


def _palette_table(data, header):
    """The colour table of a palette BMP as uint8 ``[N, 3]`` RGB."""
    colours = tf.where(header.used > 0, header.used, tf.bitwise.left_shift(tf.constant(1, tf.int64), header.bits))
    table = tf.io.decode_raw(tf.strings.substr(data, 14 + header.dib, colours * 4), tf.uint8)
    return tf.reverse(tf.reshape(table, [-1, 4])[:, :3], axis=[1])  # BGRX -> RGB


def _palette_bmp(data, header, levels=None):
    """``(values uint8 [H, W], colour table uint8 [N, 3] RGB)`` of an uncompressed palette BMP.

    ``values``: the palette index of each pixel, or ``levels[index]`` when ``levels``
    (uint8 ``[N]``) is given. Work on the full-size image is one lookup and one slice.
    """
    width, height, bits = header.width, header.height, header.bits
    table = _palette_table(data, header)
    count = tf.shape(table, out_type=tf.int64)[0]
    rows = tf.abs(height)
    stride = (width * bits + 31) // 32 * 4  # rows are padded to 4 bytes
    pixels = tf.io.decode_raw(tf.strings.substr(data, header.offset, stride * rows), tf.uint8)
    tf.debugging.assert_equal(tf.size(pixels, tf.int64), stride * rows,
                              message="BMP file is truncated: fewer pixel bytes than its header says")
    pixels = tf.reshape(pixels, tf.stack([rows, stride]))
    # Rows are stored bottom-up unless the height is negative (tf.where, not tf.cond: a cond's branch
    # functions make every dataset iterator slower to create).
    pixels = tf.where(height > 0, tf.reverse(pixels, axis=[0]), pixels)
    per_byte = 8 // bits
    # A 256-row table unpacks each byte into its 8 // bits indices (most significant first), already
    # clipped to the colour table (an index past it reads the last colour, as Pillow does) and mapped.
    shifts = 8 - bits * (tf.range(per_byte, dtype=tf.int64) + 1)
    unpack = tf.bitwise.bitwise_and(tf.bitwise.right_shift(tf.range(256, dtype=tf.int64)[:, None], shifts[None, :]),
                                    tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1)
    unpack = tf.minimum(unpack, count - 1)
    unpack = tf.cast(unpack, tf.uint8) if levels is None else tf.gather(levels, unpack)
    values = tf.gather(unpack, tf.cast(pixels, tf.int32))
    return tf.reshape(values, tf.stack([rows, stride * per_byte]))[:, :width], table


def _palette_bmp_rgb(data):
    indices, table = _palette_bmp(data, _Header(data))
    return tf.gather(table, tf.cast(indices, tf.int32))


def palette_bmp_mask(data):
    """An uncompressed 1/4/8-bit palette BMP mask -> uint8 ``[H, W, 1]`` (the mask rule; no ``tf.cond``)."""
    header = _Header(data)
    table = _palette_table(data, header)
    count = tf.shape(table)[0]
    grey_levels = tf.range(count) * tf.where(count == 2, 255, 1)  # Pillow's grey tables: [0, 255] or 0..n-1
    grey = tf.reduce_all(tf.cast(table, tf.int32) == grey_levels[:, None])
    # A grey table's level, else the index; 255 * index for a two-colour grey table.
    scale = tf.where(grey & (count == 2), 255, 1)
    levels = tf.cast(tf.range(count) * scale, tf.uint8)
    values, _ = _palette_bmp(data, header, levels)
    return tf.ensure_shape(values[..., None], [None, None, 1])


def palette_bmp_rgb(data):
    """An uncompressed 1/4/8-bit palette BMP image -> RGB uint8 ``[H, W, 3]`` (no ``tf.cond``)."""
    return tf.ensure_shape(_palette_bmp_rgb(data), [None, None, 3])


def image_rgb(data):
    """``tf.io.decode_image`` to RGB uint8 ``[H, W, 3]`` (formats it reads right: see the module docstring)."""
    return tf.ensure_shape(upright(tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
                                   data), [None, None, 3])


def image_mask(data, channels: int):
    """``tf.io.decode_image`` of a mask stored with ``channels`` channels (1-4) -> ``[H, W, 1]`` (no ``tf.cond``)."""
    # One or two channels: decoded as stored (decode_image refuses channels=1 for BMP and channels=2).
    mask = tf.io.decode_image(data, channels=0 if channels <= 2 else channels, dtype=tf.uint8,
                              expand_animations=False)
    mask = tf.ensure_shape(upright(mask, data), [None, None, channels])
    if channels == 1:
        return mask
    colour = mask[..., : channels - 1] if channels in (2, 4) else mask
    maximum = tf.reduce_max(colour, axis=-1, keepdims=True)
    if channels == 3:
        return maximum
    alpha = mask[..., -1:]
    use_alpha = tf.reduce_all(colour == colour[:1, :1, :]) & tf.reduce_any(alpha != alpha[:1, :1, :])
    return tf.where(use_alpha, alpha, maximum)


# Traced once per process (not once per dataset that uses them): a cold start pays it once.
@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def decode_rgb(data):
    """Encoded PNG/JPEG/GIF/WebP/BMP bytes (scalar string) -> RGB uint8 ``[H, W, 3]`` (see the module docstring)."""
    image = tf.cond(
        is_palette_bmp(data),
        lambda: _palette_bmp_rgb(data),
        lambda: upright(tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False), data),
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


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def decode_mask(data):
    """Encoded mask bytes -> one uint8 channel ``[H, W, 1]`` (see the module docstring)."""
    mask = tf.cond(
        is_palette_bmp(data),
        lambda: palette_bmp_mask(data),
        lambda: mask_channel(upright(tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False),
                                     data)),
    )
    return tf.ensure_shape(mask, [None, None, 1])
