"""Featurization stage: interaction fingerprints and complex graphs for a batch of poses.

Input: poses as :class:`PoseInput` - a docked pose (ligand with hydrogens in the
receptor's frame, its docking score) or a refined pose (plus its MD frames and
metrics). :func:`read_docked_poses` picks the best ``poses_per_compound`` poses
per compound from a docked chunk (SDF + pose table); :func:`read_refined_poses`
reads the refinement stage's outputs.

Output of :func:`featurize_batch`, all written atomically:

* a Parquet table, one row per featurized pose, sorted by ``id, pose``:
  ``id`` (str), ``pose`` (int), ``source`` (``docked`` | ``refined``), then
  ``n_<Interaction>`` for every interaction type of the settings (number of
  residues making it; for a refined pose the mean number per frame), then one
  column per ``RESIDUE:Interaction`` pair seen in the batch (``MET318.A:HBAcceptor``;
  bool for docked poses, persistence fraction in [0, 1] when the batch holds
  refined poses), sorted by chain, residue number and interaction;
* a graph file (:func:`pipeline.graphs.save_graphs`), graphs in the table's order,
  each with ``id``, ``pose`` and ``source``. When the run's scorer is a pair model
  (argument ``pair``, a :class:`PairGraphs`; :func:`pipeline.scoring.pair_folder.pair_schema_for`
  says from the config) the file holds pair graphs instead
  (:func:`pipeline.pair_graphs.save_pair_graphs`, with the model's schema), built from the
  docking receptor PDBQT and the pose: the docked pose, or a refined pose's refined
  coordinates (the SDF record, its last MD frame) against the rigid receptor;
* failure rows ``id, stage, reason`` (stage ``featurize``) for poses that could
  not be read, fingerprinted or turned into a graph (a pair graph too: reason
  ``pose 1: pair graph: ...``); the others go on.

Work is spread as Dask tasks of ``poses_per_task`` poses over a
``distributed.Client`` (see :mod:`pipeline.dask_cluster`); without a client it runs
in this process. A lost worker or a cancelled task is retried, never a pose's failure
(:func:`pipeline.dask_cluster.run_tasks`). Each worker process reads the receptor once
(:func:`pipeline.interactions.load_receptor` caches it), and results are sorted
before writing, so outputs do not depend on the number of workers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger

from . import faults
from .config import schema_default, schema_field
from .graphs import GLOBAL_NAMES, GraphSchema, complex_graph, save_graphs
from .interactions import (
    INTERACTION_TYPES,
    as_receptor,
    fingerprint_sort_key,
    interaction_counts,
    load_receptor,
    pose_fingerprint,
    trajectory_persistence,
)
from .io import sdf_supplier, write_failures, write_parquet_atomic
from .pair_graphs import DEFAULT_PAIR_SCHEMA, PairGraphSchema, load_vina_receptor, pair_graph, save_pair_graphs
from .progress import progress

log = logging.getLogger(__name__)
RDLogger.DisableLog("rdApp.*")

STAGE = "featurize"
BASE_COLUMNS = ["id", "pose", "source"]
SOURCES = ("docked", "refined")


@dataclass(frozen=True)
class FeaturizeSettings:
    """Settings of featurization (config section ``featurize``).

    Attributes
    ----------
    poses_per_compound
        Docked poses featurized per compound, best docking score first; 0 means all.
    interactions
        ProLIF interaction types (fingerprint columns, count columns, edge flags).
    vicinity_cutoff
        Residues with an atom within this distance (Å) of the ligand are searched for
        interactions.
    pocket_cutoff
        Protein heavy atoms within this distance (Å) of a ligand heavy atom are graph nodes.
    contact_cutoff
        Protein-ligand heavy-atom pairs closer than this (Å) are contact edges; also the
        range of the RBF centres.
    rbf_size
        Gaussians in the edge-length expansion.
    persistence_threshold
        A refined interaction present in at least this fraction of frames counts as
        persistent (global feature ``n_persistent``).
    poses_per_task
        Poses per Dask task: enough to amortize task overhead, few enough to balance workers.
    """

    poses_per_compound: int = schema_field("featurize", "poses_per_compound")
    interactions: tuple[str, ...] = INTERACTION_TYPES
    vicinity_cutoff: float = schema_field("featurize", "vicinity_cutoff")
    pocket_cutoff: float = schema_field("featurize", "pocket_cutoff")
    contact_cutoff: float = schema_field("featurize", "contact_cutoff")
    rbf_size: int = schema_field("featurize", "rbf_size")
    persistence_threshold: float = schema_field("featurize", "persistence_threshold")
    poses_per_task: int = schema_field("featurize", "poses_per_task")

    def __post_init__(self) -> None:
        object.__setattr__(self, "interactions", tuple(self.interactions))

    def schema(self) -> GraphSchema:
        """The graph schema these settings produce."""
        return GraphSchema(
            interactions=self.interactions,
            rbf_size=self.rbf_size,
            pocket_cutoff=self.pocket_cutoff,
            contact_cutoff=self.contact_cutoff,
        )


@dataclass(frozen=True)
class PairGraphs:
    """Write pair graphs (:mod:`pipeline.pair_graphs`) instead of complex graphs: what a pair-term scorer reads.

    Attributes
    ----------
    receptor_pdbqt
        The receptor PDBQT that docking used (``receptor/receptor.pdbqt``): typed as Vina
        types it, read once per worker process.
    schema
        The pair-graph schema of the run's model (its card's), so the graphs fit the model.
    """

    receptor_pdbqt: str
    schema: PairGraphSchema = DEFAULT_PAIR_SCHEMA

    def graph(self, ligand: Chem.Mol) -> dict[str, Any]:
        """The pair graph of one pose (:func:`pipeline.pair_graphs.pair_graph`).

        Raises
        ------
        GraphError
            ``pair graph: <why>`` for a pose that cannot be typed or lies outside the pocket.
        """
        from .graphs import GraphError

        receptor = load_vina_receptor(self.receptor_pdbqt)  # cached per process
        try:
            return pair_graph(ligand, receptor, self.schema)
        except GraphError as exc:
            raise GraphError(f"pair graph: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - meeko/RDKit raise plain exceptions; still only this pose's
            raise GraphError(f"pair graph: {type(exc).__name__}: {exc}") from exc


@dataclass
class PoseInput:
    """One pose to featurize.

    Attributes
    ----------
    id, pose
        Compound id and pose number.
    source
        ``docked`` or ``refined``.
    ligand
        RDKit molecule with hydrogens and a 3D conformer in the receptor's frame.
    metrics
        Values for the graph's global features (``docking_score``, ``rmsd_mean``, ...).
    frames
        Refined poses only: a sequence of ``(protein, ligand)`` frames, or a path that
        :func:`read_frames` can read. ``None``: the pose is fingerprinted once against
        the receptor (persistence 0 or 1).
    """

    id: str
    pose: int
    source: str = "docked"
    ligand: Chem.Mol | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    frames: Sequence | str | os.PathLike | None = None

    # RDKit pickles coordinates as float32; a pose sent to a Dask worker would then give
    # (slightly) different distances than the same pose featurized in-process.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["ligand"] = _pack(self.ligand)
        if self.frames is not None and not isinstance(self.frames, (str, os.PathLike)):
            state["frames"] = [tuple(_pack(part) for part in _frame_parts(frame)) for frame in self.frames]
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["ligand"] = _unpack(state["ligand"])
        if isinstance(state["frames"], list):
            state["frames"] = [tuple(_unpack(part) for part in frame) for frame in state["frames"]]
        self.__dict__.update(state)


_PICKLE_FLAGS = Chem.PropertyPickleOptions.AllProps | Chem.PropertyPickleOptions.CoordsAsDouble


class _PackedMol(bytes):
    """An RDKit molecule in binary form with all properties and double-precision coordinates."""


def _pack(obj: Any) -> Any:
    from .interactions import Receptor

    if isinstance(obj, Receptor):
        obj = obj.molecule
    return _PackedMol(obj.ToBinary(_PICKLE_FLAGS)) if isinstance(obj, Chem.Mol) else obj


def _unpack(obj: Any) -> Any:
    return Chem.Mol(bytes(obj)) if isinstance(obj, _PackedMol) else obj


def _frame_parts(frame: Any) -> tuple:
    return (frame["protein"], frame["ligand"]) if isinstance(frame, Mapping) else tuple(frame)


@dataclass(frozen=True)
class FeaturizeSummary:
    """Counts of one :func:`featurize_batch` call."""

    poses: int
    featurized: int
    failed: int
    seconds: float


# --------------------------------------------------------------------------- reading poses

_PROP_RE = r"^>\s*<{name}>[^\n]*\n([^\n]*)"


def _record_prop(text: str, name: str) -> str | None:
    match = re.search(_PROP_RE.format(name=re.escape(name)), text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _read_sdf_records(sdf: str | os.PathLike) -> list[dict]:
    """Every record of an SDF: id, pose, docking score (from SD props), molecule or None."""
    supplier = sdf_supplier(sdf, removeHs=False, sanitize=True)  # an empty chunk (all failed) reads as no records
    records = []
    for i in range(len(supplier)):
        mol = supplier[i]
        text = supplier.GetItemText(i)
        cid = mol.GetProp("_Name") if mol is not None else text.split("\n", 1)[0].strip()
        pose = _record_prop(text, "pose")
        score = _record_prop(text, "docking_score")
        records.append(
            dict(
                id=cid or f"record{i + 1}",
                pose=int(pose) if pose and pose.isdigit() else 1,
                docking_score=_number(score),
                mol=mol,
            )
        )
    return records


def read_docked_poses(
    sdf: str | os.PathLike,
    table: str | os.PathLike | pd.DataFrame | None = None,
    poses_per_compound: int = schema_default("featurize", "poses_per_compound"),
) -> tuple[list[PoseInput], list[dict]]:
    """Choose the poses of a docked chunk to featurize.

    Parameters
    ----------
    sdf
        Docked poses (molecule name = id, SD props ``pose`` and ``docking_score``).
    table
        The chunk's pose table (``id, pose, docking_score``, ...); its scores win over
        the SD props. ``None``: SD props only.
    poses_per_compound
        Best poses kept per compound (lowest docking score, then lowest pose number); 0: all.

    Returns
    -------
    (list[PoseInput], list[dict])
        Poses sorted by ``id, pose``, and failure rows for chosen poses whose SDF
        record RDKit cannot read.
    """
    records = pd.DataFrame(_read_sdf_records(sdf), columns=["id", "pose", "docking_score", "mol"])
    if table is not None:
        scores = table if isinstance(table, pd.DataFrame) else pd.read_parquet(table)
        scores = scores[["id", "pose", "docking_score"]].astype({"id": str, "pose": int})
        records = records.drop(columns="docking_score").merge(scores, on=["id", "pose"], how="left")
    records = records.drop_duplicates(["id", "pose"]).sort_values(["id", "docking_score", "pose"], na_position="last")
    if poses_per_compound and poses_per_compound > 0:
        records = records.groupby("id", sort=False).head(poses_per_compound)
    poses, failures = [], []
    for row in records.sort_values(["id", "pose"]).itertuples(index=False):
        if not isinstance(row.mol, Chem.Mol):
            failures.append(dict(id=row.id, stage=STAGE, reason=f"pose {row.pose}: SDF record cannot be read by RDKit"))
            continue
        metrics = {} if math.isnan(row.docking_score) else {"docking_score": float(row.docking_score)}
        poses.append(PoseInput(id=row.id, pose=int(row.pose), source="docked", ligand=row.mol, metrics=metrics))
    return poses, failures


def read_refined_poses(
    sdf: str | os.PathLike,
    table: str | os.PathLike | pd.DataFrame | None = None,
    frames: Mapping[tuple[str, int], Any] | Callable[[str, int], Any] | None = None,
) -> tuple[list[PoseInput], list[dict]]:
    """Poses of the refinement stage: refined SDF, its metrics table and the MD frames.

    Parameters
    ----------
    sdf
        Refined poses (molecule name = id, SD prop ``pose``).
    table
        Refinement table with ``id, pose`` and any of the global metrics
        (``rmsd_mean``, ``rmsd_max``, ``rmsd_final``, ``pocket_backbone_rmsd``,
        ``interaction_energy``, ``docking_score``).
    frames
        ``(id, pose) -> frames`` as a mapping or function; a value is a sequence of
        ``(protein, ligand)`` pairs or a path :func:`read_frames` reads. ``None``:
        no frames (each pose is fingerprinted once against the receptor).

    Returns
    -------
    (list[PoseInput], list[dict])
        Every pose of the SDF sorted by ``id, pose``, and failure rows for records
        RDKit cannot read.
    """
    records = _read_sdf_records(sdf)
    metrics: dict[tuple[str, int], dict] = {}
    if table is not None:
        df = table if isinstance(table, pd.DataFrame) else pd.read_parquet(table)
        cols = [c for c in GLOBAL_NAMES if c in df.columns]
        for row in df.to_dict("records"):
            metrics[(str(row["id"]), int(row["pose"]))] = {c: row[c] for c in cols if pd.notna(row[c])}
    poses, failures = [], []
    for rec in sorted(records, key=lambda r: (r["id"], r["pose"])):
        key = (rec["id"], rec["pose"])
        if rec["mol"] is None:
            failures.append(
                dict(id=rec["id"], stage=STAGE, reason=f"pose {rec['pose']}: SDF record cannot be read by RDKit")
            )
            continue
        found = frames(*key) if callable(frames) else (frames or {}).get(key)
        values = metrics.get(key, {})
        if "docking_score" not in values and not math.isnan(rec["docking_score"]):
            values = dict(values, docking_score=rec["docking_score"])
        poses.append(
            PoseInput(id=rec["id"], pose=rec["pose"], source="refined", ligand=rec["mol"], metrics=values, frames=found)
        )
    return poses, failures


def read_frames(path: str | os.PathLike) -> list[tuple]:
    """Read saved MD frames of one pose as ``(protein, ligand)`` pairs.

    ``path`` is a frame stem of the refinement stage (``refined/frames/<id>_pose<k>``,
    see :mod:`pipeline.refine.frames`: a multi-model pocket PDB and a ligand SDF).
    """
    from .refine.frames import read_frames as read_refine_frames

    return read_refine_frames(path)


# --------------------------------------------------------------------------- one pose


def _persistence_summary(values: Mapping[str, float], threshold: float) -> dict[str, float]:
    fractions = list(values.values())
    return dict(
        persistence_mean=float(np.mean(fractions)) if fractions else 0.0,
        n_persistent=float(sum(f >= threshold for f in fractions)),
    )


def featurize_pose(
    pose: PoseInput, receptor, settings: FeaturizeSettings = FeaturizeSettings(), pair: PairGraphs | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fingerprint and graph of one pose.

    Parameters
    ----------
    pose
        The pose; refined poses with frames get persistences, others booleans.
    receptor
        :class:`~pipeline.interactions.Receptor` (or anything
        :func:`~pipeline.interactions.as_receptor` takes) for poses without frames.
    settings
        Featurization settings.
    pair
        Build a pair graph (:meth:`PairGraphs.graph`) of the pose instead of a complex graph.

    Returns
    -------
    (dict, dict)
        The table row (``id, pose, source``, counts, ``RESIDUE:Interaction`` values)
        and the graph (:func:`pipeline.graphs.complex_graph` arrays, or
        :func:`pipeline.pair_graphs.pair_graph` ones, plus ``id``, ``pose``, ``source``).

    Raises
    ------
    Exception
        Whatever makes this pose unusable; :func:`featurize_batch` turns it into a failure row.
    """
    if pose.source not in SOURCES:
        raise ValueError(f"unknown pose source {pose.source!r}; expected one of {SOURCES}")
    names = settings.interactions
    metrics = dict(pose.metrics)
    if pose.frames is not None:
        frames = read_frames(pose.frames) if isinstance(pose.frames, (str, os.PathLike)) else list(pose.frames)
        values: dict[str, Any] = trajectory_persistence(frames, names, settings.vicinity_cutoff)
        metrics.update(_persistence_summary(values, settings.persistence_threshold))
        graph_protein, graph_ligand = _frame_parts(frames[-1])
    else:
        fingerprint = pose_fingerprint(pose.ligand, receptor, names, settings.vicinity_cutoff)
        values = fingerprint if pose.source == "docked" else {k: 1.0 for k in fingerprint}
        graph_protein, graph_ligand = receptor, pose.ligand
    if pair is not None:
        # the pose against the rigid docking receptor: the pair terms are Vina's, for Vina's protein
        graph = pair.graph(pose.ligand)
    else:
        graph = complex_graph(graph_ligand, as_receptor(graph_protein), values, metrics, settings.schema())
    graph.update(id=pose.id, pose=int(pose.pose), source=pose.source)
    row = dict(id=pose.id, pose=int(pose.pose), source=pose.source, **interaction_counts(values, names), **values)
    return row, graph


def _featurize_poses(
    receptor_pdb: str, poses: Sequence[PoseInput], settings: FeaturizeSettings, pair: PairGraphs | None = None
) -> list[tuple]:
    """Dask task: featurize some poses; one ``(row, graph, failure)`` per pose, never raising for a pose."""
    from .graphs import GraphError
    from .interactions import InteractionError
    from .receptor import ReceptorError

    try:
        receptor = load_receptor(receptor_pdb)  # cached: read once per worker process
        if pair is not None:  # an unreadable PDBQT is the run's problem, not every pose's
            load_vina_receptor(pair.receptor_pdbqt)
    except (InteractionError, GraphError) as exc:
        raise ReceptorError(str(exc)) from exc
    results = []
    for pose in poses:
        try:
            # tests' hook (no-op unless VSCREEN_FAULTS): kill this worker here, or fail this pose
            faults.inject(STAGE, pose.id)
            row, graph = featurize_pose(pose, receptor, settings, pair)
            results.append((row, graph, None))
        except faults.FaultSpecError:  # a mistyped test setup must not pass as failed poses
            raise
        except Exception as exc:  # one bad pose must not stop the batch
            reason = str(exc) if isinstance(exc, ValueError) and str(exc) else f"{type(exc).__name__}: {exc}"
            results.append((None, None, dict(id=pose.id, stage=STAGE, reason=f"pose {pose.pose}: {reason}")))
    return results


# --------------------------------------------------------------------------- the batch


def fingerprint_table(
    rows: Sequence[Mapping[str, Any]], interactions: Sequence[str] = INTERACTION_TYPES
) -> pd.DataFrame:
    """The featurization table from pose rows (see the module docstring for the columns)."""
    names = tuple(interactions)
    counts = [f"n_{name}" for name in names]
    pairs = sorted({k for row in rows for k in row if ":" in k}, key=lambda k: fingerprint_sort_key(k, names))
    refined = any(row["source"] == "refined" for row in rows)
    df = pd.DataFrame(list(rows), columns=BASE_COLUMNS + counts + pairs)
    df = df.astype({"id": str, "pose": "int64", "source": str})
    df[counts] = df[counts].fillna(0).astype("float64" if refined else "int64")
    if pairs:
        df[pairs] = df[pairs].astype("float64").fillna(0.0)
        if not refined:
            df[pairs] = df[pairs].astype(bool)
    return df.sort_values(["id", "pose", "source"], kind="mergesort").reset_index(drop=True)


def _tasks(poses: Sequence[PoseInput], size: int, n_workers: int) -> list[list[PoseInput]]:
    """Chunks of at most ``size`` poses, at least two per worker when there are enough poses."""
    n_tasks = max(math.ceil(len(poses) / max(size, 1)), min(len(poses), 2 * n_workers))
    per = math.ceil(len(poses) / n_tasks) if n_tasks else 1
    return [list(poses[i : i + per]) for i in range(0, len(poses), per)]


def featurize_batch(
    poses: Sequence[PoseInput],
    receptor_pdb: str | os.PathLike,
    out_table: str | os.PathLike,
    out_graphs: str | os.PathLike,
    failures_csv: str | os.PathLike,
    settings: FeaturizeSettings = FeaturizeSettings(),
    client=None,
    failures: Sequence[dict] = (),
    pair: PairGraphs | None = None,
) -> FeaturizeSummary:
    """Featurize a batch of poses and write the table, the graphs and the failures.

    Parameters
    ----------
    poses
        Poses to featurize (from :func:`read_docked_poses` or :func:`read_refined_poses`).
    receptor_pdb
        The prepared receptor PDB (all hydrogens); read once per worker process.
    out_table, out_graphs, failures_csv
        Output paths: Parquet table, graph file (``.pt``), failures CSV.
    settings
        Featurization settings.
    client
        A ``distributed.Client`` (:func:`pipeline.dask_cluster.make_client`); ``None``
        runs in this process.
    failures
        Failure rows found before (e.g. unreadable SDF records), written with the new ones.
    pair
        Write pair graphs (for a pair-term scorer) instead of complex graphs; ``None``:
        complex graphs of ``settings.schema()``.

    Returns
    -------
    FeaturizeSummary

    Raises
    ------
    pipeline.receptor.ReceptorError
        When the receptor (or, with ``pair``, its PDBQT) cannot be read (a run-level
        problem, not a pose's).
    pipeline.dask_cluster.InfrastructureError
        A Dask fault (lost worker or scheduler, cancelled task) that persisted through
        the retries; nothing is written, so a rerun featurizes the batch.
    """
    from .receptor import ReceptorError

    start = time.perf_counter()
    receptor_pdb = str(Path(receptor_pdb).resolve())
    if not Path(receptor_pdb).is_file():
        raise ReceptorError(f"receptor PDB '{receptor_pdb}' does not exist")
    if pair is not None:
        pair = replace(pair, receptor_pdbqt=str(Path(pair.receptor_pdbqt).resolve()))
        if not Path(pair.receptor_pdbqt).is_file():
            raise ReceptorError(f"receptor PDBQT '{pair.receptor_pdbqt}' (for pair graphs) does not exist")
    n_workers = len(client.nthreads()) if client is not None else 1
    tasks = _tasks(list(poses), settings.poses_per_task, n_workers)
    desc = f"featurize {Path(out_table).stem}"
    results: list[tuple] = []
    if client is None:
        for chunk in progress(tasks, total=len(tasks), desc=desc, unit="task"):
            results.extend(_featurize_poses(receptor_pdb, chunk, settings, pair))
    else:
        results = _run_on_client(client, tasks, receptor_pdb, settings, desc, pair)
    rows = [r for r, _, _ in results if r is not None]
    graphs = sorted((g for _, g, _ in results if g is not None), key=lambda g: (g["id"], g["pose"], g["source"]))
    failed = list(failures) + [f for _, _, f in results if f is not None]
    failed.sort(key=lambda f: (f["id"], f["reason"]))
    write_parquet_atomic(fingerprint_table(rows, settings.interactions), out_table)
    if pair is not None:
        save_pair_graphs(out_graphs, graphs, pair.schema)
    else:
        save_graphs(out_graphs, graphs, settings.schema())
    write_failures(failed, failures_csv)
    summary = FeaturizeSummary(
        poses=len(poses) + len(failures), featurized=len(rows), failed=len(failed), seconds=time.perf_counter() - start
    )
    log.info(
        "featurized %s: %d poses, %d failed, %.1f s",
        Path(out_table).stem,
        summary.featurized,
        summary.failed,
        summary.seconds,
    )
    return summary


def _run_on_client(
    client,
    tasks: list[list[PoseInput]],
    receptor_pdb: str,
    settings: FeaturizeSettings,
    desc: str,
    pair: PairGraphs | None = None,
) -> list[tuple]:
    from .dask_cluster import run_tasks

    # Genuine per-pose errors are failure rows already (_featurize_poses catches them). What
    # reaches here is either run-level (ReceptorError, a bug: raised as is) or a Dask fault,
    # which run_tasks retries and, if it persists, raises as InfrastructureError: a lost
    # worker must never fail good poses for good. A task is pure (its poses in, their rows
    # out), so a rerun after a killed worker - Dask's own or ours - gives the same rows.
    names = [f"task {k} ({chunk[0].id} ... {chunk[-1].id}, {len(chunk)} poses)" for k, chunk in enumerate(tasks)]
    done = run_tasks(
        client, _featurize_poses, [(receptor_pdb, chunk, settings, pair) for chunk in tasks], names=names, what=desc
    )
    by_task: list[list[tuple]] = [[] for _ in tasks]
    for k, rows in progress(done, total=len(tasks), desc=desc, unit="task"):
        by_task[k] = rows
    return [row for rows in by_task for row in rows]


def featurize_refined_batch(
    refined_sdf: str | os.PathLike,
    refined_table: str | os.PathLike,
    frames_dir: str | os.PathLike,
    receptor_pdb: str | os.PathLike,
    out_table: str | os.PathLike,
    out_graphs: str | os.PathLike,
    failures_csv: str | os.PathLike,
    settings: FeaturizeSettings = FeaturizeSettings(),
    client=None,
    pair: PairGraphs | None = None,
) -> FeaturizeSummary:
    """Featurize the poses of one refinement batch, with interaction persistence over their MD frames.

    With ``pair``, each refined pose's graph is the pair graph of its refined coordinates (see
    :func:`featurize_batch`).
    """
    from .refine.frames import frame_stem

    frames = lambda cid, pose: str(Path(frames_dir) / frame_stem(cid, pose))  # noqa: E731 - read on the worker
    poses, failures = read_refined_poses(refined_sdf, refined_table, frames)
    return featurize_batch(poses, receptor_pdb, out_table, out_graphs, failures_csv, settings, client, failures, pair)


def featurize_docked_chunk(
    docked_sdf: str | os.PathLike,
    docked_table: str | os.PathLike | None,
    receptor_pdb: str | os.PathLike,
    out_table: str | os.PathLike,
    out_graphs: str | os.PathLike,
    failures_csv: str | os.PathLike,
    settings: FeaturizeSettings = FeaturizeSettings(),
    client=None,
    pair: PairGraphs | None = None,
) -> FeaturizeSummary:
    """Read a docked chunk (SDF + pose table), choose the poses and featurize them (see :func:`featurize_batch`)."""
    poses, failures = read_docked_poses(docked_sdf, docked_table, settings.poses_per_compound)
    return featurize_batch(poses, receptor_pdb, out_table, out_graphs, failures_csv, settings, client, failures, pair)
