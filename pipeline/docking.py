"""Docking with the AutoDock Vina 1.2 Python bindings.

One :class:`vina.Vina` object per chunk: the receptor is read and the affinity maps of
the box are computed once, then every ligand of the chunk is docked against them.
Poses come back through meeko with their hydrogens restored (the PDBQT keeps only
polar ones) and are written to an SDF whose molecule names are the compound ids and
whose SD properties carry the scores. The Parquet table has one row per pose:
``id, pose, docking_score, inter, intra, torsional, intra_best_pose``
(kcal/mol, Vina's decomposition; ``docking_score`` is Vina's reported affinity).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from .box import Box
from .io import atomic_path, write_failures, write_parquet_atomic
from .progress import progress

log = logging.getLogger(__name__)
POSE_COLUMNS = ["id", "pose", "docking_score", "inter", "intra", "torsional", "intra_best_pose", "dock_seconds"]


class DockingError(ValueError):
    """One ligand could not be docked; the message goes to failures.csv."""


@dataclass(frozen=True)
class DockingSettings:
    """Vina settings (config section ``docking`` plus the run seed)."""

    exhaustiveness: int = 8
    n_poses: int = 9
    energy_range: float = 3.0
    seed: int = 42
    threads: int = 1
    scoring: str = "vina"


class Docker:
    """A Vina engine bound to one receptor and box; maps are computed once, at construction."""

    def __init__(self, receptor_pdbqt: str | Path, box: Box, settings: DockingSettings):
        from vina import Vina

        self.settings = settings
        self.vina = Vina(sf_name=settings.scoring, cpu=settings.threads, seed=settings.seed, verbosity=0)
        self.vina.set_receptor(rigid_pdbqt_filename=str(receptor_pdbqt))
        self.vina.compute_vina_maps(center=list(box.center), box_size=list(box.size))

    def dock(self, compound_id: str, pdbqt: str) -> tuple[list[Chem.Mol], np.ndarray]:
        """Dock one ligand (meeko PDBQT string).

        Returns the poses as RDKit molecules with all hydrogens (best first) and
        Vina's energy matrix (one row per pose: total, inter, intra, torsional,
        intra of the best pose; kcal/mol). Raises :class:`DockingError`.
        """
        s = self.settings
        try:
            self.vina.set_ligand_from_string(pdbqt)
            self.vina.dock(exhaustiveness=s.exhaustiveness, n_poses=s.n_poses)
            poses_pdbqt = self.vina.poses(n_poses=s.n_poses, energy_range=s.energy_range)
            energies = np.asarray(self.vina.energies(n_poses=s.n_poses, energy_range=s.energy_range))
        except Exception as exc:  # Vina raises RuntimeError/TypeError with its own text
            raise DockingError(f"Vina failed: {exc}") from exc
        poses = poses_to_rdkit(poses_pdbqt, compound_id)
        if len(poses) != len(energies):
            raise DockingError(f"Vina returned {len(energies)} energies for {len(poses)} poses")
        return poses, energies


def poses_to_rdkit(poses_pdbqt: str, compound_id: str) -> list[Chem.Mol]:
    """Turn Vina's multi-model PDBQT into RDKit molecules with all hydrogens, one per pose."""
    from meeko import PDBQTMolecule, RDKitMolCreate

    pdbqt_mol = PDBQTMolecule(poses_pdbqt, skip_typing=True)
    mols = RDKitMolCreate.from_pdbqt_mol(pdbqt_mol)
    if not mols or mols[0] is None:
        raise DockingError("meeko could not rebuild the docked poses as molecules")
    mol = mols[0]
    poses = []
    for conf in mol.GetConformers():
        pose = Chem.Mol(mol)
        pose.RemoveAllConformers()
        pose.AddConformer(Chem.Conformer(conf), assignId=True)
        pose.SetProp("_Name", compound_id)
        poses.append(pose)
    return poses


def dock_chunk(ligands: str | Path, receptor_pdbqt: str | Path, box: Box, settings: DockingSettings,
               out_sdf: str | Path, out_table: str | Path, failures: str | Path) -> tuple[int, int]:
    """Dock every ligand of a prepared chunk; write poses SDF, pose table and failures.

    ``ligands`` is the Parquet table written by ligand preparation (needs ``id`` and
    ``pdbqt``). Returns ``(docked, failed)`` counts. A ligand that fails never stops
    the chunk.
    """
    table = pd.read_parquet(ligands)
    rows, failed = [], []
    docker = Docker(receptor_pdbqt, box, settings) if len(table) else None
    with atomic_path(out_sdf) as tmp_sdf:
        writer = Chem.SDWriter(str(tmp_sdf))
        for cid, pdbqt in progress(zip(table["id"], table["pdbqt"]), total=len(table),
                                   desc=f"dock {Path(ligands).stem}", unit="lig"):
            start = time.perf_counter()
            try:
                poses, energies = docker.dock(cid, pdbqt)
            except DockingError as exc:
                failed.append(dict(id=cid, stage="dock", reason=str(exc)))
                continue
            seconds = time.perf_counter() - start
            for number, (pose, energy) in enumerate(zip(poses, energies), start=1):
                row = dict(id=cid, pose=number, docking_score=float(energy[0]), inter=float(energy[1]),
                           intra=float(energy[2]), torsional=float(energy[3]), intra_best_pose=float(energy[4]),
                           dock_seconds=seconds)
                for key in ("pose", "docking_score", "inter", "intra"):
                    pose.SetProp(key, str(row[key]))
                writer.write(pose)
                rows.append(row)
        writer.close()
    write_parquet_atomic(pd.DataFrame(rows, columns=POSE_COLUMNS), out_table)
    write_failures(failed, failures)
    return len(table) - len(failed), len(failed)
