"""Pictures of segmentations: overlays, training curves, prediction grids.

Two kinds of functions:

* **arrays** (numpy in, ``uint8 [H, W, 3]`` out): :func:`outline_overlay`,
  :func:`tinted_overlay`, :func:`compare_overlay`, :func:`chroma_key`, plus the
  helpers :func:`mask_outline` and :func:`per_image_dice`.
* **figures** (return a :class:`matplotlib.figure.Figure`, and write a PNG when
  ``path`` is given): :func:`plot_history`, :func:`plot_comparison`,
  :func:`plot_predictions`, :func:`plot_best_worst`, :func:`plot_dice_histogram`.

Figures are built with :class:`matplotlib.figure.Figure` directly, not through
``pyplot``: nothing is registered with pyplot (no figure leaks in loops, nothing
to close) and the user's backend is never touched; saving goes through Agg. In a
notebook, a returned figure displays itself as the cell's last expression.

Conventions: images are ``uint8`` or float in ``[0, 1]``, ``[H, W, 3]`` or
``[H, W]`` (grey) or ``[H, W, 1]``; masks are ``[H, W]`` or ``[H, W, 1]``, and a
pixel is foreground when it is ``True`` (bool), ``> 0`` (integers: 0/1, 0/255 or
class ids, so multi-class masks show their non-background region) or ``>= 0.5``
(floats: 0/1 masks or probabilities). A stack of per-class probabilities
``[H, W, C>1]`` is reduced with argmax first. No TensorFlow here, but for
file paths (local or ``gs://``), which go through :mod:`tfseg.fileio`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
from matplotlib.figure import Figure as _MatplotlibFigure

from tfseg import fileio
from tfseg.errors import TfsegError

TRUE_COLOR = (0, 200, 0)
PRED_COLOR = (255, 0, 0)
BOTH_COLOR = (255, 220, 0)
DPI = 110

# Keys of a Keras history that are not curves worth a panel.
_NOT_CURVES = ("epoch", "lr", "learning_rate")
# Panels in this order first; any other metric follows.
_PANEL_ORDER = ("loss", "dice", "iou")
_TITLES = {"loss": "Loss", "dice": "Dice", "iou": "IoU"}

History = Union[Mapping[str, Sequence[float]], str, os.PathLike]


# --------------------------------------------------------------------------
# array helpers
# --------------------------------------------------------------------------
def as_rgb_uint8(image) -> np.ndarray:
    """``image`` as ``uint8 [H, W, 3]``.

    Floats are read as ``[0, 1]`` (clipped, ``round(x * 255)``); grey
    ``[H, W]`` / ``[H, W, 1]`` is repeated to three channels. A data image (:mod:`tfseg.data.bands`:
    2 or more than 3 bands, integers above 255, floats outside [0, 1]) is shown by
    :func:`tfseg.data.bands.display_rgb` (its first bands, each stretched between its 1st and 99th
    percentiles).
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.size and (array.shape[-1] not in (1, 3) or (
            array.dtype != bool and (array.max() > (255 if np.issubdtype(array.dtype, np.integer) else 1.0)
                                     or array.min() < 0))):
        from tfseg.data.bands import display_rgb

        return display_rgb(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise TfsegError(f"image of shape {array.shape}: expected [H, W, 3], [H, W, 1] or [H, W]")
    if array.dtype == np.uint8:
        return array.copy()
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        return np.clip(array, 0, 255).astype(np.uint8)
    return np.round(np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def as_bool_mask(mask) -> np.ndarray:
    """``mask`` as ``bool [H, W]`` (foreground rule in the module docstring)."""
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] > 1:
        array = np.argmax(array, axis=-1)  # per-class probabilities -> class ids
    elif array.ndim == 3:
        array = array[..., 0]
    if array.ndim != 2:
        raise TfsegError(f"mask of shape {np.asarray(mask).shape}: expected [H, W] or [H, W, 1]")
    if array.dtype == bool:
        return array.copy()
    if np.issubdtype(array.dtype, np.integer):
        return array > 0
    return array >= 0.5


def mask_outline(mask, width: int = 1) -> np.ndarray:
    """The inner outline of ``mask``: ``bool [H, W]``.

    A pixel is on the outline when it is in the mask and within ``width``
    4-neighbour steps of a non-mask pixel: ``mask & ~erode^width(mask)``. With
    ``width=1`` that is exactly the mask pixels that have a non-mask
    4-neighbour. Pixels outside the image count as background, so a mask that
    touches the border gets a closed outline. The line grows inwards, so it never
    hides the background right next to the object.

    Args:
        mask: ``[H, W]`` or ``[H, W, 1]`` mask.
        width: line thickness in pixels (>= 1).

    Example:
        >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
        >>> int(mask_outline(m).sum())  # the 3x3 square minus its centre
        8
    """
    if int(width) < 1:
        raise TfsegError(f"outline width {width!r}: must be a positive integer")
    from tfseg.boundary import boundary_mask  # one outline rule for pictures and boundary metrics

    return boundary_mask(as_bool_mask(mask), int(width))


def _check_same_size(image: np.ndarray, *masks: np.ndarray) -> None:
    for mask in masks:
        if mask.shape != image.shape[:2]:
            raise TfsegError(f"mask of size {mask.shape} does not match the image's {image.shape[:2]}")


def outline_overlay(image, mask, color=(255, 0, 0), width: int = 1) -> np.ndarray:
    """``image`` with the outline of ``mask`` painted in ``color``.

    The result differs from ``as_rgb_uint8(image)`` exactly at the pixels of
    :func:`mask_outline` (those set to ``color``; a pixel that already had that
    colour stays the same).

    Args:
        image: ``uint8`` or float ``[0, 1]`` image, ``[H, W, 3]`` or ``[H, W]``.
        mask: ``[H, W]`` or ``[H, W, 1]`` mask.
        color: RGB ``uint8`` triple.
        width: line thickness in pixels, drawn inside the mask.

    Returns:
        ``uint8 [H, W, 3]``.

    Example:
        >>> img = np.zeros((8, 8, 3), np.uint8); m = np.zeros((8, 8)); m[2:6, 2:6] = 1
        >>> int((outline_overlay(img, m)[..., 0] > 0).sum())
        12
    """
    out = as_rgb_uint8(image)
    line = mask_outline(mask, width)
    _check_same_size(out, line)
    out[line] = np.asarray(color, np.uint8)
    return out


def tinted_overlay(image, mask, color=(255, 0, 0), alpha: float = 0.4) -> np.ndarray:
    """``image`` with the mask region blended towards ``color``.

    Inside the mask: ``round((1 - alpha) * image + alpha * color)``; outside:
    unchanged.

    Args:
        image: ``uint8`` or float ``[0, 1]`` image.
        mask: ``[H, W]`` or ``[H, W, 1]`` mask.
        color: RGB ``uint8`` triple.
        alpha: opacity of the tint in ``[0, 1]``.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise TfsegError(f"alpha {alpha!r}: must be in [0, 1]")
    out = as_rgb_uint8(image)
    inside = as_bool_mask(mask)
    _check_same_size(out, inside)
    blended = (1.0 - alpha) * out[inside].astype(np.float32) + alpha * np.asarray(color, np.float32)
    out[inside] = np.round(blended).astype(np.uint8)
    return out


def compare_overlay(image, true_mask, pred_mask, width: int = 1,
                    true_color=TRUE_COLOR, pred_color=PRED_COLOR, both_color=BOTH_COLOR) -> np.ndarray:
    """``image`` with the true outline (green), the predicted one (red) and
    pixels on both outlines (yellow).

    Args:
        image: ``uint8`` or float ``[0, 1]`` image.
        true_mask: the ground truth ``[H, W]`` / ``[H, W, 1]``.
        pred_mask: the prediction: a mask or probabilities (thresholded at 0.5).
        width: line thickness in pixels.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    out = as_rgb_uint8(image)
    true_line = mask_outline(true_mask, width)
    pred_line = mask_outline(pred_mask, width)
    _check_same_size(out, true_line, pred_line)
    out[true_line] = np.asarray(true_color, np.uint8)
    out[pred_line] = np.asarray(pred_color, np.uint8)
    out[true_line & pred_line] = np.asarray(both_color, np.uint8)
    return out


def _box_blur(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Box blur of side ``2 * radius + 1`` (edges replicated): the mean over each pixel's box."""
    from scipy import ndimage

    return ndimage.uniform_filter(alpha, size=2 * radius + 1, mode="nearest")


def _background_like(background, height: int, width: int) -> np.ndarray:
    array = np.asarray(background)
    if array.ndim == 1 and array.shape[0] == 3:  # an RGB colour
        return np.broadcast_to(array.astype(np.uint8), (height, width, 3)).copy()
    rgb = as_rgb_uint8(array)
    if rgb.shape[:2] != (height, width):
        from PIL import Image  # bilinear, like every image resize in tfseg

        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    return rgb


def chroma_key(image, mask, background=(0, 177, 64), soft_edge: int = 0) -> np.ndarray:
    """A composite keeping the foreground of ``image`` and replacing the rest.

    ``out = a * image + (1 - a) * background`` where ``a`` is the mask in
    ``{0, 1}``. With ``soft_edge = r > 0``, ``a`` is the mask box-blurred over
    ``(2r+1) x (2r+1)`` pixels, so the cut-out fades over about ``r`` pixels on
    either side of the edge instead of showing jagged steps; a pixel whose
    ``(2r+1) x (2r+1)`` box lies on one side of the edge is still copied exactly.

    Args:
        image: the frame, ``uint8`` or float ``[0, 1]``.
        mask: the (predicted) person mask or probabilities (threshold 0.5).
        background: an RGB triple, or an image of any size (resized bilinearly).
        soft_edge: feathering radius in pixels (0: hard edge).

    Returns:
        ``uint8 [H, W, 3]``.

    Example:
        >>> frame = np.full((4, 4, 3), 9, np.uint8); m = np.eye(4, dtype=bool)
        >>> int(chroma_key(frame, m, (0, 0, 0))[..., 0].sum())  # the diagonal kept, the rest black
        36
    """
    fore = as_rgb_uint8(image)
    inside = as_bool_mask(mask)
    _check_same_size(fore, inside)
    back = _background_like(background, *fore.shape[:2])
    if int(soft_edge) <= 0:
        return np.where(inside[..., None], fore, back)
    alpha = _box_blur(inside.astype(np.float32), int(soft_edge))[..., None]
    mixed = alpha * fore.astype(np.float32) + (1.0 - alpha) * back.astype(np.float32)
    return np.round(mixed).astype(np.uint8)


def per_image_dice(true_masks, pred_masks) -> np.ndarray:
    """Dice of each image: ``float32 [N]``.

    ``dice = 2 |T & P| / (|T| + |P|)`` on the foreground (rule in the module
    docstring; probabilities are thresholded at 0.5); an image where both masks
    are empty has no score, ``NaN`` (:func:`tfseg.metrics.mean_over_classes`; the
    figures leave it out). No smoothing constant.

    Args:
        true_masks: ``[N, H, W]`` or ``[N, H, W, 1]``.
        pred_masks: the same shape, or ``[N, H, W, C]`` per-class probabilities.

    Example:
        >>> t = np.zeros((2, 4, 4)); t[:, :2] = 1
        >>> per_image_dice(t, np.stack([t[0], np.zeros((4, 4))])).tolist()
        [1.0, 0.0]
    """
    from tfseg.metrics import dice_score  # the one Dice (keras.ops), on the foreground masks

    scores = [dice_score(as_bool_mask(true).astype(np.float32), as_bool_mask(pred).astype(np.float32))
              for true, pred in zip(true_masks, pred_masks)]
    return np.asarray(scores, np.float32)


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------
class Figure(_MatplotlibFigure):
    """A matplotlib Figure that notebooks display as PNG under any backend.

    IPython only knows how to show a pyplot-less figure once the inline backend
    has been loaded (by a first ``plt`` call); ``_repr_png_`` makes a returned
    figure show up as the cell's result from the first cell on.
    """

    def _repr_png_(self):
        buffer = io.BytesIO()
        _attach_agg(self)
        self.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()


def _attach_agg(fig) -> None:
    """Give a pyplot-less figure an Agg canvas; a figure shown in a window keeps its own."""
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if type(fig.canvas) is FigureCanvasBase:
        FigureCanvasAgg(fig)


def _new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def save_figure(fig, path) -> str:
    """Write ``fig`` to ``path`` (format from the suffix, PNG by default) atomically.

    The file is written next to ``path`` under a temporary name and renamed, so
    an interrupted run never leaves half a picture. Parent folders are created.
    ``path`` may be a URL (``gs://...``): it is written through :mod:`tfseg.fileio`.
    """
    path = fileio.fspath(path)
    if fileio.dirname(path):
        fileio.makedirs(fileio.dirname(path))
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    _attach_agg(fig)
    with fileio.atomic_path(path) as tmp, fileio.open_file(tmp, "wb") as handle:
        fig.savefig(handle, format=fmt, dpi=DPI)
    return path


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


def _float_or_nan(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_history(history: History) -> Dict[str, np.ndarray]:
    """A history as ``{name: float64 [epochs]}``.

    Args:
        history: ``keras.callbacks.History.history`` (a dict of lists), a
            ``History`` object, or the path of a ``history.csv`` written by
            ``keras.callbacks.CSVLogger`` (empty cells become NaN).

    Raises:
        TfsegError: the CSV file is missing or has no rows.
    """
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if isinstance(history, Mapping):
        return {str(k): np.asarray(v, np.float64).reshape(-1) for k, v in history.items()}
    path = fileio.fspath(history)
    if not fileio.isfile(path):
        raise TfsegError(f"{path}: no such history file")
    rows = list(csv.DictReader(io.StringIO(fileio.read_text(path), newline="")))
    if not rows:
        raise TfsegError(f"{path}: the history has no rows")
    return {key: np.asarray([_float_or_nan(row.get(key)) for row in rows]) for key in rows[0]}


def _epochs(values: Dict[str, np.ndarray]) -> np.ndarray:
    """1-based epoch numbers: tfseg's ``history.csv`` counts from 1; one counting from 0 (Keras'
    ``CSVLogger``, tfseg 0.1.0) is shifted by one."""
    length = max(len(v) for k, v in values.items() if k != "epoch")
    if "epoch" in values and len(values["epoch"]) == length and not np.isnan(values["epoch"]).any():
        return values["epoch"] + (1 if values["epoch"][0] == 0 else 0)
    return np.arange(1, length + 1, dtype=np.float64)


def _panels(values: Dict[str, np.ndarray]):
    """Curve names with a panel each: loss, dice, iou first, then any other metric."""
    names = [k for k in values if k not in _NOT_CURVES and not k.startswith("val_")]
    names += [k[4:] for k in values if k.startswith("val_") and k[4:] not in names]
    ordered = [k for k in _PANEL_ORDER if k in names]
    return ordered + [k for k in names if k not in ordered]


def best_epoch(history: History) -> Optional[int]:
    """The 1-based epoch with the highest ``val_dice`` (the lowest ``val_loss`` without it).

    Returns ``None`` when the history has neither. NaNs are skipped; ties go to
    the earliest epoch, like ``keras.callbacks.ModelCheckpoint(save_best_only=True)``.
    """
    values = read_history(history)
    epochs = _epochs(values)
    for key, pick in (("val_dice", np.nanargmax), ("val_loss", np.nanargmin)):
        curve = values.get(key)
        if curve is not None and len(curve) and not np.isnan(curve).all():
            return int(epochs[int(pick(curve))])
    return None


def _title(name: str) -> str:
    return _TITLES.get(name, name.replace("_", " "))


def plot_history(history: History, path=None, title: Optional[str] = None):
    """Loss, Dice and IoU per epoch, train vs validation, with the best epoch marked.

    One panel per curve (loss first, then ``dice``, ``iou``, then any other
    metric). The best epoch (:func:`best_epoch`: highest ``val_dice``) is a dashed
    vertical line labelled ``best epoch N`` on every panel, with a dot on the
    validation curves.

    Args:
        history: a dict of lists (``History.history``), a ``History``, or a
            ``history.csv`` path.
        path: where to write the PNG (``None``: do not save).
        title: figure title.

    Returns:
        the :class:`matplotlib.figure.Figure`.

    Example:
        >>> fig = plot_history({"loss": [0.9, 0.5], "val_loss": [1.0, 0.7],
        ...                     "dice": [0.3, 0.6], "val_dice": [0.2, 0.5]})
    """
    values = read_history(history)
    epochs = _epochs(values)
    panels = _panels(values)
    if not panels:
        raise TfsegError("the history has no curves to plot (expected keys like 'loss', 'val_dice')")
    best = best_epoch(values)
    fig = _new_figure(4.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, name in zip(axes, panels):
        for key, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "-")):
            if key in values:
                curve = values[key]
                ax.plot(epochs[: len(curve)], curve, style, marker="o", markersize=3, label=label)
        if best is not None:
            ax.axvline(best, color="0.35", linestyle="--", linewidth=1, label=f"best epoch {best}")
            val = values.get(f"val_{name}")
            if val is not None and best - 1 < len(val):
                index = int(np.flatnonzero(epochs == best)[0])
                ax.plot([best], [val[index]], "o", color="black", markersize=6, zorder=5)
                right_half = best > (epochs[0] + epochs[-1]) / 2  # keep the label inside the panel
                # validation usually sits above training for a loss and below it for a score
                above = "loss" in name
                ax.annotate(f"{val[index]:.3f}", (best, val[index]), textcoords="offset points",
                            xytext=(-6 if right_half else 6, 6 if above else -8),
                            ha="right" if right_half else "left", va="bottom" if above else "top",
                            fontsize=9, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        ax.set_title(_title(name))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if name != "loss" and name in ("dice", "iou"):
            ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_comparison(histories: Mapping[str, History], path=None, title: Optional[str] = None):
    """Curves of several runs side by side (e.g. U-Net vs SegNet).

    One panel per curve (loss, Dice, IoU, ...); each run has one colour, solid
    for validation and dashed for training, and its best epoch marked with a dot.

    Args:
        histories: ``{run name: history}``; each history as in :func:`plot_history`.
        path: where to write the PNG.
        title: figure title.

    Returns:
        the :class:`matplotlib.figure.Figure`.
    """
    if not histories:
        raise TfsegError("plot_comparison: no histories given")
    runs = {name: read_history(h) for name, h in histories.items()}
    panels = []
    for values in runs.values():
        panels += [p for p in _panels(values) if p not in panels]
    fig = _new_figure(4.4 * len(panels), 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for (run, values), color in zip(runs.items(), colors):
        epochs = _epochs(values)
        best = best_epoch(values)
        for ax, name in zip(axes, panels):
            if name in values:
                ax.plot(epochs[: len(values[name])], values[name], "--", color=color, alpha=0.7,
                        label=f"{run} train")
            val = values.get(f"val_{name}")
            if val is not None:
                ax.plot(epochs[: len(val)], val, "-", color=color, label=f"{run} validation")
                if best is not None and best - 1 < len(val):
                    index = int(np.flatnonzero(epochs == best)[0])
                    ax.plot([best], [val[index]], "o", color=color, markersize=7,
                            markeredgecolor="black", zorder=5)
    for ax, name in zip(axes, panels):
        ax.set_title(_title(name))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if name in ("dice", "iou"):
            ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    fig.suptitle(title or "  vs  ".join(runs) + "  (dot: best epoch by validation Dice)")
    return _finish(fig, path)


def _legend_handles():
    from matplotlib.patches import Patch

    return [
        Patch(color=np.asarray(TRUE_COLOR) / 255, label="true"),
        Patch(color=np.asarray(PRED_COLOR) / 255, label="predicted"),
        Patch(color=np.asarray(BOTH_COLOR) / 255, label="both"),
    ]


def outline_width(shape) -> int:
    """Outline thickness for an overlay viewed at the image's own size: 1 pixel per 400 of the longer side.

    ``max(1, round(max(H, W) / 400))``: 1 up to 599 pixels, 3 at 1024, 10 at 4000 (a 1-pixel
    line disappears when a photo is shown scaled to a screen).
    """
    return max(1, int(round(max(int(shape[0]), int(shape[1])) / 400)))


def _outline_width(height: int) -> int:
    # A 1-pixel line vanishes once a 256-pixel image is drawn 2.5 inches wide.
    return max(1, int(round(height / 128)))


def _label(ids, index: int) -> str:
    # Sample ids name the same images as per_image.csv; long ones are cut to fit a title.
    if ids is None:
        return f"#{index}"
    text = str(ids[index])
    return text if len(text) <= 24 else text[:11] + "..." + text[-10:]


def _overlay_grid(fig, cells, columns: int):
    """Draw ``cells = [(image, title), ...]`` in a grid of ``columns``."""
    rows = math.ceil(len(cells) / columns)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (image, title) in zip(axes.ravel(), cells):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    return axes


def plot_predictions(images, true_masks, pred_masks, path=None, dice=None, max_images: int = 8,
                     columns: int = 4, title: Optional[str] = None, ids: Optional[Sequence[str]] = None):
    """A grid of images with the true (green) and predicted (red) outlines.

    Each title gives the image's sample id (``ids``, as in ``per_image.csv``; else ``#index``)
    and its Dice (``dice`` if given, else :func:`per_image_dice` of the masks).

    Args:
        images: ``[N, H, W, 3]`` ``uint8`` or float ``[0, 1]``.
        true_masks: ``[N, H, W(, 1)]``.
        pred_masks: ``[N, H, W(, 1)]`` masks or probabilities (threshold 0.5).
        path: where to write the PNG.
        dice: per-image Dice ``[N]`` to show (``None``: computed).
        max_images: the first ``max_images`` are drawn.
        columns: images per row.
        title: figure title.
        ids: the sample id of each image (``None``: ``#0``, ``#1``...).

    Returns:
        the :class:`matplotlib.figure.Figure`.
    """
    count = min(len(images), int(max_images))
    if count < 1:
        raise TfsegError("plot_predictions: no images given")
    scores = per_image_dice(true_masks[:count], pred_masks[:count]) if dice is None else np.asarray(dice)
    width = _outline_width(np.asarray(images[0]).shape[0])
    cells = [
        (compare_overlay(images[i], true_masks[i], pred_masks[i], width=width),
         f"{_label(ids, i)}  Dice {scores[i]:.3f}")
        for i in range(count)
    ]
    columns = min(int(columns), count)
    rows = math.ceil(count / columns)
    fig = _new_figure(2.6 * columns, 2.6 * rows + 0.6)
    _overlay_grid(fig, cells, columns)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_best_worst(images, true_masks, pred_masks, dice, path=None, k: int = 4,
                    title: Optional[str] = None, ids: Optional[Sequence[str]] = None):
    """The ``k`` best and ``k`` worst predictions by Dice (top row best, bottom worst).

    Args:
        images, true_masks, pred_masks: as in :func:`plot_predictions`.
        dice: per-image Dice ``[N]`` (e.g. :func:`per_image_dice`).
        path: where to write the PNG.
        k: images per row (fewer when ``N < 2k``: the rows then overlap).
        ids: the sample id of each image, shown in its title (``None``: ``#index``).

    Returns:
        the :class:`matplotlib.figure.Figure`.
    """
    scores = np.asarray(dice, np.float64)
    if len(scores) != len(images) or len(scores) == 0:
        raise TfsegError(f"plot_best_worst: {len(scores)} Dice values for {len(images)} images")
    k = min(int(k), len(scores))
    unscored = np.isnan(scores)  # no score (nothing true, nothing predicted): last in both rows
    best = np.argsort(np.where(unscored, np.inf, -scores), kind="stable")  # ties keep the input order
    worst = np.argsort(np.where(unscored, np.inf, scores), kind="stable")
    width = _outline_width(np.asarray(images[0]).shape[0])
    cells = []
    for label, picks in (("best", best[:k]), ("worst", worst[:k])):
        for rank, i in enumerate(picks, 1):
            overlay = compare_overlay(images[i], true_masks[i], pred_masks[i], width=width)
            score = "-" if unscored[i] else f"{scores[i]:.3f}"
            cells.append((overlay, f"{label} {rank}: {_label(ids, i)}  Dice {score}"))
    fig = _new_figure(2.6 * k, 2 * 2.6 + 0.9)
    _overlay_grid(fig, cells, k)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(title or f"Best and worst {k} of {len(scores)} images by Dice")
    return _finish(fig, path)


def plot_dice_histogram(dice_values, path=None, bins: int = 20, title: Optional[str] = None):
    """The distribution of per-image Dice, with mean and median marked.

    Args:
        dice_values: ``[N]`` values, or ``{name: [N]}`` to compare runs (one
            colour each, drawn semi-transparent on shared bins over ``[0, 1]``).
        path: where to write the PNG.
        bins: number of bins over ``[0, 1]``.
        title: figure title.

    Returns:
        the :class:`matplotlib.figure.Figure`.
    """
    runs = dict(dice_values) if isinstance(dice_values, Mapping) else {"Dice": dice_values}
    fig = _new_figure(7.5, 3.8)
    ax = fig.subplots()
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    for i, (name, values) in enumerate(runs.items()):
        values = np.asarray(values, np.float64)
        values = values[~np.isnan(values)]  # images with no score (nothing true, nothing predicted)
        if values.size == 0:
            raise TfsegError(f"plot_dice_histogram: no Dice values for {name!r}")
        color = f"C{i % 10}"
        ax.hist(values, bins=edges, color=color, alpha=0.55 if len(runs) > 1 else 0.85,
                edgecolor="white", label=f"{name} (n={values.size})")
        prefix = f"{name} " if len(runs) > 1 else ""
        ax.axvline(values.mean(), color=color, linestyle="-", linewidth=1.5,
                   label=f"{prefix}mean {values.mean():.3f}")
        ax.axvline(np.median(values), color=color, linestyle=":", linewidth=1.5,
                   label=f"{prefix}median {np.median(values):.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Dice per image")
    ax.set_ylabel("images")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: bars stay visible
    ax.set_title(title or "Per-image Dice")
    return _finish(fig, path)
