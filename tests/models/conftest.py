"""Helpers shared by the model tests."""

import pytest
import torch

from cnnlab.models import CnnlabModel


def _check_contract(model: CnnlabModel, x: torch.Tensor) -> None:
    """forward = head(features); named stages exist with their channels and strides;
    reset_classifier gives a new output size."""
    model.eval()
    out = model(x)
    assert out.shape == (x.shape[0], model.num_classes)
    assert torch.allclose(model.forward_head(model.forward_features(x)), out, atol=1e-5)
    modules, seen = dict(model.named_modules()), {}
    hooks = [modules[f.module].register_forward_hook(
        lambda _m, _i, o, name=f.name: seen.__setitem__(name, o)) for f in model.feature_layers()]
    model(x)
    for h in hooks:
        h.remove()
    for f in model.feature_layers():
        assert seen[f.name].shape[1] == f.channels, f
        assert x.shape[-1] // seen[f.name].shape[-1] == f.stride, f
    model.reset_classifier(3)
    assert model(x).shape == (x.shape[0], 3) and model.num_classes == 3


@pytest.fixture
def check_contract():
    """The model contract of GUIDE.md §2, checked on one batch ``x``."""
    return _check_contract
