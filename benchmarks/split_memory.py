"""Library splitting at scale: peak memory and time of ``vscreen split`` on a million SMILES.

Generates a ``.smi`` file of ``--lines`` rows (drug-like SMILES assembled from fragments,
ZINC-style ids, a few empty lines and duplicate ids so the failure path is exercised too)
under ``benchmarks/.cache/`` (git-ignored, kept for reruns), then runs ``vscreen split`` on
it once per ``--chunk-sizes`` value, each in a child process. The peak resident memory is
that child's own high-water mark (``VmHWM``), the time its wall-clock time (and its CPU time
from ``os.wait4``, which other jobs on the machine disturb less). Checks that
every row is accounted for (chunks + failures) and that the chunk count is
``ceil(accepted / chunk_size)``, prints a table and writes
``benchmarks/results/split_memory.json``. The limits checked are those of the scale-out
issue: under 500 MB and under 60 s for a million lines.

Run: ``python benchmarks/split_memory.py [--lines 1000000] [--chunk-sizes 25 1000]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache" / "split_memory"
LIMIT_MB, LIMIT_S = 500.0, 60.0
FRAGMENTS = [
    "c1ccccc1",
    "c1ccncc1",
    "C(=O)N",
    "C(=O)O",
    "CCO",
    "N1CCNCC1",
    "C1CCOCC1",
    "c1ccc2[nH]ccc2c1",
    "S(=O)(=O)N",
    "C(F)(F)F",
    "Cl",
    "OC",
    "C#N",
    "CC(C)",
    "c1cnoc1",
    "N(C)C",
]


def generate_library(path: Path, lines: int, seed: int = 7) -> dict:
    """Write ``lines`` SMILES rows to ``path`` (reused when it exists with that many lines)."""
    stamp = path.with_suffix(".json")
    if path.exists() and stamp.exists() and json.loads(stamp.read_text()).get("lines") == lines:
        return json.loads(stamp.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    empty = duplicates = 0
    with open(path, "w") as handle:
        handle.write("smiles id\n")
        for i in range(1, lines):
            roll = rng.random()
            if roll < 1e-4:
                handle.write("\n")
                empty += 1
                continue
            cid = i - 1 if roll < 2e-4 else i  # now and then the id of the row before
            duplicates += cid != i
            smiles = "C" + "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(2, 6)))
            handle.write(f"{smiles} ZINC{cid:012d}\n")
    info = {"lines": lines, "rows": lines - 1, "empty": empty, "duplicates": duplicates, "bytes": path.stat().st_size}
    stamp.write_text(json.dumps(info))
    return info


# `vscreen split` as a child, reporting its own peak RSS: VmHWM of the process after exec. (The
# child's ru_maxrss would not do: Linux carries the high-water mark of the forked image, the
# caller's memory, across exec.)
CHILD = """import sys
from pipeline.cli import main
code = main(sys.argv[2:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
open(sys.argv[1], "w").write(peak)
sys.exit(code)
"""


def run_split(library: Path, chunk_size: int, out: Path) -> dict:
    """``vscreen split`` in a child process: its wall time, CPU time and own peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        str(out / "peak_kb"),
        "split",
        str(library),
        "--out-dir",
        str(out / "chunks"),
        "--failures",
        str(out / "failures.csv"),
        "--chunk-size",
        str(chunk_size),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"vscreen split failed:\n{stderr.decode()[-2000:]}")
    peak_kb = int((out / "peak_kb").read_text())
    manifest = json.loads((out / "chunks" / "manifest.json").read_text())
    files = len(list((out / "chunks").glob("chunk_*.parquet")))
    with open(out / "failures.csv") as handle:
        failures = sum(1 for _ in handle) - 1
    shutil.rmtree(out)
    return {
        "chunk_size": chunk_size,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rows": manifest["rows"],
        "accepted": manifest["accepted"],
        "failed": failures,
        "chunks": files,
        "chunks_expected": math.ceil(manifest["accepted"] / chunk_size),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[25, 1000])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "split_memory.json")
    args = parser.parse_args(argv)

    library = CACHE / f"library_{args.lines}.smi"
    t0 = time.perf_counter()
    info = generate_library(library, args.lines)
    print(
        f"library: {library.relative_to(REPO)}, {info['lines']:,} lines, {info['bytes'] / 1e6:.1f} MB "
        f"({time.perf_counter() - t0:.1f} s to make or reuse)"
    )
    load = os.getloadavg()[0]
    results = [run_split(library, size, CACHE / "out") for size in args.chunk_sizes]

    print(
        f"\n{'chunk size':>10} {'chunks':>8} {'rows':>9} {'rejected':>8} {'time s':>7} {'CPU s':>6} {'peak MB':>8}  within limits"
    )
    for r in results:
        r["within_limits"] = r["seconds"] < LIMIT_S and r["peak_rss_mb"] < LIMIT_MB
        r["accounted"] = (
            r["accepted"] + r["failed"] == r["rows"] == info["rows"] and r["chunks"] == r["chunks_expected"]
        )
        print(
            f"{r['chunk_size']:>10} {r['chunks']:>8,} {r['rows']:>9,} {r['failed']:>8} {r['seconds']:>7.1f} {r['cpu_seconds']:>6.1f} "
            f"{r['peak_rss_mb']:>8.1f}  {'yes' if r['within_limits'] else 'NO'}"
            f"{'' if r['accounted'] else '  (rows or chunks do not add up!)'}"
        )
    report = {
        "benchmark": "split_memory",
        "library": info,
        "limits": {"peak_rss_mb": LIMIT_MB, "seconds": LIMIT_S},
        "results": results,
        "load_average_1min_at_start": round(load, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0 if all(r["accounted"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
