"""tfseg: semantic segmentation with Keras 3 and tf.data.

The data flow is the module list::

    tfseg.data      SOURCE string -> tf.data pipeline (decode, resize, augment, split)
    tfseg.models    functional U-Net / SegNet / ... behind ``build_model``
    tfseg.layers    small custom layers (keras.ops only)
    tfseg.losses    Dice-based losses (keras.ops only)
    tfseg.metrics   Dice / IoU metrics (keras.ops only)
    tfseg.training  ``model.fit`` run with a run folder
    tfseg.segment   one path from an image to its mask (predict, evaluate, serving)
    tfseg.export    SavedModel for TF Serving (TensorFlow)
    tfseg.inference predict on image files
    tfseg.viz       plots and overlays
    tfseg.cli       the ``tfseg`` command

``import tfseg`` registers tfseg's custom Keras objects (it imports the
Keras-only modules ``layers``, ``losses``, ``metrics`` and ``models``), so that
``keras.models.load_model("model.keras")`` works with ``safe_mode=True`` and no
``custom_objects``; Keras finds registered objects only once their module has
been imported. (The ``tfseg`` command defers this until its arguments are
parsed, so that ``tfseg --help`` answers without loading TensorFlow.) The TensorFlow-only parts (``data``, ``training``, ``segment``,
``export``, ``inference``) load on first attribute access, so under the JAX or PyTorch
backend ``import tfseg`` never imports TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "config",
    "data",
    "errors",
    "export",
    "inference",
    "layers",
    "losses",
    "metrics",
    "models",
    "segment",
    "training",
    "viz",
    "cli",
)

__all__ = ["__version__", "load_model", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfseg' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


def load_model(path, compile=True):
    """The model at ``path``, loaded and checked as the CLI's ``--model`` loads it.

    ``path``: a ``.keras`` file, a run folder, a SavedModel (version or base folder) or a
    ``.tflite`` file. Returns a ``keras.Model`` for a ``.keras`` file or a run folder (its
    weights are finite, and a run's ``model.keras`` is the model of its ``config.json``); for
    a SavedModel or a ``.tflite``, the :class:`tfseg.inference.Predictor` ``tfseg predict``
    uses. Raises :class:`tfseg.errors.TfsegError` naming the file otherwise. See
    :func:`tfseg.saving.load_model`.

    Example:
        >>> model = tfseg.load_model("runs/unet-synthetic")              # doctest: +SKIP
        >>> predictor = tfseg.load_model("runs/unet-synthetic/saved_model")  # doctest: +SKIP
    """
    from tfseg.saving import load_model as load_checked

    return load_checked(path, compile=compile)


def _register_keras_objects():
    # Importing these runs their @register_keras_serializable decorators. (Only the ``tfseg``
    # command silences TensorFlow's start-up lines; importing the library changes no process state.)
    from tfseg import layers, losses, metrics, models  # noqa: F401



def _launched_as_command() -> bool:
    from tfseg._quiet import running_as_cli

    return running_as_cli()


if not _launched_as_command():
    _register_keras_objects()
