"""Durable results of resumable benchmarks: CSV rows and gzip members, appended under a lock and flushed.

The campaigns (``pose_unifep.py``, ``pose_dude.py``) append one row and one gzip member of
poses per finished item; a kill loses at most the item in progress.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gzip
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b\x08"


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


@contextlib.contextmanager
def locked(path: Path, mode: str) -> Iterator:
    """``path`` opened in ``mode`` under an exclusive lock (shards append to the same files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield handle


def append_gzip(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` as one complete gzip member, under a lock, then fsync.

    A gzip file is a sequence of members, and readers (``gzip.open``, ``zcat``) decompress
    them one after the other, so appending a member is appending text. ``mtime=0`` keeps the
    bytes a function of the text alone.
    """
    with locked(path, "ab") as handle:
        handle.write(gzip.compress(text.encode(), mtime=0))
        handle.flush()
        os.fsync(handle.fileno())


def gzip_members(data: bytes) -> tuple[list[bytes], int, int]:
    """Decompress a concatenation of gzip members, skipping damaged ones.

    Returns
    -------
    (members, end, damaged)
        The text of every complete member, the byte offset just after the last complete one,
        and how many damaged stretches were skipped. A member cut short by a kill of the
        writer is damaged; if another member was appended after it, reading resumes at the
        next gzip header.
    """
    members, pos, end, damaged = [], 0, 0, 0
    view = memoryview(data)
    while pos < len(data):
        inflate = zlib.decompressobj(wbits=31)  # 31: one gzip member (header and trailer checked)
        try:
            text = inflate.decompress(view[pos:])
            complete = inflate.eof
        except zlib.error:
            complete = False
        if complete:
            members.append(text)
            pos = end = len(data) - len(inflate.unused_data)
            continue
        damaged += 1
        following = data.find(GZIP_MAGIC, pos + 1)
        if following < 0:
            break
        pos = following
    return members, end, damaged


def repair_gzip_tail(path: Path) -> int:
    """Cut a member left incomplete at the end of ``path`` (a writer killed mid-append); bytes removed.

    Under the writers' lock, so it never cuts a member another shard is writing. Run before
    appending: a member appended after a cut one would be read only by a tolerant reader.
    """
    if not path.is_file():
        return 0
    with locked(path, "r+b") as handle:
        data = handle.read()
        _, end, _ = gzip_members(data)
        if end == len(data):
            return 0
        handle.truncate(end)
        handle.flush()
        os.fsync(handle.fileno())
        return len(data) - end
