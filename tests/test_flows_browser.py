"""The Normalizing flows tab in headless Chromium: train, move the layer slider, stop, switch to a
reverse-KL planar flow (the dataset follows to a target with a density), screenshots."""

import time

import pytest

pytestmark = pytest.mark.browser


def plot(page, panel):
    return page.evaluate(
        """(sel) => { const d = document.querySelector(sel);
            if (!d || !d.data) return null;
            return {frames: Number(d.dataset.frames || 0), title: d.layout.title.text,
                    names: d.data.map(t => t.name || '')}; }""",
        f"#flows-plot-{panel} .live-plot")


def wait_title(page, panel, text, timeout=30000):
    page.wait_for_function(
        "([sel, text]) => { const d = document.querySelector(sel);"
        " return d && d.layout && d.layout.title.text.includes(text); }",
        arg=[f"#flows-plot-{panel} .live-plot", text], timeout=timeout)


def stop(page):
    page.click("#flows-stop")
    page.wait_for_function("() => document.querySelector('#flows-status').innerText.includes('stopped')",
                           timeout=20000)


def test_flows_tab_trains_shows_layers_and_fits_a_target(page, app_url, artifacts):
    page.goto(app_url)
    page.get_by_role("tab", name="Normalizing flows").click()
    page.wait_for_selector("#flows-plot-main .js-plotly-plot", timeout=30000)
    page.click("#flows-train")
    wait_title(page, "layers", "Layer 8/8")  # Real NVP's 8 couplings, the slider fitted to the depth
    first = plot(page, "main")
    t0 = time.time()
    time.sleep(4.0)
    second = plot(page, "main")
    fps = (second["frames"] - first["frames"]) / (time.time() - t0)
    print(f"\nflows tab: {fps:.2f} frames/s while training Real NVP on two moons")
    assert second["frames"] > first["frames"] and second["title"] != first["title"]  # it moves
    assert "running" in page.inner_text("#flows-status")
    slider = page.locator("#flows-layer input[type=number]")
    slider.fill("2")
    slider.press("Enter")
    wait_title(page, "layers", "Layer 2/8")  # the next frame shows the grid after two couplings
    stop(page)
    time.sleep(0.5)
    assert "affine coupling" in plot(page, "layers")["title"]
    assert {"z₁ = const", "z₂ = const"} <= set(plot(page, "layers")["names"])
    assert "N(0, I)" in plot(page, "latent")["title"]
    page.screenshot(path=str(artifacts / "flows.png"), full_page=True)

    slider.fill("0")  # stopped: moving the slider redraws from the last frame
    slider.press("Enter")
    wait_title(page, "layers", "Base N(0, I)", timeout=15000)

    page.locator("#flows-model input").click()
    page.get_by_role("option", name="Planar flow (reverse KL)").click()
    page.wait_for_function("() => document.querySelector('#flows-dataset input').value.startsWith('U1')",
                           timeout=15000)  # a target-only flow on data without a density: U1 is picked
    page.click("#flows-train")
    wait_title(page, "terms", "Reverse KL", timeout=40000)
    time.sleep(2.0)
    stop(page)
    time.sleep(0.5)
    names = plot(page, "terms")["names"]
    assert any("KL(q‖p*)" in n for n in names) and any("ELBO" in n for n in names)
    assert any("target" in n for n in plot(page, "main")["names"])
    page.screenshot(path=str(artifacts / "flows-planar.png"), full_page=True)


def test_reverse_kl_on_data_without_a_density_is_refused_in_the_ui(page, app_url):
    page.goto(app_url)
    page.get_by_role("tab", name="Normalizing flows").click()
    page.wait_for_selector("#flows-plot-main .js-plotly-plot", timeout=30000)
    page.locator("#flows-realnvp-fit input").click()
    page.get_by_role("option", name="target").click()
    page.wait_for_function("() => document.querySelector('#flows-dataset input').value.startsWith('U1')",
                           timeout=15000)  # moons has no density: the tab moves to U1, which has one
    page.locator("#flows-dataset input").click()
    page.get_by_role("option", name="Two moons").click()  # the user insists
    page.click("#flows-train")
    page.wait_for_function("() => document.querySelector('#flows-status').innerText.includes('true density')",
                           timeout=20000)
    assert "U1" in page.inner_text("#flows-status")
    page.locator("#flows-model input").click()
    page.get_by_role("option", name="Planar flow (reverse KL)").click()
    page.locator("#flows-planar-fit").wait_for(timeout=10000)
    assert page.locator("#flows-planar-fit input").is_disabled()  # planar: greyed out, target only
