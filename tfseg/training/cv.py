"""Cross-validation: ``tfseg train --folds K`` trains one complete run folder per fold and summarises them.

The test split stays the one of the run's seed and fractions; the other samples are cut into K
folds by the splits' own rule (:func:`tfseg.data.splits.assign_folds`: the same hash positions,
a group never in two folds). Run ``i`` validates on fold ``i`` and trains on the others; it is
an ordinary run folder, ``RUN_DIR/fold-i`` (resumable, evaluable, exportable), whose
``config.json`` holds ``folds`` and ``fold``. ``--fold i`` trains that fold only (one fold per
machine or Colab runtime); every call rewrites ``RUN_DIR/cv.json`` from the folds complete so far:
each fold's validation (and test) Dice and IoU, their mean and standard deviation.

Example:
    >>> from tfseg.config import TrainConfig
    >>> summary = train_folds(TrainConfig(data="synthetic:40", image_size=32, base_filters=4, depth=2,
    ...                                   epochs=1, folds=3, out="/tmp/cv-run"), verbose=0)  # doctest: +SKIP
    >>> summary["mean"]["val_dice"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import numpy as np

from tfseg import fileio
from tfseg.config import TrainConfig
from tfseg.errors import TfsegError

CV_FILE = "cv.json"
#: The scores of each fold that ``cv.json`` summarises.
SCORES = ("val_dice", "val_iou", "test_dice", "test_iou")


def fold_dir(root: str, fold: int) -> str:
    """``RUN_DIR/fold-<fold>``."""
    return fileio.join(root, f"fold-{fold}")


def fold_config(config: TrainConfig, fold: int) -> TrainConfig:
    """The configuration of fold ``fold``'s own run folder."""
    from tfseg.training.run_folder import run_dir_of

    return dataclasses.replace(config, fold=fold, out=fold_dir(run_dir_of(config), fold))


def train_folds(config: TrainConfig, verbose: int = 1, force_new: bool = False) -> Dict[str, Any]:
    """Train fold ``config.fold`` (or every fold) of a ``config.folds``-fold cross-validation, then write ``cv.json``.

    Each fold is :func:`tfseg.training.run.train_run` on :func:`fold_config` (so rerunning resumes
    or finds it complete, as any run).

    Returns:
        :func:`summarize_folds`'s summary (also in ``RUN_DIR/cv.json``).

    Raises:
        TfsegError: RUN_DIR is a single run's folder, or holds a ``cv.json`` tfseg did not write.
    """
    from tfseg.training.run import train_run
    from tfseg.training.run_folder import CONFIG_FILE, run_dir_of

    root = run_dir_of(config)
    if fileio.exists(fileio.join(root, CONFIG_FILE)):
        raise TfsegError(f"out {root}: holds a single run (config.json); choose another folder for "
                         f"--folds {config.folds}")
    _check_cv_target(root)
    for fold in [config.fold] if config.fold is not None else range(1, config.folds + 1):
        if verbose:
            print(f"fold {fold} of {config.folds}: {fold_dir(root, fold)}", flush=True)
        train_run(fold_config(config, fold), verbose, force_new)
    summary = summarize_folds(root, config.folds)
    _check_cv_target(root)
    from tfseg import outputs

    outputs.claim(root, [CV_FILE], "tfseg train")
    fileio.write_json_atomic(fileio.join(root, CV_FILE), summary)
    if verbose:
        print(format_folds(summary), flush=True)
    return summary


def _check_cv_target(root: str) -> None:
    from tfseg import outputs

    outputs.check_output_folder(root)
    outputs.check_targets(root, [CV_FILE], overwrite=True)  # ours is rewritten; anyone else's is refused


def summarize_folds(root: str, folds: int) -> Dict[str, Any]:
    """``{"folds", "complete", "missing", "per_fold": [...], "mean": {...}, "std": {...}}`` from the
    folds' ``metrics.json`` (the complete ones; ``std`` is the sample standard deviation, ``None``
    below two folds)."""
    rows: List[Dict[str, Any]] = []
    missing = []
    for fold in range(1, folds + 1):
        metrics = fileio.read_json(fileio.join(fold_dir(root, fold), "metrics.json"))
        if metrics is None:
            missing.append(fold)
            continue
        rows.append({"fold": fold, "run_dir": fold_dir(root, fold),
                     "val_dice": metrics["val"]["dice"], "val_iou": metrics["val"]["iou"],
                     "test_dice": metrics["test"]["dice"], "test_iou": metrics["test"]["iou"],
                     "val_images": metrics["split_sizes"]["val"], "train_images": metrics["split_sizes"]["train"],
                     "test_images": metrics["split_sizes"]["test"]})
    mean: Dict[str, Optional[float]] = {}
    std: Dict[str, Optional[float]] = {}
    for key in SCORES:
        values = np.array([row[key] for row in rows], np.float64)
        mean[key] = float(values.mean()) if values.size else None
        std[key] = float(values.std(ddof=1)) if values.size > 1 else None
    return {"folds": folds, "complete": [row["fold"] for row in rows], "missing": missing, "per_fold": rows,
            "mean": mean, "std": std}


def format_folds(summary: Dict[str, Any]) -> str:
    """The printed table: one line per complete fold, then the mean and the standard deviation."""
    def number(value):
        return "       -" if value is None else f"{value:8.4f}"

    lines = ["fold  val dice   val iou  test dice  test iou  val images"]
    for row in summary["per_fold"]:
        lines.append(f"{row['fold']:>4}  {row['val_dice']:8.4f}  {row['val_iou']:8.4f}  {row['test_dice']:9.4f}  "
                     f"{row['test_iou']:8.4f}  {row['val_images']:>10}")
    for name in ("mean", "std"):
        values = summary[name]
        lines.append(f"{name:>4}  {number(values['val_dice'])}  {number(values['val_iou'])}  "
                     f" {number(values['test_dice'])}  {number(values['test_iou'])}")
    if summary["missing"]:
        lines.append(f"folds not complete yet: {', '.join(map(str, summary['missing']))} "
                     f"(train them with --fold I; the summary covers {len(summary['complete'])} of {summary['folds']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the fold ensemble
def is_cv_run(path: str) -> bool:
    """Whether ``path`` is the folder of a cross-validated run (``RUN_DIR`` of ``tfseg train --folds K``).

    It holds ``cv.json`` or a ``fold-1`` run folder, and no ``config.json`` of its own.
    """
    from tfseg.training.run_folder import CONFIG_FILE

    path = fileio.fspath(path)
    if not fileio.isdir(path) or fileio.exists(fileio.join(path, CONFIG_FILE)):
        return False
    return (fileio.exists(fileio.join(path, CV_FILE))
            or fileio.exists(fileio.join(fold_dir(path, 1), CONFIG_FILE)))


def fold_runs(root: str) -> List[str]:
    """The run folders ``root/fold-1 ... root/fold-K`` of a cross-validated run, every fold complete.

    K is the ``folds`` of ``fold-1``'s ``config.json``; a fold is complete when its ``metrics.json``
    exists (what ``cv.json`` counts).

    Raises:
        TfsegError: ``root`` is not a cross-validated run, or some folds are not trained yet (names
            them and the command that trains them).
    """
    from tfseg.training.run_folder import saved_config

    root = fileio.fspath(root).rstrip("/") or "/"
    first = saved_config(fold_dir(root, 1)) if is_cv_run(root) else None
    if first is None or not first.folds:
        raise TfsegError(f"model {root}: not a cross-validated run (no fold-1/config.json of tfseg train --folds K)")
    missing = [fold for fold in range(1, first.folds + 1)
               if not fileio.exists(fileio.join(fold_dir(root, fold), "metrics.json"))]
    if missing:
        done = [fold for fold in range(1, first.folds + 1) if fold not in missing]
        other = f", or use a complete fold's run folder, e.g. {fold_dir(root, done[0])}" if done else ""
        raise TfsegError(f"model {root}: fold(s) {', '.join(map(str, missing))} of its {first.folds}-fold "
                         f"cross-validation are not trained yet; the ensemble averages every fold (train them "
                         f"with tfseg train --folds {first.folds} --out {root} and the run's other options{other})")
    return [fold_dir(root, fold) for fold in range(1, first.folds + 1)]
