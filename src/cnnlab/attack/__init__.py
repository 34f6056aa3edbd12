"""Adversarial examples in pixel space: FGSM, PGD, universal perturbations, patches, EOT,
robustness curves, galleries, and the hooks for adversarial training.

Every function takes a model that keeps the cnnlab contract (float input in [0, 1],
normalization inside) and plain tensors; nothing here knows the architecture.

    import cnnlab
    from cnnlab.attack import pgd, attack_metrics, predict_probs
    model = cnnlab.load_model("runs/<run>")
    x_adv = pgd(model, x, y, eps=0.3, steps=40)
    report = attack_metrics(x, x_adv, y, predict_probs(model, x), predict_probs(model, x_adv))

``run_attack`` is the whole ``cnnlab attack`` command as one call.
"""

from .eot import TransformDist, compare_under_transforms, eot_pgd
from .gradient import fgsm, pgd, project
from .metrics import attack_metrics, predict_probs, success_mask
from .patch import apply_patch, patch_curve, placement_theta, train_patch
from .robustness import plot_curve, robustness_curve
from .run import METHODS, run_attack
from .universal import deepfool, fooling_rate, universal_perturbation

__all__ = [
    "METHODS", "TransformDist", "apply_patch", "attack_metrics", "compare_under_transforms",
    "deepfool", "eot_pgd", "fgsm", "fooling_rate", "patch_curve", "pgd", "placement_theta",
    "plot_curve", "predict_probs", "project", "robustness_curve", "run_attack", "success_mask",
    "train_patch", "universal_perturbation",
]
