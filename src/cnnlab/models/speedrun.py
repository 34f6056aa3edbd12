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

* **A stem without padding** (``stem_padding=0``, what the preset trains): the 5×5 stride-2
  stem reads the 28×28 digit as 12×12 instead of 14×14, and every later map shrinks with it
  (6×6, 3×3): 2.78 M multiply-adds instead of 4.07 M, an epoch ~1.4× faster (fp32, AVX2), and
  nothing lost — MNIST's digits sit in a 20×20 box centred in the frame, and the unpadded stem
  still sees every pixel but the last row and column, which hold under 0.02 % of the training
  set's ink. 5 seeds × 2 epochs: 99.50 % against 99.50 % padded; × 3 epochs 99.55 against 99.52 %.

Default ``cfg`` ``[32, 32, "M", 64, "M", 128]``: 4.07 M multiply-adds per 28×28 image, 123 k
parameters (``cnnlab zoo mnist-speednet``; 2.78 M and 114 k with ``stem_padding=0``).
Size-agnostic through ``ceil_mode`` pools, so it also runs on 8×8 digits (tests) and 32×32
images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import CnnlabModel, FeatureInfo, he_init
from .fastconv import FastConv3x3
from .fused import act_kind, can_fuse, pool_bn_act
from .registry import register_model


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1,
                  padding: int | None = None) -> list[nn.Module]:
    padding = k // 2 if padding is None else padding
    return [nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout),
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
                 cfg: list | None = None, stem_kernel: int = 5, stem_padding: int | None = None,
                 head: str = "flatten", norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        if head not in ("flatten", "max", "avg"):
            raise ValueError(f"head must be flatten, max or avg, got '{head}'")
        if stem_padding is not None and not 0 <= stem_padding <= stem_kernel // 2:
            raise ValueError(f"stem_padding must be 0..{stem_kernel // 2} (the stem is "
                             f"{stem_kernel}x{stem_kernel}), got {stem_padding}")
        cfg = list(cfg or SPEEDNET_CFG)
        cin = int(cfg[0])
        layers: list[nn.Module] = _conv_bn_relu(in_chans, cin, stem_kernel, 2, stem_padding)
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
                   cfg: list | None = None, stem_kernel: int = 5, stem_padding: int | None = None,
                   head: str = "flatten", norm: str = "standardize") -> MnistSpeedNet:
    return MnistSpeedNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                         cfg=cfg, stem_kernel=stem_kernel, stem_padding=stem_padding, head=head,
                         norm=norm)


# -- cifar-speednet: the CIFAR-10 speed-run net -------------------------------------------------

CIFAR_SPEEDNET_WIDTHS: tuple[int, int, int] = (64, 256, 256)


class _SpeedBN(nn.BatchNorm2d):
    """BatchNorm with a frozen unit scale and fast-moving running statistics.

    Only the shift is learned (the scale of a layer followed by GELU/ReLU and then another
    BN is redundant), and the running averages move 0.4 of the way per step (PyTorch
    ``momentum=0.4``): a run of a few hundred steps must not evaluate with statistics that
    still remember the first epoch. Both as in airbench (Jordan 2024).
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


def _dirac_conv(cin: int, cout: int, fast: bool = True) -> nn.Conv2d:
    """3×3 conv whose first ``cin`` filters start as the identity: every block begins as an
    implicit residual connection (airbench's init; Zagoruyko & Komodakis's DiracNets idea).
    ``fast``: a :class:`FastConv3x3`, whose bf16 weight gradient on the small maps of the last
    groups is one im2col GEMM, 2-8x faster there than oneDNN's (models/fastconv.py); the same
    parameters and arithmetic up to bf16 rounding."""
    conv = FastConv3x3(cin, cout) if fast else nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


class _Pool2(nn.MaxPool2d):
    """2×2 max-pool that keeps a 1-pixel map (tiny inputs such as 8×8 digits) instead of failing;
    at 32×32 it is exactly MaxPool2d(2) (31 → 15 → 7 → 3)."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2, ceil_mode=min(x.shape[-2:]) < 2)


ACTIVATIONS = {"gelu": nn.GELU, "relu": lambda: nn.ReLU(inplace=True)}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got '{name}'")
    return ACTIVATIONS[name]()


class ConvGroup(nn.Sequential):
    """conv 3×3 → max-pool 2 → BN → act → conv 3×3 → BN → act: one resolution step.

    ``fused``: "max-pool → BN → act" and "BN → act" each run as one fused CPU kernel
    (models/fused.py: ~2.2× faster than the eager layers in training, the same arithmetic up
    to rounding) where it applies, in training and in gradient-free evaluation; the layers
    stay what the state dict and hooks see.
    """

    def __init__(self, cin: int, cout: int, act: str = "gelu", fast_conv: bool = True,
                 fused: bool = True) -> None:
        super().__init__(_dirac_conv(cin, cout, fast_conv), _Pool2(), _SpeedBN(cout),
                         _activation(act), _dirac_conv(cout, cout, fast_conv), _SpeedBN(cout),
                         _activation(act))
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return super().forward(x)
        conv1, pool, bn1, act1, conv2, bn2, act2 = self
        kind = act_kind(act1)
        x = conv1(x)
        if kind and can_fuse(x, bn1, True, pool, act1):
            x = pool_bn_act(x, bn1, kind, pool=True)
        else:
            x = act1(bn1(pool(x)))
        x = conv2(x)
        if kind and can_fuse(x, bn2, False, act2):
            return pool_bn_act(x, bn2, kind, pool=False)
        return act2(bn2(x))


class CifarSpeedNet(CnnlabModel):
    """``cifar-speednet``: the airbench-style CIFAR-10 speed-run net (Jordan 2024).

    ================  ===============================================  ==============
    layer             what                                             output (32²)
    ================  ===============================================  ==============
    whiten            2×2 conv, 24 filters = ± the 12 eigenvectors of  24 × 31 × 31
                      the 2×2×3 patch covariance scaled by 1/√λ
                      (fixed, set from the training data), + bias
    group1            ConvGroup 24 → 64                                64 × 15 × 15
    group2            ConvGroup 64 → 256                               256 × 7 × 7
    group3            ConvGroup 256 → 256                              256 × 3 × 3
    head              global max-pool → linear 256 → 10 (no bias) ×    10
                      ``scale`` (1/9)
    ================  ===============================================  ==============

    Why it is fast to train: the whitening layer hands the first conv decorrelated inputs
    (what ZCA does for the whole image, done per 2×2 patch, so it costs 24 filters); every
    block starts as an identity (Dirac init); BN has only a learned shift; the logits are
    scaled down so label-smoothed cross-entropy starts near its minimum slope. 118 M
    multiply-adds per 32×32 image. :meth:`init_from_data` must run before training
    (``cnnlab train`` calls it); a checkpoint carries the fitted whitening weights.
    """

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 widths: list[int] | tuple[int, ...] = CIFAR_SPEEDNET_WIDTHS,
                 whiten_kernel: int = 2, scale: float = 1 / 9, act: str = "gelu",
                 fast_conv: bool = True, fused: bool = True,
                 norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        if len(widths) != 3:
            raise ValueError(f"widths must list 3 group widths, got {list(widths)}")
        for name, value in (("fast_conv", fast_conv), ("fused", fused)):
            if not isinstance(value, bool):  # "maybe" would silently count as true
                raise ValueError(f"{name} must be true or false, got {value!r}")
        w1, w2, w3 = (int(w) for w in widths)
        whiten_width = 2 * in_chans * whiten_kernel ** 2
        self.whiten = nn.Conv2d(in_chans, whiten_width, whiten_kernel, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.features = nn.Sequential(self.whiten, _activation(act),
                                      ConvGroup(whiten_width, w1, act, fast_conv, fused),
                                      ConvGroup(w1, w2, act, fast_conv, fused),
                                      ConvGroup(w2, w3, act, fast_conv, fused))
        self.scale = float(scale)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                                  nn.Linear(w3, num_classes, bias=False))
        nn.init.zeros_(self.whiten.bias)
        self._feature_info = [FeatureInfo("whiten", "features.1", whiten_width, 1),
                              FeatureInfo("group1", "features.2", w1, 2),
                              FeatureInfo("group2", "features.3", w2, 4),
                              FeatureInfo("group3", "features.4", w3, 8)]

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f) * self.scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from training images (float, [0, 1], N×C×H×W).

        The covariance of every k×k patch of the normalized images is eigendecomposed; each
        eigenvector divided by √(λ + eps) is a filter whose outputs have unit variance and are
        uncorrelated, and its negative is kept too so the GELU after it loses nothing.
        """
        k = self.whiten.kernel_size[0]
        x = self.norm(images.float())
        c = x.shape[1]
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        order = eigenvalues.argsort(descending=True)
        filters = (eigenvectors[:, order].T / (eigenvalues[order, None] + eps).sqrt())
        filters = filters.view(-1, c, k, k).float()
        self.whiten.weight.copy_(torch.cat([filters, -filters]))


@register_model("cifar-speednet", family="speedrun",
                paper="airbench-style CIFAR-10 speed-run net (Jordan 2024)", year=2024,
                input_size=(3, 32, 32), num_classes=10, aliases=("airbench-net",))
def cifar_speednet(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                   widths: list[int] | tuple[int, ...] = CIFAR_SPEEDNET_WIDTHS,
                   whiten_kernel: int = 2, scale: float = 1 / 9, act: str = "gelu",
                   fast_conv: bool = True, fused: bool = True,
                   norm: str = "standardize") -> CifarSpeedNet:
    return CifarSpeedNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                         widths=widths, whiten_kernel=whiten_kernel, scale=scale, act=act,
                         fast_conv=fast_conv, fused=fused, norm=norm)
