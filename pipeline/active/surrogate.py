"""The surrogate contract: learn docking scores from SMILES, predict a mean and a spread.

A surrogate is retrained from scratch every round on all compounds docked so far
(:meth:`Surrogate.fit`) and then predicts the rest of the library chunk by chunk
(:meth:`Surrogate.predict`). Predictions are in the objective's units (kcal/mol for Vina,
lower = better); the spread is the standard deviation over the ensemble's members (0 for a
model without one). A compound the surrogate cannot featurize gets NaN for both, and the
loop records it as a failure instead of guessing.

Implementations: :class:`~.kernel_models.TanimotoGPSurrogate` (the default),
:class:`~.fingerprint_models.RandomForestSurrogate`,
:class:`~.fingerprint_models.FingerprintEnsembleSurrogate` and
:class:`~.graph_models.GraphEnsembleSurrogate`; :func:`~.registry.make_surrogate` builds one
by name (in its own module: the implementations import :class:`Prediction` from here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Prediction", "Surrogate"]


@dataclass
class Prediction:
    """Predicted score and spread per compound (objective units; NaN where there are no features)."""

    mean: np.ndarray
    sd: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.sd = np.asarray(self.sd, dtype=np.float64)
        if self.mean.shape != self.sd.shape:
            raise ValueError(f"mean {self.mean.shape} and sd {self.sd.shape} differ in shape")

    @property
    def valid(self) -> np.ndarray:
        """True where the surrogate could predict."""
        return np.isfinite(self.mean)


@runtime_checkable
class Surrogate(Protocol):
    """What :class:`~.loop.ActiveLoop` needs from a model of the docking score."""

    #: Short name for tables and logs (``gp``, ``rf``, ``mlp``, ``gnn``).
    name: str

    def fit(self, smiles: Sequence[str], scores: np.ndarray, seed: int) -> dict[str, Any]:
        """Train from scratch on ``smiles`` with finite ``scores``; return a small dict about the fit."""
        ...

    def predict(self, smiles: Sequence[str]) -> Prediction:
        """Predict one chunk of compounds."""
        ...
