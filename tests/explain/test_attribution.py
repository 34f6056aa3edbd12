"""Saliency, guided backprop, Grad-CAM and occlusion against what must be true."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.explain import grad_cam, guided_backprop, occlusion, relu_rule, saliency
from cnnlab.explain.synthetic import quadrant_fraction
from cnnlab.models import create_model
from cnnlab.models.base import CnnlabModel, FeatureInfo


class TwoLayerNet(CnnlabModel):
    """x (1×2×2, flattened) → Linear 4→3 → ReLU → Linear 3→2, with weights set by hand."""

    def __init__(self) -> None:
        super().__init__(1, 2, (2, 2), norm="none")
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())
        self.head = nn.Linear(3, 2)
        self._feature_info = [FeatureInfo("hidden", "features.2", 3, 1)]
        with torch.no_grad():
            self.features[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 1.0],
                                                        [0.5, 1.0, -1.0, 2.0],
                                                        [-1.0, 0.5, 1.0, 0.5]]))
            self.features[1].bias.copy_(torch.tensor([0.1, 0.2, -0.1]))
            # class 0 reads hidden unit 1 with a negative weight: the guided rule drops it
            self.head.weight.copy_(torch.tensor([[1.0, -1.5, 2.0], [0.3, 0.2, -0.4]]))
            self.head.bias.zero_()


def test_saliency_equals_autograd_gradient_of_the_class_logit():
    torch.manual_seed(0)
    model = create_model("simple-cnn", num_classes=10, in_chans=1, input_size=(8, 8)).eval()
    x = torch.rand(3, 1, 8, 8)
    target = torch.tensor([2, 7, 7])
    r = saliency(model, x, target)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(xr).gather(1, target[:, None]).sum(), xr)
    torch.testing.assert_close(r["grad"], expected, rtol=0, atol=0)
    torch.testing.assert_close(r["map"], expected.abs().amax(1))
    # default target: the predicted class
    pred = model(x).argmax(1)
    assert torch.equal(saliency(model, x)["target"], pred)


def test_guided_backprop_by_hand_on_a_two_layer_net():
    model = TwoLayerNet().eval()
    x = torch.tensor([[[[0.9, 0.1], [0.4, 0.8]]]])
    w1, b1 = model.features[1].weight, model.features[1].bias
    w2 = model.head.weight
    h = w1 @ x.flatten() + b1                  # pre-activations [1.8, 1.95, -0.15]
    assert (h > 0).tolist() == [True, True, False]  # both sides of the ReLU are exercised
    g_r = w2[0]                                # d logit_0 / d relu(h)
    true_grad = w1.T @ (g_r * (h > 0))         # backprop: ReLU passes where h > 0
    guided = w1.T @ (g_r * (h > 0) * (g_r > 0))  # guided: and only positive signal
    got_guided = guided_backprop(model, x, 0)["grad"].flatten()
    got_saliency = saliency(model, x, 0)["grad"].flatten()
    torch.testing.assert_close(got_guided, guided.detach())
    torch.testing.assert_close(got_saliency, true_grad.detach())
    assert not torch.allclose(got_guided, got_saliency)  # the rule made a difference


def test_the_only_difference_is_the_relu_rule():
    """With the rule set to plain backprop, the patched ReLUs give autograd's gradient exactly;
    a model without ReLUs (LeNet-5 with tanh) gets the same gradient from both, and a warning."""
    torch.manual_seed(0)
    model = create_model("simple-cnn", num_classes=10, in_chans=1, input_size=(8, 8)).eval()
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    with relu_rule(model, "backprop") as mode:
        (patched,) = torch.autograd.grad(model(x)[:, 3].sum(), x)
    assert mode.count == 4  # four nn.ReLU(inplace=True) modules ran
    (plain,) = torch.autograd.grad(model(x)[:, 3].sum(), x)
    assert torch.equal(patched, plain)

    lenet = create_model("lenet5", num_classes=10, in_chans=1, input_size=(32, 32)).eval()
    xl = torch.rand(1, 1, 32, 32)
    with pytest.warns(UserWarning, match="ran no ReLU"):
        guided = guided_backprop(lenet, xl, 1)["grad"]
    torch.testing.assert_close(guided, saliency(lenet, xl, 1)["grad"])


def test_functional_relu_is_covered_too():
    class Functional(TwoLayerNet):
        def forward_features(self, x):
            return torch.nn.functional.relu(self.features[1](self.features[0](x)))

    a, b = TwoLayerNet().eval(), Functional().eval()
    x = torch.tensor([[[[0.9, 0.1], [0.4, 0.8]]]])
    torch.testing.assert_close(guided_backprop(a, x, 0)["grad"], guided_backprop(b, x, 0)["grad"])


def test_grad_cam_mass_lies_in_the_quadrant_of_the_class(quadrant_model):
    model, x, y = quadrant_model
    positives = x[y == 1]
    cam = grad_cam(model, positives, "conv2", target=1)
    assert cam["cam"].shape == (len(positives), 16, 16)
    assert cam["cam_raw"].shape == (len(positives), 8, 8)
    frac = quadrant_fraction(cam["cam"])
    print(f"Grad-CAM (conv2) mass in the top-left quadrant: mean {frac.mean():.3f}, "
          f"min {frac.min():.3f} over {len(frac)} images (uniform would be 0.25)")
    assert frac.mean() > 0.5


def test_occlusion_drop_lies_in_the_quadrant_of_the_class(quadrant_model):
    model, x, y = quadrant_model
    positives = x[y == 1][:16]
    fracs = []
    for img in positives:
        r = occlusion(model, img, target=1, patch=4, stride=2)
        assert r["prob_map"].shape == (7, 7)
        assert r["drop"].shape == (16, 16)
        loc = r["min_location"]
        assert loc["probability"] == pytest.approx(float(r["prob_map"].min()))
        fracs.append(quadrant_fraction(r["drop"]))
    frac = torch.stack(fracs)
    print(f"occlusion probability-drop mass in the top-left quadrant: mean {frac.mean():.3f}, "
          f"min {frac.min():.3f} over {len(frac)} images")
    assert frac.mean() > 0.5


def test_occlusion_minimum_is_where_the_evidence_is():
    """A model whose class-1 logit is the mean of the top-left quadrant: occluding there with
    black lowers it most, and the probability map's minimum says so."""

    class QuadrantMean(CnnlabModel):
        def __init__(self):
            super().__init__(1, 2, (8, 8), norm="none")
            self.features = nn.Identity()
            self.head = nn.Identity()

        def forward(self, x):
            s = x[:, :, :4, :4].mean((1, 2, 3)) * 10
            return torch.stack([torch.zeros_like(s), s], 1)

    x = torch.full((1, 1, 8, 8), 0.5)
    x[..., :4, :4] = 1.0
    r = occlusion(QuadrantMean(), x, 1, patch=4, stride=4, fill=0.0)
    assert r["min_location"]["row"] == 0 and r["min_location"]["col"] == 0
    assert r["prob_map"].shape == (2, 2)


def test_bad_layer_and_target_are_one_line_errors(quadrant_model):
    model, x, _ = quadrant_model
    with pytest.raises(ConfigError, match="conv1, conv2"):
        grad_cam(model, x[:1], "conv9")
    with pytest.raises(ConfigError, match="out of range"):
        saliency(model, x[:1], 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TinyCNN has ReLUs: no warning expected
        guided_backprop(model, x[:1], 1)
