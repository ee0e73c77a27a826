"""Protein-ligand pair graphs: the input of the physics-shaped scorer (:mod:`pipeline.scoring.pair_model`).

One graph per pose. The protein is the receptor PDBQT that docking used, read into a
:class:`VinaReceptor` and typed exactly as AutoDock Vina 1.2 types it, so that the
graph carries Vina's own intermolecular terms for every protein-ligand atom pair and
their weighted sum *is* Vina's intermolecular energy of the pose (the anchor the model
falls back to; checked against the ``vina`` package in ``tests/test_pair_scorer.py``).

Nodes: the ligand's heavy atoms (first ``n_ligand_atoms`` nodes, in RDKit atom order),
then the receptor heavy atoms within ``pair_cutoff`` of any ligand heavy atom (in
PDBQT order). Hydrogens are not nodes; the number of polar hydrogens is a feature.

Three edge sets, all with source and target node indices (PyG shifts every key that
contains ``index`` when it batches graphs):

* ``edge_index`` / ``edge_attr`` / ``edge_dist`` - message passing, both directions:
  covalent bonds within the ligand and within the pocket, other pairs of the same
  molecule closer than ``intra_cutoff``, protein-ligand pairs closer than
  ``interface_cutoff``;
* ``pair_index`` (row 0 ligand node, row 1 protein node) / ``pair_dist`` /
  ``pair_terms`` / ``pair_flags`` - every protein-ligand heavy-atom pair closer than
  ``pair_cutoff`` (8 Å, Vina's cutoff): the pair's Vina terms and its interaction flags.

Vina's terms (Trott & Olson 2010; AutoDock Vina 1.2 ``potentials.cpp``) are functions of
the surface distance ``s = r - R_i - R_j`` (``R`` the XS van der Waals radius):
``gauss1 = exp(-(s/0.5)^2)``, ``gauss2 = exp(-((s-3)/2)^2)``, ``repulsion = s^2`` if
``s < 0``, ``hydrophobic`` 1 below ``s = 0.5`` falling linearly to 0 at 1.5 (both atoms
hydrophobic), ``hbond`` 1 below ``s = -0.7`` falling linearly to 0 at 0 (a donor with
an acceptor). Vina's intermolecular energy is ``sum_ij sum_k w_k t_k`` with
:data:`VINA_WEIGHTS`; its score divides it by ``1 + 0.05846 N_rot``
(:func:`vina_rotor_count`).

XS typing (``model::assign_types``): a carbon bonded to any heteroatom (AutoDock types
other than C, A, H, HD) is ``C_P``, else ``C_H``; N and O are donors when bonded to a
polar hydrogen (``HD``), acceptors when AutoDock types them ``NA``/``OA`` (for the
ligand these are meeko's types, the same typer that wrote its docking PDBQT); S is
``S_P``, P ``P_P``, halogens ``F_H``/``Cl_H``/``Br_H``/``I_H``, metals ``Met_D`` (a
donor). Bonds in the receptor are found by distance, as Vina does (shorter than 1.1x
the sum of covalent radii, with no third atom closer to both).

Interaction flags (:data:`PAIR_FLAGS`) are geometric, per heavy-atom pair, with the
distances of :class:`PairGraphSchema`: ``hbond`` (XS donor with XS acceptor, metals aside, r <= 3.5),
``hydrophobic`` (two XS hydrophobic atoms, r <= 4.5), ``ionic`` (cationic with anionic
atom, r <= 4.0), ``like_charge`` (two cationic or two anionic atoms, r <= 4.0),
``aromatic`` (two aromatic-ring atoms, r <= 4.5), ``cation_pi`` (cationic with aromatic
atom, r <= 4.5), ``halogen`` (ligand Cl/Br/I with a protein acceptor, r <= 3.5),
``metal`` (metal with N/O/S acceptor or anionic atom, r <= 2.8). Charged atoms: see
:func:`ligand_charge_signs` and :meth:`VinaReceptor.charge_signs`.

The file format is the one of :mod:`pipeline.graphs` (``{"schema": ..., "graphs": [...]}``,
tensors, strings and numbers only, read with ``torch.load(weights_only=True)``), with
this module's :class:`PairGraphSchema`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem
from scipy.spatial import cKDTree

from .graphs import _BACKBONE, _RESIDUE_ALIASES, AMINO_ACIDS, GraphError, SchemaSerialization, _one_hot, save_graphs

#: Version of the pair-graph layout; bump it whenever a feature is added, removed or reordered.
SCHEMA_VERSION = "vscreen-pairgraph/1"

#: Vina's XS atom types that heavy atoms of proteins and drug-like ligands take.
XS_TYPES: tuple[str, ...] = (
    "C_H",
    "C_P",
    "N_P",
    "N_D",
    "N_A",
    "N_DA",
    "O_P",
    "O_D",
    "O_A",
    "O_DA",
    "S_P",
    "P_P",
    "F_H",
    "Cl_H",
    "Br_H",
    "I_H",
    "Met_D",
)
#: XS van der Waals radii (Å), Vina 1.2 ``atom_constants.h``.
XS_RADII = np.array([1.9, 1.9, 1.8, 1.8, 1.8, 1.8, 1.7, 1.7, 1.7, 1.7, 2.0, 2.1, 1.5, 1.8, 2.0, 2.2, 1.2])
XS_HYDROPHOBIC = np.array([t in ("C_H", "F_H", "Cl_H", "Br_H", "I_H") for t in XS_TYPES])
XS_DONOR = np.array([t in ("N_D", "N_DA", "O_D", "O_DA", "Met_D") for t in XS_TYPES])
XS_ACCEPTOR = np.array([t in ("N_A", "N_DA", "O_A", "O_DA") for t in XS_TYPES])

#: Vina's intermolecular terms, in the order of ``pair_terms`` columns and :data:`VINA_WEIGHTS`.
VINA_TERMS: tuple[str, ...] = ("gauss1", "gauss2", "repulsion", "hydrophobic", "hbond")
#: Vina 1.2's default weights of :data:`VINA_TERMS` (kcal/mol per unit term).
VINA_WEIGHTS: tuple[float, ...] = (-0.035579, -0.005156, 0.840245, -0.035069, -0.587439)
#: Weight of Vina's rotatable-bond normalization: score = inter / (1 + VINA_ROT_WEIGHT * N_rot).
VINA_ROT_WEIGHT = 0.05846
#: Vina's interaction cutoff (Å).
VINA_CUTOFF = 8.0

#: Per-pair interaction flags, in the order of ``pair_flags`` columns (definitions in the module docstring).
PAIR_FLAGS: tuple[str, ...] = (
    "hbond",
    "hydrophobic",
    "ionic",
    "like_charge",
    "aromatic",
    "cation_pi",
    "halogen",
    "metal",
)
#: Per-graph features, in order: sums of each Vina term over the pairs, Vina's N_rot,
#: Vina's intermolecular energy and score (kcal/mol) from those sums, ligand heavy atoms.
GLOBAL_NAMES: tuple[str, ...] = VINA_TERMS + ("n_rot", "vina_inter", "vina_score", "n_heavy")

# AutoDock types -> element class; covalent radii (Å) of Vina's atom_kind_data (metals not listed: 1.75)
_NON_AD_METALS = frozenset({"Cu", "Na", "K", "Hg", "Co", "U", "Cd", "Ni"})
_AD_ELEMENT = {
    "C": "C", "A": "C", "CG0": "C", "CG1": "C", "CG2": "C", "CG3": "C", "N": "N", "NA": "N", "O": "O", "OA": "O",
    "S": "S", "SA": "S", "Se": "S", "P": "P", "F": "F", "Cl": "Cl", "Br": "Br", "I": "I", "H": "H", "HD": "H",
    "Mg": "Met", "Mn": "Met", "Zn": "Met", "Ca": "Met", "Fe": "Met", **{m: "Met" for m in _NON_AD_METALS},
}  # fmt: skip
_AD_COVALENT = {
    "C": 0.77, "A": 0.77, "CG0": 0.77, "CG1": 0.77, "CG2": 0.77, "CG3": 0.77, "N": 0.75, "NA": 0.75,
    "O": 0.73, "OA": 0.73, "S": 1.02, "SA": 1.02, "Se": 1.02, "P": 1.06, "F": 0.71, "Cl": 0.99, "Br": 1.14,
    "I": 1.33, "H": 0.37, "HD": 0.37, "Mg": 1.30, "Mn": 1.39, "Zn": 1.31, "Ca": 1.74, "Fe": 1.25,
}  # fmt: skip
_METAL_COVALENT = 1.75
# AutoDock types that are not heteroatoms for Vina's C_H / C_P decision (ad_is_heteroatom)
_NOT_HETERO = frozenset({"C", "A", "H", "HD"})
# protein atoms in aromatic rings that AutoDock does not type "A"
_AROMATIC_RING_N = {"HIS": {"ND1", "NE2"}, "TRP": {"NE1"}}
_CARBOXYLATES = {"ASP": ("OD1", "OD2"), "GLU": ("OE1", "OE2")}


def xs_type(ad_type: str, neighbour_ad_types: Sequence[str]) -> str | None:
    """Vina's XS type of one atom from its AutoDock type and its bonded neighbours' types.

    Returns ``None`` for hydrogens and for glue pseudo-atoms (``G0``..``G3``), which
    Vina leaves out of the intermolecular terms. Ring-closure carbons (``CG0``..``CG3``)
    count as ordinary carbons, as Vina's grid maps treat them.

    Raises
    ------
    GraphError
        For an AutoDock type Vina cannot score.
    """
    ad = ad_type
    if ad in ("G0", "G1", "G2", "G3", "W"):
        return None
    element = _AD_ELEMENT.get(ad)
    if element is None:
        raise GraphError(f"AutoDock atom type {ad_type!r} has no Vina XS type")
    if element == "H":
        return None
    if element == "C":
        hetero = any(n not in _NOT_HETERO and n not in _NON_AD_METALS for n in neighbour_ad_types)
        return "C_P" if hetero else "C_H"
    if element in ("N", "O"):
        acceptor = ad in ("NA", "OA")
        donor = any(n == "HD" for n in neighbour_ad_types)
        suffix = "DA" if acceptor and donor else "A" if acceptor else "D" if donor else "P"
        return f"{element}_{suffix}"
    return {"S": "S_P", "P": "P_P", "F": "F_H", "Cl": "Cl_H", "Br": "Br_H", "I": "I_H", "Met": "Met_D"}[element]


def vina_terms(r: np.ndarray, xs_i: np.ndarray, xs_j: np.ndarray) -> np.ndarray:
    """Vina's five term values of atom pairs (P×5, order of :data:`VINA_TERMS`).

    Parameters
    ----------
    r
        Interatomic distances (Å), shape (P,). Pairs at or beyond :data:`VINA_CUTOFF` get 0.
    xs_i, xs_j
        Indices into :data:`XS_TYPES` of the two atoms of each pair.
    """
    r = np.asarray(r, dtype=np.float64)
    s = r - XS_RADII[xs_i] - XS_RADII[xs_j]
    terms = np.zeros((len(r), len(VINA_TERMS)))
    terms[:, 0] = np.exp(-((s / 0.5) ** 2))
    terms[:, 1] = np.exp(-(((s - 3.0) / 2.0) ** 2))
    terms[:, 2] = np.where(s < 0.0, s * s, 0.0)
    both_hydrophobic = XS_HYDROPHOBIC[xs_i] & XS_HYDROPHOBIC[xs_j]
    terms[:, 3] = np.where(both_hydrophobic, np.clip((1.5 - s) / 1.0, 0.0, 1.0), 0.0)
    donor_acceptor = (XS_DONOR[xs_i] & XS_ACCEPTOR[xs_j]) | (XS_ACCEPTOR[xs_i] & XS_DONOR[xs_j])
    terms[:, 4] = np.where(donor_acceptor, np.clip(-s / 0.7, 0.0, 1.0), 0.0)
    terms[r >= VINA_CUTOFF] = 0.0
    return terms


def vina_energy(term_sums: np.ndarray, n_rot: float) -> tuple[float, float]:
    """Vina's intermolecular energy and score (kcal/mol) from the summed terms of a pose."""
    inter = float(np.dot(np.asarray(term_sums, dtype=np.float64), VINA_WEIGHTS))
    return inter, inter / (1.0 + VINA_ROT_WEIGHT * n_rot)


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class PairGraphSchema(SchemaSerialization):
    """Names, order, sizes and cutoffs of every feature of a pair graph.

    Node features (``x``, one row per heavy atom; the same columns for ligand and
    protein atoms): XS type one-hot (:data:`XS_TYPES` plus ``other``), aromatic-ring
    atom (0/1), cationic (0/1), anionic (0/1), polar hydrogens (one-hot 0/1/2/3+),
    heavy-atom neighbours (one-hot 1/2/3/4+; 0 counts as 1), is_ligand (0/1), residue
    type one-hot (zeros for ligand atoms), backbone (0/1), side chain (0/1).

    Message-passing edges: ``edge_attr`` is the kind one-hot (``covalent`` bond;
    ``intra`` non-bonded pair of one molecule within ``intra_cutoff``; ``interface``
    protein-ligand pair within ``interface_cutoff``); ``edge_dist`` the length (Å).

    Pairs: ``pair_dist`` (Å), ``pair_terms`` (Vina's :data:`VINA_TERMS`, unweighted),
    ``pair_flags`` (:data:`PAIR_FLAGS`, 0/1, with the ``*_cutoff`` distances below).

    Globals (``globals``, 1×len(global_names)): :data:`GLOBAL_NAMES`.
    """

    version: str = SCHEMA_VERSION
    xs_types: tuple[str, ...] = XS_TYPES
    polar_h_counts: tuple[str, ...] = ("0", "1", "2", "3+")
    heavy_degrees: tuple[str, ...] = ("1", "2", "3", "4+")
    residues: tuple[str, ...] = AMINO_ACIDS + ("other",)
    edge_kinds: tuple[str, ...] = ("covalent", "intra", "interface")
    pair_terms: tuple[str, ...] = VINA_TERMS
    vina_weights: tuple[float, ...] = VINA_WEIGHTS
    vina_rot_weight: float = VINA_ROT_WEIGHT
    pair_flags: tuple[str, ...] = PAIR_FLAGS
    pair_cutoff: float = VINA_CUTOFF
    intra_cutoff: float = 4.0
    interface_cutoff: float = 5.0
    hbond_cutoff: float = 3.5
    hydrophobic_cutoff: float = 4.5
    ionic_cutoff: float = 4.0
    aromatic_cutoff: float = 4.5
    cation_pi_cutoff: float = 4.5
    halogen_cutoff: float = 3.5
    metal_cutoff: float = 2.8
    global_names: tuple[str, ...] = GLOBAL_NAMES

    def __post_init__(self) -> None:
        if self.pair_cutoff > VINA_CUTOFF or tuple(self.pair_terms) != VINA_TERMS:
            raise ValueError(f"pair_cutoff must be at most Vina's {VINA_CUTOFF} Å and pair_terms Vina's {VINA_TERMS}")

    @property
    def node_feature_names(self) -> list[str]:
        """Column names of ``x``."""
        return (
            [f"xs={t}" for t in self.xs_types + ("other",)]
            + ["aromatic", "cationic", "anionic"]
            + [f"polar_h={n}" for n in self.polar_h_counts]
            + [f"heavy_degree={n}" for n in self.heavy_degrees]
            + ["is_ligand"]
            + [f"residue={r}" for r in self.residues]
            + ["backbone", "side_chain"]
        )

    @property
    def edge_feature_names(self) -> list[str]:
        """Column names of ``edge_attr``."""
        return [f"kind={k}" for k in self.edge_kinds]

    @property
    def node_dim(self) -> int:
        return len(self.node_feature_names)

    @property
    def edge_dim(self) -> int:
        return len(self.edge_kinds)

    @property
    def global_dim(self) -> int:
        return len(self.global_names)


DEFAULT_PAIR_SCHEMA = PairGraphSchema()


# --------------------------------------------------------------------------- receptor


@dataclass
class _Record:
    name: str
    residue: str
    chain: str
    number: int
    icode: str
    ad_type: str
    xyz: tuple[float, float, float]


def _parse_pdbqt(text: str, source: str) -> list[_Record]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")):
            continue
        try:
            xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
            ad = line[77:].split()[0]
            resnum = int(line[22:26])
        except (ValueError, IndexError) as exc:
            raise GraphError(f"receptor '{source}' line {number} is not a PDBQT atom record") from exc
        records.append(_Record(line[12:16].strip(), line[17:20].strip(), line[21], resnum, line[26], ad, xyz))
    if not records:
        raise GraphError(f"receptor '{source}' has no atom records")
    return records


class VinaReceptor:
    """A rigid receptor as AutoDock Vina sees it: atoms of a PDBQT, Vina's bonds and XS types.

    Attributes
    ----------
    xyz : numpy.ndarray
        Coordinates of every atom (N×3, Å), hydrogens included.
    ad_types, names, residues, chains : numpy.ndarray
        Per atom: AutoDock type, atom name, residue name, chain identifier (``str``).
    numbers : numpy.ndarray
        Residue numbers (int).
    xs : numpy.ndarray
        Index into :data:`XS_TYPES` per atom, -1 for hydrogens (not scored).
    heavy : numpy.ndarray
        Indices of the heavy atoms (``xs >= 0``), in file order.
    bonds : numpy.ndarray
        Covalent bonds between heavy atoms (M×2 atom indices), found as Vina finds them.
    polar_h, heavy_degree : numpy.ndarray
        Per atom: bonded polar hydrogens, bonded heavy atoms.
    aromatic : numpy.ndarray
        Per atom: in an aromatic ring (AutoDock type ``A``, or a His/Trp ring nitrogen).
    charge : numpy.ndarray
        Per atom: +1 cationic, -1 anionic, 0 neutral (see :meth:`charge_signs`).
    """

    def __init__(self, records: Sequence[_Record], source: str = "receptor") -> None:
        self.source = source
        self.xyz = np.array([r.xyz for r in records], dtype=np.float64).reshape(-1, 3)
        self.ad_types = np.array([r.ad_type for r in records], dtype=object)
        self.names = np.array([r.name for r in records], dtype=object)
        self.residues = np.array(
            [_RESIDUE_ALIASES.get(r.residue.upper(), r.residue.upper()) for r in records], dtype=object
        )
        self.raw_residues = np.array([r.residue for r in records], dtype=object)
        self.chains = np.array([r.chain for r in records], dtype=object)
        self.numbers = np.array([r.number for r in records], dtype=np.int64)
        self.icodes = np.array([r.icode for r in records], dtype=object)
        unknown = sorted({t for t in self.ad_types if t not in _AD_ELEMENT and t not in ("G0", "G1", "G2", "G3", "W")})
        if unknown:
            raise GraphError(f"receptor '{source}' has AutoDock types Vina cannot score: {unknown}")
        self._assign_bonds()
        neighbours: list[list[str]] = [[] for _ in range(len(records))]
        for i, j in self._all_bonds:
            neighbours[i].append(self.ad_types[j])
            neighbours[j].append(self.ad_types[i])
        xs = [xs_type(ad, nb) for ad, nb in zip(self.ad_types, neighbours)]
        self.xs = np.array([XS_TYPES.index(t) if t is not None else -1 for t in xs], dtype=np.int64)
        self.heavy = np.flatnonzero(self.xs >= 0)
        is_h = self.ad_types == "HD"
        hydrogen = np.isin(self.ad_types, ["H", "HD"])
        b = self._all_bonds
        self.polar_h = np.bincount(b[is_h[b[:, 1]], 0], minlength=len(records)) + np.bincount(
            b[is_h[b[:, 0]], 1], minlength=len(records)
        )
        heavy_bond = ~hydrogen[b[:, 0]] & ~hydrogen[b[:, 1]]
        self.bonds = b[heavy_bond]
        self.heavy_degree = np.bincount(self.bonds.ravel(), minlength=len(records))
        ring_n = np.array([n in _AROMATIC_RING_N.get(res, ()) for n, res in zip(self.names, self.residues)])
        self.aromatic = (self.ad_types == "A") | ring_n
        self.charge = self.charge_signs()
        self.tree = cKDTree(self.xyz[self.heavy])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pdbqt_string(cls, text: str, source: str = "receptor") -> VinaReceptor:
        """Parse the ATOM/HETATM records of a (rigid) receptor PDBQT."""
        return cls(_parse_pdbqt(text, source), source)

    @classmethod
    def from_pdbqt(cls, path: str | os.PathLike) -> VinaReceptor:
        """Read a receptor PDBQT file (the pipeline's ``receptor.pdbqt``)."""
        path = Path(path)
        if not path.is_file():
            raise GraphError(f"receptor PDBQT '{path}' does not exist")
        return cls.from_pdbqt_string(path.read_text(), str(path))

    def with_coordinates(self, xyz: np.ndarray) -> VinaReceptor:
        """A copy moved to new coordinates (same atoms, types and bonds; for rigid motions)."""
        other = object.__new__(VinaReceptor)
        other.__dict__.update(self.__dict__)
        other.xyz = np.asarray(xyz, dtype=np.float64).reshape(self.xyz.shape)
        other.tree = cKDTree(other.xyz[other.heavy])
        return other

    def _assign_bonds(self) -> None:
        """Vina's ``model::assign_bonds``: r < 1.1 (R_cov,i + R_cov,j), no atom closer to both."""
        cov = np.array([_AD_COVALENT.get(t, _METAL_COVALENT) for t in self.ad_types])
        tree = cKDTree(self.xyz)
        pairs = tree.query_pairs(1.1 * 2 * _METAL_COVALENT, output_type="ndarray")
        r2 = np.sum((self.xyz[pairs[:, 0]] - self.xyz[pairs[:, 1]]) ** 2, axis=1)
        close = r2 < (1.1 * (cov[pairs[:, 0]] + cov[pairs[:, 1]])) ** 2
        pairs, r2 = pairs[close], r2[close]
        keep = np.ones(len(pairs), dtype=bool)
        for n, ((i, j), rij2) in enumerate(zip(pairs, r2)):
            # a third atom closer to both ends than they are to each other means i-j is not a bond
            for k in tree.query_ball_point(self.xyz[i], np.sqrt(rij2)):
                if k != i and k != j and np.sum((self.xyz[k] - self.xyz[j]) ** 2) < rij2:
                    if np.sum((self.xyz[k] - self.xyz[i]) ** 2) < rij2:
                        keep[n] = False
                        break
        self._all_bonds = pairs[keep].astype(np.int64).reshape(-1, 2)

    # ------------------------------------------------------------------ chemistry
    def charge_signs(self) -> np.ndarray:
        """+1/-1/0 per atom, from residue templates and the polar hydrogens of the PDBQT.

        Cationic: an N with three polar hydrogens and one heavy neighbour (Lys NZ, the
        N-terminus, protonated amines of other residues), Arg NE/NH1/NH2, His ND1/NE2
        when both carry a hydrogen (HIP), metal ions. Anionic: Asp/Glu carboxylate O and
        a C-terminal O/OXT when neither O of the group carries a hydrogen.
        """
        n = len(self.xyz)
        charge = np.zeros(n, dtype=np.int64)
        metal = np.array([_AD_ELEMENT.get(t) == "Met" for t in self.ad_types])
        charge[metal] = 1
        is_n = np.array([_AD_ELEMENT.get(t) == "N" for t in self.ad_types])
        charge[is_n & (self.polar_h >= 3)] = 1
        residue_atoms: dict[tuple, dict[str, int]] = {}
        for k, key in enumerate(zip(self.chains, self.numbers, self.icodes, self.raw_residues)):
            residue_atoms.setdefault(key, {})[self.names[k]] = k
        for (_, _, _, raw), atoms in residue_atoms.items():
            res = _RESIDUE_ALIASES.get(raw.upper(), raw.upper())
            if res == "ARG":
                for name in ("NE", "NH1", "NH2"):
                    if name in atoms:
                        charge[atoms[name]] = 1
            if res == "HIS" and {"ND1", "NE2"} <= atoms.keys():
                if self.polar_h[atoms["ND1"]] > 0 and self.polar_h[atoms["NE2"]] > 0:
                    charge[atoms["ND1"]] = charge[atoms["NE2"]] = 1
            groups = [_CARBOXYLATES[res]] if res in _CARBOXYLATES else []
            if "OXT" in atoms:
                groups.append(("O", "OXT"))
            for group in groups:
                idx = [atoms[name] for name in group if name in atoms]
                if len(idx) == 2 and all(self.polar_h[i] == 0 for i in idx):
                    charge[idx] = -1
        return charge

    def residue_key(self, atom: int) -> str:
        """Residue of an atom as ProLIF writes residue ids: ``TYR334.A`` (``TYR334`` without a chain)."""
        chain = self.chains[atom].strip()
        label = f"{self.raw_residues[atom]}{self.numbers[atom]}{self.icodes[atom].strip()}"
        return f"{label}.{chain}" if chain else label

    def atoms_near(self, xyz: np.ndarray, cutoff: float) -> np.ndarray:
        """Sorted indices (into all atoms) of the heavy atoms within ``cutoff`` Å of any point of ``xyz``."""
        hits = self.tree.query_ball_point(np.asarray(xyz, dtype=np.float64), cutoff)
        found = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])) if len(hits) else []
        return self.heavy[np.asarray(found, dtype=np.int64)]


@lru_cache(maxsize=4)
def _cached_receptor(path: str, mtime_ns: int, size: int) -> VinaReceptor:
    return VinaReceptor.from_pdbqt(path)


def load_vina_receptor(path: str | os.PathLike) -> VinaReceptor:
    """The :class:`VinaReceptor` of a PDBQT file, read once per process (cached by path, mtime and size)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise GraphError(f"receptor PDBQT '{path}' does not exist")
    stat = path.stat()
    return _cached_receptor(str(path), stat.st_mtime_ns, stat.st_size)


# --------------------------------------------------------------------------- ligand


@dataclass(frozen=True)
class LigandTyping:
    """Vina's view of a ligand: AutoDock and XS types per RDKit atom, and its rotor count.

    ``xs`` is an index into :data:`XS_TYPES` per atom, -1 for hydrogens; ``n_rot`` is
    Vina's ``num_tors`` (:func:`vina_rotor_count`); ``heavy_neighbours`` lists each
    atom's non-hydrogen neighbours in Vina's bond graph: ring bonds that meeko opened in
    a macrocycle are absent, their glue pseudo-atoms (indices past the molecule's atoms)
    present.
    """

    ad_types: tuple[str, ...]
    xs: np.ndarray
    n_rot: float
    heavy_neighbours: tuple[tuple[int, ...], ...]


def _meeko_setup(mol: Chem.Mol):
    """meeko's setup of the molecule with the options ligand preparation uses (:func:`pipeline.ligands.to_pdbqt`)."""
    from meeko import MoleculePreparation

    from .ligands import rigid_macrocycles

    setup = MoleculePreparation(rigid_macrocycles=False).prepare(mol)[0]
    if rigid_macrocycles(setup):
        setup = MoleculePreparation(rigid_macrocycles=False, macrocycle_allow_A=True).prepare(mol)[0]
    return setup


def vina_rotor_count(heavy_neighbours: Sequence[Sequence[int]], rotatable: Sequence[tuple[int, int]]) -> float:
    """Vina's ``num_tors``: each torsion-tree bond counts 1/2 from each end whose other atom has >1 heavy neighbour.

    So a torsion between two non-terminal heavy atoms counts 1, one to a terminal heavy
    atom (an OH, an NH2) 1/2 (``conf_independent_inputs`` of Vina 1.2).
    """
    total = 0.0
    for i, j in rotatable:
        total += 0.5 * (len(heavy_neighbours[j]) > 1) + 0.5 * (len(heavy_neighbours[i]) > 1)
    return total


def ligand_typing(mol: Chem.Mol) -> LigandTyping:
    """Type a ligand pose as Vina types the PDBQT that meeko writes for it.

    Parameters
    ----------
    mol
        RDKit molecule with explicit hydrogens (a docked pose read with ``removeHs=False``).

    Raises
    ------
    GraphError
        When meeko cannot type the molecule or an atom has no XS type.
    """
    try:
        setup = _meeko_setup(mol)
    except Exception as exc:  # noqa: BLE001 -- meeko raises plain exceptions on untypable molecules
        raise GraphError(f"meeko cannot type the ligand for Vina: {type(exc).__name__}: {exc}") from exc
    n = mol.GetNumAtoms()
    removed = {frozenset(b) for b in setup.ring_closure_info.bonds_removed}
    ad = [setup.atoms[i].atom_type for i in range(n)]
    graph = [[j for j in setup.atoms[i].graph if frozenset((i, j)) not in removed] for i in range(n)]
    neighbour_types = [[setup.atoms[j].atom_type for j in graph[i]] for i in range(n)]
    xs = np.array(
        [-1 if (t := xs_type(ad[i], neighbour_types[i])) is None else XS_TYPES.index(t) for i in range(n)],
        dtype=np.int64,
    )
    # meeko's glue pseudo-atoms (indices >= n) are not hydrogens, so Vina counts them as heavy neighbours
    heavy = tuple(tuple(j for j in graph[i] if j >= n or mol.GetAtomWithIdx(j).GetAtomicNum() > 1) for i in range(n))
    rotatable = {tuple(sorted(pair)) for pair in setup.flexibility_model["rigid_body_connectivity"].values()}
    return LigandTyping(tuple(ad), xs, vina_rotor_count(heavy, sorted(rotatable)), heavy)


def ligand_charge_signs(mol: Chem.Mol) -> np.ndarray:
    """+1/-1/0 per atom of a ligand: formal charges, spread over their resonance partners.

    An atom with a formal charge keeps its sign, except the N+ and O- of nitro and
    N-oxide groups (internal zwitterions bonded to each other). A neutral O or S
    double-bonded to the atom that carries a charged O/S (carboxylate, sulfonate,
    phosphate) shares the negative sign; a neutral N on the same sp2 carbon as an N+
    (amidinium, guanidinium, protonated imidazole) shares the positive one.
    """
    charge = np.zeros(mol.GetNumAtoms(), dtype=np.int64)
    for atom in mol.GetAtoms():
        q = atom.GetFormalCharge()
        if q != 0 and not any(n.GetFormalCharge() * q < 0 for n in atom.GetNeighbors()):
            charge[atom.GetIdx()] = 1 if q > 0 else -1
    for atom in mol.GetAtoms():
        sign, z = charge[atom.GetIdx()], atom.GetAtomicNum()
        if sign == 0:
            continue
        for centre in atom.GetNeighbors():
            for bond in centre.GetBonds():
                partner = bond.GetOtherAtom(centre)
                if partner.GetIdx() == atom.GetIdx() or partner.GetFormalCharge() != 0:
                    continue
                anion = sign < 0 and z in (8, 16) and partner.GetAtomicNum() in (8, 16)
                anion = anion and bond.GetBondType() == Chem.BondType.DOUBLE
                cation = sign > 0 and z == 7 and partner.GetAtomicNum() == 7
                cation = (
                    cation and centre.GetAtomicNum() == 6 and centre.GetHybridization() == Chem.HybridizationType.SP2
                )
                if anion or cation:
                    charge[partner.GetIdx()] = sign
    return charge


# --------------------------------------------------------------------------- the graph


def _node_row(
    schema: PairGraphSchema,
    xs: int,
    aromatic: bool,
    charge: int,
    polar_h: int,
    heavy_degree: int,
    residue: str | None,
    backbone: bool,
) -> list[float]:
    xs_name = schema.xs_types[xs] if 0 <= xs < len(schema.xs_types) else "other"
    row = (
        _one_hot(schema.xs_types + ("other",), xs_name)
        + [float(aromatic), float(charge > 0), float(charge < 0)]
        + _one_hot(schema.polar_h_counts, str(polar_h) if polar_h < 3 else "3+")
        + _one_hot(schema.heavy_degrees, str(max(heavy_degree, 1)) if heavy_degree < 4 else "4+")
        + [float(residue is None)]
    )
    if residue is None:
        return row + [0.0] * (len(schema.residues) + 2)
    return row + _one_hot(schema.residues, residue) + [float(backbone), float(not backbone)]


def pair_flags(
    r: np.ndarray,
    lig: Mapping[str, np.ndarray],
    rec: Mapping[str, np.ndarray],
    schema: PairGraphSchema = DEFAULT_PAIR_SCHEMA,
) -> np.ndarray:
    """Interaction flags (P×len(PAIR_FLAGS), 0/1) of protein-ligand pairs at distances ``r``.

    ``lig`` and ``rec`` map ``xs``, ``charge``, ``aromatic``, ``halogen`` (Cl/Br/I) and
    ``metal`` to per-pair arrays of the ligand and the protein atom of each pair.
    """
    xs_l, xs_r = lig["xs"], rec["xs"]
    donor_l, donor_r = XS_DONOR[xs_l], XS_DONOR[xs_r]
    acc_l, acc_r = XS_ACCEPTOR[xs_l], XS_ACCEPTOR[xs_r]
    q_l, q_r = lig["charge"], rec["charge"]
    aro_l, aro_r = lig["aromatic"], rec["aromatic"]
    metal_l, metal_r = lig["metal"], rec["metal"]
    ligand_side = acc_l | (q_l < 0) | np.isin(xs_l, [XS_TYPES.index("S_P")])
    protein_side = acc_r | (q_r < 0) | np.isin(xs_r, [XS_TYPES.index("S_P")])
    flags = {
        "hbond": ((donor_l & acc_r) | (acc_l & donor_r)) & ~metal_l & ~metal_r & (r <= schema.hbond_cutoff),
        "hydrophobic": XS_HYDROPHOBIC[xs_l] & XS_HYDROPHOBIC[xs_r] & (r <= schema.hydrophobic_cutoff),
        "ionic": (q_l * q_r < 0) & (r <= schema.ionic_cutoff),
        "like_charge": (q_l * q_r > 0) & (r <= schema.ionic_cutoff),
        "aromatic": aro_l & aro_r & (r <= schema.aromatic_cutoff),
        "cation_pi": (((q_l > 0) & aro_r) | (aro_l & (q_r > 0))) & (r <= schema.cation_pi_cutoff),
        "halogen": lig["halogen"] & acc_r & (r <= schema.halogen_cutoff),
        "metal": ((metal_r & ligand_side) | (metal_l & protein_side)) & (r <= schema.metal_cutoff),
    }
    return np.stack([flags[name] for name in schema.pair_flags], axis=1).astype(np.float32).reshape(len(r), -1)


def _symmetric(src: np.ndarray, dst: np.ndarray, kind: int, dist: np.ndarray) -> tuple:
    return np.concatenate([src, dst]), np.concatenate([dst, src]), np.full(2 * len(src), kind), np.tile(dist, 2)


def pair_graph(
    ligand: Chem.Mol,
    receptor: VinaReceptor,
    schema: PairGraphSchema = DEFAULT_PAIR_SCHEMA,
    typing: LigandTyping | None = None,
) -> dict[str, np.ndarray | int]:
    """The pair graph of one pose, as NumPy arrays.

    Parameters
    ----------
    ligand
        The pose: RDKit molecule with a 3D conformer and explicit hydrogens (they decide
        donors; missing ones are added at computed positions).
    receptor
        The receptor in the pose's frame (:func:`load_vina_receptor` of the docking PDBQT).
    schema
        Feature layout and cutoffs.
    typing
        Vina's typing of ``ligand`` if already known; computed with meeko otherwise.

    Returns
    -------
    dict
        ``x`` (N×node_dim float32), ``edge_index`` (2×E int64), ``edge_attr`` (E×edge_dim
        float32), ``edge_dist`` (E float32), ``pair_index`` (2×P int64, ligand node then
        protein node), ``pair_dist`` (P float32), ``pair_terms`` (P×5 float32),
        ``pair_flags`` (P×F float32), ``pair_residue`` (P int64: index into
        ``residue_keys``), ``residue_keys`` (the pocket residues, as
        :meth:`VinaReceptor.residue_key` writes them), ``globals`` (1×global_dim float32), ``pos`` (N×3 float32, Å; for
        drawing and tests, no model reads it), ``n_ligand_atoms`` (int).

    Raises
    ------
    GraphError
        When the ligand has no conformer, no heavy atoms or atoms Vina cannot type, or no
        receptor heavy atom lies within ``pair_cutoff`` of it.
    """
    if ligand is None or ligand.GetNumConformers() == 0:
        raise GraphError("ligand has no conformer (no coordinates)")
    if any(atom.GetNumImplicitHs() for atom in ligand.GetAtoms()):
        ligand = Chem.AddHs(ligand, addCoords=True)
    typing = typing or ligand_typing(ligand)
    lig_heavy = np.array([a.GetIdx() for a in ligand.GetAtoms() if a.GetAtomicNum() > 1], dtype=np.int64)
    if len(lig_heavy) == 0:
        raise GraphError("ligand has no heavy atoms")
    xs_l = typing.xs[lig_heavy]
    if np.any(xs_l < 0):
        raise GraphError("a ligand heavy atom has no Vina XS type")
    lig_xyz = np.asarray(ligand.GetConformer().GetPositions(), dtype=np.float64)[lig_heavy]
    if not np.all(np.isfinite(lig_xyz)):
        raise GraphError("ligand coordinates are not finite")
    pocket = receptor.atoms_near(lig_xyz, schema.pair_cutoff)
    if len(pocket) == 0:
        raise GraphError(
            f"no receptor heavy atom within {schema.pair_cutoff} Å of the ligand (pose outside the pocket?)"
        )
    n_lig, pocket_xyz = len(lig_heavy), receptor.xyz[pocket]

    # nodes
    lig_charge = ligand_charge_signs(ligand)[lig_heavy]
    node_of_atom = {int(a): k for k, a in enumerate(lig_heavy)}
    rows = []
    for k, a in enumerate(lig_heavy):
        atom = ligand.GetAtomWithIdx(int(a))
        polar_h = sum(typing.ad_types[n.GetIdx()] == "HD" for n in atom.GetNeighbors())
        degree = sum(n.GetAtomicNum() > 1 for n in atom.GetNeighbors())
        rows.append(
            _node_row(schema, int(xs_l[k]), atom.GetIsAromatic(), int(lig_charge[k]), polar_h, degree, None, False)
        )
    for a in pocket:
        backbone = receptor.names[a] in _BACKBONE and receptor.residues[a] in AMINO_ACIDS
        rows.append(
            _node_row(
                schema,
                int(receptor.xs[a]),
                bool(receptor.aromatic[a]),
                int(receptor.charge[a]),
                int(receptor.polar_h[a]),
                int(receptor.heavy_degree[a]),
                str(receptor.residues[a]),
                backbone,
            )
        )
    x = np.array(rows, dtype=np.float32)

    # protein-ligand pairs (Vina's terms and the flags)
    dist = np.linalg.norm(lig_xyz[:, None, :] - pocket_xyz[None, :, :], axis=2)
    li, pj = np.nonzero(dist < schema.pair_cutoff)
    r = dist[li, pj]
    xs_r = receptor.xs[pocket]
    terms = vina_terms(r, xs_l[li], xs_r[pj])
    halogen = np.array([ligand.GetAtomWithIdx(int(a)).GetSymbol() in ("Cl", "Br", "I") for a in lig_heavy])
    lig_props = dict(
        xs=xs_l[li],
        charge=lig_charge[li],
        aromatic=np.array([ligand.GetAtomWithIdx(int(a)).GetIsAromatic() for a in lig_heavy])[li],
        halogen=halogen[li],
        metal=xs_l[li] == XS_TYPES.index("Met_D"),
    )
    rec_props = dict(
        xs=xs_r[pj],
        charge=receptor.charge[pocket][pj],
        aromatic=receptor.aromatic[pocket][pj],
        halogen=np.zeros(len(pj), dtype=bool),
        metal=xs_r[pj] == XS_TYPES.index("Met_D"),
    )
    flags = pair_flags(r, lig_props, rec_props, schema)
    residue_of_atom = [receptor.residue_key(a) for a in pocket]
    residue_keys = sorted(set(residue_of_atom), key=residue_of_atom.index)
    residue_index = np.array([residue_keys.index(k) for k in residue_of_atom], dtype=np.int64)

    # message-passing edges
    blocks = []
    lig_bonds = np.array(
        [
            (node_of_atom[b.GetBeginAtomIdx()], node_of_atom[b.GetEndAtomIdx()])
            for b in ligand.GetBonds()
            if b.GetBeginAtomIdx() in node_of_atom and b.GetEndAtomIdx() in node_of_atom
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    node_of = np.full(len(receptor.xyz), -1, dtype=np.int64)
    node_of[pocket] = n_lig + np.arange(len(pocket))
    keep = (node_of[receptor.bonds[:, 0]] >= 0) & (node_of[receptor.bonds[:, 1]] >= 0)
    pocket_bonds = node_of[receptor.bonds[keep]]
    all_xyz = np.concatenate([lig_xyz, pocket_xyz])
    bonded = {(int(i), int(j)) for i, j in np.concatenate([lig_bonds, pocket_bonds])}
    bonded |= {(j, i) for i, j in bonded}
    if len(bonded):
        cov = np.array(sorted(p for p in bonded if p[0] < p[1]), dtype=np.int64)
        blocks.append(
            _symmetric(cov[:, 0], cov[:, 1], 0, np.linalg.norm(all_xyz[cov[:, 0]] - all_xyz[cov[:, 1]], axis=1))
        )
    for offset, xyz in ((0, lig_xyz), (n_lig, pocket_xyz)):
        near = cKDTree(xyz).query_pairs(schema.intra_cutoff, output_type="ndarray") + offset
        near = np.array([p for p in near if (int(p[0]), int(p[1])) not in bonded], dtype=np.int64).reshape(-1, 2)
        if len(near):
            d = np.linalg.norm(all_xyz[near[:, 0]] - all_xyz[near[:, 1]], axis=1)
            blocks.append(_symmetric(near[:, 0], near[:, 1], 1, d))
    contact = r < schema.interface_cutoff
    if contact.any():
        blocks.append(_symmetric(li[contact], n_lig + pj[contact], 2, r[contact]))
    src = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    dst = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    kind = np.concatenate([b[2] for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    edge_dist = np.concatenate([b[3] for b in blocks]) if blocks else np.zeros(0)
    order = np.lexsort((dst, src))
    edge_attr = np.zeros((len(src), schema.edge_dim), dtype=np.float32)
    edge_attr[np.arange(len(src)), kind] = 1.0

    term_sums = terms.sum(axis=0)
    inter, score = vina_energy(term_sums, typing.n_rot)
    values = dict(zip(schema.pair_terms, term_sums))
    values.update(n_rot=typing.n_rot, vina_inter=inter, vina_score=score, n_heavy=float(n_lig))
    return dict(
        x=x,
        edge_index=np.stack([src[order], dst[order]]).astype(np.int64),
        edge_attr=edge_attr[order],
        edge_dist=edge_dist[order].astype(np.float32),
        pair_index=np.stack([li, n_lig + pj]).astype(np.int64),
        pair_dist=r.astype(np.float32),
        pair_terms=terms.astype(np.float32),
        pair_flags=flags,
        pair_residue=residue_index[pj],
        residue_keys=residue_keys,
        globals=np.array([[values[name] for name in schema.global_names]], dtype=np.float32),
        pos=all_xyz.astype(np.float32),
        n_ligand_atoms=n_lig,
    )


def without_protein(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The same pose with every protein node, protein edge and protein-ligand pair deleted.

    The ablation of the "does the score need the protein" check: the ligand's nodes and
    its own edges stay, the pair tensors become empty (0 rows). Works on the dicts of
    :func:`pair_graph` and on loaded ``Data`` objects (tensors).
    """
    n_lig = int(graph["n_ligand_atoms"])
    out = dict(graph.items()) if isinstance(graph, Mapping) else {k: graph[k] for k in graph.keys()}
    edge_index = out["edge_index"]
    keep = (edge_index[0] < n_lig) & (edge_index[1] < n_lig)
    out.update(
        x=out["x"][:n_lig],
        pos=out["pos"][:n_lig],
        edge_index=edge_index[:, keep],
        edge_attr=out["edge_attr"][keep],
        edge_dist=out["edge_dist"][keep],
    )
    for key in ("pair_index", "pair_dist", "pair_terms", "pair_flags", "pair_residue"):
        value = out[key]
        out[key] = value[:, :0] if key == "pair_index" else value[:0]
    return out


def to_data(graph: Mapping[str, Any]):
    """A ``torch_geometric.data.Data`` of a :func:`pair_graph` dict (arrays become tensors; other entries stay)."""
    import torch
    from torch_geometric.data import Data

    return Data(
        **{k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v for k, v in graph.items()}
    )


# --------------------------------------------------------------------------- files


def save_pair_graphs(
    path: str | os.PathLike, graphs: Sequence[Mapping[str, Any]], schema: PairGraphSchema = DEFAULT_PAIR_SCHEMA
) -> None:
    """Write pair graphs and their schema atomically (the format of :func:`pipeline.graphs.save_graphs`)."""
    save_graphs(path, graphs, schema)  # it only needs the schema's to_dict()


def load_pair_graphs(path: str | os.PathLike, expect: PairGraphSchema | None = None) -> tuple[PairGraphSchema, list]:
    """Read a file written by :func:`save_pair_graphs`.

    Returns the schema and a list of ``torch_geometric.data.Data`` (fields of
    :func:`pair_graph` plus plain entries such as ``id``, ``pose``). With ``expect``,
    raise :class:`GraphError` unless the file's schema equals it.
    """
    import torch
    from torch_geometric.data import Data

    payload = torch.load(path, weights_only=True)
    if payload.get("schema", {}).get("version", "").split("/")[0] != SCHEMA_VERSION.split("/")[0]:
        raise GraphError(
            f"graph file '{path}' is not a pair-graph file (schema {payload.get('schema', {}).get('version')})"
        )
    schema = PairGraphSchema.from_dict(payload["schema"])
    if expect is not None and schema != expect:
        raise GraphError(
            f"graph file '{path}' has schema {schema.version} with different features than expected "
            f"({expect.version}); featurize again with the scorer's settings"
        )
    return schema, [Data(**graph) for graph in payload["graphs"]]
