"""The real objective of an active screen: prepare and dock each proposed batch with the pipeline's own stages.

A batch becomes one chunk of the run, ``<work_dir>/round_<r>/`` with the files the ordinary
workflow writes for a chunk: ``batch.parquet`` (``id, smiles``), the prepared ligands
(:func:`pipeline.ligands.prepare_chunk`) and the docked poses
(:func:`pipeline.docking.dock_chunk`). Both stages isolate each compound (a crash, a hang
or an error fails that compound, never the batch) and write atomically, so a round that
was killed is redone from its last complete stage. A compound's score is its best pose's
``docking_score``; a compound that failed preparation or docking is a failure with that
stage's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..box import Box
from ..docking import DockingSettings, dock_chunk
from ..io import read_failures, write_parquet_atomic
from ..ligands import LigandSettings, prepare_chunk
from .objective import Evaluation

__all__ = ["DockingObjective"]


class DockingObjective:
    """Dock batches into a prepared receptor (``receptor.pdbqt`` and ``box.json`` of a run's receptor folder).

    Parameters
    ----------
    receptor_dir
        The folder ``vscreen prepare-receptor`` wrote.
    work_dir
        Where each round's chunk files go (``round_<r>/``).
    ligands, docking
        Stage settings (config sections ``ligands`` and ``docking`` with the run seed).
    """

    def __init__(
        self, receptor_dir: str | Path, work_dir: str | Path, ligands: LigandSettings, docking: DockingSettings
    ) -> None:
        self.receptor_dir, self.work_dir = Path(receptor_dir), Path(work_dir)
        self.ligands, self.docking = ligands, docking
        self.box = Box.from_json(self.receptor_dir / "box.json")
        self.round = 0  # set by the screen before each call: names the round's folder

    def folder(self, round_index: int) -> Path:
        """The chunk folder of one round."""
        return self.work_dir / f"round_{round_index:03d}"

    def __call__(self, ids: Sequence[str], smiles: Sequence[str]) -> Evaluation:
        """Prepare and dock one batch (the files of a stage already complete for it are reused)."""
        out = self.folder(self.round)
        out.mkdir(parents=True, exist_ok=True)
        batch = out / "batch.parquet"
        frame = pd.DataFrame({"id": [str(i) for i in ids], "smiles": [str(s) for s in smiles]})
        if not batch.exists() or not pd.read_parquet(batch).equals(frame):
            write_parquet_atomic(frame, batch)
        ligands = [out / f"ligands.{ext}" for ext in ("sdf", "parquet", "failures.csv")]
        if not all(p.exists() for p in ligands):
            prepare_chunk(batch, *ligands, self.ligands)
        docked = [out / f"docked.{ext}" for ext in ("sdf", "parquet", "failures.csv")]
        if not all(p.exists() for p in docked):
            dock_chunk(ligands[1], self.receptor_dir / "receptor.pdbqt", self.box, self.docking, *docked)
        evaluation = Evaluation()
        for path in (ligands[2], docked[2]):
            for row in read_failures(path).itertuples(index=False):
                evaluation.failures.setdefault(str(row.id), f"{row.stage}: {row.reason}")
        poses = pd.read_parquet(docked[1])
        if len(poses):
            best = poses.groupby("id")["docking_score"].min()
            evaluation.scores.update({str(k): float(v) for k, v in best.items()})
        return evaluation
