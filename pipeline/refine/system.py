"""Protein-ligand Systems for refinement: Amber ff14SB receptor, MMFF/OpenFF ligand, OBC2.

How a complex is built
----------------------
Once per job, :func:`load_receptor` reads the MD-ready receptor PDB and lets OpenMM
build the **whole** receptor with ``ForceField('amber14-all.xml', 'implicit/obc2.xml')``
(no cutoff, no constraints). Every parameter is then copied into flat arrays
(:class:`ParameterTable`): masses, charges, Lennard-Jones, OBC2 radii and screening
factors, exceptions, bonds, angles, torsions and constraints.

Per pose, :func:`build_complex` assembles a new System from those arrays for a
subset of receptor atoms plus the ligand:

Pocket trimming
    Receptor residues with any atom within ``pocket_cutoff`` (A) of any ligand atom
    are kept **whole**; every other atom is dropped, with every bonded term that
    touches it. Parameters are never re-derived for the fragment, so each kept
    residue keeps its template charges (integral per residue) and its exact amber14
    bonded terms; no cap or terminal patch is needed because the peptide bonds
    across the cut simply disappear. The backbone heavy atoms of residues farther
    than ``free_shell`` (A) from the ligand are harmonically restrained to their
    start positions, which holds the cut ends (and the pocket's shape) in place
    while side chains and the inner shell move freely. Approximations, stated:
    Born radii of boundary atoms lack the descreening of removed atoms, and
    residues beyond ``pocket_cutoff`` do not interact with the ligand (with GB
    screening, Coulomb at > 10 A is small). ``pocket_cutoff=None`` keeps the
    whole receptor (the benchmark's baseline).
Ligand
    Particles from :class:`~pipeline.refine.ligand.LigandParameters`; protein-ligand
    pairs go through the receptor's ``NonbondedForce`` (Coulomb + Lorentz-Berthelot
    LJ), intra-ligand pairs are exceptions there (all zero for MMFF, whose own
    forces carry them), and the ligand's own forces are added with the right offset.
Implicit solvent
    ``implicit/obc2.xml`` builds a ``CustomGBForce``; here the very same per-atom
    parameters (charge, mbondi2 radius, screening factor) feed OpenMM's native
    ``GBSAOBCForce``, which implements the same OBC2 model (alpha, beta, gamma =
    1, 0.8, 4.85; 0.009 nm offset; ACE surface term 2.25936 kJ/mol/nm^2; solvent
    dielectric 78.5) and is about seven times faster on the CPU platform
    (``tests/test_refine.py`` checks the two energies agree). Ligand atoms take
    part with OpenMM's standard parameters for their element.
Explicit solvent
    :func:`solvate_receptor` fills a box around the **whole** receptor with TIP3P
    (``amber14/tip3p.xml``, PME, Na+/Cl- to neutralize plus ``ionic_strength``),
    once per job. Per pose, waters with any atom within 2.2 A of the ligand are
    removed, and one ion of the ligand's charge sign per unit of ligand charge
    (Na+ for a cation, Cl- for an anion, the ions farthest from the ligand) keeps
    the box neutral. No trimming: a periodic box must be filled.

Units: positions are handled in nm inside this module; cutoffs given in Angstrom
in the public arguments (as in the config), converted at the boundary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit
from rdkit import Chem
from scipy.spatial import cKDTree

from ..config import schema_default
from .ligand import LigandParameters, ligand_topology

log = logging.getLogger(__name__)

__all__ = [
    "ReceptorModel",
    "ParameterTable",
    "ComplexSystem",
    "load_receptor",
    "solvate_receptor",
    "pocket_atoms",
    "build_complex",
    "build_pocket_complex_system",
    "build_receptor_system",
    "build_ligand_system",
    "RESTRAINT_GROUP",
    "AMBER_IMPLICIT",
    "AMBER_EXPLICIT",
]

AMBER_IMPLICIT = ("amber14-all.xml", "implicit/obc2.xml")
AMBER_EXPLICIT = ("amber14-all.xml", "amber14/tip3p.xml")
#: Force group of positional restraints; energies reported by the stage exclude it.
RESTRAINT_GROUP = 1
BACKBONE_NAMES = frozenset({"N", "CA", "C", "O"})
WATER_NAMES = frozenset({"HOH", "WAT", "TIP3", "SOL"})
OBC2_SOLVENT_DIELECTRIC = 78.5  # the value implicit/obc2.xml uses by default
OBC2_OFFSET_NM = 0.009
WATER_CLASH_NM = 0.22
KCAL_PER_A2_TO_KJ_PER_NM2 = 4.184 * 100.0


# --------------------------------------------------------------------------- parameter tables


@dataclass
class ParameterTable:
    """Every parameter of a built System, as arrays indexed by particle.

    Built by :meth:`from_system` from a System OpenMM's ``ForceField`` created, so a
    subset of particles can be assembled into a new System without re-matching
    templates. Supported forces: HarmonicBond, HarmonicAngle, PeriodicTorsion,
    Nonbonded, and OBC2 implicit solvent (``GBSAOBCForce`` or the ``CustomGBForce``
    of ``implicit/obc2.xml``); CMMotionRemover is dropped.
    """

    masses: np.ndarray
    nonbonded: np.ndarray  # (N, 3) charge e, sigma nm, epsilon kJ/mol
    exceptions: np.ndarray  # (E, 2) int
    exception_params: np.ndarray  # (E, 3)
    bonds: np.ndarray
    bond_params: np.ndarray
    angles: np.ndarray
    angle_params: np.ndarray
    torsions: np.ndarray
    torsion_params: np.ndarray  # (T, 3) periodicity, phase, k
    constraints: np.ndarray
    constraint_lengths: np.ndarray
    gb: np.ndarray | None  # (N, 2) radius nm (not offset), scale factor
    nonbonded_method: int
    cutoff_nm: float
    box_vectors: tuple | None = None
    nonbonded_settings: dict = field(default_factory=dict)

    @property
    def n_particles(self) -> int:
        return len(self.masses)

    @classmethod
    def from_system(cls, system: openmm.System) -> ParameterTable:
        """Copy the parameters of ``system`` (see class docstring for the forces understood)."""
        n = system.getNumParticles()
        masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
        bonds, bond_params, angles, angle_params = [], [], [], []
        torsions, torsion_params, gb = [], [], None
        nonbonded = exc = exc_params = None
        method, cutoff, settings = openmm.NonbondedForce.NoCutoff, 1.0, {}
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                for k in range(force.getNumBonds()):
                    i, j, r0, kb = force.getBondParameters(k)
                    bonds.append((i, j))
                    bond_params.append((r0._value, kb._value))
            elif isinstance(force, openmm.HarmonicAngleForce):
                for k in range(force.getNumAngles()):
                    i, j, l, theta, ka = force.getAngleParameters(k)
                    angles.append((i, j, l))
                    angle_params.append((theta._value, ka._value))
            elif isinstance(force, openmm.PeriodicTorsionForce):
                for k in range(force.getNumTorsions()):
                    i, j, l, m, per, phase, kt = force.getTorsionParameters(k)
                    torsions.append((i, j, l, m))
                    torsion_params.append((per, phase._value, kt._value))
            elif isinstance(force, openmm.NonbondedForce):
                nonbonded = np.array([[p._value for p in force.getParticleParameters(i)] for i in range(n)])
                rows = [force.getExceptionParameters(k) for k in range(force.getNumExceptions())]
                exc = np.array([(r[0], r[1]) for r in rows], dtype=int).reshape(-1, 2)
                exc_params = np.array([(r[2]._value, r[3]._value, r[4]._value) for r in rows]).reshape(-1, 3)
                method, cutoff = force.getNonbondedMethod(), force.getCutoffDistance()._value
                settings = dict(
                    ewald_error_tolerance=force.getEwaldErrorTolerance(),
                    dispersion_correction=force.getUseDispersionCorrection(),
                    switching=force.getUseSwitchingFunction(),
                    switching_distance=force.getSwitchingDistance()._value,
                )
            elif isinstance(force, openmm.GBSAOBCForce):
                gb = np.array(
                    [
                        [p._value if hasattr(p, "_value") else p for p in force.getParticleParameters(i)][1:]
                        for i in range(n)
                    ]
                )
            elif isinstance(force, openmm.CustomGBForce):
                gb = _obc2_from_custom_gb(force)
            elif isinstance(force, openmm.CMMotionRemover):
                continue
            else:
                raise ValueError(f"receptor System has a {type(force).__name__}, which refinement cannot trim")
        if nonbonded is None:
            raise ValueError("receptor System has no NonbondedForce")
        constraints = [system.getConstraintParameters(k) for k in range(system.getNumConstraints())]
        box = (
            system.getDefaultPeriodicBoxVectors()
            if method
            in (
                openmm.NonbondedForce.PME,
                openmm.NonbondedForce.Ewald,
                openmm.NonbondedForce.CutoffPeriodic,
                openmm.NonbondedForce.LJPME,
            )
            else None
        )
        return cls(
            masses=masses,
            nonbonded=nonbonded,
            exceptions=exc,
            exception_params=exc_params,
            bonds=np.array(bonds, dtype=int).reshape(-1, 2),
            bond_params=np.array(bond_params).reshape(-1, 2),
            angles=np.array(angles, dtype=int).reshape(-1, 3),
            angle_params=np.array(angle_params).reshape(-1, 2),
            torsions=np.array(torsions, dtype=int).reshape(-1, 4),
            torsion_params=np.array(torsion_params).reshape(-1, 3),
            constraints=np.array([(c[0], c[1]) for c in constraints], dtype=int).reshape(-1, 2),
            constraint_lengths=np.array([c[2]._value for c in constraints]),
            gb=gb,
            nonbonded_method=method,
            cutoff_nm=cutoff,
            box_vectors=box,
            nonbonded_settings=settings,
        )


def _obc2_from_custom_gb(force: openmm.CustomGBForce) -> np.ndarray:
    """(radius nm, scale) per particle from implicit/obc2.xml's CustomGBForce ``[charge, or, sr]``.

    ``or`` is the radius minus the 0.009 nm offset and ``sr = scale * or``.
    """
    names = [force.getPerParticleParameterName(k) for k in range(force.getNumPerParticleParameters())]
    if names[:3] != ["charge", "or", "sr"]:
        raise ValueError(f"unexpected CustomGBForce parameters {names}; only OBC2 (implicit/obc2.xml) is supported")
    params = np.array([force.getParticleParameters(i)[:3] for i in range(force.getNumParticles())])
    offset_radius = params[:, 1]
    return np.column_stack([offset_radius + OBC2_OFFSET_NM, params[:, 2] / offset_radius])


# --------------------------------------------------------------------------- receptor


@dataclass
class ReceptorModel:
    """A receptor parameterized once per job.

    Attributes
    ----------
    path : Path
        The PDB it was read from.
    topology : app.Topology
        Receptor topology (residue names/ids as in the PDB).
    positions_nm : np.ndarray, shape (N, 3)
        Coordinates, nm.
    table : ParameterTable
        amber14 + OBC2 parameters of every atom (no cutoff; bonds to H as harmonic
        terms, turned into constraints by :func:`build_complex`).
    residue_of_atom : np.ndarray, shape (N,)
        Residue index of each atom.
    backbone : np.ndarray of bool, shape (N,)
        Protein backbone heavy atoms (N, CA, C, O).
    heavy : np.ndarray of bool
        Non-hydrogen atoms.
    hydrogen_partner : np.ndarray, shape (N,)
        For a hydrogen, the index of its bonded heavy atom, else -1.
    is_water : np.ndarray of bool
    """

    path: Path
    topology: app.Topology
    positions_nm: np.ndarray
    table: ParameterTable
    residue_of_atom: np.ndarray
    backbone: np.ndarray
    heavy: np.ndarray
    hydrogen_partner: np.ndarray
    is_water: np.ndarray
    _tree: cKDTree | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.positions_nm)

    @property
    def tree(self) -> cKDTree:
        """KD-tree of the receptor coordinates (nm), built on first use."""
        if self._tree is None:
            self._tree = cKDTree(self.positions_nm)
        return self._tree

    @classmethod
    def from_topology(
        cls, topology: app.Topology, positions_nm: np.ndarray, system: openmm.System, path: Path
    ) -> ReceptorModel:
        """Wrap a topology, its positions and the System OpenMM built for it."""
        atoms = list(topology.atoms())
        residue_of_atom = np.array([a.residue.index for a in atoms])
        backbone = np.array([a.name in BACKBONE_NAMES and a.residue.name not in WATER_NAMES for a in atoms])
        heavy = np.array([a.element is not None and a.element.atomic_number != 1 for a in atoms])
        is_water = np.array([a.residue.name in WATER_NAMES for a in atoms])
        partner = np.full(len(atoms), -1)
        for a, b in topology.bonds():
            if not heavy[a.index] and heavy[b.index]:
                partner[a.index] = b.index
            elif not heavy[b.index] and heavy[a.index]:
                partner[b.index] = a.index
        return cls(
            path=path,
            topology=topology,
            positions_nm=np.asarray(positions_nm, dtype=float),
            table=ParameterTable.from_system(system),
            residue_of_atom=residue_of_atom,
            backbone=backbone,
            heavy=heavy,
            hydrogen_partner=partner,
            is_water=is_water,
        )


def load_receptor(pdb_path: str | Path, forcefield_files: tuple[str, ...] = AMBER_IMPLICIT) -> ReceptorModel:
    """Read an MD-ready receptor PDB and parameterize all of it once.

    Parameters
    ----------
    pdb_path : str or Path
        Receptor with all hydrogens (``prepare_receptor`` output).
    forcefield_files : tuple of str
        OpenMM force field files; the default is amber14 + OBC2.

    Returns
    -------
    ReceptorModel

    Raises
    ------
    ValueError
        The PDB does not match the force field's templates (OpenMM's message).
    """
    path = Path(pdb_path)
    pdb = app.PDBFile(str(path))
    forcefield = app.ForceField(*forcefield_files)
    # no constraints here: bonds to hydrogen must stay in the table as harmonic terms, so
    # Systems without constraints (energy evaluation) are complete; build_complex adds them
    system = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, removeCMMotion=False)
    positions = np.array(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    model = ReceptorModel.from_topology(pdb.topology, positions, system, path)
    if model.table.gb is None:
        raise ValueError(f"{forcefield_files} gives no OBC2 implicit solvent; include 'implicit/obc2.xml'")
    return model


@dataclass
class SolvatedReceptor:
    """The whole receptor in a TIP3P box (PME), built once per job for explicit-solvent runs.

    The first ``n_solute`` particles are the receptor atoms in the dry model's order.
    """

    model: ReceptorModel
    n_solute: int
    ion_kind: np.ndarray  # +1 Na+, -1 Cl-, 0 otherwise (per atom)
    water_residue: np.ndarray  # residue index for water atoms, -1 otherwise


def solvate_receptor(
    receptor: ReceptorModel,
    padding_nm: float = 1.0,
    ionic_strength_molar: float = 0.15,
    nonbonded_cutoff_nm: float = 1.0,
) -> SolvatedReceptor:
    """Fill a cubic TIP3P box around the receptor and parameterize it (PME, HBonds, rigid water).

    Parameters
    ----------
    receptor : ReceptorModel
        The dry receptor.
    padding_nm : float
        Minimum distance from the receptor to the box edge.
    ionic_strength_molar : float
        NaCl added beyond neutralization; keep > 0 so ions are available to offset a
        charged ligand.
    nonbonded_cutoff_nm : float
        Real-space cutoff of PME.

    Returns
    -------
    SolvatedReceptor
    """
    forcefield = app.ForceField(*AMBER_EXPLICIT)
    modeller = app.Modeller(receptor.topology, receptor.positions_nm * unit.nanometer)
    modeller.addSolvent(
        forcefield,
        model="tip3p",
        padding=padding_nm * unit.nanometer,
        ionicStrength=ionic_strength_molar * unit.molar,
        neutralize=True,
    )
    system = forcefield.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=nonbonded_cutoff_nm * unit.nanometer,
        constraints=None,
        rigidWater=True,
        removeCMMotion=False,
    )
    positions = np.array(modeller.getPositions().value_in_unit(unit.nanometer))
    model = ReceptorModel.from_topology(modeller.topology, positions, system, receptor.path)
    atoms = list(modeller.topology.atoms())
    ion_kind = np.array([1 if a.residue.name == "NA" else -1 if a.residue.name == "CL" else 0 for a in atoms])
    water_residue = np.where(model.is_water, model.residue_of_atom, -1)
    return SolvatedReceptor(model=model, n_solute=receptor.n_atoms, ion_kind=ion_kind, water_residue=water_residue)


# --------------------------------------------------------------------------- selections


def pocket_atoms(receptor: ReceptorModel, ligand_xyz_nm: np.ndarray, cutoff_angstrom: float | None) -> np.ndarray:
    """Indices of the atoms of every residue with any atom within ``cutoff_angstrom`` of the ligand.

    Parameters
    ----------
    receptor : ReceptorModel
    ligand_xyz_nm : np.ndarray, shape (M, 3)
        Ligand coordinates, nm.
    cutoff_angstrom : float or None
        None selects every receptor atom.

    Returns
    -------
    np.ndarray
        Sorted atom indices (whole residues).
    """
    if cutoff_angstrom is None:
        return np.arange(receptor.n_atoms)
    hits = receptor.tree.query_ball_point(ligand_xyz_nm, r=cutoff_angstrom / 10.0)
    near = np.unique(np.concatenate([np.asarray(h, dtype=int) for h in hits] + [np.zeros(0, dtype=int)]))
    residues = np.unique(receptor.residue_of_atom[near])
    return np.flatnonzero(np.isin(receptor.residue_of_atom, residues))


# --------------------------------------------------------------------------- assembly


@dataclass
class ComplexSystem:
    """A System ready to simulate, with the bookkeeping analysis needs.

    Attributes
    ----------
    system : openmm.System
        For dynamics: bonds to hydrogen constrained, hydrogen masses repartitioned if asked.
    minimization_system : openmm.System
        The same force field without hydrogen constraints and with natural masses.
    topology : app.Topology
        Kept receptor residues (ids as in the PDB), then the ligand (chain L, residue LIG).
    positions_nm : np.ndarray, shape (n, 3)
    receptor_atoms : np.ndarray
        For each receptor particle of the System (the first ``n_receptor`` ones), its
        index in the receptor model it came from.
    ligand : slice
        The ligand's particles.
    pocket_backbone : np.ndarray
        System indices of backbone heavy atoms of residues within ``free_shell``.
    restrained : np.ndarray
        System indices held by the positional restraint (group :data:`RESTRAINT_GROUP`).
    frame_atoms : np.ndarray
        System indices of the receptor residues saved in trajectory frames.
    frame_topology : app.Topology
        Topology of ``frame_atoms`` (for the pocket frame PDB).
    periodic : bool
    """

    system: openmm.System
    minimization_system: openmm.System
    topology: app.Topology
    positions_nm: np.ndarray
    receptor_atoms: np.ndarray
    ligand: slice
    pocket_backbone: np.ndarray
    restrained: np.ndarray
    frame_atoms: np.ndarray
    frame_topology: app.Topology
    periodic: bool = False

    @property
    def n_atoms(self) -> int:
        return self.system.getNumParticles()


def _assemble(
    table: ParameterTable, keep: np.ndarray, ligand: LigandParameters | None, *, implicit: bool, cutoff_nm: float | None
) -> openmm.System:
    """A System of receptor particles ``keep`` (in that order) followed by the ligand.

    ``implicit`` adds OBC2 (native GBSAOBCForce) and uses NoCutoff / CutoffNonPeriodic;
    otherwise the table's own periodic method (PME) and box are used. The table's
    own constraints (rigid water) are kept; bonds to hydrogen are left unconstrained
    (see :func:`_hydrogen_constraints`).
    """
    n_total = table.n_particles
    new_index = np.full(n_total, -1)
    new_index[keep] = np.arange(len(keep))
    n_rec = len(keep)
    system = openmm.System()
    for mass in table.masses[keep]:
        system.addParticle(float(mass))
    if table.box_vectors is not None and not implicit:
        system.setDefaultPeriodicBoxVectors(*table.box_vectors)

    def kept(index_array: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.all(new_index[index_array] >= 0, axis=1)) if len(index_array) else np.zeros(0, int)

    bonds = openmm.HarmonicBondForce()
    for k in kept(table.bonds):
        i, j = new_index[table.bonds[k]]
        bonds.addBond(int(i), int(j), *table.bond_params[k])
    angles = openmm.HarmonicAngleForce()
    for k in kept(table.angles):
        i, j, l = new_index[table.angles[k]]
        angles.addAngle(int(i), int(j), int(l), *table.angle_params[k])
    torsions = openmm.PeriodicTorsionForce()
    for k in kept(table.torsions):
        i, j, l, m = new_index[table.torsions[k]]
        per, phase, kt = table.torsion_params[k]
        torsions.addTorsion(int(i), int(j), int(l), int(m), int(per), phase, kt)
    for force in (bonds, angles, torsions):
        system.addForce(force)

    nonbonded = openmm.NonbondedForce()
    if implicit:
        if cutoff_nm is None:
            nonbonded.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
        else:
            nonbonded.setNonbondedMethod(openmm.NonbondedForce.CutoffNonPeriodic)
            nonbonded.setCutoffDistance(cutoff_nm)
        nonbonded.setReactionFieldDielectric(1.0)  # as implicit/obc2.xml: no reaction field on top of GB
    else:
        s = table.nonbonded_settings
        nonbonded.setNonbondedMethod(table.nonbonded_method)
        nonbonded.setCutoffDistance(table.cutoff_nm)
        nonbonded.setEwaldErrorTolerance(s.get("ewald_error_tolerance", 5e-4))
        nonbonded.setUseDispersionCorrection(s.get("dispersion_correction", True))
        nonbonded.setUseSwitchingFunction(s.get("switching", False))
        if s.get("switching"):
            nonbonded.setSwitchingDistance(s["switching_distance"])
    for q, sigma, eps in table.nonbonded[keep]:
        nonbonded.addParticle(q, sigma, eps)
    for k in kept(table.exceptions):
        i, j = new_index[table.exceptions[k]]
        nonbonded.addException(int(i), int(j), *table.exception_params[k])
    system.addForce(nonbonded)

    gb = None
    if implicit:
        gb = openmm.GBSAOBCForce()
        gb.setSolventDielectric(OBC2_SOLVENT_DIELECTRIC)
        gb.setSoluteDielectric(1.0)
        if cutoff_nm is None:
            gb.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
        else:
            gb.setNonbondedMethod(openmm.GBSAOBCForce.CutoffNonPeriodic)
            gb.setCutoffDistance(cutoff_nm)
        for q, (radius, scale) in zip(table.nonbonded[keep, 0], table.gb[keep]):
            gb.addParticle(q, radius, scale)
        system.addForce(gb)

    for k in kept(table.constraints):
        i, j = new_index[table.constraints[k]]
        system.addConstraint(int(i), int(j), float(table.constraint_lengths[k]))
    if ligand is not None:
        _add_ligand(system, nonbonded, gb, ligand, n_rec)
    return system


def _hydrogen_constraints(
    table: ParameterTable, keep: np.ndarray, ligand: LigandParameters
) -> list[tuple[int, int, float]]:
    """Bonds to hydrogen of the receptor subset and the ligand, at their equilibrium length.

    These are OpenMM's ``HBonds`` constraints. Their harmonic terms stay in the System,
    where a constrained bond at its equilibrium length contributes a constant zero,
    so the same System minus these constraints is a complete force field (used
    for minimization, which is several times slower with constraints).
    """
    new_index = np.full(table.n_particles, -1)
    new_index[keep] = np.arange(len(keep))
    hydrogen = table.masses < 1.5
    pairs = []
    if len(table.bonds):
        mapped = new_index[table.bonds]
        for k in np.flatnonzero(np.all(mapped >= 0, axis=1) & hydrogen[table.bonds].any(axis=1)):
            pairs.append((int(mapped[k, 0]), int(mapped[k, 1]), float(table.bond_params[k, 0])))
    offset = len(keep)
    pairs.extend((offset + i, offset + j, float(length)) for i, j, length in ligand.h_bonds)
    return pairs


def _add_ligand(
    system: openmm.System,
    nonbonded: openmm.NonbondedForce,
    gb: openmm.GBSAOBCForce | None,
    ligand: LigandParameters,
    offset: int,
) -> None:
    """Append the ligand's particles, cross-term parameters, exceptions and own forces."""
    for mass in ligand.masses:
        system.addParticle(float(mass))
    for q, sigma, eps in zip(ligand.charges, ligand.sigma_nm, ligand.epsilon_kj):
        nonbonded.addParticle(float(q), float(sigma), float(eps))
    for i, j, qq, sigma, eps in ligand.exceptions:
        nonbonded.addException(offset + i, offset + j, qq, sigma, eps)
    if gb is not None:
        for q, radius, scale in zip(ligand.charges, ligand.gb_radius_nm, ligand.gb_scale):
            gb.addParticle(float(q), float(radius), float(scale))
    for force in ligand.make_forces(offset):
        system.addForce(force)


def build_pocket_complex_system(
    receptor: ReceptorModel, keep: np.ndarray, ligand: LigandParameters, cutoff_nm: float | None = None
) -> openmm.System:
    """Implicit-solvent System of receptor atoms ``keep`` plus the ligand (no constraints, no restraints)."""
    return _assemble(receptor.table, keep, ligand, implicit=True, cutoff_nm=cutoff_nm)


def build_receptor_system(receptor: ReceptorModel, keep: np.ndarray, cutoff_nm: float | None = None) -> openmm.System:
    """Implicit-solvent System of receptor atoms ``keep`` alone (no constraints, no restraints)."""
    return _assemble(receptor.table, keep, None, implicit=True, cutoff_nm=cutoff_nm)


def build_ligand_system(ligand: LigandParameters, cutoff_nm: float | None = None) -> openmm.System:
    """Implicit-solvent System of the ligand alone: its own forces plus OBC2 (no constraints).

    The ``NonbondedForce`` holds the ligand's exceptions only (for MMFF every pair is
    excluded, so it contributes nothing); it is kept so ligand-only, receptor-only
    and complex energies are computed the same way.
    """
    empty = ParameterTable(
        masses=np.zeros(0),
        nonbonded=np.zeros((0, 3)),
        exceptions=np.zeros((0, 2), int),
        exception_params=np.zeros((0, 3)),
        bonds=np.zeros((0, 2), int),
        bond_params=np.zeros((0, 2)),
        angles=np.zeros((0, 3), int),
        angle_params=np.zeros((0, 2)),
        torsions=np.zeros((0, 4), int),
        torsion_params=np.zeros((0, 3)),
        constraints=np.zeros((0, 2), int),
        constraint_lengths=np.zeros(0),
        gb=np.zeros((0, 2)),
        nonbonded_method=openmm.NonbondedForce.NoCutoff,
        cutoff_nm=1.0,
    )
    return _assemble(empty, np.zeros(0, dtype=int), ligand, implicit=True, cutoff_nm=cutoff_nm)


def _subset_topology(topology: app.Topology, atoms: np.ndarray) -> app.Topology:
    """Topology of the given atoms (whole residues expected), ids and names kept."""
    wanted = set(int(i) for i in atoms)
    new = app.Topology()
    mapping = {}
    for chain in topology.chains():
        new_chain = None
        for residue in chain.residues():
            members = [a for a in residue.atoms() if a.index in wanted]
            if not members:
                continue
            if new_chain is None:
                new_chain = new.addChain(chain.id)
            new_res = new.addResidue(residue.name, new_chain, residue.id, residue.insertionCode)
            for atom in members:
                mapping[atom] = new.addAtom(atom.name, atom.element, new_res, atom.id)
    for a, b in topology.bonds():
        if a in mapping and b in mapping:
            new.addBond(mapping[a], mapping[b])
    return new


def _append_topology(base: app.Topology, extra: app.Topology) -> app.Topology:
    """``base`` followed by ``extra`` (a new Topology)."""
    modeller = app.Modeller(base, [openmm.Vec3(0, 0, 0)] * base.getNumAtoms() * unit.nanometer)
    modeller.add(extra, [openmm.Vec3(0, 0, 0)] * extra.getNumAtoms() * unit.nanometer)
    return modeller.topology


def restraint_force(
    reference_nm: np.ndarray,
    indices: np.ndarray,
    k_kj_nm2: float,
    periodic: bool,
    parameter: str = "k_restraint",
    name: str = "PositionalRestraint",
) -> openmm.Force:
    """Harmonic positional restraint ``0.5 k |r - r0|^2`` on ``indices``, in :data:`RESTRAINT_GROUP`.

    ``k`` is the global parameter ``parameter`` (a Context can change it, 0 switches the
    restraint off); ``name`` is the Force's name.
    """
    d2 = "periodicdistance(x, y, z, x0, y0, z0)^2" if periodic else "(x-x0)^2 + (y-y0)^2 + (z-z0)^2"
    force = openmm.CustomExternalForce(f"0.5*{parameter}*({d2})")
    force.addGlobalParameter(parameter, k_kj_nm2)
    for coordinate in ("x0", "y0", "z0"):
        force.addPerParticleParameter(coordinate)
    for i in indices:
        force.addParticle(int(i), [float(v) for v in reference_nm[i]])
    force.setName(name)
    force.setForceGroup(RESTRAINT_GROUP)  # not part of the reported potential energy
    return force


def _repartition_hydrogen_mass(system: openmm.System, partner: np.ndarray, hydrogen_mass: float) -> None:
    """Move mass from each heavy atom to its hydrogens until they weigh ``hydrogen_mass`` amu."""
    for h, heavy in enumerate(partner):
        if heavy < 0:
            continue
        transfer = hydrogen_mass - system.getParticleMass(h).value_in_unit(unit.dalton)
        system.setParticleMass(h, hydrogen_mass)
        system.setParticleMass(int(heavy), system.getParticleMass(int(heavy)).value_in_unit(unit.dalton) - transfer)


def _ligand_xyz_nm(mol: Chem.Mol) -> np.ndarray:
    xyz = np.asarray(mol.GetConformer().GetPositions(), dtype=float) / 10.0
    if not np.all(np.isfinite(xyz)):
        raise ValueError("ligand coordinates are not finite (NaN or infinity in the pose)")
    return xyz


def _explicit_keep(solvated: SolvatedReceptor, ligand_xyz_nm: np.ndarray, ligand_charge: int) -> np.ndarray:
    """Solvated-box atoms to keep: drop waters clashing with the ligand and counter-ions for its charge."""
    model = solvated.model
    keep = np.ones(model.n_atoms, dtype=bool)
    hits = model.tree.query_ball_point(ligand_xyz_nm, r=WATER_CLASH_NM)
    near = np.unique(np.concatenate([np.asarray(h, dtype=int) for h in hits] + [np.zeros(0, dtype=int)]))
    clash_residues = np.unique(solvated.water_residue[near][solvated.water_residue[near] >= 0])
    keep[np.isin(model.residue_of_atom, clash_residues)] = False
    if ligand_charge:
        same_sign = np.flatnonzero(solvated.ion_kind == np.sign(ligand_charge))
        if len(same_sign) < abs(ligand_charge):
            log.warning(
                "not enough ions to neutralize a ligand of charge %+d; the box keeps a net charge", ligand_charge
            )
        distance = np.min(np.linalg.norm(model.positions_nm[same_sign, None] - ligand_xyz_nm[None], axis=2), axis=1)
        keep[same_sign[np.argsort(-distance)[: abs(ligand_charge)]]] = False
    return np.flatnonzero(keep)


def build_complex(
    receptor: ReceptorModel,
    ligand: LigandParameters,
    mol: Chem.Mol,
    *,
    pocket_cutoff: float | None = schema_default("refine", "pocket_cutoff"),
    free_shell: float = schema_default("refine", "free_shell"),
    restraint_k: float = schema_default("refine", "restraint_k"),
    restrain: str = schema_default("refine", "restrain"),
    frame_cutoff: float = schema_default("refine", "frame_cutoff"),
    nonbonded_cutoff: float | None = None,
    constraints: bool = True,
    hydrogen_mass: float | None = None,
    solvated: SolvatedReceptor | None = None,
) -> ComplexSystem:
    """Assemble the System of one pose: trimmed receptor + ligand, restraints, constraints.

    Parameters
    ----------
    receptor : ReceptorModel
        Receptor parameterized once per job (:func:`load_receptor`).
    ligand : LigandParameters
        The pose's ligand parameters.
    mol : Chem.Mol
        The docked pose (coordinates in Angstrom, same atom order as ``ligand``).
    pocket_cutoff : float or None
        Keep receptor residues with any atom within this many Angstrom of the ligand
        (None: the whole receptor). Ignored with ``solvated`` (explicit water).
    free_shell : float
        Residues with an atom within this many Angstrom of the ligand are unrestrained.
    restraint_k : float
        Restraint constant, kcal/mol/A^2 (0 disables restraints).
    restrain : {"backbone", "heavy"}
        Which atoms of residues outside ``free_shell`` are restrained.
    frame_cutoff : float
        Residues within this many Angstrom of the ligand are written to frame files.
    nonbonded_cutoff : float or None
        Implicit solvent only: Angstrom; None = no cutoff (exact).
    constraints : bool
        Constrain bonds to hydrogen (receptor and ligand) in ``system``.
    hydrogen_mass : float or None
        Repartition hydrogen masses to this many amu (None: natural masses).
    solvated : SolvatedReceptor or None
        Explicit-solvent box of the receptor (:func:`solvate_receptor`).

    Returns
    -------
    ComplexSystem

    Raises
    ------
    ValueError
        Non-finite ligand coordinates or an unknown ``restrain`` value.
    """
    if restrain not in ("backbone", "heavy"):
        raise ValueError(f"restrain must be 'backbone' or 'heavy', got {restrain!r}")
    lig_xyz = _ligand_xyz_nm(mol)
    model = solvated.model if solvated is not None else receptor
    if solvated is not None:
        keep = _explicit_keep(solvated, lig_xyz, int(round(ligand.net_charge)))
        system = _assemble(model.table, keep, ligand, implicit=False, cutoff_nm=None)
    else:
        keep = pocket_atoms(receptor, lig_xyz, pocket_cutoff)
        cutoff_nm = None if nonbonded_cutoff is None else nonbonded_cutoff / 10.0
        system = _assemble(model.table, keep, ligand, implicit=True, cutoff_nm=cutoff_nm)
    n_rec = len(keep)
    positions = np.vstack([model.positions_nm[keep], lig_xyz])

    free = np.isin(keep, pocket_atoms(receptor, lig_xyz, free_shell))
    protein = ~model.is_water[keep]
    selectable = model.backbone[keep] if restrain == "backbone" else model.heavy[keep]
    restrained = np.flatnonzero(selectable & protein & ~free)
    if restraint_k > 0 and len(restrained):
        system.addForce(
            restraint_force(
                positions, restrained, restraint_k * KCAL_PER_A2_TO_KJ_PER_NM2, periodic=solvated is not None
            )
        )
    minimization_system = system
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(minimization_system))
    if constraints:
        for i, j, length in _hydrogen_constraints(model.table, keep, ligand):
            system.addConstraint(i, j, length)
    if hydrogen_mass is not None:
        partner = np.full(n_rec + ligand.n_atoms, -1)
        new_index = np.full(model.n_atoms, -1)
        new_index[keep] = np.arange(n_rec)
        rec_partner = model.hydrogen_partner[keep]
        mapped = rec_partner >= 0
        partner[:n_rec][mapped] = new_index[rec_partner[mapped]]
        partner[:n_rec][model.is_water[keep]] = -1  # rigid water keeps its masses
        for i, j in ligand.bonds:
            if ligand.elements[i] == "H" and ligand.elements[j] != "H":
                partner[n_rec + i] = n_rec + j
            elif ligand.elements[j] == "H" and ligand.elements[i] != "H":
                partner[n_rec + j] = n_rec + i
        _repartition_hydrogen_mass(system, partner, hydrogen_mass)

    pocket_backbone = np.flatnonzero(model.backbone[keep] & free & protein)
    frame_atoms = np.flatnonzero(np.isin(keep, pocket_atoms(receptor, lig_xyz, frame_cutoff)))
    receptor_topology = _subset_topology(model.topology, keep)
    topology = _append_topology(receptor_topology, ligand_topology(mol))
    if solvated is not None:
        topology.setPeriodicBoxVectors(system.getDefaultPeriodicBoxVectors())
    return ComplexSystem(
        system=system,
        minimization_system=minimization_system,
        topology=topology,
        positions_nm=positions,
        receptor_atoms=keep,
        ligand=slice(n_rec, n_rec + ligand.n_atoms),
        pocket_backbone=pocket_backbone,
        restrained=restrained,
        frame_atoms=frame_atoms,
        frame_topology=_subset_topology(model.topology, keep[frame_atoms]),
        periodic=solvated is not None,
    )
