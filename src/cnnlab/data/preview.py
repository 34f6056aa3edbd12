"""A labelled grid of sample images per class (``cnnlab data info --grid FILE.png``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from .dataset import Dataset


def sample_grid(ds: Dataset, path: str | Path, *, per_class: int = 8, split: str = "train",
                seed: int = 0, max_classes: int = 100) -> Path:
    """Save a PNG with one row per class (its name on the left) of ``per_class`` random images.

    Rows are capped at ``max_classes`` (the first classes in label order). Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if per_class < 1:
        raise DataError("--per-class must be at least 1")
    part = ds.split(split)
    classes = ds.classes[:max_classes]
    gen = torch.Generator().manual_seed(seed)
    c = part.images.shape[1]
    fig, axes = plt.subplots(len(classes), per_class, squeeze=False,
                             figsize=(1.0 * per_class + 1.6, 1.0 * len(classes) + 0.4))
    for row, name in enumerate(classes):
        idx = torch.nonzero(part.labels == row).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)[:per_class]]
        for col in range(per_class):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(idx):
                img = part.images[idx[col]].permute(1, 2, 0).numpy()
                if c == 1:
                    ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=255,
                              interpolation="nearest")
                else:
                    ax.imshow(img, interpolation="nearest")
        axes[row][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{ds.name}: {split}, {per_class} random images per class", fontsize=10)
    fig.tight_layout()
    from ..explain.plots import save_png

    try:
        return save_png(fig, path, dpi=80)
    finally:
        plt.close(fig)


def describe(ds: Dataset) -> dict:
    """:meth:`Dataset.summary` plus per-channel mean/std of the training split ([0, 1] units)
    and the loader's notes (layout, cache, skipped files): what ``cnnlab data info`` shows."""
    from .normalize import channel_stats

    out = ds.summary()
    mean, std = channel_stats(ds.train)
    names = ["grey"] if len(mean) == 1 else ["R", "G", "B"][:len(mean)]
    out["channels"] = [{"channel": n, "mean": round(float(m), 4), "std": round(float(s), 4)}
                       for n, m, s in zip(names, mean.tolist(), std.tolist(), strict=True)]
    out["info"] = ds.info
    return out
