"""MADS full-body segmentation: 1192 video frames of martial arts, dancing and sports with person masks."""

from __future__ import annotations

import re

import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from tfseg.data.filesource import IMAGE_EXTENSIONS
from tfseg.data.kinds.mads import MADS_GROUP_PATTERN
from tfseg.data.filepixels import binary_mask, open_bytes, rgb_array

# A frame "HipHop_HipHop1_C0_00180" belongs to the recording "HipHop_HipHop1" (camera C0, frame 180):
# the rule of tfseg's `mads:` source.
SEQUENCE_PATTERN = re.compile(MADS_GROUP_PATTERN)


def sequence_of(stem: str) -> str:
    """The recorded sequence of a frame: its stem without camera and frame number."""
    match = SEQUENCE_PATTERN.match(stem)
    return match.group(1) if match else stem


def find_data_folder(manual_dir: epath.Path) -> epath.Path:
    """The folder holding ``images/`` and ``masks/``: ``manual_dir`` or up to two levels below."""
    candidates = [manual_dir]
    for _ in range(2):
        candidates += [c for parent in list(candidates) if parent.is_dir() for c in sorted(parent.iterdir())
                       if c.is_dir() and c not in candidates]
    for candidate in candidates:
        if (candidate / "images").is_dir() and (candidate / "masks").is_dir():
            return candidate
    raise FileNotFoundError(f"No folder with images/ and masks/ in {manual_dir}. "
                            + Builder.MANUAL_DOWNLOAD_INSTRUCTIONS)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for the MADS full-body segmentation set (manual download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download https://www.kaggle.com/datasets/tapakah68/segmentation-full-body-mads-dataset
    (`kaggle datasets download -d tapakah68/segmentation-full-body-mads-dataset`), unzip it
    and pass the unzipped folder as the manual dir:
        tfseg inspect --data 'tfds:mads?manual_dir=/path/to/unzipped'
    (or, from a checkout: tfds build tfseg/tfds_builders/mads --manual_dir /path/to/unzipped)
    Expected (one or two folders down): images/HipHop_HipHop1_C0_00180.png and
    masks/HipHop_HipHop1_C0_00180.png (same file name).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "segmentation_mask": tfds.features.Image(shape=(None, None, 1), use_colormap=True),
                "image_id": tfds.features.Text(),
                "sequence": tfds.features.Text(),
            }),
            supervised_keys=("image", "segmentation_mask"),
            homepage="https://www.kaggle.com/datasets/tapakah68/segmentation-full-body-mads-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """No official split: one ``train`` split holds every frame (split by ``sequence`` to avoid leaks)."""
        return {"train": self._generate_examples(find_data_folder(dl_manager.manual_dir))}

    def _generate_examples(self, folder: epath.Path):
        masks = {p.stem: p for p in (folder / "masks").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        for image in sorted((folder / "images").iterdir(), key=lambda p: p.name):
            if image.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if image.stem not in masks:
                logging.warning("MADS: no mask for %s; frame left out", image.name)
                continue
            # tfseg's pixel and mask rules (tfseg.data.filepixels, tfseg.masks): tfds:mads reads as mads:PATH does.
            with open_bytes(image.read_bytes()) as image_file, open_bytes(masks[image.stem].read_bytes()) as mask_file:
                pixels, labels = rgb_array(image_file), binary_mask(mask_file)
            yield image.stem, {
                "image": pixels,
                "segmentation_mask": labels,
                "image_id": image.stem,
                "sequence": sequence_of(image.stem),
            }
