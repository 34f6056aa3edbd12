"""Real data from ../shared/data (skipped when absent)."""

from __future__ import annotations

import time

import pytest
import torch

from cnnlab.data import load_data
from cnnlab.data.download import REMOTES, file_md5

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


@pytest.mark.realdata
def test_real_mnist(shared_data, tmp_path):
    folder = shared_data / "mnist"
    for f in REMOTES["mnist"].files:  # the README's MD5s of the uncompressed files
        assert file_md5(folder / f.name, gunzip=True) == f.raw_md5
    ds = load_data("mnist", data_dir=shared_data)
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.image_shape == (1, 28, 28) and ds.classes == [str(i) for i in range(10)]
    assert ds.train.counts(10)[1] == 6742 and ds.test.counts(10)[1] == 1135
    mean = ds.train.images.float().mean().item() / 255
    assert abs(mean - 0.1307) < 1e-3  # the well-known MNIST mean
    assert not (shared_data / ".cache").exists()  # the shared folder is never written


@pytest.mark.realdata
@pytest.mark.slow
def test_real_cifar10_jpeg_cold_then_cached(shared_data, tmp_path):
    start = time.perf_counter()
    ds = load_data(str(shared_data / "cifar10-jpeg"), data_dir=tmp_path)
    cold = time.perf_counter() - start
    assert (len(ds.train), len(ds.test)) == (50000, 10000)
    assert ds.classes == CIFAR10_CLASSES and ds.image_shape == (3, 32, 32)
    assert ds.train.counts(10) == [5000] * 10 and ds.test.counts(10) == [1000] * 10
    start = time.perf_counter()
    again = load_data(str(shared_data / "cifar10-jpeg"), data_dir=tmp_path)
    warm = time.perf_counter() - start
    assert again.info["cache"].startswith("hit")
    assert torch.equal(again.train.images, ds.train.images)
    assert warm < cold / 3, (cold, warm)  # a ratio: both slow down alike on a busy machine
    print(f"cifar10-jpeg: cold {cold:.1f} s, cached {warm:.2f} s")
