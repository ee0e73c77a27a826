"""Long screens in time-boxed rounds that resume across sessions.

A campaign is one or more ordinary workflow runs (one config file each) whose chunks are
docked and featurized a few at a time, round-robin over the runs, until a deadline.
Snakemake skips every chunk that is already finished, so calling :func:`dock_in_rounds`
again (in a later session, after a kill) carries on where the last call stopped. Used by
``models/default/build.py`` (the default model's training data) and
``benchmarks/enrichment.py`` (the enrichment benchmark).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from pipeline.layout import RunLayout

__all__ = ["CampaignRun", "CampaignError", "snakemake", "dock_in_rounds"]


class CampaignError(RuntimeError):
    """A round's Snakemake run failed (a job crashed or was refused): the campaign stops, loudly."""


@dataclass(frozen=True)
class CampaignRun:
    """One workflow run of a campaign.

    Attributes
    ----------
    name
        Label used in progress lines (a target name, say).
    configfile
        The run's config file (``run`` is read from it; the chunks are those its split made).
    root
        The workflow folder (where the Snakefile is); relative paths in the config are relative to it.
    """

    name: str
    configfile: Path
    root: Path

    @cached_property
    def config(self) -> dict:
        """The run's config, read once."""
        with open(self.configfile) as handle:
            return yaml.safe_load(handle)

    @property
    def run_dir(self) -> Path:
        return self.root / "results" / self.config["run"]

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    def n_chunks(self) -> int:
        """Number of library chunks, as the split's manifest lists them (the split must have run)."""
        return len(self.layout.chunks())

    def graph_file(self, index: int) -> Path:
        """The featurized complexes of chunk ``index`` (its last per-chunk output)."""
        return self.layout.graph_file(self.layout.chunks()[index])

    def chunks_done(self) -> list[int]:
        return [i for i in range(self.n_chunks()) if self.graph_file(i).exists()]


def snakemake(run: CampaignRun, files: list[str] | None = None, cores: int = 2, quiet: bool = True) -> int:
    """Make ``files`` (default: the workflow's final outputs) with the run's config.

    Failing compounds are logged by the workflow, not raised; ``--keep-going`` lets one
    failed job leave the others running. Returns Snakemake's exit status.
    """
    cmd = [
        "snakemake",
        "--cores",
        str(cores),
        "--configfile",
        str(run.configfile),
        "--rerun-triggers",
        "mtime",
        "--keep-going",
    ]
    if quiet:
        cmd += ["--quiet", "rules"]
    if files:
        cmd += ["--", *files]
    return subprocess.run(cmd, cwd=run.root, check=False).returncode


def _check(run: CampaignRun, status: int) -> None:
    # a bad compound is a failure row, never a failed job: a failed job is a real problem
    # (infrastructure, a bug), and carrying on would leave holes that later rounds cannot see
    if status != 0:
        raise CampaignError(f"{run.name}: snakemake exited with status {status}; see {run.run_dir / 'logs'}")


def dock_in_rounds(
    runs: list[CampaignRun], hours: float, cores: int = 2, chunks_per_round: int = 2
) -> dict[str, tuple[int, int]]:
    """Dock and featurize the runs' chunks round-robin until done or ``hours`` have passed.

    A round starts only before the deadline, so the call can overrun it by one round.

    Returns
    -------
    dict
        Run name -> (chunks featurized, chunks in all).

    Raises
    ------
    CampaignError
        When a round's Snakemake run exits with a non-zero status.
    """
    deadline = time.time() + hours * 3600
    for run in runs:  # the split is a checkpoint: run it first so that chunk files can be asked for
        if not (run.layout.chunks_dir / "manifest.json").is_file():
            _check(run, snakemake(run, [str(run.layout.chunks_dir.relative_to(run.root))], cores))
    todo = {run.name: [i for i in range(run.n_chunks()) if not run.graph_file(i).exists()] for run in runs}
    while any(todo.values()) and time.time() < deadline:
        for run in runs:
            batch, todo[run.name] = todo[run.name][:chunks_per_round], todo[run.name][chunks_per_round:]
            if not batch or time.time() >= deadline:
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {run.name}: chunks {batch}", flush=True)
            _check(run, snakemake(run, [str(run.graph_file(i).relative_to(run.root)) for i in batch], cores))
    status = {run.name: (len(run.chunks_done()), run.n_chunks()) for run in runs}
    for name, (done, total) in status.items():
        print(f"{name}: {done}/{total} chunks featurized")
    return status
