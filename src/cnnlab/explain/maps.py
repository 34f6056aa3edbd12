"""Feature maps: the activations of one stage for one image (Zeiler & Fergus 2014, Yosinski et
al. 2015's "deep visualization" live view), channel by channel."""

from __future__ import annotations

import torch
from torch import nn

from .common import as_batch, evaluating, resolve_layer, run_to


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> dict:
    """Activations (C, h, w) of the ``feature_layers()`` stage ``layer`` (default: the first)
    for one image ``x`` in [0, 1]; also the per-channel ``mean`` and ``max`` and the ``top``
    channels by mean activation."""
    x = as_batch(x)
    if x.shape[0] != 1:
        raise ValueError("feature_maps takes one image")
    info = resolve_layer(model, layer, default="first")
    with evaluating(model):
        act = run_to(model, x, info.module)[0].float().cpu()
    if act.dim() == 1:  # a vector stage: show it as C maps of 1×1
        act = act[:, None, None]
    mean = act.mean(dim=(1, 2))
    return {"maps": act, "layer": info.name, "module": info.module, "mean": mean,
            "max": act.amax(dim=(1, 2)), "top": mean.argsort(descending=True)[:9].tolist()}
