"""Export a trained model: SavedModel for TF Serving, TFLite, ONNX.

The SavedModel carries its own pre- and post-processing, so a client sends raw
pixels (or encoded files) of any size and gets masks of that size back:

``serving_default``
    input ``images`` uint8 ``[batch, height, width, 3]`` (any height/width) ->
    ``probabilities`` float32 ``[batch, height, width, classes]`` and
    ``mask`` uint8 ``[batch, height, width]``.
``serving_bytes``
    input ``image_bytes`` string ``[batch]`` of encoded PNG/JPEG/BMP/GIF/WebP,
    decoded as in training (:mod:`tfseg.data.decode`: 1/4/8-bit palette BMPs
    included; what TF Serving's REST API receives as ``{"b64": ...}``) -> the same
    ``probabilities`` and ``mask`` at each image's original size, plus
    ``height`` and ``width`` int32 ``[batch]``. A dense batch tensor must be
    rectangular, so a batch of images of different sizes comes back padded to
    the largest height and width: image ``i`` is
    ``probabilities[i, :height[i], :width[i]]`` and the padding is 0 (mask 0).
    A batch of one (the usual REST request) is exactly the image's size.

An empty batch sent to either signature returns empty outputs (batch 0).

Inside the graph: ``x = round(resize_image(float32(images), model_size)) / 255`` (the
training pipeline's own resize, :func:`tfseg.data.pipeline.resize_image`),
``p = model(x)`` (cast to float32, so a ``mixed_float16`` model serves float32),
``p = resize_bilinear(p, (height, width))``; the mask is ``p[..., 0] >= threshold``
for one class, ``argmax(p, -1)`` otherwise. The SavedModel needs TensorFlow only:
no tfseg import and no custom objects to load or serve.

Every writer is atomic: a SavedModel version is built in a hidden staging folder
inside ``export_dir`` and put in place by :func:`tfseg.fileio.replacing_folder`
(``saved_model.pb`` last); a TFLite/ONNX file is written to a temporary file and
renamed. An interrupted export leaves the previous version as it was.

Example:
    >>> import keras
    >>> from tfseg.export import export_saved_model
    >>> inputs = keras.Input((32, 32, 3), name="images")
    >>> outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    >>> path = export_saved_model(keras.Model(inputs, outputs), "/tmp/tfseg_doc_export", overwrite=True)
    >>> import tensorflow as tf, numpy as np
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> serve(images=tf.zeros([1, 123, 321, 3], tf.uint8))["mask"].shape
    TensorShape([1, 123, 321])
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import tempfile
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfseg.data.decode import decode_rgb
from tfseg.errors import ConfigError, TfsegError
from tfseg.metrics import probabilities_to_mask
from tfseg.saving import model_input_size, model_num_classes

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
QUANTIZE_CHOICES = ("none", "float16", "dynamic")

# ---------------------------------------------------------------------------
# Pre/post-processing shared by the SavedModel graph and tfseg.inference.
# ---------------------------------------------------------------------------


def preprocess(images, size):
    """uint8 ``[b, h, w, 3]`` -> float32 ``[b, H, W, 3]`` in [0, 1] at ``size``.

    Resized by :func:`tfseg.data.pipeline.resize_image`, the training pipeline's own
    resize, and rounded to uint8 levels as the pipeline stores images, so a large image
    reaches the model exactly as it did during training.
    """
    from tfseg.data.pipeline import resize_image

    resized = tf.round(tf.clip_by_value(resize_image(images, size), 0.0, 255.0))
    return resized / 255.0


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in (0, 1), else :class:`ConfigError`."""
    value = float(threshold)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"threshold {threshold!r}: must be in (0, 1)")
    return value


# ---------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------


def serving_functions(model, threshold: float = 0.5, tiled: bool = False, scale: float = 1.0) -> Dict[str, tuple]:
    """``{signature name: (python function, input signature)}`` of the two endpoints.

    ``tiled``: both endpoints predict whole images by sliding window (:func:`tiled_serving_functions`).
    """
    threshold = check_threshold(threshold)
    if tiled:
        return tiled_serving_functions(model, threshold, scale)
    size = model_input_size(model)
    num_classes = model_num_classes(model)

    def probabilities_at_model_size(inputs):
        # float32 out even when the model computes in float16/bfloat16.
        return tf.cast(model(inputs, training=False), tf.float32)

    def serve_images(images):
        height_width = tf.shape(images)[1:3]

        def predict():
            probabilities = probabilities_at_model_size(preprocess(images, size))
            return tf.image.resize(probabilities, height_width, method="bilinear")

        # An empty batch returns an empty result (the model itself cannot run on zero images).
        probabilities = tf.cond(tf.shape(images)[0] > 0, predict,
                                lambda: tf.zeros(tf.concat([[0], height_width, [num_classes]], 0), tf.float32))
        return {"probabilities": probabilities, "mask": probabilities_to_mask(probabilities, threshold)}

    def decode(data):
        # The training pipeline's decoder: also 1/4/8-bit palette BMPs (tfseg.data.decode).
        image = decode_rgb(data)
        return preprocess(image[tf.newaxis], size)[0], tf.shape(image)[:2]

    def serve_bytes(image_bytes):
        return tf.cond(tf.size(image_bytes) > 0, lambda: serve_encoded(image_bytes), lambda: {
            "probabilities": tf.zeros([0, 0, 0, num_classes], tf.float32),
            "mask": tf.zeros([0, 0, 0], tf.uint8),
            "height": tf.zeros([0], tf.int32),
            "width": tf.zeros([0], tf.int32),
        })

    def serve_encoded(image_bytes):
        inputs, sizes = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=(tf.TensorSpec([*size, 3], tf.float32), tf.TensorSpec([2], tf.int32)),
        )
        probabilities = probabilities_at_model_size(inputs)
        out_height, out_width = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])

        def restore(args):
            image_probabilities, height_width = args
            resized = tf.image.resize(image_probabilities[tf.newaxis], height_width, method="bilinear")[0]
            padding = [[0, out_height - height_width[0]], [0, out_width - height_width[1]], [0, 0]]
            return tf.pad(resized, padding)

        probabilities = tf.map_fn(
            restore, (probabilities, sizes), fn_output_signature=tf.TensorSpec([None, None, num_classes], tf.float32)
        )
        return {
            "probabilities": probabilities,
            "mask": probabilities_to_mask(probabilities, threshold),
            "height": sizes[:, 0],
            "width": sizes[:, 1],
        }

    return {
        SERVING_DEFAULT: (serve_images, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]),
        SERVING_BYTES: (serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
    }


def tiled_serving_functions(model, threshold: float = 0.5, scale: float = 1.0) -> Dict[str, tuple]:
    """The two endpoints of a patch-trained model: whole images of any size by sliding window, in the graph.

    ``serving_default`` and ``serving_bytes`` keep their inputs and outputs; inside, instead of one
    resize to the model's size: ``x = resize(float32(image) / 255, scale x size)`` (bilinear,
    antialiased; skipped when ``scale`` is 1), ``p = sliding_window(model, x)`` with windows of the
    model's input size, the default overlap and Gaussian blending (:mod:`tfseg.tiling`, the same
    code ``tfseg predict`` runs, here inside a ``while_loop``), then ``p`` resized back to the image's size.
    """
    from tfseg.tiling import sliding_window

    window = model_input_size(model)
    num_classes = model_num_classes(model)

    def predict(windows):
        return tf.cast(model(windows, training=False), tf.float32)

    def tiled_probabilities(images):
        """uint8 ``[b, h, w, 3]`` (b > 0) -> float32 ``[b, h, w, K]``."""
        height_width = tf.shape(images)[1:3]
        inputs = tf.cast(images, tf.float32) / 255.0
        if float(scale) != 1.0:
            scaled = tf.maximum(tf.cast(tf.round(tf.cast(height_width, tf.float32) * float(scale)), tf.int32), 1)
            inputs = tf.image.resize(inputs, scaled, method="bilinear", antialias=True)
        probabilities = sliding_window(predict, inputs, window, num_classes)
        if float(scale) != 1.0:
            probabilities = tf.image.resize(probabilities, height_width, method="bilinear")
        return probabilities

    def serve_images(images):
        height_width = tf.shape(images)[1:3]
        probabilities = tf.cond(tf.shape(images)[0] > 0, lambda: tiled_probabilities(images),
                                lambda: tf.zeros(tf.concat([[0], height_width, [num_classes]], 0), tf.float32))
        return {"probabilities": probabilities, "mask": probabilities_to_mask(probabilities, threshold)}

    def serve_encoded(image_bytes):
        # Decoded twice (sizes first), so each image is tiled at its own size and padded to the largest.
        sizes = tf.map_fn(lambda data: tf.shape(decode_rgb(data))[:2], image_bytes,
                          fn_output_signature=tf.TensorSpec([2], tf.int32))
        out_height, out_width = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])

        def one(data):
            image = decode_rgb(data)
            probabilities = tiled_probabilities(image[tf.newaxis])[0]
            shape = tf.shape(probabilities)
            return tf.pad(probabilities, [[0, out_height - shape[0]], [0, out_width - shape[1]], [0, 0]])

        probabilities = tf.map_fn(one, image_bytes,
                                  fn_output_signature=tf.TensorSpec([None, None, num_classes], tf.float32))
        return {
            "probabilities": probabilities,
            "mask": probabilities_to_mask(probabilities, threshold),
            "height": sizes[:, 0],
            "width": sizes[:, 1],
        }

    def serve_bytes(image_bytes):
        return tf.cond(tf.size(image_bytes) > 0, lambda: serve_encoded(image_bytes), lambda: {
            "probabilities": tf.zeros([0, 0, 0, num_classes], tf.float32),
            "mask": tf.zeros([0, 0, 0], tf.uint8),
            "height": tf.zeros([0], tf.int32),
            "width": tf.zeros([0], tf.int32),
        })

    return {
        SERVING_DEFAULT: (serve_images, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]),
        SERVING_BYTES: (serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
    }


def next_version(export_dir: str) -> int:
    """1 + the largest integer-named folder in ``export_dir`` (1 when there is none)."""
    from tfseg import fileio

    if not fileio.isdir(export_dir):
        return 1
    versions = [int(name) for name in fileio.listdir(export_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def check_version(version) -> int:
    """``version`` as a positive int, else :class:`ConfigError` (TF Serving loads numbered folders)."""
    text = str(version).strip()
    if isinstance(version, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"version {version!r}: must be a positive integer (TF Serving loads numbered folders)")
    return int(text)


def export_saved_model(model, export_dir, version: Optional[int] = None, overwrite: bool = False,
                       threshold: float = 0.5, tiled: bool = False, scale: float = 1.0, *,
                       into_run_folder: bool = False) -> str:
    """Write ``model`` as a TF Serving SavedModel in ``export_dir/<version>``.

    Args:
        model: a functional Keras model, input ``[batch, H, W, 3]`` float32 in [0, 1],
            output probabilities ``[batch, H, W, C]`` (sigmoid for C=1, softmax otherwise).
        export_dir: the model base path TF Serving watches (created if missing).
        version: positive integer folder name; ``None`` -> :func:`next_version`.
        overwrite: replace an existing ``export_dir/<version>`` that tfseg exported (one with
            tfseg's serving signatures and nothing else inside); without it that is an error.
        threshold: binary masks are ``probability >= threshold`` (ignored for C > 1).
        tiled: serve whole images by sliding window in the graph (a model trained on patches;
            :func:`tiled_serving_functions`); the signatures' names, inputs and outputs stay the same.
        scale: with ``tiled``, images are resized by this factor before the windows run
            (the run's ``--scale``).
        into_run_folder: ``tfseg train``'s own export into its run folder; every other
            caller is refused a run folder (see :mod:`tfseg.outputs`).

    Returns:
        The path of the version folder.

    Raises:
        TfsegError: the version exists and ``overwrite`` is False, or it is not a tfseg
            export; ``export_dir`` is a file, not writable or (part of) a run folder; or
            the model does not have a fixed ``[H, W, 3]`` input.

    Example:
        >>> path = export_saved_model(model, "exports/lesions")          # doctest: +SKIP
        >>> path
        'exports/lesions/1'
    """
    from tfseg import fileio, outputs

    export_dir = fileio.fspath(export_dir)
    outputs.check_output_folder(export_dir)
    if not into_run_folder:
        outputs.refuse_run_folder(export_dir)
    version = next_version(export_dir) if version is None else check_version(version)
    target = fileio.join(export_dir, str(version))
    outputs.check_targets(export_dir, [str(version)], overwrite, owned=is_tfseg_saved_model)

    archive = keras_export_archive(model, threshold, tiled=tiled, scale=scale)
    fileio.makedirs(export_dir)
    fileio.remove_stale_temporaries(export_dir)  # what a killed export left (of writers that no longer run)
    # Staged under a hidden, non-numeric name inside export_dir (TF Serving ignores it while it is
    # written), saved_model.pb published last. tf.saved_model.save writes to any URL TensorFlow knows.
    with fileio.replacing_folder(target, SAVED_MODEL_PB) as staging:
        with _quiet_stdout():
            archive.write_out(staging, verbose=False)
    return target


# What a SavedModel version folder holds (anything else in it is not tfseg's).
SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_ENTRIES = {SAVED_MODEL_PB, "variables", "assets", "assets.extra", "fingerprint.pb"}


def is_tfseg_saved_model(path: str) -> bool:
    """Whether ``path`` is a SavedModel version that :func:`export_saved_model` wrote.

    Recognised by its content: only SavedModel entries inside, and a graph that has
    tfseg's ``serving_bytes`` signature.
    """
    from tfseg import fileio

    if not fileio.isdir(path) or not set(fileio.listdir(path)) <= SAVED_MODEL_ENTRIES:
        return False
    graph = fileio.join(path, "saved_model.pb")
    return fileio.isfile(graph) and SERVING_BYTES.encode() in fileio.read_bytes(graph)


def keras_export_archive(model, threshold: float = 0.5, tiled: bool = False, scale: float = 1.0):
    """A ``keras.export.ExportArchive`` with the ``serving_default`` and ``serving_bytes`` endpoints."""
    import keras

    archive = keras.export.ExportArchive()
    # No archive.track(model): endpoints capture the variables they use, and with
    # Keras 3.15 + TF 2.21 track() stores every weight a second time (2x the size).
    for name, (function, signature) in serving_functions(model, threshold, tiled=tiled, scale=scale).items():
        archive.add_endpoint(name, function, input_signature=signature)
    return archive


@contextlib.contextmanager
def _quiet_stdout():
    # tf.saved_model.save / the TFLite converter print progress a CLI user does not need.
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ---------------------------------------------------------------------------
# TFLite and ONNX (the bare model: float32 [batch, H, W, 3] in [0, 1] -> probabilities)
# ---------------------------------------------------------------------------


def export_tflite(model, path, quantize: Optional[str] = None, overwrite: bool = False) -> str:
    """Write ``model`` as a ``.tflite`` file (the bare model, no resizing).

    The file's input is float32 ``[batch, H, W, 3]`` in [0, 1] (batch 1 by default;
    ``Interpreter.resize_tensor_input`` changes it), its output the probabilities.

    Args:
        model: the Keras model.
        path: the ``.tflite`` file to write (atomically).
        quantize: ``None``/``"none"`` float32 weights; ``"float16"`` float16 weights
            (half the size); ``"dynamic"`` int8 weights with dynamic-range activations
            (a quarter of the size, the least accurate).
        overwrite: replace an existing file.

    Returns:
        ``path``.
    """
    quantize = "none" if quantize is None else str(quantize).lower()
    if quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize {quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}")
    options = {}
    if quantize != "none":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    signature = [tf.TensorSpec([None, *model_input_size(model), 3], tf.float32, name="images")]
    return _write_file_atomically(
        path, ".tflite", overwrite,
        lambda temp: model.export(temp, format="litert", input_signature=signature, verbose=False, **options),
    )


def export_onnx(model, path, overwrite: bool = False, opset: Optional[int] = None) -> str:
    """Write ``model`` as an ``.onnx`` file (the bare model, no resizing), via tf2onnx.

    Input ``images`` float32 ``[batch, H, W, 3]`` in [0, 1], output ``probabilities``.
    Needs the optional extra ``pip install 'tfseg-keras[onnx]'`` (tf2onnx, onnxruntime).
    """
    missing = [name for name in ("tf2onnx", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise TfsegError(
            f"ONNX export needs {', '.join(missing)}: pip install 'tfseg-keras[onnx]' (tf2onnx, onnxruntime)"
        )
    signature = [tf.TensorSpec([None, *model_input_size(model), 3], tf.float32, name="images")]

    def write(temp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf2onnx's numpy-2 deprecation chatter
            model.export(temp, format="onnx", input_signature=signature, verbose=False, opset_version=opset)
        _rename_onnx_output(temp, "probabilities")

    return _write_file_atomically(path, ".onnx", overwrite, write)


def _rename_onnx_output(path: str, new_name: str) -> None:
    # tf2onnx names the output after the graph's Identity op; users look for "probabilities".
    import onnx

    graph_model = onnx.load(path)
    old_name = graph_model.graph.output[0].name
    for node in graph_model.graph.node:
        node.output[:] = [new_name if name == old_name else name for name in node.output]
    graph_model.graph.output[0].name = new_name
    onnx.save(graph_model, path)


def _write_file_atomically(path, suffix: str, overwrite: bool, write) -> str:
    """Call ``write(local_file)`` and put that file at ``path`` through a temporary name and a rename.

    The converters (TFLite, tf2onnx) write local files only: for a URL ``path``
    (``gs://``) the file is written to a local temporary folder and copied.
    """
    from tfseg import fileio, outputs

    path = fileio.fspath(path)
    if not path.endswith(suffix):
        raise TfsegError(f"out {path}: the file name must end with {suffix}")
    parent = fileio.dirname(fileio.abspath(path))
    name = fileio.basename(path)
    outputs.check_output_folder(parent)
    outputs.refuse_run_folder(parent)
    outputs.check_targets(parent, [name], overwrite)
    fileio.makedirs(parent)
    fileio.remove_stale_temporaries(parent)
    if fileio.is_url(path):
        with tempfile.TemporaryDirectory() as local:
            temp = os.path.join(local, name)
            with _quiet_stdout():
                write(temp)
            outputs.claim(parent, [name], "tfseg export")
            with fileio.atomic_path(path) as target:
                fileio.copy(temp, target)
        return path
    with fileio.atomic_path(path) as temp:
        with _quiet_stdout():
            write(temp)
        outputs.claim(parent, [name], "tfseg export")
    return path


# ---------------------------------------------------------------------------
# Checks: each export against the Keras model it came from
# ---------------------------------------------------------------------------


def sample_images(model, batch_size: int = 2, seed: int = 0) -> np.ndarray:
    """Seeded random uint8 images ``[batch_size, H, W, 3]`` at the model's input size."""
    height, width = model_input_size(model)
    return np.random.default_rng(seed).integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8)


def keras_probabilities(model, images: np.ndarray) -> np.ndarray:
    """The Keras model's float32 probabilities for uint8 ``images`` at its input size."""
    return np.asarray(model(images.astype(np.float32) / 255.0, training=False), dtype=np.float32)


def saved_model_max_abs_diff(model, path: str, images: Optional[np.ndarray] = None) -> float:
    """max |serving_default probabilities - Keras probabilities| on model-sized images."""
    images = sample_images(model) if images is None else images
    serve = tf.saved_model.load(path).signatures[SERVING_DEFAULT]
    served = serve(images=tf.constant(images))["probabilities"].numpy()
    return float(np.max(np.abs(served - keras_probabilities(model, images))))


def tiled_saved_model_max_abs_diff(model, path: str, scale: float = 1.0, seed: int = 0) -> Tuple[float, tuple]:
    """max |serving_default - :func:`tfseg.tiling.predict_whole_images`| on a random image larger than a window.

    Returns:
        ``(difference, (height, width) of the image)``.
    """
    from tfseg.tiling import predict_whole_images

    height, width = model_input_size(model)
    size = (height * 3 // 2 + 7, width * 2 + 3)  # several overlapping windows, odd sizes
    images = np.random.default_rng(seed).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    serve = tf.saved_model.load(path).signatures[SERVING_DEFAULT]
    served = serve(images=tf.constant(images))["probabilities"].numpy()
    expected = np.asarray(predict_whole_images(model, images.astype(np.float32) / 255.0, scale=scale))
    return float(np.max(np.abs(served - expected))), size


def tflite_probabilities(interpreter, inputs: np.ndarray) -> np.ndarray:
    """Run a TFLite interpreter (or ``.tflite`` path) on float32 ``inputs`` ``[b, H, W, 3]`` in one call."""
    if isinstance(interpreter, (str, os.PathLike)):
        interpreter = tflite_interpreter(os.fspath(interpreter))
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], inputs.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).astype(np.float32)


def tflite_interpreter(path: str, num_threads: Optional[int] = None):
    """A TFLite interpreter: ``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``.

    The file is read through :mod:`tfseg.fileio`, so ``path`` may be a URL.
    """
    from tfseg import fileio

    content = fileio.read_bytes(path)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            return tf.lite.Interpreter(model_content=content, num_threads=num_threads)
    return Interpreter(model_content=content, num_threads=num_threads)


def tflite_max_abs_diff(model, path: str, images: Optional[np.ndarray] = None) -> float:
    """max |TFLite probabilities - Keras probabilities| on model-sized images."""
    images = sample_images(model) if images is None else images
    served = tflite_probabilities(path, images.astype(np.float32) / 255.0)
    return float(np.max(np.abs(served - keras_probabilities(model, images))))


def onnx_max_abs_diff(model, path: str, images: Optional[np.ndarray] = None) -> float:
    """max |onnxruntime probabilities - Keras probabilities| on model-sized images."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise TfsegError("checking an ONNX export needs onnxruntime: pip install 'tfseg-keras[onnx]'")
    import onnxruntime

    images = sample_images(model) if images is None else images
    from tfseg import fileio

    session = onnxruntime.InferenceSession(fileio.read_bytes(path), providers=["CPUExecutionProvider"])
    served = session.run(["probabilities"], {"images": images.astype(np.float32) / 255.0})[0]
    return float(np.max(np.abs(served - keras_probabilities(model, images))))
