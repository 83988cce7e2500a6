"""Data: SOURCE string -> ``tf.data`` pipeline of (images, masks).

The modules follow the data flow::

    spec.py       the SOURCE grammar (``synthetic:N``, ``ph2:PATH``, ...)
    sources.py    Source base class (declared settings), ``register_source``, ``open_source``
    kinds/        one module per SOURCE kind (synthetic, folder, mads, ph2, tfrecord, tfds)
    filesource.py the file kinds' list -> check -> decode (filecheck, pixels, colormap)
    synthetic.py  built-in procedural dermoscopy-like lesions (the generators)
    splits.py     deterministic, group-aware train/val/test split
    augment.py    joint image + mask augmentation (graph ops)
    pipeline.py   ``load_dataset``: resize, cache, shuffle, augment, batch

Names load lazily, so ``import tfseg.data.spec`` (the CLI's parser) does not
import TensorFlow.

Example:
    >>> from tfseg.data import load_dataset
    >>> ds = load_dataset("synthetic:20", image_size=32, batch_size=4)
"""

import importlib

_EXPORTS = {
    "load_dataset": "pipeline",
    "dataset_summary": "pipeline",
    "resize_example": "pipeline",
    "scale_example": "pipeline",
    "open_source": "sources",
    "register_source": "sources",
    "Source": "sources",
    "parse_source": "spec",
    "SourceSpec": "spec",
    "DEFAULT_SYNTHETIC_COUNT": "kinds.synthetic",
    "split_ids": "splits",
    "assign_splits": "splits",
    "AugmentConfig": "augment",
    "augment_example": "augment",
    "generate_sample": "synthetic",
    "SyntheticSource": "kinds.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfseg.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(__all__) | set(globals()))
