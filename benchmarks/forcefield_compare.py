"""Ligand force fields compared on the same poses: exact MMFF94 against OpenFF Sage (NAGL AM1-BCC charges).

The poses are the Uni-FEP tethered poses of ``benchmarks/unifep_poses/poses/<folder>.sdf.gz``
(``benchmarks/pose_unifep.py``: each ligand of a congeneric series posed like the series'
crystal ligand, all hydrogens kept; the latest pose of a ligand counts), the first
``--per-folder`` ligands of each ``--folders`` series. Each series' protein
(``shared/data/unifep/<folder>/protein.pdb.gz``) is prepared for MD with
:func:`pipeline.receptor.prepare_receptor` exactly as ``pose_unifep.prepare`` prepares it for
docking (box: the reference ligand's, 8 A padding; the same hydrogens), cached under the
git-ignored ``benchmarks/.cache/forcefield_compare/``.

Every pose is refined twice in this one process with the pipeline's default protocol
(:class:`pipeline.refine.RefineSettings` on the CPU platform, one thread) - once with
``forcefield: mmff`` (exact MMFF94) and once with ``forcefield: openff`` (the default Sage
version, its AM1-BCC charges from NAGL's ``openff-gnn-am1bcc-1.0.0.pt`` when AmberTools is
absent) - the two runs of a pose back to back, so a change in the machine's load hits both
alike, and the series taken in turn (pose 1 of every series, then pose 2...), so a run cut
short by ``--max-minutes`` still covers every receptor. Per force field it reports:

- stable: share of poses whose run finished without NaN or blow-up (the protocol's own
  checks, :class:`pipeline.refine.SimulationError`); a ligand the force field cannot type
  counts as not parameterized, not as unstable;
- the ligand's symmetry-aware RMSD to its docked pose, mean over the frames of a run
  (``rmsd_mean``; median over poses) and at the last frame, with the share of poses that
  stay within 2 A;
- the interaction energy (E(complex) - E(receptor) - E(ligand), OBC2, mean over frames,
  kcal/mol): median, the paired median difference Sage - MMFF and the Spearman correlation
  of the two force fields' values over the poses both refined, and the Kendall tau of each
  against the measured dG within each series (averaged over series; 6 ligands a series is
  a weak test, shown for the sign);
- seconds per pose, parameterization and MD (minimization + dynamics) apart, as wall time
  and as this process's CPU time (the CPU seconds hold on a shared machine, the wall
  seconds do not). The first parameterization of each force field (imports, force field
  files, the NAGL model) is timed apart as ``setup``.

Rows are appended to ``benchmarks/.cache/forcefield_compare/rows.jsonl`` as each pose
finishes and read back by the next run with the same settings (``--fresh`` ignores them),
so a run stopped part way is continued, not repeated. Prints a table and writes
``benchmarks/results/forcefield_compare.json`` (after every pose, so it is there whenever
the run stops).

    nice -n 19 python benchmarks/forcefield_compare.py [--folders F ...] [--per-folder 6]
        [--length-ps 2] [--max-minutes M] [--fresh] [--data DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import logging
import math
import os
import platform as pyplatform
import statistics
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from scipy.stats import kendalltau, spearmanr

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
UNIFEP = Path(os.environ.get("VSCREEN_UNIFEP", REPO.parent / "shared" / "data" / "unifep"))
POSES = HERE / "unifep_poses" / "poses"
CACHE = HERE / ".cache" / "forcefield_compare"
RESULT = HERE / "results" / "forcefield_compare.json"
#: Five finished series on five unrelated proteins (a kinase, a second kinase, a BTB domain, an
#: isomerase, a GPCR): 6 ligands each, 30 poses.
DEFAULT_FOLDERS = ["Hermite__FKBP12", "Hermite__ACK1", "Hermite__BCL6", "Hermite__CDK4", "GPCR__D3"]
FORCEFIELDS = ("mmff", "openff")
PADDING = 8.0  # A around the reference ligand: pose_unifep's box, so the same protonated receptor
STAYED = 2.0  # A: a ligand whose final RMSD is within this kept its pose

log = logging.getLogger("forcefield_compare")


# --------------------------------------------------------------------------- inputs


def series_poses(folder: str, n: int) -> list[Chem.Mol]:
    """The first ``n`` ligands' poses of a series, in series order, named and scored for refinement.

    Parameters
    ----------
    folder : str
        A Uni-FEP series folder with a pose file in ``benchmarks/unifep_poses/poses/``.
    n : int
        Ligands taken.

    Returns
    -------
    list of Chem.Mol
        The latest pose of each ligand (hydrogens kept), with ``pose`` = 1 and
        ``docking_score`` = its Vina score, as :func:`pipeline.refine.refine_pose` reads them.
    """
    path = POSES / f"{folder}.sdf.gz"
    if not path.is_file():
        raise SystemExit(f"no pose file {path.relative_to(REPO)}: run benchmarks/pose_unifep.py --folders {folder}")
    with gzip.open(path, "rb") as handle:
        supplier = Chem.ForwardSDMolSupplier(io.BytesIO(handle.read()), removeHs=False)
        latest = {mol.GetProp("_Name"): mol for mol in supplier if mol is not None}  # a later pose replaces
    poses = []
    for name, mol in list(latest.items())[:n]:
        mol.SetProp("_Name", name)
        mol.SetProp("pose", "1")
        mol.SetProp("docking_score", mol.GetProp("vina_score") if mol.HasProp("vina_score") else "nan")
        poses.append(mol)
    return poses


def series_receptor(folder: str, data: Path) -> Path:
    """MD-ready receptor PDB of a series (cached), prepared as ``pose_unifep.prepare`` prepares its PDBQT.

    Parameters
    ----------
    folder : str
        The series folder.
    data : Path
        The Uni-FEP data folder (``protein.pdb.gz`` and ``ref_ligand.sdf`` of each series).

    Returns
    -------
    Path
        ``benchmarks/.cache/forcefield_compare/<folder>/receptor.pdb``.
    """
    from pipeline.box import box_around_ligand
    from pipeline.receptor import prepare_receptor

    out = CACHE / folder
    pdb = out / "receptor.pdb"
    if not pdb.is_file():
        out.mkdir(parents=True, exist_ok=True)
        box = box_around_ligand(data / folder / "ref_ligand.sdf", PADDING)
        prepare_receptor(data / folder / "protein.pdb.gz", pdb, out / "receptor.pdbqt", box=box)
    return pdb


# --------------------------------------------------------------------------- refinement


class TimedForceField:
    """A ligand force field that records the wall and CPU seconds of each parameterization.

    Parameters
    ----------
    inner : LigandForceField
        The force field the job would use.
    """

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.last = (math.nan, math.nan)

    def parameterize(self, mol: Chem.Mol):
        """Parameterize with the inner force field; ``last`` = (wall s, CPU s) of this call."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self.inner.parameterize(mol)
        finally:
            self.last = (time.perf_counter() - wall, time.process_time() - cpu)


def refine_one(mol: Chem.Mol, ctx, folder: str, forcefield: str) -> dict:
    """Refine one pose with one force field; its row whatever happens.

    Parameters
    ----------
    mol : Chem.Mol
        The pose.
    ctx : RefineContext
        The series' context for this force field, its ``ligand_ff`` a :class:`TimedForceField`.
    folder, forcefield : str
        Labels of the row.

    Returns
    -------
    dict
        ``folder, ligand, forcefield, status`` (``ok``, ``unstable``, ``not parameterized``,
        ``error``), ``reason``, the refine row's metrics when ``ok``, ``exp_dG``, and the wall
        and CPU seconds of parameterization and MD (minimization + dynamics + analysis for CPU).
    """
    from pipeline.refine import LigandParameterizationError, SimulationError, refine_pose

    row = dict(folder=folder, ligand=mol.GetProp("_Name"), forcefield=forcefield, status="ok", reason="")
    row["exp_dG"] = float(mol.GetProp("exp_dG")) if mol.HasProp("exp_dG") else math.nan
    row["heavy_atoms"] = mol.GetNumHeavyAtoms()
    ctx.ligand_ff.last = (math.nan, math.nan)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        _, refined = refine_pose(mol, ctx)
        row.update(
            {
                key: refined[key]
                for key in (
                    "ligand_forcefield",
                    "rmsd_mean",
                    "rmsd_max",
                    "rmsd_final",
                    "pocket_backbone_rmsd",
                    "interaction_energy",
                    "interaction_energy_std",
                    "potential_energy_final",
                    "n_atoms_simulated",
                    "seconds_minimize",
                    "seconds_dynamics",
                )
            }
        )
    except LigandParameterizationError as exc:
        row.update(status="not parameterized", reason=str(exc)[:300])
    except SimulationError as exc:
        row.update(status="unstable", reason=str(exc)[:300])
    except Exception as exc:  # a benchmark records every failure and goes on
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:300])
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    param_wall, param_cpu = ctx.ligand_ff.last
    row.update(
        seconds_parameterize=param_wall,
        cpu_seconds_parameterize=param_cpu,
        seconds_md=row.get("seconds_minimize", math.nan) + row.get("seconds_dynamics", math.nan),
        cpu_seconds_md=total_cpu - (param_cpu if math.isfinite(param_cpu) else 0.0),
        seconds_pose=total_wall,
        cpu_seconds_pose=total_cpu,
    )
    return row


#: Settings that say how a job runs, not what a pose's MD is: left out of :func:`settings_key`.
EXECUTION_ONLY = ("workers",)


def settings_key(settings) -> str:
    """A short digest of the protocol: cached rows count only for the same settings.

    Keys of :data:`EXECUTION_ONLY` are left out (poses in flight do not change a pose's result),
    so rows cached before such a key existed still count.
    """
    protocol = {k: v for k, v in settings.to_dict().items() if k not in EXECUTION_ONLY}
    return hashlib.sha1(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:12]


def read_cached(path: Path, key: str) -> dict[tuple[str, str, str], dict]:
    """Rows of earlier runs with the same settings, by ``(folder, ligand, forcefield)``."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if row.get("settings_key") == key:
                rows[(row["folder"], row["ligand"], row["forcefield"])] = row
    return rows


# --------------------------------------------------------------------------- summary


def _median(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(statistics.median(values)), 3) if values else None


def _series_tau(rows: list[dict]) -> float | None:
    """Mean over series of Kendall tau(interaction energy, measured dG); series with < 3 values left out."""
    taus = []
    for folder in sorted({r["folder"] for r in rows}):
        pairs = [(r["interaction_energy"], r["exp_dG"]) for r in rows if r["folder"] == folder]
        pairs = [p for p in pairs if math.isfinite(p[1])]
        if len(pairs) >= 3:
            tau = kendalltau(*zip(*pairs)).statistic
            if math.isfinite(tau):
                taus.append(tau)
    return round(float(np.mean(taus)), 3) if taus else None


def summarize(rows: list[dict]) -> dict:
    """Per force field and paired figures over the poses both force fields were run on.

    Parameters
    ----------
    rows : list of dict
        :func:`refine_one` rows.

    Returns
    -------
    dict
        ``per_forcefield`` (name -> figures), ``paired`` (Sage - MMFF on the poses stable with
        both) and ``poses``, ``receptors`` counted over the complete pairs.
    """
    by_pose: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        by_pose.setdefault((row["folder"], row["ligand"]), {})[row["forcefield"]] = row
    complete = {k: v for k, v in by_pose.items() if set(v) == set(FORCEFIELDS)}
    per_ff = {}
    for ff in FORCEFIELDS:
        runs = [v[ff] for v in complete.values()]
        ok = [r for r in runs if r["status"] == "ok"]
        typed = [r for r in runs if r["status"] != "not parameterized"]
        per_ff[ff] = dict(
            label=next((r["ligand_forcefield"] for r in ok), ff),
            poses=len(runs),
            parameterized=len(typed),
            stable=len(ok),
            stable_share=round(len(ok) / len(typed), 3) if typed else None,
            failures=[
                f"{r['folder']}/{r['ligand']}: {r['status']}: {r['reason']}" for r in runs if r["status"] != "ok"
            ],
            median_rmsd_mean=_median(r["rmsd_mean"] for r in ok),
            median_rmsd_final=_median(r["rmsd_final"] for r in ok),
            share_stayed=round(sum(r["rmsd_final"] <= STAYED for r in ok) / len(ok), 3) if ok else None,
            median_interaction_energy=_median(r["interaction_energy"] for r in ok),
            median_interaction_energy_std=_median(r["interaction_energy_std"] for r in ok),
            mean_series_kendall_tau_vs_exp_dG=_series_tau(ok),
            median_seconds_parameterize=_median(r["seconds_parameterize"] for r in typed),
            median_cpu_seconds_parameterize=_median(r["cpu_seconds_parameterize"] for r in typed),
            median_seconds_md=_median(r["seconds_md"] for r in ok),
            median_cpu_seconds_md=_median(r["cpu_seconds_md"] for r in ok),
            median_seconds_pose=_median(r["seconds_pose"] for r in ok),
            median_cpu_seconds_pose=_median(r["cpu_seconds_pose"] for r in ok),
        )
    both = [v for v in complete.values() if all(v[ff]["status"] == "ok" for ff in FORCEFIELDS)]
    paired = dict(poses_stable_with_both=len(both))
    if both:
        mmff = np.array([v["mmff"]["interaction_energy"] for v in both])
        sage = np.array([v["openff"]["interaction_energy"] for v in both])
        rmsd_m = np.array([v["mmff"]["rmsd_mean"] for v in both])
        rmsd_s = np.array([v["openff"]["rmsd_mean"] for v in both])
        paired.update(
            median_interaction_energy_difference=round(float(np.median(sage - mmff)), 3),
            spearman_interaction_energy=round(float(spearmanr(mmff, sage).statistic), 3) if len(both) > 2 else None,
            median_rmsd_mean_difference=round(float(np.median(rmsd_s - rmsd_m)), 3),
            sage_lower_rmsd_mean_share=round(float(np.mean(rmsd_s < rmsd_m)), 3),
        )
    return dict(
        poses=len(complete),
        receptors=len({k[0] for k in complete}),
        per_forcefield=per_ff,
        paired=paired,
    )


def print_table(summary: dict) -> None:
    """The per-force-field table (and the paired line) on stdout."""
    per = summary["per_forcefield"]

    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    print(f"\n{summary['poses']} poses over {summary['receptors']} receptors, both force fields")
    header = (
        f"{'force field':<38} {'stable':>8} {'RMSD mean':>9} {'RMSD end':>8} {'<=2A':>5} {'E_int':>7} "
        f"{'tau dG':>6} {'param s':>7} {'(CPU)':>6} {'MD s':>6} {'(CPU)':>6}"
    )
    print(header)
    for s in per.values():
        stable = f"{s['stable']}/{s['parameterized']}"
        print(
            f"{s['label']:<38} {stable:>8} {fmt(s['median_rmsd_mean'], '.2f'):>9} "
            f"{fmt(s['median_rmsd_final'], '.2f'):>8} {fmt(s['share_stayed'], '.2f'):>5} "
            f"{fmt(s['median_interaction_energy'], '.1f'):>7} {fmt(s['mean_series_kendall_tau_vs_exp_dG'], '.2f'):>6} "
            f"{fmt(s['median_seconds_parameterize'], '.2f'):>7} {fmt(s['median_cpu_seconds_parameterize'], '.2f'):>6} "
            f"{fmt(s['median_seconds_md'], '.1f'):>6} {fmt(s['median_cpu_seconds_md'], '.1f'):>6}"
        )
    p = summary["paired"]
    if p.get("poses_stable_with_both"):
        print(
            f"paired over {p['poses_stable_with_both']} poses: E_int Sage - MMFF median "
            f"{p['median_interaction_energy_difference']:+.1f} kcal/mol, Spearman {fmt(p['spearman_interaction_energy'], '.2f')}; "
            f"RMSD mean Sage - MMFF median {p['median_rmsd_mean_difference']:+.2f} A "
            f"(Sage lower on {p['sage_lower_rmsd_mean_share']:.0%})"
        )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", nargs="+", default=DEFAULT_FOLDERS, help="Uni-FEP series folders")
    parser.add_argument("--per-folder", type=int, default=6, help="ligands per series (series order)")
    parser.add_argument("--length-ps", type=float, default=None, help="override the default dynamics length")
    parser.add_argument("--max-minutes", type=float, default=None, help="start no pose after this many minutes")
    parser.add_argument("--fresh", action="store_true", help="ignore the rows of earlier runs")
    parser.add_argument("--data", type=Path, default=UNIFEP, help="Uni-FEP data folder")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()

    from pipeline.refine import RefineSettings
    from pipeline.refine.job import RefineContext
    from pipeline.refine.ligand import openff_available

    logging.basicConfig(level=logging.WARNING)
    RDLogger.DisableLog("rdApp.*")
    if not openff_available():
        raise SystemExit("openff-toolkit is not installed: pip install -e '.[openff]'")
    settings = RefineSettings(platform="CPU")  # the pipeline's default protocol, on the CPU
    if args.length_ps:
        settings = dataclasses.replace(settings, length_ps=args.length_ps)
    key = settings_key(settings)
    rows_path = CACHE / "rows.jsonl"
    cached = {} if args.fresh else read_cached(rows_path, key)
    CACHE.mkdir(parents=True, exist_ok=True)

    start, load_before = time.perf_counter(), os.getloadavg()
    poses = {folder: series_poses(folder, args.per_folder) for folder in args.folders}
    contexts, setup = {}, {}
    order = [
        (folder, poses[folder][k])
        for k in range(max(len(p) for p in poses.values()))
        for folder in args.folders
        if k < len(poses[folder])
    ]
    rows, stopped = [], False
    for n, (folder, mol) in enumerate(order, 1):
        name = mol.GetProp("_Name")
        todo = [ff for ff in FORCEFIELDS if (folder, name, ff) not in cached]
        rows += [cached[(folder, name, ff)] for ff in FORCEFIELDS if ff not in todo]
        if not todo:
            continue
        if args.max_minutes is not None and time.perf_counter() - start > args.max_minutes * 60:
            stopped = True
            break
        for ff in todo:
            if (folder, ff) not in contexts:
                ctx = RefineContext.create(
                    series_receptor(folder, args.data), dataclasses.replace(settings, forcefield=ff)
                )
                ctx.ligand_ff = TimedForceField(ctx.ligand_ff)
                if ff not in setup:  # first use in this process: imports, force field files, NAGL model
                    ctx.ligand_ff.parameterize(mol)
                    setup[ff] = round(ctx.ligand_ff.last[0], 2)
                contexts[(folder, ff)] = ctx
            row = refine_one(mol, contexts[(folder, ff)], folder, ff)
            row["settings_key"] = key
            with open(rows_path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            rows.append(row)
            print(
                f"[{n}/{len(order)}] {folder} {name} {ff}: {row['status']} "
                f"RMSD {row.get('rmsd_mean', math.nan):.2f} E_int {row.get('interaction_energy', math.nan):.1f} "
                f"param {row['seconds_parameterize']:.1f} s MD {row['seconds_md']:.1f} s "
                f"(CPU {row['cpu_seconds_pose']:.1f} s) {row['reason'][:120]}",
                flush=True,
            )
        write_result(args, settings, rows, setup, start, load_before, complete=False)
    result = write_result(args, settings, rows, setup, start, load_before, complete=not stopped)
    print_table(result["summary"])
    if stopped:
        print(f"stopped after --max-minutes {args.max_minutes}; the same command continues the run")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


def write_result(args, settings, rows: list[dict], setup: dict, start: float, load_before, complete: bool) -> dict:
    """Write the JSON result (summary, settings, machine, every row); return it."""
    summary = summarize(rows)
    result = dict(
        benchmark="forcefield_compare",
        complete=complete and 2 * summary["poses"] == len(rows),
        folders=args.folders,
        per_folder=args.per_folder,
        platform="CPU",
        settings=settings.to_dict(),
        setup_seconds_first_parameterization=setup,
        machine=dict(
            platform=pyplatform.platform(),
            cpus=os.cpu_count(),
            python=pyplatform.python_version(),
            load_average_before=[round(x, 2) for x in load_before],
            load_average_now=[round(x, 2) for x in os.getloadavg()],
        ),
        seconds_this_run=round(time.perf_counter() - start, 1),
        summary=summary,
        rows=[{k: _clean(v) for k, v in r.items()} for r in rows],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False, default=_json_default) + "\n")
    tmp.replace(args.out)
    return result


def _clean(value):
    """A row value for JSON: floats rounded, NaN (a failed run's missing metric) as null."""
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4) if math.isfinite(value) else None
    return value


def _json_default(value):
    """NumPy scalars as Python numbers (``allow_nan=False`` still rejects NaN, so rows are cleaned first)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    main()
