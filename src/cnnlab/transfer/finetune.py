"""Fine-tuning and training from scratch on a (small) target set: one short explicit loop.

Why not ``cnnlab.train(init_from=...)``: it writes a run directory per call and has no frozen
warm-up, parameter groups or frozen batch-norm; a compare sweep runs dozens of these tiny jobs.

Fine-tuning (Yosinski et al. 2014; Kornblith et al. 2019):

1. ``reset_classifier(k)`` — a fresh head for the target classes;
2. ``freeze_epochs`` warm-up: backbone ``requires_grad=False`` and every BN in eval mode, only the
   new classifier learns (a random head's gradients would otherwise wreck the features);
3. then every layer, the backbone at ``lr × backbone_lr_scale`` (default 0.1).

Batch norm: ``bn="frozen"`` keeps BN layers in eval mode (the backbone's running statistics,
affine parameters still trained) — on a few dozen images, batch statistics are noisy and updating
the running averages collapses the features. ``bn="auto"`` (default) freezes them when the
training set has fewer than :data:`BN_FROZEN_BELOW` images; ``bn="train"`` always updates them.
From scratch, BN always trains (random-init statistics mean nothing).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import Split
from ..errors import ConfigError, TrainingError
from ..train.eager import AdamW

BN_MODES = ("auto", "frozen", "train")
BN_FROZEN_BELOW = 1000  # training images; below this bn="auto" keeps BN statistics frozen
MIN_STEPS = 100  # optimizer steps per phase at least, whatever the number of images


def fresh_like(model: nn.Module, num_classes: int, seed: int) -> nn.Module:
    """The same architecture from random init (the backbone's input normalization copied).

    A model with a ``fresh(num_classes)`` method (hub backbones) builds its own random copy.
    """
    from ..models import create_model

    fresh = getattr(model, "fresh", None)
    if callable(fresh):  # a hub backbone rebuilds itself (transfer/hub.py)
        torch.manual_seed(seed)
        return fresh(num_classes)
    meta = getattr(model, "meta", None)
    if not meta:
        raise ConfigError("--mode scratch needs a backbone loaded from a run directory")
    torch.manual_seed(seed)
    new = create_model(meta["model"], num_classes=num_classes, in_chans=meta["in_chans"],
                       input_size=tuple(meta["input_size"]),
                       norm=meta.get("norm", "standardize"), **meta.get("model_kwargs", {}))
    new.norm.load_state_dict(model.norm.state_dict())  # preprocessing, not learning
    return new


def _bn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _set_train(model: nn.Module, bn_frozen: bool) -> None:
    model.train()
    if bn_frozen:
        for m in _bn_modules(model):
            m.eval()


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 500) -> float:
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        x = split.images[i:i + batch_size].float() / 255.0
        correct += int((model(x).argmax(1) == split.labels[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(1, len(split))


def _run_epochs(model, params, split, *, epochs, batch_size, gen, bn_frozen, weight_decay,
                phase, history, min_steps=0) -> None:
    if epochs <= 0:
        return
    per_epoch = max(1, -(-len(split) // batch_size))
    epochs = max(epochs, -(-min_steps // per_epoch))  # few-shot: a few images, enough steps
    opt = AdamW(params, weight_decay=weight_decay)
    steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(epochs):
        _set_train(model, bn_frozen)
        perm = torch.randperm(len(split), generator=gen)
        total, seen = 0.0, 0
        for step, i in enumerate(range(0, len(split), batch_size)):
            idx = perm[i:i + batch_size]
            x = split.images[idx].float() / 255.0
            loss = F.cross_entropy(model(x), split.labels[idx])
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss in {phase}, epoch {epoch + 1}, step "
                                    f"{step + 1}, lr {sched.get_last_lr()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        history.append({"phase": phase, "epoch": epoch + 1, "loss": total / max(1, seen)})


def finetune(model: nn.Module, train: Split, test: Split, num_classes: int, *,
             epochs: int = 10, freeze_epochs: int = 2, lr: float = 3e-3,
             backbone_lr_scale: float = 0.1, bn: str = "auto", batch_size: int = 64,
             weight_decay: float = 1e-4, seed: int = 0, scratch: bool = False,
             min_steps: int = MIN_STEPS) -> dict:
    """Fine-tune a copy of ``model`` (or train its architecture from scratch) on ``train``.

    The budget is the same for both: ``freeze_epochs + epochs`` passes over ``train``, each
    phase stretched to at least ``min_steps`` optimizer steps (5 images per class make one
    batch: ten epochs would be ten steps, too few for any fair comparison). Returns
    test accuracy, the BN mode used and the loss history; the backbone passed in is not changed.
    """
    if bn not in BN_MODES:
        raise ConfigError(f"unknown --bn '{bn}'; choose from {', '.join(BN_MODES)}")
    if epochs < 0 or freeze_epochs < 0:
        raise ConfigError("--epochs and --freeze-epochs must be ≥ 0")
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    if scratch:
        net = fresh_like(model, num_classes, seed)
        _run_epochs(net, [{"params": list(net.parameters()), "lr": lr}], train,
                    epochs=freeze_epochs + epochs,
                    batch_size=batch_size, gen=gen, bn_frozen=False,
                    weight_decay=weight_decay, phase="scratch", history=history,
                    min_steps=2 * min_steps if freeze_epochs and epochs else min_steps)
        return {"accuracy": accuracy(net, test), "bn": "train", "history": history,
                "model": net}
    net = copy.deepcopy(model)
    torch.manual_seed(seed)
    net.reset_classifier(num_classes)
    head = net.classifier()
    head_ids = {id(p) for p in head.parameters()}
    backbone = [p for p in net.parameters() if id(p) not in head_ids]
    bn_frozen = bn == "frozen" or (bn == "auto" and len(train) < BN_FROZEN_BELOW)
    # 1. frozen warm-up: only the new classifier learns, BN in eval mode
    for p in backbone:
        p.requires_grad_(False)
    _run_epochs(net, [{"params": list(head.parameters()), "lr": lr}], train,
                epochs=freeze_epochs, batch_size=batch_size, gen=gen, bn_frozen=True,
                weight_decay=weight_decay, phase="frozen", history=history,
                min_steps=min_steps)
    # 2. every layer, the backbone at a lower learning rate
    for p in backbone:
        p.requires_grad_(True)
    groups = [{"params": list(head.parameters()), "lr": lr},
              {"params": backbone, "lr": lr * backbone_lr_scale}]
    _run_epochs(net, groups, train, epochs=epochs, batch_size=batch_size, gen=gen,
                bn_frozen=bn_frozen, weight_decay=weight_decay, phase="finetune",
                history=history, min_steps=min_steps)
    return {"accuracy": accuracy(net, test), "bn": "frozen" if bn_frozen else "train",
            "history": history, "model": net}
