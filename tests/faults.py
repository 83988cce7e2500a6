"""Fault injection at tfseg's file operations, for tests/test_crash_points.py and tests/test_disk_full.py.

:func:`inject_faults` counts every operation that changes files (a rename, a delete, a folder made,
a file opened for writing, Keras saving a model or weights, a SavedModel or TFLite file written,
a TFRecord shard opened, a figure, a folder published) and makes the N-th one fail before it
happens. A *write* fails as a full disk makes it fail, with the error that library raises there
(:func:`disk_full_error`: h5py and zipfile name no file, TensorFlow names the temporary); any
other operation fails with :class:`InjectedFault` (a crash at that point).
"""

from __future__ import annotations

import errno

import keras
import tensorflow as tf

from tfseg import fileio, viz


class InjectedFault(Exception):
    pass


def _opened_for_writing(path, mode="r"):
    return any(flag in mode for flag in "wa+")


def disk_full_error(name: str, args) -> Exception:
    """What a write of ``name`` raises when the disk is full, as the real library words it."""
    path = next((str(a) for a in args if isinstance(a, str)), "")
    if name.endswith("save_weights"):  # h5py: a RuntimeError, errno only in the text
        return RuntimeError(f"Can't write data (file write failed: time = now, filename = '{path}', file "
                            "descriptor = 3, errno = 28, error message = 'No space left on device')")
    if name.endswith(("Model.save", "Model.export")):  # zipfile / the TFLite converter: no file name
        return OSError(errno.ENOSPC, "No space left on device")
    return tf.errors.ResourceExhaustedError(None, None, f"{path}; No space left on device")  # tf.io.gfile


def _wrap(counter, function, name, write, is_counted=lambda *args, **kwargs: True):
    def wrapper(*args, **kwargs):
        if is_counted(*args, **kwargs):
            counter["calls"] += 1
            counter["seen"].append(name)
            if counter["calls"] == counter["fail_at"]:
                counter["failed"] = f"file operation {counter['calls']} ({name})"
                if write and counter["disk_full"]:
                    counter["failed"] = f"disk full at {counter['failed']}"
                    raise disk_full_error(name, args)
                raise InjectedFault(counter["failed"])
        return function(*args, **kwargs)

    return wrapper


class _CountedRecordWriter:
    """``tf.io.TFRecordWriter`` whose creation (a new shard file) is a write point."""

    counter = None
    real = None

    def __init__(self, path, *args, **kwargs):
        _wrap(self.counter, lambda *_: None, "TFRecordWriter", True)(path)
        self._writer = type(self).real(path, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._writer, name)

    def __enter__(self):  # special methods are looked up on the class, not through __getattr__
        self._writer.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._writer.__exit__(*exc_info)


def inject_faults(monkeypatch, fail_at, disk_full=True):
    """Count (and fail at the ``fail_at``-th of) every file operation; returns the counter.

    ``counter["calls"]``: operations seen (``counter["seen"]``: their names, in order);
    ``counter["failed"]``: what failed (missing when none did).
    ``disk_full``: writes fail as on a full disk (else every operation raises :class:`InjectedFault`).
    """
    counter = {"calls": 0, "fail_at": fail_at, "disk_full": disk_full, "seen": []}
    for owner, name, write in [(fileio, "rename", False), (fileio, "remove", False), (fileio, "rmtree", False),
                               (fileio, "makedirs", True), (viz, "save_figure", False),
                               (fileio, "publish_folder", False), (keras.Model, "save", True),
                               (keras.Model, "save_weights", True), (keras.Model, "export", True),
                               (type(keras.export.ExportArchive()), "write_out", True)]:
        function = getattr(owner, name)
        # (keras.export.ExportArchive() is an instance of a backend's class: that class is patched)
        monkeypatch.setattr(owner, name, _wrap(counter, function, f"{owner.__name__}.{name}", write))
    monkeypatch.setattr(fileio, "open_file",
                        _wrap(counter, fileio.open_file, "open_file", True, _opened_for_writing))
    writer = type("CountedRecordWriter", (_CountedRecordWriter,), {"counter": counter, "real": tf.io.TFRecordWriter})
    monkeypatch.setattr(tf.io, "TFRecordWriter", writer)
    return counter
