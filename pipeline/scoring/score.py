"""Scoring stage: ensemble scores for every complex of some graph files, as Dask tasks.

One task per graph file: the worker reads the file, checks that its schema is the
one the model was trained on, and scores its graphs in consecutive batches of
``batch_size``. The model is loaded once per worker process (cached by folder and
the files' modification times, so a retrained model is picked up) and goes to the
GPU when the worker has one. Batches depend only on the file and ``batch_size``,
never on which worker runs them, and results are sorted by ``id, pose, source``,
so one worker and many give the same table.

Faults (see the reliability contract in DESIGN.md): :func:`score_library` scores every
readable file and reports the compounds of an unreadable one (truncated, garbage) as
failure rows - warnings for a refined batch, whose compounds stay ranked by their
docked graphs - instead of failing the library. A file of another graph schema is a
run-level error and still raises. Dask infrastructure faults are retried and, if they
persist, raise :class:`pipeline.dask_cluster.InfrastructureError`
(:func:`pipeline.dask_cluster.run_tasks`).

Two kinds of model folder are scored the same way (card key ``architecture``,
:func:`pipeline.scoring.ensemble.model_architecture`): the complex-graph GNN
(:class:`~pipeline.scoring.ensemble.Ensemble`, graph files of :mod:`pipeline.graphs`) and
the pair-term scorer (:class:`~pipeline.scoring.pair_folder.PairModel`, graph files of
:mod:`pipeline.pair_graphs`, which featurization writes when ``score.model`` is a pair
model). A graph file of the other kind than the model's is a run-level error that names
the model and the file.

Output columns (:data:`pipeline.scoring.ensemble.SCORE_COLUMNS`): ``id``, ``pose``,
``source``, ``gnn_score`` (higher = more likely active), ``gnn_spread`` (std over
members), and per head ``affinity``/``affinity_spread`` and ``p_active``/``p_active_spread``.
For the GNN, ``affinity`` is its regression head (assay units, higher = more potent) and
``p_active`` its classification head; a head the model was not trained for is NaN. For a
pair model, ``affinity`` is the ensemble-mean pair score, kcal/mol-like and LOWER = better
(Vina's score for an untrained model), ``gnn_score`` is minus that, both spreads are its
std, and ``p_active`` is the mean of ``sigmoid(logit)`` over members.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import faults
from ..config import schema_default, schema_field
from ..graphs import GraphError, GraphSchema
from ..io import FAILURE_COLUMNS, write_parquet_atomic
from ..progress import progress
from . import runtime
from .ensemble import (
    SCORE_COLUMNS,
    ModelError,
    check_schema,
    load_ensemble,
    model_architecture,
    read_card,
    resolve_model_dir,
)
from .runtime import resolve_device, torch_threads

log = logging.getLogger(__name__)

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}
#: Stage name of the failure and warning rows of this stage.
STAGE = "score"
#: Prefix of the reason of a warning row: a refined batch's graph file could not be read, so its
#: compounds lose only their refined score and stay ranked by their docked graphs.
REFINED_PREFIX = "refined batch"


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

    model: str = schema_field("score", "model")
    models_dir: str = schema_field("score", "models_dir")
    batch_size: int = schema_field("score", "batch_size")
    device: str = schema_field("score", "device")
    precision: str = schema_field("score", "precision")
    threads: int | None = None
    tune_malloc: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"score batch_size must be at least 1, got {self.batch_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"score device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"score precision must be one of {list(PRECISIONS)}, got {self.precision!r}")


# --------------------------------------------------------------------------- per-worker model cache

_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # Ensemble or PairModel
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2
_LOADS = {"count": 0}


def _model_key(folder: Path) -> tuple:
    # every weights file of either kind (model_k.pt, ensemble.pt)
    files = [folder / "card.json", *sorted(folder.glob("*.pt"))]
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())


def load_model(model_dir: str | os.PathLike, device: str = "cpu"):
    """The scorer of a model folder of either kind (an :class:`~pipeline.scoring.ensemble.Ensemble` or a
    :class:`~pipeline.scoring.pair_folder.PairModel`), by its card's ``architecture``.

    Both have ``name``, ``schema`` (the graph schema they read), ``to`` and ``score``.

    Raises
    ------
    pipeline.scoring.cards.ModelError
        Whatever :func:`~pipeline.scoring.ensemble.load_ensemble` or
        :func:`~pipeline.scoring.pair_folder.load_pair_model` refuses.
    """
    folder = Path(model_dir)
    if model_architecture(read_card(folder), folder / "card.json") == "pair":
        from .pair_folder import load_pair_model

        return load_pair_model(folder, device=device)
    return load_ensemble(folder, expect_schema=None, device=device)


def cached_ensemble(
    model_dir: str | os.PathLike,
    device: str = schema_default("score", "device"),
    precision: str = schema_default("score", "precision"),
):
    """The scorer of ``model_dir`` (:func:`load_model`), loaded once per process (re-loaded when its files change)."""
    folder = Path(model_dir).resolve()
    device = resolve_device(device)
    key = (str(folder), _model_key(folder), device, precision)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        ensemble = load_model(folder, device=device).to(device, PRECISIONS[precision])
        _LOADS["count"] += 1
        _CACHE[key] = ensemble
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return ensemble


def cache_info() -> dict[str, Any]:
    """Models loaded by this process so far and those held now (tests check one load per worker)."""
    return dict(loads=_LOADS["count"], cached=[k[0] for k in _CACHE], pid=os.getpid())


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class UnreadableGraphFile:
    """What a scoring task returns for a graph file it cannot read (so the library goes on).

    Attributes
    ----------
    path
        The file.
    reason
        The exception, one line (``RuntimeError: PytorchStreamReader failed ...``).
    """

    path: str
    reason: str


def _one_line(exc: BaseException, limit: int = 200) -> str:
    # first sentence only: torch appends paragraphs of advice (some of it, weights_only=False, unsafe here)
    lines = str(exc).strip().splitlines()
    first = (lines[0] if lines else "").split(". ", 1)[0].rstrip(".")
    text = f"{type(exc).__name__}: {first}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _score_task(
    graph_file: str, model_dir: str, batch_size: int, device: str, precision: str, malloc: bool
) -> pd.DataFrame | UnreadableGraphFile:
    """Dask task of :func:`score_library`: score every graph of one file; an unreadable file is a value.

    ``malloc``: call :func:`~pipeline.scoring.runtime.tune_malloc` in this process first.
    """
    faults.inject(STAGE, Path(graph_file).stem)  # tests' hook (no-op unless VSCREEN_FAULTS): kill this worker
    if malloc:
        runtime.tune_malloc()
    ensemble = cached_ensemble(model_dir, device, precision)
    try:
        schema, graphs = read_graph_file(graph_file)
    except Exception as exc:  # truncated, garbage, not a graph payload: the file's fault, not the run's
        return UnreadableGraphFile(str(graph_file), _one_line(exc))
    if schema != ensemble.schema:  # a readable file of another layout: the run is misconfigured
        raise schema_mismatch(graph_file, schema, ensemble, model_dir)
    return ensemble.score(graphs, batch_size)


def read_graph_file(path: str | os.PathLike) -> tuple[Any, list]:
    """A graph file of either kind: ``(schema, graphs)``, the schema a :class:`GraphSchema` or a pair-graph schema.

    The schema's version says which (:mod:`pipeline.pair_graphs` files have ``vscreen-pairgraph/...``);
    read with ``torch.load(weights_only=True)``, as :func:`pipeline.graphs.load_graphs` does.
    """
    from torch_geometric.data import Data

    from ..pair_graphs import SCHEMA_VERSION as PAIR_VERSION
    from ..pair_graphs import PairGraphSchema

    payload = torch.load(path, weights_only=True)
    schema_dict = payload["schema"]
    pair = str(schema_dict.get("version", "")).split("/")[0] == PAIR_VERSION.split("/")[0]
    schema = (PairGraphSchema if pair else GraphSchema).from_dict(schema_dict)
    return schema, [Data(**graph) for graph in payload["graphs"]]


def _graph_kind(schema: Any) -> str:
    return "complex" if isinstance(schema, GraphSchema) else "pair"


def schema_mismatch(graph_file: str | os.PathLike, schema: Any, model: Any, model_dir: str | os.PathLike) -> GraphError:
    """The run-level error for a graph file whose schema is not the model's; names the file and the model."""
    kind, wanted = _graph_kind(schema), _graph_kind(model.schema)
    if kind != wanted:
        return GraphError(
            f"graph file '{graph_file}' holds {kind} graphs (schema {schema.version}) but model "
            f"'{model.name}' ({model_dir}) is a {wanted}-graph model (schema {model.schema.version}); "
            f"the run was featurized for another model: featurize again with score.model set to "
            f"'{model.name}' (featurization writes the graphs of the configured model), or score with "
            "the model it was featurized for"
        )
    return GraphError(
        f"graph file '{graph_file}' has schema {schema.version} with different features than "
        f"the model '{model.name}' ({model.schema.version}, {model_dir}); featurize again with the scorer's settings"
    )


@dataclass(frozen=True)
class ScoreResult:
    """Scores of a library and the compounds that could not be scored (:func:`score_library`).

    Attributes
    ----------
    table
        :data:`SCORE_COLUMNS`, one row per graph of the readable files, sorted by ``id, pose, source``.
    failures
        ``id, stage, reason`` rows (stage ``score``) for the compounds of unreadable
        graph files of docked chunks: reason ``graph file graphs/chunk_00002.pt cannot be
        read: <error>``.
    warnings
        The same for unreadable refined-batch files, reason prefixed
        :data:`REFINED_PREFIX` (``refined batch batch_00001: graph file graphs/batch_00001.pt
        cannot be read: <error>; ranked by its docked pose``): those compounds keep their docked score.
    unreadable
        Every unreadable file (as given) and its error, including files whose ids were not known.
    """

    table: pd.DataFrame
    failures: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)

    def rows(self) -> pd.DataFrame:
        """Failure rows, then warning rows, as one ``id, stage, reason`` table (``scores.failures.csv``)."""
        return pd.DataFrame(self.failures + self.warnings, columns=FAILURE_COLUMNS)


def _short(path: Path) -> str:
    # the run-relative form (graphs/chunk_00002.pt) a user finds in the run folder
    return f"{path.parent.name}/{path.name}"


def _unreadable_rows(path: Path, reason: str, ids: Sequence[str], refined: bool) -> list[dict]:
    text = f"graph file {_short(path)} cannot be read: {reason}"
    if refined:
        text = f"{REFINED_PREFIX} {path.stem}: {text}; ranked by its docked pose"
    log.warning("%s (%d compounds)", text, len(ids))
    return [dict(id=str(cid), stage=STAGE, reason=text) for cid in sorted(set(map(str, ids)))]


def _empty() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in SCORE_COLUMNS})
    return df.astype({"id": str, "pose": "int64", "source": str})


def score_library(
    graph_files: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    client=None,
    *,
    ids: Mapping[str | os.PathLike, Sequence[str]] | None = None,
    refined: Collection[str | os.PathLike] = (),
    batch_size: int = schema_default("score", "batch_size"),
    device: str = schema_default("score", "device"),
    precision: str = schema_default("score", "precision"),
    expect_schema: Any = None,
    models_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    tune_malloc: bool = True,
    retries: int | None = None,
) -> ScoreResult:
    """Score the complexes of graph files with an ensemble; an unreadable file costs only its compounds.

    Parameters
    ----------
    graph_files
        ``.pt`` files from featurization (:func:`pipeline.graphs.save_graphs`, or
        :func:`pipeline.pair_graphs.save_pair_graphs` for a pair model).
    model_dir
        Model folder, or a model name under ``models_dir``.
    client
        A ``distributed.Client`` (:func:`pipeline.dask_cluster.make_client`): one task per
        file. ``None``: score in this process.
    ids
        For each graph file, the ids of the compounds it holds (the caller knows them
        from the stage that wrote it, :class:`RunGraphIds`): a corrupt file cannot say.
        Looked up only for unreadable files, whose failure (or warning) rows they become;
        a file missing here is only logged and listed in :attr:`ScoreResult.unreadable`.
    refined
        Graph files of refined batches: their compounds are also scored by their docked
        graphs, so an unreadable one gives warning rows, not failures.
    batch_size, device, precision, expect_schema, models_dir, threads, tune_malloc
        As in :func:`score_graph_files`.
    retries
        Resubmissions of a task after Dask infrastructure faults (default
        :data:`pipeline.dask_cluster.TASK_RETRIES`).

    Returns
    -------
    ScoreResult

    Raises
    ------
    pipeline.scoring.cards.ModelError
        Missing or unreadable model, or one trained on another schema.
    pipeline.graphs.GraphError
        A readable graph file of another schema than the model's, or of the other kind of
        graph (a run featurized for another model): a run-level mistake; the message names
        the file and the model.
    pipeline.dask_cluster.InfrastructureError
        A Dask fault (lost worker or scheduler, cancelled task) that persisted through the retries.
    """
    from ..dask_cluster import TASK_RETRIES

    folder = resolve_model_dir(model_dir, models_dir).resolve()
    card = read_card(folder)
    name = card.get("name") or folder.name
    if model_architecture(card, folder / "card.json") == "pair":
        from .pair_folder import pair_schema_of_card

        # refuse another folder format or pair-schema version before any work is sent out
        trained = pair_schema_of_card(card, name, folder)
        if expect_schema is not None and _graph_kind(expect_schema) == "pair" and trained != expect_schema:
            raise ModelError(
                f"model '{name}' reads pair graphs with other features than expected ({expect_schema.version}); "
                f"featurize with the model's schema (model folder '{folder}')"
            )
    elif expect_schema is not None and _graph_kind(expect_schema) == "complex":
        check_schema(card, expect_schema, name, folder)
    given = [Path(f) for f in graph_files]
    files = [str(f.resolve()) for f in given]
    args = [(f, str(folder), batch_size, device, precision, tune_malloc) for f in files]
    results: list = [None] * len(files)
    if client is None:
        with torch_threads(threads):
            for i in progress(range(len(files)), total=len(files), desc="score", unit="file"):
                results[i] = _score_task(*args[i])
    else:
        from ..dask_cluster import run_tasks

        done = run_tasks(
            client,
            _score_task,
            args,
            names=[_short(f) for f in given],
            retries=TASK_RETRIES if retries is None else retries,
            what="score",
        )
        for i, result in progress(done, total=len(files), desc="score", unit="file"):
            results[i] = result
    ids = ids or {}
    key_of = {str(Path(f).resolve()): f for f in ids}  # keys only: the ids are looked up for unreadable files
    optional = {str(Path(f).resolve()) for f in refined}
    failures, warnings, unreadable, frames = [], [], {}, []
    for path, file, result in zip(given, files, results):
        if isinstance(result, UnreadableGraphFile):
            unreadable[str(path)] = result.reason
            try:
                held = list(ids[key_of[file]])
            except KeyError as exc:
                log.error(
                    "graph file %s cannot be read (%s), and which compounds it held is not known: %s",
                    path,
                    result.reason,
                    exc,
                )
                continue
            rows = _unreadable_rows(path, result.reason, held, file in optional)
            (warnings if file in optional else failures).extend(rows)
        elif len(result):
            frames.append(result)
    if frames:
        df = pd.concat(frames, ignore_index=True)
        table = df.sort_values(["id", "pose", "source"], kind="mergesort").reset_index(drop=True)[SCORE_COLUMNS]
    else:
        table = _empty()
    return ScoreResult(table, failures, warnings, unreadable)


def score_graph_files(
    graph_files: Sequence[str | os.PathLike],
    model_dir: str | os.PathLike,
    client=None,
    batch_size: int = schema_default("score", "batch_size"),
    device: str = schema_default("score", "device"),
    precision: str = schema_default("score", "precision"),
    expect_schema: Any = None,
    models_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    tune_malloc: bool = True,
) -> pd.DataFrame:
    """Score the complexes of graph files with an ensemble, every file required.

    The strict form of :func:`score_library` for callers that only want the table
    (benchmarks, tests): an unreadable file raises instead of becoming failure rows,
    since a table alone cannot say which compounds are missing.

    Parameters
    ----------
    graph_files
        ``.pt`` files from featurization (:func:`pipeline.graphs.save_graphs`, or
        :func:`pipeline.pair_graphs.save_pair_graphs` for a pair model).
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
        The schema this pipeline produces for a model of that kind (a
        :class:`~pipeline.graphs.GraphSchema` for the GNN, a pair-graph schema for a pair
        model): refuse a model trained on another one before any work is sent out. A model
        of the other kind is not compared with it (featurization builds a pair model's
        graphs with the model's own schema); a pair model's folder format and schema
        version are always checked. ``None``: only the graph files are checked against the model.
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
    pipeline.scoring.cards.ModelError
        Missing or unreadable model, or one trained on another schema.
    pipeline.graphs.GraphError
        A graph file of another schema than the model's, or one that cannot be read.
    pipeline.dask_cluster.InfrastructureError
        A Dask fault that persisted through the retries.
    """
    result = score_library(
        graph_files,
        model_dir,
        client,
        batch_size=batch_size,
        device=device,
        precision=precision,
        expect_schema=expect_schema,
        models_dir=models_dir,
        threads=threads,
        tune_malloc=tune_malloc,
    )
    if result.unreadable:
        listing = "; ".join(f"'{f}': {why}" for f, why in result.unreadable.items())
        raise GraphError(f"graph files cannot be read: {listing}; featurize them again")
    return result.table


class RunGraphIds(Mapping):
    """For each graph file of a run, the ids of the compounds it holds graphs of (read on demand).

    What :func:`score_library` reports when a file turns out unreadable, so only those
    files' tables are read. The ids come from the feature table written with the graph
    file (same poses); when that is unreadable too, from the docked chunk's (or refined
    batch's) pose table, less the compounds featurization reported as failed.

    Parameters
    ----------
    layout
        The run's :class:`pipeline.layout.RunLayout`.
    """

    def __init__(self, layout) -> None:
        self.layout = layout
        chunks, batches = layout.chunks(), layout.batches()
        poses = [layout.docked_table(c) for c in chunks] + [layout.refined_table(b) for b in batches]
        self._names = {layout.graph_file(n): (n, table) for n, table in zip(chunks + batches, poses)}

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, graph_file: str | os.PathLike) -> list[str]:
        """Sorted unique ids; ``KeyError`` for a file of another run or when no table says."""
        from ..io import read_failures

        name, poses = self._names[Path(graph_file)]
        features = self.layout.feature_table(name)
        try:
            return sorted(set(pd.read_parquet(features, columns=["id"])["id"].astype(str)))
        except Exception as exc:  # any unreadable table: fall back to the stage before
            log.warning("feature table %s cannot be read (%s); taking the ids of %s", features, _one_line(exc), poses)
        try:
            ids = set(pd.read_parquet(poses, columns=["id"])["id"].astype(str))
            failed = self.layout.feature_failures(name)
            if failed.exists():
                ids -= set(read_failures(failed)["id"])
        except Exception as exc:
            raise KeyError(f"ids of graph file {graph_file} are not known: {_one_line(exc)}") from exc
        return sorted(ids)


def graph_file_ids(layout) -> RunGraphIds:
    """The ``ids`` argument of :func:`score_library` for a run (:class:`RunGraphIds`)."""
    return RunGraphIds(layout)


def write_pocket_record(layout, model_dir: str | os.PathLike, models_dir: str | os.PathLike | None = None):
    """Measure the run's pocket against the model's training pockets; write ``domain.json``.

    The record (:class:`pipeline.scoring.domain.PocketRecord`) is what the rank stage's domain
    check reads: the distance to the nearest training pocket, or a note on why there is none
    (the model records no training pockets, the run has no box, the pocket cannot be described).

    Parameters
    ----------
    layout
        The run's :class:`pipeline.layout.RunLayout` (``receptor/receptor.pdb``, ``receptor/box.json``).
    model_dir, models_dir
        The model, as :func:`score_library` takes it.

    Returns
    -------
    pipeline.scoring.domain.PocketRecord
    """
    from .domain import assess_pocket, box_center

    folder = resolve_model_dir(model_dir, models_dir)
    card = read_card(folder)
    try:
        box = box_center(layout.box_json)
    except (OSError, ValueError, KeyError, TypeError):  # no box: the record says so, the ranking goes on
        box = None
    record = assess_pocket(card, layout.receptor_pdb, box, card.get("name") or folder.name)
    record.to_json(layout.domain)
    if record.distance is not None:
        log.info("pocket distance %.3f to the nearest training pocket %r", record.distance, record.nearest)
    else:
        log.info("pocket distance not measured: %s", record.note)
    return record


def write_scores(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a score table as Parquet atomically."""
    write_parquet_atomic(df, path)
