"""Per-compound isolation (pipeline.isolation) and fault injection (pipeline.faults), on the real engines.

A native crash (``abort``), a hang past the time limit (``hang``) or a Python error
(``raise``) of one compound, injected through ``VSCREEN_FAULTS`` inside the worker,
costs that compound only: the chunk's job finishes, the other compounds' outputs are
exactly those of an uninjected run with the same seed, the faulted compounds are
failure rows with a readable reason, and a hang costs at most its time limit.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import sys
import time

import pandas as pd
import pytest
from rdkit import Chem

from pipeline import faults
from pipeline.box import Box, read_vina_config
from pipeline.docking import DockingSettings, dock_chunk
from pipeline.io import read_failures
from pipeline.isolation import (
    IsolatedWorker,
    WorkerStartError,
    format_seconds,
    parse_time_limit,
    run_isolated,
    time_limit_reason,
)
from pipeline.ligands import LigandSettings, prepare_chunk, prepare_ligand
from pipeline.receptor import prepare_receptor

SMALL = {
    "indole": "c1ccc2[nH]ccc2c1",
    "benzoic": "OC(=O)c1ccccc1",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "phenol": "c1ccccc1O",
    "toluidine": "Cc1ccc(N)cc1",
}


@pytest.fixture(autouse=True)
def quiet_native_crashes():
    """pytest's faulthandler would print a 'Fatal Python error: Aborted' dump for every worker
    that aborts on purpose (forked workers inherit it); the failure rows say all there is."""
    enabled = faulthandler.is_enabled()
    faulthandler.disable()
    yield
    if enabled:
        faulthandler.enable(file=sys.__stderr__)


@pytest.fixture(scope="module")
def abl(fixtures, tmp_path_factory):
    """1iep receptor (PDB for MD, PDBQT for Vina) and a small box around imatinib's site."""
    out = tmp_path_factory.mktemp("isolation_receptor")
    prepare_receptor(fixtures / "1iep" / "1iep_receptorH.pdb", out / "receptor.pdb", out / "receptor.pdbqt")
    box = read_vina_config(fixtures / "1iep" / "1iep_box.txt")
    return out, Box(box.center, (16.0, 16.0, 16.0))


def _sdf_records(path) -> dict[str, list[str]]:
    """SD records as text, grouped by molecule name (the first line), in file order.

    The record's position in the file, which RDKit writes into every property header
    (``>  <smiles>  (3)``), is dropped: a failed compound shifts the ones after it.
    """
    records: dict[str, list[str]] = {}
    for record in path.read_text().split("$$$$\n"):
        if record.strip():
            record = re.sub(r"^(>  <[^>]*>)  \(\d+\) $", r"\1", record, flags=re.MULTILINE)
            records.setdefault(record.split("\n", 1)[0], []).append(record)
    return records


# --------------------------------------------------------------------------- the runner


def _toy_work(state, item):
    if item == "abort":
        os.abort()
    if item == "exit":
        os._exit(3)
    if item == "hang":  # ignores SIGTERM, like a native call that never returns to Python
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    if item == "raise":
        raise ValueError("bad item")
    return state, item


def test_worker_survives_crashes_hangs_and_errors():
    items = [(i, x) for i, x in enumerate(["a", "abort", "b", "hang", "c", "raise", "c2", "exit", "d"])]
    start = time.monotonic()
    outcomes = list(run_isolated(items, _toy_work, init=os.getpid, time_limit=1.5, stage="toy", desc="toy"))
    assert time.monotonic() - start < 15
    assert [o.key for o in outcomes] == list(range(9))
    reasons = {items[o.key][1]: o.reason for o in outcomes if not o.ok}
    assert reasons == {
        "abort": "crashed: worker process died (signal SIGABRT)",
        "hang": "time limit (1.5 s) exceeded",
        "raise": "unexpected error: ValueError: bad item",
        "exit": "crashed: worker process died (exit code 3)",
    }
    ok = [o.result for o in outcomes if o.ok]
    assert [item for _, item in ok] == ["a", "b", "c", "c2", "d"]
    pids = [pid for pid, _ in ok]  # init's result: a new worker after each crash or kill, not after an error
    assert len(set(pids)) == 4 and pids[2] == pids[3] and os.getpid() not in pids


def _sleepy_work(state, item):
    """``sleep-x``: x after 1 s, with the wall-clock interval it ran in; else :func:`_toy_work`."""
    if not item.startswith("sleep-"):
        return _toy_work(state, item)
    began = time.time()
    time.sleep(1.0)
    return state, item.removeprefix("sleep-"), (began, time.time())


def test_side_by_side_workers_keep_order_groups_and_isolation():
    """Three children take the items side by side: outcomes come back in input order, a
    group's items all run in one child, and a crash or a hang still costs its item only."""
    names = ["sleep-a", "sleep-b", "abort", "sleep-c", "hang", "sleep-d", "raise", "sleep-e", "sleep-f"]
    items = [((f"g{k % 3}", k), name) for k, name in enumerate(names)]  # three groups of three
    outcomes = list(
        run_isolated(
            items,
            _sleepy_work,
            init=os.getpid,
            time_limit=4.0,
            stage="toy",
            desc="toy",
            start_method="spawn",
            processes=3,
            group=lambda key: key[0],
        )
    )
    assert [o.key for o in outcomes] == [key for key, _ in items]
    reasons = {items[k][1]: o.reason for k, o in enumerate(outcomes) if not o.ok}
    assert reasons == {
        "abort": "crashed: worker process died (signal SIGABRT)",
        "hang": "time limit (4 s) exceeded",
        "raise": "unexpected error: ValueError: bad item",
    }
    done = {items[k][1]: o.result for k, o in enumerate(outcomes) if o.ok}
    assert [result[1] for result in done.values()] == ["a", "b", "c", "d", "e", "f"]
    pid = {name: result[0] for name, result in done.items()}
    # group g0 = sleep-a, sleep-c, raise: one child (an error does not replace it)
    assert pid["sleep-a"] == pid["sleep-c"]
    # group g1 = sleep-b, hang, sleep-e: the hang's child was killed, a new one took sleep-e
    assert pid["sleep-b"] != pid["sleep-e"]
    assert len({pid["sleep-a"], pid["sleep-b"], pid["sleep-d"]}) == 3 and os.getpid() not in pid.values()
    # side by side: the first items of groups g0 and g1 ran at the same time
    (a0, a1), (b0, b1) = done["sleep-a"][2], done["sleep-b"][2]
    assert max(a0, b0) < min(a1, b1), "the workers did not run side by side"
    import multiprocessing

    assert not multiprocessing.active_children()


def test_side_by_side_init_failure_is_raised():
    with pytest.raises(KeyError, match="receptor unreadable"):
        list(
            run_isolated(
                [("x", 1), ("y", 2)],
                _toy_work,
                init=_init_fails,
                time_limit=5,
                stage="toy",
                desc="toy",
                processes=2,
                start_method="spawn",
            )
        )


def _init_fails():
    raise KeyError("receptor unreadable")


def _init_crashes():
    os.abort()


def test_init_failure_is_a_job_error_and_no_worker_outlives_the_job():
    import multiprocessing

    with pytest.raises(KeyError, match="receptor unreadable"):
        list(run_isolated([("x", 1)], _toy_work, init=_init_fails, time_limit=5, stage="toy", desc="toy"))
    with pytest.raises(WorkerStartError, match="SIGABRT"):
        list(run_isolated([("x", 1)], _toy_work, init=_init_crashes, time_limit=5, stage="toy", desc="toy"))
    with IsolatedWorker(_toy_work, time_limit=None, stage="toy") as worker:  # no limit: None
        assert worker.submit("k", "a").result == (None, "a")
        pid = worker.pid
    assert not multiprocessing.active_children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert list(run_isolated([], _toy_work, time_limit=1, stage="toy", desc="toy")) == []


def test_time_limit_formatting_and_parsing():
    assert time_limit_reason(600.0) == "time limit (600 s) exceeded"
    assert format_seconds(2.5) == "2.5"
    assert parse_time_limit("none") is None and parse_time_limit("30") == 30.0
    with pytest.raises(ValueError):
        parse_time_limit("0")
    with pytest.raises(ValueError):
        DockingSettings(time_limit=-1)


def test_fault_spec_parsing_and_once(tmp_path, monkeypatch):
    parsed = faults.parse_faults("dock:a:b:abort; prepare:*:raise;;featurize:x:kill-once;graphs:c1:corrupt")
    assert parsed[0] == faults.Fault("dock", "a:b", "abort")  # ids may contain ':'
    assert parsed[2].once and parsed[2].action == "kill"
    with pytest.raises(faults.FaultSpecError):
        faults.parse_faults("dock-abort")
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.inject("dock", "anything") is None
    monkeypatch.setenv(faults.ENV, "refine:cpd:blowup;prepare:*:raise;graphs:c1:corrupt-once")
    assert faults.inject("refine", "cpd") == "blowup" and faults.inject("refine", "other") is None
    with pytest.raises(RuntimeError, match="injected fault"):
        faults.inject("prepare", "whatever")
    with pytest.raises(faults.FaultSpecError, match=faults.DIR_ENV):
        faults.inject("graphs", "c1")
    monkeypatch.setenv(faults.DIR_ENV, str(tmp_path / "markers"))
    assert faults.inject("graphs", "c1") == "corrupt"
    assert faults.inject("graphs", "c1") is None  # fired once: the marker file is there
    assert len(list((tmp_path / "markers").iterdir())) == 1


# --------------------------------------------------------------------------- ligand preparation


def test_prepare_chunk_loses_only_the_faulted_compounds(tmp_path, monkeypatch):
    ids = ["indole", "p-abort", "benzoic", "p-hang", "paracetamol", "p-raise", "phenol"]
    smiles = [SMALL.get(i, "c1ccccc1CCO") for i in ids]
    chunk = tmp_path / "chunk_00000.parquet"
    pd.DataFrame({"id": ids, "smiles": smiles}).to_parquet(chunk)
    limit = 3
    settings = LigandSettings(time_limit=limit)
    monkeypatch.delenv(faults.ENV, raising=False)
    clean = tmp_path / "clean"
    assert prepare_chunk(chunk, clean / "l.sdf", clean / "l.parquet", clean / "f.csv", settings) == (7, 0)

    monkeypatch.setenv(faults.ENV, "prepare:p-abort:abort;prepare:p-hang:hang;prepare:p-raise:raise")
    out = tmp_path / "faulty"
    start = time.monotonic()
    done, failed = prepare_chunk(chunk, out / "l.sdf", out / "l.parquet", out / "f.csv", settings)
    seconds = time.monotonic() - start
    assert (done, failed) == (4, 3)
    assert limit <= seconds < limit + 20  # the hang cost its limit, not more
    reasons = read_failures(out / "f.csv").set_index("id")
    assert set(reasons["stage"]) == {"prepare"}
    assert reasons.loc["p-abort", "reason"] == "crashed: worker process died (signal SIGABRT)"
    assert reasons.loc["p-hang", "reason"] == f"time limit ({limit} s) exceeded"
    assert reasons.loc["p-raise", "reason"] == "unexpected error: RuntimeError: injected fault (prepare:p-raise)"
    # the others: byte for byte what the uninjected run wrote
    kept = ["indole", "benzoic", "paracetamol", "phenol"]
    clean_records, records = _sdf_records(clean / "l.sdf"), _sdf_records(out / "l.sdf")
    assert list(records) == kept and all(records[i] == clean_records[i] for i in kept)
    clean_table = pd.read_parquet(clean / "l.parquet").set_index("id").loc[kept].reset_index()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "l.parquet"), clean_table)


def test_etkdg_timeout_is_a_share_of_the_time_limit():
    from pipeline.ligands import embed_timeout

    assert embed_timeout(LigandSettings(time_limit=120, embed_attempts=3)) == 30
    assert embed_timeout(LigandSettings(time_limit=None)) == 0
    # a timeout that is not reached changes nothing: same conformer as without one
    with_limit, _ = prepare_ligand("cpd", SMALL["paracetamol"], LigandSettings(time_limit=120))
    without, _ = prepare_ligand("cpd", SMALL["paracetamol"], LigandSettings(time_limit=None))
    assert (with_limit.GetConformer().GetPositions() == without.GetConformer().GetPositions()).all()


# --------------------------------------------------------------------------- docking


@pytest.fixture(scope="module")
def ligand_table(tmp_path_factory):
    """A prepared chunk: three small ligands around two that will be made to abort and to hang."""
    ids = ["indole", "d-abort", "benzoic", "d-hang", "paracetamol"]
    rows = [prepare_ligand(cid, SMALL.get(cid, SMALL["phenol"]), LigandSettings())[1] for cid in ids]
    path = tmp_path_factory.mktemp("isolation_ligands") / "chunk_00000.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_dock_chunk_survives_an_abort_and_a_hang(abl, ligand_table, tmp_path, monkeypatch):
    receptor_dir, box = abl
    limit = 5
    settings = DockingSettings(exhaustiveness=1, n_poses=3, threads=1, time_limit=limit)
    monkeypatch.delenv(faults.ENV, raising=False)
    clean = tmp_path / "clean"
    start = time.monotonic()
    assert dock_chunk(
        ligand_table,
        receptor_dir / "receptor.pdbqt",
        box,
        settings,
        clean / "d.sdf",
        clean / "d.parquet",
        clean / "f.csv",
    ) == (5, 0)
    clean_seconds = time.monotonic() - start

    monkeypatch.setenv(faults.ENV, "dock:d-abort:abort;dock:d-hang:hang")
    out = tmp_path / "faulty"
    start = time.monotonic()
    done, failed = dock_chunk(
        ligand_table, receptor_dir / "receptor.pdbqt", box, settings, out / "d.sdf", out / "d.parquet", out / "f.csv"
    )
    seconds = time.monotonic() - start
    print(f"docking chunk: {clean_seconds:.1f} s clean, {seconds:.1f} s with an abort and a {limit} s hang")
    assert (done, failed) == (3, 2)
    # time lost: the limit, plus two worker restarts (maps recomputed), on a shared machine
    assert limit <= seconds < clean_seconds + limit + 30
    reasons = read_failures(out / "f.csv").set_index("id")
    assert set(reasons["stage"]) == {"dock"}
    assert reasons.loc["d-abort", "reason"] == "crashed: worker process died (signal SIGABRT)"
    assert reasons.loc["d-hang", "reason"] == f"time limit ({limit} s) exceeded"
    # ligands docked after each restart get exactly the poses of the uninjected run (same seed)
    kept = ["indole", "benzoic", "paracetamol"]
    clean_records, records = _sdf_records(clean / "d.sdf"), _sdf_records(out / "d.sdf")
    assert list(records) == kept and all(records[i] == clean_records[i] for i in kept)
    table = pd.read_parquet(out / "d.parquet").drop(columns="dock_seconds")
    clean_table = pd.read_parquet(clean / "d.parquet").drop(columns="dock_seconds")
    pd.testing.assert_frame_equal(table, clean_table[clean_table["id"].isin(kept)].reset_index(drop=True))


def test_meeko_error_in_pose_export_fails_only_its_ligand(abl, ligand_table, tmp_path, monkeypatch):
    """meeko raises RuntimeError when it cannot map a PDBQT back onto the molecule: a failure row."""
    from meeko import RDKitMolCreate

    receptor_dir, box = abl
    original = RDKitMolCreate.from_pdbqt_mol
    calls = []

    def flaky(*args, **kwargs):  # runs in the (forked) docking worker
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("could not match the PDBQT to the SMILES template")
        return original(*args, **kwargs)

    monkeypatch.setattr(RDKitMolCreate, "from_pdbqt_mol", staticmethod(flaky))
    monkeypatch.delenv(faults.ENV, raising=False)
    settings = DockingSettings(exhaustiveness=1, n_poses=2, threads=1, time_limit=120)
    done, failed = dock_chunk(
        ligand_table,
        receptor_dir / "receptor.pdbqt",
        box,
        settings,
        tmp_path / "d.sdf",
        tmp_path / "d.parquet",
        tmp_path / "f.csv",
    )
    assert (done, failed) == (4, 1)
    failure = read_failures(tmp_path / "f.csv").iloc[0]
    assert failure["id"] == "d-abort" and failure["stage"] == "dock"  # the second ligand
    assert "meeko" in failure["reason"] and "RuntimeError: could not match" in failure["reason"]
    assert set(pd.read_parquet(tmp_path / "d.parquet")["id"]) == {"indole", "benzoic", "d-hang", "paracetamol"}


def test_unreadable_receptor_fails_the_job_not_the_ligands(ligand_table, abl, tmp_path):
    _, box = abl
    bad = tmp_path / "receptor.pdbqt"
    bad.write_text("this is not a PDBQT file\n")
    with pytest.raises(Exception) as info:
        dock_chunk(
            ligand_table,
            bad,
            box,
            DockingSettings(exhaustiveness=1),
            tmp_path / "d.sdf",
            tmp_path / "d.parquet",
            tmp_path / "f.csv",
        )
    assert not isinstance(info.value, WorkerStartError)  # Vina's own error, raised again in the parent
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "d.sdf").exists()


# --------------------------------------------------------------------------- refinement


def test_refine_blowup_and_crash_cost_only_their_poses(abl, fixtures, tmp_path, monkeypatch):
    from pipeline.refine import RefineSettings, refine_batch

    receptor_dir, _ = abl
    crystal = Chem.MolFromMolFile(str(fixtures / "1iep" / "1iep_ligand.sdf"), removeHs=False)
    poses = []
    for name in ("blows-up", "crashes", "imatinib"):
        mol = Chem.Mol(crystal)
        mol.SetProp("_Name", name)
        mol.SetProp("pose", "1")
        mol.SetProp("docking_score", "-12.5")
        poses.append(mol)
    monkeypatch.setenv(faults.ENV, "refine:blows-up:blowup;refine:crashes:abort")
    settings = RefineSettings(length_ps=0.25, pocket_cutoff=6.0, free_shell=4.0, minimize_iterations=20, time_limit=300)
    outputs = dict(
        out_sdf=tmp_path / "r.sdf",
        out_table=tmp_path / "r.parquet",
        out_frames_dir=tmp_path / "frames",
        failures_csv=tmp_path / "f.csv",
    )
    done, failed = refine_batch(receptor_dir / "receptor.pdb", poses, settings, **outputs)
    assert (done, failed) == (1, 2)
    reasons = read_failures(outputs["failures_csv"]).set_index("id")
    assert set(reasons["stage"]) == {"refine"}
    blew_up = reasons.loc["blows-up", "reason"]
    assert blew_up.startswith("pose 1: ") and ("blew up" in blew_up or "NaN" in blew_up), blew_up
    assert reasons.loc["crashes", "reason"] == "pose 1: crashed: worker process died (signal SIGABRT)"
    table = pd.read_parquet(outputs["out_table"])
    assert table["id"].tolist() == ["imatinib"] and table["rmsd_final"].notna().all()
    assert [m.GetProp("_Name") for m in Chem.SDMolSupplier(str(outputs["out_sdf"]))] == ["imatinib"]
    assert not [p for p in (tmp_path / "frames").iterdir() if p.name.endswith(".tmp")]
