"""Where explanations get their images: a run's own data split, or an image file.

An image file is decoded exactly as the data pipeline decodes folder images
(:func:`cnnlab.data.images.decode_image`: colour mode → the model's channels, bilinear antialiased
resize to the model's input size); the returned note says what was changed, so the caller can
tell the user.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Split
from ..errors import ConfigError, DataError
from .common import input_size_of


def run_split(run_dir: str | Path, meta: dict, split: str = "test") -> tuple[Split, list[str]]:
    """The split of the run's own data, reloaded as ``cnnlab evaluate`` does (the run's
    config.yaml data settings, images adapted to the model's channels and size)."""
    from ..api import load_run_data

    ds = load_run_data(run_dir, meta)
    return ds.split(split), list(meta.get("classes") or ds.classes)


def image_at(part: Split, index: int, name: str = "test") -> tuple[torch.Tensor, int]:
    """Image ``index`` of a split as float (C, H, W) in [0, 1], and its label."""
    if not 0 <= index < len(part):
        raise ConfigError(f"--index {index} is out of range: the {name} split has {len(part)} "
                          f"images (0–{len(part) - 1})")
    return part.images[index].float() / 255.0, int(part.labels[index])


def image_from_file(path: str | Path, model: nn.Module) -> tuple[torch.Tensor, str | None]:
    """Decode ``path`` for ``model``: float (C, H, W) in [0, 1], and a note when the file had
    another size or colour mode (None when it fitted as it was)."""
    from PIL import Image, UnidentifiedImageError

    from ..data.images import decode_image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    c, h, w = input_size_of(model)
    try:
        with Image.open(path) as img:
            mode, (iw, ih) = img.mode, img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    x = decode_image(path, str(path), c, (h, w)).float() / 255.0
    changes = []
    want = "L" if c == 1 else "RGB"
    if mode != want:
        changes.append(f"converted {mode} to {'grey (L)' if c == 1 else 'RGB'}")
    if (ih, iw) != (h, w):
        changes.append(f"resized {iw}×{ih} to {w}×{h} (bilinear, antialiased)")
    note = (f"{path.name}: {' and '.join(changes)}, as the model's data pipeline does"
            if changes else None)
    return x, note
