"""Look-ahead EMA (airbench, Jordan 2024; after Zhang et al. 2019's Lookahead).

Every ``every`` steps the running average of the weights (and BN statistics) moves towards the
current weights, and the weights are then *replaced* by that average: the fast SGD iterate
keeps getting pulled back to the slow one. The average's decay grows over training as
``base ** every · (step / total) ** power``, so early on it follows the weights closely and
at the end it averages strongly — the cheap ensemble that lets a short run end on flat weights.
"""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    """``update(step)`` after each optimizer step; ``sync()`` at the end of every epoch."""

    def __init__(self, model: nn.Module, total_steps: int, *, start: float = 0.3,
                 every: int = 5, base: float = 0.95, power: float = 3.0) -> None:
        self.model = model
        self.total = max(1, total_steps)
        self.start = int(start * total_steps)
        self.every = every
        self.base_rho = base ** every
        self.power = power
        self.average: dict[str, torch.Tensor] | None = None

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Call with the number of optimizer steps taken so far (1, 2, …)."""
        if step < self.start or step % self.every:
            return
        current = self._tensors()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in current.items()}
            return
        rho = self.base_rho * (step / self.total) ** self.power
        for key, value in current.items():
            avg = self.average[key]
            avg.lerp_(value, 1.0 - rho)
            value.copy_(avg)

    @torch.no_grad()
    def sync(self) -> None:
        """Put the average into the model (end of an epoch: evaluate and save the average)."""
        if self.average is None:
            return
        for key, value in self._tensors().items():
            value.copy_(self.average[key])
