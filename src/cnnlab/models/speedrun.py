"""``mnist-speednet``: the small, fast net of the ``mnist-speedrun`` preset (train/presets.py).

Built to reach 99.5 % MNIST test accuracy in the least wall time on a 2-core CPU. Each choice
was measured (``cnnlab profile``, per-epoch test accuracy at 1 thread), not guessed:

* **A stride-2 5×5 stem** (1 → 32 channels, 28×28 → 14×14). Full-resolution layers are the
  expensive ones on a CPU, less for their multiply-adds than for the memory traffic of BN, ReLU
  and pooling over 28×28×C maps: a 3×3 stem + max-pool at 28×28 made a net ~2× slower per image
  for the same multiply-adds. The 5×5 kernel sees what conv 3×3 + pool would. Early
  downsampling is the speed-run nets' first trick (Page 2018, "How to train your ResNet";
  Jordan 2024, cifar10-airbench).
* **One 3×3 conv at 14×14 before the first pool.** Pooling straight after the stem (a 2.3 M
  multiply-add net) plateaued near 99.45 % whatever the epochs (3 or 4) or depth added at 4×4;
  this one conv (+1.8 M) lifted the same 3-epoch recipe to 99.59 %.
* **conv → max-pool → BN → ReLU**, the order of airbench's ConvGroup: BN and ReLU then run on
  a quarter of the pixels; in a net this small they cost nearly as much time as the convs.
* **VGG-style 3×3 conv-BN-ReLU stages** (Simonyan & Zisserman 2015) with BatchNorm after every
  conv (Ioffe & Szegedy 2015), which keeps SGD at the preset's high learning rate stable.
* **A flattened 4×4×128 head** into one linear layer (20 k multiply-adds), not a global pool:
  where on the digit a stroke sits still matters at 4×4 (a global max-pool head was 0.07
  points worse after 2 epochs in one comparison — small, but the flat head costs nothing).

Default ``cfg`` ``[32, 32, "M", 64, "M", 128]``: 4.07 M multiply-adds per 28×28 image, 123 k
parameters (``cnnlab zoo mnist-speednet``). Size-agnostic through ``ceil_mode`` pools, so it
also runs on 8×8 digits (tests) and 32×32 images.
"""

from __future__ import annotations

from torch import nn

from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


SPEEDNET_CFG: list[int | str] = [32, 32, "M", 64, "M", 128]


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
    """stem conv k×k/2 → 3×3 conv-BN-ReLU blocks and max-pools as ``cfg`` says → ``head``
    (``flatten``, or a global ``max``/``avg`` pool) → FC.

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
        cin = int(cfg[0])
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
            reduce: nn.Module = nn.Identity()
            cin = int(self.feature_shape().numel())
        else:
            reduce = nn.AdaptiveMaxPool2d(1) if head == "max" else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(reduce, nn.Flatten(), nn.Linear(cin, num_classes))
        he_init(self)


@register_model("mnist-speednet", family="speedrun", paper="cnnlab MNIST speed-run net", year=2026,
                input_size=(1, 28, 28), num_classes=10, aliases=("speednet",))
def mnist_speednet(*, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                   cfg: list | None = None, stem_kernel: int = 5, head: str = "flatten",
                   norm: str = "standardize") -> MnistSpeedNet:
    return MnistSpeedNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                         cfg=cfg, stem_kernel=stem_kernel, head=head, norm=norm)
