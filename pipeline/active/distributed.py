"""The cheap step of an active-learning round over Dask: predict every library file on a worker.

One task per library chunk file (:class:`~.chunks.ParquetLibrary`'s ``paths``): the worker
streams the file's row groups through the surrogate (:func:`~.chunks.predict_chunks`), scores
each compound's acquisition utility and sends back only that file's best ``size`` compounds
and the ids it could not featurize. The driver merges the per-file selections with
:class:`~.acquisition.TopSelector`, whose ranking (utility, then id) is exact and does not
depend on the order tasks finish in, so a distributed round proposes exactly the batch a
serial round does. Memory: a worker holds one row group's features and one file's selection;
the driver holds ``size`` rows per finished file until it folds them in.

The fitted surrogate and the ids to leave out (docked or failed) are scattered to every
worker once per round.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .acquisition import TopSelector
from .chunks import CompoundChunk, ParquetLibrary, predict_chunks
from .surrogate import Surrogate

__all__ = ["DistributedPrediction", "predict_file_top", "predict_top_distributed", "select_top"]

#: ``acquire(mean, sd, ids, seed, round_index) -> utility`` (:func:`~.acquisition.acquisition_function`).
Acquire = Callable[..., np.ndarray]


@dataclass
class DistributedPrediction:
    """What a distributed predict step found.

    Attributes
    ----------
    top
        The best compounds by utility over the whole library (columns ``smiles``, ``mean``, ``sd``).
    no_features
        Ids the surrogate could not featurize (they become failures, never proposals).
    predicted
        Compounds predicted (the library minus the excluded ids).
    tasks
        Files processed, one task each.
    """

    top: TopSelector
    no_features: list[str] = field(default_factory=list)
    predicted: int = 0
    tasks: int = 0

    def merge(self, other: DistributedPrediction) -> None:
        """Fold in another file's selection (exact: the ranking does not depend on the order of merges)."""
        if other.top.ids:
            columns = {name: other.top.column(name) for name in ("smiles", "mean", "sd")}
            self.top.add(other.top.ids, other.top.utility, **columns)
        self.no_features.extend(other.no_features)
        self.predicted += other.predicted
        self.tasks += other.tasks


def select_top(
    surrogate: Surrogate,
    chunks: Iterable[CompoundChunk],
    exclude: Container[str],
    size: int,
    acquire: Acquire,
    seed: int,
    round_index: int,
) -> DistributedPrediction:
    """Predict a stream of chunks and keep the best ``size`` compounds by utility (serial, or one worker's file)."""
    result = DistributedPrediction(TopSelector(size))
    for part in predict_chunks(surrogate, iter(chunks), exclude):
        result.no_features.extend(part.ids[k] for k in np.flatnonzero(~np.isfinite(part.mean)))
        utility = acquire(part.mean, part.sd, part.ids, seed, round_index)
        result.top.add(part.ids, utility, smiles=np.asarray(part.smiles, dtype=object), mean=part.mean, sd=part.sd)
        result.predicted += len(part.ids)
    result.tasks = 1
    return result


def predict_file_top(
    surrogate: Surrogate,
    path: str,
    exclude: Container[str],
    size: int,
    acquire: Acquire,
    seed: int,
    round_index: int,
) -> DistributedPrediction:
    """:func:`select_top` over one library file (a worker's task)."""
    return select_top(surrogate, ParquetLibrary([path]).chunks(), exclude, size, acquire, seed, round_index)


def predict_top_distributed(
    client: Any,
    surrogate: Surrogate,
    paths: Sequence[str | Path],
    exclude: set[str] | frozenset[str],
    size: int,
    acquire: Acquire,
    seed: int,
    round_index: int,
) -> DistributedPrediction:
    """Run :func:`predict_file_top` on every file through a Dask ``client`` and merge the selections.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    surrogate
        The fitted surrogate (pickled to the workers once).
    paths
        The library's chunk files.
    exclude
        Ids not to predict (already docked or failed).
    size
        How many compounds the round acquires.
    acquire, seed, round_index
        The acquisition utility and its arguments.
    """
    from distributed import as_completed

    [model] = client.scatter([surrogate], broadcast=True)
    [skip] = client.scatter([frozenset(exclude)], broadcast=True)
    futures = [
        client.submit(predict_file_top, model, str(p), skip, size, acquire, seed, round_index, pure=False)
        for p in paths
    ]
    result = DistributedPrediction(TopSelector(size))
    for future, part in as_completed(futures, with_results=True):
        result.merge(part)
        future.release()
    return result
