"""Fixtures for the explanation tests: a tiny contract-keeping CNN and a synthetic data set whose
class lives in one quadrant (so we know where the evidence is)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.explain.synthetic import TinyCNN, train_quadrant_model


@pytest.fixture(scope="session")
def quadrant_model() -> tuple[TinyCNN, torch.Tensor, torch.Tensor]:
    """A TinyCNN trained on quadrant data (~1 s), and held-out test images and labels."""
    model, xt, yt, acc = train_quadrant_model(seed=0)
    assert acc > 0.95, f"the quadrant model did not learn (test accuracy {acc:.2f})"
    return model, xt, yt
