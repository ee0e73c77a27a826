"""Pose validity: real PoseBusters checks on the 1IEP fixture (Abl kinase with imatinib).

The crystal pose of imatinib is a valid pose; the same pose moved 4 Å along x runs into the
protein (a deliberately clashing pose). A one-chunk run folder holds them as docked poses,
with a record RDKit cannot read and a compound below the checked top, and the rank stage
checks and demotes them.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rdkit import Chem
from rdkit.Geometry import Point3D

from pipeline.config import fill_defaults, load_schema
from pipeline.layout import RunLayout, write_manifest
from pipeline.pose_validity import (
    POSE_COLUMNS,
    PoseChecker,
    PoseCheckSettings,
    ReceptorPocket,
    check_ranked_poses,
    last_model,
    read_ranked_poses,
    refined_frame_pdbs,
)
from pipeline.ranking import build_ranking, rank_run

CHUNK = "chunk_00000"
SHIFT = np.array([4.0, 0.0, 0.0])  # Å: from the ATP site into the kinase's N-lobe


@pytest.fixture(scope="module")
def complex_1iep(fixtures) -> tuple[Path, Chem.Mol, Chem.Mol]:
    """Receptor PDB, the crystal pose and the clashing pose of imatinib."""
    receptor = fixtures / "1iep" / "1iep_receptorH.pdb"
    crystal = Chem.MolFromMolFile(str(fixtures / "1iep" / "1iep_ligand.sdf"), removeHs=False)
    clash = Chem.Mol(crystal)
    conformer = clash.GetConformer()
    for i, xyz in enumerate(conformer.GetPositions()):
        conformer.SetAtomPosition(i, Point3D(*(xyz + SHIFT)))
    return receptor, crystal, clash


def _record(mol: Chem.Mol, cid: str, pose: int, score: float) -> str:
    mol = Chem.Mol(mol)
    mol.SetProp("_Name", cid)
    mol.SetProp("pose", str(pose))
    mol.SetProp("docking_score", f"{score:.3f}")
    return (
        Chem.MolToMolBlock(mol)
        + "".join(f">  <{k}>\n{mol.GetProp(k)}\n\n" for k in ("pose", "docking_score"))
        + "$$$$\n"
    )


def _run(root: Path, receptor: Path, poses: dict[str, tuple[Chem.Mol | None, float]]) -> RunLayout:
    """A docked run folder of one chunk: ``poses[id] = (molecule or None for a garbled record, docking score)``."""
    layout = RunLayout(root)
    ids = list(poses)
    layout.chunks_dir.mkdir(parents=True)
    pd.DataFrame({"id": ids, "input_id": ids, "smiles": "C", "line": range(len(ids))}).to_parquet(
        layout.chunk_table(CHUNK)
    )
    write_manifest(layout.chunks_dir, "chunks", [CHUNK], rows=len(ids), accepted=len(ids), failed=0)
    for folder in (layout.ligands_dir, layout.docked_dir, layout.input_failures.parent, layout.receptor_dir):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(receptor, layout.receptor_pdb)
    pd.DataFrame(
        {
            "id": ids,
            "smiles": "C",
            "prepared_smiles": "C",
            "heavy_atoms": 37,
            "formal_charge": 0,
            "rotatable_bonds": 7,
            "pdbqt": "",
        }
    ).to_parquet(layout.ligand_table(CHUNK))
    scores = [score for _, score in poses.values()]
    pd.DataFrame({"id": ids, "pose": 1, "docking_score": scores}).to_parquet(layout.docked_table(CHUNK))
    records = []
    for cid, (mol, score) in poses.items():
        # a record whose counts line promises atoms that are not there: RDKit returns None for it
        records.append(_record(mol, cid, 1, score) if mol is not None else f"{cid}\n  garbled\n\n999 999  0\n$$$$\n")
    layout.docked_sdf(CHUNK).write_text("".join(records))
    empty = pd.DataFrame(columns=["id", "stage", "reason"])
    for path in (layout.ligand_failures(CHUNK), layout.docked_failures(CHUNK), layout.input_failures):
        empty.to_csv(path, index=False)
    return layout


@pytest.fixture(scope="module")
def screen(complex_1iep, tmp_path_factory) -> RunLayout:
    """Best docking score first: a clashing pose, a garbled record, a valid pose, a compound below the top."""
    receptor, crystal, clash = complex_1iep
    poses = {"clash": (clash, -12.0), "garbled": (None, -10.0), "crystal": (crystal, -9.0), "below": (crystal, -8.0)}
    return _run(tmp_path_factory.mktemp("pose_checks") / "run", receptor, poses)


def test_a_clashing_pose_is_invalid_and_a_crystal_pose_valid(complex_1iep):
    receptor, crystal, clash = complex_1iep
    checker = PoseChecker(receptor)
    assert checker.check(crystal).valid is True
    verdict = checker.check(clash)
    assert verdict.valid is False and "minimum_distance_to_protein" in verdict.failed


def test_the_pocket_gives_the_whole_proteins_verdict(complex_1iep):
    """The protein-facing checks of dock_fast, given the 8 Å pocket or the whole receptor: same results."""
    import posebusters
    from posebusters import PoseBusters

    receptor, crystal, clash = complex_1iep
    config = yaml.safe_load((Path(posebusters.__file__).parent / "config" / "dock_fast.yml").read_text())
    config["modules"] = [m for m in config["modules"] if m["function"] in ("intermolecular_distance", "volume_overlap")]
    whole = Chem.MolFromPDBFile(str(receptor), sanitize=False, removeHs=False, proximityBonding=False)
    pocket = ReceptorPocket.from_pdb(receptor)
    for mol in (crystal, clash):
        near = pocket.around(mol.GetConformer().GetPositions())
        assert near.GetNumAtoms() < whole.GetNumAtoms() / 3
        full, cut = (
            PoseBusters(config=copy.deepcopy(config)).bust(mol, mol_cond=protein, full_report=True)
            for protein in (whole, near)
        )
        same = [c for c in full.columns if not c.startswith("most_extreme")]  # atom indices differ in the pocket
        assert "smallest_distance_protein" in same and "volume_overlap_protein" in same
        pd.testing.assert_frame_equal(full[same].reset_index(drop=True), cut[same].reset_index(drop=True))


@pytest.fixture(scope="module")
def ranked(screen):
    """The rank stage on the screen, checking the top 2."""
    return rank_run(screen, pose_checks=PoseCheckSettings(top_n=2))


def test_the_rank_stage_demotes_the_clashing_pose(screen, ranked):
    """Top 2 checked: the clash (invalid) and the garbled record (no verdict) free a place that the
    crystal pose fills (checked, valid); 'below' is not checked. The clash ends last; the others keep
    their order."""
    result = ranked
    ranking = pd.read_csv(screen.ranking, dtype={"id": str}, keep_default_na=False)
    assert ranking["id"].tolist() == ["garbled", "crystal", "below", "clash"] == result.ranking["id"].to_pylist()
    assert ranking["rank"].tolist() == [1, 2, 3, 4]
    columns = ranking.columns.tolist()
    assert columns[columns.index("domain_reason") + 1 :][:4] == POSE_COLUMNS
    rows = ranking.set_index("id")
    assert rows.loc["clash", "pose_valid"] == "False" and rows.loc["clash", "pose_check"] == "checked"
    assert "minimum_distance_to_protein" in rows.loc["clash", "failed_checks"].split("; ")
    assert rows.loc["crystal", "pose_valid"] == "True" and rows.loc["crystal", "failed_checks"] == ""
    assert rows.loc["garbled", "pose_valid"] == "" and rows.loc["garbled", "pose_check"] == "error"
    assert "cannot read" in rows.loc["garbled", "pose_check_reason"]
    assert rows.loc["below", "pose_check"] == "not checked" and rows.loc["below", "pose_valid"] == ""
    # nothing lost: every compound is ranked
    assert len(ranking) == 4 and pd.read_csv(screen.failures).empty


def test_without_demotion_the_order_is_the_scores(screen):
    ranked = build_ranking(screen, pose_checks=PoseCheckSettings(top_n=2, rank_valid_first=False)).ranking.to_pandas()
    assert ranked["id"].tolist() == ["clash", "garbled", "crystal", "below"]
    # without demotion the top 2 are not refilled: the crystal pose is not checked
    assert ranked["pose_check"].tolist() == ["checked", "error", "not checked", "not checked"]
    assert ranked["pose_valid"].tolist()[:1] == [False]


def test_without_pose_checks_there_are_no_pose_columns(screen):
    ranked = build_ranking(screen).ranking
    assert not set(POSE_COLUMNS) & set(ranked.column_names)
    assert ranked["id"].to_pylist() == ["clash", "garbled", "crystal", "below"]


def test_the_funnel_counts_valid_invalid_and_failed_checks(screen, ranked):
    from pipeline.report.funnel import failed_checks, funnel
    from pipeline.report.rundata import RunData, read_ranking

    ranking = read_ranking(screen.ranking, top_n=1)  # the demoted compound is below the top hits
    empty = pd.DataFrame(columns=["id", "stage", "reason"])
    config = fill_defaults({}, load_schema())
    run = RunData(screen.root, config, ranking, empty, empty, None, manifest={"rows": 4, "accepted": 4})
    stages = dict(zip(*funnel(run).to_dict("list").values()))
    assert stages["pose checked (PoseBusters)"] == 2 and stages["pose valid"] == 1
    assert stages["pose invalid, ranked last"] == 1 and stages["fails minimum_distance_to_protein"] == 1
    assert stages["pose not judged"] == 1 and stages["ranked"] == 4
    checks = failed_checks(ranking).set_index("check")
    assert checks.loc["minimum_distance_to_protein", "examples"] == "clash"


def test_settings_from_the_config_and_a_missing_receptor(screen, tmp_path):
    report = fill_defaults({}, load_schema())["report"]
    assert PoseCheckSettings.from_config(report) == PoseCheckSettings(top_n=25, config="dock_fast", time_limit=60)
    assert PoseCheckSettings.from_config(dict(report, check_poses_top_n=3)).top_n == 3
    assert PoseCheckSettings.from_config(dict(report, check_poses=False)) is None
    assert read_ranked_poses(screen, ["crystal", "garbled", "nowhere"]).keys() == {"crystal", "garbled"}
    # without a receptor the top compounds say why they were not judged; the ranking goes on
    bare = check_ranked_poses(RunLayout(tmp_path), ["x", "y"], {}, PoseCheckSettings(top_n=1))
    assert bare["id"].tolist() == ["x"] and bare["pose_check"].tolist() == ["error"]
    assert bare["pose_valid"].isna().all() and "no receptor PDB" in bare["pose_check_reason"].iloc[0]


def test_a_refined_compound_is_checked_on_its_refined_pose(complex_1iep, tmp_path):
    """As in top_hits.sdf: the refined pose md_pose where there is one, the best docked pose otherwise."""
    receptor, crystal, clash = complex_1iep
    layout = _run(tmp_path / "run", receptor, {"refined": (crystal, -9.0), "docked": (crystal, -8.0)})
    write_manifest(layout.batches_dir, "batches", ["batch_00000"])
    layout.refined_dir.mkdir(parents=True)
    metrics = ("rmsd_mean", "rmsd_max", "rmsd_final", "pocket_backbone_rmsd", "interaction_energy")
    refined = pd.DataFrame(
        {"id": ["refined"], "pose": [1], **dict.fromkeys(metrics, 1.0), "interaction_energy_std": 0.1}
    )
    refined.to_parquet(layout.refined_table("batch_00000"))
    refined[["id", "pose"]].to_parquet(layout.batch_table("batch_00000"))
    pd.DataFrame(columns=["id", "stage", "reason"]).to_csv(layout.refined_failures("batch_00000"), index=False)
    layout.refined_sdf("batch_00000").write_text(_record(clash, "refined", 1, -9.0))  # MD "moved" it into the protein
    poses = read_ranked_poses(layout, ["refined", "docked"], {"refined": 1})
    shifted = poses["refined"].GetConformer().GetPositions() - crystal.GetConformer().GetPositions()
    assert np.allclose(shifted, SHIFT, atol=1e-3)
    assert np.allclose(poses["docked"].GetConformer().GetPositions(), crystal.GetConformer().GetPositions(), atol=1e-3)
    ranked = build_ranking(layout, pose_checks=PoseCheckSettings(top_n=2)).ranking.to_pandas()
    assert ranked["id"].tolist() == ["docked", "refined"] and ranked["pose_valid"].tolist() == [True, False]


def test_a_refined_pose_is_checked_against_its_final_md_frame(complex_1iep, tmp_path):
    """MD moves the pocket with the ligand: the refined pose sits in the last frame's pocket, not in receptor.pdb's.

    The refined pose is the crystal pose moved 4 Å (a clash against the static receptor); the
    frames file's last model is the receptor moved by the same 4 Å, so there it is the
    crystal complex again and valid, while its first model (the start) would clash.
    """
    receptor, crystal, clash = complex_1iep
    layout = _run(tmp_path / "run", receptor, {"refined": (crystal, -9.0), "docked": (crystal, -8.0)})
    write_manifest(layout.batches_dir, "batches", ["batch_00000"])
    layout.refined_dir.mkdir(parents=True)
    layout.frames_dir.mkdir(parents=True, exist_ok=True)
    atoms = [line for line in receptor.read_text().splitlines() if line.startswith(("ATOM  ", "HETATM"))]

    def moved(line: str) -> str:
        x, y, z = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
        x, y, z = np.array([x, y, z]) + SHIFT
        return f"{line[:30]}{x:8.3f}{y:8.3f}{z:8.3f}{line[54:]}"

    frames = "MODEL        1\n" + "\n".join(atoms) + "\nENDMDL\nMODEL        2\n"
    frames += "\n".join(moved(line) for line in atoms) + "\nENDMDL\nEND\n"
    (layout.frames_dir / "refined_pose1.pdb").write_text(frames)
    metrics = ("rmsd_mean", "rmsd_max", "rmsd_final", "pocket_backbone_rmsd", "interaction_energy")
    refined = pd.DataFrame(
        {
            "id": ["refined"],
            "pose": [1],
            **dict.fromkeys(metrics, 1.0),
            "interaction_energy_std": 0.1,
            "frames": ["refined_pose1.pdb"],
        }
    )
    refined.to_parquet(layout.refined_table("batch_00000"))
    refined[["id", "pose"]].to_parquet(layout.batch_table("batch_00000"))
    pd.DataFrame(columns=["id", "stage", "reason"]).to_csv(layout.refined_failures("batch_00000"), index=False)
    layout.refined_sdf("batch_00000").write_text(_record(clash, "refined", 1, -9.0))
    assert last_model(frames).splitlines()[0] == moved(atoms[0])
    assert refined_frame_pdbs(layout, {"refined": 1}) == {"refined": layout.frames_dir / "refined_pose1.pdb"}

    ranked = build_ranking(layout, pose_checks=PoseCheckSettings(top_n=2)).ranking.to_pandas()
    assert ranked["id"].tolist() == ["refined", "docked"] and ranked["pose_valid"].tolist() == [True, True]
    assert PoseChecker(receptor).check(clash).valid is False  # the same pose against the static receptor
