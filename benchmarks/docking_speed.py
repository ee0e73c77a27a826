"""Docking throughput: the pipeline's docking stage against the Vina command-line programs.

Same work for every engine: the demo receptor (ACHE from dockstring, prepared by
:func:`pipeline.receptor.prepare_receptor`), its box, the first ``--ligands`` demo
compounds prepared once by :func:`pipeline.ligands.prepare_ligand` (the same PDBQT files),
one exhaustiveness, one seed, the same number of poses and the same CPU count.

* ``pipeline``: :func:`pipeline.docking.dock_chunk` (Vina 1.2 Python bindings, maps computed
  once per chunk, poses turned back into molecules by meeko and written as SDF + Parquet);
* ``vina CLI``: ``vina`` 1.2.x from Debian's ``autodock-vina`` package in batch mode
  (``--batch``: maps computed once for all ligands, its fastest way to dock many ligands);
* ``vina 1.1.2``: the binary shipped in the ``dockstring`` package, one call per ligand
  (1.1.2 has no batch mode), the engine behind most published Vina screens.

The engines run one after another in rotating order, ``--rounds`` times; the rate of an
engine is ligands / median seconds per round. The ratio against the 1.2 CLI is the figure.
The best-pose scores are compared as a check that the engines did the same work.

Run: ``python benchmarks/docking_speed.py [--ligands 8] [--exhaustiveness 8] [--cpu 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipeline.box import Box

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEMO = REPO / "resources" / "demo"
CACHE = HERE / ".cache" / "docking_speed"
SEED = 42
N_POSES = 9


class EngineMissing(RuntimeError):
    """A baseline engine is not installed (the message says how to install it)."""


def vina_cli() -> Path:
    """Debian's ``vina`` (package ``autodock-vina``); raises :class:`EngineMissing`."""
    found = shutil.which("vina")
    if not found:
        raise EngineMissing("the 'vina' program is missing: apt-get install autodock-vina")
    return Path(found)


def vina_112() -> Path:
    """The Vina 1.1.2 binary shipped in the dockstring package."""
    import dockstring

    path = Path(dockstring.__file__).parent / "resources" / "bin" / "vina_linux"
    if not path.exists():
        raise EngineMissing(f"dockstring has no Vina binary at {path}")
    return path


def engine_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"v?(\d+\.\d+\.\d+)", out)
    return match.group(1) if match else out.strip()


def prepared_inputs(n_ligands: int) -> tuple[Path, Box, Path]:
    """Receptor PDBQT, box and the prepared-ligand table (``id, pdbqt``) of ``n_ligands`` demo compounds (cached)."""
    from pipeline.box import read_vina_config
    from pipeline.ligands import LigandSettings, prepare_chunk
    from pipeline.receptor import prepare_receptor

    out = CACHE / f"n{n_ligands}"
    receptor, ligands = out / "receptor.pdbqt", out / "ligands.parquet"
    box = read_vina_config(DEMO / "ACHE_conf.txt")
    if receptor.exists() and ligands.exists():
        return receptor, box, ligands
    out.mkdir(parents=True, exist_ok=True)
    prepare_receptor(DEMO / "ACHE_target.pdbqt", out / "receptor.pdb", receptor)
    library = pd.read_csv(DEMO / "library.csv").head(n_ligands)
    library[["id", "smiles"]].to_parquet(out / "input.parquet", index=False)
    prepare_chunk(out / "input.parquet", out / "ligands.sdf", ligands, out / "ligands.failures.csv", LigandSettings())
    return receptor, box, ligands


def _box_args(box) -> list[str]:
    (cx, cy, cz), (sx, sy, sz) = box.center, box.size
    return [
        "--center_x",
        str(cx),
        "--center_y",
        str(cy),
        "--center_z",
        str(cz),
        "--size_x",
        str(sx),
        "--size_y",
        str(sy),
        "--size_z",
        str(sz),
    ]


def cli_batch_command(
    binary: Path,
    receptor: Path,
    box,
    ligand_files: list[Path],
    exhaustiveness: int,
    cpu: int,
    out: Path,
    seed: int = SEED,
) -> list[str]:
    """``vina --batch`` over ``ligand_files``, writing ``<stem>_out.pdbqt`` files to ``out``."""
    return [
        str(binary),
        "--receptor",
        str(receptor),
        *_box_args(box),
        "--exhaustiveness",
        str(exhaustiveness),
        "--cpu",
        str(cpu),
        "--seed",
        str(seed),
        "--num_modes",
        str(N_POSES),
        "--verbosity",
        "0",
        "--dir",
        str(out),
        "--batch",
        *map(str, ligand_files),
    ]


def _best_scores_pdbqt(files: list[Path]) -> dict[str, float]:
    """Best (first) ``REMARK VINA RESULT`` of each output PDBQT, by ligand file stem."""
    scores = {}
    for path in files:
        for line in path.read_text().splitlines():
            if line.startswith("REMARK VINA RESULT:"):
                scores[path.stem.removesuffix("_out")] = float(line.split()[3])
                break
    return scores


def run_pipeline(receptor: Path, box, ligands: Path, exhaustiveness: int, cpu: int, work: Path) -> tuple[float, dict]:
    """Seconds for :func:`dock_chunk` on the ligand table; best score per id."""
    from pipeline.docking import DockingSettings, dock_chunk

    settings = DockingSettings(exhaustiveness=exhaustiveness, n_poses=N_POSES, seed=SEED, threads=cpu)
    start = time.perf_counter()
    dock_chunk(ligands, receptor, box, settings, work / "docked.sdf", work / "docked.parquet", work / "failures.csv")
    seconds = time.perf_counter() - start
    table = pd.read_parquet(work / "docked.parquet")
    return seconds, table.groupby("id")["docking_score"].min().to_dict()


def write_ligand_files(ligands: Path, folder: Path) -> list[Path]:
    """One PDBQT file per prepared ligand, named by its id."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.read_parquet(ligands, columns=["id", "pdbqt"])
    files = []
    for cid, pdbqt in zip(table["id"], table["pdbqt"]):
        files.append(folder / f"{cid}.pdbqt")
        files[-1].write_text(pdbqt)
    return files


def run_cli_batch(
    binary: Path, receptor: Path, box, ligand_files: list[Path], exhaustiveness: int, cpu: int, work: Path
) -> tuple[float, dict]:
    """Seconds for one ``vina --batch`` call over every ligand; best score per id."""
    out = work / "cli"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(
        cli_batch_command(binary, receptor, box, ligand_files, exhaustiveness, cpu, out),
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    return seconds, _best_scores_pdbqt(sorted(out.glob("*_out.pdbqt")))


def run_cli_per_ligand(
    binary: Path, receptor: Path, box, ligand_files: list[Path], exhaustiveness: int, cpu: int, work: Path
) -> tuple[float, dict]:
    """Seconds for one call per ligand (Vina 1.1.2 has no batch mode); best score per id."""
    out = work / "v112"
    out.mkdir(parents=True, exist_ok=True)
    outputs = []
    start = time.perf_counter()
    for ligand in ligand_files:
        outputs.append(out / f"{ligand.stem}_out.pdbqt")
        subprocess.run(
            [
                str(binary),
                "--receptor",
                str(receptor),
                "--ligand",
                str(ligand),
                *_box_args(box),
                "--exhaustiveness",
                str(exhaustiveness),
                "--cpu",
                str(cpu),
                "--seed",
                str(SEED),
                "--num_modes",
                str(N_POSES),
                "--out",
                str(outputs[-1]),
            ],
            check=True,
            capture_output=True,
        )
    seconds = time.perf_counter() - start
    return seconds, _best_scores_pdbqt(outputs)


ENGINES = ("pipeline", "vina CLI", "vina 1.1.2")


def docking_benchmark(n_ligands: int = 8, exhaustiveness: int = 8, cpu: int = 2, rounds: int = 1) -> dict:
    """Time the three engines on the same work; return the JSON-ready result.

    Returns a dict with ``engines`` (per engine: version, seconds per round, ligands/hour)
    and ``ratio_pipeline_vs_cli`` (ligands/hour of the pipeline over the 1.2 CLI's).
    """
    receptor, box, ligands = prepared_inputs(n_ligands)
    binaries = {"vina CLI": vina_cli(), "vina 1.1.2": vina_112()}
    import vina as vina_bindings

    versions = {
        "pipeline": f"vina {vina_bindings.__version__} (Python bindings)",
        **{name: f"vina {engine_version(b)}" for name, b in binaries.items()},
    }
    seconds = {name: [] for name in ENGINES}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = write_ligand_files(ligands, tmp / "ligands")
        for r in range(rounds):
            order = ENGINES[r % 3 :] + ENGINES[: r % 3]
            for name in order:
                work = tmp / f"r{r}-{name.replace(' ', '_')}"
                work.mkdir()
                if name == "pipeline":
                    s, best = run_pipeline(receptor, box, ligands, exhaustiveness, cpu, work)
                elif name == "vina CLI":
                    s, best = run_cli_batch(binaries[name], receptor, box, files, exhaustiveness, cpu, work)
                else:
                    s, best = run_cli_per_ligand(binaries[name], receptor, box, files, exhaustiveness, cpu, work)
                seconds[name].append(round(s, 2))
                scores[name] = best
                print(f"  docking round {r + 1}/{rounds}: {name:<11} {s:7.1f} s for {len(files)} ligands", flush=True)
    n = len(files)
    engines = {
        name: dict(
            version=versions[name],
            seconds=seconds[name],
            ligands_per_hour=round(3600 * n / statistics.median(seconds[name]), 1),
        )
        for name in ENGINES
    }
    common = sorted(set.intersection(*(set(s) for s in scores.values())))
    score_table = pd.DataFrame({name: [scores[name][c] for c in common] for name in ENGINES}, index=common)
    return dict(
        receptor="ACHE demo (resources/demo/ACHE_target.pdbqt, pipeline-prepared PDBQT)",
        box=dict(center=list(box.center), size=list(box.size)),
        ligands=n,
        exhaustiveness=exhaustiveness,
        cpu=cpu,
        seed=SEED,
        n_poses=N_POSES,
        rounds=rounds,
        engines=engines,
        ratio_pipeline_vs_cli=round(
            engines["pipeline"]["ligands_per_hour"] / engines["vina CLI"]["ligands_per_hour"], 3
        ),
        ratio_pipeline_vs_112=round(
            engines["pipeline"]["ligands_per_hour"] / engines["vina 1.1.2"]["ligands_per_hour"], 3
        ),
        best_score_mean_abs_difference_vs_cli=dict(
            pipeline=round(float((score_table["pipeline"] - score_table["vina CLI"]).abs().mean()), 3),
            vina_112=round(float((score_table["vina 1.1.2"] - score_table["vina CLI"]).abs().mean()), 3),
        ),
        note="ligands_per_hour = ligands / median seconds of a round; every engine docks the same prepared PDBQT "
        "files with the same box, exhaustiveness, seed, poses and CPU count; the pipeline's time includes "
        "meeko pose reconstruction and writing SDF + Parquet",
    )


def print_docking(result: dict) -> None:
    print(
        f"docking: {result['ligands']} ligands, exhaustiveness {result['exhaustiveness']}, {result['cpu']} CPUs, "
        f"{result['rounds']} round(s)"
    )
    for name, e in result["engines"].items():
        print(f"  {name:<11} {e['version']:<36} {e['ligands_per_hour']:>8.1f} ligands/h")
    print(
        f"  pipeline / vina CLI = {result['ratio_pipeline_vs_cli']:.3f}; pipeline / vina 1.1.2 = "
        f"{result['ratio_pipeline_vs_112']:.3f}; mean |best score - CLI's|: "
        f"{result['best_score_mean_abs_difference_vs_cli']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ligands", type=int, default=8)
    parser.add_argument("--exhaustiveness", type=int, default=8)
    parser.add_argument("--cpu", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "docking_speed.json"))
    args = parser.parse_args()
    result = docking_benchmark(args.ligands, args.exhaustiveness, args.cpu, args.rounds)
    print_docking(result)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
