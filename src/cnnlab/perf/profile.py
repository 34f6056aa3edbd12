"""Where the time goes: per-layer forward (and backward) time, multiply-adds and GFLOP/s.

Timing uses forward pre/post hooks on **leaf** modules only (hooks on containers would count
their children twice) with :func:`time.perf_counter`; each layer's figure is the median over
``repeat`` timed runs after one warm-up run. Time spent outside any leaf module (functional ops
in ``forward``: ``torch.flatten``, ``x + shortcut``, ``torch.cat``, ``F.relu``) is reported as
the row ``other (functional ops)``, so the shares sum to 100 %.

Backward (``train=True``): full backward pre-hooks and backward hooks on the same leaf modules;
a layer's backward time is the time from the gradient of its output arriving to the gradient of
its input being computed. Whatever autograd spends outside those windows (the loss, functional
ops, accumulating parameter gradients of the first layer) lands in ``other``. In-place ReLUs are
switched to out-of-place while profiling (backward hooks cannot wrap in-place outputs).

Multiply-adds per layer come from :class:`~torch.utils.flop_counter.FlopCounterMode`'s
per-module counts of one eval forward pass of the whole batch (convolutions and matrix products,
as in :func:`cnnlab.perf.flops.count_macs`); with ``train=True`` a layer's backward is counted as
2× its forward multiply-adds (gradient w.r.t. input + gradient w.r.t. weights), so GFLOP/s is
``2 * 3 * macs / time``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ConfigError, ModelError
from .flops import eval_forward
from .hardware import choose_precision, machine_info, native_bf16

OTHER = "other (functional ops)"
_TRY_SIZES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 299, 320, 384,
              512)


def _autocast(precision: str):
    from ..evaluate.metrics import autocast

    return autocast(precision)


def load_for_profile(model: str, input_size: tuple[int, ...] | None = None
                     ) -> tuple[nn.Module, tuple[int, int, int], str]:
    """(module on the CPU, (C, H, W), display name) for a zoo name or a run directory."""
    path = Path(model)
    if (path / "model.json").is_file():
        from ..api import load_model

        module = load_model(path)
        meta = module.meta
        default = (int(meta["in_chans"]), *(int(v) for v in meta["input_size"]))
        size = _merge_size(input_size, default)
        if size != default:
            raise ConfigError(f"run {model} was trained at input {list(default)}; "
                              f"--input-size {list(size)} does not fit its weights")
        return module, size, str(meta["model"])
    from ..models.registry import create_model, get_spec

    spec = get_spec(model)  # unknown name → ModelError with a suggestion
    c, h, w = _merge_size(input_size, tuple(spec.input_size))
    try:
        module = create_model(spec.name, num_classes=spec.num_classes, in_chans=c,
                              input_size=(h, w))
    except (RuntimeError, ValueError) as exc:  # a model that checks its size when built
        raise _too_small(spec.name, (c, h, w), exc) from exc
    return module, (c, h, w), spec.name


def _merge_size(size: tuple[int, ...] | None, default: tuple[int, ...]) -> tuple[int, int, int]:
    if not size:
        return tuple(default)  # type: ignore[return-value]
    if len(size) == 3:
        return tuple(size)  # type: ignore[return-value]
    hw = size if len(size) == 2 else (size[0], size[0])
    return (default[0], *hw)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module without children (aux heads included; unused ones never
    fire their hooks and are left out of the result)."""
    return [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]


def layer_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-adds of each leaf module for one eval forward of batch ``x`` (fqn → MACs)."""
    counter = FlopCounterMode(display=False)
    eval_forward(model, x, counter)
    prefix = type(model).__name__ + "."
    out: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = int(sum(ops.values())) // 2
    return out


class _Timer:
    """Hooks that add up time per leaf module (a module called twice counts both calls)."""

    def __init__(self, leaves: list[tuple[str, nn.Module]], backward: bool) -> None:
        self.fwd: dict[str, float] = defaultdict(float)
        self.bwd: dict[str, float] = defaultdict(float)
        self._start: dict[str, list[float]] = defaultdict(list)
        self._bstart: dict[str, list[float]] = defaultdict(list)
        self.handles = []
        for name, m in leaves:
            self.handles.append(m.register_forward_pre_hook(self._pre(name)))
            self.handles.append(m.register_forward_hook(self._post(name)))
            if backward:
                self.handles.append(m.register_full_backward_pre_hook(self._bpre(name)))
                self.handles.append(m.register_full_backward_hook(self._bpost(name)))

    def reset(self) -> None:
        self.fwd.clear()
        self.bwd.clear()

    def _pre(self, name):
        def hook(module, args):
            self._start[name].append(time.perf_counter())
        return hook

    def _post(self, name):
        def hook(module, args, out):
            self.fwd[name] += time.perf_counter() - self._start[name].pop()
        return hook

    def _bpre(self, name):
        def hook(module, grad_out):
            self._bstart[name].append(time.perf_counter())
        return hook

    def _bpost(self, name):
        def hook(module, grad_in, grad_out):
            if self._bstart[name]:
                self.bwd[name] += time.perf_counter() - self._bstart[name].pop()
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _step(model: nn.Module, x: torch.Tensor, precision: str, train: bool) -> tuple[float, float]:
    """One forward (+ backward) pass: (forward seconds, backward seconds)."""
    t0 = time.perf_counter()
    if train:
        with _autocast(precision):
            out = model(x)
        loss = out.float().sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1
    with torch.no_grad(), _autocast(precision):
        model(x)
    return time.perf_counter() - t0, 0.0


def _too_small(name: str, size: tuple[int, int, int], exc: Exception) -> ModelError:
    from ..models.registry import create_model, get_spec

    c, h, _ = size
    hint = ""
    try:
        spec = get_spec(name)
        for s in _TRY_SIZES:
            if s <= h:
                continue
            try:
                with torch.device("meta"):
                    m = create_model(spec.name, num_classes=spec.num_classes, in_chans=c,
                                     input_size=(s, s)).eval()
                    m(torch.zeros(1, c, s, s))
            except (RuntimeError, ValueError, NotImplementedError):
                continue
            hint = f"; try at least {c}×{s}×{s}"
            break
        else:
            hint = f"; try its default {'×'.join(map(str, spec.input_size))}"
    except ModelError:
        pass
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(f"input {'×'.join(map(str, size))} is too small for {name}{hint} "
                      f"({first[:160]})")


def _prepare(model: nn.Module, x: torch.Tensor, channels_last: bool, train: bool):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train(train)
    return model, x


def profile_model(model: str | nn.Module, *, input_size: tuple[int, ...] | None = None,
                  batch_size: int = 1, precision: str = "fp32", channels_last: bool = False,
                  train: bool = False, repeat: int = 5, name: str | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Per-layer profile of ``model`` (zoo name, run directory, or a module with ``input_size``
    given as (C, H, W)). Returns ``layers`` (sorted by time), ``by_type``, ``total_ms`` and
    ``machine``; times are milliseconds per batch, ``macs`` per batch."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, got {repeat}")
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"unknown precision '{precision}'; choose fp32 or bf16")
    precision = choose_precision(precision)
    if isinstance(model, nn.Module):
        if not input_size or len(input_size) != 3:
            raise ConfigError("profiling a module needs input_size=(C, H, W)")
        module, size, label = model, tuple(input_size), name or type(model).__name__
    else:
        module, size, label = load_for_profile(model, input_size)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, *size, generator=gen)
    try:
        macs = layer_macs(module, x)
    except (RuntimeError, ValueError) as exc:
        raise _too_small(label, size, exc) from exc  # type: ignore[arg-type]
    if train:
        for m in module.modules():
            if isinstance(m, nn.ReLU | nn.ReLU6 | nn.LeakyReLU | nn.ELU | nn.Hardtanh
                          | nn.Hardswish | nn.SiLU) and getattr(m, "inplace", False):
                m.inplace = False
    module, x = _prepare(module, x, channels_last, train)
    leaves = leaf_modules(module)
    # a layer may name the type it is a faster version of (FastConv3x3 is a Conv2d)
    types = {n: getattr(m, "profile_type", type(m).__name__) for n, m in leaves}
    timer = _Timer(leaves, backward=train)
    fwd_runs: dict[str, list[float]] = defaultdict(list)
    bwd_runs: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            _step(module, x, precision, train)  # warm-up
            for _ in range(repeat):
                timer.reset()
                f, b = _step(module, x, precision, train)
                totals.append(f + b)
                for n in set(timer.fwd) | set(timer.bwd):
                    fwd_runs[n].append(timer.fwd.get(n, 0.0))
                    bwd_runs[n].append(timer.bwd.get(n, 0.0))
    finally:
        timer.remove()
    notes, unhooked_ms = [], None
    try:
        # Fused training kernels (cifar-speednet's pool → BN → act, models/fused.py) step
        # aside while a layer carries a timing hook, so the rows time the eager layers; the
        # same step without hooks shows what training actually runs.
        if train and any(getattr(m, "fused", False) is True for m in module.modules()):
            unhooked_ms = statistics.median(
                sum(_step(module, x, precision, train)) for _ in range(repeat)) * 1e3
            notes.append(f"pool → BN → act blocks train as fused kernels, which the per-layer "
                         f"hooks switch off: the rows time the eager layers; the step as "
                         f"training runs it (no hooks): {unhooked_ms:.1f} ms")
    finally:
        module.eval()
    mult = 3 if train else 1
    layers = []
    for n, runs in fwd_runs.items():
        fms = statistics.median(runs) * 1e3
        bms = statistics.median(bwd_runs[n]) * 1e3
        ms = fms + bms
        m = macs.get(n, 0)
        row = {"name": n, "type": types[n], "ms": ms, "share": 0.0, "macs": m,
               "gflops": (2 * mult * m / (ms * 1e6)) if ms > 0 and m else 0.0}
        if train:
            row["forward_ms"], row["backward_ms"] = fms, bms
        layers.append(row)
    summed = sum(r["ms"] for r in layers)
    total = max(statistics.median(totals) * 1e3, summed)
    other = total - summed
    for r in layers:
        r["share"] = r["ms"] / total if total > 0 else 0.0
    layers.sort(key=lambda r: -r["ms"])
    by: dict[str, dict[str, Any]] = {}
    for r in layers:
        t = by.setdefault(r["type"], {"type": r["type"], "count": 0, "ms": 0.0, "share": 0.0,
                                      "macs": 0, "gflops": 0.0})
        t["count"] += 1
        t["ms"] += r["ms"]
        t["macs"] += r["macs"]
    by[OTHER] = {"type": OTHER, "count": 0, "ms": other, "share": 0.0, "macs": 0, "gflops": 0.0}
    for t in by.values():
        t["share"] = t["ms"] / total if total > 0 else 0.0
        t["gflops"] = 2 * mult * t["macs"] / (t["ms"] * 1e6) if t["ms"] > 0 and t["macs"] else 0.0
    by_type = sorted(by.values(), key=lambda t: -t["ms"])
    all_macs = sum(r["macs"] for r in layers)
    return {
        "model": label, "input_size": list(size), "batch_size": batch_size,
        "precision": precision, "channels_last": channels_last, "train": train,
        "repeat": repeat, "total_ms": total, "other_ms": other, "macs": all_macs,
        "gflops": 2 * mult * all_macs / (total * 1e6) if total > 0 else 0.0,
        "layers": layers, "by_type": by_type, "machine": machine_info(),
        "unhooked_ms": unhooked_ms, "notes": notes,
        "method": "leaf-module forward hooks" + (" + full backward hooks" if train else "")
                  + f", median of {repeat} runs after 1 warm-up",
    }


def compare_variants(model: str, *, input_size: tuple[int, ...] | None = None,
                     batch_size: int = 1, train: bool = False, repeat: int = 5,
                     seed: int = 0) -> dict[str, Any]:
    """Whole-model time (no hooks) for fp32 / bf16 autocast × channels-last off / on.
    bf16 runs only where the CPU has native bf16 (elsewhere it is ~10× slower)."""
    module, size, label = load_for_profile(model, input_size)
    x0 = torch.rand(batch_size, *size, generator=torch.Generator().manual_seed(seed))
    try:
        layer_macs(module, x0)
    except (RuntimeError, ValueError) as exc:
        raise _too_small(label, size, exc) from exc
    rows = []
    skipped = None
    precisions = ["fp32", "bf16"]
    if not native_bf16():
        precisions = ["fp32"]
        skipped = ("bf16 skipped: this CPU has no native bf16 (AVX2 only); bf16 convolutions "
                   "run ~10x slower than fp32 here")
    for prec in precisions:
        for cl in (False, True):
            m, x = _prepare(module, x0, cl, train)
            _step(m, x, prec, train)
            times = [sum(_step(m, x, prec, train)) for _ in range(repeat)]
            ms = statistics.median(times) * 1e3
            rows.append({"precision": prec, "channels_last": cl, "ms": ms,
                         "images_per_s": batch_size / (ms / 1e3) if ms > 0 else 0.0})
    module.eval()
    base = rows[0]["ms"]
    for r in rows:
        r["speedup"] = base / r["ms"] if r["ms"] > 0 else 0.0
    return {"model": label, "input_size": list(size), "batch_size": batch_size, "train": train,
            "repeat": repeat, "variants": rows, "skipped": skipped, "machine": machine_info()}
