r"""A ligand-graph surrogate: an ensemble of small message-passing networks in PyG.

Each member reads the 2D graph of :func:`~.features.ligand_graph` and does

.. math::
    h_i^{0} = W_x x_i, \qquad
    m_{ij} = \mathrm{SiLU}(W_h h_j + W_e e_{ij} + b), \qquad
    h_i^{l+1} = \mathrm{LayerNorm}\big(h_i^{l} + \phi([h_i^{l}, \textstyle\sum_{j \in N(i)} m_{ij}])\big)

for ``layers`` rounds, then sums the atom states over the molecule (a docking score grows
with the ligand, so the readout keeps the size) and maps the sum to a score with a two-layer
MLP. The message is the one-layer form of :class:`pipeline.scoring.layers.InteractionConv`
(the complex scorer's layer): a second layer on every edge would double the work, and these
graphs have no contact edges whose geometry needs it.

All ``M`` members run in one pass (:mod:`.ensemble_layers`): node states are
``(atoms, M, channels)``; :class:`EnsembleBondConv` is a ``MessagePassing`` over the atom axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from .ensemble_layers import EnsembleLayerNorm, EnsembleLinear, EnsembleMLP
from .ensemble_training import TrainingSettings, fit_ensemble
from .feature_cache import FeatureCache
from .features import GRAPH_EDGE_DIM, GRAPH_NODE_DIM, LigandGraph, collate_graphs, ligand_graph
from .surrogate import Prediction

__all__ = ["EnsembleBondConv", "GraphEnsembleNet", "GraphEnsembleSurrogate"]


class EnsembleBondConv(MessagePassing):
    r"""One round of messages along bonds, for ``M`` members at once.

    :math:`m_{ij} = \mathrm{SiLU}(W_h h_j + W_e e_{ij} + b)`,
    :math:`h_i' = \mathrm{LayerNorm}(h_i + \phi([h_i, \sum_j m_{ij}]))`, with member-wise weights.

    Parameters
    ----------
    members
        Ensemble size ``M``.
    channels
        Size of the node states.
    edge_features
        Size of the raw bond features ``e_ij`` (shared by all members).
    """

    def __init__(self, members: int, channels: int, edge_features: int) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.neighbour = EnsembleLinear(members, channels, channels)
        self.bond = EnsembleLinear(members, edge_features, channels, shared_input=True)
        self.update_mlp = EnsembleMLP(members, 2 * channels, channels, channels)
        self.norm = EnsembleLayerNorm(members, channels)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """``h`` (N, M, C), ``edge_index`` (2, E; source row first), ``edge_attr`` (E, F) -> new ``h``."""
        # W_h h_j on the N atoms, then gathered onto the E (~2N) directed bonds
        m = self.propagate(edge_index, a=self.neighbour(h), e=self.bond(edge_attr))
        return self.norm(h + self.update_mlp(torch.cat([h, m], dim=-1)))

    def message(self, a_j: Tensor, e: Tensor) -> Tensor:
        """``m_ij = SiLU(W_h h_j + W_e e_ij + b)`` (the bias is the bond layer's)."""
        return torch.nn.functional.silu(a_j + e)


class GraphEnsembleNet(nn.Module):
    """``M`` ligand-graph networks: atom embedding, ``layers`` bond convolutions, sum readout, MLP head."""

    def __init__(self, members: int, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.members = members
        self.embed = EnsembleLinear(members, GRAPH_NODE_DIM, channels, shared_input=True)
        self.convs = nn.ModuleList(EnsembleBondConv(members, channels, GRAPH_EDGE_DIM) for _ in range(layers))
        self.head = EnsembleMLP(members, channels, channels, 1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """A collated batch (:func:`~.features.collate_graphs`) -> predictions ``(num_graphs, M)``."""
        h = self.embed(x)
        for conv in self.convs:
            h = conv(h, edge_index, edge_attr)
        pooled = scatter(h, batch, dim=0, dim_size=num_graphs, reduce="sum")
        return self.head(pooled).squeeze(-1)


class GraphEnsembleSurrogate:
    """An ensemble of ligand-graph networks, retrained from scratch each round.

    Parameters
    ----------
    channels, layers
        Width of the atom states and number of message-passing rounds.
    training
        Ensemble size and training recipe (:class:`~.ensemble_training.TrainingSettings`).
    cache
        Memoize graphs per SMILES (benchmarks only).
    device
        ``cpu`` or a CUDA device.
    predict_batch
        Molecules per forward pass when predicting.
    """

    name = "gnn"

    def __init__(
        self,
        channels: int = 64,
        layers: int = 3,
        training: TrainingSettings | None = None,
        cache: bool = False,
        device: str = "cpu",
        predict_batch: int = 1024,
    ) -> None:
        self.channels, self.layers = channels, layers
        self.training = training or TrainingSettings()
        self.device = torch.device(device)
        self.predict_batch = predict_batch
        self.cache = FeatureCache() if cache else None
        self._net: GraphEnsembleNet | None = None
        self._center, self._scale = 0.0, 1.0

    def _graphs(self, smiles: Sequence[str]) -> list[LigandGraph | None]:
        if self.cache is None:
            return [ligand_graph(s) for s in smiles]
        return self.cache.get(list(smiles), lambda missing: [ligand_graph(s) for s in missing])

    def _run(self, graphs: Sequence[LigandGraph]) -> Tensor:
        batch = collate_graphs(graphs)
        dev = self.device
        return self._net(
            torch.as_tensor(batch["x"], device=dev),
            torch.as_tensor(batch["edge_index"], device=dev),
            torch.as_tensor(batch["edge_attr"], device=dev),
            torch.as_tensor(batch["batch"], device=dev),
            batch["num_graphs"],
        )

    def fit(self, smiles: Sequence[str], scores: np.ndarray, seed: int) -> dict[str, Any]:
        """Train a fresh ensemble on the compounds with a graph and a finite score."""
        graphs = self._graphs(smiles)
        y = np.asarray(scores, dtype=np.float64)
        keep = [i for i, g in enumerate(graphs) if g is not None and np.isfinite(y[i])]
        train_graphs, y = [graphs[i] for i in keep], y[keep]
        self._center, self._scale = float(y.mean()), float(y.std()) or 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = GraphEnsembleNet(self.training.members, self.channels, self.layers).to(self.device)
            report = fit_ensemble(
                self._net,
                lambda idx: self._run([train_graphs[i] for i in idx]),
                (y - self._center) / self._scale,
                self.training,
                seed,
            )
        return {"n_train": len(keep), **report.__dict__}

    def predict(self, smiles: Sequence[str]) -> Prediction:
        """Ensemble mean and standard deviation (objective units); NaN for SMILES without a graph."""
        if self._net is None:
            raise RuntimeError("fit the surrogate before predicting")
        graphs = self._graphs(smiles)
        rows = [i for i, g in enumerate(graphs) if g is not None]
        mean = np.full(len(smiles), np.nan)
        sd = np.full(len(smiles), np.nan)
        outs = []
        with torch.no_grad():
            for start in range(0, len(rows), self.predict_batch):
                part = [graphs[i] for i in rows[start : start + self.predict_batch]]
                outs.append(self._run(part).cpu().numpy().astype(np.float64))
        if outs:
            members = np.concatenate(outs) * self._scale + self._center
            mean[rows], sd[rows] = members.mean(axis=1), members.std(axis=1)
        return Prediction(mean, sd)
