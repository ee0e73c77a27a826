"""The refinement protocol: settings, platform choice, minimization and Langevin dynamics.

One pose = energy minimization (L-BFGS, restraints on), a short restrained warm-up,
then Langevin dynamics (``LangevinMiddleIntegrator``) at ``temperature_k``, with a
frame saved every ``frame_interval_ps`` of the production run.

Warm-up, blow-ups and the retry
-------------------------------
The warm-up (``warmup_ps`` at ``warmup_timestep_fs``) heats the minimized complex in
:data:`WARMUP_STAGES` steps from ``temperature_k / WARMUP_STAGES`` to ``temperature_k``
with every heavy atom of the ligand and the protein held to its minimized position
(``warmup_restraint_k``): the forces left by a 100-iteration minimization of a docked
pose are spent at a small step, on a structure that cannot move far, before the 4 fs
production step. The restraint is switched off (its force constant set to 0) for
production.

A *blow-up* is any of: NaN coordinates (OpenMM's "Particle coordinate is NaN"), a NaN
potential energy, a potential energy above ``energy_limit_kj`` (two atoms on top of
each other), or a potential energy more than ``energy_rise_per_atom_kj`` x atoms above
the minimized energy. The last bound is about five times the thermal rise (at 300 K
equipartition puts about 1.5 kT = 3.7 kJ/mol per atom into the potential energy): a
run that crosses it is heating up, not fluctuating. It is checked at the end of each
warm-up stage and at each frame.

A blow-up in the warm-up or production of the first attempt is retried once
(``retry_timestep_fs``, 2 fs by default) from the *minimized* structure, with natural
hydrogen masses (no HMR) and a fresh seed (:func:`retry_seed`): 4 fs HMR steps are what
blow up in practice (MMFF94 aryl nitriles in ``benchmarks/forcefield_compare.py``), 2 fs
without HMR runs them. :class:`Trajectory` records the attempts and why the first one
failed. A blow-up of the retry, or in minimization itself (a clash that minimization
cannot resolve: the retry would start from the same broken structure), raises
:class:`SimulationError`; the job turns it into a failure row and goes on with the
next pose.

Default protocol and why
------------------------
On the CPU platform, OBC2 implicit solvent costs about ten times the Coulomb and
Lennard-Jones terms, so every default is chosen to fit a pose well inside a minute
on two cores: a 10 A pocket (1,400-1,900 atoms for the demo and 1iep ligands),
1.0 nm cutoffs, hydrogen-mass repartitioning (H = 3 amu, Hopkins et al. JCTC 2015)
with a 4 fs step, at most 100 minimizer iterations, a 0.2 ps warm-up at 2 fs (100
steps, a fifth of the production's), and :data:`DEFAULT_LENGTH_PS` of dynamics
(``benchmarks/md_speed.py`` measures it; ``benchmarks/md_stability.py`` counts
blow-ups and retries over a panel of poses). That is a short relaxation
in the docked site - enough to resolve clashes, let side chains and the ligand
settle, and tell a stable pose from a misplaced one - not sampling. On a GPU,
raise ``length_ps``.

Minimization runs on a copy of the System without hydrogen constraints (their
harmonic terms are present): OpenMM's minimizer enforces constraints by repeated
penalty rounds, which made it four times slower. Dynamics then starts from the
minimized coordinates with the constraints applied.

Reproducibility: a pose's seed is :func:`pose_seed` (run seed, id, pose number).
On the CPU platform with one thread (the default ``cpu_threads=1``) and on CUDA
(``DeterministicForces``) the same seed gives the same trajectory bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import openmm
from openmm import app, unit

from ..config import schema_default, schema_field
from .system import KCAL_PER_A2_TO_KJ_PER_NM2, RESTRAINT_GROUP, ComplexSystem, restraint_force

log = logging.getLogger(__name__)

__all__ = [
    "RefineSettings",
    "PlatformChoice",
    "SimulationError",
    "Trajectory",
    "select_platform",
    "pose_seed",
    "run_protocol",
    "attempt_plan",
    "Attempt",
    "retry_seed",
    "DEFAULT_LENGTH_PS",
    "PLATFORM_ORDER",
    "WARMUP_STAGES",
    "FAULT_STAGE",
]

#: Dynamics per pose by default (ps); chosen so a CPU pose takes under a minute (see module docstring).
DEFAULT_LENGTH_PS = schema_default("refine", "length_ps")
#: Platforms tried, fastest first, when ``platform="auto"``.
PLATFORM_ORDER = ("CUDA", "OpenCL", "CPU", "Reference")
#: Energy groups reported as "potential energy": everything but the positional restraints.
ENERGY_GROUPS = 0xFFFFFFFF & ~(1 << RESTRAINT_GROUP)
#: The warm-up heats in this many equal stages, to temperature_k * k / WARMUP_STAGES at stage k.
WARMUP_STAGES = 4
#: Fault-injection stage of one MD attempt (``VSCREEN_FAULTS="refine-md:<id>:blowup"``, :mod:`pipeline.faults`).
FAULT_STAGE = "refine-md"
#: An injected blow-up runs the attempt's production steps this many times longer than asked.
FAULT_STEP_FACTOR = 50.0
#: Residues left free in the warm-up: water and monatomic ions relax the solvent around the restrained solute.
_SOLVENT_NAMES = frozenset({"HOH", "WAT", "TIP3", "SOL", "NA", "CL", "K", "Na+", "Cl-"})


class SimulationError(RuntimeError):
    """A pose whose simulation blew up (NaN or huge energy); the message is a failure reason."""


@dataclass(frozen=True)
class RefineSettings:
    """Settings of the refinement stage (config section ``refine`` plus the run seed).

    System
    ------
    forcefield : {"mmff", "openff"}
        Ligand force field (:mod:`pipeline.refine.ligand`); the protein is always amber14.
    mmff_variant : {"MMFF94", "MMFF94s"}
    openff_forcefield : str
        SMIRNOFF force field for ``forcefield="openff"``: a Sage ``.offxml`` that the
        ``openforcefields`` package ships, ``.offxml`` optional (default
        :data:`~pipeline.refine.ligand.DEFAULT_OPENFF_FORCEFIELD`, ``openff-2.2.1``; its AM1-BCC
        charges come from NAGL's ``openff-gnn-am1bcc-1.0.0.pt`` when AmberTools is absent).
    solvent : {"implicit", "explicit"}
        OBC2 implicit solvent on a trimmed pocket, or TIP3P/PME around the whole receptor.
    pocket_cutoff : float or None
        Angstrom; receptor residues with an atom this close to the ligand are simulated
        (implicit solvent only). None simulates the whole receptor.
    free_shell : float
        Angstrom; residues closer than this to the ligand are unrestrained.
    restraint_k : float
        kcal/mol/A^2 on restrained atoms (0 = none).
    restrain : {"backbone", "heavy"}
        Atoms restrained in residues outside ``free_shell``.
    nonbonded_cutoff : float or None
        Angstrom; cutoff of Coulomb, Lennard-Jones and GB in implicit solvent (None = none).
    frame_cutoff : float
        Angstrom; residues this close to the docked ligand are written to frame files.
    water_padding : float
        Angstrom of water around the receptor (explicit solvent).
    ionic_strength : float
        Molar NaCl (explicit solvent).

    Protocol
    --------
    minimize_iterations : int
        L-BFGS iteration cap (0 = until converged).
    minimize_tolerance : float
        kJ/mol/nm, RMS-force convergence criterion of the minimizer.
    length_ps : float
        Dynamics per pose.
    timestep_fs : float or None
        None: 4 fs with ``hmr``, else 2 fs (bonds to hydrogen constrained either way).
    hmr : bool
        Hydrogen-mass repartitioning to ``hydrogen_mass`` amu.
    hydrogen_mass : float
    temperature_k : float
    friction_per_ps : float
    frame_interval_ps : float
        A frame (coordinates, energies) every this many ps of production.
    warmup_ps : float
        Restrained heating before production (0 = none; see the module docstring).
    warmup_timestep_fs : float
        Time step of the warm-up (a retry uses the smaller of it and ``retry_timestep_fs``).
    warmup_restraint_k : float
        kcal/mol/A^2 on every heavy atom of the ligand and the protein during the warm-up.
    retry_timestep_fs : float or None
        Time step of the one retry of a blown-up pose (natural hydrogen masses, from the
        minimized structure); None = no retry.
    seed : int
        Run seed; each pose gets :func:`pose_seed` of it.
    platform : {"auto", "CUDA", "OpenCL", "CPU", "Reference"}
    precision : {"auto", "single", "mixed", "double"}
        GPU platforms only; ``auto`` = mixed.
    cpu_threads : int or None
        CPU platform threads. The default 1 makes CPU runs bitwise reproducible for a
        seed (with more threads OpenMM's force summation order varies between runs
        and trajectories drift apart at the 1e-3 level within 0.5 ps); run one job
        per core instead. None = OpenMM's default (all cores).
    workers : int
        Poses in flight per job (:func:`pipeline.refine.refine_batch`): isolated worker
        processes that take the batch's compounds side by side, all on the job's platform
        (on a GPU, one pose's CPU work overlaps another's dynamics). A compound's poses go
        to one worker, which parameterizes its ligand once. Results do not depend on it.
    energy_limit_kj : float
        A potential energy above this (kJ/mol) counts as a blown-up simulation.
    energy_rise_per_atom_kj : float or None
        A potential energy more than this many kJ/mol per simulated atom above the
        minimized energy counts as a blow-up too (None = only ``energy_limit_kj``).
    time_limit : float or None
        Wall-clock seconds per pose (ligand parameters, minimization, dynamics, analysis)
        before the job's worker process is killed and the pose becomes a failure
        (:mod:`pipeline.isolation`); None = no limit.
    """

    forcefield: str = schema_field("refine", "forcefield")
    mmff_variant: str = schema_field("refine", "mmff_variant")
    openff_forcefield: str = schema_field("refine", "openff_forcefield")
    solvent: str = schema_field("refine", "solvent")
    pocket_cutoff: float | None = schema_field("refine", "pocket_cutoff")
    free_shell: float = schema_field("refine", "free_shell")
    restraint_k: float = schema_field("refine", "restraint_k")
    restrain: str = schema_field("refine", "restrain")
    nonbonded_cutoff: float | None = schema_field("refine", "nonbonded_cutoff")
    frame_cutoff: float = schema_field("refine", "frame_cutoff")
    water_padding: float = schema_field("refine", "water_padding")
    ionic_strength: float = schema_field("refine", "ionic_strength")
    minimize_iterations: int = schema_field("refine", "minimize_iterations")
    minimize_tolerance: float = schema_field("refine", "minimize_tolerance")
    length_ps: float = schema_field("refine", "length_ps")
    timestep_fs: float | None = schema_field("refine", "timestep_fs")
    hmr: bool = schema_field("refine", "hmr")
    hydrogen_mass: float = schema_field("refine", "hydrogen_mass")
    temperature_k: float = schema_field("refine", "temperature_k")
    friction_per_ps: float = schema_field("refine", "friction_per_ps")
    frame_interval_ps: float = schema_field("refine", "frame_interval_ps")
    warmup_ps: float = schema_field("refine", "warmup_ps")
    warmup_timestep_fs: float = schema_field("refine", "warmup_timestep_fs")
    warmup_restraint_k: float = schema_field("refine", "warmup_restraint_k")
    retry_timestep_fs: float | None = schema_field("refine", "retry_timestep_fs")
    seed: int = schema_field("seed")
    platform: str = schema_field("refine", "platform")
    precision: str = schema_field("refine", "precision")
    cpu_threads: int | None = schema_field("refine", "cpu_threads")
    workers: int = schema_field("refine", "workers")
    energy_limit_kj: float = schema_field("refine", "energy_limit_kj")
    energy_rise_per_atom_kj: float | None = schema_field("refine", "energy_rise_per_atom_kj")
    time_limit: float | None = schema_field("refine", "time_limit")

    def __post_init__(self) -> None:
        choices = dict(
            forcefield=("mmff", "openff"),
            solvent=("implicit", "explicit"),
            restrain=("backbone", "heavy"),
            mmff_variant=("MMFF94", "MMFF94s"),
            platform=("auto",) + PLATFORM_ORDER,
            precision=("auto", "single", "mixed", "double"),
        )
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"refine.{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        positive = [
            "length_ps",
            "frame_interval_ps",
            "temperature_k",
            "hydrogen_mass",
            "frame_cutoff",
            "warmup_timestep_fs",
        ]
        for key in positive:
            if not getattr(self, key) > 0:
                raise ValueError(f"refine.{key} must be positive; got {getattr(self, key)!r}")
        at_least_zero = (
            "restraint_k",
            "minimize_iterations",
            "free_shell",
            "friction_per_ps",
            "ionic_strength",
            "warmup_ps",
            "warmup_restraint_k",
        )
        for key in at_least_zero:
            if getattr(self, key) < 0:
                raise ValueError(f"refine.{key} must be >= 0; got {getattr(self, key)!r}")
        for key in (
            "pocket_cutoff",
            "nonbonded_cutoff",
            "timestep_fs",
            "time_limit",
            "retry_timestep_fs",
            "energy_rise_per_atom_kj",
        ):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"refine.{key} must be positive or null; got {value!r}")
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"refine.workers must be an integer >= 1; got {self.workers!r}")
        if self.frame_interval_ps > self.length_ps:
            raise ValueError(
                f"refine.frame_interval_ps ({self.frame_interval_ps}) exceeds length_ps ({self.length_ps})"
            )
        if self.pocket_cutoff is not None and self.free_shell > self.pocket_cutoff:
            raise ValueError(f"refine.free_shell ({self.free_shell}) exceeds pocket_cutoff ({self.pocket_cutoff})")

    @property
    def step_fs(self) -> float:
        """The time step actually used (fs)."""
        if self.timestep_fs is not None:
            return float(self.timestep_fs)
        return 4.0 if self.hmr else 2.0

    @property
    def steps_per_frame(self) -> int:
        return self.steps_per_frame_at(self.step_fs)

    def steps_per_frame_at(self, step_fs: float) -> int:
        """Integration steps between two frames at a time step of ``step_fs``."""
        return max(1, int(round(self.frame_interval_ps * 1000.0 / step_fs)))

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.length_ps / self.frame_interval_ps)))

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- platforms


@dataclass
class PlatformChoice:
    """An OpenMM platform and the properties every Context of the job is created with."""

    platform: openmm.Platform
    properties: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.platform.getName()

    def context(self, system: openmm.System, integrator: openmm.Integrator) -> openmm.Context:
        """A Context on this platform."""
        return openmm.Context(system, integrator, self.platform, dict(self.properties))


def _platform_properties(name: str, precision: str, cpu_threads: int | None) -> dict:
    if name == "CUDA":  # deterministic force summation: same seed, same trajectory
        return {"Precision": "mixed" if precision == "auto" else precision, "DeterministicForces": "true"}
    if name == "OpenCL":
        return {"Precision": "mixed" if precision == "auto" else precision}
    if name == "CPU" and cpu_threads:
        return {"Threads": str(int(cpu_threads))}
    return {}


def _usable(choice: PlatformChoice) -> bool:
    """Can a Context be made on it? (CUDA/OpenCL plugins load without a device.)"""
    system = openmm.System()
    system.addParticle(1.0)
    try:
        context = choice.context(system, openmm.VerletIntegrator(0.001))
    except Exception as exc:  # OpenMMException, or a driver error
        log.debug("platform %s unusable: %s", choice.name, exc)
        return False
    del context
    return True


def select_platform(
    name: str = schema_default("refine", "platform"),
    precision: str = schema_default("refine", "precision"),
    cpu_threads: int | None = None,
) -> PlatformChoice:
    """The OpenMM platform for a job.

    Parameters
    ----------
    name : {"auto", "CUDA", "OpenCL", "CPU", "Reference"}
        ``auto`` takes the first usable of CUDA, OpenCL, CPU, Reference.
    precision : {"auto", "single", "mixed", "double"}
        GPU precision (``auto`` = mixed; CUDA also gets ``DeterministicForces``);
        the CPU platform is always single/mixed and Reference always double.
    cpu_threads : int or None
        Threads of the CPU platform.

    Returns
    -------
    PlatformChoice

    Raises
    ------
    ValueError
        A named platform is not installed or cannot create a Context here.
    """
    available = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    candidates = [p for p in PLATFORM_ORDER if p in available] if name == "auto" else [name]
    for candidate in candidates:
        if candidate not in available:
            break
        choice = PlatformChoice(
            openmm.Platform.getPlatformByName(candidate), _platform_properties(candidate, precision, cpu_threads)
        )
        if _usable(choice):
            return choice
    raise ValueError(f"OpenMM platform {name!r} is not usable here (installed: {', '.join(sorted(available))})")


def pose_seed(seed: int, compound_id: str, pose: int) -> int:
    """A positive per-pose seed from the run seed, compound id and pose number.

    OpenMM treats 0 as "pick one at random", so 0 is never returned.
    """
    value = (zlib.crc32(f"{compound_id}\t{pose}".encode()) ^ int(seed)) & 0x7FFFFFFF
    return value or 1


def retry_seed(seed: int) -> int:
    """The seed of a pose's retry: another positive seed, derived from the first attempt's ``seed``."""
    value = zlib.crc32(f"retry\t{int(seed)}".encode()) & 0x7FFFFFFF
    return value or 1


# --------------------------------------------------------------------------- running


@dataclass
class Trajectory:
    """What the protocol produced for one pose.

    Attributes
    ----------
    frames_nm : np.ndarray, shape (F, n_atoms, 3)
        Saved frames of the production run (after each ``frame_interval_ps``), all particles, nm.
    times_ps : np.ndarray, shape (F,)
        Production time of each frame (the warm-up not counted).
    potential_kj : np.ndarray, shape (F,)
        Potential energy at each frame without the restraints, kJ/mol.
    minimized_nm : np.ndarray, shape (n_atoms, 3)
    minimized_energy_kj : float
    initial_energy_kj : float
    seconds_minimize, seconds_dynamics : float
        Minimization; warm-up and production (of every attempt).
    attempts : int
        1, or 2 when the first attempt blew up and the retry produced the frames.
    retry_reason : str
        Why the first attempt was retried ('' when it was not).
    step_fs : float
        Production time step of the attempt that produced the frames.
    hmr : bool
        Whether that attempt had repartitioned hydrogen masses.
    """

    frames_nm: np.ndarray
    times_ps: np.ndarray
    potential_kj: np.ndarray
    minimized_nm: np.ndarray
    minimized_energy_kj: float
    initial_energy_kj: float
    seconds_minimize: float
    seconds_dynamics: float
    attempts: int = 1
    retry_reason: str = ""
    step_fs: float = math.nan
    hmr: bool = True

    @property
    def n_frames(self) -> int:
        return len(self.frames_nm)


@dataclass(frozen=True)
class Attempt:
    """One try at a pose's dynamics (see "Warm-up, blow-ups and the retry" in the module docstring).

    Attributes
    ----------
    number : int
        1 for the first attempt, 2 for the retry.
    step_fs, warmup_step_fs : float
        Production and warm-up time steps.
    hmr : bool
        Repartitioned hydrogen masses (the System as built) or natural masses.
    seed : int
        Seed of the integrator and the initial velocities.
    """

    number: int
    step_fs: float
    warmup_step_fs: float
    hmr: bool
    seed: int


def attempt_plan(settings: RefineSettings, seed: int) -> list[Attempt]:
    """The attempts a pose may get: the configured protocol, then (``retry_timestep_fs`` set) the retry.

    The retry always differs from the first attempt in its seed (:func:`retry_seed`), so it is
    a new trial even when the first attempt already ran at 2 fs without HMR.
    """
    first = Attempt(1, settings.step_fs, settings.warmup_timestep_fs, settings.hmr, int(seed))
    if settings.retry_timestep_fs is None:
        return [first]
    step = float(settings.retry_timestep_fs)
    return [first, Attempt(2, step, min(settings.warmup_timestep_fs, step), False, retry_seed(seed))]


def _checked_state(
    context: openmm.Context, limit_kj: float, when: str, ceiling: tuple[float, float] | None = None
) -> tuple[np.ndarray, float]:
    """Positions (nm) and restraint-free potential energy (kJ/mol); raise SimulationError if they blew up.

    ``ceiling`` is ``(minimized energy, allowed rise)`` in kJ/mol: an energy above their sum
    is a blow-up too.
    """
    try:
        state = context.getState(getPositions=True, getEnergy=True, groups=ENERGY_GROUPS)
    except openmm.OpenMMException as exc:
        raise SimulationError(f"simulation failed {when}: {exc}") from exc
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    xyz = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    if not math.isfinite(energy) or not np.all(np.isfinite(xyz)):
        raise SimulationError(f"simulation blew up {when}: energy or coordinates are NaN")
    if energy > limit_kj:
        raise SimulationError(
            f"simulation blew up {when}: potential energy {energy:.3g} kJ/mol "
            f"exceeds {limit_kj:.3g} (overlapping atoms?)"
        )
    if ceiling is not None and energy > ceiling[0] + ceiling[1]:
        raise SimulationError(
            f"simulation blew up {when}: potential energy rose {energy - ceiling[0]:.3g} kJ/mol above the "
            f"minimized structure's (limit {ceiling[1]:.3g}: refine.energy_rise_per_atom_kj x atoms)"
        )
    return xyz, energy


def _minimize(
    complex_system: ComplexSystem, settings: RefineSettings, platform: PlatformChoice
) -> tuple[np.ndarray, float, float]:
    """Minimized positions (nm), and the energies before and after (kJ/mol, restraints excluded).

    Runs on the System without hydrogen constraints (see module docstring). A blow-up here
    is not retried: every attempt would start from these coordinates.
    """
    try:
        minimizer = platform.context(complex_system.minimization_system, openmm.VerletIntegrator(0.001))
        minimizer.setPositions(complex_system.positions_nm)
        initial_kj = (
            minimizer.getState(getEnergy=True, groups=ENERGY_GROUPS)
            .getPotentialEnergy()
            .value_in_unit(unit.kilojoule_per_mole)
        )
        openmm.LocalEnergyMinimizer.minimize(minimizer, settings.minimize_tolerance, settings.minimize_iterations)
    except openmm.OpenMMException as exc:
        raise SimulationError(f"minimization failed: {exc}") from exc
    minimized, minimized_kj = _checked_state(minimizer, settings.energy_limit_kj, "in minimization")
    del minimizer
    return minimized, initial_kj, minimized_kj


def _warmup_atoms(topology: app.Topology) -> np.ndarray:
    """Heavy atoms of the ligand and the protein (not water, not ions): the ones the warm-up holds."""
    return np.array(
        [
            atom.index
            for atom in topology.atoms()
            if atom.element is not None
            and atom.element.symbol != "H"
            and atom.residue.name not in _SOLVENT_NAMES
            and len(atom.residue) > 1
        ],
        dtype=int,
    )


def _warmup_restraint(reference_nm: np.ndarray, atoms: np.ndarray, k_kj_nm2: float, periodic: bool) -> openmm.Force:
    """Harmonic hold of ``atoms`` at ``reference_nm``, its constant the global ``k_warmup`` (0 ends it).

    Its own global parameter: the System's positional restraint (``k_restraint``) stays on.
    """
    return restraint_force(reference_nm, atoms, k_kj_nm2, periodic, parameter="k_warmup", name="WarmupRestraint")


def _attempt_system(
    complex_system: ComplexSystem, settings: RefineSettings, attempt: Attempt, minimized_nm: np.ndarray
) -> openmm.System:
    """The dynamics System of an attempt: its masses, plus the warm-up restraint when there is a warm-up."""
    system = openmm.XmlSerializer.clone(complex_system.system)
    if not attempt.hmr and settings.hmr:  # the System was built with HMR: back to natural masses
        natural = complex_system.minimization_system
        for i in range(system.getNumParticles()):
            system.setParticleMass(i, natural.getParticleMass(i))
    atoms = _warmup_atoms(complex_system.topology)
    if settings.warmup_ps > 0 and settings.warmup_restraint_k > 0 and len(atoms):
        k = settings.warmup_restraint_k * KCAL_PER_A2_TO_KJ_PER_NM2
        system.addForce(_warmup_restraint(minimized_nm, atoms, k, complex_system.periodic))
    return system


def _openmm_message(exc: BaseException) -> str:
    """OpenMM's error without its FAQ link (a failure reason holds two of them after a retry)."""
    return str(exc).split(" For more information, see")[0].strip()


def _step(integrator: openmm.Integrator, steps: int, when: str) -> None:
    try:
        integrator.step(int(steps))
    except openmm.OpenMMException as exc:  # "Particle coordinate is NaN", constraint failures
        raise SimulationError(f"dynamics failed {when}: {_openmm_message(exc)}") from exc


def _warm_up(
    context: openmm.Context,
    integrator: openmm.LangevinMiddleIntegrator,
    settings: RefineSettings,
    attempt: Attempt,
    check,
) -> None:
    """Heat in :data:`WARMUP_STAGES` stages at the warm-up step, then release the warm-up restraint."""
    temperature = settings.temperature_k
    n_steps = int(round(settings.warmup_ps * 1000.0 / attempt.warmup_step_fs))
    if n_steps == 0:
        context.setVelocitiesToTemperature(temperature * unit.kelvin, attempt.seed)
        return
    integrator.setStepSize(attempt.warmup_step_fs * unit.femtosecond)
    context.setVelocitiesToTemperature(temperature / WARMUP_STAGES * unit.kelvin, attempt.seed)
    bounds = np.round(np.linspace(0, n_steps, WARMUP_STAGES + 1)).astype(int)
    for stage, steps in enumerate(np.diff(bounds), start=1):
        integrator.setTemperature(temperature * stage / WARMUP_STAGES * unit.kelvin)
        if steps:
            _step(integrator, steps, f"in warm-up stage {stage}")
            check(f"in warm-up stage {stage}")
    _release_warmup(context)


def _release_warmup(context: openmm.Context) -> None:
    """Switch the warm-up restraint off (a System without one has nothing to switch)."""
    if "k_warmup" in context.getParameters():
        context.setParameter("k_warmup", 0.0)


def _run_attempt(
    complex_system: ComplexSystem,
    settings: RefineSettings,
    platform: PlatformChoice,
    minimized_nm: np.ndarray,
    minimized_kj: float,
    attempt: Attempt,
    blow_up: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warm-up and production of one attempt: ``(frames_nm, times_ps, potential_kj)``.

    ``blow_up`` (fault injection) runs the production steps :data:`FAULT_STEP_FACTOR` times
    longer than asked, so the protocol's own checks catch a real blow-up.

    Raises
    ------
    SimulationError
        A blow-up (see the module docstring) anywhere in the attempt.
    """
    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_k * unit.kelvin,
        settings.friction_per_ps / unit.picosecond,
        attempt.step_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(attempt.seed)
    integrator.setConstraintTolerance(1e-5)
    try:
        context = platform.context(_attempt_system(complex_system, settings, attempt, minimized_nm), integrator)
        context.setPositions(minimized_nm)
        context.applyConstraints(1e-5)
    except openmm.OpenMMException as exc:
        raise SimulationError(f"dynamics could not start: {exc}") from exc
    rise = settings.energy_rise_per_atom_kj
    ceiling = None if rise is None else (minimized_kj, rise * complex_system.n_atoms)

    def check(when: str) -> tuple[np.ndarray, float]:
        return _checked_state(context, settings.energy_limit_kj, when, ceiling)

    check("after constraints were applied")
    _warm_up(context, integrator, settings, attempt, check)
    integrator.setTemperature(settings.temperature_k * unit.kelvin)
    integrator.setStepSize(attempt.step_fs * (FAULT_STEP_FACTOR if blow_up else 1.0) * unit.femtosecond)
    steps = settings.steps_per_frame_at(attempt.step_fs)
    frames, energies = [], []
    for frame in range(1, settings.n_frames + 1):
        _step(integrator, steps, f"before frame {frame}")
        xyz, energy = check(f"at frame {frame}")
        frames.append(xyz)
        energies.append(energy)
    times = np.arange(1, settings.n_frames + 1) * steps * attempt.step_fs / 1000.0
    return np.asarray(frames), times, np.asarray(energies)


def _final_reason(errors: list[str], plan: list[Attempt]) -> str:
    """Failure reason of a pose whose every attempt blew up: the last error, with the first one's."""
    if len(errors) == 1:
        return errors[0]
    retry = plan[-1]
    return f"{errors[-1]} (in the retry at {retry.step_fs:g} fs without HMR; first attempt: {errors[0]})"


def run_protocol(
    complex_system: ComplexSystem,
    settings: RefineSettings,
    platform: PlatformChoice,
    seed: int,
    blow_up: Callable[[int], bool] | None = None,
) -> Trajectory:
    """Minimize, warm up, run Langevin dynamics saving frames; retry a blow-up once.

    Parameters
    ----------
    complex_system : ComplexSystem
        From :func:`pipeline.refine.system.build_complex`.
    settings : RefineSettings
    platform : PlatformChoice
        The job's platform (one per job).
    seed : int
        Seed of the integrator and the initial velocities (see :func:`pose_seed`).
    blow_up : callable or None
        Fault injection: called with the attempt number (1, 2) before each attempt; True makes
        that attempt's production blow up (see :func:`_run_attempt`).

    Returns
    -------
    Trajectory
        The frames of the first attempt that did not blow up, and how many attempts it took.

    Raises
    ------
    SimulationError
        Minimization blew up, or every attempt did (the reason names each attempt's error).
    """
    start = time.perf_counter()
    minimized_nm, initial_kj, minimized_kj = _minimize(complex_system, settings, platform)
    seconds_minimize = time.perf_counter() - start

    start = time.perf_counter()
    plan, errors = attempt_plan(settings, seed), []
    for attempt in plan:
        try:
            frames, times, energies = _run_attempt(
                complex_system,
                settings,
                platform,
                minimized_nm,
                minimized_kj,
                attempt,
                blow_up=bool(blow_up is not None and blow_up(attempt.number)),
            )
        except SimulationError as exc:
            errors.append(" ".join(str(exc).split()))
            if attempt is plan[-1]:
                raise SimulationError(_final_reason(errors, plan)) from exc
            log.info(
                "attempt %d blew up (%s); retrying at %g fs without HMR", attempt.number, errors[-1], plan[-1].step_fs
            )
            continue
        return Trajectory(
            frames_nm=frames,
            times_ps=times,
            potential_kj=energies,
            minimized_nm=minimized_nm,
            minimized_energy_kj=minimized_kj,
            initial_energy_kj=initial_kj,
            seconds_minimize=seconds_minimize,
            seconds_dynamics=time.perf_counter() - start,
            attempts=attempt.number,
            retry_reason=errors[0] if errors else "",
            step_fs=attempt.step_fs,
            hmr=attempt.hmr,
        )
    raise AssertionError("unreachable: the last attempt returns or raises")
