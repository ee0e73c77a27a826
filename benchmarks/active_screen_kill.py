"""A real active screen (Vina docking, no lookup) killed with SIGKILL mid-round and resumed.

Library: 500 Enamine compounds (``shared/data/active_learning/Enamine10k.csv.gz``, a seeded
sample), split by ``vscreen split`` into chunks of 100; receptor: a dockstring target
prepared by ``vscreen prepare-receptor --dockstring``. The screen (``vscreen active``) docks
a random 30, then 3 rounds of 20 chosen by the default surrogate (90 compounds, 18 %).

Two screens with the same seed run from empty folders:

* ``whole``: uninterrupted;
* ``killed``: its process group gets SIGKILL while round 2 is docking (once the round's
  ligands are prepared and Vina has started), then the same command runs again.

Checks: the resumed screen finishes, every library row is in ``docked.csv``,
``predicted.csv`` or ``failures.csv``, and it docked the same compounds with the same scores
as the uninterrupted one. Docking is at ``--exhaustiveness`` (default 1: the check is the
resumption, not the scores) on one core. Writes ``benchmarks/results/active_screen_kill.json``.

Run (about 10-20 minutes on 2 cores)::

    python benchmarks/active_screen_kill.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.config import schema_default  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "active_learning"
WORK = REPO / "benchmarks" / ".cache" / "active_screen_kill"
RESULT = REPO / "benchmarks" / "results" / "active_screen_kill.json"


def vscreen(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def setup(work: Path, n: int, target: str, exhaustiveness: int) -> tuple[list[str], Path, Path]:
    """Library chunks, prepared receptor and config (reused when present)."""
    work.mkdir(parents=True, exist_ok=True)
    library = work / "library.csv"
    if not library.exists():
        smiles = pd.read_csv(DATA / "Enamine10k.csv.gz")["smiles"].sample(n, random_state=0)
        pd.DataFrame({"id": [f"EN{i:04d}" for i in range(n)], "smiles": smiles.to_numpy()}).to_csv(library, index=False)
    chunks = work / "chunks"
    if not chunks.exists():
        cmd = vscreen("split", str(library), "--out-dir", str(chunks), "--failures", str(work / "input_failures.csv"))
        subprocess.run([*cmd, "--chunk-size", "100"], check=True)
    receptor = work / "receptor"
    if not (receptor / "box.json").exists():
        subprocess.run(vscreen("prepare-receptor", "--dockstring", target, "--out-dir", str(receptor)), check=True)
    config = work / "config.yaml"
    cfg = dict(
        run="active_screen_kill",
        seed=42,
        library=dict(path=str(library)),
        receptor=dict(dockstring=target),
        box=dict(center=[0, 0, 0], size=[20, 20, 20]),  # required by the schema; the screen reads receptor/box.json
        docking=dict(exhaustiveness=exhaustiveness, n_poses=1, threads=1),
        screen=dict(strategy="active", active=dict(initial=30, batch=20, budget=90, max_rounds=3)),
    )
    config.write_text(yaml.safe_dump(cfg))
    return sorted(str(p) for p in chunks.glob("*.parquet")), receptor, config


def screen_cmd(chunks: list[str], receptor: Path, config: Path, out: Path) -> list[str]:
    return vscreen("active", *chunks, "--config", str(config), "--receptor-dir", str(receptor), "--out-dir", str(out))


def run_killed(cmd: list[str], out: Path, poll: float = 1.0) -> dict:
    """Start the screen, SIGKILL its process group once round 2 is docking; return what was seen."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    round_dir = out / "rounds" / "round_002"
    t0 = time.perf_counter()
    while proc.poll() is None:
        # round 2's ligands are prepared and its docking has started (no docked table yet)
        if (round_dir / "ligands.parquet").exists() and not (round_dir / "docked.parquet").exists():
            time.sleep(5.0)  # a few ligands into Vina's search
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return dict(killed=True, returncode=proc.returncode, after_s=round(time.perf_counter() - t0, 1))
        time.sleep(poll)
    return dict(killed=False, returncode=proc.returncode, after_s=round(time.perf_counter() - t0, 1))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compounds", type=int, default=500)
    parser.add_argument("--target", default="ACHE", help="dockstring target")
    parser.add_argument("--exhaustiveness", type=int, default=1)
    args = parser.parse_args(argv)
    work = WORK / f"{args.target}_n{args.compounds}_ex{args.exhaustiveness}"
    chunks, receptor, config = setup(work, args.compounds, args.target, args.exhaustiveness)
    outs = {name: work / name for name in ("whole", "killed")}
    timings = {}
    t0 = time.perf_counter()
    if not (outs["whole"] / "docked.csv").exists():
        subprocess.run(screen_cmd(chunks, receptor, config, outs["whole"]), check=True)
    timings["whole_s"] = round(time.perf_counter() - t0, 1)
    kill = {}
    if not (outs["killed"] / "docked.csv").exists():
        kill = run_killed(screen_cmd(chunks, receptor, config, outs["killed"]), outs["killed"])
        if not kill["killed"]:
            raise SystemExit(f"the screen ended before round 2 was docking: {kill}")
        state = json.loads((outs["killed"] / "state" / "state.json").read_text())
        kill["rounds_recorded_when_killed"] = len(state["rounds"])
        t1 = time.perf_counter()
        subprocess.run(screen_cmd(chunks, receptor, config, outs["killed"]), check=True)
        timings["resume_s"] = round(time.perf_counter() - t1, 1)
    tables = {
        name: {t: pd.read_csv(out / f"{t}.csv") for t in ("docked", "predicted", "failures")}
        for name, out in outs.items()
    }
    library = pd.read_csv(work / "library.csv")
    input_failures = pd.read_csv(work / "input_failures.csv")
    same = tables["whole"]["docked"].equals(tables["killed"]["docked"])
    killed = tables["killed"]
    accounted = sorted(list(killed["docked"].id) + list(killed["predicted"].id) + list(killed["failures"].id))
    accounted += list(input_failures.id)
    nothing_lost = sorted(accounted) == sorted(library.id)
    payload = dict(
        benchmark="active_screen_kill",
        target=args.target,
        compounds=len(library),
        exhaustiveness=args.exhaustiveness,
        surrogate=schema_default("screen.active", "surrogate"),
        kill=kill,
        timings=timings,
        docked=len(killed["docked"]),
        predicted=len(killed["predicted"]),
        failed=len(killed["failures"]) + len(input_failures),
        same_docked_compounds_and_scores=bool(same),
        every_row_accounted_for=bool(nothing_lost),
        best_scores=killed["docked"].head(5)[["id", "score", "round"]].to_dict("records"),
        date=time.strftime("%Y-%m-%d"),
    )
    print(json.dumps({k: v for k, v in payload.items() if k != "best_scores"}, indent=1))
    RESULT.write_text(json.dumps(payload, indent=1) + "\n")
    if not (same and nothing_lost):
        raise SystemExit("the resumed screen differs from the uninterrupted one")
    return payload


if __name__ == "__main__":
    main()
