"""How well a screen did: the share of the library's true best compounds among those it docked.

MolPAL's headline metric: with the full-library scores known (a lookup benchmark), take the
true top ``k`` = ``round(fraction * N)`` compounds (lower score = better) and count how many
of them the screen evaluated. Docking scores are rounded (Vina to 0.1 kcal/mol), so many
compounds tie at the k-th best score; :func:`top_fraction_found` counts the tie group
pro rata - the expected value over random tie-breaking - so the metric does not depend on
the table's row order. ``ties="molpal"`` gives MolPAL's own "fraction of top-k scores found"
instead (its analysis scripts match the found scores against the true top-k scores as
multisets): a found compound tied at the k-th score counts fully until the tie group's
places in the top k are used up, so it is never below the pro-rata value.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["TIES", "top_fraction_found"]


#: Ways :func:`top_fraction_found` counts compounds tied at the k-th best score.
TIES = ("pro_rata", "molpal")


def top_fraction_found(
    found: Iterable[float], all_scores: Iterable[float], fraction: float = 0.01, ties: str = "pro_rata"
) -> float:
    """Fraction of the true top-``fraction`` compounds that are among ``found``.

    Parameters
    ----------
    found
        Scores of the compounds the screen evaluated (a subset of ``all_scores``; NaN ignored).
    all_scores
        Scores of every compound in the library that has one (NaN ignored).
    fraction
        Size of the true top set as a fraction of the scored library (``k = round(fraction * N)``, at least 1).
    ties
        ``pro_rata`` (default) or ``molpal`` (module docstring).

    Returns
    -------
    float
        In [0, 1]: (found strictly better than the k-th best + found tied with it x the share of
        the tie group that belongs to the top k) / k; with ``molpal``, the found tied compounds
        count up to the tie group's places in the top k.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    pool = np.asarray([s for s in all_scores if np.isfinite(s)], dtype=np.float64)
    got = np.asarray([s for s in found if np.isfinite(s)], dtype=np.float64)
    if len(pool) == 0:
        return float("nan")
    k = max(1, int(round(fraction * len(pool))))
    threshold = np.sort(pool)[k - 1]
    better = int((pool < threshold).sum())
    tied = int((pool == threshold).sum())
    share = (k - better) / tied  # how much of the tie group the top k holds
    at_threshold = int((got == threshold).sum())
    if ties == "molpal":
        found_value = (got < threshold).sum() + min(at_threshold, k - better)
    else:
        found_value = (got < threshold).sum() + share * at_threshold
    return float(found_value / k)
