"""Errors a user can act on: each stage raises one of these with a one-sentence message."""

from __future__ import annotations

from .box import BoxError
from .config import ConfigError
from .library import LibraryError


def _user_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [ConfigError, LibraryError, BoxError]
    try:
        from .receptor import ReceptorError

        errors.append(ReceptorError)
    except ImportError:  # receptor stage imports heavy engines; keep the CLI usable without them
        pass
    return tuple(errors)


USER_ERRORS = _user_errors()
