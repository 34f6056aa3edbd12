"""Optimizers and learning-rate schedules (per step, so short runs get smooth schedules)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalization scales (1-D tensors): decaying them only
    fights BatchNorm and is what every modern recipe avoids."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "riemannian-sgd":
        # Manifold-constrained kernels (sphere/oblique/Stiefel) stay on their manifold; every
        # other parameter gets exactly torch.optim.SGD's update (Ozay & Okatani 2016).
        from .riemannian import RiemannianSGD, manifold_map

        return RiemannianSGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                             manifolds=manifold_map(model))
    if cfg.optimizer == "adam":
        # Adam's own weight_decay is L2 added to the gradient (Kingma & Ba); AdamW decouples it.
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        # Linear warm-up to the peak, then linear decay to zero (Smith & Topin 2018, simplified).
        warmup = max(1, warmup)
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** (step // (cfg.step_size * steps_per_epoch))
    progress = (step - warmup) / max(1, total - warmup)  # cosine
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps_per_epoch))
