"""Views of the energy-based models (notes ch. 7): the energy landscape with animated MCMC chains
and the score field, the grid-normalised density with exact samples of it, and the curves.

The model normalises itself over its support box (models/ebm/model.py): the frame's log-density is
log p_θ = f_θ − log Z, its "∫p on grid" the mass inside the plot, and its samples are exact samples
of p_θ; the MCMC chains are shown for what they teach, with their energy distance to exact samples.

Also the sampler sandbox's figure (a target's density with its chains), drawn from a plain dict.
"""

from __future__ import annotations

import numpy as np

from .. import plots
from ..snapshot import EBMProbe, Snapshot
from . import view

CHAIN_TAIL = 60  # positions of each chain's trail drawn behind its head
ENERGY_SPAN = 14.0  # the energy colour scale covers [min, min + span] (nats)
CURVE_HEIGHT = 300
SHOWN_SAMPLES, SHOWN_NEGATIVES = 600, 300  # SVG points cost the browser: a frame stays cheap to draw
SAMPLER_NAMES = {"langevin": "Langevin", "mala": "MALA", "mh": "Metropolis–Hastings"}
FLOW_COLOR = "#f472b6"  # the flow q_φ of flow contrastive estimation and adversarial training


def energy_on_grid(snap: Snapshot) -> np.ndarray | None:
    """−f_θ on the grid from the frame's normalised log-density: log p = f − log Z, so −f = −(log p + log Z),
    with log Z the model's sum over its support (the latest evaluated one: while training, up to a second
    old, which shifts the colours by at most that second's change of log Z)."""
    if snap.log_density is None or "log_z_grid" not in snap.latest:
        return None
    return -(snap.log_density.astype(np.float64) + snap.latest["log_z_grid"])


def energy_trace(xs, ys, energy: np.ndarray) -> dict:
    """−f on the grid: low energy (high density) bright, clipped ENERGY_SPAN nats above its minimum."""
    e = np.asarray(energy, np.float32).reshape(len(ys), len(xs))
    lo = plots.step_floor(float(np.nanmin(e)), 2.0) if np.isfinite(e).any() else 0.0  # a colour bar that holds still
    tr = plots.heatmap(xs, ys, np.clip(e, lo, lo + ENERGY_SPAN), "energy −f(x)", zmin=lo,
                       zmax=lo + ENERGY_SPAN, colorbar_title="energy −f(x)")
    tr["reversescale"] = True
    tr["zsmooth"] = "fast"
    return tr


def chain_traces(paths: np.ndarray, tail: int = CHAIN_TAIL) -> list[dict]:
    """Each tracked chain as a trail (its last `tail` positions) and a head, one colour per chain."""
    paths = np.asarray(paths, np.float32)
    if paths.ndim != 3 or len(paths) == 0:
        return []
    p = paths[-tail:]
    k = p.shape[1]
    colors = [plots.PALETTE[i % len(plots.PALETTE)] for i in range(k)]
    out = [{"type": "scatter", "mode": "lines", "x": np.ascontiguousarray(p[:, i, 0]),
            "y": np.ascontiguousarray(p[:, i, 1]), "line": {"color": colors[i], "width": 2},
            "opacity": 0.9, "name": f"{k} MCMC chains (last {tail} steps)", "legendgroup": "chains",
            "showlegend": i == 0, "hoverinfo": "skip"} for i in range(k)]
    out.append({"type": "scatter", "mode": "markers", "x": np.ascontiguousarray(p[-1, :, 0]),
                "y": np.ascontiguousarray(p[-1, :, 1]), "name": "chain heads", "legendgroup": "chains",
                "showlegend": False, "hoverinfo": "skip",
                "marker": {"size": 11, "color": colors, "line": {"width": 2, "color": "white"}}})
    return out


def arrow_segments(xy: np.ndarray, vec: np.ndarray, length: float) -> np.ndarray:
    """Arrows from each point along its vector as NaN-separated line segments. Lengths grow with
    the vector's norm but are squashed (|v| / (|v| + median)) so a few steep spots do not hide the rest."""
    xy, vec = np.asarray(xy, np.float32), np.asarray(vec, np.float32)
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    med = float(np.median(norm)) + 1e-12
    unit = vec / np.maximum(norm, 1e-12)
    size = length * norm / (norm + med)
    tip = xy + unit * size
    perp = np.stack([-unit[:, 1], unit[:, 0]], 1)
    left = tip - unit * 0.35 * size + perp * 0.2 * size
    right = tip - unit * 0.35 * size - perp * 0.2 * size
    nan = np.full_like(xy, np.nan)
    return np.stack([xy, tip, nan, left, tip, right, nan], 1).reshape(-1, 2).astype(np.float32)


def score_trace(xy: np.ndarray, score: np.ndarray, box) -> dict:
    spacing = (box[1] - box[0]) / (np.sqrt(len(xy)) + 1)
    seg = arrow_segments(xy, score, 0.9 * spacing)
    return {"type": "scatter", "mode": "lines", "x": seg[:, 0], "y": seg[:, 1],
            "name": "score ∇ₓ log p(x)", "line": {"color": "white", "width": 1.3}, "hoverinfo": "skip"}


def chain_distance_label(snap: Snapshot) -> str:
    """How far the 1,000 display chains are from exact samples of p_θ (energy distance, data units)."""
    ed = snap.latest.get("chain_energy_distance")
    return "" if ed is None or ed != ed else f"chains↔exact: energy distance {ed:.3f}"


def energy_figure(snap: Snapshot, show_score: bool) -> dict:
    p = snap.probe if isinstance(snap.probe, EBMProbe) else None
    far = chain_distance_label(snap)
    title = f"Energy −f<sub>θ</sub>(x) and MCMC chains — step {snap.step}" + (f" · {far}" if far else "")
    energy = energy_on_grid(snap)
    if energy is None:
        return plots.message_figure("press Train", snap.box, title)
    traces = [energy_trace(snap.grid_x, snap.grid_y, energy),
              plots.points(snap.train, "training data", color="white", size=3, opacity=0.35, visible="legendonly")]
    if show_score and p is not None:
        traces.append(score_trace(p.score_xy, p.score, snap.box))
    traces += chain_traces(p.chains if p is not None else np.zeros((0, 0, 2)))
    return {"data": traces, "layout": plots.data_layout(snap.box, title, uirevision=f"ebm-e-{snap.dataset}")}


def density_figure(snap: Snapshot, log_scale: bool) -> dict:
    """p = exp(f)/Z with Z the sum over the model's support box, exact samples of it, and what the model
    contrasts with (negatives, noise). The title ends with the mass of p inside this plot (below 1 when
    the support reaches beyond it)."""
    p = snap.probe if isinstance(snap.probe, EBMProbe) else None
    mass = f" · ∫p on this plot ≈ {snap.grid_mass:.3f}" if snap.grid_mass is not None else ""
    title = (f"Density e<sup>f</sup>/Z, Z summed over the support{' (log)' if log_scale else ''}"
             f" — step {snap.step}{mass}")
    if snap.log_density is None:
        return plots.message_figure("press Train", snap.box, title)
    heat = plots.density_heatmap(snap, log_scale, name="grid-normalised density")
    heat["zsmooth"] = "fast"  # the browser's image smoothing: a third of the drawing time of "best"
    traces = [heat]
    if snap.samples is not None:
        traces.append(plots.points(snap.samples[:SHOWN_SAMPLES], f"exact samples of p_θ ({SHOWN_SAMPLES} shown)",
                                   color=plots.SAMPLE_COLOR, size=4, opacity=0.75))
    if p is not None and p.negatives is not None and len(p.negatives):
        traces.append(plots.points(p.negatives[:SHOWN_NEGATIVES], "negatives of the last update", color="#c084fc",
                                   size=5, opacity=0.85, symbol="x"))
    if p is not None and p.noise_cov is not None:
        mean, cov = p.noise_mean[None], p.noise_cov[None]
        traces += plots.ellipses(mean, cov, 1.0, "noise p_n (1σ, 2σ)", ["#f8fafc"], width=2)
        traces += plots.ellipses(mean, cov, 2.0, "noise p_n (1σ, 2σ)", ["#f8fafc"], dash="dash", width=1.5,
                                 showlegend=False)
    traces += flow_traces(snap, p)
    return {"data": traces, "layout": plots.data_layout(snap.box, title, uirevision=f"ebm-p-{snap.dataset}")}


def flow_traces(snap: Snapshot, p: EBMProbe | None) -> list[dict]:
    """An EBM trained against a flow q_φ (flow contrastive estimation, adversarial training): q's exact density
    as contour lines 1.3 nats apart below its peak, over the EBM's, and q's samples of the last update, so
    the two densities can be watched chasing each other."""
    if p is None or p.flow_log_density is None or snap.log_density is None:
        return []
    label = p.flow_label or "flow q"
    log_q = np.asarray(p.flow_log_density, np.float64).reshape(len(snap.grid_y), len(snap.grid_x))
    top = float(np.nanmax(log_q)) if np.isfinite(log_q).any() else 0.0
    out = [{"type": "contour", "x": snap.grid_x, "y": snap.grid_y,
            "z": np.maximum(log_q, top - 9.0).astype(np.float32), "name": f"{label}: log q contours",
            "showlegend": True, "showscale": False, "hoverinfo": "skip",
            "contours": {"coloring": "none", "start": top - 7.0, "end": top - 0.5, "size": 1.3},
            "line": {"color": FLOW_COLOR, "width": 1.6}}]
    if p.flow_samples is not None and len(p.flow_samples):
        out.append(plots.points(p.flow_samples[:SHOWN_NEGATIVES], f"{label}: samples", color=FLOW_COLOR, size=4,
                                opacity=0.7, symbol="diamond", visible="legendonly"))
    return out


def curves_layout(title: str, ytitle: str, uirevision: str, log_y: bool = False) -> dict:
    """The shared curves layout with the legend below the axis title (not on top of it)."""
    lay = plots.curves_layout(title, ytitle, uirevision=uirevision, height=CURVE_HEIGHT, log_y=log_y)
    lay["legend"]["y"] = -0.3
    lay["legend"]["yanchor"] = "top"
    lay["margin"]["b"] = 85
    lay["xaxis"]["title"]["standoff"] = 4
    return lay


def loss_figure(snap: Snapshot) -> dict:
    series = [("loss", "loss (per step)", 1.0)]
    if snap.model_key == "ebm_cd":
        series.append(("cd", "E[f(x⁻)] − E[f(x⁺)] (the CD term)", 1.0))
    return {"data": plots.curve_traces(snap, series, colors=["#1f77b4", "#9467bd"]),
            "layout": curves_layout("Training loss", "loss", f"ebm-loss-{snap.model_key}")}


def energies_figure(snap: Snapshot) -> dict:
    """E[f] on data vs on samples, and log Z (grid, and NCE's learned one): E_data[f] − log Z is the
    held-out log-likelihood."""
    series = [("f_data", "E[f] on held-out data", 1.0), ("f_samples", "E[f] on the chains", 1.0),
              ("log_z_grid", "log Z (grid over the support)", 1.0), ("log_z_nce", "log Z learned by NCE", 1.0),
              ("log_z_fce", "log Z learned by FCE", 1.0), ("log_z_bound", "E_q[f] + H(q) ≤ log Z (flow q)", 1.0)]
    if snap.model_key == "ebm_cd":
        series[:2] = [("f_pos", "E[f(x⁺)] training batch", 1.0), ("f_neg", "E[f(x⁻)] negatives", 1.0)]
    colors = ["#1f1f1f", "#e4572e", "#2563eb", "#16a34a", "#16a34a", FLOW_COLOR]
    traces = plots.curve_traces(snap, series, colors=colors)
    for tr in traces:
        if tr["name"].startswith("log Z learned") or tr["name"].startswith("E_q[f]"):
            tr["line"]["dash"] = "dash"
    err = snap.latest.get("log_z_err")
    title = "f on data vs chains, and log Z"
    if err is not None and err == err:  # the grid's error estimate: halving the grid moves log Z this much
        title += f" (half the grid: log Z moves {err:.0e})"
    return {"data": traces, "layout": curves_layout(title, "nats", f"ebm-f-{snap.model_key}")}


def diagnostics_figure(snap: Snapshot) -> dict:
    series = [("chain_accept", "acceptance (display chains)", 1.0), ("accept", "acceptance (training chains)", 1.0),
              ("rhat", "split R-hat, 8 animated chains", 1.0),
              ("energy_distance", "energy distance: exact samples vs held-out", 1.0),
              ("chain_energy_distance", "energy distance: chains vs exact samples", 1.0)]
    traces = plots.curve_traces(snap, series, colors=["#d97706", "#f59e0b", "#7c3aed", "#2ca02c", "#0891b2"])
    traces.append(plots.hline(1.1, "R-hat = 1.1 (below: mixed)", color="#7c3aed", dash="dot"))
    lay = plots.with_reference_axis(curves_layout("Sampler diagnostics (log scale)", "value",
                                                  f"ebm-d-{snap.model_key}", log_y=True))
    return {"data": traces, "layout": lay}


def likelihood_figure(snap: Snapshot) -> dict:
    """Train and held-out log-likelihood of the grid-normalised p_θ; with a flow partner, q_φ's own held-out
    log-likelihood and (adversarial training) the upper bound E_data f − E_q f − H(q) ≥ E_data f − log Z."""
    fig = plots.likelihood_figure(snap, "Held-out log-likelihood, grid-normalised (nats)")
    fig["data"] += plots.curve_traces(snap, [("ll_bound", "upper bound E[f] − E_q[f] − H(q), held-out", 1.0),
                                             ("flow_nll", "flow q, held-out", -1.0)],
                                      colors=["#7c3aed", FLOW_COLOR])
    for tr in fig["data"]:
        if tr["name"].startswith("upper bound"):
            tr["line"]["dash"] = "dash"
    lay = curves_layout(fig["layout"]["title"]["text"], fig["layout"]["yaxis"]["title"]["text"],
                        f"ebm-nll-{snap.model_key}")
    fig["layout"] = plots.with_reference_axis(lay) if "xaxis2" in fig["layout"] else lay
    return fig


@view(family="ebm")
def ebm_frame(snap: Snapshot, log_scale: bool = False, show_score: str = "auto", **_) -> dict[str, dict]:
    """Energy-based models (notes ch. 7): every panel of the tab. show_score: "auto" (arrows for
    score matching only), "on" or "off"."""
    score = snap.model_key == "ebm_sm" if show_score == "auto" else show_score == "on"
    return {"main": energy_figure(snap, score), "samples": density_figure(snap, log_scale),
            "curves": loss_figure(snap), "energies": energies_figure(snap),
            "nll": likelihood_figure(snap),
            "diag": diagnostics_figure(snap)}


def sandbox_figure(state: dict) -> dict:
    """The sampler sandbox: the target's density (normalised on its grid), every chain's current state
    and the animated chains' trails."""
    box = state["box"]
    title = (f"{state['title']} — {SAMPLER_NAMES.get(state['method'], state['method'])}, "
             f"step {state['steps']}")
    lp = np.asarray(state["log_p"], np.float32)
    p = np.exp(lp - np.nanmax(lp))
    heat = plots.heatmap(state["grid_x"], state["grid_y"], p, "target density", zmin=0.0, zmax=1.0,
                         colorbar_title="p(x) / max p")
    heat["zsmooth"] = "fast"
    traces = [heat, plots.points(state["x"], f"{len(state['x'])} chains (current state)", color=plots.SAMPLE_COLOR,
                                 size=4, opacity=0.7)]
    traces += chain_traces(state["paths"])
    return {"data": traces, "layout": plots.data_layout(box, title, uirevision=f"sandbox-{state['title']}")}


def sandbox_curves(history: dict[str, list]) -> dict:
    """The sandbox's acceptance, split R-hat and energy distance to exact samples, per sampler step."""
    steps = np.asarray(history.get("step", []), np.float32)
    traces = [{"type": "scatter", "mode": "lines", "x": steps, "y": np.asarray(history.get(key, []), np.float32),
               "name": label, "line": {"color": color, "width": 2}}
              for key, label, color in (("accept", "acceptance", "#d97706"),
                                        ("rhat", "split R-hat (8 chains)", "#7c3aed"),
                                        ("ed", "energy distance to exact samples", "#2ca02c"))]
    traces.append(plots.hline(1.1, "R-hat = 1.1", color="#7c3aed", dash="dot"))
    lay = curves_layout("Sandbox chains (log scale)", "value", "sandbox-curves", log_y=True)
    lay["height"] = 470
    lay["xaxis"]["title"]["text"] = "sampler step"
    return {"data": traces, "layout": plots.with_reference_axis(lay)}
