"""The VAE in the Latent variables tab, as a user drives it in headless Chromium."""

import time

import pytest

pytestmark = pytest.mark.browser

VAE_PANELS = ("latent", "manifold", "posterior", "estimator")


def plot(page, panel):
    return page.evaluate(
        """(sel) => { const d = document.querySelector(sel);
            if (!d || !d.data) return null;
            return {frames: Number(d.dataset.frames || 0), title: d.layout.title ? d.layout.title.text : '',
                    types: d.data.map(t => t.type), names: d.data.map(t => t.name || ''),
                    visible: d.offsetParent !== null}; }""",
        f"#latent-plot-{panel} .live-plot")


def test_vae_trains_live_point_slider_moves_posterior(page, app_url, artifacts):
    page.goto(app_url)
    page.get_by_role("tab", name="Latent variables").click()
    page.wait_for_selector("#latent-plot-main .js-plotly-plot", timeout=30000)
    assert not page.locator("#latent-point").is_visible()  # the VAE's own controls wait for the VAE
    page.locator("#latent-model input").click()
    page.get_by_role("option", name="Variational autoencoder (VAE)").click()
    page.wait_for_selector("#latent-point", state="visible", timeout=10000)
    page.locator("#latent-dataset input").click()
    page.get_by_role("option", name="Two moons").click()
    page.click("#latent-reset")
    page.click("#latent-train")
    page.wait_for_function(
        "() => { const d = document.querySelector('#latent-plot-posterior .live-plot');"
        " return d && d.data && d.data.some(t => t.type === 'heatmap'); }", timeout=60000)
    first = plot(page, "main")
    # it moves while it trains (frames are spaced so that drawing takes a small share of the time)
    page.wait_for_function(
        "(n) => Number(document.querySelector('#latent-plot-main .live-plot').dataset.frames || 0) >= n",
        arg=first["frames"] + 2, timeout=60000)
    second = plot(page, "main")
    status = page.inner_text("#latent-status")
    assert "running" in status and "held-out NLL" in status, status
    assert second["title"] != first["title"]
    for name in VAE_PANELS:
        assert plot(page, name)["visible"], name
    curves = plot(page, "curves")
    assert {"log p(x) (exact)", "ELBO"} <= set(curves["names"]) and any(n.startswith("IWAE") for n in curves["names"])
    # move the point slider: the posterior and estimator panels follow it (live, while training)
    box = page.locator("#latent-point input[type=number]")
    box.fill("321")
    box.press("Enter")
    page.wait_for_function(
        "() => { const d = document.querySelector('#latent-plot-posterior .live-plot');"
        " return d && d.layout && d.layout.title.text.includes('#321'); }", timeout=30000)
    page.click("#latent-stop")
    page.wait_for_function("() => document.querySelector('#latent-status').innerText.includes('stopped')",
                           timeout=30000)
    # stopped: the slider still redraws the last frame
    box.fill("7")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#latent-plot-estimator .live-plot').layout.title.text.includes('#7 ')",
        timeout=20000)
    assert "KL(q ‖ p(z|x))" in " ".join(plot(page, "posterior")["names"])
    time.sleep(0.5)
    page.screenshot(path=str(artifacts / "latent-vae.png"), full_page=True)
    # back to the mixture: the VAE's panels and slider go away again
    page.locator("#latent-model input").click()
    page.get_by_role("option", name="Mixture of Gaussians").click()
    page.wait_for_selector("#latent-point", state="hidden", timeout=10000)
    assert not page.locator("#latent-plot-posterior").is_visible()
