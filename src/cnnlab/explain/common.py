"""What every explanation method shares: layers by name, captured activations, ReLU backward rules.

Everything here goes through the model contract (GUIDE.md §2) and generic ``nn.Module`` hooks, so
it works for every zoo model without a per-architecture branch:

* layers are the ``feature_layers()`` stages, found with ``get_submodule(info.module)``;
* activations are captured with forward hooks (optionally stopping the forward pass there);
* the ReLU backward rules of guided backprop and the deconvnet replace every ReLU *call* of a
  forward pass (``nn.ReLU`` modules and functional ``F.relu``/``torch.relu`` alike) through a
  ``TorchFunctionMode`` for the duration of a ``with`` block — module hooks alone would miss
  functional calls, which some zoo models use inside their blocks.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import ConfigError, ModelError, did_you_mean

RULES = ("backprop", "guided", "deconv")


def feature_layers(model: nn.Module) -> list[Any]:
    """The model's named stages; a model without ``feature_layers()`` breaks the contract."""
    if not hasattr(model, "feature_layers"):
        raise ModelError(f"{type(model).__name__} has no feature_layers(): it does not keep the "
                         "cnnlab model contract")
    return list(model.feature_layers())


def resolve_layer(model: nn.Module, name: str | None, default: str = "last"):
    """The ``FeatureInfo`` called ``name`` (``None`` → the first or last stage).

    An unknown name is a :class:`ConfigError` that lists the valid names, in depth order.
    """
    layers = feature_layers(model)
    if not layers:
        raise ModelError(f"{type(model).__name__}.feature_layers() is empty")
    if name is None:
        return layers[0] if default == "first" else layers[-1]
    for info in layers:
        if info.name == name or info.module == name:
            return info
    names = [info.name for info in layers]
    raise ConfigError(f"unknown layer '{name}'{did_you_mean(name, names)}; this model's layers "
                      f"(feature_layers()) are: {', '.join(names)}")


def check_channel(info, channel: int | None, channels: int | None = None) -> None:
    """Raise a :class:`ConfigError` for a channel outside ``[0, channels)``."""
    n = info.channels if channels is None else channels
    if channel is not None and not 0 <= channel < n:
        raise ConfigError(f"--channel {channel} is out of range: layer '{info.name}' has {n} "
                          f"channels (0–{n - 1})")


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """A detached float batch (N, C, H, W); a single (C, H, W) image gets a batch axis."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError("expected an image (C, H, W) or a batch (N, C, H, W), "
                         f"got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return x.detach().float()


class _Stop(Exception):
    """Raised inside a forward hook to end the forward pass early (nothing after it is needed)."""


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BN statistics, no dropout) for the block, the previous mode restored after."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@contextlib.contextmanager
def capture(model: nn.Module, path: str, *, stop: bool = False) -> Iterator[dict]:
    """Record the output of module ``path`` in ``store["act"]`` while the block runs.

    Downstream layers get a *clone* of the output: a later in-place op (``ReLU(inplace=True)``,
    ``out += shortcut``) then cannot change the recorded tensor or break gradients taken with
    respect to it. With ``stop=True`` the forward pass ends right after the module (use
    :func:`run_to`), which saves the rest of the network's compute.
    """
    module = model.get_submodule(path)
    store: dict = {}

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ModelError(f"layer '{path}' returns {type(output).__name__}, not a tensor")
        store["act"] = output
        if stop:
            raise _Stop
        return output.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def run_to(model: nn.Module, x: torch.Tensor, path: str) -> torch.Tensor:
    """The output of module ``path`` for input ``x``, without running the layers after it."""
    with capture(model, path, stop=True) as store, contextlib.suppress(_Stop):
        model(x)
    if "act" not in store:
        raise ModelError(f"layer '{path}' was not called in {type(model).__name__}.forward")
    return store["act"]


class _RuleReLU(torch.autograd.Function):
    """ReLU whose forward is the usual one and whose backward follows ``rule``.

    * ``backprop``: g · [x > 0] (the true gradient);
    * ``guided``: g · [x > 0] · [g > 0] (Springenberg et al. 2014, guided backpropagation);
    * ``deconv``: g · [g > 0] — the deconvnet's ReLU on the backward signal (Zeiler & Fergus 2014).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str) -> torch.Tensor:
        mask = x > 0
        ctx.rule = rule
        ctx.save_for_backward(mask)  # the mask, not x: x may be changed in place afterwards
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (mask,) = ctx.saved_tensors
        if ctx.rule == "guided":
            return g.clamp(min=0) * mask, None
        if ctx.rule == "deconv":
            return g.clamp(min=0), None
        return g * mask, None


# Every way a forward pass can apply a ReLU: nn.ReLU calls F.relu; F.relu_ is torch.relu_.
_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_INPLACE = {torch.relu_, torch.Tensor.relu_}


class _ReluRuleMode(TorchFunctionMode):
    """Replaces every ReLU call of the forward pass with :class:`_RuleReLU` (same forward)."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _RELUS:
            return func(*args, **kwargs)
        self.count += 1
        x = args[0]
        out = _RuleReLU.apply(x, self.rule)
        if func in _INPLACE or kwargs.get("inplace", False):
            return x.copy_(out)  # keep the in-place contract: callers may ignore the result
        return out


@contextlib.contextmanager
def relu_rule(model: nn.Module, rule: str) -> Iterator[_ReluRuleMode]:
    """Give every ReLU the backward ``rule`` for the forward passes run in the block.

    A :class:`~torch.overrides.TorchFunctionMode` intercepts ``F.relu``, ``torch.relu``,
    ``Tensor.relu`` and their in-place forms — ``nn.ReLU`` modules call ``F.relu`` — so any model
    is covered, whether it uses modules or functional calls. The mode's ``count`` says how many
    ReLUs ran; a warning says when none did (other activations get their true gradient).
    """
    if rule not in RULES:
        raise ValueError(f"unknown ReLU rule '{rule}'; choose from {', '.join(RULES)}")
    mode = _ReluRuleMode(rule)
    with mode:
        yield mode
    if mode.count == 0 and rule != "backprop":
        warnings.warn(f"{type(model).__name__} ran no ReLU, so the '{rule}' rule changed "
                      "nothing: its other activations pass their true gradient", stacklevel=3)


def input_size_of(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the model was built for (``in_chans`` and ``input_size`` of the contract)."""
    try:
        return (int(model.in_chans), *(int(s) for s in model.input_size))  # type: ignore[return-value]
    except AttributeError as exc:
        raise ModelError(f"{type(model).__name__} lacks in_chans/input_size: it does not keep "
                         "the cnnlab model contract") from exc


def targets_for(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Class index per sample: ``target`` (an int or one per sample), or the predicted class."""
    n, k = logits.shape
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1).expand(n).clone()
    if (t < 0).any() or (t >= k).any():
        raise ConfigError(f"target class {t.tolist()} is out of range: the model has {k} classes")
    return t
