"""Max-pool → BatchNorm → GELU/ReLU as one fused CPU kernel (cifar-speednet's ConvGroups).

Where the time went: in a bf16 training step of the CIFAR speed-run net (batch 500, 32×32,
channels-last, 2 threads, AMX Xeon) the convolutions ran at ~80 % of the machine's matmul
peak, and the max-pools, BatchNorms and GELUs between them — no arithmetic to speak of — took
37 % of the step (pool 54 ms, GELU 42, BN 33 of 370). They are memory-bound: each eager op
reads and writes whole activation tensors, max-pool keeps an int64 argmax per output (as many
bytes as its bf16 input) and its backward first zero-fills a full-size gradient and then
scatters into it. Done as one pass each way, the same arithmetic moves ~2.5× fewer bytes:

* forward, pass 1: pool each 2×2 window, keep a 1-byte argmax, and sum the pooled values and
  their squares per channel (the batch statistics); pass 2: ``act(p·scale + shift)``.
* backward, pass 1: ``dz = dy · act'(z)`` (z recomputed from p: no saved BN output), summed
  per channel with ``dz·p``; pass 2: BatchNorm's input gradient, written straight into the
  2×2 windows (zeros beside the argmax) — no zero-fill pass, no scatter.
* eval mode without autograd (evaluation, test-time augmentation): the running statistics
  folded into a scale and shift, and ``act(maxpool2(x)·scale + shift)`` in one pass. The
  speed-run's final evaluation (2.25 views of 10,000 images, batch 128): 5.5 → 3.5 s.

The kernels are plain C (``fused_kernels.c``, no PyTorch headers), compiled with the system's
C compiler on first use (under a second) into ``~/.cache/cnnlab/kernels`` (``CNNLAB_CACHE``
moves it) for this CPU (``-march=native``), and loaded with ctypes; their OpenMP threads are
PyTorch's own. No compiler, a failed build, ``CNNLAB_FUSED=0``, an eval pass that needs
gradients (saliency maps), torch.compile/export tracing, hooks on the fused layers or an
unusual input (not channels-last, not bf16/fp32): the model runs its eager layers instead,
with the same arithmetic up to rounding. GELU is the exact (erf) one, computed
with Abramowitz & Stegun's 7.1.26 erf (error < 1.5e-7, far below bf16's resolution).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..perf.hardware import cpu_flags, cpu_model_name

SOURCE = Path(__file__).with_name("fused_kernels.c")
ABI_VERSION = 2
# -march=native: this CPU's vector width (AVX-512 or AVX2); 512-bit vectors where it has them
# (gcc's default tuning prefers 256: 2.2x slower here, 115 -> 53 ms against 115 eager).
# CNNLAB_MARCH=x86-64-v3 builds the AVX2 code a Zen 3 gets, to test that path on an AVX-512 CPU.
def _cflags() -> tuple[str, ...]:
    march = os.environ.get("CNNLAB_MARCH") or "native"
    return ("-O3", f"-march={march}", "-mprefer-vector-width=512", "-fopenmp", "-shared",
            "-fPIC")
_lock = threading.RLock()  # one for every kernel library: loads are rare
_state: dict[str, object] = {}  # "lib": CDLL | None once tried, "error": why not


def _cache_dir() -> Path:
    root = os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab"
    return Path(root) / "kernels"


def _build(cc: str, out: Path, source: Path = SOURCE) -> None:
    """Compile to a temporary file beside ``out``, then rename: never a half-written library."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cc, *_cflags(), "-o", tmp, str(source)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[:500]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> None:
    p, i, l_ = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    for suf in ("bf16", "f32"):
        getattr(lib, f"pool_stats_{suf}").argtypes = [p, p, p, p, i, i, i, i, i]
        getattr(lib, f"bn_act_fwd_{suf}").argtypes = [p, p, p, p, l_, i, i]
        getattr(lib, f"bn_act_bwd_stats_{suf}").argtypes = [p, p, p, p, p, p, l_, i, i]
        getattr(lib, f"bn_bwd_unpool_{suf}").argtypes = [p, p, p, p, p, p, p, i, i, i, i, i]
        getattr(lib, f"pool_act_eval_{suf}").argtypes = [p, p, p, p, i, i, i, i, i, i]
        for name in ("pool_stats", "bn_act_fwd", "bn_act_bwd_stats", "bn_bwd_unpool",
                     "pool_act_eval"):
            getattr(lib, f"{name}_{suf}").restype = None


def load_library(source: Path, stem: str, abi_version: int) -> ctypes.CDLL:
    """Compile ``source`` for this CPU into the kernel cache (once: the file name is a hash of
    the source, the CPU, the compiler and its flags) and load it; its ``<stem>_abi_version()``
    must return ``abi_version``. Raises OSError/RuntimeError/SubprocessError when it cannot."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"the C kernels are built for Linux x86-64, not {platform.system()} "
                           f"{platform.machine()}")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    # what -march=native depends on: the CPU's model name and flags
    cpu = cpu_model_name() + " ".join(sorted(cpu_flags()))
    key = hashlib.sha256(source.read_bytes() + cpu.encode() + cc.encode()
                         + " ".join(_cflags()).encode()).hexdigest()[:16]
    path = _cache_dir() / f"{stem}-{key}.so"
    if not path.exists():
        _build(cc, path, source)
    lib = ctypes.CDLL(str(path))
    if getattr(lib, f"{stem}_abi_version")() != abi_version:
        raise RuntimeError("stale kernel library")
    return lib


def load_once(state: dict, source: Path, stem: str, abi_version: int, off_switch: str,
              declare: Callable[[ctypes.CDLL], None], fallback: str) -> ctypes.CDLL | None:
    """:func:`load_library` once per process, remembered in ``state`` ("lib", and "error" saying
    why not): ``<off_switch>=0`` in the environment skips it silently, a failure warns once
    with ``fallback`` (what runs instead) — the run stays correct, only slower."""
    if "lib" in state:
        return state["lib"]
    with _lock:
        if "lib" in state:
            return state["lib"]
        lib, error = None, ""
        if os.environ.get(off_switch, "1") == "0":
            error = f"{off_switch}=0"
        else:
            try:
                lib = load_library(source, stem, abi_version)
                declare(lib)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                lib, error = None, str(exc)
                warnings.warn(f"cnnlab: {stem} kernels unavailable ({error}); {fallback}",
                              RuntimeWarning, stacklevel=3)
        state["lib"], state["error"] = lib, error
        return lib


def kernels() -> ctypes.CDLL | None:
    """The compiled kernels, or None (and :func:`unavailable_reason` says why)."""
    return load_once(_state, SOURCE, "fused", ABI_VERSION, "CNNLAB_FUSED", _declare,
                     "the pool/BN/act blocks run the eager layers (~12 % slower steps for "
                     "cifar-speednet)")


def unavailable_reason() -> str:
    kernels()
    return str(_state.get("error", ""))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _fold_bn(mean: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor | None,
             bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BatchNorm as one ``scale`` and ``shift`` per channel (``y = x·scale + shift``), worked
    out in float64 from the statistics the mode uses (batch or running); returns the weight
    factor too (float64; ones without an affine weight)."""
    wt = weight.detach().double() if weight is not None else torch.ones_like(mean)
    scale = (wt * rstd).float()
    shift = (bias.detach().double() - mean * wt * rstd).float()
    return wt, scale, shift


class _PoolBNAct(torch.autograd.Function):
    """y = act(BN(maxpool2(x))) with batch statistics; see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, pool: bool, relu: bool):
        lib = kernels()
        suf = "bf16" if x.dtype == torch.bfloat16 else "f32"
        n, c, h, w = x.shape
        ho, wo = (h // 2, w // 2) if pool else (h, w)
        if pool:
            p = torch.empty((n, c, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
            idx = torch.empty((n, c, ho, wo), dtype=torch.uint8,
                              memory_format=torch.channels_last)
        else:
            p, idx = x, None
        stats = torch.empty(2 * c, dtype=torch.float64)
        getattr(lib, f"pool_stats_{suf}")(_ptr(x), _ptr(p), _ptr(idx), _ptr(stats),
                                          n, h, w, c, int(pool))
        count = n * ho * wo
        mean = stats[:c] / count
        var = (stats[c:] / count - mean * mean).clamp_min(0.0)
        rstd = (var + eps).rsqrt()
        # scale is also BatchNorm's dz coefficient in the backward
        wt, scale, shift = _fold_bn(mean, rstd, weight, bias)
        y = torch.empty((n, c, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
        getattr(lib, f"bn_act_fwd_{suf}")(_ptr(p), _ptr(y), _ptr(scale), _ptr(shift),
                                          count, c, int(relu))
        ctx.save_for_backward(p, idx, wt, mean, rstd, scale, shift)
        ctx.shape, ctx.pool, ctx.relu, ctx.count = (n, c, h, w), pool, relu, count
        ctx.weight_dtype = None if weight is None else weight.dtype
        mean32, var32 = mean.float(), var.float()  # for the caller's running averages
        ctx.mark_non_differentiable(mean32, var32)
        return y, mean32, var32

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        p, idx, wt, mean, rstd, scale, shift = ctx.saved_tensors
        lib = kernels()
        suf = "bf16" if p.dtype == torch.bfloat16 else "f32"
        n, c, h, w = ctx.shape
        dy = _nhwc(dy.to(p.dtype))
        dz = torch.empty_like(p, memory_format=torch.channels_last)
        stats = torch.empty(2 * c, dtype=torch.float64)
        count = ctx.count
        getattr(lib, f"bn_act_bwd_stats_{suf}")(_ptr(dy), _ptr(p), _ptr(dz), _ptr(scale),
                                                _ptr(shift), _ptr(stats), count, c,
                                                int(ctx.relu))
        sum_dz = stats[:c]
        sum_dz_xhat = rstd * (stats[c:] - mean * sum_dz)
        mean_dz, mean_dzx = sum_dz / count, sum_dz_xhat / count
        k1 = scale  # wt · rstd
        k2 = (-wt * rstd * rstd * mean_dzx).float()
        k3 = (-wt * rstd * mean_dz + wt * rstd * rstd * mean_dzx * mean).float()
        dx = torch.empty((n, c, h, w), dtype=p.dtype, memory_format=torch.channels_last)
        getattr(lib, f"bn_bwd_unpool_{suf}")(_ptr(dz), _ptr(p), _ptr(idx), _ptr(dx), _ptr(k1),
                                             _ptr(k2), _ptr(k3), n, h, w, c, int(ctx.pool))
        grad_w = (sum_dz_xhat.to(ctx.weight_dtype) if ctx.weight_dtype is not None
                  and ctx.needs_input_grad[1] else None)
        grad_b = sum_dz.float() if ctx.needs_input_grad[2] else None
        return dx, grad_w, grad_b, None, None, None


def act_kind(act: nn.Module) -> str | None:
    """'gelu' / 'relu' for the activations the kernel computes, else None."""
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return "gelu"
    if isinstance(act, nn.ReLU):
        return "relu"
    return None


def can_fuse(x: torch.Tensor, bn: nn.Module, pool: bool, *modules: nn.Module) -> bool:
    """Whether :func:`pool_bn_act` may replace the eager layers for this input: in training
    (batch statistics, updating the running ones), or in eval mode without autograd (the
    running statistics; an eval pass that needs gradients, such as a saliency map, runs the
    eager layers). Never inside torch.compile/export tracing: the graph compiler fuses
    these layers itself, and a ctypes call cannot be traced."""
    if (not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None
            or torch.compiler.is_compiling() or torch.jit.is_tracing()):
        return False
    if bn.training:
        mode_ok = bn.track_running_stats and bn.momentum is not None
    else:
        mode_ok = not torch.is_grad_enabled()
    return (mode_ok and x.device.type == "cpu" and x.dim() == 4
            and x.dtype in (torch.bfloat16, torch.float32)
            and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
            and (not pool or min(x.shape[-2:]) >= 2)
            and not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                        for m in (bn, *modules))
            and kernels() is not None)


def pool_bn_act(x: torch.Tensor, bn: nn.BatchNorm2d, act: str, pool: bool) -> torch.Tensor:
    """``act(bn(max_pool2d(x, 2)))`` (or without the pool), fused. In training mode with the
    batch statistics, updating ``bn``'s running statistics exactly as ``nn.BatchNorm2d``
    does; in eval mode with the running ones, in one pass (nothing kept for a backward)."""
    if not bn.training:
        return _pool_bn_act_eval(x, bn, act, pool)
    weight = bn.weight if bn.affine else None
    bias = bn.bias if bn.affine else torch.zeros(x.shape[1])
    y, mean, var = _PoolBNAct.apply(x, weight, bias, bn.eps, pool, act == "relu")
    count = y.shape[0] * y.shape[2] * y.shape[3]
    with torch.no_grad():
        m = bn.momentum
        bn.running_mean.mul_(1 - m).add_(mean.to(bn.running_mean.dtype), alpha=m)
        unbiased = var * (count / max(count - 1, 1))
        bn.running_var.mul_(1 - m).add_(unbiased.to(bn.running_var.dtype), alpha=m)
        bn.num_batches_tracked.add_(1)
    return y


def _pool_bn_act_eval(x: torch.Tensor, bn: nn.BatchNorm2d, act: str, pool: bool) -> torch.Tensor:
    """Inference: BN's running statistics folded into one scale and shift per channel, then
    ``act(max_pool2d(x) · scale + shift)`` in a single pass over ``x``."""
    rstd = (bn.running_var.double() + bn.eps).rsqrt()
    _, scale, shift = _fold_bn(bn.running_mean.double(), rstd, bn.weight if bn.affine else None,
                               bn.bias if bn.affine else torch.zeros_like(bn.running_mean))
    n, c, h, w = x.shape
    ho, wo = (h // 2, w // 2) if pool else (h, w)
    y = torch.empty((n, c, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
    suf = "bf16" if x.dtype == torch.bfloat16 else "f32"
    getattr(kernels(), f"pool_act_eval_{suf}")(_ptr(x), _ptr(y), _ptr(scale), _ptr(shift),
                                               n, h, w, c, int(pool), int(act == "relu"))
    return y
