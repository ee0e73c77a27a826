"""Where the compounds of a screen went: counts per stage, pose checks, and failures by reason."""

from __future__ import annotations

import re

import pandas as pd

from .rundata import RunData

#: Stages in pipeline order, as ``failures.csv`` names them.
FAILURE_STAGES = ["input", "prepare", "dock", "featurize", "score", "refine", "unknown"]


def funnel(run: RunData) -> pd.DataFrame:
    """Compounds per stage, from the library's rows to the ranking.

    Returns
    -------
    pandas.DataFrame
        Columns ``stage`` (``input rows``, ``valid and unique``, ``prepared``, ``docked``,
        ``featurized``, ``selected for MD``, ``refined by MD``, ``scored by GNN``, ``ranked``,
        the pose-check rows of :func:`pose_check_rows`, ``failed``) and ``compounds``. Stages
        a run did not have (no MD, no GNN, no pose checks) are left out.
    """
    ranking, counts = run.ranking, run.stage_counts
    rows = [
        ("input rows", run.manifest.get("rows", len(ranking) + len(run.failures))),
        (
            "valid and unique",
            run.manifest.get("accepted", len(ranking) + int((run.failures["stage"] != "input").sum())),
        ),
        ("prepared", counts.get("prepared", 0)),
        ("docked", counts.get("docked", 0)),
        ("featurized", counts.get("featurized", 0)),
    ]
    if counts.get("selected"):
        rows += [("selected for MD", counts["selected"]), ("refined by MD", counts.get("refined", 0))]
    if "scored" in counts:
        rows.append(("scored by GNN", counts["scored"]))
    rows.append(("ranked", len(ranking)))
    rows += pose_check_rows(run)
    rows.append(("failed", len(run.failures)))
    return pd.DataFrame(rows, columns=["stage", "compounds"])


def pose_validity(ranking: pd.DataFrame) -> pd.Series:
    """``pose_valid`` of ``ranking.csv`` as a nullable boolean (``True``, ``False``, ``<NA>``), whatever pandas read."""
    values = ranking["pose_valid"] if "pose_valid" in ranking.columns else pd.Series(index=ranking.index, dtype=object)
    text = values.astype("string").str.strip().str.lower()
    return text.map({"true": True, "false": False}).astype("boolean")


def pose_check_rows(run: RunData) -> list[tuple[str, int]]:
    """Funnel rows of the PoseBusters checks (:mod:`pipeline.pose_validity`); none when the run had none.

    ``pose checked`` (PoseBusters gave a verdict), ``pose valid``, ``pose invalid`` (``ranked
    last`` with ``report.rank_valid_first``, the default), one ``fails <check>`` row per failed
    check with the number of invalid poses that fail it (a pose can fail several), and
    ``pose not judged`` (PoseBusters could not process the pose) when there are such poses.
    """
    ranking = run.ranking
    if "pose_valid" not in ranking.columns:
        return []
    valid = pose_validity(ranking)
    demoted = bool(run.config.get("report", {}).get("rank_valid_first", True))
    rows = [
        ("pose checked (PoseBusters)", int(valid.notna().sum())),
        ("pose valid", int((valid == True).sum())),  # noqa: E712 -- nullable boolean
        ("pose invalid, ranked last" if demoted else "pose invalid", int((valid == False).sum())),  # noqa: E712
    ]
    rows += [
        (f"fails {check}", n) for check, n in failed_checks(ranking)[["check", "compounds"]].itertuples(index=False)
    ]
    if "pose_check" in ranking.columns:
        unjudged = int((ranking["pose_check"].astype("string") == "error").sum())
        if unjudged:
            rows.append(("pose not judged", unjudged))
    return rows


def failed_checks(ranking: pd.DataFrame, examples: int = 3) -> pd.DataFrame:
    """The PoseBusters checks that invalid poses fail, most often failed first (ties by name).

    Returns
    -------
    pandas.DataFrame
        ``check, compounds, examples`` (a few compound ids, comma-separated, best-ranked first).
    """
    columns = ["check", "compounds", "examples"]
    if "failed_checks" not in ranking.columns or not len(ranking):
        return pd.DataFrame(columns=columns)
    names = ranking["failed_checks"].fillna("").astype(str).str.split(";")
    pairs = pd.DataFrame({"id": ranking["id"].astype(str), "check": names}).explode("check")
    pairs["check"] = pairs["check"].str.strip()
    pairs = pairs[pairs["check"].astype(bool)]
    if not len(pairs):
        return pd.DataFrame(columns=columns)
    grouped = (
        pairs.groupby("check", sort=True)["id"]
        .agg(compounds="count", examples=lambda ids: ", ".join(list(ids)[:examples]))
        .reset_index()
    )
    grouped = grouped.sort_values(["compounds", "check"], ascending=[False, True], kind="mergesort")
    return grouped[columns].reset_index(drop=True)


def reason_kind(reason: str) -> str:
    """A failure reason with its particulars removed, so that alike failures group together.

    ``"line 7: duplicate id 'x' (id 'x' first used on line 3)"`` becomes
    ``"duplicate id '…' (id '…' first used on line #)"``.
    """
    text = re.sub(r"^(line|pose)\s+\d+:\s*", "", str(reason).strip())
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"-?\d+(\.\d+)?", "#", text)
    return text[:160] or "(no reason given)"


def failure_reasons(failures: pd.DataFrame, examples: int = 3) -> pd.DataFrame:
    """Failures grouped by stage and kind of reason, most frequent first within each stage.

    Returns
    -------
    pandas.DataFrame
        ``stage, reason, compounds, examples`` (a few of the compound ids, comma-separated).
    """
    columns = ["stage", "reason", "compounds", "examples"]
    if not len(failures):
        return pd.DataFrame(columns=columns)
    table = failures.assign(kind=failures["reason"].map(reason_kind))
    grouped = (
        table.groupby(["stage", "kind"], sort=False)["id"]
        .agg(compounds="count", examples=lambda ids: ", ".join(list(ids)[:examples]))
        .reset_index()
        .rename(columns={"kind": "reason"})
    )
    order = {stage: i for i, stage in enumerate(FAILURE_STAGES)}
    grouped["_stage"] = grouped["stage"].map(lambda s: order.get(s, len(order)))
    grouped = grouped.sort_values(["_stage", "compounds", "reason"], ascending=[True, False, True], kind="mergesort")
    return grouped[columns].reset_index(drop=True)


def failures_by_stage(failures: pd.DataFrame) -> pd.Series:
    """Failure counts per stage in pipeline order (stages without failures left out)."""
    counts = failures["stage"].value_counts() if len(failures) else pd.Series(dtype=int)
    ordered = [s for s in FAILURE_STAGES if s in counts.index] + sorted(set(counts.index) - set(FAILURE_STAGES))
    return counts.reindex(ordered).astype(int)
