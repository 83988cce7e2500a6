"""tfseg.fileio, tfseg.outputs and tfseg.locks at their edges, without models (fast: tools/mutate.py runs them).

The end-to-end cases are tests/test_no_data_loss.py, test_stale_temporaries.py, test_disk_full.py and
test_run_lock.py.
"""

import errno
import json
import os
import socket
import uuid

import pytest
import tensorflow as tf

from tfseg import fileio, outputs
from tfseg.errors import DiskFullError, TfsegError
from tfseg.locks import FolderLock, describe_holder, lock_path

DEAD = 2**22 + 1  # above Linux's largest pid: no such process
HERE = fileio.host_id()
ELSEWHERE = "0" * 8 if HERE != "0" * 8 else "1" * 8


def ram(name):
    """A fresh ``ram://`` folder (stands in for a bucket: renames are copies there)."""
    return f"ram://fileio-{name}-{uuid.uuid4().hex[:8]}"


def write(path, text="x"):
    fileio.makedirs(fileio.dirname(path))
    with fileio.open_file(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- writers and temporaries
def test_writers_are_named_by_pid_and_host():
    assert fileio.writer_tag() == f"{os.getpid()}@{HERE}"
    assert len(HERE) == 8 and int(HERE, 16) >= 0
    assert fileio.temp_writer(".a.tmp-12@0123abcd-ff.png") == (12, "0123abcd")
    assert fileio.temp_writer(".a.tmp-12-ff.png") == (12, None)
    assert fileio.temp_writer(".a.tmp-xyz.png") is None and fileio.temp_writer("a.png") is None


def test_who_counts_as_still_writing():
    assert fileio.writer_alive(os.getppid()) and fileio.writer_alive(os.getppid(), HERE)
    assert not fileio.writer_alive(DEAD) and not fileio.writer_alive(DEAD, HERE)
    assert fileio.writer_alive(DEAD, ELSEWHERE)  # another machine cannot be asked
    assert not fileio.writer_alive(os.getpid())  # this process: what it left is from a failed call


@pytest.mark.parametrize("name, temporary", [
    ("model.keras", ".model.tmp-1@0123abcd-a1b2c3.keras"), ("shk", ".shk.tmp-1@0123abcd-a1b2c3"),
    ("shk.v2", ".shk.tmp-1@0123abcd-a1b2c3.v2"), ("a.b.c", ".a.tmp-1-a1b2c3.b.c"),
])
def test_temporaries_belong_to_exactly_one_name(name, temporary):
    assert fileio.is_temporary(temporary) and fileio.is_temporary_of(temporary, name)
    for other in ("model", "shk.v3", "shk-old", "a.b", "x" + name, name + "x"):
        if other != name:
            assert not fileio.is_temporary_of(temporary, other), other
    assert not fileio.is_temporary(name) and not fileio.is_temporary("a.tmp-1-x.png")


def test_a_temporary_sits_beside_its_file_with_its_extensions(tmp_path):
    path = fileio.temp_path(str(tmp_path / "model.weights.h5"))
    assert os.path.dirname(path) == str(tmp_path) and path.endswith(".weights.h5")
    assert fileio.is_temporary_of(os.path.basename(path), "model.weights.h5")
    assert fileio.temp_path("gs://b/run/") .startswith("gs://b/.run.tmp-")


def test_stale_temporaries_on_a_bucket_are_removed_only_when_this_machines_writer_ended():
    folder = ram("stale")
    names = {f".a.tmp-{DEAD}@{HERE}-aa.png": False, f".a.tmp-{DEAD}@{ELSEWHERE}-aa.png": True,
             f".a.tmp-{DEAD}-aa.png": True, f".a.tmp-{os.getppid()}@{HERE}-aa.png": True, "a.png": True}
    for name in names:
        write(fileio.join(folder, name))
    removed = fileio.remove_stale_temporaries(folder)
    assert removed == [fileio.join(folder, f".a.tmp-{DEAD}@{HERE}-aa.png")]
    assert sorted(fileio.listdir(folder)) == sorted(name for name, kept in names.items() if kept)
    assert fileio.remove_stale_temporaries(fileio.join(folder, "missing")) == []


def test_stale_temporaries_of_one_name_only(tmp_path):
    for name in (f".a.tmp-{DEAD}-aa.png", f".b.tmp-{DEAD}-aa.png", f".a.tmp-{DEAD}-aa"):
        write(str(tmp_path / name))
    assert fileio.remove_stale_temporaries(str(tmp_path), of="a.png") == [str(tmp_path / f".a.tmp-{DEAD}-aa.png")]
    assert sorted(os.listdir(tmp_path)) == [f".a.tmp-{DEAD}-aa", f".b.tmp-{DEAD}-aa.png"]


# --------------------------------------------------------------------------- atomic writes
def test_an_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "a.json")
    fileio.write_json_atomic(path, {"x": 1})
    with pytest.raises(ZeroDivisionError):
        with fileio.atomic_path(path) as tmp:
            write(tmp, "half")
            1 / 0
    assert fileio.read_json(path) == {"x": 1} and os.listdir(tmp_path) == ["a.json"]
    with fileio.atomic_path(str(tmp_path / "d")) as tmp:  # a folder
        write(fileio.join(tmp, "f"), "y")
    assert fileio.read_text(str(tmp_path / "d" / "f")) == "y"


def test_json_helpers(tmp_path):
    import numpy as np

    assert fileio.read_json(str(tmp_path / "none.json")) is None
    fileio.write_json_atomic(str(tmp_path / "n.json"), {"b": np.float32(0.5), "a": np.arange(2)})
    assert fileio.read_text(str(tmp_path / "n.json")) == '{\n  "a": [\n    0,\n    1\n  ],\n  "b": 0.5\n}\n'
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TfsegError, match="bad.json: damaged JSON file"):
        fileio.read_json(str(tmp_path / "bad.json"))
    with pytest.raises(TypeError):
        fileio.to_json({"x": object()})


# --------------------------------------------------------------------------- the one folder rule
@pytest.mark.parametrize("where", ["local", "bucket"])
def test_replacing_a_folder_publishes_it_whole_with_its_marker_last(tmp_path, where):
    parent = str(tmp_path) if where == "local" else ram("replace")
    target = fileio.join(parent, "shards")
    stale = fileio.join(parent, f".shards.tmp-{DEAD}@{HERE}-abc")
    live = fileio.join(parent, f".shards.tmp-{os.getppid()}@{HERE}-abc")
    for folder in (stale, live):
        write(fileio.join(folder, "x"))
    write(fileio.join(target, "old.txt"), "old")
    write(fileio.join(target, "manifest.json"), "old")
    with fileio.replacing_folder(target, "manifest.json") as staging:
        assert fileio.basename(staging).startswith(".shards.tmp-") and fileio.dirname(staging) == parent
        write(fileio.join(staging, "data.txt"), "new")
        write(fileio.join(staging, "manifest.json"), "new")
    assert sorted(fileio.listdir(target)) == ["data.txt", "manifest.json"]
    assert fileio.read_text(fileio.join(target, "manifest.json")) == "new"
    assert not fileio.exists(stale) and fileio.exists(live)  # a running writer's staging folder stays
    assert sorted(fileio.listdir(parent)) == sorted([fileio.basename(live), "shards"])


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_a_failed_replacement_leaves_the_old_folder(tmp_path, where):
    parent = str(tmp_path) if where == "local" else ram("failed")
    target = fileio.join(parent, "v1")
    write(fileio.join(target, "saved_model.pb"), "old")
    with pytest.raises(RuntimeError):
        with fileio.replacing_folder(target, "saved_model.pb") as staging:
            write(fileio.join(staging, "saved_model.pb"), "new")
            raise RuntimeError("export failed")
    assert fileio.listdir(parent) == ["v1"] and fileio.read_text(fileio.join(target, "saved_model.pb")) == "old"


def test_keeping_the_old_folder_moves_it_aside(tmp_path):
    target, aside = str(tmp_path / "run"), str(tmp_path / "run.old-1")
    write(fileio.join(target, "config.json"), "old")
    with fileio.replacing_folder(target, "config.json", keep_old=aside) as staging:
        write(fileio.join(staging, "config.json"), "new")
    assert fileio.read_text(fileio.join(aside, "config.json")) == "old"
    assert fileio.read_text(fileio.join(target, "config.json")) == "new"
    assert sorted(os.listdir(tmp_path)) == ["run", "run.old-1"]


def test_on_a_bucket_the_old_marker_goes_first_and_the_new_one_comes_last(monkeypatch):
    parent = ram("order")
    # (not "run.old": TensorFlow's ram:// lists "run" with "run.old/..." in it, which gs:// does not)
    target, aside = fileio.join(parent, "run"), fileio.join(parent, "old-run")
    for name in ("a.txt", "config.json", "z.txt"):
        write(fileio.join(target, name), "old")
    moves = []
    real = tf.io.gfile.rename

    def rename(source, destination, overwrite=False):
        moves.append((fileio.basename(source), destination.split("/")[-2]))
        real(source, destination, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    with fileio.replacing_folder(target, "config.json", keep_old=aside) as staging:
        for name in ("config.json", "b.txt", "y.txt"):
            write(fileio.join(staging, name), "new")
    out_of_old = [name for name, into in moves if into == "old-run"]
    into_new = [name for name, into in moves if into == "run"]
    assert out_of_old[0] == "config.json" and sorted(out_of_old) == ["a.txt", "config.json", "z.txt"]
    assert into_new[-1] == "config.json" and sorted(into_new) == ["b.txt", "config.json", "y.txt"]


def test_a_rename_that_fails_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = str(tmp_path / "1")
    write(fileio.join(target, "saved_model.pb"), "old")
    staging = str(tmp_path / ".1.tmp-1-abc")
    write(fileio.join(staging, "saved_model.pb"), "new")
    real, calls = fileio.rename, []

    def rename(source, destination, **kwargs):
        calls.append(source)
        if source == staging:
            raise OSError(errno.EIO, "I/O error")
        return real(source, destination, **kwargs)

    monkeypatch.setattr(fileio, "rename", rename)
    with pytest.raises(OSError):
        fileio.publish_folder(staging, target, "saved_model.pb")
    assert fileio.read_text(fileio.join(target, "saved_model.pb")) == "old" and len(calls) == 3


# --------------------------------------------------------------------------- a full disk
@pytest.mark.parametrize("error, full", [
    (OSError(errno.ENOSPC, "No space left on device"), True), (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (tf.errors.ResourceExhaustedError(None, None, "/x/.a.tmp-1-b.png; No space left on device"), True),
    (RuntimeError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')"),
     True),
    (OSError(errno.EACCES, "Permission denied"), False), (RuntimeError("errno = 2, no such file"), False),
    (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"), False), (KeyError("x"), False),
])
def test_a_full_disk_is_recognised_whatever_the_library_raises(error, full):
    assert fileio.is_disk_full(error) is full
    try:  # ... also as the cause or the context of another error
        try:
            raise error
        except Exception as inner:
            raise ValueError("I/O operation on closed file") from inner
    except ValueError as outer:
        assert fileio.is_disk_full(outer) is full


def test_the_disk_full_message_names_the_output_and_the_space(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 1500)
    assert str(fileio.disk_full_error("/r/model.keras", 4_000_000)) == (
        "/r/model.keras: cannot be written, no space left on the device (needs 4.0 MB, 1.5 KB free: 4.0 MB "
        "missing); free some space and run the same command again")
    assert "(1.5 KB free there)" in str(fileio.disk_full_error("/r/model.keras"))
    monkeypatch.setattr(fileio, "free_bytes", lambda path: None)
    assert "(the storage is full or over its quota)" in str(fileio.disk_full_error("gs://b/x", 10))
    assert isinstance(fileio.disk_full_error("x"), (DiskFullError, TfsegError, OSError))


@pytest.mark.parametrize("count, text", [(0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 KB"), (1_500_000, "1.5 MB"),
                                         (2_000_000_000, "2.0 GB")])
def test_sizes_read_as_a_person_writes_them(count, text):
    assert fileio.describe_size(count) == text


def test_free_space_is_that_of_the_nearest_existing_folder(tmp_path):
    assert fileio.free_bytes(str(tmp_path / "not" / "yet" / "x.png")) == fileio.free_bytes(str(tmp_path)) > 0
    assert fileio.free_bytes("gs://b/x") is None


def test_a_write_on_a_full_disk_names_the_output_not_its_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "mask.png")
    real = fileio.open_file

    def full(name, mode="r"):
        if "w" in mode:
            raise tf.errors.ResourceExhaustedError(None, None, f"{name}; No space left on device")
        return real(name, mode)

    monkeypatch.setattr(fileio, "open_file", full)
    monkeypatch.setattr(fileio, "free_bytes", lambda p: 10)
    with pytest.raises(DiskFullError) as raised:
        fileio.write_bytes_atomic(path, b"x" * 2000)
    assert str(raised.value).startswith(f"{path}: cannot be written, no space left on the device (needs 2.0 KB, "
                                        "10 bytes free: 1.99 KB missing)"[:80])
    assert os.listdir(tmp_path) == []
    with pytest.raises(KeyError):  # anything else passes through unchanged
        with fileio.disk_full_names(path):
            raise KeyError("x")


def test_room_is_checked_before_a_write_that_cannot_fail_halfway(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 100)
    fileio.check_room(str(tmp_path / "a.h5"), 100)
    with pytest.raises(DiskFullError, match="a.h5: cannot be written"):
        fileio.check_room(str(tmp_path / "a.h5"), 101)
    monkeypatch.setattr(fileio, "free_bytes", lambda path: None)
    fileio.check_room("gs://b/a.h5", 10**12)


# --------------------------------------------------------------------------- paths and queries
def test_urls_stay_urls():
    assert fileio.join("gs://b/run", "a", 1) == "gs://b/run/a/1"
    assert fileio.dirname("gs://b/run/") == "gs://b" and fileio.basename("gs://b/run/") == "run"
    assert fileio.abspath("gs://b/x") == "gs://b/x" and fileio.fspath("~/x") == os.path.expanduser("~/x")
    assert fileio.stem("a/b.c.png") == "b.c" and fileio.is_url("ram://x") and not fileio.is_url("/x")


def test_an_unreachable_bucket_is_named_unreachable(monkeypatch):
    message = ("Error executing an HTTP request: libcurl code 6 meaning 'Could not resolve hostname', error "
               "details: Could not resolve host: www.googleapis.com\n\t when reading metadata of gs://b/x")

    def unreachable(path, *args, **kwargs):
        raise tf.errors.FailedPreconditionError(None, None, message)

    monkeypatch.setattr(tf.io.gfile, "exists", unreachable)
    monkeypatch.setattr(tf.io.gfile, "isdir", lambda path: False)
    for query in (fileio.exists, fileio.isdir, fileio.isfile):
        with pytest.raises(TfsegError, match=r"^gs://b/x: cannot reach the storage \(Could not resolve host: "
                                             r"www.googleapis.com\); check"):
            query("gs://b/x")
    assert not fileio.is_unreachable(tf.errors.NotFoundError(None, None, "libcurl: gs://b/x not found"))
    with pytest.raises(tf.errors.FailedPreconditionError):  # a local path's errors are left as they are
        fileio.exists("/x")


def test_writable_and_listing(tmp_path):
    write(str(tmp_path / "b"))
    write(str(tmp_path / "a" / "c"))
    assert fileio.listdir(str(tmp_path)) == ["a", "b"] and fileio.writable(str(tmp_path)) and fileio.writable("gs://b")
    assert fileio.isfile(str(tmp_path / "b")) and not fileio.isfile(str(tmp_path / "a"))
    assert fileio.size(str(tmp_path / "b")) == 1 and fileio.glob(str(tmp_path / "*")) == [str(tmp_path / "a"),
                                                                                        str(tmp_path / "b")]


# --------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("path, folder, inside", [
    ("/d/run2", "/d/run", False), ("/d/run/x", "/d/run", True), ("/d/run", "/d/run/", True), ("/d", "/d/run", False),
    ("gs://b/run2", "gs://b/run", False), ("gs://b/run/x", "gs://b/run", True), ("gs://b/run/", "gs://b/run", True),
])
def test_inside_means_the_folder_or_below_it(path, folder, inside):
    assert outputs.is_within(path, folder) is inside


def test_a_run_folder_and_its_subfolders_are_trains_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert not outputs.is_run_folder(str(run))  # a project's own config.json
    (run / "config.json").write_text(json.dumps({"model": "unet", "data": "synthetic", "epochs": 1}))
    assert outputs.is_run_folder(str(run))
    (run / "config.json").write_text("{")  # damaged, beside a run file
    (run / "history.csv").write_text("epoch\n")
    assert outputs.is_run_folder(str(run)) and not outputs.is_run_folder(str(tmp_path / "none"))
    for inside in (run, run / "saved_model" / "1", run / "backup", run / "logs" / "x"):
        assert outputs.owning_run_folder(str(inside)) == str(run)
        with pytest.raises(TfsegError, match="only tfseg train writes there"):
            outputs.refuse_run_folder(str(inside))
    for outside in (tmp_path / "run2", run / "eval", tmp_path):
        assert outputs.owning_run_folder(str(outside)) is None
        outputs.refuse_run_folder(str(outside))
    with pytest.raises(TfsegError, match=r"out .*run: is the training run folder"):
        outputs.refuse_run_folder(str(run))
    with pytest.raises(TfsegError, match=r"out .*backup: is inside the training run folder"):
        outputs.refuse_run_folder(str(run / "backup"))


def test_an_output_folder_is_checked_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    outputs.check_output_folder(str(tmp_path / "new" / "deeper"))
    with pytest.raises(TfsegError, match=r"notes.txt: exists and is not a folder$"):
        outputs.check_output_folder(str(tmp_path / "notes.txt"))
    with pytest.raises(TfsegError, match=r"notes.txt/sub: .*notes.txt is a file$"):
        outputs.check_output_folder(str(tmp_path / "notes.txt" / "sub"))


def test_the_marker_claims_sets_and_keeps_earlier_claims(tmp_path):
    folder = str(tmp_path)
    assert outputs.claimed(folder) == {} and outputs.unfinished(folder) == []
    outputs.claim(folder, ["a.png"], "tfseg predict")
    outputs.claim(folder, ["b.png"], "tfseg export")
    assert outputs.claimed(folder) == {"a.png": "tfseg predict", "b.png": "tfseg export"}
    (tmp_path / "a.png").write_text("old")
    (tmp_path / "mine.png").write_text("user")
    outputs.begin_set(folder, ["a.png", "mine.png", "c.png"], "tfseg predict")
    assert not (tmp_path / "a.png").exists() and (tmp_path / "mine.png").read_text() == "user"  # only tfseg's go
    assert outputs.unfinished(folder) == ["a.png", "c.png", "mine.png"] and "b.png" in outputs.claimed(folder)
    outputs.finish_set(folder, ["a.png", "c.png"])
    assert outputs.unfinished(folder) == ["mine.png"]
    (tmp_path / outputs.MARKER).write_text("{")
    assert outputs.claimed(folder) == {} and outputs.unfinished(folder) == []


def test_targets_are_refused_unless_safe(tmp_path):
    folder = str(tmp_path)
    outputs.claim(folder, ["a.png", "b.png"], "tfseg predict")
    for name in ("a.png", "b.png", "user.png"):
        (tmp_path / name).write_text("x")
    outputs.check_targets(folder, ["a.png", "b.png", "new.png"], overwrite=True)
    with pytest.raises(TfsegError, match=r"a.png \(and 1 more\): exists \(written by tfseg\); pass --overwrite"):
        outputs.check_targets(folder, ["a.png", "b.png"], overwrite=False)
    with pytest.raises(TfsegError, match=r"user.png: exists and was not written by tfseg"):
        outputs.check_targets(folder, ["a.png", "user.png"], overwrite=True)
    with pytest.raises(TfsegError, match=r"a.png: is one of the inputs"):
        outputs.check_targets(folder, ["a.png"], overwrite=True, inputs=[str(tmp_path / "a.png")])
    outputs.begin_set(folder, ["b.png"], "tfseg predict")  # an unfinished set: the same command finishes it
    (tmp_path / "b.png").write_text("half")
    outputs.check_targets(folder, ["b.png"], overwrite=False)
    outputs.check_targets(folder, ["user.png"], overwrite=True, owned=lambda path: True)


def test_no_output_inside_a_folder_a_source_reads(tmp_path):
    class Source:
        spec = type("Spec", (), {"text": "folder:D"})()

        def folders(self):
            return [str(tmp_path / "D" / "images"), str(tmp_path / "D" / "masks")]

    outputs.refuse_inside_source(str(tmp_path / "D" / "masks2"), Source())
    outputs.refuse_inside_source(str(tmp_path / "D"), Source())
    with pytest.raises(TfsegError, match=r"^out .*D/masks/x: is inside .*D/masks, which the data source 'folder:D'"):
        outputs.refuse_inside_source(str(tmp_path / "D" / "masks" / "x"), Source())


# --------------------------------------------------------------------------- locks
def test_the_lock_sits_beside_the_folder():
    assert lock_path("/r/runs/a") == "/r/runs/.a.tfseg-lock" == lock_path("/r/runs/a/")
    assert lock_path("gs://b/runs/a/") == "gs://b/runs/.a.tfseg-lock"
    assert describe_holder({"host": "h", "pid": 3, "since": "t", "command": "tfseg train"}) == \
        "host h, pid 3, since t (tfseg train)"
    assert describe_holder({"pid": 3}) == "host ?, pid 3, since ?" and "not written" in describe_holder(None)


def test_a_local_lock_is_held_until_released_and_names_this_process(tmp_path):
    run = str(tmp_path / "runs" / "a")
    with FolderLock(run) as lock:
        held = json.loads(open(lock_path(run)).read())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["host_id"] == HERE
        assert held == lock.info and held["since"]
        with pytest.raises(TfsegError) as refused:
            FolderLock(run, "shard folder").acquire()
        assert str(refused.value).startswith(f"{run}: another tfseg process is writing this shard folder "
                                             f"(host {socket.gethostname()}, pid {os.getpid()}, since ")
    assert not os.path.exists(lock_path(run)) and not os.path.exists(tmp_path / "runs")  # made for it, removed
    lock = FolderLock(run)
    lock.release()  # never taken: nothing happens
    os.makedirs(tmp_path / "runs")
    with FolderLock(run):
        pass
    assert os.listdir(tmp_path / "runs") == []  # a folder that was there stays


def test_without_flock_the_lock_file_decides(tmp_path, monkeypatch):
    import tfseg.locks as locks

    monkeypatch.setattr(locks, "_has_flock", lambda: False)
    run = str(tmp_path / "a")
    path = lock_path(run)
    fileio.write_text_atomic(path, json.dumps({"pid": DEAD, "host_id": HERE}))
    with FolderLock(run):
        assert json.loads(open(path).read())["pid"] == os.getpid()
        with pytest.raises(TfsegError):
            FolderLock(run).acquire()
    assert not os.path.exists(path)
    fileio.write_text_atomic(path, "{")  # unreadable: nobody holds it by this file
    with FolderLock(run):
        pass
    fileio.write_text_atomic(path, json.dumps({"pid": os.getppid(), "host_id": HERE, "host": "h", "since": "s"}))
    with pytest.raises(TfsegError, match=f"pid {os.getppid()}, since s"):
        FolderLock(run).acquire()
    assert json.loads(open(path).read())["pid"] == os.getppid()  # a refused lock leaves the holder's file


def test_a_lock_written_over_by_another_process_is_lost(tmp_path, monkeypatch):
    # Two processes writing the lock file at once (a bucket): the one whose write is read back goes on.
    import tfseg.locks as locks

    monkeypatch.setattr(locks, "_has_flock", lambda: False)
    run = str(tmp_path / "a")
    real = fileio.write_text_atomic

    def raced(path, text):
        real(path, text)
        real(path, json.dumps({"pid": os.getppid(), "host_id": HERE, "token": "theirs"}))

    monkeypatch.setattr(fileio, "write_text_atomic", raced)
    with pytest.raises(TfsegError, match=f"pid {os.getppid()}"):
        FolderLock(run).acquire()
