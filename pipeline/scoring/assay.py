"""Assay tables: the labels a scorer is trained on.

Two shapes, told apart by their columns (names matched case-insensitively):

* ``id, smiles, value`` - regression (e.g. pKd, pIC50; higher = more potent);
* ``id, smiles, active`` - classification (``1/0``, ``true/false``, ``yes/no``,
  ``active/inactive``).

Files are CSV, TSV (``.tsv``) or Parquet. Ids are sanitized exactly as the library
reader does (:func:`pipeline.library.sanitize_id`), so they match the ids of the
docked and featurized compounds. Rows that cannot be used - no id, an invalid
SMILES, a missing or unreadable label, an id seen before - are returned as failure
rows (stage ``assay``) with the reason and left out; the rest is used.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rdkit import Chem, RDLogger

from ..errors import VscreenError
from ..library import sanitize_id

RDLogger.DisableLog("rdApp.*")

STAGE = "assay"
LABEL_COLUMN = {"regression": "value", "classification": "active"}
_TRUE = {"1", "1.0", "true", "t", "yes", "y", "active"}
_FALSE = {"0", "0.0", "false", "f", "no", "n", "inactive"}


class AssayError(VscreenError, ValueError):
    """The assay table as a whole cannot be used (missing file, missing columns, no usable row)."""


@dataclass
class Assay:
    """A cleaned assay table.

    Attributes
    ----------
    table
        One row per usable compound, in file order: ``id`` (sanitized), ``smiles``,
        ``label`` (float: the value, or 1.0/0.0 for active/inactive), ``line`` (1-based
        line in the file, header = 1).
    task
        ``regression`` or ``classification``.
    failures
        Rows ``id, stage, reason`` for the rows left out.
    """

    table: pd.DataFrame
    task: str
    failures: list[dict] = field(default_factory=list)


def _read_table(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.astype(str).reset_index(drop=True)
    path = Path(source)
    if not path.is_file():
        raise AssayError(f"assay table '{path}' does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path).astype(str)
    sep = "\t" if ".tsv" in path.name.lower() else ","
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AssayError(f"assay table '{path}' cannot be read as {'TSV' if sep == chr(9) else 'CSV'}: {exc}") from exc


def _column(columns: list[str], wanted: str) -> str | None:
    return next((c for c in columns if c.strip().lower() == wanted), None)


def _label(text: str, task: str) -> tuple[float | None, str | None]:
    """(label, None) or (None, reason)."""
    text = text.strip()
    if text == "" or text.lower() in ("nan", "na", "n/a", "none", "null"):
        return None, f"missing {LABEL_COLUMN[task]}"
    if task == "classification":
        low = text.lower()
        if low in _TRUE:
            return 1.0, None
        if low in _FALSE:
            return 0.0, None
        return None, f"active must be 1/0, true/false, yes/no or active/inactive, got {text!r}"
    try:
        value = float(text)
    except ValueError:
        return None, f"value is not a number: {text!r}"
    return (value, None) if math.isfinite(value) else (None, f"value is not finite: {text!r}")


def read_assay(source: str | os.PathLike | pd.DataFrame, task: str | None = None) -> Assay:
    """Read and clean an assay table.

    Parameters
    ----------
    source
        CSV/TSV/Parquet path, or a DataFrame, with ``id``, ``smiles`` and ``value`` or ``active``.
    task
        ``regression`` or ``classification``; ``None`` infers it from the columns
        (``value`` -> regression, ``active`` -> classification).

    Returns
    -------
    Assay
        Usable rows and failure rows (stage ``assay``) for the others.

    Raises
    ------
    AssayError
        Missing file or columns, an ambiguous task, or no usable row at all.
    """
    df = _read_table(source)
    columns = list(df.columns)
    id_col, smi_col = _column(columns, "id"), _column(columns, "smiles")
    value_col, active_col = _column(columns, "value"), _column(columns, "active")
    name = source if not isinstance(source, pd.DataFrame) else "(table)"
    if id_col is None or smi_col is None:
        raise AssayError(f"assay table {name} needs columns 'id' and 'smiles' (found: {', '.join(columns)})")
    if task is None:
        if value_col is not None and active_col is not None:
            raise AssayError(
                f"assay table {name} has both 'value' and 'active' columns; set the task (regression or classification)"
            )
        task = "regression" if value_col is not None else "classification" if active_col is not None else None
    if task not in LABEL_COLUMN:
        raise AssayError(
            f"assay table {name} needs a 'value' column (regression) or an 'active' column "
            f"(classification); found: {', '.join(columns)}"
        )
    label_col = value_col if task == "regression" else active_col
    if label_col is None:
        raise AssayError(f"assay table {name} has no '{LABEL_COLUMN[task]}' column for task {task}")

    rows, failures, first_line = [], [], {}
    for offset, (raw_id, smiles, raw_label) in enumerate(zip(df[id_col], df[smi_col], df[label_col])):
        line = offset + 2
        raw_id, smiles = str(raw_id).strip(), str(smiles).strip()
        cid = sanitize_id(raw_id, fallback=f"line{line}")
        reason = None
        if not raw_id:
            reason = "no id"
        elif cid in first_line:
            reason = f"duplicate id (first seen on line {first_line[cid]})"
        elif not smiles:
            reason = "no SMILES"
        elif Chem.MolFromSmiles(smiles) is None:
            reason = f"invalid SMILES {smiles!r}"
        label, why = (None, None) if reason else _label(str(raw_label), task)
        reason = reason or why
        if reason:
            failures.append(dict(id=cid, stage=STAGE, reason=f"line {line}: {reason}"))
            continue
        first_line[cid] = line
        rows.append(dict(id=cid, smiles=smiles, label=float(label), line=line))
    if not rows:
        raise AssayError(
            f"assay table {name} has no usable row ({len(failures)} rejected; first reason: "
            f"{failures[0]['reason'] if failures else 'empty table'})"
        )
    return Assay(pd.DataFrame(rows, columns=["id", "smiles", "label", "line"]), task, failures)
