"""Where a run's time went: Snakemake's per-job benchmark files, summed per stage.

Every rule of the workflow writes ``results/<run>/benchmarks/<stage>/<job>.tsv``
(Snakemake's ``benchmark:`` directive: ``s`` wall seconds of the job, ``max_rss`` MB,
``cpu_time`` seconds, ...). Per stage the report shows the jobs, their summed wall
seconds (job-seconds: what the stage costs on one core), the wall-clock span from the
first job's start to the last job's end (what the user waited; a job's start is its
file's modification time minus its seconds), the summed CPU seconds and the largest
resident memory of one job. The report's own job is still running when the page is
written, so it is absent, and a stage re-run after a change counts its latest jobs only
(the files are overwritten).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import html

#: Stages in workflow order (the Snakefile's rules); others found on disk follow, sorted.
STAGE_ORDER = (
    "split_library",
    "prepare_receptor",
    "prepare_ligands",
    "dock",
    "featurize",
    "select_poses",
    "refine",
    "featurize_refined",
    "score",
    "train",
    "rank",
    "explain",
    "report",
)

COLUMNS = ["stage", "jobs", "job_seconds", "wall_seconds", "cpu_seconds", "max_rss_mb"]


def _number(value: object) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):  # Snakemake writes "NA" where it could not measure
        return math.nan
    return number


def stage_times(run_dir: str | Path) -> pd.DataFrame:
    """Per-stage time of a run from its benchmark files.

    Parameters
    ----------
    run_dir : str or Path
        ``results/<run>``.

    Returns
    -------
    pandas.DataFrame
        One row per stage with a benchmark file (columns :data:`COLUMNS`), in workflow
        order; empty when the run has no ``benchmarks/`` folder. Unreadable files are skipped.
    """
    root = Path(run_dir) / "benchmarks"
    rows = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        seconds, cpu, rss, starts, ends = [], [], [], [], []
        for path in sorted(folder.glob("*.tsv")):
            try:
                table = pd.read_csv(path, sep="\t")
            except (OSError, ValueError, pd.errors.EmptyDataError):
                continue
            if table.empty or "s" not in table:
                continue
            last = table.iloc[-1]  # repeated benchmarks append rows; the last is this job's
            wall = _number(last.get("s"))
            if math.isnan(wall):
                continue
            end = path.stat().st_mtime
            seconds.append(wall)
            cpu.append(_number(last.get("cpu_time")))
            rss.append(_number(last.get("max_rss")))
            starts.append(end - wall)
            ends.append(end)
        if seconds:
            rows.append(
                dict(
                    stage=folder.name,
                    jobs=len(seconds),
                    job_seconds=sum(seconds),
                    wall_seconds=max(ends) - min(starts),
                    cpu_seconds=math.fsum(c for c in cpu if not math.isnan(c)),
                    max_rss_mb=max((r for r in rss if not math.isnan(r)), default=math.nan),
                )
            )
    order = {name: k for k, name in enumerate(STAGE_ORDER)}
    rows.sort(key=lambda r: (order.get(r["stage"], len(order)), r["stage"]))
    return pd.DataFrame(rows, columns=COLUMNS)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def timing_section(table: pd.DataFrame) -> str:
    """HTML of the per-stage table (empty string when there is nothing to show)."""
    if table.empty:
        return ""
    columns = [
        html.Column("stage"),
        html.Column("jobs", numeric=True),
        html.Column(
            "job time (sum)", numeric=True, tooltip="summed wall time of the stage's jobs: its cost on one core"
        ),
        html.Column("elapsed", numeric=True, tooltip="first job's start to last job's end"),
        html.Column("CPU time", numeric=True),
        html.Column("peak memory of a job", numeric=True, tooltip="largest resident set size of one job, MB"),
    ]
    rows = [
        [
            html.Cell(html.text(r.stage)),
            html.num_cell(r.jobs, 0),
            html.Cell(_duration(r.job_seconds), r.job_seconds, numeric=True),
            html.Cell(_duration(r.wall_seconds), r.wall_seconds, numeric=True),
            html.Cell(_duration(r.cpu_seconds), r.cpu_seconds, numeric=True),
            html.Cell(
                html.number(r.max_rss_mb, 0) + " MB" if not math.isnan(r.max_rss_mb) else "–", None, numeric=True
            ),
        ]
        for r in table.itertuples()
    ]
    total = float(table["job_seconds"].sum())
    return (
        f'<p class="note">From Snakemake\'s benchmark files (<code>benchmarks/&lt;stage&gt;/</code>); '
        f"{_duration(total)} of job time over the stages shown. Jobs of one stage run side by side, so "
        "elapsed can be shorter than job time; the report's own job is still running and is not listed.</p>"
        + html.table(columns, rows, css="sortable")
    )
