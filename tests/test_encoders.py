"""Pretrained-encoder U-Nets and DeepLabV3+ (offline: random init or a local weights file)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfseg.config import TrainConfig
from tfseg.errors import ConfigError
from tfseg.models import encoders
from tfseg.models.deeplab import build_deeplabv3plus
from tfseg.models.encoder_unet import build_encoder_unet
from tfseg.models.encoders import (
    ImageNetPreprocessing,
    available_encoders,
    encoder_layer_names,
    get_encoder,
    set_encoder_trainable,
)

REQUIRED = ["mobilenetv2", "resnet50", "efficientnetv2b0"]
TINY_DECODER = (32, 16, 16, 8, 8)
TINY_DEEPLAB = dict(aspp_filters=16, low_level_filters=8, decoder_filters=16)
ROOT = Path(__file__).resolve().parents[1]


def tiny_unet(encoder="mobilenetv2", image_size=64, num_classes=1, **options):
    options.setdefault("encoder_weights", None)
    return build_encoder_unet(image_size, num_classes, encoder=encoder, decoder_filters=TINY_DECODER, **options)


def tiny_deeplab(encoder="resnet50", image_size=64, num_classes=1, **options):
    options.setdefault("encoder_weights", None)
    return build_deeplabv3plus(image_size, num_classes, encoder=encoder, **TINY_DEEPLAB, **options)


def random_images(n, height, width, seed=0):
    return np.random.default_rng(seed).random((n, height, width, 3), dtype=np.float32)


_CACHE = {}


def cached(kind, encoder):
    """One tiny model per (kind, encoder) at 64 px, shared by the round-trip and export tests."""
    if (kind, encoder) not in _CACHE:
        _CACHE[kind, encoder] = tiny_unet(encoder) if kind == "unet" else tiny_deeplab(encoder, num_classes=3)
    return _CACHE[kind, encoder]


# Each required encoder once, ResNet50 through DeepLabV3+ (its truncated backbone
# writes a 4x smaller .keras file than the ResNet50 U-Net).
MODELS = [("unet", "mobilenetv2"), ("unet", "efficientnetv2b0"), ("deeplab", "resnet50")]
EXTRA = [name for name in available_encoders() if name not in REQUIRED]


# --- preprocessing ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocessing_matches_keras_preprocess_input_on_0_255(mode):
    images = random_images(2, 8, 8)
    expected = keras.applications.imagenet_utils.preprocess_input(images * 255.0, mode=mode)
    actual = keras.ops.convert_to_numpy(ImageNetPreprocessing(mode)(images))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)


def test_torch_mode_matches_efficientnetv2_builtin_preprocessing():
    backbone = keras.applications.EfficientNetV2B0(
        include_top=False, weights=None, input_shape=(32, 32, 3), include_preprocessing=True
    )
    normalization = next(l for l in backbone.layers if isinstance(l, keras.layers.Normalization))
    builtin = keras.Model(backbone.input, normalization.output)
    images = random_images(2, 32, 32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ImageNetPreprocessing("torch")(images)),
        keras.ops.convert_to_numpy(builtin(images * 255.0)),
        rtol=1e-5,
        atol=1e-5,
    )


# --- shapes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoder, size", [(name, size) for name in REQUIRED for size in (64, 96)] + [(name, 64) for name in EXTRA]
)
def test_encoder_unet_shapes(encoder, size):
    model = tiny_unet(encoder, size)
    assert model.input.name == "images" and model.layers[-1].name == "probabilities"
    feature_sizes = [tuple(t.shape[1:3]) for t in get_encoder(model).outputs]
    assert feature_sizes == [(size // s, size // s) for s in encoders.STRIDES]
    images = random_images(2, size, size)
    output = keras.ops.convert_to_numpy(model(images))
    assert output.shape == (2, size, size, 1) and output.dtype == np.float32
    # each image's answer is its own and depends on its pixels (not only the shape is right)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images[1:])), output[1:], atol=1e-5)
    assert output.std(axis=(1, 2)).min() > 1e-6 and np.abs(output[0] - output[1]).max() > 1e-6


@pytest.mark.parametrize("encoder", ["resnet50", "mobilenetv2"])
@pytest.mark.parametrize("size", [64, (48, 80)])
def test_deeplab_shapes_and_softmax(encoder, size):
    height, width = (size, size) if isinstance(size, int) else size
    model = tiny_deeplab(encoder, size, num_classes=3)
    assert [tuple(t.shape[1:3]) for t in get_encoder(model).outputs] == [(height // 4, width // 4), (height // 16, width // 16)]
    output = keras.ops.convert_to_numpy(model(random_images(2, height, width)))
    assert output.shape == (2, height, width, 3) and output.dtype == np.float32
    np.testing.assert_allclose(output.sum(-1), 1.0, atol=1e-5)


def test_mixed_precision_keeps_float32_probabilities():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = tiny_deeplab("mobilenetv2", 32)
    finally:
        keras.config.set_dtype_policy(previous)
    assert get_encoder(model).compute_dtype == "float16"
    output = keras.ops.convert_to_numpy(model(random_images(1, 32, 32)))
    assert output.dtype == np.float32 and np.isfinite(output).all()


def test_build_model_names_and_train_config_options():
    import tfseg.models

    assert "deeplabv3plus" in tfseg.models.available_models()
    deeplab = tfseg.models.build_model("deeplabv3plus", image_size=64, encoder="mobilenetv2",
                                       encoder_weights=None, **TINY_DEEPLAB)
    assert deeplab.name == "deeplabv3plus_mobilenetv2"
    # What tfseg train passes: the U-Net options of TrainConfig plus encoder settings.
    config = TrainConfig(model="unet", encoder="mobilenetv2", base_filters=4, image_size=64)
    accepted = tfseg.models.accepted_options("unet", **config.model_options())
    unet = tfseg.models.build_model("unet", image_size=64, **config.model_options(accepted))
    assert get_encoder(unet).name == "encoder"
    assert unet.get_layer("decoder5_2_conv").filters == 4  # base_filters * 1 at full size
    config = TrainConfig(model="deeplabv3plus", encoder="mobilenetv2", image_size=64)
    options = config.model_options(tfseg.models.accepted_options("deeplabv3plus"))
    assert tfseg.models.build_model("deeplabv3plus", image_size=64, **options).output.shape[-1] == 1


# --- serialization and export --------------------------------------------------


@pytest.mark.parametrize("kind, encoder", MODELS)
def test_keras_round_trip_safe_mode(kind, encoder, tmp_path):
    model = cached(kind, encoder)
    set_encoder_trainable(model, False)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)  # no custom_objects
    images = random_images(2, 64, 64, seed=1)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    assert encoder_layer_names(loaded) == encoder_layer_names(model)
    set_encoder_trainable(model, True, freeze_batchnorm=False)  # as built (random init)


@pytest.mark.slow
@pytest.mark.parametrize("kind, encoder", MODELS)
def test_export_serving_default_on_odd_sized_image(kind, encoder, tmp_path):
    import tensorflow as tf

    from tfseg.export import export_saved_model

    model = cached(kind, encoder)
    path = export_saved_model(model, tmp_path / "export")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image = (random_images(1, 37, 50, seed=2) * 255).astype(np.uint8)
    outputs = serve(images=tf.constant(image))
    classes = model.output.shape[-1]
    assert tuple(outputs["probabilities"].shape) == (1, 37, 50, classes)
    assert tuple(outputs["mask"].shape) == (1, 37, 50) and outputs["mask"].dtype == tf.uint8
    # Same numbers as the Keras model on the image resized to the model's size as training stores it
    # (bilinear with antialiasing, rounded to uint8 levels).
    resized = tf.round(tf.clip_by_value(
        tf.image.resize(image.astype(np.float32), (64, 64), antialias=True), 0.0, 255.0)) / 255.0
    expected = tf.image.resize(model.predict(resized.numpy(), verbose=0), (37, 50))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected.numpy(), atol=1e-4)


# --- training ---------------------------------------------------------------------


def disk_dataset(n=8, size=64, seed=0):
    """Bright disks on a dark noisy background, and their masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.random((n, size, size, 3), dtype=np.float32) * 0.3
    masks = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(size // 10, size // 5 + 1)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        images[i][disk] += 0.6
        masks[i, disk, 0] = 1.0
    return images, masks


@pytest.mark.slow
def test_deeplab_tiny_fit_lowers_loss():
    keras.utils.set_random_seed(0)
    model = tiny_deeplab("mobilenetv2", 32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    images, masks = disk_dataset(size=32)
    history = model.fit(images, masks, batch_size=8, epochs=5, verbose=0).history["loss"]
    assert history[-1] < 0.9 * history[0], history


@pytest.mark.slow
def test_two_phase_fine_tuning_frozen_then_unfrozen():
    """The schedule tfseg train runs for --freeze-encoder-epochs N (see set_encoder_trainable)."""
    keras.utils.set_random_seed(0)
    model = tiny_unet("mobilenetv2", 32)
    encoder = get_encoder(model)
    images, masks = disk_dataset(size=32)
    conv = encoder.get_layer("Conv1")
    bn = encoder.get_layer("bn_Conv1")

    set_encoder_trainable(model, False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    encoder_before = [w.copy() for w in encoder.get_weights()]
    loss = model.fit(images, masks, batch_size=8, epochs=6, verbose=0).history["loss"]
    assert loss[-1] < 0.95 * loss[0], loss  # the decoder alone learns
    for before, after in zip(encoder_before, encoder.get_weights()):
        np.testing.assert_array_equal(before, after)

    set_encoder_trainable(model, True)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")  # lr x0.1
    conv_before, bn_before = conv.get_weights()[0].copy(), [w.copy() for w in bn.get_weights()]
    model.fit(images, masks, batch_size=8, epochs=8, initial_epoch=6, verbose=0)
    assert not np.array_equal(conv_before, conv.get_weights()[0])
    for before, after in zip(bn_before, bn.get_weights()):  # gamma, beta and statistics kept
        np.testing.assert_array_equal(before, after)


def test_freeze_and_unfreeze_change_trainable_weights():
    model = tiny_unet("mobilenetv2")  # random init: BN layers trainable at build
    assert encoders.has_encoder(model)
    encoder = get_encoder(model)
    encoder_ids = {id(w) for w in encoder.weights}
    n_all = len(model.trainable_weights)
    n_encoder = len(encoder.trainable_weights)
    bn_trainable = sum(len(l.trainable_weights) for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization))
    assert bn_trainable > 0

    set_encoder_trainable(model, False)
    assert len(model.trainable_weights) == n_all - n_encoder > 0
    assert not any(id(w) in encoder_ids for w in model.trainable_weights)

    set_encoder_trainable(model, True)  # BN stays frozen by default
    assert len(model.trainable_weights) == n_all - bn_trainable
    bn = next(l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization))
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    model(random_images(2, 64, 64), training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), before)  # inference mode

    set_encoder_trainable(model, True, freeze_batchnorm=False)
    assert len(model.trainable_weights) == n_all


# --- weights ----------------------------------------------------------------------


def test_weights_from_a_local_file_are_loaded_and_freeze_batchnorm(tmp_path):
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "mobilenetv2.weights.h5"
    backbone.save_weights(path)
    model = tiny_unet("mobilenetv2", encoder_weights=str(path))
    encoder = get_encoder(model)
    np.testing.assert_array_equal(encoder.get_layer("Conv1").get_weights()[0], backbone.get_layer("Conv1").get_weights()[0])
    batchnorms = [l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert batchnorms and not any(l.trainable for l in batchnorms)


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")  # keras: MobileNetV2 224 px weights at 64 px
@pytest.mark.parametrize("encoder", available_encoders())
def test_missing_imagenet_weights_offline_names_the_file(encoder, tmp_path, monkeypatch):
    requested = []

    def offline_get_file(fname=None, origin=None, **kwargs):
        requested.append((fname, kwargs.get("cache_subdir")))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline_get_file)
    with pytest.raises(ConfigError) as error:
        build_encoder_unet(64, encoder=encoder, encoder_weights="imagenet", decoder_filters=TINY_DECODER)
    message = str(error.value)
    (fname, subdir), = requested
    # the folder get_file uses (tests/test_keras_compat.py checks that it is)
    assert subdir == "models" and os.path.join(encoders.weights_cache_dir(), fname) in message
    assert "KERAS_HOME" in message and "https://storage.googleapis.com/" in message and "\n" not in message


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # keras, loading the wrong file
def test_user_mistakes_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="image_size 100: .*multiple of 32"):
        tiny_unet("mobilenetv2", 100)
    with pytest.raises(ConfigError, match="image_size 40: .*multiple of 16"):
        tiny_deeplab("mobilenetv2", 40)
    with pytest.raises(ConfigError, match="encoder 'vgg99': unknown encoder; choose one of .*mobilenetv2"):
        tiny_unet("vgg99")
    with pytest.raises(ConfigError, match="no such file"):
        tiny_unet("mobilenetv2", encoder_weights=str(tmp_path / "missing.h5"))
    wrong = tmp_path / "resnet.weights.h5"
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(wrong)
    with pytest.raises(ConfigError, match="resnet.weights.h5: cannot be loaded into mobilenetv2"):
        tiny_unet("mobilenetv2", encoder_weights=str(wrong))
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(1, 1)])
    assert not encoders.has_encoder(plain)
    with pytest.raises(ConfigError, match="has no pretrained encoder"):
        set_encoder_trainable(plain, False)


# --- backend neutrality -------------------------------------------------------------

MODULES = ["tfseg/models/encoders.py", "tfseg/models/encoder_unet.py", "tfseg/models/deeplab.py"]


@pytest.mark.parametrize("module", MODULES)
def test_modules_never_import_tensorflow(module):
    tree = ast.parse((ROOT / module).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [name for name in imported if name.split(".")[0] == "tensorflow"]


@pytest.mark.slow
def test_encoder_unet_runs_under_jax():
    pytest.importorskip("jax")
    script = (
        "import sys, json, numpy as np\n"
        "from tfseg.models.encoder_unet import build_encoder_unet\n"
        "m = build_encoder_unet(32, encoder='mobilenetv2', encoder_weights=None, decoder_filters=(8,) * 5)\n"
        "y = m.predict(np.random.rand(1, 32, 32, 3).astype('float32'), verbose=0)\n"
        "print(json.dumps({'shape': list(y.shape), 'tf': 'tensorflow' in sys.modules}))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"shape": [1, 32, 32, 1], "tf": False}
