"""Starting conformers that differ in their rings, for docking.

Vina searches a ligand's position, orientation and rotatable torsions, but keeps every ring
rigid in the conformation of the PDBQT it is given: a piperidine chair, a piperazinone twist
or the pucker of a dihydroquinazolinone (which puts a substituent axial or equatorial) is
whatever the one ETKDG embedding happened to produce. Redocking measured how much that
decides: the 5x72 ligand docked from five embeddings with the same Vina seed scored -9.2 to
-11.2 kcal/mol, top-pose RMSD 1.53 to 0.44 A, and the two outcomes follow the ring's pucker;
1s63's ligand went from 3.2 A to 0.7 A with another embedding of its piperazinone.

:func:`distinct_ring_conformers` embeds a few more conformers of a molecule and picks the
ones whose non-aromatic small rings (4 to 7 atoms; meeko opens larger rings, which Vina then
searches) differ most from the first, by their endocyclic torsions. Docking
(:meth:`pipeline.docking.Docker.dock`) searches the first as it would alone and each other
one with a share of the exhaustiveness, and keeps the best-scored poses.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem import rdMolTransforms as transforms

__all__ = ["FLEXIBLE_RING_SIZES", "flexible_rings", "ring_torsions", "distinct_ring_conformers"]

#: Sizes of the non-aromatic rings whose conformation Vina cannot change (larger rings are opened by meeko).
FLEXIBLE_RING_SIZES = (4, 5, 6, 7)
#: Candidate embeddings a compound's extra starting conformers are chosen from.
CANDIDATES = 10
#: Degrees: conformers whose ring torsions all agree within this are the same ring conformation.
MIN_TORSION_DIFFERENCE = 10.0


def flexible_rings(mol: Chem.Mol) -> list[tuple[int, ...]]:
    """Atom indices of each ring Vina keeps rigid although it can change shape.

    A ring of :data:`FLEXIBLE_RING_SIZES` atoms with at least one atom that is not aromatic
    (a saturated or partly saturated ring; fully aromatic rings are flat in every conformer).
    """
    rings = []
    for ring in mol.GetRingInfo().AtomRings():
        if len(ring) in FLEXIBLE_RING_SIZES and not all(mol.GetAtomWithIdx(i).GetIsAromatic() for i in ring):
            rings.append(tuple(ring))
    return rings


def ring_torsions(mol: Chem.Mol, rings: list[tuple[int, ...]], conf_id: int = -1) -> np.ndarray:
    """Endocyclic torsion angles (degrees) of ``rings`` in one conformer, concatenated ring by ring."""
    conf = mol.GetConformer(conf_id)
    angles = []
    for ring in rings:
        n = len(ring)
        for i in range(n):
            a, b, c, d = (ring[(i + k) % n] for k in range(4))
            angles.append(transforms.GetDihedralDeg(conf, a, b, c, d))
    return np.asarray(angles, dtype=float)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest circular difference of two torsion vectors, degrees."""
    return float(np.max(np.abs((a - b + 180.0) % 360.0 - 180.0))) if len(a) else 0.0


def distinct_ring_conformers(
    mol3d: Chem.Mol,
    n: int,
    seed: int,
    candidates: int = CANDIDATES,
    min_difference: float = MIN_TORSION_DIFFERENCE,
) -> list[Chem.Mol]:
    """Up to ``n - 1`` more conformers of ``mol3d``, each with rings shaped unlike the ones before.

    Parameters
    ----------
    mol3d : Chem.Mol
        The prepared molecule with hydrogens and its one (first) conformer, which stays the
        first starting conformer.
    n : int
        Starting conformers wanted in all (1 = none added).
    seed : int
        ETKDG seed of the candidate embeddings (the compound's own seed, so a compound gets the
        same conformers in every chunk).
    candidates : int
        Embeddings tried, each relaxed with MMFF94 (UFF where MMFF has no parameters).
    min_difference : float
        Degrees by which a candidate's ring torsions must differ (largest single difference)
        from every conformer already chosen.

    Returns
    -------
    list of Chem.Mol
        Copies of ``mol3d`` with one conformer each, most different first (farthest-first
        selection); empty when the molecule has no flexible ring, ``n`` is 1 or no candidate
        differs enough.
    """
    rings = flexible_rings(mol3d)
    if n <= 1 or not rings:
        return []
    work = Chem.Mol(mol3d)
    work.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % (2**31)
    ids = list(AllChem.EmbedMultipleConfs(work, numConfs=candidates, params=params))
    if not ids:
        return []
    if AllChem.MMFFHasAllMoleculeParams(work):
        AllChem.MMFFOptimizeMoleculeConfs(work, maxIters=500)
    else:
        AllChem.UFFOptimizeMoleculeConfs(work, maxIters=500)
    chosen = [ring_torsions(mol3d, rings)]
    pool = {cid: ring_torsions(work, rings, cid) for cid in ids}
    picked: list[int] = []
    while len(picked) < n - 1 and pool:
        distance = {cid: min(_difference(t, c) for c in chosen) for cid, t in pool.items()}
        best = max(distance, key=lambda cid: (distance[cid], -cid))
        if distance[best] < min_difference:
            break
        picked.append(best)
        chosen.append(pool.pop(best))
    out = []
    for cid in picked:
        mol = Chem.Mol(mol3d)
        mol.RemoveAllConformers()
        mol.AddConformer(Chem.Conformer(work.GetConformer(cid)), assignId=True)
        out.append(mol)
    return out
