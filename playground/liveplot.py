"""A Plotly plot that updates in place, keeping the user's zoom across live frames.

Stock gr.Plot rebuilds its element on every update, so zoom and pan are lost and `uirevision` has
no effect (../shared/GRADIO.md). Here a gr.HTML holds one div; its value is the figure's JSON, and
a watcher calls Plotly.react on the same div, which honours layout.uirevision. plotly.min.js is
served from the installed plotly package (no CDN: hosted demos and tests run offline).
"""

from __future__ import annotations

import os

import gradio as gr
import plotly

from . import plots

PLOTLY_JS = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
PLOTLY_SRC = f"/gradio_api/file={PLOTLY_JS}"

_JS = """
const div = element.querySelector('.live-plot');
const config = {responsive: true, displaylogo: false, scrollZoom: false,
                modeBarButtonsToRemove: ['select2d', 'lasso2d', 'toggleSpikelines']};
let last = null, dragging = false, pending = false;
// while the user drags (zoom box, pan) frames wait, so a redraw never fights the gesture
div.addEventListener('pointerdown', () => { dragging = true; }, true);
window.addEventListener('pointerup', () => {
  if (dragging) { dragging = false; if (pending) draw(); }
}, true);
function draw() {
  if (dragging) { pending = true; return; }
  pending = false;
  const v = props.value;
  if (!v || v === last) return;
  last = v;
  let fig;
  try { fig = JSON.parse(v); } catch (e) { return; }
  window.Plotly.react(div, fig.data, fig.layout, config);
  div.dataset.frames = String(Number(div.dataset.frames || 0) + 1);
}
function start() {
  if (!window.Plotly) { setTimeout(start, 50); return; }
  draw();
  watch('value', draw);
}
start();
"""


def static_paths() -> list[str]:
    """Files the app must serve (pass to gr.set_static_paths before building the Blocks)."""
    return [PLOTLY_JS]


def live_plot(fig: dict | None = None, height: int = 430, elem_id: str | None = None) -> gr.HTML:
    """A gr.HTML whose value is a figure JSON string (see playground.plots.to_json)."""
    value = plots.to_json(fig) if fig is not None else ""
    return gr.HTML(value=value, html_template=f"<div class='live-plot' style='height:{height}px;width:100%'></div>",
                   js_on_load=_JS, head=f'<script src="{PLOTLY_SRC}"></script>', elem_id=elem_id,
                   elem_classes=["live-plot-box"], min_height=height, apply_default_css=False)
