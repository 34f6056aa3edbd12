"""Expectation over transformation: A. Athalye, L. Engstrom, A. Ilyas, K. Kwok, "Synthesizing
robust adversarial examples", ICML 2018 (arXiv:1707.07397).

An adversarial example that stays adversarial under a distribution T of transforms (here: random
rotation, scaling and Gaussian noise): PGD on E_{t∼T}[loss(model(t(x')))], the expectation
estimated with ``samples`` transforms per step (the gradient of their mean loss), inside the
same ε-ball and [0, 1] clamp as plain PGD. :func:`compare_under_transforms` measures how often
the EOT example and a plain PGD example (same ε, steps, step size) still fool the model under
the *same* fresh random transforms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .gradient import (
    check_budget,
    check_steps,
    enforce_budget,
    pgd,
    project,
    random_start,
    steepest_direction,
)
from .metrics import predict_probs, success_mask
from .transforms import degrees, rotate_scale, uniform


@dataclass(frozen=True)
class TransformDist:
    """Rotation in ±``rotation`` degrees, zoom in ``scale``, additive N(0, ``noise``²) noise;
    the transformed image is clamped to [0, 1] (what a camera would record)."""

    rotation: float = 30.0
    scale: tuple[float, float] = (0.8, 1.2)
    noise: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Transforms:
    """A fixed draw of transforms, one per image row, so two examples meet the same ones."""

    angle: torch.Tensor
    scale: torch.Tensor
    noise: torch.Tensor

    @staticmethod
    def sample(n: int, shape: tuple[int, ...], dist: TransformDist,
               generator: torch.Generator | None = None) -> Transforms:
        angle = uniform(n, -degrees(dist.rotation), degrees(dist.rotation), generator)
        scale = uniform(n, *dist.scale, generator)
        noise = dist.noise * torch.randn(n, *shape, generator=generator)
        return Transforms(angle, scale, noise)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (rotate_scale(x, self.angle, self.scale) + self.noise).clamp(0.0, 1.0)


def eot_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
            norm: str = "linf", steps: int = 50, step_size: float | None = None,
            samples: int = 10, dist: TransformDist = TransformDist(),
            target: int | None = None, random_init: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD on the loss averaged over ``samples`` random transforms per step."""
    check_budget(eps, norm)
    check_steps(steps)
    check_steps(samples, "--samples")
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    labels = y if target is None else torch.full_like(y, target)
    sign = -1.0 if target is not None else 1.0
    x = x.detach()
    delta = random_start(x, eps, norm, generator) if random_init else torch.zeros_like(x)
    x_adv = (x + delta).clamp(0.0, 1.0)
    n = len(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        t = Transforms.sample(n * samples, tuple(x.shape[1:]), dist, generator)
        logits = model(t(x_adv.repeat(samples, 1, 1, 1))).float()
        loss = F.cross_entropy(logits, labels.repeat(samples), reduction="sum") / samples
        (grad,) = torch.autograd.grad(sign * loss, x_adv)
        x_adv = x_adv.detach() + alpha * steepest_direction(grad, norm)
        x_adv = (x + project(x_adv - x, eps, norm)).clamp(0.0, 1.0)
    return enforce_budget(x, x_adv, eps, norm)


@torch.no_grad()
def success_under_transforms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             x_adv: torch.Tensor, transforms: list[Transforms], *,
                             target: int | None = None, batch_size: int = 500) -> dict:
    """Over eligible images (clean-correct untransformed; see :mod:`.metrics`) and every draw:
    the fraction of (image, draw) pairs where the transformed ``x_adv`` fools the model
    (``success_rate``), and how often the transformed *clean* image is already misclassified
    (``clean_error``; the transforms' own effect)."""
    clean_pred = predict_probs(model, x, batch_size).argmax(1)
    hits = eligible_n = clean_wrong = 0.0
    for t in transforms:
        adv_pred = predict_probs(model, t(x_adv), batch_size).argmax(1)
        t_clean = predict_probs(model, t(x), batch_size).argmax(1)
        eligible, success = success_mask(y, clean_pred, adv_pred, target)
        hits += float(success.sum())
        eligible_n += float(eligible.sum())
        clean_wrong += float((t_clean != y).sum())
    total = len(transforms) * len(x)
    return {"success_rate": hits / eligible_n if eligible_n else None,
            "clean_error": clean_wrong / total if total else None, "draws": len(transforms)}


def compare_under_transforms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             x_eot: torch.Tensor, eps: float, *, norm: str = "linf",
                             steps: int = 50, step_size: float | None = None,
                             target: int | None = None, dist: TransformDist = TransformDist(),
                             draws: int = 20, seed: int = 0,
                             batch_size: int = 100) -> tuple[dict, torch.Tensor]:
    """EOT example vs a plain PGD example of the same budget, under the same ``draws`` fresh
    random transforms of each image; returns the report and the PGD examples."""
    gen = torch.Generator().manual_seed(seed)
    x_pgd = torch.cat([pgd(model, x[i:i + batch_size], y[i:i + batch_size], eps, norm=norm,
                           steps=steps, step_size=step_size, target=target, generator=gen)
                       for i in range(0, len(x), batch_size)])
    transforms = [Transforms.sample(len(x), tuple(x.shape[1:]), dist, gen) for _ in range(draws)]
    eot = success_under_transforms(model, x, y, x_eot, transforms, target=target)
    plain = success_under_transforms(model, x, y, x_pgd, transforms, target=target)
    return {"eot_success_under_transforms": eot["success_rate"],
            "pgd_success_under_transforms": plain["success_rate"],
            "clean_error_under_transforms": eot["clean_error"], "draws": draws,
            "transforms": dist.to_dict()}, x_pgd
