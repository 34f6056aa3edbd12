"""Fixtures for the explanation tests: a tiny contract-keeping CNN and a synthetic data set whose
class lives in one quadrant (so we know where the evidence is)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models.base import CnnlabModel, FeatureInfo


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


@pytest.fixture(scope="session")
def quadrant_model() -> tuple[TinyCNN, torch.Tensor, torch.Tensor]:
    """A TinyCNN trained on quadrant data (~1 s), and held-out test images and labels."""
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = quadrant_data(512, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = quadrant_data(64, seed=2)
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.95, f"the quadrant model did not learn (test accuracy {acc:.2f})"
    return model, xt, yt
