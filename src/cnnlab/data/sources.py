"""Named data sets: name → function that returns a :class:`Dataset`.

Each loader reads its canonical files from ``data_dir`` (or, for digits, from scikit-learn) and
raises :class:`DataError` naming the missing or malformed file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset, Split, stratified_split

SourceFn = Callable[..., Dataset]
SOURCES: dict[str, SourceFn] = {}


def source(name: str) -> Callable[[SourceFn], SourceFn]:
    def wrap(fn: SourceFn) -> SourceFn:
        if name in SOURCES:
            raise ValueError(f"data source '{name}' registered twice")
        SOURCES[name] = fn
        return fn

    return wrap


@source("digits")
def load_digits(data_dir: Path | None = None, *, seed: int = 0, test_fraction: float = 0.2,
                **_: object) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 17 grey levels), embedded: no download.

    Pixels 0..16 are scaled to 0..255 so every source hands the loader the same uint8 range.
    There is no official test split, so a seeded stratified one is made.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return Dataset(
        name="digits",
        classes=[str(i) for i in range(10)],
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        source="sklearn.datasets.load_digits",
        info={"test_split": f"stratified {test_fraction:.0%} held out, seed {seed}"},
    )
