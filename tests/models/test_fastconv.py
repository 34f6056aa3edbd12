"""FastConv3x3: the im2col weight gradient equals the convolution's, and the GEMM path is taken
exactly where it can win (bf16, wide inputs, small maps) and was measured to on this CPU."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import fastconv
from cnnlab.models.fastconv import (
    FastConv3x3,
    gemm_wgrad_pays,
    weight_grad_im2col,
    with_plain_convs,
)


@pytest.fixture
def gemm_on(monkeypatch):
    monkeypatch.setattr(FastConv3x3, "use_gemm_wgrad", True)


@pytest.mark.parametrize("shape", [(3, 5, 4, 4), (2, 7, 3, 5), (1, 2, 1, 1), (4, 6, 6, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_im2col_weight_grad_equals_autograd_in_fp64(shape, channels_last):
    torch.manual_seed(0)
    n, ci, h, w = shape
    co = 3
    x = torch.randn(n, ci, h, w, dtype=torch.float64)
    weight = torch.randn(co, ci, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(n, co, h, w, dtype=torch.float64)
    if channels_last:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    F.conv2d(x, weight, padding=1).backward(g)
    ours = weight_grad_im2col(g, x)
    assert ours.shape == weight.shape
    torch.testing.assert_close(ours, weight.grad, rtol=1e-10, atol=1e-10)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def _conv_pair(cin=128, cout=16):
    torch.manual_seed(1)
    fast = FastConv3x3(cin, cout)
    plain = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _grads(conv, x, g):
    conv.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        y = conv(x)
    y.float().backward(g)
    return y, x.grad, conv.weight.grad


def test_bf16_small_map_training_matches_nn_conv2d(gemm_on):
    fast, plain = _conv_pair()
    x = torch.randn(8, 128, 3, 3).contiguous(memory_format=torch.channels_last)
    g = torch.randn(8, 16, 3, 3)
    y1, gx1, gw1 = _grads(fast, x, g)
    y2, gx2, gw2 = _grads(plain, x, g)
    assert y1.dtype == torch.bfloat16 and gw1.dtype == torch.float32  # as autocast leaves them
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(gx1, gx2)
    # the same sum in another order, rounded to bf16: within a couple of bf16 ulps
    assert (gw1 - gw2).abs().max() <= 0.02 * gw2.abs().max()
    assert fast._gemm_path(x.bfloat16())


@pytest.fixture
def fake_probe(monkeypatch, tmp_path):
    """The kernel-timing probe replaced by a chosen oneDNN/GEMM time ratio; calls counted, the
    disk cache in a temp folder, the in-memory cache emptied before and after."""
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    monkeypatch.setattr(FastConv3x3, "use_gemm_wgrad", None)
    state = {"ratio": 2.0, "calls": []}

    def probe(*shape):
        state["calls"].append(shape)
        return state["ratio"]

    monkeypatch.setattr(fastconv, "time_wgrad_ratio", probe)
    fastconv._gemm_wgrad_pays.cache_clear()
    yield state
    fastconv._gemm_wgrad_pays.cache_clear()


@pytest.mark.parametrize("case", ["fp32", "big map", "thin input", "no grad", "frozen",
                                  "slower here", "faster here"])
def test_gemm_path_only_where_it_can_and_was_measured_to_win(fake_probe, case):
    fake_probe["ratio"] = 1.02 if case == "slower here" else 1.6  # within noise / ahead
    fast = FastConv3x3(64 if case == "thin input" else 256, 8)
    x = torch.randn(2, fast.in_channels, 8 if case == "big map" else 7, 7)
    if case == "frozen":
        fast.weight.requires_grad_(False)
    with torch.set_grad_enabled(case != "no grad"), \
            torch.autocast("cpu", torch.bfloat16, enabled=case != "fp32"):
        taken = fast._gemm_path(x)
        y = fast(x)
    assert taken == (case == "faster here")
    assert y.shape == (2, 8, x.shape[2], 7)
    # timed only where the GEMM path is possible at all
    assert fake_probe["calls"] == ([(2, 256, 8, 7, 7)] if "here" in case else [])


def test_the_probe_runs_once_per_shape_and_machine(fake_probe, tmp_path):
    with torch.autocast("cpu", torch.bfloat16):
        fast = FastConv3x3(256, 8)
        assert fast._gemm_path(torch.randn(500, 256, 3, 3))
        assert fast._gemm_path(torch.randn(300, 256, 3, 3))  # timed at batch 128 for both
        assert fast._gemm_path(torch.randn(2, 256, 5, 5))
    assert fake_probe["calls"] == [(128, 256, 8, 3, 3), (2, 256, 8, 5, 5)]
    fastconv._gemm_wgrad_pays.cache_clear()  # a new process: the answers come from disk
    fake_probe["ratio"] = 0.5
    assert gemm_wgrad_pays(500, 256, 8, 3, 3) and len(fake_probe["calls"]) == 2
    cached = json.loads((tmp_path / "bf16-probe.json").read_text())
    assert sorted(k.split("|wgrad-im2col|")[1] for k in cached) == ["128x256x8x3x3",
                                                                     "2x256x8x5x5"]


def test_no_probe_inside_a_flop_counter(fake_probe):
    from torch.utils.flop_counter import FlopCounterMode

    fast = FastConv3x3(256, 8)
    with FlopCounterMode(display=False), torch.autocast("cpu", torch.bfloat16):
        assert not fast._gemm_path(torch.randn(2, 256, 3, 3))
    assert fake_probe["calls"] == []


def test_the_real_probe_times_both_ways():
    ratio = fastconv.time_wgrad_ratio(2, 128, 8, 3, 3)
    assert 0.0 < ratio < float("inf")


def test_profile_counts_it_as_a_convolution():
    from cnnlab.perf.profile import profile_model

    report = profile_model("cifar-speednet", batch_size=2, repeat=1)
    convs = [t for t in report["by_type"] if t["type"] == "Conv2d"]
    assert len(convs) == 1 and convs[0]["count"] == 7  # the whitening conv + six FastConv3x3
    assert not any(t["type"] == "FastConv3x3" for t in report["by_type"])


def test_residual_and_vgg_nets_get_it_at_stride_1_with_the_plain_state_dict():
    from cnnlab.models import create_model
    from cnnlab.models.fastconv import conv3x3

    assert type(conv3x3(128, 128)) is FastConv3x3
    assert type(conv3x3(64, 256)) is FastConv3x3  # Winograd's channel product
    assert type(conv3x3(128, 8)) is FastConv3x3  # the GEMM weight gradient's input width
    assert type(conv3x3(64, 64)) is nn.Conv2d  # neither path could apply: no checks per call
    assert type(conv3x3(256, 256, 2)) is nn.Conv2d  # strided: oneDNN's, as before
    for name, kw, n_fast in [("resnet18", dict(stem="cifar"), 9), ("preact-resnet18", {}, 9),
                             ("wrn-16-4", {}, 6), ("vgg-small", {}, 2), ("vgg16-bn", {}, 10)]:
        model = create_model(name, num_classes=10, in_chans=3, input_size=(32, 32), **kw)
        fast = [m for m in model.modules() if type(m) is FastConv3x3]
        assert len(fast) >= n_fast, (name, len(fast))
        assert all(m.stride == (1, 1) and m.kernel_size == (3, 3) for m in fast)
        plain = with_plain_convs(model)
        assert not any(type(m) is FastConv3x3 for m in plain.modules())
        assert {k: v.shape for k, v in plain.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()}  # the same checkpoint


def test_resnet18_trains_the_same_through_winograd_in_fp32(monkeypatch):
    """fp32 on a CPU: its wide convs run Winograd F(4×4, 3×3); logits and gradients equal the
    plain-conv model's to fp32 rounding.

    The bound on gradients is loose on purpose: a Winograd layer rounds ~1e-5 of its output's
    scale differently from a direct conv (tests/models/test_winograd.py checks each layer
    against float64 to 2e-5), and where that flips a ReLU or max-pool tie, every gradient
    below it moves by up to ~1 % of its norm (found for 1 input in 5 at batch 4; a lucky seed
    gave 1e-5). A wrong kernel is off by O(1)."""
    from cnnlab.models import create_model, winograd
    from cnnlab.models.winograd import kernels

    if kernels() is None:
        pytest.skip("no C compiler: the Winograd kernels could not be built")
    monkeypatch.setattr(winograd, "MIN_TILES", 1)  # batch 4: the 8×8 and 4×4 layers too
    calls = []
    real = winograd._WinogradConv.apply
    monkeypatch.setattr(winograd._WinogradConv, "apply",
                        lambda *a: calls.append(a[0].shape) or real(*a))
    torch.manual_seed(0)
    fast = create_model("resnet18", num_classes=10, in_chans=3, input_size=(32, 32),
                        stem="cifar").train()
    plain = with_plain_convs(fast)
    for seed in range(3):
        torch.manual_seed(seed)
        x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
        out = []
        for model in (fast, plain):
            model.zero_grad()
            logits = model(x)
            F.cross_entropy(logits, y).backward()
            out.append((logits, {n: p.grad.clone() for n, p in model.named_parameters()}))
        torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-4, atol=1e-4)
        for name, g in out[1][1].items():
            assert (out[0][1][name] - g).norm() <= 2e-2 * g.norm(), (seed, name)
            assert F.cosine_similarity(out[0][1][name].flatten(), g.flatten(), 0) > 0.9998
    assert len(calls) == 3 * 9  # every wide stride-1 conv, on every input


def test_binarize_reaches_its_convs():
    from cnnlab.models import create_model
    from cnnlab.models.binary import BinaryConv2d, binarize

    model = binarize(create_model("resnet20", num_classes=10, in_chans=3, input_size=(32, 32)))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(isinstance(m, BinaryConv2d) for m in convs) == len(convs) - 1  # all but the first


def test_int8_static_quantizes_the_fast_convs_too():
    """PT2E's x86 quantizer matches convs by their module class: FastConv3x3 layers must reach
    it as nn.Conv2d (with_plain_convs), or they stay fp32 between quantize/dequantize pairs."""
    pytest.importorskip("torchao")
    from cnnlab.models import create_model
    from cnnlab.perf.infer import int8_static

    torch.manual_seed(0)
    model = create_model("vgg-small", num_classes=10, in_chans=3, input_size=(32, 32)).eval()
    assert sum(type(m) is FastConv3x3 for m in model.modules()) == 2
    x = torch.rand(8, 3, 32, 32)
    seen = []
    real = torch.export.export

    def spy(module, *args, **kwargs):
        seen.append(module)
        return real(module, *args, **kwargs)

    import cnnlab.perf.infer as infer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(infer.torch.export, "export", spy)
        fn, note = int8_static(model, x, x, timeout=300)
    assert fn is not None, note
    (exported,) = seen
    assert not any(type(m) is FastConv3x3 for m in exported.modules())
    with torch.no_grad():
        assert (fn(x).argmax(1) == model(x).argmax(1)).float().mean() >= 0.75
