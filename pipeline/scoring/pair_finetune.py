"""Training the pair-term scorer on one assay table: from scratch, or fine-tuning a pretrained pair model.

What ``vscreen train`` (``snakemake train``) runs when ``train.scorer: pair``.
:func:`train_pair_from_files`:

1. read the run's pair graphs (one schema for all files; with ``train.init_from`` it must be
   the pretrained model's, which is the schema featurize wrote them with,
   :func:`pipeline.scoring.pair_folder.pair_schema_for_run`) and keep the best pose of each
   compound: the lowest Vina score of the pose (graph global ``vina_score``), i.e. the pose the
   untrained model, and the docking that made it, rank first;
2. read the assay table (:func:`~pipeline.scoring.assay.read_assay`); bad rows and compounds
   without a graph become failure rows (stage ``assay``), as for the complex-graph trainer;
3. split the compounds with the complex-graph trainer's split
   (:func:`~pipeline.scoring.splits.split_compounds`: Bemis-Murcko scaffold by default,
   ``train.fractions``, ``train.seed``);
4. fit ``train.n_models`` members (:func:`~pipeline.scoring.pair_train.fit_member`, the loss
   of :mod:`~pipeline.scoring.pair_train`), member ``k`` with seed ``seed + k`` on a bootstrap
   resample of the training compounds (``train.bootstrap``), early-stopped on the split's
   validation compounds. With ``train.init_from`` member ``k`` starts from pretrained member
   ``k mod K`` (fine-tuning) with the fine-tuning defaults below; a model trained from
   scratch on the same split, seeds and resamples is always fitted too, so that every card
   shows what the pretraining bought;
5. evaluate on the same validation and test compounds: the saved model, the from-scratch
   model, the pretrained model as it was (when fine-tuning), Vina's score of the pose (the
   untrained pair model), heavy-atom count, and the ligand-only fingerprint model of the
   complex-graph trainer (:func:`~pipeline.scoring.train.fit_ligand_baseline`); paired
   bootstrap intervals of the differences that matter (:func:`paired_bootstrap`);
6. write ``models/<name>/`` (:func:`~pipeline.scoring.pair_folder.save_pair_model`) and the
   failures CSV.

Labels and units. The assay's ``value`` is, as :mod:`pipeline.scoring.assay` defines it,
higher = more potent (pIC50, pKd, pKi). The pair score is kcal/mol-like and lower = better,
so ``train.pair.value_units`` says how a value becomes the model's target ΔG:

* ``p_molar`` (default): a -log10 molar potency, ΔG = -RT ln(10) · value =
  -:data:`RT_LN10` kcal/mol per log unit (298.15 K). The ranking loss only needs the order;
  the optional Huber term (``absolute_weight``, off by default) needs kcal/mol, and this is the physical
  conversion for a Kd (an IC50 differs from it by an assay-dependent offset, which the
  ranking term ignores and the weak term only nudges);
* ``kcal_per_mol``: the value already is a ΔG (lower = tighter), used as it is;
* ``rank_only``: other higher-is-better units; the target is -value and only its order is
  used (the absolute term is switched off).

An ``active`` column (1/0) trains the screening cross-entropy on the model's ``logit``
instead, early-stopped on validation AUROC. Metrics are in the assay's direction: Kendall τ
and Spearman ρ of (higher = more potent) scores against the potency (``value``, or
``-value`` for ``kcal_per_mol``), AUROC for labels (:mod:`pipeline.scoring.metrics`).

Defaults that depend on the start (``train.pair.epochs``, ``patience``, ``learning_rate``
left null): from scratch :data:`FROM_SCRATCH` (the settings of
:class:`~pipeline.scoring.pair_train.PairTrainSettings`), fine-tuning :data:`FINE_TUNING`: a
fifth of the learning rate and half the epochs, because the pretrained weights already
encode what many proteins taught and a few hundred compounds of one assay should adjust
them, not overwrite them. A value set in the config applies to both fits.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import ConfigError, schema_field, settings_from_mapping
from ..graphs import GraphError
from ..io import write_failures
from ..pair_graphs import PairGraphSchema, load_pair_graphs
from ..progress import progress
from .assay import STAGE, Assay, AssayError, read_assay
from .domain import TrainingPockets
from .ensemble import ModelError
from .metrics import auroc, classification_metrics, kendall_tau, pearson, spearman
from .pair_folder import SCORE_MEANING, PairModel, load_pair_model, pretrained_pair_card, save_pair_model
from .pair_model import PairModelConfig
from .pair_train import MemberHistory, PairEnsemble, PairExample, PairTrainSettings, fit_member
from .runtime import torch_threads
from .splits import split_compounds
from .train import (
    TrainSettings,
    TrainSummary,
    _resample,
    data_fingerprint,
    fit_ligand_baseline,
    predict_ligand_baseline,
    seeded,
)

log = logging.getLogger(__name__)

#: RT ln(10) at 298.15 K (kcal/mol): ΔG of one log10 unit of a dissociation constant.
RT_LN10 = 0.0019872036 * 298.15 * math.log(10.0)
#: How an assay ``value`` becomes the model's target (see the module docstring).
VALUE_UNITS = ("p_molar", "kcal_per_mol", "rank_only")
#: Defaults of the start-dependent settings, from scratch ...
FROM_SCRATCH: dict[str, Any] = dict(epochs=40, patience=6, learning_rate=1e-3, global_iterations=50)
#: ... and when fine-tuning a pretrained model.
FINE_TUNING: dict[str, Any] = dict(epochs=20, patience=5, learning_rate=2e-4, global_iterations=0)
#: One series: every compound of the assay is ranked against the others (one target, one assay).
SERIES = "assay"
#: Methods in the card's metrics, in the order shown.
METHODS = ("fine_tuned", "from_scratch", "pretrained", "vina", "heavy_atoms", "ligand_only")


@dataclass(frozen=True)
class PairAssaySettings:
    """Settings of pair-model training on an assay (config section ``train.pair``).

    Attributes
    ----------
    epochs, patience, learning_rate, global_iterations
        AdamW epochs, early-stopping patience, learning rate and L-BFGS iterations of the
        global-only first phase (:class:`~pipeline.scoring.pair_train.PairTrainSettings`); ``None``:
        :data:`FROM_SCRATCH` or :data:`FINE_TUNING` by how the model starts.
    weight_decay
        AdamW weight decay.
    absolute_weight
        Weight of the Huber term (score - ΔG, kcal/mol); always 0 with ``value_units: rank_only``.
        Default 0 (see :class:`~pipeline.scoring.pair_train.PairTrainSettings`).
    screening_weight
        Weight of the cross-entropy on ``logit`` (``active`` labels).
    temperature
        Score scale (kcal/mol) of the ranking logistic.
    group_size
        Compounds per optimizer step: the assay (one series) is cut at random each epoch
        into groups of this size; ranking pairs are formed within a group.
    value_units
        One of :data:`VALUE_UNITS` (module docstring).
    bootstrap_samples
        Resamples of the paired bootstrap intervals in the card (0: none).
    model
        Pair-model hyperparameters set explicitly (:class:`~pipeline.scoring.pair_model.PairModelConfig`
        keys; ``None`` values are unset). Unset: the defaults from scratch, the pretrained
        model's when fine-tuning (where a set value must equal the pretrained one).
    """

    epochs: int | None = None
    patience: int | None = None
    learning_rate: float | None = None
    global_iterations: int | None = None
    weight_decay: float = schema_field("train.pair", "weight_decay")
    absolute_weight: float = schema_field("train.pair", "absolute_weight")
    screening_weight: float = schema_field("train.pair", "screening_weight")
    temperature: float = schema_field("train.pair", "temperature")
    group_size: int = schema_field("train.pair", "group_size")
    value_units: str = schema_field("train.pair", "value_units")
    bootstrap_samples: int = schema_field("train.pair", "bootstrap_samples")
    model: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", {k: v for k, v in dict(self.model or {}).items() if v is not None})
        if self.value_units not in VALUE_UNITS:
            raise ConfigError(f"train.pair.value_units must be one of {list(VALUE_UNITS)}, got {self.value_units!r}")
        if self.group_size < 2:
            raise ConfigError(f"train.pair.group_size must be at least 2 (ranking needs pairs), got {self.group_size}")
        known = {f.name for f in fields(PairModelConfig)}
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ConfigError(f"unknown train.pair.model key {unknown[0]!r}; known: {sorted(known)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the card (as configured: ``None`` = the start-dependent default)."""
        return dict(asdict(self), model=dict(self.model))

    def train_settings(self, fine_tune: bool, n_models: int, seed: int) -> PairTrainSettings:
        """The :class:`~pipeline.scoring.pair_train.PairTrainSettings` of one fit (fine-tuned or from scratch)."""
        defaults = FINE_TUNING if fine_tune else FROM_SCRATCH
        pick = {k: defaults[k] if getattr(self, k) is None else getattr(self, k) for k in defaults}
        return PairTrainSettings(
            members=n_models,
            epochs=int(pick["epochs"]),
            patience=int(pick["patience"]),
            lr=float(pick["learning_rate"]),
            global_iterations=int(pick["global_iterations"]),
            weight_decay=self.weight_decay,
            # one series cut into groups, one group per step (see group_size)
            series_per_batch=1,
            screening_group_size=self.group_size,
            affinity_group_size=self.group_size,
            absolute_weight=0.0 if self.value_units == "rank_only" else self.absolute_weight,
            screening_weight=self.screening_weight,
            temperature=self.temperature,
            validation_fraction=0.0,  # the split's validation compounds are passed explicitly
            seed=seed,
        )

    def model_config(self, pretrained: PairModelConfig | None = None, pretrained_name: str = "") -> PairModelConfig:
        """The hyperparameters to train with.

        Raises
        ------
        ConfigError
            When fine-tuning and a key set in ``train.pair.model`` differs from the pretrained model's.
        """
        if pretrained is None:
            return PairModelConfig.from_dict(self.model)
        differ = {k: v for k, v in self.model.items() if getattr(pretrained, k) != v}
        if differ:
            key, value = next(iter(sorted(differ.items())))
            raise ConfigError(
                f"train.pair.model.{key} is {value!r} but the train.init_from model '{pretrained_name}' has "
                f"{key} {getattr(pretrained, key)!r} (differing: {sorted(differ)}); fine-tuning keeps the "
                "pretrained architecture: remove the key(s) or set init_from: null to train from scratch"
            )
        return pretrained


# --------------------------------------------------------------------------- labels and poses


def affinity_targets(values: np.ndarray, units: str) -> np.ndarray:
    """The model's target (ΔG-like, lower = better) of assay values in ``units`` (:data:`VALUE_UNITS`)."""
    values = np.asarray(values, dtype=np.float64)
    if units == "p_molar":
        return -RT_LN10 * values
    if units == "kcal_per_mol":
        return values
    if units == "rank_only":
        return -values
    raise ConfigError(f"train.pair.value_units must be one of {list(VALUE_UNITS)}, got {units!r}")


def potency(values: np.ndarray, units: str) -> np.ndarray:
    """Assay values turned higher = more potent (what the card's correlations are computed against)."""
    values = np.asarray(values, dtype=np.float64)
    return -values if units == "kcal_per_mol" else values


def _global(graph: Any, schema: PairGraphSchema, name: str) -> float:
    return float(graph.globals.reshape(-1)[schema.global_names.index(name)])


def best_poses(graphs: Sequence[Any], schema: PairGraphSchema) -> dict[str, Any]:
    """One graph per compound id: the lowest Vina score (global ``vina_score``); ties by source then pose."""
    best: dict[str, tuple[tuple, Any]] = {}
    for graph in graphs:
        key = (_global(graph, schema, "vina_score"), str(getattr(graph, "source", "")), int(getattr(graph, "pose", 1)))
        cid = str(graph.id)
        if cid not in best or key < best[cid][0]:
            best[cid] = (key, graph)
    return {cid: graph for cid, (_, graph) in best.items()}


def schema_differences(a: PairGraphSchema, b: PairGraphSchema) -> list[str]:
    """Names of the schema fields in which two pair-graph schemas differ."""
    da, db = a.to_dict(), b.to_dict()
    return sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))


def load_run_pair_graphs(
    graph_files: Sequence[str | os.PathLike], expect: PairGraphSchema | None = None, init_name: str | None = None
) -> tuple[PairGraphSchema, list]:
    """The pair graphs of a run's graph files, all of one schema (``expect``, the pretrained model's, if given).

    Raises
    ------
    GraphError
        A file that is not a pair-graph file (the run was featurized for the complex-graph scorer).
    ModelError
        A file whose schema is not the pretrained model's (``init_name``), naming the features that differ.
    """
    if not graph_files:
        raise GraphError("the run has no graph files; dock and featurize the assay compounds first")
    schema, graphs = expect, []
    for path in graph_files:
        try:
            file_schema, file_graphs = load_pair_graphs(path)
        except GraphError as exc:
            raise GraphError(
                f"{exc}; train.scorer: pair trains on pair graphs: featurize the run again with this config "
                "('snakemake train' does when train.scorer changes)"
            ) from None
        if schema is not None and file_schema != schema:
            tuning = expect is not None
            raise ModelError(
                f"graph file '{path}' has pair graphs of another schema than "
                + (f"the train.init_from model '{init_name}' reads" if tuning else "the first graph file's")
                + f" (differing: {schema_differences(file_schema, schema)}); "
                + ("fine-tuning needs the features the model was trained on: " if tuning else "")
                + "featurize the run again with this config"
            )
        schema = schema or file_schema
        graphs.extend(file_graphs)
    return schema, graphs


# --------------------------------------------------------------------------- fitting


@dataclass
class FittedPair:
    """One fitted ensemble with the record of its members (for the card)."""

    ensemble: PairEnsemble
    members: list[dict]


def _member_record(seed: int, keys: Sequence[str], history: MemberHistory) -> dict[str, Any]:
    if 0 <= history.best_epoch < len(history.validation_tau):
        best = history.validation_tau[history.best_epoch]
    else:  # no epoch beat the starting model, which was kept: its criterion is the best one
        best = history.start_validation if np.isfinite(history.start_validation) else None
    return dict(
        seed=seed,
        train_compounds=len(keys),
        distinct_train_compounds=len(set(keys)),
        epochs=len(history.loss),
        best_epoch=history.best_epoch,
        validation_metric=history.validation_metric,
        best_validation=best,
        loss=history.loss,
        validation=history.validation_tau,
    )


def fit_pair_ensemble(
    examples: Mapping[str, PairExample],
    train_keys: Sequence[str],
    val_keys: Sequence[str],
    schema: PairGraphSchema,
    config: PairModelConfig,
    settings: PairTrainSettings,
    resampling: TrainSettings,
    init: PairModel | None = None,
    desc: str = "pair members",
) -> FittedPair:
    """Fit ``settings.members`` pair models on the training compounds, early-stopped on the validation ones.

    Parameters
    ----------
    examples
        Compound key -> its example (best pose and label).
    train_keys, val_keys
        Keys of the training and the early-stopping compounds.
    schema, config
        Pair-graph schema and hyperparameters (the pretrained model's when ``init`` is given).
    settings
        Optimizer and loss settings (:meth:`PairAssaySettings.train_settings`).
    resampling
        The ``train`` settings whose ``seed``, ``bootstrap`` and ``n_models`` give member
        ``k``'s seed (``seed + k``) and bootstrap resample, as the complex-graph trainer's.
    init
        Pretrained model: member ``k`` starts from its member ``k mod K``; ``None``: from scratch.
    desc
        Progress label.

    Returns
    -------
    FittedPair
        The ensemble (members on CPU, in eval mode) and a record per member.
    """
    validation = [examples[k] for k in sorted(val_keys)]
    members, histories, records = [], [], []
    for k in progress(range(settings.members), total=settings.members, desc=desc, unit="model"):
        seed = settings.seed + k
        keys = _resample(train_keys, k, resampling)
        start = init.members[k % len(init.members)].state_dict() if init is not None else None
        with seeded(seed):
            model, history = fit_member(
                [examples[key] for key in keys], schema, config, settings, seed, init_state=start, validation=validation
            )
        members.append(model)
        histories.append(history)
        records.append(_member_record(seed, keys, history))
        log.info(
            "%s %d/%d: best epoch %d of %d (0 = the starting model), validation %s %.4f",
            desc,
            k + 1,
            settings.members,
            history.best_epoch + 1,
            len(history.loss),
            history.validation_metric,
            records[-1]["best_validation"] if records[-1]["best_validation"] is not None else math.nan,
        )
    return FittedPair(PairEnsemble(members, histories, settings), records)


# --------------------------------------------------------------------------- evaluation


def heldout_metrics(
    labels: np.ndarray, score: np.ndarray, task: str, active_threshold: float | None = None
) -> dict[str, float]:
    """Metrics of one method on some compounds; ``score`` and ``labels`` are higher = more potent / active.

    Regression: ``n, n_missing, kendall_tau, spearman, pearson`` (plus ``auroc, ef1, ef5,
    bedroc`` of ``value >= active_threshold`` when it is set). Classification:
    :func:`~pipeline.scoring.metrics.classification_metrics` plus ``n_missing``.
    """
    labels, score = np.asarray(labels, dtype=np.float64), np.asarray(score, dtype=np.float64)
    missing = int((~np.isfinite(score)).sum())
    if task == "classification":
        return dict(classification_metrics(labels, score), n_missing=missing)
    out = dict(
        n=int(len(labels)),
        n_missing=missing,
        kendall_tau=kendall_tau(score, labels),
        spearman=spearman(score, labels),
        pearson=pearson(score, labels),
    )
    if active_threshold is not None:
        ranking = classification_metrics(labels >= active_threshold, score)
        out.update({k: v for k, v in ranking.items() if k != "n"})
    return out


def paired_bootstrap(
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Difference metric(a) - metric(b) on the same compounds, with a 95% paired bootstrap interval.

    Both methods are scored on the same resample of compounds each time (so the interval is
    of the difference, not of two independent figures); resamples where either metric is
    undefined (one class, constant values) are dropped.

    Parameters
    ----------
    labels
        What the methods are scored against (potency, or 0/1).
    a, b
        Scores of the two methods (higher = better), aligned with ``labels``.
    metric
        ``metric(labels, score) -> float`` (e.g. Kendall τ, AUROC).
    samples, seed
        Number of resamples and their seed.

    Returns
    -------
    dict
        ``difference`` (on all compounds), ``low``, ``high`` (2.5 and 97.5 percentiles;
        NaN without valid resamples), ``samples`` (valid resamples).
    """
    labels, a, b = (np.asarray(v, dtype=np.float64) for v in (labels, a, b))
    difference = metric(labels, a) - metric(labels, b)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples if len(labels) >= 2 else 0):
        pick = rng.integers(0, len(labels), size=len(labels))
        d = metric(labels[pick], a[pick]) - metric(labels[pick], b[pick])
        if np.isfinite(d):
            diffs.append(d)
    low, high = (float(np.percentile(diffs, q)) for q in (2.5, 97.5)) if diffs else (math.nan, math.nan)
    return dict(difference=float(difference), low=low, high=high, samples=len(diffs))


def _tau(labels: np.ndarray, score: np.ndarray) -> float:
    return kendall_tau(score, labels)


def _rho(labels: np.ndarray, score: np.ndarray) -> float:
    return spearman(score, labels)


# --------------------------------------------------------------------------- the whole training


@dataclass
class PairTrainResult:
    """What :func:`train_pair_model` gives back: the ensemble to save, its card, the failure rows."""

    ensemble: PairEnsemble
    card: dict[str, Any]
    failures: list[dict]


def _split_train_section(train: Mapping[str, Any]) -> tuple[TrainSettings, PairAssaySettings, str | None, str | None]:
    """The ``train`` config section as (shared settings, pair settings, init_from, models_dir)."""
    section = dict(train)
    for key in ("name", "scorer"):
        section.pop(key, None)
    models_dir = section.pop("models_dir", None)
    init_from = section.pop("init_from", None)
    pair = settings_from_mapping(PairAssaySettings, section.pop("pair", None), "train.pair", strict=True)
    section.pop("architecture", None)  # the complex-graph GNN's hyperparameters
    return settings_from_mapping(TrainSettings, section, "train", strict=True), pair, init_from, models_dir


def train_pair_model(
    graphs: Sequence[Any],
    schema: PairGraphSchema,
    assay: Assay | str | os.PathLike | pd.DataFrame,
    train: Mapping[str, Any],
    name: str = "model",
    init: PairModel | None = None,
    sources: Mapping[str, Any] | None = None,
) -> PairTrainResult:
    """Fit a pair ensemble on assay labels (fine-tuning ``init`` if given) and evaluate it beside its baselines.

    Parameters
    ----------
    graphs
        Pair graphs (``Data`` with ``id``, ``pose``, ``source``) of the assay compounds, any
        number of poses each (the best is used, :func:`best_poses`).
    schema
        Their schema (the pretrained model's when fine-tuning).
    assay
        An :class:`~pipeline.scoring.assay.Assay` or anything :func:`read_assay` reads.
    train
        The ``train`` config section (``n_models``, ``split``, ``fractions``, ``seed``,
        ``bootstrap``, ``task``, ``active_threshold``, the ligand baseline's settings, ``pair``).
    name
        Model name for the card.
    init
        The pretrained model to fine-tune (:func:`~pipeline.scoring.pair_folder.load_pair_model`);
        ``None``: from scratch.
    sources
        Extra provenance for the card's ``data`` entry (file names, ``init_from``...).

    Returns
    -------
    PairTrainResult

    Raises
    ------
    AssayError
        Fewer than 3 compounds with both a label and a graph.
    ConfigError
        A split without training or validation compounds; ``train.pair.model`` keys that
        differ from the pretrained model's.
    ModelError
        When ``init``'s schema is not ``schema``.
    """
    start = time.perf_counter()
    settings, pair, _, _ = _split_train_section(train)
    if not isinstance(assay, Assay):
        assay = read_assay(assay, settings.task)
    if init is not None and init.schema != schema:
        raise ModelError(
            f"the pair graphs were built with another schema than the train.init_from model '{init.name}' reads "
            f"(differing: {schema_differences(schema, init.schema)}); featurize the run again with this config"
        )
    config = pair.model_config(init.members[0].config if init is not None else None, init.name if init else "")
    by_id = best_poses(graphs, schema)
    table = assay.table.set_index("id")
    known = [cid for cid in assay.table["id"] if cid in by_id]
    failures = list(assay.failures) + [
        dict(id=cid, stage=STAGE, reason="no pair graph for this compound (not docked or not featurized?)")
        for cid in assay.table["id"]
        if cid not in by_id
    ]
    if len(known) < 3:
        raise AssayError(
            f"only {len(known)} compounds have both an assay label and a pair graph; at least 3 are needed"
        )
    if len(by_id) > len(known):
        log.info("%d compounds have pair graphs but no assay label and are not used", len(by_id) - len(known))
    compounds = table.loc[known, ["smiles", "label"]].copy()
    task = assay.task
    labels = compounds["label"].to_numpy(dtype=np.float64)
    truth = potency(labels, pair.value_units) if task == "regression" else labels  # higher = better
    targets = affinity_targets(labels, pair.value_units) if task == "regression" else None
    examples = {
        cid: PairExample(
            by_id[cid],
            SERIES,
            SERIES,
            dg=float(targets[i]) if targets is not None else None,
            active=int(labels[i] > 0.5) if targets is None else None,
        )
        for i, cid in enumerate(known)
    }
    split = split_compounds(known, compounds["smiles"].tolist(), settings.split, settings.fractions, settings.seed)
    if not split["train"] or not split["val"]:
        raise ConfigError(
            f"the {settings.split} split of {len(known)} compounds left no training or validation compound; "
            "use more compounds, other train.fractions, or train.split: random"
        )

    fits: dict[str, FittedPair] = {}
    with torch_threads(settings.threads):
        scratch_settings = pair.train_settings(False, settings.n_models, settings.seed)
        if init is not None:
            tuned_settings = pair.train_settings(True, settings.n_models, settings.seed)
            fits["fine_tuned"] = fit_pair_ensemble(
                examples,
                split["train"],
                split["val"],
                schema,
                config,
                tuned_settings,
                settings,
                init,
                "fine-tune pair members",
            )
        fits["from_scratch"] = fit_pair_ensemble(
            examples,
            split["train"],
            split["val"],
            schema,
            config,
            scratch_settings,
            settings,
            None,
            "train pair members",
        )
        ligand = None
        if settings.ligand_baseline:
            baseline_compounds = compounds.assign(label=truth)  # trained on the higher-is-better labels
            ligand = fit_ligand_baseline(baseline_compounds, split["train"], split["val"], settings, task)

        def scores(keys: Sequence[str]) -> dict[str, np.ndarray]:
            """Per method, higher = more potent (or more likely active), for the compounds ``keys``."""
            part = [by_id[k] for k in keys]
            out = {method: -fit.ensemble.predict(part)[0] for method, fit in fits.items()}
            if init is not None:
                out["pretrained"] = -init.predict(part)["score"].mean(0)
            out["vina"] = -np.array([_global(g, schema, "vina_score") for g in part])
            out["heavy_atoms"] = np.array([_global(g, schema, "n_heavy") for g in part])
            if ligand is not None:
                out["ligand_only"] = predict_ligand_baseline(
                    ligand, compounds.loc[list(keys), "smiles"], settings, task
                )
            return {m: out[m] for m in METHODS if m in out}

        truth_of = dict(zip(known, truth))
        metrics, comparison = {}, {}
        for part in ("val", "test"):
            keys = split[part]
            if not keys:
                continue
            y = np.array([truth_of[k] for k in keys])
            by_method = scores(keys)
            metrics[part] = {
                m: heldout_metrics(y, s, task, settings.active_threshold if task == "regression" else None)
                for m, s in by_method.items()
            }
            if part == "test" and pair.bootstrap_samples > 0:
                comparison[part] = _comparisons(y, by_method, task, pair.bootstrap_samples, settings.seed)

    saved = "fine_tuned" if init is not None else "from_scratch"
    card = dict(
        name=name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=task,
        model_method=saved,
        score=dict(
            meaning=SCORE_MEANING
            + (
                f"; {'fine-tuned from ' + init.name if init is not None else 'trained from scratch'} on assay "
                + ("values" if task == "regression" else "active labels")
            )
        ),
        data=dict(
            fingerprint=data_fingerprint(compounds),
            n_compounds=len(known),
            n_graphs=len(graphs),
            pose_choice="the lowest Vina score (graph global vina_score) of each compound's poses",
            labels=(
                dict(n_active=int((labels > 0.5).sum()), n_inactive=int((labels <= 0.5).sum()))
                if task == "classification"
                else dict(
                    mean=float(labels.mean()), std=float(labels.std()), min=float(labels.min()), max=float(labels.max())
                )
            ),
            value_units=pair.value_units if task == "regression" else None,
            target=_target_text(task, pair.value_units),
            n_assay_rows_rejected=len(assay.failures),
            n_assay_compounds_without_graph=len(failures) - len(assay.failures),
            **dict(sources or {}),
        ),
        split=dict(
            method=settings.split,
            seed=settings.seed,
            fractions=list(settings.fractions),
            compounds={p: len(v) for p, v in split.items()},
            ids={p: list(v) for p, v in split.items() if p != "train"},
        ),
        training=dict(
            n_models=settings.n_models,
            seed=settings.seed,
            bootstrap=settings.bootstrap,
            active_threshold=settings.active_threshold,
            pair=pair.to_dict(),
            fine_tuned=fits["fine_tuned"].ensemble.settings.to_dict() if "fine_tuned" in fits else None,
            from_scratch=scratch_settings.to_dict(),
            members=fits[saved].members,
            from_scratch_members=fits["from_scratch"].members if saved != "from_scratch" else None,
            ligand_baseline=dict(
                (k, v)
                for k, v in settings.to_dict().items()
                if k
                in (
                    "max_epochs",
                    "patience",
                    "batch_size",
                    "learning_rate",
                    "weight_decay",
                    "fingerprint_radius",
                    "fingerprint_bits",
                    "ligand_hidden",
                )
            )
            if ligand is not None
            else None,
        ),
        metrics=metrics,
        baselines=dict(
            fine_tuned=f"the pretrained model '{init.name}' fine-tuned on the training compounds (the saved model)"
            if init is not None
            else None,
            from_scratch="the same architecture trained from Vina's weights on the same split, seeds and resamples"
            + (" (the saved model)" if init is None else ""),
            pretrained=f"the train.init_from model '{init.name}' as it was, not fine-tuned"
            if init is not None
            else None,
            vina="Vina's score of the pose (the untrained pair model), negated",
            heavy_atoms="ligand heavy-atom count (bigger = more potent)",
            ligand_only=(
                f"Morgan fingerprint (radius {settings.fingerprint_radius}, {settings.fingerprint_bits} bits) -> "
                f"MLP({settings.ligand_hidden}), same split, seeds and resamples"
                if ligand is not None
                else "not trained"
            ),
        ),
        comparison=dict(
            comparison,
            method="paired bootstrap over the held-out compounds: 2.5 and 97.5 percentiles of the difference",
            samples=pair.bootstrap_samples,
            seed=settings.seed,
        ),
        training_seconds=round(time.perf_counter() - start, 1),
    )
    return PairTrainResult(fits[saved].ensemble, card, failures)


def _target_text(task: str, units: str) -> str:
    if task == "classification":
        return "active 1/0: screening cross-entropy on logit, early stopping on validation AUROC"
    return {
        "p_molar": f"ΔG = -{RT_LN10:.4f} kcal/mol x value (a -log10 molar potency at 298.15 K)",
        "kcal_per_mol": "ΔG = value (kcal/mol, lower = tighter)",
        "rank_only": "-value, its order only (no absolute term)",
    }[units]


def _comparisons(
    y: np.ndarray, by_method: Mapping[str, np.ndarray], task: str, samples: int, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """The paired bootstrap differences of the saved model against from-scratch and Vina."""
    model = "fine_tuned" if "fine_tuned" in by_method else "from_scratch"
    rivals = [m for m in ("from_scratch", "vina") if m != model]
    measures = {"auroc": auroc} if task == "classification" else {"kendall_tau": _tau, "spearman": _rho}
    return {
        f"{model} - {rival}": {
            name: paired_bootstrap(y, by_method[model], by_method[rival], fn, samples, seed)
            for name, fn in measures.items()
        }
        for rival in rivals
    }


def train_pair_from_files(
    graph_files: Sequence[str | os.PathLike],
    assay_path: str | os.PathLike,
    model_dir: str | os.PathLike,
    train: Mapping[str, Any],
    failures_csv: str | os.PathLike | None = None,
    pockets: TrainingPockets | None = None,
) -> TrainSummary:
    """Train (or fine-tune) a pair model from a run's graph files and an assay table; write ``model_dir``.

    Parameters
    ----------
    graph_files
        The run's pair-graph files (:func:`pipeline.pair_graphs.save_pair_graphs`).
    assay_path
        Assay table (``id, smiles, value`` or ``id, smiles, active``).
    model_dir
        Output folder, ``models/<name>``; replaced atomically if it exists.
    train
        The ``train`` config section; ``init_from`` (a pair model name under ``models_dir``, or a
        folder) is fine-tuned, ``None`` trains from scratch.
    failures_csv
        Where to write the failure rows (``id, stage, reason``, stage ``assay``).
    pockets
        The pocket(s) of the run's receptor (:func:`pipeline.scoring.domain.run_pocket`), recorded
        in the card as the model's training pockets, with those of ``init_from`` when fine-tuning
        (the model has seen both); ``None``: only ``init_from``'s, if any.

    Returns
    -------
    TrainSummary

    Raises
    ------
    ModelError
        ``init_from`` missing, not a pair model, the model being written, or of another
        pair-graph schema than the run's graphs.
    ConfigError, AssayError, GraphError
        See :func:`train_pair_model` and :func:`load_run_pair_graphs`.
    """
    start = time.perf_counter()
    _, _, init_from, models_dir = _split_train_section(train)
    init, init_info = None, None
    if init_from:
        folder, _ = pretrained_pair_card(init_from, models_dir)
        if folder.resolve() == Path(model_dir).resolve():
            raise ConfigError(
                f"train.init_from '{init_from}' is the model this training writes ({model_dir}); "
                "give the fine-tuned model another train.name"
            )
        init = load_pair_model(folder)
        init_info = dict(
            name=init.name,
            folder=str(folder),
            ensemble_sha256=init.card["ensemble"]["sha256"],
            data_fingerprint=(init.card.get("data") or {}).get("fingerprint"),
        )
    schema, graphs = load_run_pair_graphs(
        graph_files, init.schema if init is not None else None, init.name if init is not None else None
    )
    sources = dict(assay=str(assay_path), graph_files=[Path(p).name for p in graph_files])
    result = train_pair_model(graphs, schema, assay_path, train, Path(model_dir).name, init, sources)
    card = dict(result.card, init_from=init_info)
    inherited = init.training_pockets if init is not None else None
    pockets = pockets.merged(inherited) if pockets is not None else inherited
    save_pair_model(result.ensemble, model_dir, card, pockets=pockets)
    if failures_csv is not None:
        write_failures(sorted(result.failures, key=lambda f: (f["id"], f["reason"])), failures_csv)
    return TrainSummary(
        model_dir=str(model_dir),
        compounds=card["data"]["n_compounds"],
        graphs=card["data"]["n_graphs"],
        failed=len(result.failures),
        metrics=card["metrics"],
        seconds=time.perf_counter() - start,
    )
