"""Training the pair scorer: series batches, the ranking it learns, early stopping on held-out proteins, files."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.box import Box, read_vina_config
from pipeline.docking import Docker, DockingSettings
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA, load_vina_receptor, pair_graph, to_data
from pipeline.scoring.pair_model import PairModelConfig
from pipeline.scoring.pair_train import (
    PairExample,
    PairTrainSettings,
    _batches,
    fit_ensemble,
    load_pair_ensemble,
    mean_series_tau,
    predict_scores,
    save_pair_ensemble,
)

SMALL = PairModelConfig(hidden=8, layers=1, rbf_size=8, pair_hidden=8, pair_rbf_size=8)


def _shifted(mol: Chem.Mol, shift: np.ndarray) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, xyz in enumerate(conf.GetPositions() + shift):
        conf.SetAtomPosition(i, Point3D(*map(float, xyz)))
    return out


@pytest.fixture(scope="module")
def poses(repo):
    """Six poses of two ligands in the ACHE demo pocket: each docked pose and two displaced copies."""
    receptor_path = repo / "resources" / "demo" / "ACHE_target.pdbqt"
    box = read_vina_config(repo / "resources" / "demo" / "ACHE_conf.txt")
    docker = Docker(receptor_path, Box(box.center, (16.0, 16.0, 16.0)), DockingSettings(exhaustiveness=1, n_poses=1))
    receptor = load_vina_receptor(receptor_path)
    graphs = []
    for cid, smiles in [("paracetamol", "CC(=O)Nc1ccc(O)cc1"), ("phenethylamine", "[NH3+]CCc1ccccc1")]:
        _, row = prepare_ligand(cid, smiles, LigandSettings())
        found, _ = docker.dock(cid, row["pdbqt"])
        for shift in ([0, 0, 0], [0.8, 0.0, 0.4], [-0.5, 1.0, 0.0]):
            graphs.append(to_data(pair_graph(_shifted(found[0], np.array(shift)), receptor)))
    return graphs


def test_series_batches_keep_series_whole_and_cut_screening_groups():
    examples = [PairExample(None, f"s{i // 3}", "p", dg=-float(i)) for i in range(9)]
    examples += [PairExample(None, "target", "q", active=i % 2) for i in range(10)]
    settings = PairTrainSettings(series_per_batch=1, screening_group_size=4)
    batches = _batches(examples, settings, np.random.default_rng(0))
    assert sorted(len(b) for b in batches) == [2, 3, 3, 3, 4, 4]  # 3 series, screening cut 4 + 4 + 2
    for b in batches:
        assert len({examples[i].group for i in b}) == 1
    assert sorted(i for b in batches for i in b) == list(range(19))


def test_mean_series_tau_ignores_small_and_constant_series():
    dg = np.array([-9.0, -8.0, -7.0, -6.0, -5.0, -5.0, -5.0, -7.0])
    groups = ["a"] * 4 + ["b"] * 3 + ["c"]
    assert mean_series_tau(dg.copy(), dg, groups) == pytest.approx(1.0)
    assert mean_series_tau(-dg, dg, groups) == pytest.approx(-1.0)
    assert np.isnan(mean_series_tau(dg, dg, ["c"] * 2 + ["d"] * 6, min_size=7))


def test_training_learns_a_ranking_that_vina_gets_backwards(poses, tmp_path):
    """Measured ΔG ordered opposite to Vina's scores: the untrained model has τ = -1 and training turns it round."""
    untrained = fit_ensemble([], DEFAULT_PAIR_SCHEMA, SMALL, PairTrainSettings(members=1, epochs=0)).members[0]
    vina = predict_scores(untrained, poses)
    groups = ["paracetamol"] * 3 + ["phenethylamine"] * 3
    dg = -10.0 - vina  # the best Vina pose of each series is measured weakest
    assert mean_series_tau(vina, dg, groups) == pytest.approx(-1.0)
    examples = [PairExample(g, s, s, dg=float(v)) for g, s, v in zip(poses, groups, dg)]
    settings = PairTrainSettings(members=2, epochs=60, validation_fraction=0.0, lr=1e-2, absolute_weight=0.0)
    ensemble = fit_ensemble(examples, DEFAULT_PAIR_SCHEMA, SMALL, settings)
    mean, spread = ensemble.predict(poses)
    assert mean_series_tau(mean, dg, groups) > 0.3
    assert spread.shape == (6,) and np.all(spread >= 0) and spread.max() > 0
    assert ensemble.histories[0].loss[-1] < ensemble.histories[0].loss[0]
    # the file round trip gives the same predictions
    save_pair_ensemble(tmp_path / "pair.pt", ensemble, card={"note": "test"})
    loaded, card = load_pair_ensemble(tmp_path / "pair.pt")
    np.testing.assert_allclose(loaded.predict(poses)[0], mean, rtol=1e-6)
    assert card == {"note": "test"}


def test_early_stopping_keeps_the_best_epoch_on_held_out_proteins(poses):
    groups = ["paracetamol"] * 3 + ["phenethylamine"] * 3
    examples = [PairExample(g, s, s, dg=float(-k)) for k, (g, s) in enumerate(zip(poses, groups))]
    settings = PairTrainSettings(members=1, epochs=8, patience=2, validation_fraction=0.5, lr=1e-2)
    history = fit_ensemble(examples, DEFAULT_PAIR_SCHEMA, SMALL, settings).histories[0]
    assert 1 <= len(history.validation_tau) <= 8
    # the model full training starts from (Vina re-weighted by the global phase) is the one to beat:
    # best_epoch is the best epoch that beat it, or -1 when none did
    assert np.isfinite(history.start_validation)
    best = int(np.nanargmax(history.validation_tau))
    if history.validation_tau[best] > history.start_validation:
        assert history.best_epoch == best
    else:
        assert history.best_epoch == -1


def test_global_fit_is_exact_for_any_network_state_and_lowers_the_loss(poses):
    """The closed-form score of the global phase equals the model's own score, with per-pair networks set."""
    import torch

    from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA as schema
    from pipeline.scoring.pair_model import PairScorer
    from pipeline.scoring.pair_train import _term_parts, fit_global_parameters

    torch.manual_seed(0)
    model = PairScorer(schema, SMALL).double()
    with torch.no_grad():  # per-pair networks away from their zero start, term scales away from 1
        for name, p in model.named_parameters():
            if "." in name:
                p.add_(0.3 * torch.randn_like(p))
        model.log_term_scale.copy_(torch.tensor([0.2, -0.1, 0.3, 0.0, -0.4], dtype=torch.float64))
    groups = ["paracetamol"] * 3 + ["phenethylamine"] * 3
    vina = predict_scores(model, poses)
    examples = [PairExample(g, s, s, dg=float(-10.0 - v)) for g, s, v in zip(poses, groups, vina)]
    parts_a, parts_r, n_rot = _term_parts(model, examples, batch_size=4)
    closed = (parts_a @ model.term_scales() + parts_r) / (1.0 + model.rotor_weight() * n_rot)
    np.testing.assert_allclose(closed.detach().numpy(), vina, rtol=1e-9, atol=1e-9)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "." in n}
    loss = fit_global_parameters(model, examples, PairTrainSettings(global_iterations=30))
    assert len(loss) == 2 and loss[1] < loss[0]
    for name, p in model.named_parameters():  # only the global parameters moved
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
    parts_a, parts_r, n_rot = _term_parts(model, examples)
    closed = (parts_a @ model.term_scales() + parts_r) / (1.0 + model.rotor_weight() * n_rot)
    np.testing.assert_allclose(closed.detach().numpy(), predict_scores(model, poses), rtol=1e-9, atol=1e-9)
