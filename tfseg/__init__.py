"""tfseg: semantic segmentation with Keras 3 and tf.data.

The data flow is the module list::

    tfseg.data      SOURCE string -> tf.data pipeline (decode, resize, augment, split)
    tfseg.models    functional U-Net / SegNet / ... behind ``build_model``
    tfseg.layers    small custom layers (keras.ops only)
    tfseg.losses    Dice-based losses (keras.ops only)
    tfseg.metrics   Dice / IoU metrics (keras.ops only)
    tfseg.training  ``model.fit`` run with a run folder
    tfseg.export    SavedModel for TF Serving (TensorFlow)
    tfseg.inference predict on image files
    tfseg.viz       plots and overlays
    tfseg.cli       the ``tfseg`` command

``import tfseg`` is cheap: submodules load on first attribute access, so the
Keras-only parts (models, layers, losses, metrics) never pull in TensorFlow.
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
    "training",
    "viz",
    "cli",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfseg' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
