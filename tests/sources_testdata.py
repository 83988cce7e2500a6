"""Tiny on-disk datasets in the real layouts, for the data-source tests (tests/test_sources_*.py,
test_inspect.py, test_prepare.py). Every writer returns what it wrote, so tests compare pixels exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def disc(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """A boolean disc ``[height, width]``."""
    y, x = np.mgrid[:height, :width]
    return (y - cy) ** 2 + (x - cx) ** 2 < radius ** 2


def rgb(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_ph2(root: Path, names=("IMD002", "IMD003", "IMD004", "IMD005"), size=(24, 32)) -> dict:
    """``root/PH2Dataset/PH2 Dataset images/IMDxxx/...`` with 24-bit BMP images and 8-bit 0/255 BMP masks.

    Returns ``{name: (image array, 0/1 mask array)}``.
    """
    height, width = size
    images = root / "PH2Dataset" / "PH2 Dataset images"
    written = {}
    for i, name in enumerate(names):
        case = images / name
        (case / f"{name}_Dermoscopic_Image").mkdir(parents=True)
        (case / f"{name}_lesion").mkdir()
        (case / f"{name}_roi").mkdir()
        image, mask = rgb(height, width, i), disc(height, width, height / 2, width / 2, 4 + i)
        Image.fromarray(image).save(case / f"{name}_Dermoscopic_Image" / f"{name}.bmp")
        Image.fromarray((mask * 255).astype(np.uint8)).save(case / f"{name}_lesion" / f"{name}_lesion.bmp")
        written[name] = (image, mask.astype(np.uint8))
    return written


MADS_FRAMES = (
    "HipHop_HipHop1_C0_00180", "HipHop_HipHop1_C1_00180", "HipHop_HipHop1_C0_00225",
    "Jazz_Jazz2_C0_00045", "Jazz_Jazz2_C2_00090",
    "Kata_S1_C0_00400", "Kata_S1_C1_00405",
    "Taichi_S5_C0_00540", "Taichi_S5_C2_00585",
    "Sports_Badminton3_C1_00010", "Sports_Badminton3_C0_00015",
)


def write_mads(root: Path, frames=MADS_FRAMES, size=(32, 24), nested=True) -> dict:
    """The Kaggle archive's nesting, PNG frames and RGBA black/white masks; returns ``{stem: (image, mask)}``."""
    height, width = size
    base = root / "segmentation_full_body_mads_dataset_1192_img" / "segmentation_full_body_mads_dataset_1192_img" \
        if nested else root
    (base / "images").mkdir(parents=True)
    (base / "masks").mkdir()
    (base / "collages").mkdir()
    written = {}
    for i, stem in enumerate(frames):
        image, mask = rgb(height, width, 100 + i), disc(height, width, height / 2, width / 2, 5 + i % 4)
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[mask, :3] = 255
        rgba[..., 3] = 255
        Image.fromarray(image).save(base / "images" / f"{stem}.png")
        Image.fromarray(rgba, "RGBA").save(base / "masks" / f"{stem}.png")
        written[stem] = (image, mask.astype(np.uint8))
    return written


def write_folder(root: Path, count: int = 6, size=(20, 28), order=None) -> dict:
    """``root/images/sNN.png`` + ``root/masks/sNN.png`` (0/255 gray); ``order`` permutes the writing order."""
    height, width = size
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    written = {}
    for i in (order if order is not None else range(count)):
        stem = f"s{i:02d}"
        image, mask = rgb(height, width, 200 + i), disc(height, width, height / 2, width / 2, 3 + i % 5)
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{stem}.png")
        written[stem] = (image, mask.astype(np.uint8))
    return written


def palette_mask(values: np.ndarray) -> Image.Image:
    """A palette ('P') PNG whose indices are ``values`` and whose colours are NOT the indices."""
    image = Image.fromarray(values.astype(np.uint8), "P")
    colours = [(0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200)] + [(i, i, i) for i in range(4, 256)]
    image.putpalette([c for colour in colours for c in colour])
    return image


def fit_one_step(source, num_classes: int = 1, image_size: int = 32, **options) -> float:
    """One ``model.fit`` step of a tiny functional model on ``load_dataset(source, "train")``; returns the loss.

    Also checks the batch contract: float32 images in [0, 1], masks float32 {0, 1} (binary) or int32 ids.
    """
    import keras
    import tensorflow as tf

    from tfseg.data import load_dataset

    ds = load_dataset(source, split="train", image_size=image_size, batch_size=2, num_classes=num_classes,
                      **options)
    images, masks = next(iter(ds))
    assert images.dtype == tf.float32 and images.shape[1:] == (image_size, image_size, 3)
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    assert masks.shape[1:] == (image_size, image_size, 1)
    if num_classes == 1:
        assert masks.dtype == tf.float32 and set(np.unique(masks.numpy())) <= {0.0, 1.0}
    else:
        assert masks.dtype == tf.int32 and int(tf.reduce_max(masks)) < num_classes
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(num_classes, 1, activation="sigmoid" if num_classes == 1 else "softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy" if num_classes == 1 else "sparse_categorical_crossentropy")
    history = model.fit(ds.take(1).repeat(), steps_per_epoch=1, epochs=1, shuffle=False, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss)
    return loss
