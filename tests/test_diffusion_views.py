"""The diffusion tab's frames without a browser: every panel from a real run of each model, what the titles and
legends say, the quality panel's cost axis, and the session's cheaper live density for a costly one."""

import numpy as np
import pytest

from models.diffusion import base as diffusion_base
from playground import views
from playground.datasets import make_split
from playground.session import Session
from playground.snapshot import DiffusionProbe
from playground.tabs import diffusion as diffusion_tab

PANELS = {name for name, _, _ in diffusion_tab.SPEC.panels}


@pytest.fixture(scope="module")
def runs():
    """A short run of each model (small nets), stopped: its final frame."""
    out = {}
    for key in ("ddpm", "score_sde", "flow_matching"):
        sess = Session(key, {"hidden": 32, "depth": 2, "ode_steps": 8}, make_split("8gaussians", 600, seed=0))
        for _ in sess.run(max_steps=60):
            pass
        out[key] = sess.snapshot(evaluate=True)
    return out


def test_the_tabs_level_slider_spans_the_models_levels():
    assert diffusion_tab.N_LEVELS == diffusion_base.N_LEVELS


@pytest.mark.parametrize("key", ["ddpm", "score_sde", "flow_matching"])
def test_every_panel_is_drawn_from_a_real_frame(runs, key):
    snap = runs[key]
    assert isinstance(snap.probe, DiffusionProbe)
    figs = views.render(snap, level=3)
    assert set(figs) == PANELS
    for name, fig in figs.items():
        assert fig["data"], f"{key}: panel {name} is empty"
    assert "level 3" in figs["noising"]["layout"]["title"]["text"]
    assert "halving the ODE" in figs["curves"]["layout"]["title"]["text"]
    names = {tr["name"] for tr in figs["paths"]["data"]}
    if key == "flow_matching":  # no stochastic sampler: its ODE paths against their chords
        assert "straight chord" in names
    else:
        assert snap.probe.sde_label in names and snap.probe.ode_label in names
    levels = figs["levels"]["data"][0]["y"]
    assert len(levels) == diffusion_base.LEVEL_BINS and np.all(levels > 0)


def test_the_slider_picks_the_level_and_is_clipped(runs):
    snap = runs["ddpm"]
    ends = [views.render(snap, level=k)["noising"]["layout"]["title"]["text"] for k in (0, 11, 99, -5)]
    assert "the data end" in ends[0] and "pure noise" in ends[1] and "pure noise" in ends[2] and "data end" in ends[3]
    a = views.render(snap, level=2)["noising"]["data"][1]["x"]
    b = views.render(snap, level=9)["noising"]["data"][1]["x"]
    assert np.std(b) > np.std(a)  # noised points spread as t grows


def test_quality_panel_counts_network_evaluations(runs):
    """Heun spends two evaluations a step: its points sit at twice the steps on the cost axis; annealed Langevin
    spends its steps per level."""
    fig = views.render(runs["flow_matching"])["quality"]
    by = {tr["name"]: tr for tr in fig["data"] if "x" in tr}
    steps = np.asarray(diffusion_base.QUALITY_STEPS, np.float32)
    assert np.array_equal(by["Euler"]["x"], steps) and np.array_equal(by["Heun"]["x"], 2 * steps)
    fig = views.render(runs["score_sde"])["quality"]
    lang = next(tr for tr in fig["data"] if tr["name"] == "annealed Langevin")
    assert np.array_equal(lang["x"], steps * runs["score_sde"].probe.langevin_steps)


def test_a_live_frame_repeats_a_costly_density_until_its_refresh():
    """A model with density_refresh (the ODE's density costs ~0.1 s a grid) gets its last grid again in live frames
    within that many seconds, marked with the step it was drawn at; after it, a fresh one."""
    sess = Session("flow_matching", {"hidden": 32, "depth": 2}, make_split("moons", 600, seed=0))
    seen = []
    for snap in sess.run(max_steps=400, frame_interval=0.0):
        if snap is not None and snap.status == "running":
            seen.append(snap)
    assert len(seen) >= 3
    repeated = [s for s in seen if "density_step" in s.latest]
    assert repeated, "no live frame reused the density"
    for s in repeated:
        assert s.latest["density_step"] < s.step
        drawn = next(o for o in seen if o.step == s.latest["density_step"])
        assert s.log_density is drawn.log_density
    assert len({id(s.log_density) for s in seen}) >= 1
