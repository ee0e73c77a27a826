"""Small input/output helpers shared by every stage.

Outputs are always written atomically: to a temporary file in the same folder,
flushed to disk, then renamed over the final name, so a killed job never leaves a
half-written file that a restarted workflow would mistake for a finished one.

Permissions follow the user's umask (``tempfile.mkstemp`` alone would make every output
0600, unreadable to the rest of a cluster group). SD files are counted back before the
rename, because RDKit's ``SDWriter`` does not report a full disk.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd

from .errors import VscreenError

FAILURE_COLUMNS = ["id", "stage", "reason"]


class OutputError(VscreenError, OSError):
    """An output could not be written completely (full disk, quota); nothing was renamed into place."""


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new output file: what ``open()`` would give under the current umask (0644 under 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode of a new output folder: what ``mkdir`` would give under the current umask (0755 under 022)."""
    return 0o777 & ~_umask()


def staging_dir(out: str | os.PathLike) -> Path:
    """An empty temporary folder next to ``out``, with the umask's folder mode, to be renamed onto ``out``.

    ``tempfile.mkdtemp`` alone makes it 0700, and the rename would hand that mode to the
    finished output folder (a model, the explanations), unreadable to the user's group.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, dir_mode())
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Use it for writers that want a file name (RDKit's SDWriter, pandas.to_parquet).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())  # mkstemp creates 0600; outputs follow the umask like any other file
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _flush_to_disk(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _flush_to_disk(path: Path) -> None:
    """fsync a finished temporary file, so that a write error (full disk) surfaces before the rename."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # the writer moved or removed it itself; nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OutputError(f"could not write {path.name.split('.tmp')[0].lstrip('.')}: {exc}") from exc
    finally:
        os.close(fd)


def sdf_supplier(path: str | os.PathLike, removeHs: bool = False, sanitize: bool = True):  # noqa: N803 (RDKit's names)
    """An RDKit ``SDMolSupplier`` over ``path`` that also reads an empty file (as no records).

    A chunk whose every ligand failed docking, or a batch whose every pose failed MD, leaves
    an SDF of zero bytes; RDKit refuses to open one ("Invalid input file"), which would stop
    the run for a chunk that simply has nothing left in it.
    """
    from rdkit import Chem

    if os.path.getsize(path) == 0:
        supplier = Chem.SDMolSupplier()
        supplier.SetData("", removeHs=removeHs, sanitize=sanitize)
        return supplier
    return Chem.SDMolSupplier(str(path), removeHs=removeHs, sanitize=sanitize)


def count_sdf_records(path: str | os.PathLike) -> int:
    """Number of records in an SD file (lines that are exactly ``$$$$``)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.rstrip(b"\r\n") == b"$$$$":
                count += 1
    return count


class SDFRecordWriter:
    """An RDKit ``SDWriter`` that counts what it writes (see :func:`atomic_sdf`)."""

    def __init__(self, path: Path):
        from rdkit import Chem

        self.path = path
        self.written = 0
        self._writer = Chem.SDWriter(str(path))

    def write(self, mol) -> None:
        """Write one molecule (its ``_Name`` is the title line, its properties SD fields)."""
        self._writer.write(mol)
        self.written += 1

    def close(self) -> None:
        self._writer.close()


@contextlib.contextmanager
def atomic_sdf(path: str | os.PathLike) -> Iterator[SDFRecordWriter]:
    """``with atomic_sdf(path) as writer: writer.write(mol)`` - an SD file written atomically and checked.

    When the block ends, the temporary file is closed, its records are counted and compared
    with the molecules written; a short file (``SDWriter`` ignores a full disk) raises
    :class:`OutputError` and ``path`` is left untouched.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = SDFRecordWriter(tmp)
        try:
            yield writer
        finally:
            writer.close()
        found = count_sdf_records(tmp)
        if found != writer.written:
            raise OutputError(
                f"{path}: wrote {writer.written} molecules but the file holds {found} "
                "(disk full or quota exceeded?); the output was not replaced"
            )


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` when the block ends cleanly."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(text)


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a DataFrame as Parquet atomically (index dropped).

    A column with no values to infer a type from (an empty chunk: every ligand failed) is
    written as ``string`` instead of Arrow's ``null`` type, on which joins and counts by
    ``id`` have no kernel; an empty string column casts to any other type a reader wants.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if any(pa.types.is_null(f.type) for f in table.schema):
        fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
        table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_failures(rows: list[dict], path: str | os.PathLike) -> None:
    """Write failure rows (``id, stage, reason``) as CSV atomically; an empty list gives a header-only file."""
    df = pd.DataFrame(rows, columns=FAILURE_COLUMNS)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_failures(path: str | os.PathLike) -> pd.DataFrame:
    """Read a failures CSV written by :func:`write_failures`; ids stay strings."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------------------------------------- cell text
#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection"),
#: plus the quote that marks a neutralized cell, so that the marking can be undone exactly.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def _text_columns(df: pd.DataFrame) -> list:
    return [c for c in df.columns if pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c])]


def _starts_with(values: pd.Series, prefixes: tuple[str, ...]) -> pd.Series:
    """Boolean mask of the text cells of ``values`` that start with one of ``prefixes``."""
    try:
        # vectorized; gives NaN for the non-text cells of an object column
        return values.str.startswith(prefixes).fillna(False).astype(bool)
    except AttributeError:  # an object column without any text (all bools, ints): cell by cell
        return values.map(lambda v: isinstance(v, str) and v.startswith(prefixes)).astype(bool)


def neutralize_csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` that a spreadsheet opens without running any cell as a formula.

    Rule (OWASP, "CSV injection"): a text cell that starts with ``=``, ``+``, ``-``, ``@``,
    a tab or a carriage return gets a single quote ``'`` in front; so does a text cell that
    already starts with ``'``, which makes the rule reversible: strip one leading ``'`` from
    every text cell that has one (:func:`restore_csv_cells`) and the exact values are back.
    Only text cells of text (object / string) columns change; numbers, missing values and
    numeric columns are left alone (a negative docking score stays a number).

    Parameters
    ----------
    df
        The table about to be written as CSV (``ranking.csv``, ``failures.csv``, ...).

    Returns
    -------
    pandas.DataFrame
        The neutralized copy (``df`` itself is not changed).
    """
    out = df.copy()
    for column in _text_columns(out):
        values = out[column]
        hit = _starts_with(values, FORMULA_TRIGGERS)
        if hit.any():
            out[column] = values.where(~hit, "'" + values[hit].astype(str))
    return out


def restore_csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`neutralize_csv_cells` on a table read back from its CSV (text cells lose one leading ``'``)."""
    out = df.copy()
    for column in _text_columns(out):
        values = out[column]
        hit = _starts_with(values, ("'",))
        if hit.any():
            out[column] = values.where(~hit, values[hit].astype(str).str[1:])
    return out


def sd_text(value: object) -> str:
    """``value`` as the text of one SD property (or title): always a single line.

    An SD property ends at a blank line and a record at a ``$$$$`` line, so free text (an
    input id from a quoted CSV cell with line breaks) could cut a record short or start a
    new one. Rule: every line break (CR LF, CR or LF) becomes one space, and a value that
    would start with ``$$$$`` gets one space in front. The exact value stays in
    ``ranking.csv``.
    """
    text = str(value).replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return " " + text if text.startswith("$$$$") else text


def read_structure_text(path: str | Path) -> str:
    """Text of a structure file, decompressing ``.gz`` (users hand in ``protein.pdb.gz`` as downloaded)."""
    path = Path(path)
    if path.suffix.lower() == ".gz":
        with gzip.open(path, "rt", errors="replace") as handle:
            return handle.read()
    return path.read_text(errors="replace")
