"""``mnist-speednet``: the small, fast net of the ``mnist-speedrun`` preset (train/presets.py).

Built to reach 99.5 % MNIST test accuracy in the fewest multiply-adds on a 2-core CPU, so every
choice is about where the time goes, measured with ``cnnlab profile`` rather than guessed:

* **A stride-2 5×5 stem** (1 → 32 channels, 28×28 → 14×14). Full-resolution layers are the
  expensive ones on a CPU not for their multiply-adds but for the memory traffic of BN, ReLU and
  pooling over 28×28×C maps: a 3×3 stem + max-pool at 28×28 made the whole net ~2× slower per
  image for the same MACs. The 5×5 kernel keeps the stem's receptive field as large as
  conv 3×3 + pool would give. Early downsampling is the speed-run nets' first trick
  (Page 2018, "How to train your ResNet"; Jordan 2024, cifar10-airbench, 2×2 patch stem).
* **Two conv-BN-ReLU-max-pool stages** (32 → 64 at 14×14, 64 → 128 at 7×7), the VGG pattern
  (Simonyan & Zisserman 2015) with BatchNorm after every conv (Ioffe & Szegedy 2015), which is
  what makes the large onecycle learning rate of the preset stable.
* **Global max-pool and one linear layer**: no FC hidden layer (its parameters would only
  memorise), as in the airbench nets; max rather than average pooling, because a digit is
  detected by its strongest local evidence wherever it sits.

About 7.4 M multiply-adds per 28×28 image (``cnnlab zoo mnist-speednet --input-size 1,28,28``),
~92 k parameters; size-agnostic, so it also runs on 8×8 digits (tests) and 32×32 images.
"""

from __future__ import annotations

from torch import nn

from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


SPEEDNET_CFG: list[int | str] = [32, 64, "M", 128, "M"]


def _stages(layers: list[nn.Module]) -> list[FeatureInfo]:
    """One named stage per resolution: its last ReLU, with the channels and stride there."""
    found: dict[int, tuple[int, int]] = {}  # stride -> (ReLU index, channels)
    stride, channels = 1, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            stride, channels = stride * layer.stride[0], layer.out_channels
        elif isinstance(layer, nn.MaxPool2d):
            stride *= 2
        elif isinstance(layer, nn.ReLU):
            found[stride] = (i, channels)
    return [FeatureInfo("stem" if n == 0 else f"stage{n}", f"features.{i}", c, s)
            for n, (s, (i, c)) in enumerate(sorted(found.items()))]


class MnistSpeedNet(CnnlabModel):
    """stem conv k×k/2 → 3×3 conv-BN-ReLU blocks and max-pools as ``cfg`` says → global
    max-pool → FC.

    ``cfg`` reads like VGG's table: its first number is the stem's width, then a number is a
    3×3 conv-BN-ReLU of that width and ``"M"`` a 2×2 max-pool. The max-pools use ``ceil_mode``
    so tiny inputs (8×8 digits: 4 → 2 → 1) keep at least one pixel and 7×7 maps keep their
    border row.
    """

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                 cfg: list | None = None, stem_kernel: int = 5, head: str = "flatten",
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        if head not in ("flatten", "max", "avg"):
            raise ValueError(f"head must be flatten, max or avg, got '{head}'")
        cfg = list(cfg or SPEEDNET_CFG)
        cin, stride = int(cfg[0]), 2
        layers: list[nn.Module] = _conv_bn_relu(in_chans, cin, stem_kernel, 2)
        for item in cfg[1:]:
            if str(item).upper() == "M":
                # conv → max-pool → BN → ReLU (as airbench's ConvGroup): BN and ReLU then run on
                # a quarter of the pixels, and they cost as much as the convs in a net this small
                pool = nn.MaxPool2d(2, ceil_mode=True)
                if isinstance(layers[-1], nn.ReLU) and isinstance(layers[-3], nn.Conv2d):
                    layers.insert(len(layers) - 2, pool)
                else:
                    layers.append(pool)
            else:
                layers += _conv_bn_relu(cin, int(item), 3)
                cin = int(item)
        self.features = nn.Sequential(*layers)
        self._feature_info = _stages(layers)
        if head == "flatten":  # where on the digit a feature fired still matters at 4×4
            pool: nn.Module = nn.Identity()
            cin = int(self.feature_shape().numel())
        else:
            pool = nn.AdaptiveMaxPool2d(1) if head == "max" else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(pool, nn.Flatten(), nn.Linear(cin, num_classes))
        he_init(self)


@register_model("mnist-speednet", family="speedrun", paper="cnnlab MNIST speed-run net", year=2026,
                input_size=(1, 28, 28), num_classes=10, aliases=("speednet",))
def mnist_speednet(*, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                   cfg: list | None = None, stem_kernel: int = 5, head: str = "flatten",
                   norm: str = "standardize") -> MnistSpeedNet:
    return MnistSpeedNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                         cfg=cfg, stem_kernel=stem_kernel, head=head, norm=norm)
