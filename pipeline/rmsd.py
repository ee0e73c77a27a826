"""Symmetry-aware heavy-atom RMSD between poses of the same ligand.

Poses from different sources disagree on hydrogens, formal charges and aromaticity
perception (a crystal ligand vs. a protonated, re-embedded copy), so molecules are
compared as element graphs: every bond single, no charges, no hydrogens. All graph
automorphisms are tried (symmetric rings, carboxylate oxygens), and the RMSD is taken
in place - without superposition - as docking and MD need.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem


def element_graph(mol: Chem.Mol) -> Chem.Mol:
    """Heavy atoms only, all bonds single, no charges, no aromatic flags (unsanitized copy)."""
    heavy = Chem.RemoveHs(mol, sanitize=False)
    graph = Chem.RWMol(heavy)
    for atom in graph.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
    for bond in graph.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    graph.UpdatePropertyCache(strict=False)
    return graph.GetMol()


def heavy_atom_rmsd(pose: Chem.Mol, reference: Chem.Mol, pose_conf: int = -1, ref_conf: int = -1) -> float:
    """Minimum in-place heavy-atom RMSD (Å) over all atom mappings of ``pose`` onto ``reference``.

    Raises ``ValueError`` when the two molecules have different heavy-atom graphs.
    """
    probe, ref = element_graph(pose), element_graph(reference)
    matches = ref.GetSubstructMatches(probe, uniquify=False, useChirality=False, maxMatches=100_000)
    if not matches or probe.GetNumAtoms() != ref.GetNumAtoms():
        raise ValueError("pose and reference are not the same molecule (heavy-atom graphs differ)")
    xyz_probe = probe.GetConformer(pose_conf).GetPositions()
    xyz_ref = ref.GetConformer(ref_conf).GetPositions()
    best = min(np.mean(np.sum((xyz_probe - xyz_ref[list(match)]) ** 2, axis=1)) for match in matches)
    return float(np.sqrt(best))
