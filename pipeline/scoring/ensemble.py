"""Ensembles of complex scorers: predict with a mean and a spread, save and load ``models/<name>/``.

A model folder holds

* ``model_0.pt`` ... ``model_{K-1}.pt`` - state dicts of the K members (tensors only:
  ``torch.load(path, weights_only=True)`` reads them);
* ``card.json`` - everything needed to rebuild and judge the model: task, heads,
  hyperparameters, the graph schema it was trained on (dict and version), a
  fingerprint of the training data, the split, library versions, per-member
  training records and held-out metrics of the model and its baselines (see
  :mod:`pipeline.scoring.train`);
* ``learning_curve.png`` - train and validation loss per epoch of every member.

:func:`load_ensemble` refuses a model trained on another graph schema: its
features would be read in the wrong order or size, and the scores would be silently wrong.

A folder whose card says ``architecture: pair`` holds the pair-term scorer instead
(:mod:`pipeline.scoring.pair_folder`, its own card schema): :func:`read_card` and
:func:`resolve_model_dir` accept both kinds, :func:`model_architecture` tells them apart,
and :func:`load_ensemble` refuses a pair folder with a message that says so.

A model folder is data from elsewhere (a colleague's model, a download), so before any
weights are read the card is validated against :data:`CARD_SCHEMA`, every member's
weights path must stay inside the folder (no absolute path, no ``..``, no symlink out)
and its SHA-256 must equal the card's; weights are read with ``weights_only=True``,
which torch before 2.6 did not enforce (CVE-2025-32434), so older torch is refused.

The score of a complex is the ensemble mean of the head the model was trained for:
the predicted affinity (regression) or the probability of being active
(classification); its spread is the standard deviation over members (ddof 0), a
rough confidence. Higher scores mean more likely active.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import schema_default
from ..graphs import DEFAULT_SCHEMA, GraphSchema
from ..io import atomic_path, staging_dir, write_text_atomic
from .cards import CARD, TASKS, ModelError, model_architecture, read_card
from .model import ComplexScorer, ModelConfig

#: Layout version of a model folder.
MODEL_FORMAT = "vscreen-model/1"
#: The head each task trains, and whose output is ``gnn_score``.
HEAD_OF_TASK = {"regression": "affinity", "classification": "active"}
SCORE_COLUMNS = [
    "id",
    "pose",
    "source",
    "gnn_score",
    "gnn_spread",
    "affinity",
    "affinity_spread",
    "p_active",
    "p_active_spread",
]
#: Where model names are looked up when no folder is given (relative to the working directory).
DEFAULT_MODELS_DIR = Path("models")
CURVE = "learning_curve.png"


#: Oldest torch whose ``torch.load(..., weights_only=True)`` cannot be bypassed (CVE-2025-32434).
MIN_TORCH = "2.6"


# --------------------------------------------------------------------------- the ensemble


class MemberSet:
    """What every loaded ensemble shares: ``members`` (torch modules), ``card`` and ``path``.

    The score stage uses :attr:`name`, :attr:`device` and :meth:`to` of an
    :class:`Ensemble` and of a pair model (:class:`pipeline.scoring.pair_folder.PairModel`) alike.
    """

    members: list[torch.nn.Module]
    card: dict[str, Any]
    path: Path | None

    @property
    def name(self) -> str:
        return str(self.card.get("name") or (self.path.name if self.path else "unsaved"))

    @property
    def device(self) -> torch.device:
        return next(self.members[0].parameters()).device

    def to(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        """Move (and optionally cast) every member; returns ``self``."""
        for member in self.members:
            member.to(device=device, dtype=dtype) if dtype is not None else member.to(device)
        return self

    def score(self, graphs: Sequence, batch_size: int = schema_default("score", "batch_size")) -> pd.DataFrame:
        """Scores of graphs as a table with :data:`SCORE_COLUMNS`, in the order of ``graphs``.

        Subclasses give ``predict(graphs, batch_size)`` (raw member outputs) and ``summarize``
        (those outputs as the score columns).
        """
        summary = self.summarize(self.predict(graphs, batch_size))
        df = pd.DataFrame(
            {
                "id": [str(g.id) for g in graphs],
                "pose": np.array([int(getattr(g, "pose", 1)) for g in graphs], dtype=np.int64),
                "source": [str(getattr(g, "source", "")) for g in graphs],
            }
        )
        for column in SCORE_COLUMNS[3:]:
            df[column] = summary[column]
        return df


class Ensemble(MemberSet):
    """K trained :class:`~pipeline.scoring.model.ComplexScorer` members and their card.

    Parameters
    ----------
    members
        The models (same schema and config).
    schema
        Graph schema they read.
    config
        Their hyperparameters.
    task
        ``regression`` or ``classification``: which head is trained and scored.
    card
        The model card (a dict; empty for an untrained ensemble).
    path
        Folder it was loaded from, if any.
    """

    def __init__(
        self,
        members: Sequence[ComplexScorer],
        schema: GraphSchema,
        config: ModelConfig,
        task: str,
        card: Mapping[str, Any] | None = None,
        path: str | os.PathLike | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members, self.schema, self.config, self.task = list(members), schema, config, task
        self.card = dict(card or {})
        self.path = Path(path) if path is not None else None

    @torch.inference_mode()
    def predict(
        self, graphs: Sequence, batch_size: int = schema_default("score", "batch_size")
    ) -> dict[str, np.ndarray]:
        """Raw head outputs of every member.

        Parameters
        ----------
        graphs
            ``torch_geometric.data.Data`` graphs (from :func:`pipeline.graphs.load_graphs`).
        batch_size
            Graphs per forward pass. Batches are consecutive slices of ``graphs``, so the
            same list gives the same numbers wherever it is scored.

        Returns
        -------
        dict
            ``affinity`` and ``logit``: float64 arrays of shape (K, len(graphs)).
        """
        from torch_geometric.data import Batch

        device = self.device
        for member in self.members:
            member.eval()
        k, n = len(self.members), len(graphs)
        out = {"affinity": np.zeros((k, n)), "logit": np.zeros((k, n))}
        for start in range(0, n, max(1, batch_size)):
            batch = Batch.from_data_list(list(graphs[start : start + batch_size])).to(device)
            for m, member in enumerate(self.members):
                result = member(batch)
                stop = start + batch.num_graphs
                out["affinity"][m, start:stop] = result["affinity"].double().cpu().numpy()
                out["logit"][m, start:stop] = result["logit"].double().cpu().numpy()
        return out

    def summarize(self, predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ensemble mean and spread per head, and ``gnn_score`` / ``gnn_spread`` (trained head; others NaN)."""
        prob = 1.0 / (1.0 + np.exp(-predictions["logit"]))
        n = predictions["logit"].shape[1]
        nan = np.full(n, np.nan)
        trained = set(self.card.get("heads") or [HEAD_OF_TASK[self.task]])
        out = dict(
            affinity=predictions["affinity"].mean(0),
            affinity_spread=predictions["affinity"].std(0),
            p_active=prob.mean(0),
            p_active_spread=prob.std(0),
        )
        if "affinity" not in trained:
            out["affinity"], out["affinity_spread"] = nan, nan
        if "active" not in trained:
            out["p_active"], out["p_active_spread"] = nan, nan
        primary = "affinity" if self.task == "regression" else "p_active"
        out["gnn_score"], out["gnn_spread"] = out[primary], out[f"{primary}_spread"]
        return out


def new_ensemble(
    schema: GraphSchema = DEFAULT_SCHEMA,
    config: ModelConfig = ModelConfig(),  # noqa: B008 - frozen, never mutated
    task: str = "regression",
    n_models: int = schema_default("train", "n_models"),
    seed: int = 0,
) -> Ensemble:
    """An untrained ensemble (members initialized with seeds ``seed, seed+1, ...``); for tests and benchmarks."""
    members = []
    for k in range(n_models):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + k)
            members.append(ComplexScorer(schema, config))
    return Ensemble(members, schema, config, task, card=dict(heads=[HEAD_OF_TASK[task]]))


# --------------------------------------------------------------------------- files


def to_jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts only; NaN and infinities become ``None`` (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plot_learning_curves(histories: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Write a PNG of train (solid) and validation (dashed) loss per epoch for each member; best epoch dotted.

    Each history is a dict with ``train_loss`` and ``val_loss`` lists and ``best_epoch`` (1-based).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{k % 10}" for k in range(len(histories))]
    for k, (history, color) in enumerate(zip(histories, colors)):
        epochs = np.arange(1, len(history["train_loss"]) + 1)
        ax.plot(epochs, history["train_loss"], color=color, lw=1.2, label=f"member {k} train")
        ax.plot(epochs, history["val_loss"], color=color, lw=1.2, ls="--", label=f"member {k} val")
        best = history.get("best_epoch")
        if best:
            ax.plot([best], [history["val_loss"][best - 1]], "o", color=color, ms=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(min(h["train_loss"] + h["val_loss"]) > 0 for h in histories if h["train_loss"]):
        ax.set_yscale("log")
    ax.set_title(title or "learning curves (dot: best validation epoch)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def save_ensemble(
    ensemble: Ensemble, out_dir: str | os.PathLike, histories: Sequence[Mapping[str, Any]] | None = None
) -> Path:
    """Write ``model_k.pt``, ``card.json`` (and ``learning_curve.png`` when ``histories`` are given).

    The folder is assembled next to ``out_dir`` and renamed into place, so a killed
    job never leaves a half-written model; an existing folder is replaced. The
    card's ``members`` entries get ``weights`` (file name) and ``sha256``.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    tmp = staging_dir(out)
    try:
        card = dict(ensemble.card)
        card.setdefault("name", out.name)
        card.setdefault("format", MODEL_FORMAT)
        card.setdefault("task", ensemble.task)
        card.setdefault("heads", [HEAD_OF_TASK[ensemble.task]])
        card.setdefault("model", ensemble.config.to_dict())
        card.setdefault("schema", ensemble.schema.to_dict())
        card.setdefault("schema_version", ensemble.schema.version)
        members = [dict(m) for m in card.get("members", [{} for _ in ensemble.members])]
        if len(members) != len(ensemble.members):
            raise ValueError(f"card lists {len(members)} members but the ensemble has {len(ensemble.members)}")
        for k, member in enumerate(ensemble.members):
            weights = tmp / f"model_{k}.pt"
            state = {
                name: t.detach().to("cpu", torch.float32) if t.is_floating_point() else t.detach().cpu()
                for name, t in member.state_dict().items()
            }
            torch.save(state, weights)
            members[k].update(weights=weights.name, sha256=_sha256(weights))
        card["members"] = members
        card["n_models"] = len(members)
        if histories:
            plot_learning_curves(histories, tmp / CURVE, title=f"{card['name']}: loss per epoch (dot: best val)")
            card["learning_curve"] = CURVE
        write_text_atomic(tmp / CARD, json.dumps(to_jsonable(card), indent=1) + "\n")
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    ensemble.card, ensemble.path = card, out
    return out


def replace_folder(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename the finished folder ``tmp`` onto ``out``, replacing an existing ``out``.

    The old folder is moved aside first and deleted last, so a reader finds the old model
    or the new one, never a mix of their files.
    """
    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def available_models(models_dir: str | os.PathLike = DEFAULT_MODELS_DIR) -> list[str]:
    """Names of the folders under ``models_dir`` that hold a ``card.json``."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / CARD).is_file() and not p.name.startswith("."))


def _not_found(what: str, models_dir: Path) -> ModelError:
    names = available_models(models_dir)
    listing = ", ".join(names) if names else "none"
    return ModelError(f"{what}; available models under '{models_dir}': {listing}")


def resolve_model_dir(name_or_path: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a model given by path or by name (a folder under ``models_dir``).

    Raises
    ------
    ModelError
        When neither exists, or the folder has no ``card.json``; the message names the
        folder and lists the available models.
    """
    root = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
    given = Path(name_or_path)
    candidates = [given] if given.is_absolute() else [given, root / given]
    for folder in candidates:
        if folder.is_dir():
            if not (folder / CARD).is_file():
                raise _not_found(f"model folder '{folder}' has no {CARD} (not a trained vscreen model?)", root)
            return folder
    raise _not_found(f"model '{name_or_path}' not found (no folder '{candidates[-1]}')", root)


def member_weights(folder: str | os.PathLike, card: Mapping[str, Any], name: str = "model") -> list[tuple[Path, str]]:
    """The weights file of every member, each checked to lie inside ``folder``, and its expected SHA-256.

    Raises
    ------
    ModelError
        For an absolute path, a ``..`` component, or a path (a symlink) that resolves outside the folder.
    """
    root = Path(folder).resolve()
    out = []
    for k, member in enumerate(card["members"]):
        given = str(member["weights"])
        relative = Path(given)
        # refuse before touching the file system: a card must not point a loader at arbitrary files
        if (
            relative.is_absolute()
            or given.startswith(("/", "\\"))
            or ".." in relative.parts
            or ".." in given.split("\\")
        ):
            raise ModelError(
                f"model '{name}': member {k} weights path '{given}' in {CARD} must be a file name "
                f"inside the model folder '{root}' (no absolute path, no '..')"
            )
        resolved = (root / relative).resolve()
        if not resolved.is_relative_to(root):
            raise ModelError(
                f"model '{name}': member {k} weights '{given}' resolves to '{resolved}', outside the "
                f"model folder '{root}' (a symlink out of the folder is refused)"
            )
        out.append((resolved, str(member["sha256"]).lower()))
    return out


def _check_torch() -> None:
    if torch.__version__ < MIN_TORCH:  # TorchVersion compares as a version, not as a string
        raise ModelError(
            f"torch {torch.__version__} is older than {MIN_TORCH}: its weights_only loading can be "
            f"bypassed by a crafted model file (CVE-2025-32434); install torch>={MIN_TORCH}"
        )


def schema_differences(trained: GraphSchema, current: GraphSchema) -> list[str]:
    """Human-readable differences between two schemas (``rbf_size: 16 (model) vs 32 (pipeline)``)."""
    out = []
    for key, value in trained.to_dict().items():
        other = current.to_dict().get(key)
        if value != other and not key.endswith(("_names", "_dim")):
            shown = (
                f"{value} (model) vs {other} (pipeline)"
                if not isinstance(value, list)
                else f"{len(value)} entries (model) vs {len(other or [])} (pipeline)"
                if len(value) != len(other or [])
                else "same size, different entries"
            )
            out.append(f"{key}: {shown}")
    return out or ["derived feature names or sizes"]


def check_schema(
    card: Mapping[str, Any], expect: GraphSchema, name: str = "model", folder: str | os.PathLike | None = None
) -> GraphSchema:
    """The schema a model was trained on; :class:`ModelError` unless it equals ``expect``."""
    where = f" (model folder '{folder}')" if folder is not None else ""
    trained_dict = dict(card["schema"])
    version = trained_dict.get("version") or card.get("schema_version") or "unknown"
    if version != expect.version:
        raise ModelError(
            f"model '{name}' was trained on graph schema {version} but this pipeline produces "
            f"{expect.version}; retrain it on graphs from this pipeline (vscreen train), or use a model "
            f"trained on {expect.version}{where}"
        )
    trained = GraphSchema.from_dict(trained_dict)
    if trained != expect:
        raise ModelError(
            f"model '{name}' was trained on graph schema {version} with different features than this "
            f"pipeline produces ({'; '.join(schema_differences(trained, expect))}); retrain it, or "
            f"featurize with the settings the model was trained with{where}"
        )
    return trained


def verified_bytes(weights: Path, expected: str, name: str, what: str = "weights file") -> bytes:
    """The bytes of ``weights`` if their SHA-256 is ``expected`` (the card's); else :class:`ModelError`.

    The caller unpickles exactly these bytes, so nothing can swap the file between the check
    and the load. ``what`` names the file in messages ("weights file", "ensemble file").
    """
    try:
        data = weights.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"model '{name}': {what} '{weights}' is missing") from exc
    except OSError as exc:
        raise ModelError(f"model '{name}': {what} '{weights}' cannot be read: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ModelError(
            f"model '{name}': {what} '{weights}' has SHA-256 {digest}, but {CARD} records "
            f"{expected}; the file was changed or damaged after training - restore it or retrain"
        )
    return data


def load_ensemble(
    path: str | os.PathLike,
    expect_schema: GraphSchema | None = DEFAULT_SCHEMA,
    device: str = "cpu",
    models_dir: str | os.PathLike | None = None,
) -> Ensemble:
    """Load a model folder written by :func:`save_ensemble`.

    Parameters
    ----------
    path
        Model folder, or a model name looked up under ``models_dir``.
    expect_schema
        The graph schema this pipeline produces; a model trained on another one is
        refused. ``None``: no check (the model's own schema is used).
    device
        Where the members go (``cpu``, ``cuda``, ...).
    models_dir
        Where names are looked up (default ``models/`` in the working directory).

    Raises
    ------
    ModelError
        Missing folder (the message lists the available models), a card that is unreadable
        or does not match :data:`CARD_SCHEMA`, a weights path outside the folder, weights
        whose SHA-256 differs from the card's, unreadable weights, weights that do not fit
        the card's architecture, a schema mismatch, or torch older than :data:`MIN_TORCH`.
    """
    folder = resolve_model_dir(path, models_dir)
    card = read_card(folder)
    name = card.get("name") or folder.name
    if model_architecture(card, folder / CARD) == "pair":
        raise ModelError(
            f"model '{name}' ({folder}) is a pair-term model, not a complex-graph GNN; load it with "
            "pipeline.scoring.pair_folder.load_pair_model (the score stage reads both kinds)"
        )
    if card.get("format", MODEL_FORMAT) != MODEL_FORMAT:
        raise ModelError(
            f"model '{name}' has folder format {card.get('format')}, this pipeline reads {MODEL_FORMAT}; retrain it"
        )
    schema = (
        check_schema(card, expect_schema, name, folder)
        if expect_schema is not None
        else GraphSchema.from_dict(card["schema"])
    )
    try:
        config = ModelConfig.from_dict(card.get("model", {}))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{name}' ({folder}): hyperparameters in {CARD} are invalid: {exc}") from exc
    task = card["task"]
    if task not in TASKS:
        raise ModelError(f"model '{name}' ({folder}) has unknown task {task!r}; expected one of {list(TASKS)}")
    _check_torch()
    # Every path is checked, then every file's digest, before anything is unpickled; the bytes
    # that were hashed are the bytes that are loaded (no window to swap the file in between).
    verified = []
    for weights, expected in member_weights(folder, card, name):
        verified.append((weights, verified_bytes(weights, expected, name)))
    members = []
    for weights, data in verified:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or not a state dict: the same advice either way
            raise ModelError(f"model '{name}': weights file '{weights}' cannot be read: {exc}") from exc
        member = ComplexScorer(schema, config)
        try:
            member.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise ModelError(
                f"model '{name}': '{weights}' does not fit the architecture in {CARD}: {str(exc).splitlines()[0]}"
            ) from exc
        members.append(member.eval())
    return Ensemble(members, schema, config, task, card, folder).to(device)
