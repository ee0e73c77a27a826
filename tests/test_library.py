"""Library reading, id sanitization and chunking (no chemistry engines involved)."""

from __future__ import annotations

import gzip
import random
import re

import pandas as pd
import pytest

from pipeline.library import (
    MAX_ID_LENGTH,
    IdRegistry,
    LibraryError,
    id_suffix,
    list_chunks,
    sanitize_id,
    split_library,
    transliterate,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("CHEMBL25", "CHEMBL25"),
        ("my compound 1", "my_compound_1"),
        ("a/b", "a_b"),
        ("../../etc/passwd", "_etc_passwd"),
        ("x;rm -rf ~", "x_rm_-rf_"),
        ("..", "id" + id_suffix("..")),  # nothing readable left: a stable, readable name instead of '_'
        ("$(reboot)", "_reboot_"),
        ("α-pinene", "alpha-pinene"),
        ("β-Pinen", "beta-Pinen"),
        ("Δ9-THC", "Delta9-THC"),
        ("café crème", "cafe_creme"),
        ("Straße/Øre", "Strasse_Ore"),
        ('=HYPERLINK("http://x")', "_HYPERLINK_http_x_"),
        ("+1", "1"),
        ("-x", "x"),
        ("@sum", "_sum"),
    ],
)
def test_sanitize_id_removes_path_and_shell_characters(raw, expected):
    clean = sanitize_id(raw, "fallback")
    assert clean == expected
    assert "/" not in clean and ".." not in clean and ";" not in clean and " " not in clean


def test_sanitize_id_never_empty():
    assert sanitize_id("   ", "lib_line3") == "lib_line3"
    assert sanitize_id("+", "lib_line3") == "lib_line3"
    assert sanitize_id("...", "lib_line3") == "id" + id_suffix("...")
    assert sanitize_id("中文", "lib_line3") == "id" + id_suffix("中文") != sanitize_id("日本", "lib_line3")


_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")


def test_sanitized_ids_are_always_safe():
    """Whatever the input: ASCII, no path or shell characters, no leading formula character or dot,
    at most 100 characters (seeded random strings from a hostile alphabet)."""
    alphabet = "aZ09 ._-+=@'\"\t\n\r/\\;$`|&<>*?~αβΩé中😀\u200b\u0301"
    rng = random.Random(14)
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160)))
        clean = sanitize_id(raw, "fallback")
        assert _SAFE.fullmatch(clean) and len(clean) <= MAX_ID_LENGTH, (raw, clean)
        assert ".." not in clean and "__" not in clean, (raw, clean)


def test_transliteration():
    assert transliterate("α β γ Ω ς µ") == "alpha beta gamma Omega sigma mu"
    assert transliterate("Ångström ﬁne œuvre ł") == "Angstrom fine oeuvre l"


def test_long_ids_are_cut_with_a_suffix_that_keeps_them_apart():
    """Defect 5: ids were cut at 100 characters, so two ids that differ after that merged."""
    a, b = "x" * 149 + "a", "x" * 149 + "b"
    assert sanitize_id(a, "f") != sanitize_id(b, "f")
    assert len(sanitize_id(a, "f")) == MAX_ID_LENGTH and sanitize_id(a, "f").endswith(id_suffix(a))
    assert sanitize_id("y" * 100, "f") == "y" * 100  # a 100-character id is not cut


def test_registry_suffixes_collisions_and_reports_duplicates():
    ids = IdRegistry()
    assert ids.claim("a b", 1, "l1") == ("a_b", None)
    assert ids.claim("a_b", 2, "l2") == ("a_b" + id_suffix("a_b"), None)  # another compound: suffixed
    assert ids.claim(" a b ", 3, "l3") == ("a_b", 1)  # the same id again: a duplicate of line 1
    assert ids.claim("a_b", 4, "l4") == ("a_b" + id_suffix("a_b"), 2)
    assert ids.claim("", 5, "l6") == ("l6", None)
    assert ids.claim("l6", 6, "l6b") == ("l6" + id_suffix("l6"), None)  # a real id equal to a fallback
    # the suffix depends on the id alone: the same library gives the same ids in every run
    again = IdRegistry()
    assert [again.claim(x, n, f"l{n}")[0] for n, x in enumerate(["a b", "a_b"], 1)] == ["a_b", "a_b" + id_suffix("a_b")]


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


# ---------------------------------------------------------------------------------------------- defect 5 / 8


def test_unicode_ids_are_distinct_and_kept_exactly(tmp_path):
    """Acceptance (issue 14, criterion 3): α- and β-pinene are two compounds (both were '_-pinene'
    and the second was rejected as a duplicate); input_id keeps the unicode."""
    text = "CC1=CCC2CC1C2(C)C α-pinene\nCC1(C)C2CCC(=C)C1C2 β-pinene\nCCO 中文\nCCN 日本\nCCC αlpha\n"
    summary, table, failures = _split(tmp_path, "lib.smi", text)
    assert summary.accepted == 5 and len(failures) == 0
    assert table["input_id"].tolist() == ["α-pinene", "β-pinene", "中文", "日本", "αlpha"]
    assert table["id"].tolist()[:2] == ["alpha-pinene", "beta-pinene"]
    assert table["id"].is_unique and table["id"].iloc[4] == "alphalpha"


def test_long_comma_and_formula_ids_are_unique_and_exact(tmp_path):
    """Acceptance: 150-character, comma-containing and formula-like ids are all accepted, unique,
    with the exact input_id; no sanitized id starts with a formula character."""
    long_a, long_b = "L" * 149 + "a", "L" * 149 + "b"
    raw = [long_a, long_b, "a,b,c", "x, y", '=HYPERLINK("http://evil/?"&A1,"click")', "+1", "-x", "@sum(A1:A9)", "1"]
    text = "".join(f"C{'C' * i}O {name}\n" for i, name in enumerate(raw))
    summary, table, failures = _split(tmp_path, "lib.smi", text)
    assert summary.accepted == len(raw) and len(failures) == 0
    assert table["input_id"].tolist() == raw
    assert table["id"].is_unique and table["id"].str.len().max() <= MAX_ID_LENGTH
    assert table["id"].iloc[2] == "a_b_c" and table["id"].iloc[5] == "1" and table["id"].iloc[8] == "1" + id_suffix("1")
    assert not table["id"].str.match(r"[=+\-@]").any()


def test_written_tables_hold_no_formula_cell_and_read_back_exactly(tmp_path):
    """Defect 8: a cell that starts with = + - @ is run by a spreadsheet. write_table_csv (used for
    ranking.csv, failures.csv, pose_warnings.csv) prefixes it with a quote; strip one to read back."""
    from pipeline.ranking import write_table_csv

    raw = ['=HYPERLINK("http://evil","x")', "+1", "-x", "@sum", "'quoted", "a,b,c", "line\nbreak"]
    text = "id,smiles\n" + "".join(
        f'"{name.replace(chr(34), chr(34) * 2)}",C{"C" * i}O\n' for i, name in enumerate(raw)
    )
    _, table, _ = _split(tmp_path, "lib.csv", text)
    assert table["input_id"].tolist() == raw  # the line break inside the quoted cell too
    write_table_csv(table, tmp_path / "ranking.csv")
    back = pd.read_csv(tmp_path / "ranking.csv", dtype=str, keep_default_na=False)
    for column in ("id", "input_id", "smiles"):
        assert not back[column].str.match(r"[=+\-@\t\r]").any(), back[column].tolist()
    assert [v[1:] if v.startswith("'") else v for v in back["input_id"]] == raw


def test_duplicates_are_rejected_not_merged_and_problem_rows_keep_their_id(tmp_path):
    text = "id,smiles\nc1,CCO\n c1 ,CCN\nc2,\nc2,CCC\nc3,CC O\nc_4,CCCC\nc 4,CCCCC\n"
    summary, table, failures = _split(tmp_path, "lib.csv", text)
    assert table["id"].tolist() == ["c1", "c_4", "c_4" + id_suffix("c 4")]
    reasons = failures.set_index("id")["reason"]
    assert failures["id"].tolist() == ["c1", "c2", "c2", "c3"]
    assert "duplicate id 'c1'" in reasons["c1"] and "first used on line 2" in reasons["c1"]
    assert "has a space or line break inside" in reasons["c3"]
    assert summary.rows == len(table) + len(failures)


def test_registry_gives_distinct_input_ids_distinct_ids():
    """Seeded random ids built to collide (a b / a_b / a/b / á b, fallbacks, repeats): the same
    input id always maps to its first id and is a duplicate; different input ids never share one."""
    rng = random.Random(5)
    parts = ["a", "b", "á", " ", "_", "/", "l1", "中", "-"]
    ids, owner = IdRegistry(), {}
    for line in range(1, 3001):
        raw = "".join(rng.choice(parts) for _ in range(rng.randint(0, 4)))
        cid, first = ids.claim(raw, line, f"l{line}")
        key = raw.strip()
        if key and key in owner:
            assert (cid, first) == owner[key]
        else:
            assert first is None and cid not in {c for c, _ in owner.values()}
            owner[key or f"\0{line}"] = (cid, line)
            assert sanitize_id(cid, "x") == cid  # a given id is itself safe
