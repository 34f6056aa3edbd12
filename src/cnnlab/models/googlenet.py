"""GoogLeNet (Inception v1) — C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov,
D. Erhan, V. Vanhoucke, A. Rabinovich, "Going Deeper with Convolutions", CVPR 2015 (arXiv 2014).

Exactly the paper's Table 1: real 5×5 convolutions in the inception modules (torchvision uses
3×3 there), no batch normalization (``bn=True`` adds it), local response normalization after
the first max-pool and after conv2 (size 5, α=1e-4, β=0.75 as in the BVLC Caffe reference
model), 3×3/2 max-pools rounding up (Caffe's ``ceil_mode``), 7×7 average pool, dropout 0.4 and a
linear classifier: 6,998,552 parameters at 1000 classes without the auxiliary heads (the
paper's table sums to ~6.8 M weights; it leaves out biases).

Two auxiliary classifiers on the outputs of 4a and 4d (§5: 5×5/3 average pool, 1×1 conv 128,
FC 1024, dropout 0.7, linear) run only in training mode: their logits go to ``aux_outputs`` and
the training loop adds ``aux_weight`` (0.3) × their loss. They live in ``aux_heads`` so that
parameter counts of the inference network can leave them out.

Inputs smaller than 224 work down to 32×32 (CIFAR-size; the final average pool is adaptive, so
it equals the paper's 7×7 pool at 224): where the 4a map is smaller than the aux heads' 5×5
window (inputs below about 70×70), the aux heads average-pool to 1×1 instead. Init: as the Caffe
reference model (the paper trained on DistBelief and gives none): "xavier" (uniform with variance
1/fan_in) weights, biases 0.2, classifier biases 0.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .base import CnnlabModel, FeatureInfo
from .registry import register_model


class BasicConv2d(nn.Sequential):
    """conv (+ BN) + ReLU — every convolution in GoogLeNet is followed by a ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0,
                 bn: bool = False) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, pad, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Inception(nn.Module):
    """The inception module (Fig. 2b): 1×1 | 1×1→3×3 | 1×1→5×5 | 3×3 max-pool→1×1, concatenated.

    Arguments are the columns of Table 1; the output has ``c1 + c3 + c5 + pool_proj`` channels.
    """

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int,
                 *, bn: bool = False) -> None:
        super().__init__()
        self.out_channels = c1 + c3 + c5 + pool_proj
        self.branch1 = BasicConv2d(cin, c1, 1, bn=bn)
        self.branch3 = nn.Sequential(BasicConv2d(cin, c3r, 1, bn=bn),
                                     BasicConv2d(c3r, c3, 3, pad=1, bn=bn))
        self.branch5 = nn.Sequential(BasicConv2d(cin, c5r, 1, bn=bn),
                                     BasicConv2d(c5r, c5, 5, pad=2, bn=bn))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1),
                                         BasicConv2d(cin, pool_proj, 1, bn=bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x),
                          self.branch_pool(x)], 1)


# Table 1: name → (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj); "M" = max-pool 3×3/2
INCEPTION_CFG: list = [
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "M",
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    "M",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
]
AUX_TAPS = ("inception4a", "inception4d")  # where the two auxiliary classifiers attach


class AuxHead(nn.Module):
    """§5: average pool 5×5/3, 1×1 conv 128 + ReLU, FC 1024 + ReLU, dropout 0.7, linear."""

    def __init__(self, cin: int, num_classes: int, map_size: int, bn: bool = False) -> None:
        super().__init__()
        if map_size >= 5:
            self.pool: nn.Module = nn.AvgPool2d(5, 3)
            side = (map_size - 5) // 3 + 1
        else:  # small inputs (CIFAR-size): the 5×5 window does not fit
            self.pool, side = nn.AdaptiveAvgPool2d(1), 1
        self.conv = BasicConv2d(cin, 128, 1, bn=bn)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(128 * side * side, 1024),
                                nn.ReLU(inplace=True), nn.Dropout(0.7))
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.conv(self.pool(x))))


def _pool_out(size: int) -> int:
    """Side of a 3×3/2 ceil-mode max-pool's output."""
    return math.ceil((size - 3) / 2) + 1


class GoogLeNet(CnnlabModel):
    """Stem, nine inception modules, average pool, dropout, linear; aux heads on 4a and 4d."""

    aux_weight = 0.3

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size=(224, 224),
                 norm: str = "standardize", aux_logits: bool = True, bn: bool = False,
                 lrn: bool = True, dropout: float = 0.4) -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        if min(self.input_size) < 32:
            raise ValueError(f"GoogLeNet needs inputs of at least 32×32, got {self.input_size}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = BasicConv2d(in_chans, 64, 7, 2, 3, bn=bn)
        layers["pool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        if lrn:
            layers["lrn1"] = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        layers["conv2_reduce"] = BasicConv2d(64, 64, 1, bn=bn)
        layers["conv2"] = BasicConv2d(64, 192, 3, 1, 1, bn=bn)
        if lrn:
            layers["lrn2"] = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        layers["pool2"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        self._feature_info = [FeatureInfo("conv1", "features.conv1", 64, 2),
                              FeatureInfo("conv2", "features.conv2", 192, 4)]
        side = _pool_out(_pool_out(math.ceil(min(self.input_size) / 2)))  # at inception3a
        cin, stride, aux_sides, name = 192, 8, [], ""
        for item in INCEPTION_CFG:
            if item == "M":  # a stage ends before each pool (and at the end)
                self._feature_info.append(
                    FeatureInfo(f"inception{name[0]}", f"features.inception{name}", cin, stride))
                layers[f"pool{len(self._feature_info)}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
                stride, side = stride * 2, _pool_out(side)
                continue
            name, cols = item
            layers[f"inception{name}"] = module = Inception(cin, *cols, bn=bn)
            cin = module.out_channels
            if f"inception{name}" in AUX_TAPS:
                aux_sides.append((cin, side))
        self._feature_info.append(
            FeatureInfo(f"inception{name[0]}", f"features.inception{name}", cin, stride))
        self.features = nn.Sequential(layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))
        self.aux_heads = (nn.ModuleList([AuxHead(c, num_classes, s, bn) for c, s in aux_sides])
                          if aux_logits else None)
        self._caffe_init()

    def _caffe_init(self) -> None:
        classifiers = {id(self.classifier())}
        if self.aux_heads is not None:
            classifiers |= {id(h.classifier) for h in self.aux_heads}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = math.sqrt(3.0 / fan_in)  # Caffe's "xavier" filler: Var = 1 / fan_in
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0 if id(m) in classifiers else 0.2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.aux_outputs = []
        x = self.norm(x)
        for name, module in self.features.named_children():
            x = module(x)
            if self.training and self.aux_heads is not None and name in AUX_TAPS:
                self.aux_outputs.append(self.aux_heads[AUX_TAPS.index(name)](x))
        return x

    def reset_classifier(self, num_classes: int) -> None:
        """New main classifier — and new aux classifiers, so that their loss still matches."""
        super().reset_classifier(num_classes)
        if self.aux_heads is not None:
            for h in self.aux_heads:
                h.classifier = nn.Linear(h.classifier.in_features, num_classes)


@register_model("googlenet", family="googlenet", paper="Szegedy et al., arXiv:1409.4842",
                year=2014, input_size=(3, 224, 224), num_classes=1000, aliases=("inception-v1",))
def googlenet(*, num_classes: int = 1000, in_chans: int = 3, input_size=(224, 224),
              norm: str = "standardize", aux_logits: bool = True, bn: bool = False,
              lrn: bool = True, dropout: float = 0.4) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                     norm=norm, aux_logits=aux_logits, bn=bn, lrn=lrn, dropout=dropout)
