"""Views of the GANs (notes ch. 6): the discriminator surface with real and fake points and the
generator's push on the fakes, the generator manifold, and the curves of the game.

GANs have no density, so instead of a density and a likelihood curve these views show what the
game itself sees: D(x) (classic GAN), the critic f(x) (WGAN) or the variational function T(x)
(f-GAN), and the divergence estimate the discriminator gives.
"""

from __future__ import annotations

import math

import numpy as np

from .. import plots
from ..snapshot import GANProbe, Snapshot
from . import view

REAL_COLOR = "#1b7837"  # GAN Lab's convention: real is green, fake is purple
FAKE_COLOR = "#762a83"
ARROW_COLOR = "#111111"
MAX_POINTS = 300  # per scatter: SVG markers are DOM nodes, and the browser redraws them every frame
SURFACE_SCALE = [[0.0, "#a886bf"], [0.5, "#f7f7f7"], [1.0, "#7cc47f"]]
N_MODES = {"8gaussians": 8, "25gaussians": 25}

CURVE_HEIGHT = 340


def curves_layout(title: str, ytitle: str, uirevision: str, log_y: bool = False) -> dict:
    """plots.curves_layout with room for a legend of several long entries under the x-axis title."""
    lay = plots.curves_layout(title, ytitle, uirevision=uirevision, height=CURVE_HEIGHT, log_y=log_y)
    lay["legend"] = dict(lay["legend"], y=-0.3, yanchor="top")
    lay["margin"] = dict(lay["margin"], b=105)
    return lay


def log_ticks(values) -> dict:
    """Tick values 1, 2, 5 x 10^k spanning the positive values, labelled plainly (plotly's log axis
    labels every minor tick with a bare digit)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return {}
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    ticks = [m * 10.0 ** k for k in range(lo, hi + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if v.min() / 2.5 <= t <= v.max() * 2.5]
    return {"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def _game(snap: Snapshot) -> GANProbe:
    """The probe's account of the game (labels, equilibrium), or a plain record's before the first probe."""
    return snap.probe if isinstance(snap.probe, GANProbe) else _NO_PROBE


_NO_PROBE = GANProbe(surface=np.zeros(0, np.float32), fake_xy=np.zeros((0, 2), np.float32),
                     fake_push=np.zeros((0, 2), np.float32), surface_mid=0.0, latent_dim=2,
                     manifold_u=np.zeros((0, 0, 2), np.float32))


def grid_axes(box, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The axes of the session's res x res grid over box (the same linspace as metrics.make_grid)."""
    res = int(round(math.sqrt(n)))
    return (np.linspace(box[0], box[1], res, dtype=np.float32),
            np.linspace(box[2], box[3], res, dtype=np.float32))


def surface_trace(snap: Snapshot) -> dict:
    """The discriminator surface as a heatmap whose middle colour is "cannot tell": D = 1/2, T = f'(1),
    or the critic's midpoint between real and fake."""
    p: GANProbe = snap.probe
    z = np.asarray(p.surface, np.float32)
    xs, ys = grid_axes(snap.box, z.size)
    z = z.reshape(len(ys), len(xs))
    label = p.surface_label
    if p.probability:
        lo, hi, mid = 0.0, 1.0, 0.5
    else:
        mid = p.surface_mid
        finite = z[np.isfinite(z)]
        half = float(np.quantile(np.abs(finite - mid), 0.98)) if finite.size else 1.0
        half = plots.nice_ceil(max(half, 1e-6))  # colour bars that hold still: nice steps
        if p.wasserstein:  # a critic's midpoint drifts; an f-GAN's f'(1) is a constant
            mid = round(plots.step_floor(mid, half / 10), 12)
        lo, hi = mid - half, mid + half
    tr = plots.heatmap(xs, ys, z, label, colorscale=SURFACE_SCALE, zmin=lo, zmax=hi, colorbar_title=label)
    tr["zmid"] = mid
    tr["zsmooth"] = "fast"  # the canvas smooths; "best" interpolates in JS on every redraw
    return tr


def arrow_segments(xy: np.ndarray, push: np.ndarray, length: float) -> tuple[np.ndarray, float]:
    """Line segments (with NaN breaks) drawing an arrow from each fake along its push. The longest
    arrows (90th percentile) get `length`; the mean push norm is returned for the legend."""
    norms = np.linalg.norm(push, axis=1)
    ref = float(np.quantile(norms, 0.9)) if norms.size else 0.0
    if not np.isfinite(ref) or ref <= 0:
        return np.zeros((0, 2), np.float32), 0.0
    d = push / ref * length
    scale = np.minimum(1.0, 1.5 * length / np.maximum(np.linalg.norm(d, axis=1), 1e-12))
    d = d * scale[:, None]
    tip = xy + d
    unit = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    h = 0.35 * np.minimum(np.linalg.norm(d, axis=1, keepdims=True), length * 0.6)
    c, s = math.cos(0.45), math.sin(0.45)
    left = tip - h * (unit @ np.array([[c, s], [-s, c]], np.float32))
    right = tip - h * (unit @ np.array([[c, -s], [s, c]], np.float32))
    nan = np.full_like(xy, np.nan)
    seg = np.stack([xy, tip, nan, left, tip, right, nan], 1).reshape(-1, 2)
    return seg.astype(np.float32), float(norms.mean())


def shown_name(p: GANProbe) -> str:
    """Whose samples the plots show: Ḡ, the weight average, when averaging, else G."""
    return "Ḡ" if getattr(p, "averaged", False) else "G"


def fake_name(p: GANProbe) -> str:
    """What a fake is: Ḡ(z) for a GAN, Ḡ(x) of a source point for a CycleGAN."""
    return f"{shown_name(p)}(x), x ∈ {p.source}" if p.source else f"{shown_name(p)}(z)"


def discriminator_figure(snap: Snapshot, show_push: bool = True) -> dict:
    p = snap.probe
    label = p.surface_label if isinstance(p, GANProbe) else "D(x)"
    title = f"Discriminator {label}, real vs fake — step {snap.step}"
    lay = plots.data_layout(snap.box, title, uirevision=f"gan-d-{snap.dataset}")
    if not isinstance(p, GANProbe):
        return plots.message_figure("press Train", snap.box, title)
    traces = [surface_trace(snap),
              plots.points(snap.train[:MAX_POINTS], "real", color=REAL_COLOR, size=4, opacity=0.55)]
    if snap.samples is not None:
        traces.append(plots.points(snap.samples[:MAX_POINTS], f"fake {fake_name(p)}", color=FAKE_COLOR, size=4,
                                   opacity=0.55))
    if show_push:
        width = snap.box[1] - snap.box[0]
        seg, mean = arrow_segments(p.fake_xy, p.fake_push, 0.06 * width)
        traces.append(plots.points(p.fake_xy, "tracked fakes", color=FAKE_COLOR, size=6, opacity=1.0,
                                   line_color="white", showlegend=False))
        traces.append(plots.lines_trace(seg, f"G's push −∇ₓℓ_G (mean size {mean:.2g})", ARROW_COLOR, width=1.4))
    return {"data": traces, "layout": lay}


def manifold_figure(snap: Snapshot) -> dict:
    p = snap.probe
    dim = p.latent_dim if isinstance(p, GANProbe) else 2
    g = shown_name(p) if isinstance(p, GANProbe) else "G"
    source = p.source if isinstance(p, GANProbe) else None
    if source:
        title = f"Generator: a grid over the source {source} (standardised, [−2.5, 2.5]²) ↦ {g}(x) — step {snap.step}"
    elif dim == 1:
        title = f"Generator: the latent line z ∈ [−3, 3] ↦ {g}(z) — step {snap.step}"
    else:
        title = f"Generator: latent grid z ∈ [−2.5, 2.5]² ↦ {g}(z) — step {snap.step}"
        if dim > 2:
            title = f"Generator: slice (z₁, z₂) ∈ [−2.5, 2.5]², other z = 0 — step {snap.step}"
    lay = plots.data_layout(snap.box, title, uirevision=f"gan-g-{snap.dataset}")
    lay["plot_bgcolor"] = "white"
    if not isinstance(p, GANProbe):
        return plots.message_figure("press Train", snap.box, title)
    traces = [plots.points(snap.test[:MAX_POINTS], "held-out data", color=plots.HELDOUT_COLOR, size=4, opacity=0.35)]
    if snap.samples is not None:
        name = f"fake {fake_name(p)}" if source else f"fake {shown_name(p)}(z), z ~ N(0, I)"
        traces.append(plots.points(snap.samples[:MAX_POINTS], name, color=FAKE_COLOR, size=3.5, opacity=0.5))
    var = "x" if source else "z"
    u_name = f"{g}(z) along z" if dim == 1 and not source else f"lines of constant {var}₂"
    traces.append(plots.lines_trace(plots.polylines(p.manifold_u), u_name, "#2166ac", width=1.4))
    if p.manifold_v is not None:
        traces.append(plots.lines_trace(plots.polylines(p.manifold_v), f"lines of constant {var}₁", "#e08214",
                                        width=1.4))
    return {"data": traces, "layout": lay}


def losses_figure(snap: Snapshot) -> dict:
    game = _game(snap)
    d_name = "critic loss E_q f − E_p f" if game.wasserstein else "D loss"
    series = [("d_loss", d_name, 1.0), ("g_loss", "G loss", 1.0)]
    if game.source:  # a CycleGAN: two games summed, and the cycle term
        series = [("d_loss", "D_Y + D_X loss", 1.0), ("g_loss", "G + F GAN terms", 1.0),
                  ("cycle_loss", "cycle terms (standardised units, before λ)", 1.0)]
    traces = plots.curve_traces(snap, series, colors=["#1b7837", "#762a83", RECON_COLOR])
    lay = curves_layout("Losses of the two players (per step)", "loss", uirevision="gan-loss")
    eq_d, eq_g = game.equilibrium_d, game.equilibrium_g
    if np.isfinite(eq_d):
        lay = plots.with_reference_axis(lay)
        traces.append(plots.hline(eq_d, f"D loss when D cannot tell ({eq_d:.3g})", color="#1b7837"))
        if np.isfinite(eq_g):
            traces.append(plots.hline(eq_g, f"G loss then ({eq_g:.3g})", color="#762a83", dash="dot"))
    return {"data": traces, "layout": lay}


def divergence_figure(snap: Snapshot) -> dict:
    game = _game(snap)
    label = game.divergence_label
    series = [("divergence", label, 1.0)]
    if "divergence_x" in snap.curves:  # a CycleGAN's second game, in its source domain
        series.append(("divergence_x", "JS estimate, X vs F(Y)", 1.0))
    traces = plots.curve_traces(snap, series, colors=["#d6604d", "#4393c3"])
    traces.append(plots.hline(0.0, "p = q", color="#999", dash="dot"))
    lay = plots.with_reference_axis(curves_layout(
        "Divergence estimate (held-out data vs fresh fakes)", "estimate (nats)" if not game.wasserstein
        else "critic gap", uirevision="gan-div"))
    inverse = inversion_traces(snap)
    if inverse:  # a BiGAN: how far E is from G⁻¹; a CycleGAN: how far F is from G⁻¹; on their own axis
        cycle = any(t["meta"] == "cycle" for t in inverse)
        for t in inverse:
            del t["meta"]
        traces += inverse
        lay["title"]["text"] = ("Divergence estimates, and the cycle errors" if cycle
                                else "Divergence estimate, and how far E is from G⁻¹")
        top = max((float(np.nanmax(t["y"])) for t in inverse if np.isfinite(t["y"]).any()), default=1.0)
        hi = plots.nice_ceil(max(top, 1e-3) * 1.05)
        lay["yaxis2"] = {"overlaying": "y", "side": "right", "title": {"text": "cycle error" if cycle
                                                                                else "inversion error"},
                         "showgrid": False, "range": [0.0, hi], "tickmode": "linear", "tick0": 0.0,
                         "dtick": plots.nice_ceil(hi / 5)}
        lay["margin"] = dict(lay["margin"], r=60)
    return {"data": traces, "layout": lay}


def modes_figure(snap: Snapshot) -> dict:
    """Mode coverage (right axis) and the fraction of high-quality samples and histogram JS (left)."""
    traces = plots.curve_traces(snap, [("high_quality", "high-quality samples (within 3σ of a mode)", 1.0),
                                       ("hist_js", "histogram JS, real vs fake (bits, lower is better)", 1.0)],
                                colors=["#2ca02c", "#7f7f7f"])
    lay = curves_layout("Mode coverage and sample quality", "fraction / bits", uirevision="gan-modes")
    lay["yaxis"]["range"] = [0, 1.02]
    total = N_MODES.get(snap.dataset)
    if "modes_covered" in snap.curves:
        steps, vals = snap.curves["modes_covered"]
        total = total or int(np.nanmax(vals)) or 1
        traces.append({"type": "scatter", "mode": "lines", "x": steps, "y": vals, "yaxis": "y2",
                       "name": f"modes covered (of {total}, right axis)", "line": {"color": "#d62728", "width": 2.5}})
        lay["yaxis2"] = {"overlaying": "y", "side": "right", "range": [0, total + 0.5], "title": {"text": "modes"},
                         "showgrid": False, "dtick": 2 if total <= 10 else 5, "rangemode": "tozero"}
        lay["margin"] = dict(lay["margin"], r=50)
    else:
        lay["annotations"] = [{"text": "mode coverage: train on 8 or 25 Gaussians", "x": 0.5, "y": 0.92,
                               "xref": "paper", "yref": "paper", "showarrow": False,
                               "font": {"size": 12, "color": "#777"}}]
    return {"data": traces, "layout": lay}


def gradient_figure(snap: Snapshot) -> dict:
    """The mean size of the generator's per-sample gradient: the saturating minimax loss starves G
    early on (D rejects every fake, log(1 − D) is flat there), the non-saturating loss does not."""
    series = [("g_grad_norm", "mean ‖∇ₓℓ_G‖ at the fakes", 1.0)]
    if snap.model_key == "wgan_gp":
        series.append(("critic_grad_norm", "critic ‖∇ₓf(x̂)‖ (the penalty pulls it to 1)", 1.0))
    traces = plots.curve_traces(snap, series, colors=["#762a83", "#1b7837"])
    lay = curves_layout("Gradient reaching the generator (log scale)", "gradient norm", uirevision="gan-grad",
                        log_y=True)
    lay["yaxis"].update(log_ticks(np.concatenate([t["y"] for t in traces]) if traces else []))
    return {"data": traces, "layout": lay}


# --- a GAN with an encoder (BiGAN, notes 6.9): its codes, its reconstructions, how far E is from G⁻¹ ------------

CODE_COLOR = "#2166ac"
RECON_COLOR = "#d6604d"
INVERSION_COLORS = ("#e08214", "#2166ac")  # the divergence curve beside them is RECON_COLOR's red
INVERSION = (("recon_x", "‖G(E(x)) − x‖, held-out x (data units)"), ("recon_z", "‖E(G(z)) − z‖, z ~ N(0, I)"))


def _has_encoder(snap: Snapshot) -> bool:
    return isinstance(snap.probe, GANProbe) and snap.probe.latent_codes is not None


def _readout(snap: Snapshot, key: str) -> str:
    v = snap.latest.get(key)
    return f" = {v:.3g}" if v is not None and np.isfinite(v) else ""


def latent_figure(snap: Snapshot) -> dict:
    """The encoder's codes E(x) of the data over the prior N(0, I) (its 1σ and 2σ circles): where E sends the
    data should look like the prior when the two joints agree (notes 6.9)."""
    title = f"Latent space: codes E(x) over the prior N(0, I) — mean ‖E(G(z)) − z‖{_readout(snap, 'recon_z')}"
    title += f" — step {snap.step}"
    if not _has_encoder(snap):
        return plots.message_figure("a BiGAN's encoder: press Train", (-3, 3, -3, 3), title)
    codes = np.asarray(snap.probe.latent_codes, np.float32)
    finite = codes[np.isfinite(codes).all(1)]
    half = max(3.2, float(np.quantile(np.abs(finite), 0.98)) * 1.1 if finite.size else 3.2)
    half = plots.nice_ceil(half)
    lay = plots.data_layout((-half, half, -half, half), title, uirevision=f"gan-latent-{snap.dataset}")
    lay["xaxis"]["title"]["text"], lay["yaxis"]["title"]["text"] = "z₁", "z₂"
    lay["plot_bgcolor"] = "white"
    rings = np.concatenate([np.vstack([plots.ellipse_xy((0, 0), np.eye(2), r, 90), [[np.nan, np.nan]]])
                            for r in (1.0, 2.0)]).astype(np.float32)
    traces = [plots.lines_trace(rings, "prior N(0, I): 1σ and 2σ circles", "#888", width=1.2, dash="dot"),
              plots.points(codes[:MAX_POINTS * 2], "codes E(x) of the data", color=CODE_COLOR, size=4, opacity=0.6)]
    return {"data": traces, "layout": lay}


def reconstruction_segments(start: np.ndarray, end: np.ndarray, head: float) -> np.ndarray:
    """Segments (NaN-broken) of true-length arrows start -> end, each with a head of at most `head`."""
    start, end = np.asarray(start, np.float32), np.asarray(end, np.float32)
    d = end - start
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    unit = d / np.maximum(norm, 1e-12)
    h = np.minimum(head, 0.4 * norm)
    c, s = math.cos(0.45), math.sin(0.45)
    left = end - h * (unit @ np.array([[c, s], [-s, c]], np.float32))
    right = end - h * (unit @ np.array([[c, -s], [s, c]], np.float32))
    nan = np.full_like(start, np.nan)
    return np.stack([start, end, nan, left, end, right, nan], 1).reshape(-1, 2).astype(np.float32)


def reconstruction_figure(snap: Snapshot) -> dict:
    """Data points x and their reconstructions G(E(x)), joined by an arrow of true length: E = G⁻¹ would
    leave every arrow a dot."""
    title = f"Reconstructions x → G(E(x)) — mean ‖G(E(x)) − x‖{_readout(snap, 'recon_x')} — step {snap.step}"
    if not _has_encoder(snap):
        return plots.message_figure("a BiGAN's reconstructions: press Train", snap.box, title)
    p = snap.probe
    lay = plots.data_layout(snap.box, title, uirevision=f"gan-recon-{snap.dataset}")
    lay["plot_bgcolor"] = "white"
    seg = reconstruction_segments(p.recon_from, p.reconstructions, 0.025 * (snap.box[1] - snap.box[0]))
    traces = [plots.points(snap.train[:MAX_POINTS], "data", color=plots.HELDOUT_COLOR, size=3.5, opacity=0.3),
              plots.lines_trace(seg, "x → G(E(x))", ARROW_COLOR, width=1.2),
              plots.points(p.recon_from, "x (start)", color=REAL_COLOR, size=5, opacity=0.9),
              plots.points(p.reconstructions, "G(E(x))", color=RECON_COLOR, size=5, opacity=0.9)]
    return {"data": traces, "layout": lay}


def inversion_traces(snap: Snapshot) -> list[dict]:
    """The inversion errors' curves on a right axis of the divergence panel: a BiGAN's (E against G⁻¹) or a
    CycleGAN's (F against G⁻¹, both ways). Each trace's "meta" says which ("inversion" or "cycle")."""
    out = []
    for series, meta in ((INVERSION, "inversion"), (CYCLE, "cycle")):
        for (key, label), color in zip(series, INVERSION_COLORS):
            if key in snap.curves:
                steps, vals = snap.curves[key]
                out.append({"type": "scatter", "mode": "lines", "x": steps, "y": np.asarray(vals, np.float32),
                            "yaxis": "y2", "name": f"{label} (right axis)", "line": {"color": color, "width": 2},
                            "meta": meta})
    return out


# --- a GAN between two domains (CycleGAN, notes 6.10): the map x -> G(x), the cycle x -> F(G(x)) ----------------

SOURCE_COLOR = "#4393c3"
CYCLE = (("cycle_x", "‖F(G(x)) − x‖₁, held-out x"), ("cycle_y", "‖G(F(y)) − y‖₁, held-out y"))


def _has_source(snap: Snapshot) -> bool:
    return isinstance(snap.probe, GANProbe) and snap.probe.source is not None and snap.probe.source_xy is not None


def _box_around(*clouds: np.ndarray, base=None) -> tuple[float, float, float, float]:
    """A square box holding the finite points of every cloud (and `base`, a box), with a 10% margin."""
    pts = np.concatenate([np.asarray(c, np.float32).reshape(-1, 2) for c in clouds])
    pts = pts[np.isfinite(pts).all(1)]
    lo = pts.min(0) if pts.size else np.array([-1.0, -1.0])
    hi = pts.max(0) if pts.size else np.array([1.0, 1.0])
    if base is not None:
        lo, hi = np.minimum(lo, [base[0], base[2]]), np.maximum(hi, [base[1], base[3]])
    mid, half = (lo + hi) / 2, float(max(hi - lo)) / 2 * 1.1 + 1e-6
    return float(mid[0] - half), float(mid[0] + half), float(mid[1] - half), float(mid[1] + half)


def translation_figure(snap: Snapshot) -> dict:
    """Source points x, the data y, and arrows x -> G(x) of true length from held-out source points to their
    translations: what G does to each point, which no sample-only picture shows."""
    source = snap.probe.source if isinstance(snap.probe, GANProbe) else None
    title = f"Translation x → G(x): {source or 'X'} → {snap.dataset} — step {snap.step}"
    if not _has_source(snap):
        return plots.message_figure("a CycleGAN's map: press Train", snap.box, title)
    p = snap.probe
    box = _box_around(p.source_xy, base=snap.box)
    lay = plots.data_layout(box, title, uirevision=f"gan-translate-{snap.dataset}-{source}")
    lay["plot_bgcolor"] = "white"
    seg = reconstruction_segments(p.map_from, p.translated, 0.02 * (box[1] - box[0]))
    traces = [plots.points(p.source_xy[:MAX_POINTS], f"source X ({source})", color=SOURCE_COLOR, size=3.5,
                           opacity=0.3),
              plots.points(snap.train[:MAX_POINTS], f"data Y ({snap.dataset})", color=REAL_COLOR, size=3.5,
                           opacity=0.3),
              plots.lines_trace(seg, "x → G(x)", "#555", width=1.0),
              plots.points(p.map_from, "x (start)", color=SOURCE_COLOR, size=5, opacity=0.95),
              plots.points(p.translated, "G(x)", color=FAKE_COLOR, size=5, opacity=0.95)]
    return {"data": traces, "layout": lay}


def cycle_figure(snap: Snapshot) -> dict:
    """In the source domain: its points, the reverse map's fakes F(y), and arrows x -> F(G(x)) of true length
    (the cycle error: F = G⁻¹ would leave every arrow a dot)."""
    source = snap.probe.source if isinstance(snap.probe, GANProbe) else None
    title = f"Cycle in {source or 'X'}: x → F(G(x)), mean ‖·‖₁{_readout(snap, 'cycle_x')} — step {snap.step}"
    if not _has_source(snap):
        return plots.message_figure("a CycleGAN's cycle: press Train", snap.box, title)
    p = snap.probe
    box = _box_around(p.source_xy)
    lay = plots.data_layout(box, title, uirevision=f"gan-cycle-{snap.dataset}-{source}")
    lay["plot_bgcolor"] = "white"
    seg = reconstruction_segments(p.map_from, p.cycled, 0.025 * (box[1] - box[0]))
    traces = [plots.points(p.source_xy[:MAX_POINTS], f"source X ({source})", color=SOURCE_COLOR, size=3.5,
                           opacity=0.35),
              plots.points(p.reverse_xy[:MAX_POINTS], "F(y), y ∈ data (D_X's fakes)", color=FAKE_COLOR, size=3.5,
                           opacity=0.35),
              plots.lines_trace(seg, "x → F(G(x))", RECON_COLOR, width=1.2),
              plots.points(p.map_from, "x (start)", color=SOURCE_COLOR, size=5, opacity=0.95),
              plots.points(p.cycled, "F(G(x))", color=RECON_COLOR, size=5, opacity=0.95)]
    return {"data": traces, "layout": lay}


@view(family="gan")
def gan_frame(snap: Snapshot, show_push: bool = True, **_) -> dict[str, dict]:
    """Every GAN: D surface + real/fake + G's push, the generator manifold, losses, divergence,
    mode coverage and the generator's gradient. A GAN with an encoder (BiGAN) adds its latent codes ("latent")
    and its reconstructions ("recon"), a GAN between two domains (CycleGAN) its map ("translate") and its cycle
    ("cycle"): panels the GAN tab shows only while such a model is picked."""
    figs = {"main": discriminator_figure(snap, show_push), "samples": manifold_figure(snap),
            "curves": losses_figure(snap), "extra": divergence_figure(snap), "modes": modes_figure(snap),
            "grad": gradient_figure(snap)}
    if _has_encoder(snap) or snap.model_key == "bigan":
        figs.update(latent=latent_figure(snap), recon=reconstruction_figure(snap))
    if _has_source(snap) or snap.model_key == "cyclegan":
        figs.update(translate=translation_figure(snap), cycle=cycle_figure(snap))
    return figs
