"""Dask clusters for the stages that spread work over processes (featurization, scoring).

Three kinds of scheduler, chosen by :class:`DaskSettings.scheduler`:

``local`` (default)
    A :class:`distributed.LocalCluster` of ``n_workers`` worker *processes*
    (RDKit and ProLIF hold the GIL, so threads would not run in parallel), each
    with ``threads_per_worker`` threads and ``memory_limit``.
``address``
    An already running scheduler at ``address`` (``tcp://host:8786``); its
    workers must have this package installed.
``slurm``
    A ``dask_jobqueue.SLURMCluster``: one job per worker, ``threads_per_worker``
    cores and ``memory_limit`` each, scaled adaptively between 1 and ``n_workers``
    jobs; ``slurm_options`` go to ``SLURMCluster`` unchanged (``queue``,
    ``account``, ``walltime``, ``job_extra_directives``, ...). Needs ``dask-jobqueue``,
    imported only here.

Worker processes get ``OMP_NUM_THREADS`` (and the MKL/OpenBLAS equivalents) set to
``threads_per_worker`` so that NumPy or PyTorch inside a task do not oversubscribe
the cores the other workers use.

:func:`run_tasks` runs a stage's tasks on a client under the reliability contract: an
infrastructure fault (a lost worker or scheduler, a cancelled future, a closed
connection) is retried by resubmitting the task up to :data:`TASK_RETRIES` times and,
if it persists, raises :class:`InfrastructureError`, so the job fails loudly instead
of recording the task's compounds as failures. Errors raised by the task's own code
are not retried: they reach the caller unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ConfigError, schema_field

log = logging.getLogger(__name__)

SCHEDULERS = ("local", "address", "slurm")
#: Resubmissions of one task after infrastructure faults before :func:`run_tasks` gives up.
#: On a LocalCluster the nanny restarts a killed worker and the scheduler already reruns
#: its tasks (``distributed.scheduler.allowed-failures``, default 3) before a
#: ``KilledWorker`` reaches us; these retries cover what gets past that (a cancelled
#: future, a reconnected client, a worker that died once too often).
TASK_RETRIES = 3


class InfrastructureError(RuntimeError):
    """A Dask fault (lost worker or scheduler, cancelled future) that persisted through the retries.

    Not a compound's failure and not a user error: the job must stop with a nonzero
    exit status, and rerunning it (once the cluster is healthy) resumes the work.
    """


@dataclass(frozen=True)
class DaskSettings:
    """Where Dask tasks run (config section ``dask``).

    Attributes
    ----------
    scheduler
        ``local`` | ``address`` | ``slurm`` (see the module docstring).
    n_workers
        Worker processes (``local``) or the most SLURM jobs (``slurm``).
    threads_per_worker
        Threads per worker; also the cores requested per SLURM job.
    address
        Scheduler address, required for ``scheduler: address``.
    memory_limit
        Per worker, e.g. ``"4GB"``; ``"auto"`` shares the machine's memory (local),
        and for SLURM ``"auto"`` means 4 GB per job.
    slurm_options
        Extra keyword arguments for ``dask_jobqueue.SLURMCluster``.
    """

    scheduler: str = schema_field("dask", "scheduler")
    n_workers: int = schema_field("dask", "n_workers")
    threads_per_worker: int = schema_field("dask", "threads_per_worker")
    address: str | None = schema_field("dask", "address")
    memory_limit: str = schema_field("dask", "memory_limit")
    slurm_options: Mapping[str, Any] = schema_field("dask", "slurm_options")

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"config key 'dask.scheduler' must be one of {list(SCHEDULERS)}, got {self.scheduler!r}")
        if self.n_workers < 1:
            raise ConfigError(f"config key 'dask.n_workers' must be at least 1, got {self.n_workers}")
        if self.threads_per_worker < 1:
            raise ConfigError(f"config key 'dask.threads_per_worker' must be at least 1, got {self.threads_per_worker}")
        if self.scheduler == "address" and not self.address:
            raise ConfigError("config key 'dask.address' is required when 'dask.scheduler' is 'address'")


def _worker_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def _slurm_cluster(settings: DaskSettings):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ConfigError(
            "'dask.scheduler: slurm' needs the dask-jobqueue package, which is not installed "
            "(pip install dask-jobqueue, or conda install -c conda-forge dask-jobqueue)"
        ) from exc
    memory = "4GB" if settings.memory_limit == "auto" else settings.memory_limit
    options = dict(settings.slurm_options)
    options.setdefault(
        "job_script_prologue", [f"export {k}={v}" for k, v in _worker_env(settings.threads_per_worker).items()]
    )
    cluster = SLURMCluster(cores=settings.threads_per_worker, processes=1, memory=memory, **options)
    cluster.adapt(minimum=1, maximum=settings.n_workers)
    return cluster


def make_client(settings: DaskSettings | None = None):
    """Start (or connect to) the cluster described by ``settings`` and return a Client.

    Close it with :func:`close_client` (or use :func:`dask_client`), which also
    stops a cluster this function started.

    Raises
    ------
    ConfigError
        For an invalid setting, or ``slurm`` without dask-jobqueue installed.
    """
    from distributed import Client, LocalCluster

    settings = settings or DaskSettings()
    if settings.scheduler == "address":
        log.info("connecting to Dask scheduler %s", settings.address)
        return Client(settings.address, timeout="30s")
    if settings.scheduler == "slurm":
        cluster = _slurm_cluster(settings)
    else:
        cluster = LocalCluster(
            n_workers=settings.n_workers,
            threads_per_worker=settings.threads_per_worker,
            processes=True,
            memory_limit=settings.memory_limit,
            dashboard_address=None,
            env=_worker_env(settings.threads_per_worker),
        )
    client = Client(cluster)
    client._vscreen_owns_cluster = True  # so close_client stops what make_client started
    log.info("Dask %s cluster: %s", settings.scheduler, client)
    return client


def close_client(client) -> None:
    """Close a Client from :func:`make_client`, and its cluster if :func:`make_client` started it."""
    cluster = client.cluster if getattr(client, "_vscreen_owns_cluster", False) else None
    client.close()
    if cluster is not None:
        cluster.close()


@contextlib.contextmanager
def dask_client(settings: DaskSettings | None = None) -> Iterator:
    """``with dask_client(settings) as client:`` - a Client that is closed (with its cluster) on exit."""
    client = make_client(settings)
    try:
        yield client
    finally:
        close_client(client)


# --------------------------------------------------------------------------- running tasks


def is_infrastructure_error(exc: BaseException, future: Any = None) -> bool:
    """Whether ``exc``, raised by ``future.result()``, is a Dask fault rather than the task's own error.

    Parameters
    ----------
    exc
        The exception.
    future
        The future whose result raised it, if any. An ``OSError`` or ``TimeoutError``
        raised by the task's own code comes back with the future in state ``error``;
        one raised by the client's connection (scheduler unreachable) does not, so
        only the latter counts as infrastructure.

    Returns
    -------
    bool
        True for ``KilledWorker``, any ``CancelledError`` (including distributed's
        ``FutureCancelledError``, which a lost scheduler also gives), ``CommClosedError``,
        and comms' ``OSError``/``TimeoutError``.
    """
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(exc, (KilledWorker, CommClosedError, concurrent.futures.CancelledError, asyncio.CancelledError)):
        return True
    if isinstance(exc, (OSError, TimeoutError)):
        return getattr(future, "status", None) != "error"
    return False


def _summary(exc: BaseException) -> str:
    # Dask's messages run to several sentences of generic advice; the first one says what happened
    text = str(exc).strip().split(". ", 1)[0].rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_tasks(
    client,
    func: Callable,
    tasks: Sequence[tuple],
    names: Sequence[str] | None = None,
    retries: int = TASK_RETRIES,
    what: str = "task",
) -> Iterator[tuple[int, Any]]:
    """Run ``func(*args)`` for every ``args`` of ``tasks`` on a client; yield ``(index, result)`` as each finishes.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    func
        The task function (importable on the workers).
    tasks
        Positional arguments of each task.
    names
        A name per task for log lines and errors (a file, a chunk); default ``task <i>``.
    retries
        Resubmissions of one task after infrastructure faults (:func:`is_infrastructure_error`).
    what
        What the tasks do, for log lines and errors (``featurize``, ``score``).

    Yields
    ------
    (int, Any)
        Index into ``tasks`` and the task's result, once per task, in completion order.

    Raises
    ------
    InfrastructureError
        A task still hit an infrastructure fault after ``retries`` resubmissions; the
        message names the task and the last Dask error.
    Exception
        Whatever a task's own code raised (not retried); the other tasks are cancelled.
    """
    from distributed import as_completed

    names = list(names) if names is not None else [f"task {i}" for i in range(len(tasks))]
    failures = [0] * len(tasks)

    def submit(i: int):
        # pure=False: a resubmission must run again, not return the cancelled or failed key
        return client.submit(func, *tasks[i], pure=False)

    owner = {submit(i): i for i in range(len(tasks))}
    pending = as_completed(list(owner))
    try:
        for future in pending:
            i = owner[future]
            try:
                result = future.result()
            except (Exception, asyncio.CancelledError) as exc:
                if not is_infrastructure_error(exc, future):
                    raise
                failures[i] += 1
                error = _summary(exc)
                if failures[i] > retries:
                    raise InfrastructureError(
                        f"{what} {names[i]} hit a Dask infrastructure fault {failures[i]} times, the last one "
                        f"{error}; no compound was recorded as failed - check the cluster (workers, scheduler, "
                        f"memory) and rerun"
                    ) from exc
                log.warning(
                    "%s %s: Dask infrastructure fault (%s); resubmitting (retry %d of %d)",
                    what,
                    names[i],
                    error,
                    failures[i],
                    retries,
                )
                del owner[future]
                try:
                    again = submit(i)
                except Exception as exc2:  # the client itself is gone (closed, scheduler unreachable)
                    raise InfrastructureError(
                        f"{what} {names[i]} could not be resubmitted after {error}: "
                        f"{_summary(exc2)}; check the cluster and rerun"
                    ) from exc2
                owner[again] = i
                pending.add(again)
                continue
            del owner[future]
            yield i, result
    finally:
        if owner:
            client.cancel(list(owner))
