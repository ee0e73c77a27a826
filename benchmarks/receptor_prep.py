"""Receptor preparation over the shared Uni-FEP proteins: how many prepare without manual edits.

Every series folder of ``shared/data/unifep`` holds ``protein.pdb.gz`` and the reference ligand
``ref_ligand.sdf``; the docking box is the ligand's box (``box_around_ligand``, 8 A padding).
Several series share one protein, so each distinct structure (SHA-256 of the decompressed PDB)
is prepared once with :func:`pipeline.receptor.prepare_receptor` (OpenMM check on, box given),
with the box enclosing the boxes of all its series, and the outcome is reported per structure
and per series.

The run is resumable: one row per attempt is appended to ``benchmarks/receptor_prep/rows.csv``
(committed) and structures whose latest row exists are skipped; ``--retry-failed`` re-runs the
failed ones (after a fix), ``--redo`` all. It runs niced in this one process (CPU is shared with
longer benchmarks), then prints a table and writes ``benchmarks/results/receptor_prep.json``.

    python benchmarks/receptor_prep.py [--limit N] [--hours H] [--retry-failed] [--report-only]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import logging
import os
import platform
import re
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import RDLogger
from rows import append_csv_rows

from pipeline.box import Box, box_around_ligand
from pipeline.receptor import prepare_receptor

REPO = Path(__file__).resolve().parents[1]
UNIFEP = REPO.parent / "shared" / "data" / "unifep"
ROWS = REPO / "benchmarks" / "receptor_prep" / "rows.csv"
RESULT = REPO / "benchmarks" / "results" / "receptor_prep.json"
PADDING = 8.0  # the pipeline's default box padding around a reference ligand, A
FIELDS = [
    "structure",
    "series",
    "ok",
    "error",
    "seconds",
    "removed_untypable",
    "repaired_untypable",
    "n_residues",
    "n_chain_breaks",
    "box_center",
    "box_size",
    "finished",
]

log = logging.getLogger("receptor_prep")


@dataclass
class Structure:
    """One distinct protein file and the series folders that use it."""

    key: str
    path: Path
    series: list[str]
    box: Box


def distinct_structures(data: Path = UNIFEP) -> list[Structure]:
    """Group the series of ``systems.csv`` by the content hash of their decompressed protein.

    Parameters
    ----------
    data : Path
        The ``unifep`` folder.

    Returns
    -------
    list of Structure
        In ``systems.csv`` order of first use; the box encloses the reference-ligand boxes of
        all series sharing the structure (so a residue judged far is far from every one of them).
    """
    with open(data / "systems.csv", newline="") as handle:
        folders = [row["folder"] for row in csv.DictReader(handle)]
    groups: dict[str, list[str]] = defaultdict(list)
    paths: dict[str, Path] = {}
    for folder in folders:
        path = data / folder / "protein.pdb.gz"
        key = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()[:16]
        groups[key].append(folder)
        paths.setdefault(key, path)
    return [Structure(key, paths[key], series, _union_box(data, series)) for key, series in groups.items()]


def _union_box(data: Path, series: list[str]) -> Box:
    """Smallest box holding the reference-ligand boxes of the given series."""
    boxes = [box_around_ligand(data / folder / "ref_ligand.sdf", PADDING) for folder in series]
    lo = np.min([np.subtract(b.center, np.divide(b.size, 2)) for b in boxes], axis=0)
    hi = np.max([np.add(b.center, np.divide(b.size, 2)) for b in boxes], axis=0)
    return Box(tuple(float(round(v, 3)) for v in (lo + hi) / 2), tuple(float(round(v, 3)) for v in hi - lo))


def read_rows(path: Path = ROWS) -> dict[str, dict]:
    """Latest row per structure key from the append-only CSV (empty if it does not exist)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["structure"]: row for row in csv.DictReader(handle)}


def append_row(row: dict, path: Path = ROWS) -> None:
    """Append one result row (flushed, so a kill loses nothing)."""
    append_csv_rows(path, FIELDS, [row])


def prepare_one(structure: Structure, workdir: Path) -> dict:
    """Prepare one structure; return its CSV row (``ok`` 1/0, the error message on failure)."""
    start = time.perf_counter()
    row = dict(
        structure=structure.key,
        series=";".join(structure.series),
        box_center=" ".join(f"{v:.3f}" for v in structure.box.center),
        box_size=" ".join(f"{v:.3f}" for v in structure.box.size),
    )
    try:
        report = prepare_receptor(structure.path, workdir / "r.pdb", workdir / "r.pdbqt", box=structure.box)
    except Exception as exc:  # noqa: BLE001 - every failure is a measured outcome, recorded with its message
        # name the data by its place in the shared folder, not by this machine's path
        message = " ".join(str(exc).split()).replace(f"{REPO.parent}/", "")
        row.update(ok=0, error=f"{type(exc).__name__}: {message}"[:1000])
    else:
        report_dict = report.to_dict()
        row.update(
            ok=1,
            error="",
            removed_untypable="; ".join(report_dict.get("removed_untypable", [])),
            repaired_untypable="; ".join(report_dict.get("repaired_untypable", [])),
            n_residues=report.n_residues,
            n_chain_breaks=len(report.chain_breaks),
        )
    row.update(seconds=round(time.perf_counter() - start, 2), finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return row


def failure_class(error: str) -> str:
    """First clause of an error message with paths, residues and numbers blanked, for grouping failures."""
    text = re.sub(r"\S*/\S+", "<path>", error)
    text = re.sub(r"\b[A-Za-z0-9]?:[A-Z0-9]{1,4} -?\d+[A-Z]?\b", "<residue>", text)  # A:VAL 123
    text = re.sub(r"(\b[A-Za-z0-9]?:-?\d+[A-Z]?\b(, )?)+", "<residues> ", text)  # A:123, A:130
    text = re.sub(r"-?\d+(\.\d+)?", "<n>", text)
    return re.sub(r" +", " ", text).split(" (")[0][:160]


def summarize(structures: list[Structure], rows: dict[str, dict]) -> dict:
    """Counts per structure and per series, failures grouped by class, removals listed."""
    done = [s for s in structures if s.key in rows]
    ok = [s for s in done if rows[s.key]["ok"] == "1"]
    failed = [s for s in done if rows[s.key]["ok"] != "1"]
    classes = Counter(failure_class(rows[s.key]["error"]) for s in failed)
    seconds = [float(rows[s.key]["seconds"]) for s in done]
    return dict(
        structures_total=len(structures),
        structures_done=len(done),
        structures_ok=len(ok),
        series_total=sum(len(s.series) for s in structures),
        series_done=sum(len(s.series) for s in done),
        series_ok=sum(len(s.series) for s in ok),
        failure_classes=dict(classes.most_common()),
        series_failed=sorted(folder for s in failed for folder in s.series),
        failures=[dict(structure=s.key, series=s.series, error=rows[s.key]["error"]) for s in failed],
        with_removed_untypable=[
            dict(structure=s.key, series=s.series, removed=rows[s.key]["removed_untypable"])
            for s in ok
            if rows[s.key].get("removed_untypable")
        ],
        with_repaired_untypable=[
            dict(structure=s.key, series=s.series, repaired=rows[s.key]["repaired_untypable"])
            for s in ok
            if rows[s.key].get("repaired_untypable")
        ],
        seconds_median=float(np.median(seconds)) if seconds else None,
        seconds_max=max(seconds) if seconds else None,
        seconds_total=round(sum(seconds), 1),
    )


def print_table(summary: dict) -> None:
    """Human-readable summary on stdout."""
    print(
        f"structures: {summary['structures_ok']}/{summary['structures_done']} ok "
        f"({summary['structures_total']} distinct in the set)"
    )
    print(f"series:     {summary['series_ok']}/{summary['series_done']} ok ({summary['series_total']} in the set)")
    if summary["seconds_median"] is not None:
        print(f"seconds:    median {summary['seconds_median']:.1f}, max {summary['seconds_max']:.1f}")
    for reason, count in summary["failure_classes"].items():
        print(f"  {count:4d}  {reason}")
    for item in summary["failures"]:
        print(f"  FAIL {item['structure']} ({', '.join(item['series'])}): {item['error'][:300]}")
    for item in summary["with_removed_untypable"]:
        print(f"  removed {item['structure']} ({item['series'][0]}): {item['removed']}")
    for item in summary["with_repaired_untypable"]:
        print(f"  repaired {item['structure']} ({item['series'][0]}): {item['repaired']}")


def main() -> None:
    """Prepare the structures still to do (see the module docstring), then summarise every latest row."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="prepare at most this many structures this run")
    parser.add_argument("--hours", type=float, default=None, help="start no new structure after this many hours")
    parser.add_argument("--retry-failed", action="store_true", help="re-run structures whose latest row failed")
    parser.add_argument("--redo", action="store_true", help="re-run every structure")
    parser.add_argument("--only", nargs="*", default=None, help="structure keys or series folders to run")
    parser.add_argument("--report-only", action="store_true", help="summarise rows.csv without preparing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    RDLogger.DisableLog("rdApp.warning")  # every ref_ligand.sdf is flagged 2D with 3D coordinates: noise
    os.nice(10)  # the machine's two cores are shared with a long docking benchmark
    structures = distinct_structures()
    rows = read_rows()
    todo = [s for s in structures if args.redo or s.key not in rows or (args.retry_failed and rows[s.key]["ok"] != "1")]
    if args.only is not None:
        wanted = set(args.only)
        todo = [s for s in todo if s.key in wanted or wanted & set(s.series)]
    if args.report_only:
        todo = []
    todo = todo[: args.limit] if args.limit is not None else todo
    deadline = time.time() + args.hours * 3600 if args.hours else None
    print(f"{len(structures)} distinct structures, {len(rows)} with rows, {len(todo)} to prepare", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for number, structure in enumerate(todo, start=1):
            if deadline and time.time() > deadline:
                print("time limit reached", flush=True)
                break
            row = prepare_one(structure, Path(tmp))
            append_row(row)
            rows[structure.key] = {k: str(v) for k, v in row.items()}
            status = "ok" if row["ok"] else row["error"][:200]
            print(
                f"[{number}/{len(todo)}] {structure.key} {structure.series[0]} {row['seconds']:.1f}s {status}",
                flush=True,
            )
    summary = summarize(structures, rows)
    print_table(summary)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(
        json.dumps(
            dict(
                benchmark="receptor_prep",
                data="shared/data/unifep (protein.pdb.gz + ref_ligand.sdf box, padding 8 A)",
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
