"""Small input/output helpers shared by every stage.

Outputs are always written atomically: to a temporary file in the same folder,
then renamed over the final name, so a killed job never leaves a half-written
file that a restarted workflow would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

import pandas as pd

FAILURE_COLUMNS = ["id", "stage", "reason"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Use it for writers that want a file name (RDKit's SDWriter, pandas.to_parquet).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` when the block ends cleanly."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(text)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a DataFrame as Parquet atomically (index dropped)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_failures(rows: list[dict], path: str | os.PathLike) -> None:
    """Write failure rows (``id, stage, reason``) as CSV atomically; an empty list gives a header-only file."""
    df = pd.DataFrame(rows, columns=FAILURE_COLUMNS)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_failures(path: str | os.PathLike) -> pd.DataFrame:
    """Read a failures CSV written by :func:`write_failures`; ids stay strings."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)
