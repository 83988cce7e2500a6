"""The one path from an image to its mask (tfseg.segment), for every model kind and signature, against NumPy.

The parity matrix: model kind (Keras, SavedModel, TFLite) x mode (resize; tiled; tiled at
scale 0.75) x TTA (none, flips) x threshold 0.3 x image shapes that break naive code, each
against :func:`path_reference.reference_path` (loops written from the documented formulas).
The serving signatures (``serving_default``, ``serving_bytes``; resize and tiled, with and
without TTA, threshold 0.3 baked in) against the same reference.

The model: a few seeded convolutions on a 13 x 18 input (a window whose stride at overlap
0.25 is 9.75 x 13.5 px before rounding), not symmetric under flips, so a flip undone on
the wrong axis, a missing TTA or a window at the wrong place changes the answer.

Tolerance: probabilities within 2e-5 of the reference (float32 round-off of the blending
sums and of TFLite's kernels); masks equal wherever the probability is not within that
tolerance of the threshold.
"""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from path_reference import reference_path
from tfseg import export
from tfseg.errors import ConfigError, TfsegError
from tfseg.inference import load_predictor, predict_images
from tfseg.segment import Settings, keras_windows

WINDOW = (13, 18)
THRESHOLD = 0.3
TOLERANCE = 2e-5
SHAPES = {
    "narrower than a window, taller": (45, 11),
    "smaller than a window": (9, 14),
    "stride not whole, several windows": (37, 61),
    "1 px wide": (29, 1),
}
MODES = {"resize": {}, "tiled": {"tiled": True}, "tiled x0.75": {"tiled": True, "scale": 0.75}}
KINDS = ("keras", "saved_model", "tflite")


def tiny_model():
    """Seeded convolutions: outputs spread around 0.3, different under each flip and near the borders."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((*WINDOW, 3), name="images")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="tanh")(inputs)
    x = keras.layers.Conv2D(6, (3, 5), padding="same", activation="tanh")(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 3.0, bias - 0.8])
    return model


def photo(height, width, seed=0):
    """Smooth gradients and blobs with noise: what resizing, tiling and flipping all change."""
    rng = np.random.default_rng(seed + height * 1000 + width)
    rows, cols = np.mgrid[:height, :width]
    base = np.stack([255 * rows / max(height - 1, 1), 255 * cols / max(width - 1, 1),
                     128 + 100 * np.sin(rows / 3.0 + cols / 5.0)], axis=-1)
    return np.clip(base + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


class Models:
    """The model, and each of its files made when a test first asks for it (a test runs only what it needs)."""

    def __init__(self, root):
        self.root, self.model, self.files = root, tiny_model(), {}

    def path(self, kind):
        """``"keras"``, ``"saved_model"`` (default settings) or ``"tflite"``."""
        if kind not in self.files:
            target = str(self.root / {"keras": "model.keras", "saved_model": "serving", "tflite": "model.tflite"}[kind])
            {"keras": lambda: self.model.save(target),
             "saved_model": lambda: export.export_saved_model(self.model, target, version=1),
             "tflite": lambda: export.export_tflite(self.model, target)}[kind]()
            self.files[kind] = target
        return self.files[kind]

    def served(self, mode, tta):
        """A SavedModel exported with threshold 0.3 and this mode and TTA in its serving graph."""
        if (mode, tta) not in self.files:
            folder = str(self.root / f"served-{mode}-{tta}".replace(" ", ""))
            self.files[mode, tta] = export.export_saved_model(self.model, folder, threshold=THRESHOLD, tta=tta,
                                                              **MODES[mode])
        return self.files[mode, tta]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("one-path"))


def keras_model_reference(model):
    return lambda x: model(np.asarray(x, np.float32), training=False).numpy()


def check(probabilities, mask, expected_probabilities, expected_mask):
    assert probabilities.shape == expected_probabilities.shape, (probabilities.shape, expected_probabilities.shape)
    assert mask.shape == expected_mask.shape
    assert np.max(np.abs(probabilities - expected_probabilities)) <= TOLERANCE
    clear = np.abs(expected_probabilities[..., 0] - THRESHOLD) > TOLERANCE
    np.testing.assert_array_equal(mask[clear], expected_mask[clear])
    return clear


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("tta", ["none", "flips"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_follows_the_path(models, kind, mode, tta, shape, tmp_path):
    image = photo(*shape)
    predictor = load_predictor(models.path(kind), tta=tta, **MODES[mode])
    assert predictor.kind == kind and predictor.tiled == ("tiled" in mode)
    [(probabilities, mask)] = [(p, m) for _, p, m in predict_images(predictor, [_png(tmp_path, image)],
                                                                    threshold=THRESHOLD)]
    expected = reference_path(keras_model_reference(models.model), image, WINDOW, threshold=THRESHOLD, tta=tta,
                              **MODES[mode])
    clear = check(probabilities, mask, *expected)
    assert clear.mean() > 0.9 and 0 < expected[1][clear].mean() < 1  # the threshold splits this image


def test_the_matrix_images_are_not_trivial(models):
    # The TTA and threshold cases must change the answer, or the matrix could not see them undone.
    predict = keras_model_reference(models.model)
    for shape in SHAPES.values():
        if 1 in shape:
            continue
        image = photo(*shape)
        for mode in MODES.values():
            plain, _ = reference_path(predict, image, WINDOW, **mode)
            flipped, _ = reference_path(predict, image, WINDOW, tta="flips", **mode)
            assert np.abs(plain - flipped).max() > 100 * TOLERANCE
        assert np.mean((plain[..., 0] >= 0.3) != (plain[..., 0] >= 0.5)) > 0.05


def test_images_of_different_sizes_share_one_model_call(models):
    calls = []
    adapter = keras_windows(models.model)

    def counting(windows):
        calls.append(int(windows.shape[0]))
        return adapter(windows)

    images = [photo(*shape) for shape in SHAPES.values()]
    out = Settings(window=WINDOW).images_probabilities(counting, images)
    assert calls == [len(images)] and [p.shape[:2] for p in out] == list(SHAPES.values())
    for image, probabilities in zip(images, out):
        expected, _ = reference_path(keras_model_reference(models.model), image, WINDOW)
        np.testing.assert_allclose(probabilities, expected, atol=TOLERANCE)


SERVED = [("resize", "none"), ("resize", "flips"), ("tiled", "none"), ("tiled x0.75", "flips")]


@pytest.mark.parametrize("mode, tta", SERVED, ids=[f"{m}-{t}" for m, t in SERVED])
def test_serving_signatures_follow_the_path(models, mode, tta):
    loaded = tf.saved_model.load(models.served(mode, tta))
    predict = keras_model_reference(models.model)
    empty = loaded.signatures["serving_default"](images=tf.zeros([0, 9, 14, 3], tf.uint8))
    assert empty["probabilities"].shape == (0, 9, 14, 1) and empty["mask"].shape == (0, 9, 14)
    empty = loaded.signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, 0, 0, 1) and empty["height"].shape == (0,)
    images = {name: photo(*shape) for name, shape in SHAPES.items()}
    for image in images.values():
        expected = reference_path(predict, image, WINDOW, threshold=THRESHOLD, tta=tta, **MODES[mode])
        out = loaded.signatures["serving_default"](images=tf.constant(image[None]))
        check(out["probabilities"][0].numpy(), out["mask"][0].numpy(), *expected)
    # serving_bytes: every shape in one batch, padded to the largest; image i at [:height[i], :width[i]]
    encoded = [_encoded(image) for image in images.values()]
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    for i, image in enumerate(images.values()):
        height, width = int(out["height"][i]), int(out["width"][i])
        assert (height, width) == image.shape[:2]
        expected = reference_path(predict, image, WINDOW, threshold=THRESHOLD, tta=tta, **MODES[mode])
        check(out["probabilities"][i, :height, :width].numpy(), out["mask"][i, :height, :width].numpy(), *expected)
        assert not out["probabilities"][i, height:].numpy().any() and not out["mask"][i, :, width:].numpy().any()


def test_an_export_carries_its_settings_and_predicts_as_it_serves(models, tmp_path):
    path = models.served("tiled x0.75", "flips")
    settings = export.saved_model_settings(tf.saved_model.load(path))
    assert settings == Settings(window=WINDOW, tiled=True, scale=0.75, tta="flips", threshold=THRESHOLD)
    predictor = load_predictor(path)  # the export's settings are the defaults
    assert (predictor.tiled, predictor.scale, predictor.tta, predictor.threshold) == (True, 0.75, "flips", THRESHOLD)
    image = photo(*SHAPES["stride not whole, several windows"])
    [(_, probabilities, mask)] = predict_images(predictor, [_png(tmp_path, image)])
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(image[None]))
    np.testing.assert_allclose(probabilities, served["probabilities"][0].numpy(), atol=TOLERANCE)
    clear = np.abs(probabilities[..., 0] - THRESHOLD) > TOLERANCE
    np.testing.assert_array_equal(mask[clear], served["mask"][0].numpy()[clear])
    windows = tf.saved_model.load(path).signatures["serving_windows"]
    inputs = np.random.default_rng(0).uniform(size=(2, *WINDOW, 3)).astype("float32")
    np.testing.assert_allclose(windows(windows=tf.constant(inputs))["probabilities"].numpy(),
                               models.model(inputs).numpy(), atol=1e-6)


def older_export(model, path, settings_json=None, windows=None):
    """A SavedModel as an earlier tfseg wrote it: serving_default and serving_bytes only, no settings
    (``settings_json``: with these stored settings; ``windows``: with serving_windows, default: with the settings)."""
    archive = keras.export.ExportArchive()
    windows = settings_json is not None if windows is None else windows
    for name, (function, signature) in export.signatures(Settings.of_model(model, threshold=THRESHOLD),
                                                         keras_windows(model)).items():
        if windows or name != "serving_windows":
            archive.add_endpoint(name, function, input_signature=signature)
    if settings_json is not None:
        archive.add_variable_collection("inference_settings", [tf.Variable(settings_json)])
    archive.write_out(str(path), verbose=False)
    return str(path)


@pytest.mark.parametrize("windows", [False, True], ids=["older", "windows without settings"])
def test_a_saved_model_without_serving_windows_serves_as_exported(models, tmp_path, capsys, windows):
    from tfseg.cli import main

    old = older_export(models.model, tmp_path / "old" / "1", windows=windows)
    predictor = load_predictor(old)
    assert predictor.settings is None  # both are needed to run the path around serving_windows
    image = photo(*SHAPES["stride not whole, several windows"])
    [(_, probabilities, mask)] = predict_images(predictor, [_png(tmp_path, image)], threshold=THRESHOLD)
    check(probabilities, mask, *reference_path(keras_model_reference(models.model), image, WINDOW,
                                               threshold=THRESHOLD))
    assert predictor.configure() is predictor and predictor.configure(tta="none") is predictor  # as exported: fine
    for options in ({"tiled": True}, {"tta": "flips"}):
        with pytest.raises(ConfigError, match="export the model again"):
            load_predictor(old, **options)
    png = _png(tmp_path, image)
    assert main(["predict", "--model", old, "--tta", "flips", png, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "serving_windows" in err and "export the model again" in err


def test_a_run_trained_on_patches_predicts_tiled_at_its_scale(models, tmp_path):
    from tfseg.config import TrainConfig
    from tfseg.models import build_model

    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(patch_size=16, scale=0.75, base_filters=2, depth=1, out=str(run))
    build_model(config.model, config.model_input_size(), 1, base_filters=2, depth=1).save(str(run / "model.keras"))
    (run / "config.json").write_text(config.to_json())
    predictor = load_predictor(str(run))
    assert (predictor.kind, predictor.tiled, predictor.scale) == ("keras", True, 0.75)
    assert (load_predictor(str(run), tiled=False).tiled, load_predictor(str(run), tiled=False).scale) == (False, 1.0)
    assert load_predictor(str(run), scale=0.5).scale == 0.5
    assert not load_predictor(models.path("keras")).tiled  # a model without its run folder: resized


def test_a_saved_model_that_is_not_tfseg_s_is_one_line(models, tmp_path):
    path = str(tmp_path / "plain")
    models.model.export(path, verbose=False)  # Keras' own export: float32 inputs, no uint8 'images'
    with pytest.raises(TfsegError, match="does not take uint8 'images'"):
        load_predictor(path)


def test_a_tflite_file_of_one_band_takes_one_band_windows(tmp_path):
    # (a model of data images has the data's bands: tfseg.data.bands; its client normalises the pixels)
    inputs = keras.Input((8, 8, 1))
    grey = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    path = str(tmp_path / "grey.tflite")
    grey.export(path, format="litert", verbose=False)
    predictor = load_predictor(path)
    assert predictor.settings.channels == 1
    windows = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_windows(windows), grey(windows).numpy(), atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"threshold": 1.0}, "threshold 1.0"),
    ({"scale": 0.5}, "scale 0.5: only applies to sliding-window"),
    ({"tiled": True, "scale": 5.0}, "scale 5.0"),
    ({"tta": "rot90"}, "tta 'rot90'"),
    ({"overlap": 1.0}, "overlap 1.0"),
    ({"blend": "cosine"}, "blend 'cosine'"),
    ({"window_batch": 0}, "window_batch 0"),
    ({"window": (0, 4)}, "window"),
    ({"window": (True, 4)}, "window"),
    ({"window": (2.5, 4)}, "window"),
    ({"window": (4, 4, 3)}, "window"),
    ({"num_classes": 0}, "num_classes 0"),
    ({"num_classes": True}, "num_classes True"),
])
def test_settings_name_a_bad_value(options, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**{"window": WINDOW, **options})


def test_settings_take_the_smallest_values_and_normalise_them():
    settings = Settings(window=(1, 1.0), num_classes=1, tiled=1, scale=4, tta=None, threshold=0.01, window_batch=1)
    assert (settings.window, settings.tiled, settings.scale, settings.tta) == ((1, 1), True, 4.0, "none")
    assert type(settings.window[1]) is int and type(settings.scale) is float


def test_settings_round_trip_through_json():
    settings = Settings(window=WINDOW, num_classes=3, tiled=True, scale=0.5, tta="flips", threshold=0.4,
                        overlap=0.5, blend="linear", window_batch=7)
    assert Settings.from_json(settings.to_json()) == settings
    assert Settings.from_json('{"window": [4, 5], "future_option": 1}') == Settings(window=(4, 5))


def test_unreadable_stored_settings_are_one_line(models, tmp_path):
    broken = older_export(models.model, tmp_path / "broken", settings_json='{"window": [0, 3]}')
    with pytest.raises(TfsegError, match="inference_settings cannot be read"):
        load_predictor(broken)


def _png(folder, image):
    path = folder / f"image-{image.shape[0]}x{image.shape[1]}.png"
    Image.fromarray(image).save(path)
    return str(path)


def _encoded(image):
    data = io.BytesIO()
    Image.fromarray(image).save(data, format="PNG")
    return data.getvalue()
