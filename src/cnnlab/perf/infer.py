"""Inference throughput of a trained run across runtimes, each with its test accuracy.

Runtimes: eager fp32; eager channels-last; bf16 autocast (only where the CPU has native bf16 —
elsewhere it is ~10× slower); ``torch.compile``; ``torch.compile`` with Inductor *freezing* on a
channels-last copy (weights become constants, batch norm is folded into the convolutions and
oneDNN pre-packs the weights: the biggest fp32 win on a CPU); int8 static quantization with PT2E
and the x86 Inductor quantizer (torchao, the optional extra ``quant``: per-channel int8 weights,
activations calibrated on training images — never on the test images it is scored on — then
compiled with freezing); int8 dynamic quantization (``quantize_dynamic`` on ``nn.Linear`` only:
convolutions stay fp32, so conv-heavy nets barely change); onnxruntime (when installed).
Compiles run in a daemon thread bounded by ``compile_timeout`` (abandoned, not killed).

Images/s per batch size: one warm-up batch, then batches over the ``n`` images until all are done
or ``budget_s`` seconds have passed. Accuracy: every runtime predicts all ``n`` test images;
``speedup`` is images/s at the largest batch over eager fp32's, ``accuracy_delta`` the change in
points against eager fp32.
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
from ..models.fastconv import FastConv3x3, with_plain_convs
from .hardware import has_int8_vnni, machine_info, native_bf16


def _full_batches(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``x`` cut to whole batches (repeated when shorter than one): every timed call then has
    the same shape, so a compiled runtime never recompiles inside the timing."""
    if len(x) < batch_size:
        x = x.repeat(-(-batch_size // len(x)), *([1] * (x.dim() - 1)))
    return x[: len(x) // batch_size * batch_size]


def _throughput(fn, x: torch.Tensor, batch_size: int, budget_s: float) -> float:
    x = _full_batches(x, batch_size)
    fn(x[:batch_size])  # warm-up (and, for compiled runtimes, the compile for this shape)
    done, t0 = 0, time.perf_counter()
    while done < len(x):
        fn(x[done:done + batch_size])
        done += batch_size
        if time.perf_counter() - t0 > budget_s:
            break
    return done / max(time.perf_counter() - t0, 1e-9)


def _predict(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for all of ``x`` in batches of one shape (the last one padded, then cut)."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        k = len(xb)
        if k < batch_size:
            xb = torch.cat([xb, _full_batches(x, batch_size)[: batch_size - k]])
        out.append(fn(xb).float()[:k])
    return torch.cat(out)


def _frozen(fn):
    """Call ``fn`` with Inductor freezing on: a later recompile (a new batch size) keeps it."""
    import torch._inductor.config as inductor_config

    def call(xb):
        with inductor_config.patch(freezing=True):
            return fn(xb)
    return call


def _bounded(build, timeout: float, what: str):
    """``build()`` in a daemon thread within ``timeout`` s → (fn, note) or (None, reason)."""
    if timeout <= 0:
        return None, "disabled (--compile-timeout 0)"
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            with torch.no_grad():
                box["fn"] = build()
        except Exception as exc:  # noqa: BLE001 - any compile failure → skipped with reason
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            box["error"] = f"{type(exc).__name__}: {first}" if first else type(exc).__name__

    t = threading.Thread(target=work, daemon=True)
    t0 = time.perf_counter()
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None, f"did not {what} within {timeout:g} s"
    if "error" in box:
        return None, f"{what} failed: {box['error']}"
    return box["fn"], f"{what} took {time.perf_counter() - t0:.1f} s"


def _compile(model: nn.Module, example: torch.Tensor, timeout: float, *, freeze: bool = False):
    """torch.compile'd forward (optionally frozen, channels-last), or (None, reason)."""
    def build():
        if not freeze:
            fn = torch.compile(model)
            fn(example)
            return fn
        cl = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
        fn = _frozen(torch.compile(cl, dynamic=False))

        def call(xb):
            return fn(xb.contiguous(memory_format=torch.channels_last))
        call(example)
        return call
    return _bounded(build, timeout, "compile")


def int8_static(model: nn.Module, calib: torch.Tensor, example: torch.Tensor, timeout: float):
    """PT2E int8 (x86 Inductor quantizer, calibrated on ``calib``) compiled with freezing."""
    import logging

    quiet = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in quiet]
    try:  # torchao announces its absent CUDA kernels at import: noise on a CPU machine
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError:
        return None, "skipped: needs the optional extra 'quant' (pip install 'cnnlab[quant]')"
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)

    vnni = has_int8_vnni()

    def build():
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        batch = torch.export.Dim("batch", min=1, max=4096)
        graph = torch.export.export(with_plain_convs(model).eval(), (example,),
                                    dynamic_shapes=({0: batch},)).module()
        quantizer = xiq.X86InductorQuantizer()
        # 7-bit activations where int8 products are summed in saturating int16 (no VNNI)
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(
            reduce_range=not vnni))
        prepared = prepare_pt2e(graph, quantizer)
        for i in range(0, len(calib), 64):  # observers record activation ranges
            prepared(calib[i:i + 64])
        fn = _frozen(torch.compile(convert_pt2e(prepared), dynamic=False))
        fn(example)
        return fn
    fn, note = _bounded(build, timeout, "quantize + compile")
    if fn is None:
        return None, f"skipped: {note}"
    bits = "" if vnni else ", 7-bit activations (no VNNI)"
    return fn, f"PT2E x86-inductor{bits}, calibrated on {len(calib)} training images; {note}"


def calibration_images(run: Path, model: nn.Module, n: int = 256) -> tuple[torch.Tensor, str]:
    """``n`` training images of the run (seeded sample) for int8 calibration, or random inputs."""
    from ..api import load_run_data

    try:
        train = load_run_data(run, model.meta).train
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(train), generator=g)[:n]
        return train.images[idx].float().div_(255.0), "training images"
    except (CnnlabError, OSError):
        shape = (int(model.meta["in_chans"]), *(int(v) for v in model.meta["input_size"]))
        return torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)), "random"


def bench_infer(run_dir: str | Path, *, batch_sizes: list[int] | tuple[int, ...] = (1, 64),
                n: int = 1000, compile_timeout: float = 120.0, budget_s: float = 2.0,
                onnx: bool = True, int8: bool = True) -> dict[str, Any]:
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
    if any(type(m) is FastConv3x3 for m in model.modules()):
        plain = with_plain_convs(model)  # what eager fp32 would run without cnnlab's conv
        runtimes.append(("eager fp32, plain convs", no_grad(plain),
                         "FastConv3x3 as nn.Conv2d: oneDNN's direct convolution instead of "
                         "Winograd with the transformed filters kept"))
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
    example = x[:acc_bs]
    for name, freeze in (("torch.compile", False), ("compiled + frozen", True)):
        fn, why = _compile(model, example, compile_timeout, freeze=freeze)
        note = ("channels-last, BN folded, weights pre-packed; " if freeze else "") + why
        runtimes.append((name, no_grad(fn) if fn is not None else None,
                         note if fn is not None else f"skipped: {why}"))
    if int8:
        # the training split is only read when the quantization will actually run
        calib = calibration_images(run, model)[0] if compile_timeout > 0 else x[:0]
        fn, note = int8_static(model, calib, example, compile_timeout)
        runtimes.append(("int8 static", no_grad(fn) if fn is not None else None, note))
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
    base = rows[0]
    for r in rows:
        ips, ref = r["images_per_s"].get(str(acc_bs)), base["images_per_s"].get(str(acc_bs))
        r["speedup"] = round(ips / ref, 3) if ips and ref else None
        r["accuracy_delta"] = (round(100 * (r["accuracy"] - base["accuracy"]), 3)
                               if r["accuracy"] is not None and base["accuracy"] is not None
                               else None)
    return {"run_dir": str(run), "model": label, "data": source, "n": len(x),
            "batch_sizes": list(batch_sizes), "rows": rows, "machine": machine_info()}


def _bench_row(name, fn, note, x, labels, batch_sizes, acc_bs, budget_s) -> dict[str, Any]:
    row: dict[str, Any] = {"runtime": name, "images_per_s": {}, "accuracy": None,
                           "note": note}
    if fn is None:
        return row
    try:
        for b in batch_sizes:
            row["images_per_s"][str(b)] = _throughput(fn, x, b, budget_s)
        if labels is not None:
            pred = _predict(fn, x, acc_bs).argmax(1)
            row["accuracy"] = float((pred == labels).float().mean())
    except Exception as exc:  # noqa: BLE001 - a runtime that breaks is a row, not a crash
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        row.update(images_per_s={}, accuracy=None,
                   note=f"failed while running: {type(exc).__name__}: {first}")
    return row
