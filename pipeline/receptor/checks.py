"""Checks that a prepared receptor builds an OpenMM System."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from ..errors import ReceptorError
from .amber import _forcefield, _openmm_modules, md_forcefield_files

log = logging.getLogger("pipeline.receptor")

# --------------------------------------------------------------------------- checks


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
    structure = app.PDBFile(io.StringIO(str(pdb)) if is_text else str(pdb))
    files = md_forcefield_files(structure.topology)
    try:
        return _forcefield(files).createSystem(structure.topology, nonbondedMethod=app.NoCutoff)
    except ValueError as exc:
        raise ReceptorError(
            f"Receptor {name} does not build an OpenMM System with {', '.join(files)} "
            f"({str(exc).splitlines()[0][:200]}); drop that residue from keep_heterogens or parameterise it."
        ) from exc
