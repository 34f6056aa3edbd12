"""Tiny generated data for the classical pipeline: an RGB image folder with three patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage", reason='needs the optional extra: pip install "cnnlab[classic]"')
pytest.importorskip("cv2", reason='needs the optional extra: pip install "cnnlab[classic]"')


def pattern(kind: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Horizontal stripes, vertical stripes or blobs, in a random colour, plus noise."""
    yy, xx = np.mgrid[:size, :size]
    phase = rng.integers(0, 8)
    if kind == 0:
        grey = ((yy + phase) // 4) % 2
    elif kind == 1:
        grey = ((xx + phase) // 4) % 2
    else:
        grey = (np.hypot(yy - size / 2, xx - size / 2) + phase) // 5 % 2
    colour = rng.uniform(0.4, 1.0, 3)
    img = grey[..., None] * colour[None, None] * 200 + rng.normal(0, 12, (size, size, 3)) + 20
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def rgb_folder(tmp_path_factory) -> Path:
    """root/{train,test}/{h,v,r}/*.png: 16 train and 6 test RGB 32×32 images per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("classic") / "patterns"
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 6)):
        for kind, name in enumerate(("h", "v", "r")):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(pattern(kind, rng)).save(d / f"{i}.png")
    return root
