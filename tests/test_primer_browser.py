"""The "Generative vs discriminative" primer tab in headless Chromium: Fit, the panels, the results table,
the missing-coordinate slider, a bad seed's one-line message, and a screenshot."""

import pytest
from live_helpers import SLOW, click, panel, wait_panel, wait_status

pytestmark = pytest.mark.browser


def show(page, elem_id):
    page.locator(f"#{elem_id}").scroll_into_view_if_needed()


@pytest.mark.slow
def test_primer_tab_fits_and_draws(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Generative vs discriminative").click()
    wait_panel(page, "primer-plot-nb", "p.frames >= 1")  # the "press Fit" placeholders
    click(page, "#primer-fit")
    wait_status(page, "primer", "Fitted 4 models")
    for k in ("nb", "qda", "logreg", "mlp"):
        wait_panel(page, f"primer-plot-{k}", "p.title.includes('test accuracy')")
        assert {"p(y=1 | x)", "boundary p=½", "held-out y=1"} <= set(panel(page, f"primer-plot-{k}")["names"])
    table = page.inner_text("#primer-table")
    assert "held-out NLL" in table and "Gaussian naive Bayes" in table and "no p(x)" in table
    for k in ("nb", "qda"):
        show(page, f"primer-plot-px-{k}")
        wait_panel(page, f"primer-plot-px-{k}", "p.title.includes('NLL')")
        assert any(n.startswith("sampled") for n in panel(page, f"primer-plot-px-{k}")["names"])
    show(page, "primer-plot-slice")
    wait_panel(page, "primer-plot-slice", "p.title.includes('needs x₂')")
    slider = page.locator("#primer-x1 input[type=number]")
    slider.fill("1.5")
    slider.press("Enter")
    wait_panel(page, "primer-plot-slice", "p.title.includes('x₁ = 1.50')")
    assert "cannot answer without x₂" in page.inner_text("#primer-reading")
    page.locator("#primer-plot-nb").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "primer.png"), full_page=True)
    for k in ("Gaussian naive Bayes", "Gaussian QDA (full covariance)", "Logistic regression", "MLP classifier"):
        page.get_by_label(k).uncheck()
    click(page, "#primer-fit")
    wait_status(page, "primer", "Pick at least one model")
    assert "Traceback" not in page.inner_text("#primer-status")
