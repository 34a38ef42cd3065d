"""Views of the latent-variable models (notes ch. 4)."""

from __future__ import annotations

import numpy as np

from .. import plots
from . import view


@view("mog")
def mixture_frame(snap, log_scale: bool = False, **_) -> dict[str, dict]:
    """Mixture of Gaussians (notes 4.1): density, points coloured by their most responsible
    component z = argmax_k p(z=k|x), each component's mean and 1σ/2σ ellipses, and samples
    coloured by the component that generated them."""
    ex = snap.extras
    title = f"Density {'log p(x)' if log_scale else 'p(x)'} and components — step {snap.step}"
    lay = plots.data_layout(snap.box, title, uirevision=f"mog-{snap.dataset}")
    if snap.log_density is None or "means" not in ex:
        return {"main": plots.message_figure("press Train", snap.box, title)}
    K = len(ex["means"])
    colors = [plots.PALETTE[k % len(plots.PALETTE)] for k in range(K)]
    labels = ex["point_labels"]
    traces = [plots.density_heatmap(snap, log_scale),
              plots.points(snap.train, "data (colour: z = argmax p(z|x))", color=plots.label_marker(labels),
                           size=5, opacity=0.85, line_color="white")]
    traces += plots.ellipses(ex["means"], ex["covariances"], 1.0, "1σ", colors, width=2.5)
    traces += plots.ellipses(ex["means"], ex["covariances"], 2.0, "2σ", colors, dash="dash",
                             width=1.5)
    w = ex["weights"]
    traces.append({"type": "scatter", "mode": "markers+text", "x": ex["means"][:, 0].astype(np.float32),
                   "y": ex["means"][:, 1].astype(np.float32), "name": "means (size ∝ πₖ)",
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
