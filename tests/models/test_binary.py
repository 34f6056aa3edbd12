"""Binarized networks (Hubara et al. 2016; XNOR-Net scaling): sign, STE, conversion, training."""

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import ModelError
from cnnlab.models import create_model
from cnnlab.models.binary import (
    BinaryActivation,
    BinaryConv2d,
    BinaryLinear,
    PooledBatchNorm2d,
    binary_sign,
    weight_bits,
)


def test_sign_forward_is_plus_minus_one_and_the_gradient_goes_straight_through_inside_one():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    y = binary_sign(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]  # hard-tanh STE: 1 where |x| ≤ 1


def test_binarize_keeps_first_conv_and_classifier_full_precision():
    net = create_model("vgg-small", num_classes=10, in_chans=3, input_size=(32, 32),
                       binary="bnn")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    lins = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert type(convs[0]) is nn.Conv2d and all(isinstance(m, BinaryConv2d) for m in convs[1:])
    assert type(lins[-1]) is nn.Linear
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    assert any(isinstance(m, BinaryActivation) for m in net.modules())
    out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_binary_blocks_pool_before_the_norm_so_the_signs_stay_balanced():
    torch.manual_seed(0)
    full = create_model("vgg-small", num_classes=10, in_chans=3, input_size=(32, 32))
    net = create_model("vgg-small", num_classes=10, in_chans=3, input_size=(32, 32),
                       binary="bnn")
    # every conv-BN-sign block that a max-pool closed now pools inside the norm, and the
    # parameter names are the full-precision net's, so checkpoints map one to one
    pooled = [m for m in net.modules() if isinstance(m, PooledBatchNorm2d)]
    n_pools = sum(type(m) is nn.MaxPool2d for m in full.modules())
    assert len(pooled) == n_pools == 4
    assert not any(type(m) is nn.MaxPool2d for m in net.modules() if m not in
                   [p.pool for p in pooled])
    assert set(net.state_dict()) == set(full.state_dict())
    # the first block's output (pool → BN → sign) is about half +1, not nearly all +1
    block = nn.Sequential(net.norm, net.features[0], net.features[1]).train()
    with torch.no_grad():
        signs = block(torch.rand(64, 3, 32, 32))
    assert signs.shape == (64, 32, 16, 16)
    assert 0.3 < (signs > 0).float().mean() < 0.7
    # a stem that pools inside one Sequential (ResNet's conv-BN-ReLU-pool) is rewritten too
    res = create_model("resnet18", num_classes=10, in_chans=3, input_size=(64, 64),
                       binary="bnn")
    assert any(isinstance(m, PooledBatchNorm2d) for m in res.modules())
    assert res(torch.rand(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("kind", ["bnn", "xnor"])
def test_binary_layers_compute_with_sign_weights(kind):
    torch.manual_seed(0)
    conv = BinaryConv2d(4, 6, 3, padding=1, bias=False, kind=kind)
    x = torch.randn(2, 4, 5, 5)
    w = torch.where(conv.weight >= 0, 1.0, -1.0)
    if kind == "xnor":
        w = w * conv.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(conv(x), nn.functional.conv2d(x, w, padding=1), atol=1e-6)
    lin = BinaryLinear(5, 3, kind=kind)
    wl = torch.where(lin.weight >= 0, 1.0, -1.0)
    if kind == "xnor":
        wl = wl * lin.weight.abs().mean(dim=1, keepdim=True)
    v = torch.randn(4, 5)
    assert torch.allclose(lin(v), v @ wl.T + lin.bias, atol=1e-6)


def test_weight_bits_counts_one_bit_per_binary_weight():
    net = create_model("simple-cnn", num_classes=10, binary="bnn")
    full = create_model("simple-cnn", num_classes=10)
    n = sum(p.numel() for p in full.parameters())
    assert weight_bits(full) == 32 * n
    binary_weights = sum(m.weight.numel() for m in net.modules()
                         if isinstance(m, (BinaryConv2d, BinaryLinear)))
    assert weight_bits(net) == 32 * (n - binary_weights) + binary_weights


def test_unknown_binary_kind_is_a_model_error():
    with pytest.raises(ModelError, match="binary must be one of"):
        create_model("simple-cnn", binary="ternary")


@pytest.mark.slow
def test_a_binary_net_trains_keeps_latent_weights_clipped_and_reloads(tmp_path):
    result = cnnlab.train(model="simple-cnn", data="digits", epochs=6, optimizer="adam",
                          lr=5e-3, precision="fp32", progress=False, out=str(tmp_path / "bnn"),
                          model_kwargs={"binary": "bnn"})
    assert result.test_accuracy > 0.8  # chance is 0.1; full precision reaches ~0.98
    model = cnnlab.load_model(tmp_path / "bnn")
    latent = [m.weight for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert latent and all(float(w.detach().abs().max()) <= 1.0 for w in latent)
    again = cnnlab.evaluate(tmp_path / "bnn")
    assert again["accuracy"] == pytest.approx(result.test_accuracy, abs=1e-9)
