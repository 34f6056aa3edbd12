"""Batched data augmentation: every op takes a float batch (B, C, H, W) in [0, 1] and a
``torch.Generator`` and works on the whole batch with tensor ops.

A pipeline is written as a list of specs, e.g. ``["crop:4", "flip"]``; :func:`build_augment`
turns it into one callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError, unknown

Op = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def random_crop(pad: int) -> Op:
    """Pad by ``pad`` (reflect) and crop back at a random offset per image."""

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (B, W)
        bi = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

    return op


def hflip(p: float = 0.5) -> Op:
    """Mirror a random half of the batch left-right."""

    def op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mask = (torch.rand(x.shape[0], generator=gen) < p).to(x.device)
        return torch.where(mask[:, None, None, None], x.flip(3), x)

    return op


OPS: dict[str, Callable[..., Op]] = {"crop": random_crop, "flip": hflip}


def parse_spec(spec: str) -> tuple[str, list[float]]:
    name, _, args = spec.partition(":")
    values = [float(a) for a in args.split(",")] if args else []
    return name.strip().lower(), values


def build_augment(specs: Sequence[str] | str | None) -> Op | None:
    """Turn ``["crop:4", "flip"]`` (or ``"crop:4,flip"``-style list) into one batched op."""
    if not specs:
        return None
    if isinstance(specs, str):
        specs = [s for s in specs.split("+") if s]
    ops: list[Op] = []
    for spec in specs:
        name, args = parse_spec(spec)
        if name not in OPS:
            raise ConfigError(unknown("augmentation", name, OPS))
        try:
            ops.append(OPS[name](*[int(a) if a.is_integer() else a for a in args]))
        except TypeError as exc:
            raise ConfigError(f"bad arguments for augmentation '{spec}': {exc}") from exc

    def pipeline(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for op in ops:
            x = op(x, gen)
        return x

    return pipeline
