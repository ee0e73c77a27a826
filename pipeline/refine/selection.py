"""Which docked poses are refined, and in which batches.

A rule (``refine.select_by``) gives every docked pose a selection value, higher = sent
to MD first:

``docking``
    minus the docking score (Vina, kcal/mol, lower = better): the best docking scores.
``score``
    the scorer's ``gnn_score`` of the docked pose (higher = better for every model kind;
    :mod:`pipeline.scoring.score`).
``ucb``
    the upper confidence bound ``gnn_score + ucb_k * gnn_spread``: a compound the model
    rates well *or* is unsure about gets MD, so the physics checks the model where it
    knows least (``gnn_spread`` is the ensemble's standard deviation, in the units of
    ``gnn_score``; ``ucb_k = 0`` is the ``score`` rule).

A compound's value is that of its best pose. Compounds are ranked by it (ties by best
docking score, then id), the top compounds kept (``top_n`` and/or ``top_fraction``),
and for each of them its best ``poses_per_compound`` poses by the same value (ties by
docking score, then pose number). Under a model rule, a pose the scorer has no score
for (featurization or scoring failed, or ``featurize.poses_per_compound`` left it out)
comes after the compound's scored poses, and a compound without any scored pose after
every scored compound, in docking order: the model cannot vouch for it, but its docking
score is still a result. Everything is sorted, so the selection never depends on the
order of the input tables or on how compounds were chunked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd
from rdkit import Chem

from ..config import schema_default
from ..io import sdf_supplier

__all__ = ["SELECT_BY", "SELECTION_COLUMNS", "select_poses", "batch", "load_poses"]

#: The selection rules (``refine.select_by``); ``docking`` needs no scores.
SELECT_BY = ("docking", "score", "ucb")
#: Columns of :func:`select_poses`' result: the pose, its compound's rank under the rule and
#: under docking, and the scorer's values of the pose (NaN without scores).
SELECTION_COLUMNS = ["id", "pose", "docking_score", "compound_rank", "docking_rank", "gnn_score", "gnn_spread", "ucb"]


def _docked_poses(pose_table: pd.DataFrame) -> pd.DataFrame:
    """``id, pose, docking_score`` of the poses with a docking score, typed, one row per pose."""
    table = pose_table.loc[pose_table["docking_score"].notna(), ["id", "pose", "docking_score"]].copy()
    table["id"] = table["id"].astype(str)
    table["pose"] = table["pose"].astype(int)
    table["docking_score"] = table["docking_score"].astype(float)
    return table.drop_duplicates(["id", "pose"])


def _with_scores(table: pd.DataFrame, scores: pd.DataFrame | None, ucb_k: float) -> pd.DataFrame:
    """``table`` with each pose's ``gnn_score``, ``gnn_spread`` and ``ucb`` (NaN where not scored)."""
    if scores is None:
        return table.assign(gnn_score=np.nan, gnn_spread=np.nan, ucb=np.nan)
    missing = {"id", "pose", "gnn_score", "gnn_spread"} - set(scores.columns)
    if missing:
        raise ValueError(f"score table lacks columns {sorted(missing)}")
    docked = scores if "source" not in scores.columns else scores[scores["source"] == "docked"]
    docked = docked[["id", "pose", "gnn_score", "gnn_spread"]].copy()
    docked["id"] = docked["id"].astype(str)
    docked["pose"] = docked["pose"].astype(int)
    docked = docked.drop_duplicates(["id", "pose"])
    merged = table.merge(docked, on=["id", "pose"], how="left")
    merged["gnn_score"] = merged["gnn_score"].astype(float)
    # a single-member model has no spread: its UCB is its score
    merged["gnn_spread"] = merged["gnn_spread"].astype(float)
    merged["ucb"] = merged["gnn_score"] + ucb_k * merged["gnn_spread"].fillna(0.0)
    return merged


def selection_value(table: pd.DataFrame, select_by: str) -> pd.Series:
    """Each pose's value under ``select_by`` (higher = sent to MD first; NaN = not scored).

    Parameters
    ----------
    table : pd.DataFrame
        ``docking_score`` and, for the model rules, ``gnn_score`` and ``ucb``.
    select_by : {"docking", "score", "ucb"}
    """
    if select_by == "docking":
        return -table["docking_score"]
    return table["gnn_score" if select_by == "score" else "ucb"].astype(float)


def select_poses(
    pose_table: pd.DataFrame,
    top_fraction: float | None = None,
    top_n: int | None = None,
    poses_per_compound: int = schema_default("refine", "poses_per_compound"),
    select_by: str = schema_default("refine", "select_by"),
    scores: pd.DataFrame | None = None,
    ucb_k: float = schema_default("refine", "ucb_k"),
) -> pd.DataFrame:
    """Choose the ``(id, pose)`` pairs to refine.

    Parameters
    ----------
    pose_table : pd.DataFrame
        One row per docked pose with at least ``id``, ``pose``, ``docking_score``
        (the docking stage's tables, concatenated). Rows with a missing score are ignored.
    top_fraction : float or None
        Keep the best ``ceil(top_fraction * n_compounds)`` compounds (0 < f <= 1).
    top_n : int or None
        Keep at most this many compounds. With both limits the stricter wins;
        with neither every compound is kept.
    poses_per_compound : int
        Poses per kept compound, best value first (>= 1).
    select_by : {"docking", "score", "ucb"}
        The rule (module docstring).
    scores : pd.DataFrame or None
        The scorer's table of the docked poses (``id, pose, gnn_score, gnn_spread`` and
        optionally ``source``, of which the ``docked`` rows are used); required by the
        model rules, shown beside the docking rule's choice when given.
    ucb_k : float
        Weight of the spread in ``ucb``.

    Returns
    -------
    pd.DataFrame
        Columns :data:`SELECTION_COLUMNS` (``compound_rank`` 1 = the compound sent first
        under the rule, ``docking_rank`` its rank among all docked compounds by best
        docking score), ordered by compound rank, then pose value; fresh index.

    Raises
    ------
    ValueError
        Missing columns, an unknown rule, a model rule without scores, or out-of-range limits.
    """
    missing = {"id", "pose", "docking_score"} - set(pose_table.columns)
    if missing:
        raise ValueError(f"pose table lacks columns {sorted(missing)}")
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}; got {select_by!r}")
    if select_by != "docking" and scores is None:
        raise ValueError(f"select_by {select_by!r} needs the scorer's scores of the docked poses")
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1]; got {top_fraction!r}")
    if top_n is not None and top_n < 0:
        raise ValueError(f"top_n must be >= 0; got {top_n!r}")
    if poses_per_compound < 1:
        raise ValueError(f"poses_per_compound must be >= 1; got {poses_per_compound!r}")
    table = _with_scores(_docked_poses(pose_table), scores, ucb_k)
    # sort keys: ascending, unscored (NaN) last
    table["_key"] = (-selection_value(table, select_by)).fillna(np.inf)

    best = table.groupby("id", sort=True).agg(_key=("_key", "min"), _docking=("docking_score", "min")).reset_index()
    docking_order = best.sort_values(["_docking", "id"], kind="mergesort")["id"]
    docking_rank = {cid: rank for rank, cid in enumerate(docking_order, start=1)}
    best = best.sort_values(["_key", "_docking", "id"], kind="mergesort").reset_index(drop=True)
    n_keep = len(best)
    if top_fraction is not None:
        n_keep = min(n_keep, math.ceil(top_fraction * len(best) - 1e-9))
    if top_n is not None:
        n_keep = min(n_keep, int(top_n))
    ranks = {cid: rank for rank, cid in enumerate(best["id"].iloc[:n_keep], start=1)}

    chosen = table[table["id"].isin(ranks.keys())].copy()
    chosen["compound_rank"] = chosen["id"].map(ranks).astype(int)
    chosen["docking_rank"] = chosen["id"].map(docking_rank).astype(int)
    chosen = chosen.sort_values(["compound_rank", "_key", "docking_score", "pose"], kind="mergesort")
    chosen = chosen.groupby("id", sort=False).head(poses_per_compound)
    return chosen[SELECTION_COLUMNS].reset_index(drop=True)


def batch(selected: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    """Split a selection into consecutive batches of at most ``batch_size`` poses.

    The order of ``selected`` is kept, so batch ``j`` always holds the same poses for
    the same selection (restartable jobs). Each batch has a fresh index.

    Raises
    ------
    ValueError
        ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
    return [selected.iloc[i : i + batch_size].reset_index(drop=True) for i in range(0, len(selected), batch_size)]


def load_poses(sdf_paths: Iterable[str | os.PathLike], selected: pd.DataFrame) -> tuple[list[Chem.Mol], list[dict]]:
    """Read the selected poses from docking SDFs, in the order of ``selected``.

    Parameters
    ----------
    sdf_paths : iterable of path
        Docked SDFs (name = id, SD prop ``pose``), e.g. ``results/<run>/docked/chunk_*.sdf``.
    selected : pd.DataFrame
        Rows with ``id`` and ``pose`` (a batch from :func:`batch`).

    Returns
    -------
    (list of Chem.Mol, list of dict)
        Poses with their hydrogens, and failure rows (``id, stage='refine', reason``)
        for selected poses that are absent or unreadable.
    """
    wanted = {(str(i), int(p)) for i, p in zip(selected["id"], selected["pose"])}
    found: dict[tuple[str, int], Chem.Mol] = {}
    for path in sorted(str(p) for p in sdf_paths):
        for mol in sdf_supplier(path, removeHs=False):  # a chunk whose ligands all failed is empty
            if mol is None or not mol.HasProp("pose"):
                continue
            key = (mol.GetProp("_Name"), int(float(mol.GetProp("pose"))))
            if key in wanted and key not in found:
                found[key] = mol
    poses, failures = [], []
    for cid, pose in zip(selected["id"].astype(str), selected["pose"].astype(int)):
        mol = found.get((cid, pose))
        if mol is None:
            failures.append(
                dict(id=cid, stage="refine", reason=f"pose {pose}: not found or unreadable in the docked SDFs")
            )
        else:
            poses.append(mol)
    return poses, failures
