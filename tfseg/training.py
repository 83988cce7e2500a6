"""``train(config)``: one ``model.fit`` run that leaves a complete run folder.

RUN_DIR (``config.out``, default ``runs/<model>-<data kind>``, e.g. ``runs/unet-synthetic``)::

    config.json      every setting (``TrainConfig.to_json()``), enough to reproduce the run
    splits.json      the sample ids of train/val/test
    model.keras      best weights by validation Dice (written atomically)
    history.csv      one row per epoch (appended on resume)
    metrics.json     {"val": {...}, "test": {"dice", "iou", "loss", "num_images"},
                      "train_images_per_second", "seconds", "precision", "strategy", "epochs_completed", ...}
    curves.png       loss and Dice per epoch
    predictions.png  test images with true and predicted outlines
    saved_model/1/   the TF Serving export (:func:`tfseg.export.export_saved_model`)
    backup/          resume state: weights + optimizer of the last epoch, callback state

Running the same command again on the folder:

- interrupted (crash, Ctrl-C, ``kill -9``): resumes after the last completed epoch with
  the model, optimizer (learning rate included), history, best checkpoint and the
  early-stopping / learning-rate-plateau counters as they were;
- complete: says so and returns the existing ``metrics.json`` (more ``--epochs`` than
  were run, on a run that did not stop early, trains the extra epochs);
- a different configuration: refused with the list of what differs, unless
  ``force_new=True`` (``--force-new``), which moves the old folder aside to
  ``RUN_DIR.old-<timestamp>`` and starts over.

Example:
    >>> from tfseg.config import TrainConfig
    >>> from tfseg.training import train
    >>> metrics = train(TrainConfig(data="synthetic:24", image_size=32, base_filters=4,
    ...                             depth=2, epochs=1, out="/tmp/tiny-run"), verbose=0)
    >>> sorted(metrics["test"])
    ['dice', 'iou', 'loss', 'num_images']
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence

import keras
import numpy as np

from tfseg.config import SPLITS, TrainConfig
from tfseg.errors import ConfigError, TfsegError

MONITOR = "val_dice"
# Settings a resumed run may change: where it lives, how long it trains, whether it logs to TensorBoard.
RESUMABLE_CHANGES = ("out", "epochs", "tensorboard")
BACKUP_DIR = "backup"
STATE_FILE = "state.json"
NAN_ADVICE = (
    "the loss became NaN/Inf: the learning rate is likely too high, or float16 overflowed; "
    "try --precision float32 or a lower --learning-rate (with --force-new to start over)"
)


# --------------------------------------------------------------------------- files
def temp_path(path: str) -> str:
    """A hidden name next to ``path`` with the same extension(s) (Keras and matplotlib read the format from it)."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, dot, ext = name.partition(".")
    return os.path.join(folder, f".{stem}.tmp-{os.getpid()}{dot}{ext}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is untouched, so
    readers only ever see a complete file.
    """
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """The JSON content of ``path``, or ``None`` when it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------- run folder
def default_run_dir(config: TrainConfig) -> str:
    """``runs/<model>-<data kind>``: the same command maps to the same folder, so it resumes."""
    from tfseg.data.spec import parse_source

    return os.path.join("runs", f"{config.model}-{parse_source(config.data).kind}")


def run_dir_of(config: TrainConfig) -> str:
    return config.out or default_run_dir(config)


def describe_diff(diff: Dict[str, Any]) -> str:
    """``image_size 64 -> 32, loss 'dice' -> 'bce'`` (run folder value -> requested value)."""
    return ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in sorted(diff.items()))


def saved_config(run_dir: str) -> Optional[TrainConfig]:
    """The :class:`TrainConfig` stored in ``run_dir/config.json``, if any."""
    values = read_json(os.path.join(run_dir, "config.json"))
    if values is None:
        return None
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, TfsegError) as err:
        raise ConfigError(f"{run_dir}/config.json: not a valid tfseg configuration ({err})") from None


def move_aside(run_dir: str) -> str:
    """Rename ``run_dir`` to ``run_dir.old-<timestamp>``; return the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = f"{run_dir.rstrip(os.sep)}.old-{stamp}"
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = f"{run_dir.rstrip(os.sep)}.old-{stamp}-{suffix}"
    os.replace(run_dir, target)
    return target


def training_state(run_dir: str) -> Dict[str, Any]:
    """The resume state saved at the last completed epoch (``{}`` before the first)."""
    return read_json(os.path.join(run_dir, BACKUP_DIR, STATE_FILE)) or {}


def is_complete(run_dir: str, config: TrainConfig) -> bool:
    """Whether ``run_dir`` finished ``config.epochs`` epochs (or stopped early) and wrote metrics."""
    if not os.path.exists(os.path.join(run_dir, "metrics.json")):
        return False
    state = training_state(run_dir)
    return bool(state.get("stopped_early")) or int(state.get("epoch", 0)) >= config.epochs


def run_status(config: TrainConfig, force_new: bool = False) -> str:
    """What to do with RUN_DIR, without touching it: ``"new"``, ``"resume"``, ``"complete"`` or ``"replace"``.

    Raises:
        ConfigError: the folder holds a run with other settings (lists them; epochs
            and out may differ), or exists and is not a tfseg run folder.
    """
    run_dir = run_dir_of(config)
    if not (os.path.isdir(run_dir) and os.listdir(run_dir)):
        if os.path.exists(run_dir) and not os.path.isdir(run_dir):
            raise ConfigError(f"--out {run_dir}: exists and is not a folder")
        return "new"
    old = saved_config(run_dir)
    if old is None:
        raise ConfigError(f"--out {run_dir}: exists and is not a tfseg run folder (no config.json); "
                          "choose another --out")
    if force_new:
        return "replace"
    diff = old.diff(config, ignore=RESUMABLE_CHANGES)
    if diff:
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({describe_diff(diff)}); rerun with the same "
            "settings to resume it, or pass --force-new to start over, or choose another --out"
        )
    return "complete" if is_complete(run_dir, config) else "resume"


def start_run_dir(config: TrainConfig, status: str, log=print) -> None:
    """Create RUN_DIR (moving an old one aside for ``"replace"``) and write ``config.json``."""
    run_dir = run_dir_of(config)
    if status == "replace":
        log(f"--force-new: moved the previous run to {move_aside(run_dir)}")
    os.makedirs(run_dir, exist_ok=True)
    write_text_atomic(os.path.join(run_dir, "config.json"), config.to_json())


def truncate_history(path: str, epochs: int) -> None:
    """Keep the rows of epochs ``< epochs`` in ``history.csv`` (an interrupted epoch may have logged)."""
    if not os.path.exists(path):
        return
    if epochs <= 0:
        os.remove(path)
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(float(row[0])) < epochs]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *kept])


# --------------------------------------------------------------------------- callbacks
class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` that writes a temporary ``.keras`` file and renames it.

    A kill during saving leaves the previous best ``model.keras`` intact.
    """

    def _save_model(self, epoch, batch, logs):
        final, tmp = self.filepath, temp_path(self.filepath)
        self.filepath = tmp
        try:
            super()._save_model(epoch, batch, logs)
            if os.path.exists(tmp):  # absent when the epoch was not an improvement
                os.replace(tmp, final)
        finally:
            self.filepath = final
            if os.path.exists(tmp):
                os.remove(tmp)


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that remembers it fired, so :func:`train` can explain why."""

    def __init__(self):
        super().__init__()
        self.fired = False

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and _not_finite((logs or {}).get("loss")):
            self.fired = True


def _not_finite(value) -> bool:
    return value is not None and not math.isfinite(float(value))


class Throughput(keras.callbacks.Callback):
    """Training images per second, timed from ``on_epoch_begin`` to the last training batch.

    The first epoch of every ``fit`` is left out (it traces and compiles the step
    function); validation and checkpointing are not timed.

    Args:
        batch_size: images per step.
        epoch_images: images per epoch when an epoch is one pass over the data
            (caps the count of a smaller last batch); ``None`` with ``steps_per_epoch``.
    """

    def __init__(self, batch_size: int, epoch_images: Optional[int] = None):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_images = epoch_images
        self.seconds = 0.0
        self.images = 0
        self._skip = True

    def on_train_begin(self, logs=None):
        self._skip = True

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._skip:
            self._skip = False
            return
        images = self._steps * self.batch_size
        if self.epoch_images is not None:
            images = min(images, self.epoch_images)
        self.seconds += self._last - self._start
        self.images += images

    def images_per_second(self) -> Optional[float]:
        """``None`` until an epoch other than the first of a ``fit`` was timed."""
        return self.images / self.seconds if self.seconds > 0 else None

    def get_state(self) -> Dict[str, Any]:
        return {"seconds": self.seconds, "images": self.images}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.seconds = float(state.get("seconds", 0.0))
        self.images = int(state.get("images", 0))


# attributes of each callback that BackupAndRestore does not restore
_CALLBACK_STATE = {
    "checkpoint": ("best",),
    "early_stopping": ("best", "wait", "best_epoch", "stopped_epoch"),
    "reduce_lr": ("best", "wait", "cooldown_counter"),
}


class RunBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` with atomic files and the other callbacks' state.

    Keras' callback restores the weights, the optimizer (learning rate included)
    and the epoch. This one also restores what ``ModelCheckpoint``,
    ``EarlyStopping``, ``ReduceLROnPlateau`` and :class:`Throughput` keep in memory,
    and ``EarlyStopping.best_weights`` from ``model.keras``. Each epoch writes
    ``backup/epoch-NNNN.weights.h5`` and then ``backup/state.json`` naming it
    (both through a rename), so a kill at any moment leaves a consistent pair.
    Epochs whose loss is NaN/Inf are not backed up. Place it LAST in the callback
    list: it restores state after the others reset theirs in ``on_train_begin``
    and saves after they have updated it in ``on_epoch_end``.

    Args:
        run_dir: the run folder.
        callbacks: ``{"checkpoint": ..., "early_stopping": ..., "reduce_lr": ...}``.
        throughput: the :class:`Throughput` callback.
        phase: index of the training phase (0, or 1 after unfreezing the encoder).
        final_phase: whether an early stop in this phase ends the run.
        seconds_before: wall seconds of earlier sessions of this run.
        clock_start: ``time.perf_counter()`` at the start of this session.
    """

    def __init__(self, run_dir, callbacks, throughput, phase=0, final_phase=True, seconds_before=0.0,
                 clock_start=None):
        super().__init__(os.path.join(run_dir, BACKUP_DIR), delete_checkpoint=False)
        self.run_dir = run_dir
        self.tracked = callbacks
        self.throughput = throughput
        self.phase = phase
        self.final_phase = final_phase
        self.seconds_before = seconds_before
        self.clock_start = time.perf_counter() if clock_start is None else clock_start
        self._state_path = os.path.join(self.backup_dir, STATE_FILE)

    # restore ---------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        state = read_json(self._state_path)
        self.model._initial_epoch = None
        if not state:
            return
        weights = os.path.join(self.backup_dir, state["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        with warnings.catch_warnings():
            # After unfreezing the encoder the optimizer is new: only the model weights carry over.
            if state.get("phase", 0) != self.phase:
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            self.model.load_weights(weights)
        self.model._initial_epoch = int(state["epoch"])
        for name, attributes in _CALLBACK_STATE.items():
            callback = self.tracked.get(name)
            saved = state.get("callbacks", {}).get(name, {})
            for attribute in attributes:
                if callback is not None and attribute in saved:
                    setattr(callback, attribute, saved[attribute])
        if state.get("phase", 0) != self.phase:  # a new phase starts its patience afresh
            for name in ("early_stopping", "reduce_lr"):
                if self.tracked.get(name) is not None:
                    self.tracked[name].wait = 0
        self.throughput.set_state(state.get("throughput", {}))
        stopper = self.tracked.get("early_stopping")
        best_model = os.path.join(self.run_dir, "model.keras")
        if stopper is not None and stopper.restore_best_weights and os.path.exists(best_model):
            stopper.best_weights = load_keras_model(best_model, compile=False).get_weights()

    # save ------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        if _not_finite((logs or {}).get("loss")):
            return
        self._current_epoch = epoch + 1
        self._save_model()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:04d}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp, overwrite=True)
        state = {
            "epoch": self._current_epoch,
            "phase": self.phase,
            "weights": name,
            "stopped_early": bool(self.model.stop_training and self.final_phase),
            "callbacks": {
                key: {a: _plain(getattr(self.tracked[key], a, None)) for a in attributes}
                for key, attributes in _CALLBACK_STATE.items()
                if self.tracked.get(key) is not None
            },
            "throughput": self.throughput.get_state(),
            "seconds": self.seconds_before + time.perf_counter() - self.clock_start,
        }
        write_json_atomic(self._state_path, state)
        for old in os.listdir(self.backup_dir):  # older epochs are superseded by state.json
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def on_train_batch_end(self, batch, logs=None):
        pass  # epoch-level backups only

    def on_train_end(self, logs=None):
        pass  # keep the backup: a longer --epochs continues from it


def _plain(value):
    """A JSON-friendly copy of a callback attribute (numpy/tensor scalars to float)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return float(np.asarray(value))


# --------------------------------------------------------------------------- data and model
def split_ids(source, config: TrainConfig) -> Dict[str, List[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` for ``config``'s seed and fractions.

    Raises:
        ConfigError: a split is empty (too few samples for the fractions).
    """
    fractions = config.split_fractions()
    ids = {split: list(source.split_ids(split, seed=config.seed, fractions=fractions)) for split in SPLITS}
    empty = [split for split in SPLITS if not ids[split]]
    if empty:
        counts = ", ".join(f"{s} {len(ids[s])}" for s in SPLITS)
        raise ConfigError(
            f"--data {config.data}: the {'/'.join(empty)} split is empty ({counts}); "
            "use more samples or change --val-fraction/--test-fraction"
        )
    return ids


def resolve_num_classes(source, config: TrainConfig) -> int:
    """The number of classes: the source's, unless ``--num-classes`` sets it explicitly."""
    found = int(getattr(source, "num_classes", 1) or 1)
    if config.num_classes == 1 or config.num_classes == found:
        return found
    if found > 1:
        raise ConfigError(
            f"--num-classes {config.num_classes}: the data source {config.data} has {found} classes"
        )
    return config.num_classes


def load_split(split: str, config: TrainConfig, num_classes: int, strategy=None):
    """The batched ``tf.data.Dataset`` of one split (augmented and shuffled for ``train`` only).

    Under ``strategy`` it yields global batches (``batch_size`` x replicas) and carries
    the auto-shard policy of :func:`tfseg.distribute.auto_shard_policy`.
    """
    from tfseg.data import load_dataset
    from tfseg.distribute import pipeline_options, sharded

    train = split == "train"
    dataset = load_dataset(
        config.data,
        split=split,
        image_size=config.image_size,
        augment=config.augment and train,
        seed=config.seed,
        cache=config.cache,
        fractions=config.split_fractions(),
        num_classes=num_classes,
        repeat=train and config.steps_per_epoch is not None,
        skip_bad=config.skip_bad,
        **pipeline_options(config.batch_size, strategy, split),
    )
    return sharded(dataset, config.data)


def build_compiled_model(config: TrainConfig, num_classes: int, phase: Dict[str, Any]):
    """``build_model`` + :func:`compile_model` for ``phase``. Call inside ``strategy.scope()``."""
    from tfseg.models import build_model

    model = build_model(config.model, config.image_size, num_classes, **config.model_options())
    if phase["frozen"]:
        set_encoder_trainable(model, False)
    compile_model(model, config, num_classes, phase["learning_rate"])
    return model


def compile_model(model, config: TrainConfig, num_classes: int, learning_rate: float) -> None:
    """Adam, the configured loss, Dice and IoU (under mixed_float16, ``compile`` adds loss scaling itself)."""
    from tfseg.losses import get_loss
    from tfseg.metrics import default_metrics

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=get_loss(config.loss, num_classes),
        metrics=default_metrics(num_classes),
        jit_compile=config.jit_compile,
    )


def set_encoder_trainable(model, trainable: bool) -> None:
    """Freeze or unfreeze the pretrained encoder (see :mod:`tfseg.models.encoders`)."""
    from tfseg.models.encoders import set_encoder_trainable as set_trainable

    set_trainable(model, trainable)


def training_phases(config: TrainConfig) -> List[Dict[str, Any]]:
    """``[{"start", "end", "frozen", "learning_rate"}, ...]``: the encoder freeze schedule.

    With ``freeze_encoder_epochs=N``: epochs ``[0, N)`` train with the encoder frozen at
    the configured learning rate, then ``[N, epochs)`` train everything at a tenth of it.
    """
    frozen = min(config.freeze_encoder_epochs, config.epochs)
    if frozen <= 0:
        return [{"start": 0, "end": config.epochs, "frozen": False, "learning_rate": config.learning_rate}]
    phases = [{"start": 0, "end": frozen, "frozen": True, "learning_rate": config.learning_rate}]
    if frozen < config.epochs:
        phases.append(
            {"start": frozen, "end": config.epochs, "frozen": False, "learning_rate": config.learning_rate * 0.1}
        )
    return phases


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; ``deterministic`` turns on TF op determinism.

    Op determinism stays on for the rest of the process (TensorFlow has no public switch back).
    """
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------- train
def train(config: TrainConfig, *, verbose: int = 1, force_new: bool = False) -> Dict[str, Any]:
    """Train ``config`` into its run folder and return the ``metrics.json`` content.

    The data source and the model are opened and built before anything is written,
    so a bad ``--data`` or model option leaves no folder behind.

    Args:
        config: every setting; ``config.out`` is RUN_DIR (default ``runs/<model>-<data kind>``).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        force_new: move an existing run folder aside instead of resuming it.

    Returns:
        ``{"val": {"dice", "iou", "loss"}, "test": {"dice", "iou", "loss", "num_images"},
        "train_images_per_second", "seconds", "precision", "strategy", "replicas",
        "global_batch_size", "epochs_completed", "best_epoch", "stopped_early", "num_classes",
        "split_sizes", "run_dir"}`` (``global_batch_size`` = ``batch_size`` x ``replicas``;
        see :mod:`tfseg.distribute`).
        ``train_images_per_second`` leaves out the first epoch of each session (tracing)
        and is ``None`` when no other epoch ran; ``seconds`` is the wall time of all
        sessions (each counted up to its last completed epoch, plus the final one).

    Raises:
        ConfigError: impossible settings, or a run folder trained with other settings.
        TfsegError: bad data, or a loss that became NaN/Inf.
    """
    config.validate()
    log = _logger(verbose)
    from tfseg import distribute

    # First: multiworker configures the collective ops, which must precede every other TensorFlow op.
    strategy = distribute.get_strategy(config.strategy)
    config = distribute.worker_config(config, strategy)  # a non-chief worker writes to RUN_DIR.worker-<i>
    run_dir = run_dir_of(config)
    status = run_status(config, force_new)
    distribute.check_workers_agree(strategy, status, int(training_state(run_dir).get("epoch", 0)))
    if status == "complete":
        log(f"{run_dir}: already complete ({training_state(run_dir).get('epoch')} epochs); nothing to do "
            "(--force-new starts over)")
        return read_json(os.path.join(run_dir, "metrics.json"))
    start = time.perf_counter()
    state = training_state(run_dir) if status == "resume" else {}
    from tfseg.data.pipeline import open_dataset_source
    from tfseg.models.registry import get_builder
    from tfseg.precision import precision_policy

    register_tfseg_objects()
    get_builder(config.model)  # an unknown --model fails before any data is read
    if config.tensorboard:
        check_tensorboard()
    seed_everything(config.seed, config.deterministic)

    with precision_policy(config.precision, config) as policy:
        # skip_bad must reach the file sources, which check every file when opened
        source = open_dataset_source(config.data, image_size=config.image_size, skip_bad=config.skip_bad)
        ids = split_ids(source, config)
        num_classes = resolve_num_classes(source, config)
        datasets = {split: load_split(split, config, num_classes, strategy) for split in SPLITS}
        phases = remaining_phases(config, int(state.get("epoch", 0)))
        with strategy.scope():  # built now: a bad model option fails before RUN_DIR is touched
            model = build_compiled_model(config, num_classes, phases[0]) if phases else None

        log(distribute.describe(strategy, config.batch_size))
        start_run_dir(config, status, log)
        write_json_atomic(os.path.join(run_dir, "splits.json"), ids)
        done = int(state.get("epoch", 0))
        if status == "resume":
            log(f"{run_dir}: resuming after epoch {done} of {config.epochs}")
        truncate_history(os.path.join(run_dir, "history.csv"), done)
        if model is not None:
            nan_guard = fit_phases(model, phases, config, run_dir, strategy, datasets, num_classes,
                                   len(ids["train"]), state, start, verbose)
            if nan_guard.fired:
                raise TfsegError(f"{run_dir}: training stopped at epoch {_epoch_of_nan(run_dir)}: {NAN_ADVICE}")
        # Outside the strategy: each process scores the whole val/test split on its own (exact, no
        # collectives), and the figures and the SavedModel come from a plain single-device model.
        best = load_keras_model(os.path.join(run_dir, "model.keras"))
        final = training_state(run_dir)
        metrics = {
            "val": evaluate_dataset(best, datasets["val"]),
            "test": {**evaluate_dataset(best, datasets["test"]), "num_images": len(ids["test"])},
            "train_images_per_second": _rate(final),
            "precision": policy,
            "strategy": distribute.strategy_name(strategy),
            "replicas": int(strategy.num_replicas_in_sync),
            "global_batch_size": distribute.global_batch_size(config.batch_size, strategy),
            "epochs_completed": int(final.get("epoch", 0)),
            "best_epoch": _best_epoch(final),
            "stopped_early": bool(final.get("stopped_early")),
            "num_classes": num_classes,
            "split_sizes": {split: len(ids[split]) for split in SPLITS},
            "run_dir": run_dir,
        }
        write_figures(run_dir, best, datasets["test"], num_classes)
        from tfseg.export import export_saved_model

        export_saved_model(best, os.path.join(run_dir, "saved_model"), version=1, overwrite=True)
    metrics["seconds"] = float(state.get("seconds", 0.0)) + time.perf_counter() - start
    write_json_atomic(os.path.join(run_dir, "metrics.json"), metrics)
    log(f"{run_dir}: test dice {metrics['test']['dice']:.4f}  iou {metrics['test']['iou']:.4f}  "
        f"({metrics['epochs_completed']} epochs, {metrics['seconds']:.0f} s)")
    distribute.remove_worker_dir(run_dir, strategy)  # a non-chief worker's copy is done with
    return metrics


def remaining_phases(config: TrainConfig, done: int) -> List[Dict[str, Any]]:
    """The phases of :func:`training_phases` still to run after ``done`` epochs, with their index."""
    phases = training_phases(config)
    return [
        {**phase, "index": index, "final": index == len(phases) - 1, "start": max(phase["start"], done)}
        for index, phase in enumerate(phases)
        if phase["end"] > done
    ]


def fit_phases(model, phases, config, run_dir, strategy, datasets, num_classes, train_images, state, start,
               verbose):
    """``model.fit`` for each phase (recompiling when the encoder is unfrozen); return the NaN guard."""
    from tfseg.distribute import global_batch_size

    throughput = Throughput(global_batch_size(config.batch_size, strategy),
                            None if config.steps_per_epoch else train_images)
    nan_guard = NaNGuard()
    for number, phase in enumerate(phases):
        if number > 0:
            if training_state(run_dir).get("stopped_early"):
                break
            with strategy.scope():
                set_encoder_trainable(model, not phase["frozen"])
                compile_model(model, config, num_classes, phase["learning_rate"])
        backup = RunBackup(run_dir, {}, throughput, phase=phase["index"], final_phase=phase["final"],
                           seconds_before=float(state.get("seconds", 0.0)), clock_start=start)
        model.fit(
            datasets["train"],
            validation_data=datasets["val"],
            epochs=phase["end"],
            initial_epoch=phase["start"],
            steps_per_epoch=config.steps_per_epoch,
            shuffle=False,  # the pipeline shuffles (seeded)
            callbacks=make_callbacks(config, run_dir, throughput, nan_guard, backup, datasets["val"]),
            verbose=verbose,
        )
        if nan_guard.fired:
            break
    return nan_guard


def make_callbacks(config, run_dir, throughput, nan_guard, backup, val_dataset):
    """The callback list, ``backup`` last (see :class:`RunBackup`); wires ``backup`` to the stateful ones."""
    tracked = {
        "reduce_lr": keras.callbacks.ReduceLROnPlateau(
            monitor=MONITOR, mode="max", factor=0.5, patience=max(2, config.patience // 2), min_lr=1e-6
        ),
        "checkpoint": AtomicModelCheckpoint(
            os.path.join(run_dir, "model.keras"), monitor=MONITOR, mode="max", save_best_only=True
        ),
        "early_stopping": keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=config.patience, restore_best_weights=True
        ),
    }
    callbacks = [
        throughput,
        nan_guard,
        tracked["reduce_lr"],  # before CSVLogger: it adds learning_rate to the epoch logs
        tracked["checkpoint"],
        tracked["early_stopping"],
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
    ]
    if config.tensorboard:
        callbacks += tensorboard_callbacks(run_dir, val_dataset)
    backup.tracked = tracked
    return [*callbacks, backup]


def check_tensorboard() -> None:
    """Raise a one-line error when ``--tensorboard`` cannot work (TensorFlow >= 2.20 does not install it)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard: the tensorboard package is not installed; pip install tensorboard")


def tensorboard_callbacks(run_dir: str, val_dataset) -> list:
    """Keras' TensorBoard logger + prediction images of a few validation samples (RUN_DIR/logs)."""
    from tfseg.tensorboard import PredictionImages

    log_dir = os.path.join(run_dir, "logs")
    return [keras.callbacks.TensorBoard(log_dir=log_dir), PredictionImages(val_dataset, log_dir, max_images=4)]


def _logger(verbose: int):
    # Progress goes to stdout, next to Keras' progress bar; stderr is left to errors.
    def log(message: str) -> None:
        if verbose:
            print(message, flush=True)

    return log


def _rate(state) -> Optional[float]:
    throughput = state.get("throughput", {})
    seconds = float(throughput.get("seconds", 0.0))
    return float(throughput.get("images", 0)) / seconds if seconds > 0 else None


def _best_epoch(state) -> Optional[int]:
    best = state.get("callbacks", {}).get("early_stopping", {}).get("best_epoch")
    return None if best is None else int(best) + 1


def _epoch_of_nan(run_dir: str) -> int:
    return int(training_state(run_dir).get("epoch", 0)) + 1


# --------------------------------------------------------------------------- evaluation
def evaluate_dataset(model, dataset) -> Dict[str, float]:
    """``model.evaluate`` as ``{"dice", "iou", "loss", ...}`` (floats)."""
    values = model.evaluate(dataset, verbose=0, return_dict=True)
    return {name: float(value) for name, value in values.items()}


def predicted_masks(probabilities: np.ndarray, num_classes: int) -> np.ndarray:
    """``[B,H,W]`` masks: ``p > 0.5`` for one class, the argmax class id otherwise."""
    if num_classes == 1:
        return (probabilities[..., 0] > 0.5).astype(np.uint8)
    return np.argmax(probabilities, axis=-1).astype(np.uint8)


def write_figures(run_dir: str, model, test_dataset, num_classes: int, count: int = 4) -> None:
    """``curves.png`` from ``history.csv`` and ``predictions.png`` for ``count`` test images.

    (:mod:`tfseg.viz` writes each PNG through a temporary file and a rename.)
    """
    from tfseg.metrics import dice_score
    from tfseg.viz import plot_history, plot_predictions

    plot_history(os.path.join(run_dir, "history.csv"), os.path.join(run_dir, "curves.png"))
    images, masks = next(iter(test_dataset.unbatch().batch(count).take(1)))
    images, true = images.numpy(), masks.numpy()[..., 0]
    probabilities = np.asarray(model.predict(images, verbose=0))
    dice = [dice_score(t, p, num_classes=num_classes) for t, p in zip(true, probabilities)]
    plot_predictions(images, true, predicted_masks(probabilities, num_classes),
                     os.path.join(run_dir, "predictions.png"), dice=dice)


# --------------------------------------------------------------------------- tfseg evaluate
def locate_model(path: str):
    """``(model.keras path, TrainConfig of its run folder or None)`` for a ``.keras`` file or a RUN_DIR."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        raise TfsegError(f"--model {path}: no such file (expected a model.keras file or a run folder)")
    if not path.endswith(".keras"):
        raise TfsegError(f"--model {path}: not a .keras file")
    return path, saved_config(os.path.dirname(os.path.abspath(path)))


def register_tfseg_objects() -> None:
    """Import the modules whose custom layers/losses/metrics a ``model.keras`` may name.

    Keras looks registered objects up by name and imports only its own packages,
    so these must be imported before ``keras.models.load_model``.
    """
    import importlib

    for module in ("tfseg.layers", "tfseg.models", "tfseg.losses", "tfseg.metrics"):
        importlib.import_module(module)


def load_keras_model(path: str, compile: bool = True):
    """``keras.models.load_model`` (safe mode) with tfseg's objects registered and one-line errors."""
    register_tfseg_objects()
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as err:  # noqa: BLE001 - zip, JSON and deserialization errors all mean "bad file"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TfsegError(f"--model {path}: cannot load it as a Keras model ({first})") from None


def model_image_size(model) -> int:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2]:
        raise TfsegError(f"model {model.name!r}: input shape {shape} is not a fixed square [batch, N, N, 3]")
    return int(shape[1])


def per_image_rows(model, dataset, ids: Sequence[str], num_classes: int):
    """One row per image: ``{"id", "dice", "iou", "hausdorff95", "mean_surface_distance"}``, plus the
    arrays for figures (``images uint8 [N,H,W,3]``, ``true``, ``predicted`` ``[N,H,W]``).

    Dice and IoU follow :class:`tfseg.metrics.Dice`/``IoU`` (empty truth and empty
    prediction score 1). The boundary distances (:mod:`tfseg.boundary`, pixels) compare
    foreground (any class but 0) with foreground: 0 when both are empty, ``inf`` when one is.
    """
    from tfseg.boundary import hausdorff95, mean_surface_distance
    from tfseg.metrics import dice_score, iou_score

    rows, images, trues, preds = [], [], [], []
    for batch_images, batch_masks in dataset:
        probabilities = np.asarray(model.predict_on_batch(batch_images))
        predicted = predicted_masks(probabilities, num_classes)
        for image, mask, probs, pred in zip(batch_images.numpy(), batch_masks.numpy(), probabilities, predicted):
            true = mask[..., 0]
            rows.append({
                "dice": dice_score(true, probs, num_classes=num_classes),
                "iou": iou_score(true, probs, num_classes=num_classes),
                "hausdorff95": float(hausdorff95(pred > 0, true > 0)),
                "mean_surface_distance": float(mean_surface_distance(pred > 0, true > 0)),
            })
            images.append(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
            trues.append(true.astype(np.uint8))
            preds.append(pred)
    if len(rows) != len(ids):
        raise TfsegError(f"evaluate: the pipeline gave {len(rows)} images for {len(ids)} sample ids")
    for sample_id, row in zip(ids, rows):
        row["id"] = sample_id
    return rows, np.stack(images), np.stack(trues), np.stack(preds)


def summarize_rows(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Per-image statistics: mean/median Dice and IoU; median and finite mean of the distances, inf count."""
    summary: Dict[str, Any] = {}
    for key in ("dice", "iou"):
        values = np.array([row[key] for row in rows], np.float64)
        summary[f"{key}_mean"], summary[f"{key}_median"] = float(values.mean()), float(np.median(values))
    for key in ("hausdorff95", "mean_surface_distance"):
        values = np.array([row[key] for row in rows], np.float64)
        finite = values[np.isfinite(values)]
        summary[f"{key}_median"] = float(np.median(values))
        summary[f"{key}_finite_mean"] = float(finite.mean()) if finite.size else None
        summary[f"{key}_inf_images"] = int((~np.isfinite(values)).sum())
    return summary


def write_rows_csv(path: str, rows: Sequence[Dict[str, Any]]) -> None:
    columns = ("id", "dice", "iou", "hausdorff95", "mean_surface_distance")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({key: row[key] for key in columns} for row in rows)


def evaluate(model_path: str, data: Optional[str] = None, split: str = "test", out: Optional[str] = None,
             batch_size: Optional[int] = None, seed: Optional[int] = None,
             fractions: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """Evaluate a saved model on one split of a data source.

    Unset arguments come from the model's run folder (``config.json`` next to
    ``model.keras``), so ``evaluate("runs/unet-synthetic")`` scores the run's own
    test split; without a run folder they take :class:`TrainConfig`'s defaults.

    Args:
        model_path: a ``model.keras`` file or a run folder.
        data: the SOURCE (default: the run's).
        split: ``train``, ``val`` or ``test``.
        out: folder for ``metrics.json``, ``per_image.csv``, ``dice_histogram.png``,
            ``best_worst.png`` (``None``: write nothing).
        batch_size, seed, fractions: the pipeline's; ``seed`` and ``fractions`` decide the split.

    Returns:
        ``{split: {"dice", "iou", "loss", "num_images"}, "per_image": {...}, "model", "data"}``.
        ``dice``/``iou`` are over all pixels of the split (as in training); ``per_image``
        summarises the per-image values (:func:`summarize_rows`).
    """
    from tfseg.data import load_dataset, open_source
    from tfseg.metrics import default_metrics

    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    path, run_config = locate_model(model_path)
    defaults = run_config or TrainConfig()
    data = data or (run_config.data if run_config else None)
    if not data:
        raise ConfigError(f"--data: required ({path} is not inside a run folder with a config.json)")
    seed = defaults.seed if seed is None else int(seed)
    fractions = tuple(fractions) if fractions is not None else defaults.split_fractions()
    batch_size = int(batch_size or defaults.batch_size)

    model = load_keras_model(path)
    image_size = model_image_size(model)
    num_classes = int(model.outputs[0].shape[-1])
    if not getattr(model, "compiled", False):  # a bare model: score it, with no loss to report
        model.compile(metrics=default_metrics(num_classes))
    ids = list(open_source(data).split_ids(split, seed=seed, fractions=fractions))
    if not ids:
        raise ConfigError(f"--data {data}: the {split} split is empty")
    dataset = load_dataset(data, split=split, image_size=image_size, batch_size=batch_size, augment=False,
                           shuffle=False, seed=seed, fractions=fractions, num_classes=num_classes)
    scores = {**evaluate_dataset(model, dataset), "num_images": len(ids)}
    rows, images, trues, preds = per_image_rows(model, dataset, ids, num_classes)
    result = {split: scores, "per_image": summarize_rows(rows), "model": path, "data": str(data)}
    if out:
        from tfseg.viz import plot_best_worst, plot_dice_histogram

        os.makedirs(out, exist_ok=True)
        write_json_atomic(os.path.join(out, "metrics.json"), result)
        write_rows_csv(os.path.join(out, "per_image.csv"), rows)
        dice = np.array([row["dice"] for row in rows])
        plot_dice_histogram(dice, os.path.join(out, "dice_histogram.png"))
        plot_best_worst(images, trues, preds, dice, os.path.join(out, "best_worst.png"))
    return result
