"""Screening quality: does the pipeline put true actives at the top, and better than docking alone?

For one target folder of actives and decoys (DUD-E style: ``actives.smi``, ``decoys.smi``)
this takes every active and a seeded sample of decoys, screens them with the ordinary
workflow (prepare, dock, featurize, refine the top poses, GNN scoring, rank, report) into the
dockstring receptor of that target, and reports AUROC, EF1%, EF5% and BEDROC(80.5) for

* ``docking``: the Vina score of the best pose (lower = better, negated for ranking);
* ``gnn``: the GNN scorer's ``gnn_score`` (the model given by ``--model``);
* ``ligand_only``: a Morgan-fingerprint MLP trained on exactly the GNN model's training
  compounds (``--training-set``), with the model card's settings and seeds. It never sees
  the protein: it measures how much of the enrichment ligand chemistry alone explains.

Compounds the model was fitted or early-stopped on (its ``train`` and ``val`` compounds, any
target, matched by canonical SMILES) are left out of the headline evaluation ("unseen"); the
table also gives every sampled compound ("all"). Compounds the pipeline could not dock or
score rank last for docking and GNN (they are in ``failures.csv``); they count.

Resumable: docking runs in rounds of chunks until ``--hours`` have passed; run the same
command again (in a later session) to go on. When every chunk is docked the full workflow
finishes and the table is written to ``benchmarks/results/enrichment-<run>.json`` (and
``.md``). ``--evaluate`` only recomputes the table from a finished run.

    python benchmarks/enrichment.py --target hs90a --receptor HSP90AA1 --decoys-per-active 10 --hours 2
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.campaign import CampaignRun, dock_in_rounds, snakemake  # noqa: E402
from lib.dude import sample_library  # noqa: E402

from pipeline.config import schema_default, settings_from_mapping  # noqa: E402

DUDE = ROOT.parent / "shared" / "data" / "dude_diverse"
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = ROOT / "benchmarks" / "enrichment"
METHODS = {"docking": "Vina score, best pose", "gnn": "GNN gnn_score", "ligand_only": "ligand-only fingerprint MLP"}
N_BOOTSTRAP = 1000


def run_name(args: argparse.Namespace) -> str:
    return f"enrich-{args.target}-d{args.decoys_per_active:g}-s{args.seed}"


def write_inputs(args: argparse.Namespace, name: str) -> Path:
    """Write (or check) the sample library and the run's config; return the config file."""
    folder = SAMPLES / name
    folder.mkdir(parents=True, exist_ok=True)
    sample = sample_library(
        args.dude / args.target, decoys_per_active=args.decoys_per_active, seed=args.seed, shuffle=True
    )
    library = folder / "library.csv"
    if library.exists():
        old = pd.read_csv(library)
        if not old.equals(sample):
            raise SystemExit(
                f"{library} differs from the sample that {args.dude / args.target} and seed {args.seed} "
                "give now; remove it (and results/{name}) to start over"
            )
    else:
        sample.to_csv(library, index=False)
    config = {
        "run": name,
        "seed": 42,
        "library": {"path": str(library.relative_to(ROOT)), "chunk_size": args.chunk_size},
        "receptor": {"dockstring": args.receptor},
        "box": {},
        "docking": {"exhaustiveness": args.exhaustiveness, "n_poses": 3, "threads": 1},
        "featurize": {"poses_per_compound": 1},
        "dask": {"scheduler": "local", "n_workers": args.cores},
        "refine": {"top_n": args.refine_top, "poses_per_compound": 1, "batch_size": max(1, args.refine_top)},
        "score": {"model": args.model, "rank_by": "gnn"},
        "report": {"top_n": 25, "label_column": "active"},
    }
    configfile = folder / "config.yaml"
    with open(configfile, "w") as handle:
        handle.write(
            f"# Enrichment benchmark run; written by benchmarks/enrichment.py ({args.target}, "
            f"{args.decoys_per_active:g} decoys per active, seed {args.seed})\n"
        )
        yaml.safe_dump(config, handle, sort_keys=False)
    return configfile


# ----------------------------------------------------------------------------- evaluation


def canonical(smiles: str) -> str | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else None


def ligand_only_scores(training_set: Path, card: dict, smiles: list[str]) -> np.ndarray:
    """Train the ligand-only baseline on the model's train/val compounds; score ``smiles``."""
    from pipeline.scoring.train import TrainSettings, fit_ligand_baseline, predict_ligand_baseline

    table = pd.read_csv(training_set)
    table.index = table["target"].astype(str) + "/" + table["id"].astype(str)
    table["label"] = table["active"].astype(float)
    settings = settings_from_mapping(TrainSettings, card["training"], "train", strict=True)
    models = fit_ligand_baseline(
        table, table.index[table.split == "train"], table.index[table.split == "val"], settings, task=card["task"]
    )
    return predict_ligand_baseline(models, smiles, settings, card["task"])


def metrics(labels: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> dict:
    """AUROC (with a bootstrap 95% interval over compounds), EF1%, EF5%, BEDROC(80.5)."""
    from pipeline.scoring.metrics import auroc, bedroc, enrichment_factor

    boot = []
    for _ in range(N_BOOTSTRAP):
        pick = rng.integers(0, len(labels), len(labels))
        if 0 < labels[pick].sum() < len(pick):
            boot.append(auroc(labels[pick], scores[pick]))
    low, high = np.percentile(boot, [2.5, 97.5])
    return dict(
        auroc=auroc(labels, scores),
        auroc_ci95=[float(low), float(high)],
        ef1=enrichment_factor(labels, scores, 0.01),
        ef5=enrichment_factor(labels, scores, 0.05),
        bedroc=bedroc(labels, scores),
    )


def evaluate(args: argparse.Namespace, name: str, configfile: Path) -> dict:
    """The enrichment table of a finished run (JSON-ready dict)."""
    from pipeline.scoring.ensemble import resolve_model_dir

    run_dir = ROOT / "results" / name
    library = pd.read_csv(SAMPLES / name / "library.csv")
    ranking = pd.read_csv(run_dir / "ranking.csv")
    failures = pd.read_csv(run_dir / "failures.csv")
    model_dir = resolve_model_dir(args.model, ROOT / "models")
    card = json.loads((model_dir / "card.json").read_text())
    table = library.merge(ranking[["id", "docking_score", "gnn_score"]], on="id", how="left")
    table["docking"] = -table["docking_score"]  # NaN (failed) ranks last
    table["gnn"] = table["gnn_score"]
    table["ligand_only"] = ligand_only_scores(args.training_set, card, table["smiles"].tolist())
    seen_set = pd.read_csv(args.training_set)
    seen = {canonical(s) for s in seen_set.loc[seen_set.split.isin(["train", "val"]), "smiles"]} - {None}
    table["seen_by_model"] = [canonical(s) in seen for s in table["smiles"]]
    rng = np.random.default_rng(0)
    rows = []
    for subset, part in (("unseen", table[~table.seen_by_model]), ("all", table)):
        labels = part["active"].to_numpy(dtype=float)
        for method in METHODS:
            rows.append(
                dict(
                    subset=subset,
                    method=method,
                    n=len(part),
                    n_actives=int(labels.sum()),
                    **metrics(labels, part[method].to_numpy(dtype=float), rng),
                )
            )
    return dict(
        benchmark="enrichment",
        run=name,
        target=args.target,
        receptor=args.receptor,
        sample=dict(
            actives=int(library.active.sum()),
            decoys=int((library.active == 0).sum()),
            decoys_per_active=args.decoys_per_active,
            seed=args.seed,
        ),
        pipeline=dict(
            config=str(configfile.relative_to(ROOT)),
            ranked=len(ranking),
            failed=len(failures),
            failed_by_stage=failures.groupby("stage").size().to_dict(),
            model=card["name"],
            model_targets=card["data"]["targets"],
            seen_by_model=int(table.seen_by_model.sum()),
            seen_actives=int(table.loc[table.seen_by_model, "active"].sum()),
        ),
        methods=METHODS,
        metrics=rows,
        machine=platform.node(),
        date=time.strftime("%Y-%m-%d"),
        command="python benchmarks/enrichment.py " + " ".join(sys.argv[1:]),
    )


def markdown(result: dict) -> str:
    lines = [
        f"Enrichment on {result['target']} ({result['receptor']}): {result['sample']['actives']} actives, "
        f"{result['sample']['decoys']} decoys; {result['pipeline']['ranked']} ranked, "
        f"{result['pipeline']['failed']} failed; model '{result['pipeline']['model']}' had seen "
        f"{result['pipeline']['seen_by_model']} of these compounds ({result['pipeline']['seen_actives']} actives).",
        "",
        "| compounds | method | n (actives) | AUROC [95% CI] | EF1% | EF5% | BEDROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["metrics"]:
        lines.append(
            f"| {r['subset']} | {r['method']} | {r['n']} ({r['n_actives']}) | {r['auroc']:.3f} "
            f"[{r['auroc_ci95'][0]:.2f}, {r['auroc_ci95'][1]:.2f}] | {r['ef1']:.1f} | {r['ef5']:.1f} | "
            f"{r['bedroc']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="folder name under --dude (e.g. hs90a)")
    parser.add_argument("--receptor", required=True, help="dockstring receptor name (e.g. HSP90AA1)")
    parser.add_argument(
        "--dude", type=Path, default=DUDE, help="folder of target folders (default: the shared DUD-E set)"
    )
    parser.add_argument("--decoys-per-active", type=float, default=30)
    parser.add_argument("--seed", type=int, default=2026, help="seed of the decoy sample and its order")
    parser.add_argument("--hours", type=float, default=1.0, help="stop starting docking rounds after this long")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=10)
    parser.add_argument("--chunks-per-round", type=int, default=4)
    parser.add_argument(
        "--exhaustiveness",
        type=int,
        default=schema_default("docking", "exhaustiveness"),
        help="default: the pipeline's (pipeline/schema.yaml)",
    )
    parser.add_argument("--refine-top", type=int, default=5, help="compounds refined by MD (0: none)")
    parser.add_argument("--model", default="default", help="GNN model folder or name under models/")
    parser.add_argument(
        "--training-set",
        type=Path,
        default=ROOT / "models" / "default" / "data" / "training_set.csv",
        help="target,id,smiles,active,split of the model's compounds",
    )
    parser.add_argument("--evaluate", action="store_true", help="only compute the table of a finished run")
    args = parser.parse_args(argv)
    name = run_name(args)
    configfile = write_inputs(args, name)
    run = CampaignRun(name, configfile, ROOT)
    if not args.evaluate:
        done, total = dock_in_rounds([run], args.hours, args.cores, args.chunks_per_round)[name]
        if done < total:
            print(f"{done}/{total} chunks docked; run the same command again to go on")
            return
        if snakemake(run, cores=args.cores) != 0:
            raise SystemExit(f"the workflow did not finish; see results/{name}/logs and run again")
    result = evaluate(args, name, configfile)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"enrichment-{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"enrichment-{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
