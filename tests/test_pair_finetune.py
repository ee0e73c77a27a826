"""Training and fine-tuning the pair-term scorer on an assay table (``train.scorer: pair``, ``train.init_from``).

Real engines on small inputs: eight small ligands of eight different scaffolds docked by Vina
(exhaustiveness 1) into the ACHE demo pocket, each pose and a displaced copy of it as two
"compounds" of one scaffold, pair graphs built from the docking receptor as featurize builds
them. The assay values are made up with a learnable signal: potency rises as Vina's score
gets worse, so Vina (the untrained model) ranks them exactly backwards and anything that
ranks them better has learned from the data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.box import Box, read_vina_config
from pipeline.config import ConfigError, fill_defaults, load_schema
from pipeline.docking import Docker, DockingSettings
from pipeline.layout import RunLayout, write_manifest
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA, PairGraphSchema, load_vina_receptor, pair_graph, save_pair_graphs
from pipeline.scoring.cards import validate_pair_card
from pipeline.scoring.ensemble import ModelError
from pipeline.scoring.metrics import kendall_tau
from pipeline.scoring.pair_finetune import (
    RT_LN10,
    PairAssaySettings,
    affinity_targets,
    best_poses,
    fit_pair_ensemble,
    potency,
    train_pair_from_files,
)
from pipeline.scoring.pair_folder import load_pair_model, pair_schema_for_run, save_pair_model
from pipeline.scoring.pair_model import PairModelConfig
from pipeline.scoring.pair_train import PairExample, PairTrainSettings, fit_ensemble
from pipeline.scoring.train import TrainSettings

SMALL = PairModelConfig(hidden=8, layers=1, rbf_size=8, pair_hidden=8, pair_rbf_size=8)
#: Eight scaffolds (benzene, indole, pyridine, naphthalene, cyclohexane, thiophene, quinoline, imidazole).
LIGANDS = [
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("indole", "c1ccc2[nH]ccc2c1"),
    ("isonicotinamide", "NC(=O)c1ccncc1"),
    ("naphthol", "Oc1ccc2ccccc2c1"),
    ("cyclohexylamine", "[NH3+]C1CCCCC1"),
    ("thiophenamide", "Cc1ccc(C(N)=O)s1"),
    ("quinoline", "c1ccc2ncccc2c1"),
    ("methylimidazole", "Cc1ncc[nH]1"),
]
VINA_SCORE = DEFAULT_PAIR_SCHEMA.global_names.index("vina_score")


def _shifted(mol: Chem.Mol, shift) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, xyz in enumerate(conf.GetPositions() + np.asarray(shift, dtype=float)):
        conf.SetAtomPosition(i, Point3D(*map(float, xyz)))
    return out


def _vina(graph) -> float:
    return float(np.asarray(graph["globals"]).reshape(-1)[VINA_SCORE])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """PyTorch on one thread, as train.threads: 1 gives ``vscreen train`` (threads spin on a loaded machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def toy(repo, tmp_path_factory) -> dict:
    """A training run folder: one chunk of pair graphs (16 compounds, plus a worse extra pose of one),
    an assay table whose values rise with Vina's score (and one bad row), and a pretrained pair model."""
    receptor_path = repo / "resources" / "demo" / "ACHE_target.pdbqt"
    box = read_vina_config(repo / "resources" / "demo" / "ACHE_conf.txt")
    docker = Docker(receptor_path, Box(box.center, (16.0, 16.0, 16.0)), DockingSettings(exhaustiveness=1, n_poses=1))
    receptor = load_vina_receptor(receptor_path)
    graphs, rows = [], []
    for cid, smiles in LIGANDS:
        _, row = prepare_ligand(cid, smiles, LigandSettings())
        found, _ = docker.dock(cid, row["pdbqt"])
        for suffix, shift in (("a", [0, 0, 0]), ("b", [0.5, -0.3, 0.3])):
            graph = pair_graph(_shifted(found[0], shift), receptor)
            graph.update(id=f"{cid}_{suffix}", pose=1, source="docked")
            graphs.append(graph)
            # the learnable signal: potency (pKd-like) rises with Vina's score, the reverse of Vina's order
            rows.append(dict(id=f"{cid}_{suffix}", smiles=smiles, value=6.0 + (_vina(graph) + 6.0) / RT_LN10))
    extra = pair_graph(_shifted(found[0], [1.5, 0.0, 0.0]), receptor)  # a worse second pose of the last compound
    extra.update(id=f"{LIGANDS[-1][0]}_a", pose=2, source="docked")
    rows += [dict(id="not_docked", smiles="CCO", value=5.0), dict(id="bad", smiles="not a smiles", value=5.0)]

    root = tmp_path_factory.mktemp("pairtrain")
    layout = RunLayout(root / "results" / "assay")
    layout.chunks_dir.mkdir(parents=True)
    write_manifest(layout.chunks_dir, "chunks", ["chunk_00000"])
    layout.graph_file("chunk_00000").parent.mkdir(parents=True, exist_ok=True)
    save_pair_graphs(layout.graph_file("chunk_00000"), graphs + [extra])
    assay = root / "assay.csv"
    pd.DataFrame(rows).to_csv(assay, index=False)

    # "pretrained": the zero-initialized model with every weight moved, so it is neither Vina nor untrained
    pretrained = fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, PairTrainSettings(members=2, epochs=0))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for member in pretrained.members:
            for p in member.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    models = root / "models"
    save_pair_model(pretrained, models / "pretrained", card={"data": {"note": "perturbed, for tests"}})
    return dict(root=root, layout=layout, assay=assay, models=models, graphs=graphs, rows=rows, receptor=receptor_path)


def _train_section(models: Path, **changes) -> dict:
    """A validated ``train`` section (defaults filled), small and fast."""
    section = {
        "name": "mine",
        "models_dir": str(models),
        "scorer": "pair",
        "n_models": 2,
        "split": "scaffold",
        "fractions": [0.5, 0.25, 0.25],
        "max_epochs": 20,  # the ligand-only baseline
        "patience": 5,
        "threads": 1,
        "pair": {"epochs": 6, "learning_rate": 1e-2, "bootstrap_samples": 200, "model": SMALL.to_dict()},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return fill_defaults({"train": section}, load_schema())["train"]


def _config_file(toy, path: Path, train: dict) -> Path:
    config = {
        "run": "assay",
        "library": {"path": str(toy["assay"])},
        "receptor": {"path": str(toy["receptor"])},
        "box": {"center": [0.0, 0.0, 0.0], "size": [16.0, 16.0, 16.0]},
        "score": {"enabled": False},
        "train": train,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _examples(toy) -> dict[str, PairExample]:
    from torch_geometric.data import Data

    by_id = best_poses([Data(**{k: _tensor(v) for k, v in g.items()}) for g in toy["graphs"]], DEFAULT_PAIR_SCHEMA)
    values = {r["id"]: r["value"] for r in toy["rows"]}
    return {
        cid: PairExample(g, "assay", "assay", dg=float(affinity_targets(values[cid], "p_molar")))
        for cid, g in by_id.items()
    }


def _tensor(value):
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value


# --------------------------------------------------------------------------- units and settings


def test_assay_values_become_lower_is_better_targets_in_kcal_per_mol():
    values = np.array([6.0, 9.0])  # pKd: the second binds 1000x tighter
    dg = affinity_targets(values, "p_molar")
    assert dg == pytest.approx([-8.185, -12.278], abs=1e-3)  # RT ln10 = 1.364 kcal/mol per log unit
    assert dg[1] < dg[0] and potency(values, "p_molar").tolist() == [6.0, 9.0]
    assert affinity_targets(np.array([-9.0]), "kcal_per_mol").tolist() == [-9.0]
    assert potency(np.array([-9.0, -7.0]), "kcal_per_mol").tolist() == [9.0, 7.0]  # -9 kcal/mol is the potent one
    assert affinity_targets(values, "rank_only").tolist() == [-6.0, -9.0]
    # fine-tuning defaults: a fifth of the learning rate, half the epochs; an explicit value applies to both
    pair = PairAssaySettings()
    scratch, tuned = pair.train_settings(False, 3, 1), pair.train_settings(True, 3, 1)
    assert (scratch.lr, scratch.epochs, tuned.lr, tuned.epochs) == (1e-3, 40, 2e-4, 20)
    assert (scratch.global_iterations, tuned.global_iterations) == (50, 0)
    assert PairAssaySettings(epochs=7).train_settings(True, 3, 1).epochs == 7
    assert (
        PairAssaySettings(value_units="rank_only", absolute_weight=0.1).train_settings(False, 1, 1).absolute_weight
        == 0.0
    )
    assert PairAssaySettings(absolute_weight=0.1).train_settings(False, 1, 1).absolute_weight == 0.1
    with pytest.raises(ConfigError, match="value_units"):
        PairAssaySettings(value_units="nM")


def test_featurize_writes_the_graphs_of_the_scorer_a_training_run_trains(toy, monkeypatch, tmp_path):
    """One decision for cmd_featurize and the Snakefile: the train section decides in a training run."""
    models = toy["models"]
    base = fill_defaults({}, load_schema())
    pair_score = dict(base["score"], model="pretrained", models_dir=str(models))
    run = dict(base, train=_train_section(models, init_from=None))
    assert pair_schema_for_run(run) == DEFAULT_PAIR_SCHEMA  # pair from scratch, whatever score.model is
    tuned = dict(base, train=_train_section(models, init_from="pretrained"))
    assert pair_schema_for_run(tuned) == load_pair_model(models / "pretrained").schema
    complex_run = dict(base, score=pair_score, train=_train_section(models, scorer="complex"))
    assert pair_schema_for_run(complex_run) is None  # the complex-graph trainer needs complex graphs
    assert pair_schema_for_run(dict(base, score=pair_score)) == DEFAULT_PAIR_SCHEMA  # not training: score.model
    with pytest.raises(ConfigError, match="needs train.scorer: pair"):
        pair_schema_for_run(dict(base, train=_train_section(models, scorer="complex", init_from="pretrained")))
    with pytest.raises(ModelError, match="train.init_from: model 'nothing' not found"):
        pair_schema_for_run(dict(base, train=_train_section(models, init_from="nothing")))

    # cmd_featurize asks the same function: a pair training run gets pair graphs of the pretrained schema
    import pipeline.dask_cluster
    import pipeline.featurize
    from pipeline.cli import cmd_featurize

    seen = {}

    class _NoClient:
        def __enter__(self):
            return None

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(pipeline.dask_cluster, "dask_client", lambda settings: _NoClient())
    monkeypatch.setattr(pipeline.featurize, "featurize_docked_chunk", lambda *a: seen.update(pair=a[-1]) or "ok")
    config = _config_file(toy, tmp_path / "config.yaml", _train_section(models, init_from="pretrained"))
    args = dict(refined=False, receptor=str(tmp_path / "receptor.pdb"), receptor_pdbqt=None, out_dir=str(tmp_path))
    cmd_featurize(argparse.Namespace(poses=str(tmp_path / "chunk_00000.sdf"), config=str(config), **args))
    assert seen["pair"] is not None and seen["pair"].schema == load_pair_model(models / "pretrained").schema
    assert seen["pair"].receptor_pdbqt == str(tmp_path / "receptor.pdbqt")


# --------------------------------------------------------------------------- fine-tuning


def test_fine_tuning_starts_from_the_pretrained_weights_and_moves_away_from_them(toy):
    examples = _examples(toy)
    keys = sorted(examples)
    pretrained = load_pair_model(toy["models"] / "pretrained")
    resampling = TrainSettings(n_models=2, seed=3)
    pair = PairAssaySettings(epochs=0, learning_rate=1e-2)
    graphs = [examples[k].graph for k in keys]
    before = fit_pair_ensemble(
        examples,
        keys[:10],
        keys[10:],
        DEFAULT_PAIR_SCHEMA,
        SMALL,
        pair.train_settings(True, 2, 3),
        resampling,
        pretrained,
    )
    for tuned, start in zip(before.ensemble.members, pretrained.members):  # before any step: the pretrained model
        for name, value in start.state_dict().items():
            assert torch.equal(tuned.state_dict()[name], value), name
    np.testing.assert_allclose(before.ensemble.predict(graphs)[0], pretrained.predict(graphs)["score"].mean(0))

    pair = PairAssaySettings(epochs=3, patience=3, learning_rate=1e-2)
    after = fit_pair_ensemble(
        examples,
        keys[:10],
        keys[10:],
        DEFAULT_PAIR_SCHEMA,
        SMALL,
        pair.train_settings(True, 2, 3),
        resampling,
        pretrained,
    )
    moved = [
        float((after.ensemble.members[k].state_dict()[n] - v).abs().max())
        for k, start in enumerate(pretrained.members)
        for n, v in start.state_dict().items()
    ]
    assert max(moved) > 1e-4
    assert not np.allclose(after.ensemble.predict(graphs)[0], pretrained.predict(graphs)["score"].mean(0))
    assert [m["epochs"] for m in after.members] == [3, 3]


def test_training_learns_the_injected_signal_that_vina_gets_backwards(toy):
    """Something that can only pass if training did something: in-sample τ and the loss both improve."""
    examples = _examples(toy)
    keys = sorted(examples)
    labels = np.array([-examples[k].dg for k in keys])  # higher = more potent
    graphs = [examples[k].graph for k in keys]
    vina = np.array([float(g.globals.reshape(-1)[VINA_SCORE]) for g in graphs])
    assert kendall_tau(-vina, labels) == pytest.approx(-1.0)  # the untrained model (= Vina) is exactly backwards
    settings = PairAssaySettings(epochs=30, patience=30, learning_rate=1e-2, absolute_weight=0.0)
    fitted = fit_pair_ensemble(
        examples,
        keys,
        keys,
        DEFAULT_PAIR_SCHEMA,
        SMALL,
        settings.train_settings(False, 1, 5),
        TrainSettings(n_models=1),
    )
    history = fitted.ensemble.histories[0]
    assert history.loss[-1] < history.loss[0]
    assert history.validation_metric == "mean_series_tau"
    assert kendall_tau(-fitted.ensemble.predict(graphs)[0], labels) > kendall_tau(-vina, labels) + 0.3


def test_init_from_of_another_schema_or_architecture_is_refused(toy, repo, tmp_path):
    files = toy["layout"].graph_files()
    # a pretrained model that reads pair graphs with another hydrogen-bond cutoff than the run's graphs
    other = fit_ensemble([], PairGraphSchema(hbond_cutoff=3.3), SMALL, PairTrainSettings(members=1, epochs=0))
    save_pair_model(other, toy["models"] / "other_schema")
    with pytest.raises(
        ModelError, match=r"train.init_from model 'other_schema' reads \(differing: \['hbond_cutoff'\]\)"
    ):
        train_pair_from_files(
            files, toy["assay"], tmp_path / "m", _train_section(toy["models"], init_from="other_schema")
        )
    # architecture keys set in the config must be the pretrained model's
    wide = _train_section(toy["models"], init_from="pretrained", pair={"model": {**SMALL.to_dict(), "hidden": 16}})
    with pytest.raises(ConfigError, match=r"train.pair.model.hidden is 16 .* 'pretrained' has hidden 8"):
        train_pair_from_files(files, toy["assay"], tmp_path / "m", wide)
    # a complex-graph GNN cannot be fine-tuned as a pair model; nor can a model overwrite itself
    with pytest.raises(ModelError, match="is not a pair model"):
        train_pair_from_files(files, toy["assay"], tmp_path / "m", _train_section(repo / "models", init_from="default"))
    with pytest.raises(ConfigError, match="is the model this training writes"):
        train_pair_from_files(
            files, toy["assay"], toy["models"] / "pretrained", _train_section(toy["models"], init_from="pretrained")
        )
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- the whole command


def test_vscreen_train_fine_tunes_and_the_card_compares_on_one_split(toy, tmp_path):
    """``vscreen train`` with train.init_from: the card holds the fine-tuned, from-scratch and baseline
    metrics on the same held-out compounds; the folder loads and scores; bad rows are listed."""
    from pipeline.cli import cmd_train
    from pipeline.scoring.domain import pocket_descriptor, pocket_distance

    train = _train_section(toy["models"], init_from="pretrained")
    config = _config_file(toy, tmp_path / "config.yaml", train)
    run = toy["layout"].root
    # the run's receptor and box: the card records them as the model's training pocket
    toy["layout"].receptor_dir.mkdir(parents=True, exist_ok=True)
    toy["layout"].receptor_pdb.write_bytes(toy["receptor"].read_bytes())
    box = Box((4.521, 66.834, 65.770), (16.0, 16.0, 16.0))
    box.to_json(toy["layout"].box_json)
    assert cmd_train(argparse.Namespace(run_dir=str(run), config=str(config), name="tuned", assay=None)) == 0

    folder = toy["models"] / "tuned"
    card = json.loads((folder / "card.json").read_text())
    validate_pair_card(card)
    pockets = load_pair_model(folder).training_pockets  # the pretrained model records none: only this run's
    assert pockets.names == ("ACHE_target",)
    assert pocket_distance(pockets.vectors[0], pocket_descriptor(toy["layout"].receptor_pdb, box)) < 1e-5
    assert card["model_method"] == "fine_tuned" and card["task"] == "regression"
    assert card["init_from"]["name"] == "pretrained" and len(card["init_from"]["ensemble_sha256"]) == 64
    assert card["data"]["n_compounds"] == 16 and card["data"]["value_units"] == "p_molar"
    split = card["split"]
    assert split["method"] == "scaffold" and split["compounds"] == {"train": 8, "val": 4, "test": 4}
    for part in ("val", "test"):
        assert set(card["metrics"][part]) == {
            "fine_tuned",
            "from_scratch",
            "pretrained",
            "vina",
            "heavy_atoms",
            "ligand_only",
        }
        for method, metrics in card["metrics"][part].items():  # every method on the same compounds
            assert metrics["n"] == len(split["ids"][part]) and metrics["n_missing"] == 0, (part, method)
            assert -1.0 <= metrics["kendall_tau"] <= 1.0
    # no scaffold on two sides: a compound's displaced copy is on its side
    sides = {cid.rsplit("_", 1)[0]: part for part in ("val", "test") for cid in split["ids"][part]}
    assert all(f"{stem}_{s}" in split["ids"][part] for stem, part in sides.items() for s in "ab")
    # Vina ranks this assay exactly backwards, on any held-out part
    assert card["metrics"]["test"]["vina"]["kendall_tau"] == pytest.approx(-1.0)
    compare = card["comparison"]["test"]
    assert set(compare) == {"fine_tuned - from_scratch", "fine_tuned - vina"}
    for measures in compare.values():
        tau = measures["kendall_tau"]
        assert tau["samples"] > 100 and tau["low"] <= tau["difference"] <= tau["high"]
    tuned, scratch = card["training"]["fine_tuned"], card["training"]["from_scratch"]
    # the configured epochs and learning rate apply to both fits; patience and the global-only
    # phase are each start's default (fine-tuning keeps the pretrained globals)
    assert tuned == {**scratch, "patience": 5, "global_iterations": 0}
    assert (scratch["patience"], scratch["global_iterations"]) == (6, 50)
    assert (tuned["lr"], tuned["epochs"]) == (1e-2, 6)
    assert len(card["training"]["members"]) == len(card["training"]["from_scratch_members"]) == 2

    model = load_pair_model(folder)
    table = model.score(list(best_poses(_loaded(toy), model.schema).values()))
    assert (
        len(table) == 16 and np.isfinite(table["affinity"]).all() and (table["gnn_score"] == -table["affinity"]).all()
    )
    failures = pd.read_csv(run / "train_failures.csv")
    reasons = dict(zip(failures["id"], failures["reason"]))
    assert "invalid SMILES" in reasons["bad"] and "no pair graph" in reasons["not_docked"]


def _loaded(toy) -> list:
    from pipeline.pair_graphs import load_pair_graphs

    return load_pair_graphs(toy["layout"].graph_file("chunk_00000"))[1]


def test_from_scratch_on_active_labels_trains_the_screening_logit(toy, tmp_path):
    """An ``active`` column: screening cross-entropy, AUROC in the card, the saved model is the from-scratch one."""
    rows = pd.DataFrame(toy["rows"])
    rows = rows.assign(active=(rows["value"] >= rows["value"].median()).astype(int)).drop(columns="value")
    assay = tmp_path / "actives.csv"
    rows.to_csv(assay, index=False)
    train = _train_section(toy["models"], n_models=1, pair={"epochs": 2, "bootstrap_samples": 50})
    summary = train_pair_from_files(toy["layout"].graph_files(), assay, tmp_path / "cls", train)
    card = json.loads((tmp_path / "cls" / "card.json").read_text())
    assert card["task"] == "classification" and card["model_method"] == "from_scratch"
    assert card["init_from"] is None and card["training"]["fine_tuned"] is None
    assert set(card["metrics"]["test"]) == {"from_scratch", "vina", "heavy_atoms", "ligand_only"}
    assert 0.0 <= card["metrics"]["test"]["from_scratch"]["auroc"] <= 1.0
    assert set(card["comparison"]["test"]) == {"from_scratch - vina"}
    assert card["training"]["members"][0]["validation_metric"] in ("auroc", "-loss")
    assert summary.compounds == 16 and summary.failed == 2  # the bad SMILES, and CCO without a graph


def test_member_record_gives_the_starting_models_criterion_when_no_epoch_beat_it():
    from pipeline.scoring.pair_finetune import _member_record
    from pipeline.scoring.pair_train import MemberHistory

    kept = MemberHistory(loss=[0.3, 0.2], validation_tau=[0.1, 0.2], best_epoch=-1, start_validation=0.4)
    assert _member_record(1, ["a"], kept)["best_validation"] == 0.4
    improved = MemberHistory(loss=[0.3, 0.2], validation_tau=[0.1, 0.5], best_epoch=1, start_validation=0.4)
    assert _member_record(1, ["a"], improved)["best_validation"] == 0.5
    nothing = MemberHistory(loss=[0.3], validation_tau=[float("nan")], best_epoch=-1)
    assert _member_record(1, ["a"], nothing)["best_validation"] is None
