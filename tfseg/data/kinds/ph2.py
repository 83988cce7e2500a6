"""``ph2:PATH``: the PH2 archive as unpacked.

``PATH/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` with mask
``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``; PATH may also be the folder above
(``PH2Dataset``'s parent) or ``PH2 Dataset images`` itself. Id and group: ``IMDxxx``
(one image per lesion). Checking and decoding: :class:`~tfseg.data.filesource.FileSource`.
"""

from __future__ import annotations

import re
from typing import List, Optional

from tfseg import fileio
from tfseg.data.filesource import FileSource, Pair, is_image_file
from tfseg.data.sources import register_source
from tfseg.errors import DataError

PH2_IMAGES_FOLDER = "PH2 Dataset images"


def _ph2_cases(folder: str) -> List[str]:
    return [fileio.join(folder, name) for name in fileio.listdir(folder)
            if re.fullmatch(r"IMD\d+", name) and fileio.isdir(fileio.join(folder, name))]


def _find_by_stem(folder: str, stem: str) -> Optional[str]:
    """``folder/stem.<any image extension>`` (case-insensitive extension), else None."""
    if not fileio.isdir(folder):
        return None
    for name in fileio.listdir(folder):
        if fileio.stem(name) == stem and is_image_file(name):
            return fileio.join(folder, name)
    return None


@register_source
class Ph2Source(FileSource):
    """``ph2:PATH``: the PH2 archive as unpacked (see the module docstring)."""

    KIND = "ph2"

    def _find_root(self, path: str) -> str:
        for candidate in (fileio.join(path, PH2_IMAGES_FOLDER), fileio.join(path, "PH2Dataset", PH2_IMAGES_FOLDER),
                          path):
            if fileio.isdir(candidate) and (fileio.basename(candidate) == PH2_IMAGES_FOLDER
                                            or _ph2_cases(candidate)):
                return candidate
        raise DataError(f"data source {self.spec.text!r}: no '{PH2_IMAGES_FOLDER}' folder in {path} (expected "
                        f"PATH/{PH2_IMAGES_FOLDER}/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp)")

    def _list(self):
        problems, pairs = [], []
        cases = _ph2_cases(self.root)
        if not cases:
            raise DataError(f"data source {self.spec.text!r}: no IMDxxx folders in {self.root}")
        for case in cases:
            name = fileio.basename(case)
            image = _find_by_stem(fileio.join(case, f"{name}_Dermoscopic_Image"), name)
            mask = _find_by_stem(fileio.join(case, f"{name}_lesion"), f"{name}_lesion")
            if image is None:
                problems.append((fileio.join(case, f"{name}_Dermoscopic_Image", f"{name}.bmp"), "missing image"))
            if mask is None:
                problems.append((fileio.join(case, f"{name}_lesion", f"{name}_lesion.bmp"), "missing mask"))
            if image is not None and mask is not None:
                pairs.append(Pair(name, name, image, mask))
        return pairs, problems, []
