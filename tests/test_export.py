"""SavedModel / TFLite / ONNX export: what TF Serving and mobile users rely on.

Tolerances (max |export - Keras| on probabilities in [0, 1]): SavedModel, TFLite
float32 and ONNX 1e-5 (float32 round-off; measured ~1e-7); TFLite float16
weights 1e-3 (measured ~7e-5); TFLite dynamic-range int8 weights 2e-2 (measured ~8e-4).
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfseg import export, fileio
from tfseg.cli import main
from tfseg.errors import ConfigError, TfsegError

SIZE = 32


def red_detector(num_classes=1, size=SIZE):
    """A hand-set model: class 1 where red > 0.5 (and class 2 where green > 0.5 if 3 classes)."""
    inputs = keras.Input((size, size, 3), name="images")
    copy = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="copy")
    features = copy(inputs)
    copy.set_weights([np.eye(3, dtype="float32")[np.newaxis, np.newaxis] * _centre_tap()])
    if num_classes == 1:
        kernel, bias, activation = [[10.0], [0.0], [0.0]], [-5.0], "sigmoid"
    else:
        kernel, bias, activation = [[0.0, 10.0, 0.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0]], [0.0, -5.0, -5.0], "softmax"
    head = keras.layers.Conv2D(num_classes, 1, activation=activation, dtype="float32", name="probabilities")
    outputs = head(features)
    head.set_weights([np.reshape(kernel, (1, 1, 3, num_classes)).astype("float32"), np.float32(bias)])
    return keras.Model(inputs, outputs)


def _centre_tap():
    tap = np.zeros((3, 3, 1, 1), "float32")
    tap[1, 1] = 1.0  # a 3x3 kernel that copies the pixel: the first conv is an identity
    return tap


def png_bytes(image):
    return tf.io.encode_png(image).numpy()


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def unet():
    from tfseg.models import build_model

    return build_model("unet", SIZE, base_filters=4, depth=2)


@pytest.fixture(scope="module")
def unet_export(unet, tmp_path_factory):
    return export.export_saved_model(unet, str(tmp_path_factory.mktemp("serving") / "unet"))


@pytest.fixture(scope="module")
def served(unet_export):
    return tf.saved_model.load(unet_export)


def test_export_writes_version_one_and_counts_up(unet, tmp_path):
    first = export.export_saved_model(unet, str(tmp_path))
    second = export.export_saved_model(unet, str(tmp_path))
    assert (first, second) == (str(tmp_path / "1"), str(tmp_path / "2"))
    assert os.path.isfile(os.path.join(second, "saved_model.pb"))
    # no temporary folder left; beside the versions TF Serving's batching file and tfseg's marker
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "1", "2", "batching_parameters.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(second).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700


def test_signatures_have_the_api_names(served):
    assert sorted(served.signatures) == ["serving_bytes", "serving_compact", "serving_default", "serving_windows"]
    default = served.signatures["serving_default"]
    (spec,) = default.structured_input_signature[1].values()
    assert list(default.structured_input_signature[1]) == ["images"]
    assert (spec.dtype, spec.shape.as_list()) == (tf.uint8, [None, None, None, 3])
    outputs = default.structured_outputs
    assert sorted(outputs) == ["mask", "mask_png_bytes", "probabilities"]
    probabilities = outputs["probabilities"]
    assert (probabilities.dtype, probabilities.shape.as_list()) == (tf.float32, [None, None, None, 1])
    assert (outputs["mask"].dtype, outputs["mask"].shape.as_list()) == (tf.uint8, [None, None, None])
    encoded = served.signatures["serving_bytes"]
    (spec,) = encoded.structured_input_signature[1].values()
    assert list(encoded.structured_input_signature[1]) == ["image_bytes"]
    assert (spec.dtype, spec.shape.as_list()) == (tf.string, [None])
    assert sorted(encoded.structured_outputs) == ["height", "mask", "mask_png_bytes", "probabilities", "width"]
    compact = served.signatures["serving_compact"]
    assert compact.structured_input_signature == encoded.structured_input_signature
    assert sorted(compact.structured_outputs) == ["height", "mask_png_bytes", "width"]
    assert compact.structured_outputs["mask_png_bytes"].dtype == tf.string
    windows = served.signatures["serving_windows"]  # the bare model, for tfseg predict's own path
    (spec,) = windows.structured_input_signature[1].values()
    assert list(windows.structured_input_signature[1]) == ["windows"]
    assert (spec.dtype, spec.shape.as_list()) == (tf.float32, [None, 32, 32, 3])
    assert list(windows.structured_outputs) == ["probabilities"]


def test_probabilities_match_keras_at_model_size(unet, unet_export):
    assert export.saved_model_max_abs_diff(unet, unet_export) < 1e-5


# The start of a script run by `python -I`: tfseg cannot be imported, only TensorFlow (as in TF Serving).
WITHOUT_TFSEG = textwrap.dedent(
    """
    import sys
    sys.modules["tfseg"] = None  # tfseg is installed editable: block it so only TensorFlow is used
    try:
        import tfseg  # noqa: F401
        raise SystemExit("tfseg was importable")
    except ImportError:
        pass
    import numpy as np
    import tensorflow as tf
    """
)

SERVE_WITHOUT_TFSEG = WITHOUT_TFSEG + textwrap.dedent(
    """
    model_dir, png_path, out = sys.argv[1:]
    loaded = tf.saved_model.load(model_dir)
    data = open(png_path, "rb").read()
    image = tf.io.decode_png(data, channels=3)[tf.newaxis]
    default = loaded.signatures["serving_default"](images=image)
    encoded = loaded.signatures["serving_bytes"](image_bytes=tf.constant([data]))
    np.savez(out, **{f"default_{k}": v.numpy() for k, v in default.items()},
             **{f"bytes_{k}": v.numpy() for k, v in encoded.items()})
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [1, 3])
def test_serves_with_tensorflow_alone_at_the_image_size(num_classes, tmp_path):
    model = red_detector(num_classes)
    model_dir = export.export_saved_model(model, str(tmp_path / "export"))
    image = random_image(123, 321)
    image[20:80, 50:200, 0] = 255  # a red block the model must find
    (tmp_path / "image.png").write_bytes(png_bytes(image))
    script = tmp_path / "serve.py"
    script.write_text(SERVE_WITHOUT_TFSEG)
    # -I: no PYTHONPATH, no cwd on sys.path; cwd outside the repository.
    result = subprocess.run(
        [sys.executable, "-I", str(script), model_dir, str(tmp_path / "image.png"), str(tmp_path / "out.npz")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    assert out["default_mask"].shape == out["bytes_mask"].shape == (1, 123, 321)
    assert out["default_probabilities"].shape == (1, 123, 321, num_classes)
    assert out["default_mask"].dtype == np.uint8 and out["default_probabilities"].dtype == np.float32
    np.testing.assert_array_equal(out["default_mask"], out["bytes_mask"])
    np.testing.assert_array_equal(out["default_probabilities"], out["bytes_probabilities"])
    assert (out["bytes_height"].tolist(), out["bytes_width"].tolist()) == ([123], [321])
    # Inside the block the model says "red" (class 1); the served mask agrees.
    assert out["default_mask"][0, 30:70, 60:190].min() == 1
    if num_classes > 1:
        np.testing.assert_allclose(out["default_probabilities"].sum(-1), 1.0, atol=1e-5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.integers(1, 3),
    height=st.one_of(st.integers(1, 300), st.sampled_from([1, 2, 400])),
    width=st.one_of(st.integers(1, 300), st.sampled_from([1, 2, 400])),
)
def test_serving_default_returns_the_input_size(served, batch, height, width):
    images = tf.constant(np.stack([random_image(height, width, seed=i) for i in range(batch)]))
    outputs = served.signatures["serving_default"](images=images)
    assert outputs["mask"].shape == (batch, height, width)
    assert outputs["probabilities"].shape == (batch, height, width, 1)
    probabilities = outputs["probabilities"].numpy()
    assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0
    np.testing.assert_array_equal(outputs["mask"].numpy(), (probabilities[..., 0] >= 0.5).astype(np.uint8))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.tuples(st.integers(1, 120), st.integers(1, 120)), min_size=1, max_size=3))
def test_serving_bytes_mixed_sizes_are_padded_per_image(served, sizes):
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    outputs = served.signatures["serving_bytes"](image_bytes=tf.constant([png_bytes(i) for i in images]))
    heights, widths = outputs["height"].numpy().tolist(), outputs["width"].numpy().tolist()
    assert list(zip(heights, widths)) == sizes
    assert outputs["mask"].shape == (len(sizes), max(heights), max(widths))
    for i, image in enumerate(images):
        alone = served.signatures["serving_default"](images=tf.constant(image[np.newaxis]))
        h, w = sizes[i]
        np.testing.assert_allclose(
            outputs["probabilities"][i, :h, :w].numpy(), alone["probabilities"][0].numpy(), atol=1e-6
        )
        assert outputs["probabilities"][i, h:].numpy().max(initial=0) == 0  # padding is zero
        assert outputs["mask"][i, :, w:].numpy().max(initial=0) == 0


@pytest.mark.parametrize("channels", [1, 4])
def test_serving_default_rejects_non_rgb_input(served, channels):
    images = tf.zeros([1, 40, 40, channels], tf.uint8)
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        served.signatures["serving_default"](images=images)


def test_serving_default_rejects_float_input(served):
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        served.signatures["serving_default"](images=tf.zeros([1, 40, 40, 3], tf.float32))


def test_serving_bytes_rejects_bytes_that_are_not_an_image(served):
    with pytest.raises(tf.errors.InvalidArgumentError):
        served.signatures["serving_bytes"](image_bytes=tf.constant([b"not an image"]))


def test_existing_version_needs_overwrite(tmp_path):
    model = red_detector()
    first = export.export_saved_model(model, str(tmp_path), version=3)
    with pytest.raises(TfsegError, match=r"3: exists \(written by tfseg\); pass --overwrite"):
        export.export_saved_model(model, str(tmp_path), version=3)
    head = model.get_layer("probabilities")
    head.set_weights([-w for w in head.get_weights()])  # a different model, to see the swap happen
    assert export.export_saved_model(model, str(tmp_path), version=3, overwrite=True) == first
    assert export.saved_model_max_abs_diff(model, first) < 1e-5
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "3", "batching_parameters.txt"]


def _failing_save(*args, **kwargs):
    # Simulate a crash half-way through writing: something is on disk, then an error.
    path = args[1] if len(args) > 1 else kwargs["export_dir"]
    with open(os.path.join(path, "saved_model.pb"), "wb") as handle:
        handle.write(b"half")
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_export_leaves_previous_version_and_no_temp_folder(monkeypatch, tmp_path, overwrite):
    model = red_detector()
    previous = export.export_saved_model(model, str(tmp_path), version=1)
    before = open(os.path.join(previous, "saved_model.pb"), "rb").read()
    monkeypatch.setattr(tf.saved_model, "save", _failing_save)
    with pytest.raises(OSError, match="simulated"):
        export.export_saved_model(model, str(tmp_path), version=1 if overwrite else None, overwrite=overwrite)
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "1", "batching_parameters.txt"]  # no temporary
    assert open(os.path.join(previous, "saved_model.pb"), "rb").read() == before
    monkeypatch.undo()
    assert export.saved_model_max_abs_diff(model, previous) < 1e-5


def test_failed_swap_puts_the_previous_version_back(monkeypatch, tmp_path):
    model = red_detector()
    previous = export.export_saved_model(model, str(tmp_path), version=1)
    real_rename, into_place = fileio.rename, []

    def rename(source, target, **options):
        # the staged version moving to 1/ fails; the previous version moving back (the next such rename) does not
        if os.path.basename(source).startswith(".1" + fileio.TEMP_MARK) and os.path.basename(target) == "1":
            into_place.append(source)
            if len(into_place) == 1:
                raise OSError("rename failed (simulated)")
        return real_rename(source, target, **options)

    monkeypatch.setattr(fileio, "rename", rename)
    with pytest.raises(OSError, match="simulated"):
        export.export_saved_model(model, str(tmp_path), version=1, overwrite=True)
    monkeypatch.undo()
    assert len(into_place) == 2  # the failed one, then the previous version put back
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "1", "batching_parameters.txt"]
    assert export.saved_model_max_abs_diff(model, previous) < 1e-5


def test_mixed_float16_model_serves_float32(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3), name="images")
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype="mixed_float16")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(features)
    model = keras.Model(inputs, outputs)
    path = export.export_saved_model(model, str(tmp_path))
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.zeros([2, 50, 70, 3], tf.uint8))
    assert served["probabilities"].dtype == tf.float32 and served["probabilities"].shape == (2, 50, 70, 1)
    # float16 compute inside: the tolerance is float16's, not float32's
    assert export.saved_model_max_abs_diff(model, path) < 1e-3


def test_bad_arguments_are_one_line_errors(tmp_path):
    model = red_detector()
    (tmp_path / "file").write_text("x")
    with pytest.raises(TfsegError, match="is not a folder"):
        export.export_saved_model(model, str(tmp_path / "file"))
    for version in (0, -1, "v2", True):
        with pytest.raises(ConfigError, match="version"):
            export.export_saved_model(model, str(tmp_path / "e"), version=version)
    for threshold in (0, 1, 1.5):
        with pytest.raises(ConfigError, match="threshold"):
            export.export_saved_model(model, str(tmp_path / "e"), threshold=threshold)
    with pytest.raises(ConfigError, match="quantize"):
        export.export_tflite(model, str(tmp_path / "m.tflite"), quantize="int4")
    with pytest.raises(TfsegError, match=r"must end with \.tflite"):
        export.export_tflite(model, str(tmp_path / "m.bin"))
    free = keras.Input((None, None, 3))
    with pytest.raises(TfsegError, match="fixed height and width"):
        export.export_saved_model(keras.Model(free, keras.layers.Conv2D(1, 1)(free)), str(tmp_path / "e"))
    assert not (tmp_path / "e").exists()


def test_threshold_is_baked_into_the_mask(tmp_path):
    model = red_detector()
    image = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    image[..., 0] = 140  # p = sigmoid(10 * 140/255 - 5) ~ 0.62
    masks = {}
    for threshold in (0.5, 0.7):
        path = export.export_saved_model(model, str(tmp_path / str(threshold)), threshold=threshold)
        masks[threshold] = tf.saved_model.load(path).signatures["serving_default"](images=image)["mask"].numpy()
    assert masks[0.5].min() == 1 and masks[0.7].max() == 0


@pytest.mark.slow
def test_tflite_matches_keras(unet, tmp_path):
    tolerances = {"none": 1e-5, "float16": 1e-3, "dynamic": 2e-2}
    sizes = {}
    for quantize, tolerance in tolerances.items():
        path = export.export_tflite(unet, str(tmp_path / f"{quantize}.tflite"), quantize=quantize)
        assert export.tflite_max_abs_diff(unet, path) < tolerance, quantize
        sizes[quantize] = os.path.getsize(path)
    assert sizes["dynamic"] < sizes["float16"] < sizes["none"]
    # the files, and the marker that says tfseg wrote them (so that --overwrite may replace them)
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "dynamic.tflite", "float16.tflite", "none.tflite"]
    with pytest.raises(TfsegError, match="overwrite"):
        export.export_tflite(unet, str(tmp_path / "none.tflite"))


@pytest.mark.slow
def test_onnx_matches_keras(unet, tmp_path):
    pytest.importorskip("tf2onnx", reason="ONNX export needs the optional extra tfseg[onnx]")
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX check needs the optional extra tfseg[onnx]")
    path = export.export_onnx(unet, str(tmp_path / "model.onnx"))
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert export.onnx_max_abs_diff(unet, path) < 1e-5
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "model.onnx"]


# --- CLI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "model.keras")
    red_detector().save(path)
    return path


def test_cli_export_with_tta_serves_flips_and_checks_the_whole_path(keras_file, tmp_path, capsys):
    import re

    from tfseg.inference import load_predictor

    assert main(["export", "--model", keras_file, "--out", str(tmp_path / "serving"), "--tta", "flips",
                 "--threshold", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "resized to the model's input, with flip TTA" in out
    difference = float(re.search(r"path\| probability = (\S+) on a random", out).group(1))
    assert difference < 1e-5
    predictor = load_predictor(str(tmp_path / "serving"))  # the export's settings are the predictor's defaults
    assert (predictor.kind, predictor.tta, predictor.threshold, predictor.tiled) == ("saved_model", "flips", 0.4, False)


def test_cli_export_refuses_to_replace_without_overwrite(keras_file, tmp_path, capsys):
    out = str(tmp_path / "serving")
    assert main(["export", "--model", keras_file, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"exported {os.path.join(out, '1')}" in printed and "max |SavedModel serving_default - Keras|" in printed
    assert main(["export", "--model", keras_file, "--out", out, "--version", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--overwrite" in error and os.path.join(out, "1") in error
    assert main(["export", "--model", keras_file, "--out", out, "--version", "1", "--overwrite"]) == 0


def test_cli_export_accepts_a_run_folder(keras_file, tmp_path, capsys):
    run_dir = os.path.dirname(keras_file)
    assert main(["export", "--model", run_dir, "--out", str(tmp_path), "--version", "7"]) == 0
    assert os.path.isfile(tmp_path / "7" / "saved_model.pb")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--quantize", "float16"], "only applies to --format tflite"),
        (["--format", "onnx", "--version", "2"], "only applies to --format saved_model"),
        (["--threshold", "2"], "--threshold"),
        (["--format", "tflite", "--tta", "flips"], "--tta: only applies to --format saved_model"),
        (["--format", "tflite", "--tiled"], "--tiled: only applies to --format saved_model"),
    ],
)
def test_cli_export_bad_flags_exit_2(keras_file, tmp_path, capsys, extra, message):
    assert main(["export", "--model", keras_file, "--out", str(tmp_path / "x"), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_export_missing_model_exit_2(tmp_path, capsys):
    assert main(["export", "--model", str(tmp_path / "nope.keras"), "--out", str(tmp_path / "x")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_export_tflite_into_a_folder(keras_file, tmp_path, capsys):
    assert main(["export", "--model", keras_file, "--out", str(tmp_path), "--format", "tflite",
                 "--quantize", "float16"]) == 0
    assert sorted(os.listdir(tmp_path)) == [".tfseg-outputs.json", "model_float16.tflite"]
    assert "max |TFLite (float16) - Keras|" in capsys.readouterr().out


def test_export_records_nothing_but_tensorflow_objects(unet, unet_export):
    # TF Serving reads saved_model.pb + variables/; nothing of ours may be needed besides.
    assert sorted(os.listdir(unet_export)) == ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]
    assert os.listdir(os.path.join(unet_export, "assets.extra")) == ["tf_serving_warmup_requests"]
    assert b"tfseg" not in open(os.path.join(unet_export, "saved_model.pb"), "rb").read()
    # each weight stored once (ExportArchive.track() would store them twice)
    weights = sum(np.asarray(w).nbytes for w in unet.weights)
    stored = os.path.getsize(os.path.join(unet_export, "variables", "variables.data-00000-of-00001"))
    # (plus the settings the export carries: one JSON string variable of a few hundred bytes)
    assert weights <= stored < 1.2 * weights + 4096
