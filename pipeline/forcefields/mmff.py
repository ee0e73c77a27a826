"""RDKit's MMFF94 force field for one ligand, expressed as OpenMM forces.

The refinement stage simulates each docked complex with Amber ff14SB for the
protein and MMFF94 for the ligand. This module writes the ligand's MMFF94
energy -- exactly as RDKit computes it (``AllChem.MMFFGetMoleculeForceField``)
-- as a handful of OpenMM forces, one per MMFF term:

- ``MMFFBondStretch`` (CustomBondForce): quartic bond stretch;
- ``MMFFAngleBend`` (CustomAngleForce): cubic angle bend, linear form at sp centres;
- ``MMFFStretchBend`` (CustomCompoundBondForce, 3 particles): stretch-bend coupling;
- ``MMFFOutOfPlane`` (CustomCompoundBondForce, 4 particles): Wilson out-of-plane bend;
- ``MMFFTorsion`` (PeriodicTorsionForce): three-term Fourier torsion;
- ``MMFFVdW`` (CustomBondForce over a pair list): buffered 14-7 van der Waals;
- ``MMFFElectrostatics`` (CustomBondForce over a pair list): buffered Coulomb.

The names are ``Force.getName()`` values, listed in :data:`TERM_NAMES`.

All parameters come from RDKit (``MMFFGetMoleculeProperties``); the terms are
enumerated the way RDKit's ``Builder.cpp`` enumerates them, so energies and
forces agree with RDKit to round-off (see ``tests/test_mmff_exactness.py``).
Every intra-ligand non-bonded pair is an explicit entry of a CustomBondForce,
which is fine for ligands (a few thousand pairs at most).

Protein-ligand non-bonded interactions are *not* built here: the caller puts
the ligand atoms into its Amber ``NonbondedForce`` with :attr:`LigandForces.charges`
and the Lennard-Jones parameters :attr:`LigandForces.lj_sigma_nm` /
:attr:`LigandForces.lj_epsilon_kj`, and excludes every intra-ligand pair
(:meth:`LigandForces.exclusion_pairs`) because those are handled here.

None of the forces uses periodic boundary conditions: in a periodic complex
the ligand's coordinates must stay whole (OpenMM never wraps positions during a
simulation; only per-atom imaging done by the caller would break a ligand).

Units: OpenMM works in nm and kJ/mol, MMFF in Angstrom, kcal/mol and degrees.
Parameters are converted to OpenMM units once, when the forces are built
(1 kcal = 4.184 kJ, 1 Angstrom = 0.1 nm, 1 degree = pi/180 rad).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import openmm
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

__all__ = [
    "MMFFParameterizationError",
    "LigandForces",
    "TERM_NAMES",
    "mmff_ligand_forces",
    "mmff_ligand_system",
]

# ---------------------------------------------------------------------------
# constants (RDKit Code/ForceField/MMFF/*.cpp)
# ---------------------------------------------------------------------------
KCAL_TO_KJ = 4.184
ANGSTROM_TO_NM = 0.1
DEG_TO_RAD = math.pi / 180.0
MDYNE_A_TO_KCAL_MOL = 143.9325  # md/A -> kcal/mol/A^2
BOND_CS = -2.0  # cubic stretch constant, 1/A
BOND_C3 = 7.0 / 12.0
ANGLE_CB = -0.006981317  # cubic bend constant, 1/deg
VDW_B1 = 1.07  # buffered 14-7 "delta" is 0.07, written as 1.07 - 1
VDW_B2 = 1.12  # buffered 14-7 "gamma" is 0.12, written as 1.12 - 1
ELE_CONSTANT = 332.0716  # kcal A / (mol e^2)
ELE_BUFFER_A = 0.05  # A
ELE_14_SCALE = 0.75
# MMFFPROP.PAR "lin" flag: the only linear MMFF atom types (C sp / allene, =N=, isonitrile N)
LINEAR_ATOM_TYPES = frozenset({4, 53, 61})
VARIANTS = ("MMFF94", "MMFF94s")

# the MMFF relation between two atoms (RDKit's "neighbour matrix")
REL_12, REL_13, REL_14, REL_1X = 0, 1, 2, 3

#: Names given to the forces, in the order of :attr:`LigandForces.forces`.
TERM_NAMES = (
    "MMFFBondStretch",
    "MMFFAngleBend",
    "MMFFStretchBend",
    "MMFFOutOfPlane",
    "MMFFTorsion",
    "MMFFVdW",
    "MMFFElectrostatics",
)

# elements with covalent MMFF94 atom types, and the free ions MMFF94 knows
_MMFF_ELEMENTS = frozenset({1, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53})
_MMFF_IONS = frozenset(
    {
        (3, 1),
        (11, 1),
        (19, 1),
        (12, 2),
        (20, 2),
        (30, 2),
        (26, 2),
        (26, 3),
        (29, 1),
        (29, 2),
        (9, -1),
        (17, -1),
        (35, -1),
    }
)


class MMFFParameterizationError(ValueError):
    """RDKit cannot describe this molecule with MMFF94 (untyped atom, missing parameter...).

    The message names the molecule and says what failed.
    """


@dataclass
class LigandForces:
    """MMFF94 forces of one ligand plus the per-atom data for cross terms.

    Attributes
    ----------
    forces : list of openmm.Force
        One force per MMFF term, named as in :data:`TERM_NAMES` (``Force.getName``).
        Particle indices are ``offset + i`` for ligand atom ``i``. Each force
        object may be added to one System only (OpenMM takes ownership).
    charges : np.ndarray, shape (N,)
        MMFF94 partial charges (e), the charges of RDKit's electrostatic term.
    masses : np.ndarray, shape (N,)
        Atomic masses (amu, RDKit's average masses).
    lj_sigma_nm, lj_epsilon_kj : np.ndarray, shape (N,)
        Lennard-Jones 12-6 parameters for protein-ligand van der Waals only,
        derived from MMFF's per-atom buffered 14-7 parameters: with ``R*_ii``
        (minimum-energy separation, A) and ``eps_ii`` (well depth, kcal/mol)
        of atom i with itself (``GetMMFFVdWParams(i, i)``, no donor-acceptor
        scaling), ``sigma_i = 0.1 * R*_ii / 2**(1/6)`` nm and
        ``epsilon_i = 4.184 * eps_ii`` kJ/mol. A 12-6 potential with these
        parameters has its minimum at ``R*_ii`` with depth ``eps_ii``, i.e.
        it matches the position and depth of the MMFF well of the like pair.
        Mixed with Amber atoms by Lorentz-Berthelot rules this is an
        approximation, used only for the protein-ligand cross term: the
        intra-ligand vdW is the exact buffered 14-7 form of ``MMFFVdW``.
    atom_types : np.ndarray, shape (N,)
        MMFF94 numeric atom types (for logging/debugging).
    offset : int
        Index of the ligand's first particle in the System the forces are for.
    variant : str
        ``"MMFF94"`` or ``"MMFF94s"``.
    """

    forces: list[openmm.Force]
    charges: np.ndarray
    masses: np.ndarray
    lj_sigma_nm: np.ndarray
    lj_epsilon_kj: np.ndarray
    atom_types: np.ndarray
    offset: int = 0
    variant: str = "MMFF94"

    @property
    def n_atoms(self) -> int:
        """Number of ligand atoms."""
        return len(self.charges)

    def force(self, name: str) -> openmm.Force:
        """Return the force named ``name`` (one of :data:`TERM_NAMES`)."""
        for force in self.forces:
            if force.getName() == name:
                return force
        raise KeyError(name)

    def exclusion_pairs(self) -> list[tuple[int, int]]:
        """All intra-ligand particle pairs ``(offset+i, offset+j)``, ``i < j``.

        Every one of these is treated by the MMFF forces; a NonbondedForce
        holding the ligand for protein-ligand interactions must exclude them.
        """
        n = self.n_atoms
        return [(self.offset + i, self.offset + j) for i, j in combinations(range(n), 2)]


@dataclass
class _Typed:
    """The typed ligand: RDKit molecule copy, its MMFF properties and labels."""

    mol: Chem.Mol
    props: object
    label: str
    offset: int
    variant: str


# ---------------------------------------------------------------------------
# typing and checks
# ---------------------------------------------------------------------------
def _label(mol: Chem.Mol) -> str:
    """A readable name for error messages: the ``_Name`` property, else a SMILES."""
    name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    try:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    except Exception:  # noqa: BLE001 -- a label must never fail
        smiles = Chem.MolToSmiles(mol)
    return f"{name!r} ({smiles})" if name else f"molecule {smiles}"


def _untypable_atoms(mol: Chem.Mol) -> list[str]:
    """Atoms whose element/charge has no MMFF94 atom type at all."""
    bad = []
    for atom in mol.GetAtoms():
        z, q, degree = atom.GetAtomicNum(), atom.GetFormalCharge(), atom.GetDegree()
        if (degree == 0 and (z, q) in _MMFF_IONS) or (degree > 0 and z in _MMFF_ELEMENTS):
            continue
        bad.append(f"atom {atom.GetIdx()} ({atom.GetSymbol()}, formal charge {q:+d}, degree {degree})")
    return bad


def _type_molecule(mol: Chem.Mol, variant: str, offset: int) -> _Typed:
    """Copy ``mol``, check it and let RDKit assign MMFF types and charges."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if int(offset) != offset or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    label = _label(mol)
    if mol.GetNumAtoms() == 0:
        raise MMFFParameterizationError(f"{label}: molecule has no atoms")
    implicit = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs(includeNeighbors=False) > 0]
    if implicit:
        raise MMFFParameterizationError(
            f"{label}: atoms {implicit[:10]} carry implicit hydrogens; MMFF needs every "
            "hydrogen as an atom (use Chem.AddHs(mol, addCoords=True))"
        )
    # RDKit re-perceives (MMFF) aromaticity in place: work on a copy
    work = Chem.Mol(mol)
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work, mmffVariant=variant, mmffVerbosity=0)
    if props is None:
        bad = _untypable_atoms(work)
        if bad:
            detail = (
                "RDKit has no "
                + variant
                + " atom type for "
                + "; ".join(bad)
                + " (MMFF94 covers H, C, N, O, F, Si, P, S, Cl, Br, I and the free ions "
                "Li+, Na+, K+, Mg2+, Ca2+, Zn2+, Fe2+, Fe3+, Cu+, Cu2+, F-, Cl-, Br-)"
            )
        else:
            detail = (
                f"RDKit could not assign {variant} atom types to all atoms "
                "(unusual valence, charge state or bonding pattern)"
            )
        raise MMFFParameterizationError(f"{label}: {detail}")
    props.SetMMFFVerbosity(0)
    return _Typed(mol=work, props=props, label=label, offset=int(offset), variant=variant)


def _missing(typed: _Typed, term: str, atoms: tuple[int, ...]) -> MMFFParameterizationError:
    types = [typed.props.GetMMFFAtomType(i) for i in atoms]
    symbols = [typed.mol.GetAtomWithIdx(i).GetSymbol() for i in atoms]
    return MMFFParameterizationError(
        f"{typed.label}: RDKit has no {typed.variant} {term} parameters for atoms {list(atoms)} "
        f"(elements {symbols}, MMFF types {types})"
    )


def neighbor_relations(mol: Chem.Mol) -> np.ndarray:
    """MMFF topological relation of every atom pair, as RDKit builds it.

    A transcription of ``buildNeighborMatrix`` in RDKit's MMFF ``Builder.cpp``:
    0 = bonded (1-2), 1 = 1-3, 2 = 1-4, 3 = further apart (or not connected).
    The closest relation wins, so in rings a pair is 1-3 rather than 1-4 when
    both paths exist.

    Parameters
    ----------
    mol : Chem.Mol
        Molecule with explicit hydrogens.

    Returns
    -------
    np.ndarray
        Symmetric ``(N, N)`` int8 matrix.
    """
    n = mol.GetNumAtoms()
    rel = np.full((n, n), REL_1X, dtype=np.int8)
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    adjacent = np.zeros((n, n), dtype=bool)
    for a, b in bonds:
        adjacent[a, b] = adjacent[b, a] = True

    def put(i: int, j: int, value: int) -> None:
        rel[i, j] = rel[j, i] = value

    for pos, (ib, ie) in enumerate(bonds):
        put(ib, ie, REL_12)
        for jb, je in bonds[pos + 1 :]:
            if ib == jb:
                put(ie, je, REL_13)
            elif ib == je:
                put(ie, jb, REL_13)
            elif ie == jb:
                put(ib, je, REL_13)
            elif ie == je:
                put(ib, jb, REL_13)
            elif adjacent[ib, jb] and rel[ie, je] == REL_1X:
                put(ie, je, REL_14)
            elif adjacent[ib, je] and rel[ie, jb] == REL_1X:
                put(ie, jb, REL_14)
            elif adjacent[ie, jb] and rel[ib, je] == REL_1X:
                put(ib, je, REL_14)
            elif adjacent[ie, je] and rel[ib, jb] == REL_1X:
                put(ib, jb, REL_14)
    return rel


# ---------------------------------------------------------------------------
# one function per MMFF term
# ---------------------------------------------------------------------------
def bond_stretch(typed: _Typed) -> openmm.CustomBondForce:
    """MMFF bond stretch, one term per bond.

    ``E = 143.9325/2 kb dr^2 (1 + cs dr + 7/12 cs^2 dr^2)`` kcal/mol, dr in A,
    ``cs = -2 /A``. In OpenMM units: ``k = 143.9325 kb * 4.184 * 100`` kJ/mol/nm^2,
    ``cs = -20 /nm``.
    """
    cs = BOND_CS / ANGSTROM_TO_NM
    force = openmm.CustomBondForce(f"0.5*kb*dr^2*(1 + cs*dr + {BOND_C3!r}*cs^2*dr^2); dr = r - r0; cs = {cs!r}")
    force.addPerBondParameter("kb")
    force.addPerBondParameter("r0")
    scale = MDYNE_A_TO_KCAL_MOL * KCAL_TO_KJ / ANGSTROM_TO_NM**2
    for bond in typed.mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        params = typed.props.GetMMFFBondStretchParams(typed.mol, i, j)
        if params is None:
            raise _missing(typed, "bond stretch", (i, j))
        _, kb, r0 = params
        force.addBond(typed.offset + i, typed.offset + j, [kb * scale, r0 * ANGSTROM_TO_NM])
    force.setName("MMFFBondStretch")
    return force


def _angle_triples(mol: Chem.Mol):
    """(i, j, k) for every angle, in RDKit's order (neighbour iteration order)."""
    for atom in mol.GetAtoms():
        if atom.GetDegree() < 2:
            continue
        nbrs = [n.GetIdx() for n in atom.GetNeighbors()]
        for a in range(len(nbrs)):
            for b in range(a + 1, len(nbrs)):
                yield nbrs[a], atom.GetIdx(), nbrs[b]


def angle_bend(typed: _Typed) -> openmm.CustomAngleForce:
    """MMFF angle bend, one term per angle i-j-k.

    ``E = 0.043844/2 ka dtheta^2 (1 + cb dtheta)`` kcal/mol with dtheta in
    degrees and ``cb = -0.006981317 /deg``; ``0.043844 = 143.9325 (pi/180)^2``.
    For a linear central atom (MMFF types 4, 53, 61) ``E = 143.9325 ka (1 + cos theta)``.
    In OpenMM units both use ``K = 143.9325 ka * 4.184`` kJ/mol and dtheta in rad
    (``cb = -0.006981317 * 180/pi /rad``).
    """
    cb = ANGLE_CB / DEG_TO_RAD
    force = openmm.CustomAngleForce(
        f"select(linear, k*(1 + cos(theta)), 0.5*k*dt^2*(1 + cb*dt)); dt = theta - theta0; cb = {cb!r}"
    )
    for name in ("k", "theta0", "linear"):
        force.addPerAngleParameter(name)
    scale = MDYNE_A_TO_KCAL_MOL * KCAL_TO_KJ
    for i, j, k in _angle_triples(typed.mol):
        params = typed.props.GetMMFFAngleBendParams(typed.mol, i, j, k)
        if params is None:
            raise _missing(typed, "angle bend", (i, j, k))
        _, ka, theta0 = params
        linear = 1.0 if typed.props.GetMMFFAtomType(j) in LINEAR_ATOM_TYPES else 0.0
        force.addAngle(typed.offset + i, typed.offset + j, typed.offset + k, [ka * scale, theta0 * DEG_TO_RAD, linear])
    force.setName("MMFFAngleBend")
    return force


def stretch_bend(typed: _Typed) -> openmm.CustomCompoundBondForce:
    """MMFF stretch-bend, one term per non-linear angle i-j-k.

    ``E = 2.51210 (kba_ijk dr_ij + kba_kji dr_kj) dtheta`` kcal/mol with dr in A
    and dtheta in degrees; ``2.51210 = 143.9325 pi/180``. Angles centred on a
    linear atom type are skipped, as in RDKit. In OpenMM units the prefactor is
    ``143.9325 * 4.184 * 10`` (dr in nm, dtheta in rad).
    """
    force = openmm.CustomCompoundBondForce(
        3,
        "c*(kijk*(distance(p1,p2) - r1) + kkji*(distance(p2,p3) - r2))*(angle(p1,p2,p3) - theta0);"
        f" c = {MDYNE_A_TO_KCAL_MOL * KCAL_TO_KJ / ANGSTROM_TO_NM!r}",
    )
    for name in ("kijk", "kkji", "r1", "r2", "theta0"):
        force.addPerBondParameter(name)
    mol, props = typed.mol, typed.props
    for i, j, k in _angle_triples(mol):
        if props.GetMMFFAtomType(j) in LINEAR_ATOM_TYPES:
            continue
        stbn = props.GetMMFFStretchBendParams(mol, i, j, k)
        if stbn is None:  # RDKit adds no term either
            continue
        _, kba_ijk, kba_kji = stbn
        bond_ij = props.GetMMFFBondStretchParams(mol, i, j)
        bond_kj = props.GetMMFFBondStretchParams(mol, j, k)
        angle = props.GetMMFFAngleBendParams(mol, i, j, k)
        if bond_ij is None or bond_kj is None or angle is None:
            raise _missing(typed, "stretch-bend reference (bond/angle)", (i, j, k))
        force.addBond(
            [typed.offset + i, typed.offset + j, typed.offset + k],
            [kba_ijk, kba_kji, bond_ij[2] * ANGSTROM_TO_NM, bond_kj[2] * ANGSTROM_TO_NM, angle[2] * DEG_TO_RAD],
        )
    force.setName("MMFFStretchBend")
    return force


def out_of_plane(typed: _Typed) -> openmm.CustomCompoundBondForce:
    """MMFF out-of-plane bend at every trivalent atom, three terms per centre.

    ``E = 0.043844/2 koop chi^2`` kcal/mol, chi (degrees) the Wilson angle between
    the bond j-l and the plane i-j-k (j the centre); each neighbour in turn is l.
    Particles are (i, j, k, l); chi is evaluated from coordinates as
    ``asin(n . u_jl)`` with ``n`` the unit normal of (r_ji x r_jk). In OpenMM
    units ``E = 0.5 * 143.9325 koop * 4.184 * chi_rad^2``. Centres for which RDKit
    finds no parameters are skipped, as in RDKit.
    """
    force = openmm.CustomCompoundBondForce(
        4,
        "0.5*koop*chi^2; chi = asin(min(1, max(-1, s)));"
        " s = (nx*cx + ny*cy + nz*cz)/sqrt((nx^2 + ny^2 + nz^2)*(cx^2 + cy^2 + cz^2));"
        " nx = ay*bz - az*by; ny = az*bx - ax*bz; nz = ax*by - ay*bx;"
        " ax = x1 - x2; ay = y1 - y2; az = z1 - z2;"
        " bx = x3 - x2; by = y3 - y2; bz = z3 - z2;"
        " cx = x4 - x2; cy = y4 - y2; cz = z4 - z2",
    )
    force.addPerBondParameter("koop")
    scale = MDYNE_A_TO_KCAL_MOL * KCAL_TO_KJ
    mol, props, off = typed.mol, typed.props, typed.offset
    for atom in mol.GetAtoms():
        if atom.GetDegree() != 3:
            continue
        j = atom.GetIdx()
        n0, n2, n3 = (n.GetIdx() for n in atom.GetNeighbors())
        koop = props.GetMMFFOopBendParams(mol, n0, j, n2, n3)
        if koop is None:  # RDKit skips such centres (SURDOX02)
            continue
        for i, k, l in ((n0, n2, n3), (n0, n3, n2), (n2, n3, n0)):
            force.addBond([off + i, off + j, off + k, off + l], [koop * scale])
    force.setName("MMFFOutOfPlane")
    return force


def _in_triple_bond(atom: Chem.Atom) -> bool:
    return any(b.GetBondType() == Chem.BondType.TRIPLE for b in atom.GetBonds())


_TORSION_HYBRIDIZATIONS = (Chem.HybridizationType.SP2, Chem.HybridizationType.SP3)


def _torsion_quads(mol: Chem.Mol):
    """(i, j, k, l) for every torsion RDKit's MMFF builder includes.

    Central bond j-k: neither atom terminal or in a triple bond (SMARTS
    ``[!$(*#*)&!D1]~[!$(*#*)&!D1]``), both sp2 or sp3 (RDKit hybridization);
    i != l (no torsions across three-membered rings). (RDKit finds the central
    bonds with a substructure search capped at 1000 matches; ligands never
    get near that, and no cap is applied here.)
    """
    for bond in mol.GetBonds():
        j_atom, k_atom = bond.GetBeginAtom(), bond.GetEndAtom()
        if any(a.GetDegree() == 1 or _in_triple_bond(a) for a in (j_atom, k_atom)):
            continue
        if (
            j_atom.GetHybridization() not in _TORSION_HYBRIDIZATIONS
            or k_atom.GetHybridization() not in _TORSION_HYBRIDIZATIONS
        ):
            continue
        j, k = j_atom.GetIdx(), k_atom.GetIdx()
        for b1 in j_atom.GetBonds():
            if b1.GetIdx() == bond.GetIdx():
                continue
            i = b1.GetOtherAtomIdx(j)
            for b2 in k_atom.GetBonds():
                if b2.GetIdx() in (bond.GetIdx(), b1.GetIdx()):
                    continue
                l = b2.GetOtherAtomIdx(k)
                if l != i:
                    yield i, j, k, l


def torsion(typed: _Typed) -> openmm.PeriodicTorsionForce:
    """MMFF torsions: ``E = 0.5 (V1 (1+cos phi) + V2 (1-cos 2phi) + V3 (1+cos 3phi))``.

    Written as up to three periodic terms ``k (1 + cos(n phi - phase))`` with
    ``k = 4.184 V_n / 2`` kJ/mol; the V2 term has phase pi. Zero V_n are omitted;
    torsions without RDKit parameters are skipped, as in RDKit.
    """
    force = openmm.PeriodicTorsionForce()
    mol, props, off = typed.mol, typed.props, typed.offset
    for i, j, k, l in _torsion_quads(mol):
        params = props.GetMMFFTorsionParams(mol, i, j, k, l)
        if params is None:
            continue
        _, v1, v2, v3 = params
        for periodicity, v, phase in ((1, v1, 0.0), (2, v2, math.pi), (3, v3, 0.0)):
            if v != 0.0:
                force.addTorsion(off + i, off + j, off + k, off + l, periodicity, phase, 0.5 * v * KCAL_TO_KJ)
    force.setName("MMFFTorsion")
    return force


def _nonbonded_pairs(mol: Chem.Mol):
    """(i, j, is_14) for every pair at least three bonds apart (or in different fragments)."""
    rel = neighbor_relations(mol)
    n = mol.GetNumAtoms()
    for i in range(n):
        for j in range(i + 1, n):
            if rel[i, j] >= REL_14:
                yield i, j, bool(rel[i, j] == REL_14)


def _cutoff_factor(cutoff_nm: float | None) -> str:
    return "" if cutoff_nm is None else f"step({float(cutoff_nm)!r} - r)*"


def vdw(typed: _Typed, cutoff_nm: float | None = None) -> openmm.CustomBondForce:
    """MMFF buffered 14-7 van der Waals over all pairs >= 3 bonds apart (1-4 unscaled).

    ``E = eps (1.07 R*/(r + 0.07 R*))^7 (1.12 R*^7/(r^7 + 0.12 R*^7) - 2)`` with the
    pair's ``R*_ij``, ``eps_ij`` taken from RDKit (``GetMMFFVdWParams(i, j)``,
    the donor-acceptor-scaled values RDKit's force field uses).
    """
    force = openmm.CustomBondForce(
        _cutoff_factor(cutoff_nm) + f"eps*({VDW_B1!r}*rs/(r + {VDW_B1 - 1.0!r}*rs))^7"
        f"*({VDW_B2!r}*rs^7/(r^7 + {VDW_B2 - 1.0!r}*rs^7) - 2)"
    )
    force.addPerBondParameter("rs")
    force.addPerBondParameter("eps")
    for i, j, _ in _nonbonded_pairs(typed.mol):
        params = typed.props.GetMMFFVdWParams(i, j)
        if params is None:
            raise _missing(typed, "van der Waals", (i, j))
        r_star, eps = params[2], params[3]
        force.addBond(typed.offset + i, typed.offset + j, [r_star * ANGSTROM_TO_NM, eps * KCAL_TO_KJ])
    force.setName("MMFFVdW")
    return force


def electrostatics(typed: _Typed, cutoff_nm: float | None = None) -> openmm.CustomBondForce:
    """MMFF buffered Coulomb over all pairs >= 3 bonds apart, 1-4 pairs scaled by 0.75.

    ``E = 332.0716 q_i q_j / (D (R + 0.05))`` kcal/mol (R in A), or with a
    distance-dependent dielectric ``/(D (R + 0.05)^2)``; D and the model come
    from the MMFF properties (RDKit's defaults: constant, D = 1). Pairs with a
    zero charge are skipped, as in RDKit.
    """
    props = typed.props
    diel_const = props.GetMMFFDielectricConstant()
    distance_model = props.GetMMFFDielectricModel() == 2
    buffer_nm = ELE_BUFFER_A * ANGSTROM_TO_NM
    if distance_model:
        expr = f"qq/(r + {buffer_nm!r})^2"
        scale = ELE_CONSTANT * KCAL_TO_KJ * ANGSTROM_TO_NM**2
    else:
        expr = f"qq/(r + {buffer_nm!r})"
        scale = ELE_CONSTANT * KCAL_TO_KJ * ANGSTROM_TO_NM
    force = openmm.CustomBondForce(_cutoff_factor(cutoff_nm) + expr)
    force.addPerBondParameter("qq")
    charges = [props.GetMMFFPartialCharge(i) for i in range(typed.mol.GetNumAtoms())]
    for i, j, is_14 in _nonbonded_pairs(typed.mol):
        if abs(charges[i]) < 1e-10 or abs(charges[j]) < 1e-10:
            continue
        qq = scale * charges[i] * charges[j] / diel_const * (ELE_14_SCALE if is_14 else 1.0)
        force.addBond(typed.offset + i, typed.offset + j, [qq])
    force.setName("MMFFElectrostatics")
    return force


# ---------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------
def mmff_ligand_forces(
    mol: Chem.Mol,
    *,
    nonbonded_cutoff_nm: float | None = None,
    variant: str = "MMFF94",
    offset: int = 0,
    dielectric_constant: float = 1.0,
    distance_dielectric: bool = False,
) -> LigandForces:
    """Translate RDKit's MMFF94 description of ``mol`` into OpenMM forces.

    Parameters
    ----------
    mol : Chem.Mol
        The ligand with explicit hydrogens (a conformer is not needed for the
        parameters). It is not modified: RDKit's MMFF typing re-perceives
        aromaticity, so a copy is typed.
    nonbonded_cutoff_nm : float or None, optional
        None (default, exact RDKit energy): every intra-ligand vdW/electrostatic
        pair interacts at any distance. A number truncates those pair terms
        sharply at that distance (no shift, no switch), e.g. to mirror the
        cutoff of the surrounding system; intra-ligand distances rarely exceed
        1 nm, but the truncation makes the energy discontinuous when they do.
    variant : {"MMFF94", "MMFF94s"}, optional
        MMFF variant passed to RDKit.
    offset : int, optional
        Index of the ligand's first atom in the System the forces will be added
        to; particle ``i`` of the ligand becomes ``offset + i``.
    dielectric_constant : float, optional
        Dielectric constant D of the intra-ligand electrostatics (RDKit default 1).
    distance_dielectric : bool, optional
        Use RDKit's distance-dependent dielectric (``D r``) instead of a constant one.

    Returns
    -------
    LigandForces
        Forces (named per :data:`TERM_NAMES`, no PBC, no force groups set),
        MMFF partial charges, masses and derived Lennard-Jones parameters.

    Raises
    ------
    MMFFParameterizationError
        If hydrogens are implicit, RDKit cannot assign MMFF atom types, or a
        required bond/angle/vdW parameter is missing; the message names the
        molecule and the atoms concerned.

    Notes
    -----
    Term enumeration follows RDKit's ``Builder.cpp``: bonds; all angles
    (linear form at MMFF types 4/53/61); stretch-bends except at linear
    centres; three out-of-plane terms per trivalent atom; torsions about
    bonds between non-terminal sp2/sp3 atoms not in triple bonds; vdW and
    electrostatics for pairs in a 1-4 or further relation. Non-bonded pairs
    between disconnected fragments are included (RDKit's
    ``ignoreInterfragInteractions=False``).
    """
    if nonbonded_cutoff_nm is not None and not nonbonded_cutoff_nm > 0:
        raise ValueError(f"nonbonded_cutoff_nm must be positive or None, got {nonbonded_cutoff_nm!r}")
    if not dielectric_constant > 0:
        raise ValueError(f"dielectric_constant must be positive, got {dielectric_constant!r}")
    typed = _type_molecule(mol, variant, offset)
    props = typed.props
    props.SetMMFFDielectricConstant(float(dielectric_constant))
    props.SetMMFFDielectricModel(2 if distance_dielectric else 1)

    forces = [
        bond_stretch(typed),
        angle_bend(typed),
        stretch_bend(typed),
        out_of_plane(typed),
        torsion(typed),
        vdw(typed, nonbonded_cutoff_nm),
        electrostatics(typed, nonbonded_cutoff_nm),
    ]
    n = typed.mol.GetNumAtoms()
    charges = np.array([props.GetMMFFPartialCharge(i) for i in range(n)], dtype=float)
    masses = np.array([a.GetMass() for a in typed.mol.GetAtoms()], dtype=float)
    sigma = np.empty(n)
    epsilon = np.empty(n)
    for i in range(n):
        params = props.GetMMFFVdWParams(i, i)
        if params is None:
            raise _missing(typed, "van der Waals", (i,))
        r_star_ii, eps_ii = params[0], params[1]  # unscaled like-pair values
        sigma[i] = r_star_ii * ANGSTROM_TO_NM / 2.0 ** (1.0 / 6.0)
        epsilon[i] = eps_ii * KCAL_TO_KJ
    atom_types = np.array([props.GetMMFFAtomType(i) for i in range(n)], dtype=int)
    return LigandForces(
        forces=forces,
        charges=charges,
        masses=masses,
        lj_sigma_nm=sigma,
        lj_epsilon_kj=epsilon,
        atom_types=atom_types,
        offset=typed.offset,
        variant=variant,
    )


def mmff_ligand_system(
    mol: Chem.Mol,
    *,
    variant: str = "MMFF94",
    dielectric_constant: float = 1.0,
    distance_dielectric: bool = False,
) -> openmm.System:
    """An OpenMM System of the isolated ligand in vacuum with only its MMFF forces.

    No cutoff, no periodic box, no constraints. Force ``g`` of
    :data:`TERM_NAMES` is put in force group ``g`` (0..6), so single terms can be
    evaluated with ``context.getState(getEnergy=True, groups={g})``.

    Parameters
    ----------
    mol : Chem.Mol
        Ligand with explicit hydrogens.
    variant, dielectric_constant, distance_dielectric
        As in :func:`mmff_ligand_forces`.

    Returns
    -------
    openmm.System
    """
    lig = mmff_ligand_forces(
        mol, variant=variant, dielectric_constant=dielectric_constant, distance_dielectric=distance_dielectric
    )
    system = openmm.System()
    for mass in lig.masses:
        system.addParticle(float(mass))
    for group, force in enumerate(lig.forces):
        force.setForceGroup(group)
        system.addForce(force)
    return system
