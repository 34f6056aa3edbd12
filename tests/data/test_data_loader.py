"""Dataset / Split / Loader semantics the training loop relies on."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data import Dataset, Loader, Split, build_augment, stratified_split
from cnnlab.errors import DataError


def _split(n=50, c=1, h=4, w=4):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, c, h, w).contiguous()
    return Split(images, torch.arange(n) % 5)


def test_split_validates_dtype_and_shapes():
    with pytest.raises(ValueError, match="uint8"):
        Split(torch.zeros(2, 1, 2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        Split(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3))


def test_loader_epoch_covers_every_image_once_in_a_seeded_order():
    split = _split()
    loader = Loader(split, 8, shuffle=True, seed=3)
    seen = torch.cat([(x[:, 0, 0, 0] * 255).round().long() for x, _ in loader])
    assert sorted(seen.tolist()) == list(range(50)) and len(loader) == 7
    again = torch.cat([(x[:, 0, 0, 0] * 255).round().long() for x, _ in loader])
    assert torch.equal(seen, again)  # same (seed, epoch) → same order
    loader.set_epoch(1)
    assert not torch.equal(seen, torch.cat([(x[:, 0, 0, 0] * 255).round().long()
                                            for x, _ in loader]))


def test_loader_batches_are_float_in_unit_range_with_matching_labels():
    split = _split()
    for x, y in Loader(split, 16, drop_last=True):
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
        idx = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(y, idx % 5)
    assert len(Loader(split, 16, drop_last=True)) == 3


def test_ranks_take_disjoint_shards_of_each_global_batch():
    split = _split(n=40)
    shards = []
    for rank in range(2):
        loader = Loader(split, 10, shuffle=True, seed=1, rank=rank, world_size=2)
        shards.append(torch.cat([(x[:, 0, 0, 0] * 255).round().long() for x, _ in loader]))
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    assert sorted(shards[0].tolist() + shards[1].tolist()) == list(range(40))


def test_loader_applies_augment_deterministically():
    split = Split(torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8), torch.zeros(20))
    aug = build_augment(["crop:2", "flip", "cutout:3"])
    a = [x for x, _ in Loader(split, 5, augment=aug, seed=2)]
    b = [x for x, _ in Loader(split, 5, augment=aug, seed=2)]
    plain = [x for x, _ in Loader(split, 5)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, plain, strict=True))


def test_stratified_split_holds_out_each_class():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2)
    keep, held = stratified_split(labels, 0.2, seed=0)
    assert torch.bincount(labels[held]).tolist() == [2, 1, 1]
    assert sorted(keep.tolist() + held.tolist()) == list(range(17))
    with pytest.raises(DataError, match="between 0 and 1"):
        stratified_split(labels, 1.5, seed=0)


def test_dataset_summary_and_split_synonyms():
    ds = Dataset("x", ["a", "b", "c", "d", "e"], _split(), _split(10), val=_split(5))
    s = ds.summary()
    assert s["image_shape"] == [1, 4, 4] and list(s["splits"]) == ["train", "val", "test"]
    assert s["splits"]["test"]["per_class"] == [2, 2, 2, 2, 2]
    assert ds.split("validation") is ds.val and ds.split("test") is ds.test
    with pytest.raises(DataError, match="unknown split"):
        ds.split("dev")
