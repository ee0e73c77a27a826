"""The receptor and box files of the dockstring targets installed with the ``dockstring`` package.

dockstring ships, per target, ``<NAME>_target.pdbqt`` (the receptor) and ``<NAME>_conf.txt``
(its Vina box). They are found through the import system, without importing dockstring
(which pulls in RDKit) and without any download. Both :mod:`pipeline.box` and
:mod:`pipeline.receptor` read them, so this module imports neither.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ReceptorError


def targets_dir() -> Path:
    """Folder of dockstring's bundled ``<NAME>_target.pdbqt`` / ``<NAME>_conf.txt`` files.

    Located through the import system without importing dockstring (which pulls in RDKit).
    """
    spec = importlib.util.find_spec("dockstring")
    if spec is None or not spec.submodule_search_locations:
        raise ReceptorError("dockstring is not installed, so target names cannot be resolved; give a PDB/PDBQT path.")
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "targets"


def target_names() -> list[str]:
    """Names of the dockstring targets installed with the package, sorted."""
    return sorted(p.name[: -len("_target.pdbqt")] for p in targets_dir().glob("*_target.pdbqt"))


def target_file(name: str, suffix: str) -> Path:
    """Path of dockstring's ``<NAME><suffix>`` file; ReceptorError naming valid targets if absent."""
    path = targets_dir() / f"{name.upper()}{suffix}"
    if not path.is_file():
        names = target_names()
        raise ReceptorError(
            f"{name!r} is not an existing .pdb/.pdbqt file nor a dockstring target; give a receptor file path "
            f"or one of the {len(names)} dockstring target names, e.g. {', '.join(names[:6])}."
        )
    return path
