"""The PDBFixer stage: modified residues, heterogens, chain breaks, missing atoms, hydrogens, relaxation."""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import numpy as np

from ..errors import ReceptorError
from .amber import _forcefield, _openmm_modules, md_forcefield_files
from .records import _WATER_NAMES, _X_H_LENGTH

log = logging.getLogger("pipeline.receptor")

#: Metal-ligand distance (A) below which a His N or Cys S is taken as coordinating.
METAL_COORDINATION_CUTOFF = 2.8
#: Peptide C..N (or O3'..P) distance (A) above which two residues are not bonded.
BREAK_DISTANCE = 2.0
#: Distance (A) from the docking box beyond which a residue that cannot be typed is removed, not rebuilt.
#: Atom names kept when a residue's side chain is rebuilt, and those held fixed when the residue is relaxed.
_BACKBONE_ATOMS = frozenset({"N", "CA", "C", "O", "OXT"})
_RELAX_FIXED_ATOMS = frozenset({"N", "CA", "C"})
#: Structure file suffixes accepted as receptor input (each also gzipped, e.g. ``.pdb.gz``).
# --------------------------------------------------------------------------- PDBFixer stage


def _load_fixer(pdb_text: str, source: Path):
    """PDBFixer object for cleaned PDB text, loops deliberately not modelled."""
    _, _, PDBFixer, _, _ = _openmm_modules()
    try:
        fixer = PDBFixer(pdbfile=io.StringIO(pdb_text))
    except Exception as exc:  # OpenMM raises bare Exceptions for unparseable input
        raise ReceptorError(f"PDBFixer cannot parse receptor {source} ({exc}); check its ATOM records.") from exc
    fixer.missingResidues = {}  # chain breaks stay breaks
    return fixer


def _standard_heavy_atom_sets(fixer) -> dict[frozenset, str]:
    """Heavy-atom name set (without OXT) of each standard amino acid -> its name."""
    protein = _openmm_modules()[3]
    sets = {}
    for name in protein:
        atoms = fixer.templates[name].topology.atoms()
        sets[frozenset(a.name for a in atoms if a.element.symbol != "H" and a.name != "OXT")] = name
    return sets


def _renamed_standard_residues(fixer, keep_names: set[str]) -> list[tuple]:
    """Unknown residue names whose heavy atoms are exactly a standard amino acid's.

    Preparation tools write tautomer or state labels as residue names (dockstring
    has HIZ, LEV, MEU, GLV, CYT, ...); such residues are renamed, not deleted.
    Nucleotide names are not trusted either: OpenMM reads ``CYT`` as RNA ``C``.
    """
    _, _, _, protein, _ = _openmm_modules()
    by_atoms = _standard_heavy_atom_sets(fixer)
    known = protein | keep_names | _WATER_NAMES | {r.name for r, _ in fixer.nonstandardResidues}
    pairs = []
    for residue in fixer.topology.residues():
        atoms = frozenset(a.name for a in residue.atoms() if a.name != "OXT")
        if residue.name not in known and atoms in by_atoms:
            pairs.append((residue, by_atoms[atoms]))
    return pairs


def _replace_modified_residues(fixer, keep_names: set[str]) -> list[str]:
    """Mutate residues PDBFixer knows (TPO, MSE, ...) to their parent amino acid, rename relabelled ones."""
    fixer.findNonstandardResidues()
    fixer.nonstandardResidues += _renamed_standard_residues(fixer, keep_names)
    notes = [f"{r.chain.id}:{r.name} {r.id} replaced by {new}" for r, new in fixer.nonstandardResidues]
    fixer.replaceNonstandardResidues()
    return notes


def _is_water(residue) -> bool:
    """Water by name, or a residue that is a lone oxygen (hydrogens were stripped), e.g. dockstring's WAM."""
    atoms = list(residue.atoms())
    return residue.name in _WATER_NAMES or (len(atoms) == 1 and atoms[0].element.symbol == "O")


def _name_water_hoh(residue) -> None:
    """Rename a kept water to HOH / O, the names amber14, OpenMM's hydrogen rules and meeko know."""
    residue.name = "HOH"
    for atom in residue.atoms():
        if atom.element.symbol == "O":
            atom.name = "O"


def _remove_heterogens(fixer, keep_waters: bool, keep_names: set[str]) -> list[str]:
    """Delete non-polymer residues except kept ones; return labels of what was removed."""
    app, _, _, protein, nucleic = _openmm_modules()
    polymer = protein | nucleic
    doomed = [
        r
        for r in fixer.topology.residues()
        if r.name not in polymer and r.name not in keep_names and not (keep_waters and _is_water(r))
    ]
    waters = [r for r in doomed if _is_water(r)]
    labels = [f"{r.chain.id}:{r.name} {r.id}" for r in doomed if not _is_water(r)]
    if waters:
        labels.append(f"{len(waters)} waters")
    for residue in fixer.topology.residues():
        if keep_waters and _is_water(residue) and residue not in doomed:
            _name_water_hoh(residue)
    modeller = app.Modeller(fixer.topology, fixer.positions)
    modeller.delete(doomed)
    fixer.topology, fixer.positions = modeller.topology, modeller.positions
    return labels


def _link_atoms(residue, nucleic: set[str]) -> tuple[str, str]:
    """Names of the atoms that bond a residue to the previous one (previous side, this side)."""
    return ("O3'", "P") if residue.name in nucleic else ("C", "N")


def _bonded_to_previous(previous, residue, positions, nucleic: set[str]) -> bool:
    """Whether two consecutive residues are covalently linked, judged from coordinates."""
    tail, head = _link_atoms(residue, nucleic)
    prev_atoms = {a.name: a.index for a in previous.atoms()}
    this_atoms = {a.name: a.index for a in residue.atoms()}
    if tail in prev_atoms and head in this_atoms:
        i, j, limit = prev_atoms[tail], this_atoms[head], BREAK_DISTANCE
    elif "CA" in prev_atoms and "CA" in this_atoms:
        i, j, limit = prev_atoms["CA"], this_atoms["CA"], 4.2
    else:
        return False
    return float(np.linalg.norm(positions[i] - positions[j])) <= limit


def _polymer_segments(chain, positions, polymer: set[str], nucleic: set[str]) -> tuple[list[list], list, list[str]]:
    """Split a chain into covalently continuous polymer segments plus its other residues."""
    segments: list[list] = []
    others: list = []
    breaks: list[str] = []
    for residue in chain.residues():
        if residue.name not in polymer:
            others.append(residue)
            continue
        if segments and _bonded_to_previous(segments[-1][-1], residue, positions, nucleic):
            segments[-1].append(residue)
            continue
        if segments:
            last = segments[-1][-1]
            breaks.append(
                f"{chain.id}:{last.name} {last.id}{last.insertionCode.strip()} / "
                f"{chain.id}:{residue.name} {residue.id}{residue.insertionCode.strip()}"
            )
        segments.append([residue])
    return segments, others, breaks


def _is_isolated_amino_acid(segment: list, protein: set[str]) -> bool:
    """A lone amino acid between two breaks (amber14 has no N-and-C-terminal template for it)."""
    return len(segment) == 1 and segment[0].name in protein


def split_chains_at_breaks(fixer) -> tuple[list[str], list[str], int]:
    """Give every covalently continuous polymer stretch its own chain, so its ends become termini.

    Non-polymer residues (kept waters, ions, heterogens) move to a separate
    chain with the same identifier, so they never sit at a polymer terminus.
    Lone amino acids with no bonded neighbour are deleted, and a missing OXT
    is added to each C-terminal residue.  Chain letters and residue numbers are kept.

    Returns
    -------
    breaks, notes, n_oxt
        ``"A:GLU 340 / A:SER 345"`` labels of the breaks, notes on deleted lone
        residues, and the number of OXT atoms added.
    """
    app, unit, _, protein, nucleic = _openmm_modules()
    positions = np.array(fixer.positions.value_in_unit(unit.angstrom))
    new = app.Topology()
    new.setPeriodicBoxVectors(fixer.topology.getPeriodicBoxVectors())
    atom_map: dict = {}
    new_xyz: list = []
    breaks, notes = [], []
    for chain in fixer.topology.chains():
        segments, others, chain_breaks = _polymer_segments(chain, positions, protein | nucleic, nucleic)
        breaks += chain_breaks
        lone = [s for s in segments if _is_isolated_amino_acid(s, protein)]
        notes += [f"{chain.id}:{s[0].name} {s[0].id}: lone residue between chain breaks; deleted" for s in lone]
        for group in [s for s in segments if s not in lone] + ([others] if others else []):
            _append_chain(new, chain.id, group, positions, atom_map, new_xyz)
    _copy_bonds(fixer.topology, new, atom_map)
    fixer.topology = new
    fixer.positions = unit.Quantity(np.array(new_xyz) * 0.1, unit.nanometer)
    return breaks, notes, len(new_xyz) - len(atom_map)


def _append_chain(new, chain_id: str, residues: list, positions: np.ndarray, atom_map: dict, new_xyz: list) -> None:
    """Copy residues into a new chain of ``new``; a C-terminal amino acid gets a well-placed OXT."""
    protein = _openmm_modules()[3]
    new_chain = new.addChain(chain_id)
    for residue in residues:
        new_residue = new.addResidue(residue.name, new_chain, residue.id, residue.insertionCode)
        for atom in residue.atoms():
            atom_map[atom] = new.addAtom(atom.name, atom.element, new_residue, atom.id)
            new_xyz.append(positions[atom.index])
    if new_residue.name in protein:
        _place_terminal_oxygen(new, new_residue, new_xyz)


def _copy_bonds(old, new, atom_map: dict) -> None:
    """Copy bonds within each new chain and disulfides; drop peptide bonds across breaks.

    Standard bonds are then (re)created, since residues renamed to standard
    amino acids had none when the file was read.
    """
    for a, b in old.bonds():
        if a in atom_map and b in atom_map:
            if atom_map[a].residue.chain is atom_map[b].residue.chain or _is_disulfide(a, b):
                new.addBond(atom_map[a], atom_map[b])
    new.createStandardBonds()


def _place_terminal_oxygen(topology, residue, xyz: list) -> None:
    """Give a C-terminal residue an OXT trigonal in the CA-C-O plane, 1.25 A from C.

    Added when missing, and moved when an input OXT is not bonded to C (dockstring's
    F2 has them 2 A away).  Placed here rather than by PDBFixer, whose minimisation
    can squeeze OXT against the residue on the other side of a short gap.
    """
    atoms = {a.name: a for a in residue.atoms()}
    if not {"CA", "C", "O"} <= atoms.keys():
        return
    carbon = xyz[atoms["C"].index]
    away_from_ca = carbon - xyz[atoms["CA"].index]
    away_from_o = carbon - xyz[atoms["O"].index]
    direction = away_from_ca / np.linalg.norm(away_from_ca) + away_from_o / np.linalg.norm(away_from_o)
    position = carbon + 1.25 * direction / np.linalg.norm(direction)
    if "OXT" not in atoms:
        topology.addAtom("OXT", _openmm_modules()[0].element.oxygen, residue)
        xyz.append(position)
    elif not 1.1 < np.linalg.norm(xyz[atoms["OXT"].index] - carbon) < 1.6:
        xyz[atoms["OXT"].index] = position


def _is_disulfide(a, b) -> bool:
    """Bond between two cysteine SG atoms."""
    return a.name == "SG" and b.name == "SG"


def add_missing_heavy_atoms(fixer) -> int:
    """Rebuild missing side-chain/backbone atoms and terminal OXT; return how many were added."""
    fixer.findMissingAtoms()
    count = sum(len(v) for v in fixer.missingAtoms.values()) + sum(len(v) for v in fixer.missingTerminals.values())
    fixer.addMissingAtoms(seed=0)
    return count


def relax_residues(fixer, keys) -> None:
    """Minimise some residues with amber14 in vacuum, their N, CA, C and every other residue fixed.

    The repair for a residue meeko cannot type near the pocket.  Such residues
    clash with a neighbour or are distorted in a few atoms (Uni-FEP's AURKA Arg
    255 NH1 sits 1.7 A from a Cys SG); amber14's bonded terms restore their
    geometry and its Lennard-Jones terms push them out of the clash.  The
    carbonyl O and the hydrogens move too: OpenMM's soft-sphere hydrogen
    placement can push an amide H next to a clashing atom almost onto the
    previous residue's C (GCKR Phe 7: 1.1 A), and a distorted input O can sit
    1.5 A from the next N (LCK Leu 385); the peptide-plane terms fix both.  N,
    CA and C keep the experimental trace.  Also applied to side chains rebuilt
    by PDBFixer, whose soft force field lets a crowded side chain collapse
    (angles near 65 degrees, C-C 1.8 A).  Left unchanged when amber14 cannot
    build a System (the OpenMM check reports why) or the minimisation does not
    give finite coordinates (atoms on top of each other).

    Parameters
    ----------
    fixer : pdbfixer.PDBFixer
        Protonated structure; its positions are updated in place.
    keys : collection of tuple
        ``(chain id, residue number, insertion code)`` of the residues to relax.
    """
    import openmm

    app, unit, _, _, _ = _openmm_modules()
    topology = fixer.topology
    moving = {
        atom.index
        for residue in topology.residues()
        if (residue.chain.id, residue.id, residue.insertionCode or " ") in keys
        for atom in residue.atoms()
        if atom.name not in _RELAX_FIXED_ATOMS
    }
    files = tuple(f for f in md_forcefield_files(topology) if not f.startswith("implicit/"))
    try:
        system = _forcefield(files).createSystem(
            topology, nonbondedMethod=app.CutoffNonPeriodic, nonbondedCutoff=1.0 * unit.nanometer
        )
    except ValueError:
        return
    for index in range(system.getNumParticles()):
        if index not in moving:
            system.setParticleMass(index, 0.0)  # the minimiser leaves massless particles where they are
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(fixer.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    positions = context.getState(getPositions=True).getPositions(asNumpy=True)
    if np.all(np.isfinite(positions.value_in_unit(unit.nanometer))):
        fixer.positions = positions


def _is_chain_end(residue) -> bool:
    """First or last residue of its chain (a terminus)."""
    residues = list(residue.chain.residues())
    return residue is residues[0] or residue is residues[-1]


def _metal_coordination_variants(topology, positions: np.ndarray, metals: np.ndarray) -> tuple[list, list]:
    """His tautomers (free N towards the metal) and Cys residues to deprotonate near metal ions.

    Terminal cysteines keep their proton: amber14 has no N-/C-terminal CYM template.
    """
    variants: list[str | None] = [None] * topology.getNumResidues()
    thiolates: list[int] = []
    if len(metals) == 0:
        return variants, thiolates
    for residue in topology.residues():
        near = {
            a.name
            for a in residue.atoms()
            if a.name in ("ND1", "NE2", "SG")
            and np.min(np.linalg.norm(metals - positions[a.index], axis=1)) < METAL_COORDINATION_CUTOFF
        }
        if residue.name == "HIS" and near:
            variants[residue.index] = "HIE" if "ND1" in near else "HID"
        elif residue.name == "CYS" and "SG" in near and not _is_chain_end(residue):
            thiolates.append(residue.index)
    return variants, thiolates


def protonate(fixer, ph: float, metal_xyz: np.ndarray) -> int:
    """Add hydrogens at ``ph`` (metal-bound His/Cys as bound); return the number added.

    ``Modeller.addHydrogens`` places them with its soft-sphere model, which keeps
    every hydrogen away from all other atoms; its X-H bonds come out near 1.2 A
    and are then set to ideal lengths.  Relaxing with amber14 instead was tried
    and rejected: its 50 minimiser steps can leave geminal hydrogens 1 A apart,
    and hydroxyl hydrogens (no Lennard-Jones radius) collapse onto acceptors
    when the input has a tight O..O contact, which meeko then reads as a bond.
    The random start is seeded so outputs are reproducible.  PDBFixer's own
    wrapper is avoided because it downloads definitions of unknown residues.
    """
    app, unit, _, _, _ = _openmm_modules()
    positions = np.array(fixer.positions.value_in_unit(unit.angstrom))
    variants, thiolates = _metal_coordination_variants(fixer.topology, positions, metal_xyz)
    before = fixer.topology.getNumAtoms()
    modeller = app.Modeller(fixer.topology, fixer.positions)
    state = random.getstate()
    random.seed(0)
    try:
        modeller.addHydrogens(pH=ph, variants=variants)
    finally:
        random.setstate(state)
    xyz = _with_ideal_hydrogen_bonds(modeller.topology, np.array(modeller.positions.value_in_unit(unit.angstrom)))
    fixer.topology, fixer.positions = modeller.topology, unit.Quantity(xyz * 0.1, unit.nanometer)
    _deprotonate_thiols(fixer, thiolates)
    return fixer.topology.getNumAtoms() - before


def _deprotonate_thiols(fixer, residue_indices: list[int]) -> None:
    """Remove HG from the given cysteines (thiolates bound to a metal)."""
    app = _openmm_modules()[0]
    doomed = [a for r in fixer.topology.residues() if r.index in residue_indices for a in r.atoms() if a.name == "HG"]
    if doomed:
        modeller = app.Modeller(fixer.topology, fixer.positions)
        modeller.delete(doomed)
        fixer.topology, fixer.positions = modeller.topology, modeller.positions


def _with_ideal_hydrogen_bonds(topology, xyz: np.ndarray) -> np.ndarray:
    """Move each hydrogen along its bond so the X-H length is ideal (C 1.09, N 1.01, O 0.96, S 1.34 A)."""
    xyz = xyz.copy()
    for a, b in topology.bonds():
        hydrogen, parent = (a, b) if a.element.symbol == "H" else (b, a)
        if hydrogen.element.symbol == "H" and parent.element.symbol != "H":
            bond = xyz[hydrogen.index] - xyz[parent.index]
            length = _X_H_LENGTH.get(parent.element.symbol, 1.0)
            xyz[hydrogen.index] = xyz[parent.index] + bond * (length / np.linalg.norm(bond))
    return xyz


def _md_pdb_text(fixer, source: str, ph: float) -> str:
    """PDB text of the fixed structure with original chain letters and residue numbers."""
    app, _, _, _, _ = _openmm_modules()
    handle = io.StringIO()
    handle.write(f"REMARK   1 VSCREEN RECEPTOR FROM {Path(source).name[:50]}\n")
    handle.write(f"REMARK   1 HYDROGENS ADDED AT PH {ph:.2f} WITH OPENMM; LOOPS NOT MODELLED\n")
    app.PDBFile.writeFile(fixer.topology, fixer.positions, handle, keepIds=True)
    return handle.getvalue()
