"""Input records: parse PDB/PDBQT atoms, drop hydrogens, resolve altlocs, name chains, split metals."""

from __future__ import annotations

import logging
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ReceptorError
from ..io import read_structure_text
from .sources import _structure_suffix

log = logging.getLogger("pipeline.receptor")

#: Metal ions AutoDock Vina has atom types for (all typed as metal donors).
DOCKING_METALS = frozenset({"ZN", "MG", "CA", "MN", "FE"})
# AutoDock atom type -> element, for types whose element is not just the type's letters.
_AD_TYPE_ELEMENT = {
    "A": "C",
    "NA": "N",
    "NS": "N",
    "OA": "O",
    "OS": "O",
    "SA": "S",
    "HD": "H",
    "HS": "H",
    "CG0": "C",
    "CG1": "C",
    "G0": "C",
    "G1": "C",
}
_X_H_LENGTH = {"C": 1.09, "N": 1.01, "O": 0.96, "S": 1.34}  # ideal bond lengths to hydrogen, A
_WATER_NAMES = frozenset({"HOH", "WAT", "H2O", "DOD", "TIP3", "SOL"})

# --------------------------------------------------------------------------- input records


@dataclass
class _Atom:
    """One ATOM/HETATM record, PDB columns 1-66 plus element."""

    line: str
    element: str
    line_number: int

    @property
    def residue_key(self) -> tuple[str, str, str]:
        """(chain, residue number, insertion code)."""
        return self.line[21], self.line[22:26].strip(), self.line[26]

    @property
    def residue_label(self) -> str:
        """``"A:SER 438"``-style label."""
        return f"{self.line[21].strip()}:{self.line[17:20].strip()} {self.line[22:27].strip()}"

    @property
    def xyz(self) -> np.ndarray:
        """Coordinates in Angstrom."""
        return np.array([float(self.line[30:38]), float(self.line[38:46]), float(self.line[46:54])])


def _element_of_ad_type(ad_type: str) -> str:
    """Element symbol for an AutoDock atom type (``OA`` -> ``O``, ``Zn`` -> ``Zn``)."""
    if ad_type.upper() in _AD_TYPE_ELEMENT:
        return _AD_TYPE_ELEMENT[ad_type.upper()]
    letters = re.sub(r"[^A-Za-z]", "", ad_type)
    return letters[:1].upper() + letters[1:].lower()


def _element_of_pdb_line(line: str) -> str:
    """Element from columns 77-78, else guessed from the atom name as PDB readers do."""
    element = line[76:78].strip()
    if element:
        return element.capitalize()
    name = line[12:16]
    if name[0].isalpha() and line[0:6] == "HETATM":
        return name[:2].strip().capitalize()
    return re.sub(r"[^A-Za-z]", "", name)[:1].upper()


def _parse_records(text: str, is_pdbqt: bool) -> tuple[list[_Atom], list[int]]:
    """ATOM/HETATM records of the first model, and the atom indices where a TER closed a chain."""
    atoms: list[_Atom] = []
    ter_after: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        record = raw[:6]
        if record == "ENDMDL":
            break
        if record.startswith("TER"):
            ter_after.append(len(atoms))
        if record not in ("ATOM  ", "HETATM"):
            continue
        if len(raw) < 54:
            raise ValueError(f"line {number} is too short for an atom record")
        element = _element_of_ad_type(raw[77:].split()[0]) if is_pdbqt and len(raw) > 77 else _element_of_pdb_line(raw)
        float(raw[30:38]), float(raw[38:46]), float(raw[46:54])  # fail early on bad coordinates
        atoms.append(_Atom(raw[:66].ljust(66), element, number))
    return atoms, ter_after


def _drop_hydrogens(atoms: list[_Atom]) -> list[_Atom]:
    """Remove hydrogens and deuteria; they are all rebuilt later at the requested pH."""
    return [a for a in atoms if a.element not in ("H", "D")]


def _keep_first_altloc(atoms: list[_Atom]) -> list[_Atom]:
    """Keep, per residue, atoms without altloc or with the residue's first altloc letter."""
    chosen: dict[tuple, str] = {}
    kept = []
    for atom in atoms:
        altloc = atom.line[16]
        if altloc != " ":
            chosen.setdefault(atom.residue_key, altloc)
            if chosen[atom.residue_key] != altloc:
                continue
        kept.append(_Atom(atom.line[:16] + " " + atom.line[17:], atom.element, atom.line_number))
    return kept


def _name_blank_chains(atoms: list[_Atom], ter_after: list[int]) -> tuple[list[_Atom], list[str]]:
    """Give atoms with a blank chain identifier a free letter, a new one after each TER."""
    if all(a.line[21] != " " for a in atoms):
        return atoms, []
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in {a.line[21] for a in atoms}]
    segment_of = np.searchsorted(np.array(ter_after, dtype=int), np.arange(len(atoms)), side="right")
    used: dict[int, str] = {}
    renamed = []
    for atom, segment in zip(atoms, segment_of):
        if atom.line[21] == " ":
            letter = used.setdefault(int(segment), free[min(len(used), len(free) - 1)])
            atom = _Atom(atom.line[:21] + letter + atom.line[22:], atom.element, atom.line_number)
        renamed.append(atom)
    return renamed, [f"blank chain identifier set to {', '.join(sorted(set(used.values())))}"]


def _residue_runs(atoms: list[_Atom]) -> list[tuple[tuple, int, int]]:
    """Runs of consecutive records of one residue: (residue key, first index, length)."""
    runs: list[list] = []
    for index, atom in enumerate(atoms):
        if runs and runs[-1][0] == atom.residue_key:
            runs[-1][2] += 1
        else:
            runs.append([atom.residue_key, index, 1])
    return [tuple(run) for run in runs]


def _regroup_interrupted_residues(atoms: list[_Atom]) -> tuple[list[_Atom], list[str]]:
    """Make every residue's records contiguous, placed where most of its records are.

    A residue whose records are split (e.g. 1iep's stray ``HB2 SER A 438`` on
    the first line) is merged at its largest run, so a stray record cannot move
    the residue and fake a chain break.
    """
    runs = _residue_runs(atoms)
    main_run: dict[tuple, tuple[int, int]] = {}
    first_line: dict[tuple, list[int]] = defaultdict(list)
    for key, start, length in runs:
        first_line[key].append(atoms[start].line_number)
        if length > main_run.get(key, (0, -1))[1]:
            main_run[key] = (start, length)
    groups: dict[tuple, list[_Atom]] = defaultdict(list)
    for atom in atoms:
        groups[atom.residue_key].append(atom)
    order = sorted(groups, key=lambda key: main_run[key][0])
    notes = [
        f"{groups[key][0].residue_label}: records split over input lines {', '.join(map(str, lines))}; merged"
        for key, lines in first_line.items()
        if len(lines) > 1
    ]
    return [atom for key in order for atom in groups[key]], notes


def _split_docking_metals(atoms: list[_Atom], keep_names: set[str]) -> tuple[list[_Atom], list[_Atom]]:
    """Separate single-atom Vina-typed metal ions (not kept for MD) from everything else."""
    per_residue: dict[tuple, list[_Atom]] = defaultdict(list)
    for atom in atoms:
        per_residue[atom.residue_key].append(atom)
    metals = [
        group[0]
        for group in per_residue.values()
        if len(group) == 1
        and group[0].element.upper() in DOCKING_METALS
        and group[0].line[17:20].strip().upper() not in keep_names
    ]
    metal_ids = {id(a) for a in metals}
    return [a for a in atoms if id(a) not in metal_ids], metals


def _name_ions_by_element(atoms: list[_Atom]) -> list[_Atom]:
    """Call single-atom Zn/Mg/Ca/Mn/Fe residues by their element (dockstring writes ZN1, MG4, ...)."""
    size: defaultdict[tuple[str, str, str], int] = defaultdict(int)
    for atom in atoms:
        size[atom.residue_key] += 1
    renamed = []
    for atom in atoms:
        symbol = atom.element.upper()
        if size[atom.residue_key] == 1 and symbol in DOCKING_METALS:
            line = atom.line[:12] + f"{symbol:<4}" + atom.line[16] + f"{symbol:>3}" + atom.line[20:]
            atom = _Atom(line, atom.element, atom.line_number)
        renamed.append(atom)
    return renamed


def _pdb_text(atoms: list[_Atom]) -> str:
    """PDB text of atom records (element in columns 77-78)."""
    lines = [f"{a.line}{'':10}{a.element.upper():>2}" for a in atoms]
    return "\n".join(lines + ["END", ""])


def _metal_hetatm_lines(metals: list[_Atom]) -> list[str]:
    """HETATM records for docking-only metals (named by element, as meeko's ion templates expect)."""
    return [f"HETATM{atom.line[6:66]}{'':10}{atom.element.upper():>2}" for atom in metals]


def read_receptor_records(path: Path) -> tuple[list[_Atom], list[str]]:
    """Read and clean the atom records of a PDB or PDBQT receptor.

    Parameters
    ----------
    path : Path
        ``.pdb`` or ``.pdbqt`` file, optionally gzipped (``.pdb.gz``).  PDBQT
        charge/type columns are dropped and the element is taken from the AutoDock type.

    Returns
    -------
    atoms, notes
        Heavy-atom records (first altloc, contiguous residues, no blank chain
        identifiers) and human-readable notes on what was repaired.

    Raises
    ------
    ReceptorError
        The file cannot be read or holds no usable atom records.
    """
    try:
        text = read_structure_text(path)
        atoms, ter_after = _parse_records(text, is_pdbqt=_structure_suffix(path) == ".pdbqt")
    except (OSError, EOFError, zlib.error, ValueError) as exc:  # EOFError, zlib.error: truncated or corrupt .gz
        raise ReceptorError(f"Cannot read receptor {path} ({exc}); supply a valid PDB or PDBQT file.") from exc
    if not _drop_hydrogens(atoms):
        raise ReceptorError(
            f"Receptor {path} contains no heavy-atom ATOM/HETATM records; supply a protein PDB or PDBQT."
        )
    atoms, blank_notes = _name_blank_chains(atoms, ter_after)
    atoms, split_notes = _regroup_interrupted_residues(atoms)
    atoms = _name_ions_by_element(_keep_first_altloc(_drop_hydrogens(atoms)))
    return atoms, blank_notes + split_notes


def _with_metals(pdb_text: str, metals: list[_Atom]) -> str:
    """Append docking-only metal HETATM records before the END record."""
    body = [line for line in pdb_text.splitlines() if line.strip() != "END"]
    return "\n".join(body + _metal_hetatm_lines(metals) + ["END", ""])
