"""The GANs tab as a user sees it: headless Chromium trains, steps D and G by hand, stops."""

import json
import re
import time

import pytest
from live_helpers import SLOW, click, panel, trace, wait_panel, wait_status

pytestmark = pytest.mark.browser


def state(page, name="main"):
    """A panel's frames, title and number of traces; for its heatmap the sum of z² (values decoded from
    the canvas layer) and its colour bar's title; the first 20 x and 20 y of the tracked fakes."""
    pid = f"gans-plot-{name}"
    p = panel(page, pid)
    if p is None:
        return None
    h = next((t for t in p["traces"] if t["type"] == "heatmap"), None)
    s = 0.0
    if h:
        s = sum((v or 0) * (v or 0) for v in trace(page, pid, h["name"])["z"])
    f = trace(page, pid, "tracked fakes") if "tracked fakes" in p["names"] else None
    return {"frames": p["frames"], "zsum": s, "title": p["title"], "colorbar": h["colorbar"] if h else None,
            "ntraces": p["ntraces"], "fakes": list(f["x"])[:20] + list(f["y"])[:20] if f else None}


def step_of(page) -> int:
    return int(re.search(r"step ([\d,]+)", page.inner_text("#gans-status")).group(1).replace(",", ""))


def wait_info(page, text):
    page.wait_for_function(f"() => document.querySelector('#gans-info').innerText.includes({json.dumps(text)})",
                           timeout=SLOW)


def by_hand(page, button, info, frames_before):
    """Press a step button; wait for its line under the buttons and for the frame it draws."""
    page.click(button)
    wait_info(page, info)
    wait_panel(page, "gans-plot-main", "p.frames > arg", arg=frames_before)


def wait_heatmap(page):
    wait_panel(page, "gans-plot-main", "p.types.includes('heatmap')")


def stop(page):
    click(page, "#gans-stop")  # straight to the run: a loaded machine can keep the page busy for a while
    wait_status(page, "gans", "stopped")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_gan_tab_trains_steps_by_hand_and_stops(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="GANs").click()
    wait_panel(page, "gans-plot-main", "p.frames >= 1")
    assert not page.locator("#gans-lr").is_visible()  # one learning rate per player instead
    assert page.locator("#gans-gan_minimax-lr_g").is_visible()
    page.click("#gans-train")
    wait_heatmap(page)
    assert "running" in page.inner_text("#gans-status")
    a = state(page)
    time.sleep(3.0)
    b = state(page)
    fps = (b["frames"] - a["frames"]) / 3.0
    (artifacts / "gans-frames.json").write_text(json.dumps({"frames_per_second": fps}))
    assert b["frames"] >= a["frames"] + 3, (a, b)  # several frames per second
    assert b["title"] != a["title"] and "D(x)" in b["colorbar"]
    info = page.inner_text("#gans-info")
    assert "No density" in info and "modes covered" in info
    stop(page)
    time.sleep(0.5)

    before, step0 = state(page), step_of(page)
    assert len(before["fakes"]) == 40 and all(isinstance(v, float) for v in before["fakes"])
    by_hand(page, "#gans-dstep", "one D step", before["frames"])
    after_d = state(page)
    assert step_of(page) == step0  # a D step alone is not a training iteration
    assert after_d["fakes"] == before["fakes"]  # the generator did not move...
    assert after_d["zsum"] != before["zsum"]  # ...the discriminator did
    by_hand(page, "#gans-gstep", "one G step", after_d["frames"])
    after_g = state(page)
    assert step_of(page) == step0 + 1 and after_g["fakes"] != after_d["fakes"]
    by_hand(page, "#gans-both", "D + G step", after_g["frames"])
    assert step_of(page) == step0 + 2
    for name in ("grad", "samples"):
        page.locator(f"#gans-plot-{name}").scroll_into_view_if_needed()
        wait_panel(page, f"gans-plot-{name}", "p.frames >= 1")
    assert state(page, "grad")["ntraces"] >= 1 and state(page, "samples")["ntraces"] >= 4
    page.screenshot(path=str(artifacts / "gans.png"), full_page=True)

    # another objective: WGAN-GP's heatmap is a critic value, its estimate a critic gap
    page.locator("#gans-model input").click()
    page.get_by_role("option", name="WGAN-GP — gradient penalty").click()
    page.wait_for_selector("#gans-wgan_gp-gp_weight", state="visible", timeout=SLOW)
    page.click("#gans-train")
    wait_info(page, "critic gap")
    time.sleep(1.5)
    stop(page)
    page.locator("#gans-plot-main").scroll_into_view_if_needed()
    wait_panel(page, "gans-plot-main", "p.frames >= 1")
    assert state(page)["colorbar"] == "critic f(x)"
    page.screenshot(path=str(artifacts / "gans-wgan-gp.png"), full_page=True)
