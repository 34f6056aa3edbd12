"""Batched augmentation ops: shape, range, determinism, and what each op actually does."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.augment import OPS, build_augment, parse_spec
from cnnlab.errors import ConfigError

SPECS = ["crop:4", "flip", "translate:3", "translate:2,reflect", "affine:15,0.1,10", "color:0.2",
         "cutout:8"]


def _batch(b=16, c=3, h=32, w=24, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("spec", SPECS)
def test_shape_and_range_preserved(spec):
    op = build_augment([spec])
    for c in (1, 3):
        x = _batch(c=c)
        y = op(x, _gen())
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0.0 and y.max() <= 1.0
        assert not torch.equal(y, x)  # it did something


@pytest.mark.parametrize("spec", SPECS)
def test_same_generator_seed_same_output(spec):
    op = build_augment([spec])
    x = _batch()
    assert torch.equal(op(x, _gen(5)), op(x, _gen(5)))
    if spec != "flip":  # 16 coin flips could coincide; the rest draw continuous values
        assert not torch.equal(op(x, _gen(5)), op(x, _gen(6)))


def test_flip_is_exactly_a_mirror_on_the_flipped_subset():
    x = _batch(b=64)
    y = build_augment(["flip"])(x, _gen(1))
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert (flipped ^ kept).all()  # every image is exactly one of the two
    assert 10 < int(flipped.sum()) < 54  # about half


@pytest.mark.parametrize("spec", ["crop:0", "translate:0", "cutout:0", "color:0",
                                  "affine:0,0,0"])
def test_zero_strength_is_identity(spec):
    x = _batch()
    y = build_augment([spec])(x, _gen())
    if spec.startswith("affine"):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    else:
        assert torch.equal(y, x)


def test_translate_is_an_integer_shift_with_zero_fill():
    x = _batch(b=32, h=10, w=10) * 0.9 + 0.1  # no zeros in the source
    y = build_augment(["translate:2"])(x, _gen(3))
    for i in range(32):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.zeros_like(x[i])
                src = x[i][:, max(0, -dy):10 - max(0, dy), max(0, -dx):10 - max(0, dx)]
                ref[:, max(0, dy):max(0, dy) + src.shape[1],
                    max(0, dx):max(0, dx) + src.shape[2]] = src
                found |= torch.equal(y[i], ref)
        assert found


def test_crop_windows_come_from_the_reflect_padded_image():
    x = _batch(b=8, h=6, w=6)
    y = build_augment(["crop:2"])(x, _gen(2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(8):
        assert any(torch.equal(y[i], padded[i, :, r:r + 6, c:c + 6])
                   for r in range(5) for c in range(5))


def test_cutout_zeroes_a_square_of_at_most_n_by_n():
    x = _batch(b=32, h=16, w=16) * 0.9 + 0.1
    y = build_augment(["cutout:6"])(x, _gen(4))
    for i in range(32):
        zero = (y[i] == 0).all(0)
        assert (y[i][:, ~zero] == x[i][:, ~zero]).all()  # untouched elsewhere
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 6 and 1 <= len(cols) <= 6
        assert int(zero.sum()) == len(rows) * len(cols)  # a rectangle (a square clipped)
    assert any(int((y[i] == 0).all(0).sum()) == 36 for i in range(32))


def test_color_shifts_each_channel_by_a_constant():
    x = _batch(b=8) * 0.5 + 0.25  # far from the clamp
    y = build_augment(["color:0.2"])(x, _gen(7))
    shift = y - x
    flat = shift.flatten(2)
    torch.testing.assert_close(flat, flat[:, :, :1].expand_as(flat), atol=1e-6, rtol=0)
    assert flat.abs().max() <= 0.2 + 1e-6
    assert flat[:, :, 0].std() > 0.02  # channels and images get different offsets


def test_jitter_scales_about_the_image_mean_and_shifts_all_channels_alike(monkeypatch):
    x = _batch(b=64) * 0.5 + 0.25  # far from the clamp
    y = build_augment(["jitter:0.1,0.2"])(x, _gen(3))
    mean_x, mean_y = x.mean((1, 2, 3)), y.mean((1, 2, 3))
    shift = mean_y - mean_x  # the scale keeps the mean: what moves it is the shift
    assert shift.abs().max() <= 0.1 + 1e-5 and shift.std() > 0.02
    centred_x = x - mean_x.view(-1, 1, 1, 1)
    centred_y = y - mean_y.view(-1, 1, 1, 1)
    scale = (centred_y * centred_x).sum((1, 2, 3)) / (centred_x ** 2).sum((1, 2, 3))
    torch.testing.assert_close(centred_y, centred_x * scale.view(-1, 1, 1, 1), atol=1e-5,
                               rtol=0)  # one factor for every channel: hue is kept
    assert ((scale >= 0.8 - 1e-5) & (scale <= 1.2 + 1e-5)).all() and scale.std() > 0.05
    _pin_draws_to_upper_bound(monkeypatch)
    from cnnlab.data.augment import jitter

    y = jitter(0.1, 0.2)(x, _gen())  # both draws at their upper bound
    torch.testing.assert_close(y, centred_x * 1.2 + mean_x.view(-1, 1, 1, 1) + 0.1)
    bright = jitter(0.5, 0.0)(torch.full((1, 3, 4, 4), 0.8), _gen())
    assert bright.max() == 1.0  # clamped to [0, 1]
    for bad in ("jitter:-0.1", "jitter:0.1,1.0", "jitter:0.1,-0.2"):
        with pytest.raises(ConfigError, match="jitter needs"):
            build_augment([bad])


def _pin_draws_to_upper_bound(monkeypatch):
    from cnnlab.data import augment

    def upper(n, low, high, gen):
        return torch.full((n,), float(high), dtype=torch.float64)

    monkeypatch.setattr(augment, "_uniform", upper)


def test_affine_90_and_180_degrees_are_exact_pixel_permutations(monkeypatch):
    from cnnlab.data.augment import affine

    _pin_draws_to_upper_bound(monkeypatch)
    square = _batch(b=3, h=9, w=9)
    y = affine(90)(square, _gen())
    assert any(torch.allclose(y, torch.rot90(square, k, dims=(2, 3)), atol=1e-5)
               for k in (1, -1))
    wide = _batch(b=3, h=6, w=10)  # non-square: the map works in pixel units
    torch.testing.assert_close(affine(180)(wide, _gen()), wide.flip(-1).flip(-2),
                               atol=1e-5, rtol=0)


def test_affine_scale_and_shear(monkeypatch):
    from cnnlab.data.augment import affine

    _pin_draws_to_upper_bound(monkeypatch)
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10 + 4] = 1.0  # a dot 4 px right of the centre
    y = affine(0, 0.5)(x, _gen())  # scale 1.5: the dot moves to 6 px right
    assert y[0, 0].flatten().argmax().item() == 10 * 21 + 16
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10 + 4, 10] = 1.0  # a dot 4 px below the centre
    y = affine(0, 0, 45)(x, _gen())  # x-shear by 45°: x += tan(45°)·y = +4
    assert y[0, 0].flatten().argmax().item() == 14 * 21 + 14


def test_pipeline_and_parsing():
    assert parse_spec("affine:10,0.1,5") == ("affine", [10.0, 0.1, 5.0])
    assert parse_spec("translate:2,reflect") == ("translate", [2.0, "reflect"])
    op = build_augment("crop:2+flip")
    x = _batch()
    assert op(x, _gen()).shape == x.shape
    assert build_augment(None) is None and build_augment([]) is None
    with pytest.raises(ConfigError, match="unknown augmentation 'flp'"):
        build_augment(["flp"])
    with pytest.raises(ConfigError, match="bad arguments"):
        build_augment(["cutout:1,2,3"])
    with pytest.raises(ConfigError, match=r"'jitter:x': jitter takes \(brightness, contrast\)"):
        build_augment(["jitter:x"])
    with pytest.raises(ConfigError, match="fill must be zero or reflect"):
        build_augment(["translate:2,wrap"])
    assert set(OPS) >= {"crop", "flip", "translate", "affine", "color", "cutout"}
