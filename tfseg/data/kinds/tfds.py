"""``tfds:NAME[/CONFIG]``: a TensorFlow Datasets dataset with an image and a segmentation mask.

Features. The image is the ``tfds.features.Image`` named ``image`` (else the
first 3-channel image feature); the mask is the first image/tensor feature named
one of :data:`MASK_FEATURE_NAMES`. Override with the ``image_key`` /
``mask_key`` source options.

Mask values:

* ``oxford_iiit_pet`` stores trimaps: 1 pet, 2 background, 3 border. Source
  option ``pet_classes``: ``"binary"`` (default; ``num_classes=1``): pet and
  border -> 1, background -> 0; ``"trimap"`` (``num_classes=3``): background
  -> 0, pet -> 1, border -> 2. ``num_classes=3`` alone selects ``"trimap"``.
* any other dataset: binary unless ``num_classes=N`` (N >= 2), then the stored
  values are the class ids. Binary foreground is the rule of :mod:`tfseg.masks`
  with this kind's default threshold :data:`DEFAULT_MASK_THRESHOLD` = 0 (a stored
  value above 0 is foreground: datasets store 0/1 masks or class ids, not 0/255
  levels); ``?mask_threshold=T`` sets another.

Ids and splits. A sample's id is ``<tfds split>/<index>`` (index zero-padded,
in TFDS's deterministic reading order with ``shuffle_files=False``), so listing
costs nothing. ``splits="official"`` (default), so that results compare with
published ones: tfseg ``train`` = TFDS ``train``, ``test`` = TFDS ``test``,
``val`` = TFDS ``validation`` (or ``val``/``valid``/``dev``). A split the
dataset lacks is carved from TFDS ``train`` by tfseg's seeded hash of the id:
a missing val takes ``val / (train + val)`` of TFDS train (``fractions``), a
missing test likewise, both missing (``tfds:ph2``, ``tfds:mads``: one ``train``
split) split TFDS train by ``fractions`` like any other source.
``splits="resplit"``: every example of the dataset's splits (``train`` +
``test`` for the pets; override with ``tfds_splits=train,test``) is pooled and
split by the hash with ``fractions``, like every other source.

Groups. By default each example is its own group. With a text feature naming
the group (``group_key``; default: a feature named ``sequence`` or ``group``
when the dataset has one, e.g. ``tfds:mads``), that column is read once when
the source opens and a group is never split across train/val/test.

Preparation. ``data_dir`` passes through to TFDS. A dataset not yet prepared
is downloaded and prepared (``download=False`` raises instead);
``manual_dir`` is passed to the download config (datasets whose files you
download yourself, e.g. ``tfds:ph2``); once prepared it is not read again: the
build records its folder, and a later ``manual_dir`` naming another folder gets
a warning that the earlier build is read (delete the build to rebuild). The
build's deprecation warnings, absl INFO/WARNING lines and, off a terminal or with
``--quiet``, its progress bars are kept out of tfseg's output.

Options in the SOURCE string. Every verb that takes ``--data`` (and a run's
``config.json``) carries the settings of :attr:`TfdsSource.SETTINGS` after a
``?``: ``tfds:ph2?manual_dir=/data/PH2``,
``tfds:oxford_iiit_pet?splits=resplit&pet_classes=trimap``,
``tfds:NAME?tfds_splits=train,test`` (see :mod:`tfseg.data.spec`). Keyword
options of :func:`open_source` / ``load_dataset`` may repeat one with the same
value; a different value is an error.

The builders shipped with tfseg (``tfseg/tfds_builders/ph2``,
``tfseg/tfds_builders/mads``) need no registration: when NAME is not a
registered TFDS dataset and ``tfseg.tfds_builders.NAME.NAME_dataset_builder``
exists (in a checkout and in an installed wheel alike), its ``Builder`` class is
loaded the way ``tfds build`` loads a dataset folder.

Example:
    >>> from tfseg.data import open_source                                   # doctest: +SKIP
    >>> pets = open_source("tfds:oxford_iiit_pet?pet_classes=trimap")        # doctest: +SKIP
    >>> pets.num_classes, pets.ids()[:2]                                     # doctest: +SKIP
    (3, ['test/000000', 'test/000001'])
    >>> ph2 = open_source("tfds:ph2?manual_dir=/data/PH2")                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfseg import masks
from tfseg.config import DEFAULT_FRACTIONS
from tfseg.data.sources import Setting, Source, parse_bool, parse_path, register_source
from tfseg.data.spec import SourceSpec
from tfseg.errors import ConfigError, DataError, TfsegError

logger = logging.getLogger(__name__)

MASK_FEATURE_NAMES = ("segmentation_mask", "mask", "segmentation", "label_mask", "semantic_segmentation",
                      "annotation", "label")
PET_CLASSES = ("binary", "trimap")
SPLIT_MODES = ("official", "resplit")
DEFAULT_MASK_THRESHOLD = 0  # binary TFDS masks: a stored value above 0 is foreground
VAL_SPLIT_NAMES = ("validation", "val", "valid", "dev")
BUILDERS_PACKAGE = "tfseg.tfds_builders"

# Oxford-IIIT pet trimap value -> class id (index = stored value 0..3; 0 does not occur).
_PET_LOOKUP = {"binary": (0, 1, 0, 1), "trimap": (0, 1, 0, 2)}


# Written beside a build tfseg prepared from a manual_dir: which folder it was (one line).
MANUAL_DIR_RECORD = "tfseg_manual_dir.txt"


def _folder(path) -> str:
    from tfseg import fileio

    return fileio.abspath(str(path)).rstrip("/\\")


@contextlib.contextmanager
def _quiet_build():
    """A TFDS build without its deprecation warnings, absl INFO/WARNING lines, and progress bars (their cursor
    escape codes) unless tfseg's own progress bars are on (a terminal, no ``--quiet``)."""
    import warnings

    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    from tfseg import progress

    level, bars = absl_logging.get_verbosity(), progress.enabled()
    absl_logging.set_verbosity(absl_logging.ERROR)
    tfds.display_progress_bar(bars)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        absl_logging.set_verbosity(level)
        tfds.display_progress_bar(True)  # TFDS's default


def _base_name(name: str) -> str:
    return name.split("/")[0].split(":")[0]


def _shipped_builder_cls(base: str):
    """The ``Builder`` of ``tfseg/tfds_builders/<base>/``, or None when tfseg ships no such builder."""
    import importlib.util

    import tensorflow_datasets as tfds

    if not base.isidentifier() or importlib.util.find_spec(f"{BUILDERS_PACKAGE}.{base}") is None:
        return None
    # Loaded like `tfds build <folder>` loads one (not registered), so it never clashes with a
    # registered dataset of the same name.
    return tfds.core.community.builder_cls_from_module(f"{BUILDERS_PACKAGE}.{base}.{base}_dataset_builder")


def _make_builder(spec: SourceSpec, data_dir: Optional[str]):
    import tensorflow_datasets as tfds

    name = spec.name
    base = _base_name(name)
    try:
        tfds.builder_cls(base)
        registered = True
    except Exception:  # noqa: BLE001 - DatasetNotFoundError and friends: try the builders tfseg ships
        registered = False
    try:
        if not registered:
            cls = _shipped_builder_cls(base)
            if cls is not None:
                config = name.split("/", 1)[1].split(":")[0] if "/" in name else None
                return cls(config=config, data_dir=data_dir) if config else cls(data_dir=data_dir)
        return tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # noqa: BLE001 - any TFDS failure here is a bad NAME for the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TfsegError(f"data source {spec.text!r}: cannot open TFDS dataset {name!r} ({first})") from None


def _feature_channels(feature) -> Optional[int]:
    shape = getattr(feature, "shape", None)
    return shape[-1] if shape else None


def _find_features(features, image_key, mask_key, text):
    import tensorflow_datasets as tfds

    names = list(features.keys())
    images = [k for k in names if isinstance(features[k], tfds.features.Image)]
    if mask_key is None:
        mask_key = next((k for k in MASK_FEATURE_NAMES if k in names and (
            k in images or len(getattr(features[k], "shape", ()) or ()) >= 2)), None)
        if mask_key is None:
            mask_key = next((k for k in images if "mask" in k or "segment" in k), None)
    if image_key is None:
        if "image" in images and "image" != mask_key:
            image_key = "image"
        else:
            image_key = next((k for k in images if k != mask_key and _feature_channels(features[k]) in (3, None)),
                             None)
    missing = [what for what, key in (("image", image_key), ("segmentation mask", mask_key)) if key is None]
    if missing:
        raise TfsegError(f"data source {text!r}: no {' and no '.join(missing)} feature among "
                         f"{', '.join(names)} (pass image_key=/mask_key=)")
    for key in (image_key, mask_key):
        if key not in names:
            raise ConfigError(f"data source {text!r}: no feature {key!r}; features: {', '.join(names)}")
    return image_key, mask_key


def _splits_list(text: str):
    return tuple(s.strip() for s in text.split(",") if s.strip())


@register_source
class TfdsSource(Source):
    """A TFDS dataset as a :class:`~tfseg.data.sources.Source` (see the module docstring).

    Args:
        spec: the parsed ``tfds:NAME[/CONFIG]``.
        data_dir: TFDS data folder (default: TFDS's, ``~/tensorflow_datasets``).
        num_classes: 1 (binary) or N >= 2 class ids; for the pets see ``pet_classes``.
        pet_classes: ``"binary"`` or ``"trimap"`` (``oxford_iiit_pet`` only).
        splits: ``"official"`` (TFDS's train/validation/test, missing ones carved from train) or
            ``"resplit"`` (hash split over the pooled examples).
        tfds_splits: TFDS splits read (default: all of the dataset's).
        image_key, mask_key: feature names, when the defaults do not find them.
        group_key: text feature holding each example's group (default: ``sequence`` or ``group``
            if present); ``""`` for none.
        download: prepare a dataset that is not prepared yet (default True).
        manual_dir: folder with manually downloaded files, for builders that need them.
        skip_bad: accepted for symmetry with file sources; TFDS data was checked when prepared.
        ignore_class, mask_threshold: see :class:`~tfseg.data.sources.Source`.
    """

    KIND = "tfds"
    FORM = "name"
    SETTINGS = (
        Setting("manual_dir", "folder with files you downloaded yourself (e.g. tfds:ph2)", parse_path, normalise=parse_path),
        Setting("data_dir", "TFDS data folder (default ~/tensorflow_datasets)", parse_path, normalise=parse_path),
        Setting("splits", "official (TFDS's train/validation/test) or resplit (tfseg's seeded hash)"),
        Setting("tfds_splits", "TFDS splits read, comma-separated (default: all)", _splits_list, normalise=tuple),
        Setting("pet_classes", "oxford_iiit_pet: binary (pet+border vs background) or trimap (3 classes)"),
        Setting("image_key", "the image feature's name"),
        Setting("mask_key", "the segmentation mask feature's name"),
        Setting("group_key", "a text feature naming each example's group (\"\" for none)"),
        Setting("download", "prepare a dataset that is not prepared yet", parse_bool, in_string=False),
    )

    def __init__(self, spec: SourceSpec, data_dir=None, num_classes=None, pet_classes=None, splits="official",
                 tfds_splits=None, image_key=None, mask_key=None, group_key=None, download=True,
                 manual_dir=None, skip_bad=False, ignore_class=None, mask_threshold=None):
        import tensorflow_datasets as tfds

        self.spec = spec
        self.skipped = []
        self.skip_bad = bool(skip_bad)
        if splits not in SPLIT_MODES:
            raise ConfigError(f"splits={splits!r} for {spec.text!r}: choose one of {', '.join(SPLIT_MODES)}")
        self.split_mode = splits
        self.pet_classes = self._pet_classes(pet_classes, num_classes)
        own = None if self.pet_classes is None else (1 if self.pet_classes == "binary" else 3)
        self.set_mask_settings(num_classes, ignore_class, mask_threshold, own_classes=own)
        with _quiet_build():  # TFDS warns, e.g., that a folder not yet prepared has no dataset_info.json
            self.builder = _make_builder(spec, data_dir)
            self._prepare(download, manual_dir)
        features = self.builder.info.features
        self.image_key, self.mask_key = _find_features(features, image_key, mask_key, spec.text)
        self._image_feature, self._mask_feature = features[self.image_key], features[self.mask_key]
        available = list(self.builder.info.splits.keys())
        if tfds_splits is None:
            # A mocked or metadata-less builder lists no splits: fall back to "train".
            tfds_splits = available or ["train"]
        unknown = [s for s in tfds_splits if available and s not in available]
        if unknown:
            raise ConfigError(f"tfds_splits {unknown} for {spec.text!r}: the dataset has {', '.join(available)}")
        self.tfds_splits = sorted(tfds_splits)
        self.counts: Dict[str, int] = {s: self._count(s) for s in self.tfds_splits}
        width = max(6, len(str(max(self.counts.values(), default=0))))
        self._width = width
        self._ids = sorted(f"{s}/{i:0{width}d}" for s, n in self.counts.items() for i in range(n))
        if not self._ids:
            raise DataError(f"data source {spec.text!r}: no examples in splits {', '.join(self.tfds_splits)}")
        self._tfds = tfds
        self.group_key = self._group_key(features, group_key)
        self._groups = self._read_groups() if self.group_key else {}

    # -- options
    def _pet_classes(self, pet_classes, num_classes):
        is_pets = _base_name(self.spec.name) == "oxford_iiit_pet"
        if pet_classes is not None and not is_pets:
            raise ConfigError(f"pet_classes={pet_classes!r}: only for tfds:oxford_iiit_pet, not {self.spec.text!r}")
        if not is_pets:
            return None
        if pet_classes is None:
            pet_classes = "trimap" if num_classes == 3 else "binary"
        if pet_classes not in PET_CLASSES:
            raise ConfigError(f"pet_classes={pet_classes!r}: choose one of {', '.join(PET_CLASSES)}")
        return pet_classes

    def _prepare(self, download: bool, manual_dir):
        import tensorflow_datasets as tfds

        if self.builder.is_prepared():
            self._note_cached_build(manual_dir)
            return
        if not download:
            raise TfsegError(f"data source {self.spec.text!r}: not prepared in {self.builder.data_dir} "
                             "(run `tfds build`, or allow download=True)")
        config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
        try:
            # TFDS prints its preparation lines on stdout; they belong with the progress on stderr
            # (stdout carries results, e.g. `tfseg inspect --json`).
            with contextlib.redirect_stdout(sys.stderr):
                self.builder.download_and_prepare(download_config=config)
        except Exception as err:  # noqa: BLE001 - network, manual files, disk: one line for the user
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            hint = (f" (it needs files you download yourself: add ?manual_dir=DIR, e.g. "
                    f"'tfds:{self.spec.name}?manual_dir=DIR'; {first[:200]})" if "manual" in first.lower()
                    else f" ({first[:300]})")
            raise TfsegError(f"data source {self.spec.text!r}: could not download and prepare it{hint}") from None
        if manual_dir:
            from tfseg import fileio

            fileio.write_text_atomic(fileio.join(self.builder.data_dir, MANUAL_DIR_RECORD), _folder(manual_dir))

    def _note_cached_build(self, manual_dir) -> None:
        """Say so when ``manual_dir`` is not the folder the prepared build was made from: TFDS reads its
        build and never the new files (a build tfseg did not make records no folder)."""
        from tfseg import fileio

        if not manual_dir:
            return
        record = fileio.join(self.builder.data_dir, MANUAL_DIR_RECORD)
        built_from = fileio.read_text(record).strip() if fileio.exists(record) else ""
        if built_from == _folder(manual_dir):
            return
        origin = f"from {built_from}" if built_from else "earlier (not by tfseg: its files are not recorded)"
        logger.warning("%s: reading the build prepared %s in %s, not the files in manual_dir=%s; delete that "
                       "folder to rebuild from them", self.spec.text, origin, self.builder.data_dir, manual_dir)

    def _count(self, split: str) -> int:
        info = self.builder.info.splits.get(split) if self.builder.info.splits else None
        if info is not None:
            return int(info.num_examples)
        cardinality = int(self.builder.as_dataset(split=split, shuffle_files=False).cardinality())
        if cardinality < 0:
            raise DataError(f"data source {self.spec.text!r}: cannot count the examples of split {split!r}")
        return cardinality

    def _group_key(self, features, group_key):
        import tensorflow_datasets as tfds

        if group_key == "":
            return None
        names = list(features.keys())
        if group_key is None:
            return next((k for k in ("sequence", "group") if k in names
                         and isinstance(features[k], tfds.features.Text)), None)
        if group_key not in names:
            raise ConfigError(f"group_key={group_key!r} for {self.spec.text!r}: features are {', '.join(names)}")
        return group_key

    def _read_groups(self) -> Dict[str, str]:
        """``{id: group}``, reading only the group column of every pooled split."""
        tfds = self._tfds
        groups = {}
        for split in self.tfds_splits:
            decoders = tfds.decode.PartialDecoding({self.group_key: True})
            column = self.builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
            for index, example in enumerate(column.as_numpy_iterator()):
                value = example[self.group_key]
                groups[f"{split}/{index:0{self._width}d}"] = value.decode() if isinstance(value, bytes) else str(value)
        return groups

    # -- Source interface
    def ids(self) -> List[str]:
        return list(self._ids)

    def group(self, sample_id: str) -> str:
        return self._groups.get(sample_id, sample_id)

    def split_ids(self, split: str, seed: int = 0, fractions=DEFAULT_FRACTIONS) -> List[str]:
        """See the module docstring: ``splits="official"`` follows TFDS, ``"resplit"`` hashes ids."""
        if self.split_mode == "resplit" or split == "all":
            return super().split_ids(split, seed=seed, fractions=fractions)
        from tfseg.data.splits import SPLITS, FoldSplit, assign_splits, validate_fractions

        if isinstance(fractions, FoldSplit):
            raise ConfigError(f"data source {self.spec.text!r}: --folds needs splits=resplit (the official TFDS "
                              "splits cannot be cut into folds)")

        if split not in SPLITS:
            raise ConfigError(f"split {split!r}: choose one of train, val, test, all")
        fractions = dict(zip(SPLITS, validate_fractions(fractions)))
        available = list(self.builder.info.splits.keys()) or self.tfds_splits
        official = {"train": "train", "val": next((s for s in VAL_SPLIT_NAMES if s in available), None),
                    "test": "test" if "test" in available else None}
        if split != "train" and official[split] is not None:
            return self._official_ids(official[split])
        train = self._official_ids("train")
        missing = [s for s in ("val", "test") if official[s] is None]
        if not missing:
            return train
        if len(missing) == 2:
            assigned = assign_splits(train, seed=seed, fractions=tuple(fractions.values()), group_of=self.group)
            return sorted(i for i, s in assigned.items() if s == split)
        # One split to carve out of TFDS train, with its share of train + it: hash-split train into
        # (half the rest, the carved share, half the rest) and give both halves back to train.
        carved = missing[0]
        share = fractions[carved] / (fractions["train"] + fractions[carved])
        assigned = assign_splits(train, seed=seed, fractions=((1 - share) / 2, share, (1 - share) / 2),
                                 group_of=self.group)
        if split == carved:
            return sorted(i for i, s in assigned.items() if s == "val")
        return sorted(i for i, s in assigned.items() if s != "val")

    @property
    def split_rule(self) -> Optional[str]:
        """How the splits are made, in words (``tfseg inspect`` prints it); None for ``resplit``."""
        if self.split_mode == "resplit":
            return None
        available = list(self.builder.info.splits.keys()) or self.tfds_splits
        val = next((s for s in VAL_SPLIT_NAMES if s in available), None)
        kept = ["train"] + [s for s in (val, "test" if "test" in available else None) if s]
        carved = [s for s, there in (("val", val), ("test", "test" in available)) if not there]
        rule = "official TFDS splits " + ", ".join(kept)
        return rule + (f"; {' and '.join(carved)} carved from TFDS train" if carved else "")

    def _official_ids(self, tfds_split: str) -> List[str]:
        if tfds_split not in self.counts:
            raise ConfigError(f"data source {self.spec.text!r}: split {tfds_split!r} is not among the pooled "
                              f"tfds_splits {self.tfds_splits}")
        return [i for i in self._ids if i.startswith(tfds_split + "/")]

    def examples(self, ids: Sequence[str]):
        """Examples for ``ids``, in id order (= TFDS reading order within each split).

        Each TFDS split is read once, sequentially; unwanted examples are
        dropped before decoding (``SkipDecoding``), and reading stops after
        the last wanted index.
        """
        wanted: Dict[str, List[int]] = {}
        for sample_id in ids:
            split, _, index = sample_id.rpartition("/")
            if split not in self.counts or not index.isdigit() or int(index) >= self.counts[split]:
                raise DataError(f"data source {self.spec.text!r}: unknown sample id {sample_id!r}")
            wanted.setdefault(split, []).append(int(index))
        if list(ids) != sorted(ids):
            logger.warning("%s: examples come in id order, not in the order asked", self.spec.text)
        datasets = [self._split_examples(split, indices) for split, indices in sorted(wanted.items())]
        if not datasets:
            return self._split_examples(self.tfds_splits[0], [])
        dataset = datasets[0]
        for more in datasets[1:]:
            dataset = dataset.concatenate(more)
        return dataset

    def _split_examples(self, split: str, indices: List[int]):
        import tensorflow as tf

        tfds = self._tfds
        keep = np.zeros(self.counts[split], dtype=bool)
        keep[indices] = True
        keep = tf.constant(keep)
        last = max(indices) + 1 if indices else 0
        skip = {k: tfds.decode.SkipDecoding() for k in (self.image_key, self.mask_key)
                if isinstance(self.builder.info.features[k], tfds.features.Image)}
        decoders = tfds.decode.PartialDecoding({self.image_key: True, self.mask_key: True}, decoders=skip or None)
        ds = self.builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
        ds = ds.enumerate().take(last).filter(lambda index, example: tf.gather(keep, index))
        prefix = tf.constant(split + "/")
        width = self._width

        def decode(index, example):
            image = example[self.image_key]
            mask = example[self.mask_key]
            if self.image_key in skip:
                image = self._image_feature.decode_example(image)
            if self.mask_key in skip:
                mask = self._mask_feature.decode_example(mask)
            sample_id = prefix + tf.strings.as_string(index, width=width, fill="0")
            return {"id": sample_id, "image": _rgb(image), "mask": self._mask(mask, tf.shape(image)[:2])}

        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def _mask(self, mask, size):
        import tensorflow as tf

        if mask.shape.rank == 2:
            mask = mask[..., None]
        mask = tf.cast(mask[..., :1], tf.int32)
        mask = tf.cond(tf.reduce_all(tf.shape(mask)[:2] == size), lambda: mask,
                       lambda: tf.image.resize(mask, size, method="nearest"))
        if self.pet_classes is not None:
            lookup = tf.constant(_PET_LOOKUP[self.pet_classes], tf.int32)
            # Values outside the trimap's 1..3 (none in the real data) count as background.
            mask = tf.where((mask >= 0) & (mask <= 3), tf.gather(lookup, tf.clip_by_value(mask, 0, 3)), 0)
        elif self.num_classes == 1:
            threshold = DEFAULT_MASK_THRESHOLD if self.mask_threshold is None else self.mask_threshold
            top = tf.cast(tf.reduce_max(mask), tf.float32)
            mask = tf.cast(masks.foreground(tf.cast(mask, tf.float32), top=top, threshold=threshold, xp=tf), tf.int32)
        return tf.ensure_shape(tf.cast(mask, tf.uint8), [None, None, 1])


def _rgb(image):
    import tensorflow as tf

    image = tf.cast(image, tf.uint8) if image.dtype == tf.uint8 else tf.image.convert_image_dtype(image, tf.uint8)
    channels = tf.shape(image)[-1]
    image = tf.cond(channels == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3])
    return tf.ensure_shape(image, [None, None, 3])
