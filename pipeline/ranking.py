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
# with GNN scoring, these follow the docking score (in this order, where present)
SCORE_COLUMNS = ["gnn_score", "gnn_spread", "consensus_score", "gnn_score_refined", "gnn_spread_refined"]


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


def gnn_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per compound, the GNN ensemble's score of its best-scored docked pose and of its refined complex.

    ``scores`` has one row per scored graph (``id, pose, source, gnn_score, gnn_spread``,
    from :func:`pipeline.scoring.score.score_graph_files`). Returns ``id, gnn_score,
    gnn_spread`` (docked poses: every ranked compound has one, so the whole library is
    ranked on the same footing) and ``gnn_score_refined, gnn_spread_refined`` (compounds
    that were refined; NaN for the others).
    """
    columns = ["id", "gnn_score", "gnn_spread", "gnn_score_refined", "gnn_spread_refined"]
    if scores is None or not len(scores):
        return pd.DataFrame(columns=columns)
    ordered = scores.sort_values(["id", "gnn_score", "pose"], ascending=[True, False, True], kind="mergesort")
    best = ordered.drop_duplicates(["id", "source"])
    docked = best[best["source"] == "docked"][["id", "gnn_score", "gnn_spread"]]
    refined = best[best["source"] == "refined"][["id", "gnn_score", "gnn_spread"]].rename(
        columns={"gnn_score": "gnn_score_refined", "gnn_spread": "gnn_spread_refined"})
    return docked.merge(refined, on="id", how="outer")[columns]


def _zscore(values: pd.Series) -> pd.Series:
    std = values.std(ddof=0)
    return (values - values.mean()) / std if std and std > 0 else values * 0.0


def order_ranking(ranking: pd.DataFrame, rank_by: str = "docking", consensus_weight: float = 0.5) -> pd.DataFrame:
    """Sort the ranking and number it (``rank`` column first).

    ``rank_by``: ``docking`` (most negative docking score first), ``gnn`` (highest
    ``gnn_score`` first, docking score breaks ties) or ``consensus``
    (``consensus_score`` = ``w * z(gnn_score) + (1 - w) * z(-docking_score)``, z-scores
    over the ranked library, highest first). Compounds without the score sort last.
    """
    ranking = ranking.drop(columns=["rank"], errors="ignore").copy()
    if rank_by == "consensus":
        ranking["consensus_score"] = (consensus_weight * _zscore(ranking["gnn_score"])
                                      + (1 - consensus_weight) * _zscore(-ranking["docking_score"]))
    if rank_by == "docking":
        ranking = ranking.sort_values(["docking_score", "id"], kind="mergesort")
    else:
        key = "gnn_score" if rank_by == "gnn" else "consensus_score"
        ranking = ranking.sort_values([key, "docking_score", "id"], ascending=[False, True, True],
                                      na_position="last", kind="mergesort")
    ranking = ranking.reset_index(drop=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))
    return ranking


def build_ranking(chunk_tables: Iterable[str | Path], ligand_tables: Iterable[str | Path],
                  pose_tables: Iterable[str | Path], failure_files: Iterable[str | Path],
                  feature_tables: Iterable[str | Path] = (), refined_tables: Iterable[str | Path] = (),
                  refined_feature_tables: Iterable[str | Path] = (), scores: pd.DataFrame | None = None,
                  rank_by: str = "docking", consensus_weight: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(ranking, failures)`` from the per-chunk outputs of split, prepare, dock, refine and featurize.

    ``scores`` (GNN scores per graph) adds the ``gnn_*`` columns (:func:`gnn_summary`);
    ``rank_by`` and ``consensus_weight`` choose the order (:func:`order_ranking`).

    ``failures`` has a ``warnings`` attribute (``failures.attrs["warnings"]``): pose-level
    problems of compounds that are still ranked through another pose.
    """
    inputs = pd.concat([pd.read_parquet(p) for p in chunk_tables], ignore_index=True)
    ligands = pd.concat([pd.read_parquet(p, columns=["id", "prepared_smiles", "heavy_atoms", "formal_charge", "rotatable_bonds"])
                         for p in ligand_tables], ignore_index=True)
    docking = best_poses(pose_tables)
    failures = collect_failures(failure_files)

    ranking = inputs[["id", "input_id", "smiles"]].merge(ligands, on="id").merge(docking, on="id")
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
    if scores is not None:
        ranking = ranking.merge(gnn_summary(scores), on="id", how="left")
    elif rank_by != "docking":
        raise ValueError(f"ranking by {rank_by} needs GNN scores")
    ranking = order_ranking(ranking, rank_by, consensus_weight)

    lost = set(inputs["id"]) - set(ranking["id"]) - set(failures["id"])
    if lost:
        log.error("%d compounds produced no result and no failure record: %s", len(lost), sorted(lost)[:10])
        extra = pd.DataFrame({"id": sorted(lost), "stage": "unknown", "reason": "no result and no recorded failure (please report this)"})
        failures = pd.concat([failures, extra], ignore_index=True)
    scored = [c for c in SCORE_COLUMNS if c in ranking.columns]
    front = RANKING_COLUMNS[:6] + scored + RANKING_COLUMNS[6:]
    extra = [c for c in ranking.columns if c not in front]
    failures.attrs["warnings"] = warnings
    return ranking[front + extra], failures


def write_table_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically, floats with 4 decimals."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
