"""The fused max-pool → BatchNorm → GELU/ReLU kernel (models/fused.py): the same numbers as the
eager layers (checked against float64), the same running statistics, the fallbacks."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import create_model, fused
from cnnlab.models.fused import can_fuse, kernels, pool_bn_act

CL = torch.channels_last
needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler: the eager layers run instead (tested below)")


def _eager(x, bn, act, pool):
    if pool:
        x = F.max_pool2d(x, 2)
    return (nn.GELU() if act == "gelu" else nn.ReLU())(bn(x))


def _pair(c: int, seed: int = 0):
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(c, momentum=0.4, eps=1e-5)
    with torch.no_grad():
        bn.bias.normal_()
        bn.weight.uniform_(0.5, 1.5)
        bn.running_var.uniform_(0.5, 2.0)
    ref = nn.BatchNorm2d(c, momentum=0.4, eps=1e-5).double()
    ref.load_state_dict(bn.state_dict())
    return bn, ref


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@needs_cc
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("act", ["gelu", "relu"])
@pytest.mark.parametrize("shape", [(4, 16, 7, 9), (3, 5, 2, 3), (2, 40, 6, 6)])
def test_matches_eager_layers_in_float64(dtype, tol, pool, act, shape):
    """Forward, input gradient, BN shift/scale gradients and running statistics, odd sizes
    (a dropped last row/column), channel counts that are not a vector width."""
    bn, ref = _pair(shape[1])
    x = torch.randn(shape).to(dtype).contiguous(memory_format=CL)
    x_ref = x.double().requires_grad_()
    x = x.requires_grad_()
    y_ref = _eager(x_ref, ref, act, pool)
    y = pool_bn_act(x, bn, act, pool)
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert y.is_contiguous(memory_format=CL)
    g = torch.randn(y_ref.shape, dtype=torch.float64)
    y_ref.backward(g)
    y.backward(g.to(dtype))
    assert _rel(y, y_ref) < tol
    assert _rel(x.grad, x_ref.grad) < tol
    assert _rel(bn.bias.grad, ref.bias.grad) < tol
    assert _rel(bn.weight.grad, ref.weight.grad) < tol
    assert _rel(bn.running_mean, ref.running_mean) < 1e-5
    assert _rel(bn.running_var, ref.running_var) < 1e-5
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 1


@needs_cc
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("act", ["gelu", "relu"])
@pytest.mark.parametrize("shape", [(4, 16, 7, 9), (3, 5, 2, 3), (2, 40, 6, 6)])
def test_eval_pass_matches_eager_layers_in_float64(dtype, tol, pool, act, shape):
    """Eval mode without autograd (evaluation, test-time augmentation): the running
    statistics folded into one scale and shift, the same outputs as the eager layers, and
    nothing about the BN changes."""
    bn, ref = _pair(shape[1])
    bn.eval(), ref.eval()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(shape).to(dtype).contiguous(memory_format=CL)
    with torch.no_grad():
        assert can_fuse(x, bn, pool)
        y = pool_bn_act(x, bn, act, pool)
        y_ref = _eager(x.double(), ref, act, pool)
    assert y.dtype == dtype and y.shape == y_ref.shape and y.is_contiguous(memory_format=CL)
    assert _rel(y, y_ref) < tol
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k


@needs_cc
def test_ties_route_the_gradient_like_max_pool_and_nan_propagates():
    """Equal values in a window: the whole gradient goes to the first one, as PyTorch's
    max-pool does (not split, not doubled); a NaN in a window comes out as NaN."""
    x = torch.zeros(2, 8, 4, 4).contiguous(memory_format=CL)  # every window a 4-way tie
    x[0, :, 1, 1] = 1.0
    bn, ref = _pair(8)
    x1 = x.clone().requires_grad_()
    x2 = x.double().requires_grad_()
    g = torch.randn(2, 8, 2, 2, dtype=torch.float64)
    pool_bn_act(x1, bn, "relu", True).backward(g.float())
    _eager(x2, ref, "relu", True).backward(g)
    torch.testing.assert_close(x1.grad.double(), x2.grad, rtol=1e-5, atol=1e-6)
    assert (x1.grad != 0).sum() <= 2 * 8 * 4  # one nonzero per window at most
    x[1, 3, 2, 2] = float("nan")
    with torch.no_grad():
        y = pool_bn_act(x, nn.BatchNorm2d(8), "gelu", True)
    assert torch.isnan(y[:, 3]).any()


@needs_cc
def test_speednet_trains_the_same_fused_and_unfused():
    """Three SGD steps of cifar-speednet with and without the fused kernels (fp32): the same
    loss, weights and BN statistics to float rounding, and the same eval outputs."""
    torch.manual_seed(0)
    a = create_model("cifar-speednet", fast_conv=False, fused=True)
    b = create_model("cifar-speednet", fast_conv=False, fused=False)
    b.load_state_dict(a.state_dict())
    a, b = a.to(memory_format=CL), b.to(memory_format=CL)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (16,))
    for _ in range(3):
        losses = []
        for model, opt in ((a, opt_a), (b, opt_b)):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if pa.is_floating_point():
            torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-4, msg=name)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-3, atol=1e-4)


@needs_cc
def test_bf16_training_under_autocast_tracks_the_eager_net():
    """cifar-speednet in bf16 autocast (how the speed-run trains): the fused net's loss stays
    within bf16 noise of the eager one's over a few Muon-free SGD steps."""
    torch.manual_seed(1)
    a = create_model("cifar-speednet", fused=True).to(memory_format=CL)
    b = create_model("cifar-speednet", fused=False).to(memory_format=CL)
    b.load_state_dict(a.state_dict())
    x = torch.randn(32, 3, 32, 32).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (32,))
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (a, b)]
    for _ in range(3):
        losses = []
        for model, opt in zip((a, b), opts, strict=True):
            with torch.autocast("cpu", torch.bfloat16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=2e-2)


def test_eager_layers_run_where_the_kernel_does_not_apply():
    """Not channels-last, eval mode with autograd, a hook on a fused layer, a 1-pixel map, a
    float64 tensor: no fusion, so hooks still fire and anything unusual gets the layers' own
    behaviour."""
    bn = nn.BatchNorm2d(8)
    x = torch.randn(2, 8, 6, 6)
    assert not can_fuse(x, bn, True)  # NCHW
    xc = x.contiguous(memory_format=CL)
    assert not can_fuse(xc[:, :, :1, :1].contiguous(memory_format=CL), bn, True)
    assert not can_fuse(xc.double(), bn, True)
    bn.eval()
    assert not can_fuse(xc, bn, True)  # eval with autograd on: a saliency map's backward
    bn.train()
    handle = bn.register_forward_hook(lambda *a: None)
    assert not can_fuse(xc, bn, True)
    handle.remove()
    act = nn.GELU()
    act.register_forward_hook(lambda *a: None)
    assert not can_fuse(xc, bn, True, act)
    assert fused.act_kind(nn.GELU(approximate="tanh")) is None
    assert fused.act_kind(nn.SiLU()) is None


@needs_cc
def test_compiled_and_exported_nets_trace_the_eager_layers():
    """Inside torch.compile / torch.export the fused path steps aside (a ctypes call cannot
    be traced; the graph compiler fuses those layers itself): the compiled net's outputs in
    eval and training match the uncompiled net's."""
    torch.manual_seed(0)
    model = create_model("cifar-speednet").to(memory_format=CL).eval()
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=CL)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), model(x), rtol=1e-4, atol=1e-5)
    model.train()
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_hooks_on_a_group_layer_still_fire_in_training():
    """A feature-map hook on a ConvGroup's GELU (explain tools, `cnnlab profile`) sees it run."""
    model = create_model("cifar-speednet").to(memory_format=CL).train()
    seen = []
    model.features[2][3].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(4, 3, 32, 32).contiguous(memory_format=CL))
    assert seen == [torch.Size([4, 64, 15, 15])]


def test_no_compiler_or_opt_out_falls_back_with_a_reason(monkeypatch, tmp_path):
    """CNNLAB_FUSED=0 or a compiler that fails: kernels() is None with the reason, nothing
    half-written in the cache, and cifar-speednet still trains (eager layers)."""
    monkeypatch.setattr(fused, "_state", {})
    monkeypatch.setenv("CNNLAB_FUSED", "0")
    assert kernels() is None and "CNNLAB_FUSED=0" in fused.unavailable_reason()

    monkeypatch.setattr(fused, "_state", {})
    monkeypatch.delenv("CNNLAB_FUSED")
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    if fused.platform.system() == "Linux" and fused.platform.machine() == "x86_64":
        with pytest.warns(RuntimeWarning, match="eager layers"):
            assert kernels() is None
        assert "failed" in fused.unavailable_reason()
        assert list((tmp_path / "kernels").iterdir()) == []  # no temp or partial .so left
    model = create_model("cifar-speednet").to(memory_format=CL)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=CL)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    assert model.features[2][2].bias.grad is not None


@needs_cc
def test_build_goes_to_the_cache_once(monkeypatch, tmp_path):
    """A fresh cache directory: one library appears (named by source, CPU and flags), and a
    second load reuses it rather than compiling again."""
    monkeypatch.setattr(fused, "_state", {})
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    assert kernels() is not None
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].name.startswith("fused-") and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(fused, "_state", {})
    calls = []
    monkeypatch.setattr(fused, "_build", lambda *a: calls.append(a))
    assert kernels() is not None and calls == []
    assert built[0].stat().st_mtime_ns == stamp


@needs_cc
@pytest.mark.skipif(fused.platform.machine() != "x86_64", reason="x86-64 builds only")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 2e-2)])
def test_the_avx2_build_a_zen3_gets_computes_the_same(monkeypatch, tmp_path, dtype, tol):
    """CNNLAB_MARCH=x86-64-v3 (AVX2, no AVX-512: what -march=native is on a Zen 3) builds its
    own library beside the native one, and training and eval passes match float64 as well."""
    monkeypatch.setattr(fused, "_state", {})
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CNNLAB_MARCH", "x86-64-v3")
    assert "-march=x86-64-v3" in fused._cflags()
    assert kernels() is not None, fused.unavailable_reason()
    assert len(list((tmp_path / "kernels").iterdir())) == 1
    bn, ref = _pair(40)
    x = torch.randn(3, 40, 7, 9).to(dtype).contiguous(memory_format=CL).requires_grad_()
    x_ref = x.detach().double().requires_grad_()
    y, y_ref = pool_bn_act(x, bn, "gelu", True), _eager(x_ref, ref, "gelu", True)
    g = torch.randn(y_ref.shape, dtype=torch.float64)
    y.backward(g.to(dtype))
    y_ref.backward(g)
    assert _rel(y, y_ref) < tol and _rel(x.grad, x_ref.grad) < tol
    assert _rel(bn.weight.grad, ref.weight.grad) < tol
    bn.eval()
    ref.eval()
    with torch.no_grad():
        assert _rel(pool_bn_act(x.detach(), bn, "gelu", True),
                    _eager(x_ref.detach(), ref, "gelu", True)) < tol


def test_profile_says_the_fused_blocks_are_timed_as_eager_layers():
    """`cnnlab profile --train` hooks every layer (so the fused path steps aside): it says so
    and times the unhooked step too; forward-only profiles and other nets carry no note."""
    from cnnlab.perf.profile import profile_model

    report = profile_model("cifar-speednet", batch_size=2, repeat=1, train=True,
                           channels_last=True)
    assert report["unhooked_ms"] > 0 and len(report["notes"]) == 1
    assert "fused" in report["notes"][0] and f"{report['unhooked_ms']:.1f} ms" in report["notes"][0]
    assert profile_model("cifar-speednet", batch_size=2, repeat=1)["notes"] == []
    assert profile_model("simple-cnn", batch_size=2, repeat=1, train=True)["notes"] == []
