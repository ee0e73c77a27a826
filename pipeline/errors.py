"""Errors a user can act on.

Every stage raises a subclass of :class:`VscreenError` with a one-sentence message that
names the file or config key to fix; the ``vscreen`` command prints it on one line and
exits with status 2 (no traceback). Any other exception is a bug or an infrastructure
fault and keeps its traceback.

This module imports nothing from the package, so every module can import it.
"""

from __future__ import annotations

__all__ = ["ReceptorError", "VscreenError", "user_errors"]


class VscreenError(Exception):
    """Base of the errors whose message is meant for the user."""


class ReceptorError(VscreenError, ValueError):
    """A receptor input that cannot be prepared; the message says which file and what to fix.

    Defined here rather than in :mod:`pipeline.receptor` so that the modules the receptor
    package imports (:mod:`pipeline.dockstring_targets`, :mod:`pipeline.box`) can raise it.
    """


def user_errors() -> tuple[type[Exception], ...]:
    """The exception classes whose message is meant for the user."""
    return (VscreenError,)
