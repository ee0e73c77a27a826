"""Acquisition: which undocked compounds to dock next, given the surrogate's mean and spread.

Docking scores follow Vina's convention, **lower = better**. Every acquisition function
here turns a prediction into a *utility* where **higher = dock first**, so the sign is
handled once, in this module, and the selector only ever takes the largest utilities:

* :func:`greedy` - ``u = -mean``: the best predicted score first;
* :func:`ucb` - ``u = -(mean - beta * sd)``: an optimistic bound on the score (the lower
  confidence bound of a quantity to minimize), so a compound with a wide spread is tried
  before an equally good but certain one;
* :func:`thompson` - ``u = -(mean + sd * z)``, ``z ~ N(0, 1)`` drawn per compound: one draw
  from each compound's predictive distribution.

Randomness (Thompson's draws, the initial random sample) comes from :func:`uniform_keys`:
a keyed hash of the compound id, so a compound's draw depends on the seed, the round and its
id only - not on how the library is cut into chunks or in which order the chunks arrive.

:class:`TopSelector` keeps the ``n`` largest utilities seen over a stream of chunks (never
the whole library at once); ties are broken by id so the batch is the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..config import schema_default

__all__ = [
    "ACQUISITIONS",
    "TopSelector",
    "acquisition_function",
    "greedy",
    "thompson",
    "ucb",
    "uniform_keys",
]

#: ``(mean, sd, ids, seed, round) -> utility``; higher utility = dock first.
AcquisitionFunction = Callable[[np.ndarray, np.ndarray, Sequence[str], int, int], np.ndarray]


def uniform_keys(ids: Sequence[str], seed: int, round_index: int, stream: int = 0) -> np.ndarray:
    """Deterministic uniform numbers in (0, 1), one per id, from a keyed hash of the id.

    Parameters
    ----------
    ids
        Compound ids (strings).
    seed, round_index, stream
        Select the key: the same (seed, round, stream) gives each id the same number in every
        run and in any chunking of the library; a different one gives independent numbers.

    Returns
    -------
    numpy.ndarray
        Float64 array of ``len(ids)`` values strictly between 0 and 1.
    """
    # pandas' SipHash takes a 16-character key; the three integers fill it
    key = f"{seed % 2**32:08x}{(round_index * 1024 + stream) % 2**32:08x}"
    hashes = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key, categorize=False)
    # top 53 bits -> [0, 1), then shifted half a step so 0 never occurs (ndtri(0) = -inf)
    return ((hashes >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def greedy(mean: np.ndarray, sd: np.ndarray, ids: Sequence[str], seed: int = 0, round_index: int = 0) -> np.ndarray:
    """Utility of the best predicted score: ``-mean`` (``sd``, ``ids`` and the seed are unused)."""
    return -np.asarray(mean, dtype=np.float64)


def ucb(
    mean: np.ndarray,
    sd: np.ndarray,
    ids: Sequence[str],
    seed: int = 0,
    round_index: int = 0,
    beta: float = schema_default("screen.active", "beta"),
) -> np.ndarray:
    """Optimistic utility ``-(mean - beta * sd)``: for a score to minimize, the lower confidence bound.

    A missing spread (NaN, a model without an ensemble) counts as 0, i.e. greedy.
    """
    spread = np.nan_to_num(np.asarray(sd, dtype=np.float64), nan=0.0)
    return -(np.asarray(mean, dtype=np.float64) - beta * spread)


def thompson(mean: np.ndarray, sd: np.ndarray, ids: Sequence[str], seed: int = 0, round_index: int = 0) -> np.ndarray:
    """Utility of one draw from each compound's predictive normal: ``-(mean + sd * z)``, ``z`` keyed by id."""
    z = ndtri(uniform_keys(ids, seed, round_index, stream=1))
    spread = np.nan_to_num(np.asarray(sd, dtype=np.float64), nan=0.0)
    return -(np.asarray(mean, dtype=np.float64) + spread * z)


#: Acquisition functions by name (``active.acquisition`` in a config).
ACQUISITIONS: dict[str, AcquisitionFunction] = {"greedy": greedy, "ucb": ucb, "thompson": thompson}


def acquisition_function(name: str, beta: float = schema_default("screen.active", "beta")) -> AcquisitionFunction:
    """The acquisition function called ``name`` (``greedy``, ``ucb`` with ``beta``, ``thompson``).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    if name not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition {name!r}; choose one of {sorted(ACQUISITIONS)}")
    if name == "ucb":
        return lambda mean, sd, ids, seed=0, round_index=0: ucb(mean, sd, ids, seed, round_index, beta=beta)
    return ACQUISITIONS[name]


class TopSelector:
    """The ``n`` rows with the largest utility over a stream of chunks, ties broken by id.

    Memory holds at most ``n`` plus one chunk of rows. NaN utilities (compounds the
    surrogate could not featurize) are never selected.

    Parameters
    ----------
    n
        How many rows to keep (0 keeps none).

    Examples
    --------
    >>> top = TopSelector(2)
    >>> top.add(["a", "b", "c"], np.array([1.0, 3.0, 2.0]))
    >>> top.ids
    ['b', 'c']
    """

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = int(n)
        self._ids = np.empty(0, dtype=object)
        self._utility = np.empty(0, dtype=np.float64)
        self._extra: dict[str, np.ndarray] | None = None

    def add(self, ids: Sequence[str], utility: np.ndarray, **columns: Sequence) -> None:
        """Offer one chunk: ``ids``, their ``utility`` and any per-row ``columns`` to keep along (SMILES, mean, sd)."""
        utility = np.asarray(utility, dtype=np.float64)
        keep = np.isfinite(utility)
        if self._extra is None:
            self._extra = {k: np.asarray(v)[:0] for k, v in columns.items()}
        elif set(columns) != set(self._extra):
            raise ValueError(f"every chunk must carry the same columns {sorted(self._extra)}, got {sorted(columns)}")
        merged_ids = np.concatenate([self._ids, np.asarray(ids, dtype=object)[keep]])
        merged_u = np.concatenate([self._utility, utility[keep]])
        merged = {k: np.concatenate([self._extra[k], np.asarray(v)[keep]]) for k, v in columns.items()}
        # lexsort: last key is primary -> utility descending, then id ascending
        order = np.lexsort((merged_ids.astype(str), -merged_u))[: self.n]
        self._ids, self._utility = merged_ids[order], merged_u[order]
        self._extra = {k: v[order] for k, v in merged.items()}

    @property
    def ids(self) -> list[str]:
        """Selected ids, best utility first."""
        return [str(i) for i in self._ids]

    @property
    def utility(self) -> np.ndarray:
        """Utilities of :attr:`ids`, in the same order."""
        return self._utility.copy()

    def column(self, name: str) -> np.ndarray:
        """A column passed to :meth:`add`, in the order of :attr:`ids`."""
        if self._extra is None or name not in self._extra:
            raise KeyError(f"no column {name!r} was added")
        return self._extra[name].copy()
