"""The Autoregressive tab as a user sees it: train, move the slice slider, switch model, stop, screenshot."""

import time

import pytest

pytestmark = pytest.mark.browser

P = "#autoregressive"


def state(page, panel):
    return page.evaluate(
        """(sel) => { const d = document.querySelector(sel);
            if (!d || !d.data) return null;
            const slice = d.data.find(t => String(t.name || '').startsWith('slice'));
            const cond = d.data.find(t => String(t.name || '').startsWith('model p(x₂ |'));
            return {frames: Number(d.dataset.frames || 0), title: d.layout.title.text, ntraces: d.data.length,
                    types: d.data.map(t => t.type), slice: slice ? Array.from(slice.x) : null,
                    cond: cond ? Array.from(cond.y).slice(0, 80) : null}; }""",
        f"{P}-plot-{panel} .live-plot")


def open_tab(page, url):
    page.set_default_timeout(60000)  # a loaded 2-core machine can be slow to answer clicks
    page.goto(url)
    page.get_by_role("tab", name="Autoregressive").click()
    page.wait_for_selector(f"{P}-plot-main .js-plotly-plot", timeout=30000)


def wait_trained(page):
    page.wait_for_function(
        "() => { const d = document.querySelector('#autoregressive-plot-main .live-plot');"
        " return d && d.data && d.data.some(t => t.type === 'heatmap'); }", timeout=30000)


def set_slider(page, elem, value):
    box = page.locator(f"{elem} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_made_trains_slice_moves_and_masks_show(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator(f"{P}-model input").click()
    page.get_by_role("option", name="MADE (masked MLP)").click()
    page.click(f"{P}-train")
    wait_trained(page)
    first = state(page, "main")
    time.sleep(2.5)
    second = state(page, "main")
    assert second["frames"] >= first["frames"] + 3, (first, second)  # it animates while training
    assert second["title"] != first["title"]  # the step moves
    assert "running" in page.inner_text(f"{P}-status")
    before = state(page, "factors")
    set_slider(page, f"{P}-slice", 0.8)  # the slice moves while training goes on
    page.wait_for_function(
        "(x0) => { const d = document.querySelector('#autoregressive-plot-main .live-plot');"
        " const s = d.data.find(t => String(t.name || '').startsWith('slice')); return s && s.x[0] !== x0; }",
        arg=before["slice"][0] if before["slice"] else None, timeout=45000)
    page.click(f"{P}-stop")
    page.wait_for_function("() => document.querySelector('#autoregressive-status').innerText.includes('stopped')",
                           timeout=45000)
    stopped = state(page, "factors")
    # a stopped run still answers the slider: the frame is redrawn from the last snapshot, no training
    set_slider(page, f"{P}-slice", 0.25)
    page.wait_for_function(
        "(c) => { const d = document.querySelector('#autoregressive-plot-factors .live-plot');"
        " const t = d.data.find(t => String(t.name || '').startsWith('model p(x₂ |'));"
        " return t && JSON.stringify(Array.from(t.y).slice(0, 80)) !== JSON.stringify(c); }",
        arg=stopped["cond"], timeout=45000)
    after = state(page, "factors")
    assert "= 0.25" not in stopped["title"] and after["title"] != stopped["title"]
    net = state(page, "network")
    assert "MADE's masks" in net["title"] and net["ntraces"] >= 5
    info = page.inner_text(f"{P}-info")
    assert "nats per unit area" in info and "nats per cell" in info
    time.sleep(0.5)
    page.screenshot(path=str(artifacts / "autoregressive-tab.png"), full_page=True)


def test_rnade_order_switch(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator(f"{P}-model input").click()
    page.get_by_role("option", name="RNADE (continuous, mixture of Gaussians)").click()
    page.locator(f"{P}-rnade-order input").click()
    page.get_by_role("option", name="x2_first").click()
    page.click(f"{P}-train")
    wait_trained(page)
    time.sleep(1.5)
    page.click(f"{P}-stop")
    page.wait_for_function("() => document.querySelector('#autoregressive-status').innerText.includes('stopped')",
                           timeout=45000)
    main = state(page, "main")
    assert "p(x₂)·p(x₁ | x₂)" in main["title"]
    factors = state(page, "factors")
    assert "p(x₁ | x₂" in factors["title"]
    assert "no bins" in page.inner_text(f"{P}-info")
    page.screenshot(path=str(artifacts / "autoregressive-rnade.png"), full_page=True)
