"""Every tab as a visitor first sees it, on a laptop (1280×800) and on a phone (390 px): a screenshot of each in
test-artifacts/ to look at, and what would read badly checked — the page scrolling sideways, a panel title cut
off at its panel's edge, a control's label cut off."""

import pytest
from live_helpers import SLOW

from playground.tabs import TABS

pytestmark = pytest.mark.browser

SIZES = {"laptop": (1280, 800), "phone": (390, 844)}

# the widest thing on the page beyond the viewport (px), and panel titles wider than their panel
OVERFLOW_JS = """() => {
  const doc = document.documentElement;
  const wide = doc.scrollWidth - doc.clientWidth;
  const clipped = [];
  for (const t of document.querySelectorAll('.js-plotly-plot .gtitle')) {
    const panel = t.closest('.js-plotly-plot');
    if (!panel || !panel.offsetParent) continue;
    const a = t.getBoundingClientRect(), b = panel.getBoundingClientRect();
    if (a.width > 0 && a.right > b.right + 2) clipped.push(t.textContent.slice(0, 60));
  }
  return {wide, clipped};
}"""


@pytest.mark.slow  # loads every tab twice
@pytest.mark.parametrize("size", list(SIZES))
def test_every_tab_fits_its_screen(browser, app_url, artifacts, size):
    width, height = SIZES[size]
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(SLOW)
    problems = []
    try:
        for tab in TABS:
            page.goto(f"{app_url}/?tab={tab}")
            first = page.locator(f"#{tab}-plot-main .js-plotly-plot, #{tab}-plot-samples .js-plotly-plot").first
            if page.locator(f"#{tab}-plot-main, #{tab}-plot-samples").count():
                first.wait_for(state="attached", timeout=SLOW)
                page.locator(f"#{tab}-plot-main, #{tab}-plot-samples").first.scroll_into_view_if_needed()
                page.wait_for_timeout(800)  # the panel's first paint
            else:
                page.wait_for_timeout(1500)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(artifacts / f"tab-{tab}-{size}.png"))
            got = page.evaluate(OVERFLOW_JS)
            if got["wide"] > 2:
                problems.append(f"{tab}: the page scrolls sideways by {got['wide']} px")
            if got["clipped"]:
                problems.append(f"{tab}: titles cut off: {got['clipped']}")
    finally:
        ctx.close()
    assert not problems, "; ".join(problems)


def _trained_on_a_phone(browser, app_url, tab: str):
    """A 390 px page of `tab` whose model trained for a moment and stopped: (context, page); close the context."""
    from live_helpers import click, wait_panel, wait_status

    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.set_default_timeout(SLOW)
    page.goto(f"{app_url}/?tab={tab}")
    page.locator(f"#{tab}-plot-main").scroll_into_view_if_needed()
    wait_panel(page, f"{tab}-plot-main", "p.frames >= 1")
    click(page, f"#{tab}-train")
    wait_panel(page, f"{tab}-plot-main", "p.title.includes('step')")
    click(page, f"#{tab}-stop")
    wait_status(page, tab, "stopped")
    return ctx, page


@pytest.mark.slow  # trains for a moment
def test_long_live_titles_wrap_on_a_phone(browser, app_url, artifacts):
    """A training panel's title ("Model density p(x) — step 1,234 — ∫p dx on the grid ≈ 1.000") is wrapped by the
    server for a half-page panel; on a phone the page wraps it again rather than cut it off."""
    ctx, page = _trained_on_a_phone(browser, app_url, "flows")
    try:
        for name in ("main", "samples", "layers", "latent"):
            page.locator(f"#flows-plot-{name}").scroll_into_view_if_needed()
            page.wait_for_timeout(600)
        got = page.evaluate(OVERFLOW_JS)
        page.locator("#flows-plot-main").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "tab-flows-phone-trained.png"))
        lines = page.evaluate("() => document.querySelectorAll('#flows-plot-main .gtitle tspan.line').length")
    finally:
        ctx.close()
    assert got["wide"] <= 2 and not got["clipped"], got
    assert lines >= 2  # the density title did not fit on one line of a phone's panel


# a panel's fit to its width (assets/live.js, Panel.fitFigure/refit): the plot area against the panel, and any
# legend above the plot that runs into the title
FIT_JS = """(id) => {
  const d = document.querySelector('#' + id + ' .live-plot'), fl = d && d._fullLayout;
  if (!fl || !fl.xaxis) return null;
  const legend = d.querySelector('.legend'), title = d.querySelector('.g-gtitle .gtitle');
  const gap = legend && title ? legend.getBoundingClientRect().top - title.getBoundingClientRect().bottom : null;
  const svg = d.querySelector('.main-svg').getBoundingClientRect().height;
  return {width: d.clientWidth, plotW: fl.xaxis._length, plotH: fl.yaxis._length, areaH: fl._size.h, gap,
          box: Math.round(d.getBoundingClientRect().height), svg: Math.round(svg)};
}"""


@pytest.mark.slow  # trains for a moment
def test_square_panels_fill_a_phone(browser, app_url, artifacts):
    """On a phone the density's colour bar goes under the plot (beside it, it took a quarter of the width), the
    square x₁/x₂ box gives back the height it would leave empty above and below it, the panel's box follows the
    figure's height, and a legend that wraps onto more rows moves the plot down instead of running into the
    title."""
    ctx, page = _trained_on_a_phone(browser, app_url, "latent")
    try:
        page.locator("#latent-plot-main").scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        main = page.evaluate(FIT_JS, "latent-plot-main")
        page.screenshot(path=str(artifacts / "tab-latent-phone-trained.png"))
        page.locator("#latent-plot-samples").scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        samples = page.evaluate(FIT_JS, "latent-plot-samples")
    finally:
        ctx.close()
    for got in (main, samples):
        assert got is not None
        assert got["plotW"] >= 0.75 * got["width"], got   # no colour bar beside the plot
        assert got["areaH"] - got["plotH"] <= 8, got        # no empty band above and below the square box
        assert abs(got["box"] - got["svg"]) <= 2, got       # the box is as tall as the figure, no more, no less
        assert got["gap"] is None or got["gap"] >= 2, got   # the legend clears the title


@pytest.mark.slow
def test_a_legend_beside_the_plot_goes_under_it_on_a_phone(browser, app_url, artifacts):
    """The primer's slice panel keeps its six-entry legend beside the plot on a laptop; on a phone, beside it the
    legend took 40% of the width: there it goes under the plot, inside the panel."""
    from live_helpers import click, wait_panel

    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    page.set_default_timeout(SLOW)
    try:
        page.goto(f"{app_url}/?tab=primer")
        page.locator("#primer-plot-slice").scroll_into_view_if_needed()  # a panel out of view is not drawn
        wait_panel(page, "primer-plot-slice", "p.frames >= 1")  # the "press Fit" placeholder
        click(page, "#primer-fit")
        page.locator("#primer-plot-slice").scroll_into_view_if_needed()
        wait_panel(page, "primer-plot-slice", "p.title.includes('needs x₂')")
        page.wait_for_timeout(1500)
        got = page.evaluate("""(id) => {
          const d = document.querySelector('#' + id + ' .live-plot'), fl = d._fullLayout;
          const lg = d.querySelector('.legend').getBoundingClientRect();
          const svg = d.querySelector('.main-svg').getBoundingClientRect();
          return {width: d.clientWidth, plotW: fl.xaxis._length, plotBottom: svg.top + fl._size.t + fl._size.h,
                  legendTop: lg.top, legendBottom: lg.bottom, svgBottom: svg.bottom};
        }""", "primer-plot-slice")
        page.locator("#primer-plot-slice").screenshot(path=str(artifacts / "primer-slice-phone.png"))
    finally:
        ctx.close()
    assert got["plotW"] >= 0.75 * got["width"], got
    assert got["legendTop"] > got["plotBottom"] and got["legendBottom"] <= got["svgBottom"] + 1, got
