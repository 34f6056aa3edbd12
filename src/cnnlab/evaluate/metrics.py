"""Predictions and classification metrics computed from logits (no sklearn needed here)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Split


def autocast(precision: str, device: str = "cpu"):
    """bf16 autocast for convs/matmuls (BN and the loss stay fp32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


TTA_KINDS = ("none", "flip", "flip-translate")


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits of ``x`` averaged over test-time views.

    ``flip``: the image and its mirror, ½ each. ``flip-translate``: ½ that pair, ½ the mean of
    the pair shifted by one pixel up-left and by one down-right (reflect padding) — six views,
    weighted as the training augmentation (flip, translate) would produce them (airbench's
    level-2 TTA). Logits, not probabilities, are averaged.
    """
    if tta not in TTA_KINDS:
        raise ValueError(f"unknown tta '{tta}'; choose from {', '.join(TTA_KINDS)}")

    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(v).float() + 0.5 * model(v.flip(3)).float()

    if tta == "none":
        return model(x).float()
    logits = mirror(x)
    if tta == "flip":
        return logits
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, :h, :w], padded[:, :, 2:h + 2, 2:w + 2]]
    if x.is_contiguous(memory_format=torch.channels_last):
        shifted = [v.contiguous(memory_format=torch.channels_last) for v in shifted]
    return 0.5 * logits + 0.25 * (mirror(shifted[0]) + mirror(shifted[1]))


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, *, batch_size: int = 500,
                   precision: str = "fp32", channels_last: bool = False,
                   tta: str = "none") -> torch.Tensor:
    """Float32 logits for every image of ``split``, in order, with the model in eval mode
    (``tta``: averaged over test-time views, see :func:`tta_logits`)."""
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(split), batch_size):
        x = split.images[i:i + batch_size].float().div_(255.0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision):
            out.append(tta_logits(model, x, tta))
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, 0)


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
