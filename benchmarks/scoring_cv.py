"""Does the pair scorer rank congeneric series better than Vina on proteins it never saw?

Protein-grouped 5-fold cross-validation on the shared Uni-FEP series (the folds, the
"unseen compound" rule and the paired bootstrap of :mod:`affinity_eval`): for each fold a
pair-model ensemble (:mod:`pipeline.scoring.pair_train`) is trained on the tethered poses
of the other folds' series and scores this fold's poses. Per series, Kendall τ and
Spearman ρ against the measured ΔG, averaged over series, with paired 95% intervals of the
differences (protein groups resampled) to

* ``vina``: the same poses' Vina score (the untrained pair model, by construction);
* ``heavy_atom_count``: ligand size, the classic bias within a series;
* ``ligand_only``: a fingerprint ridge on within-series ΔG (same folds);
* ``fep``: Uni-FEP's free-energy perturbation (the physics anchor; GPU-hours per ligand);
* ``gnina``: GNINA's CNN affinity of the same poses, rescored in place
  (:mod:`gnina_rescore`, its own virtual environment), when that environment exists
  (``--gnina`` builds it; without it the column is left out and the JSON says why).

Poses come from ``benchmarks/pose_unifep.py``: the committed
``benchmarks/unifep_poses/poses/<folder>.sdf.gz`` (or, in a checkout from before those
files, the cached ``benchmarks/.cache/unifep_poses/<folder>.sdf`` when the committed file is
absent); the latest pose of a ligand counts. Series without poses are left out and counted.
The receptor PDBQT the poses were optimized in is read from the cache and prepared again by
``pose_unifep.prepare`` (deterministic) where absent. Pair graphs are cached under
``benchmarks/.cache/pair_graphs/``, rebuilt when a series' pose file is newer.

The protein-deletion ablation (scorer issue, criterion 3) is measured on up to 200 held-out
complexes: Spearman between each complex's score and its score with the protein's atoms
deleted, and, because a pure pair model scores a protein-less complex 0 by construction,
also with the protein atoms' *features* blanked (geometry kept): does the learned part
read the protein, or only the ligand?

    python benchmarks/scoring_cv.py [--members 3] [--epochs 40] [--max-series N] [--gnina]

Writes ``benchmarks/results/scoring_cv.json`` and ``benchmarks/results/scoring_cv.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import affinity_eval as ae  # noqa: E402
import pose_unifep as pu  # noqa: E402

from pipeline.scoring.pair_train import PairTrainSettings  # noqa: E402

GRAPHS = ROOT / "benchmarks" / ".cache" / "pair_graphs"
RESULT = ROOT / "benchmarks" / "results" / "scoring_cv.json"
MARKDOWN = ROOT / "benchmarks" / "results" / "scoring_cv.md"
N_ABLATION = 200
LABELS = {
    "pair_model": "pair model (this work)",
    "vina": "Vina score (same poses)",
    "heavy_atom_count": "heavy-atom count",
    "ligand_only": "ligand-only ridge",
    "fep": "FEP (Uni-FEP)",
    "gnina": "GNINA CNN affinity (same poses)",
}
GNINA_CACHE = ROOT / "benchmarks" / ".cache" / "gnina" / "unifep"


def pose_file(folder: str) -> Path | None:
    """The pose file of a series: the committed ``.sdf.gz``, else a legacy cache ``.sdf``, else ``None``."""
    for path in (pu.pose_path(folder), pu.legacy_pose_path(folder)):
        if path.is_file():
            return path
    return None


def series_graphs(folder: str) -> dict[str, object]:
    """Pair graphs of one series' poses by ligand name (built once, then read from the cache)."""
    from pipeline.pair_graphs import load_pair_graphs, load_vina_receptor, pair_graph, save_pair_graphs

    cached = GRAPHS / f"{folder}.pt"
    sdf, receptor = pose_file(folder), pu.receptor_path(folder)
    if cached.is_file() and (sdf is None or cached.stat().st_mtime >= sdf.stat().st_mtime):
        return {g.id: g for g in load_pair_graphs(cached)[1]}
    if sdf is None:
        return {}
    if not receptor.is_file():  # a fresh checkout: the receptor is an intermediate, prepare it again (into the cache)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            pu.prepare(pu.UNIFEP / folder, Path(tmp))
    vina_receptor = load_vina_receptor(receptor)
    graphs = {}
    for mol in pu.read_poses(sdf):
        if not mol.HasProp("_Name"):
            continue
        try:
            graphs[mol.GetProp("_Name")] = dict(pair_graph(mol, vina_receptor), id=mol.GetProp("_Name"))
        except ValueError as exc:  # a pose Vina cannot type or outside the pocket: no graph, counted
            print(f"  {folder} {mol.GetProp('_Name')}: no pair graph ({exc})", flush=True)
    GRAPHS.mkdir(parents=True, exist_ok=True)
    save_pair_graphs(cached, list(graphs.values()))  # the latest pose of a ligand wins (poses appended in order)
    return {g.id: g for g in load_pair_graphs(cached)[1]}


def attach_graphs(df: pd.DataFrame, max_series: int | None) -> tuple[pd.DataFrame, list]:
    """Rows of ``df`` that have a pose, with a ``graph`` index into the returned list, and the graphs."""
    graphs, index = [], []
    folders = [f for f in dict.fromkeys(df["series"]) if pose_file(f) is not None][: max_series or None]
    for folder in folders:
        found = series_graphs(folder)
        for name in df.loc[df["series"] == folder, "ligand_name"]:
            if name in found:
                index.append(len(graphs))
                graphs.append(found[name])
            else:
                index.append(-1)
    sub = df[df["series"].isin(folders)].copy()
    sub["graph"] = index
    return sub[sub["graph"] >= 0], graphs


def vina_column(graphs: list, rows: pd.DataFrame) -> np.ndarray:
    """Vina's score of each row's pose, from the pair graph's own terms (the untrained model's score)."""
    from pipeline.pair_graphs import GLOBAL_NAMES

    column = GLOBAL_NAMES.index("vina_score")
    return np.array([float(graphs[i].globals.reshape(-1)[column]) for i in rows["graph"]])


def gnina_column(rows: pd.DataFrame, build: bool) -> tuple[pd.Series | None, str]:
    """GNINA's CNN affinity of each row's pose, negated (lower = tighter), and a note on how it was made.

    The protein is the series' ``protein.pdb.gz`` (GNINA types its own atoms); the poses are
    the committed pose files, the latest pose of a ligand counting. ``None`` when the GNINA
    environment does not exist (and ``build`` is false) or cannot be built.
    """
    import gnina_rescore as gr

    env = gr.ensure_env() if build else (gr.ENV if (gr.ENV / ".complete").is_file() else None)
    if env is None:
        return None, "GNINA environment absent (run with --gnina to build it)"
    column = pd.Series(np.nan, index=rows.index)
    seconds = 0.0
    for folder in dict.fromkeys(rows["series"]):
        table = gr.rescore(pu.UNIFEP / folder / "protein.pdb.gz", pose_file(folder), GNINA_CACHE / f"{folder}.csv")
        seconds += float(table.attrs.get("timing", {}).get("seconds_per_pose", 0.0)) * len(table)
        affinity = gr.latest_per_name(table).set_index("name")["CNNaffinity"]
        here = rows["series"] == folder
        column[here] = -rows.loc[here, "ligand_name"].map(affinity).astype(float).to_numpy()
    return column, f"gninatorch default ensemble, CNNaffinity of the poses in place; {seconds:.0f} s this run"


def train_and_predict(rows: pd.DataFrame, graphs: list, folds: pd.Series, args) -> tuple[pd.Series, pd.Series, dict]:
    """Out-of-fold pair-model scores and spreads, and the fold models (for the ablation)."""
    from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA
    from pipeline.scoring.pair_train import PairExample, fit_ensemble

    settings = PairTrainSettings(
        members=args.members, epochs=args.epochs, seed=args.seed, absolute_weight=args.absolute_weight
    )
    score = pd.Series(np.nan, index=rows.index)
    spread = pd.Series(np.nan, index=rows.index)
    models = {}
    for fold in sorted(folds.unique()):
        test = folds == fold
        train = rows[~test]
        examples = [
            PairExample(graphs[g], s, p, dg=float(v))
            for g, s, p, v in zip(train["graph"], train["series"], train["group"], train["exp_dG"])
        ]
        started = time.time()
        ensemble = fit_ensemble(examples, DEFAULT_PAIR_SCHEMA, settings=settings)
        mean, sd = ensemble.predict([graphs[g] for g in rows.loc[test, "graph"]])
        score[test], spread[test] = mean, sd
        models[int(fold)] = ensemble
        best = [h.best_epoch for h in ensemble.histories]
        print(
            f"fold {fold}: {len(examples)} training poses, best epochs {best}, {time.time() - started:.0f} s",
            flush=True,
        )
    return score, spread, models


def protein_ablation(rows: pd.DataFrame, graphs: list, folds: pd.Series, models: dict, seed: int) -> dict:
    """Spearman of held-out scores with the protein deleted and with its atom features blanked."""
    from scipy.stats import spearmanr

    from pipeline.pair_graphs import to_data, without_protein

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(rows))[:N_ABLATION]
    full, deleted, blanked = [], [], []
    for k in pick:
        row = rows.iloc[k]
        ensemble = models[int(folds.iloc[k])]
        graph = graphs[int(row["graph"])]
        masked = graph.clone()
        n_lig = int(graph.n_ligand_atoms)
        masked.x = graph.x.clone()
        masked.x[n_lig:] = 0.0
        gone = to_data({key: graph[key] for key in graph.keys()} | without_protein(graph))
        full.append(ensemble.predict([graph])[0][0])
        deleted.append(ensemble.predict([gone])[0][0])
        blanked.append(ensemble.predict([masked])[0][0])
    full, deleted, blanked = map(np.asarray, (full, deleted, blanked))
    constant = bool(np.ptp(deleted) == 0)
    return dict(
        complexes=int(len(pick)),
        deleted_scores_constant=constant,
        deleted_score_values=sorted(set(np.round(deleted, 6).tolist()))[:5],
        spearman_full_vs_deleted=None if constant else float(spearmanr(full, deleted).statistic),
        spearman_full_vs_blanked_features=float(spearmanr(full, blanked).statistic),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3, help="ensemble members per fold")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--absolute-weight", type=float, default=PairTrainSettings.absolute_weight, help="Huber term's weight"
    )
    parser.add_argument("--max-series", type=int, default=None, help="only the first N series (quick checks)")
    parser.add_argument("--seed", type=int, default=ae.SEED)
    parser.add_argument("--gnina", action="store_true", help="build GNINA's environment if absent and add its column")
    args = parser.parse_args(argv)
    started = time.time()
    df = ae.load_unifep()
    all_series = df["series"].nunique()
    df["fold"] = ae.protein_folds(df)
    rows, graphs = attach_graphs(df, args.max_series)
    print(f"{rows['series'].nunique()} of {all_series} series have poses ({len(rows)} ligands)", flush=True)
    folds = rows["fold"]
    rows["unseen"] = ae.cv_unseen(rows, folds)
    rows["vina"] = vina_column(graphs, rows)
    rows["heavy_atom_count"] = ae.heavy_atom_score(rows)
    rows["fep"] = ae.fep_score(rows)
    rows["ligand_only"] = ae.cross_validated(rows, folds, ae.ligand_only_ridge)
    gnina, gnina_note = gnina_column(rows, args.gnina)
    if gnina is not None:
        rows["gnina"] = gnina
    rows["pair_model"], rows["pair_spread"], models = train_and_predict(rows, graphs, folds, args)
    methods = [m for m in LABELS if m in rows]
    summary = ae.summarize(rows, methods, seed=args.seed)
    summary.update(
        benchmark="scoring_cv",
        command="python benchmarks/scoring_cv.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        series_with_poses=int(rows["series"].nunique()),
        series_in_unifep=int(all_series),
        settings=dict(members=args.members, epochs=args.epochs, seed=args.seed, absolute_weight=args.absolute_weight),
        gnina=gnina_note,
        ablation=protein_ablation(rows, graphs, folds, models, args.seed),
        host=platform.node(),
        seconds=round(time.time() - started, 1),
    )
    markdown = ae.to_markdown(summary, LABELS)
    print(markdown)
    print(json.dumps(summary["ablation"], indent=1))
    RESULT.write_text(json.dumps(summary, indent=1, default=float) + "\n")
    MARKDOWN.write_text(markdown + "\n")


if __name__ == "__main__":
    main()
