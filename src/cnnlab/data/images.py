"""Image conversions: decoding one file into uint8 (C, H, W), and batch resize / channel changes.

Two paths, on purpose:

* files (folders, zips, ``cnnlab predict``) are decoded by Pillow one at a time — grey, RGB, RGBA,
  palette and 16-bit images all end up as 'L' (1 channel) or 'RGB' (3 channels);
* whole named data sets that are already uint8 tensors (MNIST, CIFAR) are resized and converted
  with tensor ops (:func:`adapt_images`), never image by image.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")

# Pillow modes that carry no colour: such images give a 1-channel data set unless other images
# in it are in colour. Palette images ('P') count as colour even when their palette is grey.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

# ITU-R BT.601 luma weights: what Pillow's convert("L") uses, so a tensor RGB→grey conversion
# of a named data set matches a folder of the same images decoded as 'L'.
LUMA = (0.299, 0.587, 0.114)


def to_mode(img, channels: int):
    """Grey, RGB, RGBA, palette, 16-bit… → 'L' (1 channel) or 'RGB' (3 channels).

    Transparent pixels are composited on white first, so an RGBA or palette icon keeps its shape
    instead of turning black.
    """
    from PIL import Image

    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
            img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    mode = "L" if channels == 1 else "RGB"
    return img if img.mode == mode else img.convert(mode)


def natural_channels(img) -> int:
    """1 for a grey image, 3 for anything in colour (see :data:`GREY_MODES`)."""
    return 1 if img.mode in GREY_MODES else 3


def decode_array(source: str | Path | BinaryIO, name: str, channels: int | None,
                 size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode fully and return uint8 (H, W, C) — the numpy core of :func:`decode_image`.

    ``channels=None`` keeps the image's own kind: 1 for grey, 3 for colour. ``load()`` decodes
    the whole file, so a truncated one fails here, not later.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as img:
            img.load()
            img = to_mode(img, natural_channels(img) if channels is None else channels)
            if size is not None and (img.height, img.width) != tuple(size):
                # Pillow's BILINEAR widens its kernel when shrinking: antialiased.
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError, EOFError) as exc:
        raise DataError(f"corrupt or truncated image: {name} ({exc}); remove it or pass "
                        "--skip-corrupt") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def decode_image(source: str | Path | BinaryIO, name: str, channels: int | None,
                 size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode fully (``load()`` catches truncated files) and return uint8 (C, H, W).

    ``size`` is (H, W); resizing uses bilinear filtering with antialiasing. ``channels=None``
    keeps the image's own kind (1 for grey, 3 for colour).
    """
    arr = decode_array(source, name, channels, size)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def as_size(image_size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """``28`` → (28, 28); ``(h, w)`` stays; ``None`` stays None. Rejects non-positive sizes."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
        if len(size) == 1:
            size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise DataError(f"--image-size must be a positive size, got {image_size}")
    return size  # type: ignore[return-value]


def check_channels(channels: int | None) -> int | None:
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    return channels


def convert_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) → ``channels``: grey→RGB repeats, RGB→grey is BT.601 luminance."""
    c = images.shape[1]
    if channels is None or channels == c:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        out = torch.empty(images.shape[0], 1, *images.shape[2:], dtype=torch.uint8)
        for i in range(0, images.shape[0], 4096):  # chunks bound the float copy's memory
            grey = (images[i:i + 4096].float() * w).sum(1, keepdim=True)
            out[i:i + 4096] = grey.round_().clamp_(0, 255).to(torch.uint8)
        return out
    raise DataError(f"cannot convert {c}-channel images to {channels} channels")


def resize_images(images: torch.Tensor, size: tuple[int, int], chunk: int = 2048) -> torch.Tensor:
    """uint8 (N, C, H, W) → (N, C, *size), bilinear with antialiasing (on when shrinking)."""
    import torch.nn.functional as F

    if tuple(images.shape[2:]) == tuple(size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], *size, dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = F.interpolate(images[i:i + chunk].float(), size=size, mode="bilinear",
                          align_corners=False, antialias=True)
        out[i:i + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def adapt_images(images: torch.Tensor, image_size: int | tuple[int, int] | None,
                 channels: int | None) -> torch.Tensor:
    """Resize and convert a whole uint8 split with tensor ops (named data sets)."""
    images = convert_channels(images, check_channels(channels))
    size = as_size(image_size)
    return images if size is None else resize_images(images, size)
