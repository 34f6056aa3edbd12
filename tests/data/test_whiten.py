"""ZCA whitening against a float64 reference, and through the model's InputNorm."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import Split, fit_normalization
from cnnlab.data.whiten import fit_zca, zca_apply
from cnnlab.errors import DataError
from cnnlab.models.base import InputNorm


def _correlated_split(n=6000, c=1, h=4, w=4, seed=0) -> Split:
    """uint8 images whose pixels are strongly correlated (well-conditioned after mixing)."""
    gen = torch.Generator().manual_seed(seed)
    d = c * h * w
    mix = torch.eye(d, dtype=torch.float64) + 0.5 * torch.rand(d, d, generator=gen,
                                                               dtype=torch.float64)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64) @ mix.T
    z = (z - z.mean()) / z.std() * 30 + 128
    images = z.round().clamp(0, 255).to(torch.uint8).view(n, c, h, w)
    return Split(images, torch.zeros(n, dtype=torch.int64))


def test_whitened_training_data_has_identity_covariance():
    split = _correlated_split()
    stats = fit_zca(split, eps=1e-8)
    x = split.images.to(torch.float64).div(255).flatten(1)
    assert torch.corrcoef(x.T).abs().fill_diagonal_(0).max() > 0.3  # correlated before
    white = (x - stats["zca_mean"].double()) @ stats["zca_matrix"].double()
    cov = white.T @ white / len(white)
    torch.testing.assert_close(cov, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)
    torch.testing.assert_close(white.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-4,
                               rtol=0)


def test_matrix_is_symmetric_and_matches_a_float64_reference():
    split = _correlated_split(n=3000, c=3, h=2, w=3)
    eps = 1e-2
    stats = fit_zca(split, eps=eps)
    w = stats["zca_matrix"]
    assert w.shape == (18, 18) and stats["zca_mean"].shape == (18,)
    torch.testing.assert_close(w, w.T, atol=0, rtol=0)
    # reference: numpy-style float64 ZCA written out the straightforward way (SVD, not eigh)
    x = split.images.double().div(255).reshape(len(split), -1)
    xc = x - x.mean(0)
    u, s, _ = torch.linalg.svd(xc.T @ xc / len(x))
    ref = u @ torch.diag(1.0 / torch.sqrt(s + eps)) @ u.T
    torch.testing.assert_close(w.double(), ref, atol=1e-4, rtol=1e-4)


def test_inputnorm_zca_equals_the_float64_reference():
    split = _correlated_split(n=2000, c=3, h=4, w=4)
    stats = fit_normalization(split, "zca")
    norm = InputNorm(3, "zca", (4, 4))
    norm.set_stats(**stats)
    x = split.images[:50].float() / 255
    ref = zca_apply(x.double(), {k: v.double() for k, v in stats.items()})
    torch.testing.assert_close(norm(x).double(), ref, atol=1e-4, rtol=1e-4)
    assert norm(x).shape == x.shape


def test_eps_limits_the_gain():
    split = _correlated_split(n=2000)
    loose = torch.linalg.eigvalsh(fit_zca(split, eps=1e-1)["zca_matrix"].double())
    tight = torch.linalg.eigvalsh(fit_zca(split, eps=1e-4)["zca_matrix"].double())
    assert loose.max() <= 1 / 0.1 ** 0.5 + 1e-4  # at most 1/sqrt(eps)
    assert tight.max() > loose.max()


def test_max_images_subsample_is_seeded():
    split = _correlated_split(n=3000)
    a = fit_zca(split, max_images=500, seed=1)
    b = fit_zca(split, max_images=500, seed=1)
    c = fit_zca(split, max_images=500, seed=2)
    assert torch.equal(a["zca_matrix"], b["zca_matrix"])
    assert not torch.equal(a["zca_matrix"], c["zca_matrix"])


def test_refuses_huge_images_and_bad_eps():
    big = Split(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="--image-size"):
        fit_zca(big)
    with pytest.raises(DataError, match="eps must be positive"):
        fit_zca(_correlated_split(n=10), eps=0)
