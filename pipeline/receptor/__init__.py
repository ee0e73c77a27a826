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

Layout (one module per step, in the order :func:`prepare_receptor` runs them):
:mod:`.sources` (a file or a dockstring target name), :mod:`.records` (parsing the input
records), :mod:`.repair` (PDBFixer and OpenMM: residues, breaks, atoms, hydrogens),
:mod:`.checks` (the OpenMM System check; force field files in :mod:`.amber`),
:mod:`.pdbqt` (meeko), :mod:`.untypable` (residues that cannot be typed), :mod:`.prepare`
(the orchestration) and :mod:`.report`.
"""

from __future__ import annotations

from ..dockstring_targets import target_names as dockstring_target_names
from ..errors import ReceptorError
from .amber import AMBER_FILES, AMBER_FILES_WITH_IONS, md_forcefield_files
from .checks import check_openmm_system
from .pdbqt import receptor_pdbqt
from .prepare import prepare_receptor
from .records import DOCKING_METALS, read_receptor_records
from .repair import add_missing_heavy_atoms, protonate, relax_residues, split_chains_at_breaks
from .report import ReceptorReport, write_receptor_report
from .sources import STRUCTURE_SUFFIXES, resolve_receptor_source
from .untypable import UNTYPABLE_REMOVAL_DISTANCE, BoxLike

__all__ = [
    "AMBER_FILES",
    "AMBER_FILES_WITH_IONS",
    "DOCKING_METALS",
    "STRUCTURE_SUFFIXES",
    "UNTYPABLE_REMOVAL_DISTANCE",
    "BoxLike",
    "ReceptorError",
    "ReceptorReport",
    "add_missing_heavy_atoms",
    "check_openmm_system",
    "dockstring_target_names",
    "md_forcefield_files",
    "prepare_receptor",
    "protonate",
    "read_receptor_records",
    "receptor_pdbqt",
    "relax_residues",
    "resolve_receptor_source",
    "split_chains_at_breaks",
    "write_receptor_report",
]
