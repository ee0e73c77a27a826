"""Collating the stages into ``ranking.csv``, ``failures.csv`` and ``pose_warnings.csv``.

The ranking has one row per compound that produced at least one docked pose, in the
order that ``score.rank_by`` asks for (:func:`order_ranking`). ``failures.csv`` holds
the rows rejected at input and the compounds that a required stage could not handle
(``id, stage, reason``). ``pose_warnings.csv`` holds the problems of compounds that
are still ranked. Every input row ends in exactly one of ``ranking.csv`` and
``failures.csv``; :func:`check_accounting` fails the run (:class:`AccountingError`)
when that does not hold, rather than hiding a stage's bug behind a made-up failure.

Which stage may remove a compound
---------------------------------
``prepare`` and ``dock``
    Required: a compound without a docked pose is a failure row.
``refine`` and featurization of refined poses
    Optional (MD refines a few docked compounds): their failures never remove a
    compound. It stays ranked by its docked pose, its ``md_*`` columns empty, with
    ``md_status`` = ``failed`` and the reason in ``md_reason``; the failure rows go to
    ``pose_warnings.csv``. ``md_status`` is ``refined`` for a refined compound and
    ``not selected`` for one that was never chosen for MD. A compound that was
    selected but has neither a result nor a recorded failure is ``failed`` too, with
    reason ``no refinement result and no recorded failure``. Scoring failures of
    refined graphs (``scores.failures.csv`` rows whose reason starts with
    ``refined batch``) are warnings as well. Before them, ``md_refined`` (true for a
    refined compound) and ``md_score_delta`` say whether MD changed the scorer's view of
    the compound and by how much: ``gnn_score_refined - gnn_score`` (its best refined
    complex against its best docked pose; positive = the model likes it better after MD),
    empty for a compound that was not refined or has no GNN score. The order comes
    from the docked scores (``rank_by``); then MD moves the refined compounds among
    themselves ("MD in the order" below).
Featurization and scoring of docked poses
    The docking score of a compound whose docked poses could not be featurized (or
    whose docked graphs could not be scored) is still a valid Vina result, but it has
    no interaction columns and no GNN score. With ``rank_by: docking`` nothing the
    order needs is missing: it stays ranked, its ``gnn_*`` and interaction columns
    empty, the failure rows in ``pose_warnings.csv``. With ``rank_by: gnn`` or
    ``consensus`` it becomes one failure row (stage of its first failure, the reasons
    joined): a rank number would claim a comparison with the scored library that
    was never made, and putting a -12 kcal/mol compound below every scored one (NaN
    sorts last) would read as "the model thinks it is poor" to whoever scans the
    ranking. In ``failures.csv`` a chemist sees it with the reason and can look at
    it. A compound with at least one good docked pose only gets warnings.

MD in the order
---------------
With ``score.md_rerank`` (the default) every refined compound gets ``md_rescore``, the
with-MD score of :mod:`pipeline.md_rescore` (its MD interaction energy and stability
descriptors with its Vina score, fitted on measured affinities; lower = better), and the
refined compounds are reordered by it among the places the ranking gave them; the other
compounds keep their places. ``md_rank_change`` says how many places the reordering moved a
refined compound (positive = up), empty for the others. With ``md_rerank: false`` the columns
are still written (every change 0) and MD moves no compound. The pose-validity demotion below
comes after this reordering.

When the model is out of its domain
-----------------------------------
With ``rank_by: gnn`` or ``consensus`` and ``score.domain_check`` on, the model ranks only
the compounds it can be trusted on (:mod:`pipeline.scoring.domain`); the others are ranked
by their docking score instead:

* every compound, when the run's pocket is farther than ``score.max_pocket_distance`` from
  the nearest pocket the model was trained on (the score stage's ``domain.json``);
* a compound whose ``gnn_spread`` (the ensemble's spread for its best-scored docked pose) is
  above ``score.max_spread``.

``ranked_by`` says which score placed each compound (``gnn``, ``consensus`` or ``docking``)
and ``domain_reason`` why it fell back (``pocket distance 0.41 > 0.25 to nearest training
pocket 'BRD4'``, ``spread 1.93 > 1.50``; empty for the others). The pocket reason comes
first: when it holds, the spread is not looked at.

A mixed list is ordered by percentiles, so that the two scores, on different scales, are
compared by position and not by value. A compound the model ranks gets the mid-rank
percentile of its model score (``gnn_score`` or ``consensus_score``) among the compounds the
model ranks; a compound that falls back gets the percentile of its docking score among all
ranked compounds (all have one). ``(r - 0.5) / n`` with ``r`` the average rank from the worst
(``r = n`` the best), so the best model-ranked and the best docked compound both sit near 1.
The ranking sorts by that percentile, highest first; ties are broken by docking score, then
id. When every compound falls back this is the docking order exactly; when none does, it is
the model's order exactly (the plain sort by score is used then). ``gnn_score`` and
``consensus_score`` are still written for the compounds that fell back (the consensus is
computed over the whole ranked library, as without the check), so ``rank`` is the order, not a
sort of either column. With ``rank_by: docking`` nothing changes: every ``ranked_by`` is
``docking`` and every ``domain_reason`` empty.

Pose validity
-------------
With ``report.check_poses`` (the default in a run; :mod:`pipeline.pose_validity`) the pose
of each of the top ``report.check_poses_top_n`` compounds (``report.top_n`` by default; every
compound with ``report.check_all_poses``), the refined one where refined, is checked with
PoseBusters against the receptor, and the ranking gains ``pose_valid``, ``failed_checks``,
``pose_check`` and ``pose_check_reason`` after ``domain_reason``. With
``report.rank_valid_first: true`` (default) the order above is then changed in one way only:
the compounds whose pose is invalid (``pose_valid`` false) move below every other compound,
keeping their order among themselves; valid, unchecked and unjudged compounds keep their
relative order. Compounds that move up into the top N are checked in turn, so the top N hold
no pose known to be invalid (up to a limit, see :mod:`pipeline.pose_validity`). ``rank``
numbers the final order. Without pose checks (``build_ranking`` called without
``pose_checks``) none of these columns is written.

Scale
-----
A compound lives in exactly one chunk, so its docked summary (best score, pose
count, interaction counts and key interactions of its best featurized pose) is
computed chunk by chunk and only those small columns are kept, as Arrow tables
(compact strings). The library-wide steps (joins, sorting, the accounting check)
run on Arrow arrays, and the CSV files are written in batches. A million compounds
rank in well under 2 GB of memory (``benchmarks/rank_scale.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .config import schema_default
from .io import FAILURE_COLUMNS, atomic_open, atomic_path, neutralize_csv_cells
from .layout import RunLayout
from .md_rescore import RANKING_FEATURES, load_md_rescore, reorder_refined
from .pose_validity import POSE_COLUMNS, PoseCheckSettings, check_ranked_poses, demote_invalid
from .scoring.domain import DomainSettings, PocketRecord, pocket_reason, spread_reasons

log = logging.getLogger(__name__)

__all__ = [
    "AccountingError",
    "RankedRun",
    "RANKING_COLUMNS",
    "SCORE_COLUMNS",
    "DOMAIN_COLUMNS",
    "MD_COLUMNS",
    "MD_STATUS_COLUMNS",
    "MD_CHANGE_COLUMNS",
    "MD_STATUSES",
    "RANK_BY",
    "md_summary",
    "persistent_interactions",
    "gnn_summary",
    "order_ranking",
    "build_ranking",
    "check_accounting",
    "write_ranking",
    "rank_run",
    "write_table_csv",
]

RANKING_COLUMNS = [
    "rank",
    "id",
    "input_id",
    "smiles",
    "prepared_smiles",
    "docking_score",
    "n_poses",
    "heavy_atoms",
    "formal_charge",
    "rotatable_bonds",
]
# with GNN scoring, these follow the docking score (in this order, where present)
SCORE_COLUMNS = ["gnn_score", "gnn_spread", "consensus_score", "gnn_score_refined", "gnn_spread_refined"]
#: After the score columns, in every ranking: which score placed the compound, and why not the model's.
DOMAIN_COLUMNS = ["ranked_by", "domain_reason"]
MD_COLUMNS = {
    "pose": "md_pose",
    "rmsd_mean": "md_rmsd_mean",
    "rmsd_max": "md_rmsd_max",
    "rmsd_final": "md_rmsd_final",
    "pocket_backbone_rmsd": "md_pocket_backbone_rmsd",
    "interaction_energy": "md_interaction_energy",
    "interaction_energy_std": "md_interaction_energy_std",
}
#: Last columns of the ranking: what happened to the compound in the optional MD stage.
MD_STATUS_COLUMNS = ["md_status", "md_reason"]
#: Just before them: whether MD refined the compound, how MD changed its GNN score, its with-MD
#: score and how many places the with-MD reordering moved it (``score.md_rerank``).
MD_CHANGE_COLUMNS = ["md_refined", "md_score_delta", "md_rescore", "md_rank_change"]
MD_STATUSES = ("refined", "failed", "not selected")
RANK_BY = ("docking", "gnn", "consensus")
#: Interaction types listed first in the ``interactions`` column, in this order; others follow in column order.
KEY_INTERACTION_PRIORITY = (
    "HBDonor",
    "HBAcceptor",
    "Cationic",
    "Anionic",
    "CationPi",
    "PiCation",
    "PiStacking",
    "XBDonor",
)
LIGAND_FIELDS = ["id", "prepared_smiles", "heavy_atoms", "formal_charge", "rotatable_bonds"]
NO_MD_RECORD = "no refinement result and no recorded failure"
#: Prefix of the reason of a ``scores.failures.csv`` row about a refined batch (see :mod:`pipeline.scoring.score`).
REFINED_SCORE_PREFIX = "refined batch"


class AccountingError(RuntimeError):
    """The run does not account for every input row exactly once.

    Raised at the end of ``rank`` when an accepted id is in neither the ranking nor the
    failures, is counted twice (ranked and failed, or failed twice), or when a failure
    row names an id that was never an input. It means a stage lost or duplicated
    compounds: a bug to report, so it is not a :class:`pipeline.errors.VscreenError`
    and keeps its traceback. Nothing is written.

    Attributes
    ----------
    missing, twice, unknown
        The ids of each kind (all of them; the message lists a few).
    """

    def __init__(self, missing: Sequence[str] = (), twice: Sequence[str] = (), unknown: Sequence[str] = ()):
        self.missing, self.twice, self.unknown = list(missing), list(twice), list(unknown)

        def few(ids: list[str]) -> str:
            shown = ", ".join(repr(i) for i in ids[:5])
            return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")

        parts = []
        if self.missing:
            parts.append(
                f"{len(self.missing)} input ids are in neither the ranking nor the failures ({few(self.missing)})"
            )
        if self.twice:
            parts.append(f"{len(self.twice)} ids are counted twice ({few(self.twice)})")
        if self.unknown:
            parts.append(f"{len(self.unknown)} failure rows name ids that are not inputs ({few(self.unknown)})")
        super().__init__(
            "the run does not account for every input row exactly once: "
            + "; ".join(parts)
            + ". A stage lost or duplicated compounds; please report this with the run folder."
        )


# --------------------------------------------------------------------------- small tables


def _read_failure_table(path: str | os.PathLike) -> pa.Table:
    """A failures CSV (``id, stage, reason``) as Arrow strings; empty cells stay empty strings, not nulls."""
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in FAILURE_COLUMNS},
            include_columns=FAILURE_COLUMNS,
            strings_can_be_null=False,
        ),
    )


def _empty_failures() -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in FAILURE_COLUMNS})


def _concat_failures(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t.select(FAILURE_COLUMNS).cast(_empty_failures().schema) for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else _empty_failures()


def _priority_key(pair: str) -> tuple[bool, int]:
    kind = pair.split(":")[1]
    return (
        kind not in KEY_INTERACTION_PRIORITY,
        KEY_INTERACTION_PRIORITY.index(kind) if kind in KEY_INTERACTION_PRIORITY else 0,
    )


def _join_present(names: Sequence[str], matrix: np.ndarray, top: int) -> pa.Array:
    """For each row of a boolean matrix, the names of its first ``top`` true columns joined by ``"; "``."""
    keep = matrix & (np.cumsum(matrix, axis=1) <= top)
    rows, cols = np.nonzero(keep)  # row-major: each row's kept columns come in column order
    offsets = np.searchsorted(rows, np.arange(len(matrix) + 1)).astype(np.int32)
    values = pa.array(np.asarray(names, dtype=object)[cols] if len(cols) else [], pa.string())
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), values), "; ")


def _first_per_id(table: pa.Table, sort_keys: list[tuple[str, str, str]]) -> pa.Table:
    """The first row of each ``id`` after sorting by ``sort_keys`` (which start with ``id``)."""
    table = table.take(pc.sort_indices(table, sort_keys=sort_keys)).combine_chunks()
    if table.num_rows < 2:
        return table
    ids = table["id"]
    changed = pc.not_equal(ids[1:], ids[:-1]).combine_chunks()
    return table.filter(pa.concat_arrays([pa.array([True]), changed]))


def _best_pose_interactions(path: Path, top: int) -> pa.Table | None:
    """Interaction counts and key interactions of each compound's best featurized docked pose (lowest pose number).

    Returns ``id``, the ``n_<Type>`` counts and ``interactions``; ``None`` without a table or rows.
    """
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if not table.num_rows:
        return None
    table = _first_per_id(_strings(table), [("id", "ascending", "at_end"), ("pose", "ascending", "at_end")])
    counts = [c for c in table.column_names if c.startswith("n_")]
    pairs = sorted((c for c in table.column_names if ":" in c), key=_priority_key)  # stable: column order in ties
    matrix = (
        np.column_stack([pc.fill_null(table[c], False).to_numpy(zero_copy_only=False).astype(bool) for c in pairs])
        if pairs
        else np.zeros((table.num_rows, 0), bool)
    )
    return pa.table(
        {"id": table["id"], **{c: table[c] for c in counts}, "interactions": _join_present(pairs, matrix, top)}
    )


def _read_tables(paths: Iterable[str | Path], columns: list[str] | None = None) -> pd.DataFrame | None:
    frames = [pd.read_parquet(p, columns=columns) for p in paths if Path(p).is_file()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def md_summary(refined_tables: Iterable[str | Path]) -> pd.DataFrame:
    """Per refined compound, the MD metrics of its pose with the lowest interaction energy (``md_*`` columns)."""
    table = _read_tables(refined_tables, ["id", *MD_COLUMNS])
    if table is None:
        return pd.DataFrame({"id": pd.Series(dtype=str), **{c: pd.Series(dtype=float) for c in MD_COLUMNS.values()}})
    table = table.sort_values(["id", "interaction_energy", "pose"], kind="mergesort")
    return table.drop_duplicates("id")[["id", *MD_COLUMNS]].rename(columns=MD_COLUMNS).reset_index(drop=True)


def persistent_interactions(feature_tables: Iterable[str | Path], threshold: float = 0.5, top: int = 6) -> pd.DataFrame:
    """Per refined compound: residue–interaction pairs present in at least ``threshold`` of the MD frames.

    ``md_interactions`` lists them most persistent first (ties by name, descending), at most
    ``top``, as ``RESIDUE:Interaction (75%)``. The refined set is small (``refine.top_n``),
    so this loops over its rows (over NumPy rows, not a DataFrame apply).
    """
    table = _read_tables(feature_tables)
    if table is None:
        return pd.DataFrame({"id": pd.Series(dtype=str), "md_interactions": pd.Series(dtype=str)})
    table = table.sort_values(["id", "pose"], kind="mergesort").drop_duplicates("id")
    pairs = np.array([c for c in table.columns if ":" in c], dtype=object)
    values = table[list(pairs)].astype(float).to_numpy() if len(pairs) else np.zeros((len(table), 0))
    texts = []
    for row in values:
        found = np.nonzero(row >= threshold)[0]  # NaN (pair absent from this batch) is never >= threshold
        ranked = sorted(((float(row[i]), pairs[i]) for i in found), reverse=True)[:top]
        texts.append("; ".join(f"{c} ({v:.0%})" for v, c in ranked))
    return pd.DataFrame({"id": table["id"].to_numpy(), "md_interactions": texts})


# --------------------------------------------------------------------------- GNN scores and order


def _nan_to_null(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Float NaN as null, so that Arrow's sorts and joins treat a missing score as missing."""
    if pa.types.is_floating(values.type):
        return pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
    return values


def _strings(table: pa.Table) -> pa.Table:
    """Every string column as ``string`` (pandas may hand over ``large_string``), so Arrow joins line up."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _best_rows(table: pa.Table) -> pa.Table:
    """Per ``id``, the row with the highest ``gnn_score`` (a missing score last), lowest ``pose`` on a tie.

    Only the sort keys are sorted and only the chosen rows are taken: at a million scored
    graphs a sorted copy of the whole table would be the stage's largest allocation.
    """
    ids, score = _array(table["id"]), _array(_nan_to_null(table["gnn_score"]))
    keys = pa.table({"id": ids, "gnn_score": score, "pose": _array(table["pose"])})
    order = pc.sort_indices(
        keys,
        sort_keys=[
            ("id", "ascending", "at_end"),
            ("gnn_score", "descending", "at_end"),
            ("pose", "ascending", "at_end"),
        ],
    )
    if len(order) > 1:
        ranked = ids.take(order)
        order = order.filter(pa.concat_arrays([pa.array([True]), pc.not_equal(ranked[1:], ranked[:-1])]))
    return pa.table(
        {"id": ids.take(order), "gnn_score": score.take(order), "gnn_spread": _array(table["gnn_spread"]).take(order)}
    )


def _gnn_summary_arrow(scores: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Arrow form of :func:`gnn_summary`: ``(docked, refined)`` tables of ``id, gnn_score, gnn_spread``."""
    table = _strings(scores.select(["id", "pose", "source", "gnn_score", "gnn_spread"]))
    docked = _best_rows(table.filter(pc.equal(table["source"], "docked")))
    refined = _best_rows(table.filter(pc.equal(table["source"], "refined")))
    return docked, refined.rename_columns(["id", "gnn_score_refined", "gnn_spread_refined"])


def gnn_summary(scores: pd.DataFrame | pa.Table | None) -> pd.DataFrame:
    """Per compound, the GNN ensemble's score of its best-scored docked pose and of its refined complex.

    ``scores`` has one row per scored graph (``id, pose, source, gnn_score, gnn_spread``,
    from :func:`pipeline.scoring.score.score_graph_files`). Returns ``id, gnn_score,
    gnn_spread`` (the best docked pose: highest score, lowest pose number on a tie) and
    ``gnn_score_refined, gnn_spread_refined`` (compounds that were refined; NaN for the others).
    """
    columns = ["id", "gnn_score", "gnn_spread", "gnn_score_refined", "gnn_spread_refined"]
    if scores is None or not len(scores):
        return pd.DataFrame(columns=columns)
    table = scores if isinstance(scores, pa.Table) else pa.Table.from_pandas(scores, preserve_index=False)
    docked, refined = _gnn_summary_arrow(table)
    return docked.to_pandas().merge(refined.to_pandas(), on="id", how="outer")[columns]


def _zscore(values: pd.Series) -> pd.Series:
    std = values.std(ddof=0)
    return (values - values.mean()) / std if std and std > 0 else values * 0.0


def _consensus(gnn: np.ndarray, docking: np.ndarray, weight: float) -> np.ndarray:
    """``w * z(gnn_score) + (1 - w) * z(-docking_score)``, population z-scores over the ranked library."""
    return (
        weight * _zscore(pd.Series(gnn, dtype=float)) + (1 - weight) * _zscore(-pd.Series(docking, dtype=float))
    ).to_numpy()


def _rank_order(keys: pa.Table, rank_by: str) -> pa.Array:
    """Row order of the ranking (indices), from ``id``, ``docking_score`` and the ``rank_by`` score.

    With a ``rank_key`` column (a mixed list, :func:`_mixed_key`) that sorts first instead of the score.
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}; got {rank_by!r}")
    sort = [("docking_score", "ascending", "at_end"), ("id", "ascending", "at_end")]
    if "rank_key" in keys.column_names:
        sort.insert(0, ("rank_key", "descending", "at_end"))
    elif rank_by != "docking":
        sort.insert(0, ("gnn_score" if rank_by == "gnn" else "consensus_score", "descending", "at_end"))
    table = pa.table({key[0]: _nan_to_null(keys[key[0]]) for key in sort})
    return pc.sort_indices(table, sort_keys=sort)


def _fallback(
    spread: np.ndarray, rank_by: str, domain: DomainSettings | None, pocket: PocketRecord | None
) -> tuple[np.ndarray, np.ndarray]:
    """Which compounds are ranked by docking instead of the model, and why (``(bool mask, reasons)``).

    The pocket reason applies to every compound and comes first; otherwise each compound's
    spread is compared with ``max_spread`` (see the module docstring).
    """
    n = len(spread)
    if rank_by == "docking" or domain is None:
        return np.zeros(n, bool), np.full(n, "", dtype=object)
    reason = pocket_reason(pocket, domain)
    if reason:
        return np.ones(n, bool), np.full(n, reason, dtype=object)
    reasons = spread_reasons(spread, domain)
    return reasons != "", reasons


def _percentile(values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile ``(r - 0.5) / n`` of each value among the finite ones, higher = better; NaN stays NaN."""
    ranks = pd.Series(values, dtype=float).rank(method="average").to_numpy()
    count = int(np.isfinite(ranks).sum())
    return (ranks - 0.5) / count if count else ranks


def _mixed_key(model: np.ndarray, docking: np.ndarray, fallback: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """The sort key of a mixed list: model-score percentile among the model-ranked, docking percentile among all.

    ``model`` is ``gnn_score`` or ``consensus_score`` (higher = better), ``docking`` the docking
    score (lower = better); only ``ranked`` rows take part (the others get NaN and sort last).
    """
    key = np.full(len(model), np.nan)
    by_model = ranked & ~fallback
    key[by_model] = _percentile(model[by_model])
    by_docking = _percentile(-docking[ranked])
    key[ranked & fallback] = by_docking[fallback[ranked]]
    return key


def order_ranking(
    ranking: pd.DataFrame,
    rank_by: str = schema_default("score", "rank_by"),
    consensus_weight: float = schema_default("score", "consensus_weight"),
    domain: DomainSettings | None = None,
    pocket: PocketRecord | None = None,
) -> pd.DataFrame:
    """Sort the ranking and number it (``rank`` column first), with ``ranked_by`` and ``domain_reason``.

    Parameters
    ----------
    ranking
        One row per compound: ``id``, ``docking_score`` and, for ``gnn``/``consensus``,
        ``gnn_score`` (and ``gnn_spread`` for the spread check).
    rank_by
        ``docking`` (most negative docking score first), ``gnn`` (highest ``gnn_score``
        first, docking score breaks ties) or ``consensus`` (``consensus_score`` =
        ``w * z(gnn_score) + (1 - w) * z(-docking_score)``, z-scores over the ranked
        library, highest first). Compounds without the score sort last; the id breaks the
        remaining ties.
    consensus_weight
        ``w``.
    domain, pocket
        The domain check (:class:`~pipeline.scoring.domain.DomainSettings`) and the run's
        pocket record: compounds out of the model's domain are ranked by docking, a mixed
        list by percentiles (module docstring). ``None``: no check.

    Returns
    -------
    pandas.DataFrame
        A sorted copy with ``rank`` first, ``consensus_score`` for ``consensus``, and
        ``ranked_by`` / ``domain_reason`` per compound.
    """
    ranking = ranking.drop(columns=["rank"], errors="ignore").reset_index(drop=True)
    if rank_by == "consensus":
        ranking["consensus_score"] = _consensus(
            ranking["gnn_score"].to_numpy(dtype=float), ranking["docking_score"].to_numpy(dtype=float), consensus_weight
        )
    docking = ranking["docking_score"].to_numpy(dtype=float)
    spread = ranking["gnn_spread"].to_numpy(dtype=float) if "gnn_spread" in ranking else np.full(len(ranking), np.nan)
    fallback, reasons = _fallback(spread, rank_by, domain, pocket)
    ranking["ranked_by"] = np.where(fallback, "docking", rank_by)
    ranking["domain_reason"] = reasons
    keys = {
        "id": pa.array(ranking["id"].astype(str).to_numpy(dtype=object), pa.string()),
        "docking_score": pa.array(docking, from_pandas=True),
    }
    if rank_by != "docking":
        score = "gnn_score" if rank_by == "gnn" else "consensus_score"
        keys[score] = pa.array(ranking[score].to_numpy(dtype=float), from_pandas=True)
        if fallback.any():
            model = ranking[score].to_numpy(dtype=float)
            keys["rank_key"] = pa.array(_mixed_key(model, docking, fallback, np.ones(len(ranking), bool)))
    order = _rank_order(pa.table(keys), rank_by).to_numpy()
    ranking = ranking.iloc[order].reset_index(drop=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))
    return ranking


# --------------------------------------------------------------------------- the run


@dataclass
class RankedRun:
    """What :func:`build_ranking` collated, as Arrow tables (compact at a million rows).

    The ranked compounds are kept in chunk order with their rank order beside them, so
    that the ranking is written in batches without a sorted copy of the whole table
    (:meth:`ranking_rows`).

    Attributes
    ----------
    table
        The docked compounds, one row each, in chunk order (integers stored compactly);
        those that a required stage failed are left in it but out of ``order``.
    order
        Row indices of ``table`` in rank order: the ranked compounds.
    failures
        ``failures.csv`` (``id, stage, reason``).
    warnings
        ``pose_warnings.csv``: problems of compounds that are still ranked.
    gaps
        Integer columns with a missing value in some ranked row: written as floats.
    """

    table: pa.Table
    order: pa.Array
    failures: pa.Table
    warnings: pa.Table
    gaps: set[str] = field(default_factory=set)

    @property
    def n_ranked(self) -> int:
        """Compounds in the ranking."""
        return len(self.order)

    def ranking_rows(self, start: int = 0, length: int | None = None) -> pa.Table:
        """Rows ``start`` to ``start + length`` of ``ranking.csv`` (all by default), as they are written.

        ``rank`` comes first; an integer column with a gap anywhere in the ranking is float
        in every batch, as it would be in one pandas DataFrame of the whole ranking (so a
        count reads ``3.0000`` throughout, never ``3`` in one batch and ``3.0000`` in the next).
        """
        length = self.n_ranked - start if length is None else length
        part = self.table.take(self.order.slice(start, length))
        rank = pa.array(np.arange(start + 1, start + 1 + part.num_rows, dtype=np.int64))
        columns = {"rank": rank}
        for spec in part.schema:
            column = part[spec.name]
            if pa.types.is_integer(spec.type):
                column = column.cast(pa.float64() if spec.name in self.gaps else pa.int64())
            columns[spec.name] = column
        return pa.table(columns)

    @property
    def ranking(self) -> pa.Table:
        """The whole ``ranking.csv`` in rank order (a copy: for tests and small runs)."""
        return self.ranking_rows()

    def to_pandas(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """``(ranking, failures, warnings)`` as DataFrames, with the dtypes their CSV files are written from."""
        return self.ranking.to_pandas(), self.failures.to_pandas(), self.warnings.to_pandas()


@dataclass
class _Docked:
    """The per-chunk pass: compound summaries and failure rows, by kind."""

    summaries: list[pa.Table]
    accepted: list[pa.Array]
    primary: dict[str, list[pa.Table]]  # prepare, dock: a row removes the compound
    featurize: list[pa.Table]  # docked poses: a warning unless the order needs the missing GNN score
    counts: list[str]  # n_<Type> columns, in order of first appearance


def _summary_table(frame: pd.DataFrame) -> pa.Table:
    return _strings(pa.Table.from_pandas(frame, preserve_index=False))


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _inner_positions(ids: pa.Array, *others: pa.Array) -> tuple[pa.Array, list[pa.Array]]:
    """Rows of ``ids`` found in every one of ``others``, and their positions there (an inner join on ``id``)."""
    ids = _array(ids)
    # a table written with no rows (every ligand of a chunk failed) may have a null-typed id column
    positions = [pc.index_in(ids, value_set=_array(o).cast(ids.type)) for o in others]
    found = positions[0].is_valid()
    for at in positions[1:]:
        found = pc.and_(found, at.is_valid())
    return found, [at.filter(found) for at in positions]


def _chunk_summary(layout: RunLayout, chunk: str, top: int) -> tuple[pa.Table, pa.Array]:
    """The docked summary of one chunk's compounds (Arrow only) and the chunk's accepted ids."""
    inputs = _strings(pq.read_table(layout.chunk_table(chunk), columns=["id", "input_id", "smiles"])).combine_chunks()
    ligands = _strings(pq.read_table(layout.ligand_table(chunk), columns=LIGAND_FIELDS)).combine_chunks()
    poses = _strings(pq.read_table(layout.docked_table(chunk), columns=["id", "pose", "docking_score"]))
    docking = poses.group_by("id", use_threads=False).aggregate([("docking_score", "min"), ("pose", "count")])
    docking = docking.combine_chunks()
    found, (at_ligand, at_docking) = _inner_positions(inputs["id"], ligands["id"], docking["id"])
    summary = {name: inputs[name].filter(found) for name in ("id", "input_id", "smiles")}
    summary |= {name: ligands[name].take(at_ligand) for name in LIGAND_FIELDS[1:]}
    summary |= {
        "docking_score": docking["docking_score_min"].take(at_docking),
        "n_poses": docking["pose_count"].take(at_docking),
    }
    table = pa.table(summary)
    features = _best_pose_interactions(layout.feature_table(chunk), top)
    if features is not None:
        table = _left_join(table, features)
    return table, inputs["id"]


def _scan_chunks(layout: RunLayout, chunks: Sequence[str], top: int) -> _Docked:
    """One pass over the chunks: each compound's docked summary, the accepted ids and the failure rows."""
    out = _Docked([], [], {"prepare": [], "dock": []}, [], [])
    for chunk in chunks:
        summary, accepted = _chunk_summary(layout, chunk, top)
        out.counts += [c for c in summary.column_names if c.startswith("n_") and c not in ("n_poses", *out.counts)]
        out.summaries.append(summary.cast(_compact_schema(summary.schema)))
        out.accepted.append(accepted)
        out.primary["prepare"].append(_read_failure_table(layout.ligand_failures(chunk)))
        out.primary["dock"].append(_read_failure_table(layout.docked_failures(chunk)))
        if layout.feature_failures(chunk).is_file():
            out.featurize.append(_read_failure_table(layout.feature_failures(chunk)))
    return out


def _compact(name: str) -> pa.DataType:
    # counts of interactions and atoms are small: 2 and 4 bytes instead of 8 per value and compound
    return pa.int16() if name.startswith("n_") and name != "n_poses" else pa.int32()


def _compact_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _compact(f.name)) if pa.types.is_integer(f.type) else f for f in schema])


def _base_schema(counts: list[str]) -> pa.Schema:
    fields = [
        ("id", pa.string()),
        ("input_id", pa.string()),
        ("smiles", pa.string()),
        ("prepared_smiles", pa.string()),
        ("heavy_atoms", pa.int32()),
        ("formal_charge", pa.int32()),
        ("rotatable_bonds", pa.int32()),
        ("docking_score", pa.float64()),
        ("n_poses", pa.int32()),
    ]
    return pa.schema(fields + [(c, _compact(c)) for c in counts] + [("interactions", pa.string())])


def _docked_table(docked: _Docked) -> pa.Table:
    """The chunk summaries as one table of one schema (chunks without features get empty interaction columns)."""
    schema = _base_schema(docked.counts)
    tables = [
        pa.table(
            {
                f.name: table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                for f in schema
            },
            schema=schema,
        )
        for table in docked.summaries
    ]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _release_memory() -> None:
    """Hand freed memory back to the OS between the library-wide steps (it is the peak RSS that counts).

    Arrow's allocator keeps freed blocks for reuse, and so does glibc's heap: after a
    sort of a million rows that is hundreds of MB that the next step would add to.
    """
    pa.default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _left_join(table: pa.Table, other: pa.Table) -> pa.Table:
    """``table`` with the columns of ``other`` (keyed by unique ``id``) appended, in ``table``'s row order."""
    at = pc.index_in(table["id"], value_set=other["id"].combine_chunks())
    for name in other.column_names:
        if name != "id":
            table = table.append_column(name, other[name].take(at))
    return table


def _group_reasons(rows: pa.Table) -> pa.Table:
    """One row per id: the stage of its first row, every reason joined by ``"; "`` (first-appearance order)."""
    frame = rows.to_pandas()
    grouped = frame.groupby("id", sort=False).agg(stage=("stage", "first"), reason=("reason", "; ".join)).reset_index()
    return pa.Table.from_pandas(grouped[FAILURE_COLUMNS], preserve_index=False).cast(_empty_failures().schema)


def _refined(layout: RunLayout, batches: Sequence[str], threshold: float, top: int):
    """MD summary, persistent interactions, selected ids and the warning rows of the refined batches."""
    md = md_summary([layout.refined_table(b) for b in batches])
    persistent = persistent_interactions([layout.feature_table(b) for b in batches], threshold, top)
    selected = _read_tables([layout.batch_table(b) for b in batches], ["id"])
    refine_rows = _concat_failures(_read_failure_table(layout.refined_failures(b)) for b in batches)
    feature_rows = _concat_failures(
        _read_failure_table(layout.feature_failures(b)) for b in batches if layout.feature_failures(b).is_file()
    )
    selected_ids = set() if selected is None else set(selected["id"].astype(str))
    return md, persistent, selected_ids, refine_rows, feature_rows


def _md_status(
    ids: pa.ChunkedArray, md: pd.DataFrame, refine_rows: pa.Table, selected: set[str]
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """``md_status`` and ``md_reason`` of every ranked compound (see the module docstring)."""
    refined = set(md["id"].astype(str))
    reasons = _group_reasons(refine_rows).to_pandas() if refine_rows.num_rows else pd.DataFrame(columns=FAILURE_COLUMNS)
    failed = dict(zip(reasons["id"], reasons["reason"]))
    for cid in selected - refined - set(failed):
        failed[cid] = NO_MD_RECORD
    for cid in refined:
        failed.pop(cid, None)  # one pose refined: the compound was refined; its failed poses are warnings
    failed_ids = pa.array(list(failed), pa.string())
    in_refined = pc.is_in(ids, value_set=pa.array(sorted(refined), pa.string()))
    in_failed = pc.is_in(ids, value_set=failed_ids)
    status = pc.if_else(in_refined, "refined", pc.if_else(in_failed, "failed", "not selected"))
    reason = pc.fill_null(pa.array(list(failed.values()), pa.string()).take(pc.index_in(ids, value_set=failed_ids)), "")
    return status, reason


def _with_md_change(table: pa.Table, status: pa.ChunkedArray | pa.Array) -> pa.Table:
    """``table`` with :data:`MD_CHANGE_COLUMNS`: refined or not, and ``gnn_score_refined - gnn_score``."""
    refined = pc.equal(status, "refined")
    if "gnn_score_refined" in table.column_names and "gnn_score" in table.column_names:
        after = _nan_to_null(table["gnn_score_refined"]).cast(pa.float64())
        before = _nan_to_null(table["gnn_score"]).cast(pa.float64())
        delta = pc.if_else(refined, pc.subtract(after, before), pa.scalar(None, pa.float64()))
    else:  # no GNN scores in this run: MD changed no score
        delta = pa.nulls(table.num_rows, pa.float64())
    return table.append_column("md_refined", refined).append_column("md_score_delta", delta)


def _read_scores(scores: str | os.PathLike | pd.DataFrame | pa.Table | None) -> pa.Table | None:
    if scores is None:
        return None
    if isinstance(scores, pa.Table):
        return scores
    if isinstance(scores, pd.DataFrame):
        return pa.Table.from_pandas(scores, preserve_index=False)
    return pq.read_table(scores, columns=["id", "pose", "source", "gnn_score", "gnn_spread"])


def _split_score_rows(score_failures: str | os.PathLike | None) -> tuple[pa.Table, pa.Table]:
    """``scores.failures.csv`` as (rows about docked graphs, rows about refined batches)."""
    if score_failures is None or not Path(score_failures).is_file():
        return _empty_failures(), _empty_failures()
    rows = _read_failure_table(score_failures)
    refined = pc.starts_with(rows["reason"], REFINED_SCORE_PREFIX)
    return rows.filter(pc.invert(refined)), rows.filter(refined)


def _ids_in(rows: pa.Table, ids: pa.Array) -> pa.ChunkedArray:
    return pc.is_in(rows["id"], value_set=ids)


def _final_columns(table: pa.Table) -> list[str]:
    names = table.column_names
    scored = [c for c in SCORE_COLUMNS if c in names]
    checked = [c for c in POSE_COLUMNS if c in names]  # they too say what placed the compound
    # ``rank``: added as rows are written
    front = RANKING_COLUMNS[1:6] + scored + DOMAIN_COLUMNS + checked + RANKING_COLUMNS[6:]
    last = [c for c in MD_CHANGE_COLUMNS if c in names] + MD_STATUS_COLUMNS
    tail = [c for c in names if c not in front and c not in last] + last
    return front + tail


def _late_failures(rows: pa.Table, table: pa.Table, rank_by: str) -> tuple[pa.Table, pa.Table]:
    """Featurize and score rows of docked poses: ``(failure rows, warning rows)``.

    A compound's rows are fatal only when the order needs a GNN score (``gnn``,
    ``consensus``) and the compound has none; they become one failure row (the stage of
    its first row, the reasons joined, why it is not ranked). Every other row is a warning.
    """
    if rank_by == "docking":
        return _empty_failures(), rows
    unscored = _array(table["id"]).filter(pc.is_null(_array(table["gnn_score"])))
    fatal_mask = _ids_in(rows, unscored)
    fatal = rows.filter(fatal_mask)
    if fatal.num_rows:
        fatal = _group_reasons(fatal)
        note = f" (not ranked: ranking by {rank_by} needs a GNN score of a docked pose)"
        fatal = fatal.set_column(2, "reason", pc.binary_join_element_wise(fatal["reason"], note, ""))
    return fatal, rows.filter(pc.invert(fatal_mask))


def _ordered(
    table: pa.Table,
    failed: pa.Array,
    rank_by: str,
    consensus_weight: float,
    domain: DomainSettings | None = None,
    pocket: PocketRecord | None = None,
) -> tuple[pa.Table, pa.Array]:
    """The table in its final columns (with ``consensus_score`` if asked for) and the rank order of its rows.

    The compounds in ``failed`` stay in the table but out of the order (no copy of the
    table is made); a consensus, and the percentiles of a mixed list, are computed over the
    ranked compounds only.
    """
    ranked = _array(pc.invert(pc.is_in(table["id"], value_set=failed)))
    keep = ranked.to_numpy(zero_copy_only=False)
    if rank_by == "consensus":
        gnn = np.where(keep, table["gnn_score"].to_numpy(), np.nan)
        consensus = _consensus(gnn, np.where(keep, table["docking_score"].to_numpy(), np.nan), consensus_weight)
        table = table.append_column("consensus_score", pa.array(consensus, pa.float64(), from_pandas=True))
    spread = (
        table["gnn_spread"].to_numpy().astype(float)  # a compound without a score: null, read as NaN
        if "gnn_spread" in table.column_names
        else np.full(table.num_rows, np.nan)
    )
    fallback, reasons = _fallback(spread, rank_by, domain, pocket)
    table = table.append_column("ranked_by", pa.array(np.where(fallback, "docking", rank_by), pa.string()))
    table = table.append_column("domain_reason", pa.array(reasons, pa.string()))
    table = table.select(_final_columns(table))
    keys = table
    if rank_by != "docking" and (fallback & keep).any():
        model = table["gnn_score" if rank_by == "gnn" else "consensus_score"].to_numpy().astype(float)
        key = _mixed_key(model, table["docking_score"].to_numpy().astype(float), fallback, keep)
        keys = pa.table({"rank_key": key, "docking_score": table["docking_score"], "id": table["id"]})
    order = _rank_order(keys, rank_by)
    return table, order.filter(ranked.take(order))


def _with_md_rescore(table: pa.Table, order: pa.Array, rerank: bool) -> tuple[pa.Table, pa.Array]:
    """``md_rescore`` (the with-MD score of each refined compound) and ``md_rank_change``; with ``rerank`` the new order.

    ``md_rank_change`` = places moved up by the reordering (negative = down; 0 without ``rerank``),
    empty for a compound without a with-MD score.
    """
    model = load_md_rescore()
    # only the few refined rows are scored: the table may hold a million compounds
    refined = np.flatnonzero(table["md_refined"].to_numpy(zero_copy_only=False).astype(bool))
    rows = table.select([RANKING_FEATURES[f] for f in model.features]).take(pa.array(refined))
    values = np.column_stack([rows[i].to_numpy(zero_copy_only=False).astype(float) for i in range(rows.num_columns)])
    score = np.full(table.num_rows, np.nan)
    score[refined] = model.score(values)
    before = order.to_numpy(zero_copy_only=False).astype(np.int64)
    after = reorder_refined(before, score) if rerank else before
    change = np.full(table.num_rows, np.nan)
    change[before] = np.arange(len(before))
    change[after] -= np.arange(len(after))
    change[~np.isfinite(score)] = np.nan
    table = table.append_column("md_rescore", pa.array(score, pa.float64(), from_pandas=True))
    table = table.append_column("md_rank_change", pa.array(change, pa.float64(), from_pandas=True))
    return table.select(_final_columns(table)), pa.array(after)


def _with_pose_checks(
    layout: RunLayout, table: pa.Table, order: pa.Array, settings: PoseCheckSettings
) -> tuple[pa.Table, pa.Array]:
    """The table with the :data:`POSE_COLUMNS` (in their place) and the order after demoting invalid poses."""
    ranked_ids = table["id"].take(order)
    refined = table.filter(pc.is_valid(_nan_to_null(table["md_pose"]))) if "md_pose" in table.column_names else None
    md_pose = {} if refined is None else dict(zip(refined["id"].to_pylist(), map(int, refined["md_pose"].to_pylist())))
    verdicts = pa.Table.from_pandas(check_ranked_poses(layout, ranked_ids, md_pose, settings), preserve_index=False)
    at = pc.index_in(table["id"], value_set=verdicts["id"].combine_chunks().cast(pa.string()))
    columns = {
        "pose_valid": verdicts["pose_valid"].cast(pa.bool_()).take(at),
        "failed_checks": pc.fill_null(verdicts["failed_checks"].cast(pa.string()).take(at), ""),
        "pose_check": pc.fill_null(verdicts["pose_check"].cast(pa.string()).take(at), "not checked"),
        "pose_check_reason": pc.fill_null(verdicts["pose_check_reason"].cast(pa.string()).take(at), ""),
    }
    for name in POSE_COLUMNS:
        table = table.append_column(name, columns[name])
    table = table.select(_final_columns(table))
    if settings.rank_valid_first:
        order = demote_invalid(order, pc.equal(table["pose_valid"].take(order), False))
    return table, order


def build_ranking(
    run: RunLayout | str | os.PathLike,
    scores: str | os.PathLike | pd.DataFrame | pa.Table | None = None,
    score_failures: str | os.PathLike | None = None,
    rank_by: str = schema_default("score", "rank_by"),
    consensus_weight: float = schema_default("score", "consensus_weight"),
    persistence_threshold: float = schema_default("featurize", "persistence_threshold"),
    top: int = 6,
    domain: DomainSettings | None = None,
    pocket: PocketRecord | None = None,
    pose_checks: PoseCheckSettings | None = None,
    md_rerank: bool = schema_default("score", "md_rerank"),
) -> RankedRun:
    """Collate a run folder into its ranking, failures and warnings (see the module docstring).

    Parameters
    ----------
    run
        The run folder or its :class:`~pipeline.layout.RunLayout`: chunk and batch names
        come from the manifests, every file from the layout.
    scores
        GNN scores per graph (``scores.parquet``, its path or a table), or ``None`` without GNN scoring.
    score_failures
        ``scores.failures.csv`` (used with ``scores``; a missing file means none).
    rank_by, consensus_weight
        The order (:func:`order_ranking`); ``gnn`` and ``consensus`` need ``scores``.
    persistence_threshold, top
        ``md_interactions``: share of MD frames; at most ``top`` interactions per compound.
    domain, pocket
        The domain check (``score.domain_check``, ``max_pocket_distance``, ``max_spread``) and
        the score stage's pocket record (``domain.json``); ``None``: no check (every compound is
        ranked by ``rank_by``). See "When the model is out of its domain" above.
    pose_checks
        PoseBusters on the top poses (``report.check_poses`` and its settings): the
        :data:`~pipeline.pose_validity.POSE_COLUMNS` are added and, with
        ``rank_valid_first``, invalid poses are ranked below the others (see "Pose validity"
        above); ``None``: no checks, no columns.
    md_rerank
        Reorder the refined compounds among their places by the with-MD score
        (:mod:`pipeline.md_rescore`; "MD in the order" above); False: MD moves no compound.

    Returns
    -------
    RankedRun

    Raises
    ------
    AccountingError
        An input row is missing from both tables or counted twice (:func:`check_accounting`).
    ValueError
        An unknown ``rank_by``, or ``gnn``/``consensus`` without scores.
    """
    layout = run if isinstance(run, RunLayout) else RunLayout(run)
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}; got {rank_by!r}")
    score_table = _read_scores(scores)
    if score_table is None and rank_by != "docking":
        raise ValueError(f"ranking by {rank_by} needs GNN scores")
    chunks, batches = layout.chunks(), layout.batches()

    docked = _scan_chunks(layout, chunks, top)
    table = _docked_table(docked)
    docked.summaries.clear()  # the per-chunk tables are now columns of `table`
    _release_memory()
    md, persistent, selected, refine_rows, refined_feature_rows = _refined(layout, batches, persistence_threshold, top)
    table = _left_join(table, _summary_table(md))
    table = _left_join(table, _summary_table(persistent))
    score_rows, refined_score_rows = _split_score_rows(score_failures if score_table is not None else None)
    if score_table is not None:
        for summary in _gnn_summary_arrow(score_table):
            table = _left_join(table, summary)
        del score_table
        _release_memory()
    status, reason = _md_status(table["id"], md, refine_rows, selected)
    table = _with_md_change(table, status)
    table = table.append_column("md_status", status).append_column("md_reason", reason)

    fatal, kept = _late_failures(_concat_failures([*docked.featurize, score_rows]), table, rank_by)
    warnings = _concat_failures([kept, refine_rows, refined_feature_rows, refined_score_rows])
    failures = _concat_failures(
        [_read_failure_table(layout.input_failures), *docked.primary["prepare"], *docked.primary["dock"], fatal]
    )
    table, order = _ordered(table, fatal["id"].combine_chunks(), rank_by, consensus_weight, domain, pocket)
    table, order = _with_md_rescore(table, order, md_rerank)
    _release_memory()

    accepted = pa.chunked_array(docked.accepted, pa.string())
    counted = _concat_failures([*docked.primary["prepare"], *docked.primary["dock"], fatal])["id"]
    check_accounting(accepted, table["id"].take(order), counted)
    if pose_checks is not None:
        table, order = _with_pose_checks(layout, table, order, pose_checks)
    gaps = {f.name for f in table.schema if pa.types.is_integer(f.type) and table[f.name].take(order).null_count}
    return RankedRun(table, order, failures, warnings, gaps)


def check_accounting(
    accepted: pa.ChunkedArray | pa.Array, ranked: pa.ChunkedArray | pa.Array, failed: pa.ChunkedArray | pa.Array
) -> None:
    """Check that every accepted id is ranked or failed exactly once (input rejections are rows of their own).

    Parameters
    ----------
    accepted
        The ids of the chunk tables (the rows the split accepted).
    ranked
        The ids of the ranking.
    failed
        The ids of the failure rows after the split (prepare, dock, ...), not the input rejections.

    Raises
    ------
    AccountingError
        With the ids that are missing, counted twice or unknown.
    """

    def single(ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        return ids.cast(pa.string())

    def repeated(ids: pa.Array) -> set[str]:
        if not len(ids):
            return set()
        counts = pc.value_counts(ids)
        return set(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())

    def outside(ids: pa.Array, others: pa.Array) -> list[str]:
        return ids.filter(pc.invert(pc.is_in(ids, value_set=others))).to_pylist() if len(ids) else []

    accepted = single(accepted)
    counted = pa.concat_arrays([single(ranked), single(failed)])
    twice = sorted(repeated(accepted) | repeated(counted))
    missing, unknown = outside(accepted, counted), sorted(set(outside(counted, accepted)))
    if missing or twice or unknown:
        error = AccountingError(missing, twice, unknown)
        log.error("%s", error)
        raise error


# --------------------------------------------------------------------------- writing


def _write_csv_batches(table: pa.Table | RankedRun, path: str | os.PathLike, batch_rows: int = 50_000) -> None:
    """Write a table (or a ranking, in rank order) as CSV atomically, ``batch_rows`` rows at a time.

    The batches go through pandas' writer as :func:`write_table_csv` does, so the file is
    byte for byte the one a single ``DataFrame.to_csv`` of the whole table writes (see
    :meth:`RankedRun.ranking_rows`); text cells are neutralized cell by cell, so batching
    does not change them either.
    """
    rows = table.n_ranked if isinstance(table, RankedRun) else table.num_rows

    def part(start: int, length: int) -> pa.Table:
        return table.ranking_rows(start, length) if isinstance(table, RankedRun) else table.slice(start, length)

    with atomic_open(path) as handle:
        if not rows:
            part(0, 0).to_pandas().to_csv(handle, index=False, float_format="%.4f")
        for start in range(0, rows, batch_rows):
            frame = neutralize_csv_cells(part(start, batch_rows).to_pandas())
            frame.to_csv(handle, index=False, header=start == 0, float_format="%.4f")


def write_ranking(result: RankedRun, run: RunLayout | str | os.PathLike, batch_rows: int = 50_000) -> None:
    """Write ``ranking.csv``, ``failures.csv`` and ``pose_warnings.csv`` of a run (each atomically)."""
    layout = run if isinstance(run, RunLayout) else RunLayout(run)
    _write_csv_batches(result, layout.ranking, batch_rows)
    _write_csv_batches(result.failures, layout.failures, batch_rows)
    _write_csv_batches(result.warnings, layout.pose_warnings, batch_rows)


def rank_run(
    run: RunLayout | str | os.PathLike,
    scores: str | os.PathLike | None = None,
    score_failures: str | os.PathLike | None = None,
    rank_by: str = schema_default("score", "rank_by"),
    consensus_weight: float = schema_default("score", "consensus_weight"),
    domain: DomainSettings | None = None,
    pocket: PocketRecord | None = None,
    pose_checks: PoseCheckSettings | None = None,
    md_rerank: bool = schema_default("score", "md_rerank"),
) -> RankedRun:
    """:func:`build_ranking` then :func:`write_ranking`: the ``rank`` stage (nothing is written on an error)."""
    result = build_ranking(
        run,
        scores,
        score_failures,
        rank_by,
        consensus_weight,
        domain=domain,
        pocket=pocket,
        pose_checks=pose_checks,
        md_rerank=md_rerank,
    )
    write_ranking(result, run)
    return result


def write_table_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically, floats with 4 decimals, text cells neutralized for spreadsheets.

    A text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, ...)
    gets a leading ``'`` (:func:`pipeline.io.neutralize_csv_cells`, reversible with
    :func:`pipeline.io.restore_csv_cells`).
    """
    with atomic_path(path) as tmp:
        neutralize_csv_cells(df).to_csv(tmp, index=False, float_format="%.4f")
