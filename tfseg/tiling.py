"""Sliding-window prediction at native resolution, and flip test-time augmentation.

A model trained on ``N x N`` patches (``--patch-size``) predicts a whole image of
any size by running on overlapping ``N x N`` windows and blending their
probabilities, as nnU-Net and MONAI's ``sliding_window_inference`` do::

    stride  = max(1, round(window * (1 - overlap)))            per axis
    starts  = min(i * stride, length - window), i = 0 .. ceil((length - window) / stride)
    p(x)    = sum_k w_k(x) * p_k(x) / sum_k w_k(x)             over the windows k covering pixel x

The last window of each axis is moved back to end at the image's edge, so every
window lies inside the image and every pixel is covered. An image smaller than
the window is padded (zeros, at the bottom/right, as the training crops of a small
image are) to the window size and the result cropped back.

Blending weights ``w`` (per window, ``[h, w]``, the same for every window):

* ``"gaussian"`` (default): ``exp(-d^2 / (2 sigma^2))`` with ``sigma = window / 8`` per
  axis (nnU-Net's choice), ``d`` the distance of the pixel centre from the window centre;
  window edges, where the model saw the least context, count the least;
* ``"linear"``: a tent, ``min(i + 0.5, n - i - 0.5) / (n / 2)`` per axis (product of the axes);
* ``"constant"``: 1 (a plain average of the overlapping windows).

Weights are floored at ``1e-3`` of their maximum, so a pixel that only one window
edge covers still gets that window's prediction.

Windows are extracted with one gather from the flattened image and accumulated with
``segment_sum``, ``window_batch`` windows per model call (see :func:`windows_per_call`
for the memory budget). Everything is ``keras.ops``: it runs under the JAX backend,
eagerly under TensorFlow, and inside a TensorFlow graph of unknown image size (the
SavedModel's serving signature), where the loop over window batches becomes a
``while_loop``.

Flip TTA (:func:`flip_tta`) averages the probabilities of the image, its left-right
flip and its up-down flip (each flipped back): ``p = (f(x) + F_w f(F_w x) + F_h f(F_h x)) / 3``.

Whole images (decode, ``--scale``, the probabilities back at the image's size, the mask) go
through :mod:`tfseg.segment`, which calls :func:`sliding_window` and :func:`flip_tta`.

Example:
    >>> import numpy as np
    >>> from tfseg.tiling import sliding_window
    >>> predict = lambda x: x[..., :1]          # a "model" that returns its red channel
    >>> images = np.random.rand(1, 70, 50, 3).astype("float32")
    >>> out = sliding_window(predict, images, (32, 32), num_classes=1)
    >>> out.shape, bool(np.allclose(out, images[..., :1], atol=1e-6))
    ((1, 70, 50, 1), True)
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np
from keras import ops

BLENDS = ("gaussian", "linear", "constant")
TTA_MODES = ("none", "flips")
DEFAULT_OVERLAP = 0.25  # MONAI's default; 0.5 (nnU-Net's) costs about twice the windows
DEFAULT_BLEND = "gaussian"
# Bytes one model call may use for its windows: input + output float32 times ACTIVATION_FACTOR
# (a U-Net holds several feature maps per pixel at once while it runs).
DEFAULT_MEMORY_BYTES = 512 * 2**20
ACTIVATION_FACTOR = 32
GAUSSIAN_SIGMA = 1.0 / 8.0
WEIGHT_FLOOR = 1e-3


def check_overlap(overlap) -> float:
    """``overlap`` as a float in ``[0, 1)``, else ``ValueError`` naming it."""
    value = float(overlap)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"overlap {overlap!r}: must be in [0, 1)")
    return value


def check_blend(blend: str) -> str:
    if blend not in BLENDS:
        raise ValueError(f"blend {blend!r}: choose one of {', '.join(BLENDS)}")
    return blend


def check_tta(tta) -> str:
    """``None``/``"none"``/``"flips"`` -> ``"none"`` or ``"flips"``, else ``ValueError``."""
    value = "none" if tta in (None, False, "") else str(tta)
    if value not in TTA_MODES:
        raise ValueError(f"tta {tta!r}: choose one of {', '.join(TTA_MODES)}")
    return value


def window_stride(window: int, overlap: float) -> int:
    """Pixels between window starts: ``max(1, round(window * (1 - overlap)))``."""
    return max(1, int(round(window * (1.0 - check_overlap(overlap)))))


def window_starts(length: int, window: int, overlap: float = DEFAULT_OVERLAP) -> list:
    """Start offsets of the windows along one axis of ``length`` pixels (Python ints).

    ``length <= window`` gives ``[0]`` (the image is padded to the window). Otherwise
    starts step by :func:`window_stride` and the last one is ``length - window``.

    Example:
        >>> window_starts(100, 32, 0.25)
        [0, 24, 48, 68]
    """
    if length <= window:
        return [0]
    stride = window_stride(window, overlap)
    count = -(-(length - window) // stride) + 1
    return [min(i * stride, length - window) for i in range(count)]


def blend_weights(window_size: Tuple[int, int], blend: str = DEFAULT_BLEND) -> np.ndarray:
    """float32 ``[h, w]`` blending weights of one window (maximum 1; see the module docstring)."""
    check_blend(blend)
    axes = []
    for n in window_size:
        position = np.arange(n, dtype=np.float64) + 0.5
        if blend == "gaussian":
            sigma = n * GAUSSIAN_SIGMA
            axes.append(np.exp(-((position - n / 2.0) ** 2) / (2.0 * sigma**2)))
        elif blend == "linear":
            axes.append(np.minimum(position, n - position) / (n / 2.0))
        else:
            axes.append(np.ones(n))
    weights = axes[0][:, None] * axes[1][None, :]
    weights = weights / weights.max()
    return np.maximum(weights, WEIGHT_FLOOR).astype(np.float32)


def windows_per_call(window_size: Tuple[int, int], num_classes: int = 1, channels: int = 3,
                     memory_bytes: int = DEFAULT_MEMORY_BYTES) -> int:
    """Windows per model call within ``memory_bytes``: ``bytes // (h * w * 4 * (channels + K) * 32)``, >= 1."""
    per_window = window_size[0] * window_size[1] * 4 * (channels + num_classes) * ACTIVATION_FACTOR
    return max(1, int(memory_bytes) // per_window)


def flip_tta(predict: Callable) -> Callable:
    """``predict`` averaged over the identity, the left-right and the up-down flip (each flipped back).

    ``predict`` maps float ``[n, h, w, 3]`` to ``[n, h, w, K]``; so does the result (float32).
    """

    def averaged(images):
        total = ops.cast(predict(images), "float32")
        total = total + ops.flip(ops.cast(predict(ops.flip(images, axis=2)), "float32"), axis=2)
        total = total + ops.flip(ops.cast(predict(ops.flip(images, axis=1)), "float32"), axis=1)
        return total / 3.0

    return averaged


def _static(value):
    """``value`` as a Python int when it is known now (int or concrete tensor), else ``None``."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        return int(ops.convert_to_numpy(value))
    except Exception:  # noqa: BLE001 - a symbolic graph tensor: only known when the graph runs
        return None


def _starts_tensor(length, window: int, overlap: float):
    """:func:`window_starts` for a symbolic ``length`` (int32 tensor ``[n]``)."""
    stride = window_stride(window, overlap)
    excess = ops.maximum(length - window, 0)
    count = (excess + stride - 1) // stride + 1
    return ops.minimum(ops.arange(count, dtype="int32") * stride, excess)


def sliding_window(
    predict: Callable,
    images,
    window_size: Sequence[int],
    num_classes: int,
    overlap: float = DEFAULT_OVERLAP,
    blend: str = DEFAULT_BLEND,
    window_batch: Optional[int] = None,
    tta: Optional[str] = None,
):
    """Blended sliding-window probabilities of ``images`` at their own size.

    Args:
        predict: float32 windows ``[n, h, w, C]`` -> probabilities ``[n, h, w, K]``
            (a Keras model, or any function of the backend's tensors).
        images: float ``[B, H, W, C]``, any ``H`` and ``W`` (>= 1), already scaled as the model expects.
        window_size: ``(h, w)`` of the model's input.
        num_classes: ``K``, the channels ``predict`` returns.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.
        blend: ``"gaussian"``, ``"linear"`` or ``"constant"`` (module docstring).
        window_batch: windows per ``predict`` call (at most the windows there are);
            ``None`` -> :func:`windows_per_call`.
        tta: ``"flips"`` wraps ``predict`` in :func:`flip_tta`; ``None``/``"none"`` does not.

    Returns:
        float32 ``[B, H, W, K]``: per pixel the weighted mean of the windows covering it.

    Raises:
        ValueError: a bad ``overlap``, ``blend``, ``tta`` or ``window_batch``.
    """
    win_h, win_w = (int(window_size[0]), int(window_size[1]))
    overlap = check_overlap(overlap)
    weights_np = blend_weights((win_h, win_w), blend)
    if check_tta(tta) == "flips":
        predict = flip_tta(predict)
    if window_batch is None:
        window_batch = windows_per_call((win_h, win_w), num_classes)
    if isinstance(window_batch, bool) or int(window_batch) < 1:
        raise ValueError(f"window_batch {window_batch!r}: must be a positive integer")
    window_batch = int(window_batch)

    images = ops.convert_to_tensor(images)
    batch, height, width, channels = ops.shape(images)
    # Pad an image smaller than the window up to it (zeros at the bottom/right, cropped off at the end).
    padded_h = max(height, win_h) if _static(height) is not None else ops.maximum(height, win_h)
    padded_w = max(width, win_w) if _static(width) is not None else ops.maximum(width, win_w)
    if _static(padded_h) != _static(height) or _static(padded_w) != _static(width) or _static(height) is None:
        images = ops.pad(images, [[0, 0], [0, padded_h - height], [0, padded_w - width], [0, 0]])

    static = all(_static(v) is not None for v in (batch, padded_h, padded_w))
    if static:
        batch, padded_h, padded_w = int(batch), int(padded_h), int(padded_w)
        starts_y = ops.convert_to_tensor(np.array(window_starts(padded_h, win_h, overlap), np.int32))
        starts_x = ops.convert_to_tensor(np.array(window_starts(padded_w, win_w, overlap), np.int32))
        count_y, count_x = len(window_starts(padded_h, win_h, overlap)), len(window_starts(padded_w, win_w, overlap))
    else:
        starts_y = _starts_tensor(padded_h, win_h, overlap)
        starts_x = _starts_tensor(padded_w, win_w, overlap)
        count_y, count_x = ops.shape(starts_y)[0], ops.shape(starts_x)[0]
    per_image = count_y * count_x
    total_windows = batch * per_image
    pixels = batch * padded_h * padded_w
    # No call larger than the windows there are (no copies to fill a small image's only call).
    window_batch = min(window_batch, total_windows) if static else ops.maximum(ops.minimum(window_batch, total_windows), 1)

    # Flat pixel index of each window's top-left corner, and of every pixel of a window relative to it.
    k = ops.arange(total_windows, dtype="int32")
    image_index, within = k // per_image, k % per_image
    corner = (image_index * (padded_h * padded_w) + ops.take(starts_y, within // count_x) * padded_w
              + ops.take(starts_x, within % count_x))
    offsets = (ops.arange(win_h, dtype="int32")[:, None] * padded_w
               + ops.arange(win_w, dtype="int32")[None, :])
    flat_images = ops.reshape(ops.cast(images, "float32"), (-1, channels))
    weights = ops.convert_to_tensor(weights_np[None, :, :, None])

    def accumulate(step, sums):
        probabilities_sum, weight_sum = sums
        wanted = step * window_batch + ops.arange(window_batch, dtype="int32")
        # The last call is filled up with copies of the last window, counted with weight 0.
        valid = ops.cast(wanted < total_windows, "float32")
        chosen = ops.take(corner, ops.minimum(wanted, total_windows - 1))
        index = chosen[:, None, None] + offsets[None, :, :]
        windows = ops.take(flat_images, index, axis=0)
        probabilities = ops.cast(predict(windows), "float32")
        weight = weights * valid[:, None, None, None]
        flat_index = ops.reshape(index, (-1,))
        probabilities_sum = probabilities_sum + ops.segment_sum(
            ops.reshape(probabilities * weight, (-1, num_classes)), flat_index, num_segments=pixels)
        weight_sum = weight_sum + ops.segment_sum(
            ops.reshape(ops.broadcast_to(weight, (window_batch, win_h, win_w, 1)), (-1, 1)), flat_index,
            num_segments=pixels)
        return probabilities_sum, weight_sum

    sums = (ops.zeros((pixels, num_classes), "float32"), ops.zeros((pixels, 1), "float32"))
    calls = (total_windows + window_batch - 1) // window_batch
    if _static(calls) is not None:
        for step in range(_static(calls)):
            sums = accumulate(step, sums)
    else:
        sums = ops.fori_loop(0, calls, accumulate, sums)
    probabilities = sums[0] / ops.maximum(sums[1], 1e-12)
    probabilities = ops.reshape(probabilities, (batch, padded_h, padded_w, num_classes))
    return probabilities[:, :height, :width, :]
