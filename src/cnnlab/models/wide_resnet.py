"""Wide Residual Networks — S. Zagoruyko, N. Komodakis, "Wide Residual Networks", BMVC 2016.

WRN-d-k (Table 1): a 3×3 conv with 16 filters, three stages of (d − 4) / 6 pre-activation basic
blocks (BN-ReLU-conv3×3, [dropout], BN-ReLU-conv3×3) with 16k / 32k / 64k filters, BN-ReLU,
global average pool, FC; a 1×1 projection shortcut where the width or stride changes, applied to
the pre-activated input as in the authors' code. ``wrn-28-10`` has 36.5 M parameters at 10
classes. ``dropout`` goes between the two convs of each block (§2.4: 0.3 in the paper's
dropout runs; default 0, the paper's main tables).

Any ``wrn-D-K`` with (D − 4) % 6 == 0 is a valid model name (``wrn-22-8``, ``wrn-40-1``, …): the
registry turns the name into ``depth`` and ``widen_factor``; the common ones are registered by
name. He init, as in the authors' code.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import ModelError
from .base import CnnlabModel, FeatureInfo, he_init
from .preact_resnet import PreActBlock
from .registry import register_model, register_pattern

COMMON = [(16, 4), (16, 8), (28, 10), (40, 2), (40, 4)]  # depth, widen factor


class WideResNet(CnnlabModel):
    """Stem conv 16, stages ``features.layer1..3`` of width 16k/32k/64k, BN-ReLU, GAP, FC."""

    def __init__(self, *, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0,
                 num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, _pair(input_size), norm)
        if depth < 10 or (depth - 4) % 6 or widen_factor < 1:
            raise ValueError(
                f"WRN depth must be 6n+4 ≥ 10 and width ≥ 1, got {depth}-{widen_factor}")
        self.depth, self.widen_factor = depth, widen_factor
        n = (depth - 4) // 6
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self._feature_info = [FeatureInfo("stem", "features.stem", 16, 1)]
        cin, stride = 16, 1
        for i, width in enumerate([16 * widen_factor, 32 * widen_factor, 64 * widen_factor], 1):
            s = 1 if i == 1 else 2
            blocks = [PreActBlock(cin if j == 0 else width, width, s if j == 0 else 1, dropout)
                      for j in range(n)]
            cin, stride = width, stride * s
            stages[f"layer{i}"] = nn.Sequential(*blocks)
            self._feature_info.append(FeatureInfo(f"layer{i}", f"features.layer{i}", cin, stride))
        stages["post"] = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self._feature_info.append(FeatureInfo("post", "features.post", cin, stride))
        self.features = nn.Sequential(stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(cin, num_classes))
        he_init(self)


def wide_resnet(*, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0,
                num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                norm: str = "standardize") -> WideResNet:
    return WideResNet(depth=depth, widen_factor=widen_factor, dropout=dropout,
                      num_classes=num_classes, in_chans=in_chans, input_size=input_size, norm=norm)


PAPER = "Zagoruyko & Komodakis, BMVC"
for _d, _k in COMMON:
    register_model(f"wrn-{_d}-{_k}", family="wide-resnet", paper=PAPER, year=2016,
                   input_size=(3, 32, 32), num_classes=10,
                   )(partial(wide_resnet, depth=_d, widen_factor=_k))


def _wrn_kwargs(depth: str, width: str) -> dict[str, int]:
    d, k = int(depth), int(width)
    if d < 10 or (d - 4) % 6 or k < 1:
        raise ModelError(f"wrn-{d}-{k}: the depth of a wide ResNet is 6n+4 ≥ 10 (16, 22, 28, 40, "
                         f"…) and the width a positive integer")
    return {"depth": d, "widen_factor": k}


register_pattern(r"wrn-(\d+)-(\d+)", base="wrn-28-10", kwargs=_wrn_kwargs)
