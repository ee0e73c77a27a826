"""A refinement job: many poses against one receptor, on one OpenMM platform.

Per job: the receptor is parameterized once (:func:`~pipeline.refine.system.load_receptor`,
plus a water box for explicit solvent), the platform is chosen once. Per pose:
ligand parameters, trimmed complex, minimization + dynamics, analysis, frame files.
A pose that fails anywhere (ligand the force field cannot type, blown-up
simulation, ...) becomes a failure row ``id, stage='refine', reason`` and the job
goes on (the reason starts with ``pose <k>:``, as a compound may have several
poses). The poses run in an isolated worker process (:mod:`pipeline.isolation`,
started with ``spawn`` so that CUDA works in it) that parameterizes the receptor once
per start: a pose that crashes OpenMM (``pose <k>: crashed: ...``) or runs past
``refine.time_limit`` (``pose <k>: time limit (N s) exceeded``) costs only that pose.
Outputs, each written atomically (:mod:`pipeline.io`):

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
        ``MMFF94`` / ``openff-2.2.1`` ..., ``implicit`` / ``explicit``.
    ``seconds_minimize, seconds_dynamics``
        Where the time went (dynamics: warm-up and production of every attempt).
    ``md_attempts, md_retry_reason, md_timestep_fs``
        1, or 2 when the first attempt blew up and the retry (``refine.retry_timestep_fs``,
        natural hydrogen masses) produced the frames; why the first attempt was retried
        (empty when it was not); the production time step of the frames (fs). See
        :mod:`pipeline.refine.protocol`, "Warm-up, blow-ups and the retry".
``out_frames_dir``
    Two frame files per pose (:mod:`pipeline.refine.frames`).
``failures_csv``
    Failure rows (header only when none).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from pipeline import faults
from pipeline.errors import VscreenError
from pipeline.io import atomic_sdf, write_failures, write_parquet_atomic
from pipeline.isolation import pack_mol, run_isolated, unpack_mol

from .analysis import KJ_TO_KCAL, InteractionEnergy, in_place_rmsd, ligand_rmsd, symmetry_matches, with_coordinates
from .frames import frame_stem, write_frames
from .ligand import LigandForceField, LigandParameters, ligand_force_field
from .protocol import FAULT_STAGE, PlatformChoice, RefineSettings, pose_seed, run_protocol, select_platform
from .system import (
    ComplexSystem,
    ReceptorModel,
    SolvatedReceptor,
    build_complex,
    load_receptor,
    pocket_atoms,
    solvate_receptor,
)

log = logging.getLogger(__name__)

__all__ = [
    "REFINE_COLUMNS",
    "STAGE",
    "RefineError",
    "RefineContext",
    "pose_key",
    "refine_pose",
    "refine_batch",
    "count_retries",
]

STAGE = "refine"
#: Columns of the refinement table, in order (energies kcal/mol, distances Angstrom).
REFINE_COLUMNS = [
    "id",
    "pose",
    "docking_score",
    "rmsd_mean",
    "rmsd_max",
    "rmsd_final",
    "pocket_backbone_rmsd",
    "interaction_energy",
    "interaction_energy_std",
    "potential_energy_final",
    "n_frames",
    "platform",
    "wall_seconds",
    "n_atoms_simulated",
    "frames",
    "ligand_forcefield",
    "solvent",
    "seconds_minimize",
    "seconds_dynamics",
    "md_attempts",
    "md_retry_reason",
    "md_timestep_fs",
]
_METRICS_IN_SDF = (
    "rmsd_mean",
    "rmsd_max",
    "rmsd_final",
    "pocket_backbone_rmsd",
    "interaction_energy",
    "interaction_energy_std",
    "potential_energy_final",
)


class RefineError(VscreenError, ValueError):
    """A job-level problem (receptor that amber14 cannot build, unusable platform); one sentence."""


#: Ligands whose parameters a worker keeps (its batch's compounds come to it one by one, poses together).
LIGAND_CACHE_SIZE = 16


def ligand_signature(mol: Chem.Mol) -> tuple:
    """What a ligand's force-field parameters depend on: name, atoms in order, bonds, charges.

    Poses of one compound share it (same molecule, other coordinates); parameters are
    index-based, so the atom order is part of it.
    """
    atoms = tuple((a.GetAtomicNum(), a.GetFormalCharge(), a.GetIsAromatic()) for a in mol.GetAtoms())
    bonds = tuple((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), b.GetBondTypeAsDouble()) for b in mol.GetBonds())
    return pose_key(mol)[0], atoms, bonds


@dataclass
class RefineContext:
    """What every pose of a job shares: receptor, water box, platform, ligand force field.

    ``ligand_cache`` keeps the parameters of the last :data:`LIGAND_CACHE_SIZE` ligands
    (by :func:`ligand_signature`), so a compound's second and later poses skip the ligand
    force field (OpenFF's NAGL charges take about 2 s a molecule); ``ligand_hits`` counts
    the poses that reused them.
    """

    receptor: ReceptorModel
    settings: RefineSettings
    platform: PlatformChoice
    ligand_ff: LigandForceField
    solvated: SolvatedReceptor | None = None
    ligand_cache: OrderedDict = field(default_factory=OrderedDict)
    ligand_hits: int = 0

    def ligand_parameters(self, mol: Chem.Mol) -> LigandParameters:
        """The ligand force field's parameters of ``mol``, computed once per compound.

        Raises
        ------
        LigandParameterizationError
            As :meth:`LigandForceField.parameterize` (a failure is not kept: it is raised again
            for the next pose, by a new attempt).
        """
        key = ligand_signature(mol)
        if key in self.ligand_cache:
            self.ligand_cache.move_to_end(key)
            self.ligand_hits += 1
            return self.ligand_cache[key]
        parameters = self.ligand_ff.parameterize(mol)
        self.ligand_cache[key] = parameters
        while len(self.ligand_cache) > LIGAND_CACHE_SIZE:
            self.ligand_cache.popitem(last=False)
        return parameters

    @classmethod
    def create(cls, receptor_pdb: str | os.PathLike, settings: RefineSettings) -> RefineContext:
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
            raise RefineError(
                f"receptor {receptor_pdb} does not build with amber14 + OBC2: {str(exc).splitlines()[0]}"
            ) from exc
        solvated = None
        if settings.solvent == "explicit":
            solvated = solvate_receptor(
                receptor, padding_nm=settings.water_padding / 10.0, ionic_strength_molar=settings.ionic_strength
            )
        try:
            platform = select_platform(settings.platform, settings.precision, settings.cpu_threads)
        except ValueError as exc:
            raise RefineError(str(exc)) from exc
        ligand_ff = ligand_force_field(settings.forcefield, settings.mmff_variant, settings.openff_forcefield)
        log.info(
            "refine: receptor %s (%d atoms), platform %s %s, ligand force field %s, %s solvent",
            receptor.path.name,
            receptor.n_atoms,
            platform.name,
            platform.properties,
            ligand_ff.name,
            settings.solvent,
        )
        return cls(receptor=receptor, settings=settings, platform=platform, ligand_ff=ligand_ff, solvated=solvated)


def pose_key(mol: Chem.Mol) -> tuple[str, int, float]:
    """``(id, pose, docking_score)`` of a docked pose (name, SD props ``pose`` and ``docking_score``)."""
    compound_id = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    pose = int(float(mol.GetProp("pose"))) if mol.HasProp("pose") else 1
    score = float(mol.GetProp("docking_score")) if mol.HasProp("docking_score") else math.nan
    return compound_id, pose, score


def refine_pose(
    mol: Chem.Mol, ctx: RefineContext, frames_dir: str | os.PathLike | None = None
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
    ligand = ctx.ligand_parameters(mol)
    cx = build_complex(
        ctx.receptor,
        ligand,
        mol,
        pocket_cutoff=s.pocket_cutoff,
        free_shell=s.free_shell,
        restraint_k=s.restraint_k,
        restrain=s.restrain,
        frame_cutoff=s.frame_cutoff,
        nonbonded_cutoff=s.nonbonded_cutoff,
        constraints=True,
        hydrogen_mass=s.hydrogen_mass if s.hmr else None,
        solvated=ctx.solvated,
    )
    if faults.inject(STAGE, compound_id) == "blowup":  # tests' hook: this pose's MD blows up for real
        cx = _blown_up(cx)
    trajectory = run_protocol(
        cx,
        s,
        ctx.platform,
        pose_seed(s.seed, compound_id, pose),
        # tests' hook (refine-md:<id>:blowup[-once]): an attempt's production blows up for real
        blow_up=lambda attempt: faults.inject(FAULT_STAGE, compound_id) == "blowup",
    )

    start_xyz = cx.positions_nm
    lig_frames = trajectory.frames_nm[:, cx.ligand] * 10.0
    heavy, matches = symmetry_matches(mol)
    rmsd = ligand_rmsd(lig_frames, start_xyz[cx.ligand] * 10.0, heavy, matches)
    final = trajectory.frames_nm[-1]
    backbone = in_place_rmsd(final[cx.pocket_backbone] * 10.0, start_xyz[cx.pocket_backbone] * 10.0)

    # interaction energies on the implicit-solvent pocket (the simulated atoms in implicit solvent)
    eval_atoms = (
        cx.receptor_atoms
        if ctx.solvated is None
        else pocket_atoms(ctx.receptor, start_xyz[cx.ligand], s.pocket_cutoff or 10.0)
    )
    in_complex = np.searchsorted(cx.receptor_atoms, eval_atoms)
    cutoff_nm = None if s.nonbonded_cutoff is None else s.nonbonded_cutoff / 10.0
    evaluate = InteractionEnergy(ctx.receptor, ligand, eval_atoms, cutoff_nm, ctx.platform)
    interaction = (
        np.array([evaluate(frame[in_complex], frame[cx.ligand])["interaction"] for frame in trajectory.frames_nm])
        * KJ_TO_KCAL
    )

    stem = frame_stem(compound_id, pose)
    if frames_dir is not None:
        write_frames(
            Path(frames_dir) / stem,
            cx.frame_topology,
            trajectory.frames_nm[:, cx.frame_atoms],
            mol,
            lig_frames,
            trajectory.times_ps,
            interaction,
        )
    row = dict(
        id=compound_id,
        pose=pose,
        docking_score=score,
        rmsd_mean=float(rmsd.mean()),
        rmsd_max=float(rmsd.max()),
        rmsd_final=float(rmsd[-1]),
        pocket_backbone_rmsd=backbone,
        interaction_energy=float(interaction.mean()),
        interaction_energy_std=float(interaction.std()),
        potential_energy_final=float(trajectory.potential_kj[-1] * KJ_TO_KCAL),
        n_frames=trajectory.n_frames,
        platform=ctx.platform.name,
        wall_seconds=0.0,
        n_atoms_simulated=cx.n_atoms,
        frames=f"{stem}.pdb",
        ligand_forcefield=ligand.name,
        solvent=s.solvent,
        seconds_minimize=trajectory.seconds_minimize,
        seconds_dynamics=trajectory.seconds_dynamics,
        md_attempts=trajectory.attempts,
        md_retry_reason=trajectory.retry_reason[:500],
        md_timestep_fs=trajectory.step_fs,
    )
    row["wall_seconds"] = time.perf_counter() - start
    props = dict(pose=pose, docking_score=score, **{k: row[k] for k in _METRICS_IN_SDF})
    refined = with_coordinates(mol, lig_frames[-1], props)
    refined.SetProp("_Name", compound_id)
    log.debug("refined %s pose %d: %s", compound_id, pose, row)
    return refined, row


def _blown_up(cx: ComplexSystem) -> ComplexSystem:
    """The complex with the ligand's first heavy atom put exactly onto the nearest receptor heavy atom.

    Fault injection (``refine:<id>:blowup``): two atoms at one point make the
    Lennard-Jones energy infinite, so the protocol's own NaN / energy checks
    (:class:`~pipeline.refine.protocol.SimulationError`) fail the pose, as for a real clash.
    """
    xyz = np.array(cx.positions_nm, dtype=float, copy=True)
    heavy = np.array([a.index for a in cx.topology.atoms() if a.element is not None and a.element.symbol != "H"])
    in_ligand = (heavy >= (cx.ligand.start or 0)) & (heavy < cx.ligand.stop)
    target = heavy[in_ligand][0]
    receptor = heavy[~in_ligand]
    nearest = receptor[np.argmin(np.linalg.norm(xyz[receptor] - xyz[target], axis=1))]
    xyz[target] = xyz[nearest]
    return dataclasses.replace(cx, positions_nm=xyz)


def _reason_text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _failure_reason(pose: int, exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else _reason_text(exc)
    return f"pose {pose}: {text}"[:500]


def _refine_in_worker(frames_dir: str | os.PathLike, ctx: RefineContext, packed: bytes) -> tuple[bytes, dict]:
    """Isolated work of one pose: the packed refined pose and its table row (frames written here)."""
    refined, row = refine_pose(unpack_mol(packed), ctx, frames_dir)
    return pack_mol(refined), row


def _compound_of(key: Hashable) -> Hashable:
    """The compound id of a pose key ``(id, pose)``."""
    assert isinstance(key, tuple)
    return key[0]


def _refine_error(key: tuple[str, int], exc: BaseException) -> str:
    """Reason of a pose that raised in the worker (the parent adds ``pose <k>:``)."""
    compound_id, pose = key
    log.warning("refine %s pose %d failed: %s", compound_id, pose, exc)
    return _reason_text(exc)


def _remove_partial_frames(frames_dir: str | os.PathLike, compound_id: str, pose: int) -> None:
    """Temporary frame files a killed worker left behind (its atomic writes never reached the rename)."""
    for tmp in Path(frames_dir).glob(f".{frame_stem(compound_id, pose)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def refine_batch(
    receptor_pdb: str | os.PathLike,
    poses: Sequence[Chem.Mol],
    settings: RefineSettings,
    out_sdf: str | os.PathLike,
    out_table: str | os.PathLike,
    out_frames_dir: str | os.PathLike,
    failures_csv: str | os.PathLike,
    known_failures: Sequence[dict] = (),
) -> tuple[int, int]:
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
        problems, raised by the worker's start; single poses never raise, whether they
        fail, crash the worker or run past ``settings.time_limit``).
    """
    poses = list(poses)
    rows, refined = [], []
    failures = [dict(row) for row in known_failures]
    items = [(pose_key(mol)[:2], pack_mol(mol)) for mol in poses]
    outcomes = run_isolated(
        items,
        partial(_refine_in_worker, out_frames_dir),
        init=partial(RefineContext.create, receptor_pdb, settings),
        time_limit=settings.time_limit,
        stage=STAGE,
        desc=f"refine {Path(out_table).stem}",
        unit="pose",
        describe_error=_refine_error,
        start_method="spawn",
        processes=settings.workers,
        group=_compound_of,  # a compound's poses to one worker, which reuses its ligand parameters
    )
    for (compound_id, pose), result, reason in outcomes:
        if reason is not None:
            _remove_partial_frames(out_frames_dir, compound_id, pose)
            failures.append(dict(id=compound_id, stage=STAGE, reason=_failure_reason(pose, reason)))
            continue
        packed, row = result
        refined.append(unpack_mol(packed))
        rows.append(row)
    with atomic_sdf(out_sdf) as writer:
        for mol in refined:
            writer.write(mol)
    write_parquet_atomic(pd.DataFrame(rows, columns=REFINE_COLUMNS), out_table)
    write_failures(failures, failures_csv)
    Path(out_frames_dir).mkdir(parents=True, exist_ok=True)
    log.info(
        "refine %s: %d poses refined (%d after a retry), %d failed",
        Path(out_table).stem,
        len(rows),
        count_retries(rows),
        len(failures),
    )
    return len(rows), len(failures)


def count_retries(rows: Sequence[dict] | pd.DataFrame) -> int:
    """Refined poses whose frames come from the retry (``md_attempts`` > 1) in table rows or a table."""
    if isinstance(rows, pd.DataFrame):
        return int((rows["md_attempts"] > 1).sum()) if "md_attempts" in rows.columns else 0
    return sum(int(row.get("md_attempts", 1)) > 1 for row in rows)
