from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.errors import DataError
from cnnlab.transfer.data import parse_per_class, per_class_subset, select_classes, write_folder


def test_select_classes_relabels_in_order(digits):
    sub = select_classes(digits, [7, "5"])
    assert sub.classes == [digits.classes[7], digits.classes[5]]
    assert set(sub.train.labels.tolist()) == {0, 1}
    n7 = int((digits.train.labels == 7).sum())
    assert sub.train.counts(2)[0] == n7
    assert torch.equal(sub.train.images[sub.train.labels == 0],
                       digits.train.images[digits.train.labels == 7])
    assert len(sub.test) == int(((digits.test.labels == 5) | (digits.test.labels == 7)).sum())


def test_select_classes_errors(digits):
    with pytest.raises(DataError, match="out of range"):
        select_classes(digits, [0, 12])
    with pytest.raises(DataError, match="unknown class 'cat'"):
        select_classes(digits, [0, "cat"])
    with pytest.raises(DataError, match="at least 2 distinct"):
        select_classes(digits, [3, 3])


def test_per_class_subset_exact_and_seeded(target):
    a = per_class_subset(target.train, 7, seed=1, classes=target.classes)
    assert a.counts(5) == [7] * 5
    b = per_class_subset(target.train, 7, seed=1, classes=target.classes)
    c = per_class_subset(target.train, 7, seed=2, classes=target.classes)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert per_class_subset(target.train, None, 0) is target.train


def test_per_class_subset_too_few_names_class_and_count(target):
    counts = target.train.counts(5)
    with pytest.raises(DataError) as exc:
        per_class_subset(target.train, 1000, 0, target.classes)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"'{target.classes[0]}' has {counts[0]}" in msg and str(min(counts)) in msg


def test_parse_per_class():
    assert parse_per_class("5,10,all") == [5, 10, None]
    with pytest.raises(DataError, match="numbers or 'all'"):
        parse_per_class("5,x")
    with pytest.raises(DataError, match="≥ 1"):
        parse_per_class("0")


def test_write_folder_round_trip(digits, tmp_path):
    sub = select_classes(digits, [3, 4])
    back = cnnlab.load_data(str(write_folder(sub, tmp_path / "f")), cache=False)
    assert back.classes == sub.classes
    assert int(back.train.images.long().sum()) == int(sub.train.images.long().sum())
    assert back.train.counts(2) == sub.train.counts(2) and len(back.test) == len(sub.test)
