"""Ranking: the order (docking, GNN, consensus) and the rank stage on whole run folders.

The run-folder tests use the synthetic run of ``benchmarks/rank_scale.py`` (2,000 rows, every
failure path taken) and compare the rank stage's files with a plain pandas computation of
the same rules; small hand-made folders check the accounting error and an all-rejected library.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.layout import RunLayout, write_manifest
from pipeline.md_rescore import MODEL_PATH, RANKING_FEATURES
from pipeline.ranking import AccountingError, build_ranking, gnn_summary, order_ranking, rank_run, write_table_csv


def _scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "a", "b", "c", "c"],
            "pose": [1, 2, 1, 1, 1],
            "source": ["docked", "docked", "docked", "docked", "refined"],
            "gnn_score": [0.2, 0.7, 0.5, 0.1, 0.9],
            "gnn_spread": [0.01, 0.02, 0.03, 0.04, 0.05],
        }
    )


def test_gnn_summary_takes_best_docked_pose_and_refined_apart():
    summary = gnn_summary(_scores()).set_index("id")
    assert summary.loc["a", "gnn_score"] == 0.7 and summary.loc["a", "gnn_spread"] == 0.02
    assert summary.loc["c", "gnn_score"] == 0.1 and summary.loc["c", "gnn_score_refined"] == 0.9
    assert np.isnan(summary.loc["a", "gnn_score_refined"])


def test_order_by_gnn_docking_and_consensus():
    table = pd.DataFrame({"id": ["a", "b", "c"], "docking_score": [-9.0, -7.0, -8.0]}).merge(gnn_summary(_scores()))
    assert order_ranking(table, "docking")["id"].tolist() == ["a", "c", "b"]
    by_gnn = order_ranking(table, "gnn")
    assert by_gnn["id"].tolist() == ["a", "b", "c"] and by_gnn["rank"].tolist() == [1, 2, 3]
    # consensus = w z(gnn) + (1 - w) z(-docking), population z-scores over the library
    assert order_ranking(table, "consensus", 1.0)["id"].tolist() == ["a", "b", "c"]
    assert order_ranking(table, "consensus", 0.0)["id"].tolist() == ["a", "c", "b"]
    mixed = order_ranking(table, "consensus", 0.5).set_index("id")["consensus_score"]
    gnn, dock = np.array([0.7, 0.5, 0.1]), np.array([9.0, 7.0, 8.0])
    expected = 0.5 * (gnn - gnn.mean()) / gnn.std() + 0.5 * (dock - dock.mean()) / dock.std()
    assert mixed[["a", "b", "c"]].to_numpy() == pytest.approx(expected)


def test_compounds_without_gnn_score_sort_last():
    table = pd.DataFrame({"id": ["a", "b"], "docking_score": [-9.0, -7.0], "gnn_score": [np.nan, 0.3]})
    assert order_ranking(table, "gnn")["id"].tolist() == ["b", "a"]


# ---------------------------------------------------------------------------------------------- whole runs

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "rank_scale.py"
PRIORITY = ("HBDonor", "HBAcceptor", "Cationic", "Anionic", "CationPi", "PiCation", "PiStacking", "XBDonor")


def _benchmark():
    spec = importlib.util.spec_from_file_location("rank_scale", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict]:
    """2,000 generated input rows in 20 chunks (pair columns differ between chunks), every failure path taken."""
    root = tmp_path_factory.mktemp("scale") / "synthetic"
    info = _benchmark().generate_run(root, 2000, chunk_size=100)
    assert info["featurize_fails"] and info["score_fails"] and info["refine_fails"] and info["rejected"]
    return root, info


def _plain_pandas(
    run: Path, rank_by: str, max_spread: float | None = None, md_rerank: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rank stage's rules, written the straightforward way: concatenate every table, merge, apply per row.

    ``max_spread``: the domain check's fallback to docking of the compounds whose spread is
    above it, a mixed list ordered by percentiles. ``md_rerank``: the refined compounds reordered
    among their places by the with-MD score.
    """
    from pipeline.interactions import fingerprint_sort_key

    layout = RunLayout(run)
    chunks, batches = layout.chunks(), layout.batches()

    def tables(paths, **options):
        return pd.concat([pd.read_parquet(p, **options) for p in paths], ignore_index=True)

    def failures(paths):
        return pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths], ignore_index=True)

    inputs = tables([layout.chunk_table(c) for c in chunks])
    ligands = tables([layout.ligand_table(c) for c in chunks])
    poses = tables([layout.docked_table(c) for c in chunks])
    docked = poses.groupby("id").agg(docking_score=("docking_score", "min"), n_poses=("pose", "count")).reset_index()
    table = (
        inputs[["id", "input_id", "smiles"]]
        .merge(ligands[["id", "prepared_smiles", "heavy_atoms", "formal_charge", "rotatable_bonds"]], on="id")
        .merge(docked, on="id")
    )

    features = tables([layout.feature_table(c) for c in chunks]).sort_values(["id", "pose"]).drop_duplicates("id")
    pairs = sorted([c for c in features.columns if ":" in c], key=fingerprint_sort_key)
    features[pairs] = features[pairs].fillna(False).astype(bool)
    counts = [c for c in features.columns if c.startswith("n_")]

    def key(row):
        present = [c for c in pairs if row[c]]
        present.sort(key=lambda c: PRIORITY.index(c.split(":")[1]) if c.split(":")[1] in PRIORITY else len(PRIORITY))
        return "; ".join(present[:6])

    features["interactions"] = features.apply(key, axis=1)
    table = table.merge(features[["id", *counts, "interactions"]], on="id", how="left")

    refined = tables([layout.refined_table(b) for b in batches]).sort_values(["id", "interaction_energy", "pose"])
    md_names = {
        "pose": "md_pose",
        "rmsd_mean": "md_rmsd_mean",
        "rmsd_max": "md_rmsd_max",
        "rmsd_final": "md_rmsd_final",
        "pocket_backbone_rmsd": "md_pocket_backbone_rmsd",
        "interaction_energy": "md_interaction_energy",
        "interaction_energy_std": "md_interaction_energy_std",
    }
    md = refined.drop_duplicates("id")[["id", *md_names]].rename(columns=md_names)
    table = table.merge(md, on="id", how="left")
    refined_features = (
        tables([layout.feature_table(b) for b in batches]).sort_values(["id", "pose"]).drop_duplicates("id")
    )
    refined_pairs = [c for c in refined_features.columns if ":" in c]

    def persistent(row):
        found = sorted(((row[c], c) for c in refined_pairs if pd.notna(row[c]) and row[c] >= 0.5), reverse=True)[:6]
        return "; ".join(f"{c} ({v:.0%})" for v, c in found)

    refined_features["md_interactions"] = refined_features.apply(persistent, axis=1)
    table = table.merge(refined_features[["id", "md_interactions"]], on="id", how="left")

    scores = pd.read_parquet(layout.scores).sort_values(["id", "gnn_score", "pose"], ascending=[True, False, True])
    best = scores.drop_duplicates(["id", "source"])
    gnn = best[best["source"] == "docked"][["id", "gnn_score", "gnn_spread"]].merge(
        best[best["source"] == "refined"][["id", "gnn_score", "gnn_spread"]].rename(
            columns={"gnn_score": "gnn_score_refined", "gnn_spread": "gnn_spread_refined"}
        ),
        on="id",
        how="outer",
    )
    table = table.merge(gnn, on="id", how="left")

    refine_rows = failures([layout.refined_failures(b) for b in batches])
    reasons = refine_rows.groupby("id")["reason"].agg("; ".join)
    table["md_status"] = [
        "refined" if i in set(md["id"]) else "failed" if i in reasons.index else "not selected" for i in table["id"]
    ]
    table["md_reason"] = [reasons.get(i, "") if s == "failed" else "" for i, s in zip(table["id"], table["md_status"])]
    # did MD change the compound's GNN score, and by how much (after - before, refined compounds only)
    table["md_refined"] = table["md_status"] == "refined"
    table["md_score_delta"] = (table["gnn_score_refined"] - table["gnn_score"]).where(table["md_refined"])

    score_rows = pd.read_csv(layout.score_failures, dtype=str, keep_default_na=False)
    refined_score = score_rows["reason"].str.startswith("refined batch")
    secondary = pd.concat([failures([layout.feature_failures(c) for c in chunks]), score_rows[~refined_score]])
    unscored = set(table.loc[table["gnn_score"].isna(), "id"]) if rank_by != "docking" else set()
    fatal_rows = secondary["id"].isin(unscored)
    fatal = secondary[fatal_rows].groupby("id", sort=False).agg(stage=("stage", "first"), reason=("reason", "; ".join))
    fatal = fatal.reset_index()
    fatal["reason"] += f" (not ranked: ranking by {rank_by} needs a GNN score of a docked pose)"
    table = table[~table["id"].isin(fatal["id"])].copy()
    for column in counts:  # as a ranking merged after dropping them would be: integers where none is missing
        if table[column].notna().all():
            table[column] = table[column].astype("int64")
    if rank_by == "consensus":

        def z(values):
            return (values - values.mean()) / values.std(ddof=0)

        table["consensus_score"] = 0.5 * z(table["gnn_score"]) + 0.5 * z(-table["docking_score"])
    key_column = {"gnn": "gnn_score", "docking": "docking_score", "consensus": "consensus_score"}[rank_by]
    table["ranked_by"], table["domain_reason"] = rank_by, ""
    if rank_by != "docking" and max_spread is not None:
        high = table["gnn_spread"] > max_spread
        table.loc[high, "ranked_by"] = "docking"
        table.loc[high, "domain_reason"] = [f"spread {v:.2f} > {max_spread:.2f}" for v in table.loc[high, "gnn_spread"]]
    fell = table["ranked_by"] != rank_by
    if fell.any():  # percentiles: of the model score among the model-ranked, of docking among all
        kept = ~fell
        table["_key"] = np.nan
        table.loc[kept, "_key"] = (table.loc[kept, key_column].rank() - 0.5) / kept.sum()
        table.loc[fell, "_key"] = ((-table["docking_score"]).rank()[fell] - 0.5) / len(table)
        table = table.sort_values(["_key", "docking_score", "id"], ascending=[False, True, True]).drop(columns="_key")
    else:
        table = table.sort_values(
            [key_column, "docking_score", "id"], ascending=[rank_by == "docking", True, True], na_position="last"
        )
    # MD in the order: the refined compounds take each other's places, sorted by the with-MD score
    model = json.loads(MODEL_PATH.read_text())
    columns = {f: RANKING_FEATURES[f] for f in model["features"]}
    z = sum(
        w * (table[columns[f]] - m) / sd for f, m, sd, w in zip(columns, model["mean"], model["sd"], model["weights"])
    )
    table["md_rescore"] = (-z).where(table["md_refined"])
    table = table.reset_index(drop=True)
    places = [i for i, v in enumerate(table["md_rescore"]) if pd.notna(v)]
    moved = table.iloc[places].sort_values("md_rescore", kind="stable").index if md_rerank else table.index[places]
    new_order = list(table.index)
    for place, row in zip(places, moved):
        new_order[place] = row
    table = table.loc[new_order]
    table["md_rank_change"] = [
        (row - i) if pd.notna(v) else np.nan for i, (row, v) in enumerate(zip(table.index, table["md_rescore"]))
    ]
    table.insert(0, "rank", range(1, len(table) + 1))
    front = [
        "rank",
        "id",
        "input_id",
        "smiles",
        "prepared_smiles",
        "docking_score",
        "gnn_score",
        "gnn_spread",
        *(["consensus_score"] if rank_by == "consensus" else []),
        "gnn_score_refined",
        "gnn_spread_refined",
        "ranked_by",
        "domain_reason",
        "n_poses",
        "heavy_atoms",
        "formal_charge",
        "rotatable_bonds",
    ]
    md_tail = [
        "md_interactions",
        "md_refined",
        "md_score_delta",
        "md_rescore",
        "md_rank_change",
        "md_status",
        "md_reason",
    ]
    table = table[front + counts + ["interactions", *md_names.values(), *md_tail]]
    failed = pd.concat(
        [
            failures(
                [layout.input_failures]
                + [layout.ligand_failures(c) for c in chunks]
                + [layout.docked_failures(c) for c in chunks]
            ),
            fatal,
        ],
        ignore_index=True,
    )
    warned = pd.concat(
        [
            secondary[~fatal_rows],
            refine_rows,
            failures([layout.feature_failures(b) for b in batches]),
            score_rows[refined_score],
        ],
        ignore_index=True,
    )
    return table, failed, warned


@pytest.mark.parametrize("rank_by", ["gnn", "consensus", "docking"])
def test_rank_of_a_generated_run_equals_a_plain_pandas_computation(synthetic, tmp_path, rank_by):
    """The chunk-by-chunk, Arrow-based rank writes exactly the CSV files that the plain pandas
    computation (whole tables concatenated, row-wise apply) gives on the same 2,000 rows."""
    run, info = synthetic
    layout = RunLayout(run)
    result = rank_run(layout, layout.scores, layout.score_failures, rank_by=rank_by)
    expected = tmp_path / "expected"
    for frame, name in zip(_plain_pandas(run, rank_by), ("ranking.csv", "failures.csv", "pose_warnings.csv")):
        write_table_csv(frame, expected / name)
        assert (run / name).read_text() == (expected / name).read_text(), name
    _check_run(run, info, result, rank_by)
    # MD in the order: the refined compounds, in rank order, are sorted by their with-MD score and
    # some moved; every other compound is in the order rank_by gives it
    ranking = pd.read_csv(run / "ranking.csv", dtype={"id": str})
    refined = ranking[ranking["md_refined"]]
    assert len(refined) > 2 and refined["md_rescore"].notna().all() and refined["md_rescore"].is_monotonic_increasing
    assert (refined["md_rank_change"] != 0).any() and refined["md_rank_change"].sum() == 0
    others = ranking[~ranking["md_refined"]]
    assert others["md_rescore"].isna().all() and others["md_rank_change"].isna().all()
    if rank_by == "docking":
        assert others["docking_score"].is_monotonic_increasing


def test_domain_fallback_of_a_generated_run_equals_a_plain_pandas_computation(synthetic, tmp_path):
    """With the domain check, the compounds whose spread is above max_spread (gnn_spread is uniform
    in 0.01-0.2 here) are placed by their docking percentile among the consensus-ranked ones: the
    same CSV files as the plain pandas computation of that rule."""
    from pipeline.scoring.domain import DomainSettings, PocketRecord

    run, info = synthetic
    layout = RunLayout(run)
    domain = DomainSettings(max_pocket_distance=0.25, max_spread=0.15)
    pocket = PocketRecord("m", 0.1, "BRD4", 3)  # near a training pocket: only the spread decides
    # without the MD reordering, so that the consensus order of the model-ranked compounds can be checked below
    result = rank_run(
        layout, layout.scores, layout.score_failures, "consensus", domain=domain, pocket=pocket, md_rerank=False
    )
    expected = tmp_path / "expected"
    for frame, name in zip(
        _plain_pandas(run, "consensus", max_spread=0.15, md_rerank=False),
        ("ranking.csv", "failures.csv", "pose_warnings.csv"),
    ):
        write_table_csv(frame, expected / name)
        assert (run / name).read_text() == (expected / name).read_text(), name
    ranking = pd.read_csv(run / "ranking.csv", dtype={"id": str}, keep_default_na=False)
    fell, kept = ranking[ranking["ranked_by"] == "docking"], ranking[ranking["ranked_by"] == "consensus"]
    assert 0 < len(fell) < len(ranking) and len(fell) + len(kept) == len(ranking)
    assert (fell["gnn_spread"] >= 0.15).all() and (kept["gnn_spread"] <= 0.15).all()  # 4 decimals in the CSV
    assert fell["domain_reason"].str.fullmatch(r"spread 0\.\d\d > 0\.15").all() and (kept["domain_reason"] == "").all()
    assert kept["consensus_score"].is_monotonic_decreasing and fell["docking_score"].is_monotonic_increasing
    _check_run(run, info, result, "consensus")


def _check_run(run: Path, info: dict, result, rank_by: str) -> None:
    """What holds for every ranking of the synthetic run: nothing lost, MD optional, late failures."""
    ranking = pd.read_csv(run / "ranking.csv", dtype={"id": str}, keep_default_na=False)
    failures = pd.read_csv(run / "failures.csv", dtype=str, keep_default_na=False)
    assert len(ranking) + len(failures) == info["rows"] == result.ranking.num_rows + result.failures.num_rows
    # MD is optional: every compound whose refinement failed is still ranked, the failure a warning
    failed_md = ranking[ranking["md_status"] == "failed"]
    assert len(failed_md) == info["refine_fails"] and (failed_md["md_rmsd_mean"] == "").all()
    assert failed_md["md_reason"].str.contains("blew up").all()
    assert set(ranking["md_status"]) == {"refined", "failed", "not selected"}
    warnings = pd.read_csv(run / "pose_warnings.csv", dtype=str, keep_default_na=False)
    assert set(failed_md["id"]) <= set(warnings.loc[warnings["stage"] == "refine", "id"])
    assert not set(warnings.loc[warnings["stage"] == "refine", "id"]) & set(failures["id"])
    # a docked pose that cannot be featurized or scored: a failure when the order needs its GNN score
    late = failures["stage"].isin(["featurize", "score"]).sum()
    assert late == (0 if rank_by == "docking" else info["featurize_fails"] + info["score_fails"])


def _tiny_run(root: Path, ids: list[str], docked: list[str], failed: list[str] | None = None) -> RunLayout:
    """A run folder with one chunk: ``ids`` accepted, ``docked`` of them with a pose, ``failed`` (default:
    the others) failed at prepare."""
    layout = RunLayout(root)
    layout.chunks_dir.mkdir(parents=True)
    pd.DataFrame({"id": ids, "input_id": ids, "smiles": ["CCO"] * len(ids), "line": range(len(ids))}).to_parquet(
        layout.chunk_table("chunk_00000")
    )
    write_manifest(layout.chunks_dir, "chunks", ["chunk_00000"], rows=len(ids), accepted=len(ids), failed=0)
    for folder in (layout.ligands_dir, layout.docked_dir, layout.features_dir, layout.input_failures.parent):
        folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "id": docked,
            "smiles": "CCO",
            "prepared_smiles": "CCO",
            "heavy_atoms": 3,
            "formal_charge": 0,
            "rotatable_bonds": 0,
            "pdbqt": "",
        }
    ).to_parquet(layout.ligand_table("chunk_00000"))
    pd.DataFrame({"id": docked, "pose": 1, "docking_score": -5.0}).to_parquet(layout.docked_table("chunk_00000"))
    empty = pd.DataFrame(columns=["id", "stage", "reason"])
    failed = [i for i in ids if i not in docked] if failed is None else failed
    pd.DataFrame({"id": failed, "stage": "prepare", "reason": "invalid SMILES"}).to_csv(
        layout.ligand_failures("chunk_00000"), index=False
    )
    for path in (layout.docked_failures("chunk_00000"), layout.feature_failures("chunk_00000"), layout.input_failures):
        empty.to_csv(path, index=False)
    return layout


def test_a_lost_or_doubly_counted_compound_fails_the_run(tmp_path):
    """The end-of-rank check raises (nothing written) instead of back-filling an 'unknown' failure."""
    from pipeline.cli import main

    layout = _tiny_run(tmp_path / "ok", ["a", "b", "c"], ["a", "b"])
    ranked = build_ranking(layout)
    assert ranked.ranking.column("id").to_pylist() == ["a", "b"] and ranked.failures.column("id").to_pylist() == ["c"]

    lost = _tiny_run(tmp_path / "lost", ["a", "b", "c", "ghost"], ["a", "b"], ["c"])  # 'ghost': no pose, no failure
    with pytest.raises(AccountingError, match="ghost") as error:
        main(["rank", "--run-dir", str(lost.root)])
    assert error.value.missing == ["ghost"] and not lost.ranking.exists() and not lost.failures.exists()

    twice = _tiny_run(tmp_path / "twice", ["a", "b", "c"], ["a", "b"])
    pd.DataFrame({"id": ["c", "b"], "stage": "dock", "reason": "x"}).to_csv(
        twice.docked_failures("chunk_00000"), index=False
    )
    with pytest.raises(AccountingError) as error:
        build_ranking(twice)
    assert error.value.twice == ["b", "c"] and "counted twice" in str(error.value)


def test_a_library_where_every_row_is_rejected_ranks_selects_and_reports(tmp_path):
    """Zero chunks: select writes an empty batch manifest, rank a header-only ranking and every
    row in failures.csv, report a page."""
    from pipeline.cli import main
    from pipeline.config import validate_config, write_resolved_config

    layout = RunLayout(tmp_path / "results" / "empty")
    write_manifest(layout.chunks_dir, "chunks", [], rows=3, accepted=0, failed=3)
    layout.input_failures.parent.mkdir(parents=True)
    rows = pd.DataFrame({"id": ["x1", "x2", "x3"], "stage": "input", "reason": ["line 2: empty line"] * 3})
    rows.to_csv(layout.input_failures, index=False)
    config = validate_config(
        {
            "run": "empty",
            "library": {"path": str(tmp_path / "lib.smi")},
            "receptor": {"path": "r.pdb"},
            "box": {"center": [0, 0, 0], "size": [10, 10, 10]},
        }
    )
    write_resolved_config(config, layout.config)
    args = ["--run-dir", str(layout.root), "--config", str(layout.config)]
    assert main(["select", *args[:2], "--out-dir", str(layout.batches_dir), *args[2:]]) == 0
    assert layout.batches() == []
    assert main(["rank", *args]) == 0
    ranking = pd.read_csv(layout.ranking)
    assert len(ranking) == 0 and {"rank", "id", "docking_score", "md_status", "md_reason"} <= set(ranking.columns)
    assert pd.read_csv(layout.failures)["id"].tolist() == ["x1", "x2", "x3"]
    assert main(["report", *args]) == 0
    assert "0 compounds ranked, 3 failed" in layout.report_html.read_text()


def test_benchmark_quick_mode(tmp_path):
    """``benchmarks/rank_scale.py --n 10000``: generates the run, measures rank and report, writes the JSON."""
    out = tmp_path / "rank_scale.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--n", "10000", "--cache", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=BENCHMARK.parents[1],
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["n"] == 10000 and row["accounted"] and row["ranked"] + row["failed"] == 10000
    for stage in ("rank", "report"):
        assert row[stage]["returncode"] == 0 and 0 < row[stage]["peak_rss_mb"] < 2048 and row[stage]["seconds"] > 0


def test_report_reads_ids_that_pandas_would_take_for_missing_values(tmp_path):
    """Ids such as NA, None, null or nan are compounds, not missing values."""
    from pipeline.report.rundata import read_ranking

    ids = ["NA", "None", "null", "nan"]
    pd.DataFrame({"rank": [1, 2, 3, 4], "id": ids, "input_id": ids, "docking_score": [-7.0, -6.0, None, -5.0]}).to_csv(
        tmp_path / "ranking.csv", index=False
    )
    ranking = read_ranking(tmp_path / "ranking.csv")
    assert ranking["id"].tolist() == ids and ranking["input_id"].tolist() == ids
    assert ranking["docking_score"].isna().tolist() == [False, False, True, False]
