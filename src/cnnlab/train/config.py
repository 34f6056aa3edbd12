"""The training configuration: defaults < ``--config FILE.yaml`` < command-line flags.

One flat dataclass, so ``config.yaml`` in a run directory reads like the command that made it,
and Python API keyword names equal CLI flag names (``batch_size`` ↔ ``--batch-size``).
Unknown keys are errors: a typo in a config file must not silently train something else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, did_you_mean

OPTIMIZERS = ("sgd", "adam", "adamw", "riemannian-sgd", "muon")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    model: str = "simple-cnn"
    data: str = "digits"
    data_dir: str | None = None
    val_fraction: float | None = None
    subset: int | None = None  # train on N images of the training split, stratified, seeded
    image_size: int | list[int] | None = None  # N (N×N) or [H, W]
    channels: int | None = None  # convert images to 1 (grey) or 3 (RGB) channels
    skip_corrupt: bool = False
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 500
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float = 1.0
    lr_start: float = 0.0  # onecycle: the lr at step 0, as a fraction of the peak
    lr_end: float = 0.0  # onecycle: the lr at the last step, as a fraction of the peak
    bias_lr_scale: float = 1.0  # lr × this for BatchNorm shifts (airbench: 64); see optim.py
    muon_lr: float = 0.24  # optimizer=muon: the conv filters' lr (an angle per step); muon.py
    muon_momentum: float = 0.6  # ... and their momentum (Nesterov); SGD's for the rest
    whiten_bias_epochs: float = 0.0  # >0: patch-whitening bias at the BN-shift lr, falling to 0
    # over this many epochs, then frozen (airbench94_muon: 3); 0: an ordinary bias throughout
    freeze_whiten_bias: float = 0.0  # >0: that bias keeps its ordinary lr, frozen after this
    # many epochs (late, when the lr is small: the first layer's backward costs ~8 % of a step)
    lookahead: bool = False  # EMA weights copied back every 5 steps (airbench); see lookahead.py
    lookahead_start: float = 0.3  # ... from this fraction of the training steps on
    step_size: int = 10  # epochs between x gamma decays, for schedule=step
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: list[str] = field(default_factory=list)
    progressive: list[int] = field(default_factory=list)  # image side of the first epochs
    tta: str = "none"  # test-time augmentation of evaluations: see evaluate/metrics.TTA_KINDS
    tta_fraction: float = 1.0  # ... only for this share of images, the least confident by 1 view
    eval_every: int = 1  # evaluate every N epochs (0: only after the last)
    norm: str = "standardize"  # none | meansub | standardize | zca
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    threads: int | None = None
    out: str | None = None  # run directory; default runs/<model>-<data>-<time>
    init_from: str | None = None  # start from these weights (fine-tuning), not a resume
    adv: str | None = None  # adversarial training: fgsm (random start) | pgd; see cnnlab.attack
    adv_eps: float = 0.3  # its L∞ budget in [0, 1] pixel units (0.3 MNIST, 8/255 CIFAR)
    adv_steps: int = 7  # PGD steps (pgd only)
    adv_step_size: float | None = None  # default 2.5·eps/steps (pgd), 1.25·eps (fgsm)
    adv_eps_warmup: float = 0.0  # epochs over which ε ramps linearly from 0 to adv_eps
    preset: str | None = None  # a named recipe (train/presets.py), layered under file and flags
    keep_snapshots: bool = False  # also keep each epoch's weights in RUN/snapshots/
    report: bool = True  # write report.html after training (`cnnlab report RUN` does it later)

    def validate(self) -> TrainConfig:
        """Raise ConfigError for impossible values; returns self so calls chain."""
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, "--weight-decay must be ≥ 0"),
            (0 <= self.momentum < 1, "--momentum must be in [0, 1)"),
            (not (self.nesterov and self.momentum == 0 and self.optimizer == "sgd"),
             "--nesterov needs --momentum > 0 (Nesterov's look-ahead is along the momentum)"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.warmup_epochs >= 0, "--warmup-epochs must be ≥ 0"),
            (self.step_size >= 1, "--step-size must be ≥ 1"),
            (0 < self.gamma <= 1, "--gamma must be in (0, 1]"),
            (self.val_fraction is None or 0 < self.val_fraction < 1,
             "--val-fraction must be between 0 and 1"),
            (_valid_size(self.image_size),
             f"--image-size must be N or H,W with positive integers, got {self.image_size}"),
            (self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}"),
            (self.subset is None or self.subset >= 1, "--subset must be at least 1 image"),
            (self.threads is None or self.threads >= 1, "--threads must be ≥ 1"),
            (self.adv in (None, "fgsm", "pgd"), f"--adv must be fgsm or pgd, got '{self.adv}'"),
            (0 <= self.adv_eps <= 1, f"--adv-eps must be in [0, 1] (pixels), got {self.adv_eps}"),
            (self.adv_steps >= 1, f"--adv-steps must be at least 1, got {self.adv_steps}"),
            (self.adv_step_size is None or self.adv_step_size > 0, "--adv-step-size must be > 0"),
            (self.adv_eps_warmup >= 0, "--adv-eps-warmup must be ≥ 0 epochs"),
            (0 <= self.lr_start <= 1 and 0 <= self.lr_end <= 1,
             "--lr-start and --lr-end are fractions of the peak lr, in [0, 1]"),
            (self.bias_lr_scale > 0, "--bias-lr-scale must be > 0"),
            (self.muon_lr > 0, f"--muon-lr must be > 0, got {self.muon_lr}"),
            (0 <= self.muon_momentum < 1, "--muon-momentum must be in [0, 1)"),
            (self.whiten_bias_epochs >= 0, "--whiten-bias-epochs must be ≥ 0"),
            (self.freeze_whiten_bias >= 0, "--freeze-whiten-bias must be ≥ 0"),
            (0 < self.tta_fraction <= 1, "--tta-fraction must be a share in (0, 1]"),
            (0 <= self.lookahead_start < 1, "--lookahead-start must be a fraction in [0, 1)"),
            (self.eval_every >= 0, "--eval-every must be ≥ 0 (0: evaluate after the last epoch)"),
            (all(isinstance(v, int) and v >= 4 for v in self.progressive),
             f"--progressive lists image sides of at least 4 px, got {self.progressive}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        from ..evaluate.metrics import TTA_KINDS

        for name, value, choices in [("optimizer", self.optimizer, OPTIMIZERS),
                                     ("schedule", self.schedule, SCHEDULES),
                                     ("precision", self.precision, PRECISIONS),
                                     ("tta", self.tta, TTA_KINDS)]:
            if value not in choices:
                raise ConfigError(f"--{name} must be one of {', '.join(choices)}, got '{value}'")
        from ..models.base import NORM_KINDS

        if self.norm not in NORM_KINDS:
            raise ConfigError(f"--norm must be one of {', '.join(NORM_KINDS)}, got '{self.norm}'")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _valid_size(size: Any) -> bool:
    if size is None:
        return True
    if isinstance(size, int) and not isinstance(size, bool):
        return size >= 1
    return (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and v >= 1 for v in size))


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def make_config(*layers: dict[str, Any] | None) -> TrainConfig:
    """Merge dicts left to right over the defaults; unknown keys raise with a suggestion.

    A ``preset`` named in any layer (the last one wins) slides in just above the defaults:
    defaults < preset < the layers, so a config file or a flag overrides a preset's value.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            norm_key = key.replace("-", "_")
            if norm_key not in FIELDS:
                raise ConfigError(f"unknown config key '{key}'{did_you_mean(norm_key, FIELDS)}")
            merged[norm_key] = value
    if merged.get("preset"):
        from .presets import preset_config

        merged = {**preset_config(str(merged["preset"])), **merged}
    if isinstance(merged.get("augment"), str):
        # "crop:4 flip" or "crop:4+flip" (commas separate an op's own arguments)
        merged["augment"] = merged["augment"].replace("+", " ").split()
    try:
        return TrainConfig(**merged).validate()
    except TypeError as exc:  # wrong types from YAML
        raise ConfigError(f"bad configuration: {exc}") from exc


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of config keys; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(data).__name__}")
    return data
