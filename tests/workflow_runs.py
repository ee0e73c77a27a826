"""Running the Snakemake workflow from tests: a config on the 1iep fixture, and the run command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "resources" / "fixtures" / "1iep"


def snakemake_command(workdir: Path, configfile: Path, cores: int = 2, *extra: str) -> list[str]:
    """The README's run command (which is also its resume command), for a test's work folder."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        str(cores),
        *extra,
    ]


def run_snakemake(
    workdir: Path, config: dict, *extra: str, env: dict | None = None, cores: int = 2, name: str = "config.yaml"
) -> subprocess.CompletedProcess:
    """Write ``config`` into ``workdir`` and run the workflow there to the end."""
    cfg = workdir / name
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True))
    return subprocess.run(
        snakemake_command(workdir, cfg, cores, *extra),
        capture_output=True,
        text=True,
        cwd=workdir,
        env=None if env is None else {**os.environ, **env},
        umask=0o022,  # as on a shared cluster account: every output must come out group-readable
    )


def small_screen(library: Path, run: str) -> dict:
    """A quick config on the 1iep fixture: 14 Å box on the ATP site, exhaustiveness 1."""
    return {
        "run": run,
        "seed": 42,
        "library": {"path": str(library), "chunk_size": 4},
        "receptor": {"path": str(FIXTURE / "1iep_receptorH.pdb")},
        "box": {"center": [15.19, 53.9, 16.92], "size": [14, 14, 14]},
        "docking": {"exhaustiveness": 1, "n_poses": 2},
        "dask": {"n_workers": 1},
        "refine": {"top_n": 1, "length_ps": 0.5, "frame_interval_ps": 0.25, "minimize_iterations": 50},
    }


def read_output_csv(path: Path) -> pd.DataFrame:
    """A ranking/failures CSV as the exact text values: every cell a string, one neutralizing quote removed."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return df.apply(lambda column: column.map(lambda v: v[1:] if v.startswith("'") else v))
