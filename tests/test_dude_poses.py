"""The DUD-E pose campaign and its leave-one-target-out evaluation: order, shards, resuming, failures, files, metrics.

One real docking (a small ligand at exhaustiveness 1 in an 18 Å box of the demo receptor);
the rest runs on synthetic plans and tables.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections import Counter
from functools import partial

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SHARED

sys.path.insert(0, str(REPO / "benchmarks"))
import pose_dude  # noqa: E402
import scoring_loto  # noqa: E402

from pipeline.box import Box, read_vina_config  # noqa: E402


def _synthetic_plan() -> list[pose_dude.Task]:
    """The campaign's shape without the shared data: 4 actives, 4 decoys and 16 cross-decoys per target."""
    tasks = []
    for target in pose_dude.TARGETS:
        tasks += [pose_dude.Task(target, f"{target}_a_{i}", "active", target, "C", f"{target}a{i}") for i in range(4)]
        tasks += [pose_dude.Task(target, f"{target}_d_{i}", "decoy", target, "C", f"{target}d{i}") for i in range(4)]
        for source in pose_dude.TARGETS:
            if source != target:
                tasks += [
                    pose_dude.Task(target, f"{source}_a_{i}", "cross_decoy", source, "C", f"{source}a{i}")
                    for i in range(4)
                ]
    return tasks


def _assert_balanced(tasks: list[pose_dude.Task], sizes: Counter) -> None:
    """Every prefix holds about the same share of every (target, role) list."""
    seen: Counter = Counter()
    for m, task in enumerate(tasks, start=1):
        seen[(task.target, task.role)] += 1
        for group, n in sizes.items():
            # each list is within half an item of the common pace, the common pace within 15 half-items
            assert abs(seen[group] / n - m / len(tasks)) <= 0.5 / n + 0.5 * len(sizes) / len(tasks) + 1e-9, (m, group)
        for role in pose_dude.ROLES:  # the targets keep pace with each other within one docking
            counts = [seen[(t, role)] for t in pose_dude.TARGETS]
            assert max(counts) - min(counts) <= 1, (m, role, counts)


def test_interleaved_order_and_shards_are_balanced_and_deterministic():
    plan = _synthetic_plan()
    ordered = pose_dude.order_tasks(plan)
    assert ordered == pose_dude.order_tasks(list(plan))  # deterministic
    assert sorted(ordered, key=lambda t: (t.target, t.id)) == sorted(plan, key=lambda t: (t.target, t.id))
    sizes = Counter((t.target, t.role) for t in plan)
    _assert_balanced(ordered, sizes)
    # the first 15 dockings already hold every target, and the first cross-decoys of a target come
    # from different source targets
    assert {t.target for t in ordered[:15]} == set(pose_dude.TARGETS)
    first_cross = [t.source_target for t in ordered if t.target == "aces" and t.role == "cross_decoy"][:4]
    assert len(set(first_cross)) == 4
    shards = [pose_dude.shard_tasks(ordered, (k, 2)) for k in (1, 2)]
    assert abs(len(shards[0]) - len(shards[1])) <= 1
    assert sorted(shards[0] + shards[1], key=ordered.index) == ordered  # a partition
    for shard in shards:
        per_target = Counter(t.target for t in shard[:30])
        assert max(per_target.values()) - min(per_target.values()) <= 2
    assert pose_dude.order_tasks(plan, "sequential") == plan
    assert pose_dude.parse_shard("2/3") == (2, 3)
    with pytest.raises(argparse.ArgumentTypeError):
        pose_dude.parse_shard("3/2")


@pytest.mark.skipif(not (SHARED / "dude_diverse").is_dir(), reason="shared DUD-E targets not present")
def test_real_plan_uses_the_convergence_sample_and_no_own_active_is_a_cross_decoy():
    sample = pose_dude.sample_table(per_class=3)
    plan = pose_dude.plan_tasks(sample)
    assert plan == pose_dude.plan_tasks(sample)
    assert len({(t.target, t.id) for t in plan}) == len(plan)
    for target in pose_dude.TARGETS:
        own_actives = {t.key for t in plan if t.target == target and t.role == "active"}
        cross = [t for t in plan if t.target == target and t.role == "cross_decoy"]
        assert own_actives and cross
        assert not own_actives & {t.key for t in cross}
        assert {t.source_target for t in cross} == set(pose_dude.TARGETS) - {target}
    fewer = pose_dude.plan_tasks(sample, cross_per_target=1)
    assert Counter(t.target for t in fewer if t.role == "cross_decoy") == {t: 4 for t in pose_dude.TARGETS}


def test_gzip_members_append_and_survive_a_cut_tail(tmp_path):
    path = tmp_path / "poses" / "t.sdf.gz"
    pose_dude.append_gzip(path, "first\n")
    pose_dude.append_gzip(path, "second\n")
    with gzip.open(path, "rt") as handle:  # the standard reader reads every member
        assert handle.read() == "first\nsecond\n"
    whole = path.read_bytes()
    path.write_bytes(whole + gzip.compress(b"third\n")[:-6])  # a writer killed mid-append
    assert pose_dude.read_pose_text(path) == "first\nsecond\n"
    assert pose_dude.repair_gzip_tail(path) > 0
    assert path.read_bytes() == whole
    pose_dude.append_gzip(path, "fourth\n")
    with gzip.open(path, "rt") as handle:
        assert handle.read() == "first\nsecond\nfourth\n"
    # a damaged member in the middle (a cut member that another shard appended after) is skipped
    members, _, damaged = pose_dude.gzip_members(gzip.compress(b"a")[:-4] + gzip.compress(b"b"))
    assert (members, damaged) == ([b"b"], 1)


def test_campaign_docks_records_failures_and_skips_on_rerun(tmp_path):
    """Real preparation and Vina in the isolated worker: a bad SMILES gets its row and the loop goes on."""
    from pipeline.docking import DockingSettings

    receptor = REPO / "resources" / "demo" / "ACHE_target.pdbqt"
    box = read_vina_config(REPO / "resources" / "demo" / "ACHE_conf.txt")
    init = partial(
        pose_dude.worker_state,
        {"aces": str(receptor)},
        {"aces": Box(box.center, (18.0, 18.0, 18.0))},
        DockingSettings(exhaustiveness=1, threads=1, seed=7),
    )
    tasks = [
        pose_dude.Task("aces", "bad", "decoy", "aces", "C1CC(", "C1CC("),
        pose_dude.Task("aces", "good", "active", "aces", "CC(=O)Nc1ccc(O)cc1", "x"),
    ]
    run = partial(pose_dude.run_campaign, tasks, tmp_path, init, top_k=2, exhaustiveness=1, time_limit=120)
    written = run()
    assert [(r["id"], r["status"]) for r in written] == [("bad", "failed"), ("good", "ok")]
    assert written[0]["reason"].startswith("preparation failed")
    rows = pose_dude.read_rows(tmp_path)
    assert list(rows["id"]) == ["bad", "good"]
    good = rows[rows["id"] == "good"].iloc[0]
    assert good["score"] < 0 and good["poses"] == 2 and good["role"] == "active"
    poses = pose_dude.read_poses(tmp_path / "poses" / "aces.sdf.gz")
    assert sorted(poses) == [("good", 1), ("good", 2)]
    top = poses[("good", 1)]
    assert float(top.GetProp("docking_score")) == pytest.approx(good["score"], abs=1e-3)
    assert top.GetProp("role") == "active" and top.GetNumAtoms() > top.GetNumHeavyAtoms()  # hydrogens kept
    assert run() == []  # every task has a row: nothing docked again
    again = run(retry_failed=True)
    assert [r["id"] for r in again] == ["bad"]
    assert len(pose_dude.read_rows(tmp_path)) == 2  # the latest row per compound counts


# --------------------------------------------------------------------------- evaluation


def _table(n_per_target: int, actives: int, rng: np.random.Generator) -> pd.DataFrame:
    """Two targets; the pair model separates the classes, the other columns are noise."""
    rows = []
    for target in ("t1", "t2"):
        for i in range(n_per_target):
            role = "active" if i < actives else ("decoy" if i % 2 else "cross_decoy")
            signal = 1.0 if role == "active" else 0.0
            rows.append(
                dict(
                    target=target,
                    role=role,
                    pair_model=signal + rng.normal(0, 0.7),
                    vina=rng.normal(),
                    heavy_atom_count=float(rng.integers(10, 40)),
                    ligand_only=rng.normal(),
                )
            )
    return pd.DataFrame(rows)


def test_loto_evaluation_intervals_contain_the_estimate_and_early_enrichment_is_gated():
    rng = np.random.default_rng(0)
    small = scoring_loto.evaluate(_table(120, 20, rng), "decoy", n=200)
    assert [r["target"] for r in small["per_target"]] == ["t1", "t2"]
    for row in small["per_target"]:
        assert row["actives"] == 20 and row["negatives"] == 50
        assert all(v == scoring_loto.NOT_REPORTED for v in row["early"].values())  # N = 70: top 1% is 1 compound
    for baseline in scoring_loto.BASELINES:
        diff = small["differences"][f"pair_model - {baseline}"]
        for value in [*diff["per_target"].values(), diff["mean"]]:
            assert value["ci"][0] <= value["diff"] <= value["ci"][1]
        assert diff["mean"]["diff"] > 0  # the separating column beats noise
    assert small["mean_auroc"]["pair_model"] > 0.7
    # the gate is ceil(0.01 N) >= 5: 400 compounds are not enough, 500 are
    labels = np.r_[np.ones(20), np.zeros(380)]
    assert scoring_loto.early(labels, rng.normal(size=400)) == scoring_loto.NOT_REPORTED
    labels = np.r_[np.ones(20), np.zeros(480)]
    value = scoring_loto.early(labels, -np.arange(500.0))  # the actives ranked first
    assert value["n_top"] == 5 and value["ef"] == pytest.approx(25.0) and value["bedroc"] > 0.9
    # a target with only one class of a set is listed, not scored
    one_class = _table(30, 30, rng)
    assert scoring_loto.evaluate(one_class, "decoy", n=50)["not_scored"].keys() == {"t1", "t2"}


def test_training_rows_leave_out_every_compound_of_the_held_out_sample():
    campaign = pd.DataFrame(
        [
            dict(target="aces", id="aces_a_1", role="active", source_target="aces", key="A1"),
            dict(target="akt2", id="aces_a_1", role="cross_decoy", source_target="aces", key="A1"),
            dict(target="akt2", id="akt2_a_1", role="active", source_target="akt2", key="K1"),
            dict(target="akt2", id="akt2_d_1", role="decoy", source_target="akt2", key="KD"),
            dict(target="casp3", id="akt2_a_1", role="cross_decoy", source_target="akt2", key="K1"),
            dict(target="casp3", id="casp3_d_9", role="decoy", source_target="casp3", key="A1"),  # same compound
        ]
    )
    train = scoring_loto.training_rows(campaign, "aces")
    assert list(train["id"]) == ["akt2_a_1", "akt2_d_1", "akt2_a_1"]
    assert set(train["target"]) == {"akt2", "casp3"}


def test_held_out_cross_decoys_are_half_of_each_other_target_and_never_train():
    rows = []
    for target in ("aces", "akt2", "casp3"):
        for k in range(4):
            key = f"{target}{k}"
            rows.append(dict(target=target, id=f"{target}_a_{k}", role="active", source_target=target, key=key))
            for other in {"aces", "akt2", "casp3"} - {target}:
                rows.append(dict(target=other, id=f"{target}_a_{k}", role="cross_decoy", source_target=target, key=key))
    campaign = pd.DataFrame(rows)
    keys = scoring_loto.held_out_cross_decoys(campaign, "aces", seed=1)
    assert keys == scoring_loto.held_out_cross_decoys(campaign, "aces", seed=1)  # seeded
    assert sum(k.startswith("akt2") for k in keys) == 2 and sum(k.startswith("casp3") for k in keys) == 2
    assert not any(k.startswith("aces") for k in keys)
    train = scoring_loto.training_rows(campaign, "aces", keys)
    assert not set(train["key"]) & keys  # no test compound under any label
    assert set(train["key"]) == {f"{t}{k}" for t in ("akt2", "casp3") for k in range(4)} - keys
    test = scoring_loto.evaluation_rows(campaign, "aces", keys)
    assert set(test.loc[test["role"] == "cross_decoy", "key"]) == keys
    assert set(test.loc[test["role"] == "active", "key"]) == {f"aces{k}" for k in range(4)}


def test_overlapping_unifep_targets_are_matched_conservatively():
    names = ["AKT2", "AKT1", "TRAP1", "HSP90", "PTGES", "PTGS1", "CASP7", "BCHE", "PRKACA", "ACK1"]
    found = {t: scoring_loto.overlapping_unifep_targets(names, t) for t in pose_dude.TARGETS}
    assert found == {
        "aces": ["BCHE"],
        "akt2": ["AKT1", "AKT2"],
        "casp3": ["CASP7"],
        "hs90a": ["HSP90", "TRAP1"],
        "pgh2": ["PTGS1"],
    }
