"""A trained run outside eager PyTorch: ONNX (run by onnxruntime) or ``torch.export`` (.pt2),
each checked against the eager model.

The parity check runs both on up to ``n`` test images of the run's own data (the model takes
[0, 1] input and normalizes inside, so no preprocessing has to be exported separately), or on
random [0, 1] images of the model's input size when that data is not available — the result says
which. The batch axis is dynamic in both formats. Files are written to a temporary name in the
target folder and moved into place (``os.replace``), so a failed export never leaves half a file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, CnnlabError, ConfigError, ModelError

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}


def parity_inputs(run_dir: str | Path, model: nn.Module, n: int = 1000
                  ) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(float images in [0, 1], labels or None, description) for checks and benchmarks."""
    from ..api import load_run_data

    meta = model.meta
    try:
        ds = load_run_data(run_dir, meta)
        split = ds.test if len(ds.test) else ds.val
        split = split if len(split) else ds.train
        k = min(n, len(split))
        return split.images[:k].float().div_(255.0), split.labels[:k].clone(), \
            f"{ds.name} test split"
    except (CnnlabError, OSError) as exc:
        print(f"warning: the run's data is unavailable ({str(exc).splitlines()[0][:120]}); "
              "using random [0, 1] inputs", file=sys.stderr)
    g = torch.Generator().manual_seed(0)
    shape = (int(meta["in_chans"]), *(int(v) for v in meta["input_size"]))
    return torch.rand(n, *shape, generator=g), None, "random [0, 1] inputs"


def _tmp_path(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets normal rights
    return Path(name)


def _op_name(exc: BaseException) -> str | None:
    """The aten op an exporter choked on, searched in the error and its causes."""
    seen = 0
    while exc is not None and seen < 8:
        m = re.search(r"aten[:.]+[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?", str(exc))
        if m:
            return m.group(0)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:160]


def _failure(what: str, errors: list[BaseException]) -> str:
    for e in reversed(errors):
        op = _op_name(e)
        if op:
            return f"{what}: unsupported op {op}"
    return f"{what}: {_first_line(errors[-1])}"


def export_onnx(model: nn.Module, example: torch.Tensor, out: Path, label: str) -> str:
    """Write ``model`` as ONNX with a dynamic batch axis; returns which exporter worked.
    The dynamo exporter first, the TorchScript one as the fallback."""
    tmp = _tmp_path(out)
    errors = []
    try:
        for exporter in ("dynamo", "torchscript"):
            try:
                # The exporters print progress on stdout; keep stdout for --json.
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    if exporter == "dynamo":
                        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                        batch = torch.export.Dim("batch", min=1, max=65536)
                        prog = torch.onnx.export(model, (example,), dynamo=True,
                                                 input_names=["images"], output_names=["logits"],
                                                 dynamic_shapes=({0: batch},), optimize=True)
                        prog.save(str(tmp))
                    else:
                        torch.onnx.export(model, (example,), str(tmp), dynamo=False,
                                          input_names=["images"], output_names=["logits"],
                                          dynamic_axes={"images": {0: "batch"},
                                                        "logits": {0: "batch"}},
                                          opset_version=17)
                os.replace(tmp, out)
                return exporter
            except ImportError as exc:
                errors.append(exc)
                if exporter == "dynamo":
                    continue
                raise ConfigError(f"ONNX export needs the onnx package: pip install onnx "
                                  f"onnxscript ({exc})") from exc
            except Exception as exc:  # noqa: BLE001 - exporter failures are varied
                errors.append(exc)
        raise ModelError(_failure(f"cannot export {label} to ONNX", errors)) from errors[-1]
    finally:
        tmp.unlink(missing_ok=True)


def onnx_session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError("running ONNX needs onnxruntime: pip install onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    name = session.get_inputs()[0].name
    outs = [torch.from_numpy(session.run(None, {name: x[i:i + batch_size].numpy()})[0])
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs).float()


def export_torch(model: nn.Module, example: torch.Tensor, out: Path, label: str) -> str:
    tmp = _tmp_path(out)
    try:
        try:
            batch = torch.export.Dim("batch", min=1, max=65536)
            ep = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(_failure(f"cannot export {label} with torch.export",
                                      [exc])) from exc
        torch.export.save(ep, str(tmp))
        os.replace(tmp, out)
        return "torch.export"
    finally:
        tmp.unlink(missing_ok=True)


@torch.no_grad()
def _eager(model: nn.Module, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def load_for_parity(run: Path, n: int):
    """The run's model, its name, and up to ``n`` inputs/labels to compare runtimes on."""
    from ..api import load_model

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if not (run / "model.json").is_file():
        raise CheckpointError(f"{run} is not a run directory (no model.json)")
    model = load_model(run)
    label = str(model.meta.get("model", run.name))
    return (model, label, *parity_inputs(run, model, n))


def export_run(run_dir: str | Path, *, fmt: str = "onnx", out: str | Path | None = None,
               n: int = 1000) -> dict[str, Any]:
    """Export a run's model and check it against eager PyTorch on up to ``n`` images."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format '{fmt}'; choose onnx or torch-export")
    run = Path(run_dir)
    model, label, x, labels, source = load_for_parity(run, n)
    path = Path(out) if out else run / f"model{FORMATS[fmt]}"
    example = x[:2] if len(x) >= 2 else torch.cat([x, x])
    if fmt == "onnx":
        exporter = export_onnx(model, example, path, label)
        exported = run_onnx(onnx_session(path), x)
    else:
        exporter = export_torch(model, example, path, label)
        loaded = torch.export.load(str(path)).module()
        exported = _eager(loaded, x)
    ref = _eager(model, x)
    diff = float((ref - exported).abs().max()) if len(x) else 0.0
    agree = float((ref.argmax(1) == exported.argmax(1)).float().mean()) if len(x) else 1.0
    res: dict[str, Any] = {
        "run_dir": str(run), "model": label, "format": fmt, "exporter": exporter,
        "path": str(path), "bytes": path.stat().st_size, "parity_data": source,
        "parity_n": len(x), "max_abs_diff": diff, "agreement": agree,
    }
    if labels is not None:
        res["eager_accuracy"] = float((ref.argmax(1) == labels).float().mean())
        res["exported_accuracy"] = float((exported.argmax(1) == labels).float().mean())
    return res
