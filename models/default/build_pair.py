"""Build the pretrained pair-term scorer: every affinity and screening example the committed campaigns hold.

The scorer issue wants the shipped model pretrained on the Uni-FEP affinity series and the
DUD-E screening data, and ``snakemake train`` on a user's assay fine-tuning it
(``train.scorer: pair``, ``train.init_from``; :mod:`pipeline.scoring.pair_finetune`). This
script makes that model, as a *candidate*: it writes a pair-model folder
(:func:`pipeline.scoring.pair_folder.save_pair_model`) to ``--out``, by default
``models/pair_candidate/``, never to ``models/default/`` (the shipped complex-graph model and
its recipe, ``build.py``, stay as they are until the evaluation picks a replacement).

    nice -n 19 python models/default/build_pair.py [--out models/pair_candidate] [--threads 2]
    python models/default/build_pair.py --quick --out <folder>     # smoke check: a handful of examples, 1 epoch

Data (what the campaigns have when it runs; both grow across sessions, so rebuild to use more):

* **affinity**: every Uni-FEP ligand with a tethered pose in ``benchmarks/unifep_poses/``
  (``benchmarks/pose_unifep.py``), as ``benchmarks/scoring_cv.py`` reads them
  (:func:`scoring_cv.attach_graphs`: pair graphs built in the receptor the poses were
  optimized in, cached), measured ΔG as the target, one ranking group per series, early
  stopping grouped by protein (:func:`affinity_eval.protein_groups`). The data folder is
  ``pose_unifep.UNIFEP`` (``../shared/data/unifep`` from the repository root, or
  ``$VSCREEN_UNIFEP``);
* **screening**: every successful docking of ``benchmarks/dude_poses/`` (``benchmarks/pose_dude.py``),
  top pose, made into examples by ``benchmarks/scoring_loto.py``
  (:func:`scoring_loto.campaign_rows`, :func:`~scoring_loto.target_graphs`,
  :func:`~scoring_loto.screening_examples`): each target's actives (1), its property-matched
  decoys (0) and its cross-decoys (the other targets' actives docked into it, 0). This is
  the training set of one leave-one-target-out fold with nothing held out. Lower-ranked poses
  are not used (as in the benchmark's default).

The card's ``data`` says how many examples of each kind there are, per Uni-FEP protein and
series and per DUD-E target and role, beside what each campaign planned.

Settings are the product's: the ``train`` and ``train.pair`` defaults of ``pipeline/schema.yaml``,
read as ``snakemake train`` reads them (:meth:`PairAssaySettings.train_settings`, from scratch:
``n_models`` members, ``seed``, epochs, patience, learning rate, weight decay, loss weights,
screening group size; :meth:`PairAssaySettings.model_config` for the hyperparameters). Three
settings of that method are for one assay table and are replaced by the
:class:`~pipeline.scoring.pair_train.PairTrainSettings` defaults for many proteins, which are
also what ``scoring_cv`` and ``scoring_loto`` evaluate (:data:`MULTI_PROTEIN`): whole series
(an assay is cut into groups because it is one big series), several series per step, and
early stopping on a held-out share of the protein groups (an assay has its own validation
compounds). Without any affinity example the held-out share is 0, as in ``scoring_loto``
(early stopping reads affinity series only). ``--members`` and ``--epochs`` override, and the
card records the settings used.

Training pockets (card ``training_pockets``, :mod:`pipeline.scoring.domain`) are named like
the training groups: one per Uni-FEP series (its folder name; series of one protein may use
different structures) and one per DUD-E target (``dude:<target>``). Each is
:func:`~pipeline.scoring.domain.pocket_descriptor` of the receptor the pair graphs were built
from, around the centre of the box the poses were made in:

* Uni-FEP: the prepared receptor PDBQT of the series (``pose_unifep.receptor_path``, prepared
  again by ``pose_unifep.prepare`` if the cache lacks it, as ``scoring_cv`` does) and the
  centre of the box around the series' reference ligand (``pose_unifep.PADDING``);
* DUD-E: the committed receptor ``benchmarks/dude_poses/receptors/<target>.pdbqt.gz`` and the
  centre of dockstring's box of the target (``pose_dude.target_box``).

``pocket_descriptor`` reads PDBQT (gzipped or not) itself and leaves hydrogens, waters and
hetero groups out, so the prepared receptor gives the pocket a run computes from its own
prepared ``receptor.pdb`` (on FKBP12 the raw ``protein.pdb.gz`` and the prepared PDBQT give
descriptors 1e-8 apart); no PDB writer is needed.

The card also records the commit of the code (``git rev-parse HEAD``, and whether tracked
files differed from it), the command line, the training time and the evaluation
(``benchmarks/results/scoring_cv.json`` and ``scoring_loto.json``: the headline figures of
the pair model against Vina, or "not evaluated yet" when a file is missing). The
benchmarks evaluate this recipe on held-out proteins (their fold models), not these weights.

Becoming the default
--------------------
The candidate replaces the shipped model only when both evaluations show it beating docking
on proteins it was not trained on: in ``scoring_cv`` the protein-group-resampled 95 %
interval of the difference in mean per-series Kendall τ (pair model − Vina, all compounds)
lies above 0, and in ``scoring_loto`` the 95 % interval of the difference in mean AUROC over
held-out targets (pair model − Vina) lies above 0 against both the property-matched decoys
and the cross-decoys. The card's ``evaluation`` entry says whether each holds
(``beats_docking``) and ``promote`` whether both do. Until then the shipped ranking stays
docking (the default model's scores are only shown beside it). To promote: rerun both
benchmarks and this build on the same campaigns, build with ``--name default``, and replace
the complex-graph model's files in ``models/default/`` (``card.json``, ``model_*.pt``,
``metrics.csv``, ``learning_curve.png``) with the candidate's ``card.json`` and
``ensemble.pt``, keeping the recipes and ``data/``; the build never writes there itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import affinity_eval as ae  # noqa: E402
import pose_dude  # noqa: E402
import pose_unifep as pu  # noqa: E402
import scoring_cv  # noqa: E402
import scoring_loto  # noqa: E402

#: Where the candidate goes unless ``--out`` says otherwise (not ``models/default/``).
OUT = ROOT / "models" / "pair_candidate"
#: The evaluation results the card points to.
RESULTS = ROOT / "benchmarks" / "results"
#: Settings of the one-assay trainer replaced by the PairTrainSettings defaults for many proteins.
MULTI_PROTEIN = ("series_per_batch", "affinity_group_size", "validation_fraction")
#: A pair-model folder holds these; ``--out`` may replace a folder with nothing else in it.
MODEL_FILES = frozenset({"card.json", "ensemble.pt"})
#: ``--quick``: the first posed series, a few ligands of it, two examples per DUD-E target and label.
QUICK = dict(max_series=1, per_series=6, per_target_label=2, members=2, epochs=1)
NOT_EVALUATED = "not evaluated yet"


# --------------------------------------------------------------------------- settings


def default_settings() -> tuple[Any, Any, dict[str, Any]]:
    """The product's from-scratch pair training settings and hyperparameters, and where they came from.

    Returns
    -------
    settings, config, record
        :class:`~pipeline.scoring.pair_train.PairTrainSettings` (the ``train`` and ``train.pair``
        defaults of ``schema.yaml`` through :meth:`PairAssaySettings.train_settings`, with
        :data:`MULTI_PROTEIN` from the ``PairTrainSettings`` defaults),
        :class:`~pipeline.scoring.pair_model.PairModelConfig`, and the card's record of both.
    """
    from pipeline.config import fill_defaults, load_schema, settings_from_mapping
    from pipeline.scoring.pair_finetune import PairAssaySettings
    from pipeline.scoring.pair_train import PairTrainSettings

    train = fill_defaults({}, load_schema())["train"]
    pair = settings_from_mapping(PairAssaySettings, train["pair"], "train.pair", strict=True)
    assay = pair.train_settings(fine_tune=False, n_models=train["n_models"], seed=train["seed"])
    many = PairTrainSettings()
    settings = replace(assay, **{key: getattr(many, key) for key in MULTI_PROTEIN})
    record = dict(
        source="pipeline/schema.yaml defaults of train (n_models, seed) and train.pair, read by "
        "PairAssaySettings.train_settings(fine_tune=False); "
        + ", ".join(MULTI_PROTEIN)
        + " from the PairTrainSettings defaults (many proteins, as scoring_cv and scoring_loto train)",
        train_pair=pair.to_dict(),
        one_assay_values={key: getattr(assay, key) for key in MULTI_PROTEIN},
    )
    return settings, pair.model_config(), record


# --------------------------------------------------------------------------- data


def _relative(path: Path) -> str:
    """``path`` relative to the repository root (committed cards name no machine's directories)."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def unifep_examples(
    max_series: int | None = None, per_series: int | None = None, exclude: Sequence[str] = ()
) -> tuple[list, pd.DataFrame, dict]:
    """Affinity examples of every posed Uni-FEP ligand, the rows behind them, and their counts.

    Parameters
    ----------
    max_series
        Only the first N series that have poses (``scoring_cv.attach_graphs``); ``None``: all.
    per_series
        At most this many ligands of each series (``--quick``); ``None``: all.
    exclude
        Protein groups (:func:`affinity_eval.protein_groups`), or targets standing for their
        group, left out entirely (``--exclude-groups``): a series held back to test
        fine-tuning on a protein the pretrained model never saw (``benchmarks/finetune_heldout.py``).

    Returns
    -------
    examples, rows, counts
        :class:`~pipeline.scoring.pair_train.PairExample` per ligand (group: the series,
        protein: its protein group, ``dg``: the measured ΔG), their rows of
        :func:`affinity_eval.load_unifep` with ``graph``, and the card's counts.
    """
    from pipeline.scoring.pair_train import PairExample

    data = ae.load_unifep(pu.UNIFEP)
    excluded = excluded_groups(exclude, data)
    # left out before the graphs are built: an excluded series costs no featurization
    rows, graphs = scoring_cv.attach_graphs(data[~data["group"].isin(excluded)], max_series)
    posed = [f for f in dict.fromkeys(data["series"]) if scoring_cv.pose_file(f) is not None]
    without_dg = int((~np.isfinite(rows["exp_dG"].astype(float))).sum())
    rows = rows[np.isfinite(rows["exp_dG"].astype(float))]  # a NaN target would make the loss NaN
    if per_series:
        rows = rows.groupby("series", sort=False).head(per_series)
    examples = [
        PairExample(graphs[g], s, p, dg=float(v))
        for g, s, p, v in zip(rows["graph"], rows["series"], rows["group"], rows["exp_dG"])
    ]
    used = list(dict.fromkeys(rows["series"]))
    in_data = data.groupby("series").size()
    by_series = {
        folder: dict(
            target=str(part["target"].iloc[0]),
            group=str(part["group"].iloc[0]),
            ligands=int(in_data[folder]),
            examples=int(len(part)),
        )
        for folder, part in rows.groupby("series", sort=False)
    }
    by_target = {
        str(target): dict(
            group=str(part["group"].iloc[0]), series=int(part["series"].nunique()), examples=int(len(part))
        )
        for target, part in rows.groupby("target", sort=True)
    }
    counts = dict(
        data=_relative(pu.UNIFEP),
        poses="benchmarks/unifep_poses/poses/<folder>.sdf.gz (benchmarks/pose_unifep.py)",
        series_in_data=int(data["series"].nunique()),
        series_with_poses=len(posed),
        series_used=len(used),
        ligands_in_used_series=int(sum(in_data[f] for f in used)),
        posed_without_dg=without_dg,
        examples=len(examples),
        proteins=int(rows["target"].nunique()),
        protein_groups=int(rows["group"].nunique()),
        max_series=max_series,
        per_series=per_series,
        excluded_groups=sorted(excluded),
        by_target=by_target,
        by_series=by_series,
    )
    return examples, rows, counts


def excluded_groups(names: Sequence[str], data: pd.DataFrame) -> set[str]:
    """The protein groups that ``names`` (groups or target names) stand for; an unknown name is an error."""
    groups = set(data["group"])
    group_of = dict(zip(data["target"], data["group"]))
    out = set()
    for name in names:
        if name not in groups and name not in group_of:
            raise SystemExit(f"--exclude-groups: {name!r} is neither a Uni-FEP target nor a protein group")
        out.add(group_of.get(name, name))
    return out


def dude_examples(poses: Path = pose_dude.OUT, per_target_label: int | None = None) -> tuple[list, dict]:
    """Screening examples of every successful docking of the DUD-E campaign in ``poses``, and their counts.

    Parameters
    ----------
    poses
        The campaign folder (``rows.csv``, ``poses/``, ``receptors/``).
    per_target_label
        At most this many rows of each target and label (``--quick``); ``None``: all.

    Returns
    -------
    examples, counts
        :class:`~pipeline.scoring.pair_train.PairExample` per top pose (group ``dude:<target>``),
        and per target what the campaign docked (``docked``, ``failed``, ``planned``), the
        examples made by role and the rows without a graph.
    """
    campaign = scoring_loto.campaign_rows(poses)
    counts = scoring_loto.campaign_counts(poses, campaign, pose_dude.PER_CLASS)
    if per_target_label:
        campaign = campaign.groupby(["target", "active"], sort=False).head(per_target_label)
    examples, by_target = [], {}
    for target in scoring_loto.TARGETS:
        rows = campaign[campaign["target"] == target]
        graphs = {target: scoring_loto.target_graphs(target, poses)[0]} if len(rows) else {}
        made, used = scoring_loto.screening_examples(rows, graphs)
        examples += made
        campaign_part = counts[target]
        by_target[target] = dict(
            gene=pose_dude.GENE[target],
            docked={role: campaign_part[role] for role in pose_dude.ROLES},
            failed=campaign_part["failed"],
            planned=campaign_part["planned"],
            examples={role: used[role] for role in pose_dude.ROLES},
            no_graph=used["no_graph"],
        )
    summary = dict(
        poses=_relative(poses),
        examples=len(examples),
        actives=int(sum(ex.active for ex in examples)),
        negatives=int(sum(1 - ex.active for ex in examples)),
        per_target_label=per_target_label,
        by_target=by_target,
    )
    return examples, summary


def data_fingerprint(examples: Sequence) -> str:
    """sha256 of the sorted ``group/id<TAB>label`` lines of the examples (two builds on the same data match)."""
    from pipeline.scoring.train import data_fingerprint as fingerprint

    keys = [f"{ex.group}/{ex.graph.id}" for ex in examples]
    labels = [ex.dg if ex.dg is not None else float(ex.active) for ex in examples]
    return fingerprint(pd.DataFrame({"label": labels}, index=keys))


# --------------------------------------------------------------------------- pockets


def unifep_pocket(folder: str) -> tuple[np.ndarray, dict]:
    """The pocket of one Uni-FEP series: its prepared receptor around its reference ligand's box centre."""
    from pipeline.box import box_around_ligand
    from pipeline.scoring.domain import pocket_descriptor

    receptor = pu.receptor_path(folder)
    if not receptor.is_file():  # graphs came from the cache without their receptor: prepare it, as scoring_cv does
        with tempfile.TemporaryDirectory() as tmp:
            pu.prepare(pu.UNIFEP / folder, Path(tmp))
    box = box_around_ligand(pu.UNIFEP / folder / "ref_ligand.sdf", pu.PADDING)
    record = dict(kind="unifep series", receptor=_relative(receptor), center=list(box.center))
    return pocket_descriptor(receptor, box), record


def dude_pocket(target: str, poses: Path) -> tuple[np.ndarray, dict]:
    """The pocket of one DUD-E target: its committed receptor around dockstring's box centre."""
    from pipeline.scoring.domain import pocket_descriptor

    receptor = poses / "receptors" / f"{target}.pdbqt.gz"
    box = pose_dude.target_box(target)
    record = dict(
        kind="dude target", gene=pose_dude.GENE[target], receptor=_relative(receptor), center=list(box.center)
    )
    return pocket_descriptor(receptor, box), record


def training_pockets(series: Sequence[str], targets: Sequence[str], poses: Path) -> tuple[Any, dict]:
    """One training pocket per Uni-FEP series and per DUD-E target that gave examples; names as the groups."""
    from pipeline.scoring.domain import TrainingPockets

    vectors, records = {}, {}
    for folder in series:
        vectors[folder], records[folder] = unifep_pocket(folder)
    for target in targets:
        name = f"dude:{target}"
        vectors[name], records[name] = dude_pocket(target, poses)
    return (TrainingPockets.of(vectors) if vectors else None), records


# --------------------------------------------------------------------------- provenance and evaluation


def code_commit() -> dict[str, Any]:
    """The commit the code was at (``git rev-parse HEAD``) and whether tracked files differed from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return dict(commit=commit, tracked_changes=None if status is None else bool(status))


def _beats(ci: Sequence[float] | None) -> bool | None:
    """Whether a 95 % interval of (pair model − Vina) lies above 0; ``None`` without an interval."""
    return None if not ci else bool(ci[0] > 0)


def scoring_cv_headline(summary: dict) -> dict[str, Any]:
    """Mean per-series τ of pair model and Vina on held-out proteins, and their difference (group interval)."""
    diff = summary["differences"]["pair_model - vina"]["all"]["tau"]
    ci = diff["group"]["diff"] if "group" in diff else None
    return dict(
        metric="mean per-series Kendall tau vs measured dG, protein-grouped 5-fold CV (all compounds)",
        n_series=diff["n_series"],
        n_groups=diff["n_groups"],
        pair_model=diff["mean_a"],
        vina=diff["mean_b"],
        difference=diff["diff"],
        difference_ci95_groups=ci,
        beats_docking=_beats(ci),
    )


def scoring_loto_headline(summary: dict) -> dict[str, Any]:
    """Mean AUROC over held-out DUD-E targets of pair model and Vina per negative set, and their difference."""
    out: dict[str, Any] = dict(metric="mean AUROC over held-out targets (DUD-E leave one target out)")
    beats = []
    for negatives in scoring_loto.NEGATIVES:
        result = summary["results"][negatives]
        mean = result.get("mean_auroc", {})
        diff = result.get("differences", {}).get("pair_model - vina", {}).get("mean", {})
        beats.append(_beats(diff.get("ci")))
        out[negatives] = dict(
            targets=[row["target"] for row in result.get("per_target", [])],
            pair_model=mean.get("pair_model"),
            vina=mean.get("vina"),
            difference=diff.get("diff"),
            difference_ci95=diff.get("ci"),
            beats_docking=beats[-1],
        )
    out["beats_docking"] = None if None in beats else all(beats)
    return out


def evaluation(results: Path = RESULTS) -> dict[str, Any]:
    """Pointers to the scoring benchmarks' results with their headline figures, or "not evaluated yet"."""
    entry: dict[str, Any] = {}
    for name, headline in (("scoring_cv", scoring_cv_headline), ("scoring_loto", scoring_loto_headline)):
        path = results / f"{name}.json"
        item: dict[str, Any] = dict(file=f"benchmarks/results/{name}.json")
        if not path.is_file():
            item["status"] = NOT_EVALUATED
        else:
            try:
                summary = json.loads(path.read_text())
                item.update(
                    status="evaluated",
                    command=summary.get("command"),
                    date=summary.get("date"),
                    settings=summary.get("settings"),
                    headline=headline(summary),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a result of another layout: say so
                item["status"] = f"unreadable: {type(exc).__name__}: {exc}"
        entry[name] = item
    verdicts = [entry[n].get("headline", {}).get("beats_docking") for n in ("scoring_cv", "scoring_loto")]
    entry["promote"] = bool(all(v is True for v in verdicts))
    entry["rule"] = (
        "promote to models/default only when both beat docking on held-out proteins: scoring_cv's "
        "protein-group 95% interval of (pair - Vina) mean tau above 0, and scoring_loto's 95% interval of "
        "(pair - Vina) mean AUROC above 0 on decoys and on cross-decoys; otherwise the ranking stays docking. "
        "The benchmarks evaluate this recipe (their own fold models), not these weights."
    )
    return entry


# --------------------------------------------------------------------------- the build


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is ``models/default/`` or holds anything but a pair model (it is replaced whole)."""
    out = out.resolve()
    if out == HERE or HERE.is_relative_to(out):
        raise SystemExit(f"--out {out}: this would replace the shipped model or its recipe; write elsewhere")
    if out.exists():
        extra = sorted(p.name for p in out.iterdir()) if out.is_dir() else [out.name]
        if not out.is_dir() or set(extra) - MODEL_FILES:
            raise SystemExit(
                f"--out {out} exists and holds {', '.join(extra[:5])}: the build replaces the folder whole, "
                "so it only overwrites an earlier pair model (card.json, ensemble.pt)"
            )


def build(args: argparse.Namespace) -> Path:
    """Collect the examples, fit the ensemble, record pockets and provenance, write the folder; returns it."""
    from pipeline.pair_graphs import DEFAULT_PAIR_SCHEMA
    from pipeline.scoring.pair_folder import SCORE_MEANING, save_pair_model
    from pipeline.scoring.pair_train import fit_ensemble
    from pipeline.scoring.runtime import torch_threads

    check_out(args.out)
    quick = QUICK if args.quick else {}
    started = time.perf_counter()
    affinity, unifep_rows, unifep_counts = unifep_examples(
        args.max_series or quick.get("max_series"), quick.get("per_series"), args.exclude_groups
    )
    screening, dude_counts = dude_examples(args.dude_poses, quick.get("per_target_label"))
    examples = affinity + screening
    print(f"Uni-FEP: {len(affinity)} affinity examples in {unifep_counts['series_used']} series", flush=True)
    print(f"DUD-E: {len(screening)} screening examples ({dude_counts['actives']} actives)", flush=True)
    if not examples:
        raise SystemExit("no training example: the Uni-FEP and DUD-E campaigns have no poses with graphs yet")

    settings, config, settings_record = default_settings()
    overrides = {k: v for k, v in dict(members=args.members, epochs=args.epochs).items() if v is not None}
    overrides = {**{k: quick[k] for k in ("members", "epochs") if k in quick}, **overrides}
    settings = replace(settings, **overrides)
    if not affinity:
        # early stopping reads affinity series only: a held-out protein share would be lost data (as scoring_loto)
        settings = replace(settings, validation_fraction=0.0)
    dude_targets = [t for t, c in dude_counts["by_target"].items() if sum(c["examples"].values())]
    pockets, pocket_records = training_pockets(
        list(dict.fromkeys(unifep_rows["series"])), dude_targets, args.dude_poses
    )
    collected = time.perf_counter() - started

    fit_started = time.perf_counter()
    with torch_threads(args.threads):
        ensemble = fit_ensemble(examples, DEFAULT_PAIR_SCHEMA, config, settings)
    training_seconds = time.perf_counter() - fit_started
    print(f"fitted {settings.members} members in {training_seconds:.0f} s", flush=True)

    command = "python models/default/build_pair.py " + shlex.join(args.argv)  # quoted: a group name may hold a space
    card = dict(
        name=args.name or args.out.name,
        task="pair energy",
        model_method="pretrained" if not args.quick else "pretrained (--quick smoke build: not a model to use)",
        score=dict(
            meaning=SCORE_MEANING + "; pretrained on Uni-FEP affinity series and DUD-E screening labels",
        ),
        data=dict(
            origin="the committed campaigns benchmarks/unifep_poses (tethered poses, measured dG) and "
            "benchmarks/dude_poses (docked top poses: actives 1, property-matched decoys and cross-decoys 0)",
            fingerprint=data_fingerprint(examples),
            n_examples=len(examples),
            n_affinity=len(affinity),
            n_screening=len(screening),
            n_protein_groups=len({ex.protein for ex in examples}),
            unifep=unifep_counts,
            dude=dude_counts,
            pockets=pocket_records,
            build=command.strip(),
        ),
        training=dict(
            settings_source=settings_record,
            overrides=overrides,
            threads=args.threads,
            collect_seconds=round(collected, 1),
            early_stopping=(
                f"each member holds out a random {settings.validation_fraction:.0%} of the protein groups "
                "(a different draw per seed; none with a single group) and keeps its epoch of best mean "
                "per-series tau on them"
                if settings.validation_fraction > 0
                else "none: every member trains on every example for all epochs (no affinity series to stop on)"
            ),
        ),
        training_seconds=round(training_seconds, 1),
        provenance=dict(code_commit(), command=command.strip()),
        evaluation=evaluation(args.results),
    )
    out = save_pair_model(ensemble, args.out, card, pockets=pockets)
    print(f"wrote {out} ({len(pockets or ())} training pockets)", flush=True)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``argv`` kept for the card)."""
    from pipeline.config import schema_default

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=OUT, help="the model folder to write (default models/pair_candidate)"
    )
    parser.add_argument("--name", default=None, help="the model's name in its card (default: the folder's name)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke build: the first posed series, a few examples, 1 epoch, 2 members"
    )
    parser.add_argument("--members", type=int, default=None, help="ensemble members (default: train.n_models)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs at most (default: train.pair's from scratch)")
    parser.add_argument("--max-series", type=int, default=None, help="only the first N posed Uni-FEP series")
    parser.add_argument(
        "--exclude-groups",
        nargs="+",
        default=[],
        metavar="GROUP",
        help="protein groups (or targets, for their group) whose Uni-FEP series are left out of the data",
    )
    parser.add_argument("--threads", type=int, default=schema_default("train", "threads"), help="torch threads")
    parser.add_argument("--dude-poses", type=Path, default=pose_dude.OUT, help="the DUD-E campaign folder")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where scoring_cv.json and scoring_loto.json are")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the build; returns the folder written."""
    return build(parse_args(argv))


if __name__ == "__main__":
    main()
