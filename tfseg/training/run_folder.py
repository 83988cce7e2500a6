"""The run folder (RUN_DIR) of a training run: its files, and what a rerun does with them.

RUN_DIR (``config.out``, default ``runs/<model>-<data kind>``, e.g. ``runs/unet-synthetic``)::

    config.json      every setting (``TrainConfig.to_json()``), enough to reproduce the run
    splits.json      the sample ids of train/val/test, written when the run starts; a resumed
                     run and ``evaluate`` compare their split with it (never rewrite it)
    class_weights.json  with ``--class-weights``: the weights the loss used, the rule and the
                     training split's pixels per class (:func:`tfseg.balance.resolve_class_weights`)
    model.keras      best weights by validation Dice (written atomically)
    history.csv      one row per epoch, numbered from 1 (appended on resume)
    metrics.json     final scores and timings (see :func:`tfseg.training.train`)
    curves.png       loss and Dice per epoch
    predictions.png  test images with true and predicted outlines
    saved_model/1/   the TF Serving export (:func:`tfseg.export.export_saved_model`)
    backup/          resume state: weights + optimizer of the last epoch, callback state (the weights
                     are deleted when the run completes, unless --keep-backup)

RUN_DIR may be a local folder or a URL (``gs://bucket/runs/x``): every file goes
through :mod:`tfseg.fileio`.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any, Dict, List, Optional, Tuple

from tfseg import fileio
from tfseg.config import SPLITS, TrainConfig
from tfseg.errors import ConfigError, DataError, TfsegError

# Settings a resumed run may change: where it lives, how long it trains, whether it logs to TensorBoard.
RESUMABLE_CHANGES = ("out", "epochs", "tensorboard", "keep_backup")
BACKUP_DIR = "backup"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
SPLITS_FILE = "splits.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CLASS_WEIGHTS_FILE = "class_weights.json"  # a run trained with --class-weights: the weights it used


def default_run_dir(config: TrainConfig) -> str:
    """``runs/<model>-<data kind>``: the same command maps to the same folder, so it resumes."""
    from tfseg.data.spec import parse_source

    return fileio.join("runs", f"{config.model}-{parse_source(config.data).kind}")


def run_dir_of(config: TrainConfig) -> str:
    return config.out or default_run_dir(config)


def describe_diff(diff: Dict[str, Any]) -> str:
    """``image_size 64 -> 32, loss 'dice' -> 'bce'`` (run folder value -> requested value)."""
    return ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in sorted(diff.items()))


def saved_config(run_dir: str) -> Optional[TrainConfig]:
    """The :class:`TrainConfig` stored in ``run_dir/config.json``, if any.

    Raises:
        ConfigError: the file is damaged or not a tfseg configuration (names the file).
    """
    path = fileio.join(run_dir, CONFIG_FILE)
    values = fileio.read_json(path)
    if values is None:
        return None
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, AttributeError, TfsegError) as err:
        raise ConfigError(f"{path}: not a valid tfseg configuration ({err})") from None


def aside_name(run_dir: str) -> str:
    """``RUN_DIR.old-<timestamp>`` (``-2``, ``-3``... when taken): where ``--force-new`` moves a run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = fileio.fspath(run_dir).rstrip("/\\")
    target = f"{base}.old-{stamp}"
    suffix = 1
    while fileio.exists(target):
        suffix += 1
        target = f"{base}.old-{stamp}-{suffix}"
    return target


def training_state(run_dir: str) -> Dict[str, Any]:
    """The resume state saved at the last completed epoch (``{}`` before the first)."""
    return fileio.read_json(fileio.join(run_dir, BACKUP_DIR, STATE_FILE)) or {}


def is_complete(run_dir: str, config: TrainConfig) -> bool:
    """Whether ``run_dir`` finished ``config.epochs`` epochs (or stopped early) and wrote metrics."""
    if not fileio.exists(fileio.join(run_dir, METRICS_FILE)):
        return False
    state = training_state(run_dir)
    return bool(state.get("stopped_early")) or int(state.get("epoch", 0)) >= config.epochs


def run_status(config: TrainConfig, force_new: bool = False) -> str:
    """What to do with RUN_DIR, without touching it: ``"new"``, ``"resume"``, ``"complete"`` or ``"replace"``.

    Raises:
        ConfigError: the folder holds a run with other settings (lists them; epochs
            and out may differ), or exists and is not a tfseg run folder.
    """
    from tfseg import outputs

    run_dir = run_dir_of(config)
    if not (fileio.isdir(run_dir) and fileio.listdir(run_dir)):
        if fileio.exists(run_dir) and not fileio.isdir(run_dir):
            raise ConfigError(f"out {run_dir}: exists and is not a folder")
        outputs.check_output_folder(run_dir)
        outputs.refuse_run_folder(run_dir)  # e.g. another run's backup/ or saved_model/
        return "new"
    if force_new and fileio.exists(fileio.join(run_dir, CONFIG_FILE)):
        # moving the folder aside would take the data with it
        from tfseg.data.spec import parse_source

        data_path = parse_source(config.data).path
        if data_path and outputs.is_within(data_path, run_dir):
            raise ConfigError(f"out {run_dir}: holds the input data {data_path}; --force-new would move it "
                              "aside with the run (choose another --out)")
        return "replace"
    old = saved_config(run_dir)
    if old is None:
        raise ConfigError(f"out {run_dir}: exists and is not a tfseg run folder (no config.json); "
                          "choose another folder")
    diff = old.diff(config, ignore=RESUMABLE_CHANGES)
    if diff:
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({describe_diff(diff)}); rerun with the same "
            "settings to resume it, or pass force_new (--force-new) to start over, or choose another folder"
        )
    if is_complete(run_dir, config):
        return "complete"
    if fileio.exists(fileio.join(run_dir, METRICS_FILE)) and training_state(run_dir).get("weights", "") is None:
        raise ConfigError(f"{run_dir}: the run completed {training_state(run_dir).get('epoch')} epochs and its "
                          "backup weights were removed then; more epochs continue only a run trained with "
                          "keep_backup (--keep-backup); pass force_new (--force-new) to start over")
    return "resume"


def stored_class_weights(run_dir: str) -> Optional[List[float]]:
    """The class weights a run's loss used (``class_weights.json``), or ``None`` (trained without)."""
    path = fileio.join(run_dir, CLASS_WEIGHTS_FILE)
    return fileio.read_json(path)["weights"] if fileio.exists(path) else None


def start_run_dir(config: TrainConfig, status: str, log=print) -> None:
    """Create RUN_DIR and write ``config.json``; ``"replace"`` (``--force-new``) moves an old one aside.

    ``"replace"``: a new RUN_DIR holding ``config.json`` takes the old one's place, which moves to
    ``RUN_DIR.old-<time>`` (:func:`aside_name`) by :func:`tfseg.fileio.replacing_folder`, the one rule
    for replacing a folder (``config.json`` is its marker). A resumed run first deletes the hidden
    temporaries a killed process left in RUN_DIR, ``backup/`` and ``saved_model/``
    (:func:`tfseg.fileio.remove_stale_temporaries`), checks that its ``model.keras`` is the model
    of its ``config.json`` (:func:`check_run_model_file`), and deletes backup weights that
    ``state.json`` no longer names (:func:`remove_superseded_weights`).

    Raises:
        TfsegError: a resumed run's ``model.keras`` is not its configuration's model.
    """
    run_dir = run_dir_of(config)
    if status == "replace":
        aside = aside_name(run_dir)
        with fileio.replacing_folder(run_dir, CONFIG_FILE, keep_old=aside) as staging:
            fileio.write_text_atomic(fileio.join(staging, CONFIG_FILE), config.to_json())
        log(f"force_new: moved the previous run to {aside}")
        return
    for folder in (run_dir, fileio.join(run_dir, BACKUP_DIR), fileio.join(run_dir, "saved_model")):
        fileio.remove_stale_temporaries(folder)
    if status == "resume":
        check_run_model_file(run_dir)
        remove_superseded_weights(run_dir)  # a kill after state.json moved on but before they were deleted
    fileio.makedirs(run_dir)
    fileio.write_text_atomic(fileio.join(run_dir, CONFIG_FILE), config.to_json())


def check_run_model_file(run_dir: str) -> None:
    """Refuse to resume a run whose ``model.keras`` was replaced by another model (:func:`tfseg.saving.check_run_model`).

    Raises:
        TfsegError: names ``model.keras`` and ``config.json`` and what each describes.
    """
    path = fileio.join(run_dir, MODEL_FILE)
    if fileio.exists(path):
        from tfseg.saving import load_keras_model

        load_keras_model(path, compile=False)


def remove_superseded_weights(run_dir: str) -> List[str]:
    """Delete the ``backup/*.weights.h5`` files that ``state.json`` does not name; return them.

    Nothing is deleted unless the file ``state.json`` names exists (a damaged backup is left
    as it is, for ``--force-new`` to move aside).
    """
    backup_dir = fileio.join(run_dir, BACKUP_DIR)
    named = training_state(run_dir).get("weights")
    if not named or not fileio.exists(fileio.join(backup_dir, str(named))):
        return []
    removed = []
    for name in fileio.listdir(backup_dir):
        if name.endswith(".weights.h5") and name != named and not fileio.is_temporary(name):
            fileio.remove(fileio.join(backup_dir, name))
            removed.append(name)
    return removed


def remove_backup_weights(run_dir: str) -> List[str]:
    """A completed run's ``backup/*.weights.h5`` (last epoch's weights and optimizer state), deleted;
    ``state.json`` stays, naming no weights (what says the run is complete, how far and how long it ran).

    ``state.json`` is rewritten first, so it never names a deleted file.
    """
    backup_dir = fileio.join(run_dir, BACKUP_DIR)
    state = training_state(run_dir)
    if not state:
        return []
    fileio.write_json_atomic(fileio.join(backup_dir, STATE_FILE), {**state, "weights": None})
    removed = []
    for name in fileio.listdir(backup_dir):
        if name.endswith(".weights.h5") and not fileio.is_temporary(name):
            fileio.remove(fileio.join(backup_dir, name))
            removed.append(name)
    return removed


def truncate_history(path: str, epochs: int) -> None:
    """Keep the rows of epochs ``1..epochs`` in ``history.csv`` (an interrupted epoch may have logged).

    ``history.csv`` numbers epochs from 1, as the log lines, ``best_epoch`` and the plots do.
    A history written by tfseg 0.1.0 counts from 0 (Keras' ``CSVLogger``): it is renumbered
    here, so the rows a resumed run appends continue it.
    """
    if not fileio.exists(path):
        return
    if epochs <= 0:
        fileio.remove(path)
        return
    rows = list(csv.reader(io.StringIO(fileio.read_text(path))))
    if not rows:
        return
    header, body = rows[0], [row for row in rows[1:] if row]
    try:
        numbers = [int(float(row[0])) for row in body]
    except ValueError:
        raise TfsegError(f"{path}: damaged history file (an epoch number does not read as a number); "
                         "rerun with --force-new to start over") from None
    shift = 1 if numbers and numbers[0] == 0 else 0  # a 0-based history (tfseg 0.1.0)
    kept = [[str(number + shift), *row[1:]] for number, row in zip(numbers, body) if number + shift <= epochs]
    text = io.StringIO()
    csv.writer(text).writerows([header, *kept])
    fileio.write_text_atomic(path, text.getvalue())


# At most this many moved ids are listed in the error (then a count of the rest).
LISTED_SPLIT_CHANGES = 20


def split_changes(stored: Dict[str, Any], ids: Dict[str, Any]) -> List[Tuple[str, str]]:
    """``[(sample id, what changed), ...]`` between a stored ``splits.json`` and freshly computed ids.

    Every id whose split differs is listed: moved (``"was test, now train"``), gone from the
    data (``"was val, not in the data now"``) or new (``"new in the data, now train"``); sorted by id.
    """
    before = {sample_id: split for split in SPLITS for sample_id in stored.get(split, ())}
    after = {sample_id: split for split in SPLITS for sample_id in ids.get(split, ())}
    changes = []
    for sample_id in sorted(set(before) | set(after)):
        old, new = before.get(sample_id), after.get(sample_id)
        if old == new:
            continue
        if old is None:
            changes.append((sample_id, f"new in the data, now {new}"))
        elif new is None:
            changes.append((sample_id, f"was {old}, not in the data now"))
        else:
            changes.append((sample_id, f"was {old}, now {new}"))
    return changes


def check_stored_splits(run_dir: str, ids: Dict[str, Any]) -> bool:
    """Compare ``ids`` with ``run_dir/splits.json`` (never rewriting it); ``False`` when there is none.

    A run's splits are fixed when it starts: a resumed run or an evaluation that computed
    other splits (the data or the split rule changed) would mix test images into training.

    Raises:
        DataError: the splits differ; lists the ids that moved (exit code 2).
        TfsegError: ``splits.json`` is damaged.
    """
    path = fileio.join(run_dir, SPLITS_FILE)
    stored = fileio.read_json(path)
    if stored is None:
        return False
    if not isinstance(stored, dict) or not all(isinstance(stored.get(s), list) for s in SPLITS):
        raise TfsegError(f"{path}: damaged (expected lists of ids for {', '.join(SPLITS)})")
    changes = split_changes(stored, ids)
    if changes:
        listed = changes[:LISTED_SPLIT_CHANGES]
        if len(changes) > len(listed):
            listed.append(("...", f"and {len(changes) - len(listed)} more"))
        raise DataError(
            f"{path}: {len(changes)} sample(s) are not in the split this run used (the data or the split "
            "rule changed); the stored split is kept. Train into a new folder (--out, or --force-new) "
            "or restore the data",
            listed,
        )
    return True
