"""The GANs tab with BiGAN picked, as a user sees it: its encoder's panels appear, train, stop, and show the
codes E(x) over the prior, the reconstructions x -> G(E(x)) and the inversion errors."""

import time

import pytest
from live_helpers import SLOW, click, panel, wait_panel, wait_status

pytestmark = pytest.mark.browser


@pytest.mark.slow  # trains for a few seconds
def test_bigan_shows_its_codes_and_reconstructions(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="GANs").click()
    wait_panel(page, "gans-plot-main", "p.frames >= 1")
    assert not page.locator("#gans-plot-latent").is_visible()  # another GAN is picked: no encoder panels
    page.locator("#gans-model input").click()
    page.get_by_role("option", name="BiGAN — encoder + generator (ALI)").click()
    page.wait_for_selector("#gans-bigan-e_hidden", state="visible", timeout=SLOW)
    page.wait_for_selector("#gans-plot-latent", state="visible", timeout=SLOW)
    assert page.locator("#gans-plot-recon").is_visible()
    page.click("#gans-train")
    wait_panel(page, "gans-plot-latent", "p.names.includes('codes E(x) of the data')")
    time.sleep(3.0)
    click(page, "#gans-stop")
    wait_status(page, "gans", "stopped")
    page.wait_for_function("() => document.querySelector('#gans-info').innerText.includes('‖E(G(z)) − z‖')",
                           timeout=SLOW)

    latent = panel(page, "gans-plot-latent")
    assert latent["names"] == ["prior N(0, I): 1σ and 2σ circles", "codes E(x) of the data"]
    assert "Latent space" in latent["title"] and "‖E(G(z)) − z‖ =" in latent["title"]
    recon = panel(page, "gans-plot-recon")
    assert recon["names"] == ["data", "x → G(E(x))", "x (start)", "G(E(x))"]
    assert "‖G(E(x)) − x‖ =" in recon["title"]
    main = panel(page, "gans-plot-main")
    assert "D(x, E(x))" in main["title"]
    page.locator("#gans-plot-extra").scroll_into_view_if_needed()
    wait_panel(page, "gans-plot-extra", "p.names.some(n => n.startsWith('‖E(G(z)) − z‖'))")
    page.locator("#gans-plot-latent").scroll_into_view_if_needed()
    page.mouse.move(5, 5)  # off the panels: no hover toolbar over a title in the picture
    page.screenshot(path=str(artifacts / "bigan.png"), full_page=True)

    # back to another GAN: the encoder's panels go away
    page.locator("#gans-model input").click()
    page.get_by_role("option", name="GAN — non-saturating").click()
    page.wait_for_selector("#gans-plot-latent", state="hidden", timeout=SLOW)
