"""A refinement job: many poses against one receptor, on one OpenMM platform.

Per job: the receptor is parameterized once (:func:`~pipeline.refine.system.load_receptor`,
plus a water box for explicit solvent), the platform is chosen once. Per pose:
ligand parameters, trimmed complex, minimization + dynamics, analysis, frame files.
A pose that fails anywhere (ligand the force field cannot type, blown-up
simulation, ...) becomes a failure row ``id, stage='refine', reason`` and the job
goes on (the reason starts with ``pose <k>:``, as a compound may have several
poses). Outputs, each written atomically (:mod:`pipeline.io`):

``out_sdf``
    Refined poses: the final frame's coordinates, hydrogens included, name = compound
    id, SD properties ``pose``, ``docking_score`` and the table's metrics.
``out_table``
    Parquet, one row per refined pose, columns :data:`REFINE_COLUMNS`:

    ``id, pose, docking_score``
        From the docked pose (score kcal/mol, Vina).
    ``rmsd_mean, rmsd_max, rmsd_final``
        Ligand heavy-atom RMSD (A) from the docked pose over the saved frames, in
        place, symmetry-aware.
    ``pocket_backbone_rmsd``
        Backbone heavy atoms of residues within ``free_shell``: final frame vs start (A).
    ``interaction_energy, interaction_energy_std``
        Mean and standard deviation over frames of E(complex) - E(receptor) - E(ligand)
        in OBC2 implicit solvent (kcal/mol; :mod:`pipeline.refine.analysis`).
    ``potential_energy_final``
        Potential energy of the simulated System at the last frame, restraints
        excluded (kcal/mol; includes water in explicit solvent).
    ``n_frames, platform, wall_seconds, n_atoms_simulated``
        Frames saved, OpenMM platform, seconds for the whole pose, particles simulated.
    ``frames``
        File name of the pocket frame PDB in ``out_frames_dir`` (the ligand SDF has
        the same stem); :func:`pipeline.refine.frames.read_frames` reads them.
    ``ligand_forcefield, solvent``
        ``MMFF94`` / ``openff-2.2.0`` ..., ``implicit`` / ``explicit``.
    ``seconds_minimize, seconds_dynamics``
        Where the time went (dynamics / ``length_ps`` gives the speed).
``out_frames_dir``
    Two frame files per pose (:mod:`pipeline.refine.frames`).
``failures_csv``
    Failure rows (header only when none).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from rdkit import Chem

from pipeline.io import atomic_path, write_failures, write_parquet_atomic
from pipeline.progress import progress

from .analysis import KJ_TO_KCAL, InteractionEnergy, in_place_rmsd, ligand_rmsd, symmetry_matches, with_coordinates
from .frames import frame_stem, write_frames
from .ligand import LigandForceField, ligand_force_field
from .protocol import PlatformChoice, RefineSettings, pose_seed, run_protocol, select_platform
from .system import ReceptorModel, SolvatedReceptor, build_complex, load_receptor, pocket_atoms, solvate_receptor

log = logging.getLogger(__name__)

__all__ = ["REFINE_COLUMNS", "STAGE", "RefineError", "RefineContext", "pose_key", "refine_pose", "refine_batch"]

STAGE = "refine"
#: Columns of the refinement table, in order (energies kcal/mol, distances Angstrom).
REFINE_COLUMNS = [
    "id", "pose", "docking_score", "rmsd_mean", "rmsd_max", "rmsd_final", "pocket_backbone_rmsd",
    "interaction_energy", "interaction_energy_std", "potential_energy_final", "n_frames", "platform",
    "wall_seconds", "n_atoms_simulated", "frames", "ligand_forcefield", "solvent", "seconds_minimize",
    "seconds_dynamics",
]
_METRICS_IN_SDF = ("rmsd_mean", "rmsd_max", "rmsd_final", "pocket_backbone_rmsd", "interaction_energy",
                   "interaction_energy_std", "potential_energy_final")


class RefineError(ValueError):
    """A job-level problem (receptor that amber14 cannot build, unusable platform); one sentence."""


@dataclass
class RefineContext:
    """What every pose of a job shares: receptor, water box, platform, ligand force field."""

    receptor: ReceptorModel
    settings: RefineSettings
    platform: PlatformChoice
    ligand_ff: LigandForceField
    solvated: SolvatedReceptor | None = None

    @classmethod
    def create(cls, receptor_pdb: str | os.PathLike, settings: RefineSettings) -> "RefineContext":
        """Parameterize the receptor (and its water box) and pick the platform, once per job.

        Raises
        ------
        RefineError
            The receptor PDB is missing or does not build with amber14, or the platform is unusable.
        """
        if not Path(receptor_pdb).is_file():
            raise RefineError(f"receptor PDB {receptor_pdb} does not exist; run prepare-receptor first")
        try:
            receptor = load_receptor(receptor_pdb)
        except (ValueError, KeyError) as exc:
            raise RefineError(f"receptor {receptor_pdb} does not build with amber14 + OBC2: "
                              f"{str(exc).splitlines()[0]}") from exc
        solvated = None
        if settings.solvent == "explicit":
            solvated = solvate_receptor(receptor, padding_nm=settings.water_padding / 10.0,
                                        ionic_strength_molar=settings.ionic_strength)
        try:
            platform = select_platform(settings.platform, settings.precision, settings.cpu_threads)
        except ValueError as exc:
            raise RefineError(str(exc)) from exc
        ligand_ff = ligand_force_field(settings.forcefield, settings.mmff_variant, settings.openff_forcefield)
        log.info("refine: receptor %s (%d atoms), platform %s %s, ligand force field %s, %s solvent",
                 receptor.path.name, receptor.n_atoms, platform.name, platform.properties, ligand_ff.name,
                 settings.solvent)
        return cls(receptor=receptor, settings=settings, platform=platform, ligand_ff=ligand_ff, solvated=solvated)


def pose_key(mol: Chem.Mol) -> tuple[str, int, float]:
    """``(id, pose, docking_score)`` of a docked pose (name, SD props ``pose`` and ``docking_score``)."""
    compound_id = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    pose = int(float(mol.GetProp("pose"))) if mol.HasProp("pose") else 1
    score = float(mol.GetProp("docking_score")) if mol.HasProp("docking_score") else math.nan
    return compound_id, pose, score


def refine_pose(mol: Chem.Mol, ctx: RefineContext, frames_dir: str | os.PathLike | None = None
                ) -> tuple[Chem.Mol, dict]:
    """Refine one docked pose.

    Parameters
    ----------
    mol : Chem.Mol
        Docked pose with all hydrogens, in the receptor's frame (Angstrom).
    ctx : RefineContext
        The job's shared state.
    frames_dir : path or None
        Where to write the frame files (None: not written).

    Returns
    -------
    (Chem.Mol, dict)
        The refined pose (final frame) and its table row (:data:`REFINE_COLUMNS`).

    Raises
    ------
    LigandParameterizationError, SimulationError, ValueError
        The pose cannot be refined; the job records the message.
    """
    start = time.perf_counter()
    s = ctx.settings
    compound_id, pose, score = pose_key(mol)
    ligand = ctx.ligand_ff.parameterize(mol)
    cx = build_complex(
        ctx.receptor, ligand, mol, pocket_cutoff=s.pocket_cutoff, free_shell=s.free_shell,
        restraint_k=s.restraint_k, restrain=s.restrain, frame_cutoff=s.frame_cutoff,
        nonbonded_cutoff=s.nonbonded_cutoff, constraints=True, hydrogen_mass=s.hydrogen_mass if s.hmr else None,
        solvated=ctx.solvated)
    trajectory = run_protocol(cx, s, ctx.platform, pose_seed(s.seed, compound_id, pose))

    start_xyz = cx.positions_nm
    lig_frames = trajectory.frames_nm[:, cx.ligand] * 10.0
    heavy, matches = symmetry_matches(mol)
    rmsd = ligand_rmsd(lig_frames, start_xyz[cx.ligand] * 10.0, heavy, matches)
    final = trajectory.frames_nm[-1]
    backbone = in_place_rmsd(final[cx.pocket_backbone] * 10.0, start_xyz[cx.pocket_backbone] * 10.0)

    # interaction energies on the implicit-solvent pocket (the simulated atoms in implicit solvent)
    eval_atoms = (cx.receptor_atoms if ctx.solvated is None
                  else pocket_atoms(ctx.receptor, start_xyz[cx.ligand], s.pocket_cutoff or 10.0))
    in_complex = np.searchsorted(cx.receptor_atoms, eval_atoms)
    cutoff_nm = None if s.nonbonded_cutoff is None else s.nonbonded_cutoff / 10.0
    evaluate = InteractionEnergy(ctx.receptor, ligand, eval_atoms, cutoff_nm, ctx.platform)
    interaction = np.array([evaluate(frame[in_complex], frame[cx.ligand])["interaction"]
                            for frame in trajectory.frames_nm]) * KJ_TO_KCAL

    stem = frame_stem(compound_id, pose)
    if frames_dir is not None:
        write_frames(Path(frames_dir) / stem, cx.frame_topology, trajectory.frames_nm[:, cx.frame_atoms],
                     mol, lig_frames, trajectory.times_ps, interaction)
    row = dict(
        id=compound_id, pose=pose, docking_score=score, rmsd_mean=float(rmsd.mean()), rmsd_max=float(rmsd.max()),
        rmsd_final=float(rmsd[-1]), pocket_backbone_rmsd=backbone, interaction_energy=float(interaction.mean()),
        interaction_energy_std=float(interaction.std()),
        potential_energy_final=float(trajectory.potential_kj[-1] * KJ_TO_KCAL), n_frames=trajectory.n_frames,
        platform=ctx.platform.name, wall_seconds=0.0, n_atoms_simulated=cx.n_atoms, frames=f"{stem}.pdb",
        ligand_forcefield=ligand.name, solvent=s.solvent, seconds_minimize=trajectory.seconds_minimize,
        seconds_dynamics=trajectory.seconds_dynamics)
    row["wall_seconds"] = time.perf_counter() - start
    props = dict(pose=pose, docking_score=score, **{k: row[k] for k in _METRICS_IN_SDF})
    refined = with_coordinates(mol, lig_frames[-1], props)
    refined.SetProp("_Name", compound_id)
    log.debug("refined %s pose %d: %s", compound_id, pose, row)
    return refined, row


def _failure_reason(pose: int, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"pose {pose}: {text}"[:500]


def refine_batch(receptor_pdb: str | os.PathLike, poses: Sequence[Chem.Mol], settings: RefineSettings,
                 out_sdf: str | os.PathLike, out_table: str | os.PathLike, out_frames_dir: str | os.PathLike,
                 failures_csv: str | os.PathLike, known_failures: Sequence[dict] = ()) -> tuple[int, int]:
    """Refine a batch of docked poses against one receptor; write every output.

    Parameters
    ----------
    receptor_pdb : path
        MD-ready receptor (``results/<run>/receptor/receptor.pdb``).
    poses : sequence of Chem.Mol
        Docked poses with hydrogens (name = id, SD props ``pose``, ``docking_score``),
        e.g. from :func:`pipeline.refine.selection.load_poses`.
    settings : RefineSettings
    out_sdf, out_table, out_frames_dir, failures_csv : path
        Outputs (see module docstring).
    known_failures : sequence of dict
        Failure rows found before the job (e.g. the ones
        :func:`pipeline.refine.selection.load_poses` returns
        for selected poses missing from the SDFs); written first to ``failures_csv``.

    Returns
    -------
    (int, int)
        Poses refined and poses failed (``known_failures`` included).

    Raises
    ------
    RefineError
        The receptor cannot be parameterized or the platform is unusable (job-level
        problems; single poses never raise).
    """
    poses = list(poses)
    rows, refined = [], []
    failures = [dict(row) for row in known_failures]
    ctx = RefineContext.create(receptor_pdb, settings) if poses else None
    for mol in progress(poses, total=len(poses), desc=f"refine {Path(out_table).stem}", unit="pose"):
        compound_id, pose, _ = pose_key(mol)
        try:
            out_mol, row = refine_pose(mol, ctx, out_frames_dir)
        except Exception as exc:  # noqa: BLE001 -- one bad pose must never stop the batch
            log.warning("refine %s pose %d failed: %s", compound_id, pose, exc)
            failures.append(dict(id=compound_id, stage=STAGE, reason=_failure_reason(pose, exc)))
            continue
        refined.append(out_mol)
        rows.append(row)
    with atomic_path(out_sdf) as tmp:
        writer = Chem.SDWriter(str(tmp))
        for mol in refined:
            writer.write(mol)
        writer.close()
    write_parquet_atomic(pd.DataFrame(rows, columns=REFINE_COLUMNS), out_table)
    write_failures(failures, failures_csv)
    Path(out_frames_dir).mkdir(parents=True, exist_ok=True)
    return len(rows), len(failures)
