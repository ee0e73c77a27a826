"""Does the pair scorer tell a target's actives from decoys and cross-decoys on a target it never saw?

DUD-E leave-one-target-out over the five shared targets, on the poses of
``benchmarks/pose_dude.py`` (scorer issue: "DUD-E actives against cross-decoys ... beside the
property-matched decoys"). For each held-out target T a pair-model ensemble
(:func:`pipeline.scoring.pair_train.fit_ensemble`) is trained on

* the Uni-FEP affinity examples (tethered poses, ``scoring_cv.attach_graphs``), without the
  protein groups that overlap T (:func:`overlapping_unifep_targets`: T's protein group as
  :func:`affinity_eval.protein_groups` forms it, and gene-name prefixes of T's family, e.g.
  AKT for akt2, HSP90/TRAP1 for hs90a, ACHE/BCHE for aces, CASP for casp3, PTGS for pgh2);
* the screening examples of the other four targets U (top pose): U's actives (1), U's
  property-matched decoys (0) and U's cross-decoys (0). No compound of T's own sample (its
  actives and decoys, docked anywhere) is a training example under any label: T's actives
  docked into U would otherwise teach the ligand part that T's chemistry is "inactive".
  Lower-ranked poses of actives are *not* used as negatives (a lower-ranked pose may be the
  right one) unless ``--wrong-pose-negatives``, which adds poses of rank 2.. that lie more
  than 2 Å (heavy-atom RMSD) from the active's top pose.

T's compounds (top pose) are then scored and compared, per target and on the mean over
targets, with

* ``vina``: the docking score of the same pose (negated);
* ``heavy_atom_count``: ligand size (the size bias);
* ``ligand_only``: the pipeline's ligand-only fingerprint model, trained on the same training
  compounds and labels (``cross_decoys.ligand_only_scores``);

on two negative sets: T's property-matched decoys and T's cross-decoys (the other targets'
actives docked into T: a seeded half of each other target's actives, which is then kept out
of training under every label, so no test compound was seen in training; the other half
trains, :func:`cross_decoys.held_out_cross_decoy_keys`). AUROC per target, the mean over targets, and paired bootstrap 95%
intervals of the differences pair model − each baseline (actives and negatives resampled
separately within each target, the same draws for both methods; the mean's interval
averages per-target replicates: :func:`affinity_eval.loto_auroc`). EF1% and BEDROC only where
the top 1% holds at least 5 compounds (``ceil(0.01 N) >= 5``), else "n/a".

It uses what the campaign has: the rows with a pose, counted per target and role against
the plan; a target without actives or without negatives of a set is listed, not scored.

    python benchmarks/scoring_loto.py [--members 3] [--epochs 40] [--quick]

Writes ``benchmarks/results/scoring_loto.json`` and ``benchmarks/results/scoring_loto.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import affinity_eval as ae  # noqa: E402
import cross_decoys  # noqa: E402
import pose_dude  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "scoring_loto.json"
GRAPHS = ROOT / "benchmarks" / ".cache" / "dude_pair_graphs"
TARGETS = pose_dude.TARGETS
METHODS = ("pair_model", "vina", "heavy_atom_count", "ligand_only")
BASELINES = METHODS[1:]
LABELS = {
    "pair_model": "pair model (this work)",
    "vina": "Vina score (same pose)",
    "heavy_atom_count": "heavy-atom count",
    "ligand_only": "ligand-only model",
}
SHORT = {"vina": "Vina", "heavy_atom_count": "heavy atoms", "ligand_only": "ligand-only"}
NEGATIVES = {"decoy": "property-matched decoys", "cross_decoy": "cross-decoys"}
#: Gene-name prefixes of each DUD-E target's family: Uni-FEP targets starting with one are held out with it.
#: BCHE is ACHE's paralogue (same fold and gorge, inhibitors cross-react); TRAP1 is the mitochondrial HSP90.
OVERLAP_PREFIXES: dict[str, tuple[str, ...]] = {
    "aces": ("ACHE", "BCHE"),
    "akt2": ("AKT",),
    "casp3": ("CASP",),
    "hs90a": ("HSP90", "TRAP1"),
    "pgh2": ("PTGS",),
}
WRONG_POSE_RMSD = 2.0  # Å from the top pose: a lower-ranked pose this far away is a different binding mode
EARLY_FRACTION, EARLY_MIN_TOP = 0.01, 5
NOT_REPORTED = "n/a (top 1% holds fewer than 5 compounds)"
N_BOOTSTRAP = 2000
SEED = 0


# --------------------------------------------------------------------------- data


def campaign_rows(poses: Path) -> pd.DataFrame:
    """Successful dockings of the campaign with ``key`` (canonical SMILES) and ``active`` (1 for role active)."""
    rows = pose_dude.read_rows(poses)
    rows = rows[rows["status"] == "ok"].copy()
    rows["key"] = [cross_decoys.canonical(s) or s for s in rows["smiles"]]
    rows["active"] = (rows["role"] == "active").astype(int)
    return rows.reset_index(drop=True)


def _signature(path: Path, ranks: str) -> str:
    """Cache name part of a poses file: its place, size and time (a new member makes a new cache)."""
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ranks}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _unpack(loaded: list) -> tuple[dict[tuple[str, int], object], dict[tuple[str, int], float]]:
    """Graphs by ``(id, rank)`` without their extra entries, and each lower-ranked pose's RMSD to the top pose.

    ``pose`` and ``rmsd_to_top`` are removed from the graphs: a batch needs the same entries in
    every graph, and the Uni-FEP graphs it mixes with have neither.
    """
    graphs, rmsd = {}, {}
    for g in loaded:
        key = (g.id, int(g.pose))
        if "rmsd_to_top" in g:
            rmsd[key] = float(g.rmsd_to_top)
            del g.rmsd_to_top
        del g.pose
        graphs[key] = g
    return graphs, rmsd


def target_graphs(
    target: str, poses: Path, all_ranks: bool = False
) -> tuple[dict[tuple[str, int], object], dict[tuple[str, int], float]]:
    """Pair graphs of a target's poses by ``(compound id, rank)`` (top poses only unless ``all_ranks``).

    The second dict holds, for lower-ranked poses, the heavy-atom RMSD to the same compound's
    top pose (Å). Built with the receptor the poses were docked against (the campaign's
    committed copy) and cached under ``benchmarks/.cache/dude_pair_graphs/``.
    """
    from pipeline.pair_graphs import load_pair_graphs, load_vina_receptor, pair_graph, save_pair_graphs
    from pipeline.rmsd import heavy_atom_rmsd

    path = poses / "poses" / f"{target}.sdf.gz"
    if not path.is_file():
        return {}, {}
    ranks = "all" if all_ranks else "top"
    cached = GRAPHS / f"{target}-{ranks}-{_signature(path, ranks)}.pt"
    if cached.is_file():
        return _unpack(load_pair_graphs(cached)[1])
    receptor_path = pose_dude.receptor_file(target, poses, prepare=False)
    if receptor_path is None:
        print(f"  {target}: poses without the receptor they were docked against; left out", flush=True)
        return {}, {}
    receptor = load_vina_receptor(receptor_path)
    found = pose_dude.read_poses(path)
    graphs = []
    for (cid, rank), mol in sorted(found.items()):
        if rank > 1 and not all_ranks:
            continue
        try:
            graph = dict(pair_graph(mol, receptor), id=cid, pose=rank)
        except ValueError as exc:  # a pose Vina cannot type or outside the pocket: no graph, counted
            print(f"  {target} {cid} pose {rank}: no pair graph ({exc})", flush=True)
            continue
        if rank > 1:
            top = found.get((cid, 1))
            graph["rmsd_to_top"] = float(heavy_atom_rmsd(mol, top)) if top is not None else float("nan")
        graphs.append(graph)
    GRAPHS.mkdir(parents=True, exist_ok=True)
    save_pair_graphs(cached, graphs)
    return _unpack(load_pair_graphs(cached)[1])


def overlapping_unifep_targets(unifep_targets: Sequence[str], target: str) -> list[str]:
    """Uni-FEP target names that overlap the DUD-E ``target`` (held out with it).

    Conservative: the same protein group (:func:`affinity_eval.protein_groups`, which joins
    isoforms, paralogue families and synonyms: ``hs90a`` -> HSP90 with TRAP1) or a gene symbol
    starting with one of :data:`OVERLAP_PREFIXES`. Kinase, protease or other superfamilies are
    not joined (the protein-grouped folds of the Uni-FEP benchmark do not join them either).
    """
    group = ae.protein_groups([target])[target]
    groups = ae.protein_groups(unifep_targets)
    prefixes = OVERLAP_PREFIXES.get(target, ())
    return sorted(
        {t for t in unifep_targets if groups[t] == group or ae.gene_symbol(t).startswith(prefixes)}, key=str.upper
    )


def unifep_examples(max_series: int | None) -> tuple[pd.DataFrame, list]:
    """Uni-FEP ligands that have a pose, with their graph index, and the graphs (empty if there are none)."""
    import scoring_cv  # imported here: only the affinity side needs it

    df = ae.load_unifep()
    rows, graphs = scoring_cv.attach_graphs(df, max_series)
    rows.attrs["all_targets"] = sorted(df["target"].unique())
    return rows, graphs


# --------------------------------------------------------------------------- one held-out target


def held_out_cross_decoys(campaign: pd.DataFrame, held_out: str, seed: int) -> set[str]:
    """Keys of the held-out target's test cross-decoys (:func:`cross_decoys.held_out_cross_decoy_keys`).

    Half of each other target's actives in the campaign; the other half stays in training.
    """
    actives = campaign.loc[campaign["role"] == "active", ["target", "key"]].drop_duplicates()
    return cross_decoys.held_out_cross_decoy_keys(actives, held_out, seed)


def training_rows(campaign: pd.DataFrame, held_out: str, test_keys: set[str] = frozenset()) -> pd.DataFrame:
    """Screening rows of the other targets, without any compound of the held-out target's sample or test.

    ``test_keys`` are the held-out target's test cross-decoys (:func:`held_out_cross_decoys`): they
    are left out of training under every label too, so no test compound was seen in training.
    """
    own = campaign[campaign["source_target"] == held_out]
    held_keys = set(own["key"]) | set(test_keys)
    part = campaign[(campaign["target"] != held_out) & (campaign["source_target"] != held_out)]
    return part[~part["key"].isin(held_keys)]


def evaluation_rows(campaign: pd.DataFrame, held_out: str, test_keys: set[str]) -> pd.DataFrame:
    """The held-out target's test compounds: its actives and decoys, and the test half of its cross-decoys."""
    part = campaign[campaign["target"] == held_out]
    return part[(part["role"] != "cross_decoy") | part["key"].isin(test_keys)].copy()


def screening_examples(
    rows: pd.DataFrame, graphs: dict[str, dict], rmsd: dict[str, dict] | None = None
) -> tuple[list, dict[str, int]]:
    """``PairExample``s of training rows: the top pose; with ``rmsd`` also actives' far lower-ranked poses, as 0.

    ``graphs`` and ``rmsd`` are per target, as :func:`target_graphs` gives them.
    """
    from pipeline.scoring.pair_train import PairExample

    examples, counts = [], dict(active=0, decoy=0, cross_decoy=0, wrong_pose=0, no_graph=0)
    for r in rows.itertuples():
        found = graphs.get(r.target, {})
        graph = found.get((r.id, 1))
        if graph is None:
            counts["no_graph"] += 1
            continue
        protein = ae.protein_groups([r.target])[r.target]  # the DUD-E target's protein group, as Uni-FEP's are
        examples.append(PairExample(graph, f"dude:{r.target}", protein, active=int(r.active)))
        counts[r.role] += 1
        if rmsd is not None and r.active:
            for (cid, rank), other in found.items():
                if cid == r.id and rank > 1 and rmsd[r.target].get((cid, rank), 0.0) > WRONG_POSE_RMSD:
                    examples.append(PairExample(other, f"dude:{r.target}", protein, active=0))
                    counts["wrong_pose"] += 1
    return examples, counts


def heavy_atoms(smiles: Sequence[str]) -> np.ndarray:
    """Heavy-atom count of each SMILES (higher = predicted more active: the size bias)."""
    return np.array([cross_decoys.heavy_atoms(s) for s in smiles], dtype=float)


def score_held_out(
    held_out: str,
    campaign: pd.DataFrame,
    graphs: dict[str, dict],
    rmsd: dict[str, dict],
    affinity: list,
    args: argparse.Namespace,
) -> tuple[pd.DataFrame, dict]:
    """Train on everything but ``held_out``; its top-posed compounds with every method's score, and the fold's record.

    ``graphs`` and ``rmsd`` are per target (:func:`target_graphs`), ``affinity`` the Uni-FEP
    examples already without the held-out target's proteins.
    """
    from dataclasses import replace

    from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA
    from pipeline.scoring.pair_train import PairTrainSettings, fit_ensemble

    started = time.time()
    test_keys = held_out_cross_decoys(campaign, held_out, args.seed)
    train = training_rows(campaign, held_out, test_keys)
    screening, counts = screening_examples(train, graphs, rmsd if args.wrong_pose_negatives else None)
    examples = affinity + screening
    settings = PairTrainSettings(members=args.members, epochs=args.epochs, seed=args.seed)
    if not affinity:
        # early stopping reads affinity series only: without them a held-out group would be wasted data
        settings = replace(settings, validation_fraction=0.0)
    if not examples:
        settings = replace(settings, epochs=0)  # nothing to learn from: the untrained model is Vina's terms
    ensemble = fit_ensemble(examples, DEFAULT_PAIR_SCHEMA, settings=settings)
    test = evaluation_rows(campaign, held_out, test_keys)
    test["graph"] = [graphs.get(held_out, {}).get((cid, 1)) for cid in test["id"]]
    missing = int(test["graph"].isna().sum())
    test = test[test["graph"].notna()].reset_index(drop=True)
    if len(test):
        mean, spread = ensemble.predict(list(test["graph"]))
        test["pair_model"], test["pair_spread"] = -mean, spread  # higher = more likely active
    else:
        test["pair_model"] = test["pair_spread"] = np.zeros(0)
    test["vina"] = -test["score"].astype(float)
    test["heavy_atom_count"] = heavy_atoms(test["smiles"])
    used = train[[(cid, 1) in graphs.get(t, {}) for t, cid in zip(train["target"], train["id"])]]
    if len(test) and used["active"].nunique() == 2:
        test["ligand_only"] = cross_decoys.ligand_only_scores(
            used[["target", "key", "smiles", "active"]], test["smiles"].tolist(), args.seed
        )
    else:
        test["ligand_only"] = np.nan
    record = dict(
        held_out=held_out,
        training=dict(affinity=len(affinity), screening=counts, targets=sorted(set(train["target"]))),
        test_without_graph=missing,
        best_epochs=[h.best_epoch for h in ensemble.histories],
        seconds=round(time.time() - started, 1),
    )
    print(
        f"{held_out}: trained on {len(affinity)} affinity and {len(screening)} screening examples "
        f"({counts}), best epochs {record['best_epochs']}; {len(test)} test compounds; {record['seconds']:.0f} s",
        flush=True,
    )
    return test.drop(columns=["graph"]), record


# --------------------------------------------------------------------------- metrics


def early(labels: np.ndarray, scores: np.ndarray) -> dict | str:
    """EF1% and BEDROC where the top 1% holds at least 5 compounds, else :data:`NOT_REPORTED`."""
    value = ae.early_enrichment(labels, scores, EARLY_FRACTION, EARLY_MIN_TOP)
    return value if isinstance(value, dict) else NOT_REPORTED


def evaluate(
    table: pd.DataFrame,
    negatives: str,
    methods: Sequence[str] = METHODS,
    n: int = N_BOOTSTRAP,
    seed: int = SEED,
) -> dict:
    """AUROC per target and mean, paired intervals of pair model − each baseline, early enrichment where allowed.

    Parameters
    ----------
    table
        One row per (target, compound): ``target``, ``role`` (``active`` or a negative role),
        and a column per method (higher = more likely active).
    negatives
        The negative role of this comparison (``decoy`` or ``cross_decoy``).
    methods
        Score columns; the first is compared with each of the others.
    n, seed
        Bootstrap replicates and seed.

    Returns
    -------
    dict
        :func:`affinity_eval.loto_auroc`'s result on the targets that have both classes
        (``per_target`` rows with an ``early`` entry per method), and ``not_scored``: the
        targets left out and why.
    """
    part = table[table["role"].isin(["active", negatives])].assign(active=lambda d: (d["role"] == "active").astype(int))
    scored, not_scored = [], {}
    for target, rows in part.groupby("target", sort=True):
        n_act = int(rows["active"].sum())
        unscored = [m for m in methods if rows[m].isna().all()]
        if n_act == 0 or n_act == len(rows):
            not_scored[str(target)] = f"{n_act} actives, {len(rows) - n_act} {negatives}s posed"
        elif unscored:  # an all-NaN column would rank as all tied (AUROC 0.5): say so instead
            not_scored[str(target)] = f"no score from {', '.join(unscored)}"
        else:
            scored.append(rows)
    if not scored:
        return dict(per_target=[], mean_auroc={}, differences={}, not_scored=not_scored, n_bootstrap=n, seed=seed)
    data = pd.concat(scored, ignore_index=True)
    result = ae.loto_auroc(data, list(methods), pairs=[(methods[0], b) for b in methods[1:]], n=n, seed=seed)
    for row in result["per_target"]:
        rows = data[data["target"] == row["target"]]
        labels = rows["active"].to_numpy(dtype=float)
        row["negatives"] = row["n"] - row["actives"]
        row["early"] = {m: early(labels, rows[m].to_numpy(dtype=float)) for m in methods}
    result["not_scored"] = not_scored
    return result


# --------------------------------------------------------------------------- report


def _fmt_ci(value: float, ci: Sequence[float] | None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:+.3f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else f"{value:+.3f}"


def to_markdown(summary: dict) -> str:
    """Tables per negative set: AUROC per target and mean, differences with intervals, early enrichment."""
    lines = [
        "# DUD-E leave-one-target-out: pair scorer against docking, size and ligand-only baselines",
        "",
        f"`{summary['command']}` on {summary['date']} ({summary['host']}); poses of "
        f"`benchmarks/pose_dude.py` (top pose per compound). AUROC, higher is better; differences are "
        f"pair model − baseline with paired bootstrap 95% intervals ({summary['n_bootstrap']} replicates, "
        "actives and negatives resampled within each target; the mean's interval resamples within every target).",
        "",
        "## Campaign used",
        "",
        "| target | actives | decoys | cross-decoys | failed | planned |",
        "|---|---|---|---|---|---|",
    ]
    for target, c in summary["campaign"].items():
        lines.append(
            f"| {target} | {c['active']} | {c['decoy']} | {c['cross_decoy']} | {c['failed']} | {c['planned']} |"
        )
    lines += ["", f"Uni-FEP affinity examples: {summary['unifep']['examples']} posed ligands."]
    for target, names in summary["unifep"]["excluded"].items():
        lines.append(f"- held out with {target}: {', '.join(names) if names else 'no Uni-FEP target'}")
    for negatives, label in NEGATIVES.items():
        result = summary["results"][negatives]
        lines += ["", f"## Actives against {label}", ""]
        if not result["per_target"]:
            lines.append("No target has both actives and " + label + " posed yet.")
            continue
        head = "| target | actives / negatives | " + " | ".join(LABELS[m] for m in METHODS)
        head += " | " + " | ".join(f"pair − {SHORT[m]}" for m in BASELINES) + " |"
        lines += [head, "|" + "---|" * (2 + len(METHODS) + len(BASELINES))]
        diffs = result["differences"]
        for row in result["per_target"]:
            t = str(row["target"])
            cells = [f"{row[m]:.3f}" if np.isfinite(row[m]) else "–" for m in METHODS]
            cells += [
                _fmt_ci(
                    diffs[f"pair_model - {b}"]["per_target"].get(t, {}).get("diff", float("nan")),
                    diffs[f"pair_model - {b}"]["per_target"].get(t, {}).get("ci"),
                )
                for b in BASELINES
            ]
            lines.append(f"| {t} | {row['actives']} / {row['negatives']} | " + " | ".join(cells) + " |")
        mean = result["mean_auroc"]
        cells = [f"**{mean[m]:.3f}**" if np.isfinite(mean[m]) else "–" for m in METHODS]
        cells += [
            _fmt_ci(
                diffs[f"pair_model - {b}"].get("mean", {}).get("diff", float("nan")),
                diffs[f"pair_model - {b}"].get("mean", {}).get("ci"),
            )
            for b in BASELINES
        ]
        lines.append("| **mean** | | " + " | ".join(cells) + " |")
        for target, why in result["not_scored"].items():
            lines.append(f"\n{target}: not scored ({why}).")
        lines += ["", "EF1% / BEDROC:", ""]
        for row in result["per_target"]:
            parts = []
            for m in METHODS:
                value = row["early"][m]
                parts.append(
                    f"{m} EF1% {value['ef']:.1f}, BEDROC {value['bedroc']:.2f}" if isinstance(value, dict) else None
                )
            if all(p is None for p in parts):
                lines.append(f"- {row['target']} (N = {row['n']}): {NOT_REPORTED}")
            else:
                lines.append(f"- {row['target']} (N = {row['n']}): " + "; ".join(p or NOT_REPORTED for p in parts))
    checks = summary["acceptance"]
    lines += [
        "",
        "## Acceptance (scorer issue)",
        "",
        f"- mean AUROC of the pair model ≥ Vina's on the same compounds (property-matched decoys): "
        f"{checks['pair_ge_vina_decoy']}",
        f"- same on cross-decoys: {checks['pair_ge_vina_cross_decoy']}",
        f"- ligand-only baseline on cross-decoys within 0.5 ± 0.07: {checks['ligand_only_cross_decoy_near_half']}",
    ]
    return "\n".join(lines)


def campaign_counts(poses: Path, campaign: pd.DataFrame, per_class: int) -> dict:
    """Per target: successful dockings by role, failures, and the plan's size."""
    all_rows = pose_dude.read_rows(poses)
    try:
        plan = pose_dude.plan_tasks(pose_dude.sample_table(per_class))
    except FileNotFoundError:  # the shared DUD-E data are not here: counts without the plan
        plan = []
    out = {}
    for target in TARGETS:
        part = campaign[campaign["target"] == target]
        out[target] = {role: int((part["role"] == role).sum()) for role in pose_dude.ROLES}
        out[target]["failed"] = int(((all_rows["target"] == target) & (all_rows["status"] != "ok")).sum())
        out[target]["planned"] = sum(t.target == target for t in plan)
    return out


def _acceptance(results: dict) -> dict:
    def mean(negatives: str, method: str) -> float:
        return results[negatives]["mean_auroc"].get(method, float("nan"))

    def verdict(ok: bool, text: str) -> str:
        return f"{'yes' if ok else 'no'} ({text})"

    out = {}
    for negatives in NEGATIVES:
        p, v = mean(negatives, "pair_model"), mean(negatives, "vina")
        diff = results[negatives].get("differences", {}).get("pair_model - vina", {}).get("mean", {})
        ci = diff.get("ci")
        text = f"{p:.3f} vs {v:.3f}" + (f", difference interval [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
        out[f"pair_ge_vina_{negatives}"] = verdict(bool(p >= v), text) if np.isfinite(p) and np.isfinite(v) else "n/a"
    lo = mean("cross_decoy", "ligand_only")
    out["ligand_only_cross_decoy_near_half"] = verdict(abs(lo - 0.5) <= 0.07, f"{lo:.3f}") if np.isfinite(lo) else "n/a"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3, help="ensemble members per held-out target")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP)
    parser.add_argument("--max-series", type=int, default=None, help="only the first N Uni-FEP series")
    parser.add_argument("--no-unifep", action="store_true", help="train on the screening examples only")
    parser.add_argument(
        "--wrong-pose-negatives",
        action="store_true",
        help=f"train on actives' lower-ranked poses more than {WRONG_POSE_RMSD} Å from the top pose as negatives",
    )
    parser.add_argument("--per-class", type=int, default=pose_dude.PER_CLASS, help="the campaign's --per-class")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny run: 1 member, 2 epochs, 3 series, 200 replicates")
    parser.add_argument("--poses", type=Path, default=pose_dude.OUT, help="the campaign's folder")
    parser.add_argument("--out", type=Path, default=RESULT, help="JSON (the Markdown goes beside it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.epochs, args.bootstrap = 1, 2, 200
        args.max_series = args.max_series or 3
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.time()
    campaign = campaign_rows(args.poses)
    built = {t: target_graphs(t, args.poses, args.wrong_pose_negatives) for t in TARGETS}
    graphs, rmsd = {t: g for t, (g, _) in built.items()}, {t: r for t, (_, r) in built.items()}
    counts = campaign_counts(args.poses, campaign, args.per_class)
    for target, c in counts.items():
        print(f"{target}: {c}", flush=True)

    if args.no_unifep:
        unifep, unifep_graphs, all_targets = pd.DataFrame(columns=["target", "graph"]), [], []
    else:
        unifep, unifep_graphs = unifep_examples(args.max_series)
        all_targets = unifep.attrs.get("all_targets", sorted(unifep["target"].unique()))
    print(
        f"Uni-FEP: {len(unifep)} posed ligands in {unifep['series'].nunique() if len(unifep) else 0} series", flush=True
    )

    from pipeline.scoring.pair_train import PairExample

    tables, folds, excluded = [], [], {}
    for held_out in TARGETS:
        excluded[held_out] = overlapping_unifep_targets(all_targets, held_out) if all_targets else []
        keep = unifep[~unifep["target"].isin(excluded[held_out])] if len(unifep) else unifep
        affinity = [
            PairExample(unifep_graphs[g], s, p, dg=float(v))
            for g, s, p, v in zip(keep["graph"], keep["series"], keep["group"], keep["exp_dG"])
        ]
        table, record = score_held_out(held_out, campaign, graphs, rmsd, affinity, args)
        record["unifep_excluded"] = excluded[held_out]
        record["unifep_examples_dropped"] = int(len(unifep) - len(keep))
        tables.append(table)
        folds.append(record)
    scored = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    results = {neg: evaluate(scored, neg, n=args.bootstrap, seed=args.seed) for neg in NEGATIVES}
    command = "python benchmarks/scoring_loto.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = dict(
        benchmark="scoring_loto",
        description=__doc__.split("\n\n")[0],
        command=command.strip(),
        date=time.strftime("%Y-%m-%d"),
        host=platform.node(),
        settings=dict(
            members=args.members,
            epochs=args.epochs,
            seed=args.seed,
            wrong_pose_negatives=args.wrong_pose_negatives,
            unifep=not args.no_unifep,
            max_series=args.max_series,
        ),
        n_bootstrap=args.bootstrap,
        early_rule=f"EF1% and BEDROC only when ceil({EARLY_FRACTION} N) >= {EARLY_MIN_TOP}",
        campaign=counts,
        unifep=dict(examples=int(len(unifep)), excluded=excluded),
        folds=folds,
        results=results,
        acceptance=_acceptance(results),
        seconds=round(time.time() - started, 1),
    )
    markdown = to_markdown(summary)
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, default=float) + "\n")
    args.out.with_suffix(".md").write_text(markdown + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
