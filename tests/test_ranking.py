"""Ranking order: by docking score, by the GNN score, or by a consensus of both."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.ranking import gnn_summary, order_ranking


def _scores() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "a", "b", "c", "c"], "pose": [1, 2, 1, 1, 1],
                         "source": ["docked", "docked", "docked", "docked", "refined"],
                         "gnn_score": [0.2, 0.7, 0.5, 0.1, 0.9], "gnn_spread": [0.01, 0.02, 0.03, 0.04, 0.05]})


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
