"""Everything the report shows, read once from a finished run folder.

:func:`load_run` reads ``ranking.csv``, ``failures.csv``, ``pose_warnings.csv``,
the split manifest, the receptor report and box, the per-stage tables (to count
compounds per stage) and the interaction fingerprints of the best docked poses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import FAILURE_COLUMNS
from ..library import list_chunks
from .labels import label_ranking, read_labels


class ReportError(ValueError):
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
        ``ranking.csv`` (ids read as text).
    failures, warnings
        ``failures.csv`` and ``pose_warnings.csv`` (``id, stage, reason``).
    labels
        Activity label of each ranking row (1.0 / 0.0 / NaN), or ``None`` for an unlabelled library.
    stage_ids
        Compound ids that reached each stage (``prepared``, ``docked``, ``featurized``,
        ``selected``, ``refined``, ``scored``).
    manifest
        Split counts (``rows``, ``accepted``, ``failed``, ``chunks``).
    receptor, box
        ``receptor/receptor.json`` and ``receptor/box.json`` (empty when missing).
    fingerprints
        One row per compound (its best featurized docked pose; the top hits only when
        :func:`load_run` is given ``top_n``): ``id`` and boolean ``RESIDUE:Interaction`` columns.
    """

    run_dir: Path
    config: dict[str, Any]
    ranking: pd.DataFrame
    failures: pd.DataFrame
    warnings: pd.DataFrame
    labels: pd.Series | None
    stage_ids: dict[str, set[str]] = field(default_factory=dict)
    manifest: dict[str, int] = field(default_factory=dict)
    receptor: dict[str, Any] = field(default_factory=dict)
    box: dict[str, Any] = field(default_factory=dict)
    fingerprints: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def has_gnn(self) -> bool:
        """Whether the ranking carries GNN scores."""
        return "gnn_score" in self.ranking.columns and bool(self.ranking["gnn_score"].notna().any())

    @property
    def has_md(self) -> bool:
        """Whether any ranked compound was refined by MD."""
        return "md_rmsd_mean" in self.ranking.columns and bool(self.ranking["md_rmsd_mean"].notna().any())


def _read_csv(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns or [])
    text_columns = {"id": str, "input_id": str, "stage": str, "reason": str}
    table = pd.read_csv(path, dtype=text_columns, keep_default_na=True)
    for column in ("stage", "reason", "interactions", "md_interactions"):
        if column in table.columns:
            table[column] = table[column].fillna("")
    return table


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _ids(paths: list[Path]) -> set[str]:
    ids: set[str] = set()
    for path in paths:
        if path.is_file():
            ids.update(pd.read_parquet(path, columns=["id"])["id"].astype(str))
    return ids


def best_pose_fingerprints(paths: list[Path], ids: set[str] | None = None) -> pd.DataFrame:
    """The interaction fingerprint of each compound's best featurized pose (lowest pose number).

    Parameters
    ----------
    paths
        ``features/chunk_*.parquet`` tables (one row per pose: ``id, pose, ...`` and
        boolean ``RESIDUE:Interaction`` columns).
    ids
        Keep only these compounds (the top hits), so a large screen is never held in memory
        at once; ``None`` keeps all.

    Returns
    -------
    pandas.DataFrame
        ``id`` plus every ``RESIDUE:Interaction`` column seen in any table (absent = False).
    """
    frames = [pd.read_parquet(p) for p in paths if p.is_file()]
    frames = [f[f["id"].astype(str).isin(ids)] if ids is not None else f for f in frames]
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
        Fingerprints are read for the first ``top_n`` ranked compounds only (``None``: all).

    Returns
    -------
    RunData

    Raises
    ------
    ReportError
        No ``ranking.csv`` in ``run_dir``.
    """
    run = Path(run_dir)
    if not (run / "ranking.csv").is_file():
        raise ReportError(f"no ranking.csv in '{run}'; run the screen (or 'vscreen rank --run-dir {run}') first")
    ranking = _read_csv(run / "ranking.csv")
    failures = _read_csv(run / "failures.csv", FAILURE_COLUMNS)
    warnings = _read_csv(run / "pose_warnings.csv", FAILURE_COLUMNS)
    chunks = list_chunks(run / "chunks")
    batches = sorted(p.stem for p in (run / "refine_batches").glob("batch_*.parquet"))
    stage_ids = {
        "prepared": _ids([run / "ligands" / f"{c}.parquet" for c in chunks]),
        "docked": _ids([run / "docked" / f"{c}.parquet" for c in chunks]),
        "featurized": _ids([run / "features" / f"{c}.parquet" for c in chunks]),
        "selected": _ids([run / "refine_batches" / f"{b}.parquet" for b in batches]),
        "refined": _ids([run / "refined" / f"{b}.parquet" for b in batches]),
    }
    if "gnn_score" in ranking.columns:
        stage_ids["scored"] = set(ranking.loc[ranking["gnn_score"].notna(), "id"])
    labels = label_ranking(ranking, read_labels(config["library"], config.get("report", {}).get("label_column", "active")))
    return RunData(run_dir=run, config=config, ranking=ranking, failures=failures, warnings=warnings, labels=labels,
                   stage_ids=stage_ids, manifest=_read_json(run / "chunks" / "manifest.json"),
                   receptor=_read_json(run / "receptor" / "receptor.json"), box=_read_json(run / "receptor" / "box.json"),
                   fingerprints=best_pose_fingerprints(
                       [run / "features" / f"{c}.parquet" for c in chunks],
                       None if top_n is None else set(ranking["id"].head(top_n).astype(str))))
