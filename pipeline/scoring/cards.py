"""Model cards: the ``card.json`` of a model folder, its JSON schemas, and reading it.

Both kinds of model folder (the complex-graph GNN of :mod:`.ensemble`, the pair-term scorer
of :mod:`.pair_folder`) describe themselves with a card; this module validates either kind
and imports neither, so both can import it.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VscreenError
from .domain import TRAINING_POCKETS_SCHEMA

#: Scorers a model folder can hold (card key ``architecture``): ``complex``, the GNN of
#: :mod:`~pipeline.scoring.model` on :mod:`pipeline.graphs` graphs (this module; the default when
#: the key is absent), and ``pair``, the pair-term scorer (:mod:`~pipeline.scoring.pair_folder`).
ARCHITECTURES = ("complex", "pair")


TASKS = ("regression", "classification")


CARD = "card.json"


class ModelError(VscreenError, ValueError):
    """A model folder that is missing, unreadable or does not fit this pipeline; the message says which and why."""


_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


_OBJECT_OR_NULL = {"type": ["object", "null"]}
#: Card sections both kinds of card may hold, as an object or null (their content is free-form).
_FREE_FORM_SECTIONS = ("score", "data", "split", "training", "metrics", "baselines", "summary", "metrics_by_target")


#: JSON schema of ``card.json``: the keys :func:`load_ensemble` needs, and the types of the
#: ones it or the report reads; other keys (metrics, baselines, ...) are free-form.
CARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vscreen model card",
    "type": "object",
    "required": ["name", "format", "task", "schema", "model", "members"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "format": {"type": "string"},
        "created": {"type": "string"},
        "task": {"enum": list(TASKS)},
        "heads": {"type": "array", "items": {"type": "string"}},
        "schema": {"type": "object", "properties": {"version": {"type": "string"}}},
        "schema_version": {"type": "string"},
        "model": {"type": "object"},
        "members": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["weights", "sha256"],
                "properties": {
                    "weights": {"type": "string", "minLength": 1},
                    "sha256": _SHA256,
                    "seed": {"type": "integer"},
                },
            },
        },
        "n_models": {"type": "integer", "minimum": 1},
        "parameters": {"type": "integer"},
        "learning_curve": {"type": "string"},
        "versions": {"type": "object"},
        **{key: _OBJECT_OR_NULL for key in (*_FREE_FORM_SECTIONS, "normalization")},
        # descriptors of the training pockets (pipeline.scoring.domain; the score stage's domain check)
        "training_pockets": TRAINING_POCKETS_SCHEMA,
    },
}


#: Card key ``architecture`` of a pair model.
PAIR_ARCHITECTURE = "pair"


#: JSON schema of the ``card.json`` of a pair model: what :func:`load_pair_model` and
#: featurization need, and the types of what the report reads; other keys are free-form.
PAIR_CARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vscreen pair-model card",
    "type": "object",
    "required": ["name", "format", "architecture", "schema", "model", "ensemble", "n_models"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "format": {"type": "string"},
        "architecture": {"const": PAIR_ARCHITECTURE},
        "created": {"type": "string"},
        "task": {"type": "string"},
        "heads": {"type": "array", "items": {"type": "string"}},
        "schema": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}},
        "schema_version": {"type": "string"},
        "model": {"type": "object"},
        "ensemble": {
            "type": "object",
            "required": ["weights", "sha256"],
            "properties": {"weights": {"type": "string", "minLength": 1}, "sha256": _SHA256},
        },
        "n_models": {"type": "integer", "minimum": 1},
        "parameters": {"type": "integer"},
        "versions": {"type": "object"},
        # training on an assay table (pipeline.scoring.pair_finetune): comparison, init_from
        **{key: _OBJECT_OR_NULL for key in (*_FREE_FORM_SECTIONS, "comparison", "init_from")},
        "model_method": {"type": "string"},
        "training_seconds": {"type": "number"},
        "training_pockets": TRAINING_POCKETS_SCHEMA,
    },
}


def model_architecture(card: Mapping[str, Any], path: str | os.PathLike = CARD) -> str:
    """Which scorer a model card describes: one of :data:`ARCHITECTURES`.

    A card without an ``architecture`` key is a complex-graph GNN card (every card written
    before pair models existed).

    Raises
    ------
    ModelError
        For an architecture this pipeline does not know, naming the card.
    """
    kind = card.get("architecture", "complex") if isinstance(card, Mapping) else "complex"
    if kind not in ARCHITECTURES:
        raise ModelError(f"model card '{path}' has architecture {kind!r}; this pipeline reads {list(ARCHITECTURES)}")
    return kind


def validate_card(card: Any, path: str | os.PathLike = CARD) -> dict[str, Any]:
    """Check a parsed card against :data:`CARD_SCHEMA` (or, for a pair model, the pair card schema); returns it.

    Raises
    ------
    ModelError
        Naming the card, the first offending key (``members/1/sha256``) and what is wrong with it.
    """
    import jsonschema

    if model_architecture(card, path) == PAIR_ARCHITECTURE:  # its own schema: one ensemble file, a pair-graph schema
        return validate_pair_card(card, path)
    if not isinstance(card, dict) or "schema" not in card or "task" not in card:
        raise ModelError(f"model card '{path}' is not a vscreen model card (no 'schema' or 'task')")
    validator = jsonschema.Draft202012Validator(CARD_SCHEMA)
    errors = sorted(validator.iter_errors(card), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        first = errors[0]
        where = "/".join(map(str, first.absolute_path)) or "(top level)"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ModelError(
            f"model card '{path}' is invalid at {where}: {first.message}{more}; retrain the model or restore its card"
        )
    if "n_models" in card and card["n_models"] != len(card["members"]):
        raise ModelError(
            f"model card '{path}' says n_models {card['n_models']} but lists {len(card['members'])} members"
        )
    return card


def validate_pair_card(card: Any, path: str | os.PathLike = CARD) -> dict[str, Any]:
    """Check a parsed pair-model card against :data:`PAIR_CARD_SCHEMA`; returns it.

    Raises
    ------
    ModelError
        Naming the card, the first offending key (``ensemble/sha256``) and what is wrong with it.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(PAIR_CARD_SCHEMA)
    errors = sorted(validator.iter_errors(card), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        first = errors[0]
        where = "/".join(map(str, first.absolute_path)) or "(top level)"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ModelError(
            f"pair model card '{path}' is invalid at {where}: {first.message}{more}; "
            "retrain the model or restore its card"
        )
    return card


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed and validated ``card.json`` of a model folder.

    Raises
    ------
    ModelError
        When the card cannot be read or does not match :data:`CARD_SCHEMA` (:func:`validate_card`).
    """
    path = Path(folder) / CARD
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model card '{path}' cannot be read: {exc}") from exc
    return validate_card(card, path)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on (for the card)."""
    import rdkit
    import torch
    import torch_geometric

    from .. import __version__

    return dict(
        vscreen=__version__,
        torch=torch.__version__,
        torch_geometric=torch_geometric.__version__,
        rdkit=rdkit.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
    )
