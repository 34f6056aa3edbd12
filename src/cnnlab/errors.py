"""Errors a person can act on.

Every failure that comes from the user's input (a path, a name, a flag, a file) is raised as a
:class:`CnnlabError` whose message says *what* went wrong, *where*, and, when we know it, *what to
do*. The CLI prints that one line to stderr and exits with :attr:`CnnlabError.exit_code`; anything
else is a bug in cnnlab and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(Exception):
    """Base class: one clear line for the user, non-zero exit code for the shell."""

    exit_code = 2


class DataError(CnnlabError):
    """A data set is missing, malformed, corrupt or in the wrong layout."""


class ModelError(CnnlabError):
    """An unknown model name, or a model that cannot be built with the given options."""


class CheckpointError(CnnlabError):
    """A run directory or checkpoint that is missing, incomplete or from another model."""


class ConfigError(CnnlabError):
    """Impossible or conflicting options (negative epochs, unknown config keys, ...)."""


class TrainingError(CnnlabError):
    """Training cannot go on (non-finite loss, a failed rank, ...)."""

    exit_code = 3


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    quoted = " or ".join(f"'{c}'" for c in close)
    return f" (did you mean {quoted}?)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> str:
    """The standard message for an unknown name: suggestion first, then the full list."""
    choices = sorted(choices)
    hint = did_you_mean(name, choices)
    return f"unknown {kind} '{name}'{hint}; choose from: {', '.join(choices)}"
