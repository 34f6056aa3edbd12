"""A synthetic sanity check for attribution methods: a data set whose class evidence lives in
one known quadrant, and a tiny CAM-style CNN that learns it in about a second.

If Grad-CAM or occlusion put their mass anywhere but the top-left quadrant on this data, the
method (not the model) is wrong. The tests assert it; ``benchmarks/quadrant.py`` reports the
fractions over several seeds.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import CnnlabModel, FeatureInfo
from ..train.eager import Adam


class TinyCNN(CnnlabModel):
    """conv-ReLU-pool-conv-ReLU, global average pool, FC: the CAM-style head, trains in ~2 s.

    (With a flatten head instead, whose weights differ per position, Grad-CAM's spatially
    averaged gradients can cancel out — measured: an all-zero CAM for every image of a class
    whose evidence is "the blob is not elsewhere". Grad-CAM assumes GAP-like heads.)
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 2, input_size=(16, 16),
                 norm: str = "none") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(16, num_classes))
        self._feature_info = [FeatureInfo("conv1", "features.1", 8, 1),
                              FeatureInfo("conv2", "features.4", 16, 2)]


def quadrant_data(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images: mid-grey noise (σ 0.1); class 1 adds a bright 3×3 blob somewhere in the
    top-left quadrant, class 0 is noise only. Float images in [0, 1] (N, 1, size, size) and
    labels, alternating 0, 1. The background is grey so that the grey occluding patch does not
    itself look like evidence."""
    g = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.1 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1)
    y = torch.arange(n) % 2
    half = size // 2
    for i in torch.nonzero(y == 1).flatten().tolist():
        r, c = torch.randint(0, half - 2, (2,), generator=g).tolist()
        x[i, 0, r:r + 3, c:c + 3] = 1.0
    return x, y


def train_quadrant_model(seed: int = 0, steps: int = 200) -> tuple[TinyCNN, torch.Tensor,
                                                                   torch.Tensor, float]:
    """A TinyCNN trained on quadrant data, its held-out images and labels, and its accuracy."""
    torch.manual_seed(seed)
    model = TinyCNN()
    x, y = quadrant_data(512, seed=seed * 10 + 1)
    opt = Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = quadrant_data(64, seed=seed * 10 + 2)
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    return model, xt, yt, acc


def quadrant_fraction(maps: torch.Tensor) -> torch.Tensor:
    """Share of each map's (non-negative) mass in the top-left quadrant (uniform: 0.25)."""
    h, w = maps.shape[-2:]
    maps = maps.clamp_min(0)
    return maps[..., : h // 2, : w // 2].sum((-2, -1)) / maps.sum((-2, -1)).clamp_min(1e-12)
