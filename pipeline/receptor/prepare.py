"""Orchestration: :func:`prepare_receptor` runs sources, records, repair, checks, PDBQT in order."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import schema_default
from ..errors import ReceptorError
from ..io import write_text_atomic
from .records import (
    DOCKING_METALS,
    _Atom,
    _pdb_text,
    _split_docking_metals,
    _with_metals,
    read_receptor_records,
)
from .repair import (
    _load_fixer,
    _md_pdb_text,
    _remove_heterogens,
    _replace_modified_residues,
    add_missing_heavy_atoms,
    protonate,
    relax_residues,
    split_chains_at_breaks,
)
from .report import ReceptorReport
from .sources import resolve_receptor_source
from .untypable import (
    MAX_UNTYPABLE_ROUNDS,
    UNTYPABLE_REMOVAL_DISTANCE,
    BoxLike,
    _box_bounds,
    _handle_untypable,
    _heavy_atom_count,
    _locate_untypable,
    _type_structure,
    _untypable_without_box,
    _UntypableLog,
)

log = logging.getLogger("pipeline.receptor")

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
    ph: float = schema_default("receptor", "ph"),
    keep_waters: bool = False,
    keep_heterogens: Sequence[str] = (),
    keep_metals: bool = True,
    check_openmm: bool = True,
    box: BoxLike | None = None,
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


def _check_same_heavy_atoms(pdb_text: str, pdbqt_text: str, n_metals: int, source: str) -> None:
    """Raise if meeko dropped or added heavy atoms relative to the MD PDB."""
    n_pdb, n_pdbqt = _heavy_atom_count(pdb_text, False), _heavy_atom_count(pdbqt_text, True)
    if n_pdbqt != n_pdb + n_metals:
        raise ReceptorError(
            f"Receptor {source}: the PDBQT has {n_pdbqt} heavy atoms but the MD PDB {n_pdb} (+{n_metals} metals); "
            "the two outputs must match, please report this structure."
        )
