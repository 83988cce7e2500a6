"""Predict masks for image files with a ``model.keras``, a SavedModel or a ``.tflite``.

Every kind of model goes through the one path of :mod:`tfseg.segment`, the path the
SavedModel's serving graph (:mod:`tfseg.export`), ``tfseg evaluate`` and training's scores
run: decode as the training pipeline does (3 channels, uint8;
:func:`tfseg.data.files.read_rgb`), resize to the model's input size as the pipeline stores
images, scale to [0, 1], predict, resize the probabilities back to the image's own size
(bilinear), threshold (binary) or argmax (multi-class). Images of different sizes share
one model call.

A model trained on patches (``--patch-size``; its run folder says so, and so does its
SavedModel) predicts whole images at native resolution instead: a sliding window of the
model's input size (:mod:`tfseg.tiling`), chosen automatically and with ``tiled=True``
(``--tiled``) for any model. ``tta="flips"`` (``--tta flips``) averages the identity and the
left-right and up-down flips (inside each window when tiled). ``cleanup`` (``--keep-largest``,
``--min-size N``, ``--fill-holes``) cleans each mask after the threshold/argmax
(:mod:`tfseg.postprocess`), for every kind; a SavedModel exported with a clean-up applies it here
by default (its serving graph does not).

A model kind differs only in its *adapter*, the function that turns a batch of model
inputs (windows) into probabilities: ``predict_on_batch`` of a Keras model, a TFLite
interpreter, the ``serving_windows`` signature of a SavedModel. A SavedModel exported
before it had that signature (:class:`ServedSavedModelPredictor`) serves through
``serving_default`` as it was exported, and cannot tile or flip.

Example:
    >>> from tfseg.inference import load_predictor, predict_images
    >>> predictor = load_predictor("runs/unet")                          # doctest: +SKIP
    >>> for path, probabilities, mask in predict_images(predictor, ["a.png"]):
    ...     print(path, probabilities.shape, mask.shape)                 # doctest: +SKIP
    a.png (560, 768, 1) (560, 768)
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfseg.errors import ConfigError, DataError, TfsegError
from tfseg.export import (SERVING_DEFAULT, SERVING_WINDOWS, saved_model_settings, tflite_interpreter,
                          tflite_probabilities)
from tfseg.metrics import probabilities_to_mask
from tfseg.postprocess import Cleanup, as_cleanup
from tfseg.saving import first_line as _first_line
from tfseg.saving import latest_version, load_keras_model, resolve_model_path
from tfseg.segment import Settings, check_threshold, keras_windows

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class Predictor:
    """A loaded model that maps uint8 images of any size to probabilities of that size.

    Attributes:
        kind: ``"keras"``, ``"saved_model"`` or ``"tflite"``.
        path: what was loaded.
        settings: the :class:`~tfseg.segment.Settings` of the path (window, classes, tiling, TTA,
            threshold, clean-up); ``image_size``, ``num_classes``, ``tiled``, ``scale``, ``tta``,
            ``threshold`` and ``cleanup`` read them.
    """

    kind = ""

    def __init__(self, path: str, settings: Settings):
        self.path = path
        self.settings = settings

    image_size = property(lambda self: self.settings.window)
    num_classes = property(lambda self: self.settings.num_classes)
    tiled = property(lambda self: self.settings.tiled)
    scale = property(lambda self: self.settings.scale)
    tta = property(lambda self: self.settings.tta)
    threshold = property(lambda self: self.settings.threshold)
    cleanup = property(lambda self: self.settings.cleanup)

    def configure(self, tiled: bool = False, scale: float = 1.0, tta: Optional[str] = None,
                  cleanup=None) -> "Predictor":
        """Set sliding-window prediction (``tiled``, ``scale``), test-time augmentation and the mask's
        clean-up; returns self.

        ``cleanup``: a :class:`~tfseg.postprocess.Cleanup`, or a mapping of the fields to change
        (``{"keep_largest": True}``; ``None`` values and ``None`` itself leave the current one).

        Raises:
            ConfigError: a bad ``scale``, ``tta`` or clean-up value, or a ``scale`` without ``tiled``.
        """
        self.settings = self.settings.replace(tiled=tiled, scale=scale, tta=tta,
                                              cleanup=as_cleanup(cleanup, self.settings.cleanup))
        return self

    def predict_windows(self, windows):
        """The adapter: float32 model inputs ``[n, h, w, 3]`` at the model's size -> probabilities ``[n, h, w, K]``."""
        raise NotImplementedError

    def probabilities(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """float32 ``[h, w, C]`` for each uint8 ``[h, w, 3]`` image, at that image's size."""
        return self.settings.images_probabilities(self.predict_windows, images)

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r})"


class KerasPredictor(Predictor):
    """A ``.keras`` model (or a RUN_DIR's ``model.keras``)."""

    kind = "keras"

    def __init__(self, path: str, model=None):
        self.model = load_keras_model(path, compile=False) if model is None else model
        super().__init__(path, Settings.of_model(self.model))
        self.predict_windows = keras_windows(self.model)


class TFLitePredictor(Predictor):
    """A ``.tflite`` file written by :func:`tfseg.export.export_tflite` (float32 input in [0, 1])."""

    kind = "tflite"

    def __init__(self, path: str):
        try:
            self.interpreter = tflite_interpreter(path)
            details = self.interpreter.get_input_details()[0]
        except (ValueError, RuntimeError) as err:
            raise TfsegError(f"model {path}: not a readable TFLite file ({_first_line(err)})") from None
        shape = [int(n) for n in details["shape"]]
        if len(shape) != 4 or details["dtype"] != np.float32:
            raise TfsegError(
                f"model {path}: expected a float32 [batch, H, W, C] input, found {shape} {details['dtype']}"
            )
        num_classes = int(self.interpreter.get_output_details()[0]["shape"][-1])
        super().__init__(path, Settings(window=(shape[1], shape[2]), num_classes=num_classes, channels=shape[-1]))

    def predict_windows(self, windows):
        return tflite_probabilities(self.interpreter, np.asarray(windows, np.float32))


class SavedModelPredictor(Predictor):
    """A SavedModel version folder exported by tfseg: its ``serving_windows`` signature is the adapter,
    its stored settings (:func:`tfseg.export.saved_model_settings`) the defaults (tiled, scale, TTA and
    threshold as exported)."""

    kind = "saved_model"

    def __init__(self, path: str, loaded=None, settings: Optional[Settings] = None):
        loaded = _load_saved_model(path) if loaded is None else loaded
        self.windows = loaded.signatures[SERVING_WINDOWS]
        super().__init__(path, saved_model_settings(loaded, path) if settings is None else settings)

    def predict_windows(self, windows):
        return self.windows(windows=tf.convert_to_tensor(windows, tf.float32))["probabilities"]


class ServedSavedModelPredictor(Predictor):
    """A SavedModel without the ``serving_windows`` signature (exported by an earlier tfseg), or not
    tfseg's: every image goes through its ``serving_default(images uint8)`` signature as exported."""

    kind = "saved_model"
    image_size, num_classes, tiled, scale, tta, threshold = None, None, False, 1.0, "none", 0.5
    cleanup = Cleanup()  # client-side, so an export of an earlier tfseg can be cleaned too

    def __init__(self, path: str, loaded=None):
        loaded = _load_saved_model(path) if loaded is None else loaded
        self.signature = loaded.signatures[SERVING_DEFAULT]
        inputs = self.signature.structured_input_signature[1]
        if "images" not in inputs or inputs["images"].dtype != tf.uint8:
            raise TfsegError(f"model {path}: '{SERVING_DEFAULT}' does not take uint8 'images'; "
                             "export the model with `tfseg export`")
        self.path, self.settings = path, None

    def configure(self, tiled: bool = False, scale: float = 1.0, tta: Optional[str] = None,
                  cleanup=None) -> "Predictor":
        if tiled or float(scale) != 1.0 or tta not in (None, "none"):
            raise ConfigError(f"model {self.path}: this SavedModel has no '{SERVING_WINDOWS}' signature (an export "
                              "of an earlier tfseg), so it serves only as it was exported, without tiling, scale or "
                              "TTA: export the model again with `tfseg export`")
        self.cleanup = as_cleanup(cleanup, self.cleanup)
        return self

    def probabilities(self, images):
        # The serving graph resizes in and out itself; it needs equal sizes per call.
        images = [np.ascontiguousarray(image) for image in images]
        results: List[Optional[np.ndarray]] = [None] * len(images)
        for shape in dict.fromkeys(image.shape for image in images):
            members = [i for i, image in enumerate(images) if image.shape == shape]
            batch = tf.constant(np.stack([images[i] for i in members]))
            outputs = self.signature(images=batch)["probabilities"].numpy()
            for row, i in enumerate(members):
                results[i] = outputs[row]
        return results


def _load_saved_model(path: str):
    try:
        return tf.saved_model.load(path)
    except (KeyError, OSError, ValueError) as err:
        raise TfsegError(f"model {path}: cannot load a SavedModel ({_first_line(err)})") from None


def saved_model_predictor(path: str) -> Predictor:
    """:class:`SavedModelPredictor` for an export with ``serving_windows`` and its settings, else
    :class:`ServedSavedModelPredictor` (``serving_default`` as exported)."""
    loaded = _load_saved_model(path)
    settings = saved_model_settings(loaded, path)
    if settings is not None and SERVING_WINDOWS in loaded.signatures:
        return SavedModelPredictor(path, loaded, settings)
    if SERVING_DEFAULT not in loaded.signatures:
        raise TfsegError(f"model {path}: no '{SERVING_DEFAULT}' signature; export the model with `tfseg export`")
    return ServedSavedModelPredictor(path, loaded)


def load_predictor(path: str, tiled: Optional[bool] = None, tta: Optional[str] = None,
                   scale: Optional[float] = None, cleanup=None) -> Predictor:
    """A :class:`Predictor` for whatever ``path`` holds (see :func:`resolve_model_path`).

    Args:
        path: a ``.keras`` file, a run folder, a SavedModel (version or base folder) or a ``.tflite``.
        tiled: sliding-window prediction at native resolution; ``None``: when the model's
            run folder trained on patches (``patch_size`` in its ``config.json``), or as a SavedModel
            was exported.
        tta: ``"flips"`` for flip test-time augmentation; ``"none"``: off; ``None``: off (a SavedModel:
            as exported).
        scale: with ``tiled``, resize images by this factor first; ``None``: the run's (or the
            export's) ``scale`` when tiled as it trained, else 1.
        cleanup: the masks' clean-up (:mod:`tfseg.postprocess`): a :class:`~tfseg.postprocess.Cleanup`,
            or a mapping of the fields to change (``{"keep_largest": True, "min_size": 20}``; a field
            left out or ``None`` stays as the SavedModel was exported, else off).

    Raises:
        ConfigError: a bad ``tta``, ``scale`` or clean-up value; ``tiled``, ``scale`` or ``tta`` for a SavedModel
            exported without the ``serving_windows`` signature.

    Example:
        >>> predictor = load_predictor("exports/lesions")                # doctest: +SKIP
        >>> predictor.kind, predictor.path
        ('saved_model', 'exports/lesions/3')
    """
    kind, resolved = resolve_model_path(path)
    predictor = {"keras": KerasPredictor, "saved_model": saved_model_predictor, "tflite": TFLitePredictor}[kind](
        resolved)
    run_config = _run_config_of(resolved) if kind == "keras" else None
    if run_config is not None:  # the run's images: value type and normalisation (config.json)
        predictor.settings = predictor.settings.replace(**run_config.pixel_options())
    if run_config is not None and run_config.patch_size is not None:  # as it trained: tiled, at its scale
        predictor.configure(tiled=True, scale=run_config.scale)
    native = (predictor.tiled, predictor.scale)
    tiled = native[0] if tiled is None else bool(tiled)
    if scale is None:
        scale = native[1] if tiled == native[0] else 1.0
    return predictor.configure(tiled=tiled, scale=scale, tta=predictor.tta if tta is None else tta, cleanup=cleanup)


def _run_config_of(keras_path: str):
    """The :class:`~tfseg.config.TrainConfig` of the run folder holding ``keras_path``, or None."""
    from tfseg.saving import locate_model

    try:
        return locate_model(keras_path)[1]
    except TfsegError:
        return None


def list_images(inputs: Iterable[str]) -> List[str]:
    """Image files named by ``inputs`` (files as given, folders -> their images sorted by name).

    A folder's listing leaves out the files tfseg wrote there (its output marker,
    :func:`tfseg.outputs.claimed`): ``predict imgs --out imgs`` run twice reads photos only.

    Raises :class:`DataError` listing every input that does not exist or is an empty folder.
    """
    from tfseg import fileio

    from tfseg.outputs import claimed

    paths, problems = [], []
    for item in inputs:
        item = fileio.fspath(item)
        if fileio.isdir(item):
            # by name only: one request per file on an object store would be slow; never the masks and
            # overlays tfseg wrote there itself (its marker lists them), which are not photos
            ours = claimed(item)
            found = [fileio.join(item, name) for name in fileio.listdir(item)
                     if name.lower().endswith(IMAGE_EXTENSIONS) and name not in ours]
            if not found:
                mine = f"; its {len(ours)} file(s) of tfseg's own are not inputs" if ours else ""
                problems.append((item, f"folder has no images ({', '.join(IMAGE_EXTENSIONS)}){mine}"))
            paths.extend(found)
        elif fileio.exists(item):
            paths.append(item)
        else:
            problems.append((item, "no such file or folder"))
    if problems:
        raise DataError(f"{len(problems)} input(s) cannot be used", problems)
    return paths


def read_image(path: str, settings=None) -> np.ndarray:
    """uint8 ``[h, w, 3]``, decoded as the training pipeline does (:func:`tfseg.data.files.read_rgb`).

    PNG/JPEG/BMP/GIF/WebP go through the ``serving_bytes`` graph's decoder (palette and
    1-bit BMPs included); what only Pillow reads the same as training (TIFF, CMYK JPEG...)
    through Pillow. For a model of data images (``settings``' channels and dtype other than RGB
    uint8): the file's bands as training read them (:func:`tfseg.data.bands.read_bands`).
    """
    from tfseg.data.files import read_rgb

    if settings is not None and (settings.channels != 3 or settings.dtype != "uint8"):
        from tfseg import fileio
        from tfseg.data.bands import Form, read_bands

        return read_bands(fileio.read_bytes(path), Form(settings.channels, settings.dtype, photo=False))
    return read_rgb(path)


def image_problem(path: str, settings=None) -> Optional[str]:
    """Why ``path`` cannot be read as an image, or None when it can.

    The up-front check of the file sources (:func:`tfseg.data.files.check_file`): the pixel
    data is known to decode without being decoded in full, so predicting decodes each image once.
    """
    from tfseg import fileio
    from tfseg.data.files import check_file

    try:
        if fileio.size(path) == 0:
            return "cannot decode: empty file"
    except Exception:  # noqa: BLE001 - unreadable: check_file says why
        pass
    info = check_file(path, is_mask=False)
    if info.error:
        return f"cannot decode: {info.error}"
    if not info.width or not info.height:
        return f"empty image ({info.height}x{info.width})"
    if settings is not None:
        from tfseg.data.bands import PHOTO, Form

        expected = PHOTO if (settings.channels, settings.dtype) == (3, "uint8") else \
            Form(settings.channels, settings.dtype, photo=False)
        if info.form != expected:
            return (f"image of {info.form.describe()}, but the model was trained on {expected.describe()} "
                    "(tfseg.data.bands)")
    return None


def check_images(paths: Sequence[str], settings=None) -> None:
    """Raise :class:`DataError` listing every file in ``paths`` that is not a readable image (or, given the
    model's ``settings``, not of the bands and value type it was trained on)."""
    problems = [(path, why) for path in paths for why in [image_problem(path, settings)] if why]
    if problems:
        raise DataError(f"{len(problems)} of {len(paths)} image(s) cannot be read", problems)


def predict_images(predictor: Predictor, paths: Sequence[str], batch_size: int = 8,
                   threshold: Optional[float] = None) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(path, probabilities [h, w, C] float32, mask [h, w] uint8)`` per image, in order.

    :func:`predict_files` without the decoded images (same arguments and errors).
    """
    for path, _, probabilities, mask in predict_files(predictor, paths, batch_size, threshold):
        yield path, probabilities, mask


def predict_files(predictor: Predictor, paths: Sequence[str], batch_size: int = 8,
                  threshold: Optional[float] = None) -> Iterator[Tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(path, image [h, w, 3] uint8, probabilities [h, w, C] float32, mask [h, w] uint8)`` per image.

    Each file is decoded once (:func:`read_image`); the image comes back for drawing on it.

    Every file is checked first, so a bad file raises :class:`DataError` (listing
    all of them) before anything is predicted; a model that gives NaN/Inf probabilities (a
    diverged run, whatever its kind) raises :class:`TfsegError`. The mask is ``p >= threshold``
    (0/1) for one class, else the argmax class id, then cleaned by the predictor's
    :attr:`~Predictor.cleanup` (:mod:`tfseg.postprocess`; the probabilities are not changed).

    Args:
        predictor: from :func:`load_predictor`.
        paths: image files (see :func:`list_images` for folders).
        batch_size: images per model call.
        threshold: binary threshold in (0, 1); ``None``: the predictor's (0.5, or what a SavedModel was
            exported with).

    Raises:
        DataError: a file that cannot be read as an image (all of them listed, before any prediction).
        TfsegError: a bad ``batch_size``, or NaN/Inf probabilities.
    """
    threshold = predictor.threshold if threshold is None else check_threshold(threshold)
    if int(batch_size) < 1:
        raise TfsegError(f"batch_size {batch_size!r}: must be a positive integer")
    paths = list(paths)
    check_images(paths, predictor.settings)
    for start in range(0, len(paths), int(batch_size)):
        chunk = paths[start : start + int(batch_size)]
        images = [_decoded(path, predictor.settings) for path in chunk]
        for path, image, probabilities in zip(chunk, images, predictor.probabilities(images)):
            if not np.isfinite(probabilities).all():  # any kind of model: a SavedModel/TFLite has no weights to check
                raise TfsegError(f"model {predictor.path}: gives NaN/Inf probabilities for {path}; its weights are "
                                 "not finite (the training diverged): retrain with a lower learning rate or float32")
            yield path, image, probabilities, predictor.cleanup.apply(probabilities_to_mask(probabilities, threshold))


def _decoded(path: str, settings=None) -> np.ndarray:
    # The up-front check proves the pixel data decodes; a file changed since then still fails with its name.
    try:
        return read_image(path, settings)
    except Exception as err:  # noqa: BLE001 - TF, Pillow and OS errors all mean "unreadable"
        raise DataError(f"{path}: cannot decode: {_first_line(err)}") from None
