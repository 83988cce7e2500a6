"""What tfseg may write, replace and delete: its own outputs, never a user's file.

The rule every verb follows (``docs/reliability.md``):

- tfseg deletes or replaces only what it wrote itself and can recognise as its own:
  a run folder (``config.json`` with the run's other files), a shard folder
  (``manifest.json`` naming its shards), a SavedModel version with tfseg's serving
  signatures, and the files an output folder's marker :data:`MARKER` lists;
- it replaces an existing output only with an explicit ``overwrite`` (``--overwrite``);
- it never writes over one of its inputs;
- only ``tfseg train`` writes into a run folder: other verbs refuse the run folder
  itself and train's own sub-folders (``backup/``, ``saved_model/``, ``logs/``); a new
  sub-folder of their own (``RUN_DIR/eval``) is fine.

Anything else raises :class:`~tfseg.errors.TfsegError` naming the path (exit code 2),
before anything is written.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_targets(folder, ["a_mask.png"], overwrite=False)   # nothing there yet: fine
    >>> claim(folder, ["a_mask.png"], "tfseg predict")
    >>> sorted(claimed(folder))
    ['a_mask.png']
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Sequence

from tfseg import fileio
from tfseg.errors import TfsegError

# Lists the files tfseg wrote into a folder it does not otherwise own (predict/evaluate/export --out).
MARKER = ".tfseg-outputs.json"
# Sub-folders of a run folder that tfseg train writes itself.
RUN_SUBFOLDERS = ("backup", "saved_model", "logs")
# Besides config.json, a run folder holds at least one of these (a project's own config.json is not a run).
RUN_FILES = ("splits.json", "backup", "model.keras", "history.csv", "metrics.json")


# --------------------------------------------------------------------------- run folders
def is_run_folder(path) -> bool:
    """Whether ``path`` is a ``tfseg train`` run folder.

    It holds ``config.json`` and either another run file (:data:`RUN_FILES`) or a
    ``config.json`` that reads as a tfseg configuration (a run that has just started).
    """
    if not fileio.isdir(path) or not fileio.exists(fileio.join(path, "config.json")):
        return False
    if any(fileio.exists(fileio.join(path, name)) for name in RUN_FILES):
        return True
    try:
        values = fileio.read_json(fileio.join(path, "config.json"))
    except TfsegError:
        return False
    return isinstance(values, dict) and {"model", "data", "epochs"} <= set(values)


def _ancestors(path) -> List[str]:
    """``path`` (made absolute) and every folder above it, nearest first."""
    path = fileio.abspath(path).rstrip("/") if fileio.is_url(path) else fileio.abspath(path)
    found = [path]
    while True:
        parent = fileio.dirname(path)
        if not parent or parent == path or parent.endswith(":") or parent.endswith("://"):
            return found
        found.append(parent)
        path = parent


def owning_run_folder(path) -> Optional[str]:
    """The run folder that ``path`` would write into: ``path`` itself, or a folder above it
    when ``path`` is (inside) one of train's sub-folders; ``None`` otherwise."""
    chain = _ancestors(path)
    if is_run_folder(chain[0]):
        return chain[0]
    for below, folder in zip(chain, chain[1:]):
        if fileio.basename(below) in RUN_SUBFOLDERS and is_run_folder(folder):
            return folder
    return None


def refuse_run_folder(path, name: str = "out") -> None:
    """Raise when ``path`` is a run folder or one of train's sub-folders (only ``tfseg train`` writes there).

    Raises:
        TfsegError: names the run folder.
    """
    run = owning_run_folder(path)
    if run is not None:
        where = "is the training run folder" if fileio.abspath(path).rstrip("/") == run.rstrip("/") else \
            f"is inside the training run folder {run}"
        raise TfsegError(f"{name} {path}: {where}; only tfseg train writes there (choose another folder, "
                         "e.g. a new sub-folder such as RUN_DIR/eval)")


# --------------------------------------------------------------------------- where to write
def check_output_folder(path, name: str = "out") -> None:
    """Refuse an output folder that cannot be created or written, before any work is done.

    Raises:
        TfsegError: ``path`` is a file, a folder above it is a file, or (local paths)
            the nearest existing folder is not writable; names the path.
    """
    for folder in _ancestors(path):
        if not fileio.exists(folder):
            continue
        if not fileio.isdir(folder):
            where = "exists and is not a folder" if folder == _ancestors(path)[0] else f"{folder} is a file"
            raise TfsegError(f"{name} {path}: {where}")
        if not fileio.writable(folder):
            raise TfsegError(f"{name} {path}: no permission to write in {folder}")
        return


def file_key(path) -> str:
    """A path's identity for comparisons: symbolic links and ``..`` resolved for local paths."""
    path = fileio.fspath(path)
    return path.rstrip("/") if fileio.is_url(path) else os.path.realpath(path)


def is_within(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or inside it (local paths resolved)."""
    path, folder = fileio.fspath(path), fileio.fspath(folder)
    if not (fileio.is_url(path) or fileio.is_url(folder)):
        path, folder = os.path.realpath(path), os.path.realpath(folder)
    path, folder = path.rstrip("/\\"), folder.rstrip("/\\")
    return path == folder or path.startswith(folder + ("/" if fileio.is_url(folder) else os.sep))


def refuse_inside_source(path, source, name: str = "out") -> None:
    """Refuse to write ``path`` inside a folder the data ``source`` reads its files from.

    An output there would be read back as data (``evaluate --out D/masks`` writes figures
    among the masks). ``source.folders()`` names them (:meth:`tfseg.data.sources.Source.folders`).

    Raises:
        TfsegError: names the folder and the source.
    """
    for folder in source.folders():
        if is_within(path, folder):
            raise TfsegError(f"{name} {path}: is inside {folder}, which the data source {source.spec.text!r} "
                             "reads; tfseg writes no output into a data set (choose a folder outside it)")


# --------------------------------------------------------------------------- the marker
def _marker(folder) -> Dict:
    try:
        values = fileio.read_json(fileio.join(folder, MARKER))
    except TfsegError:
        return {}
    return values if isinstance(values, dict) else {}


def claimed(folder) -> Dict[str, str]:
    """``{file name: writer}`` of the files tfseg wrote into ``folder`` (its :data:`MARKER`)."""
    files = _marker(folder).get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def unfinished(folder) -> List[str]:
    """The files of ``folder`` that a command began to write and has not finished (:func:`begin_set`)."""
    names = _marker(folder).get("unfinished")
    return sorted(str(name) for name in names) if isinstance(names, list) else []


def _write_marker(folder, files: Dict[str, str], pending: Iterable[str]) -> None:
    fileio.makedirs(folder)
    fileio.write_json_atomic(fileio.join(folder, MARKER),
                             {"written_by": "tfseg", "files": files, "unfinished": sorted(set(pending))})


def claim(folder, names: Iterable[str], writer: str) -> None:
    """Record ``names`` as written by ``writer`` in ``folder``'s marker, BEFORE writing them.

    Claiming first means a file an interrupted command left behind is still recognised.
    What the marker already lists (an earlier command's files) is kept.
    """
    files = claimed(folder)
    new = {name: writer for name in names if files.get(name) != writer}
    if new:
        _write_marker(folder, {**files, **new}, unfinished(folder))


def begin_set(folder, names: Sequence[str], writer: str) -> None:
    """Start writing the set of files ``names`` into ``folder`` as one unit (predict's masks, evaluate's files).

    The names are claimed (:func:`claim`) and marked unfinished in the marker, and the
    previous versions of them that tfseg wrote are deleted, all before the first new file is
    written: an interrupted or failed command (a full disk) leaves a set that the marker calls
    unfinished, never a mix of two runs' files. Running the same command again finishes it
    (an unfinished set is replaced without ``--overwrite``); :func:`finish_set` closes it.
    """
    fileio.makedirs(folder)
    fileio.remove_stale_temporaries(folder)
    ours = claimed(folder)
    _write_marker(folder, {**ours, **{name: writer for name in names}}, [*unfinished(folder), *names])
    for name in names:
        if name in ours:
            fileio.remove(fileio.join(folder, name))


def finish_set(folder, names: Sequence[str]) -> None:
    """Mark the set :func:`begin_set` started as complete (its files were all written)."""
    done = set(names)
    _write_marker(folder, claimed(folder), [name for name in unfinished(folder) if name not in done])


def check_targets(folder, names: Sequence[str], overwrite: bool, inputs: Iterable[str] = (),
                  name: str = "out", owned=None) -> None:
    """Refuse to write ``folder/<name>`` for each of ``names`` unless it is safe, before writing any.

    A target is refused when it is one of ``inputs`` (always), when it exists and
    tfseg cannot recognise it as its own (``owned(path)``, default: listed in the
    folder's marker; ``--overwrite`` does not help), or when it exists and
    ``overwrite`` is False (unless it belongs to an unfinished set, :func:`begin_set`,
    which the same command finishes).

    Raises:
        TfsegError: one line naming the first refused path (and how many more there are).
    """
    inputs = {file_key(source) for source in inputs}  # one set: predict may list thousands of images
    ours = claimed(folder)
    owned = owned or (lambda path: fileio.basename(path) in ours)
    pending = set(unfinished(folder))
    problems = {"input": [], "foreign": [], "exists": []}
    for target in (fileio.join(folder, n) for n in names):
        if file_key(target) in inputs:
            problems["input"].append(target)
        elif fileio.exists(target):
            if not owned(target):
                problems["foreign"].append(target)
            elif not overwrite and fileio.basename(target) not in pending:
                problems["exists"].append(target)
    reasons = {
        "input": "is one of the inputs; tfseg never writes over an input (choose another folder)",
        "foreign": "exists and was not written by tfseg; it is left alone (choose another folder, "
                   "or move it away yourself)",
        "exists": "exists (written by tfseg); pass --overwrite (overwrite=True) to replace it",
    }
    for kind, paths in problems.items():
        if paths:
            more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
            raise TfsegError(f"{name} {paths[0]}{more}: {reasons[kind]}")
