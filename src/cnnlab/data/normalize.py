"""Input statistics fitted on the training split only, stored in the model's InputNorm."""

from __future__ import annotations

import torch

from .dataset import Split


def channel_stats(split: Split, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a uint8 split in [0, 1] units (float64 accumulation)."""
    c = split.images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for i in range(0, len(split), chunk):
        x = split.images[i:i + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def fit_normalization(split: Split, kind: str) -> dict[str, torch.Tensor]:
    """Statistics for ``InputNorm.set_stats`` for normalization ``kind``."""
    mean, std = channel_stats(split)
    stats: dict[str, torch.Tensor] = {"mean": mean, "std": std.clamp_min(1e-3)}
    if kind == "zca":
        from .whiten import fit_zca

        stats.update(fit_zca(split))
    return stats
