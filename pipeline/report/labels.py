"""Activity labels carried by a library (e.g. the demo's ``active`` column).

A screen of a labelled library (actives and decoys, as in DUD-E) can be judged:
the report then shows enrichment curves and AUROC / EF1% / BEDROC per score. The
labels are read from the library file itself: a CSV/TSV column or an SD property
(named by ``report.label_column``, matched case-insensitively), keyed by the
compound's input id. SMILES files carry no labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import schema_default
from ..library import _open_text, _sdf_blocks, _sdf_property, detect_format

_TRUE = {"1", "1.0", "true", "t", "yes", "y", "active"}
_FALSE = {"0", "0.0", "false", "f", "no", "n", "inactive", "decoy"}


def parse_label(text: object) -> float:
    """``1.0`` for an active (1, true, yes, active), ``0.0`` for an inactive (0, false, no, inactive, decoy), else NaN."""
    value = str(text).strip().lower()
    return 1.0 if value in _TRUE else 0.0 if value in _FALSE else float("nan")


def _csv_labels(path: Path, id_column: str, label_column: str) -> pd.Series | None:
    sep = "\t" if ".tsv" in path.name.lower() else ","
    with _open_text(path) as handle:
        header = list(pd.read_csv(handle, sep=sep, nrows=0).columns)
    match = {c.strip().lower(): c for c in header}
    id_col, label_col = match.get(id_column.lower()), match.get(label_column.lower())
    if id_col is None or label_col is None:
        return None
    with _open_text(path) as handle:
        table = pd.read_csv(handle, sep=sep, dtype=str, keep_default_na=False, usecols=[id_col, label_col])
    return pd.Series(table[label_col].map(parse_label).to_numpy(), index=table[id_col].str.strip())


def _sdf_labels(path: Path, id_property: str | None, label_column: str) -> pd.Series | None:
    ids, labels = [], []
    with _open_text(path) as handle:
        for _, block in _sdf_blocks(handle):
            name = _sdf_property(block, id_property) if id_property else block.split("\n", 1)[0].strip()
            ids.append(name)
            labels.append(parse_label(_sdf_property(block, label_column)))
    if not ids or all(np.isnan(labels)):
        return None
    return pd.Series(labels, index=ids)


def read_labels(
    library: dict[str, Any], label_column: str = schema_default("report", "label_column")
) -> pd.Series | None:
    """Labels of a library's compounds by input id.

    Parameters
    ----------
    library
        The ``library`` section of a run config (``path``, ``format``, ``id_column``, ``id_property``).
    label_column
        Column (CSV/TSV) or SD property holding the labels.

    Returns
    -------
    pandas.Series or None
        ``1.0`` (active) / ``0.0`` (inactive) / NaN (unreadable) indexed by input id, first
        occurrence of a duplicated id kept (as the splitter does); ``None`` when the library
        has no such column, is a SMILES file, or cannot be read any more.
    """
    path = Path(library["path"])
    if not path.is_file():
        return None
    fmt = (
        detect_format(path)
        if library.get("format", schema_default("library", "format")) == "auto"
        else library["format"]
    )
    if fmt == "csv":
        labels = _csv_labels(path, library.get("id_column", schema_default("library", "id_column")), label_column)
    elif fmt == "sdf":
        labels = _sdf_labels(path, library.get("id_property"), label_column)
    else:
        return None
    if labels is None:
        return None
    return labels[~labels.index.duplicated(keep="first")]


def label_ranking(ranking: pd.DataFrame, labels: pd.Series | None) -> pd.Series | None:
    """The label of every ranked compound (aligned with ``ranking``'s rows; NaN where unknown).

    Returns ``None`` when there are no labels or no ranked compound has one.
    """
    if labels is None or not len(ranking):
        return None
    aligned = ranking["input_id"].astype(str).str.strip().map(labels).astype(float)
    aligned.index = ranking.index
    return aligned if aligned.notna().any() else None
