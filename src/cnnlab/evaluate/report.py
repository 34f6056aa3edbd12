"""The run report: one self-contained ``report.html`` in the run directory.

Written at the end of every training run (``train.loop._after_training``) and by
``cnnlab report RUN``. Everything is inlined — PNG figures as base64 ``data:`` URIs, CSS and a
few lines of script in the page — so the file opens offline and can be mailed as it is; a
Content-Security-Policy forbids every external resource, so a stray link would fail visibly.

Sections: summary, config, environment, training curves (loss, accuracy, learning rate),
confusion matrix (counts and row-normalized), per-class precision/recall/F1, the most confidently
wrong test images, first-layer filters, parameters and multiply-adds.

A section that cannot be rendered (e.g. the data set is no longer on this machine) shows the
reason in the page and on stderr instead of failing the training run that just finished; the
page's ``data-section-errors`` attribute counts them.

The inline script sets ``data-images-ok="loaded/total"`` and ``data-js-errors`` on ``<body>``
once the page has loaded, so a headless browser's ``--dump-dom`` shows whether every image
decoded and no script error occurred (tests/evaluate/test_report.py).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPORT = "report.html"
SECTIONS = ("summary", "config", "environment", "curves", "confusion", "per-class", "mistakes",
            "filters", "complexity")

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'")

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; image-rendering: pixelated; }
.note { color: #666; font-size: 12px; } .error { color: #a00; }
nav a { margin-right: 0.8em; }
"""

CHECK_SCRIPT = """
window.__reportErrors = [];
window.addEventListener("error", function (e) {
  window.__reportErrors.push(e.message || ("could not load " + (e.target && e.target.tagName)));
}, true);
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesOk = ok + "/" + imgs.length;
  document.body.dataset.jsErrors = String(window.__reportErrors.length);
});
"""


# -- small HTML helpers -----------------------------------------------------------------------

def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def table(rows: list[list[Any]], headers: list[str] | None = None) -> str:
    def cell(v: Any, tag: str = "td") -> str:
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f'<{tag}{" class=num" if num else ""}>{esc(fmt(v))}</{tag}>'

    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>" if headers else ""
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figure(fig, alt: str) -> str:
    from ..explain.plots import png_bytes

    return img_tag(png_bytes(fig), alt)


# -- reading the run --------------------------------------------------------------------------

def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def complexity(model: torch.nn.Module, input_size: tuple[int, int, int]) -> dict[str, Any]:
    """Parameters and multiply-adds of one image (``cnnlab.perf.flops`` when installed)."""
    try:
        from ..perf.flops import count_macs, count_params

        source = "cnnlab.perf.flops (FlopCounterMode)"
    except ImportError:
        count_macs, count_params = _count_macs, _count_params
        source = "torch.utils.flop_counter.FlopCounterMode (FLOPs / 2)"
    return {"params": int(count_params(model)), "macs": int(count_macs(model, input_size)),
            "input_size": list(input_size), "counted_by": source}


def _count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _count_macs(model: torch.nn.Module, input_size: tuple[int, int, int]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was)
    return int(counter.get_total_flops()) // 2


class Evaluation:
    """Test-split logits, metrics and images, computed once for several sections."""

    def __init__(self, run_dir: Path, model: torch.nn.Module, meta: dict) -> None:
        from ..explain.inputs import run_split
        from .metrics import classification_metrics, predict_logits

        self.split, self.classes = run_split(run_dir, meta, "test")
        # the run's own precision, as the loop's test metrics in model.json used
        precision = meta.get("precision") if meta.get("precision") in ("fp32", "bf16") else "fp32"
        self.logits = predict_logits(model, self.split, batch_size=500, precision=precision)
        self.metrics = classification_metrics(self.logits, self.split.labels, self.classes)


# -- sections ---------------------------------------------------------------------------------

def _summary(ctx: dict) -> str:
    meta, ev = ctx["meta"], ctx["eval"]
    rows = [["model", meta.get("model")], ["data", meta.get("data")],
            ["classes", len(meta.get("classes") or [])],
            ["input (C, H, W)", [meta.get("in_chans"), *meta.get("input_size", [])]],
            ["epochs", meta.get("epoch")], ["precision", meta.get("precision")]]
    trained = (meta.get("metrics") or {}).get("train_seconds")
    if trained is not None:
        rows.append(["training time (s)", trained])
    if isinstance(ev, Evaluation):
        m = ev.metrics
        rows += [["test images", m["n"]], ["test accuracy (top-1)", m["accuracy"]],
                 ["test top-5", m["top5"]], ["test loss", m["loss"]], ["macro-F1", m["macro_f1"]]]
    cx = ctx.get("complexity")
    if cx:
        rows += [["parameters", cx["params"]], ["multiply-adds / image", cx["macs"]]]
    return table(rows)


def _config(ctx: dict) -> str:
    import yaml

    path = ctx["run_dir"] / "config.yaml"
    if not path.is_file():
        return '<p class="note">no config.yaml in this run directory</p>'
    cfg = yaml.safe_load(path.read_text()) or {}
    return table([[k, v] for k, v in cfg.items()], ["key", "value"])


def _environment(ctx: dict) -> str:
    path = ctx["run_dir"] / "env.json"
    if not path.is_file():
        return '<p class="note">no env.json in this run directory</p>'
    env = json.loads(path.read_text())
    return table([[k, v] for k, v in env.items()], ["key", "value"])


def _curves(ctx: dict) -> str:
    from ..explain.plots import new_figure

    hist = ctx["history"]
    if not hist:
        return '<p class="note">no metrics.csv rows: no epoch finished</p>'
    ep = [r["epoch"] for r in hist]
    split = hist[-1].get("eval_split") or "eval"
    fig = new_figure(11, 3.2, layout=None)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.16, top=0.9, wspace=0.25)
    axes = fig.subplots(1, 3)
    panels = [("loss", "train_loss", "eval_loss"), ("accuracy", "train_acc", "eval_acc")]
    for ax, (name, tr, ev) in zip(axes, panels, strict=False):
        ax.plot(ep, [r.get(tr) for r in hist], "o-", ms=3, label="train")
        done = [r for r in hist if r.get(ev) not in (None, "")]  # --eval-every skips epochs
        ax.plot([r["epoch"] for r in done], [r[ev] for r in done], "s-", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[2].plot(ep, [r.get("lr") for r in hist], "o-", ms=3, color="C2")
    axes[2].set_xlabel("epoch")
    axes[2].set_title("learning rate (end of epoch)", fontsize=10)
    axes[2].grid(alpha=0.3)
    last = hist[-1]
    return (figure(fig, "loss, accuracy and learning rate per epoch") +
            f'<p class="note">last epoch: train loss {fmt(last.get("train_loss"))}, '
            f'{esc(split)} accuracy {fmt(last.get("eval_acc"))}, '
            f'{fmt(last.get("images_per_s"))} images/s</p>')


def _needs_eval(ctx: dict) -> Evaluation:
    ev = ctx["eval"]
    if not isinstance(ev, Evaluation):
        raise RuntimeError(f"no test-set evaluation: {ev}")
    return ev


def _confusion(ctx: dict) -> str:
    from ..explain.plots import new_figure

    ev = _needs_eval(ctx)
    cm = np.asarray(ev.metrics["confusion_matrix"], dtype=np.float64)
    k = len(ev.classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(max(3.5, 0.45 * k), 9)
    # A fixed layout: the constrained engine would measure every label (slow on 2 cores).
    fig = new_figure(2 * side + 2.4, side + 1.0, layout=None)
    fig.subplots_adjust(left=0.08, right=0.96, bottom=0.16, top=0.92, wspace=0.3)
    axes = fig.subplots(1, 2)
    for ax, mat, title, f in [(axes[0], cm, "counts", None),
                              (axes[1], norm, "row-normalized (recall on the diagonal)",
                               "{:.2f}")]:
        im = ax.imshow(mat, cmap="Blues", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            ticks = [c[:8] for c in ev.classes]
            ax.set_xticks(range(k), ticks, rotation=90, fontsize=7)
            ax.set_yticks(range(k), ticks, fontsize=7)
        if k <= 12 and f:  # counts are in the table below; the shares only here
            top = mat.max() or 1
            for i in range(k):
                for j in range(k):
                    # in_layout=False: the layout engine need not measure 2·k² labels
                    ax.text(j, i, f.format(mat[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if mat[i, j] > 0.6 * top else "black",
                            in_layout=False)
    out = figure(fig, "confusion matrix: counts and row-normalized")
    if k <= 20:
        short = [c[:8] for c in ev.classes]
        out += ("<p>counts (rows: true, columns: predicted)</p>" +
                table([[short[i], *map(int, row)] for i, row in enumerate(cm)], ["", *short]))
    return out


def _per_class(ctx: dict) -> str:
    ev = _needs_eval(ctx)
    rows = [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]]
            for r in ev.metrics["per_class"]]
    return table(rows, ["class", "precision", "recall", "F1", "support"])


def _mistakes(ctx: dict, count: int = 16) -> str:
    from ..explain.plots import image_grid

    ev = _needs_eval(ctx)
    probs = ev.logits.float().softmax(1)
    labels = ev.split.labels
    conf, pred = probs.max(1)
    wrong = torch.nonzero(pred != labels).flatten()
    if len(wrong) == 0:
        return '<p>no misclassified test image.</p>'
    order = wrong[conf[wrong].argsort(descending=True)][:count]
    images = ev.split.images[order].float() / 255.0
    titles = []
    for i in order.tolist():
        t, p = int(labels[i]), int(pred[i])
        # three short lines: a caption wider than its tile would run into the next one
        titles.append(f"#{i}\ntrue {ev.classes[t][:8]} {probs[i, t]:.2f}\n"
                      f"pred {ev.classes[p][:8]} {probs[i, p]:.2f}")
    fig = image_grid(images, titles, ncols=min(8, len(order)), cell=1.2)
    return (figure(fig, "most confidently wrong test images") +
            f'<p class="note">{len(order)} of {len(wrong)} misclassified test images, most '
            "confident first, with the probability of the true and of the predicted class.</p>")


def _filters(ctx: dict) -> str:
    from ..explain.filters import filters_as_images, first_layer_filters
    from ..explain.plots import image_grid

    f = first_layer_filters(ctx["model"])
    w = f["weight"]
    imgs = filters_as_images(w)[:256]
    kind = "RGB" if f["rgb"] else "grey" if f["grey"] else "one image per input channel"
    fig = image_grid(imgs, cell=0.55, ncols=min(16, len(imgs)))
    return (figure(fig, "first-layer filters") +
            f'<p class="note">{esc(f["path"])}: {w.shape[0]} kernels of '
            f'{w.shape[1]}×{w.shape[2]}×{w.shape[3]} ({kind}), each scaled to its own largest '
            "|weight|, grey = 0.</p>")


def _complexity(ctx: dict) -> str:
    cx = ctx.get("complexity")
    if not cx:
        raise RuntimeError(ctx.get("complexity_error", "not counted"))
    return table([["parameters", cx["params"]], ["multiply-adds per image", cx["macs"]],
                  ["input (C, H, W)", cx["input_size"]], ["counted by", cx["counted_by"]]])


SECTION_BUILDERS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "summary": ("Summary", _summary), "config": ("Config", _config),
    "environment": ("Environment", _environment), "curves": ("Training curves", _curves),
    "confusion": ("Confusion matrix", _confusion), "per-class": ("Per-class scores", _per_class),
    "mistakes": ("Most confidently wrong", _mistakes),
    "filters": ("First-layer filters", _filters),
    "complexity": ("Parameters and multiply-adds", _complexity),
}


# -- the page ---------------------------------------------------------------------------------

def build_context(run_dir: Path) -> dict[str, Any]:
    from ..api import load_model
    from ..errors import CnnlabError

    model = load_model(run_dir)  # raises CheckpointError for a directory without weights
    meta = model.meta
    ctx: dict[str, Any] = {"run_dir": run_dir, "model": model, "meta": meta,
                           "history": read_history(run_dir)}
    try:
        ctx["eval"] = Evaluation(run_dir, model, meta)
    except CnnlabError as exc:
        ctx["eval"] = str(exc)
    try:
        ctx["complexity"] = complexity(model, (meta["in_chans"], *meta["input_size"]))
    except Exception as exc:  # noqa: BLE001 - counting is informative, never fatal
        ctx["complexity_error"] = f"{type(exc).__name__}: {exc}"
    return ctx


def render(ctx: dict[str, Any]) -> tuple[str, list[str]]:
    """The HTML page, and the sections that failed (each with its reason)."""
    from ..train.progress import log

    parts, errors = [], []
    for key in SECTIONS:
        title, build = SECTION_BUILDERS[key]
        try:
            body = build(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the report
            reason = f"{type(exc).__name__}: {exc}"
            errors.append(f"{key}: {reason}")
            log(f"warning: report section '{key}' could not be rendered: {reason}")
            body = ('<p class="error section-error">could not render this section: '
                    f"{esc(reason)}</p>")
        parts.append(f'<section id="{key}"><h2>{esc(title)}</h2>\n{body}\n</section>')
    meta = ctx["meta"]
    run_name = ctx["run_dir"].resolve().name
    nav = " ".join(f'<a href="#{k}">{esc(SECTION_BUILDERS[k][0])}</a>' for k in SECTIONS)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnlab report: {esc(run_name)}</title>
<style>{STYLE}</style>
<script>{CHECK_SCRIPT}</script>
</head>
<body data-section-errors="{len(errors)}">
<h1>{esc(meta.get("model"))} on {esc(meta.get("data"))}</h1>
<p class="note">run {esc(run_name)} · cnnlab {esc(meta.get("cnnlab_version", ""))} · report
written {esc(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>
<nav>{nav}</nav>
{chr(10).join(parts)}
</body>
</html>
"""
    return page, errors


def write_report(run_dir: str | Path) -> Path:
    """Write (or rewrite) ``report.html`` in ``run_dir`` and return its path."""
    from ..train.checkpoint import write_text

    run_dir = Path(run_dir)
    page, _ = render(build_context(run_dir))
    path = run_dir / REPORT
    write_text(path, page)
    return path
