"""Predictions and classification metrics computed from logits (no sklearn needed here)."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Split


def autocast(precision: str, device: str = "cpu"):
    """bf16 autocast for convs/matmuls (BN and the loss stay fp32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


TTA_KINDS = ("none", "flip", "flip-translate", "translate")


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none",
               first: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of ``x`` averaged over test-time views.

    ``flip``: the image and its mirror, ½ each. ``flip-translate``: ½ that pair, ½ the mean of
    the pair shifted by one pixel up-left and by one down-right (reflect padding) — six views,
    weighted as the training augmentation (flip, translate) would produce them (airbench's
    level-2 TTA). ``translate``, for images that must not be mirrored (digits, text): ½ the
    plain view, ⅛ each of the four views shifted by one pixel left, right, up and down (zero
    fill, as MNIST's background and the ``translate`` augmentation's). Logits, not
    probabilities, are averaged. ``first``: the plain view's logits when the caller already
    has them (that view is then not run again).
    """
    if tta not in TTA_KINDS:
        raise ValueError(f"unknown tta '{tta}'; choose from {', '.join(TTA_KINDS)}")

    def mirror(v: torch.Tensor, plain: torch.Tensor | None = None) -> torch.Tensor:
        plain = model(v).float() if plain is None else plain
        return 0.5 * plain + 0.5 * model(v.flip(3)).float()

    if tta == "none":
        return model(x).float() if first is None else first
    if tta == "translate":
        plain = model(x).float() if first is None else first
        views = shifted_views(x, [(0, -1), (0, 1), (-1, 0), (1, 0)], "constant")
        return 0.5 * plain + 0.125 * sum(model(v).float() for v in views)
    logits = mirror(x, first)
    if tta == "flip":
        return logits
    up_left, down_right = shifted_views(x, [(-1, -1), (1, 1)], "reflect")
    return 0.5 * logits + 0.25 * (mirror(up_left) + mirror(down_right))


def shifted_views(x: torch.Tensor, offsets: list[tuple[int, int]],
                  mode: str) -> list[torch.Tensor]:
    """``x`` (N×C×H×W) read at each ``(dy, dx)`` offset of at most one pixel, the border
    filled by ``F.pad``'s ``mode`` ("constant": zeros, or "reflect"); in ``x``'s memory
    format, so a channels-last net gets channels-last views."""
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode=mode)
    views = [padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets]
    if x.is_contiguous(memory_format=torch.channels_last):
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    return views


def least_confident(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` rows whose top two softmax probabilities are closest: the images
    whose prediction extra test-time views can still change."""
    top2 = logits.float().softmax(1).topk(min(2, logits.shape[1]), dim=1).values
    margin = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
    return margin.argsort()[:k]


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, *, batch_size: int = 500,
                   precision: str = "fp32", channels_last: bool = False,
                   tta: str = "none", tta_fraction: float = 1.0) -> torch.Tensor:
    """Float32 logits for every image of ``split``, in order, with the model in eval mode
    (``tta``: averaged over test-time views, see :func:`tta_logits`).

    ``tta_fraction`` < 1 spends the extra views only where they can matter: every image is
    run once, and only that share of them, the least confident (:func:`least_confident`),
    gets all the views. The rest keep their one-view logits. On the CIFAR speed-run net,
    six views for the least confident quarter of the test set scored 0.00–0.03 points below
    six views everywhere (3 seeds), at 2.25 views' cost instead of 6.
    """
    if not 0 < tta_fraction <= 1:
        raise ValueError(f"tta_fraction must be in (0, 1], got {tta_fraction}")
    was = model.training
    model.eval()

    def run(images: torch.Tensor, kind: str, first: torch.Tensor | None = None) -> torch.Tensor:
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].float().div_(255.0)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(precision):
                out.append(tta_logits(model, x, kind,
                                      None if first is None else first[i:i + batch_size]))
        return torch.cat(out) if out else torch.zeros(0, 0)

    if tta == "none" or tta_fraction >= 1 or len(split) == 0:
        logits = run(split.images, tta)
    else:
        logits = run(split.images, "none")
        idx = least_confident(logits, math.ceil(tta_fraction * len(logits)))
        logits[idx] = run(split.images[idx], tta, first=logits[idx])
    model.train(was)
    return logits


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[true, predicted]`` counts."""
    idx = labels * num_classes + pred
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_report(cm: torch.Tensor, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12),
                     torch.zeros_like(tp))
    return [{"class": c, "precision": round(precision[i].item(), 4),
             "recall": round(recall[i].item(), 4), "f1": round(f1[i].item(), 4),
             "support": int(support[i].item())} for i, c in enumerate(classes)]


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor,
                           classes: list[str]) -> dict:
    """Everything ``cnnlab evaluate`` reports, as plain Python types."""
    pred = logits.argmax(1)
    cm = confusion_matrix(pred, labels, len(classes))
    loss = nn.functional.cross_entropy(logits, labels).item() if len(labels) else float("nan")
    per_class = per_class_report(cm, classes)
    return {
        "accuracy": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "loss": loss,
        "n": int(len(labels)),
        "macro_f1": sum(r["f1"] for r in per_class) / max(1, len(per_class)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": classes,
    }
