"""Parameters, multiply-adds and depth of a model — counted, not derived by hand.

Multiply-adds come from PyTorch's :class:`~torch.utils.flop_counter.FlopCounterMode` (one
multiply-add = 2 FLOPs; it counts convolutions and matrix products, which is what papers' tables
count: "FLOPs" in the ResNet paper are multiply-adds). All three counts run on any device,
including ``meta``: a model built under ``torch.device("meta")`` has shapes but no storage, so
a 144 M-parameter VGG is "built" and counted in milliseconds (:func:`model_stats` does that).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakTensorKeyDictionary

try:
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError:  # pragma: no cover - very old torch
    TorchDispatchMode = object  # type: ignore[assignment,misc]


def count_params(model: nn.Module, *, aux: bool = False) -> int:
    """Number of parameters. Training-only auxiliary heads (a model's ``aux_heads``, e.g.
    GoogLeNet's) are left out unless ``aux=True``: the count describes the network that predicts."""
    skip: set[int] = set()
    heads = getattr(model, "aux_heads", None)
    if not aux and isinstance(heads, nn.Module):
        skip = {id(p) for p in heads.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def _example_input(model: nn.Module, input_size) -> torch.Tensor:
    """A batch of one image of ``input_size`` ((C, H, W), (H, W) or H) on the model's device."""
    size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) == 2:
        size = (int(getattr(model, "in_chans", 3)), *size)
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    return torch.zeros(1, *size, device=device)


def eval_forward(model: nn.Module, x: torch.Tensor, mode) -> None:
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), mode:
            model(x)
    finally:
        model.train(was)


def count_macs(model: nn.Module, input_size) -> int:
    """Multiply-adds of one forward pass of one image (eval mode, batch 1, no grad)."""
    counter = FlopCounterMode(display=False)
    eval_forward(model, _example_input(model, input_size), counter)
    return int(counter.get_total_flops()) // 2


_WEIGHTED = {torch.ops.aten.convolution.default, torch.ops.aten.mm.default,
             torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
             torch.ops.aten.baddbmm.default}


class _DepthMode(TorchDispatchMode):
    """Tracks, for every tensor, the longest chain of weighted layers that produced it.

    A tensor computed only from parameters (``weight.t()``, a standardized weight) is a *weight*;
    a convolution or matrix product with a weight operand adds one layer to the deepest of its
    other inputs. Everything else (adds, concatenations, pools) passes the maximum through, so
    parallel branches and shortcuts do not add depth.
    """

    def __init__(self, params) -> None:
        super().__init__()
        self.depth = WeakTensorKeyDictionary()
        self.is_weight = WeakTensorKeyDictionary()
        for p in params:
            self.is_weight[p] = True
        self.max_depth = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        weights = [t for t in inputs if self.is_weight.get(t, False)]
        data = [t for t in inputs if not self.is_weight.get(t, False)]
        depth = max((self.depth.get(t, 0) for t in data), default=0)
        if weights and data and func in _WEIGHTED:
            depth += 1
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                if weights and not data:
                    self.is_weight[t] = True
                else:
                    self.depth[t] = max(depth, self.depth.get(t, 0))
        self.max_depth = max(self.max_depth, depth)
        return out


def count_depth(model: nn.Module, input_size) -> int:
    """Depth as papers count it: weighted (conv / linear) layers on the longest input→output path
    (VGG-16 → 16, ResNet-50 → 50, GoogLeNet → 22, DenseNet-121 → 121)."""
    mode = _DepthMode(model.parameters())
    eval_forward(model, _example_input(model, input_size), mode)
    return mode.max_depth


def count_macs_and_depth(model: nn.Module, input_size) -> tuple[int, int]:
    """:func:`count_macs` and :func:`count_depth` from one forward pass (half the time)."""
    counter, depth = FlopCounterMode(display=False), _DepthMode(model.parameters())
    eval_forward(model, _example_input(model, input_size), _Both(counter, depth))
    return int(counter.get_total_flops()) // 2, depth.max_depth


class _Both:
    """Enter two context managers as one (``eval_forward`` takes one)."""

    def __init__(self, outer, inner) -> None:
        self.outer, self.inner = outer, inner

    def __enter__(self):
        self.outer.__enter__()
        self.inner.__enter__()

    def __exit__(self, *exc):
        self.inner.__exit__(*exc)
        self.outer.__exit__(*exc)


def count_layers(model: nn.Module) -> int:
    """Number of conv and linear modules (shortcut projections and branches included)."""
    heads = getattr(model, "aux_heads", None)
    skip = {id(m) for m in heads.modules()} if isinstance(heads, nn.Module) else set()
    return sum(1 for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and id(m) not in skip)


def model_stats(name: str, *, input_size: tuple[int, int, int] | None = None,
                num_classes: int | None = None, device: str = "meta") -> dict[str, Any]:
    """Build ``name`` (on ``meta`` by default: no memory, no init cost) and count it.

    ``input_size`` is (C, H, W); the defaults are the registered ones. Builders that cannot run
    on ``meta`` (data-dependent code at build time) fall back to the CPU.
    """
    from ..models.registry import create_model, get_spec

    spec = get_spec(name)
    c, h, w = input_size or spec.input_size
    classes = num_classes or spec.num_classes
    kwargs: dict[str, Any] = {"num_classes": classes, "in_chans": c, "input_size": (h, w)}

    def build_and_count(dev: str) -> dict[str, Any]:
        with torch.device(dev):
            model = create_model(spec.name, **kwargs)
        macs, depth = count_macs_and_depth(model, (c, h, w))
        return {"params": count_params(model), "macs": macs, "depth": depth,
                "layers": count_layers(model)}

    try:
        counts = build_and_count(device)
    except (NotImplementedError, RuntimeError):
        if device == "cpu":
            raise
        counts = build_and_count("cpu")
    return {"name": spec.name, "family": spec.family, "paper": spec.paper, "year": spec.year,
            "input_size": [c, h, w], "num_classes": classes, **counts,
            "aliases": list(spec.aliases)}
