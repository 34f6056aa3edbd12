"""Transfer learning from a trained backbone: layer features → linear classifiers,
fine-tuning, the same architecture from scratch, and few-shot comparisons of the three."""

from .compare import MODES, load_backbone, transfer
from .data import load_target, per_class_subset, select_classes
from .features import HEAD_INPUT, extract_features, layer_names, pool_normalize
from .finetune import finetune
from .linear import fit_linear

__all__ = ["HEAD_INPUT", "MODES", "extract_features", "finetune", "fit_linear", "layer_names",
           "load_backbone", "load_target", "per_class_subset", "pool_normalize",
           "select_classes", "transfer"]
