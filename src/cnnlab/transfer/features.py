"""Frozen-backbone features: a layer's activations, global-average-pooled and L2-normalized.

The layers are the model's ``feature_layers()`` stages plus ``head-input`` (the output of
``forward_features``, what the classifier sees). Activations are caught with forward hooks, pooled
inside the hook (so a later in-place op cannot change them), one batched forward per batch for
all requested layers at once, in eval mode under ``no_grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Split
from ..errors import ConfigError, did_you_mean
from ..explain.common import evaluating, feature_layers

HEAD_INPUT = "head-input"


def layer_names(model: nn.Module) -> list[str]:
    """Every layer ``--layer`` accepts, in depth order."""
    return [info.name for info in feature_layers(model)] + [HEAD_INPUT]


def resolve_layers(model: nn.Module, layer: str | Sequence[str] | None) -> list[str]:
    """``None`` → ``[head-input]``; ``"all"`` → every layer; else the named ones (checked)."""
    names = layer_names(model)
    if layer is None:
        return [HEAD_INPUT]
    if isinstance(layer, str):
        if layer == "all":
            return names
        layer = [part.strip() for part in layer.split(",")]
    modules = {info.module: info.name for info in feature_layers(model)}
    out = []
    for name in layer:
        name = modules.get(name, name)
        if name not in names:
            raise ConfigError(f"unknown layer '{name}'{did_you_mean(name, names)}; this "
                              f"backbone's layers are: {', '.join(names)} (or 'all')")
        out.append(name)
    return out


def pool_normalize(act: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → global average pool → (N, C); (N, D) stays; then unit L2 norm per row."""
    act = act.detach().float()
    if act.dim() == 4:
        act = act.mean(dim=(2, 3))
    return F.normalize(act.flatten(1), dim=1)


@torch.no_grad()
def extract_features(model: nn.Module, split: Split, layers: str | Sequence[str] | None = None,
                     batch_size: int = 256) -> dict[str, np.ndarray]:
    """``{layer: float32 array (N, C)}`` for the images of ``split`` (uint8 or float [0, 1])."""
    names = resolve_layers(model, layers)
    paths = {info.name: info.module for info in feature_layers(model)}
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        if name == HEAD_INPUT:
            continue

        def hook(_m, _i, out, name=name):
            store[name] = pool_normalize(out)

        handles.append(model.get_submodule(paths[name]).register_forward_hook(hook))
    try:
        with evaluating(model):
            for i in range(0, len(split), batch_size):
                x = split.images[i:i + batch_size]
                x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
                store.clear()
                f = model.forward_features(x)
                if any(n not in store for n in names if n != HEAD_INPUT):
                    model.forward_head(f)  # a stage that lives in the head
                store[HEAD_INPUT] = pool_normalize(f)
                for n in names:
                    if n not in store:
                        raise ConfigError(f"layer '{n}' ({paths[n]}) was not called in "
                                          f"{type(model).__name__}.forward")
                    chunks[n].append(store[n])
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(chunks[n]).numpy() for n in names}
