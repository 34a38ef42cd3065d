"""The diffusion tab in headless Chromium: train DDPM, move the noise-level slider, stop, read the panels
(ODE vs ancestral trajectories, quality against steps, the likelihood's ODE error), screenshots."""

import time

import pytest
from live_helpers import SLOW, click, panel, wait_panel, wait_status

pytestmark = pytest.mark.browser


def plot(page, name):
    p = panel(page, f"diffusion-plot-{name}")
    return None if p is None else {"frames": p["frames"], "title": p["title"], "names": p["names"]}


def show(page, name):
    page.locator(f"#diffusion-plot-{name}").scroll_into_view_if_needed()


def wait_title(page, name, text, timeout=SLOW):
    show(page, name)
    wait_panel(page, f"diffusion-plot-{name}", "p.title.includes(arg)", timeout, arg=text)


@pytest.mark.slow
def test_diffusion_tab_trains_moves_t_and_stops(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Diffusion & flow matching").click()
    wait_panel(page, "diffusion-plot-noising", "p.frames >= 1")
    page.click("#diffusion-train")
    wait_title(page, "noising", "level 3")  # the slider's default level, with its t and the noising formula
    first = plot(page, "noising")
    t0 = time.time()
    time.sleep(4.0)
    second = plot(page, "noising")
    fps = (second["frames"] - first["frames"]) / (time.time() - t0)
    print(f"\ndiffusion tab: {fps:.2f} frames/s while training DDPM on 8 Gaussians")
    assert second["frames"] > first["frames"] and second["title"] != first["title"]  # it moves
    assert "running" in page.inner_text("#diffusion-status")
    slider = page.locator("#diffusion-level input[type=number]")
    slider.fill("11")
    slider.press("Enter")
    wait_title(page, "noising", "pure noise")
    names = plot(page, "noising")["names"]
    assert any("score" in n for n in names) and any("noised" in n for n in names)
    show(page, "paths")
    wait_title(page, "paths", "DDIM")
    assert any("ancestral" in n for n in plot(page, "paths")["names"])
    click(page, "#diffusion-stop")
    wait_status(page, "diffusion", "stopped")
    show(page, "quality")
    wait_panel(page, "diffusion-plot-quality", "p.names.some(n => n.includes('DDIM'))")
    assert {"ancestral (DDPM)", "DDIM", "ODE (Heun)"} <= set(plot(page, "quality")["names"])
    show(page, "curves")
    wait_title(page, "curves", "halving the ODE")
    slider.fill("0")  # stopped: moving the slider redraws from the last frame
    slider.press("Enter")
    wait_title(page, "noising", "the data end")
    time.sleep(1.0)  # the page paints the frame it holds
    page.screenshot(path=str(artifacts / "diffusion.png"), full_page=True)


@pytest.mark.slow
def test_flow_matching_reflow_straightens_its_paths(page, app_url, artifacts):
    """Flow matching with a reflow round: the trajectories panel sets the ODE paths against straight chords, and
    after the reflow step the one-step Euler sample is close to the many-step one (the quality panel)."""
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Diffusion & flow matching").click()
    page.locator("#diffusion-model input").click()
    page.get_by_role("option", name="Flow matching / rectified flow").click()
    reflow = page.locator("#diffusion-flow_matching-reflow_at input[type=number]")
    reflow.fill("600")
    reflow.press("Enter")
    page.click("#diffusion-train")
    wait_title(page, "paths", "straight chords")
    show(page, "curves")
    time.sleep(6.0)
    click(page, "#diffusion-stop")
    wait_status(page, "diffusion", "stopped")
    names = plot(page, "paths")["names"]
    assert "straight chord" in names and "ODE, Heun" in names
    show(page, "quality")
    wait_panel(page, "diffusion-plot-quality", "p.names.includes('Euler') && p.names.includes('Heun')")
    show(page, "noising")  # panels out of view are not drawn: back to the top for the final frame's screenshot
    wait_title(page, "main", "NLL")
    time.sleep(3.0)
    page.screenshot(path=str(artifacts / "diffusion-reflow.png"), full_page=True)
