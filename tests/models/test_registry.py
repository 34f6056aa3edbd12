"""Every registered model keeps the contract of cnnlab.models.base; the registry's own rules.

The model tests are parametrized over ``list_models()`` (every family, whoever wrote it). Each
model is built once per module (a module-scoped fixture) at a small input: its default size for
CIFAR-size models, 64×64 for ImageNet-size ones.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import InputNorm, create_model, get_spec, list_models, registry, resolve_name
from cnnlab.perf.flops import count_params

SMALL = 64  # ImageNet-size models are tested at 64×64: every stage still has ≥ 1×1 maps
BATCH = 2
KEEP_FAST = {"vgg-a", "vgg-d-bn"}  # one VGG without and one with BN in the default run


def _heavy(name: str) -> bool:
    """Seconds per model on 2 cores even at 64×64: > 100 M parameters to initialise (the VGGs)
    or > 400 weighted layers (1000-layer nets). Counted on the meta device (no cost)."""
    with torch.device("meta"):
        model = create_model(name)
    layers = sum(isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) for m in model.modules())
    return name not in KEEP_FAST and (count_params(model) > 100e6 or layers > 400)



def small_size(name: str) -> tuple[int, int, int]:
    c, h, w = get_spec(name).input_size
    return (c, min(h, SMALL), min(w, SMALL))


def _params():
    # family "test": stand-ins other test modules register (e.g. a model whose loss explodes)
    return [pytest.param(n, marks=pytest.mark.slow) if _heavy(n) else n for n in list_models()
            if get_spec(n).family != "test"]


@pytest.fixture(scope="module", params=_params())
def built(request):
    """(name, model, batch) — the model at its test size, in eval mode."""
    name = request.param
    c, h, w = small_size(name)
    torch.manual_seed(0)
    model = create_model(name, in_chans=c, input_size=(h, w)).eval()
    x = torch.rand(BATCH, c, h, w)
    yield name, model, x
    del model


def test_forward_backward(built):
    name, model, x = built
    x = x.clone().requires_grad_(True)
    model.train()
    try:
        out = model(x)
        assert out.shape == (BATCH, get_spec(name).num_classes)
        loss = out.logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in model.aux_outputs)
        assert torch.isfinite(loss)
        loss.backward()
    finally:
        model.eval()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter got a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    # the gradient reaches the input pixels, through InputNorm (stochastic-depth models may
    # drop some layers in a training pass, so we do not ask it of every parameter)
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_input_norm_runs_first(built):
    _, model, x = built
    assert isinstance(model.norm, InputNorm)
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, a: order.append(m))
             for m in model.modules() if not list(m.children()) and m is not model.norm]
    hooks.append(model.norm.register_forward_pre_hook(lambda m, a: order.append(m)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    assert order[0] is model.norm


def test_normalization_happens_inside(built):
    """Stats set on model.norm act exactly like normalizing the batch by hand."""
    _, model, x = built
    if model.norm.kind != "standardize":
        pytest.skip(f"default norm is {model.norm.kind}")
    c = x.shape[1]
    mean, std = torch.full((c,), 0.4), torch.full((c,), 0.2)
    with torch.no_grad():
        model.norm.set_stats(mean, std)
        inside = model(x)
        model.norm.set_stats(torch.zeros(c), torch.ones(c))
        outside = model((x - 0.4) / 0.2)
    torch.testing.assert_close(inside, outside, rtol=1e-4, atol=1e-4)


def test_features_and_head_compose(built):
    _, model, x = built
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))


def _stage_outputs(model, stages, x) -> dict[str, torch.Tensor]:
    """Each stage's output for batch ``x`` (a failure after the stages — a fixed-size head — is
    fine: the hooks have fired by then)."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [modules[s.module].register_forward_hook(
        lambda m, a, out, key=s.name: seen.setdefault(key, out)) for s in stages]
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError):
        pass
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_feature_layers(built):
    """Hook every stage's module: right channel count; spatial stride measured by growing the
    input by 2 × the largest stride (valid convolutions shrink maps by a constant, so the
    difference of sizes, not their ratio, gives the stride)."""
    name, model, x = built
    stages = model.feature_layers()
    assert stages, f"{name} lists no feature stages"
    assert len({s.name for s in stages}) == len(stages)
    assert [s.stride for s in stages] == sorted(s.stride for s in stages)
    modules = dict(model.named_modules())
    for s in stages:
        assert s.module in modules, f"{name}: no module '{s.module}' for stage {s.name}"
    small = _stage_outputs(model, stages, x)
    assert set(small) == {s.name for s in stages}, f"{name}: some stages never ran"
    grow = 2 * stages[-1].stride
    big = _stage_outputs(model, stages, torch.rand(1, x.shape[1], x.shape[2] + grow,
                                                     x.shape[3] + grow))
    for s in stages:
        assert small[s.name].shape[1] == s.channels, (
            f"{name}.{s.name}: {small[s.name].shape[1]} channels, listed {s.channels}")
        if s.name in big:
            steps = big[s.name].shape[-1] - small[s.name].shape[-1]
            assert abs(steps - grow / s.stride) <= 0.5, (
                f"{name}.{s.name}: +{grow} input pixels gave +{steps}, not stride {s.stride}")


def test_reset_classifier(built):
    # last test of the module's group: it changes the shared model
    _, model, x = built
    model.reset_classifier(7)
    assert model.num_classes == 7
    with torch.no_grad():
        assert model(x).shape == (BATCH, 7)
        if model.aux_weight:  # auxiliary classifiers must follow
            model.train()
            try:
                model(x)
                assert model.aux_outputs
                assert all(a.shape == (BATCH, 7) for a in model.aux_outputs)
            finally:
                model.eval()


# -- registry rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).family != "test"])
def test_spec_and_builder_signature(name):
    spec = get_spec(name)
    assert len(spec.input_size) == 3 and spec.num_classes > 0 and spec.paper and spec.year > 1980
    params = inspect.signature(spec.builder).parameters
    for option in ("num_classes", "in_chans", "input_size", "norm"):
        assert option in params, f"{name}'s builder lacks {option}"
        assert params[option].kind is inspect.Parameter.KEYWORD_ONLY
    for alias in spec.aliases:
        assert resolve_name(alias) == name


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    return registry


def _dummy(**kwargs):
    return kwargs


def test_duplicate_registration_raises(scratch_registry):
    reg = scratch_registry.register_model
    meta = dict(family="t", paper="t", year=2020, input_size=(3, 8, 8), num_classes=2)
    reg("zz-test-net", aliases=("zz-alias",), **meta)(_dummy)
    with pytest.raises(ValueError, match="registered twice"):
        reg("zz-test-net", **meta)(_dummy)
    with pytest.raises(ValueError, match="registered twice"):
        reg("zz-other", aliases=("zz-alias",), **meta)(_dummy)
    with pytest.raises(ValueError, match="registered twice"):
        reg("resnet50", **meta)(_dummy)
    with pytest.raises(ValueError, match="registered twice"):
        reg("zz-third", aliases=("vgg16",), **meta)(_dummy)


def test_unknown_name_suggests():
    with pytest.raises(ModelError, match="did you mean 'resnet50'"):
        resolve_name("resnet-50")
    with pytest.raises(ModelError, match="unknown model 'densnet121'.*did you mean 'densenet121'"):
        create_model("densnet121")


def test_unknown_option_is_a_model_error():
    with pytest.raises(ModelError, match="does not take these options"):
        create_model("resnet20", widht=3)


def test_aliases_and_case():
    assert resolve_name("VGG16") == "vgg-d"
    assert resolve_name("vgg19-bn") == "vgg-e-bn"
    assert resolve_name(" ResNet50 ") == "resnet50"


def test_wrn_name_pattern():
    """Any wrn-D-K is a model (registry.register_pattern); registered names still win."""
    assert "wrn-22-8" not in list_models()
    assert resolve_name("WRN-22-8") == "wrn-22-8"
    spec = get_spec("wrn-22-8")
    assert spec.name == "wrn-22-8" and spec.family == "wide-resnet"
    with torch.device("meta"):
        model = create_model("wrn-22-8", num_classes=100)
    assert (model.depth, model.widen_factor, model.num_classes) == (22, 8, 100)
    assert [len(getattr(model.features, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]
    assert model.feature_layers()[-1].channels == 64 * 8
    assert get_spec("wrn-28-10").builder is registry._MODELS["wrn-28-10"].builder
    with pytest.raises(ModelError, match="6n\\+4"):
        resolve_name("wrn-27-10")
    with pytest.raises(ModelError, match="unknown model"):
        resolve_name("wrn-28")
