"""PyTorch models of the playground, a package per family (autoregressive/, latent/, flows/, gans/, ebm/), each
model registered by key in REGISTRY.

Every module of every family package is imported here, so a new model is one new file in its family's package
(a new family one new package): its classes register themselves with ``@register``. base.py, nets.py and
samplers.py are shared. Nothing here imports gradio or plotly.
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
for _info in sorted(pkgutil.walk_packages(__path__, prefix=f"{__name__}."), key=lambda m: m.name):
    _leaf = _info.name.rsplit(".", 1)[-1]
    if _info.name.split(".")[1] not in _SHARED and not _leaf.startswith("_"):
        importlib.import_module(_info.name)

__all__ = ["REGISTRY", "BaseConfig", "ConfigError", "Model2D", "TrainSettings", "all_keys", "build", "compare_keys",
           "family_keys", "hp", "load", "register"]
