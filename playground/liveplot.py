"""Live panels in Gradio: static plot containers, and one *bus* per tab that feeds them.

Stock gr.Plot rebuilds its element and re-sends the whole figure on every update (zoom lost, the page
swamped: ../shared/GRADIO.md). Here a panel is a gr.HTML holding one empty div, never updated through
Gradio. The tab's bus (a gr.HTML showing the status line) runs ``assets/live.js``: it pulls one message
at a time for all panels of the tab through its server function ``pull`` (playground/channel.py), applies
it (canvas layers, then Plotly only where its part changed) and asks for the next one once it has painted.
plotly.min.js is served from the installed plotly package, live.js from assets/ (no CDN: hosted demos
and tests run offline).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re

import gradio as gr
import plotly

from .channel import Frame, LiveState, StaticSource, lookup, release_state

PLOTLY_JS = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
LIVE_JS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "live.js")


def _src(path: str) -> str:
    with open(path, "rb") as f:  # the content's hash in the URL: a browser never runs a stale copy
        tag = hashlib.sha1(f.read()).hexdigest()[:10]
    return f"/gradio_api/file={path}?v={tag}"


HEAD = f'<script src="{_src(PLOTLY_JS)}"></script><script src="{_src(LIVE_JS)}"></script>'
GONE = json.dumps({"gone": True, "status": "This page's session has ended (the server restarted or the page "
                                           "was idle too long): <b>reload the page</b>."})


def static_paths() -> list[str]:
    """Files the app must serve (pass to gr.set_static_paths before building the Blocks)."""
    return [PLOTLY_JS, LIVE_JS]


def live_panel(height: int = 430, elem_id: str | None = None, visible: bool = True) -> gr.HTML:
    """An empty plot container; the tab's bus draws into it."""
    return gr.HTML(value="", html_template=f"<div class='live-plot' style='height:{height}px;width:100%'></div>",
                   js_on_load=None, elem_id=elem_id, elem_classes=["live-plot-box"], min_height=height,
                   apply_default_css=False, visible=visible)


def text_block(text_html: str = "", elem_id: str | None = None) -> gr.HTML:
    """A block of text the bus rewrites every frame (plain HTML: no maths to typeset)."""
    return gr.HTML(value="", html_template=f"<div class='pg-text'>{_template_safe(text_html)}</div>",
                   js_on_load=None, elem_id=elem_id, apply_default_css=False)


def _template_safe(text: str) -> str:
    """gr.HTML templates are JS template strings: `$` and backticks must not start an expression."""
    return text.replace("\\", "&#92;").replace("`", "&#96;").replace("$", "&#36;")


async def pull(req: dict) -> str | None:
    """The page's request for the next frame: {token, have, visible, reset}; {token, idle: true} only
    says the page is still open (its tab is hidden: nothing to draw)."""
    req = req if isinstance(req, dict) else {}
    ch = lookup(req.get("token", ""))
    if ch is None:
        return GONE
    if req.get("idle"):
        ch.seen()
        return None
    return await ch.pull(req.get("have", -1), req.get("visible", ()) or (), req.get("reset", ()) or ())


def poke(req: dict) -> None:
    """The page's visible panels changed: end the waiting pull so the next one says which."""
    req = req if isinstance(req, dict) else {}
    ch = lookup(req.get("token", ""))
    if ch is not None:
        ch.poke()


def control(req: dict) -> bool:
    """A control the page sends straight to its run: {"token", "name": "stop"}, or {"token", "name": "set",
    "value": {"key", "value"}} for a live slider. They reach the training loop in milliseconds, where a
    gradio event would cost the page 100-300 ms of main thread (its bookkeeping over every component)."""
    req = req if isinstance(req, dict) else {}
    ch = lookup(req.get("token", ""))
    return ch is not None and ch.control(str(req.get("name", "")), req.get("value"))


def live_bus(area: str, panels: dict[str, str], status_html: str = "", elem_id: str | None = None,
             stop_id: str | None = None, live: dict[str, str] | None = None, train_id: str | None = None) -> gr.HTML:
    """The status line of a tab, and the loop that feeds its panels ({name: elem_id}). Its value is the
    visitor's channel token (set by a load event); until then it shows `status_html`. While a run goes, a
    click on `stop_id` sends "stop" straight to it (instead of a gradio event), and a change of a control in
    `live` ({elem_id: key}: sliders, checkboxes) sends "set" with its key and value. A click on `train_id` also
    sends "queued" (its gradio event goes on as well): a second gradio event on the same click would cost the first
    frame ~250 ms."""
    cfg = json.dumps({"area": area, "panels": panels, "stop": stop_id, "live": live or {}, "train": train_id})
    js = f"PGLive.attach(element, server, props, watch, {cfg});"
    return gr.HTML(value="", html_template=f"<div class='pg-status status-line'>{_template_safe(status_html)}</div>",
                   js_on_load=js, head=HEAD, server_functions=[pull, poke, control], elem_id=elem_id,
                   apply_default_css=False)


def escape(text: str) -> str:
    return html.escape(str(text), quote=False)


def inline_html(text: str) -> str:
    """A line of light markdown as HTML for a text block the frames rewrite: **bold**, _italic_, $math$
    (shown in italics, not typeset: it changes every frame), and "  \n" line breaks; the rest escaped."""
    out = escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"<i>\1</i>", out)
    out = re.sub(r"\$(.+?)\$", r"<i>\1</i>", out)
    return out.replace("  \n", "<br>")


class LiveArea:
    """A live area outside the family tabs' skeleton (the Compare tab, the EBM sampler sandbox): a bus, some
    panels placed by the caller, and a gr.State owning each visitor's channel."""

    def __init__(self, key: str, state_cls: type[LiveState] = LiveState, on_set=None):
        """on_set(state, {"key", "value"}): a live control's new value from the page (see live_bus)."""
        self.key = key
        self.on_set = on_set
        self.state = gr.State(state_cls, delete_callback=release_state)
        self.panel_ids: dict[str, str] = {}
        self.initial: dict[str, dict] = {}
        self.status_html = ""
        self.bus: gr.HTML | None = None

    def panel(self, name: str, height: int, elem_id: str, initial_fig: dict | None = None) -> gr.HTML:
        self.panel_ids[name] = elem_id
        if initial_fig is not None:
            self.initial[name] = initial_fig
        return live_panel(height=height, elem_id=elem_id)

    def status(self, status_html: str, elem_id: str, stop_id: str | None = None,
               live: dict[str, str] | None = None) -> gr.HTML:
        """The bus: call after every panel() (it needs their ids)."""
        self.status_html = status_html
        self.bus = live_bus(self.key, self.panel_ids, status_html, elem_id=elem_id, stop_id=stop_id, live=live)
        return self.bus

    def load_args(self) -> tuple:
        return self.on_load, [self.state], [self.bus]

    def on_load(self, st: LiveState, request: gr.Request):
        st.belongs_to(getattr(request, "session_hash", None))  # released with the visitor's other states
        if self.on_set is not None:
            st.channel.controls["set"] = lambda req: self.on_set(st, req)
        if not st.channel.has_source:
            st.channel.publish(StaticSource(Frame(dict(self.initial), self.status_html)))
        return st.channel.token
