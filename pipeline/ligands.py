"""Ligand preparation: standardize, protonate at a pH, embed in 3D, write PDBQT.

For each compound of a chunk: parse the SMILES, keep the largest organic fragment
(salts and solvents dropped), neutralize, protonate at the configured pH
(``ligands.protonation``: molscrub's acid/base rules plus vscreen's own, or dimorphite-dl;
see :func:`protonate`), add hydrogens, embed one conformer with ETKDGv3 seeded from the
run seed and the compound id (so a compound gets the same start whatever chunk it
lands in), relax it with MMFF94, and type it for Vina with meeko. Compounds that
fail any step become failure rows (stage ``prepare``) with the reason.

Each compound is prepared in an isolated worker process (:mod:`pipeline.isolation`):
a native crash of RDKit or meeko on one molecule (``crashed: ...``) or a compound that
runs past ``ligands.time_limit`` (``time limit (N s) exceeded``) costs only that
compound. ETKDG's own ``timeout`` stops a hopeless embedding attempt earlier, with a
readable reason, within the same budget.

Outputs per chunk: an SDF of the prepared 3D molecules (hydrogens included) and a
Parquet table with columns ``id, smiles, prepared_smiles, heavy_atoms,
formal_charge, rotatable_bonds, pdbqt, pdbqt_conformers`` (the last: PDBQT of the other
starting conformers docking uses, ``ligands.ring_conformers``; see
:mod:`pipeline.ring_conformers`).

Input poses (``docking.mode: score_only``, ``LigandSettings.keep_poses``)
-----------------------------------------------------------------------
The chunk carries each record's mol block (:mod:`pipeline.library`), and the pose is
what gets scored, so nothing may move it: :func:`prepare_pose` reads the molecule with
its coordinates and its protonation as given (no standardization, protonation or
embedding; only a salt or solvent fragment is dropped), adds the missing hydrogens at
computed positions (``Chem.AddHs(addCoords=True)``) and types that conformer with meeko.
The prepared SDF holds the input pose; the table has the same columns as above.
``ligands.ph``, ``ligands.protonation`` and ``ligands.embed_attempts`` are not used.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdMolDescriptors
from rdkit.Chem.MolStandardize import rdMolStandardize

from . import faults
from .config import schema_field
from .errors import VscreenError
from .io import atomic_sdf, write_failures, write_parquet_atomic
from .isolation import check_time_limit, pack_mol, run_isolated, unexpected_error, unpack_mol
from .library import NO_3D_POSE, has_3d_pose
from .ring_conformers import distinct_ring_conformers

if TYPE_CHECKING:
    from molscrub import AcidBaseConjugator

log = logging.getLogger(__name__)
RDLogger.DisableLog("rdApp.*")

#: Elements AutoDock Vina's scoring function can type in a ligand.
VINA_ELEMENTS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"})
LIGAND_COLUMNS = [
    "id",
    "smiles",
    "prepared_smiles",
    "heavy_atoms",
    "formal_charge",
    "rotatable_bonds",
    "pdbqt",
    "pdbqt_conformers",
]
STAGE = "prepare"
#: Protonation tools of ``ligands.protonation`` (the first is the default).
PROTONATION_TOOLS = ("molscrub", "dimorphite")
#: vscreen's acid/base rules, read by molscrub after its own (``pipeline/data``).
VSCREEN_PKA_RULES = "pka_reactions_vscreen.txt"


class PreparationError(ValueError):
    """One compound cannot be prepared; the message is the reason written to failures.csv."""


class LigandInputError(VscreenError, ValueError):
    """A chunk as a whole does not fit the ligand settings (e.g. no poses for ``keep_poses``)."""


@dataclass(frozen=True)
class LigandSettings:
    """Settings of ligand preparation (config section ``ligands`` plus the run seed).

    ``time_limit`` is the wall-clock limit per compound in seconds (``None`` = none);
    see :func:`embed_timeout` for the share ETKDG gets of it. ``protonation`` is the
    tool of :func:`protonate` (one of :data:`PROTONATION_TOOLS`). ``keep_poses``
    (``docking.mode: score_only``) prepares each compound from its input pose with
    :func:`prepare_pose` instead of from its SMILES (the chunk needs a ``molblock`` column).
    """

    ph: float = schema_field("ligands", "ph")
    seed: int = schema_field("seed")
    max_heavy_atoms: int = schema_field("ligands", "max_heavy_atoms")
    min_heavy_atoms: int = schema_field("ligands", "min_heavy_atoms")
    embed_attempts: int = schema_field("ligands", "embed_attempts")
    time_limit: float | None = schema_field("ligands", "time_limit")
    protonation: str = schema_field("ligands", "protonation")
    ring_conformers: int = schema_field("ligands", "ring_conformers")
    keep_poses: bool = False

    def __post_init__(self) -> None:
        check_time_limit(self.time_limit, "ligands.time_limit")
        if self.protonation not in PROTONATION_TOOLS:
            raise ValueError(f"ligands.protonation must be one of {list(PROTONATION_TOOLS)}, got {self.protonation!r}")


def parse_smiles(smiles: str) -> Chem.Mol:
    """Parse a SMILES string; raise :class:`PreparationError` naming the problem."""
    if not smiles or not smiles.strip():
        raise PreparationError("empty SMILES")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise PreparationError(f"invalid SMILES '{smiles}' (RDKit cannot parse it)")
    return mol


def check_no_bonded_metals(mol: Chem.Mol) -> None:
    """Reject metal complexes and organometallics before salts are stripped.

    A free counter-ion (``[Na+]``) is a salt and is dropped by :func:`standardize`;
    a metal bonded to the molecule is part of the chemistry, and docking what is left
    after cutting it off would score a different compound.
    """
    bonded = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetSymbol() not in VINA_ELEMENTS and a.GetDegree() > 0})
    if bonded:
        raise PreparationError(
            f"contains {', '.join(bonded)} bonded to the molecule: metal complexes are not supported by Vina's scoring function"
        )


def standardize(mol: Chem.Mol) -> Chem.Mol:
    """Largest organic fragment, normalized functional groups, neutralized charges."""
    mol = rdMolStandardize.Cleanup(mol)
    mol = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
    mol = rdMolStandardize.Uncharger().uncharge(mol)
    Chem.SanitizeMol(mol)
    return mol


def check_composition(mol: Chem.Mol, settings: LigandSettings) -> None:
    """Reject elements Vina cannot score and molecules outside the heavy-atom range."""
    elements = sorted({atom.GetSymbol() for atom in mol.GetAtoms()} - VINA_ELEMENTS)
    if elements:
        raise PreparationError(
            f"contains {', '.join(elements)}: metal and other unusual elements are not supported by Vina's scoring function"
        )
    heavy = mol.GetNumHeavyAtoms()
    if heavy > settings.max_heavy_atoms:
        raise PreparationError(
            f"too large: {heavy} heavy atoms (limit ligands.max_heavy_atoms = {settings.max_heavy_atoms})"
        )
    if heavy < settings.min_heavy_atoms:
        raise PreparationError(
            f"too small: {heavy} heavy atoms (limit ligands.min_heavy_atoms = {settings.min_heavy_atoms})"
        )


def protonate(mol: Chem.Mol, ph: float, tool: str = PROTONATION_TOOLS[0]) -> Chem.Mol:
    """The dominant protonation state of a standardized molecule at ``ph``, one per compound.

    Parameters
    ----------
    mol
        Output of :func:`standardize` (neutral where it can be, no explicit hydrogens).
    ph
        The pH.
    tool
        ``"molscrub"`` (default): :func:`protonate_molscrub`, molscrub's acid/base rules and
        vscreen's; ``"dimorphite"``: :func:`protonate_dimorphite`, dimorphite-dl as vscreen
        used it before ``ligands.protonation`` existed.

    Returns
    -------
    Chem.Mol
        A new molecule; the input one when the tool has nothing to change.
    """
    if tool == "molscrub":
        return protonate_molscrub(mol, ph)
    if tool == "dimorphite":
        return protonate_dimorphite(mol, ph)
    raise ValueError(f"unknown protonation tool {tool!r}; choose one of {list(PROTONATION_TOOLS)}")


def protonate_dimorphite(mol: Chem.Mol, ph: float) -> Chem.Mol:
    """Most likely protonation state at ``ph`` (dimorphite-dl, one variant, the mean pKa of each site).

    Parameters
    ----------
    mol
        A standardized molecule.
    ph
        The pH.

    Returns
    -------
    Chem.Mol
        dimorphite-dl's first variant; ``mol`` itself when it returns none.
    """
    from dimorphite_dl import protonate_smiles

    smiles = Chem.MolToSmiles(mol)
    variants = protonate_smiles(smiles, ph_min=ph, ph_max=ph, precision=0.0, max_variants=1)
    if not variants:
        return mol
    protonated = Chem.MolFromSmiles(variants[0])
    return protonated if protonated is not None else mol


@lru_cache(maxsize=1)
def molscrub_conjugator() -> AcidBaseConjugator:
    """molscrub's acid/base engine with its own rules followed by vscreen's (built once per process).

    The rules are SMARTS reactions with one pKa each (``molscrub/data/pka_reactions.txt``, then
    ``pipeline/data/pka_reactions_vscreen.txt``). molscrub's machine-learned pKa model is not
    used: it would be downloaded on first use, and nothing may download at run time.

    Returns
    -------
    molscrub.AcidBaseConjugator
        Called as ``conjugator(mol, ph_low, ph_high)``, returns the states of ``mol``.
    """
    from molscrub import AcidBaseConjugator

    rules = list(AcidBaseConjugator.from_default_data_files(model=None).pka_reactions)
    with resources.as_file(resources.files("pipeline").joinpath("data", VSCREEN_PKA_RULES)) as path:
        rules += AcidBaseConjugator.parse_reaction_file(str(path))
    return AcidBaseConjugator(rules, pka_model=None)


def protonation_states(mol: Chem.Mol, ph_low: float, ph_high: float) -> list[Chem.Mol]:
    """molscrub's protonation states of ``mol`` for pH ``ph_low`` to ``ph_high``, in a fixed order.

    A site whose rule pKa lies in the range comes in both forms. The order does not depend
    on how the input SMILES was written: fewest formal charges first (smallest absolute net
    charge, then fewest charged atoms), then canonical SMILES. Tautomers are not enumerated
    (molscrub's tautomer rules turn ascorbic acid and warfarin into minor keto forms and give
    two tautomers of histamine or theophylline; the input tautomer is kept, as with dimorphite-dl).

    Parameters
    ----------
    mol
        A standardized molecule.
    ph_low, ph_high
        The pH range; equal for the states at one pH.

    Returns
    -------
    list of Chem.Mol
        At least one state; sanitized, without explicit hydrogens, canonical atom order.

    Raises
    ------
    PreparationError
        When molscrub's reactions fail on the molecule.
    """
    canonical = Chem.MolFromSmiles(Chem.MolToSmiles(mol))  # canonical atom order: rules match sites in order
    if canonical is None:
        canonical = Chem.Mol(mol)
    try:
        states = molscrub_conjugator()(canonical, ph_low, ph_high)
    except Exception as exc:  # RDKit reaction errors on a molecule the rules cannot handle
        raise PreparationError(f"molscrub cannot protonate this molecule: {type(exc).__name__}: {exc}") from exc
    unique = {}
    for state in states:
        smiles = Chem.MolToSmiles(state)
        clean = Chem.MolFromSmiles(smiles)
        if clean is not None:
            unique.setdefault(Chem.MolToSmiles(clean), clean)
    if not unique:
        return [canonical]

    def order(item: tuple[str, Chem.Mol]) -> tuple[int, int, str]:
        smiles, state = item
        charged = sum(1 for atom in state.GetAtoms() if atom.GetFormalCharge())
        return abs(Chem.GetFormalCharge(state)), charged, smiles

    return [state for _, state in sorted(unique.items(), key=order)]


def protonate_molscrub(mol: Chem.Mol, ph: float) -> Chem.Mol:
    """Dominant protonation state at ``ph`` by molscrub's and vscreen's acid/base rules.

    Each rule is a SMARTS reaction with a pKa: a site whose rule pKa is below ``ph`` is made
    its base form, one above it the acid form. A site whose rule pKa equals ``ph`` has two
    states; the first of :func:`protonation_states` (the less charged one) is kept.

    Parameters
    ----------
    mol
        A standardized molecule.
    ph
        The pH.

    Returns
    -------
    Chem.Mol
        The one state.
    """
    return protonation_states(mol, ph, ph)[0]


def compound_seed(compound_id: str, seed: int) -> int:
    """A per-compound seed derived from the run seed and the id (stable across chunkings)."""
    return (zlib.crc32(compound_id.encode()) ^ seed) & 0x7FFFFFFF


def embed_timeout(settings: LigandSettings) -> int:
    """Seconds ETKDG may spend on one embedding attempt (0 = no limit).

    The compound's ``time_limit`` split evenly over the attempts plus one share kept for
    MMFF and meeko, so that a molecule ETKDG cannot embed fails with a readable reason
    before the worker would be killed at the limit.
    """
    if settings.time_limit is None:
        return 0
    return max(1, math.floor(settings.time_limit / (settings.embed_attempts + 1)))


def embed(mol: Chem.Mol, seed: int, attempts: int = 3, timeout: int = 0) -> Chem.Mol:
    """Add hydrogens and embed one 3D conformer (ETKDGv3), then relax it with MMFF94.

    Retries with random starting coordinates; raises :class:`PreparationError` if all fail.
    ``timeout`` is ETKDG's limit per attempt in seconds (0 = none).
    """
    mol = Chem.AddHs(mol)
    timed_out = False
    for attempt in range(attempts):
        params = AllChem.ETKDGv3()
        params.randomSeed = seed + attempt
        params.useRandomCoords = attempt > 0
        params.maxIterations = 200 if attempt == 0 else 1000
        params.timeout = int(timeout)
        start = time.monotonic()
        if AllChem.EmbedMolecule(mol, params) == 0:
            break
        timed_out = timed_out or (timeout > 0 and time.monotonic() - start >= timeout)
    else:
        if timed_out:
            raise PreparationError(
                f"3D embedding failed after {attempts} attempts (ETKDG stopped at its "
                f"{timeout} s share of ligands.time_limit)"
            )
        raise PreparationError(f"3D embedding failed after {attempts} attempts (strained or impossible geometry)")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    else:
        AllChem.UFFOptimizeMolecule(mol, maxIters=500)
    return mol


def rigid_macrocycles(setup) -> list[tuple[int, ...]]:
    """Rings of macrocycle size that meeko left closed in a molecule setup (docked rigid).

    Parameters
    ----------
    setup : meeko.RDKitMoleculeSetup
        A prepared setup.

    Returns
    -------
    list of tuple of int
        Atom indices of each ring of meeko's macrocycle size range (7 to 33 atoms), not
        wholly aromatic, that none of the opened bonds belongs to.
    """
    from meeko.macrocycle import DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE

    opened = {frozenset(bond) for bond in setup.ring_closure_info.bonds_removed}
    return [
        ring
        for ring in setup.rings
        if DEFAULT_MIN_RING_SIZE <= len(ring) <= DEFAULT_MAX_RING_SIZE
        and not all(setup.mol.GetAtomWithIdx(i).GetIsAromatic() for i in ring)
        and not any(frozenset(bond) in opened for bond in setup.get_bonds_in_ring(ring))
    ]


def to_pdbqt(mol: Chem.Mol) -> str:
    """Vina PDBQT of a 3D molecule with hydrogens (meeko); raises :class:`PreparationError`.

    Macrocycles (rings of 7 to 33 atoms) are made flexible by meeko's ring opening: one
    ring bond per ring is cut, its two atoms typed ``CG<n>`` and each given a ``G<n>``
    glue atom on the other's position, which Vina's glue potential pulls together again
    while the ring's torsions are searched; the exported poses get the bond back from the
    SMILES the PDBQT carries. meeko cuts only single C-C bonds between non-aromatic carbons
    by default; a macrocycle without one (biaryl- or aryl-linked rings) is retried with
    aromatic carbons allowed, and one that still cannot be opened is docked rigid, in its
    embedded conformation (logged).
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy

    try:
        setup = MoleculePreparation(rigid_macrocycles=False).prepare(mol)[0]
        if rigid_macrocycles(setup):
            setup = MoleculePreparation(rigid_macrocycles=False, macrocycle_allow_A=True).prepare(mol)[0]
            if rigid_macrocycles(setup):
                smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
                log.info("macrocycle docked rigid (no ring bond meeko can open): %s", smiles)
        pdbqt, ok, error = PDBQTWriterLegacy.write_string(setup)
    except Exception as exc:  # meeko raises plain exceptions for untypable atoms
        raise PreparationError(f"meeko cannot type this molecule for Vina: {exc}") from exc
    if not ok:
        raise PreparationError(f"meeko cannot write PDBQT: {error.strip()}")
    return pdbqt


def protonated_molecule(smiles: str, settings: LigandSettings) -> Chem.Mol:
    """The 2D steps of :func:`prepare_ligand`: parse, check, standardize, protonate.

    Parameters
    ----------
    smiles
        The compound as given in the library.
    settings
        Ligand settings (``ph``, ``protonation``, the size limits).

    Returns
    -------
    Chem.Mol
        The molecule in its protonation state at ``settings.ph``, without explicit hydrogens.

    Raises
    ------
    PreparationError
        When the SMILES cannot be read or the molecule is outside what Vina can score.
    """
    mol = parse_smiles(smiles)
    check_no_bonded_metals(mol)
    mol = standardize(mol)
    check_composition(mol, settings)
    return protonate(mol, settings.ph, settings.protonation)


def prepare_ligand(compound_id: str, smiles: str, settings: LigandSettings) -> tuple[Chem.Mol, dict]:
    """Prepare one compound; return its 3D molecule and its table row.

    Raises :class:`PreparationError` with a readable reason when any step fails.
    """
    mol = protonated_molecule(smiles, settings)
    faults.inject(STAGE, compound_id)  # tests' hook before the native engines (no-op unless VSCREEN_FAULTS)
    seed = compound_seed(compound_id, settings.seed)
    mol3d = embed(mol, seed, settings.embed_attempts, embed_timeout(settings))
    pdbqt = to_pdbqt(mol3d)
    # other ring shapes to start docking from (Vina keeps rings as embedded); none without a flexible ring
    conformers = [to_pdbqt(m) for m in distinct_ring_conformers(mol3d, settings.ring_conformers, seed + 1)]
    mol3d.SetProp("_Name", compound_id)
    row = dict(
        id=compound_id,
        smiles=smiles,
        prepared_smiles=Chem.MolToSmiles(mol),
        heavy_atoms=mol.GetNumHeavyAtoms(),
        formal_charge=Chem.GetFormalCharge(mol),
        rotatable_bonds=rdMolDescriptors.CalcNumRotatableBonds(mol),
        pdbqt=pdbqt,
        pdbqt_conformers=conformers,
    )
    return mol3d, row


def read_pose(molblock: str) -> Chem.Mol:
    """The molecule of an input pose's mol block, hydrogens and coordinates as given.

    Parameters
    ----------
    molblock
        One record's mol block (the chunk's ``molblock`` column).

    Returns
    -------
    Chem.Mol
        Sanitized, with the block's explicit hydrogens kept and its one 3D conformer
        (stereo assigned from the coordinates by RDKit).

    Raises
    ------
    PreparationError
        When RDKit cannot read the block or it has no 3D coordinates (:data:`NO_3D_POSE`).
    """
    mol = Chem.MolFromMolBlock(molblock, sanitize=True, removeHs=False) if molblock else None
    if mol is None:
        raise PreparationError("RDKit cannot read this record's mol block (bad valence or malformed block)")
    if not has_3d_pose(mol):
        raise PreparationError(NO_3D_POSE)
    return mol


def prepare_pose(compound_id: str, smiles: str, molblock: str, settings: LigandSettings) -> tuple[Chem.Mol, dict]:
    """Prepare one compound from its input pose (``docking.mode: score_only``).

    The pose is kept exactly: no standardization, protonation or embedding (each would
    change the molecule Vina scores or move its atoms). The largest organic fragment is
    kept when the record holds more than one (a salt in a crystal ligand's file), the
    composition is checked as for SMILES input, missing hydrogens are added at computed
    positions, and meeko types that conformer.

    Parameters
    ----------
    compound_id
        The compound's id (the molecule's name).
    smiles
        The chunk's SMILES of the record (written to the table's ``smiles`` column).
    molblock
        The record's mol block with its 3D pose in the receptor's frame.
    settings
        Ligand settings (the heavy-atom limits).

    Returns
    -------
    (Chem.Mol, dict)
        The molecule with all hydrogens at the input pose, and its row of
        :data:`LIGAND_COLUMNS` (``pdbqt`` carries the same coordinates).

    Raises
    ------
    PreparationError
        With the reason, when the block cannot be read, has no 3D pose, or the molecule
        is outside what Vina can score.
    """
    mol = read_pose(molblock)
    check_no_bonded_metals(mol)
    if len(Chem.GetMolFrags(mol)) > 1:
        # the chooser keeps the fragment's atoms with their coordinates (no re-embedding)
        mol = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
    check_composition(mol, settings)
    faults.inject(STAGE, compound_id)  # tests' hook before the native engines (no-op unless VSCREEN_FAULTS)
    posed = Chem.AddHs(mol, addCoords=True)
    pdbqt = to_pdbqt(posed)
    posed.SetProp("_Name", compound_id)
    heavy = Chem.RemoveHs(posed)
    row = dict(
        id=compound_id,
        smiles=smiles,
        prepared_smiles=Chem.MolToSmiles(heavy),
        heavy_atoms=heavy.GetNumHeavyAtoms(),
        formal_charge=Chem.GetFormalCharge(heavy),
        rotatable_bonds=rdMolDescriptors.CalcNumRotatableBonds(heavy),
        pdbqt=pdbqt,
        pdbqt_conformers=[],  # the input pose is scored as it lies
    )
    return posed, row


def _prepare_in_worker(settings: LigandSettings, _state: None, item: tuple[str, ...]) -> tuple[bytes, dict]:
    """Isolated work of one compound: the packed 3D molecule (SD properties set) and its table row.

    ``item`` is ``(id, smiles)``, or ``(id, smiles, molblock)`` with ``settings.keep_poses``.
    """
    if settings.keep_poses:
        mol3d, row = prepare_pose(*item, settings)
    else:
        compound_id, smiles = item
        mol3d, row = prepare_ligand(compound_id, smiles, settings)
    for key in ("smiles", "prepared_smiles"):
        mol3d.SetProp(key, row[key])
    return pack_mol(mol3d), row


def _preparation_reason(compound_id: str, exc: BaseException) -> str:
    """A :class:`PreparationError` is the reason as written; anything else is an RDKit/meeko bug, logged."""
    if isinstance(exc, PreparationError):
        return str(exc)
    return unexpected_error(f"prepare {compound_id}", exc)


def prepare_chunk(
    chunk: str | Path, out_sdf: str | Path, out_table: str | Path, failures: str | Path, settings: LigandSettings
) -> tuple[int, int]:
    """Prepare every compound of one input chunk (Parquet with ``id, smiles``).

    Writes the SDF, the ligand table and the failures CSV atomically; returns
    ``(prepared, failed)`` counts. A compound that fails, crashes its worker process or
    runs past ``settings.time_limit`` never stops the chunk (:mod:`pipeline.isolation`).
    With ``settings.keep_poses`` the chunk needs a ``molblock`` column (split with
    ``keep_poses``) and each compound is prepared by :func:`prepare_pose`; a chunk without
    one raises :class:`LigandInputError` naming it.
    """
    compounds = pd.read_parquet(chunk)
    rows, failed = [], []
    if settings.keep_poses:
        if "molblock" not in compounds.columns:
            raise LigandInputError(
                f"chunk '{chunk}' has no molblock column, but docking.mode score_only prepares each compound "
                "from its input pose: split the SD library again with poses kept (vscreen split --keep-poses)"
            )
        items = zip(compounds["id"], compounds["smiles"], compounds["molblock"])
    else:
        items = zip(compounds["id"], compounds["smiles"])
        if settings.protonation == "molscrub":
            molscrub_conjugator()  # built once here: a worker forked after a crash inherits it
    with atomic_sdf(out_sdf) as writer:
        outcomes = run_isolated(
            zip(compounds["id"], items),
            partial(_prepare_in_worker, settings),
            time_limit=settings.time_limit,
            stage=STAGE,
            desc=f"prepare {Path(chunk).stem}",
            unit="cpd",
            describe_error=_preparation_reason,
        )
        for cid, result, reason in outcomes:
            if reason is not None:
                failed.append(dict(id=cid, stage=STAGE, reason=reason))
                continue
            packed, row = result
            writer.write(unpack_mol(packed))
            rows.append(row)
    write_parquet_atomic(pd.DataFrame(rows, columns=LIGAND_COLUMNS), out_table)
    write_failures(failed, failures)
    return len(rows), len(failed)
