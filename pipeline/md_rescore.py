"""The stability-aware final score of refined compounds: the docking score corrected by what MD says of the pose.

A refined compound has, besides its Vina score, the descriptors of its MD run (mean
protein-ligand interaction energy and its spread over the frames, the ligand's RMSD from its
docked pose, the pocket backbone RMSD: :data:`pipeline.ranking.MD_COLUMNS`). The with-MD score
is a linear function of the standardized descriptors, ``-w . (x - mean) / sd`` (lower =
predicted tighter, like a docking score), whose weights were fitted by pairwise logistic
regression on which of two ligands of a congeneric series binds tighter (Uni-FEP series,
measured ΔG; ``benchmarks/md_value.py`` fits it on every series and writes
``pipeline/data/md_rescore.json``, with the protein-grouped held-out figures that justify it).

How the ranking uses it (:func:`reorder_refined`): the refined compounds keep the places the
ranking gave them and are reordered among those places by the with-MD score. The evaluation
compared ligands that were all refined, within a series, so that is the comparison the score
is trusted for; a compound that was not refined is neither moved nor compared with a refined one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MODEL_PATH", "RANKING_FEATURES", "MDRescore", "load_md_rescore", "reorder_refined"]

#: The fitted model shipped with the package (written by ``benchmarks/md_value.py``).
MODEL_PATH = Path(__file__).resolve().parent / "data" / "md_rescore.json"

#: Feature name in the fit (the MD panel's rows) -> column of ``ranking.csv``.
RANKING_FEATURES = {
    "docking_score": "docking_score",
    "interaction_energy": "md_interaction_energy",
    "interaction_energy_std": "md_interaction_energy_std",
    "rmsd_mean": "md_rmsd_mean",
    "pocket_backbone_rmsd": "md_pocket_backbone_rmsd",
}


@dataclass(frozen=True)
class MDRescore:
    """A fitted with-MD score: feature names, standardization and weights (positive = higher value, tighter).

    Attributes
    ----------
    features
        Feature names, keys of :data:`RANKING_FEATURES`.
    mean, sd
        Standardization of each feature (the training set's).
    weights
        Pairwise-logistic weights on the standardized features.
    provenance
        Where the fit came from and how it did on held-out proteins (free-form, for the report).
    """

    features: tuple[str, ...]
    mean: np.ndarray
    sd: np.ndarray
    weights: np.ndarray
    provenance: dict[str, Any]

    def score(self, values: np.ndarray) -> np.ndarray:
        """With-MD score of each row of ``values`` (``(n, len(features))``, kcal/mol and Å); NaN where a value is missing."""
        values = np.asarray(values, dtype=float).reshape(-1, len(self.features))
        return -(((values - self.mean) / self.sd) @ self.weights)

    def to_json(self) -> dict[str, Any]:
        """The JSON object :func:`load_md_rescore` reads."""
        return dict(
            features=list(self.features),
            mean=[float(v) for v in self.mean],
            sd=[float(v) for v in self.sd],
            weights=[float(v) for v in self.weights],
            provenance=self.provenance,
        )


@cache
def load_md_rescore(path: str | Path = MODEL_PATH) -> MDRescore:
    """Read a fitted with-MD score (:meth:`MDRescore.to_json`).

    Raises
    ------
    ValueError
        A feature the ranking has no column for, or lists of different lengths.
    """
    raw = json.loads(Path(path).read_text())
    features = tuple(raw["features"])
    unknown = [f for f in features if f not in RANKING_FEATURES]
    if unknown:
        raise ValueError(f"{path}: features {unknown} have no ranking column (known: {list(RANKING_FEATURES)})")
    mean, sd, weights = (np.asarray(raw[k], dtype=float) for k in ("mean", "sd", "weights"))
    if not len(features) == len(mean) == len(sd) == len(weights):
        raise ValueError(f"{path}: features, mean, sd and weights differ in length")
    return MDRescore(features, mean, np.where(sd > 0, sd, 1.0), weights, raw.get("provenance", {}))


def reorder_refined(order: np.ndarray, md_score: np.ndarray) -> np.ndarray:
    """Reorder the compounds with a with-MD score among the places they hold in ``order``.

    Parameters
    ----------
    order
        Row indices in rank order.
    md_score
        With-MD score per row (indexed like the table, not like ``order``); NaN = not refined
        (or a descriptor missing): such a row keeps its place.

    Returns
    -------
    numpy.ndarray
        The new order: the same rows; the places held by scored rows are filled with those
        rows sorted by ``md_score`` (lowest first; ties keep their previous order).
    """
    order = np.asarray(order, dtype=np.int64)
    scores = np.asarray(md_score, dtype=float)[order]
    places = np.flatnonzero(np.isfinite(scores))
    out = order.copy()
    out[places] = order[places[np.argsort(scores[places], kind="stable")]]
    return out
