"""Progress reporting for long stages: tqdm bars on a terminal, periodic lines in logs."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Wrap ``items`` in a progress bar (done of total, rate, time left).

    On a terminal the bar redraws in place; when stderr goes to a log file (Snakemake
    rule logs) it prints a fresh line at most every 10 seconds, so logs stay short.
    """
    interactive = sys.stderr.isatty()
    return iter(tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr,
                     mininterval=0.5 if interactive else 10.0, ascii=not interactive, dynamic_ncols=interactive))
