"""Durable result rows for resumable benchmarks: appended to a CSV and flushed as each one finishes."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def append_csv_rows(path: Path, fieldnames: Sequence[str], rows: Iterable[dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header first when the file is new or empty), then fsync.

    A kill loses at most the rows of the call in progress; a rerun reads what is there and goes on.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        if new:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
