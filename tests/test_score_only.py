"""``docking.mode: score_only``: poses the user brings, scored by Vina as given (real RDKit, meeko, Vina).

The poses are the plasminogen fixture's reference ligand CHEMBL3287849 in its pocket
(``tests/data/unifep_ChEMBL__PLG__CHEMBL3295545``, see its PROVENANCE.md), the same pose
without its hydrogens, a pose Vina docks in the test, the reference moved 50 Å out of the
box and a 2D record. They go through the stages as the workflow runs them: split with
poses kept, ligand preparation from the poses, scoring in the isolated worker.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Geometry import Point3D

from pipeline.box import Box, box_around_ligand
from pipeline.config import ConfigError, validate_config
from pipeline.docking import POSE_COLUMNS, Docker, DockingSettings, score_chunk
from pipeline.library import CHUNK_COLUMNS, NO_3D_POSE, LibraryError, split_library
from pipeline.ligands import LigandInputError, LigandSettings, prepare_chunk, to_pdbqt
from pipeline.receptor import prepare_receptor

SERIES = "unifep_ChEMBL__PLG__CHEMBL3295545"
OUT_OF_BOX = "outside the docking box"


@pytest.fixture(scope="module")
def series(repo):
    return repo / "tests" / "data" / SERIES


@pytest.fixture(scope="module")
def reference(series) -> Chem.Mol:
    """The reference ligand with its hydrogens, in the receptor's frame."""
    return Chem.MolFromMolFile(str(series / "ref_ligand.sdf"), removeHs=False)


@pytest.fixture(scope="module")
def pocket(series, tmp_path_factory) -> tuple:
    """Receptor PDBQT prepared by the pipeline, and a 16 Å box on the reference (small maps: fast)."""
    out = tmp_path_factory.mktemp("plg")
    box = Box(box_around_ligand(series / "ref_ligand.sdf", 8.0).center, (16.0, 16.0, 16.0))
    # only the PDBQT is scored against: the OpenMM template check of the MD-ready PDB would cost seconds
    prepare_receptor(
        series / "protein.pdb.gz", out / "receptor.pdb", out / "receptor.pdbqt", box=box, check_openmm=False
    )
    return out / "receptor.pdbqt", box


@pytest.fixture(scope="module")
def independent(pocket, reference) -> dict:
    """What Vina itself says, outside the pipeline: the reference's score and a docked pose."""
    receptor, box = pocket
    docker = Docker(receptor, box, DockingSettings(exhaustiveness=1, n_poses=1, seed=7))
    docker.vina.set_ligand_from_string(to_pdbqt(reference))
    reference_terms = docker.vina.score()
    poses, energies = docker.dock("docked", to_pdbqt(reference))
    return dict(reference_terms=reference_terms, docked_pose=poses[0], docked_energies=energies[0])


def _moved(mol: Chem.Mol, shift: tuple[float, float, float]) -> Chem.Mol:
    moved = Chem.Mol(mol)
    conf = moved.GetConformer()
    for i in range(moved.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, Point3D(p.x + shift[0], p.y + shift[1], p.z + shift[2]))
    return moved


def _flat(mol: Chem.Mol) -> Chem.Mol:
    flat = Chem.RemoveHs(mol)
    AllChem.Compute2DCoords(flat)
    return flat


@pytest.fixture(scope="module")
def screen(pocket, reference, independent, tmp_path_factory) -> dict:
    """An SD library of poses through split, preparation and scoring, as the workflow runs them."""
    receptor, box = pocket
    tmp = tmp_path_factory.mktemp("score_only")
    library = tmp / "poses.sdf"
    records = {
        "ref": reference,
        "ref_heavy": Chem.RemoveHs(reference),  # a crystal pose without hydrogens
        "redocked": independent["docked_pose"],
        "away": _moved(reference, (50.0, 0.0, 0.0)),
        "flat": _flat(reference),
    }
    with Chem.SDWriter(str(library)) as writer:
        for name, mol in records.items():
            mol = Chem.Mol(mol)
            mol.SetProp("_Name", name)
            writer.write(mol)
    split = split_library(library, tmp / "chunks", tmp / "input.csv", chunk_size=10, keep_poses=True)
    chunk = tmp / "chunks" / "chunk_00000.parquet"
    prepared = prepare_chunk(
        chunk, tmp / "lig.sdf", tmp / "lig.parquet", tmp / "lig.csv", LigandSettings(keep_poses=True)
    )
    scored = score_chunk(
        tmp / "lig.parquet",
        receptor,
        box,
        DockingSettings(time_limit=60),
        tmp / "docked.sdf",
        tmp / "docked.parquet",
        tmp / "docked.csv",
    )
    failures = pd.concat(pd.read_csv(tmp / f"{name}.csv") for name in ("input", "lig", "docked"))
    return dict(
        records=records,
        split=split,
        chunk=pd.read_parquet(chunk),
        prepared=prepared,
        ligand_sdf={m.GetProp("_Name"): m for m in Chem.SDMolSupplier(str(tmp / "lig.sdf"), removeHs=False)},
        scored=scored,
        table=pd.read_parquet(tmp / "docked.parquet").set_index("id"),
        poses={m.GetProp("_Name"): m for m in Chem.SDMolSupplier(str(tmp / "docked.sdf"), removeHs=False)},
        failures={row.id: (row.stage, row.reason) for row in failures.itertuples()},
    )


def _same_heavy_atoms(mol: Chem.Mol, given: Chem.Mol, tol: float = 0.002) -> bool:
    """Whether two molecules have their heavy atoms at the same places (to ``tol`` Å; PDBQT keeps 3 decimals).

    Atoms are matched by element and position, since meeko's rebuilt poses number them differently.
    """
    a, b = Chem.RemoveHs(mol), Chem.RemoveHs(given)
    if sorted(x.GetSymbol() for x in a.GetAtoms()) != sorted(x.GetSymbol() for x in b.GetAtoms()):
        return False
    pa, pb = a.GetConformer().GetPositions(), b.GetConformer().GetPositions()
    for atom in a.GetAtoms():
        same = [x.GetIdx() for x in b.GetAtoms() if x.GetSymbol() == atom.GetSymbol()]
        if np.linalg.norm(pb[same] - pa[atom.GetIdx()], axis=1).min() > tol:
            return False
    return True


def test_rescored_pose_has_vinas_own_score(screen, independent):
    """The reference pose scores what Vina.score() gives it, every term mapped like a docked pose's."""
    terms = independent[
        "reference_terms"
    ]  # total, lig inter, flex inter, other inter, flex intra, lig intra, tors, best
    row = screen["table"].loc["ref"]
    assert row["pose"] == 1
    assert row["docking_score"] == pytest.approx(terms[0], abs=0.01)
    assert row["inter"] == pytest.approx(terms[1] + terms[2] + terms[3], abs=0.01)
    assert row["intra"] == pytest.approx(terms[4] + terms[5], abs=0.01)
    assert row["torsional"] == pytest.approx(terms[6], abs=0.01)
    assert row["intra_best_pose"] == pytest.approx(terms[7], abs=0.01)


def test_rescoring_a_docked_pose_gives_its_docking_score(screen, independent):
    """A pose docked by Vina, written to SDF and rescored, keeps its docking score and its decomposition."""
    docked = independent["docked_energies"]  # total, inter, intra, torsional, intra of the best pose
    row = screen["table"].loc["redocked"]
    assert row["docking_score"] == pytest.approx(docked[0], abs=0.05)
    assert [row["inter"], row["intra"], row["torsional"], row["intra_best_pose"]] == pytest.approx(
        list(docked[1:]), abs=0.05
    )


def test_poses_are_kept_where_they_were(screen):
    """No search, no re-embedding: prepared and scored poses have the input heavy atoms where they were."""
    for name in ("ref", "ref_heavy", "redocked"):
        given = screen["records"][name]
        assert _same_heavy_atoms(screen["ligand_sdf"][name], given)
        assert _same_heavy_atoms(screen["poses"][name], given)
    # the pose without hydrogens gets them (at the pose), and scores like the one that had them
    pose = screen["poses"]["ref_heavy"]
    assert pose.GetNumAtoms() == screen["poses"]["ref"].GetNumAtoms()
    conf = pose.GetConformer()
    for atom in pose.GetAtoms():
        if atom.GetAtomicNum() == 1:
            parent = atom.GetNeighbors()[0].GetIdx()
            assert conf.GetAtomPosition(atom.GetIdx()).Distance(conf.GetAtomPosition(parent)) < 1.2
    table = screen["table"]
    assert table.loc["ref_heavy", "docking_score"] == pytest.approx(table.loc["ref", "docking_score"], abs=0.3)


def test_written_pose_looks_like_a_docked_one(screen):
    """Same table columns and SD properties as a docked pose's, one pose per compound."""
    assert list(screen["table"].reset_index().columns) == POSE_COLUMNS
    assert sorted(screen["table"].index) == ["redocked", "ref", "ref_heavy"]
    for name, pose in screen["poses"].items():
        assert pose.GetProp("pose") == "1"
        assert float(pose.GetProp("docking_score")) == pytest.approx(screen["table"].loc[name, "docking_score"])
        assert pose.HasProp("inter") and pose.HasProp("intra")


def test_pose_outside_the_box_fails_and_the_others_are_scored(screen):
    assert screen["scored"] == (3, 1)
    stage, reason = screen["failures"]["away"]
    assert stage == "dock" and OUT_OF_BOX in reason
    assert "away" not in screen["poses"]


def test_record_without_3d_coordinates_fails_at_input(screen):
    assert screen["split"].accepted == 4 and screen["split"].failed == 1
    stage, reason = screen["failures"]["flat"]
    assert stage == "input" and NO_3D_POSE in reason and "no 3D coordinates" in reason
    assert list(screen["chunk"].columns) == [*CHUNK_COLUMNS, "molblock"]
    assert set(screen["failures"]) == {"flat", "away"}  # every record ends in exactly one table


def test_flat_3d_block_and_unreadable_pose_fail_in_preparation(tmp_path):
    """A block tagged 3D with every z = 0 has no pose either; a chunk without poses is refused whole."""
    flat = _flat(Chem.MolFromSmiles("c1ccccc1CCO"))
    block = Chem.MolToMolBlock(flat).replace("2D", "3D")
    chunk = tmp_path / "chunk_00000.parquet"
    pd.DataFrame(
        dict(id=["flat3d"], input_id=["flat3d"], smiles=["OCCc1ccccc1"], line=[1], molblock=[block])
    ).to_parquet(chunk)
    out = (tmp_path / "l.sdf", tmp_path / "l.parquet", tmp_path / "l.csv")
    assert prepare_chunk(chunk, *out, LigandSettings(keep_poses=True)) == (0, 1)
    reason = pd.read_csv(out[2])["reason"].iloc[0]
    assert "no 3D coordinates" in reason
    pd.read_parquet(chunk).drop(columns="molblock").to_parquet(chunk)
    with pytest.raises(LigandInputError, match="no molblock column"):
        prepare_chunk(chunk, *out, LigandSettings(keep_poses=True))


def test_other_modes_split_as_before(tmp_path, reference):
    """Chunks grow a molblock column only when poses are kept; poses need an SD library."""
    library = tmp_path / "lib.sdf"
    with Chem.SDWriter(str(library)) as writer:
        writer.write(reference)
    split_library(library, tmp_path / "chunks", tmp_path / "f.csv")
    assert list(pd.read_parquet(tmp_path / "chunks" / "chunk_00000.parquet").columns) == CHUNK_COLUMNS
    smi = tmp_path / "lib.smi"
    smi.write_text("CCO ethanol\n")
    with pytest.raises(LibraryError, match="lib.smi"):
        split_library(smi, tmp_path / "c2", tmp_path / "f2.csv", keep_poses=True)


MINIMAL = {"run": "t", "receptor": {"dockstring": "ACHE"}, "box": {}, "docking": {"mode": "score_only"}}


def test_config_refuses_score_only_without_an_sd_library():
    with pytest.raises(ConfigError) as info:
        validate_config({**MINIMAL, "library": {"path": "library.smi"}})
    message = str(info.value)
    assert "docking.mode: score_only" in message and "library.smi" in message
    with pytest.raises(ConfigError, match="poses.csv"):
        validate_config({**MINIMAL, "library": {"path": "poses.csv"}})
    assert validate_config({**MINIMAL, "library": {"path": "poses.sdf.gz"}})["docking"]["mode"] == "score_only"
    assert validate_config({**MINIMAL, "library": {"path": "poses.txt", "format": "sdf"}})


@pytest.mark.slow
def test_workflow_rescores_an_sd_library_end_to_end(series, reference, tmp_path):
    """snakemake with docking.mode score_only: poses scored as given, then featurized, refined, ranked, reported."""
    from workflow_runs import run_snakemake

    library = tmp_path / "poses.sdf"
    with Chem.SDWriter(str(library)) as writer:
        for name, mol in [
            ("ref", reference),
            ("ref_heavy", Chem.RemoveHs(reference)),
            ("away", _moved(reference, (50.0, 0.0, 0.0))),
            ("flat", _flat(reference)),
        ]:
            mol = Chem.Mol(mol)
            mol.SetProp("_Name", name)
            writer.write(mol)
    center = box_around_ligand(series / "ref_ligand.sdf", 8.0).center
    config = {
        "run": "rescore",
        "seed": 42,
        # one chunk: a chunk whose every pose failed leaves an empty docked SDF, which featurize cannot read
        "library": {"path": str(library), "chunk_size": 4},
        "receptor": {"path": str(series / "protein.pdb.gz")},
        "box": {"center": [float(v) for v in center], "size": [16, 16, 16]},
        "docking": {"mode": "score_only"},
        "dask": {"n_workers": 1},
        "refine": {"top_n": 1, "length_ps": 0.5, "frame_interval_ps": 0.25, "minimize_iterations": 50},
    }
    result = run_snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results" / "rescore"
    ranking = pd.read_csv(out / "ranking.csv", dtype={"id": str}).set_index("id")
    failures = pd.read_csv(out / "failures.csv", dtype=str, keep_default_na=False).set_index("id")
    assert set(ranking.index) == {"ref", "ref_heavy"} and set(failures.index) == {"away", "flat"}
    assert failures.loc["away", "stage"] == "dock" and OUT_OF_BOX in failures.loc["away", "reason"]
    assert failures.loc["flat", "stage"] == "input" and "no 3D coordinates" in failures.loc["flat", "reason"]
    assert (ranking["n_poses"] == 1).all()
    # the ranked score is the input pose's: the chunk's pose table, as Vina scored it
    poses = pd.concat(pd.read_parquet(p) for p in sorted((out / "docked").glob("chunk_*.parquet"))).set_index("id")
    assert ranking.loc["ref", "docking_score"] == pytest.approx(poses.loc["ref", "docking_score"], abs=1e-3)
    assert ranking["md_rmsd_final"].notna().sum() == 1 and {"n_HBDonor", "interactions"} <= set(ranking.columns)
    hits = list(Chem.SDMolSupplier(str(out / "top_hits.sdf"), removeHs=False))
    assert {m.GetProp("_Name") for m in hits} == {"ref", "ref_heavy"}
    assert (out / "report.html").is_file()
