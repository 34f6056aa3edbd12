"""In-memory data sets: every split is one uint8 tensor (N, C, H, W) plus int64 labels.

Decoding happens once (sources + cache); after that a batch is a slice of a tensor, so the
training loop never runs per-image Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import DataError


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be (N,) and match the images")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class Dataset:
    """A named data set: train and test splits, optional validation split, class names."""

    name: str
    classes: list[str]
    train: Split
    test: Split
    val: Split | None = None
    source: str = ""  # where it came from (path or canonical name), for run metadata
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        """The split called ``name`` (``val``/``valid``/``validation`` are synonyms)."""
        key = {"valid": "val", "validation": "val"}.get(name, name)
        if key not in ("train", "test", "val"):
            raise DataError(f"unknown split '{name}'; choose from train, val, test")
        split = getattr(self, key)
        if split is None:
            raise DataError(f"data set '{self.name}' has no '{name}' split")
        return split

    def summary(self) -> dict:
        """Classes, counts per split, image size: what ``cnnlab data info`` prints."""
        out = {"name": self.name, "source": self.source, "classes": self.classes,
               "image_shape": list(self.image_shape), "splits": {}}
        for key in ("train", "val", "test"):
            split = getattr(self, key)
            if split is not None:
                out["splits"][key] = {"count": len(split),
                                      "per_class": split.counts(self.num_classes)}
        return out


def stratified_split(labels: torch.Tensor, fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (keep, held_out): ``fraction`` of each class held out, seeded, at least one each.

    Stratified so a small, unbalanced folder still has every class on both sides.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--val-fraction must be between 0 and 1, got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        if len(idx) < 2:
            raise DataError(f"class {c} has {len(idx)} image(s); a train/test split needs ≥ 2 "
                            "per class")
        n_held = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def train_subset(split: Split, n: int, num_classes: int, seed: int) -> Split:
    """``n`` images of ``split``, the same share of every class, seeded.

    Why: quick experiments (the degradation curves, a learning-rate sweep) on a fixed slice of a
    big training set; stratified so class balance — and so accuracy — is comparable with the full
    set. Each class keeps at least one image; ``n`` ≥ the split's size returns it unchanged.
    """
    if n >= len(split):
        return split
    gen = torch.Generator().manual_seed(seed)
    fraction = n / len(split)
    keep = []
    for c in range(num_classes):
        idx = torch.nonzero(split.labels == c).flatten()
        if len(idx):
            idx = idx[torch.randperm(len(idx), generator=gen)]
            keep.append(idx[: max(1, round(len(idx) * fraction))])
    return split.subset(torch.cat(keep).sort().values)
