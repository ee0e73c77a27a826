"""2D depictions of compounds as inline SVG (RDKit's drawing code, no files, no network)."""

from __future__ import annotations

import re

from rdkit import Chem, RDLogger
from rdkit.Chem import rdDepictor
from rdkit.Chem.Draw import rdMolDraw2D

RDLogger.DisableLog("rdApp.*")


def depict_svg(smiles: str, width: int = 190, height: int = 140) -> str:
    """An SVG drawing of a molecule, ready to be placed inside HTML.

    Parameters
    ----------
    smiles
        The molecule; hydrogens are drawn only where RDKit needs them (charged atoms, stereo).
    width, height
        Size in pixels.

    Returns
    -------
    str
        An ``<svg>`` element (no XML declaration), or an empty string when the SMILES
        cannot be parsed.
    """
    mol = Chem.MolFromSmiles(str(smiles)) if smiles else None
    if mol is None:
        return ""
    rdDepictor.SetPreferCoordGen(True)
    rdDepictor.Compute2DCoords(mol)
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    options = drawer.drawOptions()
    options.clearBackground = False
    options.fixedBondLength = 20
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    return re.sub(r"<!-- .*? -->\s*", "", svg)
