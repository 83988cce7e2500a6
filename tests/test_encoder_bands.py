"""Pretrained encoders on other bands than RGB: the first convolution and the preprocessing adapted as
segmentation_models.pytorch's ``patch_first_conv`` does (offline: weights files written here)."""

import keras
import numpy as np
import pytest

from tfseg.errors import ConfigError
from tfseg.models import encoders
from tfseg.models.deeplab import build_deeplabv3plus
from tfseg.models.encoder_unet import build_encoder_unet
from tfseg.models.encoders import adapt_first_kernel, band_statistics, build_encoder, get_encoder, preprocessing_layer

BANDS = [1, 2, 4, 13]
SIZE = 32
# the first convolution and the preprocessing mode of each backbone family
FIRST_CONV = {"mobilenetv2": ("Conv1", "tf"), "resnet50": ("conv1_conv", "caffe"),
              "efficientnetv2b0": ("stem_conv", "torch")}


def reference_kernel(kernel, channels):
    """smp's patch_first_conv, written with loops over [filters, in, kh, kw] as PyTorch stores it."""
    weight = np.transpose(kernel, (3, 2, 0, 1))
    if channels == 1:
        new = weight.sum(1, keepdims=True)
    else:
        new = np.zeros((weight.shape[0], channels) + weight.shape[2:], weight.dtype)
        for i in range(channels):
            new[:, i] = weight[:, i % 3]
        new = new * (3 / channels)
    return np.transpose(new, (2, 3, 1, 0))


@pytest.mark.parametrize("channels", BANDS + [3, 6])
def test_adapted_kernel_matches_smp_reference(channels):
    kernel = np.random.default_rng(channels).normal(size=(3, 3, 3, 8)).astype("float32")
    adapted = adapt_first_kernel(kernel, channels)
    assert adapted.shape == (3, 3, channels, 8)
    np.testing.assert_allclose(adapted, reference_kernel(kernel, channels), rtol=1e-6)
    if channels == 1 or channels % 3 == 0:  # a constant image gives the RGB kernels' response
        np.testing.assert_allclose(adapted.sum(axis=2), kernel.sum(axis=2), rtol=1e-5, atol=1e-5)


def test_adapt_first_kernel_refuses_a_kernel_that_is_not_rgb():
    with pytest.raises(ValueError, match="expected an RGB kernel"):
        adapt_first_kernel(np.zeros((3, 3, 4, 8)), 2)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_band_statistics(mode):
    mean3, std3 = band_statistics(mode, 3)
    mean, std = band_statistics(mode, 13)
    assert mean == [mean3[i % 3] for i in range(13)] and std == [std3[i % 3] for i in range(13)]
    mean1, std1 = band_statistics(mode, 1)
    np.testing.assert_allclose([mean1[0], std1[0]], [np.mean(mean3), np.mean(std3)])
    # what the layer computes: (x - mean) / std per band; three bands keep the RGB maps (caffe: BGR order)
    x = np.random.default_rng(0).random((1, 2, 2, 13), dtype=np.float32)
    expected = (x - np.asarray(mean, "float32")) / np.asarray(std, "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(preprocessing_layer(mode, channels=13)(x)), expected,
                               rtol=1e-5, atol=1e-3)
    rgb = x[..., :3]
    expected = keras.applications.imagenet_utils.preprocess_input(rgb * 255.0, mode=mode)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(preprocessing_layer(mode)(rgb)), expected,
                               rtol=1e-5, atol=1e-4)


def rgb_weights_file(encoder, tmp_path):
    """A weights file of the RGB backbone, as keras.applications writes ImageNet's (random values, offline)."""
    spec = encoders.get_encoder_spec(encoder)
    keras.utils.set_random_seed(1)
    backbone = getattr(keras.applications, spec.constructor)(include_top=False, weights=None,
                                                             input_shape=(SIZE, SIZE, 3), **dict(spec.options))
    path = tmp_path / f"{encoder}.weights.h5"
    backbone.save_weights(path)
    return backbone, str(path)


def features_model(encoder, channels, weights):
    images = keras.Input((SIZE, SIZE, channels))
    features = build_encoder(encoder, images, weights=weights)
    return keras.Model(images, [features[s] for s in encoders.STRIDES])


@pytest.mark.parametrize("encoder", sorted(FIRST_CONV))
def test_pretrained_rgb_weights_adapted_to_bands(encoder, tmp_path):
    """Every weight copied, the first kernel adapted; an image whose bands repeat R, G, B (6 bands) gives
    the RGB encoder's features exactly: kernel and preprocessing follow the same band rule."""
    backbone, path = rgb_weights_file(encoder, tmp_path)
    conv, mode = FIRST_CONV[encoder]
    rgb_model = features_model(encoder, 3, path)
    rgb = np.random.default_rng(2).random((2, SIZE, SIZE, 3), dtype=np.float32)
    expected = [keras.ops.convert_to_numpy(f) for f in rgb_model(rgb)]
    for channels in (4, 6):
        model = features_model(encoder, channels, path)
        encoder_model = model.get_layer(encoders.ENCODER_NAME)
        kernel = backbone.get_layer(conv).get_weights()[0]
        rgb_order = kernel[:, :, ::-1] if mode == "caffe" else kernel  # caffe weights read BGR
        np.testing.assert_allclose(encoder_model.get_layer(conv).get_weights()[0],
                                   reference_kernel(rgb_order, channels), rtol=1e-6)
        copied = [layer for layer in encoder_model.layers if layer.name != conv and layer.weights]
        assert len(copied) > 20
        for layer in copied:
            for a, b in zip(backbone.get_layer(layer.name).get_weights(), layer.get_weights()):
                np.testing.assert_array_equal(a, b)
        assert not any(l.trainable for l in encoders._batchnorm_layers(encoder_model))
    repeated = [keras.ops.convert_to_numpy(f) for f in model(np.concatenate([rgb, rgb], axis=-1))]
    for a, b in zip(repeated, expected):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-3 * np.abs(b).max())


def test_one_grey_band_equals_the_rgb_encoder_on_grey_in_tf_mode(tmp_path):
    _, path = rgb_weights_file("mobilenetv2", tmp_path)
    grey = np.random.default_rng(3).random((1, SIZE, SIZE, 1), dtype=np.float32)
    one = features_model("mobilenetv2", 1, path)(grey)
    three = features_model("mobilenetv2", 3, path)(np.repeat(grey, 3, axis=-1))
    for a, b in zip(one, three):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-3 * np.abs(b).max())


@pytest.mark.parametrize("channels", BANDS)
def test_models_on_bands_build_and_predict(channels, tmp_path):
    _, path = rgb_weights_file("mobilenetv2", tmp_path)
    unet = build_encoder_unet(SIZE, 1, encoder="mobilenetv2", encoder_weights=path, channels=channels,
                              decoder_filters=(8,) * 5)
    deeplab = build_deeplabv3plus(SIZE, 3, encoder="mobilenetv2", encoder_weights=None, channels=channels,
                                  aspp_filters=8, low_level_filters=8, decoder_filters=8)
    images = np.random.default_rng(channels).random((2, SIZE, SIZE, channels), dtype=np.float32)
    for model, classes in ((unet, 1), (deeplab, 3)):
        assert tuple(model.input.shape) == (None, SIZE, SIZE, channels)
        output = keras.ops.convert_to_numpy(model(images))
        assert output.shape == (2, SIZE, SIZE, classes) and np.isfinite(output).all()
        assert np.abs(output[0] - output[1]).max() > 0  # the bands reach the output
    assert get_encoder(unet).get_layer("Conv1").get_weights()[0].shape[2] == channels


def test_bands_model_round_trips_through_keras_file(tmp_path):
    model = build_deeplabv3plus(SIZE, 2, encoder="resnet50", encoder_weights=None, channels=4,
                                aspp_filters=8, low_level_filters=8, decoder_filters=8)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = np.random.default_rng(4).random((1, SIZE, SIZE, 4), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_channels_that_disagree_with_the_input_are_refused():
    with pytest.raises(ConfigError, match="channels 3: the mobilenetv2 encoder's input has 4 bands"):
        build_encoder("mobilenetv2", keras.Input((SIZE, SIZE, 4)), weights=None, channels=3)
    with pytest.raises(ConfigError, match="channels 0"):
        encoders.check_channels("mobilenetv2", keras.Input((SIZE, SIZE, 4)), 0)


@pytest.mark.slow
def test_adapted_bands_encoder_runs_under_jax(tmp_path):
    """The weight adaptation is NumPy and Keras only: a 4-band U-Net on RGB weights builds and predicts under JAX."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    _, path = rgb_weights_file("mobilenetv2", tmp_path)
    script = (
        "import sys, json, numpy as np\n"
        "from tfseg.models.encoder_unet import build_encoder_unet\n"
        f"m = build_encoder_unet({SIZE}, encoder='mobilenetv2', encoder_weights={path!r}, channels=4,\n"
        "                       decoder_filters=(8,) * 5)\n"
        f"y = m.predict(np.random.rand(1, {SIZE}, {SIZE}, 4).astype('float32'), verbose=0)\n"
        "print(json.dumps({'shape': list(y.shape), 'tf': 'tensorflow' in sys.modules,\n"
        "                  'bands': int(m.get_layer('encoder').get_layer('Conv1').kernel.shape[2])}))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"shape": [1, SIZE, SIZE, 1], "tf": False, "bands": 4}


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_standardized_bands_reach_the_backbone_as_imagenet_photographs_would(mode, channels):
    # z-scored bands (per_band normalisation) become ImageNet's per-band statistics in [0, 1] before the
    # mode's own preprocessing: z = 0 lands on the mode's map of ImageNet's mean, z = 1 one ImageNet std above
    mean, std = band_statistics("torch", channels)
    z = np.array([[[[0.0] * channels]], [[[1.0] * channels]]], "float32")
    photo_like = np.asarray(encoders.imagenet_statistics_layer(channels)(z))
    np.testing.assert_allclose(photo_like[0, 0, 0], mean, atol=1e-6)
    np.testing.assert_allclose(photo_like[1, 0, 0], np.add(mean, std), atol=1e-6)
    processed = np.asarray(preprocessing_layer(mode, channels=channels)(photo_like))
    if mode == "torch":  # torch mode standardises with the same statistics: the map is the identity
        np.testing.assert_allclose(processed, z, atol=1e-5)


def test_the_run_config_asks_encoders_for_standardized_inputs_under_per_band_normalisation():
    from tfseg.config import TrainConfig
    from tfseg.models import accepted_options, build_model

    # the bands the data decided, else RGB; every option the model takes is passed, at its default too
    assert TrainConfig().model_options()["channels"] == 3 and TrainConfig(channels=4).model_options()["channels"] == 4
    plain = TrainConfig().model_options(accepted_options("unet", **TrainConfig().model_options()))
    assert {"depth", "base_filters", "channels"} <= set(plain) and "standardized_inputs" not in plain
    per_band = {"kind": "per_band", "mean": [1000.0] * 4, "std": [200.0] * 4}
    for normalization, encoder, expected in [(per_band, "mobilenetv2", True), ("per_band", "mobilenetv2", True),
                                             ("uint8", "mobilenetv2", False), ("minmax:0,4095", "mobilenetv2", False),
                                             ("auto", "mobilenetv2", False), (per_band, None, False)]:
        config = TrainConfig(encoder=encoder, encoder_weights=None, normalization=normalization, channels=4)
        options = config.model_options(accepted_options(config.model, **config.model_options()))
        assert options.get("standardized_inputs", False) is expected, (normalization, encoder)
    config = TrainConfig(encoder="mobilenetv2", encoder_weights=None, normalization=per_band, channels=4,
                         image_size=32)
    options = config.model_options(accepted_options(config.model, **config.model_options()))
    model = build_model(config.model, 32, 1, **options)
    names = [layer.name for layer in model.layers]
    assert names.index("imagenet_statistics") < names.index(encoders.PREPROCESSING_NAME)
    plain = build_model(config.model, 32, 1, **{**options, "standardized_inputs": False})
    assert "imagenet_statistics" not in [layer.name for layer in plain.layers]
