"""Finding and loading a trained model: a ``.keras`` file, a run folder, a SavedModel or a ``.tflite``.

One place for what ``evaluate``, ``predict``, ``export``, a resumed ``train`` and
``tfseg.load_model`` need: :func:`load_model` (the one checked loader: whatever ``--model``
takes), :func:`resolve_model_path` (what a ``--model PATH`` names), :func:`load_keras_model`
(safe-mode loading with one-line errors, a check that every weight is finite and, inside a
run folder, :func:`check_run_model`: the model is the one its ``config.json`` describes),
:func:`locate_model` (the ``model.keras`` and the run folder's settings) and
:func:`model_input_size`.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Dict, Optional, Tuple

from tfseg import fileio
from tfseg.errors import TfsegError


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, without TensorFlow's op wrappers."""
    # TF errors carry "{{function_node ...}}" and "[Op:...]" wrappers a user does not need.
    text = re.sub(r"\{\{[^}]*\}\}|\s*\[Op:\w+\]", "", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resolve_model_path(path: str) -> Tuple[str, str]:
    """``(kind, path)`` for a ``.keras`` file, a ``.tflite`` file, a SavedModel folder,
    a base folder of numbered SavedModel versions (-> the latest), a RUN_DIR (-> its ``model.keras``)
    or the RUN_DIR of a cross-validation (``tfseg train --folds K``; ``"keras"``, the folder itself:
    :func:`load_keras_model` makes the ensemble of its folds).

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
    from tfseg.training.cv import is_cv_run

    if is_cv_run(path):  # tfseg train --folds K: the ensemble of its folds (load_keras_model)
        return "keras", path
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


def load_model(path, compile: bool = True):
    """The model at ``path``, as ``tfseg evaluate/predict/export --model`` load it, with their checks.

    ``path`` is what ``--model`` takes (:func:`resolve_model_path`): a ``.keras`` file, a run
    folder (its ``model.keras``), a SavedModel version or base folder (the latest version),
    or a ``.tflite`` file.

    Returns:
        A ``keras.Model`` for a ``.keras`` file or a run folder (:func:`load_keras_model`:
        finite weights, and inside a run folder the architecture, input size and class count
        of its ``config.json``). For a SavedModel or a ``.tflite`` file, which hold no Keras
        model, the :class:`tfseg.inference.Predictor` that ``tfseg predict`` uses
        (:func:`tfseg.inference.load_predictor`; ``predictor.probabilities(images)`` maps uint8
        images of any size to probabilities of that size; a NaN/Inf output is refused at the
        first prediction).

    Raises:
        TfsegError: nothing usable at ``path``, a damaged file, NaN/Inf weights, or a run
            folder whose ``model.keras`` is not the model of its ``config.json``; names the file.

    Example:
        >>> model = load_model("runs/unet-synthetic")                    # doctest: +SKIP
        >>> model.name
        'unet'
    """
    kind, resolved = resolve_model_path(path)
    if kind == "keras":
        return load_keras_model(resolved, compile=compile)
    from tfseg.inference import load_predictor

    return load_predictor(resolved)


def load_keras_model(path: str, compile: bool = True, require_finite: bool = True, check_run: bool = True):
    """``keras.models.load_model`` in safe mode, with one-line errors and tfseg's checks.

    tfseg's custom objects are registered by ``import tfseg``, so no ``custom_objects``
    are needed.

    Args:
        path: a ``.keras`` file (local or a URL), or the RUN_DIR of a cross-validation
            (:func:`load_fold_ensemble`; it has no compile state).
        compile: restore the optimizer, loss and metrics too.
        require_finite: refuse a model with NaN/Inf weights (:func:`check_finite_weights`).
        check_run: when ``path`` lies in a run folder, refuse a model that is not the one its
            ``config.json`` describes (:func:`check_run_model`).

    Raises:
        TfsegError: the file is missing, not a Keras file, damaged or truncated, holds
            NaN/Inf weights (``require_finite``), or does not match its run's ``config.json``
            (``check_run``); the message names it.
    """
    import keras

    import tfseg  # noqa: F401 - registers tfseg's layers, losses and metrics

    path = fileio.fspath(path)
    from tfseg.training.cv import is_cv_run

    if is_cv_run(path):
        return load_fold_ensemble(path, require_finite=require_finite, check_run=check_run)
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
    if check_run:
        run_dir = fileio.dirname(fileio.abspath(path))
        from tfseg.outputs import is_run_folder

        if fileio.basename(path) == "model.keras" and is_run_folder(run_dir):
            from tfseg.training.run_folder import saved_config

            config = saved_config(run_dir)
            if config is not None:
                check_run_model(model, path, config, run_classes(run_dir))
    return model


def load_fold_ensemble(root: str, require_finite: bool = True, check_run: bool = True):
    """The ensemble of a cross-validated run's folds (``tfseg train --folds K``): one Keras model that
    averages the K folds' probabilities (:func:`tfseg.models.ensemble.average_models`).

    Each fold's ``model.keras`` is loaded and checked as :func:`load_keras_model` checks a run's model.

    Raises:
        TfsegError: not a cross-validated run, a fold not trained yet, or a fold's model that fails
            its checks (names the file).
    """
    from tfseg.models.ensemble import average_models
    from tfseg.training.cv import fold_runs
    from tfseg.training.run_folder import saved_config

    runs = fold_runs(root)
    # One input for every fold: their images must be normalised alike (tfseg.data.bands).
    norms = {json.dumps(config.normalization, sort_keys=True) for config in map(saved_config, runs)
             if config is not None and config.normalization not in (None, "auto")}
    if len(norms) > 1:
        raise TfsegError(f"model {root}: its folds normalised their images each with their own numbers (other "
                         "--normalization values, or per-band statistics of each fold's own split), so one input "
                         "cannot serve them all: use one fold (RUN_DIR/fold-I), or train the folds with one "
                         "--normalization")
    members = [load_keras_model(fileio.join(run_dir, "model.keras"), compile=False, require_finite=require_finite,
                                check_run=check_run) for run_dir in runs]
    try:
        return average_models(members)
    except ValueError as err:
        raise TfsegError(f"model {root}: its folds cannot be averaged ({err})") from None


def model_run_dir(path: str) -> str:
    """The run folder whose ``config.json``, ``splits.json`` and class weights go with the model at ``path``.

    A ``.keras`` file: its folder; a cross-validated run: its first fold (the folds share the settings
    and the test split).
    """
    from tfseg.training.cv import fold_runs, is_cv_run

    if is_cv_run(path):
        return fold_runs(path)[0]
    return fileio.dirname(fileio.abspath(path))


def weights_file_size(model) -> int:
    """A generous estimate of the bytes of ``model``'s ``.weights.h5`` or ``.keras`` file (optimizer included).

    The variables' bytes, plus about 2 KB of HDF5 bookkeeping per variable (1.0-1.1 KB measured on
    U-Nets with 80 and 180 variables) and 64 KB for the rest.
    """
    import numpy as np

    optimizer = getattr(model, "optimizer", None)
    variables = [*model.weights, *(getattr(optimizer, "variables", None) or [])]
    data = sum(int(np.prod(v.shape)) * np.dtype(getattr(v.dtype, "name", v.dtype)).itemsize for v in variables)
    return data + 2048 * len(variables) + 65536


def run_classes(run_dir: str) -> Optional[int]:
    """The class count a run trained with, when its folder says (``metrics.json``), else ``None``."""
    try:
        metrics = fileio.read_json(fileio.join(run_dir, "metrics.json"))
    except TfsegError:
        return None
    value = metrics.get("num_classes") if isinstance(metrics, dict) else None
    return int(value) if isinstance(value, int) and value >= 1 else None


def architecture(model) -> Dict[str, Any]:
    """What :func:`check_run_model` compares: ``{"name", "input": (H, W), "classes", "shapes"}``.

    ``shapes`` is the sorted list of the model's weight shapes: the layers' sizes, whatever
    their names (Keras numbers unnamed layers per process).
    """
    shapes = sorted(tuple(int(n) for n in weight.shape) for weight in model.weights)
    try:
        size = model_input_size(model)
    except TfsegError:
        size = None
    return {"name": model.name, "input": size, "classes": model_num_classes(model), "shapes": shapes}


@functools.lru_cache(maxsize=8)
def _configured_architecture(config_json: str, num_classes: int) -> Dict[str, Any]:
    from tfseg.config import TrainConfig
    from tfseg.models import accepted_options, build_model

    config = TrainConfig.from_dict(json.loads(config_json))
    options = config.model_options(accepted_options(config.model, **config.model_options()))
    if "encoder_weights" in options:
        options["encoder_weights"] = None  # the shapes only: nothing to download
    return architecture(build_model(config.model, config.model_input_size(), num_classes, **options))


def configured_architecture(config, num_classes: int) -> Dict[str, Any]:
    """:func:`architecture` of the model that ``config`` (a run's settings) builds with ``num_classes``.

    Built once per process for each architecture (where a run lives and how long it trains do not count).
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in ("out", "epochs", "tensorboard")}
    return _configured_architecture(json.dumps(settings, sort_keys=True), int(num_classes))


def describe_architecture(found: Dict[str, Any]) -> str:
    """``unet, input 64x64, 1 class`` (as the check's message names a model)."""
    size = "x".join(map(str, found["input"])) if found["input"] else "?"
    classes = found["classes"]
    return f"{found['name']}, input {size}, {classes} class{'' if classes == 1 else 'es'}"


def check_run_model(model, path: str, config, num_classes: Optional[int] = None) -> None:
    """Refuse a run folder's ``model.keras`` that is not the model its ``config.json`` describes.

    Compared: the architecture (the model's name and its layers' weight shapes, as
    ``config.json``'s settings build it), the input size and the class count. The class
    count is ``config.num_classes`` when it names one (2 or more); else the run's own
    (``num_classes``, from ``metrics.json``); when neither says, the model's count is taken.

    Raises:
        TfsegError: names both files and what each describes (exit code 2).
    """
    found = architecture(model)
    classes = config.num_classes if config.num_classes > 1 else (num_classes or found["classes"])
    expected = configured_architecture(config, classes)
    same = (found["name"], found["input"], found["classes"]) == (expected["name"], expected["input"],
                                                                   expected["classes"])
    if same and found["shapes"] == expected["shapes"]:
        return
    run_dir = fileio.dirname(fileio.abspath(path))
    detail = "" if not same else " (the same name, input and classes, but other layers: other depth or widths)"
    raise TfsegError(f"model {path}: is not the model of its run folder: {describe_architecture(found)}, "
                     f"while {fileio.join(run_dir, 'config.json')} describes {describe_architecture(expected)}"
                     f"{detail}; restore the run's model.keras or train again (--force-new)")


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

    A cross-validated run (``tfseg train --folds K``): ``(RUN_DIR, its first fold's TrainConfig)``;
    :func:`load_keras_model` of that path is the ensemble of the folds.

    Raises:
        TfsegError: ``path`` is neither (names it).
    """
    from tfseg.training.cv import is_cv_run
    from tfseg.training.run_folder import saved_config

    path = fileio.fspath(path)
    if is_cv_run(path):  # the ensemble of its folds: the first fold's settings (the folds share them)
        return path, saved_config(model_run_dir(path))
    if fileio.isdir(path):
        path = fileio.join(path, "model.keras")
    if not fileio.isfile(path):
        raise TfsegError(f"model {path}: no such file (expected a model.keras file or a run folder)")
    if not path.endswith(".keras"):
        raise TfsegError(f"model {path}: not a .keras file")
    return path, saved_config(fileio.dirname(fileio.abspath(path)))


def model_channels(model) -> int:
    """The bands of the model's image input (3: RGB; data images: their own, :mod:`tfseg.data.bands`)."""
    return int(model.inputs[0].shape[-1]) if getattr(model, "inputs", None) else 3


def model_input_size(model) -> Tuple[int, int]:
    """``(height, width)`` the model takes.

    Raises:
        TfsegError: not one image input of a fixed size ``[batch, H, W, C]`` (C: 3 for RGB, or the
            bands of data images).
    """
    if len(model.inputs) != 1:
        raise TfsegError(f"model {model.name!r}: needs a single image input, found {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] is None or shape[1] is None or shape[2] is None:
        raise TfsegError(
            f"model {model.name!r}: input shape {shape} is not [batch, height, width, channels] "
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
