"""Chunking scales: the number of chunks (= docking jobs) follows the library size and the chunk
size, and `vscreen split` streams a large library in a child process within the memory limit
(the million-line figures come from benchmarks/split_memory.py, which this test reuses)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from pipeline.library import list_chunks, split_library

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "split_memory.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("split_memory", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chunk_size", [1, 7, 25, 1000])
def test_chunk_count_follows_library_size_and_chunk_size(tmp_path, chunk_size):
    lines = [f"C{'C' * (i % 5)}O cpd{i}" for i in range(103)]
    (tmp_path / "lib.smi").write_text("\n".join(lines) + "\n")
    summary = split_library(tmp_path / "lib.smi", tmp_path / "chunks", tmp_path / "failures.csv", chunk_size)
    assert summary.accepted == 103 and summary.chunks == math.ceil(103 / chunk_size)
    assert list_chunks(tmp_path / "chunks") == [f"chunk_{i:05d}" for i in range(summary.chunks)]


def test_split_of_a_large_library_streams_in_bounded_memory(tmp_path):
    """200,000 generated lines through `vscreen split` in a child process: every row accounted
    for, ceil(accepted / chunk size) chunks, peak RSS under the 500 MB limit."""
    bench = _benchmark()
    library = tmp_path / "library.smi"
    info = bench.generate_library(library, 200_000)
    result = bench.run_split(library, 1000, tmp_path / "out")
    assert result["rows"] == info["rows"] and result["accepted"] + result["failed"] == info["rows"]
    assert result["failed"] == info["empty"] + info["duplicates"] > 0
    assert result["chunks"] == result["chunks_expected"] == math.ceil(result["accepted"] / 1000)
    assert result["peak_rss_mb"] < bench.LIMIT_MB, result
