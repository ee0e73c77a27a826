"""The nothing-lost contract under faults, on the real engines (issue: reliability).

Faults are injected through ``VSCREEN_FAULTS`` (:mod:`pipeline.faults`): the docking worker
aborts on one compound (a native crash) and hangs on another, one compound's MD blows up,
one graph file is written unreadable, one Dask worker is killed in the middle of
featurization, and every ligand of one chunk fails docking (its poses file is empty). The run must finish and account for every input row exactly once. The same
library carries the ids that used to merge or inject (unicode, 150 characters, commas,
spreadsheet formulas). A second test kills the whole Snakemake process tree with SIGKILL in
the middle of docking and resumes with the README's run command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import REPO, read_output_csv, run_snakemake, small_screen, snakemake_command

from pipeline.library import iter_library

HOSTILE = REPO / "resources" / "fixtures" / "hostile.smi"
DOCK_LIMIT = 30
FAULTS = ";".join(
    [
        "dock:abort-me:abort",
        "dock:hang-me:hang",
        "refine:md-blowup:blowup",
        "featurize:kill-worker:kill-once",
        "graphs:chunk_00004:corrupt",
        "dock:all-fail-1:raise",  # chunk_00005 holds only these two: every ligand of a chunk fails
        "dock:all-fail-2:raise",
    ]
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, float]:
    workdir = tmp_path_factory.mktemp("faults")
    config = small_screen(HOSTILE, "faults")
    config["docking"]["time_limit"] = DOCK_LIMIT
    config["refine"]["top_n"] = None  # refine every docked compound: the blow-up target is always among them
    start = time.monotonic()
    result = run_snakemake(
        workdir, config, env={"VSCREEN_FAULTS": FAULTS, "VSCREEN_FAULTS_DIR": str(workdir / "faults")}
    )
    return workdir / "results" / "faults", result, time.monotonic() - start


def test_faults_cost_only_their_compounds(faulty_run):
    out, result, _ = faulty_run
    assert result.returncode == 0, result.stderr[-4000:]
    ranking = read_output_csv(out / "ranking.csv")
    failures = read_output_csv(out / "failures.csv")

    # every input row exactly once in ranking + failures
    inputs = [r.input_id for r in iter_library(HOSTILE)]
    assert len(inputs) == 22
    assert len(ranking) + len(failures) == 22, (ranking[["id"]], failures)
    assert not set(ranking["id"]) & set(failures["id"])
    assert ranking["id"].is_unique and failures["id"].is_unique

    reasons = failures.set_index("id")
    assert reasons.loc["abort-me", "stage"] == "dock" and "crashed" in reasons.loc["abort-me", "reason"]
    assert reasons.loc["hang-me", "stage"] == "dock"
    assert f"time limit ({DOCK_LIMIT} s) exceeded" in reasons.loc["hang-me", "reason"]
    # a chunk with nothing docked (an empty poses file) costs only its own compounds
    for cid in ("all-fail-1", "all-fail-2"):
        assert reasons.loc[cid, "stage"] == "dock" and "injected fault" in reasons.loc[cid, "reason"]

    # the compound whose MD blew up is still ranked, with its MD columns empty and the reason beside them
    ranked = ranking.set_index("id")
    assert "md-blowup" in ranked.index
    assert ranked.loc["md-blowup", "md_status"] == "failed"
    assert ranked.loc["md-blowup", "md_rmsd_final"] == "" and ranked.loc["md-blowup", "md_reason"]
    assert (ranking["md_status"] == "refined").sum() == len(ranking) - 1  # every other ranked compound
    warnings = read_output_csv(out / "pose_warnings.csv")
    assert ("md-blowup", "refine") in set(zip(warnings["id"], warnings["stage"]))

    # the Dask worker killed while featurizing 'kill-worker' was replaced; the compound is ranked with its score
    assert "kill-worker" in ranked.index and ranked.loc["kill-worker", "gnn_score"] != ""
    assert ranked.loc["kill-worker", "interactions"] != "" or ranked.loc["kill-worker", "n_Hydrophobic"] != ""

    # the unreadable graph file of chunk_00004 cost only its own compounds' GNN scores, with a reason
    chunk4 = set(pd.read_parquet(out / "chunks" / "chunk_00004.parquet")["id"])
    scored_elsewhere = ranking[~ranking["id"].isin(chunk4)]
    assert (scored_elsewhere["gnn_score"] != "").all()
    lost = failures[failures["id"].isin(chunk4)]
    kept = ranking[ranking["id"].isin(chunk4)]
    assert len(lost) + len(kept) == len(chunk4)
    assert (lost["stage"] == "score").all() and lost["reason"].str.contains("chunk_00004").all()
    assert (kept["gnn_score"] == "").all()


def test_hung_ligand_costs_at_most_its_time_limit(faulty_run):
    out, result, _ = faulty_run
    assert result.returncode == 0, result.stderr[-2000:]
    chunk = next(
        c for c in sorted((out / "chunks").glob("chunk_*.parquet")) if "hang-me" in set(pd.read_parquet(c)["id"])
    )
    seconds = pd.read_csv(out / "benchmarks" / "dock" / f"{chunk.stem}.tsv", sep="\t")["s"].iloc[0]
    others = pd.read_csv(out / "benchmarks" / "dock" / "chunk_00002.tsv", sep="\t")["s"].iloc[0]
    assert DOCK_LIMIT <= seconds <= DOCK_LIMIT + others + 60, (seconds, others)


def test_hostile_ids_stay_distinct_exact_and_inert(faulty_run):
    out, result, _ = faulty_run
    assert result.returncode == 0, result.stderr[-2000:]
    ranking = read_output_csv(out / "ranking.csv")
    failures = read_output_csv(out / "failures.csv")
    chunks = pd.concat([pd.read_parquet(p) for p in sorted((out / "chunks").glob("chunk_*.parquet"))])
    given = [r.input_id for r in iter_library(HOSTILE)]

    # all 22 accepted at input (none merged as a "duplicate"), ids unique, input_id exactly as given
    assert len(chunks) == 22 and chunks["id"].is_unique
    assert sorted(chunks["input_id"]) == sorted(given)
    assert {"α-pinene", "β-pinene", "indole, batch 3, lot 7"} <= set(ranking["input_id"])
    long_ids = [i for i in given if len(i) == 150]
    assert len(long_ids) == 2 and set(long_ids) <= set(ranking["input_id"])
    assert set(ranking["input_id"]) | set(chunks.set_index("id").loc[failures["id"], "input_id"]) == set(given)

    # no cell of the CSVs as written starts with a formula character (the quote neutralizes it)
    for name in ("ranking.csv", "failures.csv", "pose_warnings.csv"):
        raw = pd.read_csv(out / name, dtype=str, keep_default_na=False)
        for column in raw.columns:
            values = raw[column][raw[column] != ""]
            if pd.to_numeric(values, errors="coerce").notna().all():
                continue  # a number column: -5.87 is a docking score, not a formula
            bad = values[values.str.startswith(FORMULA_START)]
            assert bad.empty, f"{name}:{column} has formula-like cells {bad.tolist()}"


def test_every_output_is_group_readable_under_umask_022(faulty_run):
    import stat

    out, result, _ = faulty_run
    assert result.returncode == 0, result.stderr[-2000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 50
    private = [str(p.relative_to(out)) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044]
    assert not private, private[:10]


def _ranking(workdir: Path, run: str) -> pd.DataFrame:
    return pd.read_csv(workdir / "results" / run / "ranking.csv")


def test_kill_9_mid_docking_then_the_run_command_resumes(tmp_path):
    """Acceptance: SIGKILL of the whole Snakemake process tree while docking, then the README's run
    command: no finished chunk is docked again and the ranking equals an uninterrupted run's."""
    library = tmp_path / "lib.csv"
    pd.read_csv(REPO / "resources" / "demo" / "library.csv").head(8).to_csv(library, index=False)
    config = small_screen(library, "whole")
    config["library"]["chunk_size"] = 2
    config["refine"]["enabled"] = False
    assert run_snakemake(tmp_path, config, name="whole.yaml").returncode == 0

    config["run"] = "killed"
    configfile = tmp_path / "killed.yaml"
    configfile.write_text(yaml.safe_dump(config))
    docked = tmp_path / "results" / "killed" / "docked"
    proc = subprocess.Popen(
        snakemake_command(tmp_path, configfile, 1),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while not list(docked.glob("chunk_*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # let the next docking job start, so that it is killed half-way
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process tree, no chance to clean up
    proc.wait(timeout=60)
    finished = {p.name: p.stat().st_mtime_ns for p in docked.glob("chunk_*.parquet")}
    assert 1 <= len(finished) < 4, f"the run should have been killed in the middle of docking: {sorted(finished)}"

    resumed = subprocess.run(snakemake_command(tmp_path, configfile, 2), cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, mtime in finished.items():
        assert (docked / name).stat().st_mtime_ns == mtime, f"{name} was docked again"
    pd.testing.assert_frame_equal(_ranking(tmp_path, "whole"), _ranking(tmp_path, "killed"))
    assert not (tmp_path / "results" / "killed" / ".vscreen-run.json").exists()
