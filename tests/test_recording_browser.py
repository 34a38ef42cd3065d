"""The exported HTML animation (playground.recording.to_html) plays in headless Chromium from a file://
URL with every network request refused: plotly.js is inlined, Play advances the frames and the heatmap
is redrawn with each one."""

from __future__ import annotations

import numpy as np
import pytest

from playground import plots, recording

pytestmark = pytest.mark.browser

BOX = (-4.0, 4.0, -4.0, 4.0)


def figure(step: int) -> dict:
    """A density bump that moves right as the step grows, with 300 samples over it."""
    xs = np.linspace(BOX[0], BOX[1], 60, dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    centre = -3.0 + step / 100.0
    z = np.exp(-((gx - centre) ** 2 + gy ** 2) / 2)
    pts = np.random.default_rng(step).normal(size=(300, 2)).astype(np.float32) + [centre, 0.0]
    return {"data": [plots.heatmap(xs, xs, z, "density", zmin=0.0, zmax=1.0),
                     plots.points(pts, "samples", color=plots.SAMPLE_COLOR)],
            "layout": plots.data_layout(BOX, f"Model density p(x) — step {step}")}


def test_exported_html_plays_offline(page, tmp_path):
    rec = recording.Recorder(max_frames=20)
    for step in range(0, 600, 10):
        rec.add(step, figure(step))
    path = tmp_path / "run.html"
    path.write_text(recording.to_html(rec.frames, "Moving bump"), encoding="utf-8")

    requested = []

    def refuse(route):
        if route.request.url.startswith(("http://", "https://")):
            requested.append(route.request.url)
            return route.abort()
        return route.continue_()

    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", refuse)
    page.goto(path.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30000)
    page.wait_for_function("() => { const gd = document.getElementById('plot');"
                           " return gd._transitionData && gd._transitionData._frames.length > 0; }", timeout=30000)
    state = ("() => { const gd = document.getElementById('plot'); const z = gd.calcdata[0][0].z;"
             " return {title: gd.layout.title.text, active: gd.layout.sliders[0].active,"
             " frames: gd._transitionData._frames.length, nsteps: gd._fullLayout.sliders[0].steps.length,"
             " z: z[30][5], types: gd._fullData.map(t => t.type)}; }")
    before = page.evaluate(state)
    assert before["title"].endswith("step 0") and before["active"] == 0
    assert before["frames"] == before["nsteps"] == len(rec)
    assert before["types"] == ["heatmap", "scatter"]
    assert before["z"] > 0.5  # the bump starts on the left

    page.get_by_text("Play").click()
    page.wait_for_function("() => document.getElementById('plot').layout.sliders[0].active >= 8", timeout=5000)
    after = page.evaluate(state)
    step = int(after["title"].rsplit("step ", 1)[1])
    assert step >= 200 and after["active"] >= 8
    assert after["z"] < 0.1  # the heatmap itself was redrawn: the bump has moved right
    assert page.locator(".heatmaplayer image").count() == 1 and page.locator(".scatterlayer .point").count() == 300
    assert not errors and not requested
