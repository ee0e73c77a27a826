"""Retraining as a user does it: an assay table through 'snakemake train', then a screen
that ranks by the new model (real docking, featurization, PyG training and Dask scoring)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from workflow_runs import run_snakemake


def _assay(repo, path):
    """8 demo compounds (4 actives, 4 decoys) with a made-up pIC50, plus three bad rows."""
    demo = pd.read_csv(repo / "resources" / "demo" / "library.csv")
    pick = pd.concat([demo[demo.active == 1].head(4), demo[demo.active == 0].head(4)], ignore_index=True)
    pick["value"] = (5.0 + 2.0 * pick["active"] + 0.1 * np.arange(len(pick))).round(2)
    bad = pd.DataFrame(
        {
            "id": ["not_a_molecule", "no_value", pick.loc[0, "id"]],
            "smiles": ["C1CC(", "CCOc1ccccc1", "CCO"],
            "active": [1, 0, 1],
            "value": [6.0, None, 7.0],
        }
    )
    table = pd.concat([pick, bad], ignore_index=True)[["id", "smiles", "value", "active"]]
    table.to_csv(path, index=False)
    return pick


def _config(repo, assay, models):
    return {
        "run": "assay",
        "seed": 42,
        "library": {"path": str(assay), "chunk_size": 6},
        "receptor": {"path": str(repo / "resources" / "demo" / "ACHE_target.pdbqt")},
        "box": {"vina_config": str(repo / "resources" / "demo" / "ACHE_conf.txt")},
        "docking": {"exhaustiveness": 1, "n_poses": 2},
        "dask": {"n_workers": 1},
        "refine": {"enabled": False},
        "score": {"enabled": False},
        "train": {
            "models_dir": str(models),
            "n_models": 2,
            "max_epochs": 3,
            "patience": 2,
            "batch_size": 4,
            "split": "random",
            "fractions": [0.5, 0.25, 0.25],
            "threads": 1,
            "architecture": {"hidden": 16, "layers": 2, "head_hidden": 16},
        },
    }


def test_retrain_on_assay_then_rank_the_demo_compounds_by_it(repo, tmp_path):
    """Acceptance: train (regression and classification) through the workflow; the model loads
    and scores the demo compounds; bad assay rows are listed with reasons and left out."""
    models = tmp_path / "models"
    good = _assay(repo, tmp_path / "assay.csv")
    config = _config(repo, tmp_path / "assay.csv", models)
    for name, task in (("reg", "regression"), ("cls", "classification")):
        config["train"].update(name=name, task=task)
        result = run_snakemake(tmp_path, config, "train")
        assert result.returncode == 0, result.stderr[-3000:]
        folder = models / name
        card = json.loads((folder / "card.json").read_text())
        assert card["task"] == task and len(card["members"]) == 2
        # regression: the row without a value is left out; classification can use it (active = 0)
        assert card["data"]["n_compounds"] == len(good) + (task == "classification")
        assert {"gnn", "docking", "ligand_only"} <= set(card["metrics"]["test"])
        state = torch.load(folder / "model_0.pt", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert (folder / "learning_curve.png").stat().st_size > 1000
        failures = pd.read_csv(tmp_path / "results" / "assay" / "train_failures.csv")
        reasons = dict(zip(failures["id"], failures["reason"]))
        assert "invalid SMILES" in reasons["not_a_molecule"]
        assert "duplicate id" in reasons[good.loc[0, "id"]]
        if task == "regression":
            assert "missing value" in reasons["no_value"]

    # a model retrained on the user's own assay is what rank_by: gnn is for (the default is docking)
    config["score"] = {"enabled": True, "model": str(models / "reg"), "rank_by": "gnn"}
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    ranking = pd.read_csv(tmp_path / "results" / "assay" / "ranking.csv")
    assert ranking["gnn_score"].notna().all() and (ranking["gnn_spread"] >= 0).all()
    assert ranking["gnn_score"].is_monotonic_decreasing and ranking["rank"].tolist() == list(range(1, len(ranking) + 1))
    scores = pd.read_parquet(tmp_path / "results" / "assay" / "scores.parquet")
    assert set(scores["id"]) == set(ranking["id"])
