"""The Energy-based models tab in headless Chromium: train, watch the MCMC chains move between
frames, stop; score arrows for score matching; the sampler sandbox's chains."""

import time

import pytest

pytestmark = pytest.mark.browser

HEADS = """(sel) => { const d = document.querySelector(sel);
    if (!d || !d._fullData) return null;
    const h = d._fullData.find(t => t.name === 'chain heads');
    const names = d._fullData.map(t => t.name);
    return {frames: Number(d.dataset.frames || 0), title: d.layout.title.text, names: names,
            heads: h ? Array.from(h.x).concat(Array.from(h.y)) : null}; }"""


def state(page, sel):
    return page.evaluate(HEADS, f"{sel} .live-plot")


def open_tab(page, url):
    page.goto(url)
    page.get_by_role("tab", name="Energy-based models").click()
    page.wait_for_selector("#ebm-plot-main .js-plotly-plot", timeout=30000)


def wait_for_heads(page, sel, timeout=30000):
    page.wait_for_function(f"() => {{ const s = ({HEADS})('{sel} .live-plot'); return s && s.heads; }}",
                           timeout=timeout)


def wait_for_frames(page, sel, more: int, timeout=30000):
    """Until `more` new frames have been drawn (no timing is asserted: a loaded machine is slow)."""
    n = state(page, sel)["frames"]
    js = f"() => Number(document.querySelector('{sel} .live-plot').dataset.frames || 0) >= {n + more}"
    page.wait_for_function(js, timeout=timeout)
    return state(page, sel)


def moved(a, b):
    return max(abs(u - v) for u, v in zip(a, b)) > 1e-3


def test_ebm_tab_trains_with_chains_moving_and_stops(page, app_url, artifacts):
    open_tab(page, app_url)
    page.click("#ebm-train")
    wait_for_heads(page, "#ebm-plot-main")
    first = state(page, "#ebm-plot-main")
    second = wait_for_frames(page, "#ebm-plot-main", 2)
    assert second["title"] != first["title"]  # the step in the title moves
    assert len(second["heads"]) == 16 and moved(first["heads"], second["heads"])  # the 8 chains moved
    page.click("#ebm-stop")
    page.wait_for_function("() => document.querySelector('#ebm-status').innerText.includes('stopped')",
                           timeout=15000)
    time.sleep(0.5)
    status = page.inner_text("#ebm-status")
    assert "held-out NLL" in status and "∫p on grid ≈ 1.000" in status  # Z is a sum over the grid
    stopped = state(page, "#ebm-plot-main")
    assert "energy −f(x)" in stopped["names"] and any("MCMC chains" in n for n in stopped["names"])
    dens = state(page, "#ebm-plot-samples")
    assert "negatives of the last update" in dens["names"]
    page.screenshot(path=str(artifacts / "ebm.png"), full_page=True)


def test_score_matching_shows_the_score_field(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator("#ebm-model input").click()
    page.get_by_role("option", name="EBM: score matching").click()
    page.click("#ebm-train")
    page.wait_for_function(
        "() => { const d = document.querySelector('#ebm-plot-main .live-plot');"
        " return d && d._fullData && d._fullData.some(t => (t.name || '').startsWith('score')); }", timeout=30000)
    time.sleep(1.0)
    page.click("#ebm-stop")
    page.wait_for_function("() => document.querySelector('#ebm-status').innerText.includes('stopped')",
                           timeout=15000)
    page.screenshot(path=str(artifacts / "ebm-score-matching.png"))
    page.get_by_label("off").check()  # the score arrows option turns them off
    page.wait_for_function(
        "() => { const d = document.querySelector('#ebm-plot-main .live-plot');"
        " return d && d._fullData && !d._fullData.some(t => (t.name || '').startsWith('score')); }", timeout=15000)


def test_sampler_sandbox_runs_chains_on_a_target(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator("#ebm-sb-target input").click()
    page.get_by_role("option", name="Donut").click()
    page.get_by_label("Metropolis–Hastings").check()
    page.click("#ebm-sb-run")
    wait_for_heads(page, "#ebm-sb-plot")
    a = state(page, "#ebm-sb-plot")
    b = wait_for_frames(page, "#ebm-sb-plot", 3)
    assert moved(a["heads"], b["heads"])
    page.click("#ebm-sb-stop", timeout=90000)  # a loaded machine's browser may lag behind the frames
    time.sleep(1.0)
    info = page.evaluate("() => document.querySelector('#ebm-sb-info').innerText")
    assert "Metropolis–Hastings" in info and "acceptance" in info and "energy distance" in info
    frozen = state(page, "#ebm-sb-plot")["frames"]
    time.sleep(1.0)
    assert state(page, "#ebm-sb-plot")["frames"] == frozen  # Stop stopped the loop
    page.locator("#ebm-sb-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ebm-sandbox.png"))
