"""The predict step of an active-learning round on 10^6 compounds, over Dask with 1 and 2 workers.

The library is synthetic: the Enamine 10k SMILES (``shared/data/active_learning``) repeated
to ``--compounds`` rows with distinct ids, written as chunk files of ``--file-rows`` rows
(row groups of 2,048) the way the workflow's ``split`` stage writes a library. The
surrogate is the pipeline's default active-learning model (``screen.active.surrogate``, ``gp``
since 2026-12-04: the MinMax-kernel Gaussian process; ``--surrogate mlp`` for the MLP ensemble)
fitted on 600 scored Enamine compounds; nothing is memoized, so every compound is parsed and
featurized as in a real round.

For each worker count: a ``LocalCluster`` of that many single-threaded worker processes runs
:func:`pipeline.active.distributed.predict_top_distributed` (one task per file, each
returning its best 1 % by greedy utility), timed from submission to the merged selection.
Memory: resident set size of the driver and every worker process, sampled every 0.2 s;
the peak of their sum is the round's footprint. Speed is a ratio against 1 worker in the
same run. The two proposals must be identical (checked).

Run (about 6 minutes on 2 cores)::

    python benchmarks/active_predict_dask.py

``--compounds 100000`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.active import SURROGATES, make_surrogate  # noqa: E402
from pipeline.active.acquisition import acquisition_function  # noqa: E402
from pipeline.active.distributed import predict_top_distributed  # noqa: E402
from pipeline.config import schema_default  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "active_learning"
CACHE = REPO / "benchmarks" / ".cache" / "active_predict"
RESULT = REPO / "benchmarks" / "results" / "active_predict_dask.json"


def write_library(n: int, file_rows: int, out: Path) -> list[Path]:
    """``n`` rows of repeated Enamine SMILES in files of ``file_rows`` rows (reused when already there)."""
    smiles = pd.read_csv(DATA / "Enamine10k.csv.gz")["smiles"].astype(str).to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, n, file_rows)):
        path = out / f"chunk_{k:05d}.parquet"
        stop = min(n, start + file_rows)
        if not path.exists():
            rows = np.arange(start, stop)
            frame = pd.DataFrame({"id": [f"S{i:07d}" for i in rows], "smiles": smiles[rows % len(smiles)]})
            tmp = path.with_suffix(".tmp")
            frame.to_parquet(tmp, row_group_size=2048, index=False)
            tmp.replace(path)
        paths.append(path)
    return paths


class MemorySampler:
    """Peak summed RSS of this process and the cluster's worker processes, sampled in a thread."""

    def __init__(self, pids: list[int], every: float = 0.2) -> None:
        import psutil

        self.processes = [psutil.Process()] + [psutil.Process(p) for p in pids]
        self.every, self.peak, self.peak_worker = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = []
            for proc in self.processes:
                try:
                    sizes.append(proc.memory_info().rss)
                except Exception:  # a process that just exited
                    sizes.append(0)
            self.peak = max(self.peak, sum(sizes))
            self.peak_worker = max([self.peak_worker, *sizes[1:]])
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(workers: int, surrogate, paths: list[Path], size: int) -> dict:
    """One timed distributed predict step on a fresh cluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    acquire = acquisition_function("greedy")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            with MemorySampler(pids) as memory:
                t0 = time.perf_counter()
                found = predict_top_distributed(client, surrogate, paths, set(), size, acquire, 0, 1)
                wall = time.perf_counter() - t0
    return dict(
        workers=workers,
        wall_s=round(wall, 1),
        compounds_per_s=round(found.predicted / wall, 0),
        predicted=found.predicted,
        tasks=found.tasks,
        no_features=len(found.no_features),
        peak_rss_total_gb=round(memory.peak / 2**30, 3),
        peak_rss_worker_gb=round(memory.peak_worker / 2**30, 3),
        selected=found.top.ids,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compounds", type=int, default=1_000_000)
    parser.add_argument("--file-rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--surrogate", default=schema_default("screen.active", "surrogate"), choices=SURROGATES)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    paths = write_library(args.compounds, args.file_rows, CACHE / f"n{args.compounds}_f{args.file_rows}")
    table = pd.read_csv(DATA / "Enamine10k_scores.csv.gz").dropna().sample(600, random_state=0)
    surrogate = make_surrogate(args.surrogate)
    surrogate.fit(table["smiles"].tolist(), table["score"].to_numpy(), seed=0)
    size = max(1, args.compounds // 100)  # a 1 % batch
    runs = [run(w, surrogate, paths, size) for w in args.workers]
    identical = all(r["selected"] == runs[0]["selected"] for r in runs)
    base = runs[0]["compounds_per_s"]
    print(
        f"{'workers':>7} {'wall s':>8} {'compounds/s':>12} {'speed-up':>9} {'peak RSS GB (all)':>18} {'per worker':>11}"
    )
    for r in runs:
        r["speedup_vs_first"] = round(r["compounds_per_s"] / base, 2)
        print(
            f"{r['workers']:>7} {r['wall_s']:>8.1f} {r['compounds_per_s']:>12.0f} {r['speedup_vs_first']:>9.2f}"
            f" {r['peak_rss_total_gb']:>18.2f} {r['peak_rss_worker_gb']:>11.2f}"
        )
    print(f"same proposal with every worker count: {identical}")
    payload = dict(
        benchmark="active_predict_dask",
        compounds=args.compounds,
        files=len(paths),
        file_rows=args.file_rows,
        batch=size,
        surrogate=f"{args.surrogate} (default settings), fitted on 600 Enamine scores",
        machine=f"{os.cpu_count()} cpu {platform.processor() or platform.machine()}",
        identical_proposals=identical,
        runs=[{k: v for k, v in r.items() if k != "selected"} for r in runs],
        date=time.strftime("%Y-%m-%d"),
    )
    if args.compounds == 1_000_000:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(payload, indent=1) + "\n")
    return payload


if __name__ == "__main__":
    main()
