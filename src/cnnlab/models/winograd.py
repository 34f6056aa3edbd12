"""A 3×3 convolution in Winograd's minimal filtering F(4×4, 3×3): for fp32 on CPUs.

Where the time went: on a CPU without native bf16 (a Zen 3; here an AMX Xeon capped to AVX2,
see perf/hardware.py) cifar-speednet trains in fp32, and a training step at 32×32 (batch 500,
2 threads) took 1.73 s, 87 % of it in oneDNN's direct convolutions at ~235 GFLOP/s. Winograd's
algorithm (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks") computes a
4×4 block of outputs from a 6×6 input tile with 36 multiplications per channel pair instead
of 144: the input tile and the filter are each transformed (``V = Bᵀ d B``, ``U = G g Gᵀ``),
multiplied point by point and summed over input channels — 36 independent GEMMs of
(tiles × C_in) · (C_in × C_out) — and transformed back (``Y = Aᵀ M A``). The backward pass is
the same three steps transposed: the input gradient is ``B (Σ_k gM Uᵀ) Bᵀ`` added back into
the overlapping tiles, the filter gradient ``Gᵀ (Vᵀ gM) G``; both GEMMs are again 36 small
ones, so training does ~4× fewer multiply-adds in every conv layer where the tiles fit the
map (a 7×7 map is 2×2 tiles covering 8×8: 2.9× fewer).

Measured, forward + backward of one layer at batch 500, channels-last fp32, 2 threads, AMX Xeon
capped to AVX2 (oneDNN, ATen and MKL: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2``), cnnlab's reused-heap allocator:

==================  ==============  ==========
layer               oneDNN direct   Winograd
==================  ==============  ==========
256 → 256, 7×7      363 ms          183 ms
256 → 256, 6×6      252 ms          179 ms
256 → 256, 5×5      193 ms          177 ms
256 → 256, 3×3      79 ms           47 ms
256 → 256, 2×2      62 ms           45 ms
64 → 256, 15×15     402 ms          279 ms
64 → 256, 13×13     303 ms          269 ms
64 → 64, 15×15      106 ms          95 ms
24 → 64, 31×31      191 ms          246 ms (thin inputs: the transforms dominate)
==================  ==============  ==========

Uncapped (AVX-512) the gains are smaller and 64 → 256 on 13×13 loses (184 against 196 ms),
but fp32 is not what such a CPU trains in by default. Without the heap allocator every fresh
36-matrix buffer is page-faulted in and the 7×7 layer takes 187 instead of 132 ms (uncapped
MKL), which is why the training loop's allocator matters here. So :func:`use_winograd` takes
this path for fp32 layers with ``C_in·C_out ≥ 64·256`` on a CPU, as
:class:`~cnnlab.models.fastconv.FastConv3x3` (cifar-speednet) asks it to.

Accuracy: the transforms multiply by up to 8 and divide by up to 24, so an output carries a
few fp32 roundings more than a direct convolution: the largest error against float64 is
~1e-5 of the output's largest value (oneDNN's direct fp32 conv: ~2.5e-7; 4 to 64 images,
64–512 channels, 2×2 to 16×16 maps; tests/models/test_winograd.py bounds it at 2e-5), far
below bf16's ~4e-3 that training runs with on CPUs that have it.

The tile transforms are plain C (``winograd_kernels.c``), built and cached like the fused
pool/BN kernels (models/fused.py, which says where and how); the GEMMs are PyTorch's ``bmm``.
No compiler, ``CNNLAB_WINOGRAD=0``, torch.compile/export tracing or a non-fp32 input: the
direct convolution runs instead.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from .fused import load_once

SOURCE = Path(__file__).with_name("winograd_kernels.c")
ABI_VERSION = 2
MIN_CHANNEL_PRODUCT = 64 * 256  # C_in·C_out from which the tables above say it wins
# N·⌈H/4⌉·⌈W/4⌉ from which it wins when the filters are transformed in the call, as in
# training: the transform is a fixed cost a few tiles cannot repay. Forward only, fp32,
# channels-last, 2 threads, AMX Xeon capped to AVX2 (uncapped alike), direct : Winograd time,
# 256 → 256 on 8×8 maps: 1 image (4 tiles) 0.32, 4 (16 tiles) 0.72, 16 (64) 1.17, 64 (256)
# 1.65; 512 → 512 on 4×4: 0.11 / 0.31 / 0.52 / 1.36 (1 / 4 / 16 / 64 tiles).
MIN_TILES = 64
# ...and with the transformed filters kept (inference, FastConv3x3), against a direct conv
# with channels-last weights too, uncapped: one tile loses (512 → 512 on 4×4 maps 0.88,
# 256 → 512 0.61, 512 → 512 on 2×2 0.41), four are mixed (512 → 512 on 4×4 2.09, 256 → 256
# on 8×8 1.07, 128 → 256 on 8×8 0.85), sixteen win everywhere (1.25–3.4). In a whole net the
# mixed ones lost: vgg-small at batch 1 (its 128 → 128 conv on 8×8 = 4 tiles) ran 0.87× the
# plain convs' speed from 4 tiles on, 0.98× from 16 (the Python checks of two layers).
MIN_TILES_KEPT = 16

# G of F(4×4, 3×3), the filter transform; kron(G, G) maps a flattened 3×3 filter to its 36
# transformed points (Bᵀ and Aᵀ live in the C source)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                  dtype=torch.float64)
_GG = torch.kron(_G, _G).float()  # 36 × 9

_state: dict[str, object] = {}  # load_once's memory: "lib", "error"


def _declare(lib: ctypes.CDLL) -> None:
    p, i = ctypes.c_void_p, ctypes.c_int
    for name in ("wino_input_fwd", "wino_output_fwd", "wino_output_bwd", "wino_input_bwd"):
        getattr(lib, name).argtypes = [p, p, i, i, i, i]
        getattr(lib, name).restype = None


def kernels() -> ctypes.CDLL | None:
    """The compiled tile transforms, or None (with a one-time warning saying why)."""
    return load_once(_state, SOURCE, "winograd", ABI_VERSION, "CNNLAB_WINOGRAD", _declare,
                     "fp32 3×3 convolutions run oneDNN's direct kernel (slower on AVX2 CPUs)")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a CPU conv of ``x`` computes in: CPU autocast's, when it is on."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def use_winograd(x: torch.Tensor, in_channels: int, out_channels: int,
                 filters_kept: bool = False) -> bool:
    """Whether a 3×3, stride-1, padding-1 conv of ``x`` should run :func:`winograd_conv3x3`:
    fp32 on a CPU (no autocast to another dtype), a 4-d input, wide enough layers, and the
    kernels built. Not while torch.compile/export traces (a ctypes call cannot be traced), nor
    under a dispatch mode such as ``FlopCounterMode``: counted there, a layer's multiply-adds
    are its direct convolution's, the figure papers, ``cnnlab profile`` and
    benchmarks/efficiency.py report (so their GFLOP/s are "effective" ones, as Winograd
    papers quote them). At least ``MIN_TILES`` tiles, or ``MIN_TILES_KEPT`` where
    ``filters_kept`` (the caller holds the transformed filters: no transform per call)."""
    if (torch.compiler.is_compiling() or torch.jit.is_tracing() or is_in_torch_dispatch_mode()
            or x.device.type != "cpu" or x.dim() != 4):
        return False
    if x.dtype != torch.float32 or compute_dtype(x) != torch.float32:
        return False
    n, _, h, w = x.shape
    return (in_channels * out_channels >= MIN_CHANNEL_PRODUCT and kernels() is not None
            and n * ((h + 3) // 4) * ((w + 3) // 4) >= (MIN_TILES_KEPT if filters_kept
                                                       else MIN_TILES))


def filter_transform(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g Gᵀ`` for every filter: C_out×C_in×3×3 → 36×C_in×C_out (one GEMM operand per
    Winograd point). Plain torch ops, so autograd gives the filter gradient ``Gᵀ gU G``."""
    cout, cin = weight.shape[:2]
    u = _GG.to(weight.dtype) @ weight.reshape(cout * cin, 9).t()
    return u.view(36, cout, cin).transpose(1, 2)


class _WinogradConv(torch.autograd.Function):
    """y = conv2d(x, w, padding=1), given ``u = filter_transform(w)``; see the module
    docstring for the three steps and their transposes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        lib = kernels()
        n, c, h, w = x.shape
        k = u.shape[2]
        tiles = n * ((h + 3) // 4) * ((w + 3) // 4)
        x = x.contiguous(memory_format=torch.channels_last)
        u = u.contiguous()
        v = torch.empty((36, tiles, c), dtype=x.dtype)
        lib.wino_input_fwd(x.data_ptr(), v.data_ptr(), n, h, w, c)
        m = torch.bmm(v, u)
        y = torch.empty((n, k, h, w), dtype=x.dtype, memory_format=torch.channels_last)
        lib.wino_output_fwd(m.data_ptr(), y.data_ptr(), n, h, w, k)
        ctx.save_for_backward(v, u)
        ctx.shape = (n, c, h, w)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        v, u = ctx.saved_tensors
        lib = kernels()
        n, c, h, w = ctx.shape
        k = u.shape[2]
        grad_y = grad_y.contiguous(memory_format=torch.channels_last)
        grad_m = torch.empty((36, v.shape[1], k), dtype=grad_y.dtype)
        lib.wino_output_bwd(grad_y.data_ptr(), grad_m.data_ptr(), n, h, w, k)
        grad_x = grad_u = None
        if ctx.needs_input_grad[1]:
            grad_u = torch.bmm(v.transpose(1, 2), grad_m)
        if ctx.needs_input_grad[0]:
            grad_v = torch.bmm(grad_m, u.transpose(1, 2))
            grad_x = torch.empty((n, c, h, w), dtype=grad_y.dtype,
                                 memory_format=torch.channels_last)
            lib.wino_input_bwd(grad_v.data_ptr(), grad_x.data_ptr(), n, h, w, c)
        return grad_x, grad_u


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor,
                     u: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)`` (3×3, stride 1, no bias) in F(4×4, 3×3), fp32 on a
    CPU; the output is channels-last. Callers check :func:`use_winograd` first. ``u``: the
    weight's :func:`filter_transform`, where the caller keeps it (inference: the weights stay)."""
    return _WinogradConv.apply(x, filter_transform(weight) if u is None else u)
