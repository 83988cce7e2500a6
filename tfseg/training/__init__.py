"""Training: one ``model.fit`` run that leaves a complete, resumable run folder.

The package's modules are its concerns::

    run_folder   RUN_DIR: its files, and what rerunning a command does with them
    callbacks    best checkpoint, NaN guard, throughput, per-epoch resume backup
    fit          model assembly (build + compile), encoder-freeze phases, the fit loop
    run          train(config): data -> model -> fit -> scores, figures, SavedModel
    cv           train(config) with --folds K: one run folder per fold, cv.json

Example:
    >>> from tfseg.config import TrainConfig
    >>> from tfseg.training import train
    >>> metrics = train(TrainConfig(data="synthetic:24", image_size=32, base_filters=4,
    ...                             depth=2, epochs=1, out="/tmp/tiny-run"), verbose=0)  # doctest: +SKIP
"""

from tfseg.evaluation import evaluate
from tfseg.training.callbacks import BestCheckpoint, NaNGuard, RunBackup, Throughput
from tfseg.training.fit import build_compiled_model, compile_model, make_callbacks, remaining_phases, training_phases
from tfseg.training.run import load_split, split_ids, train
from tfseg.training.run_folder import default_run_dir, run_dir_of, run_status, training_state

__all__ = [
    "BestCheckpoint",
    "NaNGuard",
    "RunBackup",
    "Throughput",
    "build_compiled_model",
    "compile_model",
    "default_run_dir",
    "evaluate",
    "load_split",
    "make_callbacks",
    "remaining_phases",
    "run_dir_of",
    "run_status",
    "split_ids",
    "train",
    "training_phases",
    "training_state",
]
