"""Checks of a run's inputs before any job runs.

The workflow calls :func:`check_inputs` while it parses the Snakefile (and
``vscreen check-config`` calls it too), so a missing receptor, a box that misses
the protein or an empty library stops the run at once with one sentence saying
what to fix, instead of failing minutes later inside a job. :func:`check_model`
does the same for the GNN model a screen is to be scored with; the workflow calls
it only when scoring is part of the requested targets.

Every check raises one of the user errors of :mod:`pipeline.errors`
(:class:`~pipeline.library.LibraryError`, :class:`~pipeline.receptor.ReceptorError`,
:class:`~pipeline.box.BoxError`, :class:`~pipeline.scoring.cards.ModelError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .box import Box, BoxError, box_from_config, check_box_on_receptor, read_pdb_coordinates
from .library import LibraryError, iter_library


def check_library(library: dict[str, Any]) -> None:
    """Stop unless the library file exists, is readable and holds at least one compound.

    Parameters
    ----------
    library
        The ``library`` section of a validated config (``path``, ``format``, ``id_column``,
        ``smiles_column``, ``id_property``).

    Raises
    ------
    LibraryError
        The file is missing, its format is unknown, a named column is absent, or it has no
        rows. Only the first record is read, so this is cheap for any library size.
    """
    records = iter_library(
        library["path"], library["format"], library["id_column"], library["smiles_column"], library["id_property"]
    )
    if next(iter(records), None) is None:
        raise LibraryError(
            f"library '{library['path']}' is empty (no compound rows); "
            "point library.path at a file with at least one compound"
        )


def check_receptor(receptor: dict[str, Any]) -> Path:
    """The receptor structure file the run will prepare; stop if it does not exist.

    Parameters
    ----------
    receptor
        The ``receptor`` section of a validated config (``path`` or ``dockstring``).

    Returns
    -------
    Path
        The ``.pdb``/``.pdbqt`` file (for a dockstring target, the file shipped with dockstring).

    Raises
    ------
    ReceptorError
        The file is missing or has an unsupported suffix, or the dockstring name is unknown.
    """
    from .receptor import ReceptorError, resolve_receptor_source

    if receptor["path"]:
        path = Path(receptor["path"])
        if not path.is_file():
            raise ReceptorError(
                f"receptor file '{path}' does not exist; fix receptor.path in your config (a .pdb or .pdbqt file)"
            )
    return resolve_receptor_source(receptor["path"] or receptor["dockstring"])


def check_box(box: dict[str, Any], receptor_file: str | Path, dockstring: str | None = None) -> Box:
    """The docking box of a config; stop if it cannot be built or lies outside the protein.

    Parameters
    ----------
    box
        The ``box`` section of a validated config.
    receptor_file
        The receptor structure (raw input: the box check needs only heavy-atom positions).
    dockstring
        The dockstring target name, for its own box when no box keys are given.

    Returns
    -------
    Box

    Raises
    ------
    BoxError
        A box file is missing or malformed, or the box holds (almost) no receptor atoms.
    """
    built = box_from_config(box, dockstring)
    xyz = read_pdb_coordinates(receptor_file)
    if not len(xyz):
        raise BoxError(
            f"receptor file '{receptor_file}' has no ATOM/HETATM records, so the box cannot be checked; "
            "give a PDB or PDBQT file"
        )
    fix = (
        "box.center"
        if box.get("center")
        else "box.reference_ligand (is it posed in this receptor's frame?)"
        if box.get("reference_ligand")
        else "the center in box.vina_config"
        if box.get("vina_config")
        else "the box: give box.center and box.size"
    )
    check_box_on_receptor(built, xyz, fix=fix)
    return built


def check_inputs(cfg: dict[str, Any]) -> None:
    """Run every input check of a validated config: library, receptor, box (in this order)."""
    check_library(cfg["library"])
    receptor_file = check_receptor(cfg["receptor"])
    check_box(cfg["box"], receptor_file, cfg["receptor"]["dockstring"])


def check_model(score: dict[str, Any]) -> Path:
    """The folder of the GNN model named by the ``score`` section; stop if it is missing or unreadable.

    Parameters
    ----------
    score
        The ``score`` section of a validated config (``model``, ``models_dir``).

    Returns
    -------
    Path
        The model folder (it holds a readable ``card.json``).

    Raises
    ------
    ModelError
        No such model, a folder without a card, or a card that is not a vscreen model card;
        the message lists the models that are available.
    """
    from .scoring.ensemble import ModelError, read_card, resolve_model_dir

    try:
        folder = resolve_model_dir(score["model"], score["models_dir"])
        read_card(folder)
    except ModelError as exc:
        raise ModelError(
            f"{exc}; set score.model to one of them (or to a model folder), "
            "or score.enabled: false to rank by docking score"
        ) from None
    return folder
