"""Real AutoDock Vina docking: redocking imatinib into Abl (1iep), determinism, chunk outputs."""

from __future__ import annotations

import pandas as pd
import pytest
from rdkit import Chem

from pipeline.box import Box, read_vina_config
from pipeline.docking import Docker, DockingSettings, dock_chunk
from pipeline.ligands import LigandSettings, prepare_ligand
from pipeline.receptor import prepare_receptor
from pipeline.rmsd import heavy_atom_rmsd

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
