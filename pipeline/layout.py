"""The files of one run, named in one place.

The Snakefile, the ``vscreen`` subcommands and the report all name a run's files through
:class:`RunLayout`, so every stage reads exactly the files its rule made. The lists of
chunks and refinement batches come from the manifests that ``split`` and ``select`` write
(``chunks/manifest.json``, ``refine_batches/manifest.json``), never from a folder glob: a
rerun with fewer batches (a smaller ``refine.top_n``) must not pick up the refined poses
and graphs an earlier run left behind.

Layout under ``results/<run>/``::

    config.yaml                      resolved config
    chunks/chunk_NNNNN.parquet       input chunks (+ manifest.json)
    failures/input.csv               rows rejected at input
    receptor/receptor.{pdb,pdbqt,json}, receptor/box.json
    ligands/chunk_NNNNN.{sdf,parquet,failures.csv}
    docked/chunk_NNNNN.{sdf,parquet,failures.csv}
    features/<name>.{parquet,failures.csv}, graphs/<name>.pt   (name = chunk or batch)
    refine_batches/batch_NNNNN.parquet (+ manifest.json)
    refined/batch_NNNNN.{sdf,parquet,failures.csv}, refined/frames/
    scores.parquet, scores.failures.csv, domain.json (the run's pocket against the model's training pockets)
    scores_docked.parquet            the docked poses' scores that choose the poses for MD (refine.select_by)
    ranking.csv, failures.csv, pose_warnings.csv, report.html, top_hits.sdf, figures/
    explain/summary.csv, explain/contacts.csv, explain/compounds/<id>.csv   (why each top hit's score)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "MANIFEST", "write_manifest", "read_manifest"]

#: File name of the manifest in ``chunks/`` and ``refine_batches/``.
MANIFEST = "manifest.json"


def write_manifest(folder: str | os.PathLike, key: str, names: list[str], **extra) -> Path:
    """Write ``folder/manifest.json`` listing ``names`` under ``key`` (atomically)."""
    from .io import write_text_atomic

    path = Path(folder) / MANIFEST
    write_text_atomic(path, json.dumps({**extra, key: list(names)}, indent=1))
    return path


def read_manifest(folder: str | os.PathLike, key: str) -> list[str]:
    """The names listed under ``key`` in ``folder/manifest.json``.

    Raises
    ------
    FileNotFoundError
        When the manifest is missing (the stage that writes it has not run).
    """
    path = Path(folder) / MANIFEST
    with open(path) as handle:
        value = json.load(handle)[key]
    if isinstance(value, int):  # a split manifest of an earlier version held the chunk count only
        return [f"{key[:-1]}_{i:05d}" for i in range(value)]
    return list(value)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run folder (``results/<run>``); see the module docstring."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    # ------------------------------------------------------------------ folders
    @property
    def chunks_dir(self) -> Path:
        return self.root / "chunks"

    @property
    def receptor_dir(self) -> Path:
        return self.root / "receptor"

    @property
    def ligands_dir(self) -> Path:
        return self.root / "ligands"

    @property
    def docked_dir(self) -> Path:
        return self.root / "docked"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def graphs_dir(self) -> Path:
        return self.root / "graphs"

    @property
    def batches_dir(self) -> Path:
        return self.root / "refine_batches"

    @property
    def refined_dir(self) -> Path:
        return self.root / "refined"

    @property
    def frames_dir(self) -> Path:
        return self.refined_dir / "frames"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def explain_dir(self) -> Path:
        """The top hits' score explanations (:mod:`pipeline.scoring.explain`)."""
        return self.root / "explain"

    @property
    def active_dir(self) -> Path:
        """``screen.strategy: active``: the screen's state, rounds and tables (:mod:`pipeline.active.screen`)."""
        return self.root / "active"

    def active_table(self, name: str) -> Path:
        """``docked``, ``predicted``, ``failures`` or ``rounds`` of an active screen."""
        return self.active_dir / f"{name}.csv"

    # ------------------------------------------------------------------ run-level files
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def input_failures(self) -> Path:
        return self.root / "failures" / "input.csv"

    @property
    def receptor_pdb(self) -> Path:
        return self.receptor_dir / "receptor.pdb"

    @property
    def receptor_pdbqt(self) -> Path:
        return self.receptor_dir / "receptor.pdbqt"

    @property
    def box_json(self) -> Path:
        return self.receptor_dir / "box.json"

    @property
    def receptor_report(self) -> Path:
        return self.receptor_dir / "receptor.json"

    @property
    def scores(self) -> Path:
        return self.root / "scores.parquet"

    @property
    def docked_scores(self) -> Path:
        """Scores of the docked poses alone, before MD: what a model rule of ``refine.select_by`` reads."""
        return self.root / "scores_docked.parquet"

    @property
    def score_failures(self) -> Path:
        return self.root / "scores.failures.csv"

    @property
    def domain(self) -> Path:
        """The score stage's pocket record (:class:`pipeline.scoring.domain.PocketRecord`)."""
        return self.root / "domain.json"

    @property
    def ranking(self) -> Path:
        return self.root / "ranking.csv"

    @property
    def failures(self) -> Path:
        return self.root / "failures.csv"

    @property
    def pose_warnings(self) -> Path:
        return self.root / "pose_warnings.csv"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def top_hits(self) -> Path:
        return self.root / "top_hits.sdf"

    @property
    def explain_summary(self) -> Path:
        return self.explain_dir / "summary.csv"

    @property
    def explain_contacts(self) -> Path:
        return self.explain_dir / "contacts.csv"

    def explain_table(self, compound: str) -> Path:
        """Per-residue contributions of one explained compound (its id is file-name safe, :func:`pipeline.library.sanitize_id`)."""
        return self.explain_dir / "compounds" / f"{compound}.csv"

    # ------------------------------------------------------------------ per chunk / batch
    def chunk_table(self, chunk: str) -> Path:
        return self.chunks_dir / f"{chunk}.parquet"

    def ligand_sdf(self, chunk: str) -> Path:
        return self.ligands_dir / f"{chunk}.sdf"

    def ligand_table(self, chunk: str) -> Path:
        return self.ligands_dir / f"{chunk}.parquet"

    def ligand_failures(self, chunk: str) -> Path:
        return self.ligands_dir / f"{chunk}.failures.csv"

    def docked_sdf(self, chunk: str) -> Path:
        return self.docked_dir / f"{chunk}.sdf"

    def docked_table(self, chunk: str) -> Path:
        return self.docked_dir / f"{chunk}.parquet"

    def docked_failures(self, chunk: str) -> Path:
        return self.docked_dir / f"{chunk}.failures.csv"

    def feature_table(self, name: str) -> Path:
        """Features of a docked chunk or a refined batch (``name`` = ``chunk_*`` or ``batch_*``)."""
        return self.features_dir / f"{name}.parquet"

    def feature_failures(self, name: str) -> Path:
        return self.features_dir / f"{name}.failures.csv"

    def graph_file(self, name: str) -> Path:
        return self.graphs_dir / f"{name}.pt"

    def batch_table(self, batch: str) -> Path:
        return self.batches_dir / f"{batch}.parquet"

    def refined_sdf(self, batch: str) -> Path:
        return self.refined_dir / f"{batch}.sdf"

    def refined_table(self, batch: str) -> Path:
        return self.refined_dir / f"{batch}.parquet"

    def refined_failures(self, batch: str) -> Path:
        return self.refined_dir / f"{batch}.failures.csv"

    # ------------------------------------------------------------------ what the run holds
    def chunks(self) -> list[str]:
        """Chunk names in order, from the split's manifest (empty when every row was rejected)."""
        return read_manifest(self.chunks_dir, "chunks")

    def batches(self) -> list[str]:
        """Refinement batch names in order, from the selection's manifest (``[]`` before selection)."""
        try:
            return read_manifest(self.batches_dir, "batches")
        except FileNotFoundError:
            return []

    def refined_frame_files(self, ids: set[str]) -> dict[tuple[str, int], Path]:
        """The MD frames' pocket PDB of each refined ``(id, pose)`` of ``ids`` (``frames`` column of the refined tables).

        The pose checks and the report's 3D view both show a refined pose in its final frame's pocket.
        """
        import pandas as pd  # only here: the layout is imported by every stage

        out: dict[tuple[str, int], Path] = {}
        if not ids:
            return out
        for batch in self.batches():
            path = self.refined_table(batch)
            if not path.is_file():
                continue
            table = pd.read_parquet(path)
            if not {"id", "pose", "frames"} <= set(table.columns):
                continue
            for cid, pose, frames in zip(table["id"].astype(str), table["pose"], table["frames"]):
                if cid in ids and isinstance(frames, str) and frames:
                    out.setdefault((cid, int(pose)), self.frames_dir / frames)
        return out

    def graph_files(self) -> list[Path]:
        """Graph files the workflow made for this run: docked chunks first, then refined batches."""
        return [self.graph_file(c) for c in self.chunks()] + [self.graph_file(b) for b in self.batches()]

    def failure_files(self) -> list[Path]:
        """Every per-compound failure table of the run, in stage order."""
        chunks, batches = self.chunks(), self.batches()
        files = [self.input_failures]
        files += [self.ligand_failures(c) for c in chunks]
        files += [self.docked_failures(c) for c in chunks]
        files += [self.feature_failures(c) for c in chunks]
        files += [self.refined_failures(b) for b in batches]
        files += [self.feature_failures(b) for b in batches]
        return files
