"""Outputs: group-readable under the umask, and a full disk never leaves a short SD file in place."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from pipeline.io import (
    atomic_sdf,
    count_sdf_records,
    staging_dir,
    write_failures,
    write_parquet_atomic,
    write_text_atomic,
)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, expected):
    import pandas as pd
    from rdkit import Chem

    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        write_parquet_atomic(pd.DataFrame({"id": ["a"]}), tmp_path / "a.parquet")
        write_failures([dict(id="a", stage="dock", reason="r")], tmp_path / "a.failures.csv")
        with atomic_sdf(tmp_path / "a.sdf") as writer:
            writer.write(Chem.MolFromSmiles("CCO"))
    finally:
        os.umask(old)
    for name in ("a.txt", "a.parquet", "a.failures.csv", "a.sdf"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


@pytest.mark.parametrize("umask, expected", [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_output_folders_follow_the_umask(tmp_path, umask, expected):
    """Folders built aside and renamed into place (models, explanations) are not left 0700."""
    old = os.umask(umask)
    try:
        tmp = staging_dir(tmp_path / "model")
    finally:
        os.umask(old)
    assert tmp.parent == tmp_path and not any(tmp.iterdir())
    assert stat.S_IMODE(tmp.stat().st_mode) == expected


def test_a_full_disk_fails_the_sdf_instead_of_renaming_a_short_file(tmp_path):
    """RDKit's SDWriter ignores write errors; the record count catches them. A file-size limit
    (RLIMIT_FSIZE) makes the disk 'full' after 4 KiB for the child process."""
    target = tmp_path / "poses.sdf"
    target.write_text("previous\n")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from rdkit import Chem
        from pipeline.io import OutputError, atomic_sdf
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
        try:
            with atomic_sdf({str(target)!r}) as writer:
                for i in range(200):
                    mol.SetProp("_Name", f"cpd{{i}}")
                    writer.write(mol)
        except OutputError as exc:
            print("refused:", exc)
            sys.exit(0)
        sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote 200 molecules" in result.stdout
    assert target.read_text() == "previous\n"  # the old output is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_count_sdf_records(tmp_path):
    from rdkit import Chem

    with atomic_sdf(tmp_path / "x.sdf") as writer:
        for smiles in ("C", "CC", "CCC"):
            writer.write(Chem.MolFromSmiles(smiles))
    assert count_sdf_records(tmp_path / "x.sdf") == 3
