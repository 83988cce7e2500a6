"""One writer per run folder (tfseg/locks.py): a second process is refused naming the holder,
a killed holder's lock is taken over, and a run that fails early leaves nothing behind."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tfseg import cli, fileio
from tfseg.config import TrainConfig
from tfseg.errors import TfsegError
from tfseg.locks import FolderLock, lock_path

from conftest import write_folder_dataset

TINY = ["--image-size", "16", "--base-filters", "2", "--depth", "1", "--batch-size", "8", "--patience", "20"]
DEAD = 2**22 + 1  # above Linux's largest pid: no such process

# Holds the lock of argv[1] until killed (sys.argv[0] = "tfseg": tfseg imports without Keras, as the command does).
HOLDER = """
import sys, time
sys.argv[0] = "tfseg"
from tfseg.locks import FolderLock
FolderLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_lock(folder):
    """A process that holds ``folder``'s lock (kill it to let go)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.stdout.readline().strip() == "held"
    return process


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(tmp_path):
    run = str(tmp_path / "run")
    holder = hold_lock(run)
    try:
        with pytest.raises(TfsegError) as refused:
            FolderLock(run).acquire()
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and f"host {socket.gethostname()}" in message, message
        assert "since " in message and lock_path(run) in message and message.count("\n") == 0, message
    finally:
        kill(holder)  # kill -9: the lock file stays, naming a process that is gone
    assert os.path.exists(lock_path(run))
    with FolderLock(run) as lock:
        assert json.loads(open(lock_path(run)).read())["pid"] == os.getpid() == lock.info["pid"]
        with pytest.raises(TfsegError):  # a second lock in the same process is refused too
            FolderLock(run).acquire()
    assert not os.path.exists(lock_path(run)) and not os.path.exists(run)


def fake_run(folder):
    """An interrupted run of the settings of :data:`TINY` (the same command would resume it)."""
    config = TrainConfig(data="synthetic:24", out=str(folder), epochs=1, image_size=16, base_filters=2, depth=1,
                         batch_size=8, patience=20)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config.to_json())
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,loss\n1,0.5\n")
    return config


@pytest.mark.parametrize("force_new", [False, True])
def test_train_and_force_new_are_refused_while_another_process_writes_the_run(tmp_path, capsys, force_new):
    run = str(tmp_path / "run")
    fake_run(run)
    before = sorted(os.listdir(run))
    holder = hold_lock(run)
    try:
        code = cli.main(["train", "--data", "synthetic:24", "--out", run, "--epochs", "2", *TINY,
                         *(["--force-new"] if force_new else [])])
    finally:
        kill(holder)
    err = capsys.readouterr().err
    assert code == 2 and f"pid {holder.pid}" in err and err.count("\n") == 1, err
    assert sorted(os.listdir(run)) == before and sorted(os.listdir(tmp_path)) == sorted(
        ["run", os.path.basename(lock_path(run))])  # not moved aside, nothing new


def test_a_run_that_fails_before_writing_leaves_no_folder_and_no_lock(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "run"
    code = cli.main(["train", "--data", f"folder:{tmp_path / 'missing'}", "--out", str(out), *TINY])
    assert code == 2, capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_on_a_store_without_locks_the_lock_file_names_its_holder():
    # gs:// has no flock: the lock file alone is the lock (ram:// stands in for it).
    run = "ram://run-lock-test/runs/a"
    path = lock_path(run)
    here = fileio.host_id()

    def planted(pid, host):
        fileio.write_text_atomic(path, json.dumps({"pid": pid, "host_id": host, "host": "h", "since": "then"}))

    planted(DEAD, here)  # a process of this machine that is gone: taken over
    with FolderLock(run):
        assert json.loads(fileio.read_text(path))["pid"] == os.getpid()
        with pytest.raises(TfsegError):  # held by this process: a second lock is refused
            FolderLock(run).acquire()
    assert not fileio.exists(path)
    for pid, host in [(os.getppid(), here), (DEAD, "0" * 8 if here != "0" * 8 else "1" * 8)]:
        planted(pid, host)  # still running here, or on another machine (which cannot be asked)
        with pytest.raises(TfsegError) as refused:
            FolderLock(run).acquire()
        assert f"pid {pid}" in str(refused.value) and path in str(refused.value)
    fileio.remove(path)


# Waits until the file argv[1] exists, then runs `tfseg argv[2:]` (both processes import TensorFlow first).
TOGETHER = """
import os, sys, time
go, args = sys.argv[1], sys.argv[2:]
sys.argv = ["tfseg", *args]
from tfseg import cli
import tensorflow
open(go + "." + str(os.getpid()), "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
sys.exit(cli.main(args))
"""


@pytest.mark.slow
def test_two_trains_started_together_on_one_run_folder_one_is_refused(tmp_path):
    data = write_folder_dataset(str(tmp_path / "data"), count=16, size=16)
    run = str(tmp_path / "run")
    go = str(tmp_path / "go")
    args = ["train", "--data", data, "--out", run, "--epochs", "3", "--quiet", *TINY]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [subprocess.Popen([sys.executable, "-c", TOGETHER, go, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    import time

    deadline = time.time() + 600
    while sum(name.startswith("go.") for name in os.listdir(tmp_path)) < 2 and time.time() < deadline:
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.05)
    open(go, "w").close()  # both ready: start them at the same moment
    results = [(p.wait(timeout=600), *p.communicate()) for p in processes]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    winner = next(p.pid for p, (code, _, _) in zip(processes, results) if code == 0)
    assert f"pid {winner}" in refused and "another tfseg process is writing" in refused, refused
    with open(os.path.join(run, "history.csv")) as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["1", "2", "3"]
