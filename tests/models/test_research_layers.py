"""Research layers (hex kernels, Gabor convolutions, BitNet tree blocks, manifold kernels with
Riemannian SGD, spatial transformers) and ``research-cifar``, which switches each of them on."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import CnnlabModel, create_model
from cnnlab.models.layers import (
    BinaryTreeBlock,
    GaborConv2d,
    HexConv2d,
    ManifoldConv2d,
    OrientationExpand,
    OrientationMaxPool,
    gabor_bank,
    hex_mask,
)
from cnnlab.models.stn import SpatialTransformer, with_stn
from cnnlab.train.riemannian import (
    MANIFOLDS,
    RiemannianSGD,
    constraint_error,
    manifold_map,
    project,
    to_manifold,
)

# -- quasi-hexagonal kernels -------------------------------------------------------------------


def test_hex_mask_has_seven_taps_in_four_rotations():
    masks = [hex_mask(o) for o in range(4)]
    for o, m in enumerate(masks):
        assert m.shape == (3, 3) and int(m.sum()) == 7
        assert m[1].tolist() == [1, 1, 1] and m[:, 1].tolist() == [1, 1, 1]  # centre cross kept
        assert torch.equal(m, torch.rot90(masks[0], o))
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 4
    assert masks[0][0].tolist() == [0, 1, 0]  # Δ: top corners removed
    assert masks[2][2].tolist() == [0, 1, 0]  # ∇: bottom corners removed


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05),
])
def test_hex_conv_is_a_masked_conv_whose_masked_taps_stay_zero(make_opt):
    torch.manual_seed(0)
    conv = HexConv2d(3, 4, orientation=1)
    off = hex_mask(1) == 0
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * hex_mask(1), padding=1), atol=1e-6)
    opt = make_opt(conv.parameters())
    w0 = conv.weight.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        conv(x).square().mean().backward()
        assert torch.all(conv.weight.grad[..., off] == 0)
        opt.step()
    assert torch.all(conv.weight[..., off] == 0)
    assert not torch.allclose(conv.weight[..., ~off], w0[..., ~off])  # the live taps learned


def test_hex_orientation_turns_from_layer_to_layer_and_survives_he_init():
    model = create_model("research-cifar", conv="hex")
    hexes = [m for m in model.modules() if isinstance(m, HexConv2d)]
    assert [h.orientation for h in hexes] == [0, 1, 2, 3, 0, 1]
    for h in hexes:  # the model's he_init re-randomised the weights; masks were re-applied
        assert torch.all(h.weight[..., h.mask == 0] == 0)
        assert torch.equal(h.mask, hex_mask(h.orientation))


# -- Gabor convolutions ------------------------------------------------------------------------


@pytest.mark.parametrize("orientations", [4, 8])
def test_gabor_bank_orientations_are_rotations_of_each_other(orientations):
    U = orientations
    bank = gabor_bank(U, scale=1, size=5)
    assert bank.shape == (U, 5, 5) and bank.min() >= 0 and bank.max() <= 1
    for u in range(U):  # θ_u + 90° is orientation u + U/2
        assert torch.allclose(torch.rot90(bank[u]), bank[(u + U // 2) % U], atol=1e-6)
        assert not torch.allclose(bank[u], bank[(u + 1) % U], atol=1e-2)
    assert not torch.allclose(gabor_bank(4, scale=1), gabor_bank(4, scale=3), atol=1e-2)


def test_gabor_conv_modulates_learned_filters_by_a_fixed_bank():
    torch.manual_seed(0)
    conv = GaborConv2d(8, 12, orientations=4, scale=2)
    assert conv.weight.shape == (3, 8, 3, 3)  # 12/4 learned filters over all 8 input channels
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    assert "bank" in dict(conv.named_buffers())
    w = conv.modulated_weight()
    assert w.shape == (12, 8, 3, 3)
    for o, u, i, m in [(0, 0, 0, 0), (2, 3, 1, 2), (1, 2, 0, 3)]:
        assert torch.allclose(w[o * 4 + u, i * 4 + m], conv.weight[o, i * 4 + m] * conv.bank[u])
    x = torch.randn(2, 8, 6, 6)
    y = conv(x)
    assert y.shape == (2, 12, 6, 6)
    assert torch.allclose(y, F.conv2d(x, w, padding=1), atol=1e-5)
    y.square().mean().backward()
    assert conv.weight.grad.abs().sum() > 0 and conv.bank.grad is None
    with pytest.raises(ValueError, match="multiples"):
        GaborConv2d(6, 8, orientations=4)


def test_orientation_expand_and_max_pool():
    x = torch.randn(2, 3, 4, 4)
    e = OrientationExpand(4)(x)
    assert e.shape == (2, 12, 4, 4) and torch.equal(e[:, 4:8], x[:, 1:2].expand(-1, 4, -1, -1))
    y = torch.randn(2, 8, 3, 3)
    p = OrientationMaxPool(4)(y)
    assert p.shape == (2, 2, 3, 3) and torch.equal(p[:, 1], y[:, 4:8].amax(1))


# -- BitNet binary-tree blocks -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 3])
def test_tree_block_width_nodes_and_concatenation(depth):
    torch.manual_seed(0)
    D = 32
    block = BinaryTreeBlock(5, D, depth, stride=2)
    assert block.num_convs() == 2 * depth
    widths = [leaf[0].out_channels for leaf in block.leaves] + [block.nodes[-1][0].out_channels]
    assert widths == [D >> i for i in range(1, depth + 1)] + [D >> depth] and sum(widths) == D
    x = torch.randn(2, 5, 8, 8)
    block.eval()
    y = block(x)
    assert y.shape == (2, D, 4, 4)
    assert torch.allclose(y[:, :D // 2], block.leaves[0](x))  # level-1 leaf sees the input
    deep = x
    for node in block.nodes:  # the longest path: depth conv units
        deep = node(deep)
    assert torch.allclose(y[:, D - (D >> depth):], deep)
    block.train()
    block(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_tree_block_depth_one_is_one_conv_and_saves_parameters_at_depth_three():
    assert BinaryTreeBlock(8, 16, 1).num_convs() == 1
    tree = BinaryTreeBlock(64, 64, 3)
    stacked = nn.Sequential(*[nn.Conv2d(64, 64, 3, padding=1, bias=False) for _ in range(3)])
    n_tree = sum(m.weight.numel() for m in tree.modules() if isinstance(m, nn.Conv2d))
    assert n_tree < 0.5 * sum(p.numel() for p in stacked.parameters())
    with pytest.raises(ValueError, match="divisible"):
        BinaryTreeBlock(8, 20, 3)


# -- manifold kernels and Riemannian SGD -------------------------------------------------------


def random_gradient_steps(layer: nn.Module, steps: int, lr: float = 0.05) -> None:
    opt = RiemannianSGD(layer.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        layer.weight.grad = torch.randn_like(layer.weight)
        opt.step()


@pytest.mark.parametrize("cin,cout", [(4, 8), (3, 40)])
def test_stiefel_kernels_stay_orthonormal_after_200_random_steps(cin, cout):
    torch.manual_seed(0)
    conv = ManifoldConv2d(cin, cout, 3, manifold="stiefel")
    w0 = conv.weight.detach().clone()
    random_gradient_steps(conv, 200)
    w = conv.weight.detach().reshape(cout, -1).double()
    gram = w @ w.T if cout <= w.shape[1] else w.T @ w  # W Wᵀ = I, or WᵀW = I when cout > n
    assert torch.allclose(gram, torch.eye(gram.shape[0], dtype=gram.dtype), atol=1e-5)
    assert (conv.weight.detach() - w0).abs().max() > 0.1  # it did move


@pytest.mark.parametrize("manifold,rows", [("sphere", lambda w: w.reshape(w.shape[0], -1)),
                                           ("oblique", lambda w: w.reshape(-1, 9))])
def test_sphere_and_oblique_kernels_keep_unit_norms(manifold, rows):
    torch.manual_seed(0)
    conv = ManifoldConv2d(3, 6, 3, manifold=manifold)
    random_gradient_steps(conv, 200)
    norms = rows(conv.weight.detach()).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert constraint_error(manifold, conv.weight) < 1e-5


def test_tangent_projection_is_orthogonal_to_the_point():
    torch.manual_seed(0)
    w = to_manifold("sphere", torch.randn(6, 3, 3, 3))
    g = torch.randn_like(w)
    gt = project("sphere", w, g)
    assert (w.reshape(6, -1) * gt.reshape(6, -1)).sum(1).abs().max() < 1e-5  # <w, g_t> = 0
    assert torch.allclose(project("sphere", w, gt), gt, atol=1e-6)  # a projection
    assert ((g - gt).reshape(6, -1) * gt.reshape(6, -1)).sum().abs() < 1e-4  # removed ⟂ kept
    w = to_manifold("oblique", torch.randn(4, 2, 3, 3))
    gt = project("oblique", w, torch.randn_like(w))
    assert (w * gt).sum(dim=(2, 3)).abs().max() < 1e-5  # per 2-D kernel
    w = to_manifold("stiefel", torch.randn(4, 2, 3, 3)).reshape(4, -1)
    xi = project("stiefel", w, torch.randn_like(w))
    a = w @ xi.T  # tangent at W Wᵀ = I ⟺ W ξᵀ skew-symmetric
    assert torch.allclose(a + a.T, torch.zeros_like(a), atol=1e-5)


@pytest.mark.parametrize("manifold", MANIFOLDS)
def test_riemannian_sgd_decreases_the_loss_on_a_tiny_problem(manifold):
    torch.manual_seed(0)
    student = ManifoldConv2d(3, 4, 3, manifold=manifold)
    teacher = ManifoldConv2d(3, 4, 3, manifold=manifold)
    x = torch.randn(16, 3, 8, 8)
    target = teacher(x).detach()
    opt = RiemannianSGD(student.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.mse_loss(student(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    assert constraint_error(manifold, student.weight) < 1e-5


def test_untagged_parameters_get_exactly_torch_sgd():
    torch.manual_seed(0)
    a = nn.Linear(5, 3)
    b = copy.deepcopy(a)
    opts = [RiemannianSGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01),
            torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)]
    x = torch.randn(8, 5)
    for _ in range(5):
        for model, opt in zip((a, b), opts, strict=True):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_research_cifar_manifold_step_keeps_every_kernel_on_its_manifold():
    torch.manual_seed(0)
    model = create_model("research-cifar", conv="stiefel").to(memory_format=torch.channels_last)
    kernels = [m.weight for m in model.modules() if isinstance(m, ManifoldConv2d)]
    assert len(kernels) == 6 and all(k._manifold == "stiefel" for k in kernels)
    assert max(constraint_error("stiefel", k) for k in kernels) < 1e-5  # survived he_init
    twin = copy.deepcopy(model)  # deepcopy drops tensor attributes: manifold_map finds them
    assert len(manifold_map(twin)) == 6
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for net in (model, twin):
        opt = RiemannianSGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4,
                            manifolds=manifold_map(net))
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        ws = [m.weight for m in net.modules() if isinstance(m, ManifoldConv2d)]
        assert max(constraint_error("stiefel", w) for w in ws) < 1e-5


# -- spatial transformer -----------------------------------------------------------------------


def test_spatial_transformer_is_the_identity_at_init_and_can_translate():
    torch.manual_seed(0)
    stn = SpatialTransformer(3, (20, 24))
    x = torch.rand(2, 3, 20, 24)
    assert torch.allclose(stn(x), x, atol=1e-5)
    assert torch.equal(stn.fc_theta.weight, torch.zeros(6, 32))
    with torch.no_grad():  # x-shift by one pixel in affine_grid's [-1, 1] coordinates
        stn.fc_theta.bias.copy_(torch.tensor([1.0, 0.0, 2 / 24, 0.0, 1.0, 0.0]))
    out = stn(x)
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-5)
    assert torch.allclose(out[..., -1], torch.zeros_like(out[..., -1]), atol=1e-5)


def test_with_stn_keeps_the_contract_and_equals_the_inner_model_at_init(check_contract):
    torch.manual_seed(0)
    inner = create_model("research-cifar", cfg=[16, "M", 32, "M"], input_size=(16, 16))
    inner.norm.set_stats(mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    x = torch.rand(2, 3, 16, 16)
    ref = inner.eval()(x)
    model = with_stn(inner)
    assert isinstance(model, CnnlabModel) and model.norm is inner.norm
    assert torch.allclose(model.eval()(x), ref, atol=1e-5)
    keys = list(model.state_dict())
    assert "inner.norm.mean" in keys and not any(k.startswith("norm.") for k in keys)
    assert model.feature_layers()[0].module == "stn"
    assert all(f.module.startswith("inner.") for f in model.feature_layers()[1:])
    model.train()
    F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    assert model.stn.fc_theta.weight.grad.abs().sum() > 0  # the localiser learns
    check_contract(model, x)
    assert inner.num_classes == 3
    with pytest.raises(TypeError):
        with_stn(nn.Linear(2, 2))


# -- research-cifar: every layer switched on by a builder option --------------------------------


@pytest.mark.parametrize("kwargs", [
    {}, {"conv": "hex"}, {"conv": "gabor"}, {"conv": "sphere"}, {"conv": "oblique"},
    {"conv": "stiefel"}, {"tree_depth": 3}, {"conv": "gabor", "tree_depth": 2}, {"stn": True},
], ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()) or "square")
def test_research_cifar_variants_forward_backward_and_contract(kwargs, check_contract):
    torch.manual_seed(0)
    # channels-last, as the training loop runs models by default
    model = create_model("research-cifar", **kwargs).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    check_contract(model, x)


def test_research_cifar_rejects_bad_options():
    with pytest.raises(ModelError, match="unknown conv"):
        create_model("research-cifar", conv="triangle")
    with pytest.raises(ModelError, match="divisible"):
        create_model("research-cifar", cfg=[24, "M"], tree_depth=4)
