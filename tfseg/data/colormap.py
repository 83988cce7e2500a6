"""Colour-coded masks: a class-to-colour map (``folder:PATH?colormap=FILE``) and its decoding.

A CSV file (``class_id,r,g,b[,name]``) says which RGB colour is which class; several
colours may share a class (e.g. every "void" colour -> the ignore value). ``ignore`` as the
class id marks a colour whose pixels no loss or score counts: the source's ``ignore_class``
is then ``--ignore-class`` when given, else :data:`DEFAULT_IGNORE` (255), and the class ids
must run ``0..N-1`` without a gap (N classes, whatever the ignore value). Masks are then
read as RGB and each colour replaced by its class id: checked up front with NumPy
(:meth:`ColourMap.check`, every colour must be in the map) and decoded in the graph with a
hash table (:meth:`ColourMap.mask_decoder`). Colour masks must be lossless (PNG, BMP, GIF):
JPEG changes colours.

Example:
    >>> from tfseg.data import open_source                                  # doctest: +SKIP
    >>> source = open_source("folder:camvid?colormap=camvid/classes.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfseg import fileio
from tfseg.data.filecheck import FileInfo
from tfseg.data.filepixels import open_bytes
from tfseg.errors import ConfigError, DataError

# What TensorFlow's graph decoder reads (a colour mask is decoded with tf.io.decode_image).
COLOUR_MASK_FORMATS = ("PNG", "BMP", "GIF")
#: The class-id column's word for a colour that is no class (its pixels are ignored).
IGNORE_WORD = "ignore"
#: The mask value ``ignore`` colours decode to when ``--ignore-class`` is not given (VOC's).
DEFAULT_IGNORE = 255


def _packed(r, g, b):
    """One integer per colour, ``r * 65536 + g * 256 + b`` (NumPy arrays, tensors or ints)."""
    return r * 65536 + g * 256 + b


class ColourMap:
    """A class-to-colour map read from a CSV file (:func:`read_colormap`).

    Attributes:
        path: the file.
        colours: ``{(r, g, b): class id}`` (several colours may share a class, e.g. every
            "void" colour -> the ignore value).
        names: ``{class id: name}`` where the file names them.
        ignored: the colours marked ``ignore`` (they decode to :meth:`ignore_value`).
    """

    def __init__(self, path: str, colours: Dict[Tuple[int, int, int], int], names: Dict[int, str],
                 ignored: Sequence[Tuple[int, int, int]] = ()):
        self.path, self.colours, self.names = path, dict(colours), names
        self.ignored = tuple(ignored)

    def ignore_value(self, ignore_class: Optional[int]) -> Optional[int]:
        """The source's ignore value: ``ignore_class`` when given, else :data:`DEFAULT_IGNORE` when the map
        marks colours ``ignore`` (``None`` when neither). The ``ignore`` colours decode to it."""
        if self.ignored and ignore_class is None:
            ignore_class = DEFAULT_IGNORE
        for colour in self.ignored:
            self.colours[colour] = ignore_class
        return ignore_class

    def num_classes(self, ignore_class: Optional[int]) -> int:
        """The classes of the map: the ids ``0..N-1`` of its colours, the ignore value left out (N >= 2).

        Raises:
            DataError: the ids leave a gap (e.g. 0, 1, 2 and 255 without ``--ignore-class 255``:
                255 classes without a colour), naming the missing ids.
            ConfigError: fewer than 2 classes.
        """
        ids = sorted({i for i in self.colours.values() if i != ignore_class})
        own = ids[-1] + 1 if ids else 1
        missing = sorted(set(range(own)) - set(ids))
        if missing:
            shown = (f"{missing[0]}..{missing[-1]}" if missing == list(range(missing[0], missing[-1] + 1))
                     and len(missing) > 2 else ", ".join(map(str, missing)))
            raise DataError(f"colormap {self.path}: class id(s) {shown} have no colour, so the ids do not run "
                            f"0..{own - 1}; mark a colour that is no class with {IGNORE_WORD!r} as its class id "
                            f"(or give --ignore-class {ids[-1]} for class id {ids[-1]})")
        if own < 2:
            raise ConfigError(f"colormap {self.path}: maps colours to {own} class; a colour map needs 2 or more")
        return own

    def check(self, path: str, info: FileInfo) -> Tuple[FileInfo, str]:
        """``(info with values = {class id: pixels}, problem or "")`` for one colour mask."""
        import dataclasses

        if info.format not in COLOUR_MASK_FORMATS:
            return info, (f"colour mask in {info.format or 'an unknown'} format: save colour masks as PNG "
                          "(lossless; JPEG changes colours)")
        with open_bytes(fileio.read_bytes(path)) as image:
            rgb = np.asarray(image.convert("RGB"), np.int64)
        found, counts = np.unique(_packed(rgb[..., 0], rgb[..., 1], rgb[..., 2]), return_counts=True)
        keys = {_packed(r, g, b): i for (r, g, b), i in self.colours.items()}
        unknown = [(int(v), int(n)) for v, n in zip(found, counts) if int(v) not in keys]
        values: Dict[int, int] = {}
        for value, count in zip(found, counts):
            if int(value) in keys:
                values[keys[int(value)]] = values.get(keys[int(value)], 0) + int(count)
        info = dataclasses.replace(info, values=values, coloured=True, encoding="")
        if unknown:
            listed = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255}) x{n}" for v, n in unknown[:4])
            more = f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
            return info, f"colour(s) {listed}{more} not in the colour map {self.path}"
        return info, ""

    def table(self):
        """A ``tf.lookup.StaticHashTable`` from ``r * 65536 + g * 256 + b`` to the class id."""
        import tensorflow as tf

        keys = [_packed(r, g, b) for r, g, b in self.colours]
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.int64),
                                                tf.constant(list(self.colours.values()), tf.int64)),
            default_value=0)

    def mask_decoder(self):
        """``mask path -> class ids uint8 [H, W, 1]`` in graph ops (every colour was checked to be in the map)."""
        import tensorflow as tf

        table = self.table()

        def decode(mask_path):
            rgb = tf.cast(tf.io.decode_image(tf.io.read_file(mask_path), channels=3, expand_animations=False),
                          tf.int64)
            return tf.cast(table.lookup(_packed(rgb[..., 0], rgb[..., 1], rgb[..., 2])), tf.uint8)[..., None]

        return decode


def read_colormap(path: str) -> ColourMap:
    """Read a class-to-colour map: CSV lines ``class_id,r,g,b[,name]``.

    A first line that does not start with a number (or ``ignore``) is a header; empty lines and
    lines starting with ``#`` are skipped. Values are integers 0..255; ``ignore`` as the class
    id marks a colour whose pixels count in no loss or score. A colour may appear once; a class
    may have several colours.

    Example file (CamVid style)::

        class_id,r,g,b,name
        0,0,0,0,void
        1,128,128,128,sky
        2,128,0,0,building
        ignore,64,0,128,unlabelled

    Raises:
        DataError: the file is missing or a line is not ``id,r,g,b[,name]`` with values 0..255
            (names the file and the line), or a colour is given twice.
    """
    import csv

    path = fileio.fspath(path)
    if not fileio.exists(path):
        raise DataError(f"colormap {path}: no such file")
    colours: Dict[Tuple[int, int, int], int] = {}
    names: Dict[int, str] = {}
    ignored: List[Tuple[int, int, int]] = []
    rows = list(csv.reader(io.StringIO(fileio.read_text(path))))
    for number, row in enumerate(rows, 1):
        fields = [f.strip() for f in row]
        if not fields or not "".join(fields) or fields[0].startswith("#"):
            continue
        ignore = fields[0].lower() == IGNORE_WORD
        if number == 1 and not ignore and not fields[0].lstrip("-").isdigit():
            continue  # a header
        try:
            if len(fields) not in (4, 5):
                raise ValueError
            class_id = -1 if ignore else int(fields[0])
            r, g, b = (int(f) for f in fields[1:4])
            if not all(0 <= v <= 255 for v in (r, g, b)) or not (ignore or 0 <= class_id <= 255):
                raise ValueError
        except ValueError:
            raise DataError(f"colormap {path}: line {number} {','.join(row)!r} is not class_id,r,g,b[,name] "
                            f"with integers 0..255 (or {IGNORE_WORD!r} as the class id)") from None
        if (r, g, b) in colours:
            raise DataError(f"colormap {path}: line {number}: colour ({r}, {g}, {b}) given twice")
        colours[(r, g, b)] = class_id
        if ignore:
            ignored.append((r, g, b))
        elif len(fields) == 5 and fields[4]:
            names.setdefault(class_id, fields[4])
    if len(colours) == len(ignored):
        raise DataError(f"colormap {path}: no class_id,r,g,b lines")
    return ColourMap(path, colours, names, ignored)

