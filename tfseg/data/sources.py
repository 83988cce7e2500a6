"""Sources: where samples come from, before any resizing or augmentation.

Every SOURCE kind (see :mod:`tfseg.data.spec`) is opened into a :class:`Source`.
The pipeline (:mod:`tfseg.data.pipeline`) only talks to this interface, so a new
kind of data is one new subclass plus one line in :func:`open_source`.
"""

from __future__ import annotations

import abc
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from tfseg.data.spec import SourceSpec, parse_source
from tfseg.config import DEFAULT_FRACTIONS
from tfseg.errors import TfsegError


class Source(abc.ABC):
    """A set of (image, mask) samples with stable ids.

    Subclasses list their samples cheaply in ``__init__`` (no decoding) and
    decode lazily in :meth:`examples`.

    Attributes:
        spec: the parsed SOURCE.
        num_classes: 1 for binary masks (values {0,1}), else the number of classes
            (mask values are class ids ``0..num_classes-1``).
        checked: True when opening the source proved that every listed sample
            decodes (bad ones are refused or, with ``skip_bad``, left out of :meth:`ids`).
    """

    spec: SourceSpec
    num_classes: int = 1
    # True when opening proves every listed sample decodes (file sources, TFRecord shards).
    checked: bool = False

    @abc.abstractmethod
    def ids(self) -> List[str]:
        """Every sample id, sorted. Ids are stable across machines and file orders."""

    def group(self, sample_id: str) -> str:
        """The group a sample belongs to; splits never separate a group.

        Default: every sample is its own group.
        """
        return sample_id

    @abc.abstractmethod
    def examples(self, ids: Sequence[str]):
        """A ``tf.data.Dataset`` of dicts for ``ids`` (in that order):

        ``{"id": tf.string [], "image": tf.uint8 [H, W, 3], "mask": tf.uint8 [H, W, 1]}``

        at the sample's original size, mask already at the image's size, mask
        values ``{0, 1}`` (binary) or class ids (multi-class). Decoding runs in
        ``Dataset.map(..., num_parallel_calls=AUTOTUNE)``.
        """

    def problems(self) -> List[Tuple[str, str]]:
        """``[(path, what is wrong), ...]`` found while listing (empty when clean)."""
        return []

    def image_sizes(self, ids: Sequence[str]) -> Optional[List[Tuple[int, int]]]:
        """``(height, width)`` of each image of ``ids`` when known without decoding them, else ``None``."""
        return None

    def folders(self) -> List[str]:
        """The folders this source reads its files from (none for generated or TFDS data).

        tfseg writes no output inside them (:func:`tfseg.outputs.refuse_inside_source`).
        """
        return []

    def split_ids(self, split: str, seed: int = 0, fractions=DEFAULT_FRACTIONS) -> List[str]:
        """Ids in ``split`` (``train``/``val``/``test``/``all``); see :mod:`tfseg.data.splits`."""
        from tfseg.data.splits import split_ids

        return split_ids(self.ids(), split, seed=seed, fractions=fractions, group_of=self.group)


_OPENERS: Dict[str, Callable[..., Source]] = {}


def register_source(kind: str):
    """Decorator: ``@register_source("folder") def open_folder(spec, **options) -> Source``."""

    def decorator(opener):
        _OPENERS[kind] = opener
        return opener

    return decorator


def open_source(source, **options) -> Source:
    """Open a SOURCE string (or :class:`SourceSpec`) into a :class:`Source`."""
    spec = parse_source(source)
    _load_builtin_openers()
    opener = _OPENERS.get(spec.kind)
    if opener is None:
        raise TfsegError(f"data source {spec.text!r}: the '{spec.kind}' kind is not available in this version")
    return opener(spec, **options)


def _load_builtin_openers():
    # Each module registers its opener on import; imported here, on first use, so that
    # `import tfseg.data.sources` stays cheap (TFDS is imported only when a source is opened).
    from tfseg.data import files, synthetic, tfds_source, tfrecord  # noqa: F401
