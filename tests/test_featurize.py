"""Featurization: ProLIF fingerprints on 1iep, rigid-motion invariance of graphs,
Dask determinism (1 vs 2 workers), broken poses as failure rows, and Dask faults: a
worker SIGKILLed mid-task (VSCREEN_FAULTS kill-once) changes nothing, a persistent fault
raises InfrastructureError and writes nothing (it used to fail the task's poses)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.box import Box
from pipeline.config import ConfigError
from pipeline.dask_cluster import DaskSettings, dask_client, make_client
from pipeline.docking import DockingSettings, dock_chunk
from pipeline.featurize import FeaturizeSettings, PoseInput, featurize_batch, featurize_docked_chunk, read_docked_poses
from pipeline.graphs import DEFAULT_SCHEMA, GraphSchema, complex_graph, load_graphs
from pipeline.interactions import (
    Receptor,
    interaction_counts,
    load_receptor,
    pose_fingerprint,
    protein_from_pdb,
    trajectory_persistence,
)
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.receptor import prepare_receptor

#: Imatinib's hydrogen bonds in 1IEP, read from the ligand's side (ProLIF's convention).
CRYSTAL_HBONDS = {
    "MET318.A:HBAcceptor",  # hinge backbone NH -> pyridine N
    "THR315.A:HBDonor",  # gatekeeper side-chain O <- aminopyrimidine NH
    "GLU286.A:HBDonor",  # alphaC Glu carboxylate <- amide NH
    "ASP381.A:HBAcceptor",
}  # DFG Asp backbone NH -> amide O
SMALL_LIGANDS = [
    ("indole", "c1ccc2[nH]ccc2c1"),
    ("benzoic", "OC(=O)c1ccccc1"),
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("phenylpyridine", "c1ccc(-c2ccncc2)cc1"),
]


@pytest.fixture(scope="module")
def abl(fixtures, tmp_path_factory):
    """1iep receptor prepared by the pipeline (PDB with hydrogens, PDBQT) and the crystal ligand."""
    out = tmp_path_factory.mktemp("abl")
    prepare_receptor(fixtures / "1iep" / "1iep_receptorH.pdb", out / "receptor.pdb", out / "receptor.pdbqt")
    crystal = Chem.MolFromMolFile(str(fixtures / "1iep" / "1iep_ligand.sdf"), removeHs=False)
    return out / "receptor.pdb", out / "receptor.pdbqt", crystal


@pytest.fixture(scope="module")
def docked(abl, tmp_path_factory):
    """A docked chunk of four small ligands, two poses each (exhaustiveness 1, 14 Å box)."""
    _, pdbqt, _ = abl
    out = tmp_path_factory.mktemp("docked")
    rows = [prepare_ligand(cid, smi, LigandSettings())[1] for cid, smi in SMALL_LIGANDS]
    pd.DataFrame(rows).to_parquet(out / "ligands.parquet")
    dock_chunk(
        out / "ligands.parquet",
        pdbqt,
        Box((15.19, 53.9, 16.92), (14.0, 14.0, 14.0)),
        DockingSettings(exhaustiveness=1, n_poses=2, threads=2),
        out / "chunk_00000.sdf",
        out / "chunk_00000.parquet",
        out / "dock.failures.csv",
    )
    return out / "chunk_00000.sdf", out / "chunk_00000.parquet"


def _moved(mol: Chem.Mol, rotation: np.ndarray, shift: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, xyz in enumerate(conf.GetPositions() @ rotation.T + shift):
        conf.SetAtomPosition(i, Point3D(*xyz))
    return out


def test_receptor_charges_follow_hydrogens(abl):
    receptor = load_receptor(abl[0])
    charge = {str(res.resid): Chem.GetFormalCharge(res) for res in receptor.molecule}
    assert charge["GLU286.A"] == -1 and charge["ASP381.A"] == -1
    assert charge["LYS271.A"] == 1 and charge["ARG362.A"] == 1
    his = [res for res in receptor.molecule if res.resid.name == "HIS"]
    for res in his:  # cationic only when both ring nitrogens carry a hydrogen (HIP)
        names = {a.GetPDBResidueInfo().GetName().strip() for a in res.GetAtoms()}
        assert Chem.GetFormalCharge(res) == int({"HD1", "HE2"} <= names)
    assert load_receptor(abl[0]) is receptor  # read once per process


def test_1iep_crystal_hbonds(abl):
    receptor_pdb, _, crystal = abl
    fingerprint = pose_fingerprint(crystal, load_receptor(receptor_pdb))
    print("1iep interactions:", sorted(fingerprint))
    assert CRYSTAL_HBONDS <= set(fingerprint)
    assert all(fingerprint.values())
    counts = interaction_counts(fingerprint)
    assert counts["n_HBDonor"] >= 2 and counts["n_HBAcceptor"] >= 2 and counts["n_Hydrophobic"] >= 5


def test_trajectory_persistence_counts_frames(abl):
    receptor_pdb, _, crystal = abl
    receptor = load_receptor(receptor_pdb)
    away = _moved(crystal, np.eye(3), np.array([40.0, 0.0, 0.0]))  # out of the pocket: no interaction
    persistence = trajectory_persistence(
        [(receptor, crystal), (receptor, crystal), (receptor, crystal), (receptor, away)]
    )
    assert {k: persistence[k] for k in CRYSTAL_HBONDS} == {k: 0.75 for k in CRYSTAL_HBONDS}


def _pocket_pdb(receptor_pdb, ligand, path, cutoff=8.0):
    """The receptor's whole residues within ``cutoff`` of the ligand, as MD pocket frames are saved."""
    keep = {str(r) for r in load_receptor(receptor_pdb).pocket(ligand.GetConformer().GetPositions(), cutoff)}
    lines = [
        line
        for line in receptor_pdb.read_text().splitlines(keepends=True)
        if line.startswith("ATOM") and f"{line[17:20].strip()}{int(line[22:26])}.{line[21]}" in keep
    ]
    path.write_text("".join(lines) + "END\n")
    return path


def test_refined_pose_with_pocket_frames(abl, tmp_path):
    receptor_pdb, _, crystal = abl
    pocket = _pocket_pdb(receptor_pdb, crystal, tmp_path / "pocket.pdb")
    assert pose_fingerprint(crystal, Receptor.from_pdb(pocket)) == pose_fingerprint(
        crystal, load_receptor(receptor_pdb)
    )
    away = _moved(crystal, np.eye(3), np.array([0.0, 0.0, 1.5]))
    pose = PoseInput(
        "sti",
        1,
        "refined",
        crystal,
        metrics={"rmsd_mean": 0.8, "interaction_energy": -80.0},
        frames=[(pocket, crystal), (pocket, away)],
    )
    summary = featurize_batch([pose], receptor_pdb, tmp_path / "t.parquet", tmp_path / "g.pt", tmp_path / "f.csv")
    assert (summary.featurized, summary.failed) == (1, 0)
    table = pd.read_parquet(tmp_path / "t.parquet")
    pairs = [c for c in table.columns if ":" in c]
    assert table.loc[0, "source"] == "refined" and table[pairs].dtypes.eq("float64").all()
    assert set(table.loc[0, pairs]) <= {0.5, 1.0} and table.loc[0, "MET318.A:HBAcceptor"] in (0.5, 1.0)
    schema, (graph,) = load_graphs(tmp_path / "g.pt")
    known = dict(zip(schema.global_names, graph.globals_mask[0].tolist()))
    assert known == dict(
        docking_score=0,
        rmsd_mean=1,
        rmsd_max=0,
        rmsd_final=0,
        pocket_backbone_rmsd=0,
        interaction_energy=1,
        persistence_mean=1,
        n_persistent=1,
    )


def test_graph_is_invariant_to_rigid_motion(abl):
    receptor_pdb, _, crystal = abl
    protein = protein_from_pdb(receptor_pdb)
    rotation = torch.linalg.matrix_exp(
        torch.tensor([[0.0, -0.9, 0.4], [0.9, 0.0, -1.3], [-0.4, 1.3, 0.0]], dtype=torch.float64)
    ).numpy()
    shift = np.array([31.7, -12.2, 48.5])
    graphs = []
    for prot, lig in [(protein, crystal), (_moved(protein, rotation, shift), _moved(crystal, rotation, shift))]:
        receptor = Receptor(prot)
        fingerprint = pose_fingerprint(lig, receptor)
        graphs.append((fingerprint, complex_graph(lig, receptor, fingerprint, {"docking_score": -12.1})))
    (fp_a, a), (fp_b, b) = graphs
    assert fp_a == fp_b
    assert not np.allclose(a["pos"], b["pos"], atol=1.0)  # the complex really moved
    errors = {}
    for key in ("x", "edge_index", "edge_attr", "globals", "globals_mask"):
        assert a[key].shape == b[key].shape, key
        errors[key] = float(np.max(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)), initial=0.0))
    print("rigid-motion invariance, max abs difference:", errors)
    assert max(errors.values()) <= 1e-5
    assert a["x"].shape[1] == DEFAULT_SCHEMA.node_dim and a["edge_attr"].shape[1] == DEFAULT_SCHEMA.edge_dim
    contacts = a["edge_attr"][:, DEFAULT_SCHEMA.edge_feature_names.index("kind=contact")] == 1
    assert contacts.any() and a["edge_attr"][contacts, -len(DEFAULT_SCHEMA.interactions) :].any()


def _run(docked, receptor_pdb, out, client):
    sdf, table = docked
    settings = FeaturizeSettings(poses_per_compound=0, poses_per_task=2)
    summary = featurize_docked_chunk(
        sdf, table, receptor_pdb, out / "t.parquet", out / "g.pt", out / "f.csv", settings, client
    )
    schema, graphs = load_graphs(out / "g.pt", expect=settings.schema())
    return summary, pd.read_parquet(out / "t.parquet"), graphs, pd.read_csv(out / "f.csv")


def test_one_and_two_dask_workers_give_identical_outputs(abl, docked, tmp_path):
    results = {}
    for n_workers in (1, 2):
        out = tmp_path / f"w{n_workers}"
        with dask_client(DaskSettings(n_workers=n_workers)) as client:
            assert len(client.nthreads()) == n_workers
            results[n_workers] = _run(docked, abl[0], out, client)
    results[0] = _run(docked, abl[0], tmp_path / "serial", None)
    (s1, t1, g1, f1), (s2, t2, g2, f2), (_, t0, g0, _) = results[1], results[2], results[0]
    n_poses = len(pd.read_parquet(docked[1]))
    assert s1.featurized == s2.featurized == n_poses > len(SMALL_LIGANDS) and s1.failed == 0
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(t1, t0)
    assert list(t1.columns[:3]) == ["id", "pose", "source"] and (t1["source"] == "docked").all()
    assert t1[[c for c in t1.columns if ":" in c]].dtypes.eq(bool).all()
    assert list(zip(t1["id"], t1["pose"])) == sorted(zip(t1["id"], t1["pose"]))
    for a, b, c in zip(g1, g2, g0):
        assert (a.id, a.pose) == (b.id, b.pose) == (c.id, c.pose)
        for key in ("x", "edge_index", "edge_attr", "globals", "globals_mask"):
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
    assert [(g.id, g.pose) for g in g1] == list(zip(t1["id"], t1["pose"]))
    pd.testing.assert_frame_equal(f1, f2)


def test_graph_file_loads_with_weights_only(abl, docked, tmp_path):
    summary, table, graphs, _ = _run(docked, abl[0], tmp_path, None)
    payload = torch.load(tmp_path / "g.pt", weights_only=True)
    schema = GraphSchema.from_dict(payload["schema"])
    assert schema == FeaturizeSettings().schema() and payload["schema"]["version"] == schema.version
    assert payload["schema"]["node_dim"] == schema.node_dim == graphs[0].x.shape[1]
    g = graphs[0]
    assert g.globals.shape == g.globals_mask.shape == (1, schema.global_dim)
    assert g.globals_mask[0, schema.global_names.index("docking_score")] == 1
    assert g.globals_mask[0, schema.global_names.index("rmsd_mean")] == 0
    assert g.edge_index.max() < g.num_nodes and g.edge_attr.shape == (g.edge_index.shape[1], schema.edge_dim)


def test_best_pose_per_compound_by_default(docked):
    poses, failures = read_docked_poses(*docked)
    assert [p.id for p in poses] == sorted(cid for cid, _ in SMALL_LIGANDS) and not failures
    scores = pd.read_parquet(docked[1]).groupby("id")["docking_score"].min()
    assert all(p.metrics["docking_score"] == scores[p.id] for p in poses)


def test_broken_poses_become_failure_rows(abl, docked, tmp_path):
    sdf, table = docked
    broken_sdf = tmp_path / "chunk.sdf"
    broken_sdf.write_text(sdf.read_text() + "garbage\n  nothing here\n\n  2  1  0  0\nnot an sdf\n$$$$\n")
    poses, failures = read_docked_poses(broken_sdf, None, poses_per_compound=1)
    assert [f["id"] for f in failures] == ["garbage"]
    flat = Chem.AddHs(Chem.MolFromSmiles("CCO"))  # no conformer
    poses += [PoseInput("noconf", 1, ligand=flat), PoseInput("nothing", 1, ligand=None)]
    summary = featurize_batch(
        poses, abl[0], tmp_path / "t.parquet", tmp_path / "g.pt", tmp_path / "f.csv", client=None, failures=failures
    )
    assert (summary.featurized, summary.failed) == (len(SMALL_LIGANDS), 3)
    rows = pd.read_csv(tmp_path / "f.csv")
    assert sorted(rows["id"]) == ["garbage", "noconf", "nothing"] and set(rows["stage"]) == {"featurize"}
    assert "no conformer" in rows.set_index("id").loc["noconf", "reason"]
    assert sorted(pd.read_parquet(tmp_path / "t.parquet")["id"]) == sorted(cid for cid, _ in SMALL_LIGANDS)


@pytest.mark.parametrize("allowed_failures", [3, 0], ids=["dask-reschedules", "we-resubmit"])
def test_worker_killed_mid_featurization_changes_nothing(abl, docked, tmp_path, monkeypatch, caplog, allowed_failures):
    """A worker is SIGKILLed while it featurizes one pose. With Dask's default allowed failures the
    nanny restarts it and the scheduler reruns the task; with none, KilledWorker reaches
    featurize_batch, which resubmits the task. Either way: the outputs of an undisturbed run."""
    import dask
    import distributed  # noqa: F401 - its config defaults must be loaded before dask.config.set overrides one

    serial = _run(docked, abl[0], tmp_path / "serial", None)
    victim = sorted(set(serial[1]["id"]))[1]
    monkeypatch.setenv("VSCREEN_FAULTS", f"featurize:{victim}:kill-once")
    monkeypatch.setenv("VSCREEN_FAULTS_DIR", str(tmp_path / "faults"))
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        with dask_client(DaskSettings(n_workers=2)) as client, caplog.at_level("WARNING", "pipeline.dask_cluster"):
            killed = _run(docked, abl[0], tmp_path / "killed", client)
    assert len(list((tmp_path / "faults").iterdir())) == 1  # the fault fired: a worker died mid-task
    resubmitted = [r.getMessage() for r in caplog.records if "resubmitting" in r.getMessage()]
    assert all("KilledWorker" in m for m in resubmitted)
    assert len(resubmitted) >= 1 if allowed_failures == 0 else not resubmitted, resubmitted
    (s0, t0, g0, f0), (s1, t1, g1, f1) = serial, killed
    assert (s1.poses, s1.featurized, s1.failed) == (s0.poses, s0.featurized, 0)
    pd.testing.assert_frame_equal(t1, t0)
    pd.testing.assert_frame_equal(f1, f0)
    assert [(g.id, g.pose) for g in g1] == [(g.id, g.pose) for g in g0]
    for a, b in zip(g1, g0):
        for key in ("x", "edge_index", "edge_attr", "globals", "globals_mask"):
            assert torch.equal(a[key], b[key])


def test_persistent_dask_fault_raises_instead_of_failing_poses(abl, docked, tmp_path):
    """A task whose future keeps coming back cancelled (a lost scheduler looks the same) is
    retried, then InfrastructureError: no failure rows for good poses, no outputs at all."""
    from test_dask_cluster import FlakyClient

    from pipeline.dask_cluster import TASK_RETRIES, InfrastructureError

    first = lambda args: args[1][0].id == "benzoic"  # noqa: E731 - the task holding the first poses
    with dask_client(DaskSettings(n_workers=1)) as client:
        flaky = FlakyClient(client, cancel=100, select=first)
        with pytest.raises(InfrastructureError, match=r"task 0 \(benzoic .*hit a Dask infrastructure fault 4 times"):
            _run(docked, abl[0], tmp_path, flaky)
        assert sum(map(first, flaky.submitted)) == 1 + TASK_RETRIES
        flaky = FlakyClient(client, cancel=2, select=first)  # transient: retried, same outputs
        again = _run(docked, abl[0], tmp_path / "transient", flaky)
    assert not any((tmp_path / name).exists() for name in ("t.parquet", "g.pt", "f.csv"))
    serial = _run(docked, abl[0], tmp_path / "serial", None)
    pd.testing.assert_frame_equal(again[1], serial[1])
    assert again[0].failed == 0 and len(again[3]) == 0


def test_dask_settings_are_checked():
    with pytest.raises(ConfigError, match="dask.scheduler"):
        DaskSettings(scheduler="kubernetes")
    with pytest.raises(ConfigError, match="dask.address"):
        DaskSettings(scheduler="address")
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="dask-jobqueue"):
            make_client(DaskSettings(scheduler="slurm"))
