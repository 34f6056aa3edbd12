"""Transfer learning from a trained backbone: layer features → linear classifiers,
fine-tuning, the same architecture from scratch, and few-shot comparisons of the three.
Backbones are cnnlab run directories or torchvision/timm ImageNet models (``tv:NAME``,
``timm:NAME[@WEIGHTS]``, the optional extra 'hub')."""

from .compare import MODES, load_backbone, transfer
from .data import load_target, per_class_subset, select_classes
from .features import HEAD_INPUT, extract_features, layer_names, pool_normalize
from .finetune import finetune
from .hub import HubBackbone, load_hub_backbone
from .linear import fit_linear

__all__ = ["HEAD_INPUT", "MODES", "HubBackbone", "extract_features", "finetune", "fit_linear",
           "layer_names", "load_backbone", "load_hub_backbone", "load_target",
           "per_class_subset", "pool_normalize", "select_classes", "transfer"]
