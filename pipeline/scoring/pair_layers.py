"""Layers of the pair-term scorer: distance expansions, cutoff message passing, the Vina-shaped pair energy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from .layers import mlp


class GaussianRBF(nn.Module):
    r"""Gaussian expansion of distances: :math:`\phi_k(d) = \exp(-((d - \mu_k)/\sigma)^2)`.

    The centres :math:`\mu_k` are ``linspace(0, cutoff, size)`` and :math:`\sigma` their spacing.
    """

    def __init__(self, cutoff: float, size: int) -> None:
        super().__init__()
        centers = torch.linspace(0.0, float(cutoff), int(size))
        self.register_buffer("centers", centers)
        self.width = float(centers[1] - centers[0]) if size > 1 else 1.0

    def forward(self, d: Tensor) -> Tensor:
        """(E,) distances in Å -> (E, size)."""
        return torch.exp(-(((d.unsqueeze(-1) - self.centers) / self.width) ** 2))


def cosine_cutoff(d: Tensor, cutoff: Tensor | float) -> Tensor:
    r""":math:`c(d) = \tfrac12(\cos(\pi d / r_c) + 1)` for :math:`d < r_c`, else 0: smooth, 1 at 0, 0 at the cutoff."""
    return torch.where(d < cutoff, 0.5 * (torch.cos(math.pi * d / cutoff) + 1.0), torch.zeros_like(d))


class CutoffInteractionConv(MessagePassing):
    r"""Message passing whose messages fade out smoothly at each edge's cutoff.

    .. math::
        m_{ij} = c_{ij}\,\phi_m([h_i, h_j, e_{ij}]) \qquad
        h_i' = \mathrm{LayerNorm}\big(h_i + \phi_h([h_i, \textstyle\sum_{j \in N(i)} m_{ij}])\big)

    :math:`e_{ij}` is the embedded edge (kind and Gaussian expansion of the length),
    :math:`c_{ij}` the envelope (:func:`cosine_cutoff` for spatial edges, 1 for bonds),
    so an atom entering or leaving a neighbourhood changes no state abruptly. Only
    distances enter: the layer is invariant to rotations and translations of the complex.

    Parameters
    ----------
    channels
        Size of the node states ``h`` (and of ``e_ij``).
    dropout
        Dropout inside the MLPs (training only).
    """

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__(aggr="add")
        self.message_mlp = mlp(3 * channels, channels, channels, dropout)
        self.update_mlp = mlp(2 * channels, channels, channels, dropout)
        self.norm = nn.LayerNorm(channels)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor, edge_weight: Tensor) -> Tensor:
        """Node states (N×C), edges (2×E, source row first), embedded edges (E×C), envelopes (E,) -> new states."""
        # the first layer is linear in [h_i, h_j, e_ij]: apply its blocks to the N nodes before gathering to the E edges
        first, c = self.message_mlp[0], h.shape[-1]
        w_i, w_j, w_e = first.weight[:, :c], first.weight[:, c : 2 * c], first.weight[:, 2 * c :]
        m = self.propagate(edge_index, a=h @ w_i.T, b=h @ w_j.T, e=edge_attr @ w_e.T + first.bias, c=edge_weight)
        return self.norm(h + self.update_mlp(torch.cat([h, m], dim=-1)))

    def message(self, a_i: Tensor, b_j: Tensor, e: Tensor, c: Tensor) -> Tensor:
        """``m_ij = c_ij phi_m([h_i, h_j, e_ij])`` with phi_m's first layer already applied."""
        return self.message_mlp[1:](a_i + b_j + e) * c.unsqueeze(-1)


class VinaPairEnergy(nn.Module):
    r"""Energy of protein-ligand atom pairs: Vina's terms with learned, pair-dependent corrections.

    .. math::
        e_{ij} = \sum_k \big(w_k + \Delta w_k(h_i, h_j, f_{ij})\big)\, t_k(d_{ij})
                 + \varepsilon(h_i, h_j, f_{ij}, d_{ij})\, c(d_{ij})

    with :math:`t_k` Vina's term values of the pair (gauss1, gauss2, repulsion,
    hydrophobic, hbond), :math:`w_k` Vina's weights (a fixed buffer), :math:`f_{ij}`
    the pair's interaction flags and :math:`c` the :func:`cosine_cutoff` at the pair
    cutoff. The corrections keep each weight's sign and stay within ``max_change`` times
    its size, :math:`\Delta w_k = \text{max\_change}\,|w_k| \tanh u_k`, so no learned term can
    turn Vina's repulsion into attraction. The last layers of :math:`u` and
    :math:`\varepsilon` start at zero: an untrained layer returns exactly Vina's pair energy.

    Parameters
    ----------
    channels
        Size of the atom states ``h``.
    n_flags
        Number of interaction flags per pair (0: flags not used).
    hidden
        Hidden width of the two pair MLPs.
    rbf_size, cutoff
        Gaussian expansion of the pair distance for the residual, and the pair cutoff (Å).
    weights
        Vina's weights :math:`w_k`.
    max_change
        Bound on :math:`|\Delta w_k| / |w_k|`.
    """

    def __init__(
        self,
        channels: int,
        n_flags: int,
        hidden: int,
        rbf_size: int,
        cutoff: float,
        weights: Sequence[float],
        max_change: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_flags, self.cutoff, self.max_change = n_flags, float(cutoff), float(max_change)
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32))
        n_terms = len(weights)
        self.rbf = GaussianRBF(cutoff, rbf_size)
        self.weight_mlp = mlp(2 * channels + n_flags, hidden, n_terms)
        self.residual_mlp = mlp(2 * channels + n_flags + rbf_size, hidden, 1)
        for head in (self.weight_mlp, self.residual_mlp):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(
        self,
        h: Tensor,
        pair_index: Tensor,
        pair_dist: Tensor,
        pair_terms: Tensor,
        pair_flags: Tensor,
        scale: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-pair energies (kcal/mol) of P pairs; ``pair_index`` row 0 the ligand atom, row 1 the protein atom.

        ``scale`` (K,, positive), when given, multiplies Vina's weights before the pair
        corrections (:class:`~pipeline.scoring.pair_model.PairScorer`'s learned term scales).

        Returns ``energy`` (P,), ``weights`` (P×K, the effective :math:`w_k + \\Delta w_k`)
        and ``residual`` (P,, the :math:`\\varepsilon c` part).
        """
        z = torch.cat([h[pair_index[0]], h[pair_index[1]]], dim=-1)
        if self.n_flags:
            z = torch.cat([z, pair_flags.to(z.dtype)], dim=-1)
        base = self.weights if scale is None else self.weights * scale
        weights = base + self.max_change * base.abs() * torch.tanh(self.weight_mlp(z))
        residual = self.residual_mlp(torch.cat([z, self.rbf(pair_dist)], dim=-1)).squeeze(-1)
        residual = residual * cosine_cutoff(pair_dist, self.cutoff)
        energy = (weights * pair_terms.to(z.dtype)).sum(dim=-1) + residual
        return dict(energy=energy, weights=weights, residual=residual)
