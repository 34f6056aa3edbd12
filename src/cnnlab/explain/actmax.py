"""Activation maximization: optimize the *input* (never the weights) to excite one unit.

Erhan et al. 2009 / Simonyan et al. 2014 do gradient ascent on the pixels; without priors the
result is high-frequency noise that excites the unit just as well. The regularizers of Yosinski
et al. 2015 ("Understanding Neural Networks Through Deep Visualization") and Mordvintsev et al.
2015 (jitter) make it an image:

* **jitter** — each step sees the image shifted by a random few pixels (``torch.roll``), so no
  single-pixel pattern can be relied on;
* **blur** — a Gaussian blur every few steps damps high frequencies;
* **L2 decay** — ``x ← 0.5 + (1 − decay)(x − 0.5)`` after each step: a gradient step on
  ``−decay/2 · ||x − 0.5||²``, pulling unused pixels back to mid-grey (the image is in [0, 1]
  and the model normalizes it, so grey, not black, is the neutral value);
* **clipping** to [0, 1] — the model's input range.

Steps are normalized gradient ascent (``g / mean|g|``): the step size then means "pixels per
step" for any model, whatever the scale of its activations.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import check_channel, evaluating, input_size_of, resolve_layer, run_to

LOGITS = "logits"


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Depthwise Gaussian blur with reflected borders (keeps the image's size)."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-0.5 * (t / sigma) ** 2)
    k1 = k1 / k1.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[2] - 1, x.shape[3] - 1)
    if pad < radius:  # image smaller than the kernel: no meaningful blur
        return x
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _objective(model: nn.Module, layer: str | None, channel: int):
    """A function image → scalar: the class logit, or the channel's mean activation."""
    if layer in (None, LOGITS):
        n = getattr(model, "num_classes", None)
        if n is not None and not 0 <= channel < n:
            raise ConfigError(f"class {channel} is out of range: the model has {n} classes "
                              f"(0–{n - 1})")
        return (lambda x: model(x)[:, channel].sum()), LOGITS
    info = resolve_layer(model, layer)
    check_channel(info, channel)

    def score(x: torch.Tensor) -> torch.Tensor:
        act = run_to(model, x, info.module)
        return act[:, channel].mean()

    return score, info.name


def activation_maximization(model: nn.Module, layer: str | None = None, channel: int = 0, *,
                            steps: int = 128, lr: float = 0.05, decay: float = 0.01,
                            jitter: int | None = None, blur_every: int = 4,
                            blur_sigma: float = 0.5, seed: int = 0,
                            init: torch.Tensor | None = None) -> dict:
    """Maximize ``channel`` of stage ``layer`` (mean over positions) or, with ``layer`` None or
    ``"logits"``, the logit of class ``channel``.

    ``jitter`` defaults to 1/16 of the image side (none under 16 px); ``blur_every=0``,
    ``jitter=0`` and ``decay=0`` switch the regularizers off (plain projected gradient ascent).
    Returns ``image`` (1, C, H, W) in [0, 1], ``history``: the objective on the un-jittered image
    before the first step and after every step (steps + 1 values), and ``layer``/``channel``.
    """
    c, h, w = input_size_of(model)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    jitter = min(h, w) // 16 if jitter is None else jitter  # none below 16 px: 1 px is 1/8 there
    if init is None:
        x = (0.5 + 0.02 * torch.randn(1, c, h, w, generator=gen)).clamp(0, 1).to(device)
    else:
        x = init.detach().float().reshape(1, c, h, w).clone().to(device)
    score, name = _objective(model, layer, channel)
    history: list[float] = []
    with evaluating(model):
        with torch.no_grad():
            history.append(float(score(x)))
        for step in range(steps):
            dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                      if jitter else (0, 0))
            xj = torch.roll(x, (dy, dx), (2, 3)).requires_grad_(True)
            (g,) = torch.autograd.grad(score(xj), xj)
            g = torch.roll(g, (-dy, -dx), (2, 3))
            if step == 0 and not g.any():
                warnings.warn(f"{name} channel {channel} has zero gradient at the start image "
                              "(a unit that does not fire on it): the image will not change; "
                              "try another --seed or channel", stacklevel=2)
            with torch.no_grad():
                x = x + lr * g / g.abs().mean().clamp_min(1e-12)
                if decay:
                    x = 0.5 + (1 - decay) * (x - 0.5)
                if blur_every and (step + 1) % blur_every == 0:
                    x = gaussian_blur(x, blur_sigma)
                x = x.clamp(0, 1)
                history.append(float(score(x)))
    return {"image": x.detach().cpu(), "history": history, "layer": name, "channel": channel}
