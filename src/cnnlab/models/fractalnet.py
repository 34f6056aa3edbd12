"""FractalNet.

G. Larsson, M. Maire, G. Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR 2017 (arXiv:1605.07648).

Expansion rule: f_1(z) = conv(z), f_{C+1}(z) = join(f_C(f_C(z)), conv(z)). A block with C columns
has columns of 1, 2, 4, …, 2^(C−1) conv units; the deepest has 2^(C−1). Units are 3×3
conv-BN-ReLU; a join is the element-wise **mean** of its inputs, never a sum or a concatenation,
so the net has no pass-through path. The CIFAR net: B = 5 blocks, each followed by 2×2 max-pool,
channels 64, 128, 256, 512, 512; with C = 4 the deepest path has 5 · 8 = 40 conv layers.

Drop-path (regularises co-adaptation of columns, §3.1): *local* drop-path — every join drops each
input with probability 0.15, keeping at least one — and *global* drop-path — one column, the same
in every block, is kept for the whole network; the paper mixes them 50/50 in each mini-batch.
Evaluation uses all columns. Dropout per block, when used, was (0, 0.1, 0.2, 0.3, 0.4).

Implementation choices: the columns are computed iteratively (column i's k-th unit ends at depth
k · 2^(C−1−i)); joins that end at the same depth are merged into one mean over all of them, as in
the paper's figure (a block's last join has C inputs). Drop-path is drawn per sample: half of
every mini-batch takes global drop-path (each such sample its own random column), the other half
local drop-path with its own join masks; every column is computed for the whole batch and joins
average each sample's surviving inputs. So every BatchNorm sees the same mixture in every batch
and its running statistics fit evaluation. Drawing the mode per mini-batch (whole batches through
one column, as the Keras port does) tore the running statistics between distributions: in a short
MNIST check, single columns evaluated at chance. Expect drop-path to slow early training: in the
same check (16×16 MNIST, batch 64, AdamW) the single columns reached 80–94 % within 300–900
steps, while the fully joined C = 4 net sat at chance for 900 steps (C = 3: until ~500 steps;
local drop-path alone: ~300). The paper trains 400 epochs; for short runs set
``drop_path_local=0, global_ratio=0``. Dropout sits right after each convolution (conv →
dropout → BN → ReLU, the order reported for the authors' Caffe model). Pools use ``ceil_mode`` so
inputs smaller than 32×32 (MNIST's 28×28) still survive five halvings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ModelError
from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model

FRACTAL_CHANNELS = (64, 128, 256, 512, 512)
PAPER_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4)


def join(inputs: Sequence[torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
    """Element-wise mean of the inputs that survive drop-path.

    ``keep``: None (all inputs), a bool vector (one flag per input) or a bool matrix
    (inputs × samples) for per-sample drop-path; every sample needs one surviving input.
    """
    if keep is None:
        return sum(inputs[1:], inputs[0]) / len(inputs)
    keep = torch.as_tensor(keep, device=inputs[0].device)
    if not bool(keep.any(0).all()):
        raise ValueError("a join needs at least one surviving input per sample")
    w = keep.to(inputs[0].dtype).reshape(*keep.shape, *[1] * (inputs[0].ndim - keep.ndim + 1))
    out = sum(wi * t for wi, t in zip(w, inputs, strict=True))
    return out / w.sum(0)


def sample_keep(n: int, drop_prob: float, batch: int = 1,
                device: torch.device | None = None) -> torch.Tensor:
    """Local drop-path mask (n × batch): each of ``n`` join inputs dropped with ``drop_prob``
    independently per sample, one random input restored where a sample lost all of them."""
    keep = torch.rand(n, batch, device=device) >= drop_prob
    lost = ~keep.any(0)
    if bool(lost.any()):
        rescue = torch.randint(n, (batch,), device=device)
        keep[rescue, torch.arange(batch, device=device)] |= lost
    return keep


def fractal_unit(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FractalBlock(nn.Module):
    """C columns; ``columns[i]`` is a chain of 2^i conv units (column C−1 is the deepest)."""

    def __init__(self, cin: int, cout: int, columns: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_columns = columns
        self.depth = 2 ** (columns - 1)
        self.columns = nn.ModuleList(
            nn.ModuleList(fractal_unit(cin if k == 0 else cout, cout, dropout)
                          for k in range(2**i))
            for i in range(columns))

    def forward(self, x: torch.Tensor, column: int | None = None, drop_prob: float = 0.0,
                sample_columns: torch.Tensor | None = None) -> torch.Tensor:
        """All columns joined by means; only ``column`` when given.

        Training: ``drop_prob`` is local drop-path; ``sample_columns`` (one entry per sample, −1
        for local) gives the samples under global drop-path the single column they keep.
        """
        if column is not None:
            for unit in self.columns[column]:
                x = unit(x)
            return x
        state = [x] * self.num_columns  # the current input of each column
        out = x
        for d in range(1, self.depth + 1):
            ending = [i for i in range(self.num_columns) if d % (self.depth >> i) == 0]
            outs = [self.columns[i][d // (self.depth >> i) - 1](state[i]) for i in ending]
            out = join(outs, self._keep(ending, x, drop_prob, sample_columns))
            for i in ending:
                state[i] = out
        return out

    @staticmethod
    def _keep(ending: list[int], x: torch.Tensor, drop_prob: float,
              sample_columns: torch.Tensor | None) -> torch.Tensor | None:
        if drop_prob <= 0 and sample_columns is None:
            return None
        keep = sample_keep(len(ending), drop_prob, x.shape[0], x.device)
        if sample_columns is not None:
            on_path = torch.tensor(ending, device=x.device)[:, None] == sample_columns[None]
            # A join the sample's column does not pass through feeds only columns it drops:
            # any mask will do there, so keep everything (no empty means).
            on_path = torch.where(on_path.any(0, keepdim=True), on_path, True)
            keep = torch.where(sample_columns[None] >= 0, on_path, keep)
        return keep


class FractalBackbone(nn.Module):
    """Blocks and pools; draws each training sample's drop-path (global column or local)."""

    def __init__(self, in_chans: int, channels: Sequence[int], columns: int,
                 dropout: Sequence[float], drop_path_local: float, global_ratio: float) -> None:
        super().__init__()
        cins = [in_chans, *channels[:-1]]
        self.blocks = nn.ModuleList(FractalBlock(ci, co, columns, p)
                                    for ci, co, p in zip(cins, channels, dropout, strict=True))
        self.pools = nn.ModuleList(nn.MaxPool2d(2, ceil_mode=True) for _ in channels)
        self.num_columns = columns
        self.drop_path_local = drop_path_local
        self.global_ratio = global_ratio
        self.column: int | None = None  # set to run one column alone (see FractalNet.use_column)
        # Per sample of the last training batch: its global column, or −1 (local drop-path).
        self.last_columns: torch.Tensor | None = None

    def sample_columns(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """``round(global_ratio · batch)`` random samples get a random column, the rest −1."""
        n_global = round(self.global_ratio * batch)
        if n_global == 0:
            return None
        cols = torch.full((batch,), -1, dtype=torch.long, device=device)
        chosen = torch.randperm(batch, device=device)[:n_global]
        cols[chosen] = torch.randint(self.num_columns, (n_global,), device=device)
        return cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop, cols = 0.0, None
        if self.column is None and self.training:
            drop, cols = self.drop_path_local, self.sample_columns(x.shape[0], x.device)
        self.last_columns = cols
        for block, pool in zip(self.blocks, self.pools, strict=True):
            x = pool(block(x, column=self.column, drop_prob=drop, sample_columns=cols))
        return x


class FractalNet(CnnlabModel):
    """B fractal blocks (C columns) with max-pools, then global pool and a linear classifier."""

    def __init__(self, *, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32),
                 blocks: int = 5, columns: int = 4,
                 channels: Sequence[int] = FRACTAL_CHANNELS,
                 drop_path_local: float = 0.15, global_ratio: float = 0.5,
                 dropout: float | Sequence[float] = 0.0, norm: str = "standardize") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        channels = [int(c) for c in channels]
        drops = [float(dropout)] * blocks if isinstance(dropout, (int, float)) else list(dropout)
        if blocks < 1 or columns < 1:
            raise ModelError(f"fractalnet needs blocks ≥ 1 and columns ≥ 1, got {blocks}, "
                             f"{columns}")
        if len(channels) != blocks or len(drops) != blocks:
            raise ModelError(f"fractalnet: {blocks} blocks need {blocks} channels and dropout "
                             f"rates, got {channels} and {drops}")
        if not (0 <= drop_path_local < 1 and 0 <= global_ratio <= 1):
            raise ModelError("fractalnet: drop_path_local must be in [0, 1) and global_ratio in "
                             "[0, 1]")
        self.features = FractalBackbone(in_chans, channels, columns, drops, drop_path_local,
                                        global_ratio)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels[-1], num_classes))
        self._feature_info = [FeatureInfo(f"block{b + 1}", f"features.pools.{b}", c, 2 ** (b + 1))
                              for b, c in enumerate(channels)]
        he_init(self)

    def use_column(self, column: int | None) -> None:
        """Run only column ``column`` (0 = shallowest, C−1 = deepest) in training and
        evaluation — the paper's "deepest column alone" — or all columns again with None."""
        if column is not None and not 0 <= column < self.features.num_columns:
            raise ValueError(f"column must be in [0, {self.features.num_columns}), got {column}")
        self.features.column = column

    def deepest_path_convs(self) -> int:
        """Conv layers on the longest path: B · 2^(C−1)."""
        return sum(len(b.columns[-1]) for b in self.features.blocks)


@register_model("fractalnet", family="fractalnet",
                paper="Larsson, Maire & Shakhnarovich, ICLR 2017", year=2016,
                input_size=(3, 32, 32), num_classes=10, aliases=("fractalnet-40",))
def fractalnet(*, num_classes: int = 10, in_chans: int = 3, input_size=(32, 32), blocks: int = 5,
               columns: int = 4, channels: Sequence[int] = FRACTAL_CHANNELS,
               drop_path_local: float = 0.15, global_ratio: float = 0.5,
               dropout: float | Sequence[float] = 0.0, norm: str = "standardize") -> FractalNet:
    """The paper's 40-layer CIFAR FractalNet (B = 5, C = 4); ``dropout=PAPER_DROPOUT`` for the
    per-block rates of the "+ dropout" rows."""
    return FractalNet(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                      blocks=blocks, columns=columns, channels=channels,
                      drop_path_local=drop_path_local, global_ratio=global_ratio,
                      dropout=dropout, norm=norm)
