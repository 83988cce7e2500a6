"""Train/serve parity: what every serving path answers for a large image equals the Keras model
applied to the training pipeline's own resize of that image, resized back as documented.

Reference (independent of tfseg.export): ``tfseg.data.pipeline.resize_example`` (bilinear,
antialiased, rounded to uint8, as in training) -> ``/ 255`` -> the Keras model -> probabilities
resized bilinearly to the image's size -> ``p >= 0.5`` (binary) or argmax.

Tolerance: max |served - reference| <= 1e-4 on probabilities (float32 round-off; the serving
graph rounds the resized image to uint8 levels as the pipeline stores it). A serving resize
without antialiasing differs by up to ~0.9 on this image (the model below has a logit slope
of 12 on the channel mean).
"""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras
from tfseg import export
from tfseg.cli import main
from tfseg.data.pipeline import resize_example
from tfseg.inference import load_predictor, predict_images

SIZE = 64
HEIGHT, WIDTH = 560, 768
TOLERANCE = 1e-4


def brightness_model(num_classes=1):
    """A hand-set model, sensitive to how the image was resized: logit = 12 (mean(rgb) - 0.5).

    Binary: sigmoid of that logit. 4 classes: class 0 (dark) or class 3 (light) only,
    classes 1 and 2 far behind, so a mask holding 1 or 2 is invented.
    """
    inputs = keras.Input((SIZE, SIZE, 3), name="images")
    if num_classes == 1:
        kernel, bias, activation = np.full((1, 1, 3, 1), 4.0), [-6.0], "sigmoid"
    else:
        kernel = np.zeros((1, 1, 3, 4))
        kernel[..., 0], kernel[..., 3] = -4.0, 4.0
        bias, activation = [6.0, -20.0, -20.0, -6.0], "softmax"
    head = keras.layers.Conv2D(num_classes, 1, activation=activation, dtype="float32", name="probabilities")
    outputs = head(inputs)
    head.set_weights([kernel.astype("float32"), np.float32(bias)])
    return keras.Model(inputs, outputs)


def lesion_photo(height=HEIGHT, width=WIDTH, seed=0):
    """A dark disc on a light background with strong pixel noise (what antialiasing averages away)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    disc = (rows - 0.45 * height) ** 2 + (cols - 0.55 * width) ** 2 < (0.3 * height) ** 2
    base = np.where(disc, 70.0, 190.0)[..., None] + rng.normal(0, 70, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def reference(model, image):
    """(probabilities [h, w, C], mask [h, w]) the training pipeline's way, independent of tfseg.export."""
    small, _ = resize_example(image, np.zeros(image.shape[:2] + (1,), np.uint8), SIZE)
    probabilities = model(tf.cast(small, tf.float32)[None] / 255.0, training=False)
    probabilities = tf.image.resize(probabilities, image.shape[:2], method="bilinear")[0].numpy()
    if probabilities.shape[-1] == 1:
        return probabilities, (probabilities[..., 0] >= 0.5).astype(np.uint8)
    return probabilities, np.argmax(probabilities, -1).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    model = brightness_model()
    model.save(str(root / "model.keras"))
    export.export_saved_model(model, str(root / "serving"), version=1)
    export.export_tflite(model, str(root / "model.tflite"))
    image = lesion_photo()
    Image.fromarray(image).save(root / "photo.png")
    return root, model, image


def _check(probabilities, mask, expected_probabilities, expected_mask):
    assert probabilities.shape == expected_probabilities.shape and mask.shape == expected_mask.shape
    assert np.max(np.abs(probabilities - expected_probabilities)) <= TOLERANCE
    # masks equal but for pixels whose probability sits at the threshold
    assert np.mean(mask != expected_mask) <= 1e-3


def test_reference_is_sensitive_to_antialiasing(exported):
    # Negative control: the same model on a plain (aliasing) resize is far from the reference.
    _, model, image = exported
    expected, _ = reference(model, image)
    plain = tf.image.resize(tf.cast(image, tf.float32)[None], (SIZE, SIZE), method="bilinear") / 255.0
    aliased = tf.image.resize(model(plain), image.shape[:2], method="bilinear")[0].numpy()
    assert np.max(np.abs(aliased - expected)) > 20 * TOLERANCE


def test_serving_default_matches_the_training_resize(exported):
    root, model, image = exported
    serve = tf.saved_model.load(str(root / "serving" / "1")).signatures["serving_default"]
    out = serve(images=tf.constant(image[None]))
    _check(out["probabilities"][0].numpy(), out["mask"][0].numpy(), *reference(model, image))


def test_serving_bytes_matches_the_training_resize(exported):
    root, model, image = exported
    serve = tf.saved_model.load(str(root / "serving" / "1")).signatures["serving_bytes"]
    out = serve(image_bytes=tf.constant([(root / "photo.png").read_bytes()]))
    assert (int(out["height"][0]), int(out["width"][0])) == (HEIGHT, WIDTH)
    _check(out["probabilities"][0].numpy(), out["mask"][0].numpy(), *reference(model, image))


@pytest.mark.parametrize("kind", ["model.keras", "serving", "model.tflite"])
def test_every_predictor_matches_the_training_resize(exported, kind):
    root, model, image = exported
    [(_, probabilities, mask)] = predict_images(load_predictor(str(root / kind)), [str(root / "photo.png")])
    _check(probabilities, mask, *reference(model, image))


@pytest.mark.parametrize("kind", ["model.keras", "model.tflite"])
def test_cli_predict_writes_the_training_resize_mask(exported, kind, tmp_path, capsys):
    root, model, image = exported
    assert main(["predict", "--model", str(root / kind), str(root / "photo.png"), "--out", str(tmp_path)]) == 0
    written = np.asarray(Image.open(tmp_path / "photo_mask.png"))
    _, expected_mask = reference(model, image)
    assert written.shape == (HEIGHT, WIDTH) and set(np.unique(written)) == {0, 255}
    assert np.mean((written // 255) != expected_mask) <= 1e-3


def test_served_multiclass_mask_has_no_invented_class_up_or_down(tmp_path):
    # Classes 0 and 3 only: resizing the answer back must never produce 1 or 2.
    model = brightness_model(num_classes=4)
    path = export.export_saved_model(model, str(tmp_path / "serving"), version=1)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    rows, cols = np.mgrid[:SIZE, :SIZE]
    blocks = np.where((rows // 5 + cols // 7) % 2 == 0, 230, 20).astype(np.uint8)
    for height, width in ((SIZE * 3, SIZE * 2), (SIZE // 2, SIZE // 3 + 1), (SIZE, SIZE)):
        image = np.array(Image.fromarray(blocks).resize((width, height), Image.NEAREST))[..., None].repeat(3, -1)
        out = serve(images=tf.constant(image[None]))
        mask = out["mask"][0].numpy()
        assert set(np.unique(mask)) == {0, 3}, (height, width)
        _, expected_mask = reference(model, image)
        assert np.mean(mask != expected_mask) <= 1e-3
        np.testing.assert_allclose(out["probabilities"][0].numpy(), reference(model, image)[0], atol=TOLERANCE)


def test_empty_batches_return_empty_results(exported):
    root, _, _ = exported
    loaded = tf.saved_model.load(str(root / "serving" / "1"))
    out = loaded.signatures["serving_default"](images=tf.zeros([0, 50, 70, 3], tf.uint8))
    assert out["probabilities"].shape == (0, 50, 70, 1) and out["mask"].shape == (0, 50, 70)
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))
    assert out["probabilities"].shape == (0, 0, 0, 1) and out["mask"].shape == (0, 0, 0)
    assert out["height"].shape == (0,) and out["width"].shape == (0,)


def test_serving_functions_defaults_threshold_0_5_untiled_unscaled():
    import inspect

    model = brightness_model()
    function, _ = export.serving_functions(model)["serving_default"]
    # mean 0.6: logit 1.2, probability 0.77: foreground at the default threshold 0.5 (not at 0.8 or above)
    out = function(tf.fill([1, 40, 30, 3], tf.constant(153, tf.uint8)))
    assert out["mask"].numpy().min() == 1 and out["mask"].shape == (1, 40, 30)
    defaults = {name: p.default for name, p in inspect.signature(export.serving_functions).parameters.items()}
    assert (defaults["threshold"], defaults["tiled"], defaults["scale"]) == (0.5, False, 1.0)
