"""Filters (first executed conv, norm maps) and feature maps."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.explain import feature_maps, first_layer_filters, layer_filters
from cnnlab.explain.filters import filters_as_images
from cnnlab.models.base import CnnlabModel, FeatureInfo


class DefinedBackwards(CnnlabModel):
    """``late`` is defined first but runs second: "first layer" must mean first executed."""

    def __init__(self) -> None:
        super().__init__(3, 2, (8, 8), norm="none")
        self.late = nn.Conv2d(4, 5, 3, padding=1)
        self.early = nn.Conv2d(3, 4, 5, padding=2)
        self.features = nn.Sequential(self.early, nn.ReLU(), self.late, nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
        self._feature_info = [FeatureInfo("out", "features.3", 5, 1)]


def test_first_layer_is_the_first_conv_executed():
    model = DefinedBackwards()
    assert next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) == "late"
    f = first_layer_filters(model)
    assert f["path"] in ("early", "features.0")
    assert f["weight"].shape == (4, 3, 5, 5) and f["rgb"]
    f = layer_filters(model, "out")
    assert f["weight"].shape == (5, 4, 3, 3)
    torch.testing.assert_close(f["norms"], f["weight"].pow(2).sum(1).sqrt())


def test_filters_as_images_maps_zero_to_grey():
    w = torch.zeros(2, 3, 3, 3)
    w[0, :, 0, 0] = torch.tensor([1.0, -1.0, 0.5])
    img = filters_as_images(w)
    assert img.shape == (2, 3, 3, 3)
    assert img.min() >= 0 and img.max() <= 1
    assert img[0, 0, 0, 0] == 1.0 and img[0, 1, 0, 0] == 0.0 and img[0, 0, 1, 1] == 0.5
    assert filters_as_images(torch.randn(4, 2, 3, 3)).shape == (8, 1, 3, 3)  # 2 in-channels


def test_feature_maps_are_the_stage_activations(quadrant_model):
    model, x, _ = quadrant_model
    for name, shape, upto in (("conv1", (8, 16, 16), 2), ("conv2", (16, 8, 8), 5)):
        r = feature_maps(model, x[0], name)
        assert r["maps"].shape == shape
        with torch.no_grad():
            expected = model.features[:upto](x[:1])[0]
        torch.testing.assert_close(r["maps"], expected)
        assert r["top"][0] == int(expected.mean((1, 2)).argmax())
