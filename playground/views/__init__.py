"""Which figures a frame shows, per model key or family: Snapshot -> {panel name: figure dict}.

A view module registers a function with ``@view("mog")`` (model keys) or ``@view(family="gan")``.
Views import numpy and plotly (through playground.plots) and the numpy-only playground.snapshot, so
the benchmark and the tests can render frames exactly as the app does without a browser or gradio.
A view reads its family's typed probe record (``snap.probe``, None before the first frame).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from .. import plots
from ..snapshot import Snapshot

_BY_KEY: dict[str, Callable] = {}
_BY_FAMILY: dict[str, Callable] = {}


def view(*keys: str, family: str | None = None):
    def deco(fn):
        for k in keys:
            _BY_KEY[k] = fn
        if family:
            _BY_FAMILY[family] = fn
        return fn
    return deco


def generic(snap: Snapshot, log_scale: bool = False, **_) -> dict[str, dict]:
    """Density (when there is one), samples and curves: what every model can show."""
    return {"main": plots.density_figure(snap, log_scale), "samples": plots.samples_figure(snap),
            "curves": plots.likelihood_figure(snap) if snap.density != "none" else plots.loss_figure(snap),
            "extra": plots.distance_figure(snap)}


def render(snap: Snapshot, **opts) -> dict[str, dict]:
    fn = _BY_KEY.get(snap.model_key) or _BY_FAMILY.get(snap.family) or generic
    return {k: plots.fit_legend(fig) for k, fig in fn(snap, **opts).items()}


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")
