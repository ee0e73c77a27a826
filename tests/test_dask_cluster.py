"""Dask on a real multi-process cluster: a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, started as a user starts them on a cluster's nodes. The run config
points at the scheduler (``dask: {scheduler: address}``); the scores equal a LocalCluster's,
and killing one worker in the middle of scoring loses no complex (Dask reschedules)."""

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

from pipeline.config import load_config
from pipeline.dask_cluster import DaskSettings, close_client, make_client
from pipeline.graphs import save_graphs
from pipeline.scoring.score import cache_info, score_graph_files
from test_scoring import complexes, trained  # noqa: F401  (fixtures: real 1iep graphs and a tiny ensemble)

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
        self.procs[name] = subprocess.Popen(["nice", "-n", "10", str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=self.folder, start_new_session=True)

    def start(self) -> "DaskProcesses":
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
        for i in range(self.n_workers):
            self._start(f"w{i}", "worker", self.address, "--name", f"w{i}", "--nthreads", "1", "--nworkers", "1",
                        "--no-dashboard", "--memory-limit", "4GB", "--local-directory", str(self.folder / f"w{i}"))
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
    cfg = {"run": "dask", "library": {"path": str(repo / "resources" / "fixtures" / "nasty.smi")},
           "receptor": {"path": str(fixture / "1iep_receptorH.pdb")},
           "box": {"center": [15.19, 53.9, 16.92], "size": [14, 14, 14]},
           "score": {"model": str(model)}, "dask": dask}
    path = folder / f"config_{dask['scheduler']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _vscreen_score(run_dir: Path, config: Path, out: Path) -> pd.DataFrame:
    cmd = ["nice", "-n", "10", sys.executable, "-m", "pipeline.cli", "score", "--run-dir", str(run_dir),
           "--config", str(config), "--out", str(out)]
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
    remote_cfg = _config(repo, tmp_path, model, {"scheduler": "address", "address": dask_processes.address})
    assert load_config(remote_cfg)["dask"]["address"] == dask_processes.address

    remote = _vscreen_score(run, remote_cfg, tmp_path / "remote.parquet")
    local = _vscreen_score(run, _config(repo, tmp_path, model, {"scheduler": "local", "n_workers": 2}),
                           tmp_path / "local.parquet")

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
        client = make_client(DaskSettings.from_config(cfg["dask"]))
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
