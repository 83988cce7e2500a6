"""Sources: where samples come from, before any resizing or augmentation.

Every SOURCE kind (``synthetic``, ``folder``, ``tfds``, ...; the grammar is
:mod:`tfseg.data.spec`) is one module in :mod:`tfseg.data.kinds` holding one
:class:`Source` subclass that declares its kind, its settings and registers itself
with :func:`register_source`. The pipeline (:mod:`tfseg.data.pipeline`), ``inspect`` and
``prepare`` only talk to this interface, so a new kind of data is one new file in
``tfseg/data/kinds/`` (worked example: docs/ARCHITECTURE.md).

Settings. Every kind takes the mask settings of :data:`MASK_SETTINGS` (``num_classes``,
``ignore_class``, ``skip_bad``, ``mask_threshold``) and the settings its class lists in
``SETTINGS``. :func:`open_source` checks the names, reads the ones written in the SOURCE
string after ``?`` (``folder:P?mask_threshold=127``) with the setting's parser, refuses a
keyword that contradicts the string, and hands the rest to the class.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

from tfseg.data.bands import PHOTO, Form
from tfseg.config import DEFAULT_FRACTIONS
from tfseg.data.spec import SourceSpec, parse_source
from tfseg.errors import ConfigError, TfsegError


def parse_int(text: str) -> int:
    return int(text)


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError(text)
    return lowered in ("1", "true", "yes")


def parse_path(text) -> str:
    from tfseg import fileio

    return fileio.fspath(text)  # "~/data" in a quoted --data is not expanded by the shell; URLs kept


@dataclass(frozen=True)
class Setting:
    """One setting a source kind accepts.

    Attributes:
        name: the keyword of :func:`open_source` / ``load_dataset`` and the ``KEY`` of ``?KEY=VALUE``.
        help: what it does, in a line (``tfseg inspect --help`` and the docs list them).
        parse: the ``VALUE`` text of the SOURCE string -> the value (raise ``ValueError`` when it is not one).
        in_string: whether it may ride in the SOURCE string; the settings that are verb options of
            their own (``--num-classes``, ``--ignore-class``, ``--skip-bad``) do not, so that each
            has one place.
        normalise: a keyword value -> the form :attr:`parse` returns (to compare the two).
    """

    name: str
    help: str
    parse: Callable[[str], Any] = str
    in_string: bool = True
    normalise: Optional[Callable[[Any], Any]] = None

    def comparable(self, value):
        if isinstance(value, str):
            return self.parse(value)
        return self.normalise(value) if self.normalise is not None else value


# The settings every kind takes: what the masks mean (see tfseg.masks) and what to do with bad samples.
MASK_SETTINGS: Tuple[Setting, ...] = (
    Setting("num_classes", "masks hold class ids 0..N-1 (1: binary masks)", parse_int, in_string=False),
    Setting("ignore_class", "a mask value allowed beside the class ids, left out of every score", parse_int,
            in_string=False),
    Setting("skip_bad", "drop samples with problems (listed) instead of stopping", parse_bool, in_string=False),
    Setting("mask_threshold", "binary masks: foreground is a mask value > T (e.g. 127 for JPEG masks)",
            parse_int),
)


class Source(abc.ABC):
    """A set of (image, mask) samples with stable ids.

    Subclasses list their samples cheaply in ``__init__`` (no decoding, or a check of every
    file: then ``checked = True``) and decode lazily in :meth:`examples`.

    Class attributes (declared by each kind):
        KIND: the SOURCE kind, e.g. ``"folder"``.
        FORM: what follows ``KIND:``: ``"path"``, ``"name"`` (``tfds:NAME[/CONFIG]``) or
            ``"count"`` (``synthetic[:N]``, :attr:`DEFAULT_COUNT` when N is left out).
        SETTINGS: the kind's own :class:`Setting` s, besides :data:`MASK_SETTINGS`.
        RAW_MASKS: True when masks arrive as raw values read by the foreground rule of
            :mod:`tfseg.masks` (so ``mask_threshold`` applies); False for masks that are
            already 0/1 or class ids (``synthetic``, ``tfrecord``).

    Attributes (every source has them):
        spec: the parsed SOURCE.
        num_classes: 1 for binary masks (values {0,1}), else the number of classes
            (mask values are class ids ``0..num_classes-1``).
        ignore_class: a mask value allowed beside the class ids (left out of the loss and
            the metrics), or None.
        mask_threshold: binary masks: foreground is ``value > mask_threshold``; None: the
            default rule of :mod:`tfseg.masks`.
        checked: True when opening the source proved that every listed sample decodes
            (bad ones are refused or, with ``skip_bad``, left out of :meth:`ids`).
        skip_bad: drop bad samples instead of stopping.
        skipped: ``[(path, why), ...]`` of samples left out by ``skip_bad``.
        warnings: ``[(path, what), ...]`` that do not stop a run.
        split_rule: how the splits are made, in words, when not the seeded hash (else None).
        image_form: what :meth:`examples` yields as ``image`` (:class:`tfseg.data.bands.Form`): ``PHOTO``,
            RGB uint8 ``[H, W, 3]``, or data: ``[H, W, channels]`` of uint8 (8-bit) or float32 raw values.
    """

    KIND: ClassVar[str] = ""
    FORM: ClassVar[str] = "path"
    DEFAULT_COUNT: ClassVar[Optional[int]] = None
    SETTINGS: ClassVar[Tuple[Setting, ...]] = ()
    RAW_MASKS: ClassVar[bool] = True

    spec: SourceSpec
    num_classes: int = 1
    ignore_class: Optional[int] = None
    mask_threshold: Optional[int] = None
    checked: bool = False
    skip_bad: bool = False
    skipped: Sequence[Tuple[str, str]] = ()
    warnings: Sequence[Tuple[str, str]] = ()
    split_rule: Optional[str] = None
    image_form: Form = PHOTO

    @classmethod
    def settings(cls) -> Dict[str, Setting]:
        """``{name: Setting}`` of every setting this kind accepts."""
        return {s.name: s for s in MASK_SETTINGS + tuple(cls.SETTINGS)}

    @classmethod
    def form(cls) -> str:
        """The SOURCE form for messages: ``folder:PATH``, ``synthetic[:N]``, ``tfds:NAME[/CONFIG]``."""
        return {"path": f"{cls.KIND}:PATH", "name": f"{cls.KIND}:NAME[/CONFIG]",
                "count": f"{cls.KIND}[:N]"}[cls.FORM]

    def set_mask_settings(self, num_classes=None, ignore_class=None, mask_threshold=None,
                          own_classes: Optional[int] = None) -> None:
        """Resolve and check the mask settings with the rules of :mod:`tfseg.masks` (one message each).

        Args:
            num_classes, ignore_class, mask_threshold: the user's (None: not given).
            own_classes: the classes the data itself declares (a colour map, a manifest, trimaps;
                1 for masks generated binary), None when it does not say.
        """
        from tfseg import masks

        self.num_classes = masks.resolve_num_classes(num_classes, own_classes, f"data source {self.spec.text!r}")
        self.ignore_class = (None if ignore_class is None
                             else masks.check_ignore_class(ignore_class, self.num_classes))
        if mask_threshold is not None and not self.RAW_MASKS:
            raise ConfigError(f"mask_threshold {mask_threshold!r}: data source {self.spec.text!r} holds masks that "
                              "are already 0/1 or class ids")
        self.mask_threshold = (None if mask_threshold is None
                               else masks.check_mask_threshold(mask_threshold, self.num_classes))

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

    def sample_size(self, sample_id: str) -> Optional[Tuple[int, int]]:
        """``(height, width)`` of a sample's image when known without decoding it, else None."""
        return None

    def problems(self) -> List[Tuple[str, str]]:
        """``[(path, what is wrong), ...]`` found while listing (empty when clean)."""
        return []

    def image_sizes(self, ids: Sequence[str]) -> Optional[List[Tuple[int, int]]]:
        """``(height, width)`` of each image of ``ids`` when known without decoding them, else ``None``
        (from :meth:`sample_size`)."""
        sizes = [self.sample_size(i) for i in ids]
        return sizes if all(size and size[0] > 0 and size[1] > 0 for size in sizes) else None

    def folders(self) -> List[str]:
        """The folders this source reads its files from (none for generated or TFDS data).

        tfseg writes no output inside them (:func:`tfseg.outputs.refuse_inside_source`).
        """
        return []

    def split_ids(self, split: str, seed: int = 0, fractions=DEFAULT_FRACTIONS) -> List[str]:
        """Ids in ``split`` (``train``/``val``/``test``/``all``); see :mod:`tfseg.data.splits`."""
        from tfseg.data.splits import split_ids

        return split_ids(self.ids(), split, seed=seed, fractions=fractions, group_of=self.group)


_KINDS: Dict[str, Type[Source]] = {}
KINDS_PACKAGE = "tfseg.data.kinds"


def register_source(cls: Type[Source]) -> Type[Source]:
    """Class decorator: ``@register_source class CocoSource(Source): KIND = "coco"; ...``."""
    if not cls.KIND or cls.FORM not in ("path", "name", "count"):
        raise TypeError(f"{cls.__name__}: a Source kind declares KIND and FORM ('path', 'name' or 'count')")
    _KINDS[cls.KIND] = cls
    return cls


def source_kinds() -> Dict[str, Type[Source]]:
    """``{kind: Source class}`` of every registered kind (the modules of :mod:`tfseg.data.kinds` first).

    Importing them is cheap: a kind module imports TensorFlow only when a source is read.
    """
    package = importlib.import_module(KINDS_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{KINDS_PACKAGE}.{module.name}")
    return dict(_KINDS)


def source_class(kind: str, text: str = "") -> Type[Source]:
    """The :class:`Source` class of ``kind``; a :class:`TfsegError` listing the forms when there is none."""
    kinds = _KINDS if kind in _KINDS else source_kinds()
    if kind not in kinds:
        forms = ", ".join(cls.form() for cls in kinds.values())
        raise TfsegError(f"data source {text or kind!r}: unknown kind {kind!r}; expected one of {forms}, "
                         "each optionally followed by ?KEY=VALUE&...")
    return kinds[kind]


def open_source(source, **options) -> Source:
    """Open a SOURCE string (or :class:`SourceSpec`) into a :class:`Source`.

    Args:
        source: a SOURCE string or spec; an opened :class:`Source` passes through when
            ``options`` agree with it (see :func:`check_opened`).
        **options: settings of the kind (:meth:`Source.settings`); ``None`` means "not given".

    Raises:
        ConfigError: an unknown setting (the message lists the accepted ones), a value the
            string and a keyword both give differently, or a value the setting refuses.
    """
    if isinstance(source, Source):
        return check_opened(source, **options)
    spec = parse_source(source)
    cls = source_class(spec.kind, spec.text)
    return cls(spec, **source_options(cls, spec, options))


def source_options(cls: Type[Source], spec: SourceSpec, options: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments of ``cls(spec, ...)``: ``options`` merged with the string's, checked by name."""
    accepted = cls.settings()
    options = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"data source {spec.text!r}: unknown option(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(accepted)}")
    for key, text in spec.options:
        setting = accepted.get(key)
        if setting is None or not setting.in_string:
            in_string = [name for name, s in accepted.items() if s.in_string]
            raise ConfigError(f"data source {spec.text!r}: unknown option {key!r}; accepted after '?': "
                              f"{', '.join(in_string)}")
        try:
            value = setting.parse(text)
        except ValueError:
            raise ConfigError(f"data source {spec.text!r}: {key}={text!r} is not a valid value") from None
        if key in options and setting.comparable(options[key]) != value:
            raise ConfigError(f"data source {spec.text!r}: {key}={text!r} in the string, but {key}={options[key]!r} "
                              "given too")
        options[key] = value
    return options


def check_opened(source: Source, num_classes=None, skip_bad=None, ignore_class=None, mask_threshold=None,
                 **options) -> Source:
    """An opened ``source``, when the settings given (``None`` = not given) are the ones it was opened with.

    ``num_classes`` is resolved against the source by the pipeline
    (:func:`tfseg.masks.resolve_num_classes`) and ``skip_bad`` is the pipeline's too; the mask
    settings cannot change once a source is open (file sources checked every mask with them):
    open the SOURCE string with them instead.
    """
    if options:
        raise ConfigError(f"source options {', '.join(sorted(options))}: only apply when the source is a SOURCE "
                          "string")
    for key, value in (("ignore_class", ignore_class), ("mask_threshold", mask_threshold)):
        if value is not None and getattr(source, key) != value:
            raise ConfigError(f"{key} {value!r}: {source.spec.text!r} was opened with {key}="
                              f"{getattr(source, key)!r}; open the SOURCE string with {key}={value!r}")
    return source
