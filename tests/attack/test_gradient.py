"""FGSM and PGD: closed forms on a linear model, exact budgets, [0, 1], no side effects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.attack import fgsm, pgd, project
from cnnlab.attack.gradient import check_budget, enforce_budget
from cnnlab.errors import ConfigError


def linear_model(d: int = 12, k: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k)).double().eval()


def hand_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∇ₓ CE(Wx + b, y) = Wᵀ(softmax(Wx + b) − onehot(y)), per image, by hand."""
    lin = model[1]
    z = x.flatten(1) @ lin.weight.T + lin.bias
    g = (z.softmax(1) - nn.functional.one_hot(labels, z.shape[1]).double()) @ lin.weight
    return g.view_as(x)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0])
def test_fgsm_equals_its_closed_form_on_a_linear_model(eps):
    model = linear_model()
    x = torch.rand(16, 1, 3, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (16,))
    expected = (x + eps * hand_gradient(model, x, y).sign()).clamp(0, 1).detach()
    # equal up to the ulp enforce_budget may take off where float rounding overshot ε
    torch.testing.assert_close(fgsm(model, x, y, eps), expected, rtol=0, atol=1e-15)


def test_targeted_and_l2_fgsm_closed_forms():
    model = linear_model(seed=1)
    x = torch.rand(8, 1, 3, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    # targeted: descend the target's loss
    g_t = hand_gradient(model, x, torch.full_like(y, 2)).detach()
    torch.testing.assert_close(fgsm(model, x, y, 0.1, target=2),
                               (x - 0.1 * g_t.sign()).clamp(0, 1), rtol=0, atol=1e-15)
    # L2 ("fast gradient method"): a step of length ε along ∇/‖∇‖₂
    g = hand_gradient(model, x, y).detach()
    unit = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(fgsm(model, x, y, 0.5, norm="l2"), (x + 0.5 * unit).clamp(0, 1),
                               rtol=0, atol=1e-12)


def test_pgd_one_step_without_start_is_fgsm():
    model = linear_model(seed=2)
    x = torch.rand(8, 1, 3, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (8,))
    assert torch.equal(pgd(model, x, y, 0.2, steps=1, step_size=0.2, random_init=False),
                       fgsm(model, x, y, 0.2))


def small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5)).eval()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("seed", range(6))
def test_pgd_never_leaves_the_ball_nor_the_pixel_range(norm, seed):
    """Random cases, hypothesis-style: budgets from 0 to large, steps far bigger than the
    ball (so every step needs the projection), pixels at 0 and 1 (so clamping bites)."""
    gen = torch.Generator().manual_seed(seed)
    model = small_cnn(seed)
    x = torch.rand(12, 3, 6, 6, generator=gen)
    x[:3] = x[:3].round()  # saturated images: clamping to [0, 1] is active
    y = torch.randint(0, 5, (12,), generator=gen)
    top = 1.0 if norm == "linf" else 5.0
    eps = float([0.0, top, *(torch.rand(4, generator=gen) * top).tolist()][seed])
    step = float(torch.rand(1, generator=gen)) * 3 * max(eps, 1e-3)
    for target in (None, int(torch.randint(0, 5, (1,), generator=gen))):
        x_adv = pgd(model, x, y, eps, norm=norm, steps=5, step_size=step, target=target,
                    generator=gen)
        d = (x_adv.double() - x.double()).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert (size <= eps).all(), (size.max().item(), eps)  # exactly, in float64
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert x_adv.dtype == x.dtype and x_adv.shape == x.shape


def test_enforce_budget_removes_float32_rounding():
    x = torch.full((2, 1, 2, 2), 0.7)
    eps = 0.1
    raw = x + torch.tensor(eps, dtype=torch.float32)  # float32(0.1) > 0.1: overshoots
    assert ((raw.double() - x.double()).abs() > eps).any()
    fixed = enforce_budget(x, raw, eps, "linf")
    assert ((fixed.double() - x.double()).abs() <= eps).all()
    assert (fixed - raw).abs().max() < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 1e-3, 8 / 255, 0.1, 0.3, 1.0])
def test_enforce_budget_is_exact_next_to_dark_and_bright_pixels(dtype, eps):
    """A dark pixel pushed from a bright one rounds on its own (finer) grid: the CLI once
    reported max_linf 0.3000000063 for ε = 0.3 before the box clamp."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2000, generator=gen, dtype=dtype)
    x[:100], x[100:200] = 0, 1
    sign = torch.randint(0, 2, (2000,), generator=gen).to(dtype) * 2 - 1
    raw = x + eps * sign * (1 + 1e-6 * torch.rand(2000, generator=gen, dtype=dtype))
    fixed = enforce_budget(x, raw, eps, "linf")
    assert ((fixed.double() - x.double()).abs() <= eps).all()
    assert fixed.min() >= 0 and fixed.max() <= 1
    assert ((fixed - raw.clamp(0, 1)).abs() < 1e-6).all()


def test_project_is_the_nearest_point_of_the_ball():
    d = torch.tensor([[[[3.0, -4.0]]], [[[0.3, 0.0]]]])
    torch.testing.assert_close(project(d, 1.0, "l2"), torch.tensor([[[[0.6, -0.8]]],
                                                                   [[[0.3, 0.0]]]]))
    torch.testing.assert_close(project(d, 0.5, "linf"), torch.tensor([[[[0.5, -0.5]]],
                                                                     [[[0.3, 0.0]]]]))


def test_attacks_leave_the_model_alone():
    model = small_cnn(0)
    x, y = torch.rand(4, 3, 6, 6), torch.randint(0, 5, (4,))
    pgd(model, x, y, 0.1, steps=3)
    fgsm(model, x, y, 0.1)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_pgd_makes_a_trained_model_fail(digits_model, digits_data):
    _, _, x, y = digits_data
    x, y = x[:200], y[:200]
    clean = (digits_model(x).argmax(1) == y).float().mean()
    weak = (digits_model(pgd(digits_model, x, y, 0.05, steps=10)).argmax(1) == y).float().mean()
    strong = (digits_model(pgd(digits_model, x, y, 0.3, steps=10)).argmax(1) == y).float().mean()
    assert clean > 0.95 and strong < 0.05 and strong < weak < clean
    x_t = pgd(digits_model, x, y, 0.3, steps=10, target=3)
    assert (digits_model(x_t).argmax(1) == 3).float().mean() > 0.9


@pytest.mark.parametrize("eps,norm", [(-0.1, "linf"), (1.5, "linf"), (float("nan"), "linf"),
                                      (-1.0, "l2"), (100.0, "l2")])
def test_impossible_budgets_are_refused(eps, norm):
    with pytest.raises(ConfigError, match="eps"):
        check_budget(eps, norm, (1, 8, 8))
    check_budget(2.0, "l2", (1, 28, 28))  # an L2 budget above 1 is ordinary
    with pytest.raises(ConfigError, match="steps"):
        pgd(linear_model(), torch.rand(1, 1, 3, 4, dtype=torch.float64), torch.tensor([0]), 0.1,
            steps=0)


def test_restarts_keep_the_worst_case_per_image(digits_model, digits_data):
    from cnnlab.attack.robustness import gradient_attack

    _, _, x, y = digits_data
    x, y = x[:200], y[:200]

    def accuracy(x_adv):
        return (digits_model(x_adv).argmax(1) == y).float().mean().item()

    # a weak attack (few steps, small ε) leaves images standing that other starts break
    one = gradient_attack(digits_model, x, y, 0.06, steps=2, seed=0)
    five = gradient_attack(digits_model, x, y, 0.06, steps=2, seed=0, restarts=5)
    assert accuracy(five) < accuracy(one)
    # the first start is the same, later starts only replace images not yet broken
    broken_once = digits_model(one).argmax(1) != y
    assert torch.equal(five[broken_once], one[broken_once])
    assert (five - x).abs().max() <= 0.06 and five.min() >= 0 and five.max() <= 1


def test_restarts_are_for_pgd_only(digits_run):
    from cnnlab.attack import run_attack

    with pytest.raises(ConfigError, match="--restarts"):
        run_attack(digits_run, method="fgsm", eps=0.1, restarts=3, n=10)
    with pytest.raises(ConfigError, match="--restarts"):
        run_attack(digits_run, method="pgd", eps=0.1, restarts=0, n=10)
