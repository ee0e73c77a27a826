"""Run configuration: load, fill defaults, validate against ``schema.yaml``.

The workflow validates the config before any rule runs; an unknown key or a value of
the wrong type stops the run with a :class:`ConfigError` whose message names the key
(``docking.exhaustiveness``) and says what is allowed.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import VscreenError


class ConfigError(VscreenError, ValueError):
    """The configuration is invalid; the message names the offending key."""


@functools.cache
def _parsed_schema() -> dict:
    # parsed once per process: the CLI reads ~20 flag defaults from it at every start
    return yaml.safe_load(resources.files("pipeline").joinpath("schema.yaml").read_text())


def load_schema() -> dict:
    """Return the JSON schema of a run configuration (parsed ``pipeline/schema.yaml``; a copy the caller owns)."""
    return copy.deepcopy(_parsed_schema())


def schema_default(section: str, key: str | None = None) -> Any:
    """The default of ``section.key`` (or of the top-level key ``section``) as ``schema.yaml`` gives it.

    Benchmarks, builds and the CLI's flags use the run defaults through it.

    Raises
    ------
    KeyError
        The schema has no such key or it has no default.
    """
    node = _parsed_schema()["properties"][section]
    return copy.deepcopy(node["default"] if key is None else node["properties"][key]["default"])


def settings_from_section(cls: type, config: dict[str, Any], section: str, **extra: Any) -> Any:
    """A settings dataclass from one config section: its fields that the section has, plus ``extra``.

    Keys of the section that are not fields of ``cls`` (other stages' keys) are left out; the
    section's values are already validated and defaulted by :func:`load_config`.
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(config.get(section) or {}).items() if k in names}
    return cls(**{**values, **extra})


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
    from .library import LibraryError, detect_format

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
