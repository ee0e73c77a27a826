"""GNINA's CNN as a rescoring column (``benchmarks/gnina_rescore.py``).

The rescoring itself runs in the separate gninatorch environment that the benchmark builds
from the package index; a test must not download, so the slow test runs only where
``benchmarks/.cache/gnina-venv`` was already built (``python benchmarks/gnina_rescore.py``
on any pose file builds it) and is skipped elsewhere. The record splitting that lines the
scores up with the SD properties is plain Python and always tested.

The complex is the plasminogen fixture of ``test_tethered.py``: its reference ligand as
crystallized, and the same ligand moved 8 A along x, out of the pocket.
"""

from __future__ import annotations

import gzip
import math
import sys

import numpy as np
import pytest
from conftest import REPO
from rdkit import Chem
from rdkit.Chem import rdMolTransforms

sys.path.insert(0, str(REPO / "benchmarks"))
import gnina_rescore as gr  # noqa: E402

SERIES = REPO / "tests" / "data" / "unifep_ChEMBL__PLG__CHEMBL3295545"


def _poses(path, shifts: dict[str, float]) -> None:
    """Write the reference ligand translated along x by each shift (A), one record per name."""
    ref = Chem.MolFromMolFile(str(SERIES / "ref_ligand.sdf"), removeHs=False)
    writer = Chem.SDWriter(str(path))
    for name, shift in shifts.items():
        mol = Chem.Mol(ref)
        move = np.eye(4)
        move[0, 3] = shift
        rdMolTransforms.TransformConformer(mol.GetConformer(), move)
        mol.SetProp("_Name", name)
        mol.SetProp("exp_dG", str(-8.0 + shift))
        writer.write(mol)
    writer.close()


def test_records_line_up_with_properties(tmp_path):
    # appended pose files are multi-member gzip, and a file cut short may lack its last "$$$$"
    _poses(tmp_path / "poses.sdf", {"crystal": 0.0, "moved": 8.0})
    text = (tmp_path / "poses.sdf").read_text()
    first, second = text.split("$$$$\n")[:2]
    target = tmp_path / "poses.sdf.gz"
    with open(target, "wb") as handle:
        handle.write(gzip.compress((first + "$$$$\n").encode()))
        handle.write(gzip.compress(second.encode()))  # no terminator
    assert gr.sd_property(target, "exp_dG") == ["-8.0", "0.0"]
    assert gr.sd_property(target, "absent") == [None, None]
    records = gr._worker_module().read_records(target)
    assert [gr._worker_module().record_name(r) for r in records] == ["crystal", "moved"]


@pytest.mark.slow
def test_rescore_ranks_the_crystal_pose_above_a_displaced_one(tmp_path):
    if not (gr.ENV / ".complete").is_file():
        pytest.skip(f"no gninatorch environment at {gr.ENV} (built by the benchmark, not by tests)")
    poses = tmp_path / "poses.sdf"
    _poses(poses, {"crystal": 0.0, "moved": 8.0})
    cache = tmp_path / "scores.csv"

    table = gr.rescore(SERIES / "protein.pdb.gz", poses, cache, batch_size=2)

    assert list(table.columns) == gr.COLUMNS
    assert list(table["name"]) == ["crystal", "moved"]
    for column in ("CNNscore", "CNNaffinity", "CNNvariance"):
        assert all(math.isfinite(v) for v in table[column]), column
    assert all(0.0 <= v <= 1.0 for v in table["CNNscore"])
    crystal, moved = table.iloc[0], table.iloc[1]
    # the crystal pose is a near-certain pose for GNINA (0.93 here) and the displaced one is not
    assert crystal.CNNscore > 0.5 > moved.CNNscore
    assert crystal.CNNaffinity > moved.CNNaffinity
    assert table.attrs["cached"] is False and table.attrs["timing"]["poses"] == 2

    again = gr.rescore(SERIES / "protein.pdb.gz", poses, cache)
    assert again.attrs["cached"] is True
    assert np.allclose(again[["CNNscore", "CNNaffinity"]], table[["CNNscore", "CNNaffinity"]])

    # changed poses are scored again, not read from the stale cache
    _poses(poses, {"moved": 8.0})
    changed = gr.rescore(SERIES / "protein.pdb.gz", poses, cache)
    assert changed.attrs["cached"] is False and list(changed["name"]) == ["moved"]
