"""What the learned kernels look like: first-layer filters as images, deeper ones as norm maps.

First-layer kernels live in pixel space (after the model's own normalization), so they can be
shown as small RGB or grey images (Krizhevsky et al. 2012, Fig. 3). Deeper kernels have one
slice per input channel — too many to look at — so each output channel is shown as the L2 norm
over input channels at each kernel position: where in its window that filter looks.

"First" means first *executed*: the convolutions are ordered by one forward pass, never by the
order of attribute definitions, so any architecture is read correctly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .common import _Stop, evaluating, input_size_of, resolve_layer


def conv_order(model: nn.Module, until: str | None = None) -> list[tuple[str, nn.Conv2d]]:
    """``(path, conv)`` of every ``nn.Conv2d`` in the order one forward pass runs them.

    With ``until`` (a module path) the list ends where that module's forward ends.
    """
    seen: list[tuple[str, nn.Conv2d]] = []
    ids: set[int] = set()

    def make_hook(path: str):
        def hook(module, _inputs, _output):
            if id(module) not in ids:
                ids.add(id(module))
                seen.append((path, module))
        return hook

    def stop(*_):
        raise _Stop

    handles = [m.register_forward_hook(make_hook(p)) for p, m in model.named_modules()
               if isinstance(m, nn.Conv2d)]
    if until is not None:
        handles.append(model.get_submodule(until).register_forward_hook(stop))
    c, h, w = input_size_of(model)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad(), evaluating(model):
            model(torch.full((1, c, h, w), 0.5, device=device))
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return seen


def first_layer_filters(model: nn.Module) -> dict:
    """``weight`` (out, in, kh, kw) of the first convolution run, and its ``path``.

    ``rgb`` is True when the kernels have 3 input channels (shown in colour), ``grey`` when 1.
    """
    convs = conv_order(model)
    if not convs:
        raise ModelError(f"{type(model).__name__} runs no nn.Conv2d: no filters to show")
    path, conv = convs[0]
    weight = conv.weight.detach().float().cpu()
    return {"path": path, "weight": weight, "rgb": weight.shape[1] == 3,
            "grey": weight.shape[1] == 1}


def layer_filters(model: nn.Module, layer: str | None = None) -> dict:
    """The last convolution run up to the stage ``layer``: its ``weight`` and ``norms``
    (out, kh, kw), the L2 norm over input channels at each kernel position."""
    info = resolve_layer(model, layer)
    convs = conv_order(model, until=info.module)
    if not convs:
        raise ModelError(f"no nn.Conv2d runs before layer '{info.name}': no filters to show")
    path, conv = convs[-1]
    weight = conv.weight.detach().float().cpu()
    return {"path": path, "layer": info.name, "weight": weight,
            "norms": weight.pow(2).sum(1).sqrt()}


def filters_as_images(weight: torch.Tensor) -> torch.Tensor:
    """Kernels (out, in, kh, kw) → images in [0, 1], grey 0.5 at weight 0, each scaled by its own
    largest |weight|. 1 or 3 input channels stay one image per filter; other counts give one
    grey image per (filter, input channel), row by row."""
    w = weight.detach().float()
    if w.shape[1] not in (1, 3):
        w = w.reshape(-1, 1, *w.shape[2:])
    peak = w.abs().flatten(1).amax(1).clamp_min(1e-12)
    return (0.5 + 0.5 * w / peak[:, None, None, None]).clamp(0, 1)
