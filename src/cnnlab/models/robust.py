"""The small MNIST nets that the adversarial-training papers report their numbers on.

Robust accuracy depends on the network as much as on the training attack, so to compare with a
paper one trains the paper's net. Both take [0, 1] pixels without normalization (``norm="none"``),
as in the papers, so ε = 0.3 means the same thing inside and outside the model.

* ``madry-mnist`` — A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu, "Towards Deep Learning
  Models Resistant to Adversarial Attacks", ICLR 2018 (MNIST challenge net): conv 32 5×5, max-pool,
  conv 64 5×5, max-pool, FC 1024, FC 10 — 3.27 M parameters. PGD-40 training, 89 % against
  PGD-100 at ε = 0.3 in the paper.
* ``wong-mnist`` — E. Wong, J. Z. Kolter, "Provable defenses against adversarial examples via the
  convex outer adversarial polytope", ICML 2018, the net reused by E. Wong, L. Rice, J. Z. Kolter,
  "Fast is better than free: revisiting adversarial training", ICLR 2020: conv 16 4×4 stride 2,
  conv 32 4×4 stride 2, FC 100, FC 10 — 0.17 M parameters and 0.6 M mult-adds, ~15× cheaper than
  ``dlfs-deepconvnet``, which is what makes PGD training affordable on a 2-core CPU.
"""

from __future__ import annotations

from torch import nn

from .base import CnnlabModel, FeatureInfo, he_init
from .registry import register_model


class MadryMNIST(CnnlabModel):
    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                 hidden: int = 1024, norm: str = "none") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = int(self.feature_shape().numel())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))
        self._feature_info = [FeatureInfo("conv1", "features.1", 32, 1),
                              FeatureInfo("conv2", "features.4", 64, 2)]
        he_init(self)


class WongMNIST(CnnlabModel):
    def __init__(self, *, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                 hidden: int = 100, norm: str = "none") -> None:
        super().__init__(in_chans, num_classes, input_size, norm)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        )
        flat = int(self.feature_shape().numel())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))
        self._feature_info = [FeatureInfo("conv1", "features.1", 16, 2),
                              FeatureInfo("conv2", "features.3", 32, 4)]
        he_init(self)


@register_model("madry-mnist", family="robust", year=2018,
                paper="Madry et al., ICLR (MNIST challenge net)", input_size=(1, 28, 28),
                num_classes=10)
def madry_mnist(*, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
                hidden: int = 1024, norm: str = "none") -> MadryMNIST:
    return MadryMNIST(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                      hidden=hidden, norm=norm)


@register_model("wong-mnist", family="robust", year=2018,
                paper="Wong & Kolter, ICML; Wong, Rice & Kolter, ICLR 2020", input_size=(1, 28, 28),
                num_classes=10)
def wong_mnist(*, num_classes: int = 10, in_chans: int = 1, input_size=(28, 28),
               hidden: int = 100, norm: str = "none") -> WongMNIST:
    return WongMNIST(num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                     hidden=hidden, norm=norm)
