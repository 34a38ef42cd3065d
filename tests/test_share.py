"""Shareable settings: a link restores a tab's controls; the share button writes such a link."""

from urllib.parse import parse_qs, urlparse

import pytest
from live_helpers import SLOW, wait_status

pytestmark = pytest.mark.browser

QUERY = ("?tab=latent&dataset=moons&n=1500&noise=0.2&model=mog&K=5&covariance=diagonal&method=gradient"
         "&lr=0.02&batch=512&seed=3&K2=oops")


def value(page, elem_id):
    return page.locator(f"#{elem_id} input").first.input_value()


def test_link_restores_settings_and_share_round_trips(page, app_url):
    page.goto(app_url + "/" + QUERY.replace("&K2=oops", "&reg=5"))  # reg=5 is outside its range
    page.set_default_timeout(SLOW)
    wait_status(page, "latent", "from the link")
    assert "reg=5" in page.inner_text("#latent-status")  # refused, and said so
    assert value(page, "latent-mog-K") == "5"
    assert value(page, "latent-mog-covariance") == "diagonal"
    assert value(page, "latent-mog-method") == "gradient"
    assert value(page, "latent-npoints") == "1500"
    assert float(value(page, "latent-noise")) == pytest.approx(0.2)
    assert value(page, "latent-batch") == "512"
    assert float(value(page, "latent-lr")) == pytest.approx(-1.7, abs=0.03)  # log10(0.02)
    page.click("#latent-share")
    page.wait_for_function("() => { const t = document.querySelector('#latent-sharelink textarea, "
                           "#latent-sharelink input'); return t && t.value.startsWith('http'); }", timeout=SLOW)
    link = page.locator("#latent-sharelink textarea, #latent-sharelink input").first.input_value()
    q = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
    assert q["tab"] == "latent" and q["dataset"] == "moons" and q["K"] == "5"
    assert q["covariance"] == "diagonal" and q["batch"] == "512" and float(q["lr"]) == pytest.approx(0.02, rel=0.05)


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_a_link_naming_the_vae_without_settings_gets_its_usual_ones(page, app_url):
    """The latent tab's settings suit the mixture (full batch, lr 0.01); a link that names the VAE and says
    nothing of them gets the VAE's (batch 256, lr 3e-3), as picking it by hand does."""
    page.goto(app_url + "/?tab=latent&model=vae&dataset=banana")
    page.set_default_timeout(SLOW)
    wait_status(page, "latent", "from the link")
    assert value(page, "latent-batch") == "256"
    assert float(value(page, "latent-lr")) == pytest.approx(-2.52, abs=0.03)  # log10(3e-3)
    page.goto(app_url + "/?tab=latent&model=vae&batch=1024")
    wait_status(page, "latent", "from the link")
    assert value(page, "latent-batch") == "1024"  # what the link says wins


@pytest.mark.slow  # trains for a moment
def test_a_link_carries_a_drawing_and_the_share_button_writes_it_back(page, app_url, artifacts):
    """Drawn data travels in the link (issue 15): the pad shows the strokes, Train trains on them, and the share
    button writes a link that carries the same drawing."""
    import json

    from live_helpers import click

    from playground.runspec import RunSpec

    sketch = json.dumps([[[-2.0, -2.0], [-1.0, 0.5], [0.0, 2.0]], [[1.0, -2.0], [2.5, -0.5], [2.0, 1.5]], [[0.5, 0.5]]])
    q = RunSpec("mog", source="Draw", sketch=sketch, n_points=600).to_query("latent")
    page.goto(app_url + "/" + q)
    page.set_default_timeout(SLOW)
    wait_status(page, "latent", "from the link")
    assert page.locator("#latent-source input[value='Draw']").is_checked()
    page.wait_for_function("() => document.querySelector('#latent-sketch .dp-info').innerText === '3 strokes'")
    click(page, "#latent-train")
    wait_status(page, "latent", "running")
    click(page, "#latent-stop")
    wait_status(page, "latent", "stopped")
    page.locator("#latent-sketch").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "share-drawing.png"))
    page.click("#latent-share")
    page.wait_for_function("() => { const t = document.querySelector('#latent-sharelink textarea, "
                           "#latent-sharelink input'); return t && t.value.startsWith('http'); }", timeout=SLOW)
    link = page.locator("#latent-sharelink textarea, #latent-sharelink input").first.input_value()
    got = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
    assert got["draw"] == {k: v[0] for k, v in parse_qs(q[1:]).items()}["draw"]
