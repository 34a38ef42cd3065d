"""The VAE in the Latent variables tab, as a user drives it in headless Chromium."""

import time

import pytest
from live_helpers import SLOW, click, panel, wait_frames, wait_panel, wait_status

pytestmark = pytest.mark.browser

VAE_PANELS = ("latent", "manifold", "posterior", "estimator", "svi")


def plot(page, name):
    """A panel's frames, title, trace types and names (canvas layers included), and whether it is shown."""
    p = panel(page, f"latent-plot-{name}")
    if p is None:
        return None
    shown = page.evaluate("(s) => { const d = document.querySelector(s); return !!d && d.offsetParent !== null; }",
                          f"#latent-plot-{name} .live-plot")
    return {"frames": p["frames"], "title": p["title"], "types": p["types"], "names": p["names"], "visible": shown}


def show(page, name):
    """Scroll a panel into view (panels out of view are neither requested nor drawn) and wait for a figure."""
    page.locator(f"#latent-plot-{name}").scroll_into_view_if_needed()
    wait_panel(page, f"latent-plot-{name}", "p.frames >= 1")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_vae_trains_live_point_slider_moves_posterior(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Latent variables").click()
    wait_panel(page, "latent-plot-main", "p.frames >= 1")
    assert not page.locator("#latent-point").is_visible()  # the VAE's own controls wait for the VAE
    page.locator("#latent-model input").click()
    page.get_by_role("option", name="Variational autoencoder (VAE)").click()
    page.wait_for_selector("#latent-point", state="visible", timeout=SLOW)
    page.locator("#latent-dataset input").click()
    page.get_by_role("option", name="Two moons").click()
    page.click("#latent-reset")
    page.click("#latent-train")
    page.locator("#latent-plot-posterior").scroll_into_view_if_needed()
    wait_panel(page, "latent-plot-posterior", "p.types.includes('heatmap')")
    page.locator("#latent-plot-main").scroll_into_view_if_needed()
    first = plot(page, "main")
    # it moves while it trains (frames are spaced so that drawing takes a small share of the time)
    wait_frames(page, "latent-plot-main", 2)
    second = plot(page, "main")
    status = page.inner_text("#latent-status")
    assert "running" in status and "held-out NLL" in status, status
    assert second["title"] != first["title"]
    for name in VAE_PANELS:
        show(page, name)
        assert plot(page, name)["visible"], name
    show(page, "curves")
    curves = plot(page, "curves")
    names = curves["names"]  # log p(x) says whether its quadrature was verified or is an estimate
    assert "ELBO" in names and any(n.startswith("log p(x)") for n in names) and any(n.startswith("IWAE") for n in names)
    # move the point slider: the posterior and estimator panels follow it (live, while training)
    box = page.locator("#latent-point input[type=number]")
    box.fill("321")
    box.press("Enter")
    page.locator("#latent-plot-posterior").scroll_into_view_if_needed()
    wait_panel(page, "latent-plot-posterior", "p.title.includes('#321')")
    click(page, "#latent-stop")
    wait_status(page, "latent", "stopped")
    # stopped: the slider still redraws the last frame
    box.fill("7")
    box.press("Enter")
    page.locator("#latent-plot-estimator").scroll_into_view_if_needed()
    wait_panel(page, "latent-plot-estimator", "p.title.includes('#7 ')")
    assert "KL(q ‖ p(z|x))" in " ".join(plot(page, "posterior")["names"])
    assert any(n.startswith("q* refined by SVI") for n in plot(page, "posterior")["names"])
    page.locator("#latent-plot-svi").scroll_into_view_if_needed()  # per-point inference: the gap split in two
    wait_panel(page, "latent-plot-svi", "p.title.includes('#7:') && p.title.includes('amortisation gap')")
    time.sleep(0.5)
    page.screenshot(path=str(artifacts / "latent-vae.png"), full_page=True)
    # back to the mixture: the VAE's panels and slider go away again
    page.locator("#latent-model input").click()
    page.get_by_role("option", name="Mixture of Gaussians").click()
    page.wait_for_selector("#latent-point", state="hidden", timeout=SLOW)
    assert not page.locator("#latent-plot-posterior").is_visible()
