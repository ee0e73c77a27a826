"""Protein-ligand interaction fingerprints with ProLIF.

A fingerprint says which pocket residue makes which interaction with the ligand.
Keys are ``RESIDUE:Interaction`` strings such as ``MET318.A:HBAcceptor`` (residue
name, number, ``.chain``; ProLIF's :class:`~prolif.residue.ResidueId` text). The
interaction names are ProLIF's and are read **from the ligand's side**:
``HBDonor`` means the ligand donates the hydrogen bond to that residue,
``HBAcceptor`` that the ligand accepts it, ``Cationic`` that the ligand carries
the cation, ``PiCation`` that the ligand's ring faces a cationic residue, and so on.

* :func:`pose_fingerprint` - one pose: ``{key: True}`` for every interaction present.
* :func:`trajectory_persistence` - MD frames: fraction of frames with each interaction.
* :func:`interaction_counts` - per interaction type, how many residues make it.

The receptor is read once (:func:`load_receptor`, cached per process) into a
:class:`Receptor`: the ProLIF molecule plus a KD-tree of its atoms, so each pose
only looks at the residues within ``vicinity_cutoff`` of its atoms (the pocket).

Bond orders and charges of the receptor come from its hydrogens: the pipeline's
receptor (PDBFixer/OpenMM, Amber names) has every hydrogen, so after RDKit's
standard-residue bond orders (and the right histidine tautomer) a nitrogen with
four bonds is a cation, a carboxylate or thiolate atom with one bond an anion.
On the 1iep receptor this reproduces MDAnalysis' RDKit converter residue by
residue in 0.3 s instead of 10 s.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np
from rdkit import Chem
from scipy.spatial import cKDTree

from .config import schema_default

# MDAnalysis (imported by ProLIF) resets the warning filters and warns about its own
# module moves on import; record=True keeps that out of every log.
with warnings.catch_warnings(record=True):
    import prolif as plf
    from prolif.residue import Residue, ResidueGroup, ResidueId

#: Interactions computed by default, in the order used for count columns and graph edge flags.
INTERACTION_TYPES: tuple[str, ...] = (
    "Hydrophobic",
    "HBDonor",
    "HBAcceptor",
    "Anionic",
    "Cationic",
    "CationPi",
    "PiCation",
    "PiStacking",
    "XBDonor",
    "XBAcceptor",
    "MetalDonor",
    "MetalAcceptor",
)
#: Residues within this distance (Å) of any ligand atom are searched for interactions (ProLIF's default).
VICINITY_CUTOFF = schema_default("featurize", "vicinity_cutoff")

_HISTIDINES = frozenset({"HIS", "HID", "HIE", "HIP", "HSD", "HSE", "HSP"})

ProteinLike = Union["Receptor", "plf.Molecule", Chem.Mol]


class InteractionError(ValueError):
    """A pose or receptor that cannot be fingerprinted; the message is a failure reason."""


# --------------------------------------------------------------------------- receptor


class RigidResidue(Residue):
    """A ProLIF residue whose coordinates and SMARTS matches are computed once.

    ProLIF asks every residue for its coordinates and its pattern matches again for
    each interaction type and each partner residue. Within one :class:`Receptor`
    (and within one ligand pose) nothing moves, so both are cached: this makes a
    fingerprint about four times faster and changes no result.
    """

    def __init__(self, mol: Chem.Mol, *, use_segid: bool = False) -> None:
        super().__init__(mol, use_segid=use_segid)
        self._xyz: np.ndarray | None = None
        self._matches: dict = {}

    @property
    def xyz(self) -> np.ndarray:
        if self._xyz is None:
            self._xyz = self.GetConformer().GetPositions()
        return self._xyz

    def GetSubstructMatches(self, pattern: Chem.Mol, *args, **kwargs):  # noqa: N802 (RDKit's name)
        key = (id(pattern), args, tuple(sorted(kwargs.items())))
        hit = self._matches.get(key)
        if hit is None:
            # keep the pattern alive with its matches so its id() is never reused
            hit = self._matches[key] = (pattern, super().GetSubstructMatches(pattern, *args, **kwargs))
        return hit[1]


def rigid_molecule(mol: plf.Molecule) -> plf.Molecule:
    """A copy of a ProLIF molecule whose residues are :class:`RigidResidue` (the input is left alone)."""
    return plf.Molecule(mol, residues=[RigidResidue(res) for res in mol.residues.values()])


def _fix_histidine_tautomers(mol: Chem.RWMol) -> None:
    """Put the imidazole double bond where the hydrogens say (RDKit's template assumes HIE/HIP).

    With H on ND1 only (HID), ND1=CE1 would make a spurious cation; move it to CE1=NE2.
    """
    residues: dict[tuple, dict[str, int]] = defaultdict(dict)
    for atom in mol.GetAtoms():
        info = atom.GetPDBResidueInfo()
        if info is not None and info.GetResidueName().strip() in _HISTIDINES:
            key = (info.GetChainId(), info.GetResidueNumber(), info.GetInsertionCode())
            residues[key][info.GetName().strip()] = atom.GetIdx()
    for names in residues.values():
        if {"ND1", "CE1", "NE2", "HD1"} <= names.keys() and "HE2" not in names:
            nd1_ce1 = mol.GetBondBetweenAtoms(names["ND1"], names["CE1"])
            ce1_ne2 = mol.GetBondBetweenAtoms(names["CE1"], names["NE2"])
            if nd1_ce1 is not None and ce1_ne2 is not None:
                nd1_ce1.SetBondType(Chem.BondType.SINGLE)
                ce1_ne2.SetBondType(Chem.BondType.DOUBLE)


def _charges_from_hydrogens(mol: Chem.RWMol) -> None:
    """Formal charges of N, O and S from their bonds, all hydrogens being explicit."""
    for atom in mol.GetAtoms():
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
        z = atom.GetAtomicNum()
        if z not in (7, 8, 16):
            continue
        valence = sum(bond.GetBondTypeAsDouble() for bond in atom.GetBonds())
        charge = 0
        if z == 7 and valence == 4:
            charge = 1
        elif z in (8, 16) and valence == 1:
            charge = -1
        atom.SetFormalCharge(charge)


def protein_from_pdb(path: str | os.PathLike) -> Chem.Mol:
    """Read a receptor PDB with all hydrogens into a sanitized RDKit molecule.

    Parameters
    ----------
    path
        PDB file whose hydrogens are all present (the pipeline's ``receptor.pdb``).

    Returns
    -------
    rdkit.Chem.Mol
        Bond orders of standard residues from RDKit's templates, histidine tautomers
        and formal charges from the hydrogens, PDB residue info on every atom.

    Raises
    ------
    InteractionError
        If the file cannot be read or has (almost) no hydrogens.
    """
    mol = Chem.MolFromPDBFile(str(path), removeHs=False, sanitize=False)
    if mol is None or mol.GetNumAtoms() == 0:
        raise InteractionError(f"cannot read receptor PDB '{path}'")
    n_h = sum(atom.GetAtomicNum() == 1 for atom in mol.GetAtoms())
    if n_h < 0.2 * mol.GetNumAtoms():
        raise InteractionError(
            f"receptor '{path}' has {n_h} hydrogens in {mol.GetNumAtoms()} atoms; "
            "interaction fingerprints need all of them (use the prepared receptor.pdb)"
        )
    rw = Chem.RWMol(mol)
    _fix_histidine_tautomers(rw)
    _charges_from_hydrogens(rw)
    mol = rw.GetMol()
    problems = Chem.SanitizeMol(mol, catchErrors=True)
    if problems != Chem.SanitizeFlags.SANITIZE_NONE:
        raise InteractionError(f"receptor '{path}' cannot be sanitized by RDKit ({problems})")
    return mol


class Receptor:
    """A protein (or pocket) ready for fingerprints and graphs.

    Attributes
    ----------
    molecule : prolif.Molecule
        The protein split in residues.
    xyz : numpy.ndarray
        Atom coordinates (N×3, Å, float64).
    tree : scipy.spatial.cKDTree
        KD-tree of ``xyz``, built once.
    residue_ids : list[prolif.residue.ResidueId]
        Residue of every atom.
    residue_keys : numpy.ndarray
        ``str`` of every atom's residue id (``MET318.A``).
    """

    def __init__(self, protein: plf.Molecule | Chem.Mol):
        if not isinstance(protein, plf.Molecule):
            if protein.GetNumConformers() == 0:
                raise InteractionError("protein has no coordinates")
            protein = plf.Molecule.from_rdkit(protein)
        self.molecule = rigid_molecule(protein)
        self.xyz = np.asarray(protein.GetConformer().GetPositions(), dtype=np.float64)
        self.tree = cKDTree(self.xyz)
        self.residue_ids = [ResidueId.from_atom(atom) for atom in protein.GetAtoms()]
        self.residue_keys = np.array([str(rid) for rid in self.residue_ids], dtype=object)

    @classmethod
    def from_pdb(cls, path: str | os.PathLike) -> Receptor:
        """Build from a PDB file with all hydrogens (see :func:`protein_from_pdb`)."""
        return cls(protein_from_pdb(path))

    def atoms_near(self, xyz: np.ndarray, cutoff: float) -> np.ndarray:
        """Sorted indices of the atoms within ``cutoff`` Å of any point of ``xyz`` (M×3)."""
        hits = self.tree.query_ball_point(np.asarray(xyz, dtype=np.float64), cutoff)
        if len(hits) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]))

    def pocket(self, xyz: np.ndarray, cutoff: float = VICINITY_CUTOFF) -> list[ResidueId]:
        """Residues with an atom within ``cutoff`` Å of any point of ``xyz``, sorted."""
        return sorted({self.residue_ids[i] for i in self.atoms_near(xyz, cutoff)})


@lru_cache(maxsize=4)
def _cached_receptor(path: str, mtime_ns: int, size: int) -> Receptor:
    return Receptor.from_pdb(path)


def load_receptor(path: str | os.PathLike) -> Receptor:
    """The :class:`Receptor` of a PDB file, read once per process (cached by path, mtime and size).

    Dask workers call this in every task; only the first task of a worker reads the file.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise InteractionError(f"receptor PDB '{path}' does not exist")
    stat = path.stat()
    return _cached_receptor(str(path), stat.st_mtime_ns, stat.st_size)


def as_receptor(protein: ProteinLike | str | os.PathLike) -> Receptor:
    """Accept a :class:`Receptor`, a ProLIF or RDKit molecule, or a PDB path."""
    if isinstance(protein, Receptor):
        return protein
    if isinstance(protein, (str, os.PathLike)):
        return load_receptor(protein)
    return Receptor(protein)


# --------------------------------------------------------------------------- ligand


def ligand_molecule(ligand: Chem.Mol) -> plf.Molecule:
    """A ProLIF molecule of one ligand pose (a single residue ``LIG1``).

    Parameters
    ----------
    ligand
        RDKit molecule with explicit hydrogens and a 3D conformer.

    Raises
    ------
    InteractionError
        When the molecule is missing, has no 3D conformer, no atoms, or lacks the
        explicit hydrogens that ProLIF's H-bond donor patterns need.
    """
    if ligand is None or ligand.GetNumAtoms() == 0:
        raise InteractionError("empty or unreadable ligand")
    if ligand.GetNumConformers() == 0:
        raise InteractionError("ligand has no conformer (no coordinates)")
    if not ligand.GetConformer().Is3D() and np.allclose(ligand.GetConformer().GetPositions()[:, 2], 0.0):
        raise InteractionError("ligand conformer is 2D")
    implicit = sum(atom.GetNumImplicitHs() for atom in ligand.GetAtoms())
    if implicit:
        raise InteractionError(f"ligand lacks {implicit} explicit hydrogens (read poses with removeHs=False)")
    if not np.all(np.isfinite(ligand.GetConformer().GetPositions())):
        raise InteractionError("ligand coordinates are not finite")
    mol = Chem.Mol(ligand)
    for atom in mol.GetAtoms():
        # one residue for the whole ligand, whatever residue info a tool left on it
        atom.SetMonomerInfo(
            Chem.AtomPDBResidueInfo(f" {atom.GetSymbol():<3.3}", residueName="LIG", residueNumber=1, chainId="")
        )
    molecule = plf.Molecule(mol, residues=[])
    molecule.residues = ResidueGroup([RigidResidue(molecule)])
    return molecule


# --------------------------------------------------------------------------- fingerprints


@lru_cache(maxsize=8)
def fingerprinter(interactions: tuple[str, ...] = INTERACTION_TYPES) -> plf.Fingerprint:
    """A ProLIF :class:`~prolif.Fingerprint` for ``interactions`` (cached per process)."""
    unknown = sorted(set(interactions) - set(plf.Fingerprint.list_available()))
    if unknown:
        raise InteractionError(f"unknown interaction types {unknown}; ProLIF knows {plf.Fingerprint.list_available()}")
    return plf.Fingerprint(list(interactions))


def pose_fingerprint(
    ligand: Chem.Mol | plf.Molecule,
    protein: ProteinLike | str | os.PathLike,
    interactions: Sequence[str] = INTERACTION_TYPES,
    vicinity_cutoff: float = VICINITY_CUTOFF,
) -> dict[str, bool]:
    """Interactions of one ligand pose with the protein.

    Parameters
    ----------
    ligand
        The pose: RDKit molecule with explicit hydrogens and a 3D conformer (or a
        ProLIF molecule already made by :func:`ligand_molecule`).
    protein
        A :class:`Receptor` (fastest: its KD-tree is reused), a ProLIF or RDKit
        molecule of the protein or pocket with hydrogens, or a PDB path.
    interactions
        ProLIF interaction names; default :data:`INTERACTION_TYPES`.
    vicinity_cutoff
        Only residues with an atom within this distance (Å) of the ligand are searched.

    Returns
    -------
    dict[str, bool]
        ``{"MET318.A:HBAcceptor": True, ...}``: one key per residue-interaction pair
        present; absent keys are interactions not made. Keys sorted by residue, then
        by the order of ``interactions``.
    """
    receptor = as_receptor(protein)
    lig = ligand if isinstance(ligand, plf.Molecule) else ligand_molecule(ligand)
    names = tuple(interactions)
    fp = fingerprinter(names)
    residues = receptor.pocket(lig.xyz, vicinity_cutoff)
    if not residues:
        return {}
    ifp = fp.generate(lig, receptor.molecule, residues=residues, metadata=False)
    present: list[tuple[ResidueId, int]] = []
    for (_, resid), bits in ifp.items():
        present.extend((resid, k) for k in np.flatnonzero(bits))
    order = list(fp.interactions)  # ProLIF's column order -> our order
    keyed = sorted((resid, names.index(order[k])) for resid, k in present)
    return {f"{resid}:{names[k]}": True for resid, k in keyed}


def _frame_pair(frame) -> tuple:
    if isinstance(frame, Mapping):
        return frame["protein"], frame["ligand"]
    protein, ligand = frame
    return protein, ligand


def trajectory_persistence(
    frames: Iterable, interactions: Sequence[str] = INTERACTION_TYPES, vicinity_cutoff: float = VICINITY_CUTOFF
) -> dict[str, float]:
    """Fraction of frames in which each residue-interaction pair is present.

    Parameters
    ----------
    frames
        Sequence of ``(protein, ligand)`` pairs (or mappings with those keys): protein
        as a :class:`Receptor`, ProLIF or RDKit molecule of the pocket with hydrogens;
        ligand as an RDKit molecule with hydrogens. When consecutive frames share one
        protein object it is converted once.
    interactions, vicinity_cutoff
        As in :func:`pose_fingerprint`.

    Returns
    -------
    dict[str, float]
        ``{"MET318.A:HBAcceptor": 0.85, ...}`` for every pair seen at least once,
        sorted like :func:`pose_fingerprint`'s keys.

    Raises
    ------
    InteractionError
        When ``frames`` is empty or a frame cannot be fingerprinted.
    """
    counts: dict[str, int] = defaultdict(int)
    n_frames = 0
    last_protein, receptor = None, None
    for frame in frames:
        protein, ligand = _frame_pair(frame)
        if protein is not last_protein:
            receptor, last_protein = as_receptor(protein), protein
        for key in pose_fingerprint(ligand, receptor, interactions, vicinity_cutoff):
            counts[key] += 1
        n_frames += 1
    if n_frames == 0:
        raise InteractionError("no frames to compute interaction persistence from")
    names = tuple(interactions)
    return {key: counts[key] / n_frames for key in sorted(counts, key=lambda k: fingerprint_sort_key(k, names))}


def fingerprint_sort_key(key: str, interactions: Sequence[str] = INTERACTION_TYPES) -> tuple:
    """Sort key of a ``RESIDUE:Interaction`` string: chain, residue number, name, interaction order."""
    residue, _, interaction = key.rpartition(":")
    resid = ResidueId.from_string(residue)
    rank = interactions.index(interaction) if interaction in interactions else len(interactions)
    return (resid.chain or "", resid.number or 0, resid.name or "", rank, interaction)


def interaction_counts(
    fingerprint: Mapping[str, float], interactions: Sequence[str] = INTERACTION_TYPES
) -> dict[str, float]:
    """Per interaction type, the number of residues making it.

    Parameters
    ----------
    fingerprint
        Output of :func:`pose_fingerprint` (bools) or :func:`trajectory_persistence`
        (fractions; then the count is the mean number of such residues per frame).

    Returns
    -------
    dict[str, float]
        ``{"n_Hydrophobic": 5, "n_HBDonor": 1, ...}``, one key per interaction type,
        zeros included.
    """
    counts = {f"n_{name}": 0.0 for name in interactions}
    for key, value in fingerprint.items():
        name = key.rpartition(":")[2]
        if f"n_{name}" in counts:
            counts[f"n_{name}"] += float(value)
    return counts


def residue_flags(
    fingerprint: Mapping[str, float], interactions: Sequence[str] = INTERACTION_TYPES
) -> dict[str, np.ndarray]:
    """Per residue key (``MET318.A``), a vector of interaction values in the order of ``interactions``."""
    index = {name: k for k, name in enumerate(interactions)}
    flags: dict[str, np.ndarray] = {}
    for key, value in fingerprint.items():
        residue, _, name = key.rpartition(":")
        if name in index:
            flags.setdefault(residue, np.zeros(len(interactions), dtype=np.float32))[index[name]] = float(value)
    return flags
