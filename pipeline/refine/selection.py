"""Which docked poses are refined, and in which batches.

Compounds are ranked by their best docking score (most negative first; ties by id),
the top compounds are kept (``top_n`` and/or ``top_fraction``), and for each of them
its best ``poses_per_compound`` poses (by docking score, ties by pose number).
Everything is sorted, so the selection never depends on the order of the input
tables or on how compounds were chunked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import pandas as pd
from rdkit import Chem

from ..io import sdf_supplier

__all__ = ["SELECTION_COLUMNS", "select_poses", "batch", "load_poses"]

#: Columns of :func:`select_poses`' result.
SELECTION_COLUMNS = ["id", "pose", "docking_score", "compound_rank"]


def select_poses(
    pose_table: pd.DataFrame, top_fraction: float | None = None, top_n: int | None = None, poses_per_compound: int = 1
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
        Poses per kept compound, best docking score first (>= 1).

    Returns
    -------
    pd.DataFrame
        Columns :data:`SELECTION_COLUMNS` (``compound_rank`` 1 = best compound),
        ordered by compound rank, then docking score, then pose; fresh index.

    Raises
    ------
    ValueError
        Missing columns or out-of-range limits.
    """
    missing = {"id", "pose", "docking_score"} - set(pose_table.columns)
    if missing:
        raise ValueError(f"pose table lacks columns {sorted(missing)}")
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1]; got {top_fraction!r}")
    if top_n is not None and top_n < 0:
        raise ValueError(f"top_n must be >= 0; got {top_n!r}")
    if poses_per_compound < 1:
        raise ValueError(f"poses_per_compound must be >= 1; got {poses_per_compound!r}")
    table = pose_table.loc[pose_table["docking_score"].notna(), ["id", "pose", "docking_score"]].copy()
    table["id"] = table["id"].astype(str)
    table["pose"] = table["pose"].astype(int)
    table["docking_score"] = table["docking_score"].astype(float)
    table = table.drop_duplicates(["id", "pose"])

    best = table.groupby("id", sort=True)["docking_score"].min().reset_index()
    best = best.sort_values(["docking_score", "id"], kind="mergesort").reset_index(drop=True)
    n_keep = len(best)
    if top_fraction is not None:
        n_keep = min(n_keep, math.ceil(top_fraction * len(best) - 1e-9))
    if top_n is not None:
        n_keep = min(n_keep, int(top_n))
    ranks = {cid: rank for rank, cid in enumerate(best["id"].iloc[:n_keep], start=1)}

    chosen = table[table["id"].isin(ranks.keys())].copy()
    chosen["compound_rank"] = chosen["id"].map(ranks).astype(int)
    chosen = chosen.sort_values(["compound_rank", "docking_score", "pose"], kind="mergesort")
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
