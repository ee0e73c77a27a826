"""Screening metrics: how well a score puts actives first, and how close predicted affinities are.

Convention: a **higher score means more likely active** (callers negate Vina
scores, where lower is better). NaN scores rank last (they count as ``-inf``).
Tied scores share their average rank, so no metric depends on the input order
of tied compounds:

* :func:`auroc` - area under the ROC curve (Mann-Whitney U / (n_active * n_inactive));
  all-equal scores give exactly 0.5.
* :func:`enrichment_factor` - actives in the top ``fraction`` of the ranking relative
  to random picking; ``ceil(fraction * N)`` compounds are selected (RDKit's
  convention). A tie group straddling the cut-off contributes its actives
  pro rata (the expectation over random tie-breaking).
* :func:`bedroc` - Truchon & Bayly's Boltzmann-enhanced discrimination of ROC
  (J. Chem. Inf. Model. 2007, 47, 488), ``alpha = 80.5`` (80 % of the weight in
  the top 2 %); 1 for actives ranked first, 0 for actives ranked last.
* :func:`roc_curve`, :func:`enrichment_curve` - the curves behind the numbers.
* :func:`rmse`, :func:`pearson`, :func:`spearman`, :func:`kendall_tau` - regression quality.
* :func:`classification_metrics`, :func:`regression_metrics` - the dicts that go
  into a model card.

Every function takes plain sequences or NumPy arrays and returns floats (NaN when
a metric is undefined, e.g. AUROC without inactives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Truchon & Bayly's recommended early-recognition parameter.
BEDROC_ALPHA = 80.5

ArrayLike = Sequence[float] | np.ndarray


def _labels_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({len(y)} vs {len(s)})")
    if np.isnan(y).any():
        raise ValueError("labels contain NaN")
    return y > 0.5, np.where(np.isnan(s), -np.inf, s)


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks in ascending order; tied values get the mean of their ranks.

    ``average_ranks([10, 20, 20, 30]) == [1, 2.5, 2.5, 4]``. ``-inf`` values tie with
    each other (NaN is not allowed here).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], n]
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: probability that a random active outscores a random inactive (ties count 1/2).

    Parameters
    ----------
    labels
        1/True for actives, 0/False for inactives.
    scores
        Higher = more likely active.

    Returns
    -------
    float
        In [0, 1]; NaN without actives or without inactives.
    """
    y, s = _labels_scores(labels, scores)
    n_act, n_inact = int(y.sum()), int((~y).sum())
    if n_act == 0 or n_inact == 0:
        return float("nan")
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_act * (n_act + 1) / 2.0) / (n_act * n_inact))


def _descending_groups(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups from best to worst score: (group sizes, actives per group)."""
    order = np.argsort(-s, kind="mergesort")
    ss, ys = s[order], y[order]
    starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(ss)])
    actives = np.add.reduceat(ys.astype(np.float64), starts) if len(ss) else np.zeros(0)
    return sizes, actives


def enrichment_factor(labels: ArrayLike, scores: ArrayLike, fraction: float = 0.01) -> float:
    """Enrichment factor at ``fraction`` of the ranked list (EF1% for 0.01).

    ``EF = (actives in top n / n) / (actives / N)`` with ``n = ceil(fraction * N)``.
    The largest possible value is ``min(1 / fraction, N / actives)`` (roughly).

    Returns
    -------
    float
        NaN without actives or for an empty list.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y, s = _labels_scores(labels, scores)
    n_total, n_act = len(y), int(y.sum())
    if n_total == 0 or n_act == 0:
        return float("nan")
    n_sel = max(1, math.ceil(fraction * n_total - 1e-9))
    sizes, actives = _descending_groups(s, y)
    before = np.r_[0, np.cumsum(sizes)[:-1]]
    take = np.clip(n_sel - before, 0, sizes)  # how many of each tie group fall inside the cut
    found = float(np.sum(actives * take / sizes))
    return (found / n_sel) / (n_act / n_total)


def bedroc(labels: ArrayLike, scores: ArrayLike, alpha: float = BEDROC_ALPHA) -> float:
    """Boltzmann-enhanced discrimination of ROC (Truchon & Bayly 2007).

    ``RIE = sum_i exp(-alpha r_i / N) / (n/N * (1 - exp(-alpha)) / (exp(alpha/N) - 1))``
    over the actives' ranks ``r_i`` (1 = best score, ties averaged), rescaled
    between the RIE of the worst and the best possible ranking:
    ``BEDROC = (RIE - RIE_min) / (RIE_max - RIE_min)``.

    Returns
    -------
    float
        In [0, 1]; NaN without actives; 1.0 when every compound is active.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    y, s = _labels_scores(labels, scores)
    n_total, n_act = len(y), int(y.sum())
    if n_total == 0 or n_act == 0:
        return float("nan")
    ranks = (n_total + 1) - average_ranks(s)  # 1 = best
    ratio = n_act / n_total
    random_sum = ratio * (1.0 - math.exp(-alpha)) / math.expm1(alpha / n_total)
    rie = float(np.sum(np.exp(-alpha * ranks[y] / n_total))) / random_sum
    rie_max = (1.0 - math.exp(-alpha * ratio)) / (ratio * (1.0 - math.exp(-alpha)))
    rie_min = (1.0 - math.exp(alpha * ratio)) / (ratio * (1.0 - math.exp(alpha)))
    if rie_max == rie_min:
        return 1.0
    return float((rie - rie_min) / (rie_max - rie_min))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with one point per distinct score (tie groups are one step).

    Returns
    -------
    (fpr, tpr, thresholds)
        Arrays starting at (0, 0) with threshold ``+inf``; point ``k`` counts every
        compound with score >= ``thresholds[k]`` as predicted active. The trapezoid
        area under (fpr, tpr) equals :func:`auroc`.
    """
    y, s = _labels_scores(labels, scores)
    n_act, n_inact = int(y.sum()), int((~y).sum())
    sizes, actives = _descending_groups(s, y)
    order = np.argsort(-s, kind="mergesort")
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(int)
    tp = np.r_[0.0, np.cumsum(actives)]
    fp = np.r_[0.0, np.cumsum(sizes - actives)]
    thresholds = np.r_[np.inf, s[order][starts]] if len(s) else np.array([np.inf])
    tpr = tp / n_act if n_act else np.full_like(tp, np.nan)
    fpr = fp / n_inact if n_inact else np.full_like(fp, np.nan)
    return fpr, tpr, thresholds


def enrichment_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of actives found against fraction of the library screened (best scores first).

    Returns
    -------
    (screened, found)
        Both start at 0 and end at 1, one point per distinct score.
    """
    y, s = _labels_scores(labels, scores)
    sizes, actives = _descending_groups(s, y)
    n_total, n_act = len(y), int(y.sum())
    screened = np.r_[0.0, np.cumsum(sizes)] / max(n_total, 1)
    found = np.r_[0.0, np.cumsum(actives)] / n_act if n_act else np.full(len(sizes) + 1, np.nan)
    return screened, found


# --------------------------------------------------------------------------- regression


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"true and predicted values differ in length ({len(a)} vs {len(b)})")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root-mean-square error over pairs where both values are finite (NaN if none)."""
    a, b = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(a) else float("nan")


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation over finite pairs; NaN for fewer than 2 pairs or a constant side."""
    a, b = _pair(x, y)
    if len(a) < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (Pearson of average ranks) over finite pairs."""
    a, b = _pair(x, y)
    if len(a) < 2:
        return float("nan")
    return pearson(average_ranks(a), average_ranks(b))


def kendall_tau(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's τ-b (ties corrected) over finite pairs; NaN for fewer than 2 pairs or a constant side."""
    from scipy.stats import kendalltau

    a, b = _pair(x, y)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendalltau(a, b).statistic)


# --------------------------------------------------------------------------- summaries


def classification_metrics(labels: ArrayLike, scores: ArrayLike) -> dict[str, float]:
    """``n, n_active, auroc, ef1, ef5, bedroc`` of one ranking (higher score = more likely active)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    return dict(
        n=int(len(y)),
        n_active=int((y > 0.5).sum()),
        auroc=auroc(labels, scores),
        ef1=enrichment_factor(labels, scores, 0.01),
        ef5=enrichment_factor(labels, scores, 0.05),
        bedroc=bedroc(labels, scores),
    )


def regression_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, active_threshold: float | None = None, ranking_score: ArrayLike | None = None
) -> dict[str, float]:
    """``n, rmse, mae, pearson, spearman`` of predicted values; with a threshold also ranking metrics.

    Parameters
    ----------
    y_true, y_pred
        Measured and predicted values (e.g. pKd); non-finite pairs are skipped.
    active_threshold
        If given, compounds with ``y_true >= active_threshold`` count as actives and
        :func:`classification_metrics` of ``ranking_score`` (default ``y_pred``) are added.
    ranking_score
        Score to rank by (higher = better) for the correlations and the ranking
        metrics when ``y_pred`` is not on the assay's scale (e.g. a negated docking
        score); ``None``: ``y_pred``.
    """
    a, b = _pair(y_true, y_pred)
    rank_by = np.asarray(y_pred if ranking_score is None else ranking_score, dtype=np.float64).ravel()
    out = dict(
        n=int(len(a)),
        rmse=rmse(y_true, y_pred),
        mae=float(np.mean(np.abs(a - b))) if len(a) else float("nan"),
        pearson=pearson(y_true, rank_by),
        spearman=spearman(y_true, rank_by),
    )
    if active_threshold is not None:
        truth = np.asarray(y_true, dtype=np.float64).ravel()
        known = np.isfinite(truth)
        out.update(classification_metrics(truth[known] >= active_threshold, rank_by[known]))
        out["n"] = int(len(a))
    return out
