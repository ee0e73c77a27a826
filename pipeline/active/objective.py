"""Objectives: the expensive step the loop spends its budget on (docking, or a table standing in for it).

An objective takes a batch of compounds (``ids`` and ``smiles``) and returns an
:class:`Evaluation`: a score for each compound it could evaluate and a reason for each one
it could not. Every compound it was given must be in exactly one of the two; the loop
checks this, and a compound the objective silently dropped becomes a failure with
:data:`NOT_RETURNED` as its reason, so nothing is lost.

:class:`LookupObjective` reads the scores from a table (the benchmarks' full-library score
tables, or a previous screen): a compound missing from the table, or with a NaN score, is a
failure, as an unfinished docking would be.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["NOT_IN_TABLE", "NOT_RETURNED", "NO_SCORE", "Evaluation", "LookupObjective", "Objective"]

#: Failure reasons of :class:`LookupObjective` and of the loop's completeness check.
NOT_IN_TABLE = "no score in the lookup table"
NO_SCORE = "the lookup table's score is missing (NaN)"
NOT_RETURNED = "the objective returned neither a score nor a failure"


@dataclass
class Evaluation:
    """Scores (objective units, lower = better) and failure reasons, by compound id."""

    scores: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def complete(self, ids: Sequence[str]) -> Evaluation:
        """This evaluation restricted to ``ids``, with every id in exactly one of scores or failures.

        An id in neither becomes a :data:`NOT_RETURNED` failure; an id in both, or a non-finite
        score, becomes a failure too (a score the loop cannot trust is not a score).
        """
        out = Evaluation()
        for i in ids:
            if i in self.failures:
                out.failures[i] = str(self.failures[i])
            elif i in self.scores:
                value = float(self.scores[i])
                if math.isfinite(value):
                    out.scores[i] = value
                else:
                    out.failures[i] = f"the objective returned a non-finite score ({value})"
            else:
                out.failures[i] = NOT_RETURNED
        return out


@runtime_checkable
class Objective(Protocol):
    """``objective(ids, smiles) -> Evaluation``; may fail for some compounds, must not raise for them."""

    def __call__(self, ids: Sequence[str], smiles: Sequence[str]) -> Evaluation: ...


class LookupObjective:
    """Docking scores read from a table instead of computed.

    Parameters
    ----------
    scores
        Score by key (NaN allowed: that compound fails with :data:`NO_SCORE`).
    key
        What a compound is looked up by: its ``smiles`` (the MolPAL tables have no ids) or its ``id``.
    """

    def __init__(self, scores: Mapping[str, float], key: Literal["smiles", "id"] = "smiles") -> None:
        if key not in ("smiles", "id"):
            raise ValueError(f"key must be 'smiles' or 'id', got {key!r}")
        self.scores = dict(scores)
        self.key = key
        self.calls = 0  # objective evaluations asked for (compounds), for budget checks

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame | str | os.PathLike,
        key_column: str = "smiles",
        score_column: str = "score",
        key: Literal["smiles", "id"] = "smiles",
        duplicates: Literal["error", "min"] = "error",
    ) -> LookupObjective:
        """Read ``key_column`` and ``score_column`` from a DataFrame or a CSV / Parquet file.

        A key listed twice with the same score is kept once. With different scores the table is
        ambiguous: ``duplicates="error"`` raises ``ValueError`` naming the key, ``"min"`` keeps the
        best (lowest) score, as the better of two docking runs would be reported.
        """
        if not isinstance(table, pd.DataFrame):
            path = Path(table)
            table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        missing = {key_column, score_column} - set(table.columns)
        if missing:
            raise ValueError(f"score table lacks column(s) {sorted(missing)}; it has {list(table.columns)}")
        frame = table[[key_column, score_column]].drop_duplicates()
        frame = frame.assign(**{score_column: pd.to_numeric(frame[score_column], errors="coerce")})
        clash = frame[key_column][frame[key_column].duplicated()]
        if len(clash) and duplicates == "error":
            raise ValueError(f"score table gives {key_column}={clash.iloc[0]!r} more than one score")
        if len(clash):
            frame = frame.groupby(key_column, sort=False, as_index=False)[score_column].min()
        values = frame[score_column].to_numpy(dtype=np.float64)
        return cls(dict(zip(frame[key_column].astype(str), values)), key=key)

    def __call__(self, ids: Sequence[str], smiles: Sequence[str]) -> Evaluation:
        """Look every compound up; missing and NaN scores become failures with a reason."""
        self.calls += len(ids)
        out = Evaluation()
        for cid, smi in zip(ids, smiles):
            value = self.scores.get(str(smi) if self.key == "smiles" else str(cid))
            if value is None:
                out.failures[cid] = NOT_IN_TABLE
            elif not math.isfinite(value):
                out.failures[cid] = NO_SCORE
            else:
                out.scores[cid] = float(value)
        return out
