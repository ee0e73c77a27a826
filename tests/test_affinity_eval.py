"""The affinity evaluation helpers (benchmarks/affinity_eval.py) on synthetic series: no shared data needed."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import affinity_eval as ae  # noqa: E402

# A congeneric series (para-substituted benzamides) and molecules unrelated to it.
ANALOGUE_TRAIN = "NC(=O)c1ccc(Cl)cc1"
ANALOGUE_TEST = "NC(=O)c1ccc(Br)cc1"
UNRELATED = "CCCCCCCCCC(=O)O"


def synthetic(n_series: int = 12, per_series: int = 8, seed: int = 0) -> pd.DataFrame:
    """Series on a few targets (two isoform pairs) with exp ΔG and scores of known quality."""
    rng = np.random.default_rng(seed)
    targets = ["PIM1", "PIM2", "FKBP12", "FKBP1A", "ADK", "DHFR", "BRD2", "BRDT", "TYMS", "KRAS-G12D", "MDM2", "EED"]
    substituents = ["F", "Cl", "Br", "C", "CC", "OC", "N", "C#N", "O", "CF", "CCC", "OCC"]
    rows = []
    for s in range(n_series):
        target = targets[s % len(targets)]
        exp = rng.normal(-9, 1.0, per_series)
        for i in range(per_series):
            rows.append(
                dict(
                    series=f"S{s:02d}",
                    target=target,
                    smiles_heavy=f"NC(=O)c1ccc({substituents[i % len(substituents)]})cc1" + "C" * s,
                    heavy_atoms=10 + i,
                    exp_dG=exp[i],
                )
            )
    df = pd.DataFrame(rows)
    df["group"] = df.target.map(ae.protein_groups(df.target.unique()))
    df["perfect"] = df.exp_dG
    df["reversed"] = -df.exp_dG
    df["noise"] = rng.normal(size=len(df))
    df["good"] = df.exp_dG + 0.3 * rng.normal(size=len(df))
    return df


def test_groups_join_isoforms_and_synonyms():
    groups = ae.protein_groups(
        ["FKBP12", "FKBP1A", "PIM1", "PIM2", "PDE4B", "PDE4D", "PARP1", "TNKS", "MAPK1", "MAPK10", "KRAS-G12D"]
        + ["CTSL", "CTSS", "PIK3CA", "PIK3C3", "BCL2L1", "BCL6", "MAP3K5", "MAPKAPK2", "SLC5A2", "SLC6A1"]
    )
    assert groups["FKBP12"] == groups["FKBP1A"]
    assert groups["PIM1"] == groups["PIM2"]
    assert groups["PDE4B"] == groups["PDE4D"]
    assert groups["PARP1"] == groups["TNKS"]
    assert groups["MAPK1"] == groups["MAPK10"]
    assert groups["CTSL"] == groups["CTSS"]
    assert groups["PIK3CA"] == groups["PIK3C3"]
    assert ae.gene_symbol("KRAS-G12D") == "KRAS"
    # Shared letters of unrelated proteins do not join them.
    assert groups["BCL2L1"] != groups["BCL6"]
    assert len({groups["MAPK1"], groups["MAP3K5"], groups["MAPKAPK2"]}) == 3
    assert groups["SLC5A2"] != groups["SLC6A1"]
    table = ae.group_table(groups)
    assert "FKBP12, FKBP1A" in table and "BCL6" not in table


def test_folds_keep_groups_whole_and_balanced():
    df = synthetic(n_series=24)
    folds = ae.protein_folds(df, k=5, seed=3)
    assert folds.index.equals(df.index)
    assert df.assign(fold=folds).groupby("group").fold.nunique().eq(1).all()
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    # Deterministic and independent of the row order.
    shuffled = df.sample(frac=1.0, random_state=1)
    assert ae.protein_folds(shuffled, k=5, seed=3).sort_index().equals(folds.sort_index())
    # Greedy largest-first: no fold is more than one group heavier than another.
    loads = df.groupby(folds).size()
    assert loads.max() - loads.min() <= df.groupby("group").size().max()


def test_unseen_mask_analogue_seen_unrelated_unseen():
    mask = ae.unseen_mask([ANALOGUE_TRAIN, "c1ccccc1O"], [ANALOGUE_TEST, UNRELATED, ANALOGUE_TRAIN])
    assert mask.tolist() == [False, True, False]
    sim = ae.max_similarity([ANALOGUE_TRAIN], [ANALOGUE_TEST, UNRELATED])
    assert sim[0] >= 0.4 > sim[1]
    assert ae.unseen_mask([], [UNRELATED]).tolist() == [True]


def test_per_series_tau_perfect_and_reversed():
    df = synthetic()
    perfect = ae.per_series_correlations(df, "perfect")
    reverse = ae.per_series_correlations(df, "reversed")
    assert list(perfect.columns) == ["series", "target", "group", "n", "tau", "rho"]
    assert len(perfect) == df.series.nunique()
    assert np.allclose(perfect.tau, 1.0) and np.allclose(perfect.rho, 1.0)
    assert np.allclose(reverse.tau, -1.0) and np.allclose(reverse.rho, -1.0)
    # Small series, constant truth or non-finite values are left out.
    small = df[df.series == "S00"].head(4)
    assert ae.per_series_correlations(small, "perfect").empty
    flat = df[df.series == "S01"].assign(exp_dG=-9.0)
    assert ae.per_series_correlations(flat, "perfect").empty


def test_paired_bootstrap_identical_and_better():
    df = synthetic(n_series=24)
    noise = ae.per_series_correlations(df, "noise")
    same = ae.paired_bootstrap(noise, noise, "tau", n=500, seed=1)
    assert same["diff"] == 0.0
    for unit in ("series", "group"):
        assert same[unit]["diff"] == [0.0, 0.0]
    good = ae.per_series_correlations(df, "good")
    better = ae.paired_bootstrap(good, noise, "tau", n=500, seed=1)
    assert better["n_series"] == 24 and better["n_groups"] == df.group.nunique()
    for unit in ("series", "group"):
        assert better[unit]["diff"][0] > 0
        assert better[unit]["a"][0] <= better["mean_a"] <= better[unit]["a"][1]
    # Reproducible: the same seed gives the same intervals.
    assert ae.paired_bootstrap(good, noise, "tau", n=500, seed=1) == better


def test_cross_validated_ligand_only_uses_training_folds_only():
    df = synthetic(n_series=24)
    folds = ae.protein_folds(df, k=3, seed=0)
    seen = []

    def fit_predict(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        assert set(train.group).isdisjoint(test.group)
        seen.append(len(test))
        return -test.heavy_atoms.to_numpy(dtype=float)

    scores = ae.cross_validated(df, folds, fit_predict)
    assert sum(seen) == len(df) and scores.notna().all()
    ridge = ae.cross_validated(df, folds, lambda tr, te: ae.ligand_only_ridge(tr, te, alphas=(1.0, 10.0)))
    assert ridge.notna().all() and ridge.std() > 0


def test_summarize_and_markdown():
    df = synthetic(n_series=24)
    df["heavy_atom_count"] = ae.heavy_atom_score(df)
    df["unseen"] = np.arange(len(df)) % 4 != 0
    summary = ae.summarize(df, ["good", "noise"], baselines=["heavy_atom_count"], n=200)
    assert summary["n_series"] == 24
    assert set(summary["methods"]) == {"good", "noise", "heavy_atom_count"}
    assert summary["methods"]["good"]["all"]["tau"]["mean"] > 0.5
    assert summary["methods"]["good"]["unseen"]["tau"]["n_series"] == 24  # 6 unseen of 8 per series
    assert set(summary["differences"]) == {"good - heavy_atom_count", "noise - heavy_atom_count"}
    assert "heavy_atom_count - good" not in summary["differences"]
    table = summary["per_series"]["all"]
    assert table["columns"][:4] == ["series", "target", "group", "good:n"] and len(table["rows"]) == 24
    text = ae.to_markdown(summary)
    assert "good - heavy_atom_count" in text and "mean τ" in text


def test_early_enrichment_rule():
    labels = np.r_[np.ones(5), np.zeros(395)]  # N = 400: the top 1 % is 4 compounds
    scores = -np.arange(400.0)
    refused = ae.early_enrichment(labels, scores)
    assert isinstance(refused, str) and "fewer than 5" in refused
    labels = np.r_[np.ones(5), np.zeros(396)]  # N = 401: 5 compounds
    scores = -np.arange(401.0)
    result = ae.early_enrichment(labels, scores)
    assert result["n_top"] == 5 and math.isclose(result["ef"], 401 / 5) and math.isclose(result["bedroc"], 1.0)


def test_loto_auroc_paired_difference():
    rng = np.random.default_rng(0)
    rows = []
    for target in ("aces", "akt2"):
        labels = np.r_[np.ones(20), np.zeros(200)]
        rows.append(
            pd.DataFrame(
                dict(target=target, active=labels, good=labels + 0.5 * rng.normal(size=220), bad=rng.normal(size=220))
            )
        )
    table = pd.concat(rows, ignore_index=True)
    result = ae.loto_auroc(table, ["bad", "good"], n=300)
    assert result["mean_auroc"]["good"] > 0.8
    diff = result["differences"]["good - bad"]
    assert diff["mean"]["ci"][0] > 0 and set(diff["per_target"]) == {"aces", "akt2"}
    assert all(isinstance(row["early"], str) for row in result["per_target"])  # N = 220 < 401


def test_load_unifep_reads_odd_rows(tmp_path):
    (tmp_path / "systems.csv").write_text(
        "folder,series,target,system,ligands\n"
        "ChEMBL__PIM1__X,ChEMBL,PIM1,ChEMBL|PIM1|X,3\n"
        "folder,series,target,system,ligands\n"
        "Hermite__FKBP12,Hermite,FKBP12,Hermite|FKBP12,2\n"
    )
    (tmp_path / "ChEMBL__PIM1__X").mkdir()
    (tmp_path / "ChEMBL__PIM1__X" / "result_dG.csv").write_text(
        "ligand_smiles,ligand_name,exp_dG (kcal/mol),fep_dG (kcal/mol),fep_dG_std (kcal/mol)\n"
        "[H]OC([H])([H])[H],a,-7.5,-7.0,0.3\n"
        "not_a_smiles,b,-8.0,-7.2,0.2\n"
        "[H]N([H])([H])C([H])([H])[H],c,-6.0,-6.1,0.4\n"  # a charge-less ammonium, repaired
    )
    (tmp_path / "Hermite__FKBP12").mkdir()
    (tmp_path / "Hermite__FKBP12" / "result_dG.csv").write_text(
        "ligand_smiles,ligand_name,exp_dG (kcal/mol),fep_dG (kcal/mol)\nCCO,d,-5.0,-5.5\nCCN,e,x,-5.1\n"
    )
    df = ae.load_unifep(tmp_path)
    assert df.ligand_name.tolist() == ["a", "c", "d"]
    assert df.smiles_heavy.tolist() == ["CO", "C[NH3+]", "CCO"] and df.heavy_atoms.tolist() == [2, 2, 3]
    assert df.smiles_repaired.tolist() == [False, True, False]
    assert df.series.tolist() == ["ChEMBL__PIM1__X"] * 2 + ["Hermite__FKBP12"]
    assert np.isnan(df.fep_dG_std.iloc[2])
    skipped = df.attrs["skipped"]
    assert [s["ligand_name"] for s in skipped] == ["b", "e"]
    assert all("result_dG.csv" in s["file"] for s in skipped)
    (tmp_path / "Hermite__FKBP12" / "result_dG.csv").unlink()
    with pytest.raises(FileNotFoundError, match="Hermite__FKBP12"):
        ae.load_unifep(tmp_path)


def test_ridge_primal_and_dual_agree_and_centering():
    rng = np.random.default_rng(0)
    for shape in ((30, 80), (90, 20)):  # fewer samples than features (dual) and more (primal)
        x, y = rng.normal(size=shape), rng.normal(size=shape[0])
        expected = np.linalg.solve(x.T @ x + 3.0 * np.eye(shape[1]), x.T @ y)
        assert np.allclose(ae._ridge_path(x, y, [3.0])[:, 0], expected)
    values, series = rng.normal(size=(40, 3)), rng.integers(0, 5, 40)
    centered = ae._series_centered(values, series)
    for s in np.unique(series):
        assert np.allclose(centered[series == s].mean(axis=0), 0.0)
