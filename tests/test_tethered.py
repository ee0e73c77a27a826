"""Tethered posing on a real Uni-FEP series (plasminogen, 3-hydroxyisoxazole piperidines): RDKit, meeko, Vina.

The reference ligand CHEMBL3287849 sits in its pocket in ``ref_ligand.sdf``; the other rows of
``result_dG.csv`` are an analogue (2-fluorobenzyl), an epimer at the benzylic ring carbon and a
2-methyl analogue of the opposite absolute configuration (see the data's PROVENANCE.md).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from pipeline.box import box_around_ligand
from pipeline.ligands import to_pdbqt
from pipeline.receptor import prepare_receptor
from pipeline.tethered import (
    Core,
    TetheredPoser,
    TetheredSettings,
    TetheringError,
    _chirality_conflicts,
    _only_the_final_chirality_check_fails,
    _stereo_as_tagged,
    core_rmsd,
    find_core,
    ligand_from_smiles,
    read_reference,
    tethered_conformers,
)

SERIES = "unifep_ChEMBL__PLG__CHEMBL3295545"
REFERENCE = "CHEMBL3287849_280.0_nM"
ANALOGUE = "CHEMBL3287855_1260.0_nM"  # 2-fluorobenzyl: 19 of 20 heavy atoms shared
EPIMER = "CHEMBL3287847_580.0_nM"  # benzylic ring carbon inverted
ENANTIOMERIC = "CHEMBL3287844_2100.0_nM"  # 2-methyl, both ring centres of the other handedness


@pytest.fixture(scope="session")
def series(repo):
    return repo / "tests" / "data" / SERIES


@pytest.fixture(scope="session")
def smiles(series) -> dict[str, str]:
    with open(series / "result_dG.csv", newline="") as handle:
        return {row["ligand_name"]: row["ligand_smiles"] for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def reference(series) -> Chem.Mol:
    return read_reference(series / "ref_ligand.sdf")


@pytest.fixture(scope="session")
def receptor(series, tmp_path_factory):
    """The series' protein prepared by the pipeline (box around the reference ligand)."""
    out = tmp_path_factory.mktemp("plg")
    box = box_around_ligand(series / "ref_ligand.sdf", 8.0)
    # only the PDBQT is used: the OpenMM template check of the MD-ready PDB would cost seconds for nothing
    prepare_receptor(
        series / "protein.pdb.gz", out / "receptor.pdb", out / "receptor.pdbqt", box=box, check_openmm=False
    )
    return out / "receptor.pdbqt"


@pytest.fixture(scope="module")
def poser(receptor, series):
    # exhaustiveness 2 keeps the docking fallback fast; tethered posing does not search
    return TetheredPoser(receptor, series / "ref_ligand.sdf", TetheredSettings(exhaustiveness=2))


def _embedded(smiles: str) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    return mol


def test_reference_data_is_the_series(smiles, reference):
    """The reference ligand is one of the rows (same molecule, whatever the protonation)."""
    key = Chem.MolToInchiKey(reference)[:25]
    assert [name for name, smi in smiles.items() if Chem.MolToInchiKey(Chem.MolFromSmiles(smi))[:25] == key] == [
        REFERENCE
    ]


def test_core_of_the_reference_with_itself_is_the_whole_ligand(reference, smiles):
    mol = ligand_from_smiles(smiles[REFERENCE], REFERENCE)
    core = find_core(reference, mol)
    assert core.size == mol.GetNumHeavyAtoms() == 19
    assert core.fraction == 1.0 and not core.timed_out and core.chirality_trimmed == 0
    assert all(
        reference.GetAtomWithIdx(r).GetAtomicNum() == mol.GetAtomWithIdx(m).GetAtomicNum() for r, m in core.atom_map
    )


def test_ring_matches_only_a_ring_of_the_same_kind():
    """A benzene is no core for a cyclohexane (no half rings, no aromatic-for-saturated)."""
    core = find_core(_embedded("CCc1ccccc1"), ligand_from_smiles("CCC1CCCCC1"))
    assert core.size <= 2
    # an aromatic ring does match a conjugated ring perceived non-aromatic (quinone vs hydroquinone)
    core = find_core(_embedded("Oc1ccc(O)cc1"), ligand_from_smiles("O=C1C=CC(=O)C=C1"))
    assert core.size == 6


def test_ortho_substituted_analogue_gets_both_ring_flips(reference, smiles):
    """The reference's phenyl can take the analogue's fluorine on either side: two mappings."""
    core = find_core(reference, ligand_from_smiles(smiles[ANALOGUE], ANALOGUE))
    assert core.size == 19 and len(core.maps) == 2
    first, second = (set(amap) for amap in core.maps)
    assert first != second and {m for _, m in first} == {m for _, m in second}


def test_epimer_keeps_its_ring_and_frees_the_substituent(reference, smiles):
    """Inverted benzylic carbon: the benzyl leaves the core, the ring (and the centre) stay."""
    mol = ligand_from_smiles(smiles[EPIMER], EPIMER)
    core = find_core(reference, mol)
    core_atoms = {m for _, m in core.atom_map}
    phenyl = {a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic() and a.GetAtomicNum() == 6 and a.IsInRingSize(6)}
    piperidine = {a.GetIdx() for a in mol.GetAtoms() if a.IsInRingSize(6) and not a.GetIsAromatic()}
    assert core.chirality_trimmed == 7 and core.size == 12
    assert piperidine <= core_atoms and not phenyl & core_atoms
    assert _chirality_conflicts(reference, mol, core.atom_map) == []
    # the same mapping without the trim does conflict: the check can fail
    full = find_core(reference, ligand_from_smiles(smiles[REFERENCE]))
    swapped = tuple((r, m) for r, m in full.atom_map)  # same atom order: the SMILES differ only in stereo tags
    assert _chirality_conflicts(reference, mol, swapped)


def test_enantiomeric_scaffold_has_no_tetherable_core(reference, smiles):
    mol = ligand_from_smiles(smiles[ENANTIOMERIC], ENANTIOMERIC)
    core = find_core(reference, mol)
    assert core.chirality_trimmed > 0
    assert core.fraction < TetheredSettings().min_core_fraction


def test_conformers_sit_on_the_reference_core_and_are_reproducible(reference, smiles):
    mol = ligand_from_smiles(smiles[EPIMER], EPIMER)
    core = find_core(reference, mol)
    first = tethered_conformers(reference, mol, core, n_conformers=4, seed=3)
    second = tethered_conformers(reference, mol, core, n_conformers=4, seed=3)
    assert first.GetNumConformers() >= 2
    for conf in first.GetConformers():
        assert core_rmsd(first, reference, core.atom_map, conf.GetId()) < 0.2
        assert np.allclose(conf.GetPositions(), second.GetConformer(conf.GetId()).GetPositions())
        copy = Chem.Mol(first, confId=conf.GetId())
        Chem.AssignStereochemistryFrom3D(copy)
        assert Chem.MolToSmiles(Chem.RemoveHs(copy)) == Chem.MolToSmiles(Chem.RemoveHs(mol))


def test_stereo_check_tells_a_conformer_from_its_mirror_image(reference, smiles):
    mol = ligand_from_smiles(smiles[EPIMER], EPIMER)
    confs = tethered_conformers(reference, mol, find_core(reference, mol), n_conformers=2, seed=3)
    cid = confs.GetConformers()[0].GetId()
    assert _stereo_as_tagged(confs, cid)
    mirror = Chem.Mol(confs)
    conf = mirror.GetConformer(cid)
    for i, (x, y, z) in enumerate(conf.GetPositions()):
        conf.SetAtomPosition(i, (-x, y, z))
    assert not _stereo_as_tagged(mirror, cid)


def test_a_core_contradicting_a_stereocentre_is_not_rescued_by_the_unchecked_retry(reference, smiles):
    """The reference's enantiomer on the reference's whole core fails ETKDG's early chirality
    check, not the final one, so no unchecked retry runs and the error names the cause."""
    own = ligand_from_smiles(smiles[REFERENCE], REFERENCE)
    core = find_core(reference, own)
    enantiomer = Chem.Mol(own)
    for atom in enantiomer.GetAtoms():
        if atom.GetChiralTag() == Chem.ChiralType.CHI_TETRAHEDRAL_CW:
            atom.SetChiralTag(Chem.ChiralType.CHI_TETRAHEDRAL_CCW)
        elif atom.GetChiralTag() == Chem.ChiralType.CHI_TETRAHEDRAL_CCW:
            atom.SetChiralTag(Chem.ChiralType.CHI_TETRAHEDRAL_CW)
    assert _chirality_conflicts(reference, enantiomer, core.atom_map)
    with pytest.raises(TetheringError, match="CHECK_CHIRAL_CENTERS") as caught:
        tethered_conformers(reference, enantiomer, core, n_conformers=2, timeout=5)
    assert "WRONG_STEREOISOMER" not in str(caught.value)


def test_unchecked_retry_only_when_the_final_chirality_check_fails():
    assert _only_the_final_chirality_check_fails({"FINAL_CHIRAL_BOUNDS": 2595, "INITIAL_COORDS": 203})
    assert not _only_the_final_chirality_check_fails({"CHECK_CHIRAL_CENTERS2": 751, "FINAL_CHIRAL_BOUNDS": 7})
    assert not _only_the_final_chirality_check_fails({"INITIAL_COORDS": 30})
    assert not _only_the_final_chirality_check_fails({})


def test_a_common_part_of_ring_pieces_only_is_no_core():
    """PNMT series: a tetrahydroisoquinoline reference and a ligand of another ring system share
    only ring fragments; the ring-complete rule leaves nothing, which is no core (docked), not a crash."""
    reference = _embedded("Clc1ccc2c(c1Cl)C[NH2+]CC2")
    mol = ligand_from_smiles("COc1cccc2c3c(ccc12)CC[NH2+]C3", "CHEMBL243835")
    core = find_core(reference, mol)
    assert core.maps == () and core.size == 0


def test_impossible_core_raises_a_readable_tethering_error(reference):
    """Two bonded ligand atoms pinned to reference atoms 4+ A apart cannot be embedded."""
    mol = ligand_from_smiles("CCO", "ethanol")
    xyz = reference.GetConformer().GetPositions()
    heavy = [a.GetIdx() for a in reference.GetAtoms() if a.GetAtomicNum() > 1]
    far = next(j for j in heavy if np.linalg.norm(xyz[j] - xyz[heavy[0]]) > 4.0)
    core = Core((((heavy[0], 0), (far, 1)),), "[#6]-[#6]", 3)
    with pytest.raises(TetheringError, match="could not embed the ligand with its 2 core atoms"):
        tethered_conformers(reference, mol, core, n_conformers=1, timeout=5)


def test_reference_reposed_from_its_own_smiles(poser, reference):
    """Acceptance: the crystal ligand rebuilt from SMILES lands on itself, scoring like the crystal pose."""
    pose = poser.pose(Chem.MolToSmiles(reference), "reference")
    vina = poser.docker.vina
    vina.set_ligand_from_string(to_pdbqt(reference))
    crystal = float(vina.optimize()[0])
    print(
        f"reference: tethered {pose.vina_score:.2f}, crystal optimized {crystal:.2f} kcal/mol, core {pose.core_rmsd:.2f} A"
    )
    assert pose.mode == "tethered"
    assert pose.core_rmsd < 0.5
    assert pose.vina_score < -4.0 and abs(pose.vina_score - crystal) < 1.0


def test_analogue_keeps_its_core_on_the_reference(poser, smiles):
    pose = poser.pose(smiles[ANALOGUE], ANALOGUE)
    mol = ligand_from_smiles(smiles[ANALOGUE])
    assert pose.mode == "tethered" and "restrained" in pose.reason
    assert pose.core_rmsd < 1.0
    # the pose is the input molecule: same atoms in the same order, every H placed, stereo kept
    assert [a.GetAtomicNum() for a in pose.mol.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
    xyz = pose.mol.GetConformer().GetPositions()
    for bond in pose.mol.GetBonds():
        if 1 in (bond.GetBeginAtom().GetAtomicNum(), bond.GetEndAtom().GetAtomicNum()):
            assert 0.9 < np.linalg.norm(xyz[bond.GetBeginAtomIdx()] - xyz[bond.GetEndAtomIdx()]) < 1.2
    copy = Chem.Mol(pose.mol)
    Chem.AssignStereochemistryFrom3D(copy)
    assert Chem.MolToSmiles(Chem.RemoveHs(copy)) == Chem.MolToSmiles(Chem.RemoveHs(mol))
    sd = pose.to_mol()
    assert sd.GetProp("_Name") == ANALOGUE and sd.GetProp("mode") == "tethered"


def test_molecule_without_a_common_core_is_docked_with_the_reason(poser):
    pose = poser.pose("NC(=O)c1ccncc1", "isonicotinamide")
    assert pose.mode == "docked"
    assert "min_core_atoms = 6" in pose.reason and pose.reason.endswith("docked")
    assert pose.vina_score < 0
    assert poser.box.contains(pose.mol.GetConformer().GetPositions()).all()


def test_bad_smiles_raises_with_the_name_of_the_input(poser):
    with pytest.raises(TetheringError, match="broken-7: invalid SMILES"):
        poser.pose("C1CC(", "broken-7")


def test_settings_are_checked():
    with pytest.raises(ValueError, match="min_core_fraction"):
        TetheredSettings(min_core_fraction=1.5)


def test_core_description_reports_trim_and_timeout():
    core = Core((((0, 0), (1, 1)),), "[#6]-[#6]", 8, timed_out=True, chirality_trimmed=3)
    assert (core.size, core.fraction) == (2, 0.25)
    text = core.describe()
    assert "core of 2 heavy atoms (25% of the ligand's 8)" in text
    assert "3 atoms left out for stereochemistry" in text and "timed out" in text
    assert Core((), "", 8).atom_map == () and Core((), "", 8).fraction == 0.0


def test_dock_subcommand_in_tethered_mode_poses_a_chunk_like_the_reference(receptor, series, smiles, tmp_path):
    """``docking.mode: tethered`` through ``vscreen dock --tethered-to``: poses, table, failures as docking writes them."""
    import pandas as pd

    from pipeline.box import Box
    from pipeline.cli import main
    from pipeline.ligands import LigandSettings, prepare_chunk

    chunk = tmp_path / "chunk_00000.parquet"
    ids = {"ref": smiles[REFERENCE], "fluoro": smiles[ANALOGUE], "unrelated": "CC(C)Cc1ccc(cc1)C(C)C(=O)O"}
    pd.DataFrame({"id": list(ids), "smiles": list(ids.values())}).to_parquet(chunk)
    ligands = tmp_path / "ligands"
    ligands.mkdir()
    prepare_chunk(
        chunk, ligands / "chunk_00000.sdf", ligands / "chunk_00000.parquet", ligands / "f.csv", LigandSettings()
    )
    receptor_dir = tmp_path / "receptor"
    receptor_dir.mkdir()
    (receptor_dir / "receptor.pdbqt").write_text(receptor.read_text())
    box = box_around_ligand(series / "ref_ligand.sdf", 8.0)
    Box(box.center, box.size).to_json(receptor_dir / "box.json")
    out = tmp_path / "docked"
    argv = ["dock", str(ligands / "chunk_00000.parquet"), "--receptor-dir", str(receptor_dir), "--out-dir", str(out)]
    argv += ["--exhaustiveness", "2", "--tethered-to", str(series / "ref_ligand.sdf")]
    assert main(argv) == 0
    table = pd.read_parquet(out / "chunk_00000.parquet").set_index("id")
    poses = {m.GetProp("_Name"): m for m in Chem.SDMolSupplier(str(out / "chunk_00000.sdf"), removeHs=False)}
    assert sorted(table.index) == sorted(poses) == sorted(ids)
    assert poses["ref"].GetProp("mode") == poses["fluoro"].GetProp("mode") == "tethered"
    assert poses["unrelated"].GetProp("mode") == "docked"  # no common core: docked in the reference's box
    assert float(poses["ref"].GetProp("core_rmsd")) < 0.5 and table.loc["ref", "docking_score"] < -4.0
    assert (table["pose"] == 1).all() and table["inter"].isna().all()
