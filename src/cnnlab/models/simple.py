"""Small CNNs for the core: the digits default, LeNet-5, the "Deep Learning from Scratch" net
and a small VGG-style net for CIFAR.

* LeNet-5 — Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
  document recognition", Proc. IEEE 1998. Common full-connection form (C3 sees all of S2):
  61,706 parameters at 32×32, 10 classes.
* ``dlfs-deepconvnet`` — K. Saito, "Deep Learning from Scratch" (O'Reilly Japan 2016), ch. 8:
  six 3×3 convs 16-16-32-32-64-64 with a max-pool after each pair, FC 50, dropout 0.5, He init,
  Adam; the book reports 0.62 % test error on MNIST.
* ``vgg-small`` — a VGG-style (Simonyan & Zisserman 2015) stack of 3×3 conv-BN-ReLU blocks sized
  for 32×32 CIFAR images.
"""

from __future__ import annotations

from torch import nn

from .base import CnnlabModel, FeatureInfo, he_init
from .fastconv import conv3x3
from .registry import register_model


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1,
                 bn: bool = True) -> nn.Sequential:
    # with BN after it a 3×3 conv needs no bias: then conv3x3's, which trains faster on a CPU
    conv = (conv3x3(cin, cout, stride) if k == 3 and bn
            else nn.Conv2d(cin, cout, k, stride, k // 2, bias=not bn))
    layers: list[nn.Module] = [conv]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SimpleCNN(CnnlabModel):
    """conv-BN-ReLU ×2, max-pool, conv-BN-ReLU ×2, global average pool, FC.

    Size-agnostic (global pooling), so it serves any small data set; the ``cnnlab train`` default.
    """

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, input_size=(8, 8),
                 width: int = 32, norm: str = "standardize", dropout: float = 0.0) -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        w = width
        self.features = nn.Sequential(
            conv_bn_relu(in_chans, w), conv_bn_relu(w, w), nn.MaxPool2d(2),
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 4 * w),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(4 * w, num_classes))
        self._feature_info = [
            FeatureInfo("block1", "features.1", w, 1),
            FeatureInfo("block2", "features.3", 2 * w, 2),
            FeatureInfo("block3", "features.4", 4 * w, 2),
        ]
        he_init(self)


@register_model("simple-cnn", family="simple", paper="cnnlab default", year=2026,
                input_size=(1, 8, 8), num_classes=10, aliases=("default",))
def simple_cnn(*, num_classes: int = 10, in_chans: int = 1, input_size=(8, 8), width: int = 32,
               norm: str = "standardize", dropout: float = 0.0) -> SimpleCNN:
    return SimpleCNN(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                     width=width, norm=norm, dropout=dropout)


class LeNet5(CnnlabModel):
    """C1 conv 6@5×5 → S2 pool → C3 conv 16@5×5 → S4 pool → C5 120 → F6 84 → output.

    Smaller inputs (MNIST's 28×28) are zero-padded in C1 so that C5 still sees 5×5 maps, as the
    paper did by centring digits in a 32×32 field.
    """

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, input_size=(32, 32),
                 act: str = "tanh", pool: str = "avg", norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        Act = {"tanh": nn.Tanh, "relu": nn.ReLU}[act]
        Pool = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pool]
        pad = max(0, (32 - min(input_size)) // 2)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=pad), Act(), Pool(2),   # C1, S2
            nn.Conv2d(6, 16, 5), Act(), Pool(2),                       # C3, S4
        )
        flat = int(self.feature_shape().numel())
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 120), Act(),                 # C5 (full connection)
            nn.Linear(120, 84), Act(),                                 # F6
            nn.Linear(84, num_classes),                                # output
        )
        self._feature_info = [FeatureInfo("c1", "features.1", 6, 1),
                              FeatureInfo("c3", "features.4", 16, 2)]


@register_model("lenet5", family="lenet", paper="LeCun et al., Proc. IEEE", year=1998,
                input_size=(1, 32, 32), num_classes=10, aliases=("lenet",))
def lenet5(*, num_classes: int = 10, in_chans: int = 1, input_size=(32, 32), act: str = "tanh",
           pool: str = "avg", norm: str = "standardize") -> LeNet5:
    return LeNet5(num_classes=num_classes, in_chans=in_chans, input_size=input_size, act=act,
                  pool=pool, norm=norm)


class DLFSDeepConvNet(CnnlabModel):
    """The book's table, layer by layer (conv4 has padding 2, as in the book's code)."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                 hidden: int = 50, dropout: float = 0.5, dropout_logits: bool = True,
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        R = nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, padding=1), R(), nn.Conv2d(16, 16, 3, padding=1), R(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), R(), nn.Conv2d(32, 32, 3, padding=2), R(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), R(), nn.Conv2d(64, 64, 3, padding=1), R(),
            nn.MaxPool2d(2),
        )
        flat = int(self.feature_shape().numel())
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), R(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
            nn.Dropout(dropout) if dropout_logits else nn.Identity(),
        )
        self._feature_info = [FeatureInfo("conv2", "features.3", 16, 1),
                              FeatureInfo("conv4", "features.8", 32, 2),
                              FeatureInfo("conv6", "features.13", 64, 4)]
        he_init(self)


@register_model("dlfs-deepconvnet", family="dlfs", paper="Saito, Deep Learning from Scratch ch. 8",
                year=2016, input_size=(1, 28, 28), num_classes=10, aliases=("deepconvnet",))
def dlfs_deepconvnet(*, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                     hidden: int = 50, dropout: float = 0.5, dropout_logits: bool = True,
                     norm: str = "standardize") -> DLFSDeepConvNet:
    return DLFSDeepConvNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                           hidden=hidden, dropout=dropout, dropout_logits=dropout_logits, norm=norm)


VGG_SMALL_CFG = [32, "M", 64, 64, "M", 128, 128, "M", 256, "M"]


class VGGSmall(CnnlabModel):
    """3×3 conv-BN-ReLU blocks with max-pools (the cfg list reads like VGG's table), GAP, FC."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 cfg: list | None = None, dropout: float = 0.0, norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        cfg = list(cfg or VGG_SMALL_CFG)
        layers: list[nn.Module] = []
        cin, stride = in_chans, 1
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                stride *= 2
                self._feature_info.append(
                    FeatureInfo(f"pool{len(self._feature_info) + 1}", f"features.{len(layers) - 1}",
                                cin, stride))
            else:
                layers.append(conv_bn_relu(cin, int(item)))
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))
        he_init(self)


@register_model("vgg-small", family="vgg", paper="Simonyan & Zisserman, ICLR (CIFAR-size)",
                year=2015, input_size=(3, 32, 32), num_classes=10, aliases=("vgg-cifar",))
def vgg_small(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
              cfg: list | None = None, dropout: float = 0.0, norm: str = "standardize") -> VGGSmall:
    return VGGSmall(num_classes=num_classes, in_chans=in_chans, input_size=input_size, cfg=cfg,
                    dropout=dropout, norm=norm)
