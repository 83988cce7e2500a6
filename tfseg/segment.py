"""One path from an image to its mask: every prediction of tfseg goes through here.

``tfseg predict`` and :mod:`tfseg.inference` (every model kind), ``tfseg evaluate``, the
val/test scores and figures of ``tfseg train``, and every signature of the exported
SavedModel (:mod:`tfseg.export`, inside the serving graph) call these steps, written in
TensorFlow ops so that they run eagerly and inside a ``tf.function`` of unknown image size::

    pixels uint8 [b, H, W, C]       decoded as in training (tfseg.data.decode, tfseg.data.files.read_rgb)
      |  model_inputs    resize mode: to the model's input size (the window);
      |                  tiled mode: to round(scale x size), or as they are when scale is 1;
      |                  both by tfseg.data.pixels.resize_pixels (the pipeline's resize, rounded to
      |                  uint8 levels as the pipeline stores images), then pixels.model_inputs (x / 255)
      v
    predict_inputs       resize mode: f(x) on the batch; tiled mode: tfseg.tiling.sliding_window(f, x);
      |                  f = the model kind's adapter, inside tfseg.tiling.flip_tta when tta="flips"
      v
    restore              probabilities resized bilinearly back to (H, W)
      v
    mask                 tfseg.metrics.probabilities_to_mask: p >= threshold (one class), argmax otherwise
      v
    cleaned_mask         tfseg.postprocess (keep the largest component, drop small ones, fill holes):
                         NumPy on the client, never in the serving graph (``mask`` is the graph's last step)

Every knob is a field of :class:`Settings`. A model kind differs only in its *adapter*: a
function from float32 windows ``[n, h, w, C]`` (model inputs at the model's size) to
probabilities ``[n, h, w, K]``: :func:`keras_windows` for a Keras model, the interpreter of
a ``.tflite`` and the ``serving_windows`` signature of an exported SavedModel (:mod:`tfseg.inference`).

Example:
    >>> import keras, numpy as np
    >>> from tfseg.segment import Settings, keras_windows
    >>> inputs = keras.Input((16, 16, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    >>> settings = Settings.of_model(model, tiled=True, tta="flips")
    >>> images = [np.zeros((40, 23, 3), np.uint8), np.zeros((9, 70, 3), np.uint8)]
    >>> [p.shape for p in settings.images_probabilities(keras_windows(model), images)]
    [(40, 23, 1), (9, 70, 1)]
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfseg.data.pixels import model_inputs, resize_pixels, scaled_size
from tfseg.errors import ConfigError
from tfseg.metrics import probabilities_to_mask
from tfseg.postprocess import Cleanup, as_cleanup
from tfseg.tiling import DEFAULT_BLEND, DEFAULT_OVERLAP, check_blend, check_overlap, check_tta, flip_tta, sliding_window

Predict = Callable  # float32 windows [n, h, w, C] -> probabilities [n, h, w, K]


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in (0, 1), else :class:`ConfigError`."""
    value = float(threshold)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"threshold {threshold!r}: must be in (0, 1)")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the path from an image to its mask (module docstring).

    Args:
        window: ``(h, w)``, the model's input size: what the image is resized to (resize
            mode), or the sliding window (tiled mode).
        num_classes: ``K``, the channels of the probabilities (1: sigmoid, binary mask).
        tiled: predict whole images by sliding window at native resolution (a model trained
            on patches) instead of resizing them to the window.
        scale: tiled mode: resize images by this factor first (the run's ``--scale``).
        overlap, blend, window_batch: the sliding window's (:func:`tfseg.tiling.sliding_window`).
        tta: ``"none"`` or ``"flips"``: average the identity and the two flips of what the
            model sees (the resized image, or each window), each flipped back.
        threshold: binary mask = ``p >= threshold``.
        cleanup: the clean-up of the mask (:class:`tfseg.postprocess.Cleanup`, or a mapping of its
            fields), run by :meth:`cleaned_mask` on the client; the serving graph's ``mask`` is
            :meth:`mask`, without it (an export stores it for tfseg's SavedModel predictor).
        probabilities_png: the serving signatures also return the probabilities as 8-bit PNGs
            (``probabilities_png_bytes``, :mod:`tfseg.export`); the path itself does not change.
        channels: the bands of the images (the model's input channels; 3: RGB photographs).
        dtype: the value type of the images the model was trained on (``uint8`` photographs; data
            images: ``uint16``, ``float32``..., :mod:`tfseg.data.bands`): what ``serving_default`` takes.
        normalization: how pixels become model inputs (:class:`tfseg.data.bands.Normalization` as a
            dict; ``None``: ``x / 255``), the run's, applied by :func:`tfseg.data.pixels.model_inputs`.

    Raises:
        ConfigError: a value out of range (named with the field, e.g. ``threshold 1.5: ...``).
    """

    window: Tuple[int, int]
    num_classes: int = 1
    tiled: bool = False
    scale: float = 1.0
    overlap: float = DEFAULT_OVERLAP
    blend: str = DEFAULT_BLEND
    tta: str = "none"
    threshold: float = 0.5
    window_batch: Optional[int] = None
    cleanup: Cleanup = Cleanup()
    probabilities_png: bool = False
    channels: int = 3
    dtype: str = "uint8"
    normalization: Optional[dict] = None

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        window = tuple(self.window)
        if len(window) != 2 or any(isinstance(v, bool) or int(v) != v or int(v) < 1 for v in window):
            raise ConfigError(f"window {self.window!r}: expected (height, width) of positive integers")
        fix("window", (int(window[0]), int(window[1])))
        if isinstance(self.num_classes, bool) or int(self.num_classes) < 1:
            raise ConfigError(f"num_classes {self.num_classes!r}: must be a positive integer")
        fix("num_classes", int(self.num_classes))
        fix("tiled", bool(self.tiled))
        fix("probabilities_png", bool(self.probabilities_png))
        try:
            fix("overlap", check_overlap(self.overlap))
            fix("blend", check_blend(self.blend))
            fix("tta", check_tta(self.tta))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        fix("threshold", check_threshold(self.threshold))
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < float(scale) <= 4.0:
            raise ConfigError(f"scale {scale!r}: must be a number in (0, 4]")
        fix("scale", float(scale))
        if self.scale != 1.0 and not self.tiled:
            raise ConfigError(f"scale {scale!r}: only applies to sliding-window (tiled) prediction")
        if self.window_batch is not None and (isinstance(self.window_batch, bool) or int(self.window_batch) < 1):
            raise ConfigError(f"window_batch {self.window_batch!r}: must be a positive integer")
        fix("cleanup", as_cleanup(self.cleanup))
        from tfseg.data.bands import DTYPES, Normalization

        if isinstance(self.channels, bool) or int(self.channels) < 1:
            raise ConfigError(f"channels {self.channels!r}: must be a positive integer")
        fix("channels", int(self.channels))
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        norm = Normalization.parse(self.normalization)
        if norm is not None:
            norm.check_channels(self.channels, "the model's inputs")
        fix("normalization", None if norm is None or norm.kind == "uint8" else norm.to_dict())

    @classmethod
    def of_model(cls, model, **options) -> "Settings":
        """Settings for a Keras ``model``: its input size is the window, its input channels the bands,
        its output channels the classes."""
        from tfseg.saving import model_channels, model_input_size, model_num_classes

        return cls(window=model_input_size(model), num_classes=model_num_classes(model),
                   **{"channels": model_channels(model), **options})

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes`` (checked as the constructor checks them)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """The settings as a JSON object (what an exported SavedModel carries)."""
        return json.dumps({**dataclasses.asdict(self), "window": list(self.window)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        """Settings from :meth:`to_json`'s text; keys this version does not know are left out."""
        values = json.loads(text)
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    # -- the steps --------------------------------------------------------------------------------

    def model_inputs(self, pixels):
        """Pixels ``[b, H, W, C]`` (one size; uint8, or a data image's values) -> float32 model inputs
        (:func:`tfseg.data.pixels.model_inputs` with :attr:`normalization`).

        Resize mode: ``[b, h, w, C]`` at the window; tiled mode: ``[b, round(H*scale), round(W*scale), C]``.
        """
        pixels = tf.convert_to_tensor(pixels)
        if not self.tiled:
            if tuple(pixels.shape[1:3]) != self.window:  # a resize to the same size is the identity
                pixels = resize_pixels(pixels, self.window)
        elif self.scale != 1.0:
            shape = tf.shape(pixels)
            pixels = resize_pixels(pixels, scaled_size(shape[1], shape[2], self.scale))
        return model_inputs(pixels, self.normalization)

    def predict_inputs(self, predict: Predict, inputs):
        """Model inputs -> float32 probabilities ``[b, h, w, K]`` at the inputs' size.

        ``predict``: the adapter (float32 windows -> probabilities). Resize mode: one call on the
        batch; tiled mode: :func:`tfseg.tiling.sliding_window`. With ``tta="flips"`` the adapter
        is wrapped in :func:`tfseg.tiling.flip_tta` first (so tiled TTA flips each window).
        """
        run = _float32(predict)
        if self.tta == "flips":
            run = flip_tta(run)
        if not self.tiled:
            return run(inputs)
        return sliding_window(run, inputs, self.window, self.num_classes, overlap=self.overlap, blend=self.blend,
                              window_batch=self.window_batch)

    def restore(self, probabilities, size):
        """Probabilities ``[b, h, w, K]`` resized bilinearly to ``size`` ``(H, W)`` (the image's own)."""
        if self.tiled and self.scale == 1.0:
            return probabilities  # the windows ran at the image's own size
        static = tuple(probabilities.shape[1:3])
        if None not in static and isinstance(size, (tuple, list)) and static == tuple(int(v) for v in size):
            return probabilities
        return tf.image.resize(probabilities, size, method="bilinear")

    def mask(self, probabilities):
        """uint8 ``[..., H, W]`` masks: :func:`tfseg.metrics.probabilities_to_mask` at :attr:`threshold`."""
        return probabilities_to_mask(probabilities, self.threshold)

    def cleaned_mask(self, probabilities) -> np.ndarray:
        """:meth:`mask` after :attr:`cleanup` (NumPy; the mask itself when no clean-up is set)."""
        return self.cleanup.apply(np.asarray(self.mask(probabilities)))

    # -- whole images ------------------------------------------------------------------------------

    def probabilities(self, predict: Predict, pixels):
        """Pixels ``[b, H, W, C]`` (one size, ``b >= 1``) -> float32 probabilities ``[b, H, W, K]``."""
        pixels = tf.convert_to_tensor(pixels)
        return self.restore(self.predict_inputs(predict, self.model_inputs(pixels)), _size(pixels))

    def images_probabilities(self, predict: Predict, images: Sequence) -> List[np.ndarray]:
        """float32 ``[H, W, K]`` (numpy) for each uint8 ``[H, W, C]`` image of ``images``, at its own size.

        Resize mode: the images' model inputs are batched into one ``predict`` call (three with
        flip TTA); tiled mode: one image at a time (its windows are batched).
        """
        images = [tf.convert_to_tensor(image) for image in images]
        if not images:
            return []
        if self.tiled:
            return [self.probabilities(predict, image[tf.newaxis])[0].numpy() for image in images]
        inputs = tf.concat([self.model_inputs(image[tf.newaxis]) for image in images], axis=0)
        outputs = self.predict_inputs(predict, inputs)
        return [self.restore(outputs[i : i + 1], tuple(image.shape[:2]))[0].numpy() for i, image in enumerate(images)]


def keras_windows(model) -> Predict:
    """The adapter of a Keras model: float32 windows ``[n, h, w, C]`` -> float32 probabilities.

    Eagerly ``model.predict_on_batch`` (Keras' compiled predict function); inside a graph (the
    serving signatures) ``model(windows, training=False)``. float32 out even when the model
    computes in float16/bfloat16.
    """

    def predict(windows):
        if tf.executing_eagerly():
            return tf.cast(model.predict_on_batch(windows), tf.float32)
        return tf.cast(model(windows, training=False), tf.float32)

    return predict


def _float32(predict: Predict) -> Predict:
    return lambda windows: tf.cast(predict(windows), tf.float32)


def _size(pixels):
    """``(H, W)`` of a ``[b, H, W, C]`` tensor: Python ints when known, else an int32 tensor."""
    static = tuple(pixels.shape[1:3])
    return static if None not in static else tf.shape(pixels)[1:3]
