"""Winograd F(4×4, 3×3) convolution (models/winograd.py): the same numbers as a direct
convolution in float64 — forward, input gradient, filter gradient — on every map shape the
tiles can leave ragged, and the places where it must step aside."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.models import create_model, fused, winograd
from cnnlab.models.fastconv import FastConv3x3
from cnnlab.models.winograd import use_winograd, winograd_conv3x3
from cnnlab.perf.flops import count_macs

CL = torch.channels_last
needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler: the direct convolution runs instead")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def _check(n, c, k, h, w, x_grad=True, tol=2e-5):
    torch.manual_seed(n * 1000 + c * 10 + h)
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    wt = torch.randn(k, c, 3, 3, dtype=torch.float64, requires_grad=True)
    x64 = x.clone().requires_grad_(x_grad)
    y64 = F.conv2d(x64, wt, padding=1)
    g = torch.randn_like(y64)
    grads64 = torch.autograd.grad(y64, [t for t in (x64, wt) if t.requires_grad], g)
    x32 = x.float().contiguous(memory_format=CL).requires_grad_(x_grad)
    w32 = wt.detach().float().requires_grad_()
    y32 = winograd_conv3x3(x32, w32)
    assert y32.shape == y64.shape and y32.is_contiguous(memory_format=CL)
    grads32 = torch.autograd.grad(y32, [t for t in (x32, w32) if t.requires_grad], g.float())
    assert _rel(y32, y64) < tol
    for a, b in zip(grads32, grads64, strict=True):
        assert a.shape == b.shape and _rel(a, b) < tol


@needs_cc
@pytest.mark.parametrize("n,c,k,h,w", [
    (2, 20, 33, 15, 15),   # 4×4 tiles, the last row and column of tiles ragged
    (3, 5, 7, 7, 7),       # 2×2 tiles over an 8×8 cover
    (2, 16, 16, 8, 8),     # tiles fit exactly
    (1, 17, 9, 5, 6),      # non-square, channels not a multiple of the 16-float block
    (2, 8, 8, 3, 3),       # one tile larger than the map
    (2, 8, 8, 1, 1),       # a single pixel
    (2, 24, 64, 31, 31),   # cifar-speednet's first group at 32×32
])
def test_matches_a_direct_convolution_in_float64(n, c, k, h, w):
    _check(n, c, k, h, w)


@needs_cc
def test_filter_gradient_alone_when_the_input_needs_none():
    """The first conv after a frozen layer: no input gradient is computed, the filter's is."""
    _check(3, 12, 40, 9, 9, x_grad=False)


@needs_cc
def test_only_fp32_layers_wide_enough_take_it(monkeypatch):
    x = torch.randn(16, 256, 7, 7).contiguous(memory_format=CL)  # 16 × 2 × 2 = 64 tiles
    assert use_winograd(x, 256, 256) and use_winograd(x, 64, 256)
    # fewer tiles: only where the caller keeps the transformed filters (inference), from 16
    assert not use_winograd(x[:15], 256, 256) and use_winograd(x[:4], 256, 256, filters_kept=True)
    assert not use_winograd(x[:3], 256, 256, filters_kept=True)  # 12 tiles
    assert not use_winograd(x, 64, 64)  # thin layers: the transforms cost more than they save
    assert not use_winograd(x.bfloat16(), 256, 256)
    assert not use_winograd(x.double(), 256, 256)
    net = create_model("cifar-speednet").eval()
    conv = FastConv3x3(256, 256)
    traced = torch.jit.trace(conv, x)  # a ctypes call is not traceable: the direct conv is
    x2 = torch.randn_like(x)
    assert _rel(traced(x2), conv(x2)) < 2e-5
    with FlopCounterMode(display=False) as counter:  # counts the direct conv's multiply-adds
        assert not use_winograd(x, 256, 256)
        net(torch.randn(2, 3, 32, 32))
    assert counter.get_total_flops() == 2 * 2 * count_macs(net, (3, 32, 32))  # 118 M a image
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not use_winograd(x, 256, 256)  # autocast computes the conv in bf16
    monkeypatch.setattr(winograd, "_state", {})
    monkeypatch.setenv("CNNLAB_WINOGRAD", "0")
    assert winograd.kernels() is None and not use_winograd(x, 256, 256)


@needs_cc
def test_cifar_speednet_trains_the_same_with_and_without_it(monkeypatch):
    """One fp32 training step of cifar-speednet (its 64→256 and 256→256 convs take the
    Winograd path): the loss and every gradient match the direct convolutions'."""
    monkeypatch.setattr(winograd, "MIN_TILES", 1)  # batch 8: the 7×7 and 3×3 layers too

    def step(enabled: bool):
        monkeypatch.setattr(winograd, "_state", {})
        monkeypatch.setenv("CNNLAB_WINOGRAD", "1" if enabled else "0")
        torch.manual_seed(0)
        model = create_model("cifar-speednet").to(memory_format=CL)
        x = torch.randn(8, 3, 32, 32).contiguous(memory_format=CL)
        loss = F.cross_entropy(model(x), torch.arange(8))
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                             if p.grad is not None}

    loss0, grads0 = step(False)  # CNNLAB_WINOGRAD=0: the opt-out, silently direct
    loss1, grads1 = step(True)
    assert abs(loss0 - loss1) < 1e-5
    assert grads0.keys() == grads1.keys() and len(grads1) > 6
    for name in grads1:
        assert _rel(grads1[name], grads0[name]) < 1e-3, name


@needs_cc
@pytest.mark.skipif(fused.platform.machine() != "x86_64", reason="x86-64 builds only")
def test_the_avx2_build_a_zen3_gets_computes_the_same(monkeypatch, tmp_path):
    """CNNLAB_MARCH=x86-64-v3 (AVX2: what -march=native is on a Zen 3) builds its own library
    in the cache, and it matches float64 too."""
    monkeypatch.setattr(winograd, "_state", {})
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CNNLAB_MARCH", "x86-64-v3")
    assert winograd.kernels() is not None, winograd._state.get("error")
    assert [p.name.startswith("winograd-") for p in (tmp_path / "kernels").iterdir()] == [True]
    _check(2, 20, 33, 15, 15)
    _check(2, 256, 256, 3, 3)


@needs_cc
def test_inference_keeps_the_transformed_filters_until_the_weights_change(monkeypatch):
    """Eval / no_grad: the filter transform is computed once and reused (Winograd then pays
    from batch 1); an optimizer step, load_state_dict or training mode gets fresh ones."""
    calls = []
    real = winograd.filter_transform

    def counted(weight):
        calls.append(weight.shape)
        return real(weight)

    monkeypatch.setattr("cnnlab.models.fastconv.filter_transform", counted)
    monkeypatch.setattr(winograd, "filter_transform", counted)
    torch.manual_seed(0)
    conv = FastConv3x3(64, 256).eval()
    x = torch.randn(4, 64, 5, 5).contiguous(memory_format=CL)  # 16 tiles: MIN_TILES_KEPT
    with torch.no_grad():
        y1, y2 = conv(x), conv(x)
    assert len(calls) == 1 and y1.is_contiguous(memory_format=CL)  # the Winograd output
    assert _rel(y2, F.conv2d(x, conv.weight, padding=1)) < 1e-5
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv.weight.grad = torch.randn_like(conv.weight)
    opt.step()  # in place: the weight's version moves on
    with torch.no_grad():
        assert _rel(conv(x), F.conv2d(x, conv.weight, padding=1)) < 1e-5
    assert len(calls) == 2
    conv.load_state_dict({"weight": torch.randn_like(conv.weight)})
    with torch.inference_mode():
        assert _rel(conv(x), F.conv2d(x, conv.weight, padding=1)) < 1e-5
    assert len(calls) == 3
    assert list(conv.state_dict()) == ["weight"]  # nothing of it in a checkpoint
    with torch.no_grad():  # the look-ahead average's way: through the state dict, in place
        conv.state_dict()["weight"].mul_(-0.5)
        assert _rel(conv(x), F.conv2d(x, conv.weight, padding=1)) < 1e-5
        conv.to(torch.float64).to(torch.float32)  # a new tensor: never the old address
        assert _rel(conv(x), F.conv2d(x, conv.weight, padding=1)) < 1e-5
    assert len(calls) == 5
    xb = torch.randn(16, 64, 5, 5).contiguous(memory_format=CL)  # 64 tiles: trains through it
    conv.train()(xb).sum().backward()
    conv(xb)
    assert len(calls) == 7 and conv._wino_cache is None  # per call, and no stale copy kept
    conv.weight.requires_grad_(False)  # a frozen layer, gradients to its input only
    xg = x.clone().requires_grad_(True)
    conv(xg).sum().backward()
    ref = torch.autograd.grad(F.conv2d(xg, conv.weight, padding=1).sum(), xg)[0]
    assert _rel(xg.grad, ref) < 1e-5 and len(calls) == 8
