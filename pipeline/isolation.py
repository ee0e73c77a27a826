"""Per-compound isolation of native engine calls: a crash or a hang costs one compound only.

RDKit's ETKDG, meeko, AutoDock Vina and OpenMM are C/C++ code: on a pathological molecule
they can abort the process (SIGABRT, SIGSEGV) or never return. Run in the job's own
process, either one ends the whole chunk job, and with it the run (``rank`` needs every
chunk). :class:`IsolatedWorker` runs the per-compound work in a child process instead:

* the child runs ``init()`` once after each (re)start (build the Vina object and its
  maps, parameterize the receptor for MD) and then takes one item at a time over a pipe;
* the parent waits at most ``time_limit`` seconds for each item's answer;
* a child that dies (native crash, ``os._exit``, OOM kill) costs the item it was working
  on: failure reason ``crashed: worker process died (signal SIGABRT)`` (or ``exit code N``);
* a child that does not answer in time is killed with SIGKILL (a hung native call may
  never return to Python, so SIGTERM handlers cannot be relied on): failure reason
  ``time limit (N s) exceeded``;
* either way a fresh child is started for the next item (only when there is one), so
  the items after it are processed exactly as without the fault (each stage derives its
  random seeds from the item, never from the order);
* a Python exception raised by ``work`` for one item is that item's failure reason
  (``describe_error`` writes it; the child goes on);
* a failure of ``init`` is a job-level error: it is raised again in the parent (same
  exception type where it can be pickled), and no compound failure is recorded.

Items and results travel through a pipe, so they must be picklable: send plain tuples and
dicts, and molecules as :func:`pack_mol` bytes (RDKit's default pickles drop SD properties
and keep coordinates in single precision).

Children never outlive the job: they are killed when the run ends (a ``finally``), are
daemon processes, and ask Linux to SIGKILL them when the parent dies (``PR_SET_PDEATHSIG``),
which also covers a ``kill -9`` of the job. SIGINT is ignored in the child: Ctrl-C
interrupts the parent, whose ``finally`` then kills the child.

Start methods: ``fork`` (the default) makes restarts cheap (the child has the parent's
imports). ``spawn`` starts a fresh interpreter; refinement uses it because CUDA cannot be
used in a process forked from one that has initialized CUDA, and importing OpenMM may do
that when it registers its CUDA platform. With ``spawn``, ``work``, ``init`` and
``describe_error`` must be picklable (module-level functions or ``functools.partial`` of them),
and the caller's script is not re-run in the child (see :func:`_main_script_hidden`), so a
script without an ``if __name__ == "__main__"`` guard can call a stage too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from .progress import progress

log = logging.getLogger(__name__)

__all__ = [
    "Outcome",
    "IsolatedWorker",
    "WorkerStartError",
    "run_isolated",
    "unexpected_error",
    "describe_exit",
    "time_limit_reason",
    "format_seconds",
    "pack_mol",
    "unpack_mol",
    "check_time_limit",
    "parse_time_limit",
]

#: ``prctl`` option: signal the calling process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: Seconds to wait for a child to exit by itself (end of the job, after EOF) before SIGKILL.
_EXIT_GRACE = 10.0
#: Held while a child process starts (see :meth:`IsolatedWorker._start`).
_START_LOCK = threading.Lock()


class WorkerStartError(RuntimeError):
    """The worker process died while running ``init`` (a native crash before any item)."""


class Outcome(NamedTuple):
    """What became of one item: ``(key, result, reason)``; exactly one of result and reason is set.

    ``result`` is whatever ``work`` returned (``None`` on failure); ``reason`` is the
    failure reason for ``failures.csv`` (``None`` on success).
    """

    key: Any
    result: Any
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def format_seconds(seconds: float) -> str:
    """``600`` for 600.0, ``2.5`` for 2.5: the limit as a user wrote it in the config."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def time_limit_reason(seconds: float) -> str:
    """The failure reason of an item that ran past its limit: ``time limit (N s) exceeded``."""
    return f"time limit ({format_seconds(seconds)} s) exceeded"


def describe_exit(exitcode: int | None) -> str:
    """``signal SIGABRT`` / ``exit code 3`` for a ``multiprocessing`` exit code."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def unexpected_error(key: Hashable, exc: BaseException) -> str:
    """Default failure reason of an exception raised by ``work``: ``unexpected error: Type: message``.

    Logged with its traceback (in the worker): an exception no stage anticipated is a bug
    worth reading about, even though it only costs its compound.
    """
    log.warning("unexpected error on %s", key, exc_info=exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


def check_time_limit(value: float | None, name: str = "time_limit") -> float | None:
    """Validate a per-compound limit: positive seconds, or ``None`` for no limit."""
    if value is None:
        return None
    if not float(value) > 0:
        raise ValueError(f"{name} must be positive seconds or null (no limit); got {value!r}")
    return float(value)


def parse_time_limit(text: str) -> float | None:
    """A ``--time-limit`` value: positive seconds, or ``none``/``null`` for no limit (argparse ``type=``)."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    return check_time_limit(value)


def pack_mol(mol: Any) -> bytes:
    """An RDKit molecule as bytes for the pipe: every property kept, coordinates in double precision.

    RDKit's default pickle drops SD properties and stores coordinates as 32-bit floats,
    so a pose written by the parent would differ in the last digits from the same pose
    written before isolation.
    """
    from rdkit import Chem

    return mol.ToBinary(Chem.PropertyPickleOptions.AllProps | Chem.PropertyPickleOptions.CoordsAsDouble)


def unpack_mol(data: bytes) -> Any:
    """The molecule of :func:`pack_mol`."""
    from rdkit import Chem

    return Chem.Mol(data)


# --------------------------------------------------------------------------- the child


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); exit if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no libc symbol: the daemon flag and the finally still apply
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _init_error_message(exc: BaseException) -> tuple[BaseException, str]:
    """The init exception itself if it survives pickling, else a RuntimeError with its text."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc))
        return exc, text
    except Exception:  # noqa: BLE001 -- custom exception classes often do not unpickle
        return RuntimeError(f"{type(exc).__name__}: {exc}"), text


def _child_main(
    conn: Connection,
    parent_end: Connection | None,
    work: Callable[[Any, Any], Any],
    init: Callable[[], Any] | None,
    describe_error: Callable[[Hashable, BaseException], str],
    parent_pid: int,
    log_level: int,
) -> None:
    """The worker loop: ``init()`` once, then one ``(key, item)`` at a time until ``None`` or EOF."""
    _die_with_parent(parent_pid)
    if not logging.getLogger().handlers:  # spawn: a fresh interpreter; log like the job does
        logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if parent_end is not None:  # fork: our copy of the parent's end would hide the parent's death (no EOF)
        parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked child must not inherit the parent's handler
    try:
        state = init() if init is not None else None
    except BaseException as exc:  # noqa: BLE001 -- every init failure is the job's, reported to the parent
        conn.send(("init-error", _init_error_message(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        key, item = message
        try:
            reply = ("ok", work(state, item))
        except Exception as exc:  # noqa: BLE001 -- one item's error is that item's failure reason
            reply = ("error", describe_error(key, exc))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 -- a result that cannot be pickled fails its item only
            conn.send(("error", f"unexpected error: result cannot be sent back: {type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- the parent


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Hide the parent's ``__main__`` from ``spawn`` while a child starts.

    ``spawn`` re-runs the parent's main script (or module) in the child, so that functions
    defined there can be unpickled. The worker's functions live in :mod:`pipeline` modules,
    and re-running a script that has no ``if __name__ == "__main__"`` guard would start the
    whole job again inside the child, which multiprocessing then aborts (exit code 1).
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class IsolatedWorker:
    """A restartable child process that runs ``work(state, item)`` for one item at a time.

    Parameters
    ----------
    work : callable ``(state, item) -> result``
        The per-item function, run in the child; ``state`` is what ``init`` returned
        (``None`` without ``init``). The result must be picklable.
    init : callable ``() -> state``, optional
        Run once in each new child before its first item. An exception in it is raised
        again by :meth:`submit` in the parent (a job-level error).
    time_limit : float or None
        Seconds the parent waits for one item's answer (``init`` excluded); ``None`` = no limit.
    stage : str
        Stage name for log lines (``prepare``, ``dock``, ``refine``).
    describe_error : callable ``(key, exception) -> str``, optional
        Failure reason of an exception raised by ``work`` (default :func:`unexpected_error`).
    start_method : {"fork", "spawn", "forkserver"}
        How children are started (see the module docstring).

    Examples
    --------
    >>> with IsolatedWorker(lambda state, x: x * 2, time_limit=5, stage="demo") as worker:
    ...     worker.submit("a", 21)
    Outcome(key='a', result=42, reason=None)
    """

    def __init__(
        self,
        work: Callable[[Any, Any], Any],
        *,
        init: Callable[[], Any] | None = None,
        time_limit: float | None = None,
        stage: str = "work",
        describe_error: Callable[[Hashable, BaseException], str] | None = None,
        start_method: str = "fork",
    ):
        self.work = work
        self.init = init
        self.time_limit = check_time_limit(time_limit)
        self.stage = stage
        self.describe_error = describe_error or unexpected_error
        self.start_method = start_method
        self.starts = 0
        self._context = multiprocessing.get_context(start_method)
        self._process: Any = None
        self._conn: Connection | None = None

    # -- lifecycle

    def __enter__(self) -> IsolatedWorker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # on an error (or Ctrl-C) there is nothing to wait for: kill at once
        self.close(graceful=exc_type is None)

    @property
    def pid(self) -> int | None:
        """Process id of the current child (None when none is running)."""
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        forked = self.start_method == "fork"
        process = self._context.Process(
            target=_child_main,
            name=f"vscreen-{self.stage}-worker",
            daemon=True,
            args=(
                child_conn,
                parent_conn if forked else None,
                self.work,
                self.init,
                self.describe_error,
                os.getpid(),
                logging.getLogger().getEffectiveLevel(),
            ),
        )
        # a forked child would write a second copy of whatever the parent still has buffered
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        # one start at a time: _main_script_hidden edits the shared __main__ (several workers start side by side)
        with _START_LOCK, warnings.catch_warnings(), contextlib.nullcontext() if forked else _main_script_hidden():
            # Python >= 3.12 warns on fork() with threads running; the parent's only threads are
            # tqdm's monitor (a sleeping pure-Python thread) and the child never touches tqdm
            warnings.simplefilter("ignore", DeprecationWarning)
            process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        self.starts += 1
        try:
            kind, payload = parent_conn.recv()  # init has no limit: maps and force fields take their time
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            code = self._reap()
            raise WorkerStartError(f"{self.stage} worker died while starting ({describe_exit(code)})") from exc
        if kind == "init-error":
            error, text = payload
            log.debug("%s worker init failed:\n%s", self.stage, text)
            self._reap()
            raise error
        log.debug("%s worker %d ready (start %d)", self.stage, process.pid, self.starts)

    def _reap(self) -> int | None:
        """Wait for a child that is ending (EOF seen, or told to stop); kill it if it lingers."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        process.join(_EXIT_GRACE)
        if process.exitcode is None:
            process.kill()
            process.join()
        return process.exitcode

    def _kill(self) -> None:
        """SIGKILL the child now (it may ignore SIGTERM, or be stuck in native code)."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is not None and process.exitcode is None:
            process.kill()
            process.join()
        if conn is not None:
            conn.close()

    def close(self, graceful: bool = True) -> None:
        """Stop the child: ask it to exit (``graceful``), SIGKILL it if it does not at once."""
        if self._process is None:
            return
        if graceful and self._conn is not None:
            try:
                self._conn.send(None)
                self._process.join(2.0)
            except (OSError, EOFError):
                pass
        self._kill()

    # -- work

    def submit(self, key: Hashable, item: Any) -> Outcome:
        """Run ``work`` on one item in the child; wait at most ``time_limit`` seconds.

        Parameters
        ----------
        key : hashable
            The item's name in log lines and in :class:`Outcome` (a compound id).
        item : picklable
            The argument of ``work``.

        Returns
        -------
        Outcome
            ``(key, result, None)``, or ``(key, None, reason)`` when the item raised,
            crashed the child or ran past the limit (the child is then replaced).

        Raises
        ------
        Exception
            Whatever ``init`` raised when the child was (re)started; :class:`WorkerStartError`
            if the child died during ``init``.
        """
        if self._process is not None and not self._process.is_alive():
            # died between items (nothing was running in it): not any item's fault
            log.warning(
                "%s worker %s ended between items (%s); starting a new one",
                self.stage,
                self.pid,
                describe_exit(self._reap()),
            )
        if self._process is None:
            self._start()
        assert self._conn is not None
        try:
            self._conn.send((key, item))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            self._reap()
            self._start()
            self._conn.send((key, item))
        if not self._conn.poll(self.time_limit):
            pid = self.pid
            self._kill()
            reason = time_limit_reason(self.time_limit)
            log.warning("%s %s: %s; worker %s killed, a new one takes the next item", self.stage, key, reason, pid)
            return Outcome(key, None, reason)
        try:
            kind, payload = self._conn.recv()
        except Exception:  # noqa: BLE001 -- EOF, or a message torn by the child's death
            pid = self.pid
            reason = f"crashed: worker process died ({describe_exit(self._reap())})"
            log.warning("%s %s: %s (worker %s); a new one takes the next item", self.stage, key, reason, pid)
            return Outcome(key, None, reason)
        if kind == "ok":
            return Outcome(key, payload, None)
        return Outcome(key, None, payload)


def run_isolated(
    items: Iterable[tuple[Hashable, Any]],
    work: Callable[[Any, Any], Any],
    *,
    init: Callable[[], Any] | None = None,
    time_limit: float | None,
    stage: str,
    desc: str,
    unit: str = "it",
    describe_error: Callable[[Hashable, BaseException], str] | None = None,
    start_method: str = "fork",
    processes: int = 1,
    group: Callable[[Hashable], Hashable] | None = None,
) -> Iterator[Outcome]:
    """Run ``work`` on every ``(key, item)`` in :class:`IsolatedWorker` s, in order, with a progress bar.

    Parameters
    ----------
    items : iterable of (key, item)
        Keys name the items (compound ids); items are ``work``'s picklable arguments.
    work, init, time_limit, stage, describe_error, start_method
        See :class:`IsolatedWorker`.
    desc, unit : str
        Progress bar label and item name (:func:`pipeline.progress.progress`).
    processes : int
        Items in flight: that many children (each with its own ``init``, time limit and
        restarts) take the items side by side, driven by one parent thread each. Use it
        with ``start_method="spawn"`` (forking a parent that runs threads is unsafe).
    group : callable ``key -> hashable``, optional
        With ``processes > 1``: items whose keys map to the same group go to one child, one
        after the other in input order (e.g. the poses of one compound, so that the child
        can reuse what it built for the first). Default: every item is its own group.

    Yields
    ------
    Outcome
        ``(key, result, reason)`` per item, in input order whatever the number of processes.
        No worker is started for an empty input; the workers are killed when the
        iteration ends or is abandoned.
    """
    todo: Sequence[tuple[Hashable, Any]] = list(items)
    if not todo:
        return
    options = dict(
        init=init, time_limit=time_limit, stage=stage, describe_error=describe_error, start_method=start_method
    )
    groups = _groups(todo, group)
    if processes <= 1 or len(groups) == 1:
        with IsolatedWorker(work, **options) as worker:  # type: ignore[arg-type]
            for key, item in progress(todo, total=len(todo), desc=desc, unit=unit):
                yield worker.submit(key, item)
        return
    outcomes = _run_side_by_side(todo, groups, work, options, min(processes, len(groups)))
    yield from progress(outcomes, total=len(todo), desc=desc, unit=unit)


def _groups(items: Sequence[tuple[Hashable, Any]], group: Callable[[Hashable], Hashable] | None) -> list[list[int]]:
    """Item indices per group, groups in order of their first item."""
    if group is None:
        return [[i] for i in range(len(items))]
    by_group: dict[Hashable, list[int]] = {}
    for i, (key, _) in enumerate(items):
        by_group.setdefault(group(key), []).append(i)
    return list(by_group.values())


def _run_side_by_side(
    items: Sequence[tuple[Hashable, Any]],
    groups: list[list[int]],
    work: Callable[[Any, Any], Any],
    options: dict,
    n_workers: int,
) -> Iterator[Outcome]:
    """``n_workers`` children, each fed whole groups by a parent thread; outcomes in input order.

    A thread takes the next group when its child has answered the last item of the
    previous one, so a slow group never holds the others back. An exception of a child's
    start (``init`` failed: a job-level error) stops every thread and is raised here.
    """
    pending: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
    for indices in groups:
        pending.put(indices)
    done: queue.SimpleQueue[tuple[int, Outcome | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()
    pool = [IsolatedWorker(work, **options) for _ in range(n_workers)]

    def drive(worker: IsolatedWorker) -> None:
        try:
            while not stop.is_set():
                try:
                    indices = pending.get_nowait()
                except queue.Empty:
                    return
                for i in indices:
                    if stop.is_set():
                        return
                    done.put((i, worker.submit(*items[i]), None))
        except BaseException as exc:  # noqa: BLE001 -- handed to the generator, which raises it
            done.put((-1, None, exc))

    threads = [
        threading.Thread(target=drive, args=(w,), name=f"{w.stage}-feeder-{k}", daemon=True) for k, w in enumerate(pool)
    ]
    try:
        for thread in threads:
            thread.start()
        ready: dict[int, Outcome] = {}
        for next_index in range(len(items)):
            while next_index not in ready:
                index, outcome, error = done.get()
                if error is not None:
                    raise error
                assert outcome is not None
                ready[index] = outcome
            yield ready.pop(next_index)
    finally:
        stop.set()
        for worker in pool:  # an abandoned run must not leave children working
            worker._kill()
        for thread in threads:
            thread.join(_EXIT_GRACE)
