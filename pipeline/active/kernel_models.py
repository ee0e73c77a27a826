"""A Gaussian-process surrogate with the MinMax (count Tanimoto) kernel on count fingerprints.

:class:`TanimotoGPSurrogate` - exact GP regression of the docking score on Morgan and atom-pair
*count* fingerprints with the MinMax kernel ``k(a, b) = sum(min(a, b)) / sum(max(a, b))`` (the
Tanimoto similarity generalized to counts). With the few hundred to few thousand compounds an
active screen has docked, a GP is the natural model: it has two hyperparameters (signal and
noise variance, chosen by the marginal likelihood on every fit, so nothing is tuned per
dataset), it does not overfit a small training set the way a network does, and its predictive
spread is a posterior standard deviation rather than an ensemble's disagreement.

How the kernel is computed (why it scales): a count ``c`` of fingerprint bit ``i`` is written
as ``c`` binary "levels" ``(i, 1) ... (i, c)``, so ``sum(min(a, b))`` is the dot product of two
binary level vectors and ``sum(max(a, b)) = |a| + |b| - sum(min(a, b))``. The whole kernel
block between a chunk of the library and the training set is then one sparse matrix product,
at the cost of the ~100 levels a molecule sets.

Scale: fitting is ``O(n^3)`` in the training set ``n`` and the fitted model holds an ``n x n``
matrix. Above ``max_train`` compounds the fit keeps the best-scored half of ``max_train`` (the
region acquisition exploits) and a seeded random sample of the rest for the other half (so the
model still knows what a poor compound looks like: trained on the best alone, its prior mean
would call every unfamiliar compound good), so a fit stays seconds at any library size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .features import FingerprintFeatures
from .surrogate import Prediction

__all__ = ["TanimotoGPSurrogate", "count_levels", "minmax_kernel"]

#: Grids of the two hyperparameters (standardized score units), searched by marginal likelihood.
SIGNAL_GRID = np.logspace(-1.0, 1.0, 9)
NOISE_GRID = np.logspace(-5.0, 0.5, 23)


def count_levels(counts: sp.csr_matrix, max_count: int) -> sp.csr_matrix:
    """Binary level encoding of count fingerprints: bit ``i`` with count ``c`` sets columns ``i*max_count + 0..c-1``.

    Parameters
    ----------
    counts
        Count fingerprints, CSR ``(n, width)`` (non-negative integers as floats).
    max_count
        Counts above it are clipped (a substructure seen more than ``max_count`` times counts as ``max_count``).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, width * max_count)`` float64 matrix of ones; its row sums are the clipped counts' sums.
    """
    counts = counts.tocsr()
    reps = np.clip(np.rint(counts.data).astype(np.int64), 1, max_count)
    total = np.concatenate([[0], np.cumsum(reps)])
    row_nnz = total[counts.indptr[1:]] - total[counts.indptr[:-1]]
    base = np.repeat(counts.indices.astype(np.int64) * max_count, reps)
    # level index 0..c-1 within each bit's run
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    levels = np.arange(int(reps.sum()), dtype=np.int64) - starts
    indptr = np.concatenate([[0], np.cumsum(row_nnz)]).astype(np.int64)
    data = np.ones(int(reps.sum()), dtype=np.float64)
    return sp.csr_matrix((data, base + levels, indptr), shape=(counts.shape[0], counts.shape[1] * max_count))


def minmax_kernel(a: sp.csr_matrix, b: sp.csr_matrix, a_norm: np.ndarray, b_norm: np.ndarray) -> np.ndarray:
    """MinMax similarity between the rows of two level matrices (:func:`count_levels`), dense ``(len(a), len(b))``.

    ``a_norm`` and ``b_norm`` are the row sums of ``a`` and ``b``. Two empty rows have similarity 0.
    """
    shared = (a @ b.T).toarray()
    union = a_norm[:, None] + b_norm[None, :] - shared
    return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)


class TanimotoGPSurrogate:
    """Exact GP on count fingerprints with the MinMax kernel, refitted from scratch each round.

    Parameters
    ----------
    fingerprint, radius, n_bits
        Count fingerprint kinds (:data:`~.features.FINGERPRINTS`, concatenated), environment
        size and folded bits per kind.
    max_count
        Counts are clipped here before the kernel (see :func:`count_levels`).
    max_train
        Largest training set; above it the best-scored ``max_train // 2`` and a seeded random
        sample of the others are kept.
    cache
        Memoize fingerprints per SMILES (benchmarks only; see :mod:`.feature_cache`).
    """

    name = "gp"

    def __init__(
        self,
        fingerprint: Sequence[str] = ("morgan", "pair"),
        radius: int = 2,
        n_bits: int = 2048,
        max_count: int = 16,
        max_train: int = 4000,
        cache: bool = False,
    ) -> None:
        self.max_count, self.max_train = max_count, max_train
        self._features = FingerprintFeatures(fingerprint, radius, n_bits, cache)
        self._train: sp.csr_matrix | None = None
        self._train_norm = np.empty(0)
        self._alpha = np.empty(0)
        self._whiten = np.empty((0, 0))
        self._signal = 1.0
        self._center, self._scale = 0.0, 1.0

    def levels(self, smiles: Sequence[str]) -> tuple[sp.csr_matrix, np.ndarray]:
        """Level matrix (:func:`count_levels`) of ``smiles`` and the mask of those RDKit could read."""
        counts, valid = self._features(smiles)
        return count_levels(counts, self.max_count), valid

    def fit(self, smiles: Sequence[str], scores: np.ndarray, seed: int) -> dict[str, Any]:
        """Fit on the compounds with features and a finite score; hyperparameters by marginal likelihood.

        ``seed`` draws the random half of the training set when there are more than ``max_train``
        compounds; below that the fit is deterministic.
        """
        X, valid = self.levels(smiles)
        y = np.asarray(scores, dtype=np.float64)
        keep = np.flatnonzero(valid & np.isfinite(y))
        if len(keep) > self.max_train:  # lower score = better
            ranked = keep[np.argsort(y[keep], kind="stable")]
            best, rest = ranked[: self.max_train // 2], ranked[self.max_train // 2 :]
            others = np.random.default_rng(seed).choice(rest, self.max_train - len(best), replace=False)
            keep = np.sort(np.concatenate([best, others]))
        if len(keep) < 2:
            raise ValueError(f"a GP needs at least 2 scored compounds with features, got {len(keep)}")
        X, y = X[keep], y[keep]
        self._center, self._scale = float(y.mean()), float(y.std()) or 1.0
        z = (y - self._center) / self._scale
        norm = np.asarray(X.sum(axis=1)).ravel()
        K = minmax_kernel(X, X, norm, norm)
        eigval, eigvec = np.linalg.eigh(K)
        eigval = np.clip(eigval, 0.0, None)
        proj = eigvec.T @ z
        chosen = (-np.inf, 1.0, 1.0)
        for signal in SIGNAL_GRID:
            for noise in NOISE_GRID:
                d = signal * eigval + noise
                lml = -0.5 * float(np.sum(proj**2 / d)) - 0.5 * float(np.sum(np.log(d)))
                if lml > chosen[0]:
                    chosen = (lml, float(signal), float(noise))
        lml, signal, noise = chosen
        d = signal * eigval + noise
        self._alpha = signal * (eigvec @ (proj / d))  # k* . alpha with k* = K(x*, X) (unscaled)
        self._whiten = eigvec * (signal / np.sqrt(d))[None, :]
        self._signal = signal
        self._train, self._train_norm = X, norm
        return {"n_train": len(y), "signal": signal, "noise": noise, "log_marginal_likelihood": lml}

    def predict(self, smiles: Sequence[str]) -> Prediction:
        """Posterior mean and standard deviation of the latent score (objective units); NaN without features."""
        if self._train is None:
            raise RuntimeError("fit the surrogate before predicting")
        X, valid = self.levels(smiles)
        mean = np.full(len(smiles), np.nan)
        sd = np.full(len(smiles), np.nan)
        rows = np.flatnonzero(valid)
        if len(rows):
            Xv = X[rows]
            k = minmax_kernel(Xv, self._train, np.asarray(Xv.sum(axis=1)).ravel(), self._train_norm)
            mean[rows] = (k @ self._alpha) * self._scale + self._center
            var = self._signal - np.sum((k @ self._whiten) ** 2, axis=1)
            sd[rows] = np.sqrt(np.clip(var, 0.0, None)) * self._scale
        return Prediction(mean, sd)
