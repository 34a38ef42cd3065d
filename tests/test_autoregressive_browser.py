"""The Autoregressive tab as a user sees it: train, move the slice slider, resume, stop, screenshot."""

import time

import pytest

pytestmark = pytest.mark.browser

P = "#autoregressive"
SLOW = 90000  # ms: a loaded 2-core machine can take long to draw a frame or to answer a click


def state(page, panel):
    return page.evaluate(
        """(sel) => { const d = document.querySelector(sel);
            if (!d || !d.data) return null;
            const full = d._fullData;  // typed arrays decoded
            const slice = full.find(t => String(t.name || '').startsWith('slice'));
            const cond = full.find(t => String(t.name || '').startsWith('model p(') && t.name.includes('|'));
            return {frames: Number(d.dataset.frames || 0), title: d.layout.title.text, ntraces: d.data.length,
                    slice: slice ? Array.from(slice.x).concat(Array.from(slice.y)) : null,
                    cond: cond ? Array.from(cond.y).slice(0, 80) : null}; }""",
        f"{P}-plot-{panel} .live-plot")


def open_tab(page, url):
    page.set_default_timeout(SLOW)
    page.goto(url)
    page.get_by_role("tab", name="Autoregressive").click()
    page.wait_for_selector(f"{P}-plot-main .js-plotly-plot")


def pick(page, control, option):
    page.locator(f"{P}-{control} input").click()
    page.get_by_role("option", name=option).click()


def train_until_drawn(page):
    page.click(f"{P}-train")
    page.wait_for_function(
        "() => { const d = document.querySelector('#autoregressive-plot-main .live-plot');"
        " return d && d.data && d.data.some(t => t.type === 'heatmap'); }", timeout=SLOW)


def wait_frames(page, n_more):
    n = state(page, "main")["frames"]
    page.wait_for_function(
        "(n) => Number(document.querySelector('#autoregressive-plot-main .live-plot').dataset.frames) >= n",
        arg=n + n_more, timeout=SLOW)


def stop(page):
    page.click(f"{P}-stop")
    page.wait_for_function("() => document.querySelector('#autoregressive-status').innerText.includes('stopped')",
                           timeout=SLOW)


def step_of(title):
    return int(title.split("step ")[-1])


def test_made_trains_slice_moves_and_masks_show(page, app_url, artifacts):
    open_tab(page, app_url)
    pick(page, "model", "MADE (masked MLP)")
    train_until_drawn(page)
    first = state(page, "main")
    wait_frames(page, 2)
    second = state(page, "main")
    assert step_of(second["title"]) > step_of(first["title"])  # it trains and redraws live
    assert "running" in page.inner_text(f"{P}-status")
    stop(page)
    time.sleep(0.5)
    before = {p: state(page, p) for p in ("main", "factors")}
    # the slice slider redraws the factors from the last snapshot: no training, no model call
    box = page.locator(f"{P}-slice input[type=number]")
    box.fill("0.25")
    box.press("Enter")
    page.wait_for_function(
        "(t) => document.querySelector('#autoregressive-plot-factors .live-plot').layout.title.text !== t",
        arg=before["factors"]["title"], timeout=SLOW)
    after = {p: state(page, p) for p in ("main", "factors")}
    assert after["factors"]["cond"] != before["factors"]["cond"]  # another slice, another conditional
    a = -3.5 + 0.25 * 7.0  # two moons are drawn in [-3.5, 3.5]^2; the slice is x1 = a
    assert f"= {a:.2f}" in after["factors"]["title"]
    assert after["main"]["slice"][:2] == pytest.approx([a, a], abs=1e-4)
    # resuming keeps the slice: the live frames use the slider's value
    page.click(f"{P}-train")
    stopped_at = step_of(after["main"]["title"])
    page.wait_for_function(
        "(s) => { const t = document.querySelector('#autoregressive-plot-main .live-plot').layout.title.text;"
        " return Number(t.split('step ').pop()) > s; }", arg=stopped_at, timeout=SLOW)
    stop(page)
    time.sleep(0.5)
    resumed = state(page, "factors")
    assert f"= {a:.2f}" in resumed["title"]
    net = state(page, "network")
    assert "MADE's masks" in net["title"] and net["ntraces"] >= 5
    info = page.inner_text(f"{P}-info")
    assert "nats per unit area" in info and "nats per cell" in info
    page.screenshot(path=str(artifacts / "autoregressive-tab.png"), full_page=True)


def test_rnade_order_switch(page, app_url, artifacts):
    open_tab(page, app_url)
    pick(page, "model", "RNADE (continuous, mixture of Gaussians)")
    pick(page, "rnade-order", "x2_first")
    train_until_drawn(page)
    wait_frames(page, 2)
    stop(page)
    time.sleep(0.5)
    main = state(page, "main")
    assert "p(x₂)·p(x₁ | x₂)" in main["title"]
    assert main["slice"][2:] == pytest.approx([0.0, 0.0], abs=1e-4)  # a horizontal line x2 = a
    assert "p(x₁ | x₂" in state(page, "factors")["title"]
    assert "no bins" in page.inner_text(f"{P}-info")
    page.screenshot(path=str(artifacts / "autoregressive-rnade.png"), full_page=True)
