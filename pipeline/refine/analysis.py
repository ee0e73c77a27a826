"""What a refined pose is judged by: ligand drift, pocket drift and interaction energy.

Interaction energy
    For every saved frame, ``E(complex) - E(receptor alone) - E(ligand alone)``, each
    term the potential energy of its own implicit-solvent System (same amber14 /
    ligand force field, same OBC2 parameters and cutoffs, no restraints) evaluated
    at the frame's coordinates. Three Systems rather than zeroed charges because GB
    is not pairwise: the ligand changes the Born radii of the receptor atoms around
    it, so "receptor alone" must not contain the ligand at all. Bonded and
    intra-molecular terms cancel exactly; what remains is protein-ligand Coulomb +
    Lennard-Jones + the change in GB polarization and ACE surface energy - a
    single-trajectory MM/GBSA-style interaction energy without entropy. The receptor
    is the simulated pocket (explicit-solvent frames are re-evaluated on the
    ``pocket_cutoff`` pocket, waters stripped), so residues beyond the pocket do
    not count. Reported in kcal/mol: mean and standard deviation over frames.
RMSD
    Ligand heavy atoms against the docked pose, in place (no superposition), with the
    best of the molecule's symmetry-equivalent atom mappings (as
    :func:`pipeline.rmsd.heavy_atom_rmsd`, matches computed once per pose). Pocket
    backbone RMSD: backbone heavy atoms of the unrestrained residues, final frame vs
    the start, in place.
"""

from __future__ import annotations

import numpy as np
import openmm
from openmm import unit
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.rmsd import ligand_rmsd, symmetry_matches  # re-exported: MD's RMSDs are docking's

from .ligand import LigandParameters
from .protocol import PlatformChoice
from .system import ReceptorModel, build_ligand_system, build_pocket_complex_system, build_receptor_system

__all__ = [
    "InteractionEnergy",
    "symmetry_matches",
    "ligand_rmsd",
    "in_place_rmsd",
    "with_coordinates",
    "KJ_TO_KCAL",
]

KJ_TO_KCAL = 1.0 / 4.184


class InteractionEnergy:
    """Evaluates protein-ligand interaction energies of frames (see module docstring).

    Parameters
    ----------
    receptor : ReceptorModel
        The dry receptor of the job.
    ligand : LigandParameters
        The pose's ligand.
    receptor_atoms : np.ndarray
        Receptor-model indices of the pocket atoms to include (sorted).
    cutoff_nm : float or None
        Nonbonded/GB cutoff (None: none), as in the simulation.
    platform : PlatformChoice
        Where the three evaluation Contexts live.
    """

    def __init__(
        self,
        receptor: ReceptorModel,
        ligand: LigandParameters,
        receptor_atoms: np.ndarray,
        cutoff_nm: float | None,
        platform: PlatformChoice,
    ):
        self.receptor_atoms = np.asarray(receptor_atoms)
        n_rec = len(self.receptor_atoms)
        complex_system = build_pocket_complex_system(receptor, self.receptor_atoms, ligand, cutoff_nm)
        self._contexts = {
            "complex": platform.context(complex_system, openmm.VerletIntegrator(0.001)),
            "receptor": platform.context(
                build_receptor_system(receptor, self.receptor_atoms, cutoff_nm), openmm.VerletIntegrator(0.001)
            ),
            "ligand": platform.context(build_ligand_system(ligand, cutoff_nm), openmm.VerletIntegrator(0.001)),
        }
        self._n_rec = n_rec

    def _energy(self, name: str, xyz_nm: np.ndarray) -> float:
        context = self._contexts[name]
        context.setPositions(xyz_nm)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    def __call__(self, receptor_xyz_nm: np.ndarray, ligand_xyz_nm: np.ndarray) -> dict[str, float]:
        """Energies (kJ/mol) of one frame: ``complex``, ``receptor``, ``ligand`` and ``interaction``.

        ``receptor_xyz_nm`` holds the coordinates of ``receptor_atoms`` in that order.
        """
        complex_e = self._energy("complex", np.vstack([receptor_xyz_nm, ligand_xyz_nm]))
        receptor_e = self._energy("receptor", receptor_xyz_nm)
        ligand_e = self._energy("ligand", ligand_xyz_nm)
        return dict(
            complex=complex_e, receptor=receptor_e, ligand=ligand_e, interaction=complex_e - receptor_e - ligand_e
        )


def in_place_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD between two coordinate sets of the same atoms, without superposition."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return float("nan")
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def with_coordinates(mol: Chem.Mol, xyz_angstrom: np.ndarray, properties: dict | None = None) -> Chem.Mol:
    """A copy of ``mol`` with one conformer at ``xyz_angstrom`` and the given SD properties."""
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conf = Chem.Conformer(out.GetNumAtoms())
    for i, (x, y, z) in enumerate(np.asarray(xyz_angstrom, dtype=float)):
        conf.SetAtomPosition(i, Point3D(x, y, z))
    conf.Set3D(True)
    out.AddConformer(conf, assignId=True)
    for key, value in (properties or {}).items():
        if isinstance(value, float):
            out.SetProp(key, f"{value:.4f}")
        else:
            out.SetProp(key, str(value))
    return out
