"""The MinMax-kernel GP surrogate: the level encoding is the exact count Tanimoto, and the GP behaves like one."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.active import make_surrogate
from pipeline.active.features import fingerprint_counts
from pipeline.active.kernel_models import TanimotoGPSurrogate, count_levels, minmax_kernel

SMILES = [
    "CCO",
    "CCCCCCCCCCO",
    "c1ccccc1O",
    "CC(=O)Nc1ccc(O)cc1",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "OC(=O)c1ccccc1OC(C)=O",
    "CCCCCCCCCCCCCCCCCCCC",
]


def _brute_minmax(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = np.maximum(x, y).sum()
            out[i, j] = np.minimum(x, y).sum() / union if union else 0.0
    return out


@pytest.mark.parametrize("max_count", [1, 3, 16])
def test_level_encoding_gives_the_minmax_similarity_of_clipped_counts(max_count):
    counts, valid = fingerprint_counts(SMILES, ("morgan", "pair"), 2, 256)
    assert valid.all() and counts.max() > 3  # the long chains repeat substructures
    levels = count_levels(counts, max_count)
    norm = np.asarray(levels.sum(axis=1)).ravel()
    clipped = np.minimum(counts.toarray(), max_count)
    assert np.allclose(norm, clipped.sum(axis=1))
    assert np.allclose(minmax_kernel(levels, levels, norm, norm), _brute_minmax(clipped, clipped))


def test_gp_interpolates_is_deterministic_and_is_unsure_far_from_its_data():
    train = ["C" * k + "O" for k in range(1, 21)] + ["c1ccccc1" + "C" * k for k in range(1, 11)]
    y = np.array([-0.3 * len(s) for s in train])
    gp = make_surrogate("gp")
    assert isinstance(gp, TanimotoGPSurrogate)
    info = gp.fit(train, y, seed=0)
    assert info["n_train"] == len(train)
    far = ["O=S(=O)(N)c1ccc(cc1)C(F)(F)F", "not a smiles"]
    pred = gp.predict(train + far)
    assert np.isnan(pred.mean[-1]) and np.isnan(pred.sd[-1]) and np.isfinite(pred.mean[:-1]).all()
    # fits its training data closely, and a molecule unlike all of it is the least certain
    assert np.corrcoef(pred.mean[: len(train)], y)[0, 1] > 0.95
    assert pred.sd[len(train)] > pred.sd[: len(train)].max()
    again = make_surrogate("gp")
    again.fit(train, y, seed=5)
    assert np.allclose(again.predict(train + far).mean, pred.mean, equal_nan=True)


def test_gp_above_max_train_keeps_the_best_half_and_a_seeded_sample():
    train = ["C" * k + "O" for k in range(1, 41)]
    y = np.arange(40, dtype=float)  # the first compounds are the best (lowest)
    a = TanimotoGPSurrogate(max_train=10)
    assert a.fit(train, y, seed=1)["n_train"] == 10
    b = TanimotoGPSurrogate(max_train=10)
    b.fit(train, y, seed=1)
    kept = a._train.toarray()
    assert np.array_equal(kept, b._train.toarray())
    levels, _ = a.levels(train[:5])
    for row in levels.toarray():  # the 5 best are all in the training set
        assert (kept == row).all(axis=1).any()
    with pytest.raises(ValueError, match="at least 2"):
        TanimotoGPSurrogate().fit(["CCO", "bad"], np.array([1.0, 2.0]), seed=0)
