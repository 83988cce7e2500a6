"""Pretrained encoders: keras.applications backbones as U-Net / DeepLab feature extractors.

One table, :data:`ENCODERS`, says for each supported backbone which
``keras.applications`` constructor builds it, which layers give the features at
strides 2, 4, 8, 16 and 32, and which ImageNet preprocessing its weights expect.

A model built here takes images float32 ``[B, H, W, C]`` in ``[0, 1]`` like every
tfseg model (``C = 3`` for photographs; any number of bands, see below): the preprocessing runs inside the model (layer
``encoder_preprocessing``, a Keras layer: :func:`preprocessing_layer`), followed by the
backbone kept as one nested functional sub-model named ``encoder`` whose outputs are the
skip features. Keeping the backbone nested makes it easy to find, freeze
(:func:`set_encoder_trainable`) and round-trip through ``.keras``; since every layer is
Keras' own, that file loads with plain Keras.

Weights: ``encoder_weights="imagenet"`` downloads the backbone's ``*_notop.h5`` file
once with ``keras.utils.get_file`` into ``$KERAS_HOME/models/`` (default
``~/.keras/models/``; set ``KERAS_HOME`` before starting Python). Offline, place the
file there beforehand (:func:`imagenet_weights_path` says which file); a missing
file raises :class:`~tfseg.errors.ConfigError` naming it.

Bands other than RGB (``channels != 3``: grey, RGB + near-infrared, 13 Sentinel-2 bands):
the pretrained weights stay usable as in segmentation_models.pytorch (``patch_first_conv``).
The backbone is built for ``channels`` bands and every weight is copied from the RGB
backbone except the first convolution's kernel ``K`` (``[kh, kw, 3, filters]``, input
axis in RGB order), which becomes (:func:`adapt_first_kernel`)::

    channels == 1:   K'[..., 0, :] = K[..., R, :] + K[..., G, :] + K[..., B, :]
    channels >= 2:   K'[..., i, :] = K[..., i mod 3, :] * 3 / channels

so band ``i`` plays RGB channel ``i mod 3`` and the first layer's response keeps its scale.
The preprocessing follows the same rule (:func:`band_statistics`): band ``i`` is mapped as
RGB channel ``i mod 3`` is (``"torch"``: that channel's ImageNet mean and std; ``"caffe"``:
``255 x`` minus that channel's mean, with no RGB -> BGR swap: bands are not colours), and
one band takes the average of the three. The modes thus stay what the weights expect for
bands in ``[0, 1]``, and an image whose bands repeat R, G, B (``channels`` a multiple of 3)
gives exactly the RGB model's features; for one grey band that holds in ``"tf"`` mode
(MobileNetV2), and approximately in the others (their three channels' statistics differ). ``channels != 3``
with random weights (``weights=None``) is a plain backbone with that many inputs.

This module uses ``keras`` (and NumPy for the weights) only, never TensorFlow, so it runs
under the JAX backend.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
from keras import ops

from tfseg.config import image_hw
from tfseg.errors import ConfigError

STRIDES = (2, 4, 8, 16, 32)
ENCODER_NAME = "encoder"
PREPROCESSING_NAME = "encoder_preprocessing"

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class EncoderSpec:
    """What tfseg needs to know about one backbone.

    Attributes:
        constructor: name of the ``keras.applications`` function (e.g. ``"ResNet50"``).
        features: layer names of the backbone's last feature map at strides 2, 4, 8, 16, 32.
        preprocessing: ImageNet preprocessing mode the weights expect (see
            :func:`preprocessing_layer`): ``"tf"``, ``"torch"`` or ``"caffe"``.
        weights_file: ``(height, width) -> file name`` that keras.applications caches
            for ``weights="imagenet", include_top=False``.
        weights_url: folder the file is downloaded from.
        options: extra constructor arguments.
    """

    constructor: str
    features: Tuple[str, str, str, str, str]
    preprocessing: str
    weights_file: Callable[[Tuple[int, int]], str]
    weights_url: str
    options: Tuple[Tuple[str, object], ...] = ()

    def feature_layer(self, stride: int) -> str:
        """Backbone layer name of the feature map at ``stride``."""
        return self.features[STRIDES.index(stride)]


def _mobilenet_v2_file(size: Tuple[int, int]) -> str:
    # keras.applications falls back to the 224 px weights for any other size.
    rows = size[0] if size[0] == size[1] and size[0] in _MOBILENET_V2_SIZES else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _resnet_spec(name: str, constructor: str, stride16: str) -> EncoderSpec:
    return EncoderSpec(
        constructor=constructor,
        features=("conv1_relu", "conv2_block3_out", "conv3_block4_out", stride16, "conv5_block3_out"),
        preprocessing="caffe",
        weights_file=lambda size: f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=_GCS + "resnet/",
    )


def _efficientnet_v2_spec(variant: str, features) -> EncoderSpec:
    return EncoderSpec(
        constructor=f"EfficientNetV2{variant.upper()}",
        features=features,
        # Built with include_preprocessing=False: the same Rescaling(1/255) +
        # ImageNet mean/std normalisation then runs in preprocessing_layer("torch").
        preprocessing="torch",
        weights_file=lambda size: f"efficientnetv2-{variant}_notop.h5",
        weights_url=_GCS + "efficientnet_v2/",
        options=(("include_preprocessing", False),),
    )


#: name -> :class:`EncoderSpec`. Feature layers are the last layer at each stride
#: (stage outputs); for MobileNetV2 the usual expand activations (as in the Keras
#: pix2pix / segmentation tutorials) and the 320-channel projection at stride 32.
ENCODERS: Dict[str, EncoderSpec] = {
    "mobilenetv2": EncoderSpec(
        constructor="MobileNetV2",
        features=(
            "block_1_expand_relu",
            "block_3_expand_relu",
            "block_6_expand_relu",
            "block_13_expand_relu",
            "block_16_project_BN",
        ),
        preprocessing="tf",
        weights_file=_mobilenet_v2_file,
        weights_url=_GCS + "mobilenet_v2/",
    ),
    "resnet50": _resnet_spec("resnet50", "ResNet50", "conv4_block6_out"),
    "resnet101": _resnet_spec("resnet101", "ResNet101", "conv4_block23_out"),
    "efficientnetv2b0": _efficientnet_v2_spec(
        "b0", ("block1a_project_activation", "block2b_add", "block3b_add", "block5e_add", "top_activation")
    ),
    "efficientnetv2b1": _efficientnet_v2_spec(
        "b1", ("block1b_add", "block2c_add", "block3c_add", "block5f_add", "top_activation")
    ),
}


def available_encoders() -> List[str]:
    """Sorted names accepted by ``encoder=``."""
    return sorted(ENCODERS)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The :class:`EncoderSpec` of ``name`` (case-insensitive); ConfigError if unknown."""
    try:
        return ENCODERS[str(name).lower()]
    except KeyError:
        raise ConfigError(
            f"encoder {name!r}: unknown encoder; choose one of {', '.join(available_encoders())}"
        ) from None


def check_image_size(name: str, image_size, multiple: int = 32) -> Tuple[int, int]:
    """``(height, width)`` if the encoder ``name`` can use ``image_size``, else ConfigError.

    Every backbone halves the size at each stride and the decoder must land on the
    same grid, so height and width must be multiples of ``multiple`` (the deepest
    stride used) and at least 32 (keras.applications refuses smaller inputs).
    """
    for size in image_hw(image_size):
        if size < 32 or size % multiple:
            nearest = sorted({max(32, size - size % multiple), max(32, size - size % multiple + multiple)})
            raise ConfigError(
                f"image_size {image_size!r}: the {name} encoder needs a multiple of {multiple} "
                f"of at least 32 (nearest: {' or '.join(map(str, nearest))})"
            )
    return image_hw(image_size)


# --- preprocessing ---------------------------------------------------------------

_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING_MODES = ("tf", "torch", "caffe")


def band_statistics(mode: str, channels: int = 3) -> Tuple[List[float], List[float]]:
    """``(mean, std)`` per band of ``mode``'s map ``(x - mean) / std`` for ``channels`` bands in ``[0, 1]``.

    ``"torch"``: ImageNet's RGB mean and std; ``"caffe"``: ``mean = channel mean / 255`` and
    ``std = 1 / 255`` (``255 x - mean``); ``"tf"``: ``0.5``, ``0.5`` (``2 x - 1``). Three bands are
    R, G, B; band ``i`` of ``channels != 3`` takes RGB channel ``i mod 3``'s values, one band
    their average (the first convolution is adapted the same way, :func:`adapt_first_kernel`).

    Example:

    >>> mean, std = band_statistics("torch", 4)
    >>> mean
    [0.485, 0.456, 0.406, 0.485]
    """
    if mode not in PREPROCESSING_MODES:
        raise ConfigError(f"preprocessing mode {mode!r}: choose one of {', '.join(PREPROCESSING_MODES)}")
    if mode == "tf":
        mean_rgb, std_rgb = (0.5,) * 3, (0.5,) * 3
    elif mode == "torch":
        mean_rgb, std_rgb = _IMAGENET_MEAN_RGB, _IMAGENET_STD_RGB
    else:
        mean_rgb, std_rgb = tuple(m / 255.0 for m in reversed(_CAFFE_MEAN_BGR)), (1.0 / 255.0,) * 3
    return _per_band(mean_rgb, channels), _per_band(std_rgb, channels)


def _per_band(values_rgb: Sequence[float], channels: int) -> List[float]:
    """RGB values for ``channels`` bands: cyclic (band ``i`` takes RGB channel ``i mod 3``); one band, their mean."""
    if channels == 1:
        return [float(np.mean(values_rgb))]
    return [float(values_rgb[i % 3]) for i in range(channels)]


def preprocessing_layer(mode: str, name: str = PREPROCESSING_NAME, channels: int = 3) -> keras.layers.Layer:
    """A Keras layer mapping images in ``[0, 1]`` to what an ImageNet backbone was trained on.

    The same maps as :class:`ImageNetPreprocessing`, built from Keras' own layers so that a model
    using them loads with plain Keras (computed in float32 under any precision policy):

    - ``"tf"``: ``keras.layers.Rescaling(2, offset=-1)``;
    - ``"torch"``: ``keras.layers.Normalization`` with the ImageNet mean and variance (``std**2``);
    - ``"caffe"``: a frozen 1x1 ``keras.layers.Conv2D`` whose kernel swaps RGB to BGR and
      multiplies by 255, and whose bias subtracts the BGR mean.

    ``channels != 3``: per band as :func:`band_statistics` says (no RGB -> BGR swap).

    Raises:
        ConfigError: unknown ``mode``.

    Example:

    >>> layer = preprocessing_layer("caffe")
    >>> np.round(np.asarray(layer(np.array([[[[1.0, 0.0, 0.0]]]], "float32")), "float64"), 2).tolist()
    [[[[-103.94, -116.78, 131.32]]]]
    """
    mean, std = band_statistics(mode, channels)
    if mode == "tf":
        return keras.layers.Rescaling(2.0, offset=-1.0, name=name, dtype="float32")
    if mode == "torch":
        return keras.layers.Normalization(mean=mean, variance=[s * s for s in std], name=name, dtype="float32")
    layer = keras.layers.Conv2D(channels, 1, name=name, dtype="float32", trainable=False)
    layer.build((None, None, None, channels))
    kernel = np.zeros((1, 1, channels, channels), "float32")
    bias = -np.asarray(_per_band(_CAFFE_MEAN_BGR[::-1], channels), "float32")  # RGB order, as the bands
    for band in range(channels):
        # RGB -> BGR: output channel c (BGR) reads input channel 2 - c (RGB); other bands stay in place
        kernel[0, 0, 2 - band if channels == 3 else band, band] = 255.0
    layer.set_weights([kernel, bias[::-1].copy() if channels == 3 else bias])
    return layer


def imagenet_statistics_layer(channels: int, name: str = "imagenet_statistics") -> keras.layers.Layer:
    """Standardised bands (mean 0, std 1) -> bands with ImageNet's mean and std in ``[0, 1]``.

    ``x * std + mean`` per band, with ``(mean, std) = band_statistics("torch", channels)``, as a
    ``keras.layers.Normalization`` (``mean = -mean / std``, ``variance = 1 / std**2``) computed in
    float32: what an ImageNet backbone's preprocessing (:func:`preprocessing_layer`) expects of a
    photograph in ``[0, 1]``, so that z-scored data images reach the pretrained first convolution
    on the scale its weights were trained for, in every preprocessing mode.

    Example:

    >>> layer = imagenet_statistics_layer(3)
    >>> [round(float(v), 3) for v in np.asarray(layer(np.zeros((1, 1, 1, 3), "float32")))[0, 0, 0]]
    [0.485, 0.456, 0.406]
    """
    mean, std = band_statistics("torch", channels)
    return keras.layers.Normalization(mean=[-m / s for m, s in zip(mean, std)], variance=[1.0 / (s * s) for s in std],
                                      name=name, dtype="float32")


@keras.saving.register_keras_serializable(package="tfseg")
class ImageNetPreprocessing(keras.layers.Layer):
    """Map images in ``[0, 1]`` to what an ImageNet backbone was trained on (models built before the
    preprocessing was made of Keras layers, :func:`preprocessing_layer`, hold this layer; it still loads).

    The modes are those of ``keras.applications.imagenet_utils.preprocess_input``,
    rewritten for input ``x`` in ``[0, 1]`` (RGB, channels last):

    - ``"tf"`` (MobileNetV2): ``2 x - 1``, in ``[-1, 1]``.
    - ``"torch"`` (EfficientNetV2 B*): ``(x - mean) / std`` per channel with
      ``mean = (0.485, 0.456, 0.406)``, ``std = (0.229, 0.224, 0.225)``.
    - ``"caffe"`` (ResNet): RGB -> BGR, then ``255 x - (103.939, 116.779, 123.68)``.

    Args:
        mode: one of ``"tf"``, ``"torch"``, ``"caffe"``.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Example:

    >>> import numpy as np
    >>> layer = ImageNetPreprocessing("tf")
    >>> np.asarray(layer(np.array([[[[0.0, 0.5, 1.0]]]], "float32"))).tolist()
    [[[[-1.0, 0.0, 1.0]]]]
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ConfigError(f"preprocessing mode {mode!r}: choose one of {', '.join(PREPROCESSING_MODES)}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return x * 2.0 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x - mean) / std
        mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) * 255.0 - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


# --- weights --------------------------------------------------------------------


def weights_cache_dir() -> str:
    """The folder keras.applications caches ImageNet weights in: ``keras.utils.get_file``'s
    ``$KERAS_HOME/models`` (default ``~/.keras/models``; ``/tmp/.keras/models`` when that home
    folder is missing or not writable; :func:`tfseg.keras_compat.keras_cache_dir`)."""
    from tfseg.keras_compat import keras_cache_dir

    return keras_cache_dir("models")


def imagenet_weights_path(name: str, image_size) -> Tuple[str, str]:
    """``(local path, download URL)`` of encoder ``name``'s ImageNet weights at ``image_size``.

    Example:

    >>> path, url = imagenet_weights_path("resnet50", 256)
    >>> os.path.basename(path)
    'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
    """
    spec = get_encoder_spec(name)
    file_name = spec.weights_file(image_hw(image_size))
    return os.path.join(weights_cache_dir(), file_name), spec.weights_url + file_name


def _missing_weights_error(name: str, image_size, reason: Exception) -> ConfigError:
    path, url = imagenet_weights_path(name, image_size)
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    why = text.rsplit(" -- ", 1)[-1][:120]  # get_file: "URL fetch failure on URL: code -- reason"
    return ConfigError(
        f"encoder_weights imagenet: {path} is missing and could not be downloaded ({why}); "
        f"download {url} and place it there (the folder follows KERAS_HOME), "
        f"or pass --encoder-weights none"
    )


@contextlib.contextmanager
def _local_weights_file(weights: Optional[str]):
    """``weights`` as keras.applications reads it: ``None``, ``"imagenet"`` or a local file.

    A local path is checked without TensorFlow (this module runs under JAX); a URL
    (``gs://...``) is copied through :mod:`tfseg.fileio` (TensorFlow's file system
    layer, imported only then) to a local temporary file, since Keras reads ``.h5``
    weights with h5py.

    Raises:
        ConfigError: no such file.
    """
    if weights is None or weights == "imagenet":
        yield weights
        return
    missing = ConfigError(f"encoder_weights {weights!r}: no such file (use imagenet, none or a .h5/.weights.h5 path)")
    path = str(weights)
    if "://" not in path:
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise missing
        yield path
        return
    from tfseg import fileio

    if not fileio.isfile(path):
        raise missing
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, fileio.basename(path))  # the same name: Keras picks the format by it
        fileio.copy(path, local)
        yield local


def _backbone(name: str, image_size, weights: Optional[str], channels: int) -> keras.Model:
    """The keras.applications model without its classifier, for ``channels`` bands, with ``weights`` loaded
    (a local path or a URL; RGB weights, adapted to ``channels != 3`` by :func:`adapt_first_kernel`)."""
    if channels == 3 or weights is None:
        return _keras_backbone(name, image_size, weights, channels)
    rgb = _keras_backbone(name, image_size, weights, 3)
    bands = _keras_backbone(name, image_size, None, channels)
    copy_adapted_weights(rgb, bands, bgr=get_encoder_spec(name).preprocessing == "caffe")
    return bands


def _keras_backbone(name: str, image_size, weights: Optional[str], channels: int) -> keras.Model:
    spec = get_encoder_spec(name)
    constructor = getattr(keras.applications, spec.constructor)
    try:
        with _local_weights_file(weights) as local_weights, warnings.catch_warnings():
            # keras.applications: "This model usually expects 1 or 3 input channels" (bands are intended here)
            warnings.filterwarnings("ignore", message="This model usually expects")
            return constructor(
                include_top=False,
                weights=local_weights,
                input_shape=(*image_hw(image_size), channels),
                **dict(spec.options),
            )
    except ConfigError:
        raise
    except Exception as error:
        if weights not in (None, "imagenet"):
            reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise ConfigError(f"encoder_weights {weights}: cannot be loaded into {name} ({reason})") from error
        # keras.utils.get_file deletes a partial download, so a missing file
        # after a failure means the download itself failed.
        if weights == "imagenet" and not os.path.isfile(imagenet_weights_path(name, image_size)[0]):
            raise _missing_weights_error(name, image_size, error) from error
        raise


def adapt_first_kernel(kernel, channels: int):
    """The first convolution's RGB kernel ``[kh, kw, 3, filters]`` for ``channels`` input bands.

    segmentation_models.pytorch's rule (``patch_first_conv``): one band takes the sum of the
    three RGB kernels; ``channels >= 2`` bands take them cyclically (band ``i``: RGB channel
    ``i mod 3``), scaled by ``3 / channels`` so that the summed response keeps its scale.

    Example:

    >>> kernel = np.arange(3, dtype="float32").reshape(1, 1, 3, 1)   # R: 0, G: 1, B: 2
    >>> adapt_first_kernel(kernel, 1).ravel().tolist(), adapt_first_kernel(kernel, 4).ravel().tolist()
    ([3.0], [0.0, 0.75, 1.5, 0.0])
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"expected an RGB kernel [kh, kw, 3, filters], got shape {kernel.shape}")
    if int(channels) == 1:
        return kernel.sum(axis=2, keepdims=True)
    return kernel[:, :, np.arange(int(channels)) % 3] * (3.0 / int(channels))


def copy_adapted_weights(rgb: keras.Model, bands: keras.Model, bgr: bool) -> None:
    """Copy ``rgb``'s weights into ``bands`` (the same backbone for other input bands), adapting the one
    kernel whose input axis differs (:func:`adapt_first_kernel`). ``bgr``: ``rgb``'s kernel reads BGR
    (caffe-mode weights), reversed to RGB first."""
    channels = bands.inputs[0].shape[-1]
    adapted = []
    for source, target in zip(_all_layers(rgb), _all_layers(bands)):
        values = source.get_weights()
        for index, (value, variable) in enumerate(zip(values, target.weights)):
            if tuple(value.shape) != tuple(variable.shape):
                values[index] = adapt_first_kernel(value[:, :, ::-1] if bgr else value, channels)
                adapted.append(target.name)
        if values:
            target.set_weights(values)
    if len(adapted) != 1:  # the backbone's layout is not the one this rule was written for
        raise ConfigError(f"encoder {rgb.name}: expected one first convolution to adapt to {channels} bands, "
                          f"found {adapted or 'none'}")


# --- building ---------------------------------------------------------------------


def build_encoder(
    name: str,
    input_tensor,
    weights: Optional[str] = "imagenet",
    strides: Sequence[int] = STRIDES,
    channels: Optional[int] = None,
    standardized_inputs: bool = False,
) -> Dict[int, "keras.KerasTensor"]:
    """Apply preprocessing + the pretrained backbone ``name`` to ``input_tensor``.

    Adds two layers to the functional graph: ``encoder_preprocessing``
    (:func:`preprocessing_layer`) and ``encoder``, a nested functional model
    whose outputs are the backbone's features at ``strides``. Layers after the
    deepest requested stride are not built (DeepLabV3+ stops at stride 16).

    With pretrained ``weights`` the backbone's BatchNormalization layers are frozen
    (inference mode, ImageNet statistics): segmentation batches are small and
    would give noisy batch statistics. With ``weights=None`` everything trains.

    Args:
        name: a key of :data:`ENCODERS` (``mobilenetv2``, ``resnet50``, ...).
        input_tensor: Keras tensor ``[B, H, W, C]`` in ``[0, 1]``, ``H`` and ``W``
            static multiples of the deepest stride.
        weights: ``"imagenet"``, ``None`` (random init) or a path to a weights file.
        strides: which feature maps to return (subset of 2, 4, 8, 16, 32).
        channels: the input's bands ``C``; ``None``: ``input_tensor``'s last axis. Pretrained RGB
            weights are adapted to ``C != 3`` (module docstring, :func:`adapt_first_kernel`).
        standardized_inputs: the input is standardised per band (mean 0, std 1: data images under
            ``--normalization per_band``), not in ``[0, 1]``; a layer
            (:func:`imagenet_statistics_layer`) first gives each band ImageNet's mean and std in
            ``[0, 1]`` (band ``i`` those of RGB channel ``i mod 3``), then the backbone's own
            preprocessing runs as for photographs.

    Returns:
        ``{stride: Keras tensor [B, H/stride, W/stride, C]}``.

    Example:

    >>> import keras
    >>> images = keras.Input((64, 64, 3), name="images")
    >>> features = build_encoder("mobilenetv2", images, weights=None)
    >>> tuple(features[32].shape)
    (None, 2, 2, 320)
    """
    spec = get_encoder_spec(name)
    strides = tuple(sorted(int(s) for s in strides))
    if not strides or any(s not in STRIDES for s in strides):
        raise ConfigError(f"encoder strides {strides!r}: choose from {STRIDES}")
    height, width = input_tensor.shape[1], input_tensor.shape[2]
    if height is None or width is None:
        raise ConfigError(f"encoder {name}: needs a static input height and width, got {tuple(input_tensor.shape)}")
    image_size = check_image_size(name, (height, width), multiple=max(strides))
    channels = check_channels(name, input_tensor, channels)
    if weights is not None and str(weights).lower() in ("none", "imagenet"):
        weights = None if str(weights).lower() == "none" else "imagenet"

    backbone = _backbone(name, image_size, weights, channels)
    encoder = keras.Model(
        backbone.inputs,
        [backbone.get_layer(spec.feature_layer(s)).output for s in strides],
        name=ENCODER_NAME,
    )
    if weights is not None:
        _freeze_batchnorm(encoder)
    x = imagenet_statistics_layer(channels)(input_tensor) if standardized_inputs else input_tensor
    x = preprocessing_layer(spec.preprocessing, channels=channels)(x)
    features = encoder(x)
    return dict(zip(strides, features))


def check_channels(name: str, input_tensor, channels: Optional[int] = None) -> int:
    """The input's bands: ``channels``, or ``input_tensor``'s last axis; ConfigError when they differ or are not >= 1."""
    given = input_tensor.shape[-1]
    channels = given if channels is None else channels
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1 or channels != given:
        raise ConfigError(f"channels {channels!r}: the {name} encoder's input has {given} bands; "
                          "channels must be that positive integer")
    return channels


def _batchnorm_layers(model) -> List[keras.layers.Layer]:
    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _all_layers(model) -> List[keras.layers.Layer]:
    """Every layer of ``model``, nested models' layers included (depth first)."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(_all_layers(layer))
    return layers


def _freeze_batchnorm(encoder) -> None:
    for layer in _batchnorm_layers(encoder):
        layer.trainable = False


def get_encoder(model: keras.Model) -> keras.Model:
    """The nested ``encoder`` sub-model of a model built with a pretrained encoder.

    Raises:
        ConfigError: ``model`` has no encoder (e.g. a plain ``unet``).
    """
    try:
        encoder = model.get_layer(ENCODER_NAME)
    except ValueError:
        encoder = None
    if not isinstance(encoder, keras.Model):
        raise ConfigError(
            f"model {model.name!r} has no pretrained encoder to freeze or unfreeze; "
            "build it with --encoder (one of " + ", ".join(available_encoders()) + ")"
        )
    return encoder


def has_encoder(model: keras.Model) -> bool:
    """True when ``model`` contains a nested pretrained ``encoder``."""
    return any(layer.name == ENCODER_NAME and isinstance(layer, keras.Model) for layer in model.layers)


def encoder_layer_names(model: keras.Model) -> List[str]:
    """Names of the backbone layers inside ``model``'s ``encoder`` (input layer excluded)."""
    return [layer.name for layer in _all_layers(get_encoder(model)) if not isinstance(layer, keras.layers.InputLayer)]


def set_encoder_trainable(model: keras.Model, trainable: bool, freeze_batchnorm: bool = True) -> keras.Model:
    """Freeze or unfreeze the pretrained encoder of ``model`` (in place; returns it).

    Two-phase fine-tuning: freeze for N epochs so the randomly initialised decoder
    does not send large gradients into the ImageNet features, then unfreeze and
    continue with the learning rate x0.1. Call ``model.compile(...)`` again after
    this, with a new optimizer: a Keras optimizer refuses variables it was not
    built with ("This optimizer can only be called for the variables it was
    originally built with").

    In Keras 3 a ``BatchNormalization`` layer with ``trainable=False`` runs in
    inference mode (moving statistics, no updates), so ``freeze_batchnorm=True``
    keeps the encoder's BN layers frozen even when the rest of the encoder is
    unfrozen: small batches would otherwise overwrite the ImageNet statistics.
    Use ``freeze_batchnorm=False`` only when training an encoder from scratch.

    Args:
        model: built by ``build_encoder_unet`` / ``build_deeplabv3plus``.
        trainable: False to freeze the whole encoder, True to unfreeze it.
        freeze_batchnorm: keep BN layers frozen when ``trainable`` is True.

    Raises:
        ConfigError: ``model`` has no encoder.

    Example:

    >>> from tfseg.models.encoder_unet import build_encoder_unet
    >>> model = build_encoder_unet(64, encoder="mobilenetv2", encoder_weights=None)
    >>> n_all = len(model.trainable_weights)
    >>> n_frozen = len(set_encoder_trainable(model, False).trainable_weights)
    >>> n_frozen < n_all
    True
    """
    encoder = get_encoder(model)
    trainable = bool(trainable)
    encoder.trainable = trainable
    # Set every layer: under the TensorFlow backend, assigning a layer the value it
    # already has is skipped (tf AutoTrackable), so the recursion alone is not enough.
    for layer in _all_layers(encoder):
        layer.trainable = trainable
    if trainable and freeze_batchnorm:
        _freeze_batchnorm(encoder)
    return model
