"""Differentiable random geometric transforms (rotation, scale, position) via affine_grid.

``F.affine_grid`` maps each *output* pixel's normalized coordinate p ∈ [-1, 1]² to the input
coordinate it samples. Working in pixel units keeps rotations right on non-square images:
with D = diag(W/2, H/2) the pixel scale, an output pixel p samples the input at
``D⁻¹ · (R(-a) / s) · D · (p - c)`` for a rotation by ``a``, a zoom by ``s`` and a centre ``c``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def affine_theta(angle: torch.Tensor, scale: torch.Tensor, center: torch.Tensor,
                 out_hw: tuple[int, int], in_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 2, 3) sampling matrices for ``F.affine_grid``.

    ``angle`` (radians, N), ``scale`` (N): input pixels per output pixel is 1/scale;
    ``center`` (N, 2) in the output's normalized (x, y) coordinates: where the input's centre
    lands. ``out_hw``/``in_hw`` are the pixel sizes of the output and input grids.
    """
    (h_out, w_out), (h_in, w_in) = out_hw, in_hw
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # R(-a)
    # D_in⁻¹ · R(-a)/s · D_out with D = diag(W/2, H/2): rows scaled by 1/size_in, columns by
    # size_out (the halves cancel)
    a = (rot / scale.view(-1, 1, 1)
         * torch.tensor([1.0 / w_in, 1.0 / h_in]).view(1, 2, 1)
         * torch.tensor([float(w_out), float(h_out)]).view(1, 1, 2))
    t = -(a @ center.unsqueeze(-1)).squeeze(-1)
    return torch.cat([a, t.unsqueeze(-1)], dim=2)


def rotate_scale(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor,
                 padding_mode: str = "border") -> torch.Tensor:
    """Each image rotated by ``angle`` (radians) and zoomed by ``scale`` about its centre."""
    h, w = x.shape[-2:]
    theta = affine_theta(angle, scale, torch.zeros(len(x), 2), (h, w), (h, w))
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def degrees(d: float) -> float:
    return d * math.pi / 180.0
