"""The amber14 force field files, and OpenMM/PDBFixer imported lazily (shared by repair and checks)."""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger("pipeline.receptor")

#: Force field used for the MD check; ions and waters need the TIP3P file's templates.
AMBER_FILES = ("amber14-all.xml", "implicit/obc2.xml")


AMBER_FILES_WITH_IONS = ("amber14-all.xml", "amber14/tip3p.xml", "implicit/obc2.xml")


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
