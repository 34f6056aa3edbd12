"""What machine is this, and which precision pays off on it.

Our CPUs come in kinds that differ exactly where it matters: Zen 5 runs bf16 natively (AVX-512
BF16) and bf16 convolutions are 1.5–4× faster there; Zen 3 has AVX2 only and bf16 convolutions
run ~10× *slower* than fp32. Xeons differ too: one with AVX-512 BF16 but no AMX ran bf16
convolutions no faster than fp32, one with AMX ran the probe's 2.6–2.9× faster. So ``auto`` =
bf16 only where the hardware has native bf16 *and* a one-off probe (cached per CPU model, AMX
flag, torch version and threads) shows bf16 training convolutions beating fp32 — and, where
that probe is not decisive, a training step of the net itself (:func:`model_bf16_speedup`).

An instruction-set cap (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``) makes an
AVX-512 machine run the AVX2 kernels a Zen 3 runs: bf16 convolutions then measured 7× slower
than fp32 on the AMX Xeon, as on Zen 3. The cap is part of the probe's cache key and of the
recorded CPU kind, so a capped run never reuses the uncapped answer or passes for the real CPU.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from .memory import allocator_state


def _cpuinfo_field(key: str) -> str | None:
    """The first ``key: value`` of Linux's /proc/cpuinfo (None elsewhere or when absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    return set((_cpuinfo_field("flags") or "").split())


def has_amx_bf16() -> bool:
    """AMX tiles with bf16 (Intel Sapphire Rapids and later): there oneDNN runs bf16 convolutions
    on matrix units, ~3.7x faster than fp32 for the CIFAR speed-run net (measured), where an
    AVX-512-BF16 CPU without AMX ran them no faster than fp32. Both report the same generic
    model name ("Intel(R) Xeon(R) Processor") on our virtual machines, so the flag must be
    recorded beside every figure."""
    onednn = _onednn_cap()
    if onednn and "AMX" not in onednn and onednn != "ALL":
        return False  # capped below AMX: oneDNN will not use the tiles (Zen emulation)
    return "amx_bf16" in cpu_flags()


# oneDNN ISA names below AVX512_CORE_BF16: capped there, its bf16 kernels are emulated (slow)
_NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


# ...and below VNNI (int8 dot products into int32)
_NO_VNNI_ISAS = {"SSE41", "AVX", "AVX2", "AVX512_CORE"}


def has_int8_vnni() -> bool:
    """VNNI (AVX512_VNNI or AVX_VNNI: Zen 4/5, Intel since Cascade Lake): int8 dot products
    accumulate straight into int32. Without it (Zen 3, AVX2 only) oneDNN's u8×s8 kernels add
    pairs of products in int16 first, which saturates: vgg-small quantized with 8-bit
    activations scored 50.6 % instead of 90.3 % on the AMX Xeon capped to AVX2. There a
    quantized net needs 7-bit activations (``reduce_range``), as PyTorch's x86 quantizer says."""
    if _onednn_cap() in _NO_VNNI_ISAS:
        return False  # capped below VNNI: oneDNN runs the AVX2 / AVX-512 kernels without it
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


def _onednn_cap() -> str:
    """oneDNN's ISA cap from the environment (either of its two names), upper-case; '' if none."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return cap.upper()


def isa_cap() -> str:
    """The instruction-set caps set in the environment (oneDNN's, ATen's and MKL's — the
    GEMMs of ``torch.mm``/``bmm`` in fp32 are MKL's), '' when none."""
    names = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
             "MKL_ENABLE_INSTRUCTIONS")
    return ", ".join(f"{n}={os.environ[n]}" for n in names if os.environ.get(n))


def separate_compile_cache() -> str | None:
    """Under an instruction-set cap, give Inductor (torch.compile) an on-disk cache of its own
    and return its path (None when uncapped or TORCHINDUCTOR_CACHE_DIR is set already).

    Why: torch 2.13's compile cache leaves ATEN_CPU_CAPABILITY out of its key. A graph cached
    by an uncapped run and loaded under ``ATEN_CPU_CAPABILITY=avx2`` returned logits off by
    1e9-1e33; the reverse aborted the process ("double free or corruption")."""
    cap = isa_cap()
    if not cap or os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return None
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # only when capped

    path = f"{default_cache_dir()}_isa-{hashlib.sha256(cap.encode()).hexdigest()[:10]}"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return path


def _capped_below_bf16() -> bool:
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "")
    return _onednn_cap() in _NO_BF16_ISAS or aten.lower() in ("default", "avx2")


def native_bf16() -> bool:
    """True where bf16 arithmetic is native: a CUDA GPU with bf16, or AVX-512 BF16 on the CPU
    (and no instruction-set cap below it in the environment)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if _capped_below_bf16():
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def cpu_kind() -> str:
    """'zen5', 'zen3' or a short description, to record beside every figure."""
    name = cpu_model_name()
    bf16 = native_bf16()
    if "AMD" in name:
        return "zen5 (avx512-bf16)" if bf16 else "zen3 (avx2)"
    cap = isa_cap()
    if cap:  # an emulated kind: say so, or it would pass for the real CPU
        return f"{name} capped ({cap})"
    amx = " + amx" if has_amx_bf16() else ""
    return f"{name} ({'avx512-bf16' if bf16 else 'no native bf16'}{amx})"


def machine_info() -> dict:
    """Versions, CPU and threads: written to env.json and every benchmark result."""
    return {
        "cpu": cpu_model_name(),
        "cpu_kind": cpu_kind(),
        "native_bf16": native_bf16(),
        "amx_bf16": has_amx_bf16(),
        "int8_vnni": has_int8_vnni(),
        "isa_cap": isa_cap(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "allocator": allocator_state(),
    }


def _probe_file() -> Path:
    # named for its first probe; it holds every cached_measurement (bf16, weight gradients)
    root = Path(os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab")
    return root / "bf16-probe.json"


def best_seconds(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """The shortest of ``repeats`` timed calls of ``fn`` (after one untimed call if
    ``warmup``: oneDNN builds its kernel for a shape on the first call)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _time_conv_step(dtype_bf16: bool) -> float:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(64, 64, 32, 32).to(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_bf16):
            y = conv(x)
        y.float().sum().backward()

    return best_seconds(step, 4, warmup=False)


def _machine_key() -> str:
    # the model name alone is generic on virtual machines: the AMX flag tells two Xeons apart
    cap = isa_cap()
    return (f"{cpu_model_name()}|amx={has_amx_bf16()}|{torch.__version__}|"
            f"{torch.get_num_threads()}" + (f"|{cap}" if cap else ""))


def cached_measurement(name: str, measure: Callable[[], float]) -> float:
    """``measure()``, once per machine: the figure is cached on disk under this CPU's key
    (model name, AMX flag, torch version, threads, instruction-set cap) plus ``name``.

    For probes that decide which kernel runs: which one is faster differs between our CPU kinds
    in ways no flag predicts, so it is measured where it runs, once, rather than assumed."""
    key = _machine_key() + (f"|{name}" if name else "")
    path = _probe_file()

    def read() -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    cached = read()
    if key in cached:
        return float(cached[key])
    value = float(measure())
    from ..train.checkpoint import write_json  # here: train imports models, which import this

    try:
        cached = read()  # another process may have added entries while this one measured
        cached[key] = value
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, cached)  # temp file + rename: never a half-written cache
    except (OSError, CheckpointError):
        pass  # a read-only cache folder: measured again next time
    return value


@lru_cache(maxsize=1)
def bf16_speedup() -> float:
    """fp32 time / bf16 time of a conv training step on this CPU (cached on disk)."""
    return cached_measurement("", lambda: _time_conv_step(False) / _time_conv_step(True))


# Where the conv probe says bf16 wins by less than this, the net itself is timed both ways
# (model_bf16_speedup): fp32 has a fast path of its own for wide 3×3 convs (Winograd, up to
# ~1.8× the direct conv, models/winograd.py) that a 64-channel probe never reaches, so from the
# probe alone a net can train in the slower precision. Above 3× fp32 cannot catch up; the AMX
# Xeon's conv probe gives 2.4–2.9×, so there the net is timed (and bf16 kept, 1.8–2.6×).
MODEL_PROBE_BELOW = 3.0
# fp32/bf16 on AMX at batch 64 / the training batch: cifar-speednet 2.59 / 2.60 (500),
# resnet18 2.53 / 2.17 (128), vgg-small 1.88 / 1.80 (256): the same answer, for a fraction
MODEL_PROBE_BATCH = 64
MODEL_PROBE_PIXELS = 64 * 32 * 32  # ...and fewer images where they are larger (224²: 8)


def _time_model_step(model: torch.nn.Module, shape: tuple[int, ...], channels_last: bool,
                     bf16: bool) -> float:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.float().logsumexp(1).mean().backward()  # any loss that reaches every logit
        model.zero_grad(set_to_none=True)

    step()  # first call: oneDNN's kernels, compiled C kernels, FastConv3x3's own probe
    once = best_seconds(step, 1, warmup=False)
    return min(once, best_seconds(step, 2, warmup=False)) if once < 2.0 else once


def model_bf16_speedup(model: torch.nn.Module, input_shape: tuple[int, ...],
                       channels_last: bool = True) -> float:
    """fp32 time / bf16 time of one training step (forward + backward) of a copy of ``model``
    on random input of ``input_shape`` (batch capped at ``MODEL_PROBE_BATCH``, and for large
    images at ``MODEL_PROBE_PIXELS`` pixels, at least 8 images); cached on disk per CPU,
    architecture and input shape. The model and the global RNG are left as they were."""
    pixels = max(1, math.prod(int(d) for d in input_shape[2:]))
    batch = min(int(input_shape[0]), MODEL_PROBE_BATCH, max(8, MODEL_PROBE_PIXELS // pixels))
    shape = (batch, *map(int, input_shape[1:]))
    arch = hashlib.sha1(f"{model!r}|{shape}|{channels_last}".encode()).hexdigest()[:16]

    def measure() -> float:
        with torch.random.fork_rng(devices=[]):
            probe = copy.deepcopy(model).train()
            fp32 = _time_model_step(probe, shape, channels_last, bf16=False)
            bf16 = _time_model_step(probe, shape, channels_last, bf16=True)
        return fp32 / bf16

    return cached_measurement(f"model-step|{type(model).__name__}|{arch}", measure)


# what the latest 'auto' rested on (fp32 time / bf16 time), for a run's env.json: why a CPU
# with native bf16 trained in fp32, or the other way round
last_auto_choice: dict[str, float] = {}


def choose_precision(requested: str, model: torch.nn.Module | None = None,
                     input_shape: tuple[int, ...] | None = None,
                     channels_last: bool = True) -> str:
    """Resolve 'auto' | 'fp32' | 'bf16' to 'fp32' or 'bf16' for this machine.

    With ``model`` and ``input_shape`` (a training batch's shape), 'auto' where the conv probe
    is not decisive (bf16 ahead by 1.1–``MODEL_PROBE_BELOW``×) times this net's training step
    in both precisions and keeps the faster: the measured answer for the net that will train,
    not for a 64-channel conv. :data:`last_auto_choice` keeps the ratios it decided on."""
    last_auto_choice.clear()
    if requested == "fp32":
        return "fp32"
    if requested == "bf16":
        if not native_bf16():
            warnings.warn(
                "--precision bf16 on a CPU without native bf16 (AVX2 only): bf16 convolutions "
                "measured ~10x slower than fp32 on such CPUs; use --precision auto or fp32",
                stacklevel=2,
            )
        return "bf16"
    if requested != "auto":
        raise ConfigError(f"unknown precision '{requested}'; choose auto, fp32 or bf16")
    if torch.cuda.is_available():
        return "bf16" if native_bf16() else "fp32"
    if not native_bf16():
        return "fp32"
    speedup = bf16_speedup()
    last_auto_choice["conv_probe_bf16_speedup"] = round(speedup, 3)
    if model is not None and input_shape is not None and 1.1 < speedup < MODEL_PROBE_BELOW:
        try:
            speedup = model_bf16_speedup(model, input_shape, channels_last)
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:  # an optimization
            warnings.warn(f"precision auto: could not time this net ({str(exc)[:200]}); "
                          "deciding from the conv probe alone", stacklevel=2)
        else:
            last_auto_choice["net_step_bf16_speedup"] = round(speedup, 3)
    return "bf16" if speedup > 1.1 else "fp32"
