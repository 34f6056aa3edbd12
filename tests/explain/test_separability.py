"""Per-stage features, Fisher ratio and linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.explain import fisher_ratio, linear_probe, separability, stage_features


def _fisher_oracle(x: np.ndarray, y: np.ndarray) -> float:
    """Straight from the definition: scatter matrices of the z-scored features, trace ratio."""
    z = (x - x.mean(0)) / x.std(0)
    mu = z.mean(0)
    sb = np.zeros((z.shape[1], z.shape[1]))
    sw = np.zeros_like(sb)
    for c in np.unique(y):
        zc = z[y == c]
        d = (zc.mean(0) - mu)[:, None]
        sb += len(zc) * d @ d.T
        e = zc - zc.mean(0)
        sw += e.T @ e
    return float(np.trace(sb) / np.trace(sw))


def test_fisher_ratio_matches_the_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) * [1, 10, 0.1, 1, 3] + y[:, None] * [1, 0, 2, 0, 5]
    assert fisher_ratio(x, y) == pytest.approx(_fisher_oracle(x, y), rel=1e-9)
    assert fisher_ratio(rng.normal(size=(300, 5)), y) < 0.05  # classes on top of each other


def test_linear_probe_separable_and_random():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    separable = rng.normal(size=(200, 4)) + 6 * y[:, None]
    assert linear_probe(separable, y) == 1.0
    noise = rng.normal(size=(200, 4))
    assert linear_probe(noise, rng.permutation(y)) < 0.7


def test_separability_of_the_quadrant_model(quadrant_model):
    model, x, y = quadrant_model
    feats = stage_features(model, x)
    assert list(feats) == ["input", "conv1", "conv2"]
    assert [f.shape[1] for f in feats.values()] == [256, 8, 16]
    with torch.no_grad():
        torch.testing.assert_close(feats["conv2"], model.features(x).mean((2, 3)))
    r = separability(model, x, y)
    assert [s["name"] for s in r["stages"]] == ["input", "conv1", "conv2"]
    assert [s["depth"] for s in r["stages"]] == [0, 1, 2]
    assert r["chance"] == 0.5 and r["n"] == len(y)
    for s in r["stages"]:
        assert s["embedding"].shape == (len(y), 2)
        assert 0 <= s["probe_accuracy"] <= 1 and s["fisher_ratio"] >= 0
    # the trained top stage separates the classes; a blob anywhere in a quadrant does not
    # make raw pixels linearly separable this well
    assert r["stages"][-1]["probe_accuracy"] >= 0.9
    assert r["stages"][-1]["fisher_ratio"] > r["stages"][0]["fisher_ratio"]
