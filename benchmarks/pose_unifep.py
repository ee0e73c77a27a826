"""Tethered posing over the shared Uni-FEP series: every ligand posed like its series' reference ligand.

Each series folder of ``shared/data/unifep`` holds the protein (``protein.pdb.gz``), one
reference ligand in its pocket (``ref_ligand.sdf``) and the series' ligands with measured and
FEP free energies (``result_dG.csv``, SMILES with explicit hydrogens). Per series the protein
is prepared with :func:`pipeline.receptor.prepare_receptor` (box: the reference ligand's,
8 A padding; no OpenMM check, only the PDBQT is used), then every ligand is posed by
:class:`pipeline.tethered.TetheredPoser` with its default settings: the common core with the
reference restrained, Vina local optimization, or Vina docking in the reference's box when
the core is too small or cannot be embedded.

The run is resumable: one row per ligand is appended to ``benchmarks/unifep_poses/rows.csv``
and its pose to ``benchmarks/unifep_poses/poses/<folder>.sdf.gz`` (both committed: the
campaign is many core-hours and ``benchmarks/scoring_cv.py`` trains on these poses) as it
finishes. Each pose is one gzip member of its own, so appending keeps the file valid; the SD
properties carry mode, reason, Vina score, core RMSD and the measured and FEP dG, and the
hydrogens are kept. The latest row and the latest pose of a ligand count. A ligand is skipped
when its latest row exists and, unless that row failed, its pose is in the series' pose file
(``--retry-failed`` re-runs the failed ones, ``--redo`` all of the chosen series); a row
without its pose (a checkout that lost them) is posed again. The receptor PDBQT of a series is
an intermediate: it is prepared again on every run (deterministically, from the protein) and a
copy is kept under the git-ignored ``benchmarks/.cache/unifep_poses/`` for rescoring. It runs
niced in this one process (CPU is shared with longer benchmarks), then prints a table per
series - ligands, share tethered, median core RMSD of the tethered poses and their share under
1 A, the reference ligand's own re-pose, Kendall tau of the Vina score against the measured dG
(and of the FEP dG, for scale), median CPU seconds per ligand (``seconds`` in the rows is wall
time, which a shared machine inflates) - and writes ``benchmarks/results/unifep_poses.json``
over every series with rows.

    nice -n 19 python benchmarks/pose_unifep.py (--folders F ... | --series N [--order small|coverage])
        [--shard K/N] [--hours H] [--retry-failed] [--redo] [--report-only] [--data DIR]

Two shards (``--shard 1/2`` and ``--shard 2/2``, same other arguments) use both cores; their
rows go to the same file under a lock.

The data folder is ``../shared/data/unifep`` from the repository root unless ``--data`` or the
environment variable ``VSCREEN_UNIFEP`` names another.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rows import append_csv_rows, append_gzip, gzip_members, repair_gzip_tail
from scipy.stats import kendalltau

from pipeline.box import box_around_ligand
from pipeline.receptor import prepare_receptor
from pipeline.tethered import TetheredPoser, TetheredSettings, TetheringError, read_reference

REPO = Path(__file__).resolve().parents[1]
UNIFEP = Path(os.environ.get("VSCREEN_UNIFEP", REPO.parent / "shared" / "data" / "unifep"))
ROWS = REPO / "benchmarks" / "unifep_poses" / "rows.csv"
POSES = REPO / "benchmarks" / "unifep_poses" / "poses"  # committed: <folder>.sdf.gz
CACHE = REPO / "benchmarks" / ".cache" / "unifep_poses"  # receptor PDBQTs (and poses of older checkouts)
RESULT = REPO / "benchmarks" / "results" / "unifep_poses.json"
PADDING = 8.0  # the pipeline's default box padding around a reference ligand, A
FIELDS = [
    "folder",
    "target",
    "ligand_name",
    "smiles",
    "exp_dG",
    "fep_dG",
    "is_reference",
    "mode",
    "reason",
    "core_atoms",
    "core_fraction",
    "core_rmsd",
    "vina_score",
    "seconds",
    "cpu_seconds",
    "finished",
]

log = logging.getLogger("pose_unifep")


def read_systems(data: Path) -> list[dict]:
    """Rows of ``systems.csv`` (``folder, series, target, system, ligands``), in file order."""
    with open(data / "systems.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def choose_folders(systems: list[dict], data: Path, folders: list[str] | None, n: int | None, order: str) -> list[str]:
    """The series to run: the named folders, or the first ``n`` in ``order``.

    ``order`` is ``systems`` (the order of ``systems.csv``), ``small`` (smallest protein file
    first, then fewest ligands: quick checks) or ``coverage``: one series of every protein group
    (``affinity_eval.protein_groups``: isoforms and synonyms together) before a second of any,
    smallest series first within each pass, so that a campaign stopped part way has posed
    series on as many proteins as possible - what a protein-grouped cross-validation needs.
    """
    known = [row["folder"] for row in systems]
    if folders:
        unknown = sorted(set(folders) - set(known))
        if unknown:
            raise SystemExit(f"not series folders of {data.name}/systems.csv: {', '.join(unknown)}")
        return list(dict.fromkeys(folders))
    ligands = {row["folder"]: int(row["ligands"]) for row in systems}
    if order == "small":
        known.sort(key=lambda f: ((data / f / "protein.pdb.gz").stat().st_size, ligands[f], f))
    elif order == "coverage":
        known = coverage_order(systems)
    return known[:n] if n is not None else known


def coverage_order(systems: list[dict]) -> list[str]:
    """Series folders in rounds: the k-th round holds the k-th smallest series of every protein group."""
    from affinity_eval import protein_groups

    groups = protein_groups({row["target"] for row in systems})
    by_group: dict[str, list[dict]] = defaultdict(list)
    for row in systems:
        by_group[groups[row["target"]]].append(row)
    for rows in by_group.values():
        rows.sort(key=lambda r: (int(r["ligands"]), r["folder"]))
    order = []
    for k in range(max(len(rows) for rows in by_group.values())):
        layer = [rows[k] for rows in by_group.values() if k < len(rows)]
        order += [r["folder"] for r in sorted(layer, key=lambda r: (int(r["ligands"]), r["folder"]))]
    return order


def shard(folders: list[str], spec: str | None) -> list[str]:
    """Every N-th folder from the K-th (``spec`` = ``"K/N"``, K from 1), so N processes pose disjoint series."""
    if not spec:
        return folders
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise SystemExit(f"--shard wants K/N (e.g. 1/2), got {spec!r}") from None
    if not 1 <= k <= n:
        raise SystemExit(f"--shard {spec}: K must be between 1 and N")
    return folders[k - 1 :: n]


def read_series(folder: Path) -> list[dict]:
    """Ligands of one series: ``ligand_name, ligand_smiles, exp_dG, fep_dG`` (units stripped from the headers).

    A SMILES with a neutral four-bonded N (Hermite PAK4's protonated piperazines, written
    ``N([H])([H])`` without their charge) is read as the ammonium, as the affinity loader
    reads it (``affinity_eval._read_smiles``), so that the poses and the evaluation hold the
    same ligands; every other SMILES is passed on as written.
    """
    from affinity_eval import _read_smiles

    with open(folder / "result_dG.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        clean = {key.split(" (")[0]: value for key, value in row.items()}
        smiles = clean["ligand_smiles"]
        repaired, fixed = _read_smiles(smiles)  # parses as written first; repairs only what RDKit refuses
        if fixed:
            smiles = Chem.MolToSmiles(repaired)
        out.append(
            dict(
                ligand_name=clean["ligand_name"],
                ligand_smiles=smiles,
                exp_dG=clean.get("exp_dG", ""),
                fep_dG=clean.get("fep_dG", ""),
            )
        )
    return out


def molecule_key(mol: Chem.Mol) -> str:
    """InChIKey without its protonation character: the same molecule in another protonation state matches."""
    return Chem.MolToInchiKey(mol)[:25]


def read_rows(path: Path = ROWS) -> dict[tuple[str, str], dict]:
    """Latest row per ``(folder, ligand_name)`` from the append-only CSV (empty if it does not exist)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {(row["folder"], row["ligand_name"]): row for row in csv.DictReader(handle)}


def shared_path_free(text: object, data: Path) -> str:
    """A message on one line with this machine's paths above the repository and the data removed."""
    return " ".join(str(text).split()).replace(f"{REPO.parent}/", "").replace(f"{data.parent}/", "")


def pose_path(folder: str) -> Path:
    """The committed pose file of a series: ``benchmarks/unifep_poses/poses/<folder>.sdf.gz``."""
    return POSES / f"{folder}.sdf.gz"


def legacy_pose_path(folder: str) -> Path:
    """Where checkouts before the committed pose files kept a series' poses (plain SDF in the cache)."""
    return CACHE / f"{folder}.sdf"


def receptor_path(folder: str) -> Path:
    """The cached receptor PDBQT of a series, as :func:`prepare` leaves it."""
    return CACHE / f"{folder}.receptor.pdbqt"


def append_pose(path: Path, mol: Chem.Mol) -> None:
    """Append one pose, all its atoms and SD properties, to a gzipped SDF as a gzip member of its own.

    A file of concatenated members is a valid gzip file (``gzip.open`` reads them all), so the
    file never has to be rewritten. The member is compressed first and written in one call,
    under a lock and flushed to disk (:func:`rows.append_gzip`, shared with the DUD-E campaign), so a kill
    leaves at most a partial last member, which :func:`read_pose_text` ignores and
    :func:`ready_pose_file` cuts off. ``mtime=0``: the same pose gives the same bytes.

    Parameters
    ----------
    path : Path
        The ``.sdf.gz`` file (created with its folder when absent).
    mol : Chem.Mol
        The pose; its molecule name is the ligand's name.
    """
    append_gzip(path, Chem.SDWriter.GetText(mol))


def read_pose_text(path: Path) -> str:
    """SD text of a pose file: a ``.sdf.gz``'s whole members (a partial last one is left out) or a plain ``.sdf``.

    Parameters
    ----------
    path : Path
        A committed ``<folder>.sdf.gz`` or a legacy ``<folder>.sdf``.

    Returns
    -------
    str
        The records in file order; empty when the file does not exist.
    """
    if not path.is_file():
        return ""
    if path.suffix != ".gz":
        return path.read_text()
    members, _, damaged = gzip_members(path.read_bytes())
    if damaged:
        log.warning("%s: %d damaged gzip member(s) left out", path.name, damaged)
    return b"".join(members).decode()


def read_poses(path: Path) -> list[Chem.Mol]:
    """The poses of a pose file in file order (hydrogens kept; records RDKit cannot read are dropped).

    A ligand posed again appears again: the last one is its latest pose.
    """
    supplier = Chem.ForwardSDMolSupplier(io.BytesIO(read_pose_text(path).encode()), removeHs=False)
    return [mol for mol in supplier if mol is not None]


def pose_names(path: Path) -> set[str]:
    """Names of the ligands with a pose in a pose file, from the records' first lines (no parsing of the molecules)."""
    records = read_pose_text(path).split("$$$$\n")
    return {record.split("\n", 1)[0] for record in records if record.strip()}


def ready_pose_file(folder: str) -> set[str]:
    """Make a series' committed pose file ready for appending; return the names of the ligands it holds.

    A checkout that still has the series' poses only in the legacy cache SDF gets them copied
    into the committed file (written aside and renamed, so a kill leaves no half file), and a
    partial last gzip member left by a kill is cut off, so that the poses appended after it
    stay readable.
    """
    path, legacy = pose_path(folder), legacy_pose_path(folder)
    if not path.is_file() and legacy.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(path.name + ".tmp")
        aside.write_bytes(gzip.compress(legacy.read_bytes(), mtime=0))
        aside.replace(path)
        print(f"  poses of {folder} moved from the cache into poses/{path.name}", flush=True)
    elif path.is_file():
        cut = repair_gzip_tail(path)
        if cut:
            log.warning("%s: cut %d bytes of a partial last gzip member", path.name, cut)
    return pose_names(path)


def ligands_to_pose(
    folder: str,
    ligands: list[dict],
    rows: dict[tuple[str, str], dict],
    posed: set[str],
    redo: bool = False,
    retry_failed: bool = False,
) -> list[dict]:
    """The ligands of a series still to pose: no latest row, or a posed row whose pose is missing.

    Parameters
    ----------
    folder : str
        The series folder.
    ligands : list of dict
        The series' ligands (:func:`read_series`).
    rows : dict
        Latest rows by ``(folder, ligand_name)`` (:func:`read_rows`).
    posed : set of str
        Names of the ligands in the series' pose file (:func:`ready_pose_file`).
    redo : bool
        Every ligand.
    retry_failed : bool
        Also the ligands whose latest row failed (which have no pose, by design).

    Returns
    -------
    list of dict
        The ligands to pose, in series order.
    """

    def done(name: str) -> bool:
        row = rows.get((folder, name))
        if row is None:
            return False
        if row["mode"] == "failed":
            return not retry_failed
        return name in posed  # a row without its pose says done for a pose this checkout lacks

    return [lig for lig in ligands if redo or not done(lig["ligand_name"])]


def prepare(folder: Path, workdir: Path) -> Path:
    """Receptor PDBQT of one series, prepared into ``workdir`` (box: the reference ligand's).

    A copy is kept in the cache (:func:`receptor_path`): rescoring the poses later (pair graphs
    for the scorer, ``benchmarks/scoring_cv.py``) needs the very receptor they were optimized
    in, and a checkout without it prepares it again with this function (it is deterministic).
    """
    box = box_around_ligand(folder / "ref_ligand.sdf", PADDING)
    out = workdir / "receptor.pdbqt"
    prepare_receptor(folder / "protein.pdb.gz", workdir / "receptor.pdb", out, box=box, check_openmm=False)
    receptor_path(folder.name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, receptor_path(folder.name))
    return out


def pose_series(
    folder: Path, target: str, ligands: list[dict], settings: TetheredSettings, deadline: float | None
) -> int:
    """Pose the given ligands of one series; append a row per ligand and its pose (:func:`append_pose`); return how many.

    The pose goes to the file before the row: a kill between the two leaves a pose without a
    row, posed again on the next run (its later pose wins), never a row without its pose.
    """
    base = dict(folder=folder.name, target=target)
    ref_key = molecule_key(read_reference(folder / "ref_ligand.sdf"))
    sdf = pose_path(folder.name)
    done = 0
    with tempfile.TemporaryDirectory(prefix="pose_unifep-") as tmp:
        start = time.perf_counter()
        try:
            poser = TetheredPoser(prepare(folder, Path(tmp)), folder / "ref_ligand.sdf", settings)
        except Exception as exc:  # noqa: BLE001 - a receptor that cannot be prepared is a measured outcome
            reason = f"receptor: {type(exc).__name__}: {shared_path_free(exc, folder.parent)}"[:1000]
            seconds = round(time.perf_counter() - start, 2)
            append_csv_rows(
                ROWS,
                FIELDS,
                [
                    dict(
                        base,
                        **_ligand_fields(lig, ref_key),
                        mode="failed",
                        reason=reason,
                        seconds=seconds,
                        finished=_now(),
                    )
                    for lig in ligands
                ],
            )
            print(f"  {folder.name}: {reason[:200]}", flush=True)
            return len(ligands)
        print(f"  receptor and maps: {time.perf_counter() - start:.1f}s", flush=True)
        for lig in ligands:
            if deadline and time.time() > deadline:
                break
            row = dict(base, **_ligand_fields(lig, ref_key))
            start, cpu = time.perf_counter(), time.process_time()
            try:
                pose = poser.pose(lig["ligand_smiles"], lig["ligand_name"])
            except Exception as exc:  # noqa: BLE001 - every failure is a measured outcome, recorded with its message
                kind = "" if isinstance(exc, TetheringError) else f"{type(exc).__name__}: "
                row.update(mode="failed", reason=f"{kind}{shared_path_free(exc, folder.parent)}"[:1000])
            else:
                row.update(
                    mode=pose.mode,
                    reason=pose.reason[:1000],
                    core_atoms=pose.core.size,
                    core_fraction=round(pose.core.fraction, 3),
                    core_rmsd="" if np.isnan(pose.core_rmsd) else round(pose.core_rmsd, 3),
                    vina_score=round(pose.vina_score, 3),
                )
                mol = pose.to_mol()
                for key in ("exp_dG", "fep_dG", "is_reference"):
                    mol.SetProp(key, str(row[key]))
                append_pose(sdf, mol)
            row.update(
                seconds=round(time.perf_counter() - start, 2),
                cpu_seconds=round(time.process_time() - cpu, 2),
                finished=_now(),
            )
            append_csv_rows(ROWS, FIELDS, [row])
            done += 1
            print(
                f"  {lig['ligand_name'][:32]:32s} {row['mode']:8s} core {row.get('core_atoms', '-')!s:>3} "
                f"rmsd {row.get('core_rmsd', '-')!s:>6} vina {row.get('vina_score', '-')!s:>7} {row['seconds']:6.1f}s",
                flush=True,
            )
    return done


def run_series(
    folder: Path,
    target: str,
    rows: dict[tuple[str, str], dict],
    settings: TetheredSettings,
    deadline: float | None,
    redo: bool = False,
    retry_failed: bool = False,
    label: str = "",
) -> int:
    """Pose the ligands of one series that are not done yet (:func:`ligands_to_pose`); return how many were posed.

    Parameters
    ----------
    folder : Path
        The series folder of the data.
    target : str
        Its target (``systems.csv``).
    rows : dict
        Latest rows by ``(folder, ligand_name)`` (:func:`read_rows`).
    settings : TetheredSettings
        The poser's settings.
    deadline : float or None
        Start no ligand after this time (``time.time()``).
    redo, retry_failed : bool
        As for :func:`ligands_to_pose`.
    label : str
        Printed before the series' line (its number in the run).
    """
    posed = ready_pose_file(folder.name)  # the pose file's names, read once per series
    ligands = ligands_to_pose(folder.name, read_series(folder), rows, posed, redo=redo, retry_failed=retry_failed)
    print(f"{label}{folder.name}: {len(ligands)} ligands to pose", flush=True)
    return pose_series(folder, target, ligands, settings, deadline) if ligands else 0


def _ligand_fields(lig: dict, ref_key: str) -> dict:
    """The input columns of a ligand's row."""
    mol = Chem.MolFromSmiles(lig["ligand_smiles"])
    return dict(
        ligand_name=lig["ligand_name"],
        smiles=lig["ligand_smiles"],
        exp_dG=lig["exp_dG"],
        fep_dG=lig["fep_dG"],
        is_reference=int(mol is not None and molecule_key(mol) == ref_key),
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _tau(x: list[float], y: list[float]) -> float | None:
    """Kendall tau of two lists (pairs with a NaN dropped); ``None`` with fewer than 3 pairs or no spread."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if not (np.isnan(a) or np.isnan(b))]
    if len(pairs) < 3:
        return None
    tau = kendalltau(*zip(*pairs, strict=True)).statistic
    return None if np.isnan(tau) else round(float(tau), 3)


def summarize_series(folder: str, rows: list[dict]) -> dict:
    """Figures of one series from its latest rows."""
    posed = [r for r in rows if r["mode"] in ("tethered", "docked")]
    tethered = [r for r in posed if r["mode"] == "tethered"]
    exp = [_float(r["exp_dG"]) for r in posed]
    reference = [r for r in posed if r["is_reference"] == "1"]
    return dict(
        folder=folder,
        target=rows[0]["target"],
        n=len(rows),
        posed=len(posed),
        failed=len(rows) - len(posed),
        tethered=len(tethered),
        share_tethered=round(len(tethered) / len(rows), 3) if rows else None,
        median_core_rmsd_tethered=_median([_float(r["core_rmsd"]) for r in tethered]),
        share_tethered_core_rmsd_below_1A=(
            round(sum(_float(r["core_rmsd"]) < 1.0 for r in tethered) / len(tethered), 3) if tethered else None
        ),
        median_core_fraction=_median([_float(r["core_fraction"]) for r in posed]),
        reference_core_rmsd=_float(reference[0]["core_rmsd"]) if reference else None,
        tau_vina_exp=_tau([_float(r["vina_score"]) for r in posed], exp),
        tau_fep_exp=_tau([_float(r["fep_dG"]) for r in posed], exp),
        median_seconds=_median([_float(r["seconds"]) for r in rows]),
        median_cpu_seconds=_median([_float(r.get("cpu_seconds", "")) for r in rows]),
    )


def _median(values: list[float]) -> float | None:
    values = [v for v in values if not np.isnan(v)]
    return round(float(np.median(values)), 3) if values else None


def summarize(rows: dict[tuple[str, str], dict]) -> dict:
    """Per-series figures and the totals over every series with rows."""
    by_folder: dict[str, list[dict]] = defaultdict(list)
    for (folder, _), row in rows.items():
        by_folder[folder].append(row)
    series = [summarize_series(folder, by_folder[folder]) for folder in sorted(by_folder)]
    all_rows = list(rows.values())
    tethered = [r for r in all_rows if r["mode"] == "tethered"]
    taus = [s["tau_vina_exp"] for s in series if s["tau_vina_exp"] is not None]
    fep_taus = [s["tau_fep_exp"] for s in series if s["tau_fep_exp"] is not None]
    failures = defaultdict(int)
    for r in all_rows:
        if r["mode"] == "failed":
            failures[r["reason"].split(":")[0][:80]] += 1
    return dict(
        series_done=len(series),
        ligands=len(all_rows),
        tethered=len(tethered),
        docked=sum(r["mode"] == "docked" for r in all_rows),
        failed=sum(r["mode"] == "failed" for r in all_rows),
        share_tethered=round(len(tethered) / len(all_rows), 3) if all_rows else None,
        median_core_rmsd_tethered=_median([_float(r["core_rmsd"]) for r in tethered]),
        share_tethered_core_rmsd_below_1A=(
            round(sum(_float(r["core_rmsd"]) < 1.0 for r in tethered) / len(tethered), 3) if tethered else None
        ),
        reference_core_rmsd_median=_median(
            [s["reference_core_rmsd"] for s in series if s["reference_core_rmsd"] is not None]
        ),
        median_tau_vina_exp=_median(taus),
        mean_tau_vina_exp=round(float(np.mean(taus)), 3) if taus else None,
        median_tau_fep_exp=_median(fep_taus),
        failure_classes=dict(sorted(failures.items(), key=lambda kv: -kv[1])),
        seconds_total=round(sum(_float(r["seconds"]) for r in all_rows), 1),
        cpu_seconds_total=round(float(np.nansum([_float(r.get("cpu_seconds", "")) for r in all_rows])), 1),
        series=series,
    )


def print_table(summary: dict) -> None:
    """Per-series table and totals on stdout."""

    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    print(
        f"{'series':44s} {'n':>3s} {'teth':>5s} {'rmsd':>5s} {'<1A':>5s} {'ref':>5s} {'tau_vina':>8s} {'tau_fep':>7s} "
        f"{'cpu_s':>6s}"
    )
    for s in summary["series"]:
        print(
            f"{s['folder'][:44]:44s} {s['n']:3d} {fmt(s['share_tethered'], '5.0%')} "
            f"{fmt(s['median_core_rmsd_tethered'], '5.2f')} {fmt(s['share_tethered_core_rmsd_below_1A'], '5.0%')} "
            f"{fmt(s['reference_core_rmsd'], '5.2f')} {fmt(s['tau_vina_exp'], '8.2f')} {fmt(s['tau_fep_exp'], '7.2f')} "
            f"{fmt(s['median_cpu_seconds'], '6.1f')}"
        )
    print(
        f"{summary['ligands']} ligands in {summary['series_done']} series: {summary['tethered']} tethered, "
        f"{summary['docked']} docked, {summary['failed']} failed; median core RMSD (tethered) "
        f"{fmt(summary['median_core_rmsd_tethered'], '.2f')} A; median tau vina/exp "
        f"{fmt(summary['median_tau_vina_exp'], '.2f')} (FEP {fmt(summary['median_tau_fep_exp'], '.2f')})"
    )
    for reason, count in summary["failure_classes"].items():
        print(f"  {count:4d} failed: {reason}")


def main() -> None:
    """Pose the ligands still to do in the chosen series (see the module docstring), then summarise every latest row."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--folders", nargs="+", default=None, help="series folders to run")
    choice.add_argument("--series", type=int, default=None, help="run the first N series (see --order)")
    parser.add_argument(
        "--order", choices=["systems", "small", "coverage"], default="systems", help="order of --series"
    )
    parser.add_argument(
        "--shard", default=None, help="K/N: run every N-th chosen series from the K-th (N processes side by side)"
    )
    parser.add_argument("--hours", type=float, default=None, help="start no new ligand after this many hours")
    parser.add_argument("--retry-failed", action="store_true", help="re-run ligands whose latest row failed")
    parser.add_argument("--redo", action="store_true", help="re-run every ligand of the chosen series")
    parser.add_argument("--report-only", action="store_true", help="summarise rows.csv without posing")
    parser.add_argument("--data", type=Path, default=UNIFEP, help="the unifep data folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    RDLogger.DisableLog("rdApp.*")  # ref_ligand.sdf files flagged 2D with 3D coordinates, bad-SMILES echoes: noise
    os.nice(10)  # the machine's cores are shared with longer benchmarks
    systems = read_systems(args.data)
    targets = {row["folder"]: row["target"] for row in systems}
    rows = read_rows()
    folders = []
    if args.folders is None and args.series is None and not args.report_only:
        print("no series chosen (--folders or --series): summarising rows.csv only", flush=True)
    elif not args.report_only:
        folders = shard(choose_folders(systems, args.data, args.folders, args.series, args.order), args.shard)
    settings = TetheredSettings()
    deadline = time.time() + args.hours * 3600 if args.hours else None
    for number, folder in enumerate(folders, start=1):
        if deadline and time.time() > deadline:
            print("time limit reached", flush=True)
            break
        run_series(
            args.data / folder,
            targets[folder],
            rows,
            settings,
            deadline,
            redo=args.redo,
            retry_failed=args.retry_failed,
            label=f"[{number}/{len(folders)}] ",
        )
    summary = summarize(read_rows())
    print_table(summary)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(
        json.dumps(
            dict(
                benchmark="unifep_poses",
                data="shared/data/unifep (protein.pdb.gz, ref_ligand.sdf, result_dG.csv; box padding 8 A)",
                settings=asdict(settings),
                machine=f"{os.cpu_count()} cpu {platform.processor() or platform.machine()}",
                date=time.strftime("%Y-%m-%d"),
                **summary,
            ),
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
