"""One Snakemake process per run; a lock left by a killed process is taken over."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.runlock import LOCK_NAME, RunLockedError, acquire, release


def test_a_live_owner_refuses_a_second_process(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        acquire(tmp_path, pid=sleeper.pid)
        with pytest.raises(RunLockedError, match=f"PID {sleeper.pid}"):
            acquire(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_owner_is_taken_over_and_released(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    acquire(tmp_path, pid=dead.pid)  # as a kill -9 leaves it
    path = acquire(tmp_path)
    assert json.loads(path.read_text())["pid"] != dead.pid
    release(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_reused_pid_is_not_the_owner(tmp_path):
    import os
    import socket

    (tmp_path / LOCK_NAME).write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getppid(), start_time="1")))
    acquire(tmp_path)  # same PID alive, but started at another time: a stale lock
