"""Errors a user can act on: each stage raises one of these with a one-sentence message."""

from __future__ import annotations

import importlib

from .box import BoxError
from .config import ConfigError
from .library import LibraryError


def user_errors() -> tuple[type[Exception], ...]:
    """The exception classes whose message is meant for the user (imported only when needed)."""
    errors: list[type[Exception]] = [ConfigError, LibraryError, BoxError]
    for module, name in ((".receptor", "ReceptorError"), (".refine.job", "RefineError"),
                         (".scoring.ensemble", "ModelError"), (".scoring.assay", "AssayError"),
                         (".report.rundata", "ReportError")):
        try:
            errors.append(getattr(importlib.import_module(module, __package__), name))
        except (ImportError, AttributeError):  # an optional engine missing must not break the CLI
            pass
    return tuple(errors)

