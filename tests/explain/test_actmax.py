"""Activation maximization optimizes the input and raises its target."""

from __future__ import annotations

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.explain import activation_maximization
from cnnlab.explain.actmax import gaussian_blur


@pytest.mark.parametrize("layer", [None, "conv2"])
def test_plain_ascent_raises_the_target_at_every_step(quadrant_model, layer):
    """Regularizers off (no jitter, blur or decay; small steps): projected gradient ascent, so
    the objective must not fall at any of the 40 steps. (Class 1's logit; for conv2 the channel
    most active on the data — a channel that is zero on the grey start image has no gradient.)"""
    model, x, _ = quadrant_model
    channel = 1
    if layer:
        with torch.no_grad():
            channel = int(model.features(x).mean((0, 2, 3)).argmax())
    weights = [p.detach().clone() for p in model.parameters()]
    r = activation_maximization(model, layer, channel, steps=40, lr=0.01, jitter=0,
                                blur_every=0, decay=0)
    h = torch.tensor(r["history"])
    assert len(h) == 41
    steps = h[1:] - h[:-1]
    assert (steps >= -1e-5 * h.abs().max()).all(), f"fell at steps {torch.nonzero(steps < 0)}"
    assert h[-1] > h[0]
    # the weights were not touched: only the input was optimized
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def test_regularized_ascent_raises_the_target_overall(quadrant_model):
    """With jitter, blur and L2 decay on, single steps may dip (each step sees a shifted
    image), so the assertion is the trend: the last 16 steps beat the first 16 on average, and
    the end beats the start."""
    model, _, _ = quadrant_model
    r = activation_maximization(model, None, 1, steps=64)
    h = torch.tensor(r["history"])
    assert h[-16:].mean() > h[1:17].mean()
    assert h[-1] > h[0]
    img = r["image"]
    assert img.shape == (1, 1, 16, 16)
    assert img.min() >= 0 and img.max() <= 1


def test_blur_keeps_size_and_mean():
    x = torch.rand(1, 3, 10, 10)
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape
    assert y.mean().item() == pytest.approx(x.mean().item(), abs=0.02)
    assert y.std() < x.std()


def test_a_dead_unit_is_reported(quadrant_model):
    model, x, _ = quadrant_model
    with torch.no_grad():
        acts = model.features(torch.full((1, 1, 16, 16), 0.5)).amax((0, 2, 3))
    dead = torch.nonzero(acts == 0).flatten()
    if len(dead) == 0:
        pytest.skip("every conv2 channel fires on grey")
    with pytest.warns(UserWarning, match="zero gradient"):
        activation_maximization(model, "conv2", int(dead[0]), steps=2, jitter=0)


def test_class_out_of_range(quadrant_model):
    model, _, _ = quadrant_model
    with pytest.raises(ConfigError, match="class 2 is out of range"):
        activation_maximization(model, None, 2, steps=1)
    with pytest.raises(ConfigError, match="out of range"):
        activation_maximization(model, "conv1", 8, steps=1)
