"""``evaluate(model, data, split)``: scores, per-image rows and figures of a saved model on one split.

Every score here is of whole images at their own size: each image goes through the one path
from image to mask (:mod:`tfseg.segment`, what ``tfseg predict`` runs) and is compared with its
own mask (:func:`score_split`). ``tfseg evaluate`` and the val/test scores of a run's
``metrics.json`` are both this. With a clean-up of the masks (``settings.cleanup``,
:mod:`tfseg.postprocess`) the scores are of the cleaned masks, and the Dice and IoU of the masks
before it are reported beside them (``without_cleanup``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfseg import fileio
from tfseg.config import SPLITS, TrainConfig
from tfseg.errors import ConfigError, TfsegError
from tfseg.postprocess import mask_as_probabilities
from tfseg.stats import RESAMPLES

PER_IMAGE_COLUMNS = ("id", "dice", "iou", "hausdorff95", "mean_surface_distance")
# What evaluate(out=...) writes.
OUTPUT_FILES = ("metrics.json", "per_image.csv", "per_class.csv", "dice_histogram.png", "best_worst.png")
PER_CLASS_COLUMNS = ("class", "iou", "dice", "true_pixels", "predicted_pixels")


def predicted_examples(settings, predict, examples, batch_size: int = 8) -> Iterator[Tuple]:
    """Yield ``(image uint8 [H, W, 3], mask [H, W, 1], probabilities float32 [H, W, K])`` (numpy) per example.

    Each image goes through the one path (:meth:`tfseg.segment.Settings.images_probabilities`)
    at its own size; ``batch_size`` images share a model call in resize mode.

    Args:
        settings: :class:`tfseg.segment.Settings`.
        predict: the adapter (e.g. :func:`tfseg.segment.keras_windows` of a model).
        examples: ``(image, mask)`` pairs in storage form, one per element
            (:func:`tfseg.data.pipeline.native_examples`), in order.
        batch_size: images per model call.
    """
    pending = []

    def flush():
        images = [image for image, _ in pending]
        for (image, mask), probabilities in zip(pending, settings.images_probabilities(predict, images)):
            yield image, mask, probabilities
        pending.clear()

    for image, mask in examples:
        pending.append((np.asarray(image), np.asarray(mask)))
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()


class SplitScores:
    """Dice and IoU over all pixels of a split (as ``model.evaluate`` counts them), and the mean loss over its images.

    Dice and IoU accumulate their pixel counts over every image added
    (:func:`tfseg.metrics.default_metrics`); the loss is computed per image (at its own size)
    and averaged over the images. ``ignore_class``: a mask value whose pixels no score counts.
    ``ignore_empty``: a class absent from truth and prediction stays out of the mean
    (:func:`tfseg.metrics.mean_over_classes`; False: it counts as 1).
    """

    def __init__(self, num_classes: int, loss=None, ignore_class: Optional[int] = None, ignore_empty: bool = True):
        import keras

        from tfseg.metrics import default_metrics

        self.metrics = default_metrics(num_classes, ignore_class, ignore_empty=ignore_empty)
        self.loss = keras.losses.get(loss) if isinstance(loss, str) else loss
        self.losses = []

    def add(self, mask, probabilities) -> None:
        true, predicted = mask[np.newaxis], probabilities[np.newaxis]
        for metric in self.metrics:
            metric.update_state(true, predicted)
        if self.loss is not None:
            self.losses.append(float(self.loss(true, predicted)))

    def result(self) -> Dict[str, Optional[float]]:
        scores = {metric.name: float(metric.result()) for metric in self.metrics}
        if self.loss is not None:
            scores["loss"] = float(np.mean(self.losses)) if self.losses else float("nan")
        return scores


class ImageRows:
    """One row per image: ``{"dice", "iou", "hausdorff95", "mean_surface_distance"}``, the per-class pixel
    confusion and the arrays for figures.

    Dice and IoU follow :class:`tfseg.metrics.Dice`/``IoU`` (the mean over the classes present in
    the image's truth or prediction, :func:`tfseg.metrics.mean_over_classes`; ``NaN`` when no class
    is, e.g. an empty truth and an empty prediction; ``ignore_empty=False``: an absent class
    counts as 1). The boundary distances (:mod:`tfseg.boundary`, pixels) compare
    foreground (any class but 0) with foreground: 0 when both are empty, ``inf`` when one is.
    Pixels whose true value is ``ignore_class`` count nowhere (not in the scores, the distances,
    the confusion or the figures' outlines). ``confusion``: int64 ``[K, K]`` (K = ``max(num_classes,
    2)``, rows true, columns predicted; :func:`per_class_scores`).
    """

    def __init__(self, settings, ignore_class: Optional[int] = None, ignore_empty: bool = True):
        from tfseg.metrics import default_metrics

        self.settings, self.ignore_class, self.ignore_empty = settings, ignore_class, bool(ignore_empty)
        self.num_classes = settings.num_classes
        classes = max(self.num_classes, 2)
        self.confusion = np.zeros((classes, classes), np.int64)
        # the scores of each image's counts: the metrics of a run (Dice, IoU), by their one rule
        self.scorers = {m.name: m for m in default_metrics(self.num_classes, ignore_class, ignore_empty)}
        self.counts = []  # per image: float64 [4, K] (tp, fp, fn, tn; tfseg.metrics.confusion_counts)
        self.rows, self.images, self.trues, self.preds = [], [], [], []

    def add(self, image, mask, probabilities, predicted=None) -> None:
        """One image; ``predicted``: its mask when already made (:meth:`tfseg.segment.Settings.cleaned_mask`)."""
        from keras import ops

        from tfseg.boundary import surface_metrics
        from tfseg.metrics import confusion_counts

        true = mask[..., 0]
        predicted = self.settings.cleaned_mask(probabilities) if predicted is None else predicted
        if self.settings.cleanup.enabled:  # scored as the cleaned mask
            probabilities = mask_as_probabilities(predicted, self.num_classes)
        ignore_class = self.ignore_class
        valid = np.ones(true.shape, bool) if ignore_class is None else true != ignore_class
        counts = confusion_counts(mask[np.newaxis], probabilities[np.newaxis], num_classes=self.num_classes,
                                  ignore_class=ignore_class)
        counts = np.stack([np.asarray(ops.convert_to_numpy(c), np.float64)[0] for c in counts])
        self.counts.append(counts)
        self.rows.append({
            "dice": float(self.scorers["dice"].score_counts(*counts)),
            "iou": float(self.scorers["iou"].score_counts(*counts)),
            # both distances from one pair of distance maps
            **surface_metrics((predicted > 0) & valid, (true > 0) & valid),
        })
        classes = self.confusion.shape[0]
        pairs = true[valid].astype(np.int64) * classes + predicted[valid].astype(np.int64)
        self.confusion += np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
        self.images.append(image)
        self.trues.append(np.where(valid, true, 0).astype(np.uint8))  # figures outline classes, not ignored pixels
        self.preds.append(predicted)

    def figures(self):
        """``(images uint8 [N, H, W, 3], true, predicted [N, H, W])``, cut to a common size (:func:`_stacked`)."""
        return _stacked(self.images), _stacked(self.trues), _stacked(self.preds)

    def named(self, ids: Sequence[str]):
        """The rows, each with its ``"id"``.

        Raises:
            TfsegError: not one row per id.
        """
        if len(self.rows) != len(ids):
            raise TfsegError(f"evaluate: the pipeline gave {len(self.rows)} images for {len(ids)} sample ids")
        for sample_id, row in zip(ids, self.rows):
            row["id"] = sample_id
        return self.rows


def score_split(settings, predict, examples, loss=None, ignore_class: Optional[int] = None, batch_size: int = 8,
                desc: str = "scoring", count: Optional[int] = None,
                rows: Optional[ImageRows] = None, ignore_empty: bool = True,
                scores: Optional[SplitScores] = None) -> Dict[str, Optional[float]]:
    """Dice, IoU (and ``loss`` when given) of the one path's predictions over one split, each image at its own size.

    What ``tfseg evaluate``, training's val/test scores (``metrics.json``) and the whole-image
    validation of a patch-trained run report (:class:`SplitScores`).

    Args:
        settings, predict, examples, batch_size: as in :func:`predicted_examples`.
        loss: a Keras loss (or its name), or ``None`` (no ``loss`` entry).
        ignore_class: a mask value whose pixels no score counts.
        desc, count: the progress bar's words and length (:mod:`tfseg.progress`).
        rows: an :class:`ImageRows` that every image is also added to (one pass for both).
        ignore_empty: a class absent from truth and prediction stays out of the mean (False: counts as 1).
        scores: the :class:`SplitScores` to add to (then ``loss``, ``ignore_class`` and ``ignore_empty``
            are its own); default: a new one.

    Returns:
        ``{"dice", "iou"}`` (+ ``"loss"``) as floats. With a clean-up (``settings.cleanup``) Dice and
        IoU are of the cleaned masks, and ``"without_cleanup": {"dice", "iou"}`` of the masks before
        it; the loss is of the probabilities either way.
    """
    from tfseg import progress

    num_classes = settings.num_classes
    if scores is None:
        scores = SplitScores(num_classes, loss, ignore_class, ignore_empty)
    cleaned = SplitScores(num_classes, None, ignore_class, ignore_empty) if settings.cleanup.enabled else None
    with progress.bar(count, desc, unit="image") as counter:
        for image, mask, probabilities in predicted_examples(settings, predict, examples, batch_size):
            scores.add(mask, probabilities)
            predicted = None
            if cleaned is not None:
                predicted = settings.cleaned_mask(probabilities)
                cleaned.add(mask, mask_as_probabilities(predicted, num_classes))
            if rows is not None:
                rows.add(image, mask, probabilities, predicted)
            counter.update()
    if cleaned is None:
        return scores.result()
    raw = scores.result()
    return {**raw, **cleaned.result(), "without_cleanup": {"dice": raw["dice"], "iou": raw["iou"]}}


def write_figures(run_dir: str, settings, predict, test_examples, count: int = 4,
                  ids: Optional[Sequence[str]] = None, ignore_class: Optional[int] = None) -> None:
    """``curves.png`` from ``history.csv`` and ``predictions.png`` for the first ``count`` test images.

    The images are predicted by the one path (:func:`predicted_examples`) at their own size and
    cut to a common size for the figure. ``ids``: the test split's sample ids in order, shown in
    the picture titles (as in ``per_image.csv``). ``ignore_class``: pixels of that mask value
    count in no Dice and draw no true outline. (:mod:`tfseg.viz` writes each PNG through a
    temporary file and a rename.)
    """
    from tfseg.viz import plot_history, plot_predictions

    plot_history(fileio.join(run_dir, "history.csv"), fileio.join(run_dir, "curves.png"))
    rows = ImageRows(settings, ignore_class)
    for image, mask, probabilities in predicted_examples(settings, predict, test_examples.take(count), count):
        rows.add(image, mask, probabilities)
    plot_predictions(*rows.figures(), fileio.join(run_dir, "predictions.png"), dice=[row["dice"] for row in rows.rows],
                     ids=ids)


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


def _stacked(arrays):
    # Whole images differ in size: cut each to the smallest height and width so that they stack.
    height = min(a.shape[0] for a in arrays)
    width = min(a.shape[1] for a in arrays)
    return np.stack([a[:height, :width] for a in arrays])


def per_class_scores(confusion: np.ndarray, include_background: bool = False,
                     ignore_empty: bool = True) -> Dict[str, Any]:
    """IoU and Dice of every class from a pixel confusion matrix (rows true, columns predicted).

    ``IoU_c = TP / (TP + FP + FN)``, ``Dice_c = 2 TP / (2 TP + FP + FN)`` over all pixels of the
    split (ignored pixels excluded; :func:`tfseg.metrics.dice_from_counts`/``iou_from_counts``).
    A class with no true and no predicted pixel has no score (``None``). The means are unweighted
    over the classes, by the rule of the metrics (:func:`tfseg.metrics.mean_over_classes`: a class
    with no pixel stays out unless ``ignore_empty=False``), and leave the background (class 0)
    out unless ``include_background``: for a binary model the mean is then the foreground's
    Dice, the headline score.

    Returns:
        ``{"classes": [{"class", "iou", "dice", "true_pixels", "predicted_pixels"}, ...],
        "mean_iou", "mean_dice", "classes_scored", "background_included"}`` (``classes_scored``:
        the classes in the means).
    """
    from keras import ops

    from tfseg.metrics import dice_from_counts, iou_from_counts, mean_over_classes

    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    true_pixels, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    fp, fn = predicted - tp, true_pixels - tp
    counts = [x.astype(np.float32) for x in (tp, fp, fn)]
    scores = {name: np.asarray(ops.convert_to_numpy(function(*counts)), np.float64)
              for name, function in (("iou", iou_from_counts), ("dice", dice_from_counts))}
    rows = []
    for c in range(len(tp)):
        scored = tp[c] + fp[c] + fn[c] > 0
        rows.append({"class": c, "iou": float(scores["iou"][c]) if scored else None,
                     "dice": float(scores["dice"][c]) if scored else None,
                     "true_pixels": int(true_pixels[c]), "predicted_pixels": int(predicted[c])})
    first = 0 if include_background else 1
    means = {}
    for name in ("iou", "dice"):
        mean, counted = (float(ops.convert_to_numpy(v)) for v in mean_over_classes(
            scores[name][first:], *(c[first:] for c in counts), ignore_empty=ignore_empty))
        means[f"mean_{name}"] = None if counted == 0 else mean
    return {"classes": rows, **means, "classes_scored": int(counted), "background_included": bool(include_background)}


def format_per_class(table: Dict[str, Any]) -> str:
    """The table of :func:`per_class_scores` as aligned text (``-`` for a class with no pixel)."""
    def number(value):
        return "     -" if value is None else f"{value:.4f}"

    lines = ["class       IoU    Dice  true pixels  predicted"]
    for row in table["classes"]:
        lines.append(f"{row['class']:>5}  {number(row['iou'])}  {number(row['dice'])}  "
                     f"{row['true_pixels']:>11}  {row['predicted_pixels']:>9}")
    background = "background included" if table.get("background_included", True) else "background (0) left out"
    lines.append(f"{'mean':>5}  {number(table['mean_iou'])}  {number(table['mean_dice'])}  "
                 f"(over {_classes(table['classes_scored'])} with pixels; {background})")
    return "\n".join(lines)


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"


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
    """Per-image statistics: mean/median Dice and IoU over the images with a score (``scored_images``;
    an image with nothing true and nothing predicted has none); median and finite mean of the
    distances, inf count."""
    summary: Dict[str, Any] = {}
    for key in ("dice", "iou"):
        values = np.array([row[key] for row in rows], np.float64)
        values = values[~np.isnan(values)]
        summary[f"{key}_mean"] = float(values.mean()) if values.size else None
        summary[f"{key}_median"] = float(np.median(values)) if values.size else None
    summary["scored_images"] = int(values.size)
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
    writer.writerows({key: ("" if _no_score(row[key]) else row[key]) for key in PER_IMAGE_COLUMNS} for row in rows)
    fileio.write_text_atomic(path, text.getvalue())


def _no_score(value) -> bool:
    return isinstance(value, float) and value != value  # NaN: nothing true and nothing predicted


def evaluate(model_path: str, data: Optional[str] = None, split: str = "test", out: Optional[str] = None,
             batch_size: Optional[int] = None, seed: Optional[int] = None,
             fractions: Optional[Sequence[float]] = None, tiled: Optional[bool] = None,
             tta: Optional[str] = None, overwrite: bool = False,
             ignore_class: Optional[int] = None, ignore_empty: bool = True,
             include_background: bool = False, resamples: int = RESAMPLES, cleanup=None) -> Dict[str, Any]:
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
        batch_size: images per model call (default: the run's).
        seed, fractions: the pipeline's; they decide the split.
        tiled: predict whole images at native resolution by sliding window (:mod:`tfseg.tiling`);
            ``None``: when the run trained on patches (``patch_size`` in its ``config.json``,
            whose ``scale`` is then used). Otherwise images are resized to the model's input.
        tta: ``"flips"``: average the identity and the two flips (``None``/``"none"``: off).
        ignore_class: a mask value whose pixels no score counts (default: the run's ``ignore_class``,
            or the colour map's ``ignore`` colours).
        ignore_empty: a class absent from an image's truth and prediction stays out of that image's
            mean, and a class absent from the whole split out of the split's
            (:func:`tfseg.metrics.mean_over_classes`); False: such a class counts as 1.
        include_background: the per-class table's means include class 0 (default: left out).
        resamples: bootstrap resamples of the 95% intervals (:func:`confidence_intervals`; 0: none).
        cleanup: clean the predicted masks (:mod:`tfseg.postprocess`): a :class:`~tfseg.postprocess.Cleanup`
            or a mapping of its fields (``{"keep_largest": True}``); ``None``: none. Every score (split,
            per image, per class, figures, intervals) is then of the cleaned masks, and
            ``result[split]["without_cleanup"]`` holds the Dice and IoU before it.
        overwrite: replace the files of an earlier evaluation in ``out``. Files tfseg did not
            write are never replaced, and ``out`` may not be a run folder (only training writes
            there; a new sub-folder such as ``RUN_DIR/eval`` is fine): see :mod:`tfseg.outputs`.

    Returns:
        ``{split: {"dice", "iou", "loss", "num_images", "dice_ci95", "iou_ci95", "loss_ci95"},
        "per_image": {..., "dice_mean_ci95", "iou_mean_ci95"}, "per_class": {...}, "bootstrap": {...},
        "model", "data", "ignore_class", "cleanup"}``; each ``*_ci95`` is ``[low, high]``, the percentile
        bootstrap interval over the split's images, or its groups when the source has groups
        (:func:`confidence_intervals`); ``cleanup``: its fields and ``"flags"``, the CLI flags that set it,
        ``"none"`` for none.
        Every image is predicted by the one path of ``tfseg predict`` (:mod:`tfseg.segment`) and
        scored at its own size against its own mask, as training scores its val and test splits
        for ``metrics.json``. ``dice``/``iou`` are over all pixels of the split; ``loss`` is the mean
        over the images (``None`` for a model saved without its loss); ``per_image``
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
    from tfseg.saving import locate_model

    path, _ = locate_model(model_path)
    if out:
        from tfseg import outputs

        outputs.check_output_folder(out)
        outputs.refuse_run_folder(out)
        outputs.check_targets(out, OUTPUT_FILES, overwrite, inputs=[path])
    scored = score_model(model_path, data=data, split=split, batch_size=batch_size, seed=seed, fractions=fractions,
                         tiled=tiled, tta=tta, ignore_class=ignore_class, ignore_empty=ignore_empty, out=out,
                         cleanup=cleanup)
    rows, rows_named, settings = scored.rows, scored.rows.rows, scored.settings
    result = {split: {**scored.scores, "loss": scored.scores.get("loss"), "num_images": len(scored.ids)},
              "per_image": summarize_rows(rows_named),
              "per_class": per_class_scores(rows.confusion, include_background, ignore_empty),
              "model": scored.path, "data": scored.data, "tiled": scored.tiled, "tta": settings.tta,
              "ignore_class": scored.ignore_class, "ignore_empty": bool(ignore_empty),
              "cleanup": {**dataclasses.asdict(settings.cleanup), "flags": settings.cleanup.describe()}}
    if resamples:
        intervals = confidence_intervals(scored, resamples)
        result["bootstrap"] = intervals.pop("bootstrap")
        for key, interval in intervals.items():
            result["per_image" if key.endswith("_mean_ci95") else split][key] = interval
    if scored.tiled:
        result["tiling"] = {"window": list(settings.window), "scale": settings.scale, "overlap": settings.overlap,
                            "blend": settings.blend}
    if out:
        from tfseg.viz import plot_best_worst, plot_dice_histogram

        # One set: the previous evaluation's files go first, metrics.json comes last (tfseg.outputs.begin_set).
        outputs.begin_set(out, OUTPUT_FILES, "tfseg evaluate")
        write_rows_csv(fileio.join(out, "per_image.csv"), rows_named)
        write_per_class_csv(fileio.join(out, "per_class.csv"), result["per_class"])
        dice = np.array([row["dice"] for row in rows_named])
        plot_dice_histogram(dice, fileio.join(out, "dice_histogram.png"))
        plot_best_worst(*rows.figures(), dice, fileio.join(out, "best_worst.png"), ids=[row["id"] for row in rows_named])
        fileio.write_json_atomic(fileio.join(out, "metrics.json"), result)
        outputs.finish_set(out, OUTPUT_FILES)
    return result


@dataclasses.dataclass
class ScoredSplit:
    """One model's scores of one split (:func:`score_model`), with what a bootstrap needs.

    Attributes:
        path: the ``model.keras`` file; ``data``, ``split``, ``seed``, ``fractions``: the split.
        ids: the sample ids in order; ``groups``: the group of each (:meth:`Source.group`).
        rows: the :class:`ImageRows` (named), per-image counts included.
        scores: :func:`score_split`'s ``{"dice", "iou"(, "loss")}``; ``losses``: the per-image losses.
        settings, tiled, ignore_class, ignore_empty: how the images were predicted and scored.
    """

    path: str
    data: str
    split: str
    seed: int
    fractions: Tuple[float, float, float]
    ids: List[str]
    groups: List[str]
    rows: ImageRows
    scores: Dict[str, Optional[float]]
    losses: List[float]
    settings: Any
    tiled: bool
    ignore_class: Optional[int]
    ignore_empty: bool


def score_model(model_path: str, data: Optional[str] = None, split: str = "test", batch_size: Optional[int] = None,
                seed: Optional[int] = None, fractions: Optional[Sequence[float]] = None,
                tiled: Optional[bool] = None, tta: Optional[str] = None, ignore_class: Optional[int] = None,
                ignore_empty: bool = True, out: Optional[str] = None, cleanup=None) -> ScoredSplit:
    """Score a saved model on one split: the work of :func:`evaluate` (and, twice, of :func:`compare`).

    Arguments as in :func:`evaluate` (``out``: only checked not to lie inside the source).
    """
    from tfseg.data.pipeline import native_examples, open_dataset_source
    from tfseg.postprocess import as_cleanup
    from tfseg.saving import load_keras_model, locate_model, model_run_dir
    from tfseg.segment import Settings, keras_windows
    from tfseg.training.cv import is_cv_run

    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    cleanup = as_cleanup(cleanup)
    path, run_config = locate_model(model_path)
    defaults = run_config or TrainConfig()
    data = data or (run_config.data if run_config else None)
    if not data:
        raise ConfigError(f"data: required ({path} is not inside a run folder with a config.json)")
    if split != "test" and is_cv_run(path) and str(data) == str(run_config.data):
        raise ConfigError(f"split {split}: the ensemble of {path}'s folds is scored on the test split only (each "
                          f"fold's model trained on the others' validation images); its folds' validation scores "
                          f"are in {path}/cv.json, or evaluate one fold's run folder, e.g. {model_run_dir(path)}")
    seed = defaults.seed if seed is None else int(seed)
    from tfseg.data.splits import validate_fractions

    # (a fold's run: a FoldSplit, whose validation split is its fold; kept as it is)
    fractions = validate_fractions(fractions if fractions is not None else defaults.split_fractions())
    batch_size = int(batch_size or defaults.batch_size)

    patch_trained = run_config is not None and run_config.patch_size is not None
    tiled = patch_trained if tiled is None else bool(tiled)
    model = load_keras_model(path)
    settings = Settings.of_model(model, tiled=tiled, scale=run_config.scale if patch_trained and tiled else 1.0,
                                 tta=tta, cleanup=cleanup, **defaults.pixel_options())
    image_size = model_image_size(model)
    num_classes = settings.num_classes
    if ignore_class is None and run_config is not None:
        ignore_class = run_config.ignore_class
    if ignore_class is not None:
        from tfseg.config import check_ignore_class

        ignore_class = check_ignore_class(ignore_class, num_classes)
    loss = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    if loss is None and run_config is not None:  # a run's model.keras holds no loss (it loads with plain Keras)
        from tfseg.losses import get_loss
        from tfseg.training.run_folder import stored_class_weights

        loss = get_loss(run_config.loss, num_classes, class_weights=stored_class_weights(model_run_dir(path)))
    # Opened once (listed and checked once), with the model's classes for the kinds that take them.
    # (``synthetic`` is generated at one size: the run's image size when scoring whole images.)
    native = defaults.image_size if tiled and run_config is not None else image_size
    source = open_dataset_source(data, image_size=native, num_classes=num_classes if num_classes > 1 else None,
                                 ignore_class=ignore_class)
    if ignore_class is None:
        ignore_class = source.ignore_class  # e.g. the colours a colour map marks "ignore"
    if loss is not None and ignore_class is not None:  # its own loss, leaving out the ignored pixels
        from tfseg.losses import IgnoreClassLoss

        loss = loss if isinstance(loss, IgnoreClassLoss) else IgnoreClassLoss(loss, ignore_class)
    if out:
        from tfseg import outputs

        outputs.refuse_inside_source(out, source)  # figures among the masks would be read back as data
    ids = list(source.split_ids(split, seed=seed, fractions=fractions))
    if run_config is not None and (str(data), seed, fractions) == (
        str(run_config.data), run_config.seed, validate_fractions(run_config.split_fractions())
    ):
        # the run's own split: it must still be the one the run trained with (splits.json)
        from tfseg.training.run_folder import check_stored_splits

        every = {name: list(source.split_ids(name, seed=seed, fractions=fractions)) for name in SPLITS}
        check_stored_splits(model_run_dir(path), every)
    if not ids:
        raise ConfigError(f"data {data}: the {split} split is empty")
    # Every image at its own size through the one path (tfseg.segment), scored against its own mask.
    examples = native_examples(source, split=split, seed=seed, fractions=fractions, num_classes=num_classes,
                               cache="none")
    rows = ImageRows(settings, ignore_class, ignore_empty)
    split_scores = SplitScores(num_classes, loss, ignore_class, ignore_empty)
    scores = score_split(settings, keras_windows(model), examples, ignore_class=ignore_class,
                         batch_size=batch_size, desc=f"scoring {split}", count=len(ids), rows=rows,
                         ignore_empty=ignore_empty, scores=split_scores)
    rows.named(ids)
    return ScoredSplit(path=path, data=str(data), split=split, seed=seed, fractions=fractions, ids=ids,
                       groups=[source.group(i) for i in ids], rows=rows, scores=scores,
                       losses=list(split_scores.losses), settings=settings, tiled=tiled, ignore_class=ignore_class,
                       ignore_empty=bool(ignore_empty))


def _count_values(scored: ScoredSplit, prefix: str = "") -> Dict[str, np.ndarray]:
    """``{prefix + "tp"/"fp"/"fn"/"tn": [images, K]}``: the per-image pixel counts of a scored split."""
    counts = np.stack(scored.rows.counts)  # [images, 4, K]
    return {f"{prefix}{name}": counts[:, i] for i, name in enumerate(("tp", "fp", "fn", "tn"))}


def _split_score(scored: ScoredSplit, name: str, prefix: str = ""):
    """The statistic: ``name`` (``dice``/``iou``) of the summed counts, by the metric's own rule."""
    scorer = scored.rows.scorers[name]

    def statistic(sums):
        return scorer.score_counts(*(sums[f"{prefix}{key}"] for key in ("tp", "fp", "fn", "tn")))

    return statistic


def bootstrap_info(scored: ScoredSplit, resamples: int) -> Dict[str, Any]:
    """What ``metrics.json`` says of the intervals: method, resamples, seed, level and the units drawn."""
    from tfseg import stats

    _, units, kind = stats.units_of(scored.groups, len(scored.ids))
    return {"method": "percentile", "resamples": int(resamples), "seed": stats.SEED, "level": stats.LEVEL,
            "units": kind, "num_units": units}


def confidence_intervals(scored: ScoredSplit, resamples: int = RESAMPLES) -> Dict[str, Any]:
    """95% percentile bootstrap intervals of a split's headline scores (:mod:`tfseg.stats`).

    The images of the split (or its groups, when the source groups its samples) are drawn with
    replacement ``resamples`` times (seed :data:`tfseg.stats.SEED`); each draw is scored as the
    split is: ``dice``/``iou`` from the summed pixel counts by the metrics' rule
    (:meth:`tfseg.metrics.Dice.score_counts`), ``loss`` as the mean of the per-image losses, the
    per-image means over the images with a score.

    Returns:
        ``{"dice_ci95", "iou_ci95"(, "loss_ci95"), "dice_mean_ci95", "iou_mean_ci95": [low, high] or None,
        "bootstrap": bootstrap_info(...)}``.
    """
    from tfseg import stats

    options = {"groups": scored.groups, "resamples": resamples}
    counts = _count_values(scored)
    intervals: Dict[str, Any] = {f"{name}_ci95": stats.bootstrap(_split_score(scored, name), counts, **options)
                                 for name in ("dice", "iou")}
    if scored.scores.get("loss") is not None and scored.losses:
        intervals["loss_ci95"] = stats.bootstrap(stats.mean_statistic("value", "counted"),
                                                 stats.per_image_values(scored.losses), **options)
    for name in ("dice", "iou"):
        intervals[f"{name}_mean_ci95"] = stats.bootstrap(
            stats.mean_statistic("value", "counted"), stats.per_image_values([row[name] for row in scored.rows.rows]),
            **options)
    intervals["bootstrap"] = bootstrap_info(scored, resamples)
    return intervals


def compare(model_a: str, model_b: str, data: Optional[str] = None, split: str = "test",
            batch_size: Optional[int] = None, tiled: Optional[bool] = None, tta: Optional[str] = None,
            ignore_class: Optional[int] = None, resamples: int = RESAMPLES,
            out: Optional[str] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Two models on the same images: their Dice and the paired difference with its 95% interval.

    Both models are scored by :func:`score_model` (the one path of ``evaluate``) on one split:
    ``data`` (default: A's run's SOURCE) with A's split seed and fractions, so both see the same
    images whatever B was trained on. The difference ``A - B`` is bootstrapped by drawing the
    images (or groups) once per resample for both models (a paired bootstrap: what varies from
    image to image varies alike for both and leaves the difference), by :mod:`tfseg.stats`.

    Args:
        model_a, model_b: ``model.keras`` files or run folders.
        data, split, batch_size, tiled, tta, ignore_class: as in :func:`evaluate` (each model
            keeps its own run's tiling unless ``tiled`` is given).
        resamples: bootstrap resamples.
        out: a ``.json`` file for the result (``--out``); replaced only with ``overwrite``.

    Returns:
        ``{"split", "data", "num_images", "a": {"model", "dice", "iou", "dice_ci95", "dice_mean"},
        "b": {...}, "difference": {"dice", "dice_ci95", "dice_mean", "dice_mean_ci95"}, "bootstrap"}``
        (``difference`` is A - B: ``dice`` of the split's pixel counts, ``dice_mean`` the mean of the
        per-image differences over the images both score).

    Raises:
        ConfigError: no data source, an unknown split, or the two models do not score the same images.
    """
    from tfseg import stats
    from tfseg.saving import locate_model

    if out:
        target = _json_target(out, overwrite, [locate_model(model_a)[0], locate_model(model_b)[0]])
    first = score_model(model_a, data=data, split=split, batch_size=batch_size, tiled=tiled, tta=tta,
                        ignore_class=ignore_class)
    second = score_model(model_b, data=first.data, split=split, batch_size=batch_size, seed=first.seed,
                         fractions=first.fractions, tiled=tiled, tta=tta, ignore_class=first.ignore_class)
    if first.ids != second.ids:
        raise ConfigError(f"compare: the models scored different images of {first.data} ({split})")
    if first.settings.num_classes != second.settings.num_classes:
        raise ConfigError(f"compare: {first.path} predicts {first.settings.num_classes} class(es), "
                          f"{second.path} {second.settings.num_classes}")
    options = {"groups": first.groups, "resamples": resamples}
    counts = {**_count_values(first, "a_"), **_count_values(second, "b_")}
    dice_a, dice_b = _split_score(first, "dice", "a_"), _split_score(second, "dice", "b_")
    per_image = [row_a["dice"] - row_b["dice"] for row_a, row_b in zip(first.rows.rows, second.rows.rows)]
    paired = stats.per_image_values(per_image)  # NaN (an image one of them does not score): left out
    result = {
        "split": split, "data": first.data, "num_images": len(first.ids),
        "difference": {
            "dice": first.scores["dice"] - second.scores["dice"],
            "dice_ci95": stats.bootstrap(lambda sums: dice_a(sums) - dice_b(sums), counts, **options),
            "dice_mean": float(np.nanmean(per_image)) if np.isfinite(per_image).any() else None,
            "dice_mean_ci95": stats.bootstrap(stats.mean_statistic("value", "counted"), paired, **options),
        },
        "bootstrap": bootstrap_info(first, resamples),
    }
    for key, scored in (("a", first), ("b", second)):
        dice = [row["dice"] for row in scored.rows.rows]
        result[key] = {"model": scored.path, "dice": scored.scores["dice"], "iou": scored.scores["iou"],
                       "dice_ci95": stats.bootstrap(_split_score(scored, "dice"), _count_values(scored), **options),
                       "dice_mean": float(np.nanmean(dice)) if np.isfinite(dice).any() else None}
    if out:
        from tfseg import outputs

        folder, name = target
        fileio.makedirs(folder)
        outputs.claim(folder, [name], "tfseg compare")
        fileio.write_json_atomic(fileio.join(folder, name), result)
    return result



def _json_target(path: str, overwrite: bool, inputs: Sequence[str]):
    """``(folder, name)`` of a JSON file a verb may write (``compare --out``), checked by the outputs rules
    (:mod:`tfseg.outputs`: not an input, not in a run folder, replaced only when tfseg wrote it and
    ``overwrite``), before any work is done.

    Raises:
        ConfigError: the name does not end with ``.json``.
        TfsegError: the rules above.
    """
    from tfseg import outputs

    path = fileio.fspath(path)
    if not path.endswith(".json"):
        raise ConfigError(f"out {path}: the file name must end with .json")
    folder, name = fileio.dirname(fileio.abspath(path)), fileio.basename(path)
    outputs.check_output_folder(folder)
    outputs.refuse_run_folder(folder)
    outputs.check_targets(folder, [name], overwrite, inputs=inputs)
    return folder, name
