"""``results/index.html`` lists every run with its date, size and top hit (pipeline.report.index)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from pipeline.report.index import list_runs, read_run, write_index


def _run(folder, ids, scores, failures=0):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("run: {name: x}\n")
    ranking = pd.DataFrame(
        {
            "rank": range(1, len(ids) + 1),
            "id": ids,
            "smiles": ["c1ccccc1O"] * len(ids),
            "docking_score": scores,
            "ranked_by": ["docking"] * len(ids),
        }
    )
    ranking.to_csv(folder / "ranking.csv", index=False)
    pd.DataFrame({"id": [f"bad{i}" for i in range(failures)], "stage": "prepare", "reason": "x"}).to_csv(
        folder / "failures.csv", index=False
    )
    (folder / "report.html").write_text("<html></html>")


def test_index_lists_each_run_with_its_top_hit_and_counts(tmp_path):
    results = tmp_path / "results"
    _run(results / "ache", ["'=cmd", "b", "c"], [-9.5, -8.0, -7.0], failures=2)
    _run(results / "hsp90", ["h1"], [-6.1])
    (results / "running").mkdir()
    (results / "running" / "config.yaml").write_text("run: {}\n")
    (results / "not_a_run").mkdir()  # no config.yaml, no ranking: not listed

    entry = read_run(results / "ache")
    assert (entry.ranked, entry.failed, entry.top_id, entry.top_docking) == (3, 2, "=cmd", -9.5)
    assert entry.report == "ache/report.html" and entry.disk_bytes > 0
    names = [e.name for e in list_runs(results)]
    assert sorted(names) == ["ache", "hsp90", "running"] and names[-1] == "running"  # unranked last

    html = write_index(results).read_text()
    assert '<a href="ache/report.html">ache</a>' in html
    assert "=cmd" in html and "-9.50" in html and "no ranking yet" in html
    assert "not_a_run" not in html
    assert "Content-Security-Policy" in html


def test_report_subcommand_rewrites_the_index(tmp_path, monkeypatch):
    """The report stage ends by rewriting the index of its results folder, and never fails on it."""
    results = tmp_path / "results"
    _run(results / "other", ["x"], [-5.0])
    import pipeline.cli as cli

    calls = []

    def fake_build(run, *args, **kwargs):
        calls.append(run)

        class Summary:
            html, top_rows, figures, top_hits, top_hits_written = run / "report.html", 0, [], run / "t.sdf", 0

        return Summary()

    monkeypatch.setattr("pipeline.report.build_report", fake_build)
    (results / "new").mkdir()
    shutil.copy(Path(__file__).parents[1] / "config" / "config.yaml", results / "new" / "config.yaml")
    assert cli.main(["report", "--run-dir", str(results / "new")]) == 0
    assert calls and (results / "index.html").is_file()
    assert "other" in (results / "index.html").read_text()
