"""Universal perturbations, adversarial patches, EOT, and the affine transforms under them."""

from __future__ import annotations

import pytest
import torch

from cnnlab.attack import apply_patch, deepfool, fooling_rate, placement_theta
from cnnlab.attack.eot import TransformDist, compare_under_transforms, eot_pgd
from cnnlab.attack.patch import patch_curve
from cnnlab.attack.transforms import affine_theta, rotate_scale
from cnnlab.attack.universal import apply_universal, random_perturbation, universal_perturbation

# -- transforms and patch placement ---------------------------------------------------------


def test_rotate_scale_identity_and_quarter_turn():
    x = torch.rand(2, 3, 6, 6)
    same = rotate_scale(x, torch.zeros(2), torch.ones(2))
    torch.testing.assert_close(same, x, atol=1e-6, rtol=0)
    quarter = rotate_scale(x, torch.full((2,), torch.pi / 2), torch.ones(2))
    rotated = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min((quarter - r).abs().max() for r in rotated) < 1e-5


def test_patch_lands_exactly_where_placed():
    """Unrotated, scale 1: the P×P patch covers exactly the P×P pixel block at its centre."""
    x = torch.rand(1, 2, 8, 10)
    patch = torch.rand(2, 4, 4)
    # block rows 2..5, cols 6..9: centre (7.5, 3.5) px → normalized x 2·8/10 − 1, y 2·4/8 − 1
    center = torch.tensor([[2 * 8 / 10 - 1, 2 * 4 / 8 - 1]])
    theta = affine_theta(torch.zeros(1), torch.ones(1), center, (8, 10), (4, 4))
    out, mask = apply_patch(x, patch, theta)
    expected_mask = torch.zeros(1, 1, 8, 10)
    expected_mask[..., 2:6, 6:10] = 1
    torch.testing.assert_close(mask, expected_mask, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, :, 2:6, 6:10], patch, atol=1e-6, rtol=0)
    untouched = expected_mask[0, 0] == 0
    assert torch.equal(out[0][:, untouched], x[0][:, untouched])


def test_random_placements_stay_inside_and_keep_the_area():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    theta = placement_theta(64, 6, (16, 16), scale=(1.0, 1.0), rotation=0.0, generator=gen)
    _, mask = apply_patch(x, torch.ones(1, 6, 6), theta)
    # the whole 6×6 patch is inside every image (bilinear spreads, never loses, its area)
    torch.testing.assert_close(mask.sum((1, 2, 3)), torch.full((64,), 36.0), atol=1e-3, rtol=0)
    theta = placement_theta(64, 6, (16, 16), rotation=45.0, generator=gen)
    out, mask = apply_patch(torch.rand(64, 1, 16, 16), torch.rand(1, 6, 6), theta)
    assert out.min() >= 0 and out.max() <= 1 and mask.max() <= 1 + 1e-6


# -- universal perturbations ----------------------------------------------------------------


@pytest.mark.parametrize("norm,eps", [("linf", 0.2), ("l2", 1.0)])
def test_universal_perturbation_beats_random_noise_within_budget(digits_model, digits_data,
                                                                 norm, eps):
    x_train, _, x_test, _ = digits_data
    gen = torch.Generator().manual_seed(0)
    v, history = universal_perturbation(digits_model, x_train[:500], eps, norm=norm,
                                        max_passes=3, generator=gen)
    size = v.abs().max() if norm == "linf" else v.norm()
    assert size <= eps + 1e-6 and len(history) >= 1
    x_adv = apply_universal(x_test, v, eps, norm)
    d = (x_adv.double() - x_test.double()).flatten(1)
    assert ((d.abs().amax(1) if norm == "linf" else d.norm(dim=1)) <= eps).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ours = fooling_rate(digits_model, x_test, v)
    noise = [fooling_rate(digits_model, x_test, random_perturbation(tuple(v.shape), eps, norm,
                                                                    torch.Generator()
                                                                    .manual_seed(s)))
             for s in range(3)]
    assert ours > max(noise) + 0.05, (ours, noise)


def test_deepfool_algorithm_runs_in_budget(digits_model, digits_data):
    x_train, _, x_test, _ = digits_data
    v, _ = universal_perturbation(digits_model, x_train[:64], 0.2, algorithm="deepfool",
                                  max_passes=1, generator=torch.Generator().manual_seed(0))
    assert v.abs().max() <= 0.2 + 1e-6 and v.abs().max() > 0


def test_deepfool_reaches_the_boundary(digits_model, digits_data):
    x = digits_data[2][:64]
    r = deepfool(digits_model, x, norm="l2")
    with torch.no_grad():
        before = digits_model(x).argmax(1)
        after = digits_model((x + r).clamp(0, 1)).argmax(1)
    assert (before != after).float().mean() > 0.95
    # minimal: a much smaller step (half of it) flips far fewer labels
    with torch.no_grad():
        half = digits_model((x + 0.5 * r).clamp(0, 1)).argmax(1)
    assert (before != half).float().mean() < 0.5


# -- patch and EOT --------------------------------------------------------------------------


def test_trained_patch_beats_a_random_patch(digits_model, digits_data):
    x_train, _, x_test, y_test = digits_data
    points, patches = patch_curve(digits_model, x_train[:400], x_test, y_test, target=3,
                                  sizes=[0.5], steps=60, placements=2, seed=0)
    (p,) = points
    assert patches[0.5].shape == (1, 4, 4) and 0 <= patches[0.5].min() <= patches[0.5].max() <= 1
    assert p["success_rate"] > p["random_patch_success_rate"] + 0.1, p


def test_eot_example_survives_transforms_better_than_plain_pgd(digits_model, digits_data):
    _, _, x, y = digits_data
    x, y = x[:80], y[:80]
    dist = TransformDist(rotation=20.0, scale=(0.9, 1.1), noise=0.05)
    gen = torch.Generator().manual_seed(0)
    x_eot = eot_pgd(digits_model, x, y, 0.1, steps=20, samples=8, dist=dist, generator=gen)
    assert (x_eot.double() - x.double()).abs().max() <= 0.1
    assert x_eot.min() >= 0 and x_eot.max() <= 1
    report, x_pgd = compare_under_transforms(digits_model, x, y, x_eot, 0.1, steps=20,
                                             dist=dist, draws=10, seed=1)
    assert (x_pgd.double() - x.double()).abs().max() <= 0.1
    assert report["eot_success_under_transforms"] > report["pgd_success_under_transforms"], report
