"""Spatial transformer networks.

M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu, "Spatial Transformer Networks",
NIPS 2015. A localisation network regresses the 6 parameters θ of an affine map; a sampling grid
(``F.affine_grid``) and bilinear sampling (``F.grid_sample``) then warp the input. The last
localisation layer starts at zero weights and the identity bias [1, 0, 0, 0, 1, 0], so training
begins from the untransformed image (the paper's initialisation).

:func:`with_stn` puts a transformer in front of any zoo model and keeps the model contract: the
input stays in [0, 1] (warping happens in pixel space, out-of-image samples are black), the inner
model's own normalisation remains the first op on what it sees, and ``forward_features``,
``forward_head``, ``feature_layers``, ``reset_classifier`` and ``norm`` delegate to it.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .base import CnnlabModel, FeatureInfo, InputNorm

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class SpatialTransformer(nn.Module):
    """Localisation net → affine θ (2×3) → grid → bilinear sampling; output has the input's size.

    Localisation: conv 8@7×7 → max-pool 2 → ReLU → conv 10@5×5 → max-pool 2 → ReLU → adaptive
    average pool to 3×3 → FC 32 → ReLU → FC 6 (the paper's small CNN localiser, made size-agnostic
    by the adaptive pool).
    """

    def __init__(self, in_chans: int, input_size: tuple[int, int] = (32, 32),
                 hidden: int = 32) -> None:
        super().__init__()
        self.in_chans, self.input_size = in_chans, tuple(input_size)
        self.localization = nn.Sequential(
            nn.Conv2d(in_chans, 8, 7, padding=3), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(True),
            nn.Conv2d(8, 10, 5, padding=2), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(True),
            nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(10 * 9, hidden), nn.ReLU(True),
        )
        self.fc_theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.fc_theta.weight)
        with torch.no_grad():
            self.fc_theta.bias.copy_(torch.tensor(IDENTITY_THETA))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2, 3) affine parameters for a batch (in ``affine_grid``'s normalised coordinates)."""
        return self.fc_theta(self.localization(x)).view(-1, 2, 3)

    def forward(self, x: torch.Tensor, loc_input: torch.Tensor | None = None) -> torch.Tensor:
        """Warp ``x``; θ is predicted from ``loc_input`` (e.g. the normalised image) or ``x``."""
        theta = self.theta(x if loc_input is None else loc_input).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class STNModel(CnnlabModel):
    """``stn`` then ``inner``: a spatial transformer in front of any :class:`CnnlabModel`.

    The localiser sees the inner model's normalised image; the warp is applied to the [0, 1] image,
    which the inner model then normalises itself. Only ``inner`` owns ``norm`` and ``head``
    (exposed here as properties), so the state dict holds each tensor once.
    """

    def __init__(self, inner: CnnlabModel, stn: SpatialTransformer | None = None) -> None:
        # CnnlabModel.__init__ would create a second InputNorm; the inner model's is the one.
        nn.Module.__init__(self)
        self.inner = inner
        self.stn = stn if stn is not None else SpatialTransformer(inner.in_chans, inner.input_size)
        self._feature_info = [FeatureInfo("stn", "stn", inner.in_chans, 1)] + [
            replace(f, module=f"inner.{f.module}") for f in inner.feature_layers()]

    # -- delegated attributes --------------------------------------------------------------
    @property
    def norm(self) -> InputNorm:
        return self.inner.norm

    @property
    def head(self) -> nn.Module:
        return self.inner.head

    @property
    def in_chans(self) -> int:
        return self.inner.in_chans

    @property
    def input_size(self) -> tuple[int, int]:
        return self.inner.input_size

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def aux_outputs(self) -> list[torch.Tensor]:
        return self.inner.aux_outputs

    @property
    def aux_weight(self) -> float:
        return self.inner.aux_weight

    # -- the contract ------------------------------------------------------------------------
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The warped [0, 1] image the inner model sees."""
        return self.stn(x, loc_input=self.inner.norm(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_features(self.transform(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_head(f)

    def classifier(self) -> nn.Linear:
        return self.inner.classifier()

    def reset_classifier(self, num_classes: int) -> None:
        self.inner.reset_classifier(num_classes)

    def feature_shape(self) -> torch.Size:
        return self.inner.feature_shape()


def with_stn(model: CnnlabModel, stn: SpatialTransformer | None = None) -> STNModel:
    """Put a spatial transformer (identity at initialisation) in front of ``model``."""
    if not isinstance(model, CnnlabModel):
        raise TypeError(f"with_stn needs a CnnlabModel, got {type(model).__name__}")
    return STNModel(model, stn)
