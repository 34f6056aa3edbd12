"""Binarized networks: 1-bit weights and activations trained with a straight-through estimator.

* I. Hubara, M. Courbariaux, D. Soudry, R. El-Yaniv, Y. Bengio, "Binarized Neural Networks",
  NIPS 2016 (BNN): weights and activations are ``sign(·)`` in the forward pass; the backward pass
  treats sign as the identity where ``|x| ≤ 1`` and zero elsewhere (the straight-through estimator
  of hard-tanh); real-valued *latent* weights accumulate the updates and are clipped to [-1, 1].
* M. Rastegari, V. Ordonez, J. Redmon, A. Farhadi, "XNOR-Net", ECCV 2016: the binary weights of
  each output channel are scaled by α = mean |W| of that channel (``binary="xnor"``), which
  restores the magnitude a batch-norm-free layer would lose.

Any zoo model becomes binary with the model option ``binary`` (``--model-arg binary=bnn`` or
``binary=xnor``): :func:`binarize` swaps every convolution and linear layer for its binary twin
and every ReLU for a sign activation — except the first convolution (it sees the real image, as in
both papers) and the last linear layer (the classifier), which stay full precision, the usual
choice (Rastegari et al. §4; Hubara et al. keep the first layer's input real). A block that a
max-pool closes (``conv → BN → sign → pool``) becomes ``conv → pool → BN → sign``, the papers'
order (see :class:`PooledBatchNorm2d`: without it nearly every pooled sign is +1). The twins
subclass ``nn.Conv2d``/``nn.Linear`` with the same parameter names, so checkpoints, feature
hooks and the FLOP counter see the same model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .fastconv import FastConv3x3

BINARY_KINDS = ("bnn", "xnor")


class _SignSTE(torch.autograd.Function):
    """sign(x) forward (sign(0) = +1); gradient passed straight through where |x| ≤ 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """±1 with the straight-through gradient when autograd needs it; plain ops otherwise, so an
    inference graph (ONNX, torch.export) holds no custom function."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SignSTE.apply(x)
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class BinaryActivation(nn.Module):
    """The BNN activation: sign with the hard-tanh straight-through gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binary_sign(x)


def _binary_weight(w: torch.Tensor, kind: str) -> torch.Tensor:
    wb = binary_sign(w)
    if kind == "xnor":  # α per output channel, a constant of the forward pass (XNOR-Net eq. 4)
        alpha = w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        wb = wb * alpha
    return wb


class BinaryConv2d(nn.Conv2d):
    """A convolution whose weights are ±1 (× α for XNOR) in the forward pass."""

    def __init__(self, *args, kind: str = "bnn", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _binary_weight(self.weight, self.kind), self.bias)

    @torch.no_grad()
    def enforce_constraint(self) -> None:
        """Clip the latent weights to [-1, 1] (BNN Alg. 1): beyond it the STE passes nothing."""
        self.weight.clamp_(-1.0, 1.0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", binary={self.kind}"


class BinaryLinear(nn.Linear):
    """A fully connected layer whose weights are ±1 (× α for XNOR) in the forward pass."""

    def __init__(self, *args, kind: str = "bnn", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, _binary_weight(self.weight, self.kind), self.bias)

    @torch.no_grad()
    def enforce_constraint(self) -> None:
        self.weight.clamp_(-1.0, 1.0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", binary={self.kind}"


def _twin(m: nn.Module, kind: str) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        new: nn.Module = BinaryConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                      m.padding, m.dilation, m.groups, m.bias is not None,
                                      m.padding_mode, kind=kind)
    else:
        new = BinaryLinear(m.in_features, m.out_features, m.bias is not None, kind=kind)
    new.load_state_dict(m.state_dict())
    new.enforce_constraint()
    return new


class PooledBatchNorm2d(nn.BatchNorm2d):
    """Max-pool, then batch norm: the ``conv → pool → BN → sign`` order of a binary block.

    A full-precision block reads ``conv → BN → ReLU → pool``. With sign in place of ReLU that
    order wastes the block: the max of a window of ±1 values is +1 as soon as one of them is,
    and the BN before the pool centres the pre-pool values, so after the pool nearly every
    activation is +1 and the next layer (or a global max-pool head) sees an almost constant
    input. Hubara et al.'s nets pool first and normalize the pooled values (their
    ``conv → max-pool → BN → binary tanh``), which keeps the signs balanced. Holding the pool
    inside the BN module keeps the parameter names, so a checkpoint maps one to one.
    """

    def __init__(self, bn: nn.BatchNorm2d, pool: nn.MaxPool2d) -> None:
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine,
                         bn.track_running_stats)
        self.load_state_dict(bn.state_dict())
        self.pool = nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                 ceil_mode=pool.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pool(x))


def _in_one_chain(model: nn.Module, names: list[str]) -> bool:
    """True if the leaves ``names`` hang below one common ancestor through nn.Sequential
    containers only — so consecutive leaves in registration order run one after another."""
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    for p in parts:
        for depth in range(common, len(p)):
            container = ".".join(p[:depth])
            if not isinstance(model.get_submodule(container) if container else model,
                              nn.Sequential):
                return False
    return True


def _pool_before_norm(model: nn.Module) -> int:
    """Rewrite every ``BN → sign → max-pool`` run to ``pool → BN → sign``; how many were.

    A run is three consecutive leaves in registration order that hang off nn.Sequential
    containers only (the zoo's stacks, a ResNet stem), so that order is the forward order.
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    done = 0
    for i in range(len(leaves) - 2):
        (bn_name, bn), (act_name, act), (pool_name, pool) = leaves[i:i + 3]
        if not (type(bn) is nn.BatchNorm2d and isinstance(act, BinaryActivation)
                and type(pool) is nn.MaxPool2d):
            continue
        if not _in_one_chain(model, [bn_name, act_name, pool_name]):
            continue
        _set(model, bn_name, PooledBatchNorm2d(bn, pool))
        _set(model, pool_name, nn.Identity())
        done += 1
    return done


def binarize(model: nn.Module, kind: str | bool = "bnn") -> nn.Module:
    """Make ``model`` a binarized network in place (see the module docstring); returns it."""
    if kind is True:
        kind = "bnn"
    if kind not in BINARY_KINDS:
        raise ModelError(f"binary must be one of {', '.join(BINARY_KINDS)} (or true), got "
                         f"'{kind}'")
    names = [n for n, m in model.named_modules()
             if type(m) in (nn.Conv2d, FastConv3x3, nn.Linear) and n != ""]
    convs = [n for n in names if isinstance(model.get_submodule(n), nn.Conv2d)]
    lins = [n for n in names if isinstance(model.get_submodule(n), nn.Linear)]
    keep = {convs[0]} if convs else set()
    if lins:
        keep.add(lins[-1])
    for name in names:
        if name not in keep:
            _set(model, name, _twin(model.get_submodule(name), kind))
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.ReLU):
            _set(model, name, BinaryActivation())
    _pool_before_norm(model)
    model.binary = kind
    return model


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def enforce_binary_constraints(model: nn.Module) -> None:
    """Clip every binary layer's latent weights; the training loop calls it after each step."""
    for m in model.modules():
        if isinstance(m, (BinaryConv2d, BinaryLinear)):
            m.enforce_constraint()


def weight_bits(model: nn.Module, bits: int = 32) -> int:
    """Storage of the weights at inference: 1 bit per binary weight (+ one fp32 α per channel for
    XNOR), ``bits`` per other parameter and buffer-free number."""
    total = 0
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if isinstance(m, (BinaryConv2d, BinaryLinear)):
            total += m.weight.numel() + (32 * m.weight.shape[0] if m.kind == "xnor" else 0)
            own = [p for p in own if p is not m.weight]
        total += bits * sum(p.numel() for p in own)
    return total
