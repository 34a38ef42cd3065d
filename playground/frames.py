"""Frame messages for the browser: a panel's full figure once, then only what changed.

The views build whole figures every frame (plain dicts holding numpy arrays). This module turns a
stream of them into the small messages ``assets/live.js`` applies (numpy, json and plotly's colour
tables only: never torch, never gradio):

* **Canvas layers.** A *live* panel (``layout.meta.live``, set by ``plots.data_layout``: fixed axis
  ranges, data coordinates) draws its heatmaps and scatter traces on a canvas under Plotly's SVG,
  because Plotly redraws a whole plot (defaults, calc, thousands of SVG nodes, a PNG of each heatmap)
  on every change: 20-120 ms per panel in headless Chromium, against 1-5 ms on a canvas. Plotly keeps
  drawing the axes, titles, legend and colour bars from a *stub* per canvas trace (same name and style,
  one null point), and the traces a canvas cannot draw (contours, filled areas, bars, other axes).
* **Updates, not figures.** :class:`PanelDiff` remembers what the browser holds for one panel and sends
  ``{"full": ...}`` on the first frame or a change of structure (trace count, types, routing), else only
  the changed attributes, as dotted paths (``"marker.color"``), per trace and for the layout. An array
  that only grew (a curve) is sent as its new tail: ``{"tail": k, "v": values[k:]}``. Training data,
  axes and legends therefore travel once.
* **One message per frame** for all panels of a tab: :class:`FrameEncoder` (``seq`` numbers let the
  browser say what it holds; a mismatch resends full figures).

Heatmaps on a canvas are sent as uint16 codes of their value range (``zq``, ``zlo``, ``zhi``): a 100 x 100
density is 27 KB of base64 instead of 53 KB, and hover still reads the value to 5 significant digits.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from plotly.colors import get_colorscale

from .plots import nice_ceil, nice_floor, to_json

TRANSPARENT = "rgba(0,0,0,0)"
_CANVAS_TYPES = ("heatmap", "scatter")
_MISSING = object()


# --- routing: which traces of a live panel go to the canvas ------------------------------------------

def is_live(fig: dict) -> bool:
    meta = fig.get("layout", {}).get("meta")
    return isinstance(meta, dict) and bool(meta.get("live"))


def on_canvas(trace: dict) -> bool:
    """Heatmaps and scatter traces on the main axes; not filled areas (Plotly keeps those), nor a
    trace that asks to stay in SVG (``"meta": {"svg": True}``)."""
    if trace.get("type", "scatter") not in _CANVAS_TYPES:
        return False
    if trace.get("fill") not in (None, "none") or trace.get("xaxis", "x") != "x" or trace.get("yaxis", "y") != "y":
        return False
    meta = trace.get("meta")
    return not (isinstance(meta, dict) and meta.get("svg"))


def _scale(cs) -> list:
    """A colour scale as an explicit [[fraction, colour], ...] list (named scales resolved here, so the
    browser needs no copy of Plotly's tables)."""
    if isinstance(cs, str):
        return _named_scale(cs)
    return [[float(f), c] for f, c in cs]


@functools.lru_cache(maxsize=64)
def _named_scale(name: str) -> list:
    return [[float(f), c] for f, c in get_colorscale(name)]


def _finite_range(a: np.ndarray) -> tuple[float, float]:
    a = np.asarray(a, np.float64)
    ok = a[np.isfinite(a)]
    if not ok.size:
        return 0.0, 1.0
    lo, hi = float(ok.min()), float(ok.max())
    return (lo, hi) if hi > lo else (lo, lo + max(abs(lo), 1.0) * 1e-6)


def _quantise(z: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint16 codes of z over its finite range; 0 marks a non-finite cell (drawn transparent)."""
    z = np.asarray(z, np.float64)
    lo, hi = _finite_range(z)
    q = np.zeros(z.shape, np.uint16)
    ok = np.isfinite(z)
    q[ok] = 1 + np.round((np.clip(z[ok], lo, hi) - lo) / (hi - lo) * 65534).astype(np.uint16)
    return q, lo, hi


def colour_range(tr: dict) -> tuple[float, float]:
    """A heatmap's colour range: the view's own, or else its data's range rounded out to nice steps (so
    the colour bar does not change every frame)."""
    lo, hi = _finite_range(tr["z"])
    zmin = float(tr["zmin"]) if tr.get("zmin") is not None else nice_floor(lo)
    zmax = float(tr["zmax"]) if tr.get("zmax") is not None else nice_ceil(hi)
    return zmin, zmax


def _centres(v, n: int) -> np.ndarray:
    """A heatmap axis as cell centres: Plotly takes n centres or n + 1 cell edges (the binned models')."""
    v = np.asarray(v, np.float64)
    return (v[:-1] + v[1:]) / 2 if len(v) == n + 1 else v


def canvas_heatmap(tr: dict) -> dict:
    """A heatmap for the canvas: a regular grid given by its first and last cell centres (the canvas
    stretches the image between them), uint16 codes, an explicit colour range."""
    z = np.asarray(tr["z"], np.float32)
    x, y = _centres(tr["x"], z.shape[1]), _centres(tr["y"], z.shape[0])
    q, lo, hi = _quantise(z)
    zmin, zmax = colour_range(tr)
    out = {"type": "heatmap", "name": tr.get("name", ""), "x0": float(x[0]), "x1": float(x[-1]),
           "y0": float(y[0]), "y1": float(y[-1]), "zq": q, "zlo": lo, "zhi": hi, "zmin": zmin, "zmax": zmax,
           "colorscale": _scale(tr.get("colorscale", "Viridis")), "reversescale": bool(tr.get("reversescale", False)),
           "opacity": float(tr.get("opacity", 1.0)), "smooth": tr.get("zsmooth", False) not in (False, None),
           "visible": tr.get("visible", True)}
    if tr.get("hoverinfo") != "skip":
        out["hovertemplate"] = tr.get("hovertemplate", "x=%{x:.3g}<br>y=%{y:.3g}<br>z=%{z:.3g}<extra></extra>")
    return out


def canvas_scatter(tr: dict) -> dict:
    out = {k: v for k, v in tr.items() if k not in ("hoverinfo", "legendgroup", "showlegend", "connectgaps")}
    out.setdefault("mode", "lines+markers" if len(np.atleast_1d(tr.get("x", []))) < 20 else "lines")  # Plotly's default
    marker = tr.get("marker")
    if isinstance(marker, dict) and "colorscale" in marker:
        marker = dict(marker, colorscale=_scale(marker["colorscale"]))
        marker.pop("colorbar", None)
        marker.pop("showscale", None)
        out["marker"] = marker
    if tr.get("hoverinfo") == "skip" or ("hovertemplate" not in tr and tr.get("hoverinfo") is None):
        out.pop("hovertemplate", None)
        out.pop("customdata", None)
    return out


def stub(tr: dict) -> dict:
    """What Plotly keeps of a canvas trace: its legend entry and colour bar, no points to draw."""
    keep = ("type", "name", "legendgroup", "showlegend", "visible", "mode", "opacity")
    s = {k: tr[k] for k in keep if k in tr}
    s.update(type="scatter", x=[None], y=[None], hoverinfo="skip")
    if tr.get("type") == "heatmap":
        s.update(mode="markers", showlegend=bool(tr.get("showlegend", False)))
        if tr.get("showscale", True):
            cmin, cmax = colour_range(tr)
            s["marker"] = {"color": [cmin, cmax], "cmin": cmin, "cmax": cmax, "showscale": True,
                           "colorscale": _scale(tr.get("colorscale", "Viridis")),
                           "reversescale": bool(tr.get("reversescale", False)),
                           "colorbar": tr.get("colorbar", {}), "opacity": 0}
        else:
            s["showlegend"] = False
        s.setdefault("mode", "markers")
        return s
    s.setdefault("mode", "markers")
    marker = tr.get("marker")
    if isinstance(marker, dict):
        s["marker"] = _legend_marker(marker)
    if "line" in tr:
        s["line"] = tr["line"]
    return s


LEGEND_SIZE = 8  # a legend symbol's size when the points' sizes vary


def _legend_marker(marker: dict) -> dict:
    """What a stub's legend symbol (and colour bar) needs of a marker, and nothing that changes with the
    data: a per-point size or colour range would redraw the whole plot every frame for nothing."""
    m = {k: marker[k] for k in ("symbol", "opacity", "line") if k in marker}
    color = marker.get("color")
    numeric = isinstance(color, (np.ndarray, list)) and not (isinstance(color, list) and color
                                                             and isinstance(color[0], str))
    if numeric and "colorscale" in marker and marker.get("showscale"):
        m.update(color=[float(marker.get("cmin", 0)), float(marker.get("cmax", 1))], cmin=marker.get("cmin", 0),
                 cmax=marker.get("cmax", 1), colorscale=_scale(marker["colorscale"]), showscale=True,
                 colorbar=marker.get("colorbar", {}), reversescale=bool(marker.get("reversescale", False)))
    elif numeric and "colorscale" in marker:
        scale = _scale(marker["colorscale"])
        m["color"] = scale[len(scale) // 2][1]  # the legend shows one representative colour
    elif isinstance(color, list):
        m["color"] = color[0] if color else "#444"
    elif color is not None:
        m["color"] = color
    size = marker.get("size")
    m["size"] = float(size) if isinstance(size, (int, float)) else LEGEND_SIZE
    if isinstance(m.get("color"), str) and m["color"].lower() in ("white", "#fff", "#ffffff", "#f8fafc"):
        m["line"] = {"width": 1, "color": "#888"}  # white points: outline their legend symbol
    return m


def split(fig: dict) -> tuple[dict, list[dict]]:
    """A view's figure as (what Plotly draws, the canvas layers). Canvas layers carry `stub`, the index
    of their stand-in among Plotly's traces (its legend toggles the layer)."""
    if not is_live(fig):
        return fig, []
    data, layers = [], []
    for tr in fig.get("data", []):
        if on_canvas(tr):
            layer = canvas_heatmap(tr) if tr.get("type") == "heatmap" else canvas_scatter(tr)
            layer["stub"] = len(data)
            layers.append(layer)
            data.append(stub(tr))
        else:
            data.append(tr)
    layout = dict(fig.get("layout", {}))
    meta = dict(layout.get("meta") or {})
    meta["plot_bgcolor"] = layout.get("plot_bgcolor", "white")
    layout.update(meta=meta, plot_bgcolor=TRANSPARENT, paper_bgcolor=TRANSPARENT)
    return {"data": data, "layout": layout}, layers


# --- diffs ---------------------------------------------------------------------------------------------

_PLAIN = (int, float, str, bool, type(None))


def _same(a: Any, b: Any) -> bool:
    """Equal values (arrays by content, NaN equal to NaN), without converting anything."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is np.ndarray or tb is np.ndarray:
        if ta is not tb:
            return False
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if ta is not tb:
        return False
    if ta is list or ta is tuple:
        if len(a) != len(b):
            return False
        if all(type(x) in _PLAIN for x in a):
            return a == b
        return all(_same(x, y) for x, y in zip(a, b))
    if ta is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if ta is float and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _tail_start(old: Any, new: np.ndarray) -> int | None:
    """k when new = old[:k] + something (1-D, same dtype, at least half kept), else None."""
    if not (isinstance(old, np.ndarray) and old.ndim == 1 and new.ndim == 1 and old.dtype == new.dtype):
        return None
    m = min(len(old), len(new))
    if m == 0:
        return None
    a, b = old[:m], new[:m]
    differ = a != b
    if a.dtype.kind == "f":
        differ &= ~(np.isnan(a) & np.isnan(b))
    bad = np.flatnonzero(differ)
    k = int(bad[0]) if bad.size else m
    return k if k >= len(new) // 2 and k > 0 else None


def diff(old: dict, new: dict, prefix: str = "") -> dict[str, Any]:
    """Changed attributes of a trace or layout as {dotted path: new value}; None removes one."""
    out: dict[str, Any] = {}
    for key, nv in new.items():
        path = prefix + key
        ov = old.get(key, _MISSING)
        if isinstance(nv, dict) and isinstance(ov, dict):
            out.update(diff(ov, nv, path + "."))
        elif _same(ov, nv):
            continue
        elif isinstance(nv, np.ndarray):
            k = _tail_start(ov, nv)
            out[path] = {"tail": k, "v": nv[k:]} if k is not None else nv
        else:
            out[path] = nv
    for key in old:
        if key not in new:
            out[prefix + key] = None
    return out


def _structure(pfig: dict, layers: list[dict]) -> tuple:
    return (tuple(t.get("type", "scatter") for t in pfig.get("data", [])),
            tuple((layer["type"], layer["stub"]) for layer in layers))


class PanelDiff:
    """What the browser holds for one panel, and the message that brings it to a new figure."""

    def __init__(self):
        self.pfig: dict | None = None
        self.layers: list[dict] = []

    def reset(self) -> None:
        self.pfig, self.layers = None, []

    def update(self, fig: dict) -> dict | None:
        pfig, layers = split(fig)
        if self.pfig is None or _structure(pfig, layers) != _structure(self.pfig, self.layers):
            self.pfig, self.layers = pfig, layers
            return {"full": {"data": pfig["data"], "layout": pfig["layout"], "canvas": layers}}
        msg: dict[str, Any] = {}
        restyle = {str(i): d for i, (o, n) in enumerate(zip(self.pfig["data"], pfig["data"])) if (d := diff(o, n))}
        relayout = diff(self.pfig.get("layout", {}), pfig.get("layout", {}))
        canvas = {str(i): d for i, (o, n) in enumerate(zip(self.layers, layers)) if (d := diff(o, n))}
        if restyle:
            msg["restyle"] = restyle
        if relayout:
            msg["relayout"] = relayout
        if canvas:
            msg["canvas"] = canvas
        self.pfig, self.layers = pfig, layers
        return msg or None


class FrameEncoder:
    """One browser view of one tab: a PanelDiff per panel and the sequence number of the last message.

    ``encode`` takes the figures of the visible panels, the status line and text blocks (HTML), and
    returns one JSON message. When the browser's ``have`` is not the last sequence number sent (a reload,
    a lost message) or a panel was reset (re-created in the page), full figures are sent again."""

    def __init__(self):
        self.seq = 0
        self.panels: dict[str, PanelDiff] = {}
        self.last_full = False  # the last message carried a full figure (a one-off cost)

    def in_sync(self, have: int) -> bool:
        return have == self.seq and have > 0

    def encode(self, figs: dict[str, dict], status: str | None = None, texts: dict[str, str] | None = None,
               have: int = -1, reset: tuple[str, ...] | list[str] = (), final: bool = False,
               extra: dict | None = None) -> str:
        if not self.in_sync(have):
            for p in self.panels.values():
                p.reset()
        for name in reset:
            if name in self.panels:
                self.panels[name].reset()
        panels = {}
        self.last_full = False
        for name, fig in figs.items():
            msg = self.panels.setdefault(name, PanelDiff()).update(fig)
            if msg is not None:
                panels[name] = msg
                self.last_full = self.last_full or "full" in msg
        self.seq += 1
        out: dict[str, Any] = {"seq": self.seq, "panels": panels, "final": bool(final)}
        if status is not None:
            out["status"] = status
        if texts:
            out["texts"] = texts
        if extra:
            out.update(extra)
        return to_json(out)

    def sent(self, name: str) -> bool:
        p = self.panels.get(name)
        return p is not None and p.pfig is not None


# --- the browser's side, in Python: what assets/live.js does with a message (for tests and replays) ------

_DTYPES = {"f4": np.float32, "f8": np.float64, "i4": np.int32, "i2": np.int16, "i1": np.int8, "u1": np.uint8,
           "u2": np.uint16, "u4": np.uint32}


def decode(obj: Any) -> Any:
    """A parsed message with its typed arrays ({dtype, bdata, shape}) back as numpy arrays."""
    import base64

    if isinstance(obj, dict):
        if isinstance(obj.get("bdata"), str) and isinstance(obj.get("dtype"), str):
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), _DTYPES[obj["dtype"]])
            if "shape" in obj:
                arr = arr.reshape([int(n) for n in str(obj["shape"]).split(",")])
            return arr
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def set_path(obj: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        if not isinstance(obj.get(k), dict):
            obj[k] = {}
        obj = obj[k]
    last = keys[-1]
    if value is None:
        obj.pop(last, None)
    elif isinstance(value, dict) and set(value) == {"tail", "v"}:
        old = obj.get(last)
        head = np.asarray(old)[: value["tail"]] if old is not None else np.zeros(0)
        obj[last] = np.concatenate([head, np.asarray(value["v"], head.dtype if head.size else None)])
    else:
        obj[last] = value


def apply_message(panel: dict | None, msg: dict) -> dict:
    """The browser's copy of a panel ({"data", "layout", "canvas"}) after one decoded panel message."""
    if "full" in msg:
        full = msg["full"]
        return {"data": full["data"], "layout": full["layout"], "canvas": full.get("canvas", [])}
    if panel is None:
        raise ValueError("an update for a panel the browser never received")
    for i, changes in msg.get("restyle", {}).items():
        for path, v in changes.items():
            set_path(panel["data"][int(i)], path, v)
    for path, v in msg.get("relayout", {}).items():
        set_path(panel["layout"], path, v)
    for i, changes in msg.get("canvas", {}).items():
        for path, v in changes.items():
            set_path(panel["canvas"][int(i)], path, v)
    return panel
