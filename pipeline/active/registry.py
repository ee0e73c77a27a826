"""Surrogates by name: :func:`make_surrogate` (``gp``, ``rf``, ``mlp``, ``gnn``).

The implementations are imported when one is built, so importing the active-learning loop
does not import PyTorch or scikit-learn.
"""

from __future__ import annotations

from typing import Any

from .surrogate import Surrogate

__all__ = ["SURROGATES", "make_surrogate"]


def _registry() -> dict[str, type]:
    from .fingerprint_models import FingerprintEnsembleSurrogate, RandomForestSurrogate
    from .graph_models import GraphEnsembleSurrogate
    from .kernel_models import TanimotoGPSurrogate

    return {
        "rf": RandomForestSurrogate,
        "mlp": FingerprintEnsembleSurrogate,
        "gnn": GraphEnsembleSurrogate,
        "gp": TanimotoGPSurrogate,
    }


#: Surrogate names accepted by :func:`make_surrogate`.
SURROGATES = ("rf", "mlp", "gnn", "gp")


def make_surrogate(name: str, **options: Any) -> Surrogate:
    """Build the surrogate called ``name`` (``gp``, ``rf``, ``mlp``, ``gnn``) with keyword ``options``.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    classes = _registry()
    if name not in classes:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {list(SURROGATES)}")
    return classes[name](**options)
