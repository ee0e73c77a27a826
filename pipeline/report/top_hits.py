"""``top_hits.sdf``: the 3D poses of the best-ranked compounds, with every score as an SD property.

For each of the top N compounds of ``ranking.csv`` the pose is the MD-refined one
where the compound was refined (the pose ``md_pose`` whose scores the ranking
reports, final MD frame), otherwise its best docked pose. Molecules keep all
hydrogens and their coordinates in the receptor's frame, so the file opens next to
``receptor/receptor.pdb`` in PyMOL, Maestro, ChimeraX or any SDF viewer.

SD properties: every column of ``ranking.csv`` (empty where the ranking has no
value, e.g. MD columns of a compound that was not refined), then ``pose_source``
(``refined`` or ``docked``), ``pose`` and ``pose_docking_score`` (the Vina score of
that very pose). Values are single lines (:func:`pipeline.io.sd_text`: line breaks become
spaces); ``ranking.csv`` has the exact text.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rdkit import Chem

from ..io import atomic_path, sd_text
from ..layout import RunLayout
from .rundata import run_chunks


def _format(value: object, integer: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if integer else f"{value:.4f}"
    return sd_text(value)  # one line: an input id with a line break must not end the SD record


def _integer_columns(table: pd.DataFrame) -> set[str]:
    """Float columns whose values are all whole numbers (counts and pose numbers read from CSV with gaps)."""
    out = set()
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_float_dtype(values):
            known = values.dropna()
            if (
                len(known)
                and (known == known.round()).all()
                and (column.startswith("n_") or column in ("md_pose", "rank"))
            ):
                out.add(column)
    return out


def _index_by_id(tables: list[Path], ids: set[str]) -> dict[str, Path]:
    """Which SDF (next to each Parquet table) holds each wanted id."""
    where: dict[str, Path] = {}
    for table in tables:
        if not table.is_file():
            continue
        found = set(pd.read_parquet(table, columns=["id"])["id"].astype(str)) & ids
        for cid in found:
            where.setdefault(cid, table.with_suffix(".sdf"))
    return where


def _wanted_records(path: Path, wanted: set[str]) -> str:
    """The SD records of ``path`` whose title (the compound id) is wanted, as text.

    A docked chunk holds a thousand compounds' poses and the top hits are a few of them:
    only these records are handed to RDKit, so the others are never parsed.
    """
    kept: list[str] = []
    record: list[str] = []
    with open(path, newline="") as handle:
        for line in handle:
            record.append(line)
            if line.rstrip("\r\n") == "$$$$":
                if record[0].rstrip("\r\n") in wanted:
                    kept.append("".join(record))
                record = []
    return "".join(kept)


def _read_poses(where: dict[str, Path]) -> dict[tuple[str, int], Chem.Mol]:
    """Every pose (with hydrogens) of the wanted ids from the SDFs that hold them, keyed by ``(id, pose)``."""
    poses: dict[tuple[str, int], Chem.Mol] = {}
    wanted_by_file: dict[Path, set[str]] = {}
    for cid, path in where.items():
        wanted_by_file.setdefault(path, set()).add(cid)
    for path, wanted in wanted_by_file.items():
        supplier = Chem.SDMolSupplier()
        supplier.SetData(_wanted_records(path, wanted), removeHs=False, sanitize=True)
        for mol in supplier:
            if mol is None or mol.GetProp("_Name") not in wanted:
                continue
            pose = int(mol.GetProp("pose")) if mol.HasProp("pose") else 1
            poses.setdefault((mol.GetProp("_Name"), pose), mol)
    return poses


def select_top_poses(
    run_dir: str | Path, ranking: pd.DataFrame, top_n: int
) -> list[tuple[pd.Series, Chem.Mol, str, int]]:
    """The pose of each of the first ``top_n`` compounds of the ranking.

    Parameters
    ----------
    run_dir
        The run folder (``docked/``, ``refined/``, ``chunks/``, ``refine_batches/`` inside).
    ranking
        ``ranking.csv``, in rank order.
    top_n
        How many compounds.

    Returns
    -------
    list of (row, molecule, source, pose)
        ``source`` is ``refined`` or ``docked``; compounds whose pose cannot be found are skipped.
    """
    layout = RunLayout(run_dir)
    top = ranking.head(top_n)
    ids = set(top["id"].astype(str))
    refined_ids = set(top.loc[top["md_pose"].notna(), "id"].astype(str)) if "md_pose" in top else set()
    # chunks and batches from the manifests: a folder may hold a larger earlier selection's files
    refined = _read_poses(_index_by_id([layout.refined_table(b) for b in layout.batches()], refined_ids))
    chunks = run_chunks(layout) if ids else []
    docked = _read_poses(_index_by_id([layout.docked_table(c) for c in chunks], ids))
    out = []
    for _, row in top.iterrows():
        cid = str(row["id"])
        md_pose = row.get("md_pose")
        if cid in refined_ids and (cid, int(md_pose)) in refined:
            out.append((row, refined[(cid, int(md_pose))], "refined", int(md_pose)))
            continue
        mine = {pose: mol for (name, pose), mol in docked.items() if name == cid}
        if mine:
            best = min(
                mine,
                key=lambda p: (
                    float(mine[p].GetProp("docking_score")) if mine[p].HasProp("docking_score") else math.inf,
                    p,
                ),
            )
            out.append((row, mine[best], "docked", best))
    return out


def write_top_hits(
    run_dir: str | Path,
    ranking: pd.DataFrame,
    top_n: int,
    out_sdf: str | Path,
    chosen: list[tuple[pd.Series, Chem.Mol, str, int]] | None = None,
) -> int:
    """Write ``top_hits.sdf`` (see the module docstring) atomically.

    Parameters
    ----------
    run_dir
        The run folder.
    ranking
        ``ranking.csv`` in rank order (ids as text).
    top_n
        How many compounds to write (fewer when the ranking is shorter).
    out_sdf
        The SD file to write.
    chosen
        :func:`select_top_poses` of the same arguments when the caller has it already (the
        report reads the poses once for its 3D views and this file); ``None`` reads them.

    Returns
    -------
    int
        Molecules written.
    """
    integer = _integer_columns(ranking)
    if chosen is None:
        chosen = select_top_poses(run_dir, ranking, top_n)
    with atomic_path(out_sdf) as tmp:
        writer = Chem.SDWriter(str(tmp))
        writer.SetForceV3000(False)
        for row, mol, source, pose in chosen:
            pose_score = mol.GetProp("docking_score") if mol.HasProp("docking_score") else ""
            out = Chem.Mol(mol)
            for name in list(out.GetPropNames()):
                out.ClearProp(name)
            out.SetProp("_Name", str(row["id"]))
            for column, value in row.items():
                out.SetProp(str(column), _format(value, column in integer))
            out.SetProp("pose_source", source)
            out.SetProp("pose", str(pose))
            out.SetProp("pose_docking_score", pose_score)
            writer.write(out)
        writer.close()
    return len(chosen)
