"""Adversarial patch: T. Brown, D. Mané, A. Roy, M. Abadi, J. Gilmer, "Adversarial patch",
arXiv:1712.09665 (2017).

A square patch of pixels (any values in [0, 1]) is pasted onto the image at a random position,
scale and rotation; it is trained to maximize the expected log-probability of a target class over
those placements and over training images, so it works on images it has never seen. The
budget is the patch's size, not a norm: ``size`` is the patch side as a fraction of the image's
shorter side (a 0.25 patch covers 1/16 of a square image); pixels outside the pasted patch are
never changed.

Pasting is ``x·(1 − m) + warp(patch)``, where ``warp`` resamples the patch into the image frame
(``affine_grid``/``grid_sample``, zero outside) and ``m`` is the warped all-ones mask. Because the
warped patch is zero where the mask is zero and at most ``m`` at soft (rotated) borders, the
result stays in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..train.eager import Adam
from .metrics import predict_probs, success_mask
from .transforms import affine_theta, degrees, uniform


def check_patch_size(size: float, image_hw: tuple[int, int]) -> None:
    h, w = image_hw
    if not size > 0:
        raise ConfigError(f"--patch-size must be > 0 (a fraction of the image side), got {size:g}")
    if size > 1:
        raise ConfigError(f"--patch-size {size:g} is larger than the image: the patch side is a "
                          f"fraction of the {h}×{w} image's side, at most 1")


def patch_pixels(size: float, image_hw: tuple[int, int]) -> int:
    """Side of the patch in pixels at scale 1."""
    return max(1, round(size * min(image_hw)))


def placement_theta(n: int, patch_px: int, image_hw: tuple[int, int], *,
                    scale: tuple[float, float] = (0.9, 1.1), rotation: float = 45.0,
                    generator: torch.Generator | None = None,
                    center: torch.Tensor | None = None,
                    angle: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 2, 3) warps of a ``patch_px``-pixel patch into the image: a random scale in ``scale``
    (capped so the patch fits), a random rotation in ±``rotation`` degrees, and a random
    position where the unrotated square lies inside the image (``center``/``angle`` fix them)."""
    h, w = image_hw
    s = uniform(n, *scale, generator).clamp(max=min(h, w) / patch_px)
    side = s * patch_px  # rendered side in image pixels
    if center is None:
        # normalized half-extent of the square is side/W (x) and side/H (y)
        room = torch.stack([1 - side / w, 1 - side / h], -1).clamp_min(0)
        center = (2 * torch.rand(n, 2, generator=generator) - 1) * room
    if angle is None:
        angle = uniform(n, -degrees(rotation), degrees(rotation), generator)
    return affine_theta(angle, s, center, (h, w), (patch_px, patch_px))


def apply_patch(x: torch.Tensor, patch: torch.Tensor,
                theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``patch`` (C, P, P) into each image of ``x`` with warps ``theta``; returns the
    patched images and the (N, 1, H, W) mask (differentiable in ``patch``)."""
    n, c, h, w = x.shape
    grid = F.affine_grid(theta.to(x.dtype), [n, c, h, w], align_corners=False)
    warped = F.grid_sample(patch.expand(n, -1, -1, -1), grid, mode="bilinear",
                           padding_mode="zeros", align_corners=False)
    ones = torch.ones(n, 1, *patch.shape[-2:], dtype=x.dtype)
    mask = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (x * (1 - mask) + warped).clamp(0.0, 1.0), mask


def train_patch(model: nn.Module, x_train: torch.Tensor, target: int, size: float, *,
                steps: int = 300, batch_size: int = 64, lr: float = 0.05,
                scale: tuple[float, float] = (0.9, 1.1), rotation: float = 45.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A (C, P, P) patch in [0, 1] that pushes the model towards ``target`` (Brown et al.):
    Adam on the mean target cross-entropy over random training images and placements,
    clamped to [0, 1] after every step."""
    c, h, w = x_train.shape[1:]
    check_patch_size(size, (h, w))
    p = patch_pixels(size, (h, w))
    patch = torch.rand(c, p, p, generator=generator).requires_grad_(True)
    opt = Adam([patch], lr=lr)
    labels = torch.full((batch_size,), target, dtype=torch.long)
    for _ in range(steps):
        idx = torch.randint(len(x_train), (batch_size,), generator=generator)
        theta = placement_theta(batch_size, p, (h, w), scale=scale, rotation=rotation,
                                generator=generator)
        patched, _ = apply_patch(x_train[idx], patch, theta)
        loss = F.cross_entropy(model(patched).float(), labels)
        # input-side gradient only: the model's parameter .grad fields stay untouched
        (patch.grad,) = torch.autograd.grad(loss, patch)
        opt.step()
        with torch.no_grad():
            patch.clamp_(0.0, 1.0)
    return patch.detach()


@torch.no_grad()
def patch_success(model: nn.Module, x: torch.Tensor, y: torch.Tensor, patch: torch.Tensor,
                  target: int, *, placements: int = 4, scale: tuple[float, float] = (0.9, 1.1),
                  rotation: float = 45.0, seed: int = 0, batch_size: int = 500) -> dict:
    """Targeted success of ``patch`` on held-out images under fresh random placements.

    Every image gets ``placements`` placements (drawn from ``seed``, so two patches of one size
    meet the same placements). ``success_rate``: over (eligible image, placement) pairs, the
    fraction classified as ``target`` (eligible as in :mod:`.metrics`: clean-correct, true label
    ≠ target). Also the mean mask area (``patch_area``, fraction of the image).
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    clean_pred = predict_probs(model, x, batch_size).argmax(1)
    hits = eligible_n = correct = area = 0.0
    for _ in range(placements):
        theta = placement_theta(len(x), patch.shape[-1], (h, w), scale=scale, rotation=rotation,
                                generator=gen)
        patched, mask = apply_patch(x, patch, theta)
        adv_pred = predict_probs(model, patched, batch_size).argmax(1)
        eligible, success = success_mask(y, clean_pred, adv_pred, target)
        hits += float(success.sum())
        eligible_n += float(eligible.sum())
        correct += float((adv_pred == y).sum())
        area += float(mask.mean())
    return {"success_rate": hits / eligible_n if eligible_n else None,
            "clean_accuracy": float((clean_pred == y).double().mean()) if len(x) else None,
            "adversarial_accuracy": correct / (placements * len(x)) if len(x) else None,
            "patch_area": area / placements, "placements": placements}


def patch_curve(model: nn.Module, x_train: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                target: int, sizes: list[float], *, steps: int = 300, batch_size: int = 64,
                lr: float = 0.05, scale: tuple[float, float] = (0.9, 1.1),
                rotation: float = 45.0, placements: int = 4,
                seed: int = 0) -> tuple[list[dict], dict[float, torch.Tensor]]:
    """Train one patch per size and measure it against a random-noise patch of the same size
    under the same placements (the control: how much of the effect is mere occlusion)."""
    points, patches = [], {}
    for size in sizes:
        gen = torch.Generator().manual_seed(seed)
        patch = train_patch(model, x_train, target, size, steps=steps, batch_size=batch_size,
                            lr=lr, scale=scale, rotation=rotation, generator=gen)
        noise = torch.rand(patch.shape, generator=gen)
        kw = dict(placements=placements, scale=scale, rotation=rotation, seed=seed + 1)
        ours = patch_success(model, x, y, patch, target, **kw)
        control = patch_success(model, x, y, noise, target, **kw)
        points.append({"patch_size": size, "patch_pixels": int(patch.shape[-1]),
                       "patch_area": ours["patch_area"],
                       "clean_accuracy": ours["clean_accuracy"],
                       "success_rate": ours["success_rate"],
                       "adversarial_accuracy": ours["adversarial_accuracy"],
                       "random_patch_success_rate": control["success_rate"]})
        patches[size] = patch
    return points, patches

