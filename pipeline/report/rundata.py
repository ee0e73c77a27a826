"""Everything the report shows, read once from a finished run folder.

:func:`load_run` reads ``ranking.csv``, ``failures.csv``, ``pose_warnings.csv``,
the split manifest, the receptor report and box, the id columns of the per-stage
tables (to count compounds per stage) and the interaction fingerprints of the top
hits' best docked poses. Chunk and batch names come from the run's manifests
(:class:`pipeline.layout.RunLayout`), never from a folder listing.

At scale it reads only what it shows: of ``ranking.csv`` every row's scores, ``id``
and ``input_id`` (the figures and the enrichment cover the whole library) and the
other columns of the top hits only; of the feature tables, the ``id`` column to
find the chunks that hold the top hits, then those chunks' rows of the top hits.
A million-compound run is reported within 2 GB (``benchmarks/rank_scale.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import schema_default
from ..errors import VscreenError
from ..io import FAILURE_COLUMNS, restore_csv_cells
from ..layout import RunLayout
from .labels import label_ranking, read_labels

#: Columns of ``ranking.csv`` that the report uses for every ranked compound (figures, enrichment,
#: labels, whether there are GNN and MD scores); the others it shows for the top hits only.
LIBRARY_COLUMNS = (
    "rank",
    "id",
    "input_id",
    "docking_score",
    "gnn_score",
    "gnn_spread",
    "consensus_score",
    "ranked_by",
    "gnn_score_refined",
    "md_rmsd_mean",
    "md_interaction_energy",
    "md_interaction_energy_std",
    "md_score_delta",  # the "Sent to MD" section shows it for every refined compound, top hit or not
    "md_rescore",
    "md_rank_change",
    # pose checks (pipeline.pose_validity): the demoted compounds sit at the bottom, below the top hits
    "pose_valid",
    "failed_checks",
    "pose_check",
)


class ReportError(VscreenError, ValueError):
    """The run folder cannot be reported on (it has not been ranked yet)."""


@dataclass
class RunData:
    """A finished run, as the report sees it.

    Attributes
    ----------
    run_dir
        The run folder (``results/<run>``).
    config
        The validated run config (defaults filled).
    ranking
        ``ranking.csv`` (ids read as text, spreadsheet-neutralized cells restored). When
        :func:`load_run` is given ``top_n``, only the :data:`LIBRARY_COLUMNS` are read for
        every row; the others (SMILES, counts, interactions, ...) hold values for the first
        ``top_n`` rows only and are missing below (:func:`read_ranking`): the report shows
        them for the top hits alone, and a million SMILES would be most of its memory.
    failures, warnings
        ``failures.csv`` and ``pose_warnings.csv`` (``id, stage, reason``).
    labels
        Activity label of each ranking row (1.0 / 0.0 / NaN), or ``None`` for an unlabelled library.
    stage_counts
        Compounds that reached each stage (``prepared``, ``docked``, ``featurized``,
        ``selected``, ``refined``, ``scored``).
    manifest
        The split's manifest (``rows``, ``accepted``, ``failed``, ``chunks``).
    receptor, box
        ``receptor/receptor.json`` and ``receptor/box.json`` (empty when missing).
    fingerprints
        One row per compound (its best featurized docked pose; the top hits only when
        :func:`load_run` is given ``top_n``): ``id`` and boolean ``RESIDUE:Interaction`` columns.
    pocket
        The score stage's ``domain.json`` (:class:`pipeline.scoring.domain.PocketRecord`): the
        run's pocket against the model's training pockets; ``None`` when missing or unreadable.
    """

    run_dir: Path
    config: dict[str, Any]
    ranking: pd.DataFrame
    failures: pd.DataFrame
    warnings: pd.DataFrame
    labels: pd.Series | None
    stage_counts: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    receptor: dict[str, Any] = field(default_factory=dict)
    box: dict[str, Any] = field(default_factory=dict)
    fingerprints: pd.DataFrame = field(default_factory=pd.DataFrame)
    pocket: Any = None

    @property
    def has_gnn(self) -> bool:
        """Whether the ranking carries GNN scores."""
        return "gnn_score" in self.ranking.columns and bool(self.ranking["gnn_score"].notna().any())

    @property
    def has_md(self) -> bool:
        """Whether any ranked compound was refined by MD."""
        return "md_rmsd_mean" in self.ranking.columns and bool(self.ranking["md_rmsd_mean"].notna().any())


_TEXT_COLUMNS = {
    "id": str,
    "input_id": str,
    "stage": str,
    "reason": str,
    "failed_checks": str,
    "pose_check": str,
    "pose_check_reason": str,
}
_FILLED_COLUMNS = ("stage", "reason", "interactions", "md_interactions", "failed_checks", "pose_check_reason")


def _read_csv(path: Path, columns: list[str] | None = None, **read_options) -> pd.DataFrame:
    """A CSV the rank stage wrote: ids as text (an id "NA" stays "NA"), empty cells as "" or NaN, neutralizing quotes removed."""
    if not path.is_file():
        return pd.DataFrame(columns=columns or [])
    table = pd.read_csv(path, dtype=_TEXT_COLUMNS, keep_default_na=False, na_values=[""], **read_options)
    for column in _FILLED_COLUMNS:
        if column in table.columns:
            # a text column with no value in the rows read comes back as float NaN
            all_empty = pd.api.types.is_float_dtype(table[column]) and table[column].isna().all()
            table[column] = "" if all_empty else table[column].fillna("")
    return restore_csv_cells(table)


def read_ranking(path: Path, top_n: int | None = None) -> pd.DataFrame:
    """``ranking.csv``; with ``top_n``, only the :data:`LIBRARY_COLUMNS` below the first ``top_n`` rows.

    The file is in rank order, so its first ``top_n`` rows are the top hits: they are read
    whole, the rest with the library-wide columns only, and the two put together in the
    file's column order. Below the top hits the other columns are missing values of the
    same kind (integers stay integers, as nullable ``Int64``; ``""`` where a full read fills
    text), so the top rows read exactly as a full read gives them.
    """
    if top_n is None:
        return _read_csv(path)
    header = list(pd.read_csv(path, nrows=0).columns)
    top = _read_csv(path, nrows=top_n)
    table = _read_csv(path, usecols=[c for c in header if c in LIBRARY_COLUMNS])
    for column in header:
        if column in LIBRARY_COLUMNS:
            continue
        values = top[column]
        if pd.api.types.is_integer_dtype(values):
            full = pd.arrays.IntegerArray(np.zeros(len(table), np.int64), np.ones(len(table), bool))
        elif pd.api.types.is_float_dtype(values):
            full = np.full(len(table), np.nan)
        else:
            full = np.full(len(table), "" if column in _FILLED_COLUMNS else None, dtype=object)
        full[: len(top)] = values.to_numpy()
        table[column] = full
    return table[header]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_chunks(layout: RunLayout) -> list[str]:
    """Chunk names from the split's manifest; none when there is no manifest (a folder made by hand)."""
    try:
        return layout.chunks()
    except (FileNotFoundError, KeyError):
        return []


def _id_column(path: Path):
    return pq.read_table(path, columns=["id"])["id"]


def _count_per_chunk(paths: list[Path]) -> int:
    """Distinct ids over per-chunk tables, one table at a time (a compound lives in exactly one chunk)."""
    return sum(pc.count_distinct(_id_column(p)).as_py() for p in paths if p.is_file())


def _ids(paths: list[Path]) -> set[str]:
    """Distinct ids over a few small tables (refinement batches; a compound's poses may span two)."""
    ids: set[str] = set()
    for path in paths:
        if path.is_file():
            ids.update(str(i) for i in _id_column(path).to_pylist())
    return ids


def best_pose_fingerprints(paths: list[Path], ids: set[str] | None = None) -> pd.DataFrame:
    """The interaction fingerprint of each compound's best featurized pose (lowest pose number).

    Parameters
    ----------
    paths
        ``features/chunk_*.parquet`` tables (one row per pose: ``id, pose, ...`` and
        boolean ``RESIDUE:Interaction`` columns).
    ids
        Keep only these compounds (the top hits): only the ``id`` column of each table is
        read to find the tables that hold them, then only their rows, so a large screen is
        never held in memory; ``None`` keeps all.

    Returns
    -------
    pandas.DataFrame
        ``id`` plus every ``RESIDUE:Interaction`` column seen in the tables read (absent = False).
    """
    frames = []
    for path in paths:
        if not path.is_file():
            continue
        if ids is None:
            frames.append(pd.read_parquet(path))
            continue
        found = [i for i in _id_column(path).unique().to_pylist() if i in ids]
        if found:
            frames.append(pd.read_parquet(path, filters=[("id", "in", found)]))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["id"])
    table = pd.concat(frames, ignore_index=True).sort_values(["id", "pose"]).drop_duplicates("id")
    pairs = [c for c in table.columns if ":" in c]
    out = table[["id", *pairs]].copy()
    out[pairs] = out[pairs].fillna(False).astype(bool)
    return out.reset_index(drop=True)


def load_run(run_dir: str | Path, config: dict[str, Any], top_n: int | None = None) -> RunData:
    """Read a finished run folder.

    Parameters
    ----------
    run_dir
        ``results/<run>``; ``ranking.csv`` must exist (the ``rank`` stage has run).
    config
        The validated run config (``results/<run>/config.yaml``).
    top_n
        Fingerprints, and the ranking's columns that are shown for the top hits only, are
        read for the first ``top_n`` ranked compounds only (``None``: all).

    Returns
    -------
    RunData

    Raises
    ------
    ReportError
        No ``ranking.csv`` in ``run_dir``.
    """
    layout = RunLayout(run_dir)
    run = layout.root
    if not layout.ranking.is_file():
        raise ReportError(f"no ranking.csv in '{run}'; run the screen (or 'vscreen rank --run-dir {run}') first")
    ranking = read_ranking(layout.ranking, top_n)
    failures = _read_csv(layout.failures, FAILURE_COLUMNS)
    warnings = _read_csv(layout.pose_warnings, FAILURE_COLUMNS)
    chunks, batches = run_chunks(layout), layout.batches()
    stage_counts = {
        "prepared": _count_per_chunk([layout.ligand_table(c) for c in chunks]),
        "docked": _count_per_chunk([layout.docked_table(c) for c in chunks]),
        "featurized": _count_per_chunk([layout.feature_table(c) for c in chunks]),
        "selected": len(_ids([layout.batch_table(b) for b in batches])),
        "refined": len(_ids([layout.refined_table(b) for b in batches])),
    }
    if "gnn_score" in ranking.columns:
        stage_counts["scored"] = int(ranking["gnn_score"].notna().sum())
    labels = label_ranking(
        ranking,
        read_labels(
            config["library"], config.get("report", {}).get("label_column", schema_default("report", "label_column"))
        ),
    )
    top_ids = None if top_n is None else set(ranking["id"].head(top_n).astype(str))
    return RunData(
        run_dir=run,
        config=config,
        ranking=ranking,
        failures=failures,
        warnings=warnings,
        labels=labels,
        stage_counts=stage_counts,
        manifest=_read_json(layout.chunks_dir / "manifest.json"),
        receptor=_read_json(layout.receptor_report),
        box=_read_json(layout.box_json),
        fingerprints=best_pose_fingerprints([layout.feature_table(c) for c in chunks], top_ids),
        pocket=_pocket_record(layout),
    )


def _pocket_record(layout: RunLayout):
    """``domain.json`` as a :class:`~pipeline.scoring.domain.PocketRecord`; ``None`` when missing or unreadable."""
    from ..scoring.domain import DomainError, read_pocket_record

    try:
        return read_pocket_record(layout.domain)
    except DomainError:  # the report describes what it can; the rank stage has already decided
        return None
