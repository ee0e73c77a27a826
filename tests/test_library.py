"""Library reading, id sanitization and chunking (no chemistry engines involved)."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from pipeline.library import LibraryError, list_chunks, sanitize_id, split_library


@pytest.mark.parametrize("raw, expected", [
    ("CHEMBL25", "CHEMBL25"),
    ("my compound 1", "my_compound_1"),
    ("a/b", "a_b"),
    ("../../etc/passwd", "_etc_passwd"),
    ("x;rm -rf ~", "x_rm_-rf_"),
    ("..", "_"),
    ("$(reboot)", "_reboot_"),
])
def test_sanitize_id_removes_path_and_shell_characters(raw, expected):
    clean = sanitize_id(raw, "fallback")
    assert clean == expected
    assert "/" not in clean and ".." not in clean and ";" not in clean and " " not in clean


def test_sanitize_id_never_empty():
    assert sanitize_id("   ", "lib_line3") == "lib_line3"
    assert sanitize_id("...", "lib_line3") == "_"


def _split(tmp_path, name, text, **kw):
    lib = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(lib, "wt") as handle:
            handle.write(text)
    else:
        lib.write_text(text)
    summary = split_library(lib, tmp_path / "chunks", tmp_path / "failures.csv", **kw)
    chunks = [pd.read_parquet(tmp_path / "chunks" / f"{c}.parquet") for c in list_chunks(tmp_path / "chunks")]
    table = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    failures = pd.read_csv(tmp_path / "failures.csv", dtype=str, keep_default_na=False)
    return summary, table, failures


def test_smi_rows_are_all_accounted_for(tmp_path):
    text = "CCO ethanol\n\nc1ccccc1 my benzene\nCCN ethanol\nCC(=O)O a/b\nCCCC\n"
    summary, table, failures = _split(tmp_path, "lib.smi", text, chunk_size=2)
    assert summary.rows == 6
    assert len(table) + len(failures) == 6
    assert list(table["id"]) == ["ethanol", "my_benzene", "a_b", "lib_line6"]
    assert summary.chunks == 2
    reasons = dict(zip(failures["id"], failures["reason"]))
    assert "empty line" in reasons["lib_line2"]
    assert "duplicate id 'ethanol'" in reasons["ethanol"]
    assert set(failures["stage"]) == {"input"}


def test_header_line_is_skipped(tmp_path):
    summary, table, _ = _split(tmp_path, "lib.smi", "smiles id\nCCO e1\n")
    assert list(table["id"]) == ["e1"] and summary.rows == 1


def test_csv_gz_with_custom_case_columns(tmp_path):
    text = "ID,SMILES,active\nc1,CCO,1\nc2,,0\nc3,CCN,0\n"
    summary, table, failures = _split(tmp_path, "lib.csv.gz", text)
    assert list(table["id"]) == ["c1", "c3"]
    assert failures["id"].tolist() == ["c2"] and "no SMILES" in failures["reason"][0]


def test_sdf_title_and_property_ids(tmp_path):
    from rdkit import Chem

    path = tmp_path / "lib.sdf"
    writer = Chem.SDWriter(str(path))
    for name, smi in [("m one", "CCO"), ("m2", "c1ccccc1")]:
        mol = Chem.MolFromSmiles(smi)
        mol.SetProp("_Name", name)
        mol.SetProp("code", name.upper())
        writer.write(mol)
    writer.close()
    with open(path, "a") as handle:  # a broken record must become a failure, not a crash
        handle.write("broken\n  junk\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n    0.0 0.0 0.0 Xx  0\nM  END\n$$$$\n")
    summary, table, failures = _split(tmp_path, "lib.sdf", path.read_text())
    assert list(table["id"]) == ["m_one", "m2"]
    assert failures["id"].tolist() == ["broken"]
    summary, table, _ = _split(tmp_path, "lib.sdf", path.read_text(), id_property="code")
    assert list(table["id"])[:2] == ["M_ONE", "M2"]


def test_missing_and_empty_library_errors(tmp_path):
    with pytest.raises(LibraryError, match="does not exist"):
        split_library(tmp_path / "nope.smi", tmp_path / "c", tmp_path / "f.csv")
    (tmp_path / "empty.smi").write_text("")
    with pytest.raises(LibraryError, match="empty"):
        split_library(tmp_path / "empty.smi", tmp_path / "c", tmp_path / "f.csv")
    (tmp_path / "lib.xyz").write_text("CCO a\n")
    with pytest.raises(LibraryError, match="format"):
        split_library(tmp_path / "lib.xyz", tmp_path / "c", tmp_path / "f.csv")
