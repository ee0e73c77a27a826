"""Baselines a structure-based scorer has to beat, evaluated on the same held-out compounds.

* **Docking score alone**: the graph's ``docking_score`` global feature, negated so that
  higher = better (best pose per compound).
* **Ligand only**: a small MLP on the ligand's Morgan fingerprint (radius 2, 2048 bits);
  it never sees the protein, so whatever it achieves is learnable from ligand
  chemistry alone (analogue bias of the assay). A structure-based model that does
  not beat it has not shown that the structure helps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from torch import Tensor, nn

from ..graphs import GraphSchema
from .layers import mlp


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan (ECFP-like) bit vectors, shape (len(smiles), n_bits), float32; unreadable SMILES give zeros."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.float32)
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is not None:
            out[i] = generator.GetFingerprintAsNumPy(mol)
    return out


class FingerprintMLP(nn.Module):
    """Ligand-only model: fingerprint -> ``Linear-SiLU-Dropout-Linear`` -> one number.

    The output is the standardized value (regression; ``target_mean``/``target_std``
    buffers undo it) or a logit (classification).
    """

    def __init__(self, n_bits: int = 2048, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = mlp(n_bits, hidden, 1, dropout)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, fingerprints: Tensor) -> Tensor:
        """Fingerprints (B × n_bits) -> raw output (B,)."""
        return self.net(fingerprints).squeeze(-1)


def docking_scores(graphs: Sequence, schema: GraphSchema) -> np.ndarray:
    """The ``docking_score`` global of each graph (kcal/mol; NaN where the mask says unknown)."""
    k = schema.global_names.index("docking_score")
    out = np.full(len(graphs), np.nan)
    for i, graph in enumerate(graphs):
        if float(graph.globals_mask.reshape(-1)[k]) > 0.5:
            out[i] = float(graph.globals.reshape(-1)[k])
    return out


def linear_calibration(x_train: np.ndarray, y_train: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ≈ a x + b`` over finite pairs (``(nan, nan)`` with fewer than 2 distinct x)."""
    keep = np.isfinite(x_train) & np.isfinite(y_train)
    x, y = x_train[keep], y_train[keep]
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)
