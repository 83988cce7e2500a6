"""Every path may be a URL: shards, sources, run folders, exports, predictions and evaluations on ``ram://``.

``ram://`` is TensorFlow's in-memory file system: it behaves like ``gs://`` (no
``pathlib``, no ``open()``, no ``os.rename``) and needs no network, so these tests
show that every file operation goes through :mod:`tfseg.fileio`. Each test uses
its own ``ram://`` root (the file system lives as long as the process).
"""

import io
import json
import uuid

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg import cli, fileio
from tfseg.data import load_dataset
from tfseg.data.sources import open_source
from tfseg.data.tfrecord import write_shards

TINY_RUN = ["--data", "synthetic:24", "--image-size", "16", "--base-filters", "2", "--depth", "1",
            "--batch-size", "8", "--patience", "5", "--keep-backup"]  # (runs here are extended by more epochs)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    # a URL mistaken for a local path (ram:/x) lands in tmp_path, not in the checkout
    monkeypatch.chdir(tmp_path)


def ram_root():
    return f"ram://tfseg-{uuid.uuid4().hex[:10]}"


def run_cli(capsys, *argv):
    """``(exit code, stdout + stderr)`` of ``tfseg argv`` run in this process."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def tree(root):
    """Every file below ``root``, relative to it (read with tf.io.gfile, not through tfseg)."""
    found = []
    for folder, _, files in tf.io.gfile.walk(root):
        relative = folder[len(root):].strip("/")
        found += [f"{relative}/{name}" if relative else name for name in files]
    return sorted(found)


def write_png(path, array):
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    data = io.BytesIO()
    Image.fromarray(array).save(data, format="PNG")
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data.getvalue())


def read_png(path):
    with tf.io.gfile.GFile(path, "rb") as f:
        return np.asarray(Image.open(io.BytesIO(f.read())))


def test_prepare_to_ram_then_tfrecord_source_from_ram(capsys, tmp_path):
    root = ram_root()
    shards = f"{root}/shards"
    code, out = run_cli(capsys, "prepare", "--data", "synthetic:12", "--out", shards, "--shards", "3", "--quiet")
    assert code == 0, out
    names = tree(root)
    assert names == ["shards/data-00000-of-00003.tfrecord", "shards/data-00001-of-00003.tfrecord",
                     "shards/data-00002-of-00003.tfrecord", "shards/manifest.json"], names
    manifest = json.loads(tf.io.gfile.GFile(f"{shards}/manifest.json").read())
    assert manifest["num_samples"] == 12

    # The same samples and the same split as the source it was written from.
    source, original = open_source(f"tfrecord:{shards}"), open_source("synthetic:12")
    assert source.ids() == original.ids()
    code, out = run_cli(capsys, "inspect", "--data", f"tfrecord:{shards}", "--json")
    assert code == 0, out
    report = json.loads(out[out.index("{"):])
    assert report["num_samples"] == 12, report
    batches = list(load_dataset(f"tfrecord:{shards}", split="train", image_size=16, batch_size=4, augment=False))
    write_shards("synthetic:12", str(tmp_path / "local"), shards=3, progress=False)
    expected = list(load_dataset(f"tfrecord:{tmp_path / 'local'}", split="train", image_size=16, batch_size=4,
                                 augment=False))
    assert [len(b[0]) for b in batches] == [len(b[0]) for b in expected] and batches
    for (image, mask), (local_image, local_mask) in zip(batches, expected):
        np.testing.assert_array_equal(image.numpy(), local_image.numpy())
        np.testing.assert_array_equal(mask.numpy(), local_mask.numpy())

    # A second prepare onto the same folder replaces it only with --overwrite, leaving no temporaries.
    code, out = run_cli(capsys, "prepare", "--data", "synthetic:12", "--out", shards, "--shards", "2", "--quiet")
    assert code == 2 and "--overwrite" in out, out
    code, out = run_cli(capsys, "prepare", "--data", "synthetic:12", "--out", shards, "--shards", "2", "--quiet",
                        "--overwrite")
    assert code == 0, out
    assert tree(root) == ["shards/data-00000-of-00002.tfrecord", "shards/data-00001-of-00002.tfrecord",
                          "shards/manifest.json"]


def record_renames(monkeypatch):
    """The targets of every ``tf.io.gfile.rename``, in order."""
    targets, real = [], tf.io.gfile.rename

    def rename(source, target, overwrite=False):
        targets.append(target)
        return real(source, target, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    return targets


def test_on_an_object_store_the_manifest_is_copied_last_and_commits_the_shards(capsys, monkeypatch):
    shards = f"{ram_root()}/shards"
    renamed = record_renames(monkeypatch)
    assert run_cli(capsys, "prepare", "--data", "synthetic:6", "--out", shards, "--shards", "3", "--quiet")[0] == 0
    final = [t for t in renamed if t.startswith(shards + "/")]
    assert len(final) == 4 and final[-1] == f"{shards}/manifest.json", renamed
    # Copied shards without their manifest (an interrupted copy) are not a source.
    tf.io.gfile.remove(f"{shards}/manifest.json")
    code, out = run_cli(capsys, "inspect", "--data", f"tfrecord:{shards}")
    assert code == 2 and "not finished" in out, out


def test_on_an_object_store_saved_model_pb_is_copied_last(monkeypatch):
    import keras

    from tfseg import export

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    base = f"{ram_root()}/serving"
    renamed = record_renames(monkeypatch)
    version = export.export_saved_model(model, base)
    final = [t for t in renamed if t.startswith(version + "/")]
    assert len(final) > 2 and final[-1] == f"{version}/saved_model.pb", renamed
    assert tf.saved_model.load(version).signatures["serving_default"](
        images=tf.zeros([1, 5, 7, 3], tf.uint8))["mask"].shape == (1, 5, 7)


def test_damaged_shard_on_ram_is_named(capsys):
    shards = f"{ram_root()}/shards"
    assert run_cli(capsys, "prepare", "--data", "synthetic:6", "--out", shards, "--shards", "2", "--quiet")[0] == 0
    with tf.io.gfile.GFile(f"{shards}/data-00001-of-00002.tfrecord", "wb") as f:
        f.write(b"broken")
    code, out = run_cli(capsys, "inspect", "--data", f"tfrecord:{shards}")
    assert code == 2 and "data-00001-of-00002.tfrecord" in out, out


def test_folder_source_on_ram_reads_like_a_local_folder(tmp_path):
    from conftest import write_folder_dataset

    local = write_folder_dataset(str(tmp_path / "data"), count=8, size=16)[len("folder:"):]
    root = ram_root()
    for sub in ("images", "masks"):
        tf.io.gfile.makedirs(f"{root}/{sub}")
        for name in tf.io.gfile.listdir(f"{local}/{sub}"):
            tf.io.gfile.copy(f"{local}/{sub}/{name}", f"{root}/{sub}/{name}")
    on_ram, on_disk = open_source(f"folder:{root}"), open_source(f"folder:{local}")
    assert on_ram.ids() == on_disk.ids() and len(on_ram.ids()) == 8
    a = next(iter(load_dataset(f"folder:{root}", split="train", image_size=16, batch_size=2)))
    b = next(iter(load_dataset(f"folder:{local}", split="train", image_size=16, batch_size=2)))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


@pytest.fixture(scope="module")
def ram_run():
    """A tiny run trained for one epoch into a ``ram://`` run folder (with TensorBoard logs)."""
    run = f"{ram_root()}/run"
    code = cli.main(["train", *TINY_RUN, "--epochs", "1", "--out", run, "--tensorboard", "--verbose", "0"])
    assert code == 0
    return run


@pytest.mark.slow
def test_run_folder_on_ram_trains_and_resumes(ram_run, capsys):
    names = tree(ram_run)
    for expected in ("config.json", "splits.json", "model.keras", "history.csv", "metrics.json", "curves.png",
                     "predictions.png", "saved_model/1/saved_model.pb", "backup/state.json"):
        assert expected in names, names
    assert any(name.startswith("logs/") for name in names), names
    assert not [name for name in names if fileio.is_temporary(fileio.basename(name))], names
    assert json.loads(tf.io.gfile.GFile(f"{ram_run}/metrics.json").read())["epochs_completed"] == 1

    # The same command with more epochs resumes the run on ram:// (epoch 2 only).
    code, out = run_cli(capsys, "train", *TINY_RUN, "--epochs", "2", "--out", ram_run, "--tensorboard",
                        "--verbose", "0")
    assert code == 0, out
    history = tf.io.gfile.GFile(f"{ram_run}/history.csv").read().splitlines()
    assert len(history) == 3, history  # header + one row per epoch
    assert json.loads(tf.io.gfile.GFile(f"{ram_run}/metrics.json").read())["epochs_completed"] == 2
    assert read_png(f"{ram_run}/curves.png").ndim == 3


@pytest.mark.slow
def test_export_to_ram_loads_back_with_tf_saved_model_load(ram_run, capsys):
    out = f"{ram_root()}/serving"
    code, text = run_cli(capsys, "export", "--model", ram_run, "--out", out)
    assert code == 0, text
    assert sorted(n.rstrip("/") for n in tf.io.gfile.listdir(out)) == [".tfseg-outputs.json", "1",
                                                                       "batching_parameters.txt"]
    loaded = tf.saved_model.load(f"{out}/1")
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 20, 24, 3)), tf.uint8)
    result = loaded.signatures["serving_default"](images=images)
    assert result["mask"].shape == (2, 20, 24)
    assert result["probabilities"].dtype == tf.float32

    # A second export is refused without --overwrite, then replaces the version with it.
    code, text = run_cli(capsys, "export", "--model", ram_run, "--out", out, "--version", "1")
    assert code == 2 and "--overwrite" in text, text
    code, text = run_cli(capsys, "export", "--model", ram_run, "--out", out, "--version", "1", "--overwrite")
    assert code == 0, text
    assert sorted(n.rstrip("/") for n in tf.io.gfile.listdir(out)) == [".tfseg-outputs.json", "1",
                                                                       "batching_parameters.txt"]

    # TFLite to a file on ram://
    code, text = run_cli(capsys, "export", "--model", ram_run, "--out", f"{out}-lite", "--format", "tflite")
    assert code == 0, text
    assert tf.io.gfile.GFile(f"{out}-lite/model.tflite", "rb").read()[4:8] == b"TFL3"  # a FlatBuffer TFLite model

    # The SavedModel and the .tflite on ram:// serve `tfseg predict` as they are.
    write_png(f"{out}-in/a.png", np.random.default_rng(2).integers(0, 256, (20, 24, 3)).astype(np.uint8))
    for model, pred in ((out, f"{out}-pred-sm"), (f"{out}-lite/model.tflite", f"{out}-pred-lite")):
        code, text = run_cli(capsys, "predict", "--model", model, f"{out}-in/a.png", "--out", pred)
        assert code == 0, text
        assert read_png(f"{pred}/a_mask.png").shape == (20, 24)

    # ONNX: tf2onnx writes a local file, which is copied to ram:// and checked from there.
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    code, text = run_cli(capsys, "export", "--model", ram_run, "--out", f"{out}-onnx/m.onnx", "--format", "onnx")
    assert code == 0, text
    assert tf.io.gfile.GFile(f"{out}-onnx/m.onnx", "rb").size() > 0


@pytest.mark.slow
def test_predict_reads_from_and_writes_to_ram(ram_run, capsys):
    root = ram_root()
    rng = np.random.default_rng(1)
    tf.io.gfile.makedirs(f"{root}/in/folder")
    write_png(f"{root}/in/a.png", rng.integers(0, 256, (20, 28, 3)).astype(np.uint8))
    write_png(f"{root}/in/folder/b.png", rng.integers(0, 256, (12, 16, 3)).astype(np.uint8))
    code, out = run_cli(capsys, "predict", "--model", ram_run, f"{root}/in/a.png", f"{root}/in/folder",
                        "--out", f"{root}/pred")
    assert code == 0, out
    names = [n for n in tree(f"{root}/pred") if not n.startswith(".")]
    assert names == ["a_mask.png", "a_overlay.jpg", "b_mask.png", "b_overlay.jpg"], names
    assert read_png(f"{root}/pred/a_mask.png").shape == (20, 28)
    assert read_png(f"{root}/pred/b_overlay.jpg").shape == (12, 16, 3)  # PIL reads the JPEG too
    # Its own outputs are replaced only with --overwrite, on ram:// as on a disk.
    code, out = run_cli(capsys, "predict", "--model", ram_run, f"{root}/in/a.png", "--out", f"{root}/pred")
    assert code == 2 and "--overwrite" in out, out


@pytest.mark.slow
def test_evaluate_writes_to_ram(ram_run, capsys):
    out = f"{ram_root()}/eval"
    code, text = run_cli(capsys, "evaluate", "--model", ram_run, "--data", "synthetic:24", "--out", out)
    assert code == 0, text
    names = [n for n in tree(out) if not n.startswith(".")]
    assert "per_image.csv" in names and any(n.endswith(".json") for n in names), names


def test_encoder_weights_from_ram(tmp_path):
    import keras

    from tfseg.models.encoder_unet import build_encoder_unet
    from tfseg.models.encoders import get_encoder

    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    local = str(tmp_path / "mobilenetv2.weights.h5")
    backbone.save_weights(local)
    remote = f"{ram_root()}/weights/mobilenetv2.weights.h5"
    tf.io.gfile.makedirs(fileio.dirname(remote))
    tf.io.gfile.copy(local, remote)
    model = build_encoder_unet(32, encoder="mobilenetv2", encoder_weights=remote, decoder_filters=(4,) * 5)
    np.testing.assert_array_equal(get_encoder(model).get_layer("Conv1").get_weights()[0],
                                  backbone.get_layer("Conv1").get_weights()[0])
