"""An independent NumPy reference of the path from an image to its mask (tfseg.segment, tfseg.tiling).

Written from the documented formulas with plain loops, sharing no code with tfseg: window
starts, Gaussian/linear/constant blending, zero padding of small images, flip TTA, restore,
threshold. Only the image resizes use ``tf.image.resize`` (the documented resize itself).
"""

import numpy as np
import tensorflow as tf


def reference_weights(height, width, blend):
    def axis(n):
        centre = np.arange(n) + 0.5
        if blend == "gaussian":
            return np.exp(-((centre - n / 2) ** 2) / (2 * (n / 8) ** 2))
        if blend == "linear":
            return np.minimum(centre, n - centre) / (n / 2)
        return np.ones(n)

    weights = np.outer(axis(height), axis(width))
    return np.maximum(weights / weights.max(), 1e-3)


def reference_starts(length, window, overlap):
    if length <= window:
        return [0]
    stride = max(1, int(round(window * (1 - overlap))))
    starts = list(range(0, length - window, stride)) + [length - window]
    return sorted(set(starts))


def reference_sliding_window(predict, images, window, overlap, blend):
    """Loop over every window of every image, accumulate weighted probabilities, divide, crop."""
    batch, height, width, channels = images.shape
    win_h, win_w = window
    padded = np.zeros((batch, max(height, win_h), max(width, win_w), channels), np.float64)
    padded[:, :height, :width] = images
    weights = reference_weights(win_h, win_w, blend)[..., None]
    total, weight_sum = None, np.zeros(padded.shape[:3] + (1,))
    for b in range(batch):
        for y in reference_starts(padded.shape[1], win_h, overlap):
            for x in reference_starts(padded.shape[2], win_w, overlap):
                p = np.asarray(predict(padded[b : b + 1, y : y + win_h, x : x + win_w].astype(np.float32)))[0]
                if total is None:
                    total = np.zeros(padded.shape[:3] + (p.shape[-1],))
                total[b, y : y + win_h, x : x + win_w] += weights * p
                weight_sum[b, y : y + win_h, x : x + win_w] += weights
    return (total / weight_sum)[:, :height, :width]


def reference_flips(predict):
    """The mean of f(x), f of the left-right flip (flipped back) and f of the up-down flip (flipped back)."""

    def averaged(x):
        x = np.asarray(x, np.float32)
        across = np.asarray(predict(x[:, :, ::-1].copy()))[:, :, ::-1]
        down = np.asarray(predict(x[:, ::-1].copy()))[:, ::-1]
        return (np.asarray(predict(x)) + across + down) / 3.0

    return averaged


def stored_resize(image, size):
    """uint8 ``[H, W, 3]`` -> what the training pipeline stores: antialiased bilinear, rounded, clipped."""
    resized = tf.image.resize(image[None].astype(np.float32), size, method="bilinear", antialias=True)[0].numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def reference_path(predict, image, window, tiled=False, scale=1.0, tta="none", threshold=0.5,
                   overlap=0.25, blend="gaussian"):
    """``(probabilities [H, W, K], mask [H, W])`` of one uint8 image, the documented way.

    Resize mode: stored resize to ``window``, / 255, f, bilinear back. Tiled: stored resize by
    ``scale`` (sides ``max(1, round(side * scale))``; none at scale 1), / 255, sliding window of f
    over the padded image, bilinear back. f is ``predict``, averaged over flips with ``tta="flips"``.
    """
    height, width = image.shape[:2]
    f = reference_flips(predict) if tta == "flips" else predict
    if tiled:
        size = (max(1, int(np.round(height * scale))), max(1, int(np.round(width * scale))))
        pixels = image if scale == 1.0 else stored_resize(image, size)
        probabilities = reference_sliding_window(f, pixels[None] / 255.0, window, overlap, blend)
    else:
        pixels = stored_resize(image, window)
        probabilities = np.asarray(f(pixels[None].astype(np.float32) / 255.0), np.float64)
    if probabilities.shape[1:3] != (height, width):
        probabilities = tf.image.resize(probabilities.astype(np.float32), (height, width), method="bilinear").numpy()
    probabilities = probabilities[0].astype(np.float32)
    if probabilities.shape[-1] == 1:
        return probabilities, (probabilities[..., 0] >= threshold).astype(np.uint8)
    return probabilities, np.argmax(probabilities, -1).astype(np.uint8)
