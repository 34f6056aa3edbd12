"""ImageNet backbones from torchvision or timm for ``cnnlab transfer --from`` (extra 'hub').

``--from tv:resnet18`` / ``--from timm:resnet18`` builds the hub model with its default
pretrained weights; ``NAME@PATH`` loads a local ``.safetensors`` / ``.pth`` file instead (the
offline way), ``NAME@TAG`` picks named pretrained weights (``tv:resnet50@IMAGENET1K_V2``) and
``NAME@none`` keeps the random init. Nothing is downloaded unless pretrained weights were asked
for by name and no local file was given.

:class:`HubBackbone` wraps the hub classifier so it keeps the cnnlab model contract (GUIDE.md §2)
that transfer, explanations and attacks rely on: it takes [0, 1] pixels and carries the hub
model's own preprocessing (mean/std in an :class:`~cnnlab.models.base.InputNorm`, input size,
interpolation), and splits backbone and classifier. torchvision and timm are imported lazily:
cnnlab itself never needs them.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, ModelError, did_you_mean
from ..models.base import FeatureInfo, InputNorm

# spec prefix → the library (and its import name)
PREFIXES = {"tv": "torchvision", "torchvision": "torchvision", "timm": "timm"}
SHORT = {"torchvision": "tv", "timm": "timm"}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
RANDOM_INIT = ("none", "random")  # NAME@none: the architecture only, no pretrained weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


# -- the spec ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubSpec:
    """``tv:resnet18@weights.pth`` → library ``torchvision``, name ``resnet18``, the weights."""

    library: str
    name: str
    weights: str | None = None

    @property
    def text(self) -> str:
        """The spec without its weights part, as the user would write it (messages, results)."""
        return f"{SHORT[self.library]}:{self.name}"

    @property
    def weights_file(self) -> Path | None:
        """The local weights file, when the weights part is a path rather than a tag."""
        w = self.weights
        if w is None or w.lower() in RANDOM_INIT:
            return None
        looks_like_path = ("/" in w or "\\" in w or w.lower().endswith(WEIGHT_SUFFIXES)
                           or Path(w).expanduser().is_file())
        return Path(w).expanduser() if looks_like_path else None

    @property
    def random_init(self) -> bool:
        return self.weights is not None and self.weights.lower() in RANDOM_INIT


def is_hub_spec(text: str) -> bool:
    """True for ``tv:…``, ``torchvision:…`` and ``timm:…`` (what ``load_backbone`` hands here)."""
    prefix, sep, _ = str(text).partition(":")
    return bool(sep) and prefix.lower() in PREFIXES


def parse_spec(text: str, weights: str | Path | None = None) -> HubSpec:
    """Parse ``PREFIX:NAME[@WEIGHTS]``; ``weights=`` is the same as ``@WEIGHTS`` (not both).

    The weights part is split off at the first ``@``: model names never hold one, paths may.
    """
    prefix, sep, rest = str(text).partition(":")
    if not sep or prefix.lower() not in PREFIXES:
        raise ConfigError(f"'{text}' is not a hub backbone: write tv:NAME, timm:NAME or "
                          "NAME@WEIGHTS after them (e.g. tv:resnet18@resnet18.safetensors)")
    name, at, inline = rest.partition("@")
    name = name.strip()
    if not name:
        raise ConfigError(f"'{text}' names no model: write e.g. {prefix}:resnet18")
    if at and not inline.strip():
        raise ConfigError(f"'{text}' has an empty weights part after '@': give a .safetensors "
                          "or .pth file, a weights tag, or 'none'")
    if at and weights is not None:
        raise ConfigError(f"'{text}' already names its weights; drop weights='{weights}' "
                          "or the '@…' part")
    chosen = inline.strip() if at else (str(weights) if weights is not None else None)
    return HubSpec(PREFIXES[prefix.lower()], name, chosen)


# -- weights files ----------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt`` file (CPU).

    ``.pth`` files are read with ``torch.load(weights_only=True)`` only: a pickle can run any
    code, so a file holding anything but tensors and plain containers is refused, never
    unpickled. Checkpoints that nest the weights under ``state_dict`` or ``model`` are unwrapped,
    and a DataParallel ``module.`` prefix is dropped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    elif suffix in (".pth", ".pt", ".bin"):
        state = _torch_load_tensors(path)
    else:
        raise CheckpointError(f"weights file '{path}' has an unknown type '{suffix}': use "
                              ".safetensors, .pth or .pt")
    return _plain_state_dict(state, path)


def _torch_load_tensors(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"'{path}' holds Python objects other than tensors, and cnnlab loads .pth files with "
            "torch.load(weights_only=True) only (unpickling can run arbitrary code): save just "
            "the weights, torch.save(model.state_dict(), path), or use .safetensors") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"'{path}' is not a readable PyTorch weights file: {exc}") from exc


def _plain_state_dict(state: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        while isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' holds a {type(state).__name__}, not a dict of weights")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"'{path}' holds no tensors (keys: {', '.join(map(str, state))})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``net`` exactly: every name and shape must match (strict)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_first(missing)})")
    if extra:
        problems.append(f"{len(extra)} unexpected ({_first(extra)})")
    if wrong:
        problems.append(f"{len(wrong)} of another shape ({_first(wrong)})")
    if problems:
        raise CheckpointError(f"weights '{where}' do not fit {type(net).__name__}: "
                              f"{'; '.join(problems)} — are they for this architecture?")
    net.load_state_dict(state, strict=True)


def _first(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", …" if len(items) > n else "")


# -- preprocessing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    """What the hub model expects: per-channel mean/std of [0, 1] pixels, (H, W), resampling."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: tuple[int, int] = (224, 224)
    interpolation: str = "bilinear"
    source: str = "ImageNet defaults"


def _interpolation(value: Any) -> str:
    """torchvision's InterpolationMode or timm's string → one of :data:`INTERPOLATIONS`."""
    text = str(getattr(value, "value", value) or "bilinear").lower()
    if text.startswith("nearest"):
        return "nearest"
    return text if text in INTERPOLATIONS else "bilinear"


def _size(value: Any, default: tuple[int, int]) -> tuple[int, int]:
    if value is None:
        return default
    if isinstance(value, int):
        return (value, value)
    vals = [int(v) for v in value]
    if len(vals) == 3:  # timm: (C, H, W)
        vals = vals[1:]
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def preprocess_from_transforms(transforms: Any, source: str) -> Preprocess:
    """torchvision weights' ``transforms()`` (ImageClassification: crop_size, mean, …)."""
    d = Preprocess()
    return Preprocess(tuple(getattr(transforms, "mean", d.mean)),
                      tuple(getattr(transforms, "std", d.std)),
                      _size(getattr(transforms, "crop_size", None), d.input_size),
                      _interpolation(getattr(transforms, "interpolation", d.interpolation)),
                      source)


def preprocess_from_cfg(cfg: dict | None, source: str) -> Preprocess:
    """timm's ``pretrained_cfg`` / ``default_cfg`` dict (mean, std, input_size, interpolation)."""
    d = Preprocess()
    if not cfg:
        return d
    return Preprocess(tuple(cfg.get("mean") or d.mean), tuple(cfg.get("std") or d.std),
                      _size(cfg.get("input_size"), d.input_size),
                      _interpolation(cfg.get("interpolation")), source)


# -- the adapter ------------------------------------------------------------------------------
class _ReachedHead(Exception):
    """Raised by a pre-hook on the classifier: carries its input and ends the forward pass."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.features = features


class HubBackbone(nn.Module):
    """A torchvision/timm classifier behind the cnnlab model contract.

    How backbone and head are split depends on the model, most specific first:

    * ``timm``: the model's own ``forward_features`` / ``forward_head`` / ``get_classifier`` /
      ``reset_classifier`` / ``feature_info``;
    * ``chain``: children ``…, avgpool, fc|classifier`` run in order (torchvision ResNet, RegNet,
      VGG, EfficientNet, MobileNetV3, ConvNeXt): features are the map before the pool;
    * ``hooked``: anything else (DenseNet, ViT, GoogLeNet, …): ``forward_features`` runs the model
      up to its final ``nn.Linear`` and returns that layer's input.

    The hub model lives in ``self.net``, so layer paths start with ``net.``.
    """

    def __init__(self, net: nn.Module, *, name: str, preprocess: Preprocess | None = None,
                 classes: list[str] | None = None,
                 builder: Callable[[], nn.Module] | None = None, weights: str | None = None):
        super().__init__()
        self.preprocess = preprocess or Preprocess()
        self.in_chans = len(self.preprocess.mean)
        self.input_size = tuple(self.preprocess.input_size)
        self.interpolation = self.preprocess.interpolation
        self.norm = InputNorm(self.in_chans, "standardize")
        self.norm.set_stats(mean=self.preprocess.mean, std=self.preprocess.std)
        self.net = net
        self.name = name
        self.classes = classes
        self._builder = builder
        self.aux_outputs: list[torch.Tensor] = []
        self._kind, self._trunk, self._head_path = _split_of(net)
        self._feature_info: list[FeatureInfo] | None = None
        self.meta = {"model": name, "weights": weights, "in_chans": self.in_chans,
                     "input_size": list(self.input_size), "num_classes": self.num_classes,
                     "mean": list(self.preprocess.mean), "std": list(self.preprocess.std),
                     "interpolation": self.interpolation, "preprocess": self.preprocess.source}

    # -- the contract -------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self._kind == "timm":
            return self.net.forward_features(x)
        if self._kind == "chain":
            for name in self._trunk:
                x = getattr(self.net, name)(x)
            return x
        handle = self.classifier().register_forward_pre_hook(_stop_at_head)
        try:
            self.net(x)
        except _ReachedHead as reached:
            return reached.features
        finally:
            handle.remove()
        raise ModelError(f"{self.name}: the forward pass never called its classifier "
                         f"'{self._head_path}'")

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        if self._kind == "timm":
            return self.net.forward_head(f)
        if self._kind == "chain":
            head = getattr(self.net, self._trunk_head)
            f = self.net.avgpool(f)
            if not any(isinstance(m, nn.Flatten) for m in head.modules()):
                f = torch.flatten(f, 1)
            return head(f)
        return self.classifier()(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_layers(self) -> list[FeatureInfo]:
        if self._feature_info is None:
            self._feature_info = self._find_stages()
        return list(self._feature_info)

    def classifier(self) -> nn.Module:
        """The final layer, the one :meth:`reset_classifier` replaces (fine-tuning's new head)."""
        if self._kind == "timm":
            return self.net.get_classifier()
        return self.net.get_submodule(self._head_path)

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised final layer for ``num_classes``; the rest is kept."""
        if self._kind == "timm":
            self.net.reset_classifier(num_classes)
        else:
            old = self.classifier()
            new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
            parent, _, leaf = self._head_path.rpartition(".")
            setattr(self.net.get_submodule(parent) if parent else self.net, leaf, new)
        self.classes = None
        self.meta["num_classes"] = num_classes

    @property
    def num_classes(self) -> int:
        if self._kind == "timm":
            return int(self.net.num_classes)
        return int(self.classifier().out_features)

    def feature_shape(self) -> torch.Size:
        """Shape of ``forward_features`` for one image at the model's input size."""
        was = self.training
        self.eval()
        with torch.no_grad():
            shape = self.forward_features(torch.zeros(1, self.in_chans, *self.input_size)).shape
        self.train(was)
        return shape

    def fresh(self, num_classes: int) -> HubBackbone:
        """The same architecture from random init (``--mode scratch``), same preprocessing."""
        if self._builder is None:
            raise ConfigError(f"{self.name} cannot be rebuilt from random init (no builder)")
        new = HubBackbone(self._builder(), name=self.name, preprocess=self.preprocess,
                          builder=self._builder, weights="none")
        new.reset_classifier(num_classes)
        return new

    def extra_repr(self) -> str:
        return f"name={self.name}, split={self._kind}, input_size={self.input_size}"

    # -- internals ----------------------------------------------------------------------------
    @property
    def _trunk_head(self) -> str:
        return self._head_path.split(".", 1)[0]

    def _find_stages(self) -> list[FeatureInfo]:
        """timm's ``feature_info``; else the stages found by one dry run at the input size."""
        info = getattr(self.net, "feature_info", None) if self._kind == "timm" else None
        if info:
            return [FeatureInfo(d["module"], f"net.{d['module']}", int(d["num_chs"]),
                                int(d["reduction"])) for d in info if d.get("module")]
        paths, dedupe = _stage_candidates(self.net, self._head_path)
        return self._measure(paths, dedupe)

    def _measure(self, paths: list[str], dedupe: bool) -> list[FeatureInfo]:
        """Channels and stride of each candidate from its output on one blank image."""
        seen: list[tuple[str, torch.Size]] = []
        handles = [self.net.get_submodule(p).register_forward_hook(
            lambda _m, _i, out, p=p: seen.append((p, out.shape))
            if isinstance(out, torch.Tensor) and out.dim() == 4 else None) for p in paths]
        was = self.training
        try:
            self.eval()
            with torch.no_grad():
                self.forward_features(torch.zeros(1, self.in_chans, *self.input_size))
        finally:
            self.train(was)
            for h in handles:
                h.remove()
        if dedupe:  # only the last layer at each resolution: the stage outputs
            seen = [s for i, s in enumerate(seen)
                    if i + 1 == len(seen) or seen[i + 1][1][2:] != s[1][2:]]
        return [FeatureInfo(p, f"net.{p}", int(shape[1]),
                            max(1, round(self.input_size[0] / shape[2]))) for p, shape in seen]


def _stop_at_head(_module: nn.Module, args: tuple) -> None:
    raise _ReachedHead(args[0])


def _split_of(net: nn.Module) -> tuple[str, list[str], str]:
    """(kind, trunk child names, path of the final classifier layer) — see :class:`HubBackbone`."""
    if all(callable(getattr(net, a, None))
           for a in ("forward_features", "forward_head", "get_classifier", "reset_classifier")):
        return "timm", [], ""
    names = [n for n, _ in net.named_children()]
    if len(names) >= 3 and names[-2] == "avgpool" and names[-1] in ("fc", "classifier"):
        return "chain", names[:-2], _last_linear(net, names[-1:])
    return "hooked", [], _last_linear(net, ["fc", "classifier", "head", "heads", ""])


def _last_linear(net: nn.Module, roots: list[str]) -> str:
    """Path of the last ``nn.Linear`` under the first of ``roots`` that has one ("" = anywhere)."""
    for root in roots:
        if root and not hasattr(net, root):
            continue
        base = net.get_submodule(root) if root else net
        found = [n for n, m in base.named_modules() if isinstance(m, nn.Linear)]
        if found:
            return f"{root}.{found[-1]}".strip(".") if found[-1] else root
    raise ModelError(f"{type(net).__name__} has no nn.Linear classifier: cnnlab transfer "
                     "cannot split it into backbone and head")


def _stage_candidates(net: nn.Module, head_path: str) -> tuple[list[str], bool]:
    """Top-level ``nn.Sequential`` children (ResNet's layer1..4) as they are; one ``features``
    Sequential (VGG, DenseNet, EfficientNet, …) → its children, deduplicated by resolution."""
    head = head_path.split(".", 1)[0]
    top = [(n, m) for n, m in net.named_children() if n != head and not n.lower().startswith("aux")]
    seqs = [n for n, m in top if isinstance(m, nn.Sequential)]
    if len(seqs) > 1:
        return seqs, False
    if len(seqs) == 1:
        return [f"{seqs[0]}.{n}" for n, _ in net.get_submodule(seqs[0]).named_children()], True
    return [n for n, m in top if any(True for _ in m.parameters())], True


# -- building from the libraries --------------------------------------------------------------
def _import(spec: HubSpec) -> ModuleType:
    try:
        return importlib.import_module(spec.library)
    except ImportError:
        raise ModelError(f"backbone '{spec.text}' needs {spec.library}: "
                         "pip install 'cnnlab[hub]'") from None
    except (RuntimeError, OSError, AttributeError) as exc:  # e.g. built for another torch
        raise ModelError(f"backbone '{spec.text}' needs {spec.library}, which is installed but "
                         f"does not import with torch {torch.__version__} ({exc}): "
                         "pip install 'cnnlab[hub]'") from exc


def _unknown_name(spec: HubSpec, names: list[str]) -> ModelError:
    lister = ("torchvision.models.list_models()" if spec.library == "torchvision"
              else "timm.list_models()")
    return ModelError(f"{spec.library} has no classification model '{spec.name}'"
                      f"{did_you_mean(spec.name, names)}; list them with {lister}")


def _download_error(spec: HubSpec, exc: Exception) -> ModelError:
    return ModelError(f"could not download the pretrained weights of '{spec.text}' ({exc}); "
                      f"offline, pass a local weights file with {spec.text}@PATH "
                      "(.safetensors or .pth)")


def _build_torchvision(spec: HubSpec) -> tuple[nn.Module, Preprocess, list | None, Callable]:
    models = _import(spec).models
    names = list(models.list_models(module=models))
    if spec.name not in names:
        raise _unknown_name(spec, names)
    try:
        enum = models.get_model_weights(spec.name)
    except (ValueError, KeyError):
        enum = None
    chosen = None
    if spec.weights_file is None and not spec.random_init:
        if enum is None:
            raise ModelError(f"torchvision has no pretrained weights for '{spec.name}': pass a "
                             f"local file with {spec.text}@PATH")
        chosen = _weights_member(spec, enum)
    reference = chosen if chosen is not None else getattr(enum, "DEFAULT", None)
    if reference is not None:
        prep = preprocess_from_transforms(reference.transforms(),
                                          f"torchvision {type(reference).__name__}."
                                          f"{reference.name} transforms")
    else:
        prep = Preprocess()

    def builder() -> nn.Module:
        return models.get_model(spec.name, weights=None)

    if chosen is None:
        return builder(), prep, None, builder
    try:
        net = models.get_model(spec.name, weights=chosen)
    except OSError as exc:  # URLError, connection errors, a read-only cache
        raise _download_error(spec, exc) from exc
    return net, prep, list(getattr(chosen, "meta", {}).get("categories") or []) or None, builder


def _weights_member(spec: HubSpec, enum: Any) -> Any:
    """``None`` → the enum's DEFAULT; ``IMAGENET1K_V2`` or ``ResNet50_Weights.IMAGENET1K_V2``."""
    if spec.weights is None:
        return enum.DEFAULT
    tag = spec.weights.rsplit(".", 1)[-1]
    members = dict(enum.__members__)
    if tag not in members:
        raise ConfigError(f"torchvision has no weights '{spec.weights}' for '{spec.name}'"
                          f"{did_you_mean(tag, members)}; choose from {', '.join(members)}, "
                          "a local .safetensors/.pth file, or 'none'")
    return members[tag]


def _build_timm(spec: HubSpec) -> tuple[nn.Module, Preprocess, list | None, Callable]:
    timm = _import(spec)
    arch = spec.name.split(".", 1)[0]  # timm's own NAME.TAG
    if not timm.is_model(arch):
        raise _unknown_name(spec, list(timm.list_models()))
    pretrained = spec.weights_file is None and not spec.random_init
    name = spec.name
    if pretrained and spec.weights is not None:
        name = f"{arch}.{spec.weights}"

    def builder() -> nn.Module:
        return timm.create_model(spec.name, pretrained=False)

    try:
        net = timm.create_model(name, pretrained=True) if pretrained else builder()
    except OSError as exc:  # huggingface_hub / urllib errors, all OSError subclasses
        raise _download_error(spec, exc) from exc
    cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None)
    prep = preprocess_from_cfg(cfg, f"timm pretrained_cfg of {name}") if cfg else Preprocess()
    return net, prep, None, builder


def load_hub_backbone(source: str | HubSpec, weights: str | Path | None = None) -> HubBackbone:
    """``tv:NAME[@WEIGHTS]`` / ``timm:NAME[@WEIGHTS]`` → a :class:`HubBackbone` in eval mode.

    ``WEIGHTS`` (or ``weights=``): a local ``.safetensors``/``.pth`` file (no network), a
    pretrained weights tag, or ``none``; without it the library's default pretrained weights
    (downloaded once into its cache).
    """
    spec = source if isinstance(source, HubSpec) else parse_spec(source, weights)
    build = _build_torchvision if spec.library == "torchvision" else _build_timm
    net, prep, classes, builder = build(spec)
    if spec.weights_file is not None:
        load_weights(net, read_state_dict(spec.weights_file), str(spec.weights_file))
    model = HubBackbone(net, name=spec.text, preprocess=prep, classes=classes, builder=builder,
                        weights=spec.weights or "default")
    return model.eval()
