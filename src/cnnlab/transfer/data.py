"""Target data for transfer: class selection, adaptation to the backbone, few-shot subsets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_data
from ..data.dataset import Dataset, Split
from ..data.images import adapt_images, resize_images
from ..errors import DataError


def select_classes(ds: Dataset, classes: Sequence[int | str]) -> Dataset:
    """Only the images of ``classes`` (indices or names), relabelled 0..k-1 in the given order.

    ``load_data`` has no class filter; this is how "train on digits 0–4, transfer to 5–9" is built.
    """
    idx: list[int] = []
    for c in classes:
        if isinstance(c, str) and c in ds.classes:
            idx.append(ds.classes.index(c))
        elif isinstance(c, int) or (isinstance(c, str) and c.strip().lstrip("-").isdigit()):
            i = int(c)
            if not 0 <= i < ds.num_classes:
                raise DataError(f"class index {i} is out of range: '{ds.name}' has "
                                f"{ds.num_classes} classes (0–{ds.num_classes - 1})")
            idx.append(i)
        else:
            raise DataError(f"unknown class '{c}' in '{ds.name}'; its classes are: "
                            f"{', '.join(ds.classes)}")
    if len(set(idx)) != len(idx) or len(idx) < 2:
        raise DataError(f"--classes needs at least 2 distinct classes, got {list(classes)}")
    lut = torch.full((ds.num_classes,), -1, dtype=torch.long)
    lut[torch.tensor(idx)] = torch.arange(len(idx))

    def pick(split: Split | None) -> Split | None:
        if split is None:
            return None
        new = lut[split.labels]
        keep = torch.nonzero(new >= 0).flatten()
        return Split(split.images[keep], new[keep])

    return replace(ds, classes=[ds.classes[i] for i in idx], train=pick(ds.train),
                   test=pick(ds.test), val=pick(ds.val))


def adapt_to_model(ds: Dataset, model: nn.Module) -> tuple[Dataset, list[str]]:
    """Convert channels / resize every split to the backbone's input; return what was done.

    A backbone that declares its resampling (``interpolation``, e.g. a timm model's bicubic) is
    fed images resized its way; others get bilinear with antialiasing, as the data pipeline does.
    """
    c, h, w = ds.image_shape
    want_c, (want_h, want_w) = model.in_chans, tuple(model.input_size)
    mode = getattr(model, "interpolation", None)
    notes = []
    if c != want_c:
        notes.append(f"converted '{ds.name}' from {c} to {want_c} channel(s) for the backbone")
    if (h, w) != (want_h, want_w):
        how = f" ({mode}, the backbone's own preprocessing)" if mode else ""
        notes.append(f"resized '{ds.name}' from {h}×{w} to {want_h}×{want_w} for the "
                     f"backbone{how}")
    if not notes:
        return ds, notes

    def fix(split: Split | None) -> Split | None:
        if split is None:
            return None
        images = adapt_images(split.images, None, want_c)
        return Split(resize(images, (want_h, want_w), mode or "bilinear"), split.labels)

    return replace(ds, train=fix(ds.train), test=fix(ds.test), val=fix(ds.val)), notes


def resize(images: torch.Tensor, size: tuple[int, int], mode: str = "bilinear",
           chunk: int = 1024) -> torch.Tensor:
    """uint8 (N, C, H, W) → (N, C, *size) with ``mode`` (bilinear, bicubic or nearest)."""
    if mode not in ("bicubic", "nearest") or tuple(images.shape[2:]) == tuple(size):
        return resize_images(images, size)
    out = torch.empty(images.shape[0], images.shape[1], *size, dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float()
        x = (F.interpolate(x, size=size, mode="nearest-exact") if mode == "nearest" else
             F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True))
        out[i:i + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load_target(target: str, model: nn.Module, *, data_dir: str | None = None,
                classes: Sequence[int | str] | None = None, seed: int = 0,
                val_fraction: float | None = None) -> tuple[Dataset, list[str]]:
    """The target data set, optionally restricted to ``classes``, adapted to ``model``."""
    notes: list[str] = []
    try:
        ds = load_data(target, data_dir=data_dir, seed=seed, val_fraction=val_fraction)
    except DataError:
        # e.g. a folder of mixed-size images: let the loader convert and resize while decoding
        ds = load_data(target, data_dir=data_dir, seed=seed, val_fraction=val_fraction,
                       channels=model.in_chans, image_size=tuple(model.input_size))
        notes.append(f"decoded '{ds.name}' at {model.in_chans}×{model.input_size[0]}×"
                     f"{model.input_size[1]} (channels × height × width) for the backbone")
    if classes:
        ds = select_classes(ds, classes)
    ds, more = adapt_to_model(ds, model)
    return ds, notes + more


def per_class_subset(split: Split, n: int | None, seed: int,
                     classes: Sequence[str] | None = None) -> Split:
    """``n`` images of every class, sampled with ``seed``; ``None`` → the whole split.

    A class with fewer than ``n`` images is an error naming the class and its count.
    """
    if n is None:
        return split
    if n < 1:
        raise DataError(f"--per-class must be ≥ 1 or 'all', got {n}")
    num = int(split.labels.max()) + 1 if len(split) else 0
    if classes is not None:
        num = len(classes)
    counts = split.counts(num)
    short = [(i, k) for i, k in enumerate(counts) if k < n]
    if short:
        names = classes or [str(i) for i in range(num)]
        listed = ", ".join(f"'{names[i]}' has {k}" for i, k in short)
        raise DataError(f"--per-class {n} asks for more images than the training split holds: "
                        f"{listed} (the smallest class has {min(counts)}); pass a smaller "
                        "--per-class or 'all'")
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num):
        idx = torch.nonzero(split.labels == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:n]])
    return split.subset(torch.cat(picks).sort().values)


def parse_per_class(text: str | Sequence[int | None] | None) -> list[int | None]:
    """``"5,10,all"`` → ``[5, 10, None]`` (``None`` = every image)."""
    if text is None:
        return [None]
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int | None] = []
    for item in items:
        if item is None or str(item).strip().lower() == "all":
            out.append(None)
            continue
        try:
            out.append(int(item))
        except ValueError:
            raise DataError(f"--per-class takes numbers or 'all' separated by commas, "
                            f"got '{item}'") from None
        if out[-1] < 1:
            raise DataError(f"--per-class must be ≥ 1 or 'all', got {item}")
    return out


def write_folder(ds: Dataset, root: str | Path) -> Path:
    """Write ``ds`` as PNG files ``root/{train,test}/<class>/<i>.png`` (a folder ``load_data``
    and ``cnnlab train`` read) — how a class subset becomes a backbone's training data."""
    from PIL import Image

    root = Path(root)
    for key in ("train", "test"):
        split: Split = getattr(ds, key)
        for i, (img, y) in enumerate(zip(split.images, split.labels.tolist(), strict=True)):
            d = root / key / ds.classes[y]
            d.mkdir(parents=True, exist_ok=True)
            arr = img.permute(1, 2, 0).numpy()
            Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(d / f"{i}.png")
    return root
