"""See inside a trained network: filters, feature maps, deconvnet projections, activation
maximization, saliency / guided backprop / Grad-CAM / occlusion, and layer separability.

Every function takes a model that keeps the cnnlab contract (GUIDE.md §2: input in [0, 1],
``feature_layers()``) and tensors in [0, 1], and returns tensors and plain dicts; ``plots`` turns
them into PNGs and ``cnnlab explain`` wires both to a run directory. No function branches on the
architecture: layers are found by name through ``feature_layers()``, activations through forward
hooks, and the ReLU rules through the ``nn.ReLU`` modules.
"""

from .actmax import activation_maximization
from .attribution import grad_cam, guided_backprop, occlusion, saliency
from .common import capture, relu_rule, resolve_layer, run_to
from .deconv import deconvnet, record_switches, top_patches
from .filters import conv_order, first_layer_filters, layer_filters
from .maps import feature_maps
from .separability import fisher_ratio, linear_probe, separability, stage_features

__all__ = [
    "activation_maximization", "capture", "conv_order", "deconvnet", "feature_maps",
    "first_layer_filters", "fisher_ratio", "grad_cam", "guided_backprop", "layer_filters",
    "linear_probe", "occlusion", "record_switches", "relu_rule", "resolve_layer", "run_to",
    "saliency", "separability", "stage_features", "top_patches",
]
