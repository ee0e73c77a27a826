"""Layers that hold ``M`` independent ensemble members in one module.

A deep ensemble of ``M`` small networks trained one after the other pays Python and
autograd overhead ``M`` times per step; on a CPU that overhead, not arithmetic, dominates
for networks this small. Here every weight has a leading member axis and activations carry
a member axis (``(..., M, features)``), so one forward pass evaluates all members and one
optimizer step trains all of them. The members never share a parameter: their outputs are
as independent as ``M`` separate models with different initializations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["EnsembleLayerNorm", "EnsembleLinear", "EnsembleMLP"]


class EnsembleLinear(nn.Module):
    r"""``M`` linear maps, one per member: :math:`y_{\cdot m} = x_{\cdot m} W_m + b_m`.

    Parameters
    ----------
    members
        Ensemble size ``M``.
    in_features, out_features
        Sizes of each member's input and output.
    shared_input
        If True the input has no member axis (``(..., in)``) and every member reads it
        (the first layer of a network); otherwise the input is ``(..., M, in)``.
    """

    def __init__(self, members: int, in_features: int, out_features: int, shared_input: bool = False) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.shared_input = shared_input
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default (Kaiming-uniform with a=sqrt(5)), member by member
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in)`` if ``shared_input`` else ``(..., M, in)`` -> ``(..., M, out)``."""
        if self.shared_input:
            return torch.einsum("...i,mio->...mo", x, self.weight) + self.bias
        return torch.einsum("...mi,mio->...mo", x, self.weight) + self.bias


class EnsembleLayerNorm(nn.Module):
    """Layer normalization over the feature axis with a separate scale and shift per member."""

    def __init__(self, members: int, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(members, features))
        self.bias = nn.Parameter(torch.zeros(members, features))

    def forward(self, x: Tensor) -> Tensor:
        """``(..., M, features)`` -> same shape."""
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """Two member-wise linear layers with a SiLU between them (the ensemble twin of ``scoring.layers.mlp``)."""

    def __init__(self, members: int, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.first = EnsembleLinear(members, in_features, hidden)
        self.second = EnsembleLinear(members, hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., M, in)`` -> ``(..., M, out)``."""
        return self.second(F.silu(self.first(x)))
