"""A per-SMILES memo of featurization, for libraries small enough to keep (benchmarks, tests).

The active loop featurizes every chunk it predicts, every round; on a 10^4-compound
benchmark library that repeats the same RDKit work six times per run. A surrogate built with
``cache=True`` keeps each molecule's features here after the first time. It is off by
default: on a real library (10^6 and up) the point of streaming is *not* to hold every
compound's features, so the cache must stay a benchmark tool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["FeatureCache"]


class FeatureCache:
    """Features by SMILES; :meth:`get` computes only the missing ones, in one call."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, smiles: Sequence[str], compute: Callable[[list[str]], list[Any]]) -> list[Any]:
        """Features of every SMILES in order; ``compute(missing)`` returns one item per missing SMILES."""
        missing = list(dict.fromkeys(s for s in smiles if s not in self._items))
        if missing:
            self._items.update(zip(missing, compute(missing)))
        return [self._items[s] for s in smiles]
