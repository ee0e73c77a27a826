"""The with-MD score and the reordering of refined compounds among their places."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.md_rescore import MODEL_PATH, MDRescore, load_md_rescore, reorder_refined


def test_refined_rows_swap_places_and_the_others_stay():
    order = np.array([4, 0, 3, 1, 2])  # rows in rank order
    score = np.array([np.nan, -5.0, np.nan, -9.0, -1.0])  # rows 1, 3, 4 refined
    # places of refined rows in the order: 0 (row 4), 2 (row 3), 3 (row 1) -> sorted: 3, 1, 4
    assert reorder_refined(order, score).tolist() == [3, 0, 1, 4, 2]
    assert reorder_refined(order, np.full(5, np.nan)).tolist() == order.tolist()
    tied = np.array([-1.0, -1.0, np.nan, np.nan, np.nan])
    assert reorder_refined(np.array([1, 0, 2, 3, 4]), tied).tolist() == [1, 0, 2, 3, 4]  # ties keep their order


def test_shipped_model_prefers_a_stronger_md_interaction_and_round_trips(tmp_path):
    model = load_md_rescore()
    assert set(model.features) >= {"docking_score", "interaction_energy"}
    assert model.provenance["series"] >= 5 and "held_out_tau" in model.provenance
    base = np.array([model.mean])
    stronger = base.copy()
    stronger[0, model.features.index("interaction_energy")] -= 10.0  # 10 kcal/mol more favourable
    assert model.score(stronger)[0] < model.score(base)[0]
    assert np.isnan(model.score(np.full((1, len(model.features)), np.nan))[0])
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model.to_json()))
    again = load_md_rescore(path)
    assert np.allclose(again.score(stronger), model.score(stronger))
    assert json.loads(MODEL_PATH.read_text())["features"] == list(model.features)


def test_a_model_with_an_unknown_feature_is_refused(tmp_path):
    bad = MDRescore(("docking_score",), np.zeros(1), np.ones(1), np.ones(1), {}).to_json()
    bad["features"] = ["logP"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="logP"):
        load_md_rescore(path)
