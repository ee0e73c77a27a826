"""Starting conformers with other ring shapes (pipeline.ring_conformers) and docking from several of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.box import Box, read_vina_config
from pipeline.docking import Docker, DockingSettings, dock_chunk, merge_poses
from pipeline.ligands import LigandSettings, compound_seed, prepare_ligand
from pipeline.receptor import prepare_receptor
from pipeline.ring_conformers import MIN_TORSION_DIFFERENCE, distinct_ring_conformers, flexible_rings, ring_torsions

#: The 5x72 ligand: its dihydroquinazolinone puckers two ways, and redocking depends on which one is docked.
DIHYDROQUINAZOLINONE = "O=C1c2ccccc2N[C@@H](c2ccccc2F)N1c1ccccc1"


def _prepared(smiles: str, k: int, cid: str = "cpd") -> tuple[Chem.Mol, dict]:
    return prepare_ligand(cid, smiles, LigandSettings(ring_conformers=k))


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs((a - b + 180.0) % 360.0 - 180.0)))


@pytest.mark.parametrize(
    "smiles, n_rings",
    [
        ("c1ccccc1", 0),  # aromatic: flat in every conformer
        ("c1ccc2[nH]ccc2c1", 0),
        ("C1CCCCC1", 1),
        ("c1ccc2c(c1)CCCN2", 1),  # tetrahydroquinoline: the saturated half
        ("O=C1CNCCN1", 1),
        ("C1CCCCCCCCCCC1", 0),  # a macrocycle: meeko opens it, Vina searches it
        ("C1CC1C1CCOC1", 1),  # a three-membered ring has one shape
    ],
)
def test_flexible_rings_are_the_small_rings_that_are_not_aromatic(smiles, n_rings):
    assert len(flexible_rings(Chem.MolFromSmiles(smiles))) == n_rings


def test_extra_conformers_differ_in_their_rings_and_are_reproducible():
    mol, row = _prepared(DIHYDROQUINAZOLINONE, 3)
    rings = flexible_rings(mol)
    seed = compound_seed("cpd", LigandSettings().seed) + 1  # the seed prepare_ligand gives them
    extra = distinct_ring_conformers(mol, 3, seed=seed)
    assert 1 <= len(extra) <= 2
    torsions = [ring_torsions(mol, rings)] + [ring_torsions(m, rings) for m in extra]
    for i in range(len(torsions)):
        for j in range(i):
            assert _difference(torsions[i], torsions[j]) >= MIN_TORSION_DIFFERENCE
    again = distinct_ring_conformers(mol, 3, seed=seed)
    assert [m.GetConformer().GetPositions().tolist() for m in again] == [
        m.GetConformer().GetPositions().tolist() for m in extra
    ]
    # same molecule, same atom order: only the coordinates differ
    assert all(Chem.MolToSmiles(m) == Chem.MolToSmiles(mol) and m.GetNumAtoms() == mol.GetNumAtoms() for m in extra)
    # the prepared row carries them as PDBQT, as many as the setting allows
    assert len(row["pdbqt_conformers"]) == len(extra) and all("ROOT" in p for p in row["pdbqt_conformers"])


def test_no_extra_conformers_without_a_flexible_ring_or_when_not_asked():
    mol, row = _prepared("CC(=O)Nc1ccc(O)cc1", 3)
    assert row["pdbqt_conformers"] == [] and distinct_ring_conformers(mol, 3, seed=1) == []
    mol, row = _prepared(DIHYDROQUINAZOLINONE, 1)
    assert row["pdbqt_conformers"] == []


def _translated(mol: Chem.Mol, shift: float) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, p in enumerate(conf.GetPositions()):
        conf.SetAtomPosition(i, Point3D(p[0] + shift, p[1], p[2]))
    return out


def test_merged_poses_are_best_first_without_near_duplicates():
    mol, _ = _prepared("CC(=O)Nc1ccc(O)cc1", 1)
    shifts = [0.0, 0.3, 5.0, 2.0, 9.0]  # pose 1 duplicates pose 0 (0.3 A apart)
    poses = [_translated(mol, d) for d in shifts]
    energies = np.array([[-7.0], [-7.5], [-6.0], [-6.5], [-3.0]]) * np.ones((1, 5))
    kept, rows = merge_poses(poses, energies, n_poses=9, energy_range=3.0)
    # -7.5 (shift 0.3) first; -7.0 at 0.3 A from it dropped; -6.5, -6.0; -3.0 is beyond 3 kcal/mol of the best
    assert rows[:, 0].tolist() == [-7.5, -6.5, -6.0]
    assert [p.GetConformer().GetAtomPosition(0).x - mol.GetConformer().GetAtomPosition(0).x for p in kept] == (
        pytest.approx([0.3, 2.0, 5.0])
    )
    assert merge_poses(poses, energies, n_poses=2, energy_range=3.0)[1][:, 0].tolist() == [-7.5, -6.5]


@pytest.fixture(scope="module")
def abl(fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("ring_abl")
    prepare_receptor(fixtures / "1iep" / "1iep_receptorH.pdb", out / "receptor.pdb", out / "receptor.pdbqt")
    box = read_vina_config(fixtures / "1iep" / "1iep_box.txt")
    return out / "receptor.pdbqt", Box(box.center, (18.0, 18.0, 18.0))


def test_docking_from_several_conformers_splits_the_search_and_merges(abl, tmp_path, monkeypatch):
    receptor, box = abl
    _, row = _prepared("O=C1CN(Cc2ccccc2)CCN1c1ccccc1", 3, "piperazinone")
    assert len(row["pdbqt_conformers"]) == 2
    docker = Docker(receptor, box, DockingSettings(exhaustiveness=4, n_poses=5, threads=2))
    efforts = []
    search = docker._search
    monkeypatch.setattr(docker, "_search", lambda cid, pdbqt, e: efforts.append(e) or search(cid, pdbqt, e))
    poses, energies = docker.dock("piperazinone", row["pdbqt"], row["pdbqt_conformers"])
    assert efforts == [4, 2, 2]  # the first start searched as alone, the other ring shapes at ceil(4 / 3)
    assert 1 <= len(poses) <= 5 and list(energies[:, 0]) == sorted(energies[:, 0])
    monkeypatch.undo()

    # a chunk carries the conformers to dock_chunk; one prepared before the column existed still docks
    for name, table in {
        "with": pd.DataFrame([row]),
        "without": pd.DataFrame([row]).drop(columns=["pdbqt_conformers"]),
    }.items():
        table.to_parquet(tmp_path / f"{name}.parquet")
        done, failed = dock_chunk(
            tmp_path / f"{name}.parquet",
            receptor,
            box,
            DockingSettings(exhaustiveness=2, n_poses=3, threads=2),
            tmp_path / f"{name}.sdf",
            tmp_path / f"{name}_poses.parquet",
            tmp_path / f"{name}.csv",
        )
        assert (done, failed) == (1, 0), name
