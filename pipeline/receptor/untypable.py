"""Residues meeko or amber14 cannot type: removed far from the docking box, rebuilt near it."""

from __future__ import annotations

import io
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..box import Box
from ..errors import ReceptorError
from .amber import _forcefield, _openmm_modules, md_forcefield_files
from .checks import check_openmm_system
from .pdbqt import _meeko_polymer, receptor_pdbqt
from .records import _Atom, _drop_hydrogens, _parse_records, _with_metals
from .repair import _BACKBONE_ATOMS, BREAK_DISTANCE

log = logging.getLogger("pipeline.receptor")

#: A docking box: a :class:`pipeline.box.Box` or its ``(center, size)`` pair (Å).
BoxLike = Box | tuple[tuple[float, float, float], tuple[float, float, float]]

UNTYPABLE_REMOVAL_DISTANCE = 10.0
#: Preparation rounds spent on removing/rebuilding untypable residues before giving up.
MAX_UNTYPABLE_ROUNDS = 8
# --------------------------------------------------------------------------- untypable residues


@dataclass
class _Untypable:
    """A residue of the prepared structure that meeko or amber14 cannot type."""

    key: tuple[str, str, str]  # (chain, residue number, insertion code) as in _Atom.residue_key
    engine: str
    reason: str
    label: str = ""
    distance: float = 0.0  # to the docking box, A (0 inside)


_MEEKO_KEY = re.compile(r"^(.?):(-?\d+)([A-Za-z]?)$")
_RDKIT_BUILD_FAILURE = re.compile(r"unable to build rdkit mol for residue \S+ corresponding to key (\S+)")


def _meeko_key(key: str) -> tuple[str, str, str] | None:
    """meeko's ``"A:123"`` / ``"A:123B"`` residue key as an input residue key, or None if unparseable."""
    match = _MEEKO_KEY.match(key)
    return (match.group(1) or " ", match.group(2), match.group(3) or " ") if match else None


def _meeko_untypable(pdb_text: str) -> list[_Untypable]:
    """Residues meeko cannot type in PDB text it rejected; empty if the failure is not per residue.

    RDKit failing to build a residue at all (valence errors from atoms too close)
    stops meeko at the first such residue, so at most one of those is found per
    call; template mismatches are all listed at once.
    """
    try:
        polymer = _meeko_polymer(pdb_text, allow_bad_res=True)
    except (RuntimeError, ValueError) as exc:
        match = _RDKIT_BUILD_FAILURE.search(str(exc))
        key = _meeko_key(match.group(1)) if match else None
        reason = "RDKit cannot build it from its coordinates (atoms too close together)"
        return [_Untypable(key, "meeko", reason)] if key else []
    keys = [_meeko_key(k) for k in polymer.get_ignored_monomers()]
    reason = "no meeko template matches the bonds perceived from its coordinates (a clash or distorted geometry)"
    return [_Untypable(k, "meeko", reason) for k in keys if k]


def _amber_untypable(pdb_text: str) -> list[_Untypable]:
    """Residues of an MD PDB that match no template of the amber14 force field files."""
    app = _openmm_modules()[0]
    topology = app.PDBFile(io.StringIO(pdb_text)).topology
    unmatched = _forcefield(md_forcefield_files(topology)).getUnmatchedResidues(topology)
    reason = "no amber14 template matches it"
    return [_Untypable((r.chain.id, r.id, r.insertionCode or " "), "amber14", reason) for r in unmatched]


def _type_structure(pdb_text: str, docking_metals: list, source: str, check_openmm: bool):
    """PDBQT text of a prepared structure, or the residues that stop it (with the error they caused).

    Returns ``(pdbqt_text, [], None)`` on success, ``(None, untypable, error)``
    when specific residues cannot be typed; any other failure is raised.
    """
    if check_openmm:
        try:
            check_openmm_system(pdb_text, name=source)
        except ReceptorError as exc:
            bad = _amber_untypable(pdb_text)
            if not bad:
                raise
            return None, bad, exc
    text = _with_metals(pdb_text, docking_metals)
    try:
        return receptor_pdbqt(text, source), [], None
    except ReceptorError as exc:
        bad = _meeko_untypable(text) if exc.__cause__ is not None else []  # no cause: an unknown heterogen name
        if not bad:
            raise
        return None, bad, exc


def _box_bounds(box: BoxLike) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners (A) of a ``pipeline.box.Box`` or a ``(center, size)`` pair."""
    center, size = (box.center, box.size) if isinstance(box, Box) else box
    middle, half = np.asarray(center, dtype=float), np.asarray(size, dtype=float) / 2
    return middle - half, middle + half


def _distance_to_box(xyz: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> float:
    """Smallest distance (A) from any of the points to the box; 0 when one lies inside."""
    lo, hi = bounds
    return float(np.min(np.linalg.norm(xyz - np.clip(xyz, lo, hi), axis=1)))


def _locate_untypable(bad: list[_Untypable], typed_text: str, bounds) -> list[_Untypable]:
    """Fill in each residue's label and distance to the box from the text that failed to type."""
    atoms, _ = _parse_records(typed_text, is_pdbqt=False)
    by_key: dict[tuple, list[_Atom]] = defaultdict(list)
    for atom in _drop_hydrogens(atoms):
        by_key[atom.residue_key].append(atom)
    located = []
    for residue in bad:
        members = by_key.get(residue.key)
        if not members:
            continue  # meeko named a key absent from the text: leave the original error to explain it
        residue.label = members[0].residue_label
        residue.distance = _distance_to_box(np.array([a.xyz for a in members]), bounds) if bounds else 0.0
        located.append(residue)
    return located


@dataclass
class _UntypableLog:
    """What the untypable-residue handling did, across preparation rounds."""

    removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attempts: dict[tuple[str, str, str], int] = field(default_factory=dict)  # 1 relaxed, 2 also rebuilt


def _handle_untypable(
    bad: list[_Untypable],
    atoms: list[_Atom],
    metals: list[_Atom],
    limit: float,
    done: _UntypableLog,
    source: str,
) -> tuple[list[_Atom], list[_Atom]]:
    """Remove far untypable residues from the input records; mark near ones for repair in the next round.

    A near standard amino acid is first relaxed as it is (its own clash is
    usually a few atoms), then, if still untypable, its side chain is deleted
    for PDBFixer to rebuild and relaxed again.  Raises ReceptorError naming every
    near residue that is not a standard amino acid or that both repairs left untypable.
    """
    protein = _openmm_modules()[3]
    hopeless = []
    for residue in bad:
        detail = f"{residue.engine}: {residue.reason}; {residue.distance:.1f} A from the docking box"
        if residue.distance > limit:
            atoms = [a for a in atoms if a.residue_key != residue.key]
            metals = [a for a in metals if a.residue_key != residue.key]
            done.removed.append(residue.label)
            done.notes.append(f"{residue.label}: removed from both outputs ({detail})")
            log.warning("receptor %s: removed untypable residue %s (%s)", source, residue.label, detail)
            continue
        residue_name = residue.label.split(":", 1)[1].split()[0]
        side_chain = [a for a in atoms if a.residue_key == residue.key and a.line[12:16].strip() not in _BACKBONE_ATOMS]
        attempts = done.attempts.get(residue.key, 0)
        if residue_name not in protein:
            why = "and is not a standard amino acid, so it cannot be rebuilt"
        elif attempts >= 2:
            why = "even after relaxing it with amber14 and rebuilding its side chain with PDBFixer"
        elif attempts == 1 and not side_chain:
            why = "even after relaxing it with amber14, and has no side chain to rebuild (the backbone is at fault)"
        else:
            why = ""
        if why:
            hopeless.append(
                f"residue {residue.label} cannot be typed ({residue.engine}: {residue.reason}) {why}; it lies "
                f"{residue.distance:.1f} A from the docking box (within {limit:g} A, so it may shape the pocket and "
                f"is not removed){_backbone_distortion(atoms, residue.key)}"
            )
            continue
        done.attempts[residue.key] = attempts + 1
        if attempts == 0:
            done.repaired.append(residue.label)
            done.notes.append(f"{residue.label}: relaxed with amber14, N, CA, C and its surroundings fixed ({detail})")
            log.warning("receptor %s: relaxing untypable residue %s (%s)", source, residue.label, detail)
            continue
        doomed = {id(a) for a in side_chain}
        # Named as in the MD structure, so a relabelled residue (HIZ, ...) stripped to its backbone is still
        # recognised as the amino acid PDBFixer must complete, not dropped as an unknown heterogen.
        atoms = [
            _Atom(a.line[:17] + f"{residue_name:>3}" + a.line[20:], a.element, a.line_number)
            if a.residue_key == residue.key
            else a
            for a in atoms
            if id(a) not in doomed
        ]
        done.notes.append(
            f"{residue.label}: still untypable after relaxing; side chain rebuilt by PDBFixer and relaxed"
        )
        log.warning(
            "receptor %s: rebuilding the side chain of untypable residue %s (%s)", source, residue.label, detail
        )
    if hopeless:
        raise ReceptorError(
            f"Receptor {source}: {'; '.join(hopeless)}. Fix its coordinates in the input (remodel the residue or "
            "resolve its clash with neighbouring atoms), or delete it there if it does not matter for binding."
        )
    return atoms, metals


#: Ideal backbone bond angles (degrees) and the deviation beyond which an error calls the backbone distorted.
_BACKBONE_ANGLES = {
    ("C-", "N", "CA"): 122.0,
    ("N", "CA", "C"): 111.0,
    ("CA", "C", "N+"): 117.0,
    ("CA", "C", "O"): 121.0,
}
_BACKBONE_ANGLE_TOLERANCE = 20.0


def _backbone_distortion(atoms: list[_Atom], key: tuple[str, str, str]) -> str:
    """``"; its backbone is distorted in the input (CA-C-N+ 155 degrees, ideal 117)"`` or ``""``.

    Tells the user an error needs the backbone remodelled, which relaxing around
    a fixed N, CA, C cannot do (Uni-FEP's TEK Arg 895 has CA-C-O at 66 degrees).
    ``C-`` and ``N+`` are the neighbours' linking atoms, used when bonded.
    """
    xyz: dict[tuple, dict[str, np.ndarray]] = defaultdict(dict)
    for atom in atoms:
        xyz[atom.residue_key][atom.line[12:16].strip()] = atom.xyz
    order = list(xyz)  # residues in record order
    if key not in xyz:
        return ""
    names = dict(xyz[key])
    position = order.index(key)
    for step, wanted, own in ((-1, "C", "N"), (1, "N", "C")):
        if 0 <= position + step < len(order) and order[position + step][0] == key[0]:
            linked = xyz[order[position + step]].get(wanted)
            if linked is not None and own in names and np.linalg.norm(linked - names[own]) <= BREAK_DISTANCE:
                names[wanted + ("-" if step < 0 else "+")] = linked
    found = []
    for (a, b, c), ideal in _BACKBONE_ANGLES.items():
        if {a, b, c} <= names.keys():
            u, v = names[a] - names[b], names[c] - names[b]
            angle = float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))
            if abs(angle - ideal) > _BACKBONE_ANGLE_TOLERANCE:
                found.append(f"{a}-{b}-{c} {angle:.0f} degrees, ideal {ideal:.0f}")
    return f"; its backbone is distorted in the input ({', '.join(found)})" if found else ""


def _untypable_without_box(error: ReceptorError, bad: list[_Untypable]) -> ReceptorError:
    """The original typing error, plus the residues and how a docking box would let them be handled."""
    names = ", ".join(r.label for r in bad)
    return ReceptorError(
        f"{error} Untypable residue(s): {names}. Give the docking box (prepare_receptor(box=...)) so residues "
        "far from it are removed and near ones rebuilt automatically."
    )


def _heavy_atom_count(text: str, is_pdbqt: bool) -> int:
    """Number of non-hydrogen atom records in PDB or PDBQT text."""
    atoms, _ = _parse_records(text, is_pdbqt)
    return len(_drop_hydrogens(atoms))
