"""The Normalizing flows tab in headless Chromium: train, move the layer slider, stop, switch to a
reverse-KL planar flow (the dataset follows to a target with a density), screenshots."""

import time

import pytest
from live_helpers import SLOW, click, panel, wait_panel, wait_status

pytestmark = pytest.mark.browser


def plot(page, name):
    p = panel(page, f"flows-plot-{name}")
    if p is None:
        return None
    return {"frames": p["frames"], "title": p["title"], "names": p["names"]}


def show(page, name):
    """Scroll a panel into view: panels out of view are neither requested nor drawn."""
    page.locator(f"#flows-plot-{name}").scroll_into_view_if_needed()


def wait_title(page, name, text, timeout=SLOW):
    show(page, name)
    wait_panel(page, f"flows-plot-{name}", "p.title.includes(arg)", timeout, arg=text)


def stop(page):
    click(page, "#flows-stop")
    wait_status(page, "flows", "stopped")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_flows_tab_trains_shows_layers_and_fits_a_target(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Normalizing flows").click()
    wait_panel(page, "flows-plot-main", "p.frames >= 1")
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
    assert {"z₁ = const (nodes coloured by p)", "grid lines z₂ = const"} <= set(plot(page, "layers")["names"])
    show(page, "latent")
    wait_panel(page, "flows-plot-latent", "p.frames >= 1")
    assert "N(0, I)" in plot(page, "latent")["title"]
    page.screenshot(path=str(artifacts / "flows.png"), full_page=True)

    slider.fill("0")  # stopped: moving the slider redraws from the last frame
    slider.press("Enter")
    wait_title(page, "layers", "Base N(0, I)")

    page.locator("#flows-model input").click()
    page.get_by_role("option", name="Planar flow (reverse KL)").click()
    page.wait_for_function("() => document.querySelector('#flows-dataset input').value.startsWith('U1')",
                           timeout=SLOW)  # a target-only flow on data without a density: U1 is picked
    page.click("#flows-train")
    wait_title(page, "terms", "Reverse KL")
    time.sleep(2.0)
    stop(page)
    time.sleep(0.5)
    names = plot(page, "terms")["names"]
    assert any("KL(q‖p*)" in n for n in names) and any("ELBO" in n for n in names)
    show(page, "main")
    wait_panel(page, "flows-plot-main", "p.frames >= 1")
    assert any("target" in n for n in plot(page, "main")["names"])
    page.screenshot(path=str(artifacts / "flows-planar.png"), full_page=True)


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_reverse_kl_on_data_without_a_density_is_refused_in_the_ui(page, app_url):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Normalizing flows").click()
    wait_panel(page, "flows-plot-main", "p.frames >= 1")
    page.locator("#flows-realnvp-fit input").click()
    page.get_by_role("option", name="target").click()
    page.wait_for_function("() => document.querySelector('#flows-dataset input').value.startsWith('U1')",
                           timeout=SLOW)  # moons has no density: the tab moves to U1, which has one
    page.locator("#flows-dataset input").click()
    page.get_by_role("option", name="Two moons").click()  # the user insists
    page.click("#flows-train")
    wait_status(page, "flows", "true density")
    assert "U1" in page.inner_text("#flows-status")
    page.locator("#flows-model input").click()
    page.get_by_role("option", name="Planar flow (reverse KL)").click()
    page.locator("#flows-planar-fit").wait_for(timeout=SLOW)
    assert page.locator("#flows-planar-fit input").is_disabled()  # planar: greyed out, target only
