"""Training an ensemble scorer from complex graphs and an assay table.

Flow of :func:`train_from_files` (what ``vscreen train`` runs):

1. read the graphs (:func:`pipeline.graphs.load_graphs`; all files must share one schema)
   and the assay table (:func:`pipeline.scoring.assay.read_assay`); bad assay rows and
   assay compounds without any graph become failure rows (stage ``assay``);
2. split the compounds (not the poses) into train / validation / test, by Bemis-Murcko
   scaffold unless told otherwise (:mod:`pipeline.scoring.splits`);
3. train K members (:class:`~pipeline.scoring.model.ComplexScorer`), member ``k`` with
   seed ``seed + k`` on a bootstrap resample of the training compounds; Adam, early
   stopping on the validation loss with ``patience`` epochs, best-epoch weights kept;
4. train the ligand-only baseline the same way (same split, seeds and resamples) and
   evaluate the ensemble, the docking score alone and the ligand-only model on the
   same held-out compounds (:mod:`pipeline.scoring.baselines`);
5. write ``models/<name>/`` (:func:`pipeline.scoring.ensemble.save_ensemble`).

Every pose of a compound carries the compound's label in training; a compound's
held-out score is its best pose's (``pose_aggregation = max``) or the mean over poses.
Training is deterministic for a fixed seed on CPU: seeds are set per member inside
a forked RNG (the caller's random state is left alone) and PyTorch's deterministic
algorithms are switched on while training.

:func:`leave_one_target_out` answers "does it work on a protein it has never seen?":
train on all targets but one, test on the one left out, for every target.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ..config import schema_field
from ..graphs import DEFAULT_SCHEMA, GraphSchema, load_graphs
from ..io import write_failures
from ..progress import progress
from .assay import STAGE, Assay, read_assay
from .baselines import FingerprintMLP, docking_scores, linear_calibration, morgan_fingerprints
from .cards import TASKS, library_versions
from .ensemble import HEAD_OF_TASK, MODEL_FORMAT, Ensemble, save_ensemble
from .metrics import classification_metrics, regression_metrics
from .model import ComplexScorer, ModelConfig, count_parameters, global_statistics
from .runtime import resolve_device, torch_threads
from .splits import SPLITS, split_compounds

log = logging.getLogger(__name__)
METHODS = ("gnn", "docking", "ligand_only")


@dataclass(frozen=True)
class TrainSettings:
    """Settings of scorer training (config section ``train``).

    Attributes
    ----------
    task
        ``regression`` (assay ``value``) or ``classification`` (assay ``active``);
        ``None``: from the assay table's columns.
    n_models
        Ensemble members K.
    bootstrap
        Train each member on a bootstrap resample of the training compounds (when K > 1).
    split
        ``scaffold`` (Bemis-Murcko, default) or ``random``.
    fractions
        Train, validation and test fractions of the compounds.
    seed
        Seed of the split, the resamples and member ``k`` (``seed + k``).
    max_epochs, patience
        Epoch limit; stop when the validation loss has not improved for ``patience`` epochs.
    batch_size, learning_rate, weight_decay
        Adam mini-batches (graphs) and its settings.
    balance_classes
        Classification: weight actives by ``n_inactive / n_active`` in the loss.
    active_threshold
        Regression: values at or above it count as actives for AUROC, EF and BEDROC
        in the card (``None``: no ranking metrics).
    pose_aggregation
        ``max`` (best pose) or ``mean`` over a compound's poses for its held-out score.
    ligand_baseline
        Train and report the ligand-only fingerprint baseline.
    fingerprint_radius, fingerprint_bits, ligand_hidden
        The ligand-only model's Morgan fingerprint and hidden width.
    device
        ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
    threads
        PyTorch CPU threads while training (``None``: PyTorch's default); 1 is often
        fastest on a machine shared with other jobs.
    model
        Architecture hyperparameters.
    """

    task: str | None = schema_field("train", "task")
    n_models: int = schema_field("train", "n_models")
    bootstrap: bool = schema_field("train", "bootstrap")
    split: str = schema_field("train", "split")
    fractions: tuple[float, float, float] = schema_field("train", "fractions", convert=tuple)
    seed: int = schema_field("train", "seed")
    max_epochs: int = schema_field("train", "max_epochs")
    patience: int = schema_field("train", "patience")
    batch_size: int = schema_field("train", "batch_size")
    learning_rate: float = schema_field("train", "learning_rate")
    weight_decay: float = schema_field("train", "weight_decay")
    balance_classes: bool = schema_field("train", "balance_classes")
    active_threshold: float | None = schema_field("train", "active_threshold")
    pose_aggregation: str = schema_field("train", "pose_aggregation")
    ligand_baseline: bool = schema_field("train", "ligand_baseline")
    fingerprint_radius: int = 2
    fingerprint_bits: int = 2048
    ligand_hidden: int = 256
    device: str = schema_field("train", "device")
    threads: int | None = schema_field("train", "threads")
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        if isinstance(self.model, Mapping):
            object.__setattr__(self, "model", ModelConfig.from_dict(self.model))
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"train task must be one of {list(TASKS)}, got {self.task!r}")
        if self.split not in SPLITS:
            raise ValueError(f"train split must be one of {list(SPLITS)}, got {self.split!r}")
        if (
            len(self.fractions) != 3
            or min(self.fractions) < 0
            or not math.isclose(sum(self.fractions), 1.0, abs_tol=1e-6)
        ):
            raise ValueError(
                f"train fractions must be three non-negative numbers summing to 1, got {list(self.fractions)}"
            )
        if self.fractions[1] <= 0:
            raise ValueError("train fractions: the validation fraction must be positive (early stopping needs it)")
        if self.n_models < 1 or self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("train n_models, max_epochs, patience and batch_size must be at least 1")
        if self.pose_aggregation not in ("max", "mean"):
            raise ValueError(f"train pose_aggregation must be 'max' or 'mean', got {self.pose_aggregation!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"train device must be cpu, cuda or auto, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"train threads must be at least 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the model card (``model`` nested)."""
        out = {k: v for k, v in asdict(self).items() if k != "model"}
        out["fractions"] = list(self.fractions)
        out["model"] = self.model.to_dict()
        return out


# --------------------------------------------------------------------------- labelled graphs


@dataclass
class LabelledGraphs:
    """Graphs with the labels of their compounds.

    Attributes
    ----------
    graphs
        Shallow copies of the input graphs carrying ``y`` = ``[[value, active]]``
        (NaN where not known).
    keys
        Compound key of each graph (the id, prefixed with the target in
        :func:`leave_one_target_out`).
    compounds
        One row per compound with at least one graph, indexed by key: ``id``, ``smiles``, ``label``.
    task
        ``regression`` or ``classification``.
    """

    graphs: list
    keys: list[str]
    compounds: pd.DataFrame
    task: str

    def graph_indices(self, keys: Sequence[str]) -> list[int]:
        """Indices of the graphs of ``keys`` (a key given twice gives its graphs twice)."""
        by_key: dict[str, list[int]] = {}
        for i, key in enumerate(self.keys):
            by_key.setdefault(key, []).append(i)
        return [i for key in keys for i in by_key.get(key, [])]


def attach_labels(
    graphs: Sequence, assay: Assay, active_threshold: float | None = None, key_prefix: str = ""
) -> tuple[LabelledGraphs, list[dict]]:
    """Pair graphs with assay labels by compound id.

    Graphs whose id is not in the assay are left out (they were screened, not
    measured). Assay compounds without any graph are failure rows (stage ``assay``).

    Returns
    -------
    (LabelledGraphs, list[dict])
    """
    table = assay.table.set_index("id")
    out_graphs, keys, seen = [], [], set()
    for graph in graphs:
        cid = str(graph.id)
        if cid not in table.index:
            continue
        label = float(table.at[cid, "label"])
        if assay.task == "regression":
            active = float(label >= active_threshold) if active_threshold is not None else math.nan
            y = [label, active]
        else:
            y = [math.nan, label]
        item = copy.copy(graph)
        item.y = torch.tensor([y], dtype=torch.float32)
        out_graphs.append(item)
        keys.append(key_prefix + cid)
        seen.add(cid)
    skipped = len(graphs) - len(out_graphs)
    if skipped:
        log.info("%d graphs have no assay label and are not used", skipped)
    failures = [
        dict(id=cid, stage=STAGE, reason="no complex graph for this compound (not docked or not featurized?)")
        for cid in assay.table["id"]
        if cid not in seen
    ]
    compounds = assay.table[assay.table["id"].isin(seen)][["id", "smiles", "label"]].copy()
    compounds.index = [key_prefix + cid for cid in compounds["id"]]
    return LabelledGraphs(out_graphs, keys, compounds, assay.task), failures


def data_fingerprint(compounds: pd.DataFrame) -> str:
    """sha256 of the sorted ``id<TAB>label`` lines of the training compounds."""
    lines = sorted(f"{cid}\t{float(label)!r}" for cid, label in zip(compounds.index, compounds["label"]))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --------------------------------------------------------------------------- fitting


def _device(name: str) -> torch.device:
    return torch.device(resolve_device(name))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed PyTorch inside a forked RNG, with deterministic algorithms on; the caller's state is restored."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _fit(
    model: nn.Module,
    train_items: Sequence,
    val_batches: Sequence[tuple[Any, int]],
    collate: Callable[[list], Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    settings: TrainSettings,
    seed: int,
) -> dict[str, Any]:
    """Adam with early stopping on the validation loss; leaves ``model`` at its best epoch.

    Returns the history: ``train_loss``, ``val_loss`` (per epoch), ``best_epoch`` (1-based),
    ``best_val_loss``, ``epochs``.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    history: dict[str, Any] = dict(train_loss=[], val_loss=[], best_epoch=0, best_val_loss=math.inf)
    best_state, wait = None, 0
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        order = torch.randperm(len(train_items), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            chunk = order[start : start + settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, collate([train_items[i] for i in chunk]))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            total += float(loss.detach()) * len(chunk)
        model.eval()
        with torch.no_grad():
            val = sum(float(loss_fn(model, batch)) * n for batch, n in val_batches) / max(
                1, sum(n for _, n in val_batches)
            )
        history["train_loss"].append(total / max(1, len(order)))
        history["val_loss"].append(val)
        if val < history["best_val_loss"]:
            history.update(best_epoch=epoch, best_val_loss=val)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            wait = 0
        else:
            wait += 1
            if wait >= settings.patience:
                break
    history["epochs"] = len(history["train_loss"])
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _target_normalization(labels: np.ndarray, task: str) -> tuple[float, float]:
    """(mean, std) that regression targets are standardised with; (0, 1) for classification."""
    if task != "regression":
        return 0.0, 1.0
    std = float(labels.std())
    return float(labels.mean()), std if std > 1e-8 else 1.0


def _pos_weight(labels: np.ndarray, settings: TrainSettings, device: torch.device) -> torch.Tensor:
    n_pos = float((labels > 0.5).sum())
    n_neg = float(len(labels) - n_pos)
    weight = n_neg / n_pos if settings.balance_classes and n_pos > 0 and n_neg > 0 else 1.0
    return torch.tensor(weight, dtype=torch.float32, device=device)


def _resample(keys: Sequence[str], k: int, settings: TrainSettings) -> list[str]:
    """Training compounds of member ``k``: a bootstrap resample (seed + k), or all of them."""
    keys = sorted(keys)
    if not settings.bootstrap or settings.n_models == 1:
        return keys
    picks = np.random.default_rng(settings.seed + k).integers(0, len(keys), size=len(keys))
    return [keys[i] for i in picks]


@dataclass
class _Fitted:
    ensemble: Ensemble
    histories: list[dict]
    members: list[dict]
    ligand_models: list[FingerprintMLP]
    normalization: dict[str, Any]


def _fit_models(
    data: LabelledGraphs,
    train_keys: Sequence[str],
    val_keys: Sequence[str],
    settings: TrainSettings,
    schema: GraphSchema,
) -> _Fitted:
    """Train the K GNN members and (optionally) the K ligand-only members on one split."""
    from torch_geometric.data import Batch

    task, device = data.task, _device(settings.device)
    train_labels = data.compounds.loc[list(train_keys), "label"].to_numpy(dtype=np.float64)
    train_graphs = [data.graphs[i] for i in data.graph_indices(sorted(train_keys))]
    g_mean, g_std = global_statistics(train_graphs, schema)
    t_mean, t_std = _target_normalization(train_labels, task)
    pos_weight = _pos_weight(train_labels, settings, device)

    def gnn_loss(model: nn.Module, batch) -> torch.Tensor:
        out = model(batch)
        if task == "regression":
            return F.mse_loss(out["affinity_z"], (batch.y[:, 0] - model.target_mean) / model.target_std)
        return F.binary_cross_entropy_with_logits(out["logit"], batch.y[:, 1], pos_weight=pos_weight)

    def collate(items: list):
        return Batch.from_data_list(items).to(device)

    val_idx = data.graph_indices(sorted(val_keys))
    val_batches = [
        (
            collate([data.graphs[i] for i in val_idx[s : s + settings.batch_size]]),
            len(val_idx[s : s + settings.batch_size]),
        )
        for s in range(0, len(val_idx), settings.batch_size)
    ]
    members, histories, records = [], [], []
    for k in progress(range(settings.n_models), total=settings.n_models, desc="train members", unit="model"):
        seed = settings.seed + k
        keys = _resample(train_keys, k, settings)
        items = [data.graphs[i] for i in data.graph_indices(keys)]
        with seeded(seed, device):
            model = ComplexScorer(schema, settings.model)
            model.set_normalization(g_mean, g_std, t_mean, t_std)
            model.to(device)
            history = _fit(model, items, val_batches, collate, gnn_loss, settings, seed)
        members.append(model.to("cpu"))
        histories.append(history)
        records.append(
            dict(
                seed=seed,
                train_compounds=len(keys),
                distinct_train_compounds=len(set(keys)),
                train_graphs=len(items),
                epochs=history["epochs"],
                best_epoch=history["best_epoch"],
                best_val_loss=history["best_val_loss"],
            )
        )
        log.info(
            "member %d: best epoch %d of %d, validation loss %.4f",
            k,
            history["best_epoch"],
            history["epochs"],
            history["best_val_loss"],
        )
    ensemble = Ensemble(members, schema, settings.model, task, card=dict(heads=[HEAD_OF_TASK[task]]))
    ligand_models = (
        _fit_ligand_models(data, train_keys, val_keys, settings, t_mean, t_std, pos_weight, device)
        if settings.ligand_baseline
        else []
    )
    normalization = dict(
        globals_mean=dict(zip(schema.global_names, g_mean.tolist())),
        globals_std=dict(zip(schema.global_names, g_std.tolist())),
        target_mean=t_mean,
        target_std=t_std,
        pos_weight=float(pos_weight),
    )
    return _Fitted(ensemble, histories, records, ligand_models, normalization)


def _fit_ligand_models(
    data: LabelledGraphs,
    train_keys: Sequence[str],
    val_keys: Sequence[str],
    settings: TrainSettings,
    t_mean: float,
    t_std: float,
    pos_weight: torch.Tensor,
    device: torch.device,
) -> list[FingerprintMLP]:
    """The ligand-only baseline: same split, same seeds and resamples as the GNN members."""
    keys = list(data.compounds.index)
    row = {key: i for i, key in enumerate(keys)}
    x = torch.from_numpy(
        morgan_fingerprints(data.compounds["smiles"].tolist(), settings.fingerprint_radius, settings.fingerprint_bits)
    ).to(device)
    y = torch.tensor(data.compounds["label"].to_numpy(dtype=np.float32), device=device)
    task = data.task

    def collate(rows: list):
        index = torch.tensor(rows, dtype=torch.long, device=device)
        return x[index], y[index]

    def loss(model: nn.Module, batch) -> torch.Tensor:
        fps, labels = batch
        out = model(fps)
        if task == "regression":
            return F.mse_loss(out, (labels - model.target_mean) / model.target_std)
        return F.binary_cross_entropy_with_logits(out, labels, pos_weight=pos_weight)

    val_rows = [row[key] for key in sorted(val_keys)]
    val_batches = [
        (collate(val_rows[s : s + settings.batch_size]), len(val_rows[s : s + settings.batch_size]))
        for s in range(0, len(val_rows), settings.batch_size)
    ]
    models = []
    for k in range(settings.n_models):
        seed = settings.seed + k
        items = [row[key] for key in _resample(train_keys, k, settings)]
        with seeded(seed, device):
            model = FingerprintMLP(settings.fingerprint_bits, settings.ligand_hidden)
            model.target_mean.fill_(t_mean)
            model.target_std.fill_(t_std)
            model.to(device)
            _fit(model, items, val_batches, collate, loss, settings, seed)
        models.append(model.to("cpu").eval())
    return models


def fit_ligand_baseline(
    compounds: pd.DataFrame,
    train_keys: Sequence[str],
    val_keys: Sequence[str],
    settings: TrainSettings,
    task: str = "classification",
) -> list[FingerprintMLP]:
    """Train the ligand-only baseline alone, as :func:`train_ensemble` trains it beside the GNN.

    Parameters
    ----------
    compounds
        One row per compound, indexed by key, with ``smiles`` and ``label`` (active 0/1, or value).
    train_keys, val_keys
        Keys of the training and the early-stopping compounds.
    settings
        Training settings (members, seeds, resamples, fingerprint, epochs): a model card's
        ``training`` section gives the settings its baseline was trained with.

    Returns
    -------
    list[FingerprintMLP]
        ``settings.n_models`` members in eval mode; score SMILES with :func:`predict_ligand_baseline`.
    """
    device = _device(settings.device)
    labels = compounds.loc[list(train_keys), "label"].to_numpy(dtype=np.float64)
    t_mean, t_std = _target_normalization(labels, task)
    data = LabelledGraphs(graphs=[], keys=[], compounds=compounds, task=task)
    with torch_threads(settings.threads):
        return _fit_ligand_models(
            data, train_keys, val_keys, settings, t_mean, t_std, _pos_weight(labels, settings, device), device
        )


def predict_ligand_baseline(
    models: Sequence[FingerprintMLP], smiles: Sequence[str], settings: TrainSettings, task: str = "classification"
) -> np.ndarray:
    """Mean ligand-only prediction per SMILES: probability of being active, or the value (assay units)."""
    fps = torch.from_numpy(morgan_fingerprints(list(smiles), settings.fingerprint_radius, settings.fingerprint_bits))
    with torch.inference_mode():
        raw = np.stack([m(fps).double().numpy() for m in models]) if len(smiles) else np.zeros((len(models), 0))
    if task == "regression":
        return np.stack([r * float(m.target_std) + float(m.target_mean) for r, m in zip(raw, models)]).mean(0)
    return (1.0 / (1.0 + np.exp(-raw))).mean(0)


# --------------------------------------------------------------------------- evaluation


def _per_compound(keys_of_graphs: Sequence[str], values: np.ndarray, keys: Sequence[str], how: str) -> np.ndarray:
    df = pd.DataFrame({"key": list(keys_of_graphs), "value": values})
    grouped = df.groupby("key")["value"]
    agg = grouped.max() if how == "max" else grouped.mean()
    return agg.reindex(list(keys)).to_numpy(dtype=np.float64)


def _docking_per_compound(data: LabelledGraphs, keys: Sequence[str], schema: GraphSchema) -> np.ndarray:
    """Negated best (lowest) docking score of each compound; NaN where no pose has one."""
    idx = data.graph_indices(keys)
    return _per_compound(
        [data.keys[i] for i in idx], -docking_scores([data.graphs[i] for i in idx], schema), keys, "max"
    )


def _compound_scores(
    fitted: _Fitted, data: LabelledGraphs, keys: Sequence[str], settings: TrainSettings, schema: GraphSchema
) -> dict[str, np.ndarray]:
    """Per-compound scores of ``keys`` (higher = more likely active) for every method.

    ``gnn``: ensemble score (poses aggregated by ``pose_aggregation``); ``docking``:
    negated best docking score; ``ligand_only``: mean ligand-model prediction
    (value, or probability). Missing values are NaN.
    """
    idx = data.graph_indices(keys)
    graphs = [data.graphs[i] for i in idx]
    graph_keys = [data.keys[i] for i in idx]
    out: dict[str, np.ndarray] = {}
    if graphs:
        summary = fitted.ensemble.summarize(fitted.ensemble.predict(graphs))
        out["gnn"] = _per_compound(graph_keys, summary["gnn_score"], keys, settings.pose_aggregation)
        out["docking"] = _docking_per_compound(data, keys, schema)
    else:
        out["gnn"] = out["docking"] = np.full(len(keys), np.nan)
    if fitted.ligand_models:
        out["ligand_only"] = predict_ligand_baseline(
            fitted.ligand_models, data.compounds.loc[list(keys), "smiles"].tolist(), settings, data.task
        )
    return out


def _evaluate(
    fitted: _Fitted,
    data: LabelledGraphs,
    keys: Sequence[str],
    train_keys: Sequence[str],
    settings: TrainSettings,
    schema: GraphSchema,
) -> dict[str, dict[str, float]]:
    """Metrics of every method on the compounds ``keys`` (see :func:`_compound_scores`).

    Classification: ``n, n_active, auroc, ef1, ef5, bedroc``. Regression: ``n, rmse, mae,
    pearson, spearman`` (plus the ranking metrics with ``active_threshold``); the docking
    score's RMSE is after a linear fit to the training compounds' values (its
    correlations use the raw negated score).
    """
    if not len(keys):
        return {}
    keys = list(keys)
    labels = data.compounds.loc[keys, "label"].to_numpy(dtype=np.float64)
    scores = _compound_scores(fitted, data, keys, settings, schema)
    out = {}
    for method, score in scores.items():
        if data.task == "classification":
            out[method] = classification_metrics(labels, score)
        elif method == "docking":
            train = list(train_keys)
            a, b = linear_calibration(
                _docking_per_compound(data, train, schema),
                data.compounds.loc[train, "label"].to_numpy(dtype=np.float64),
            )
            out[method] = regression_metrics(labels, a * score + b, settings.active_threshold, ranking_score=score)
            out[method]["n_missing"] = int(np.isnan(score).sum())
        else:
            out[method] = regression_metrics(labels, score, settings.active_threshold)
    return out


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train_ensemble` gives back.

    Attributes
    ----------
    ensemble
        The trained members (on CPU) with the model card.
    card
        The model card (also ``ensemble.card``).
    histories
        Loss curves per member.
    failures
        Failure rows (stage ``assay``): bad assay rows, compounds without graphs.
    """

    ensemble: Ensemble
    card: dict
    histories: list[dict]
    failures: list[dict]


def _split_sizes(data: LabelledGraphs, split: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return dict(
        compounds={p: len(v) for p, v in split.items()},
        graphs={p: len(data.graph_indices(v)) for p, v in split.items()},
    )


def train_ensemble(
    graphs: Sequence,
    assay: Assay | str | os.PathLike | pd.DataFrame,
    settings: TrainSettings = TrainSettings(),
    schema: GraphSchema = DEFAULT_SCHEMA,
    name: str = "model",
    sources: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train an ensemble scorer and its baselines; evaluate on the held-out compounds.

    Parameters
    ----------
    graphs
        Complex graphs (``Data`` with ``id``), e.g. from :func:`pipeline.graphs.load_graphs`.
    assay
        An :class:`~pipeline.scoring.assay.Assay` or anything :func:`read_assay` reads.
    settings
        Training settings (``settings.task`` overrides the assay's inferred task).
    schema
        The graphs' schema.
    name
        Model name for the card.
    sources
        Extra provenance for the card's ``data`` entry (file names, ...).

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        When fewer than 3 compounds have both a label and a graph, or the split
        leaves no validation compound.
    """
    start = time.perf_counter()
    if not isinstance(assay, Assay):
        assay = read_assay(assay, settings.task)
    elif settings.task is not None and settings.task != assay.task:
        raise ValueError(f"settings ask for task {settings.task} but the assay was read as {assay.task}")
    data, missing = attach_labels(graphs, assay, settings.active_threshold)
    failures = list(assay.failures) + missing
    n = len(data.compounds)
    if n < 3:
        raise ValueError(f"only {n} compounds have both an assay label and a complex graph; at least 3 are needed")
    split = split_compounds(
        list(data.compounds.index), data.compounds["smiles"].tolist(), settings.split, settings.fractions, settings.seed
    )
    data_info = dict(n_assay_rows_rejected=len(assay.failures), n_assay_compounds_without_graph=len(missing))
    return _train_on_split(data, split, settings, schema, name, dict(data_info, **dict(sources or {})), failures, start)


def _train_on_split(
    data: LabelledGraphs,
    split: Mapping[str, list[str]],
    settings: TrainSettings,
    schema: GraphSchema,
    name: str,
    data_info: Mapping[str, Any],
    failures: list[dict],
    start: float,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> TrainResult:
    """Fit the ensemble (and baselines) on ``split``, evaluate, and write the card.

    ``groups`` (e.g. target -> compound keys) adds ``metrics_by_group``: the metrics of
    every method on each group's validation and test compounds.
    """
    n = len(data.compounds)
    if not split["val"] or not split["train"]:
        raise ValueError(
            f"the {settings.split} split of {n} compounds left no training or validation compound; "
            "use more compounds, other fractions, or split: random"
        )
    with torch_threads(settings.threads):
        fitted = _fit_models(data, split["train"], split["val"], settings, schema)
        metrics = {
            part: _evaluate(fitted, data, split[part], split["train"], settings, schema) for part in ("val", "test")
        }
        by_group = {}
        for group, members in (groups or {}).items():
            members = set(members)
            by_group[group] = {
                part: _evaluate(
                    fitted, data, [k for k in split[part] if k in members], split["train"], settings, schema
                )
                for part in ("val", "test")
            }
    labels = data.compounds["label"].to_numpy(dtype=np.float64)
    card = dict(
        name=name,
        format=MODEL_FORMAT,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=data.task,
        heads=[HEAD_OF_TASK[data.task]],
        score=dict(
            column="gnn_score",
            meaning=(
                "ensemble mean predicted value (assay units)"
                if data.task == "regression"
                else "ensemble mean probability of being active"
            )
            + "; higher = more likely active; gnn_spread = std over members",
        ),
        data=dict(
            fingerprint=data_fingerprint(data.compounds),
            n_compounds=n,
            n_graphs=len(data.graphs),
            labels=(
                dict(n_active=int((labels > 0.5).sum()), n_inactive=int((labels <= 0.5).sum()))
                if data.task == "classification"
                else dict(
                    mean=float(labels.mean()), std=float(labels.std()), min=float(labels.min()), max=float(labels.max())
                )
            ),
            **dict(data_info),
        ),
        split=dict(
            method=settings.split,
            seed=settings.seed,
            fractions=list(settings.fractions),
            **_split_sizes(data, split),
            ids={p: list(v) for p, v in split.items() if p != "train"},
        ),
        training=settings.to_dict(),
        model=settings.model.to_dict(),
        parameters=count_parameters(fitted.ensemble.members[0]),
        normalization=fitted.normalization,
        schema=schema.to_dict(),
        schema_version=schema.version,
        versions=library_versions(),
        members=fitted.members,
        metrics=metrics,
        baselines=dict(
            docking="negated docking score of the best pose (graph global docking_score); regression RMSE "
            "after a linear fit on the training compounds",
            ligand_only=(
                f"Morgan fingerprint (radius {settings.fingerprint_radius}, "
                f"{settings.fingerprint_bits} bits) -> MLP({settings.ligand_hidden}), same split, "
                "seeds and resamples"
                if settings.ligand_baseline
                else "not trained"
            ),
        ),
        training_seconds=round(time.perf_counter() - start, 1),
    )
    if groups:
        card["metrics_by_target"] = by_group
    fitted.ensemble.card = card
    return TrainResult(fitted.ensemble, card, fitted.histories, failures)


def _labelled_targets(
    graphs_by_target: Mapping[str, Sequence], assays_by_target: Mapping[str, Any], settings: TrainSettings
) -> tuple[LabelledGraphs, list[dict], dict[str, int]]:
    """All targets' labelled graphs in one set, compound keys ``<target>/<id>``; also failures and rejects."""
    parts, tasks, failures, rejected = [], set(), [], {}
    for target in sorted(graphs_by_target):
        assay = assays_by_target[target]
        assay = assay if isinstance(assay, Assay) else read_assay(assay, settings.task)
        tasks.add(assay.task)
        labelled, missing = attach_labels(
            graphs_by_target[target], assay, settings.active_threshold, key_prefix=f"{target}/"
        )
        parts.append(labelled)
        failures += [dict(f, id=f"{target}/{f['id']}") for f in list(assay.failures) + missing]
        rejected[target] = len(assay.failures)
    if len(tasks) != 1:
        raise ValueError(f"all targets' assays must have one task, got {sorted(tasks)}")
    data = LabelledGraphs(
        graphs=[g for p in parts for g in p.graphs],
        keys=[k for p in parts for k in p.keys],
        compounds=pd.concat([p.compounds for p in parts]),
        task=tasks.pop(),
    )
    return data, failures, rejected


def train_multi_target(
    graphs_by_target: Mapping[str, Sequence],
    assays_by_target: Mapping[str, Any],
    settings: TrainSettings = TrainSettings(),
    schema: GraphSchema = DEFAULT_SCHEMA,
    name: str = "model",
    sources: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train one ensemble on the complexes of several targets; report metrics per target.

    Every target's compounds are split on their own (by scaffold unless told otherwise,
    ``settings.fractions``), and the parts are pooled: so each target has held-out
    compounds, and the card's ``metrics_by_target`` gives every method's metrics on
    each target's held-out compounds. Compound keys are ``<target>/<id>`` (the same id
    may be screened against several targets).

    Parameters
    ----------
    graphs_by_target, assays_by_target
        Target name -> complex graphs, and -> assay (all of one task).
    settings, schema, name, sources
        As for :func:`train_ensemble`.
    """
    start = time.perf_counter()
    data, failures, rejected = _labelled_targets(graphs_by_target, assays_by_target, settings)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    groups = {}
    for target in sorted(graphs_by_target):
        pool = data.compounds[[k.startswith(f"{target}/") for k in data.compounds.index]]
        groups[target] = list(pool.index)
        part = split_compounds(
            list(pool.index), pool["smiles"].tolist(), settings.split, settings.fractions, settings.seed
        )
        for name_ in split:
            split[name_] += part[name_]
    info = dict(
        targets=sorted(graphs_by_target),
        n_compounds_by_target={t: len(v) for t, v in groups.items()},
        n_assay_rows_rejected=rejected,
        **dict(sources or {}),
    )
    return _train_on_split(data, split, settings, schema, name, info, failures, start, groups)


def load_training_graphs(
    graph_files: Sequence[str | os.PathLike], expect: GraphSchema | None = None
) -> tuple[GraphSchema, list]:
    """Graphs of several files that must share one schema (``expect``, or the first file's)."""
    schema, graphs = expect, []
    for path in graph_files:
        file_schema, file_graphs = load_graphs(path, expect=schema)
        schema = schema or file_schema
        graphs.extend(file_graphs)
    if schema is None:
        raise ValueError("no graph files given")
    return schema, graphs


@dataclass(frozen=True)
class TrainSummary:
    """Counts and results of one :func:`train_from_files` call."""

    model_dir: str
    compounds: int
    graphs: int
    failed: int
    metrics: dict
    seconds: float


def train_from_files(
    graph_files: Sequence[str | os.PathLike],
    assay_path: str | os.PathLike,
    model_dir: str | os.PathLike,
    settings: TrainSettings = TrainSettings(),
    failures_csv: str | os.PathLike | None = None,
    expect_schema: GraphSchema | None = None,
) -> TrainSummary:
    """Train from graph files and an assay table; write ``model_dir`` (and the failures CSV).

    Parameters
    ----------
    graph_files
        ``.pt`` files of :func:`pipeline.graphs.save_graphs` (one schema for all).
    assay_path
        Assay table (``id, smiles, value`` or ``id, smiles, active``).
    model_dir
        Output folder, e.g. ``models/<name>``; replaced atomically if it exists.
    settings
        Training settings.
    failures_csv
        Where to write the failure rows (``id, stage, reason``, stage ``assay``).
    expect_schema
        Refuse graph files of another schema (``None``: the first file's schema).
    """
    start = time.perf_counter()
    schema, graphs = load_training_graphs(graph_files, expect_schema)
    sources = dict(assay=str(assay_path), graph_files=[Path(p).name for p in graph_files])
    result = train_ensemble(graphs, assay_path, settings, schema, name=Path(model_dir).name, sources=sources)
    save_ensemble(result.ensemble, model_dir, result.histories)
    if failures_csv is not None:
        write_failures(sorted(result.failures, key=lambda f: (f["id"], f["reason"])), failures_csv)
    card = result.card
    return TrainSummary(
        model_dir=str(model_dir),
        compounds=card["data"]["n_compounds"],
        graphs=card["data"]["n_graphs"],
        failed=len(result.failures),
        metrics=card["metrics"],
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- leave one target out


def leave_one_target_out(
    graphs_by_target: Mapping[str, Sequence],
    assays_by_target: Mapping[str, Any],
    settings: TrainSettings = TrainSettings(),
    schema: GraphSchema = DEFAULT_SCHEMA,
) -> pd.DataFrame:
    """Per-target generalization: train on every other target, test on the held-out one.

    Parameters
    ----------
    graphs_by_target
        Target name -> its complex graphs (ids as in its assay).
    assays_by_target
        Target name -> its assay (:class:`Assay` or anything :func:`read_assay` reads);
        all of one task. The same compound id may appear under several targets.
    settings
        Training settings; the training targets' compounds are split into train and
        validation in the ratio of ``fractions[0] : fractions[1]`` (the test part is
        the held-out target).
    schema
        The graphs' schema.

    Returns
    -------
    pandas.DataFrame
        One row per (target, method) with ``method`` in ``gnn, docking, ligand_only``:
        ``target, method, n_train, n_val, n_test`` and the metrics of :func:`_evaluate`.
    """
    targets = sorted(graphs_by_target)
    if len(targets) < 2:
        raise ValueError("leave-one-target-out needs at least two targets")
    data, _, _ = _labelled_targets(graphs_by_target, assays_by_target, settings)
    f_train, f_val, _ = settings.fractions
    inner = replace(settings, fractions=(f_train / (f_train + f_val), f_val / (f_train + f_val), 0.0))
    rows = []
    for target in targets:
        held_out = [k for k in data.compounds.index if k.startswith(f"{target}/")]
        pool = data.compounds.drop(index=held_out)
        split = split_compounds(list(pool.index), pool["smiles"].tolist(), inner.split, inner.fractions, inner.seed)
        if not split["val"]:
            raise ValueError(f"leave-one-target-out ({target} held out): no validation compound left")
        with torch_threads(settings.threads):
            fitted = _fit_models(data, split["train"], split["val"], inner, schema)
            results = _evaluate(fitted, data, held_out, split["train"], inner, schema)
        for method, values in results.items():
            rows.append(
                dict(
                    target=target,
                    method=method,
                    n_train=len(split["train"]),
                    n_val=len(split["val"]),
                    n_test=len(held_out),
                    **values,
                )
            )
    return pd.DataFrame(rows)
