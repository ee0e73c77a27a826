"""One Snakemake process per run, and a clean resume after a hard kill.

Snakemake's own directory lock survives ``kill -9`` (or a power loss) and then refuses every
later run until ``--unlock``; the workflow profile next to the Snakefile
(``profiles/default/config.yaml``) therefore turns it off (``nolock``) and turns on
``rerun-incomplete``, and this module takes its place with a lock per run that knows its
owner: ``results/<run>/.vscreen-run.json`` holds the host, PID and start time of the
Snakemake process running it. A second process on a live run is refused with a message
naming the owner; a lock whose process is gone (killed, machine rebooted) is stale and is
taken over, so the documented run command is also the resume command.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from .errors import VscreenError

__all__ = ["RunLockedError", "LOCK_NAME", "acquire", "release", "owner_alive"]

LOCK_NAME = ".vscreen-run.json"


class RunLockedError(VscreenError):
    """Another live process is running the same run."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing ')'
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_alive(record: dict) -> bool:
    """Whether the process that wrote a lock record still runs (a lock of another host counts as alive)."""
    if record.get("host") != socket.gethostname():
        return True
    pid = int(record.get("pid", -1))
    if pid <= 0 or not _alive(pid):
        return False
    started = record.get("start_time")
    return started is None or _start_time(pid) in (None, started)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def acquire(run_dir: str | os.PathLike, pid: int | None = None) -> Path:
    """Take the lock of ``run_dir`` for process ``pid`` (default: this process).

    Returns
    -------
    Path
        The lock file.

    Raises
    ------
    RunLockedError
        When a live process (or one on another host, which cannot be checked) holds it.
    """
    from .io import write_text_atomic

    pid = os.getpid() if pid is None else pid
    path = Path(run_dir) / LOCK_NAME
    held = _read(path)
    if held is not None and int(held.get("pid", -1)) != pid and owner_alive(held):
        raise RunLockedError(
            f"run folder {run_dir} is being written by another Snakemake process (PID {held.get('pid')} on "
            f"{held.get('host')}); wait for it to finish or stop it. If it is gone, delete {path}"
        )
    record = dict(host=socket.gethostname(), pid=pid, start_time=_start_time(pid))
    write_text_atomic(path, json.dumps(record))
    return path


def release(run_dir: str | os.PathLike, pid: int | None = None) -> None:
    """Drop the lock of ``run_dir`` if process ``pid`` (default: this one) holds it."""
    pid = os.getpid() if pid is None else pid
    path = Path(run_dir) / LOCK_NAME
    held = _read(path)
    if held is not None and int(held.get("pid", -1)) == pid and held.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
