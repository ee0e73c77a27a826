"""MD refinement throughput of a whole job: poses per hour with 1, 2, ... poses in flight.

``benchmarks/md_speed.py`` times one pose at a time (the median seconds a pose takes);
a job's throughput is what a user waits for: the wall time of ``refine_batch`` over its
poses, worker start (receptor parameterization, platform) included. This benchmark refines
the same docked demo poses (:func:`md_speed.demo_poses`, the ACHE receptor, cached) with
``refine.workers`` = 1 (the baseline) and each larger value asked for, in rotating order
over ``--rounds`` rounds, with the default protocol otherwise, and reports poses per hour of
the batch wall time and its ratio to one worker measured in the same round. With several
workers the CPU work of one pose (ligand parameters, system building, context creation,
the interaction-energy analysis) runs while another pose's dynamics run; on the CPU platform
each worker takes one core, so the ideal ratio there is the number of free cores. It also
checks that the refined tables agree between worker counts (same seeds: same frames).

    python benchmarks/md_throughput.py [--platform CPU|CUDA|OpenCL|auto] [--workers 1 2]
        [--compounds 8] [--rounds 1] [--out PATH]

Prints a table and writes ``benchmarks/results/md_throughput_<platform>.json``. The load
average before and after is recorded: other processes on the machine slow every number down.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from md_speed import DEMO_RECEPTOR, demo_poses, machine_record

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Columns that are timings, not results: everything else must agree between worker counts.
TIMING = ["wall_seconds", "seconds_minimize", "seconds_dynamics"]


def refine_job(receptor: Path, poses: list, settings) -> tuple[float, pd.DataFrame, int]:
    """Wall seconds of one ``refine_batch`` over ``poses``, its table and its failure count."""
    from pipeline.refine import refine_batch

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        _, failed = refine_batch(
            receptor, poses, settings, out / "r.sdf", out / "r.parquet", out / "frames", out / "f.csv"
        )
        seconds = time.perf_counter() - start
        table = pd.read_parquet(out / "r.parquet")
    return seconds, table, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", default="CPU", choices=["auto", "CUDA", "OpenCL", "CPU", "Reference"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (1 is always run)")
    parser.add_argument("--compounds", type=int, default=8, help="demo compounds docked (best pose each)")
    parser.add_argument("--rounds", type=int, default=1, help="each worker count this many times, rotating")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/md_throughput_<platform>.json)"
    )
    args = parser.parse_args()

    from rdkit import Chem

    from pipeline.refine import RefineSettings, select_platform

    logging.basicConfig(level=logging.WARNING)
    counts = sorted(set([1, *args.workers]))
    receptor, sdf = demo_poses(args.compounds)
    poses = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False) if m is not None]
    base = RefineSettings(platform=args.platform)
    platform_name = select_platform(base.platform, base.precision).name
    load_before = os.getloadavg()

    runs = []
    tables: dict[int, pd.DataFrame] = {}
    for round_index in range(args.rounds):
        order = counts[round_index % len(counts) :] + counts[: round_index % len(counts)]
        for workers in order:
            seconds, table, failed = refine_job(receptor, poses, replace(base, workers=workers))
            runs.append(dict(round=round_index, workers=workers, seconds=seconds, refined=len(table), failed=failed))
            tables.setdefault(workers, table)
            print(f"round {round_index}: {workers} worker(s): {len(table)} poses in {seconds:.1f} s")
    load_after = os.getloadavg()

    reference = tables[1].drop(columns=TIMING).reset_index(drop=True)
    same_results = {
        workers: bool(table.drop(columns=TIMING).reset_index(drop=True).equals(reference))
        for workers, table in tables.items()
    }
    frame = pd.DataFrame(runs)
    baseline = frame[frame["workers"] == 1].set_index("round")["seconds"]
    frame["ratio_vs_1_worker"] = frame["round"].map(baseline) / frame["seconds"]  # > 1: faster than one worker
    frame["poses_per_hour"] = 3600.0 * frame["refined"] / frame["seconds"]
    summary = []
    print(f"\n{len(poses)} ACHE demo poses, platform {platform_name}, {base.length_ps} ps each, {args.rounds} round(s)")
    print(f"{'workers':>7} {'s/job':>7} {'poses/h':>8} {'ratio vs 1':>10} {'same results':>12}")
    for workers, rows in frame.groupby("workers"):
        entry = dict(
            workers=int(workers),
            median_seconds=round(float(rows["seconds"].median()), 1),
            poses_per_hour=round(float(rows["poses_per_hour"].median()), 1),
            ratio_vs_1_worker=round(float(rows["ratio_vs_1_worker"].median()), 3),
            same_results_as_1_worker=same_results[int(workers)],
        )
        summary.append(entry)
        print(
            f"{entry['workers']:>7} {entry['median_seconds']:>7.1f} {entry['poses_per_hour']:>8.1f} "
            f"{entry['ratio_vs_1_worker']:>10.3f} {str(entry['same_results_as_1_worker']):>12}"
        )
    result = dict(
        benchmark="md_throughput",
        command="python benchmarks/md_throughput.py "
        + " ".join(
            [
                f"--platform {args.platform}",
                "--workers",
                *map(str, counts),
                f"--compounds {args.compounds}",
                f"--rounds {args.rounds}",
            ]
        ),
        platform=platform_name,
        machine=machine_record(load_before, load_after),
        receptor=DEMO_RECEPTOR,
        poses=len(poses),
        settings=base.to_dict(),
        summary=summary,
        runs=frame.round(3).to_dict("records"),
    )
    out = Path(args.out) if args.out else RESULTS / f"md_throughput_{platform_name.lower()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(HERE.parent) if out.is_relative_to(HERE.parent) else out}")


if __name__ == "__main__":
    main()
