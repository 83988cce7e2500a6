"""``folder:PATH``: ``PATH/images/*`` + ``PATH/masks/*`` matched by file stem.

A mask may carry one of :data:`MASK_SUFFIXES` (``a.jpg`` <-> ``a_mask.png``). Id and
group: the image's stem. Checking and decoding: :class:`~tfseg.data.filesource.FileSource`.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from tfseg import fileio
from tfseg.data.filesource import IMAGE_EXTENSIONS, FileSource, Pair, is_ignored, is_image_file
from tfseg.data.sources import register_source
from tfseg.errors import DataError

MASK_SUFFIXES = ("_mask", "-mask", "_masks", "_segmentation", "_seg", "_label", "_labels", "_gt",
                 "_lesion", "_annotation")


def _files_by_stem(folder: str, warnings) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for path in (fileio.join(folder, name) for name in fileio.listdir(folder)):
        if is_ignored(path):
            continue
        if is_image_file(path):  # no per-file folder test: one request each on an object store
            found.setdefault(fileio.stem(path), []).append(path)
        elif fileio.isdir(path):
            warnings.append((path, "subfolder ignored (images and masks are read from one level)"))
        else:
            warnings.append((path, f"ignored: not an image file type ({', '.join(IMAGE_EXTENSIONS)})"))
    return found


def _strip_mask_suffix(stem: str) -> Optional[str]:
    lowered = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


@register_source
class FolderSource(FileSource):
    """``folder:PATH``: ``PATH/images/*`` + ``PATH/masks/*`` matched by stem (see the module docstring)."""

    KIND = "folder"

    def _find_root(self, path: str) -> str:
        missing = [name for name in ("images", "masks") if not fileio.isdir(fileio.join(path, name))]
        if missing:
            raise DataError(f"data source {self.spec.text!r}: {path} has no {' and no '.join(missing)} folder "
                            "(expected PATH/images/* and PATH/masks/*)")
        return path

    def group_of(self, stem: str) -> str:
        return stem

    def _list(self) -> Tuple[List[Pair], List[Tuple[str, str]], List[Tuple[str, str]]]:
        warnings: List[Tuple[str, str]] = []
        problems: List[Tuple[str, str]] = []
        images = _files_by_stem(fileio.join(self.root, "images"), warnings)
        masks = _files_by_stem(fileio.join(self.root, "masks"), warnings)
        claims: Dict[str, List[str]] = {}
        for stem, paths in masks.items():
            base = stem if stem in images else _strip_mask_suffix(stem)
            claims.setdefault(base if base in images else stem, []).extend(paths)
        pairs = []
        for stem, paths in images.items():
            if len(paths) > 1:
                problems.extend((p, f"{len(paths)} images share the stem {stem!r}") for p in paths)
                continue
            candidates = claims.get(stem, [])
            if not candidates:
                problems.append((paths[0], f"no mask (looked for masks/{stem}.* and {stem}_mask.*, "
                                                 f"{stem}_segmentation.* ...)"))
            elif len(candidates) > 1:
                names = ", ".join(fileio.basename(p) for p in candidates)
                problems.append((paths[0], f"{len(candidates)} masks match: {names}"))
            else:
                pairs.append(Pair(stem, self.group_of(stem), paths[0], candidates[0]))
        for stem, paths in claims.items():
            if stem not in images:
                problems.extend((p, "no image for this mask") for p in paths)
        return pairs, problems, warnings
