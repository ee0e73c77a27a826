"""Ligand-only features for the surrogates: Morgan count fingerprints and 2D molecular graphs.

A surrogate of the docking score sees only the ligand (the receptor is the same for the whole
screen), from its SMILES:

* :func:`morgan_counts` - folded Morgan (ECFP4-like, radius 2) *count* fingerprints as a sparse
  CSR matrix: a molecule sets ~50 of 2048 bits, so a chunk of 10^5 compounds is ~40 MB sparse
  instead of 800 MB dense, and the MLP's first layer reads only the set bits.
* :func:`ligand_graph` / :func:`collate_graphs` - heavy atoms as nodes and bonds as edges (both
  directions). Node features are the ligand columns of the complex graphs' atom features
  (:func:`pipeline.graphs.atom_features`: element, hybridization, aromaticity, charge sign,
  hydrogen count), plus the heavy-atom degree and ring membership, which a 2D graph has to say
  explicitly (a 3D complex graph has them from geometry). Edge features: bond type
  (:attr:`pipeline.graphs.GraphSchema.bond_types`), conjugated, in ring.

A SMILES RDKit cannot read gives no features: the fingerprint row is empty and ``valid`` is False;
the graph is ``None``. Callers turn that into a failure, never into a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.sparse as sp
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator

from ..graphs import DEFAULT_SCHEMA, atom_features
from .feature_cache import FeatureCache

__all__ = [
    "GRAPH_EDGE_DIM",
    "GRAPH_NODE_DIM",
    "LigandGraph",
    "FINGERPRINTS",
    "FingerprintFeatures",
    "collate_graphs",
    "fingerprint_counts",
    "ligand_graph",
    "morgan_counts",
    "parse_smiles",
]

# the complex-graph atom features up to and including "is_ligand" describe the atom itself; the
# residue and backbone columns after it are always zero for a ligand atom
_OWN_COLUMNS = DEFAULT_SCHEMA.node_feature_names.index("is_ligand")
_DEGREES = 5  # one-hot 0..4, the last also "more"
#: Node feature size of :func:`ligand_graph`.
GRAPH_NODE_DIM = _OWN_COLUMNS + _DEGREES + 1
#: Edge feature size of :func:`ligand_graph`.
GRAPH_EDGE_DIM = len(DEFAULT_SCHEMA.bond_types) + 2


def parse_smiles(smiles: str) -> Chem.Mol | None:
    """RDKit molecule of ``smiles`` or ``None`` (RDKit's own error log silenced: the caller reports it)."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    RDLogger.DisableLog("rdApp.*")
    try:
        return Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")


#: Fingerprint kinds of :func:`fingerprint_counts`.
FINGERPRINTS = ("morgan", "pair")


@cache
def _generator(kind: str, radius: int, n_bits: int):
    if kind == "morgan":
        return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    if kind == "pair":
        # MolPAL's "pair" featurizer: atom pairs 1 to radius + 1 bonds apart
        return rdFingerprintGenerator.GetAtomPairGenerator(minDistance=1, maxDistance=radius + 1, fpSize=n_bits)
    raise ValueError(f"unknown fingerprint {kind!r}; choose from {FINGERPRINTS}")


def fingerprint_counts(
    smiles: Sequence[str], kinds: Sequence[str] = ("morgan",), radius: int = 2, n_bits: int = 2048
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Folded count fingerprints of a list of SMILES, one block of ``n_bits`` columns per kind.

    Parameters
    ----------
    smiles
        SMILES strings.
    kinds
        ``morgan`` (circular, radius ``radius``; 2 ~ ECFP4) and/or ``pair`` (atom pairs 1 to
        ``radius + 1`` bonds apart), concatenated in this order.
    radius, n_bits
        Size of the environments, and folded length of each block.

    Returns
    -------
    (scipy.sparse.csr_matrix, numpy.ndarray)
        Counts, shape ``(len(smiles), len(kinds) * n_bits)``, float32; and a boolean ``valid``
        mask (False where RDKit cannot read the SMILES; that row is empty).
    """
    generators = [_generator(kind, radius, n_bits) for kind in kinds]
    indptr = [0]
    indices: list[int] = []
    counts: list[int] = []
    valid = np.zeros(len(smiles), dtype=bool)
    for i, smi in enumerate(smiles):
        mol = parse_smiles(smi)
        if mol is not None:
            for block, generator in enumerate(generators):
                bits = generator.GetCountFingerprint(mol).GetNonzeroElements()
                keys = sorted(bits)
                indices.extend(block * n_bits + k for k in keys)
                counts.extend(bits[k] for k in keys)
            valid[i] = True
        indptr.append(len(indices))
    matrix = sp.csr_matrix(
        (np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(smiles), len(generators) * n_bits),
    )
    return matrix, valid


def morgan_counts(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> tuple[sp.csr_matrix, np.ndarray]:
    """Folded Morgan count fingerprints (:func:`fingerprint_counts` with ``kinds=("morgan",)``)."""
    return fingerprint_counts(smiles, ("morgan",), radius, n_bits)


class FingerprintFeatures:
    """Count fingerprints (:func:`fingerprint_counts`) of lists of SMILES, optionally memoized per SMILES.

    The featurizer every fingerprint surrogate shares: the forest and the MLPs through
    :meth:`matrix`, the GP through the counts themselves.
    """

    def __init__(self, kinds: Sequence[str], radius: int, n_bits: int, cache: bool) -> None:
        self.kinds, self.radius, self.n_bits = tuple(kinds), radius, n_bits
        self.width = len(self.kinds) * n_bits
        self.cache = FeatureCache() if cache else None

    def _rows(self, smiles: list[str]) -> list[tuple[np.ndarray, np.ndarray] | None]:
        matrix, valid = fingerprint_counts(smiles, self.kinds, self.radius, self.n_bits)
        return [
            (
                matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]],
                matrix.data[matrix.indptr[i] : matrix.indptr[i + 1]],
            )
            if ok
            else None
            for i, ok in enumerate(valid)
        ]

    def __call__(self, smiles: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """(counts CSR ``(n, len(kinds) * n_bits)`` float32, valid mask)."""
        if self.cache is None:
            return fingerprint_counts(list(smiles), self.kinds, self.radius, self.n_bits)
        rows = self.cache.get(list(smiles), self._rows)
        valid = np.array([r is not None for r in rows], dtype=bool)
        lengths = [len(r[0]) if r is not None else 0 for r in rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        present = [r for r in rows if r is not None]
        indices = np.concatenate([r[0] for r in present]) if present else np.empty(0, np.int32)
        data = np.concatenate([r[1] for r in present]) if present else np.empty(0, np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.width)), valid

    def matrix(self, smiles: Sequence[str], values: str) -> tuple[sp.csr_matrix, np.ndarray]:
        """Model inputs: ``values`` ``bits`` (present/absent, the forest) or ``log`` (``log(1 + count)``, the MLPs)."""
        counts, valid = self(smiles)
        counts = counts.copy()
        counts.data = np.ones_like(counts.data) if values == "bits" else np.log1p(counts.data)
        return counts, valid

    def training_rows(self, smiles: Sequence[str], scores: np.ndarray, values: str) -> tuple[sp.csr_matrix, np.ndarray]:
        """:meth:`matrix` and the scores of the compounds with features and a finite score."""
        X, valid = self.matrix(smiles, values)
        y = np.asarray(scores, dtype=np.float64)
        keep = valid & np.isfinite(y)
        return X[keep], y[keep]


@dataclass(frozen=True)
class LigandGraph:
    """One molecule as arrays: ``x`` (atoms × :data:`GRAPH_NODE_DIM`), ``edge_index`` (2 × bonds·2), ``edge_attr``."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])


def _bond_row(bond: Chem.Bond) -> list[float]:
    names = DEFAULT_SCHEMA.bond_types
    name = "AROMATIC" if bond.GetIsAromatic() else str(bond.GetBondType())
    row = [0.0] * len(names)
    row[names.index(name) if name in names else names.index("SINGLE")] = 1.0
    return row + [float(bond.GetIsConjugated()), float(bond.IsInRing())]


def ligand_graph(smiles: str) -> LigandGraph | None:
    """The 2D graph of one SMILES (heavy atoms, bonds both ways), or ``None`` if RDKit cannot read it."""
    mol = parse_smiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    rows = []
    for atom in mol.GetAtoms():
        degree = [0.0] * _DEGREES
        degree[min(atom.GetDegree(), _DEGREES - 1)] = 1.0
        own = atom_features(atom, DEFAULT_SCHEMA, is_ligand=True)[:_OWN_COLUMNS]
        rows.append(own + degree + [float(atom.IsInRing())])
    src, dst, attrs = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        row = _bond_row(bond)
        src += [i, j]
        dst += [j, i]
        attrs += [row, row]
    return LigandGraph(
        x=np.asarray(rows, dtype=np.float32),
        edge_index=np.asarray([src, dst], dtype=np.int64).reshape(2, -1),
        edge_attr=np.asarray(attrs, dtype=np.float32).reshape(-1, GRAPH_EDGE_DIM),
    )


def collate_graphs(graphs: Sequence[LigandGraph]) -> dict[str, np.ndarray]:
    """Concatenate graphs into one disconnected graph (a PyG-style batch), without PyG's per-object overhead.

    Returns
    -------
    dict
        ``x``, ``edge_index`` (node indices offset per graph), ``edge_attr`` and ``batch`` (graph
        index of every node), as NumPy arrays; ``num_graphs``.
    """
    sizes = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return {
        "x": np.concatenate([g.x for g in graphs]),
        "edge_index": np.concatenate([g.edge_index + o for g, o in zip(graphs, offsets)], axis=1),
        "edge_attr": np.concatenate([g.edge_attr for g in graphs]),
        "batch": np.repeat(np.arange(len(graphs), dtype=np.int64), sizes),
        "num_graphs": len(graphs),
    }
