"""PNG figures for explanations and the run report (matplotlib, no GUI).

Figures are built with :class:`matplotlib.figure.Figure` directly, never ``pyplot``: no global
state, no backend to select, safe inside a training process. PNG files are written atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def png_bytes(fig, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_png(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically; returns the path."""
    from ..train.checkpoint import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = png_bytes(fig, dpi)
    atomic_write(path, lambda f: f.write(blob))
    return path


def to_hwc(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] → (H, W) for grey or (H, W, 3) for colour, numpy float."""
    a = img.detach().float().cpu().clamp(0, 1).numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def show_image(ax, img: torch.Tensor | np.ndarray, cmap: str = "gray", vmin: float = 0.0,
               vmax: float = 1.0) -> None:
    """Draw an image (C, H, W) or a map (H, W) in [vmin, vmax] without ticks."""
    arr = to_hwc(img) if isinstance(img, torch.Tensor) and img.dim() == 3 else np.asarray(img)
    ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None, vmin=vmin, vmax=vmax,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def mosaic(images: Sequence[torch.Tensor], ncols: int, pad: int, top: int = 0) -> np.ndarray:
    """Tile images (C, H, W) or maps (H, W) of one size into one array; NaN (drawn white)
    between tiles, ``pad`` pixels apart and ``top`` extra pixels above each row (for titles)."""
    arrs = [to_hwc(i) if i.dim() == 3 else i.detach().float().cpu().numpy() for i in images]
    h, w = arrs[0].shape[:2]
    colour = arrs[0].ndim == 3
    nrows = max(1, math.ceil(len(arrs) / ncols))
    shape = (nrows * (h + pad + top) + pad, ncols * (w + pad) + pad) + ((3,) if colour else ())
    out = np.full(shape, np.nan, dtype=np.float64)
    for k, a in enumerate(arrs):
        r, c = divmod(k, ncols)
        y, x = pad + top + r * (h + pad + top), pad + c * (w + pad)
        out[y:y + h, x:x + w] = a
    return out


def image_grid(images: torch.Tensor | Sequence[torch.Tensor], titles: Sequence[str] | None = None,
               *, ncols: int | None = None, suptitle: str | None = None, cmap: str = "gray",
               cell: float = 1.3, normalize: str = "none"):
    """A grid of images (N, C, H, W) in [0, 1] (or (N, H, W) maps drawn with ``cmap``).

    ``normalize``: ``"none"`` (values are already in [0, 1]), ``"each"`` (each image to its own
    min–max) or ``"global"`` (one min–max for all: magnitudes stay comparable). Images of
    different sizes are each resized (nearest) to the largest. Drawn as one mosaic on one axes:
    a grid of many small axes costs seconds in matplotlib, this costs milliseconds.
    """
    imgs = [torch.as_tensor(i).detach().float().cpu() for i in images]
    n = len(imgs)
    if normalize == "global" and n:
        lo = min(float(i.min()) for i in imgs)
        hi = max(float(i.max()) for i in imgs)
        imgs = [(i - lo) / max(hi - lo, 1e-12) for i in imgs]
    elif normalize == "each":
        imgs = [(i - i.min()) / max(float(i.max() - i.min()), 1e-12) for i in imgs]
    imgs = _same_size(imgs)
    ncols = max(1, min(ncols or math.ceil(math.sqrt(max(n, 1))), max(n, 1)))
    nrows = max(1, math.ceil(n / ncols))
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles else 0
    title_in = 0.16 * lines + (0.05 if lines else 0)  # inches of text above each tile
    supt_in = 0.4 if suptitle else 0.0
    h, w = imgs[0].shape[-2:] if n else (1, 1)
    px = h / cell  # image pixels per inch
    pad = max(1, round(0.06 * px))
    top = round(title_in * px)
    arr = mosaic(imgs, ncols, pad, top) if n else np.full((1, 1), np.nan)
    width = ncols * (cell + pad / px) + pad / px
    height = nrows * (cell + (pad + top) / px) + pad / px
    fig = new_figure(width, height + supt_in, layout=None)
    ax = fig.add_axes((0, 0, 1, height / (height + supt_in)))
    ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest", aspect="auto")
    ax.axis("off")
    if titles:
        for k, t in enumerate(titles[:n]):
            r, c = divmod(k, ncols)
            ax.text(pad + c * (w + pad) + w / 2, pad + top + r * (h + pad + top) - 0.5 * pad,
                    t, ha="center", va="bottom", fontsize=7, linespacing=1.0)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1 - 0.1 * supt_in / (height + supt_in))
    return fig


def _same_size(imgs: list[torch.Tensor]) -> list[torch.Tensor]:
    if not imgs:
        return imgs
    h = max(i.shape[-2] for i in imgs)
    w = max(i.shape[-1] for i in imgs)
    out = []
    for i in imgs:
        if tuple(i.shape[-2:]) != (h, w):
            x = i[None] if i.dim() == 3 else i[None, None]
            x = torch.nn.functional.interpolate(x, size=(h, w), mode="nearest")
            i = x[0] if i.dim() == 3 else x[0, 0]
        out.append(i)
    return out


def heat_panels(image: torch.Tensor, heats: Sequence[tuple[str, torch.Tensor]], *,
                suptitle: str | None = None, cmap: str = "jet", signed: bool = False):
    """The image, then each (title, map (H, W)) alone and blended over the image.

    ``signed`` maps (e.g. raw gradients) use a diverging colour map centred on zero.
    """
    n = 1 + 2 * len(heats)
    fig = new_figure(2.2 * n, 2.6 + (0.3 if suptitle else 0))
    axes = fig.subplots(1, n, squeeze=False)[0]
    base = to_hwc(image)
    show_image(axes[0], image)
    axes[0].set_title("input", fontsize=8)
    grey = base if base.ndim == 2 else base.mean(2)
    for k, (title, heat) in enumerate(heats):
        h = heat.detach().float().cpu().numpy()
        if signed:
            lim = float(np.abs(h).max()) or 1.0
            kw = {"cmap": "seismic", "vmin": -lim, "vmax": lim}
        else:
            kw = {"cmap": cmap, "vmin": float(h.min()), "vmax": float(h.max()) or 1.0}
        ax = axes[1 + 2 * k]
        im = ax.imshow(h, interpolation="nearest", **kw)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        ax = axes[2 + 2 * k]
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(h, alpha=0.5, interpolation="bilinear", **kw)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title} over input", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def scatter_stages(stages: Sequence[dict], labels: np.ndarray, classes: Sequence[str], *,
                   suptitle: str | None = None):
    """One 2-D scatter per stage (``stage["embedding"]``), points coloured by class."""
    n = len(stages)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = new_figure(3.0 * ncols, 3.0 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    labels = np.asarray(labels)
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        st = stages[k]
        emb = np.asarray(st["embedding"])
        for c in np.unique(labels):
            sel = labels == c
            ax.scatter(emb[sel, 0], emb[sel, 1], s=4, color=cmap(int(c) % cmap.N),
                       label=classes[c] if c < len(classes) else str(c))
        ax.set_title(f"{st['name']}: probe {st['probe_accuracy']:.2f}, "
                     f"Fisher {st['fisher_ratio']:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 10),
                   fontsize=7, markerscale=3)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def probe_depth_plot(stages: Sequence[dict], chance: float | None = None, *,
                     title: str = "linear-probe accuracy by depth"):
    """Probe accuracy (and Fisher ratio on a second axis) against stage depth."""
    fig = new_figure(5.5, 3.4)
    ax = fig.subplots()
    depth = [s["depth"] for s in stages]
    ax.plot(depth, [s["probe_accuracy"] for s in stages], "o-", color="C0", label="probe accuracy")
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1, label="majority class")
    ax.set_xticks(depth, [s["name"] for s in stages], rotation=30, fontsize=8)
    ax.set_ylabel("linear-probe accuracy")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.plot(depth, [s["fisher_ratio"] for s in stages], "s--", color="C1", label="Fisher ratio")
    ax2.set_ylabel("Fisher ratio tr(S_B)/tr(S_W)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    return fig
