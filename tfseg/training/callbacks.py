"""The callbacks of a ``tfseg train`` run, on Keras' public callback API.

- :class:`BestCheckpoint`: ``model.keras`` = best weights by validation Dice, written
  through a temporary file and a rename;
- :class:`HistoryLog`: ``history.csv``, one row per epoch, rewritten whole through a
  temporary file (Keras' ``CSVLogger`` appends to an open file, which object stores cannot);
- :class:`NaNGuard`: stops on a NaN/Inf loss and remembers why;
- :class:`Throughput`: training images per second;
- :class:`WholeImageValidation`: validation scores of a patch-trained model on whole images
  (sliding window), logged as ``val_dice``/``val_iou``/``val_loss`` for the callbacks after it;
- :class:`RunBackup`: the resume state of every epoch (weights, optimizer and the
  other callbacks' counters), so that rerunning the same command continues the run.
"""

from __future__ import annotations

import csv
import io
import math
import time
import warnings
from typing import Any, Dict, Optional

import keras
import numpy as np

from tfseg import fileio
from tfseg.saving import weights_file_size
from tfseg.training.run_folder import BACKUP_DIR, MODEL_FILE, STATE_FILE, remove_superseded_weights

MONITOR = "val_dice"


def not_finite(value) -> bool:
    """Whether a logged value is NaN or infinite (``None``: no value, not "not finite")."""
    return value is not None and not math.isfinite(float(value))


def weights_finite(model) -> bool:
    """Whether every weight of ``model`` is finite."""
    return all(np.isfinite(np.asarray(w)).all() for w in model.get_weights())


def inference_model(model) -> keras.Model:
    """``model``'s graph and weights without its compile state (loss, metrics, optimizer).

    What ``model.keras`` holds: a file whose every object is Keras' own loads with plain
    ``keras.models.load_model`` where tfseg is not installed; a compile config naming tfseg's
    losses and metrics would stop that (Keras deserializes it with ``compile=True``, the default,
    and fails on the unknown classes). tfseg compiles a loaded model from the run's ``config.json``
    when it scores one (:func:`tfseg.training.compile_model`).
    """
    inputs, outputs = model.inputs, model.outputs  # one tensor each (not a list of one) where the model has one
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                       name=model.name)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``filepath`` whenever ``monitor`` improves (``mode="max"``).

    The file holds the model without its loss, metrics and optimizer (:func:`inference_model`),
    so it loads with plain Keras. It is written to a hidden temporary name and renamed onto
    ``filepath``, so a kill during saving leaves the previous best file intact. An epoch whose
    weights are not all finite is never saved, so ``model.keras`` always holds a usable model.

    Attributes:
        best: the best value of ``monitor`` so far (``-inf`` before the first).
    """

    def __init__(self, filepath: str, monitor: str = MONITOR):
        super().__init__()
        self.filepath = filepath
        self.monitor = monitor
        self.best = -np.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not_finite(value) or not float(value) > self.best:
            return
        if not weights_finite(self.model):
            return
        self.best = float(value)
        fileio.check_room(self.filepath, weights_file_size(self.model))  # h5py cannot fail cleanly halfway
        with fileio.atomic_path(self.filepath) as tmp:
            inference_model(self.model).save(tmp)


class LearningRateLog(keras.callbacks.Callback):
    """Adds the optimizer's learning rate at the end of each epoch to the epoch logs (and so to ``history.csv``)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class HistoryLog(keras.callbacks.Callback):
    """``history.csv``: ``epoch`` (numbered from 1, as the log lines, ``best_epoch`` and the plots
    number them; Keras' ``on_epoch_end`` index + 1) and the epoch logs, sorted by name.

    The columns of an existing file are kept (a resumed run appends to it). Each row is
    written by rewriting the whole file through :func:`tfseg.fileio.write_text_atomic`:
    a kill never leaves half a row, and it works where files cannot be appended to
    (``gs://``). Values as ``keras.callbacks.CSVLogger`` writes them; a missing one is ``NA``.
    """

    def __init__(self, filepath: str):
        super().__init__()
        self.filepath = filepath

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        rows = list(csv.reader(io.StringIO(fileio.read_text(self.filepath)))) if fileio.exists(self.filepath) else []
        rows = [row for row in rows if row]
        header = rows[0] if rows else ["epoch", *sorted(logs)]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerows(rows or [header])
        writer.writerow([epoch + 1, *(_csv_value(logs.get(key, "NA")) for key in header[1:])])
        fileio.write_text_atomic(self.filepath, text.getvalue())


def _csv_value(value):
    # as keras.callbacks.CSVLogger: a sequence becomes "[a, b]", a number its repr
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim > 0):
        return f"[{', '.join(map(str, value))}]"
    return value


class NaNGuard(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN/Inf, or at the end of the first epoch
    whose weights are not all finite, and remember that it fired.

    The weights matter too: a diverged model can keep a finite training loss (batch
    normalization rescales inf activations in training mode) while its moving statistics or
    kernels are NaN/Inf, so every prediction is NaN. (``keras.callbacks.TerminateOnNaN``
    watches the loss only and does not say that it stopped.)
    """

    def __init__(self):
        super().__init__()
        self.fired = False

    def on_train_batch_end(self, batch, logs=None):
        if not_finite((logs or {}).get("loss")):
            self.fired = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.fired and not weights_finite(self.model):
            self.fired = True
            self.model.stop_training = True


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


# public attributes of each callback that make up its state between epochs
CALLBACK_STATE = {
    "checkpoint": ("best",),
    "early_stopping": ("best", "wait", "best_epoch", "stopped_epoch"),
    "reduce_lr": ("best", "wait", "cooldown_counter"),
}


class RunBackup(keras.callbacks.Callback):
    """The resume state of a run: written after every epoch, restored when a run resumes.

    Each epoch writes ``backup/epoch-NNNN.weights.h5`` (weights and optimizer state)
    and then ``backup/state.json`` naming it, each through a rename; only after
    that are older weights files deleted, so a kill at any moment leaves
    ``state.json`` naming a complete weights file. ``state.json`` also holds the
    counters of ``BestCheckpoint``, ``EarlyStopping``, ``ReduceLROnPlateau`` and
    :class:`Throughput`. Epochs whose loss is NaN/Inf are not backed up.

    Restoring: :func:`restore_weights` loads the weights before ``fit`` (which is
    given ``initial_epoch``); this callback's ``on_train_begin`` puts back the other
    callbacks' counters, after they reset them in theirs, so place it LAST in the
    callback list (it also saves after they updated in ``on_epoch_end``).

    Args:
        run_dir: the run folder.
        callbacks: ``{"checkpoint": ..., "early_stopping": ..., "reduce_lr": ...}``.
        throughput: the :class:`Throughput` callback.
        phase: index of the training phase (0, or 1 after unfreezing the encoder).
        final_phase: whether an early stop in this phase ends the run.
        seconds_before: wall seconds of the earlier calls of this run (before a resume).
        clock_start: ``time.perf_counter()`` at the start of this call.
    """

    def __init__(self, run_dir, callbacks, throughput, phase=0, final_phase=True, seconds_before=0.0,
                 clock_start=None):
        super().__init__()
        self.run_dir = run_dir
        self.backup_dir = fileio.join(run_dir, BACKUP_DIR)
        self.tracked = callbacks
        self.throughput = throughput
        self.phase = phase
        self.final_phase = final_phase
        self.seconds_before = seconds_before
        self.clock_start = time.perf_counter() if clock_start is None else clock_start
        self.state_path = fileio.join(self.backup_dir, STATE_FILE)

    # restore ---------------------------------------------------------------
    def on_train_begin(self, logs=None):
        state = fileio.read_json(self.state_path)
        if not state:
            return
        new_phase = state.get("phase", 0) != self.phase
        for name, attributes in CALLBACK_STATE.items():
            callback = self.tracked.get(name)
            saved = state.get("callbacks", {}).get(name, {})
            for attribute in attributes:
                if callback is not None and attribute in saved:
                    setattr(callback, attribute, saved[attribute])
        if new_phase:  # a new phase starts its patience afresh
            for name in ("early_stopping", "reduce_lr"):
                if self.tracked.get(name) is not None:
                    self.tracked[name].wait = 0
        self.throughput.set_state(state.get("throughput", {}))
        stopper = self.tracked.get("early_stopping")
        best_model = fileio.join(self.run_dir, MODEL_FILE)
        if stopper is not None and stopper.restore_best_weights and fileio.exists(best_model):
            from tfseg.saving import load_keras_model

            stopper.best_weights = load_keras_model(best_model, compile=False).get_weights()

    # save ------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        if not_finite((logs or {}).get("loss")) or not weights_finite(self.model):
            return
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        """Write the weights, then ``state.json`` naming them, then delete the superseded weights."""
        fileio.makedirs(self.backup_dir)
        name = f"epoch-{epochs_done:04d}.weights.h5"
        # h5py cannot fail cleanly halfway through (tfseg.fileio.release_hdf5_file): no start without room
        fileio.check_room(fileio.join(self.backup_dir, name), weights_file_size(self.model))
        with fileio.atomic_path(fileio.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp, overwrite=True)
        state = {
            "epoch": epochs_done,
            "phase": self.phase,
            "weights": name,
            "stopped_early": bool(self.model.stop_training and self.final_phase),
            "callbacks": {
                key: {a: _plain(getattr(self.tracked[key], a, None)) for a in attributes}
                for key, attributes in CALLBACK_STATE.items()
                if self.tracked.get(key) is not None
            },
            "throughput": self.throughput.get_state(),
            "seconds": self.seconds_before + time.perf_counter() - self.clock_start,
        }
        fileio.write_json_atomic(self.state_path, state)
        remove_superseded_weights(self.run_dir)  # now that state.json names the new file


def restore_weights(model, run_dir: str, phase: int) -> int:
    """Load the backed-up weights (and optimizer state) of ``run_dir`` into ``model``; return the epochs done.

    Returns 0 (and changes nothing) when there is no backup yet. When the backup is of an earlier
    phase (``phase`` starts now: the encoder was just unfrozen), the phase starts from the best
    checkpoint's weights (``model.keras``), as early stopping with ``restore_best_weights`` leaves
    the model at the end of a phase, not from the last epoch's; its optimizer is new.

    Raises:
        TfsegError: ``state.json`` names a weights file that is missing or damaged (names it).
    """
    from tfseg.errors import TfsegError

    backup_dir = fileio.join(run_dir, BACKUP_DIR)
    state = fileio.read_json(fileio.join(backup_dir, STATE_FILE))
    if not state:
        return 0
    weights = fileio.join(backup_dir, str(state.get("weights")))
    if not fileio.exists(weights):
        raise TfsegError(f"{weights}: the backup weights named by {STATE_FILE} are missing; "
                         "rerun with --force-new to start over")
    best_model = fileio.join(run_dir, MODEL_FILE)
    if state.get("phase", 0) != phase and fileio.exists(best_model):
        from tfseg.saving import load_keras_model

        model.set_weights(load_keras_model(best_model, compile=False, check_run=False).get_weights())
        return int(state.get("epoch", 0))
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with warnings.catch_warnings():
        # After unfreezing the encoder the optimizer is new: only the model weights carry over.
        if state.get("phase", 0) != phase:
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        try:
            model.load_weights(weights)
        except Exception as err:  # noqa: BLE001 - h5py/Keras errors all mean "unreadable backup"
            raise TfsegError(f"{weights}: damaged backup weights ({type(err).__name__}); "
                             "rerun with --force-new to start over") from None
    return int(state.get("epoch", 0))


def _plain(value):
    """A JSON-friendly copy of a callback attribute (numpy/tensor scalars to float)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return float(np.asarray(value))


class WholeImageValidation(keras.callbacks.Callback):
    """Score the validation split on whole images by sliding window at the end of every epoch.

    A model trained on patches (``--patch-size``) cannot take a whole image, so ``model.fit``
    gets no ``validation_data``; this callback predicts each validation image at its own size
    through the one path (:mod:`tfseg.segment`, tiled at the run's ``scale``) and writes
    ``val_dice``, ``val_iou`` (the split's pixel counts, as ``model.evaluate`` reports them)
    and ``val_loss`` (mean over images) into the epoch's logs
    (:func:`tfseg.evaluation.score_split`, what the run's final scores use). Placed before the
    checkpoint, learning-rate and early-stopping callbacks, which then read them as in a normal run.

    Args:
        dataset: whole validation images and masks in storage form, one per element
            (:func:`tfseg.data.pipeline.native_examples`).
        num_classes: the model's classes.
        scale: the run's ``scale`` (images are resized by it before the windows run).
    """

    def __init__(self, dataset, num_classes: int, scale: float = 1.0, ignore_class=None, pixel_options=None):
        super().__init__()
        self.pixel_options = dict(pixel_options or {})  # the run's dtype and normalisation (TrainConfig.pixel_options)
        self.dataset = dataset
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.ignore_class = ignore_class

    def on_epoch_end(self, epoch, logs=None):
        from tfseg.evaluation import score_split
        from tfseg.segment import Settings, keras_windows

        if logs is None:
            return
        settings = Settings.of_model(self.model, tiled=True, scale=self.scale, **self.pixel_options)
        scores = score_split(settings, keras_windows(self.model), self.dataset, loss=self.model.loss,
                             ignore_class=self.ignore_class, desc="validating")
        for name, value in scores.items():
            logs[f"val_{name}"] = value
