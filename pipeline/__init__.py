"""vscreen: structure-based virtual screening.

Dock a compound library into a protein pocket, refine the best poses with short
molecular dynamics, describe each complex by its protein-ligand interactions and
rank the library. Each stage is a module of this package and a subcommand of the
``vscreen`` console script; the Snakefile chains the subcommands.

The stage entry points a Python user calls are importable from here, in workflow order:
``load_config``, ``split_library``, ``prepare_receptor``, ``prepare_chunk``,
``dock_chunk`` / ``pose_chunk_tethered`` / ``score_chunk``, ``featurize_docked_chunk``,
``refine_batch``, ``score_library``, ``rank_run`` and ``build_report``. They are
imported on first use (``import pipeline`` stays fast: most stages pull in RDKit,
OpenMM or torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> module that defines it (imported lazily by :func:`__getattr__`).
_ENTRY_POINTS = {
    "load_config": "pipeline.config",
    "split_library": "pipeline.library",
    "prepare_receptor": "pipeline.receptor",
    "prepare_chunk": "pipeline.ligands",
    "dock_chunk": "pipeline.docking",
    "score_chunk": "pipeline.docking",
    "pose_chunk_tethered": "pipeline.tethered",
    "featurize_docked_chunk": "pipeline.featurize",
    "refine_batch": "pipeline.refine",
    "score_library": "pipeline.scoring.score",
    "rank_run": "pipeline.ranking",
    "build_report": "pipeline.report",
}

__all__ = ["__version__", *_ENTRY_POINTS]


def __getattr__(name: str) -> Any:
    """The stage entry point ``name`` (see the module docstring), imported on first access."""
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ENTRY_POINTS))
