"""The Autoregressive tab as a user sees it: train, move the slice slider, resume, stop, screenshot."""

import time

import pytest
from live_helpers import SLOW, click, panel, step_of, trace, wait_frames, wait_panel, wait_status

pytestmark = pytest.mark.browser

P = "#autoregressive"


def state(page, name):
    """A panel's frames, title and number of traces, the slice line's x and y, and the conditional's first
    80 values (read from the live panel's data: canvas layers and Plotly's traces alike)."""
    pid = f"autoregressive-plot-{name}"
    p = panel(page, pid)
    if p is None:
        return None
    slice_ = trace(page, pid, "slice")
    cond = next((n for n in p["names"] if n.startswith("model p(") and "|" in n), None)
    cond = trace(page, pid, cond) if cond else None
    return {"frames": p["frames"], "title": p["title"], "ntraces": p["ntraces"],
            "slice": list(slice_["x"]) + list(slice_["y"]) if slice_ else None,
            "cond": list(cond["y"])[:80] if cond else None}


def show(page, name):
    """Scroll a panel into view (panels out of view are not drawn) and wait for its first figure."""
    page.locator(f"{P}-plot-{name}").scroll_into_view_if_needed()
    wait_panel(page, f"autoregressive-plot-{name}", "p.frames >= 1")


def open_tab(page, url):
    page.set_default_timeout(SLOW)
    page.goto(url)
    page.get_by_role("tab", name="Autoregressive").click()
    wait_panel(page, "autoregressive-plot-main", "p.frames >= 1")


def pick(page, control, option):
    page.locator(f"{P}-{control} input").click()
    page.get_by_role("option", name=option).click()


def train_until_drawn(page):
    page.click(f"{P}-train")
    wait_panel(page, "autoregressive-plot-main", "p.types.includes('heatmap')")


def stop(page):
    click(page, f"{P}-stop")
    wait_status(page, "autoregressive", "stopped")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_made_trains_slice_moves_and_masks_show(page, app_url, artifacts):
    open_tab(page, app_url)
    pick(page, "model", "MADE (masked MLP)")
    train_until_drawn(page)
    first = state(page, "main")
    wait_frames(page, "autoregressive-plot-main", 2)
    second = state(page, "main")
    assert step_of(second["title"]) > step_of(first["title"])  # it trains and redraws live
    assert "running" in page.inner_text(f"{P}-status")
    stop(page)
    time.sleep(0.5)
    show(page, "factors")
    before = {p: state(page, p) for p in ("main", "factors")}
    # the slice slider redraws the factors from the last snapshot: no training, no model call
    box = page.locator(f"{P}-slice input[type=number]")
    box.fill("0.25")
    box.press("Enter")
    wait_panel(page, "autoregressive-plot-factors", "p.title !== arg", arg=before["factors"]["title"])
    after = {p: state(page, p) for p in ("main", "factors")}
    assert after["factors"]["cond"] != before["factors"]["cond"]  # another slice, another conditional
    a = -3.5 + 0.25 * 7.0  # two moons are drawn in [-3.5, 3.5]^2; the slice is x1 = a
    assert f"= {a:.2f}" in after["factors"]["title"]
    assert after["main"]["slice"][:2] == pytest.approx([a, a], abs=1e-4)
    # resuming keeps the slice: the live frames use the slider's value
    page.click(f"{P}-train")
    stopped_at = step_of(after["main"]["title"])
    page.locator(f"{P}-plot-main").scroll_into_view_if_needed()
    wait_panel(page, "autoregressive-plot-main", "arg < Number((p.title.match(/step\\s+([\\d,]+)/) || ['', '-1'])[1]"
               ".replace(/,/g, ''))", arg=stopped_at)
    stop(page)
    time.sleep(0.5)
    show(page, "factors")
    resumed = state(page, "factors")
    assert f"= {a:.2f}" in resumed["title"]
    show(page, "network")
    net = state(page, "network")
    assert "MADE's masks" in net["title"] and net["ntraces"] >= 5
    info = page.inner_text(f"{P}-info")
    assert "nats per unit area" in info and "nats per cell" in info
    show(page, "extra")  # the curves at the bottom drawn too, for the screenshot
    page.screenshot(path=str(artifacts / "autoregressive-tab.png"), full_page=True)


def test_rnade_order_switch(page, app_url, artifacts):
    open_tab(page, app_url)
    pick(page, "model", "RNADE (continuous, mixture of Gaussians)")
    pick(page, "rnade-order", "x2_first")
    train_until_drawn(page)
    wait_frames(page, "autoregressive-plot-main", 2)
    stop(page)
    time.sleep(0.5)
    main = state(page, "main")
    assert "p(x₂)·p(x₁ | x₂)" in main["title"]
    assert main["slice"][2:] == pytest.approx([0.0, 0.0], abs=1e-4)  # a horizontal line x2 = a
    show(page, "factors")
    assert "p(x₁ | x₂" in state(page, "factors")["title"]
    assert "no bins" in page.inner_text(f"{P}-info")
    page.screenshot(path=str(artifacts / "autoregressive-rnade.png"), full_page=True)
