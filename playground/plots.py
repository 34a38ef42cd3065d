"""Plotly figures from Snapshots: numpy and plotly only (never torch, never gradio).

Figures are plain dicts in Plotly's JSON schema holding float32 numpy arrays; :func:`to_json`
sends each array as a base64 typed array, which is 5-20x faster to encode than lists and which
plotly.js decodes natively. Every data view uses the same square box per dataset, fixed axis
titles and `uirevision`, so a user's zoom survives live updates (see playground.liveplot).
"""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
from plotly.colors import qualitative

PALETTE = qualitative.Dark24  # 24 distinguishable colours for components / classes
DATA_COLOR = "#1f1f1f"
HELDOUT_COLOR = "#7f7f7f"
SAMPLE_COLOR = "#e4572e"
DENSITY_SCALE = "Viridis"
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=12)


# --- encoding --------------------------------------------------------------------------------------

_DTYPES = {np.dtype("float32"): "f4", np.dtype("float64"): "f8", np.dtype("int32"): "i4",
           np.dtype("int16"): "i2", np.dtype("int8"): "i1", np.dtype("uint8"): "u1",
           np.dtype("uint16"): "u2", np.dtype("uint32"): "u4"}


def _encode(obj):
    if isinstance(obj, np.ndarray):
        arr = obj
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        if arr.dtype not in _DTYPES:
            return arr.tolist()
        arr = np.ascontiguousarray(arr)
        out = {"dtype": _DTYPES[arr.dtype], "bdata": base64.b64encode(arr.tobytes()).decode()}
        if arr.ndim > 1:
            out["shape"] = ",".join(map(str, arr.shape))
        return out
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def to_json(fig: dict) -> str:
    """A figure dict as JSON for plotly.js, arrays as typed arrays; non-finite floats become null."""
    return json.dumps(fig, default=_encode, allow_nan=False, separators=(",", ":"),
                      cls=_SafeEncoder)


class _SafeEncoder(json.JSONEncoder):
    def iterencode(self, o, _one_shot=False):
        return super().iterencode(_finite(o), _one_shot)


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


# --- colour ranges that hold still ------------------------------------------------------------------------
# A colour bar is Plotly's to draw: each change of a colour range redraws the plot (20-60 ms in the browser).
# Ranges rounded to a few "nice" steps change a handful of times in a run, not every frame.

_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def estimate_text(v: float, spec: str = ".2g") -> str:
    """A quantity that is never below 0 (a distance, a divergence) given by an estimate that can be (the unbiased
    energy distance and MMD², a GAN's JS estimate): below 0 it is shown as ≈ 0, with the estimate and why."""
    if v is None or not math.isfinite(v):
        return "—"
    if v < 0:
        return f"≈ 0 (estimate {v:{spec}}: below 0 by sampling noise)"
    return f"{v:{spec}}"


def nice_ceil(v: float) -> float:
    """The smallest of ±{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8} x 10^k at least v (0 stays 0)."""
    return _nice(v, up=True)


def nice_floor(v: float) -> float:
    """The largest of ±{1, 1.2, ..., 8} x 10^k at most v (0 stays 0)."""
    return _nice(v, up=False)


def _nice(v: float, up: bool) -> float:
    v = float(v)
    if not math.isfinite(v) or v == 0.0:
        return v
    if v < 0:
        return -_nice(-v, not up)
    k = math.floor(math.log10(v))
    for m in (_NICE if up else reversed(_NICE)):
        c = _dec(m, k)
        if (c >= v * (1 - 1e-12)) if up else (c <= v * (1 + 1e-12)):
            return c
    return _dec(1.0, k + 1) if up else _dec(8.0, k - 1)


def _dec(m: float, k: int) -> float:
    """m x 10^k as the float nearest the decimal (0.3, not 0.30000000000000004)."""
    return float(f"{m}e{k}")


def step_ceil(v: float, step: float = 0.5) -> float:
    """v rounded up to a multiple of step (a log-density's top, in nats)."""
    return math.ceil(float(v) / step) * step if math.isfinite(v) else v


def step_floor(v: float, step: float = 0.5) -> float:
    return math.floor(float(v) / step) * step if math.isfinite(v) else v


# --- layout ------------------------------------------------------------------------------------------

TITLE_CHARS = 62  # a panel's title longer than this (about the width of a half-page panel) wraps
TITLE_LINE_PX = 18
LEGEND_ROOM_PX = 20  # a data panel's legend sits above the plot, under the title: a wrapped title needs this more


def wrap_title(title: str, width: int = TITLE_CHARS) -> tuple[str, int]:
    """(title with <br> line breaks, extra lines): a long title is broken at its last " — " or " · " (else
    ": ") outside parentheses that keeps the first line within `width` characters (tags such as <sub> not
    counted), so titles that carry the step and a live readout are not cut off at the panel's edge."""
    def visible(t: str) -> int:
        return len(re.sub(r"<[^>]+>", "", t))

    lines, rest = [], title
    while visible(rest) > width and len(lines) < 2:
        cuts = []
        for pattern in (r" — | · ", r": "):  # a dash or a dot first; a colon only where neither fits
            cuts = cuts or [m for m in re.finditer(pattern, rest) if 0 < visible(rest[:m.start()]) <= width
                            and rest[:m.start()].count("(") == rest[:m.start()].count(")")]
        if not cuts:
            break
        m = cuts[-1]
        lines.append(rest[:m.start()] + (":" if m.group(0) == ": " else ""))
        rest = rest[m.end():]
    lines.append(rest)
    return "<br>".join(lines), len(lines) - 1


def data_layout(box, title: str, uirevision: str = "data", height: int = 430, legend: bool = True) -> dict:
    """A square x1/x2 view of `box` (xmin, xmax, ymin, ymax) with fixed ranges. It is a *live* panel
    (meta.live): the browser draws its heatmaps and points on a canvas (see playground/frames.py)."""
    title, extra = wrap_title(title)
    # Plotly anchors a multi-line title's top at its *last* line: the pad puts the first one back in view
    place = ({"yref": "container", "y": 1.0, "pad": {"t": 4 + TITLE_LINE_PX * extra}} if extra else {"y": 0.985})
    return {
        "meta": {"live": True},
        "title": {"text": title, "x": 0.02, "xanchor": "left", "yanchor": "top", **place,
                  "font": {"size": 14}},
        "xaxis": {"title": {"text": "x₁"}, "range": [box[0], box[1]], "zeroline": False,
                  "constrain": "domain", "showgrid": False},
        "yaxis": {"title": {"text": "x₂"}, "range": [box[2], box[3]], "zeroline": False,
                  "scaleanchor": "x", "scaleratio": 1, "constrain": "domain", "showgrid": False},
        "margin": {"l": 50, "r": 10, "t": 62 + (TITLE_LINE_PX + LEGEND_ROOM_PX) * extra, "b": 45},
        "height": height + (TITLE_LINE_PX + LEGEND_ROOM_PX) * extra,
        "font": FONT,
        "uirevision": uirevision,
        "showlegend": legend,
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11},
                   "bgcolor": "rgba(255,255,255,0)", "itemsizing": "constant"},
        "plot_bgcolor": "#f4f4f6",
        "paper_bgcolor": "white",
    }


LEGEND_WIDTH_PX = 380  # the legend's width in a half-page panel (the panel less its margins), for fit_legend
LEGEND_ROW_PX = 20


def legend_rows(names: list[str], width: float = LEGEND_WIDTH_PX) -> int:
    """How many rows a horizontal legend of these entries takes in a half-page panel (an estimate: 11 px font,
    about 6.5 px a character, 40 px for the symbol and the gap)."""
    rows, used = 1, 0.0
    for name in names:
        w = 40 + 6.5 * len(str(name))
        if used and used + w > width:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def fit_legend(fig: dict) -> dict:
    """A data panel's legend sits above the plot, under the title (data_layout), with room for one row: when its
    entries wrap onto more rows they ran into the title. Make room for them (the panel grows by a row each)."""
    lay = fig.get("layout") or {}
    legend = lay.get("legend") or {}
    if not (lay.get("meta") or {}).get("live") or legend.get("yanchor") != "bottom" or not lay.get("showlegend", True):
        return fig
    names = [t.get("name", "") for t in fig.get("data", []) if t.get("showlegend", True) and t.get("name")]
    extra = legend_rows(names) - 1
    if extra > 0 and not lay["meta"].get("legend_fitted"):
        lay["margin"] = dict(lay.get("margin", {}), t=lay.get("margin", {}).get("t", 62) + LEGEND_ROW_PX * extra)
        lay["height"] = lay.get("height", 430) + LEGEND_ROW_PX * extra
        lay["meta"] = dict(lay["meta"], legend_fitted=True)
    return fig


def curves_layout(title: str, ytitle: str, uirevision: str = "curves", height: int = 300,
                  log_y: bool = False) -> dict:
    title, extra = wrap_title(title)
    return {
        "title": {"text": title, "x": 0.02, "xanchor": "left", "font": {"size": 14}},
        "xaxis": {"title": {"text": "training step", "standoff": 4}, "rangemode": "tozero"},
        "yaxis": {"title": {"text": ytitle}, "type": "log" if log_y else "linear"},
        "margin": {"l": 60, "r": 10, "t": 40 + TITLE_LINE_PX * extra, "b": 80},
        "height": height + TITLE_LINE_PX * extra,
        "font": FONT,
        "uirevision": uirevision,
        # under the axis title, not on it
        "legend": {"orientation": "h", "y": -0.3, "yanchor": "top", "x": 0, "font": {"size": 11}},
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
    }


def message_figure(text: str, box=(-4, 4, -4, 4), title: str = "", height: int = 430, axes: bool = True) -> dict:
    """An empty view with a message in the middle (before training, or 'no density');
    axes=False hides the axes (a curves panel before there are curves)."""
    lay = data_layout(box, title, height=height, legend=False)
    if not axes:
        lay["xaxis"] = {"visible": False}
        lay["yaxis"] = {"visible": False}
        lay["plot_bgcolor"] = "white"
    lay["annotations"] = [{"text": text, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
                           "showarrow": False, "font": {"size": 14, "color": "#555"}}]
    return {"data": [], "layout": lay}


# --- traces ------------------------------------------------------------------------------------------

def heatmap(xs, ys, z, name: str, colorscale=DENSITY_SCALE, zmin=None, zmax=None,
            colorbar_title: str = "", showscale: bool = True, opacity: float = 1.0) -> dict:
    tr = {"type": "heatmap", "x": np.asarray(xs, np.float32), "y": np.asarray(ys, np.float32),
          "z": np.asarray(z, np.float32), "name": name, "colorscale": colorscale,
          "showscale": showscale, "opacity": opacity, "zsmooth": "best",
          "colorbar": {"title": {"text": colorbar_title, "side": "right"}, "thickness": 12, "len": 0.8},
          "hovertemplate": "x₁=%{x:.2f}<br>x₂=%{y:.2f}<br>" + (colorbar_title or "value") + "=%{z:.3g}<extra></extra>"}
    if zmin is not None:
        tr["zmin"] = float(zmin)
    if zmax is not None:
        tr["zmax"] = float(zmax)
    return tr


def density_heatmap(snap, log_scale: bool = False, name: str = "model density") -> dict | None:
    """The model's density on the grid: p(x), or log p(x) clipped 12 nats below its peak."""
    if snap.log_density is None:
        return None
    lp = np.asarray(snap.log_density, np.float32)
    if log_scale:
        top = step_ceil(float(np.nanmax(lp))) if np.isfinite(lp).any() else 0.0
        z = np.clip(lp, top - 12.0, top)
        return heatmap(snap.grid_x, snap.grid_y, z, name, zmin=top - 12.0, zmax=top,
                       colorbar_title="log p(x)")
    p = np.exp(lp.astype(np.float64))
    hi = float(np.nanquantile(p, 0.999)) if np.isfinite(p).any() else 1.0
    return heatmap(snap.grid_x, snap.grid_y, p.astype(np.float32), name, zmin=0.0,
                   zmax=nice_ceil(max(hi, 1e-12)), colorbar_title="p(x)")


def points(xy, name: str, color=DATA_COLOR, size: float = 4, opacity: float = 0.7,
           symbol: str = "circle", visible=True, line_color: str | None = None, showlegend=True) -> dict:
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    marker = {"size": size, "opacity": opacity, "symbol": symbol}
    if isinstance(color, dict):
        marker.update(color)
    else:
        marker["color"] = color
    if line_color:
        marker["line"] = {"width": 0.5, "color": line_color}
    return {"type": "scatter", "mode": "markers", "x": np.ascontiguousarray(xy[:, 0]),
            "y": np.ascontiguousarray(xy[:, 1]), "name": name, "marker": marker, "visible": visible,
            "showlegend": showlegend, "hoverinfo": "skip"}


def label_marker(labels: np.ndarray, palette=PALETTE) -> dict:
    """Marker colours for integer labels as one int32 array through a discrete colour scale
    (far smaller to send than a list of colour strings)."""
    n = len(palette)
    scale = [[i / (n - 1), c] for i, c in enumerate(palette)]
    return {"color": (np.asarray(labels) % n).astype(np.int32), "colorscale": scale, "cmin": 0,
            "cmax": n - 1, "showscale": False}


def ellipse_xy(mean, cov, n_sigma: float, n: int = 60) -> np.ndarray:
    """Points on the n_sigma contour {x: (x-m)^T cov^-1 (x-m) = n_sigma^2} of a 2D Gaussian."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, np.float64))
    t = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)], 0)
    pts = vecs @ (np.sqrt(np.maximum(vals, 0))[:, None] * circle) * n_sigma
    return (pts.T + np.asarray(mean)[None]).astype(np.float32)


def ellipses(means, covs, n_sigma: float, name: str, colors=None, dash: str = "solid",
             width: float = 2.0, showlegend=True) -> list[dict]:
    """One line trace per component (so each keeps its colour), grouped under one legend entry."""
    out = []
    for k, (m, c) in enumerate(zip(means, covs)):
        xy = ellipse_xy(m, c, n_sigma)
        color = colors[k] if colors is not None else DATA_COLOR
        out.append({"type": "scatter", "mode": "lines", "x": xy[:, 0], "y": xy[:, 1],
                    "line": {"color": color, "width": width, "dash": dash}, "name": name,
                    "legendgroup": name, "showlegend": showlegend and k == 0, "hoverinfo": "skip"})
    return out


def curve_traces(snap, series: list[tuple[str, str, float]], colors=None) -> list[dict]:
    """Lines for the history series present in the snapshot: (key, label, sign)."""
    out = []
    for i, (key, label, sign) in enumerate(series):
        if key not in snap.curves:
            continue
        steps, vals = snap.curves[key]
        color = (colors or PALETTE)[i % len(colors or PALETTE)]
        out.append({"type": "scatter", "mode": "lines", "x": steps, "y": (sign * vals).astype(np.float32),
                    "name": label, "line": {"color": color, "width": 2}})
    return out


def polylines(lines: np.ndarray) -> np.ndarray:
    """(n_lines, n_pts, 2) -> one (n_lines * (n_pts + 1), 2) array with a NaN row between lines, so that
    many lines (a warped grid, a generator's manifold) are one trace instead of n_lines."""
    lines = np.asarray(lines, np.float32)
    nan = np.full((lines.shape[0], 1, 2), np.nan, np.float32)
    return np.concatenate([lines, nan], 1).reshape(-1, 2)


def lines_trace(xy: np.ndarray, name: str, color: str, width: float = 1.5, dash: str = "solid",
                showlegend: bool = True, opacity: float = 1.0) -> dict:
    """Lines through (n, 2) points, broken at NaN rows (see polylines)."""
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    return {"type": "scatter", "mode": "lines", "x": np.ascontiguousarray(xy[:, 0]),
            "y": np.ascontiguousarray(xy[:, 1]), "name": name, "hoverinfo": "skip", "showlegend": showlegend,
            "line": {"color": color, "width": width, "dash": dash}, "opacity": opacity, "connectgaps": False}


def hline(y: float, name: str, color: str = "#444", dash: str = "dash") -> dict:
    """A horizontal reference line across the whole x range (shape-free, so it has a legend)."""
    return {"type": "scatter", "mode": "lines", "x": [0.0, 1.0], "y": [y, y], "xaxis": "x2",
            "name": name, "line": {"color": color, "dash": dash, "width": 1.5}, "hoverinfo": "name"}


def with_reference_axis(layout: dict) -> dict:
    """Adds a hidden x-axis spanning [0, 1] on which hline() traces run edge to edge."""
    layout = dict(layout)
    layout["xaxis2"] = {"overlaying": "x", "range": [0, 1], "visible": False, "fixedrange": True}
    return layout


# --- generic frames ------------------------------------------------------------------------------------

def density_figure(snap, log_scale: bool = False, title: str | None = None, show_data: bool = True) -> dict:
    """Model density heatmap with the training points over it (every family with a density)."""
    title = title or f"Model density {'log p(x)' if log_scale else 'p(x)'} — step {snap.step}"
    if snap.log_density is None:
        return message_figure("this model has no density", snap.box, title)
    traces = [density_heatmap(snap, log_scale)]
    if show_data:
        traces.append(points(snap.train, "training data", color="white", size=3.5, opacity=0.55))
    return {"data": traces, "layout": data_layout(snap.box, title, uirevision=f"dens-{snap.dataset}")}


def samples_figure(snap, title: str | None = None, colors=None) -> dict:
    """Model samples over the held-out data."""
    title = title or f"Samples vs held-out data — step {snap.step}"
    traces = [points(snap.test, "held-out data", color=HELDOUT_COLOR, size=4, opacity=0.45)]
    if snap.samples is not None:
        c = colors if colors is not None else SAMPLE_COLOR
        traces.append(points(snap.samples, "model samples", color=c, size=4, opacity=0.75))
    lay = data_layout(snap.box, title, uirevision=f"samp-{snap.dataset}")
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def best_heldout(snap) -> tuple[int, float] | None:
    """(step, NLL) of the lowest held-out NLL logged so far, once the held-out curve has turned up after it
    (the model has begun to overfit); else None."""
    if "test_nll" not in snap.curves:
        return None
    steps, vals = snap.curves["test_nll"]
    vals = np.asarray(vals, np.float64)
    if len(vals) < 3 or not np.isfinite(vals).any():
        return None
    i = int(np.nanargmin(vals))
    return (int(steps[i]), float(vals[i])) if i < len(vals) - 1 else None


def likelihood_figure(snap, title: str = "Average log-likelihood (nats, higher is better)") -> dict:
    """Train and held-out average log-likelihood over training, with the data's own value."""
    traces = curve_traces(snap, [("train_nll", "train", -1.0), ("test_nll", "held-out", -1.0)],
                          colors=["#1f77b4", "#ff7f0e"])
    best = best_heldout(snap)
    if best is not None:  # where early stopping would stop (notes 3.2.5): the "↩ Early stop" button's state
        traces.append({"type": "scatter", "mode": "markers", "x": [best[0]], "y": [-best[1]],
                       "name": f"held-out best (step {best[0]:,})", "hoverinfo": "name",
                       "marker": {"symbol": "star", "size": 13, "color": "#ff7f0e",
                                  "line": {"width": 1, "color": "#333"}}})
    lay = curves_layout(title, "nats per point")
    if snap.data_nll is not None:
        traces.append(hline(-snap.data_nll, "true density on held-out"))
        lay = with_reference_axis(lay)
    return {"data": traces, "layout": lay}


def distance_figure(snap) -> dict:
    traces = curve_traces(snap, [("energy_distance", "energy distance: samples vs held-out", 1.0)],
                          colors=["#2ca02c"])
    traces.append(hline(0.0, "0 = same distribution (noise may dip below)", color="#999",
                        dash="dot"))
    return {"data": traces, "layout": with_reference_axis(
        curves_layout("Sample distance (lower is better)", "energy distance"))}


def loss_figure(snap, keys: list[tuple[str, str, float]] | None = None, title: str = "Training loss") -> dict:
    keys = keys or [("loss", "loss (per step)", 1.0)]
    return {"data": curve_traces(snap, keys), "layout": curves_layout(title, "loss")}


def data_figure(train, test, box, title: str, uirevision: str = "data") -> dict:
    """The data alone (before training): training points and held-out points."""
    traces = [points(train, f"training ({len(train):,})", color=DATA_COLOR, size=4, opacity=0.6),
              points(test, f"held-out ({len(test):,})", color="#ff7f0e", size=4, opacity=0.6)]
    lay = data_layout(box, title, uirevision=uirevision)
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}
