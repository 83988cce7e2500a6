"""Prediction images in TensorBoard while a model trains.

:class:`EpochTensorBoard` (``keras.callbacks.TensorBoard`` with epochs numbered
from 1) logs the scalar curves; :class:`PredictionImages` adds, every few epochs,
a handful of fixed validation images with the true (green) and predicted (red)
outlines, so one can watch the masks improve::

    callbacks = [
        EpochTensorBoard(log_dir),
        PredictionImages(val_dataset, log_dir, max_images=4),
    ]
    model.fit(train_dataset, validation_data=val_dataset, callbacks=callbacks)
    # tensorboard --logdir log_dir   -> IMAGES tab, run "images", tag "predictions"
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tfseg import fileio, viz
from tfseg.errors import TfsegError


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` whose epoch scalars sit at step = epoch number from 1.

    Keras writes them at the 0-based epoch index; tfseg numbers epochs from 1 everywhere
    (log lines, ``history.csv``, ``best_epoch``, plots, the :class:`PredictionImages` steps).
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def write_image_summary(tag: str, pictures, step: int, description: str = ""):
    """Write ``uint8 [N, H, W, 3]`` pictures as one image summary (all N) to the default writer.

    ``tf.summary.image`` with ``max_outputs=N``; it needs the ``tensorboard``
    package, which tfseg installs.
    """
    pictures = np.asarray(pictures, np.uint8)
    return tf.summary.image(tag, pictures, step=step, max_outputs=len(pictures), description=description)


def take_examples(data, max_images: int):
    """The first ``max_images`` ``(images, masks)`` of ``data`` as numpy arrays.

    Args:
        data: a ``tf.data.Dataset`` of ``(images, masks)`` batches (extra
            elements such as sample weights are ignored) or a pair of arrays.
        max_images: how many to keep.
    """
    if isinstance(data, tf.data.Dataset):
        images, masks = [], []
        for batch in data.unbatch().take(int(max_images)):
            images.append(np.asarray(batch[0]))
            masks.append(np.asarray(batch[1]))
        if not images:
            raise TfsegError("PredictionImages: the dataset is empty")
        return np.stack(images), np.stack(masks)
    expected = "expected a tf.data.Dataset or an (images [N,H,W,3], masks [N,H,W,1]) pair"
    try:
        images, masks = np.asarray(data[0]), np.asarray(data[1])
    except (TypeError, IndexError, KeyError):
        raise TfsegError(f"PredictionImages: {expected}") from None
    if images.ndim != 4 or masks.ndim not in (3, 4) or len(images) != len(masks) or len(images) == 0:
        raise TfsegError(f"PredictionImages: {expected}; got shapes {images.shape} and {masks.shape}")
    return images[: int(max_images)], masks[: int(max_images)]


class PredictionImages(keras.callbacks.Callback):
    """Writes prediction overlays to TensorBoard as image summaries.

    At the end of every ``every_n_epochs``-th epoch (and of the last one), the
    model predicts the same ``max_images`` images and writes one summary, tag
    ``predictions``, step = epoch number (1-based), holding
    :func:`tfseg.viz.compare_overlay` pictures (true outline green, predicted
    red at threshold 0.5, both yellow) with the per-image Dice in the
    description. The images are taken once, when the callback is created, so
    every epoch shows the same ones.

    Args:
        data: a ``tf.data.Dataset`` of ``(images, masks)`` batches (e.g. the
            validation set) or an ``(images, masks)`` pair of arrays.
        log_dir: the TensorBoard log folder (the one given to
            ``keras.callbacks.TensorBoard``); images go to ``log_dir/images``.
        max_images: how many images to show.
        every_n_epochs: write every this many epochs.
        name: the summary tag.

    Example:
        >>> cb = PredictionImages((np.zeros((2, 32, 32, 3)), np.zeros((2, 32, 32, 1))), "/tmp/tb")
    """

    def __init__(self, data, log_dir, max_images: int = 4, every_n_epochs: int = 1, name: str = "predictions"):
        super().__init__()
        if isinstance(data, (str, os.PathLike)):
            raise TfsegError(
                f"PredictionImages: expected the data first (a tf.data.Dataset or (images, masks)), "
                f"got the path {str(data)!r}; log_dir comes second"
            )
        if int(max_images) < 1 or int(every_n_epochs) < 1:
            raise TfsegError(
                f"PredictionImages: max_images={max_images!r} and every_n_epochs={every_n_epochs!r} must be >= 1"
            )
        self.images, self.masks = take_examples(data, max_images)
        self.log_dir = str(log_dir)
        self.max_images = int(max_images)
        self.every_n_epochs = int(every_n_epochs)
        self.name = name
        self._writer = None
        self._last_epoch = None
        self._last_written = None

    def _summary_writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(fileio.join(self.log_dir, "images"))
        return self._writer

    def overlays(self):
        """``(pictures uint8 [N, H, W, 3], dice float32 [N])`` for the current model."""
        probabilities = np.asarray(self.model.predict(self.images, verbose=0))
        width = max(1, self.images.shape[1] // 128)
        pictures = np.stack([
            viz.compare_overlay(image, true, pred, width=width)
            for image, true, pred in zip(self.images, self.masks, probabilities)
        ])
        return pictures, viz.per_image_dice(self.masks, probabilities)

    def write(self, step: int) -> None:
        """Write the overlays at ``step`` now."""
        pictures, dice = self.overlays()
        description = "True outline green, predicted red, both yellow. Dice per image: " + ", ".join(
            f"#{i} {d:.3f}" for i, d in enumerate(dice)
        )
        with self._summary_writer().as_default():
            write_image_summary(self.name, pictures, step, description)
        self._summary_writer().flush()
        self._last_written = step

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch + 1
        if self._last_epoch % self.every_n_epochs == 0:
            self.write(self._last_epoch)

    def on_train_end(self, logs=None):
        # The last epoch is worth seeing even when it is off the every_n_epochs grid
        # (or training stopped early).
        if self._last_epoch is not None and self._last_written != self._last_epoch:
            self.write(self._last_epoch)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
