"""MD refinement (OpenMM, real CPU platform): selection, System assembly, protocol, job outputs.

The acceptance tests refine the 1iep crystal complex (imatinib in Abl) with the
default protocol, next to the same ligand displaced 5 A out of its site and
rotated 180 degrees, and two poses that must fail (a ligand MMFF cannot type, a
ligand atom placed on a protein atom) - all in one job, so the failures are also
shown not to stop the batch.

The OpenFF tests (``refine.forcefield: openff``: Sage with NAGL charges, and a short refine
run on the CPU platform) need the ``openff`` extra; without it they skip, or fail when
``VSCREEN_REQUIRE_OPENFF=1`` (as ``.ci/run`` sets it).
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys

import numpy as np
import openmm
import pandas as pd
import pytest
from openmm import app, unit
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Geometry import Point3D
from scipy.spatial import cKDTree

from pipeline.config import settings_from_mapping
from pipeline.io import read_failures
from pipeline.receptor import prepare_receptor
from pipeline.refine import (
    REFINE_COLUMNS,
    LigandParameterizationError,
    MMFFLigandForceField,
    RefineSettings,
    SimulationError,
    batch,
    build_complex,
    load_poses,
    load_receptor,
    read_frames,
    refine_batch,
    select_platform,
    select_poses,
)
from pipeline.refine.analysis import InteractionEnergy, ligand_rmsd, symmetry_matches
from pipeline.refine.ligand import LigandParameterizationError, obc2_parameters
from pipeline.refine.protocol import Attempt, _attempt_system, _checked_state, attempt_plan, pose_seed, retry_seed
from pipeline.refine.system import RESTRAINT_GROUP, build_ligand_system, build_receptor_system

CRYSTAL_MAX_RMSD = 2.0  # Angstrom, acceptance
CLEARLY_WORSE = 5.0  # kcal/mol: a misplaced pose must bind at least this much more weakly


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def receptor_pdb(fixtures, tmp_path_factory):
    out = tmp_path_factory.mktemp("refine_receptor")
    prepare_receptor(fixtures / "1iep" / "1iep_receptorH.pdb", out / "receptor.pdb", out / "receptor.pdbqt")
    return out / "receptor.pdb"


@pytest.fixture(scope="module")
def receptor(receptor_pdb):
    return load_receptor(receptor_pdb)


@pytest.fixture(scope="module")
def crystal(fixtures):
    mol = Chem.MolFromMolFile(str(fixtures / "1iep" / "1iep_ligand.sdf"), removeHs=False)
    mol.SetProp("_Name", "imatinib")
    mol.SetProp("pose", "1")
    mol.SetProp("docking_score", "-12.5")
    return mol


def _with_xyz(mol: Chem.Mol, xyz: np.ndarray, name: str, pose: int) -> Chem.Mol:
    out = Chem.Mol(mol)
    conf = out.GetConformer()
    for i, p in enumerate(xyz):
        conf.SetAtomPosition(i, Point3D(*map(float, p)))
    out.SetProp("_Name", name)
    out.SetProp("pose", str(pose))
    return out


def _heavy_receptor_xyz(receptor_pdb) -> np.ndarray:
    pdb = app.PDBFile(str(receptor_pdb))
    xyz = pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    heavy = [a.index for a in pdb.topology.atoms() if a.element.symbol != "H"]
    return np.asarray(xyz)[heavy]


def displaced_out_of_pocket(mol: Chem.Mol, receptor_pdb, distance: float = 5.0) -> Chem.Mol:
    """The ligand translated ``distance`` A along the direction that buries it least.

    Of 400 evenly spread directions, the one minimizing the number of receptor heavy
    atoms within 8 A of the ligand's heavy atoms: "out of the pocket", towards solvent.
    """
    tree = cKDTree(_heavy_receptor_xyz(receptor_pdb))
    xyz = mol.GetConformer().GetPositions()
    heavy = xyz[[a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]]
    k = np.arange(400) + 0.5
    phi, theta = np.arccos(1 - 2 * k / 400), np.pi * (1 + 5**0.5) * k
    directions = np.c_[np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)]
    burial = [sum(len(n) for n in tree.query_ball_point(heavy + distance * d, 8.0)) for d in directions]
    return _with_xyz(mol, xyz + distance * directions[int(np.argmin(burial))], mol.GetProp("_Name"), 2)


def rotated_180(mol: Chem.Mol) -> Chem.Mol:
    """The ligand turned 180 degrees about its centroid, around an axis across its length (ends swapped)."""
    xyz = mol.GetConformer().GetPositions()
    heavy = xyz[[a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]]
    center = heavy.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((heavy - center).T))
    axis = vectors[:, 1]  # middle principal axis: perpendicular to the long one
    rotation = 2 * np.outer(axis, axis) - np.eye(3)
    return _with_xyz(mol, (xyz - center) @ rotation.T + center, mol.GetProp("_Name"), 3)


def untypable_ligand(crystal: Chem.Mol) -> Chem.Mol:
    """Phenylboronic acid placed at imatinib's centroid: MMFF94 has no boron type."""
    mol = Chem.AddHs(Chem.MolFromSmiles("OB(O)c1ccccc1"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    shift = crystal.GetConformer().GetPositions().mean(axis=0) - mol.GetConformer().GetPositions().mean(axis=0)
    mol = _with_xyz(mol, mol.GetConformer().GetPositions() + shift, "boronic", 1)
    mol.SetProp("docking_score", "-6.0")
    return mol


def overlapping_ligand(crystal: Chem.Mol, receptor_pdb) -> Chem.Mol:
    """Imatinib with one heavy atom put exactly on the nearest receptor heavy atom (infinite repulsion)."""
    receptor_xyz = _heavy_receptor_xyz(receptor_pdb)
    xyz = crystal.GetConformer().GetPositions()
    distance, nearest = cKDTree(receptor_xyz).query(xyz[0])
    xyz[0] = receptor_xyz[nearest]
    return _with_xyz(crystal, xyz, "clash", 1)


@pytest.fixture(scope="module")
def job(crystal, receptor_pdb, tmp_path_factory):
    """One job with the default protocol: 2 failing poses interleaved with 3 that must refine."""
    out = tmp_path_factory.mktemp("refine_job")
    poses = [
        untypable_ligand(crystal),
        crystal,
        overlapping_ligand(crystal, receptor_pdb),
        displaced_out_of_pocket(crystal, receptor_pdb),
        rotated_180(crystal),
    ]
    paths = dict(
        out_sdf=out / "batch_0.sdf",
        out_table=out / "batch_0.parquet",
        out_frames_dir=out / "frames",
        failures_csv=out / "batch_0.failures.csv",
    )
    done, failed = refine_batch(receptor_pdb, poses, RefineSettings(), **paths)
    table = pd.read_parquet(paths["out_table"])
    print(table.drop(columns=["frames"]).to_string())
    return dict(done=done, failed=failed, raw_table=table, table=table.set_index("pose"), poses=poses, **paths)


# --------------------------------------------------------------------------- selection


def _pose_table() -> pd.DataFrame:
    rows = [
        ("b", 1, -9.0),
        ("b", 2, -8.0),
        ("a", 1, -9.0),
        ("a", 2, -9.5),
        ("c", 1, -7.0),
        ("c", 2, -7.5),
        ("d", 1, float("nan")),
        ("e", 3, -5.0),
        ("e", 1, -6.0),
        ("e", 2, -6.0),
    ]
    return pd.DataFrame(rows, columns=["id", "pose", "docking_score"])


def test_select_poses_ranks_compounds_by_best_score_ties_by_id():
    chosen = select_poses(_pose_table(), top_fraction=None, top_n=None, poses_per_compound=1)
    assert list(zip(chosen["id"], chosen["pose"])) == [("a", 2), ("b", 1), ("c", 2), ("e", 1)]
    assert list(chosen["compound_rank"]) == [1, 2, 3, 4]
    shuffled = select_poses(_pose_table().sample(frac=1.0, random_state=3), None, None, 1)
    pd.testing.assert_frame_equal(chosen, shuffled)


def test_select_poses_limits_and_poses_per_compound():
    table = _pose_table()
    two = select_poses(table, top_fraction=None, top_n=2, poses_per_compound=2)
    assert list(zip(two["id"], two["pose"])) == [("a", 2), ("a", 1), ("b", 1), ("b", 2)]
    half = select_poses(table, top_fraction=0.5, top_n=None, poses_per_compound=1)
    assert list(half["id"]) == ["a", "b"]  # ceil(0.5 * 4 scored compounds)
    stricter = select_poses(table, top_fraction=1.0, top_n=1, poses_per_compound=9)
    assert list(stricter["pose"]) == [2, 1]
    ties = select_poses(table[table["id"] == "e"], None, None, 2)
    assert list(ties["pose"]) == [1, 2]  # equal scores: lower pose number first
    with pytest.raises(ValueError, match="top_fraction"):
        select_poses(table, top_fraction=0.0, top_n=None, poses_per_compound=1)


def _scores() -> pd.DataFrame:
    """Scorer values of the docked poses of :func:`_pose_table` (higher = better); b pose 2, d and e unscored."""
    rows = [
        ("a", 1, 0.50, 0.05),
        ("a", 2, 0.40, 0.05),
        ("b", 1, 0.30, 0.40),
        ("c", 1, 0.60, 0.01),
        ("c", 2, 0.20, 0.02),
        ("a", 1, 0.99, 0.00),  # a refined complex: not read by the selection
    ]
    table = pd.DataFrame(rows, columns=["id", "pose", "gnn_score", "gnn_spread"])
    table["source"] = ["docked"] * 5 + ["refined"]
    return table


def test_select_poses_by_score_and_by_ucb():
    """score: highest gnn_score (c 0.60, a 0.50, b 0.30); ucb with k = 1: score + spread (b 0.70, c 0.61,
    a 0.55); docking: best docking score (a, b, c); unscored compounds (e) after the scored ones."""
    table, scores = _pose_table(), _scores()
    by_docking = select_poses(table, None, None, 1, select_by="docking", scores=scores)
    assert list(by_docking["id"]) == ["a", "b", "c", "e"]
    by_score = select_poses(table, None, None, 1, select_by="score", scores=scores)
    assert list(zip(by_score["id"], by_score["pose"])) == [("c", 1), ("a", 1), ("b", 1), ("e", 1)]
    by_ucb = select_poses(table, None, 2, 1, select_by="ucb", scores=scores, ucb_k=1.0)
    assert list(by_ucb["id"]) == ["b", "c"] and list(by_ucb["compound_rank"]) == [1, 2]
    assert list(by_ucb["docking_rank"]) == [2, 3]  # a is the best docked compound
    assert by_ucb["ucb"].tolist() == pytest.approx([0.70, 0.61]) and by_ucb["gnn_spread"].tolist() == [0.40, 0.01]
    assert list(select_poses(table, None, 2, 1, select_by="ucb", scores=scores, ucb_k=0.0)["id"]) == ["c", "a"]
    # a compound's poses by the same value; an unscored pose after its scored ones
    two = select_poses(table, None, 2, 2, select_by="score", scores=scores)
    assert list(zip(two["id"], two["pose"])) == [("c", 1), ("c", 2), ("a", 1), ("a", 2)]
    b_poses = select_poses(table[table["id"] == "b"], None, None, 2, select_by="score", scores=scores)
    assert list(b_poses["pose"]) == [1, 2] and np.isnan(b_poses["gnn_score"].iloc[1])
    shuffled = select_poses(table.sample(frac=1.0, random_state=5), None, 2, 1, "ucb", scores.sample(frac=1.0))
    pd.testing.assert_frame_equal(by_ucb, shuffled)
    with pytest.raises(ValueError, match="needs the scorer"):
        select_poses(table, None, None, 1, select_by="ucb")
    with pytest.raises(ValueError, match="select_by"):
        select_poses(table, None, None, 1, select_by="vina")


def test_select_command_reads_the_docked_scores_and_records_the_rule(tmp_path):
    """``vscreen select`` with refine.select_by: ucb reads scores_docked.parquet and writes the rule's columns."""
    import yaml

    from pipeline.cli import main
    from pipeline.layout import RunLayout, write_manifest

    layout = RunLayout(tmp_path / "run")
    layout.docked_dir.mkdir(parents=True)
    write_manifest(layout.chunks_dir, "chunks", ["chunk_00000"])
    _pose_table().to_parquet(layout.docked_table("chunk_00000"))
    _scores().to_parquet(layout.docked_scores)
    config = {
        "run": "t",
        "library": {"path": "x.smi"},
        "receptor": {"path": "r.pdb"},
        "box": {"center": [0, 0, 0], "size": [10, 10, 10]},
        "refine": {"select_by": "ucb", "ucb_k": 1.0, "top_n": 2, "batch_size": 1},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["select", "--run-dir", str(layout.root), "--out-dir", str(layout.batches_dir),
                 "--config", str(tmp_path / "config.yaml")]) == 0  # fmt: skip
    chosen = pd.concat([pd.read_parquet(layout.batch_table(b)) for b in layout.batches()], ignore_index=True)
    assert list(chosen["id"]) == ["b", "c"] and set(chosen["select_by"]) == {"ucb"}
    assert set(chosen["chunk"]) == {"chunk_00000"} and chosen["ucb"].tolist() == pytest.approx([0.70, 0.61])


def test_batch_keeps_order_and_sizes():
    chosen = select_poses(_pose_table(), None, None, 2)
    parts = batch(chosen, 3)
    assert [len(p) for p in parts] == [3, 3, 2]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), chosen)
    with pytest.raises(ValueError):
        batch(chosen, 0)


def test_load_poses_reads_selected_poses_and_reports_missing(tmp_path, crystal):
    sdf = tmp_path / "chunk_00000.sdf"
    writer = Chem.SDWriter(str(sdf))
    for pose in (1, 2):
        writer.write(_with_xyz(crystal, crystal.GetConformer().GetPositions(), "imatinib", pose))
    writer.close()
    selected = pd.DataFrame(dict(id=["imatinib", "imatinib", "ghost"], pose=[2, 1, 1]))
    poses, failures = load_poses([sdf], selected)
    assert [int(m.GetProp("pose")) for m in poses] == [2, 1]
    assert poses[0].GetNumAtoms() == crystal.GetNumAtoms()  # hydrogens kept
    assert failures == [dict(id="ghost", stage="refine", reason="pose 1: not found or unreadable in the docked SDFs")]


# --------------------------------------------------------------------------- settings, platform


def test_settings_defaults_and_validation():
    s = RefineSettings()
    assert (s.forcefield, s.solvent, s.pocket_cutoff, s.hmr, s.step_fs) == ("mmff", "implicit", 10.0, True, 4.0)
    assert RefineSettings(hmr=False).step_fs == 2.0
    assert s.n_frames == round(s.length_ps / s.frame_interval_ps)
    with pytest.raises(ValueError, match="refine.platform"):
        RefineSettings(platform="Metal")
    with pytest.raises(ValueError, match="unknown config key 'refine.lenght_ps'"):
        settings_from_mapping(RefineSettings, dict(lenght_ps=3), "refine", strict=True)
    assert pose_seed(42, "a", 1) == pose_seed(42, "a", 1) != pose_seed(42, "a", 2)
    assert pose_seed(42, "a", 1) > 0
    assert (s.warmup_ps, s.warmup_timestep_fs, s.retry_timestep_fs, s.energy_rise_per_atom_kj) == (0.2, 2.0, 2.0, 20.0)
    for bad in (dict(warmup_ps=-1.0), dict(warmup_timestep_fs=0.0), dict(retry_timestep_fs=0.0)):
        with pytest.raises(ValueError, match="refine."):
            RefineSettings(**bad)


def test_attempt_plan_is_the_protocol_then_one_retry_at_2_fs_without_hmr():
    first, retry = attempt_plan(RefineSettings(), 7)
    assert (first.number, first.step_fs, first.hmr, first.seed) == (1, 4.0, True, 7)
    assert (retry.number, retry.step_fs, retry.warmup_step_fs, retry.hmr) == (2, 2.0, 2.0, False)
    assert retry.seed == retry_seed(7) != 7 and retry.seed > 0  # a new trial even when the steps match
    assert attempt_plan(RefineSettings(retry_timestep_fs=None), 7) == [first]
    assert attempt_plan(RefineSettings(retry_timestep_fs=1.0), 7)[1].warmup_step_fs == 1.0


def test_platform_auto_falls_back_to_an_usable_platform():
    choice = select_platform("auto")
    assert choice.name in ("CUDA", "OpenCL", "CPU", "Reference")
    assert select_platform("Reference").name == "Reference"


def test_blown_up_state_raises_simulation_error():
    system = openmm.System()
    for _ in range(2):
        system.addParticle(1.0)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, 0.1, 1e12)
    system.addForce(bond)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(SimulationError, match="exceeds"):
        _checked_state(context, 1e6, "at frame 3")
    context.setPositions(np.array([[0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]]))
    with pytest.raises(SimulationError, match="NaN"):
        _checked_state(context, 1e6, "at frame 3")
    # 0.5 * 1e12 * 1e-4 = 5e7 kJ/mol at 0.11 nm: far below an absurd absolute limit, but a rise
    context.setPositions(np.array([[0.0, 0.0, 0.0], [0.11, 0.0, 0.0]]))
    with pytest.raises(SimulationError, match="rose .* above the minimized"):
        _checked_state(context, 1e12, "at frame 3", ceiling=(0.0, 100.0))
    assert _checked_state(context, 1e12, "at frame 3", ceiling=(0.0, 1e9))[1] == pytest.approx(5e7)


# --------------------------------------------------------------------------- System assembly


def test_receptor_gb_parameters_are_those_of_obc2_xml(receptor):
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    expected = np.asarray(GBSAOBC2Force.getStandardParameters(receptor.topology))
    np.testing.assert_allclose(receptor.table.gb, expected, rtol=1e-6)


def test_ligand_gb_parameters_follow_openmm_rules(crystal):
    radius, scale = obc2_parameters(crystal)
    for atom in crystal.GetAtoms():
        i, symbol = atom.GetIdx(), atom.GetSymbol()
        if symbol == "H":
            on_n = atom.GetNeighbors()[0].GetSymbol() == "N"
            assert radius[i] == pytest.approx(0.13 if on_n else 0.12) and scale[i] == pytest.approx(0.85)
        else:
            assert (radius[i], scale[i]) == pytest.approx(
                {"C": (0.17, 0.72), "N": (0.155, 0.79), "O": (0.15, 0.85)}[symbol]
            )


def test_native_obc2_force_matches_openmm_custom_gb(receptor, crystal):
    """The native GBSAOBCForce used for speed gives implicit/obc2.xml's CustomGBForce energy."""
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    lig = MMFFLigandForceField().parameterize(crystal)
    cx = build_complex(receptor, lig, crystal, pocket_cutoff=6.0, nonbonded_cutoff=None)
    native = [f for f in cx.minimization_system.getForces() if isinstance(f, openmm.GBSAOBCForce)][0]
    custom = GBSAOBC2Force(solventDielectric=78.5, soluteDielectric=1, SA="ACE")
    for i in range(native.getNumParticles()):
        charge, radius, scale = native.getParticleParameters(i)
        custom.addParticle([charge.value_in_unit(unit.elementary_charge), radius.value_in_unit(unit.nanometer), scale])
    custom.finalize()
    energies = []
    for force in (openmm.XmlSerializer.clone(native), custom):
        system = openmm.System()
        for _ in range(cx.n_atoms):
            system.addParticle(1.0)
        system.addForce(force)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(cx.positions_nm)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    assert energies[0] == pytest.approx(energies[1], rel=1e-6)


def test_complex_system_is_consistent_and_trimmed(receptor, crystal):
    lig = MMFFLigandForceField().parameterize(crystal)
    cx = build_complex(receptor, lig, crystal, hydrogen_mass=3.0, nonbonded_cutoff=10.0)
    n = cx.n_atoms
    assert n == len(cx.receptor_atoms) + crystal.GetNumAtoms() < receptor.n_atoms + crystal.GetNumAtoms()
    for force in cx.system.getForces():
        if hasattr(force, "getNumParticles") and not isinstance(force, openmm.CustomExternalForce):
            assert force.getNumParticles() == n, type(force).__name__
    nonbonded = [f for f in cx.system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    ligand_pairs = set()
    for k in range(nonbonded.getNumExceptions()):
        i, j, qq, _, eps = nonbonded.getExceptionParameters(k)
        if i >= cx.ligand.start and j >= cx.ligand.start:
            assert qq.value_in_unit(unit.elementary_charge**2) == 0 and eps.value_in_unit(unit.kilojoule_per_mole) == 0
            ligand_pairs.add((i, j))
    n_lig = crystal.GetNumAtoms()
    assert len(ligand_pairs) == n_lig * (n_lig - 1) // 2  # every intra-ligand pair left to MMFF
    restraint = [f for f in cx.system.getForces() if f.getForceGroup() == RESTRAINT_GROUP]
    assert len(restraint) == 1 and restraint[0].getNumParticles() == len(cx.restrained) > 0
    masses = [cx.system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)]
    natural = [cx.minimization_system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)]
    assert (
        sum(masses) == pytest.approx(sum(natural))
        and min(masses) > 0.9
        and max(m for m, m0 in zip(masses, natural) if m0 < 1.5) == pytest.approx(3.0)
    )
    assert cx.system.getNumConstraints() > cx.minimization_system.getNumConstraints() == 0


def test_retry_system_has_natural_masses_and_the_warmup_holds_heavy_atoms(receptor, crystal):
    lig = MMFFLigandForceField().parameterize(crystal)
    cx = build_complex(receptor, lig, crystal, pocket_cutoff=6.0, hydrogen_mass=3.0, nonbonded_cutoff=10.0)
    settings = RefineSettings()

    def masses(system):
        return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])

    first = _attempt_system(cx, settings, Attempt(1, 4.0, 2.0, True, 1), cx.positions_nm)
    retry = _attempt_system(cx, settings, Attempt(2, 2.0, 2.0, False, 2), cx.positions_nm)
    np.testing.assert_allclose(masses(first), masses(cx.system))  # HMR as built
    np.testing.assert_allclose(masses(retry), masses(cx.minimization_system))  # natural masses
    assert retry.getNumConstraints() == cx.system.getNumConstraints() > 0
    warmup = [f for f in retry.getForces() if f.getName() == "WarmupRestraint"]
    assert len(warmup) == 1 and warmup[0].getForceGroup() == RESTRAINT_GROUP  # not in reported energies
    held = {warmup[0].getParticleParameters(k)[0] for k in range(warmup[0].getNumParticles())}
    heavy = {a.index for a in cx.topology.atoms() if a.element.symbol != "H"}
    ligand_heavy = {i for i in heavy if i >= cx.ligand.start}
    assert held == heavy and ligand_heavy <= held  # ligand and protein heavy atoms, no hydrogens
    assert len(cx.system.getForces()) + 1 == len(retry.getForces())  # the built System is left as it was
    without = _attempt_system(cx, RefineSettings(warmup_ps=0.0), Attempt(1, 4.0, 2.0, True, 1), cx.positions_nm)
    assert not [f for f in without.getForces() if f.getName() == "WarmupRestraint"]


def test_interaction_energy_vanishes_far_apart(receptor, crystal):
    lig = MMFFLigandForceField().parameterize(crystal)
    cx = build_complex(receptor, lig, crystal, nonbonded_cutoff=10.0)
    evaluate = InteractionEnergy(receptor, lig, cx.receptor_atoms, 1.0, select_platform("CPU"))
    rec_xyz, lig_xyz = cx.positions_nm[: cx.ligand.start], cx.positions_nm[cx.ligand]
    far = evaluate(rec_xyz, lig_xyz + np.array([10.0, 0.0, 0.0]))
    assert abs(far["interaction"]) < 1e-2
    near = evaluate(rec_xyz, lig_xyz)  # unminimized crystal: hydrogens clash a little, so only "finite"
    assert math.isfinite(near["interaction"]) and abs(near["interaction"] - far["interaction"]) > 1.0
    for system in (build_receptor_system(receptor, cx.receptor_atoms), build_ligand_system(lig)):
        assert system.getNumConstraints() == 0


def test_ligand_rmsd_is_symmetry_aware(crystal):
    heavy, matches = symmetry_matches(crystal)
    assert len(matches) > 1  # phenyl and pyridine flips
    xyz = crystal.GetConformer().GetPositions()
    permuted = xyz.copy()
    permuted[heavy] = xyz[heavy][matches[-1]]
    assert ligand_rmsd(permuted[None], xyz, heavy, matches)[0] == pytest.approx(0.0, abs=1e-9)
    shifted = xyz + np.array([1.0, 0.0, 0.0])
    assert ligand_rmsd(shifted[None], xyz, heavy, matches)[0] == pytest.approx(1.0)


def test_unparameterizable_ligand_raises_clear_error(crystal):
    with pytest.raises(LigandParameterizationError, match="MMFF"):
        MMFFLigandForceField().parameterize(untypable_ligand(crystal))


def test_job_level_errors_and_empty_batch(tmp_path, receptor_pdb):
    from pipeline.refine import RefineError

    outputs = [tmp_path / "r.sdf", tmp_path / "r.parquet", tmp_path / "frames", tmp_path / "f.csv"]
    with pytest.raises(RefineError, match="does not exist"):
        refine_batch(tmp_path / "missing.pdb", [Chem.MolFromSmiles("C")], RefineSettings(), *outputs)
    assert refine_batch(receptor_pdb, [], RefineSettings(), *outputs) == (0, 0)
    assert list(pd.read_parquet(outputs[1]).columns) == REFINE_COLUMNS and read_failures(outputs[3]).empty
    missing = [dict(id="ghost", stage="refine", reason="pose 1: not found or unreadable in the docked SDFs")]
    assert refine_batch(receptor_pdb, [], RefineSettings(), *outputs, known_failures=missing) == (0, 1)
    assert read_failures(outputs[3]).to_dict("records") == missing


def test_refinement_is_reproducible_for_a_seed(receptor_pdb, crystal):
    from pipeline.refine.job import RefineContext, refine_pose

    settings = RefineSettings(length_ps=0.25, pocket_cutoff=6.0, free_shell=4.0, minimize_iterations=20)
    ctx = RefineContext.create(receptor_pdb, settings)
    first, second = refine_pose(crystal, ctx)[1], refine_pose(crystal, ctx)[1]
    for key in ("rmsd_final", "interaction_energy", "potential_energy_final"):
        assert first[key] == second[key], key


def test_a_compounds_poses_share_its_ligand_parameters(receptor_pdb, crystal):
    from pipeline.refine.job import RefineContext, ligand_signature

    ctx = RefineContext.create(receptor_pdb, RefineSettings())
    calls = []
    parameterize = ctx.ligand_ff.parameterize
    ctx.ligand_ff.parameterize = lambda mol: calls.append(mol.GetProp("_Name")) or parameterize(mol)
    other_pose = displaced_out_of_pocket(crystal, receptor_pdb)
    assert ligand_signature(other_pose) == ligand_signature(crystal)
    first = ctx.ligand_parameters(crystal)
    assert ctx.ligand_parameters(other_pose) is first  # same compound, other coordinates
    renamed = Chem.Mol(crystal)
    renamed.SetProp("_Name", "imatinib-copy")
    ctx.ligand_parameters(renamed)
    assert calls == ["imatinib", "imatinib-copy"] and ctx.ligand_hits == 1
    for _ in range(2):  # a failure is not kept: the next pose tries again
        with pytest.raises(LigandParameterizationError, match="MMFF"):
            ctx.ligand_parameters(untypable_ligand(crystal))
    assert calls.count("boronic") == 2


def test_side_by_side_workers_give_the_serial_results(receptor_pdb, crystal, tmp_path):
    """refine.workers = 2 refines the poses in two processes; outputs equal the one-worker job's."""
    poses = [
        untypable_ligand(crystal),
        crystal,
        displaced_out_of_pocket(crystal, receptor_pdb),
        rotated_180(crystal),
    ]
    quick = dict(length_ps=0.25, pocket_cutoff=6.0, free_shell=4.0)
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        paths = (out / "r.sdf", out / "r.parquet", out / "frames", out / "f.csv")
        counts = refine_batch(receptor_pdb, poses, RefineSettings(workers=workers, **quick), *paths)
        outputs[workers] = (counts, pd.read_parquet(paths[1]), paths[0].read_text(), read_failures(paths[3]))
    timing = ["wall_seconds", "seconds_minimize", "seconds_dynamics"]
    (c1, t1, sdf1, f1), (c2, t2, sdf2, f2) = outputs[1], outputs[2]
    assert c1 == c2 == (3, 1)
    pd.testing.assert_frame_equal(t1.drop(columns=timing), t2.drop(columns=timing))
    assert sdf1 == sdf2 and f1.equals(f2)
    with pytest.raises(ValueError, match="refine.workers"):
        RefineSettings(workers=0)


# --------------------------------------------------------------------------- the job (acceptance)


def test_job_counts_and_failure_rows(job):
    assert (job["done"], job["failed"]) == (3, 2)
    failures = read_failures(job["failures_csv"]).set_index("id")
    assert set(failures["stage"]) == {"refine"}
    assert "MMFF" in failures.loc["boronic", "reason"] and "B" in failures.loc["boronic", "reason"]
    assert "blew up" in failures.loc["clash", "reason"] or "NaN" in failures.loc["clash", "reason"]


def test_crystal_pose_stays_in_place(job):
    row = job["table"].loc[1]
    assert row["rmsd_final"] < CRYSTAL_MAX_RMSD and row["rmsd_max"] < CRYSTAL_MAX_RMSD + 0.5
    assert row["pocket_backbone_rmsd"] < 1.5
    assert row["interaction_energy"] < -30.0  # kcal/mol


def test_misplaced_poses_bind_clearly_worse(job):
    table = job["table"]
    crystal_energy = table.loc[1, "interaction_energy"]
    for pose in (2, 3):  # displaced 5 A, rotated 180 degrees
        assert table.loc[pose, "interaction_energy"] > crystal_energy + CLEARLY_WORSE, pose
        assert table.loc[pose, "rmsd_mean"] > table.loc[1, "rmsd_mean"] + 1.0, pose  # they stay misplaced


def test_job_outputs_are_complete(job):
    table = job["raw_table"]
    assert list(table.columns) == REFINE_COLUMNS
    settings = RefineSettings()
    assert (table["n_frames"] == settings.n_frames).all()
    assert (
        table[["rmsd_mean", "interaction_energy", "interaction_energy_std", "potential_energy_final"]]
        .notna()
        .all()
        .all()
    )
    assert (table["platform"] == "CPU").all() and (table["solvent"] == "implicit").all()
    refined = list(Chem.SDMolSupplier(str(job["out_sdf"]), removeHs=False))
    assert [(m.GetProp("_Name"), int(m.GetProp("pose"))) for m in refined] == [
        ("imatinib", 1),
        ("imatinib", 2),
        ("imatinib", 3),
    ]
    assert all(m.GetNumAtoms() == job["poses"][1].GetNumAtoms() for m in refined)
    assert float(refined[0].GetProp("rmsd_final")) == pytest.approx(table.loc[0, "rmsd_final"], abs=1e-3)


def test_frames_read_back_for_fingerprints(job):
    frames = read_frames(job["out_frames_dir"] / job["table"].loc[1, "frames"])
    assert len(frames) == RefineSettings().n_frames
    protein, ligand = frames[-1]
    assert ligand.GetNumAtoms() == job["poses"][1].GetNumAtoms()
    names = {
        a.GetPDBResidueInfo().GetResidueName() + str(a.GetPDBResidueInfo().GetResidueNumber())
        for a in protein.GetAtoms()
    }
    assert {"MET318", "THR315", "GLU286", "ASP381"} <= names
    final = Chem.SDMolSupplier(str(job["out_sdf"]), removeHs=False)[0]
    np.testing.assert_allclose(ligand.GetConformer().GetPositions(), final.GetConformer().GetPositions(), atol=1e-3)


def test_frames_give_persistent_hinge_hbond(job):
    """The refined crystal pose keeps imatinib's H-bond to the hinge (Met318) in most frames."""
    interactions = pytest.importorskip("pipeline.interactions")
    frames = read_frames(job["out_frames_dir"] / job["table"].loc[1, "frames"])
    persistence = interactions.trajectory_persistence(frames)
    hinge = max((value for key, value in persistence.items() if key.startswith("MET318")), default=0.0)
    assert hinge >= 0.5, persistence


# --------------------------------------------------------------------------- blow-ups and the retry


def test_blown_up_pose_is_retried_at_2_fs_and_a_second_blowup_is_a_failure_row(
    receptor_pdb, crystal, tmp_path, monkeypatch
):
    """Injected real blow-ups (production steps 50x too long): once -> the retry refines the pose,
    recorded in md_attempts / md_retry_reason; every attempt -> a failure row naming both attempts."""
    from pipeline.refine.job import count_retries

    monkeypatch.setenv("VSCREEN_FAULTS", "refine-md:retry-ok:blowup-once;refine-md:retry-fail:blowup")
    monkeypatch.setenv("VSCREEN_FAULTS_DIR", str(tmp_path / "faults"))
    poses = [_with_xyz(crystal, crystal.GetConformer().GetPositions(), name, 1) for name in ("retry-ok", "retry-fail")]
    settings = RefineSettings(
        platform="CPU",
        pocket_cutoff=6.0,
        free_shell=4.0,
        minimize_iterations=20,
        length_ps=0.25,
        frame_interval_ps=0.25,
        warmup_ps=0.1,
    )
    outputs = [tmp_path / "r.sdf", tmp_path / "r.parquet", tmp_path / "frames", tmp_path / "f.csv"]
    assert refine_batch(receptor_pdb, poses, settings, *outputs) == (1, 1)
    table = pd.read_parquet(outputs[1])
    row = table.iloc[0]
    assert row["id"] == "retry-ok" and row["md_attempts"] == 2 and row["md_timestep_fs"] == 2.0
    assert "NaN" in row["md_retry_reason"] or "blew up" in row["md_retry_reason"], row["md_retry_reason"]
    assert row["rmsd_final"] < CRYSTAL_MAX_RMSD and row["n_frames"] == 1  # the retry's frames are good ones
    assert count_retries(table) == 1
    failure = read_failures(outputs[3]).iloc[0]
    assert (failure["id"], failure["stage"]) == ("retry-fail", "refine")
    assert failure["reason"].startswith("pose 1: ") and "in the retry at 2 fs without HMR" in failure["reason"]
    assert "first attempt:" in failure["reason"] and "For more information" not in failure["reason"]


# --------------------------------------------------------------------------- optional paths


def _require_openff() -> None:
    """Skip without openff-toolkit (the ``openff`` extra); fail instead under ``VSCREEN_REQUIRE_OPENFF=1`` (.ci/run)."""
    from pipeline.refine.ligand import openff_available

    if not openff_available():
        message = "openff-toolkit is not installed (pip install -e '.[openff]')"
        pytest.fail(message) if os.environ.get("VSCREEN_REQUIRE_OPENFF") == "1" else pytest.skip(message)


def _pairs_within_three_bonds(mol: Chem.Mol) -> int:
    """Number of atom pairs 1-2, 1-3 or 1-4 apart: the intra-ligand pairs a SMIRNOFF System excludes or scales."""
    distances = Chem.GetDistanceMatrix(mol)
    return int(np.count_nonzero(np.triu((distances >= 1) & (distances <= 3))))


def test_openff_missing_toolkit_says_how_to_install(monkeypatch, crystal):
    """Without openff-toolkit the error names the pip extra (this test runs with or without it)."""
    from pipeline.refine import OpenFFLigandForceField
    from pipeline.refine import ligand as ligand_module

    for name in ("openff", "openff.toolkit", "openff.toolkit.utils.nagl_wrapper", "openff.toolkit.utils.toolkits"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes the import raise ImportError
    monkeypatch.setattr(ligand_module, "_smirnoff", ligand_module._smirnoff.__wrapped__)  # no cached ForceField
    with pytest.raises(LigandParameterizationError, match=re.escape("pip install -e '.[openff]'")):
        OpenFFLigandForceField().parameterize(crystal)
    assert not ligand_module.openff_available()


def test_openff_ligand_force_field(crystal, monkeypatch):
    """Sage 2.2.1 with NAGL AM1-BCC charges, offline: a complete, deterministic set of ligand parameters."""
    _require_openff()
    from pipeline.refine import OpenFFLigandForceField
    from pipeline.refine import ligand as ligand_module
    from pipeline.refine.ligand import DEFAULT_OPENFF_FORCEFIELD, NAGL_AM1BCC_MODEL, _ambertools_or_openeye

    def no_network(*args, **kwargs):
        raise OSError("network access during parameterization")

    # nothing may be fetched: the force field file and the NAGL model come from installed packages
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ligand_module._smirnoff.cache_clear()
    assert DEFAULT_OPENFF_FORCEFIELD == "openff-2.2.1" == RefineSettings().openff_forcefield
    params = OpenFFLigandForceField().parameterize(crystal)
    n = crystal.GetNumAtoms()
    charges = "am1bcc" if _ambertools_or_openeye() else NAGL_AM1BCC_MODEL.removesuffix(".pt")
    assert params.name == f"openff-2.2.1+{charges}"
    assert params.n_atoms == n and math.isclose(params.net_charge, 1.0, abs_tol=1e-4)  # imatinib's piperazinium
    assert np.all(np.abs(params.charges) < 1.2) and np.ptp(params.charges) > 0.5
    heavy = np.array([a.GetAtomicNum() > 1 for a in crystal.GetAtoms()])
    assert np.all(params.epsilon_kj[heavy] > 0) and np.all(
        (params.sigma_nm[heavy] > 0.2) & (params.sigma_nm[heavy] < 0.45)
    )
    assert len(params.exceptions) == _pairs_within_three_bonds(crystal)
    n_h_bonds = sum(
        1 for b in crystal.GetBonds() if 1 in (b.GetBeginAtom().GetAtomicNum(), b.GetEndAtom().GetAtomicNum())
    )
    assert len(params.h_bonds) == n_h_bonds
    forces = params.make_forces(100)
    bonds = [f for f in forces if isinstance(f, openmm.HarmonicBondForce)]
    # every bond keeps its harmonic term, those to hydrogen too: minimization runs without constraints
    assert len(bonds) == 1 and bonds[0].getNumBonds() == crystal.GetNumBonds()
    assert min(min(bonds[0].getBondParameters(k)[:2]) for k in range(bonds[0].getNumBonds())) == 100
    again = OpenFFLigandForceField().parameterize(crystal)
    np.testing.assert_array_equal(again.charges, params.charges)  # same pose, same charges: reproducible runs
    # Sage 2.3 names the same NAGL model in its own NAGLCharges section: the same charges without help
    if not _ambertools_or_openeye():
        sage23 = OpenFFLigandForceField("openff-2.3.0").parameterize(crystal)
        assert sage23.name == "openff-2.3.0+openff-gnn-am1bcc-1.0.0"
        np.testing.assert_allclose(sage23.charges, params.charges, atol=1e-6)
    gasteiger = OpenFFLigandForceField(charge_method="gasteiger").parameterize(crystal)
    assert gasteiger.name == "openff-2.2.1+gasteiger" and not np.allclose(gasteiger.charges, params.charges)


def test_openff_refine_run_on_cpu(receptor_pdb, crystal, tmp_path):
    """``refine.forcefield: openff`` end to end on the CPU platform: the crystal pose stays and binds."""
    _require_openff()
    settings = RefineSettings(
        forcefield="openff", platform="CPU", length_ps=0.5, frame_interval_ps=0.25, minimize_iterations=50
    )
    outputs = [tmp_path / "r.sdf", tmp_path / "r.parquet", tmp_path / "frames", tmp_path / "f.csv"]
    done, failed = refine_batch(receptor_pdb, [crystal], settings, *outputs)
    assert (done, failed) == (1, 0), read_failures(outputs[3]).to_string()
    row = pd.read_parquet(outputs[1]).iloc[0]
    assert row["ligand_forcefield"].startswith("openff-2.2.1+") and row["platform"] == "CPU"
    assert row["rmsd_final"] < CRYSTAL_MAX_RMSD, row.to_dict()
    assert np.isfinite(row["interaction_energy"]) and row["interaction_energy"] < -40.0, row.to_dict()
    assert np.isfinite(row["potential_energy_final"]) and row["n_frames"] == 2


@pytest.mark.slow
def test_explicit_solvent_tiny_case(receptor_pdb, tmp_path):
    """Explicit TIP3P/PME on a six-residue fragment of the Abl hinge with a phenol next to it."""
    fragment = [
        line
        for line in receptor_pdb.read_text().splitlines()
        if line.startswith("ATOM") and 315 <= int(line[22:26]) <= 320 and line[76:78].strip() != "H"
    ]
    (tmp_path / "fragment.pdb").write_text("\n".join(fragment + ["END", ""]))
    prepare_receptor(tmp_path / "fragment.pdb", tmp_path / "tiny.pdb", tmp_path / "tiny.pdbqt")
    tiny = app.PDBFile(str(tmp_path / "tiny.pdb"))
    center = np.asarray(tiny.getPositions(asNumpy=True).value_in_unit(unit.angstrom)).mean(axis=0)
    phenol = Chem.AddHs(Chem.MolFromSmiles("Oc1ccccc1"))
    AllChem.EmbedMolecule(phenol, randomSeed=7)
    xyz = phenol.GetConformer().GetPositions()
    phenol = _with_xyz(phenol, xyz - xyz.mean(axis=0) + center + np.array([0.0, 0.0, 6.0]), "phenol", 1)
    settings = RefineSettings(
        solvent="explicit", length_ps=0.2, frame_interval_ps=0.1, water_padding=8.0, minimize_iterations=50
    )
    done, failed = refine_batch(
        tmp_path / "tiny.pdb",
        [phenol],
        settings,
        tmp_path / "e.sdf",
        tmp_path / "e.parquet",
        tmp_path / "frames",
        tmp_path / "e.csv",
    )
    assert (done, failed) == (1, 0), read_failures(tmp_path / "e.csv").to_string()
    row = pd.read_parquet(tmp_path / "e.parquet").iloc[0]
    assert row["solvent"] == "explicit" and row["n_atoms_simulated"] > tiny.topology.getNumAtoms() + 500
    assert np.isfinite(row["interaction_energy"]) and row["potential_energy_final"] < 0
