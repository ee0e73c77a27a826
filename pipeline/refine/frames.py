"""MD frames of one refined pose on disk, for the interaction-fingerprint stage.

Two files per pose, sharing a stem (``<frames_dir>/<id>_pose<k>``):

``<stem>.pdb``
    Multi-model PDB of the pocket: every receptor residue within ``frame_cutoff`` of
    the docked ligand, all hydrogens, residue names/numbers/chains as in the
    receptor PDB, one ``MODEL`` per frame (same atoms in every model). RDKit reads
    it as one molecule with one conformer per frame
    (``Chem.MolFromPDBFile(path, removeHs=False)``); MDAnalysis reads it as a
    trajectory (``mda.Universe(path)``).
``<stem>.sdf``
    The ligand, one record per frame, same atoms and order as the refined pose,
    bond orders and charges intact; SD properties ``frame`` (1-based), ``time_ps``
    and ``interaction_energy`` (kcal/mol).

:func:`read_frames` gives them back as ``(protein, ligand)`` RDKit pairs - the
protein processed by :func:`pipeline.interactions.protein_from_pdb` (bond orders,
histidine tautomers and charges from the hydrogens), ready for ProLIF.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from openmm import app, unit
from rdkit import Chem

from pipeline.io import atomic_open, atomic_sdf

from .analysis import with_coordinates

__all__ = ["frame_stem", "write_frames", "read_frames", "frame_paths"]


def frame_stem(compound_id: str, pose: int) -> str:
    """File stem of a pose's frame files (ids are sanitized at input: no separators)."""
    return f"{compound_id}_pose{int(pose)}"


def frame_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(pocket PDB, ligand SDF)`` for a stem or either of the two files."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".pdb", ".sdf") else path
    return stem.with_name(stem.name + ".pdb"), stem.with_name(stem.name + ".sdf")


def write_frames(
    stem: str | os.PathLike,
    pocket_topology: app.Topology,
    pocket_frames_nm: np.ndarray,
    ligand: Chem.Mol,
    ligand_frames_angstrom: np.ndarray,
    times_ps: np.ndarray,
    interaction_kcal: np.ndarray,
) -> tuple[Path, Path]:
    """Write the pocket PDB and ligand SDF of one pose, each atomically.

    Parameters
    ----------
    stem : path
        Output stem (``.pdb`` / ``.sdf`` appended).
    pocket_topology : app.Topology
        Topology of the pocket atoms (ids kept).
    pocket_frames_nm : np.ndarray, shape (F, P, 3)
    ligand : Chem.Mol
        Ligand with hydrogens (its name and atom order are kept).
    ligand_frames_angstrom : np.ndarray, shape (F, N, 3)
    times_ps, interaction_kcal : np.ndarray, shape (F,)

    Returns
    -------
    (Path, Path)
        The PDB and SDF written.
    """
    pdb_path, sdf_path = frame_paths(stem)
    buffer = io.StringIO()
    app.PDBFile.writeHeader(pocket_topology, buffer)
    for number, xyz in enumerate(pocket_frames_nm, start=1):
        app.PDBFile.writeModel(pocket_topology, xyz * 10.0 * unit.angstrom, buffer, modelIndex=number, keepIds=True)
    app.PDBFile.writeFooter(pocket_topology, buffer)
    with atomic_open(pdb_path) as handle:
        handle.write(buffer.getvalue())
    with atomic_sdf(sdf_path) as writer:
        for number, (xyz, t, energy) in enumerate(zip(ligand_frames_angstrom, times_ps, interaction_kcal), start=1):
            writer.write(
                with_coordinates(ligand, xyz, dict(frame=number, time_ps=float(t), interaction_energy=float(energy)))
            )
    return pdb_path, sdf_path


def read_frames(path: str | os.PathLike) -> list[tuple[Chem.Mol, Chem.Mol]]:
    """Read one pose's frames as ``(protein, ligand)`` RDKit molecule pairs.

    Parameters
    ----------
    path : path
        The stem, the pocket ``.pdb`` or the ligand ``.sdf`` of a pose.

    Returns
    -------
    list of (Chem.Mol, Chem.Mol)
        One pair per frame, in order: the pocket (sanitized, charges from hydrogens,
        PDB residue info) and the ligand (with hydrogens).

    Raises
    ------
    ValueError
        Missing files, unreadable records, or different frame counts in the two files.
    """
    from pipeline.interactions import protein_from_pdb

    pdb_path, sdf_path = frame_paths(path)
    for file in (pdb_path, sdf_path):
        if not file.is_file():
            raise ValueError(f"frame file {file} does not exist")
    protein = protein_from_pdb(pdb_path)
    ligands = list(Chem.SDMolSupplier(str(sdf_path), removeHs=False))
    if any(mol is None for mol in ligands):
        raise ValueError(f"{sdf_path}: a ligand frame cannot be read by RDKit")
    if protein.GetNumConformers() != len(ligands):
        raise ValueError(f"{pdb_path} has {protein.GetNumConformers()} frames but {sdf_path} has {len(ligands)}")
    conformer_ids = [conf.GetId() for conf in protein.GetConformers()]
    return [(Chem.Mol(protein, confId=cid), ligand) for cid, ligand in zip(conformer_ids, ligands)]
