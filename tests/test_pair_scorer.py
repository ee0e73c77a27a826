"""The pair-term scorer: Vina's own energy as the anchor, invariances, the protein-deletion ablation, training.

Poses are docked here (ACHE demo receptor, exhaustiveness 1, a small box) and rescored by
the ``vina`` package itself, so the anchor compares against what Vina reports, not
against a re-implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Geometry import Point3D
from scipy.spatial.transform import Rotation
from torch_geometric.data import Batch

from pipeline.box import Box, read_vina_config
from pipeline.docking import Docker, DockingSettings
from pipeline.graphs import GraphError
from pipeline.ligands import LigandSettings, prepare_ligand, to_pdbqt
from pipeline.pair_graphs import (
    DEFAULT_PAIR_SCHEMA,
    GLOBAL_NAMES,
    PAIR_FLAGS,
    VINA_TERMS,
    VINA_WEIGHTS,
    XS_DONOR,
    XS_TYPES,
    ligand_charge_signs,
    load_pair_graphs,
    load_vina_receptor,
    pair_graph,
    save_pair_graphs,
    to_data,
    vina_terms,
    without_protein,
    xs_type,
)
from pipeline.scoring.model import count_parameters
from pipeline.scoring.pair_model import (
    PairModelConfig,
    PairScorer,
    pairwise_ranking_loss,
    residue_contributions,
)

# a neutral amide-phenol and a cationic amine: H-bonds, hydrophobic contacts, an ammonium
LIGANDS = [("paracetamol", "CC(=O)Nc1ccc(O)cc1"), ("benzylpiperidinium", "C[NH+]1CCC(CC1)Cc1ccccc1")]
COLUMN = {name: k for k, name in enumerate(GLOBAL_NAMES)}


def _moved(pose: Chem.Mol, rotation: np.ndarray | None = None, shift=(0.0, 0.0, 0.0)) -> Chem.Mol:
    out = Chem.Mol(pose)
    conf = out.GetConformer()
    xyz = conf.GetPositions() @ (np.eye(3) if rotation is None else rotation).T + np.asarray(shift)
    for i, (x, y, z) in enumerate(xyz):
        conf.SetAtomPosition(i, Point3D(float(x), float(y), float(z)))
    return out


@pytest.fixture(scope="module")
def docked(repo):
    """Poses docked into the ACHE demo receptor with Vina's own score of each (plus a clashing shifted pose)."""
    receptor_path = repo / "resources" / "demo" / "ACHE_target.pdbqt"
    box = read_vina_config(repo / "resources" / "demo" / "ACHE_conf.txt")
    settings = DockingSettings(exhaustiveness=1, n_poses=2, threads=1, seed=7)
    docker = Docker(receptor_path, Box(box.center, (18.0, 18.0, 18.0)), settings)
    receptor = load_vina_receptor(receptor_path)
    poses = []
    for cid, smiles in LIGANDS:
        _, row = prepare_ligand(cid, smiles, LigandSettings())
        found, _ = docker.dock(cid, row["pdbqt"])
        for number, mol in enumerate([*found[:2], _moved(found[0], shift=(0.6, 0.3, -0.4))], start=1):
            docker.vina.set_ligand_from_string(to_pdbqt(mol))
            energies = docker.vina.score()  # total, lig_inter, flex_inter, other_inter, flex_intra, lig_intra, ...
            poses.append(dict(id=cid, pose=number, mol=mol, vina_total=energies[0], vina_inter=energies[1]))
    graphs = [dict(pair_graph(p["mol"], receptor), id=p["id"], pose=p["pose"]) for p in poses]
    return receptor, poses, graphs


def _batch(graphs) -> Batch:
    return Batch.from_data_list([to_data(g) for g in graphs])


def _trained_looking(model: PairScorer, seed: int = 0) -> PairScorer:
    """Give the zero-initialized last layers random values, so the learned terms are not zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (model.pair_energy.weight_mlp, model.pair_energy.residual_mlp):
            head[-1].weight.copy_(0.3 * torch.randn(head[-1].weight.shape, generator=gen))
            head[-1].bias.copy_(0.1 * torch.randn(head[-1].bias.shape, generator=gen))
    return model.eval()


# --------------------------------------------------------------------------- Vina typing and terms


def test_xs_typing_follows_vina():
    assert xs_type("C", ["C", "A", "HD"]) == "C_H"  # HD is not a heteroatom for Vina
    assert xs_type("A", ["A", "A", "OA"]) == "C_P"
    assert xs_type("C", ["C", "SA"]) == "C_P"  # any heteroatom, not only N/O
    assert xs_type("NA", ["C", "HD", "HD"]) == "N_DA"
    assert xs_type("N", ["C", "C", "C"]) == "N_P"
    assert xs_type("N", ["C", "HD"]) == "N_D"
    assert xs_type("OA", ["C"]) == "O_A"
    assert xs_type("OA", ["C", "HD"]) == "O_DA"
    assert xs_type("Zn", []) == "Met_D" and XS_DONOR[XS_TYPES.index("Met_D")]
    assert xs_type("HD", ["N"]) is None and xs_type("G0", ["CG0"]) is None
    with pytest.raises(GraphError):
        xs_type("Xx", [])


def test_vina_terms_at_known_surface_distances():
    c_h, o_a, n_d = XS_TYPES.index("C_H"), XS_TYPES.index("O_A"), XS_TYPES.index("N_D")
    # C_H-C_H at surface distance 0 (r = 3.8): gauss1 1, gauss2 exp(-9/4), no repulsion, full hydrophobic
    t = vina_terms(np.array([3.8, 3.8 - 0.5, 3.8 + 1.0]), np.array([c_h] * 3), np.array([c_h] * 3))
    np.testing.assert_allclose(t[0], [1.0, np.exp(-2.25), 0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(t[1, 2], 0.25)  # repulsion s^2
    np.testing.assert_allclose(t[2, 3], 0.5)  # hydrophobic halfway between s = 0.5 and 1.5
    # N_D-O_A at s = -0.35 (r = 3.15): half an H-bond; beyond 8 Å nothing
    t = vina_terms(np.array([3.15, 8.0]), np.array([n_d, n_d]), np.array([o_a, o_a]))
    np.testing.assert_allclose(t[0, 4], 0.5)
    assert t[0, 3] == 0.0 and not t[1].any()


def test_ligand_charges_spread_over_resonance_partners():
    acetate = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    assert sorted(ligand_charge_signs(acetate)[[2, 3]]) == [-1, -1]
    guanidinium = Chem.AddHs(Chem.MolFromSmiles("NC(N)=[NH2+]"))
    assert list(ligand_charge_signs(guanidinium)[[0, 2, 3]]) == [1, 1, 1]
    nitro = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1[N+](=O)[O-]"))
    assert not ligand_charge_signs(nitro).any()


# --------------------------------------------------------------------------- the anchor


def test_pair_terms_sum_to_vinas_intermolecular_energy(docked):
    """The anchor: sum_ij sum_k w_k t_k over the graph's pairs = Vina.score()'s lig_inter, and N_rot = Vina's."""
    _, poses, graphs = docked
    for pose, graph in zip(poses, graphs):
        inter = float(graph["pair_terms"].astype(np.float64).sum(axis=0) @ np.array(VINA_WEIGHTS))
        g = graph["globals"][0]
        print(
            f"{pose['id']} pose {pose['pose']}: vina inter {pose['vina_inter']:.3f} ours {inter:.3f} | "
            f"vina score {pose['vina_total']:.3f} ours {g[COLUMN['vina_score']]:.3f} | repulsion {g[COLUMN['repulsion']]:.2f}"
        )
        assert inter == pytest.approx(pose["vina_inter"], rel=0.015, abs=0.02)
        assert g[COLUMN["vina_inter"]] == pytest.approx(inter, rel=1e-5)
        assert g[COLUMN["vina_score"]] == pytest.approx(pose["vina_total"], rel=0.015, abs=0.02)
    assert max(g["globals"][0][COLUMN["repulsion"]] for g in graphs) > 2.0  # the shifted poses test the clash term
    assert {g["globals"][0][COLUMN["n_rot"]] for g in graphs} == {1.5, 2.0}  # Vina counts the OH torsion as 1/2


def test_pair_graph_layout(docked, tmp_path):
    _, _, graphs = docked
    graph, schema = graphs[0], DEFAULT_PAIR_SCHEMA
    n_lig, n = graph["n_ligand_atoms"], len(graph["x"])
    assert (
        graph["x"].shape == (n, schema.node_dim)
        and graph["x"][:n_lig, schema.node_feature_names.index("is_ligand")].all()
    )
    assert (graph["pair_index"][0] < n_lig).all() and (graph["pair_index"][1] >= n_lig).all()
    assert (graph["pair_dist"] < 8.0).all() and graph["pair_terms"].shape[1] == len(VINA_TERMS)
    assert graph["pair_flags"].shape[1] == len(PAIR_FLAGS) and graph["pair_flags"].any(axis=0).sum() >= 2
    hydrophobic = graph["pair_flags"][:, PAIR_FLAGS.index("hydrophobic")] > 0
    assert (graph["pair_terms"][hydrophobic, VINA_TERMS.index("hydrophobic")] > 0).all()
    assert graph["edge_attr"].sum(axis=1).tolist() == [1.0] * graph["edge_index"].shape[1]
    assert len(graph["residue_keys"]) == graph["pair_residue"].max() + 1
    assert any(key.startswith(("TRP", "TYR", "PHE")) for key in graph["residue_keys"])  # ACHE's aromatic gorge
    save_pair_graphs(tmp_path / "g.pt", graphs)
    loaded_schema, loaded = load_pair_graphs(tmp_path / "g.pt", expect=schema)
    assert loaded_schema == schema and len(loaded) == len(graphs)
    assert torch.equal(loaded[0].pair_terms, torch.from_numpy(graph["pair_terms"])) and loaded[0].id == graph["id"]
    with pytest.raises(GraphError):
        load_pair_graphs(tmp_path / "g.pt", expect=type(schema)(pair_cutoff=6.0))


# --------------------------------------------------------------------------- the model


def test_untrained_model_returns_vinas_score(docked):
    _, poses, graphs = docked
    model = PairScorer(DEFAULT_PAIR_SCHEMA).eval()
    n_params = count_parameters(model)
    print(f"PairScorer parameters: {n_params}")
    assert 10_000 <= n_params <= 100_000
    with torch.no_grad():
        out = model(_batch(graphs))
    ours = torch.tensor([g["globals"][0][COLUMN["vina_score"]] for g in graphs])
    torch.testing.assert_close(out["score"], ours, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["score"], out["vina_score"], rtol=1e-6, atol=1e-5)
    vina = torch.tensor([p["vina_total"] for p in poses], dtype=torch.float32)
    torch.testing.assert_close(out["score"], vina, rtol=0.015, atol=0.02)
    assert (out["logit"].argsort() == (-out["score"]).argsort()).all()  # lower score, higher logit


def test_learned_term_scales_stay_within_their_bound():
    from pipeline.scoring.pair_model import PairModelConfig

    model = PairScorer(DEFAULT_PAIR_SCHEMA, PairModelConfig(max_term_scale=10.0))
    torch.testing.assert_close(model.term_scales(), torch.ones(5))  # Vina's weights at the start
    with torch.no_grad():
        model.log_term_scale.copy_(torch.tensor([-50.0, -0.01, 0.0, 0.01, 50.0]))
    scales = model.term_scales()
    assert scales.min() >= 0.1 * (1 - 1e-5) and scales.max() <= 10.0 * (1 + 1e-5)
    torch.testing.assert_close(scales[1:4], torch.exp(torch.tensor([-0.01, 0.0, 0.01])), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="max_term_scale"):
        PairModelConfig(max_term_scale=1.0)


def test_score_is_invariant_to_rotating_and_translating_the_complex(docked):
    receptor, poses, graphs = docked
    rotation = Rotation.random(random_state=3).as_matrix()
    shift = np.array([12.0, -40.0, 7.5])
    moved_receptor = receptor.with_coordinates(receptor.xyz @ rotation.T + shift)
    moved = [pair_graph(_moved(p["mol"], rotation, shift), moved_receptor) for p in poses[:2]]
    model = _trained_looking(PairScorer(DEFAULT_PAIR_SCHEMA))
    with torch.no_grad():
        before, after = model(_batch(graphs[:2])), model(_batch(moved))
    assert not torch.allclose(before["score"], before["vina_score"])  # the learned terms are switched on
    torch.testing.assert_close(after["score"], before["score"], rtol=1e-4, atol=1e-4)


def test_deleting_the_protein_gives_score_zero_and_no_contributions(docked):
    _, _, graphs = docked
    model = _trained_looking(PairScorer(DEFAULT_PAIR_SCHEMA))
    with torch.no_grad():
        out = model(_batch([without_protein(g) for g in graphs[:3]]))
    assert out["pair_energy"].numel() == 0
    assert torch.equal(out["score"], torch.zeros(3))
    ligand_only = to_data(without_protein(to_data(graphs[0])))  # also on a loaded Data object
    assert ligand_only.num_nodes == graphs[0]["n_ligand_atoms"] and ligand_only.pair_index.shape == (2, 0)
    with torch.no_grad():
        assert float(model(ligand_only)["score"][0]) == 0.0


def test_pair_contributions_sum_to_the_score(docked):
    _, _, graphs = docked
    model = _trained_looking(PairScorer(DEFAULT_PAIR_SCHEMA), seed=1)
    batch = _batch(graphs)
    with torch.no_grad():
        out = model(batch)
    n_rot = batch.globals[:, COLUMN["n_rot"]]
    per_graph = torch.zeros(len(graphs), dtype=torch.float64).index_add(
        0, out["pair_graph"], out["pair_energy"].double()
    )
    torch.testing.assert_close((per_graph / (1 + 0.05846 * n_rot.double())).float(), out["score"], rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        single = model(to_data(graphs[0]))
    per_residue = residue_contributions(to_data(graphs[0]), single["pair_energy"])
    assert sum(per_residue.values()) == pytest.approx(float(single["inter"][0]), rel=1e-4, abs=1e-4)
    assert list(per_residue.values()) == sorted(per_residue.values())


def test_pairwise_ranking_loss():
    scores = torch.tensor([0.0, 0.0, -1.0, 1.0], requires_grad=True)
    # one pair in group "a" (values differ), none usable in "b" (equal values)
    loss = pairwise_ranking_loss(scores, [1.0, 2.0, 3.0, 3.0], ["a", "a", "b", "b"])
    assert float(loss.detach()) == pytest.approx(np.log(2.0))
    right = pairwise_ranking_loss(torch.tensor([-2.0, 0.0, 1.0]), torch.tensor([-9.0, -8.0, -7.0]), torch.zeros(3))
    wrong = pairwise_ranking_loss(torch.tensor([1.0, 0.0, -2.0]), torch.tensor([-9.0, -8.0, -7.0]), torch.zeros(3))
    assert float(right) < float(wrong)
    none = pairwise_ranking_loss(scores, [1.0, 1.0, 1.0, 1.0], [0, 1, 2, 3])
    assert float(none.detach()) == 0.0 and none.requires_grad
    loss.backward()
    assert scores.grad[0] > 0 > scores.grad[1]  # pushes the better compound's score down
    # groups_equal: a series of 3 (3 pairs) and one of 2 (1 pair) count once each, not 3:1
    s, v, g = torch.tensor([0.0, 1.0, 2.0, 0.0, 0.0]), [1.0, 2.0, 3.0, 1.0, 2.0], ["a", "a", "a", "b", "b"]
    big = np.mean([np.log1p(np.exp(-1.0)), np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    assert float(pairwise_ranking_loss(s, v, g, groups_equal=True)) == pytest.approx((big + np.log(2.0)) / 2)
    assert float(pairwise_ranking_loss(s, v, g)) == pytest.approx((3 * big + np.log(2.0)) / 4)


def test_training_reduces_a_ranking_loss(docked):
    """Smoke test: 30 Adam steps on the docked poses with invented per-series values that Vina ranks backwards."""
    _, _, graphs = docked
    torch.manual_seed(0)
    model = PairScorer(DEFAULT_PAIR_SCHEMA, PairModelConfig(hidden=16, layers=2, pair_hidden=16))
    batch = _batch(graphs)
    vina = batch.globals[:, COLUMN["vina_score"]]
    groups = [g["id"] for g in graphs]
    values = vina.neg()  # Vina's best pose is the "worst binder"
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = pairwise_ranking_loss(model(batch)["score"], values, groups)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    print(f"ranking loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.8 * losses[0]
