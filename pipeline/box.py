"""The docking box: where in the receptor Vina searches.

A box comes from the config in one of four ways: an explicit center and size (Å),
a reference ligand (its heavy-atom extent plus padding on every side), a Vina
config file (``center_x = ...`` lines, as dockstring ships), or - for a dockstring
target with no box keys - the target's own box.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import schema_default
from .dockstring_targets import target_file
from .errors import VscreenError
from .io import read_structure_text


class BoxError(VscreenError, ValueError):
    """The box cannot be built or does not sit on the receptor."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned docking box; ``center`` and ``size`` in Å."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]

    def contains(self, xyz: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (N×3, Å) inside the box."""
        lo = np.asarray(self.center) - np.asarray(self.size) / 2
        hi = np.asarray(self.center) + np.asarray(self.size) / 2
        return np.all((xyz >= lo) & (xyz <= hi), axis=1)

    def to_json(self, path: str | Path) -> None:
        """Write the box as JSON (``{"center": [...], "size": [...]}``) atomically."""
        from .io import write_text_atomic

        write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> Box:
        """Read a box written by :meth:`to_json`."""
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["center"]), tuple(data["size"]))


def read_vina_config(path: str | Path) -> Box:
    """Parse a Vina config file with ``center_x = ..`` and ``size_x = ..`` lines."""
    path = Path(path)
    if not path.is_file():
        raise BoxError(f"box file '{path}' does not exist; check box.vina_config")
    values = dict(
        re.findall(r"^\s*(center_[xyz]|size_[xyz])\s*=\s*([-+0-9.eE]+)", path.read_text(), flags=re.MULTILINE)
    )
    missing = [k for k in ("center_x", "center_y", "center_z", "size_x", "size_y", "size_z") if k not in values]
    if missing:
        raise BoxError(f"box file '{path}' lacks {', '.join(missing)}")
    return Box(_xyz(values[f"center_{a}"] for a in "xyz"), _xyz(values[f"size_{a}"] for a in "xyz"))


def dockstring_box(name: str) -> Box:
    """Docking box of a dockstring target (``"ABL1"``, case-insensitive), from its ``<NAME>_conf.txt``.

    Raises
    ------
    pipeline.errors.ReceptorError
        ``name`` is not an installed dockstring target (the message lists some that are).
    """
    return read_vina_config(target_file(name, "_conf.txt"))


def read_ligand_coordinates(path: str | Path) -> np.ndarray:
    """Heavy-atom coordinates (Å) of a reference ligand file (.sdf, .mol, .mol2 or .pdb)."""
    from rdkit import Chem

    path = Path(path)
    if not path.is_file():
        raise BoxError(f"reference ligand '{path}' does not exist; check box.reference_ligand")
    readers = {
        ".sdf": lambda p: next(iter(Chem.SDMolSupplier(str(p), removeHs=False, sanitize=False)), None),
        ".mol": lambda p: Chem.MolFromMolFile(str(p), removeHs=False, sanitize=False),
        ".mol2": lambda p: Chem.MolFromMol2File(str(p), removeHs=False, sanitize=False),
        ".pdb": lambda p: Chem.MolFromPDBFile(str(p), removeHs=False, sanitize=False),
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise BoxError(f"reference ligand '{path}' must be .sdf, .mol, .mol2 or .pdb")
    mol = reader(path)
    if mol is None or mol.GetNumConformers() == 0:
        raise BoxError(f"cannot read coordinates from reference ligand '{path}'")
    xyz = mol.GetConformer().GetPositions()
    heavy = np.array([a.GetAtomicNum() > 1 for a in mol.GetAtoms()])
    return xyz[heavy]


def box_around_ligand(path: str | Path, padding: float = schema_default("box", "padding")) -> Box:
    """Box enclosing a reference ligand's heavy atoms with ``padding`` Å on every side."""
    return box_around_coordinates(read_ligand_coordinates(path), padding)


def box_around_coordinates(xyz: np.ndarray, padding: float = schema_default("box", "padding")) -> Box:
    """Box enclosing points (N×3, Å; a ligand's heavy atoms) with ``padding`` Å on every side."""
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    return Box(_xyz(round(v, 3) for v in (lo + hi) / 2), _xyz(round(v, 3) for v in (hi - lo) + 2 * padding))


def _xyz(values: Iterable[Any]) -> tuple[float, float, float]:
    """Three numbers as a float triple (a box's center or size)."""
    x, y, z = (float(v) for v in values)
    return x, y, z


def box_from_config(box_cfg: dict, dockstring_target: str | None = None) -> Box:
    """Build the box from the ``box`` config section (see module docstring for the four ways)."""
    if box_cfg.get("center"):
        return Box(_xyz(box_cfg["center"]), _xyz(box_cfg["size"]))
    if box_cfg.get("reference_ligand"):
        return box_around_ligand(box_cfg["reference_ligand"], box_cfg.get("padding", schema_default("box", "padding")))
    if box_cfg.get("vina_config"):
        return read_vina_config(box_cfg["vina_config"])
    if dockstring_target:
        return dockstring_box(dockstring_target)
    raise BoxError("no docking box given: set box.center + box.size, box.reference_ligand or box.vina_config")


def check_box_on_receptor(box: Box, receptor_xyz: np.ndarray, min_atoms: int = 20, fix: str = "box.center") -> int:
    """Count receptor atoms inside the box; raise :class:`BoxError` if there are too few.

    A box with (almost) no protein atoms is nearly always a wrong center (another
    frame of reference, or swapped coordinates); docking there would rank noise.
    ``fix`` names what the user should correct (the config key the box came from).
    """
    inside = int(box.contains(receptor_xyz).sum())
    if inside < min_atoms:
        lo, hi = receptor_xyz.min(axis=0), receptor_xyz.max(axis=0)
        raise BoxError(
            f"the docking box centred at {tuple(round(c, 2) for c in box.center)} holds {inside} receptor atoms: "
            f"it lies outside the protein (which spans {np.round(lo, 1).tolist()} to {np.round(hi, 1).tolist()} Å); "
            f"fix {fix}"
        )
    return inside


def read_pdb_coordinates(path: str | Path) -> np.ndarray:
    """Coordinates (N×3, Å) of all ATOM/HETATM records of a PDB or PDBQT file (optionally ``.gz``)."""
    xyz = [
        (float(line[30:38]), float(line[38:46]), float(line[46:54]))
        for line in read_structure_text(path).splitlines()
        if line.startswith(("ATOM", "HETATM"))
    ]
    return np.asarray(xyz, dtype=float).reshape(-1, 3)
