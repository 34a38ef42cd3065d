"""The app as a user sees it: headless Chromium clicks through the Latent variables tab."""

import time

import pytest

pytestmark = pytest.mark.browser


def plot_state(page, panel):
    return page.evaluate(
        """(sel) => { const d = document.querySelector(sel);
            if (!d || !d.data) return null;
            const h = d._fullData.find(t => t.type === 'heatmap');
            let s = 0; if (h) { for (const row of h.z) for (const v of row) s += (v || 0) * (v || 0); }
            return {frames: Number(d.dataset.frames || 0), zsum: s, title: d.layout.title.text,
                    xrange: d._fullLayout.xaxis.range.slice(), ntraces: d.data.length}; }""",
        f"#latent-plot-{panel} .live-plot")


def open_tab(page, url):
    page.goto(url)
    page.get_by_role("tab", name="Latent variables").click()
    page.wait_for_selector("#latent-plot-main .js-plotly-plot", timeout=30000)


def test_latent_tab_trains_live_and_stops(page, app_url, artifacts):
    open_tab(page, app_url)
    page.click("#latent-train")
    page.wait_for_function(
        "() => { const d = document.querySelector('#latent-plot-main .live-plot');"
        " return d && d.data && d.data.some(t => t.type === 'heatmap'); }", timeout=30000)
    first = plot_state(page, "main")
    time.sleep(2.5)
    second = plot_state(page, "main")
    assert second["frames"] >= first["frames"] + 3, (first, second)  # several frames per second
    assert second["title"] != first["title"]  # the step in the title moves
    assert "running" in page.inner_text("#latent-status")
    page.click("#latent-stop")
    page.wait_for_function("() => document.querySelector('#latent-status').innerText.includes('stopped')",
                           timeout=15000)
    time.sleep(0.5)
    page.screenshot(path=str(artifacts / "latent-tab.png"), full_page=True)
    curves = plot_state(page, "curves")
    assert curves["ntraces"] >= 2


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
    page.wait_for_function(
        "() => { const d = document.querySelector('#latent-plot-main .live-plot');"
        " return d && d.data && d.data.some(t => t.type === 'heatmap'); }", timeout=30000)
    # zoom as a user does: drag a box on the plot area
    drag = page.locator("#latent-plot-main .nsewdrag").first.bounding_box()
    page.mouse.move(drag["x"] + drag["width"] * 0.3, drag["y"] + drag["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(drag["x"] + drag["width"] * 0.6, drag["y"] + drag["height"] * 0.6, steps=8)
    page.mouse.up()
    zoomed = plot_state(page, "main")["xrange"]
    assert zoomed[1] - zoomed[0] < 4  # the box zoom took effect
    a = plot_state(page, "main")
    time.sleep(1.5)
    b = plot_state(page, "main")
    status = page.inner_text("#latent-status")
    page.screenshot(path=str(artifacts / "latent-zoomed.png"))
    page.click("#latent-stop")
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
    page.wait_for_function("() => document.querySelector('#latent-status').innerText.includes('2 columns')",
                           timeout=15000)


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
    page.wait_for_function("() => document.querySelector('#latent-status').innerText.includes('training and')",
                           timeout=20000)
    pts = page.evaluate("() => document.querySelector('#latent-plot-main .live-plot')._fullData[0].x.length")
    assert pts > 100
    page.screenshot(path=str(artifacts / "latent-drawn.png"))
