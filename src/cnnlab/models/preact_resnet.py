"""Pre-activation ResNet — K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual
Networks", ECCV 2016.

Each block computes BN → ReLU → conv (Fig. 1b, "full pre-activation"), so the shortcut path is a
clean identity from block to block; a final BN-ReLU precedes global average pooling. Where the
shape changes, the shortcut is a 1×1 projection applied to the *pre-activated* input (the
authors' fb.resnet.torch code).

* ``preact-resnet164`` / ``preact-resnet1001`` — the paper's CIFAR nets: a 3×3 conv with 16
  filters, three stages of bottleneck blocks (1×1, 3×3, 1×1 ×4) with 64/128/256 output channels,
  (depth − 2) / 9 blocks per stage (18 and 111): 1.7 M and 10.2 M parameters (Table 2).
* ``preact-resnet18`` — the common CIFAR pre-activation ResNet-18 (kuangliu/pytorch-cifar and
  many papers since): 3×3 stem conv 64, basic blocks [2, 2, 2, 2] with 64/128/256/512 channels,
  ~11.2 M parameters.

He init, as in the paper.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .base import CnnlabModel, FeatureInfo, he_init
from .fastconv import conv3x3
from .registry import register_model


def bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3, [dropout], BN-ReLU-conv3×3, + identity (or projection of the
    pre-activated input). Wide ResNet's block is this one with dropout between the convs."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        cout = width * self.expansion
        self.preact = bn_relu(cin)
        self.conv1 = conv3x3(cin, width, stride)
        self.conv2 = nn.Sequential(bn_relu(width),
                                   nn.Dropout(dropout) if dropout else nn.Identity(),
                                   conv3x3(width, cout))
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.preact(x)
        # the projection (if any) sees the pre-activated input; the identity sees x itself
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        return self.conv2(self.conv1(out)) + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1×1, BN-ReLU-conv3×3 (stride), BN-ReLU-conv1×1 (×4), + shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.preact = bn_relu(cin)
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.conv2 = nn.Sequential(bn_relu(width), conv3x3(width, width, stride))
        self.conv3 = nn.Sequential(bn_relu(width), nn.Conv2d(width, cout, 1, bias=False))
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.preact(x)
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        return self.conv3(self.conv2(self.conv1(out))) + shortcut


class PreActResNet(CnnlabModel):
    """3×3 stem conv, pre-activation stages (``features.layer1`` …), BN-ReLU, GAP, FC."""

    def __init__(self, *, block: type[nn.Module], layers: list[int], widths: list[int],
                 stem_width: int, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False)
        self._feature_info = [FeatureInfo("stem", "features.stem", stem_width, 1)]
        cin, stride = stem_width, 1
        for i, (n, width) in enumerate(zip(layers, widths, strict=True), start=1):
            s = 1 if i == 1 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, s if j == 0 else 1))
                cin = width * block.expansion
            stride *= s
            stages[f"layer{i}"] = nn.Sequential(*blocks)
            self._feature_info.append(FeatureInfo(f"layer{i}", f"features.layer{i}", cin, stride))
        # the last block's output is un-normalized: the final BN-ReLU belongs to the features
        stages["post"] = bn_relu(cin)
        self._feature_info.append(FeatureInfo("post", "features.post", cin, stride))
        self.features = nn.Sequential(stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(cin, num_classes))
        he_init(self)


def preact_resnet(*, depth: int = 164, num_classes: int = 10, in_chans: int = 3,
                  input_size=(32, 32), norm: str = "standardize") -> PreActResNet:
    """Depth 18: the basic-block ResNet-18 layout; depth 9n+2: the paper's bottleneck CIFAR nets."""
    if depth == 18:
        return PreActResNet(block=PreActBlock, layers=[2, 2, 2, 2], widths=[64, 128, 256, 512],
                            stem_width=64, num_classes=num_classes, in_chans=in_chans,
                            input_size=input_size, norm=norm)
    if (depth - 2) % 9:
        raise ValueError(f"pre-activation bottleneck depth must be 9n+2 (164, 1001), got {depth}")
    n = (depth - 2) // 9
    return PreActResNet(block=PreActBottleneck, layers=[n, n, n], widths=[16, 32, 64],
                        stem_width=16, num_classes=num_classes, in_chans=in_chans,
                        input_size=input_size, norm=norm)


for _d in (18, 164, 1001):
    register_model(f"preact-resnet{_d}", family="preact-resnet",
                   paper="He et al., ECCV", year=2016, input_size=(3, 32, 32),
                   num_classes=10)(partial(preact_resnet, depth=_d))
