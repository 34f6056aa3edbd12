"""Research layers: kernel shapes, Gabor modulation, binary-tree blocks, manifold kernels.

Each layer works alone and as an option of ``research-cifar`` (:mod:`cnnlab.models.research`).

* :class:`HexConv2d` — Z. Sun, M. Ozay, T. Okatani, "Design of Kernels in Convolutional Neural
  Networks for Image Classification", ECCV 2016. A 3×3 kernel with the two corners of one side
  removed: 7 taps whose rows (2-3-2 cells) approximate a hexagon on the square grid. Its
  orientation (which side loses its corners) turns by 90° from layer to layer, so a stack of them
  has a roughly isotropic receptive field.
* :class:`GaborConv2d` — S. Luan, C. Chen, B. Zhang, J. Han, J. Liu, "Gabor Convolutional
  Networks", IEEE TIP 2018. Every learned filter C_i is modulated by a fixed Gabor bank:
  C_{i,u} = C_i ∘ G(u, v), one copy per orientation u of the layer's scale v.
* :class:`BinaryTreeBlock` — Y. Zhang, M. Ozay, S. Li, T. Okatani, "Truncating Wide Networks
  Using Binary Tree Architectures", ICCV 2017 ("BitNet"). Width halves at every level of a
  binary tree and the features of all levels are concatenated.
* :class:`ManifoldConv2d` — M. Ozay, T. Okatani, "Optimization on Submanifolds of Convolution
  Kernels in CNNs", arXiv 2016. Kernels on the sphere, oblique or Stiefel manifold, trained with
  :class:`cnnlab.train.riemannian.RiemannianSGD`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# -- quasi-hexagonal kernels (Sun, Ozay & Okatani 2016) -------------------------------------------

HEX_ORIENTATIONS = 4


def hex_mask(orientation: int = 0) -> torch.Tensor:
    """3×3 {0, 1} mask with 7 active taps.

    The centre and its six nearest neighbours on a lattice whose alternate columns (or rows) are
    offset by half a cell, snapped to the square grid: columns of 2-3-2 cells. Orientation 0
    removes the two top corners (Δ-like); orientation r is that mask rotated by r·90°
    counter-clockwise (1: left corners off, 2: bottom corners off — the ∇, 3: right corners off).
    """
    mask = torch.ones(3, 3)
    mask[0, 0] = mask[0, 2] = 0.0
    return torch.rot90(mask, orientation % HEX_ORIENTATIONS, dims=(0, 1)).contiguous()


class HexConv2d(nn.Conv2d):
    """3×3 convolution on a quasi-hexagonal support.

    The mask is a buffer multiplied into the weight in ``forward``, so masked taps get exactly zero
    gradient; they are also stored as zeros (call :meth:`enforce_constraint` after re-initialising
    the weight), so weight decay and Adam keep them at zero and exported weights show the shape.
    """

    def __init__(self, in_channels: int, out_channels: int, orientation: int = 0, stride: int = 1,
                 bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.orientation = orientation % HEX_ORIENTATIONS
        self.register_buffer("mask", hex_mask(self.orientation))
        self.enforce_constraint()

    @torch.no_grad()
    def enforce_constraint(self) -> None:
        self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", orientation={self.orientation}"


# -- Gabor convolutions (Luan et al. 2018) ----------------------------------------------------


def gabor_bank(orientations: int = 4, scale: int = 1, size: int = 3,
               sigma: float = math.pi) -> torch.Tensor:
    """Real parts of the GCN Gabor filters G(u, v), shape (U, size, size).

    G(u, v)(z) = ‖k‖²/σ² · exp(−‖k‖²‖z‖²/(2σ²)) · (cos(k·z) − exp(−σ²/2)), with
    k = k_v (cos θ_u, sin θ_u), k_v = (π/2)/√2^(v−1), θ_u = uπ/U. Each filter is then rescaled to
    [0, 1] (min–max), as in the authors' released PyTorch code, so the modulation re-weights taps
    instead of flipping their signs. σ = π follows that code (the paper's text uses 2π); at 3×3
    the two differ little because the envelope is nearly flat.
    """
    k = (math.pi / 2) / math.sqrt(2) ** (scale - 1)
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")  # rows are y, columns x
    theta = torch.arange(orientations, dtype=torch.float64) * math.pi / orientations
    envelope = (k * k / sigma**2) * torch.exp(-(k * k) * (x**2 + y**2) / (2 * sigma**2))
    phase = k * (torch.cos(theta)[:, None, None] * x + torch.sin(theta)[:, None, None] * y)
    g = envelope * (torch.cos(phase) - math.exp(-(sigma**2) / 2))
    lo = g.amin(dim=(1, 2), keepdim=True)
    hi = g.amax(dim=(1, 2), keepdim=True)
    return ((g - lo) / (hi - lo).clamp_min(1e-12)).float()


class GaborConv2d(nn.Module):
    """Gabor-modulated convolution (a GCN "GC layer").

    Channels are counted as tensor channels, laid out as (filter, orientation): ``in_channels``
    and ``out_channels`` must be multiples of ``orientations`` = U. The layer learns
    ``out_channels/U`` filters C_o of shape (in_channels, k, k) — an ordinary 4-D conv weight, so
    channels-last and weight tools work; the weight actually convolved is C_{o,u} = C_o ∘ G(u, v)
    for u = 1..U, giving U orientation channels per learned filter, so the layer has U× fewer
    learned weights than a plain conv of the same widths.

    Simplifications: only the real part of the Gabor filter; one scale v per layer (the paper's
    per-layer scale); a network's input is replicated U times by :class:`OrientationExpand`, as the
    authors' code does for the first layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 orientations: int = 4, scale: int = 1, stride: int = 1, padding: int | None = None,
                 bias: bool = False) -> None:
        super().__init__()
        U = orientations
        if in_channels % U or out_channels % U:
            raise ValueError(f"GaborConv2d channels ({in_channels}→{out_channels}) must be "
                             f"multiples of the {U} orientations")
        self.in_channels, self.out_channels, self.orientations = in_channels, out_channels, U
        self.kernel_size, self.scale, self.stride = kernel_size, scale, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.weight = nn.Parameter(torch.empty(out_channels // U, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("bank", gabor_bank(U, scale, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")

    def modulated_weight(self) -> torch.Tensor:
        """(out_channels, in_channels, k, k): entry [o·U + u, c] = C[o, c] ∘ G[u]."""
        o, c, k, _ = self.weight.shape
        w = self.weight[:, None] * self.bank[None, :, None]  # (o, U, c, k, k)
        return w.reshape(o * self.orientations, c, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.modulated_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"orientations={self.orientations}, scale={self.scale}, stride={self.stride}")


class OrientationExpand(nn.Module):
    """(N, C, H, W) → (N, C·U, H, W): every channel copied U times (one per orientation)."""

    def __init__(self, orientations: int) -> None:
        super().__init__()
        self.orientations = orientations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.orientations, dim=1)


class OrientationMaxPool(nn.Module):
    """(N, C·U, H, W) → (N, C, H, W): max over each filter's U orientation channels (the GCN
    reference model does this before its classifier, for a roughly rotation-invariant code)."""

    def __init__(self, orientations: int) -> None:
        super().__init__()
        self.orientations = orientations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, c // self.orientations, self.orientations, h, w).amax(dim=2)


# -- binary-tree blocks (Zhang, Ozay, Li & Okatani 2017) -----------------------------------------

ConvFactory = Callable[[int, int, int], nn.Module]  # (cin, cout, stride) → conv module


def conv_unit(conv: nn.Module, cout: int) -> nn.Sequential:
    """conv → BN → ReLU around any conv module."""
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _square(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BinaryTreeBlock(nn.Module):
    """A binary tree of conv units of depth K whose leaves concatenate to width D.

    The design of the authors' released code (``bitnet.lua``): the input is the root; a node at
    level i (i = 1..K) has width D/2^i, and every internal node has two children — a leaf, whose
    features go straight to the output, and the next internal node. Level K ends with two leaves.
    Output = concat(leaf_1, …, leaf_K, node_K), widths D/2 + D/4 + … + D/2^K + D/2^K = D.
    2K conv units (K = 1 is a single conv of width D), K on the longest path; only the first level
    sees the block input and carries the stride. Against K stacked convs of width D (same depth and
    output width) the levels after the first cost about D²/3 instead of (K−1)·D² weights per tap.
    """

    def __init__(self, in_channels: int, width: int, depth: int, stride: int = 1,
                 conv: ConvFactory = _square) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"tree depth must be ≥ 1, got {depth}")
        if depth > 1 and width % 2**depth:
            raise ValueError(f"tree width {width} must be divisible by 2^depth = {2**depth}")
        self.in_channels, self.width, self.depth = in_channels, width, depth
        if depth == 1:
            self.nodes = nn.ModuleList([conv_unit(conv(in_channels, width, stride), width)])
            self.leaves = nn.ModuleList()
            return
        nodes, leaves, cin = [], [], in_channels
        for level in range(1, depth + 1):
            cout, s = width >> level, stride if level == 1 else 1
            nodes.append(conv_unit(conv(cin, cout, s), cout))
            leaves.append(conv_unit(conv(cin, cout, s), cout))
            cin = cout
        self.nodes, self.leaves = nn.ModuleList(nodes), nn.ModuleList(leaves)

    def num_convs(self) -> int:
        return len(self.nodes) + len(self.leaves)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depth == 1:
            return self.nodes[0](x)
        outs = []
        for node, leaf in zip(self.nodes, self.leaves, strict=True):
            outs.append(leaf(x))
            x = node(x)
        return torch.cat([*outs, x], dim=1)


# -- manifold-constrained kernels (Ozay & Okatani 2016) ------------------------------------------


class ManifoldConv2d(nn.Conv2d):
    """A convolution whose kernel lives on the ``sphere``, ``oblique`` or ``stiefel`` manifold
    (definitions in :mod:`cnnlab.train.riemannian`).

    The weight is tagged ``weight._manifold`` so :class:`~cnnlab.train.riemannian.RiemannianSGD`
    keeps it on the manifold; a Euclidean optimizer would let it drift off. Unit-norm filters
    change activation scales, so follow the layer with BatchNorm (as ``research-cifar`` does).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 manifold: str = "sphere", stride: int = 1, padding: int | None = None,
                 bias: bool = False) -> None:
        from ..train.riemannian import check_manifold

        super().__init__(in_channels, out_channels, kernel_size, stride,
                         kernel_size // 2 if padding is None else padding, bias=bias)
        self.manifold = check_manifold(manifold)
        self.weight._manifold = manifold
        self.enforce_constraint()

    @torch.no_grad()
    def enforce_constraint(self) -> None:
        """Move the weight onto the manifold (after any re-initialisation)."""
        from ..train.riemannian import to_manifold

        self.weight.copy_(to_manifold(self.manifold, self.weight))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", manifold={self.manifold}"


def enforce_constraints(model: nn.Module) -> nn.Module:
    """Re-apply every layer's constraint (hex masks, manifolds), e.g. after :func:`he_init`."""
    for m in model.modules():
        if isinstance(m, (HexConv2d, ManifoldConv2d)):
            m.enforce_constraint()
    return model
