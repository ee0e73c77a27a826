"""Tethered pose generation: pose a ligand like a reference ligand bound in the same pocket.

For a congeneric series with one ligand in its pocket (a crystal or modelled complex), every
other member is posed by keeping what it shares with that reference where the reference is:

1. :func:`find_core` - the maximum common substructure (RDKit rdFMCS) of the reference and the
   ligand, as a chemist would accept it for a series core: elements compared, ring atoms and
   bonds match ring ones only, only complete rings, bond orders compared exactly except that
   aromatic bonds match conjugated ring bonds (a ring perceived aromatic in one molecule and
   drawn as a conjugated ring in the other), and stereocentres whose handedness the
   reference contradicts kept out of the core (see :func:`find_core`).
2. :func:`tethered_conformers` - ETKDG conformers with the core atoms placed on the
   reference's coordinates, aligned on the core, relaxed with MMFF94 with the core restrained.
3. :func:`optimize_in_pocket` - each conformer typed by meeko and locally optimized by Vina
   (``Vina.optimize``) in the receptor; the best-scored pose whose core stayed near the
   reference wins.
4. :func:`pose_like_reference` / :class:`TetheredPoser` - the above, or ordinary Vina docking
   (:class:`pipeline.docking.Docker`) in the box around the reference when the core is too
   small to place the ligand (``TetheredSettings.min_core_atoms``, ``min_core_fraction``) or
   cannot be embedded; the result records the ``mode`` (``"tethered"`` or ``"docked"``) and why.

Protonation: the ligand is used in the protonation state its SMILES gives (a series' own
states, as in the free-energy data it comes with); it is not standardized or re-protonated as
:mod:`pipeline.ligands` does for a screening library. Hydrogens the SMILES leaves implicit are
made explicit; every hydrogen gets coordinates from the embedding and the restrained MMFF
relaxation, and in the final pose the polar ones come from Vina and the others are rebuilt on
the optimized heavy atoms by meeko (as for docked poses).

Poses are returned in the atom order of the input molecule (meeko rebuilds poses in the order
of the SMILES it writes; :func:`_in_input_order` maps them back).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom, rdFMCS, rdForceFieldHelpers, rdMolAlign
from rdkit.Geometry import Point3D

from .box import Box, box_around_coordinates, box_around_ligand
from .config import schema_default, schema_field
from .docking import Docker, DockingError, DockingSettings, poses_to_rdkit, run_chunk
from .isolation import pack_mol, unexpected_error
from .ligands import PreparationError, embed, to_pdbqt
from .rmsd import element_graph

if TYPE_CHECKING:
    from vina import Vina

log = logging.getLogger(__name__)

#: The two ways a ligand gets its pose (``TetheredPose.mode``).
MODES = ("tethered", "docked")
#: Atom property carrying an atom's index in the molecule a heavy-atom copy was made from.
_INDEX_PROP = "tether_index"
#: Conformer property: which of ``Core.maps`` placed the conformer.
_MAP_PROP = "core_map"
#: Largest core RMSD (A) to the reference of an embedded, aligned conformer that is kept.
EMBED_CORE_TOLERANCE = 0.5
_CHIRAL_TAGS = (Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW)
#: Sign of :func:`_handedness` for RDKit's tetrahedral tags, by number of neighbours (checked
#: on embedded molecules: with four, looking from the first, CW means a positive volume of the
#: other three taken from the first; with three, volume from the centre, the opposite).
_TAG_SIGN = {
    (4, _CHIRAL_TAGS[0]): 1,
    (4, _CHIRAL_TAGS[1]): -1,
    (3, _CHIRAL_TAGS[0]): -1,
    (3, _CHIRAL_TAGS[1]): 1,
}


class TetheringError(ValueError):
    """One ligand cannot be posed like the reference; the message is the readable reason."""


@dataclass(frozen=True)
class TetheredSettings:
    """Settings of tethered posing (the later config section ``docking`` with ``mode: tethered``).

    Attributes
    ----------
    min_core_atoms : int
        Fewest heavy atoms a core must have to be restrained. Six is one benzene ring: the
        smallest common piece that fixes both position and orientation of the ligand; a smaller
        one (an amide, a halophenyl fragment cut short by complete-rings-only) places too little
        to be better than a search.
    min_core_fraction : float
        Smallest share of the ligand's heavy atoms the core must cover. Below one half most of
        the ligand is placed by an unrestrained embedding and a local optimization that cannot
        leave its starting basin, while docking searches that part properly.
    n_conformers : int
        Conformers requested per ligand (spread over the core's symmetry-distinct mappings;
        pruning keeps fewer when the free part has few shapes). Each is optimized by Vina,
        which costs milliseconds, so embedding and MMFF dominate (about 0.1 s CPU per
        conformer of a 30-heavy-atom ligand). Many are needed because a local optimization
        cannot untangle a free part that clashes: it pushes the whole ligand, core included,
        away (on the plasminogen series' phenethyl analogue, 10 requested gave 4 conformers,
        all drifting 2-9 A; 30 gave 7, three keeping their core within 0.2 A).
    seed : int
        Seed of the embedding and of the fallback docking.
    mcs_timeout : float
        Seconds rdFMCS may search; the best core found by then is used and flagged.
    max_core_maps : int
        Most symmetry-distinct core mappings kept (e.g. the two ring flips that put an ortho
        substituent of the ligand on either side of the reference's ring).
    restraint_force : float
        MMFF position-restraint force constant on the core atoms, kcal/mol/A^2.
    embed_timeout : int
        Seconds ETKDG may spend on one embedding call (0 = no limit).
    box_padding : float
        Padding around the reference's heavy atoms of the box Vina's maps cover, A (the
        pipeline's default for a reference-ligand box); it must hold every atom of every pose.
    max_core_rmsd : float
        A pose whose core moved more than this from the reference during Vina's optimization
        (A, in place) is taken only when no pose kept its core.
    dock_on_failure : bool
        Dock (instead of raising) when the core is large enough but cannot be embedded.
    exhaustiveness, threads, scoring
        Vina settings of the docking fallback (``scoring`` also scores the tethered poses).
    """

    min_core_atoms: int = 6
    min_core_fraction: float = 0.5
    n_conformers: int = 30
    seed: int = schema_field("seed")
    mcs_timeout: float = 10.0
    max_core_maps: int = 4
    restraint_force: float = 100.0
    embed_timeout: int = 60
    box_padding: float = schema_field("box", "padding")
    max_core_rmsd: float = 1.5
    dock_on_failure: bool = True
    exhaustiveness: int = schema_field("docking", "exhaustiveness")
    threads: int = schema_field("docking", "threads")
    scoring: str = schema_field("docking", "scoring")

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_core_fraction <= 1.0:
            raise ValueError(f"min_core_fraction must be between 0 and 1, got {self.min_core_fraction}")
        for key in ("min_core_atoms", "n_conformers", "max_core_maps", "exhaustiveness", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("mcs_timeout", "restraint_force", "box_padding", "max_core_rmsd"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")


@dataclass(frozen=True)
class Core:
    """The common core of a reference ligand and a ligand.

    Attributes
    ----------
    maps : tuple of tuple of (int, int)
        Symmetry-distinct mappings of the core, each a tuple of ``(reference atom index,
        ligand atom index)`` pairs of heavy atoms (indices of the molecules given to
        :func:`find_core`); the first is :attr:`atom_map`. Empty when nothing is shared.
    smarts : str
        SMARTS of the core (rdFMCS's; aromatic bonds there also stand for conjugated ring bonds).
    ligand_heavy_atoms : int
        Heavy atoms of the ligand (the denominator of :attr:`fraction`).
    timed_out : bool
        rdFMCS stopped at its timeout; the core is the largest found by then.
    chirality_trimmed : int
        Core atoms removed because the reference's geometry contradicts a stereocentre of
        the ligand (0 when none).
    """

    maps: tuple[tuple[tuple[int, int], ...], ...]
    smarts: str
    ligand_heavy_atoms: int
    timed_out: bool = False
    chirality_trimmed: int = 0

    @property
    def atom_map(self) -> tuple[tuple[int, int], ...]:
        """``(reference index, ligand index)`` pairs of the first mapping (empty when no core)."""
        return self.maps[0] if self.maps else ()

    @property
    def size(self) -> int:
        """Heavy atoms in the core."""
        return len(self.atom_map)

    @property
    def fraction(self) -> float:
        """Share of the ligand's heavy atoms in the core (0 to 1)."""
        return self.size / self.ligand_heavy_atoms if self.ligand_heavy_atoms else 0.0

    def describe(self) -> str:
        """One line: size, share of the ligand, and what limited the search."""
        text = f"core of {self.size} heavy atoms ({self.fraction:.0%} of the ligand's {self.ligand_heavy_atoms})"
        if self.chirality_trimmed:
            text += f", {self.chirality_trimmed} atoms left out for stereochemistry"
        if self.timed_out:
            text += ", MCS search timed out (largest core found by then)"
        return text


@dataclass(frozen=True)
class PocketPose:
    """One conformer after Vina's local optimization in the pocket.

    Attributes
    ----------
    mol : Chem.Mol
        The pose: one conformer, all hydrogens, atom order of the input ligand.
    vina_score : float
        Vina's score of the optimized pose, kcal/mol (lower is better).
    core_rmsd : float
        In-place heavy-atom RMSD of the core atoms to the reference's core, A.
    conformer : int
        Id of the tethered conformer it came from.
    """

    mol: Chem.Mol
    vina_score: float
    core_rmsd: float
    conformer: int


@dataclass(frozen=True)
class TetheredPose:
    """The pose of one ligand and how it was made.

    Attributes
    ----------
    name : str
        The ligand's name (the molecule name of :attr:`mol`).
    smiles : str
        The SMILES it was built from.
    mode : str
        ``"tethered"`` (core restrained, then optimized) or ``"docked"`` (Vina docking).
    reason : str
        Why this mode: the core found and, for ``"docked"``, the threshold or failure.
    core : Core
        The common core with the reference.
    mol : Chem.Mol
        The pose with all hydrogens, in the input's atom order.
    vina_score : float
        Vina's score of the pose, kcal/mol.
    core_rmsd : float
        In-place heavy-atom RMSD of the core to the reference's core, A (NaN without a core).
    """

    name: str
    smiles: str
    mode: str
    reason: str
    core: Core
    mol: Chem.Mol
    vina_score: float
    core_rmsd: float

    def to_mol(self) -> Chem.Mol:
        """The pose with the outcome as SD properties (for an SDF of the series)."""
        mol = Chem.Mol(self.mol)
        mol.SetProp("_Name", self.name)
        mol.SetProp("smiles", self.smiles)
        mol.SetProp("mode", self.mode)
        mol.SetProp("reason", self.reason)
        mol.SetDoubleProp("vina_score", self.vina_score)
        mol.SetDoubleProp("core_rmsd", self.core_rmsd)
        mol.SetIntProp("core_atoms", self.core.size)
        mol.SetDoubleProp("core_fraction", round(self.core.fraction, 4))
        mol.SetProp("core_smarts", self.core.smarts)
        return mol


# --------------------------------------------------------------------------- input


def read_reference(path: str | Path) -> Chem.Mol:
    """Read a 3D reference ligand (.sdf or .mol, hydrogens kept) with stereo from its coordinates.

    Parameters
    ----------
    path : str or Path
        The reference file; its first molecule is used.

    Returns
    -------
    Chem.Mol
        Sanitized, with its conformer and chiral tags assigned from 3D.

    Raises
    ------
    TetheringError
        When the file is missing, unreadable by RDKit or has no coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise TetheringError(f"reference ligand '{path}' does not exist")
    if path.suffix.lower() == ".mol":
        mol = Chem.MolFromMolFile(str(path), removeHs=False)
    else:
        mol = next(iter(Chem.SDMolSupplier(str(path), removeHs=False)), None)
    if mol is None or mol.GetNumConformers() == 0:
        raise TetheringError(f"cannot read a reference ligand with coordinates from '{path}'")
    return _with_stereo_from_3d(mol)


def _with_stereo_from_3d(reference: Chem.Mol) -> Chem.Mol:
    """Copy of ``reference`` whose chiral tags follow its coordinates (mol blocks may lack parity)."""
    if reference.GetNumConformers() == 0:
        raise TetheringError("the reference ligand has no coordinates")
    mol = Chem.Mol(reference)
    Chem.AssignStereochemistryFrom3D(mol)
    return mol


def ligand_from_smiles(smiles: str, name: str = "ligand") -> Chem.Mol:
    """The ligand as its SMILES gives it, with every hydrogen an explicit atom (no coordinates).

    The protonation state is the SMILES's: explicit ``[H]`` atoms and charges are kept (not
    standardized, neutralized or re-protonated), and the hydrogens left implicit are added.

    Parameters
    ----------
    smiles : str
        The ligand.
    name : str
        Its name, used in error messages and as the molecule name.

    Returns
    -------
    Chem.Mol
        Sanitized, all hydrogens explicit.

    Raises
    ------
    TetheringError
        When the SMILES is empty, cannot be parsed or holds more than one molecule.
    """
    params = Chem.SmilesParserParams()
    params.removeHs = False  # keep the series' own hydrogens (and the charges they go with)
    mol = Chem.MolFromSmiles(smiles, params) if smiles and smiles.strip() else None
    if mol is None:
        raise TetheringError(f"{name}: invalid SMILES {smiles!r} (RDKit cannot parse it)")
    if len(Chem.GetMolFrags(mol)) > 1:
        raise TetheringError(f"{name}: SMILES {smiles!r} holds {len(Chem.GetMolFrags(mol))} molecules, expected one")
    mol = Chem.AddHs(mol)
    mol.SetProp("_Name", name)
    return mol


# --------------------------------------------------------------------------- core


def find_core(reference: Chem.Mol, mol: Chem.Mol, timeout: float = 10.0, max_maps: int = 4) -> Core:
    """Maximum common substructure of a reference ligand and a ligand, as a series core.

    rdFMCS on the heavy atoms, with the rules a chemist applies to a congeneric core:
    elements must match; ring atoms and bonds match ring ones only and only complete rings
    count (half a ring would pin a ring conformation the ligand may not have); bond orders
    must match, except that aromatic bonds match conjugated ring bonds (the same planar ring
    perceived aromatic in one molecule and not in the other: tautomers, charged
    heterocycles), while a benzene never matches a cyclohexane. Formal charges are not
    compared (the series' protonation states may differ from the reference's).

    Chirality is respected where it is defined: a stereocentre of the ligand with at least
    three core neighbours must have the handedness the reference's coordinates give it;
    when it has not (an epimer), its smallest acyclic core branch is left out of the core
    (or the centre, with its rings, when all its core bonds are ring bonds). A centre the
    ligand leaves unspecified takes the reference's.

    Parameters
    ----------
    reference : Chem.Mol
        The reference ligand with a 3D conformer (hydrogens optional).
    mol : Chem.Mol
        The ligand (hydrogens optional; coordinates not needed).
    timeout : float
        Seconds rdFMCS may search; on timeout the largest core found is used and
        ``Core.timed_out`` is set.
    max_maps : int
        Most symmetry-distinct mappings kept in ``Core.maps``.

    Returns
    -------
    Core
        Atom pairs refer to the indices of ``reference`` and ``mol`` as given.
    """
    reference = _with_stereo_from_3d(reference)
    ref_graph, ref_index = _core_graph(reference)
    mol_graph, mol_index = _core_graph(mol)
    n_heavy = mol.GetNumHeavyAtoms()
    result = rdFMCS.FindMCS([ref_graph, mol_graph], _mcs_parameters(timeout))
    if result.canceled:
        log.info("MCS search stopped at its %.0f s timeout for %s", timeout, Chem.MolToSmiles(Chem.RemoveHs(mol)))
    if result.numAtoms == 0:
        return Core((), "", n_heavy, result.canceled)
    query = result.queryMol
    ref_match = ref_graph.GetSubstructMatch(query)
    mol_matches = mol_graph.GetSubstructMatches(query, uniquify=False, useChirality=False, maxMatches=1000)
    if not ref_match or not mol_matches:  # cannot happen for rdFMCS's own query; no core rather than a crash
        return Core((), result.smartsString, n_heavy, result.canceled)
    candidates = [
        _ring_complete(
            reference, mol, tuple((ref_index[r], mol_index[m]) for r, m in zip(ref_match, match, strict=True))
        )
        for match in mol_matches
    ]
    size = max(len(amap) for amap in candidates)
    if size == 0:  # the common part was only pieces of rings: no core (the ligand is docked)
        return Core((), "", n_heavy, result.canceled)
    candidates = [amap for amap in candidates if len(amap) == size]
    # chirality before symmetry: the two mappings of a ring's enantiotopic atoms look alike to
    # canonical ranks but give a stereocentre on the ring opposite handedness
    clean = _symmetry_distinct(mol, [amap for amap in candidates if not _chirality_conflicts(reference, mol, amap)])
    if not clean:
        # every mapping puts some stereocentre the wrong way round: shrink each until none does
        trimmed = [_trim_for_chirality(reference, mol, amap) for amap in _symmetry_distinct(mol, candidates)]
        largest = max(len(amap) for amap in trimmed)
        clean = _symmetry_distinct(mol, [amap for amap in trimmed if len(amap) == largest and amap])
    kept = tuple(clean[:max_maps])
    if not kept:
        return Core((), "", n_heavy, result.canceled, chirality_trimmed=size)
    smarts = result.smartsString
    if len(kept[0]) != result.numAtoms:  # rdFMCS's SMARTS no longer describes the core
        smarts = Chem.MolFragmentToSmarts(mol, atomsToUse=[m for _, m in kept[0]])
    return Core(kept, smarts, n_heavy, result.canceled, chirality_trimmed=size - len(kept[0]))


def _ring_complete(
    reference: Chem.Mol, mol: Chem.Mol, amap: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, int], ...]:
    """A mapping without ring atoms whose ring (in either molecule) it holds only in part, largest piece kept."""
    return _as_map(_complete_rings_connected(reference, mol, {m: r for r, m in amap}))


def _mcs_parameters(timeout: float) -> rdFMCS.MCSParameters:
    """rdFMCS settings of a series core (see :func:`find_core`); bonds are compared on :func:`_core_graph`."""
    params = rdFMCS.MCSParameters()
    params.AtomTyper = rdFMCS.AtomCompare.CompareElements
    params.BondTyper = rdFMCS.BondCompare.CompareOrderExact  # aromatic/conjugated tolerance is in the graph
    params.AtomCompareParameters.RingMatchesRingOnly = True
    params.BondCompareParameters.RingMatchesRingOnly = True
    params.BondCompareParameters.CompleteRingsOnly = True
    # the atom-level CompleteRingsOnly stalls the search (MDM2 spiro-oxindoles with a cyclobutyl
    # for the reference's cyclohexyl: 2 atoms at a 20 s timeout, against 31 in 0.01 s without it);
    # the bond-level rule still lets a lone ring atom (a ring's attachment point) in, which
    # _ring_complete takes out afterwards
    params.AtomCompareParameters.CompleteRingsOnly = False
    # rdFMCS's MatchChiralTag would also refuse a centre the ligand leaves unspecified, and it
    # removes the centre rather than the branch that makes it wrong: chirality is checked on the
    # mappings instead (_chirality_conflicts, _trim_for_chirality)
    params.AtomCompareParameters.MatchChiralTag = False
    params.Timeout = max(1, math.ceil(timeout))
    return params


def _core_graph(mol: Chem.Mol) -> tuple[Chem.Mol, list[int]]:
    """Heavy-atom copy on which rdFMCS compares bonds, and each of its atoms' index in ``mol``.

    Aromatic and conjugated ring bonds are all labelled aromatic, so an exact bond-order
    comparison tolerates aromaticity perception but still tells a benzene from a cyclohexane
    (whose ring bonds are not conjugated) and a chain single bond from a double one.
    """
    tagged = Chem.Mol(mol)
    for atom in tagged.GetAtoms():
        atom.SetIntProp(_INDEX_PROP, atom.GetIdx())
    params = Chem.RemoveHsParameters()
    params.removeDefiningBondStereo = True  # the core is compared on heavy atoms only
    heavy = Chem.RWMol(Chem.RemoveHs(tagged, params))
    for bond in heavy.GetBonds():
        if bond.IsInRing() and (bond.GetIsAromatic() or bond.GetIsConjugated()):
            bond.SetBondType(Chem.BondType.AROMATIC)
            bond.SetIsAromatic(True)
    graph = heavy.GetMol()
    return graph, [atom.GetIntProp(_INDEX_PROP) for atom in graph.GetAtoms()]


def _symmetry_distinct(mol: Chem.Mol, maps: list[tuple[tuple[int, int], ...]]) -> list[tuple[tuple[int, int], ...]]:
    """Drop mappings that differ only by swapping atoms the ligand cannot tell apart (kept in order).

    Two mappings that send each reference atom to ligand atoms of the same symmetry class
    (RDKit canonical ranks without tie breaking) give the same conformers; a ring flip that
    moves an ortho substituent of the ligand to the other side of the reference ring does not.
    """
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    seen: set[tuple[tuple[int, int], ...]] = set()
    distinct = []
    for amap in maps:
        key = tuple(sorted((r, ranks[m]) for r, m in amap))
        if key not in seen:
            seen.add(key)
            distinct.append(amap)
    return distinct


def _chirality_conflicts(reference: Chem.Mol, mol: Chem.Mol, amap: tuple[tuple[int, int], ...]) -> list[int]:
    """Ligand stereocentres whose handedness the reference's core coordinates contradict.

    A specified tetrahedral centre with at least three mapped heavy neighbours has its
    handedness fixed by the reference's coordinates of those atoms (a fourth neighbour that
    is not mapped, a hydrogen or a free substituent, is put opposite the three); the sign of
    the neighbours' signed volume is compared with the one the ligand's tag requires.
    """
    ref_xyz = reference.GetConformer().GetPositions()
    to_ref = dict((m, r) for r, m in amap)
    conflicts = []
    for m in to_ref:
        atom = mol.GetAtomWithIdx(m)
        if atom.GetChiralTag() not in _CHIRAL_TAGS:
            continue
        neighbours = [n.GetIdx() for n in atom.GetNeighbors()]  # bond order: what the tag refers to
        mapped = [n for n in neighbours if n in to_ref]
        if len(mapped) < 3 or len(neighbours) not in (3, 4):
            continue
        centre = ref_xyz[to_ref[m]]
        away = centre - np.mean([ref_xyz[to_ref[n]] for n in mapped], axis=0)
        xyz = np.array([ref_xyz[to_ref[n]] if n in to_ref else centre + away for n in neighbours])
        if _handedness(centre, xyz) != _TAG_SIGN[len(neighbours), atom.GetChiralTag()]:
            conflicts.append(m)
    return conflicts


def _handedness(centre: np.ndarray, neighbours: np.ndarray) -> int:
    """Sign of the signed volume of a centre's 3 or 4 neighbours (in bond order), as :data:`_TAG_SIGN` reads it."""
    if len(neighbours) == 4:
        a, b, c = neighbours[1:] - neighbours[0]
    else:
        a, b, c = neighbours - centre
    return int(np.sign(np.dot(a, np.cross(b, c))))


def _trim_for_chirality(
    reference: Chem.Mol, mol: Chem.Mol, amap: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, int], ...]:
    """Shrink a mapping until no stereocentre of the ligand contradicts the reference.

    For each conflicting centre the smallest core branch behind one of its acyclic core
    bonds is removed (the epimer's substituent goes free; the centre and its ring stay); a
    centre with only ring bonds in the core is removed itself. Then partial rings are
    removed and the largest connected piece kept, as rdFMCS's complete-rings rule requires.
    """
    kept = dict((m, r) for r, m in amap)
    for _ in range(len(amap)):
        conflicts = _chirality_conflicts(reference, mol, tuple((r, m) for m, r in kept.items()))
        if not conflicts:
            break
        centre = conflicts[0]
        branches = [
            _branch(mol, centre, n.GetIdx(), kept)
            for n in mol.GetAtomWithIdx(centre).GetNeighbors()
            if n.GetIdx() in kept and not mol.GetBondBetweenAtoms(centre, n.GetIdx()).IsInRing()
        ]
        drop = min(branches, key=lambda b: (len(b), sorted(b))) if branches else {centre}
        kept = {m: r for m, r in kept.items() if m not in drop}
        kept = _complete_rings_connected(reference, mol, kept)
    return _as_map(kept)


def _as_map(kept: dict[int, int]) -> tuple[tuple[int, int], ...]:
    """``{ligand index: reference index}`` as ``(reference, ligand)`` pairs in ligand order."""
    return tuple(sorted(((r, m) for m, r in kept.items()), key=lambda pair: pair[1]))


def _branch(mol: Chem.Mol, centre: int, start: int, core: dict[int, int]) -> set[int]:
    """Core atoms reachable from ``start`` without passing through ``centre``."""
    seen, queue = {start}, deque([start])
    while queue:
        for n in mol.GetAtomWithIdx(queue.popleft()).GetNeighbors():
            k = n.GetIdx()
            if k != centre and k in core and k not in seen:
                seen.add(k)
                queue.append(k)
    return seen


def _complete_rings_connected(reference: Chem.Mol, mol: Chem.Mol, kept: dict[int, int]) -> dict[int, int]:
    """Remove ligand/reference rings the core holds only in part, then keep the largest connected piece."""
    mol_rings = [set(ring) for ring in mol.GetRingInfo().AtomRings()]
    ref_rings = [set(ring) for ring in reference.GetRingInfo().AtomRings()]
    changed = True
    while changed:
        changed = False
        mapped_ref = {r: m for m, r in kept.items()}
        partial = {m for ring in mol_rings if 0 < len(ring & kept.keys()) < len(ring) for m in ring & kept.keys()}
        partial |= {
            mapped_ref[r]
            for ring in ref_rings
            if 0 < len(ring & mapped_ref.keys()) < len(ring)
            for r in ring & mapped_ref.keys()
        }
        if partial:
            kept = {m: r for m, r in kept.items() if m not in partial}
            changed = True
    pieces, left = [], set(kept)
    while left:
        piece = _branch(mol, -1, min(left), kept)
        pieces.append(piece)
        left -= piece
    largest = max(pieces, key=lambda p: (len(p), -min(p)), default=set())
    return {m: r for m, r in kept.items() if m in largest}


# --------------------------------------------------------------------------- conformers


def tethered_conformers(
    reference: Chem.Mol,
    mol_with_hs: Chem.Mol,
    core: Core,
    n_conformers: int = 30,
    seed: int = schema_default("seed"),
    restraint_force: float = 100.0,
    timeout: int = 60,
) -> Chem.Mol:
    """Conformers of the ligand with its core on the reference's core coordinates.

    The conformers are spread over the core's mappings (``Core.maps``); for each, ETKDGv3
    embeds with the core atoms' coordinates fixed (``coordMap``: their distances are those of
    the reference), each conformer is aligned on the core atoms onto the reference, then
    relaxed with MMFF94 (UFF when MMFF lacks parameters) with flat-bottomed position
    restraints on the core atoms, in a distance-dependent dielectric so that vacuum
    electrostatics do not fold the free parts onto themselves. Hydrogens are embedded and
    relaxed with the rest.

    Parameters
    ----------
    reference : Chem.Mol
        The reference ligand with its 3D conformer (the indices of ``core``).
    mol_with_hs : Chem.Mol
        The ligand with all hydrogens explicit (as from :func:`ligand_from_smiles`; the
        indices of ``core``); its conformers, if any, are not used.
    core : Core
        From :func:`find_core` on these two molecules.
    n_conformers : int
        Conformers requested (pruned at 0.5 A heavy-atom RMSD, so fewer may come back; one
        per mapping when every heavy atom is in the core).
    seed : int
        ETKDG random seed (the same seed gives the same conformers).
    restraint_force : float
        Force constant of the core restraints, kcal/mol/A^2.
    timeout : int
        Seconds per ETKDG call (0 = none).

    Returns
    -------
    Chem.Mol
        A copy of ``mol_with_hs`` with the conformers, in the reference's frame; each
        conformer's int property ``core_map`` is the index of its mapping in ``core.maps``.

    Raises
    ------
    TetheringError
        When the core is empty, hydrogens are missing, or no conformer could be embedded
        (the message gives ETKDG's most frequent failure causes).
    """
    if not core.maps:
        raise TetheringError("no common core with the reference to tether to")
    implicit = sum(atom.GetNumImplicitHs() for atom in mol_with_hs.GetAtoms())
    if implicit:
        raise TetheringError(f"{implicit} hydrogens are implicit: add them first (Chem.AddHs)")
    mol = Chem.Mol(mol_with_hs)
    mol.RemoveAllConformers()
    if core.size == mol.GetNumHeavyAtoms():
        n_conformers = len(core.maps)  # nothing is free: one shape per mapping (only hydrogens would differ)
    failures: Counter[str] = Counter()
    shares = [n_conformers // len(core.maps) + (k < n_conformers % len(core.maps)) for k in range(len(core.maps))]
    for k, (amap, share) in enumerate(zip(core.maps, shares, strict=True)):
        if share == 0:
            continue
        for cid in _embed_on_core(mol, reference, amap, share, seed + 2 * k, timeout, failures):
            mol.GetConformer(cid).SetIntProp(_MAP_PROP, k)
    if mol.GetNumConformers() == 0:
        causes = ", ".join(f"{cause} x{count}" for cause, count in failures.most_common(3)) or "no cause reported"
        raise TetheringError(
            f"could not embed the ligand with its {core.size} core atoms on the reference's coordinates "
            f"(ETKDG failures: {causes}); the core geometry may not fit the ligand's rings or stereochemistry"
        )
    _relax_with_core_restrained(mol, reference, core, restraint_force)
    return mol


def _embed_on_core(
    mol: Chem.Mol,
    reference: Chem.Mol,
    amap: tuple[tuple[int, int], ...],
    n_conformers: int,
    seed: int,
    timeout: int,
    failures: Counter[str],
) -> list[int]:
    """Add up to ``n_conformers`` conformers with the mapped atoms on the reference's; return their ids.

    ``coordMap`` fixes only the distances between the core atoms, which a mirror image of
    the core (torsions of opposite sign, stereocentres kept) satisfies as well: so twice the
    conformers are embedded, each is aligned on the core onto the reference, and those whose
    core then lies more than :data:`EMBED_CORE_TOLERANCE` from it are discarded. Two starts
    are tried in turn, the second only when the first keeps nothing: random coordinates and
    the distance matrix's eigenvectors (ETKDG's default). For a partial core random starts
    come first: eigenvector starts fail to find initial coordinates for large ligands (until
    the timeout) and give more mirror images. When every heavy atom is in the core the
    distance matrix is complete and eigenvector starts come first (on FKBP12 ligands of 20,
    26 and 33 heavy atoms each start fails on some: 0.6 s for the one random starts miss,
    against 7 s spent by random starts before giving up). Failure causes (and RDKit errors,
    which its optimizer raises on some cores) are counted into ``failures``.

    When a start fails mostly on ETKDG's final chirality check (``FINAL_CHIRAL_BOUNDS``), the
    other start is skipped and one more is made with random coordinates and that check off,
    keeping only conformers whose every specified stereocentre has the ligand's handedness
    (:func:`_stereo_as_tagged`). The check rejects near-complete cores whose coordinates are
    the reference's to the hundredth of an A even when no stereocentre contradicts them: on the
    FXR series (31 of 35 heavy atoms in the core) both starts failed 2,600 times in 120 s,
    while the unchecked start gave 4 conformers of the right stereoisomer at once.
    """
    ref_xyz = reference.GetConformer().GetPositions()
    coord_map = {m: Point3D(*ref_xyz[r]) for r, m in amap}
    atom_map = [(m, r) for r, m in amap]
    names = list(rdDistGeom.EmbedFailureCauses.names)
    full = len(amap) == mol.GetNumHeavyAtoms()
    starts = [(False, True), (True, True)] if full else [(True, True), (False, True)]  # (random start, chirality check)
    attempt = 0
    while attempt < len(starts):
        random_start, check_chirality = starts[attempt]
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = seed + attempt
        params.SetCoordMap(coord_map)
        params.clearConfs = False
        params.pruneRmsThresh = 0.5
        params.numThreads = 1  # callers parallelize over ligands
        params.timeout = int(timeout)
        params.trackFailures = True
        params.useRandomCoords = random_start
        params.enforceChirality = check_chirality
        attempt += 1
        before = {c.GetId() for c in mol.GetConformers()}
        try:
            ids = rdDistGeom.EmbedMultipleConfs(mol, 2 * n_conformers, params)
        except RuntimeError as exc:  # e.g. "bad direction in linearSearch" from RDKit's BFGS
            failures[f"RDKit error: {' '.join(str(exc).split())[:80]}"] += 1
            for cid in {c.GetId() for c in mol.GetConformers()} - before:
                mol.RemoveConformer(cid)
            continue
        new = [cid for cid in ids if cid >= 0 and cid not in before]  # [-1] when none was embedded
        counts = {names[i]: count for i, count in enumerate(params.GetFailureCounts()) if count}
        failures.update(counts)
        kept = []
        for cid in new:
            if not check_chirality and not _stereo_as_tagged(mol, cid):
                mol.RemoveConformer(cid)
                failures["WRONG_STEREOISOMER"] += 1
                continue
            rms = rdMolAlign.AlignMol(mol, reference, prbCid=cid, atomMap=atom_map)
            if rms <= EMBED_CORE_TOLERANCE and len(kept) < n_conformers:
                kept.append(cid)
            else:
                mol.RemoveConformer(cid)
                if rms > EMBED_CORE_TOLERANCE:
                    failures["CORE_OFF_REFERENCE"] += 1
        if kept:
            return kept
        if check_chirality and _only_the_final_chirality_check_fails(counts):
            starts[attempt:] = [(True, False)]  # the check, not the start, is what fails: go unchecked
    return []


def _only_the_final_chirality_check_fails(counts: dict[str, int]) -> bool:
    """Whether ETKDG's failures of one call are mostly its final chirality check (``FINAL_CHIRAL_BOUNDS``).

    A core that really contradicts a stereocentre fails earlier, on ``CHECK_CHIRAL_CENTERS``
    (the reference's enantiomer on its own core: 751 of 760), so only the final check's
    failures call for the unchecked retry of :func:`_embed_on_core`.
    """
    chiral = counts.get("FINAL_CHIRAL_BOUNDS", 0)
    return chiral > 0 and chiral >= 0.5 * sum(counts.values())


def _stereo_as_tagged(mol: Chem.Mol, conf_id: int) -> bool:
    """Whether every specified tetrahedral stereocentre of ``mol`` has its tag's handedness in a conformer.

    Parameters
    ----------
    mol : Chem.Mol
        The ligand with explicit hydrogens and chiral tags (from its SMILES).
    conf_id : int
        The conformer to check.

    Returns
    -------
    bool
        ``False`` when a centre with 3 or 4 neighbours is the mirror image of what its tag
        says (bond order, as :data:`_TAG_SIGN` reads it); centres without a tag are not checked.
    """
    xyz = mol.GetConformer(conf_id).GetPositions()
    for atom in mol.GetAtoms():
        tag = atom.GetChiralTag()
        neighbours = [n.GetIdx() for n in atom.GetNeighbors()]
        if tag not in _CHIRAL_TAGS or len(neighbours) not in (3, 4):
            continue
        if _handedness(xyz[atom.GetIdx()], xyz[neighbours]) != _TAG_SIGN[len(neighbours), tag]:
            return False
    return True


def _relax_with_core_restrained(mol: Chem.Mol, reference: Chem.Mol, core: Core, restraint_force: float) -> None:
    """MMFF94 (else UFF) minimization of every conformer, each core atom tied to its reference position.

    The ties are flat-bottomed (0.05 A) springs to fixed points at the reference's
    coordinates, not to where the embedding left the atoms (ETKDG reproduces the core's
    distances only to a few tenths of an A), so relaxation brings the core onto the reference.
    """
    ref_xyz = reference.GetConformer().GetPositions()
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    if props is not None:
        props.SetMMFFDielectricModel(2)  # distance-dependent
        props.SetMMFFDielectricConstant(4.0)
    for conf in mol.GetConformers():
        amap = core.maps[conf.GetIntProp(_MAP_PROP)] if conf.HasProp(_MAP_PROP) else core.atom_map
        if props is not None:
            ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props, confId=conf.GetId())
        else:
            ff = rdForceFieldHelpers.UFFGetMoleculeForceField(mol, confId=conf.GetId())
        if ff is None:
            continue  # no force field types this molecule: keep the embedded geometry
        for r, m in amap:
            point = ff.AddExtraPoint(*map(float, ref_xyz[r]), fixed=True) - 1
            ff.AddDistanceConstraint(point, m, 0.0, 0.05, restraint_force)
        ff.Initialize()
        ff.Minimize(maxIts=2000)


def core_rmsd(pose: Chem.Mol, reference: Chem.Mol, atom_map: tuple[tuple[int, int], ...], conf_id: int = -1) -> float:
    """In-place heavy-atom RMSD (A) of a pose's core atoms to the reference's, no superposition.

    Parameters
    ----------
    pose : Chem.Mol
        The ligand pose, in the atom order ``atom_map`` refers to.
    reference : Chem.Mol
        The reference ligand.
    atom_map : tuple of (int, int)
        ``(reference index, pose index)`` pairs (``Core.atom_map`` or one of ``Core.maps``).
    conf_id : int
        The pose's conformer.

    Returns
    -------
    float
        NaN when ``atom_map`` is empty.
    """
    if not atom_map:
        return float("nan")
    ref_xyz = reference.GetConformer().GetPositions()
    xyz = pose.GetConformer(conf_id).GetPositions()
    ref_idx, pose_idx = (list(column) for column in zip(*atom_map, strict=True))
    return float(np.sqrt(np.mean(np.sum((xyz[pose_idx] - ref_xyz[ref_idx]) ** 2, axis=1))))


# --------------------------------------------------------------------------- pocket


def optimize_in_pocket(
    vina: Vina, conformers: Chem.Mol, reference: Chem.Mol, core: Core, name: str = "ligand"
) -> list[PocketPose]:
    """Vina local optimization of every tethered conformer in the receptor; poses best first.

    Each conformer is typed by meeko from its own coordinates (:func:`pipeline.ligands.to_pdbqt`),
    optimized by ``Vina.optimize`` (rigid-body moves and torsions, from where it was put),
    read back through meeko with its hydrogens (:func:`pipeline.docking.poses_to_rdkit`) and
    renumbered to the ligand's atom order.

    Parameters
    ----------
    vina : vina.Vina
        A Vina object with the receptor set and the maps of a box holding the poses computed
        (for instance ``Docker(receptor_pdbqt, box, settings).vina``).
    conformers : Chem.Mol
        From :func:`tethered_conformers`.
    reference : Chem.Mol
        The reference ligand (for the core RMSD).
    core : Core
        The core the conformers were tethered by.
    name : str
        The ligand's name, for messages and the molecule names.

    Returns
    -------
    list of PocketPose
        One per conformer Vina could optimize, lowest score first.

    Raises
    ------
    TetheringError
        When no conformer could be typed and optimized (the first reason is given).
    """
    poses, errors = [], []
    with tempfile.TemporaryDirectory(prefix="tethered-") as tmp:
        out = Path(tmp) / "pose.pdbqt"
        for conf in conformers.GetConformers():
            cid = conf.GetId()
            start = Chem.Mol(conformers, confId=cid)
            amap = core.maps[conf.GetIntProp(_MAP_PROP)] if conf.HasProp(_MAP_PROP) else core.atom_map
            try:
                vina.set_ligand_from_string(to_pdbqt(start))
                energies = vina.optimize()
                vina.write_pose(str(out), overwrite=True)
                optimized = poses_to_rdkit(out.read_text(), name)[0]
            except (PreparationError, DockingError, RuntimeError, TypeError) as exc:
                # Vina raises RuntimeError (e.g. an atom outside the maps' box) with its own text
                errors.append(f"conformer {cid}: {type(exc).__name__}: {exc}")
                continue
            guide = dict(enumerate(start.GetConformer().GetPositions()))
            pose = _in_input_order(optimized, conformers, guide, name)
            poses.append(PocketPose(pose, float(energies[0]), core_rmsd(pose, reference, amap), cid))
    if not poses:
        detail = errors[0] if errors else "no conformers"
        raise TetheringError(f"{name}: Vina could not optimize any tethered conformer ({detail})")
    return sorted(poses, key=lambda p: (p.vina_score, p.conformer))


def _heavy_graph(mol: Chem.Mol) -> tuple[Chem.Mol, list[int]]:
    """:func:`pipeline.rmsd.element_graph` of ``mol`` and each of its atoms' index in ``mol``."""
    tagged = Chem.Mol(mol)
    for atom in tagged.GetAtoms():
        atom.SetIntProp(_INDEX_PROP, atom.GetIdx())
    graph = element_graph(tagged)
    return graph, [atom.GetIntProp(_INDEX_PROP) for atom in graph.GetAtoms()]


def _in_input_order(pose: Chem.Mol, mol: Chem.Mol, guide: dict[int, np.ndarray], name: str) -> Chem.Mol:
    """A copy of ``mol`` (one conformer) with the coordinates of ``pose``, a rebuilt copy in another atom order.

    Heavy atoms are matched on element graphs; among the symmetric matches the one closest
    to ``guide`` (``mol`` atom index -> expected position; the conformer before optimization,
    or the reference core) is taken, so symmetric atoms keep their identity. Each heavy
    atom's hydrogens take the positions of the pose's hydrogens on the matched atom.
    """
    pose_graph, pose_index = _heavy_graph(pose)
    mol_graph, mol_index = _heavy_graph(mol)
    matches = pose_graph.GetSubstructMatches(mol_graph, uniquify=False, useChirality=False, maxMatches=10_000)
    if not matches or pose_graph.GetNumAtoms() != mol_graph.GetNumAtoms() or pose.GetNumAtoms() != mol.GetNumAtoms():
        raise TetheringError(f"{name}: meeko's rebuilt pose is not the input molecule")
    pose_xyz = pose.GetConformer().GetPositions()

    def misfit(match: tuple[int, ...]) -> float:
        return sum(
            float(np.sum((pose_xyz[pose_index[p]] - guide[mol_index[k]]) ** 2))
            for k, p in enumerate(match)
            if mol_index[k] in guide
        )

    best = min(matches, key=misfit)
    order = [-1] * mol.GetNumAtoms()
    for k, p in enumerate(best):
        a, b = mol_index[k], pose_index[p]
        order[a] = b
        mol_hs = [n.GetIdx() for n in mol.GetAtomWithIdx(a).GetNeighbors() if n.GetAtomicNum() == 1]
        pose_hs = [n.GetIdx() for n in pose.GetAtomWithIdx(b).GetNeighbors() if n.GetAtomicNum() == 1]
        if len(mol_hs) != len(pose_hs):
            raise TetheringError(f"{name}: meeko's rebuilt pose has other hydrogens than the input molecule")
        for h_mol, h_pose in zip(mol_hs, pose_hs, strict=True):
            order[h_mol] = h_pose
    if -1 in order:
        raise TetheringError(f"{name}: meeko's rebuilt pose is not the input molecule")
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conf = Chem.Conformer(out.GetNumAtoms())
    for i, j in enumerate(order):
        conf.SetAtomPosition(i, Point3D(*pose_xyz[j]))
    conf.Set3D(True)
    out.AddConformer(conf, assignId=True)
    out.SetProp("_Name", name)
    return out


# --------------------------------------------------------------------------- top level


class TetheredPoser:
    """Poses ligands like one reference ligand in one receptor (Vina maps computed once).

    Parameters
    ----------
    receptor_pdbqt : str or Path
        Rigid receptor PDBQT (:func:`pipeline.receptor.prepare_receptor`).
    reference : Chem.Mol or str or Path
        The reference ligand in the receptor's frame, or its .sdf/.mol file.
    settings : TetheredSettings
        Thresholds and Vina settings.
    box : pipeline.box.Box, optional
        Region of Vina's maps; by default the reference's heavy atoms plus
        ``settings.box_padding`` (the workflow passes the run's own box).

    Attributes
    ----------
    reference : Chem.Mol
        The reference with stereo from its coordinates.
    box : pipeline.box.Box
        The box given, or the reference's heavy atoms plus ``settings.box_padding``: the
        region of Vina's maps, for the optimization and the docking fallback.
    docker : pipeline.docking.Docker
        The Vina engine; its ``vina`` object also optimizes the tethered poses.
    """

    def __init__(
        self,
        receptor_pdbqt: str | Path,
        reference: Chem.Mol | str | Path,
        settings: TetheredSettings | None = None,
        box: Box | None = None,
    ):
        self.settings = settings or TetheredSettings()
        if isinstance(reference, Chem.Mol):
            self.reference = _with_stereo_from_3d(reference)
            self.box = box or _reference_box(self.reference, self.settings.box_padding)
        else:
            self.reference = read_reference(reference)
            self.box = box or box_around_ligand(reference, self.settings.box_padding)
        s = self.settings
        docking = DockingSettings(
            exhaustiveness=s.exhaustiveness,
            n_poses=1,
            seed=s.seed,
            threads=s.threads,
            scoring=s.scoring,
            time_limit=None,
        )
        self.docker = Docker(receptor_pdbqt, self.box, docking)

    def pose(self, smiles: str, name: str = "ligand") -> TetheredPose:
        """Pose one ligand: tethered on the common core, or docked when the core is too small.

        Parameters
        ----------
        smiles : str
            The ligand, in the protonation state to pose (see :func:`ligand_from_smiles`).
        name : str
            Its name (messages, the pose's molecule name).

        Returns
        -------
        TetheredPose
            With ``mode`` ``"tethered"`` or ``"docked"`` and the reason.

        Raises
        ------
        TetheringError
            When the SMILES cannot be read, or neither way gives a pose (the message names
            the ligand and says why).
        """
        mol = ligand_from_smiles(smiles, name)
        core = find_core(self.reference, mol, self.settings.mcs_timeout, self.settings.max_core_maps)
        too_small = self._too_small(core)
        if too_small:
            return self._dock(mol, smiles, name, core, f"{core.describe()}: {too_small}")
        try:
            return self._tether(mol, smiles, name, core)
        except TetheringError as exc:
            if not self.settings.dock_on_failure:
                raise TetheringError(f"{name}: {exc}") from exc
            return self._dock(mol, smiles, name, core, f"{core.describe()}; tethering failed: {exc}")

    def _too_small(self, core: Core) -> str | None:
        """Why ``core`` is too small to tether to (``None`` when it is large enough)."""
        s = self.settings
        if core.size < s.min_core_atoms:
            return f"fewer than min_core_atoms = {s.min_core_atoms}"
        if core.fraction < s.min_core_fraction:
            return f"less than min_core_fraction = {s.min_core_fraction:g} of the ligand"
        return None

    def _tether(self, mol: Chem.Mol, smiles: str, name: str, core: Core) -> TetheredPose:
        """Embed on the core, optimize in the pocket, keep the best pose whose core stayed put."""
        s = self.settings
        conformers = tethered_conformers(
            self.reference, mol, core, s.n_conformers, s.seed, s.restraint_force, s.embed_timeout
        )
        poses = optimize_in_pocket(self.docker.vina, conformers, self.reference, core, name)
        kept = [p for p in poses if p.core_rmsd <= s.max_core_rmsd]
        best = kept[0] if kept else poses[0]
        reason = f"{core.describe()} restrained; best of {len(poses)} optimized conformers"
        if not kept:
            reason += f"; every core moved more than max_core_rmsd = {s.max_core_rmsd:g} A (best-scored taken)"
        return TetheredPose(name, smiles, "tethered", reason, core, best.mol, best.vina_score, best.core_rmsd)

    def _dock(self, mol: Chem.Mol, smiles: str, name: str, core: Core, reason: str) -> TetheredPose:
        """Vina docking in the reference's box from one free ETKDG conformer (the series' protonation kept)."""
        s = self.settings
        try:
            # pipeline.ligands.embed adds no hydrogens here (all are explicit) and relaxes with MMFF
            start = embed(Chem.Mol(mol), s.seed, attempts=3, timeout=s.embed_timeout)
            poses, energies = self.docker.dock(name, to_pdbqt(start))
        except (PreparationError, DockingError) as exc:
            raise TetheringError(f"{name}: docking fallback failed ({reason}): {exc}") from exc
        ref_xyz = self.reference.GetConformer().GetPositions()
        guide = {m: ref_xyz[r] for r, m in core.atom_map}  # symmetric atoms as close to the reference core as may be
        pose = _in_input_order(poses[0], mol, guide, name)
        rmsd = core_rmsd(pose, self.reference, core.atom_map)
        return TetheredPose(name, smiles, "docked", f"{reason}; docked", core, pose, float(energies[0][0]), rmsd)


def _reference_box(reference: Chem.Mol, padding: float) -> Box:
    """:func:`pipeline.box.box_around_ligand` for a reference given as a molecule."""
    xyz = reference.GetConformer().GetPositions()
    heavy = [a.GetIdx() for a in reference.GetAtoms() if a.GetAtomicNum() > 1]
    return box_around_coordinates(xyz[heavy], padding)


def pose_like_reference(
    receptor_pdbqt: str | Path,
    reference: Chem.Mol | str | Path,
    smiles: str,
    settings: TetheredSettings | None = None,
    name: str = "ligand",
) -> TetheredPose:
    """Pose one ligand like the reference ligand in the receptor (see the module docstring).

    For many ligands of one series, make one :class:`TetheredPoser` instead: it computes
    Vina's maps once.

    Parameters
    ----------
    receptor_pdbqt : str or Path
        Rigid receptor PDBQT.
    reference : Chem.Mol or str or Path
        The reference ligand in the receptor's frame, or its .sdf/.mol file.
    smiles : str
        The ligand, in the protonation state to pose (explicit hydrogens kept).
    settings : TetheredSettings, optional
        Thresholds and Vina settings (defaults when omitted).
    name : str
        The ligand's name.

    Returns
    -------
    TetheredPose
        The pose, its Vina score, its core RMSD, and ``mode`` with the reason.

    Raises
    ------
    TetheringError
        Unreadable SMILES or reference, or no pose by either way; the message names the ligand.
    """
    return TetheredPoser(receptor_pdbqt, reference, settings).pose(smiles, name)


def _pose_tethered_in_worker(poser, item: tuple[str, str]) -> list[tuple[bytes, dict]]:
    """Isolated work of one ligand in ``docking.mode: tethered``: its one pose and table row."""
    compound_id, smiles = item
    start = time.perf_counter()
    pose = poser.pose(smiles, compound_id)
    mol = pose.to_mol()
    row = dict(
        id=compound_id,
        pose=1,
        docking_score=float(pose.vina_score),
        inter=float("nan"),  # Vina's optimize() reports the total only
        intra=float("nan"),
        torsional=float("nan"),
        intra_best_pose=float("nan"),
        dock_seconds=time.perf_counter() - start,
    )
    for key in ("pose", "docking_score"):
        mol.SetProp(key, str(row[key]))
    return [(pack_mol(mol), row)]


def _tethering_reason(compound_id: str, exc: BaseException) -> str:
    if isinstance(exc, (TetheringError, DockingError)):
        return str(exc)
    return unexpected_error(f"tethered posing of {compound_id}", exc)


def pose_chunk_tethered(
    ligands: str | Path,
    receptor_pdbqt: str | Path,
    reference: str | Path,
    box: Box,
    settings,
    time_limit: float | None,
    out_sdf: str | Path,
    out_table: str | Path,
    failures: str | Path,
) -> tuple[int, int]:
    """``docking.mode: tethered``: pose every ligand of a prepared chunk like ``reference``.

    Same inputs and outputs as :func:`dock_chunk` (one pose per ligand; ``inter``, ``intra``
    and ``torsional`` are NaN because Vina's local optimization gives only the total), with
    :class:`pipeline.tethered.TetheredPoser` in the isolated worker: the common core with the
    reference restrained, Vina local optimization, docking in the reference's box when the
    core is too small. The pose's SD properties say which (``mode``, ``reason``, ``core_rmsd``).
    ``settings`` is a :class:`pipeline.tethered.TetheredSettings`; ``box`` is the run's box (the
    reference's, as receptor preparation wrote it), so Vina's maps cover what docking's would.
    """
    return run_chunk(
        ligands,
        "prepared_smiles",
        _pose_tethered_in_worker,
        partial(TetheredPoser, receptor_pdbqt, reference, settings, box),
        time_limit,
        f"pose {Path(ligands).stem} (tethered)",
        _tethering_reason,
        out_sdf,
        out_table,
        failures,
    )
