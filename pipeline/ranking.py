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


def interaction_summary(feature_tables: Iterable[str | Path], top: int = 6) -> pd.DataFrame:
    """Per compound (its best featurized pose): counts by interaction type and the key interactions.

    Returns columns ``id``, ``n_<Type>`` for every interaction type and ``interactions``:
    the residue–interaction pairs of the pose, H-bonds and ionic ones first, at most ``top``.
    """
    frames = [pd.read_parquet(p) for p in feature_tables if Path(p).exists()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["id", "interactions"])
    table = pd.concat(frames, ignore_index=True).sort_values(["id", "pose"]).drop_duplicates("id")
    counts = [c for c in table.columns if c.startswith("n_")]
    pairs = [c for c in table.columns if ":" in c]
    priority = ("HBDonor", "HBAcceptor", "Cationic", "Anionic", "CationPi", "PiCation", "PiStacking", "XBDonor")

    def key_interactions(row: pd.Series) -> str:
        present = [c for c in pairs if bool(row[c])]
        present.sort(key=lambda c: (c.split(":")[1] not in priority, priority.index(c.split(":")[1]) if c.split(":")[1] in priority else 0))
        return "; ".join(present[:top])

    out = table[["id", *counts]].copy()
    out["interactions"] = table.apply(key_interactions, axis=1) if pairs else ""
    return out.fillna({"interactions": ""})


MD_COLUMNS = {"pose": "md_pose", "rmsd_mean": "md_rmsd_mean", "rmsd_max": "md_rmsd_max", "rmsd_final": "md_rmsd_final",
              "pocket_backbone_rmsd": "md_pocket_backbone_rmsd", "interaction_energy": "md_interaction_energy",
              "interaction_energy_std": "md_interaction_energy_std"}


def md_summary(refined_tables: Iterable[str | Path]) -> pd.DataFrame:
    """Per refined compound, the MD metrics of its pose with the lowest interaction energy (``md_*`` columns)."""
    frames = [pd.read_parquet(p) for p in refined_tables if Path(p).exists()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["id", *MD_COLUMNS.values()])
    table = pd.concat(frames, ignore_index=True).sort_values(["id", "interaction_energy", "pose"])
    return table.drop_duplicates("id")[["id", *MD_COLUMNS]].rename(columns=MD_COLUMNS)


def persistent_interactions(feature_tables: Iterable[str | Path], threshold: float = 0.5, top: int = 6) -> pd.DataFrame:
    """Per refined compound: residue–interaction pairs present in at least ``threshold`` of the MD frames."""
    frames = [pd.read_parquet(p) for p in feature_tables if Path(p).exists()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["id", "md_interactions"])
    table = pd.concat(frames, ignore_index=True).sort_values(["id", "pose"]).drop_duplicates("id")
    pairs = [c for c in table.columns if ":" in c]

    def persistent(row: pd.Series) -> str:
        ranked = sorted(((float(row[c]), c) for c in pairs if pd.notna(row[c]) and float(row[c]) >= threshold), reverse=True)
        return "; ".join(f"{c} ({v:.0%})" for v, c in ranked[:top])

    return pd.DataFrame({"id": table["id"], "md_interactions": table.apply(persistent, axis=1) if pairs else ""})


def split_late_failures(failures: pd.DataFrame, ranked_ids: set[str], succeeded: dict[str, set[str]]
                        ) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """Sort out failures of the per-pose stages (refine, featurize).

    A compound whose every pose failed a stage leaves the ranking (one failure row,
    reasons joined); a compound with at least one good pose stays ranked and its bad
    poses become warnings. Returns ``(failures, warnings, ids_to_drop_from_ranking)``.
    """
    late = failures["stage"].isin(list(succeeded)) & failures["id"].isin(ranked_ids)
    early, rows = failures[~late], failures[late]
    keep_warning = rows.apply(lambda r: r["id"] in succeeded[r["stage"]], axis=1) if len(rows) else pd.Series(dtype=bool)
    warnings, fatal = rows[keep_warning], rows[~keep_warning] if len(rows) else rows
    fatal = (fatal.groupby(["id", "stage"], sort=False)["reason"].agg("; ".join).reset_index()
             .drop_duplicates("id") if len(fatal) else fatal)
    return pd.concat([early, fatal], ignore_index=True)[FAILURE_COLUMNS], warnings, set(fatal["id"])


def build_ranking(chunk_tables: Iterable[str | Path], ligand_tables: Iterable[str | Path],
                  pose_tables: Iterable[str | Path], failure_files: Iterable[str | Path],
                  feature_tables: Iterable[str | Path] = (), refined_tables: Iterable[str | Path] = (),
                  refined_feature_tables: Iterable[str | Path] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(ranking, failures)`` from the per-chunk outputs of split, prepare, dock, refine and featurize.

    ``failures`` has a ``warnings`` attribute (``failures.attrs["warnings"]``): pose-level
    problems of compounds that are still ranked through another pose.
    """
    inputs = pd.concat([pd.read_parquet(p) for p in chunk_tables], ignore_index=True)
    ligands = pd.concat([pd.read_parquet(p, columns=["id", "prepared_smiles", "heavy_atoms", "formal_charge", "rotatable_bonds"])
                         for p in ligand_tables], ignore_index=True)
    scores = best_poses(pose_tables)
    failures = collect_failures(failure_files)

    ranking = inputs[["id", "input_id", "smiles"]].merge(ligands, on="id").merge(scores, on="id")
    feature_tables, refined_tables, refined_feature_tables = map(list, (feature_tables, refined_tables, refined_feature_tables))
    features = interaction_summary(feature_tables)
    md = md_summary(refined_tables)
    refined_features = pd.concat([pd.read_parquet(p, columns=["id"]) for p in refined_feature_tables if Path(p).exists()]
                                 + [pd.DataFrame(columns=["id"])])
    succeeded = {"refine": set(md["id"]), "featurize": set(features["id"]) | set(refined_features["id"])}
    failures, warnings, dropped = split_late_failures(failures, set(ranking["id"]), succeeded)
    ranking = ranking[~ranking["id"].isin(dropped)]
    ranking = ranking.merge(features, on="id", how="left").merge(md, on="id", how="left")
    ranking = ranking.merge(persistent_interactions(refined_feature_tables), on="id", how="left")
    ranking = ranking.sort_values(["docking_score", "id"], kind="mergesort").reset_index(drop=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))

    lost = set(inputs["id"]) - set(ranking["id"]) - set(failures["id"])
    if lost:
        log.error("%d compounds produced no result and no failure record: %s", len(lost), sorted(lost)[:10])
        extra = pd.DataFrame({"id": sorted(lost), "stage": "unknown", "reason": "no result and no recorded failure (please report this)"})
        failures = pd.concat([failures, extra], ignore_index=True)
    extra = [c for c in ranking.columns if c not in RANKING_COLUMNS]
    failures.attrs["warnings"] = warnings
    return ranking[RANKING_COLUMNS + extra], failures


def write_table_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically, floats with 4 decimals."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
