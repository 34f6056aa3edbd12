"""cnnlab: train, evaluate, explain and measure the classic deep CNNs on an ordinary machine."""

__version__ = "0.1.0"

from .api import evaluate, load_data, load_model, predict, train  # noqa: E402

__all__ = ["__version__", "evaluate", "load_data", "load_model", "predict", "train"]
