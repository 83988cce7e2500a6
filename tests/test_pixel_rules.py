"""Edges of the Pillow-side pixel rules (tfseg.data.filepixels) and the byte-level checks (tfseg.data.filecheck)."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tfseg.data.filecheck import _ADAM7, check_file, png_problem
from tfseg.data.filepixels import mask_values, rgb_array


def test_16_bit_images_keep_their_high_byte_only_above_8_bit_values():
    for values, expected in (([0, 255], [0, 255]), ([0, 256], [0, 1]), ([0, 65535], [0, 255])):
        image = Image.fromarray(np.array([values], np.uint16))
        assert rgb_array(image)[..., 0].tolist() == [expected], values
    wide = Image.fromarray(np.array([[0, 70000 * 256]], np.int32), "I")  # 32-bit: clipped, never wrapped
    assert rgb_array(wide)[..., 0].tolist() == [[0, 255]]


def test_16_bit_and_float_masks_read_as_8_bit_values_or_say_why_not():
    def read(array, mode=None):
        return mask_values(Image.fromarray(array, mode) if mode else Image.fromarray(array))

    values, why = read(np.array([[0, 65535]], np.uint16))
    assert values.tolist() == [[0, 255]] and why == ""  # 0/65535: scaled from 8 bits
    values, why = read(np.array([[0, 3]], np.uint16))
    assert values.tolist() == [[0, 3]] and why == ""  # class ids stored in 16 bits
    assert "do not fit 8 bits" in read(np.array([[0, 256]], np.uint16))[1]
    assert "negative" in read(np.array([[-1, 3]], np.int32), "I")[1]
    values, why = read(np.array([[0.0, 255.0]], np.float32), "F")
    assert values.tolist() == [[0, 255]] and why == ""
    assert "fractional" in read(np.array([[0.0, 0.5]], np.float32), "F")[1]


def test_cmyk_and_other_modes_are_converted_before_the_channel_rule():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[:, 1:] = 255
    expected, _ = mask_values(Image.fromarray(rgb))
    values, why = mask_values(Image.fromarray(rgb).convert("CMYK"))
    assert values.tolist() == expected.tolist() == [[0, 255, 255]] * 2 and why == ""


def adam7_rows(pixels: np.ndarray) -> bytes:
    """The filtered rows (filter byte 0) of an 8-bit grey image's seven Adam7 passes, as a PNG stores them."""
    return b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in _ADAM7 for row in pixels[y0::dy, x0::dx]
                    if row.size)


def interlaced_png(rows: bytes, width: int, height: int) -> bytes:
    """An Adam7-interlaced 8-bit grey PNG holding ``rows`` (Pillow writes no interlaced PNGs)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (1, 5), (5, 1), (3, 7), (9, 9), (16, 13)])
def test_interlaced_pngs_of_every_small_size_are_whole(height, width):
    pixels = (np.arange(height * width).reshape(height, width) * 7 % 256).astype(np.uint8)
    rows = adam7_rows(pixels)
    data = interlaced_png(rows, width, height)
    with Image.open(io.BytesIO(data)) as image:  # the reference decoder agrees the file is what we wrote
        assert image.info.get("interlace") == 1 and np.array_equal(np.asarray(image), pixels)
    assert png_problem(data) == ""
    assert "cut short" in png_problem(interlaced_png(rows[:-1], width, height))


def test_8_bit_colour_bmp_images_decode_in_the_graph(tmp_path):
    palette = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4), "P")
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, (3 * i) % 256)])
    path = tmp_path / "p.bmp"
    palette.save(path)
    info = check_file(str(path), is_mask=False)
    assert (info.format, info.mode, info.decoder) == ("BMP", "P", "palette_bmp")


@pytest.mark.parametrize("height, width", [(1, 1), (3, 5), (20, 1), (16, 16)])
def test_jpegs_of_any_size_down_to_one_pixel_are_checked(tmp_path, height, width):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(path, quality=90)
    assert check_file(str(path), is_mask=False).error == ""
    data = path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 40])
    assert check_file(str(tmp_path / "cut.jpg"), is_mask=False).error != ""


def test_an_opaque_rgba_grey_mask_is_not_a_colour_mask(tmp_path):
    from tfseg.data import open_source

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    ids = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    rgba = np.dstack([ids, ids, ids, np.full_like(ids, 255)])  # grey ids, an opaque alpha channel
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "masks" / "a.png")
    source = open_source(f"folder:{tmp_path}", num_classes=3)
    assert source.problems() == []
    np.testing.assert_array_equal(next(source.examples(["a"]).as_numpy_iterator())["mask"][..., 0], ids)
