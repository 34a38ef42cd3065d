"""The GANs tab with CycleGAN picked, as a user sees it: pick the source domain, train, watch the map x -> G(x)
and the cycle x -> F(G(x)), set λ to 0 while it trains, stop."""

import time

import pytest
from live_helpers import SLOW, click, panel, wait_panel, wait_status

pytestmark = pytest.mark.browser


@pytest.mark.slow  # trains for a few seconds
def test_cyclegan_shows_its_map_and_its_cycle(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="GANs").click()
    wait_panel(page, "gans-plot-main", "p.frames >= 1")
    assert not page.locator("#gans-plot-translate").is_visible()  # another GAN is picked: no CycleGAN panels
    page.locator("#gans-model input").click()
    page.get_by_role("option", name="CycleGAN — translating across domains").click()
    page.wait_for_selector("#gans-cyclegan-source", state="visible", timeout=SLOW)
    page.wait_for_selector("#gans-plot-translate", state="visible", timeout=SLOW)
    assert page.locator("#gans-plot-cycle").is_visible() and not page.locator("#gans-plot-latent").is_visible()
    page.locator("#gans-cyclegan-source input").click()
    page.get_by_role("option", name="circles", exact=True).click()
    page.click("#gans-train")
    page.locator("#gans-plot-translate").scroll_into_view_if_needed()
    wait_panel(page, "gans-plot-translate", "p.names.includes('x → G(x)') && p.title.includes('circles →')")
    time.sleep(2.0)
    click(page, "#gans-stop")
    wait_status(page, "gans", "stopped")
    page.wait_for_function("() => document.querySelector('#gans-info').innerText.includes('cycle errors')",
                           timeout=SLOW)

    tr = panel(page, "gans-plot-translate")
    assert tr["names"] == ["source X (circles)", "data Y (8gaussians)", "x → G(x)", "x (start)", "G(x)"]
    assert "Translation x → G(x): circles → 8gaussians" in tr["title"]
    page.locator("#gans-plot-cycle").scroll_into_view_if_needed()
    wait_panel(page, "gans-plot-cycle", "p.names.includes('x → F(G(x))')")
    cyc = panel(page, "gans-plot-cycle")
    assert cyc["names"] == ["source X (circles)", "F(y), y ∈ data (D_X's fakes)", "x → F(G(x))", "x (start)",
                            "F(G(x))"]
    assert "Cycle in circles" in cyc["title"] and "‖·‖₁ =" in cyc["title"]
    assert "D_Y(y)" in panel(page, "gans-plot-main")["title"]
    page.locator("#gans-plot-extra").scroll_into_view_if_needed()
    wait_panel(page, "gans-plot-extra", "p.names.some(n => n.startsWith('‖F(G(x)) − x‖₁'))")
    page.locator("#gans-plot-translate").scroll_into_view_if_needed()
    page.mouse.move(5, 5)  # off the panels: no hover toolbar over a title in the picture
    page.screenshot(path=str(artifacts / "cyclegan.png"), full_page=True)

    # back to another GAN: the CycleGAN panels go away
    page.locator("#gans-model input").click()
    page.get_by_role("option", name="GAN — non-saturating").click()
    page.wait_for_selector("#gans-plot-translate", state="hidden", timeout=SLOW)
