"""Residual networks of residual networks (RoR).

K. Zhang, M. Sun, T. X. Han, X. Yuan, L. Guo, T. Liu, "Residual Networks of Residual Networks:
Multilevel Residual Networks", IEEE TCSVT 2017 (arXiv:1608.02908).

RoR adds shortcuts *above* the usual block shortcuts of a CIFAR ResNet (3 stages of n blocks):

* level 1, the **root** shortcut: from the stem's output over all three stages;
* level 2, the **middle-level** shortcuts: one over each stage (group of n blocks);
* level 3, the **final-level** shortcuts: the ordinary shortcut of every residual block.

RoR-3 has all three (1 root + 3 middle + 3n block shortcuts); ``levels=2`` keeps root + final
(RoR-2), ``levels=1`` is the plain ResNet. Where a shortcut changes shape it is a projection —
1×1 conv with the stage's stride + BN (the paper's "type B"); where it does not, it is the
identity. The final-level shortcuts are those of the base net: option A (stride-2 subsampling and
zero-padded channels, parameter-free) in the original CIFAR ResNet, a 1×1 conv in a WRN. The
middle-level and root shortcuts are added in the last block of their group, before that block's
final ReLU (original ResNet) or to its output (pre-activation WRN): y = F(x) + h(x) + g(stage
input) [+ root(stem output)].

Base nets: ``ror3-resnet110`` over the post-activation basic-block CIFAR ResNet (He et al. 2016;
depth = 6n + 2, 110 → n = 18; the paper's RoR-3-110, 1.7 M parameters) and ``ror3-wrn-16-4`` over a
pre-activation wide ResNet (Zagoruyko & Komodakis 2016; depth = 6n + 4, widths 16k, 32k, 64k).
Not implemented: the stochastic depth the paper combines RoR with for its best results.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model


class OptionAShortcut(nn.Module):
    """He et al.'s CIFAR option A: subsample by the stride, zero-pad the extra channels."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def projection(cin: int, cout: int, stride: int) -> nn.Module:
    """Type-B shortcut: identity when the shape is kept, else 1×1 conv (stride) + BN."""
    if cin == cout and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, + shortcut (+ RoR's extra shortcuts), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (OptionAShortcut(cin, cout, stride) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = out + self.shortcut(x)
        if extra is not None:
            out = out + extra
        return F.relu(out)


class PreActBlock(nn.Module):
    """WRN block: BN-ReLU-conv3×3-[dropout]-BN-ReLU-conv3×3, + shortcut (+ extra)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.project = cin != cout or stride != 1
        # WRN's projection is a 1×1 conv of the pre-activated input.
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False) if self.project
                         else nn.Identity())

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        out = self.conv2(self.drop(F.relu(self.bn2(self.conv1(a)))))
        out = out + self.shortcut(a if self.project else x)
        return out if extra is None else out + extra


class RoRBackbone(nn.Module):
    """Stem, three stages, the level shortcuts, and (pre-activation) the final BN-ReLU."""

    def __init__(self, in_chans: int, n: int, widths: tuple[int, int, int], preact: bool,
                 levels: int, dropout: float) -> None:
        super().__init__()
        self.levels, self.preact = levels, preact
        self.stem = (nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False) if preact else
                     nn.Sequential(nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(16), nn.ReLU(inplace=True)))
        stages, cin = [], 16
        for s, w in enumerate(widths):
            stride = 1 if s == 0 else 2
            blocks = [PreActBlock(cin if b == 0 else w, w, stride if b == 0 else 1, dropout)
                      if preact else BasicBlock(cin if b == 0 else w, w, stride if b == 0 else 1)
                      for b in range(n)]
            stages.append(nn.ModuleList(blocks))
            cin = w
        self.stages = nn.ModuleList(stages)
        ins = [16, widths[0], widths[1]]
        self.middle_shortcuts = nn.ModuleList(
            projection(ci, w, 1 if s == 0 else 2)
            for s, (ci, w) in enumerate(zip(ins, widths, strict=True))
        ) if levels >= 3 else nn.ModuleList()
        self.root_shortcut = projection(16, widths[-1], 4) if levels >= 2 else None
        self.post = (nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True)) if preact
                     else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        root_in = x
        last = len(self.stages) - 1
        for s, stage in enumerate(self.stages):
            stage_in = x
            for b, block in enumerate(stage):
                extra = None
                if b == len(stage) - 1:
                    if self.middle_shortcuts:
                        extra = self.middle_shortcuts[s](stage_in)
                    if s == last and self.root_shortcut is not None:
                        root = self.root_shortcut(root_in)
                        extra = root if extra is None else extra + root
                x = block(x, extra)
        return self.post(x)

    def count_shortcuts(self) -> dict[str, int]:
        """Shortcut modules per level: root, middle, final (block)."""
        return {"root": int(self.root_shortcut is not None), "middle": len(self.middle_shortcuts),
                "final": sum(len(stage) for stage in self.stages)}


class RoR(CnnlabModel):
    """RoR-``levels`` over a CIFAR ResNet (``widen_factor=1``, basic blocks) or a pre-activation
    WRN (``widen_factor`` > 1 or ``preact=True``)."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 depth: int = 110, widen_factor: int = 1, preact: bool | None = None,
                 levels: int = 3, dropout: float = 0.0, norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        preact = widen_factor > 1 if preact is None else preact
        base = 4 if preact else 2
        if depth < 6 + base or (depth - base) % 6:
            raise ModelError(f"RoR depth must be 6n + {base} (n ≥ 1) for "
                             f"{'a WRN' if preact else 'a basic-block ResNet'}, got {depth}")
        if levels not in (1, 2, 3):
            raise ModelError(f"RoR levels must be 1, 2 or 3, got {levels}")
        if dropout and not preact:
            raise ModelError("RoR dropout is a WRN option (preact=True or widen_factor > 1)")
        n = (depth - base) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.features = RoRBackbone(in_chans, n, widths, preact, levels, dropout)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(widths[-1], num_classes))
        self._feature_info = [FeatureInfo("stem", "features.stem", 16, 1)] + [
            FeatureInfo(f"stage{s + 1}", f"features.stages.{s}.{n - 1}", w, 2**s)
            for s, w in enumerate(widths)]
        he_init(self)


@register_model("ror3-resnet110", family="ror", paper="Zhang et al., IEEE TCSVT 2017", year=2016,
                input_size=(3, 32, 32), num_classes=10, aliases=("ror", "ror3-110"))
def ror3_resnet110(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                   depth: int = 110, levels: int = 3, norm: str = "standardize") -> RoR:
    """RoR-3-110: root + middle + final shortcuts over the option-A CIFAR ResNet-110."""
    return RoR(num_classes=num_classes, in_chans=in_chans, input_size=input_size, depth=depth,
               widen_factor=1, preact=False, levels=levels, norm=norm)


@register_model("ror3-wrn-16-4", family="ror", paper="Zhang et al., IEEE TCSVT 2017", year=2016,
                input_size=(3, 32, 32), num_classes=10, aliases=("ror3-wrn",))
def ror3_wrn(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32), depth: int = 16,
             widen_factor: int = 4, levels: int = 3, dropout: float = 0.0,
             norm: str = "standardize") -> RoR:
    """RoR-3-WRN-d-k over a pre-activation WRN (the paper's best: RoR-3-WRN58-4 + SD)."""
    return RoR(num_classes=num_classes, in_chans=in_chans, input_size=input_size, depth=depth,
               widen_factor=widen_factor, preact=True, levels=levels, dropout=dropout, norm=norm)
