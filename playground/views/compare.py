"""Figures of the Compare tab: every model's samples side by side, and bars of the shared metrics.

Plain numpy in (rows of playground.compare.table plus each model's samples), figure dicts out.
"""

from __future__ import annotations

import math

import numpy as np

from .. import plots

FAMILY_COLORS = {"autoregressive": "#8c564b", "latent": "#1f77b4", "flow": "#2ca02c", "gan": "#d62728",
                 "ebm": "#9467bd", "diffusion": "#e377c2"}


def samples_grid(rows: list[dict], samples: dict[str, np.ndarray], test: np.ndarray, box, cols: int = 4,
                 height: int = 480, max_rows: int = 2) -> dict:
    """Small multiples: one square panel per model, its samples over the held-out data, in a figure `height` px
    tall (the tab's panel): at most `max_rows` rows (more models: more columns), each panel under a two-line
    title (the model's short name, or its key where the name would not fit; then its NLL or "no density", and its
    status until done)."""
    n = max(1, len(rows))
    ncols = min(n, max(cols, math.ceil(n / max_rows)))
    nrows = math.ceil(n / ncols)
    gap = 0.03
    title = 34 / height  # two lines of 11 px text, in paper units
    w = (1 - gap * (ncols - 1)) / ncols
    h = (1 - nrows * title - gap * (nrows - 1)) / nrows
    layout = {"height": height, "margin": {"l": 10, "r": 10, "t": 6, "b": 6},
              "showlegend": False, "font": plots.FONT, "uirevision": "compare", "annotations": [],
              "plot_bgcolor": "white", "paper_bgcolor": "white"}
    traces = []
    for i, row in enumerate(rows):
        r, c = divmod(i, ncols)
        ax = "" if i == 0 else str(i + 1)
        x0 = c * (w + gap)
        y1 = 1 - r * (h + title + gap) - title
        layout[f"xaxis{ax}"] = {"domain": [x0, x0 + w], "range": [box[0], box[1]], "showticklabels": False,
                                "showgrid": False, "zeroline": False, "anchor": f"y{ax}"}
        layout[f"yaxis{ax}"] = {"domain": [y1 - h, y1], "range": [box[2], box[3]], "showticklabels": False,
                                "showgrid": False, "zeroline": False, "anchor": f"x{ax}",
                                "scaleanchor": f"x{ax}"}
        nll = row.get("test_nll")
        details = []
        if nll is not None and math.isfinite(nll):
            details.append(f"NLL {nll:.2f}")
        elif row["density"] == "none":
            details.append("no density")
        if row["status"] not in ("done",):
            details.append(row["status"])
        name = row["title"].split(" (")[0]
        if len(name) > max(8, 120 // ncols):  # a long title ran into its neighbours: the model's key is short
            name = row["model"]
        label = f"<b>{name}</b><br>{' · '.join(details) or '&nbsp;'}"
        layout["annotations"].append({"text": label, "x": x0 + w / 2, "y": y1, "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 11}})
        held = plots.points(test, "held-out", color=plots.HELDOUT_COLOR, size=3, opacity=0.35, showlegend=False)
        held.update(xaxis=f"x{ax}", yaxis=f"y{ax}")
        traces.append(held)
        s = samples.get(row["model"])
        if s is not None:
            tr = plots.points(s, row["title"], color=FAMILY_COLORS.get(row["family"], plots.SAMPLE_COLOR), size=3,
                              opacity=0.7, showlegend=False)
            tr.update(xaxis=f"x{ax}", yaxis=f"y{ax}")
            traces.append(tr)
    return {"data": traces, "layout": layout}


def metric_bars(rows: list[dict], key: str, title: str, ytitle: str, reference: float | None = None,
                reference_name: str = "") -> dict:
    """One bar per model that has the metric, coloured by family; models without it are named."""
    have = [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    missing = [r["model"] for r in rows if r not in have and r["status"] == "done"]
    names = [_bar_name(r) for r in have]
    traces = [{"type": "bar", "x": names, "y": [float(r[key]) for r in have],
               "marker": {"color": [FAMILY_COLORS.get(r["family"], "#555") for r in have]},
               "text": [f"{r[key]:.3g}" for r in have], "textposition": "outside", "name": ytitle,
               "customdata": [r["title"] for r in have], "hovertemplate": "%{customdata}: %{y:.4g}<extra></extra>"}]
    if missing:  # under the title: at the bottom it ran into the rotated names
        title = f"{title}<br><sub>no value: {', '.join(missing)}</sub>"
    lay = plots.curves_layout(title, ytitle, uirevision=f"bars-{key}", height=320)
    # short names, turned when there are many, with the room they need; no legend under them to run into
    lay["xaxis"] = {"title": {"text": ""}, "type": "category", "automargin": True,
                    "tickangle": -35 if len(have) > 4 else 0}
    lay["showlegend"] = False
    if missing:
        lay["margin"] = dict(lay.get("margin", {}), t=lay.get("margin", {}).get("t", 40) + 16)
    if reference is not None:  # the reference line names itself at its right end
        traces.append({"type": "scatter", "mode": "lines", "x": [0, 1], "y": [reference, reference],
                       "xaxis": "x2", "name": reference_name, "line": {"color": "#444", "dash": "dash"},
                       "hoverinfo": "skip"})
        lay = plots.with_reference_axis(lay)
        label = f"{reference_name} {reference:.3g}" if reference else reference_name
        lay["annotations"] = [{"text": label, "x": 1, "xref": "paper", "y": reference, "yref": "y", "xanchor": "right",
                               "yanchor": "bottom", "showarrow": False, "font": {"size": 11, "color": "#444"}}]
    return {"data": traces, "layout": lay}


def _bar_name(row: dict) -> str:
    """A bar's label: the model's short name, or its key where that would crowd the axis."""
    name = row["title"].split(" (")[0]
    return name if len(name) <= 14 else row["model"]
