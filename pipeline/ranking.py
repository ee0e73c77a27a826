"""Collating the stages into ``ranking.csv`` and ``failures.csv``.

The ranking has one row per compound that produced at least one docked pose,
best (most negative) docking score first. ``failures.csv`` gathers the rejections of
every stage. Together they account for every input row: a compound that vanished
without a recorded reason is added to the failures (stage ``unknown``) and logged,
so the nothing-is-lost contract holds even if a stage has a bug.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import pandas as pd

from .io import FAILURE_COLUMNS, atomic_path, read_failures

log = logging.getLogger(__name__)

RANKING_COLUMNS = ["rank", "id", "input_id", "smiles", "prepared_smiles", "docking_score", "n_poses",
                   "heavy_atoms", "formal_charge", "rotatable_bonds"]


def best_poses(pose_tables: Iterable[str | Path]) -> pd.DataFrame:
    """One row per compound: its best docking score and how many poses it has."""
    frames = [pd.read_parquet(p, columns=["id", "pose", "docking_score"]) for p in pose_tables]
    poses = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "pose", "docking_score"])
    grouped = poses.groupby("id", sort=False)
    return pd.DataFrame({"docking_score": grouped["docking_score"].min(), "n_poses": grouped["pose"].count()}).reset_index()


def collect_failures(failure_files: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate failure CSVs (``id, stage, reason``)."""
    frames = [read_failures(p) for p in failure_files]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[FAILURE_COLUMNS] if frames else pd.DataFrame(columns=FAILURE_COLUMNS)


def build_ranking(chunk_tables: Iterable[str | Path], ligand_tables: Iterable[str | Path],
                  pose_tables: Iterable[str | Path], failure_files: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(ranking, failures)`` from the per-chunk outputs of split, prepare and dock."""
    inputs = pd.concat([pd.read_parquet(p) for p in chunk_tables], ignore_index=True)
    ligands = pd.concat([pd.read_parquet(p, columns=["id", "prepared_smiles", "heavy_atoms", "formal_charge", "rotatable_bonds"])
                         for p in ligand_tables], ignore_index=True)
    scores = best_poses(pose_tables)
    failures = collect_failures(failure_files)

    ranking = inputs[["id", "input_id", "smiles"]].merge(ligands, on="id").merge(scores, on="id")
    ranking = ranking.sort_values(["docking_score", "id"], kind="mergesort").reset_index(drop=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))

    lost = set(inputs["id"]) - set(ranking["id"]) - set(failures["id"])
    if lost:
        log.error("%d compounds produced no result and no failure record: %s", len(lost), sorted(lost)[:10])
        extra = pd.DataFrame({"id": sorted(lost), "stage": "unknown", "reason": "no result and no recorded failure (please report this)"})
        failures = pd.concat([failures, extra], ignore_index=True)
    return ranking[RANKING_COLUMNS], failures


def write_table_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically, floats with 4 decimals."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
