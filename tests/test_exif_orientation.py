"""Photos with an EXIF orientation are read as a viewer shows them, on every path: the file check's sizes,
training's decoders (graph and Pillow), ``tfseg predict`` and the serving graph's ``serving_bytes``.

The references are independent of tfseg's orientation code: TensorFlow's decode of the stored pixels,
turned by Pillow's own ``Image.transpose`` method for each orientation.
"""

import io
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg.cli import main
from tfseg.data import open_source
from tfseg.data.decode import decode_mask, decode_rgb, exif_orientation, image_mask, image_rgb
from tfseg.data.filecheck import check_file
from tfseg.data.files import mask_array, read_rgb, rgb_array
from tfseg.errors import DataError
from tfseg.export import export_saved_model

T = Image.Transpose
# What a viewer does to the stored pixels for each orientation (EXIF 2.3, as Pillow's exif_transpose).
SHOWN = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
         6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}
# What a camera stores so that the photo is shown upright (the inverse of SHOWN).
STORED = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
          6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}
HEIGHT, WIDTH = 24, 40  # displayed: landscape
EXTENSION = {"JPEG": "jpg", "WEBP": "webp", "PNG": "png", "TIFF": "tif"}


def turn(pixels: np.ndarray, method) -> np.ndarray:
    if method is None:
        return pixels
    squeeze = pixels.ndim == 3 and pixels.shape[-1] == 1
    turned = np.asarray(Image.fromarray(pixels[..., 0] if squeeze else pixels).transpose(method))
    return turned[..., None] if squeeze else turned


def encoded(pixels: np.ndarray, orientation: int, fmt: str = "JPEG", **options) -> bytes:
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, exif=exif.tobytes(), **options)
    return buffer.getvalue()


def scene(height=HEIGHT, width=WIDTH):
    """(upright photo uint8 [h, w, 3], its mask 0/255 [h, w]): a bright off-centre block on a dark ground."""
    mask = np.zeros((height, width), np.uint8)
    mask[2: height // 2, 3: width // 3] = 255
    photo = np.where(mask[..., None] > 0, 230, 25).astype(np.uint8).repeat(3, axis=-1)
    return photo, mask


def stored_decode(data: bytes) -> np.ndarray:
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_graph_decoders_show_each_orientation_as_pillow_turns_it(orientation):
    photo, _ = scene()
    data = encoded(turn(photo, STORED[orientation]), orientation, quality=95)
    expected = turn(stored_decode(data), SHOWN[orientation])
    assert expected.shape[:2] == (HEIGHT, WIDTH)
    assert int(exif_orientation(tf.constant(data))) == orientation
    for decoded in (decode_rgb(tf.constant(data)), image_rgb(tf.constant(data))):
        np.testing.assert_array_equal(decoded.numpy(), expected)
    grey = turn(tf.io.decode_image(data, channels=0, expand_animations=False).numpy(), SHOWN[orientation])
    np.testing.assert_array_equal(decode_mask(tf.constant(data)).numpy(), grey.max(axis=-1, keepdims=True))
    np.testing.assert_array_equal(image_mask(tf.constant(data), 3).numpy(), grey.max(axis=-1, keepdims=True))


def _exif_jpeg(tiff: bytes, app0: bool = True) -> bytes:
    """A JPEG whose APP1 holds ``tiff`` (written by hand: byte order and tag layout chosen by the test)."""
    plain = encoded(np.zeros((8, 16, 3), np.uint8), 0)
    app1 = b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\0\0" + tiff
    jfif = b"\xff\xe0\x00\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0" if app0 else b""
    body = plain[2:]
    while body[:2] in (b"\xff\xe0", b"\xff\xe1"):  # drop Pillow's own APP segments
        body = body[4 + struct.unpack(">H", body[2:4])[0] - 2:]
    return b"\xff\xd8" + jfif + app1 + body


def _tiff(order: str, entries, first_ifd: int = 8) -> bytes:
    fmt = "<" if order == "II" else ">"
    head = order.encode() + struct.pack(fmt + "HI", 42, first_ifd) + b"\0" * (first_ifd - 8)
    ifd = struct.pack(fmt + "H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack(fmt + "H", value) + b"\0\0" if kind == 3 else struct.pack(fmt + "I", value)
        ifd += struct.pack(fmt + "HHI", tag, kind, count) + packed
    return head + ifd + b"\0\0\0\0"


@pytest.mark.parametrize("tiff, expected", [
    (_tiff("MM", [(0x010F, 2, 4, 0), (0x0112, 3, 1, 6)]), 6),  # big-endian, after another tag
    (_tiff("II", [(0x0112, 4, 1, 8)], first_ifd=12), 8),         # a LONG, IFD0 not right after the header
    (_tiff("II", [(0x0112, 3, 1, 9)]), 1),                       # not an orientation
    (_tiff("II", [(0x0112, 3, 2, 6)]), 6),                       # two values: Pillow takes the first
    (_tiff("XX", [(0x0112, 3, 1, 6)]), 1),                       # no byte order
])
@pytest.mark.filterwarnings("ignore:Metadata Warning")
def test_exif_orientation_reads_the_tag_as_pillow_does(tiff, expected):
    for app0 in (True, False):
        data = _exif_jpeg(tiff, app0)
        with Image.open(io.BytesIO(data)) as image:
            pillow = image.getexif().get(0x0112, 1)
        assert (pillow if pillow in range(1, 9) else 1) == expected
        assert int(exif_orientation(tf.constant(data))) == expected


def test_exif_orientation_walks_segments_by_their_length_not_by_searching_bytes():
    # A comment segment whose text looks like an APP1 Exif segment (orientation 3) before the real one (6):
    # the markers are walked as Pillow walks them, so the comment is skipped whole.
    fake = _exif_jpeg(_tiff("II", [(0x0112, 3, 1, 3)]), app0=False)[2:40]
    comment = b"\xff\xfe" + struct.pack(">H", len(fake) + 2) + fake
    real = _exif_jpeg(_tiff("II", [(0x0112, 3, 1, 6)]))
    data = real[:2] + comment + real[2:]
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif().get(0x0112) == 6
    assert int(exif_orientation(tf.constant(data))) == 6


def test_exif_orientation_of_other_bytes_is_1():
    photo, _ = scene()
    for data in (b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00", encoded(photo, 0, "PNG"), encoded(photo, 0)):
        assert int(exif_orientation(tf.constant(data))) == 1


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG", "TIFF"])
def test_pillow_side_and_file_check_show_the_displayed_photo(tmp_path, fmt):
    photo, _ = scene()
    path = tmp_path / f"photo.{EXTENSION[fmt]}"
    path.write_bytes(encoded(turn(photo, STORED[6]), 6, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    info = check_file(str(path), is_mask=False)
    assert (info.width, info.height, info.orientation) == (WIDTH, HEIGHT, 6)
    # Only a JPEG's EXIF block is read in the graph: a PNG, WebP or TIFF tag sends the file to Pillow.
    assert info.graph == (fmt == "JPEG")
    with Image.open(path) as image:
        assert rgb_array(image).shape == (HEIGHT, WIDTH, 3)
    shown = read_rgb(str(path))
    assert shown.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(shown.astype(int) - photo).mean() < 4  # JPEG noise; a wrong turn differs by about 40


def write_pairs(root, orientations, fmt="JPEG", square=False):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    photo, mask = scene(WIDTH, WIDTH) if square else scene()
    for orientation in orientations:
        name = f"o{orientation}"
        options = {"quality": 95} if fmt == "JPEG" else {"lossless": True}
        (root / "images" / f"{name}.{EXTENSION[fmt]}").write_bytes(
            encoded(turn(photo, STORED[orientation]), orientation, fmt, **options))
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return photo, mask


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("square", [False, True])
def test_rotated_photos_and_upright_masks_load_aligned(tmp_path, fmt, square):
    orientations = [1, 2, 3, 6, 8]
    _, mask = write_pairs(tmp_path, orientations, fmt, square)
    source = open_source(f"folder:{tmp_path}")
    assert sorted(source.ids()) == [f"o{o}" for o in orientations]  # the rectangular ones are not refused
    for example in source.examples(source.ids()).as_numpy_iterator():
        image, labels = example["image"], example["mask"][..., 0]
        assert image.shape[:2] == mask.shape and np.array_equal(labels, mask // 255), example["id"]
        brightness = image.mean(axis=-1)
        assert brightness[labels == 1].min() > 180 and brightness[labels == 0].max() < 80, example["id"]


def test_a_mask_that_does_not_fit_names_the_orientation(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    photo, mask = scene()
    # Stored upright but tagged 6: shown portrait, so the landscape mask does not fit.
    (tmp_path / "images" / "a.jpg").write_bytes(encoded(photo, 6))
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError) as caught:
        open_source(f"folder:{tmp_path}")
    text = str(caught.value) + str(getattr(caught.value, "problems", ""))
    assert f"{WIDTH}x{HEIGHT} does not fit image {HEIGHT}x{WIDTH}" in text
    assert "EXIF orientation 6" in text


def test_an_invalid_orientation_reads_as_stored_and_an_xmp_only_one_through_pillow(tmp_path):
    photo, _ = scene()
    invalid = tmp_path / "nine.jpg"
    invalid.write_bytes(encoded(photo, 9))  # not an orientation: Pillow and the graph read it as stored
    info = check_file(str(invalid), is_mask=False)
    assert (info.width, info.height, info.orientation, info.graph) == (WIDTH, HEIGHT, 1, True)
    assert int(exif_orientation(tf.constant(invalid.read_bytes()))) == 1
    # Orientation 2 in XMP metadata only: Pillow applies it, the graph (EXIF block only) would not.
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="2"/></rdf:RDF></x:xmpmeta>')
    mirrored = tmp_path / "xmp.jpg"
    buffer = io.BytesIO()
    Image.fromarray(turn(photo, STORED[2])).save(buffer, "JPEG", quality=95, xmp=xmp)
    mirrored.write_bytes(buffer.getvalue())
    info = check_file(str(mirrored), is_mask=False)
    assert (info.width, info.height, info.orientation, info.graph) == (WIDTH, HEIGHT, 2, False)
    assert np.abs(read_rgb(str(mirrored)).astype(int) - photo).mean() < 4


def brightness_model(size=16):
    """logit = 12 (mean(rgb) - 0.5): a mask of the bright pixels, wherever they are."""
    inputs = keras.Input((size, size, 3))
    head = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")
    outputs = head(inputs)
    head.set_weights([np.full((1, 1, 3, 1), 4.0, np.float32), np.float32([-6.0])])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("exif_model")
    model = brightness_model()
    model.save(str(root / "model.keras"))
    serving = export_saved_model(model, str(root / "serving"), version=1)
    return root, tf.saved_model.load(serving).signatures


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_serving_bytes_of_a_rotated_jpeg_equals_serving_default_of_the_shown_pixels(model_files, orientation):
    _, served = model_files
    photo, _ = scene()
    data = encoded(turn(photo, STORED[orientation]), orientation, quality=95)
    shown = turn(stored_decode(data), SHOWN[orientation])
    from_bytes = served["serving_bytes"](image_bytes=tf.constant([data]))
    from_pixels = served["serving_default"](images=tf.constant(shown[np.newaxis]))
    assert (int(from_bytes["height"][0]), int(from_bytes["width"][0])) == (HEIGHT, WIDTH)
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-6)
    np.testing.assert_array_equal(from_bytes["mask"].numpy(), from_pixels["mask"].numpy())


@pytest.mark.parametrize("orientation", [3, 6])
def test_predict_writes_masks_as_the_photo_is_shown(model_files, tmp_path, orientation):
    root, _ = model_files
    photo, mask = scene()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "photo.jpg").write_bytes(encoded(turn(photo, STORED[orientation]), orientation, quality=95))
    Image.fromarray(photo).save(tmp_path / "in" / "upright.png")
    assert main(["predict", "--model", str(root / "model.keras"), str(tmp_path / "in"),
                 "--out", str(tmp_path / "out")]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "photo_mask.png"))
    upright = np.asarray(Image.open(tmp_path / "out" / "upright_mask.png"))
    assert written.shape == (HEIGHT, WIDTH)
    assert np.mean(written != upright) <= 0.02 and np.mean((written > 0) == (mask > 0)) >= 0.9


def test_mask_files_are_read_as_shown_too(tmp_path):
    _, mask = scene()
    path = tmp_path / "mask.webp"
    path.write_bytes(encoded(turn(mask, STORED[8]), 8, "WEBP", lossless=True))
    info = check_file(str(path), is_mask=True)
    assert (info.width, info.height, info.orientation, info.graph) == (WIDTH, HEIGHT, 8, False)
    with Image.open(path) as image:
        np.testing.assert_array_equal(mask_array(image), mask)
