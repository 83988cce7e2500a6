"""What a mask's values mean: the foreground rule, the class count, the ignored value.

One definition each, used by every path: the file check and ``tfseg inspect`` (NumPy), the
tf.data pipeline and the sources' decoders (TensorFlow graph code), the TFDS builders (NumPy)
and the metrics (``keras.ops``). The functions use operators only and take the array
namespace that has ``where`` as ``xp`` (``numpy``, ``tensorflow``, ``keras.ops``), so one
definition runs in each of them. This module imports no TensorFlow.

Foreground of a binary mask, from its raw values (one channel, see :mod:`tfseg.data.filepixels`
for how channels, palettes, alpha and 16-bit files become one channel):

* with a threshold ``T`` (the source setting ``mask_threshold``, e.g.
  ``folder:PATH?mask_threshold=127`` for noisy JPEG or anti-aliased masks): ``value > T``;
* else, when the mask's largest value is at most 1 ({0, 1} masks, bool masks, and masks
  already in the model's form): ``value > 0.5``;
* else ``value > full_scale / 2``: 127.5 for 8-bit masks ({0, 255}), 32767.5 for 16-bit ones.

The cut comes from the whole mask (its largest value), so applying it after a
nearest-neighbour resize or a crop marks the same pixels as before.

Class ids: a multi-class mask holds ids ``0..num_classes - 1`` as 8-bit values, so
``1 <= num_classes <= 256`` (1 = binary masks). ``ignore_class`` is one more 8-bit value
allowed beside the ids and left out of the loss and the metrics.

Example:
    >>> import numpy as np
    >>> foreground(np.array([0, 1, 127, 128, 255]), top=255).tolist()
    [False, False, False, True, True]
    >>> foreground(np.array([0, 1]), top=1).tolist()
    [False, True]
    >>> resolve_num_classes(None, own=3, what="tfrecord:shards")
    3
"""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from tfseg.errors import ConfigError

MAX_CLASSES = 256  # class ids are stored as 8-bit mask values
MAX_MASK_VALUE = 255
MODEL_FORM_CUT = 0.5  # the cut of a mask whose values are at most 1


def binary_cut(top=None, threshold=None, full_scale=MAX_MASK_VALUE, xp=np):
    """The value above which a binary mask's pixel is foreground (see the module docstring).

    Args:
        top: the largest value of the whole mask; ``None``: the values are at most 1.
        threshold: the user's ``mask_threshold`` (wins when given).
        full_scale: the largest value of the mask's dtype (255; 65535 for 16-bit masks).
        xp: the array namespace of ``top`` (``numpy``, ``tensorflow``, ``keras.ops``).
    """
    if threshold is not None:
        return threshold
    if top is None:
        return MODEL_FORM_CUT
    return xp.where(top > 1, full_scale / 2, MODEL_FORM_CUT)


def foreground(values, top=None, threshold=None, full_scale=MAX_MASK_VALUE, xp=np):
    """Boolean foreground of a binary mask's values: ``values > binary_cut(...)``."""
    return values > binary_cut(top, threshold, full_scale, xp)


def written_mask(mask, num_classes: int):
    """A predicted mask (0/1, or class ids) as tfseg writes it into a mask file or a PNG reply:
    0/255 for one class (visible in any viewer), the class ids as they are for several.

    Works on NumPy arrays and tensors alike (``tfseg predict``'s ``<stem>_mask.png``, the serving
    graph's ``mask_png_bytes``).
    """
    return mask * MAX_MASK_VALUE if num_classes == 1 else mask


def valid_class_ids(values, num_classes: int, ignore_class: Optional[int] = None):
    """Boolean, per value: a class id below ``num_classes`` or the ``ignore_class`` value."""
    valid = values < num_classes
    if ignore_class is None:
        return valid
    return valid | (values == ignore_class)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_num_classes(num_classes) -> int:
    """``num_classes`` as an int in ``1..MAX_CLASSES``.

    Raises:
        ConfigError: ``num_classes <value>: an integer 1..256 ...``, the one message for every path.
    """
    if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"num_classes {num_classes!r}: an integer 1..{MAX_CLASSES} (1 = binary masks; "
                          f"class ids are 8-bit mask values)")
    return int(num_classes)


def resolve_num_classes(wanted, own: Optional[int] = None, what: str = "the data") -> int:
    """The number of classes of a source: ``wanted`` (the user's) checked against ``own`` (the data's).

    Args:
        wanted: the user's ``num_classes``; ``None``: not given.
        own: what the data itself says (1 for masks known to be binary, K for a colour map,
            shards or trimaps of K classes); ``None``: the data does not say (file masks: their
            values are checked against the result instead).
        what: the data, for the message (``data source 'tfrecord:shards'``).

    Returns:
        ``wanted`` when given, else ``own``, else 1. Binary data (``own == 1``) may be read as
        class ids 0/1 of ``wanted >= 2`` classes; K-class data needs ``wanted >= K``.

    Raises:
        ConfigError: a value outside 1..256, or fewer classes than the data holds.
    """
    if wanted is not None:
        wanted = check_num_classes(wanted)
    if own is None:
        return wanted or 1
    own = check_num_classes(own)
    if wanted is None:
        return own
    if wanted < own or (own > 1 and wanted == 1):
        raise ConfigError(f"num_classes {wanted!r}: {what} has {own} classes (class ids 0..{own - 1}); "
                          f"use {own} or more")
    return wanted


def check_ignore_class(ignore_class, num_classes: Optional[int]) -> int:
    """``ignore_class`` as an int: a mask value 0..255, for class-id masks (``num_classes >= 2``;
    ``None``: the class count is not known yet, e.g. a colour map's, and is checked when it is).

    Raises:
        ConfigError: not an integer in 0..255, or binary masks (their 0/255 encoding has no spare value).
    """
    if not _is_int(ignore_class) or not 0 <= ignore_class <= MAX_MASK_VALUE:
        raise ConfigError(f"ignore_class {ignore_class!r}: a mask value 0..{MAX_MASK_VALUE} (e.g. 255)")
    if num_classes is not None and int(num_classes) < 2:
        raise ConfigError(f"ignore_class {ignore_class!r}: needs class-id masks (--num-classes 2 or more)")
    return int(ignore_class)


def check_mask_threshold(mask_threshold, num_classes: int) -> int:
    """``mask_threshold`` as an int 0..254 (foreground: ``value > mask_threshold``), for binary masks.

    Raises:
        ConfigError: not an integer 0..254, or class-id masks (their values are ids, not levels).
    """
    if not _is_int(mask_threshold) or not 0 <= mask_threshold < MAX_MASK_VALUE:
        raise ConfigError(f"mask_threshold {mask_threshold!r}: an integer 0..{MAX_MASK_VALUE - 1} "
                          "(foreground: mask value > mask_threshold)")
    if int(num_classes) != 1:
        raise ConfigError(f"mask_threshold {mask_threshold!r}: for binary masks only (class-id masks "
                          f"hold ids, here {num_classes} classes)")
    return int(mask_threshold)
