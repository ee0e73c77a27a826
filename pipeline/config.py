"""Run configuration: load, fill defaults, validate against ``schema.yaml``.

The workflow validates the config before any rule runs; an unknown key or a value of
the wrong type stops the run with a :class:`ConfigError` whose message names the key
(``docking.exhaustiveness``) and says what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import VscreenError
from .formats import LibraryError, detect_format


class ConfigError(VscreenError, ValueError):
    """The configuration is invalid; the message names the offending key."""


@functools.cache
def _parsed_schema() -> dict:
    # parsed once per process: the CLI reads ~20 flag defaults from it at every start
    return yaml.safe_load(resources.files("pipeline").joinpath("schema.yaml").read_text())


def load_schema() -> dict:
    """Return the JSON schema of a run configuration (parsed ``pipeline/schema.yaml``; a copy the caller owns)."""
    return copy.deepcopy(_parsed_schema())


def _schema_node(section: str) -> dict:
    node = {"properties": _parsed_schema()["properties"]}
    for part in section.split("."):
        node = node["properties"][part]
    return node


def schema_default(section: str, key: str | None = None) -> Any:
    """The default of ``section.key`` (or of the key ``section``) as ``schema.yaml`` gives it.

    ``section`` may be nested with dots (``screen.active``, ``train.pair``). Settings dataclasses
    (through :func:`schema_field`), benchmarks, builds and the CLI's help use the run defaults
    through it, so each default is written once, in ``schema.yaml``.

    Raises
    ------
    KeyError
        The schema has no such key or it has no default.
    """
    node = _schema_node(section)
    return copy.deepcopy(node["default"] if key is None else node["properties"][key]["default"])


def schema_field(section: str, key: str | None = None, convert: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field whose default is :func:`schema_default` of ``section.key``.

    Parameters
    ----------
    section, key
        The config key, as for :func:`schema_default`.
    convert
        Applied to the schema's value (``tuple`` for a list kept in a frozen dataclass).

    Returns
    -------
    dataclasses.Field
        With ``default`` for an immutable value, ``default_factory`` (a fresh copy) for a list or
        mapping.
    """
    value = schema_default(section, key)
    if convert is not None:
        value = convert(value)
    if isinstance(value, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)


def settings_from_mapping(
    cls: type, values: Mapping[str, Any] | None, where: str, strict: bool = False, **extra: Any
) -> Any:
    """A settings dataclass from a mapping of its fields (a config section, a model card's entry).

    Parameters
    ----------
    cls
        A dataclass; its defaults (from :func:`schema_field`) fill the fields ``values`` lacks.
    values
        Field values by name; ``None`` = none.
    where
        The config key of ``values`` (``dask``, ``train.pair``), named in errors.
    strict
        Raise :class:`ConfigError` on a key that is not a field of ``cls``; by default such keys
        (other stages' keys of a shared section) are left out.
    **extra
        Fields that do not come from ``values`` (the run seed, a stage's thread count).

    Returns
    -------
    object
        ``cls(**fields)``.
    """
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if strict and unknown:
        raise ConfigError(f"unknown config key '{where}.{unknown[0]}'; allowed keys here: {', '.join(sorted(names))}")
    return cls(**{**{k: v for k, v in values.items() if k in names}, **extra})


def settings_from_section(
    cls: type, config: Mapping[str, Any], section: str, strict: bool = False, **extra: Any
) -> Any:
    """A settings dataclass from one section of a run config (:func:`settings_from_mapping`).

    ``config`` is a run config (validated and defaulted by :func:`load_config`) or any mapping
    holding ``section``; ``section`` may be nested with dots (``screen.active``).
    """
    values: Mapping[str, Any] = config
    for part in section.split("."):
        values = values.get(part) or {}
    return settings_from_mapping(cls, values, section, strict, **extra)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _describe(error: jsonschema.ValidationError, schema: dict) -> str:
    """One sentence for one schema violation, naming the key and the allowed values."""
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        key = ".".join(filter(None, [where, extra[0] if extra else "?"]))
        return f"unknown config key '{key}'; allowed keys here: {', '.join(allowed)}"
    if error.validator == "required":
        return f"missing config key: {error.message.split(' ')[0]}" + (f" in '{where}'" if where else "")
    if error.validator == "type":
        return f"config key '{where}' must be of type {error.validator_value}, got {error.instance!r}"
    if error.validator == "enum":
        return f"config key '{where}' must be one of {error.validator_value}, got {error.instance!r}"
    return f"config key '{where}': {error.message}"


def fill_defaults(config: dict, schema: dict) -> dict:
    """Return a copy of ``config`` with every schema default filled in (recursively)."""
    out = copy.deepcopy(config)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if sub.get("type") == "object":
            out[key] = fill_defaults(out.get(key) or {}, sub)
    return out


_YAML_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _typed(value: Any, node: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        props = node.get("properties", {})
        return {k: _typed(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v, node.get("items", {})) for v in value]
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    if not isinstance(value, str) or "string" in types or not types:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    wanted = tuple(t for name in types for t in _YAML_TYPES.get(name, ()))
    if isinstance(parsed, bool) and bool not in wanted:
        return value  # 'yes' is not the integer 1
    return parsed if wanted and isinstance(parsed, wanted) else value


def typed_command_line_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the strings that Snakemake's ``--config`` made of nested values given their type.

    ``snakemake --config docking='{exhaustiveness: 16}'`` hands the workflow ``'16'`` (Snakemake
    types only top-level values). A string where ``schema.yaml`` wants a number, a boolean or null
    is read as YAML and kept when it has that type; anything else is left for
    :func:`validate_config` to reject with the key's name.
    """
    return _typed(dict(config), load_schema())


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw config and return it with defaults filled in.

    Raises
    ------
    ConfigError
        On the first violation found, naming the key; also when the receptor or box
        is specified ambiguously.
    """
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_describe(errors[0], schema))
    full = fill_defaults(config, schema)
    _check_choices(full)
    return full


def _check_choices(cfg: dict) -> None:
    rec = cfg["receptor"]
    if bool(rec["path"]) == bool(rec["dockstring"]):
        raise ConfigError(
            "config needs exactly one of 'receptor.path' (a .pdb/.pdbqt file) or 'receptor.dockstring' (a target name)"
        )
    box = cfg["box"]
    given = [k for k in ("center", "reference_ligand", "vina_config") if box.get(k)]
    if len(given) > 1:
        raise ConfigError(f"config keys {given} under 'box' are alternatives; give only one")
    if box.get("center") and not box.get("size"):
        raise ConfigError("config key 'box.size' is required when 'box.center' is given (three edge lengths in Å)")
    if cfg["docking"]["mode"] == "tethered" and not box.get("reference_ligand"):
        raise ConfigError(
            "config key 'docking.mode: tethered' poses compounds like a reference ligand: give it as 'box.reference_ligand'"
        )
    if cfg["docking"]["mode"] == "score_only":
        _check_score_only_library(cfg["library"])
    if not given and not rec["dockstring"]:
        raise ConfigError(
            "config needs a docking box: 'box.center' + 'box.size', 'box.reference_ligand' or 'box.vina_config'"
        )
    refine = cfg["refine"]
    if refine["enabled"] and refine["select_by"] != "docking" and not cfg["score"]["enabled"]:
        raise ConfigError(
            f"config key 'refine.select_by: {refine['select_by']}' chooses the poses for MD by the scorer's "
            "scores: set score.enabled: true, or refine.select_by: docking"
        )


def _check_score_only_library(library: dict) -> None:
    """``docking.mode: score_only`` rescores the poses of an SD file: refuse any other library."""
    fmt = library["format"]
    if fmt == "auto":
        try:
            fmt = detect_format(library["path"])
        except LibraryError:
            fmt = "unknown"
    if fmt != "sdf":
        raise ConfigError(
            f"config key 'docking.mode: score_only' scores the 3D poses of an SD file, but library.path "
            f"'{library['path']}' is {'an' if fmt == 'unknown' else 'a'} {fmt} library: give an .sdf (or .sdf.gz) "
            "whose records carry poses in the receptor's frame, or set library.format: sdf"
        )


def load_config(path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply ``overrides`` (nested dicts merged key by key) and validate it."""
    with open(path) as handle:
        raw = yaml.safe_load(handle) or {}
    if overrides:
        raw = merge(raw, overrides)
    return validate_config(raw)


def merge(base: dict, update: dict) -> dict:
    """Recursively merge ``update`` into a copy of ``base`` (as Snakemake's ``--config`` does)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_resolved_config(config: dict, path: str | Path) -> None:
    """Write the validated config (defaults filled) as YAML, only if it changed.

    Stages that read whole sections (featurize, dask) take this file; leaving it
    untouched when nothing changed keeps a rerun from looking at a newer file.
    """
    from .io import write_text_atomic

    text = yaml.safe_dump(config, sort_keys=True)
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        write_text_atomic(path, text)
