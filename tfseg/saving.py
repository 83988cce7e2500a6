"""Finding and loading a trained model: a ``.keras`` file, a run folder, a SavedModel or a ``.tflite``.

One place for what ``evaluate``, ``predict``, ``export`` and a resumed ``train`` need:
:func:`resolve_model_path` (what a ``--model PATH`` names), :func:`load_keras_model`
(safe-mode loading with one-line errors and a check that every weight is finite),
:func:`locate_model` (the ``model.keras`` and the run folder's settings) and
:func:`model_input_size`.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from tfseg import fileio
from tfseg.errors import TfsegError


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, without TensorFlow's op wrappers."""
    # TF errors carry "{{function_node ...}}" and "[Op:...]" wrappers a user does not need.
    text = re.sub(r"\{\{[^}]*\}\}|\s*\[Op:\w+\]", "", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_model_path(path: str) -> Tuple[str, str]:
    """``(kind, path)`` for a ``.keras`` file, a ``.tflite`` file, a SavedModel folder,
    a base folder of numbered SavedModel versions (-> the latest) or a RUN_DIR (-> its ``model.keras``).

    Raises:
        TfsegError: nothing usable at ``path`` (names it).
    """
    path = fileio.fspath(path)
    if fileio.isfile(path):
        if path.endswith(".keras"):
            return "keras", path
        if path.endswith(".tflite"):
            return "tflite", path
        raise TfsegError(f"model {path}: expected a .keras or .tflite file, a SavedModel folder or a run folder")
    if not fileio.isdir(path):
        raise TfsegError(f"model {path}: no such file or folder")
    if fileio.isfile(fileio.join(path, "model.keras")):
        return "keras", fileio.join(path, "model.keras")
    if fileio.isfile(fileio.join(path, "saved_model.pb")):
        return "saved_model", path
    for base in (path, fileio.join(path, "saved_model")):
        version = latest_version(base)
        if version is not None:
            return "saved_model", version
    raise TfsegError(f"model {path}: no model.keras, saved_model.pb or numbered SavedModel version inside")


def latest_version(base: str) -> Optional[str]:
    """The highest-numbered ``base/<N>`` holding a ``saved_model.pb`` (what TF Serving loads), or None."""
    if not fileio.isdir(base):
        return None
    versions = [
        int(name) for name in fileio.listdir(base)
        if name.isdigit() and fileio.isfile(fileio.join(base, name, "saved_model.pb"))
    ]
    return fileio.join(base, str(max(versions))) if versions else None


def load_keras_model(path: str, compile: bool = True, require_finite: bool = True):
    """``keras.models.load_model`` in safe mode, with one-line errors.

    tfseg's custom objects are registered by ``import tfseg``, so no ``custom_objects``
    are needed.

    Args:
        path: a ``.keras`` file (local or a URL).
        compile: restore the optimizer, loss and metrics too.
        require_finite: refuse a model with NaN/Inf weights (:func:`check_finite_weights`).

    Raises:
        TfsegError: the file is missing, not a Keras file, damaged or truncated, or
            (``require_finite``) holds NaN/Inf weights; the message names it.
    """
    import keras

    import tfseg  # noqa: F401 - registers tfseg's layers, losses and metrics

    path = fileio.fspath(path)
    if not fileio.isfile(path):
        raise TfsegError(f"model {path}: no such .keras file")
    if not _is_zip(path):
        raise TfsegError(f"model {path}: cannot load it as a Keras model (not a .keras zip archive: "
                         "truncated or damaged?)")
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as err:  # noqa: BLE001 - zip, JSON and deserialization errors all mean "bad file"
        raise TfsegError(f"model {path}: cannot load it as a Keras model ({type(err).__name__}: "
                         f"{first_line(err)})") from None
    if require_finite:
        check_finite_weights(model, path)
    return model


def _is_zip(path: str) -> bool:
    import zipfile

    try:
        with fileio.open_file(path, "rb") as f:
            with zipfile.ZipFile(f) as archive:
                return archive.testzip() is None
    except Exception:  # noqa: BLE001 - zipfile, OS and TensorFlow file errors all mean "not a zip"
        return False


def locate_model(path: str):
    """``(model.keras path, TrainConfig of its run folder or None)`` for a ``.keras`` file or a RUN_DIR.

    Raises:
        TfsegError: ``path`` is neither (names it).
    """
    from tfseg.training.run_folder import saved_config

    path = fileio.fspath(path)
    if fileio.isdir(path):
        path = fileio.join(path, "model.keras")
    if not fileio.isfile(path):
        raise TfsegError(f"model {path}: no such file (expected a model.keras file or a run folder)")
    if not path.endswith(".keras"):
        raise TfsegError(f"model {path}: not a .keras file")
    return path, saved_config(fileio.dirname(fileio.abspath(path)))


def model_input_size(model) -> Tuple[int, int]:
    """``(height, width)`` the model takes.

    Raises:
        TfsegError: not one image input of a fixed size ``[batch, H, W, 3]``.
    """
    if len(model.inputs) != 1:
        raise TfsegError(f"model {model.name!r}: needs a single image input, found {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise TfsegError(
            f"model {model.name!r}: input shape {shape} is not [batch, height, width, 3] "
            "with a fixed height and width"
        )
    return int(shape[1]), int(shape[2])


def model_num_classes(model) -> int:
    """Channels of the model's output (1 = binary, sigmoid)."""
    return int(model.outputs[0].shape[-1])


def check_finite_weights(model, path: str) -> None:
    """Refuse a model with NaN/Inf weights (a run that diverged), naming ``path``.

    Raises:
        TfsegError: some weight is not finite.
    """
    import numpy as np

    bad = [w.path if hasattr(w, "path") else str(i) for i, w in enumerate(model.weights)
           if not np.isfinite(np.asarray(w)).all()]
    if bad:
        raise TfsegError(f"model {path}: {len(bad)} weight tensor(s) hold NaN/Inf (e.g. {bad[0]}); "
                         "the training diverged: retrain with a lower learning rate or float32")
