"""The decode-once cache: hits, invalidation on a changed file, bypass, atomic files."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from cnnlab.data import load_data, load_folder
from cnnlab.data.cache import cache_root
from cnnlab.errors import DataError


def test_second_load_hits_the_cache_with_identical_tensors(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 5, "b": 5})
    cache_dir = tmp_path / "cachehome"
    first = load_folder(root, data_dir=cache_dir)
    assert first.info["cache"].startswith("written ")
    second = load_folder(root, data_dir=cache_dir)
    assert second.info["cache"].startswith("hit ")
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)
    files = sorted(p.name for p in (cache_dir / ".cache").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")
    meta = json.loads((cache_dir / ".cache" / files[0]).read_text())
    assert meta["classes"] == ["a", "b"]


def test_seed_and_val_fraction_reuse_the_entry(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 5, "b": 5})
    load_folder(root, data_dir=tmp_path)
    other = load_folder(root, data_dir=tmp_path, seed=3, val_fraction=0.4)
    assert other.info["cache"].startswith("hit ")  # splits are made after the cache


def test_image_size_and_channels_are_part_of_the_key(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3})
    load_folder(root, data_dir=tmp_path)
    small = load_folder(root, data_dir=tmp_path, image_size=4)
    assert small.info["cache"].startswith("written") and small.image_shape == (3, 4, 4)
    grey = load_folder(root, data_dir=tmp_path, channels=1)
    assert grey.info["cache"].startswith("written") and grey.image_shape == (1, 8, 8)


def test_changed_file_invalidates_and_replaces_the_entry(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3})
    first = load_folder(root, data_dir=tmp_path, val_fraction=0.34)
    target = root / "a" / "000.png"
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = load_folder(root, data_dir=tmp_path, val_fraction=0.34)
    assert second.info["cache"].startswith("written")
    all_first = torch.cat([first.train.images, first.test.images])
    all_second = torch.cat([second.train.images, second.test.images])
    solid = torch.tensor([1, 2, 3], dtype=torch.uint8).view(3, 1, 1).expand(3, 8, 8)
    assert not any(torch.equal(x, solid) for x in all_first)
    assert any(torch.equal(x, solid) for x in all_second)
    # the stale entry of the same source was removed, not left to pile up
    assert len(list((tmp_path / ".cache").glob("*.safetensors"))) == 1


def test_added_file_invalidates(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3})
    load_folder(root, data_dir=tmp_path)
    fake.tree(root, {"b": 4})  # one more image in b
    ds = load_folder(root, data_dir=tmp_path)
    assert ds.info["cache"].startswith("written") and len(ds.train) + len(ds.test) == 7


def test_cache_false_bypasses(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3})
    ds = load_folder(root, data_dir=tmp_path, cache=False)
    assert ds.info["cache"] == "off" and not (tmp_path / ".cache").exists()


def test_skip_corrupt_entry_not_reused_without_skip_corrupt(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3})
    (root / "a" / "002.png").write_bytes(b"broken")
    ds = load_folder(root, data_dir=tmp_path, skip_corrupt=True)
    assert ds.info["skipped_corrupt"] == 1
    again = load_folder(root, data_dir=tmp_path, skip_corrupt=True)
    assert again.info["cache"].startswith("hit") and again.info["skipped_corrupt"] == 1
    with pytest.raises(DataError, match="002.png"):
        load_folder(root, data_dir=tmp_path)


def test_named_source_cached_and_invalidated(tmp_path, fake):
    fake.mnist(tmp_path / "mnist")
    first = load_data("mnist", data_dir=tmp_path)
    assert first.info["cache"].startswith("written")
    assert load_data("mnist", data_dir=tmp_path).info["cache"].startswith("hit")
    fake.mnist(tmp_path / "mnist", n_train=40)
    changed = load_data("mnist", data_dir=tmp_path)
    assert changed.info["cache"].startswith("written") and len(changed.train) == 40


def test_read_only_data_dir_falls_back_to_cnnlab_data(tmp_path, fake, monkeypatch):
    fake.mnist(tmp_path / "ro" / "mnist")
    ro = tmp_path / "ro"
    home = tmp_path / "home"
    monkeypatch.setenv("CNNLAB_DATA", str(home))
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert cache_root(ro) == home / "cache"
        ds = load_data("mnist", data_dir=ro)
        assert str(home / "cache") in ds.info["cache"]
        assert not (ro / ".cache").exists()
    finally:
        ro.chmod(stat.S_IRWXU)


def test_partial_entry_is_a_miss(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3})
    load_folder(root, data_dir=tmp_path)
    tensors = next((tmp_path / ".cache").glob("*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:50])  # e.g. a disk that filled up
    ds = load_folder(root, data_dir=tmp_path)
    assert ds.info["cache"].startswith("written")


def test_native_entry_reused_when_it_already_has_the_asked_size(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3}, mode="L")
    first = load_folder(root, data_dir=tmp_path)
    same = load_folder(root, data_dir=tmp_path, image_size=8, channels=1)  # what evaluate asks
    assert same.info["cache"].endswith("(reused)")
    assert torch.equal(same.train.images, first.train.images)
    rgb = load_folder(root, data_dir=tmp_path, image_size=(8, 8), channels=3)
    assert rgb.info["cache"].endswith("(reused)") and rgb.image_shape == (3, 8, 8)
    assert torch.equal(rgb.train.images[:, 1], first.train.images[:, 0])
    resized = load_folder(root, data_dir=tmp_path, image_size=4)
    assert resized.info["cache"].startswith("written")  # needs a real decode


def test_named_set_resizes_after_the_cache(tmp_path, fake):
    fake.mnist(tmp_path / "mnist")
    load_data("mnist", data_dir=tmp_path)
    big = load_data("mnist", data_dir=tmp_path, image_size=32, channels=3)
    assert big.info["cache"].startswith("hit") and big.image_shape == (3, 32, 32)
