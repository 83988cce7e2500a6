"""``train(config)``: one ``model.fit`` run that leaves a complete run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Dict, List, Optional

from tfseg import fileio
from tfseg.config import SPLITS, TrainConfig
from tfseg.errors import ConfigError, TfsegError
from tfseg.training.fit import (
    build_compiled_model, compile_model, fit_phases, remaining_phases, seed_everything, steps_per_epoch,
)
from tfseg.training.run_folder import (
    CLASS_WEIGHTS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SPLITS_FILE,
    check_stored_splits,
    remove_backup_weights,
    run_dir_of,
    run_status,
    start_run_dir,
    training_state,
    truncate_history,
    HISTORY_FILE,
)

NAN_ADVICE = (
    "the loss or the weights became NaN/Inf: the learning rate is likely too high, or float16 overflowed; "
    "try --precision float32 or a lower --learning-rate (with --force-new to start over)"
)


def train(config: TrainConfig, *, verbose: int = 1, force_new: bool = False) -> Dict[str, Any]:
    """Train ``config`` into its run folder and return the ``metrics.json`` content.

    The data source and the model are opened and built before anything is written,
    so a bad ``--data`` or model option leaves no folder behind.

    Running the same configuration again on the folder:

    - interrupted (crash, Ctrl-C, ``kill -9``): resumes after the last completed epoch with
      the model, optimizer (learning rate included), history, best checkpoint and the
      early-stopping / learning-rate-plateau counters as they were;
    - complete: says so and returns the existing ``metrics.json`` (more ``epochs`` than
      were run, on a run that did not stop early and was trained with ``keep_backup``, trains
      the extra epochs; without it the backup weights were deleted when the run completed);
    - a different configuration: refused with the list of what differs, unless
      ``force_new=True`` (``--force-new``), which moves the old folder aside to
      ``RUN_DIR.old-<timestamp>`` and starts over.

    Args:
        config: every setting; ``config.out`` is RUN_DIR (default ``runs/<model>-<data kind>``).
            With ``config.folds`` K: cross-validation into ``RUN_DIR/fold-1 .. fold-K`` (only fold
            ``config.fold`` when given) and ``RUN_DIR/cv.json``; returns :func:`tfseg.training.cv.train_folds`'s
            summary.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        force_new: move an existing run folder aside instead of resuming it.

    Returns:
        ``{"val": {"dice", "iou", "loss"}, "test": {"dice", "iou", "loss", "num_images"},
        "train_images_per_second", "seconds", "precision", "strategy", "replicas",
        "global_batch_size", "epochs_completed", "best_epoch", "stopped_early", "num_classes",
        "split_sizes", "run_dir"}`` (``global_batch_size`` = ``batch_size`` x ``replicas``;
        see :mod:`tfseg.distribute`).
        ``train_images_per_second`` leaves out the first epoch of each call (tracing)
        and is ``None`` when no other epoch ran; ``seconds`` is the wall time of all
        calls, the first and every resume (each counted up to its last completed epoch, plus the final one).

    Raises:
        ConfigError: impossible settings, or a run folder trained with other settings.
        TfsegError: bad data, or a loss that became NaN/Inf.

    Example:
        >>> from tfseg.config import TrainConfig
        >>> from tfseg.training import train
        >>> metrics = train(TrainConfig(data="synthetic:24", image_size=32, base_filters=4,
        ...                             depth=2, epochs=1, out="/tmp/tiny-run"), verbose=0)  # doctest: +SKIP
        >>> sorted(metrics["test"])  # doctest: +SKIP
        ['dice', 'iou', 'loss', 'num_images']
    """
    config.validate()
    if config.folds is not None:  # cross-validation: one run folder per fold (tfseg.training.cv)
        from tfseg.training.cv import train_folds

        return train_folds(config, verbose, force_new)
    return train_run(config, verbose, force_new)


def train_run(config: TrainConfig, verbose: int = 1, force_new: bool = False) -> Dict[str, Any]:
    """One run folder, ``config.out`` (:func:`train` without its cross-validation; a fold's run is one)."""
    from tfseg import progress

    with progress.quiet(True) if not verbose else contextlib.nullcontext():
        return _train(config, verbose, force_new)


def _train(config: TrainConfig, verbose: int, force_new: bool) -> Dict[str, Any]:
    log = _logger(verbose)
    from tfseg import distribute

    # First: multiworker configures the collective ops, which must precede every other TensorFlow op.
    strategy = distribute.get_strategy(config.strategy)
    config = distribute.worker_config(config, strategy, run_dir_of(config))
    from tfseg.locks import run_lock

    with run_lock(run_dir_of(config)):  # one writer per run folder, from before its state is read
        return _train_locked(config, verbose, force_new, strategy, log)


def _train_locked(config: TrainConfig, verbose: int, force_new: bool, strategy, log) -> Dict[str, Any]:
    from tfseg import distribute

    run_dir = run_dir_of(config)
    status = run_status(config, force_new)
    state = training_state(run_dir) if status in ("resume", "complete") else {}
    distribute.check_workers_agree(strategy, status, int(state.get("epoch", 0)))
    if status == "complete":
        log(f"{run_dir}: already complete ({state.get('epoch')} epochs); nothing to do "
            "(--force-new starts over)")
        metrics = fileio.read_json(fileio.join(run_dir, METRICS_FILE))
        log(summary_line({"run_dir": run_dir, **metrics}))
        return metrics
    start = time.perf_counter()
    from tfseg.data.pipeline import open_dataset_source, resolve_num_classes
    from tfseg.models.registry import get_builder
    from tfseg.precision import precision_policy
    from tfseg.saving import load_keras_model

    get_builder(config.model)  # an unknown model fails before any data is read
    seed_everything(config.seed, config.deterministic)

    with precision_policy(config.precision, config) as policy:
        # skip_bad must reach the file sources, which check every file when opened
        source = open_dataset_source(config.data, image_size=config.image_size, skip_bad=config.skip_bad,
                                     **_class_options(config))
        from tfseg.outputs import refuse_inside_source

        given = config  # config.json holds the settings as given
        if source.ignore_class != config.ignore_class:  # the data's own (a colour map's "ignore" colours)
            config = dataclasses.replace(config, ignore_class=source.ignore_class)
        refuse_inside_source(run_dir, source)  # a run folder among the images would be read as data
        ids = split_ids(source, config)
        # What the data is (bands, value type) and how it is normalised: stored in config.json (tfseg.data.bands).
        data_settings = data_form_settings(config, source)
        config, given = dataclasses.replace(config, **data_settings), dataclasses.replace(given, **data_settings)
        if config.patch_size is not None:
            from tfseg.data.patches import warn_if_patch_larger_than_every_image

            warn_if_patch_larger_than_every_image(source.image_sizes(ids["train"]), config.patch_size, config.scale)
        # a resumed run keeps the split it started with: stop if the data or the split rule moved ids
        splits_stored = status == "resume" and check_stored_splits(run_dir, ids)
        num_classes = resolve_num_classes(source, None if config.num_classes == 1 else config.num_classes)
        # The opened source for every split: one listing and one check (and one skip-bad report).
        # val/test are also read whole, at each image's own size, for the scores of the one path.
        examples = {split: scoring_examples(split, config, num_classes, source) for split in ("val", "test")}
        datasets = {"train": load_split("train", config, num_classes, strategy, source),
                    "val": examples["val"] if config.patch_size is not None
                    else load_split("val", config, num_classes, strategy, source)}
        phases = remaining_phases(config, int(state.get("epoch", 0)))
        balance = run_class_weights(config, source, ids["train"], num_classes)
        weights = None if balance is None else balance["weights"]
        with strategy.scope():  # built now: a bad model option fails before RUN_DIR is touched
            steps = steps_per_epoch(config, len(ids["train"]), strategy)
            model = build_compiled_model(config, num_classes, phases[0], steps, weights) if phases else None

        log(describe_run(config, ids, num_classes, policy, strategy))
        if balance is not None:
            from tfseg.balance import describe

            log(describe(balance))
        if config.border_weight is not None:
            from tfseg.data.borders import describe as describe_borders

            log(describe_borders(config.border_weight))
        start_run_dir(given, status, log)
        if balance is not None:
            fileio.write_json_atomic(fileio.join(run_dir, CLASS_WEIGHTS_FILE), balance)
        if not splits_stored:
            fileio.write_json_atomic(fileio.join(run_dir, SPLITS_FILE), ids)
        done = int(state.get("epoch", 0))
        if status == "resume":
            log(f"{run_dir}: resuming after epoch {done} of {config.epochs}")
        truncate_history(fileio.join(run_dir, HISTORY_FILE), done)
        if model is not None:
            nan_guard = fit_phases(model, phases, config, run_dir, strategy, datasets, len(ids["train"]), state,
                                   start, verbose, weights)
            if nan_guard.fired:
                epoch = int(training_state(run_dir).get("epoch", 0)) + 1
                # model.keras only ever holds finite weights (BestCheckpoint): say whether there is one
                kept = ("model.keras keeps the best finite weights" if fileio.exists(fileio.join(run_dir, MODEL_FILE))
                        else "no epoch ended with finite weights, so there is no model.keras")
                raise TfsegError(f"{run_dir}: training stopped at epoch {epoch}: {NAN_ADVICE}; {kept}")
        # Outside the strategy: each process scores the whole val/test split on its own (exact, no
        # collectives), and the figures and the SavedModel come from a plain single-device model.
        best = load_keras_model(fileio.join(run_dir, MODEL_FILE))
        compile_model(best, config, num_classes, class_weights=weights)  # model.keras holds no loss
        final = training_state(run_dir)
        from tfseg.evaluation import score_split, write_figures
        from tfseg.segment import Settings, keras_windows

        # Every val/test image at its own size through the one path (tfseg.segment), as evaluate and predict.
        settings, predict = Settings.of_model(best, **tiling_options(config)), keras_windows(best)

        def scores(split):
            return score_split(settings, predict, examples[split], loss=best.loss, ignore_class=config.ignore_class,
                               batch_size=config.batch_size, desc=f"scoring {split}", count=len(ids[split]))

        best_epoch = _best_epoch(final)
        log(f"scoring the best model{'' if best_epoch is None else f' (epoch {best_epoch})'} on val "
            f"({len(ids['val'])} images) and test ({len(ids['test'])} images)")
        metrics = {
            "val": scores("val"),
            "test": {**scores("test"), "num_images": len(ids["test"])},
            "train_images_per_second": _rate(final),
            "precision": policy,
            "strategy": distribute.strategy_name(strategy),
            "replicas": int(strategy.num_replicas_in_sync),
            "global_batch_size": distribute.global_batch_size(config.batch_size, strategy),
            "epochs_completed": int(final.get("epoch", 0)),
            "best_epoch": best_epoch,
            "stopped_early": bool(final.get("stopped_early")),
            "num_classes": num_classes,
            "split_sizes": {split: len(ids[split]) for split in SPLITS},
            "run_dir": run_dir,
        }
        if config.patch_size is not None:
            metrics["scored_on"] = {"whole_images": True, "window": config.patch_size, "scale": config.scale,
                                    "overlap": settings.overlap, "blend": settings.blend}
        log("drawing curves.png and predictions.png")
        write_figures(run_dir, settings, predict, examples["test"], ids=ids["test"], ignore_class=config.ignore_class)
        from tfseg.export import export_saved_model

        log("exporting the SavedModel to saved_model/1")
        export_saved_model(best, fileio.join(run_dir, "saved_model"), version=1, overwrite=True,
                           into_run_folder=True, **tiling_options(config))
    metrics["seconds"] = float(state.get("seconds", 0.0)) + time.perf_counter() - start
    fileio.write_json_atomic(fileio.join(run_dir, METRICS_FILE), metrics)
    if not config.keep_backup:
        remove_backup_weights(run_dir)  # complete: the resume state's weights are not needed any more
    log(summary_line(metrics))
    distribute.remove_worker_dir(run_dir, strategy)  # a non-chief worker's copy is done with
    return metrics


def summary_line(metrics: Dict[str, Any]) -> str:
    """The one line a finished run ends with: test scores, epochs, best epoch, time and the run folder."""
    test = metrics.get("test", {})
    loss = test.get("loss")
    scores = f"test dice {test.get('dice', float('nan')):.4f}  iou {test.get('iou', float('nan')):.4f}"
    if loss is not None and loss == loss:
        scores += f"  loss {loss:.4f}"
    epochs = metrics.get("epochs_completed")
    best = metrics.get("best_epoch")
    trained = f"{epochs} epoch{'s' if epochs != 1 else ''}" + (f", best {best}" if best is not None else "")
    if metrics.get("stopped_early"):
        trained += ", stopped early"
    seconds = metrics.get("seconds")
    took = f", {seconds:.0f} s" if seconds is not None else ""
    return (f"done: {scores} ({test.get('num_images', '?')} test images; {trained}{took}); "
            f"run folder {metrics.get('run_dir')}")


def describe_run(config: TrainConfig, ids: Dict[str, List[str]], num_classes: int, policy: str, strategy) -> str:
    """What a run is about to train on, in plain words (the first line ``train`` prints)."""
    from tfseg import distribute

    total = sum(len(ids[split]) for split in SPLITS)
    classes = "binary masks (1 class)" if num_classes == 1 else f"{num_classes} classes"
    if config.ignore_class is not None:
        classes += f" (mask value {config.ignore_class} ignored)"
    if config.patch_size is not None:
        size = (f"random {config.patch_size}x{config.patch_size} patches at scale {config.scale:g}, "
                "val/test on whole images")
    else:
        size = f"images resized to {config.image_size}x{config.image_size}"
    replicas = int(strategy.num_replicas_in_sync)
    pixels = ""
    if config.channels is not None and (config.channels, config.input_dtype) != (3, "uint8"):
        from tfseg.data.bands import Form, Normalization

        pixels = (f"; {Form(config.channels, config.input_dtype, photo=False).describe()}, normalised "
                  f"{Normalization.parse(config.normalization).describe()}")
    return (f"training {config.model} on {config.data}: {total} samples, split train {len(ids['train'])} / "
            f"val {len(ids['val'])} / test {len(ids['test'])}; {classes}{pixels}; {size}; precision {policy}; "
            f"strategy {distribute.strategy_name(strategy)} ({replicas} replica{'s' if replicas != 1 else ''}, "
            f"batch {config.batch_size} per replica, {distribute.global_batch_size(config.batch_size, strategy)} "
            f"in all); {describe_learning_rate(config)}; {config.epochs} epochs into {run_dir_of(config)}")


def describe_learning_rate(config: TrainConfig) -> str:
    """``Adam, learning rate 0.002 (one-epoch warm-up, cosine decay)``: the rate as ``--help`` and
    ``config.json``'s differences write it (``%g``)."""
    schedule = ("one-epoch warm-up, cosine decay" if config.lr_schedule == "cosine"
                else "halved after epochs without a better val_dice")
    return f"Adam, learning rate {config.learning_rate:g} ({schedule})"


def _class_options(config: TrainConfig) -> Dict[str, Any]:
    # Every source kind takes both when opened (the file sources check every mask with them);
    # num_classes 1 (the default) lets the data say, e.g. a colour map's or the shards' classes.
    return {"num_classes": None if config.num_classes == 1 else config.num_classes,
            "ignore_class": config.ignore_class}


def run_class_weights(config: TrainConfig, source, train_ids, num_classes: int) -> Optional[Dict[str, Any]]:
    """The run's resolved ``--class-weights`` (:func:`tfseg.balance.resolve_class_weights`; ``auto``:
    counted on the training split), or ``None``; stored in RUN_DIR/class_weights.json."""
    from tfseg.balance import resolve_class_weights
    from tfseg.data.inspect import class_pixels

    return resolve_class_weights(config.class_weights, num_classes, lambda: class_pixels(source, train_ids),
                                 config.ignore_class)


def data_form_settings(config: TrainConfig, source) -> Dict[str, Any]:
    """``{"normalization": dict, "channels": int, "input_dtype": str}`` of a run: the source's bands and
    value type, and the normalisation (:func:`tfseg.data.pipeline.resolve_normalization`: ``auto`` gives
    ``x / 255`` for 8-bit images, else per-band numbers measured on the training split)."""
    from tfseg.data.pipeline import resolve_normalization

    norm = resolve_normalization(config.normalization, source, config.seed, config.split_fractions())
    form = source.image_form
    return {"normalization": norm.to_dict(), "channels": form.channels, "input_dtype": form.dtype}


def tiling_options(config: TrainConfig) -> Dict[str, Any]:
    """Inference options of a run (``Settings.of_model``, ``export_saved_model``): its images' value type
    and normalisation; a patch-trained model serves whole images by sliding window."""
    options = config.pixel_options()
    if config.patch_size is None:
        return options
    return {**options, "tiled": True, "scale": config.scale}


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
            f"data {config.data}: the {'/'.join(empty)} split is empty ({counts}); "
            "use more samples or change val_fraction/test_fraction"
        )
    return ids


def load_split(split: str, config: TrainConfig, num_classes: int, strategy=None, source=None):
    """The batched ``tf.data.Dataset`` that ``model.fit`` reads for one split (augmented and shuffled for ``train``).

    Under ``strategy`` it yields global batches (``batch_size`` x replicas) and carries
    the auto-shard policy of :func:`tfseg.distribute.auto_shard_policy`. ``source``: the
    already opened source of ``config.data`` (default: open it). With ``config.patch_size``
    it yields random patches (``train`` only: a patch-trained run is validated on whole
    images, :func:`scoring_examples`).
    """
    from tfseg.data import load_dataset
    from tfseg.distribute import pipeline_options, sharded

    train_split = split == "train"
    # Train on random crops at native resolution, or on images resized to the model's size.
    size = ({"patch_size": config.patch_size, "scale": config.scale, "foreground_fraction": config.foreground_fraction}
            if config.patch_size is not None else {"image_size": config.image_size})
    dataset = load_dataset(
        config.data if source is None else source,
        split=split,
        augment=config.augment and train_split,
        seed=config.seed,
        cache=config.cache,
        fractions=config.split_fractions(),
        num_classes=num_classes,
        repeat=train_split and config.steps_per_epoch is not None,
        skip_bad=config.skip_bad,
        normalization=config.normalization,
        border_weight=config.border_weight if train_split else None,
        **size,
        **pipeline_options(config.batch_size, strategy, split),
    )
    return sharded(dataset, config.data)


def scoring_examples(split: str, config: TrainConfig, num_classes: int, source=None):
    """One split's images and masks at their own size, in storage form (:func:`tfseg.data.pipeline.native_examples`):
    what the run's val/test scores, figures and whole-image validation predict through :mod:`tfseg.segment`."""
    from tfseg.data.pipeline import native_examples

    return native_examples(config.data if source is None else source, split=split, seed=config.seed,
                           fractions=config.split_fractions(), num_classes=num_classes, cache=config.cache,
                           skip_bad=config.skip_bad)


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
