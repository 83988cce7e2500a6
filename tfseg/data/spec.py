"""The SOURCE grammar, parsed once (CLI ``--data``, ``load_dataset``, notebooks).

=====================  ====================================================
``synthetic[:N]``      built-in procedural lesions (default N below)
``synthetic-large[:N]`` built-in large images (about 1024 x 768) of thin and small structures
``ph2:PATH``           the PH2 archive as unpacked
``mads:PATH``          the MADS full-body set as unpacked
``folder:PATH``        ``PATH/images/*`` + ``PATH/masks/*`` matched by stem
``tfrecord:PATH``      shards written by ``tfseg prepare``
``tfds:NAME[/CONFIG]`` a TFDS dataset with an image and a segmentation mask,
[``?KEY=VALUE&...``]   optionally with source options (below)
=====================  ====================================================

Options of a ``tfds:``, ``folder:``, ``ph2:`` or ``mads:`` source can ride in the
string, so that every verb that takes ``--data`` (and a run's ``config.json``)
carries them: a ``?`` after the name or path, then ``KEY=VALUE`` pairs joined by
``&``, e.g. ``tfds:ph2?manual_dir=/data/PH2``,
``tfds:oxford_iiit_pet?splits=resplit`` or ``folder:/data/camvid?colormap=/data/camvid/classes.csv``.
Keys and values are checked by the source (:mod:`tfseg.data.tfds_source`,
:mod:`tfseg.data.files`); quote the string in a shell (``?`` and ``&`` are
special there). A file source's PATH therefore cannot contain ``?``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from tfseg.errors import TfsegError

KINDS = ("synthetic", "synthetic-large", "ph2", "mads", "folder", "tfrecord", "tfds")
# File sources whose string may carry ?KEY=VALUE options (tfds: too, parsed with its name).
OPTION_KINDS = ("folder", "ph2", "mads")
DEFAULT_SYNTHETIC_COUNT = 1000
DEFAULT_SYNTHETIC_LARGE_COUNT = 200


@dataclass(frozen=True)
class SourceSpec:
    """A parsed SOURCE string.

    Attributes:
        kind: one of :data:`KINDS`.
        path: the PATH part for file sources, else ``None``.
        name: the TFDS ``NAME[/CONFIG]`` for ``tfds``, else ``None``.
        count: the number of samples for ``synthetic`` and ``synthetic-large``, else ``None``.
        text: the original string, for messages.
        options: ``((key, value), ...)`` given after ``?`` (``tfds`` and the file sources), in the order written.
    """

    kind: str
    path: Optional[str] = None
    name: Optional[str] = None
    count: Optional[int] = None
    text: str = ""
    options: Tuple[Tuple[str, str], ...] = ()

    def __str__(self):
        return self.text


def parse_source(source) -> SourceSpec:
    """Parse a SOURCE string; a :class:`SourceSpec` passes through unchanged.

    Raises:
        TfsegError: one line naming the string and the accepted forms.
    """
    if isinstance(source, SourceSpec):
        return source
    text = str(source).strip()
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    forms = ("synthetic[:N], synthetic-large[:N], ph2:PATH, mads:PATH, folder:PATH, tfrecord:PATH, "
             "tfds:NAME[/CONFIG][?KEY=VALUE&...]")
    if kind not in KINDS:
        raise TfsegError(f"data source {text!r}: unknown kind {kind!r}; expected one of {forms}")
    if kind in ("synthetic", "synthetic-large"):
        if not sep:
            default = DEFAULT_SYNTHETIC_COUNT if kind == "synthetic" else DEFAULT_SYNTHETIC_LARGE_COUNT
            return SourceSpec(kind, count=default, text=text)
        try:
            count = int(rest)
        except ValueError:
            count = 0
        if count < 3:
            raise TfsegError(f"data source {text!r}: N must be an integer >= 3 (train, val and test need one each)")
        return SourceSpec(kind, count=count, text=text)
    if not rest:
        what = "NAME[/CONFIG]" if kind == "tfds" else "PATH"
        raise TfsegError(f"data source {text!r}: missing {what} after '{kind}:'")
    if kind == "tfds":
        name, _, query = rest.partition("?")
        if not name:
            raise TfsegError(f"data source {text!r}: missing NAME[/CONFIG] after 'tfds:'")
        return SourceSpec("tfds", name=name, text=text, options=_parse_options(query, text) if query else ())
    if kind in OPTION_KINDS:
        path, _, query = rest.partition("?")
        if not path:
            raise TfsegError(f"data source {text!r}: missing PATH after '{kind}:'")
        return SourceSpec(kind, path=path, text=text, options=_parse_options(query, text) if query else ())
    return SourceSpec(kind, path=rest, text=text)


def _parse_options(query: str, text: str) -> Tuple[Tuple[str, str], ...]:
    """``"a=1&b=x"`` -> ``(("a", "1"), ("b", "x"))``; each key once, each with a value."""
    options = []
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise TfsegError(f"data source {text!r}: option {item!r} is not KEY=VALUE "
                             "(options: ?KEY=VALUE&KEY=VALUE...)")
        if key in dict(options):
            raise TfsegError(f"data source {text!r}: option {key!r} given twice")
        options.append((key, value))
    return tuple(options)
