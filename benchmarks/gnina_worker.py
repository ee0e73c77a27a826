"""Score poses of one receptor with GNINA's CNN; run by the gninatorch environment's Python.

This is the half of :mod:`gnina_rescore` that runs inside the separate virtual environment
(``torch``, ``numpy<2``, ``molgrid``, ``gninatorch``; no pandas, no RDKit, not ``vscreen``),
so it imports nothing but the standard library and those packages::

    benchmarks/.cache/gnina-venv/bin/python benchmarks/gnina_worker.py \\
        RECEPTOR.pdb[.gz] POSES.sdf[.gz] OUT.csv [--batch-size 32] [--threads N] [--cnn default]

It writes ``OUT.csv`` with one row per SD record, in file order: ``index`` (0-based record
number), ``name`` (the record's title line), ``CNNscore`` (the ensemble's mean pose
probability), ``CNNaffinity`` (its mean predicted affinity, pK units) and ``CNNvariance``
(the variance of the members' affinities; empty for a single model). A record that OpenBabel
cannot read gets empty scores rather than failing the rest. Its last stdout line is a JSON
object with the timings.

Each pose is scored as it lies: grid of 23.5 A at 0.5 A centred on the ligand, no random
rotation or translation, models in evaluation mode (GNINA's ``--cnn_scoring rescore``
without minimization). ``molgrid`` reads molecules through its bundled OpenBabel, which
takes only the first molecule of a file, so the records are written one per file into a
temporary folder and listed in a ``.types`` file; the receptor is read and typed once
(``cache_structs``) and reused for every pose.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def read_records(path: Path) -> list[str]:
    """The SD records of ``path`` (plain or gzip, including multi-member gzip) as text blocks."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    records, block = [], []
    for line in text.splitlines(keepends=True):
        block.append(line)
        if line.rstrip("\r\n") == "$$$$":
            records.append("".join(block))
            block = []
    if any(line.strip() for line in block):
        # a last record without the terminator (a file cut short) still counts if it parses
        records.append("".join(block) + "$$$$\n")
    return records


def stage(receptor: Path, records: list[str], folder: Path) -> tuple[Path, list[Path]]:
    """Write the receptor (decompressed) and one SDF per record under ``folder``.

    The copies also keep paths free of spaces, which the whitespace-split ``.types`` format
    cannot carry.
    """
    name = receptor.name[:-3] if receptor.suffix == ".gz" else receptor.name
    suffix = Path(name).suffix.lower() or ".pdb"
    rec = folder / f"receptor{suffix}"
    if receptor.suffix == ".gz":
        with gzip.open(receptor, "rb") as src, open(rec, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(receptor, rec)
    ligands = []
    for i, record in enumerate(records):
        lig = folder / f"pose_{i:06d}.sdf"
        lig.write_text(record, encoding="utf-8")
        ligands.append(lig)
    return rec, ligands


class Scorer:
    """GNINA's CNN (ensemble) with its grid maker, loaded once."""

    def __init__(self, cnn: str = "default", dimension: float = 23.5, resolution: float = 0.5) -> None:
        import molgrid
        import torch
        from gninatorch import gnina

        self.molgrid, self.torch = molgrid, torch
        self.model, self.ensemble = gnina.setup_gnina_model(cnn, dimension, resolution)
        self.model.eval()  # batch-norm layers of the dense models need evaluation mode
        self.grid_maker = molgrid.GridMaker(resolution=resolution, dimension=dimension)

    def _provider(self, types_file: Path, batch_size: int):
        molgrid = self.molgrid
        provider = molgrid.ExampleProvider(
            balanced=False,
            shuffle=False,
            default_batch_size=batch_size,
            iteration_scheme=molgrid.IterationScheme.SmallEpoch,
            stratify_receptor=False,
            cache_structs=True,  # the receptor is read and typed once, not once per pose
        )
        provider.populate(str(types_file))
        return provider

    def _score_provider(self, provider, n: int, batch_size: int, out: list) -> list[tuple[float, float, float]]:
        """Score the ``n`` examples of ``provider`` in batches, appending to ``out`` as they finish."""
        torch = self.torch
        dims = self.grid_maker.grid_dimensions(provider.num_types())
        left = n
        while left > 0:
            size = min(batch_size, left)
            left -= size
            batch = provider.next_batch(size)
            grids = torch.zeros((len(batch), *dims), dtype=torch.float32)
            # default centre: the ligand's (last coordinate set's) centre, as GNINA rescoring
            self.grid_maker.forward(batch, grids, random_translation=0.0, random_rotation=False)
            with torch.inference_mode():
                result = self.model(grids)
            log_pose, affinity = result[0], result[1]
            variance = result[2] if self.ensemble else torch.full_like(affinity, math.nan)
            pose = torch.exp(log_pose[:, -1])
            out.extend(zip(pose.tolist(), affinity.tolist(), variance.tolist()))
        return out

    def _write_types(self, path: Path, receptor: Path, ligands: list[Path]) -> Path:
        path.write_text("".join(f"0 {receptor} {lig}\n" for lig in ligands))
        return path

    def score(self, receptor: Path, ligands: list[Path], folder: Path, batch_size: int) -> list[tuple]:
        """CNNscore, CNNaffinity, CNNvariance per ligand file; NaNs for a file that cannot be read."""
        results: list[tuple] = []
        start = 0
        while start < len(ligands):
            rest = ligands[start:]
            provider = self._provider(self._write_types(folder / "rest.types", receptor, rest), batch_size)
            scored: list[tuple] = []
            try:
                self._score_provider(provider, len(rest), batch_size, scored)
                return results + scored
            except (RuntimeError, ValueError) as exc:
                # molgrid raises on the first file it cannot read; keep what was scored before
                # the failing batch, score that batch one pose at a time, then go on in batches
                done = len(scored)
                results.extend(scored)
                failing = rest[done : done + batch_size]
                print(
                    f"gnina_worker: a batch failed ({exc}); scoring its {len(failing)} poses one by one",
                    file=sys.stderr,
                )
                for lig in failing:
                    one = self._provider(self._write_types(folder / "one.types", receptor, [lig]), 1)
                    try:
                        results.extend(self._score_provider(one, 1, 1, []))
                    except (RuntimeError, ValueError) as exc_one:
                        print(f"gnina_worker: {lig.name}: {exc_one}", file=sys.stderr)
                        results.append((math.nan, math.nan, math.nan))
                start += done + len(failing)
        return results


def record_name(record: str) -> str:
    """The title line of an SD record."""
    return record.split("\n", 1)[0].strip()


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("receptor", type=Path)
    parser.add_argument("poses", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--cnn", default="default", help="gninatorch model name; 'default' is GNINA's ensemble")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    scorer = Scorer(args.cnn)
    t_load = time.perf_counter() - t0
    records = read_records(args.poses)
    with tempfile.TemporaryDirectory(prefix="gnina-") as tmp:
        folder = Path(tmp)
        receptor, ligands = stage(args.receptor, records, folder)
        t1 = time.perf_counter()
        scores = scorer.score(receptor, ligands, folder, max(1, args.batch_size))
        t_score = time.perf_counter() - t1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + f".{os.getpid()}.part")
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "name", "CNNscore", "CNNaffinity", "CNNvariance"])
        for i, (record, (pose, affinity, variance)) in enumerate(zip(records, scores)):
            writer.writerow([i, record_name(record), _fmt(pose), _fmt(affinity), _fmt(variance)])
    partial.replace(args.out)  # whole or absent: a killed worker leaves no half-written CSV
    timing = {
        "poses": len(records),
        "load_seconds": round(t_load, 3),
        "score_seconds": round(t_score, 3),
        "seconds_per_pose": round(t_score / len(records), 4) if records else None,
        "threads": torch.get_num_threads(),
        "cnn": args.cnn,
    }
    print(json.dumps(timing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
