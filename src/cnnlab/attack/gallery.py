"""The gallery PNG: original, amplified perturbation, adversarial image, labels, confidences."""

from __future__ import annotations

from pathlib import Path

import torch

from .robustness import save_figure


def _show(ax, img: torch.Tensor) -> None:
    img = img.detach().float().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def amplify(delta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """δ mapped to [0, 1] for display: 0.5 + δ / (2·max|δ|); returns the gain used."""
    peak = float(delta.abs().max())
    gain = 0.5 / peak if peak > 0 else 1.0
    return (0.5 + gain * delta).clamp(0, 1), 2 * gain


def gallery_indices(y: torch.Tensor, clean_pred: torch.Tensor, adv_pred: torch.Tensor,
                    target: int | None = None, n: int = 8) -> torch.Tensor:
    """Which images a gallery shows: the attack's successes first (then the other correctly
    classified, eligible images, then the rest), taking classes in turn so a class-sorted test
    split does not fill the gallery with one class; for a targeted attack never the target's
    own images while others exist."""
    eligible = clean_pred == y
    if target is not None:
        eligible &= y != target
    success = eligible & ((adv_pred == target) if target is not None else (adv_pred != y))
    ranked: list[int] = []
    for group in (success, eligible & ~success, ~eligible):
        by_class: dict[int, list[int]] = {}
        for i in torch.nonzero(group).flatten().tolist():
            by_class.setdefault(int(y[i]), []).append(i)
        queues = [by_class[c] for c in sorted(by_class)]
        while any(queues):
            for q in queues:
                if q:
                    ranked.append(q.pop(0))
    return torch.tensor(ranked[:n], dtype=torch.long)


def save_gallery(path: str | Path, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                 clean_probs: torch.Tensor, adv_probs: torch.Tensor, classes: list[str], *,
                 n: int = 8, title: str = "") -> Path:
    """Three rows for the first ``n`` images: original (true label, prediction and its
    confidence), perturbation (amplified per image, gain printed), adversarial (prediction and
    confidence)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, min(n, len(x)))
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n + 0.4, 5.8), dpi=110, squeeze=False)
    cp, cc = clean_probs.max(1)
    ap, ac = adv_probs.max(1)
    name = [str(c)[:10] for c in classes]
    for i in range(n):
        delta = x_adv[i].double() - x[i].double()
        shown, gain = amplify(delta.float())
        _show(axes[0, i], x[i])
        _show(axes[1, i], shown)
        _show(axes[2, i], x_adv[i])
        axes[0, i].set_title(f"true {name[int(y[i])]}\npred {name[int(cc[i])]} {cp[i]:.2f}",
                             fontsize=7)
        axes[1, i].set_title(f"δ ×{gain:.3g}\nL∞ {float(delta.abs().max()):.3f} "
                             f"L2 {float(delta.norm()):.2f}", fontsize=7)
        color = "red" if int(ac[i]) != int(y[i]) else "black"
        axes[2, i].set_title(f"adv {name[int(ac[i])]} {ap[i]:.2f}", fontsize=7, color=color)
    for row, name in enumerate(("original", "perturbation", "adversarial")):
        axes[row, 0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    plt.close(fig)
    return path
