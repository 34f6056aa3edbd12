"""The deconvnet projection: shape, switches, and a hand-written Zeiler–Fergus deconvnet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.explain import deconvnet, top_patches
from cnnlab.models import create_model
from cnnlab.models.base import CnnlabModel, FeatureInfo


class SwitchNet(CnnlabModel):
    """1×1 conv → ReLU → 2×2 max-pool → 1×1 conv → ReLU. The 1×1 convolutions never move
    signal sideways, so a projection can land only where a max-pool switch points."""

    def __init__(self) -> None:
        super().__init__(2, 2, (8, 8), norm="none")
        self.features = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        self._feature_info = [FeatureInfo("low", "features.1", 3, 1),
                              FeatureInfo("top", "features.4", 4, 2)]


def test_projection_has_the_input_shape():
    torch.manual_seed(0)
    model = create_model("simple-cnn", num_classes=10, in_chans=3, input_size=(12, 12))
    x = torch.rand(2, 3, 12, 12)
    for layer in ("block1", "block2", "block3"):
        r = deconvnet(model, x, layer)
        assert r["projection"].shape == x.shape
        assert len(r["channel"]) == 2 and len(r["location"]) == 2


def test_projection_is_zero_where_no_switch_points():
    torch.manual_seed(0)
    model = SwitchNet()
    x = torch.rand(1, 2, 8, 8)
    r = deconvnet(model, x, "top")  # the channel with the strongest activation
    assert r["activation"][0] > 0
    proj = r["projection"][0]
    (switches,) = r["switches"]            # one max-pool ran
    idx = switches["indices"][0]           # (3, 4, 4): argmax position in each 8×8 plane
    i, j = r["location"][0]
    allowed = torch.zeros(64, dtype=torch.bool)
    allowed[idx[:, i, j]] = True           # where the pooled unit (i, j) came from, per channel
    support = proj.abs().sum(0).flatten() > 0
    assert support.any(), "the projection is empty"
    assert not (support & ~allowed).any(), "signal landed where no switch points"
    assert (~allowed).sum() >= 60          # so most of the image must be exactly zero
    assert (proj.abs().sum(0).flatten()[~allowed] == 0).all()


def _switch_net_with_known_signs() -> SwitchNet:
    """Weights chosen so that the three ReLU rules give three different projections: channel 0
    of the low layer never fires (its switches point at the first element of each window), and
    the top units read the low channels with weights +1, +1, -1."""
    torch.manual_seed(1)
    model = SwitchNet().eval()
    with torch.no_grad():
        model.features[0].weight.copy_(torch.rand(3, 2, 1, 1) + 0.1)
        model.features[0].bias.copy_(torch.tensor([-10.0, 0.1, 0.1]))
        signs = torch.tensor([1.0, 1.0, -1.0]).view(1, 3, 1, 1).repeat(4, 1, 1, 1)
        model.features[3].weight.copy_(signs + 0.1 * torch.arange(4.0).view(4, 1, 1, 1))
        model.features[3].bias.fill_(0.5)
    return model


def _by_hand(model: SwitchNet, x: torch.Tensor, channel: int, rule: str) -> torch.Tensor:
    """Layer by layer, as Zeiler & Fergus describe it (``rule="deconv"``) — or with the
    backprop / guided ReLU rule, to show the three differ on this net."""
    conv1, conv2 = model.features[0], model.features[3]
    with torch.no_grad():
        a1 = F.relu(conv1(x))
        pooled, idx = F.max_pool2d(a1, 2, return_indices=True)
        top = F.relu(conv2(pooled))
        seed = torch.zeros_like(top)
        i, j = divmod(int(top[0, channel].argmax()), top.shape[3])
        seed[0, channel, i, j] = top[0, channel, i, j]
        relu_back = {"deconv": lambda g, a: F.relu(g),             # rectify the signal
                     "backprop": lambda g, a: g * (a > 0),         # the true gradient
                     "guided": lambda g, a: F.relu(g) * (a > 0)}[rule]
        s = relu_back(seed, top)
        s = F.conv_transpose2d(s, conv2.weight)                   # transposed filters
        s = F.max_unpool2d(s, idx, 2, output_size=a1.shape[2:])  # unpool with the switches
        s = relu_back(s, a1)
        return F.conv_transpose2d(s, conv1.weight), (i, j), idx  # transposed filters


def test_matches_a_hand_written_deconvnet():
    """Zeiler & Fergus, layer by layer: rectify, transposed filter, unpool with the switches,
    rectify, transposed filter — against the autograd-based implementation."""
    model = _switch_net_with_known_signs()
    x = torch.rand(1, 2, 8, 8)
    channel = 1
    r = deconvnet(model, x, "top", channel)
    assert r["activation"][0] > 0
    expected, loc, idx = _by_hand(model, x, channel, "deconv")
    assert r["location"][0] == loc
    assert torch.equal(r["switches"][0]["indices"], idx)
    torch.testing.assert_close(r["projection"], expected)
    # the comparison can fail: the other ReLU rules give other projections on this net
    for rule in ("backprop", "guided"):
        other, _, _ = _by_hand(model, x, channel, rule)
        assert (other - expected).abs().max() > 1e-3, rule


def test_top_patches_are_the_strongest_images(quadrant_model):
    model, x, _ = quadrant_model
    with torch.no_grad():
        acts = model.features(x)
    channel = int(acts.mean((0, 2, 3)).argmax())
    r = top_patches(model, x, "conv2", channel, k=9)
    act = acts[:, channel].flatten(1).amax(1)
    assert r["indices"] == act.topk(9).indices.tolist()
    torch.testing.assert_close(torch.tensor(r["values"]), act.topk(9).values)
    assert (r["projections"].flatten(1).abs().sum(1) > 0).all()
    assert r["patches"].shape == r["projections"].shape
    assert r["patches"].shape[:2] == (9, 1)


def test_channel_out_of_range_is_a_clear_error():
    model = SwitchNet()
    with pytest.raises(ConfigError, match=r"--channel 4 is out of range: layer 'top' has 4"):
        deconvnet(model, torch.rand(1, 2, 8, 8), "top", 4)
