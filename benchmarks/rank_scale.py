"""``rank`` and ``report`` at scale: peak memory and time on a synthetic run of a million compounds.

Generates a run folder of ``--n`` input rows (default 1,000,000) without running any
engine: chunk tables, ``failures/input.csv``, ligand tables, docked tables and SD files
(1-3 poses per compound), feature tables with realistic columns (the 12 ``n_<Type>``
counts and ~30 ``RESIDUE:Interaction`` booleans, the set varying from chunk to chunk),
four refined batches (tables, SD files, features), ``scores.parquet`` and
``scores.failures.csv``, the manifests, a labelled library and the resolved config.
Every failure path is exercised: rows rejected at input (duplicate ids among them),
prepare and dock failures, docked poses that cannot be featurized or scored (with
``rank_by: gnn`` those compounds become failures), MD failures and refined
featurization and scoring failures (warnings). Folders are cached under
``benchmarks/.cache/rank_scale/`` (git-ignored) and reused.

Then runs ``vscreen rank`` and ``vscreen report`` as child processes and records each
one's peak resident memory (``/usr/bin/time -v`` when present, else the children's
``ru_maxrss`` of a small wrapper process) and wall time, checks that every input row is
in ``ranking.csv`` or ``failures.csv`` exactly once, prints a table and writes
``benchmarks/results/rank_scale-<machine>-<date>.json``. The limit checked is the
issue's: 2 GB peak RSS for each command at 10^6 compounds.

Speed has a same-run baseline: the same commands on a tenth of the library
(``--baseline-n``, default ``n / 10`` for a million rows or more), reported as seconds per 10^5
compounds at both sizes, so a super-linear step shows as a ratio above 1.

Run: ``python benchmarks/rank_scale.py [--n 1000000] [--chunk-size 1000]``; quick check:
``python benchmarks/rank_scale.py --n 10000``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache" / "rank_scale"
LIMIT_MB = 2048.0
FORMAT = 3  # bump when the generated folder changes, so cached folders are made again

# Fates of an accepted compound (rates per accepted compound)
OK, PREPARE_FAILS, DOCK_FAILS, FEATURIZE_FAILS, SCORE_FAILS = range(5)
RATES = {PREPARE_FAILS: 0.01, DOCK_FAILS: 0.005, FEATURIZE_FAILS: 0.003, SCORE_FAILS: 0.001}
INPUT_REJECTED = 0.005
# Fates of a compound selected for MD
REFINED, REFINE_FAILS, REFINED_FEATURIZE_FAILS = range(3)
POOL_SMILES = [
    "CCOc1ccc(cc1)C(=O)N",
    "Oc1ccc(Cl)cc1",
    "Cc1ccccc1N",
    "OC(=O)CCc1ccccc1",
    "CC(=O)Nc1ccc(O)cc1",
    "c1ccc2[nH]ccc2c1",
    "CN1CCN(CC1)c1ccccc1",
    "O=C(O)c1ccccc1O",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "COc1ccc(CCN)cc1",
    "Clc1ccc(cc1)C(=O)N",
    "NC(=O)c1cccnc1",
]
RESIDUES = [
    "TRP86.A",
    "TYR124.A",
    "SER125.A",
    "TRP286.A",
    "PHE295.A",
    "ARG296.A",
    "PHE297.A",
    "TYR337.A",
    "PHE338.A",
    "TYR341.A",
    "HIS447.A",
    "GLY121.A",
    "GLU202.A",
    "ASP74.A",
    "TYR72.A",
    "LEU289.A",
]


# ----------------------------------------------------------------------------- the synthetic run


def _pool() -> list[dict]:
    """Small molecules with hydrogens and 3D coordinates: the SD records and ligand columns are copies of these."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, Descriptors

    out = []
    for number, smiles in enumerate(POOL_SMILES):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=number + 1)
        block = Chem.MolToMolBlock(mol)
        heavy = Chem.RemoveHs(mol)
        pdbqt = "".join(
            f"ATOM  {i + 1:5d}  {a.GetSymbol():<3s} UNL     1    {0.0:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00"
            f"    +0.000 {a.GetSymbol():<2s}\n"
            for i, a in enumerate(mol.GetAtoms())
        )
        out.append(
            dict(
                smiles=smiles,
                prepared=Chem.MolToSmiles(heavy),
                heavy=heavy.GetNumAtoms(),
                charge=Chem.GetFormalCharge(heavy),
                rotatable=int(Descriptors.NumRotatableBonds(heavy)),
                body=block.split("\n", 1)[1].rsplit("M  END", 1)[0] + "M  END\n",
                pdbqt=pdbqt,
            )
        )
    return out


def _pairs() -> tuple[list[str], np.ndarray]:
    """The residue-interaction vocabulary and how often each pair occurs (a few are rare, so chunks differ)."""
    from pipeline.interactions import fingerprint_sort_key

    kinds = ["Hydrophobic", "HBDonor", "HBAcceptor", "PiStacking", "Cationic", "Anionic", "CationPi", "XBDonor"]
    rng = np.random.default_rng(11)
    pairs = sorted(
        {f"{RESIDUES[i % len(RESIDUES)]}:{kinds[(i * 7 + i // len(RESIDUES)) % len(kinds)]}" for i in range(44)},
        key=fingerprint_sort_key,
    )
    rates = rng.uniform(0.08, 0.35, len(pairs))
    rates[rng.choice(len(pairs), 10, replace=False)] = 0.001  # absent from many chunks
    return pairs, rates


def _failures(rows: list[tuple[str, str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["id", "stage", "reason"]).to_csv(path, index=False)


def _parquet(columns: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _sd_record(name: str, body: str, props: dict) -> str:
    return name + "\n" + body + "".join(f"> <{k}>\n{v}\n\n" for k, v in props.items()) + "$$$$\n"


def _feature_columns(
    ids: list[str],
    source: str,
    present: np.ndarray,
    pairs: list[str],
    values: np.ndarray | None,
    types: tuple[str, ...],
) -> dict:
    """A feature table as :func:`pipeline.featurize.fingerprint_table` writes it (pairs seen in the table only)."""
    seen = np.nonzero(present.any(axis=0))[0]
    columns: dict = {
        "id": pa.array(ids, pa.string()),
        "pose": pa.array(np.ones(len(ids), np.int64)),
        "source": pa.array([source] * len(ids), pa.string()),
    }
    kind = np.array([p.split(":")[1] for p in pairs])
    for name in types:
        count = present[:, kind == name].sum(axis=1)
        columns[f"n_{name}"] = count.astype(np.float64 if values is not None else np.int64)
    for j in seen:
        columns[pairs[j]] = present[:, j] if values is None else np.where(present[:, j], values[:, j], 0.0)
    return columns


def generate_run(root: str | os.PathLike, n: int, chunk_size: int = 1000, seed: int = 7) -> dict:
    """Write a synthetic, ranked-ready run folder of ``n`` input rows to ``root`` (see the module docstring).

    Returns
    -------
    dict
        Counts: ``rows``, ``accepted``, ``chunks``, ``selected``, and how many compounds
        take each failure path.
    """
    from pipeline.config import validate_config, write_resolved_config
    from pipeline.interactions import INTERACTION_TYPES
    from pipeline.layout import RunLayout, write_manifest

    root = Path(root)
    layout = RunLayout(root)
    rng = np.random.default_rng(seed)
    pool, (pairs, rates) = _pool(), _pairs()

    # input rows: a few rejected (half of them duplicates of the accepted id just before)
    rejected = rng.random(n) < INPUT_REJECTED
    rejected[0] = False
    accepted_rows = np.nonzero(~rejected)[0]
    m = len(accepted_rows)
    fate = np.full(m, OK)
    roll = rng.random(m)
    edge = 0.0
    for kind, rate in RATES.items():
        fate[(roll >= edge) & (roll < edge + rate)] = kind
        edge += rate
    n_poses = rng.integers(1, 4, m)
    best = np.round(rng.normal(-7.0, 1.2, m), 3)
    mol = rng.integers(0, len(pool), m)
    gnn = 1 / (1 + np.exp(1.3 * (best + 7.0) + rng.normal(0, 0.8, m)))
    spread = rng.uniform(0.01, 0.2, m)
    active = rng.random(m) < 0.02 * gnn / gnn.mean()
    ids = np.array([f"ZINC{j:09d}" for j in accepted_rows], dtype=object)

    docked = np.isin(fate, [OK, FEATURIZE_FAILS, SCORE_FAILS])
    n_selected = min(1000, max(8, m // 100))
    # selection as `vscreen select` makes it: best docking score first, ties by id (= by row here)
    selected = np.lexsort((np.arange(m), np.where(docked, best, np.inf)))[:n_selected]
    md_fate = rng.choice([REFINED, REFINE_FAILS, REFINED_FEATURIZE_FAILS], n_selected, p=[0.85, 0.1, 0.05])
    md_score_fails = (rng.random(n_selected) < 0.05) & (md_fate == REFINED)

    chunks = [f"chunk_{i:05d}" for i in range(math.ceil(m / chunk_size))]
    score_parts, score_failures = [], []
    for index, chunk in enumerate(chunks):
        at = np.arange(index * chunk_size, min(m, (index + 1) * chunk_size))
        cid = list(ids[at])
        _parquet(
            {
                "id": pa.array(cid, pa.string()),
                "input_id": pa.array(cid, pa.string()),
                "smiles": pa.array([pool[k]["smiles"] for k in mol[at]], pa.string()),
                "line": pa.array(accepted_rows[at] + 2, pa.int64()),
            },
            layout.chunk_table(chunk),
        )
        prepared = at[fate[at] != PREPARE_FAILS]
        _parquet(
            {
                "id": pa.array(list(ids[prepared]), pa.string()),
                "smiles": [pool[k]["smiles"] for k in mol[prepared]],
                "prepared_smiles": [pool[k]["prepared"] for k in mol[prepared]],
                "heavy_atoms": pa.array([pool[k]["heavy"] for k in mol[prepared]], pa.int64()),
                "formal_charge": pa.array([pool[k]["charge"] for k in mol[prepared]], pa.int64()),
                "rotatable_bonds": pa.array([pool[k]["rotatable"] for k in mol[prepared]], pa.int64()),
                "pdbqt": [f"REMARK  Name = {ids[i]}\n" + pool[mol[i]]["pdbqt"] for i in prepared],
            },
            layout.ligand_table(chunk),
        )
        _failures(
            [
                (ids[i], "prepare", f"too large: {81 + i % 40} heavy atoms (limit ligands.max_heavy_atoms = 80)")
                for i in at[fate[at] == PREPARE_FAILS]
            ],
            layout.ligand_failures(chunk),
        )
        _failures(
            [(ids[i], "dock", "crashed: the docking worker died (signal 11)") for i in at[fate[at] == DOCK_FAILS]],
            layout.docked_failures(chunk),
        )
        poses = at[docked[at]]
        pose_rows = {"id": [], "pose": [], "docking_score": []}
        records = []
        for i in poses:
            for pose in range(1, n_poses[i] + 1):
                score = round(best[i] + 0.35 * (pose - 1), 3)
                pose_rows["id"].append(ids[i])
                pose_rows["pose"].append(pose)
                pose_rows["docking_score"].append(score)
                records.append(
                    _sd_record(
                        ids[i],
                        pool[mol[i]]["body"],
                        {"pose": pose, "docking_score": score, "inter": score - 0.5, "intra": -0.2},
                    )
                )
        k = len(pose_rows["id"])
        scores = np.array(pose_rows["docking_score"], dtype=float)
        _parquet(
            {
                "id": pa.array(pose_rows["id"], pa.string()),
                "pose": pa.array(pose_rows["pose"], pa.int64()),
                "docking_score": scores,
                "inter": scores - 0.5,
                "intra": np.full(k, -0.2),
                "torsional": np.full(k, 0.6),
                "intra_best_pose": np.full(k, -0.2),
                "dock_seconds": rng.uniform(5, 40, k),
            },
            layout.docked_table(chunk),
        )
        layout.docked_sdf(chunk).write_text("".join(records))
        featurized = poses[fate[poses] != FEATURIZE_FAILS]
        present = rng.random((len(featurized), len(pairs))) < rates
        _parquet(
            _feature_columns(list(ids[featurized]), "docked", present, pairs, None, INTERACTION_TYPES),
            layout.feature_table(chunk),
        )
        _failures(
            [
                (ids[i], "featurize", "pose 1: ProLIF could not read the pose: explicit valence of N is 4")
                for i in poses[fate[poses] == FEATURIZE_FAILS]
            ],
            layout.feature_failures(chunk),
        )
        scored = featurized[fate[featurized] != SCORE_FAILS]
        score_parts.append(
            pd.DataFrame(
                {
                    "id": ids[scored],
                    "pose": 1,
                    "source": "docked",
                    "gnn_score": gnn[scored],
                    "gnn_spread": spread[scored],
                }
            )
        )
        score_failures += [
            (
                ids[i],
                "score",
                f"graph file graphs/{chunk}.pt cannot be read: RuntimeError: "
                "PytorchStreamReader failed reading zip archive",
            )
            for i in featurized[fate[featurized] == SCORE_FAILS]
        ]

    batch_size = math.ceil(n_selected / 4)
    batches = [f"batch_{i:05d}" for i in range(math.ceil(n_selected / batch_size))]
    warnings = []
    for index, name in enumerate(batches):
        part = np.arange(index * batch_size, min(n_selected, (index + 1) * batch_size))
        at = selected[part]
        _parquet(
            {
                "id": pa.array(list(ids[at]), pa.string()),
                "pose": pa.array(np.ones(len(at), np.int64)),
                "docking_score": best[at],
                "compound_rank": pa.array(part + 1, pa.int64()),
            },
            layout.batch_table(name),
        )
        ok = part[md_fate[part] != REFINE_FAILS]
        rows = selected[ok]
        energy = np.round(rng.normal(-30, 6, len(rows)), 4)
        refined = {
            "id": pa.array(list(ids[rows]), pa.string()),
            "pose": pa.array(np.ones(len(rows), np.int64)),
            "docking_score": best[rows],
            "rmsd_mean": rng.uniform(0.3, 3, len(rows)),
            "rmsd_max": rng.uniform(1, 4, len(rows)),
            "rmsd_final": rng.uniform(0.3, 3, len(rows)),
            "pocket_backbone_rmsd": rng.uniform(0.2, 1, len(rows)),
            "interaction_energy": energy,
            "interaction_energy_std": rng.uniform(1, 4, len(rows)),
            "potential_energy_final": energy * 40,
            "n_frames": pa.array(np.full(len(rows), 8), pa.int64()),
            "platform": ["CUDA"] * len(rows),
            "wall_seconds": rng.uniform(20, 60, len(rows)),
            "n_atoms_simulated": pa.array(np.full(len(rows), 2400), pa.int64()),
            "frames": [f"{ids[i]}_1" for i in rows],
            "ligand_forcefield": ["openff-2.2.0"] * len(rows),
            "solvent": ["implicit"] * len(rows),
            "seconds_minimize": np.full(len(rows), 2.0),
            "seconds_dynamics": np.full(len(rows), 30.0),
        }
        _parquet(refined, layout.refined_table(name))
        layout.refined_sdf(name).write_text(
            "".join(
                _sd_record(ids[i], pool[mol[i]]["body"], {"pose": 1, "docking_score": best[i], "interaction_energy": e})
                for i, e in zip(rows, energy)
            )
        )
        _failures(
            [
                (ids[selected[p]], "refine", "pose 1: simulation blew up: NaN potential energy at step 1200")
                for p in part[md_fate[part] == REFINE_FAILS]
            ],
            layout.refined_failures(name),
        )
        good = part[md_fate[part] == REFINED]
        present = rng.random((len(good), len(pairs))) < rates * 1.5
        persistence = np.round(rng.integers(1, 9, (len(good), len(pairs))) / 8, 3)
        _parquet(
            _feature_columns(list(ids[selected[good]]), "refined", present, pairs, persistence, INTERACTION_TYPES),
            layout.feature_table(name),
        )
        _failures(
            [
                (ids[selected[p]], "featurize", "pose 1: frame 3: ProLIF could not read the frame")
                for p in part[md_fate[part] == REFINED_FEATURIZE_FAILS]
            ],
            layout.feature_failures(name),
        )
        scored = good[~md_score_fails[good]]
        score_parts.append(
            pd.DataFrame(
                {
                    "id": ids[selected[scored]],
                    "pose": 1,
                    "source": "refined",
                    "gnn_score": np.clip(gnn[selected[scored]] + 0.05, 0, 1),
                    "gnn_spread": spread[selected[scored]],
                }
            )
        )
        warnings += [
            (
                ids[selected[p]],
                "score",
                f"refined batch {name}: graph file graphs/{name}.pt cannot be read: "
                "RuntimeError: bad zip; ranked by its docked pose",
            )
            for p in good[md_score_fails[good]]
        ]

    scores = pd.concat(score_parts, ignore_index=True).sort_values(["id", "pose", "source"], kind="mergesort")
    for column in ("affinity", "affinity_spread"):
        scores[column] = np.nan
    scores["p_active"], scores["p_active_spread"] = scores["gnn_score"], scores["gnn_spread"]
    scores.to_parquet(layout.scores, index=False)
    _failures(score_failures + warnings, layout.score_failures)

    rejected_rows = np.nonzero(rejected)[0]
    previous = np.searchsorted(accepted_rows, rejected_rows) - 1
    input_rows = [
        (
            ids[p],
            "input",
            f"line {r + 2}: duplicate id '{ids[p]}' (id '{ids[p]}' first used on line "
            f"{accepted_rows[p] + 2}); this row was not screened - give it a unique id",
        )
        if r % 2
        else (f"row{r + 2}", "input", f"line {r + 2}: empty line")
        for r, p in zip(rejected_rows, previous)
    ]
    _failures(input_rows, layout.input_failures)
    write_manifest(layout.chunks_dir, "chunks", chunks, rows=int(n), accepted=int(m), failed=int(len(rejected_rows)))
    write_manifest(layout.batches_dir, "batches", batches)
    layout.receptor_dir.mkdir(parents=True, exist_ok=True)
    layout.receptor_report.write_text(json.dumps({"n_residues": 527, "n_atoms": 8340, "chain_breaks": []}))
    layout.box_json.write_text(json.dumps({"center": [2.8, 64.9, 67.6], "size": [22.5, 22.5, 22.5]}))
    library = root / "library.csv"
    pd.DataFrame({"id": ids, "smiles": [pool[k]["smiles"] for k in mol], "active": active.astype(int)}).to_csv(
        library, index=False
    )
    config = validate_config(
        {
            "run": root.name,
            "library": {"path": str(library), "chunk_size": chunk_size},
            "receptor": {"path": "receptor.pdb"},
            "box": {"center": [2.8, 64.9, 67.6], "size": [22.5, 22.5, 22.5]},
            "refine": {"top_n": n_selected, "batch_size": batch_size},
            "score": {"enabled": True, "model": "default", "rank_by": "gnn"},
            "report": {"top_n": 25},
        }
    )
    write_resolved_config(config, layout.config)
    counts = {
        name: int((fate == kind).sum())
        for name, kind in (
            ("prepare_fails", PREPARE_FAILS),
            ("dock_fails", DOCK_FAILS),
            ("featurize_fails", FEATURIZE_FAILS),
            ("score_fails", SCORE_FAILS),
        )
    }
    return dict(
        format=FORMAT,
        rows=int(n),
        accepted=int(m),
        rejected=int(len(rejected_rows)),
        chunks=len(chunks),
        chunk_size=chunk_size,
        selected=int(n_selected),
        batches=len(batches),
        refine_fails=int((md_fate == REFINE_FAILS).sum()),
        refined_featurize_fails=int((md_fate == REFINED_FEATURIZE_FAILS).sum()),
        refined_score_fails=int(md_score_fails.sum()),
        docked_poses=int(n_poses[docked].sum()),
        pair_columns=len(pairs),
        **counts,
    )


def cached_run(n: int, chunk_size: int, cache: Path = CACHE) -> tuple[Path, dict, bool]:
    """The generated run of ``n`` rows (made once, then reused); returns ``(folder, info, whether it was reused)``.

    ``info`` holds the counts of :func:`generate_run` and ``generate_seconds``, the time it took to make.
    """
    root = cache / f"n{n}-c{chunk_size}"
    stamp = root / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("format") == FORMAT:
        return root, json.loads(stamp.read_text()), True
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    info = generate_run(root, n, chunk_size)
    info["generate_seconds"] = round(time.perf_counter() - start, 1)
    stamp.write_text(json.dumps(info))
    return root, info, False


# ----------------------------------------------------------------------------- measuring


# A small wrapper whose only child is the command: its RUSAGE_CHILDREN high-water mark is the
# command's own (a child forked straight from this big process would start from our memory).
WRAPPER = """import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def measure(command: list[str], log: Path) -> dict:
    """Run ``command``; its wall time, peak RSS (MB) and exit code. Output goes to ``log``."""
    timer = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
    full = [timer, "-v", *command] if timer else [sys.executable, "-c", WRAPPER, *command]
    start = time.perf_counter()
    result = subprocess.run(full, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    log.write_text(result.stdout + result.stderr)
    if timer:
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        peak_kb = int(found.group(1)) if found else -1
    else:
        peak_kb = int(result.stderr.strip().splitlines()[-1])
    return dict(
        seconds=round(seconds, 2),
        peak_rss_mb=round(peak_kb / 1024, 1),
        returncode=result.returncode,
        method="/usr/bin/time -v" if timer else "ru_maxrss (RUSAGE_CHILDREN of a wrapper)",
    )


def accounted(root: Path, info: dict) -> dict:
    """Whether ranking + failures hold every input row once (read back with only the id columns)."""
    ranking = pd.read_csv(root / "ranking.csv", usecols=["id"], dtype=str, keep_default_na=False)["id"]
    failures = pd.read_csv(root / "failures.csv", usecols=["id", "stage"], dtype=str, keep_default_na=False)
    after_input = failures.loc[failures["stage"] != "input", "id"]
    ok = (
        len(ranking) + len(failures) == info["rows"]
        and not ranking.duplicated().any()
        and not pd.concat([ranking, after_input]).duplicated().any()
    )
    return dict(ranked=len(ranking), failed=len(failures), accounted=bool(ok))


def bench_size(n: int, chunk_size: int, cache: Path, logs: Path) -> dict:
    """Generate (or reuse) a run of ``n`` rows, then measure ``vscreen rank`` and ``vscreen report`` on it."""
    root, info, reused = cached_run(n, chunk_size, cache)
    for name in ("ranking.csv", "failures.csv", "pose_warnings.csv", "report.html", "top_hits.sdf"):
        (root / name).unlink(missing_ok=True)
    vscreen = [sys.executable, "-m", "pipeline.cli"]
    row = dict(n=n, generate_seconds=info.get("generate_seconds"), generated_earlier=reused, run=info)
    for stage in ("rank", "report"):
        row[stage] = measure(
            [*vscreen, stage, "--run-dir", str(root), "--config", str(root / "config.yaml")], logs / f"{stage}-{n}.log"
        )
        row[stage]["seconds_per_1e5"] = round(row[stage]["seconds"] / (n / 1e5), 3)
        row[stage]["within_limit"] = row[stage]["returncode"] == 0 and row[stage]["peak_rss_mb"] < LIMIT_MB
        if row[stage]["returncode"] != 0:
            print((logs / f"{stage}-{n}.log").read_text()[-3000:], file=sys.stderr)
    if row["rank"]["returncode"] == 0:
        row.update(accounted(root, info))
    return row


def machine_name() -> str:
    """``<cpus>cpu-<cpu model>`` as in ``benchmarks/run.py`` (no GPU: these commands use none)."""
    model = platform.processor() or "cpu"
    try:
        model = next(
            line.split(":", 1)[1]
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    model = re.sub(r"\(r\)|\(tm\)|cpu|processor|\d+-core|@.*", " ", model.lower())
    return f"{os.cpu_count()}cpu-" + re.sub(r"[^a-z0-9]+", "-", model).strip("-")


def print_table(rows: list[dict]) -> None:
    print(f"{'compounds':>10} {'stage':>7} {'wall s':>8} {'s/1e5':>7} {'peak MB':>8} {'ok':>4}")
    for row in rows:
        for stage in ("rank", "report"):
            r = row[stage]
            print(
                f"{row['n']:>10} {stage:>7} {r['seconds']:>8.1f} {r['seconds_per_1e5']:>7.2f} {r['peak_rss_mb']:>8.0f} "
                f"{'yes' if r['within_limit'] else 'NO':>4}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="input rows (default 1,000,000)")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument(
        "--baseline-n",
        type=int,
        default=None,
        help="a second, smaller size for the same-run speed baseline (default n/10 from 10^5 up; 0: none)",
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="where generated runs are kept")
    parser.add_argument(
        "--out", type=Path, help="results JSON (default benchmarks/results/rank_scale-<machine>-<date>.json)"
    )
    args = parser.parse_args(argv)
    baseline = args.baseline_n if args.baseline_n is not None else (args.n // 10 if args.n >= 1_000_000 else 0)
    sizes = sorted({args.n, baseline} - {0})
    logs = Path(tempfile.mkdtemp(prefix="rank_scale_logs_"))
    rows = [bench_size(n, args.chunk_size, args.cache, logs) for n in sizes]
    print_table(rows)
    largest = rows[-1]
    scaling = (
        {
            stage: round(largest[stage]["seconds_per_1e5"] / rows[0][stage]["seconds_per_1e5"], 2)
            for stage in ("rank", "report")
        }
        if len(rows) > 1
        else {}
    )
    if scaling:
        print("time per 1e5 compounds, largest / smallest size:", scaling)
    date = time.strftime("%Y-%m-%d")
    out = args.out or HERE / "results" / f"rank_scale-{machine_name()}-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = dict(
        benchmark="rank_scale",
        date=date,
        limit_peak_rss_mb=LIMIT_MB,
        chunk_size=args.chunk_size,
        machine=dict(
            name=machine_name(), platform=platform.platform(), cpus=os.cpu_count(), load_average=list(os.getloadavg())
        ),
        commands=[
            "python -m pipeline.cli rank --run-dir RUN --config RUN/config.yaml",
            "python -m pipeline.cli report --run-dir RUN --config RUN/config.yaml",
        ],
        results=rows,
        scaling_seconds_per_1e5_largest_over_smallest=scaling,
    )
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    ok = all(r[s]["within_limit"] for r in rows for s in ("rank", "report")) and all(r.get("accounted") for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
