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
import errno
import hashlib
import json
import os
import posixpath
import re
import shutil
import socket
import uuid
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from tfseg.errors import DiskFullError, TfsegError

TEMP_MARK = ".tmp-"


def _gfile():
    import tensorflow as tf

    return _CheckedGfile(tf.io.gfile)


class _CheckedGfile:
    """``tf.io.gfile`` whose calls on a URL that cannot be reached raise one line naming it
    (:func:`unreachable_error`) instead of TensorFlow's HTTP error (or, for ``isdir``, ``False``)."""

    def __init__(self, gfile):
        self._gfile = gfile

    def __getattr__(self, name):
        function = getattr(self._gfile, name)
        if name in ("GFile", "walk"):  # a file object, a generator: they fail later, where they are used
            return function

        def call(path, *args, **kwargs):
            try:
                return function(path, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - only a storage that cannot be reached is turned
                if is_url(path) and is_unreachable(err):
                    raise unreachable_error(path, err) from None
                raise

        return call


# What TensorFlow's cloud file systems say when the network or the service is not there.
_UNREACHABLE_TEXTS = ("libcurl", "Could not resolve", "Couldn't resolve", "Failed to connect", "Connection refused",
                      "Connection timed out", "Timeout was reached", "Network is unreachable")


def is_unreachable(err: BaseException) -> bool:
    """Whether a file-system error says the storage could not be reached (no network, no such host)."""
    return type(err).__name__ != "NotFoundError" and any(text in str(err) for text in _UNREACHABLE_TEXTS)


def unreachable_error(path, err: BaseException) -> TfsegError:
    """``gs://b/x: cannot reach the storage (Could not resolve host: ...)``."""
    text = str(err)
    detail = re.search(r"error details: ([^\n]*)", text)
    reason = (detail.group(1) if detail else text.splitlines()[0] if text else type(err).__name__).strip()
    return TfsegError(f"{path}: cannot reach the storage ({reason}); check the network connection and the "
                      "bucket name")


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
    path = fspath(path)
    found = _gfile().isdir(path)
    if not found and is_url(path):
        exists(path)  # tf.io.gfile.isdir answers False when the storage cannot be reached: say so instead
    return found


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


def rename(source, target, overwrite: bool = False, last: Sequence[str] = (), first: Sequence[str] = ()) -> None:
    """Rename a file or folder (atomic on a local disk; copy + delete on an object store).

    A folder on a URL file system is moved file by file (object stores and ``ram://``
    rename single objects only): the files named in ``first`` (paths relative to
    ``source``) before every other one, those in ``last`` after: a marker moved first
    stops the old place being complete at once, one moved last makes the new place complete.
    """
    source, target = fspath(source), fspath(target)
    if not (is_url(source) and isdir(source)):
        _gfile().rename(source, target, overwrite=overwrite)
        return
    if exists(target) and not overwrite:
        raise FileExistsError(target)
    moves = {"first": [], "middle": [], "last": []}
    for folder, _, files in walk(source):
        relative = folder[len(source):].strip("/")
        makedirs(join(target, relative) if relative else target)
        for name in files:
            where = posixpath.join(relative, name) if relative else name
            group = "first" if where in first else "last" if where in last else "middle"
            moves[group].append((join(folder, name), join(target, where)))
    for group in ("first", "middle", "last"):
        for move in moves[group]:
            _gfile().rename(*move, overwrite=overwrite)
    rmtree(source)


def walk(path):
    """``(folder, subfolders, files)`` for ``path`` and every folder below it, top down."""
    path = fspath(path)
    for folder, subfolders, files in _gfile().walk(path):
        if path.startswith("ram://"):
            # TensorFlow's ram:// lists by name prefix: "assets" also "finds" ".extra" of "assets.extra"
            files = [name for name in files if _gfile().exists(posixpath.join(folder, name))]
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


# --------------------------------------------------------------------------- writers
def host_id() -> str:
    """This machine as temporaries and locks record it: 8 hex digits of a hash of its host name."""
    return hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def writer_tag() -> str:
    """``<pid>@<host id>``: this process, as a temporary's name or a lock records its writer."""
    return f"{os.getpid()}@{host_id()}"


# After TEMP_MARK: the writer's pid, then (since the host is recorded) "@" and the host id.
_WRITER = re.compile(r"(\d+)(?:@([0-9a-f]{8}))?-")


def writer_alive(pid: int, host: Optional[str] = None) -> bool:
    """Whether process ``pid`` of machine ``host`` (``None``: this one) may still be running.

    Only a process of this machine can be looked up: one of another machine counts as
    running (it may be). This process itself counts as not running: what it left behind
    comes from an earlier call that failed.
    """
    if host is not None and host != host_id():
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # another user's process, or no answer: keep it
        return True
    return True


def temp_writer(name: str) -> Optional[Tuple[int, Optional[str]]]:
    """``(pid, host id or None)`` that a temporary's name records, or ``None`` when it records none."""
    index = name.find(TEMP_MARK)
    match = _WRITER.match(name, index + len(TEMP_MARK)) if index >= 0 else None
    return (int(match.group(1)), match.group(2)) if match else None


# --------------------------------------------------------------------------- atomic writes
def temp_path(path, tag: Optional[str] = None) -> str:
    """A hidden name next to ``path`` with the same extension(s) (Keras and matplotlib read the format from it).

    ``a/model.keras`` -> ``a/.model.tmp-<pid>@<host>-<random>.keras``: temporary names always
    contain :data:`TEMP_MARK` and their writer (:func:`writer_tag`), so
    :func:`remove_stale_temporaries` can recognise them and tell whether their writer still runs.
    """
    path = abspath(path).rstrip("/") if is_url(path) else abspath(path)
    folder, name = dirname(path), basename(path)
    name_stem, dot, ext = name.partition(".")
    tag = tag or f"{writer_tag()}-{uuid.uuid4().hex[:6]}"
    return join(folder, f".{name_stem}{TEMP_MARK}{tag}{dot}{ext}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`temp_path`'s."""
    return name.startswith(".") and TEMP_MARK in name


def is_temporary_of(name: str, target: str) -> bool:
    """Whether ``name`` is a temporary :func:`temp_path` makes for a file or folder named ``target``.

    Exact: the temporaries of ``shk`` are not those of ``shk.v2`` or ``shk-old`` (siblings sharing a prefix).
    """
    target_stem, dot, ext = basename(target).partition(".")
    pattern = re.escape(f".{target_stem}{TEMP_MARK}") + r"\d+(?:@[0-9a-f]{8})?-[0-9a-f]+" + re.escape(dot + ext)
    return re.fullmatch(pattern, name) is not None


@contextlib.contextmanager
def atomic_path(path, last: Sequence[str] = (), size: Optional[int] = None) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Whatever is written to the temporary path (a file, or a folder) replaces ``path``
    only when the block succeeds. On an exception the temporary is removed and
    ``path`` is untouched; a full file system raises :class:`~tfseg.errors.DiskFullError`
    naming ``path`` (``size``: the bytes to write, when known, for the message).
    For a folder on an object store, ``last`` names the files (relative to the folder)
    moved after all others: the marker that says it is complete.
    """
    path = fspath(path)
    tmp = temp_path(path)
    try:
        with disk_full_names(path, size):
            try:
                yield tmp
            except BaseException:
                release_hdf5_file(tmp)
                raise
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


def release_hdf5_file(path) -> None:
    """Close what HDF5 still holds open of the local file ``path`` after a write to it failed.

    Keras leaves its ``.weights.h5`` open when a write fails (a full disk): HDF5 writes it
    again when Python frees it, or at exit, fails again, and may crash the process (a
    segmentation fault). Its file descriptor is pointed at the null device, so that those
    last writes succeed (the half-written file is deleted anyway). This contains the usual
    case; HDF5 can be past saving when its very first writes failed, which is why the
    weights writers first check that there is room (:func:`check_room`).
    """
    import sys

    h5py = sys.modules.get("h5py")
    if h5py is None or is_url(path) or not os.path.isfile(path):
        return
    target = os.path.realpath(path)
    for file_id in h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE):
        try:
            name = file_id.name.decode() if isinstance(file_id.name, bytes) else str(file_id.name)
        except Exception:  # noqa: BLE001 - an identifier HDF5 no longer knows
            continue
        if os.path.realpath(name) != target:
            continue
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, int(file_id.get_vfd_handle()))
            finally:
                os.close(null)


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path, size=len(data)) as tmp:
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


def remove_stale_temporaries(folder, of: Optional[str] = None) -> List[str]:
    """Delete the hidden temporaries (:func:`is_temporary`) in ``folder`` whose writer no longer runs.

    Only names that tfseg's own :func:`temp_path` makes are touched, and only when the
    writer they record is known to have ended (:func:`writer_alive`): a temporary of a
    running process, of another machine, or without a recorded writer is kept.
    ``of``: only the temporaries of that file or folder name (:func:`is_temporary_of`),
    for a folder that is the user's. Returns what was removed.
    """
    folder = fspath(folder)
    if not isdir(folder):
        return []
    removed = []
    for name in listdir(folder):
        if not is_temporary(name) or (of is not None and not is_temporary_of(name, of)):
            continue
        writer = temp_writer(name)
        if writer is None:
            continue
        pid, host = writer
        # A name without a host is from this machine on a local disk; on a bucket it may be any machine's.
        if writer_alive(pid, host if host or not is_url(folder) else ""):
            continue
        target = join(folder, name)
        if isdir(target):
            rmtree(target)
        else:
            remove(target)
        removed.append(target)
    return removed


# --------------------------------------------------------------------------- folder replacement
@contextlib.contextmanager
def replacing_folder(target, marker: str, keep_old: Optional[str] = None) -> Iterator[str]:
    """Write a new folder into a hidden staging folder next to ``target``, then publish it as ``target``.

    The one rule by which tfseg replaces a folder (a SavedModel version, a shard folder, a
    run folder moved aside by ``--force-new``):

    1. staging folders of ``target`` that a writer which no longer runs left behind are
       removed (:func:`remove_stale_temporaries`; a running writer's are kept);
    2. the block writes the complete folder into the yielded staging folder
       (``.NAME.tmp-<pid>@<host>-<random>``); on an exception it is deleted and ``target``
       is as it was (a full file system: :class:`~tfseg.errors.DiskFullError` naming ``target``);
    3. :func:`publish_folder` puts it in place, ``marker`` (a file of the folder, relative
       to it) last: a folder holding its marker is complete.

    Args:
        target: the folder to create or replace.
        marker: the commit marker (``saved_model.pb``, ``manifest.json``, ``config.json``).
        keep_old: move an existing ``target`` there instead of deleting it.

    Example:
        >>> import tempfile
        >>> out = join(tempfile.mkdtemp(), "shards")
        >>> with replacing_folder(out, "manifest.json") as staging:
        ...     write_json_atomic(join(staging, "manifest.json"), {})
        >>> listdir(out)
        ['manifest.json']
    """
    target = fspath(target).rstrip("/") if is_url(target) else fspath(target)
    parent = dirname(abspath(target))
    staging = temp_path(target)
    try:
        with disk_full_names(target):
            if parent:
                makedirs(parent)
                remove_stale_temporaries(parent, of=basename(target))
            makedirs(staging)
            yield staging
            publish_folder(staging, target, marker, keep_old)
    finally:
        rmtree(staging)


def publish_folder(staging, target, marker: str, keep_old: Optional[str] = None) -> None:
    """Put the complete folder ``staging`` at ``target`` (see :func:`replacing_folder`).

    Local disk: an existing ``target`` is renamed to a temporary name (or ``keep_old``), the
    new folder renamed in, then the old one deleted; if renaming the new one fails, the old
    one is put back. A kill between the renames leaves the old one under a temporary name
    (removed by the next replacement) or at ``keep_old``.
    Object store (``gs://``, a rename is a copy): the old ``target`` stops being complete
    first (its ``marker`` is deleted, or moved to ``keep_old`` first), then the new folder
    is copied with its ``marker`` last.
    """
    staging, target = fspath(staging), fspath(target)
    if is_url(target):
        if exists(target):
            if keep_old is None:
                remove(join(target, marker))
                rmtree(target)
            else:
                rename(target, keep_old, first=[marker])
        rename(staging, target, last=[marker])
        return
    retired = None
    if exists(target):
        retired = keep_old or temp_path(target)
        rename(target, retired)
    try:
        rename(staging, target)
    except BaseException:
        if retired is not None:
            rename(retired, target)  # the previous folder back
        raise
    if retired is not None and keep_old is None:
        rmtree(retired)


# --------------------------------------------------------------------------- a full file system
# What h5py, zipfile and TensorFlow say when a write fails for want of space (they do not all set errno).
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "errno = 28,", "errno = 122,")


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an exception it was raised from or while handling, says the file system is full."""
    seen, stack = set(), [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(current) for text in _FULL_TEXTS):
            return True
        stack += [current.__cause__, current.__context__]
    return False


def free_bytes(path) -> Optional[int]:
    """Free bytes on the local file system that holds (or would hold) ``path``; ``None`` for a URL."""
    path = fspath(path)
    if is_url(path):
        return None
    folder = abspath(path)
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def describe_size(count: int) -> str:
    """``532 bytes``, ``12.4 KB``, ``3.1 MB``, ``1.2 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def disk_full_error(path, size: Optional[int] = None) -> DiskFullError:
    """The one-line error for ``path`` that could not be written on a full file system.

    Names how much was missing when the size of what was written is known, else the free space.
    """
    free = free_bytes(path)
    if size is not None and free is not None:
        room = f"needs {describe_size(size)}, {describe_size(free)} free: {describe_size(max(size - free, 1))} missing"
    elif free is not None:
        room = f"{describe_size(free)} free there"
    else:
        room = "the storage is full or over its quota"
    return DiskFullError(f"{path}: cannot be written, no space left on the device ({room}); free some space "
                         "and run the same command again")


def check_room(path, size: int) -> None:
    """Refuse to start writing ``size`` bytes to the local ``path`` when its file system has less free.

    For the writers that cannot fail cleanly halfway (h5py, see :func:`release_hdf5_file`).

    Raises:
        DiskFullError: names ``path``, the bytes needed and the bytes free.
    """
    free = free_bytes(path)
    if free is not None and free < size:
        raise disk_full_error(path, size)


@contextlib.contextmanager
def disk_full_names(path, size: Optional[int] = None) -> Iterator[None]:
    """Turn a write of the block that failed on a full file system into :func:`disk_full_error` naming ``path``.

    Put around every write point: h5py and zipfile errors name no file, and TensorFlow's
    ``ResourceExhaustedError`` names the temporary, not the output.
    """
    try:
        yield
    except TfsegError:
        raise
    except Exception as err:  # noqa: BLE001 - only a full disk is turned into a user error
        if is_disk_full(err):
            raise disk_full_error(path, size) from err
        raise
