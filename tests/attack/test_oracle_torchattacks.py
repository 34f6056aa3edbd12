"""Our FGSM/PGD against an independent implementation (torchattacks, a test-only dependency:
``pip install --no-deps torchattacks`` — its declared torchvision dependency would pull a CUDA
torch, and the attacks do not need it)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.attack import fgsm, pgd

torchattacks = pytest.importorskip("torchattacks")


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def batch(digits_data):
    x_train, y_train, x_test, y_test = digits_data
    return torch.cat([x_test, x_train])[:400], torch.cat([y_test, y_train])[:400]


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_fgsm_agrees_with_torchattacks(digits_model, batch, eps):
    x, y = batch
    ours = fgsm(digits_model, x, y, eps)
    theirs = torchattacks.FGSM(digits_model, eps=eps)(x, y)
    assert abs(accuracy(digits_model, ours, y) - accuracy(digits_model, theirs, y)) <= 0.01
    # same images, up to float ulps (and a sign of a vanishing gradient component)
    assert ((ours - theirs).abs() > 1e-5).float().mean() < 0.001


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.1, 0.02), ("l2", 0.5, 0.1)])
def test_pgd_agrees_with_torchattacks(digits_model, batch, norm, eps, alpha):
    x, y = batch
    ours = pgd(digits_model, x, y, eps, norm=norm, steps=10, step_size=alpha, random_init=False)
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    theirs = cls(digits_model, eps=eps, alpha=alpha, steps=10, random_start=False)(x, y)
    acc_ours, acc_theirs = accuracy(digits_model, ours, y), accuracy(digits_model, theirs, y)
    assert acc_ours < accuracy(digits_model, x, y) - 0.2  # the attack did something
    assert abs(acc_ours - acc_theirs) <= 0.01
    # the same images up to float rounding, which 10 projected steps can grow: measured max
    # |Δ| 6e-8 (L∞) and 4e-7 (L2) on AVX-512 MKL; with MKL capped to AVX2 (as on a Zen 3) the
    # L2 attack's 4e-4, in 0.14 % of the pixels
    assert (ours - theirs).abs().max() < 2e-3
    assert ((ours - theirs).abs() > 1e-5).float().mean() < 0.005
    # with random starts (different draws) only sampling noise separates them: measured
    # differences of 0–2 points over three seeds on these 400 images
    ours_rs = pgd(digits_model, x, y, eps, norm=norm, steps=10, step_size=alpha,
                  generator=torch.Generator().manual_seed(1))
    theirs_rs = cls(digits_model, eps=eps, alpha=alpha, steps=10, random_start=True)(x, y)
    assert abs(accuracy(digits_model, ours_rs, y) - accuracy(digits_model, theirs_rs, y)) <= 0.03
