"""Every method on every model family of the zoo, through the contract only.

One model per model class (the registered name with the fewest parameters, found by building
every model on the 'meta' device) covers every architecture's code and keeps this fast;
``CNNLAB_EXPLAIN_ALL_MODELS=1`` runs every registered model instead (minutes: the VGGs alone
build 130 M parameters each).
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from cnnlab.explain import (
    activation_maximization,
    deconvnet,
    feature_maps,
    first_layer_filters,
    grad_cam,
    guided_backprop,
    occlusion,
    saliency,
    stage_features,
)
from cnnlab.models import create_model, get_spec, list_models

SIDES = (32, 64, 128)  # the smallest that runs, or else the model's registered size


def _kwargs(name: str, side: int = 32) -> dict:
    c = get_spec(name).input_size[0]
    return {"num_classes": 5, "in_chans": c, "input_size": (side, side)}


def _side(name: str) -> int:
    """The smallest square input the model runs on (shapes checked on the 'meta' device)."""
    spec = get_spec(name)
    for side in SIDES:
        try:
            with torch.device("meta"):
                model = create_model(name, **_kwargs(name, side)).eval()
                model(torch.zeros(1, spec.input_size[0], side, side))
            return side
        except Exception:  # noqa: BLE001 - too small for this architecture: try the next size
            continue
    return spec.input_size[1]


def _representatives() -> list[str]:
    # the zoo only: other test modules register throw-away models (family "test") at import,
    # which would join this list whenever they are collected first
    names = [n for n in list_models() if get_spec(n).family != "test"]
    if os.environ.get("CNNLAB_EXPLAIN_ALL_MODELS") == "1":
        return names
    best: dict[str, tuple[int, str]] = {}
    for name in names:
        try:
            with torch.device("meta"):
                model = create_model(name, **_kwargs(name))
        except Exception:  # noqa: BLE001 - such a model is still tested below, where it fails
            best.setdefault(name, (0, name))
            continue
        n = sum(p.numel() for p in model.parameters())
        cls = f"{type(model).__module__}.{type(model).__qualname__}"
        if cls not in best or n < best[cls][0]:
            best[cls] = (n, name)
    return sorted(name for _, name in best.values())


@pytest.mark.parametrize("name", _representatives())
def test_every_method_runs_on(name):
    torch.manual_seed(0)
    side = _side(name)
    model = create_model(name, **_kwargs(name, side)).eval()
    c = model.in_chans
    x = torch.rand(1, c, side, side)
    layers = model.feature_layers()
    assert layers, f"{name}: feature_layers() is empty"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ran no ReLU" for tanh models
        for r in (saliency(model, x), guided_backprop(model, x)):
            assert r["grad"].shape == x.shape and torch.isfinite(r["grad"]).all()
        for info in layers:
            cam = grad_cam(model, x, info.name)
            assert cam["cam"].shape == (1, side, side), info.name
        d = deconvnet(model, x, layers[-1].name)
        assert d["projection"].shape == x.shape and torch.isfinite(d["projection"]).all()
    fm = feature_maps(model, x, layers[0].name)
    assert fm["maps"].shape[0] == layers[0].channels, "FeatureInfo.channels disagrees"
    feats = stage_features(model, torch.rand(4, c, side, side))
    assert [f.shape[1] for k, f in feats.items() if k != "input"] == [i.channels for i in layers]
    assert first_layer_filters(model)["weight"].shape[1] == c
    o = occlusion(model, x, patch=side // 2, stride=side // 2)
    assert o["prob_map"].shape == (2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # channel 0 may not fire on the start image
        a = activation_maximization(model, layers[-1].name, 0, steps=2)
    assert a["image"].shape == x.shape and len(a["history"]) == 3
