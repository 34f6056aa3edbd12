"""Hub backbones (tv:/timm:) against stand-in torchvision and timm modules.

The real libraries are not installed in the test environment (they pin their own torch), so
``sys.modules`` gets small fakes with the same API surface cnnlab uses: torchvision's
``models.list_models/get_model/get_model_weights`` with a weights enum whose ``transforms()``
carries the preprocessing, and timm's ``is_model/list_models/create_model`` returning a model with
``forward_features/forward_head/get_classifier/reset_classifier/feature_info/pretrained_cfg``.
"""

from __future__ import annotations

import argparse
import enum
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from cnnlab.cli import main
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, ModelError
from cnnlab.transfer import layer_names, load_backbone, transfer
from cnnlab.transfer.hub import HubBackbone, HubSpec, is_hub_spec, parse_spec

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
SIZE = 32  # the stand-ins' "ImageNet" input size: big enough for four stride-2 stages


# -- the stand-ins ----------------------------------------------------------------------------
def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)))


class TinyResNet(nn.Module):
    """torchvision ResNet's layout and forward, a few channels wide."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1, self.layer2 = _block(4, 4, 1), _block(4, 8, 2)
        self.layer3, self.layer4 = _block(8, 8, 2), _block(8, 16, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyDenseNet(nn.Module):
    """torchvision DenseNet's shape: ``features`` + functional relu/pool + ``classifier``."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, 1, 1),
                                      nn.Conv2d(6, 8, 3, 2, 1), nn.BatchNorm2d(8))
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(x, 1))


class TinyTimmNet(TinyResNet):
    """A timm-style model: its own feature/head split, classifier API and pretrained_cfg."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.num_classes = num_classes
        self.pretrained_cfg = {"mean": MEAN, "std": STD, "input_size": (3, 24, 24),
                               "interpolation": "bicubic"}
        self.feature_info = [{"num_chs": 4, "reduction": 4, "module": "layer1"},
                             {"num_chs": 16, "reduction": 32, "module": "layer4"}]

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x):
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes):
        self.num_classes = num_classes
        self.fc = nn.Linear(16, num_classes)


class _Transforms:
    crop_size, resize_size, mean, std = [SIZE], [SIZE + 4], list(MEAN), list(STD)
    interpolation = types.SimpleNamespace(value="bilinear")  # like InterpolationMode


class TinyWeights(enum.Enum):
    IMAGENET1K_V1 = "v1"
    DEFAULT = "v1"  # an alias, as in torchvision

    def transforms(self):
        return _Transforms()

    @property
    def meta(self):
        return {"categories": [f"class{i}" for i in range(10)]}


def fake_torchvision(builders: dict | None = None) -> types.ModuleType:
    builders = builders or {"resnet18": TinyResNet, "densenet121": TinyDenseNet}
    models = types.ModuleType("torchvision.models")
    models.list_models = lambda module=None: sorted(builders)
    models.get_model_weights = lambda name: TinyWeights

    def get_model(name, weights=None, **kwargs):
        if weights is not None:
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        return builders[name](**kwargs)

    models.get_model = get_model
    tv = types.ModuleType("torchvision")
    tv.models = models
    return tv


def fake_timm() -> types.ModuleType:
    timm = types.ModuleType("timm")
    timm.list_models = lambda pattern=None, pretrained=False: ["resnet18", "resnet50"]
    timm.is_model = lambda name: name in ("resnet18", "resnet50")

    def create_model(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return TinyTimmNet(**kwargs)

    timm.create_model = create_model
    return timm


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", fake_torchvision())
    monkeypatch.setitem(sys.modules, "timm", fake_timm())


@pytest.fixture
def reference(tmp_path) -> tuple[TinyResNet, str]:
    """A stand-in with trained-looking weights (non-trivial BN statistics), saved as safetensors."""
    torch.manual_seed(1)
    ref = TinyResNet()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18.safetensors"
    save_file(ref.state_dict(), str(path))
    return ref.eval(), str(path)


def _expected(ref: nn.Module, x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return ref((x - mean) / std)


# -- spec -------------------------------------------------------------------------------------
def test_parse_spec():
    assert parse_spec("tv:resnet18") == HubSpec("torchvision", "resnet18", None)
    assert parse_spec("torchvision:resnet18@IMAGENET1K_V1").weights == "IMAGENET1K_V1"
    s = parse_spec("timm:resnet18@/w/a@b.safetensors")
    assert (s.library, s.name, s.text) == ("timm", "resnet18", "timm:resnet18")
    assert str(s.weights_file) == "/w/a@b.safetensors"
    assert parse_spec("tv:resnet18", weights="w.pth").weights_file.name == "w.pth"
    assert parse_spec("tv:resnet18@IMAGENET1K_V1").weights_file is None
    assert parse_spec("tv:resnet18@none").random_init
    assert is_hub_spec("TV:resnet18") and not is_hub_spec("runs/x") and not is_hub_spec("c:\\r")
    for bad in ("tv:", "tv:resnet18@", "foo:resnet18"):
        with pytest.raises(ConfigError):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="already names its weights"):
        parse_spec("tv:resnet18@a.pth", weights="b.pth")


# -- weights ----------------------------------------------------------------------------------
def test_safetensors_weights_match_the_stand_in(hub, reference):
    ref, path = reference
    model = load_backbone(f"tv:resnet18@{path}")
    assert isinstance(model, HubBackbone) and not model.training
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(model(x), _expected(ref, x))
    assert model.input_size == (SIZE, SIZE) and model.in_chans == 3
    torch.testing.assert_close(model.norm.mean.flatten(), torch.tensor(MEAN))
    torch.testing.assert_close(model.norm.std.flatten(), torch.tensor(STD))
    assert model.meta["model"] == "tv:resnet18" and "TinyWeights.IMAGENET1K_V1" in \
        model.meta["preprocess"]
    assert tuple(model.feature_shape()) == (1, 16, 1, 1)


@pytest.mark.parametrize("nest", ["state_dict", "model", None])
def test_pth_weights_nested_or_plain(hub, reference, tmp_path, nest):
    ref, _ = reference
    sd = {f"module.{k}": v for k, v in ref.state_dict().items()}  # DataParallel prefix too
    path = tmp_path / "w.pth"
    torch.save({nest: sd, "epoch": 3} if nest else sd, path)
    model = load_backbone("tv:resnet18", weights=str(path))
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(model(x), _expected(ref, x))


def test_pth_with_pickled_object_is_refused(hub, reference, tmp_path):
    ref, _ = reference
    path = tmp_path / "full.pth"
    torch.save({"state_dict": ref.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="weights_only=True") as exc:
        load_backbone(f"tv:resnet18@{path}")
    assert "state_dict()" in str(exc.value)


def test_weights_for_another_architecture(hub, tmp_path):
    path = tmp_path / "dense.safetensors"
    save_file(TinyDenseNet().state_dict(), str(path))
    with pytest.raises(CheckpointError, match="do not fit TinyResNet.*missing.*unexpected"):
        load_backbone(f"tv:resnet18@{path}")
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone(f"tv:resnet18@{tmp_path / 'nope.pth'}")


# -- the contract -----------------------------------------------------------------------------
def test_resnet_feature_layers_and_head(hub, reference):
    model = load_backbone(f"tv:resnet18@{reference[1]}")
    infos = model.feature_layers()
    assert [i.name for i in infos] == ["layer1", "layer2", "layer3", "layer4"]
    assert [i.module for i in infos] == [f"net.layer{k}" for k in range(1, 5)]
    assert [(i.channels, i.stride) for i in infos] == [(4, 4), (8, 8), (8, 16), (16, 32)]
    assert layer_names(model)[-1] == "head-input"
    assert model.classifier() is model.net.fc and model.num_classes == 10
    model.reset_classifier(3)
    assert model.net.fc.out_features == 3 and model.num_classes == 3
    assert model(torch.rand(1, 3, SIZE, SIZE)).shape == (1, 3)


def test_generic_model_splits_at_its_last_linear(hub):
    model = load_backbone("tv:densenet121@none")
    torch.manual_seed(0)
    x = torch.rand(2, 3, SIZE, SIZE)
    f = model.forward_features(x)
    assert f.shape == (2, 8)  # the classifier's input
    torch.testing.assert_close(model.forward_head(f), model.net(model.norm(x)))
    # the last layer at each resolution of `features`
    assert [i.name for i in model.feature_layers()] == ["features.2", "features.4"]
    model.reset_classifier(4)
    assert model(x).shape == (2, 4) and model.classifier() is model.net.classifier


def test_timm_model_uses_its_own_api(hub):
    model = load_backbone("timm:resnet18@none")
    assert model.input_size == (24, 24) and model.interpolation == "bicubic"
    assert [(i.name, i.module, i.stride) for i in model.feature_layers()] == [
        ("layer1", "net.layer1", 4), ("layer4", "net.layer4", 32)]
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net(model.norm(x)))
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.classifier().out_features == 5


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "lib"), [("tv:resnet18", "torchvision"),
                                           ("timm:resnet18", "timm")])
def test_missing_library(monkeypatch, spec, lib):
    monkeypatch.setitem(sys.modules, lib, None)  # import fails, as when not installed
    with pytest.raises(ModelError) as exc:
        load_backbone(spec)
    assert str(exc.value) == f"backbone '{spec}' needs {lib}: pip install 'cnnlab[hub]'"


def test_unknown_name_did_you_mean(hub):
    with pytest.raises(ModelError, match="no classification model 'resnet81'.*'resnet18'"):
        load_backbone("tv:resnet81")
    with pytest.raises(ModelError, match="did you mean 'resnet50'"):
        load_backbone("timm:resnet05")
    with pytest.raises(ConfigError, match="no weights 'IMAGENET1K_V9'.*IMAGENET1K_V1"):
        load_backbone("tv:resnet18@IMAGENET1K_V9")


@pytest.mark.parametrize("spec", ["tv:resnet18", "timm:resnet18"])
def test_offline_download_says_pass_a_local_file(hub, spec):
    with pytest.raises(ModelError, match="could not download") as exc:
        load_backbone(spec)
    assert f"{spec}@PATH" in str(exc.value)


def test_plain_name_hints_at_prefixes(capsys):
    code = main(["transfer", "--from", "resnet50", "--data", "digits"])
    err = capsys.readouterr().err
    assert code == 2 and "tv:resnet50" in err and "optional extra 'hub'" in err


# -- transfer end to end ----------------------------------------------------------------------
def test_transfer_features_resizes_to_the_backbone(hub, reference):
    out = transfer(f"tv:resnet18@{reference[1]}", "digits", classes=[5, 6, 7, 8, 9],
                   mode="features", layer="layer4,head-input", per_class="10")
    assert out["model"] == "tv:resnet18" and out["source"].startswith("tv:resnet18@")
    assert [r["layer"] for r in out["rows"]] == ["layer4", "head-input"]
    assert all(0.0 <= r["mean"] <= 1.0 for r in out["rows"])
    notes = " ".join(out["notes"])
    assert "from 1 to 3 channel" in notes and f"from 8×8 to {SIZE}×{SIZE}" in notes
    assert "bilinear, the backbone's own preprocessing" in notes


def test_transfer_compare_fine_tunes_and_rebuilds(hub, reference):
    out = transfer(f"tv:resnet18@{reference[1]}", "digits", classes=[5, 6, 7], mode="compare",
                   per_class="3", epochs=1, freeze_epochs=1, min_steps=2)
    assert sorted(r["mode"] for r in out["rows"]) == ["features", "finetune", "scratch"]


def test_cli_hub_backbone(hub, reference, capsys):
    code = main(["transfer", "--from", f"timm:resnet18@{reference[1]}", "--data", "digits",
                 "--classes", "0,1", "--per-class", "5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "timm:resnet18" in captured.out and "from 8×8 to 24×24" in captured.err
    assert "bicubic" in captured.err


def test_run_directory_takes_no_weights(backbone_run):
    with pytest.raises(CnnlabError, match="carries its own weights"):
        load_backbone(backbone_run, weights="w.pth")
