"""Where a receptor comes from: a structure file, or a dockstring target name."""

from __future__ import annotations

import logging
from pathlib import Path

from ..dockstring_targets import target_file
from ..errors import ReceptorError

log = logging.getLogger("pipeline.receptor")

STRUCTURE_SUFFIXES = frozenset({".pdb", ".pdbqt", ".ent"})

# --------------------------------------------------------------------------- sources


def resolve_receptor_source(spec: str | Path) -> Path:
    """Turn a receptor specification into an existing structure file.

    Parameters
    ----------
    spec : str or Path
        Path to a ``.pdb`` / ``.pdbqt`` file (optionally ``.gz``), or the name of a dockstring target
        (``"ACHE"``, case-insensitive), which resolves to the PDBQT bundled
        with the installed dockstring package (no network).

    Returns
    -------
    Path
        The structure file.

    Raises
    ------
    ReceptorError
        The path does not exist, has an unsupported suffix, or the name is not a dockstring target.
    """
    path = Path(spec).expanduser()
    looks_like_path = _structure_suffix(path) in STRUCTURE_SUFFIXES or len(path.parts) > 1
    if path.is_file():
        if _structure_suffix(path) not in STRUCTURE_SUFFIXES:
            raise ReceptorError(
                f"Receptor file {path} has suffix {''.join(path.suffixes)!r}; convert it to .pdb or .pdbqt "
                "(optionally gzipped, .pdb.gz)."
            )
        return path
    if looks_like_path:
        raise ReceptorError(f"Receptor file {path} does not exist; check the path (or give a dockstring target name).")
    return target_file(str(spec), "_target.pdbqt")


def _structure_suffix(path: Path) -> str:
    """Structure format suffix of a file name, looking through a ``.gz`` (``x.pdb.gz`` -> ``.pdb``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""
