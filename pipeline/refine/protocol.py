"""The refinement protocol: settings, platform choice, minimization and Langevin dynamics.

One pose = energy minimization (L-BFGS, restraints on) followed by Langevin dynamics
(``LangevinMiddleIntegrator``) at ``temperature_k``, with a frame saved every
``frame_interval_ps``. A pose whose energy is NaN or above ``energy_limit_kj``
after minimization or at any frame, or whose coordinates become NaN (OpenMM's
"Particle coordinate is NaN"), raises :class:`SimulationError`; the job turns it
into a failure row and goes on with the next pose.

Default protocol and why
------------------------
On the CPU platform, OBC2 implicit solvent costs about ten times the Coulomb and
Lennard-Jones terms, so every default is chosen to fit a pose well inside a minute
on two cores: a 10 A pocket (1,400-1,900 atoms for the demo and 1iep ligands),
1.0 nm cutoffs, hydrogen-mass repartitioning (H = 3 amu, Hopkins et al. JCTC 2015)
with a 4 fs step, at most 100 minimizer iterations, and :data:`DEFAULT_LENGTH_PS`
of dynamics (``benchmarks/md_speed.py`` measures it). That is a short relaxation
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
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import openmm
from openmm import unit

from .ligand import DEFAULT_OPENFF_FORCEFIELD
from .system import RESTRAINT_GROUP, ComplexSystem

log = logging.getLogger(__name__)

__all__ = [
    "RefineSettings",
    "PlatformChoice",
    "SimulationError",
    "Trajectory",
    "select_platform",
    "pose_seed",
    "run_protocol",
    "DEFAULT_LENGTH_PS",
    "PLATFORM_ORDER",
]

#: Dynamics per pose by default (ps); chosen so a CPU pose takes under a minute (see module docstring).
DEFAULT_LENGTH_PS = 2.0
#: Platforms tried, fastest first, when ``platform="auto"``.
PLATFORM_ORDER = ("CUDA", "OpenCL", "CPU", "Reference")
#: Energy groups reported as "potential energy": everything but the positional restraint.
ENERGY_GROUPS = 0xFFFFFFFF & ~(1 << RESTRAINT_GROUP)


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
        A frame (coordinates, energies) every this many ps.
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
    energy_limit_kj : float
        A potential energy above this (kJ/mol) counts as a blown-up simulation.
    time_limit : float or None
        Wall-clock seconds per pose (ligand parameters, minimization, dynamics, analysis)
        before the job's worker process is killed and the pose becomes a failure
        (:mod:`pipeline.isolation`); None = no limit.
    """

    forcefield: str = "mmff"
    mmff_variant: str = "MMFF94"
    openff_forcefield: str = DEFAULT_OPENFF_FORCEFIELD
    solvent: str = "implicit"
    pocket_cutoff: float | None = 10.0
    free_shell: float = 5.0
    restraint_k: float = 5.0
    restrain: str = "backbone"
    nonbonded_cutoff: float | None = 10.0
    frame_cutoff: float = 8.0
    water_padding: float = 10.0
    ionic_strength: float = 0.15
    minimize_iterations: int = 100
    minimize_tolerance: float = 10.0
    length_ps: float = DEFAULT_LENGTH_PS
    timestep_fs: float | None = None
    hmr: bool = True
    hydrogen_mass: float = 3.0
    temperature_k: float = 300.0
    friction_per_ps: float = 1.0
    frame_interval_ps: float = 0.25
    seed: int = 42
    platform: str = "auto"
    precision: str = "auto"
    cpu_threads: int | None = 1
    energy_limit_kj: float = 1.0e6
    time_limit: float | None = 900.0

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
        positive = ["length_ps", "frame_interval_ps", "temperature_k", "hydrogen_mass", "frame_cutoff"]
        for key in positive:
            if not getattr(self, key) > 0:
                raise ValueError(f"refine.{key} must be positive; got {getattr(self, key)!r}")
        for key in ("restraint_k", "minimize_iterations", "free_shell", "friction_per_ps", "ionic_strength"):
            if getattr(self, key) < 0:
                raise ValueError(f"refine.{key} must be >= 0; got {getattr(self, key)!r}")
        for key in ("pocket_cutoff", "nonbonded_cutoff", "timestep_fs", "time_limit"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"refine.{key} must be positive or null; got {value!r}")
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
        return max(1, int(round(self.frame_interval_ps * 1000.0 / self.step_fs)))

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.length_ps / self.frame_interval_ps)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RefineSettings:
        """Build from a config mapping; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown refine settings {unknown}; known: {sorted(known)}")
        return cls(**values)


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


def select_platform(name: str = "auto", precision: str = "auto", cpu_threads: int | None = None) -> PlatformChoice:
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


# --------------------------------------------------------------------------- running


@dataclass
class Trajectory:
    """What the protocol produced for one pose.

    Attributes
    ----------
    frames_nm : np.ndarray, shape (F, n_atoms, 3)
        Saved frames (after each ``frame_interval_ps``), all particles, nm.
    times_ps : np.ndarray, shape (F,)
    potential_kj : np.ndarray, shape (F,)
        Potential energy at each frame without the restraint, kJ/mol.
    minimized_nm : np.ndarray, shape (n_atoms, 3)
    minimized_energy_kj : float
    initial_energy_kj : float
    seconds_minimize, seconds_dynamics : float
    """

    frames_nm: np.ndarray
    times_ps: np.ndarray
    potential_kj: np.ndarray
    minimized_nm: np.ndarray
    minimized_energy_kj: float
    initial_energy_kj: float
    seconds_minimize: float
    seconds_dynamics: float

    @property
    def n_frames(self) -> int:
        return len(self.frames_nm)


def _checked_state(context: openmm.Context, limit_kj: float, when: str) -> tuple[np.ndarray, float]:
    """Positions (nm) and restraint-free potential energy (kJ/mol); raise SimulationError if they blew up."""
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
    return xyz, energy


def run_protocol(
    complex_system: ComplexSystem, settings: RefineSettings, platform: PlatformChoice, seed: int
) -> Trajectory:
    """Minimize, then run Langevin dynamics, saving frames.

    Parameters
    ----------
    complex_system : ComplexSystem
        From :func:`pipeline.refine.system.build_complex`.
    settings : RefineSettings
    platform : PlatformChoice
        The job's platform (one per job).
    seed : int
        Seed of the integrator and the initial velocities (see :func:`pose_seed`).

    Returns
    -------
    Trajectory

    Raises
    ------
    SimulationError
        NaN or huge energy after minimization or at a frame, or NaN coordinates.
    """
    # Minimize without hydrogen constraints (see module docstring); X-H terms are in the System.
    try:
        start = time.perf_counter()
        minimizer = platform.context(complex_system.minimization_system, openmm.VerletIntegrator(0.001))
        minimizer.setPositions(complex_system.positions_nm)
        initial_kj = (
            minimizer.getState(getEnergy=True, groups=ENERGY_GROUPS)
            .getPotentialEnergy()
            .value_in_unit(unit.kilojoule_per_mole)
        )
        openmm.LocalEnergyMinimizer.minimize(minimizer, settings.minimize_tolerance, settings.minimize_iterations)
        minimized_xyz = minimizer.getState(getPositions=True).getPositions(asNumpy=True)
        del minimizer
    except openmm.OpenMMException as exc:
        raise SimulationError(f"minimization failed: {exc}") from exc

    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_k * unit.kelvin,
        settings.friction_per_ps / unit.picosecond,
        settings.step_fs * unit.femtosecond,
    )
    integrator.setRandomNumberSeed(int(seed))
    integrator.setConstraintTolerance(1e-5)
    try:
        context = platform.context(complex_system.system, integrator)
        context.setPositions(minimized_xyz)
        context.applyConstraints(1e-5)
    except openmm.OpenMMException as exc:
        raise SimulationError(f"minimization failed: {exc}") from exc
    minimized, minimized_kj = _checked_state(context, settings.energy_limit_kj, "in minimization")
    seconds_minimize = time.perf_counter() - start

    start = time.perf_counter()
    context.setVelocitiesToTemperature(settings.temperature_k * unit.kelvin, int(seed))
    frames, energies, times = [], [], []
    for frame in range(1, settings.n_frames + 1):
        try:
            integrator.step(settings.steps_per_frame)
        except openmm.OpenMMException as exc:
            raise SimulationError(f"dynamics failed before frame {frame}: {exc}") from exc
        xyz, energy = _checked_state(context, settings.energy_limit_kj, f"at frame {frame}")
        frames.append(xyz)
        energies.append(energy)
        times.append(frame * settings.steps_per_frame * settings.step_fs / 1000.0)
    seconds_dynamics = time.perf_counter() - start
    return Trajectory(
        frames_nm=np.asarray(frames),
        times_ps=np.asarray(times),
        potential_kj=np.asarray(energies),
        minimized_nm=minimized,
        minimized_energy_kj=minimized_kj,
        initial_energy_kj=initial_kj,
        seconds_minimize=seconds_minimize,
        seconds_dynamics=seconds_dynamics,
    )
