"""Which pixels mattered for a class: saliency, guided backprop, Grad-CAM and occlusion.

* Saliency — Simonyan, Vedaldi & Zisserman 2014: the gradient of the class logit with respect to
  the input pixels; the map is its largest absolute value over colour channels.
* Guided backpropagation — Springenberg, Dosovitskiy, Brox & Riedmiller 2014: the same gradient,
  except that every ReLU passes back only positive signal where its input was positive.
* Grad-CAM — Selvaraju et al. 2017: a stage's activations weighted by the spatial mean of the
  class logit's gradient there, summed over channels, ReLU, upsampled to the input size.
* Occlusion — Zeiler & Fergus 2014: slide a grey patch over the image and record the probability
  of the class at each position; a low probability means the patch hid the evidence.

Inputs are float batches in [0, 1] (the contract); the model normalizes them itself.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .common import as_batch, capture, evaluating, relu_rule, resolve_layer, targets_for


def _input_gradient(model: nn.Module, x: torch.Tensor, target, rule: str) -> dict:
    x = as_batch(x).requires_grad_(True)
    # Saliency is plain autograd; the other rules swap the ReLUs' backward.
    rules = relu_rule(model, rule) if rule != "backprop" else contextlib.nullcontext()
    with evaluating(model), rules:
        logits = model(x)
        t = targets_for(logits.detach(), target)
        score = logits.gather(1, t[:, None]).sum()
        (grad,) = torch.autograd.grad(score, x)
    probs = logits.detach().float().softmax(1)
    return {"grad": grad, "map": grad.abs().amax(1), "target": t,
            "probability": probs.gather(1, t[:, None]).squeeze(1), "logits": logits.detach()}


def saliency(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None) -> dict:
    """Gradient of the target logit w.r.t. the input (``grad``, like ``x``) and its map
    (``map``: max |grad| over channels, (N, H, W)). ``target`` defaults to the predicted class."""
    return _input_gradient(model, x, target, "backprop")


def guided_backprop(model: nn.Module, x: torch.Tensor,
                    target: int | torch.Tensor | None = None) -> dict:
    """:func:`saliency` with the guided ReLU rule (needs ``nn.ReLU`` modules, not ``F.relu``)."""
    return _input_gradient(model, x, target, "guided")


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str | None = None,
             target: int | torch.Tensor | None = None) -> dict:
    """Grad-CAM at the ``feature_layers()`` stage ``layer`` (default: the last one).

    Returns ``cam`` (N, H, W) upsampled to the input and scaled to [0, 1] per image,
    ``cam_raw`` (N, h, w) at the stage's resolution (unscaled), ``weights`` (N, channels),
    ``target`` and ``layer``.
    """
    x = as_batch(x)
    info = resolve_layer(model, layer)
    with evaluating(model), capture(model, info.module) as store:
        logits = model(x)
        t = targets_for(logits.detach(), target)
        acts = store["act"]
        (grads,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), acts)
    acts, grads = acts.detach().float(), grads.float()
    if acts.dim() != 4:
        raise ConfigError(f"Grad-CAM needs a spatial stage (N, C, H, W); '{info.name}' gives "
                          f"{tuple(acts.shape)}")
    weights = grads.mean(dim=(2, 3))
    cam_raw = F.relu((weights[:, :, None, None] * acts).sum(1))
    cam = F.interpolate(cam_raw[:, None], size=x.shape[2:], mode="bilinear",
                        align_corners=False)[:, 0].clamp_min(0)
    peak = cam.flatten(1).amax(1).clamp_min(1e-12)
    return {"cam": cam / peak[:, None, None], "cam_raw": cam_raw, "weights": weights,
            "target": t, "layer": info.name}


def _positions(size: int, patch: int, stride: int) -> list[int]:
    pos = list(range(0, size - patch + 1, stride))
    if pos[-1] != size - patch:  # cover the last rows/columns too
        pos.append(size - patch)
    return pos


@torch.no_grad()
def occlusion(model: nn.Module, x: torch.Tensor, target: int | None = None, *,
              patch: int | None = None, stride: int | None = None, fill: float = 0.5,
              batch_size: int = 128) -> dict:
    """Slide a ``patch``×``patch`` square of grey ``fill`` over one image (stride ``stride``).

    Returns ``prob_map`` (rows, cols): the target's probability with the patch at each position;
    ``drop`` (H, W): per pixel, the mean probability drop (base − occluded, clamped at 0) over
    the patches that cover it; ``base_probability``; ``min_location`` (the patch, in pixels, where
    the probability is lowest); ``target``, ``patch``, ``stride``. Defaults: a patch a quarter of
    the image side, stride half the patch.
    """
    x = as_batch(x)
    if x.shape[0] != 1:
        raise ValueError("occlusion takes one image")
    _, _, h, w = x.shape
    patch = patch or max(1, round(min(h, w) / 4))
    stride = stride or max(1, patch // 2)
    if not 1 <= patch <= min(h, w) or stride < 1:
        raise ConfigError(f"occlusion --patch must be in 1..{min(h, w)} (the image is {h}×{w}) "
                          f"and --stride ≥ 1; got patch {patch}, stride {stride}")
    rows, cols = _positions(h, patch, stride), _positions(w, patch, stride)
    with evaluating(model):
        base_probs = model(x).float().softmax(1)[0]
        t = int(base_probs.argmax()) if target is None else int(targets_for(base_probs[None],
                                                                             target)[0])
        boxes = [(r, c) for r in rows for c in cols]
        probs = []
        for i in range(0, len(boxes), batch_size):
            chunk = boxes[i:i + batch_size]
            xs = x.repeat(len(chunk), 1, 1, 1)
            for k, (r, c) in enumerate(chunk):
                xs[k, :, r:r + patch, c:c + patch] = fill
            probs.append(model(xs).float().softmax(1)[:, t])
    prob = torch.cat(probs)
    base = float(base_probs[t])
    drop_sum = torch.zeros(h, w)
    count = torch.zeros(h, w)
    for (r, c), p in zip(boxes, prob.tolist(), strict=True):
        drop_sum[r:r + patch, c:c + patch] += max(base - p, 0.0)
        count[r:r + patch, c:c + patch] += 1
    k = int(prob.argmin())
    r, c = boxes[k]
    return {"prob_map": prob.view(len(rows), len(cols)), "drop": drop_sum / count.clamp_min(1),
            "base_probability": base, "target": t, "patch": patch, "stride": stride,
            "min_location": {"row": r, "col": c, "height": patch, "width": patch,
                             "center": [r + (patch - 1) / 2, c + (patch - 1) / 2],
                             "probability": float(prob[k])}}
