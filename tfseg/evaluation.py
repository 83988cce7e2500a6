"""``evaluate(model, data, split)``: scores, per-image rows and figures of a saved model on one split."""

from __future__ import annotations

import csv
import io
from typing import Any, Dict, Optional, Sequence

import numpy as np

from tfseg import fileio
from tfseg.config import SPLITS, TrainConfig
from tfseg.errors import ConfigError, TfsegError

PER_IMAGE_COLUMNS = ("id", "dice", "iou", "hausdorff95", "mean_surface_distance")
# What evaluate(out=...) writes.
OUTPUT_FILES = ("metrics.json", "per_image.csv", "per_class.csv", "dice_histogram.png", "best_worst.png")
PER_CLASS_COLUMNS = ("class", "iou", "dice", "true_pixels", "predicted_pixels")


def evaluate_dataset(model, dataset, desc: str = "scoring") -> Dict[str, float]:
    """``model.evaluate`` as ``{"dice", "iou", "loss", ...}`` (floats), with a :mod:`tfseg.progress` bar."""
    import keras

    from tfseg import progress

    with progress.bar(num_batches(dataset), desc, unit="batch") as counter:
        class CountBatches(keras.callbacks.Callback):
            def on_test_batch_end(self, batch, logs=None):
                counter.update()

        values = model.evaluate(dataset, verbose=0, return_dict=True, callbacks=[CountBatches()])
    return {name: float(value) for name, value in values.items()}


def num_batches(dataset) -> Optional[int]:
    """The batches of a finite ``tf.data.Dataset`` when tf.data knows them, else ``None`` (no time estimate)."""
    try:
        count = int(dataset.cardinality())
    except (AttributeError, TypeError, ValueError):
        return None
    return count if count >= 0 else None


def scores_of_predictions(predict, dataset, num_classes: int, loss=None, desc: str = "scoring",
                          ignore_class: Optional[int] = None) -> Dict[str, float]:
    """Dice, IoU (and ``loss`` when given) of ``predict(images)`` over a dataset, like ``model.evaluate``.

    Dice and IoU accumulate their pixel counts over the whole split (:func:`tfseg.metrics.default_metrics`),
    exactly as ``model.evaluate`` does; the loss is the mean over batches. Used for predictions
    ``model.evaluate`` cannot make: whole images by sliding window, flip TTA.

    Args:
        predict: float32 images ``[B, H, W, 3]`` -> probabilities ``[B, H, W, K]``.
        dataset: ``(images, masks)`` batches (whole images of any size with batch 1).
        num_classes: the model's classes.
        loss: a Keras loss, or ``None`` (no ``loss`` entry).
        desc: the progress bar's words (:mod:`tfseg.progress`).
        ignore_class: a mask value whose pixels Dice and IoU leave out.

    Returns:
        ``{"dice", "iou"}`` (+ ``"loss"``) as floats.
    """
    import keras

    from tfseg.metrics import default_metrics

    from tfseg import progress

    metrics = default_metrics(num_classes, ignore_class)
    losses = []
    for images, masks in progress.bar(num_batches(dataset), desc, unit="batch", iterable=dataset):
        probabilities = keras.ops.convert_to_tensor(predict(images))
        for metric in metrics:
            metric.update_state(masks, probabilities)
        if loss is not None:
            losses.append(float(loss(masks, probabilities)))
    scores = {metric.name: float(metric.result()) for metric in metrics}
    if loss is not None:
        scores["loss"] = float(np.mean(losses)) if losses else float("nan")
    return scores


def whole_image_predict(model, scale: float = 1.0, tta=None, tiled: bool = True):
    """``images -> probabilities`` of ``model`` for whole images of any size (numpy out).

    ``tiled``: sliding window over the image times ``scale`` (:func:`tfseg.tiling.predict_whole_images`);
    otherwise the model runs on its input size (images resized to it and the probabilities
    resized back, as ``tfseg predict`` does), with flip TTA on the whole image when ``tta="flips"``.
    """
    import keras

    from tfseg.tiling import check_tta, flip_tta, predict_whole_images

    tta = check_tta(tta)
    if tiled:
        return lambda images: keras.ops.convert_to_numpy(predict_whole_images(model, images, scale=scale, tta=tta))
    from tfseg.saving import model_input_size

    size = model_input_size(model)
    run = flip_tta(model.predict_on_batch) if tta == "flips" else model.predict_on_batch

    def predict(images):
        height, width = (int(d) for d in images.shape[1:3])
        inputs = images if (height, width) == size else keras.ops.image.resize(
            images, size, interpolation="bilinear", antialias=True)
        probabilities = keras.ops.cast(run(inputs), "float32")
        if (height, width) != size:
            probabilities = keras.ops.image.resize(probabilities, (height, width), interpolation="bilinear")
        return keras.ops.convert_to_numpy(probabilities)

    return predict


def predicted_masks(probabilities, threshold: float = 0.5) -> np.ndarray:
    """uint8 ``[B,H,W]`` masks by :func:`tfseg.metrics.probabilities_to_mask` (numpy in, numpy out)."""
    import keras

    from tfseg.metrics import probabilities_to_mask

    return keras.ops.convert_to_numpy(probabilities_to_mask(np.asarray(probabilities), threshold))


def write_figures(run_dir: str, model, test_dataset, num_classes: int, count: int = 4, predict=None,
                  ids: Optional[Sequence[str]] = None, ignore_class: Optional[int] = None) -> None:
    """``curves.png`` from ``history.csv`` and ``predictions.png`` for ``count`` test images.

    ``ids``: the test split's sample ids in dataset order, shown in the picture titles (as in
    ``per_image.csv``). ``ignore_class``: pixels of that mask value count in no Dice and draw no
    true outline.

    ``predict``: ``images -> probabilities`` for whole images of any size (e.g.
    :func:`whole_image_predict`); the test dataset then holds one image per batch, and
    the figure cuts them to a common size. (:mod:`tfseg.viz` writes each PNG through a
    temporary file and a rename.)
    """
    from tfseg.metrics import dice_score
    from tfseg.viz import plot_history, plot_predictions

    plot_history(fileio.join(run_dir, "history.csv"), fileio.join(run_dir, "curves.png"))
    if predict is not None:
        pairs = [(images.numpy()[0], masks.numpy()[0, ..., 0], np.asarray(predict(images))[0])
                 for images, masks in test_dataset.take(count)]
        images, true, probabilities = (_stacked([pair[i] for pair in pairs]) for i in range(3))
        dice = [dice_score(t, p, num_classes=num_classes, ignore_class=ignore_class)
                for t, p in zip(true, probabilities)]
        plot_predictions(images, _shown(true, ignore_class), predicted_masks(probabilities),
                         fileio.join(run_dir, "predictions.png"), dice=dice, ids=ids)
        return
    images, masks = next(iter(test_dataset.unbatch().batch(count).take(1)))
    images, true = images.numpy(), masks.numpy()[..., 0]
    probabilities = np.asarray(model.predict(images, verbose=0))
    dice = [dice_score(t, p, num_classes=num_classes, ignore_class=ignore_class) for t, p in zip(true, probabilities)]
    plot_predictions(images, _shown(true, ignore_class), predicted_masks(probabilities),
                     fileio.join(run_dir, "predictions.png"), dice=dice, ids=ids)


def _shown(true, ignore_class):
    # An ignored value (VOC's 255 borders) is no object: the figures outline the classes only.
    return true if ignore_class is None else np.where(true == ignore_class, 0, true)


def model_image_size(model) -> int:
    """The side of a model's square input.

    Raises:
        TfsegError: the input is not a fixed square ``[batch, N, N, 3]``.
    """
    from tfseg.saving import model_input_size

    height, width = model_input_size(model)
    if height != width:
        raise TfsegError(f"model {model.name!r}: input {height}x{width} is not square")
    return height


def per_image_rows(model, dataset, ids: Sequence[str], num_classes: int, predict=None,
                   desc: str = "per-image scores", ignore_class: Optional[int] = None, confusion=None):
    """One row per image: ``{"id", "dice", "iou", "hausdorff95", "mean_surface_distance"}``, plus the
    arrays for figures (``images uint8 [N,H,W,3]``, ``true``, ``predicted`` ``[N,H,W]``; images of
    different sizes are cut to the smallest height and width, from the top left, for the figures).

    ``predict``: ``images -> probabilities`` (default ``model.predict_on_batch``), e.g.
    :func:`whole_image_predict` for whole images of any size.

    Dice and IoU follow :class:`tfseg.metrics.Dice`/``IoU`` (empty truth and empty
    prediction score 1). The boundary distances (:mod:`tfseg.boundary`, pixels) compare
    foreground (any class but 0) with foreground: 0 when both are empty, ``inf`` when one is.
    Pixels whose true value is ``ignore_class`` count nowhere. ``confusion``: an int64
    ``[K, K]`` array (K = ``max(num_classes, 2)``, rows true, columns predicted) that the
    pixel counts are added to (:func:`per_class_scores`).
    """
    from tfseg.boundary import surface_metrics
    from tfseg.metrics import dice_score, iou_score

    from tfseg import progress

    predict = model.predict_on_batch if predict is None else predict
    rows, images, trues, preds = [], [], [], []
    counter = progress.bar(len(ids), desc, unit="image")
    for batch_images, batch_masks in dataset:
        probabilities = np.asarray(predict(batch_images))
        predicted = predicted_masks(probabilities)
        for image, mask, probs, pred in zip(batch_images.numpy(), batch_masks.numpy(), probabilities, predicted):
            true = mask[..., 0]
            valid = np.ones(true.shape, bool) if ignore_class is None else true != ignore_class
            rows.append({
                "dice": dice_score(true, probs, num_classes=num_classes, ignore_class=ignore_class),
                "iou": iou_score(true, probs, num_classes=num_classes, ignore_class=ignore_class),
                # both distances from one pair of distance maps
                **surface_metrics((pred > 0) & valid, (true > 0) & valid),
            })
            if confusion is not None:
                classes = confusion.shape[0]
                pairs = true[valid].astype(np.int64) * classes + pred[valid].astype(np.int64)
                confusion += np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
            images.append(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
            trues.append(np.where(valid, true, 0).astype(np.uint8))  # figures outline classes, not ignored pixels
            preds.append(pred)
        counter.update(len(batch_masks))
    counter.close()
    if len(rows) != len(ids):
        raise TfsegError(f"evaluate: the pipeline gave {len(rows)} images for {len(ids)} sample ids")
    for sample_id, row in zip(ids, rows):
        row["id"] = sample_id
    return rows, _stacked(images), _stacked(trues), _stacked(preds)


def _stacked(arrays):
    # Whole images differ in size: cut each to the smallest height and width so that they stack.
    height = min(a.shape[0] for a in arrays)
    width = min(a.shape[1] for a in arrays)
    return np.stack([a[:height, :width] for a in arrays])


def per_class_scores(confusion: np.ndarray) -> Dict[str, Any]:
    """IoU and Dice of every class from a pixel confusion matrix (rows true, columns predicted).

    ``IoU_c = TP / (TP + FP + FN)``, ``Dice_c = 2 TP / (2 TP + FP + FN)`` over all pixels of the
    split (ignored pixels excluded). A class with no true and no predicted pixel has no score
    (``None``) and stays out of the means; the means are unweighted over the other classes.

    Returns:
        ``{"classes": [{"class", "iou", "dice", "true_pixels", "predicted_pixels"}, ...],
        "mean_iou", "mean_dice", "classes_scored"}``.
    """
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    true_pixels, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    union = true_pixels + predicted - tp
    rows = []
    for c in range(len(tp)):
        scored = union[c] > 0
        rows.append({"class": c, "iou": float(tp[c] / union[c]) if scored else None,
                     "dice": float(2 * tp[c] / (true_pixels[c] + predicted[c])) if scored else None,
                     "true_pixels": int(true_pixels[c]), "predicted_pixels": int(predicted[c])})
    scored = [row for row in rows if row["iou"] is not None]
    return {"classes": rows,
            "mean_iou": float(np.mean([row["iou"] for row in scored])) if scored else None,
            "mean_dice": float(np.mean([row["dice"] for row in scored])) if scored else None,
            "classes_scored": len(scored)}


def format_per_class(table: Dict[str, Any]) -> str:
    """The table of :func:`per_class_scores` as aligned text (``-`` for a class with no pixel)."""
    def number(value):
        return "     -" if value is None else f"{value:.4f}"

    lines = ["class       IoU    Dice  true pixels  predicted"]
    for row in table["classes"]:
        lines.append(f"{row['class']:>5}  {number(row['iou'])}  {number(row['dice'])}  "
                     f"{row['true_pixels']:>11}  {row['predicted_pixels']:>9}")
    lines.append(f"{'mean':>5}  {number(table['mean_iou'])}  {number(table['mean_dice'])}  "
                 f"(over the {table['classes_scored']} classes with pixels)")
    return "\n".join(lines)


def write_per_class_csv(path: str, table: Dict[str, Any]) -> None:
    """``per_class.csv``: one row per class, columns :data:`PER_CLASS_COLUMNS`, then a ``mean`` row."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=PER_CLASS_COLUMNS)
    writer.writeheader()
    writer.writerows({key: ("" if row[key] is None else row[key]) for key in PER_CLASS_COLUMNS}
                     for row in table["classes"])
    writer.writerow({"class": "mean", "iou": "" if table["mean_iou"] is None else table["mean_iou"],
                     "dice": "" if table["mean_dice"] is None else table["mean_dice"],
                     "true_pixels": "", "predicted_pixels": ""})
    fileio.write_text_atomic(path, text.getvalue())


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
    """``per_image.csv``: one row per image, columns :data:`PER_IMAGE_COLUMNS`."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=PER_IMAGE_COLUMNS)
    writer.writeheader()
    writer.writerows({key: row[key] for key in PER_IMAGE_COLUMNS} for row in rows)
    fileio.write_text_atomic(path, text.getvalue())


def evaluate(model_path: str, data: Optional[str] = None, split: str = "test", out: Optional[str] = None,
             batch_size: Optional[int] = None, seed: Optional[int] = None,
             fractions: Optional[Sequence[float]] = None, tiled: Optional[bool] = None,
             tta: Optional[str] = None, overwrite: bool = False,
             ignore_class: Optional[int] = None) -> Dict[str, Any]:
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
        tiled: score whole images at native resolution by sliding window (:mod:`tfseg.tiling`);
            ``None``: when the run trained on patches (``patch_size`` in its ``config.json``,
            whose ``scale`` is then used). Otherwise images are resized to the model's input.
        tta: ``"flips"``: average the identity and the two flips (``None``/``"none"``: off).
        ignore_class: a mask value whose pixels no score counts (default: the run's ``ignore_class``).
        overwrite: replace the files of an earlier evaluation in ``out``. Files tfseg did not
            write are never replaced, and ``out`` may not be a run folder (only training writes
            there; a new sub-folder such as ``RUN_DIR/eval`` is fine): see :mod:`tfseg.outputs`.

    Returns:
        ``{split: {"dice", "iou", "loss", "num_images"}, "per_image": {...}, "per_class": {...},
        "model", "data", "ignore_class"}``.
        ``dice``/``iou`` are over all pixels of the split (as in training); ``per_image``
        summarises the per-image values (:func:`summarize_rows`); ``per_class`` holds the IoU and
        Dice of each class and their means (:func:`per_class_scores`; ``per_class.csv`` in ``out``).

    When the model is a run's and the data, seed and fractions are the run's, the split is
    compared with the run's ``splits.json`` first.

    Raises:
        ConfigError: an unknown split, no data source, or an empty split.
        DataError: the run's split no longer matches its ``splits.json`` (lists the ids that moved).
        TfsegError: the model cannot be loaded, or ``out`` cannot be written as above (checked
            before the model is loaded).
    """
    from tfseg.data import load_dataset
    from tfseg.data.pipeline import open_dataset_source
    from tfseg.metrics import default_metrics
    from tfseg.saving import load_keras_model, locate_model

    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    path, run_config = locate_model(model_path)
    if out:
        from tfseg import outputs

        outputs.check_output_folder(out)
        outputs.refuse_run_folder(out)
        outputs.check_targets(out, OUTPUT_FILES, overwrite, inputs=[path])
    defaults = run_config or TrainConfig()
    data = data or (run_config.data if run_config else None)
    if not data:
        raise ConfigError(f"data: required ({path} is not inside a run folder with a config.json)")
    seed = defaults.seed if seed is None else int(seed)
    fractions = tuple(fractions) if fractions is not None else defaults.split_fractions()
    batch_size = int(batch_size or defaults.batch_size)

    from tfseg.tiling import check_tta

    try:
        tta = check_tta(tta)
    except ValueError as err:
        raise ConfigError(f"--{err}") from None
    patch_trained = run_config is not None and run_config.patch_size is not None
    tiled = patch_trained if tiled is None else bool(tiled)
    scale = run_config.scale if patch_trained else 1.0
    model = load_keras_model(path)
    image_size = model_image_size(model)
    num_classes = int(model.outputs[0].shape[-1])
    if ignore_class is None and run_config is not None:
        ignore_class = run_config.ignore_class
    if ignore_class is not None:
        from tfseg.config import check_ignore_class

        ignore_class = check_ignore_class(ignore_class, num_classes)
    bare = not getattr(model, "compiled", False) or getattr(model, "loss", None) is None
    if bare and run_config is not None:  # a run's model.keras holds no loss (it loads with plain Keras)
        from tfseg.training.fit import compile_model

        compile_model(model, run_config, num_classes)
        bare = False
    if bare:  # a model saved without its loss: score it, with no loss to report (Keras needs one to evaluate)
        import keras

        model.compile(loss=lambda y_true, y_pred: keras.ops.zeros(()),
                      metrics=default_metrics(num_classes, ignore_class))
    elif ignore_class is not None:  # its own loss and metrics, leaving out the ignored pixels
        from tfseg.losses import IgnoreClassLoss

        loss = model.loss if isinstance(model.loss, IgnoreClassLoss) else IgnoreClassLoss(model.loss, ignore_class)
        model.compile(loss=loss, metrics=default_metrics(num_classes, ignore_class))
    # Opened once (listed and checked once), with the model's classes for the kinds that take them.
    # (``synthetic`` is generated at one size: the run's image size when scoring whole images.)
    native = defaults.image_size if tiled and run_config is not None else image_size
    source = open_dataset_source(data, image_size=native if tiled else image_size,
                                 num_classes=num_classes if num_classes > 1 else None, ignore_class=ignore_class)
    if out:
        outputs.refuse_inside_source(out, source)  # figures among the masks would be read back as data
    ids = list(source.split_ids(split, seed=seed, fractions=fractions))
    if run_config is not None and (str(data), seed, tuple(fractions)) == (
        str(run_config.data), run_config.seed, tuple(run_config.split_fractions())
    ):
        # the run's own split: it must still be the one the run trained with (splits.json)
        from tfseg.training.run_folder import check_stored_splits

        every = {name: list(source.split_ids(name, seed=seed, fractions=fractions)) for name in SPLITS}
        check_stored_splits(fileio.dirname(fileio.abspath(path)), every)
    if not ids:
        raise ConfigError(f"data {data}: the {split} split is empty")
    if tiled:  # whole images at their own size, one per batch
        dataset = load_dataset(source, split=split, image_size=None, batch_size=1, augment=False,
                               shuffle=False, seed=seed, fractions=fractions, num_classes=num_classes)
    else:
        dataset = load_dataset(source, split=split, image_size=image_size, batch_size=batch_size, augment=False,
                               shuffle=False, seed=seed, fractions=fractions, num_classes=num_classes)
    predict = None
    if tiled or tta != "none":
        predict = whole_image_predict(model, scale=scale, tta=tta, tiled=tiled)
        scores = scores_of_predictions(predict, dataset, num_classes,
                                       loss=None if bare else getattr(model, "loss", None), desc=f"scoring {split}",
                                       ignore_class=ignore_class)
    else:
        scores = evaluate_dataset(model, dataset, desc=f"scoring {split}")
        if bare:
            scores["loss"] = None
    scores = {**scores, "num_images": len(ids)}
    confusion = np.zeros((max(num_classes, 2),) * 2, np.int64)
    rows, images, trues, preds = per_image_rows(model, dataset, ids, num_classes, predict=predict,
                                                desc=f"per-image scores of {split}", ignore_class=ignore_class,
                                                confusion=confusion)
    result = {split: scores, "per_image": summarize_rows(rows), "per_class": per_class_scores(confusion),
              "model": path, "data": str(data), "tiled": tiled, "tta": tta, "ignore_class": ignore_class}
    if tiled:
        from tfseg.saving import model_input_size
        from tfseg.tiling import DEFAULT_BLEND, DEFAULT_OVERLAP

        result["tiling"] = {"window": list(model_input_size(model)), "scale": scale, "overlap": DEFAULT_OVERLAP,
                            "blend": DEFAULT_BLEND}
    if out:
        from tfseg.viz import plot_best_worst, plot_dice_histogram

        # One set: the previous evaluation's files go first, metrics.json comes last (tfseg.outputs.begin_set).
        outputs.begin_set(out, OUTPUT_FILES, "tfseg evaluate")
        write_rows_csv(fileio.join(out, "per_image.csv"), rows)
        write_per_class_csv(fileio.join(out, "per_class.csv"), result["per_class"])
        dice = np.array([row["dice"] for row in rows])
        plot_dice_histogram(dice, fileio.join(out, "dice_histogram.png"))
        plot_best_worst(images, trues, preds, dice, fileio.join(out, "best_worst.png"),
                        ids=[row["id"] for row in rows])
        fileio.write_json_atomic(fileio.join(out, "metrics.json"), result)
        outputs.finish_set(out, OUTPUT_FILES)
    return result
