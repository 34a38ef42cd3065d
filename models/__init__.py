"""PyTorch models of the playground, one file per family, registered by key in REGISTRY.

Every module in this package is imported here, so a new family is one new file: its classes
register themselves with ``@register``. Nothing here imports gradio or plotly.
"""

import importlib
import pkgutil

from .base import (
    REGISTRY,
    BaseConfig,
    ConfigError,
    Model2D,
    TrainSettings,
    all_keys,
    build,
    compare_keys,
    family_keys,
    hp,
    load,
    register,
)

_SHARED = {"base", "nets", "samplers"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in _SHARED and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGISTRY", "BaseConfig", "ConfigError", "Model2D", "TrainSettings", "all_keys", "build", "compare_keys",
           "family_keys", "hp", "load", "register"]
