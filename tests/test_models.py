"""U-Net and SegNet through tfseg.models.build_model: shapes, dtypes, saving, a tiny fit, errors."""

import sys
import types

import numpy as np
import pytest

import keras

from tfseg.errors import ConfigError
from tfseg.layers import MaxUnpooling2D
import tfseg.models
from tfseg.models import available_models, build_model

TINY = dict(base_filters=4)  # depth 4 (the default) with 4..64 channels: fast on CPU
MODELS = [
    ("unet", {}),
    ("unet", {"upsampling": "bilinear", "dropout": 0.2}),
    ("segnet", {}),
    ("segnet", {"variant": "simple"}),
]
MODEL_IDS = ["unet", "unet-bilinear", "segnet-indices", "segnet-simple"]


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def random_images(batch, height, width, seed=0):
    return np.random.RandomState(seed).uniform(size=(batch, height, width, 3)).astype("float32")


def test_available_models_lists_unet_and_segnet():
    assert {"unet", "segnet"} <= set(available_models())


@pytest.mark.parametrize("name,options", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("image_size", [32, 64, (64, 96)], ids=["32", "64", "64x96"])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_output_shape_and_range(name, options, image_size, num_classes):
    model = build_model(name, image_size=image_size, num_classes=num_classes, **TINY, **options)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    assert model.input.name == "images" and model.input.shape == (None, height, width, 3)
    assert model.output_shape == (None, height, width, num_classes)
    assert model.layers[-1].name == "probabilities"
    images = random_images(2, height, width)
    probabilities = np.asarray(model(images, training=False))
    assert probabilities.dtype == np.float32
    assert_values_are_per_image_and_depend_on_the_pixels(model, images, probabilities)
    if num_classes > 1:
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def assert_values_are_per_image_and_depend_on_the_pixels(model, images, probabilities):
    """Value checks beyond the shape: each image's answer is its own, and it depends on the image."""
    # inference must not mix images of a batch (e.g. batch statistics used in inference)
    alone = np.asarray(model(images[1:2], training=False))
    np.testing.assert_allclose(alone[0], probabilities[1], atol=1e-5)
    # a model ignoring its input (a dead skip, zeroed activations) gives one value everywhere
    assert probabilities.std(axis=(1, 2)).min() > 1e-6
    assert np.abs(probabilities[0] - probabilities[1]).max() > 1e-6


@pytest.mark.parametrize("name,options", MODELS, ids=MODEL_IDS)
def test_output_is_float32_under_mixed_float16(name, options, mixed_float16):
    model = build_model(name, image_size=32, num_classes=2, **TINY, **options)
    assert model.layers[1].compute_dtype == "float16"  # the policy does apply inside
    assert model.output.dtype == "float32"
    assert np.asarray(model(random_images(1, 32, 32), training=False)).dtype == np.float32


@pytest.mark.parametrize("name,options", MODELS, ids=MODEL_IDS)
def test_keras_file_round_trip_without_custom_objects(name, options, tmp_path):
    model = build_model(name, image_size=32, num_classes=3, **TINY, **options)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = random_images(3, 32, 32, seed=1)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_segnet_variants_differ_by_pooling_indices():
    indices = build_model("segnet", image_size=32, **TINY)
    simple = build_model("segnet", image_size=32, variant="simple", **TINY)
    assert sum(isinstance(layer, MaxUnpooling2D) for layer in indices.layers) == 4
    assert not any(isinstance(layer, MaxUnpooling2D) for layer in simple.layers)
    assert any(isinstance(layer, keras.layers.UpSampling2D) for layer in simple.layers)


def test_segnet_depth5_has_vgg16_encoder_and_mirrored_decoder():
    model = build_model("segnet", image_size=32, depth=5, base_filters=2)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sum(layer.name.startswith("enc") for layer in convs) == 13
    assert sum(layer.name.startswith("dec") for layer in convs) == 13
    widths = [layer.filters for layer in convs if layer.name.startswith("enc")]
    assert widths == [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16]


def test_unet_has_one_encoder_and_concatenated_skips():
    model = build_model("unet", image_size=32, depth=3, **TINY)
    concats = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert len(concats) == 3
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 3


def test_same_seed_same_weights():
    def weights():
        keras.utils.set_random_seed(7)
        return build_model("unet", image_size=32, **TINY).get_weights()

    first, second = weights(), weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def learnable_samples(count=8, size=32, seed=0):
    """Noisy images with one bright disk each; the mask is the disk (a lesion in miniature)."""
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[:size, :size]
    centres = rng.uniform(size / 4, 3 * size / 4, size=(count, 2, 1, 1))
    radii = rng.uniform(size / 8, size / 4, size=(count, 1, 1))
    masks = ((rows - centres[:, 0]) ** 2 + (cols - centres[:, 1]) ** 2 < radii**2)[..., None]
    images = 0.2 + 0.1 * rng.uniform(size=(count, size, size, 3)) + 0.5 * masks
    return images.astype("float32"), masks.astype("float32")


@pytest.mark.slow
@pytest.mark.parametrize("name,options", [("unet", {}), ("segnet", {})], ids=["unet", "segnet-indices"])
def test_tiny_fit_lowers_the_loss(name, options):
    keras.utils.set_random_seed(0)
    images, masks = learnable_samples()
    model = build_model(name, image_size=32, depth=2, **TINY, **options)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    history = model.fit(images, masks, batch_size=4, epochs=8, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize(
    "options,message",
    [
        ({"image_size": 40}, r"image_size 40: unet needs a multiple of 16 \(2\*\*depth\); try 32 or 48"),
        ({"image_size": (64, 76), "depth": 3}, "image_size 76: unet needs a multiple of 8"),
        ({"image_size": "big"}, "image_size 'big'"),
        ({"depth": 0}, "depth 0: must be a positive integer"),
        ({"num_classes": 0}, "num_classes 0"),
        ({"dropout": 1.0}, r"dropout 1\.0: must be in \[0, 1\)"),
        ({"upsampling": "nearest"}, "upsampling 'nearest': choose one of transpose, bilinear"),
        ({"filters": 8}, "unet: unknown option 'filters'"),
        ({"encoder_weights": "imagenet"}, "only used with encoder"),
    ],
)
def test_bad_unet_settings_raise_one_line_config_error(options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        build_model("unet", **options)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("segnet", {"image_size": 100}, "image_size 100: segnet needs a multiple of 16"),
        ("segnet", {"variant": "paper"}, "variant 'paper': choose one of indices, simple"),
        ("segnet", {"filters": 8}, "segnet: unknown option 'filters'"),
        ("vgg", {}, "model 'vgg': unknown model"),
    ],
)
def test_bad_model_settings_raise_config_error(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, **options)


@pytest.mark.parametrize("name", ["unet", "segnet"])
def test_builds_from_train_config_model_options(name):
    from tfseg.config import TrainConfig

    config = TrainConfig(model=name, base_filters=4, depth=3)
    options = config.model_options(tfseg.models.accepted_options(name, **config.model_options()))
    model = build_model(name, image_size=32, num_classes=2, **options)
    assert model.output_shape == (None, 32, 32, 2)


@pytest.mark.parametrize("name, option, value", [
    ("segnet", "upsampling", "bilinear"),
    ("deeplabv3plus", "base_filters", 4),
    ("deeplabv3plus", "depth", 3),
    ("deeplabv3plus", "upsampling", "bilinear"),
])
def test_a_model_refuses_an_option_it_does_not_take(name, option, value):
    with pytest.raises(ConfigError, match=f"{name}: unknown option '{option}'"):
        build_model(name, image_size=64, **{option: value})


def test_train_config_passes_a_foreign_option_only_when_it_was_set():
    from tfseg.config import TrainConfig

    accepted = tfseg.models.accepted_options("segnet")
    assert "upsampling" not in TrainConfig(model="segnet").model_options(accepted)
    assert TrainConfig(model="segnet", upsampling="bilinear").model_options(accepted)["upsampling"] == "bilinear"
    with_encoder = tfseg.models.accepted_options("unet", encoder="mobilenetv2")
    assert "depth" not in with_encoder and "base_filters" in with_encoder


def test_encoder_option_delegates_to_encoder_unet(monkeypatch):
    calls = []
    fake = types.ModuleType("tfseg.models.encoder_unet")
    fake.build_encoder_unet = lambda **kwargs: calls.append(kwargs) or "model"
    monkeypatch.setitem(sys.modules, "tfseg.models.encoder_unet", fake)
    assert build_model("unet", image_size=64, encoder="resnet50", encoder_weights=None, dropout=0.1) == "model"
    assert calls == [dict(image_size=64, num_classes=1, encoder="resnet50", encoder_weights=None, dropout=0.1)]


def test_summary_lists_the_functional_graph():
    lines = []
    build_model("segnet", image_size=32, **TINY).summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "enc1_pool" in text and "dec1_unpool" in text and "probabilities" in text


def builder_defaults():
    """``(builder name, option, default)`` for every keyword option of every model builder."""
    import inspect

    from tfseg.models.encoder_unet import build_encoder_unet
    from tfseg.models.registry import _BUILDERS
    from tfseg.models.unet import build_plain_unet

    builders = {**{name: builder for name, builder in _BUILDERS.items()},
                "unet (plain)": build_plain_unet, "unet (encoder)": build_encoder_unet}
    for name, builder in sorted(builders.items()):
        for option, parameter in inspect.signature(builder).parameters.items():
            if parameter.default is not inspect.Parameter.empty and option not in ("image_size", "num_classes"):
                yield name, option, parameter.default


def shared_defaults():
    from tfseg.config import TrainConfig

    # build_encoder_unet's `encoder` selects it (TrainConfig's None means the plain U-Net); `channels`:
    # TrainConfig's None means "the bands the data holds" (a run reads them), the builders' 3 is RGB.
    return [(builder, option, value) for builder, option, value in builder_defaults()
            if option in TrainConfig.__dataclass_fields__ and (builder, option) != ("unet (encoder)", "encoder")
            and option != "channels"]


@pytest.mark.parametrize("builder, option, value", shared_defaults())
def test_builder_defaults_are_train_config_defaults(builder, option, value):
    """One place for every default: a builder option TrainConfig also has defaults to TrainConfig's value."""
    from tfseg.config import TrainConfig

    assert value == TrainConfig.__dataclass_fields__[option].default


def test_every_train_config_model_setting_reaches_the_builders():
    from tfseg.config import TrainConfig

    options = set(TrainConfig().model_options())
    names = {option for _, option, _ in builder_defaults()}
    assert options <= names


def test_batch_norm_option_picks_the_layer_and_refuses_others():
    from tfseg.layers import BatchNorm

    def norms(model):
        return {type(layer) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}

    assert norms(build_model("unet", 32, **TINY)) == {keras.layers.BatchNormalization}
    assert norms(build_model("unet", 32, batch_norm="bfloat16", **TINY)) == {BatchNorm}
    assert norms(build_model("segnet", 32, variant="simple", batch_norm="bfloat16", **TINY)) == {BatchNorm}
    assert norms(build_model("unet", 32, batch_norm=False, **TINY)) == set()
    with pytest.raises(ConfigError, match="batch_norm 'fast': choose one of"):
        build_model("unet", 32, batch_norm="fast", **TINY)


def test_an_old_run_config_builds_the_batch_norm_its_backup_was_saved_with():
    """Keras files name weights by layer class: an old run's backup needs the layer it was trained with."""
    import json
    import os

    from tfseg.config import TrainConfig

    with open(os.path.join(os.path.dirname(__file__), "data", "run_0_1", "config.json")) as f:
        old = TrainConfig.from_dict(json.load(f))
    assert old.batch_norm_layer == "bfloat16" and old.model_options()["batch_norm"] == "bfloat16"
    assert TrainConfig().model_options()["batch_norm"] is True
