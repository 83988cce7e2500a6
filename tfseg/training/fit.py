"""Model assembly and the ``model.fit`` loop of a run: build + compile, phases, callbacks."""

from __future__ import annotations

import math
from typing import Any, Dict, List

import keras

from tfseg import fileio
from tfseg.config import TrainConfig
from tfseg.training.callbacks import (
    MONITOR,
    BestCheckpoint,
    HistoryLog,
    LearningRateLog,
    NaNGuard,
    RunBackup,
    Throughput,
    WholeImageValidation,
    restore_weights,
)
from tfseg.training.run_folder import HISTORY_FILE, MODEL_FILE, training_state


def build_compiled_model(config: TrainConfig, num_classes: int, phase: Dict[str, Any], steps_per_epoch=None,
                         class_weights=None):
    """``build_model`` + :func:`compile_model` for ``phase``. Call inside ``strategy.scope()``."""
    from tfseg.models import accepted_options, build_model
    from tfseg.models.encoders import set_encoder_trainable

    accepted = accepted_options(config.model, **config.model_options())
    model = build_model(config.model, config.model_input_size(), num_classes, **config.model_options(accepted))
    if phase["frozen"]:
        set_encoder_trainable(model, False)
    compile_model(model, config, num_classes, phase["learning_rate"],
                  learning_rate_schedule(config, phase, steps_per_epoch), class_weights)
    return model


def learning_rate_schedule(config: TrainConfig, phase: Dict[str, Any], steps_per_epoch=None):
    """The learning rate of ``phase``: a number (``plateau``) or a Keras schedule (``cosine``).

    ``cosine``: from ``learning_rate / 10`` up to ``learning_rate`` linearly over the first epoch
    (warm-up), then ``learning_rate * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 over the
    phase's epochs, reaching 0 at its last step (a resumed run continues the same curve: the
    optimizer's step count is restored). ``steps_per_epoch`` is needed for it
    (``None`` falls back to the constant rate).
    """
    peak = phase["learning_rate"]
    if config.lr_schedule != "cosine" or not steps_per_epoch:
        return peak
    steps = int(steps_per_epoch) * (phase["end"] - phase.get("first", phase["start"]))
    warmup = min(int(steps_per_epoch), max(steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10, decay_steps=max(steps - warmup, 1), alpha=0.0,
        warmup_target=peak, warmup_steps=warmup)


def compile_model(model, config: TrainConfig, num_classes: int, learning_rate=None, schedule=None,
                  class_weights=None) -> None:
    """Adam, the configured loss, Dice and IoU (under mixed_float16, ``compile`` adds loss scaling itself).

    Also what a model loaded from a run's ``model.keras`` (saved without its compile state, so that
    it loads with plain Keras) is compiled with before it is scored.
    ``learning_rate``: default ``config.learning_rate``; ``schedule`` (:func:`learning_rate_schedule`)
    replaces the constant rate. ``class_weights``: the loss's weights per class (the run's resolved
    ``--class-weights``, :func:`tfseg.balance.resolve_class_weights`), ``None``: unweighted.
    """
    from tfseg.losses import get_loss
    from tfseg.metrics import default_metrics

    if learning_rate is None:
        learning_rate = config.learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate if schedule is None else schedule),
        loss=get_loss(config.loss, num_classes, config.ignore_class, class_weights=class_weights),
        metrics=default_metrics(num_classes, config.ignore_class),
        jit_compile=config.jit_compile,
    )


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


def remaining_phases(config: TrainConfig, done: int) -> List[Dict[str, Any]]:
    """The phases of :func:`training_phases` still to run after ``done`` epochs, with their index."""
    phases = training_phases(config)
    return [
        {**phase, "index": index, "final": index == len(phases) - 1, "first": phase["start"],
         "start": max(phase["start"], done)}
        for index, phase in enumerate(phases)
        if phase["end"] > done
    ]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; ``deterministic`` turns on TF op determinism.

    Op determinism stays on for the rest of the process (TensorFlow has no public switch back).
    """
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def steps_per_epoch(config: TrainConfig, train_images: int, strategy=None) -> int:
    """Training steps in one epoch: ``config.steps_per_epoch``, else one pass over the train split."""
    from tfseg.distribute import global_batch_size

    if config.steps_per_epoch:
        return int(config.steps_per_epoch)
    return max(1, math.ceil(train_images / global_batch_size(config.batch_size, strategy)))


def fit_phases(model, phases, config, run_dir, strategy, datasets, train_images, state, start, verbose,
               class_weights=None):
    """``model.fit`` for each phase (recompiling when the encoder is unfrozen); return the NaN guard.

    A resumed run first loads its backed-up weights and optimizer (:func:`restore_weights`)
    and continues at the phase's ``start`` epoch.
    """
    from tfseg.distribute import global_batch_size
    from tfseg.models.encoders import set_encoder_trainable

    throughput = Throughput(global_batch_size(config.batch_size, strategy),
                            None if config.steps_per_epoch else train_images)
    nan_guard = NaNGuard()
    for number, phase in enumerate(phases):
        if number > 0:
            if training_state(run_dir).get("stopped_early"):
                break
            with strategy.scope():
                set_encoder_trainable(model, not phase["frozen"])
                compile_model(model, config, model.outputs[0].shape[-1], phase["learning_rate"],
                              learning_rate_schedule(config, phase, steps_per_epoch(config, train_images, strategy)),
                              class_weights)
        with strategy.scope():
            restore_weights(model, run_dir, phase["index"])
        backup = RunBackup(run_dir, {}, throughput, phase=phase["index"], final_phase=phase["final"],
                           seconds_before=float(state.get("seconds", 0.0)), clock_start=start)
        model.fit(
            datasets["train"],
            # A patch-trained model is validated on whole images by WholeImageValidation instead.
            validation_data=datasets["val"] if config.patch_size is None else None,
            epochs=phase["end"],
            initial_epoch=phase["start"],
            steps_per_epoch=config.steps_per_epoch,
            shuffle=False,  # the pipeline shuffles (seeded)
            callbacks=make_callbacks(config, run_dir, throughput, nan_guard, backup, datasets["val"],
                                     int(model.outputs[0].shape[-1])),
            verbose=verbose,
        )
        if nan_guard.fired:
            break
    return nan_guard


def make_callbacks(config, run_dir, throughput, nan_guard, backup, val_dataset, num_classes: int = 1):
    """The callback list, ``backup`` last (see :class:`RunBackup`); wires ``backup`` to the stateful ones.

    With ``config.patch_size``, :class:`WholeImageValidation` comes before every callback that reads
    ``val_dice`` (it writes the validation scores into the epoch's logs).
    """
    tracked = {
        "checkpoint": BestCheckpoint(fileio.join(run_dir, MODEL_FILE), monitor=MONITOR),
        "early_stopping": keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=config.patience, restore_best_weights=True
        ),
    }
    if config.lr_schedule == "plateau":
        tracked["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor=MONITOR, mode="max", factor=0.5, patience=max(2, config.patience // 2), min_lr=1e-6
        )
    validation = [] if config.patch_size is None else [
        WholeImageValidation(val_dataset, num_classes, config.scale, config.ignore_class, config.pixel_options())]
    callbacks = [
        throughput,
        nan_guard,
        *validation,
        # Keras' epoch line before the learning rate reaches the logs: its bar writes 0.0020 above 1e-3 and
        # 9.7553e-04 below; the run's first line states the rate once (describe_run), history.csv each epoch's.
        keras.callbacks.ProgbarLogger(),
        tracked.get("reduce_lr") or LearningRateLog(),  # before HistoryLog: adds learning_rate to the epoch logs
        tracked["checkpoint"],
        tracked["early_stopping"],
        HistoryLog(fileio.join(run_dir, HISTORY_FILE)),
    ]
    if config.tensorboard and config.patch_size is None:  # its images need model-sized inputs
        callbacks += tensorboard_callbacks(run_dir, val_dataset)
    elif config.tensorboard:
        from tfseg.tensorboard import EpochTensorBoard

        callbacks.append(EpochTensorBoard(log_dir=fileio.join(run_dir, "logs")))
    backup.tracked = tracked
    return [*callbacks, backup]


def tensorboard_callbacks(run_dir: str, val_dataset) -> list:
    """Keras' TensorBoard logger + prediction images of a few validation samples (RUN_DIR/logs)."""
    from tfseg.tensorboard import EpochTensorBoard, PredictionImages

    log_dir = fileio.join(run_dir, "logs")
    return [EpochTensorBoard(log_dir=log_dir), PredictionImages(val_dataset, log_dir, max_images=4)]
