"""The report's "Sent to MD" section: which compounds the selection rule sent to MD, why, and what MD did.

The selection (``vscreen select``, :mod:`pipeline.refine.selection`) writes, per chosen
pose, the compound's rank under the rule (``compound_rank``) and under docking
(``docking_rank``), its docking score and the scorer's ``gnn_score``, ``gnn_spread`` and
``ucb`` of the pose into the batch tables; the refined tables say whether a pose was
retried (``md_attempts``, ``md_retry_reason``), the refine failures why a pose failed,
and ``ranking.csv`` how MD changed the compound's GNN score (``md_score_delta``), its with-MD
score and how far the reordering moved it (``md_rescore``, ``md_rank_change``) and where it ranks. Everything read here is small: the batches hold the selected poses only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import schema_default
from ..io import read_failures
from ..layout import RunLayout
from . import html
from .rundata import RunData

__all__ = ["selected_compounds", "md_selection_section", "RULE_TEXT"]

#: What each rule sends to MD (``refine.select_by``), for the sentence above the table.
RULE_TEXT = {
    "docking": "the best docking score (most negative first)",
    "score": "the highest GNN score of a docked pose",
    "ucb": "the highest upper confidence bound of a docked pose, GNN score + k × spread",
}


def _tables(paths: list[Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths if p.is_file()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _md_outcome(layout: RunLayout, batches: list[str]) -> pd.DataFrame:
    """Per selected compound: ``md_result`` (refined / retried / failed) and ``md_note`` (the reason)."""
    refined = _tables([layout.refined_table(b) for b in batches])
    failed = [read_failures(layout.refined_failures(b)) for b in batches if layout.refined_failures(b).is_file()]
    failed = pd.concat(failed, ignore_index=True) if failed else pd.DataFrame(columns=["id", "reason"])
    rows = {}
    for cid, reason in zip(failed["id"].astype(str), failed["reason"]):
        rows[cid] = ("failed", str(reason))
    if len(refined):
        attempts = refined["md_attempts"] if "md_attempts" in refined.columns else pd.Series(1, index=refined.index)
        reasons = refined.get("md_retry_reason", pd.Series("", index=refined.index)).fillna("")
        for cid, n, why in zip(refined["id"].astype(str), attempts, reasons):
            if n > 1:
                rows[cid] = ("refined after a retry", f"first attempt: {why}")
            elif rows.get(cid, ("",))[0] != "refined after a retry":
                rows[cid] = ("refined", "")  # one refined pose is enough; its failed poses are warnings
    return pd.DataFrame(
        [(cid, result, note) for cid, (result, note) in rows.items()], columns=["id", "md_result", "md_note"]
    )


def selected_compounds(run: RunData) -> pd.DataFrame:
    """One row per compound sent to MD, in the order the rule sent them.

    Returns
    -------
    pd.DataFrame
        ``compound_rank, id, docking_rank, docking_score, gnn_score, gnn_spread, ucb`` (of the
        compound's first selected pose), ``poses`` (selected), ``md_result``, ``md_note``, and
        from ``ranking.csv`` ``rank`` and ``md_score_delta`` (missing where not ranked or not
        scored). Empty when nothing was selected.
    """
    layout = RunLayout(run.run_dir)
    batches = layout.batches()
    selected = _tables([layout.batch_table(b) for b in batches])
    if not len(selected):
        return pd.DataFrame()
    selected["id"] = selected["id"].astype(str)
    for column in ("docking_rank", "gnn_score", "gnn_spread", "ucb"):  # batches of an older selection lack them
        if column not in selected.columns:
            selected[column] = float("nan")
    poses = selected.groupby("id")["pose"].count().rename("poses").reset_index()
    first = selected.sort_values("compound_rank", kind="mergesort").drop_duplicates("id")
    first = first.merge(poses, on="id").merge(_md_outcome(layout, batches), on="id", how="left")
    first["md_result"] = first["md_result"].fillna("no result")
    first["md_note"] = first["md_note"].fillna("")
    wanted = ("id", "rank", "md_score_delta", "md_rescore", "md_rank_change")
    ranked = run.ranking[[c for c in wanted if c in run.ranking.columns]].copy()
    ranked["id"] = ranked["id"].astype(str)
    first = first.merge(ranked, on="id", how="left")
    columns = ["compound_rank", "id", "docking_rank", "docking_score", "gnn_score", "gnn_spread", "ucb", "poses"]
    columns += ["md_result", "md_note", "rank", "md_score_delta", "md_rescore", "md_rank_change"]
    for column in columns:
        if column not in first.columns:
            first[column] = float("nan")
    return first[columns].reset_index(drop=True)


def _rule_sentence(run: RunData, chosen: pd.DataFrame) -> str:
    """Which rule chose, with its settings and how far it departs from the docking order (escaped)."""
    refine = run.config["refine"]
    rule = refine.get("select_by", schema_default("refine", "select_by"))
    limits = [f"refine.top_n: {refine['top_n']}" if refine.get("top_n") else ""]
    limits.append(f"refine.top_fraction: {refine['top_fraction']}" if refine.get("top_fraction") else "")
    limit = ", ".join(filter(None, limits)) or "no limit"
    k = f" with k = {refine.get('ucb_k', schema_default('refine', 'ucb_k')):g} (refine.ucb_k)" if rule == "ucb" else ""
    n = len(chosen)
    sent = (
        f"The {n} compounds with {RULE_TEXT.get(rule, rule)} were"
        if n > 1
        else (f"The compound with {RULE_TEXT.get(rule, rule)} was")
    )
    text = f"refine.select_by: {rule}{k}. {sent} sent to MD ({limit}; {refine['poses_per_compound']} pose(s) each)."
    if rule != "docking" and chosen["docking_rank"].notna().any():
        also = int((chosen["docking_rank"] <= n).sum())
        best = f"the {n} best compounds" if n > 1 else "the best compound"
        text += (
            f" {also} of {n} would have been sent by docking score too ({best} by docking score); "
            "the docking rank of each is in the table."
        )
    return html.text(text)


def _counts_sentence(chosen: pd.DataFrame, retry_fs: object) -> str:
    results = chosen["md_result"].value_counts()
    retried = int(results.get("refined after a retry", 0))
    refined = int(results.get("refined", 0)) + retried
    failed = int(results.get("failed", 0))
    retry = f" at {float(retry_fs):g} fs without HMR" if isinstance(retry_fs, (int, float)) else ""
    return html.text(
        f"MD refined {refined} of {len(chosen)} ({retried} after a retry{retry} of a blown-up first attempt); "
        f"{failed} failed (still ranked by their docked pose, the reason in pose_warnings.csv)."
    )


def md_selection_section(run: RunData) -> str:
    """The section's HTML: the rule in a sentence, a sortable table of the compounds, and MD's outcome.

    Returns
    -------
    str
        ``""`` when MD was off or nothing was selected.
    """
    if not run.config["refine"].get("enabled", True):
        return ""
    chosen = selected_compounds(run)
    if not len(chosen):
        return ""
    rule = run.config["refine"].get("select_by", schema_default("refine", "select_by"))
    scored = chosen["gnn_score"].notna().any()
    columns = [html.Column("sent", numeric=True, tooltip="order in which the rule chose the compound")]
    columns.append(html.Column("compound"))
    if scored:
        columns += [
            html.Column("UCB", numeric=True, tooltip="gnn_score + k × gnn_spread of the selected docked pose"),
            html.Column("GNN score", numeric=True, tooltip="gnn_score of the selected docked pose"),
            html.Column("spread", numeric=True, tooltip="gnn_spread: the ensemble's standard deviation"),
        ]
    columns += [
        html.Column("docking score", numeric=True, tooltip="kcal/mol"),
        html.Column("docking rank", numeric=True, tooltip="rank among all docked compounds by docking score"),
        html.Column("MD"),
        html.Column("MD score change", numeric=True, tooltip="gnn_score_refined − gnn_score (md_score_delta)"),
        html.Column("with-MD score", numeric=True, tooltip="md_rescore: pipeline/md_rescore.py, lower = better"),
        html.Column("moved", numeric=True, tooltip="md_rank_change: places the with-MD reordering moved it up"),
        html.Column("final rank", numeric=True),
    ]
    rows = []
    for row in chosen.itertuples():
        cells = [html.num_cell(row.compound_rank, 0), html.Cell(html.text(row.id), row.id)]
        if scored:
            cells += [html.num_cell(row.ucb, 3), html.num_cell(row.gnn_score, 3), html.num_cell(row.gnn_spread, 3)]
        note = f' title="{html.text(row.md_note)}"' if row.md_note else ""
        cells += [
            html.num_cell(row.docking_score, 2),
            html.num_cell(row.docking_rank, 0),
            html.Cell(f"<span{note}>{html.text(row.md_result)}</span>", row.md_result),
            html.num_cell(row.md_score_delta, 3),
            html.num_cell(row.md_rescore, 2),
            html.num_cell(row.md_rank_change, 0),
            html.num_cell(row.rank, 0),
        ]
        rows.append(cells)
    table = html.table(columns, rows, css="sortable", table_id="md-selection")
    why = "" if scored or rule == "docking" else " No GNN score reached the selection."
    return (
        f"<p>{_rule_sentence(run, chosen)}{html.text(why)}</p>{table}"
        f'<p class="note">{_counts_sentence(chosen, run.config["refine"].get("retry_timestep_fs"))} '
        f"Hover over an MD result for its reason. {_rerank_sentence(run)} "
        "md_refined and md_score_delta in ranking.csv say how MD changed each compound's GNN score.</p>"
    )


def _rerank_sentence(run: RunData) -> str:
    """What MD did to the order (``score.md_rerank``)."""
    if run.config.get("score", {}).get("md_rerank", schema_default("score", "md_rerank")):
        return (
            "The refined compounds are reordered among the places the docked scores gave them by their "
            "with-MD score (md_rescore: MD interaction energy and stability with the Vina score, fitted on "
            "measured affinities; it ranks congeneric series better than Vina on held-out proteins, README "
            '"MD stability and value"); md_rank_change says by how many places.'
        )
    return "The ranking's order uses the docked poses' scores (score.md_rerank is off)."
