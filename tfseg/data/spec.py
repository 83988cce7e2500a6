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

``KIND:REST``: what REST is (a PATH, a TFDS NAME, a count N) is declared by the kind's
:class:`~tfseg.data.sources.Source` class (``FORM``), so a new kind in ``tfseg/data/kinds/``
parses without a change here.

Options of any kind can ride in the string, so that every verb that takes ``--data``
(and a run's ``config.json``) carries them: a ``?`` after the name or path, then
``KEY=VALUE`` pairs joined by ``&``, e.g. ``tfds:ph2?manual_dir=/data/PH2``,
``tfds:oxford_iiit_pet?splits=resplit``, ``folder:/data/camvid?colormap=/data/camvid/classes.csv``
or ``folder:/data/skin?mask_threshold=127``. Keys and values are checked by the kind
(:meth:`tfseg.data.sources.Source.settings`); quote the string in a shell (``?`` and ``&``
are special there). A PATH therefore cannot contain ``?``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from tfseg.errors import TfsegError


@dataclass(frozen=True)
class SourceSpec:
    """A parsed SOURCE string.

    Attributes:
        kind: a registered kind (:func:`tfseg.data.sources.source_kinds`).
        path: the PATH part for file sources, else ``None``.
        name: the TFDS ``NAME[/CONFIG]`` for ``tfds``, else ``None``.
        count: the number of samples for ``synthetic`` and ``synthetic-large``, else ``None``.
        text: the original string, for messages.
        options: ``((key, value), ...)`` given after ``?``, in the order written.
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
    from tfseg.data.sources import source_class

    text = str(source).strip()
    head, _, query = text.partition("?")
    kind, sep, rest = head.partition(":")
    kind = kind.lower()
    form = source_class(kind, text).FORM
    options = _parse_options(query, text) if query else ()
    if form == "count":
        if not sep:
            return SourceSpec(kind, count=source_class(kind).DEFAULT_COUNT, text=text, options=options)
        try:
            count = int(rest)
        except ValueError:
            count = 0
        if count < 3:
            raise TfsegError(f"data source {text!r}: N must be an integer >= 3 (train, val and test need one each)")
        return SourceSpec(kind, count=count, text=text, options=options)
    if not rest:
        what = "NAME[/CONFIG]" if form == "name" else "PATH"
        raise TfsegError(f"data source {text!r}: missing {what} after '{kind}:'")
    if form == "name":
        return SourceSpec(kind, name=rest, text=text, options=options)
    return SourceSpec(kind, path=rest, text=text, options=options)


def with_option(text: str, key: str, value) -> str:
    """The SOURCE string ``text`` with ``?key=value`` (or ``&key=value``) added, for messages."""
    return f"{text}{'&' if '?' in text else '?'}{key}={value}"


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
