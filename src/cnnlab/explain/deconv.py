"""Zeiler & Fergus deconvnet: project a strong activation back to pixel space.

Zeiler & Fergus ("Visualizing and Understanding Convolutional Networks", ECCV 2014) attach a
deconvnet to each layer: *unpool* with the max-pool switches recorded on the way up, *rectify*
the signal with a ReLU, and *filter* with the transposed convolution kernels, down to the pixels.

Implemented with autograd, which makes it generic (any topology: branches, shortcuts, concats):

* the backward of a max-pool sends the signal to the recorded argmax position — that *is*
  unpooling with the switches;
* the backward of a convolution *is* the convolution with the transposed (flipped) filters;
* only the ReLU differs: the deconvnet applies ReLU to the backward signal, ``g · [g > 0]``,
  where backprop uses ``g · [x > 0]``. Springenberg et al. 2014 ("Striving for Simplicity",
  §3.4) spell out this equivalence; :func:`~cnnlab.explain.common.relu_rule` swaps the ReLU
  backward of every ``nn.ReLU`` module for the block.

So the projection is ``autograd.grad(activation, input)`` with the deconv ReLU rule, seeded with
the one strongest activation of the chosen channel (all others zero). Layers other than conv,
pool and ReLU (BN in eval mode, the model's input normalization) pass back their own linear
backward, the transpose of their forward. The switches are also recorded (every
``F.max_pool2d`` call is asked for its indices through a ``TorchFunctionMode``), so callers can
see where the signal may land; functional ReLUs are covered the same way.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .common import as_batch, check_channel, evaluating, relu_rule, resolve_layer, run_to


class _SwitchMode(TorchFunctionMode):
    """Asks every ``F.max_pool2d`` call (``nn.MaxPool2d`` makes one) for its indices too."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is not F.max_pool2d or kwargs.get("return_indices") or len(args) > 6:
            return func(*args, **kwargs)
        out, idx = func(*args, **{**kwargs, "return_indices": True})
        self.found.append({"indices": idx.detach(), "input_shape": tuple(args[0].shape)})
        return out


@contextlib.contextmanager
def record_switches(model: nn.Module) -> Iterator[list[dict]]:
    """Record the switches of every 2-D max-pool run in the block (module or functional): a list
    of ``{"indices" (N, C, h, w), flattened per input plane, "input_shape"}`` in run order."""
    mode = _SwitchMode()
    with mode:
        yield mode.found


def deconvnet(model: nn.Module, x: torch.Tensor, layer: str | None = None,
           channel: int | None = None) -> dict:
    """Project the strongest activation of ``channel`` at stage ``layer`` back to the pixels.

    ``channel`` defaults, per image, to the channel with the largest activation. Returns
    ``projection`` (same shape as ``x``), ``channel``, ``location`` ((row, col) at the stage's
    resolution), ``activation`` (the projected value), ``switches`` and ``layer``.
    """
    x = as_batch(x).requires_grad_(True)
    info = resolve_layer(model, layer)
    check_channel(info, channel)
    with evaluating(model), relu_rule(model, "deconv"), record_switches(model) as switches:
        act = run_to(model, x, info.module)
        act4 = act[:, :, None, None] if act.dim() == 2 else act
        check_channel(info, channel, act4.shape[1])
        a = act4.detach()
        n = a.shape[0]
        chans = (a.flatten(2).amax(2).argmax(1) if channel is None
                 else torch.full((n,), channel, dtype=torch.long))
        planes = a[torch.arange(n), chans].flatten(1)
        flat = planes.argmax(1)
        seed = torch.zeros_like(a)
        rows, cols = flat // a.shape[3], flat % a.shape[3]
        values = planes.gather(1, flat[:, None])[:, 0]
        seed[torch.arange(n), chans, rows, cols] = values
        if (values <= 0).any():
            warnings.warn(f"channel {chans[values <= 0].tolist()} of '{info.name}' does not fire "
                          "on the image: its projection is empty", stacklevel=2)
        (proj,) = torch.autograd.grad(act4, x, seed.view_as(act4))
    return {"projection": proj.detach(), "channel": chans.tolist(),
            "location": list(zip(rows.tolist(), cols.tolist(), strict=True)),
            "activation": values.tolist(), "switches": switches, "layer": info.name}


@torch.no_grad()
def channel_strength(model: nn.Module, images: torch.Tensor, layer: str | None, channel: int,
                     batch_size: int = 256) -> torch.Tensor:
    """The largest activation of ``channel`` at ``layer`` in each image (uint8 or [0, 1])."""
    info = resolve_layer(model, layer)
    check_channel(info, channel)
    out = []
    with evaluating(model):
        for i in range(0, len(images), batch_size):
            act = run_to(model, as_batch(images[i:i + batch_size]), info.module)
            check_channel(info, channel, act.shape[1])
            out.append(act[:, channel].reshape(act.shape[0], -1).amax(1).float().cpu())
    return torch.cat(out)


def top_patches(model: nn.Module, images: torch.Tensor, layer: str | None, channel: int,
                k: int = 9, batch_size: int = 256) -> dict:
    """The ``k`` images whose ``channel`` fires most, cropped to where the projection lands.

    Returns ``indices`` and ``values`` (the activations), ``patches`` and ``projections``
    (k, C, s, s): the image and its deconv projection cropped to the same square, whose side
    ``s`` is the largest extent of the projections' support (|p| > 1 % of its peak) — the part of
    the receptive field that actually contributed.
    """
    strength = channel_strength(model, images, layer, channel, batch_size)
    k = min(k, len(strength))
    values, idx = strength.topk(k)
    x = as_batch(images[idx])
    proj = deconvnet(model, x, layer, channel)["projection"]
    mass = proj.abs().sum(1)
    boxes = []
    for m in mass:
        peak = float(m.max())
        ys, xs = torch.nonzero(m > 0.01 * peak, as_tuple=True) if peak > 0 else (None, None)
        if ys is None or len(ys) == 0:
            boxes.append((0, m.shape[0] - 1, 0, m.shape[1] - 1))
        else:
            boxes.append((int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())))
    h, w = x.shape[2:]
    side = max(max(b[1] - b[0], b[3] - b[2]) + 1 for b in boxes)
    side = min(side, h, w)
    patches, projections = [], []
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        top = min(max(0, (y0 + y1 + 1) // 2 - side // 2), h - side)
        left = min(max(0, (x0 + x1 + 1) // 2 - side // 2), w - side)
        patches.append(x[i, :, top:top + side, left:left + side])
        projections.append(proj[i, :, top:top + side, left:left + side])
    return {"indices": idx.tolist(), "values": values.tolist(),
            "patches": torch.stack(patches), "projections": torch.stack(projections)}


def projection_image(proj: torch.Tensor) -> torch.Tensor:
    """A projection (…, C, H, W) as an image in [0, 1]: grey 0.5 at zero, scaled per image."""
    p = proj.detach().float()
    flat = p.reshape(p.shape[0], -1) if p.dim() == 4 else p.reshape(1, -1)
    peak = flat.abs().amax(1).clamp_min(1e-12)
    shape = (-1, 1, 1, 1) if p.dim() == 4 else (1, 1, 1)
    return (0.5 + 0.5 * p / peak.view(shape)).clamp(0, 1)
