"""Clean-up of predicted masks: keep the largest component, drop small components, fill holes.

Applied after the one path's threshold/argmax (:mod:`tfseg.segment`), in NumPy/SciPy on the
client: ``tfseg predict``, ``tfseg evaluate``, :mod:`tfseg.inference` (every model kind) all call
:func:`clean_mask` through :class:`Cleanup`. An exported SavedModel stores its clean-up in its
settings (``tfseg export --keep-largest ...``) and tfseg's SavedModel predictor applies it; the
serving graph itself does NOT (a connected-component labelling has no exact TensorFlow op), so a
TF Serving client applies it to the ``mask`` it receives (docs/guide.md, "Clean-up of masks", gives the lines).

The rules, for each foreground class ``c`` of the mask on its own (every value but 0; a binary
mask has the one class 1), in this order:

1. ``min_size=N``: every 8-connected component of class ``c`` with fewer than ``N`` pixels
   becomes background (0).
2. ``keep_largest``: every component of class ``c`` but its largest becomes background. Tie:
   of two components of the same size, the one whose first pixel comes first in row-major
   order (top-most, then left-most) stays. With ``min_size`` too, the largest must also
   reach ``N`` pixels.
3. ``fill_holes``: a hole of class ``c`` (a 4-connected region of background that does not
   touch the image border and whose every neighbour is of class ``c``) becomes ``c``. Another
   class inside ``c`` (a nucleus inside a cell) is not a hole and stays; background between it
   and ``c`` is not a hole either (it also touches that class).

Connectivity: a component of a class is 8-connected (pixels touching by an edge or a corner are
one object); background regions are 4-connected, the complement that makes "an 8-connected ring
encloses its inside" true (a ring drawn with diagonal steps has a hole). Background pixels are
never changed except by ``fill_holes``; removal (1, 2) counts a component's own pixels, holes not
included, and happens before filling (so a speck of class 2 removed from inside class 1 leaves
a hole that ``fill_holes`` fills with 1).

Example:
    >>> import numpy as np
    >>> mask = np.zeros((5, 7), np.uint8)
    >>> mask[0:4, 0:4] = 1; mask[1:3, 1:3] = 0     # a ring of 12 pixels around a 2 x 2 hole
    >>> mask[4, 6] = 1                             # a speck
    >>> cleaned = clean_mask(mask, keep_largest=True, fill_holes=True)
    >>> int(cleaned.sum()), int(cleaned[4, 6]), int(cleaned[1, 1])
    (16, 0, 1)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Union

import numpy as np

from tfseg.errors import ConfigError

# 8-connected components of a class; 4-connected background (holes).
FOREGROUND_CONNECTIVITY = 8
BACKGROUND_CONNECTIVITY = 4


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """Which clean-up steps run (module docstring); the default runs none.

    Args:
        keep_largest: keep only the largest component of each foreground class.
        min_size: drop components of fewer pixels (0: none).
        fill_holes: fill background enclosed by one class with that class.

    Raises:
        ConfigError: ``min_size`` not a non-negative integer.
    """

    keep_largest: bool = False
    min_size: int = 0
    fill_holes: bool = False

    def __post_init__(self):
        size = self.min_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise ConfigError(f"min_size {size!r}: must be a non-negative integer (pixels)")
        object.__setattr__(self, "min_size", int(size))
        object.__setattr__(self, "keep_largest", bool(self.keep_largest))
        object.__setattr__(self, "fill_holes", bool(self.fill_holes))

    @property
    def enabled(self) -> bool:
        """Whether any step runs."""
        return self.keep_largest or self.min_size > 0 or self.fill_holes

    def describe(self) -> str:
        """The steps as CLI flags (``"--keep-largest --min-size 20"``), ``"none"`` when none runs."""
        flags = (["--keep-largest"] if self.keep_largest else []) + (
            [f"--min-size {self.min_size}"] if self.min_size else []) + (["--fill-holes"] if self.fill_holes else [])
        return " ".join(flags) or "none"

    def apply(self, mask) -> np.ndarray:
        """:func:`clean_mask` of ``mask`` with these steps (``mask`` itself when none runs)."""
        if not self.enabled:
            return np.asarray(mask)
        return clean_mask(mask, **dataclasses.asdict(self))

    def replace(self, changes: Optional[Mapping[str, Any]] = None) -> "Cleanup":
        """A copy with ``changes`` (a mapping of field names; ``None`` values leave a field as it is).

        Raises:
            ConfigError: an unknown name, or a bad value.
        """
        changes = {key: value for key, value in dict(changes or {}).items() if value is not None}
        unknown = sorted(set(changes) - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"clean-up {', '.join(unknown)}: unknown; known: keep_largest, min_size, fill_holes")
        return dataclasses.replace(self, **changes)


def as_cleanup(value: Union[None, "Cleanup", Mapping[str, Any]], base: Optional[Cleanup] = None) -> Cleanup:
    """``value`` as a :class:`Cleanup`: a Cleanup as it is; a mapping changes ``base`` (default: none);
    ``None``: ``base``."""
    base = Cleanup() if base is None else base
    if isinstance(value, Cleanup):
        return value
    if value is None:
        return base
    if not isinstance(value, Mapping):
        raise ConfigError(f"cleanup {value!r}: expected a tfseg.postprocess.Cleanup or a mapping of its fields")
    return base.replace(value)


def clean_mask(mask, keep_largest: bool = False, min_size: int = 0, fill_holes: bool = False) -> np.ndarray:
    """The cleaned copy of a class-id mask ``[..., H, W]`` (each ``[H, W]`` on its own; module docstring).

    Args:
        mask: integer class ids (0 background; a binary mask is 0/1), 2-D or a batch of 2-D masks.
        keep_largest, min_size, fill_holes: the steps (:class:`Cleanup`).

    Returns:
        A new array of ``mask``'s shape and dtype.
    """
    Cleanup(keep_largest, min_size, fill_holes)  # checks the values
    mask = np.asarray(mask)
    if mask.ndim < 2:
        raise ConfigError(f"mask of shape {mask.shape}: expected [..., height, width]")
    out = mask.copy()
    for plane in out.reshape(-1, *mask.shape[-2:]):  # views into `out`
        _clean_plane(plane, keep_largest, int(min_size), fill_holes)
    return out


def mask_as_probabilities(mask, num_classes: int) -> np.ndarray:
    """float32 ``[..., H, W, K]`` that the one path's threshold/argmax turns back into ``mask``.

    One class: the 0/1 mask itself (``1 >= threshold`` for every threshold in (0, 1)); ``K``
    classes: one-hot. How a cleaned mask is scored by the metrics of probabilities.
    """
    mask = np.asarray(mask)
    if num_classes == 1:
        return (mask > 0).astype(np.float32)[..., np.newaxis]
    return np.eye(num_classes, dtype=np.float32)[mask.astype(np.int64)]


def components(members: np.ndarray):
    """``(labels, count)``: the 8-connected components of a boolean plane (``FOREGROUND_CONNECTIVITY``),
    numbered 1..count; the one component rule of the clean-up and of the border weights
    (:mod:`tfseg.data.borders`)."""
    from scipy import ndimage

    return ndimage.label(members, structure=_structure(FOREGROUND_CONNECTIVITY))


def _structure(connectivity: int):
    from scipy import ndimage

    return ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)


def _clean_plane(plane: np.ndarray, keep_largest: bool, min_size: int, fill_holes: bool) -> None:
    """Clean one ``[H, W]`` mask in place."""
    if keep_largest or min_size > 0:
        for c in np.unique(plane):
            if c == 0:
                continue
            labels, count = components(plane == c)
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            keep = sizes >= min_size
            if keep_largest:
                largest = 1 + int(np.argmax(sizes[1:]))  # the first of equal sizes: first in row-major order
                keep &= np.arange(count + 1) == largest
            keep[0] = True  # the pixels of other classes
            plane[~keep[labels]] = 0
    if fill_holes:
        _fill_holes(plane)


def _fill_holes(plane: np.ndarray) -> None:
    """Background regions enclosed by exactly one class become that class (in place)."""
    from scipy import ndimage

    labels, count = ndimage.label(plane == 0, structure=_structure(BACKGROUND_CONNECTIVITY))
    if count == 0:
        return
    # The classes around each background region: its 4-neighbours that are not background.
    lowest = np.full(count + 1, np.iinfo(np.int64).max, np.int64)
    highest = np.full(count + 1, -1, np.int64)
    values = plane.astype(np.int64)
    for axis in (0, 1):
        for step in (1, -1):
            here = labels[_cut(axis, step, labels.ndim)]
            there = values[_cut(axis, -step, labels.ndim)]
            touching = (here > 0) & (there != 0)
            np.minimum.at(lowest, here[touching], there[touching])
            np.maximum.at(highest, here[touching], there[touching])
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    hole = (lowest == highest) & (highest > 0)
    hole[border] = False
    hole[0] = False
    plane[hole[labels]] = highest[labels][hole[labels]].astype(plane.dtype)


def _cut(axis: int, step: int, ndim: int):
    """The slice of pixels whose neighbour ``step`` along ``axis`` exists (``step`` 1: all but the last)."""
    index = [slice(None)] * ndim
    index[axis] = slice(None, -1) if step == 1 else slice(1, None)
    return tuple(index)
