"""Adversarial training hooks for the training loop (``cnnlab train --adv fgsm|pgd``).

* ``pgd``: Madry et al. 2017 — each batch is replaced by PGD-K examples (random start,
  step 2.5·ε/K unless ``--adv-step-size``), and the model is trained on those.
* ``fgsm``: "FGSM with random start" of E. Wong, L. Rice, J. Z. Kolter, "Fast is better than
  free: revisiting adversarial training", ICLR 2020 — a uniform random start in the ε-ball and
  one signed step of 1.25·ε (their α), projected back; one extra forward/backward per batch.

Examples are generated with the model in **eval mode** and then the model goes back to train
mode for the update. Our choice, against "generate in train mode" (Madry's MNIST net has no BN
or dropout, so their code does not decide it): in eval mode dropout does not randomize the
attack's gradient, and the K attack forward passes do not move the BatchNorm running statistics
towards K extra batches per step; the attack then targets the very function that is evaluated
(and attacked) after training. TRADES and many later codes do the same.

``robust_accuracy`` is logged every epoch: PGD accuracy on the first 500 evaluation images with
the training ε, max(10, K) steps and a fixed random start, so epochs are comparable (a drop of
it while FGSM training accuracy rises is Wong et al.'s "catastrophic overfitting").
"""

from __future__ import annotations

import torch
from torch import nn

from ..evaluate.metrics import autocast
from .gradient import pgd

ROBUST_EVAL_IMAGES = 500
ADV_METHODS = ("fgsm", "pgd")


def adv_step_size(method: str, eps: float, steps: int, step_size: float | None = None) -> float:
    """The configured step, or the default: 1.25·ε for FGSM-RS, 2.5·ε/K for PGD-K."""
    if step_size is not None:
        return float(step_size)
    return 1.25 * eps if method == "fgsm" else 2.5 * eps / steps


def eps_schedule(cfg, progress_epochs: float) -> float:
    """ε after ``progress_epochs`` of training: a linear ramp from 0 over ``adv_eps_warmup``
    epochs, then ``adv_eps``. Starting at the full ε is where MNIST PGD training tends to stall
    at chance or mask gradients; growing it lets the net learn the clean task first (the
    ε-scheduling of Gowal et al. 2018 and of "Fast is better than free")."""
    warm = float(getattr(cfg, "adv_eps_warmup", 0.0) or 0.0)
    if warm <= 0:
        return cfg.adv_eps
    return cfg.adv_eps * min(1.0, progress_epochs / warm)


def adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg,
                      precision: str = "fp32", eps: float | None = None) -> torch.Tensor:
    """The training batch ``x`` replaced by its ``cfg.adv`` examples (model in eval mode).

    ``eps`` (default ``cfg.adv_eps``) is this batch's budget under an ε warm-up; the step
    size scales with it.
    """
    eps = cfg.adv_eps if eps is None else eps
    if eps <= 0:
        return x
    steps = 1 if cfg.adv == "fgsm" else cfg.adv_steps
    alpha = adv_step_size(cfg.adv, cfg.adv_eps, steps, cfg.adv_step_size) * eps / cfg.adv_eps
    was = model.training
    model.eval()
    try:
        with autocast(precision):
            return pgd(model, x, y, eps, steps=steps, step_size=alpha)
    finally:
        model.train(was)


def robust_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg,
                    precision: str = "fp32", batch_size: int = 250) -> float:
    """PGD accuracy at the training ε on the first :data:`ROBUST_EVAL_IMAGES` images."""
    x = images[:ROBUST_EVAL_IMAGES].float().div(255.0)
    y = labels[:ROBUST_EVAL_IMAGES]
    steps = max(10, cfg.adv_steps)
    gen = torch.Generator().manual_seed(0)
    was = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            with autocast(precision):
                x_adv = pgd(model, x[i:i + batch_size], y[i:i + batch_size], cfg.adv_eps,
                            steps=steps, generator=gen)
                with torch.no_grad():
                    correct += int((model(x_adv).argmax(1) == y[i:i + batch_size]).sum())
    finally:
        model.train(was)
    return correct / max(1, len(x))
