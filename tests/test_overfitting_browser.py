"""Overfitting in the browser (notes 3.2.5): MADE with 64 bins on 50 training points of two moons, every held-out
point kept: the held-out curve turns up, the likelihood panel stars its best, and "↩ Early stop" goes back."""

import time

import pytest
from live_helpers import SLOW, click, panel, wait_panel, wait_status

pytestmark = pytest.mark.browser


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


@pytest.mark.slow
def test_a_few_points_overfit_and_early_stopping_goes_back(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Autoregressive").click()
    page.locator("#autoregressive-model input").click()
    page.get_by_role("option", name="MADE (masked MLP)").click()
    page.locator("#autoregressive-dataset input").click()
    page.get_by_role("option", name="Two moons").first.click()
    set_number(page, "autoregressive-made-K", 64)
    set_number(page, "autoregressive-trainpoints", 50)
    time.sleep(0.5)
    page.click("#autoregressive-train")
    wait_status(page, "autoregressive", "running")
    page.locator("#autoregressive-plot-curves").scroll_into_view_if_needed()
    wait_panel(page, "autoregressive-plot-curves", "p.names.some(n => n.startsWith('held-out best'))")
    time.sleep(2.0)
    click(page, "#autoregressive-best")
    wait_status(page, "autoregressive", "early stopping: back at step")
    time.sleep(1.0)
    names = panel(page, "autoregressive-plot-curves")["names"]
    assert "held-out" in names and "train" in names
    page.screenshot(path=str(artifacts / "overfitting.png"), full_page=True)
