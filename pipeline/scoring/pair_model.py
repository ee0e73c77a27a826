r"""The pair-term scorer: a complex's score is a sum of protein-ligand atom-pair energies shaped like Vina's.

Input: a :class:`torch_geometric.data.Batch` of graphs from :mod:`pipeline.pair_graphs`.
Coordinates (``pos``) are never read; only distances enter, so the score does not change
when the complex is rotated or translated.

.. math::
    \text{score} = \frac{\sum_{i \in L,\, j \in P,\, d_{ij} < 8\,\text{Å}} e_{ij}}{1 + w_\text{rot} N_\text{rot}}
    \qquad
    e_{ij} = \sum_k \big(s_k w_k + \Delta w_k(h_i, h_j, f_{ij})\big)\, t_k(d_{ij})
             + \varepsilon(h_i, h_j, f_{ij}, d_{ij})\, c(d_{ij})

1. atom states :math:`h` from ``layers`` rounds of
   :class:`~pipeline.scoring.pair_layers.CutoffInteractionConv` over the complex graph
   (bonds, short-range pairs within each molecule, protein-ligand contacts), starting
   from ``Linear(node_dim, hidden)`` of the atom features;
2. per protein-ligand pair, :class:`~pipeline.scoring.pair_layers.VinaPairEnergy`:
   Vina's five terms :math:`t_k` with Vina's weights :math:`w_k` (fixed buffers) times
   learned global scales :math:`s_k > 0` (one per term, the same for every pair), plus
   learned per-pair corrections :math:`\Delta w_k` and a small learned residual
   :math:`\varepsilon`; at initialization :math:`s_k = 1` and both per-pair parts are
   exactly zero;
3. the sum over pairs divided by the rotatable-bond factor, :math:`w_\text{rot}` learned in
   ``[0, max_rot_weight]`` from Vina's 0.05846 (:math:`N_\text{rot}` the graph's ``n_rot``
   global).

The global parameters are the "learned correction on Vina's own terms": a handful of
numbers every training complex informs, where the per-pair networks need many.
So an untrained model returns Vina's score of the pose: where it knows nothing, the score
falls back to Vina's. Every learned term belongs to a protein-ligand pair (no readout of
the ligand alone): with the protein deleted the score is 0. The pair energies are an
output, so a score can be explained per contact and per residue (:func:`residue_contributions`).

``logit`` (log-odds of "active", for screening labels) is an affine map of the score
with a negative slope: :math:`\text{logit} = e^{a}\,(\theta - \text{score})`, ``a``
and ``θ`` learned (initially 1 per kcal/mol and -7 kcal/mol), so a lower score always
means a higher probability of activity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import schema_default
from ..pair_graphs import PairGraphSchema
from .pair_layers import CutoffInteractionConv, GaussianRBF, VinaPairEnergy, cosine_cutoff

#: Initial score (kcal/mol) at which ``logit`` is 0.
LOGIT_THRESHOLD = -7.0


@dataclass(frozen=True)
class PairModelConfig:
    r"""Hyperparameters of :class:`PairScorer`.

    Attributes
    ----------
    hidden
        Width of atom states and edge embeddings.
    layers
        Rounds of message passing.
    rbf_size
        Gaussians in the expansion of message-passing edge lengths.
    pair_hidden
        Hidden width of the two pair MLPs (weight corrections, residual).
    pair_rbf_size
        Gaussians in the expansion of pair distances (residual only).
    max_weight_change
        Bound on each learned weight correction relative to Vina's weight (1: between 0 and 2 w_k).
    use_flags
        Feed the per-pair interaction flags to the pair MLPs.
    dropout
        Dropout inside the message-passing MLPs (training only).
    learn_term_scales
        Learn one positive scale per Vina term, :math:`w_k \to s_k w_k` (the same for every
        pair; the pair corrections act on the scaled weights). Within a congeneric series a
        re-weighting of Vina's own five terms already ranks better than Vina's weights.
    learn_rot_weight
        Learn Vina's rotatable-bond weight :math:`w_\text{rot}` (kept in
        ``[0, max_rot_weight]``). Vina's fixed 0.0585 divides the score of a ligand with more
        rotors; within a series the bigger analogues with more rotors usually bind better.
    max_rot_weight
        Upper bound of the learned :math:`w_\text{rot}`.
    max_term_scale
        Bound on each learned term scale: :math:`s_k \in [1/m, m]`, smoothly
        (:math:`s_k = m^{\tanh(\theta_k / \ln m)}`, the identity near 1). Without it a
        ranking loss on a few separable examples drives the scales to 0 or infinity (seen on
        6 ligands of one series: :math:`s_k = e^{-19}`) and the score to inf.
    """

    hidden: int = 32
    layers: int = 3
    rbf_size: int = 16
    pair_hidden: int = 32
    pair_rbf_size: int = 16
    max_weight_change: float = 1.0
    use_flags: bool = True
    dropout: float = 0.0
    learn_term_scales: bool = True
    learn_rot_weight: bool = True
    max_rot_weight: float = 0.2
    max_term_scale: float = 10.0

    def __post_init__(self) -> None:
        if min(self.hidden, self.layers, self.rbf_size, self.pair_hidden, self.pair_rbf_size) < 1:
            raise ValueError("pair model hidden, layers, rbf_size, pair_hidden and pair_rbf_size must be at least 1")
        if not 0.0 <= self.max_weight_change <= 1.0:
            raise ValueError(f"pair model max_weight_change must be in [0, 1], got {self.max_weight_change}")
        if not self.max_rot_weight > 0.0:
            raise ValueError(f"pair model max_rot_weight must be positive, got {self.max_rot_weight}")
        if not self.max_term_scale > 1.0:
            raise ValueError(f"pair model max_term_scale must exceed 1, got {self.max_term_scale}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown pair model hyperparameter {unknown[0]!r}; known: {sorted(names)}")
        return cls(**dict(data))


def _batch_vector(data, n_nodes: int, device: torch.device) -> tuple[Tensor, int]:
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(n_nodes, dtype=torch.long, device=device), 1
    return batch, int(data.num_graphs)


class PairScorer(nn.Module):
    """Scores protein-ligand complexes as a sum of atom-pair energies; see the module docstring.

    Parameters
    ----------
    schema
        Layout of the pair graphs (feature sizes, cutoffs, Vina's weights, where ``n_rot`` is).
    config
        Hyperparameters.
    """

    def __init__(self, schema: PairGraphSchema, config: PairModelConfig = PairModelConfig()) -> None:
        super().__init__()
        self.schema, self.config = schema, config
        h = config.hidden
        self.n_rot_column = schema.global_names.index("n_rot")
        self.covalent_kind = schema.edge_kinds.index("covalent")
        edge_cutoffs = {"covalent": 1.0, "intra": schema.intra_cutoff, "interface": schema.interface_cutoff}
        self.register_buffer("edge_cutoffs", torch.tensor([edge_cutoffs[k] for k in schema.edge_kinds]))
        self.node_embed = nn.Linear(schema.node_dim, h)
        self.edge_rbf = GaussianRBF(max(schema.intra_cutoff, schema.interface_cutoff), config.rbf_size)
        self.edge_embed = nn.Sequential(nn.Linear(schema.edge_dim + config.rbf_size, h), nn.SiLU())
        self.convs = nn.ModuleList(CutoffInteractionConv(h, config.dropout) for _ in range(config.layers))
        self.pair_energy = VinaPairEnergy(
            h,
            len(schema.pair_flags) if config.use_flags else 0,
            config.pair_hidden,
            config.pair_rbf_size,
            schema.pair_cutoff,
            schema.vina_weights,
            config.max_weight_change,
        )
        self.register_buffer("rot_weight", torch.tensor(float(schema.vina_rot_weight)))
        # learned global corrections of Vina's own weights, both exactly Vina's at initialization
        n_terms = len(schema.vina_weights)
        self.log_term_scale = nn.Parameter(torch.zeros(n_terms)) if config.learn_term_scales else None
        if config.learn_rot_weight:
            if not 0.0 < schema.vina_rot_weight < config.max_rot_weight:
                raise ValueError(
                    f"pair model max_rot_weight {config.max_rot_weight} must exceed Vina's {schema.vina_rot_weight}"
                )
            start = schema.vina_rot_weight / config.max_rot_weight
            self.rot_logit = nn.Parameter(torch.tensor(float(np.log(start / (1.0 - start)))))
        else:
            self.rot_logit = None
        self.logit_log_scale = nn.Parameter(torch.zeros(()))
        self.logit_threshold = nn.Parameter(torch.tensor(LOGIT_THRESHOLD))

    def term_scales(self) -> Tensor | None:
        """The learned scale of each Vina term (K,) in ``[1/max_term_scale, max_term_scale]``; None for Vina's weights."""
        if self.log_term_scale is None:
            return None
        bound = float(np.log(self.config.max_term_scale))
        return torch.exp(bound * torch.tanh(self.log_term_scale / bound))

    def rotor_weight(self) -> Tensor:
        r"""The rotatable-bond weight of the score's factor :math:`1 + w_\text{rot} N_\text{rot}` (learned or Vina's)."""
        if self.rot_logit is None:
            return self.rot_weight
        return self.config.max_rot_weight * torch.sigmoid(self.rot_logit)

    def logit_from_score(self, score: Tensor) -> Tensor:
        """Log-odds of "active" for scores (the affine map of the module docstring)."""
        return torch.exp(self.logit_log_scale) * (self.logit_threshold - score)

    def atom_states(self, data) -> Tensor:
        """Atom states ``h`` (N×hidden) after message passing."""
        dtype = self.node_embed.weight.dtype
        edge_attr, dist = data.edge_attr.to(dtype), data.edge_dist.to(dtype)
        kind = edge_attr.argmax(dim=-1) if len(edge_attr) else torch.zeros(0, dtype=torch.long, device=dist.device)
        envelope = torch.where(
            kind == self.covalent_kind, torch.ones_like(dist), cosine_cutoff(dist, self.edge_cutoffs[kind])
        )
        e = self.edge_embed(torch.cat([edge_attr, self.edge_rbf(dist)], dim=-1))
        h = self.node_embed(data.x.to(dtype))
        for conv in self.convs:
            h = conv(h, data.edge_index, e, envelope)
        return h

    def forward(self, data) -> dict[str, Tensor]:
        """Scores of a batch of B graphs with P protein-ligand pairs in all.

        Returns
        -------
        dict
            ``score`` (B, kcal/mol-like, lower is better), ``inter`` (B, the sum of pair
            energies before the rotatable-bond factor), ``vina_score`` (B, Vina's score
            from the same terms with Vina's weights: the untrained model's score),
            ``pair_energy`` (P, kcal/mol, each pair's contribution to ``inter``),
            ``pair_weights`` (P×5, the effective weights of Vina's terms),
            ``pair_graph`` (P, graph of each pair) and ``logit`` (B).
        """
        dtype = self.node_embed.weight.dtype
        h = self.atom_states(data)
        batch, n_graphs = _batch_vector(data, h.shape[0], h.device)
        pair_index = data.pair_index
        pair_terms = data.pair_terms.to(dtype)
        pairs = self.pair_energy(
            h, pair_index, data.pair_dist.to(dtype), pair_terms, data.pair_flags, scale=self.term_scales()
        )
        pair_graph = batch[pair_index[0]]
        inter = torch.zeros(n_graphs, dtype=dtype, device=h.device).index_add(0, pair_graph, pairs["energy"])
        vina = torch.zeros(n_graphs, dtype=dtype, device=h.device).index_add(
            0, pair_graph, pair_terms @ self.pair_energy.weights
        )
        n_rot = data.globals.to(dtype).reshape(n_graphs, -1)[:, self.n_rot_column]
        score = inter / (1.0 + self.rotor_weight() * n_rot)
        return dict(
            score=score,
            inter=inter,
            vina_score=vina / (1.0 + self.rot_weight * n_rot),
            pair_energy=pairs["energy"],
            pair_weights=pairs["weights"],
            pair_graph=pair_graph,
            logit=self.logit_from_score(score),
        )


def pairwise_ranking_loss(
    scores: Tensor,
    values: Tensor | Sequence[float],
    groups: Tensor | Sequence,
    temperature: float = schema_default("train.pair", "temperature"),
    groups_equal: bool = False,
) -> Tensor:
    r"""Logistic ranking loss over all pairs of compounds of one group (series) with different values.

    For every pair :math:`(a, b)` of the same group with :math:`v_a < v_b` (``a`` binds
    better: lower measured ΔG), the loss is :math:`\log(1 + e^{(s_a - s_b)/T})`: small
    when the better compound also has the lower score. The mean over all such pairs;
    0 (still attached to the graph) when there are none.

    Parameters
    ----------
    scores
        Model scores (B,), lower = better.
    values
        Measured values (B,), lower = better (ΔG in kcal/mol; pass -pKd for pKd-like values).
    groups
        Group of each compound (B,): ints or strings (series names); only pairs within a group count.
    temperature
        Scale of score differences (kcal/mol) in the logistic.
    groups_equal
        Mean per group first, then over groups, so that each group (series) counts once,
        as the evaluation's mean per-series τ counts it; default: one mean over all pairs.
    """
    values = torch.as_tensor(np.asarray(values, dtype=np.float64) if not torch.is_tensor(values) else values)
    values = values.to(device=scores.device, dtype=scores.dtype)
    if not torch.is_tensor(groups):
        _, codes = np.unique(np.asarray(list(groups)).astype(str), return_inverse=True)
        groups = torch.as_tensor(codes)
    groups = groups.to(scores.device)
    better = (values[:, None] < values[None, :]) & (groups[:, None] == groups[None, :])
    if not bool(better.any()):
        return scores.sum() * 0.0
    losses = F.softplus((scores[:, None] - scores[None, :]) / temperature)[better]
    if not groups_equal:
        return losses.mean()
    _, pair_group = torch.unique(groups[better.nonzero(as_tuple=True)[0]], return_inverse=True)
    n_groups = int(pair_group.max()) + 1
    sums = torch.zeros(n_groups, dtype=losses.dtype, device=losses.device).index_add(0, pair_group, losses)
    return (sums / torch.bincount(pair_group, minlength=n_groups).to(losses.dtype)).mean()


def residue_contributions(graph, pair_energy: Tensor) -> dict[str, float]:
    """Per pocket residue, the sum of its pairs' energies (kcal/mol) in one graph (before the rotor factor).

    ``graph`` is one (unbatched) pair graph with ``pair_residue`` and ``residue_keys``;
    ``pair_energy`` that graph's ``pair_energy`` output. Sorted from most favourable.
    """
    keys = list(graph.residue_keys)
    totals = torch.zeros(len(keys), dtype=pair_energy.dtype).index_add(
        0, torch.as_tensor(graph.pair_residue, dtype=torch.long), pair_energy.detach().cpu()
    )
    return dict(sorted(((k, float(v)) for k, v in zip(keys, totals)), key=lambda item: item[1]))
