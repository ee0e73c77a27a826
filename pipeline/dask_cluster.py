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
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .config import ConfigError

log = logging.getLogger(__name__)

SCHEDULERS = ("local", "address", "slurm")


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

    scheduler: str = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    address: str | None = None
    memory_limit: str = "auto"
    slurm_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"config key 'dask.scheduler' must be one of {list(SCHEDULERS)}, got {self.scheduler!r}")
        if self.n_workers < 1:
            raise ConfigError(f"config key 'dask.n_workers' must be at least 1, got {self.n_workers}")
        if self.threads_per_worker < 1:
            raise ConfigError(f"config key 'dask.threads_per_worker' must be at least 1, got {self.threads_per_worker}")
        if self.scheduler == "address" and not self.address:
            raise ConfigError("config key 'dask.address' is required when 'dask.scheduler' is 'address'")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "DaskSettings":
        """Build from a config section (missing keys take the defaults)."""
        section = dict(section or {})
        unknown = sorted(set(section) - {"scheduler", "n_workers", "threads_per_worker", "address", "memory_limit",
                                         "slurm_options"})
        if unknown:
            raise ConfigError(f"unknown config key 'dask.{unknown[0]}'; allowed keys here: address, memory_limit, "
                              "n_workers, scheduler, slurm_options, threads_per_worker")
        return cls(**section)


def _worker_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def _slurm_cluster(settings: DaskSettings):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ConfigError("'dask.scheduler: slurm' needs the dask-jobqueue package, which is not installed "
                          "(pip install dask-jobqueue, or conda install -c conda-forge dask-jobqueue)") from exc
    memory = "4GB" if settings.memory_limit == "auto" else settings.memory_limit
    options = dict(settings.slurm_options)
    options.setdefault("job_script_prologue", [f"export {k}={v}" for k, v in _worker_env(settings.threads_per_worker).items()])
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
        cluster = LocalCluster(n_workers=settings.n_workers, threads_per_worker=settings.threads_per_worker,
                               processes=True, memory_limit=settings.memory_limit, dashboard_address=None,
                               env=_worker_env(settings.threads_per_worker))
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
