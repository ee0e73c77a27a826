"""The scorer's applicability domain: pocket descriptors of the shipped receptors, training pockets in
a pair model's card, the score stage's ``domain.json``, the ranking's fallback to docking and the
report's sentence about it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipeline.box import Box, box_around_ligand, read_vina_config
from pipeline.config import ConfigError, schema_default, settings_from_section, validate_config
from pipeline.ranking import order_ranking
from pipeline.scoring.domain import (
    DESCRIPTOR_NAMES,
    NO_POCKETS,
    DomainError,
    DomainSettings,
    PocketRecord,
    TrainingPockets,
    assess_pocket,
    nearest_training_pocket,
    pocket_descriptor,
    pocket_distance,
    read_pocket_record,
)

REPO = Path(__file__).resolve().parents[1]
ABL = REPO / "resources" / "fixtures" / "1iep" / "1iep_receptorH.pdb"
ACHE = REPO / "resources" / "demo" / "ACHE_target.pdbqt"
PLG = REPO / "tests" / "data" / "unifep_ChEMBL__PLG__CHEMBL3295545" / "protein.pdb.gz"


@pytest.fixture(scope="module")
def pockets() -> dict[str, tuple[Path, Box, np.ndarray]]:
    """The three shipped receptors (PDB with hydrogens, PDBQT, gzipped PDB) with their own boxes."""
    boxes = {
        "ABL1": (ABL, read_vina_config(ABL.parent / "1iep_box.txt")),
        "ACHE": (ACHE, read_vina_config(ACHE.parent / "ACHE_conf.txt")),
        "PLG": (PLG, box_around_ligand(PLG.parent / "ref_ligand.sdf")),
    }
    return {name: (path, box, pocket_descriptor(path, box)) for name, (path, box) in boxes.items()}


# --------------------------------------------------------------------------- descriptor and distance


def test_one_pocket_is_at_distance_zero_and_other_proteins_are_far(pockets, tmp_path):
    threshold = schema_default("score", "max_pocket_distance")
    for name, (path, box, desc) in pockets.items():
        assert desc.shape == (len(DESCRIPTOR_NAMES),) and desc.sum() == pytest.approx(1.0) and (desc >= 0).all()
        assert pocket_distance(desc, pocket_descriptor(path, box)) == 0.0, name
    # hydrogens and the ligand are not the pocket: the receptor without its hydrogens has the same one
    stripped = tmp_path / "no_h.pdb"
    stripped.write_text("".join(l for l in ABL.read_text().splitlines(True) if l[76:78].strip() != "H"))
    assert len(stripped.read_text()) < 0.7 * len(ABL.read_text())
    assert pocket_distance(pockets["ABL1"][2], pocket_descriptor(stripped, pockets["ABL1"][1])) == pytest.approx(0.0)
    # the box centre moved by 2 Å: still the same pocket; unrelated proteins: beyond the threshold
    path, box, desc = pockets["ABL1"]
    moved = pocket_distance(desc, pocket_descriptor(path, np.asarray(box.center) + [2.0, 0.0, 0.0]))
    assert 0 < moved < 0.12 < threshold
    names = list(pockets)
    apart = [pocket_distance(pockets[a][2], pockets[b][2]) for a in names for b in names if a < b]
    assert min(apart) > 0.35 > threshold and max(apart) <= 1.0
    distance, index = nearest_training_pocket(desc, np.array([pockets["ACHE"][2], desc, pockets["PLG"][2]]))
    assert (distance, index) == (0.0, 1)
    with pytest.raises(ValueError, match="no training pockets"):
        nearest_training_pocket(desc, [])


def test_a_box_centre_away_from_the_protein_has_no_pocket(pockets):
    with pytest.raises(DomainError, match="no protein residue .* within 8 Å"):
        pocket_descriptor(ABL, (500.0, 500.0, 500.0))


# --------------------------------------------------------------------------- the ranking's fallback


def _library() -> pd.DataFrame:
    # b and e disagree among the members (spread above 1.5); b docks best, e worst
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "docking_score": [-6.0, -11.0, -7.0, -8.0, -5.0, -9.0],
            "gnn_score": [0.9, 0.8, 0.7, 0.6, 0.95, 0.5],
            "gnn_spread": [0.1, 2.0, 0.1, 0.1, 3.0, 0.2],
        }
    )


def test_compounds_above_max_spread_are_placed_by_their_docking_percentile():
    """a, c, d, f by the model: percentiles 7/8, 5/8, 3/8, 1/8 among those four; b (best docking
    of six) at 11/12 comes first, e (worst docking) at 1/12 last."""
    settings = DomainSettings(max_spread=1.5)
    near = PocketRecord("m", 0.05, "ABL1", 2)
    ranked = order_ranking(_library(), "gnn", domain=settings, pocket=near)
    assert ranked["id"].tolist() == ["b", "a", "c", "d", "f", "e"] and ranked["rank"].tolist() == list(range(1, 7))
    by = ranked.set_index("id")
    assert by["ranked_by"].to_dict() == dict(a="gnn", b="docking", c="gnn", d="gnn", e="docking", f="gnn")
    assert by.loc["b", "domain_reason"] == "spread 2.00 > 1.50" and by.loc["e", "domain_reason"] == "spread 3.00 > 1.50"
    assert (by.loc[["a", "c", "d", "f"], "domain_reason"] == "").all()
    # without the check (or with it off) the model ranks all six; the columns are there either way
    for plain in (
        order_ranking(_library(), "gnn"),
        order_ranking(_library(), "gnn", domain=DomainSettings(False, 0.25, 1.5)),
    ):
        assert plain["id"].tolist() == ["e", "a", "b", "c", "d", "f"]
        assert set(plain["ranked_by"]) == {"gnn"} and set(plain["domain_reason"]) == {""}


def test_a_pocket_far_from_every_training_pocket_ranks_all_by_docking():
    far = PocketRecord("m", 0.41, "BRD4", 3)
    docking = order_ranking(_library(), "docking")["id"].tolist()
    assert docking == ["b", "f", "d", "c", "a", "e"]
    for rank_by in ("gnn", "consensus"):
        ranked = order_ranking(_library(), rank_by, domain=DomainSettings(), pocket=far)
        assert ranked["id"].tolist() == docking, rank_by
        assert set(ranked["ranked_by"]) == {"docking"}
        assert set(ranked["domain_reason"]) == {"pocket distance 0.41 > 0.25 to nearest training pocket 'BRD4'"}
    # a model with no training pockets recorded is not checked on distance
    unknown = PocketRecord("m", note=NO_POCKETS)
    assert order_ranking(_library(), "gnn", domain=DomainSettings(), pocket=unknown)["id"].tolist()[0] == "e"
    # rank_by docking: nothing changes but the columns
    ranked = order_ranking(_library(), "docking", domain=DomainSettings(max_spread=1.5), pocket=far)
    assert ranked["id"].tolist() == docking and set(ranked["domain_reason"]) == {""}


def test_settings_defaults_are_the_schema_defaults_and_are_validated():
    keys = ("domain_check", "max_pocket_distance", "max_spread")
    assert [getattr(DomainSettings(), k) for k in keys] == [schema_default("score", k) for k in keys]
    base = {
        "run": "r",
        "library": {"path": "x.smi"},
        "receptor": {"path": "r.pdb"},
        "box": {"center": [0, 0, 0], "size": [20, 20, 20]},
    }
    cfg = validate_config(dict(base, score={"max_spread": 1.5}))
    assert settings_from_section(DomainSettings, cfg, "score") == DomainSettings(True, 0.25, 1.5)
    with pytest.raises(ConfigError, match="score.max_pocket_distance"):
        validate_config(dict(base, score={"max_pocket_distance": 2}))


# --------------------------------------------------------------------------- model folders and the score stage


@pytest.fixture(scope="module")
def untrained():
    from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA
    from pipeline.scoring.pair_model import PairModelConfig
    from pipeline.scoring.pair_train import PairTrainSettings, fit_ensemble

    small = PairModelConfig(hidden=8, layers=1, rbf_size=8, pair_hidden=8, pair_rbf_size=8)
    return fit_ensemble([], DEFAULT_PAIR_SCHEMA, small, PairTrainSettings(members=2, epochs=0))


def test_a_pair_model_folder_records_its_training_pockets(untrained, pockets, tmp_path):
    from pipeline.scoring.ensemble import ModelError, read_card
    from pipeline.scoring.pair_folder import load_pair_model, save_pair_model

    trained_on = {"ABL1": pockets["ABL1"][2], "PLG": pockets["PLG"][2]}
    folder = save_pair_model(untrained, tmp_path / "with_pockets", pockets=trained_on)
    model = load_pair_model(folder)
    assert model.training_pockets.names == ("ABL1", "PLG")
    assert model.training_pockets.vectors == pytest.approx(np.array(list(trained_on.values())), abs=1e-6)
    assert read_card(folder)["training_pockets"]["descriptor"] == "vscreen-pocket/1"
    # a folder written without them (as before) still loads, and its domain check says so
    old = save_pair_model(untrained, tmp_path / "old")
    assert "training_pockets" not in read_card(old) and load_pair_model(old).training_pockets is None
    record = assess_pocket(read_card(old), ABL, pockets["ABL1"][1])
    assert record.distance is None and record.note == NO_POCKETS and len(record.descriptor) == 25
    # the card is validated: a malformed entry is refused before any weights are read
    card = json.loads((folder / "card.json").read_text())
    card["training_pockets"]["vectors"] = "not a list"
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="training_pockets/vectors"):
        load_pair_model(folder)
    # fine-tuning keeps the pretrained model's pockets next to the new one
    merged = TrainingPockets.of({"ACHE": pockets["ACHE"][2]}).merged(model.training_pockets)
    assert merged.names == ("ACHE", "ABL1", "PLG") and merged.vectors.shape == (3, 25)


def test_the_score_stage_writes_the_pocket_record_the_ranking_reads(untrained, pockets, tmp_path):
    from pipeline.layout import RunLayout
    from pipeline.scoring.domain import pocket_reason
    from pipeline.scoring.pair_folder import save_pair_model
    from pipeline.scoring.score import write_pocket_record

    layout = RunLayout(tmp_path / "run")
    layout.receptor_dir.mkdir(parents=True)
    layout.receptor_pdb.write_text(ABL.read_text())
    pockets["ABL1"][1].to_json(layout.box_json)
    models = tmp_path / "models"
    save_pair_model(untrained, models / "kinase", pockets={"ABL1": pockets["ABL1"][2], "PLG": pockets["PLG"][2]})
    save_pair_model(untrained, models / "esterase", pockets={"ACHE": pockets["ACHE"][2]})

    record = write_pocket_record(layout, "kinase", models)
    assert read_pocket_record(layout.domain) == record
    assert (record.distance, record.nearest, record.training_pockets) == (0.0, "ABL1", 2)
    assert pocket_reason(record, DomainSettings()) == ""

    far = write_pocket_record(layout, "esterase", models)
    assert far.nearest == "ACHE" and far.distance > 0.25
    assert pocket_reason(far, DomainSettings()) == (
        f"pocket distance {far.distance:.2f} > 0.25 to nearest training pocket 'ACHE'"
    )
    assert pocket_reason(far, DomainSettings(domain_check=False)) == ""

    layout.box_json.unlink()  # a run without a box: no distance, and the record says why
    assert write_pocket_record(layout, "kinase", models).note == "no docking box recorded"
    layout.domain.write_text("{}")
    with pytest.raises(DomainError, match="cannot be read"):
        read_pocket_record(layout.domain)
    assert read_pocket_record(tmp_path / "missing.json") is None


# --------------------------------------------------------------------------- the report


def _run(ranked: pd.DataFrame, pocket: PocketRecord | None, **score) -> SimpleNamespace:
    section = dict(domain_check=True, max_pocket_distance=0.25, max_spread=None) | score
    return SimpleNamespace(config={"score": section}, ranking=ranked, pocket=pocket)


def test_the_report_says_how_many_compounds_fell_back_and_why():
    from pipeline.report.build import domain_sentence

    near, far = PocketRecord("m", 0.05, "ABL1", 2), PocketRecord("m", 0.41, "BRD4", 3)
    spread = order_ranking(_library(), "gnn", domain=DomainSettings(max_spread=1.5), pocket=near)
    text = domain_sentence(_run(spread, near, max_spread=1.5), "gnn")
    assert "2 of 6 compounds were ranked by docking score instead of the model" in text
    assert "spread is above score.max_spread 1.5" in text and "distance 0.05 from the nearest training pocket" in text
    everything = order_ranking(_library(), "gnn", domain=DomainSettings(), pocket=far)
    text = domain_sentence(_run(everything, far), "gnn")
    assert (
        text.startswith("All 6 compounds were ranked by docking score") and "BRD4" in text and "0.41 &gt; 0.25" in text
    )
    passed = order_ranking(_library(), "consensus", domain=DomainSettings(), pocket=near)
    assert domain_sentence(_run(passed, near), "consensus").startswith(
        "Domain check passed: the pocket is at distance 0.05"
    )
    none = PocketRecord("m", note=NO_POCKETS)
    assert "not measured (no training pockets recorded)" in domain_sentence(_run(passed, none), "gnn")
    assert "Domain check off" in domain_sentence(_run(passed, far, domain_check=False), "gnn")
    assert "does not apply" in domain_sentence(_run(passed, far), "docking")
