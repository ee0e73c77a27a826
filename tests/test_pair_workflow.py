"""The pair-term scorer in the workflow: a pair model folder, featurize writing pair graphs, the score stage.

Real engines on small inputs: the 1iep receptor prepared by the pipeline, three small
ligands docked by Vina (exhaustiveness 1), featurized and scored through the ``vscreen``
stage functions with a Dask worker. The model is an untrained (zero-initialized) pair
ensemble, whose score is Vina's own: so the scores are checked against what the ``vina``
package reports for each pose, not against a re-implementation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.box import Box
from pipeline.cli import cmd_featurize, cmd_score
from pipeline.dask_cluster import DaskSettings, close_client, make_client
from pipeline.docking import DockingSettings, dock_chunk
from pipeline.featurize import FeaturizeSettings, PairGraphs, PoseInput, featurize_batch, featurize_docked_chunk
from pipeline.graphs import GraphError
from pipeline.layout import RunLayout, write_manifest
from pipeline.ligands import LigandSettings, prepare_ligand, to_pdbqt
from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA, GLOBAL_NAMES, load_pair_graphs
from pipeline.preflight import check_model
from pipeline.receptor import prepare_receptor
from pipeline.scoring import pair_folder
from pipeline.scoring.ensemble import SCORE_COLUMNS, ModelError, load_ensemble, read_card
from pipeline.scoring.pair_folder import PAIR_MODEL_FORMAT, load_pair_model, pair_schema_for, save_pair_model
from pipeline.scoring.pair_model import LOGIT_THRESHOLD, PairModelConfig
from pipeline.scoring.pair_train import PairTrainSettings, fit_ensemble
from pipeline.scoring.score import score_library

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "resources" / "fixtures" / "1iep"
CENTER, SIZE = (15.19, 53.9, 16.92), (14.0, 14.0, 14.0)
LIGANDS = [("paracetamol", "CC(=O)Nc1ccc(O)cc1"), ("indole", "c1ccc2[nH]ccc2c1"), ("benzylamine", "[NH3+]Cc1ccccc1")]
SMALL = PairModelConfig(hidden=8, layers=1, rbf_size=8, pair_hidden=8, pair_rbf_size=8)
#: Vina's score() against the pair graph's terms: Vina interpolates its grid maps (tests/test_pair_scorer.py).
VINA_RTOL, VINA_ATOL = 0.015, 0.02


def _shifted(mol: Chem.Mol, shift) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, xyz in enumerate(conf.GetPositions() + np.asarray(shift, dtype=float)):
        conf.SetAtomPosition(i, Point3D(*map(float, xyz)))
    return out


@pytest.fixture(scope="module")
def scheduler() -> str:
    """One Dask worker process for the module's stage commands (dask.scheduler: address), started once."""
    client = make_client(DaskSettings(n_workers=1))
    try:
        yield client.scheduler.address
    finally:
        close_client(client)


@pytest.fixture(scope="module")
def run(tmp_path_factory, scheduler) -> dict:
    """A run folder with a prepared 1iep receptor, one docked chunk (3 ligands, 2 poses each) and a config
    whose score.model is an untrained 2-member pair ensemble saved as models/pairzero."""
    root = tmp_path_factory.mktemp("pairrun")
    layout = RunLayout(root / "results" / "pair")
    layout.receptor_dir.mkdir(parents=True)
    prepare_receptor(FIXTURE / "1iep_receptorH.pdb", layout.receptor_pdb, layout.receptor_pdbqt, check_openmm=False)
    rows = [prepare_ligand(cid, smi, LigandSettings())[1] for cid, smi in LIGANDS]
    layout.ligands_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(layout.ligand_table("chunk_00000"))
    dock_chunk(
        layout.ligand_table("chunk_00000"),
        layout.receptor_pdbqt,
        Box(CENTER, SIZE),
        DockingSettings(exhaustiveness=1, n_poses=2, threads=1),
        layout.docked_sdf("chunk_00000"),
        layout.docked_table("chunk_00000"),
        layout.docked_failures("chunk_00000"),
    )
    write_manifest(layout.chunks_dir, "chunks", ["chunk_00000"])
    untrained = fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, PairTrainSettings(members=2, epochs=0))
    models = root / "models"
    save_pair_model(untrained, models / "pairzero", card={"data": {"note": "untrained, for tests"}})
    config = {
        "run": "pair",
        "library": {"path": str(root / "library.smi")},
        "receptor": {"path": str(FIXTURE / "1iep_receptorH.pdb")},
        "box": {"center": list(CENTER), "size": list(SIZE)},
        "dask": {"scheduler": "address", "address": scheduler},
        "featurize": {"poses_per_compound": 0},
        "score": {"model": "pairzero", "models_dir": str(models)},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return dict(root=root, layout=layout, models=models, model=models / "pairzero", config=root / "config.yaml")


@pytest.fixture(scope="module")
def vina_scores(run) -> dict[tuple[str, int], float]:
    """Vina's own score() (total, kcal/mol) of every docked pose, on maps over a box wide enough for any pose."""
    from vina import Vina

    vina = Vina(sf_name="vina", cpu=1, verbosity=0)
    vina.set_receptor(str(run["layout"].receptor_pdbqt))
    vina.compute_vina_maps(center=list(CENTER), box_size=[24.0, 24.0, 24.0])
    scores = {}
    for mol in Chem.SDMolSupplier(str(run["layout"].docked_sdf("chunk_00000")), removeHs=False):
        vina.set_ligand_from_string(to_pdbqt(mol))
        scores[(mol.GetProp("_Name"), int(mol.GetProp("pose")))] = float(vina.score()[0])
    return scores


@pytest.fixture(scope="module")
def scored(run) -> dict:
    """``vscreen featurize`` and ``vscreen score`` on the run (a Dask worker each), as the workflow's rules run them."""
    layout = run["layout"]
    cmd_featurize(
        argparse.Namespace(
            poses=str(layout.docked_sdf("chunk_00000")),
            refined=False,
            receptor=str(layout.receptor_pdb),
            receptor_pdbqt=None,  # the .pdbqt beside the PDB, as prepare-receptor writes it
            out_dir=str(layout.root),
            config=str(run["config"]),
        )
    )
    cmd_score(
        argparse.Namespace(run_dir=str(layout.root), config=str(run["config"]), model=None, out=None, docked_only=False)
    )
    return dict(scores=pd.read_parquet(layout.scores), failures=pd.read_csv(layout.score_failures))


def test_pair_model_folder_is_a_checked_card_and_one_hashed_file(run):
    folder = run["model"]
    card = read_card(folder)  # the generic reader accepts both kinds
    assert card["architecture"] == "pair" and card["format"] == PAIR_MODEL_FORMAT and card["n_models"] == 2
    assert card["ensemble"]["sha256"] == hashlib.sha256((folder / "ensemble.pt").read_bytes()).hexdigest()
    assert card["schema"]["version"] == "vscreen-pairgraph/1" and card["data"] == {"note": "untrained, for tests"}
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "ensemble.pt"]
    model = load_pair_model("pairzero", models_dir=run["models"])
    assert len(model.members) == 2 and model.schema == DEFAULT_PAIR_SCHEMA and model.name == "pairzero"
    assert check_model({"model": "pairzero", "models_dir": str(run["models"])}) == folder
    assert (
        pair_schema_for({"enabled": True, "model": "pairzero", "models_dir": str(run["models"])}) == DEFAULT_PAIR_SCHEMA
    )
    assert pair_schema_for({"enabled": True, "model": "default", "models_dir": str(REPO / "models")}) is None
    assert pair_schema_for({"enabled": False, "model": "pairzero", "models_dir": str(run["models"])}) is None
    with pytest.raises(ModelError, match="pair-term model"):
        load_ensemble(folder)


def test_untrained_pair_model_scores_each_pose_as_vina_does(run, scored, vina_scores):
    """The acceptance check: featurize writes pair graphs for a pair model, and the score stage's
    affinity of each pose is Vina's score of it (an untrained pair model is Vina)."""
    layout = run["layout"]
    schema, graphs = load_pair_graphs(layout.graph_file("chunk_00000"), expect=DEFAULT_PAIR_SCHEMA)
    features = pd.read_parquet(layout.feature_table("chunk_00000"))
    assert len(graphs) == len(features) == len(vina_scores) > len(LIGANDS)  # every pose: poses_per_compound 0
    assert [(g.id, g.pose, g.source) for g in graphs] == list(zip(features["id"], features["pose"], features["source"]))
    assert {"n_HBDonor", "n_Hydrophobic"} <= set(features.columns)  # the fingerprint table, as always
    graph_vina = {(g.id, g.pose): float(g.globals[0, GLOBAL_NAMES.index("vina_score")]) for g in graphs}

    scores = scored["scores"]
    assert list(scores.columns) == SCORE_COLUMNS and len(scored["failures"]) == 0
    assert list(zip(scores["id"], scores["pose"])) == sorted(vina_scores)
    for row in scores.itertuples():
        vina = vina_scores[(row.id, row.pose)]
        print(f"{row.id} pose {row.pose}: affinity {row.affinity:.3f}, Vina score() {vina:.3f}")
        assert row.affinity == pytest.approx(vina, rel=VINA_RTOL, abs=VINA_ATOL)
        assert row.affinity == pytest.approx(graph_vina[(row.id, row.pose)], abs=1e-4)
        assert row.gnn_score == -row.affinity and row.source == "docked"
        # two members, both still Vina: no spread; p_active = sigmoid(threshold - score) at the initial slope 1
        assert row.affinity_spread == row.gnn_spread == pytest.approx(0.0, abs=1e-6)
        assert row.p_active == pytest.approx(1 / (1 + math.exp(-(LOGIT_THRESHOLD - row.affinity))), rel=1e-5)
        assert row.p_active_spread == pytest.approx(0.0, abs=1e-6)
    best = pd.read_parquet(layout.docked_table("chunk_00000")).query("pose == 1").set_index("id")["docking_score"]
    ours = scores.query("pose == 1").set_index("id")["affinity"]
    print("best pose, docking score vs untrained pair affinity:", dict(zip(best.index, zip(best, ours[best.index]))))
    assert (scores["affinity"] < 0).all()


def test_unbuildable_pair_graph_fails_only_its_pose_and_refined_poses_get_pair_graphs(run, vina_scores, tmp_path):
    layout = run["layout"]
    docked = {
        (m.GetProp("_Name"), int(m.GetProp("pose"))): m
        for m in Chem.SDMolSupplier(str(layout.docked_sdf("chunk_00000")), removeHs=False)
    }
    poses = [
        PoseInput("paracetamol", 1, "refined", docked[("paracetamol", 1)], metrics={"rmsd_mean": 0.5}),
        PoseInput("faraway", 1, "docked", _shifted(docked[("benzylamine", 1)], (250.0, 0.0, 0.0))),
        PoseInput("indole", 1, "docked", docked[("indole", 1)]),
    ]
    pair = PairGraphs(str(layout.receptor_pdbqt), DEFAULT_PAIR_SCHEMA)
    out = tmp_path / "graphs"
    summary = featurize_batch(
        poses, layout.receptor_pdb, tmp_path / "t.parquet", out / "batch_00000.pt", tmp_path / "f.csv", pair=pair
    )
    assert (summary.featurized, summary.failed) == (2, 1)
    failures = pd.read_csv(tmp_path / "f.csv")
    assert failures["id"].tolist() == ["faraway"] and failures["stage"].tolist() == ["featurize"]
    assert failures["reason"].iloc[0].startswith("pose 1: pair graph: no receptor heavy atom within 8.0")
    assert sorted(pd.read_parquet(tmp_path / "t.parquet")["id"]) == ["indole", "paracetamol"]
    result = score_library([out / "batch_00000.pt"], run["model"], refined=[out / "batch_00000.pt"])
    table = result.table.set_index(["id", "pose"])
    assert table.loc[("paracetamol", 1), "source"] == "refined"
    for key in (("paracetamol", 1), ("indole", 1)):
        assert table.loc[key, "affinity"] == pytest.approx(vina_scores[key], rel=VINA_RTOL, abs=VINA_ATOL)


def test_a_run_featurized_for_one_kind_and_scored_with_the_other_is_a_run_error(run, scored, tmp_path):
    layout = run["layout"]
    complex_file = tmp_path / "graphs" / "chunk_00000.pt"
    featurize_docked_chunk(
        layout.docked_sdf("chunk_00000"),
        layout.docked_table("chunk_00000"),
        layout.receptor_pdb,
        tmp_path / "t.parquet",
        complex_file,
        tmp_path / "f.csv",
        FeaturizeSettings(),
    )
    with pytest.raises(GraphError, match=r"chunk_00000\.pt' holds complex graphs .* model 'pairzero'.*pair-graph"):
        score_library([complex_file], run["model"])
    with pytest.raises(GraphError, match=r"chunk_00000\.pt' holds pair graphs .* model 'default'.*complex-graph"):
        score_library([layout.graph_file("chunk_00000")], REPO / "models" / "default")
    with pytest.raises(GraphError, match="featurize again"):  # through the stage command (its Dask worker) too
        default = str(REPO / "models" / "default")
        cmd_score(
            argparse.Namespace(
                run_dir=str(layout.root), config=str(run["config"]), model=default, out=None, docked_only=False
            )
        )


@pytest.fixture
def copy_of_model(run, tmp_path) -> Path:
    folder = tmp_path / "models" / "pairzero"
    shutil.copytree(run["model"], folder)
    return folder


def _edit_card(folder: Path, edit) -> None:
    card = json.loads((folder / "card.json").read_text())
    edit(card)
    (folder / "card.json").write_text(json.dumps(card))


def test_tampered_or_escaping_ensemble_file_is_refused_before_unpickling(copy_of_model, monkeypatch, run):
    weights = copy_of_model / "ensemble.pt"
    payload = torch.load(weights, weights_only=True)
    state = payload["members"][0]
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1.0  # one changed weight, still a valid file
    torch.save(payload, weights)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on a model file that should have been refused")

    monkeypatch.setattr(pair_folder.torch, "load", refuse)
    with pytest.raises(ModelError, match=r"ensemble file .*ensemble\.pt' has SHA-256 .* but card\.json records"):
        load_pair_model(copy_of_model)
    with pytest.raises(ModelError, match="SHA-256"):  # the score stage loads through the same check
        score_library([run["layout"].graph_file("chunk_00000")], copy_of_model)
    outside = copy_of_model.parent / "elsewhere.pt"
    shutil.copy(run["model"] / "ensemble.pt", outside)
    _edit_card(copy_of_model, lambda card: card["ensemble"].update(weights="../elsewhere.pt"))
    with pytest.raises(ModelError, match=r"must be a file name inside the model folder"):
        load_pair_model(copy_of_model)
    _edit_card(copy_of_model, lambda card: card["ensemble"].update(weights="ensemble.pt", sha256="x" * 64))
    with pytest.raises(ModelError, match=r"pair model card .* invalid at ensemble/sha256"):
        read_card(copy_of_model)


def test_pair_card_of_another_schema_version_is_refused(copy_of_model):
    _edit_card(copy_of_model, lambda card: card["schema"].update(version="vscreen-pairgraph/0"))
    with pytest.raises(ModelError, match="schema vscreen-pairgraph/0 .* retrain"):
        load_pair_model(copy_of_model)
    with pytest.raises(ModelError, match="vscreen-pairgraph/0"):  # featurize refuses too, before any pose
        pair_schema_for({"enabled": True, "model": str(copy_of_model), "models_dir": "models"})


@pytest.mark.slow
def test_snakemake_run_with_a_pair_model(tmp_path):
    """The whole workflow with score.model a pair model: featurize writes pair graphs (docked and
    refined), the score stage scores them, the ranking sorts by gnn_score (= minus the pair score)."""
    from workflow_runs import run_snakemake, small_screen

    library = tmp_path / "library.smi"
    library.write_text("".join(f"{smiles} {cid}\n" for cid, smiles in LIGANDS))
    untrained = fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, PairTrainSettings(members=2, epochs=0))
    save_pair_model(untrained, tmp_path / "models" / "pairzero")
    config = small_screen(library, "pairrun")
    config["score"] = {"model": "pairzero", "models_dir": str(tmp_path / "models"), "rank_by": "gnn"}
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    layout = RunLayout(tmp_path / "results" / "pairrun")
    for graph_file in layout.graph_files():
        assert torch.load(graph_file, weights_only=True)["schema"]["version"] == "vscreen-pairgraph/1", graph_file
    assert layout.batches(), "refine.top_n 1 makes one refined batch"
    scores = pd.read_parquet(layout.scores)
    assert set(scores["source"]) == {"docked", "refined"} and scores["affinity"].notna().all()
    docked = scores[scores["source"] == "docked"].set_index("id")
    ranking = pd.read_csv(layout.ranking).set_index("id")
    assert set(ranking.index) == {cid for cid, _ in LIGANDS}
    for cid, row in ranking.iterrows():  # the best docked pose's untrained pair score is its Vina score
        assert docked.loc[cid, "affinity"] == pytest.approx(row["docking_score"], rel=VINA_RTOL, abs=VINA_ATOL)
        assert row["gnn_score"] == pytest.approx(-docked.loc[cid, "affinity"], abs=1e-3)
    assert ranking["gnn_score"].is_monotonic_decreasing
    assert "pairzero" in layout.report_html.read_text()
