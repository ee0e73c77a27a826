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
    OpenFF Sage (``openff-2.2.1`` by default) through openff-toolkit and
    openff-interchange, from the ``openff`` extra (``pip install -e '.[openff]'``: Acellera's
    PyPI redistributions) or conda's ``envs/md.yaml``. AM1-BCC charges come from AmberTools
    when it is installed and otherwise from the NAGL graph network
    ``openff-gnn-am1bcc-1.0.0.pt`` that the extra ships (no download). The ligand's
    ``NonbondedForce`` exceptions (1-2/1-3 excluded, 1-4 scaled) are carried over as they are.

Implicit solvent: ligand atoms take part in OBC2 with exactly the parameters OpenMM's
``implicit/obc2.xml`` gives any atom - mbondi2 intrinsic radii (H 1.2 A, or 1.3 A
when bonded to N; C 1.7, N 1.55, O 1.5, F 1.5, Si 2.1, P 1.85, S 1.8, Cl 1.7, other
elements 1.5 A) and the element screening factors of Hawkins, Cramer & Truhlar
(H 0.85, C 0.72, N 0.79, O 0.85, F 0.88, P 0.86, S 0.96, others 0.8). They are taken
from ``GBSAOBC2Force.getStandardParameters`` on a Topology of the ligand, so the
ligand is treated as OpenMM would treat a protein atom of the same element.
"""

from __future__ import annotations

import logging
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from types import SimpleNamespace
from typing import Protocol

import numpy as np
import openmm
from openmm import app
from rdkit import Chem

from ..config import schema_default

__all__ = [
    "LigandParameterizationError",
    "LigandParameters",
    "LigandForceField",
    "MMFFLigandForceField",
    "OpenFFLigandForceField",
    "DEFAULT_OPENFF_FORCEFIELD",
    "NAGL_AM1BCC_MODEL",
    "ligand_force_field",
    "openff_available",
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
        Which force field produced them (``"MMFF94"``, ``"openff-2.2.1+openff-gnn-am1bcc-1.0.0"``:
        OpenFF's name says where the charges came from).
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

#: Sage version used by ``refine.forcefield: openff`` unless ``refine.openff_forcefield`` says otherwise.
DEFAULT_OPENFF_FORCEFIELD = schema_default("refine", "openff_forcefield")
#: The NAGL graph network that stands in for AM1-BCC when AmberTools is absent (shipped in
#: ``acellera-openff-nagl-models``: read from the package, never downloaded).
NAGL_AM1BCC_MODEL = "openff-gnn-am1bcc-1.0.0.pt"
#: What ``pip install -e '.[openff]'`` brings; named in the errors of a checkout without it.
OPENFF_INSTALL_HINT = "pip install -e '.[openff]' (or the conda environment envs/md.yaml)"


def openff_available() -> bool:
    """True when ``openff.toolkit`` imports (the ``openff`` extra, or conda's ``envs/md.yaml``).

    Returns
    -------
    bool
        Whether :class:`OpenFFLigandForceField` can run on this machine.
    """
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


def _openff() -> SimpleNamespace:
    """The openff-toolkit pieces this module uses, imported on first use.

    Every openff import is here, in one ``try`` that catches ImportError: the package works
    without the ``openff`` extra (``tests/test_envs.py`` reads such imports as optional).

    Returns
    -------
    SimpleNamespace
        ``ForceField``, ``Molecule``, ``NAGLToolkitWrapper``, ``GLOBAL_TOOLKIT_REGISTRY``,
        ``AmberToolsToolkitWrapper``, ``OpenEyeToolkitWrapper``.

    Raises
    ------
    LigandParameterizationError
        openff-toolkit is not installed; the message says how to install it.
    """
    # openff-units redefines pint's electric-potential unit at import and pint logs a WARNING about it
    logging.getLogger("pint.util").setLevel(logging.ERROR)
    try:
        from openff.toolkit import ForceField, Molecule
        from openff.toolkit.utils.nagl_wrapper import NAGLToolkitWrapper
        from openff.toolkit.utils.toolkits import (
            GLOBAL_TOOLKIT_REGISTRY,
            AmberToolsToolkitWrapper,
            OpenEyeToolkitWrapper,
        )
    except ImportError as exc:
        raise LigandParameterizationError(
            f"ligand force field 'openff' needs openff-toolkit: {OPENFF_INSTALL_HINT}; use 'mmff' otherwise"
        ) from exc
    return SimpleNamespace(
        ForceField=ForceField,
        Molecule=Molecule,
        NAGLToolkitWrapper=NAGLToolkitWrapper,
        GLOBAL_TOOLKIT_REGISTRY=GLOBAL_TOOLKIT_REGISTRY,
        AmberToolsToolkitWrapper=AmberToolsToolkitWrapper,
        OpenEyeToolkitWrapper=OpenEyeToolkitWrapper,
    )


@lru_cache(maxsize=4)
def _smirnoff(name: str):
    """The SMIRNOFF ``ForceField`` called ``name`` (``.offxml`` optional), parsed once per process.

    Parameters
    ----------
    name : str
        ``"openff-2.2.1"`` or ``"openff-2.2.1.offxml"``: a file that ``openforcefields`` ships.

    Returns
    -------
    openff.toolkit.ForceField
    """
    return _openff().ForceField(name if name.endswith(".offxml") else f"{name}.offxml")


def _ambertools_or_openeye() -> bool:
    """True when a toolkit that computes real AM1-BCC charges (AmberTools' sqm, OpenEye) is usable."""
    ff = _openff()
    return ff.AmberToolsToolkitWrapper.is_available() or ff.OpenEyeToolkitWrapper.is_available()


class OpenFFLigandForceField:
    """OpenFF (Sage) small-molecule parameters via openff-toolkit and openff-interchange.

    The ligand's vacuum System comes from ``ForceField.create_interchange(...).to_openmm_system``
    with ``add_constrained_forces=True``: the harmonic terms of bonds to hydrogen stay in the
    System next to their constraints, because refinement minimizes without constraints
    (:mod:`pipeline.refine.protocol`) and a bond without its term would be free there. (The
    toolkit's ``create_openmm_system`` drops those terms; ``openmmforcefields``'
    ``SMIRNOFFTemplateGenerator`` keeps them but needs ``lxml``, which its PyPI
    redistribution does not declare, and adds an ffxml round trip for nothing here.)

    Partial charges, with ``charge_method=None`` (the default), are the force field's own
    when this machine can compute them: a force field with a ``NAGLCharges`` section (Sage
    2.3) runs its graph network; one with ``ToolkitAM1BCC`` (Sage 2.0-2.2) runs AM1-BCC
    through AmberTools or OpenEye when one is installed, and otherwise takes the AM1-BCC
    charges predicted by NAGL's :data:`NAGL_AM1BCC_MODEL` - the pip-only case: no AmberTools
    on PyPI, and NAGL needs only the model file its package ships, about a second per
    ligand on the CPU.

    Parameters
    ----------
    forcefield : str
        SMIRNOFF force field, ``.offxml`` optional (``"openff-2.2.1"``, ``"openff-2.3.0"``):
        one of the files the ``openforcefields`` package ships.
    charge_method : str or None
        None: as above. A NAGL model file name (``"openff-gnn-am1bcc-1.0.0.pt"``, ending in
        ``.pt``) runs that model; any other string is passed to the toolkit's
        ``assign_partial_charges`` (``"am1bcc"`` needs AmberTools or OpenEye,
        ``"gasteiger"`` and ``"mmff94"`` need RDKit only).

    Attributes
    ----------
    name : str
        The force field's name; :meth:`parameterize` labels its parameters with the charges too.

    Raises
    ------
    LigandParameterizationError
        From :meth:`parameterize` when openff-toolkit is missing or fails on the ligand.
    """

    def __init__(self, forcefield: str = DEFAULT_OPENFF_FORCEFIELD, charge_method: str | None = None):
        self.forcefield = forcefield.removesuffix(".offxml")
        self.charge_method = charge_method
        self.name = self.forcefield

    def _charges_label(self, forcefield) -> tuple[str, str | None]:
        """How charges are made: ``(label, method)``; ``method`` None means the force field's own section.

        Parameters
        ----------
        forcefield : openff.toolkit.ForceField
            The loaded force field (its charge sections decide the default).

        Returns
        -------
        (str, str or None)
            A label for :attr:`LigandParameters.name` (the model file without ``.pt``,
            ``am1bcc``, ``gasteiger`` ...) and the method to assign before parameterizing.
        """
        if self.charge_method is not None:
            return self.charge_method.removesuffix(".pt"), self.charge_method
        handlers = forcefield.registered_parameter_handlers
        if "NAGLCharges" in handlers:
            model = forcefield.get_parameter_handler("NAGLCharges").model_file
            return str(model).removesuffix(".pt"), None
        if "ToolkitAM1BCC" in handlers and not _ambertools_or_openeye():
            return NAGL_AM1BCC_MODEL.removesuffix(".pt"), NAGL_AM1BCC_MODEL
        return "am1bcc", None

    def _ligand_system(self, mol: Chem.Mol) -> tuple[openmm.System, str]:
        """Vacuum System of the ligand alone (no cutoff, HBonds constraints with their harmonic terms).

        Parameters
        ----------
        mol : Chem.Mol
            Checked ligand (:func:`_check_molecule`).

        Returns
        -------
        (openmm.System, str)
            The System and the charge label (see :meth:`_charges_label`).
        """
        off = _openff()
        forcefield = _smirnoff(self.forcefield)
        label, method = self._charges_label(forcefield)
        offmol = off.Molecule.from_rdkit(mol, allow_undefined_stereo=True, hydrogens_are_explicit=True)
        charged = []
        if method is not None:
            # a model file name goes to NAGL alone, which finds it in openff-nagl-models' package data
            registry = off.NAGLToolkitWrapper() if method.endswith(".pt") else off.GLOBAL_TOOLKIT_REGISTRY
            offmol.assign_partial_charges(method, toolkit_registry=registry)
            charged = [offmol]
        with warnings.catch_warnings():
            # interchange's import-time scan of torch trips torch's own deprecation warning
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"openff\.interchange")
            interchange = forcefield.create_interchange(offmol.to_topology(), charge_from_molecules=charged)
            system = interchange.to_openmm_system(combine_nonbonded_forces=True, add_constrained_forces=True)
        return system, label

    def parameterize(self, mol: Chem.Mol) -> LigandParameters:
        """Parameterize ``mol`` with OpenFF; see the class docstring.

        Parameters
        ----------
        mol : Chem.Mol
            Ligand with every hydrogen explicit and a 3D conformer.

        Returns
        -------
        LigandParameters
            Named ``<forcefield>+<charges>`` (``openff-2.2.1+openff-gnn-am1bcc-1.0.0``).

        Raises
        ------
        LigandParameterizationError
            openff-toolkit missing, a molecule the toolkit or the force field cannot
            handle, or a System with virtual sites or forces this module cannot carry over.
        """
        label = _check_molecule(mol)
        try:
            system, charges_label = self._ligand_system(mol)
        except LigandParameterizationError:
            raise
        except Exception as exc:  # the toolkit raises many unrelated exception types
            text = " ".join(str(exc).split())[:300]
            raise LigandParameterizationError(f"{label}: OpenFF cannot parameterize the ligand: {text}") from exc
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
            name=f"{self.forcefield}+{charges_label}",
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
        return f"OpenFFLigandForceField({self.forcefield!r}, charge_method={self.charge_method!r})"


@lru_cache(maxsize=8)
def ligand_force_field(
    name: str = "mmff",
    mmff_variant: str = schema_default("refine", "mmff_variant"),
    openff_forcefield: str = DEFAULT_OPENFF_FORCEFIELD,
) -> LigandForceField:
    """The ligand force field called ``name`` (``"mmff"`` or ``"openff"``).

    Parameters
    ----------
    name : {"mmff", "openff"}
        ``refine.forcefield``.
    mmff_variant : {"MMFF94", "MMFF94s"}
        ``refine.mmff_variant`` (``mmff`` only).
    openff_forcefield : str
        ``refine.openff_forcefield`` (``openff`` only); charges as :class:`OpenFFLigandForceField` decides.

    Returns
    -------
    LigandForceField
        One instance per argument set and process (cached).

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
