"""MD refinement speed: seconds per pose and ns/day of the default protocol on the demo receptor.

Prepares the demo receptor (ACHE, ``resources/demo/ACHE_target.pdbqt``) with
:func:`pipeline.receptor.prepare_receptor` and docks the first ``--compounds``
compounds of the demo library (actives and decoys alternating) at exhaustiveness 2,
keeping the best pose of each; both are cached under ``benchmarks/.cache/md_speed/``
(git-ignored). Then refines every pose with :func:`pipeline.refine.refine_batch`
and the default :class:`~pipeline.refine.RefineSettings` (pocket-trimmed), and the
first ``--baseline-poses`` poses again with the whole receptor simulated
(``pocket_cutoff=None``, everything else equal) as the baseline: the report says
how many times faster trimming is, on the same poses.

Prints a table and writes ``benchmarks/results/md_speed[_<platform>].json``. The
machine's load average is recorded: on a shared machine other processes slow
every number down.

Run: ``python benchmarks/md_speed.py [--platform CPU|CUDA|OpenCL|auto] [--compounds 5]
[--baseline-poses 2] [--length-ps 2]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform as pyplatform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEMO = REPO / "resources" / "demo"
CACHE = HERE / ".cache" / "md_speed"


def demo_poses(n_compounds: int) -> tuple[Path, Path]:
    """Receptor PDB and docked SDF (best pose of ``n_compounds`` demo compounds), cached."""
    from rdkit import Chem

    from pipeline.box import read_vina_config
    from pipeline.docking import Docker, DockingSettings
    from pipeline.io import atomic_path
    from pipeline.ligands import LigandSettings, PreparationError, prepare_ligand
    from pipeline.receptor import prepare_receptor

    out = CACHE / f"n{n_compounds}"
    receptor, sdf = out / "receptor.pdb", out / "docked.sdf"
    if receptor.exists() and sdf.exists():
        return receptor, sdf
    out.mkdir(parents=True, exist_ok=True)
    prepare_receptor(DEMO / "ACHE_target.pdbqt", receptor, out / "receptor.pdbqt")
    library = pd.read_csv(DEMO / "library.csv")
    actives, decoys = library[library["active"] == 1], library[library["active"] == 0]
    order = [row for pair in zip(actives.itertuples(), decoys.itertuples()) for row in pair]
    docker = Docker(
        out / "receptor.pdbqt",
        read_vina_config(DEMO / "ACHE_conf.txt"),
        DockingSettings(exhaustiveness=2, n_poses=1, threads=2),
    )
    with atomic_path(sdf) as tmp:
        writer = Chem.SDWriter(str(tmp))
        written = 0
        for row in order:
            if written == n_compounds:
                break
            try:
                _, prepared = prepare_ligand(row.id, row.smiles, LigandSettings())
            except PreparationError:
                continue
            poses, energies = docker.dock(row.id, prepared["pdbqt"])
            poses[0].SetProp("pose", "1")
            poses[0].SetProp("docking_score", str(float(energies[0][0])))
            writer.write(poses[0])
            written += 1
        writer.close()
    return receptor, sdf


#: What the benchmarks' poses are docked into (:func:`demo_poses`).
DEMO_RECEPTOR = "ACHE demo (resources/demo/ACHE_target.pdbqt via pipeline.receptor.prepare_receptor)"


def machine_record(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict:
    """The machine and its load average before and after a run (other processes slow every number down)."""
    return dict(
        platform=pyplatform.platform(),
        cpus=os.cpu_count(),
        python=pyplatform.python_version(),
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in load_after],
    )


def run(receptor: Path, poses, settings, label: str) -> pd.DataFrame:
    """Refine ``poses`` with ``settings``; the table rows plus the setting's label."""
    from pipeline.io import read_failures
    from pipeline.refine import refine_batch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        refine_batch(receptor, poses, settings, tmp / "r.sdf", tmp / "r.parquet", tmp / "frames", tmp / "f.csv")
        table = pd.read_parquet(tmp / "r.parquet")
        failures = read_failures(tmp / "f.csv")
    for row in failures.itertuples():
        print(f"  {label}: {row.id} failed: {row.reason}")
    return table.assign(setting=label)


def ns_per_day(table: pd.DataFrame, length_ps: float) -> float:
    """Dynamics speed from the median seconds of dynamics per pose."""
    return length_ps / 1000.0 * 86400.0 / float(table["seconds_dynamics"].median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", default="CPU", choices=["auto", "CUDA", "OpenCL", "CPU", "Reference"])
    parser.add_argument("--compounds", type=int, default=5, help="demo compounds docked (best pose each)")
    parser.add_argument(
        "--baseline-poses",
        type=int,
        default=2,
        help="poses also refined with the whole receptor (the slow baseline); 0 skips it",
    )
    parser.add_argument("--length-ps", type=float, default=None, help="override the default dynamics length")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/md_speed[_<platform>].json)")
    args = parser.parse_args()

    from rdkit import Chem

    from pipeline.refine import RefineSettings, select_platform

    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    receptor, sdf = demo_poses(args.compounds)
    poses = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False) if m is not None]
    settings = RefineSettings(platform=args.platform)
    if args.length_ps:
        settings = replace(settings, length_ps=args.length_ps)
    platform_name = select_platform(settings.platform, settings.precision).name

    start = time.perf_counter()
    trimmed = run(receptor, poses, settings, "trimmed")
    baseline = None
    if args.baseline_poses:
        baseline = run(receptor, poses[: args.baseline_poses], replace(settings, pocket_cutoff=None), "full receptor")
    total = time.perf_counter() - start
    load_after = os.getloadavg()

    table = pd.concat([t for t in (trimmed, baseline) if t is not None], ignore_index=True)
    print(
        f"ACHE demo receptor, {len(poses)} docked poses, platform {platform_name}, "
        f"{settings.length_ps} ps at {settings.step_fs} fs (HMR {settings.hmr}), {settings.n_frames} frames"
    )
    print(
        f"{'setting':<14} {'id':<18} {'atoms':>6} {'min s':>6} {'dyn s':>6} {'pose s':>7} {'ns/day':>7} "
        f"{'RMSD':>5} {'E_int':>7}"
    )
    for r in table.itertuples():
        print(
            f"{r.setting:<14} {r.id:<18} {r.n_atoms_simulated:>6} {r.seconds_minimize:>6.1f} "
            f"{r.seconds_dynamics:>6.1f} {r.wall_seconds:>7.1f} "
            f"{settings.length_ps / 1000 * 86400 / r.seconds_dynamics:>7.2f} {r.rmsd_final:>5.2f} "
            f"{r.interaction_energy:>7.1f}"
        )

    summary = dict(
        setting="trimmed",
        poses=len(trimmed),
        median_seconds_per_pose=round(float(trimmed["wall_seconds"].median()), 1),
        max_seconds_per_pose=round(float(trimmed["wall_seconds"].max()), 1),
        median_atoms=int(trimmed["n_atoms_simulated"].median()),
        ns_per_day=round(ns_per_day(trimmed, settings.length_ps), 2),
    )
    result = dict(
        benchmark="md_speed",
        platform=platform_name,
        machine=machine_record(load_before, load_after),
        receptor=DEMO_RECEPTOR,
        settings=settings.to_dict(),
        trimmed=summary,
        total_seconds=round(total, 1),
        target_seconds_per_pose=60.0,
        meets_target=summary["median_seconds_per_pose"] <= 60.0,
        poses=table.drop(columns=["frames"]).round(3).to_dict("records"),
    )
    print(
        f"trimmed: median {summary['median_seconds_per_pose']} s per pose (max {summary['max_seconds_per_pose']}), "
        f"median {summary['median_atoms']} atoms, {summary['ns_per_day']} ns/day; target <= 60 s per pose: "
        f"{'met' if result['meets_target'] else 'NOT met'}"
    )
    if baseline is not None:
        same = trimmed[trimmed["id"].isin(baseline["id"])]
        ratio_pose = float(baseline["wall_seconds"].median() / same["wall_seconds"].median())
        ratio_dyn = float(baseline["seconds_dynamics"].median() / same["seconds_dynamics"].median())
        result["full_receptor"] = dict(
            setting="full receptor",
            poses=len(baseline),
            median_seconds_per_pose=round(float(baseline["wall_seconds"].median()), 1),
            median_atoms=int(baseline["n_atoms_simulated"].median()),
            ns_per_day=round(ns_per_day(baseline, settings.length_ps), 2),
        )
        result["trimming_speedup_per_pose"] = round(ratio_pose, 2)
        result["trimming_speedup_dynamics"] = round(ratio_dyn, 2)
        print(
            f"full receptor: median {result['full_receptor']['median_seconds_per_pose']} s per pose, "
            f"{result['full_receptor']['median_atoms']} atoms, {result['full_receptor']['ns_per_day']} ns/day; "
            f"trimming is {ratio_pose:.1f}x faster per pose ({ratio_dyn:.1f}x for dynamics) on the same poses"
        )
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    suffix = "" if platform_name == "CPU" else f"_{platform_name}"
    out = Path(args.out) if args.out else HERE / "results" / f"md_speed{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
