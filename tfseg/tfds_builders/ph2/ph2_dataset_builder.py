"""PH2: 200 dermoscopic images of melanocytic lesions with lesion masks and diagnoses."""

from __future__ import annotations

import re

import tensorflow_datasets as tfds
from etils import epath

from tfseg.data.filepixels import binary_mask, open_bytes, rgb_array

IMAGES_FOLDER = "PH2 Dataset images"
DIAGNOSES = ("common_nevus", "atypical_nevus", "melanoma")  # PH2_dataset.txt "Clinical Diagnosis" 0, 1, 2


def find_images_folder(manual_dir: epath.Path) -> epath.Path:
    """``PH2 Dataset images`` in, under ``PH2Dataset/`` in, or equal to ``manual_dir``."""
    for candidate in (manual_dir / IMAGES_FOLDER, manual_dir / "PH2Dataset" / IMAGES_FOLDER, manual_dir):
        if candidate.is_dir() and any(re.fullmatch(r"IMD\d+", p.name) for p in candidate.iterdir()):
            return candidate
    raise FileNotFoundError(f"No '{IMAGES_FOLDER}' folder with IMDxxx cases in {manual_dir}. "
                            + Builder.MANUAL_DOWNLOAD_INSTRUCTIONS)


def parse_diagnoses(text: str) -> dict:
    """``{image id: 0 common nevus | 1 atypical nevus | 2 melanoma}`` from ``PH2_dataset.txt``.

    The file is a ``||``-separated table; a data row reads
    ``|| IMD003 || <histology> || 2 || <dermoscopic criteria> || <colours> ||``,
    field 3 being the clinical diagnosis code.
    """
    diagnoses = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("||")]
        if len(fields) > 3 and re.fullmatch(r"IMD\d+", fields[1]) and fields[3] in ("0", "1", "2"):
            diagnoses[fields[1]] = int(fields[3])
    return diagnoses


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for PH2 (manual download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Request the PH2 database at https://www.fc.up.pt/addi/ph2%20database.html,
    unpack the archive (PH2Dataset.rar: `unrar x` or 7-Zip; TFDS cannot extract
    RAR) and pass the folder that holds `PH2Dataset/` (or `PH2Dataset/` itself):
        tfseg inspect --data 'tfds:ph2?manual_dir=/path/to/unpacked'
    (or, from a checkout: tfds build tfseg/tfds_builders/ph2 --manual_dir /path/to/unpacked)
    Expected: PH2Dataset/PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp,
    PH2Dataset/PH2 Dataset images/IMD002/IMD002_lesion/IMD002_lesion.bmp and
    PH2Dataset/PH2_dataset.txt (the diagnoses; without it `diagnosis` is -1).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "segmentation_mask": tfds.features.Image(shape=(None, None, 1), use_colormap=True),
                "diagnosis": tfds.features.ClassLabel(names=DIAGNOSES),
                "image_id": tfds.features.Text(),
            }),
            supervised_keys=("image", "segmentation_mask"),
            homepage="https://www.fc.up.pt/addi/ph2%20database.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """PH2 has no official split: one ``train`` split holds every image."""
        return {"train": self._generate_examples(find_images_folder(dl_manager.manual_dir))}

    def _generate_examples(self, images_folder: epath.Path):
        table = images_folder.parent / "PH2_dataset.txt"
        diagnoses = parse_diagnoses(table.read_bytes().decode("utf-8", errors="replace")) if table.exists() else {}
        for case in sorted(images_folder.iterdir(), key=lambda p: p.name):
            name = case.name
            if not re.fullmatch(r"IMD\d+", name):
                continue
            image = case / f"{name}_Dermoscopic_Image" / f"{name}.bmp"
            mask = case / f"{name}_lesion" / f"{name}_lesion.bmp"
            # tfseg's pixel and mask rules (tfseg.data.filepixels, tfseg.masks): tfds:ph2 reads as ph2:PATH does.
            with open_bytes(image.read_bytes()) as image_file, open_bytes(mask.read_bytes()) as mask_file:
                pixels, labels = rgb_array(image_file), binary_mask(mask_file)
            yield name, {
                "image": pixels,
                "segmentation_mask": labels,
                "diagnosis": diagnoses.get(name, -1),
                "image_id": name,
            }
