"""The report's definitions on a hand-made case."""

from __future__ import annotations

import pytest
import torch

from cnnlab.attack import attack_metrics


def probs(rows):
    return torch.tensor(rows, dtype=torch.float32)


# 4 images, 3 classes; true labels 0, 1, 2, 0
Y = torch.tensor([0, 1, 2, 0])
CLEAN = probs([[0.8, 0.1, 0.1],    # correct
               [0.2, 0.7, 0.1],    # correct
               [0.6, 0.2, 0.2],    # wrong already (predicts 0)
               [0.5, 0.3, 0.2]])   # correct
ADV = probs([[0.1, 0.9, 0.0],      # → 1 (changed, confidence 0.9)
             [0.1, 0.6, 0.3],      # still 1 (attack failed)
             [0.1, 0.1, 0.8],      # → 2: now *correct*; never eligible
             [0.2, 0.1, 0.7]])     # → 2 (changed, confidence 0.7)


def test_untargeted_definitions():
    x = torch.zeros(4, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.3          # L∞ 0.3, L2 0.3
    x_adv[3] = 0.1                   # L∞ 0.1, L2 0.2
    m = attack_metrics(x, x_adv, Y, CLEAN, ADV)
    assert m["clean_accuracy"] == 0.75 and m["adversarial_accuracy"] == 0.5
    assert m["n_eligible"] == 3 and m["n_success"] == 2
    assert m["success_rate"] == pytest.approx(2 / 3)
    assert m["mean_confidence_new_label"] == pytest.approx((0.9 + 0.7) / 2)
    assert m["max_linf"] == pytest.approx(0.3) and m["mean_linf"] == pytest.approx(0.1)
    assert m["max_l2"] == pytest.approx(0.3) and m["mean_l2"] == pytest.approx(0.125)


def test_targeted_definitions():
    x = torch.zeros(4, 1, 2, 2)
    # target 2: image 2 (true 2) is never eligible; images 0, 1, 3 are correct and not class 2;
    # only image 3 ends in class 2
    m = attack_metrics(x, x, Y, CLEAN, ADV, target=2)
    assert m["n_eligible"] == 3 and m["n_success"] == 1
    assert m["success_rate"] == pytest.approx(1 / 3)
    assert m["mean_confidence_new_label"] == pytest.approx(0.7)
    assert m["target"] == 2


def test_nothing_eligible_is_none_not_zero():
    x = torch.zeros(2, 1, 1, 1)
    wrong = probs([[0.1, 0.9], [0.1, 0.9]])
    m = attack_metrics(x, x, torch.tensor([0, 0]), wrong, wrong)
    assert m["success_rate"] is None and m["mean_confidence_new_label"] is None
    assert m["clean_accuracy"] == 0.0


def test_gallery_shows_successes_across_classes_not_the_target_class():
    from cnnlab.attack.gallery import gallery_indices

    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])  # a class-sorted split
    clean = y.clone()
    adv = torch.tensor([0, 0, 0, 0, 0, 1, 0, 2, 0, 3])  # targeted at 0: hits on 4, 6, 8
    pick = gallery_indices(y, clean, adv, target=0, n=5).tolist()
    assert pick[:3] == [4, 6, 8]  # successes first, one per class
    assert set(pick[3:]) == {5, 7}  # then the other eligible images, never class 0 first
    untargeted = gallery_indices(y, clean, torch.tensor([1, 0, 0, 0, 0, 1, 2, 2, 3, 3]), n=3)
    assert untargeted.tolist() == [0, 4, 1]
