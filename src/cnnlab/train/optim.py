"""Optimizers and learning-rate schedules (per step, so short runs get smooth schedules)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig
from .eager import SGD, Adam, AdamW

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                 bias_lr_scale: float = 1.0) -> list[dict]:
    """No weight decay on biases and normalization scales (1-D tensors): decaying them only
    fights BatchNorm and is what every modern recipe avoids.

    With ``bias_lr_scale`` ≠ 1 (and ``lr``) the BatchNorm shifts get their own group at
    ``lr × bias_lr_scale`` with weight decay ``weight_decay / bias_lr_scale``, so their decay
    per step equals the weights' (airbench's "bias scaler": BN shifts in a net whose BN scales
    are frozen move far too slowly at the weights' lr).
    """
    scaled_ids: set[int] = set()
    if bias_lr_scale != 1.0 and lr is not None:
        for m in model.modules():
            if isinstance(m, _NORMS) and m.bias is not None and m.bias.requires_grad:
                scaled_ids.add(id(m.bias))
    decay, no_decay, scaled = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in scaled_ids:
            scaled.append(p)
        else:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if scaled:
        groups.append({"params": scaled, "lr": lr * bias_lr_scale,  # type: ignore[operator]
                       "weight_decay": weight_decay / bias_lr_scale})
    return groups


def whiten_bias(model: nn.Module, option: str = "--whiten-bias-epochs") -> nn.Parameter:
    """The patch-whitening layer's bias (cifar-speednet), which ``whiten_bias_epochs`` trains
    on its own schedule; a ConfigError naming ``option`` for models without one."""
    bias = getattr(getattr(model, "whiten", None), "bias", None)
    if not isinstance(bias, nn.Parameter):
        raise ConfigError(f"{option} needs a model with a patch-whitening first "
                          f"layer (cifar-speednet); {type(model).__name__} has none")
    return bias


def _split_whiten_bias(model: nn.Module, groups: list[dict], cfg: TrainConfig) -> list[dict]:
    """airbench94_muon's whitening bias: its own group at the BN shifts' lr and decay
    (``lr × bias_lr_scale``), which :func:`build_scheduler` takes to zero over
    ``whiten_bias_epochs``. It moves the first layer's GELU thresholds, which matter early;
    once it stops, the loop freezes it and backprop ends at the first conv."""
    bias = whiten_bias(model)
    for group in groups:
        group["params"] = [p for p in group["params"] if p is not bias]
    return groups + [{"params": [bias], "lr": cfg.lr * cfg.bias_lr_scale,
                      "weight_decay": cfg.weight_decay / cfg.bias_lr_scale, "whiten_bias": True}]


def build_optimizer(model: nn.Module, cfg: TrainConfig,
                    precision: str = "fp32") -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, over :func:`param_groups`. ``precision`` is the training
    precision the hardware was given (``choose_precision``): with bf16, Muon's Newton-Schulz
    iteration runs in bf16 too (Muon's own choice; on an AMX Xeon the CIFAR speed-run's optimizer
    step fell from 41 to 24 ms)."""
    groups = param_groups(model, cfg.weight_decay, cfg.lr, cfg.bias_lr_scale)
    if cfg.whiten_bias_epochs > 0:
        groups = _split_whiten_bias(model, groups, cfg)
    if cfg.optimizer == "sgd":
        return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "muon":
        # Conv filters (4-D) get orthogonalized updates at muon_lr; everything else (BN shifts,
        # biases, linear layers, the head) the same Nesterov SGD as optimizer=sgd would.
        # Three Newton-Schulz steps, as airbench94_muon: the update need not be exactly
        # orthogonal, and on a CPU each step of a 256 x 2304 filter bank costs ~0.3 GMAC.
        from .muon import Muon

        muon_groups = []
        for group in groups:
            filters = [p for p in group["params"] if p.ndim == 4]
            if filters:
                group["params"] = [p for p in group["params"] if p.ndim != 4]
                muon_groups.append({"params": filters, "orthogonal": True, "lr": cfg.muon_lr,
                                    "momentum": cfg.muon_momentum, "nesterov": True,
                                    "weight_decay": 0.0, "ns_steps": 3})
        groups = [g for g in groups if g["params"]] + muon_groups
        ns_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return Muon(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                    ns_dtype=ns_dtype)
    if cfg.optimizer == "riemannian-sgd":
        # Manifold-constrained kernels (sphere/oblique/Stiefel) stay on their manifold; every
        # other parameter gets exactly torch.optim.SGD's update (Ozay & Okatani 2016).
        from .riemannian import RiemannianSGD, manifold_map

        return RiemannianSGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                             manifolds=manifold_map(model))
    if cfg.optimizer == "adam":
        # Adam's own weight_decay is L2 added to the gradient (Kingma & Ba); AdamW decouples it.
        return Adam(groups, lr=cfg.lr)
    return AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        # A triangle: linear from lr_start to the peak, then linear down to lr_end at the last
        # step (Smith & Topin 2018, simplified; airbench starts at 0.2 and ends at 0.07).
        warmup = max(1, warmup)
        start, end = cfg.lr_start, cfg.lr_end
        if step < warmup:
            return start + (1.0 - start) * (step + 1) / warmup
        down = max(0.0, (total - step) / max(1, total - warmup))
        return end + (1.0 - end) * down
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** (step // (cfg.step_size * steps_per_epoch))
    progress = (step - warmup) / max(1, total - warmup)  # cosine
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def whiten_bias_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps during which the whitening bias trains on its own schedule
    (``whiten_bias_epochs``; 0: none)."""
    if cfg.whiten_bias_epochs <= 0:
        return 0
    return max(1, math.ceil(cfg.whiten_bias_epochs * steps_per_epoch))


def whiten_bias_freeze_step(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The step from which the whitening bias is frozen (0: never): the end of its own
    schedule, or ``freeze_whiten_bias`` epochs, whichever comes first. Frozen, it is a
    constant, so backprop stops at the first conv's filters (their input gradient and the
    whitening GELU's backward are skipped)."""
    stops = [whiten_bias_steps(cfg, steps_per_epoch)]
    if cfg.freeze_whiten_bias > 0:
        stops.append(max(1, math.ceil(cfg.freeze_whiten_bias * steps_per_epoch)))
    return min((s for s in stops if s > 0), default=0)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Every group follows :func:`lr_factor`, except the whitening bias's (if split off by
    ``whiten_bias_epochs``), which falls linearly from its peak to 0 over its own steps."""
    stop = whiten_bias_steps(cfg, steps_per_epoch)

    def factor(group: dict):
        if group.get("whiten_bias"):
            return lambda s: max(0.0, 1.0 - s / stop)
        return lambda s: lr_factor(cfg, s, steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(opt, [factor(g) for g in opt.param_groups])
