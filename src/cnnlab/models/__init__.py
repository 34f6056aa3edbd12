"""The model zoo: every model keeps the contract of :mod:`cnnlab.models.base`."""

from .base import CnnlabModel, FeatureInfo, InputNorm, he_init
from .registry import ModelSpec, create_model, get_spec, list_models, register_model, resolve_name

__all__ = [
    "CnnlabModel", "FeatureInfo", "InputNorm", "ModelSpec", "create_model", "get_spec", "he_init",
    "list_models", "register_model", "resolve_name",
]
