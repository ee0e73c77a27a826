"""Docking with the AutoDock Vina 1.2 Python bindings.

One :class:`vina.Vina` object per chunk: the receptor is read and the affinity maps of
the box are computed once, then every ligand of the chunk is docked against them.
Poses come back through meeko with their hydrogens restored (the PDBQT keeps only
polar ones) and are written to an SDF whose molecule names are the compound ids and
whose SD properties carry the scores. The Parquet table has one row per pose:
``id, pose, docking_score, inter, intra, torsional, intra_best_pose``
(kcal/mol, Vina's decomposition; ``docking_score`` is Vina's reported affinity).

The Vina object lives in an isolated worker process (:mod:`pipeline.isolation`): the
maps are computed once per worker, and a ligand that crashes Vina or meeko
(``crashed: ...``), runs past ``docking.time_limit`` (``time limit (N s) exceeded``) or
raises anything at all becomes that ligand's failure row; the chunk goes on in a new
worker. Vina reseeds every search with the run seed, so the other ligands' poses do not
depend on whether a worker was restarted before them.

``docking.mode: score_only`` (:func:`score_chunk`) does no search: each ligand's PDBQT
already holds its input pose (:func:`pipeline.ligands.prepare_pose`), Vina scores it as
it lies (``Vina.score``) against the same maps, and the pose is written back through
meeko like a docked one, so every later stage reads it as a docked pose (pose 1).
``docking.mode: tethered`` runs through the same chunk runner (:func:`run_chunk`), from
:func:`pipeline.tethered.pose_chunk_tethered`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from . import faults
from .box import Box
from .config import schema_field
from .io import atomic_sdf, write_failures, write_parquet_atomic
from .isolation import check_time_limit, pack_mol, run_isolated, unexpected_error, unpack_mol

log = logging.getLogger(__name__)
STAGE = "dock"
#: Fault-injection point of the pose export (meeko), separate from Vina's search.
EXPORT_STAGE = "dock-export"
#: Substring of Vina's error for a ligand with an atom outside the maps (vina >= 1.2.5 raises it).
_OUTSIDE_GRID = "outside the grid box"
POSE_COLUMNS = ["id", "pose", "docking_score", "inter", "intra", "torsional", "intra_best_pose", "dock_seconds"]
POSE_DTYPES = {"id": object, "pose": "int64"} | {c: "float64" for c in POSE_COLUMNS[2:]}


class DockingError(ValueError):
    """One ligand could not be docked; the message goes to failures.csv."""


@dataclass(frozen=True)
class DockingSettings:
    """Vina settings (config section ``docking`` plus the run seed).

    ``time_limit`` is the wall-clock limit per ligand in seconds (``None`` = none).
    """

    exhaustiveness: int = schema_field("docking", "exhaustiveness")
    n_poses: int = schema_field("docking", "n_poses")
    energy_range: float = schema_field("docking", "energy_range")
    seed: int = schema_field("seed")
    threads: int = schema_field("docking", "threads")
    scoring: str = schema_field("docking", "scoring")
    time_limit: float | None = schema_field("docking", "time_limit")

    def __post_init__(self) -> None:
        check_time_limit(self.time_limit, "docking.time_limit")


class Docker:
    """A Vina engine bound to one receptor and box; maps are computed once, at construction."""

    def __init__(self, receptor_pdbqt: str | Path, box: Box, settings: DockingSettings):
        from vina import Vina

        self.settings = settings
        self.box = box
        self.vina = Vina(sf_name=settings.scoring, cpu=settings.threads, seed=settings.seed, verbosity=0)
        self.vina.set_receptor(rigid_pdbqt_filename=str(receptor_pdbqt))
        self.vina.compute_vina_maps(center=list(box.center), box_size=list(box.size))

    def dock(self, compound_id: str, pdbqt: str, conformers: Sequence[str] = ()) -> tuple[list[Chem.Mol], np.ndarray]:
        """Dock one ligand (meeko PDBQT string), from one or several starting conformers.

        Parameters
        ----------
        compound_id
            The ligand's id (the poses' name, and messages).
        pdbqt
            meeko PDBQT of the prepared ligand.
        conformers
            PDBQT of other starting conformers of the same molecule (other ring shapes,
            :mod:`pipeline.ring_conformers`). With any, the first conformer is searched as
            without them (the whole exhaustiveness), each other one at ``ceil(exhaustiveness /
            starting conformers)``, and the poses are merged: best first, a pose within 1 A
            (symmetry-aware heavy-atom RMSD) of a better one dropped, at most ``n_poses``
            within ``energy_range`` of the best. Splitting the whole exhaustiveness instead
            left imatinib's search 12 A off at 3 of 5 seeds (README, "Redocking"): a large
            flexible ligand needs the full search from one start.

        Returns
        -------
        (list of Chem.Mol, np.ndarray)
            The poses as RDKit molecules with all hydrogens (best first) and Vina's energy
            matrix (one row per pose: total, inter, intra, torsional, intra of the best pose
            of the search that found it; kcal/mol).

        Raises
        ------
        DockingError
            Vina or meeko failed on the ligand.
        """
        s = self.settings
        faults.inject(STAGE, compound_id)  # tests' hook before Vina (no-op unless VSCREEN_FAULTS)
        starts = [pdbqt, *conformers]
        if len(starts) == 1:
            return self._search(compound_id, pdbqt, s.exhaustiveness)
        other = max(1, math.ceil(s.exhaustiveness / len(starts)))
        found = [
            self._search(compound_id, start, s.exhaustiveness if k == 0 else other) for k, start in enumerate(starts)
        ]
        return merge_poses(
            [pose for poses, _ in found for pose in poses],
            np.concatenate([energies for _, energies in found]),
            s.n_poses,
            s.energy_range,
        )

    def _search(self, compound_id: str, pdbqt: str, exhaustiveness: int) -> tuple[list[Chem.Mol], np.ndarray]:
        """One Vina search from one starting conformer: poses (best first) and energy matrix."""
        s = self.settings
        try:
            self.vina.set_ligand_from_string(pdbqt)
            self.vina.dock(exhaustiveness=exhaustiveness, n_poses=s.n_poses)
            poses_pdbqt = self.vina.poses(n_poses=s.n_poses, energy_range=s.energy_range)
            energies = np.asarray(self.vina.energies(n_poses=s.n_poses, energy_range=s.energy_range))
        except Exception as exc:  # Vina raises RuntimeError/TypeError with its own text
            raise DockingError(f"Vina failed: {exc}") from exc
        poses = poses_to_rdkit(poses_pdbqt, compound_id)
        if len(poses) != len(energies):
            raise DockingError(f"Vina returned {len(energies)} energies for {len(poses)} poses")
        return poses, energies

    def score(self, compound_id: str, pdbqt: str) -> tuple[Chem.Mol, np.ndarray]:
        """Score one ligand where its PDBQT puts it, without any search (``docking.mode: score_only``).

        Parameters
        ----------
        compound_id
            The ligand's id (the pose's name, and messages).
        pdbqt
            meeko PDBQT of the pose, in the receptor's frame.

        Returns
        -------
        (Chem.Mol, np.ndarray)
            The pose with all hydrogens (rebuilt by meeko from the PDBQT, as docked poses
            are), and one row of the energy matrix of :meth:`dock`: total, inter, intra,
            torsional, intra of the best pose (kcal/mol; the pose is its own best pose).

        Raises
        ------
        DockingError
            When an atom lies outside the docking box (Vina has no map there), or Vina or
            meeko fail on the ligand.
        """
        faults.inject(STAGE, compound_id)  # tests' hook before Vina (no-op unless VSCREEN_FAULTS)
        try:
            self.vina.set_ligand_from_string(pdbqt)
            terms = np.asarray(self.vina.score())
        except Exception as exc:  # Vina raises RuntimeError with its own text
            if _OUTSIDE_GRID in str(exc):
                center = ", ".join(f"{v:g}" for v in self.box.center)
                size = " x ".join(f"{v:g}" for v in self.box.size)
                raise DockingError(
                    f"the pose lies outside the docking box (center {center}, size {size} Å), where Vina has no "
                    "maps to score it: check that the pose is in the receptor's frame and the box covers it"
                ) from exc
            raise DockingError(f"Vina failed: {exc}") from exc
        return poses_to_rdkit(pdbqt, compound_id)[0], score_terms(terms)


def score_terms(terms: np.ndarray) -> np.ndarray:
    """Vina's ``score()`` terms as a row of the docking energy matrix (``Vina.energies()``).

    Parameters
    ----------
    terms
        ``Vina.score()`` of the Vina/Vinardo scoring functions: total, ligand inter, flex
        inter, other inter, flex intra, ligand intra, torsional (the conformation-independent
        part), ligand intra of the best pose.

    Returns
    -------
    np.ndarray
        ``[total, inter, intra, torsional, intra_best_pose]`` as :meth:`Docker.dock` gives
        them: inter is the sum of the three inter terms and intra of the two intra terms
        (the flexible-residue terms are 0 with a rigid receptor). For a docked best pose
        both rows agree (to Vina's 3 decimals).
    """
    terms = np.asarray(terms, dtype=float)
    if terms.shape != (8,):
        raise DockingError(f"Vina's score() returned {terms.size} terms, expected 8 (scoring function vina or vinardo)")
    return np.array([terms[0], terms[1] + terms[2] + terms[3], terms[4] + terms[5], terms[6], terms[7]])


#: Poses closer than this (A, symmetry-aware heavy-atom RMSD) count as one when searches are merged (Vina's min_rmsd).
MERGE_RMSD = 1.0


def merge_poses(
    poses: Sequence[Chem.Mol], energies: np.ndarray, n_poses: int, energy_range: float
) -> tuple[list[Chem.Mol], np.ndarray]:
    """The poses of several searches of one ligand as one list, like one Vina search returns it.

    Parameters
    ----------
    poses, energies
        Every search's poses and the matching rows of their energy matrices (total first).
    n_poses, energy_range
        At most this many poses, within this many kcal/mol of the best.

    Returns
    -------
    (list of Chem.Mol, np.ndarray)
        Best first (stable for equal scores, so the first search wins a tie); a pose within
        :data:`MERGE_RMSD` of a better kept one is dropped.
    """
    from .rmsd import ligand_rmsd, symmetry_matches

    # every pose is the same molecule in the same atom order: its symmetries are computed once
    heavy, matches = symmetry_matches(poses[0])
    xyz = np.stack([pose.GetConformer().GetPositions() for pose in poses])

    def rmsd(i: int, j: int) -> float:
        return float(ligand_rmsd(xyz[i : i + 1], xyz[j], heavy, matches)[0])

    order = np.argsort(energies[:, 0], kind="stable")
    best = float(energies[order[0], 0])
    kept: list[int] = []
    for i in map(int, order):
        if len(kept) == n_poses or energies[i, 0] > best + energy_range:
            break
        if all(rmsd(i, j) >= MERGE_RMSD for j in kept):
            kept.append(i)
    return [poses[i] for i in kept], energies[kept]


def poses_to_rdkit(poses_pdbqt: str, compound_id: str) -> list[Chem.Mol]:
    """Turn Vina's multi-model PDBQT into RDKit molecules with all hydrogens, one per pose.

    Raises :class:`DockingError` when meeko cannot rebuild them (meeko raises plain
    ``RuntimeError``/``ValueError`` on PDBQT it cannot map back onto the molecule).
    """
    from meeko import PDBQTMolecule, RDKitMolCreate

    faults.inject(EXPORT_STAGE, compound_id)  # tests' hook before meeko (no-op unless VSCREEN_FAULTS)
    try:
        pdbqt_mol = PDBQTMolecule(poses_pdbqt, skip_typing=True)
        mols = RDKitMolCreate.from_pdbqt_mol(pdbqt_mol)
    except Exception as exc:  # noqa: BLE001 -- any meeko error is this ligand's, with its text
        raise DockingError(f"meeko could not rebuild the docked poses: {type(exc).__name__}: {exc}") from exc
    if not mols or mols[0] is None:
        raise DockingError("meeko could not rebuild the docked poses as molecules")
    mol = mols[0]
    poses = []
    for conf in mol.GetConformers():
        pose = Chem.Mol(mol)
        pose.RemoveAllConformers()
        pose.AddConformer(Chem.Conformer(conf), assignId=True)
        pose.SetProp("_Name", compound_id)
        poses.append(pose)
    return poses


def _pose_entry(
    compound_id: str, number: int, pose: Chem.Mol, energy: np.ndarray, seconds: float
) -> tuple[bytes, dict]:
    """One pose's ``(packed molecule with SD properties, table row)`` from a row of Vina's energy matrix."""
    row = dict(
        id=compound_id,
        pose=number,
        docking_score=float(energy[0]),
        inter=float(energy[1]),
        intra=float(energy[2]),
        torsional=float(energy[3]),
        intra_best_pose=float(energy[4]),
        dock_seconds=seconds,
    )
    for key in ("pose", "docking_score", "inter", "intra"):
        pose.SetProp(key, str(row[key]))
    return pack_mol(pose), row


def _dock_in_worker(docker: Docker, item: tuple) -> list[tuple[bytes, dict]]:
    """Isolated work of one ligand: ``(packed pose with SD properties, table row)`` per pose, best first.

    ``item`` is ``(id, pdbqt)`` or ``(id, pdbqt, other starting conformers' PDBQT)``.
    """
    compound_id, pdbqt, *rest = item
    conformers = list(rest[0]) if rest and rest[0] is not None else []
    start = time.perf_counter()
    poses, energies = docker.dock(compound_id, pdbqt, conformers)
    seconds = time.perf_counter() - start
    return [
        _pose_entry(compound_id, number, pose, energy, seconds)
        for number, (pose, energy) in enumerate(zip(poses, energies), start=1)
    ]


def _score_in_worker(docker: Docker, item: tuple[str, str]) -> list[tuple[bytes, dict]]:
    """Isolated work of one ligand in ``docking.mode: score_only``: its one pose and table row."""
    compound_id, pdbqt = item
    start = time.perf_counter()
    pose, energy = docker.score(compound_id, pdbqt)
    return [_pose_entry(compound_id, 1, pose, energy, time.perf_counter() - start)]


def _docking_reason(compound_id: str, exc: BaseException) -> str:
    """A :class:`DockingError` is the reason as written; anything else is a bug of Vina/meeko/ours, logged."""
    if isinstance(exc, DockingError):
        return str(exc)
    return unexpected_error(f"dock {compound_id}", exc)


def dock_chunk(
    ligands: str | Path,
    receptor_pdbqt: str | Path,
    box: Box,
    settings: DockingSettings,
    out_sdf: str | Path,
    out_table: str | Path,
    failures: str | Path,
) -> tuple[int, int]:
    """Dock every ligand of a prepared chunk; write poses SDF, pose table and failures.

    ``ligands`` is the Parquet table written by ligand preparation (needs ``id`` and
    ``pdbqt``). Returns ``(docked, failed)`` counts. A ligand that fails, crashes the
    docking worker or runs past ``settings.time_limit`` never stops the chunk; an
    unreadable receptor or box (the worker's ``init``) fails the job.
    """
    import pyarrow.parquet as pq

    # a table prepared before ligands.ring_conformers existed has no conformers column
    columns = ["pdbqt", "pdbqt_conformers"] if "pdbqt_conformers" in pq.read_schema(ligands).names else ["pdbqt"]
    return run_chunk(
        ligands,
        columns,
        _dock_in_worker,
        partial(Docker, receptor_pdbqt, box, settings),
        settings.time_limit,
        f"dock {Path(ligands).stem}",
        _docking_reason,
        out_sdf,
        out_table,
        failures,
    )


def score_chunk(
    ligands: str | Path,
    receptor_pdbqt: str | Path,
    box: Box,
    settings: DockingSettings,
    out_sdf: str | Path,
    out_table: str | Path,
    failures: str | Path,
) -> tuple[int, int]:
    """``docking.mode: score_only``: score every ligand of a prepared chunk in its input pose.

    Same inputs and outputs as :func:`dock_chunk`, with one pose per ligand (``pose`` 1):
    the pose the PDBQT holds, scored by ``Vina.score()`` against the maps of ``box``
    (``settings.scoring``, ``threads``, ``time_limit`` apply; the search settings do not).
    A ligand with an atom outside the box, or that fails, crashes the worker or runs past
    ``settings.time_limit``, is that ligand's failure and never stops the chunk.

    Parameters
    ----------
    ligands
        Ligand table Parquet written by ligand preparation with ``keep_poses`` (``id``, ``pdbqt``).
    receptor_pdbqt, box
        The prepared receptor and the run's box.
    settings
        Vina settings.
    out_sdf, out_table, failures
        Poses SDF, pose table (:data:`POSE_COLUMNS`) and failures CSV (stage ``dock``).

    Returns
    -------
    (int, int)
        ``(scored, failed)`` counts.
    """
    return run_chunk(
        ligands,
        "pdbqt",
        _score_in_worker,
        partial(Docker, receptor_pdbqt, box, settings),
        settings.time_limit,
        f"score {Path(ligands).stem} (score_only)",
        _docking_reason,
        out_sdf,
        out_table,
        failures,
    )


def run_chunk(
    ligands: str | Path,
    column: str | Sequence[str],
    work,
    init,
    time_limit: float | None,
    desc: str,
    describe_error,
    out_sdf: str | Path,
    out_table: str | Path,
    failures: str | Path,
) -> tuple[int, int]:
    """``work(state, (id, row[column]))`` for every ligand of a prepared chunk in isolated workers, then :func:`_write_chunk`.

    With several columns the item is ``(id, row[column_1], row[column_2], ...)``.
    """
    table = pd.read_parquet(ligands)
    columns = [column] if isinstance(column, str) else list(column)
    outcomes = run_isolated(
        zip(table["id"], zip(table["id"], *(table[c] for c in columns))),
        work,
        init=init,
        time_limit=time_limit,
        stage=STAGE,
        desc=desc,
        unit="lig",
        describe_error=describe_error,
    )
    return _write_chunk(len(table), outcomes, out_sdf, out_table, failures)


def _write_chunk(n: int, outcomes, out_sdf: str | Path, out_table: str | Path, failures: str | Path) -> tuple[int, int]:
    """Poses SDF, pose table and failures of a chunk from the isolated workers' outcomes; ``(posed, failed)``."""
    rows, failed = [], []
    with atomic_sdf(out_sdf) as writer:
        for cid, result, reason in outcomes:
            if reason is not None:
                failed.append(dict(id=cid, stage=STAGE, reason=reason))
                continue
            for packed, row in result:
                writer.write(unpack_mol(packed))
                rows.append(row)
    # typed even with no rows (every ligand failed): readers join on a string id and sort by numbers
    table = pd.DataFrame(rows, columns=POSE_COLUMNS).astype(POSE_DTYPES)
    write_parquet_atomic(table, out_table)
    write_failures(failed, failures)
    return n - len(failed), len(failed)
