"""Robustness curves: the same attack at several budgets, as numbers and as a plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .gradient import fgsm, in_batches, pgd
from .metrics import attack_metrics, predict_probs

GRADIENT_METHODS = ("fgsm", "pgd")


def gradient_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                    method: str = "pgd", norm: str = "linf", steps: int = 40,
                    step_size: float | None = None, target: int | None = None,
                    batch_size: int = 250, seed: int = 0, restarts: int = 1) -> torch.Tensor:
    """FGSM or PGD over ``x`` in chunks; PGD's random starts come from ``seed``.

    ``restarts`` > 1 runs PGD again from new random starts and keeps, per image, the first
    example that succeeds (the worst case over restarts, as robustness is reported by Madry et
    al.): a defence that only looks robust because one start lands in a flat region is caught.
    """
    if method == "fgsm":
        return in_batches(lambda xb, yb: fgsm(model, xb, yb, eps, norm=norm, target=target),
                          x, y, batch_size)
    gen = torch.Generator().manual_seed(seed)

    def attack_once() -> torch.Tensor:
        return in_batches(lambda xb, yb: pgd(model, xb, yb, eps, norm=norm, steps=steps,
                                             step_size=step_size, target=target, generator=gen),
                          x, y, batch_size)

    def succeeded(x_adv: torch.Tensor) -> torch.Tensor:
        pred = predict_probs(model, x_adv, batch_size).argmax(1)
        return pred == target if target is not None else pred != y

    best = attack_once()
    done = succeeded(best) if restarts > 1 else None
    for _ in range(restarts - 1):
        if bool(done.all()):
            break
        again = attack_once()
        take = ~done & succeeded(again)
        best[take] = again[take]
        done |= take  # the images replaced now succeed: no need to predict on best again
    return best


def robustness_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     eps_values: Sequence[float], *, method: str = "fgsm", norm: str = "linf",
                     steps: int = 40, step_size: float | None = None,
                     target: int | None = None, batch_size: int = 250,
                     seed: int = 0, restarts: int = 1
                     ) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """:func:`attack_metrics` at every ε (in the order given); also returns the adversarial
    images and probabilities of the last ε (for the gallery)."""
    clean_probs = predict_probs(model, x, batch_size)
    points: list[dict] = []
    x_adv = adv_probs = x
    for eps in eps_values:
        x_adv = gradient_attack(model, x, y, eps, method=method, norm=norm, steps=steps,
                                step_size=step_size, target=target, batch_size=batch_size,
                                seed=seed, restarts=restarts)
        adv_probs = predict_probs(model, x_adv, batch_size)
        points.append({"eps": eps, **attack_metrics(x, x_adv, y, clean_probs, adv_probs, target)})
    return points, x_adv, adv_probs


def plot_curve(points: list[dict], path: str | Path, *, x_key: str = "eps",
               y_keys: Sequence[str] = ("adversarial_accuracy", "success_rate"),
               xlabel: str = "ε", title: str = "") -> Path:
    """A line plot of ``y_keys`` against ``x_key`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    xs = [p[x_key] for p in points]
    for key in y_keys:
        ys = [p.get(key) for p in points]
        if any(v is not None for v in ys):
            ax.plot(xs, [float("nan") if v is None else v for v in ys], marker="o",
                    label=key.replace("_", " "))
    ax.set_xlabel(xlabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    plt.close(fig)
    return path


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically (one writer for every PNG: plots.save_png)."""
    from ..explain.plots import save_png

    save_png(fig, path, dpi=fig.dpi)
