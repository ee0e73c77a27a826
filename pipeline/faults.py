"""Fault injection for tests: make one compound crash, hang or fail inside the real code path.

The tests of the reliability contract (``../shared/DESIGN.md``, "Reliability contract")
need a native crash, a hang or an error at a chosen compound, with the real engines
running around it. Stage code calls :func:`inject` just before the engine call of a
compound (inside the isolated worker process, :mod:`pipeline.isolation`, or inside a Dask
task); the environment variable ``VSCREEN_FAULTS`` says where to fire and how.

Format
------
``VSCREEN_FAULTS`` is a ``;``-separated list of ``stage:compound_id:action`` entries::

    VSCREEN_FAULTS="dock:cpd_03:abort;dock:cpd_07:hang;refine:cpd_11:blowup;featurize:cpd_15:kill-once"

``stage``
    The name the caller passes to :func:`inject`. In use: ``prepare`` (before ETKDG
    embedding), ``dock`` (before Vina's search), ``dock-export`` (before meeko rebuilds the
    docked poses), ``refine`` (before minimization and MD), ``refine-md`` (before each MD
    attempt of a pose: the first and its retry), ``featurize`` (Dask tasks), ``active-round`` (an active screen's
    round, id ``round_<r>``, after its batch is saved and before it is docked).
``compound_id``
    The (sanitized) compound id, or ``*`` for every compound of the stage. It may contain
    ``:`` (the action is the text after the last ``:``).
``action``
    ``abort``
        ``os.abort()``: SIGABRT, like a failed assertion in C++ code (a native crash).
    ``kill``
        SIGKILL to the current process (an OOM kill; a lost Dask worker).
    ``exit``
        ``os._exit(70)``: the process ends without Python's clean-up.
    ``hang``
        Sleep forever with SIGTERM and SIGINT ignored, like a native call that never
        returns to the interpreter: only SIGKILL ends it.
    ``raise``
        ``RuntimeError("injected fault ...")``: a Python error of one compound.
    any other name (``blowup``, ``corrupt``, ...)
        Not performed here: :func:`inject` returns the name and the caller makes its own
        computation fail in a way that exercises its real failure path. ``refine``
        understands ``blowup`` (a ligand atom is put onto a protein atom, so the
        simulation's own NaN / energy checks fire in minimization), ``refine-md`` too (that
        attempt's production steps are 50 times too long, so its dynamics blows up for real;
        ``blowup-once`` lets the retry succeed); a caller ignores names it does not
        know, so one ``VSCREEN_FAULTS`` value can serve every stage.

    Any action may end in ``-once`` (``kill-once``, ``abort-once``): it fires only the
    first time, in whichever process gets there first, to simulate a transient fault
    that a retry or a restarted worker gets past. The first firing creates a marker file
    in the folder named by ``VSCREEN_FAULTS_DIR`` (required for ``-once`` actions);
    delete the folder's files to re-arm.

When ``VSCREEN_FAULTS`` is unset or empty, :func:`inject` is one dictionary lookup.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV", "DIR_ENV", "PERFORMED", "Fault", "FaultSpecError", "parse_faults", "inject"]

#: Environment variable with the fault entries.
ENV = "VSCREEN_FAULTS"
#: Environment variable naming the folder of ``-once`` marker files.
DIR_ENV = "VSCREEN_FAULTS_DIR"
#: Actions performed by :func:`inject` itself; any other action name is returned to the caller.
PERFORMED = ("abort", "kill", "exit", "hang", "raise")
_ONCE = "-once"


class FaultSpecError(ValueError):
    """``VSCREEN_FAULTS`` is malformed (a typo must not silently inject nothing)."""


@dataclass(frozen=True)
class Fault:
    """One ``stage:compound_id:action`` entry."""

    stage: str
    compound_id: str
    action: str
    once: bool = False

    def matches(self, stage: str, compound_id: str) -> bool:
        return self.stage == stage and self.compound_id in ("*", compound_id)


@functools.lru_cache(maxsize=8)
def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse a ``VSCREEN_FAULTS`` value (cached: the variable is read once per distinct value).

    Raises
    ------
    FaultSpecError
        An entry is not ``stage:compound_id:action``.
    """
    faults = []
    for entry in spec.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        stage, sep, rest = entry.partition(":")
        compound_id, sep2, action = rest.rpartition(":")
        if not (sep and sep2 and stage and compound_id and action):
            raise FaultSpecError(f"{ENV} entry {entry!r} is not stage:compound_id:action")
        once = action.endswith(_ONCE)
        base = action[: -len(_ONCE)] if once else action
        if not base:
            raise FaultSpecError(f"{ENV} entry {entry!r} has no action before {_ONCE}")
        faults.append(Fault(stage, compound_id, base, once))
    return tuple(faults)


def _first_time(fault: Fault, compound_id: str) -> bool:
    """Claim the one firing of a ``-once`` fault (an O_EXCL marker file: atomic across processes)."""
    folder = os.environ.get(DIR_ENV)
    if not folder:
        raise FaultSpecError(
            f"{ENV}: the -once action of {fault.stage}:{fault.compound_id} needs {DIR_ENV} "
            "(a folder for its marker file)"
        )
    # ids may hold characters a file name cannot: name the marker by a digest
    digest = hashlib.sha1(f"{fault.stage}\0{compound_id}\0{fault.action}".encode()).hexdigest()[:16]
    marker = Path(folder) / f"{fault.stage}.{fault.action}.{digest}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:  # written before firing: an abort must not re-arm it
        handle.write(f"{fault.stage}:{compound_id}:{fault.action}\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _hang() -> None:
    # A native call stuck in C code never returns to the interpreter, so Python-level
    # SIGTERM/SIGINT handlers never run: ignore both, only SIGKILL ends this process.
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread (a Dask worker thread): signals stay as they are
            pass
    while True:
        time.sleep(3600)


def inject(stage: str, compound_id: str) -> str | None:
    """Fire the fault configured for ``stage`` and ``compound_id``, if any.

    Parameters
    ----------
    stage : str
        Where the caller is (``prepare``, ``dock``, ``dock-export``, ``refine``, ``featurize``, ...).
    compound_id : str
        The compound about to be processed.

    Returns
    -------
    str or None
        ``None`` when no fault is configured here (or a ``-once`` fault already fired);
        the action name for actions the caller performs itself (``"blowup"``, any name
        not in :data:`PERFORMED`). ``abort``,
        ``kill``, ``exit`` and ``hang`` do not return; ``raise`` raises.

    Raises
    ------
    RuntimeError
        Action ``raise``.
    FaultSpecError
        ``VSCREEN_FAULTS`` is malformed.
    """
    spec = os.environ.get(ENV)
    if not spec:  # the production path: nothing configured, nothing parsed
        return None
    for fault in parse_faults(spec):
        if not fault.matches(stage, compound_id):
            continue
        if fault.once and not _first_time(fault, compound_id):
            continue
        if fault.action == "abort":
            os.abort()
        if fault.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # SIGKILL is delivered asynchronously; never run on meanwhile
        if fault.action == "exit":
            os._exit(70)
        if fault.action == "hang":
            _hang()
        if fault.action == "raise":
            raise RuntimeError(f"injected fault ({stage}:{compound_id})")
        return fault.action
    return None
