"""Receptor preparation against the real engines: PDBFixer/OpenMM, meeko and Vina (no mocks).

Each receptor is prepared once per module (cached fixture) and then checked by
several tests: the PDB builds an amber14/OBC2 System, hydrogens exist, the PDBQT
loads in Vina and grid maps compute, and both files hold the same heavy atoms.
The three slowest receptors (1s63, 1uw6, ACHE: 8-30 s each) are marked ``slow``;
the zinc handling of 1s63 is still covered by default through a cropped zinc site.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.box import Box, dockstring_box, read_vina_config
from pipeline.receptor import (
    ReceptorError,
    check_openmm_system,
    prepare_receptor,
    resolve_receptor_source,
    write_receptor_report,
)

COMPLEXES = Path(__file__).parents[2] / "shared" / "data" / "complexes"

CASES = [
    pytest.param("1iep", id="1iep"),
    pytest.param("1s63", id="1s63", marks=pytest.mark.slow),
    pytest.param("1uw6", id="1uw6", marks=pytest.mark.slow),
    pytest.param("5x72", id="5x72"),
    pytest.param("BACE_1", id="BACE_1"),
    pytest.param("ACHE", id="ACHE", marks=pytest.mark.slow),
    pytest.param("ABL1", id="ABL1"),
]
DOCKSTRING = {"ACHE", "ABL1"}


def _source(name: str) -> str:
    """Receptor file for a complex in shared/data, or the dockstring name; skip if data is absent."""
    if name in DOCKSTRING:
        return name
    path = COMPLEXES / f"{name}_receptorH.pdb"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return str(path)


def _box_center(name: str) -> tuple[float, float, float]:
    """Pocket centre: dockstring conf, the complex's box file, or its ligand centroid."""
    if name in DOCKSTRING:
        return dockstring_box(name).center
    box = COMPLEXES / f"{name}_box.txt"
    if box.is_file():
        return read_vina_config(box).center
    from rdkit import Chem

    sdf = sorted(COMPLEXES.glob(f"{name}_ligand*.sdf"))[0]
    ligand = next(iter(Chem.SDMolSupplier(str(sdf), removeHs=False)))
    return tuple(ligand.GetConformer().GetPositions().mean(axis=0))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Prepare each receptor at most once: returns name -> (report, pdb path, pdbqt path)."""
    cache: dict[str, tuple] = {}
    folder = tmp_path_factory.mktemp("receptors")

    def get(name: str):
        if name not in cache:
            pdb, pdbqt = folder / f"{name}.pdb", folder / f"{name}.pdbqt"
            report = prepare_receptor(_source(name), pdb, pdbqt, check_openmm=False)
            print(f"{name}: prepared in {report.seconds:.1f} s")
            cache[name] = (report, pdb, pdbqt)
        return cache[name]

    return get


def _atom_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]


def _heavy_xyz(path: Path, pdbqt: bool) -> np.ndarray:
    """Sorted heavy-atom coordinates of a PDB or PDBQT file."""

    def is_h(line: str) -> bool:
        return line[77:79].strip() in ("H", "HD") if pdbqt else line[76:78].strip() == "H"

    xyz = [[float(line[30:38]), float(line[38:46]), float(line[46:54])] for line in _atom_lines(path) if not is_h(line)]
    return np.array(sorted(map(tuple, np.round(xyz, 2))))


@pytest.fixture(scope="module")
def amber14_obc2():
    import openmm.app as app

    return app.ForceField("amber14-all.xml", "implicit/obc2.xml")


@pytest.mark.parametrize("name", CASES)
def test_pdb_builds_amber14_system_with_hydrogens(prepared, amber14_obc2, name):
    import openmm.app as app

    report, pdb_path, _ = prepared(name)
    pdb = app.PDBFile(str(pdb_path))
    system = amber14_obc2.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    assert system.getNumParticles() == report.n_atoms == pdb.topology.getNumAtoms()
    n_h = sum(atom.element.symbol == "H" for atom in pdb.topology.atoms())
    assert n_h == report.added_hydrogens and n_h > 0.4 * report.n_atoms
    assert all(line[16] == " " for line in _atom_lines(pdb_path)), "alternate locations must be resolved"
    json.dumps(report.to_dict())


@pytest.mark.parametrize("name", CASES)
def test_pdbqt_loads_in_vina_and_maps_compute(prepared, name):
    from vina import Vina

    _, _, pdbqt = prepared(name)
    vina = Vina(sf_name="vina", cpu=1, verbosity=0)
    vina.set_receptor(str(pdbqt))
    vina.compute_vina_maps(center=list(_box_center(name)), box_size=[10.0, 10.0, 10.0], spacing=0.5)


@pytest.mark.parametrize("name", CASES)
def test_docking_and_md_files_hold_the_same_heavy_atoms(prepared, name):
    report, pdb, pdbqt = prepared(name)
    md, docking = _heavy_xyz(pdb, pdbqt=False), _heavy_xyz(pdbqt, pdbqt=True)
    assert len(docking) == len(md) + len(report.docking_only_atoms) == report.pdbqt_heavy_atoms
    md_set = set(map(tuple, md))
    assert sum(tuple(x) not in md_set for x in docking) == len(report.docking_only_atoms)


def test_1iep_split_residue_is_reported_and_is_not_a_chain_break(prepared):
    report, pdb, _ = prepared("1iep")
    assert any(note.startswith("A:SER 438: records split over input lines 2,") for note in report.input_repairs)
    assert report.chain_breaks == []  # residues 225-498 are all covalently connected
    assert report.n_chains == 1 and report.n_residues == 274


@pytest.mark.parametrize("name, gap", [("BACE_1", ("GLY", 158, "ALA", 168)), ("5x72", ("PRO", 113, "SER", 115))])
def test_chain_break_becomes_two_termini(prepared, name, gap):
    report, pdb, _ = prepared(name)
    last, last_id, first, first_id = gap
    assert f"A:{last} {last_id} / A:{first} {first_id}" in report.chain_breaks
    names = {(line[17:20], int(line[22:26]), line[12:16].strip()) for line in _atom_lines(pdb)}
    assert (last, last_id, "OXT") in names  # carboxylate before the gap
    assert (first, first_id, "H2") in names and (first, first_id, "H3") in names  # ammonium after it


def test_dockstring_targets_are_fragmented_and_handled(prepared):
    report, _, _ = prepared("ABL1")
    assert report.source.endswith("ABL1_target.pdbqt")
    assert len(report.chain_breaks) > 5 and report.n_chains > 1
    assert "blank chain identifier set to A" in report.input_repairs


# ----------------------------------------------------------------------------- zinc (fast, cropped 1s63)


@pytest.fixture(scope="module")
def zinc_site(tmp_path_factory) -> Path:
    """The 1s63 farnesyltransferase zinc site: every residue within 10 A of Zn, plus FPP."""
    source = COMPLEXES / "1s63_receptorH.pdb"
    if not source.is_file():
        pytest.skip(f"{source} not available")
    lines = [line for line in source.read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]
    zinc = next(line for line in lines if line[17:20] == " ZN")
    center = np.array([float(zinc[30:38]), float(zinc[38:46]), float(zinc[46:54])])
    near = {
        line[21:27]
        for line in lines
        if np.linalg.norm(np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]) - center) < 10.0
    } | {line[21:27] for line in lines if line[17:20] == "FPP"}
    path = tmp_path_factory.mktemp("zinc") / "1s63_zinc_site.pdb"
    path.write_text("\n".join(line for line in lines if line[21:27] in near) + "\nEND\n")
    return path


@pytest.fixture(scope="module")
def zinc_prepared(zinc_site, tmp_path_factory):
    """The zinc site prepared with default options: (report, pdb path, pdbqt path)."""
    folder = tmp_path_factory.mktemp("zinc_prepared")
    report = prepare_receptor(zinc_site, folder / "r.pdb", folder / "r.pdbqt")
    return report, folder / "r.pdb", folder / "r.pdbqt"


def test_zinc_is_docking_only_and_its_ligands_are_deprotonated(zinc_prepared):
    from vina import Vina

    report, pdb, pdbqt = zinc_prepared
    assert report.docking_only_atoms == ["B:ZN 1001"]
    assert "B:FPP 3011" in report.removed_heterogens
    write_receptor_report(report, pdb.with_suffix(".json"))
    assert json.loads(pdb.with_suffix(".json").read_text())["docking_only_atoms"] == ["B:ZN 1001"]
    pdb_lines, pdbqt_lines = _atom_lines(pdb), _atom_lines(pdbqt)
    assert not any(line[17:20] == " ZN" for line in pdb_lines)
    assert sum(line[77:79] == "Zn" for line in pdbqt_lines) == 1
    atoms = {(line[17:20], int(line[22:26]), line[12:16].strip()) for line in pdb_lines if line[21] == "B"}
    assert ("CYS", 299, "SG") in atoms and ("CYS", 299, "HG") not in atoms  # thiolate bound to Zn
    assert ("HIS", 362, "HD1") in atoms and ("HIS", 362, "HE2") not in atoms  # NE2 bound to Zn
    vina = Vina(verbosity=0)
    vina.set_receptor(str(pdbqt))
    vina.compute_vina_maps(center=[18.1, 132.1, 5.2], box_size=[10.0, 10.0, 10.0], spacing=0.5)


def test_preparation_is_reproducible(zinc_site, zinc_prepared, tmp_path):
    _, pdb, pdbqt = zinc_prepared
    prepare_receptor(zinc_site, tmp_path / "again.pdb", tmp_path / "again.pdbqt")
    assert (tmp_path / "again.pdb").read_bytes() == pdb.read_bytes()
    assert (tmp_path / "again.pdbqt").read_bytes() == pdbqt.read_bytes()


def test_zinc_kept_for_md_needs_ion_templates(zinc_site, tmp_path):
    report = prepare_receptor(zinc_site, tmp_path / "r.pdb", tmp_path / "r.pdbqt", keep_heterogens=["zn"])
    assert report.docking_only_atoms == []
    assert any(line[17:20] == " ZN" for line in _atom_lines(tmp_path / "r.pdb"))
    check_openmm_system(tmp_path / "r.pdb")  # amber14-all + amber14/tip3p (ions)


def test_relabelled_residue_and_kept_water(zinc_site, tmp_path):
    """Residue names that are state labels (dockstring's LEV, WAM, ZN1) are recognised, not deleted."""
    lines = zinc_site.read_text().splitlines()
    leucine = next(line[21:27] for line in lines if line[17:20] == "LEU")
    lines = [line[:17] + "LEV" + line[20:] if line[21:27] == leucine else line for line in lines]
    lines = [line[:17] + "ZN1" + line[20:] if line[17:20] == " ZN" else line for line in lines]
    lines.insert(-1, "HETATM 9999  OW  WAM W 999      14.937 130.889  -2.323  1.00  0.00           O")
    source = tmp_path / "relabelled.pdb"
    source.write_text("\n".join(lines) + "\n")
    report = prepare_receptor(source, tmp_path / "r.pdb", tmp_path / "r.pdbqt", keep_waters=True)
    assert f"B:LEV {int(leucine[1:5])} replaced by LEU" in report.input_repairs
    assert report.docking_only_atoms == ["B:ZN 1001"]
    water = [line[12:16].strip() for line in _atom_lines(tmp_path / "r.pdb") if line[17:20] == "HOH"]
    assert sorted(water) == ["H1", "H2", "O"]
    assert sum(line[17:20] == "HOH" for line in _atom_lines(tmp_path / "r.pdbqt")) == 3
    check_openmm_system(tmp_path / "r.pdb")


def test_heterogen_without_templates_fails_clearly_and_writes_nothing(zinc_site, tmp_path):
    with pytest.raises(ReceptorError, match="FPP"):
        prepare_receptor(zinc_site, tmp_path / "r.pdb", tmp_path / "r.pdbqt", keep_heterogens=["FPP"])
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- inputs and errors


def test_missing_file_names_the_file(tmp_path):
    missing = tmp_path / "nothere.pdb"
    with pytest.raises(ReceptorError, match="nothere.pdb") as info:
        prepare_receptor(missing, tmp_path / "r.pdb", tmp_path / "r.pdbqt")
    assert "does not exist" in str(info.value)


def test_unknown_dockstring_name_lists_valid_names():
    with pytest.raises(ReceptorError, match="NOT_A_TARGET") as info:
        resolve_receptor_source("NOT_A_TARGET")
    assert "dockstring" in str(info.value) and "ABL1" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unparseable_structure_names_the_file(tmp_path):
    bad = tmp_path / "garbage.pdb"
    bad.write_text("ATOM      1  N   ALA A   1      xx.xxx  1.000  1.000\n")
    with pytest.raises(ReceptorError, match="garbage.pdb"):
        prepare_receptor(bad, tmp_path / "r.pdb", tmp_path / "r.pdbqt")
    empty = tmp_path / "empty.pdb"
    empty.write_text("REMARK nothing here\nEND\n")
    with pytest.raises(ReceptorError, match="empty.pdb"):
        prepare_receptor(empty, tmp_path / "r.pdb", tmp_path / "r.pdbqt")


def test_dockstring_names_are_case_insensitive_and_boxes_parse():
    assert resolve_receptor_source("ache").name == "ACHE_target.pdbqt"
    box = dockstring_box("ache")
    assert box.center == pytest.approx((4.521, 66.834, 65.770)) and box.size == (30.0, 30.0, 30.0)
    with pytest.raises(ReceptorError, match="dockstring target"):
        dockstring_box("NOT_A_TARGET")


def test_read_vina_config_parses_shared_box_file():
    path = COMPLEXES / "1iep_box.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    assert read_vina_config(path) == Box((15.19, 53.903, 16.917), (20.0, 20.0, 20.0))


# ----------------------------------------------------------------------------- untypable residues (cropped 1iep)

BROKEN_RESIDUE = 280  # A:VAL 280, about 15 A from an 8 A box on residue 299 in the 268-300 stretch of 1iep


def _xyz(line: str) -> np.ndarray:
    return np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])


def _with_xyz(line: str, xyz: np.ndarray) -> str:
    return f"{line[:30]}{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{line[54:]}"


@pytest.fixture(scope="module")
def broken_valine(tmp_path_factory):
    """1iep residues 268-300 with VAL 280 broken: returns (backbone-broken .pdb.gz, side-chain-broken .pdb, boxes).

    In the first its CA is pushed 1.3 A out, 2.4 A from N and C: no relaxation around the fixed
    N, CA, C or side-chain rebuild can fix that.  In the second CG1 sits 0.5 A from CB.  Both
    make meeko's bond perception fail.
    """
    import gzip

    source = COMPLEXES / "1iep_receptorH.pdb"
    if not source.is_file():
        pytest.skip(f"{source} not available")
    lines = [
        line
        for line in source.read_text().splitlines()
        if line.startswith("ATOM") and 268 <= int(line[22:26]) <= 300 and line[76:78].strip() != "H"
    ]
    atom = {(int(line[22:26]), line[12:16].strip()): line for line in lines}
    n, ca, c, cb = (_xyz(atom[BROKEN_RESIDUE, name]) for name in ("N", "CA", "C", "CB"))
    outwards = (ca - (n + c) / 2) / np.linalg.norm(ca - (n + c) / 2)
    moved = {"backbone": ("CA", ca + 1.3 * outwards), "side_chain": ("CG1", cb + 0.33 * (ca - cb))}
    folder = tmp_path_factory.mktemp("broken")
    paths = {}
    for kind, (name, xyz) in moved.items():
        text = "\n".join(
            _with_xyz(line, xyz) if (int(line[22:26]), line[12:16].strip()) == (BROKEN_RESIDUE, name) else line
            for line in lines
        )
        paths[kind] = folder / f"{kind}.pdb"
        paths[kind].write_text(text + "\nEND\n")
    paths["backbone_gz"] = folder / "backbone.pdb.gz"
    paths["backbone_gz"].write_bytes(gzip.compress(paths["backbone"].read_bytes()))
    boxes = {
        "far": (tuple(_xyz(atom[299, "CA"])), (8.0, 8.0, 8.0)),
        "near": (tuple(_xyz(atom[BROKEN_RESIDUE, "CA"])), (8.0, 8.0, 8.0)),
    }
    return paths, boxes


def _residue_numbers(path: Path) -> set[int]:
    return {int(line[22:26]) for line in _atom_lines(path)}


def test_untypable_residue_far_from_box_is_removed_and_named(broken_valine, tmp_path, caplog):
    paths, boxes = broken_valine
    pdb, pdbqt = tmp_path / "r.pdb", tmp_path / "r.pdbqt"
    assert resolve_receptor_source(paths["backbone_gz"]) == paths["backbone_gz"]  # gzipped input is read as is
    report = prepare_receptor(paths["backbone_gz"], pdb, pdbqt, box=boxes["far"])
    assert report.removed_untypable == ["A:VAL 280"]
    assert any("A:VAL 280" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert any(note.startswith("A:VAL 280: removed from both outputs") for note in report.input_repairs)
    assert BROKEN_RESIDUE not in _residue_numbers(pdb) and BROKEN_RESIDUE not in _residue_numbers(pdbqt)
    assert "A:GLU 279 / A:GLU 281" in report.chain_breaks  # its neighbours became termini
    assert len(_heavy_xyz(pdbqt, pdbqt=True)) == len(_heavy_xyz(pdb, pdbqt=False)) == report.pdbqt_heavy_atoms
    check_openmm_system(pdb)


def test_untypable_residue_near_box_fails_naming_it_and_writes_nothing(broken_valine, tmp_path, caplog):
    paths, boxes = broken_valine
    with pytest.raises(ReceptorError, match="A:VAL 280") as info:
        prepare_receptor(paths["backbone"], tmp_path / "r.pdb", tmp_path / "r.pdbqt", box=boxes["near"])
    assert "even after relaxing it with amber14 and rebuilding its side chain with PDBFixer" in str(info.value)
    assert "Fix its coordinates" in str(info.value) and "backbone is distorted in the input" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    warnings = [r.getMessage() for r in caplog.records if "A:VAL 280" in r.getMessage()]
    assert any("relaxing" in w for w in warnings) and any("rebuilding the side chain" in w for w in warnings)


def test_untypable_residue_without_box_is_an_error(broken_valine, tmp_path):
    paths, _ = broken_valine
    with pytest.raises(ReceptorError, match="A:VAL 280") as info:
        prepare_receptor(paths["backbone"], tmp_path / "r.pdb", tmp_path / "r.pdbqt")
    assert "box" in str(info.value)


def test_untypable_side_chain_near_box_is_repaired(broken_valine, tmp_path):
    paths, boxes = broken_valine
    pdb = tmp_path / "r.pdb"
    report = prepare_receptor(paths["side_chain"], pdb, tmp_path / "r.pdbqt", box=boxes["near"])
    assert report.repaired_untypable == ["A:VAL 280"] and report.removed_untypable == []
    assert any(note.startswith("A:VAL 280: relaxed with amber14") for note in report.input_repairs)
    valine = {line[12:16].strip(): _xyz(line) for line in _atom_lines(pdb) if int(line[22:26]) == BROKEN_RESIDUE}
    for a, b in [("CA", "CB"), ("CB", "CG1"), ("CB", "CG2")]:
        assert 1.45 < np.linalg.norm(valine[a] - valine[b]) < 1.62, (a, b)  # amber14 bond lengths restored
    check_openmm_system(pdb)
