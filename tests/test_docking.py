"""Real AutoDock Vina docking: redocking imatinib into Abl (1iep), determinism, chunk outputs, macrocycles."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolTransforms

from pipeline.box import Box, read_vina_config
from pipeline.docking import Docker, DockingSettings, dock_chunk
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.receptor import prepare_receptor
from pipeline.rmsd import heavy_atom_rmsd
from pipeline.zinc import ZincRouteError, require_ad4zn

IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"


@pytest.fixture(scope="module")
def abl(shared_complexes, tmp_path_factory):
    """1iep receptor prepared by the pipeline, with the crystal box and ligand."""
    out = tmp_path_factory.mktemp("abl")
    prepare_receptor(shared_complexes / "1iep_receptorH.pdb", out / "receptor.pdb", out / "receptor.pdbqt")
    crystal = Chem.MolFromMolFile(str(shared_complexes / "1iep_ligand.sdf"))
    return out / "receptor.pdbqt", read_vina_config(shared_complexes / "1iep_box.txt"), crystal


def test_rmsd_is_symmetry_aware_and_zero_on_itself(shared_complexes):
    crystal = Chem.MolFromMolFile(str(shared_complexes / "1iep_ligand.sdf"), removeHs=False)
    assert heavy_atom_rmsd(crystal, crystal) == pytest.approx(0.0, abs=1e-9)


def test_redock_imatinib_from_smiles_within_2A(abl):
    """Acceptance: imatinib built from SMILES, exhaustiveness 8, top pose < 2 Å from the crystal."""
    receptor, box, crystal = abl
    _, row = prepare_ligand("imatinib", IMATINIB, LigandSettings())
    poses, energies = Docker(receptor, box, DockingSettings(exhaustiveness=8, threads=2)).dock("imatinib", row["pdbqt"])
    rmsd = heavy_atom_rmsd(poses[0], crystal)
    print(f"imatinib redock: score {energies[0][0]:.2f} kcal/mol, top-pose RMSD {rmsd:.2f} Å")
    assert energies[0][0] < -9.0
    assert rmsd < 2.0


def test_docking_is_deterministic_for_a_seed(abl):
    receptor, box, _ = abl
    small = Box(box.center, (16.0, 16.0, 16.0))
    _, row = prepare_ligand("cpd", "CC(=O)Nc1ccc(O)cc1", LigandSettings())
    settings = DockingSettings(exhaustiveness=2, n_poses=3, seed=7, threads=2)
    first = Docker(receptor, small, settings).dock("cpd", row["pdbqt"])[1]
    second = Docker(receptor, small, settings).dock("cpd", row["pdbqt"])[1]
    assert (first == second).all()


def test_dock_chunk_writes_poses_with_hydrogens_and_scores(abl, tmp_path):
    receptor, box, _ = abl
    prepared = [
        prepare_ligand(cid, smi, LigandSettings()) for cid, smi in [("a", "c1ccc2[nH]ccc2c1"), ("b", "OC(=O)c1ccccc1")]
    ]
    n_h = {row["id"]: sum(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) for mol, row in prepared}
    rows = [row for _, row in prepared]
    rows.append(dict(rows[0], id="broken", pdbqt="not a pdbqt"))
    ligands = tmp_path / "chunk_00000.parquet"
    pd.DataFrame(rows).to_parquet(ligands)
    settings = DockingSettings(exhaustiveness=1, n_poses=3, threads=2)
    done, failed = dock_chunk(
        ligands,
        receptor,
        Box(box.center, (16.0, 16.0, 16.0)),
        settings,
        tmp_path / "d.sdf",
        tmp_path / "d.parquet",
        tmp_path / "f.csv",
    )
    assert (done, failed) == (2, 1)
    poses = list(Chem.SDMolSupplier(str(tmp_path / "d.sdf"), removeHs=False))
    assert {p.GetProp("_Name") for p in poses} == {"a", "b"}
    assert all(p.HasProp("docking_score") for p in poses)
    # meeko restores the non-polar hydrogens Vina does not see: same count as prepared
    assert all(sum(a.GetAtomicNum() == 1 for a in p.GetAtoms()) == n_h[p.GetProp("_Name")] for p in poses)
    table = pd.read_parquet(tmp_path / "d.parquet")
    assert table.groupby("id")["docking_score"].min().lt(-3).all()
    assert pd.read_csv(tmp_path / "f.csv")["stage"].tolist() == ["dock"]


def _glue_types(pdbqt: str) -> set[str]:
    """AutoDock types of the ring-opening atoms (``CG<n>``, ``G<n>``) in a meeko PDBQT."""
    return {t for t in (line[77:].strip() for line in pdbqt.splitlines() if line.startswith("ATOM")) if "G" in t}


def test_macrocycle_is_docked_with_its_ring_opened_and_comes_back_closed(abl):
    """meeko opens the 8-ring lactam (CG0/G0 glue atoms); Vina closes it; the exported pose has the bond back."""
    receptor, box, _ = abl
    _, row = prepare_ligand("lactam", "O=C1CCCCCCN1", LigandSettings())
    assert _glue_types(row["pdbqt"]) == {"CG0", "G0"}
    settings = DockingSettings(exhaustiveness=1, n_poses=2, threads=1)
    poses, _ = Docker(receptor, Box(box.center, (12.0, 12.0, 12.0)), settings).dock("lactam", row["pdbqt"])
    ring = Chem.MolFromSmarts("O=C1CCCCCCN1")
    for pose in poses:
        assert pose.HasSubstructMatch(ring)  # the ring is in the exported topology ...
        conf = pose.GetConformer()
        lengths = [
            rdMolTransforms.GetBondLength(conf, b.GetBeginAtomIdx(), b.GetEndAtomIdx())
            for b in pose.GetBonds()
            if b.IsInRing() and b.GetBeginAtom().GetAtomicNum() > 1
        ]
        assert len(lengths) == 8 and max(lengths) < 1.65 and min(lengths) > 1.25  # ... and closed in space


def test_macrocycle_without_an_aliphatic_cc_bond_is_opened_at_an_aromatic_one():
    """A biaryl-linked macrocycle (no C-C bond meeko cuts by default) is opened with aromatic carbons allowed."""
    _, row = prepare_ligand("cyclophane", "O1c2cccc(c2)-c2cccc(c2)Oc2cccc(c2)-c2cccc1c2", LigandSettings())
    assert _glue_types(row["pdbqt"]) == {"CG0", "G0"}


def test_redock_keeps_crystal_cofactors_as_typed_receptor_atoms(shared_complexes, repo):
    """1s63's farnesyl diphosphate and 5x72's second enantiomer become rigid receptor atoms with AutoDock types."""
    sys.path.insert(0, str(repo / "benchmarks"))
    import redock

    fpp = redock.cofactor_pdbqt_lines("FPP", *redock.COFACTORS["1s63"]["FPP"], serial=1)
    assert len(fpp) == 24 and {line[77:].strip() for line in fpp} == {"C", "OA", "P"}
    p69 = redock.cofactor_pdbqt_lines("P69", *redock.COFACTORS["5x72"]["P69"], serial=1)
    assert len(p69) == 25 and [line[77:].strip() for line in p69].count("HD") == 1  # 24 heavy atoms + the N-H


def test_ad4zn_route_is_refused_with_the_reason():
    with pytest.raises(ZincRouteError, match="autogrid 4.2.7"):
        require_ad4zn()


def test_box_around_a_reference_ligand_pads_its_heavy_atoms(tmp_path):
    """The box of ``box.reference_ligand``: heavy-atom extent plus the padding on every side, hydrogens ignored."""
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from pipeline.box import box_around_coordinates, box_around_ligand

    mol = Chem.AddHs(Chem.MolFromSmiles("CCOc1ccccc1"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    path = tmp_path / "ref.sdf"
    with Chem.SDWriter(str(path)) as writer:
        writer.write(mol)
    heavy = mol.GetConformer().GetPositions()[[a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]]
    box = box_around_ligand(path, padding=4.0)
    same = box_around_coordinates(heavy, 4.0)  # the SDF keeps 4 decimals
    np.testing.assert_allclose(box.center, same.center, atol=2e-3)
    np.testing.assert_allclose(box.size, same.size, atol=2e-3)
    np.testing.assert_allclose(box.size, np.ptp(heavy, axis=0) + 8.0, atol=1e-3)
    np.testing.assert_allclose(box.center, (heavy.min(axis=0) + heavy.max(axis=0)) / 2, atol=1e-3)
