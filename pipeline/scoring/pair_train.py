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
the benchmark (``benchmarks/scoring_cv.py``), and training on one assay table (one series,
a scaffold split, fine-tuning a pretrained model) in :mod:`pipeline.scoring.pair_finetune`,
which passes its own early-stopping compounds (``validation``) and starting weights
(``init_state``) to :func:`fit_member`; this module fits and predicts.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau
from torch import Tensor
from torch.nn import functional as F
from torch_geometric.data import Batch

from ..config import schema_field
from ..pair_graphs import PairGraphSchema
from .metrics import auroc
from .pair_model import PairModelConfig, PairScorer, pairwise_ranking_loss

log = logging.getLogger(__name__)

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
        Weight of the Huber term on (score − ΔG), kcal/mol. Off by default: pulling the score
        to ΔG's scale fights the ranking (protein-grouped CV over 79 Uni-FEP series, 2 members:
        mean τ 0.248 at weight 0.1, 0.281 at 0; ``benchmarks/scoring_cv.py --absolute-weight``).
    screening_weight
        Weight of the screening cross-entropy.
    temperature
        Score scale (kcal/mol) of the ranking logistic.
    validation_fraction
        Share of the training protein groups each member holds out for early stopping.
    seed
        Base seed; member k uses ``seed + k``.
    global_iterations
        L-BFGS iterations of a first phase that fits only the global parameters (Vina term
        scales, rotatable-bond weight, the logit map; :func:`fit_global_parameters`) on the
        whole training set at once, the per-pair networks held as they are (zero in a new
        model, so it is Vina re-weighted). The full model is then trained and early-stopped
        against that start: where the networks do not improve on the validation proteins,
        the member stays the re-weighted Vina. 0: no such phase.
    global_lr_factor
        Learning-rate multiplier of the global parameters in the full training (they also
        get no weight decay): a handful of numbers that the whole training set informs,
        unlike the per-pair networks.
    global_ridge
        Ridge penalty on the log term scales in the global phase (keeps a term that the
        training set barely informs near Vina's weight).
    affinity_group_size
        Affinity series with more examples than this are cut at random, each epoch, into
        groups of this size (as screening groups are): one assay table is one series, and
        whole it would make one optimizer step per epoch. ``None``: series stay whole.
    """

    members: int = schema_field("train", "n_models")
    epochs: int = 40
    patience: int = 6
    lr: float = 1e-3
    weight_decay: float = schema_field("train.pair", "weight_decay")
    series_per_batch: int = 8
    screening_group_size: int = 32
    absolute_weight: float = schema_field("train.pair", "absolute_weight")
    screening_weight: float = schema_field("train.pair", "screening_weight")
    temperature: float = schema_field("train.pair", "temperature")
    validation_fraction: float = 0.15
    seed: int = schema_field("train", "seed")
    affinity_group_size: int | None = None
    global_iterations: int = 50
    global_lr_factor: float = 10.0
    global_ridge: float = 0.0

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
    """Per epoch: training loss and validation criterion of one member; the epoch kept.

    ``validation_tau`` holds the early-stopping criterion, named by ``validation_metric``:
    mean per-series Kendall τ (the default), or, for explicit validation compounds
    (:func:`fit_member`'s ``validation``), ``auroc`` for screening labels and
    ``-loss`` where neither is defined (e.g. one validation compound).
    ``global_loss`` is the training loss of the global phase before and after its fit
    (:attr:`PairTrainSettings.global_iterations`), ``start_validation`` the criterion of the
    model the full training starts from; ``best_epoch`` -1 means that starting model was
    kept (no epoch of the full training beat it).
    """

    loss: list[float] = field(default_factory=list)
    validation_tau: list[float] = field(default_factory=list)
    best_epoch: int = -1
    validation_metric: str = "mean_series_tau"
    global_loss: list[float] = field(default_factory=list)
    start_validation: float = float("nan")


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
        elif settings.affinity_group_size and len(members) > settings.affinity_group_size:
            # a random cut of a big series: its ranking pairs are a fresh random subset each epoch
            size = settings.affinity_group_size
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


def _explicit_validation(
    examples: Sequence[PairExample], settings: PairTrainSettings
) -> tuple[str, Callable[[PairScorer], float]]:
    """The early-stopping criterion on given validation examples: its name and a function of the model.

    Mean per-series τ (series of 2 count: validation sets of one assay are small) when they
    have ΔG, else AUROC of the score (lower = active) for screening labels; where that is
    undefined on these examples (one compound, one value, one class) minus the loss.
    """
    graphs = [ex.graph for ex in examples]
    dg = np.array([np.nan if ex.dg is None else ex.dg for ex in examples], dtype=float)
    groups = [ex.group for ex in examples]
    labels = np.array([-1 if ex.active is None else ex.active for ex in examples], dtype=float)
    if np.isfinite(mean_series_tau(dg, dg, groups, min_size=2)):
        return "mean_series_tau", lambda m: mean_series_tau(predict_scores(m, graphs), dg, groups, min_size=2)
    known = labels >= 0
    if known.any() and 0 < labels[known].sum() < known.sum():
        return "auroc", lambda m: auroc(labels[known], -predict_scores(m, graphs)[known])

    def minus_loss(m: PairScorer) -> float:
        m.eval()
        with torch.no_grad():
            return -float(_loss(m, list(examples), settings))

    return "-loss", minus_loss


def global_parameter_names(model: PairScorer) -> list[str]:
    """Names of the model's global (not per-pair) parameters: the 0-d and per-term ones, outside every submodule."""
    return [name for name, _ in model.named_parameters(recurse=False)]


@torch.no_grad()
def _term_parts(
    model: PairScorer, examples: Sequence[PairExample], batch_size: int = 32
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per example, the pieces of the score that the global parameters multiply.

    With unit term scales, a pair's energy is :math:`\sum_k a_{ijk} + \varepsilon_{ij} c`
    where :math:`a_{ijk} = (w_k + \Delta w_k) t_k`, and a term scale :math:`s_k` multiplies
    :math:`a_{ijk}` only (:math:`\Delta w_k` is proportional to :math:`|s_k w_k|`). So per
    graph: ``A`` (B×K, the sums of :math:`a`), ``R`` (B, the residual sum) and ``n_rot`` (B):
    the score is :math:`(A s + R) / (1 + w_\text{rot} N_\text{rot})`.
    """
    saved = None if model.log_term_scale is None else model.log_term_scale.detach().clone()
    if saved is not None:
        model.log_term_scale.zero_()
    model.eval()
    parts_a, parts_r, rotors = [], [], []
    try:
        for k in range(0, len(examples), batch_size):
            batch = Batch.from_data_list([ex.graph for ex in examples[k : k + batch_size]])
            out = model(batch)
            n_graphs = out["score"].shape[0]
            dtype = out["score"].dtype
            weighted = out["pair_weights"] * batch.pair_terms.to(dtype)
            a = torch.zeros(n_graphs, weighted.shape[1], dtype=dtype).index_add(0, out["pair_graph"], weighted)
            residual = out["pair_energy"] - weighted.sum(dim=-1)
            r = torch.zeros(n_graphs, dtype=dtype).index_add(0, out["pair_graph"], residual)
            parts_a.append(a)
            parts_r.append(r)
            rotors.append(batch.globals.to(dtype).reshape(n_graphs, -1)[:, model.n_rot_column])
    finally:
        if saved is not None:
            model.log_term_scale.copy_(saved)
    return torch.cat(parts_a), torch.cat(parts_r), torch.cat(rotors)


def fit_global_parameters(
    model: PairScorer, examples: Sequence[PairExample], settings: PairTrainSettings
) -> list[float]:
    """Fit the model's global parameters on all ``examples`` at once (L-BFGS), the per-pair networks held fixed.

    The loss is evaluated exactly on the whole set (no mini-batches): the pairwise ranking
    loss within each series, each series weighted equally (as the evaluation's mean
    per-series τ weights them), plus the screening term, plus
    :attr:`PairTrainSettings.global_ridge` on the log term scales. Not the absolute (Huber)
    term of the full training: pulling the score to ΔG's kcal/mol scale fights the ranking
    (protein-fold CV on 74 Uni-FEP series: mean τ 0.243 with it at weight 0.1, 0.276
    without; Vina 0.168).
    Cheap: the per-pair parts are computed once (:func:`_term_parts`), after which the score
    is a closed form of the few global parameters.

    Returns
    -------
    list of float
        The loss before and after the fit.
    """
    names = set(global_parameter_names(model))
    params = [p for n, p in model.named_parameters() if n in names]
    if not examples or not params:
        return []
    parts_a, parts_r, n_rot = _term_parts(model, examples)
    affinity = torch.as_tensor([i for i, ex in enumerate(examples) if ex.dg is not None], dtype=torch.long)
    dg = torch.tensor([examples[int(i)].dg for i in affinity], dtype=parts_a.dtype)
    groups = [examples[int(i)].group for i in affinity]
    screening = torch.as_tensor(
        [i for i, ex in enumerate(examples) if ex.active is not None and ex.dg is None], dtype=torch.long
    )
    labels = torch.tensor([float(examples[int(i)].active) for i in screening], dtype=parts_a.dtype)

    def loss_fn() -> Tensor:
        scales = model.term_scales()
        inter = parts_a @ scales if scales is not None else parts_a.sum(dim=-1)
        score = (inter + parts_r) / (1.0 + model.rotor_weight() * n_rot)
        loss = score.sum() * 0.0
        if len(affinity):
            loss = loss + pairwise_ranking_loss(score[affinity], dg, groups, settings.temperature, groups_equal=True)
        if len(screening):
            logit = model.logit_from_score(score[screening])
            loss = loss + settings.screening_weight * F.binary_cross_entropy_with_logits(logit, labels)
        if model.log_term_scale is not None:
            loss = loss + settings.global_ridge * (model.log_term_scale**2).sum()
        return loss

    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=settings.global_iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    before = float(loss_fn().detach())
    optimizer.step(closure)
    after = float(loss_fn().detach())
    log.info("pair global parameters: loss %.4f -> %.4f (%d training examples)", before, after, len(examples))
    return [before, after]


def _optimizer(model: PairScorer, settings: PairTrainSettings) -> torch.optim.Optimizer:
    """AdamW with the global parameters in their own group (faster, no weight decay); see :class:`PairTrainSettings`."""
    names = set(global_parameter_names(model))
    own = [p for n, p in model.named_parameters() if n in names]
    rest = [p for n, p in model.named_parameters() if n not in names]
    groups = [dict(params=rest, weight_decay=settings.weight_decay)]
    if own:
        groups.append(dict(params=own, weight_decay=0.0, lr=settings.lr * settings.global_lr_factor))
    return torch.optim.AdamW(groups, lr=settings.lr)


def _train_epoch(
    model: PairScorer,
    examples: Sequence[PairExample],
    optimizer: torch.optim.Optimizer,
    settings: PairTrainSettings,
    rng: np.random.Generator,
) -> float:
    """One pass over ``examples`` in :func:`_batches`; the mean batch loss (NaN without batches)."""
    model.train()
    losses = []
    for batch in _batches(examples, settings, rng):
        optimizer.zero_grad()
        loss = _loss(model, [examples[i] for i in batch], settings)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


def fit_member(
    examples: Sequence[PairExample],
    schema: PairGraphSchema,
    config: PairModelConfig,
    settings: PairTrainSettings,
    seed: int,
    *,
    init_state: Mapping[str, torch.Tensor] | None = None,
    validation: Sequence[PairExample] | None = None,
) -> tuple[PairScorer, MemberHistory]:
    """Fit one pair model, early-stopped on held-out protein groups (or on given validation examples).

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
    init_state
        Starting weights (a ``state_dict`` of a :class:`PairScorer` of the same schema and
        config: fine-tuning); ``None``: the zero-initialized model, whose score is Vina's.
    validation
        Early-stopping examples chosen by the caller (e.g. a scaffold split's validation
        compounds); then every example of ``examples`` is trained on and no protein group is
        held out. The criterion is in :func:`_explicit_validation`.

    Returns
    -------
    model, history
        The model at its best validation epoch (the last epoch if there is no validation
        data) and the per-epoch record. With ``settings.epochs == 0`` the model is the
        starting one.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = PairScorer(schema, config)
    if init_state is not None:
        model.load_state_dict(init_state)
    history = MemberHistory()
    if validation is None:
        train, val = _split_validation(examples, settings.validation_fraction, rng)
        train_examples = [examples[i] for i in train]
        val_graphs = [examples[i].graph for i in val]
        val_dg = np.array([examples[i].dg for i in val], dtype=float)
        val_groups = [examples[i].group for i in val]

        def criterion(m: PairScorer) -> float:
            return mean_series_tau(predict_scores(m, val_graphs), val_dg, val_groups)

    else:
        train_examples, val = list(examples), list(validation)
        history.validation_metric, criterion = _explicit_validation(val, settings)
    if settings.epochs > 0 and settings.global_iterations > 0 and global_parameter_names(model):
        history.global_loss = fit_global_parameters(model, train_examples, settings)
    # the starting model (Vina, re-weighted by the global phase) is the one to beat
    history.start_validation = criterion(model) if val else float("nan")
    best_state, waited = copy.deepcopy(model.state_dict()), 0
    best_tau = history.start_validation if np.isfinite(history.start_validation) else -math.inf
    optimizer = _optimizer(model, settings)
    for epoch in range(settings.epochs):
        history.loss.append(_train_epoch(model, train_examples, optimizer, settings, rng))
        tau = criterion(model) if val else float("nan")
        history.validation_tau.append(tau)
        log.info(
            "pair member (seed %d) epoch %d/%d: training loss %.4f, validation %s %.4f",
            seed,
            epoch + 1,
            settings.epochs,
            history.loss[-1],
            history.validation_metric,
            tau,
        )
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
    return pair_ensemble_from_payload(torch.load(path, map_location="cpu", weights_only=True), path)


def pair_ensemble_from_payload(
    payload: Any, source: str | Path = "pair ensemble"
) -> tuple[PairEnsemble, dict[str, Any]]:
    """The ensemble and card of a payload :func:`save_pair_ensemble` wrote, already read with ``weights_only``.

    Parameters
    ----------
    payload
        What ``torch.load(..., weights_only=True)`` returned for the file.
    source
        Where it came from, for the error messages.

    Raises
    ------
    ValueError
        When the payload is not a pair ensemble (format tag), or its weights do not fit its
        schema and config (``load_state_dict`` errors are re-raised as ``RuntimeError``).
    """
    if not isinstance(payload, dict) or payload.get("format") != ENSEMBLE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"'{source}' is not a pair ensemble (format {found!r})")
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
