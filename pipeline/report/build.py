"""Assemble ``report.html`` (and its figure files and ``top_hits.sdf``) from a finished run.

The page has these sections, in order: the run's inputs and settings; the funnel
(compounds per stage, failures by reason); the top hits (a sortable table with 2D
depictions, GNN score ± spread, docking score, MD stability and key interactions);
score distributions; an interaction heatmap (top hits × residues); for a labelled
library, enrichment (AUROC, EF1%, BEDROC and curves per score); and the full config.

When the run explains its top hits (``vscreen explain``, ``explain/``;
:mod:`pipeline.scoring.explain`), each hit's row opens "why this score": a bar per residue
of the largest shares of the pair model's score and of Vina's, side by side (inline SVG),
and Vina's per-term breakdown; its 3D view colours residues and atom pairs by their share.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .. import __version__
from ..config import schema_default, settings_from_section
from ..io import atomic_path, write_text_atomic
from ..pair_graphs import VINA_TERMS
from ..scoring.explain import RunExplanations, read_explanations
from . import html
from .depictions import depict_svg
from .enrichment import can_evaluate, curves, enrichment_table
from .figures import (
    enrichment_figure,
    funnel_figure,
    interaction_heatmap,
    interaction_matrix,
    png_bytes,
    score_distributions,
)
from .funnel import failure_reasons, failures_by_stage, funnel
from .md_selection import md_selection_section
from .rundata import RunData, load_run
from .timing import stage_times, timing_section
from .top_hits import select_top_poses, write_top_hits
from .viewer import CSS as VIEWER_CSS
from .viewer import FAVOURABLE, UNFAVOURABLE, PoseView, explanation_overlay, page_scripts, pose_views, viewer_cell

log = logging.getLogger(__name__)

#: Residues in a hit's "why this score" bars (largest |share| first).
EXPLAIN_BARS = 10
#: Vina's bars (paler than the model's, same meaning of the colours).
VINA_FAVOURABLE, VINA_UNFAVOURABLE = "#92c5de", "#f4a582"
EXPLAIN_CSS = """
details.why summary { white-space: nowrap; }
details.why svg { display: block; margin: 4px 0; }
div.terms { font-size: 11px; margin: 2px 0; max-width: 390px; }
div.terms span { margin-right: 8px; white-space: nowrap; }
"""


#: ``refine.select_by`` in the settings list (the "Sent to MD" section says more).
_SELECTION_RULE = {"docking": "docking score", "score": "GNN score", "ucb": "GNN score + k × spread (UCB)"}


@dataclass
class ReportSummary:
    """What :func:`build_report` wrote: the page, the figure files, the top-hits SDF and the metrics."""

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    top_hits: Path | None = None
    top_hits_written: int = 0
    top_rows: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)


def _model_card(score: dict[str, Any]) -> dict[str, Any]:
    """The model's ``card.json`` (``{}`` when missing, unreadable or not an object).

    A card comes with a shared model folder, so it is untrusted text: every field of it
    that the page shows goes through :func:`html.text`.
    """
    for folder in (Path(score["model"]), Path(score["models_dir"]) / score["model"]):
        card = folder / "card.json"
        if card.is_file():
            try:
                loaded = json.loads(card.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return {}
            return loaded if isinstance(loaded, dict) else {}
    return {}


def settings_section(run: RunData) -> str:
    """The run's inputs and settings as a definition list (HTML).

    Every value here comes from a file (config, ``receptor.json``, the split manifest, the
    model card), so every one is escaped, numbers too: a hand-edited or shared file may
    hold text where a number belongs.
    """
    cfg, t = run.config, html.text
    lib, rec, dock, lig = cfg["library"], cfg["receptor"], cfg["docking"], cfg["ligands"]
    refine, score = cfg["refine"], cfg["score"]
    rows = run.manifest.get("rows")
    items = [
        ("run", f"{t(cfg['run'])} (seed {t(cfg['seed'])})"),
        ("library", f"<code>{t(lib['path'])}</code>" + (f" — {t(rows)} rows" if rows is not None else "")),
    ]
    receptor = f"<code>{t(rec['path'])}</code>" if rec["path"] else f"dockstring target {t(rec['dockstring'])}"
    if run.receptor:
        breaks = run.receptor.get("chain_breaks", [])
        receptor += (
            f" — {t(run.receptor.get('n_residues', '?'))} residues, {t(run.receptor.get('n_atoms', '?'))} "
            f"atoms after repair at pH {t(rec['ph'])}, {len(breaks) if isinstance(breaks, list) else '?'} "
            "chain breaks kept"
        )
    items.append(("receptor", receptor))
    if run.box:
        center = ", ".join(t(f"{v:.2f}") for v in run.box["center"])
        size = " × ".join(t(f"{v:g}") for v in run.box["size"])
        items.append(("docking box", f"center ({center}) Å, size {size} Å"))
    items += [
        (
            "ligand preparation",
            f"protonated at pH {t(lig['ph'])} ({t(lig.get('protonation', 'dimorphite'))}), "
            f"{t(lig['min_heavy_atoms'])}–"
            f"{t(lig['max_heavy_atoms'])} heavy atoms, one ETKDGv3 conformer, MMFF94-relaxed",
        ),
        (
            "docking",
            f"AutoDock Vina ({t(dock['scoring'])} scoring), exhaustiveness {t(dock['exhaustiveness'])}, "
            f"up to {t(dock['n_poses'])} poses within {t(dock['energy_range'])} kcal/mol",
        ),
    ]
    if refine["enabled"]:
        which = " and ".join(
            filter(
                None,
                [
                    f"top {t(refine['top_n'])}" if refine["top_n"] else "",
                    f"top {refine['top_fraction']:.0%}" if refine["top_fraction"] else "",
                ],
            )
        )
        items.append(
            (
                "MD refinement",
                f"{which or 'all'} compounds by {t(_SELECTION_RULE.get(refine.get('select_by'), 'docking score'))}, "
                f"{t(refine['poses_per_compound'])} pose(s) each; {t(refine['forcefield'])} "
                f"ligand, Amber ff14SB, {t(refine['solvent'])} solvent, "
                f"{t(refine['length_ps'])} ps at {t(refine['temperature_k'])} K",
            )
        )
    else:
        items.append(("MD refinement", "off"))
    card = _model_card(score) if score["enabled"] and run.has_gnn else {}
    if score["enabled"] and run.has_gnn:
        card_score = card.get("score")
        meaning = card_score.get("meaning", "") if isinstance(card_score, dict) else ""
        items.append(
            (
                "GNN scoring",
                f"model <code>{t(score['model'])}</code>"
                + (f" ({t(card.get('task', ''))}, {t(card.get('n_models', '?'))} members)" if card else "")
                + (f" — {t(meaning)}" if meaning else ""),
            )
        )
    else:
        items.append(("GNN scoring", "off"))
    rank_by = score["rank_by"] if score["enabled"] and run.has_gnn else "docking"
    order = {
        "gnn": "GNN score (highest first)",
        "docking": "docking score (lowest first)",
        "consensus": f"consensus of GNN and docking z-scores (GNN weight {t(score['consensus_weight'])})",
    }.get(rank_by, t(rank_by))
    why = ranking_rationale(rank_by, card)
    domain = domain_sentence(run, rank_by) if score["enabled"] and run.has_gnn else ""
    domain = f'<br><span class="note">{domain}</span>' if domain else ""
    items.append(("ranked by", f'{order}<br><span class="note">{why}</span>{domain}'))
    return html.definition_list(items)


def domain_sentence(run: RunData, rank_by: str) -> str:
    """One sentence (HTML-escaped) on the domain check of the ranking (:mod:`pipeline.scoring.domain`).

    How many compounds were ranked by docking instead of the model and why (the pocket's
    distance to the nearest training pocket, or their spread above ``score.max_spread``), or
    that the check passed, was off, could not measure the pocket, or that the ranking is by
    docking anyway.

    Parameters
    ----------
    run
        The run (its config, ``ranking.csv`` with ``ranked_by``, and the pocket record).
    rank_by
        What the ranking sorts by (``docking`` when no GNN score was used).
    """
    from ..scoring.domain import DomainSettings, pocket_reason

    if rank_by == "docking":
        return html.text("The ranking is by docking score, so the model's domain check does not apply.")
    settings = settings_from_section(DomainSettings, run.config, "score")
    if not settings.domain_check:
        return html.text("Domain check off (score.domain_check: false): the model ranks every compound.")
    ranking, record = run.ranking, run.pocket
    total = len(ranking)
    fell = int((ranking["ranked_by"] == "docking").sum()) if "ranked_by" in ranking.columns else 0
    placed = "they are placed by the percentile of their docking score among all ranked compounds"
    reason = pocket_reason(record, settings)
    if reason:
        count = f"All {total}" if fell == total else f"{fell} of {total}"
        return html.text(
            f"{count} compounds were ranked by docking score instead of the model, which is out of its "
            f"domain in this pocket: {reason} (score.max_pocket_distance)."
        )
    if record is None:
        pocket = "the pocket distance was not measured (no domain.json from the score stage)"
    elif record.distance is None:
        pocket = f"the pocket distance was not measured ({record.note}), so no compound falls back on it"
    else:
        pocket = (
            f"the pocket is at distance {record.distance:.2f} from the nearest training pocket "
            f"'{record.nearest}' (at most {settings.max_pocket_distance:.2f} passes)"
        )
    if settings.max_spread is None:
        spread = "no spread check (score.max_spread: null)"
    elif fell:
        spread = (
            f"{fell} of {total} compounds were ranked by docking score instead of the model because their "
            f"ensemble spread is above score.max_spread {settings.max_spread:g}; {placed} (ranked_by and "
            "domain_reason in ranking.csv)"
        )
    else:
        spread = f"no compound's ensemble spread is above score.max_spread {settings.max_spread:g}"
    passed = not fell and record is not None and record.distance is not None
    return html.text(("Domain check passed: " if passed else "Domain check: ") + f"{pocket}; {spread}.")


def _held_out_auroc(card: dict[str, Any]) -> dict[str, float]:
    """Leave-one-target-out mean AUROC per method from a model card (``{}`` when it has none)."""
    summary = card.get("summary")
    rows = summary.get("mean_over_targets") if isinstance(summary, dict) else None
    out = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("evaluation") == "leave one target out":
            value = row.get("auroc")
            if isinstance(value, (int, float)) and isinstance(row.get("method"), str):
                out[row["method"]] = float(value)
    return out


def ranking_rationale(rank_by: str, card: dict[str, Any]) -> str:
    """One sentence (HTML-escaped) on why the ranking sorts by ``rank_by``, with the model card's evidence.

    Parameters
    ----------
    rank_by
        ``docking``, ``gnn`` or ``consensus`` (what the ranking actually sorts by).
    card
        The scoring model's card (``{}`` when no GNN score was used).

    Returns
    -------
    str
        Escaped text for the settings list of the report.
    """
    held_out = _held_out_auroc(card)
    evidence = ""
    if "gnn" in held_out and "docking" in held_out:
        evidence = (
            f" Its card's leave-one-target-out AUROC (proteins it was not trained on) is "
            f"{held_out['gnn']:.3f}, against {held_out['docking']:.3f} for the docking score."
        )
    if rank_by == "docking":
        if not card:
            return html.text("Docking score: no GNN score was computed in this run.")
        return html.text(
            "The docking score is the default (score.rank_by: docking) because the GNN scorer has not been "
            "shown to rank better than docking on proteins it was not trained on." + evidence + " The GNN "
            "score is shown as a column; set score.rank_by: gnn or consensus to sort by it."
        )
    beats = held_out.get("gnn", 0.0) > held_out.get("docking", 1.0)
    caution = "" if beats or not evidence else " Caution: on held-out proteins the model did not beat docking."
    return html.text(f"Chosen in the run's config (score.rank_by: {rank_by}).{evidence}{caution}")


def funnel_section(run: RunData, figure_html: str) -> str:
    """Stages table, funnel figure and failures grouped by reason (HTML)."""
    stages = funnel(run)
    table = html.table(
        [html.Column("stage"), html.Column("compounds", numeric=True)],
        [
            [html.Cell(html.text(s)), html.Cell(str(n), n, numeric=True)]
            for s, n in zip(stages["stage"], stages["compounds"])
        ],
        table_id="funnel",
    )
    reasons = failure_reasons(run.failures)
    if len(reasons):
        failed = html.table(
            [
                html.Column("stage"),
                html.Column("reason"),
                html.Column("compounds", numeric=True),
                html.Column("examples"),
            ],
            [
                [
                    html.Cell(html.text(r.stage)),
                    html.Cell(html.text(r.reason)),
                    html.Cell(str(r.compounds), r.compounds, numeric=True),
                    html.Cell(html.text(r.examples)),
                ]
                for r in reasons.itertuples()
            ],
            css="sortable",
            table_id="failure-reasons",
        )
        failed = f'<h3>Failures by reason</h3>{failed}<p class="note">Every failure, with its full reason, is in <code>failures.csv</code>.</p>'
    else:
        failed = '<p class="note">No compound failed.</p>'
    warnings = (
        f'<p class="note">{len(run.warnings)} pose-level problems of compounds that are still ranked '
        "through another pose are listed in <code>pose_warnings.csv</code>.</p>"
        if len(run.warnings)
        else ""
    )
    return f'<div style="display:flex;gap:30px;align-items:flex-start">{table}<div>{figure_html}</div></div>{failed}{warnings}'


def _chips(text: object, css: str = "") -> str:
    if html.is_missing(text) or not str(text).strip():
        return ""
    return "".join(
        f'<span class="chip {css}">{html.text(part.strip())}</span>' for part in str(text).split(";") if part.strip()
    )


def contribution_bars(residues: pd.DataFrame, top: int = EXPLAIN_BARS) -> str:
    """An inline SVG of one pose's largest residue shares: the model's bar and Vina's side by side.

    Parameters
    ----------
    residues
        The pose's rows of ``explain/compounds/<id>.csv`` (``residue``, ``model_contribution``,
        ``vina_contribution``; the model's column empty without a pair model).
    top
        Residues shown: the largest |model share| (|Vina share| without a model).

    Returns
    -------
    str
        ``<svg>`` markup (no script; residue names escaped); each bar's ``<title>`` gives its
        value. Negative shares (favourable) point left of the zero line, in blue.
    """
    model = residues["model_contribution"].notna().any()
    key = "model_contribution" if model else "vina_contribution"
    rows = residues.reindex(residues[key].abs().sort_values(ascending=False, kind="mergesort").index).head(top)
    series = [("model", "model_contribution", FAVOURABLE, UNFAVOURABLE)] if model else []
    series.append(("Vina", "vina_contribution", VINA_FAVOURABLE, VINA_UNFAVOURABLE))
    values = rows[[s[1] for s in series]].to_numpy(dtype=float)
    low, high = min(0.0, float(np.nanmin(values))), max(0.0, float(np.nanmax(values)))
    span = (high - low) or 1.0
    left, right, label_w, row_h, bar_h, top_y = 86, 380, 80, 8 + 8 * len(series), 7, 22
    zero = left + (right - left) * (-low / span)

    def x(v: float) -> float:
        return left + (right - left) * ((v - low) / span)

    parts = []
    for k, (name, _, good, _) in enumerate(series):
        parts.append(
            f'<rect x="{left + 120 * k}" y="4" width="10" height="8" fill="{good}"/>'
            f'<text x="{left + 14 + 120 * k}" y="12">{html.text(name)}</text>'
        )
    for i, (_, r) in enumerate(rows.iterrows()):
        y = top_y + i * row_h
        parts.append(
            f'<text x="{label_w}" y="{y + row_h / 2 + 3:.1f}" text-anchor="end">{html.text(r["residue"])}</text>'
        )
        for k, (name, column, good, bad) in enumerate(series):
            v = float(r[column])
            if np.isnan(v):
                continue
            x0, x1 = sorted((zero, x(v)))
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 3 + 8 * k}" width="{max(x1 - x0, 0.5):.1f}" height="{bar_h}" '
                f'fill="{good if v < 0 else bad}"><title>{html.text(r["residue"])} {name}: {v:+.3f}</title></rect>'
            )
    bottom = top_y + len(rows) * row_h
    parts.append(f'<line x1="{zero:.1f}" y1="{top_y - 2}" x2="{zero:.1f}" y2="{bottom}" stroke="#555"/>')
    for v, anchor in ((low, "start"), (high, "end")):
        if v:
            parts.append(f'<text x="{x(v):.1f}" y="{bottom + 11}" text-anchor="{anchor}">{v:+.2f}</text>')
    parts.append(f'<text x="{zero:.1f}" y="{bottom + 11}" text-anchor="middle">0</text>')
    height = bottom + 16
    return (
        f'<svg class="bars" width="{right + 10}" height="{height}" viewBox="0 0 {right + 10} {height}" '
        f'font-size="10" font-family="sans-serif" role="img" aria-label="contributions per residue">'
        f"{''.join(parts)}</svg>"
    )


#: How the roles of an explained pose (:mod:`pipeline.scoring.explain`) read in the page.
_ROLE_TEXT = {
    "docking_score": "docking score",
    "gnn_score": "GNN score",
    "gnn_score_refined": "refined GNN score",
    "3D view": "3D view",
}


def _main_pose(rows: pd.DataFrame) -> pd.Series | None:
    """The explained pose a hit's bars show: the one of its GNN score, else of its docking score."""
    good = rows[rows["status"] != "failed"]
    for test in (good["ranking_column"] == "gnn_score", good["roles"].str.contains("docking_score", regex=False)):
        if test.any():
            return good[test].iloc[0]
    return good.iloc[0] if len(good) else None


def _vina_terms(pose: pd.Series) -> str:
    """Vina's per-term breakdown of one pose (kcal/mol), as lines of text.

    Not a table: a table inside the top-hits table's cell would add rows to what the page's
    sorting script and readers take for the hits (``#top-hits tbody tr``).
    """
    n = html.number
    terms = " ".join(f"<span>{html.text(t)} {n(pose[f'vina_{t}'], 2)}</span>" for t in VINA_TERMS)
    intra = pose["vina_intra_delta"]
    reported = pose["vina_reported"]
    total = (
        f"= {n(pose['vina_inter'], 2)} inter"
        + ("" if html.is_missing(intra) else f" {float(intra):+.2f} intra")
        + f" {float(pose['vina_torsional']):+.2f} torsional (÷ {n(pose['rot_factor'], 3)}, N<sub>rot</sub> "
        f"{n(pose['n_rot'], 1)}) = <b>{n(pose['vina_score'], 2)}</b>"
        + ("" if html.is_missing(reported) else f" (Vina reported {n(reported, 2)})")
    )
    return (
        '<div class="terms">Vina\'s terms (weight × term, summed over the atom pairs, kcal/mol):'
        f"<br>{terms}<br>{total}</div>"
    )


def explain_cell(explanations: RunExplanations, compound_id: str) -> html.Cell:
    """A top-hits cell that opens "why this score" for one hit (see the module docstring).

    Parameters
    ----------
    explanations
        What ``vscreen explain`` wrote for the run (:func:`pipeline.scoring.explain.read_explanations`).
    compound_id
        The hit.

    Returns
    -------
    pipeline.report.html.Cell
        A closed ``<details>`` with the bars of the pose whose GNN score (else docking score) the
        row shows, what they sum to and Vina's terms; the reason when the hit could not be explained.
    """
    rows = explanations.poses(compound_id)
    if not len(rows):
        return html.Cell('<span class="spread">not explained (beyond the top hits vscreen explain covers)</span>')
    pose = _main_pose(rows)
    failed = rows[rows["status"] == "failed"]
    why = "; ".join(f"{r.source} pose {r.pose}: {r.message}" for r in failed.itertuples())
    if pose is None:
        return html.Cell(f'<span class="spread">cannot be explained: {html.text(why)}</span>')
    residues = explanations.pose_residues(compound_id, pose["source"], int(pose["pose"]))
    if not len(residues):
        return html.Cell('<span class="spread">no residue table in explain/compounds/</span>')
    roles = [_ROLE_TEXT.get(r, r) for r in str(pose["roles"]).split("; ") if r]
    what = f"{pose['source']} pose {int(pose['pose'])}, the pose of the " + ", ".join(roles)
    vina = float(pose["vina_inter"]) / float(pose["rot_factor"])
    if pose["status"] == "explained":
        sums = (
            f"The model's residue shares sum to its pair score, {html.number(pose['model_sum'], 3)} (the GNN "
            f"score is minus it; spread {html.number(pose['model_spread'], 3)} over {int(pose['n_members'])} "
            f"members); Vina's to {html.number(vina, 2)} kcal/mol."
        )
    else:
        sums = f"Vina's residue shares sum to {html.number(vina, 2)} kcal/mol (intermolecular part of its score)."
    notes = [pose["message"]] if pose["message"] else []
    notes += [f"not explained: {why}"] if why else []
    body = (
        f'<details class="why"><summary>why this score</summary><p class="note">{html.text(what)}: {sums} '
        f"Negative = favourable; the {min(EXPLAIN_BARS, len(residues))} residues with the largest shares; "
        f"every residue in <code>explain/compounds/{html.text(compound_id)}.csv</code>, the top atom pairs in "
        f"<code>explain/contacts.csv</code>.</p>{contribution_bars(residues)}{_vina_terms(pose)}"
        + "".join(f'<p class="note">{html.text(n)}</p>' for n in notes)
        + "</details>"
    )
    return html.Cell(body, css="why")


def _colour_views(views: dict[str, PoseView | str], explanations: RunExplanations) -> None:
    """Give each 3D view the colours of its pose's explanation (:func:`pipeline.report.viewer.explanation_overlay`)."""
    for cid, view in views.items():
        if isinstance(view, PoseView):
            residues = explanations.pose_residues(cid, view.source, view.pose)
            if len(residues):
                contacts = explanations.pose_contacts(cid, view.source, view.pose)
                view.explain = explanation_overlay(residues, contacts, view.source)


def top_hits_table(
    run: RunData,
    top_n: int,
    views: dict[str, PoseView | str] | None = None,
    explanations: RunExplanations | None = None,
) -> tuple[str, int]:
    """The sortable top-hits table (HTML) and its number of rows.

    ``views`` (:func:`pipeline.report.viewer.pose_views`, by compound id) adds a last column
    whose cell opens the hit's 3D view; ``None`` leaves the column out. ``explanations`` (what
    ``vscreen explain`` wrote) adds a column before it whose cell opens "why this score"
    (:func:`explain_cell`); ``None`` leaves it out.
    """
    ranking = run.ranking
    top = ranking.head(top_n)
    has = set(ranking.columns)
    columns = [html.Column("rank", numeric=True), html.Column("structure", sortable=False), html.Column("id")]
    if run.labels is not None:
        columns.append(html.Column("label", tooltip="from the library's label column"))
    if run.has_gnn:
        columns.append(
            html.Column(
                "GNN score ± spread", numeric=True, tooltip="ensemble mean ± spread over members, best docked pose"
            )
        )
        if "gnn_score_refined" in has and ranking["gnn_score_refined"].notna().any():
            columns.append(
                html.Column("GNN refined ± spread", numeric=True, tooltip="GNN score of the MD-refined complex")
            )
    if "consensus_score" in has:
        columns.append(html.Column("consensus", numeric=True))
    columns.append(html.Column("docking score (kcal/mol)", numeric=True, tooltip="Vina, best pose"))
    if run.has_md:
        columns += [
            html.Column("MD ligand RMSD (Å)", numeric=True, tooltip="mean over the MD run (final in the tooltip)"),
            html.Column("MD interaction energy (kcal/mol)", numeric=True, tooltip="mean ± std over frames"),
            html.Column("pocket backbone RMSD (Å)", numeric=True),
        ]
    columns.append(html.Column("key interactions", tooltip="docked pose; MD-persistent ones (% of frames) in orange"))
    if explanations is not None:
        columns.append(
            html.Column(
                "why this score",
                sortable=False,
                tooltip="each residue's share of the pair model's score and of Vina's; Vina's terms",
            )
        )
    if views is not None:
        columns.append(
            html.Column("3D pose", sortable=False, tooltip="the pose of top_hits.sdf in its pocket, with its contacts")
        )
    rows = []
    for position, row in top.iterrows():
        cells = [
            html.Cell(str(int(row["rank"])), int(row["rank"]), numeric=True),
            html.Cell(depict_svg(row.get("prepared_smiles") or row.get("smiles")), css="structure"),
            html.Cell(
                html.text(row["id"])
                + (
                    f'<br><span class="spread">{html.text(row["input_id"])}</span>'
                    if str(row["input_id"]) != str(row["id"])
                    else ""
                ),
                str(row["id"]),
            ),
        ]
        if run.labels is not None:
            label = run.labels.loc[position]
            shown = (
                ""
                if pd.isna(label)
                else '<span class="active">active</span>'
                if label > 0.5
                else '<span class="inactive">inactive</span>'
            )
            cells.append(html.Cell(shown, "" if pd.isna(label) else ("active" if label > 0.5 else "inactive")))
        if run.has_gnn:
            cells.append(
                html.num_cell(row["gnn_score"], 3, f'<span class="spread">± {html.number(row["gnn_spread"], 3)}</span>')
            )
            if "gnn_score_refined" in has and ranking["gnn_score_refined"].notna().any():
                cells.append(
                    html.num_cell(
                        row["gnn_score_refined"],
                        3,
                        f'<span class="spread">± {html.number(row["gnn_spread_refined"], 3)}</span>',
                    )
                )
        if "consensus_score" in has:
            cells.append(html.num_cell(row["consensus_score"], 2))
        cells.append(html.num_cell(row["docking_score"], 2))
        if run.has_md:
            rmsd = html.num_cell(row["md_rmsd_mean"], 2)
            if not html.is_missing(row["md_rmsd_mean"]):
                rmsd.html = f'<span title="final {html.number(row["md_rmsd_final"])} Å, max {html.number(row["md_rmsd_max"])} Å">{rmsd.html}</span>'
            cells += [
                rmsd,
                html.num_cell(
                    row["md_interaction_energy"],
                    1,
                    f'<span class="spread">± {html.number(row.get("md_interaction_energy_std"), 1)}</span>',
                ),
                html.num_cell(row.get("md_pocket_backbone_rmsd"), 2),
            ]
        chips = _chips(row.get("interactions")) + _chips(row.get("md_interactions"), "md")
        cells.append(html.Cell(chips or '<span class="spread">none found</span>', css="interactions"))
        if explanations is not None:
            cells.append(explain_cell(explanations, str(row["id"])))
        if views is not None:
            cells.append(viewer_cell(views.get(str(row["id"])), len(rows)))
        rows.append(cells)
    return f'<div class="scroll">{html.table(columns, rows, css="sortable hits", table_id="top-hits")}</div>', len(rows)


def enrichment_section(metrics: pd.DataFrame, figure_html: str, run: RunData) -> str:
    """Metrics table (cells carry ``data-score`` and ``data-metric``) and the enrichment figure (HTML)."""
    columns = [
        html.Column("score"),
        html.Column("compounds", numeric=True),
        html.Column("actives", numeric=True),
        html.Column("AUROC", numeric=True),
        html.Column("EF1%", numeric=True),
        html.Column("BEDROC (α = 80.5)", numeric=True),
    ]
    rows = []
    for r in metrics.itertuples():
        cells = [
            html.Cell(html.text(r.score)),
            html.Cell(str(r.n), r.n, numeric=True),
            html.Cell(str(r.n_active), r.n_active, numeric=True),
        ]
        for metric in ("auroc", "ef1", "bedroc"):
            cell = html.num_cell(getattr(r, metric), 3)
            cell.attrs = {"data-score": r.column, "data-metric": metric}
            cells.append(cell)
        rows.append(cells)
    unlabelled = int(run.labels.isna().sum()) if run.labels is not None else 0
    note = (
        f'<p class="note">Over the {int(metrics["n"].max()) if len(metrics) else 0} ranked compounds with a label'
        + (f" ({unlabelled} ranked compounds without a label left out)" if unlabelled else "")
        + f"; the {len(run.failures)} compounds that failed a stage have no score and are not counted. Higher "
        "is better for every metric; AUROC 0.5 is random. Only scores every ranked compound has are compared "
        "(refined-pose scores cover the refined few).</p>"
    )
    return html.table(columns, rows, table_id="enrichment-metrics") + note + figure_html


def build_report(
    run_dir: str | Path,
    config: dict[str, Any],
    out_html: str | Path | None = None,
    top_hits_sdf: str | Path | None = None,
    figures_dir: str | Path | None = None,
    top_n: int | None = None,
) -> ReportSummary:
    """Write the report of a finished run.

    Parameters
    ----------
    run_dir
        ``results/<run>`` (``ranking.csv`` and the stage outputs inside).
    config
        The validated run config (``results/<run>/config.yaml``).
    out_html
        The page to write (default ``<run_dir>/report.html``).
    top_hits_sdf
        The SD file of the top hits' poses (default ``<run_dir>/top_hits.sdf``).
    figures_dir
        Where the figures also go as PNG files, for Snakemake's report (default
        ``<run_dir>/figures``).
    top_n
        Compounds in the top-hits table and SDF (default ``report.top_n`` of the config).

    Returns
    -------
    ReportSummary
    """
    run_dir = Path(run_dir)
    out_html = Path(out_html or run_dir / "report.html")
    figures_dir = Path(figures_dir or run_dir / "figures")
    top_hits_sdf = Path(top_hits_sdf or run_dir / "top_hits.sdf")
    top_n = int(top_n or config.get("report", {}).get("top_n", schema_default("report", "top_n")))
    run = load_run(run_dir, config, top_n)
    summary = ReportSummary(html=out_html, top_hits=top_hits_sdf)

    figures: dict[str, tuple[bytes, str]] = {}

    def add(name: str, fig, caption: str) -> str:
        if fig is None:
            return ""
        figures[name] = (png_bytes(fig), caption)
        return html.figure(figures[name][0], caption, name)

    stages_fig = add(
        "funnel",
        funnel_figure(funnel(run), failures_by_stage(run.failures)),
        "Compounds that reached each stage (left) and failures per stage (right).",
    )
    # the poses are read once, for the 3D views and for top_hits.sdf
    chosen = select_top_poses(run_dir, run.ranking, top_n)
    views = pose_views(run_dir, chosen)
    explanations = read_explanations(run_dir)  # None when the run was not explained (vscreen explain)
    if explanations is not None:
        _colour_views(views, explanations)
    hits_html, summary.top_rows = top_hits_table(run, top_n, views, explanations)
    dist_fig = add(
        "score_distributions",
        score_distributions(run.ranking, run.labels, top_n),
        "Score distributions over the ranked library"
        + (", actives and inactives stacked" if run.labels is not None else "")
        + (f"; the top {top_n} highlighted" if run.has_gnn else "")
        + ("; MD stability: ligand RMSD (mean over the run) against interaction energy (± std)" if run.has_md else "")
        + ".",
    )
    top_ids = list(run.ranking["id"].head(top_n).astype(str))
    matrix = interaction_matrix(run.fingerprints, top_ids)
    heat_fig = add(
        "interaction_heatmap",
        interaction_heatmap(matrix, [f"{i + 1}. {cid}" for i, cid in enumerate(top_ids)]),
        "Protein–ligand interactions of the top hits (best docked pose, ProLIF): the number of interaction "
        "types each compound forms with each residue.",
    )
    sections = [
        ("settings", "Inputs and settings", settings_section(run)),
        ("funnel", "Funnel", funnel_section(run, stages_fig)),
        (
            "top-hits",
            f"Top {summary.top_rows} hits",
            f'<p class="note">Click a column header to sort; open a row\'s 3D view to see its pose in the pocket. '
            "Poses of these compounds (MD-refined where refined) "
            f"are in <code>top_hits.sdf</code>; the whole ranking is <code>ranking.csv</code>. "
            "To look at them with the receptor, from this run's folder: "
            "<code>pymol receptor/receptor.pdb top_hits.sdf</code> (PyMOL) or "
            "<code>chimerax receptor/receptor.pdb top_hits.sdf</code> (ChimeraX). PyMOL loads the poses as the "
            "states of one object, in rank order (<code>split_states top_hits</code> makes one object per "
            f"compound); ChimeraX opens one model per pose.</p>{hits_html}",
        ),
        ("scores", "Score distributions", dist_fig),
    ]
    if heat_fig:
        sections.append(("interactions", "Interaction heatmap", heat_fig))
    sent = md_selection_section(run)
    if sent:
        sections.append(("md-selection", "Sent to MD", sent))
    if can_evaluate(run.labels):
        metrics = enrichment_table(run.ranking, run.labels)
        summary.metrics = metrics.to_dict("records")
        enrich_fig = add(
            "enrichment",
            enrichment_figure(curves(run.ranking, run.labels), metrics),
            "Enrichment (share of the actives found against share of the ranked library screened, best "
            "scores first) and ROC curves per score; dashed: random.",
        )
        sections.append(("enrichment", "Enrichment", enrichment_section(metrics, enrich_fig, run)))
    timing = timing_section(stage_times(run_dir))
    if timing:
        sections.append(("timing", "Run time per stage", timing))
    sections.append(
        (
            "config",
            "Full configuration",
            f"<details><summary>the validated config of this run (results/{html.text(config['run'])}/config.yaml)"
            f"</summary><pre>{html.text(yaml.safe_dump(config, sort_keys=False))}</pre></details>",
        )
    )

    figures_dir.mkdir(parents=True, exist_ok=True)
    for stale in figures_dir.glob("*.png"):
        if stale.stem not in figures:
            stale.unlink()
    for name, (png, _) in figures.items():
        path = figures_dir / f"{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        summary.figures[name] = path
    summary.top_hits_written = write_top_hits(run_dir, run.ranking, top_n, top_hits_sdf, chosen=chosen)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"{len(run.ranking)} compounds ranked, {len(run.failures)} failed — vscreen {__version__}, "
        f"report written {when}"
    )
    page = html.page(
        f"vscreen screening report: {config['run']}",
        subtitle,
        sections,
        scripts=page_scripts(views),
        css=VIEWER_CSS + EXPLAIN_CSS,
    )
    write_text_atomic(out_html, page)
    log.info(
        "report %s: %d top hits, %d figures, %d poses in %s",
        out_html,
        summary.top_rows,
        len(figures),
        summary.top_hits_written,
        top_hits_sdf,
    )
    return summary
