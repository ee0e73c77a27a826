"""Receptor preparation: one protein structure in, two consistent receptor files out.

``prepare_receptor`` turns a PDB or PDBQT file (or a dockstring target name) into

* an **MD-ready PDB**: alternate locations resolved, waters and heterogens
  removed (unless kept), known modified residues mutated back to their parent
  amino acid, missing heavy atoms rebuilt by PDBFixer, every hydrogen rebuilt by
  OpenMM at the requested pH.  It builds a System with OpenMM's
  ``amber14-all.xml`` (checked by default);
* a **docking PDBQT** for AutoDock Vina, written by meeko from that very PDB,
  so docking and MD see the same heavy atoms and the same protonation states.

Conventions (also recorded in :class:`ReceptorReport`):

Chain breaks
    Missing loops are *not* modelled.  A break is detected geometrically
    (peptide C..N > 2.0 A, or O3'..P for nucleic acids), the chain is split
    there and both ends become ordinary charged termini (NH3+ / COO-), which
    amber14 and meeko both have templates for (OXT is placed trigonally in the
    CA-C-O plane).  Residue numbers and chain letters are kept; every break is
    listed in ``chain_breaks``.  A lone amino acid with breaks on both sides
    (common in dockstring's trimmed targets) has no amber14 template and is
    deleted, with a note in ``input_repairs``.  Neutral ACE/NME caps were not
    used: most gaps in these inputs are one or two residues long, where the
    two caps would overlap.
Metal ions
    Single-atom Zn, Mg, Ca, Mn and Fe ions are *docking-only* by default: they
    stay in the PDBQT (Vina types them as metal donors, which matters for
    metalloprotein pockets such as farnesyltransferase 1s63) but are left out of
    the MD PDB, because ``amber14-all.xml`` has no ion templates and a
    non-bonded 2+ sphere is a poor model of a coordination site.  Residues that
    coordinate a kept metal are protonated as bound (His with the free
    nitrogen towards the metal, Cys as thiolate CYM) in both outputs.  Naming
    the ion in ``keep_heterogens`` keeps it in the MD PDB too; then the System
    needs ``amber14/tip3p.xml`` (see :func:`md_forcefield_files`).
Residues that cannot be typed
    A residue that meeko (no template matches the bonds it perceives from the
    coordinates, or RDKit cannot build it at all) or amber14 cannot type, in a
    structure that otherwise prepares, is handled by its distance to the docking
    box when ``box`` is given: farther than ``remove_untypable_beyond``
    (:data:`UNTYPABLE_REMOVAL_DISTANCE`, 10 A) from the box it is deleted from
    both outputs (its neighbours become termini) and named in
    ``removed_untypable`` and a log warning; closer, a standard amino acid is
    relaxed with amber14 (its N, CA, C and everything else fixed), and if that
    is not enough its side chain is deleted, rebuilt by PDBFixer and relaxed
    again (named in ``repaired_untypable`` and a log warning); if it still
    cannot be typed a :class:`ReceptorError` names it.  Without a box
    every such residue is an error, as the pocket cannot be told apart.  The
    usual cause is a clash in a poorly modelled region (Uni-FEP's AURKA model has
    an Arg NH1 1.7 A from a Cys SG, which meeko reads as a bond; see
    :func:`relax_residues`).
Waters / other heterogens
    Removed unless ``keep_waters`` / ``keep_heterogens``.  A kept heterogen must
    have both an OpenMM amber14 template and a meeko template, otherwise a
    :class:`ReceptorError` says so (nothing is ever downloaded).
Hydrogens, alternate locations
    All input hydrogens are discarded (reduce or AutoDock names, protonation
    chosen for another pH) and rebuilt with ``Modeller.addHydrogens(pH=ph)``
    (OpenMM's standard pKa rules, His tautomer by hydrogen bonding), then X-H
    bonds are set to ideal lengths.  For each residue the first alternate
    location is kept.  Records of one residue split across the file (1iep's
    first line is a stray ``HB2 SER A 438``) are merged and noted in
    ``input_repairs``.
Residue names
    Modified residues PDBFixer knows (TPO, PTR, MSE, ...) become their parent
    amino acid; unknown names whose heavy atoms are exactly a standard amino
    acid's (dockstring's HIZ, LEV, MEU, CYT, ...) are renamed to it; lone-oxygen
    residues count as water and single-atom ions are named by their element.
Outputs
    Both files are written atomically, and only after the OpenMM check (by
    default) and meeko succeeded.  Results are bit-reproducible: OpenMM's
    minimisations run single-threaded and the hydrogen start is seeded.
    Typical cost is 3-15 s per receptor (soft-sphere hydrogen placement and
    meeko dominate); a 725-residue dimer such as 1s63 takes about 20 s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import random
import re
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.io import write_text_atomic

from .errors import VscreenError
from .io import read_structure_text

if TYPE_CHECKING:  # only for annotations: pipeline.box imports this module at run time
    from .box import Box as DockingBox

log = logging.getLogger(__name__)

Box = tuple[tuple[float, float, float], tuple[float, float, float]]

#: Metal ions AutoDock Vina has atom types for (all typed as metal donors).
DOCKING_METALS = frozenset({"ZN", "MG", "CA", "MN", "FE"})
#: Metal-ligand distance (A) below which a His N or Cys S is taken as coordinating.
METAL_COORDINATION_CUTOFF = 2.8
#: Peptide C..N (or O3'..P) distance (A) above which two residues are not bonded.
BREAK_DISTANCE = 2.0
#: Force field used for the MD check; ions and waters need the TIP3P file's templates.
AMBER_FILES = ("amber14-all.xml", "implicit/obc2.xml")
AMBER_FILES_WITH_IONS = ("amber14-all.xml", "amber14/tip3p.xml", "implicit/obc2.xml")
#: Distance (A) from the docking box beyond which a residue that cannot be typed is removed, not rebuilt.
UNTYPABLE_REMOVAL_DISTANCE = 10.0
#: Preparation rounds spent on removing/rebuilding untypable residues before giving up.
MAX_UNTYPABLE_ROUNDS = 8
#: Atom names kept when a residue's side chain is rebuilt, and those held fixed when the residue is relaxed.
_BACKBONE_ATOMS = frozenset({"N", "CA", "C", "O", "OXT"})
_RELAX_FIXED_ATOMS = frozenset({"N", "CA", "C"})
#: Structure file suffixes accepted as receptor input (each also gzipped, e.g. ``.pdb.gz``).
STRUCTURE_SUFFIXES = frozenset({".pdb", ".pdbqt", ".ent"})

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


class ReceptorError(VscreenError, ValueError):
    """A receptor input that cannot be prepared; the message says which file and what to fix."""


@dataclass
class ReceptorReport:
    """What receptor preparation did, for the log and for a JSON file next to the outputs.

    Counts refer to the MD-ready PDB.  ``chain_breaks`` holds one
    ``"A:GLU 340 / A:SER 345"`` entry per break (both residues became termini);
    ``removed_heterogens`` lists residues dropped from both outputs;
    ``docking_only_atoms`` lists metal ions present in the PDBQT but not the PDB;
    ``input_repairs`` lists other fixes of the input records (interrupted
    residues, blank chain identifiers, replaced modified residues);
    ``removed_untypable`` lists residues (``"A:VAL 123"``) that meeko or amber14
    could not type and that lay far from the docking box, deleted from both
    outputs; ``repaired_untypable`` those near the box that were relaxed (and if
    need be rebuilt) until they could be typed (``input_repairs`` says how, why
    and how far from the box).
    """

    source: str
    n_residues: int
    n_atoms: int
    n_chains: int
    chain_breaks: list[str]
    added_heavy_atoms: int
    added_hydrogens: int
    removed_heterogens: list[str]
    ph: float
    docking_only_atoms: list[str] = field(default_factory=list)
    input_repairs: list[str] = field(default_factory=list)
    pdbqt_heavy_atoms: int = 0
    removed_untypable: list[str] = field(default_factory=list)
    repaired_untypable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Return the report as a JSON-serialisable dict."""
        return asdict(self)


# --------------------------------------------------------------------------- sources


def _dockstring_targets_dir() -> Path:
    """Folder of dockstring's bundled ``<NAME>_target.pdbqt`` / ``<NAME>_conf.txt`` files.

    Located through the import system without importing dockstring (which pulls in RDKit).
    """
    spec = importlib.util.find_spec("dockstring")
    if spec is None or not spec.submodule_search_locations:
        raise ReceptorError("dockstring is not installed, so target names cannot be resolved; give a PDB/PDBQT path.")
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "targets"


def dockstring_target_names() -> list[str]:
    """Names of the dockstring targets installed with the package, sorted."""
    return sorted(p.name[: -len("_target.pdbqt")] for p in _dockstring_targets_dir().glob("*_target.pdbqt"))


def _dockstring_file(name: str, suffix: str) -> Path:
    """Path of dockstring's ``<NAME><suffix>`` file; ReceptorError naming valid targets if absent."""
    path = _dockstring_targets_dir() / f"{name.upper()}{suffix}"
    if not path.is_file():
        names = dockstring_target_names()
        raise ReceptorError(
            f"{name!r} is not an existing .pdb/.pdbqt file nor a dockstring target; give a receptor file path "
            f"or one of the {len(names)} dockstring target names, e.g. {', '.join(names[:6])}."
        )
    return path


def resolve_receptor_source(spec: str | Path) -> Path:
    """Turn a receptor specification into an existing structure file.

    Parameters
    ----------
    spec : str or Path
        Path to a ``.pdb`` / ``.pdbqt`` file (optionally ``.gz``), or the name of a dockstring target
        (``"ACHE"``, case-insensitive), which resolves to the PDBQT bundled
        with the installed dockstring package (no network).

    Returns
    -------
    Path
        The structure file.

    Raises
    ------
    ReceptorError
        The path does not exist, has an unsupported suffix, or the name is not a dockstring target.
    """
    path = Path(spec).expanduser()
    looks_like_path = _structure_suffix(path) in STRUCTURE_SUFFIXES or len(path.parts) > 1
    if path.is_file():
        if _structure_suffix(path) not in STRUCTURE_SUFFIXES:
            raise ReceptorError(
                f"Receptor file {path} has suffix {''.join(path.suffixes)!r}; convert it to .pdb or .pdbqt "
                "(optionally gzipped, .pdb.gz)."
            )
        return path
    if looks_like_path:
        raise ReceptorError(f"Receptor file {path} does not exist; check the path (or give a dockstring target name).")
    return _dockstring_file(str(spec), "_target.pdbqt")


def _structure_suffix(path: Path) -> str:
    """Structure format suffix of a file name, looking through a ``.gz`` (``x.pdb.gz`` -> ``.pdb``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_vina_box(path: str | Path) -> Box:
    """Read a Vina-style box file (``center_x = ...`` ... ``size_z = ...``).

    Parameters
    ----------
    path : str or Path
        Text file with ``key = value`` lines; other lines are ignored.

    Returns
    -------
    tuple
        ``((center_x, center_y, center_z), (size_x, size_y, size_z))`` in Angstrom.

    Raises
    ------
    ReceptorError
        The file is missing or lacks one of the six keys.
    """
    from .box import BoxError, read_vina_config

    try:
        box = read_vina_config(path)
    except BoxError as exc:
        raise ReceptorError(str(exc)) from None
    return box.center, box.size


def dockstring_box(name: str) -> Box:
    """Docking box of a dockstring target.

    Parameters
    ----------
    name : str
        dockstring target name, case-insensitive (``"ABL1"``).

    Returns
    -------
    tuple
        ``(center, size)`` read from ``<NAME>_conf.txt``, in Angstrom.
    """
    return read_vina_box(_dockstring_file(name, "_conf.txt"))


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
    atoms, ter_after = [], []
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
    size = defaultdict(int)
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


# --------------------------------------------------------------------------- PDBFixer stage


@lru_cache(maxsize=1)
def _openmm_modules():
    """Import OpenMM lazily (slow import, only needed when preparing).

    Returns ``(openmm.app, openmm.unit, PDBFixer, amino-acid names, nucleotide names)``.
    """
    import openmm.app as app
    import openmm.unit as unit
    from pdbfixer import PDBFixer
    from pdbfixer.pdbfixer import dnaResidues, proteinResidues, rnaResidues

    return app, unit, PDBFixer, frozenset(proteinResidues), frozenset(dnaResidues) | frozenset(rnaResidues)


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
    segments, others, breaks = [], [], []
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
    atom_map, new_xyz, breaks, notes = {}, [], [], []
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
    variants, thiolates = [None] * topology.getNumResidues(), []
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


# --------------------------------------------------------------------------- checks


def md_forcefield_files(topology) -> tuple[str, ...]:
    """OpenMM force-field files with templates for every residue of a prepared receptor.

    ``amber14-all.xml`` with OBC2 implicit solvent, plus ``amber14/tip3p.xml``
    when kept waters or ions are present (their templates live there).
    """
    _, _, _, protein, nucleic = _openmm_modules()
    extra = any(r.name not in protein | nucleic for r in topology.residues())
    return AMBER_FILES_WITH_IONS if extra else AMBER_FILES


@lru_cache(maxsize=4)
def _forcefield(files: tuple[str, ...]):
    """Cached OpenMM ForceField (loading the XML takes about a second)."""
    app = _openmm_modules()[0]
    return app.ForceField(*files)


def check_openmm_system(pdb: str | Path, name: str | None = None):
    """Build an OpenMM System from a prepared receptor PDB, or explain why it fails.

    Parameters
    ----------
    pdb : str or Path
        Path of an MD-ready PDB written by :func:`prepare_receptor`, or its text
        (a ``str`` containing newlines).
    name : str, optional
        Name for error messages (defaults to the path).

    Returns
    -------
    openmm.System
        Built with :func:`md_forcefield_files`, no cutoff.

    Raises
    ------
    ReceptorError
        A residue has no amber14 template (the message names it).
    """
    app = _openmm_modules()[0]
    is_text = isinstance(pdb, str) and "\n" in pdb
    name = name or ("receptor PDB text" if is_text else str(pdb))
    structure = app.PDBFile(io.StringIO(pdb) if is_text else str(pdb))
    files = md_forcefield_files(structure.topology)
    try:
        return _forcefield(files).createSystem(structure.topology, nonbondedMethod=app.NoCutoff)
    except ValueError as exc:
        raise ReceptorError(
            f"Receptor {name} does not build an OpenMM System with {', '.join(files)} "
            f"({str(exc).splitlines()[0][:200]}); drop that residue from keep_heterogens or parameterise it."
        ) from exc


# --------------------------------------------------------------------------- meeko stage


@lru_cache(maxsize=1)
def _meeko_template_names() -> frozenset[str]:
    """Residue names meeko's default templates cover (anything else would trigger a CCD download)."""
    from meeko import ResidueChemTemplates

    templates = ResidueChemTemplates.create_from_defaults()
    return frozenset(templates.residue_templates) | frozenset(templates.ambiguous)


def _meeko_unknown_residues(pdb_text: str) -> set[str]:
    """Residue names in PDB text without a meeko template."""
    names = {line[17:20].strip() for line in pdb_text.splitlines() if line[:6] in ("ATOM  ", "HETATM")}
    return names - _meeko_template_names()


def receptor_pdbqt(pdb_text: str, source: str) -> str:
    """Rigid-receptor PDBQT written by meeko from a fully protonated PDB.

    Parameters
    ----------
    pdb_text : str
        PDB text with all hydrogens (OpenMM/Amber names), termini and ions as
        prepared by :func:`prepare_receptor`.
    source : str
        Name used in error messages.

    Returns
    -------
    str
        PDBQT text (AD4 types, Gasteiger charges from meeko's residue templates).

    Raises
    ------
    ReceptorError
        A residue has no meeko template or cannot be matched to one (typically
        atoms of two residues overlapping in the input).
    """
    from meeko import PDBQTWriterLegacy, PolymerCreationError

    unknown = _meeko_unknown_residues(pdb_text)
    if unknown:
        raise ReceptorError(
            f"Receptor {source}: meeko has no template for {', '.join(sorted(unknown))}; "
            "remove it from keep_heterogens (nothing is downloaded)."
        )
    try:
        polymer = _meeko_polymer(pdb_text)
    except (PolymerCreationError, ValueError, RuntimeError) as exc:
        raise _meeko_error(source, exc) from exc
    rigid, _ = PDBQTWriterLegacy.write_from_polymer(polymer)
    return rigid


def _meeko_polymer(pdb_text: str, allow_bad_res: bool = False):
    """meeko Polymer with default residue templates and Gasteiger template charges (meeko's chatter muted).

    ``allow_bad_res`` makes meeko skip residues no template matches instead of
    raising; only used to list them (see :func:`_meeko_untypable`).
    """
    from meeko import MoleculePreparation, Polymer, ResidueChemTemplates

    meeko_log = logging.getLogger("meeko")
    level = meeko_log.level
    meeko_log.setLevel(logging.ERROR)
    try:
        return Polymer.from_pdb_string(
            pdb_text, ResidueChemTemplates.create_from_defaults(), MoleculePreparation(), allow_bad_res=allow_bad_res
        )
    finally:
        meeko_log.setLevel(level)


def _residue_ids(message: str) -> list[str]:
    """``A:128``-style residue ids quoted in a meeko error message."""
    return sorted(set(re.findall(r"'([A-Za-z0-9]?:-?\d+[A-Z]?)'", message)))


def _meeko_error(source: str, exc: Exception) -> ReceptorError:
    """ReceptorError for a structure meeko cannot type, pointing at the residues involved."""
    detail = " ".join(str(exc).split())
    ids = _residue_ids(detail) or re.findall(r"key ([A-Za-z0-9]?:-?\d+[A-Z]?)", detail)
    where = f"residue(s) {', '.join(ids)}" if ids else "the structure"
    return ReceptorError(
        f"meeko cannot type {where} of receptor {source} ({detail[:160]}); this usually means overlapping "
        "or distorted atoms in the input, so inspect and fix those residues."
    )


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


def _box_bounds(box: DockingBox | Box) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners (A) of a ``pipeline.box.Box`` or a ``(center, size)`` pair."""
    center, size = (box.center, box.size) if hasattr(box, "center") else box
    center, half = np.asarray(center, dtype=float), np.asarray(size, dtype=float) / 2
    return center - half, center + half


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


# --------------------------------------------------------------------------- orchestration


@contextlib.contextmanager
def _deterministic_openmm():
    """Run OpenMM's CPU platform on one thread, so minimised hydrogen positions are bit-reproducible.

    Changes the platform's default thread count for the duration (not thread-safe
    with other OpenMM work in the same process; the pipeline runs stages in
    separate processes).
    """
    import openmm

    cpu = openmm.Platform.getPlatformByName("CPU")
    previous = cpu.getPropertyDefaultValue("Threads")
    cpu.setPropertyDefaultValue("Threads", "1")
    try:
        yield
    finally:
        cpu.setPropertyDefaultValue("Threads", previous)


def _build_md_structure(atoms, source, ph, keep_waters, keep_names, metal_xyz, relax=frozenset()):
    """Run the PDBFixer/OpenMM steps; return (pdb_text, counts-and-notes dict, topology).

    ``relax`` holds input residue keys of residues to relax with amber14
    (see :func:`relax_residues`).
    """
    with _deterministic_openmm():
        return _fix_and_protonate(atoms, source, ph, keep_waters, keep_names, metal_xyz, relax)


def _fix_and_protonate(atoms, source, ph, keep_waters, keep_names, metal_xyz, relax=frozenset()):
    """PDBFixer repairs, chain splitting and protonation (see :func:`_build_md_structure`)."""
    fixer = _load_fixer(_pdb_text(atoms), source)
    replaced = _replace_modified_residues(fixer, keep_names)
    removed = _remove_heterogens(fixer, keep_waters, keep_names)
    if fixer.topology.getNumResidues() == 0:
        raise ReceptorError(f"Receptor {source} has no protein or nucleic-acid residues; supply a macromolecule.")
    breaks, lone, n_oxt = split_chains_at_breaks(fixer)
    added_heavy = add_missing_heavy_atoms(fixer) + n_oxt
    added_h = protonate(fixer, ph, metal_xyz)
    if relax:
        relax_residues(fixer, relax)
    info = dict(repairs=replaced + lone, removed=removed, breaks=breaks, added_heavy=added_heavy, added_h=added_h)
    return _md_pdb_text(fixer, source, ph), info, fixer.topology


def prepare_receptor(
    source: str | Path,
    out_pdb: str | Path,
    out_pdbqt: str | Path,
    ph: float = 7.4,
    keep_waters: bool = False,
    keep_heterogens: Sequence[str] = (),
    keep_metals: bool = True,
    check_openmm: bool = True,
    box: DockingBox | Box | None = None,
    remove_untypable_beyond: float = UNTYPABLE_REMOVAL_DISTANCE,
) -> ReceptorReport:
    """Prepare one receptor for docking (PDBQT) and MD (PDB) from the same structure.

    Parameters
    ----------
    source : str or Path
        ``.pdb`` / ``.pdbqt`` file or dockstring target name (see :func:`resolve_receptor_source`).
    out_pdb : str or Path
        MD-ready PDB to write (all hydrogens at ``ph``; amber14 residue and atom names).
    out_pdbqt : str or Path
        Rigid Vina receptor PDBQT to write (meeko, from the same structure plus docking metals).
    ph : float
        pH for protonation states (OpenMM's standard residue pKa rules).
    keep_waters : bool
        Keep crystallographic waters in both outputs.
    keep_heterogens : sequence of str
        Residue names kept in both outputs (e.g. ``["ZN"]``); each needs amber14
        and meeko templates, otherwise ReceptorError.
    keep_metals : bool
        Keep Zn/Mg/Ca/Mn/Fe ions in the PDBQT only (see the module docstring);
        False removes them from both outputs.
    check_openmm : bool
        Build an OpenMM System from the PDB before writing anything and raise
        ReceptorError if a template is missing.
    box : pipeline.box.Box or (center, size), optional
        Docking box (A).  With it, a residue meeko or amber14 cannot type is
        removed when it lies farther than ``remove_untypable_beyond`` from the
        box and relaxed, then rebuilt by PDBFixer, when nearer (see the module
        docstring); without it such a residue raises ReceptorError.
    remove_untypable_beyond : float
        Distance (A) from the box beyond which an untypable residue is removed.

    Returns
    -------
    ReceptorReport
        What was repaired, removed and added, and how long it took.  Both files
        are written atomically and only when every step succeeded.

    Raises
    ------
    ReceptorError
        Unknown/missing/unparseable input, or output that amber14 or meeko cannot
        type (a residue within ``remove_untypable_beyond`` of the box that stays
        untypable after relaxing and rebuilding, or any such residue when no box is given).
    """
    start = time.perf_counter()
    path = resolve_receptor_source(source)
    keep_names = {name.strip().upper() for name in keep_heterogens}
    atoms, notes = read_receptor_records(path)
    atoms, metals = _split_docking_metals(atoms, keep_names)
    docking_metals = metals if keep_metals else []
    bounds = _box_bounds(box) if box is not None else None
    untypable = _UntypableLog()
    for _ in range(MAX_UNTYPABLE_ROUNDS):
        metal_xyz = _metal_ion_xyz(atoms, docking_metals, keep_names)
        pdb_text, info, topology = _build_md_structure(
            atoms, path, ph, keep_waters, keep_names, metal_xyz, frozenset(untypable.attempts)
        )
        pdbqt_text, bad, error = _type_structure(pdb_text, docking_metals, str(path), check_openmm)
        if pdbqt_text is not None:
            break
        bad = _locate_untypable(bad, _with_metals(pdb_text, docking_metals), bounds)
        if not bad:
            raise error
        if bounds is None:
            raise _untypable_without_box(error, bad) from error
        # Repairs change the input records, so the next round rebuilds everything: a removed residue's
        # neighbours become proper termini, a stripped side chain is rebuilt by PDBFixer, and every
        # residue marked for repair is relaxed after protonation.
        atoms, docking_metals = _handle_untypable(
            bad, atoms, docking_metals, remove_untypable_beyond, untypable, str(path)
        )
    else:
        raise ReceptorError(
            f"Receptor {path}: still untypable residues after {MAX_UNTYPABLE_ROUNDS} rounds of removing and "
            f"repairing ({', '.join(untypable.removed + untypable.repaired)}); inspect the input structure."
        )
    _check_same_heavy_atoms(pdb_text, pdbqt_text, len(docking_metals), str(path))
    write_text_atomic(out_pdb, pdb_text)
    write_text_atomic(out_pdbqt, pdbqt_text)
    report = ReceptorReport(
        source=str(path),
        n_residues=topology.getNumResidues(),
        n_atoms=topology.getNumAtoms(),
        n_chains=topology.getNumChains(),
        chain_breaks=info["breaks"],
        added_heavy_atoms=info["added_heavy"],
        added_hydrogens=info["added_h"],
        ph=ph,
        removed_heterogens=info["removed"] + [m.residue_label for m in metals if not keep_metals],
        docking_only_atoms=[m.residue_label for m in docking_metals],
        input_repairs=notes + info["repairs"] + untypable.notes,
        pdbqt_heavy_atoms=_heavy_atom_count(pdbqt_text, True),
        removed_untypable=untypable.removed,
        repaired_untypable=untypable.repaired,
        seconds=round(time.perf_counter() - start, 2),
    )
    log.info("receptor %s prepared in %.1f s: %s", path.name, report.seconds, json.dumps(report.to_dict()))
    return report


def _metal_ion_xyz(atoms: list[_Atom], docking_metals: list[_Atom], keep_names: set[str]) -> np.ndarray:
    """Coordinates (A) of every metal ion present in either output, for protonating its ligands."""
    kept = [a for a in atoms if a.element.upper() in DOCKING_METALS and a.line[17:20].strip().upper() in keep_names]
    return np.array([a.xyz for a in kept + docking_metals]).reshape(-1, 3)


def _with_metals(pdb_text: str, metals: list[_Atom]) -> str:
    """Append docking-only metal HETATM records before the END record."""
    body = [line for line in pdb_text.splitlines() if line.strip() != "END"]
    return "\n".join(body + _metal_hetatm_lines(metals) + ["END", ""])


def _check_same_heavy_atoms(pdb_text: str, pdbqt_text: str, n_metals: int, source: str) -> None:
    """Raise if meeko dropped or added heavy atoms relative to the MD PDB."""
    n_pdb, n_pdbqt = _heavy_atom_count(pdb_text, False), _heavy_atom_count(pdbqt_text, True)
    if n_pdbqt != n_pdb + n_metals:
        raise ReceptorError(
            f"Receptor {source}: the PDBQT has {n_pdbqt} heavy atoms but the MD PDB {n_pdb} (+{n_metals} metals); "
            "the two outputs must match, please report this structure."
        )


def write_receptor_report(report: ReceptorReport, path: str | Path) -> None:
    """Write a report as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")
