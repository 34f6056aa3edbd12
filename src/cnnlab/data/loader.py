"""Batches sliced from in-memory uint8 tensors: float [0, 1], augmented as tensor ops.

No DataLoader workers and no per-image Python: for data that fits in memory, a random
permutation plus tensor slicing is the fastest input pipeline on a CPU (GUIDE.md §5).
Each epoch's order comes from a generator seeded with (seed, epoch), so a resumed run sees
exactly the batches the uninterrupted run would have seen. Under DDP every rank takes its own
shard of each global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .dataset import Split

Augment = Callable[..., torch.Tensor]  # (x, gen, idx, epoch) -> x; see data/augment.py


class Loader:
    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment | None = None,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.split = split
        self.batch_size = batch_size  # the *global* batch; each rank gets batch_size / world_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.channels_last = channels_last
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self) -> torch.Generator:
        # One stream per (seed, epoch): identical on every rank for the permutation.
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        gen = self._generator()
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        # Augmentation randomness differs per rank but is still a function of (seed, epoch, rank).
        aug_gen = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 31 + self.rank)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.world_size > 1:
                idx = idx.tensor_split(self.world_size)[self.rank]
            x = self.split.images[idx].to(self.device, non_blocking=True).float().div_(255.0)
            y = self.split.labels[idx].to(self.device, non_blocking=True)
            if self.augment is not None:
                x = self.augment(x, aug_gen, idx, self.epoch)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
