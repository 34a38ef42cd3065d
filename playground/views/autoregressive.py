"""Views of the autoregressive models (notes ch. 3): the joint p(x1, x2) = p(x_first) p(x_second | x_first),
its two factors at a chosen slice, sequential sampling step by step, and the network's connectivity.

Everything comes from the snapshot: for discrete models the probe's exact K x K table (drawn as cells,
not smoothed) with its rows as the conditionals; for RNADE the grid density and the probe's exact
marginal, whose difference on a grid line is the conditional. Moving the slice slider only picks another
row or line of what is already there: no model call.
"""

from __future__ import annotations

import numpy as np

from .. import plots
from ..snapshot import AutoregressiveProbe, RNADEProbe, Snapshot
from . import view

NAMES = ("x₁", "x₂")
SLICE_COLOR = "#ff7f0e"
MODEL_COLOR = "#1f77b4"
HIST_COLOR = "rgba(120,120,120,0.35)"
N_DEMO = 4  # samples whose two sequential draws are drawn
DEMO_COLORS = ["#d62728", "#9467bd", "#17becf", "#bcbd22"]


def axis_range(box, coord: int) -> tuple[float, float]:
    return (box[0], box[1]) if coord == 0 else (box[2], box[3])


def slice_value(snap: Snapshot, slice_pos: float) -> float:
    """The slice x_first = a, given as a fraction of the plot's range of x_first (0: left / bottom)."""
    lo, hi = axis_range(snap.box, snap.probe.first)
    return float(lo + min(max(float(slice_pos), 0.0), 1.0) * (hi - lo))


def conditional_at(snap: Snapshot, a: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, density) of p(x_second | x_first = a); None when there is none to show (a discrete model's a
    outside its box, or no grid yet). Discrete: the exact row of the cell table, steps over the bins (x
    holds the K+1 edges, density K+1 values). Continuous: the grid line nearest a, where
    log p(x_second | a) = log p(a, x_second) - log p(a) — the joint heatmap's column minus the marginal."""
    p = snap.probe
    if p.discrete:
        edges = p.marg_edges
        i = int(np.searchsorted(edges, a, side="right")) - 1
        if a == edges[-1]:
            i = len(edges) - 2
        if not 0 <= i < len(edges) - 1:
            return None
        dens = np.exp(p.log_cond[i].astype(np.float64))
        return p.cond_edges, np.append(dens, dens[-1]).astype(np.float32)
    if snap.log_density is None:
        return None
    i = int(np.argmin(np.abs(p.marg_x - a)))
    joint = snap.log_density[:, i] if p.first == 0 else snap.log_density[i, :]
    axis = snap.grid_y if p.first == 0 else snap.grid_x
    return axis, np.exp(joint.astype(np.float64) - float(p.log_marg[i])).astype(np.float32)


def marginal(p: AutoregressiveProbe | RNADEProbe) -> tuple[np.ndarray, np.ndarray]:
    if p.discrete:
        dens = np.exp(p.log_marg.astype(np.float64))
        return p.marg_edges, np.append(dens, dens[-1]).astype(np.float32)
    return p.marg_x, np.exp(p.log_marg.astype(np.float64)).astype(np.float32)


def line(x, y, name: str, color: str, width: float = 2.5, step: bool = False, dash: str = "solid",
         **kw) -> dict:
    tr = {"type": "scatter", "mode": "lines", "x": np.asarray(x, np.float32), "y": np.asarray(y, np.float32),
          "name": name, "line": {"color": color, "width": width, "shape": "hv" if step else "linear", "dash": dash},
          "hoverinfo": "skip"}
    tr.update(kw)
    return tr


def histogram(values: np.ndarray, edges: np.ndarray, name: str, **kw) -> dict | None:
    """A density-normalised histogram of `values` over `edges`, as one filled step line (a single SVG
    path: far cheaper for the browser to redraw every frame than a bar per bin)."""
    if len(values) == 0:
        return None
    counts, _ = np.histogram(values, edges)
    dens = counts / (len(values) * np.diff(edges))
    tr = line(edges, np.append(dens, dens[-1]), name, "rgba(120,120,120,0.6)", width=0.5, step=True,
              fill="tozeroy", fillcolor=HIST_COLOR)
    tr.update(kw)
    return tr


# --- the joint ----------------------------------------------------------------------------------------

def cell_heatmap(p: AutoregressiveProbe, log_scale: bool) -> dict:
    """The exact K x K cell density P(cell) / area, drawn as cells (bin edges, no smoothing)."""
    lp = np.asarray(p.log_density, np.float64)
    if log_scale:
        top = plots.step_ceil(float(lp.max()))
        tr = plots.heatmap(p.edges[0], p.edges[1], np.clip(lp, top - 12, top), "model density",
                           zmin=top - 12, zmax=top, colorbar_title="log p(x)")
    else:
        dens = np.exp(lp)
        tr = plots.heatmap(p.edges[0], p.edges[1], dens, "model density", zmin=0.0,
                           zmax=plots.nice_ceil(max(float(np.quantile(dens, 0.999)), 1e-12)),
                           colorbar_title="p(x)")
    tr["zsmooth"] = False
    return tr


def slice_line(box, first: int, a: float, name: str) -> dict:
    lo, hi = axis_range(box, 1 - first)
    xy = ([a, a], [lo, hi]) if first == 0 else ([box[0], box[1]], [a, a])
    return line(*xy, name, SLICE_COLOR, width=2.5)


def joint_figure(snap: Snapshot, log_scale: bool, a: float) -> dict:
    p = snap.probe
    f, s = NAMES[p.first], NAMES[1 - p.first]
    title = f"Joint p(x₁, x₂) = p({f})·p({s} | {f}) — step {snap.step}"
    lay = plots.data_layout(snap.box, title, uirevision=f"ar-joint-{snap.dataset}")
    if p.discrete:
        heat = cell_heatmap(p, log_scale)
        e = p.edges
        outline = line([e[0][0], e[0][-1], e[0][-1], e[0][0], e[0][0]], [e[1][0], e[1][0], e[1][-1], e[1][-1], e[1][0]],
                       "the bins' box (outside: floor density only)", "#bbbbbb", width=1.5, dash="dash")
        traces = [heat, outline]
    else:
        traces = [plots.density_heatmap(snap, log_scale)]
    traces.append(plots.points(snap.train, "training data", color="white", size=3.5, opacity=0.5))
    traces.append(slice_line(snap.box, p.first, a, f"slice {f} = {a:.2f}"))
    return {"data": traces, "layout": lay}


# --- the two factors -------------------------------------------------------------------------------------

def factors_figure(snap: Snapshot, a: float) -> dict:
    """Top: the marginal p(x_first) with the slice; bottom: the conditional p(x_second | x_first = a), each
    over a histogram of the training data (for the conditional: the points in the slice's bin or band)."""
    p = snap.probe
    first = p.first
    f, s = NAMES[first], NAMES[1 - first]
    train = np.asarray(snap.train, np.float64)
    f_lo, f_hi = axis_range(snap.box, first)
    s_lo, s_hi = axis_range(snap.box, 1 - first)
    mx, my = marginal(p)
    disc = p.discrete
    top_edges = p.marg_edges if disc else np.linspace(f_lo, f_hi, 41)
    traces = [t for t in (histogram(train[:, first], top_edges, "training data, histogram", xaxis="x2",
                                    yaxis="y2", legendgroup="data"),) if t]
    traces.append(line(mx, my, f"model p({f})", MODEL_COLOR, step=disc, xaxis="x2", yaxis="y2"))
    ymax = float(np.nanmax(my)) * 1.1 if len(my) else 1.0
    traces.append(line([a, a], [0, ymax], f"slice {f} = {a:.2f}", SLICE_COLOR, xaxis="x2", yaxis="y2"))
    cond = conditional_at(snap, a)
    if disc:
        band = cond is not None
        i = int(np.searchsorted(p.marg_edges, a, side="right")) - 1
        lo_e, hi_e = (p.marg_edges[i], p.marg_edges[i + 1]) if band else (a, a)
        near = train[(train[:, first] >= lo_e) & (train[:, first] < hi_e), 1 - first]
        bottom_edges, band_text = p.cond_edges, f"{f} in the slice's bin"
    else:
        h = 0.04 * (f_hi - f_lo)
        near = train[np.abs(train[:, first] - a) < h, 1 - first]
        bottom_edges, band_text = np.linspace(s_lo, s_hi, 31), f"|{f} − a| < {h:.2f}"
    hist = histogram(near, bottom_edges, f"training points with {band_text} ({len(near)})", showlegend=False)
    if hist:
        traces.append(hist)
    lay = {"title": {"text": f"Factors: p({f}) and p({s} | {f} = {a:.2f})", "x": 0.02, "xanchor": "left",
                     "font": {"size": 14}},
           "xaxis": {"title": {"text": s}, "range": [s_lo, s_hi], "domain": [0, 1], "anchor": "y", "zeroline": False},
           "yaxis": {"title": {"text": f"p({s} | {f}=a)"}, "domain": [0, 0.4], "rangemode": "tozero"},
           "xaxis2": {"title": {"text": f}, "range": [f_lo, f_hi], "anchor": "y2", "zeroline": False},
           "yaxis2": {"title": {"text": f"p({f})"}, "domain": [0.6, 1], "rangemode": "tozero"},
           "bargap": 0, "barmode": "overlay", "height": 470, "font": plots.FONT, "plot_bgcolor": "white",
           "margin": {"l": 60, "r": 10, "t": 70, "b": 45}, "uirevision": f"ar-factors-{snap.dataset}",
           "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0, "font": {"size": 11}}}
    if cond is None:
        lay["annotations"] = [{"text": f"{f} = {a:.2f} is outside the bins' box: only the floor density",
                               "x": 0.5, "y": 0.2, "xref": "paper", "yref": "paper", "showarrow": False}]
    else:
        traces.append(line(*cond, f"model p({s} | {f} = a)", "#d62728", step=disc))
    return {"data": traces, "layout": lay}


# --- sequential sampling -----------------------------------------------------------------------------

def sequential_traces(snap: Snapshot) -> list[dict]:
    """For a few samples: the first draw as a line across the plot, the conditional it selects drawn
    along that line (a profile bulging towards +x_first), and the second draw on it."""
    p = snap.probe
    first = p.first
    f, s = NAMES[first], NAMES[1 - first]
    f_lo, f_hi = axis_range(snap.box, first)
    s_lo, s_hi = axis_range(snap.box, 1 - first)
    pts = np.asarray(snap.samples[:N_DEMO], np.float64)

    def xy(u, v):  # (along x_first, along x_second) -> (x1, x2)
        return (u, v) if first == 0 else (v, u)

    lines_a = np.stack([pts[:, first], pts[:, first], np.full(len(pts), np.nan)], 1).ravel()
    lines_b = np.tile([s_lo, s_hi, np.nan], len(pts))
    out = [line(*xy(lines_a, lines_b), f"① {f} ~ p({f}): a dashed line", "#444", width=1.2, dash="dash")]
    for k, (a, _b) in enumerate(pts[:, [first, 1 - first]]):
        cond = conditional_at(snap, float(a))
        if cond is None:
            continue
        cx, cy = cond
        keep = (cx >= s_lo) & (cx <= s_hi)
        peak = float(cy.max()) if cy.size and cy.max() > 0 else 1.0
        prof = line(*xy(a + 0.15 * (f_hi - f_lo) * cy[keep] / peak, cx[keep]),
                    f"② p({s} | {f}) along it; {s} drawn from it", DEMO_COLORS[k % len(DEMO_COLORS)], width=2,
                    legendgroup="draw2", showlegend=not any(t.get("legendgroup") == "draw2" for t in out))
        prof["line"]["shape"] = ("vh" if first == 0 else "hv") if p.discrete else "linear"
        out.append(prof)
    sx, sy = xy(pts[:, first], pts[:, 1 - first])
    out.append({"type": "scatter", "mode": "markers", "x": sx.astype(np.float32), "y": sy.astype(np.float32),
                "name": "③ the sample", "hoverinfo": "skip",
                "marker": {"symbol": "star", "size": 15, "color": DEMO_COLORS[:len(pts)],
                           "line": {"color": "black", "width": 1}}})
    return out


def samples_panel(snap: Snapshot) -> dict:
    f, s = NAMES[snap.probe.first], NAMES[1 - snap.probe.first]
    fig = plots.samples_figure(snap, title=f"Sequential sampling: {f} ~ p({f}), then {s} ~ p({s} | {f})")
    if snap.samples is not None:
        fig["data"] += sequential_traces(snap)
    return fig


# --- connectivity --------------------------------------------------------------------------------------

def network_figure(snap: Snapshot) -> dict:
    """Columns of units (inputs, hidden layers, the conditionals' outputs) and the connections that exist:
    a missing line is a weight the mask (or the model's form) holds at zero. Line width: |weight|."""
    conn = snap.probe.conn
    cols = conn["columns"]
    ys = [np.linspace(0.6, -0.6, len(n)) if len(n) <= 2 else np.linspace(1, -1, len(n)) for n in conn["nodes"]]
    traces = []
    buckets = {0: ([], []), 1: ([], []), 2: ([], [])}
    for c, e in enumerate(conn["edges"]):
        top = float(e.max()) if e.size and e.max() > 0 else 1.0
        for o, i in zip(*np.nonzero(e > 0)):
            b = min(int(3 * e[o, i] / top), 2)
            buckets[b][0].extend([c, c + 1, np.nan])
            buckets[b][1].extend([ys[c][i], ys[c + 1][o], np.nan])
    for b, (w, op) in enumerate(((0.6, 0.25), (1.2, 0.5), (2.4, 0.85))):
        xs, yv = buckets[b]
        traces.append({"type": "scatter", "mode": "lines", "x": np.asarray(xs, np.float32),
                       "y": np.asarray(yv, np.float32), "line": {"color": "#333", "width": w}, "opacity": op,
                       "name": ("weak", "medium", "strong")[b] + " connection", "hoverinfo": "skip",
                       "showlegend": False})
    for c, (names, labels) in enumerate(zip(conn["nodes"], conn["labels"])):
        last = c == len(cols) - 1
        traces.append({"type": "scatter", "mode": "markers+text", "x": np.full(len(names), c, np.float32),
                       "y": ys[c].astype(np.float32), "text": names if c in (0, len(cols) - 1) else None,
                       "textposition": "middle right" if last else "middle left", "showlegend": False,
                       "marker": {"size": 16 if c in (0, len(cols) - 1) else 10,
                                  **plots.label_marker(labels - 1, ["#1f77b4", "#2ca02c"]),
                                  "line": {"color": "white", "width": 1}}, "hoverinfo": "skip"})
    anns = [{"text": col.replace(", ", "<br>"), "x": c, "y": 1.2, "xref": "x", "yref": "y", "showarrow": False,
             "font": {"size": 11}} for c, col in enumerate(cols)]
    # two short lines: one long one ran off both sides of a phone's panel
    anns.append({"text": "blue: label 1 (sees nothing before it) · green: label 2<br>no line: a weight masked to 0",
                 "x": 0.5, "y": -0.04, "yanchor": "top", "xref": "paper", "yref": "paper", "showarrow": False,
                 "font": {"size": 11}})
    key = snap.model_key
    what = {"made": "MADE's masks", "fvsbn": "FVSBN's connections", "nade": "NADE's tied layer",
            "rnade": "RNADE's net"}.get(key, "connections")
    f, s = NAMES[snap.probe.first], NAMES[1 - snap.probe.first]
    lay = {"title": {"text": f"{what}: who may see whom (order {f} → {s})", "x": 0.02, "xanchor": "left",
                     "font": {"size": 14}},
           "xaxis": {"visible": False, "range": [-0.9, len(cols) - 1 + 1.4], "fixedrange": True},
           "yaxis": {"visible": False, "range": [-1.2, 1.5], "fixedrange": True},
           "annotations": anns, "height": 470, "font": plots.FONT, "plot_bgcolor": "white",
           "margin": {"l": 10, "r": 10, "t": 50, "b": 44}, "showlegend": False,
           "uirevision": f"ar-net-{key}"}
    return {"data": traces, "layout": lay}


@view(family="autoregressive")
def autoregressive_frame(snap: Snapshot, log_scale: bool = False, slice_pos: float = 0.5,
                         **_) -> dict[str, dict]:
    """The joint with the slice, the two factors at the slice, sequential sampling, the network, curves."""
    if not isinstance(snap.probe, (AutoregressiveProbe, RNADEProbe)):
        title = "Joint p(x₁, x₂)"
        return {"main": plots.message_figure("press Train", snap.box, title)}
    a = slice_value(snap, slice_pos)
    curves = plots.likelihood_figure(snap, "Average log-likelihood (nats per unit area, higher is better)")
    return {"main": joint_figure(snap, log_scale, a), "factors": factors_figure(snap, a),
            "samples": samples_panel(snap), "network": network_figure(snap), "curves": curves,
            "extra": plots.distance_figure(snap)}
