"""The build of the pretrained pair scorer (``models/default/build_pair.py``) on a tiny set, end to end.

Real code on small inputs: the committed Uni-FEP poses of the first posed series (a handful
of FKBP12 ligands; the shared Uni-FEP data are needed for their ΔG and reference ligand) and a
DUD-E campaign folder written here in the campaign's own format (rows, gzip poses, the
committed-receptor layout): four small molecules placed in the ACHE demo pocket, two actives,
a decoy and a cross-decoy of ``aces``. Caches go to ``tmp_path``, not the repository's.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SHARED

SERIES = "Hermite__FKBP12"
DEMO = REPO / "resources" / "demo"
# (id, role, source target, SMILES): roles as benchmarks/pose_dude.py writes them
COMPOUNDS = [
    ("aces_a_1", "active", "aces", "CC(=O)Nc1ccc(O)cc1"),
    ("aces_a_2", "active", "aces", "CN1CCCC1c1cccnc1"),
    ("aces_d_1", "decoy", "aces", "CCOC(=O)c1ccccc1"),
    ("akt2_a_1", "cross_decoy", "akt2", "NCCc1ccc(O)c(O)c1"),
]


def _load_build():
    spec = importlib.util.spec_from_file_location("build_pair", REPO / "models" / "default" / "build_pair.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_pair"] = module
    spec.loader.exec_module(module)
    return module


def _dude_campaign(folder, pose_dude) -> None:
    """A campaign folder of one target as pose_dude writes it: rows.csv, poses/aces.sdf.gz, receptors/aces.pdbqt.gz."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from pipeline.box import read_vina_config

    center = np.array(read_vina_config(DEMO / "ACHE_conf.txt").center)
    (folder / "receptors").mkdir(parents=True)
    (folder / "receptors" / "aces.pdbqt.gz").write_bytes(gzip.compress((DEMO / "ACHE_target.pdbqt").read_bytes()))
    rows = []
    for k, (cid, role, source, smiles) in enumerate(COMPOUNDS):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        assert AllChem.EmbedMolecule(mol, randomSeed=7 + k) == 0
        conf = mol.GetConformer()
        xyz = conf.GetPositions()
        for i, p in enumerate(xyz - xyz.mean(axis=0) + center):  # the ligand's centre on the box centre
            conf.SetAtomPosition(i, p.tolist())
        mol.SetProp("_Name", cid)
        mol.SetProp("role", role)
        mol.SetIntProp("pose_rank", 1)
        buffer = io.StringIO()
        with Chem.SDWriter(buffer) as writer:
            writer.write(mol)
        pose_dude.append_gzip(folder / "poses" / "aces.sdf.gz", buffer.getvalue())  # one member per docking
        row = dict.fromkeys(pose_dude.COLUMNS, "")
        row.update(target="aces", id=cid, role=role, source_target=source, smiles=smiles, status="ok", score=-5.0)
        rows.append(row)
    pd.DataFrame(rows, columns=pose_dude.COLUMNS).to_csv(folder / "rows.csv", index=False)


@pytest.fixture
def build_pair(tmp_path, monkeypatch):
    """The build module with its campaigns' caches in tmp_path and a Uni-FEP folder of the one posed series."""
    if not (SHARED / "unifep" / SERIES / "ref_ligand.sdf").is_file():
        pytest.skip("shared Uni-FEP data not present next to the repository")
    if not (REPO / "benchmarks" / "unifep_poses" / "poses" / f"{SERIES}.sdf.gz").is_file():
        pytest.skip(f"the committed poses of {SERIES} are not in this checkout")
    pytest.importorskip("dockstring")  # the DUD-E pocket's box is dockstring's
    module = _load_build()
    unifep = tmp_path / "unifep"
    unifep.mkdir()
    systems = pd.read_csv(SHARED / "unifep" / "systems.csv")
    systems[systems["folder"] == SERIES].to_csv(unifep / "systems.csv", index=False)  # one series: a fast load
    (unifep / SERIES).symlink_to(SHARED / "unifep" / SERIES)
    monkeypatch.setattr(module.pu, "UNIFEP", unifep)
    monkeypatch.setattr(module.pu, "CACHE", tmp_path / "cache" / "unifep_poses")
    monkeypatch.setattr(module.scoring_cv, "GRAPHS", tmp_path / "cache" / "pair_graphs")
    monkeypatch.setattr(module.scoring_loto, "GRAPHS", tmp_path / "cache" / "dude_pair_graphs")
    monkeypatch.setattr(module.pose_dude, "CACHE", tmp_path / "cache" / "dude_poses")
    _dude_campaign(tmp_path / "dude", module.pose_dude)
    return module


def test_quick_build_writes_a_pair_model_that_loads_scores_and_records_data_and_pockets(build_pair, tmp_path):
    from pipeline.scoring.domain import TrainingPockets, assess_pocket
    from pipeline.scoring.pair_folder import PairModel, load_pair_model

    out = tmp_path / "models" / "pair_quick"
    argv = ["--quick", "--out", str(out), "--dude-poses", str(tmp_path / "dude")]
    argv += ["--results", str(tmp_path / "no_results"), "--threads", "1"]
    assert build_pair.main(argv) == out
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "ensemble.pt"]

    model = load_pair_model(out)
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"] == "pair" and card["name"] == "pair_quick" and model.name == "pair_quick"
    assert len(model.members) == card["n_models"] == 2  # --quick: 2 members, 1 epoch
    assert card["training"]["settings"]["epochs"] == 1

    # it scores a graph of the campaign: finite columns, one value per graph
    graphs = build_pair.scoring_loto.target_graphs("aces", tmp_path / "dude")[0]
    columns = PairModel.summarize(model.predict([graphs[("aces_a_1", 1)], graphs[("aces_d_1", 1)]]))
    bad = {name: v for name, v in columns.items() if not (v.shape == (2,) and np.isfinite(v).all())}
    assert not bad, f"non-finite or misshapen score columns: {bad}"

    # the counts: every posed FKBP12 ligand (fewer than the quick cap) and each DUD-E role
    data = card["data"]
    unifep, dude = data["unifep"], data["dude"]
    n_posed = unifep["by_series"][SERIES]["examples"]
    assert 3 <= n_posed <= build_pair.QUICK["per_series"] and unifep["series_used"] == 1
    assert unifep["by_target"] == {"FKBP12": dict(group="FKBP", series=1, examples=n_posed)}
    assert not unifep["data"].startswith("/")  # paths in the card are relative to the repository
    assert dude["by_target"]["aces"]["examples"] == dict(active=2, decoy=1, cross_decoy=1)
    assert dude["by_target"]["aces"]["docked"] == dict(active=2, decoy=1, cross_decoy=1)
    assert sum(sum(c["examples"].values()) for t, c in dude["by_target"].items() if t != "aces") == 0
    assert data["n_examples"] == data["n_affinity"] + data["n_screening"] == n_posed + 4

    # one pocket per series and per target, named like the training groups; the run's own pocket is 0 away
    pockets = model.training_pockets
    assert isinstance(pockets, TrainingPockets) and pockets.names == (SERIES, "dude:aces")
    assert np.allclose(pockets.vectors.sum(axis=1), 1.0)
    assert set(data["pockets"]) == {SERIES, "dude:aces"}
    assert data["pockets"]["dude:aces"]["receptor"].endswith("receptors/aces.pdbqt.gz")
    from pipeline.box import read_vina_config

    record = assess_pocket(card, DEMO / "ACHE_target.pdbqt", read_vina_config(DEMO / "ACHE_conf.txt"))
    assert record.nearest == "dude:aces" and record.distance == pytest.approx(0.0, abs=1e-4)

    # provenance, settings from the schema, and the evaluation that is not there yet
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert card["provenance"]["commit"] == head.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", card["provenance"]["commit"] or "0" * 40)
    assert card["training_seconds"] >= 0 and "--quick" in card["provenance"]["command"]
    assert (
        card["training"]["settings_source"]["train_pair"]["group_size"]
        == card["training"]["settings"]["screening_group_size"]
    )
    for name in ("scoring_cv", "scoring_loto"):
        assert card["evaluation"][name]["status"] == build_pair.NOT_EVALUATED
    assert card["evaluation"]["promote"] is False

    # a folder that is not a pair model is never replaced
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="replaces the folder whole"):
        build_pair.main(argv)
    assert (out / "notes.txt").is_file()


def test_settings_are_the_schema_defaults_with_many_protein_batching():
    from pipeline.config import fill_defaults, load_schema
    from pipeline.scoring.pair_train import PairTrainSettings

    build_pair = _load_build()
    settings, config, record = build_pair.default_settings()
    train = fill_defaults({}, load_schema())["train"]
    assert settings.members == train["n_models"] and settings.seed == train["seed"]
    assert settings.weight_decay == train["pair"]["weight_decay"]
    assert settings.screening_group_size == train["pair"]["group_size"]
    many = PairTrainSettings()
    assert all(getattr(settings, key) == getattr(many, key) for key in build_pair.MULTI_PROTEIN)
    assert record["one_assay_values"]["validation_fraction"] == 0.0  # what the one-assay trainer would have used
    assert config.to_dict() == type(config)().to_dict()


def test_evaluation_headlines_are_read_from_the_benchmarks_results(tmp_path):
    """The card's figures from result files of the benchmarks' own summaries (tiny synthetic scores)."""
    build_pair = _load_build()
    ae, loto = build_pair.ae, build_pair.scoring_loto
    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        dg = rng.normal(-8, 1, size=8)
        for value in dg:
            rows.append(dict(series=f"s{s}", target=f"T{s}", group=f"G{s}", exp_dG=value, pair_model=value, vina=0.0))
    table = pd.DataFrame(rows)
    table["vina"] = table["exp_dG"] + rng.normal(0, 3, size=len(table))  # Vina ranks worse than the pair model
    cv = ae.summarize(table, ["pair_model", "vina"], baselines=["vina"], n=100)
    (tmp_path / "scoring_cv.json").write_text(json.dumps(dict(cv, command="x"), default=float))
    screening = []
    for t in ("aces", "akt2"):
        for k in range(30):
            role = ("active", "decoy", "cross_decoy")[k % 3]
            screening.append(dict(target=t, role=role, pair_model=float(role == "active") + rng.normal(0, 0.1)))
    screening = pd.DataFrame(screening).assign(vina=rng.normal(size=len(screening)))
    results = {neg: loto.evaluate(screening, neg, methods=("pair_model", "vina"), n=100) for neg in loto.NEGATIVES}
    (tmp_path / "scoring_loto.json").write_text(json.dumps(dict(results=results, date="d"), default=float))

    entry = build_pair.evaluation(tmp_path)
    cv_head, loto_head = entry["scoring_cv"]["headline"], entry["scoring_loto"]["headline"]
    assert cv_head["pair_model"] == pytest.approx(1.0) and cv_head["beats_docking"] is True
    assert cv_head["n_series"] == 6 and cv_head["difference"] > 0
    assert loto_head["decoy"]["pair_model"] == pytest.approx(1.0) and loto_head["beats_docking"] is True
    assert entry["promote"] is True

    (tmp_path / "scoring_loto.json").write_text(json.dumps(dict(results={})))  # another layout: said, not raised
    entry = build_pair.evaluation(tmp_path)
    assert entry["scoring_loto"]["status"].startswith("unreadable") and entry["promote"] is False


def test_excluded_groups_name_groups_or_targets_and_refuse_unknown_names():
    module = _load_build()
    data = pd.DataFrame(dict(target=["FKBP12", "MERTK"], group=["FKBP", "TAM kinases"]))
    assert module.excluded_groups(["FKBP12", "TAM kinases"], data) == {"FKBP", "TAM kinases"}
    assert module.excluded_groups([], data) == set()
    with pytest.raises(SystemExit, match="'AXL' is neither"):
        module.excluded_groups(["AXL"], data)
