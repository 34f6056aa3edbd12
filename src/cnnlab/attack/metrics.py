"""What an attack did, in numbers: accuracy, success, perturbation size, confidence.

Definitions (every attack in this package reports them the same way):

* ``clean_accuracy`` — fraction of the N images whose clean prediction is the true label.
* ``adversarial_accuracy`` — fraction of the N images whose adversarial prediction is the true
  label (every image is attacked, including the ones already misclassified).
* ``success_rate`` — among the *eligible* images, the fraction the attack succeeded on.
  Untargeted: eligible = correctly classified when clean; success = the adversarial prediction
  is no longer the true label. Targeted (class t): eligible = correctly classified when clean
  and true label ≠ t; success = the adversarial prediction is t. ``None`` when nothing is
  eligible. (Counting only clean-correct images keeps the model's own errors out of the
  attack's score.)
* ``mean_linf``/``max_linf``/``mean_l2``/``max_l2`` — ‖x_adv − x‖ per image over all N images.
* ``mean_confidence_new_label`` — mean softmax probability of the adversarial prediction over the
  successful images (how sure the model is of the wrong/target label); ``None`` without
  successes.
"""

from __future__ import annotations

import torch
from torch import nn

from .gradient import per_image_norm


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (N, classes), float32, in chunks."""
    if len(x) == 0:
        return torch.zeros(0, 0)
    return torch.cat([model(x[i:i + batch_size]).float().softmax(1)
                      for i in range(0, len(x), batch_size)])


def success_mask(y: torch.Tensor, clean_pred: torch.Tensor, adv_pred: torch.Tensor,
                 target: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(eligible, success) boolean masks per image, as defined in the module docstring."""
    eligible = clean_pred == y
    if target is None:
        return eligible, eligible & (adv_pred != y)
    eligible = eligible & (y != target)
    return eligible, eligible & (adv_pred == target)


def _mean(values: torch.Tensor) -> float | None:
    return float(values.double().mean()) if values.numel() else None


def attack_metrics(x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                   clean_probs: torch.Tensor, adv_probs: torch.Tensor,
                   target: int | None = None) -> dict:
    """The standard report of one attack (plain Python numbers, JSON-ready)."""
    clean_pred, adv_pred = clean_probs.argmax(1), adv_probs.argmax(1)
    eligible, success = success_mask(y, clean_pred, adv_pred, target)
    delta = x_adv.double() - x.double()  # exact difference of the stored float32 values
    linf, l2 = per_image_norm(delta, "linf"), per_image_norm(delta, "l2")
    conf = adv_probs.gather(1, adv_pred[:, None]).squeeze(1)
    n_eligible = int(eligible.sum())
    return {
        "n": int(len(y)),
        "clean_accuracy": float((clean_pred == y).double().mean()) if len(y) else None,
        "adversarial_accuracy": float((adv_pred == y).double().mean()) if len(y) else None,
        "success_rate": int(success.sum()) / n_eligible if n_eligible else None,
        "n_eligible": n_eligible,
        "n_success": int(success.sum()),
        "mean_linf": _mean(linf), "max_linf": float(linf.max()) if len(y) else None,
        "mean_l2": _mean(l2), "max_l2": float(l2.max()) if len(y) else None,
        "mean_confidence_new_label": _mean(conf[success]),
        "target": target,
    }
