"""Data images: every band and value kept (TIFF, 16-bit and varying-alpha PNG), a stored normalisation
applied the same way in training, scoring, prediction and serving (tfseg.data.bands, issue 28)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from tfseg.cli import main
from tfseg.data import load_dataset
from tfseg.data.bands import PHOTO, Form, Normalization, band_statistics, file_form, read_bands
from tfseg.data.pipeline import resolve_normalization
from tfseg.data.pixels import model_inputs, resize_pixels
from tfseg.data.sources import open_source
from tfseg.errors import ConfigError, DataError
from tfseg.segment import Settings

from test_export import WITHOUT_TFSEG
from test_serving import run_without_tfseg


def _disc(rng, size):
    rows, cols = np.mgrid[:size, :size]
    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
    radius = rng.integers(size // 8, size // 4)
    return (rows - cy) ** 2 + (cols - cx) ** 2 < radius ** 2


def band4_folder(root, count=60, size=48, seed=0):
    """4-band 12-bit uint16 TIFFs whose disc shows ONLY in the 4th band (the first three are noise)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root / "images"), os.makedirs(root / "masks")
    for i in range(count):
        disc = _disc(rng, size)
        image = rng.integers(1000, 3000, (size, size, 4)).astype(np.uint16)
        image[..., 3] = np.where(disc, 3500, 1200) + rng.integers(0, 300, (size, size))
        tifffile.imwrite(root / "images" / f"s{i:03d}.tif", image)
        Image.fromarray(disc.astype(np.uint8) * 255).save(root / "masks" / f"s{i:03d}.png")
    return root


def _folder(root, images):
    """A folder source of ``{name: (image file writer, size)}`` with empty-disc masks."""
    os.makedirs(root / "images"), os.makedirs(root / "masks")
    for name, (write, size) in images.items():
        write(root / "images" / name)
        mask = np.zeros((size, size), np.uint8)
        mask[2:5, 2:5] = 255
        Image.fromarray(mask).save(root / "masks" / (name.rsplit(".", 1)[0] + ".png"))
    return f"folder:{root}"


# --------------------------------------------------------------------------- reading files


def test_grey_16bit_tiff_keeps_one_band_and_its_values(tmp_path):
    values = np.arange(64, dtype=np.uint16).reshape(8, 8) * 60 + 17  # 12-bit values, up to 3797
    tifffile.imwrite(tmp_path / "a.tif", values)
    data = (tmp_path / "a.tif").read_bytes()
    form, read = file_form(data)
    assert form == Form(1, "uint16", photo=False)
    np.testing.assert_array_equal(read[..., 0], values)
    stored = read_bands(data, form)
    assert stored.dtype == np.float32 and stored.shape == (8, 8, 1)
    np.testing.assert_array_equal(stored[..., 0], values.astype(np.float32))


def test_float32_tiff_is_read_as_it_is(tmp_path):
    values = np.random.default_rng(0).normal(-3.0, 2.5, (6, 7, 2)).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", values, planarconfig="contig")  # 2 samples per pixel
    data = (tmp_path / "a.tif").read_bytes()
    form, _ = file_form(data)
    assert form == Form(2, "float32", photo=False)
    np.testing.assert_array_equal(read_bands(data, form), values)


def test_bands_stored_as_pages_are_bands(tmp_path):
    values = np.random.default_rng(1).integers(0, 65535, (3, 5, 6)).astype(np.uint16)  # one page per band
    tifffile.imwrite(tmp_path / "a.tif", values, photometric="minisblack")
    form, read = file_form((tmp_path / "a.tif").read_bytes())
    assert form.channels == 3 and form.dtype == "uint16"
    np.testing.assert_array_equal(read, np.moveaxis(values, 0, -1))


def test_a_stack_of_images_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 3, 5, 6), np.uint16), photometric="minisblack")
    with pytest.raises(ValueError, match="stack"):
        file_form((tmp_path / "a.tif").read_bytes())


def test_8bit_rgb_files_stay_photographs(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (9, 9, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    Image.fromarray(rgb).save(tmp_path / "a.png")
    opaque = np.concatenate([rgb, np.full((9, 9, 1), 255, np.uint8)], -1)
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    for name in ("a.tif", "a.png", "opaque.png"):
        assert file_form((tmp_path / name).read_bytes()) == (PHOTO, None), name


def test_rgba_whose_alpha_varies_keeps_4_bands(tmp_path):
    rgba = np.random.default_rng(3).integers(0, 256, (9, 9, 4)).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    form, read = file_form((tmp_path / "a.png").read_bytes())
    assert form == Form(4, "uint8", photo=False)
    np.testing.assert_array_equal(read, rgba)
    assert read_bands((tmp_path / "a.png").read_bytes(), form).dtype == np.uint8  # 8-bit: stored as uint8


def test_16bit_png_keeps_its_values(tmp_path):
    values = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 131 + 3)
    Image.fromarray(values).save(tmp_path / "a.png")
    form, read = file_form((tmp_path / "a.png").read_bytes())
    assert form == Form(1, "uint16", photo=False)
    np.testing.assert_array_equal(read[..., 0], values)


# --------------------------------------------------------------------------- sources and the pipeline


def test_folder_of_16bit_grey_tiffs_trains_on_raw_values(tmp_path):
    rng = np.random.default_rng(4)
    arrays = {f"a{i}.tif": rng.integers(1000, 4000, (12, 12)).astype(np.uint16) for i in range(10)}
    source = _folder(tmp_path, {name: (lambda path, a=a: tifffile.imwrite(path, a), 12)
                                for name, a in arrays.items()})
    opened = open_source(source)
    assert opened.image_form == Form(1, "uint16", photo=False)
    train_ids = opened.split_ids("train")
    expected = band_statistics(arrays[f"{i}.tif"][..., None] for i in train_ids)
    images, _ = next(iter(load_dataset(source, split="train", image_size=12, batch_size=64, augment=False,
                                       shuffle=False)))
    assert images.shape[-1] == 1
    raw = np.stack([arrays[f"{i}.tif"] for i in train_ids]).astype(np.float32)[..., None]
    np.testing.assert_allclose(images.numpy(), (raw - expected.mean[0]) / expected.std[0], rtol=1e-5, atol=1e-5)


def test_resize_keeps_raw_values_of_data_and_rounds_8bit():
    data = tf.constant(np.linspace(1000.3, 1003.7, 16, dtype=np.float32).reshape(1, 4, 4, 1))
    resized = resize_pixels(data, (2, 2))
    assert resized.dtype == tf.float32 and np.any(resized.numpy() % 1 != 0)
    assert resize_pixels(tf.zeros([1, 4, 4, 3], tf.uint8), (2, 2)).dtype == tf.uint8


def test_a_band_count_that_differs_names_the_file(tmp_path, capsys):
    rng = np.random.default_rng(5)
    images = {f"a{i}.tif": (lambda path: tifffile.imwrite(path, rng.integers(0, 4000, (8, 8, 4)).astype(np.uint16)), 8)
              for i in range(3)}
    images["odd.tif"] = (lambda path: tifffile.imwrite(path, rng.integers(0, 4000, (8, 8, 3)).astype(np.uint16)), 8)
    source = _folder(tmp_path, images)
    with pytest.raises(DataError) as err:
        open_source(source)
    assert len(err.value.problems) == 1
    path, why = err.value.problems[0]
    assert path.endswith("odd.tif") and "3 bands of uint16" in why and "4 bands of uint16" in why
    assert main(["inspect", "--data", source]) == 2
    out = capsys.readouterr()
    assert "odd.tif" in out.err + out.out


# --------------------------------------------------------------------------- normalisation


def test_normalisation_choices():
    pixels = tf.constant([[[1000.0, 3000.0]]])
    np.testing.assert_allclose(model_inputs(pixels, "minmax:1000,3000"), [[[0.0, 1.0]]])
    per_band = {"kind": "per_band", "mean": [1000.0, 2000.0], "std": [10.0, 500.0]}
    np.testing.assert_allclose(model_inputs(pixels, per_band), [[[0.0, 2.0]]])
    np.testing.assert_allclose(model_inputs(tf.constant([[[51, 255]]], tf.uint8)), [[[0.2, 1.0]]])
    assert model_inputs(tf.constant([[[51]]], tf.uint8), "uint8").numpy()[0, 0, 0] == np.float32(51) / 255
    for bad in ("minmax:5,5", "minmax:a", "zscore", "uint8:3"):
        with pytest.raises(ConfigError):
            Normalization.parse(bad)
    with pytest.raises(ConfigError, match="bands"):
        Settings(window=(8, 8), channels=3, normalization=per_band)


def test_band_statistics_match_numpy_and_constant_band_gets_std_1():
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 4096, (5, 7, 2)).astype(np.float32) for _ in range(3)]
    for image in images:
        image[..., 1] = 42.0
    norm = band_statistics(images)
    every = np.concatenate([i.reshape(-1, 2) for i in images]).astype(np.float64)
    np.testing.assert_allclose(norm.mean, every.mean(0), rtol=1e-9)
    assert norm.std[0] == pytest.approx(every[:, 0].std(), rel=1e-9) and norm.std[1] == 1.0


# --------------------------------------------------------------------------- must show


SERVE_BANDS = WITHOUT_TFSEG + """
model_dir, image_path, out = sys.argv[1:]
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
spec = serve.structured_input_signature[1]["images"]
image = np.load(image_path)
reply = serve(images=tf.constant(image[None]))
np.save(out, reply["mask"].numpy()[0])
print(spec.dtype.name, spec.shape.as_list())
"""


@pytest.mark.slow
def test_4band_uint16_tiffs_train_and_serve_without_tfseg(tmp_path, capsys):
    """Structure ONLY in the 4th band of 12-bit uint16 TIFFs: `tfseg train --data folder:DIR` (no flag about
    bands or values) reaches test Dice >= 0.8, and the SavedModel serves a uint16 4-band image in a process
    without tfseg, giving the mask tfseg's own predict gives."""
    data = band4_folder(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", f"folder:{data}", "--image-size", "48", "--depth", "3", "--epochs", "8",
                 "--batch-size", "8", "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["channels"] == 4 and config["input_dtype"] == "uint16"
    assert config["normalization"]["kind"] == "per_band" and len(config["normalization"]["mean"]) == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["dice"] >= 0.8, metrics["test"]

    rng = np.random.default_rng(99)
    disc = _disc(rng, 48)
    image = rng.integers(1000, 3000, (48, 48, 4)).astype(np.uint16)
    image[..., 3] = np.where(disc, 3500, 1200) + rng.integers(0, 300, (48, 48))
    np.save(tmp_path / "image.npy", image)
    printed = run_without_tfseg(SERVE_BANDS, run / "saved_model" / "1", tmp_path / "image.npy",
                                tmp_path / "mask.npy", cwd=tmp_path)
    assert printed.split()[0] == "uint16" and "4]" in printed
    served = np.load(tmp_path / "mask.npy")
    dice = 2 * np.sum((served > 0) & disc) / (np.sum(served > 0) + np.sum(disc))
    with capsys.disabled():  # the figures docs/scientific-images.md quotes (pytest -s)
        print(f"\ntest Dice {metrics['test']['dice']:.4f}; served without tfseg: Dice {dice:.4f}")
    assert dice >= 0.8, dice

    # tfseg predict on the same image as a TIFF file: the same mask as the serving graph.
    tifffile.imwrite(tmp_path / "new.tif", image)
    out = tmp_path / "predicted"
    assert main(["predict", str(tmp_path / "new.tif"), "--model", str(run), "--out", str(out)]) == 0
    predicted = np.asarray(Image.open(out / "new_mask.png"))
    assert np.mean((predicted > 0) == (served > 0)) > 0.999
    # The SavedModel through tfseg predict (its stored settings: bands, dtype, normalisation): the same mask.
    assert main(["predict", str(tmp_path / "new.tif"), "--model", str(run / "saved_model" / "1"),
                 "--out", str(tmp_path / "from_saved_model"), "--no-overlays"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "from_saved_model" / "new_mask.png")), predicted)
    # tfseg export of the run checks the export against Keras with uint16 4-band images.
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "export")]) == 0
    assert "max |SavedModel serving_default - Keras|" in capsys.readouterr().out
    # A file of other bands than the model's: one line naming it, exit 2, nothing written.
    tifffile.imwrite(tmp_path / "three.tif", image[..., :3])
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "three.tif"), "--model", str(run), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err
    assert "three.tif" in err and "3 bands of uint16" in err and "4 bands of uint16" in err
    assert not (tmp_path / "p2" / "three_mask.png").exists()


# --------------------------------------------------------------------------- inspect


def test_inspect_reports_bands_dtype_bit_depth_and_percentiles(tmp_path, capsys):
    from tfseg.data.inspect import inspect_source

    values = [np.full((6, 6), 100 * (i + 1), np.uint16) for i in range(4)]
    values[3][0, 0] = 4095  # 12-bit values
    source = _folder(tmp_path, {f"a{i}.tif": (lambda path, v=v: tifffile.imwrite(path, v), 6)
                                for i, v in enumerate(values)})
    pixels = inspect_source(source)["pixels"]
    every = np.concatenate([v.ravel() for v in values]).astype(np.float64)
    assert (pixels["channels"], pixels["dtype"], pixels["bit_depth"]) == (1, "uint16", 12)
    assert pixels["percentiles"] == {str(p): [float(np.percentile(every, p))] for p in (1, 50, 99)}
    assert pixels["range"] == [100.0, 4095.0] and "per band" in pixels["normalization"]
    assert main(["inspect", "--data", source]) == 0
    assert "1 band of uint16, 12-bit values, range 100..4095" in capsys.readouterr().out


def test_inspect_of_photographs_says_8bit_and_x_over_255():
    from tfseg.data.inspect import inspect_source

    pixels = inspect_source("synthetic:6")["pixels"]
    assert (pixels["channels"], pixels["dtype"], pixels["bit_depth"]) == (3, "uint8", 8)
    assert pixels["normalization"] == "auto: x / 255" and len(pixels["percentiles"]["50"]) == 3


def test_channels_option_chooses_the_bands(tmp_path):
    rng = np.random.default_rng(7)
    rgba = {f"a{i}.png": rng.integers(0, 256, (8, 8, 4)).astype(np.uint8) for i in range(4)}
    source = _folder(tmp_path, {name: (lambda path, a=a: Image.fromarray(a).save(path), 8) for name, a in rgba.items()})
    assert open_source(source).image_form == Form(4, "uint8", photo=False)  # the alpha varies: data
    as_rgb = open_source(source + "?channels=3")
    assert as_rgb.image_form == PHOTO
    image = next(iter(as_rgb.examples(["a0"])))["image"].numpy()
    np.testing.assert_array_equal(image, rgba["a0.png"][..., :3])
    two = open_source(source + "?channels=2")
    assert two.image_form == Form(2, "uint8", photo=False)
    np.testing.assert_array_equal(next(iter(two.examples(["a1"])))["image"].numpy(), rgba["a1.png"][..., :2])
    with pytest.raises(DataError) as err:
        open_source(source + "?channels=5")
    assert len(err.value.problems) == 4 and "fewer than channels=5" in err.value.problems[0][1]


# --------------------------------------------------------------------------- prepare / tfrecord:


@pytest.mark.parametrize("image_size", [None, 6])
def test_prepared_shards_keep_bands_and_raw_values(tmp_path, image_size):
    rng = np.random.default_rng(8)
    arrays = {f"a{i}.tif": rng.integers(0, 4096, (9, 9, 4)).astype(np.uint16) for i in range(5)}
    source = _folder(tmp_path / "data", {name: (lambda path, a=a: tifffile.imwrite(path, a), 9)
                                         for name, a in arrays.items()})
    args = ["prepare", "--data", source, "--out", str(tmp_path / "shards")]
    assert main(args + (["--image-size", str(image_size)] if image_size else [])) == 0
    shards = open_source(f"tfrecord:{tmp_path / 'shards'}")
    assert shards.image_form == Form(4, "uint16", photo=False)
    folder = open_source(source)
    for from_shards, from_files in zip(shards.examples(shards.ids()), folder.examples(folder.ids())):
        expected = from_files["image"]
        if image_size:
            expected = resize_pixels(expected, (image_size, image_size))
        np.testing.assert_array_equal(from_shards["image"].numpy(), expected.numpy())
    if image_size:  # raw float32 values, not rounded to 8 bits
        assert from_shards["image"].dtype == tf.float32 and np.any(from_shards["image"].numpy() % 1 != 0)
    # The normalisation of the shards is the folder's (the same training split, the same pixels).
    if image_size is None:
        assert resolve_normalization(None, shards) == resolve_normalization(None, folder)


def test_bit_depth_at_its_edges():
    from tfseg.data.bands import bit_depth

    cases = {0: 1, 1: 1, 2: 2, 255: 8, 256: 9, 4095: 12, 4096: 13, 65535: 16}
    for top, bits in cases.items():
        assert bit_depth(np.array([0, top], np.uint16)) == bits, top
    assert bit_depth(np.array([0.5, 3000.0], np.float32)) == 0


def test_display_rgb_stretches_each_band_between_its_1st_and_99th_percentiles():
    from tfseg.data.bands import display_rgb
    from tfseg.viz import as_rgb_uint8

    values = np.stack([np.arange(100.0).reshape(10, 10) * (b + 1) * 40 for b in range(4)], -1)  # 4 bands
    low, high = np.percentile(values.reshape(-1, 4), [1, 99], axis=0)
    expected = np.round(np.clip((values[..., :3] - low[:3]) / (high[:3] - low[:3]), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(display_rgb(values), expected)
    np.testing.assert_array_equal(as_rgb_uint8(values), expected)  # figures and overlays of data images
    grey = display_rgb(values[..., :1])
    assert grey.shape == (10, 10, 3) and np.all(grey[..., 0] == grey[..., 2])
    photo = np.full((2, 2, 3), 7, np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(photo), photo)  # photographs unchanged


def test_one_normalisation_for_resized_images_patches_and_prediction(tmp_path):
    """The pipeline (resized and patches) and the prediction path (tfseg.segment) give a data image the same
    model inputs: one function, tfseg.data.pixels.model_inputs, with the stored normalisation."""
    rng = np.random.default_rng(9)
    arrays = {f"a{i}.tif": rng.integers(0, 4096, (16, 16, 2)).astype(np.uint16) for i in range(6)}
    source = _folder(tmp_path, {name: (lambda path, a=a: tifffile.imwrite(path, a, planarconfig="contig"), 16)
                                for name, a in arrays.items()})
    opened = open_source(source)
    ids = opened.split_ids("train")
    for norm in ("minmax:0,4095", None):
        resolved = resolve_normalization(norm, opened)
        settings = Settings(window=(16, 16), channels=2, dtype="uint16", normalization=resolved.to_dict())
        expected = np.stack([settings.model_inputs(arrays[f"{i}.tif"][None])[0].numpy() for i in ids])
        resized, _ = next(iter(load_dataset(source, split="train", image_size=16, batch_size=64, augment=False,
                                            shuffle=False, normalization=norm)))
        patches, _ = next(iter(load_dataset(source, split="train", patch_size=16, batch_size=64, augment=False,
                                            shuffle=False, normalization=norm)))
        np.testing.assert_allclose(resized.numpy(), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(patches.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert resolved.kind == "per_band"  # auto for 16-bit data
    np.testing.assert_allclose(model_inputs(tf.constant([[[4095.0, 0.0]]]), "minmax:0,4095"), [[[1.0, 0.0]]])


def test_fold_ensemble_refuses_folds_normalised_with_their_own_numbers(tmp_path):
    from tfseg.config import TrainConfig
    from tfseg.errors import TfsegError
    from tfseg.saving import load_fold_ensemble

    for fold, mean in ((1, 1000.0), (2, 1100.0)):
        os.makedirs(tmp_path / f"fold-{fold}")
        config = TrainConfig(folds=2, fold=fold, channels=1, input_dtype="uint16",
                             normalization={"kind": "per_band", "mean": [mean], "std": [10.0]})
        (tmp_path / f"fold-{fold}" / "config.json").write_text(config.to_json())
        (tmp_path / f"fold-{fold}" / "metrics.json").write_text("{}")  # complete (no model needed: refused first)
    with pytest.raises(TfsegError, match="normalised their images each with their own numbers"):
        load_fold_ensemble(str(tmp_path))


def test_the_folds_of_a_cross_validation_measure_the_same_per_band_numbers(tmp_path):
    from tfseg.data.bands import band_statistics
    from tfseg.data.splits import FoldSplit

    rng = np.random.default_rng(3)
    arrays = {f"a{i:02d}.tif": (rng.integers(0, 4096, (6, 6, 2)) + 500 * i).astype(np.uint16) for i in range(20)}
    writers = {name: (lambda path, a=a: tifffile.imwrite(path, a, planarconfig="contig"), 6)
               for name, a in arrays.items()}
    folder = open_source(_folder(tmp_path, writers))
    fractions = (0.7, 0.15, 0.15)
    folds = [resolve_normalization(None, folder, 0, FoldSplit(fractions, fold, 3)) for fold in (1, 2, 3)]
    assert folds[0] == folds[1] == folds[2] and folds[0].kind == "per_band"
    non_test = sorted(set(folder.ids()) - set(folder.split_ids("test", seed=0, fractions=fractions)))
    expected = band_statistics(arrays[f"{i}.tif"] for i in non_test)
    np.testing.assert_allclose(folds[0].mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(folds[0].std, expected.std, rtol=1e-6)
    # a single run measures its own training split only (other images, other numbers); no seed is seed 0
    assert resolve_normalization(None, folder, 0, fractions) != folds[0]
    assert resolve_normalization(None, folder, None, fractions) == resolve_normalization(None, folder, 0, fractions)
    assert resolve_normalization(None, folder, 1, fractions) != resolve_normalization(None, folder, 0, fractions)
