"""What a TF Serving deployment gets from an export: compact replies, warm-up requests, batching.

The must-show checks run the SavedModel in a process where tfseg cannot be imported, as
TF Serving does: TensorFlow (and tensorflow-serving-api's protos) only.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg import export, outputs
from tfseg.cli import main
from tfseg.segment import Settings

from test_export import SIZE, WITHOUT_TFSEG, png_bytes, random_image, red_detector

PHOTO = (768, 560)  # (height, width) of the photo a REST client sends

COMPACT_CLIENT = WITHOUT_TFSEG + textwrap.dedent(
    """
    model_dir, png_path, out = sys.argv[1:]
    signatures = tf.saved_model.load(model_dir).signatures
    data = tf.constant([open(png_path, "rb").read()])
    compact = signatures["serving_compact"](image_bytes=data)
    encoded = signatures["serving_bytes"](image_bytes=data)
    np.savez(out, **{f"compact_{k}": v.numpy() for k, v in compact.items()},
             **{f"bytes_{k}": v.numpy() for k, v in encoded.items()},
             compact_mask=tf.io.decode_png(compact["mask_png_bytes"][0]).numpy()[..., 0])
    """
)

WARMUP_RUNNER = WITHOUT_TFSEG + textwrap.dedent(
    """
    import json
    from tensorflow_serving.apis import prediction_log_pb2

    model_dir, = sys.argv[1:]
    signatures = tf.saved_model.load(model_dir).signatures
    ran = []
    for record in tf.data.TFRecordDataset(model_dir + "/assets.extra/tf_serving_warmup_requests"):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        reply = signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        ran.append({"signature": request.model_spec.signature_name,
                    "inputs": {k: list(v.shape) for k, v in inputs.items()},
                    "outputs": {k: list(v.shape) for k, v in reply.items()}})
    print(json.dumps(ran))
    """
)


def run_without_tfseg(script_text, *args, cwd):
    script = os.path.join(cwd, "client.py")
    with open(script, "w") as f:
        f.write(script_text)
    # -I: no PYTHONPATH, no cwd on sys.path; cwd outside the repository.
    result = subprocess.run([sys.executable, "-I", script, *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def photo():
    """A 768x560 photo-like PNG: smooth shading, noise, and a red block the model finds."""
    height, width = PHOTO
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows * 200 // height, cols * 200 // width, np.full_like(rows, 90)], -1)
    image = image + np.random.default_rng(0).integers(0, 40, image.shape)
    image[200:500, 100:400, 0] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [1, 3])
def test_compact_reply_is_the_serving_bytes_mask_in_a_small_png(num_classes, tmp_path):
    model_dir = export.export_saved_model(red_detector(num_classes), str(tmp_path / "export"))
    (tmp_path / "photo.png").write_bytes(png_bytes(photo()))
    run_without_tfseg(COMPACT_CLIENT, model_dir, tmp_path / "photo.png", tmp_path / "out.npz", cwd=str(tmp_path))
    out = np.load(tmp_path / "out.npz", allow_pickle=True)  # the PNG strings: an object array
    mask = out["bytes_mask"][0]
    assert mask.shape == PHOTO and mask[250:450, 150:350].min() == 1  # the block is found
    expected = mask * 255 if num_classes == 1 else mask  # one class: 0/255, visible in any viewer
    np.testing.assert_array_equal(out["compact_mask"], expected)
    assert (out["compact_height"].tolist(), out["compact_width"].tolist()) == ([PHOTO[0]], [PHOTO[1]])
    assert sorted(k for k in out.files if k.startswith("compact_")) == [
        "compact_height", "compact_mask", "compact_mask_png_bytes", "compact_width"]
    reply = export.rest_json({k[len("compact_"):]: out[k] for k in ("compact_mask_png_bytes", "compact_height",
                                                                    "compact_width")})
    assert len(reply) < 50_000
    assert json.loads(reply)["outputs"]["height"] == [PHOTO[0]]
    assert "b64" in json.loads(reply)["outputs"]["mask_png_bytes"][0]
    # serving_bytes' REST reply carries the float32 probabilities: megabytes
    full = export.rest_json({k[len("bytes_"):]: out[k] for k in out.files if k.startswith("bytes_")})
    assert len(full) > 20 * len(reply)


@pytest.fixture(scope="module")
def multiclass_export(tmp_path_factory):
    return export.export_saved_model(red_detector(3), str(tmp_path_factory.mktemp("serving") / "m"),
                                     probabilities_png=True)


def test_every_image_signature_returns_pngs_at_each_images_own_size(multiclass_export):
    served = tf.saved_model.load(multiclass_export).signatures
    sizes = [(40, 23), (9, 70), (1, 1)]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    encoded = served["serving_bytes"](image_bytes=tf.constant([png_bytes(i) for i in images]))
    compact = served["serving_compact"](image_bytes=tf.constant([png_bytes(i) for i in images]))
    np.testing.assert_array_equal(compact["mask_png_bytes"].numpy(), encoded["mask_png_bytes"].numpy())
    for i, (h, w) in enumerate(sizes):
        alone = served["serving_default"](images=tf.constant(images[i][np.newaxis]))
        mask = tf.io.decode_png(encoded["mask_png_bytes"][i]).numpy()
        assert mask.shape == (h, w, 1)  # cut from the batch's padding
        np.testing.assert_array_equal(mask[..., 0], encoded["mask"][i, :h, :w].numpy())
        np.testing.assert_array_equal(tf.io.decode_png(alone["mask_png_bytes"][0]).numpy(), mask)
        # probabilities: class k's plane is rows k*h:(k+1)*h, round(255 p)
        planes = tf.io.decode_png(encoded["probabilities_png_bytes"][i]).numpy()
        assert planes.shape == (3 * h, w, 1)
        probabilities = encoded["probabilities"][i, :h, :w].numpy()
        restored = planes[..., 0].reshape(3, h, w).transpose(1, 2, 0) / 255.0
        assert np.abs(restored - probabilities).max() <= 0.5 / 255 + 1e-6


def test_uint8_batch_pngs_are_each_image(multiclass_export):
    served = tf.saved_model.load(multiclass_export).signatures["serving_default"]
    images = np.stack([random_image(17, 5, seed=i) for i in range(2)])
    images[1, :, :, 1] = 255  # green: class 2 everywhere in the second image
    reply = served(images=tf.constant(images))
    for i in range(2):
        np.testing.assert_array_equal(tf.io.decode_png(reply["mask_png_bytes"][i]).numpy()[..., 0],
                                      reply["mask"][i].numpy())
    assert set(np.unique(tf.io.decode_png(reply["mask_png_bytes"][1]).numpy())) == {2}


def test_probabilities_png_is_off_by_default_and_stored_in_the_settings(multiclass_export, tmp_path):
    loaded = tf.saved_model.load(multiclass_export)
    assert export.saved_model_settings(loaded).probabilities_png
    assert "probabilities_png_bytes" not in loaded.signatures["serving_compact"].structured_outputs
    plain = tf.saved_model.load(export.export_saved_model(red_detector(1), str(tmp_path)))
    assert not export.saved_model_settings(plain).probabilities_png
    for name in ("serving_default", "serving_bytes"):
        assert "probabilities_png_bytes" not in plain.signatures[name].structured_outputs
        assert "probabilities_png_bytes" in loaded.signatures[name].structured_outputs


def test_empty_batches_return_empty_pngs(multiclass_export):
    served = tf.saved_model.load(multiclass_export).signatures
    for name in ("serving_bytes", "serving_compact"):
        assert served[name](image_bytes=tf.constant([], tf.string))["mask_png_bytes"].shape == (0,)
    reply = served["serving_default"](images=tf.zeros([0, 4, 4, 3], tf.uint8))
    assert reply["mask_png_bytes"].shape == reply["probabilities_png_bytes"].shape == (0,)


def test_tiled_export_serves_compact_pngs_too(tmp_path):
    model_dir = export.export_saved_model(red_detector(1), str(tmp_path), tiled=True, tta="flips")
    served = tf.saved_model.load(model_dir).signatures
    image = random_image(SIZE * 2 + 3, SIZE + 5)  # several windows, not whole
    compact = served["serving_compact"](image_bytes=tf.constant([png_bytes(image)]))
    default = served["serving_default"](images=tf.constant(image[np.newaxis]))
    mask = tf.io.decode_png(compact["mask_png_bytes"][0]).numpy()[..., 0]
    np.testing.assert_array_equal(mask, default["mask"][0].numpy() * 255)


def test_rest_json_writes_bytes_as_b64_and_floats_short():
    reply = export.rest_json({"mask_png_bytes": np.array([b"\x89PNG", b""], dtype=object),
                              "probabilities": np.array([[0.1, 1.0]], np.float32), "height": np.array([3], np.int32),
                              "empty": np.zeros([2, 0], np.float32)})
    assert reply == ('{"outputs":{"mask_png_bytes":[{"b64":"iVBORw=="},{"b64":""}],'
                     '"probabilities":[[0.1,1.0]],"height":[3],"empty":[[],[]]}}')


# --- warm-up -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("tiled", [False, True])
def test_warmup_requests_run_without_tfseg(tiled, tmp_path):
    pytest.importorskip("tensorflow_serving")
    model_dir = export.export_saved_model(red_detector(3), str(tmp_path / "export"), tiled=tiled)
    ran = json.loads(run_without_tfseg(WARMUP_RUNNER, model_dir, cwd=str(tmp_path)).strip().splitlines()[-1])
    assert [r["signature"] for r in ran] == ["serving_default", "serving_bytes", "serving_compact", "serving_windows"]
    by_name = {r["signature"]: r for r in ran}
    assert by_name["serving_default"]["inputs"] == {"images": [1, SIZE, SIZE, 3]}
    assert by_name["serving_default"]["outputs"]["mask"] == [1, SIZE, SIZE]
    assert by_name["serving_bytes"]["inputs"] == by_name["serving_compact"]["inputs"] == {"image_bytes": [1]}
    assert by_name["serving_compact"]["outputs"] == {"mask_png_bytes": [1], "height": [1], "width": [1]}
    assert by_name["serving_windows"]["outputs"] == {"probabilities": [1, SIZE, SIZE, 3]}


def test_warmup_request_images_are_the_models_input(tmp_path):
    settings = Settings(window=(24, 40), num_classes=2)
    requests = export.warmup_requests(settings)
    assert list(requests) == list(export.input_specs(settings))
    image = requests["serving_default"]["images"]
    assert image.shape == (1, 24, 40, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(tf.io.decode_png(requests["serving_bytes"]["image_bytes"][0]).numpy(), image[0])
    np.testing.assert_allclose(requests["serving_windows"]["windows"], image / 255.0, atol=1e-6)


def test_export_without_serving_api_says_so_in_one_line_and_skips_warmup(monkeypatch, tmp_path, capsys):
    keras_file = str(tmp_path / "model.keras")
    red_detector().save(keras_file)
    monkeypatch.setattr(export, "warmup_available", lambda: False)
    assert main(["export", "--model", keras_file, "--out", str(tmp_path / "serving")]) == 0
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if "warm-up" in line] == [
        "warm-up: skipped, tensorflow-serving-api is not installed: pip install 'tfseg-keras[serving]' "
        "(tensorflow-serving-api)"]
    assert not os.path.exists(tmp_path / "serving" / "1" / "assets.extra")


# --- batching ----------------------------------------------------------------------------------

@pytest.mark.parametrize("window, size", [((32, 32), 64), ((256, 256), 32), ((512, 512), 8), ((300, 500), 8),
                                          ((1024, 1024), 2), ((1448, 1448), 1), ((4096, 4096), 1)])
def test_batch_size_keeps_a_batch_near_two_million_pixels(window, size):
    values = export.batching_parameters(Settings(window=window))
    assert values["max_batch_size"] == size
    assert values["max_enqueued_batches"] == 2 * values["num_batch_threads"]


def test_batching_file_is_a_text_proto_beside_the_versions(tmp_path, capsys):
    keras_file = str(tmp_path / "model.keras")
    red_detector().save(keras_file)
    out = tmp_path / "serving"
    assert main(["export", "--model", keras_file, "--out", str(out)]) == 0
    assert f"batching: {out / 'batching_parameters.txt'}" in capsys.readouterr().out
    text = (out / "batching_parameters.txt").read_text()
    fields = dict(line.split(" { value: ") for line in text.splitlines() if not line.startswith("#"))
    assert {k: int(v.rstrip(" }")) for k, v in fields.items()} == {
        "max_batch_size": 64, "batch_timeout_micros": 2000, "num_batch_threads": 4, "max_enqueued_batches": 8}
    assert "batching_parameters.txt" in outputs.claimed(str(out))


def test_a_users_batching_file_is_kept(tmp_path):
    settings = Settings(window=(512, 512))
    (tmp_path / "batching_parameters.txt").write_text("max_batch_size { value: 3 }\n")
    for overwrite in (False, True):
        assert export.write_batching_parameters(str(tmp_path), settings, overwrite) is None
    assert (tmp_path / "batching_parameters.txt").read_text() == "max_batch_size { value: 3 }\n"


def test_tfseg_batching_file_is_replaced_only_with_overwrite(tmp_path):
    path = export.write_batching_parameters(str(tmp_path), Settings(window=(512, 512)))
    assert "max_batch_size { value: 8 }" in open(path).read()
    assert export.write_batching_parameters(str(tmp_path), Settings(window=(256, 256))) is None
    assert "max_batch_size { value: 8 }" in open(path).read()
    assert export.write_batching_parameters(str(tmp_path), Settings(window=(256, 256)), overwrite=True) == path
    assert "max_batch_size { value: 32 }" in open(path).read()


def test_cli_probabilities_png_flag(tmp_path, capsys):
    keras_file = str(tmp_path / "model.keras")
    red_detector().save(keras_file)
    assert main(["export", "--model", keras_file, "--out", str(tmp_path / "s"), "--probabilities-png"]) == 0
    loaded = tf.saved_model.load(str(tmp_path / "s" / "1"))
    assert "probabilities_png_bytes" in loaded.signatures["serving_bytes"].structured_outputs
    assert main(["export", "--model", keras_file, "--out", str(tmp_path / "t.tflite"), "--format", "tflite",
                 "--probabilities-png"]) == 2
    assert "--probabilities-png: only applies to --format saved_model" in capsys.readouterr().err
