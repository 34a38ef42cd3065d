"""The GANs tab as a user sees it: headless Chromium trains, steps D and G by hand, stops."""

import json
import re
import time

import pytest

pytestmark = pytest.mark.browser

STATE_JS = """(sel) => { const d = document.querySelector(sel);
    if (!d || !d.data) return null;
    const h = d._fullData.find(t => t.type === 'heatmap');
    let s = 0; if (h) { for (const row of h.z) for (const v of row) s += (v || 0) * (v || 0); }
    const f = d._fullData.find(t => t.name === 'tracked fakes');
    return {frames: Number(d.dataset.frames || 0), zsum: s, title: d.layout.title.text,
            colorbar: h ? h.colorbar.title.text : null, ntraces: d.data.length,
            fakes: f ? Array.from(f.x).slice(0, 20).concat(Array.from(f.y).slice(0, 20)) : null}; }"""


def state(page, panel="main"):
    return page.evaluate(STATE_JS, f"#gans-plot-{panel} .live-plot")


def step_of(page) -> int:
    return int(re.search(r"step ([\d,]+)", page.inner_text("#gans-status")).group(1).replace(",", ""))


def wait_info(page, text):
    page.wait_for_function(f"() => document.querySelector('#gans-info').innerText.includes({json.dumps(text)})",
                           timeout=30000)


def wait_heatmap(page):
    page.wait_for_function(
        "() => { const d = document.querySelector('#gans-plot-main .live-plot');"
        " return d && d.data && d.data.some(t => t.type === 'heatmap'); }", timeout=30000)


def stop(page):
    page.click("#gans-stop", timeout=60000)  # a loaded machine can keep the page busy for a while
    page.wait_for_function("() => document.querySelector('#gans-status').innerText.includes('stopped')",
                           timeout=30000)


def test_gan_tab_trains_steps_by_hand_and_stops(page, app_url, artifacts):
    page.goto(app_url)
    page.get_by_role("tab", name="GANs").click()
    page.wait_for_selector("#gans-plot-main .js-plotly-plot", timeout=60000)
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
    page.click("#gans-dstep", timeout=60000)
    wait_info(page, "one D step")
    after_d = state(page)
    assert step_of(page) == step0  # a D step alone is not a training iteration
    assert after_d["fakes"] == before["fakes"]  # the generator did not move...
    assert after_d["zsum"] != before["zsum"]  # ...the discriminator did
    page.click("#gans-gstep", timeout=60000)
    wait_info(page, "one G step")
    after_g = state(page)
    assert step_of(page) == step0 + 1 and after_g["fakes"] != after_d["fakes"]
    page.click("#gans-both", timeout=60000)
    wait_info(page, "D + G step")
    assert step_of(page) == step0 + 2
    assert state(page, "grad")["ntraces"] >= 1 and state(page, "samples")["ntraces"] >= 4
    page.screenshot(path=str(artifacts / "gans.png"), full_page=True)

    # another objective: WGAN-GP's heatmap is a critic value, its estimate a critic gap
    page.locator("#gans-model input").click()
    page.get_by_role("option", name="WGAN-GP — gradient penalty").click()
    page.wait_for_selector("#gans-wgan_gp-gp_weight", state="visible", timeout=10000)
    page.click("#gans-train")
    page.wait_for_function("() => document.querySelector('#gans-info').innerText.includes('critic gap')",
                           timeout=60000)
    time.sleep(1.5)
    stop(page)
    assert state(page)["colorbar"] == "critic f(x)"
    page.screenshot(path=str(artifacts / "gans-wgan-gp.png"), full_page=True)
