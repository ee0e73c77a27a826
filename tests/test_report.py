"""The screening report: report.html in a real browser, its numbers, top_hits.sdf and Snakemake's report.

One module-scoped screen of a labelled subset of the demo library (3 actives, 7 decoys)
runs the workflow twice: first without a GNN model (docking score ranking, MD-refined
top 2), then, after training a tiny GNN ensemble on the same complexes, with GNN scores.
The report of each pass is tested; a third variant without MD and without labels is built
from a copy of the run.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from chromium import HeadlessPage
from rdkit import Chem
from workflow_runs import run_snakemake

TOP_N = 6
N_ACTIVES, N_DECOYS = 3, 7


def _demo_subset(repo: Path, path: Path) -> pd.DataFrame:
    """The smallest demo actives and decoys (fewest heavy atoms dock fastest), in file order."""
    demo = pd.read_csv(repo / "resources" / "demo" / "library.csv")
    demo["heavy"] = [Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in demo["smiles"]]
    demo = demo.sort_values(["heavy", "id"], kind="mergesort")
    pick = pd.concat([demo[demo["active"] == 1].head(N_ACTIVES), demo[demo["active"] == 0].head(N_DECOYS)])
    pick = pick.sort_index()[["id", "smiles", "active"]]
    pick.to_csv(path, index=False)
    return pick


def _config(repo: Path, library: Path) -> dict:
    demo = repo / "resources" / "demo"
    return {
        "run": "demo",
        "seed": 42,
        "library": {"path": str(library), "chunk_size": 5},
        "receptor": {"path": str(demo / "ACHE_target.pdbqt")},
        "box": {"vina_config": str(demo / "ACHE_conf.txt")},
        "docking": {"exhaustiveness": 1, "n_poses": 3},
        "dask": {"n_workers": 1},
        "refine": {"top_n": 2, "length_ps": 0.5, "frame_interval_ps": 0.25, "minimize_iterations": 50},
        "score": {"enabled": False},
        "report": {"top_n": TOP_N},
    }


@pytest.fixture(scope="module")
def demo(repo, tmp_path_factory):
    """The screened demo subset: pass 1 (docking + MD) saved aside, then pass 2 with a tiny GNN."""
    work = tmp_path_factory.mktemp("report_demo")
    library = work / "library.csv"
    picked = _demo_subset(repo, library)
    config = _config(repo, library)
    result = run_snakemake(work, config)
    assert result.returncode == 0, result.stderr[-3000:]
    run = work / "results" / "demo"
    docking_only = work / "docking_only"
    docking_only.mkdir()
    for name in ("report.html", "top_hits.sdf", "ranking.csv"):
        shutil.copy(run / name, docking_only / name)

    models = work / "models"
    config["train"] = {
        "name": "tiny",
        "models_dir": str(models),
        "n_models": 2,
        "max_epochs": 3,
        "patience": 2,
        "batch_size": 4,
        "split": "random",
        "fractions": [0.5, 0.25, 0.25],
        "threads": 1,
        "architecture": {"hidden": 16, "layers": 2, "head_hidden": 16},
    }
    result = run_snakemake(work, config, "train")
    assert result.returncode == 0, result.stderr[-3000:]
    config["score"] = {"enabled": True, "model": str(models / "tiny"), "rank_by": "gnn"}
    result = run_snakemake(work, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return SimpleNamespace(work=work, run=run, config=config, library=picked, docking_only=docking_only)


def _ranking(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str, "input_id": str})


class _Cells(HTMLParser):
    """The attributes of every <td>, <tr> inside #top-hits, section ids and figure images of a page."""

    def __init__(self):
        super().__init__()
        self.cells, self.sections, self.images = [], [], []
        self.top_hit_rows = 0
        self._table = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
        elif tag == "td":
            self.cells.append(attrs)
        elif tag == "tr" and self._table == "top-hits":
            self.top_hit_rows += 1
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


def _parse(path: Path) -> _Cells:
    parser = _Cells()
    parser.feed(path.read_text())
    return parser


def _metric(page: _Cells, score: str, metric: str) -> float:
    found = [c["data-value"] for c in page.cells if c.get("data-score") == score and c.get("data-metric") == metric]
    assert len(found) == 1, f"{metric} of {score} not in the report"
    return float(found[0])


def _auroc_by_pairs(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC counted pair by pair: the share of (active, inactive) pairs where the active scores higher."""
    actives, inactives = scores[labels == 1], scores[labels == 0]
    wins = sum((a > i) + 0.5 * (a == i) for a in actives for i in inactives)
    return wins / (len(actives) * len(inactives))


# ---------------------------------------------------------------------------------------------- browser


def test_report_renders_in_headless_chromium(demo, chromium):
    """Acceptance: the demo report loads without console errors or network requests, shows the
    top-hits table with the expected number of rows and at least three figures; the table sorts."""
    ranking = _ranking(demo.run / "ranking.csv")
    with HeadlessPage(chromium) as page:
        page.load((demo.run / "report.html").as_uri())
        assert page.console_errors == []
        assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
        rows = page.evaluate("document.querySelectorAll('#top-hits tbody tr').length")
        assert rows == min(TOP_N, len(ranking)) == TOP_N
        widths = page.evaluate("[...document.querySelectorAll('figure img')].map(i => i.naturalWidth)")
        assert len(widths) >= 3 and all(w > 100 for w in widths), widths
        svgs = page.evaluate("document.querySelectorAll('#top-hits td.structure svg').length")
        assert svgs == TOP_N
        headers = page.evaluate("[...document.querySelectorAll('#top-hits th')].map(h => h.textContent)")
        assert {
            "GNN score ± spread",
            "docking score (kcal/mol)",
            "MD ligand RMSD (Å)",
            "key interactions",
            "label",
        } <= set(headers), headers
        ids = page.evaluate("[...document.querySelectorAll('#top-hits tbody tr')].map(r => r.cells[2].dataset.value)")
        assert ids == ranking["id"].head(TOP_N).tolist()

        column = headers.index("docking score (kcal/mol)")
        page.evaluate(f"document.querySelectorAll('#top-hits th')[{column}].click()")
        shown = page.evaluate(
            f"[...document.querySelectorAll('#top-hits tbody tr')]"
            f".map(r => parseFloat(r.cells[{column}].dataset.value))"
        )
        assert shown == sorted(ranking["docking_score"].head(TOP_N).tolist())
        assert page.console_errors == []

        # the same check does catch a broken page
        broken = demo.work / "broken.html"
        broken.write_text("<html><body><script>undefinedFunction();</script></body></html>")
        page.load(broken.as_uri())
        assert any("undefinedFunction" in e for e in page.console_errors)


# ---------------------------------------------------------------------------------------------- numbers


def test_report_auroc_equals_the_one_computed_from_ranking_csv(demo):
    """Acceptance: with the labelled demo library, the report's AUROC for the docking score equals
    the value computed here from ranking.csv and the library's labels."""
    ranking = _ranking(demo.run / "ranking.csv")
    labels = ranking["input_id"].map(dict(zip(demo.library["id"], demo.library["active"]))).to_numpy()
    assert not np.isnan(labels).any() and 0 < labels.sum() < len(labels)
    page = _parse(demo.run / "report.html")
    expected = _auroc_by_pairs(labels, -ranking["docking_score"].to_numpy())
    assert _metric(page, "docking_score", "auroc") == pytest.approx(expected, abs=1e-12)
    expected_gnn = _auroc_by_pairs(labels, ranking["gnn_score"].to_numpy())
    assert _metric(page, "gnn_score", "auroc") == pytest.approx(expected_gnn, abs=1e-12)
    for score in ("docking_score", "gnn_score"):
        assert 0.0 <= _metric(page, score, "bedroc") <= 1.0
        assert _metric(page, score, "ef1") >= 0.0
    assert "enrichment" in page.sections


def test_report_funnel_and_sections(demo):
    page = _parse(demo.run / "report.html")
    assert page.sections[:4] == ["settings", "funnel", "top-hits", "scores"]
    assert {"interactions", "enrichment", "config"} <= set(page.sections)
    text = (demo.run / "report.html").read_text()
    ranking = _ranking(demo.run / "ranking.csv")
    failures = pd.read_csv(demo.run / "failures.csv")
    # MD of a docked pose can blow up on one machine and not another: count what this run refined
    refined = int((ranking["md_status"] == "refined").sum())
    assert refined + int((ranking["md_status"] == "failed").sum()) == 2  # refine.top_n: 2, all still ranked
    for stage, count in (
        ("input rows", N_ACTIVES + N_DECOYS),
        ("refined by MD", refined),
        ("scored by GNN", int(ranking["gnn_score"].notna().sum())),
        ("ranked", len(ranking)),
        ("failed", len(failures)),
    ):
        assert f'<td>{stage}</td><td class="num" data-value="{count}">{count}</td>' in text, stage
    assert "GNN score (highest first)" in text  # this pass asks for rank_by: gnn explicitly
    # nothing is fetched: no external source, link, stylesheet or font (SVG namespace URIs are names, not requests)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", text)
    figures = sorted(p.name for p in (demo.run / "figures").glob("*.png"))
    assert figures == ["enrichment.png", "funnel.png", "interaction_heatmap.png", "score_distributions.png"]
    assert len(page.images) == len(figures) and all(src.startswith("data:image/png;base64,") for src in page.images)


# ---------------------------------------------------------------------------------------------- top hits


def _check_top_hits(sdf: Path, ranking: pd.DataFrame, run: Path, top_n: int = TOP_N) -> list[Chem.Mol]:
    mols = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False)]
    assert len(mols) == top_n and all(m is not None for m in mols)
    assert [m.GetProp("_Name") for m in mols] == ranking["id"].head(top_n).tolist()
    for mol, (_, row) in zip(mols, ranking.head(top_n).iterrows()):
        conf = mol.GetConformer()
        assert conf.Is3D()
        xyz = conf.GetPositions()
        assert np.ptp(xyz[:, 2]) > 1.0  # really 3D, not a flat drawing
        assert any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
        heavy = sum(a.GetAtomicNum() > 1 for a in mol.GetAtoms())
        assert heavy == row["heavy_atoms"]
        props = set(mol.GetPropNames())
        assert set(ranking.columns) <= props, set(ranking.columns) - props
        assert float(mol.GetProp("docking_score")) == pytest.approx(row["docking_score"], abs=1e-4)
        assert int(mol.GetProp("rank")) == row["rank"]
        refined = pd.notna(row.get("md_pose"))
        assert mol.GetProp("pose_source") == ("refined" if refined else "docked")
        if refined:
            assert float(mol.GetProp("md_rmsd_mean")) == pytest.approx(row["md_rmsd_mean"], abs=1e-4)
            source = [
                m
                for p in sorted((run / "refined").glob("batch_*.sdf"))
                for m in Chem.SDMolSupplier(str(p), removeHs=False)
                if m.GetProp("_Name") == row["id"] and int(m.GetProp("pose")) == int(mol.GetProp("pose"))
            ]
            assert np.allclose(source[0].GetConformer().GetPositions(), xyz, atol=1e-3)
        else:
            assert mol.GetProp("md_rmsd_mean") == ""
    return mols


def test_top_hits_sdf_reads_back_with_every_score(demo):
    """Acceptance: N molecules with 3D coordinates and hydrogens, every ranking column as a property;
    refined compounds carry their refined pose."""
    ranking = _ranking(demo.run / "ranking.csv")
    mols = _check_top_hits(demo.run / "top_hits.sdf", ranking, demo.run)
    for column in ("gnn_score", "gnn_spread", "gnn_score_refined", "docking_score", "md_interaction_energy"):
        assert column in mols[0].GetPropNames()
    refined = [m for m in mols if m.GetProp("pose_source") == "refined"]
    assert len(refined) == int(ranking.head(TOP_N)["md_pose"].notna().sum())


def test_top_hits_of_the_whole_ranking_carry_the_refined_poses(demo, tmp_path):
    """The same with every ranked compound in top_hits.sdf, so that a refined one is always among them."""
    from pipeline.report import build_report

    ranking = _ranking(demo.run / "ranking.csv")
    config = yaml.safe_load((demo.run / "config.yaml").read_text())
    summary = build_report(
        demo.run, config, tmp_path / "report.html", tmp_path / "top.sdf", tmp_path / "figures", top_n=len(ranking)
    )
    mols = _check_top_hits(tmp_path / "top.sdf", ranking, demo.run, top_n=len(ranking))
    assert summary.top_hits_written == len(ranking)
    assert sum(m.GetProp("pose_source") == "refined" for m in mols) == int(ranking["md_pose"].notna().sum()) >= 1


def test_report_without_gnn_scores(demo):
    """Pass 1 (no model): ranked by docking score, no GNN column, enrichment for the docking score only."""
    ranking = _ranking(demo.docking_only / "ranking.csv")
    assert "gnn_score" not in ranking.columns
    page = _parse(demo.docking_only / "report.html")
    assert page.top_hit_rows == TOP_N + 1  # header row + one per hit
    text = (demo.docking_only / "report.html").read_text()
    assert "GNN score ± spread" not in text and "MD ligand RMSD" in text
    labels = ranking["input_id"].map(dict(zip(demo.library["id"], demo.library["active"]))).to_numpy()
    assert _metric(page, "docking_score", "auroc") == pytest.approx(
        _auroc_by_pairs(labels, -ranking["docking_score"].to_numpy()), abs=1e-12
    )
    assert not [c for c in page.cells if c.get("data-score") == "gnn_score"]
    assert "docking score (lowest first)" in text and "no GNN score was computed in this run" in text
    _check_top_hits(demo.docking_only / "top_hits.sdf", ranking, demo.run)


def test_the_report_says_why_the_ranking_sorts_by_docking_score(repo):
    """The default (docking) is explained with the model card's held-out figures; a chosen GNN ranking is flagged."""
    import json

    from pipeline.report.build import ranking_rationale

    card = json.loads((repo / "models" / "default" / "card.json").read_text())
    why = ranking_rationale("docking", card)
    assert "score.rank_by: docking" in why and "not been shown to rank better than docking" in why
    assert "0.443" in why and "0.570" in why  # the card's leave-one-target-out AUROC, GNN then docking
    gnn = ranking_rationale("gnn", card)
    assert "Chosen in the run&#x27;s config" in gnn or "Chosen in the run's config" in gnn
    assert "did not beat docking" in gnn
    assert "did not beat docking" not in ranking_rationale("gnn", {})


def test_report_without_md_and_without_labels(demo, tmp_path):
    """A run without refinement and an unlabelled library: no MD columns, no enrichment, docked poses only."""
    from pipeline.report import build_report

    run = tmp_path / "results" / "plain"
    shutil.copytree(
        demo.run,
        run,
        ignore=shutil.ignore_patterns("refine*", "frames", "batch_*", "report.html", "top_hits.sdf", "figures"),
    )
    ranking = _ranking(run / "ranking.csv")
    ranking.drop(columns=[c for c in ranking.columns if c.startswith("md_") or c.endswith("_refined")]).to_csv(
        run / "ranking.csv", index=False
    )
    config = yaml.safe_load((demo.run / "config.yaml").read_text())
    config["report"]["label_column"] = "no_such_column"
    config["refine"]["enabled"] = False
    summary = build_report(run, config, top_n=4)
    page = _parse(run / "report.html")
    assert summary.top_rows == 4 and page.top_hit_rows == 5
    assert "enrichment" not in page.sections and summary.metrics == []
    assert "MD ligand RMSD" not in (run / "report.html").read_text()
    assert len(page.images) >= 3
    mols = [m for m in Chem.SDMolSupplier(str(run / "top_hits.sdf"), removeHs=False)]
    assert len(mols) == summary.top_hits_written == 4
    assert {m.GetProp("pose_source") for m in mols} == {"docked"}


def test_report_command_needs_a_ranked_run(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["report", "--run-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("vscreen report: error: no ranking.csv in") and "vscreen rank" in error


# ---------------------------------------------------------------------------------------------- snakemake --report


def test_snakemake_report_includes_ranking_and_figures(demo, repo):
    """Snakemake's own report holds ranking.csv, report.html, top_hits.sdf and every figure."""
    out = demo.work / "snakemake_report.zip"
    result = run_snakemake(demo.work, demo.config, "--report", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    names = {Path(n).name for n in zipfile.ZipFile(out).namelist()}
    assert {
        "ranking.csv",
        "report.html",
        "top_hits.sdf",
        "funnel.png",
        "score_distributions.png",
        "interaction_heatmap.png",
        "enrichment.png",
    } <= names, names


# ---------------------------------------------------------------------------------------------- pieces


def test_failures_group_by_kind_of_reason():
    from pipeline.report.funnel import failure_reasons, failures_by_stage, reason_kind

    assert (
        reason_kind("line 7: duplicate id 'x' (id 'x' first used on line 3)")
        == "duplicate id '…' (id '…' first used on line #)"
    )
    failures = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "stage": ["prepare", "prepare", "input", "dock"],
            "reason": ["150 heavy atoms (max 80)", "95 heavy atoms (max 80)", "line 3: empty line", "Vina failed"],
        }
    )
    grouped = failure_reasons(failures)
    assert grouped["stage"].tolist() == ["input", "prepare", "dock"]
    assert grouped.loc[grouped["stage"] == "prepare", "compounds"].item() == 2
    assert grouped.loc[grouped["stage"] == "prepare", "examples"].item() == "a, b"
    assert failures_by_stage(failures).to_dict() == {"input": 1, "prepare": 2, "dock": 1}


def test_labels_come_from_a_csv_column_or_an_sd_property(tmp_path):
    from pipeline.report.labels import label_ranking, read_labels

    csv = tmp_path / "lib.csv"
    csv.write_text("ID,SMILES,Active\nm1,CCO,yes\nm2,CCN,0\nm2,CCC,1\nm3,CCCl,maybe\n")
    labels = read_labels({"path": str(csv), "format": "auto", "id_column": "id"})
    assert labels.to_dict() == pytest.approx({"m1": 1.0, "m2": 0.0, "m3": float("nan")}, nan_ok=True)
    assert read_labels({"path": str(csv), "format": "auto", "id_column": "id"}, "activity") is None

    sdf = tmp_path / "lib.sdf"
    writer = Chem.SDWriter(str(sdf))
    for name, active in (("s1", "active"), ("s2", "inactive")):
        mol = Chem.MolFromSmiles("CCO")
        mol.SetProp("_Name", name)
        mol.SetProp("active", active)
        writer.write(mol)
    writer.close()
    labels = read_labels({"path": str(sdf), "format": "auto", "id_property": None})
    assert labels.to_dict() == {"s1": 1.0, "s2": 0.0}
    ranking = pd.DataFrame({"id": ["s2", "x"], "input_id": ["s2", "x"]})
    assert label_ranking(ranking, labels).tolist() == pytest.approx([0.0, float("nan")], nan_ok=True)
    smi = tmp_path / "lib.smi"
    smi.write_text("CCO s1\n")
    assert read_labels({"path": str(smi), "format": "auto"}) is None


def test_page_escapes_text_and_allows_no_outside_source():
    from pipeline.report import html

    table = html.table(
        [html.Column("id"), html.Column("score", numeric=True)],
        [[html.Cell(html.text("<script>alert(1)</script>")), html.num_cell(float("nan"))]],
    )
    page = html.page("t <b>", "s", [("a", "A", table)])
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page and "<title>t &lt;b&gt;</title>" in page
    assert '<td class="num">–</td>' in page  # a missing number has no sort value, so it sorts last
    # scripts: only the page's own, named by its hash (no 'unsafe-inline', no inline handlers)
    script_src = re.search(r"script-src ([^;]*);", page).group(1)
    assert script_src == html.script_hash(html.JS) and "unsafe" not in script_src
    assert page.count("<script>") == 1 and f"<script>{html.JS}</script>" in page
    assert re.search(r"\son[a-z]+=", page) is None and "addEventListener" in html.JS


def test_sent_to_md_section_lists_the_scorers_choice_and_what_md_did(tmp_path):
    """The "Sent to MD" section from a run's batch, refined and failure tables: the rule and k, per
    compound its UCB, score, spread, docking rank, MD result (a retry and a failure with their reasons),
    MD's score change and final rank."""
    from pipeline.io import write_failures
    from pipeline.layout import RunLayout, write_manifest
    from pipeline.report.md_selection import md_selection_section, selected_compounds
    from pipeline.report.rundata import RunData

    layout = RunLayout(tmp_path / "run")
    layout.refined_dir.mkdir(parents=True)
    write_manifest(layout.batches_dir, "batches", ["batch_00000"])
    pd.DataFrame(
        {
            "id": ["b", "c", "a"],
            "pose": [1, 1, 2],
            "docking_score": [-8.0, -7.0, -9.5],
            "compound_rank": [1, 2, 3],
            "docking_rank": [5, 3, 1],
            "gnn_score": [0.3, 0.6, 0.5],
            "gnn_spread": [0.4, 0.01, 0.05],
            "ucb": [0.7, 0.61, 0.55],
            "chunk": "chunk_00000",
            "select_by": "ucb",
        }
    ).to_parquet(layout.batch_table("batch_00000"))
    pd.DataFrame(
        {
            "id": ["b", "a"],
            "pose": [1, 2],
            "md_attempts": [2, 1],
            "md_retry_reason": ["simulation blew up at frame 2", ""],
        }
    ).to_parquet(layout.refined_table("batch_00000"))
    write_failures(
        [dict(id="c", stage="refine", reason="pose 1: every attempt blew up")], layout.refined_failures("batch_00000")
    )
    ranking = pd.DataFrame(
        {"rank": [1, 2, 3, 4], "id": ["a", "z", "c", "b"], "md_score_delta": [0.1, np.nan, np.nan, -0.2]}
    )
    config = {"refine": {"enabled": True, "select_by": "ucb", "ucb_k": 1.0, "top_n": 3, "top_fraction": None,
                         "poses_per_compound": 1, "retry_timestep_fs": 2.0}}  # fmt: skip
    run = RunData(layout.root, config, ranking, pd.DataFrame(), pd.DataFrame(), None)

    chosen = selected_compounds(run)
    assert chosen["id"].tolist() == ["b", "c", "a"] and chosen["rank"].tolist() == [4, 3, 1]
    assert chosen["md_result"].tolist() == ["refined after a retry", "failed", "refined"]
    page = md_selection_section(run)
    assert "refine.select_by: ucb with k = 1 (refine.ucb_k)" in page
    # a and c are among the 3 best docked compounds; b (docking rank 5) is the scorer's own pick
    assert "2 of 3 would have been sent by docking score too" in page
    assert "MD refined 2 of 3 (1 after a retry at 2 fs without HMR" in page and "1 failed" in page
    assert 'data-value="0.7"' in page and 'title="first attempt: simulation blew up at frame 2"' in page
    assert 'title="pose 1: every attempt blew up"' in page and 'data-value="-0.2"' in page
    config["refine"]["enabled"] = False
    assert md_selection_section(run) == ""
