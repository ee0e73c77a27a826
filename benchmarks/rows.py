"""Durable result rows for resumable benchmarks: appended to a CSV and flushed as each one finishes."""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Iterable, Sequence
from pathlib import Path


def append_csv_rows(path: Path, fieldnames: Sequence[str], rows: Iterable[dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header first when the file is new or empty), then fsync.

    A kill loses at most the rows of the call in progress; a rerun reads what is there and goes on.
    Several processes may append to one file (shards of one benchmark): an exclusive lock keeps
    their rows whole and the header single.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        new = os.fstat(handle.fileno()).st_size == 0  # under the lock: no other shard wrote the header yet
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        if new:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
