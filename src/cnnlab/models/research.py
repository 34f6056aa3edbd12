"""``research-cifar``: one small VGG-style CIFAR net on which every research layer is an option.

The plain net (``conv="square"``, ``tree_depth=1``) is three stages of two 3×3 conv-BN-ReLU units,
64-64 / 128-128 / 256-256 channels, with a 2×2 max-pool after each stage (VGG, Simonyan &
Zisserman 2015), global average pooling and one FC layer. Options swap in the layers of
:mod:`cnnlab.models.layers` and :mod:`cnnlab.models.stn` while keeping the widths:

* ``conv="hex"`` — quasi-hexagonal 7-tap kernels (Sun et al. 2016), orientation turning 90° per
  layer (0, 1, 2, 3, 0, 1, ...).
* ``conv="gabor"`` — Gabor-modulated convolutions (Luan et al. 2018), ``orientations`` U
  orientation channels per learned filter, Gabor scale v = stage number (1, 2, 3); the image is
  replicated U times first and the head max-pools over orientations, as in GCN.
* ``conv="sphere" | "oblique" | "stiefel"`` — manifold-constrained kernels (Ozay & Okatani 2016);
  train them with ``RiemannianSGD`` (:mod:`cnnlab.train.riemannian`).
* ``tree_depth=K`` (K ≥ 2) — every conv unit of width D becomes a BitNet binary-tree block of
  depth K and output width D (Zhang et al. 2017), built from the chosen ``conv`` kind.
* ``stn=True`` — a spatial transformer in front (Jaderberg et al. 2015).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import ModelError
from .base import CnnlabModel, FeatureInfo, he_init
from .layers import (
    BinaryTreeBlock,
    GaborConv2d,
    HexConv2d,
    ManifoldConv2d,
    OrientationExpand,
    OrientationMaxPool,
    enforce_constraints,
)
from .registry import register_model
from .stn import with_stn

RESEARCH_CFG = [64, 64, "M", 128, 128, "M", 256, 256, "M"]
CONV_KINDS = ("square", "hex", "gabor", "sphere", "oblique", "stiefel")


def make_conv(kind: str, cin: int, cout: int, stride: int = 1, *, layer: int = 0, stage: int = 0,
              orientations: int = 4) -> nn.Module:
    """A 3×3, padding-1, bias-free conv of the given kind (``layer`` sets the hex orientation,
    ``stage`` the Gabor scale)."""
    if kind == "square":
        return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    if kind == "hex":
        return HexConv2d(cin, cout, orientation=layer, stride=stride)
    if kind == "gabor":
        return GaborConv2d(cin, cout, 3, orientations=orientations, scale=stage + 1, stride=stride)
    return ManifoldConv2d(cin, cout, 3, manifold=kind, stride=stride)


class ResearchCifar(CnnlabModel):
    """The cfg list reads like VGG's table; see the module docstring for the options."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 conv: str = "square", tree_depth: int = 1, orientations: int = 4,
                 cfg: list | None = None, dropout: float = 0.0,
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        if conv not in CONV_KINDS:
            raise ModelError(f"research-cifar: unknown conv '{conv}'; choose from "
                             f"{', '.join(CONV_KINDS)}")
        if tree_depth < 1:
            raise ModelError(f"research-cifar: tree_depth must be ≥ 1, got {tree_depth}")
        cfg = list(cfg or RESEARCH_CFG)
        gabor = conv == "gabor"
        layers: list[nn.Module] = [OrientationExpand(orientations)] if gabor else []
        cin = in_chans * orientations if gabor else in_chans
        stride, stage, unit = 1, 0, 0
        try:
            for item in cfg:
                if item == "M":
                    layers.append(nn.MaxPool2d(2, ceil_mode=True))
                    stride, stage = stride * 2, stage + 1
                    self._feature_info.append(FeatureInfo(
                        f"stage{stage}", f"features.{len(layers) - 1}", cin, stride))
                    continue
                cout = int(item)
                # (cin, cout, stride) → conv of this unit's kind, hex orientation and Gabor scale
                factory = partial(make_conv, conv, layer=unit, stage=stage,
                                  orientations=orientations)
                if tree_depth == 1:
                    layers.append(nn.Sequential(factory(cin, cout, 1), nn.BatchNorm2d(cout),
                                                nn.ReLU(inplace=True)))
                else:
                    layers.append(BinaryTreeBlock(cin, cout, tree_depth, conv=factory))
                cin, unit = cout, unit + 1
        except ValueError as exc:  # channel counts a layer cannot take
            raise ModelError(f"research-cifar (conv={conv}, tree_depth={tree_depth}): {exc}") \
                from exc
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            OrientationMaxPool(orientations) if gabor else nn.Identity(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(cin // orientations if gabor else cin, num_classes))
        he_init(self)
        enforce_constraints(self)  # he_init re-randomised masked hex taps and manifold kernels


@register_model("research-cifar", family="research",
                paper="Sun 2016, Luan 2018, Zhang 2017, Ozay 2016, Jaderberg 2015 (layers)",
                year=2016, input_size=(3, 32, 32), num_classes=10)
def research_cifar(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                   conv: str = "square", tree_depth: int = 1, orientations: int = 4,
                   stn: bool = False, cfg: list | None = None, dropout: float = 0.0,
                   norm: str = "standardize") -> CnnlabModel:
    model = ResearchCifar(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                          conv=conv, tree_depth=tree_depth, orientations=orientations, cfg=cfg,
                          dropout=dropout, norm=norm)
    return with_stn(model) if stn else model
