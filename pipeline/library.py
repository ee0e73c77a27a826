"""Reading compound libraries and splitting them into chunks.

A library is a ``.smi`` (``SMILES id`` per line), a ``.csv`` (id and SMILES columns) or
an ``.sdf`` file, each optionally gzipped. :func:`split_library` streams it (a million
lines never sit in memory at once), gives every row one sanitized id, and writes
``chunk_00000.parquet``, ``chunk_00001.parquet``, ... with columns
``id, input_id, smiles, line``. Rows that cannot be screened at all (empty lines,
duplicate ids, SDF records RDKit cannot read) go to the failures table with stage
``input``; chemistry problems are left to ligand preparation.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import pandas as pd

from .io import atomic_path, write_failures, write_text_atomic
from .progress import progress

CHUNK_COLUMNS = ["id", "input_id", "smiles", "line"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_DOTS = re.compile(r"\.{2,}")
MAX_ID_LENGTH = 100
# An id that sanitize_id would return unchanged (most library ids): checked with one match
_ALREADY_SAFE = re.compile(r"(?!.*(?:\.\.|__))[A-Za-z0-9_+][A-Za-z0-9._+-]{0,%d}" % (MAX_ID_LENGTH - 1))


class LibraryError(ValueError):
    """The library file as a whole cannot be read (missing, empty, unknown format)."""


@dataclass
class Record:
    """One input row: where it was, the id as given, its SMILES, or why it is unusable."""

    line: int
    input_id: str
    smiles: str | None
    problem: str | None = None


def sanitize_id(raw: str, fallback: str) -> str:
    """Make a compound id safe as a file-name part and a shell word.

    Characters outside ``A-Z a-z 0-9 . _ + -`` become ``_``, runs of dots (``..``)
    become ``_``, runs of ``_`` collapse to one, leading dots/dashes are dropped and the result is cut to
    100 characters. An id that ends up empty is replaced by ``fallback``.
    """
    if _ALREADY_SAFE.fullmatch(raw):
        return raw
    clean = re.sub("_{2,}", "_", _DOTS.sub("_", _UNSAFE.sub("_", raw.strip())))
    clean = clean.lstrip(".-")[:MAX_ID_LENGTH]
    return clean or fallback


def detect_format(path: str | Path) -> str:
    """Return ``smi``, ``csv`` or ``sdf`` from the file name (``.gz`` is looked through)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffixes, fmt in (((".smi", ".smiles", ".txt", ".ism"), "smi"), ((".csv", ".tsv"), "csv"), ((".sdf", ".sd", ".mol"), "sdf")):
        if name.endswith(suffixes):
            return fmt
    raise LibraryError(f"cannot tell the format of library '{path}' from its name; use .smi, .csv or .sdf (optionally .gz), or set library.format")


def _open_text(path: str | Path) -> IO[str]:
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"library file '{path}' does not exist; check library.path in your config")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_smi(path: str | Path) -> Iterator[Record]:
    """Yield records of a SMILES file: ``SMILES`` then the id (the rest of the line, spaces allowed)."""
    with _open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            text = text.strip()
            if not text:
                yield Record(number, "", None, "empty line")
                continue
            parts = text.split(None, 1)
            smiles, name = parts[0], (parts[1] if len(parts) > 1 else "")
            if number == 1 and smiles.lower() in {"smiles", "smi", "canonical_smiles"}:
                continue  # header line
            yield Record(number, name.strip(), smiles)


def _find_column(columns: list[str], wanted: str, path: str | Path) -> str:
    for column in columns:
        if column.strip().lower() == wanted.lower():
            return column
    raise LibraryError(f"library '{path}' has no column '{wanted}' (columns: {', '.join(columns)}); set library.id_column / library.smiles_column")


def iter_csv(path: str | Path, id_column: str = "id", smiles_column: str = "smiles") -> Iterator[Record]:
    """Yield records of a CSV/TSV file with an id and a SMILES column (names matched case-insensitively)."""
    sep = "\t" if ".tsv" in Path(path).name.lower() else ","
    with _open_text(path) as handle:
        reader = pd.read_csv(handle, sep=sep, dtype=str, keep_default_na=False, chunksize=50_000, skip_blank_lines=False)
        line = 1
        id_col = smi_col = None
        for frame in reader:
            if id_col is None:
                id_col = _find_column(list(frame.columns), id_column, path)
                smi_col = _find_column(list(frame.columns), smiles_column, path)
            for name, smiles in zip(frame[id_col], frame[smi_col]):
                line += 1
                smiles = smiles.strip()
                yield Record(line, name, smiles or None, None if smiles else "no SMILES in this row")


def _sdf_blocks(handle: IO[str]) -> Iterator[tuple[int, str]]:
    block: list[str] = []
    start = 1
    for number, text in enumerate(handle, start=1):
        if text.startswith("$$$$"):
            yield start, "".join(block)
            block, start = [], number + 1
        else:
            block.append(text)
    if "".join(block).strip():
        yield start, "".join(block)


def _sdf_property(block: str, name: str) -> str:
    match = re.search(rf"^>\s*<{re.escape(name)}>.*\n(.*)$", block, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def iter_sdf(path: str | Path, id_property: str | None = None) -> Iterator[Record]:
    """Yield records of an SD file; the id is the title line or ``id_property``; SMILES come from RDKit."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    with _open_text(path) as handle:
        for line, block in _sdf_blocks(handle):
            title = block.split("\n", 1)[0].strip()
            name = _sdf_property(block, id_property) if id_property else title
            mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=True)
            if mol is None:
                yield Record(line, name, None, "RDKit cannot read this SDF record (bad valence or malformed block)")
            else:
                yield Record(line, name, Chem.MolToSmiles(mol))


def iter_library(path: str | Path, fmt: str = "auto", id_column: str = "id", smiles_column: str = "smiles",
                 id_property: str | None = None) -> Iterator[Record]:
    """Yield every row of a library file as a :class:`Record`, whatever its format."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "smi":
        return iter_smi(path)
    if fmt == "csv":
        return iter_csv(path, id_column, smiles_column)
    if fmt == "sdf":
        return iter_sdf(path, id_property)
    raise LibraryError(f"unknown library format '{fmt}'; use smi, csv or sdf")


@dataclass
class SplitSummary:
    """Counts from :func:`split_library`."""

    rows: int
    accepted: int
    failed: int
    chunks: int

    def to_dict(self) -> dict:
        return dict(rows=self.rows, accepted=self.accepted, failed=self.failed, chunks=self.chunks)


def split_library(path: str | Path, out_dir: str | Path, failures_path: str | Path, chunk_size: int = 25,
                  fmt: str = "auto", id_column: str = "id", smiles_column: str = "smiles",
                  id_property: str | None = None) -> SplitSummary:
    """Stream a library into Parquet chunks of ``chunk_size`` rows, and write rejected rows.

    Parameters
    ----------
    path : the library file.
    out_dir : folder that receives ``chunk_NNNNN.parquet`` and ``manifest.json``.
    failures_path : CSV (``id, stage, reason``) for rows rejected here (stage ``input``).

    Returns
    -------
    SplitSummary with row, accepted, failed and chunk counts.

    Raises
    ------
    LibraryError when the file is missing or holds no usable row at all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"\W+", "_", Path(path).name.split(".")[0]) or "cpd"
    seen: dict[str, int] = {}
    failures: list[dict] = []
    buffer: list[tuple[str, str, str, int]] = []
    rows = n_chunks = 0
    records = iter_library(path, fmt, id_column, smiles_column, id_property)
    for record in progress(records, desc=f"split {Path(path).name}", unit="row"):
        rows += 1
        fallback = f"{stem}_line{record.line}"
        cid = sanitize_id(record.input_id, fallback) if record.input_id else fallback
        if record.problem:
            failures.append(dict(id=cid, stage="input", reason=f"line {record.line}: {record.problem}"))
            continue
        if cid in seen:
            failures.append(dict(id=cid, stage="input", reason=(
                f"line {record.line}: duplicate id '{record.input_id}' (id '{cid}' first used on line {seen[cid]}); "
                "this row was not screened - give it a unique id")))
            continue
        seen[cid] = record.line
        buffer.append((cid, record.input_id, record.smiles, record.line))
        if len(buffer) == chunk_size:
            _write_chunk(buffer, out_dir, n_chunks)
            n_chunks, buffer = n_chunks + 1, []
    if buffer:
        _write_chunk(buffer, out_dir, n_chunks)
        n_chunks += 1
    if rows == 0:
        raise LibraryError(f"library '{path}' is empty: no compounds to screen")
    write_failures(failures, failures_path)
    summary = SplitSummary(rows=rows, accepted=len(seen), failed=len(failures), chunks=n_chunks)
    write_text_atomic(out_dir / "manifest.json", json.dumps(summary.to_dict(), indent=1))
    return summary


def _write_chunk(rows: list[tuple[str, str, str, int]], out_dir: Path, index: int) -> None:
    # pyarrow directly: a million compounds in chunks of 25 are 40,000 files, and a pandas
    # DataFrame per chunk costs five times as much as the table itself
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = (pa.string(), pa.string(), pa.string(), pa.int64())  # CHUNK_COLUMNS: id, input_id, smiles, line
    table = pa.table({name: pa.array(values, kind) for name, values, kind in zip(CHUNK_COLUMNS, zip(*rows), types)})
    with atomic_path(out_dir / chunk_name(index, ".parquet")) as tmp:
        pq.write_table(table, tmp)


def chunk_name(index: int, suffix: str = "") -> str:
    """File name of chunk ``index`` (``chunk_00003`` + suffix)."""
    return f"chunk_{index:05d}{suffix}"


def list_chunks(out_dir: str | Path) -> list[str]:
    """Names (without suffix) of the chunks written by :func:`split_library`, in order."""
    return sorted(p.name[: -len(".parquet")] for p in Path(out_dir).glob("chunk_*.parquet"))
