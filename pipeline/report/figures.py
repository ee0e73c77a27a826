"""The report's figures, drawn with Matplotlib (no display needed).

Each function takes plain tables and returns a :class:`matplotlib.figure.Figure`
(or ``None`` when there is nothing to draw); :func:`png_bytes` turns a figure into
the PNG that the report embeds and that Snakemake's report shows.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

ACTIVE, INACTIVE, NEUTRAL, HIGHLIGHT = "#c0392b", "#7f8c8d", "#2c7fb8", "#e67e22"
LINE_COLORS = ("#2c7fb8", "#c0392b", "#27ae60", "#8e44ad")
#: Above this many ranked compounds the GNN-vs-docking panel shows the library as a density
#: (hexagonal bins) rather than one point and error bar each: a million of those take minutes
#: and gigabytes to draw and show nothing but a blot.
SCATTER_LIMIT = 20_000
#: Curves with more points than this are thinned for drawing (the figure is a few hundred pixels wide).
CURVE_POINTS = 5_000


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def funnel_figure(stages: pd.DataFrame, failed_by_stage: pd.Series) -> Figure:
    """Horizontal bars: compounds per stage (left) and failures per stage (right).

    Parameters
    ----------
    stages
        :func:`pipeline.report.funnel.funnel` (``stage, compounds``).
    failed_by_stage
        Failure counts indexed by stage (:func:`pipeline.report.funnel.failures_by_stage`).
    """
    fig = Figure(figsize=(8, 2.9))
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[2, 1]))
    flow = stages[stages["stage"] != "failed"]
    y = np.arange(len(flow))[::-1]
    left.barh(y, flow["compounds"], color=NEUTRAL)
    left.set_yticks(y, flow["stage"])
    for yi, count in zip(y, flow["compounds"]):
        left.text(count, yi, f" {count}", va="center", fontsize=9)
    left.set_xlabel("compounds")
    left.set_title("compounds per stage")
    left.set_xlim(0, max(1, flow["compounds"].max()) * 1.15)
    if len(failed_by_stage):
        yf = np.arange(len(failed_by_stage))[::-1]
        right.barh(yf, failed_by_stage.to_numpy(), color=ACTIVE)
        right.set_yticks(yf, failed_by_stage.index)
        for yi, count in zip(yf, failed_by_stage.to_numpy()):
            right.text(count, yi, f" {count}", va="center", fontsize=9)
        right.set_xlim(0, max(failed_by_stage.max(), 1) * 1.25)
        right.set_xlabel("compounds")
    else:
        right.text(0.5, 0.5, "no failures", ha="center", va="center", transform=right.transAxes)
        right.set_xticks([])
        right.set_yticks([])
    right.set_title("failures by stage")
    fig.tight_layout()
    return fig


def _histogram(ax, values: pd.Series, labels: pd.Series | None, title: str, xlabel: str) -> None:
    values = values.astype(float)  # an empty ranking reads back as text columns
    finite = values[np.isfinite(values)]
    bins = np.histogram_bin_edges(finite, bins=min(30, max(5, len(finite) // 3))) if len(finite) else 10
    if labels is not None:
        active = values[(labels > 0.5) & np.isfinite(values)]
        inactive = values[(labels <= 0.5) & np.isfinite(values)]
        unknown = values[labels.isna() & np.isfinite(values)]
        ax.hist(
            [inactive, active],
            bins=bins,
            stacked=True,
            color=[INACTIVE, ACTIVE],
            label=[f"inactive ({len(inactive)})", f"active ({len(active)})"],
        )
        if len(unknown):
            ax.hist(unknown, bins=bins, histtype="step", color=NEUTRAL, label=f"unlabelled ({len(unknown)})")
        ax.legend(fontsize=8)
    else:
        ax.hist(finite, bins=bins, color=NEUTRAL)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("compounds")


def score_distributions(ranking: pd.DataFrame, labels: pd.Series | None, top_n: int) -> Figure:
    """Distributions of the scores: docking score, GNN score (if any), GNN vs docking, MD stability (if any).

    Parameters
    ----------
    ranking
        ``ranking.csv``.
    labels
        Label of each ranking row (1.0 / 0.0 / NaN) or ``None``; actives and inactives are then
        stacked in different colours.
    top_n
        The top hits (first ``top_n`` rows) are highlighted in the scatter plots.
    """
    has_gnn = "gnn_score" in ranking and ranking["gnn_score"].notna().any()
    has_md = "md_rmsd_mean" in ranking and ranking["md_rmsd_mean"].notna().any()
    panels = 1 + 2 * has_gnn + has_md
    fig = Figure(figsize=(4.2 * panels, 3.6))
    axes = np.atleast_1d(fig.subplots(1, panels))
    _histogram(axes[0], ranking["docking_score"], labels, "docking score", "kcal/mol (lower = better)")
    at = 1
    top = (ranking["rank"] <= top_n).to_numpy()
    if has_gnn:
        _histogram(axes[1], ranking["gnn_score"], labels, "GNN score", "ensemble mean (higher = better)")
        ax = axes[2]
        if len(ranking) > SCATTER_LIMIT:
            others = ranking.loc[~top, ["docking_score", "gnn_score"]].dropna()
            ax.hexbin(
                others["docking_score"], others["gnn_score"], gridsize=60, cmap="Blues", bins="log", mincnt=1, zorder=1
            )
            ax.scatter([], [], s=14, color=NEUTRAL, label=f"other ({len(others)}, density)")
        else:
            ax.errorbar(
                ranking["docking_score"],
                ranking["gnn_score"],
                yerr=ranking["gnn_spread"],
                fmt="none",
                ecolor="#cccccc",
                elinewidth=0.8,
                zorder=1,
            )
            ax.scatter(
                ranking.loc[~top, "docking_score"],
                ranking.loc[~top, "gnn_score"],
                s=14,
                color=NEUTRAL,
                label="other",
                zorder=2,
            )
        ax.scatter(
            ranking.loc[top, "docking_score"],
            ranking.loc[top, "gnn_score"],
            s=22,
            color=HIGHLIGHT,
            label=f"top {int(top.sum())}",
            zorder=3,
        )
        ax.set_xlabel("docking score (kcal/mol)")
        ax.set_ylabel("GNN score ± spread")
        ax.set_title("GNN vs docking")
        ax.legend(fontsize=8)
        at = 3
    if has_md:
        ax = axes[at]
        md = ranking[ranking["md_rmsd_mean"].notna()]
        ax.errorbar(
            md["md_rmsd_mean"],
            md["md_interaction_energy"],
            yerr=md.get("md_interaction_energy_std"),
            fmt="o",
            color=NEUTRAL,
            ecolor="#999999",
            markersize=5,
        )
        for _, row in md.head(12).iterrows():
            ax.annotate(
                str(row["id"])[:14],
                (row["md_rmsd_mean"], row["md_interaction_energy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("ligand RMSD during MD, mean (Å)")
        ax.set_ylabel("interaction energy (kcal/mol)")
        ax.set_title("MD stability of refined poses")
    fig.tight_layout()
    return fig


def _residue_key(residue: str) -> tuple:
    """Sort residues by chain, then number (ProLIF names like ``TYR337.A``)."""
    match = re.match(r"^([A-Za-z]+?)(-?\d+)(?:\.(\w+))?$", residue)
    if not match:
        return ("", 0, residue)
    return (match.group(3) or "", int(match.group(2)), residue)


def interaction_matrix(fingerprints: pd.DataFrame, ids: list[str], max_residues: int = 30) -> pd.DataFrame:
    """Top hits × residues: how many interaction types each compound's best docked pose forms with each residue.

    Parameters
    ----------
    fingerprints
        :func:`pipeline.report.rundata.best_pose_fingerprints` (``id`` + boolean ``RESIDUE:Interaction`` columns).
    ids
        The compounds (rows), in ranking order; compounds without a fingerprint get a row of zeros.
    max_residues
        Keep at most this many residues, those contacted by most of these compounds.

    Returns
    -------
    pandas.DataFrame
        Integer counts, index = ids, columns = residues sorted by chain and number.
    """
    pairs = [c for c in fingerprints.columns if ":" in c]
    table = fingerprints.set_index("id").reindex(ids)[pairs].fillna(False).astype(bool)
    residues = sorted({c.split(":")[0] for c in pairs})
    counts = (
        pd.DataFrame(
            {r: table[[c for c in pairs if c.split(":")[0] == r]].sum(axis=1) for r in residues}, index=ids, dtype=int
        )
        if residues
        else pd.DataFrame(index=ids)
    )
    counts = counts.loc[:, counts.sum(axis=0) > 0] if len(counts.columns) else counts
    if len(counts.columns) > max_residues:
        keep = (counts > 0).sum(axis=0).sort_values(ascending=False, kind="mergesort").index[:max_residues]
        counts = counts[list(keep)]
    return counts[sorted(counts.columns, key=_residue_key)]


def interaction_heatmap(matrix: pd.DataFrame, row_labels: list[str]) -> Figure | None:
    """Heatmap of :func:`interaction_matrix` (``None`` when no top hit has an interaction)."""
    if matrix.empty or not len(matrix.columns) or not matrix.to_numpy().any():
        return None
    n_rows, n_cols = matrix.shape
    fig = Figure(figsize=(max(6.0, 0.32 * n_cols + 2.5), max(2.5, 0.3 * n_rows + 1.6)))
    ax = fig.subplots()
    values = matrix.to_numpy()
    image = ax.imshow(values, cmap="Blues", aspect="auto", vmin=0, vmax=max(1, values.max()))
    ax.set_xticks(range(n_cols), matrix.columns, rotation=90, fontsize=8)
    ax.set_yticks(range(n_rows), row_labels, fontsize=8)
    for i, j in zip(*np.nonzero(values)):
        ax.text(
            j,
            i,
            str(values[i, j]),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if values[i, j] > values.max() / 2 else "black",
        )
    colorbar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    colorbar.set_ticks(range(0, int(max(1, values.max())) + 1))
    colorbar.set_label("interaction types")
    ax.set_title("interactions of the top hits (best docked pose)")
    fig.tight_layout()
    return fig


def _thin(x: np.ndarray, y: np.ndarray, points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``points`` evenly spaced points of a curve, first and last kept (short curves unchanged)."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) <= points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
    return x[keep], y[keep]


def enrichment_figure(curves: dict[str, dict[str, np.ndarray]], metrics: pd.DataFrame) -> Figure | None:
    """Enrichment curves (left) and ROC curves (right), one line per score (``None`` without curves).

    Parameters
    ----------
    curves
        :func:`pipeline.report.enrichment.curves`.
    metrics
        :func:`pipeline.report.enrichment.enrichment_table` (AUROC shown in the legend).
    """
    if not curves:
        return None
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    auc = dict(zip(metrics["score"], metrics["auroc"]))
    for color, (title, curve) in zip(LINE_COLORS, curves.items()):
        screened, found = _thin(curve["screened"], curve["found"])
        fpr, tpr = _thin(curve["fpr"], curve["tpr"])
        left.plot(100 * screened, 100 * found, color=color, label=title)
        right.plot(fpr, tpr, color=color, label=f"{title} (AUROC {auc.get(title, np.nan):.2f})")
    left.plot([0, 100], [0, 100], ls="--", color="#999999", label="random")
    right.plot([0, 1], [0, 1], ls="--", color="#999999", label="random")
    left.set_xlabel("% of ranked library screened")
    left.set_ylabel("% of actives found")
    left.set_title("enrichment")
    right.set_xlabel("false positive rate")
    right.set_ylabel("true positive rate")
    right.set_title("ROC")
    for ax in (left, right):
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def active_rounds_figure(rounds: pd.DataFrame) -> Figure | None:
    """An active screen per round: best and top-k mean docked score against the fraction docked
    (left), and the surrogate's Spearman ρ between predicted and docked scores of the batch it chose (right).

    Parameters
    ----------
    rounds
        ``rounds.csv`` of :func:`pipeline.active.screen.write_outputs` (``fraction_spent``,
        ``best_score``, ``top_k_mean``, ``round``, ``batch_spearman``).
    """
    if rounds.empty:
        return None
    fig = Figure(figsize=(8, 3))
    left, right = fig.subplots(1, 2)
    docked = 100 * rounds["fraction_spent"].to_numpy(dtype=float)
    left.plot(docked, rounds["best_score"], "o-", color=NEUTRAL, label="best")
    if rounds["top_k_mean"].notna().any():
        left.plot(docked, rounds["top_k_mean"], "s--", color=HIGHLIGHT, label="top-k mean")
    left.set_xlabel("library docked (%)")
    left.set_ylabel("docking score (kcal/mol)")
    left.set_title("best scores found")
    left.legend(fontsize=8)
    chosen = rounds[rounds["round"] > 0]
    right.bar(chosen["round"], chosen["batch_spearman"].fillna(0.0), color=NEUTRAL)
    right.axhline(0.0, color=INACTIVE, lw=0.8)
    right.set_xlabel("round")
    right.set_ylabel("Spearman ρ, predicted vs docked")
    right.set_title("surrogate on the batch it chose")
    right.set_ylim(-1, 1)
    fig.tight_layout()
    return fig
