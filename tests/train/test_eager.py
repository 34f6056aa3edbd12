"""cnnlab's SGD and optimizer base (train/eager.py): torch.optim.SGD's arithmetic bit for bit,
its state-dict format, and no torch._dynamo import on the way."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from cnnlab.train import eager as eager_module
from cnnlab.train.eager import SGD, Adam, AdamW
from cnnlab.train.muon import Muon

CONFIGS = [dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
           dict(momentum=0.9, nesterov=False, weight_decay=0.0),
           dict(momentum=0.0, nesterov=False, weight_decay=1e-3),
           dict(momentum=0.85, nesterov=True, weight_decay=0.0)]


def _net(channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(288, 5))
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _groups(net: nn.Module, weight_decay: float) -> list[dict]:
    return [{"params": [p for p in net.parameters() if p.ndim > 1],
             "weight_decay": weight_decay},
            {"params": [p for p in net.parameters() if p.ndim <= 1], "weight_decay": 0.0}]


def _train(make_opt, channels_last: bool, weight_decay: float, steps: int = 5):
    net = _net(channels_last)
    opt = make_opt(_groups(net, weight_decay))
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad()
        net(x).square().mean().backward()
        grads = [p.grad.clone() for p in net.parameters()]
        opt.step()
        for before, p in zip(grads, net.parameters(), strict=True):
            assert torch.equal(before, p.grad)  # the step leaves the gradients alone
    return [p.detach().clone() for p in net.parameters()], opt


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_fused_path_is_torch_fused_sgd_bit_for_bit(cfg, channels_last):
    hyper = dict(lr=0.1, momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    ours, opt = _train(lambda g: SGD(g, **hyper), channels_last, cfg["weight_decay"])
    theirs, _ = _train(lambda g: torch.optim.SGD(g, **hyper, fused=True), channels_last,
                       cfg["weight_decay"])
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    if cfg["momentum"]:
        assert all("momentum_buffer" in opt.state[p] for g in opt.param_groups
                   for p in g["params"])


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_unfused_path_is_torch_sgd_bit_for_bit(cfg, channels_last, monkeypatch):
    monkeypatch.setattr(eager_module, "_fusable", lambda *a: False)
    hyper = dict(lr=0.1, momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    ours, _ = _train(lambda g: SGD(g, **hyper), channels_last, cfg["weight_decay"])
    theirs, _ = _train(lambda g: torch.optim.SGD(g, **hyper), channels_last,
                       cfg["weight_decay"])
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_fused_needs_matching_layouts():
    p = torch.zeros(4, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    assert eager_module._fusable([p], [torch.zeros_like(p)], [])
    assert not eager_module._fusable([p], [torch.zeros(4, 3, 2, 2)], [])  # grad NCHW
    assert not eager_module._fusable([p], [torch.zeros_like(p, dtype=torch.float64)], [])
    assert not eager_module._fusable([torch.zeros(4, 4)[:, :2]], [torch.zeros(4, 2)], [])


def test_a_parameter_without_a_buffer_joins_mid_run():
    """Mixed state (one parameter has a momentum buffer, one has not) takes the unfused path
    and still gives torch.optim.SGD's result (to rounding: the first step, with one parameter,
    was fused)."""
    results = []
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                 lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)):
        torch.manual_seed(0)
        a, b = nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(5))
        opt = make([a, b])
        for step in range(3):
            opt.zero_grad()
            loss = (a * torch.arange(5.0)).sum() + (b.square().sum() if step else 0)
            loss.backward()
            opt.step()
        results.append(torch.cat([a.detach(), b.detach()]))
    assert torch.allclose(results[0], results[1], rtol=1e-6, atol=0)
    assert not torch.equal(results[0], torch.zeros(10))


def test_torch_sgd_state_dict_resumes_in_ours():
    """A checkpoint written with torch.optim.SGD (as cnnlab's runs were before train/eager.py)
    resumes in cnnlab's SGD as if uninterrupted: exactly after fused torch SGD, to rounding
    after its default (unfused) arithmetic."""
    hyper = dict(lr=0.1, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(4, 3, 8, 8, generator=gen) for _ in range(6)]

    def steps(net, opt, batch):
        for x in batch:
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()

    for fused in (True, False):
        straight = _net(False)
        steps(straight, torch.optim.SGD(_groups(straight, 5e-4), **hyper, fused=fused), xs)
        net = _net(False)
        theirs = torch.optim.SGD(_groups(net, 5e-4), **hyper, fused=fused)
        steps(net, theirs, xs[:3])
        ours = SGD(_groups(net, 5e-4), **hyper)
        ours.load_state_dict(theirs.state_dict())
        steps(net, ours, xs[3:])
        for a, b in zip(net.parameters(), straight.parameters(), strict=True):
            assert torch.equal(a, b) if fused else torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bad_hyperparameters_are_refused():
    p = [nn.Parameter(torch.zeros(2))]
    for kwargs, match in ((dict(lr=0), "lr"), (dict(lr=0.1, momentum=1.0), "momentum"),
                          (dict(lr=0.1, nesterov=True), "Nesterov"),
                          (dict(lr=0.1, weight_decay=-1.0), "weight_decay")):
        with pytest.raises(ValueError, match=match):
            SGD(p, **kwargs)


def test_training_never_imports_the_compiler_stack(tmp_path):
    """torch.optim's wrappers import torch._dynamo (1.5 s) on first use; a cnnlab training run
    with SGD, Muon, Adam or AdamW (steps, checkpoint) and loading an optimizer state must not
    (a fresh interpreter shows it)."""
    code = f"""
import sys
import torch
from cnnlab.api import train
from cnnlab.train.muon import Muon
from cnnlab.train.eager import SGD, Adam, AdamW
for opt in ("sgd", "muon", "adam", "adamw"):
    train(dict(model="simple-cnn", data="digits", epochs=1, optimizer=opt,
               lr=0.05 if opt in ("sgd", "muon") else 1e-3, momentum=0.9, nesterov=True,
               out=r"{tmp_path}" + "/" + opt, subset=200, report=False), progress=False)
for make in (SGD, Muon, Adam, AdamW):
    w = torch.nn.Parameter(torch.ones(3, 3))
    opt = make([w], lr=0.1, **(dict(momentum=0.9) if make in (SGD, Muon) else {{}}))
    w.grad = torch.ones(3, 3)
    opt.step()
    opt.load_state_dict(opt.state_dict())
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok" in done.stdout


def test_muon_sgd_groups_use_the_same_update():
    """Muon's non-filter groups are SGD's update: equal to cnnlab's SGD bit for bit."""
    hyper = dict(lr=0.1, momentum=0.85, nesterov=True)
    ours, _ = _train(lambda g: SGD(g, **hyper), False, 1e-2)
    muon, _ = _train(lambda g: Muon(g, **hyper), False, 1e-2)
    assert all(torch.equal(a, b) for a, b in zip(ours, muon, strict=True))


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: Muon(ps, lr=0.1, momentum=0.9)])
def test_step_runs_a_closure_with_gradients_on(make):
    """``step(closure)`` as torch.optim defines it: the closure recomputes the loss and its
    gradients (autograd on inside a no-grad step), its loss is returned, then the update."""
    w = nn.Parameter(torch.ones(3))
    opt = make([w])

    def closure():
        opt.zero_grad()
        loss = (w * torch.tensor([1.0, 2.0, 3.0])).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 6.0
    assert torch.allclose(w.detach(), torch.tensor([0.9, 0.8, 0.7]))
    assert opt.step() is None


@pytest.mark.parametrize("ours,theirs,kwargs", [
    (Adam, torch.optim.Adam, dict(lr=1e-2)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=5e-2)),
])
def test_adam_and_adamw_are_torchs_bit_for_bit(ours, theirs, kwargs):
    """torch's own step, run from under its dynamo-importing wrapper: the same numbers, the
    same state dict (a torch checkpoint resumes in ours)."""
    runs = []
    for cls in (ours, theirs):
        a, _ = _train(lambda g, cls=cls: cls(g, **kwargs), True,
                      kwargs.get("weight_decay", 0.0), steps=3)
        runs.append(a)
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    net = _net(False)
    theirs_opt = theirs(net.parameters(), **kwargs)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    theirs_opt.step()
    ours_opt = ours(net.parameters(), **kwargs)
    ours_opt.load_state_dict(theirs_opt.state_dict())
    assert ours_opt.state_dict()["state"].keys() == theirs_opt.state_dict()["state"].keys()
    assert isinstance(ours_opt, theirs)
