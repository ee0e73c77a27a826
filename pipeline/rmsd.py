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


def symmetry_matches(mol: Chem.Mol, max_matches: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Heavy-atom indices of ``mol`` and its symmetry-equivalent orderings.

    Returns
    -------
    heavy : np.ndarray, shape (H,)
        Indices (in ``mol``) of the heavy atoms, in order.
    matches : np.ndarray, shape (M, H)
        Each row a permutation of positions ``0..H-1`` mapping the molecule onto
        itself (element graph, as :func:`pipeline.rmsd.heavy_atom_rmsd` uses).
    """
    heavy = np.array([a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() != 1], dtype=int)
    stripped = Chem.RWMol(mol)
    for index in sorted((a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 1), reverse=True):
        stripped.RemoveAtom(index)  # RemoveHs may keep some hydrogens; removing them here keeps order
    graph = element_graph(stripped.GetMol())  # heavy atoms in the order of ``heavy``
    matches = graph.GetSubstructMatches(graph, uniquify=False, useChirality=False, maxMatches=max_matches)
    if not matches:
        matches = (tuple(range(len(heavy))),)
    return heavy, np.asarray(matches, dtype=int)


def ligand_rmsd(
    frames_xyz: np.ndarray, reference_xyz: np.ndarray, heavy: np.ndarray, matches: np.ndarray
) -> np.ndarray:
    """In-place, symmetry-aware heavy-atom RMSD (same units as the input) of each frame.

    Parameters
    ----------
    frames_xyz : np.ndarray, shape (F, N, 3)
        Ligand coordinates per frame (all atoms).
    reference_xyz : np.ndarray, shape (N, 3)
    heavy, matches
        From :func:`symmetry_matches`.

    Returns
    -------
    np.ndarray, shape (F,)
    """
    ref = np.asarray(reference_xyz)[heavy][matches]  # (M, H, 3): every symmetry-equivalent reference
    out = np.empty(len(frames_xyz))
    for f, frame in enumerate(np.asarray(frames_xyz)):
        msd = np.mean(np.sum((frame[heavy][None] - ref) ** 2, axis=-1), axis=-1)  # (M,)
        out[f] = np.sqrt(msd.min())
    return out
