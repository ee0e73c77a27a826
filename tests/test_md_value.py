"""benchmarks/md_value.py: the "with MD" score is fitted on training series only and learns within-series order."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import affinity_eval as ae  # noqa: E402
import md_value  # noqa: E402


def _panel(seed: int = 0, groups: int = 6, per_series: int = 8) -> pd.DataFrame:
    """Synthetic MD rows: exp ΔG follows the MD interaction energy, the docking score is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        ie = rng.normal(-40, 5, per_series)
        for i in range(per_series):
            rows.append(
                dict(
                    series=f"S{g}",
                    target=f"T{g}",
                    group=f"G{g}",
                    ligand_name=str(i),
                    exp_dG=0.2 * ie[i] + rng.normal(0, 0.3),
                    docking_score=rng.normal(-8, 1),
                    interaction_energy=ie[i],
                    interaction_energy_std=abs(rng.normal(2, 0.5)),
                    rmsd_mean=abs(rng.normal(1, 0.3)),
                    pocket_backbone_rmsd=abs(rng.normal(0.5, 0.1)),
                )
            )
    return pd.DataFrame(rows)


def test_pairwise_fit_learns_the_within_series_order_out_of_fold():
    df = _panel()
    folds = ae.protein_folds(df)
    df["docking_md"] = ae.cross_validated(df, folds, md_value.fit_pairwise)
    df["vina"] = df["docking_score"]
    with_md = ae.per_series_correlations(df, "docking_md")
    without = ae.per_series_correlations(df, "vina")
    assert with_md["tau"].mean() > 0.6 > abs(without["tau"].mean())
    weights = md_value.fold_weights(df, folds)
    # lower interaction energy = tighter here, so its weight (higher value = tighter) is negative
    assert len(weights) == 5 and all(w["interaction_energy"] < 0 for w in weights)


def test_pairwise_fit_does_not_read_the_test_labels():
    df = _panel(1)
    train, test = df[df.group != "G0"], df[df.group == "G0"]
    shuffled = test.assign(exp_dG=np.random.default_rng(3).permutation(test["exp_dG"].to_numpy()))
    np.testing.assert_array_equal(md_value.fit_pairwise(train, test), md_value.fit_pairwise(train, shuffled))
