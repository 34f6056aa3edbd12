"""Decoding one image file into a uint8 (C, H, W) tensor with the channels and size asked for."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")


def to_mode(img, channels: int):
    """Grey, RGB, RGBA, palette, 16-bit… → 'L' (1 channel) or 'RGB' (3 channels).

    Transparent pixels are composited on white first, so an RGBA or palette icon keeps its shape
    instead of turning black.
    """
    from PIL import Image

    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode == "I;16" or img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), mode="L")
    return img.convert("L" if channels == 1 else "RGB")


def decode_image(source: str | Path | BinaryIO, name: str, channels: int,
                 size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode fully (``load()`` catches truncated files) and return uint8 (C, H, W).

    ``size`` is (H, W); resizing uses bilinear filtering with antialiasing.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as img:
            img.load()
            img = to_mode(img, channels)
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"corrupt or truncated image: {name} ({exc}); remove it or pass "
                        "--skip-corrupt") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
