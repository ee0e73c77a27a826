"""The benchmark machinery on real engines: the docking baselines, resumable campaigns,
per-stage timings, the ligand-only baseline and the enrichment table."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FIXTURES, REPO

from pipeline.box import Box, read_vina_config
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.receptor import prepare_receptor
from pipeline.scoring.metrics import auroc
from pipeline.scoring.train import TrainSettings, fit_ligand_baseline, predict_ligand_baseline

sys.path.insert(0, str(REPO / "benchmarks"))
import docking_speed  # noqa: E402
import enrichment  # noqa: E402
from lib.campaign import CampaignRun, dock_in_rounds  # noqa: E402
from run import stage_times  # noqa: E402

IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"


def _require_vina_cli() -> None:
    if shutil.which("vina") is None:
        message = "Debian's 'vina' program (package autodock-vina) is not installed"
        pytest.fail(message) if os.environ.get("VSCREEN_REQUIRE_VINA_CLI") else pytest.skip(message)


def test_pipeline_and_vina_programs_dock_the_same_work(tmp_path):
    """The three engines of the docking benchmark read the same files and agree on imatinib's score."""
    _require_vina_cli()
    prepare_receptor(FIXTURES / "1iep" / "1iep_receptorH.pdb", tmp_path / "r.pdb", tmp_path / "r.pdbqt")
    box = read_vina_config(FIXTURES / "1iep" / "1iep_box.txt")
    box = Box(box.center, (16.0, 16.0, 16.0))
    _, row = prepare_ligand("imatinib", IMATINIB, LigandSettings())
    ligands = tmp_path / "ligands.parquet"
    pd.DataFrame([row]).to_parquet(ligands)
    files = docking_speed.write_ligand_files(ligands, tmp_path / "pdbqt")
    assert [f.name for f in files] == ["imatinib.pdbqt"]
    results = {}
    for name, run in [
        ("pipeline", lambda w: docking_speed.run_pipeline(tmp_path / "r.pdbqt", box, ligands, 2, 2, w)),
        (
            "cli",
            lambda w: docking_speed.run_cli_batch(docking_speed.vina_cli(), tmp_path / "r.pdbqt", box, files, 2, 2, w),
        ),
        (
            "1.1.2",
            lambda w: docking_speed.run_cli_per_ligand(
                docking_speed.vina_112(), tmp_path / "r.pdbqt", box, files, 2, 2, w
            ),
        ),
    ]:
        work = tmp_path / name
        work.mkdir()
        results[name] = run(work)
    for name, (seconds, scores) in results.items():
        assert seconds > 0
        assert set(scores) == {"imatinib"}, name
        # every engine found a pose in Abl's pocket (crystal-like poses score about -12; the searches are
        # stochastic and the engine versions differ, so the scores themselves are not compared)
        assert scores["imatinib"] < -8.0, (name, scores)
    assert docking_speed.engine_version(docking_speed.vina_cli()).startswith("1.2.")
    assert docking_speed.engine_version(docking_speed.vina_112()) == "1.1.2"


def test_campaign_docks_in_rounds_and_resumes(tmp_path):
    """No time: only the split; then every chunk; a third call finds nothing to do. Per-job timings are kept."""
    library = pd.read_csv(REPO / "resources" / "demo" / "library.csv").head(2)
    library.to_csv(tmp_path / "library.csv", index=False)
    config = {
        "run": f"campaign-test-{os.getpid()}",
        "library": {"path": str(tmp_path / "library.csv"), "chunk_size": 1},
        "receptor": {"path": "resources/demo/ACHE_target.pdbqt"},
        "box": {"center": [4.521, 66.834, 65.770], "size": [16.0, 16.0, 16.0]},
        "docking": {"exhaustiveness": 1, "n_poses": 2},
        "dask": {"n_workers": 1},
        "refine": {"enabled": False},
        "score": {"enabled": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = CampaignRun("test", tmp_path / "config.yaml", REPO)
    try:
        assert dock_in_rounds([run], hours=0) == {"test": (0, 2)}
        assert run.n_chunks() == 2  # from the split's manifest (chunk_size 1)
        assert (run.run_dir / "chunks" / "chunk_00001.parquet").exists()
        assert dock_in_rounds([run], hours=1, chunks_per_round=1) == {"test": (2, 2)}
        stamps = [run.graph_file(i).stat().st_mtime for i in range(2)]
        assert dock_in_rounds([run], hours=1) == {"test": (2, 2)}
        assert [run.graph_file(i).stat().st_mtime for i in range(2)] == stamps
        stages = stage_times(run.run_dir)
        assert stages.loc["dock", "jobs"] == 2 and stages.loc["featurize", "jobs"] == 2
        assert (stages["seconds"] > 0).all()
    finally:
        shutil.rmtree(run.run_dir, ignore_errors=True)


def _labelled_demo() -> pd.DataFrame:
    table = pd.read_csv(REPO / "resources" / "demo" / "library.csv")
    table.index = "demo/" + table["id"]
    return table.assign(label=table["active"].astype(float))


def test_ligand_baseline_learns_its_training_compounds_and_is_seeded():
    table = _labelled_demo()
    keys = list(table.index)
    train, val = keys[::2] + keys[1::4], keys[3::4]
    settings = TrainSettings(n_models=2, max_epochs=30, patience=30, seed=3)
    first = predict_ligand_baseline(fit_ligand_baseline(table, train, val, settings), table["smiles"], settings)
    again = predict_ligand_baseline(fit_ligand_baseline(table, train, val, settings), table["smiles"], settings)
    assert first.shape == (len(table),) and ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(first, again)
    on_train = table.index.isin(train)
    assert auroc(table.loc[on_train, "label"], first[on_train]) > 0.9


def test_enrichment_table_from_a_finished_run(tmp_path, monkeypatch):
    """Metrics follow the run's scores; compounds the model trained on leave the 'unseen' rows."""
    library = pd.read_csv(REPO / "resources" / "demo" / "library.csv")
    name = "enrich-demo-d4-s1"
    run_dir = tmp_path / "results" / name
    (tmp_path / "samples" / name).mkdir(parents=True)
    run_dir.mkdir(parents=True)
    library.to_csv(tmp_path / "samples" / name / "library.csv", index=False)
    # docking separates perfectly, GNN is reversed; one active failed docking (ranks last)
    ranking = library.assign(
        docking_score=np.where(library.active == 1, -10.0, -6.0) - 0.01 * np.arange(len(library)),
        gnn_score=np.where(library.active == 1, 0.1, 0.9),
    )
    failed = library[library.active == 1].id.iloc[0]
    ranking[ranking.id != failed].to_csv(run_dir / "ranking.csv", index=False)
    pd.DataFrame([dict(id=failed, stage="dock", reason="Vina failed")]).to_csv(run_dir / "failures.csv", index=False)
    seen = library.head(6).assign(target="demo", split=["train", "train", "val", "test", "train", "train"])
    seen.to_csv(tmp_path / "training_set.csv", index=False)
    model = tmp_path / "model"
    model.mkdir()
    card = dict(
        name="tiny",
        task="classification",
        data=dict(targets=["demo"]),
        training=TrainSettings(n_models=1, max_epochs=5, patience=5).to_dict(),
    )
    (model / "card.json").write_text(json.dumps(card))
    monkeypatch.setattr(enrichment, "ROOT", tmp_path)
    monkeypatch.setattr(enrichment, "SAMPLES", tmp_path / "samples")
    args = enrichment.main.__globals__["argparse"].Namespace(
        target="demo",
        receptor="ACHE",
        decoys_per_active=4,
        seed=1,
        model=str(model),
        training_set=tmp_path / "training_set.csv",
    )
    result = enrichment.evaluate(args, name, tmp_path / "samples" / name / "config.yaml")
    rows = {(r["subset"], r["method"]): r for r in result["metrics"]}
    assert result["pipeline"]["ranked"] == len(library) - 1 and result["pipeline"]["failed"] == 1
    assert result["pipeline"]["seen_by_model"] == 5  # train + val rows, not the test row
    assert rows[("all", "docking")]["n"] == len(library)
    assert rows[("unseen", "docking")]["n"] == len(library) - 5
    n_act = int(library.active.sum())
    expected = 1.0 - (len(library) - n_act) / (n_act * (len(library) - n_act))  # the failed active ranks last
    assert rows[("all", "docking")]["auroc"] == pytest.approx(expected)
    assert rows[("all", "gnn")]["auroc"] < 0.1
    low, high = rows[("all", "docking")]["auroc_ci95"]
    assert low <= rows[("all", "docking")]["auroc"] <= high
    assert "| unseen | docking |" in enrichment.markdown(result)


def test_speed_table_puts_each_figure_beside_its_same_run_baseline():
    from run import summary_rows

    md = dict(
        platform="CPU",
        atoms_simulated=1500,
        ns_per_day=10.0,
        poses_per_hour=200.0,
        baseline=dict(atoms_simulated=6800, ns_per_day=1.0),
        ratio_ns_per_day_vs_whole_receptor=10.0,
    )
    score = dict(
        runs=[dict(workers=0, warm_rate=100.0)],
        complexes_per_second_1_worker=60.0,
        complexes_per_second_2_workers=90.0,
        ratio_2_vs_1_workers=1.5,
    )
    results = dict(
        md=md,
        md_gpu=dict(md, platform="CUDA", poses_per_hour=500.0),
        score=score,
        score_gpu=dict(score, runs=[dict(workers=0, warm_rate=1000.0)]),
    )
    rows = {r[0]: r[1:] for r in summary_rows(results)}
    assert rows["MD CUDA vs CPU, same machine (poses/h)"] == ("500.0", "CPU 200.0", "2.50")
    assert rows["MD CPU (poses/h)"] == ("200.0", "", "")  # a result without the earlier protocol's run
    earlier = dict(md, protocol_before=dict(poses_per_hour=250.0), ratio_poses_per_hour_vs_protocol_before=0.8)
    rows = {r[0]: r[1:] for r in summary_rows(dict(results, md=earlier))}
    assert rows["MD CPU (poses/h)"] == ("200.0", "no warm-up/retry 250.0", "0.800")
    assert rows["GNN scoring CUDA, in-process (complexes/s)"] == ("1000.0", "CPU in-process 100.0", "10.00")
    assert rows["MD CPU, 1500 atoms (ns/day)"][2] == "10.00"
    assert all(len(r) == 3 for r in rows.values())


def test_convergence_table_counts_compounds_within_half_a_kcal_of_exhaustiveness_16():
    """The convergence summary: share within 0.5 kcal/mol of the reference, AUROC, and the rule's pick."""
    import docking_convergence as dc

    rows = []
    for target in dc.TARGETS:
        for n in range(4):
            active = int(n < 2)
            # compound 0 only finds its best pose at exhaustiveness 8; the others already at 1
            best = -8.0 - active
            for ex in dc.SETTINGS:
                score = best + (1.0 if n == 0 and ex < 8 else 0.0)
                rows.append(
                    dict(
                        target=target,
                        id=f"{target}{n}",
                        active=active,
                        prepared_smiles="C",
                        exhaustiveness=ex,
                        score=score,
                        seconds=float(ex),
                        timed_out=False,
                    )
                )
    # a stale preparation of one compound (docked before a protonation change) is ignored
    rows.append(
        dict(
            target="aces",
            id="aces0",
            active=1,
            prepared_smiles="old",
            exhaustiveness=1,
            score=0.0,
            seconds=1.0,
            timed_out=False,
        )
    )
    frame = pd.DataFrame(rows)
    frame = pd.concat([frame.iloc[[-1]], frame.iloc[:-1]])  # the stale row came first
    # a compound past the time limit at exhaustiveness 4 is left out of the table and listed
    slow = [
        dict(
            target="akt2",
            id="slow",
            active=0,
            prepared_smiles="C",
            exhaustiveness=ex,
            score=-5.0,
            seconds=1.0,
            timed_out=False,
        )
        for ex in (1, 2)
    ]
    slow.append(dict(slow[0], exhaustiveness=4, score=float("nan"), seconds=600.0, timed_out=True))
    frame = pd.concat([frame, pd.DataFrame(slow)])
    result, table = dc.summarize(dc.current_preparation(frame), n_per_class=2)
    aces = result["targets"]["aces"]["settings"]
    assert aces[1]["converged"] == 0.75 and aces[8]["converged"] == 1.0
    assert aces[16]["auroc"] == 1.0 and aces[4]["seconds_per_ligand"] == 4.0
    assert result["smallest_setting_with_all_targets_converged"] == 8 and result["complete"]
    assert result["targets"]["akt2"]["timed_out"] == ["slow"] and result["targets"]["akt2"]["compounds"] == 4
    assert len(table) == len(dc.TARGETS) * len(dc.SETTINGS)


def test_convergence_redocks_a_time_out_only_under_a_larger_limit(tmp_path, monkeypatch):
    """A compound timed out under a smaller limit is docked again from that setting; its new row wins."""
    import docking_convergence as dc

    def row(cid, ex, score, seconds, timed_out):
        return dict(
            target="aces",
            id=cid,
            active=1,
            prepared_smiles="C",
            exhaustiveness=ex,
            score=score,
            seconds=seconds,
            timed_out=timed_out,
        )

    rows = [row("done", ex, -8.0, 1.0, False) for ex in dc.SETTINGS]
    rows += [row("late", ex, -7.0, 1.0, False) for ex in (1, 2, 4)] + [row("late", 8, float("nan"), 600.0, True)]
    done = pd.DataFrame(rows)
    assert dc.remaining_settings(done, 1800.0) == {("aces", "done", "C"): (), ("aces", "late", "C"): (8, 16)}
    assert dc.remaining_settings(done, 600.0)[("aces", "late", "C")] == ()
    # the re-docked row replaces the time-out when the rows are read back
    path = tmp_path / "rows.csv"
    pd.DataFrame(rows + [row("late", 8, -7.5, 900.0, False)]).to_csv(path, index=False)
    monkeypatch.setattr(dc, "ROWS", path)
    late = dc.read_rows().query("id == 'late' and exhaustiveness == 8")
    assert len(late) == 1 and late["score"].item() == -7.5 and not late["timed_out"].item()
