"""Ligand force fields for refinement: what a ligand brings into a protein-ligand System.

A :class:`LigandForceField` turns one RDKit molecule (all hydrogens explicit) into
:class:`LigandParameters`: per-atom masses, charges, Lennard-Jones and implicit-solvent
parameters for the cross terms with the protein, the intra-ligand pairs the shared
``NonbondedForce`` must treat specially, and a factory for the ligand's own forces.
Two implementations:

``mmff`` (:class:`MMFFLigandForceField`, the default)
    RDKit's MMFF94 translated exactly into OpenMM forces by
    :mod:`pipeline.forcefields.mmff`. Every intra-ligand pair is handled by the MMFF
    terms, so every intra-ligand pair is an exception with zero charge product and
    zero epsilon in the ``NonbondedForce``; protein-ligand pairs see the MMFF charges
    and the Lennard-Jones sigma/epsilon derived from MMFF's like-pair vdW parameters,
    combined with Amber's by the Lorentz-Berthelot rules of ``NonbondedForce``.
``openff`` (:class:`OpenFFLigandForceField`)
    OpenFF Sage through ``openmmforcefields``' ``SMIRNOFFTemplateGenerator`` (or the
    toolkit's own ``ForceField.create_openmm_system`` when ``openmmforcefields`` is
    missing). Needs ``openff-toolkit`` (conda only); the ligand's ``NonbondedForce``
    exceptions (1-2/1-3 excluded, 1-4 scaled) are carried over as they are.

Implicit solvent: ligand atoms take part in OBC2 with exactly the parameters OpenMM's
``implicit/obc2.xml`` gives any atom - mbondi2 intrinsic radii (H 1.2 A, or 1.3 A
when bonded to N; C 1.7, N 1.55, O 1.5, F 1.5, Si 2.1, P 1.85, S 1.8, Cl 1.7, other
elements 1.5 A) and the element screening factors of Hawkins, Cramer & Truhlar
(H 0.85, C 0.72, N 0.79, O 0.85, F 0.88, P 0.86, S 0.96, others 0.8). They are taken
from ``GBSAOBC2Force.getStandardParameters`` on a Topology of the ligand, so the
ligand is treated as OpenMM would treat a protein atom of the same element.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Protocol

import numpy as np
import openmm
from openmm import app
from rdkit import Chem

__all__ = [
    "LigandParameterizationError",
    "LigandParameters",
    "LigandForceField",
    "MMFFLigandForceField",
    "OpenFFLigandForceField",
    "ligand_force_field",
    "ligand_topology",
    "obc2_parameters",
]


class LigandParameterizationError(ValueError):
    """The ligand force field cannot describe this molecule; the message is a failure reason."""


@dataclass
class LigandParameters:
    """Everything a protein-ligand System needs from the ligand force field.

    Indices are ligand-local (0..N-1); the System builder adds its offset.

    Attributes
    ----------
    name : str
        Which force field produced them (``"MMFF94"``, ``"openff-2.2.0"``...).
    masses : np.ndarray, shape (N,)
        Atomic masses, amu.
    charges : np.ndarray, shape (N,)
        Partial charges, e (used for protein-ligand Coulomb and for GB).
    sigma_nm, epsilon_kj : np.ndarray, shape (N,)
        Lennard-Jones parameters for protein-ligand pairs (Lorentz-Berthelot mixing).
    gb_radius_nm, gb_scale : np.ndarray, shape (N,)
        OBC2 intrinsic radius (not offset) and screening factor of each atom.
    exceptions : list of (i, j, charge_product, sigma_nm, epsilon_kj)
        Intra-ligand pairs the ``NonbondedForce`` must treat as exceptions.
    h_bonds : list of (i, j, length_nm)
        Bonds to hydrogen with their equilibrium length, for ``HBonds`` constraints.
    bonds : list of (i, j)
        All covalent bonds (for hydrogen-mass repartitioning and topologies).
    elements : list of str
        Element symbols.
    make_forces : callable
        ``make_forces(offset) -> list[openmm.Force]``: fresh copies of the ligand's
        own forces with particle indices shifted by ``offset`` (a Force can belong
        to one System only, so every System gets its own copies).
    """

    name: str
    masses: np.ndarray
    charges: np.ndarray
    sigma_nm: np.ndarray
    epsilon_kj: np.ndarray
    gb_radius_nm: np.ndarray
    gb_scale: np.ndarray
    exceptions: list[tuple[int, int, float, float, float]]
    h_bonds: list[tuple[int, int, float]]
    bonds: list[tuple[int, int]]
    elements: list[str]
    make_forces: Callable[[int], list[openmm.Force]]

    @property
    def n_atoms(self) -> int:
        """Number of ligand atoms."""
        return len(self.masses)

    @property
    def net_charge(self) -> float:
        """Sum of the partial charges (e)."""
        return float(np.sum(self.charges))


class LigandForceField(Protocol):
    """Anything that parameterizes one ligand for :mod:`pipeline.refine.system`."""

    name: str

    def parameterize(self, mol: Chem.Mol) -> LigandParameters:
        """Return the ligand's parameters or raise :class:`LigandParameterizationError`."""
        ...


# --------------------------------------------------------------------------- shared helpers


def _check_molecule(mol: Chem.Mol) -> str:
    """Common checks; returns a label for messages."""
    label = mol.GetProp("_Name") if mol.HasProp("_Name") else Chem.MolToSmiles(mol)
    if mol.GetNumAtoms() == 0:
        raise LigandParameterizationError(f"{label}: molecule has no atoms")
    if mol.GetNumConformers() == 0:
        raise LigandParameterizationError(f"{label}: molecule has no 3D coordinates")
    if any(a.GetTotalNumHs(includeNeighbors=False) > 0 for a in mol.GetAtoms()):
        raise LigandParameterizationError(
            f"{label}: hydrogens are implicit; refinement needs every hydrogen as an atom (docked poses carry them)"
        )
    return label


def ligand_topology(mol: Chem.Mol, residue_name: str = "LIG", chain_id: str = "L") -> app.Topology:
    """An OpenMM Topology of the ligand: one residue, RDKit atom order, unique atom names.

    Parameters
    ----------
    mol : Chem.Mol
        Ligand with explicit hydrogens.
    residue_name, chain_id : str
        Residue and chain labels (PDB output uses them).

    Returns
    -------
    app.Topology
        Atoms named element + running number per element (``C1``, ``C2``, ``N1``...).
    """
    topology = app.Topology()
    chain = topology.addChain(chain_id)
    residue = topology.addResidue(residue_name, chain)
    counts: dict[str, int] = {}
    atoms = []
    for atom in mol.GetAtoms():
        symbol = atom.GetSymbol()
        counts[symbol] = counts.get(symbol, 0) + 1
        element = app.Element.getByAtomicNumber(atom.GetAtomicNum())
        atoms.append(topology.addAtom(f"{symbol.upper()}{counts[symbol]}"[:4], element, residue))
    for bond in mol.GetBonds():
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()])
    return topology


def obc2_parameters(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """OBC2 intrinsic radii (nm) and screening factors, as ``implicit/obc2.xml`` assigns them.

    Parameters
    ----------
    mol : Chem.Mol
        Ligand with explicit hydrogens.

    Returns
    -------
    radius_nm, scale : np.ndarray, shape (N,)
        mbondi2 radii and Hawkins-Cramer-Truhlar screening factors (see module docstring).
    """
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    params = np.asarray(GBSAOBC2Force.getStandardParameters(ligand_topology(mol)), dtype=float)
    return params[:, 0].copy(), params[:, 1].copy()


def _bonds(mol: Chem.Mol) -> list[tuple[int, int]]:
    return [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]


def _elements(mol: Chem.Mol) -> list[str]:
    return [a.GetSymbol() for a in mol.GetAtoms()]


# --------------------------------------------------------------------------- MMFF94


class MMFFLigandForceField:
    """MMFF94 (or MMFF94s) from RDKit, translated exactly into OpenMM forces.

    Parameters
    ----------
    variant : {"MMFF94", "MMFF94s"}
        MMFF variant.
    """

    def __init__(self, variant: str = "MMFF94"):
        self.variant = variant
        self.name = variant

    def parameterize(self, mol: Chem.Mol) -> LigandParameters:
        """Type ``mol`` with MMFF and return its parameters.

        Raises
        ------
        LigandParameterizationError
            Implicit hydrogens, no conformer, or an atom/term MMFF has no parameters for.
        """
        from pipeline.forcefields.mmff import MMFFParameterizationError, mmff_ligand_forces

        _check_molecule(mol)
        try:
            lig = mmff_ligand_forces(mol, variant=self.variant)
        except MMFFParameterizationError as exc:
            raise LigandParameterizationError(f"MMFF cannot parameterize the ligand: {exc}") from exc
        n = lig.n_atoms
        exceptions = [(i, j, 0.0, 1.0, 0.0) for i, j in combinations(range(n), 2)]
        stretch = lig.force("MMFFBondStretch")
        h_bonds = []
        for k in range(stretch.getNumBonds()):
            i, j, (kb, r0) = stretch.getBondParameters(k)
            if mol.GetAtomWithIdx(i).GetAtomicNum() == 1 or mol.GetAtomWithIdx(j).GetAtomicNum() == 1:
                h_bonds.append((i, j, float(r0)))
        radius, scale = obc2_parameters(mol)
        variant, template = self.variant, Chem.Mol(mol)

        def make_forces(offset: int) -> list[openmm.Force]:
            return mmff_ligand_forces(template, variant=variant, offset=offset).forces

        return LigandParameters(
            name=self.name,
            masses=lig.masses,
            charges=lig.charges,
            sigma_nm=lig.lj_sigma_nm,
            epsilon_kj=lig.lj_epsilon_kj,
            gb_radius_nm=radius,
            gb_scale=scale,
            exceptions=exceptions,
            h_bonds=h_bonds,
            bonds=_bonds(mol),
            elements=_elements(mol),
            make_forces=make_forces,
        )

    def __repr__(self) -> str:
        return f"MMFFLigandForceField({self.variant!r})"


# --------------------------------------------------------------------------- OpenFF


def openff_available() -> bool:
    """True when ``openff.toolkit`` imports (it is distributed through conda only)."""
    try:
        import openff.toolkit  # noqa: F401
    except ImportError:
        return False
    return True


def _shifted_copy(force: openmm.Force, offset: int) -> openmm.Force:
    """A copy of a bonded force with every particle index shifted by ``offset``."""
    root = ET.fromstring(openmm.XmlSerializer.serialize(force))
    for element in root.iter():
        for key in ("p1", "p2", "p3", "p4", "p5"):
            if key in element.attrib:
                element.attrib[key] = str(int(element.attrib[key]) + offset)
    return openmm.XmlSerializer.deserialize(ET.tostring(root, encoding="unicode"))


_OPENFF_BONDED = (openmm.HarmonicBondForce, openmm.HarmonicAngleForce, openmm.PeriodicTorsionForce)


class OpenFFLigandForceField:
    """OpenFF (Sage) small-molecule parameters via openff-toolkit.

    Parameters
    ----------
    forcefield : str
        SMIRNOFF force field name as ``openmmforcefields`` spells it (``"openff-2.2.0"``);
        ``.offxml`` is appended when the toolkit is used directly.
    charge_method : str or None
        Partial-charge method passed to the toolkit (``"am1bcc"`` needs AmberTools or
        OpenEye; ``"gasteiger"`` and ``"mmff94"`` work with RDKit alone). None lets the
        force field decide (its ``ToolkitAM1BCC`` / library charges).

    Raises
    ------
    LigandParameterizationError
        From :meth:`parameterize` when openff-toolkit is missing or fails on the ligand.
    """

    def __init__(self, forcefield: str = "openff-2.2.0", charge_method: str | None = None):
        self.forcefield = forcefield
        self.charge_method = charge_method
        self.name = forcefield

    def _ligand_system(self, mol: Chem.Mol) -> openmm.System:
        """Vacuum System of the ligand alone from OpenFF (no cutoff, HBonds constraints)."""
        try:
            from openff.toolkit import Molecule
        except ImportError as exc:
            raise LigandParameterizationError(
                "ligand force field 'openff' needs openff-toolkit (conda install -c conda-forge "
                "openff-toolkit openmmforcefields); use 'mmff' otherwise"
            ) from exc
        offmol = Molecule.from_rdkit(mol, allow_undefined_stereo=True, hydrogens_are_explicit=True)
        if self.charge_method is not None:
            offmol.assign_partial_charges(self.charge_method)
        try:
            from openmmforcefields.generators import SMIRNOFFTemplateGenerator
        except ImportError:
            from openff.toolkit import ForceField

            name = self.forcefield if self.forcefield.endswith(".offxml") else f"{self.forcefield}.offxml"
            charges = [offmol] if self.charge_method is not None else []
            return ForceField(name).create_openmm_system(offmol.to_topology(), charge_from_molecules=charges)
        generator = SMIRNOFFTemplateGenerator(molecules=[offmol], forcefield=self.forcefield.removesuffix(".offxml"))
        forcefield = app.ForceField()
        forcefield.registerTemplateGenerator(generator.generator)
        return forcefield.createSystem(
            offmol.to_topology().to_openmm(), nonbondedMethod=app.NoCutoff, constraints=app.HBonds, removeCMMotion=False
        )

    def parameterize(self, mol: Chem.Mol) -> LigandParameters:
        """Parameterize ``mol`` with OpenFF; see the class docstring."""
        label = _check_molecule(mol)
        try:
            system = self._ligand_system(mol)
        except LigandParameterizationError:
            raise
        except Exception as exc:  # the toolkit raises many unrelated exception types
            raise LigandParameterizationError(f"{label}: OpenFF cannot parameterize the ligand: {exc}") from exc
        n = mol.GetNumAtoms()
        if system.getNumParticles() != n or any(system.isVirtualSite(i) for i in range(n)):
            raise LigandParameterizationError(f"{label}: OpenFF System has virtual sites or extra particles")
        nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
        charges, sigma, epsilon = np.zeros(n), np.zeros(n), np.zeros(n)
        for i in range(n):
            q, s, e = nonbonded.getParticleParameters(i)
            charges[i], sigma[i], epsilon[i] = q._value, s._value, e._value
        exceptions = []
        for k in range(nonbonded.getNumExceptions()):
            i, j, qq, s, e = nonbonded.getExceptionParameters(k)
            exceptions.append((i, j, qq._value, s._value, e._value))
        h_bonds = []
        for k in range(system.getNumConstraints()):
            i, j, length = system.getConstraintParameters(k)
            if mol.GetAtomWithIdx(i).GetAtomicNum() == 1 or mol.GetAtomWithIdx(j).GetAtomicNum() == 1:
                h_bonds.append((i, j, length._value))
        bonded = [openmm.XmlSerializer.serialize(f) for f in system.getForces() if isinstance(f, _OPENFF_BONDED)]
        others = [
            type(f).__name__
            for f in system.getForces()
            if not isinstance(f, _OPENFF_BONDED + (openmm.NonbondedForce, openmm.CMMotionRemover))
        ]
        if others:
            raise LigandParameterizationError(f"{label}: OpenFF System has unsupported forces {others}")
        radius, scale = obc2_parameters(mol)

        def make_forces(offset: int) -> list[openmm.Force]:
            return [_shifted_copy(openmm.XmlSerializer.deserialize(xml), offset) for xml in bonded]

        masses = np.array([system.getParticleMass(i)._value for i in range(n)])
        return LigandParameters(
            name=self.name,
            masses=masses,
            charges=charges,
            sigma_nm=sigma,
            epsilon_kj=epsilon,
            gb_radius_nm=radius,
            gb_scale=scale,
            exceptions=exceptions,
            h_bonds=h_bonds,
            bonds=_bonds(mol),
            elements=_elements(mol),
            make_forces=make_forces,
        )

    def __repr__(self) -> str:
        return f"OpenFFLigandForceField({self.forcefield!r})"


@lru_cache(maxsize=8)
def ligand_force_field(
    name: str = "mmff", mmff_variant: str = "MMFF94", openff_forcefield: str = "openff-2.2.0"
) -> LigandForceField:
    """The ligand force field called ``name`` (``"mmff"`` or ``"openff"``).

    Raises
    ------
    ValueError
        Unknown name.
    """
    if name == "mmff":
        return MMFFLigandForceField(mmff_variant)
    if name == "openff":
        return OpenFFLigandForceField(openff_forcefield)
    raise ValueError(f"ligand force field must be 'mmff' or 'openff', got {name!r}")
