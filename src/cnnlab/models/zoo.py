"""Imports every model family so their builders register. Add one line per new family file."""

from . import simple  # noqa: F401
