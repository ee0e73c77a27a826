"""Does MD move the ranking? "With MD" vs "without MD" final scores on held-out proteins.

The MD issue asks for a stability-aware final score (the pose's score corrected by what a
short MD run says of it), fitted and validated protein-grouped, and for the default to follow
the evaluation. The product ranks by docking score (``score.rank_by: docking``, the scorer
issue's evaluation), so *without MD* is the Vina score of the pose and *with MD* is a
correction of it by the MD descriptors of the same pose:

* **data**: the MD rows of ``benchmarks/md_stability/rows.jsonl`` (the stability panel: Uni-FEP
  tethered poses refined by the default protocol, :func:`md_stability.refine_row`; only rows of
  the current protocol, as :func:`forcefield_compare.settings_key` names it, and status
  ``ok``), joined to the measured ΔG of :func:`affinity_eval.load_unifep` by series and ligand
  name. Series with fewer than :data:`affinity_eval.MIN_LIGANDS` refined ligands are left out
  (their τ is noise), so the panel needs ``md_stability.py --per-receptor 8`` rounds to grow
  past its 3 ligands per protein;
* **features** (per pose, :data:`FEATURES`): the docked Vina score, the MD mean protein-ligand
  interaction energy and its standard deviation over the frames, the ligand's mean heavy-atom
  RMSD from its starting pose (stability), the pocket backbone RMSD;
* **with MD** (``docking_md``): a linear score ``-w·z(features)`` whose weights are fitted by
  pairwise logistic regression on the ligand pairs of every training series (which of the two
  binds tighter; no intercept, L2, features standardized on the training folds), so only the
  within-series order is learned, as the metric judges it;
* **MD alone** (``md_interaction``): the MD interaction energy as the score (no fit);
* **folds**: 5 folds of whole protein groups (:func:`affinity_eval.protein_folds`, isoforms
  and paralogues together), out-of-fold predictions; "unseen" compounds have no training
  analogue at Tanimoto ≥ 0.4 (:func:`affinity_eval.cv_unseen`);
* **report**: :func:`affinity_eval.summarize` — per-series Kendall τ and Spearman ρ averaged
  over series, paired bootstrap 95 % intervals (resampling protein groups) of each method
  minus Vina (without MD), heavy-atom count and FEP.

The fit on every series is written to ``pipeline/data/md_rescore.json`` (``--model``), the
with-MD score the ranking uses to reorder the refined compounds (``score.md_rerank``,
:mod:`pipeline.md_rescore`), with the held-out figures that justify it in its provenance. It is
the default because "with MD" beat Vina here (2026-12-04: +0.217 [+0.112, +0.322] over 74
series); should a rerun on a grown panel lose that, turn ``score.md_rerank`` off by default.

Writes ``benchmarks/results/md_value.json`` and ``md_value.md``; prints the tables.

    python benchmarks/md_value.py [--min-ligands 5] [--bootstrap 2000] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import affinity_eval as ae  # noqa: E402
from forcefield_compare import read_cached, settings_key  # noqa: E402
from md_stability import ROWS, protocol  # noqa: E402

from pipeline.md_rescore import MODEL_PATH, MDRescore  # noqa: E402

RESULTS = HERE / "results"
#: MD descriptors of a pose (md_stability rows) and the docking score, in the fitted score.
FEATURES = ("docking_score", "interaction_energy", "interaction_energy_std", "rmsd_mean", "pocket_backbone_rmsd")
#: L2 strength of the pairwise logistic fit (sklearn's C): mild, five weights on hundreds of pairs.
C = 1.0


def md_table(unifep: pd.DataFrame, rows_path: Path = ROWS) -> tuple[pd.DataFrame, dict[str, int]]:
    """MD rows of the current default protocol joined to ``unifep`` (:func:`affinity_eval.load_unifep`); and the
    counts of what was dropped."""
    key = settings_key(protocol(False))
    rows = pd.DataFrame(list(read_cached(rows_path, key).values()))
    counts = dict(md_rows=len(rows))
    if rows.empty:
        return rows, counts
    counts["md_not_ok"] = int((rows["status"] != "ok").sum())
    rows = rows[rows["status"] == "ok"]
    missing = [f for f in FEATURES if f not in rows]
    counts["md_rows_without_descriptors"] = (
        int(len(rows)) if missing else int(rows[list(FEATURES)].isna().any(axis=1).sum())
    )
    if missing:  # rows written before md_stability kept every descriptor
        return rows.iloc[0:0], counts
    rows = rows.dropna(subset=list(FEATURES))
    merged = unifep.merge(
        rows[["folder", "ligand", *FEATURES]].rename(columns={"folder": "series", "ligand": "ligand_name"}),
        on=["series", "ligand_name"],
        how="inner",
    )
    merged = merged[np.isfinite(merged["exp_dG"].astype(float))].reset_index(drop=True)
    counts["joined"] = int(len(merged))
    return merged, counts


def within_series_pairs(part: pd.DataFrame, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature differences and labels (1 = first binds tighter) of every pair of differently binding ligands."""
    xs, ys = [], []
    for _, idx in part.groupby("series").indices.items():
        dg = part["exp_dG"].to_numpy(dtype=float)[idx]
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                if dg[a] == dg[b]:
                    continue
                xs.append(z[idx[a]] - z[idx[b]])
                ys.append(int(dg[a] < dg[b]))
    return np.array(xs).reshape(-1, z.shape[1]), np.array(ys)


def _pairwise_fit(train: pd.DataFrame, features: Sequence[str]) -> tuple[Any, np.ndarray, np.ndarray, int] | None:
    """Pairwise logistic fit on the ligand pairs of the training series.

    Returns ``(model, feature mean, feature sd, pairs)``, or None when the pairs hold one order only.
    """
    from sklearn.linear_model import LogisticRegression

    x_train = train[list(features)].to_numpy(dtype=float)
    mean, sd = x_train.mean(0), x_train.std(0)
    sd[sd == 0] = 1.0
    x, y = within_series_pairs(train.reset_index(drop=True), (x_train - mean) / sd)
    if len(np.unique(y)) < 2:
        return None
    # Both orders of every pair, so that the fit without intercept sees a balanced problem.
    model = LogisticRegression(C=C, fit_intercept=False).fit(np.vstack([x, -x]), np.concatenate([y, 1 - y]))
    return model, mean, sd, len(y)


def fit_pairwise(train: pd.DataFrame, test: pd.DataFrame, features: Sequence[str] = FEATURES) -> np.ndarray:
    """Out-of-fold "with MD" score of ``test`` (lower = tighter) from the pairwise fit on ``train``."""
    fit = _pairwise_fit(train, features)
    if fit is None:
        return np.full(len(test), np.nan)
    model, mean, sd, _ = fit
    z_test = (test[list(features)].to_numpy(dtype=float) - mean) / sd
    return -(z_test @ model.coef_.ravel())


def fold_weights(df: pd.DataFrame, folds: pd.Series) -> list[dict[str, float]]:
    """The fitted weights of each fold (on standardized features; positive = higher value, tighter), for the record."""
    out = []
    for fold in sorted(folds.unique()):
        fit = _pairwise_fit(df[folds != fold], FEATURES)
        if fit is not None:
            model, _, _, pairs = fit
            out.append(dict(fold=int(fold), pairs=int(pairs), **dict(zip(FEATURES, map(float, model.coef_.ravel())))))
    return out


def ligand_only_on_unifep(unifep: pd.DataFrame) -> Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]:
    """The ligand-only baseline's ``fit_predict``: a fingerprint ridge on within-series ΔG.

    It learns from every Uni-FEP ligand of the training folds' proteins, not only the refined
    ones (ligand-only needs no pose or MD, so it gets all the data it could have): the rows of
    ``unifep`` whose protein group is not among the test rows' groups.
    """

    def fit_predict(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        pool = unifep[~unifep["group"].isin(set(test["group"]))]
        pool = pool[np.isfinite(pool["exp_dG"].astype(float))]
        return ae.ligand_only_ridge(pool, test)

    return fit_predict


def write_model(df: pd.DataFrame, summary: dict[str, Any], path: Path, command: str) -> MDRescore:
    """Fit the with-MD score on every series and write it where the ranking reads it (:mod:`pipeline.md_rescore`)."""
    fit = _pairwise_fit(df, FEATURES)
    if fit is None:
        raise SystemExit("the pairs of every series hold one order only: nothing to fit")
    model, mean, sd, pairs = fit
    tau = summary["differences"]["docking_md - vina"]["all"]["tau"]
    hac = summary["differences"]["docking_md - heavy_atom_count"]["all"]["tau"]
    held_out = {
        "series": int(tau["n_series"]),
        "protein_groups": int(tau["n_groups"]),
        "tau_with_md": round(float(tau["mean_a"]), 3),
        "tau_vina": round(float(tau["mean_b"]), 3),
        "diff_vs_vina": [round(float(tau["diff"]), 3), *(round(float(v), 3) for v in tau["group"]["diff"])],
        "diff_vs_heavy_atom_count": [round(float(hac["diff"]), 3), *(round(float(v), 3) for v in hac["group"]["diff"])],
    }
    rescore = MDRescore(
        tuple(FEATURES),
        mean,
        sd,
        model.coef_.ravel(),
        dict(
            fitted_by=command,
            data="benchmarks/md_stability/rows.jsonl (Uni-FEP tethered poses, default MD protocol) + measured dG",
            series=int(df["series"].nunique()),
            ligands=int(len(df)),
            pairs=int(pairs),
            held_out_tau=held_out,
            date=time.strftime("%Y-%m-%d"),
        ),
    )
    path.write_text(json.dumps(rescore.to_json(), indent=1) + "\n")
    print(f"wrote {path}")
    return rescore


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-ligands", type=int, default=ae.MIN_LIGANDS, help="refined ligands a series needs")
    parser.add_argument("--bootstrap", type=int, default=ae.N_BOOTSTRAP)
    parser.add_argument("--out", type=Path, default=RESULTS / "md_value.json")
    parser.add_argument(
        "--model",
        type=Path,
        default=MODEL_PATH,
        help="where the fit on every series is written (the ranking's with-MD score; default: the shipped model)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    unifep = ae.load_unifep(ae.UNIFEP)  # read once: the MD rows' ligands and the ligand-only baseline's training data
    df, counts = md_table(unifep)
    result: dict[str, Any] = dict(
        benchmark="md_value",
        command="python benchmarks/md_value.py " + " ".join(sys.argv[1:] if argv is None else argv),
        protocol_key=settings_key(protocol(False)),
        features=list(FEATURES),
        counts=counts,
        host=platform.node(),
    )
    sizes = df.groupby("series").size() if len(df) else pd.Series(dtype=int)
    df = df[df["series"].isin(sizes[sizes >= args.min_ligands].index)].reset_index(drop=True) if len(df) else df
    counts.update(series_with_enough=int(df["series"].nunique()) if len(df) else 0, ligands=int(len(df)))
    groups = int(df["group"].nunique()) if len(df) else 0
    if groups < ae.N_FOLDS:
        result.update(
            complete=False,
            reason=(
                f"{counts['series_with_enough']} series with >= {args.min_ligands} refined ligands on {groups} protein "
                f"groups: {ae.N_FOLDS} protein-grouped folds need >= {ae.N_FOLDS} groups; grow the MD panel with "
                "'nice -n 19 python benchmarks/md_stability.py --per-receptor 8 --max-minutes M'"
            ),
        )
        print(result["reason"])
    else:
        folds = ae.protein_folds(df)
        df["vina"] = df["docking_score"].astype(float)
        df["md_interaction"] = df["interaction_energy"].astype(float)
        df["heavy_atom_count"] = ae.heavy_atom_score(df)
        df["fep"] = ae.fep_score(df)
        df["docking_md"] = ae.cross_validated(df, folds, fit_pairwise)
        df["ligand_only"] = ae.cross_validated(df, folds, ligand_only_on_unifep(unifep))
        df["unseen"] = ae.cv_unseen(df, folds)
        summary = ae.summarize(
            df,
            ["docking_md", "md_interaction"],
            baselines=["vina", "heavy_atom_count", "ligand_only", "fep"],
            n=args.bootstrap,
        )
        labels = dict(
            docking_md="with MD: Vina + MD descriptors (fitted, out of fold)",
            md_interaction="MD interaction energy alone",
            vina="without MD: Vina score of the pose (the default ranking)",
            heavy_atom_count="heavy-atom count",
            ligand_only="ligand only: fingerprint ridge on every Uni-FEP series of the training proteins",
            fep="FEP (Uni-FEP)",
        )
        markdown = ae.to_markdown(summary, labels)
        print(markdown)
        diff = summary["differences"]["docking_md - vina"]["all"]["tau"]
        result.update(
            complete=True,
            summary=summary,
            weights=fold_weights(df, folds),
            with_md_beats_docking=bool(diff["group"]["diff"][0] > 0),
        )
        args.out.with_suffix(".md").write_text(markdown + "\n")
        write_model(df, summary, args.model, result["command"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
