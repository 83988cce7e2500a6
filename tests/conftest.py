"""Fixtures and helpers shared by several test files."""

import os

import numpy as np
import pytest
from PIL import Image

# tiny model settings for end-to-end runs: 32 px, 4 base filters, depth 2
TINY = dict(image_size=32, base_filters=4, depth=2, batch_size=8)


def write_folder_dataset(root, count=24, size=32, seed=0):
    """``root/images/*.png`` + ``root/masks/*.png``: dark discs on noisy skin-coloured backgrounds."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        radius = rng.uniform(size * 0.15, size * 0.3)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        image = np.full((size, size, 3), (210.0, 170.0, 150.0)) + rng.normal(0, 12, (size, size, 3))
        image[mask] *= 0.45
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(os.path.join(root, "images", f"s{i:02d}.png"))
        Image.fromarray((mask * 255).astype(np.uint8)).save(os.path.join(root, "masks", f"s{i:02d}.png"))
    return f"folder:{root}"


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    """A ``folder:`` SOURCE of 24 tiny lesion images (:func:`write_folder_dataset`), one per test module."""
    return write_folder_dataset(str(tmp_path_factory.mktemp("data")))
