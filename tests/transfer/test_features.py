from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data.dataset import Split
from cnnlab.errors import ConfigError
from cnnlab.transfer import extract_features, layer_names, pool_normalize
from cnnlab.transfer.features import HEAD_INPUT


def test_features_equal_hooked_activations(backbone, target):
    split = Split(target.test.images[:40], target.test.labels[:40])
    feats = extract_features(backbone, split, "all", batch_size=16)  # several batches
    assert list(feats) == layer_names(backbone)
    seen = {}
    handles = [backbone.get_submodule(info.module).register_forward_hook(
        lambda _m, _i, out, n=info.name: seen.__setitem__(n, out.detach().clone()))
        for info in backbone.feature_layers()]
    try:
        backbone.eval()
        with torch.no_grad():
            x = split.images.float() / 255.0
            head_in = backbone.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    for info in backbone.feature_layers():
        act = seen[info.name]
        want = act.mean(dim=(2, 3))
        want = want / want.norm(dim=1, keepdim=True).clamp_min(1e-12)
        assert feats[info.name].shape == (40, info.channels)
        np.testing.assert_allclose(feats[info.name], want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[HEAD_INPUT], pool_normalize(head_in).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(feats[HEAD_INPUT], axis=1), 1.0, atol=1e-5)


def test_unknown_layer_lists_valid_names(backbone, target):
    with pytest.raises(ConfigError) as exc:
        extract_features(backbone, target.test, "blok2")
    msg = str(exc.value)
    assert "'blok2'" in msg and all(n in msg for n in layer_names(backbone))
