"""Views of the diffusion family (models/diffusion): the forward process at a chosen noise level with the learned
field over it, the model's density by the probability-flow ODE, reverse trajectories (ODE against the stochastic
sampler from the same noise), samples, the held-out loss per noise level, sample quality against the number of
sampling steps, and the held-out log-likelihood over training.
"""

from __future__ import annotations

import re

import numpy as np

from .. import plots
from ..snapshot import DiffusionProbe, Snapshot
from . import view
from .ebm import arrow_segments

CURVE_HEIGHT = 320
SHOWN_PATHS = 5  # trajectories drawn (of the probe's 8): more, and the stochastic ones hide each other
ED_FLOOR = 1e-3  # the quality panel's log axis starts here: 300 samples cannot tell smaller distances from 0 (and
# the unbiased estimate can dip below it)
PATH_COLORS = plots.PALETTE
SAMPLER_COLORS = {"ancestral": "#e4572e", "ddim": "#2563eb", "ode": "#16a34a", "sde": "#d97706",
                  "langevin": "#9333ea", "euler": "#2563eb", "heun": "#16a34a"}
SAMPLER_NAMES = {"ancestral": "ancestral (DDPM)", "ddim": "DDIM", "ode": "ODE (Heun)", "sde": "reverse SDE",
                 "langevin": "annealed Langevin", "euler": "Euler", "heun": "Heun"}
_QUALITY = re.compile(r"^q_([a-z]+)_(\d+)$")


def short(label: str) -> str:
    """A sampler's name without its parenthesis ("reverse SDE (Euler–Maruyama)" -> "reverse SDE"), for titles."""
    return label.split(" (")[0]


def _probe(snap: Snapshot) -> DiffusionProbe | None:
    return snap.probe if isinstance(snap.probe, DiffusionProbe) else None


def level_title(p: DiffusionProbe, k: int) -> str:
    t, a, s = float(p.level_t[k]), float(p.level_alpha[k]), float(p.level_sigma[k])
    where = "the data end" if k == 0 else ("pure noise" if k == len(p.level_t) - 1 else f"level {k}")
    return f"t = {t:.3g} ({where}): x<sub>t</sub> = {a:.2f}·x₀ + {s:.2f}·ε"


def noising_figure(snap: Snapshot, level: int) -> dict:
    """q(x_t) of the training points at the chosen level (brightness: density relative to its peak), noised copies
    of some of them, and the learned field there as arrows."""
    p = _probe(snap)
    if p is None:
        return plots.message_figure("press Train", snap.box, "Forward process q(x_t) and the learned field")
    k = int(np.clip(level, 0, len(p.level_t) - 1))
    lq = p.noised_log_density[k].astype(np.float64)
    q = np.exp(lq - np.nanmax(lq))
    heat = plots.heatmap(p.noised_x, p.noised_y, q.astype(np.float32), "q(x_t): the data, noised", zmin=0.0, zmax=1.0,
                         colorbar_title="q(x_t) / max", colorscale="Blues")
    heat["zsmooth"] = "fast"
    spacing = (snap.box[1] - snap.box[0]) / (np.sqrt(len(p.field_xy)) + 1)
    seg = arrow_segments(p.field_xy, p.field[k], 0.9 * spacing)
    arrows = plots.lines_trace(seg, f"learned {p.field_label} at this t", "#b91c1c", width=1.3)
    pts = plots.points(p.noised_points[k], "noised training points x_t", color="#111827", size=3, opacity=0.55)
    title = f"Forward process and learned field — {level_title(p, k)} — step {snap.step}"
    return {"data": [heat, pts, arrows], "layout": plots.data_layout(snap.box, title, uirevision=f"dn-{snap.dataset}")}


def density_figure(snap: Snapshot, log_scale: bool) -> dict:
    p = _probe(snap)
    how = "RK4"
    if p is not None and p.density_ode_steps:
        how = f"RK4, {p.density_ode_steps} steps" + (f"; NLL {p.ode_steps}" if p.density_ode_steps != p.ode_steps
                                                      else "")
    as_of = snap.latest.get("density_step")
    old = f" (drawn at step {int(as_of)})" if as_of is not None and int(as_of) != snap.step else ""
    mass = f" · ∫p on this plot ≈ {snap.grid_mass:.3f}" if snap.grid_mass is not None else ""
    title = f"Density by the ODE ({how}){old} — step {snap.step}{mass}"
    fig = plots.density_figure(snap, log_scale, title=title, show_data=False)
    if snap.log_density is not None:
        fig["data"][0]["zsmooth"] = "fast"
        fig["data"].append(plots.points(snap.test, "held-out data", color="white", size=3, opacity=0.45))
    return fig


def paths_figure(snap: Snapshot) -> dict:
    """The reverse trajectories: from the same prior draws, the deterministic sampler (solid) and the stochastic
    one (dotted); for flow matching, each ODE path against the straight chord between its ends."""
    p = _probe(snap)
    title = "Trajectories from noise to data"
    if p is None:
        return plots.message_figure("press Train", snap.box, title)
    traces = [plots.points(snap.train, "training data", color="#9ca3af", size=3, opacity=0.35, showlegend=False)]
    n = min(p.ode_paths.shape[1], SHOWN_PATHS)
    for i in range(n):
        c = PATH_COLORS[i % len(PATH_COLORS)]
        traces.append(plots.lines_trace(p.ode_paths[:, i], p.ode_label, c, width=2.2, showlegend=i == 0))
        if p.sde_paths is not None:
            traces.append(plots.lines_trace(p.sde_paths[:, i], p.sde_label, c, width=1.2, dash="dot",
                                            showlegend=i == 0, opacity=0.6))
        else:
            chord = p.ode_paths[[0, -1], i]
            traces.append(plots.lines_trace(chord, "straight chord", c, width=1, dash="dash",
                                            showlegend=i == 0, opacity=0.6))
    colors = [PATH_COLORS[i % len(PATH_COLORS)] for i in range(n)]
    traces.append(plots.points(p.ode_paths[0, :n], "start (noise)", color="white", size=8, opacity=1.0,
                               line_color="#111827"))
    ends = p.ode_paths[-1, :n]
    traces.append(plots.points(ends, "end (ODE)", color=colors, size=9, opacity=1.0, line_color="white"))
    if p.sde_paths is not None:
        traces.append(plots.points(p.sde_paths[-1, :n], "end (stochastic)",
                                   color=colors, size=8, opacity=1.0,
                                   symbol="x"))
        title += f": {short(p.ode_label)} (solid) vs {short(p.sde_label)} (dotted), same start"
    else:
        title += f": {short(p.ode_label)} (solid) vs straight chords (dashed)"
    title += f" — step {snap.step}"
    lay = plots.data_layout(snap.box, title, uirevision=f"dp-{snap.dataset}")
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def samples_figure(snap: Snapshot, sampler: str | None) -> dict:
    ed = snap.latest.get("energy_distance")
    how = f" ({sampler})" if sampler else ""
    dist = f" · energy distance {ed:.3f}" if ed is not None and ed == ed else ""
    return plots.samples_figure(snap, title=f"Samples{how} vs held-out data — step {snap.step}{dist}")


def _curves_layout(title: str, ytitle: str, uirevision: str, xtitle: str = "training step", log_x=False) -> dict:
    lay = plots.curves_layout(title, ytitle, uirevision=uirevision, height=CURVE_HEIGHT)
    lay["xaxis"]["title"]["text"] = xtitle
    if log_x:
        lay["xaxis"]["type"] = "log"
        lay["xaxis"].pop("rangemode", None)
    return lay


def _last(snap: Snapshot, key: str) -> tuple[float, int] | None:
    """(latest value, its step) of a history series."""
    if key not in snap.curves or len(snap.curves[key][0]) == 0:
        return None
    steps, vals = snap.curves[key]
    return float(vals[-1]), int(steps[-1])


def level_loss_figure(snap: Snapshot) -> dict:
    """The held-out loss in each bin of t: now (bars) and at the first evaluation (line)."""
    keys = sorted((k for k in snap.curves if k.startswith("level_loss_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    title = "Held-out loss per noise level"
    if not keys:
        return {"data": [], "layout": _curves_layout(title, "loss", "dl", "t (noise level)")}
    nb = len(keys)
    centres = ((np.arange(nb) + 0.5) / nb).astype(np.float32)
    now = np.asarray([snap.curves[k][1][-1] for k in keys], np.float32)
    first = np.asarray([snap.curves[k][1][0] for k in keys], np.float32)
    step0 = int(snap.curves[keys[0]][0][0])
    step1 = int(snap.curves[keys[0]][0][-1])
    traces = [{"type": "bar", "x": centres, "y": now, "width": 0.8 / nb, "name": f"step {step1}",
               "marker": {"color": "#2563eb"}},
              {"type": "scatter", "mode": "lines+markers", "x": centres, "y": first, "name": f"step {step0}",
               "line": {"color": "#9ca3af", "dash": "dot"}}]
    lay = _curves_layout(title, "mean squared error", f"dl-{snap.model_key}", "t (0: data, 1: noise)")
    lay["xaxis"]["range"] = [0, 1]
    lay["yaxis"]["rangemode"] = "tozero"
    return {"data": traces, "layout": lay}


def quality_figure(snap: Snapshot) -> dict:
    """Energy distance of samples to held-out data against the network evaluations spent (log axis), one line per
    sampler: the cost/quality trade-off of ancestral vs DDIM vs ODE (or Euler vs Heun) in one picture."""
    per: dict[str, list[tuple[int, float]]] = {}
    at = None
    for key in snap.curves:
        m = _QUALITY.match(key)
        if m and (last := _last(snap, key)) is not None:
            per.setdefault(m.group(1), []).append((int(m.group(2)), last[0]))
            at = last[1]
    nfe_per = {"ode": 2, "heun": 2}
    traces = []
    p = _probe(snap)
    langevin_k = p.langevin_steps if p is not None else 1
    for sampler, pts in per.items():
        pts.sort()
        mult = langevin_k if sampler == "langevin" else nfe_per.get(sampler, 1)
        x = np.asarray([s * mult for s, _ in pts], np.float32)
        traces.append({"type": "scatter", "mode": "lines+markers", "x": x,
                       "y": np.maximum(np.asarray([v for _, v in pts], np.float32), ED_FLOOR),
                       "name": SAMPLER_NAMES.get(sampler, sampler),
                       "line": {"color": SAMPLER_COLORS.get(sampler, "#444"), "width": 2},
                       "customdata": np.asarray([s for s, _ in pts], np.float32),
                       "hovertemplate": "%{customdata} steps, %{x} evaluations: %{y:.4f}"
                                        "<extra>%{fullData.name}</extra>"})
    title = "Sample quality vs sampling cost" + (f" (step {at})" if at is not None else "")
    lay = _curves_layout(title, "energy distance (log)", f"dq-{snap.model_key}",
                         "network evaluations per sample (log)", log_x=True)
    lay["yaxis"]["type"] = "log"
    return {"data": traces, "layout": lay}


def likelihood_figure(snap: Snapshot) -> dict:
    err = snap.latest.get("ode_err")
    note = f" · halving the ODE's steps moves it {err:.1e}" if err is not None and err == err else ""
    fig = plots.likelihood_figure(snap, f"Held-out log-likelihood by the ODE (nats){note}")
    fig["layout"]["height"] = CURVE_HEIGHT
    return fig


def loss_figure(snap: Snapshot) -> dict:
    """The regression loss per step (log scale: it falls fast, then slowly)."""
    traces = plots.curve_traces(snap, [("loss", "training loss (per step)", 1.0)], colors=["#1f77b4"])
    lay = _curves_layout("Training loss (log scale)", "mean squared error", f"dloss-{snap.model_key}")
    lay["yaxis"]["type"] = "log"
    return {"data": traces, "layout": lay}


@view(family="diffusion")
def diffusion_frame(snap: Snapshot, log_scale: bool = False, level: int = 3, **_) -> dict[str, dict]:
    """Every panel of the diffusion tab; `level` picks the noise level of the forward-process panel."""
    p = _probe(snap)
    sampler = f"{short(p.sampler)}, {p.sample_steps} steps" if p is not None and p.sampler else None
    return {"noising": noising_figure(snap, level), "main": density_figure(snap, log_scale),
            "paths": paths_figure(snap), "samples": samples_figure(snap, sampler),
            "levels": level_loss_figure(snap), "quality": quality_figure(snap),
            "curves": likelihood_figure(snap), "loss": loss_figure(snap)}
