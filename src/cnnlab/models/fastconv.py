"""A 3×3 convolution whose weight gradient on small maps is one im2col GEMM.

Where the time went: profiling a bf16 training step of the CIFAR speed-run net (batch 1000,
channels-last, Xeon with AMX, 2 threads), the backward pass of the convolutions took 3.9× their
forward pass, and nearly all of the excess was oneDNN's *weight* gradient on the small maps of
the last groups. For a 256 → 256 filter bank it ran at 645 GFLOP/s on 7×7 maps, 209 GFLOP/s on
3×3 maps and ~130 GFLOP/s on 2×2 maps, where the forward pass of the same layer runs at
1,600–2,200. On a small map the weight gradient is better done the textbook way: unfold the
padded input into its 3×3 patches (im2col, one row per output pixel) and multiply once by the
output gradient, ``dW = Gᵀ · cols``, a single large GEMM:

=======================  ==========  ==========
256 → 256, batch 1000    oneDNN      im2col GEMM
=======================  ==========  ==========
7×7 maps                 85 ms       76 ms
6×6                      76 ms       60 ms
5×5                      68 ms       39 ms
4×4                      53 ms       26 ms
3×3                      51 ms       14 ms
2×2                      40 ms       5 ms
64 → 256 on 11×11        33 ms       47 ms (so: not for thin inputs)
=======================  ==========  ==========

(7×7: 88 against 84 ms until the GEMM got Gᵀ as a contiguous copy; batch 500: 42–48 against
36 ms. 64 → 256 on 15×15 at batch 500: 20 against 41 ms.)

In fp32 oneDNN's own kernel is as fast or faster (3×3 maps: 41 against 43 ms), so the GEMM path
is for bf16 only, ≥ 128 input channels and maps of at most 49 pixels — and within those, where
it is *measured* to win on this CPU. The table above is an AMX Xeon's; which kernel wins
elsewhere no flag predicts. The same Xeon capped to AVX-512 BF16 without AMX (batch 500,
heap memory; input and weight gradient together): 3×3 maps 49 against 46 ms, the GEMM ahead;
6×6 188 against 217 and 7×7 270 against 282 ms, oneDNN ahead. And a Zen 5 runs bf16 matmuls
~1.8× faster than its bf16 convolutions (GUIDE §5: 700 against 380 GFLOP/s), where the
capped Xeon ran the two alike (168 against 171). So :func:`gemm_wgrad_pays` times both ways
once per layer shape on random tensors (batch ≤ 128: the winner was the same as at 500 for
every shape above), and the answer is cached on disk per CPU beside the bf16 probe
(perf/hardware.py): ~0.1–0.6 s per shape, once per machine. :class:`FastConv3x3` is a plain
``nn.Conv2d`` everywhere else (and in the forward pass, and for the input gradient, always).
The result is the same weight gradient up to bf16 rounding (relative difference ~0.4 %, the
size of one bf16 ulp).
"""

from __future__ import annotations

import copy
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from ..perf.hardware import best_seconds, cached_measurement
from .winograd import (
    MIN_CHANNEL_PRODUCT,
    compute_dtype,
    filter_transform,
    use_winograd,
    winograd_conv3x3,
)

MAX_PIXELS = 49  # maps of up to 7×7: the GEMM won from 7×7 down (8×8 and up: not measured)
MIN_IN_CHANNELS = 128  # 64-channel inputs: oneDNN's kernel won (33 against 47 ms)
PROBE_BATCH = 128  # gemm_wgrad_pays times at most this batch: the same winner, a quarter the time
MIN_GAIN = 1.05  # ...and takes the GEMM only 5 % ahead: nearer, the two are alike within noise


def weight_grad_im2col(grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∂L/∂W of a 3×3, stride-1, padding-1 convolution as one GEMM over im2col patches.

    ``grad_out`` is N×Co×H×W and ``x`` N×Ci×H×W (any memory format; channels-last avoids
    copies). Returns Co×Ci×3×3 in channels-last layout, in the inputs' dtype.
    """
    n, ci, h, w = x.shape
    co = grad_out.shape[1]
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous()  # N, H+2, W+2, Ci
    s = padded.stride()
    # every output pixel's 3×3×Ci patch, as a view, then one copy into rows: N·H·W × 9·Ci
    cols = padded.as_strided((n, h, w, 3, 3, ci), (s[0], s[1], s[2], s[1], s[2], s[3]))
    cols = cols.reshape(n * h * w, 9 * ci)
    # Gᵀ as its own contiguous Co × N·H·W copy: oneDNN's GEMM runs ~1.5x faster on it than
    # on the transposed view of a channels-last gradient (15.7 against 23.5 ms at 256 × 24,500
    # × 2,304), for a copy of the small operand
    g_t = grad_out.permute(1, 0, 2, 3).reshape(co, n * h * w)
    return (g_t @ cols).view(co, 3, 3, ci).permute(0, 3, 1, 2)


def time_wgrad_ratio(n: int, ci: int, co: int, h: int, w: int) -> float:
    """oneDNN's time over the im2col path's for one bf16 backward pass (input and weight
    gradients) of a 3×3 conv of this shape, channels-last, on random tensors: > 1 where the
    GEMM path is faster."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        gen = torch.Generator().manual_seed(0)

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen).to(torch.bfloat16,
                                                         memory_format=torch.channels_last)

        x, weight, g = rand(n, ci, h, w), rand(co, ci, 3, 3), rand(n, co, h, w)

        def backward(mask: list[bool]) -> tuple:
            return torch.ops.aten.convolution_backward(g, x, weight, None, [1, 1], [1, 1],
                                                       [1, 1], False, [0, 0], 1, mask)

        onednn = best_seconds(lambda: backward([True, True, False]), 3)
        gemm = best_seconds(lambda: (backward([True, False, False]),
                                     weight_grad_im2col(g, x)), 3)
    return onednn / gemm


@cache
def _gemm_wgrad_pays(n: int, ci: int, co: int, h: int, w: int) -> bool:
    ratio = cached_measurement(f"wgrad-im2col|{n}x{ci}x{co}x{h}x{w}",
                               lambda: time_wgrad_ratio(n, ci, co, h, w))
    return ratio > MIN_GAIN


def gemm_wgrad_pays(n: int, ci: int, co: int, h: int, w: int) -> bool:
    """Whether the im2col weight gradient beat oneDNN's by ``MIN_GAIN`` on this CPU for a
    bf16 3×3 conv of this shape (the batch capped at ``PROBE_BATCH``): measured by
    :func:`time_wgrad_ratio` on first use, then cached in memory and on disk."""
    return _gemm_wgrad_pays(min(n, PROBE_BATCH), ci, co, h, w)


class _Conv3x3SmallMap(torch.autograd.Function):
    """conv2d(x, w, padding=1) whose backward takes the weight gradient from
    :func:`weight_grad_im2col` and the input gradient from oneDNN, as usual."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, padding=1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad_im2col(grad_out, x)
        return grad_x, grad_w


class FastConv3x3(nn.Conv2d):
    """``nn.Conv2d(cin, cout, 3, padding=1, bias=False)`` that trains faster: in bf16 on small
    maps (see the module docstring for when, and why), and in fp32 through Winograd's
    F(4×4, 3×3) where that wins (models/winograd.py). Same parameters, same state dict."""

    use_gemm_wgrad: bool | None = None  # None: per layer shape, as measured on this CPU
    profile_type = "Conv2d"  # `cnnlab profile` groups it with the convolutions it is

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=False)

    def _kept_filter_transform(self) -> torch.Tensor:
        """Winograd's transformed filters, kept while no gradient can reach the weight (eval,
        no_grad, a frozen layer) and the weight is unchanged (same storage, same version: an
        optimizer step or load_state_dict bumps it). Inference then skips the transform, a
        fixed cost per call (512 → 512: ~10 ms on 2 cores, half the direct conv's time on a
        batch of 64 4×4 maps), and Winograd pays from 16 tiles instead of 64
        (winograd.MIN_TILES_KEPT). Training (a gradient to the weight) transforms every call.
        The kept filters take 4× the weight's memory (36 points for 9 taps), dropped when
        training resumes. The cache holds the weight's storage too, so no new weight can reuse
        its address while it is kept (the one change it cannot see is a write through
        ``weight.data``, which PyTorch's own version checks miss as well)."""
        weight = self.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.shape)
        cached = getattr(self, "_wino_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, filter_transform(weight).contiguous(), weight.detach())
            self._wino_cache = cached
        return cached[1]

    def _gemm_path(self, x: torch.Tensor) -> bool:
        if not (torch.is_grad_enabled() and self.weight.requires_grad and x.dim() == 4
                and x.device.type == "cpu" and self.in_channels >= MIN_IN_CHANNELS
                and x.shape[-2] * x.shape[-1] <= MAX_PIXELS
                and compute_dtype(x) == torch.bfloat16):
            return False
        if FastConv3x3.use_gemm_wgrad is not None:
            return FastConv3x3.use_gemm_wgrad
        if torch.compiler.is_compiling() or is_in_torch_dispatch_mode():
            return False  # no timing inside a trace or under a FLOP counter / profiler mode
        n, _, h, w = x.shape
        return gemm_wgrad_pays(n, self.in_channels, self.out_channels, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen = not (torch.is_grad_enabled() and self.weight.requires_grad)
        if not frozen and getattr(self, "_wino_cache", None) is not None:
            self._wino_cache = None  # the weights are about to change: hold no stale copy
        if use_winograd(x, self.in_channels, self.out_channels, filters_kept=frozen):
            return winograd_conv3x3(x, self.weight,
                                    self._kept_filter_transform() if frozen else None)
        if not self._gemm_path(x):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):  # cast as autocast would, then run ours
            return _Conv3x3SmallMap.apply(x.to(torch.bfloat16),
                                          self.weight.to(torch.bfloat16))


def with_plain_convs(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose :class:`FastConv3x3` layers are plain ``nn.Conv2d`` (the
    same weights and state dict), for tools that match layers by their exact type. PT2E's x86
    quantizer is one: it finds conv patterns by the module class recorded in the exported
    graph, left a FastConv3x3 unquantized, and int8 vgg-small ran 8,640 img/s against 23,197
    with plain convs (batch 64, AMX Xeon)."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if type(module) is FastConv3x3:
            module.__class__ = nn.Conv2d
            module.__dict__.pop("_wino_cache", None)
    return plain


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """A 3×3 conv, padding 1, no bias (a BN follows it in the residual and VGG nets): a
    :class:`FastConv3x3` at stride 1 where it can be faster (the same layer and state dict), a
    plain ``nn.Conv2d`` else.
    Measured, a training step of CIFAR-size resnet18 at batch 128, the two alternated in one
    process: bf16 on an AMX Xeon 728 → 641 ms (the small-map weight gradients), fp32 on the
    same Xeon capped to AVX2 (a Zen 3's kernels) 2,468 → 1,806 ms (Winograd), capped to
    AVX-512 without AMX 1,760 → 1,340 ms in fp32 and 2,254 → 2,248 ms in bf16; vgg-small
    (batch 256) 111 → 107 ms in bf16 on AMX, 324 → 281 ms in fp32 capped to AVX2; resnet20
    (16–64 channels: neither path applies) 120 ms either way."""
    if stride == 1 and can_be_fast(cin, cout):
        return FastConv3x3(cin, cout)
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def can_be_fast(cin: int, cout: int) -> bool:
    """Whether either of :class:`FastConv3x3`'s paths can ever apply to a layer this wide (else
    a plain conv does the same without its per-call checks): Winograd's channel product, or
    the GEMM weight gradient's input width."""
    return cin * cout >= MIN_CHANNEL_PRODUCT or cin >= MIN_IN_CHANNELS
