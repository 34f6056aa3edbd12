"""A tiny backbone trained on digits 0–4 (a run directory), and folders of target images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.transfer import select_classes
from cnnlab.transfer.data import write_folder as write_image_folder


def write_folder(root: Path, images: torch.Tensor, labels: torch.Tensor, names: list[str],
                 *, rgb: bool = False, size: int | None = None) -> Path:
    """uint8 (N, 1, H, W) images → root/<class>/<i>.png (optionally RGB and resized)."""
    from PIL import Image

    for i, (img, y) in enumerate(zip(images, labels.tolist(), strict=True)):
        d = root / names[y]
        d.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img[0].numpy(), mode="L")
        if size:
            pil = pil.resize((size, size))
        if rgb:
            pil = pil.convert("RGB")
        pil.save(d / f"{i}.png")
    return root


@pytest.fixture(name="write_folder", scope="session")
def _write_folder_fixture():
    return write_folder


@pytest.fixture(scope="session")
def digits() -> cnnlab.data.dataset.Dataset:
    return cnnlab.load_data("digits")


@pytest.fixture(scope="session")
def backbone_run(tmp_path_factory, digits) -> str:
    """simple-cnn trained 2 epochs on digits classes 0–4 (~3 s); its run directory."""
    base = tmp_path_factory.mktemp("transfer")
    folder = write_image_folder(select_classes(digits, [0, 1, 2, 3, 4]), base / "digits04")
    result = cnnlab.train(model="simple-cnn", data=str(folder), epochs=2, threads=1,
                          precision="fp32", out=str(base / "run"), seed=0)
    return result.run_dir


@pytest.fixture(scope="session")
def backbone(backbone_run):
    return cnnlab.load_model(backbone_run)


@pytest.fixture(scope="session")
def target(digits):
    """Digits 5–9, relabelled 0–4: the transfer target."""
    return select_classes(digits, [5, 6, 7, 8, 9])
