"""Training: config, one explicit loop, optimizers/schedules, checkpoints, DDP."""

from .config import TrainConfig, make_config, read_config_file
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "make_config", "read_config_file", "train"]
