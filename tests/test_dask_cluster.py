"""Dask on a real multi-process cluster: a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, started as a user starts them on a cluster's nodes. The run config
points at the scheduler (``dask: {scheduler: address}``); the scores equal a LocalCluster's,
and killing one worker in the middle of scoring loses no complex (Dask reschedules).

Also :func:`pipeline.dask_cluster.run_tasks` on a real LocalCluster: a cancelled future is
resubmitted, a persistent one raises :class:`InfrastructureError`, and a task's own error
(even an ``OSError``) is raised as is, never retried. :class:`FlakyClient` (a real client
whose chosen submissions come back cancelled) is shared with the featurize and score tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_scoring import complexes, trained  # noqa: F401  (fixtures: real 1iep graphs and a tiny ensemble)

from pipeline.config import load_config, settings_from_section
from pipeline.dask_cluster import (
    TASK_RETRIES,
    DaskSettings,
    InfrastructureError,
    close_client,
    is_infrastructure_error,
    make_client,
    run_tasks,
)
from pipeline.graphs import save_graphs
from pipeline.layout import write_manifest
from pipeline.scoring.score import cache_info, score_graph_files

DASK = Path(sys.executable).with_name("dask")
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DaskProcesses:
    """A scheduler and ``n_workers`` single-threaded workers, each its own process group."""

    def __init__(self, folder: Path, n_workers: int = 2):
        self.folder, self.n_workers = folder, n_workers
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "w")
        env = dict(os.environ, **WORKER_ENV)
        self.procs[name] = subprocess.Popen(
            ["nice", "-n", "10", str(DASK), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
            start_new_session=True,
        )

    def start(self) -> DaskProcesses:
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
        for i in range(self.n_workers):
            self._start(
                f"w{i}",
                "worker",
                self.address,
                "--name",
                f"w{i}",
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--memory-limit",
                "4GB",
                "--local-directory",
                str(self.folder / f"w{i}"),
            )
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(self.n_workers, timeout=120)
        return self

    def kill(self, name: str) -> None:
        """SIGKILL a process and its children (a worker's nanny and the worker), as a lost node."""
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.folder.glob("*.log")))


@pytest.fixture
def dask_processes(tmp_path):
    cluster = DaskProcesses(tmp_path / "dask")
    cluster.folder.mkdir()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _config(repo: Path, folder: Path, model: Path, dask: dict) -> Path:
    fixture = repo / "resources" / "fixtures" / "1iep"
    cfg = {
        "run": "dask",
        "library": {"path": str(repo / "resources" / "fixtures" / "nasty.smi")},
        "receptor": {"path": str(fixture / "1iep_receptorH.pdb")},
        "box": {"center": [15.19, 53.9, 16.92], "size": [14, 14, 14]},
        "score": {"model": str(model)},
        "dask": dask,
    }
    path = folder / f"config_{dask['scheduler']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _vscreen_score(run_dir: Path, config: Path, out: Path) -> pd.DataFrame:
    cmd = [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "pipeline.cli",
        "score",
        "--run-dir",
        str(run_dir),
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **WORKER_ENV))
    assert result.returncode == 0, result.stderr[-3000:]
    return pd.read_parquet(out)


def test_scores_through_a_scheduler_address_equal_a_local_cluster(repo, tmp_path, complexes, trained, dask_processes):
    """`vscreen score` with `dask: {scheduler: address}` runs on the external workers and gives
    exactly the scores of `dask: {scheduler: local}` (a LocalCluster of two processes)."""
    model, _ = trained
    run = tmp_path / "run"
    (run / "graphs").mkdir(parents=True)
    for i, path in enumerate(complexes["files"]):
        (run / "graphs" / f"chunk_{i:05d}.pt").write_bytes(path.read_bytes())
    write_manifest(run / "chunks", "chunks", [f"chunk_{i:05d}" for i in range(len(complexes["files"]))])
    remote_cfg = _config(repo, tmp_path, model, {"scheduler": "address", "address": dask_processes.address})
    assert load_config(remote_cfg)["dask"]["address"] == dask_processes.address

    remote = _vscreen_score(run, remote_cfg, tmp_path / "remote.parquet")
    local = _vscreen_score(
        run, _config(repo, tmp_path, model, {"scheduler": "local", "n_workers": 2}), tmp_path / "local.parquet"
    )

    assert len(remote) == complexes["n_graphs"] and remote["gnn_score"].notna().all()
    pd.testing.assert_frame_equal(remote, local)
    # the model was loaded in the external worker processes, so the tasks ran there
    client = make_client(DaskSettings(scheduler="address", address=dask_processes.address))
    try:
        loads = client.run(cache_info)
    finally:
        close_client(client)
    assert len(loads) == 2 and sum(info["loads"] for info in loads.values()) >= 1, loads


def _many_graph_files(files: list[Path], folder: Path, copies: int) -> tuple[list[Path], int]:
    """``copies`` renamed copies of every graph file (ids made unique), and the number of graphs."""
    folder.mkdir()
    out, n = [], 0
    for k in range(copies):
        for j, path in enumerate(files):
            graphs = torch.load(path, weights_only=True)["graphs"]
            for graph in graphs:
                graph["id"] = f"{graph['id']}_copy{k}"
            out.append(folder / f"chunk_{k:03d}_{j}.pt")
            save_graphs(out[-1], graphs)
            n += len(graphs)
    return out, n


def test_killing_a_worker_in_the_middle_of_scoring_loses_no_complex(repo, tmp_path, complexes, trained, dask_processes):
    """One of the two workers is SIGKILLed (nanny and worker: a lost node) while it scores;
    the scheduler reschedules its tasks on the other one and every complex is scored."""
    from distributed import Client

    model, _ = trained
    files, n_graphs = _many_graph_files(complexes["files"], tmp_path / "graphs", copies=40)
    cfg = load_config(_config(repo, tmp_path, model, {"scheduler": "address", "address": dask_processes.address}))
    expected = score_graph_files(files, model, client=None, threads=1)

    result: dict = {}

    def score() -> None:
        client = make_client(settings_from_section(DaskSettings, cfg, "dask", strict=True))
        try:
            result["table"] = score_graph_files(files, model, client)
        except Exception as exc:  # reported by the main thread
            result["error"] = exc
        finally:
            close_client(client)

    def finished_tasks(dask_scheduler) -> int:  # runs in the scheduler (a closure, so pickled by value)
        return sum(ts.state == "memory" for ts in dask_scheduler.tasks.values())

    worker = threading.Thread(target=score)
    with Client(dask_processes.address, timeout="30s") as monitor:
        victim = next(a for a, w in monitor.scheduler_info()["workers"].items() if w["name"] == "w1")
        worker.start()
        deadline = time.time() + 300
        while time.time() < deadline:
            done_at_kill = monitor.run_on_scheduler(finished_tasks)
            busy = monitor.processing().get(victim, ())
            if done_at_kill >= 2 and busy:
                break
            assert worker.is_alive(), f"scoring ended before a worker could be killed: {result}"
            time.sleep(0.02)
        else:
            pytest.fail("the workers never got busy\n" + dask_processes.logs())
        dask_processes.kill("w1")
        worker.join(timeout=600)
        assert not worker.is_alive(), "scoring did not finish after the worker was killed"
        remaining = monitor.scheduler_info()["workers"]

    assert "error" not in result, result.get("error")
    table = result["table"]
    assert done_at_kill < len(files), "the worker was killed after scoring had finished"
    assert victim not in remaining and len(remaining) == 1
    assert len(table) == n_graphs == len(expected)
    assert not table.duplicated(["id", "pose", "source"]).any()
    assert set(table["id"]) == set(expected["id"])
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- run_tasks: retries of Dask faults


class FlakyClient:
    """A real ``distributed.Client`` whose chosen submissions come back cancelled.

    ``cancel`` submissions for which ``select(args)`` is true (all when ``None``) are
    cancelled right after submitting - a real ``FutureCancelledError`` on ``result()``,
    as a lost scheduler or a cancelled key gives. Everything else goes to the client.
    """

    def __init__(self, client, cancel: int, select=None):
        self.client, self.left, self.select = client, cancel, select
        self.submitted: list[tuple] = []

    def submit(self, func, *args, **kwargs):
        future = self.client.submit(func, *args, **kwargs)
        self.submitted.append(args)
        if self.left > 0 and (self.select is None or self.select(args)):
            self.left -= 1
            self.client.cancel([future])
        return future

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture(scope="module")
def local_client():
    client = make_client(DaskSettings(n_workers=1))
    try:
        yield client
    finally:
        close_client(client)


def test_infrastructure_errors_are_told_from_task_errors():
    import asyncio
    import concurrent.futures

    from distributed import KilledWorker
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    class Future:  # only the status matters
        def __init__(self, status):
            self.status = status

    for exc in (
        KilledWorker("k", "w", []),
        FutureCancelledError("k", "scheduler-connection-lost"),
        CommClosedError("closed"),
        asyncio.CancelledError(),
        concurrent.futures.CancelledError(),
    ):
        assert is_infrastructure_error(exc, Future("error")), exc
    assert is_infrastructure_error(TimeoutError("connect"), Future("pending"))
    assert is_infrastructure_error(OSError("Timed out trying to connect"), None)
    # the task's own OSError (a missing input file) is the task's error, not the cluster's
    assert not is_infrastructure_error(FileNotFoundError("x.pt"), Future("error"))
    assert not is_infrastructure_error(ValueError("bad"), Future("error"))
    assert not is_infrastructure_error(KeyboardInterrupt(), None)


def test_run_tasks_resubmits_a_cancelled_task(local_client, caplog):
    tasks = [(k,) for k in range(6)]
    expected = dict(enumerate(pow(k, 2) for k in range(6)))
    flaky = FlakyClient(local_client, cancel=2, select=lambda args: args[0] == 3)  # task 3 cancelled twice
    with caplog.at_level("WARNING", logger="pipeline.dask_cluster"):
        got = dict(run_tasks(flaky, pow, [(k, 2) for (k,) in tasks], names=[f"t{k}" for k in range(6)], what="square"))
    assert got == expected
    assert [args for args in flaky.submitted if args[0] == 3] == [(3, 2)] * 3 and len(flaky.submitted) == 8
    retries = [r.getMessage() for r in caplog.records if "resubmitting" in r.getMessage()]
    assert len(retries) == 2 and all("square t3" in m and "FutureCancelledError" in m for m in retries), retries


def test_run_tasks_raises_when_the_fault_persists(local_client):
    flaky = FlakyClient(local_client, cancel=100, select=lambda args: args[0] == 1)
    with pytest.raises(
        InfrastructureError,
        match=r"square t1 hit a Dask infrastructure fault 4 times, the last one "
        r"FutureCancelledError.*no compound was recorded as failed",
    ):
        list(run_tasks(flaky, pow, [(0, 2), (1, 2), (2, 2)], names=["t0", "t1", "t2"], what="square"))
    assert [args for args in flaky.submitted if args[0] == 1] == [(1, 2)] * (1 + TASK_RETRIES)
    assert issubclass(InfrastructureError, RuntimeError)


def test_run_tasks_raises_a_tasks_own_error_without_retrying(local_client, tmp_path):
    flaky = FlakyClient(local_client, cancel=0)
    with pytest.raises(FileNotFoundError):  # an OSError of the task itself: not a Dask fault
        list(run_tasks(flaky, os.stat, [(str(tmp_path),), (str(tmp_path / "missing"),)]))
    assert len(flaky.submitted) == 2
    with pytest.raises(ValueError):
        list(run_tasks(flaky, int, [("12",), ("not a number",)]))
    assert len(flaky.submitted) == 4


# --------------------------------------------------------------------------- `vscreen score` under faults


def _score_run(folder: Path, files: list[Path]) -> Path:
    """A run folder as the workflow leaves it for scoring: 2 docked chunks and 1 refined batch
    (manifests, graph files, feature tables)."""
    import pipeline.graphs as graphs_module

    run = folder / "run"
    (run / "graphs").mkdir(parents=True)
    (run / "features").mkdir()
    names = ["chunk_00000", "chunk_00001", "batch_00000"]
    for name, path in zip(names, files):
        payload = torch.load(path, weights_only=True)
        if name.startswith("batch"):
            for graph in payload["graphs"]:
                graph["source"] = "refined"
        graphs_module.save_graphs(run / "graphs" / f"{name}.pt", payload["graphs"])
        pd.DataFrame(
            {"id": [g["id"] for g in payload["graphs"]], "pose": [g["pose"] for g in payload["graphs"]]}
        ).to_parquet(run / "features" / f"{name}.parquet")
    write_manifest(run / "chunks", "chunks", names[:2])
    write_manifest(run / "refine_batches", "batches", names[2:])
    return run


def _score_cli(run: Path, config: Path, **env: str) -> subprocess.CompletedProcess:
    cmd = [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "pipeline.cli",
        "score",
        "--run-dir",
        str(run),
        "--config",
        str(config),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **WORKER_ENV, **env), timeout=600)


def test_vscreen_score_records_unreadable_files_and_fails_loudly_on_lost_workers(repo, tmp_path, complexes, trained):
    """`vscreen score` on a run with a truncated chunk and a garbage refined batch exits 0 and writes
    their compounds to scores.failures.csv (failures, and warnings prefixed 'refined batch'); a worker
    that dies on every attempt (VSCREEN_FAULTS kill, no Dask-side retries) makes it exit nonzero with
    InfrastructureError and write no scores - the compounds are not recorded as failed."""
    model, _ = trained
    run = _score_run(tmp_path, complexes["files"])
    config = _config(repo, tmp_path, model, {"scheduler": "local", "n_workers": 1})
    graphs = {
        name: torch.load(run / "graphs" / f"{name}.pt", weights_only=True)["graphs"]
        for name in ("chunk_00000", "chunk_00001", "batch_00000")
    }
    ids = {name: sorted({g["id"] for g in gs}) for name, gs in graphs.items()}
    data = (run / "graphs" / "chunk_00001.pt").read_bytes()
    (run / "graphs" / "chunk_00001.pt").write_bytes(data[: len(data) // 3])
    (run / "graphs" / "batch_00000.pt").write_bytes(b"\x89PNG garbage" * 50)

    result = _score_cli(run, config)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = pd.read_parquet(run / "scores.parquet")
    assert sorted(set(scores["id"])) == ids["chunk_00000"] and set(scores["source"]) == {"docked"}
    assert len(scores) == len(graphs["chunk_00000"])
    rows = pd.read_csv(run / "scores.failures.csv", dtype=str, keep_default_na=False)
    assert list(rows.columns) == ["id", "stage", "reason"] and set(rows["stage"]) == {"score"}
    warned = rows["reason"].str.startswith("refined batch ")
    assert sorted(rows.loc[~warned, "id"]) == ids["chunk_00001"]
    assert rows.loc[~warned, "reason"].str.startswith("graph file graphs/chunk_00001.pt cannot be read: ").all()
    assert sorted(rows.loc[warned, "id"]) == ids["batch_00000"]
    assert rows.loc[warned, "reason"].str.contains("graph file graphs/batch_00000.pt cannot be read").all()

    (run / "scores.parquet").unlink()
    (run / "scores.failures.csv").unlink()
    result = _score_cli(
        run, config, VSCREEN_FAULTS="score:chunk_00000:kill", DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0"
    )
    assert result.returncode != 0
    assert "InfrastructureError" in result.stderr and "KilledWorker" in result.stderr, result.stderr[-3000:]
    assert not (run / "scores.parquet").exists() and not (run / "scores.failures.csv").exists()
