"""What machine is this, and which precision pays off on it.

Our CPUs come in kinds that differ exactly where it matters: Zen 5 runs bf16 natively (AVX-512
BF16) and bf16 convolutions are 1.5–4× faster there; Zen 3 has AVX2 only and bf16 convolutions
run ~10× *slower* than fp32. Xeons differ too: one with AVX-512 BF16 but no AMX ran bf16
convolutions no faster than fp32, one with AMX ran the probe's 2.6–2.9× faster. So ``auto`` =
bf16 only where the hardware has native bf16 *and* a one-off probe (cached per CPU model, AMX
flag, torch version and threads) shows bf16 training convolutions beating fp32.

An instruction-set cap (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``) makes an
AVX-512 machine run the AVX2 kernels a Zen 3 runs: bf16 convolutions then measured 7× slower
than fp32 on the AMX Xeon, as on Zen 3. The cap is part of the probe's cache key and of the
recorded CPU kind, so a capped run never reuses the uncapped answer or passes for the real CPU.
"""

from __future__ import annotations

import hashlib
import json
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


def choose_precision(requested: str) -> str:
    """Resolve 'auto' | 'fp32' | 'bf16' to 'fp32' or 'bf16' for this machine."""
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
    return "bf16" if bf16_speedup() > 1.1 else "fp32"
