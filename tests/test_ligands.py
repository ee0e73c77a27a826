"""Ligand preparation on real RDKit / dimorphite-dl / meeko."""

from __future__ import annotations

import pandas as pd
import pytest
from rdkit import Chem

from pipeline.ligands import LigandSettings, PreparationError, prepare_chunk, prepare_ligand

SETTINGS = LigandSettings()


def test_salt_keeps_largest_fragment_and_is_protonated():
    mol, row = prepare_ligand("salt", "[Na+].OC(=O)c1ccccc1CC[NH3+].[Cl-]", SETTINGS)
    assert "." not in row["prepared_smiles"] and "Na" not in row["prepared_smiles"]
    assert row["formal_charge"] == 0  # zwitterion at pH 7.4: carboxylate and ammonium
    assert "[O-]" in row["prepared_smiles"] and "[NH3+]" in row["prepared_smiles"]
    assert mol.GetNumConformers() == 1 and any(a.GetAtomicNum() == 1 for a in mol.GetAtoms())
    assert row["pdbqt"].startswith("REMARK SMILES") and "ROOT" in row["pdbqt"]


@pytest.mark.parametrize(
    "smiles, reason",
    [
        ("C1CC(", "invalid SMILES"),
        ("", "empty SMILES"),
        ("CC(=O)O[Pt](N)(N)Cl", "Pt"),
        ("C" * 150, "too large: 150 heavy atoms"),
        ("C", "too small"),
    ],
)
def test_bad_molecules_raise_readable_reasons(smiles, reason):
    with pytest.raises(PreparationError, match=reason.replace("(", r"\(")):
        prepare_ligand("x", smiles, SETTINGS)


def test_embedding_is_deterministic_per_compound():
    a, _ = prepare_ligand("cpd1", "CC(=O)Nc1ccc(O)cc1", SETTINGS)
    b, _ = prepare_ligand("cpd1", "CC(=O)Nc1ccc(O)cc1", SETTINGS)
    assert (a.GetConformer().GetPositions() == b.GetConformer().GetPositions()).all()


def test_chunk_writes_sdf_table_and_failures(tmp_path):
    chunk = tmp_path / "chunk_00000.parquet"
    pd.DataFrame(
        {"id": ["ok", "bad"], "input_id": ["ok", "bad"], "smiles": ["c1ccccc1O", "xyz"], "line": [1, 2]}
    ).to_parquet(chunk)
    done, failed = prepare_chunk(chunk, tmp_path / "l.sdf", tmp_path / "l.parquet", tmp_path / "f.csv", SETTINGS)
    assert (done, failed) == (1, 1)
    mols = list(Chem.SDMolSupplier(str(tmp_path / "l.sdf"), removeHs=False))
    assert [m.GetProp("_Name") for m in mols] == ["ok"]
    failures = pd.read_csv(tmp_path / "f.csv")
    assert failures.to_dict("records")[0]["stage"] == "prepare"
