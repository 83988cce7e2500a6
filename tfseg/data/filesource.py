"""The base of the file sources (``ph2:``, ``mads:``, ``folder:``): list, check every file, decode.

A kind module (:mod:`tfseg.data.kinds.folder`, ``mads``, ``ph2``) only finds its layout
and lists ``(image, mask)`` pairs from file names; this class then checks every file
once, up front (:mod:`tfseg.data.filecheck`), so that a bad file stops a run before
training rather than in epoch 7, and decodes the pairs in the graph.

* every mask's values are counted: a binary source accepts masks holding only
  ``{0, 1}`` or only ``{0, 255}`` (after the channel rule of :mod:`tfseg.data.filepixels`),
  any values with ``mask_threshold``; a multi-class source (``num_classes=N``,
  N >= 2) accepts class ids ``0..N-1`` and ``ignore_class``;
* with ``colormap=FILE`` (:mod:`tfseg.data.colormap`) masks are RGB colours, each
  mapped to its class.

Problems (fatal: :class:`~tfseg.errors.DataError` listing EVERY offending file,
or dropped with ``skip_bad=True`` and listed in ``source.skipped``): an
unreadable or damaged file, an image without a mask or a mask without an
image, two files claiming one sample, unexpected mask values, a mask whose
encoding would read as one value (a colour-coded mask whose max over R, G, B
is constant, 16-bit values that are neither below 256 nor multiples of 257,
fractional or negative values), a mask with another aspect ratio than its
image (a wrong pair or a rotated mask; sizes are compared as displayed, after
each file's EXIF orientation, so a photo turned by its camera fits a mask drawn
on it as shown). Warnings (reported by ``tfseg inspect``, not fatal): a mask of another size but the same aspect ratio (it is resized to
the image with nearest neighbour), ignored files. The list of skipped samples
is logged once per process, however often the source is opened.

Decoding (:meth:`FileSource.examples`) runs in ``Dataset.map(num_parallel_calls=AUTOTUNE)``
with graph ops (:mod:`tfseg.data.decode`: ``tf.io.decode_image`` plus 1/4/8-bit
palette BMPs) for PNG, JPEG, GIF and BMP. Files that TensorFlow cannot decode or
would decode differently (TIFF, WebP, RLE BMP, palette/16-bit masks, GIF masks)
go through Pillow (``tf.numpy_function``); one dataset per pair of decoders, merged
back in the requested order with ``Dataset.choose_from_datasets``, so a folder
without such files never touches Python while decoding. The mask then becomes
0/1 by the foreground rule of :mod:`tfseg.masks` (binary) or stays class ids.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfseg import fileio, masks
from tfseg.data.bands import PHOTO, Form, read_bands
from tfseg.data.colormap import ColourMap, read_colormap
from tfseg.data.filecheck import FileInfo, check_files
from tfseg.data.filepixels import describe_values, mask_array, open_bytes, rgb_array
from tfseg.data.sources import Setting, Source
from tfseg.data.spec import SourceSpec, with_option
from tfseg.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}


def is_image_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def is_ignored(path: str) -> bool:
    """Hidden files and the desktop's own files: never samples, never warned about."""
    name = fileio.basename(path)
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


@dataclass
class Pair:
    """One listed sample: its id, group and files."""

    id: str
    group: str
    image: str
    mask: str
    image_info: FileInfo = field(default_factory=FileInfo)
    mask_info: FileInfo = field(default_factory=FileInfo)


def mask_value_problem(info: FileInfo, num_classes: int, mask_threshold: Optional[int],
                       ignore_class: Optional[int] = None, source_text: str = "folder:PATH") -> str:
    """Why a mask's values do not fit the source (``""`` when they do; ``ignore_class`` is allowed).

    Every option the message names can be passed: ``mask_threshold`` in the SOURCE string,
    ``num_classes`` as a keyword (``--num-classes`` on the command line).
    """
    values = set(info.values)
    if num_classes == 1:
        if mask_threshold is not None or values <= {0, 1} or values <= {0, 255}:
            return ""
        return (f"unexpected mask values {describe_values(values)}: a binary mask holds 0/1 or 0/255 "
                f"(noisy JPEG or anti-aliased masks: '{with_option(source_text, 'mask_threshold', 127)}'; "
                "class-id masks: num_classes=N, --num-classes N)")
    if info.coloured:
        return "colour mask: class-id masks must be single-channel (grayscale or palette PNG), or give a colormap"
    found = np.array(sorted(values), np.int64)
    bad = found[~masks.valid_class_ids(found, num_classes, ignore_class)].tolist()
    if bad:
        return f"mask values {describe_values(bad)} are not class ids 0..{num_classes - 1} (num_classes={num_classes})"
    return ""


# --------------------------------------------------------------------------- decoding (TensorFlow side)

def _pillow_rgb(path: bytes) -> np.ndarray:
    with open_bytes(fileio.read_bytes(path.decode())) as image:
        return rgb_array(image)


def _pillow_mask(path: bytes) -> np.ndarray:
    with open_bytes(fileio.read_bytes(path.decode())) as image:
        return mask_array(image)[..., None]


def image_decoder(kind: str, form: Form = PHOTO):
    """``image path -> RGB uint8 [H, W, 3]`` with the decoder :func:`~tfseg.data.filecheck.graph_decoder`
    chose (``"image"``, ``"palette_bmp"``), or Pillow (``"pillow"``) for what only Pillow reads the same;
    ``"bands"``: a data image in ``form`` (:func:`tfseg.data.bands.read_bands`)."""
    import tensorflow as tf

    from tfseg.data import decode

    if kind == "bands":
        def bands(path):
            return read_bands(fileio.read_bytes(path.decode()), form)

        return lambda path: tf.ensure_shape(tf.numpy_function(bands, [path], tf.as_dtype(form.storage_dtype),
                                                              stateful=False), [None, None, form.channels])
    if kind == "pillow":
        return lambda path: tf.numpy_function(_pillow_rgb, [path], tf.uint8, stateful=False)
    if kind == "palette_bmp":
        return lambda path: decode.palette_bmp_rgb(tf.io.read_file(path))
    return lambda path: decode.image_rgb(tf.io.read_file(path))


def mask_decoder(kind: str):
    """``mask path -> raw values uint8 [H, W, 1]`` (``"image:C"``, ``"palette_bmp"`` or ``"pillow"``)."""
    import tensorflow as tf

    from tfseg.data import decode

    if kind == "pillow":
        return lambda path: tf.numpy_function(_pillow_mask, [path], tf.uint8, stateful=False)
    if kind == "palette_bmp":
        return lambda path: decode.palette_bmp_mask(tf.io.read_file(path))
    channels = int(kind.partition(":")[2])
    return lambda path: decode.image_mask(tf.io.read_file(path), channels)


def _decode_in_graph(image_path, mask_path):
    """Either file with the serving graph's generic decoders (:mod:`tfseg.data.decode`)."""
    import tensorflow as tf

    from tfseg.data.decode import decode_mask, decode_rgb

    return decode_rgb(tf.io.read_file(image_path)), decode_mask(tf.io.read_file(mask_path))


def _finish(sample_id, image, mask, num_classes: int, mask_threshold: Optional[int], same_size: bool,
            channels: int = 3):
    """Mask at the image's size (nearest neighbour) and in the source's value convention.

    ``same_size``: whether the check found mask and image of one size.
    """
    import tensorflow as tf

    image = tf.ensure_shape(image, [None, None, channels])
    mask = tf.ensure_shape(mask, [None, None, 1])
    if not same_size:
        mask = tf.image.resize(mask, tf.shape(image)[:2], method="nearest")
    if num_classes == 1:
        top = tf.cast(tf.reduce_max(mask), tf.float32)
        foreground = masks.foreground(tf.cast(mask, tf.float32), top=top, threshold=mask_threshold, xp=tf)
        mask = tf.cast(foreground, tf.uint8)
    return {"id": sample_id, "image": image, "mask": mask}


def _empty_examples(form: Form = PHOTO):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices({
        "id": tf.zeros([0], tf.string),
        "image": tf.zeros([0, 1, 1, form.channels], form.storage_dtype),
        "mask": tf.zeros([0, 1, 1, 1], tf.uint8),
    }).map(lambda row: {"id": row["id"], "image": tf.ensure_shape(row["image"], [None, None, form.channels]),
                        "mask": tf.ensure_shape(row["mask"], [None, None, 1])})


def _same_shape(image: FileInfo, mask: FileInfo) -> bool:
    """Whether a mask of another size has the image's aspect ratio (to within one pixel of rounding)."""
    return abs(mask.width * image.height - mask.height * image.width) <= max(image.width, image.height,
                                                                            mask.width, mask.height)


def _orientation_note(image: FileInfo, mask: FileInfo) -> str:
    """For a size message: which file was turned by its EXIF orientation (sizes are as displayed)."""
    turned = [f"the {kind}'s EXIF orientation {info.orientation}" for kind, info in (("image", image), ("mask", mask))
              if info.orientation != 1]
    return f" sizes as displayed, after {' and '.join(turned)}" if turned else ""


_REPORTED_SKIPS: set = set()
# Bands of the 8-bit files read as photographs, by Pillow's mode (for ``channels=N``).
_PHOTO_BANDS = {"1": 1, "L": 1, "P": 3, "LA": 2, "PA": 4, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4, "YCbCr": 3}


class FileSource(Source):
    """Base of the file sources: listing (subclasses), checking, decoding.

    Args:
        spec: the parsed SOURCE.
        num_classes: ``None`` or 1 for binary masks; N >= 2 for class-id masks.
        skip_bad: drop samples with problems (listed in :attr:`skipped` and
            logged as a warning) instead of raising :class:`DataError`.
        mask_threshold: binary sources only: foreground is ``value > mask_threshold``
            and any mask values are accepted; default: the rule of :mod:`tfseg.masks`.
        ignore_class: a mask value allowed beside the class ids.
        colormap: a CSV file mapping RGB colours to class ids (:mod:`tfseg.data.colormap`).
        channels: read the first N bands of every image (:mod:`tfseg.data.bands`); default: the data's.

    Attributes:
        root: the folder the layout was found in.
        pairs: ``{id: Pair}`` of the usable samples, with what the check found.
    """

    SETTINGS = (Setting("colormap", "CSV file class_id,r,g,b[,name]: masks are RGB colours, one per class",
                        fileio.fspath, normalise=fileio.fspath),
                Setting("channels", "read the first N bands of every image (3: RGBA files as RGB; 4: keep an "
                                    "opaque alpha band); default: the bands the data holds (tfseg.data.bands)",
                        int))
    checked = True

    def __init__(self, spec: SourceSpec, num_classes: Optional[int] = None, skip_bad: bool = False,
                 mask_threshold: Optional[int] = None, ignore_class: Optional[int] = None,
                 colormap: Optional[str] = None, channels: Optional[int] = None):
        self.spec = spec
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ConfigError(f"data source {spec.text!r}: channels={channels!r} must be a positive integer")
        self.channels = channels
        self.colormap: Optional[ColourMap] = None
        own = None
        if colormap is not None:  # RGB colour-coded masks: the file says which colour is which class
            self.colormap = read_colormap(colormap)
            ignore_class = self.colormap.ignore_value(ignore_class)  # its "ignore" colours' value
            own = self.colormap.num_classes(ignore_class)
        self.set_mask_settings(num_classes, ignore_class, mask_threshold, own_classes=own)
        self.skip_bad = bool(skip_bad)
        path = fileio.fspath(spec.path)
        if not fileio.isdir(path):
            raise DataError(f"data source {spec.text!r}: {path} is not a folder")
        self.root = self._find_root(path)
        pairs, problems, self.warnings = self._list()
        if not pairs and not problems:
            raise DataError(f"data source {spec.text!r}: no images found in {self.root}")
        pairs, more = self._check(pairs)
        self._problems = sorted(problems + more)
        self.pairs: Dict[str, Pair] = {p.id: p for p in pairs}
        self.skipped: List[Tuple[str, str]] = []
        if self._problems:
            self._handle_problems()

    # -- subclass hooks
    def _find_root(self, path: str) -> str:
        """The folder the layout starts in, found from the existing folder ``path``."""
        raise NotImplementedError

    def _list(self) -> Tuple[List[Pair], List[Tuple[str, str]], List[Tuple[str, str]]]:
        """``(pairs, problems, warnings)`` from file names only (no decoding)."""
        raise NotImplementedError

    # -- Source interface
    def ids(self) -> List[str]:
        return sorted(self.pairs)

    def group(self, sample_id: str) -> str:
        return self.pairs[sample_id].group

    def sample_size(self, sample_id: str) -> Optional[Tuple[int, int]]:
        info = self.pairs[sample_id].image_info
        return info.height, info.width

    def folders(self) -> List[str]:
        """The folders of the listed images and masks."""
        return sorted({fileio.dirname(path) for pair in self.pairs.values() for path in (pair.image, pair.mask)})

    def problems(self) -> List[Tuple[str, str]]:
        """Every problem found, including those of skipped samples."""
        return list(self._problems)

    def examples(self, ids: Sequence[str]):
        import tensorflow as tf

        unknown = [i for i in ids if i not in self.pairs]
        if unknown:
            raise DataError(f"data source {self.spec.text!r}: unknown sample id(s) {', '.join(unknown[:5])}")
        pairs = [self.pairs[i] for i in ids]
        # One dataset per pair of decoders, each a straight-line graph (quick to trace and to start).
        kinds = [(p.image_info.decoder or "pillow", p.mask_info.decoder or "pillow",
                  p.image_info.size == p.mask_info.size) for p in pairs]
        groups = sorted(set(kinds), key=str)

        def decoded(kind):
            selected = [p for p, k in zip(pairs, kinds) if k == kind]
            columns = {
                "id": [p.id for p in selected],
                "image": [str(p.image) for p in selected],
                "mask": [str(p.mask) for p in selected],
            }
            image = image_decoder(kind[0], self.image_form)
            mask = self.colormap.mask_decoder() if self.colormap is not None else mask_decoder(kind[1])
            # Plain TensorFlow ops: autograph's source conversion would only add tracing time.
            return tf.data.Dataset.from_tensor_slices(columns).map(
                tf.autograph.experimental.do_not_convert(
                    lambda row: _finish(row["id"], image(row["image"]), mask(row["mask"]), self.num_classes,
                                        self.mask_threshold, kind[2], self.image_form.channels)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )

        if not groups:
            return _empty_examples(self.image_form)
        if len(groups) == 1:
            return decoded(groups[0])
        choice = tf.data.Dataset.from_tensor_slices(tf.constant([groups.index(k) for k in kinds], tf.int64))
        return tf.data.Dataset.choose_from_datasets([decoded(k) for k in groups], choice)

    # -- checking
    def _check(self, pairs: List[Pair]) -> Tuple[List[Pair], List[Tuple[str, str]]]:
        infos = check_files([(p.image, False) for p in pairs] + [(p.mask, True) for p in pairs])
        good, problems = [], []
        for pair, image_info, mask_info in zip(pairs, infos[: len(pairs)], infos[len(pairs):]):
            pair.image_info, pair.mask_info = image_info, mask_info
            found = []
            if image_info.error:
                found.append((str(pair.image), f"unreadable image ({image_info.error})"))
            if mask_info.error:
                found.append((str(pair.mask), f"unreadable mask ({mask_info.error})"))
            elif self.colormap is not None:
                pair.mask_info, why = self.colormap.check(pair.mask, mask_info)
                if why:
                    found.append((str(pair.mask), why))
            elif mask_info.encoding:
                found.append((str(pair.mask), mask_info.encoding))
            else:
                why = mask_value_problem(mask_info, self.num_classes, self.mask_threshold, self.ignore_class,
                                         self.spec.text)
                if why:
                    found.append((str(pair.mask), why))
            if not found and mask_info.note:
                self.warnings.append((str(pair.mask), mask_info.note))
            if not found and image_info.size != mask_info.size:
                if _same_shape(image_info, mask_info):
                    self.warnings.append((str(pair.mask), f"mask {mask_info.size} differs from image "
                                                          f"{image_info.size}: resized with nearest neighbour"))
                else:
                    found.append((str(pair.mask), f"mask {mask_info.size} does not fit image {image_info.size} "
                                                  f"(another aspect ratio: a wrong pair, or a rotated mask?"
                                                  f"{_orientation_note(image_info, mask_info)})"))
            problems.extend(found)
            if not found:
                good.append(pair)
        return self._common_form(good, problems)

    def _common_form(self, pairs: List[Pair], problems: List[Tuple[str, str]]):
        """``(pairs, problems)`` after setting :attr:`form`: the bands and value type most images have
        (:mod:`tfseg.data.bands`); an image of another form is a problem naming it."""
        from collections import Counter

        if self.channels is not None:
            pairs = self._chosen_bands(pairs, problems)
        counts = Counter(p.image_info.form for p in pairs)
        if not counts:
            return pairs, problems
        self.image_form = max(counts, key=lambda form: (counts[form], form == PHOTO))
        good = []
        for pair in pairs:
            if pair.image_info.form == self.image_form:
                good.append(pair)
                continue
            found, common = pair.image_info.form.describe(), self.image_form.describe()
            hint = "" if self.channels is not None else \
                f" (or read N bands of each: '{with_option(self.spec.text, 'channels', self.image_form.channels)}')"
            problems.append((str(pair.image), f"image of {found}, but {counts[self.image_form]} other image(s) of "
                                              f"this source are {common}: every image of a source needs the same "
                                              f"bands and value type{hint}"))
        return good, problems

    def _chosen_bands(self, pairs: List[Pair], problems: List[Tuple[str, str]]) -> List[Pair]:
        """With ``channels=N``: each image's first N bands (an 8-bit one of 3 bands is a photograph, read
        as RGB); an image with fewer bands is a problem naming it."""
        import dataclasses

        good = []
        for pair in pairs:
            info = pair.image_info
            have = info.form.channels if not info.form.photo else _PHOTO_BANDS.get(info.mode, 3)
            if have < self.channels:
                problems.append((str(pair.image), f"image of {have} band(s), fewer than channels={self.channels}"))
                continue
            if self.channels == 3 and info.form.dtype == "uint8":
                form, decoder = PHOTO, info.decoder if info.form.photo else "pillow"
            else:
                form, decoder = Form(self.channels, info.form.dtype, photo=False), "bands"
            pair.image_info = dataclasses.replace(info, form=form, decoder=decoder, graph=decoder != "pillow")
            good.append(pair)
        return good

    def _handle_problems(self):
        text = self.spec.text
        count = len(self._problems)
        if not self.skip_bad:
            raise DataError(f"data source {text!r}: {count} problem(s) (fix them, or skip these samples "
                            "with --skip-bad / skip_bad=True)", self._problems)
        self.skipped = list(self._problems)
        if not self.pairs:
            raise DataError(f"data source {text!r}: no usable samples left after skipping {count} problem(s)",
                            self._problems)
        key = (text, tuple(self._problems))
        if key not in _REPORTED_SKIPS:  # once per process, however often the source is opened
            _REPORTED_SKIPS.add(key)
            logger.warning("%s: skipped %d problem(s); %d samples left:\n%s", text, count, len(self.pairs),
                           "\n".join(f"  {path}: {why}" for path, why in self._problems))
