"""Controls generated from a model's Config: safe ranges, readable log sliders."""

import math

import pytest

from models import REGISTRY, ConfigError
from playground.controls import make_control, make_controls


def _spec(key, name):
    return next(s for s in REGISTRY[key].Config.spec() if s["name"] == name)


def test_log_slider_ends_are_short_numbers_and_values_stay_in_the_safe_range():
    spec = _spec("vae", "sigma")  # 0.02 .. 1.0 on a log scale: log10(0.02) = -1.69897...
    c = make_control(spec)
    lo, hi = c.component.minimum, c.component.maximum
    assert lo == round(lo, 2) and hi == round(hi, 2)
    assert lo <= math.log10(spec["min"]) and hi >= math.log10(spec["max"])
    # the slider's very ends convert back inside the field's range, which the Config accepts
    for raw in (lo, hi):
        v = c.value(raw)
        assert spec["min"] <= v <= spec["max"]
        REGISTRY["vae"].Config.make(sigma=v)
    with pytest.raises(ConfigError):
        REGISTRY["vae"].Config.make(sigma=10 ** lo)  # without the clamp the end would be refused


def test_every_numeric_control_starts_at_its_default_inside_its_range():
    for key, cls in REGISTRY.items():
        for name, c in make_controls(cls.Config).items():
            comp = c.component
            if not hasattr(comp, "minimum") or comp.minimum is None:
                continue
            assert comp.minimum <= comp.value <= comp.maximum, (key, name)
