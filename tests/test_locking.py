import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

import jaxdd.locking
from jaxdd.checkpoint import Checkpointer
from jaxdd.errors import JaxddError
from jaxdd.locking import (
    LOCK_FILE,
    DirectoryLock,
    DirectoryLockedError,
    atomic_write_bytes,
    atomic_write_text,
)

# Takes the lock of argv[2], says so, and holds it until its stdin closes. It
# registers the package without running its __init__ (which imports JAX), so
# it starts in a fraction of a second.
HOLDER = """
import sys, types
package = types.ModuleType("jaxdd")
package.__path__ = [sys.argv[1]]
sys.modules["jaxdd"] = package
from jaxdd.locking import DirectoryLock
lock = DirectoryLock(sys.argv[2]).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def stop(proc: subprocess.Popen) -> None:
    """Lets the holder exit normally (stdin closed) and waits for it."""
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the lock of `tmp_path` (killed at teardown if still up)."""
    package = pathlib.Path(jaxdd.locking.__file__).parent
    command = [sys.executable, "-c", HOLDER, str(package), str(tmp_path)]
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True) as proc:
        try:
            assert proc.stdout.readline() == "locked\n"
            yield proc
        finally:
            proc.kill()


def test_lock_held_by_another_process_names_it(tmp_path, holder):
    with pytest.raises(DirectoryLockedError) as info:
        DirectoryLock(tmp_path).acquire()
    message = str(info.value)
    assert isinstance(info.value, JaxddError) and "\n" not in message
    assert info.value.pid == holder.pid and info.value.directory == tmp_path
    assert message.startswith(f"{tmp_path} is in use by process {holder.pid};")


@pytest.mark.parametrize("ending", ["exits", "is killed"])
def test_lock_is_free_once_the_holder_ends(tmp_path, holder, ending):
    if ending == "exits":
        stop(holder)
    else:
        holder.kill()
        holder.wait(timeout=30)
    with DirectoryLock(tmp_path) as lock:
        assert lock.held and lock.holder() == os.getpid()
    assert not lock.held and (tmp_path / LOCK_FILE).read_text() == ""


def test_waiting_lock_gets_it_when_the_holder_exits(tmp_path, holder):
    waited_for = []
    threading.Timer(0.5, holder.stdin.close).start()
    start = time.monotonic()
    with DirectoryLock(tmp_path, timeout=None, on_wait=waited_for.append) as lock:
        assert lock.held and lock.holder() == os.getpid()
    assert time.monotonic() - start >= 0.5  # not before the holder was told to let go
    assert holder.wait(timeout=30) == 0
    assert waited_for == [holder.pid]


def test_waiting_lock_times_out(tmp_path, holder):
    start = time.monotonic()
    with pytest.raises(DirectoryLockedError, match=rf"process {holder.pid} \(waited 0.3 s\)"):
        DirectoryLock(tmp_path, timeout=0.3).acquire()
    assert time.monotonic() - start >= 0.3
    assert holder.poll() is None


def test_checkpointer_under_a_held_lock_never_starts(tmp_path, holder):
    # The holder's half-written step: a second process must not clean it up.
    partial = tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1"
    partial.mkdir(parents=True)
    with pytest.raises(DirectoryLockedError), DirectoryLock(tmp_path):
        Checkpointer(tmp_path / "checkpoints")
    assert partial.exists()


def test_lock_within_one_process(tmp_path):
    directory = tmp_path / "new" / "run"
    lock = DirectoryLock(directory)
    with lock:
        assert (directory / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
        with pytest.raises(DirectoryLockedError, match=f"process {os.getpid()}"):
            DirectoryLock(directory).acquire()
    lock.release()  # releasing twice is harmless
    with DirectoryLock(directory):
        pass


def test_negative_timeout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        DirectoryLock(tmp_path, timeout=-1)


def test_atomic_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, '{"a": 1}')
    atomic_write_text(path, '{"b": 2}')
    assert path.read_text() == '{"b": 2}'
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["config.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]
