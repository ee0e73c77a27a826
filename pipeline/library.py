"""Reading compound libraries and splitting them into chunks.

A library is a ``.smi`` (``SMILES id`` per line), a ``.csv`` (id and SMILES columns) or
an ``.sdf`` file, each optionally gzipped. :func:`split_library` streams it (a million
lines never sit in memory at once), gives every row one sanitized id, and writes
``chunk_00000.parquet``, ``chunk_00001.parquet``, ... with columns
``id, input_id, smiles, line``. Rows that cannot be screened at all (empty lines,
duplicate ids, SDF records RDKit cannot read) go to the failures table with stage
``input``; chemistry problems are left to ligand preparation.

Poses (``docking.mode: score_only``)
------------------------------------
With ``keep_poses`` (an SD library only) each chunk also has a ``molblock`` column: the
record's mol block as the file gives it (up to ``M  END``; its SD data fields are not
kept), so that its coordinates reach ligand preparation unchanged. A record without a 3D
pose (a 2D or 0D block, or every z coordinate 0) is rejected here with stage ``input``
and :data:`NO_3D_POSE` as its reason. Without ``keep_poses`` chunks are as above.

Ids
---
``input_id`` is the id exactly as the library gives it (unicode, commas, quotes, inner
spaces, and line breaks inside a quoted CSV cell, read as ``\n``, all kept), less
surrounding whitespace: in a ``.smi`` line and an SD title whitespace is padding, and one
rule for every format keeps ``" c1"`` and ``"c1"`` from being two compounds. Two rows with the same ``input_id`` are
duplicates: the first row owns the id (even when it is rejected itself, e.g. for a missing
SMILES), the later ones are rejected with stage ``input`` under that same ``id`` and a
reason naming the first line (reported, never merged into one compound).

``id`` is what every file name, SD title and table key uses. Distinct input ids get
distinct ids, made by :func:`sanitize_id` (ASCII letters, digits, ``. _ + -``; never
starting with ``. + -``, so neither a hidden file, a command-line option nor a
spreadsheet formula), then by :class:`IdRegistry`: a sanitized id already taken by a
different ``input_id`` (``a b`` and ``a_b``, or two ids that differ only in characters
with no ASCII spelling) gets ``_`` and the first 8 hex digits of the SHA-1 of its
``input_id`` appended, so it is the same in every run of the same library.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

from .config import schema_default
from .formats import LibraryError, detect_format
from .io import atomic_path, write_failures
from .layout import read_manifest, write_manifest
from .progress import progress

CHUNK_COLUMNS = ["id", "input_id", "smiles", "line"]
#: Columns of a chunk split with ``keep_poses`` (``docking.mode: score_only``).
POSE_CHUNK_COLUMNS = [*CHUNK_COLUMNS, "molblock"]
#: Failure reason of a record whose pose has no 3D coordinates (score_only).
NO_3D_POSE = (
    "the pose has no 3D coordinates (a 2D or 0D mol block, or every z = 0): "
    "docking.mode score_only needs each record's 3D pose in the receptor's frame"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_DOTS = re.compile(r"\.{2,}")
_ALNUM = re.compile(r"[A-Za-z0-9]")
MAX_ID_LENGTH = 100
#: Hex digits of the SHA-1 of the input id that make a sanitized id unique (after a ``_``).
SUFFIX_HEX = 8
# An id that sanitize_id would return unchanged (most library ids): checked with one match.
# Its first character is no '+', '-' or '.': a spreadsheet would read '+1' or '-x' as a formula.
_ALREADY_SAFE = re.compile(rf"(?!.*(?:\.\.|__))(?=.*[A-Za-z0-9])[A-Za-z0-9_][A-Za-z0-9._+-]{{0,{MAX_ID_LENGTH - 1}}}")
# Letters NFKD leaves alone that have a usual ASCII spelling (others are spelt from their
# Unicode name: Greek letters by name, Latin letters with a stroke or a ligature by their letters)
_SPELLED = {"ß": "ss", "ẞ": "SS", "ı": "i", "ĸ": "k", "þ": "th", "Þ": "Th", "ð": "d", "Ð": "D"}
_GREEK_NAME = re.compile(r"GREEK (SMALL|CAPITAL) LETTER (?:FINAL )?([A-Z]+)(?: WITH .*)?")
_LATIN_NAME = re.compile(r"LATIN (SMALL|CAPITAL) (?:LETTER|LIGATURE) ([A-Z]{1,2})(?: WITH .*)?")


@dataclass
class Record:
    """One input row: where it was, the id as given, its SMILES, or why it is unusable."""

    line: int
    input_id: str
    smiles: str | None
    problem: str | None = None
    molblock: str | None = None  # the record's mol block, only when poses are kept (score_only)


@functools.lru_cache(maxsize=4096)
def _spell(char: str) -> str:
    """ASCII spelling of one non-ASCII, non-combining character (``_`` when it has none)."""
    if char in _SPELLED:
        return _SPELLED[char]
    name = unicodedata.name(char, "")
    match = _GREEK_NAME.fullmatch(name) or _LATIN_NAME.fullmatch(name)
    if match is None:
        return "_"
    case, letters = match.groups()
    if case == "SMALL":
        return letters.lower()
    return letters.capitalize() if name.startswith("GREEK") else letters


def transliterate(text: str) -> str:
    """Spell ``text`` in ASCII where that is unambiguous.

    NFKD decomposition, accents dropped (``é`` -> ``e``, ``Å`` -> ``A``, ``ﬁ`` -> ``fi``),
    Greek letters by name (``α`` -> ``alpha``, ``Δ`` -> ``Delta``, ``µ`` -> ``mu``), Latin
    letters with a stroke and ligatures by their letters (``ø`` -> ``o``, ``œ`` -> ``oe``,
    ``ß`` -> ``ss``). Any other non-ASCII character becomes ``_``.
    """
    if text.isascii():
        return text
    return "".join(
        c if c.isascii() else "" if unicodedata.combining(c) else _spell(c) for c in unicodedata.normalize("NFKD", text)
    )


def id_suffix(input_id: str, digits: int = SUFFIX_HEX) -> str:
    """``_`` and the first ``digits`` hex digits of the SHA-1 of ``input_id`` (UTF-8)."""
    return "_" + hashlib.sha1(input_id.encode("utf-8", "surrogatepass")).hexdigest()[:digits]


def sanitize_id(raw: str, fallback: str) -> str:
    """Make a compound id safe as a file-name part, a shell word and a spreadsheet cell.

    The id is stripped of surrounding whitespace and transliterated to ASCII
    (:func:`transliterate`: ``α-pinene`` -> ``alpha-pinene``). Then characters outside
    ``A-Z a-z 0-9 . _ + -`` become ``_``, runs of dots (``..``) become ``_``, runs of ``_``
    collapse to one, and leading ``.``, ``+`` and ``-`` are dropped (no hidden file, no
    command-line option, no spreadsheet formula; ``=`` and ``@`` are already ``_``). An id
    longer than 100 characters is cut to at most 91 (trailing ``_`` dropped) and gets
    :func:`id_suffix` of the stripped raw id, so two long ids that share their first 100
    characters stay apart. An id with no letter or digit left (``中文``, ``...``) becomes
    ``id`` + :func:`id_suffix`; one that ends up empty (``""``, ``"+"``) is replaced by
    ``fallback``.

    This is the id of one row on its own; :class:`IdRegistry` makes the ids of a whole
    library unique.
    """
    if _ALREADY_SAFE.fullmatch(raw):
        return raw
    key = raw.strip()
    clean = re.sub("_{2,}", "_", _DOTS.sub("_", _UNSAFE.sub("_", transliterate(key))))
    clean = clean.lstrip(".+-")
    if clean and not _ALNUM.search(clean):
        # nothing readable is left ('中文', '...', '***'): a bare '_' would be a poor file name,
        # and every such id would need a suffix anyway
        return "id" + id_suffix(key)
    if len(clean) > MAX_ID_LENGTH:
        suffix = id_suffix(key)
        clean = clean[: MAX_ID_LENGTH - len(suffix)].rstrip("_") + suffix
    return clean or fallback


class IdRegistry:
    """The ids of one library, given out row by row in file order (see the module docstring).

    The same sequence of input ids always gives the same ids, so any reader that walks the
    library's rows in order (the splitter, an assay reader) can reproduce them.

    Attributes
    ----------
    first_line
        Line of the row that took each sanitized id.
    """

    def __init__(self) -> None:
        self.first_line: dict[str, int] = {}
        # Most ids need no change (the id is the input id), and a million of them must not
        # cost a second table: only changed ones are remembered, input id -> id, with the
        # set of ids held by an input id other than themselves
        self._changed: dict[str, str] = {}
        self._held_by_other: set[str] = set()

    def claim(self, input_id: str, line: int, fallback: str) -> tuple[str, int | None]:
        """The id of the row on ``line``.

        Parameters
        ----------
        input_id
            The id as given (surrounding whitespace is ignored); empty for a row without one.
        line
            The row's line number (reported for duplicates).
        fallback
            The id of a row without a usable id (e.g. ``lib_line7``).

        Returns
        -------
        (id, first_line)
            ``first_line`` is ``None`` for a new id; for a duplicate ``input_id`` it is the
            line of the first row with that id, and ``id`` is that row's id.
        """
        key = input_id.strip()
        if key in self._changed:
            cid = self._changed[key]
            return cid, self.first_line[cid]
        if key in self.first_line and key not in self._held_by_other:
            return key, self.first_line[key]
        cid = sanitize_id(key, fallback) if key else fallback
        if cid in self.first_line:
            cid = self._unique(cid, key or fallback)
        self.first_line[cid] = line
        if cid != key:
            self._held_by_other.add(cid)
            if key:
                self._changed[key] = cid
        return cid, None

    def _unique(self, base: str, key: str) -> str:
        # a longer digest only if the short one is taken too (only a crafted library does that)
        for digits in (SUFFIX_HEX, 16, 40):
            suffix = id_suffix(key, digits)
            cid = base[: MAX_ID_LENGTH - len(suffix)].rstrip("_") + suffix
            if cid not in self.first_line:
                return cid
        number = 2
        while (cid := f"{base[: MAX_ID_LENGTH - 8]}_{number}") in self.first_line:
            number += 1
        return cid


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
    raise LibraryError(
        f"library '{path}' has no column '{wanted}' (columns: {', '.join(columns)}); set library.id_column / library.smiles_column"
    )


def iter_csv(
    path: str | Path,
    id_column: str = schema_default("library", "id_column"),
    smiles_column: str = schema_default("library", "smiles_column"),
) -> Iterator[Record]:
    """Yield records of a CSV/TSV file with an id and a SMILES column (names matched case-insensitively)."""
    sep = "\t" if ".tsv" in Path(path).name.lower() else ","
    with _open_text(path) as handle:
        reader = pd.read_csv(
            handle, sep=sep, dtype=str, keep_default_na=False, chunksize=50_000, skip_blank_lines=False
        )
        line = 1
        id_col = smi_col = None
        for frame in reader:
            if id_col is None:
                id_col = _find_column(list(frame.columns), id_column, path)
                smi_col = _find_column(list(frame.columns), smiles_column, path)
            for name, smiles in zip(frame[id_col], frame[smi_col]):
                line += 1
                smiles = smiles.strip()
                yield Record(line, name.strip(), smiles or None, _smiles_problem(smiles))


def _smiles_problem(smiles: str) -> str | None:
    """Why a CSV SMILES cell cannot be used as it is, or None."""
    if not smiles:
        return "no SMILES in this row"
    if any(c.isspace() for c in smiles):
        # RDKit would read 'CC O' as CC named O, and 'CC\n$$$$' as CC, and carry the rest
        # into the SD files of later stages; a SMILES is one word
        return f"SMILES {smiles!r} has a space or line break inside (a SMILES is one word)"
    return None


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


def has_3d_pose(mol) -> bool:
    """Whether an RDKit molecule read from a mol block carries a 3D pose.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        The molecule as ``Chem.MolFromMolBlock`` returns it.

    Returns
    -------
    bool
        False without a conformer, for a conformer RDKit reads as 2D or 0D (header flag,
        no coordinates), and for one whose z coordinates are all 0 (RDKit believes a
        header that says 3D even then).
    """
    if mol.GetNumConformers() == 0:
        return False
    conf = mol.GetConformer()
    return conf.Is3D() and any(abs(conf.GetAtomPosition(i).z) > 1e-6 for i in range(mol.GetNumAtoms()))


def _molblock(block: str) -> str:
    """The mol block of an SD record: up to and including ``M  END`` (the data fields dropped)."""
    match = re.search(r"^M  END[^\n]*\n?", block, flags=re.MULTILINE)
    return block[: match.end()] if match else block


def iter_sdf(path: str | Path, id_property: str | None = None, keep_poses: bool = False) -> Iterator[Record]:
    """Yield records of an SD file; the id is the title line or ``id_property``; SMILES come from RDKit.

    With ``keep_poses`` every record also carries its mol block (:attr:`Record.molblock`),
    and one without a 3D pose (:func:`has_3d_pose`) has :data:`NO_3D_POSE` as its problem.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    with _open_text(path) as handle:
        for line, block in _sdf_blocks(handle):
            title = block.split("\n", 1)[0].strip()  # surrounding whitespace is padding (module docstring)
            name = _sdf_property(block, id_property) if id_property else title
            mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=True)
            if mol is None:
                yield Record(line, name, None, "RDKit cannot read this SDF record (bad valence or malformed block)")
            elif not keep_poses:
                yield Record(line, name, Chem.MolToSmiles(mol))
            elif not has_3d_pose(mol):
                yield Record(line, name, Chem.MolToSmiles(mol), NO_3D_POSE)
            else:
                yield Record(line, name, Chem.MolToSmiles(mol), molblock=_molblock(block))


def iter_library(
    path: str | Path,
    fmt: str = schema_default("library", "format"),
    id_column: str = schema_default("library", "id_column"),
    smiles_column: str = schema_default("library", "smiles_column"),
    id_property: str | None = None,
    keep_poses: bool = False,
) -> Iterator[Record]:
    """Yield every row of a library file as a :class:`Record`, whatever its format.

    ``keep_poses`` (``docking.mode: score_only``) keeps each record's mol block and needs
    an SD file: any other format raises :class:`LibraryError` naming the file.
    """
    fmt = detect_format(path) if fmt == "auto" else fmt
    if keep_poses and fmt != "sdf":
        raise LibraryError(
            f"library '{path}' is a {fmt} file, but docking.mode score_only rescores 3D poses: "
            "give an SD file (.sdf, optionally .gz) whose records carry poses in the receptor's frame"
        )
    if fmt == "smi":
        return iter_smi(path)
    if fmt == "csv":
        return iter_csv(path, id_column, smiles_column)
    if fmt == "sdf":
        return iter_sdf(path, id_property, keep_poses)
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


def split_library(
    path: str | Path,
    out_dir: str | Path,
    failures_path: str | Path,
    chunk_size: int = schema_default("library", "chunk_size"),
    fmt: str = schema_default("library", "format"),
    id_column: str = schema_default("library", "id_column"),
    smiles_column: str = schema_default("library", "smiles_column"),
    id_property: str | None = None,
    keep_poses: bool = False,
) -> SplitSummary:
    """Stream a library into Parquet chunks of ``chunk_size`` rows, and write rejected rows.

    Parameters
    ----------
    path : the library file.
    out_dir : folder that receives ``chunk_NNNNN.parquet`` and ``manifest.json``.
    failures_path : CSV (``id, stage, reason``) for rows rejected here (stage ``input``).
    keep_poses : ``docking.mode: score_only``: an SD library only; the chunks get a
        ``molblock`` column and records without a 3D pose are rejected (module docstring).

    Returns
    -------
    SplitSummary with row, accepted, failed and chunk counts.

    Raises
    ------
    LibraryError when the file is missing or holds no usable row at all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # ASCII only, like every id (\W alone would keep unicode letters)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", transliterate(Path(path).name.split(".")[0])).strip("_") or "cpd"
    ids = IdRegistry()
    accepted = 0
    failures: list[dict] = []
    buffer: list[tuple] = []
    rows = n_chunks = 0
    columns = POSE_CHUNK_COLUMNS if keep_poses else CHUNK_COLUMNS
    records = iter_library(path, fmt, id_column, smiles_column, id_property, keep_poses)
    for record in progress(records, desc=f"split {Path(path).name}", unit="row"):
        rows += 1
        # every row claims its id, a rejected one too, so that the ids depend on the input ids
        # alone (not on which rows parse): any reader walking the same rows gets the same ids
        cid, first = ids.claim(record.input_id, record.line, f"{stem}_line{record.line}")
        if first is not None:
            # repr: a duplicated id with a line break inside stays on one line of the reason
            failures.append(
                dict(
                    id=cid,
                    stage="input",
                    reason=(
                        f"line {record.line}: duplicate id {record.input_id.strip()!r} (id '{cid}' first used on line {first}); "
                        "this row was not screened - give it a unique id"
                    ),
                )
            )
            continue
        if record.problem:
            failures.append(dict(id=cid, stage="input", reason=f"line {record.line}: {record.problem}"))
            continue
        accepted += 1
        row = (cid, record.input_id, record.smiles, record.line)
        buffer.append((*row, record.molblock) if keep_poses else row)
        if len(buffer) == chunk_size:
            _write_chunk(buffer, out_dir, n_chunks, columns)
            n_chunks, buffer = n_chunks + 1, []
    if buffer:
        _write_chunk(buffer, out_dir, n_chunks, columns)
        n_chunks += 1
    if rows == 0:
        raise LibraryError(f"library '{path}' is empty: no compounds to screen")
    write_failures(failures, failures_path)
    summary = SplitSummary(rows=rows, accepted=accepted, failed=len(failures), chunks=n_chunks)
    # the manifest names the chunks this split made: later stages read it instead of globbing
    write_manifest(out_dir, "chunks", [chunk_name(i) for i in range(n_chunks)], **summary.to_dict())
    return summary


def _write_chunk(rows: list[tuple], out_dir: Path, index: int, columns: list[str] = CHUNK_COLUMNS) -> None:
    # pyarrow directly: a million compounds in chunks of 25 are 40,000 files, and a pandas
    # DataFrame per chunk costs five times as much as the table itself
    import pyarrow as pa
    import pyarrow.parquet as pq

    # CHUNK_COLUMNS: id, input_id, smiles, line; POSE_CHUNK_COLUMNS add molblock
    types = (pa.string(), pa.string(), pa.string(), pa.int64(), pa.string())
    table = pa.table({name: pa.array(values, kind) for name, values, kind in zip(columns, zip(*rows), types)})
    with atomic_path(out_dir / chunk_name(index, ".parquet")) as tmp:
        pq.write_table(table, tmp)


def chunk_name(index: int, suffix: str = "") -> str:
    """File name of chunk ``index`` (``chunk_00003`` + suffix)."""
    return f"chunk_{index:05d}{suffix}"


def list_chunks(out_dir: str | Path) -> list[str]:
    """Names (without suffix) of the chunks written by :func:`split_library`, in order (from its manifest)."""
    return read_manifest(out_dir, "chunks")
