"""Does the docking search converge? Best Vina score against exhaustiveness, per compound.

On the five shared DUD-E targets (a fixed-seed sample of 20 actives and 20 decoys each,
docked into the dockstring receptor and its 30 Å box), every compound is prepared once by
the pipeline and docked at exhaustiveness 1, 2, 4, 8 and 16 (Vina seed fixed, one thread).
For each target and setting the table gives

* ``converged``: the share of compounds whose best score is within 0.5 kcal/mol of (or
  better than) their exhaustiveness-16 score;
* ``AUROC``: actives against decoys by the negated best score, with a 95% bootstrap interval;
* ``s/lig``: mean seconds per ligand on one core (Vina search and pose export).

Each docking runs in the pipeline's isolated worker under a wall-clock limit per docking,
by default three times the pipeline's ``docking.time_limit`` (600 s). The larger limit is
there so that the exhaustiveness-16 reference exists for the large flexible compounds too:
leaving out every compound whose reference search is slow would leave out the compounds whose
search converges worst. ``over_time_limit`` gives, per setting, the share of compounds whose
docking took longer than the pipeline's own limit (they would fail in a screen at that
setting). A compound that runs past the benchmark's limit is recorded as timed out there (and
not docked at the higher settings), left out of the table and counted per target
(``timed_out``); a rerun with a larger ``--time-limit`` docks it again from that setting on.

The default exhaustiveness is the smallest setting at which every target has at least 90%
of its compounds converged.

Run it alone on the machine: the limit is wall-clock, so a loaded machine times out
compounds a free core would finish, and the seconds per ligand would not be one core's.

Resumable: each compound's five dockings are appended to ``benchmarks/convergence/rows.csv``
(committed) as soon as they finish, and a rerun skips what is there. A compound whose
prepared SMILES changed since (a new protonation tool, say) is docked again. Stop it at any
time (``--hours``, Ctrl-C, a kill); run the same command in a later session to go on; the
table and ``benchmarks/results/docking_convergence.json`` are rewritten from the rows at
the end of every invocation (``--summary`` only rewrites them).

    python benchmarks/docking_convergence.py --hours 2 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.dude import sample_library  # noqa: E402
from rows import append_csv_rows  # noqa: E402

from pipeline.config import schema_default  # noqa: E402

DUDE = ROOT.parent / "shared" / "data" / "dude_diverse"
TARGETS = {"aces": "ACHE", "hs90a": "HSP90AA1", "akt2": "AKT2", "casp3": "CASP3", "pgh2": "PTGS2"}
SETTINGS = (1, 2, 4, 8, 16)
REFERENCE = 16
TOLERANCE = 0.5  # kcal/mol
RULE = 0.90
ROWS = ROOT / "benchmarks" / "convergence" / "rows.csv"
CACHE = ROOT / "benchmarks" / ".cache" / "convergence"
RESULT = ROOT / "benchmarks" / "results" / "docking_convergence.json"
COLUMNS = ["target", "id", "active", "prepared_smiles", "exhaustiveness", "score", "seconds", "timed_out"]
N_BOOTSTRAP = 1000
SEED = 2026  # the sample; Vina's seed is the pipeline default (42)
PIPELINE_TIME_LIMIT = schema_default("docking", "time_limit")


def sample(target: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` actives and ``n`` decoys of a target, seeded; ids made unique per target."""
    table = sample_library(DUDE / target, n_decoys=n, max_actives=n, seed=seed)
    table["id"] = [f"{target}_{'a' if a else 'd'}_{i}" for i, a in zip(table["id"], table["active"])]
    return table.drop_duplicates("id")


def receptor(target: str) -> Path:
    """The pipeline's receptor PDBQT of the target's dockstring structure (prepared once, cached)."""
    from pipeline.receptor import prepare_receptor

    pdbqt = CACHE / f"{TARGETS[target]}.pdbqt"
    if not pdbqt.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        prepare_receptor(TARGETS[target], CACHE / f"{TARGETS[target]}.pdb", pdbqt)
    return pdbqt


def prepare(table: pd.DataFrame) -> pd.DataFrame:
    """Prepare every compound with the pipeline's settings; adds ``prepared_smiles, pdbqt`` (None on failure)."""
    from pipeline.ligands import LigandSettings, PreparationError, prepare_ligand

    prepared, pdbqts = [], []
    for cid, smiles in zip(table["id"], table["smiles"]):
        try:
            _, row = prepare_ligand(cid, smiles, LigandSettings())
            prepared.append(row["prepared_smiles"])
            pdbqts.append(row["pdbqt"])
        except PreparationError as exc:
            print(f"  {cid}: not prepared ({exc})", flush=True)
            prepared.append(None)
            pdbqts.append(None)
    return table.assign(prepared_smiles=prepared, pdbqt=pdbqts)


def _worker_state(nice: int) -> dict:
    """State of an isolated docking worker: its niceness set, Vina objects made per target on first use."""
    os.nice(nice)
    return {}


def _dock_one(dockers: dict, item: tuple[str, str, str, int]) -> tuple[float, float]:
    """``(best score, seconds)`` of one ligand at one exhaustiveness, in the isolated worker."""
    from pipeline.box import dockstring_box
    from pipeline.docking import Docker, DockingSettings

    target, cid, pdbqt, exhaustiveness = item
    if target not in dockers:
        dockers[target] = Docker(
            receptor(target), dockstring_box(TARGETS[target]), DockingSettings(n_poses=1, threads=1)
        )
    docker = dockers[target]
    docker.settings = dataclasses.replace(docker.settings, exhaustiveness=exhaustiveness)
    start = time.perf_counter()
    _, energies = docker.dock(cid, pdbqt)
    return float(energies[0][0]), time.perf_counter() - start


def dock_all_settings(
    worker, target: str, cid: str, pdbqt: str, time_limit: float, settings: tuple[int, ...] = SETTINGS
) -> list[tuple]:
    """``(exhaustiveness, best score, seconds, timed_out)`` per setting; stops at the first time-out or failure."""
    out = []
    for exhaustiveness in settings:
        key, result, reason = worker.submit(cid, (target, cid, pdbqt, exhaustiveness))
        if reason is not None:
            timed_out = reason.startswith("time limit")
            if not timed_out:
                print(f"  {cid}: exhaustiveness {exhaustiveness} failed ({reason})", flush=True)
                return []
            out.append((exhaustiveness, float("nan"), time_limit, True))
            break
        out.append((exhaustiveness, result[0], result[1], False))
    return out


_write_lock = threading.Lock()


def _docking_thread(todo: queue.Queue, deadline: float, nice: int, time_limit: float) -> None:
    """Take compounds off the queue until it is empty or the deadline passed; one isolated worker each thread."""
    from functools import partial

    from pipeline.isolation import IsolatedWorker

    with IsolatedWorker(_dock_one, init=partial(_worker_state, nice), time_limit=time_limit, stage="dock") as worker:
        while time.monotonic() < deadline:
            try:
                target, cid, active, smiles, pdbqt, settings = todo.get_nowait()
            except queue.Empty:
                return
            results = dock_all_settings(worker, target, cid, pdbqt, time_limit, settings)
            if not results:
                continue
            rows = [
                dict(
                    target=target,
                    id=cid,
                    active=active,
                    prepared_smiles=smiles,
                    exhaustiveness=ex,
                    score=score,
                    seconds=round(secs, 3),
                    timed_out=out,
                )
                for ex, score, secs, out in results
            ]
            with _write_lock:
                append_csv_rows(ROWS, COLUMNS, rows)
            best = " ".join("timeout" if out else f"{score:.1f}" for _, score, _, out in results)
            print(f"  {cid}: {best}  ({sum(r[2] for r in results):.0f} s)", flush=True)


def read_rows() -> pd.DataFrame:
    """Finished dockings (a line cut short by a kill is dropped)."""
    if not ROWS.is_file():
        return pd.DataFrame(columns=COLUMNS)
    rows = pd.read_csv(ROWS, on_bad_lines="skip", keep_default_na=False, na_values=["", "nan"])
    rows["timed_out"] = rows["timed_out"].astype(str).str.lower().eq("true") if "timed_out" in rows else False
    rows = rows.dropna(subset=["seconds"])
    # a time-out docked again under a larger limit: the later row replaces it
    return rows.drop_duplicates(["target", "id", "prepared_smiles", "exhaustiveness"], keep="last")


def remaining_settings(done: pd.DataFrame, time_limit: float) -> dict[tuple[str, str, str], tuple[int, ...]]:
    """Settings still to dock per ``(target, id, prepared_smiles)`` already in the rows.

    Empty for a finished compound; from the timed-out setting on for a compound that timed out
    under a smaller limit than ``time_limit``; empty again if it timed out under this limit.
    """
    out: dict[tuple[str, str, str], tuple[int, ...]] = {}
    for key, part in done.groupby(["target", "id", "prepared_smiles"]):
        late = part[part["timed_out"]]
        if late.empty or float(late["seconds"].max()) >= time_limit:
            out[key] = ()
        else:
            first = int(late["exhaustiveness"].min())
            out[key] = tuple(ex for ex in SETTINGS if ex >= first)
    return out


def current_preparation(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of each compound's latest preparation (a compound re-docked after a change appears twice)."""
    if rows.empty:
        return rows
    latest = rows.groupby(["target", "id"])["prepared_smiles"].last()
    keep = [latest[(t, i)] == s for t, i, s in zip(rows["target"], rows["id"], rows["prepared_smiles"])]
    return rows[keep]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that an active outscores a decoy (ties count half); higher score = more active."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def auroc_interval(labels: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> list[float]:
    """95% bootstrap interval of the AUROC (compounds resampled with replacement)."""
    values = []
    for _ in range(N_BOOTSTRAP):
        pick = rng.integers(0, len(labels), len(labels))
        value = auroc(labels[pick], scores[pick])
        if not np.isnan(value):
            values.append(value)
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values else [np.nan, np.nan]


def summarize(rows: pd.DataFrame, n_per_class: int) -> dict:
    """Per target and setting: converged share, AUROC (with interval), seconds per ligand."""
    rng = np.random.default_rng(SEED)
    wide = rows.pivot_table(index=["target", "id", "active"], columns="exhaustiveness", values="score").dropna()
    seconds = rows.pivot_table(index=["target", "id"], columns="exhaustiveness", values="seconds")
    table, per_target = [], {}
    for target in TARGETS:
        if target not in wide.index.get_level_values("target"):
            continue
        part = wide.xs(target, level="target")
        labels = part.index.get_level_values("active").to_numpy().astype(int)
        reference = part[REFERENCE].to_numpy()
        timed_out = rows[rows["timed_out"] & (rows["target"] == target)]
        entry = {
            "compounds": int(len(part)),
            "actives": int(labels.sum()),
            "timed_out": sorted(set(timed_out["id"])),
            "settings": {},
        }
        for ex in SETTINGS:
            score = part[ex].to_numpy()
            converged = float(np.mean(score <= reference + TOLERANCE))
            secs = seconds.xs(target, level="target")[ex].loc[part.index.get_level_values("id")]
            entry["settings"][ex] = dict(
                over_time_limit=float(np.mean(secs.to_numpy() > PIPELINE_TIME_LIMIT)),
                converged=converged,
                median_gap_to_16=float(np.median(score - reference)),
                auroc=auroc(labels, -score),
                auroc_95=auroc_interval(labels, -score, rng),
                seconds_per_ligand=float(secs.mean()),
            )
            table.append((target, ex, converged, entry["settings"][ex]["auroc"], float(secs.mean())))
        per_target[target] = entry
    complete = len(per_target) == len(TARGETS) and all(
        e["compounds"] + len(e["timed_out"]) >= 2 * n_per_class - 2 for e in per_target.values()
    )
    default = None
    if per_target:
        for ex in SETTINGS:
            if all(e["settings"][ex]["converged"] >= RULE for e in per_target.values()):
                default = ex
                break
    return dict(
        description="best Vina score at exhaustiveness 1-16 per compound; converged = within "
        f"{TOLERANCE} kcal/mol of the exhaustiveness-{REFERENCE} score",
        machine=platform.node(),
        platform=platform.platform(),
        sample=f"{n_per_class} actives + {n_per_class} decoys per target, seed {SEED}",
        receptors="dockstring structures prepared by the pipeline, dockstring's 30 Å boxes",
        complete=complete,
        smallest_setting_with_all_targets_converged=default,
        rule=f">= {RULE:.0%} of compounds converged on every target",
        pipeline_time_limit_s=PIPELINE_TIME_LIMIT,
        targets=per_target,
        rows=int(len(wide)),
    ), table


def print_table(table: list[tuple]) -> None:
    print(f"{'target':8s} {'exh':>4s} {'converged':>10s} {'AUROC':>7s} {'s/lig':>7s}")
    for target, ex, converged, value, secs in table:
        print(f"{target:8s} {ex:4d} {converged:10.0%} {value:7.3f} {secs:7.1f}")


def _alternate_classes(todo: list[tuple]) -> list[tuple]:
    """Actives and decoys taken in turn, so a run stopped early has both classes of a target."""
    actives = [t for t in todo if t[2]]
    decoys = [t for t in todo if not t[2]]
    out = []
    for i in range(max(len(actives), len(decoys))):
        out += [c[i] for c in (actives, decoys) if i < len(c)]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1.0, help="stop starting new compounds after this long")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nice", type=int, default=10, help="niceness of the docking workers")
    parser.add_argument("--per-class", type=int, default=20, help="actives (and decoys) per target")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=3 * schema_default("docking", "time_limit"),
        help="seconds per docking (default: three times the pipeline's docking.time_limit)",
    )
    parser.add_argument("--summary", action="store_true", help="only rewrite the table and JSON from the rows")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.hours * 3600
    if not args.summary:
        done = read_rows()
        if ROWS.is_file() and ROWS.read_text().splitlines()[0] != ",".join(COLUMNS):
            done[COLUMNS].to_csv(ROWS, index=False)  # rows of an older version of this script: add the column
        left = remaining_settings(done, args.time_limit)
        queues = []
        for target in TARGETS:
            table = prepare(sample(target, args.per_class, SEED))
            receptor(target)
            todo = [
                (
                    target,
                    r.id,
                    int(r.active),
                    r.prepared_smiles,
                    r.pdbqt,
                    left.get((target, r.id, r.prepared_smiles), SETTINGS),
                )
                for r in table.itertuples()
                if r.pdbqt is not None and left.get((target, r.id, r.prepared_smiles), SETTINGS)
            ]
            queues.append(_alternate_classes(todo))
            print(f"{target}: {len(table)} sampled, {len(todo)} to dock", flush=True)
        # round-robin over targets, so a stopped run has a balanced part of every target
        tasks = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
        pending: queue.Queue = queue.Queue()
        for task in tasks:
            pending.put(task)
        threads = [
            threading.Thread(target=_docking_thread, args=(pending, deadline, args.nice, args.time_limit), daemon=True)
            for _ in range(args.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = current_preparation(read_rows())
    result, table = summarize(rows, args.per_class)
    print_table(table)
    print(
        f"complete: {result['complete']}; smallest setting meeting the rule: {result['smallest_setting_with_all_targets_converged']}"
    )
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
