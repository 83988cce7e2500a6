"""Every file tfseg reads or writes goes through here, on TensorFlow's file system layer.

``tf.io.gfile`` reads and writes local paths and every URL scheme TensorFlow
knows (``gs://`` on Google Cloud Storage, ``s3://`` with the plug-in,
``ram://`` in memory, used by the tests), so run folders, shards, exports and
predictions can live on a bucket. ``pathlib`` cannot be used for such paths
(``Path("gs://b/x")`` is ``gs:/b/x``); the helpers here keep a URL a URL.

Atomic writes: a file is written under a hidden temporary name in the same
folder and then renamed onto its final name. On a local disk the rename is
atomic, so a reader (or a resumed run after ``kill -9``) sees the old file or
the new one, never half of one. On an object store (``gs://``) a rename is a
copy and a delete: the final object still appears whole (an object upload is
all or nothing) but a crash may leave the hidden temporary behind; for folders
(shards, SavedModels) the marker written last (the shard manifest, the
``saved_model.pb`` of a version) is the commit point.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> write_json_atomic(join(folder, "a.json"), {"x": 1})
    >>> read_json(join(folder, "a.json"))
    {'x': 1}
    >>> join("gs://bucket/run", "model.keras")
    'gs://bucket/run/model.keras'
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import uuid
from typing import Any, Iterator, List, Optional, Sequence

from tfseg.errors import TfsegError

TEMP_MARK = ".tmp-"


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


# --------------------------------------------------------------------------- path strings
def is_url(path) -> bool:
    """Whether ``path`` names a file system by scheme (``gs://``, ``ram://``, ...)."""
    return "://" in str(path)


def fspath(path) -> str:
    """``path`` as a string: ``~`` expanded for local paths, URLs untouched."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.expanduser(path)


def join(path, *parts) -> str:
    """``os.path.join`` that keeps ``gs://bucket/x`` a URL (forward slashes)."""
    path = fspath(path)
    if is_url(path):
        return posixpath.join(path, *[str(p) for p in parts])
    return os.path.join(path, *[str(p) for p in parts])


def dirname(path) -> str:
    path = fspath(path).rstrip("/") if is_url(path) else fspath(path)
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(path)


def basename(path) -> str:
    path = fspath(path)
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(path.rstrip(os.sep))


def abspath(path) -> str:
    """Absolute for local paths; a URL as it is."""
    path = fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def stem(path) -> str:
    """The file name without its last extension (``a/b.c.png`` -> ``b.c``)."""
    return os.path.splitext(basename(path))[0]


# --------------------------------------------------------------------------- queries
def exists(path) -> bool:
    return _gfile().exists(fspath(path))


def isdir(path) -> bool:
    return _gfile().isdir(fspath(path))


def isfile(path) -> bool:
    path = fspath(path)
    return _gfile().exists(path) and not _gfile().isdir(path)


def listdir(path) -> List[str]:
    """The entry names of folder ``path`` (no trailing ``/``), sorted."""
    return sorted(name.rstrip("/") for name in _gfile().listdir(fspath(path)))


def glob(pattern) -> List[str]:
    return sorted(_gfile().glob(fspath(pattern)))


def size(path) -> int:
    return int(_gfile().stat(fspath(path)).length)


def stat(path):
    """``tf.io.gfile.stat``: ``.length`` (bytes), ``.mtime_nsec``, ``.is_directory``."""
    return _gfile().stat(fspath(path))


def writable(folder) -> bool:
    """Whether this process may create files in the existing folder ``folder`` (a URL: True, the store decides)."""
    folder = fspath(folder)
    return True if is_url(folder) else os.access(folder, os.W_OK | os.X_OK)


# --------------------------------------------------------------------------- changes
def makedirs(path) -> None:
    _gfile().makedirs(fspath(path))


def remove(path) -> None:
    """Delete a file (no error when it is already gone)."""
    path = fspath(path)
    if _gfile().exists(path):
        _gfile().remove(path)


def rmtree(path) -> None:
    path = fspath(path)
    if _gfile().exists(path):
        _gfile().rmtree(path)


def rename(source, target, overwrite: bool = False, last: Sequence[str] = ()) -> None:
    """Rename a file or folder (atomic on a local disk; copy + delete on an object store).

    A folder on a URL file system is moved file by file (object stores and ``ram://``
    rename single objects only), the files named in ``last`` (paths relative to
    ``source``) after every other one: a marker moved last is the folder's commit point.
    """
    source, target = fspath(source), fspath(target)
    if not (is_url(source) and isdir(source)):
        _gfile().rename(source, target, overwrite=overwrite)
        return
    if exists(target) and not overwrite:
        raise FileExistsError(target)
    deferred = []
    for folder, _, files in walk(source):
        relative = folder[len(source):].strip("/")
        makedirs(join(target, relative) if relative else target)
        for name in files:
            moves = (join(folder, name), join(target, relative, name) if relative else join(target, name))
            if posixpath.join(relative, name) in last:
                deferred.append(moves)
            else:
                _gfile().rename(*moves, overwrite=overwrite)
    for moves in deferred:
        _gfile().rename(*moves, overwrite=overwrite)
    rmtree(source)


def walk(path):
    """``(folder, subfolders, files)`` for ``path`` and every folder below it, top down."""
    for folder, subfolders, files in _gfile().walk(fspath(path)):
        yield folder, [s.rstrip("/") for s in subfolders], files


def copy(source, target, overwrite: bool = False) -> None:
    _gfile().copy(fspath(source), fspath(target), overwrite=overwrite)


def open_file(path, mode: str = "r"):
    """``tf.io.gfile.GFile``: a file object for any path TensorFlow reads."""
    return _gfile().GFile(fspath(path), mode)


def read_bytes(path) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def read_text(path) -> str:
    with open_file(path, "r") as f:
        return f.read()


# --------------------------------------------------------------------------- atomic writes
def temp_path(path, tag: Optional[str] = None) -> str:
    """A hidden name next to ``path`` with the same extension(s) (Keras and matplotlib read the format from it).

    ``a/model.keras`` -> ``a/.model.tmp-<tag>.keras``; temporary names always contain
    :data:`TEMP_MARK`, so :func:`remove_stale_temporaries` can recognise them.
    """
    path = abspath(path)
    folder, name = dirname(path), basename(path)
    name_stem, dot, ext = name.partition(".")
    tag = tag or f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return join(folder, f".{name_stem}{TEMP_MARK}{tag}{dot}{ext}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`temp_path`'s."""
    return name.startswith(".") and TEMP_MARK in name


@contextlib.contextmanager
def atomic_path(path, last: Sequence[str] = ()) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Whatever is written to the temporary path (a file, or a folder) replaces ``path``
    only when the block succeeds. On an exception the temporary is removed and
    ``path`` is untouched. For a folder on an object store, ``last`` names the files
    (relative to the folder) moved after all others: the marker that says it is complete.
    """
    path = fspath(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if isdir(tmp):
            if exists(path):
                rmtree(path)
            rename(tmp, path, last=last)
        else:
            rename(tmp, path, overwrite=True)
    finally:
        if exists(tmp):
            if isdir(tmp):
                rmtree(tmp)
            else:
                remove(tmp)


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        with open_file(tmp, "wb") as f:
            f.write(data)
            f.flush()


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(value: Any) -> str:
    """Indented, key-sorted JSON with numpy scalars as plain numbers."""
    return json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json_atomic(path, value: Any) -> None:
    write_text_atomic(path, to_json(value))


def read_json(path) -> Optional[Any]:
    """The JSON content of ``path``, or ``None`` when it does not exist.

    Raises:
        TfsegError: the file exists but is not valid JSON (names the file).
    """
    path = fspath(path)
    if not exists(path):
        return None
    try:
        return json.loads(read_text(path))
    except (ValueError, UnicodeDecodeError) as err:
        raise TfsegError(f"{path}: damaged JSON file ({err})") from None


def _writer_alive(name: str, local: bool) -> bool:
    # temp_path's tag starts with the writer's process id: another live process may still be writing it.
    match = re.search(re.escape(TEMP_MARK) + r"(\d+)-", name)
    if not (local and match) or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def remove_stale_temporaries(folder) -> List[str]:
    """Delete the hidden temporaries (:func:`is_temporary`) a killed process left in ``folder``.

    Only names that tfseg's own :func:`temp_path` makes are touched, and on a local disk
    not those of another process that is still running. Returns what was removed.
    """
    folder = fspath(folder)
    if not isdir(folder):
        return []
    removed = []
    for name in listdir(folder):
        if is_temporary(name) and not _writer_alive(name, not is_url(folder)):
            target = join(folder, name)
            if isdir(target):
                rmtree(target)
            else:
                remove(target)
            removed.append(target)
    return removed
