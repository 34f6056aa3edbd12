"""The classic families against their papers: parameter counts, multiply-adds, the details that
make each one *that* network (LRN placement, v1 stride, option-A shortcuts, aux heads, ...).

Counts run on the ``meta`` device: a model built there has shapes but no storage, so even the
144 M-parameter VGGs cost milliseconds. The generic contract tests live in test_registry.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models import create_model
from cnnlab.models.alexnet import WithinChannelLRN
from cnnlab.models.googlenet import INCEPTION_CFG, Inception
from cnnlab.models.resnet import BasicBlock, Bottleneck, PadShortcut
from cnnlab.perf.flops import count_depth, count_layers, count_macs, count_params


def meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


# -- parameter counts (224×224, 1000 classes for the ImageNet ones) ----------------------------

EXACT = {
    "alexnet": 61_100_840,
    "vgg-a": 132_863_336, "vgg-a-lrn": 132_863_336, "vgg11": 132_863_336,
    "vgg-b": 133_047_848, "vgg-c": 133_638_952, "vgg-d": 138_357_544, "vgg-e": 143_667_240,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    # torchvision's counts for the same layouts
    "densenet169": 14_149_480, "densenet201": 20_013_928, "densenet161": 28_681_000,
    # our own figures (regression): the cuda-convnet net, Table 1 GoogLeNet without aux heads
    "alexnet-cifar": 89_578, "googlenet": 6_998_552,
}


@pytest.mark.parametrize("name", EXACT)
def test_exact_param_counts(name):
    assert count_params(meta(name)) == EXACT[name]


APPROX = {  # published figure (CIFAR models: 10 classes), within 2 %
    "resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6,
    "resnet110": 1.7e6, "preact-resnet18": 11.2e6, "preact-resnet164": 1.7e6,
    "preact-resnet1001": 10.2e6, "wrn-28-10": 36.5e6, "densenet-bc-100-12": 0.78e6,
}


@pytest.mark.parametrize("name", APPROX)
def test_published_param_counts(name):
    n = count_params(meta(name))
    assert abs(n - APPROX[name]) <= 0.02 * APPROX[name], f"{name}: {n:,}"


def test_densenet_bc_100_12_in_published_range():
    # Table 2 says 0.8 M; reimplementations (e.g. bamos/densenet.pytorch) count 769,162 = 0.77 M
    assert count_params(meta("densenet-bc-100-12")) == 769_162


def test_googlenet_is_table_1():
    """Our count equals the weights Table 1's columns imply (+ biases): 6.99 M, not the 6.8 M
    the table's own "params" column sums to — that column is approximate (it gives conv1 2.7 K
    for a 7×7×3×64 = 9.4 K conv, and 5a *fewer* weights than 4e with the same columns)."""
    model = meta("googlenet", aux_logits=False)
    weights = 7 * 7 * 3 * 64 + 64 * 64 + 3 * 3 * 64 * 192 + 1024 * 1000
    cin = 192
    for item in INCEPTION_CFG:
        if item == "M":
            continue
        c1, c3r, c3, c5r, c5, pp = item[1]
        weights += cin * (c1 + c3r + c5r + pp) + 9 * c3r * c3 + 25 * c5r * c5
        cin = c1 + c3 + c5 + pp
    n_weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert n_weights == weights == 6_990_272
    assert abs(count_params(model) - 6.8e6) <= 0.03 * 6.8e6


# -- multiply-adds ----------------------------------------------------------------------------

RESNET_MACS = {"resnet18": 1.8e9, "resnet34": 3.6e9, "resnet50": 3.8e9, "resnet101": 7.6e9,
               "resnet152": 11.3e9}


@pytest.mark.parametrize("name", RESNET_MACS)
def test_resnet_multiply_adds(name):
    """Table 1's FLOPs are multiply-adds; v1 (stride on the first 1×1) gives 3.86 G for
    ResNet-50 where torchvision's v1.5 gives 4.1 G."""
    macs = count_macs(meta(name), (3, 224, 224))
    assert abs(macs - RESNET_MACS[name]) <= 0.03 * RESNET_MACS[name], f"{name}: {macs / 1e9:.3f} G"


def test_count_macs_oracle():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 10 * 10, 5))
    assert count_macs(conv, (3, 10, 10)) == 10 * 10 * 8 * 3 * 9 + 800 * 5
    assert count_params(conv) == 8 * 27 + 8 + 800 * 5 + 5


def test_count_depth_follows_the_longest_path():
    """Shortcuts and parallel branches add no depth; papers' depths come out."""
    assert {n: count_depth(meta(n), (3, 224, 224)) for n in
            ("alexnet", "vgg-d", "googlenet", "resnet50", "densenet121")} == {
        "alexnet": 8, "vgg-d": 16, "googlenet": 22, "resnet50": 50, "densenet121": 121}
    assert count_depth(meta("resnet110"), (3, 32, 32)) == 110
    assert count_layers(meta("resnet50")) == 50 + 4  # + four projection shortcuts


# -- AlexNet ----------------------------------------------------------------------------------


def test_alexnet_paper_details():
    model = meta("alexnet")
    kinds = [type(m).__name__ for m in model.features]
    # LRN after the ReLUs of conv1 and conv2, before their (overlapping 3×3/2) pools
    assert kinds[:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d",
                         "Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all((p.kernel_size, p.stride) == (3, 2) for p in pools)
    assert [m.p for m in model.head if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    lrn = model.features.lrn1
    assert (lrn.size, lrn.beta, lrn.k) == (5, 0.75, 2.0) and lrn.alpha / lrn.size == 1e-4


def test_alexnet_paper_init():
    model = create_model("alexnet", input_size=(64, 64))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [m.bias.detach().mean().item() for m in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert [m.bias.detach().mean().item() for m in fcs] == [1.0, 1.0, 0.0]
    assert abs(fcs[0].weight.detach().std().item() - 0.01) < 1e-3


def test_alexnet_cifar_is_cuda_convnet_18pct():
    model = create_model("alexnet-cifar")
    assert [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)] == [32, 32, 64]
    assert sum(isinstance(m, WithinChannelLRN) for m in model.features) == 2
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


# -- VGG --------------------------------------------------------------------------------------


def test_vgg_configurations():
    def kernels(name):
        return [m.kernel_size[0] for m in meta(name).features if isinstance(m, nn.Conv2d)]

    assert kernels("vgg-c") == [3] * 6 + [1] + [3, 3, 1] + [3, 3, 1]
    assert kernels("vgg16") == [3] * 13
    assert len(kernels("vgg19")) == 16
    assert any(isinstance(m, nn.LocalResponseNorm) for m in meta("vgg-a-lrn").features)
    bn = meta("vgg16-bn")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.features) == 13
    assert [f.stride for f in bn.feature_layers()] == [2, 4, 8, 16, 32]


def test_vgg_bn_counts():
    """-bn: conv biases dropped (BN's β replaces them), γ and β added: + c per conv."""
    convs = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert count_params(meta("vgg-d-bn")) == EXACT["vgg-d"] + sum(convs)


def test_vgg_cifar_size():
    model = meta("vgg11", input_size=(32, 32), num_classes=10)  # shapes only: runs on meta
    assert count_params(model) == EXACT["vgg-a"] - 4096 * 990 - 990  # 1×1 map, pooled to 7×7
    assert model(torch.rand(1, 3, 32, 32, device="meta")).shape == (1, 10)
    lean = create_model("vgg11", input_size=(32, 32), num_classes=10, pool_size=1, fc_width=512)
    assert lean.classifier().in_features == 512 and count_params(lean) < 10e6
    assert lean(torch.rand(1, 3, 32, 32)).shape == (1, 10)


# -- GoogLeNet --------------------------------------------------------------------------------


def test_googlenet_aux_heads_only_in_training():
    model = create_model("googlenet", input_size=(64, 64), num_classes=5)
    assert model.aux_weight == 0.3
    x = torch.rand(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert out.shape == (2, 5) and len(model.aux_outputs) == 2
    assert all(a.shape == (2, 5) for a in model.aux_outputs)
    (out.sum() + sum(a.sum() for a in model.aux_outputs)).backward()
    assert all(p.grad is not None for p in model.parameters())  # aux heads train too
    model(x)
    assert len(model.aux_outputs) == 2  # reset each forward, not accumulated
    model.eval()
    with torch.no_grad():
        model(x)
    assert model.aux_outputs == []
    calls = []
    for head in model.aux_heads:
        head.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model(x)
    assert not calls  # the aux heads do not even run in eval mode
    no_aux = create_model("googlenet", input_size=(64, 64), aux_logits=False).train()
    no_aux(x)
    assert no_aux.aux_outputs == [] and no_aux.aux_heads is None


def test_googlenet_paper_details():
    model = meta("googlenet")
    # 1×1 conv 128 on 4a (512 ch) and 4d (528 ch); FC 4·4·128 → 1024; linear 1024 → 1000
    per_head = 128 + (2048 * 1024 + 1024) + (1024 * 1000 + 1000)
    assert count_params(model, aux=True) - count_params(model) == 2 * per_head + (512 + 528) * 128
    assert model.aux_heads[0].pool.kernel_size == 5 and model.aux_heads[0].pool.stride == 3
    assert model.aux_heads[0].fc[-1].p == 0.7 and model.head[2].p == 0.4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fives = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (5, 5)]
    assert len(fives) == 9
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4 and all(p.ceil_mode for p in pools)


def test_inception_module_stands_alone():
    block = Inception(192, 64, 96, 128, 16, 32, 32)
    assert block.out_channels == 256
    assert block(torch.rand(1, 192, 12, 12)).shape == (1, 256, 12, 12)


def test_googlenet_cifar_size_runs():
    model = create_model("googlenet", input_size=(32, 32), num_classes=10)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


# -- ResNet -----------------------------------------------------------------------------------


def test_resnet_v1_stride_on_first_1x1():
    model = meta("resnet50")
    first = model.features.layer2[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1[0].kernel_size == (1, 1) and first.conv1[0].stride == (2, 2)
    assert first.conv2[0].stride == (1, 1)
    assert first.shortcut[0].stride == (2, 2)  # option B projection


def test_cifar_resnet_option_a_shortcut():
    model = create_model("resnet20")
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())
    shortcut = model.features.layer2[0].shortcut
    assert isinstance(shortcut, PadShortcut)
    x = torch.rand(1, 16, 8, 8)
    y = shortcut(x)
    assert y.shape == (1, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert y[:, 16:].abs().sum() == 0
    assert [len(getattr(model.features, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]


def test_plain_nets_drop_only_the_shortcuts():
    plain, res = meta("plain18"), meta("resnet18")
    projections = sum(count_params(b.shortcut) for b in res.modules()
                      if isinstance(b, BasicBlock) and isinstance(b.shortcut, nn.Sequential))
    assert count_params(plain) == count_params(res) - projections
    assert all(b.shortcut is None for b in plain.modules() if isinstance(b, BasicBlock))
    assert count_params(meta("plain56")) == count_params(meta("resnet56"))
    block = create_model("plain20").features.layer1[0].eval()
    x = torch.rand(1, 16, 4, 4)
    with torch.no_grad():  # no identity added: the output is just the residual branch
        torch.testing.assert_close(block(x), torch.relu(block.conv2(torch.relu(block.conv1(x)))))


def test_zero_init_residual_starts_blocks_as_identity():
    model = create_model("resnet20", zero_init_residual=True).eval()
    block = model.features.layer1[1]
    x = torch.rand(1, 16, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))
    with pytest.raises(ValueError):
        create_model("plain20", zero_init_residual=True)


# -- pre-activation, wide, dense --------------------------------------------------------------


def test_preact_bottleneck_depths():
    assert [len(getattr(meta("preact-resnet164").features, f"layer{i}")) for i in (1, 2, 3)] == \
        [18, 18, 18]
    assert len(meta("preact-resnet1001").features.layer3) == 111
    assert meta("preact-resnet164").feature_layers()[-1].channels == 256


def test_wrn_dropout_between_convs():
    model = create_model("wrn-16-4", dropout=0.3)
    drops = [m for m in model.features.layer1[0].conv2 if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.3]
    assert not any(isinstance(m, nn.Dropout) for m in create_model("wrn-16-4").modules())


def test_densenet_stage_channels():
    assert [f.channels for f in meta("densenet121").feature_layers()] == [64, 256, 512, 1024,
                                                                          1024, 1024]
    cifar = meta("densenet-bc-100-12")
    assert [len(getattr(cifar.features, f"block{i}")) for i in (1, 2, 3)] == [16, 16, 16]
