"""Views of the latent-variable models (notes ch. 4)."""

from __future__ import annotations

import textwrap

import numpy as np
from plotly.colors import cyclical

from .. import plots, vae_svi
from ..snapshot import MixtureProbe, Snapshot, VAEProbe
from . import view


@view("mog")
def mixture_frame(snap: Snapshot, log_scale: bool = False, **_) -> dict[str, dict]:
    """Mixture of Gaussians (notes 4.1): density, points coloured by their most responsible
    component z = argmax_k p(z=k|x), each component's mean and 1σ/2σ ellipses, and samples
    coloured by the component that generated them."""
    p = snap.probe
    title = f"Density {'log p(x)' if log_scale else 'p(x)'} and components — step {snap.step}"
    lay = plots.data_layout(snap.box, title, uirevision=f"mog-{snap.dataset}")
    if snap.log_density is None or not isinstance(p, MixtureProbe):
        return {"main": plots.message_figure("press Train", snap.box, title)}
    K = len(p.means)
    colors = [plots.PALETTE[k % len(plots.PALETTE)] for k in range(K)]
    labels = p.point_labels
    traces = [plots.density_heatmap(snap, log_scale),
              plots.points(snap.train, "data (colour: z = argmax p(z|x))", color=plots.label_marker(labels),
                           size=5, opacity=0.85, line_color="white")]
    traces += plots.ellipses(p.means, p.covariances, 1.0, "1σ", colors, width=2.5)
    traces += plots.ellipses(p.means, p.covariances, 2.0, "2σ", colors, dash="dash",
                             width=1.5)
    w = p.weights
    traces.append({"type": "scatter", "mode": "markers+text", "x": p.means[:, 0].astype(np.float32),
                   "y": p.means[:, 1].astype(np.float32), "name": "means (size ∝ πₖ)",
                   "text": [str(k + 1) for k in range(K)], "textposition": "top center",
                   "textfont": {"color": "white", "size": 11},
                   "marker": {"symbol": "x", "size": (8 + 40 * np.sqrt(w)).astype(np.float32),
                              "color": colors, "line": {"width": 2, "color": "white"}},
                   "customdata": w.astype(np.float32),
                   "hovertemplate": "component %{text}<br>π=%{customdata:.3f}<extra></extra>"})
    main = {"data": traces, "layout": lay}
    samp_colors = plots.label_marker(snap.sample_labels) if snap.sample_labels is not None else None
    samples = plots.samples_figure(snap, title=f"Samples: z ~ Cat(π), x ~ N(μ_z, Σ_z) — step {snap.step}",
                                   colors=samp_colors)
    return {"main": main, "samples": samples, "curves": plots.likelihood_figure(snap),
            "extra": plots.distance_figure(snap)}


# --- the variational autoencoder (notes 4.2-4.5) ----------------------------------------------------

VAE_PANELS = ("latent", "manifold", "posterior", "estimator", "svi")
Q_COLOR = "#e4572e"  # the encoder's q(z|x)
SVI_COLOR = "#16a34a"  # the same point's q refined by SVI
POST_COLOR = "#2166ac"  # the true posterior p(z|x)
LINE_COLORS = ("#1f77b4", "#d62728")  # decoder lines of constant z1 / constant z2
BLUES = [[0.0, "#ffffff"], [1.0, "#2166ac"]]
CYCLIC = [[i / (len(cyclical.HSV) - 1), c] for i, c in enumerate(cyclical.HSV)]  # hue wheel, for angles
K_VALUES = np.array([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])
REPEATS = 30
GRID_TOL = 0.05  # nats: the latent grid resolves a posterior when a grid half as fine agrees this well
# (models.vae_quadrature.TOL_MEAN and TOL_POINT; views stay free of torch)
NOTE_CHARS = 60  # the heatmap's quadrature note wraps at this width (a half-page panel's)
GAP_NAME = "approximation + amortisation gap"  # Cremer et al. (2018): KL(q ‖ p(z|x)) is both


def position_colors(xy: np.ndarray, box) -> dict:
    """Marker colours from each point's angle around the data box's centre, on a cyclic colour scale, so a
    point can be followed from data space to latent space (numbers, cheap to send)."""
    xy = np.asarray(xy, np.float64)
    cx, cy = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
    angle = (np.arctan2(xy[:, 1] - cy, xy[:, 0] - cx) / (2 * np.pi)) % 1.0
    return {"color": angle.astype(np.float32), "colorscale": CYCLIC, "cmin": 0.0, "cmax": 1.0, "showscale": False}


def node_terms(p: VAEProbe, x: np.ndarray) -> np.ndarray:
    """log w_j + log N(x; mu(z_j), diag sigma(z_j)^2) over the latent grid: the discrete joint log p(x, z_j)
    whose logsumexp is the model's log p(x) (the same quadrature as its log_prob)."""
    mu = p.node_mean.astype(np.float64)
    sig = p.node_sigma.astype(np.float64)
    z = (x[None, :] - mu) / sig
    return p.node_log_w.astype(np.float64) + (-0.5 * z ** 2 - np.log(sig) - 0.5 * np.log(2 * np.pi)).sum(1)


def grid_disagreement(p: VAEProbe, terms: np.ndarray) -> float:
    """How far (nats) the latent grid's log p(x) for one point moves on the grid of twice the spacing
    (every other node along each axis, weights 2^d): above GRID_TOL the grid does not resolve this point's
    posterior (a small decoder σ), and what the panels compute on it is rough."""
    m, d = terms.shape[0], int(p.latent_dim)
    k = np.arange(m)
    if d == 1:
        sub = k % 2 == 0
    else:
        P = int(p.nodes_per_axis)
        sub = ((k % P) % 2 == 0) & ((k // P) % 2 == 0)
    return float(abs(_logsumexp(terms[sub]) + d * np.log(2.0) - _logsumexp(terms)))


def _logsumexp(a: np.ndarray, axis=None) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    return (top + np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True))).squeeze(axis)


def q_log_mass(p: VAEProbe, i: int) -> np.ndarray:
    """log of q(z|x_i) discretised on the latent grid (normalised over the nodes)."""
    m, s = p.enc_mean[i].astype(np.float64), p.enc_std[i].astype(np.float64)
    lq = (-0.5 * ((p.nodes - m) / s) ** 2 - np.log(s)).sum(1)
    return lq - _logsumexp(lq)


def estimator_spread(terms: np.ndarray, log_q: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """log of the estimates of p(x) from k samples, REPEATS times, for k in K_VALUES (notes 4.3.2-4.3.3),
    on the latent grid (z is one of its m nodes, p(x, z_j) = exp(terms_j)):
    naive Monte Carlo, z uniform: p ~= m/k sum_i p(x, z_i); importance sampling, z ~ q(z|x):
    p ~= 1/k sum_i p(x, z_i) / q(z_i). Both are unbiased for the grid's p(x); E[log] of the second is
    the IWAE_k bound (k = 1: the ELBO)."""
    rng = np.random.default_rng(seed)
    kmax, m = int(K_VALUES[-1]), terms.shape[0]
    naive = np.log(m) + terms[rng.integers(0, m, (REPEATS, kmax))]
    cdf = np.cumsum(np.exp(log_q))
    j = np.minimum(np.searchsorted(cdf, rng.random((REPEATS, kmax)) * cdf[-1]), m - 1)
    weighted = terms[j] - log_q[j]
    out = {}
    for name, vals in (("naive", naive), ("is", weighted)):
        out[name] = np.stack([_logsumexp(vals[:, :k], axis=1) - np.log(k) for k in K_VALUES], 1)  # (REPEATS, K)
    return out


def _axis_layout(title: str, xt: str, yt: str, uirevision: str, xr=None, yr=None, square=False) -> dict:
    lay = plots.data_layout((-1, 1, -1, 1), title, uirevision=uirevision)
    lay["xaxis"] = {"title": {"text": xt}, "zeroline": False, "showgrid": False}
    lay["yaxis"] = {"title": {"text": yt}, "zeroline": False, "showgrid": False}
    if xr is not None:
        lay["xaxis"]["range"] = list(map(float, xr))
    if yr is not None:
        lay["yaxis"]["range"] = list(map(float, yr))
    if square:
        lay["yaxis"].update(scaleanchor="x", scaleratio=1, constrain="domain")
        lay["xaxis"]["constrain"] = "domain"
    return lay


def _star(xy, name: str, color: str = Q_COLOR, symbol: str = "star", size: float = 15) -> dict:
    tr = plots.points(np.asarray(xy, np.float32).reshape(-1, 2), name, color=color, size=size, opacity=1.0,
                      symbol=symbol, line_color="white")
    tr["marker"]["line"]["width"] = 1.5
    return tr


def _diag_ellipses(m, s, name: str, color: str) -> list[dict]:
    covs = [np.diag(np.asarray(s, np.float64) ** 2)]
    out = []
    for k, dash in ((1.0, "solid"), (2.0, "dash"), (3.0, "dot")):
        out += plots.ellipses([m], covs, k, f"{name} 1σ/2σ/3σ", [color], dash=dash, width=2, showlegend=k == 1.0)
    return out


def vae_density_figure(snap: Snapshot, log_scale: bool, x: np.ndarray) -> dict:
    p: VAEProbe = snap.probe
    nodes = f"{p.nodes_per_axis}{'²' if p.latent_dim == 2 else ''}"
    title = f"Density p(x) = ∫ p(z) p(x|z) dz — step {snap.step}"
    heat = plots.density_heatmap(snap, log_scale)
    heat["zsmooth"] = "fast"
    traces = [heat, plots.points(snap.train, "training data", color="white", size=3.5, opacity=0.5),
              _star(x, "chosen point")]
    lay = plots.data_layout(snap.box, title, uirevision=f"vae-dens-{snap.dataset}")
    if p.quad_check <= GRID_TOL:
        note = f"quadrature on {nodes} latent nodes; a grid half as fine agrees within {p.quad_check:.1g} nats"
    elif p.finer_at_rest:  # a live frame keeps to the configured grid
        note = (f"live heatmap on {nodes} latent nodes, approximate (a grid half as fine differs by "
                f"{p.quad_check:.2g} nats): finer latent grids when training stops; the NLL checks every point")
    else:  # the heatmap shares one latent grid between all points; the NLL checks every point
        note = (f"approximate heatmap: even {nodes} latent nodes are too coarse for these posteriors (a grid "
                f"half as fine differs by {p.quad_check:.2g} nats); the NLL checks every point on its own grid")
    lay["annotations"] = [{"text": "<br>".join(textwrap.wrap(note, NOTE_CHARS)), "x": 0.5, "y": 0.0, "xref": "paper",
                           "yref": "paper", "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                           "font": {"size": 10, "color": "#222"}, "bgcolor": "rgba(255,255,255,0.75)"}]
    return {"data": traces, "layout": lay}


def vae_latent_figure(snap: Snapshot, i: int, colors: dict) -> dict:
    """Encoder means m(x) coloured by the data point's position, over the aggregate posterior
    q(z) = 1/n sum_i q(z|x_i) and the prior's contours; the chosen point's q(z|x)."""
    p: VAEProbe = snap.probe
    axis = p.latent_axis
    m, s = p.enc_mean, p.enc_std
    if p.latent_dim == 1:
        prior = np.exp(-0.5 * axis ** 2) / np.sqrt(2 * np.pi)
        qi = np.exp(-0.5 * ((axis - m[i, 0]) / s[i, 0]) ** 2) / (s[i, 0] * np.sqrt(2 * np.pi))
        top = float(max(prior.max(), p.aggregate.max()))
        rng = np.random.default_rng(0)
        y = -top * (0.08 + 0.12 * rng.random(m.shape[0]))
        traces = [{"type": "scatter", "x": axis, "y": p.aggregate.astype(np.float32), "mode": "lines",
                   "fill": "tozeroy", "name": "aggregate posterior q(z)", "line": {"color": "#6baed6"}},
                  {"type": "scatter", "x": axis, "y": prior.astype(np.float32), "mode": "lines",
                   "name": "prior N(0, 1)", "line": {"color": "#444", "dash": "dash"}},
                  {"type": "scatter", "x": axis, "y": np.minimum(qi, 2 * top).astype(np.float32), "mode": "lines",
                   "name": "q(z|x) of the chosen point", "line": {"color": Q_COLOR, "width": 2}},
                  {"type": "scatter", "mode": "markers", "x": m[:, 0].astype(np.float32), "y": y.astype(np.float32),
                   "name": "encoder means m(x) (colour: x's position)", "hoverinfo": "skip",
                   "marker": {**colors, "size": 4, "opacity": 0.8}}]
        lay = _axis_layout(f"Latent space: q(z) vs prior — step {snap.step}", "z", "density",
                           f"vae-lat1-{snap.dataset}", xr=(axis[0], axis[-1]), yr=(-0.22 * top, 1.15 * top))
        return {"data": traces, "layout": lay}
    circles = []
    for r in (1.0, 2.0, 3.0):
        t = np.linspace(0, 2 * np.pi, 80)
        circles.append(np.stack([r * np.cos(t), r * np.sin(t)], 1))
    agg = p.aggregate
    traces = [plots.heatmap(axis, axis, agg, "aggregate posterior q(z)", colorscale=BLUES, zmin=0.0,
                            zmax=plots.nice_ceil(float(np.quantile(agg, 0.995))) or 1.0, showscale=False),
              plots.lines_trace(plots.polylines(np.stack(circles)), "prior 1, 2, 3σ", "#444", dash="dash"),
              plots.points(m, "m(x), coloured by x's place", color=colors, size=4.5, opacity=0.85),
              *_diag_ellipses(m[i], s[i], "q(z|x)", Q_COLOR), _star(m[i], "chosen point")]
    traces[0]["zsmooth"] = "fast"
    lay = _axis_layout(f"Latent space: means of q(z|x) over q(z) — step {snap.step}", "z₁", "z₂",
                       f"vae-lat-{snap.dataset}", xr=(axis[0], axis[-1]), yr=(axis[0], axis[-1]), square=True)
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def vae_manifold_figure(snap: Snapshot, x: np.ndarray, colors: dict) -> dict:
    """The decoder mean mu(z) along latent grid lines (2D) or along the latent axis (1D), over the data."""
    p: VAEProbe = snap.probe
    traces = [plots.points(snap.train, "training data (colour: position)", color=colors, size=3.5, opacity=0.45)]
    if p.latent_dim == 1:
        title = f"Decoder μ(z), z ∈ [−3.5, 3.5] — step {snap.step}"
        c = p.curve_x
        traces += [{"type": "scatter", "mode": "lines+markers", "x": c[:, 0], "y": c[:, 1], "name": "μ(z)",
                    "line": {"color": "#333", "width": 1.5},
                    "marker": {"color": p.curve_z, "colorscale": "RdBu", "size": 5, "showscale": True,
                               "colorbar": {"title": {"text": "z", "side": "right"}, "thickness": 12, "len": 0.6}}}]
    else:
        title = f"Decoder μ(z) on a latent grid in [−3.5, 3.5]² — step {snap.step}"
        traces += [plots.lines_trace(plots.polylines(lines), f"lines of constant z{sub}", color, width=1.3)
                   for lines, sub, color in ((p.lines_z1, "₁", LINE_COLORS[0]), (p.lines_z2, "₂", LINE_COLORS[1]))]
        mid = len(p.line_levels) // 2
        traces += [plots.lines_trace(p.lines_z1[mid], "z₁ = 0", LINE_COLORS[0], width=3.5, showlegend=False),
                   plots.lines_trace(p.lines_z2[mid], "z₂ = 0", LINE_COLORS[1], width=3.5, showlegend=False)]
    traces.append(_star(x, "chosen point"))
    lay = plots.data_layout(snap.box, title, uirevision=f"vae-man-{snap.dataset}")
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def point_elbo(p: VAEProbe, i: int, terms: np.ndarray) -> float:
    """ELBO(x_i) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) (notes 4.5): the expectation by the latent grid's
    quadrature with q's normalised weights on the nodes, the KL in closed form."""
    log_q = q_log_mass(p, i)
    recon = float(np.sum(np.exp(log_q) * (terms - p.node_log_w)))
    m, s = p.enc_mean[i].astype(np.float64), p.enc_std[i].astype(np.float64)
    return recon - 0.5 * float(np.sum(m ** 2 + s ** 2 - 1.0 - 2.0 * np.log(s)))


def rough_note(p: VAEProbe, i: int, terms: np.ndarray) -> str:
    """Why the chosen point's grid numbers are rough ("" when they are not): its posterior or its q(z|x) is
    narrower than the latent grid resolves."""
    off = grid_disagreement(p, terms)
    if off > GRID_TOL:
        return f"rough: the latent grid is too coarse for this posterior (half as fine: {off:.2g} nats off)"
    if float(p.enc_std[i].min()) < 0.5 * p.node_spacing:
        return "rough: q(z|x) is narrower than the latent grid"
    return ""


def vae_posterior_figure(snap: Snapshot, i: int, terms: np.ndarray, log_px: float, svi: dict | None = None) -> dict:
    """The true posterior p(z|x) = p(x, z) / p(x) on the latent grid next to the encoder's q(z|x). The gap
    between them, KL(q || p(z|x)) = log p(x) - ELBO (notes 4.3.4), is the *inference gap* of Cremer et al.
    (2018): the approximation gap (the best diagonal Gaussian is not p(z|x)) plus the amortisation gap (the
    encoder's q for this x is not that best Gaussian, notes 4.4.5); the legend names it so."""
    p: VAEProbe = snap.probe
    h = p.node_spacing
    d = p.latent_dim
    post = np.exp(terms - log_px) / h ** d  # density on the nodes
    m, s = p.enc_mean[i].astype(np.float64), p.enc_std[i].astype(np.float64)
    gap = log_px - point_elbo(p, i, terms)
    rough = rough_note(p, i, terms)
    name = (f"KL(q ‖ p(z|x)) = log p(x) − ELBO {'≈' if rough else '='} {gap:.3f} nats: {GAP_NAME}"
            + (f" ({rough})" if rough else ""))
    title = f"Point #{i}: true p(z|x) vs encoder q(z|x) — step {snap.step}"
    nodes = p.nodes
    if d == 1:
        z = nodes[:, 0].astype(np.float64)
        qd = np.exp(-0.5 * ((z - m[0]) / s[0]) ** 2) / (s[0] * np.sqrt(2 * np.pi))
        lo, hi = _window(z, post, qd)
        keep = (z >= lo) & (z <= hi)
        traces = [{"type": "scatter", "mode": "lines", "x": z[keep].astype(np.float32),
                   "y": post[keep].astype(np.float32), "name": "true posterior p(z|x)", "fill": "tozeroy",
                   "line": {"color": POST_COLOR, "width": 2}},
                  {"type": "scatter", "mode": "lines", "x": z[keep].astype(np.float32),
                   "y": qd[keep].astype(np.float32), "name": "encoder q(z|x)",
                   "line": {"color": Q_COLOR, "width": 2, "dash": "dash"}},
                  *([{"type": "scatter", "mode": "lines", "x": z[keep].astype(np.float32),
                      "y": (np.exp(-0.5 * ((z[keep] - svi["m"][0]) / svi["s"][0]) ** 2)
                            / (svi["s"][0] * np.sqrt(2 * np.pi))).astype(np.float32),
                      "name": "q* refined by SVI (notes 4.4.1)",
                      "line": {"color": SVI_COLOR, "width": 2, "dash": "dot"}}]
                    if svi is not None else []),
                  {"type": "scatter", "mode": "lines", "x": [float(lo)], "y": [0.0], "name": name,
                   "line": {"color": "rgba(0,0,0,0)"}}]
        return {"data": traces, "layout": _axis_layout(title, "z", "density", "vae-post1", xr=(lo, hi))}
    P = p.nodes_per_axis
    axis = nodes[:P, 0].astype(np.float64)
    grid = post.reshape(P, P)
    qd = np.exp(-0.5 * (((nodes - m) / s) ** 2).sum(1)).reshape(P, P)
    lo1, hi1 = _window(axis, grid.sum(0), qd.sum(0))
    lo2, hi2 = _window(axis, grid.sum(1), qd.sum(1))
    half = plots.nice_ceil(max(hi1 - lo1, hi2 - lo2) / 2)  # a window that moves in steps, not every frame
    c1, c2 = (plots.step_floor((v + w) / 2, half / 4) for v, w in ((lo1, hi1), (lo2, hi2)))
    kx = (axis >= c1 - half - h) & (axis <= c1 + half + h)
    ky = (axis >= c2 - half - h) & (axis <= c2 + half + h)
    heat = plots.heatmap(axis[kx], axis[ky], grid[np.ix_(ky, kx)], "true posterior p(z|x)", colorscale=BLUES,
                         zmin=0.0, colorbar_title="p(z|x)")
    heat["zsmooth"] = "fast"
    pm = (post[:, None] * nodes).sum(0) * h ** 2
    refined = _diag_ellipses(svi["m"], svi["s"], "q* refined by SVI (notes 4.4.1)", SVI_COLOR) if svi else []
    traces = [heat, *_diag_ellipses(m, s, "encoder q(z|x)", Q_COLOR), *refined, _star(m, "q's mean m(x)", size=12),
              _star(pm, "posterior mean E[z|x]", color=POST_COLOR, symbol="x", size=12),
              {"type": "scatter", "mode": "lines", "x": [float(c1)], "y": [float(c2)], "name": name,
               "line": {"color": "rgba(0,0,0,0)"}}]
    lay = _axis_layout(title, "z₁", "z₂", f"vae-post-{snap.dataset}-{i}",
                       xr=(c1 - half, c1 + half), yr=(c2 - half, c2 + half), square=True)
    lay["plot_bgcolor"] = "white"
    return {"data": traces, "layout": lay}


def vae_svi_figure(snap: Snapshot, i: int, svi: dict, enc_elbo: float, log_px: float, rough: str) -> dict:
    """Per-point inference (notes 4.4.1): the chosen point's ELBO as SVI refines its q from the encoder's, between
    the encoder's ELBO and log p(x). What SVI gains is the amortisation gap; what is left, the approximation gap."""
    path = np.asarray(svi["path"], np.float64)
    best = float(path[-1])
    amort, approx = best - enc_elbo, log_px - best
    eq = "≈" if rough else "="
    k = np.arange(len(path), dtype=np.float32)
    traces = [{"type": "scatter", "mode": "lines", "x": k, "y": path.astype(np.float32),
               "name": "ELBO of q refined by SVI (gradient steps on this point's ELBO)",
               "line": {"color": SVI_COLOR, "width": 2.5}},
              plots.hline(log_px, f"log p(x) {eq} {log_px:.3f} (exact, by quadrature)", color=POST_COLOR, dash="solid"),
              plots.hline(enc_elbo, f"encoder's ELBO {eq} {enc_elbo:.3f}", color=Q_COLOR)]
    title = (f"Point #{i}: amortisation gap {eq} {amort:.3f} nats (closed by SVI), approximation gap {eq} "
             f"{approx:.3f} (left) — step {snap.step}")
    lay = plots.curves_layout(title, "nats", uirevision=f"vae-svi-{i}", height=470)
    lay["xaxis"]["title"]["text"] = "SVI step (gradient ascent on this point's ELBO, from the encoder's q)"
    lay["margin"]["b"] = 120
    return {"data": traces, "layout": plots.with_reference_axis(lay)}


def _window(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """A range of z holding both densities' mass (above 1e-3 of their peaks), with a margin."""
    sel = (a >= 1e-3 * a.max()) | (b >= 1e-3 * b.max())
    if not sel.any():
        return float(z[0]), float(z[-1])
    lo, hi = float(z[sel].min()), float(z[sel].max())
    pad = max(0.15 * (hi - lo), 0.3)
    return lo - pad, hi + pad


def vae_estimator_figure(snap: Snapshot, i: int, terms: np.ndarray, log_px: float) -> dict:
    """Naive Monte Carlo vs importance sampling estimates of log p(x) for the chosen point as k grows:
    median and 10-90% band over repeats (notes 4.3.2-4.3.3)."""
    spread = estimator_spread(terms, q_log_mass(snap.probe, i), seed=i)
    lo_y = log_px - 8.0
    ks = K_VALUES.astype(np.float32)
    traces = []
    for key, label, color in (("naive", "naive MC, z uniform on the grid", "#7b3294"),
                              ("is", "importance sampling, z ~ q(z|x)", "#008837")):
        v = np.maximum(spread[key], lo_y)
        q10, q50, q90 = np.percentile(v, [10, 50, 90], axis=0).astype(np.float32)
        traces += [{"type": "scatter", "x": ks, "y": q90, "mode": "lines", "line": {"width": 0, "color": color},
                    "showlegend": False, "hoverinfo": "skip", "legendgroup": key},
                   {"type": "scatter", "x": ks, "y": q10, "mode": "lines", "line": {"width": 0, "color": color},
                    "fill": "tonexty", "fillcolor": _rgba(color, 0.2), "showlegend": False, "hoverinfo": "skip",
                    "legendgroup": key},
                   {"type": "scatter", "x": ks, "y": q50, "mode": "lines+markers", "name": label + " (median, 10–90%)",
                    "line": {"color": color, "width": 2}, "legendgroup": key}]
    iwae = np.mean(spread["is"], axis=0).astype(np.float32)
    traces.append({"type": "scatter", "x": ks, "y": iwae, "mode": "lines", "name": "mean of log estimate (IS) = IWAE_k",
                   "line": {"color": "#008837", "dash": "dot", "width": 1.5}})
    rough = rough_note(snap.probe, i, terms)
    label = f"log p(x) on the latent grid {'≈' if rough else '='} {log_px:.3f}" + (f" ({rough})" if rough else "")
    traces.append({"type": "scatter", "x": [1.0, float(K_VALUES[-1])], "y": [log_px, log_px], "mode": "lines",
                   "name": label, "line": {"color": "#111", "dash": "dash", "width": 1.5}})
    lay = plots.curves_layout(f"Estimating log p(x) for point #{i} with k samples", "log p̂(x) (nats)",
                              uirevision=f"vae-est-{snap.dataset}")
    lay["xaxis"] = {"title": {"text": "samples k"}, "type": "log", "dtick": 1}  # 1, 10, 100: no minor labels
    lay["yaxis"].update(range=[lo_y - 0.3, log_px + 3.0], zeroline=False)
    lay["legend"] = dict(lay["legend"], y=-0.5, yanchor="top")  # below the axis title
    lay["margin"] = dict(lay["margin"], b=150)
    return {"data": traces, "layout": lay}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _series(snap, key: str, sign: float = 1.0):
    if key not in snap.curves:
        return None
    s, v = snap.curves[key]
    return s, (sign * v).astype(np.float32)


def logp_label(latest: dict) -> str:
    """The held-out log p(x)'s legend: exact (by quadrature, every point verified and not below the
    bounds) with its error bound, or an estimate with how far off it may be (models/latent/vae.py,
    quadrature_report)."""
    err = latest.get("quad_error")
    if err is None:
        return "log p(x) (quadrature)"
    if latest.get("quad_exact", 0.0) >= 1.0:
        return f"log p(x) (quadrature, error ≤ {err:.1g})"
    share = latest.get("quad_unverified", 0.0)
    return f"log p(x) ≈ (estimate ± {err:.2g}; {share:.0%} of points unverified)"


def vae_bounds_figure(snap: Snapshot) -> dict:
    """Held-out log p(x) by quadrature (exact, or labelled an estimate with its error) with the IWAE_k
    bound and the ELBO below it."""
    p = snap.probe
    k = p.k if isinstance(p, VAEProbe) else 1
    traces = []
    iwae = isinstance(p, VAEProbe) and p.iwae_objective
    # the batch's own bound: -loss for IWAE; for the ELBO its logged value (the loss may floor the KL: free bits)
    batch = _series(snap, "loss", -1.0) if iwae else (_series(snap, "batch_elbo") or _series(snap, "loss", -1.0))
    if batch is not None:
        traces.append({"type": "scatter", "mode": "lines", "x": batch[0], "y": batch[1],
                       "name": f"batch {f'IWAE_{k}' if iwae else 'ELBO'}", "line": {"color": "#c7c7c7", "width": 1}})
    for key, label, sign, color in (("test_nll", logp_label(snap.latest), -1.0, "#111111"),
                                    ("test_iwae", f"IWAE, k = {k}", 1.0, "#008837"),
                                    ("test_elbo", "ELBO", 1.0, "#1f77b4")):
        sv = _series(snap, key, sign)
        if sv is not None:
            traces.append({"type": "scatter", "mode": "lines", "x": sv[0], "y": sv[1], "name": label,
                           "line": {"color": color, "width": 2.2}})
    lay = plots.curves_layout("Held-out log p(x) and its lower bounds", "nats per point")
    lay["uirevision"] = f"vae-bounds-{snap.dataset}"
    lay["legend"] = dict(lay["legend"], y=-0.34, yanchor="top", font={"size": 10})
    lay["margin"] = dict(lay["margin"], b=84)
    if snap.data_nll is not None:
        traces.append(plots.hline(-snap.data_nll, "true density"))
        lay = plots.with_reference_axis(lay)
    held = [t["y"] for t in traces[1:] if t.get("xaxis") != "x2"] if traces else []
    if held and any(len(y) for y in held):
        vals = np.concatenate([y[-max(1, len(y) // 2):] for y in held if len(y)])
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        pad = max(0.3, 0.25 * (hi - lo))
        lay["yaxis"]["range"] = [lo - pad, hi + pad]
    return {"data": traces, "layout": lay}


def vae_terms_figure(snap) -> dict:
    """The ELBO's two terms and the gaps log p(x) - ELBO = KL(q || p(z|x)) (the approximation plus the
    amortisation gap, Cremer et al. 2018) and log p(x) - IWAE_k."""
    traces = []
    for key, label, color in (("test_recon", "E_q log p(x|z)", "#9467bd"),
                              ("test_kl", "KL(q(z|x) ‖ p(z))", "#8c564b")):
        sv = _series(snap, key)
        if sv is not None:
            traces.append({"type": "scatter", "mode": "lines", "x": sv[0], "y": sv[1], "name": label,
                           "line": {"color": color, "width": 2}})
    logp = _series(snap, "test_nll", -1.0)
    est = "≈ " if snap.latest.get("quad_exact", 1.0) < 1.0 else ""  # log p is an estimate: so are the gaps
    for key, label, color in (("test_elbo", f"{est}log p − ELBO = KL(q ‖ p(z|x)): {GAP_NAME}", "#1f77b4"),
                              ("test_iwae", f"{est}log p − IWAE", "#008837")):
        sv = _series(snap, key)
        if sv is not None and logp is not None and len(logp[0]):
            gap = np.interp(sv[0], logp[0], logp[1]) - sv[1]
            traces.append({"type": "scatter", "mode": "lines", "x": sv[0], "y": gap.astype(np.float32), "name": label,
                           "yaxis": "y2", "line": {"color": color, "width": 2, "dash": "dash"}})
    lay = plots.curves_layout("ELBO = E_q log p(x|z) − KL (left); gaps (right, dashed)", "nats per point")
    lay["uirevision"] = f"vae-terms-{snap.dataset}"
    lay["legend"] = dict(lay["legend"], y=-0.34, yanchor="top", font={"size": 10})
    lay["margin"] = dict(lay["margin"], b=84)
    lay["yaxis2"] = {"title": {"text": "gap (nats)"}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                     "showgrid": False, "tickformat": ".2f"}
    lay["margin"] = dict(lay["margin"], r=55)
    return {"data": traces, "layout": lay}


@view("vae")
def vae_frame(snap: Snapshot, log_scale: bool = False, point: int = 0, **_) -> dict[str, dict]:
    """Variational autoencoder (notes 4.2-4.5): the density by quadrature and samples, the bounds and their gap,
    the latent space, the decoder manifold, and for one chosen point its true posterior next to q(z|x)
    and the Monte Carlo estimators of p(x)."""
    p = snap.probe
    if snap.log_density is None or not isinstance(p, VAEProbe):
        return {name: plots.message_figure("press Train", snap.box, name, axes=False)
                for name in ("main", "samples", "curves", "extra", *VAE_PANELS)}
    i = int(min(max(int(point or 0), 0), len(snap.train) - 1, len(p.enc_mean) - 1))
    x = snap.train[i].astype(np.float64)
    terms = node_terms(p, x)
    log_px = float(_logsumexp(terms))
    colors = position_colors(snap.train, snap.box)
    svi = vae_svi.refine(p.nodes, terms - p.node_log_w, p.enc_mean[i], p.enc_std[i], p.node_spacing)
    samples = plots.samples_figure(snap, title=f"Samples: z ~ N(0, I), x ~ N(μ(z), σ(z)²) — step {snap.step}")
    return {"main": vae_density_figure(snap, log_scale, x), "samples": samples,
            "curves": vae_bounds_figure(snap), "extra": vae_terms_figure(snap),
            "latent": vae_latent_figure(snap, i, colors), "manifold": vae_manifold_figure(snap, x, colors),
            "posterior": vae_posterior_figure(snap, i, terms, log_px, svi),
            "estimator": vae_estimator_figure(snap, i, terms, log_px),
            "svi": vae_svi_figure(snap, i, svi, point_elbo(p, i, terms), log_px, rough_note(p, i, terms))}
