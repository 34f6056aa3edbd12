"""Model registry: one hop from a name to a typed builder.

Builders are plain keyword-only functions decorated with :func:`register_model`. Registering a
name twice raises (two files silently fighting over ``resnet18`` is the bug this prevents), and an
unknown name gets a "did you mean" suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from ..errors import ModelError, unknown

Builder = Callable[..., Any]


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo table shows about one registered model."""

    name: str
    builder: Builder
    family: str
    paper: str
    year: int
    input_size: tuple[int, int, int]  # default (C, H, W)
    num_classes: int
    aliases: tuple[str, ...] = field(default_factory=tuple)


_MODELS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}
# Parametric name families ("wrn-D-K"): (full-match regex, registered base name, groups → kwargs)
_PATTERNS: list[tuple[re.Pattern[str], str, Callable[..., dict[str, Any]]]] = []


def register_model(
    name: str,
    *,
    family: str,
    paper: str,
    year: int,
    input_size: tuple[int, int, int],
    num_classes: int,
    aliases: tuple[str, ...] = (),
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` (and ``aliases``); duplicates raise."""

    def wrap(builder: Builder) -> Builder:
        for key in (name, *aliases):
            if key in _MODELS or key in _ALIASES:
                raise ValueError(f"model name '{key}' is registered twice")
        _MODELS[name] = ModelSpec(
            name, builder, family, paper, year, tuple(input_size), num_classes, tuple(aliases)
        )
        for alias in aliases:
            _ALIASES[alias] = name
        return builder

    return wrap


def register_pattern(pattern: str, *, base: str, kwargs: Callable[..., dict[str, Any]]) -> None:
    """Accept any name that fully matches ``pattern`` as model ``base`` built with the extra
    builder options ``kwargs(*match.groups())`` (which may raise ModelError for invalid values).
    Registered names win over patterns; ``list_models`` lists only registered names."""
    _PATTERNS.append((re.compile(pattern), base, kwargs))


def _pattern_spec(key: str) -> ModelSpec | None:
    for regex, base, make in _PATTERNS:
        match = regex.fullmatch(key)
        if match:
            spec = _MODELS[base]
            return replace(spec, name=key, aliases=(),
                           builder=partial(spec.builder, **make(*match.groups())))
    return None


def _ensure_loaded() -> None:
    # Importing the package registers every family (each file decorates its builders).
    from . import zoo  # noqa: F401


def resolve_name(name: str) -> str:
    """Canonical model name for ``name`` or an alias; raises ModelError with a suggestion."""
    _ensure_loaded()
    key = name.strip().lower()
    if key in _MODELS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    if _pattern_spec(key) is not None:
        return key
    raise ModelError(unknown("model", name, [*_MODELS, *_ALIASES]))


def get_spec(name: str) -> ModelSpec:
    key = resolve_name(name)
    return _MODELS[key] if key in _MODELS else _pattern_spec(key)


def list_models() -> list[str]:
    """Canonical names of every registered model, sorted."""
    _ensure_loaded()
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build a model by name. ``kwargs`` go to the builder (num_classes, in_chans, input_size, ...).

    Options a builder does not know are a user error (a typo in a config file), not a crash.
    ``binary="bnn"|"xnor"`` works for every model: it binarizes the built net
    (:mod:`cnnlab.models.binary`).
    """
    spec = get_spec(name)
    binary = kwargs.pop("binary", False)
    try:
        model = spec.builder(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "positional argument" in str(exc):
            raise ModelError(f"model '{spec.name}' does not take these options: {exc}") from exc
        raise
    if binary:
        from .binary import binarize

        binarize(model, binary)
    return model
