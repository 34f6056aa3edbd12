"""cnnlab's optimizers: torch.optim's arithmetic without torch.optim's import of the compiler.

Why not ``torch.optim`` as it is: in torch 2.13 four of ``Optimizer``'s methods
(``add_param_group``, ``zero_grad``, ``state_dict``, ``load_state_dict``) are wrapped in
``torch._disable_dynamo`` and every built-in ``step`` in ``_use_grad_for_differentiable``, and
each wrapper runs ``import torch._dynamo`` on its first call — the compiler stack, 1.5 s of a
2-core machine's time, in every training run that never compiles anything (traced with an
import hook; ~7 % of the MNIST speed-run's wall time). The wrappers only matter when
torch.compile traces the optimizer itself, which cnnlab never does (``--compile`` compiles the
model). :class:`EagerOptimizer` therefore calls the methods underneath the wrappers;
:class:`SGD` does its update with the kernel ``torch.optim.SGD(fused=True)`` runs, bit for bit
(tests/train/test_eager.py), which also makes the step ~10x cheaper for small nets; and
:class:`Adam`/:class:`AdamW` run torch's own ``step`` from under its wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def _unwrapped(method: Callable) -> Callable:
    """The function under torch's lazy ``_disable_dynamo`` wrapper (itself if there is none)."""
    return getattr(method, "__wrapped__", method)


class EagerOptimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` without its lazy import of torch._dynamo (see the module
    docstring): the same methods, state-dict format and hooks, for optimizers that are never
    traced by torch.compile. Subclasses write :meth:`update`, the step proper; ``step`` runs the
    closure (if any) with gradients on, then ``update`` without."""

    add_param_group = _unwrapped(torch.optim.Optimizer.add_param_group)
    zero_grad = _unwrapped(torch.optim.Optimizer.zero_grad)
    state_dict = _unwrapped(torch.optim.Optimizer.state_dict)
    load_state_dict = _unwrapped(torch.optim.Optimizer.load_state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update()
        return loss

    def update(self) -> None:
        """Change the parameters in place from their ``.grad`` (gradients off)."""
        raise NotImplementedError

    @staticmethod
    def check_lr_momentum(lr: float, momentum: float) -> None:
        """The checks every momentum-SGD-like optimizer here makes of its arguments."""
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")


class SGD(EagerOptimizer):
    """Stochastic gradient descent with momentum (optionally Nesterov) and L2 weight decay:
    ``torch.optim.SGD``'s update with dampening 0 — ``d = g + wd·p``; ``buf ← m·buf + d``
    (``buf = d`` on the first step); ``d = d + m·buf`` with Nesterov, else ``buf``;
    ``p ← p − lr·d`` — for a whole group in one call (see :func:`sgd_update`). The state dict
    is ``torch.optim.SGD``'s (``momentum_buffer`` per parameter), so a run checkpointed with
    ``torch.optim.SGD`` resumes here."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        self.check_lr_momentum(lr, momentum)
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay))

    def update(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                sgd_update(params, [p.grad for p in params], self.state, group["lr"],
                           group["momentum"], group["nesterov"], group["weight_decay"])


def _dense(t: torch.Tensor) -> bool:
    """Every element stored once, without gaps (contiguous in some dimension order)."""
    return t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)


def _fusable(params: list[torch.Tensor], grads: list[torch.Tensor],
             bufs: list[torch.Tensor]) -> bool:
    """Whether torch's fused SGD kernel takes these lists: one device and dtype, dense
    tensors, and each parameter's gradient and buffer laid out as the parameter is (the kernel
    walks the three in memory order, so a channels-last filter needs a channels-last grad)."""
    if not hasattr(torch, "_fused_sgd_"):
        return False
    first = params[0]
    for p, g, b in zip(params, grads, bufs or params, strict=True):
        for t in (p, g, b):
            if t.is_sparse or t.device != first.device or t.dtype != first.dtype:
                return False
        if g.stride() != p.stride() or b.stride() != p.stride() or not _dense(p):
            return False
    return first.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def sgd_update(params: list[torch.Tensor], grads: list[torch.Tensor], state: dict,
               lr: float, momentum: float, nesterov: bool, weight_decay: float) -> None:
    """One SGD step for ``params`` in place (see :class:`SGD`); ``state[p]["momentum_buffer"]``
    is created on the first step. The gradients are left as they are.

    Where it can, one call to the kernel behind ``torch.optim.SGD(fused=True)``: the same
    arithmetic in one pass over each tensor, 49 instead of ~460 µs for the MNIST speed-run
    net's 14 tensors (2 cores) — 6 % of its training step. Otherwise ``torch._foreach_*`` ops
    (several passes, one call per op)."""
    bufs: list[torch.Tensor] = []
    first = False
    if momentum:
        found = [state[p].get("momentum_buffer") for p in params]
        first = all(b is None for b in found)
        if first:
            bufs = [torch.empty_like(g) for g in grads]
        elif all(b is not None for b in found):
            bufs = found  # type: ignore[assignment]
    if (not momentum or bufs) and _fusable(params, grads, bufs):
        torch._fused_sgd_(params, grads, bufs, weight_decay=weight_decay, momentum=momentum,
                          lr=lr, dampening=0.0, nesterov=nesterov, maximize=False,
                          is_first_step=first)
        if first:
            for p, b in zip(params, bufs, strict=True):
                state[p]["momentum_buffer"] = b
        return
    _foreach_update(params, grads, state, lr, momentum, nesterov, weight_decay)


def _foreach_update(params: list[torch.Tensor], grads: list[torch.Tensor], state: dict,
                    lr: float, momentum: float, nesterov: bool, weight_decay: float) -> None:
    """:func:`sgd_update` in ``torch._foreach_*`` ops (torch.optim.SGD's unfused arithmetic)."""
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum:
        bufs = [state[p].get("momentum_buffer") for p in params]
        if any(b is None for b in bufs):  # first step (or a parameter new to the group)
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                if bufs[i] is None:
                    bufs[i] = state[p]["momentum_buffer"] = g.detach().clone()
                else:
                    bufs[i].mul_(momentum).add_(g)
        else:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_add_(params, grads, alpha=-lr)


def _torch_step(optimizer_class: type[torch.optim.Optimizer]) -> Callable:
    """``optimizer_class.step`` from under ``_use_grad_for_differentiable`` (which imports
    torch._dynamo), under ``torch.no_grad()`` as that wrapper would run it for a
    non-differentiable optimizer (torch's step turns gradients back on for a closure)."""
    return torch.no_grad()(_unwrapped(optimizer_class.step))


class Adam(EagerOptimizer, torch.optim.Adam):
    """``torch.optim.Adam`` — its own ``__init__``, ``step`` and arithmetic — on
    :class:`EagerOptimizer`'s methods (see the module docstring)."""

    step = _torch_step(torch.optim.Adam)


class AdamW(EagerOptimizer, torch.optim.AdamW):
    """``torch.optim.AdamW`` (decoupled weight decay) on :class:`EagerOptimizer`'s methods."""

    step = _torch_step(torch.optim.AdamW)
