"""VGG — K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015.

Configurations A, A-LRN, B, C, D, E of the paper's Table 1 (``vgg-a`` … ``vgg-e``; ``vgg11``,
``vgg13``, ``vgg16``, ``vgg19`` are A, B, D, E), each also with batch normalization after every
conv (``-bn``, Ioffe & Szegedy 2015 — not in the paper). Parameter counts at 224×224, 1000
classes: A 132,863,336 · B 133,047,848 · C 133,638,952 · D 138,357,544 · E 143,667,240 (A-LRN =
A: LRN has no weights).

The classifier follows torchvision: an adaptive average pool to ``pool_size``×``pool_size`` (7,
so the counts above hold at 224 whatever the input) before FC-4096, FC-4096 (dropout 0.5 each),
FC-classes. Any input size ≥ 32 works; at 32×32 (CIFAR) the last map is 1×1 and the pool
replicates it 49 times — pass ``pool_size=1`` (and e.g. ``fc_width=512``) for the lean
CIFAR classifier instead. Init: the paper's note that Glorot & Bengio (2010) init trains the
deep nets without pre-training (``init="glorot"``, biases 0); ``init="he"`` for He et al. 2015.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torch.nn.modules.utils import _pair

from .alexnet import paper_lrn
from .base import CnnlabModel, FeatureInfo, he_init
from .fastconv import conv3x3
from .registry import register_model

# Table 1. An int is conv3-<channels>; (1, c) is conv1-<c> (config C); "M" max-pool 2×2/2;
# "LRN" is Krizhevsky's local response normalization (config A-LRN).
VGG_CFGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (1, 256), "M", 512, 512, (1, 512), "M",
          512, 512, (1, 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}
VGG_DEPTH = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}


class VGG(CnnlabModel):
    """conv stack from ``VGG_CFGS[cfg]`` (feature stages after each max-pool), FC classifier."""

    def __init__(self, *, cfg: str = "D", num_classes: int = 1000, in_chans: int = 3,
                 input_size=(224, 224), norm: str = "standardize", batch_norm: bool = False,
                 dropout: float = 0.5, pool_size: int = 7, fc_width: int = 4096,
                 init: str = "glorot") -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        if cfg not in VGG_CFGS:
            raise ValueError(f"unknown VGG configuration '{cfg}'; choose {', '.join(VGG_CFGS)}")
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin, stride = in_chans, 1
        for item in VGG_CFGS[cfg]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                stride *= 2
                n = len(self._feature_info) + 1
                self._feature_info.append(
                    FeatureInfo(f"pool{n}", f"features.{len(layers) - 1}", cin, stride))
            elif item == "LRN":
                layers.append(paper_lrn())
            else:
                k, cout = item if isinstance(item, tuple) else (3, item)
                layers.append(conv3x3(cin, cout) if k == 3 and batch_norm  # no bias: BN's
                              else nn.Conv2d(cin, cout, k, padding=k // 2, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(cout))
                layers.append(nn.ReLU(inplace=True))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool_size), nn.Flatten(),
            nn.Linear(cin * pool_size * pool_size, fc_width), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )
        if init == "glorot":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        elif init == "he":
            he_init(self)
        else:
            raise ValueError(f"unknown init '{init}'; choose glorot or he")


def vgg(*, cfg: str = "D", batch_norm: bool = False, num_classes: int = 1000, in_chans: int = 3,
        input_size=(224, 224), norm: str = "standardize", dropout: float = 0.5,
        pool_size: int = 7, fc_width: int = 4096, init: str = "glorot") -> VGG:
    """Any Table 1 configuration; the registered names fix ``cfg`` and ``batch_norm``."""
    return VGG(cfg=cfg, batch_norm=batch_norm, num_classes=num_classes, in_chans=in_chans,
               input_size=input_size, norm=norm, dropout=dropout, pool_size=pool_size,
               fc_width=fc_width, init=init)


def _register_all() -> None:
    for cfg, depth in VGG_DEPTH.items():
        for bn in (False, True):
            suffix = "-bn" if bn else ""
            name = f"vgg-{cfg.lower()}{suffix}"
            # vgg11/13/16/19 are the usual names of A/B/D/E (C is also 16 layers: no alias)
            aliases = (f"vgg{depth}{suffix}",) if cfg in ("A", "B", "D", "E") else ()
            register_model(name, family="vgg", paper="Simonyan & Zisserman, ICLR", year=2015,
                           input_size=(3, 224, 224), num_classes=1000,
                           aliases=aliases)(partial(vgg, cfg=cfg, batch_norm=bn))


_register_all()
