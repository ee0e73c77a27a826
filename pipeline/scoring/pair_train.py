"""Training the pair-term scorer on many proteins: per-series ranking, a weak absolute term, screening labels.

The pair model (:mod:`pipeline.scoring.pair_model`) starts as Vina. Training moves it only
where the data say so:

* **affinity** examples (a posed ligand of a congeneric series with a measured ΔG): a
  logistic ranking loss over the pairs of one series (:func:`pairwise_ranking_loss`; the
  series' own offset does not matter, so series measured in different assays mix), plus a
  weak Huber term pulling the score towards the measured ΔG in kcal/mol (it keeps the
  scale of the score physical, so series can be compared at all);
* **screening** examples (a docked active or decoy of a target, label 1/0): binary
  cross-entropy on the model's ``logit``, which is a monotone map of the score, so a
  screening label too can only be learned through protein-ligand pairs.

Batches are made of whole series (and whole screening groups cut to a size), so every batch
has ranking pairs. Each member of an ensemble holds out a different random share of the
*protein groups* of its training data for early stopping on mean per-series Kendall τ:
the members differ in data and seed, and their spread is the ensemble's uncertainty.

Nothing here knows about folds or baselines: cross-validation grouped by protein lives in
the benchmark (``benchmarks/scoring_cv.py``); this module fits and predicts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau
from torch.nn import functional as F
from torch_geometric.data import Batch

from ..pair_graphs import PairGraphSchema
from .pair_model import PairModelConfig, PairScorer, pairwise_ranking_loss

#: Format tag of a saved pair ensemble.
ENSEMBLE_FORMAT = "vscreen-pair-ensemble/1"


@dataclass(frozen=True)
class PairTrainSettings:
    """How a pair ensemble is fitted.

    Attributes
    ----------
    members
        Ensemble size (different seeds and early-stopping groups).
    epochs
        Passes over the training series at most.
    patience
        Epochs without a better validation τ before a member stops.
    lr, weight_decay
        AdamW.
    series_per_batch
        Affinity series (or screening groups) per optimizer step.
    screening_group_size
        Screening examples of one target per group (a random cut each epoch).
    absolute_weight
        Weight of the Huber term on (score − ΔG), kcal/mol.
    screening_weight
        Weight of the screening cross-entropy.
    temperature
        Score scale (kcal/mol) of the ranking logistic.
    validation_fraction
        Share of the training protein groups each member holds out for early stopping.
    seed
        Base seed; member k uses ``seed + k``.
    """

    members: int = 5
    epochs: int = 40
    patience: int = 6
    lr: float = 1e-3
    weight_decay: float = 1e-4
    series_per_batch: int = 8
    screening_group_size: int = 32
    absolute_weight: float = 0.1
    screening_weight: float = 1.0
    temperature: float = 1.0
    validation_fraction: float = 0.15
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class PairExample:
    """One posed complex with what is known about it.

    Attributes
    ----------
    graph
        A ``torch_geometric.data.Data`` from :func:`pipeline.pair_graphs.to_data` or
        :func:`~pipeline.pair_graphs.load_pair_graphs`.
    group
        The series (affinity) or the target (screening) it belongs to: ranking pairs and
        batches never cross groups.
    protein
        Its protein group (isoforms together): early stopping holds out whole proteins.
    dg
        Measured ΔG (kcal/mol, lower binds tighter), or None.
    active
        Screening label (1 active, 0 decoy), or None.
    """

    graph: Any
    group: str
    protein: str
    dg: float | None = None
    active: int | None = None


@dataclass
class MemberHistory:
    """Per epoch: training loss and validation mean τ of one member; the epoch kept."""

    loss: list[float] = field(default_factory=list)
    validation_tau: list[float] = field(default_factory=list)
    best_epoch: int = -1


def mean_series_tau(scores: np.ndarray, dg: np.ndarray, groups: Sequence[str], min_size: int = 3) -> float:
    """Mean over groups of Kendall τ between score and ΔG (both lower = better); NaN if no group qualifies."""
    groups = np.asarray(groups)
    taus = []
    for g in np.unique(groups):
        sel = (groups == g) & np.isfinite(dg) & np.isfinite(scores)
        if sel.sum() >= min_size and np.ptp(dg[sel]) > 0:
            tau = kendalltau(scores[sel], dg[sel]).statistic
            if np.isfinite(tau):
                taus.append(tau)
    return float(np.mean(taus)) if taus else float("nan")


def _batches(examples: Sequence[PairExample], settings: PairTrainSettings, rng: np.random.Generator) -> list[list[int]]:
    """Example indices per optimizer step: whole series (screening groups cut to size), shuffled."""
    by_group: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_group.setdefault(ex.group, []).append(i)
    units = []
    for members in by_group.values():
        members = list(rng.permutation(members))
        if all(examples[i].dg is None for i in members):  # screening: several cuts of one target
            size = settings.screening_group_size
            units += [members[k : k + size] for k in range(0, len(members), size)]
        else:
            units.append(members)
    order = rng.permutation(len(units))
    step = settings.series_per_batch
    return [sum((units[u] for u in order[k : k + step]), []) for k in range(0, len(order), step)]


def _loss(model: PairScorer, examples: Sequence[PairExample], settings: PairTrainSettings) -> torch.Tensor:
    batch = Batch.from_data_list([ex.graph for ex in examples])
    out = model(batch)
    score = out["score"]
    loss = score.sum() * 0.0
    affinity = [i for i, ex in enumerate(examples) if ex.dg is not None]
    if affinity:
        idx = torch.as_tensor(affinity)
        dg = torch.tensor([examples[i].dg for i in affinity], dtype=score.dtype)
        groups = [examples[i].group for i in affinity]
        loss = loss + pairwise_ranking_loss(score[idx], dg, groups, settings.temperature)
        loss = loss + settings.absolute_weight * F.huber_loss(score[idx], dg, delta=1.0)
    screening = [i for i, ex in enumerate(examples) if ex.active is not None and ex.dg is None]
    if screening:
        idx = torch.as_tensor(screening)
        labels = torch.tensor([float(examples[i].active) for i in screening], dtype=score.dtype)
        loss = loss + settings.screening_weight * F.binary_cross_entropy_with_logits(out["logit"][idx], labels)
    return loss


@torch.no_grad()
def predict_scores(model: PairScorer, graphs: Sequence[Any], batch_size: int = 64) -> np.ndarray:
    """Scores (kcal/mol-like, lower = better) of graphs, in order."""
    model.eval()
    out = [
        model(Batch.from_data_list(list(graphs[k : k + batch_size])))["score"]
        for k in range(0, len(graphs), batch_size)
    ]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def _split_validation(
    examples: Sequence[PairExample], fraction: float, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    proteins = sorted({ex.protein for ex in examples})
    n_val = max(1, round(fraction * len(proteins))) if len(proteins) > 1 and fraction > 0 else 0
    held = set(rng.permutation(proteins)[:n_val].tolist())
    train = [i for i, ex in enumerate(examples) if ex.protein not in held]
    val = [i for i, ex in enumerate(examples) if ex.protein in held and ex.dg is not None]
    return train, val


def fit_member(
    examples: Sequence[PairExample],
    schema: PairGraphSchema,
    config: PairModelConfig,
    settings: PairTrainSettings,
    seed: int,
) -> tuple[PairScorer, MemberHistory]:
    """Fit one pair model, early-stopped on held-out protein groups.

    Parameters
    ----------
    examples
        Training complexes (affinity and/or screening).
    schema, config
        Graph layout and hyperparameters of the model.
    settings
        Optimizer, batching, loss weights.
    seed
        Seeds the model's initialization, the batch order and the validation groups.

    Returns
    -------
    model, history
        The model at its best validation epoch (the last epoch if there is no validation
        affinity data) and the per-epoch record.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train, val = _split_validation(examples, settings.validation_fraction, rng)
    model = PairScorer(schema, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    history = MemberHistory()
    best_state, best_tau, waited = copy.deepcopy(model.state_dict()), -math.inf, 0
    train_examples = [examples[i] for i in train]
    val_graphs = [examples[i].graph for i in val]
    val_dg = np.array([examples[i].dg for i in val], dtype=float)
    val_groups = [examples[i].group for i in val]
    for epoch in range(settings.epochs):
        model.train()
        losses = []
        for batch in _batches(train_examples, settings, rng):
            optimizer.zero_grad()
            loss = _loss(model, [train_examples[i] for i in batch], settings)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            losses.append(float(loss.detach()))
        history.loss.append(float(np.mean(losses)) if losses else float("nan"))
        tau = mean_series_tau(predict_scores(model, val_graphs), val_dg, val_groups) if val else float("nan")
        history.validation_tau.append(tau)
        if not val:
            best_state, history.best_epoch = copy.deepcopy(model.state_dict()), epoch
            continue
        if np.isfinite(tau) and tau > best_tau:
            best_state, best_tau, history.best_epoch, waited = copy.deepcopy(model.state_dict()), tau, epoch, 0
        else:
            waited += 1
            if waited >= settings.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


@dataclass
class PairEnsemble:
    """K fitted pair models; the score is their mean, the spread their standard deviation."""

    members: list[PairScorer]
    histories: list[MemberHistory]
    settings: PairTrainSettings

    def predict(self, graphs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean score, spread)`` per graph (kcal/mol-like; lower = better)."""
        scores = np.stack([predict_scores(m, graphs) for m in self.members])
        return scores.mean(axis=0), scores.std(axis=0)


def fit_ensemble(
    examples: Sequence[PairExample],
    schema: PairGraphSchema,
    config: PairModelConfig | None = None,
    settings: PairTrainSettings | None = None,
) -> PairEnsemble:
    """``settings.members`` members by :func:`fit_member`, seeds ``settings.seed + k`` (defaults when None)."""
    config, settings = config or PairModelConfig(), settings or PairTrainSettings()
    fitted = [fit_member(examples, schema, config, settings, settings.seed + k) for k in range(settings.members)]
    return PairEnsemble([m for m, _ in fitted], [h for _, h in fitted], settings)


def save_pair_ensemble(path: str | Path, ensemble: PairEnsemble, card: dict[str, Any] | None = None) -> None:
    """One file holding every member's weights, the schema, config, settings and a card (loads weights-only)."""
    first = ensemble.members[0]
    payload = dict(
        format=ENSEMBLE_FORMAT,
        schema=first.schema.to_dict(),
        config=first.config.to_dict(),
        settings=ensemble.settings.to_dict(),
        card=card or {},
        members=[m.state_dict() for m in ensemble.members],
        histories=[asdict(h) for h in ensemble.histories],
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_pair_ensemble(path: str | Path) -> tuple[PairEnsemble, dict[str, Any]]:
    """Inverse of :func:`save_pair_ensemble`: the ensemble and its card."""
    payload = torch.load(path, weights_only=True)
    if payload.get("format") != ENSEMBLE_FORMAT:
        raise ValueError(f"'{path}' is not a pair ensemble (format {payload.get('format')!r})")
    schema = PairGraphSchema.from_dict(payload["schema"])
    config = PairModelConfig.from_dict(payload["config"])
    members = []
    for state in payload["members"]:
        model = PairScorer(schema, config)
        model.load_state_dict(state)
        model.eval()
        members.append(model)
    histories = [MemberHistory(**h) for h in payload["histories"]]
    return PairEnsemble(members, histories, PairTrainSettings(**payload["settings"])), payload["card"]
