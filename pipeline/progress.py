"""Progress reporting for long stages: tqdm bars on a terminal, periodic lines in logs.

Every long stage (prepare-ligands, dock, featurize, refine, score, train) wraps its
loop in :func:`progress`, so the terminal and the rule logs show compounds (or poses,
tasks) done of total, the rate and the time left, e.g.::

    dock chunk_00000:  50%|#####     | 3/6 [01:19<01:22, 27.63s/lig]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class LineWriter:
    """A text stream for tqdm that turns each redraw into one whole line.

    tqdm redraws a bar in place with carriage returns; in a log file (or in the
    terminal output of several Snakemake jobs piped through ``tee``) that makes one
    endless line. This writer drops the carriage returns and ends every update with a
    newline, so each update is one readable, ``grep``-able line.
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip("\n")
        if line.strip():
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``items`` in a progress bar (done of total, rate, time left).

    Parameters
    ----------
    items
        The iterable to walk through.
    total
        Number of items (for the percentage and the time left); ``None`` shows counts and rate only.
    desc, unit
        Label of the bar and name of one item (``lig``, ``pose``, ``task``).

    Returns
    -------
    Iterator
        The items, unchanged. On a terminal the bar redraws in place; when stderr goes
        to a pipe or a log file (Snakemake rule logs) one line is written at most every
        10 seconds, plus the first and the last.
    """
    interactive = sys.stderr.isatty()
    stream = sys.stderr if interactive else LineWriter(sys.stderr)
    return iter(
        tqdm(
            items,
            total=total,
            desc=desc,
            unit=unit,
            file=stream,
            mininterval=0.5 if interactive else 10.0,
            ascii=not interactive,
            dynamic_ncols=interactive,
        )
    )
