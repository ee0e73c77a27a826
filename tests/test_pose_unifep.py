"""The Uni-FEP posing campaign's durable files: poses appended to a committed gzipped SDF, resumed from rows and poses.

The series is the plasminogen fixture of ``test_tethered.py``. Preparing its receptor and
posing with Vina take minutes on a shared machine, so the poser is replaced by one that embeds
the ligand as its SMILES gives it (RDKit, seeded): everything around it - the series' ligands,
the rows, the pose file, the resume check and the scorer benchmark's reading of the poses - is
the benchmark's own code.
"""

from __future__ import annotations

import csv
import gzip
import sys

import numpy as np
import pytest
from conftest import REPO
from rdkit import Chem
from rdkit.Chem import AllChem

from pipeline.tethered import Core, TetheredPose, TetheredSettings, TetheringError, ligand_from_smiles

sys.path.insert(0, str(REPO / "benchmarks"))
import pose_unifep as pu  # noqa: E402

SERIES = REPO / "tests" / "data" / "unifep_ChEMBL__PLG__CHEMBL3295545"


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    """The benchmark's rows, committed poses and cache in ``tmp_path``; the embedding poser in place of Vina."""
    monkeypatch.setattr(pu, "ROWS", tmp_path / "rows.csv")
    monkeypatch.setattr(pu, "POSES", tmp_path / "poses")
    monkeypatch.setattr(pu, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(pu, "prepare", lambda folder, workdir: workdir / "receptor.pdbqt")
    monkeypatch.setattr(pu, "TetheredPoser", EmbeddingPoser)
    EmbeddingPoser.fail.clear()
    EmbeddingPoser.score = -7.5
    return tmp_path


class EmbeddingPoser:
    """Stands in for :class:`pipeline.tethered.TetheredPoser`: the ligand embedded, a fixed score, or a failure."""

    fail: set[str] = set()  # names to fail with a TetheringError
    score = -7.5  # the Vina score every pose gets (changed to tell a re-pose from the first)

    def __init__(self, receptor, reference, settings) -> None:
        pass

    def pose(self, smiles: str, name: str) -> TetheredPose:
        if name in self.fail:
            raise TetheringError(f"{name}: no core")
        mol = ligand_from_smiles(smiles, name)
        assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
        return TetheredPose(
            name, smiles, "docked", "stand-in", Core((), "", mol.GetNumHeavyAtoms()), mol, self.score, 0.5
        )


def _pose(lig: dict) -> Chem.Mol:
    mol = EmbeddingPoser(None, None, None).pose(lig["ligand_smiles"], lig["ligand_name"]).to_mol()
    mol.SetProp("exp_dG", lig["exp_dG"])
    return mol


def test_poses_appended_one_by_one_read_back_whole_with_hydrogens_and_properties(campaign):
    """Two appends give one gzip SDF that plain ``gzip.open`` reads whole; a cut-short append loses only itself."""
    ligands = pu.read_series(SERIES)[:2]
    path = pu.pose_path(SERIES.name)
    written = [_pose(lig) for lig in ligands]
    for mol in written:
        pu.append_pose(path, mol)
    with gzip.open(path) as handle:  # any reader of gzip files, not only the benchmark's
        read = [mol for mol in Chem.ForwardSDMolSupplier(handle, removeHs=False)]
    assert [m.GetProp("_Name") for m in read] == [lig["ligand_name"] for lig in ligands]
    for before, after in zip(written, read, strict=True):
        assert after.GetNumAtoms() == before.GetNumAtoms() > before.GetNumHeavyAtoms()  # hydrogens kept
        assert np.allclose(after.GetConformer().GetPositions(), before.GetConformer().GetPositions(), atol=1e-3)
        for key in ("smiles", "mode", "reason", "vina_score", "core_atoms", "exp_dG"):
            assert after.GetProp(key) == before.GetProp(key)
    assert pu.pose_names(path) == {lig["ligand_name"] for lig in ligands}

    whole = path.stat().st_size
    with open(path, "ab") as handle:  # a kill in the middle of an append
        handle.write(gzip.compress(Chem.SDWriter.GetText(written[0]).encode())[:-12])
    assert pu.pose_names(path) == {lig["ligand_name"] for lig in ligands}
    assert pu.ready_pose_file(SERIES.name) == {lig["ligand_name"] for lig in ligands}
    assert path.stat().st_size == whole
    third = _pose(pu.read_series(SERIES)[2])
    pu.append_pose(path, third)
    with gzip.open(path) as handle:
        assert len(list(Chem.ForwardSDMolSupplier(handle, removeHs=False))) == 3


def test_a_ligand_whose_row_is_there_but_whose_pose_is_not_is_posed_again(campaign):
    """Rows alone do not make a ligand done: one whose pose was lost is posed again, its new row the latest."""
    ligands = pu.read_series(SERIES)
    names = [lig["ligand_name"] for lig in ligands]
    lost, failed = names[1], names[3]
    EmbeddingPoser.fail.add(failed)
    assert pu.run_series(SERIES, "PLG", pu.read_rows(pu.ROWS), TetheredSettings(), None) == 4
    path = pu.pose_path(SERIES.name)
    assert pu.pose_names(path) == set(names) - {failed}  # a failure has a row, no pose

    kept = [mol for mol in pu.read_poses(path) if mol.GetProp("_Name") != lost]  # the checkout lost one pose
    path.unlink()
    for mol in kept:
        pu.append_pose(path, mol)
    EmbeddingPoser.fail.clear()
    EmbeddingPoser.score = -8.25
    rows = pu.read_rows(pu.ROWS)
    assert [lig["ligand_name"] for lig in pu.ligands_to_pose(SERIES.name, ligands, rows, pu.pose_names(path))] == [lost]
    assert [
        lig["ligand_name"]
        for lig in pu.ligands_to_pose(SERIES.name, ligands, rows, pu.pose_names(path), retry_failed=True)
    ] == [lost, failed]

    assert pu.run_series(SERIES, "PLG", rows, TetheredSettings(), None) == 1
    with open(pu.ROWS, newline="") as handle:
        all_rows = list(csv.DictReader(handle))
    assert [r["ligand_name"] for r in all_rows] == names + [lost]
    assert pu.read_rows(pu.ROWS)[SERIES.name, lost]["vina_score"] == "-8.25"  # the latest row wins
    assert {m.GetProp("_Name"): m.GetDoubleProp("vina_score") for m in pu.read_poses(path)} == {
        name: -8.25 if name == lost else -7.5 for name in names if name != failed
    }
    assert pu.run_series(SERIES, "PLG", pu.read_rows(pu.ROWS), TetheredSettings(), None) == 0


def test_poses_of_an_older_checkout_move_from_the_cache_into_the_committed_file(campaign):
    """A legacy cache SDF is read by the scorer benchmark and moved into the committed file before posing resumes."""
    import scoring_cv  # here: it imports torch, seconds the other tests need not wait

    legacy = pu.legacy_pose_path(SERIES.name)
    legacy.parent.mkdir(parents=True)
    ligands = pu.read_series(SERIES)[:2]
    legacy.write_text("".join(Chem.SDWriter.GetText(_pose(lig)) for lig in ligands))
    assert scoring_cv.pose_file(SERIES.name) == legacy
    assert pu.ready_pose_file(SERIES.name) == {lig["ligand_name"] for lig in ligands}
    assert scoring_cv.pose_file(SERIES.name) == pu.pose_path(SERIES.name)
    assert [m.GetProp("_Name") for m in pu.read_poses(pu.pose_path(SERIES.name))] == [
        lig["ligand_name"] for lig in ligands
    ]
    assert pu.receptor_path(SERIES.name).parent == pu.CACHE  # where prepare() leaves it and the scorer reads it


def test_a_neutral_four_bonded_nitrogen_is_read_as_the_ammonium(tmp_path):
    """Hermite PAK4 writes protonated piperazines without their charge; the campaign poses them as [NH2+]."""
    (tmp_path / "result_dG.csv").write_text(
        "ligand_smiles,ligand_name,exp_dG (kcal/mol),fep_dG (kcal/mol)\n"
        "C1CN([H])([H])CCN1C(=O)c1ccccc1,17,-9.1,-9.0\n"
        "c1ccccc1O,phenol,-5.0,-5.1\n"
    )
    ligands = {lig["ligand_name"]: lig["ligand_smiles"] for lig in pu.read_series(tmp_path)}
    assert Chem.MolToSmiles(Chem.MolFromSmiles(ligands["17"])) == Chem.MolToSmiles(
        Chem.MolFromSmiles("O=C(c1ccccc1)N1CC[NH2+]CC1")
    )
    assert ligands["phenol"] == "c1ccccc1O"
    assert ligand_from_smiles(ligands["17"], "17").GetNumAtoms() > 0
