"""The meeko stage: the rigid Vina receptor PDBQT, and meeko's errors made readable."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from ..errors import ReceptorError

log = logging.getLogger("pipeline.receptor")

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
