"""GNN scorer: metrics against hand-computed values, invariances of the model, a tiny
ensemble trained on real 1iep complex graphs (regression and classification), model
folders (save, reload with weights_only, schema refusal), assay rows with reasons,
identical scores from 1 and 2 Dask workers, and faults: an unreadable graph file costs
only its compounds (failure rows; warnings for a refined batch), a cancelled Dask task
is retried and a persistent one raises InfrastructureError."""

from __future__ import annotations

import hashlib
import json
import math
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Geometry import Point3D
from torch_geometric.data import Batch, Data

from pipeline.dask_cluster import DaskSettings, dask_client
from pipeline.graphs import DEFAULT_SCHEMA, GraphError, GraphSchema, complex_graph, load_graphs, save_graphs
from pipeline.interactions import Receptor, load_receptor, protein_from_pdb
from pipeline.scoring.assay import read_assay
from pipeline.scoring.ensemble import ModelError, available_models, load_ensemble
from pipeline.scoring.metrics import (
    auroc,
    average_ranks,
    bedroc,
    classification_metrics,
    enrichment_curve,
    enrichment_factor,
    pearson,
    regression_metrics,
    rmse,
    roc_curve,
    spearman,
)
from pipeline.scoring.model import ComplexScorer, ModelConfig, count_parameters
from pipeline.scoring.score import ScoreResult, cache_info, score_graph_files, score_library
from pipeline.scoring.splits import murcko_scaffold, random_split, scaffold_split
from pipeline.scoring.train import (
    TrainSettings,
    leave_one_target_out,
    train_ensemble,
    train_from_files,
    train_multi_target,
)

SMALL = [
    ("indole", "c1ccc2[nH]ccc2c1"),
    ("benzoic", "OC(=O)c1ccccc1"),
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("phenylpyridine", "c1ccc(-c2ccncc2)cc1"),
    ("tosylamide", "Cc1ccc(cc1)S(N)(=O)=O"),
    ("naphthalene", "c1ccc2ccccc2c1"),
    ("phthalimide", "O=C1NC(=O)c2ccccc12"),
    ("quinoxaline", "c1cnc2ccccc2n1"),
    ("adenine", "Nc1ncnc2[nH]cnc12"),
    ("xanthine", "O=c1[nH]c(=O)c2[nH]cnc2[nH]1"),
    ("anilinopyrimidine", "c1ccc(Nc2ncccn2)cc1"),
    ("phenylpiperazine", "CN1CCN(CC1)c1ccccc1"),
    ("isonicotinanilide", "O=C(Nc1ccccc1)c1ccncc1"),
    ("phenylpiperidine", "c1ccc(cc1)C1CCNCC1"),
    ("naphthol", "Oc1ccc2ccccc2c1"),
    ("methoxyindole", "COc1ccc2[nH]ccc2c1"),
    ("dibenzofuran", "c1ccc2c(c1)oc1ccccc12"),
    ("phenylbenzimidazole", "c1ccc(cc1)-c1nc2ccccc2[nH]1"),
    ("aminopyrimidine", "Cc1cc(C)nc(N)n1"),
    ("nicotinic", "OC(=O)c1cccnc1"),
    ("benzothiophene", "c1ccc2sccc2c1"),
    ("phenylpyrrolidinone", "O=C1CCCN1c1ccccc1"),
    ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
    ("procainamide", "CCN(CC)CCNC(=O)c1ccc(N)cc1"),
]
IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"
TINY = dict(
    n_models=2,
    max_epochs=4,
    patience=2,
    batch_size=8,
    ligand_hidden=32,
    threads=1,
    model=ModelConfig(hidden=32, layers=3, head_hidden=32),
)


# --------------------------------------------------------------------------- metrics


def test_auroc_hand_cases():
    assert auroc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.75)  # 3 of 4 pairs right
    assert auroc([1, 1, 0, 0], [4, 3, 2, 1]) == 1.0 and auroc([0, 0, 1, 1], [4, 3, 2, 1]) == 0.0
    assert auroc([1, 0, 1, 0, 0], [5, 5, 5, 5, 5]) == 0.5  # all equal: every pair a tie
    assert auroc([1, 0, 0], [2, 2, 1]) == pytest.approx(0.75)  # one tie (1/2) + one win
    assert math.isnan(auroc([1, 1], [0.3, 0.2]))
    assert auroc([1, 0, 0], [np.nan, 1.0, 2.0]) == 0.0  # NaN ranks last
    assert list(average_ranks([10, 20, 20, 30])) == [1, 2.5, 2.5, 4]


def test_enrichment_factor_hand_cases():
    labels = np.zeros(100)
    labels[[0, 3, 50, 60, 70]] = 1  # 5 actives among 100
    scores = -np.arange(100.0)  # compound 0 ranked first
    assert enrichment_factor(labels, scores, 0.01) == pytest.approx(20.0)  # (1/1) / (5/100)
    assert enrichment_factor(labels, scores, 0.05) == pytest.approx(8.0)  # (2/5) / (5/100)
    assert enrichment_factor(labels, np.zeros(100), 0.05) == pytest.approx(1.0)  # all tied: random expectation
    tie = np.array([1, 0, 0, 0]), np.array([1.0, 1.0, 0.0, 0.0])  # top-1 cut splits a tie of two
    assert enrichment_factor(*tie, 0.25) == pytest.approx((0.5 / 1) / (1 / 4))
    assert math.isnan(enrichment_factor([0, 0], [1, 2], 0.5))


def test_bedroc_hand_case_extremes_and_rdkit():
    # N = 4, actives ranked 1st and 3rd, alpha = 1: (S - S_min) / (S_max - S_min), S = sum exp(-alpha r / N)
    s, s_max, s_min = (
        math.exp(-1 / 4) + math.exp(-3 / 4),
        math.exp(-1 / 4) + math.exp(-2 / 4),
        math.exp(-3 / 4) + math.exp(-1),
    )
    assert bedroc([1, 0, 1, 0], [4, 3, 2, 1], alpha=1.0) == pytest.approx((s - s_min) / (s_max - s_min))
    assert (s - s_min) / (s_max - s_min) == pytest.approx(0.75387, abs=1e-5)
    labels = np.r_[np.ones(10), np.zeros(990)]
    assert bedroc(labels, -np.arange(1000.0)) == pytest.approx(1.0)
    assert bedroc(labels, np.arange(1000.0)) == pytest.approx(0.0, abs=1e-9)
    random = np.mean([bedroc(labels, np.random.default_rng(s).random(1000)) for s in range(20)])
    assert random < 0.1  # random ranking: about n/N plus a little
    from rdkit.ML.Scoring.Scoring import CalcBEDROC  # an independent implementation (no ties here)

    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.1).astype(int)
    score = rng.random(200) + y * 0.3
    ranked = [[v] for v in y[np.argsort(-score)]]
    assert bedroc(y, score) == pytest.approx(CalcBEDROC(ranked, 0, 80.5), rel=1e-12)


def test_curves_and_regression_metrics():
    y, s = [1, 0, 1, 0, 0, 1], [0.9, 0.9, 0.5, 0.3, 0.2, 0.1]
    fpr, tpr, thr = roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and thr[0] == np.inf
    screened, found = enrichment_curve(y, s)
    assert (screened[-1], found[-1]) == (1, 1) and found[1] == pytest.approx(1 / 3)  # the tie at 0.9: one of 3 actives
    from scipy import stats

    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 5.0])
    b = np.array([1.5, 1.9, 3.5, 3.0, 6.0, 4.0])
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0])
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0])
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    m = regression_metrics(a, b, active_threshold=4.0)
    assert m["n"] == 6 and m["n_active"] == 3 and 0 <= m["auroc"] <= 1
    assert classification_metrics([1, 0], [1, 0])["auroc"] == 1.0


# --------------------------------------------------------------------------- data: real 1iep complex graphs


def _place(mol: Chem.Mol, center: np.ndarray, rotation: np.ndarray, conf_id: int = -1) -> None:
    conf = mol.GetConformer(conf_id)
    xyz = conf.GetPositions()
    for i, p in enumerate((xyz - xyz.mean(0)) @ rotation.T + center):
        conf.SetAtomPosition(i, Point3D(*p))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture(scope="module")
def complexes(fixtures, tmp_path_factory):
    """~30 graphs: the crystal imatinib pose and RDKit conformers of 24 small molecules (5 with two
    poses) placed at its centroid in the 1iep pocket; synthetic labels and docking scores that
    grow with size; written as 3 graph files plus regression and classification assay tables."""
    out = tmp_path_factory.mktemp("scoring")
    receptor = load_receptor(fixtures / "1iep" / "1iep_receptorH.pdb")
    crystal = Chem.MolFromMolFile(str(fixtures / "1iep" / "1iep_ligand.sdf"), removeHs=False)
    center = crystal.GetConformer().GetPositions().mean(0)
    rng = np.random.default_rng(7)
    graphs, rows = [], []

    def add(cid, smiles, mol, pose, heavy):
        dock = -(3.0 + 0.25 * heavy + rng.normal(0, 0.4))
        graph = complex_graph(mol, receptor, None, {"docking_score": dock})
        graph.update(id=cid, pose=pose, source="docked")
        graphs.append(graph)

    add("imatinib", IMATINIB, crystal, 1, crystal.GetNumHeavyAtoms())
    rows.append(("imatinib", IMATINIB, crystal.GetNumHeavyAtoms()))
    for k, (cid, smi) in enumerate(SMALL):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        n_poses = 2 if k < 5 else 1
        ids = AllChem.EmbedMultipleConfs(mol, n_poses, randomSeed=11)
        for pose, conf_id in enumerate(ids, start=1):
            _place(mol, center, _rotation(rng), conf_id)
            single = Chem.Mol(mol, confId=conf_id)
            add(cid, smi, single, pose, mol.GetNumHeavyAtoms())
        rows.append((cid, smi, mol.GetNumHeavyAtoms()))
    files = []
    for j in range(3):
        files.append(out / f"batch_{j}.pt")
        save_graphs(files[-1], graphs[j::3])
    heavy = np.array([r[2] for r in rows], dtype=float)
    value = 3.0 + 0.15 * heavy + rng.normal(0, 0.3, len(rows))
    reg = pd.DataFrame({"id": [r[0] for r in rows], "smiles": [r[1] for r in rows], "value": value.round(3)})
    cls = reg.assign(active=(value >= np.median(value)).astype(int)).drop(columns="value")
    reg.to_csv(out / "assay_reg.csv", index=False)
    cls.to_csv(out / "assay_cls.csv", index=False)
    return dict(dir=out, files=files, receptor=receptor, crystal=crystal, n_graphs=len(graphs), n_compounds=len(rows))


@pytest.fixture(scope="module")
def trained(complexes):
    """A K=2 regression ensemble trained from the files and saved under <tmp>/models/reg."""
    models = complexes["dir"] / "models"
    summary = train_from_files(
        complexes["files"],
        complexes["dir"] / "assay_reg.csv",
        models / "reg",
        TrainSettings(**TINY, active_threshold=5.5),
        complexes["dir"] / "train.failures.csv",
    )
    return models / "reg", summary


# --------------------------------------------------------------------------- the model


def _data(graph: dict) -> Data:
    return Data(**{k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in graph.items()})


def _moved(mol: Chem.Mol, rotation: np.ndarray, shift: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, p in enumerate(conf.GetPositions() @ rotation.T + shift):
        conf.SetAtomPosition(i, Point3D(*p))
    return out


def test_model_invariant_to_rigid_motion_and_ordering(complexes, fixtures):
    torch.manual_seed(0)
    model = ComplexScorer(DEFAULT_SCHEMA, ModelConfig(hidden=32)).eval()
    rotation, shift = _rotation(np.random.default_rng(3)), np.array([12.0, -30.0, 7.5])
    protein = protein_from_pdb(fixtures / "1iep" / "1iep_receptorH.pdb")
    moved_receptor = Receptor(_moved(protein, rotation, shift))
    metrics = {"docking_score": -11.0}
    original = _data(
        dict(
            complex_graph(complexes["crystal"], complexes["receptor"], None, metrics),
            id="imatinib",
            pose=1,
            source="docked",
        )
    )
    moved = _data(complex_graph(_moved(complexes["crystal"], rotation, shift), moved_receptor, None, metrics))
    assert not torch.allclose(original.pos, moved.pos)
    with torch.no_grad():
        a, b = model(Batch.from_data_list([original])), model(Batch.from_data_list([moved]))
    for head in ("affinity", "logit"):
        assert torch.allclose(a[head], b[head], atol=1e-5), head

    # nodes and edges listed in another order: same score
    gen = torch.Generator().manual_seed(1)
    n, e = original.num_nodes, original.edge_index.shape[1]
    perm = torch.randperm(n, generator=gen)  # new node k is old node perm[k]
    where = torch.empty_like(perm)
    where[perm] = torch.arange(n)
    edge_perm = torch.randperm(e, generator=gen)
    shuffled = Data(
        x=original.x[perm],
        edge_index=where[original.edge_index][:, edge_perm],
        edge_attr=original.edge_attr[edge_perm],
        globals=original.globals,
        globals_mask=original.globals_mask,
    )
    with torch.no_grad():
        c = model(Batch.from_data_list([shuffled]))
        # and alone or inside a batch of other complexes
        _, others = load_graphs(complexes["files"][0])
        d = model(Batch.from_data_list(others[:3] + [original]))
    for head in ("affinity", "logit"):
        assert torch.allclose(a[head], c[head], atol=1e-5)
        assert torch.allclose(a[head], d[head][-1:], atol=1e-5)
    assert count_parameters(ComplexScorer(DEFAULT_SCHEMA)) > 50_000


# --------------------------------------------------------------------------- assay tables and splits


def test_bad_assay_rows_listed_with_reasons(tmp_path):
    (tmp_path / "a.csv").write_text(
        "ID,SMILES,Value\n"
        "c1,CCO,5.1\n"
        "c2,not_a_smiles,6.0\n"
        "c3,CCN,\n"
        "c1,CCC,7.0\n"
        "c4,CCCl,abc\n"
        ",CC,5.0\n"
        "c 5,c1ccccc1,4.2\n"
    )
    assay = read_assay(tmp_path / "a.csv")
    assert assay.task == "regression"
    assert list(assay.table["id"]) == ["c1", "c_5"] and list(assay.table["label"]) == [5.1, 4.2]
    reasons = {f["id"]: f["reason"] for f in assay.failures}
    assert all(f["stage"] == "assay" for f in assay.failures)
    assert "invalid SMILES" in reasons["c2"] and "missing value" in reasons["c3"]
    assert "duplicate id (first seen on line 2)" in reasons["c1"] and "not a number" in reasons["c4"]
    assert "no id" in reasons["line7"]
    cls = read_assay(
        pd.DataFrame(
            {
                "id": ["a", "b", "c", "d"],
                "smiles": ["C", "CC", "CCC", "CCCC"],
                "active": ["1", "inactive", "yes", "maybe"],
            }
        )
    )
    assert cls.task == "classification" and list(cls.table["label"]) == [1.0, 0.0, 1.0]
    assert "active must be" in cls.failures[0]["reason"]


def test_scaffold_split_is_deterministic_and_separates_scaffolds():
    ids = [cid for cid, _ in SMALL]
    smiles = [smi for _, smi in SMALL]
    split = scaffold_split(ids, smiles, (0.7, 0.15, 0.15), seed=3)
    assert sorted(sum(split.values(), [])) == sorted(ids) and split["val"] and split["test"]
    scaffold = dict(zip(ids, map(murcko_scaffold, smiles)))
    sides = [{scaffold[i] for i in split[p]} for p in ("train", "val", "test")]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert scaffold_split(ids[::-1], smiles[::-1], (0.7, 0.15, 0.15), seed=3) == split
    assert random_split(ids, seed=1) == random_split(ids[::-1], seed=1) != random_split(ids, seed=2)


# --------------------------------------------------------------------------- training, saving, loading


def test_train_save_reload_score_regression(trained, complexes):
    folder, summary = trained
    assert summary.compounds == complexes["n_compounds"] and summary.graphs == complexes["n_graphs"]
    assert {p.name for p in folder.iterdir()} == {"model_0.pt", "model_1.pt", "card.json", "learning_curve.png"}
    card = json.loads((folder / "card.json").read_text())
    assert card["schema_version"] == "vscreen-graph/1" and card["schema"]["node_dim"] == DEFAULT_SCHEMA.node_dim
    assert len(card["data"]["fingerprint"]) == 64 and card["split"]["method"] == "scaffold"
    assert set(card["versions"]) >= {"torch", "torch_geometric", "rdkit", "vscreen"}
    assert set(card["metrics"]["test"]) == {"gnn", "docking", "ligand_only"}
    assert {"rmse", "pearson", "spearman", "auroc", "bedroc"} <= set(card["metrics"]["test"]["gnn"])
    assert [m["seed"] for m in card["members"]] == [42, 43] and card["parameters"] > 1000
    state = torch.load(folder / "model_0.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    ensemble = load_ensemble(folder)
    _, graphs = load_graphs(complexes["files"][0])
    table = ensemble.score(graphs)
    assert list(table.columns[:5]) == ["id", "pose", "source", "gnn_score", "gnn_spread"]
    assert table["gnn_score"].notna().all() and (table["gnn_spread"] > 0).all() and table["p_active"].isna().all()
    again = load_ensemble(folder).score(graphs)
    pd.testing.assert_frame_equal(table, again)
    failures = pd.read_csv(complexes["dir"] / "train.failures.csv")
    assert list(failures.columns) == ["id", "stage", "reason"] and len(failures) == 0


def test_train_classification_and_determinism(complexes):
    schema, graphs = load_graphs(complexes["files"][0])
    graphs += load_graphs(complexes["files"][1])[1] + load_graphs(complexes["files"][2])[1]
    assay = complexes["dir"] / "assay_cls.csv"
    settings = TrainSettings(**dict(TINY, max_epochs=3, n_models=1), split="random")
    first = train_ensemble(graphs, assay, settings, schema, name="cls")
    second = train_ensemble(graphs, assay, settings, schema, name="cls")
    assert first.card["task"] == "classification" and first.card["heads"] == ["active"]
    metrics = first.card["metrics"]["test"]
    assert {"auroc", "ef1", "ef5", "bedroc"} <= set(metrics["gnn"]) and set(metrics) == {
        "gnn",
        "docking",
        "ligand_only",
    }
    assert first.card["data"]["fingerprint"] == second.card["data"]["fingerprint"]
    for a, b in zip(first.ensemble.members[0].state_dict().values(), second.ensemble.members[0].state_dict().values()):
        assert torch.equal(a, b)
    scores = first.ensemble.score(graphs[:4])
    assert scores["p_active"].between(0, 1).all() and scores["affinity"].isna().all()


def test_model_folder_errors(trained, tmp_path):
    folder, _ = trained
    card = json.loads((folder / "card.json").read_text())
    old = tmp_path / "models" / "old"
    old.mkdir(parents=True)
    for f in ("model_0.pt", "model_1.pt"):
        (old / f).write_bytes((folder / f).read_bytes())
    card["schema"]["version"] = "vscreen-graph/0"
    (old / "card.json").write_text(json.dumps(card))
    with pytest.raises(
        ModelError,
        match=r"model 'reg' was trained on graph schema vscreen-graph/0 but this pipeline "
        r"produces vscreen-graph/1; retrain it",
    ):
        load_ensemble(old)
    with pytest.raises(ModelError, match=r"rbf_size: 16 \(model\) vs 32 \(pipeline\)"):
        load_ensemble(folder, expect_schema=GraphSchema(rbf_size=32))
    with pytest.raises(ModelError, match=r"model 'nope' not found .*available models under '.*models': old"):
        load_ensemble("nope", models_dir=tmp_path / "models")
    (tmp_path / "models" / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no card.json.*available models"):
        load_ensemble("empty", models_dir=tmp_path / "models")
    assert available_models(tmp_path / "models") == ["old"]
    (old / "model_1.pt").write_bytes(b"not a checkpoint")
    card["schema"]["version"] = "vscreen-graph/1"
    (old / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model_1.pt' has SHA-256 .* but card.json records"):
        load_ensemble(old)
    card["members"][1]["sha256"] = hashlib.sha256(b"not a checkpoint").hexdigest()  # a card that vouches for it
    (old / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model_1.pt' cannot be read"):
        load_ensemble(old)


def test_graph_file_of_other_schema_refused(trained, complexes, tmp_path):
    folder, _ = trained
    _, graphs = load_graphs(complexes["files"][0])
    save_graphs(tmp_path / "other.pt", [], GraphSchema(contact_cutoff=4.5))
    with pytest.raises(GraphError, match="featurize again"):
        score_graph_files([complexes["files"][0], tmp_path / "other.pt"], folder)
    with pytest.raises(ModelError, match="retrain"):
        score_graph_files(complexes["files"], folder, expect_schema=GraphSchema(rbf_size=8))


# --------------------------------------------------------------------------- Dask


def test_one_and_two_dask_workers_agree(trained, complexes):
    folder, _ = trained
    local = score_graph_files(complexes["files"], folder, batch_size=4, threads=1)
    assert len(local) == complexes["n_graphs"] and local[["id", "pose"]].equals(
        local[["id", "pose"]].sort_values(["id", "pose"]).reset_index(drop=True)
    )
    results = {}
    with dask_client(DaskSettings(n_workers=2)) as client:  # one cluster: 2 workers, then scaled down to 1
        for n in (2, 1):
            if n == 1:
                client.cluster.scale(1)
                while len(client.scheduler_info()["workers"]) != 1:
                    time.sleep(0.1)
            results[n] = score_graph_files(complexes["files"], folder, client=client, batch_size=4)
            loads = [info["loads"] for info in client.run(cache_info).values()]
            assert max(loads) == 1  # the model is read once per worker, not once per task
    for n in (1, 2):
        assert results[n][["id", "pose", "source"]].equals(local[["id", "pose", "source"]])
    cols = ["gnn_score", "gnn_spread", "affinity", "affinity_spread"]
    assert np.abs(results[1][cols].to_numpy() - results[2][cols].to_numpy()).max() <= 1e-6
    assert np.abs(results[1][cols].to_numpy() - local[cols].to_numpy()).max() <= 1e-5


# --------------------------------------------------------------------------- faults while scoring


@pytest.fixture(scope="module")
def faulty_run(complexes, tmp_path_factory):
    """The fixture's 3 graph files as docked chunks ``graphs/chunk_0000{0,1,2}.pt`` plus a refined
    batch ``graphs/batch_00000.pt`` (chunk 0's graphs as refined complexes), and the ids of each."""
    out = tmp_path_factory.mktemp("faulty") / "graphs"
    out.mkdir()
    files = []
    for i, path in enumerate(complexes["files"]):
        files.append(out / f"chunk_{i:05d}.pt")
        files[-1].write_bytes(path.read_bytes())
    refined = torch.load(complexes["files"][0], weights_only=True)["graphs"]
    for graph in refined:
        graph["source"] = "refined"
    files.append(out / "batch_00000.pt")
    save_graphs(files[-1], refined)
    ids = {f: sorted({g.id for g in load_graphs(f)[1]}) for f in files}
    keys = {f: {(g.id, int(g.pose), g.source) for g in load_graphs(f)[1]} for f in files}
    return dict(files=files, ids=ids, keys=keys)


@pytest.fixture(scope="module")
def two_workers():
    with dask_client(DaskSettings(n_workers=2)) as client:
        yield client


def _broken_copy(files: list, folder, damage: dict) -> list:
    """Copies of ``files`` in ``folder/graphs`` with ``damage[name](bytes) -> bytes`` applied."""
    (folder / "graphs").mkdir()
    out = []
    for f in files:
        out.append(folder / "graphs" / f.name)
        data = f.read_bytes()
        out[-1].write_bytes(damage[f.name](data) if f.name in damage else data)
    return out


def _without(table: pd.DataFrame, keys: set) -> pd.DataFrame:
    keep = [k not in keys for k in zip(table["id"], table["pose"], table["source"])]
    return table[keep].reset_index(drop=True)


def test_unreadable_graph_file_costs_only_its_compounds(trained, faulty_run, two_workers, tmp_path):
    """A truncated docked chunk and a refined batch of garbage bytes among good files: the other
    files' scores are exactly an undisturbed run's, the truncated chunk's compounds are failure
    rows (stage score) and the refined batch's are warnings (still ranked by their docked graphs)."""
    folder, _ = trained
    files, ids, keys = faulty_run["files"], faulty_run["ids"], faulty_run["keys"]
    refined = [files[3]]
    undisturbed = score_library(files, folder, two_workers, ids=ids, refined=refined, batch_size=4)
    assert not undisturbed.failures and not undisturbed.warnings and not undisturbed.unreadable
    assert set(undisturbed.table["source"]) == {"docked", "refined"}

    broken = _broken_copy(
        files,
        tmp_path,
        {"chunk_00001.pt": lambda b: b[: len(b) // 2], "batch_00000.pt": lambda b: b"\x00garbage\xff" * 64},
    )
    broken_ids = {b: ids[f] for b, f in zip(broken, files)}
    result = score_library(broken, folder, two_workers, ids=broken_ids, refined=[broken[3]], batch_size=4)
    assert isinstance(result, ScoreResult)
    expected = _without(_without(undisturbed.table, keys[files[1]]), keys[files[3]])
    pd.testing.assert_frame_equal(result.table, expected)  # the same workers, the same batches: bit-identical

    assert [f["id"] for f in result.failures] == ids[files[1]] and {f["stage"] for f in result.failures} == {"score"}
    assert all(f["reason"].startswith("graph file graphs/chunk_00001.pt cannot be read: ") for f in result.failures)
    assert [w["id"] for w in result.warnings] == ids[files[3]] and {w["stage"] for w in result.warnings} == {"score"}
    assert all(
        w["reason"].startswith("refined batch batch_00000: graph file graphs/batch_00000.pt cannot be read: ")
        and w["reason"].endswith("; ranked by its docked pose")
        for w in result.warnings
    )
    assert set(result.unreadable) == {str(broken[1]), str(broken[3])}
    rows = result.rows()
    assert list(rows.columns) == ["id", "stage", "reason"] and len(rows) == len(ids[files[1]]) + len(ids[files[3]])

    # in this process: the same rows; the strict form refuses, naming the file
    local = score_library(broken, folder, ids=broken_ids, refined=[broken[3]], batch_size=4, threads=1)
    assert local.failures == result.failures and local.warnings == result.warnings
    assert len(local.table) == len(expected)
    with pytest.raises(GraphError, match=r"chunk_00001.pt.*cannot be read|cannot be read.*chunk_00001.pt"):
        score_graph_files(broken, folder, batch_size=4, threads=1)
    # another schema is not a damaged file: a run-level error, as before
    save_graphs(tmp_path / "graphs" / "other.pt", [], GraphSchema(contact_cutoff=4.5))
    with pytest.raises(GraphError, match="featurize again"):
        score_library([broken[0], tmp_path / "graphs" / "other.pt"], folder, two_workers)


def test_ids_of_a_runs_graph_files_come_from_the_stage_outputs(tmp_path):
    """RunGraphIds: the feature table's ids; if it is unreadable too, the docked (or refined) pose
    table's less the compounds featurization failed; KeyError when nothing says."""
    from pipeline.io import write_failures
    from pipeline.layout import RunLayout, write_manifest
    from pipeline.scoring.score import RunGraphIds

    layout = RunLayout(tmp_path / "run")
    write_manifest(layout.chunks_dir, "chunks", ["chunk_00000", "chunk_00001"])
    write_manifest(layout.batches_dir, "batches", ["batch_00000"])
    layout.features_dir.mkdir(parents=True)
    layout.docked_dir.mkdir()
    layout.refined_dir.mkdir()
    pd.DataFrame({"id": ["b", "a", "a"], "pose": [1, 1, 2]}).to_parquet(layout.feature_table("chunk_00000"))
    layout.feature_table("chunk_00001").write_bytes(b"not parquet")
    pd.DataFrame({"id": ["c", "d", "e"], "pose": [1, 1, 1]}).to_parquet(layout.docked_table("chunk_00001"))
    write_failures([dict(id="d", stage="featurize", reason="pose 1: boom")], layout.feature_failures("chunk_00001"))
    ids = RunGraphIds(layout)
    assert list(ids) == layout.graph_files() and len(ids) == 3
    assert ids[layout.graph_file("chunk_00000")] == ["a", "b"]
    assert ids[str(layout.graph_file("chunk_00001"))] == ["c", "e"]
    with pytest.raises(KeyError, match="not known"):  # no feature table, no refined table
        ids[layout.graph_file("batch_00000")]
    with pytest.raises(KeyError):
        ids[tmp_path / "graphs" / "chunk_00000.pt"]  # not a file of this run


def test_cancelled_score_task_is_retried_and_a_persistent_one_raises(trained, faulty_run, two_workers):
    from test_dask_cluster import FlakyClient

    from pipeline.dask_cluster import TASK_RETRIES, InfrastructureError

    folder, _ = trained
    files, ids = faulty_run["files"], faulty_run["ids"]
    undisturbed = score_library(files, folder, two_workers, ids=ids, batch_size=4)
    second = lambda args: args[0].endswith("chunk_00001.pt")  # noqa: E731
    flaky = FlakyClient(two_workers, cancel=1, select=second)
    retried = score_library(files, folder, flaky, ids=ids, batch_size=4)
    assert sum(second(a) for a in flaky.submitted) == 2 and not retried.failures
    pd.testing.assert_frame_equal(retried.table, undisturbed.table)

    flaky = FlakyClient(two_workers, cancel=100, select=second)
    with pytest.raises(
        InfrastructureError,
        match=r"score graphs/chunk_00001.pt hit a Dask infrastructure fault "
        r"4 times, the last one FutureCancelledError",
    ):
        score_library(files, folder, flaky, ids=ids, batch_size=4)
    assert sum(second(a) for a in flaky.submitted) == 1 + TASK_RETRIES


# --------------------------------------------------------------------------- leave one target out


def _two_targets(complexes):
    """The fixture's graphs and classification labels split into two pretend targets A and B."""
    schema, graphs = load_graphs(complexes["files"][0])
    for f in complexes["files"][1:]:
        graphs += load_graphs(f)[1]
    assay = pd.read_csv(complexes["dir"] / "assay_cls.csv")
    halves = {"A": assay.iloc[::2], "B": assay.iloc[1::2]}
    by_target = {t: [g for g in graphs if g.id in set(a["id"])] for t, a in halves.items()}
    return schema, by_target, halves


def test_leave_one_target_out(complexes):
    schema, by_target, halves = _two_targets(complexes)
    settings = TrainSettings(**dict(TINY, max_epochs=2, n_models=1), split="random")
    table = leave_one_target_out(by_target, halves, settings, schema)
    assert len(table) == 6 and set(table["method"]) == {"gnn", "docking", "ligand_only"}
    assert (table.groupby("target")["n_test"].first() == [len(halves["A"]), len(halves["B"])]).all()
    assert table["auroc"].between(0, 1).all()


def test_multi_target_training_reports_each_target(complexes):
    schema, by_target, halves = _two_targets(complexes)
    settings = TrainSettings(**dict(TINY, max_epochs=2, n_models=1), split="random", fractions=(0.6, 0.2, 0.2))
    result = train_multi_target(by_target, halves, settings, schema, name="multi")
    card = result.card
    assert card["data"]["targets"] == ["A", "B"]
    assert card["data"]["n_compounds_by_target"] == {"A": len(halves["A"]), "B": len(halves["B"])}
    held_out = card["split"]["ids"]["test"]
    for target in ("A", "B"):  # every target is split on its own, so each has held-out compounds
        mine = [k for k in held_out if k.startswith(f"{target}/")]
        assert mine and card["metrics_by_target"][target]["test"]["gnn"]["n"] == len(mine)
        assert set(card["metrics_by_target"][target]["test"]) == {"gnn", "docking", "ligand_only"}
    assert card["metrics"]["test"]["gnn"]["n"] == len(held_out)


def test_score_reads_only_the_graph_files_the_run_made(complexes, trained, tmp_path):
    """A rerun with a smaller refine.top_n leaves an earlier selection's batch graphs behind; ``vscreen
    score`` takes the run's files from the manifests (RunLayout), so the stale ones are never scored."""
    from pipeline.cli import main
    from pipeline.layout import write_manifest

    run = tmp_path / "results" / "rerun"
    (run / "graphs").mkdir(parents=True)
    write_manifest(run / "chunks", "chunks", ["chunk_00000"])
    write_manifest(run / "refine_batches", "batches", [])  # this selection made no batch
    (run / "graphs" / "chunk_00000.pt").write_bytes(complexes["files"][0].read_bytes())
    (run / "graphs" / "batch_00003.pt").write_bytes(complexes["files"][1].read_bytes())  # left by an earlier run
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": "rerun",
                "library": {"path": "library.csv"},
                "receptor": {"path": "receptor.pdb"},
                "box": {"center": [0, 0, 0], "size": [10, 10, 10]},
                "dask": {"n_workers": 1},
                "score": {"model": str(trained[0])},
            }
        )
    )
    assert main(["score", "--run-dir", str(run), "--config", str(config)]) == 0
    scored = pd.read_parquet(run / "scores.parquet")
    expected = {g["id"] for g in load_graphs(complexes["files"][0])[1]}
    stale = {g["id"] for g in load_graphs(complexes["files"][1])[1]} - expected
    assert set(scored["id"]) == expected and not set(scored["id"]) & stale
