"""The workflow and the Dask scorer on a real SLURM cluster: Debian's slurm-wlm, slurmdbd and
munge started on this machine as a one-node cluster (see tests/slurm_local.py), the shipped
profile config/profiles/slurm with its partitions, `sacct` to see what ran.

Installs the Debian packages with apt-get when they are missing; skips only where that is
impossible (not root, no apt-get, or a machine with its own SLURM configuration), and fails
instead when VSCREEN_REQUIRE_SLURM=1 (as .ci/run sets it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import snakemake_executor_plugin_slurm  # noqa: F401  (the executor under test: part of the 'test' extra)
import yaml
from slurm_local import LocalSlurm, unavailable_reason
from test_scoring import complexes, trained  # noqa: F401  (fixtures: real 1iep graphs and a tiny ensemble)
from workflow_runs import run_snakemake, small_screen

from pipeline.config import settings_from_mapping
from pipeline.dask_cluster import DaskSettings, dask_client
from pipeline.scoring.score import score_graph_files

pytestmark = pytest.mark.slurm

PROFILE = Path(__file__).resolve().parents[1] / "config" / "profiles" / "slurm" / "config.yaml"


def profile_partitions(profile: dict) -> dict[str, str]:
    """The partition of every rule the profile names, plus ``"*"`` for the default."""
    parts = {"*": profile["default-resources"]["slurm_partition"]}
    for rule, resources in profile.get("set-resources", {}).items():
        parts[rule] = resources.get("slurm_partition", parts["*"])
    return parts


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = unavailable_reason()
    if reason and os.environ.get("VSCREEN_REQUIRE_SLURM") == "1":  # set by .ci/run: there a skip is a failure
        pytest.fail(f"VSCREEN_REQUIRE_SLURM=1 but {reason}")
    if reason:
        pytest.skip(reason)
    partitions = profile_partitions(yaml.safe_load(PROFILE.read_text()))
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), [partitions["*"], *partitions.values()])
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _gpu_less_profile(folder: Path) -> Path:
    """The shipped profile with its GPU requests set to 0: this node has no GPU (the GPU partition
    stays; README tells users of GPU-less clusters to do the same in their copy of the profile)."""
    profile = yaml.safe_load(PROFILE.read_text())
    for resources in profile["set-resources"].values():
        if "gpu" in resources or "gres" in resources:
            resources.pop("gres", None)
            resources["gpu"] = 0
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def _jobs_per_rule(workdir: Path) -> dict[str, int]:
    """Jobs per rule of the last Snakemake run in ``workdir``, from its log."""
    log = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))[-1]
    names = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", log.read_text(), flags=re.MULTILINE)
    return dict(Counter(names))


def test_workflow_on_slurm_ranks_as_a_local_run_and_sacct_shows_its_jobs(repo, tmp_path, slurm):
    """Acceptance: the workflow through `--profile config/profiles/slurm` (executor slurm) on a tiny
    library gives the ranking of a local run; sacct lists one completed job per rule and chunk,
    docking on the CPU partition and MD refinement on the GPU partition."""
    library = tmp_path / "lib.csv"
    demo = pd.read_csv(repo / "resources" / "demo" / "library.csv")
    small = demo.loc[demo["smiles"].str.len().nsmallest(4).index].sort_index()  # the 4 smallest: quick docking
    small.to_csv(library, index=False)
    config = small_screen(library, "tiny")
    config["library"]["chunk_size"] = 2
    config["score"] = {"enabled": False}  # the GNN scorer runs on SLURM in the Dask test below

    local = tmp_path / "local"
    local.mkdir()
    result = run_snakemake(local, config)
    assert result.returncode == 0, result.stderr[-3000:]

    work = tmp_path / "slurm"
    work.mkdir()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    profile = _gpu_less_profile(tmp_path / "profile")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        "--profile",
        str(profile),
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--latency-wait",
        "10",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, result.stderr[-4000:] + slurm.logs()
    assert "has been submitted with SLURM jobid" in result.stderr

    ranking = pd.read_csv(local / "results" / "tiny" / "ranking.csv")
    pd.testing.assert_frame_equal(pd.read_csv(work / "results" / "tiny" / "ranking.csv"), ranking)
    failures = pd.read_csv(local / "results" / "tiny" / "failures.csv")
    pd.testing.assert_frame_equal(pd.read_csv(work / "results" / "tiny" / "failures.csv"), failures)
    assert len(ranking) + len(failures) == 4 and ranking["md_rmsd_final"].notna().sum() == 1

    jobs = pd.DataFrame(slurm.sacct("JobIDRaw", "JobName", "Partition", "State", "Comment", since=started))
    jobs = jobs[jobs["Comment"].str.startswith("rule_")]
    jobs["rule"] = jobs["Comment"].str.extract(r"^rule_(.+?)(?:_wildcards_.*)?$", expand=False)
    assert (jobs["State"] == "COMPLETED").all(), jobs.to_string()
    counts = jobs["rule"].value_counts().to_dict()
    ran_locally = _jobs_per_rule(local)
    ran_locally.pop("all")  # the target rule: Snakemake itself, no job
    assert counts == ran_locally, (counts, ran_locally)
    n_chunks = len(list((work / "results" / "tiny" / "chunks").glob("chunk_*.parquet")))
    assert n_chunks == 2 and counts["dock"] == counts["prepare_ligands"] == n_chunks and counts["refine"] == 1
    partitions = profile_partitions(yaml.safe_load(PROFILE.read_text()))
    by_rule = jobs.groupby("rule")["Partition"].agg(set).to_dict()
    for rule, parts in by_rule.items():
        assert parts == {partitions.get(rule, partitions["*"])}, (rule, parts)
    assert by_rule["refine"] != by_rule["dock"]  # MD went to the GPU partition


def test_dask_slurm_cluster_scores_like_one_process(tmp_path, slurm, complexes, trained):
    """`dask: {scheduler: slurm}`: dask-jobqueue submits the Dask workers as SLURM jobs (adaptive,
    1 to 2 jobs); the scores equal in-process scoring and sacct shows the worker jobs."""
    model, _ = trained
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    partition = profile_partitions(yaml.safe_load(PROFILE.read_text()))["*"]
    settings = settings_from_mapping(
        DaskSettings,
        {
            "scheduler": "slurm",
            "n_workers": 2,
            "threads_per_worker": 1,
            "memory_limit": "2GB",
            "slurm_options": {
                "queue": partition,
                "walltime": "00:20:00",
                "interface": "lo",
                "log_directory": str(tmp_path / "dask-logs"),
                "job_name": "vscreen-dask",
            },
        },
        "dask",
        strict=True,
    )
    expected = score_graph_files(complexes["files"], model, client=None, threads=1)
    with dask_client(settings) as client:
        client.wait_for_workers(1, timeout=180)
        table = score_graph_files(complexes["files"], model, client)
    assert len(table) == complexes["n_graphs"]
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-5, atol=1e-6)

    jobs = [
        j
        for j in slurm.sacct("JobIDRaw", "JobName", "Partition", "State", since=started)
        if j["JobName"] == "vscreen-dask"
    ]
    assert 1 <= len(jobs) <= 2 and {j["Partition"] for j in jobs} == {partition}, jobs
