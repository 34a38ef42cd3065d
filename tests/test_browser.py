"""The app as a user sees it: headless Chromium clicks through the Latent variables tab."""

import time

import pytest
from live_helpers import SLOW, box_zoom, click, panel, step_of, trace, wait_moves, wait_panel, wait_status

pytestmark = pytest.mark.browser


def plot_state(page, name):
    """What the tests compare between two moments: frames drawn, the title, the zoom, the number of traces,
    and the sum of p² over the density heatmap (decoded from the canvas layer)."""
    p = panel(page, f"latent-plot-{name}")
    if p is None:
        return None
    s = 0.0
    if "heatmap" in p["types"]:
        h = trace(page, f"latent-plot-{name}", p["names"][p["types"].index("heatmap")])
        s = sum((v or 0) * (v or 0) for v in h["z"])
    return {"frames": p["frames"], "zsum": s, "title": p["title"], "xrange": p["xrange"], "ntraces": p["ntraces"]}


def open_tab(page, url):
    page.set_default_timeout(SLOW)
    page.goto(url)
    page.get_by_role("tab", name="Latent variables").click()
    wait_panel(page, "latent-plot-main", "p.frames >= 1")


def wait_heatmap(page):
    wait_panel(page, "latent-plot-main", "p.types.includes('heatmap')")


def test_latent_tab_trains_live_and_stops(page, app_url, artifacts):
    open_tab(page, app_url)
    page.click("#latent-train")
    wait_heatmap(page)
    # frames keep arriving while it trains (how many per second: bench browser); EM converges within a
    # second or two, after which a frame changes only the step in the title, so count titles, not draws
    titles = wait_moves(page, "latent-plot-main", 3)
    assert step_of(titles[-1]) > step_of(titles[0]) > -1, titles
    assert "running" in page.inner_text("#latent-status")
    click(page, "#latent-stop")
    wait_status(page, "latent", "stopped")
    time.sleep(0.5)
    page.screenshot(path=str(artifacts / "latent-tab.png"), full_page=True)
    page.locator("#latent-plot-curves").scroll_into_view_if_needed()
    wait_panel(page, "latent-plot-curves", "p.frames >= 1")
    curves = plot_state(page, "curves")
    assert curves["ntraces"] >= 2, curves


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_heatmap_changes_while_training_and_zoom_survives(page, app_url, artifacts):
    open_tab(page, app_url)
    # gradient ascent moves slowly enough to watch the density change between frames
    page.locator("#latent-mog-method input").click()
    page.get_by_role("option", name="gradient").click()
    page.locator("#latent-dataset input").click()
    page.get_by_role("option", name="Two moons").click()
    lr = page.locator("#latent-lr input[type=number]")
    lr.fill("-4.5")  # a slow learning rate: the density keeps changing for minutes, even on a fast machine
    lr.press("Enter")
    page.click("#latent-reset")
    page.click("#latent-train")
    wait_heatmap(page)
    box_zoom(page, "latent-plot-main")  # as a user does: drag a box on the plot area
    zoomed = plot_state(page, "main")["xrange"]
    assert zoomed[1] - zoomed[0] < 4  # the box zoom took effect
    a = plot_state(page, "main")
    time.sleep(1.5)
    b = plot_state(page, "main")
    status = page.inner_text("#latent-status")
    page.screenshot(path=str(artifacts / "latent-zoomed.png"))
    click(page, "#latent-stop")
    assert b["frames"] > a["frames"], status
    assert abs(b["zsum"] - a["zsum"]) > 1e-3 * abs(a["zsum"])  # the density changed shape (sum of p²)
    assert b["xrange"] == pytest.approx(zoomed)  # the user's zoom was kept across frames
    page.screenshot(path=str(artifacts / "latent-zoomed.png"))


def test_csv_upload_refused_with_reason(page, app_url, tmp_path):
    open_tab(page, app_url)
    page.locator("#latent-source").get_by_label("Upload CSV").check()
    bad = tmp_path / "bad.csv"
    bad.write_text("x\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n")
    page.locator("#latent-csv input[type=file]").set_input_files(str(bad))
    wait_status(page, "latent", "2 columns")


def test_drawn_data_becomes_points(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator("#latent-source").get_by_label("Draw").check()
    canvas = page.locator("#latent-sketch canvas.dp-canvas")
    canvas.wait_for(timeout=15000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    for i in range(21):
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.03 * i), box["y"] + box["height"] * (0.5 - 0.015 * i),
                        steps=2)
    page.mouse.up()
    wait_status(page, "latent", "training and")
    wait_panel(page, "latent-plot-main", "p.title.includes('drawing')")  # the preview of the drawn data
    pts = len(trace(page, "latent-plot-main", "training")["x"])
    assert pts > 100
    page.screenshot(path=str(artifacts / "latent-drawn.png"))
