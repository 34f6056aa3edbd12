"""DenseNet — G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017.

Every layer of a dense block sees the concatenation of all earlier feature maps of the block and
adds ``growth_rate`` (k) new ones. All models here are DenseNet-BC: each layer is BN-ReLU-conv1×1
(4k, the bottleneck) then BN-ReLU-conv3×3 (k), and transitions (BN-ReLU-conv1×1-avg-pool 2×2)
halve the channels (compression θ = 0.5).

* ImageNet (Table 1): ``densenet121/169/201`` (k = 32, blocks 6-12-24-16 / 6-12-32-32 /
  6-12-48-32, stem 7×7/2 conv 2k + 3×3/2 max-pool) and ``densenet161`` (k = 48, 6-12-36-24).
  densenet121 has exactly 7,978,856 parameters at 1000 classes.
* CIFAR (§3): ``densenet-bc-100-12`` — three blocks of (100 − 4) / 6 = 16 layers, k = 12, a 3×3
  stem conv with 2k filters: 0.8 M parameters.

A final BN-ReLU closes the features (so ``forward_features`` is the activated map that global
pooling sees). He init, as the authors' Torch code (``dropout`` after each conv: the paper's 0.2
for un-augmented data; default 0).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model

# Table 1: name → (growth rate k, layers per dense block)
DENSENET_CFGS = {
    121: (32, [6, 12, 24, 16]),
    169: (32, [6, 12, 32, 32]),
    201: (32, [6, 12, 48, 32]),
    161: (48, [6, 12, 36, 24]),
}


def bn_relu_conv(cin: int, cout: int, k: int, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                               nn.Conv2d(cin, cout, k, 1, k // 2, bias=False)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return layers


class DenseLayer(nn.Sequential):
    """BN-ReLU-conv1×1 (bn_size·k), BN-ReLU-conv3×3 (k): the "-B" bottleneck layer."""

    def __init__(self, cin: int, growth_rate: int, bn_size: int = 4, dropout: float = 0.0) -> None:
        mid = bn_size * growth_rate
        super().__init__(*bn_relu_conv(cin, mid, 1, dropout),
                         *bn_relu_conv(mid, growth_rate, 3, dropout))


class DenseBlock(nn.ModuleList):
    """``n`` dense layers; layer i sees the concatenation of the input and layers 1..i−1."""

    def __init__(self, n: int, cin: int, growth_rate: int, bn_size: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__(DenseLayer(cin + i * growth_rate, growth_rate, bn_size, dropout)
                         for i in range(n))
        self.out_channels = cin + n * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1×1 to ⌊θ·c⌋ channels, 2×2 average pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*bn_relu_conv(cin, cout, 1, 0.0), nn.AvgPool2d(2, 2))


class DenseNet(CnnlabModel):
    """Stem, dense blocks (``features.block1`` …) with transitions between, BN-ReLU, GAP, FC."""

    def __init__(self, *, growth_rate: int, block_layers: list[int], stem: str = "imagenet",
                 compression: float = 0.5, bn_size: int = 4, dropout: float = 0.0,
                 num_classes: int = 1000, in_chans: int = 3, input_size=(224, 224),
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        c = 2 * growth_rate
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        if stem == "imagenet":
            stages["stem"] = nn.Sequential(
                nn.Conv2d(in_chans, c, 7, 2, 3, bias=False), nn.BatchNorm2d(c),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            stride = 4
        elif stem == "cifar":
            stages["stem"] = nn.Conv2d(in_chans, c, 3, 1, 1, bias=False)
            stride = 1
        else:
            raise ValueError(f"unknown stem '{stem}'; choose imagenet or cifar")
        self._feature_info = [FeatureInfo("stem", "features.stem", c, stride)]
        for i, n in enumerate(block_layers, start=1):
            if i > 1:
                out = int(compression * c)
                stages[f"transition{i - 1}"] = Transition(c, out)
                c, stride = out, stride * 2
            stages[f"block{i}"] = block = DenseBlock(n, c, growth_rate, bn_size, dropout)
            c = block.out_channels
            self._feature_info.append(FeatureInfo(f"block{i}", f"features.block{i}", c, stride))
        stages["post"] = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self._feature_info.append(FeatureInfo("post", "features.post", c, stride))
        self.features = nn.Sequential(stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        he_init(self)


def densenet(*, depth: int = 121, num_classes: int = 1000, in_chans: int = 3,
             input_size=(224, 224), norm: str = "standardize", dropout: float = 0.0) -> DenseNet:
    """ImageNet DenseNet-BC of Table 1."""
    if depth not in DENSENET_CFGS:
        raise ValueError(f"ImageNet DenseNet depth must be one of {sorted(DENSENET_CFGS)}")
    k, blocks = DENSENET_CFGS[depth]
    return DenseNet(growth_rate=k, block_layers=blocks, stem="imagenet", dropout=dropout,
                    num_classes=num_classes, in_chans=in_chans, input_size=input_size, norm=norm)


def densenet_cifar(*, depth: int = 100, growth_rate: int = 12, num_classes: int = 10,
                   in_chans: int = 3, input_size=(32, 32), norm: str = "standardize",
                   dropout: float = 0.0) -> DenseNet:
    """CIFAR DenseNet-BC: three blocks of (depth − 4) / 6 bottleneck layers."""
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n+4 (100, 190, 250, ...), got {depth}")
    n = (depth - 4) // 6
    return DenseNet(growth_rate=growth_rate, block_layers=[n, n, n], stem="cifar",
                    dropout=dropout, num_classes=num_classes, in_chans=in_chans,
                    input_size=input_size, norm=norm)


for _d in DENSENET_CFGS:
    register_model(f"densenet{_d}", family="densenet", paper="Huang et al., CVPR", year=2017,
                   input_size=(3, 224, 224), num_classes=1000)(partial(densenet, depth=_d))
register_model("densenet-bc-100-12", family="densenet", paper="Huang et al., CVPR",
               year=2017, input_size=(3, 32, 32), num_classes=10,
               aliases=("densenet-bc-100",))(partial(densenet_cifar, depth=100, growth_rate=12))
