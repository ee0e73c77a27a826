"""Build the default scorer: dock, featurize and train on the shared DUD-E targets.

How ``models/default/`` was made, and how to make it again (or grow it):

    python models/default/build.py libraries        # data/<target>.csv + .yaml (committed)
    python models/default/build.py dock --hours 1   # dock + featurize, a round of chunks per target at a time
    python models/default/build.py train            # ensemble + baselines + leave-one-target-out -> card.json
    python models/default/build.py training-set     # data/training_set.csv: the compounds behind card.json

Each target is an ordinary screening run (``results/dude-<target>/``) of the Snakemake
workflow with the config in ``data/<target>.yaml``: every active of the target and a
seeded sample of its decoys, shuffled, so that any set of finished chunks is a fair
subsample. Docking goes round-robin over the targets a few chunks at a time; a killed
or timed-out build resumes where it stopped (Snakemake skips finished chunks), across
sessions. ``train`` uses every chunk that is finished and says in the card how much of
each target that was.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lib.campaign import CampaignRun, dock_in_rounds  # noqa: E402
from lib.dude import sample_library  # noqa: E402

DATA = HERE / "data"
# DUD-E folder -> dockstring receptor (receptor and box as dockstring prepared them)
TARGETS = {"aces": "ACHE", "akt2": "AKT2", "casp3": "CASP3", "hs90a": "HSP90AA1", "pgh2": "PTGS2"}
DUDE = ROOT.parent / "shared" / "data" / "dude_diverse"
DECOYS_PER_ACTIVE = 3
SAMPLE_SEED = 2026
CHUNK_SIZE = 20


def run_config(target: str) -> dict:
    """The screening config of one target's training run."""
    return {
        "run": f"dude-{target}",
        "seed": 42,
        "library": {"path": str((DATA / f"{target}.csv").relative_to(ROOT)), "chunk_size": CHUNK_SIZE},
        "receptor": {"dockstring": TARGETS[target]},
        "box": {},
        # exhaustiveness 1 and 3 poses keep ~2,000 compounds within a few CPU-hours on 2 cores
        "docking": {"exhaustiveness": 1, "n_poses": 3, "threads": 1},
        "featurize": {"poses_per_compound": 1},
        "dask": {"scheduler": "local", "n_workers": 2},
        "refine": {"enabled": False},
        "score": {"enabled": False},  # training data: ranked by docking, no model needed yet
    }


def cmd_libraries(args: argparse.Namespace) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for target in TARGETS:
        table = sample_library(args.dude / target, decoys_per_active=DECOYS_PER_ACTIVE, seed=SAMPLE_SEED, shuffle=True)
        table.to_csv(DATA / f"{target}.csv", index=False)
        with open(DATA / f"{target}.yaml", "w") as handle:
            handle.write(f"# Training run for models/default ({target}); written by models/default/build.py\n")
            yaml.safe_dump(run_config(target), handle, sort_keys=False)
        print(f"{target}: {int(table.active.sum())} actives, {int((table.active == 0).sum())} decoys")


def campaign_run(target: str) -> CampaignRun:
    """The target's training run (its config in data/<target>.yaml)."""
    return CampaignRun(target, DATA / f"{target}.yaml", ROOT)


def cmd_dock(args: argparse.Namespace) -> None:
    targets = args.targets or list(TARGETS)
    dock_in_rounds([campaign_run(t) for t in targets], args.hours, args.cores, args.chunks_per_round)


# Training settings of the default model. The held-out part is larger than the workflow's
# default (0.1) so that each target has enough held-out actives for AUROC/EF/BEDROC.
# A narrower network than the workflow default (hidden 32, not 64): a few hundred complexes
# do not need more, and it trains in minutes on 2 CPU cores.
TRAIN = dict(
    task="classification",
    n_models=5,
    split="scaffold",
    fractions=(0.6, 0.15, 0.25),
    seed=42,
    max_epochs=80,
    patience=10,
    batch_size=32,
    threads=2,
    model=dict(hidden=32, layers=3, head_hidden=32, dropout=0.1),
)
# leave-one-target-out trains 5 more ensembles: fewer members keep it within minutes
LOTO = dict(TRAIN, n_models=2, max_epochs=40)


def finished_data(target: str) -> tuple[list, pd.DataFrame, dict]:
    """Graphs of the finished chunks of a target, its labelled compounds in those chunks, and counts."""
    from pipeline.graphs import load_graphs

    run = campaign_run(target)
    done = run.chunks_done()
    graphs = []
    for i in done:
        graphs += load_graphs(run.graph_file(i))[1]
    ids = set()
    for i in done:
        ids |= set(pd.read_parquet(run.run_dir / "chunks" / f"chunk_{i:05d}.parquet", columns=["id"])["id"])
    sample = pd.read_csv(DATA / f"{target}.csv")
    assay = sample[sample["id"].isin(ids)]
    counts = dict(
        sample_compounds=len(sample),
        sample_actives=int(sample.active.sum()),
        chunks_done=len(done),
        chunks_total=run.n_chunks(),
        compounds_in_done_chunks=len(assay),
        actives_in_done_chunks=int(assay.active.sum()),
    )
    return graphs, assay, counts


def summary_table(card: dict) -> pd.DataFrame:
    """Per target and method: held-out (scaffold split) and leave-one-target-out AUROC, EF1%, BEDROC."""
    rows = []
    for target, parts in card["metrics_by_target"].items():
        for method, m in parts["test"].items():
            rows.append(dict(target=target, method=method, evaluation="held-out scaffolds", **m))
    for row in card["leave_one_target_out"]:
        rows.append(
            dict(
                {k: v for k, v in row.items() if k not in ("n_train", "n_val", "n_test")},
                evaluation="leave one target out",
            )
        )
    return pd.DataFrame(rows)


def cmd_train(args: argparse.Namespace) -> None:
    import json

    from pipeline.scoring.ensemble import save_ensemble, to_jsonable
    from pipeline.scoring.train import TrainSettings, leave_one_target_out, train_multi_target

    graphs, assays, counts = {}, {}, {}
    for target in TARGETS:
        target_graphs, assay, counts[target] = finished_data(target)
        print(f"{target}: {counts[target]}")
        if target_graphs:  # a target with no finished chunk yet is left out (and shows in the coverage)
            graphs[target], assays[target] = target_graphs, assay
    sources = dict(
        origin="DUD-E diverse actives with a seeded decoy sample (models/default/data/<target>.csv), "
        "docked into the dockstring receptors (Vina, exhaustiveness 1, best pose featurized, "
        "no MD refinement)",
        receptors=TARGETS,
        decoys_per_active=DECOYS_PER_ACTIVE,
        sample_seed=SAMPLE_SEED,
        coverage=counts,
        build="python models/default/build.py dock && python models/default/build.py train",
    )
    result = train_multi_target(graphs, assays, TrainSettings(**TRAIN), name="default", sources=sources)
    loto = leave_one_target_out(graphs, assays, TrainSettings(**LOTO))
    card = result.card
    card["leave_one_target_out"] = to_jsonable(loto.to_dict(orient="records"))
    card["leave_one_target_out_settings"] = TrainSettings(**LOTO).to_dict()
    table = summary_table(card)
    means = table.groupby(["evaluation", "method"])[["auroc", "ef1", "bedroc"]].mean().round(3)
    card["summary"] = dict(mean_over_targets=to_jsonable(means.reset_index().to_dict(orient="records")))
    result.ensemble.card = card
    # save_ensemble replaces its folder; this one also holds the recipe and data, so move the files in
    staged = save_ensemble(result.ensemble, ROOT / "results" / "default-model", result.histories)
    for old in HERE.glob("model_*.pt"):
        old.unlink()
    for path in staged.iterdir():
        shutil.copy2(path, HERE / path.name)
    table.to_csv(HERE / "metrics.csv", index=False, float_format="%.3f")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(means.to_string())
    print(json.dumps(card["data"]["coverage"]))


def cmd_training_set(args: argparse.Namespace) -> None:
    """Write data/training_set.csv: every compound the default model was fitted, stopped or tested on.

    ``split`` is train / val / test as in card.json. Benchmarks use it to leave the model's
    training compounds out of their evaluation and to train the ligand-only baseline on
    exactly the GNN's training data.
    """
    import json

    card = json.loads((HERE / "card.json").read_text())
    held_out = {key: part for part, keys in card["split"]["ids"].items() for key in keys}
    parts = []
    for target in card["data"]["targets"]:
        _, assay, counts = finished_data(target)
        if len(assay) != card["data"]["n_compounds_by_target"][target]:
            raise SystemExit(
                f"{target}: {len(assay)} compounds in finished chunks, but the card was trained on "
                f"{card['data']['n_compounds_by_target'][target]}; this is not the data of card.json"
            )
        keys = target + "/" + assay["id"].astype(str)
        parts.append(assay.assign(target=target, split=[held_out.get(k, "train") for k in keys]))
    table = pd.concat(parts)[["target", "id", "smiles", "active", "split"]]
    table.to_csv(DATA / "training_set.csv", index=False)
    print(table.groupby(["split"]).active.agg(["size", "sum"]).to_string())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("libraries", help="write data/<target>.csv and .yaml")
    p.add_argument("--dude", type=Path, default=DUDE, help="folder of DUD-E target folders")
    p.set_defaults(func=cmd_libraries)
    p = sub.add_parser("dock", help="dock and featurize, round-robin over the targets")
    p.add_argument("--hours", type=float, default=1.0, help="stop starting new rounds after this long")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--chunks-per-round", type=int, default=2, help="chunks of one target per round (2 = one per core)")
    p.add_argument("--targets", nargs="*", choices=list(TARGETS), help="targets in round order (default: all)")
    p.set_defaults(func=cmd_dock)
    p = sub.add_parser("train", help="train models/default on every finished chunk; write card.json and metrics.csv")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("training-set", help="write data/training_set.csv (the compounds behind card.json, by split)")
    p.set_defaults(func=cmd_training_set)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
