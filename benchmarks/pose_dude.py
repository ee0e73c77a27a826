"""Docked poses of the DUD-E sample: each target's actives, property-matched decoys and cross-decoys.

The screening side of the pair scorer's evaluation (``benchmarks/scoring_loto.py``) needs
poses: a model that reads the protein can only be trained and tested on compounds docked
into the receptor. For each of the five shared DUD-E targets T (aces, akt2, casp3, hs90a,
pgh2) this campaign docks, into T's receptor,

* ``active``: T's sampled actives;
* ``decoy``: T's sampled property-matched decoys;
* ``cross_decoy``: the other targets' sampled actives (``--cross-per-target`` of each, default
  all), docked into T. A compound that is an active of T too is not a cross-decoy of T, and
  a compound that is an active of two other targets is docked into T once.

The sample is the convergence benchmark's (``docking_convergence.sample``: ``--per-class``
actives and decoys per target, seed 2026), so these are the compounds whose ligand-only
AUROC ``benchmarks/cross_decoys.py`` reports. Receptors and boxes are the convergence
benchmark's too (the dockstring structure prepared by the pipeline, dockstring's box), and
docking runs at the pipeline's converged defaults (:class:`pipeline.docking.DockingSettings`:
exhaustiveness 8, 9 poses within 3 kcal/mol, Vina seed 42, one thread), each compound
prepared by the pipeline (:func:`pipeline.ligands.prepare_ligand`) in the pipeline's isolated
worker: a molecule that fails, crashes or hangs costs its own docking only and gets a failure
row with the reason. The wall-clock limit per docking is, as in the convergence benchmark,
three times the pipeline's ``docking.time_limit`` (``--time-limit``): dropping the slow, large
and flexible compounds would bias the negatives by size; ``seconds`` in the rows says which
would have run past the pipeline's own limit.

Resumable and durable, like the other campaigns: one row per docking is appended under a lock
to ``benchmarks/dude_poses/rows.csv`` (committed) as it finishes, and the top ``--top-k``
poses (default 3, so that lower-ranked poses of actives can later serve as wrong-pose
negatives; each pose's rank and score are SD properties) are appended as one gzip member to
``benchmarks/dude_poses/poses/<target>.sdf.gz`` (committed; a file of several gzip members
is one valid gzip stream, which ``gzip.open`` reads whole). A (target, compound) with a row is
skipped on a rerun (``--retry-failed`` docks the failed ones again; the latest row counts).
The receptor PDBQT each target was docked against is kept beside the poses
(``receptors/<target>.pdbqt.gz``) and reused on every later run, so every pose of a target
lies in the same receptor, and pair graphs can be built from the committed files alone.

The order interleaves targets and roles (``--order interleaved``, the default): every
(target, role) list advances at the same pace, so a campaign stopped at any point has about
the same share of every target's actives, decoys and cross-decoys. ``--shard K/N`` takes
every N-th docking of that order, so two shards side by side use both cores and stay
balanced.

    nice -n 19 python benchmarks/pose_dude.py --shard 1/2 --hours 8 &
    nice -n 19 python benchmarks/pose_dude.py --shard 2/2 --hours 8 &
    python benchmarks/pose_dude.py --summary

``--limit N`` docks at most N in this run and ``--targets`` restricts the receptors (smoke
checks), ``--out DIR`` writes a campaign elsewhere, ``--dry-run`` only prints the plan and the
projection, ``--summary`` only the counts per target and role and the median time.

At start it prints the dockings planned, done and left, and the projected core-hours (the
exhaustiveness-8 seconds per ligand of each receptor in ``benchmarks/convergence/rows.csv``);
then one line per docking with a running count and an ETA.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cross_decoys  # noqa: E402
import docking_convergence as convergence  # noqa: E402
from rows import append_csv_rows, append_gzip, gzip_members, locked, repair_gzip_tail  # noqa: E402,F401

from pipeline.config import schema_default  # noqa: E402

OUT = ROOT / "benchmarks" / "dude_poses"
#: Uncompressed receptor PDBQTs (Vina and the pair graphs read files); the committed copy is gzipped.
CACHE = ROOT / "benchmarks" / ".cache" / "dude_poses"
TARGETS: tuple[str, ...] = ("aces", "akt2", "casp3", "hs90a", "pgh2")
GENE = convergence.TARGETS  # DUD-E folder -> dockstring target (the receptor and its box)
ROLES: tuple[str, ...] = ("active", "decoy", "cross_decoy")
SEED = convergence.SEED
PER_CLASS = 20  # the convergence benchmark's --per-class default
TOP_K = 3
COLUMNS = [
    "target",
    "id",
    "role",
    "source_target",
    "smiles",
    "prepared_smiles",
    "status",
    "score",
    "poses",
    "exhaustiveness",
    "seconds",
    "prep_seconds",
    "reason",
    "finished",
]


@dataclass(frozen=True)
class Task:
    """One docking: compound ``id`` (unique over the sample) into ``target``'s receptor.

    ``source_target`` is the target whose sample the compound comes from (``target`` itself
    for actives and decoys); ``key`` is its canonical SMILES, the identity across targets.
    """

    target: str
    id: str
    role: str
    source_target: str
    smiles: str
    key: str


# --------------------------------------------------------------------------- the plan


def sample_table(per_class: int = PER_CLASS, seed: int = SEED) -> pd.DataFrame:
    """``target, id, smiles, active, key``: the convergence benchmark's sample of every target."""
    parts = []
    for target in TARGETS:
        table = convergence.sample(target, per_class, seed)
        parts.append(table.assign(target=target))
    df = pd.concat(parts, ignore_index=True)
    # an unreadable SMILES keeps its text as identity: it stays in the plan and gets its failure row
    df["key"] = [cross_decoys.canonical(s) or s for s in df["smiles"]]
    return df


def plan_tasks(sample: pd.DataFrame, cross_per_target: int | None = None, seed: int = SEED) -> list[Task]:
    """Every docking of the campaign, target by target, role by role (see :func:`order_tasks`).

    Parameters
    ----------
    sample
        :func:`sample_table` (``target, id, smiles, active, key``).
    cross_per_target
        Actives of each other target docked into a target as cross-decoys (a seeded sample per
        pair of targets); ``None``: all of them.
    seed
        Seed of that sample.

    Returns
    -------
    list of Task
        Per target: its actives, its decoys, then its cross-decoys. A compound that is also an
        active of the target is not its cross-decoy; one that is an active of two other targets
        is docked once (under the first of them, in :data:`TARGETS` order).
    """
    tasks = []
    actives = sample[sample["active"] == 1]
    for target in TARGETS:
        own = sample[sample["target"] == target]
        own_active_keys = set(own.loc[own["active"] == 1, "key"])
        for role, part in (("active", own[own["active"] == 1]), ("decoy", own[own["active"] == 0])):
            tasks += [Task(target, r.id, role, target, r.smiles, r.key) for r in part.itertuples()]
        seen = set(own_active_keys)
        for source in TARGETS:
            if source == target:
                continue
            theirs = [r for r in actives[actives["target"] == source].itertuples() if r.key not in seen]
            if cross_per_target is not None and cross_per_target < len(theirs):
                # a string seed: the same pair of targets draws the same compounds on every machine
                theirs = random.Random(f"{seed}:{target}:{source}").sample(theirs, cross_per_target)
            for r in theirs:
                seen.add(r.key)
                tasks.append(Task(target, r.id, "cross_decoy", source, r.smiles, r.key))
    return tasks


def _interleave(groups: Sequence[Sequence]) -> list:
    """Items of several lists merged so that every list advances at the same pace.

    Item ``i`` of a list of ``n`` sits at position ``(i + 0.5) / n``; ties go in list order.
    Any prefix of the result then holds about the same share of every list.
    """
    keyed = [((i + 0.5) / len(group), g, i, item) for g, group in enumerate(groups) for i, item in enumerate(group)]
    return [item for *_, item in sorted(keyed, key=lambda k: k[:3])]


def order_tasks(tasks: Sequence[Task], order: str = "interleaved") -> list[Task]:
    """The docking order.

    ``interleaved``: every (target, role) list advances at the same pace (cross-decoys of a
    target interleaved by source target too), so a campaign stopped early holds a balanced
    share of every target and role. ``sequential``: as planned, target by target.
    """
    if order == "sequential":
        return list(tasks)
    if order != "interleaved":
        raise ValueError(f"unknown order {order!r} (interleaved or sequential)")
    lists = []
    for target in TARGETS:
        for role in ROLES:
            part = [t for t in tasks if t.target == target and t.role == role]
            if role == "cross_decoy":
                part = _interleave([[t for t in part if t.source_target == s] for s in TARGETS])
            if part:
                lists.append(part)
    return _interleave(lists)


def shard_tasks(tasks: Sequence[Task], shard: tuple[int, int]) -> list[Task]:
    """Shard ``K/N`` of an ordered plan: every N-th docking, starting at the K-th (1-based).

    The shard is taken from the whole plan, done or not, so shards never overlap and a rerun
    gives each shard the same dockings.
    """
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: expected 1 <= K <= N")
    return list(tasks[k - 1 :: n])


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard expects K/N (e.g. 1/2), got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard {text}: expected 1 <= K <= N")
    return k, n


# --------------------------------------------------------------------------- rows and poses files


def read_rows(out: Path = OUT) -> pd.DataFrame:
    """Every docking row, the latest one per (target, id) (a line cut short by a kill is dropped)."""
    path = out / "rows.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    rows = pd.read_csv(path, on_bad_lines="skip", keep_default_na=False, na_values=["", "nan"], dtype={"id": str})
    rows = rows.dropna(subset=["status"])
    return rows.drop_duplicates(["target", "id"], keep="last").reset_index(drop=True)


def done_keys(out: Path, retry_failed: bool = False) -> set[tuple[str, str]]:
    """(target, id) of the dockings not to run again: every row, or only successful ones with ``retry_failed``."""
    rows = read_rows(out)
    if retry_failed:
        rows = rows[rows["status"] == "ok"]
    return set(zip(rows["target"], rows["id"]))


def read_pose_text(path: Path) -> str:
    """The SDF text of every complete member of a poses file ('' if there is none)."""
    if not path.is_file():
        return ""
    members, _, damaged = gzip_members(path.read_bytes())
    if damaged:
        print(f"  {path.name}: {damaged} damaged gzip member(s) skipped", flush=True)
    return b"".join(members).decode()


def read_poses(path: Path) -> dict[tuple[str, int], object]:
    """Poses of a poses file by ``(compound id, rank)``; the latest one wins (a compound docked again)."""
    from rdkit import Chem

    supplier = Chem.SDMolSupplier()
    supplier.SetData(read_pose_text(path), removeHs=False)
    poses = {}
    for mol in supplier:
        if mol is not None and mol.HasProp("_Name") and mol.HasProp("pose_rank"):
            poses[(mol.GetProp("_Name"), int(mol.GetProp("pose_rank")))] = mol
    return poses


# --------------------------------------------------------------------------- receptors


def receptor_file(target: str, out: Path = OUT, prepare: bool = True) -> Path | None:
    """The receptor PDBQT that ``target``'s poses are docked against (a file for Vina and the pair graphs).

    The committed ``<out>/receptors/<target>.pdbqt.gz`` wins, so every pose of a target, from
    any run or machine, lies in the same receptor. Without it the dockstring structure is
    prepared by the pipeline (:func:`pipeline.receptor.prepare_receptor`, as the convergence
    benchmark does, into this campaign's own cache, not the convergence benchmark's) and
    committed. ``prepare=False``: ``None`` when there is no committed receptor.

    The uncompressed copy is named by its content's hash, so campaigns in other folders
    (a smoke run, a test) never replace the receptor of this one.
    """
    import hashlib

    committed = out / "receptors" / f"{target}.pdbqt.gz"
    CACHE.mkdir(parents=True, exist_ok=True)
    with locked(CACHE / f"{GENE[target]}.lock", "a"):  # two shards starting together prepare it once
        if not committed.is_file():
            if not prepare:
                return None
            prepared = CACHE / f"{GENE[target]}.pdbqt"
            if not prepared.is_file():
                from pipeline.receptor import prepare_receptor

                print(f"{target}: preparing the {GENE[target]} receptor", flush=True)
                prepare_receptor(GENE[target], CACHE / f"{GENE[target]}.pdb", prepared)
            committed.parent.mkdir(parents=True, exist_ok=True)
            tmp = committed.with_name(committed.name + ".tmp")
            tmp.write_bytes(gzip.compress(prepared.read_bytes(), mtime=0))
            tmp.replace(committed)
        text = gzip.decompress(committed.read_bytes())
        cached = CACHE / f"{target}-{hashlib.sha256(text).hexdigest()[:16]}.pdbqt"
        if not cached.is_file():
            tmp = cached.with_name(cached.name + ".tmp")
            tmp.write_bytes(text)
            tmp.replace(cached)
        return cached


def target_box(target: str):
    """The convergence benchmark's box of ``target``: dockstring's box of its receptor."""
    from pipeline.box import dockstring_box

    return dockstring_box(GENE[target])


# --------------------------------------------------------------------------- one docking (isolated worker)


def worker_state(receptors: dict[str, str], boxes: dict, settings, nice: int = 0) -> dict:
    """State of a docking worker: receptors, boxes and settings; a Vina engine per target on first use."""
    if nice:
        os.nice(nice)
    return dict(receptors=receptors, boxes=boxes, settings=settings, dockers={})


def dock_task(state: dict, item: tuple[str, str, str, int, dict]) -> dict:
    """Prepare and dock one compound in the isolated worker; its best score and top poses as SDF text.

    ``item`` is ``(target, id, smiles, top_k, properties)``; ``properties`` go onto every pose
    as SD properties beside ``pose_rank``, ``docking_score``, ``inter``, ``intra`` and
    ``exhaustiveness``. Raises on any failure (the worker turns it into the failure reason).
    """
    from rdkit import Chem

    from pipeline.docking import Docker
    from pipeline.ligands import LigandSettings, prepare_ligand

    target, cid, smiles, top_k, properties = item
    start = time.perf_counter()
    _, row = prepare_ligand(cid, smiles, LigandSettings())
    prep_seconds = time.perf_counter() - start
    if target not in state["dockers"]:  # the maps of a target once per worker, outside the timing
        state["dockers"][target] = Docker(state["receptors"][target], state["boxes"][target], state["settings"])
    docker = state["dockers"][target]
    start = time.perf_counter()
    poses, energies = docker.dock(cid, row["pdbqt"])
    seconds = time.perf_counter() - start
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    for rank, (pose, energy) in enumerate(zip(poses[:top_k], energies[:top_k]), start=1):
        for key, value in properties.items():
            pose.SetProp(key, str(value))
        pose.SetProp("prepared_smiles", row["prepared_smiles"])
        pose.SetIntProp("pose_rank", rank)
        for key, value in zip(("docking_score", "inter", "intra"), energy[:3]):
            pose.SetProp(key, f"{float(value):.3f}")  # Vina's precision (a double prop prints 17 digits)
        pose.SetIntProp("exhaustiveness", docker.settings.exhaustiveness)
        writer.write(pose)
    writer.close()
    return dict(
        score=float(energies[0][0]),
        poses=min(top_k, len(poses)),
        seconds=seconds,
        prep_seconds=prep_seconds,
        prepared_smiles=row["prepared_smiles"],
        sdf=buffer.getvalue(),
    )


def failure_reason(key, exc: BaseException) -> str:
    """A preparation or docking error is the reason as the pipeline words it; anything else is logged."""
    from pipeline.docking import DockingError
    from pipeline.isolation import unexpected_error
    from pipeline.ligands import PreparationError

    if isinstance(exc, PreparationError):
        return f"preparation failed: {exc}"
    if isinstance(exc, DockingError):
        return str(exc)
    return unexpected_error(key, exc)


# --------------------------------------------------------------------------- the campaign loop


def seconds_per_ligand(path: Path = convergence.ROWS) -> dict[str, float]:
    """Mean exhaustiveness-8 seconds per ligand of each receptor, from the convergence rows (read only)."""
    if not path.is_file():
        return {}
    rows = pd.read_csv(path, on_bad_lines="skip")
    ex8 = rows[(rows["exhaustiveness"] == 8) & ~rows["timed_out"].astype(str).str.lower().eq("true")]
    return ex8.groupby("target")["seconds"].mean().to_dict()


def projected_seconds(tasks: Iterable[Task], per_ligand: dict[str, float]) -> float:
    """Single-core seconds to dock ``tasks`` at the convergence benchmark's pace (its mean where a receptor is missing)."""
    fallback = float(np.mean(list(per_ligand.values()))) if per_ligand else 60.0
    return float(sum(per_ligand.get(t.target, fallback) for t in tasks))


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_campaign(
    tasks: Sequence[Task],
    out: Path,
    init: Callable[[], dict],
    *,
    top_k: int = TOP_K,
    exhaustiveness: int = 8,
    time_limit: float | None = None,
    deadline: float | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    work: Callable = dock_task,
    eta_seconds: float | None = None,
) -> list[dict]:
    """Dock ``tasks`` in order in one isolated worker, skipping those with a row; the rows written.

    Parameters
    ----------
    tasks
        This process's dockings (a shard of the ordered plan).
    out
        Folder of ``rows.csv`` and ``poses/<target>.sdf.gz``.
    init
        Builds the worker's state (:func:`worker_state`), in the worker.
    top_k
        Poses kept per docking.
    exhaustiveness
        What the settings of ``init`` dock at (written into each row).
    time_limit
        Wall-clock seconds per docking; past it the worker is killed and the row says so.
    deadline
        ``time.monotonic()`` after which no new docking starts.
    limit
        Most dockings to run in this call.
    retry_failed
        Dock again the (target, id) whose latest row is a failure.
    work
        The per-docking function run in the worker (:func:`dock_task`; tests pass another).
    eta_seconds
        Projected single-core seconds per docking, for the ETA until the first one finishes.

    Returns
    -------
    list of dict
        The rows this call appended, in order. Poses are appended before their row, so a row
        never names poses that are not there (a kill between the two re-docks the compound
        on the next run, and readers keep the latest poses of a compound).
    """
    from pipeline.isolation import IsolatedWorker

    for target in sorted({t.target for t in tasks}):
        cut = repair_gzip_tail(out / "poses" / f"{target}.sdf.gz")
        if cut:
            print(f"{target}: cut {cut} bytes of an incomplete pose member (a killed writer)", flush=True)
    done = done_keys(out, retry_failed)
    todo = [t for t in tasks if (t.target, t.id) not in done]
    if limit is not None:
        todo = todo[:limit]
    written: list[dict] = []
    started = time.monotonic()
    with IsolatedWorker(work, init=init, time_limit=time_limit, stage="dock", describe_error=failure_reason) as worker:
        for number, task in enumerate(todo, start=1):
            if deadline is not None and time.monotonic() >= deadline:
                print(f"deadline reached: {len(todo) - number + 1} dockings left for a later run", flush=True)
                break
            # another process (a second copy of this shard) may have docked it since the start
            if number > 1 and (task.target, task.id) in done_keys(out, retry_failed):
                continue
            props = dict(target=task.target, role=task.role, source_target=task.source_target)
            item = (task.target, task.id, task.smiles, top_k, props)
            _, result, reason = worker.submit(task.id, item)
            row = dict(
                target=task.target,
                id=task.id,
                role=task.role,
                source_target=task.source_target,
                smiles=task.smiles,
                exhaustiveness=exhaustiveness,
                finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            if reason is None:
                append_gzip(out / "poses" / f"{task.target}.sdf.gz", result.pop("sdf"))
                row |= dict(status="ok", reason="")
                row |= {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
                what = f"{row['score']:.2f} kcal/mol, {row['poses']} poses, {row['seconds']:.0f} s"
            else:
                row |= dict(status="failed", reason=reason)
                what = f"failed: {reason}"
            append_csv_rows(out / "rows.csv", COLUMNS, [row])
            written.append(row)
            elapsed = time.monotonic() - started
            pace = elapsed / number if elapsed > 0 else (eta_seconds or 0.0)
            print(
                f"[{number}/{len(todo)}] {task.target} {task.role:11s} {task.id}: {what}; "
                f"elapsed {_clock(elapsed)}, ETA {_clock(pace * (len(todo) - number))}",
                flush=True,
            )
    return written


# --------------------------------------------------------------------------- summary


def summary_table(out: Path, tasks: Sequence[Task]) -> pd.DataFrame:
    """Per target and role: planned, docked, failed, poses on file, median seconds per docking."""
    rows = read_rows(out)
    planned = pd.DataFrame([dict(target=t.target, role=t.role) for t in tasks])
    lines = []
    for target in TARGETS:
        on_file = {cid for cid, rank in read_poses(out / "poses" / f"{target}.sdf.gz") if rank == 1}
        for role in ROLES:
            part = rows[(rows["target"] == target) & (rows["role"] == role)]
            ok = part[part["status"] == "ok"]
            lines.append(
                dict(
                    target=target,
                    role=role,
                    planned=int(((planned["target"] == target) & (planned["role"] == role)).sum())
                    if len(planned)
                    else 0,
                    docked=int(len(ok)),
                    failed=int((part["status"] != "ok").sum()),
                    with_pose=int(ok["id"].isin(on_file).sum()),
                    median_s=float(ok["seconds"].median()) if len(ok) else float("nan"),
                )
            )
    return pd.DataFrame(lines)


def print_summary(out: Path, tasks: Sequence[Task]) -> None:
    table = summary_table(out, tasks)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    rows = read_rows(out)
    ok = rows[rows["status"] == "ok"]
    median = float(ok["seconds"].median()) if len(ok) else float("nan")
    print(
        f"total: {int(table['docked'].sum())} docked, {int(table['failed'].sum())} failed, "
        f"{int(table['planned'].sum())} planned; median {median:.1f} s per docking"
    )
    failed = rows[rows["status"] != "ok"]
    for reason, count in failed["reason"].value_counts().head(5).items():
        print(f"  {count} x {reason}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=None, help="stop starting new dockings after this long")
    parser.add_argument("--limit", type=int, default=None, help="at most this many dockings in this run")
    parser.add_argument("--shard", type=parse_shard, default=(1, 1), help="K/N: every N-th docking from the K-th")
    parser.add_argument("--per-class", type=int, default=PER_CLASS, help="actives (and decoys) sampled per target")
    parser.add_argument(
        "--cross-per-target", type=int, default=None, help="actives of each other target as cross-decoys (default all)"
    )
    parser.add_argument("--order", choices=("interleaved", "sequential"), default="interleaved")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS), help="receptors to dock into")
    parser.add_argument("--top-k", type=int, default=TOP_K, help="poses kept per docking")
    parser.add_argument(
        "--exhaustiveness", type=int, default=schema_default("docking", "exhaustiveness"), help="Vina's search effort"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=3 * schema_default("docking", "time_limit"),
        help="seconds per docking (default: three times the pipeline's docking.time_limit)",
    )
    parser.add_argument("--nice", type=int, default=10, help="niceness added in the docking worker")
    parser.add_argument("--retry-failed", action="store_true", help="dock again the compounds whose row is a failure")
    parser.add_argument("--summary", action="store_true", help="only print per-target counts and the median time")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the projection, dock nothing")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of rows.csv, poses/ and receptors/")
    args = parser.parse_args(argv)

    sample = sample_table(args.per_class)
    plan = order_tasks(plan_tasks(sample, args.cross_per_target), args.order)
    plan = [t for t in plan if t.target in args.targets]
    if args.summary:
        print_summary(args.out, plan)
        return
    mine = shard_tasks(plan, args.shard)
    done = done_keys(args.out, args.retry_failed)
    left_all = [t for t in plan if (t.target, t.id) not in done]
    left_mine = [t for t in mine if (t.target, t.id) not in done]
    per_ligand = seconds_per_ligand()
    counts = pd.crosstab(
        pd.Series([t.target for t in plan], name="target"), pd.Series([t.role for t in plan], name="role")
    )
    print(counts.to_string())
    print(
        f"plan: {len(plan)} dockings ({len(plan) - len(left_all)} done, {len(left_all)} left); projected "
        f"{projected_seconds(plan, per_ligand) / 3600:.1f} core-hours in all, "
        f"{projected_seconds(left_all, per_ligand) / 3600:.1f} for what is left "
        f"(exhaustiveness-8 s/ligand of each receptor from the convergence rows: "
        + ", ".join(f"{t} {s:.0f}" for t, s in sorted(per_ligand.items()))
        + ")",
        flush=True,
    )
    print(
        f"shard {args.shard[0]}/{args.shard[1]}: {len(mine)} dockings, {len(left_mine)} left, "
        f"about {_clock(projected_seconds(left_mine, per_ligand))} on one core",
        flush=True,
    )
    if args.limit is not None:
        print(f"this run: at most {args.limit} of them (--limit)", flush=True)
    if args.dry_run or not left_mine:
        return
    from pipeline.docking import DockingSettings

    targets = sorted({t.target for t in left_mine})
    receptors = {t: str(receptor_file(t, args.out)) for t in targets}
    boxes = {t: target_box(t) for t in targets}
    # the pipeline's defaults (9 poses within 3 kcal/mol, seed 42), one thread: shards use the cores
    settings = replace(DockingSettings(threads=1), exhaustiveness=args.exhaustiveness)
    deadline = time.monotonic() + args.hours * 3600 if args.hours is not None else None
    written = run_campaign(
        mine,
        args.out,
        partial(worker_state, receptors, boxes, settings, args.nice),
        top_k=args.top_k,
        exhaustiveness=args.exhaustiveness,
        time_limit=args.time_limit,
        deadline=deadline,
        limit=args.limit,
        retry_failed=args.retry_failed,
        eta_seconds=projected_seconds(left_mine[:1], per_ligand),
    )
    failed = sum(r["status"] != "ok" for r in written)
    print(f"this run: {len(written)} dockings ({failed} failed)", flush=True)


if __name__ == "__main__":
    main()
