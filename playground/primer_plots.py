"""Figures of the "Generative vs discriminative" primer tab (notes 2.2): numpy and plotly's schema
through playground.plots only (never torch, never gradio).

Class 0 is blue, class 1 red, everywhere: points, p(y=1|x) heatmaps (blue → white → red) and curves.
"""

from __future__ import annotations

import numpy as np

from . import plots

CLASS_COLORS = ("#2166ac", "#b2182b")
CLASS_FILL = ("#92c5de", "#f4a582")
POSTERIOR_SCALE = [[0.0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1.0, "#b2182b"]]
MODEL_COLORS = {"nb": "#1b9e77", "qda": "#d95f02", "logreg": "#7570b3", "mlp": "#e7298a"}


def class_points(x, y, what: str, size: float = 5.0, opacity: float = 0.8, showlegend: bool = True) -> list[dict]:
    """Two scatter traces, one per class, outlined so they read on any heatmap."""
    x, y = np.asarray(x), np.asarray(y)
    return [plots.points(x[y == k], f"{what} y={k}", color=CLASS_COLORS[k], size=size, opacity=opacity,
                         line_color="white", showlegend=showlegend) for k in (0, 1)]


def boundary_figure(xs, ys, proba, x_test, y_test, box, title: str, height: int = 400) -> dict:
    """p(y=1 | x) on the grid, its 0.5 contour (the decision boundary) and the held-out points."""
    z = np.asarray(proba, np.float32).reshape(len(ys), len(xs))
    heat = plots.heatmap(xs, ys, z, "p(y=1 | x)", colorscale=POSTERIOR_SCALE, zmin=0.0, zmax=1.0,
                         colorbar_title="p(y=1|x)")
    boundary = {"type": "contour", "x": np.asarray(xs, np.float32), "y": np.asarray(ys, np.float32), "z": z,
                "contours": {"start": 0.5, "end": 0.5, "size": 1.0, "coloring": "none"},
                "line": {"color": "#111", "width": 2}, "showscale": False, "name": "boundary p=½",
                "showlegend": True, "hoverinfo": "skip"}
    lay = plots.data_layout(box, title, uirevision=f"primer-{title}", height=height)
    return {"data": [heat, boundary, *class_points(x_test, y_test, "held-out", size=4.5)], "layout": lay}


def density_figure(xs, ys, log_px, samples, sample_labels, means, covs, box, title: str, height: int = 400) -> dict:
    """The generative model's p(x) (a mixture over the classes), points drawn from it coloured by the
    class they were drawn from, and each class Gaussian's 2σ ellipse."""
    p = np.exp(np.asarray(log_px, np.float64)).reshape(len(ys), len(xs))
    hi = plots.nice_ceil(max(float(np.quantile(p, 0.999)), 1e-12))
    heat = plots.heatmap(xs, ys, p.astype(np.float32), "model density p(x)", zmin=0.0, zmax=hi,
                         colorbar_title="p(x)")
    rings = []
    for k in (0, 1):
        rings += plots.ellipses([means[k]], [covs[k]], 2.0, f"2σ p(x|y={k})", colors=[CLASS_FILL[k]], width=2.0)
    lay = plots.data_layout(box, title, uirevision=f"primer-{title}", height=height)
    return {"data": [heat, *rings, *class_points(samples, sample_labels, "sampled", size=4.0, opacity=0.85)],
            "layout": lay}


def missing_figure(x1s, curves: dict[str, tuple[str, np.ndarray]], x1: float, height: int = 340) -> dict:
    """p(y=1 | x₁) with x₂ unknown, per generative model ({key: (label, values)}), and the chosen x₁."""
    traces = [{"type": "scatter", "mode": "lines", "x": np.asarray(x1s, np.float32),
               "y": np.asarray(v, np.float32), "name": label,
               "line": {"color": MODEL_COLORS.get(k, "#333"), "width": 2.5 + 2.0 * (i == 0),
                        "dash": "solid" if i == 0 else "dash"}}  # the models may agree: the first drawn wider
              for i, (k, (label, v)) in enumerate(curves.items())]
    traces.append({"type": "scatter", "mode": "lines", "x": [x1, x1], "y": [0.0, 1.0], "name": f"x₁ = {x1:.2f}",
                   "line": {"color": "#555", "dash": "dot", "width": 1.5}, "hoverinfo": "name"})
    lay = plots.curves_layout("Generative: p(y=1 | x₁), x₂ integrated out", "p(y=1 | x₁)",
                              uirevision="primer-missing", height=height)
    lay["xaxis"] = {"title": {"text": "x₁ (x₂ unknown)", "standoff": 4}, "range": [float(x1s[0]), float(x1s[-1])],
                    "zeroline": False}
    lay["yaxis"]["range"] = [-0.02, 1.02]
    return {"data": traces, "layout": lay}


def slice_figure(x2s, curves: dict[str, tuple[str, np.ndarray]], marginals: dict[str, tuple[str, float]],
                 x1: float, height: int = 340) -> dict:
    """At the chosen x₁: p(y=1 | x₁, x₂) for every x₂ (what a discriminative model can say: one answer
    per x₂), with the generative models' single answer p(y=1 | x₁) as dashed lines."""
    traces = [{"type": "scatter", "mode": "lines", "x": np.asarray(x2s, np.float32), "y": np.asarray(v, np.float32),
               "name": label, "line": {"color": MODEL_COLORS.get(k, "#333"), "width": 2.5}}
              for k, (label, v) in curves.items()]
    for k, (label, value) in marginals.items():
        traces.append({"type": "scatter", "mode": "lines", "x": [float(x2s[0]), float(x2s[-1])],
                       "y": [value, value], "name": label, "hoverinfo": "name",
                       "line": {"color": MODEL_COLORS.get(k, "#333"), "width": 1.5, "dash": "dash"}})
    lay = plots.curves_layout(f"At x₁ = {x1:.2f}: p(y=1 | x₁, x₂) needs x₂", "p(y=1 | x₁, x₂)",
                              uirevision="primer-slice", height=height)
    lay["xaxis"] = {"title": {"text": "x₂ (unknown to the classifier)", "standoff": 4},
                    "range": [float(x2s[0]), float(x2s[-1])], "zeroline": False}
    # six entries: beside the plot, not under it (there they squash the plot to a strip)
    lay["legend"] = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top", "font": {"size": 11}}
    lay["margin"] = {**lay["margin"], "r": 150, "b": 50}
    lay["yaxis"]["range"] = [-0.02, 1.02]
    return {"data": traces, "layout": lay}
