"""Controls generated from a Config dataclass's field metadata (one place, not per tab).

Each field becomes a slider, dropdown or checkbox with the field's safe range, so an extreme value
cannot be entered; log-scale fields (learning rates, step sizes) use a slider over log10 of the
value. ``Control.value(raw)`` turns the widget's value back into the field's value, ``Control.raw(value)``
a field's value into the widget's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from models.base import BaseConfig


@dataclass
class Control:
    name: str
    component: gr.components.Component
    to_value: Callable[[Any], Any]
    live: bool = False
    to_raw: Callable[[Any], Any] = lambda v: v  # the widget value that shows a field value (value's inverse)

    def value(self, raw: Any) -> Any:
        return self.to_value(raw)

    def raw(self, value: Any) -> Any:
        return self.to_raw(value)


def _fmt(v: float) -> str:
    return f"{v:.0e}" if v < 1e-2 or v >= 1e3 else f"{v:g}"


def make_control(spec: dict, value: Any = None, elem_prefix: str = "") -> Control:
    """A control for one field spec (an item of BaseConfig.spec())."""
    name, label, info = spec["name"], spec["label"], spec["help"] or None
    default = spec["default"] if value is None else value
    elem_id = f"{elem_prefix}{name}" if elem_prefix else None
    if spec["type"] == "bool":
        comp = gr.Checkbox(value=bool(default), label=label, info=info, elem_id=elem_id)
        return Control(name, comp, bool, spec["live"])
    if spec["choices"]:
        comp = gr.Dropdown(choices=spec["choices"], value=default, label=label, info=info, elem_id=elem_id)
        return Control(name, comp, str, spec["live"])
    lo, hi = spec["min"], spec["max"]
    if spec["log"] and lo and hi and lo > 0:
        # ends rounded outwards to 0.01 so the slider shows -1.7, not -1.6989700043360187; the
        # conversion below clamps back to [lo, hi]
        lo_s, hi_s = math.floor(math.log10(lo) * 100) / 100, math.ceil(math.log10(hi) * 100) / 100
        # the page writes the value itself after the label ("= 0.003": assets/live.js, .log10-slider)
        comp = gr.Slider(lo_s, hi_s, value=round(math.log10(default), 2), step=0.05,
                         label=f"{label} (slider: log₁₀; default {_fmt(default)})", info=info, elem_id=elem_id,
                         elem_classes=["log10-slider"])
        conv = (lambda r, _lo=lo, _hi=hi: float(min(max(10 ** float(r), _lo), _hi)))
        return Control(name, comp, conv, spec["live"], to_raw=lambda v: round(math.log10(float(v)), 2))
    step = spec["step"] or (1 if spec["type"] == "int" else (hi - lo) / 100)
    comp = gr.Slider(lo, hi, value=default, step=step, label=label, info=info, elem_id=elem_id)
    if spec["type"] == "int":
        return Control(name, comp, lambda r: int(round(float(r))), spec["live"])
    return Control(name, comp, float, spec["live"])


def make_controls(config_cls: type[BaseConfig], elem_prefix: str = "",
                  skip: tuple[str, ...] = ()) -> dict[str, Control]:
    return {s["name"]: make_control(s, elem_prefix=elem_prefix) for s in config_cls.spec()
            if s["name"] not in skip}
