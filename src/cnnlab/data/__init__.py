"""Data: named sources and image folders → one uint8 tensor per split → batched Loader."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError, unknown
from .augment import build_augment
from .dataset import Dataset, Split, stratified_split
from .folder import load_folder
from .loader import Loader
from .normalize import channel_stats, fit_normalization
from .sources import SOURCES

__all__ = [
    "SOURCES", "Dataset", "Loader", "Split", "build_augment", "channel_stats",
    "default_data_dir", "fit_normalization", "load_data", "load_folder",
    "stratified_split",
]


def default_data_dir() -> Path:
    """``$CNNLAB_DATA`` or ``~/.cache/cnnlab``."""
    return Path(os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab").expanduser()


def load_data(
    name_or_path: str = "digits",
    *,
    data_dir: str | Path | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    skip_corrupt: bool = False,
    cache: bool = True,
) -> Dataset:
    """Load a named data set (digits, mnist, fashion-mnist, cifar10, cifar100) or an image folder.

    Named sets read their files from ``data_dir`` (default ``$CNNLAB_DATA`` or ``~/.cache/cnnlab``);
    a path loads a folder or .zip of class folders (:func:`cnnlab.data.folder.load_folder`).
    Decoded pixels are cached in ``data_dir/.cache`` unless ``cache=False``.
    ``image_size`` (N or (H, W)) and ``channels`` (1 or 3) resize/convert every image.

    ``val_fraction``: where the data has no test split (digits, a single-root folder) that share
    of each class becomes the test split (default 0.2); where it has one, that share of the
    training split becomes a validation split.
    """
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    key = name_or_path.strip().lower()
    path = Path(name_or_path).expanduser()
    kwargs = dict(seed=seed, skip_corrupt=skip_corrupt, cache=cache, image_size=image_size,
                  channels=channels)
    if key in SOURCES:
        has_test_split = key != "digits"
        if not has_test_split:
            kwargs["test_fraction"] = val_fraction or 0.2
        ds = SOURCES[key](data_dir, **kwargs)
        if has_test_split and val_fraction:
            ds = _hold_out_val(ds, val_fraction, seed)
    elif path.exists():
        ds = load_folder(path, val_fraction=val_fraction, data_dir=data_dir, **kwargs)
    elif "/" in name_or_path or "\\" in name_or_path or name_or_path.startswith("."):
        raise DataError(f"data folder not found: {path}")
    else:
        raise DataError(unknown("data set", name_or_path, SOURCES) + " — or give a folder path")
    return ds


def _hold_out_val(ds: Dataset, fraction: float, seed: int) -> Dataset:
    keep, held = stratified_split(ds.train.labels, fraction, seed)
    ds.val = ds.train.subset(held)
    ds.train = ds.train.subset(keep)
    ds.info["val_split"] = f"stratified {fraction:.0%} of train held out, seed {seed}"
    return ds
