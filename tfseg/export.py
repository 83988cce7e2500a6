"""Export a trained model: SavedModel for TF Serving, TFLite, ONNX.

The SavedModel carries its own pre- and post-processing, so a client sends raw
pixels (or encoded files) of any size and gets masks of that size back:

``serving_default``
    input ``images`` uint8 ``[batch, height, width, 3]`` (any height/width) ->
    ``probabilities`` float32 ``[batch, height, width, classes]`` and
    ``mask`` uint8 ``[batch, height, width]``. A model trained on data images
    (:mod:`tfseg.data.bands`) takes their bands and value type instead, e.g. uint16
    ``[batch, height, width, 4]``, normalised in the graph by the run's stored normalisation;
    it has no ``serving_bytes``/``serving_compact`` (they decode RGB photographs).
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

``serving_windows``
    input ``windows`` float32 ``[batch, H, W, C]`` at the model's input size, already
    normalised (``x / 255``, or the stored normalisation) -> ``probabilities`` float32 ``[batch, H, W, classes]``: the
    bare model. :mod:`tfseg.inference` runs the whole path in Python around it (so
    ``tfseg predict --tiled/--tta`` work on a SavedModel too).

An empty batch sent to either image signature returns empty outputs (batch 0).

Inside the graph, the image signatures run :mod:`tfseg.segment`, the path ``tfseg predict``
runs: ``x = round(resize_image(images, model_size)) / 255`` (the training pipeline's own
resize and rounding, :mod:`tfseg.data.pixels`), ``p = model(x)`` (cast to float32, so a
``mixed_float16`` model serves float32), ``p = resize_bilinear(p, (height, width))``; the
mask is ``p[..., 0] >= threshold`` for one class, ``argmax(p, -1)`` otherwise. A model
trained on patches (``tiled``) runs a sliding window at ``scale`` x the image's size instead
of the resize; ``tta="flips"`` averages the flips. The settings (:class:`tfseg.segment.Settings`
as JSON) are stored in the SavedModel as the string variable ``inference_settings``
(``tf.saved_model.load(path).inference_settings[0]``). The SavedModel needs TensorFlow only:
no tfseg import and no custom objects to load or serve.

A clean-up of the masks (``cleanup``: keep the largest component, drop small ones, fill holes;
:mod:`tfseg.postprocess`) is stored in those settings, and tfseg's SavedModel predictor
(``tfseg predict``, :func:`tfseg.inference.load_predictor`) applies it; the serving graph does
not (its ``mask`` is the threshold/argmax): a TF Serving client cleans the mask itself
(docs/guide.md, "Clean-up of masks").

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
from tfseg.data.pixels import model_inputs, stored_pixels
from tfseg.errors import ConfigError, TfsegError
from tfseg.masks import written_mask
from tfseg.saving import model_channels, model_input_size
from tfseg.segment import Settings, check_threshold, keras_windows  # noqa: F401 - check_threshold: its former home

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
SERVING_WINDOWS = "serving_windows"
SERVING_COMPACT = "serving_compact"
MASK_PNG = "mask_png_bytes"
PROBABILITIES_PNG = "probabilities_png_bytes"
# What serving_compact returns: a REST reply of a few kB (names ending in _bytes travel as {"b64": ...}).
COMPACT_OUTPUTS = (MASK_PNG, "height", "width")
# The inference settings (tfseg.segment.Settings as JSON): a string variable collection of the SavedModel
# (ExportArchive.add_variable_collection), so they travel inside it; no signature, TF Serving ignores it.
SETTINGS_COLLECTION = "inference_settings"
QUANTIZE_CHOICES = ("none", "float16", "dynamic")

# ---------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------


def serving_functions(model, threshold: float = 0.5, tiled: bool = False, scale: float = 1.0,
                      tta: Optional[str] = None, probabilities_png: bool = False) -> Dict[str, tuple]:
    """``{signature name: (python function, input signature)}`` of the SavedModel's endpoints.

    The settings (:class:`tfseg.segment.Settings`) of ``model`` with these options, through
    :func:`signatures`.
    """
    return signatures(Settings.of_model(model, threshold=threshold, tiled=tiled, scale=scale, tta=tta,
                                       probabilities_png=probabilities_png), keras_windows(model))


def input_specs(settings: Settings) -> Dict[str, tf.TensorSpec]:
    """``{signature name: its one input}``: the inputs of :func:`signatures` (and of the warm-up requests).

    ``serving_default`` takes the training images' bands and value type (``uint8 [b, H, W, 3]`` for
    photographs; e.g. ``uint16 [b, H, W, 4]`` for 4-band 16-bit data, normalised in the graph);
    ``serving_bytes`` and ``serving_compact`` (encoded files) exist for RGB photographs only.
    """
    specs = {SERVING_DEFAULT: tf.TensorSpec([None, None, None, settings.channels], tf.as_dtype(settings.dtype),
                                            name="images")}
    if is_photo(settings):
        specs[SERVING_BYTES] = tf.TensorSpec([None], tf.string, name="image_bytes")
        specs[SERVING_COMPACT] = tf.TensorSpec([None], tf.string, name="image_bytes")
    specs[SERVING_WINDOWS] = tf.TensorSpec([None, *settings.window, settings.channels], tf.float32, name="windows")
    return specs


def is_photo(settings: Settings) -> bool:
    """Whether the model takes RGB photographs (8-bit, 3 bands), which the encoded-file signatures decode."""
    return settings.channels == 3 and settings.dtype == "uint8"


def signatures(settings: Settings, predict) -> Dict[str, tuple]:
    """Every endpoint of the SavedModel, from one settings object and one adapter (:mod:`tfseg.segment`).

    ``serving_default`` (uint8 images), ``serving_bytes`` (encoded files), ``serving_compact``
    (encoded files -> :data:`COMPACT_OUTPUTS` only) and ``serving_windows`` (float32 model inputs
    at the model's size -> probabilities: the adapter itself, which :mod:`tfseg.inference` runs the
    same Python path on). Resize or tiled, with or without flip TTA: the same functions, the mode is
    in ``settings``; every image signature builds its outputs with one function.
    """
    num_classes = settings.num_classes

    def outputs(probabilities, sizes=None):
        # The one place a signature's outputs are made (a later output is added here, for all).
        mask = settings.mask(probabilities)
        result = {"probabilities": probabilities, "mask": mask}
        if sizes is not None:
            result.update(height=sizes[:, 0], width=sizes[:, 1])
        else:  # every image of a uint8 batch has the batch's size
            shape = tf.shape(probabilities)
            sizes = tf.tile(shape[tf.newaxis, 1:3], [shape[0], 1])
        result[MASK_PNG] = png_per_image(written_mask(mask, num_classes)[..., tf.newaxis], sizes)
        if settings.probabilities_png:
            result[PROBABILITIES_PNG] = png_per_image(probability_levels(probabilities), sizes, stack_planes)
        return result

    def serve_images(images):
        return outputs(settings.probabilities(predict, images))  # an empty batch too: [0, H, W, K]

    def serve_bytes(image_bytes):
        # An empty batch returns empty outputs (there is no largest image to pad to).
        return tf.cond(tf.size(image_bytes) > 0, lambda: serve_encoded(image_bytes),
                       lambda: outputs(tf.zeros([0, 0, 0, num_classes], tf.float32), tf.zeros([0, 2], tf.int32)))

    def serve_compact(image_bytes):
        # serving_bytes' graph; what no output needs is pruned when the function runs.
        served = serve_bytes(image_bytes)
        return {name: served[name] for name in COMPACT_OUTPUTS}

    def serve_encoded(image_bytes):
        # Decoded once (the training pipeline's decoder, tfseg.data.decode), padded to the largest image.
        def decode(data):
            image = decode_rgb(data)
            return tf.RaggedTensor.from_tensor(image), tf.shape(image)[:2]

        decoded, sizes = tf.map_fn(decode, image_bytes, fn_output_signature=(
            tf.RaggedTensorSpec([None, None, 3], tf.uint8, ragged_rank=1), tf.TensorSpec([2], tf.int32)))
        images = decoded.to_tensor()
        out_height, out_width = tf.reduce_max(sizes[:, 0]), tf.reduce_max(sizes[:, 1])

        def own(args):  # image i at its own size
            image, size = args
            return image[: size[0], : size[1]][tf.newaxis]

        def padded(probabilities):
            shape = tf.shape(probabilities)
            return tf.pad(probabilities, [[0, out_height - shape[0]], [0, out_width - shape[1]], [0, 0]])

        spec = tf.TensorSpec([None, None, num_classes], tf.float32)
        if settings.tiled:  # each image through the whole path at its own size
            probabilities = tf.map_fn(lambda args: padded(settings.probabilities(predict, own(args))[0]),
                                      (images, sizes), fn_output_signature=spec)
        else:  # every image's model input in one model call, then each restored to its own size
            inputs = tf.map_fn(lambda args: settings.model_inputs(own(args))[0], (images, sizes),
                               fn_output_signature=tf.TensorSpec([*settings.window, 3], tf.float32))
            model_probabilities = settings.predict_inputs(predict, inputs)
            probabilities = tf.map_fn(
                lambda args: padded(settings.restore(args[0][tf.newaxis], args[1])[0]),
                (model_probabilities, sizes), fn_output_signature=spec)
        return outputs(probabilities, sizes)

    def serve_windows(windows):
        return {"probabilities": tf.cast(predict(windows), tf.float32)}

    functions = {SERVING_DEFAULT: serve_images, SERVING_BYTES: serve_bytes, SERVING_COMPACT: serve_compact,
                 SERVING_WINDOWS: serve_windows}  # input_specs says which a model has
    return {name: (functions[name], [spec]) for name, spec in input_specs(settings).items()}


def probability_levels(probabilities):
    """float32 probabilities in [0, 1] -> uint8 ``round(255 p)`` (8 bits: steps of 1/255), by the
    pipeline's one rounding to stored pixels (:func:`tfseg.data.pixels.stored_pixels`)."""
    return stored_pixels(probabilities * 255.0)


def stack_planes(image):
    """``[h, w, K]`` -> ``[K * h, w, 1]``: class ``k``'s plane is rows ``k*h:(k+1)*h`` of one grey image."""
    shape = tf.shape(image)
    return tf.reshape(tf.transpose(image, [2, 0, 1]), [shape[2] * shape[0], shape[1], 1])


def png_per_image(levels, sizes, layout=None):
    """uint8 ``[b, H, W, C]`` -> string ``[b]``: image ``i`` cut to ``sizes[i]`` (its own, without the
    batch's padding), laid out by ``layout`` (default: as it is) and encoded as PNG."""
    def encode(args):
        image, size = args
        image = image[: size[0], : size[1]]
        return tf.io.encode_png(image if layout is None else layout(image))

    return tf.map_fn(encode, (levels, sizes), fn_output_signature=tf.TensorSpec([], tf.string))


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
                       tta: Optional[str] = None, cleanup=None, into_run_folder: bool = False,
                       probabilities_png: bool = False, warmup: bool = True, batching: bool = True,
                       dtype: str = "uint8", normalization=None) -> str:
    """Write ``model`` as a TF Serving SavedModel in ``export_dir/<version>``.

    Beside the SavedModel: ``<version>/assets.extra/tf_serving_warmup_requests`` (one request per
    signature, :func:`write_warmup_requests`; needs ``tensorflow-serving-api``, skipped without it)
    and ``export_dir/batching_parameters.txt`` (:func:`write_batching_parameters`).

    Args:
        model: a functional Keras model, input ``[batch, H, W, 3]`` float32 in [0, 1],
            output probabilities ``[batch, H, W, C]`` (sigmoid for C=1, softmax otherwise).
        export_dir: the model base path TF Serving watches (created if missing).
        version: positive integer folder name; ``None`` -> :func:`next_version`.
        overwrite: replace an existing ``export_dir/<version>`` that tfseg exported (one with
            tfseg's serving signatures and nothing else inside); without it that is an error.
        threshold: binary masks are ``probability >= threshold`` (ignored for C > 1).
        tiled: serve whole images by sliding window in the graph (a model trained on patches);
            the signatures' names, inputs and outputs stay the same.
        scale: with ``tiled``, images are resized by this factor before the windows run
            (the run's ``--scale``).
        dtype, normalization: the training images' value type and normalisation (a run's
            ``config.json``; :mod:`tfseg.data.bands`): ``serving_default`` then takes
            ``[batch, H, W, bands]`` of ``dtype`` and normalises in the graph. Default: 8-bit, ``x / 255``.
        tta: ``"flips"``: the image signatures average the identity and the two flips.
        cleanup: the masks' clean-up (:class:`tfseg.postprocess.Cleanup` or a mapping of its fields),
            stored in the settings for tfseg's predictor; not in the serving graph (module docstring).
        probabilities_png: the image signatures also return ``probabilities_png_bytes`` (8-bit PNGs).
        warmup: write the TF Serving warm-up requests (when ``tensorflow-serving-api`` is installed).
        batching: write ``batching_parameters.txt`` (:func:`write_batching_parameters`).
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

    settings = Settings.of_model(model, threshold=threshold, tiled=tiled, scale=scale, tta=tta, cleanup=cleanup,
                                 probabilities_png=probabilities_png, dtype=dtype, normalization=normalization)
    archive = keras_export_archive(model, settings)
    fileio.makedirs(export_dir)
    fileio.remove_stale_temporaries(export_dir)  # what a killed export left (of writers that no longer run)
    # Staged under a hidden, non-numeric name inside export_dir (TF Serving ignores it while it is
    # written), saved_model.pb published last. tf.saved_model.save writes to any URL TensorFlow knows.
    with fileio.replacing_folder(target, SAVED_MODEL_PB) as staging:
        with _quiet_stdout():
            archive.write_out(staging, verbose=False)
        # (not on ram://: TensorFlow's in-memory file system lists and deletes by name prefix, so a
        # folder "assets" beside "assets.extra" cannot be moved or removed there; TF Serving never reads it)
        if warmup and warmup_available() and not fileio.fspath(export_dir).startswith("ram://"):
            write_warmup_requests(staging, settings)
    if batching:
        write_batching_parameters(export_dir, settings, overwrite)
    return target


# ---------------------------------------------------------------------------
# TF Serving: warm-up requests and batching parameters
# ---------------------------------------------------------------------------

WARMUP_FILE = "tf_serving_warmup_requests"  # in <version>/assets.extra/, where TF Serving looks for it
BATCHING_FILE = "batching_parameters.txt"
SERVING_EXTRA = "pip install 'tfseg-keras[serving]' (tensorflow-serving-api)"
# One batch of the model's inputs is kept near this many pixels (the activations grow with them):
# 32 images at 256x256, 8 at 512x512, 2 at 1024x1024.
BATCH_PIXELS = 2**21
MAX_BATCH_SIZE = 64


def warmup_available() -> bool:
    """Whether ``tensorflow-serving-api`` (the PredictionLog protos) is installed."""
    return importlib.util.find_spec("tensorflow_serving") is not None


def warmup_requests(settings: Settings, seed: int = 0) -> Dict[str, dict]:
    """``{signature: {input name: array}}``: one request per signature, one seeded random image at the
    model's input size (the window): uint8 pixels, its PNG, or its model inputs (``serving_windows``)."""
    height, width = settings.window
    image = np.random.default_rng(seed).integers(0, 256, (1, height, width, settings.channels), dtype=np.uint8)
    pixels = image.astype(settings.dtype)
    examples = {SERVING_DEFAULT: pixels, SERVING_WINDOWS: model_inputs(pixels, settings.normalization).numpy()}
    if is_photo(settings):
        examples[SERVING_BYTES] = examples[SERVING_COMPACT] = np.array([tf.io.encode_png(image[0]).numpy()],
                                                                       dtype=object)
    return {name: {spec.name: examples[name]} for name, spec in input_specs(settings).items()}


def write_warmup_requests(version_dir: str, settings: Settings) -> str:
    """Write ``version_dir/assets.extra/tf_serving_warmup_requests``: a TFRecord of ``PredictionLog``
    protos (``tensorflow_serving.apis``), one :func:`warmup_requests` request per signature, which
    TF Serving runs when it loads the version, before it answers a client."""
    from tfseg import fileio
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    folder = fileio.join(version_dir, "assets.extra")
    fileio.makedirs(folder)
    path = fileio.join(folder, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for name, inputs in warmup_requests(settings).items():
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = name
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def rest_json(outputs: Dict) -> str:
    """The body of TF Serving's REST reply to a ``"inputs"`` request with these outputs (``{name: array}``
    from a signature): ``{"outputs": {name: nested lists}}``, a ``*_bytes`` string as ``{"b64": ...}``,
    floats as float32's shortest round-trip decimal. Its length is what a client downloads.
    """
    import base64
    import json

    def plain(name, value):
        value = np.asarray(value)
        if name.endswith("_bytes"):
            return [{"b64": base64.b64encode(item).decode("ascii")} if value.ndim == 1 else plain(name, item)
                    for item in value]
        if value.dtype.kind == "f":  # float32's shortest decimal, parsed back: Python prints it as short
            value = value.astype(np.float32).astype(str).astype(np.float64)
        return value.tolist()

    return json.dumps({"outputs": {name: plain(name, value) for name, value in outputs.items()}},
                      separators=(",", ":"))


def batching_parameters(settings: Settings, num_batch_threads: int = 4) -> Dict[str, int]:
    """TF Serving's ``--batching_parameters_file`` values for this model.

    ``max_batch_size``: the largest power of two with ``max_batch_size * h * w <= BATCH_PIXELS``
    (``(h, w)`` the model's input; 1..64): a merged batch's activations stay as large as 32 images
    of 256x256. ``batch_timeout_micros`` 2000: a request waits at most 2 ms for others, small
    against one model call. ``num_batch_threads``: batches run at once (set it to the server's
    cores). ``max_enqueued_batches`` ``2 x num_batch_threads``: a burst beyond that is refused
    at once instead of queueing for seconds.
    """
    height, width = settings.window
    size = 1
    while size * 2 * height * width <= BATCH_PIXELS and size * 2 <= MAX_BATCH_SIZE:
        size *= 2
    return {"max_batch_size": size, "batch_timeout_micros": 2000, "num_batch_threads": num_batch_threads,
            "max_enqueued_batches": 2 * num_batch_threads}


def batching_parameters_text(settings: Settings) -> str:
    """:func:`batching_parameters` as TF Serving's text proto (``{ value: N }`` per field)."""
    height, width = settings.window
    lines = [f"# TF Serving batching for a {height}x{width} model, written by tfseg export "
             "(tensorflow_model_server --enable_batching --batching_parameters_file=<this file>)"]
    lines += [f"{key} {{ value: {value} }}" for key, value in batching_parameters(settings).items()]
    return "\n".join(lines) + "\n"


def write_batching_parameters(export_dir: str, settings: Settings, overwrite: bool = False) -> Optional[str]:
    """Write ``export_dir/batching_parameters.txt`` (beside the versions) unless a file is there that
    tfseg did not write, or that it wrote and ``overwrite`` is False (a user's tuning is kept).

    Returns:
        Its path when written, else ``None``.
    """
    from tfseg import fileio, outputs

    path = fileio.join(export_dir, BATCHING_FILE)
    if fileio.exists(path) and (BATCHING_FILE not in outputs.claimed(export_dir) or not overwrite):
        return None
    outputs.claim(export_dir, [BATCHING_FILE], "tfseg export")
    fileio.write_text_atomic(path, batching_parameters_text(settings))
    return path


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


def saved_model_settings(loaded, path: str = "") -> Optional[Settings]:
    """The :class:`~tfseg.segment.Settings` a loaded SavedModel (``tf.saved_model.load``) was exported with,
    or ``None`` for an export without them (written before they were: it serves through its signatures
    as exported).

    Raises:
        TfsegError: the stored settings cannot be read (names ``path``).
    """
    stored = getattr(loaded, SETTINGS_COLLECTION, None)
    if not stored:
        return None
    try:
        return Settings.from_json(stored[0].numpy().decode("utf-8"))
    except (ValueError, TypeError) as err:
        raise TfsegError(f"model {path}: its {SETTINGS_COLLECTION} cannot be read ({err})") from None


def keras_export_archive(model, settings: Optional[Settings] = None):
    """A ``keras.export.ExportArchive`` with the endpoints of :func:`signatures` (default settings of ``model``)."""
    import keras

    settings = Settings.of_model(model) if settings is None else settings
    archive = keras.export.ExportArchive()
    # No archive.track(model): endpoints capture the variables they use, and with
    # Keras 3.15 + TF 2.21 track() stores every weight a second time (2x the size).
    for name, (function, signature) in signatures(settings, keras_windows(model)).items():
        archive.add_endpoint(name, function, input_signature=signature)
    archive.add_variable_collection(SETTINGS_COLLECTION, [tf.Variable(settings.to_json(), trainable=False)])
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
    signature = [tf.TensorSpec([None, *model_input_size(model), model_channels(model)], tf.float32, name="images")]
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
    signature = [tf.TensorSpec([None, *model_input_size(model), model_channels(model)], tf.float32, name="images")]

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


def sample_images(model, batch_size: int = 2, seed: int = 0, size=None, settings: Optional[Settings] = None
                  ) -> np.ndarray:
    """Seeded random images ``[batch_size, H, W, C]`` (values 0..255) at the model's input size (or ``size``):
    uint8 RGB, or the ``settings``' bands and value type (a model of data images, :mod:`tfseg.data.bands`)."""
    height, width = model_input_size(model) if size is None else size
    channels = model_channels(model) if settings is None else settings.channels
    images = np.random.default_rng(seed).integers(0, 256, (batch_size, height, width, channels), dtype=np.uint8)
    return images if settings is None else images.astype(settings.dtype)


def keras_probabilities(model, images: np.ndarray, normalization=None) -> np.ndarray:
    """The Keras model's float32 probabilities for ``images`` at its input size (``model_inputs``)."""
    return np.asarray(model(model_inputs(images, normalization), training=False), dtype=np.float32)


def _exported(model, path: str):
    """``(the SavedModel's serving_default, its settings)`` (the model's defaults for an export without them)."""
    loaded = tf.saved_model.load(path)
    return loaded.signatures[SERVING_DEFAULT], saved_model_settings(loaded, path) or Settings.of_model(model)


def saved_model_max_abs_diff(model, path: str, images: Optional[np.ndarray] = None) -> float:
    """max |serving_default probabilities - Keras probabilities| on model-sized images."""
    serve, settings = _exported(model, path)
    images = sample_images(model, settings=settings) if images is None else images
    served = serve(images=tf.constant(images))["probabilities"].numpy()
    return float(np.max(np.abs(served - keras_probabilities(model, images, settings.normalization))))


def whole_image_max_abs_diff(model, path: str, seed: int = 0) -> Tuple[float, tuple]:
    """max |serving_default - :mod:`tfseg.segment` run eagerly on the Keras model| on a random image of
    another size than the model's (several overlapping windows when tiled), with the export's settings.

    Returns:
        ``(difference, (height, width) of the image)``.
    """
    height, width = model_input_size(model)
    size = (height * 3 // 2 + 7, width * 2 + 3)  # several overlapping windows, odd sizes
    serve, settings = _exported(model, path)
    images = sample_images(model, 1, seed, size, settings)
    served = serve(images=tf.constant(images))["probabilities"].numpy()
    expected = settings.probabilities(keras_windows(model), images)
    expected = expected.numpy()
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
    served = tflite_probabilities(path, model_inputs(images).numpy())
    return float(np.max(np.abs(served - keras_probabilities(model, images))))


def onnx_max_abs_diff(model, path: str, images: Optional[np.ndarray] = None) -> float:
    """max |onnxruntime probabilities - Keras probabilities| on model-sized images."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise TfsegError("checking an ONNX export needs onnxruntime: pip install 'tfseg-keras[onnx]'")
    import onnxruntime

    images = sample_images(model) if images is None else images
    from tfseg import fileio

    session = onnxruntime.InferenceSession(fileio.read_bytes(path), providers=["CPUExecutionProvider"])
    served = session.run(["probabilities"], {"images": model_inputs(images).numpy()})[0]
    return float(np.max(np.abs(served - keras_probabilities(model, images))))
