"""Protein-ligand complex graphs for PyTorch Geometric.

One graph per pose. Nodes are the ligand's heavy atoms followed by the protein's
heavy atoms within ``pocket_cutoff`` of any ligand heavy atom (in the order of
the ligand's and the receptor's atom indices). Hydrogens are not nodes: their
count is a node feature. Docking and MD place them differently (meeko rebuilds
them, refinement lets them move), they would triple the graph, and the heavy
atoms plus the hydrogen count already say who can donate a hydrogen bond.

Edges (both directions, sorted by source then target node):

* covalent bonds within the ligand and within the pocket (bond type one-hot);
* protein-ligand contacts: heavy-atom pairs closer than ``contact_cutoff``, carrying
  the interaction flags that the fingerprint gives the protein atom's residue
  (booleans for a docked pose, persistence fractions for a refined one).

Every edge carries a Gaussian expansion (RBF) of its length. Only distances enter
the features, so a graph does not change under a rigid rotation and translation
of the complex; ``pos`` is stored for drawing only and no model should read it.

Each complex also has a global feature vector (docking score, MD metrics, a
persistence summary) with a mask: 1 where the value is known, 0 where it is
missing (the value is then 0).

:class:`GraphSchema` is the one definition of every feature's name, order and
size; it is written into every graph file, and :func:`load_graphs` hands it back
with the graphs. Files hold only tensors, strings and numbers, so they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from rdkit import Chem

from .config import schema_field
from .errors import VscreenError
from .interactions import INTERACTION_TYPES, Receptor, residue_flags

#: Version of the graph layout; bump it whenever a feature is added, removed or reordered.
SCHEMA_VERSION = "vscreen-graph/1"

AMINO_ACIDS = (
    "ALA",
    "ARG",
    "ASN",
    "ASP",
    "CYS",
    "GLN",
    "GLU",
    "GLY",
    "HIS",
    "ILE",
    "LEU",
    "LYS",
    "MET",
    "PHE",
    "PRO",
    "SER",
    "THR",
    "TRP",
    "TYR",
    "VAL",
)
#: Protonation and force-field variants of the standard amino acids.
_RESIDUE_ALIASES = {
    "HID": "HIS",
    "HIE": "HIS",
    "HIP": "HIS",
    "HSD": "HIS",
    "HSE": "HIS",
    "HSP": "HIS",
    "CYX": "CYS",
    "CYM": "CYS",
    "ASH": "ASP",
    "GLH": "GLU",
    "LYN": "LYS",
    "MSE": "MET",
}
_BACKBONE = frozenset({"N", "CA", "C", "O", "OXT"})
_METALS = frozenset({"Li", "Na", "K", "Mg", "Ca", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd", "Hg"})
_HYBRIDIZATION = {
    Chem.HybridizationType.SP: "SP",
    Chem.HybridizationType.SP2: "SP2",
    Chem.HybridizationType.SP3: "SP3",
    Chem.HybridizationType.SP3D: "SP3D",
    Chem.HybridizationType.SP3D2: "SP3D2",
}

#: Global features, in order. Units: kcal/mol for energies and scores, Å for RMSDs.
GLOBAL_NAMES = (
    "docking_score",
    "rmsd_mean",
    "rmsd_max",
    "rmsd_final",
    "pocket_backbone_rmsd",
    "interaction_energy",
    "persistence_mean",
    "n_persistent",
)


class GraphError(VscreenError, ValueError):
    """A complex that cannot be turned into a graph; the message is a failure reason."""


class SchemaSerialization:
    """``to_dict``/``from_dict`` of a frozen dataclass schema with derived names and sizes.

    Shared by :class:`GraphSchema` and :class:`pipeline.pair_graphs.PairGraphSchema`: a graph
    file stores its schema as plain data, and a scorer refuses graphs of another schema.
    """

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, strings, numbers) with the fields plus the derived names and sizes."""
        out: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        out.update(
            node_feature_names=self.node_feature_names,
            edge_feature_names=self.edge_feature_names,
            node_dim=self.node_dim,
            edge_dim=self.edge_dim,
            global_dim=self.global_dim,
        )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Inverse of :meth:`to_dict` (derived entries are ignored)."""
        kwargs = {}
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
                kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


@dataclass(frozen=True)
class GraphSchema(SchemaSerialization):
    """Names, order and sizes of every node, edge and global feature.

    Node features (one-hots unless said): element, hybridization, aromatic (0/1),
    formal charge sign, hydrogen count, is_ligand (0/1), residue type (zeros for a
    ligand atom), backbone (0/1), side chain (0/1).
    Edge features: kind (covalent | contact), bond type (zeros for contacts),
    ``rbf_size`` Gaussians of the length centred on ``linspace(0, contact_cutoff)``,
    interaction flags of the protein residue (zeros for covalent edges).
    """

    version: str = SCHEMA_VERSION
    elements: tuple[str, ...] = ("C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "metal", "other")
    hybridizations: tuple[str, ...] = ("SP", "SP2", "SP3", "SP3D", "SP3D2", "other")
    charges: tuple[str, ...] = ("negative", "neutral", "positive")
    hydrogen_counts: tuple[str, ...] = ("0", "1", "2", "3+")
    residues: tuple[str, ...] = AMINO_ACIDS + ("other",)
    edge_kinds: tuple[str, ...] = ("covalent", "contact")
    bond_types: tuple[str, ...] = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
    interactions: tuple[str, ...] = INTERACTION_TYPES
    rbf_size: int = schema_field("featurize", "rbf_size")
    pocket_cutoff: float = schema_field("featurize", "pocket_cutoff")
    contact_cutoff: float = schema_field("featurize", "contact_cutoff")
    hydrogens: bool = False
    global_names: tuple[str, ...] = GLOBAL_NAMES

    # ------------------------------------------------------------------ names and sizes
    @property
    def node_feature_names(self) -> list[str]:
        """Column names of ``x``."""
        return (
            [f"element={e}" for e in self.elements]
            + [f"hybridization={h}" for h in self.hybridizations]
            + ["aromatic"]
            + [f"charge={c}" for c in self.charges]
            + [f"num_h={n}" for n in self.hydrogen_counts]
            + ["is_ligand"]
            + [f"residue={r}" for r in self.residues]
            + ["backbone", "side_chain"]
        )

    @property
    def edge_feature_names(self) -> list[str]:
        """Column names of ``edge_attr``."""
        return (
            [f"kind={k}" for k in self.edge_kinds]
            + [f"bond={b}" for b in self.bond_types]
            + [f"rbf={c:.3f}" for c in self.rbf_centers]
            + [f"interaction={i}" for i in self.interactions]
        )

    @property
    def node_dim(self) -> int:
        return len(self.node_feature_names)

    @property
    def edge_dim(self) -> int:
        return len(self.edge_feature_names)

    @property
    def global_dim(self) -> int:
        return len(self.global_names)

    @property
    def rbf_centers(self) -> np.ndarray:
        return np.linspace(0.0, self.contact_cutoff, self.rbf_size)


DEFAULT_SCHEMA = GraphSchema()


# --------------------------------------------------------------------------- node features


def _one_hot(choices: Sequence[str], value: str) -> list[float]:
    out = [0.0] * len(choices)
    out[choices.index(value) if value in choices else len(choices) - 1] = 1.0
    return out


def _element(atom: Chem.Atom, schema: GraphSchema) -> str:
    symbol = atom.GetSymbol()
    if symbol in schema.elements:
        return symbol
    return "metal" if symbol in _METALS else "other"


def _residue_name(atom: Chem.Atom) -> str:
    info = atom.GetPDBResidueInfo()
    name = info.GetResidueName().strip().upper() if info is not None else ""
    return _RESIDUE_ALIASES.get(name, name)


def atom_features(atom: Chem.Atom, schema: GraphSchema, is_ligand: bool) -> list[float]:
    """Feature vector of one heavy atom, in the order of :attr:`GraphSchema.node_feature_names`."""
    charge = atom.GetFormalCharge()
    n_h = atom.GetTotalNumHs(includeNeighbors=True)
    hyb = _HYBRIDIZATION.get(atom.GetHybridization(), "other")
    row = (
        _one_hot(schema.elements, _element(atom, schema))
        + _one_hot(schema.hybridizations, hyb)
        + [float(atom.GetIsAromatic())]
        + _one_hot(schema.charges, "negative" if charge < 0 else "positive" if charge > 0 else "neutral")
        + _one_hot(schema.hydrogen_counts, str(n_h) if n_h < 3 else "3+")
        + [float(is_ligand)]
    )
    if is_ligand:
        return row + [0.0] * (len(schema.residues) + 2)
    info = atom.GetPDBResidueInfo()
    backbone = info is not None and info.GetName().strip() in _BACKBONE
    return row + _one_hot(schema.residues, _residue_name(atom)) + [float(backbone), float(not backbone)]


def _bond_type(bond: Chem.Bond, schema: GraphSchema) -> int:
    name = "AROMATIC" if bond.GetIsAromatic() else str(bond.GetBondType())
    return schema.bond_types.index(name) if name in schema.bond_types else schema.bond_types.index("SINGLE")


@dataclass
class _ProteinTables:
    """Per receptor and schema, computed once: heavy-atom features and heavy-heavy bonds."""

    is_heavy: np.ndarray  # bool, per receptor atom
    features: np.ndarray  # float32, per receptor atom (zeros for hydrogens)
    bonds: np.ndarray  # int64 (M, 2), heavy-heavy
    bond_types: np.ndarray  # int64 (M,)
    residue_keys: np.ndarray = field(repr=False)


_TABLES: weakref.WeakKeyDictionary[Receptor, dict[GraphSchema, _ProteinTables]] = weakref.WeakKeyDictionary()


def _protein_tables(receptor: Receptor, schema: GraphSchema) -> _ProteinTables:
    per_schema = _TABLES.setdefault(receptor, {})
    if schema not in per_schema:
        mol = receptor.molecule
        is_heavy = np.array([a.GetAtomicNum() > 1 for a in mol.GetAtoms()], dtype=bool)
        features = np.zeros((mol.GetNumAtoms(), schema.node_dim), dtype=np.float32)
        for atom in mol.GetAtoms():
            if is_heavy[atom.GetIdx()]:
                features[atom.GetIdx()] = atom_features(atom, schema, is_ligand=False)
        pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), _bond_type(b, schema)) for b in mol.GetBonds()]
        pairs = [p for p in pairs if is_heavy[p[0]] and is_heavy[p[1]]]
        arr = np.array(pairs, dtype=np.int64).reshape(-1, 3)
        per_schema[schema] = _ProteinTables(is_heavy, features, arr[:, :2], arr[:, 2], receptor.residue_keys)
    return per_schema[schema]


# --------------------------------------------------------------------------- the graph


def rbf(distances: np.ndarray, schema: GraphSchema) -> np.ndarray:
    """Gaussian expansion of distances (Å): ``exp(-((d - mu_k) / w)^2)``, ``w`` the centre spacing."""
    centers = schema.rbf_centers
    width = centers[1] - centers[0] if len(centers) > 1 else 1.0
    return np.exp(-(((np.asarray(distances, dtype=np.float64)[:, None] - centers[None, :]) / width) ** 2))


def global_features(
    metrics: Mapping[str, float | None] | None, schema: GraphSchema = DEFAULT_SCHEMA
) -> tuple[np.ndarray, np.ndarray]:
    """Global feature vector and its mask (1 known, 0 missing), each of shape ``(1, global_dim)``.

    ``metrics`` maps names of :attr:`GraphSchema.global_names` to values; missing
    names, ``None`` and NaN count as missing. Unknown names are ignored.
    """
    values = np.zeros((1, schema.global_dim), dtype=np.float32)
    mask = np.zeros((1, schema.global_dim), dtype=np.float32)
    for k, name in enumerate(schema.global_names):
        value = (metrics or {}).get(name)
        if value is not None and math.isfinite(float(value)):
            values[0, k], mask[0, k] = float(value), 1.0
    return values, mask


def _edge_block(
    src: np.ndarray,
    dst: np.ndarray,
    kind: int,
    bond: np.ndarray | None,
    dist: np.ndarray,
    flags: np.ndarray | None,
    schema: GraphSchema,
) -> tuple[np.ndarray, np.ndarray]:
    n_kind, n_bond, n_int = len(schema.edge_kinds), len(schema.bond_types), len(schema.interactions)
    attr = np.zeros((len(src), schema.edge_dim), dtype=np.float64)
    attr[:, kind] = 1.0
    if bond is not None:
        attr[np.arange(len(src)), n_kind + bond] = 1.0
    attr[:, n_kind + n_bond : n_kind + n_bond + schema.rbf_size] = rbf(dist, schema)
    if flags is not None:
        attr[:, -n_int:] = flags
    return np.stack([src, dst]), attr


def complex_graph(
    ligand: Chem.Mol,
    receptor: Receptor,
    fingerprint: Mapping[str, float] | None = None,
    metrics: Mapping[str, float | None] | None = None,
    schema: GraphSchema = DEFAULT_SCHEMA,
) -> dict[str, np.ndarray | int]:
    """The graph of one protein-ligand complex, as NumPy arrays.

    Parameters
    ----------
    ligand
        The pose: RDKit molecule with a 3D conformer (hydrogens explicit or not).
    receptor
        The protein or pocket in the pose's frame of reference.
    fingerprint
        ``RESIDUE:Interaction`` -> bool or fraction (from :mod:`pipeline.interactions`);
        sets the interaction flags of contact edges. ``None``: all flags 0.
    metrics
        Values for :attr:`GraphSchema.global_names`; missing ones are masked.
    schema
        Feature layout; :data:`DEFAULT_SCHEMA` unless the cutoffs were configured.

    Returns
    -------
    dict
        ``x`` (N×node_dim float32), ``edge_index`` (2×E int64), ``edge_attr``
        (E×edge_dim float32), ``globals`` and ``globals_mask`` (1×global_dim float32),
        ``pos`` (N×3 float32, Å, for drawing only), ``n_ligand_atoms`` (int): the
        first ``n_ligand_atoms`` nodes are the ligand's.

    Raises
    ------
    GraphError
        When the ligand has no conformer or no heavy atoms, or no protein atom lies
        within ``pocket_cutoff`` of it.
    """
    if ligand is None or ligand.GetNumConformers() == 0:
        raise GraphError("ligand has no conformer (no coordinates)")
    lig_heavy = np.array([a.GetIdx() for a in ligand.GetAtoms() if a.GetAtomicNum() > 1], dtype=np.int64)
    if len(lig_heavy) == 0:
        raise GraphError("ligand has no heavy atoms")
    lig_xyz = np.asarray(ligand.GetConformer().GetPositions(), dtype=np.float64)[lig_heavy]
    if not np.all(np.isfinite(lig_xyz)):
        raise GraphError("ligand coordinates are not finite")
    tables = _protein_tables(receptor, schema)
    near = receptor.atoms_near(lig_xyz, schema.pocket_cutoff)
    pocket = near[tables.is_heavy[near]]
    if len(pocket) == 0:
        raise GraphError(
            f"no protein heavy atom within {schema.pocket_cutoff} Å of the ligand (pose outside the pocket?)"
        )
    n_lig = len(lig_heavy)
    pocket_xyz = receptor.xyz[pocket]

    # node features
    lig_index = {int(a): k for k, a in enumerate(lig_heavy)}
    x_lig = np.array(
        [atom_features(ligand.GetAtomWithIdx(int(a)), schema, is_ligand=True) for a in lig_heavy], dtype=np.float32
    )
    x = np.concatenate([x_lig, tables.features[pocket]])

    blocks = []
    # ligand bonds
    lig_bonds = [
        (lig_index[b.GetBeginAtomIdx()], lig_index[b.GetEndAtomIdx()], _bond_type(b, schema))
        for b in ligand.GetBonds()
        if b.GetBeginAtomIdx() in lig_index and b.GetEndAtomIdx() in lig_index
    ]
    if lig_bonds:
        lb = np.array(lig_bonds, dtype=np.int64)
        d = np.linalg.norm(lig_xyz[lb[:, 0]] - lig_xyz[lb[:, 1]], axis=1)
        blocks.append(_edge_block(lb[:, 0], lb[:, 1], 0, lb[:, 2], d, None, schema))
    # pocket bonds
    node_of = np.full(len(tables.is_heavy), -1, dtype=np.int64)
    node_of[pocket] = n_lig + np.arange(len(pocket))
    keep = (node_of[tables.bonds[:, 0]] >= 0) & (node_of[tables.bonds[:, 1]] >= 0)
    if keep.any():
        pb, pt = tables.bonds[keep], tables.bond_types[keep]
        d = np.linalg.norm(receptor.xyz[pb[:, 0]] - receptor.xyz[pb[:, 1]], axis=1)
        blocks.append(_edge_block(node_of[pb[:, 0]], node_of[pb[:, 1]], 0, pt, d, None, schema))
    # protein-ligand contacts
    dist = np.linalg.norm(lig_xyz[:, None, :] - pocket_xyz[None, :, :], axis=2)
    li, pj = np.nonzero(dist <= schema.contact_cutoff)
    if len(li):
        per_residue = residue_flags(fingerprint or {}, schema.interactions)
        zero = np.zeros(len(schema.interactions), dtype=np.float32)
        flags = np.array([per_residue.get(key, zero) for key in tables.residue_keys[pocket[pj]]]).reshape(len(li), -1)
        blocks.append(_edge_block(li, n_lig + pj, 1, None, dist[li, pj], flags, schema))

    edge_index = np.concatenate([b[0] for b in blocks], axis=1) if blocks else np.zeros((2, 0), dtype=np.int64)
    edge_attr = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros((0, schema.edge_dim))
    # both directions, then a canonical order
    edge_index = np.concatenate([edge_index, edge_index[::-1]], axis=1)
    edge_attr = np.concatenate([edge_attr, edge_attr])
    order = np.lexsort((edge_index[1], edge_index[0]))
    values, mask = global_features(metrics, schema)
    return dict(
        x=x,
        edge_index=np.ascontiguousarray(edge_index[:, order]),
        edge_attr=edge_attr[order].astype(np.float32),
        globals=values,
        globals_mask=mask,
        pos=np.concatenate([lig_xyz, pocket_xyz]).astype(np.float32),
        n_ligand_atoms=n_lig,
    )


# --------------------------------------------------------------------------- files


_TENSOR_KEYS = ("x", "edge_index", "edge_attr", "globals", "globals_mask", "pos")


def save_graphs(
    path: str | os.PathLike, graphs: Sequence[Mapping[str, Any]], schema: GraphSchema = DEFAULT_SCHEMA
) -> None:
    """Write graphs and their schema atomically with ``torch.save``.

    The file holds ``{"schema": schema.to_dict(), "graphs": [dict, ...]}``; each
    graph dict has the tensors of :func:`complex_graph` (NumPy arrays are converted)
    plus plain values such as ``id``, ``pose``, ``source``. Nothing but tensors,
    strings and numbers, so ``torch.load(path, weights_only=True)`` reads it.
    """
    import torch

    from .io import atomic_path

    out = []
    for graph in graphs:
        item = {}
        for key, value in graph.items():
            if isinstance(value, np.ndarray):
                item[key] = torch.from_numpy(np.ascontiguousarray(value))
            elif isinstance(value, np.generic):
                item[key] = value.item()
            else:
                item[key] = value
        out.append(item)
    with atomic_path(path) as tmp:
        torch.save({"schema": schema.to_dict(), "graphs": out}, tmp)


def load_graphs(path: str | os.PathLike, expect: GraphSchema | None = None) -> tuple[GraphSchema, list]:
    """Read a graph file written by :func:`save_graphs`.

    Parameters
    ----------
    path
        The ``.pt`` file.
    expect
        If given, raise :class:`GraphError` unless the file's schema equals it (a
        scorer trained on one layout must not read another).

    Returns
    -------
    (GraphSchema, list[torch_geometric.data.Data])
        Each ``Data`` has ``x``, ``edge_index``, ``edge_attr``, ``globals``,
        ``globals_mask``, ``pos`` and the plain entries (``id``, ``pose``, ``source``,
        ``n_ligand_atoms``).
    """
    import torch
    from torch_geometric.data import Data

    payload = torch.load(path, weights_only=True)
    schema = GraphSchema.from_dict(payload["schema"])
    if expect is not None and schema != expect:
        raise GraphError(
            f"graph file '{path}' has schema {schema.version} with different features than expected "
            f"({expect.version}); featurize again with the scorer's settings"
        )
    return schema, [Data(**graph) for graph in payload["graphs"]]
