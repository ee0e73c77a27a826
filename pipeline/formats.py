"""Library file formats, told from a file's name.

Its own module (no RDKit, no config) so that config validation (``docking.mode: score_only``
needs an SD file) and the library reader both use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from .errors import VscreenError

__all__ = ["LibraryError", "detect_format"]


class LibraryError(VscreenError, ValueError):
    """The library file as a whole cannot be read (missing, empty, unknown format)."""


def detect_format(path: str | Path) -> str:
    """Return ``smi``, ``csv`` or ``sdf`` from the file name (``.gz`` is looked through)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffixes, fmt in (
        ((".smi", ".smiles", ".txt", ".ism"), "smi"),
        ((".csv", ".tsv"), "csv"),
        ((".sdf", ".sd", ".mol"), "sdf"),
    ):
        if name.endswith(suffixes):
            return fmt
    raise LibraryError(
        f"cannot tell the format of library '{path}' from its name; use .smi, .csv or .sdf (optionally .gz), or set library.format"
    )
