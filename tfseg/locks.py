"""One writer per run folder: a lock beside the folder that names its holder.

``tfseg train`` holds :func:`run_lock` of its RUN_DIR from before it looks at the folder
until it ends, so everything it writes there (``--force-new`` moving the old run aside,
the checkpoints, the SavedModel export into ``saved_model/``) has one writer. A second
process is refused with :class:`~tfseg.errors.TfsegError` (exit code 2) naming the
holder: its host, pid, command and since when.

The lock is the hidden file ``PARENT/.NAME.tfseg-lock`` beside RUN_DIR (beside, not inside,
so that it stays held while ``--force-new`` moves the folder aside and a new one takes its
place, and so that a run that fails before writing anything leaves no folder behind). It
holds its holder as JSON and is deleted when the holder ends normally.

What is guaranteed:

- **Local disk** (and NFS with working locks): an advisory ``fcntl.flock`` on that file. The
  kernel releases it however the holder ends (``kill -9`` included), so a lock of a killed
  process is taken over at once, and two processes started together cannot both hold it.
- **An object store** (``gs://``; also any file system without ``flock``): the file itself is
  the lock. A holder of this machine that no longer runs is taken over (its pid is looked up);
  a holder of another machine is respected until it deletes the file (the message names it, to
  delete by hand when that machine is gone). The file is written, then read back: of two
  processes that start within the time of one write of each other, the one whose write lands
  last goes on, but one that read its own lock back before the other's write landed may go on
  too. Run one ``tfseg train`` per run folder on a bucket yourself; the lock catches the usual
  mistake (the same command started twice), not every race.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import uuid
from typing import Any, Dict, Iterator, Optional

from tfseg import fileio
from tfseg.errors import TfsegError

LOCK_SUFFIX = ".tfseg-lock"
# flock errors that mean "this file system has no locks" (then the lock file alone is the lock)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def lock_path(folder) -> str:
    """``PARENT/.NAME.tfseg-lock``: the lock file of ``folder``."""
    folder = fileio.abspath(folder)
    folder = folder.rstrip("/") if fileio.is_url(folder) else folder.rstrip(os.sep) or folder
    return fileio.join(fileio.dirname(folder), f".{fileio.basename(folder)}{LOCK_SUFFIX}")


def holder_info() -> Dict[str, Any]:
    """What a lock records of this process: host, host id, pid, start time, command."""
    command = " ".join(["tfseg", *sys.argv[1:3]]) if fileio.basename(sys.argv[0] or "") == "tfseg" else "python"
    return {"host": socket.gethostname(), "host_id": fileio.host_id(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command, "token": uuid.uuid4().hex}


def describe_holder(info: Optional[Dict[str, Any]]) -> str:
    """``host h, pid 123, since 2025-01-31 12:00:00 (tfseg train)``."""
    if not isinstance(info, dict) or "pid" not in info:
        return "a process that has not written its name yet"
    command = f" ({info['command']})" if info.get("command") else ""
    return f"host {info.get('host', '?')}, pid {info['pid']}, since {info.get('since', '?')}{command}"


def _holder_alive(info: Optional[Dict[str, Any]]) -> bool:
    """Whether the holder a lock file names may still hold it (this process counts: another lock of it)."""
    if not isinstance(info, dict):
        return False  # unreadable: nobody can be holding it by this file
    try:
        pid, host = int(info["pid"]), info.get("host_id") or None
    except (KeyError, TypeError, ValueError):
        return False
    if pid == os.getpid() and host in (None, fileio.host_id()):
        return True
    return fileio.writer_alive(pid, host)


class FolderLock:
    """The lock of one folder (see the module docstring); a context manager.

    Args:
        folder: the folder written under the lock (it need not exist).
        what: how messages name the folder (``"run folder"``).

    Raises (on entering):
        TfsegError: another process holds it; names the folder, the holder and the lock file.
    """

    def __init__(self, folder, what: str = "run folder"):
        self.folder = fileio.fspath(folder)
        self.what = what
        self.path = lock_path(self.folder)
        self.info = holder_info()
        self._fd: Optional[int] = None
        self._held = False
        self._created: list = []  # folders acquire() made for the lock file, deepest first

    # -- taking it
    def acquire(self) -> "FolderLock":
        with fileio.disk_full_names(self.path):
            self._created = _missing_folders(fileio.dirname(self.path))
            fileio.makedirs(fileio.dirname(self.path))
            use_flock = not fileio.is_url(self.path) and _has_flock()
            if not (use_flock and self._acquire_flock()):
                self._acquire_file()
        self._held = True
        return self

    def _refused(self, holder) -> TfsegError:
        return TfsegError(f"{self.folder}: another tfseg process is writing this {self.what} "
                          f"({describe_holder(holder)}); wait until it ends or stop it (its lock: {self.path})")

    def _acquire_flock(self) -> bool:
        """Take the flock; ``False`` when the file system has none (the lock file alone is used)."""
        import fcntl

        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_json(fd)
                os.close(fd)
                raise self._refused(holder) from None
            except OSError as err:
                os.close(fd)
                if err.errno in _NO_FLOCK:
                    return False
                raise
            # The holder before us deletes the file as it lets go: a lock on a deleted file holds nothing.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if not current:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(self.info).encode("utf-8"))
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return True
        raise TfsegError(f"{self.folder}: could not take its lock {self.path} (it keeps being replaced)")

    def _acquire_file(self) -> None:
        holder = self._read()
        if fileio.exists(self.path) and _holder_alive(holder):
            raise self._refused(holder)
        fileio.write_text_atomic(self.path, json.dumps(self.info))
        holder = self._read()  # another process may have written it at the same time: the last write wins
        if not (isinstance(holder, dict) and holder.get("token") == self.info["token"]):
            raise self._refused(holder)

    def _read(self) -> Optional[Dict[str, Any]]:
        try:
            value = json.loads(fileio.read_text(self.path))
        except Exception:  # noqa: BLE001 - missing, half-written or not JSON: no holder named in it
            return None
        return value if isinstance(value, dict) else None

    # -- letting go
    def release(self) -> None:
        """Delete the lock file and let go; folders made for it are removed when nothing else went in."""
        if not self._held:
            return
        self._held = False
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # before unlocking: a process waiting on this file then retries
            os.close(self._fd)
            self._fd = None
        else:
            holder = self._read()
            if isinstance(holder, dict) and holder.get("token") == self.info["token"]:
                with contextlib.suppress(Exception):
                    fileio.remove(self.path)
        for folder in self._created:  # e.g. a run that failed before writing anything leaves no folder
            with contextlib.suppress(Exception):
                if fileio.isdir(folder) and not fileio.listdir(folder):
                    fileio.rmtree(folder)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401 - POSIX only
    except ImportError:
        return False
    return True


def _missing_folders(folder) -> list:
    """``folder`` and the folders above it that do not exist yet, deepest first."""
    missing = []
    while folder and not fileio.exists(folder):
        missing.append(folder)
        parent = fileio.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def _read_json(fd: int) -> Optional[Dict[str, Any]]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        value = json.loads(os.read(fd, 1 << 16).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


@contextlib.contextmanager
def run_lock(run_dir) -> Iterator[FolderLock]:
    """Hold the lock of run folder ``run_dir`` for the block (see the module docstring).

    Raises:
        TfsegError: another process holds it (names the holder: host, pid, since when).
    """
    with FolderLock(run_dir, "run folder") as lock:
        yield lock
