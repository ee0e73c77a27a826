"""Where and how PyTorch runs: device choice, intra-op threads, and the C allocator's thresholds."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

import torch


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when this process sees a GPU, else ``cpu``; other names pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` PyTorch intra-op threads (``None``: leave as is); restored afterwards.

    On a machine whose cores are busy with other jobs, one thread is often faster than
    several: OpenMP threads wait for each other at every operation.
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MALLOC_TUNED = {"done": False}


def tune_malloc(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Let glibc keep freed memory for reuse instead of returning every large tensor to the OS.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins
    glibc's mmap threshold at 128 KB: every tensor above that (a batch of pocket graphs
    makes many of 10-100 MB) is a fresh ``mmap`` whose pages fault in again, and a
    worker scored 3-4x slower than the same code in a plain process (sys time
    dominated). Raising both thresholds in the process removes that; it retains up to
    ``trim_threshold`` bytes of freed heap. Called once per process; Linux/glibc only.

    Returns
    -------
    bool
        Whether the thresholds are now set.
    """
    if _MALLOC_TUNED["done"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (
            libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
        )
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        ok = False
    _MALLOC_TUNED["done"] = ok
    return ok
