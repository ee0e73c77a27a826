"""The complex scorer: a message-passing network over protein-ligand graphs with two heads.

Input: a :class:`torch_geometric.data.Batch` of graphs from
:mod:`pipeline.graphs` (``x``, ``edge_index``, ``edge_attr``, ``globals``,
``globals_mask``). Coordinates (``pos``) are never read, so the score cannot change
when the complex is rotated or translated; every reduction is a sum or mean, so it
cannot change when nodes or edges are listed in another order.

Architecture (sizes from the :class:`~pipeline.graphs.GraphSchema`):

1. node embedding ``Linear(node_dim, hidden)``; edge embedding ``Linear(edge_dim, hidden) + SiLU``;
2. ``layers`` x :class:`~pipeline.scoring.layers.InteractionConv`;
3. readout: the pools of :attr:`ModelConfig.pooling` (sum or mean of node states
   over the ligand's atoms and/or all atoms; the ligand is the ``is_ligand`` node
   feature);
4. the complex's global features, standardized with training-set statistics, times
   their mask, plus the mask itself (so "unknown" differs from "average");
5. two heads, MLPs to one number each: ``affinity`` (regression, in the assay's units,
   e.g. pKd) and ``logit`` (classification, log-odds of active).

Normalization constants (global-feature means/stds, target mean/std) are buffers,
so a state dict alone restores the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import global_add_pool

from ..config import schema_field, settings_from_mapping
from ..graphs import GraphSchema
from .layers import InteractionConv, mlp

POOLS = ("ligand_sum", "ligand_mean", "all_sum", "all_mean")
#: Sums over atoms are scaled by this: a drug-like ligand has ~30 heavy atoms, so the head sees values near 1.
SUM_SCALE = 0.1


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of :class:`ComplexScorer`.

    Attributes
    ----------
    hidden
        Width of node states, edge embeddings and the MLPs in the layers.
    layers
        Number of :class:`~pipeline.scoring.layers.InteractionConv` rounds.
    aggr
        Neighbour aggregation, ``add`` or ``mean``.
    dropout
        Dropout in the layers and heads (training only).
    pooling
        Readouts concatenated for the heads, any of ``ligand_sum``, ``ligand_mean``,
        ``all_sum``, ``all_mean``.
    use_globals
        Feed the per-complex global features (docking score, MD metrics, ...) to the heads.
    head_hidden
        Hidden width of the two heads.
    """

    hidden: int = schema_field("train.architecture", "hidden")
    layers: int = schema_field("train.architecture", "layers")
    aggr: str = schema_field("train.architecture", "aggr")
    dropout: float = schema_field("train.architecture", "dropout")
    pooling: tuple[str, ...] = schema_field("train.architecture", "pooling", convert=tuple)
    use_globals: bool = schema_field("train.architecture", "use_globals")
    head_hidden: int = schema_field("train.architecture", "head_hidden")

    def __post_init__(self) -> None:
        object.__setattr__(self, "pooling", tuple(self.pooling))
        bad = [p for p in self.pooling if p not in POOLS]
        if bad or not self.pooling:
            raise ValueError(f"model pooling must be a non-empty list of {list(POOLS)}, got {list(self.pooling)}")
        if self.aggr not in ("add", "mean"):
            raise ValueError(f"model aggr must be 'add' or 'mean', got {self.aggr!r}")
        if self.hidden < 1 or self.layers < 1 or self.head_hidden < 1:
            raise ValueError("model hidden, layers and head_hidden must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a :class:`~pipeline.config.ConfigError`)."""
        return settings_from_mapping(cls, data, "train.architecture", strict=True)


class ComplexScorer(nn.Module):
    """Scores one protein-ligand complex graph; see the module docstring for the architecture.

    Parameters
    ----------
    schema
        Feature layout of the graphs (sizes, and where ``is_ligand`` sits in ``x``).
    config
        Hyperparameters.
    """

    def __init__(self, schema: GraphSchema, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.schema, self.config = schema, config
        self.ligand_column = schema.node_feature_names.index("is_ligand")
        h = config.hidden
        self.node_embed = nn.Linear(schema.node_dim, h)
        self.edge_embed = nn.Sequential(nn.Linear(schema.edge_dim, h), nn.SiLU())
        self.convs = nn.ModuleList(
            InteractionConv(h, h, aggr=config.aggr, dropout=config.dropout) for _ in range(config.layers)
        )
        head_in = h * len(config.pooling) + (2 * schema.global_dim if config.use_globals else 0)
        self.affinity_head = mlp(head_in, config.head_hidden, 1, config.dropout)
        self.active_head = mlp(head_in, config.head_hidden, 1, config.dropout)
        g = schema.global_dim
        self.register_buffer("globals_mean", torch.zeros(g))
        self.register_buffer("globals_std", torch.ones(g))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def set_normalization(
        self,
        globals_mean: Sequence[float] | None = None,
        globals_std: Sequence[float] | None = None,
        target_mean: float | None = None,
        target_std: float | None = None,
    ) -> None:
        """Store training-set statistics (global features; regression target) in the buffers."""
        with torch.no_grad():
            if globals_mean is not None:
                self.globals_mean.copy_(torch.as_tensor(np.asarray(globals_mean, dtype=np.float64)))
            if globals_std is not None:
                self.globals_std.copy_(torch.as_tensor(np.asarray(globals_std, dtype=np.float64)))
            if target_mean is not None:
                self.target_mean.fill_(float(target_mean))
            if target_std is not None:
                self.target_std.fill_(float(target_std))

    def readout(self, data) -> Tensor:
        """Per-graph input of the heads (B × head_in) from a batch."""
        dtype = self.node_embed.weight.dtype
        x, edge_attr = data.x.to(dtype), data.edge_attr.to(dtype)
        batch = (
            data.batch
            if getattr(data, "batch", None) is not None
            else torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        )
        n_graphs = int(data.num_graphs) if hasattr(data, "num_graphs") else 1
        h = self.node_embed(x)
        e = self.edge_embed(edge_attr)
        for conv in self.convs:
            h = conv(h, data.edge_index, e)
        ligand = (x[:, self.ligand_column] > 0.5).to(dtype).unsqueeze(-1)
        ones = torch.ones_like(ligand)
        parts = []
        for pool in self.config.pooling:
            weight = ligand if pool.startswith("ligand") else ones
            total = global_add_pool(h * weight, batch, size=n_graphs)
            if pool.endswith("sum"):
                parts.append(total * SUM_SCALE)
            else:
                count = global_add_pool(weight, batch, size=n_graphs).clamp(min=1.0)
                parts.append(total / count)
        if self.config.use_globals:
            values = data.globals.to(dtype).reshape(n_graphs, -1)
            mask = data.globals_mask.to(dtype).reshape(n_graphs, -1)
            parts += [(values - self.globals_mean) / self.globals_std * mask, mask]
        return torch.cat(parts, dim=-1)

    def forward(self, data) -> dict[str, Tensor]:
        """Scores of a batch of B graphs.

        Returns
        -------
        dict
            ``affinity`` (B, assay units), ``affinity_z`` (B, standardized; what the
            regression loss sees) and ``logit`` (B, log-odds of active).
        """
        z = self.readout(data)
        affinity_z = self.affinity_head(z).squeeze(-1)
        return dict(
            affinity=affinity_z * self.target_std + self.target_mean,
            affinity_z=affinity_z,
            logit=self.active_head(z).squeeze(-1),
        )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def global_statistics(graphs: Sequence, schema: GraphSchema) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each global feature over the graphs where it is known.

    Features never known (or constant) get mean 0 / std 1, so they pass unchanged.
    """
    g = schema.global_dim
    if not graphs:
        return np.zeros(g), np.ones(g)
    values = np.concatenate([np.asarray(d.globals, dtype=np.float64).reshape(-1, g) for d in graphs])
    mask = np.concatenate([np.asarray(d.globals_mask, dtype=np.float64).reshape(-1, g) for d in graphs]) > 0.5
    mean, std = np.zeros(g), np.ones(g)
    for k in range(g):
        known = values[mask[:, k], k]
        if len(known):
            mean[k] = known.mean()
            if len(known) > 1 and known.std() > 1e-8:
                std[k] = known.std()
    return mean, std
