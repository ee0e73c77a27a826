"""Scoring stage: ensemble scores for every complex of some graph files, as Dask tasks.

One task per graph file: the worker reads the file, checks that its schema is the
one the model was trained on, and scores its graphs in consecutive batches of
``batch_size``. The model is loaded once per worker process (cached by folder and
the files' modification times, so a retrained model is picked up) and goes to the
GPU when the worker has one. Batches depend only on the file and ``batch_size``,
never on which worker runs them, and results are sorted by ``id, pose, source``,
so one worker and many give the same table.

Output columns (:data:`pipeline.scoring.ensemble.SCORE_COLUMNS`): ``id``, ``pose``,
``source``, ``gnn_score`` (higher = more likely active), ``gnn_spread`` (std over
members), and per head ``affinity``/``affinity_spread`` (regression head, assay
units) and ``p_active``/``p_active_spread`` (classification head); a head the
model was not trained for is NaN.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from ..graphs import GraphSchema, load_graphs
from ..io import write_parquet_atomic
from ..progress import progress
from .ensemble import SCORE_COLUMNS, Ensemble, check_schema, load_ensemble, read_card, resolve_model_dir
from . import runtime
from .runtime import resolve_device, torch_threads

log = logging.getLogger(__name__)

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class ScoreSettings:
    """Settings of the scoring stage (config section ``score``).

    Attributes
    ----------
    model
        Model name under ``models_dir`` or a model folder.
    models_dir
        Where model names are looked up.
    batch_size
        Graphs per forward pass.
    device
        ``auto`` (CUDA when the worker has it), ``cpu`` or ``cuda``.
    precision
        ``float32`` or ``float64`` (slower on CPU; for bit-level comparisons).
    threads
        PyTorch threads when scoring in-process (``None``: PyTorch's default); Dask
        workers use ``dask.threads_per_worker``.
    tune_malloc
        Raise glibc's mmap/trim thresholds in the scoring processes
        (:func:`pipeline.scoring.runtime.tune_malloc`; 3-4x faster in Dask workers).
    """

    model: str = "default"
    models_dir: str = "models"
    batch_size: int = 256
    device: str = "auto"
    precision: str = "float32"
    threads: int | None = None
    tune_malloc: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"score batch_size must be at least 1, got {self.batch_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"score device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"score precision must be one of {list(PRECISIONS)}, got {self.precision!r}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "ScoreSettings":
        """Build from a config section (missing keys take the defaults)."""
        section = dict(section or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise ValueError(f"unknown score setting {unknown[0]!r}; known: {sorted(names)}")
        return cls(**section)


# --------------------------------------------------------------------------- per-worker model cache

_CACHE: "OrderedDict[tuple, Ensemble]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2
_LOADS = {"count": 0}


def _model_key(folder: Path) -> tuple:
    files = [folder / "card.json", *sorted(folder.glob("model_*.pt"))]
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())


def cached_ensemble(model_dir: str | os.PathLike, device: str = "auto", precision: str = "float32") -> Ensemble:
    """The ensemble of ``model_dir``, loaded once per process (and re-loaded when its files change)."""
    folder = Path(model_dir).resolve()
    device = resolve_device(device)
    key = (str(folder), _model_key(folder), device, precision)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        ensemble = load_ensemble(folder, expect_schema=None, device=device).to(device, PRECISIONS[precision])
        _LOADS["count"] += 1
        _CACHE[key] = ensemble
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return ensemble


def cache_info() -> dict[str, Any]:
    """Models loaded by this process so far and those held now (tests check one load per worker)."""
    return dict(loads=_LOADS["count"], cached=[k[0] for k in _CACHE], pid=os.getpid())


# --------------------------------------------------------------------------- tasks


def score_graph_file(graph_file: str | os.PathLike, model_dir: str | os.PathLike, batch_size: int = 256,
                     device: str = "auto", precision: str = "float32", malloc: bool = True) -> pd.DataFrame:
    """Score every graph of one file (a Dask task; also usable in-process).

    ``malloc``: call :func:`~pipeline.scoring.runtime.tune_malloc` in this process first.

    Raises
    ------
    pipeline.graphs.GraphError
        When the file's schema is not the model's (featurize again with the model's settings).
    """
    if malloc:
        runtime.tune_malloc()
    ensemble = cached_ensemble(model_dir, device, precision)
    _, graphs = load_graphs(graph_file, expect=ensemble.schema)
    return ensemble.score(graphs, batch_size)


def _empty() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in SCORE_COLUMNS})
    return df.astype({"id": str, "pose": "int64", "source": str})


def score_graph_files(graph_files: Sequence[str | os.PathLike], model_dir: str | os.PathLike, client=None,
                      batch_size: int = 256, device: str = "auto", precision: str = "float32",
                      expect_schema: GraphSchema | None = None, models_dir: str | os.PathLike | None = None,
                      threads: int | None = None, tune_malloc: bool = True) -> pd.DataFrame:
    """Score the complexes of graph files with an ensemble.

    Parameters
    ----------
    graph_files
        ``.pt`` files from featurization (:func:`pipeline.graphs.save_graphs`).
    model_dir
        Model folder, or a model name under ``models_dir``.
    client
        A ``distributed.Client`` (:func:`pipeline.dask_cluster.make_client`): one task per
        file. ``None``: score in this process.
    batch_size
        Graphs per forward pass.
    device
        ``auto`` (GPU where the worker has one), ``cpu`` or ``cuda``.
    precision
        ``float32`` or ``float64``.
    expect_schema
        The schema this pipeline produces: refuse a model trained on another one
        before any work is sent out. ``None``: only the graph files are checked
        against the model.
    models_dir
        Where model names are looked up (default ``models/``).
    threads
        PyTorch threads for in-process scoring (``None``: unchanged); ignored with a client.
    tune_malloc
        Raise glibc's mmap/trim thresholds in the processes that score
        (:func:`pipeline.scoring.runtime.tune_malloc`); without it a Dask worker
        scores 3-4x slower than a plain process.

    Returns
    -------
    pandas.DataFrame
        :data:`SCORE_COLUMNS`, one row per graph, sorted by ``id, pose, source``.

    Raises
    ------
    pipeline.scoring.ensemble.ModelError
        Missing or unreadable model, or one trained on another schema.
    pipeline.graphs.GraphError
        A graph file of another schema than the model's.
    """
    folder = resolve_model_dir(model_dir, models_dir).resolve()
    card = read_card(folder)
    if expect_schema is not None:
        check_schema(card, expect_schema, card.get("name") or folder.name, folder)
    files = [str(Path(f).resolve()) for f in graph_files]
    if client is None:
        with torch_threads(threads):
            frames = [score_graph_file(f, folder, batch_size, device, precision, tune_malloc)
                      for f in progress(files, total=len(files), desc="score", unit="file")]
    else:
        frames = _run_on_client(client, files, folder, batch_size, device, precision, tune_malloc)
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty()
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["id", "pose", "source"], kind="mergesort").reset_index(drop=True)[SCORE_COLUMNS]


def _run_on_client(client, files: list[str], folder: Path, batch_size: int, device: str, precision: str,
                   malloc: bool) -> list:
    from distributed import as_completed

    futures = [client.submit(score_graph_file, f, str(folder), batch_size, device, precision, malloc, pure=False)
               for f in files]
    frames = []
    try:
        for future in progress(as_completed(futures), total=len(futures), desc="score", unit="file"):
            frames.append(future.result())
    finally:
        client.cancel(futures)
    return frames


def write_scores(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a score table as Parquet atomically."""
    write_parquet_atomic(df, path)
