"""The model contract every zoo model keeps (GUIDE.md §2).

* ``forward(x)`` takes a float batch in **[0, 1]** and returns logits. The model owns its input
  normalization (:class:`InputNorm`, the first layer), so attacks, explanations and exports never
  have to guess the preprocessing.
* ``forward_features(x)`` / ``forward_head(f)`` split backbone and classifier (transfer learning).
* ``feature_layers()`` names the stages (module path, channels, stride) for feature maps, CAM
  and probes.
* ``reset_classifier(num_classes)`` puts a fresh head on for fine-tuning.
* Models with auxiliary classifiers (GoogLeNet) put their training-mode aux logits in
  ``aux_outputs`` and their loss weight in ``aux_weight``; the training loop adds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORM_KINDS = ("none", "meansub", "standardize", "zca")


class InputNorm(nn.Module):
    """[0, 1] pixels → what the network was trained on.

    ``standardize``: (x - mean) / std per channel; ``meansub``: x - mean; ``zca``: full-image ZCA
    whitening ``(x.flatten() - mu) @ W`` (Krizhevsky 2009), fitted on the training split only.
    The statistics are buffers, so they travel inside ``model.safetensors``.
    """

    def __init__(self, in_chans: int, kind: str = "standardize",
                 image_size: tuple[int, int] = (0, 0)):
        super().__init__()
        if kind not in NORM_KINDS:
            raise ValueError(f"unknown normalization '{kind}'; choose from {', '.join(NORM_KINDS)}")
        self.kind = kind
        self.register_buffer("mean", torch.zeros(1, in_chans, 1, 1))
        self.register_buffer("std", torch.ones(1, in_chans, 1, 1))
        if kind == "zca":
            dim = in_chans * image_size[0] * image_size[1]
            if dim == 0:
                raise ValueError("ZCA whitening needs the input size")
            self.register_buffer("zca_mean", torch.zeros(dim))
            self.register_buffer("zca_matrix", torch.eye(dim))

    def set_stats(self, mean=None, std=None, zca_mean=None, zca_matrix=None) -> None:
        """Copy fitted statistics in (float32, right shapes)."""
        with torch.no_grad():
            if mean is not None:
                self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view_as(self.mean))
            if std is not None:
                self.std.copy_(torch.as_tensor(std, dtype=torch.float32).view_as(self.std))
            if self.kind == "zca" and zca_matrix is not None:
                self.zca_mean.copy_(torch.as_tensor(zca_mean, dtype=torch.float32))
                self.zca_matrix.copy_(torch.as_tensor(zca_matrix, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.kind == "meansub":
            return x - self.mean
        if self.kind == "standardize":
            return (x - self.mean) / self.std
        flat = x.flatten(1) - self.zca_mean
        return (flat @ self.zca_matrix).view_as(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


@dataclass(frozen=True)
class FeatureInfo:
    """One named stage: ``module`` is its path in ``named_modules()`` (hooks attach there)."""

    name: str
    module: str
    channels: int
    stride: int


class CnnlabModel(nn.Module):
    """Base class of every zoo model.

    Subclasses call ``super().__init__(in_chans, num_classes, input_size, norm)``, then build
    ``self.features`` (normalized image → feature map) and ``self.head`` (feature map → logits),
    and list their stages in ``self._feature_info``. Architectures whose forward is not a plain
    chain override :meth:`forward_features` / :meth:`forward_head`.
    """

    aux_weight: float = 0.0

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        input_size: tuple[int, int],
        norm: str = "standardize",
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.input_size = tuple(input_size)
        self.norm = InputNorm(in_chans, norm, self.input_size)
        self._feature_info: list[FeatureInfo] = []
        self.aux_outputs: list[torch.Tensor] = []

    # -- the contract -------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.norm(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def feature_layers(self) -> list[FeatureInfo]:
        return list(self._feature_info)

    def classifier(self) -> nn.Linear:
        """The final linear layer (the one ``reset_classifier`` replaces)."""
        last = None
        for module in self.head.modules():
            if isinstance(module, nn.Linear):
                last = module
        if last is None:
            raise NotImplementedError(f"{type(self).__name__} has no Linear classifier in .head")
        return last

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer with a freshly initialised one for ``num_classes``."""
        old = self.classifier()
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        _replace_module(self.head, old, new)
        self.num_classes = num_classes

    # -- helpers for subclasses -----------------------------------------------------------------
    def feature_shape(self) -> torch.Size:
        """Shape of ``forward_features`` for one image at the model's input size."""
        was = self.training
        self.eval()
        with torch.no_grad():
            shape = self.features(torch.zeros(1, self.in_chans, *self.input_size)).shape
        self.train(was)
        return shape


def _replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for name, child in root.named_children():
        if child is old:
            setattr(root, name, new)
            return
        _replace_module(child, old, new)


def he_init(model: nn.Module) -> nn.Module:
    """He (Kaiming) normal init for conv/linear weights, zero biases, BN at (1, 0).

    He et al. 2015: std = sqrt(2 / fan) keeps ReLU activations' variance constant with depth.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
