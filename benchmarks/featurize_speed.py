"""Featurization speed: docked complexes per second with 1 and 2 Dask workers.

Docks the first compounds of the demo library into the 1iep fixture once
(exhaustiveness 1, 14 Å box, up to 4 poses each) and caches the chunk under
``benchmarks/.cache/`` (git-ignored); then featurizes every pose, each
``--copies`` times under different ids
(``poses_per_compound`` = all) with a LocalCluster of 1 and of 2 worker processes
and reports complexes per second, both for the featurization call alone (cluster
already started) and including cluster start-up. Prints a table and writes
``benchmarks/results/featurize_speed.json``.

Run: ``python benchmarks/featurize_speed.py [--compounds 16] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIXTURE = REPO / "resources" / "fixtures" / "1iep"
CACHE = HERE / ".cache" / "featurize_speed"
CENTER = (15.19, 53.9, 16.92)


def docked_chunk(n_compounds: int) -> tuple[Path, Path, Path]:
    """Receptor PDB, docked SDF and pose table for ``n_compounds`` demo compounds (cached)."""
    from pipeline.box import Box
    from pipeline.docking import DockingSettings, dock_chunk
    from pipeline.ligands import LigandSettings, prepare_chunk
    from pipeline.receptor import prepare_receptor

    out = CACHE / f"n{n_compounds}"
    receptor, sdf, table = out / "receptor.pdb", out / "chunk_00000.sdf", out / "chunk_00000.parquet"
    if receptor.exists() and sdf.exists() and table.exists():
        return receptor, sdf, table
    out.mkdir(parents=True, exist_ok=True)
    prepare_receptor(FIXTURE / "1iep_receptorH.pdb", receptor, out / "receptor.pdbqt")
    library = pd.read_csv(REPO / "resources" / "demo" / "library.csv").head(n_compounds)
    library[["id", "smiles"]].to_parquet(out / "input.parquet", index=False)
    prepare_chunk(
        out / "input.parquet",
        out / "ligands.sdf",
        out / "ligands.parquet",
        out / "ligands.failures.csv",
        LigandSettings(),
    )
    dock_chunk(
        out / "ligands.parquet",
        out / "receptor.pdbqt",
        Box(CENTER, (14.0, 14.0, 14.0)),
        DockingSettings(exhaustiveness=1, n_poses=4, threads=2),
        sdf,
        table,
        out / "dock.failures.csv",
    )
    return receptor, sdf, table


def featurize_rate(poses, receptor: Path, n_workers: int | None, repeats: int, out: Path) -> dict:
    """Time :func:`featurize_batch` on ``poses``; ``n_workers=None`` runs in-process (no Dask)."""
    from pipeline.dask_cluster import DaskSettings, close_client, make_client
    from pipeline.featurize import FeaturizeSettings, featurize_batch

    settings = FeaturizeSettings(poses_per_compound=0)
    start = time.perf_counter()
    client = make_client(DaskSettings(n_workers=n_workers)) if n_workers else None
    startup = time.perf_counter() - start
    runs = []
    try:
        for k in range(repeats):
            t0 = time.perf_counter()
            summary = featurize_batch(
                poses, receptor, out / f"t{k}.parquet", out / f"g{k}.pt", out / f"f{k}.csv", settings, client
            )
            runs.append(time.perf_counter() - t0)
    finally:
        if client is not None:
            close_client(client)
    n = summary.featurized
    return dict(
        workers=n_workers or 0,
        poses=n,
        failed=summary.failed,
        cluster_startup_s=round(startup, 2),
        first_call_s=round(runs[0], 2),
        warm_call_s=round(min(runs[1:] or runs), 2),
        cold_rate=round(n / (startup + runs[0]), 2),
        first_call_rate=round(n / runs[0], 2),
        warm_rate=round(n / min(runs[1:] or runs), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compounds", type=int, default=16, help="demo compounds to dock (4 poses each)")
    parser.add_argument(
        "--copies",
        type=int,
        default=3,
        help="each docked pose is featurized this many times under different ids (Vina's energy "
        "range leaves fewer than 4 poses for many compounds)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="featurization calls per setting (first one cold)")
    parser.add_argument("--out", default=str(HERE / "results" / "featurize_speed.json"))
    args = parser.parse_args()

    import logging

    from pipeline.featurize import read_docked_poses

    logging.basicConfig(level=logging.WARNING)
    receptor, sdf, table = docked_chunk(args.compounds)
    docked, failures = read_docked_poses(sdf, table, poses_per_compound=0)
    poses = [replace(p, id=f"{p.id}~{k}") for k in range(args.copies) for p in docked]
    heavy = [p.ligand.GetNumHeavyAtoms() for p in poses]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (None, 1, 2):
            rows.append(featurize_rate(poses, receptor, workers, args.repeats, Path(tmp)))
    by_workers = {r["workers"]: r for r in rows}
    result = dict(
        benchmark="featurize_speed",
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version()),
        complexes=len(poses),
        distinct_poses=len(docked),
        unreadable=len(failures),
        ligand_heavy_atoms_mean=round(sum(heavy) / len(heavy), 1),
        receptor="1iep (pipeline.receptor.prepare_receptor)",
        runs=rows,
        scaling_2_vs_1_workers=round(by_workers[2]["warm_rate"] / by_workers[1]["warm_rate"], 2),
        target_rate_2_workers=10.0,
        meets_target=by_workers[2]["warm_rate"] >= 10.0,
        note="rate = featurized poses / s; warm = cluster started and receptor already read by every worker; "
        "first call = workers import the package and read the receptor; cold adds cluster start-up; "
        "workers 0 = in-process, no Dask",
    )
    print(
        f"{len(poses)} docked complexes ({len(docked)} distinct poses x {args.copies}; mean {result['ligand_heavy_atoms_mean']} ligand heavy atoms)"
    )
    print(
        f"{'workers':>8} {'startup s':>10} {'first s':>8} {'warm s':>7} {'cold /s':>8} {'first /s':>9} {'warm /s':>8}"
    )
    for r in rows:
        print(
            f"{r['workers'] or 'serial':>8} {r['cluster_startup_s']:>10} {r['first_call_s']:>8} {r['warm_call_s']:>7} "
            f"{r['cold_rate']:>8} {r['first_call_rate']:>9} {r['warm_rate']:>8}"
        )
    print(
        f"scaling 2 vs 1 workers (warm): {result['scaling_2_vs_1_workers']}x; "
        f"target >= 10/s with 2 workers: {'met' if result['meets_target'] else 'NOT met'}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
