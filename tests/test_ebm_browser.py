"""The Energy-based models tab in headless Chromium: train, watch the MCMC chains move between
frames, stop; score arrows for score matching; the sampler sandbox's chains."""

import re
import time

import pytest
from live_helpers import SLOW, click, panel, trace, wait_frames, wait_panel, wait_status

pytestmark = pytest.mark.browser


def state(page, elem_id):
    """A panel's frames, title, trace names, and the chain heads' x then y (None without them)."""
    p = panel(page, elem_id)
    if p is None:
        return None
    h = trace(page, elem_id, "chain heads") if "chain heads" in p["names"] else None
    return {"frames": p["frames"], "title": p["title"], "names": p["names"],
            "heads": list(h["x"]) + list(h["y"]) if h else None}


def open_tab(page, url):
    page.set_default_timeout(SLOW)
    page.goto(url)
    page.get_by_role("tab", name="Energy-based models").click()
    wait_panel(page, "ebm-plot-main", "p.frames >= 1")


def wait_for_heads(page, elem_id):
    wait_panel(page, elem_id, "p.names.includes('chain heads')")


def wait_for_frames(page, elem_id, more: int):
    """Until `more` new frames have been drawn (no timing is asserted: a loaded machine is slow)."""
    wait_frames(page, elem_id, more)
    return state(page, elem_id)


def moved(a, b):
    return max(abs(u - v) for u, v in zip(a, b)) > 1e-3


def test_ebm_tab_trains_with_chains_moving_and_stops(page, app_url, artifacts):
    open_tab(page, app_url)
    page.click("#ebm-train")
    wait_for_heads(page, "ebm-plot-main")
    first = state(page, "ebm-plot-main")
    second = wait_for_frames(page, "ebm-plot-main", 2)
    assert second["title"] != first["title"]  # the step in the title moves
    assert len(second["heads"]) == 16 and moved(first["heads"], second["heads"])  # the 8 chains moved
    click(page, "#ebm-stop")
    wait_status(page, "ebm", "stopped")
    time.sleep(0.5)
    status = page.inner_text("#ebm-status")
    # Z is summed over the support box; the readout is the mass inside the plot box, which can fall short of 1
    mass = re.search(r"∫p on grid ≈ ([\d.]+)", status)
    assert "held-out NLL" in status and mass and 0.5 < float(mass.group(1)) <= 1.0005, status
    stopped = state(page, "ebm-plot-main")
    assert "energy −f(x)" in stopped["names"] and any("MCMC chains" in n for n in stopped["names"])
    page.locator("#ebm-plot-samples").scroll_into_view_if_needed()
    wait_panel(page, "ebm-plot-samples", "p.frames >= 1")
    dens = state(page, "ebm-plot-samples")
    assert "negatives of the last update" in dens["names"]
    page.screenshot(path=str(artifacts / "ebm.png"), full_page=True)


def test_score_matching_shows_the_score_field(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator("#ebm-model input").click()
    page.get_by_role("option", name="EBM: score matching").click()
    page.click("#ebm-train")
    wait_panel(page, "ebm-plot-main", "p.names.some(n => n.startsWith('score'))")
    time.sleep(1.0)
    click(page, "#ebm-stop")
    wait_status(page, "ebm", "stopped")
    page.screenshot(path=str(artifacts / "ebm-score-matching.png"))
    page.get_by_label("off").check()  # the score arrows option turns them off
    wait_panel(page, "ebm-plot-main", "!p.names.some(n => n.startsWith('score'))")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_sampler_sandbox_runs_chains_on_a_target(page, app_url, artifacts):
    open_tab(page, app_url)
    page.locator("#ebm-sb-target input").click()
    page.get_by_role("option", name="Donut").click()
    page.get_by_label("Metropolis–Hastings").check()
    page.locator("#ebm-sb-plot").scroll_into_view_if_needed()  # panels out of view are not drawn
    page.click("#ebm-sb-run")
    wait_for_heads(page, "ebm-sb-plot")
    a = state(page, "ebm-sb-plot")
    b = wait_for_frames(page, "ebm-sb-plot", 3)
    assert moved(a["heads"], b["heads"])
    click(page, "#ebm-sb-stop")  # straight to the run, without waiting for the page to be idle
    page.wait_for_function("() => document.querySelector('#ebm-sb-info').innerText.includes('stopped')")
    time.sleep(1.0)
    info = page.inner_text("#ebm-sb-info")
    assert "Metropolis–Hastings" in info and "acceptance" in info and "energy distance" in info
    frozen = state(page, "ebm-sb-plot")["frames"]
    time.sleep(1.0)
    assert state(page, "ebm-sb-plot")["frames"] == frozen  # Stop stopped the loop
    page.locator("#ebm-sb-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ebm-sandbox.png"))
