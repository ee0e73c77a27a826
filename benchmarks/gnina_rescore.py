"""GNINA's CNN rescoring poses in place: a comparison column for the scorer benchmarks.

GNINA (McNutt et al., *J. Cheminform.* 2021, 13, 43) rescoring a pose with its CNN gives a
pose probability (``CNNscore``), a predicted affinity (``CNNaffinity``, in pK units) and,
for an ensemble, the variance of the members' affinities (``CNNvariance``). This module
computes those three numbers for poses we already have (the Uni-FEP tethered poses of
``benchmarks/pose_unifep.py``, the DUD-E poses of ``benchmarks/pose_dude.py``) so that
``benchmarks/scoring_cv.py`` and ``benchmarks/scoring_loto.py`` can report them next to the
pair scorer and Vina on the same poses. Nothing is minimized or docked: each pose is scored
as it lies.

How it runs
-----------
The CNN is the PyTorch port ``gninatorch`` (PyPI, 0.0.2), whose wheel ships GNINA's trained
weights converted from Caffe, and it grids with ``molgrid`` (libmolgrid's wheel, with its own
OpenBabel inside for reading PDB/SDF and typing atoms). ``molgrid`` is compiled against
numpy 1, while this project runs numpy 2, so both live in a separate virtual environment
that :func:`ensure_env` makes once under the git-ignored ``benchmarks/.cache/gnina-venv``
(``torch==2.13.0`` first, the CPU wheel this machine's index serves, so that ``gninatorch``'s
bare ``torch`` requirement does not pull a CUDA build; then ``numpy<2``, ``molgrid``,
``gninatorch``). The scoring itself is ``benchmarks/gnina_worker.py``, run by that
environment's interpreter in a subprocess, one receptor per call with all its poses batched,
so OpenBabel's reading and typing of the receptor and the loading of the five models are
paid once per receptor. The model is GNINA's default ensemble as ``gninatorch`` defines it
(GNINA 1.0's ``--cnn default``: ``dense``, ``general_default2018_3``, ``dense_3``,
``crossdock_default2018``, ``redock_default2018_2``; grid 23.5 A at 0.5 A, centred on the ligand, no rotations).

From Python (what the benchmark scripts call)::

    import gnina_rescore
    if gnina_rescore.ensure_env() is not None:           # builds it on first use
        scores = gnina_rescore.rescore(receptor_pdb, poses_sdf, cache_csv)
        # one row per SD record: index, name, CNNscore, CNNaffinity, CNNvariance

From the shell (builds the environment on first use, too)::

    python benchmarks/gnina_rescore.py RECEPTOR.pdb[.gz] POSES.sdf[.gz] [--out CSV] [--against exp_dG]

prints the scores, the seconds per pose and, with ``--against``, Kendall's tau of
``CNNaffinity`` with minus that SD property over the latest pose of each ligand. When the
environment cannot be built (no package index, a wheel missing for this Python),
:func:`ensure_env` returns ``None`` with the reason printed, :func:`rescore` raises
:class:`GninaUnavailable`, and the column is simply left out of the tables.

Cost: about 0.3 CPU-seconds per pose in batches of 32 (this project's AMD EPYC cores, all five models),
plus a few seconds per receptor for loading the models and typing the receptor; about 1.3 GB
of memory at that batch size.

Licences
--------
* ``gninatorch`` (Rocco Meli, github.com/RMeli/gnina-torch): MIT licence (its wheel's
  ``LICENSE``) for its code. The weights its wheel ships are GNINA's trained Caffe models
  converted to PyTorch state dicts; they are GNINA's work, not gninatorch's.
* GNINA (David Koes' group, github.com/gnina/gnina), the source of the weights: its README
  says "gnina is dual licensed under GPL and Apache", GPL because it links OpenBabel; it
  gives no separate terms for the trained models, which are distributed in its repository
  and so are taken as coming under the same dual licence.
* ``molgrid`` (libmolgrid): Apache-2.0 or GPL-2.0 (its wheel's classifiers); the wheel
  bundles OpenBabel, GPL-2.0, which is what molgrid reads and types molecules with.

None of these is vendored in, imported by, or linked into ``vscreen``: they are installed
from the package index into a separate, git-ignored environment and run as a separate
process for this benchmark only, so the GPL parts do not reach the Apache-2.0 product, and
nothing of theirs is redistributed by this repository. Scores are numbers and carry no
licence terms; where they are reported, cite Ragoza et al. 2017 (J. Chem. Inf. Model. 57,
942), Francoeur et al. 2020 (J. Chem. Inf. Model. 60, 4200) and McNutt et al. 2021
(J. Cheminform. 13, 43), as gninatorch asks.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "benchmarks" / ".cache" / "gnina-venv"
WORKER = Path(__file__).resolve().with_name("gnina_worker.py")

# Installed in this order, each its own pip call: torch pinned first, because gninatorch
# requires a bare "torch" and any other torch spec may resolve to a multi-GB CUDA build;
# numpy<2 before molgrid because molgrid's extension is built against numpy 1.
REQUIREMENTS: tuple[tuple[str, ...], ...] = (
    ("torch==2.13.0",),
    ("numpy<2",),
    ("molgrid==0.5.5",),
    ("gninatorch==0.0.2",),
)
COLUMNS = ["index", "name", "CNNscore", "CNNaffinity", "CNNvariance"]
# bump when the worker's output changes, so that cached CSVs are recomputed
WORKER_VERSION = 1
# environments whose build failed in this process, and why
_FAILED: dict[Path, str] = {}


class GninaUnavailable(RuntimeError):
    """The separate environment for gninatorch could not be built or does not work."""


def env_python(path: Path = ENV) -> Path:
    """The interpreter of the environment at ``path`` (it may not exist yet)."""
    return path / "bin" / "python"


def _clean_environ() -> dict[str, str]:
    """This process's environment without what would point the other interpreter at this venv."""
    environ = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        environ.pop(key, None)
    return environ


def _env_works(python: Path) -> str | None:
    """``None`` when ``python`` imports the worker's dependencies, else the error text."""
    check = "import numpy, torch, molgrid, gninatorch.gnina; assert numpy.__version__ < '2', numpy.__version__"
    try:
        proc = subprocess.run(
            [str(python), "-c", check], capture_output=True, text=True, timeout=600, env=_clean_environ()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]


def ensure_env(path: Path = ENV, *, quiet: bool = False) -> Path | None:
    """Make (once) the separate virtual environment with ``gninatorch`` and ``molgrid``.

    Parameters
    ----------
    path : Path
        Where the environment lives; the default is git-ignored.
    quiet : bool
        Do not print pip's progress (failures are printed either way).

    Returns
    -------
    Path or None
        The environment's Python interpreter, or ``None`` (with the reason printed) when it
        cannot be built or does not import the packages.

    Notes
    -----
    A finished environment is marked by ``path/.complete``; one without the mark (an
    interrupted install) is removed and built again. Building needs the package index;
    using a built one does not.
    """
    path = Path(path)
    python = env_python(path)
    if (path / ".complete").is_file() and python.exists():
        return python
    if path in _FAILED:
        # one failed build per process is enough: a benchmark asks once per series
        print(f"gnina_rescore: no gninatorch environment ({_FAILED[path]})", file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # two benchmark processes may ask at once; the second waits and then finds it built
    with open(path.parent / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / ".complete").is_file() and python.exists():
            return python
        error = _build(path, quiet)
    if error is not None:
        _FAILED[path] = error
        print(f"gnina_rescore: {error}", file=sys.stderr)
        return None
    return python


def _build(path: Path, quiet: bool) -> str | None:
    """Build the environment at ``path``; ``None`` on success, else why not."""
    python = env_python(path)
    if path.exists():
        # an install that stopped half way: start clean rather than guess what is there
        shutil.rmtree(path)
    base = shutil.which("python3") or sys.executable
    out = subprocess.DEVNULL if quiet else None
    # a PYTHONPATH into this project's venv would let pip see its numpy 2 as already installed
    environ = _clean_environ()
    try:
        subprocess.run([base, "-m", "venv", str(path)], check=True, stdout=out, env=environ)
        for spec in REQUIREMENTS:
            cmd = [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off", *spec]
            subprocess.run(cmd, check=True, stdout=out, timeout=3600, env=environ)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(path, ignore_errors=True)
        return f"cannot build the gninatorch environment at {path}: {exc}"
    error = _env_works(python)
    if error is not None:
        shutil.rmtree(path, ignore_errors=True)
        return f"the gninatorch environment at {path} does not import: {error}"
    (path / ".complete").write_text(json.dumps({"requirements": [s for spec in REQUIREMENTS for s in spec]}) + "\n")
    return None


def _digest(*paths: Path) -> str:
    """SHA-256 of the files' bytes, in order (the cache key's inputs)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _read_scores(path: Path) -> pd.DataFrame:
    """The worker's CSV, with names kept as text ("NA" is a ligand name, not a missing value)."""
    table = pd.read_csv(path, dtype={"name": str}, keep_default_na=False)
    for column in ("CNNscore", "CNNaffinity", "CNNvariance"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table["index"] = table["index"].astype(int)
    return table[COLUMNS]


def _stderr_tail(text: str, lines: int = 20) -> str:
    # the bundled OpenBabel has no data directory and warns about its crystallography table
    # (space-groups.txt, used only for CIF) on every start; that noise hides the real error
    keep = [
        line
        for line in text.splitlines()
        if line.strip()
        and "space-groups" not in line
        and "Open Babel Warning" not in line
        and set(line.strip()) != {"="}
    ]
    return "\n".join(keep[-lines:])


def rescore(
    receptor_pdb: Path,
    poses_sdf: Path,
    cache_csv: Path,
    *,
    env: Path = ENV,
    batch_size: int = 32,
    threads: int = 0,
    cnn: str = "default",
    timeout: float | None = None,
) -> pd.DataFrame:
    """GNINA CNN scores of every pose in ``poses_sdf`` against ``receptor_pdb``, cached.

    Parameters
    ----------
    receptor_pdb : Path
        The receptor, PDB (``.pdb`` or ``.pdb.gz``; any format OpenBabel reads by extension
        works), with or without hydrogens (missing ones are added, as GNINA does).
    poses_sdf : Path
        SD file of poses of ligands in that receptor, ``.sdf`` or ``.sdf.gz`` (multi-member
        gzip is fine). Every record is scored, duplicates included: the caller picks which
        pose of a ligand counts (``index`` is the record's position).
    cache_csv : Path
        Where the scores are kept. Reused, without starting the environment, while the
        receptor's and the poses' bytes, the model and the worker version are unchanged
        (the key is in ``cache_csv`` + ``.json``, with the timing of the run that made it).
    env : Path
        The gninatorch environment; built by :func:`ensure_env` when missing.
    batch_size : int
        Poses per CNN batch: 32 needs about 1.4 GB of memory and is several times faster
        per pose than 1.
    threads : int
        torch CPU threads in the worker; 0 leaves torch's default (all cores).
    cnn : str
        A gninatorch model name; ``"default"`` is GNINA's default five-model ensemble.
    timeout : float or None
        Seconds before the worker is stopped (``subprocess.TimeoutExpired``).

    Returns
    -------
    pandas.DataFrame
        One row per SD record in file order: ``index``, ``name``, ``CNNscore`` (pose
        probability, 0-1), ``CNNaffinity`` (pK, higher binds tighter), ``CNNvariance``
        (ensemble variance of the affinity). Unreadable records have NaN scores.
        ``.attrs["timing"]`` holds the worker's timing (``seconds_per_pose`` etc.) and
        ``.attrs["cached"]`` whether the scores came from the cache.

    Raises
    ------
    GninaUnavailable
        When the environment cannot be built.
    RuntimeError
        When the worker fails (its stderr is in the message).
    """
    receptor_pdb, poses_sdf, cache_csv = Path(receptor_pdb), Path(poses_sdf), Path(cache_csv)
    key = {
        "receptor": str(receptor_pdb),
        "receptor_sha256": _digest(receptor_pdb),
        "poses": str(poses_sdf),
        "poses_sha256": _digest(poses_sdf),
        "cnn": cnn,
        "worker_version": WORKER_VERSION,
    }
    key_file = cache_csv.with_name(cache_csv.name + ".json")
    if cache_csv.is_file() and key_file.is_file():
        try:
            stored = json.loads(key_file.read_text())
        except json.JSONDecodeError:
            stored = {}
        # paths may differ between checkouts; the contents are what the scores depend on
        same = all(stored.get(k) == key[k] for k in ("receptor_sha256", "poses_sha256", "cnn", "worker_version"))
        if same:
            table = _read_scores(cache_csv)
            table.attrs.update(timing=stored.get("timing"), cached=True)
            return table

    python = ensure_env(env, quiet=True)
    if python is None:
        raise GninaUnavailable(f"no gninatorch environment at {env} (see the message above)")
    cache_csv.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(python),
        str(WORKER),
        str(receptor_pdb.resolve()),
        str(poses_sdf.resolve()),
        str(cache_csv.resolve()),
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
        "--cnn",
        cnn,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_environ(), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"gnina worker failed ({proc.returncode}) on {poses_sdf}:\n{_stderr_tail(proc.stderr)}")
    timing = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            timing = json.loads(line)
            break
    key["timing"] = timing
    key_file.write_text(json.dumps(key, indent=1) + "\n")
    table = _read_scores(cache_csv)
    table.attrs.update(timing=timing, cached=False)
    return table


def _worker_module():
    """The worker as a module (stdlib-only at import), for its record splitting."""
    spec = importlib.util.spec_from_file_location("gnina_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sd_property(poses_sdf: Path, name: str) -> list[str | None]:
    """The value of SD property ``name`` of each record of ``poses_sdf`` (``None`` where absent), in order.

    The records are split by the worker's own reader, so the list lines up with the
    ``index`` of :func:`rescore`; a plain-text parse, needing neither RDKit nor the environment.
    """
    values: list[str | None] = []
    for record in _worker_module().read_records(Path(poses_sdf)):
        lines = record.splitlines()
        value = None
        for i, line in enumerate(lines[:-1]):
            if line.startswith(">") and f"<{name}>" in line:
                value = lines[i + 1].strip()
                break
        values.append(value)
    return values


def latest_per_name(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ligand name, the latest record's (the rule of the appended pose files)."""
    return table.drop_duplicates("name", keep="last").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rescore poses with GNINA's CNN (gninatorch), in place.")
    parser.add_argument("receptor", type=Path, help="receptor PDB (.pdb or .pdb.gz)")
    parser.add_argument("poses", type=Path, help="poses, SDF (.sdf or .sdf.gz)")
    parser.add_argument(
        "--out", type=Path, help="CSV of the scores (also the cache); default under benchmarks/.cache/gnina"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cnn", default="default")
    parser.add_argument(
        "--against",
        metavar="PROPERTY",
        help="an SD property in kcal/mol (e.g. exp_dG): print Kendall tau of CNNaffinity with -PROPERTY over the latest pose of each ligand",
    )
    args = parser.parse_args(argv)

    out = args.out
    if out is None:
        stem = args.poses.name.split(".")[0]
        out = ROOT / "benchmarks" / ".cache" / "gnina" / f"{stem}.{_digest(args.poses)[:12]}.csv"
    t0 = time.perf_counter()
    try:
        table = rescore(args.receptor, args.poses, out, batch_size=args.batch_size, threads=args.threads, cnn=args.cnn)
    except GninaUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    with pd.option_context("display.max_rows", 40, "display.width", 120):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", max_rows=40))
    timing = table.attrs.get("timing") or {}
    source = "cached; timing of the run that made it" if table.attrs.get("cached") else f"{wall:.1f} s wall in all"
    print(
        f"\n{len(table)} poses -> {out}\n"
        f"seconds per pose: {timing.get('seconds_per_pose')} (scoring, {timing.get('threads')} threads; "
        f"model load {timing.get('load_seconds')} s; {source})"
    )
    if args.against:
        from scipy.stats import kendalltau

        table["measured"] = pd.to_numeric(pd.Series(sd_property(args.poses, args.against)), errors="coerce")
        latest = latest_per_name(table).dropna(subset=["CNNaffinity", "measured"])
        if len(latest) >= 3:
            tau = kendalltau(latest["CNNaffinity"], -latest["measured"]).statistic
            print(f"Kendall tau(CNNaffinity, -{args.against}) over {len(latest)} ligands: {tau:.3f}")
        else:
            print(f"fewer than 3 ligands with both CNNaffinity and {args.against}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
