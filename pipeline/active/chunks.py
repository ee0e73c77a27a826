"""The library as a stream of chunks: the loop never holds every compound at once.

A :class:`CompoundLibrary` knows its size and yields :class:`CompoundChunk` s (``ids`` and
``smiles``) in a fixed order, as many passes as asked (one per round). Two sources:

* :class:`FrameLibrary` - an in-memory table (benchmarks, tests), cut into ``chunk_size`` rows;
* :class:`ParquetLibrary` - the library chunks the workflow's ``split`` stage writes
  (``chunk_00000.parquet``, ... with ``id`` and ``smiles`` columns,
  :mod:`pipeline.library`), read one row group of one file at a time.

:func:`predict_chunks` runs a surrogate over such a stream and yields one
:class:`PredictedChunk` per input chunk, so prediction memory is one chunk's features.
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from .surrogate import Surrogate

__all__ = ["CompoundChunk", "CompoundLibrary", "FrameLibrary", "ParquetLibrary", "PredictedChunk", "predict_chunks"]


@dataclass
class CompoundChunk:
    """Compound ids and SMILES of one chunk, in library order."""

    ids: list[str]
    smiles: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@runtime_checkable
class CompoundLibrary(Protocol):
    """A library the loop can stream: its size and a fresh pass over its chunks."""

    def __len__(self) -> int: ...

    def chunks(self) -> Iterator[CompoundChunk]: ...


class FrameLibrary:
    """An in-memory table with ``id`` and ``smiles`` columns, streamed in chunks of ``chunk_size`` rows.

    Raises
    ------
    ValueError
        If a column is missing or an id occurs twice (ids key everything the loop records).
    """

    def __init__(
        self, frame: pd.DataFrame, chunk_size: int = 10_000, id_column: str = "id", smiles_column: str = "smiles"
    ) -> None:
        missing = {id_column, smiles_column} - set(frame.columns)
        if missing:
            raise ValueError(f"library table lacks column(s) {sorted(missing)}")
        ids = frame[id_column].astype(str)
        if ids.duplicated().any():
            raise ValueError(f"library id {ids[ids.duplicated()].iloc[0]!r} occurs more than once")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self._ids = ids.tolist()
        self._smiles = frame[smiles_column].astype(str).tolist()
        self.chunk_size = chunk_size

    def __len__(self) -> int:
        return len(self._ids)

    def chunks(self) -> Iterator[CompoundChunk]:
        for start in range(0, len(self._ids), self.chunk_size):
            stop = start + self.chunk_size
            yield CompoundChunk(self._ids[start:stop], self._smiles[start:stop])


class ParquetLibrary:
    """Library chunk files (``id``, ``smiles`` columns), streamed one Parquet row group at a time.

    Parameters
    ----------
    paths
        The chunk files, in library order (the run layout names them; never a glob).
    """

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        import pyarrow.parquet as pq

        self.paths = [Path(p) for p in paths]
        self._size = sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths)

    def __len__(self) -> int:
        return self._size

    def chunks(self) -> Iterator[CompoundChunk]:
        import pyarrow.parquet as pq

        for path in self.paths:
            handle = pq.ParquetFile(path)
            for group in range(handle.num_row_groups):
                table = handle.read_row_group(group, columns=["id", "smiles"])
                yield CompoundChunk(
                    [str(i) for i in table.column("id").to_pylist()],
                    [str(s) for s in table.column("smiles").to_pylist()],
                )


@dataclass
class PredictedChunk:
    """The surrogate's prediction for the compounds of one chunk that were not excluded."""

    ids: list[str]
    smiles: list[str]
    mean: np.ndarray
    sd: np.ndarray

    def frame(self) -> pd.DataFrame:
        """As a table: ``id, smiles, predicted_score, predicted_sd``."""
        return pd.DataFrame(
            {"id": self.ids, "smiles": self.smiles, "predicted_score": self.mean, "predicted_sd": self.sd}
        )


def predict_chunks(
    surrogate: Surrogate, chunks: Iterator[CompoundChunk], exclude: Container[str] = frozenset()
) -> Iterator[PredictedChunk]:
    """Predict a stream of chunks, one at a time, leaving out the ids in ``exclude`` (already docked or failed).

    Parameters
    ----------
    surrogate
        A fitted surrogate.
    chunks
        The library's chunks (one pass).
    exclude
        Ids not to predict.

    Yields
    ------
    PredictedChunk
        One per input chunk with at least one compound left (NaN mean/sd where the surrogate
        has no features for a compound).
    """
    for chunk in chunks:
        keep = [k for k, i in enumerate(chunk.ids) if i not in exclude]
        if not keep:
            continue
        ids = [chunk.ids[k] for k in keep]
        smiles = [chunk.smiles[k] for k in keep]
        prediction = surrogate.predict(smiles)
        yield PredictedChunk(ids, smiles, prediction.mean, prediction.sd)
