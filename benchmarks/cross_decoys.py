"""Can the ligand alone tell a target's actives apart? Property-matched decoys against cross-decoys.

DUD-E's decoys are property-matched but chemically unlike actives, so a fingerprint model
that never sees a protein separates actives from decoys on any target (AUROC about 0.9
held out). *Cross-decoys* remove that shortcut: the negatives of target T are the actives of
the other targets, docked into T's receptor. Every compound is then an active of some
target and a decoy of the others, so its chemistry alone says nothing about the label, and
a ligand-only model should fall to AUROC 0.5; only a model that reads the protein can do
better (scorer issue, criterion 2).

This benchmark measures that claim without docking (the ligand-only model needs no pose),
leave-one-target-out over the five shared DUD-E targets, on the sample of the convergence
benchmark (``--per-class`` actives and decoys per target, the same seed):

* test rows of the held-out target T: T's actives against (a) T's property-matched decoys
  and (b) T's cross-decoys, a seeded half of each other target's sampled actives
  (:func:`held_out_cross_decoy_keys`);
* training rows, for each training target U: U's actives (label 1), the other training
  targets' actives as U's cross-decoys (0), and U's property-matched decoys (0), without any
  test compound under any label (so the other half of each target's actives trains);
* methods: the pipeline's ligand-only baseline (:func:`pipeline.scoring.train.fit_ligand_baseline`,
  a Morgan-fingerprint MLP ensemble with the product's defaults, early-stopped on a
  compound-grouped 15% of the training rows), the same model trained on actives against
  cross-decoys only (no property-matched decoys), and heavy-atom count (the size bias).

The test cross-decoys are analogues of training actives (same targets, same chemotypes),
which is what a ligand-only model can exploit in reverse: it scores them as "active-like",
above the new target's actives, so its AUROC falls *below* 0.5 rather than to it. (An
earlier version of this benchmark dropped every cross-decoy from training, which left the
model no actives to learn from; its 0.49 meant nothing.)

AUROC per target with a bootstrap 95% interval (actives and negatives resampled separately),
and the mean over targets with the interval of the mean. A compound listed as an active of
two targets keeps both labels (it is an active of each, never a cross-decoy of either).

    python benchmarks/cross_decoys.py [--per-class 20]

Writes ``benchmarks/results/cross_decoys.json`` and prints a table.
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

from lib.dude import sample_library  # noqa: E402

DUDE = ROOT.parent / "shared" / "data" / "dude_diverse"
TARGETS = ("aces", "hs90a", "akt2", "casp3", "pgh2")
SEED = 2026  # the convergence benchmark's sample seed: the compounds that benchmark docks
RESULT = ROOT / "benchmarks" / "results" / "cross_decoys.json"
N_BOOTSTRAP = 2000
VALIDATION_SHARE = 0.15


def canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES (the identity of a compound across targets); ``None`` if unreadable."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else None


def heavy_atoms(smiles: str) -> int:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return mol.GetNumHeavyAtoms() if mol is not None else 0


def load_sample(per_class: int, seed: int = SEED) -> pd.DataFrame:
    """``target, id, smiles, key, active``: each target's sample (actives and property-matched decoys)."""
    parts = []
    for target in TARGETS:
        table = sample_library(DUDE / target, n_decoys=per_class, max_actives=per_class, seed=seed)
        table["target"] = target
        parts.append(table)
    df = pd.concat(parts, ignore_index=True)
    df["key"] = df["smiles"].map(canonical)
    return df.dropna(subset=["key"]).reset_index(drop=True)


def cross_decoy_rows(sample: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """Rows ``target, key, smiles, active, kind`` for ``targets``: actives, their decoys and cross-decoys.

    A target's cross-decoys are the actives of the other targets in ``targets`` that are not
    actives of this target too.
    """
    part = sample[sample["target"].isin(targets)]
    actives = part[part["active"] == 1]
    rows = []
    for target in targets:
        own = actives[actives["target"] == target]
        own_keys = set(own["key"])
        rows.append(own.assign(kind="active"))
        rows.append(part[(part["target"] == target) & (part["active"] == 0)].assign(kind="decoy"))
        others = actives[(actives["target"] != target) & ~actives["key"].isin(own_keys)].drop_duplicates("key")
        rows.append(others.assign(target=target, active=0, kind="cross_decoy"))
    out = pd.concat(rows, ignore_index=True)
    return out[["target", "key", "smiles", "active", "kind"]]


def held_out_cross_decoy_keys(actives: pd.DataFrame, held_out: str, seed: int = SEED) -> set[str]:
    """The held-out target's test cross-decoys: a seeded half of each other target's actives.

    The other half stays in training. Without the split, a held-out target's cross-decoys (the
    other targets' actives) are training compounds labelled active for their own target, and a
    ligand-only model that remembers them ranks them above the held-out target's actives
    (AUROC 0.18 measured that way); dropping all of them from training leaves no actives.

    Parameters
    ----------
    actives : pd.DataFrame
        ``target, key`` of every target's sampled actives (``key``: canonical SMILES).
    held_out : str
        The held-out target.
    seed : int
        The split's seed (the same seed and actives give the same halves).

    Returns
    -------
    set[str]
        Keys of the test cross-decoys; none of them is an active of ``held_out``.
    """
    own = set(actives.loc[actives["target"] == held_out, "key"])
    rng = np.random.default_rng([seed, sorted(TARGETS).index(held_out)])
    keys: set[str] = set()
    for target in sorted(set(actives["target"]) - {held_out}):
        pool = sorted(set(actives.loc[actives["target"] == target, "key"]) - own)
        keys.update(pool[i] for i in rng.permutation(len(pool))[: (len(pool) + 1) // 2])
    return keys


def _validation_keys(keys: np.ndarray, rng: np.random.Generator) -> set[str]:
    """A compound-grouped share of the training compounds for early stopping (a compound never in both)."""
    unique = np.unique(keys)
    n = max(1, int(round(VALIDATION_SHARE * len(unique))))
    return set(rng.choice(unique, size=n, replace=False))


def ligand_only_scores(train: pd.DataFrame, test_smiles: list[str], seed: int) -> np.ndarray:
    """Fit the pipeline's ligand-only baseline on ``train`` (rows ``key, smiles, active``); P(active) of each test SMILES."""
    from pipeline.scoring.train import TrainSettings, fit_ligand_baseline, predict_ligand_baseline

    rng = np.random.default_rng(seed)
    table = train.reset_index(drop=True).copy()
    # one row per (target, compound): the same compound may carry label 1 for one target and 0 for another
    table.index = table["target"] + "/" + table["key"]
    table = table[~table.index.duplicated()]
    table["label"] = table["active"].astype(float)
    val = _validation_keys(table["key"].to_numpy(), rng)
    is_val = table["key"].isin(val).to_numpy()
    settings = TrainSettings(seed=seed, threads=1)  # one core: the machine runs docking beside it
    models = fit_ligand_baseline(table, table.index[~is_val], table.index[is_val], settings, task="classification")
    return predict_ligand_baseline(models, test_smiles, settings, "classification")


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from pipeline.scoring.metrics import auroc

    return float(auroc(labels, scores))


def auroc_with_interval(
    labels: np.ndarray, scores: np.ndarray, rng: np.random.Generator, n: int
) -> tuple[float, list, np.ndarray]:
    """AUROC, its bootstrap 95% interval (classes resampled separately) and the replicates."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    reps = np.empty(n)
    for i in range(n):
        pick = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        reps[i] = _auroc(labels[pick], scores[pick])
    return _auroc(labels, scores), [float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))], reps


#: Scores compared: the ligand-only model (trained on all negatives, then on cross-decoys only) and size.
METHODS = ("ligand_only", "ligand_only_cross_trained", "heavy_atom_count")


def run(per_class: int, seed: int = SEED, n: int = N_BOOTSTRAP) -> dict:
    """Leave-one-target-out AUROC of the ligand-only model and heavy-atom count, against both kinds of negatives."""
    sample = load_sample(per_class, seed)
    rng = np.random.default_rng(seed)
    per_target, replicates = [], {}
    for held_out in TARGETS:
        training_targets = [t for t in TARGETS if t != held_out]
        train = cross_decoy_rows(sample, training_targets)
        test = cross_decoy_rows(sample, list(TARGETS))
        test = test[test["target"] == held_out]
        held_xd = held_out_cross_decoy_keys(sample[sample["active"] == 1], held_out, seed)
        test = test[(test["kind"] != "cross_decoy") | test["key"].isin(held_xd)]
        held_keys = set(test["key"])
        train = train[~train["key"].isin(held_keys)]  # no test compound in training under any label
        if not train["active"].any():
            raise RuntimeError(f"{held_out}: no actives left in training")
        test = test.assign(
            ligand_only=ligand_only_scores(train, test["smiles"].tolist(), seed),
            # the same model trained without property-matched decoys: only actives against
            # cross-decoys, where every chemotype is active for one target and inactive for the others
            ligand_only_cross_trained=ligand_only_scores(
                train[train["kind"] != "decoy"], test["smiles"].tolist(), seed
            ),
            heavy_atom_count=test["smiles"].map(heavy_atoms).astype(float),
        )
        row = dict(target=held_out, train_rows=int(len(train)), train_compounds=int(train["key"].nunique()))
        for negatives in ("decoy", "cross_decoy"):
            part = test[test["kind"].isin(["active", negatives])]
            labels = part["active"].to_numpy(dtype=int)
            for method in METHODS:
                value, ci, reps = auroc_with_interval(labels, part[method].to_numpy(), rng, n)
                row[f"{method}_vs_{negatives}"] = dict(
                    auroc=value, ci=ci, actives=int(labels.sum()), negatives=int((labels == 0).sum())
                )
                replicates.setdefault(f"{method}_vs_{negatives}", []).append(reps)
        per_target.append(row)
    means = {}
    for name, reps in replicates.items():
        mean_reps = np.mean(reps, axis=0)
        point = float(np.mean([r[name]["auroc"] for r in per_target]))
        means[name] = dict(
            auroc=point, ci=[float(np.percentile(mean_reps, 2.5)), float(np.percentile(mean_reps, 97.5))]
        )
    return dict(
        benchmark="cross_decoys",
        description=__doc__.split("\n\n")[0],
        sample=f"{per_class} actives + {per_class} property-matched decoys per target, seed {seed}",
        protocol="leave one target out; cross-decoys of T = the other targets' sampled actives",
        machine=platform.node(),
        date=time.strftime("%Y-%m-%d"),
        n_bootstrap=n,
        per_target=per_target,
        mean=means,
    )


def print_table(result: dict) -> None:
    names = [f"{method}_vs_{negatives}" for method in METHODS for negatives in ("decoy", "cross_decoy")]
    print(f"{'target':8s} " + " ".join(f"{n:>34s}" for n in names))
    for row in result["per_target"] + [dict(target="mean", **result["mean"])]:
        cells = [f"{row[n]['auroc']:.3f} [{row[n]['ci'][0]:.2f}, {row[n]['ci'][1]:.2f}]" for n in names]
        print(f"{row['target']:8s} " + " ".join(f"{c:>34s}" for c in cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=20, help="actives (and decoys) sampled per target")
    parser.add_argument("--bootstrap", type=int, default=N_BOOTSTRAP)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    result = run(args.per_class, n=args.bootstrap)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
