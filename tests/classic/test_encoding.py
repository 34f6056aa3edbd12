"""VLAD and Fisher vectors against float64 NumPy references written from the papers' formulas."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.classic.encoding import Codebook, bovw, encode, fisher, fit_codebook, vlad
from cnnlab.errors import ConfigError


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def _power_l2(v):
    v = np.sign(v) * np.sqrt(np.abs(v))
    return v / np.sqrt((v ** 2).sum())


def test_vlad_equals_reference(rng):
    x = rng.normal(size=(40, 6)).astype(np.float32)
    centers = rng.normal(size=(5, 6))
    ref = np.zeros((5, 6))
    for xi in x.astype(np.float64):  # Jégou 2010: residual to the nearest centre
        k = int(np.argmin([((xi - c) ** 2).sum() for c in centers]))
        ref[k] += xi - centers[k]
    got = vlad(x, Codebook("vlad", centers))
    np.testing.assert_allclose(got, _power_l2(ref.ravel()), atol=1e-6)
    assert np.isclose(np.linalg.norm(got), 1.0)


def test_fisher_equals_reference(rng):
    t, k, d = 30, 4, 5
    x = rng.normal(size=(t, d))
    means = rng.normal(size=(k, d))
    variances = rng.uniform(0.5, 2.0, size=(k, d))
    weights = rng.dirichlet(np.ones(k))
    # γ_t(k) from the diagonal Gaussian densities, one descriptor at a time
    gamma = np.zeros((t, k))
    for i in range(t):
        dens = [weights[j] * np.prod(np.exp(-0.5 * (x[i] - means[j]) ** 2 / variances[j])
                                     / np.sqrt(2 * np.pi * variances[j])) for j in range(k)]
        gamma[i] = np.array(dens) / np.sum(dens)
    g_mu, g_sig = np.zeros((k, d)), np.zeros((k, d))
    for j in range(k):  # Perronnin, Sánchez & Mensink 2010, eqs. (7) and (8)
        sigma = np.sqrt(variances[j])
        for i in range(t):
            g_mu[j] += gamma[i, j] * (x[i] - means[j]) / sigma
            g_sig[j] += gamma[i, j] * ((x[i] - means[j]) ** 2 / variances[j] - 1)
        g_mu[j] /= t * np.sqrt(weights[j])
        g_sig[j] /= t * np.sqrt(2 * weights[j])
    ref = _power_l2(np.concatenate([g_mu.ravel(), g_sig.ravel()]))
    got = fisher(x, Codebook("fisher", means, weights, variances))
    assert got.shape == (2 * k * d,)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_fisher_with_pca_projects_first(rng):
    x = rng.normal(size=(25, 8))
    mean, comps = rng.normal(size=8), np.linalg.qr(rng.normal(size=(8, 8)))[0][:3]
    cb = Codebook("fisher", rng.normal(size=(2, 3)), np.array([0.3, 0.7]),
                  np.ones((2, 3)), mean, comps)
    plain = Codebook("fisher", cb.centers, cb.weights, cb.variances)
    np.testing.assert_allclose(fisher(x, cb), fisher((x - mean) @ comps.T, plain), atol=1e-12)


def test_bovw_histogram_sums_to_one_and_counts_nearest(rng):
    x = rng.normal(size=(50, 4))
    centers = rng.normal(size=(6, 4))
    h = bovw(x, Codebook("bovw", centers))
    nearest = ((x[:, None] - centers[None]) ** 2).sum(2).argmin(1)
    np.testing.assert_allclose(h, np.bincount(nearest, minlength=6) / 50)
    assert np.isclose(h.sum(), 1.0)
    assert bovw(np.zeros((0, 4)), Codebook("bovw", centers)).sum() == 0


def test_empty_descriptor_sets_encode_to_zero(rng):
    centers = rng.normal(size=(3, 4))
    assert not vlad(np.zeros((0, 4)), Codebook("vlad", centers)).any()
    cb = Codebook("fisher", centers, np.full(3, 1 / 3), np.ones((3, 4)))
    assert fisher(np.zeros((0, 4)), cb).shape == (24,)


def test_pyramid_is_five_regions(rng):
    x = rng.normal(size=(20, 4))
    pos = np.full((20, 2), 0.1)  # every descriptor in the top-left quadrant
    for cb in (Codebook("bovw", rng.normal(size=(6, 4))),
               Codebook("vlad", rng.normal(size=(6, 4))),
               Codebook("fisher", rng.normal(size=(6, 4)), np.full(6, 1 / 6), np.ones((6, 4)))):
        flat = encode(x, pos, cb)
        pyr = encode(x, pos, cb, pyramid=True)
        assert flat.shape == (cb.dim(),) and pyr.shape == (5 * cb.dim(),)
        parts = pyr.reshape(5, -1) * np.sqrt(5)
        np.testing.assert_allclose(parts[0], flat)
        np.testing.assert_allclose(parts[1], flat)  # quadrant 0 holds everything
        assert not parts[2:].any()


def test_fit_codebook_kmeans_and_gmm(rng):
    x = rng.normal(size=(300, 10))
    km = fit_codebook(x, "vlad", 4, seed=0)
    assert km.centers.shape == (4, 10) and km.dim() == 40
    gmm = fit_codebook(x, "fisher", 3, seed=0, pca=5)
    assert gmm.centers.shape == (3, 5) and gmm.variances.shape == (3, 5)
    assert np.isclose(gmm.weights.sum(), 1.0) and gmm.dim() == 30


def test_codebook_larger_than_sample_names_both_numbers(rng):
    with pytest.raises(ConfigError, match="codebook of 50 centres .* the training sample has 20"):
        fit_codebook(rng.normal(size=(20, 3)), "bovw", 50)


def test_unknown_encoding_suggests(rng):
    with pytest.raises(ConfigError, match="did you mean 'fisher'"):
        fit_codebook(rng.normal(size=(20, 3)), "fsher", 2)
