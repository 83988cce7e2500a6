"""Every image training accepts is read the same way by training, `tfseg predict` and both serving signatures;
empty serving batches; the pipeline's step count is known (no "Your input ran out of data")."""

import io
import struct
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sources_testdata import rgb, write_folder
from tfseg.data import load_dataset, open_source
from tfseg.data.decode import decode_mask, decode_rgb
from tfseg.data.files import mask_array, rgb_array
from tfseg.data.tfrecord import write_shards
from tfseg.export import export_saved_model
from tfseg.inference import read_image


def palette_bmp(indices: np.ndarray, table, bits: int, top_down: bool = False) -> bytes:
    """An uncompressed BMP with a colour table, written by hand (Pillow writes neither 4-bit nor top-down)."""
    height, width = indices.shape
    stride = (width * bits + 31) // 32 * 4
    rows = []
    for row in indices if top_down else indices[::-1]:
        packed = bytearray(stride)
        for x, value in enumerate(row):
            bit = x * bits
            packed[bit // 8] |= int(value) << (8 - bits - bit % 8)
        rows.append(bytes(packed))
    colours = b"".join(bytes([b, g, r, 0]) for r, g, b in table)
    offset = 14 + 40 + len(colours)
    info = struct.pack("<IiiHHIIiiII", 40, width, -height if top_down else height, 1, bits, 0, stride * height,
                       2835, 2835, len(table), 0)
    pixels = b"".join(rows)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + colours + pixels


def encoded(array, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(buffer, fmt, **options)
    return buffer.getvalue()


RNG = np.random.default_rng(0)
COLOURS = [tuple(int(v) for v in RNG.integers(0, 256, 3)) for _ in range(256)]
FILES = {
    "1bit_bw.bmp": lambda: encoded(Image.fromarray(RNG.random((13, 19)) > 0.5).convert("1"), "BMP"),
    "1bit_colour.bmp": lambda: palette_bmp(RNG.integers(0, 2, (13, 19)), COLOURS[:2], 1),
    "1bit_inverted.bmp": lambda: palette_bmp(RNG.integers(0, 2, (13, 19)), [(255, 255, 255), (0, 0, 0)], 1),
    "4bit.bmp": lambda: palette_bmp(RNG.integers(0, 16, (13, 19)), COLOURS[:16], 4),
    "4bit_topdown.bmp": lambda: palette_bmp(RNG.integers(0, 16, (13, 19)), COLOURS[:16], 4, top_down=True),
    "8bit_palette.bmp": lambda: palette_bmp(RNG.integers(0, 256, (13, 19)), COLOURS, 8),
    "8bit_3colours.bmp": lambda: palette_bmp(RNG.integers(0, 3, (13, 19)), COLOURS[:3], 8),
    "8bit_gray.bmp": lambda: encoded(RNG.integers(0, 256, (13, 19)).astype(np.uint8), "BMP"),
    "24bit.bmp": lambda: encoded(rgb(13, 19, 1), "BMP"),
    "cmyk.jpg": lambda: encoded(Image.fromarray(rgb(13, 19, 2)).convert("CMYK"), "JPEG"),
    "rgb.tif": lambda: encoded(rgb(13, 19, 3), "TIFF"),
    "rgb.webp": lambda: encoded(rgb(13, 19, 4), "WEBP", lossless=True),
    "palette.png": lambda: encoded(Image.fromarray(rgb(13, 19, 5)).convert("P"), "PNG"),
    "16bit.png": lambda: encoded((RNG.integers(0, 65536, (13, 19))).astype(np.uint16), "PNG"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    written = {}
    for name, make in FILES.items():
        (folder / name).write_bytes(make())
        written[name] = folder / name
    return written


def test_8bit_bmp_with_a_two_colour_grey_table_reads_its_pixels():
    # Pillow reads these 8-bit pixels as 1-bit ones (its "1" mode); the graph decoder reads what is stored.
    indices = RNG.integers(0, 2, (13, 19))
    data = palette_bmp(indices, [(0, 0, 0), (255, 255, 255)], 8)
    np.testing.assert_array_equal(decode_mask(data).numpy()[..., 0], indices * 255)
    np.testing.assert_array_equal(decode_rgb(data).numpy(), np.repeat(indices[..., None] * 255, 3, axis=-1))


@pytest.mark.parametrize("name", [n for n in FILES if n.endswith(".bmp")])
def test_graph_bmp_decoder_gives_pillows_pixels(files, name):
    data = files[name].read_bytes()
    with Image.open(files[name]) as image:
        expected_rgb = rgb_array(image)
    with Image.open(files[name]) as image:
        expected_mask = mask_array(image)
    np.testing.assert_array_equal(decode_rgb(data).numpy(), expected_rgb)
    np.testing.assert_array_equal(decode_mask(data).numpy()[..., 0], expected_mask)


def test_predict_reads_every_format_as_the_training_pipeline_does(files, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    # (16-bit PNG images are data, read with their own values and bands: tests/test_bands.py)
    files = {name: path for name, path in files.items() if name != "16bit.png"}
    for name, path in files.items():
        stem = name.replace(".", "_")
        (tmp_path / "images" / f"{stem}{path.suffix}").write_bytes(path.read_bytes())
        Image.fromarray(np.zeros((13, 19), np.uint8)).save(tmp_path / "masks" / f"{stem}.png")
    source = open_source(f"folder:{tmp_path}")
    assert len(source.ids()) == len(files)
    for example in source.examples(source.ids()).as_numpy_iterator():
        name = example["id"].decode()
        np.testing.assert_array_equal(read_image(str(files[name[::-1].replace("_", ".", 1)[::-1]])),
                                      example["image"], err_msg=name)


@pytest.mark.parametrize("name", [n for n in FILES if n != "cmyk.jpg"])  # CMYK: TensorFlow's conversion
def test_predict_reads_every_format_as_pillow_does(files, name):
    with Image.open(files[name]) as image:
        expected = rgb_array(image)
    np.testing.assert_array_equal(read_image(str(files[name])), expected)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    path = export_saved_model(keras.Model(inputs, outputs), str(tmp_path_factory.mktemp("export")), version=1)
    return tf.saved_model.load(path).signatures


@pytest.mark.parametrize("name", ["1bit_bw.bmp", "4bit.bmp", "8bit_palette.bmp"])
def test_serving_bytes_reads_palette_bmps_as_training_does(files, served, name):
    with Image.open(files[name]) as image:
        pixels = rgb_array(image)
    from_bytes = served["serving_bytes"](image_bytes=tf.constant([files[name].read_bytes()]))
    from_pixels = served["serving_default"](images=tf.constant(pixels[np.newaxis]))
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-6)
    assert from_bytes["height"].numpy().tolist() == [13] and from_bytes["width"].numpy().tolist() == [19]


def test_empty_batches_return_empty_results(served):
    default = served["serving_default"](images=tf.zeros([0, 30, 40, 3], tf.uint8))
    assert default["probabilities"].shape == (0, 30, 40, 1) and default["mask"].shape == (0, 30, 40)
    from_bytes = served["serving_bytes"](image_bytes=tf.zeros([0], tf.string))
    assert from_bytes["probabilities"].shape[0] == 0 and from_bytes["mask"].shape[0] == 0
    assert from_bytes["height"].shape == (0,) and from_bytes["width"].shape == (0,)


# --------------------------------------------------------------------------- steps per epoch are known

def test_pipeline_knows_its_batch_count_for_mixed_decoders_and_shards(tmp_path):
    write_folder(tmp_path / "data", count=9)
    Image.fromarray(rgb(20, 28, 1)).save(tmp_path / "data" / "images" / "s01.tif")  # the Pillow branch
    (tmp_path / "data" / "images" / "s01.png").unlink()
    folder = open_source(f"folder:{tmp_path / 'data'}")
    write_shards(folder, tmp_path / "shards", shards=2, progress=False)
    for source in (folder, f"tfrecord:{tmp_path / 'shards'}"):
        ds = load_dataset(source, split="all", image_size=16, batch_size=4)
        assert int(ds.cardinality()) == 3  # 9 samples in batches of 4


def test_small_fit_does_not_run_out_of_data(tmp_path):
    write_folder(tmp_path, count=8)
    Image.fromarray(rgb(20, 28, 1)).save(tmp_path / "images" / "s01.tif")
    (tmp_path / "images" / "s01.png").unlink()
    train = load_dataset(f"folder:{tmp_path}", split="train", image_size=16, batch_size=2)
    val = load_dataset(f"folder:{tmp_path}", split="val", image_size=16, batch_size=2)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile("adam", "binary_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]


def test_pipeline_reads_every_bmp_mask_kind_as_pillow_does(files, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    bmps = [name for name in FILES if name.endswith(".bmp") and name != "24bit.bmp"]
    for name in bmps:
        stem = name[:-4]
        Image.fromarray(rgb(13, 19, 9)).save(tmp_path / "images" / f"{stem}.png")
        (tmp_path / "masks" / name).write_bytes(files[name].read_bytes())
    source = open_source(f"folder:{tmp_path}", num_classes=256)  # class ids: the raw values come through
    assert all(source.pairs[name[:-4]].mask_info.graph for name in bmps)
    for example in source.examples(source.ids()).as_numpy_iterator():
        with Image.open(files[example["id"].decode() + ".bmp"]) as mask:
            np.testing.assert_array_equal(example["mask"][..., 0], mask_array(mask), err_msg=example["id"])
