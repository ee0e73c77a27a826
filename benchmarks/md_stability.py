"""How often the default MD protocol blows up, over a panel of docked poses on many receptors.

The panel is the Uni-FEP tethered poses of ``benchmarks/unifep_poses/poses/<folder>.sdf.gz``
(``benchmarks/pose_unifep.py``: each ligand posed by Vina like its series' crystal ligand, all
hydrogens kept), read and prepared exactly as ``benchmarks/forcefield_compare.py`` reads and
prepares them (its :func:`series_poses` and :func:`series_receptor`: the receptor repaired for
MD by :func:`pipeline.receptor.prepare_receptor`, cached under the git-ignored
``benchmarks/.cache/forcefield_compare/``). One series per protein (the first folder of each
protein name, sorted), the first ``--per-receptor`` ligands of each; the poses are taken in
turn (ligand 1 of every receptor, then ligand 2, ...), so ``--limit`` keeps every receptor.
The default panel is every posed protein x 3 ligands (81 x 3 = 243 poses with the campaign of 2026-12).

Every pose is refined in this process with the pipeline's default protocol
(:class:`pipeline.refine.RefineSettings` on the CPU platform, one thread): minimization, the
restrained warm-up, 4 fs HMR production, and on a blow-up one retry at 2 fs without HMR from
the minimized structure (:mod:`pipeline.refine.protocol`, "Warm-up, blow-ups and the
retry"). ``--baseline`` runs the protocol as it was before the warm-up and the retry
(``warmup_ps: 0``, ``retry_timestep_fs: null``) on the same poses, for comparison.

Per pose the row says ``ok`` (with ``md_attempts`` 1 or 2 and why the first attempt was
retried), ``unstable`` (every attempt blew up, or minimization did: the pose would be a
refine failure in a screen), ``not parameterized`` (the ligand force field cannot type the
ligand: not a stability failure) or ``error`` (anything else, with its reason). Reported:

- failure rate: unstable / parameterized poses, with its 95% Clopper-Pearson interval;
- retries: poses whose first attempt blew up, and how many of them the retry saved;
- the rate the protocol would have without the retry (first-attempt blow-ups / parameterized);
- per receptor, the poses, failures and retries; seconds per pose (wall and CPU).

Rows are appended to ``benchmarks/md_stability/rows.jsonl`` (committed, like the posing
campaigns' rows: the panel is a campaign of rounds across sessions) as each pose finishes and
are read back by the next run with the same settings (``--fresh`` ignores them), so a run
stopped part way (or cut by ``--limit`` / ``--max-minutes``) is continued by the same command
with a larger limit, not repeated. Prints a table and writes
``benchmarks/results/md_stability.json`` (``md_stability_baseline.json`` with
``--baseline``) after every pose.

    nice -n 19 python benchmarks/md_stability.py [--receptors NAME ...] [--per-receptor 3]
        [--limit N] [--max-minutes M] [--baseline] [--fresh] [--data DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform as pyplatform
import statistics
import time
from collections import Counter
from pathlib import Path

from forcefield_compare import POSES, UNIFEP, _clean, _json_default, read_cached, series_poses, series_receptor
from forcefield_compare import settings_key as protocol_key
from rdkit import Chem, RDLogger
from scipy.stats import beta

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: One JSON row per refined pose, committed: the panel grows over sessions (``--max-minutes`` rounds).
ROWS = HERE / "md_stability" / "rows.jsonl"
RESULTS = HERE / "results"
#: Ligands per receptor by default (3 per posed protein; md_value.py needs rounds with more).
PER_RECEPTOR = 3

log = logging.getLogger("md_stability")


# --------------------------------------------------------------------------- the panel


def protein_of(folder: str) -> str:
    """The protein of a Uni-FEP series folder (``ChEMBL__SRC__CHEMBL2039537`` -> ``SRC``)."""
    parts = folder.split("__")
    return parts[1] if len(parts) > 1 else folder


def panel_folders(names: list[str] | None = None) -> list[str]:
    """One posed series per protein, sorted by protein; ``names`` (proteins or folders) picks some.

    Raises
    ------
    SystemExit
        A name matches no posed series.
    """
    posed = sorted(p.name[: -len(".sdf.gz")] for p in POSES.glob("*.sdf.gz"))
    first: dict[str, str] = {}
    for folder in posed:
        first.setdefault(protein_of(folder), folder)
    if not names:
        return [first[p] for p in sorted(first)]
    chosen = []
    for name in names:
        folder = name if name in posed else first.get(name)
        if folder is None:
            raise SystemExit(f"no posed series for {name!r}: give a protein ({', '.join(sorted(first))}) or a folder")
        chosen.append(folder)
    return chosen


def panel(folders: list[str], per_receptor: int, limit: int | None) -> list[tuple[str, Chem.Mol]]:
    """``(folder, pose)`` pairs, the receptors in turn, at most ``limit`` of them.

    A pose file that cannot be read whole (``pose_unifep.py`` appending to it right now) costs
    only its receptor, with a warning.
    """
    poses = {}
    for folder in folders:
        try:
            poses[folder] = series_poses(folder, per_receptor)
        except (OSError, EOFError) as exc:
            log.warning("skipping %s: its pose file cannot be read (%s)", folder, exc)
    depth = max((len(p) for p in poses.values()), default=0)
    order = [(f, poses[f][k]) for k in range(depth) for f in folders if f in poses and k < len(poses[f])]
    return order if limit is None else order[:limit]


# --------------------------------------------------------------------------- one pose


def refine_row(mol: Chem.Mol, ctx, folder: str) -> dict:
    """Refine one pose; its row whatever happens (see the module docstring for ``status``)."""
    from pipeline.refine import LigandParameterizationError, SimulationError, refine_pose

    row = dict(
        folder=folder,
        protein=protein_of(folder),
        ligand=mol.GetProp("_Name"),
        forcefield=ctx.settings.forcefield,
        heavy_atoms=mol.GetNumHeavyAtoms(),
        status="ok",
        reason="",
        md_attempts=0,
        md_retry_reason="",
    )
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        _, refined = refine_pose(mol, ctx)
        keys = ("md_attempts", "md_retry_reason", "md_timestep_fs", "rmsd_final", "interaction_energy")
        # what MD says of the pose, kept for benchmarks/md_value.py (does MD move the ranking?)
        keys += ("docking_score", "rmsd_mean", "rmsd_max", "pocket_backbone_rmsd", "interaction_energy_std")
        row.update({key: refined[key] for key in keys})
        row.update(n_atoms_simulated=refined["n_atoms_simulated"], seconds_dynamics=refined["seconds_dynamics"])
    except LigandParameterizationError as exc:
        row.update(status="not parameterized", reason=str(exc)[:300])
    except SimulationError as exc:
        row.update(status="unstable", reason=str(exc)[:500])
    except Exception as exc:  # a benchmark records every failure and goes on
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:300])
    row.update(seconds_pose=time.perf_counter() - wall, cpu_seconds_pose=time.process_time() - cpu)
    return row


# --------------------------------------------------------------------------- summary


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of ``k`` successes in ``n`` trials."""
    if n == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return low, high


def _median(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(statistics.median(values)), 2) if values else None


def summarize(rows: list[dict]) -> dict:
    """Failure rate, retries and times over the rows (module docstring), and per receptor."""
    typed = [r for r in rows if r["status"] != "not parameterized"]
    unstable = [r for r in typed if r["status"] == "unstable"]
    retried = [r for r in typed if r["status"] == "ok" and r.get("md_attempts", 1) > 1]
    retried_failed = [r for r in unstable if "in the retry" in r["reason"]]  # minimization blow-ups are not retried
    first_blowups = len(retried) + len(unstable)  # what would fail without the retry
    low, high = clopper_pearson(len(unstable), len(typed))
    per_receptor = {}
    for protein in sorted({r["protein"] for r in rows}):
        mine = [r for r in rows if r["protein"] == protein]
        per_receptor[protein] = dict(
            poses=len(mine),
            unstable=sum(r["status"] == "unstable" for r in mine),
            retried=sum(r["status"] == "ok" and r.get("md_attempts", 1) > 1 for r in mine),
            not_parameterized=sum(r["status"] == "not parameterized" for r in mine),
            errors=sum(r["status"] == "error" for r in mine),
        )
    ok = [r for r in rows if r["status"] == "ok"]
    return dict(
        poses=len(rows),
        receptors=len(per_receptor),
        parameterized=len(typed),
        refined=len(ok),
        unstable=len(unstable),
        errors=sum(r["status"] == "error" for r in rows),
        not_parameterized=len(rows) - len(typed),
        failure_rate=round(len(unstable) / len(typed), 4) if typed else None,
        failure_rate_95ci=[round(low, 4), round(high, 4)] if typed else None,
        retried=len(retried) + len(retried_failed),
        saved_by_retry=len(retried),
        first_attempt_blowups=first_blowups,
        failure_rate_without_retry=round(first_blowups / len(typed), 4) if typed else None,
        retry_reasons=dict(Counter(_reason_kind(r["md_retry_reason"]) for r in retried)),
        failures=[f"{r['folder']}/{r['ligand']}: {r['status']}: {r['reason']}" for r in rows if r["status"] != "ok"],
        median_seconds_pose=_median(r["seconds_pose"] for r in ok),
        median_cpu_seconds_pose=_median(r["cpu_seconds_pose"] for r in ok),
        per_receptor=per_receptor,
    )


def _reason_kind(reason: str) -> str:
    """A retry reason without its numbers and frame: what kind of blow-up it was."""
    if "NaN" in reason:
        return "NaN coordinates or energy"
    if "rose" in reason:
        return "energy rise above the per-atom limit"
    if "exceeds" in reason:
        return "energy above energy_limit_kj"
    return reason.split(":")[0] if reason else ""


def print_table(summary: dict, label: str) -> None:
    """The summary and the receptors with a failure or a retry, on stdout."""
    s = summary
    rate = "-" if s["failure_rate"] is None else f"{s['failure_rate']:.1%}"
    ci = (
        ""
        if s["failure_rate_95ci"] is None
        else f" [95% {s['failure_rate_95ci'][0]:.1%}, {s['failure_rate_95ci'][1]:.1%}]"
    )
    without = "-" if s["failure_rate_without_retry"] is None else f"{s['failure_rate_without_retry']:.1%}"
    print(f"\n{label}: {s['poses']} poses over {s['receptors']} receptors")
    print(f"{'parameterized':<32} {s['parameterized']:>6}")
    print(f"{'refined':<32} {s['refined']:>6}")
    print(f"{'unstable (failed after retry)':<32} {s['unstable']:>6}   failure rate {rate}{ci}")
    print(f"{'failed at the first attempt':<32} {s['first_attempt_blowups']:>6}   rate without the retry {without}")
    print(f"{'saved by the retry':<32} {s['saved_by_retry']:>6}")
    print(f"{'other errors':<32} {s['errors']:>6}")
    print(f"{'median s / pose (CPU s)':<32} {s['median_seconds_pose']!s:>6} ({s['median_cpu_seconds_pose']})")
    eventful = {p: v for p, v in s["per_receptor"].items() if v["unstable"] or v["retried"] or v["errors"]}
    if eventful:
        print(f"\n{'receptor':<14} {'poses':>5} {'unstable':>8} {'retried':>7} {'errors':>6}")
        for protein, v in eventful.items():
            print(f"{protein:<14} {v['poses']:>5} {v['unstable']:>8} {v['retried']:>7} {v['errors']:>6}")
    for line in s["failures"]:
        print("  " + line[:200])


# --------------------------------------------------------------------------- main


def protocol_before(settings):
    """``settings`` as the protocol was before the MD issue: no warm-up, no blow-up retry, no energy-rise check.

    The baseline of this benchmark (``--baseline``) and of ``run.py``'s MD poses/hour.
    """
    return dataclasses.replace(settings, warmup_ps=0.0, retry_timestep_fs=None, energy_rise_per_atom_kj=None)


def protocol(baseline: bool):
    """The default protocol on the CPU platform, or (``baseline``) the one before warm-up and retry."""
    from pipeline.refine import RefineSettings

    settings = RefineSettings(platform="CPU")
    return protocol_before(settings) if baseline else settings


def write_result(path: Path, args, settings, rows: list[dict], start: float, complete: bool) -> dict:
    """Write the JSON result (summary, settings, machine, every row) atomically; return it."""
    summary = summarize(rows)
    result = dict(
        benchmark="md_stability",
        protocol="baseline (no warm-up, no retry)" if args.baseline else "default",
        complete=complete,
        receptors=sorted({r["folder"] for r in rows}),
        per_receptor=args.per_receptor,
        limit=args.limit,
        platform="CPU",
        settings=settings.to_dict(),
        machine=dict(
            platform=pyplatform.platform(),
            cpus=os.cpu_count(),
            python=pyplatform.python_version(),
            load_average_now=[round(x, 2) for x in os.getloadavg()],
        ),
        seconds_this_run=round(time.perf_counter() - start, 1),
        summary=summary,
        rows=[{k: _clean(v) for k, v in r.items()} for r in rows],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False, default=_json_default) + "\n")
    tmp.replace(path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receptors", nargs="+", help="proteins (SRC, BCL6, ...) or series folders; default: all")
    parser.add_argument("--per-receptor", type=int, default=PER_RECEPTOR, help="ligands per receptor (series order)")
    parser.add_argument(
        "--limit", type=int, default=None, help="take the first N poses of the panel (receptors in turn)"
    )
    parser.add_argument("--max-minutes", type=float, default=None, help="start no pose after this many minutes")
    parser.add_argument("--baseline", action="store_true", help="the protocol without warm-up and retry")
    parser.add_argument("--fresh", action="store_true", help="ignore the rows of earlier runs")
    parser.add_argument("--data", type=Path, default=UNIFEP, help="Uni-FEP data folder (receptors)")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/md_stability[_baseline].json"
    )
    args = parser.parse_args()

    from pipeline.refine.job import RefineContext

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    RDLogger.DisableLog("rdApp.*")
    settings = protocol(args.baseline)
    out = args.out or RESULTS / f"md_stability{'_baseline' if args.baseline else ''}.json"
    key = protocol_key(settings)
    rows_path = ROWS
    cached = {} if args.fresh else read_cached(rows_path, key)
    rows_path.parent.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    order = panel(panel_folders(args.receptors), args.per_receptor, args.limit)
    contexts, rows, stopped = {}, [], False
    for n, (folder, mol) in enumerate(order, 1):
        name = mol.GetProp("_Name")
        if (folder, name, settings.forcefield) in cached:
            rows.append(cached[(folder, name, settings.forcefield)])
            continue
        if args.max_minutes is not None and time.perf_counter() - start > args.max_minutes * 60:
            stopped = True
            break
        if folder not in contexts:
            contexts[folder] = RefineContext.create(series_receptor(folder, args.data), settings)
        row = refine_row(mol, contexts[folder], folder)
        row["settings_key"] = key
        with open(rows_path, "a") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in row.items()}, default=_json_default) + "\n")
        rows.append(row)
        retry = f" (retried: {row['md_retry_reason'][:80]})" if row.get("md_attempts", 0) > 1 else ""
        print(
            f"[{n}/{len(order)}] {folder} {name}: {row['status']}{retry} "
            f"{row['seconds_pose']:.0f} s (CPU {row['cpu_seconds_pose']:.0f} s) {row['reason'][:120]}",
            flush=True,
        )
        write_result(out, args, settings, rows, start, complete=False)
    result = write_result(out, args, settings, rows, start, complete=not stopped and len(rows) == len(order))
    print_table(result["summary"], result["protocol"])
    if stopped:
        print(f"stopped after --max-minutes {args.max_minutes}; the same command continues the run")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
