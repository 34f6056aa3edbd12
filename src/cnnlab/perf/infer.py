"""Inference throughput of a trained run across runtimes, each with its test accuracy.

Runtimes: eager fp32; eager channels-last; bf16 autocast (only where the CPU has native bf16 —
elsewhere it is ~10× slower); ``torch.compile`` (skipped with the reason when it fails or takes
longer than ``compile_timeout`` seconds — the compile runs in a daemon thread, which is abandoned,
not killed, on a timeout); int8 dynamic quantization (``quantize_dynamic`` on ``nn.Linear`` only:
convolutions stay fp32, so conv-heavy nets barely change); onnxruntime (when installed).

Images/s per batch size: one warm-up batch, then batches over the ``n`` images until all are done
or ``budget_s`` seconds have passed. Accuracy: every runtime predicts all ``n`` test images.
"""

from __future__ import annotations

import copy
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnlabError, ConfigError
from .hardware import machine_info, native_bf16


def _throughput(fn, x: torch.Tensor, batch_size: int, budget_s: float) -> float:
    fn(x[:batch_size])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < len(x):
        xb = x[done:done + batch_size]
        fn(xb)
        done += len(xb)
        if time.perf_counter() - t0 > budget_s:
            break
    return done / max(time.perf_counter() - t0, 1e-9)


def _predict(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def _compile(model: nn.Module, example: torch.Tensor, timeout: float):
    """torch.compile'd forward, or (None, reason)."""
    if timeout <= 0:
        return None, "disabled (--compile-timeout 0)"
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            fn = torch.compile(model)
            with torch.no_grad():
                fn(example)
            box["fn"] = fn
        except Exception as exc:  # noqa: BLE001 - any compile failure → skipped with reason
            box["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}" \
                if str(exc).strip() else type(exc).__name__

    t = threading.Thread(target=work, daemon=True)
    t0 = time.perf_counter()
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None, f"did not compile within {timeout:g} s"
    if "error" in box:
        return None, f"compile failed: {box['error']}"
    return box["fn"], f"compiled in {time.perf_counter() - t0:.1f} s"


def bench_infer(run_dir: str | Path, *, batch_sizes: list[int] | tuple[int, ...] = (1, 64),
                n: int = 1000, compile_timeout: float = 120.0, budget_s: float = 2.0,
                onnx: bool = True) -> dict[str, Any]:
    """Rows of {runtime, images_per_s: {batch: img/s}, accuracy, note} for a run."""
    from .export import export_onnx, load_for_parity, onnx_session, run_onnx

    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"--batch-sizes must be positive integers, got {list(batch_sizes)}")
    run = Path(run_dir)
    model, label, x, labels, source = load_for_parity(run, n)
    acc_bs = max(batch_sizes)

    def no_grad(fn):
        def call(xb):
            with torch.no_grad():
                return fn(xb)
        return call

    runtimes: list[tuple[str, Any, str]] = []
    runtimes.append(("eager fp32", no_grad(model), ""))
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    runtimes.append(("channels-last", no_grad(
        lambda xb: cl_model(xb.contiguous(memory_format=torch.channels_last))), ""))
    if native_bf16():
        def bf16(xb):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(xb)
        runtimes.append(("bf16 autocast", no_grad(bf16), ""))
    else:
        runtimes.append(("bf16 autocast", None,
                         "skipped: no native bf16 on this CPU (~10x slower than fp32)"))
    fn, why = _compile(model, x[:acc_bs], compile_timeout)
    runtimes.append(("torch.compile", no_grad(fn) if fn is not None else None,
                     why if fn is not None else f"skipped: {why}"))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantiz")
            qmodel = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear},
                                                            dtype=torch.qint8)
        n_lin = sum(isinstance(m, nn.Linear) for m in model.modules())
        runtimes.append(("int8 dynamic", no_grad(qmodel),
                         f"Linear layers only ({n_lin}); convs stay fp32"))
    except Exception as exc:  # noqa: BLE001
        runtimes.append(("int8 dynamic", None, f"skipped: {str(exc).splitlines()[0][:120]}"))
    if onnx:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                export_onnx(model, x[:2] if len(x) >= 2 else torch.cat([x, x]), path, label)
                session = onnx_session(path)
            runtimes.append(("onnxruntime", lambda xb: run_onnx(session, xb, len(xb)), ""))
        except CnnlabError as exc:
            runtimes.append(("onnxruntime", None, f"skipped: {exc}"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantiz")
        rows = [_bench_row(name, fn, note, x, labels, batch_sizes, acc_bs, budget_s)
                for name, fn, note in runtimes]
    return {"run_dir": str(run), "model": label, "data": source, "n": len(x),
            "batch_sizes": list(batch_sizes), "rows": rows, "machine": machine_info()}


def _bench_row(name, fn, note, x, labels, batch_sizes, acc_bs, budget_s) -> dict[str, Any]:
    row: dict[str, Any] = {"runtime": name, "images_per_s": {}, "accuracy": None,
                           "note": note}
    if fn is not None:
        for b in batch_sizes:
            row["images_per_s"][str(b)] = _throughput(fn, x, b, budget_s)
        if labels is not None:
            pred = _predict(fn, x, acc_bs).argmax(1)
            row["accuracy"] = float((pred == labels).float().mean())
    return row
