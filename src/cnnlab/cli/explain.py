"""``cnnlab explain RUN --method M``: PNGs (and, with --json, numbers) that show inside a network.

The work is in :mod:`cnnlab.explain`; this module resolves the run, the image and the layer,
calls one library function, writes the figures and prints what it wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError

METHODS = ("filters", "feature-maps", "deconv", "actmax", "saliency", "guided-backprop",
           "grad-cam", "occlusion", "separability")
NEEDS_IMAGE = ("feature-maps", "deconv", "saliency", "guided-backprop", "grad-cam", "occlusion")
USES_CHANNEL = ("filters", "feature-maps", "deconv", "actmax")
USES_LAYER = ("filters", "feature-maps", "deconv", "actmax", "grad-cam")

EPILOG = """\
methods:
  filters          first-layer kernels as images; --layer: a stage's kernels as norm maps
  feature-maps     a stage's activations for one image (--layer, default the first stage)
  deconv           Zeiler-Fergus deconvnet projection of a stage's strongest activation,
                   beside the 9 test patches that excite that channel most
  actmax           activation maximization of a class logit (default) or a --layer/--channel
  saliency         input gradient of the class logit
  guided-backprop  guided backpropagation (models must use nn.ReLU modules, not F.relu)
  grad-cam         Grad-CAM at --layer (default the last stage)
  occlusion        probability of the true class as a grey patch slides over the image
  separability     per stage: PCA/t-SNE of test features, linear-probe accuracy, Fisher ratio

examples:
  cnnlab explain runs/<run> --method grad-cam --index 3 --layer block2
  cnnlab explain runs/<run> --method occlusion --image cat.png --json
  cnnlab explain runs/<run> --method separability --limit 1000 --embed tsne
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="filters, feature maps, deconvnet, saliency, CAM, ...",
                       description="See inside a trained network. Writes PNGs to --out "
                       "(default RUN/explain) and prints their paths.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory")
    p.add_argument("--method", "-m", required=True, choices=METHODS, metavar="METHOD",
                   help=" | ".join(METHODS))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", metavar="FILE", help="an image file (resized/converted to the "
                     "model's input as its data pipeline does)")
    src.add_argument("--index", type=int, metavar="N", help="image N of the run's test split "
                     "(default 0)")
    p.add_argument("--layer", metavar="NAME", help="a stage of feature_layers() (the error "
                   "message lists them)")
    p.add_argument("--channel", type=int, metavar="C", help="channel of --layer (actmax without "
                   "--layer: the class)")
    p.add_argument("--target", metavar="CLASS", help="class name or index to explain (default: "
                   "the predicted class; occlusion: the true class with --index)")
    p.add_argument("--out", metavar="DIR", help="where the PNGs go (default RUN/explain)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the numbers")
    g = p.add_argument_group("method options")
    g.add_argument("--steps", type=int, default=128, help="actmax: gradient steps (default 128)")
    g.add_argument("--patch", type=int, help="occlusion: patch side in pixels (default side/4)")
    g.add_argument("--stride", type=int, help="occlusion: patch stride (default patch/2)")
    g.add_argument("--limit", type=int, default=2000, help="separability, deconv top-9: test "
                   "images used at most (default 2000)")
    g.add_argument("--embed", choices=("pca", "tsne"), default="pca",
                   help="separability: 2-D embedding (default pca)")
    g.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_explain)


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


class Context:
    """What every method needs: the model, its run, the chosen image and where PNGs go."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..api import load_model

        self.args = args
        self.run = Path(args.run)
        self.model = load_model(self.run)
        self.meta = self.model.meta
        self.classes = list(self.meta.get("classes") or range(self.meta["num_classes"]))
        self.classes = [str(c) for c in self.classes]
        self.out = Path(args.out) if args.out else self.run / "explain"
        self.files: list[str] = []
        self._split = None
        self.image: torch.Tensor | None = None
        self.label: int | None = None
        self.source = ""

    def split(self):
        if self._split is None:
            from ..explain.inputs import run_split

            self._split, _ = run_split(self.run, self.meta, "test")
        return self._split

    def load_image(self) -> None:
        from ..explain.inputs import image_at, image_from_file

        if self.args.image:
            self.image, msg = image_from_file(self.args.image, self.model)
            self.source = str(self.args.image)
            if msg:
                note(msg)
        else:
            index = 0 if self.args.index is None else self.args.index
            self.image, self.label = image_at(self.split(), index)
            self.source = f"test image {index}"

    def target(self) -> int | None:
        t = self.args.target
        if t is None:
            return None
        if t in self.classes:
            return self.classes.index(t)
        try:
            k = int(t)
        except ValueError:
            raise ConfigError(f"--target '{t}' is not a class of this model: "
                              f"{', '.join(self.classes[:20])}") from None
        if not 0 <= k < len(self.classes):
            raise ConfigError(f"--target {k} is out of range: the model has {len(self.classes)} "
                              f"classes (0–{len(self.classes) - 1})")
        return k

    def save(self, fig, name: str) -> str:
        from ..explain.plots import save_png

        path = str(save_png(fig, self.out / name))
        self.files.append(path)
        return path

    def title(self, what: str, target: int | None = None) -> str:
        parts = [what, self.source]
        if self.label is not None:
            parts.append(f"true {self.classes[self.label]}")
        if target is not None:
            parts.append(f"class {self.classes[target]}")
        return " — ".join(parts)


def run_explain(args: argparse.Namespace) -> int:
    from . import emit_json

    if args.channel is not None and args.method not in USES_CHANNEL:
        raise ConfigError(f"--channel applies to {', '.join(USES_CHANNEL)}, not {args.method}")
    if args.layer is not None and args.method not in USES_LAYER:
        raise ConfigError(f"--layer applies to {', '.join(USES_LAYER)}, not {args.method}")
    if args.limit < 2:
        raise ConfigError("--limit must be at least 2")
    ctx = Context(args)
    if args.layer is not None and not (args.method == "actmax" and args.layer == "logits"):
        from ..explain.common import resolve_layer

        resolve_layer(ctx.model, args.layer)  # a bad name fails before any data is loaded
    if args.method in NEEDS_IMAGE:
        ctx.load_image()
    result: dict[str, Any] = {"method": args.method, "run": str(ctx.run),
                              "model": ctx.meta["model"]}
    if ctx.image is not None:
        result["image"] = ctx.source
        if ctx.label is not None:
            result["true_class"] = ctx.classes[ctx.label]
    result.update(HANDLERS[args.method](ctx))
    result["files"] = ctx.files
    if args.json:
        emit_json(result)
    else:
        for key, value in result.items():
            if key != "files" and isinstance(value, (str, int, float)):
                print(f"{key}: {value}")
        for path in ctx.files:
            print(f"wrote {path}")
    return 0


# -- one function per method ------------------------------------------------------------------

def _filters(ctx: Context) -> dict:
    from ..explain import filters, plots
    from ..explain.common import check_channel, resolve_layer

    if ctx.args.layer is None:
        if ctx.args.channel is not None:
            raise ConfigError("--channel with filters needs --layer (the first layer's filters "
                              "are all shown)")
        f = filters.first_layer_filters(ctx.model)
        w = f["weight"]
        imgs = filters.filters_as_images(w)
        kind = "RGB" if f["rgb"] else "grey"
        ctx.save(plots.image_grid(imgs, suptitle=f"first-layer filters ({f['path']}, "
                                  f"{w.shape[0]}×{w.shape[1]}×{w.shape[2]}×{w.shape[3]}, {kind})"),
                 "filters.png")
        return {"conv": f["path"], "shape": list(w.shape), "rgb": f["rgb"]}
    info = resolve_layer(ctx.model, ctx.args.layer)
    f = filters.layer_filters(ctx.model, info.name)
    w = f["weight"]
    if ctx.args.channel is not None:
        check_channel(info, ctx.args.channel, w.shape[0])
        c = ctx.args.channel
        ctx.save(plots.image_grid(filters.filters_as_images(w[c:c + 1]), suptitle=(
            f"{f['path']} filter {c}: one kernel per input channel")),
                 f"filters-{info.name}-c{c}.png")
    else:
        ctx.save(plots.image_grid(list(f["norms"]), normalize="global", cmap="viridis",
                                  suptitle=f"{f['path']} ({info.name}): per-output-channel "
                                  "L2 norm over input channels"), f"filters-{info.name}.png")
    return {"layer": info.name, "conv": f["path"], "shape": list(w.shape),
            "norm_per_channel": f["norms"].flatten(1).norm(dim=1).tolist()}


def _feature_maps(ctx: Context) -> dict:
    from ..explain import plots
    from ..explain.common import check_channel, resolve_layer
    from ..explain.maps import feature_maps

    info = resolve_layer(ctx.model, ctx.args.layer, default="first")
    check_channel(info, ctx.args.channel)
    fm = feature_maps(ctx.model, ctx.image, info.name)
    maps = fm["maps"]
    c = ctx.args.channel
    if c is not None:
        check_channel(info, c, maps.shape[0])
        fig = plots.heat_panels(ctx.image, [(f"{info.name} channel {c}", maps[c])],
                                cmap="viridis", suptitle=ctx.title(f"feature map {info.name}:{c}"))
        ctx.save(fig, f"feature-maps-{info.name}-c{c}.png")
    else:
        shown = min(64, maps.shape[0])
        fig = plots.image_grid(list(maps[:shown]), titles=[str(i) for i in range(shown)],
                               normalize="global", cmap="viridis", cell=1.0,
                               suptitle=ctx.title(f"{info.name}: channels 0–{shown - 1} of "
                                                  f"{maps.shape[0]}, one colour scale"))
        ctx.save(fig, f"feature-maps-{info.name}.png")
    return {"layer": info.name, "shape": list(maps.shape), "top_channels": fm["top"],
            "channel_mean": [round(v, 6) for v in fm["mean"].tolist()]}


def _deconv(ctx: Context) -> dict:
    from ..explain import plots
    from ..explain.common import resolve_layer
    from ..explain.deconv import deconvnet, projection_image, top_patches

    info = resolve_layer(ctx.model, ctx.args.layer)
    d = deconvnet(ctx.model, ctx.image, info.name, ctx.args.channel)
    c = d["channel"][0]
    proj = projection_image(d["projection"])[0]
    fig = plots.image_grid([ctx.image, proj], titles=["input", f"{info.name}:{c} projection"],
                           ncols=2, cell=2.4, suptitle=ctx.title(f"deconvnet {info.name}:{c}"))
    ctx.save(fig, f"deconv-{info.name}-c{c}.png")
    out = {"layer": info.name, "channel": c, "location": list(d["location"][0]),
           "activation": d["activation"][0]}
    try:
        split = ctx.split()
    except Exception as exc:  # noqa: BLE001 - the projection stands without the patches
        note(f"top-9 patches skipped: the run's test data could not be loaded ({exc})")
        return out
    images = split.images[:ctx.args.limit]
    top = top_patches(ctx.model, images, info.name, c, k=9)
    tiles = list(top["patches"]) + list(projection_image(top["projections"]))
    k = len(top["indices"])
    titles = [f"#{i} {v:.2f}" for i, v in zip(top["indices"], top["values"], strict=True)]
    fig = plots.image_grid(tiles, titles=titles + ["projection"] * k, ncols=k, cell=1.3,
                           suptitle=f"top-{k} test patches for {info.name}:{c} (top) and their "
                           "deconvnet projections (bottom)")
    ctx.save(fig, f"deconv-{info.name}-c{c}-top9.png")
    out["top9"] = [{"index": i, "activation": v}
                   for i, v in zip(top["indices"], top["values"], strict=True)]
    return out


def _actmax(ctx: Context) -> dict:
    from ..explain import plots
    from ..explain.actmax import LOGITS, activation_maximization

    layer = ctx.args.layer
    if layer in (None, LOGITS):
        if ctx.args.channel is not None and ctx.args.target is not None:
            raise ConfigError("actmax of a class: give --target or --channel, not both")
        channel = ctx.target() if ctx.args.target is not None else (ctx.args.channel or 0)
        if not 0 <= channel < len(ctx.classes):
            raise ConfigError(f"--channel {channel} is out of range: the model has "
                              f"{len(ctx.classes)} classes (0–{len(ctx.classes) - 1})")
        what = f"class {ctx.classes[channel]} logit"
    else:
        channel = ctx.args.channel or 0
        what = f"{layer} channel {channel}"
    if ctx.args.steps < 1:
        raise ConfigError("--steps must be at least 1")
    a = activation_maximization(ctx.model, layer, channel, steps=ctx.args.steps,
                                seed=ctx.args.seed)
    hist = a["history"]
    fig = plots.new_figure(6.4, 3.0)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.6])
    plots.show_image(ax1, a["image"][0])
    ax1.set_title(what, fontsize=8)
    ax2.plot(range(len(hist)), hist)
    ax2.set_xlabel("step")
    ax2.set_ylabel("objective (no jitter)")
    ax2.set_title("activation during optimization", fontsize=8)
    ctx.save(fig, f"actmax-{a['layer']}-c{channel}.png")
    return {"layer": a["layer"], "channel": channel, "objective_start": hist[0],
            "objective_end": hist[-1], "objective_max": max(hist), "history": hist}


def _gradient_method(ctx: Context) -> dict:
    from ..explain import attribution, plots

    fn = {"saliency": attribution.saliency,
          "guided-backprop": attribution.guided_backprop}[ctx.args.method]
    r = fn(ctx.model, ctx.image, ctx.target())
    t = int(r["target"][0])
    grad = r["grad"][0]
    panels = [(f"|gradient| ({ctx.args.method})", r["map"][0])]
    fig = plots.heat_panels(ctx.image, panels, cmap="hot",
                            suptitle=ctx.title(ctx.args.method, t))
    ctx.save(fig, f"{ctx.args.method}.png")
    peak = int(r["map"][0].argmax())
    w = r["map"].shape[-1]
    return {"target": ctx.classes[t], "probability": float(r["probability"][0]),
            "predicted": ctx.classes[int(r["logits"][0].argmax())],
            "map_peak": {"row": peak // w, "col": peak % w},
            "grad_l2": float(grad.norm()), "grad_positive_fraction":
            float((grad > 0).float().mean())}


def _grad_cam(ctx: Context) -> dict:
    from ..explain import attribution, plots

    r = attribution.grad_cam(ctx.model, ctx.image, ctx.args.layer, ctx.target())
    t = int(r["target"][0])
    fig = plots.heat_panels(ctx.image, [(f"Grad-CAM {r['layer']}", r["cam"][0])],
                            suptitle=ctx.title(f"Grad-CAM at {r['layer']}", t))
    ctx.save(fig, f"grad-cam-{r['layer']}.png")
    cam = r["cam"][0]
    peak = int(cam.argmax())
    return {"layer": r["layer"], "target": ctx.classes[t],
            "cam_peak": {"row": peak // cam.shape[1], "col": peak % cam.shape[1]},
            "cam_resolution": list(r["cam_raw"].shape[1:])}


def _occlusion(ctx: Context) -> dict:
    from ..explain import attribution, plots

    target = ctx.target()
    if target is None and ctx.label is not None:
        target = ctx.label
    r = attribution.occlusion(ctx.model, ctx.image, target, patch=ctx.args.patch,
                              stride=ctx.args.stride)
    t = r["target"]
    fig = plots.heat_panels(ctx.image, [(f"drop of p({ctx.classes[t]})", r["drop"])],
                            cmap="magma", suptitle=ctx.title(
                                f"occlusion {r['patch']}px / stride {r['stride']}", t))
    ctx.save(fig, "occlusion.png")
    pm = r["prob_map"]
    fig = plots.new_figure(3.6, 3.2)
    ax = fig.subplots()
    im = ax.imshow(pm.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax)
    ax.set_title(f"p({ctx.classes[t]}) with the patch at each position", fontsize=8)
    ctx.save(fig, "occlusion-probability.png")
    return {"target": ctx.classes[t], "base_probability": r["base_probability"],
            "patch": r["patch"], "stride": r["stride"], "min_location": r["min_location"],
            "probability_map": [[round(v, 5) for v in row] for row in pm.tolist()]}


def _separability(ctx: Context) -> dict:
    from ..explain import plots
    from ..explain.separability import separability

    split = ctx.split()
    n = min(ctx.args.limit, len(split))
    gen = torch.Generator().manual_seed(ctx.args.seed)
    idx = torch.randperm(len(split), generator=gen)[:n].sort().values
    images, labels = split.images[idx], split.labels[idx]
    r = separability(ctx.model, images, labels, embed=ctx.args.embed, seed=ctx.args.seed)
    ctx.save(plots.scatter_stages(r["stages"], labels.numpy(), ctx.classes, suptitle=(
        f"{ctx.meta['model']}: {r['embed'].upper()} of {n} test images per stage")),
        f"separability-{r['embed']}.png")
    ctx.save(plots.probe_depth_plot(r["stages"], r["chance"]), "separability-probe.png")
    rows = [[s["name"], s["dims"], s["probe_accuracy"], s["fisher_ratio"]] for s in r["stages"]]
    if not ctx.args.json:
        from . import print_table

        print_table(rows, ["stage", "dims", "probe_accuracy", "fisher_ratio"])
    return {"n": n, "embed": r["embed"], "chance": r["chance"],
            "stages": [{"name": s["name"], "depth": s["depth"], "dims": s["dims"],
                        "probe_accuracy": s["probe_accuracy"],
                        "fisher_ratio": s["fisher_ratio"]} for s in r["stages"]]}


HANDLERS = {"filters": _filters, "feature-maps": _feature_maps, "deconv": _deconv,
            "actmax": _actmax, "saliency": _gradient_method, "guided-backprop": _gradient_method,
            "grad-cam": _grad_cam, "occlusion": _occlusion, "separability": _separability}
