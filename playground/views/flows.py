"""Views of the normalizing flows (notes ch. 5): the exact density, samples, the layer-by-layer
warp of a grid from the base Gaussian to the data, the data pulled back to latent space, and the
two terms of the change of variables formula (or, fitting a target, the reverse KL and its bounds).
"""

from __future__ import annotations

import numpy as np

from .. import plots
from ..snapshot import FlowProbe, Snapshot, StudentProbe
from . import view

LINE_COLORS = ("#d62728", "#1f3b99")  # lines of constant z₂ (red) and of constant z₁ (blue)
LATENT_BOX = (-4.0, 4.0, -4.0, 4.0)
EMPTY = "press Train"


def _mass(snap) -> str:
    return f" — ∫p dx on the grid ≈ {snap.grid_mass:.3f}" if snap.grid_mass is not None else ""


def _grid_values(snap, flat: np.ndarray) -> np.ndarray:
    return np.asarray(flat, np.float32).reshape(len(snap.grid_y), len(snap.grid_x))


def target_contours(snap, log_p: np.ndarray, name: str = "target p*(x)") -> dict:
    """Dotted contours of a log-density on the session grid, 1 nat apart below its peak."""
    top = float(np.nanmax(log_p))
    return {"type": "contour", "x": snap.grid_x, "y": snap.grid_y, "z": np.maximum(log_p, top - 9.0),
            "name": name, "showlegend": True, "showscale": False, "hoverinfo": "skip",
            "contours": {"coloring": "none", "start": top - 7.0, "end": top - 0.5, "size": 1.3},
            "line": {"color": "white", "dash": "dot", "width": 1.3}}


def _flow(snap: Snapshot) -> FlowProbe | None:
    """The frame's flow record (a student's too), or None before there is one."""
    return snap.probe if isinstance(snap.probe, FlowProbe) else None


def density_panel(snap: Snapshot, log_scale: bool, title: str | None = None) -> dict:
    """The model's exact density p(x) (change of variables) with the data; in a reverse-KL run the
    target's contours on top."""
    title = title or f"Model density {'log p(x)' if log_scale else 'p(x)'} — step {snap.step}{_mass(snap)}"
    fig = plots.density_figure(snap, log_scale, title=title)
    p = _flow(snap)
    target = p.target_log_density if p is not None else None
    if target is not None and snap.log_density is not None:
        fig["data"].append(target_contours(snap, _grid_values(snap, target)))
    return fig


def stage_index(snap: Snapshot, layer) -> tuple[int, int]:
    """The stage the slider asks for, clamped to this model's depth: (k, L)."""
    n_layers = snap.probe.stage_lines.shape[0] - 1
    k = n_layers if layer is None else int(np.clip(int(layer), 0, n_layers))
    return k, n_layers


def layer_panel(snap: Snapshot, layer=None, log_scale: bool = False, who: str = "") -> dict:
    """Stage k of the flow: a grid of z pushed through the first k layers, its nodes coloured by the
    exact density there, log p_k = log N(z_0) - Σ log|det| (notes 5.2), over the held-out data."""
    p = _flow(snap)
    if p is None:
        return plots.message_figure(EMPTY, snap.box, "Layer by layer")
    k, n_layers = stage_index(snap, layer)
    names = list(p.layer_names)
    what = "base N(0, I), in data units" if k == 0 else f"layer {k}/{n_layers}: {names[k - 1]}"
    title = f"{who}{what[0].upper()}{what[1:]}"
    logp = np.asarray(p.stage_logp[k], np.float64)
    top = plots.step_ceil(float(np.nanmax(logp))) if np.isfinite(logp).any() else 0.0
    if log_scale:
        color, label = np.clip(logp, top - 10.0, top), "log p"
        cmin = top - 10.0
    else:
        color, label = np.exp(logp - 0.0), "p"
        cmin = 0.0
    cmax = float(np.nanquantile(color, 0.995)) if np.isfinite(color).any() else 1.0
    cmax = top if log_scale else plots.nice_ceil(max(cmax, 1e-9))  # colour bars that hold still
    nodes = plots.points(p.stage_nodes[k], f"grid nodes (colour: {label})",
                         color={"color": np.asarray(color, np.float32), "colorscale": plots.DENSITY_SCALE,
                                "cmin": cmin, "cmax": max(cmax, cmin + 1e-9), "showscale": True,
                                "colorbar": {"title": {"text": label, "side": "right"}, "thickness": 12,
                                             "len": 0.8}},
                         size=3.5, opacity=0.9)
    nodes["showlegend"] = False  # its colour bar says what it is; a short legend keeps clear of the title
    lines = p.stage_lines[k]
    half = lines.shape[0] // 2
    held = plots.points(snap.test, "held-out", color=plots.HELDOUT_COLOR, size=3, opacity=0.35)
    held["showlegend"] = False
    traces = [held, nodes,
              plots.lines_trace(plots.polylines(lines[:half]), "grid lines z₂ = const", LINE_COLORS[0], width=1.0,
                                opacity=0.6),
              plots.lines_trace(plots.polylines(lines[half:]), f"z₁ = const (nodes coloured by {label})",
                                LINE_COLORS[1], width=1.0, opacity=0.6)]
    lay = plots.data_layout(snap.box, title, uirevision=f"layers-{snap.dataset}")
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def _angle_colors(x: np.ndarray) -> np.ndarray:
    """Each point's angle around the data's centre, so a point keeps its colour in latent space."""
    c = x - x.mean(0)
    return np.arctan2(c[:, 1], c[:, 0]).astype(np.float32)


def latent_panel(snap: Snapshot, who: str = "") -> dict:
    """The training data pulled back to z = f⁻¹(x), over the standard normal's 1, 2, 3σ circles:
    when the flow fits, the points look like N(0, I) draws (mean |z|² → 2 in 2D)."""
    p = _flow(snap)
    if p is None:
        return plots.message_figure(EMPTY, LATENT_BOX, "Latent space")
    z = np.asarray(p.latent, np.float32)
    ok = np.isfinite(z).all(1)
    msq = float(np.mean((z[ok] ** 2).sum(1))) if ok.any() else float("nan")
    title = f"{who}Data in latent space, z = f⁻¹(x): mean |z|² = {msq:.3g} (N(0, I): 2)"
    colors = {"color": _angle_colors(snap.train[: len(z)])[ok], "colorscale": "Phase", "cmin": -np.pi,
              "cmax": np.pi, "showscale": False}
    traces = plots.ellipses(np.zeros((3, 2)), [np.eye(2)] * 3, 1.0, "N(0, I): 1, 2, 3σ",
                            ["#444"] * 3, dash="dot", width=1.2)
    for r, tr in zip((1.0, 2.0, 3.0), traces):
        tr["x"], tr["y"] = tr["x"] * r, tr["y"] * r
    traces.append(plots.points(z[ok], "data (colour: angle of x)", color=colors, size=4,
                               opacity=0.8))
    lay = plots.data_layout(LATENT_BOX, title, uirevision=f"latent-{snap.dataset}")
    lay["xaxis"]["title"]["text"], lay["yaxis"]["title"]["text"] = "z₁", "z₂"
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def terms_panel(snap: Snapshot) -> dict:
    """Maximum likelihood: log p(x) = log N(z) + log|det ∂z/∂x| (notes 5.2), each term apart.
    Reverse KL: KL(q‖p*) = cross-entropy − entropy, and the bounds on log Z = 0."""
    if "cross_entropy" in snap.curves:
        series = [("loss", "KL(q‖p*) (batch)", 1.0), ("cross_entropy", "cross-entropy", 1.0),
                  ("entropy", "entropy of q", 1.0), ("elbo", "ELBO = −KL", 1.0), ("iw_bound", "IW bound", 1.0)]
        ess = snap.latest.get("ess")
        title = "Reverse KL and bounds on log Z = 0" + (f" — ESS {ess:.0%}" if ess is not None else "")
        traces = plots.curve_traces(snap, series)
        traces.append(plots.hline(0.0, "log Z = 0", color="#999", dash="dot"))
        lay = plots.with_reference_axis(plots.curves_layout(title, "nats"))
        lay["legend"] = dict(lay["legend"], y=-0.3, yanchor="top")
        lay["margin"] = dict(lay["margin"], b=90)
        return {"data": traces, "layout": lay}
    series = [("log_pz", "E log N(z; 0, I)", 1.0), ("log_det", "E log|det ∂z/∂x|", 1.0),
              ("loss", "sum: log p(x) (batch)", -1.0)]
    return {"data": plots.curve_traces(snap, series, colors=["#9467bd", "#17becf", "#1f77b4"]),
            "layout": plots.curves_layout("Change of variables: the terms of log p(x)", "nats per point")}


def per_layer_panel(snap: Snapshot, layer=None, who: str = "") -> dict:
    """Each layer's average log|det ∂z_k/∂z_{k−1}| under the model: > 0 spreads mass out, < 0
    concentrates it; the layer the slider shows is highlighted."""
    p = _flow(snap)
    if p is None:
        return plots.message_figure(EMPTY, title="Per-layer volume change", axes=False, height=300)
    vals = np.asarray(p.layer_log_det, np.float32)
    k, _ = stage_index(snap, layer)
    colors = ["#e4572e" if i + 1 == k else "#4c78a8" for i in range(len(vals))]
    bar = {"type": "bar", "x": np.arange(1, len(vals) + 1, dtype=np.int32), "y": vals, "name": "log|det|",
           "marker": {"color": colors}, "customdata": list(p.layer_names),
           "hovertemplate": "layer %{x}: %{customdata}<br>E log|det| = %{y:.3f}<extra></extra>"}
    lay = plots.curves_layout(f"{who}Volume change per layer: E log|det Jₖ|",
                              "nats", uirevision="perlayer")
    lay["xaxis"] = {"title": {"text": "layer (z → x)"}, "dtick": 1}
    lay["showlegend"] = False
    return {"data": [bar], "layout": lay}


@view(family="flow")
def flow_frame(snap: Snapshot, log_scale: bool = False, layer=None, **_) -> dict[str, dict]:
    """Planar, NICE, Real NVP, MAF and IAF (notes 5.4.1–5.4.5)."""
    return {"main": density_panel(snap, log_scale), "samples": plots.samples_figure(snap),
            "layers": layer_panel(snap, layer, log_scale), "latent": latent_panel(snap),
            "curves": plots.likelihood_figure(snap), "terms": terms_panel(snap),
            "distance": plots.distance_figure(snap), "perlayer": per_layer_panel(snap, layer)}


# --- teacher -> student (Parallel WaveNet, notes 5.4.6) -------------------------------------------------

def student_terms_panel(snap: Snapshot) -> dict:
    """Phase 1: the teacher's NLL on each data batch. Phase 2: KL(s ‖ t) on each batch of student
    samples and from 2,048 samples per frame, on a log axis: a fresh student puts mass where the
    teacher has almost none, so the KL starts enormous and falls by orders of magnitude."""
    t = snap.probe.teacher_steps if isinstance(snap.probe, StudentProbe) else 0
    if "loss" not in snap.curves:
        return plots.message_figure(EMPTY, title="Teacher, then student", axes=False, height=300)
    steps, vals = snap.curves["loss"]
    if snap.step < t:
        trace = {"type": "scatter", "mode": "lines", "x": steps, "y": vals, "name": "teacher NLL (data batch)",
                 "line": {"color": "#1f77b4", "width": 2}}
        return {"data": [trace], "layout": plots.curves_layout(
            f"Phase 1: the MAF teacher's NLL — the student starts at step {t}", "nats per point")}
    sel = steps >= t
    traces = [{"type": "scatter", "mode": "lines", "x": steps[sel], "y": np.maximum(vals[sel], 1e-3),
               "name": "KL(s ‖ t) per step (student batch)", "line": {"color": "#d62728", "width": 1.5}}]
    if "kl_student_teacher" in snap.curves:
        s2, v2 = snap.curves["kl_student_teacher"]
        keep = s2 >= t
        traces.append({"type": "scatter", "mode": "lines+markers", "x": s2[keep],
                       "y": np.maximum(v2[keep], 1e-3).astype(np.float32), "name": "KL(s ‖ t), 2,048 samples",
                       "line": {"color": "#ff7f0e", "width": 2}, "marker": {"size": 4}})
    lay = plots.curves_layout("Phase 2: the IAF student's KL(s ‖ t) to the frozen teacher (log axis)",
                              "nats (clipped at 0.001)", log_y=True)
    return {"data": traces, "layout": lay}


def student_likelihood_panel(snap: Snapshot) -> dict:
    """Held-out log-likelihood of both flows. A fresh student can put almost no mass on the data
    (-10⁴ nats), so the y-axis shows the 8 nats below the best value (autoscale shows all)."""
    fig = plots.likelihood_figure(snap, title="Held-out log-likelihood (nats): student and teacher")
    for tr in fig["data"]:
        if tr.get("name") in ("train", "held-out"):
            tr["name"] = f"student, {tr['name']}"
    fig["data"] += plots.curve_traces(snap, [("teacher_test_nll", "teacher, held-out", -1.0)], colors=["#2ca02c"])
    values = [np.asarray(t["y"], np.float64) for t in fig["data"] if t.get("xaxis") != "x2"]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if finite.size:
        best = max(float(finite.max()), -snap.data_nll if snap.data_nll is not None else -np.inf)
        fig["layout"]["yaxis"]["range"] = [best - 8.0, best + 0.5]
    return fig


@view("iaf_student")
def student_frame(snap: Snapshot, log_scale: bool = False, layer=None, **_) -> dict[str, dict]:
    """MAF teacher (left) and IAF student (right) side by side; the layer and latent views follow
    the flow being trained."""
    p = snap.probe
    if not isinstance(p, StudentProbe):
        return {"main": plots.message_figure(EMPTY, snap.box, "Teacher")}
    phase, t = p.phase, p.teacher_steps
    status = f"phase 1, learning the data ({snap.step}/{t})" if phase == "teacher" else "frozen (phase 2)"
    teacher = _teacher_figure(snap, log_scale, f"Teacher (MAF): {status}")
    who = "Teacher · " if phase == "teacher" else "Student · "
    doing = "waits for the teacher" if phase == "teacher" else "learns KL(s‖t)"
    mass = f" · ∫p ≈ {snap.grid_mass:.3f}" if snap.grid_mass is not None else ""
    student = density_panel(snap, log_scale, title=f"Student (IAF): {doing}{mass}")
    if snap.samples is not None:
        student["data"].append(plots.points(snap.samples[:500], "student samples", color=plots.SAMPLE_COLOR,
                                            size=3.5, opacity=0.8))
    return {"main": teacher, "samples": student, "layers": layer_panel(snap, layer, log_scale, who),
            "latent": latent_panel(snap, who), "curves": student_likelihood_panel(snap),
            "terms": student_terms_panel(snap), "distance": plots.distance_figure(snap),
            "perlayer": per_layer_panel(snap, layer, who)}


def _teacher_figure(snap: Snapshot, log_scale: bool, title: str) -> dict:
    p: StudentProbe = snap.probe
    lp = np.asarray(p.teacher_log_density, np.float64)
    if log_scale:
        top = plots.step_ceil(float(np.nanmax(lp)))
        heat = plots.heatmap(p.teacher_x, p.teacher_y, np.clip(lp, top - 12, top), "teacher density",
                             zmin=top - 12, zmax=top, colorbar_title="log p(x)")
    else:
        dens = np.exp(lp)
        heat = plots.heatmap(p.teacher_x, p.teacher_y, dens, "teacher density", zmin=0.0,
                             zmax=plots.nice_ceil(max(float(np.nanquantile(dens, 0.999)), 1e-12)),
                             colorbar_title="p(x)")
    traces = [heat, plots.points(snap.train, "training data", color="white", size=3.5, opacity=0.55)]
    return {"data": traces, "layout": plots.data_layout(snap.box, title, uirevision=f"teacher-{snap.dataset}")}
