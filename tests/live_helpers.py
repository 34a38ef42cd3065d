"""What browser tests read of the live panels (assets/live.js): a panel's traces, Plotly's and the
canvas's alike, its title, zoom and frame count, through window.PGLive; and the usual waits.

Panels are found by the elem_id of their container, e.g. "latent-plot-main"."""

from __future__ import annotations

SLOW = 90000  # ms: a loaded 2-core machine can take long to draw a frame or to answer a click


def panel(page, elem_id: str) -> dict | None:
    """{frames, title, xrange, yrange, ntraces, names, types, canvas, traces, zsum, annotations}, or None
    before the panel's first figure."""
    return page.evaluate("(id) => window.PGLive ? PGLive.inspect(id) : null", elem_id)


def trace(page, elem_id: str, prefix: str) -> dict | None:
    """The first trace whose name starts with `prefix`: {name, type, x, y, text}, or for a heatmap drawn
    on the canvas {name, type, z, nx, ny} (z row by row, values decoded)."""
    return page.evaluate("([id, p]) => window.PGLive ? PGLive.trace(id, p) : null", [elem_id, prefix])


def wait_panel(page, elem_id: str, condition: str, timeout: int = SLOW, arg=None) -> None:
    """Wait until `condition` (a JS expression over `p`, the panel's inspect() record, and `arg`) holds.
    On a timeout the error says what the panel showed last (without its per-trace records)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            f"([id, arg]) => {{ const p = window.PGLive && PGLive.inspect(id); return !!p && ({condition}); }}",
            arg=[elem_id, arg], timeout=timeout)
    except PlaywrightTimeout as e:
        last = panel(page, elem_id)
        if last:
            last.pop("traces", None)
        raise PlaywrightTimeout(f"{e.message}\n{elem_id}: waited for {condition} (arg {arg!r}); it shows {last}") from e


def wait_frames(page, elem_id: str, more: int, timeout: int = SLOW) -> None:
    """Wait until the panel has been drawn `more` more times."""
    n = (panel(page, elem_id) or {}).get("frames", 0)
    wait_panel(page, elem_id, "p.frames >= arg", timeout, n + more)


def wait_moves(page, elem_id: str, more: int, timeout: int = SLOW) -> list[str]:
    """Wait until the panel's title (which carries the step) has changed `more` times; returns the titles.
    Unlike redraws, titles keep changing after a model has converged: then a frame moves only the step."""
    titles = [(panel(page, elem_id) or {}).get("title", "")]
    for _ in range(more):
        wait_panel(page, elem_id, "p.title !== arg", timeout, titles[-1])
        titles.append(panel(page, elem_id)["title"])
    return titles


def box_zoom(page, elem_id: str, start: float = 0.3, end: float = 0.6) -> None:
    """Zoom as a user does: drag a box across the plot area, from `start` to `end` of its width and height."""
    drag = page.locator(f"#{elem_id} .nsewdrag").first.bounding_box()
    page.mouse.move(drag["x"] + drag["width"] * start, drag["y"] + drag["height"] * start)
    page.mouse.down()
    page.mouse.move(drag["x"] + drag["width"] * end, drag["y"] + drag["height"] * end, steps=8)
    page.mouse.up()


def has_type(elem_id: str, kind: str) -> str:
    return f"p.types.includes('{kind}')"


def status(page, key: str) -> str:
    return page.inner_text(f"#{key}-status")


def wait_status(page, key: str, text: str, timeout: int = SLOW) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("([k, t]) => { const e = document.getElementById(k + '-status');"
                               " return !!e && e.innerText.includes(t); }", arg=[key, text], timeout=timeout)
    except PlaywrightTimeout as e:
        now = page.evaluate("(k) => { const e = document.getElementById(k + '-status'); return e && e.innerText; }",
                            key)
        raise PlaywrightTimeout(f"{e.message}\n#{key}-status: waited for {text!r}; it says {now!r}") from e


def click(page, selector: str) -> float:
    """A click dispatched in the page (as a user's, without Playwright's wait for an idle page); returns
    the page's clock at the click."""
    return page.evaluate("(s) => { const t = performance.now(); document.querySelector(s).click(); return t; }",
                         selector)


def step_of(text: str) -> int:
    """The step a status line or a title shows ("step 1,234")."""
    import re

    m = re.findall(r"step\s+([\d,]+)", text)
    return int(m[-1].replace(",", "")) if m else -1
