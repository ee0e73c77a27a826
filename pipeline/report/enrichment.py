"""How well each score of a labelled screen puts the actives first.

Uses :mod:`pipeline.scoring.metrics` (AUROC, EF1%, BEDROC and the curves). Only
scores that every ranked compound has are compared (docking score, GNN score,
consensus score), over the ranked compounds with a label; compounds that failed
a stage have no score and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..scoring.metrics import auroc, bedroc, enrichment_curve, enrichment_factor, roc_curve


@dataclass(frozen=True)
class Score:
    """A ranking column used as a score.

    ``sign`` turns it into "higher = more likely active" (``-1`` for Vina's kcal/mol).
    """

    column: str
    title: str
    sign: float


#: The whole-library scores of ``ranking.csv``, in the order the report lists them.
SCORES = (
    Score("docking_score", "docking score", -1.0),
    Score("gnn_score", "GNN score", 1.0),
    Score("consensus_score", "consensus score", 1.0),
)


def library_scores(ranking: pd.DataFrame) -> list[Score]:
    """The scores in :data:`SCORES` that the ranking has for every compound."""
    return [s for s in SCORES if s.column in ranking.columns and len(ranking) and ranking[s.column].notna().all()]


def _labelled(ranking: pd.DataFrame, labels: pd.Series, score: Score) -> tuple[np.ndarray, np.ndarray]:
    known = labels.notna().to_numpy()
    return labels.to_numpy()[known], score.sign * ranking[score.column].to_numpy(dtype=float)[known]


def can_evaluate(labels: pd.Series | None) -> bool:
    """Whether the labels hold at least one active and one inactive."""
    if labels is None:
        return False
    known = labels.dropna()
    return bool((known > 0.5).any() and (known <= 0.5).any())


def enrichment_table(ranking: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """AUROC, EF1% and BEDROC of each whole-library score.

    Parameters
    ----------
    ranking
        ``ranking.csv``.
    labels
        The label of each ranking row (1.0 / 0.0 / NaN for unknown), aligned with ``ranking``.

    Returns
    -------
    pandas.DataFrame
        One row per score: ``column, score, n, n_active, auroc, ef1, bedroc``.
    """
    rows = []
    for score in library_scores(ranking):
        y, s = _labelled(ranking, labels, score)
        rows.append(
            dict(
                column=score.column,
                score=score.title,
                n=len(y),
                n_active=int((y > 0.5).sum()),
                auroc=auroc(y, s),
                ef1=enrichment_factor(y, s, 0.01),
                bedroc=bedroc(y, s),
            )
        )
    return pd.DataFrame(rows, columns=["column", "score", "n", "n_active", "auroc", "ef1", "bedroc"])


def curves(ranking: pd.DataFrame, labels: pd.Series) -> dict[str, dict[str, np.ndarray]]:
    """Enrichment and ROC curves of each whole-library score, keyed by its title.

    Returns
    -------
    dict
        ``{title: {"screened", "found", "fpr", "tpr"}}`` (see :func:`pipeline.scoring.metrics.enrichment_curve`
        and :func:`pipeline.scoring.metrics.roc_curve`).
    """
    out = {}
    for score in library_scores(ranking):
        y, s = _labelled(ranking, labels, score)
        screened, found = enrichment_curve(y, s)
        fpr, tpr, _ = roc_curve(y, s)
        out[score.title] = dict(screened=screened, found=found, fpr=fpr, tpr=tpr)
    return out
