"""AlexNet and its CIFAR-size sibling from cuda-convnet.

* ``alexnet`` — A. Krizhevsky, I. Sutskever, G. E. Hinton, "ImageNet Classification with Deep
  Convolutional Neural Networks", NIPS 2012. The one-tower form of "One weird trick for
  parallelizing convolutional neural networks" (Krizhevsky 2014) with 64/192/384/256/256 kernels —
  the form torchvision ships: exactly 61,100,840 parameters at 224×224, 1000 classes. As in the
  2012 paper: ReLU, local response normalization after conv1 and conv2, overlapping 3×3/2 max
  pooling, dropout 0.5 in FC6 and FC7, weights N(0, 0.01) with biases 1 in conv2, conv4, conv5
  and the hidden FC layers (``init="paper"``; ``init="he"`` for He et al. 2015).
* ``alexnet-cifar`` — the CIFAR-10 net Krizhevsky shipped with cuda-convnet
  (``layers-18pct.cfg``, 18 % test error without augmentation; also Caffe's ``cifar10_full``):
  conv 32@5×5 → max-pool 3×3/2 → ReLU → LRN → conv 32@5×5 → ReLU → avg-pool 3×3/2 → LRN →
  conv 64@5×5 → ReLU → avg-pool 3×3/2 → FC 10. Its LRN is cuda-convnet's ``rnorm``: within each
  channel over a 3×3 neighbourhood. 89,578 parameters at 32×32, 10 classes. The reference config's
  init (N(0, 1e-4) for conv1) was tuned for raw 0–255 pixels; our inputs are standardized, so the
  default here is He init (``init="paper"`` restores the config's standard deviations).

Pooling in cuda-convnet (and Caffe) rounds output sizes up: ``ceil_mode=True``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model


def paper_lrn(size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> nn.Module:
    """Cross-channel LRN with the 2012 paper's formula b = a / (k + α Σ a²)^β (n=5, α=1e-4, β=0.75,
    k=2). PyTorch's LocalResponseNorm divides α by ``size`` (as Caffe does), so we pass size·α."""
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)


class WithinChannelLRN(nn.Module):
    """cuda-convnet's ``rnorm`` / Caffe's WITHIN_CHANNEL LRN: x / (1 + α · mean_{n×n}(x²))^β."""

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean over the zero-padded n×n window = Σ / n², as Caffe's implementation does
        mean_sq = F.avg_pool2d(x * x, self.size, 1, self.size // 2, count_include_pad=True)
        return x / (1.0 + self.alpha * mean_sq).pow(self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"


# (out channels, kernel, stride, padding, LRN after, max-pool after) — conv1..conv5
ALEXNET_CFG = [
    (64, 11, 4, 2, True, True),
    (192, 5, 1, 2, True, True),
    (384, 3, 1, 1, False, False),
    (256, 3, 1, 1, False, False),
    (256, 3, 1, 1, False, True),
]
ALEXNET_FC = [4096, 4096]  # FC6, FC7 (each with dropout before it, as torchvision orders them)


class AlexNet(CnnlabModel):
    """Five convs (LRN after 1 and 2, overlapping pools after 1, 2, 5), adaptive 6×6 pool, 3 FCs."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, input_size=(224, 224),
                 norm: str = "standardize", lrn: bool = True, dropout: float = 0.5,
                 init: str = "paper") -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin, stride = in_chans, 1
        for i, (cout, k, s, p, use_lrn, pool) in enumerate(ALEXNET_CFG, start=1):
            layers[f"conv{i}"] = nn.Conv2d(cin, cout, k, s, p)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            stride *= s
            last = f"relu{i}"
            if use_lrn and lrn:
                layers[f"lrn{i}"] = paper_lrn()
                last = f"lrn{i}"
            if pool:
                layers[f"pool{i}"] = nn.MaxPool2d(3, 2)
                stride *= 2
                last = f"pool{i}"
            self._feature_info.append(FeatureInfo(f"conv{i}", f"features.{last}", cout, stride))
            cin = cout
        self.features = nn.Sequential(layers)
        fc: list[nn.Module] = [nn.AdaptiveAvgPool2d(6), nn.Flatten()]
        width = cin * 6 * 6
        for hidden in ALEXNET_FC:
            fc += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        fc.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*fc)
        if init == "paper":
            self._paper_init()
        elif init == "he":
            he_init(self)
        else:
            raise ValueError(f"unknown init '{init}'; choose paper or he")

    def _paper_init(self) -> None:
        # §5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers (gives
        # the ReLUs positive inputs early on), 0 elsewhere.
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in self.head if isinstance(m, nn.Linear)]
        for m in convs + fcs:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        for m in [convs[1], convs[3], convs[4], *fcs[:-1]]:
            nn.init.ones_(m.bias)


@register_model("alexnet", family="alexnet", paper="Krizhevsky et al., NIPS", year=2012,
                input_size=(3, 224, 224), num_classes=1000)
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, input_size=(224, 224),
            norm: str = "standardize", lrn: bool = True, dropout: float = 0.5,
            init: str = "paper") -> AlexNet:
    return AlexNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size, norm=norm,
                   lrn=lrn, dropout=dropout, init=init)


# cuda-convnet layers-18pct.cfg: (kind, out channels or pool type) in order
ALEXNET_CIFAR_CFG = [
    ("conv", 32), ("pool", "max"), ("relu", None), ("lrn", None),
    ("conv", 32), ("relu", None), ("pool", "avg"), ("lrn", None),
    ("conv", 64), ("relu", None), ("pool", "avg"),
]
ALEXNET_CIFAR_INIT_STD = [1e-4, 1e-2, 1e-2, 1e-2]  # conv1..3, fc10 (Caffe cifar10_full)


class AlexNetCifar(CnnlabModel):
    """cuda-convnet's 3-conv CIFAR-10 net (see module docstring)."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 norm: str = "standardize", lrn: bool = True, dropout: float = 0.0,
                 init: str = "he") -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin, stride, n = in_chans, 1, 0
        ends: dict[int, tuple[str, int, int]] = {}
        for kind, arg in ALEXNET_CIFAR_CFG:
            if kind == "conv":
                n += 1
                layers[f"conv{n}"] = nn.Conv2d(cin, int(arg), 5, 1, 2)
                cin = int(arg)
            elif kind == "pool":
                pool = nn.MaxPool2d if arg == "max" else nn.AvgPool2d
                layers[f"pool{n}"] = pool(3, 2, ceil_mode=True)
                stride *= 2
            elif kind == "relu":
                layers[f"relu{n}"] = nn.ReLU(inplace=True)
            elif lrn:
                layers[f"lrn{n}"] = WithinChannelLRN(3, 5e-5, 0.75)
            ends[n] = (next(reversed(layers)), cin, stride)  # the stage ends at its last layer
        self._feature_info = [FeatureInfo(f"conv{i}", f"features.{name}", c, s)
                              for i, (name, c, s) in ends.items()]
        self.features = nn.Sequential(layers)
        flat = int(self.feature_shape().numel())
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, num_classes))
        if init == "paper":
            weighted = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            for m, std in zip(weighted, ALEXNET_CIFAR_INIT_STD, strict=True):
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.zeros_(m.bias)
        elif init == "he":
            he_init(self)
        else:
            raise ValueError(f"unknown init '{init}'; choose paper or he")


@register_model("alexnet-cifar", family="alexnet",
                paper="Krizhevsky, cuda-convnet layers-18pct", year=2012,
                input_size=(3, 32, 32), num_classes=10, aliases=("cuda-convnet-18pct",))
def alexnet_cifar(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                  norm: str = "standardize", lrn: bool = True, dropout: float = 0.0,
                  init: str = "he") -> AlexNetCifar:
    return AlexNetCifar(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                        norm=norm, lrn=lrn, dropout=dropout, init=init)
