"""Model folders of the pair-term scorer: write one, check one, load it for the score stage.

A pair model folder (``models/<name>/``) holds

* ``ensemble.pt`` - every member of a :class:`~pipeline.scoring.pair_train.PairEnsemble`
  in one file (:func:`~pipeline.scoring.pair_train.save_pair_ensemble`: state dicts,
  schema, config, settings; tensors, strings and numbers only);
* ``card.json`` - ``architecture: "pair"`` and ``format`` :data:`PAIR_MODEL_FORMAT` (this
  is how a run knows its model is a pair model), the pair-graph schema the model reads
  (featurization builds the run's graphs with it, before any weights are read), the
  hyperparameters, ``ensemble`` (the file name and its SHA-256), ``n_models``, what the
  scores mean, library versions and whatever training adds (:data:`pipeline.scoring.cards.PAIR_CARD_SCHEMA`);
  optionally ``training_pockets``, the descriptors of the pockets the model was trained on
  (:class:`~pipeline.scoring.domain.TrainingPockets`): the score stage measures the run's
  pocket against them, and the ranking falls back to docking when it is far from all of them.
  They live in the card, which is read and validated before anything else, so they need no
  digest of their own; a folder written without them loads, and its runs say that no
  training pockets are recorded.

The safety rules of :mod:`pipeline.scoring.ensemble` hold here too, since a folder is data
from elsewhere: the card is validated against its JSON schema, the ensemble path must lie
inside the folder (no absolute path, no ``..``, no symlink out), its SHA-256 must equal the
card's, the bytes that were hashed are the bytes unpickled, with ``weights_only=True``, and
torch older than :data:`~pipeline.scoring.ensemble.MIN_TORCH` is refused.

:func:`load_pair_model` returns a :class:`PairModel`, which the score stage uses as it uses
an :class:`~pipeline.scoring.ensemble.Ensemble`: ``schema``, ``name``, ``to``, ``score``.
Its columns (:data:`~pipeline.scoring.ensemble.SCORE_COLUMNS`):

* ``affinity`` / ``affinity_spread`` - ensemble mean / std (ddof 0) of the pair score,
  kcal/mol-like and LOWER = better (Vina's score of the pose for an untrained model);
* ``gnn_score`` = ``-affinity`` (so that higher = more likely active, the convention the
  ranking sorts by) and ``gnn_spread`` = ``affinity_spread``;
* ``p_active`` / ``p_active_spread`` - mean / std over members of ``sigmoid(logit)``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import schema_default
from ..io import staging_dir
from ..pair_graphs import SCHEMA_VERSION as PAIR_SCHEMA_VERSION
from ..pair_graphs import PairGraphSchema
from .cards import CARD, PAIR_ARCHITECTURE, ModelError, library_versions, model_architecture, read_card
from .domain import TrainingPockets
from .ensemble import (
    MemberSet,
    _check_torch,
    _sha256,
    member_weights,
    replace_folder,
    resolve_model_dir,
    to_jsonable,
    verified_bytes,
)
from .pair_model import PairModelConfig, PairScorer
from .pair_train import PairEnsemble, pair_ensemble_from_payload, save_pair_ensemble

#: Layout version of a pair model folder (card key ``format``).
PAIR_MODEL_FORMAT = "vscreen-pair-model/1"
#: File name of the ensemble inside the folder.
ENSEMBLE_FILE = "ensemble.pt"
#: What the score columns of a pair model mean (the report shows it next to the model's name).
SCORE_MEANING = (
    "gnn_score is minus the ensemble-mean sum of learned Vina-shaped atom-pair energies "
    "(higher = more likely active); affinity is that energy itself (kcal/mol-like, lower = better)"
)


# --------------------------------------------------------------------------- the card


def pair_schema_of_card(card: Mapping[str, Any], name: str = "model", folder: str | os.PathLike | None = None):
    """The pair-graph schema a pair model reads, from its (validated) card.

    Raises
    ------
    ModelError
        When the card's folder format or schema version is not the one this pipeline reads
        (its graphs would be built with other features), or the schema is malformed.
    """
    where = f" (model folder '{folder}')" if folder is not None else ""
    if card.get("format") != PAIR_MODEL_FORMAT:
        raise ModelError(
            f"model '{name}' has folder format {card.get('format')!r}, this pipeline reads "
            f"{PAIR_MODEL_FORMAT}; retrain it{where}"
        )
    version = card["schema"].get("version")
    if version != PAIR_SCHEMA_VERSION:
        raise ModelError(
            f"model '{name}' reads pair graphs of schema {version} but this pipeline builds "
            f"{PAIR_SCHEMA_VERSION}; retrain it on graphs from this pipeline{where}"
        )
    try:
        return PairGraphSchema.from_dict(card["schema"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{name}': the pair-graph schema in {CARD} is invalid: {exc}{where}") from exc


def pair_schema_for(score: Mapping[str, Any]) -> PairGraphSchema | None:
    """The pair-graph schema featurization must write for a run, or ``None`` for complex graphs.

    Parameters
    ----------
    score
        The ``score`` section of a validated run config (``enabled``, ``model``, ``models_dir``).

    Returns
    -------
    PairGraphSchema or None
        The schema of the model when ``score.model`` is a pair model and scoring is on;
        ``None`` (graphs of :mod:`pipeline.graphs`, as always) otherwise, also when the model
        cannot be found or read: the score stage (and the workflow's check before any job)
        reports that problem with its own message, and a training run never needs the model.

    Raises
    ------
    ModelError
        When the card says pair but its format or schema version is not this pipeline's.
    """
    if not score.get("enabled", True):
        return None
    try:
        folder = resolve_model_dir(score["model"], score.get("models_dir"))
        card = read_card(folder)
    except ModelError:
        return None
    if model_architecture(card, folder / CARD) != PAIR_ARCHITECTURE:
        return None
    return pair_schema_of_card(card, card.get("name") or folder.name, folder)


def pretrained_pair_card(
    init_from: str | os.PathLike, models_dir: str | os.PathLike | None = None
) -> tuple[Path, dict[str, Any]]:
    """The folder and validated card of the pair model ``train.init_from`` names (a model to fine-tune).

    Parameters
    ----------
    init_from
        A model name under ``models_dir`` or a model folder.
    models_dir
        Where names are looked up (``train.models_dir``).

    Raises
    ------
    ModelError
        When the model is missing, its card unreadable, it is not a pair model, or its folder
        format or pair-graph schema version is not this pipeline's; the message names
        ``train.init_from``.
    """
    try:
        folder = resolve_model_dir(init_from, models_dir)
        card = read_card(folder)
    except ModelError as exc:
        raise ModelError(f"train.init_from: {exc}") from None
    name = card.get("name") or folder.name
    if model_architecture(card, folder / CARD) != PAIR_ARCHITECTURE:
        raise ModelError(
            f"train.init_from: model '{name}' ({folder}) is not a pair model (its card has no architecture "
            "'pair'); only a pair model can be fine-tuned with train.scorer: pair"
        )
    pair_schema_of_card(card, name, folder)
    return folder, card


def pair_schema_for_run(cfg: Mapping[str, Any]) -> PairGraphSchema | None:
    """The pair-graph schema featurization writes for a run, or ``None`` for complex graphs.

    The one decision that ``vscreen featurize`` and the workflow's featurize rules share (so
    the graphs a run has are the ones its last stage reads):

    * a training run (``train.name`` set: ``snakemake train``) gets the graphs of the scorer it
      trains: ``train.scorer: pair`` the pair graphs of the model in ``train.init_from`` (its
      card's schema: fine-tuning needs the features it was trained on) or, from scratch,
      :data:`~pipeline.pair_graphs.DEFAULT_PAIR_SCHEMA`; ``train.scorer: complex`` complex graphs;
    * any other run the graphs of ``score.model`` (:func:`pair_schema_for`).

    Parameters
    ----------
    cfg
        A validated run config (defaults filled).

    Raises
    ------
    ModelError
        When ``train.init_from`` is missing or not a readable pair model of this pipeline's
        schema version, or ``score.model`` says pair with a format this pipeline does not read.
    ConfigError
        ``train.init_from`` set with ``train.scorer: complex``.
    """
    train = cfg.get("train") or {}
    if train.get("name"):
        if train.get("scorer", schema_default("train", "scorer")) != PAIR_ARCHITECTURE:
            if train.get("init_from"):  # stop before any docking, not after it
                from ..config import ConfigError

                raise ConfigError(
                    f"train.init_from ({train['init_from']!r}) fine-tunes a pair model: it needs train.scorer: pair"
                )
            return None
        if not train.get("init_from"):
            from ..pair_graphs import DEFAULT_PAIR_SCHEMA

            return DEFAULT_PAIR_SCHEMA
        folder, card = pretrained_pair_card(train["init_from"], train.get("models_dir"))
        return pair_schema_of_card(card, card.get("name") or folder.name, folder)
    return pair_schema_for(cfg["score"])


# --------------------------------------------------------------------------- writing


def save_pair_model(
    ensemble: PairEnsemble,
    out_dir: str | os.PathLike,
    card: Mapping[str, Any] | None = None,
    pockets: TrainingPockets | Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a pair model folder: ``ensemble.pt`` and ``card.json`` with the file's SHA-256.

    Parameters
    ----------
    ensemble
        The fitted (or, for tests, untrained) ensemble; every member has the same schema and config.
    out_dir
        The model folder (``models/<name>``); its name is the model's name unless ``card`` has one.
        It is assembled next to ``out_dir`` and renamed into place, so a killed job never leaves a
        half-written model; an existing folder is replaced.
    card
        Extra card entries (data, metrics, ...); the keys this function writes win over them
        except ``name``, ``task`` and ``score``.
    pockets
        The training pockets (:class:`~pipeline.scoring.domain.TrainingPockets`, or
        ``{name: descriptor}`` from :func:`~pipeline.scoring.domain.pocket_descriptor`), stored
        as the card's ``training_pockets``; ``None`` keeps what ``card`` has (usually none).

    Returns
    -------
    Path
        ``out_dir``.
    """
    if not ensemble.members:
        raise ValueError("a pair ensemble needs at least one member")
    first = ensemble.members[0]
    if any(m.schema != first.schema or m.config != first.config for m in ensemble.members):
        raise ValueError("every member of a pair ensemble must have the same schema and config")
    out = Path(out_dir)
    tmp = staging_dir(out)
    try:
        info = dict(card or {})
        info.setdefault("name", out.name)
        info.setdefault("task", "pair energy")
        info.setdefault("score", dict(meaning=SCORE_MEANING))
        if pockets is not None:
            pockets = pockets if isinstance(pockets, TrainingPockets) else TrainingPockets.of(pockets)
            info["training_pockets"] = pockets.to_card()
        weights = tmp / ENSEMBLE_FILE
        save_pair_ensemble(weights, ensemble, card={"name": info["name"]})
        info.update(
            format=PAIR_MODEL_FORMAT,
            architecture=PAIR_ARCHITECTURE,
            created=info.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            heads=["affinity", "active"],
            schema=first.schema.to_dict(),
            schema_version=first.schema.version,
            model=first.config.to_dict(),
            ensemble=dict(weights=ENSEMBLE_FILE, sha256=_sha256(weights)),
            n_models=len(ensemble.members),
            parameters=int(sum(p.numel() for p in first.parameters() if p.requires_grad)),
            # a trainer's own training record (pipeline.scoring.pair_finetune) is kept beside these
            training={
                **dict(info.get("training") or {}),
                "settings": ensemble.settings.to_dict(),
                "best_epochs": [h.best_epoch for h in ensemble.histories],
            },
            versions=library_versions(),
        )
        from ..io import write_text_atomic

        write_text_atomic(tmp / CARD, json.dumps(to_jsonable(info), indent=1) + "\n")
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- the loaded model


class PairModel(MemberSet):
    """A loaded pair ensemble as the score stage uses it (see the module docstring for the columns).

    Parameters
    ----------
    members
        The :class:`~pipeline.scoring.pair_model.PairScorer` members (same schema and config).
    schema
        The pair-graph schema they read.
    card
        The model card.
    path
        Folder it was loaded from, if any.
    """

    architecture = PAIR_ARCHITECTURE

    def __init__(
        self,
        members: Sequence[PairScorer],
        schema: PairGraphSchema,
        card: Mapping[str, Any] | None = None,
        path: str | os.PathLike | None = None,
    ) -> None:
        if not members:
            raise ValueError("a pair model needs at least one member")
        self.members, self.schema = list(members), schema
        self.card = dict(card or {})
        self.path = Path(path) if path is not None else None

    @property
    def training_pockets(self) -> TrainingPockets | None:
        """The pockets the model was trained on, from its card; ``None`` for a folder that records none."""
        return TrainingPockets.from_card(self.card)

    @torch.inference_mode()
    def predict(
        self, graphs: Sequence, batch_size: int = schema_default("score", "batch_size")
    ) -> dict[str, np.ndarray]:
        """Per member: ``score`` (kcal/mol-like, lower = better) and ``logit``, float64 arrays (K, len(graphs)).

        Batches are consecutive slices of ``graphs``, so a list gives the same numbers wherever it is scored.
        """
        from torch_geometric.data import Batch

        device = self.device
        k, n = len(self.members), len(graphs)
        out = {"score": np.zeros((k, n)), "logit": np.zeros((k, n))}
        for start in range(0, n, max(1, batch_size)):
            batch = Batch.from_data_list(list(graphs[start : start + batch_size])).to(device)
            stop = start + batch.num_graphs
            for m, member in enumerate(self.members):
                result = member.eval()(batch)
                out["score"][m, start:stop] = result["score"].double().cpu().numpy()
                out["logit"][m, start:stop] = result["logit"].double().cpu().numpy()
        return out

    @staticmethod
    def summarize(predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The score columns from :meth:`predict`'s member outputs (means and std over members, ddof 0)."""
        score = predictions["score"]
        prob = 1.0 / (1.0 + np.exp(-predictions["logit"]))
        return dict(
            gnn_score=-score.mean(0),
            gnn_spread=score.std(0),
            affinity=score.mean(0),
            affinity_spread=score.std(0),
            p_active=prob.mean(0),
            p_active_spread=prob.std(0),
        )


def load_pair_model(
    path: str | os.PathLike, device: str = "cpu", models_dir: str | os.PathLike | None = None
) -> PairModel:
    """Load a pair model folder written by :func:`save_pair_model`.

    Parameters
    ----------
    path
        Model folder, or a model name looked up under ``models_dir``.
    device
        Where the members go (``cpu``, ``cuda``, ...).
    models_dir
        Where names are looked up (default ``models/`` in the working directory).

    Raises
    ------
    ModelError
        Missing folder (the message lists the available models), a card that is unreadable,
        invalid or not a pair card, a folder format or schema version this pipeline does not
        read, an ensemble path outside the folder, an ensemble file whose SHA-256 differs from
        the card's, an unreadable file, weights that do not fit the card's schema and
        hyperparameters, or torch older than :data:`~pipeline.scoring.ensemble.MIN_TORCH`.
    """
    folder = resolve_model_dir(path, models_dir)
    card = read_card(folder)
    name = card.get("name") or folder.name
    if model_architecture(card, folder / CARD) != PAIR_ARCHITECTURE:
        raise ModelError(f"model '{name}' ({folder}) is not a pair model (its card has no architecture 'pair')")
    schema = pair_schema_of_card(card, name, folder)
    try:
        config = PairModelConfig.from_dict(card["model"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{name}' ({folder}): hyperparameters in {CARD} are invalid: {exc}") from exc
    _check_torch()
    # the path is checked, then the digest, before anything is unpickled; the bytes that were
    # hashed are the bytes that are loaded (no window to swap the file in between)
    ((weights, expected),) = member_weights(folder, {"members": [card["ensemble"]]}, name)
    data = verified_bytes(weights, expected, name, what="ensemble file")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        ensemble, _ = pair_ensemble_from_payload(payload, weights)
    except Exception as exc:  # corrupt, not a pair ensemble, or weights of another shape: the same advice
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model '{name}': ensemble file '{weights}' cannot be loaded: {first}") from exc
    # the card is what featurization built the graphs with: the weights must be for that model
    member = ensemble.members[0]
    if member.schema != schema or member.config != config:
        raise ModelError(
            f"model '{name}': ensemble file '{weights}' holds a model of another schema or hyperparameters "
            f"than {CARD} records; restore the card or retrain"
        )
    if len(ensemble.members) != card["n_models"]:
        raise ModelError(
            f"model '{name}': {CARD} says n_models {card['n_models']} but '{weights}' holds "
            f"{len(ensemble.members)} members"
        )
    return PairModel(ensemble.members, schema, card, folder).to(device)
