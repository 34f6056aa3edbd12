"""FractalNet (columns, mean joins, drop-path) and RoR (multilevel shortcuts over CIFAR ResNets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import create_model
from cnnlab.models.fractalnet import FractalBlock, FractalNet, join, sample_keep
from cnnlab.models.ror import RoR


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_backward(model: nn.Module) -> None:
    model.train()
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# -- FractalNet --------------------------------------------------------------------------------


def small_fractal(**kwargs) -> FractalNet:
    return FractalNet(blocks=2, columns=3, channels=(8, 16), input_size=(16, 16), **kwargs)


def column_alone(model: FractalNet, x: torch.Tensor, column: int) -> torch.Tensor:
    """The network with every join but column ``column``'s inputs removed, written out."""
    h = model.norm(x)
    for block, pool in zip(model.features.blocks, model.features.pools, strict=True):
        for unit in block.columns[column]:
            h = unit(h)
        h = pool(h)
    return model.head(h)


def test_fractalnet_40_layout_depth_and_parameter_count():
    torch.manual_seed(0)
    model = create_model("fractalnet")
    assert model.deepest_path_convs() == 40  # B · 2^(C-1) = 5 · 8
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 * (2**4 - 1)  # every block: 1 + 2 + 4 + 8 units
    assert [b.columns[-1][0][0].out_channels for b in model.features.blocks] == \
        [64, 128, 256, 512, 512]
    expected, cin = 0, 3
    for c in (64, 128, 256, 512, 512):  # 4 column heads cin→c, 11 units c→c, 15 BNs
        expected += 9 * (4 * cin * c + 11 * c * c) + 15 * 2 * c
        cin = c
    assert n_params(model) == expected + 512 * 10 + 10 == 76_106_634


@pytest.mark.slow
def test_fractalnet_40_forward_backward_at_full_width():
    torch.manual_seed(0)
    model = create_model("fractalnet")
    model.features.global_ratio = model.features.drop_path_local = 0.0  # every column gets grads
    forward_backward(model)


def test_fractalnet_drop_path_training_step_and_contract(check_contract):
    torch.manual_seed(0)
    model = create_model("fractalnet", channels=(8, 16, 16, 32, 32))  # 40 layers, narrow
    model = model.to(memory_format=torch.channels_last)
    model.train()
    out = model(torch.rand(2, 3, 32, 32))
    out.logsumexp(1).sum().backward()
    assert torch.isfinite(out).all() and model.head[-1].weight.grad.abs().sum() > 0
    check_contract(model, torch.rand(2, 3, 32, 32))


def test_join_is_the_mean_of_the_surviving_inputs():
    a, b, c = torch.full((2,), 1.0), torch.full((2,), 2.0), torch.full((2,), 6.0)
    assert torch.equal(join([a, b, c]), torch.full((2,), 3.0))
    assert torch.equal(join([a, b, c], [True, False, True]), torch.full((2,), 3.5))
    assert torch.equal(join([a, b, c], [False, True, False]), b)
    per_sample = join([a, b, c], torch.tensor([[True, False], [True, True], [False, True]]))
    assert per_sample.tolist() == [1.5, 4.0]  # sample 0: mean(a, b); sample 1: mean(b, c)
    with pytest.raises(ValueError):
        join([a, b], torch.tensor([[True, False], [True, False]]))  # sample 1 lost everything


def test_local_drop_path_drops_at_its_rate_but_keeps_one_input():
    torch.manual_seed(0)
    draws = sample_keep(4, 0.15, batch=4000)  # inputs × samples
    assert draws.shape == (4, 4000) and draws.any(dim=0).all()
    assert 0.13 < 1 - draws.float().mean().item() < 0.17
    assert (sample_keep(3, 1.0, batch=50).sum(0) == 1).all()  # p = 1: exactly one survivor


def test_block_joins_are_means_of_columns():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    two = FractalBlock(4, 5, columns=2).eval()
    c0, c1 = two.columns
    assert torch.allclose(two(x), (c0[0](x) + c1[1](c1[0](x))) / 2, atol=1e-6)
    with torch.no_grad():  # drop probability 1: one survivor per sample, i.e. a single column
        out = two(x, drop_prob=1.0)
    shallow, deep = c0[0](x), c1[1](c1[0](x))
    for s in range(x.shape[0]):
        assert torch.allclose(out[s], shallow[s], atol=1e-6) or \
            torch.allclose(out[s], deep[s], atol=1e-6)
    three = FractalBlock(4, 5, columns=3).eval()
    d0, d1, d2 = three.columns
    j1 = (d2[1](d2[0](x)) + d1[0](x)) / 2  # depth 2: joins columns 1 and 2
    j2 = (d2[3](d2[2](j1)) + d1[1](j1) + d0[0](x)) / 3  # depth 4: one join of all three
    assert torch.allclose(three(x), j2, atol=1e-6)


def test_global_drop_path_equals_running_that_column_alone():
    torch.manual_seed(0)
    model = small_fractal(global_ratio=1.0).train()
    for m in model.modules():  # running statistics, so that samples are independent
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    x = torch.rand(8, 3, 16, 16)
    out = model(x)
    columns = model.features.last_columns
    assert columns.shape == (8,) and len(set(columns.tolist())) > 1  # drawn per sample
    with torch.no_grad():
        for s, c in enumerate(columns.tolist()):
            assert torch.allclose(out[s], column_alone(model, x[s:s + 1], c)[0], atol=1e-5)
    model.eval()
    full = model(x)
    assert model.features.last_columns is None  # evaluation joins all columns
    model.use_column(2)  # the paper's "deepest column alone" at test time
    assert torch.allclose(model(x), column_alone(model, x, 2), atol=1e-5)
    assert not torch.allclose(model(x), full, atol=1e-4)


def test_half_of_each_training_batch_takes_global_drop_path():
    torch.manual_seed(0)
    model = small_fractal().train()
    model(torch.rand(10, 3, 16, 16))
    columns = model.features.last_columns
    assert (columns >= 0).sum() == 5 and (columns == -1).sum() == 5
    assert columns.max() < 3


def test_eval_is_deterministic_and_training_drop_path_is_random():
    torch.manual_seed(0)
    model = small_fractal(drop_path_local=0.5, global_ratio=0.5)
    x = torch.rand(4, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x)) and model.features.last_columns is None
    model.train()
    outs = [model(x) for _ in range(6)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])
    model.use_column(None)
    with pytest.raises(ValueError):
        model.use_column(3)


def test_fractalnet_dropout_per_block_and_option_checks():
    model = small_fractal(dropout=[0.0, 0.3])
    drops = [[m.p for m in b.modules() if isinstance(m, nn.Dropout)] for b in model.features.blocks]
    assert drops[0] == [] and drops[1] == [0.3] * 7
    with pytest.raises(ModelError):
        FractalNet(blocks=2, channels=(8, 16, 32))


# -- RoR ---------------------------------------------------------------------------------------


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> float:
        return 0.0


def test_ror3_shortcut_modules_per_level():
    model = create_model("ror3-resnet110")
    f = model.features
    assert f.count_shortcuts() == {"root": 1, "middle": 3, "final": 3 * 18}
    assert all(hasattr(block, "shortcut") for stage in f.stages for block in stage)
    assert isinstance(f.middle_shortcuts[0], nn.Identity)  # 16 → 16, same size
    for proj, (cin, cout, stride) in zip([*f.middle_shortcuts[1:], f.root_shortcut],
                                         [(16, 32, 2), (32, 64, 2), (16, 64, 4)], strict=True):
        conv, bn = proj
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == \
            (cin, cout, (1, 1), (stride, stride)) and isinstance(bn, nn.BatchNorm2d)
    wrn = create_model("ror3-wrn-16-4").features
    assert wrn.count_shortcuts() == {"root": 1, "middle": 3, "final": 6}
    assert wrn.middle_shortcuts[0][0].out_channels == 64  # 16 → 16k needs a projection
    assert RoR(depth=20, levels=2).features.count_shortcuts() == {"root": 1, "middle": 0,
                                                                  "final": 9}
    assert RoR(depth=20, levels=1).features.count_shortcuts() == {"root": 0, "middle": 0,
                                                                  "final": 9}


@pytest.mark.parametrize("kwargs", [{"depth": 20}, {"depth": 16, "widen_factor": 2}])
def test_ror_without_its_extra_shortcuts_is_the_plain_resnet(kwargs):
    torch.manual_seed(0)
    ror, plain = RoR(levels=3, **kwargs), RoR(levels=1, **kwargs)
    missing, unexpected = plain.load_state_dict(ror.state_dict(), strict=False)
    assert not missing and unexpected
    assert all(k.startswith(("features.middle_shortcuts.", "features.root_shortcut."))
               for k in unexpected)
    ror.eval(), plain.eval()
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(ror(x), plain(x), atol=1e-3)
    ror.features.middle_shortcuts = nn.ModuleList([Zero(), Zero(), Zero()])
    ror.features.root_shortcut = Zero()
    assert torch.allclose(ror(x), plain(x), atol=1e-5)


def test_ror_parameter_counts():
    assert n_params(RoR(depth=20, levels=1)) == 269_722  # He et al.'s ResNet-20 (option A)
    plain110, ror110 = n_params(RoR(depth=110, levels=1)), n_params(create_model("ror"))
    assert plain110 == 1_727_962
    assert ror110 - plain110 == (16 * 32 + 64) + (32 * 64 + 128) + (16 * 64 + 128)
    assert ror110 == 1_731_866  # the paper's "1.7M" RoR-3-110
    wrn = n_params(RoR(depth=16, widen_factor=4, levels=1))
    assert wrn == 2_748_890  # WRN-16-4, 2.7M in Zagoruyko & Komodakis
    assert n_params(create_model("ror3-wrn-16-4")) == 2_796_378
    with pytest.raises(ModelError, match="6n"):
        RoR(depth=21)


@pytest.mark.parametrize("name", ["ror3-resnet110", "ror3-wrn-16-4"])
def test_ror_forward_backward_and_contract(name, check_contract):
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last)
    forward_backward(model)
    check_contract(model, torch.rand(2, 3, 32, 32))
