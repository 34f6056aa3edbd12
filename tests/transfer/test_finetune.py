from __future__ import annotations

import torch

from cnnlab.transfer import finetune, per_class_subset


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_frozen_phase_leaves_backbone_bit_identical(backbone, target):
    before = _state(backbone)
    train = per_class_subset(target.train, 10, 0, target.classes)
    out = finetune(backbone, train, target.test, 5, epochs=0, freeze_epochs=1, min_steps=10)
    net = out["model"]
    assert [h["phase"] for h in out["history"]] == ["frozen"] * len(out["history"])
    head_ids = {id(p) for p in net.classifier().parameters()}
    head_keys = {k for k, p in net.named_parameters() if id(p) in head_ids}
    assert head_keys
    after = net.state_dict()
    backbone_keys = [k for k in before if k not in head_keys]
    assert any("running_mean" in k for k in backbone_keys)
    for k in backbone_keys:  # weights and BN running statistics alike
        assert torch.equal(before[k], after[k]), k
    assert net.classifier().out_features == 5
    for k, v in before.items():  # the backbone passed in is never changed
        assert torch.equal(v, backbone.state_dict()[k]), k


def test_finetune_trains_all_layers_and_head(backbone, target):
    train = per_class_subset(target.train, 10, 0, target.classes)
    out = finetune(backbone, train, target.test, 5, epochs=1, freeze_epochs=1, min_steps=5,
                   bn="frozen")
    net = out["model"]
    phases = {h["phase"] for h in out["history"]}
    assert phases == {"frozen", "finetune"}
    assert out["bn"] == "frozen"
    conv = next(k for k, m in backbone.named_modules() if isinstance(m, torch.nn.Conv2d))
    w0 = backbone.get_submodule(conv).weight
    assert not torch.equal(w0, net.get_submodule(conv).weight)  # backbone moved (lower lr)
    old = backbone.classifier()
    assert net.classifier() is not old and net.classifier().out_features == 5
    assert 0.0 <= out["accuracy"] <= 1.0


def test_scratch_same_architecture_random_init(backbone, target):
    train = per_class_subset(target.train, 5, 0, target.classes)
    out = finetune(backbone, train, target.test, 5, epochs=1, freeze_epochs=0, min_steps=3,
                   scratch=True)
    net = out["model"]
    assert type(net) is type(backbone) and out["bn"] == "train"
    assert torch.equal(net.norm.mean, backbone.norm.mean)
