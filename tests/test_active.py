"""ML-guided docking (pipeline.active): acquisition signs, the loop's budget, stopping and determinism,
streaming prediction, lookup failures, and a small real screen that beats random."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED

from pipeline.active import (
    ActiveLoop,
    Evaluation,
    FrameLibrary,
    LookupObjective,
    LoopSettings,
    ParquetLibrary,
    Prediction,
    StoppingRule,
    TopSelector,
    acquisition_function,
    greedy,
    make_surrogate,
    predict_chunks,
    thompson,
    top_fraction_found,
    ucb,
)
from pipeline.active.acquisition import uniform_keys
from pipeline.active.ensemble_training import TrainingSettings
from pipeline.active.features import GRAPH_EDGE_DIM, GRAPH_NODE_DIM, ligand_graph, morgan_counts
from pipeline.active.loop import NO_FEATURES, OBJECTIVE_STAGE, SURROGATE_STAGE
from pipeline.active.objective import NO_SCORE, NOT_IN_TABLE, NOT_RETURNED

ENAMINE = SHARED / "active_learning"


# --------------------------------------------------------------------------- helpers


class LengthSurrogate:
    """A cheap deterministic stand-in: predicts ``a * len(smiles) + b`` fitted by least squares.

    Records the size of every chunk it is asked to predict; spread = a seeded, id-free function of
    the SMILES length so UCB and Thompson have something to act on.
    """

    name = "length"

    def __init__(self) -> None:
        self.coef = (0.0, 0.0)
        self.chunk_sizes: list[int] = []
        self.fits = 0

    def fit(self, smiles: Sequence[str], scores: np.ndarray, seed: int) -> dict:
        x = np.array([len(s) for s in smiles], dtype=float)
        self.coef = tuple(np.polyfit(x, scores, 1)) if np.ptp(x) > 0 else (0.0, float(np.mean(scores)))
        self.fits += 1
        return {"seed": seed}

    def predict(self, smiles: Sequence[str]) -> Prediction:
        self.chunk_sizes.append(len(smiles))
        x = np.array([len(s) if s != "not a smiles" else np.nan for s in smiles], dtype=float)
        return Prediction(self.coef[0] * x + self.coef[1], 0.1 * (x % 3))


def _toy(n: int = 200) -> tuple[pd.DataFrame, dict[str, float]]:
    """A library of alkyl chains; longer = better score (so the length surrogate can learn it)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=n)
    frame = pd.DataFrame({"id": [f"c{i:03d}" for i in range(n)], "smiles": ["C" * k for k in lengths]})
    scores = {f"c{i:03d}": -0.1 * k + 0.01 * rng.standard_normal() for i, k in enumerate(lengths)}
    return frame, scores


def _loop(frame, scores, settings, seed=0, chunk_size=32, surrogate=None):
    return ActiveLoop(
        FrameLibrary(frame, chunk_size=chunk_size),
        LookupObjective(scores, key="id"),
        surrogate or LengthSurrogate(),
        settings,
        seed=seed,
    )


# --------------------------------------------------------------------------- acquisition


def test_acquisition_prefers_lower_scores_and_optimism_prefers_spread():
    ids = ["a", "b", "c"]
    mean = np.array([-9.0, -7.0, -7.0])
    sd = np.array([0.0, 0.0, 2.0])
    assert greedy(mean, sd, ids)[0] > greedy(mean, sd, ids)[1]  # lower score = better = higher utility
    u = ucb(mean, sd, ids, beta=2.0)
    assert u[2] > u[1]  # same mean, wider spread: optimistic for a score to minimize
    assert u[2] > u[0]  # -7 - 2*2 = -11 beats -9
    assert np.allclose(ucb(mean, sd, ids, beta=0.0), greedy(mean, sd, ids))
    assert np.allclose(thompson(mean, np.zeros(3), ids, seed=1), greedy(mean, sd, ids))
    assert np.allclose(acquisition_function("ucb", beta=1.0)(mean, sd, ids), -(mean - sd))
    with pytest.raises(ValueError, match="greedy"):
        acquisition_function("best")


def test_thompson_draws_are_keyed_by_id_seed_and_round():
    ids = [f"m{i}" for i in range(500)]
    mean, sd = np.zeros(500), np.ones(500)
    draw = thompson(mean, sd, ids, seed=3, round_index=2)
    assert np.array_equal(draw, thompson(mean, sd, ids, seed=3, round_index=2))
    assert np.array_equal(draw[100:200], thompson(mean[100:200], sd[100:200], ids[100:200], seed=3, round_index=2))
    assert not np.allclose(draw, thompson(mean, sd, ids, seed=3, round_index=3))
    assert abs(draw.mean()) < 0.2 and 0.8 < draw.std() < 1.2  # standard normal draws
    u = uniform_keys(ids, 0, 0)
    assert ((u > 0) & (u < 1)).all()


def test_top_selector_over_chunks_equals_a_global_sort_with_ties_by_id():
    rng = np.random.default_rng(1)
    ids = [f"x{i:03d}" for i in range(300)]
    utility = np.round(rng.normal(size=300), 1)  # many ties
    utility[5] = np.nan
    top = TopSelector(25)
    for start in range(0, 300, 40):
        top.add(ids[start : start + 40], utility[start : start + 40], value=np.arange(start, min(start + 40, 300)))
    order = sorted((-u, i) for u, i in zip(utility, ids) if np.isfinite(u))[:25]
    assert top.ids == [i for _, i in order]
    assert list(top.column("value")) == [int(i[1:]) for i in top.ids]
    assert "x005" not in top.ids


# --------------------------------------------------------------------------- the loop


def test_loop_spends_exactly_the_budget_in_the_expected_rounds():
    frame, scores = _toy(200)
    loop = _loop(frame, scores, LoopSettings(initial=0.05, batch=0.05, budget=0.23))
    state = loop.run()
    assert state.stopped == "budget"
    assert [r.acquired for r in state.rounds] == [10, 10, 10, 10, 6]  # round(0.23 * 200) = 46
    assert state.spent == 46 and len(state.scores) == 46
    counted = _loop(frame, scores, LoopSettings(initial=7, batch=5, budget=0.5, max_rounds=2)).run()
    assert [r.acquired for r in counted.rounds] == [7, 5, 5] and counted.stopped == "max_rounds"


def test_loop_is_deterministic_for_a_seed_and_independent_of_chunking():
    frame, scores = _toy(200)
    settings = LoopSettings(initial=0.1, batch=0.05, budget=0.3, acquisition="thompson")
    a = _loop(frame, scores, settings, seed=7, chunk_size=16).run()
    b = _loop(frame, scores, settings, seed=7, chunk_size=64).run()
    c = _loop(frame, scores, settings, seed=8, chunk_size=16).run()
    assert list(a.scores) == list(b.scores)  # same compounds, same order
    assert [r.fit for r in a.rounds] == [r.fit for r in b.rounds]
    assert list(a.scores)[:20] != list(c.scores)[:20]


def test_loop_learns_and_its_state_round_trips():
    frame, scores = _toy(200)
    loop = _loop(frame, scores, LoopSettings(initial=0.1, batch=0.1, budget=0.4))
    state = loop.run()
    best = sorted(scores, key=scores.get)[:20]
    assert len(set(best) & set(state.scores)) >= 15  # random would find ~8 of them
    assert state.rounds[-1].batch_spearman > 0.5
    again = type(state).from_dict(state.to_dict())
    assert again.scores == state.scores and again.rounds == state.rounds


def test_stopping_rule_fires_when_the_top_k_mean_stalls():
    rule = StoppingRule(top_k=3, patience=2, tolerance=0.0)
    assert not rule.should_stop([float("nan"), -5.0, -6.0])
    assert rule.should_stop([-5.0, -6.0, -6.0, -6.0])
    assert not rule.should_stop([-5.0, -6.0, -6.0, -6.5])
    assert not StoppingRule(patience=None).should_stop([-1.0] * 10)
    # every compound scores the same: the top-k mean cannot improve, so the loop stops long before its budget
    frame, scores = _toy(200)
    flat = dict.fromkeys(scores, -5.0)
    settings = LoopSettings(initial=0.1, batch=0.05, budget=1.0, stopping=StoppingRule(top_k=5, patience=2))
    state = _loop(frame, flat, settings, seed=0).run()
    assert state.stopped == "converged" and len(state.rounds) == 3 and state.spent == 40


def test_prediction_streams_one_chunk_at_a_time_and_skips_excluded():
    frame, scores = _toy(100)
    surrogate = LengthSurrogate()
    surrogate.fit(frame.smiles.tolist(), np.array([scores[i] for i in frame.id]), 0)
    library = FrameLibrary(frame, chunk_size=30)
    exclude = set(frame.id[:35])
    parts = list(predict_chunks(surrogate, library.chunks(), exclude))
    assert [len(p.ids) for p in parts] == [25, 30, 10]  # chunk 1 lost its first 30, chunk 2 its first 5
    assert surrogate.chunk_sizes == [25, 30, 10]
    assert not exclude & {i for p in parts for i in p.ids}
    # the loop never hands the surrogate more than one chunk
    surrogate = LengthSurrogate()
    _loop(frame, scores, LoopSettings(initial=10, batch=10, budget=40), chunk_size=16, surrogate=surrogate).run()
    assert max(surrogate.chunk_sizes) <= 16


def test_parquet_library_streams_row_groups(tmp_path):
    frame, _ = _toy(50)
    paths = []
    for k, part in enumerate((frame.iloc[:30], frame.iloc[30:])):
        path = tmp_path / f"chunk_{k:05d}.parquet"
        part.to_parquet(path, row_group_size=12)
        paths.append(path)
    library = ParquetLibrary(paths)
    chunks = list(library.chunks())
    assert len(library) == 50 and [len(c) for c in chunks] == [12, 12, 6, 12, 8]
    assert [i for c in chunks for i in c.ids] == frame.id.tolist()


def test_distributed_rounds_propose_exactly_the_serial_batches(tmp_path):
    from distributed import Client, LocalCluster

    frame, scores = _toy(300)
    frame.loc[[5, 150], "smiles"] = "not a smiles"  # the surrogate cannot featurize these
    paths = []
    for k, start in enumerate(range(0, 300, 70)):
        path = tmp_path / f"chunk_{k:05d}.parquet"
        frame.iloc[start : start + 70].to_parquet(path, row_group_size=16)
        paths.append(path)
    settings = LoopSettings(initial=0.1, batch=0.05, budget=0.4, acquisition="ucb")

    def run(client):
        loop = ActiveLoop(
            ParquetLibrary(paths), LookupObjective(scores, key="id"), LengthSurrogate(), settings, 3, client=client
        )
        return loop.run()

    serial = run(None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            distributed = run(client)
    assert len(serial.rounds) == len(distributed.rounds) > 2
    assert list(serial.scores) == list(distributed.scores)  # same compounds in the same order
    assert serial.failures == distributed.failures
    assert {"c005", "c150"} <= {i for i, (stage, _) in distributed.failures.items() if stage == SURROGATE_STAGE}


# --------------------------------------------------------------------------- failures: nothing lost


def test_lookup_objective_fails_missing_and_nan_scores_with_a_reason():
    table = pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCN"], "score": [-5.0, np.nan, -6.0, np.nan]})
    objective = LookupObjective.from_table(table)
    result = objective(["a", "b", "c", "d"], ["CCO", "CCN", "CCC", "c1ccccc1"])
    assert result.scores == {"a": -5.0, "c": -6.0}
    assert result.failures == {"b": NO_SCORE, "d": NOT_IN_TABLE}
    clash = pd.DataFrame({"smiles": ["CCO", "CCO"], "score": [-5.0, -4.0]})
    with pytest.raises(ValueError, match="CCO"):
        LookupObjective.from_table(clash)
    assert LookupObjective.from_table(clash, duplicates="min").scores == {"CCO": -5.0}
    partial = Evaluation(scores={"a": -1.0, "b": float("nan")}).complete(["a", "b", "c"])
    assert partial.scores == {"a": -1.0} and partial.failures["c"] == NOT_RETURNED and "b" in partial.failures


def test_every_library_row_ends_docked_predicted_or_failed():
    frame, scores = _toy(120)
    frame.loc[3, "smiles"] = "not a smiles"  # the surrogate cannot featurize it
    missing = set(frame.id[10:20])
    scores = {k: v for k, v in scores.items() if k not in missing}  # not in the table: lookup failures
    loop = _loop(frame, scores, LoopSettings(initial=0.2, batch=0.1, budget=0.5))
    state = loop.run()
    predicted = pd.concat(list(loop.predicted()))
    docked, failed = set(state.scores), set(state.failures)
    assert not (docked & failed) and not (docked & set(predicted.id)) and not (failed & set(predicted.id))
    assert docked | failed | set(predicted.id) == set(frame.id)
    stages = loop.failures_frame().set_index("id")
    assert all(stages.loc[i, "stage"] == OBJECTIVE_STAGE for i in missing & failed)
    if "c003" not in docked:
        assert tuple(stages.loc["c003"]) == (SURROGATE_STAGE, NO_FEATURES)
    assert predicted.predicted_score.notna().all()


# --------------------------------------------------------------------------- features and real surrogates


def test_features_of_valid_and_invalid_smiles():
    counts, valid = morgan_counts(["CCO", "not a smiles", "c1ccccc1O"])
    assert list(valid) == [True, False, True] and counts.shape == (3, 2048)
    assert counts[1].nnz == 0 and counts[0].sum() > 0
    graph = ligand_graph("CC(=O)O")
    assert graph.x.shape == (4, GRAPH_NODE_DIM) and graph.edge_index.shape == (2, 6)
    assert graph.edge_attr.shape == (6, GRAPH_EDGE_DIM) and ligand_graph("xyz") is None


def test_graph_ensemble_fits_predicts_and_is_seeded():
    smiles = ["C" * k + "O" for k in range(1, 25)] + ["c1ccccc1" + "C" * k for k in range(1, 9)]
    y = np.array([-0.2 * len(s) for s in smiles])
    settings = TrainingSettings(members=2, max_epochs=15, batch_size=16)
    a = make_surrogate("gnn", channels=16, layers=2, training=settings)
    a.fit(smiles, y, seed=0)
    pa = a.predict(smiles + ["bad smiles"])
    b = make_surrogate("gnn", channels=16, layers=2, training=settings)
    b.fit(smiles, y, seed=0)
    assert np.allclose(pa.mean, b.predict(smiles + ["bad smiles"]).mean, equal_nan=True)
    assert np.isnan(pa.mean[-1]) and np.isfinite(pa.mean[:-1]).all() and (pa.sd[:-1] >= 0).all()
    assert np.corrcoef(pa.mean[:-1], y)[0, 1] > 0.5


@pytest.fixture(scope="module")
def enamine_slice() -> pd.DataFrame:
    path = ENAMINE / "Enamine10k_scores.csv.gz"
    if not path.exists():
        pytest.skip("shared active_learning data not present next to the repository")
    table = pd.read_csv(path).drop_duplicates("smiles")
    table = table.sample(500, random_state=0).reset_index(drop=True)
    return table.assign(id=[f"E{i:03d}" for i in range(len(table))])


@pytest.mark.parametrize("name", ["mlp", "gp"])
def test_fingerprint_surrogate_screen_beats_random_on_500_enamine_compounds(enamine_slice, name):
    """40 % docked in 4 rounds; metric: share of the true top-5 % (25 compounds) found (random: ~0.40)."""
    truth = enamine_slice.score.to_numpy()
    settings = LoopSettings(initial=0.1, batch=0.1, budget=0.4)
    training = TrainingSettings(members=3, max_epochs=40, patience=8)
    found = {}
    for name, surrogate, loop_settings in (
        ("random", None, LoopSettings(initial=0.4, budget=0.4, max_rounds=0)),
        (
            name,
            make_surrogate("mlp", hidden=64, training=training) if name == "mlp" else make_surrogate("gp"),
            settings,
        ),
    ):
        loop = ActiveLoop(
            FrameLibrary(enamine_slice, chunk_size=128),
            LookupObjective.from_table(enamine_slice),
            surrogate,
            loop_settings,
            seed=0,
        )
        state = loop.run()
        assert state.spent == 200
        found[name] = top_fraction_found(state.scores.values(), truth, 0.05)
    assert found[name] >= found["random"] + 0.15, found


def test_top_fraction_found_counts_ties_pro_rata():
    scores = [-10.0, -9.0, -9.0, -9.0, -8.0] + [0.0] * 95  # k = 1 of 100 ... use 5 %: k = 5
    assert top_fraction_found([-10.0, -9.0, -9.0, -9.0, -8.0], scores, 0.05) == 1.0
    assert top_fraction_found([-10.0], scores, 0.05) == pytest.approx(0.2)
    assert top_fraction_found([-9.0], scores, 0.01) == pytest.approx(0.0)
    assert top_fraction_found([-9.0], [-9.0, -9.0, 1.0, 2.0], 0.25) == pytest.approx(0.5)


def test_molpal_tie_counting_fills_the_tie_groups_places_first():
    # k = 4 of 8: one compound better than the k-th score (-9), then five tied at -9 for 3 places
    scores = [-10.0, -9.0, -9.0, -9.0, -9.0, -9.0, 0.0, 1.0]
    found = [-10.0, -9.0, -9.0]
    assert top_fraction_found(found, scores, 0.5) == pytest.approx((1 + 2 * 3 / 5) / 4)
    assert top_fraction_found(found, scores, 0.5, ties="molpal") == pytest.approx(3 / 4)
    assert top_fraction_found(found + [-9.0, -9.0], scores, 0.5, ties="molpal") == 1.0  # at most the 3 places
    with pytest.raises(ValueError, match="ties"):
        top_fraction_found(found, scores, 0.5, ties="best")


# --------------------------------------------------------------------------- a screen that is killed


def _active_cli(workdir, out, env_extra=None):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "VSCREEN_FAULTS"}
    env.update(env_extra or {})
    chunks = sorted(str(p) for p in (workdir / "chunks").glob("*.parquet"))
    cmd = [sys.executable, "-m", "pipeline.cli", "active", *chunks, "--config", str(workdir / "config.yaml")]
    cmd += ["--out-dir", str(out), "--lookup", str(workdir / "scores.csv")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_active_screen_killed_in_round_2_resumes_and_docks_what_an_uninterrupted_run_docks(tmp_path):
    import yaml

    frame, scores = _toy(300)
    frame.loc[7, "smiles"] = "not a smiles"
    (tmp_path / "chunks").mkdir()
    for k, start in enumerate(range(0, 300, 100)):
        frame.iloc[start : start + 100].to_parquet(tmp_path / "chunks" / f"chunk_{k:05d}.parquet")
    table = pd.DataFrame({"id": list(scores), "score": list(scores.values())})
    table[~table.id.isin(["c020", "c021"])].to_csv(tmp_path / "scores.csv", index=False)  # 2 "docking failures"
    config = dict(
        run="active_kill",
        library=dict(path="library.csv"),
        receptor=dict(path="receptor.pdb"),
        box=dict(center=[0, 0, 0], size=[20, 20, 20]),
        screen=dict(strategy="active", active=dict(initial=30, batch=20, budget=90, max_rounds=3)),
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    whole = _active_cli(tmp_path, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _active_cli(tmp_path, tmp_path / "killed", {"VSCREEN_FAULTS": "active-round:round_2:kill"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, with round 2's batch saved
    state = json.loads((tmp_path / "killed" / "state" / "state.json").read_text())
    assert len(state["rounds"]) == 2 and (tmp_path / "killed" / "state" / "round_002.proposal.parquet").exists()
    resumed = _active_cli(tmp_path, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "round 2: resuming its saved batch" in resumed.stderr

    docked = {name: pd.read_csv(tmp_path / name / "docked.csv") for name in ("whole", "killed")}
    pd.testing.assert_frame_equal(docked["whole"], docked["killed"])
    assert len(docked["whole"]) + 2 == 90 and set(docked["whole"]["round"]) == {0, 1, 2, 3}
    predicted = pd.read_csv(tmp_path / "killed" / "predicted.csv")
    failures = pd.read_csv(tmp_path / "killed" / "failures.csv")
    ids = list(docked["killed"].id) + list(predicted.id) + list(failures.id)
    assert sorted(ids) == sorted(frame.id)  # every library row in exactly one table
    assert "c007" in set(failures.id) and len(pd.read_csv(tmp_path / "killed" / "rounds.csv")) == 4
    assert (tmp_path / "killed" / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the per-round figure


def test_workflow_with_strategy_active_runs_the_screen_instead_of_docking_every_chunk(repo, tmp_path):
    import shutil
    import subprocess
    import sys

    import yaml

    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["run"] = "active_dry_run_test"
    cfg["screen"] = dict(strategy="active", active=dict(initial=6, batch=4, budget=14, max_rounds=2))
    path = tmp_path / "active.yaml"
    path.write_text(yaml.safe_dump(cfg))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(path), "-n"],
            capture_output=True,
            text=True,
            cwd=repo,
        )
    finally:
        shutil.rmtree(repo / "results" / "active_dry_run_test", ignore_errors=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-2000:]
    jobs = {line.split()[0] for line in out.splitlines() if line.strip() and line.split()[-1].isdigit()}
    assert {"active_screen", "split_library", "prepare_receptor"} <= jobs and not {"dock", "rank", "report"} & jobs
