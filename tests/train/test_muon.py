"""Muon (--optimizer muon): Newton–Schulz orthogonalization, the per-group split between
orthogonalized filter updates and plain SGD, and a short real training run."""

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.models import create_model
from cnnlab.train import make_config
from cnnlab.train.muon import Muon, orthogonalize
from cnnlab.train.optim import build_optimizer


@pytest.mark.parametrize("shape", [(16, 72), (72, 16), (32, 32)])
def test_orthogonalize_flattens_the_spectrum(shape):
    torch.manual_seed(0)
    # a badly conditioned matrix: singular values spread over two decades
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0]))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1]))
    k = min(shape)
    s = torch.logspace(0, -2, k)
    g = u[:, :k] @ torch.diag(s) @ v[:, :k].T
    sv = torch.linalg.svdvals(orthogonalize(g, steps=5))
    # not exactly 1 (the quintic trades convergence for slope), but all within ~[0.3, 1.3]
    # where the input spanned 100×; the singular vectors are kept
    assert sv.max() < 1.3 and sv.min() > 0.3, sv
    assert torch.linalg.svdvals(orthogonalize(g)).shape == (k,)
    cos = torch.nn.functional.cosine_similarity(orthogonalize(g).flatten(), (u[:, :k] @ v[:, :k].T)
                                                .flatten(), dim=0)
    assert cos > 0.95
    with pytest.raises(ValueError, match="matrix"):
        orthogonalize(torch.randn(3, 3, 3))


def test_non_orthogonal_groups_are_exactly_torch_sgd():
    torch.manual_seed(0)
    a = nn.Linear(5, 3)
    b = nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    opt_a = Muon(a.parameters(), lr=0.1, momentum=0.85, nesterov=True, weight_decay=1e-2)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.85, nesterov=True,
                            weight_decay=1e-2)
    for _ in range(4):
        x = torch.randn(8, 5)
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_filter_step_is_orthogonal_and_norm_is_held():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, bias=False)
    opt = Muon([{"params": [conv.weight], "orthogonal": True}], lr=0.05, momentum=0.0)
    conv(torch.randn(2, 4, 6, 6)).square().sum().backward()
    before = conv.weight.detach().clone()
    opt.step()
    # renormalized to √out, then the orthogonal step: ‖p‖ stays √8 up to the step's size
    rescaled = before * (8 ** 0.5 / before.norm())
    step = (conv.weight.detach() - rescaled).reshape(8, -1) / -0.05
    sv = torch.linalg.svdvals(step)
    assert sv.max() < 1.3 and sv.min() > 0.3  # every direction moved about the same
    assert abs(conv.weight.norm().item() - 8 ** 0.5) < 0.05 * 8 ** 0.5
    with pytest.raises(ValueError, match="matrices"):
        Muon([{"params": [nn.Linear(2, 2).bias], "orthogonal": True}], lr=0.1)


def test_build_optimizer_splits_filters_from_the_rest():
    net = create_model("cifar-speednet")
    cfg = make_config({"model": "cifar-speednet", "optimizer": "muon", "lr": 0.5,
                       "muon_lr": 0.2, "muon_momentum": 0.6, "momentum": 0.85,
                       "nesterov": True, "bias_lr_scale": 64})
    opt = build_optimizer(net, cfg)
    assert isinstance(opt, Muon)
    ortho = [g for g in opt.param_groups if g["orthogonal"]]
    other = [g for g in opt.param_groups if not g["orthogonal"]]
    filters = [p for p in net.parameters() if p.ndim == 4 and p.requires_grad]
    assert sum(len(g["params"]) for g in ortho) == len(filters) == 6
    assert all(g["lr"] == 0.2 and g["momentum"] == 0.6 for g in ortho)
    assert all(p.ndim != 4 for g in other for p in g["params"])
    assert any(g["lr"] == 0.5 * 64 for g in other)  # the BN shifts keep their scaled lr
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)
    with pytest.raises(ConfigError, match="muon-lr"):
        make_config({"optimizer": "muon", "muon_lr": 0})
    # Newton-Schulz in bf16 only when training itself runs in bf16 (fast there, slow on AVX2)
    assert all(g["ns_dtype"] == torch.float32 for g in ortho)
    opt16 = build_optimizer(net, cfg, precision="bf16")
    assert all(g["ns_dtype"] == torch.bfloat16 for g in opt16.param_groups if g["orthogonal"])


def test_orthogonalize_in_bf16_stays_close_to_float32():
    torch.manual_seed(0)
    g = torch.randn(64, 576)
    o32, o16 = orthogonalize(g, steps=3), orthogonalize(g, steps=3, dtype=torch.bfloat16)
    assert o16.dtype == torch.float32  # handed back in the gradient's dtype
    cos = torch.nn.functional.cosine_similarity(o32.flatten(), o16.flatten(), dim=0)
    assert cos > 0.99, cos
    sv = torch.linalg.svdvals(o16)
    assert sv.max() < 1.3 and sv.min() > 0.3, sv


def test_muon_trains_digits(tmp_path):
    result = cnnlab.train(model="simple-cnn", data="digits", epochs=4, optimizer="muon",
                          lr=0.05, muon_lr=0.05, momentum=0.9, nesterov=True, batch_size=64,
                          out=str(tmp_path / "run"), report=False, progress=False, seed=0)
    assert result.test_accuracy > 0.9
