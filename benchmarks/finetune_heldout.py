"""Fine-tuning the pretrained pair scorer on a held-back assay vs training it from scratch.

The scorer issue asks that ``snakemake train`` on a user's assay fine-tunes the pretrained
pair model (``train.init_from``) and that, on a 40-compound assay of a protein the pretrained
model never saw, the fine-tuned model beats one trained from scratch on the same split, with
both in the card. This benchmark does it the way a user would:

1. **Held-back series.** A Uni-FEP series (default ``ChEMBL__MERTK__CHEMBL3097238``: 40
   MERTK inhibitors with measured ΔG from 6.5 to 10.8 kcal/mol) becomes the assay table
   (``id, smiles, value`` = exp ΔG, ``train.pair.value_units: kcal_per_mol``). Its protein
   group (:func:`affinity_eval.protein_groups`; MERTK is "TAM kinases") is left out of the
   pretraining data by ``models/default/build_pair.py --exclude-groups``, so the pretrained
   model has seen neither the protein nor its paralogues, whatever the Uni-FEP campaign holds
   when this runs.
2. **Pretrained model.** ``build_pair.py`` on everything the committed campaigns hold but that
   group (``benchmarks/unifep_poses``, ``benchmarks/dude_poses``), written to the cache.
3. **The user's run.** A config with the series' protein (``protein.pdb.gz``, prepared by the
   workflow), ``box.reference_ligand`` = the series' reference ligand, ``docking.mode:
   tethered`` (each compound posed like the reference), ``train.scorer: pair`` and
   ``train.init_from`` = the pretrained folder; then ``snakemake train``. Posing and
   featurization run once; only the ``train`` job reruns per split seed.
4. **Splits.** The trainer's Bemis-Murcko scaffold split with ``--fractions`` (default
   0.5/0.2/0.3 rather than the product's 0.8/0.1/0.1, so that 12 compounds are tested, not 4),
   repeated for each ``--seeds`` value (``train.seed``: split, members and resamples). Each
   card holds the fine-tuned, from-scratch and pretrained models, Vina's score, heavy-atom
   count and the ligand-only model on the same test compounds, with the card's paired
   bootstrap interval of fine-tuned − from-scratch. The table gives each split's test Kendall
   τ and the mean over splits; the JSON keeps every card's metrics.

Written to ``benchmarks/results/finetune_heldout.json``; the models and the run live under
``benchmarks/.cache/finetune/`` and ``results/<run>/`` (not committed).

    nice -n 19 python benchmarks/finetune_heldout.py [--series FOLDER] [--seeds 0 1 2 3 4]
        [--members 5] [--cores 2] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import affinity_eval as ae  # noqa: E402
import pose_unifep as pu  # noqa: E402

SERIES = "ChEMBL__MERTK__CHEMBL3097238"
CACHE = HERE / ".cache" / "finetune"
OUT = HERE / "results" / "finetune_heldout.json"
#: Methods of the card, in the table's order.
METHODS = ("fine_tuned", "from_scratch", "pretrained", "vina", "heavy_atoms", "ligand_only")


def assay_table(folder: Path) -> pd.DataFrame:
    """The series as an assay table: ``id`` (ligand name), ``smiles`` (as given), ``value`` (exp ΔG, kcal/mol)."""
    data = pd.read_csv(folder / "result_dG.csv")
    table = pd.DataFrame(
        dict(id=data["ligand_name"], smiles=data["ligand_smiles"], value=data["exp_dG (kcal/mol)"].astype(float))
    )
    return table[np.isfinite(table["value"])].reset_index(drop=True)


def protein_group(folder: Path) -> tuple[str, str]:
    """The series' target name and protein group."""
    systems = pd.read_csv(pu.UNIFEP / "systems.csv")
    target = str(systems.loc[systems["folder"] == folder.name, "target"].iloc[0])
    return target, ae.protein_groups([target])[target]


def build_pretrained(out: Path, group: str, members: int | None, threads: int) -> dict[str, Any]:
    """Run ``build_pair.py`` without ``group`` into ``out`` (kept when it is there); return its card."""
    if not (out / "card.json").exists():
        if out.exists():
            shutil.rmtree(out)
        command = [sys.executable, "models/default/build_pair.py", "--out", os.path.relpath(out, ROOT)]
        command += ["--exclude-groups", group, "--threads", str(threads)]
        if members is not None:
            command += ["--members", str(members)]
        print("pretraining:", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
    return json.loads((out / "card.json").read_text())


def run_config(
    folder: Path,
    assay: Path,
    pretrained: Path,
    models: Path,
    run: str,
    seed: int,
    fractions: Sequence[float],
    members: int | None,
) -> dict[str, Any]:
    """The user's run config: tethered posing like the reference ligand, then the pair trainer fine-tuning."""
    train: dict[str, Any] = dict(
        name=f"{run}-seed{seed}",
        models_dir=os.path.relpath(models, ROOT),
        scorer="pair",
        init_from=os.path.relpath(pretrained, ROOT),
        seed=seed,
        fractions=list(fractions),
        pair=dict(value_units="kcal_per_mol"),
    )
    if members is not None:
        train["n_models"] = members
    return dict(
        run=run,
        library=dict(path=os.path.relpath(assay, ROOT), chunk_size=10),
        receptor=dict(path=os.path.relpath(folder / "protein.pdb.gz", ROOT)),
        box=dict(reference_ligand=os.path.relpath(folder / "ref_ligand.sdf", ROOT)),
        docking=dict(mode="tethered"),
        train=train,
    )


def train_split(config: dict[str, Any], path: Path, cores: int) -> dict[str, Any]:
    """``snakemake train`` with ``config`` (written to ``path``); returns the model's card."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = ["snakemake", "train", "--cores", str(cores), "--configfile", str(path)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    train = config["train"]
    return json.loads((ROOT / train["models_dir"] / train["name"] / "card.json").read_text())


def split_row(seed: int, card: dict[str, Any]) -> dict[str, Any]:
    """One split's test figures from its card."""
    test = card["metrics"]["test"]
    row: dict[str, Any] = dict(seed=seed, n_test=test["fine_tuned"]["n"], n_train=card["split"]["compounds"]["train"])
    for method in METHODS:
        if method in test:
            row[method] = test[method]["kendall_tau"]
    comparison = card.get("comparison", {}).get("test", {})
    row["comparison"] = comparison
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and sd) over splits of each method's test τ and of fine-tuned − each other method."""
    out: dict[str, Any] = {}
    for method in METHODS:
        values = np.array([r[method] for r in rows if np.isfinite(r.get(method, np.nan))])
        if len(values):
            out[method] = dict(mean=float(values.mean()), sd=float(values.std(ddof=1)) if len(values) > 1 else None)
    for method in METHODS[1:]:
        diff = np.array([r["fine_tuned"] - r[method] for r in rows if np.isfinite(r.get(method, np.nan))])
        if len(diff):
            out[f"fine_tuned - {method}"] = dict(
                mean=float(diff.mean()),
                sd=float(diff.std(ddof=1)) if len(diff) > 1 else None,
                splits_better=int((diff > 0).sum()),
                splits=int(len(diff)),
            )
    return out


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Per split and mean test Kendall τ of every method."""
    header = ["split seed", "n test"] + list(METHODS)
    print(" | ".join(header))
    for r in rows:
        print(" | ".join([str(r["seed"]), str(r["n_test"])] + [f"{r.get(m, float('nan')):+.3f}" for m in METHODS]))
    print(" | ".join(["mean", ""] + [f"{summary[m]['mean']:+.3f}" if m in summary else "" for m in METHODS]))
    for key, value in summary.items():
        if key.startswith("fine_tuned - "):
            print(
                f"{key}: {value['mean']:+.3f} (sd {value['sd']}), better on {value['splits_better']}/{value['splits']}"
            )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default=SERIES, help="Uni-FEP series folder held back as the assay")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="split seeds (train.seed)")
    parser.add_argument("--fractions", type=float, nargs=3, default=[0.5, 0.2, 0.3], help="train, validation, test")
    parser.add_argument("--members", type=int, default=None, help="ensemble members (default: train.n_models)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores, and the pretraining's torch threads")
    parser.add_argument("--rebuild", action="store_true", help="pretrain again even when the cached model is there")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    folder = pu.UNIFEP / args.series
    target, group = protein_group(folder)
    work = CACHE / args.series
    work.mkdir(parents=True, exist_ok=True)
    assay = assay_table(folder)
    assay_path = work / "assay.csv"
    assay.to_csv(assay_path, index=False)
    pretrained = work / "pretrained"
    if args.rebuild and pretrained.exists():
        shutil.rmtree(pretrained)
    pre_started = time.perf_counter()
    pre_card = build_pretrained(pretrained, group, args.members, args.cores)
    pretrain_seconds = time.perf_counter() - pre_started
    unifep = pre_card["data"]["unifep"]
    assert group in unifep["excluded_groups"] and not any(s["group"] == group for s in unifep["by_series"].values()), (
        f"the pretrained model holds {group} data"
    )

    run = f"finetune-{target.lower()}"
    rows, cards = [], {}
    for seed in args.seeds:
        config = run_config(folder, assay_path, pretrained, work / "models", run, seed, args.fractions, args.members)
        card = train_split(config, work / f"config-seed{seed}.yaml", args.cores)
        cards[str(seed)] = dict(
            metrics=card["metrics"],
            comparison=card.get("comparison"),
            split=card["split"],
            data={
                k: card["data"][k]
                for k in ("n_compounds", "n_graphs", "n_assay_rows_rejected", "n_assay_compounds_without_graph")
            },
        )
        rows.append(split_row(seed, card))
    summary = summarize(rows)
    print_table(rows, summary)
    result = dict(
        benchmark="finetune_heldout",
        command="python benchmarks/finetune_heldout.py " + " ".join(sys.argv[1:] if argv is None else argv),
        series=args.series,
        target=target,
        protein_group=group,
        n_compounds=len(assay),
        fractions=args.fractions,
        seeds=args.seeds,
        metric="Kendall tau of each method's score (higher = more potent) against -exp dG on the split's test compounds",
        pretrained=dict(
            excluded_groups=unifep["excluded_groups"],
            n_examples=pre_card["data"]["n_examples"],
            n_affinity=pre_card["data"]["n_affinity"],
            n_screening=pre_card["data"]["n_screening"],
            n_protein_groups=pre_card["data"]["n_protein_groups"],
            training_seconds=pre_card.get("training_seconds"),
            build=pre_card["data"]["build"].replace(f"{ROOT}{os.sep}", ""),  # a cached model may name the checkout
        ),
        splits=rows,
        summary=summary,
        cards=cards,
        host=platform.node(),
        pretrain_seconds=round(pretrain_seconds, 1),
        seconds=round(time.perf_counter() - started, 1),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
