"""ResNet (v1) and its plain counterparts — K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual
Learning for Image Recognition", CVPR 2016 (arXiv 2015).

* ImageNet (Table 1): ``resnet18/34`` (basic blocks), ``resnet50/101/152`` (bottlenecks), with
  projection shortcuts where the shape changes (option B). Version 1 as in the paper and its
  Caffe model: a downsampling bottleneck puts the stride on its *first* 1×1 conv (torchvision's
  "v1.5" moves it to the 3×3, which costs ~0.3 G more multiply-adds). Exactly 11,689,512 /
  21,797,672 / 25,557,032 / 44,549,160 / 60,192,808 parameters and 1.8 / 3.6 / 3.8 / 7.6 / 11.3
  G multiply-adds at 224×224, 1000 classes (the table's "FLOPs" are multiply-adds).
* CIFAR (§4.2): ``resnet20/32/44/56/110`` — a 3×3 conv with 16 filters, 3 stages of n basic
  blocks with 16/32/64 filters (depth 6n+2), global average pool, FC; option-A shortcuts
  (identity, stride-2 subsampling and zero-padded channels: no extra parameters): 0.27 / 0.46 /
  0.66 / 0.85 / 1.7 M parameters.
* Plain nets (Fig. 3, Table 2, Fig. 6): ``plain18/34`` and ``plain20/56`` — the same layers with
  the identity additions removed (downsampling stays in the stride-2 convs; with no shortcuts
  there are no projections).

He init (the paper's [13]); ``zero_init_residual`` starts each block's last BN at γ=0 so that
every residual block begins as the identity (Goyal et al. 2017).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .base import CnnlabModel, FeatureInfo, he_init
from .fastconv import conv3x3
from .registry import register_model

SHORTCUTS = ("A", "B", "C", "none")


def conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """conv k×k (padding k//2, no bias) → BN; the 3×3 ones from :func:`conv3x3`, which trains
    them faster on a CPU (models/fastconv.py)."""
    conv = conv3x3(cin, cout, stride) if k == 3 else nn.Conv2d(cin, cout, k, stride, k // 2,
                                                               bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


class PadShortcut(nn.Module):
    """Option A: identity with stride-``stride`` subsampling and zero channels appended."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def make_shortcut(kind: str, cin: int, cout: int, stride: int) -> nn.Module | None:
    """A: zero-padding identity; B: projection only where the shape changes; C: always project;
    ``none``: no shortcut (plain net)."""
    if kind == "none":
        return None
    if kind == "C" or (kind == "B" and (cin != cout or stride != 1)):
        return conv_bn(cin, cout, 1, stride)
    if cin != cout or stride != 1:
        return PadShortcut(cin, cout, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """3×3 conv-BN-ReLU, 3×3 conv-BN, + shortcut, ReLU (Fig. 2, left of Fig. 5)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv_bn(cin, width, 3, stride)
        self.conv2 = conv_bn(width, cout, 3)
        self.shortcut = make_shortcut(shortcut, cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.conv2[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 (stride here: v1) → 3×3 → 1×1 ×4, each with BN, + shortcut, ReLU (Fig. 5 right)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = conv_bn(cin, width, 1, stride)
        self.conv2 = conv_bn(width, width, 3)
        self.conv3 = conv_bn(width, cout, 1)
        self.shortcut = make_shortcut(shortcut, cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.conv3[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.conv3(self.relu(self.conv2(out)))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


# Table 1: depth → (block, blocks per stage conv2_x..conv5_x)
IMAGENET_LAYERS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}
IMAGENET_WIDTHS = [64, 128, 256, 512]
CIFAR_WIDTHS = [16, 32, 64]  # §4.2: 6n+2 layers, n basic blocks per stage


class ResNet(CnnlabModel):
    """Stem, residual stages (``features.layer1`` …), global average pool, FC.

    ``stem="imagenet"``: 7×7/2 conv 64, BN, ReLU, 3×3/2 max-pool; ``stem="cifar"``: 3×3 conv.
    """

    def __init__(self, *, block: type[nn.Module], layers: list[int], widths: list[int],
                 stem: str = "imagenet", shortcut: str = "B", num_classes: int = 1000,
                 in_chans: int = 3, input_size=(224, 224), norm: str = "standardize",
                 zero_init_residual: bool = False) -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut '{shortcut}'; choose from {', '.join(SHORTCUTS)}")
        if zero_init_residual and shortcut == "none":
            raise ValueError("zero_init_residual would zero every block of a plain net")
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        if stem == "imagenet":
            stages["stem"] = nn.Sequential(conv_bn(in_chans, widths[0], 7, 2),
                                           nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            stride = 4
        elif stem == "cifar":
            stages["stem"] = nn.Sequential(conv_bn(in_chans, widths[0], 3), nn.ReLU(inplace=True))
            stride = 1
        else:
            raise ValueError(f"unknown stem '{stem}'; choose imagenet or cifar")
        self._feature_info = [FeatureInfo("stem", "features.stem", widths[0], stride)]
        cin = widths[0]
        for i, (n, width) in enumerate(zip(layers, widths, strict=True), start=1):
            first_stride = 1 if i == 1 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, first_stride if j == 0 else 1, shortcut))
                cin = width * block.expansion
            stride *= first_stride
            stages[f"layer{i}"] = nn.Sequential(*blocks)
            self._feature_info.append(FeatureInfo(f"layer{i}", f"features.layer{i}", cin, stride))
        self.features = nn.Sequential(stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(cin, num_classes))
        he_init(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)


def resnet(*, depth: int = 50, shortcut: str = "B", num_classes: int = 1000, in_chans: int = 3,
           input_size=(224, 224), norm: str = "standardize",
           zero_init_residual: bool = False, stem: str = "imagenet") -> ResNet:
    """ImageNet ResNet of Table 1 (``shortcut="none"`` gives the plain net).

    ``stem="cifar"`` (a 3×3 conv, no max-pool) gives the common CIFAR-size form of the same
    stages — ResNet-18 at 32×32: 11.17 M params, 0.56 G mult-adds — used to compare training
    throughput with the speed-run nets (``--model-arg stem=cifar``)."""
    if depth not in IMAGENET_LAYERS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_LAYERS)}")
    block, layers = IMAGENET_LAYERS[depth]
    return ResNet(block=block, layers=layers, widths=IMAGENET_WIDTHS, stem=stem,
                  shortcut=shortcut, num_classes=num_classes, in_chans=in_chans,
                  input_size=input_size, norm=norm, zero_init_residual=zero_init_residual)


def resnet_cifar(*, depth: int = 56, shortcut: str = "A", num_classes: int = 10,
                 in_chans: int = 3, input_size=(32, 32), norm: str = "standardize",
                 zero_init_residual: bool = False) -> ResNet:
    """CIFAR ResNet of §4.2, depth 6n+2 (``shortcut="none"`` gives the plain net)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNet(block=BasicBlock, layers=[n, n, n], widths=CIFAR_WIDTHS, stem="cifar",
                  shortcut=shortcut, num_classes=num_classes, in_chans=in_chans,
                  input_size=input_size, norm=norm, zero_init_residual=zero_init_residual)


PAPER = "He et al., arXiv:1512.03385"
for _d in IMAGENET_LAYERS:
    register_model(f"resnet{_d}", family="resnet", paper=PAPER, year=2015,
                   input_size=(3, 224, 224), num_classes=1000)(partial(resnet, depth=_d))
for _d in (18, 34):
    register_model(f"plain{_d}", family="resnet", paper=PAPER, year=2015,
                   input_size=(3, 224, 224), num_classes=1000,
                   )(partial(resnet, depth=_d, shortcut="none"))
for _d in (20, 32, 44, 56, 110):
    register_model(f"resnet{_d}", family="resnet", paper=PAPER, year=2015,
                   input_size=(3, 32, 32), num_classes=10)(partial(resnet_cifar, depth=_d))
for _d in (20, 56):
    register_model(f"plain{_d}", family="resnet", paper=PAPER, year=2015,
                   input_size=(3, 32, 32), num_classes=10,
                   )(partial(resnet_cifar, depth=_d, shortcut="none"))
