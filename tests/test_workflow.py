"""The Snakemake workflow end to end on small inputs (real RDKit, meeko, PDBFixer, Vina)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.library import iter_library


def run_snakemake(repo: Path, workdir: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "--cores", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def small_screen(repo: Path, library: Path, run: str) -> dict:
    """A quick config on the 1iep fixture: 14 Å box on the ATP site, exhaustiveness 1."""
    fixture = repo / "resources" / "fixtures" / "1iep"
    return {"run": run, "seed": 42,
            "library": {"path": str(library), "chunk_size": 4},
            "receptor": {"path": str(fixture / "1iep_receptorH.pdb")},
            "box": {"center": [15.19, 53.9, 16.92], "size": [14, 14, 14]},
            "docking": {"exhaustiveness": 1, "n_poses": 2},
            "dask": {"n_workers": 1},
            "refine": {"top_n": 1, "length_ps": 0.5, "frame_interval_ps": 0.25, "minimize_iterations": 50}}


def test_nothing_is_lost_on_a_nasty_library(repo, tmp_path):
    """Acceptance: every input row ends in ranking.csv or failures.csv, with stage and reason."""
    library = repo / "resources" / "fixtures" / "nasty.smi"
    result = run_snakemake(repo, tmp_path, small_screen(repo, library, "nasty"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results" / "nasty"
    ranking = pd.read_csv(out / "ranking.csv", dtype={"id": str})
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False)
    n_input = sum(1 for _ in iter_library(library))
    assert n_input == len(ranking) + len(failures)

    assert set(ranking["id"]) == {"good_one", "dup", "sodium_benzoate", "a_b", "_etc", "x_rm_-rf_"}
    assert ranking["rank"].tolist() == list(range(1, len(ranking) + 1))
    # ranked by the shipped GNN ensemble (models/default), its spread beside the score
    assert ranking["gnn_score"].between(0, 1).all() and (ranking["gnn_spread"] >= 0).all()
    assert ranking["gnn_score"].is_monotonic_decreasing
    salt = ranking.set_index("id").loc["sodium_benzoate"]
    assert "Na" not in salt["prepared_smiles"] and "." not in salt["prepared_smiles"]

    by_id = {(r.id, r.stage): r.reason for r in failures.itertuples()}
    assert "invalid SMILES" in by_id[("bad_smiles", "prepare")]
    assert "empty line" in by_id[("nasty_line3", "input")]
    assert "duplicate id" in by_id[("dup", "input")]
    assert "150 heavy atoms" in by_id[("huge_chain", "prepare")]
    assert "Pt" in by_id[("cisplatin-like", "prepare")]
    assert all(failures["reason"].str.len() > 10)

    from rdkit import Chem

    names = [m.GetProp("_Name") for p in sorted((out / "docked").glob("chunk_*.sdf"))
             for m in Chem.SDMolSupplier(str(p), removeHs=False)]
    assert set(names) == set(ranking["id"])
    assert ranking["n_poses"].sum() == len(names)

    # the best compound by docking score was refined by MD (refine.top_n: 1) and fingerprinted
    best = ranking.sort_values("docking_score").iloc[0]
    assert best["md_rmsd_final"] >= 0 and best["md_interaction_energy"] < 0
    assert ranking["md_rmsd_final"].notna().sum() == 1
    assert {"n_HBDonor", "n_Hydrophobic", "interactions"} <= set(ranking.columns)
    assert (out / "graphs").glob("chunk_*.pt")


def _ranking(workdir: Path, run: str) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / run / "ranking.csv")


@pytest.mark.slow
def test_killed_run_resumes_without_redocking_and_matches_uninterrupted(repo, tmp_path):
    """Acceptance: interrupt in the middle of docking, rerun; finished chunks are kept and the
    final ranking equals an uninterrupted run's (which also shows same seed, same scores)."""
    import os
    import signal
    import time

    library = tmp_path / "lib.csv"
    demo = pd.read_csv(repo / "resources" / "demo" / "library.csv").head(12)
    demo.to_csv(library, index=False)
    config = small_screen(repo, library, "whole")
    config["library"]["chunk_size"] = 3
    config["docking"]["exhaustiveness"] = 2
    assert run_snakemake(repo, tmp_path, config).returncode == 0

    config["run"] = "killed"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"]
    docked = tmp_path / "results" / "killed" / "docked"
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not list(docked.glob("chunk_*.parquet")) and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user stops a run
    proc.wait(timeout=120)
    finished = {p.name: p.stat().st_mtime_ns for p in docked.glob("chunk_*.parquet")}
    assert 1 <= len(finished) < 4, "the run should have been stopped in the middle of docking"

    result = run_snakemake(repo, tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    for name, mtime in finished.items():
        assert (docked / name).stat().st_mtime_ns == mtime, f"{name} was docked again"
    pd.testing.assert_frame_equal(_ranking(tmp_path, "whole"), _ranking(tmp_path, "killed"))
