"""``results/index.html``: one page listing every run under a results folder.

A chemist who has screened several targets or libraries finds a run by its name, date
and top hit without opening each folder. The page is rewritten by the report stage after
each report (:func:`write_index`), from what every run folder already holds:

* the run's name (its folder, linked to its ``report.html`` when there is one);
* the date its ranking was written (``ranking.csv``'s modification time, UTC);
* its size: compounds ranked (rows of ``ranking.csv``), compounds in ``failures.csv``,
  and the folder's size on disk;
* its top hit: the first row of ``ranking.csv`` (id, SMILES, docking score, and the
  ``ranked_by`` column when present).

A folder without ``ranking.csv`` (a run still going, or one that failed) is listed with
"no ranking yet". Only the first line and the row count of each ranking are read, so
indexing a million-compound run costs a scan of its ``ranking.csv``, not its memory.
The page is self-contained and offline, with the report's style and Content-Security-
Policy (:mod:`pipeline.report.html`); the links are relative, so the folder can be moved.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import restore_csv_cells, write_text_atomic
from ..layout import RunLayout
from .html import Cell, Column, num_cell, page, table, text

__all__ = ["RunEntry", "read_run", "list_runs", "index_html", "write_index"]


@dataclass(frozen=True)
class RunEntry:
    """What the index shows of one run folder."""

    name: str
    report: str | None
    date: str | None
    ranked: int | None
    failed: int | None
    disk_bytes: int
    top_id: str | None
    top_smiles: str | None
    top_docking: float | None
    top_ranked_by: str | None


def _count_rows(path: Path) -> int | None:
    """Data rows of a CSV file (quoted newlines allowed), ``None`` when it does not exist."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def _disk_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # a file removed while walking (a run still writing)
                pass
    return total


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def read_run(folder: str | Path) -> RunEntry:
    """The index entry of one run folder.

    Parameters
    ----------
    folder : str or Path
        A run folder (``results/<run>``).

    Returns
    -------
    RunEntry
        Its name, report link (relative to the results folder, or ``None``), ranking date
        (UTC, ``YYYY-MM-DD HH:MM``), counts, disk size and first-ranked compound; the fields
        of a ranking that does not exist yet are ``None``.
    """
    folder = Path(folder)
    layout = RunLayout(folder)
    report = f"{folder.name}/{layout.report_html.name}" if layout.report_html.is_file() else None
    date = ranked = failed = top = None
    if layout.ranking.is_file():
        date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(layout.ranking.stat().st_mtime))
        ranked = _count_rows(layout.ranking)
        first = pd.read_csv(layout.ranking, nrows=1, dtype=str, keep_default_na=False)
        # cells were neutralized against spreadsheet formulas on writing: show them as the user wrote them
        top = restore_csv_cells(first).iloc[0].to_dict() if len(first) else None
        failed = _count_rows(layout.failures)
    return RunEntry(
        name=folder.name,
        report=report,
        date=date,
        ranked=ranked,
        failed=failed,
        disk_bytes=_disk_bytes(folder),
        top_id=top.get("id") if top else None,
        top_smiles=top.get("smiles") if top else None,
        top_docking=_float(top.get("docking_score")) if top else None,
        top_ranked_by=(top.get("ranked_by") or None) if top else None,
    )


def list_runs(results: str | Path) -> list[RunEntry]:
    """Every run folder directly under ``results`` (a folder with ``config.yaml`` or ``ranking.csv``), newest first."""
    results = Path(results)
    folders = [
        p
        for p in sorted(results.iterdir())
        if p.is_dir() and (RunLayout(p).config.is_file() or RunLayout(p).ranking.is_file())
    ]
    entries = [read_run(p) for p in folders]
    return sorted(entries, key=lambda e: (e.date is not None, e.date or "", e.name), reverse=True)


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GB"


def index_html(entries: list[RunEntry], results_name: str = "results") -> str:
    """The index page of ``entries`` (see the module docstring)."""
    columns = [
        Column("run"),
        Column("ranked (UTC)"),
        Column("compounds ranked", numeric=True),
        Column("failures", numeric=True),
        Column("on disk", numeric=True),
        Column("top hit"),
        Column("top hit's docking score", numeric=True, tooltip="kcal/mol, Vina"),
        Column("ranked by"),
    ]
    rows = []
    for e in entries:
        name = f'<a href="{text(e.report)}">{text(e.name)}</a>' if e.report else text(e.name)
        top = f"{text(e.top_id)}<br><code>{text(e.top_smiles or '')}</code>" if e.top_id else "<em>no ranking yet</em>"
        rows.append(
            [
                Cell(name),
                Cell(text(e.date or "–")),
                num_cell(e.ranked, 0),
                num_cell(e.failed, 0),
                Cell(_size(e.disk_bytes), float(e.disk_bytes), numeric=True),
                Cell(top),
                num_cell(e.top_docking, 2),
                Cell(text(e.top_ranked_by or "–")),
            ]
        )
    body = (
        '<p class="note">Every run folder of this results folder, newest ranking first; the run name '
        "opens its report. Rewritten after each report.</p>" + table(columns, rows, css="sortable")
        if entries
        else "<p>No runs yet.</p>"
    )
    return page(
        "vscreen runs",
        f"{len(entries)} run{'s' if len(entries) != 1 else ''} in {results_name}/",
        [("runs", "Runs", body)],
    )


def write_index(results: str | Path) -> Path:
    """Write ``<results>/index.html`` listing every run under ``results``; returns its path."""
    results = Path(results)
    out = results / "index.html"
    write_text_atomic(out, index_html(list_runs(results), results.name))
    return out
