"""`tfseg predict` and tfseg.inference: masks at the images' own sizes, from every model kind."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg import export
from tfseg.cli import main
from tfseg.data.pipeline import resize_example
from tfseg.errors import DataError, TfsegError
from tfseg.inference import list_images, load_predictor, predict_images, read_image, resolve_model_path

SIZE = 32
# (height, width, format): mixed sizes and formats in one folder
IMAGES = {"wide": (40, 90, "PNG"), "tall": (72, 30, "BMP"), "square": (64, 64, "PNG"), "photo": (48, 56, "JPEG")}


def red_detector(num_classes=1, size=SIZE):
    """A hand-set model: class 1 where red > 0.5 (and class 2 where green > 0.5 if 3 classes)."""
    inputs = keras.Input((size, size, 3), name="images")
    if num_classes == 1:
        kernel, bias, activation = [[10.0], [0.0], [0.0]], [-5.0], "sigmoid"
    else:
        kernel, bias, activation = [[0.0, 10.0, 0.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0]], [0.0, -5.0, -5.0], "softmax"
    head = keras.layers.Conv2D(num_classes, 1, activation=activation, dtype="float32", name="probabilities")
    outputs = head(inputs)
    head.set_weights([np.reshape(kernel, (1, 1, 3, num_classes)).astype("float32"), np.float32(bias)])
    return keras.Model(inputs, outputs)


def red_square_image(height, width):
    """Grey image with a red rectangle over the middle half; returns (image, true mask)."""
    image = np.full((height, width, 3), 60, np.uint8)
    truth = np.zeros((height, width), bool)
    truth[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    image[truth] = (230, 30, 30)
    return image, truth


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for stem, (height, width, fmt) in IMAGES.items():
        image, _ = red_square_image(height, width)
        Image.fromarray(image).save(folder / f"{stem}.{fmt.lower().replace('jpeg', 'jpg')}", format=fmt, quality=95)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same binary model as model.keras, a SavedModel base folder (versions 1, 2) and a .tflite."""
    root = tmp_path_factory.mktemp("models")
    model = red_detector()
    model.save(str(root / "model.keras"))
    export.export_saved_model(red_detector(), str(root / "serving"), version=1)
    export.export_saved_model(model, str(root / "serving"), version=2)
    export.export_tflite(model, str(root / "model.tflite"))
    return root


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_cli_predict_writes_masks_and_overlays_at_original_sizes(models, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "--model", str(models / "model.keras"), str(image_dir), "--out", str(out),
                 "--batch-size", "3", "--overlay-format", "png"]) == 0  # lossless: exact overlay pixels
    captured = capsys.readouterr()
    assert captured.err == ""  # progress bars only on a terminal (tests/test_user_view.py)
    written = [name for name in os.listdir(out) if name != ".tfseg-outputs.json"]  # the marker of tfseg's files
    assert sorted(written) == sorted(f"{s}_{kind}.png" for s in IMAGES for kind in ("mask", "overlay"))
    for stem, (height, width, _) in IMAGES.items():
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert mask.shape == (height, width) and overlay.shape == (height, width, 3)
        assert set(np.unique(mask)) <= {0, 255}
        _, truth = red_square_image(height, width)
        assert iou(mask == 255, truth) > 0.8, stem
        # The overlay is the image plus a red outline along the predicted region only.
        image = read_image(str(next(image_dir.glob(f"{stem}.*"))))  # as predict decoded it (JPEG decoders differ)
        changed = np.any(overlay != image, axis=-1)
        assert changed.any() and np.all(overlay[changed] == (255, 0, 0))
        assert np.all(mask[changed] == 255)


def test_cli_predict_no_overlays_writes_the_same_masks_only(models, image_dir, tmp_path):
    both, masks = tmp_path / "both", tmp_path / "masks"
    for out, extra in ((both, []), (masks, ["--no-overlays"])):
        assert main(["predict", "--model", str(models / "model.keras"), str(image_dir), "--out", str(out),
                     "--batch-size", "2", *extra]) == 0
    assert sorted(os.listdir(masks)) == sorted([".tfseg-outputs.json"] + [f"{s}_mask.png" for s in IMAGES])
    for stem in IMAGES:  # written by the writer threads in any order: each file is its own image's
        assert (masks / f"{stem}_mask.png").read_bytes() == (both / f"{stem}_mask.png").read_bytes()
    # Its own masks are replaced with --overwrite, and the overlays it never wrote are not claimed.
    assert main(["predict", "--model", str(models / "model.keras"), str(image_dir), "--out", str(masks),
                 "--no-overlays", "--overwrite"]) == 0
    assert not any("_overlay." in name for name in os.listdir(masks))


def test_cli_predict_overlays_are_jpeg_by_default_and_close_to_the_png(models, image_dir, tmp_path):
    jpeg, png = tmp_path / "jpeg", tmp_path / "png"
    for out, extra in ((jpeg, []), (png, ["--overlay-format", "png"])):
        assert main(["predict", "--model", str(models / "model.keras"), str(image_dir), "--out", str(out),
                     *extra]) == 0
    assert sorted(os.listdir(jpeg)) == sorted([".tfseg-outputs.json"] + [f"{s}_{kind}" for s in IMAGES
                                                                          for kind in ("mask.png", "overlay.jpg")])
    for stem, (height, width, _) in IMAGES.items():
        assert (jpeg / f"{stem}_mask.png").read_bytes() == (png / f"{stem}_mask.png").read_bytes()
        lossy = np.asarray(Image.open(jpeg / f"{stem}_overlay.jpg")).astype(int)
        exact = np.asarray(Image.open(png / f"{stem}_overlay.png")).astype(int)
        assert Image.open(jpeg / f"{stem}_overlay.jpg").format == "JPEG" and lossy.shape == (height, width, 3)
        assert np.abs(lossy - exact).mean() < 4  # quality 90
        line = np.all(exact == (255, 0, 0), axis=-1) & np.any(read_image(str(next(image_dir.glob(f"{stem}.*"))))
                                                               != (255, 0, 0), axis=-1)
        assert line.any() and lossy[line][:, 0].mean() > 200 and lossy[line][:, 1:].mean() < 80  # still red


@pytest.mark.parametrize("kind", ["keras", "saved_model", "tflite"])
def test_every_model_kind_predicts_the_same(models, image_dir, kind):
    path = {"keras": models / "model.keras", "saved_model": models / "serving", "tflite": models / "model.tflite"}[kind]
    predictor = load_predictor(str(path))
    assert predictor.kind == kind
    paths = list_images([str(image_dir)])
    got = list(predict_images(predictor, paths, batch_size=4))
    assert [p for p, _, _ in got] == paths
    model = red_detector()
    for path, probabilities, mask in got:
        height, width, _ = IMAGES[os.path.splitext(os.path.basename(path))[0]]
        assert probabilities.shape == (height, width, 1) and mask.shape == (height, width)
        assert mask.dtype == np.uint8
        # the reference: the training pipeline's resize, the model, bilinear back (not tfseg.inference)
        small, _ = resize_example(read_image(path), np.zeros((height, width, 1), np.uint8), SIZE)
        expected = tf.image.resize(model(tf.cast(small, tf.float32)[None] / 255.0), (height, width))[0].numpy()
        np.testing.assert_allclose(probabilities, expected, atol=1e-4)
        # equal up to pixels whose probability sits near the threshold
        assert np.mean(mask != (expected[..., 0] >= 0.5)) < 1e-3
        _, truth = red_square_image(height, width)
        assert iou(mask > 0, truth) > 0.9


def test_saved_model_base_folder_loads_the_latest_version(models):
    assert resolve_model_path(str(models / "serving")) == ("saved_model", str(models / "serving" / "2"))
    assert resolve_model_path(str(models / "serving" / "1")) == ("saved_model", str(models / "serving" / "1"))
    assert resolve_model_path(str(models)) == ("keras", str(models / "model.keras"))  # a RUN_DIR


def test_run_folder_without_model_keras_uses_its_saved_model(tmp_path):
    export.export_saved_model(red_detector(), str(tmp_path / "saved_model"), version=1)
    assert resolve_model_path(str(tmp_path)) == ("saved_model", str(tmp_path / "saved_model" / "1"))


def test_multiclass_masks_are_class_ids(tmp_path, capsys):
    model_path = str(tmp_path / "model.keras")
    red_detector(num_classes=3).save(model_path)
    image = np.zeros((50, 70, 3), np.uint8)
    image[:, :20, 0] = 255  # red -> class 1
    image[:, 50:, 1] = 255  # green -> class 2
    Image.fromarray(image).save(tmp_path / "classes.png")
    out = tmp_path / "out"
    assert main(["predict", "--model", model_path, str(tmp_path / "classes.png"), "--out", str(out)]) == 0
    mask = np.asarray(Image.open(out / "classes_mask.png"))
    assert mask.shape == (50, 70)
    assert (mask[:, :15] == 1).all() and (mask[:, 25:45] == 0).all() and (mask[:, 55:] == 2).all()


def test_threshold_flag_changes_the_mask(models, tmp_path):
    image = np.zeros((20, 20, 3), np.uint8)
    image[..., 0] = 140  # p = sigmoid(10 * 140/255 - 5) ~ 0.62
    Image.fromarray(image).save(tmp_path / "dim.png")
    predictor = load_predictor(str(models / "model.tflite"))
    [(_, _, low)] = predict_images(predictor, [str(tmp_path / "dim.png")], threshold=0.5)
    [(_, _, high)] = predict_images(predictor, [str(tmp_path / "dim.png")], threshold=0.7)
    assert low.min() == 1 and high.max() == 0


def test_bad_files_are_all_listed_and_nothing_is_written(models, image_dir, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    shutil.copytree(image_dir, inputs)
    (inputs / "notes.png").write_text("not an image")
    (inputs / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(DataError) as caught:
        list(predict_images(load_predictor(str(models / "model.keras")), list_images([str(inputs)])))
    assert "notes.png" in str(caught.value) and "empty.jpg" in str(caught.value)
    assert main(["predict", "--model", str(models / "model.keras"), str(inputs), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "2 of 6 image(s) cannot be read" in error and "notes.png" in error and "empty.jpg" in error
    assert "empty.jpg: cannot decode: empty file" in error
    assert "Traceback" not in error
    assert not out.exists() or not os.listdir(out)


def test_images_of_every_size_share_a_model_call_of_batch_size_images(models, tmp_path):
    predictor = load_predictor(str(models / "model.keras"))
    adapter, calls = predictor.predict_windows, []
    predictor.predict_windows = lambda windows: calls.append(int(windows.shape[0])) or adapter(windows)
    paths = []
    for i in range(11):
        path = tmp_path / f"image{i}.png"
        Image.fromarray(red_square_image(20 + 7 * i, 50 - 3 * i)[0]).save(path)
        paths.append(str(path))
    shapes = [p.shape[:2] for _, p, _ in predict_images(predictor, paths)]  # the default batch_size: 8
    assert calls == [8, 3] and shapes == [(20 + 7 * i, 50 - 3 * i) for i in range(11)]
    calls.clear()
    list(predict_images(predictor, paths, batch_size=4))
    assert calls == [4, 4, 3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["MODEL", "missing.png"], "missing.png: no such file or folder"),
        (["MISSING", "IMAGES"], "no such file or folder"),
        (["MODEL", "IMAGES", "--threshold", "1"], "--threshold"),
        (["MODEL", "IMAGES", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_predict_user_errors_exit_2(models, image_dir, tmp_path, capsys, args, message):
    names = {"MODEL": str(models / "model.keras"), "MISSING": str(tmp_path / "none.keras"), "IMAGES": str(image_dir)}
    argv = ["predict", "--model", *[names.get(a, a) for a in args[:1]], *[names.get(a, a) for a in args[1:]],
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_same_stem_twice_is_refused(models, image_dir, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "wide.jpg")
    argv = ["predict", "--model", str(models / "model.keras"), str(image_dir / "wide.png"), str(tmp_path / "wide.jpg"),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "would overwrite" in capsys.readouterr().err


def test_unloadable_models_are_one_line_errors(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    (tmp_path / "weights.h5").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TfsegError, match="broken.keras: cannot load it as a Keras model"):
        load_predictor(str(tmp_path / "broken.keras"))
    with pytest.raises(TfsegError, match="expected a .keras or .tflite file"):
        load_predictor(str(tmp_path / "weights.h5"))
    with pytest.raises(TfsegError, match="no model.keras, saved_model.pb or numbered SavedModel version"):
        load_predictor(str(tmp_path / "empty"))


def test_predict_with_a_unet_keeps_sizes(tmp_path):
    from tfseg.models import build_model

    model = build_model("unet", SIZE, base_filters=4, depth=2)
    model.save(str(tmp_path / "model.keras"))
    for i, (height, width) in enumerate([(1, 1), (2, 400), (33, 17)]):
        Image.fromarray(np.full((height, width, 3), 9 * i, np.uint8)).save(tmp_path / f"{i}.png")
    results = list(predict_images(load_predictor(str(tmp_path)), [str(tmp_path / f"{i}.png") for i in range(3)]))
    assert [m.shape for _, _, m in results] == [(1, 1), (2, 400), (33, 17)]
    assert all(np.isfinite(p).all() for _, p, _ in results)


def test_keras_predictor_equals_the_serving_graph(models, image_dir):
    # What `tfseg predict` writes is what TF Serving would answer for the same file.
    served = tf.saved_model.load(str(models / "serving" / "2")).signatures["serving_bytes"]
    predictor = load_predictor(str(models / "model.keras"))
    for path in list_images([str(image_dir)]):
        [(_, probabilities, mask)] = predict_images(predictor, [path])
        outputs = served(image_bytes=tf.constant([open(path, "rb").read()]))
        np.testing.assert_allclose(outputs["probabilities"][0].numpy(), probabilities, atol=1e-5)
        assert np.mean(outputs["mask"][0].numpy() != mask) < 1e-3
