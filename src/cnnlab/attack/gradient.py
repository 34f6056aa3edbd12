"""Gradient attacks in pixel space: FGSM and PGD, L∞ and L2, untargeted or targeted.

* FGSM — I. Goodfellow, J. Shlens, C. Szegedy, "Explaining and harnessing adversarial
  examples", ICLR 2015 (arXiv:1412.6572): one step ``x + ε·sign(∇ₓ loss)``.
* PGD — A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu, "Towards deep learning models
  resistant to adversarial attacks", ICLR 2018 (arXiv:1706.06083): a random start in the ε-ball,
  then K steps of size α along the steepest-ascent direction of the norm, each followed by a
  projection onto the ε-ball around ``x`` and onto the valid pixels [0, 1].

The budget is kept exactly: after every step ``δ`` is projected onto the ball (L∞: clamp each
pixel to [-ε, ε]; L2: rescale ``δ`` when ``‖δ‖₂ > ε``) and then ``x + δ`` is clamped to [0, 1].
Clamping to [0, 1] moves each pixel towards ``x`` (which is in [0, 1]), so it never leaves the
ball again. Float32 rounding of ``x + δ`` can still overshoot by ~1e-8, so the returned images go
through :func:`enforce_budget`, which makes ``‖x_adv − x‖ ≤ ε`` hold exactly when measured in
float64 on the stored values (what the reports show).

Models follow the cnnlab contract (input in [0, 1], normalization inside), so nothing here knows
the architecture. The functions leave the model's mode alone: attack an ``eval()`` model (what
:func:`cnnlab.load_model` returns) so BN statistics and dropout stay fixed. Only input gradients
are computed (``torch.autograd.grad``); parameter ``.grad`` fields are never touched.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

NORMS = ("linf", "l2")


def check_budget(eps: float, norm: str, image_shape: tuple[int, ...] | None = None) -> None:
    """Raise ConfigError for a budget no pixel image can have.

    L∞: ε in [0, 1] (pixel units). L2: ε in [0, √(C·H·W)], the diameter of the pixel cube —
    an L2 budget above 1 is normal (ε = 2 on MNIST), so [0, 1] would be the wrong rule there.
    """
    if norm not in NORMS:
        raise ConfigError(f"--norm must be one of {', '.join(NORMS)}, got '{norm}'")
    if not isinstance(eps, (int, float)) or math.isnan(eps):
        raise ConfigError(f"--eps must be a number, got {eps!r}")
    if norm == "linf" and not 0.0 <= eps <= 1.0:
        raise ConfigError(f"--eps {eps:g} is outside [0, 1]: an L∞ budget is in pixel units "
                          "(images are in [0, 1]); e.g. 0.3 for MNIST, 8/255 for CIFAR")
    if norm == "l2":
        top = math.sqrt(math.prod(image_shape)) if image_shape else math.inf
        if not 0.0 <= eps <= top:
            raise ConfigError(f"--eps {eps:g} is outside [0, {top:.4g}] for --norm l2 (the "
                              "largest L2 distance between two images of this size)")


def check_steps(steps: int, name: str = "--steps") -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{name} must be at least 1, got {steps}")


def per_image_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """‖δᵢ‖ per image (N,), in float64 so reported maxima are not rounded up or down."""
    flat = delta.detach().flatten(1).double()
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The closest point of the ε-ball (L∞ clamp, or L2 radial rescale) to each ``δᵢ``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.dim() - 1)))
    return delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)


def enforce_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x_adv`` clamped to [0, 1] and to the ball such that the float64 difference
    ``x_adv − x`` of the stored values is within ε: exact budgets, not "ε + rounding".

    L∞: clamp into the box [lo, hi], the float32 values nearest to x ∓ ε from the inside
    (a pixel's float32 rounding is relative to its own magnitude, so a dark pixel next to a
    bright one can otherwise end 6e-9 outside). L2: shrink the rare over-long δ by a few ulps.
    """
    x, x_adv = x.detach(), x_adv.detach()
    xd = x.double()
    if norm == "linf":
        lo, hi = (xd - eps).to(x_adv.dtype), (xd + eps).to(x_adv.dtype)
        lo = torch.where(lo.double() - xd < -eps, torch.nextafter(lo, torch.ones_like(lo)), lo)
        hi = torch.where(hi.double() - xd > eps, torch.nextafter(hi, torch.zeros_like(hi)), hi)
        return torch.minimum(torch.maximum(x_adv, lo), hi).clamp(0.0, 1.0)
    x_adv = x_adv.clamp(0.0, 1.0)
    shape = (-1,) + (1,) * (x.dim() - 1)
    ulp = torch.finfo(x_adv.dtype).eps
    for margin in (ulp, 10 * ulp, 100 * ulp, 1e3 * ulp, 1e4 * ulp, 1e5 * ulp):
        d = x_adv.double() - xd
        n = d.flatten(1).norm(dim=1)
        bad = n > eps
        if not bad.any():
            break
        shrink = torch.where(bad, eps / n.clamp_min(1e-300) * (1 - margin), 1.0)
        x_adv = (xd + d * shrink.view(shape)).clamp(0.0, 1.0).to(x_adv.dtype)
    return x_adv


def steepest_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit-norm ascent direction: sign(g) for L∞, g / ‖g‖₂ for L2."""
    if norm == "linf":
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).view(-1, *([1] * (grad.dim() - 1)))
    return grad / n.clamp_min(1e-12)


def logits_fp32(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits (autocast) up to float32 for the loss; float64 stays float64."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def loss_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                  targeted: bool = False) -> torch.Tensor:
    """∇ₓ of the cross-entropy to ascend: the true label's loss (untargeted), or minus the
    target's loss (targeted). Summed over the batch, so each image gets its own gradient."""
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(logits_fp32(model(x)), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return -grad if targeted else grad


def _labels(y: torch.Tensor, target: int | torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    if target is None:
        return y, False
    return torch.as_tensor(target, dtype=torch.long).expand_as(y).contiguous(), True


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
         norm: str = "linf", target: int | torch.Tensor | None = None) -> torch.Tensor:
    """One step of size ε along the steepest direction, clamped to [0, 1].

    L∞: ``x + ε·sign(∇)`` (Goodfellow's FGSM); L2: ``x + ε·∇/‖∇‖₂`` (the "fast gradient
    method"). With ``target`` the step descends the target class's loss instead.
    """
    check_budget(eps, norm)
    labels, targeted = _labels(y, target)
    grad = loss_gradient(model, x, labels, targeted)
    return enforce_budget(x, x.detach() + eps * steepest_direction(grad, norm), eps, norm)


def random_start(x: torch.Tensor, eps: float, norm: str,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random δ in the ε-ball: uniform per pixel (L∞), or a random direction with a radius
    uniform in [0, ε] (L2, as in torchattacks' PGDL2)."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (2 * u - 1) * eps
    d = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    r = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator, dtype=x.dtype)
    return d / d.flatten(1).norm(dim=1).view_as(r).clamp_min(1e-12) * r * eps


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
        steps: int = 40, step_size: float | None = None, random_init: bool = True,
        target: int | torch.Tensor | None = None,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent on the loss; returns the last iterate (Madry et al.).

    ``step_size`` defaults to 2.5·ε/steps (Madry et al.'s rule: enough to cross the ball and
    back). ``random_init`` starts from a random point of the ball (see :func:`random_start`).
    """
    check_budget(eps, norm)
    check_steps(steps)
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    if alpha <= 0 and eps > 0:
        raise ConfigError(f"--step-size must be > 0, got {alpha:g}")
    labels, targeted = _labels(y, target)
    x = x.detach()
    delta = random_start(x, eps, norm, generator) if random_init else torch.zeros_like(x)
    x_adv = (x + delta).clamp(0.0, 1.0)
    for _ in range(steps):
        grad = loss_gradient(model, x_adv, labels, targeted)
        x_adv = x_adv + alpha * steepest_direction(grad, norm)
        x_adv = (x + project(x_adv - x, eps, norm)).clamp(0.0, 1.0)
    return enforce_budget(x, x_adv, eps, norm)


def in_batches(fn, x: torch.Tensor, y: torch.Tensor, batch_size: int, **kwargs) -> torch.Tensor:
    """Run ``fn(x_chunk, y_chunk, **kwargs)`` over chunks and concatenate (bounded memory)."""
    if len(x) == 0:
        return x.clone()
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size], **kwargs)
                      for i in range(0, len(x), batch_size)])
