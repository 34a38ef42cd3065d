"""A drawing pad in data coordinates: strokes drawn over the plot box become training points.

Like GAN Lab's "draw your own distribution": the pad shows the same [-4, 4]^2 box the plots use,
so what you draw is where the data will be. Its value is a JSON list of strokes, each a list of
[x1, x2] points in data coordinates; playground.datasets.points_from_strokes samples points along
them (a stroke dragged past the edge is clipped onto it; a lone dot with no spread is refused).
Built on gr.HTML (a canvas plus a little JavaScript), so it needs no extra package.
"""

from __future__ import annotations

import gradio as gr

from .datasets import PAD_BOX as BOX  # one box for the pad and for parse_strokes' edge check

_TEMPLATE = """
<div class="drawpad">
  <canvas class="dp-canvas" width="360" height="360"></canvas>
  <div class="dp-bar"><button type="button" class="dp-undo">Undo</button>
  <button type="button" class="dp-clear">Clear</button><span class="dp-info">draw strokes or click dots</span></div>
</div>
"""

_CSS = """
.drawpad { display: flex; flex-direction: column; gap: 6px; }
.dp-canvas { width: 100%; max-width: 360px; aspect-ratio: 1; border: 1px solid #d1d5db; border-radius: 4px;
             touch-action: none; cursor: crosshair; background: #fff; }
.dp-bar { display: flex; gap: 8px; align-items: center; font-size: 0.85em; color: #555; }
.dp-bar button { border: 1px solid #d1d5db; border-radius: 4px; padding: 2px 10px; background: #f9fafb; }
"""

_JS = """
const BOX = %BOX%;
const canvas = element.querySelector('.dp-canvas');
const ctx = canvas.getContext('2d');
const info = element.querySelector('.dp-info');
let strokes = [];
try { strokes = props.value ? JSON.parse(props.value) : []; } catch (e) { strokes = []; }
let current = null;
const W = canvas.width, H = canvas.height;
const toData = (px, py) => [(px / W * 2 - 1) * BOX, (1 - py / H * 2) * BOX];
const toPx = (x, y) => [(x / BOX + 1) / 2 * W, (1 - y / BOX) / 2 * H];
function paint() {
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = '#eee'; ctx.lineWidth = 1; ctx.fillStyle = '#999'; ctx.font = '10px sans-serif';
  for (let v = -BOX; v <= BOX; v += 1) {
    const [px] = toPx(v, 0), [, py] = toPx(0, v);
    ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, H); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(W, py); ctx.stroke();
  }
  ctx.strokeStyle = '#bbb';
  const [ox, oy] = toPx(0, 0);
  ctx.beginPath(); ctx.moveTo(ox, 0); ctx.lineTo(ox, H); ctx.moveTo(0, oy); ctx.lineTo(W, oy); ctx.stroke();
  ctx.fillText('x₁', W - 14, oy - 4); ctx.fillText('x₂', ox + 4, 12);
  ctx.strokeStyle = '#1f1f1f'; ctx.fillStyle = '#1f1f1f'; ctx.lineWidth = 3; ctx.lineCap = 'round';
  for (const s of strokes.concat(current ? [current] : [])) {
    if (s.length === 1) { const [px, py] = toPx(...s[0]); ctx.beginPath(); ctx.arc(px, py, 3, 0, 6.3); ctx.fill(); continue; }
    ctx.beginPath();
    s.forEach((p, i) => { const [px, py] = toPx(...p); i ? ctx.lineTo(px, py) : ctx.moveTo(px, py); });
    ctx.stroke();
  }
  info.textContent = strokes.length ? strokes.length + ' stroke' + (strokes.length > 1 ? 's' : '') : 'draw strokes or click dots';
}
function pos(ev) {
  const r = canvas.getBoundingClientRect();
  return toData((ev.clientX - r.left) / r.width * W, (ev.clientY - r.top) / r.height * H).map(v => Math.round(v * 1000) / 1000);
}
function commit() { props.value = strokes.length ? JSON.stringify(strokes) : ''; shown = props.value; trigger('change'); }
// a value set by the server (a shared link's drawing, a resumed run) repaints the pad
let shown = props.value;
watch('value', () => {
  if (props.value === shown) return;
  shown = props.value;
  try { strokes = shown ? JSON.parse(shown) : []; } catch (e) { strokes = []; }
  current = null;
  paint();
});
canvas.addEventListener('pointerdown', ev => { canvas.setPointerCapture(ev.pointerId); current = [pos(ev)]; paint(); });
canvas.addEventListener('pointermove', ev => { if (!current) return; current.push(pos(ev)); paint(); });
const finish = () => { if (!current) return; strokes.push(current); current = null; paint(); commit(); };
canvas.addEventListener('pointerup', finish);
canvas.addEventListener('pointercancel', finish);
element.querySelector('.dp-clear').addEventListener('click', () => { strokes = []; paint(); commit(); });
element.querySelector('.dp-undo').addEventListener('click', () => { strokes.pop(); paint(); commit(); });
paint();
""".replace("%BOX%", str(BOX))


def draw_pad(elem_id: str | None = None, visible: bool = True) -> gr.HTML:
    """The pad; its value (a JSON string of strokes in data coordinates, or "") is an input."""
    return gr.HTML(value="", html_template=_TEMPLATE, css_template=_CSS, js_on_load=_JS, elem_id=elem_id,
                   visible=visible, label="draw your data", apply_default_css=False)
