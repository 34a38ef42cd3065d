"""Recording a training run's frames and exporting them for slides.

A :class:`Recorder` keeps a bounded, evenly spread record of one panel's figures over a run (figure dicts
as built by playground.plots / playground.views, stored as compact JSON). The record exports as

* :func:`to_html`: one self-contained HTML file (plotly.js inlined, no network) that replays the run as
  a Plotly animation with a Play/Pause button and a "step" slider;
* :func:`to_gif`: an animated GIF drawn with Pillow alone (heatmaps, markers, lines, title, ticks) —
  a rough but faithful rendering, for slides that cannot embed HTML;
* :func:`to_mp4`: the same drawings as an H.264 video (the optional imageio-ffmpeg package), a tenth of the
  GIF's size or less;

and :func:`curves_csv` writes a Snapshot's recorded curves as one CSV table.

This module imports numpy, Pillow (for the GIF and the MP4's frames) and playground.plots only (and
imageio-ffmpeg for an MP4, when asked for one): no torch, no gradio.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from . import plots

__all__ = ["Recorder", "VideoUnavailable", "curves_csv", "to_gif", "to_html", "to_mp4", "video_available"]


# --- the record ----------------------------------------------------------------------------------------

class Recorder:
    """A bounded record of one panel's figures over a run, evenly decimated.

    Every ``interval``-th call of :meth:`add` is kept (counting calls from 0, so the first frame is always
    kept). The latest frame is always part of :attr:`frames` (held in a slot of its own when it does not
    fall on the interval). When more than ``max_frames`` frames would be held, every other kept frame is
    dropped and the interval doubles, so the frames stay evenly spread over the whole run and memory stays
    bounded for any run length (``max_frames`` figures at most). Figures are stored as
    compact JSON strings (:func:`playground.plots.to_json`): small, and immune to later mutation of the
    dicts and arrays the caller passed in.
    """

    def __init__(self, max_frames: int = 60):
        if max_frames < 2:
            raise ValueError("max_frames must be at least 2 (the first and the latest frame)")
        self.max_frames = int(max_frames)
        self.clear()

    def clear(self) -> None:
        self._kept: list[tuple[int, str]] = []  # (step, JSON) of calls 0, interval, 2 * interval, ...
        self._latest: tuple[int, str] | None = None  # the last call, when it is not in _kept
        self._calls = 0
        self.interval = 1

    def add(self, step: int, figure: dict) -> None:
        """Record `figure` (one panel's figure dict) as shown at training step `step`."""
        item = (int(step), plots.to_json(figure))
        i = self._calls
        self._calls += 1
        if i % self.interval == 0:
            self._kept.append(item)
            self._latest = None
        else:
            self._latest = item
        while len(self) > self.max_frames:
            # kept holds calls 0, k, 2k, ...: its even positions are the multiples of 2k
            last = self._kept[-1]
            self._kept = self._kept[::2]
            self.interval *= 2
            if self._latest is None and self._kept[-1] is not last:
                self._latest = last  # the latest frame stays, off the new interval

    @property
    def frames(self) -> list[tuple[int, dict]]:
        """The kept (step, figure dict) pairs in the order recorded, the latest frame last. The dicts are
        fresh copies (decoded from JSON: arrays appear as plotly.js typed-array specs, {dtype, bdata})."""
        items = self._kept + ([self._latest] if self._latest is not None else [])
        return [(s, json.loads(j)) for s, j in items]

    def nbytes(self) -> int:
        """Characters of JSON held (the figures' memory, give or take the string headers)."""
        return sum(len(j) for _, j in self._kept) + (len(self._latest[1]) if self._latest else 0)

    def __len__(self) -> int:
        return len(self._kept) + (self._latest is not None)


# --- HTML ----------------------------------------------------------------------------------------------

FRAME_MS = 150


def plotly_js() -> str:
    """The plotly.min.js bundled with the plotly Python package (what the exported HTML inlines)."""
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_text(encoding="utf-8")


def _script_safe(js: str) -> str:
    """JavaScript source that cannot end the <script> element it is inlined in."""
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)


def _frame_layout(layout: dict) -> dict:
    """What a Plotly frame carries of a figure's layout: all of it but what the animation owns."""
    return {k: v for k, v in layout.items() if k not in ("sliders", "updatemenus", "height", "width")}


def to_html(frames, title: str) -> str:
    """One self-contained HTML page replaying `frames` ([(step, figure dict)], e.g. Recorder.frames) as a
    Plotly animation: the first frame as the figure, every frame as a Plotly frame named str(step)
    (data and layout, so titles carrying the step change), a Play/Pause button and a "step" slider.
    plotly.js is inlined, so the page works offline. Frames redraw fully (`redraw: true`): heatmaps change."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to export")
    first = frames[0][1]
    layout = dict(first.get("layout") or {})
    anim = {"mode": "immediate", "fromcurrent": True, "transition": {"duration": 0},
            "frame": {"duration": FRAME_MS, "redraw": True}}
    margin = dict(layout.get("margin") or {})
    margin["b"] = max(int(margin.get("b", 45)), 45) + 90  # room for the slider and the button under the axis
    layout["margin"] = margin
    layout["height"] = int(layout.get("height", 450)) + 90
    layout.pop("uirevision", None)
    layout["updatemenus"] = [{
        "type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "xanchor": "left",
        "y": 0, "yanchor": "top", "pad": {"t": 70, "r": 10},
        "buttons": [{"label": "▶ Play", "method": "animate", "args": [None, anim]},
                    {"label": "❚❚ Pause", "method": "animate",
                     "args": [[None], {"mode": "immediate", "transition": {"duration": 0},
                                       "frame": {"duration": 0, "redraw": False}}]}]}]
    layout["sliders"] = [{
        "active": 0, "x": 0.18, "len": 0.82, "xanchor": "left", "y": 0, "yanchor": "top", "pad": {"t": 55},
        "currentvalue": {"prefix": "step ", "visible": True, "xanchor": "right"},
        "transition": {"duration": 0},
        "steps": [{"label": f"{s:,}", "method": "animate",
                   "args": [[str(s)], {"mode": "immediate", "transition": {"duration": 0},
                                       "frame": {"duration": 0, "redraw": True}}]} for s, _ in frames]}]
    pframes = [{"name": str(s), "data": fig.get("data", []), "layout": _frame_layout(fig.get("layout") or {})}
               for s, fig in frames]
    spec = {"data": first.get("data", []), "layout": layout, "frames": pframes}
    body = plots.to_json(spec).replace("<", "\\u003c")  # "<" occurs only in JSON strings
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:Inter,Helvetica,Arial,sans-serif;margin:16px;background:white}"
        "h1{font-size:18px;font-weight:600;margin:0 0 8px}#plot{max-width:900px}</style>\n"
        f"<script>{_script_safe(plotly_js())}</script>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<div id=\"plot\"></div>\n"
        f"<script id=\"figure\" type=\"application/json\">{body}</script>\n"
        "<script>\n"
        "(function () {\n"
        "  const spec = JSON.parse(document.getElementById('figure').textContent);\n"
        "  const gd = document.getElementById('plot');\n"
        "  Plotly.newPlot(gd, spec.data, spec.layout, {responsive: true, displaylogo: false})\n"
        "    .then(() => Plotly.addFrames(gd, spec.frames));\n"
        "})();\n"
        "</script>\n</body>\n</html>\n")


# --- GIF -----------------------------------------------------------------------------------------------

_VIRIDIS = [[0.0, "#440154"], [0.111, "#482878"], [0.222, "#3e4989"], [0.333, "#31688e"], [0.444, "#26828e"],
            [0.556, "#1f9e89"], [0.667, "#35b779"], [0.778, "#6ece58"], [0.889, "#b5de2b"], [1.0, "#fde725"]]


def _array(v, dtype=np.float64) -> np.ndarray | None:
    """A trace's array field as numpy: numpy arrays, lists, or plotly.js typed-array specs {dtype, bdata}."""
    if v is None:
        return None
    if isinstance(v, dict) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if v.get("shape"):
            arr = arr.reshape([int(n) for n in str(v["shape"]).split(",")])
        v = arr
    try:
        return np.asarray(v, dtype=dtype)
    except (TypeError, ValueError):
        return None


def _rgb(color, default=(31, 31, 31)) -> tuple[int, int, int, int]:
    """(r, g, b, a) of a CSS colour string; `default` for anything else."""
    from PIL import ImageColor

    if isinstance(color, str):
        try:
            c = ImageColor.getrgb(color.strip())
            return tuple(c) if len(c) == 4 else (*c, 255)
        except ValueError:
            pass
    return (*default[:3], 255)


def _colorscale(cs) -> tuple[np.ndarray, np.ndarray]:
    """(positions, (n, 3) colours) of a colorscale: a list of [pos, colour] pairs; a named scale through
    plotly.colors when plotly is there; else Viridis."""
    if isinstance(cs, str):
        try:
            from plotly.colors import get_colorscale

            cs = get_colorscale(cs)
        except Exception:  # an unknown name, or no plotly: the default
            cs = None
    if not (isinstance(cs, (list, tuple)) and len(cs) >= 2
            and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in cs)):
        cs = _VIRIDIS
    pos = np.array([float(p) for p, _ in cs])
    cols = np.array([_rgb(c)[:3] for _, c in cs], np.float64)
    return pos, cols


def _map_colors(values: np.ndarray, cs, vmin: float, vmax: float) -> np.ndarray:
    """uint8 (..., 3) colours of `values` through a colorscale over [vmin, vmax]."""
    pos, cols = _colorscale(cs)
    t = (values - vmin) / (vmax - vmin) if vmax > vmin else np.zeros_like(values)
    t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)
    out = np.stack([np.interp(t, pos, cols[:, c]) for c in range(3)], -1)
    return np.round(out).astype(np.uint8)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _tick_label(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.2g}"


_ASCII = str.maketrans({"—": "-", "–": "-", "·": "-", "₁": "1", "₂": "2", "₀": "0", "−": "-", "…": "..."})


UNICODE_FONT = "DejaVuSans.ttf"  # Debian's fonts-dejavu-core: has ∫, ≈, σ and the subscripts the titles use


@cache
def _unicode_font_ok() -> bool:
    from PIL import ImageFont

    try:
        ImageFont.truetype(UNICODE_FONT, 12)
        return True
    except OSError:
        return False


def _plain(text: str) -> str:
    """A Plotly title as plain text lines (<br> breaks, other tags dropped; without DejaVu Sans, the few
    non-ASCII characters the views use spelled in ASCII, which Pillow's built-in font has)."""
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", str(text), flags=re.IGNORECASE)))
    return text if _unicode_font_ok() else text.translate(_ASCII)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype(UNICODE_FONT, size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an old Pillow without FreeType's default font
        return ImageFont.load_default()


def _title_text(layout: dict) -> str:
    t = layout.get("title")
    return _plain(t.get("text", "") if isinstance(t, dict) else (t or ""))


def _axis_title(ax: dict) -> str:
    t = ax.get("title")
    return _plain(t.get("text", "") if isinstance(t, dict) else (t or ""))


def _extent(traces, axis: str) -> tuple[float, float]:
    """Data extent of the traces along 'x' or 'y' (heatmap cells' edges included), padded 5%."""
    lo, hi = math.inf, -math.inf
    for tr in traces:
        if tr.get(axis + "axis", axis) not in (axis, axis + "1"):
            continue
        v = _array(tr.get(axis))
        if v is None or v.size == 0:
            if tr.get("type") == "heatmap" and (z := _array(tr.get("z"))) is not None and z.ndim == 2:
                v = np.arange(z.shape[1] if axis == "x" else z.shape[0], dtype=np.float64)
            else:
                continue
        v = v.ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        a, b = float(v.min()), float(v.max())
        if tr.get("type") == "heatmap" and v.size > 1:
            half = (b - a) / (v.size - 1) / 2
            a, b = a - half, b + half
        lo, hi = min(lo, a), max(hi, b)
    if not math.isfinite(lo):
        return 0.0, 1.0
    pad = (hi - lo) * 0.05 or 0.5
    return lo - pad, hi + pad


def _render(fig: dict, size: tuple[int, int]):
    """One figure dict as a Pillow RGB image: a simple rendering of its heatmaps, markers and lines."""
    from PIL import Image, ImageDraw

    w, h = size
    layout = fig.get("layout") or {}
    traces = [t for t in (fig.get("data") or []) if t.get("visible", True) not in (False, "legendonly")]
    img = Image.new("RGB", (w, h), _rgb(layout.get("paper_bgcolor"), (255, 255, 255))[:3])
    draw = ImageDraw.Draw(img)
    f_title, f_tick = _font(max(11, h // 34)), _font(max(9, h // 48))

    title = _title_text(layout)
    ty = 6
    for line in title.split("\n") if title else []:
        draw.text((10, ty), line, fill=(30, 30, 30), font=f_title)
        ty += f_title.size + 4 if hasattr(f_title, "size") else 16

    xa, ya = layout.get("xaxis") or {}, layout.get("yaxis") or {}
    xlog, ylog = xa.get("type") == "log", ya.get("type") == "log"
    xr = xa.get("range") if isinstance(xa.get("range"), (list, tuple)) and None not in xa.get("range") else None
    yr = ya.get("range") if isinstance(ya.get("range"), (list, tuple)) and None not in ya.get("range") else None
    main = [t for t in traces if t.get("xaxis", "x") in ("x", "x1")]
    x0, x1 = map(float, xr) if xr else _extent(main, "x")
    y0, y1 = map(float, yr) if yr else _extent(traces, "y")  # every trace shares the y axis
    if not xr and xlog:
        x0, x1 = (math.log10(max(v, 1e-300)) for v in (x0, x1))
    if not yr and ylog:
        y0, y1 = (math.log10(max(v, 1e-300)) for v in (y0, y1))
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    # the plot area: margins for ticks and axis titles; a square-scaled view (scaleanchor) keeps 1:1
    left, right, top, bottom = 58, w - 14, max(ty + 8, 34), h - 46
    pw, ph = max(right - left, 10), max(bottom - top, 10)
    if ya.get("scaleanchor") == "x":
        ratio = float(ya.get("scaleratio", 1.0) or 1.0)
        ppu = min(pw / (x1 - x0), ph / ((y1 - y0) * ratio))
        nw, nh = int(round(ppu * (x1 - x0))), int(round(ppu * (y1 - y0) * ratio))
        left, top = left + (pw - nw) // 2, top + (ph - nh) // 2
        pw, ph = max(nw, 10), max(nh, 10)

    plot = Image.new("RGBA", (pw, ph), _rgb(layout.get("plot_bgcolor"), (255, 255, 255)))

    def tx(v, lo=x0, hi=x1, log=xlog):
        v = np.log10(np.where(v > 0, v, np.nan)) if log else v
        return (v - lo) / (hi - lo) * pw

    def ty_(v):
        v = np.log10(np.where(v > 0, v, np.nan)) if ylog else v
        return ph - (v - y0) / (y1 - y0) * ph

    for tr in traces:
        kind = tr.get("type", "scatter")
        xmap = tx
        if tr.get("xaxis", "x") not in ("x", "x1"):  # e.g. hline() on a hidden [0, 1] reference axis
            ax2 = layout.get("xaxis" + str(tr["xaxis"])[1:]) or {}
            r2 = ax2.get("range") or [0.0, 1.0]
            xmap = lambda v, r2=r2: (v - r2[0]) / (r2[1] - r2[0]) * pw  # noqa: B023
        if kind == "heatmap":
            _draw_heatmap(plot, tr, xmap, ty_)
        elif kind in ("scatter", "scattergl"):
            _draw_scatter(plot, tr, xmap, ty_)

    img.paste(plot.convert("RGB"), (left, top))
    axis_col = (90, 90, 90)
    if xa.get("visible", True) is not False:
        draw.line([(left, top + ph), (left + pw, top + ph)], fill=axis_col)
        for v in _nice_ticks(x0, x1):
            px = left + (v - x0) / (x1 - x0) * pw
            draw.line([(px, top + ph), (px, top + ph + 4)], fill=axis_col)
            lab = _tick_label(10 ** v if xlog else v)
            draw.text((px, top + ph + 6), lab, fill=(60, 60, 60), font=f_tick, anchor="mt")
        if xt := _axis_title(xa):
            draw.text((left + pw / 2, min(h - 4, top + ph + 22)), xt, fill=(60, 60, 60), font=f_tick, anchor="mt")
    if ya.get("visible", True) is not False:
        draw.line([(left, top), (left, top + ph)], fill=axis_col)
        for v in _nice_ticks(y0, y1):
            py = top + ph - (v - y0) / (y1 - y0) * ph
            draw.line([(left - 4, py), (left, py)], fill=axis_col)
            lab = _tick_label(10 ** v if ylog else v)
            draw.text((left - 6, py), lab, fill=(60, 60, 60), font=f_tick, anchor="rm")
        if yt := _axis_title(ya):
            tw = int(draw.textlength(yt, font=f_tick)) + 4
            label = Image.new("RGBA", (tw, 16), (0, 0, 0, 0))
            ImageDraw.Draw(label).text((2, 1), yt, fill=(60, 60, 60, 255), font=f_tick)
            label = label.rotate(90, expand=True)
            img.paste(label, (max(0, left - 52), int(top + ph / 2 - tw / 2)), label)
    for ann in layout.get("annotations") or []:  # paper-positioned messages ("no density", ...)
        if ann.get("xref") == "paper" and ann.get("yref") == "paper" and ann.get("text"):
            ax, ay = left + float(ann.get("x", 0.5)) * pw, top + (1 - float(ann.get("y", 0.5))) * ph
            draw.text((ax, ay), _plain(ann["text"]), fill=(80, 80, 80), font=f_title, anchor="mm")
    return img


def _draw_heatmap(plot, tr: dict, xmap, ymap) -> None:
    from PIL import Image

    z = _array(tr.get("z"))
    if z is None or z.ndim != 2 or z.size == 0:
        return
    ny, nx = z.shape
    xs, ys = _array(tr.get("x")), _array(tr.get("y"))
    xs = xs if xs is not None and xs.size == nx else np.arange(nx, dtype=np.float64)
    ys = ys if ys is not None and ys.size == ny else np.arange(ny, dtype=np.float64)
    finite = z[np.isfinite(z)]
    zmin = float(tr["zmin"]) if tr.get("zmin") is not None else (float(finite.min()) if finite.size else 0.0)
    zmax = float(tr["zmax"]) if tr.get("zmax") is not None else (float(finite.max()) if finite.size else 1.0)
    rgb = _map_colors(z, tr.get("colorscale"), zmin, zmax)
    alpha = np.where(np.isfinite(z), int(255 * float(tr.get("opacity", 1.0))), 0).astype(np.uint8)
    cells = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    # cell centres at xs, ys: the image spans half a cell beyond them
    dx = (xs[-1] - xs[0]) / (nx - 1) / 2 if nx > 1 else 0.5
    dy = (ys[-1] - ys[0]) / (ny - 1) / 2 if ny > 1 else 0.5
    px0, px1 = float(xmap(xs[0] - dx)), float(xmap(xs[-1] + dx))
    py0, py1 = float(ymap(ys[0] - dy)), float(ymap(ys[-1] + dy))  # row 0 at the bottom (y up)
    if not all(map(math.isfinite, (px0, px1, py0, py1))):
        return
    if px1 < px0:
        cells, px0, px1 = cells.transpose(Image.Transpose.FLIP_LEFT_RIGHT), px1, px0
    if py0 > py1:  # the usual case: row 0 (lowest y) is drawn at the bottom
        cells, py0, py1 = cells.transpose(Image.Transpose.FLIP_TOP_BOTTOM), py1, py0
    bw, bh = max(1, int(round(px1 - px0))), max(1, int(round(py1 - py0)))
    if bw > 8 * plot.width or bh > 8 * plot.height:
        return
    smooth = Image.Resampling.BILINEAR if tr.get("zsmooth") else Image.Resampling.NEAREST
    layer = Image.new("RGBA", plot.size, (0, 0, 0, 0))
    layer.paste(cells.resize((bw, bh), smooth), (int(round(px0)), int(round(py0))))
    plot.alpha_composite(layer)


def _draw_scatter(plot, tr: dict, xmap, ymap) -> None:
    from PIL import Image, ImageDraw

    x, y = _array(tr.get("x")), _array(tr.get("y"))
    if x is None or y is None or x.size == 0:
        return
    n = min(x.size, y.size)
    px, py = xmap(x.ravel()[:n]), ymap(y.ravel()[:n])
    mode = tr.get("mode") or ("lines+markers" if n < 20 else "lines")
    opacity = float(tr.get("opacity", 1.0))
    layer = Image.new("RGBA", plot.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if "lines" in mode:
        line = tr.get("line") or {}
        r, g, b, a = _rgb(line.get("color"), (31, 119, 180))
        col = (r, g, b, int(a * opacity))
        width = max(1, int(round(float(line.get("width", 2)))))
        ok = np.isfinite(px) & np.isfinite(py)
        # runs of finite points: a NaN (a break between polylines) ends a run
        edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
        for a0, a1 in zip(edges[::2], edges[1::2]):
            pts = list(zip(px[a0:a1].tolist(), py[a0:a1].tolist()))
            if len(pts) > 1:
                draw.line(pts, fill=col, width=width, joint="curve")
    if "markers" in mode:
        marker = tr.get("marker") or {}
        size = _array(marker.get("size", 6))
        size = size.ravel() if size is not None and size.size in (1, n) else np.array([6.0])
        radius = np.broadcast_to(np.maximum(np.nan_to_num(size, nan=6.0), 1.0) / 2, (n,))
        mop = marker.get("opacity", 1.0)
        mop = float(mop) if isinstance(mop, (int, float)) else 1.0
        color = marker.get("color")
        if isinstance(color, str):
            r, g, b, a = _rgb(color, (228, 87, 46))
            cols = np.tile([r, g, b], (n, 1))
        else:
            vals = _array(color)
            if vals is not None and vals.size == n:
                cmin = marker.get("cmin", np.nanmin(vals) if np.isfinite(vals).any() else 0.0)
                cmax = marker.get("cmax", np.nanmax(vals) if np.isfinite(vals).any() else 1.0)
                cols = _map_colors(vals, marker.get("colorscale"), float(cmin), float(cmax)).astype(np.int64)
            else:  # a list of colour strings, or nothing usable: Plotly's first default colour
                strings = color if isinstance(color, list) and len(color) == n else None
                cols = np.array([_rgb(c, (31, 119, 180))[:3] for c in strings]) if strings else \
                    np.tile([31, 119, 180], (n, 1))
            a = 255
        alpha = int(a * mop * opacity)
        ok = np.isfinite(px) & np.isfinite(py)
        for i in np.flatnonzero(ok):
            rr = float(radius[i])
            c = cols[i]
            draw.ellipse([px[i] - rr, py[i] - rr, px[i] + rr, py[i] + rr],
                         fill=(int(c[0]), int(c[1]), int(c[2]), alpha))
    plot.alpha_composite(layer)


def to_gif(frames, path_or_buffer, size: tuple[int, int] = (560, 480), fps: int = 8) -> int:
    """Write `frames` ([(step, figure dict)]) as an animated GIF that loops forever, drawn with Pillow
    alone (no browser, no kaleido): heatmaps, markers, lines, the title and simple axis ticks, in the
    layout's axis ranges where it gives them. Consecutive frames that render the same are merged into
    one longer frame (as GIF writers do anyway). Returns the number of frames written."""
    from PIL import Image, ImageChops

    images: list = []
    durations: list[int] = []
    ms = max(20, int(round(1000 / max(fps, 1))))
    for _, fig in frames:
        im = _render(fig, size)
        if images and ImageChops.difference(im, images[-1]).getbbox() is None:
            durations[-1] += ms
            continue
        images.append(im)
        durations.append(ms)
    if not images:
        raise ValueError("no frames to export")
    # one adaptive palette per frame (heatmaps need more than the web palette's 216 colours)
    pal = [im.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for im in images]
    target = str(path_or_buffer) if isinstance(path_or_buffer, Path) else path_or_buffer
    pal[0].save(target, format="GIF", save_all=True, append_images=pal[1:], duration=durations, loop=0,
                disposal=1, optimize=False)
    return len(pal)


class VideoUnavailable(RuntimeError):
    """MP4 export needs the optional imageio-ffmpeg package (it brings its own ffmpeg)."""


VIDEO_EXTRA = "pip install imageio-ffmpeg"  # requirements-video.txt


def video_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def to_mp4(frames, path, size: tuple[int, int] = (560, 480), fps: int = 8) -> int:
    """Write `frames` ([(step, figure dict)]) as an H.264 MP4 (yuv420p, which slides and phones play), drawn
    as :func:`to_gif` draws them, through the ffmpeg that the optional imageio-ffmpeg package ships. Each side is
    rounded up to a multiple of 16 (the codec's block) with white. The last frame is held for a second, so a
    player that stops at the end shows the trained model. Returns the number of frames written.

    Raises VideoUnavailable without imageio-ffmpeg, ValueError with no frames."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoUnavailable(f"MP4 export needs imageio-ffmpeg ({VIDEO_EXTRA}); the GIF and HTML exports "
                               "need nothing more") from None
    from PIL import Image

    frames = list(frames)
    if not frames:
        raise ValueError("no frames to export")
    w, h = (-(-int(v) // 16) * 16 for v in size)
    fps = max(1, int(fps))
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=16, ffmpeg_log_level="error",
                                         output_params=["-movflags", "+faststart"])
    writer.send(None)  # start ffmpeg
    n = 0
    try:
        for i, (_, fig) in enumerate(frames):
            im = _render(fig, size).convert("RGB")
            if im.size != (w, h):
                canvas = Image.new("RGB", (w, h), "white")
                canvas.paste(im, (0, 0))
                im = canvas
            raw = im.tobytes()
            for _ in range(fps if i == len(frames) - 1 else 1):
                writer.send(raw)
            n += 1
    finally:
        writer.close()
    return n


# --- curves ---------------------------------------------------------------------------------------------

def curves_csv(snap) -> str:
    """A Snapshot's recorded curves as one CSV table: a `step` column, then one column per curve (in the
    snapshot's order); a row per step any curve has, ascending; a cell is empty where its curve has no
    value at that step (a non-finite value is written as Python writes it: nan, inf)."""
    names = list(snap.curves)
    cols: dict[str, dict[int, float]] = {}
    steps: set[int] = set()
    for name in names:
        s, v = snap.curves[name]
        s = np.asarray(s).ravel()
        v = np.asarray(v, np.float64).ravel()
        col = {int(a): float(b) for a, b in zip(s, v)}
        cols[name] = col
        steps.update(col)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["step", *names])
    for st in sorted(steps):
        w.writerow([st, *(repr(cols[n][st]) if st in cols[n] else "" for n in names)])
    return out.getvalue()
