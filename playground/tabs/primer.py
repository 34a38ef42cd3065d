"""Primer tab (notes 2.2): generative classifiers (naive Bayes, QDA) against discriminative ones
(logistic regression, an MLP) on two labelled 2D classes. Fitting is closed form or a few hundred
steps, so a Fit button draws everything at once: no live training loop."""

from __future__ import annotations

import time

import gradio as gr
import numpy as np

from .. import plots
from ..channel import Frame, LiveState, StaticSource
from ..classify import LABELLED, MAX_PER_CLASS, MODELS, fit_all, grid, make_labelled
from ..liveplot import LiveArea, escape, text_block
from ..primer_plots import boundary_figure, density_figure, missing_figure, slice_figure
from ..tabkit import markdown

TITLE = "Generative vs discriminative"

INTRO = r"""
**Generative vs discriminative classifiers** (notes 2.2). Two labelled classes $y \in \{0, 1\}$ of 2D
points $x = (x_1, x_2)$. A *generative* classifier learns the joint $p(x, y) = p(y)\,p(x \mid y)$ and
classifies by Bayes' rule, $p(y{=}1 \mid x) = \frac{p(y{=}1)\,p(x \mid y{=}1)}{\sum_{y'} p(y')\,p(x \mid y')}$:
**Gaussian naive Bayes** assumes the coordinates independent given the label,
$p(x \mid y) = \prod_i p(x_i \mid y)$ (notes 2.2.1), **QDA** gives each class a full-covariance
Gaussian. A *discriminative* classifier models $p(y \mid x)$ alone: **logistic regression**,
$p(y{=}1 \mid x) = \sigma(w^\top x + b)$ (notes 2.2.2, a straight boundary), and a small **MLP**
(a neural $p(y \mid x)$, as in notes 2.2.3). Both use the chain rule, $p(x, y) = p(x \mid y)\,p(y) = p(y \mid x)\,p(x)$,
but only the generative one has $p(x)$: it can **sample** points, score held-out points (**NLL** in nats),
and classify a point whose $x_2$ is **missing** by integrating it out,
$p(y \mid x_1) \propto p(y) \int p(x_1, x_2 \mid y)\,dx_2$ — for a Gaussian, its marginal in closed form.
"""

BOUNDARY_PANELS = [(k, f"primer-plot-{k}") for k in MODELS]
GENERATIVE = ("nb", "qda")
SHORT = {"nb": "naive Bayes", "qda": "QDA", "logreg": "logistic regression", "mlp": "MLP"}
START = "Pick a dataset and models, then press <b>Fit</b>."
GRID = 100
MISSING_POINTS = 200


class PrimerState(LiveState):
    """A visitor's last fit (what the x₁ slider redraws from) and the figures on their page."""

    result: dict | None = None


def _table_html(data, fitted: dict) -> str:
    head = ("model", "kind", "train accuracy", "test accuracy", "test log-loss (nats)", "held-out NLL (nats)",
            "classify with x₂ missing?")
    right = {2, 3, 4, 5}

    def row(cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}{' class=num' if i in right else ''}>{escape(c)}</{tag}>"
                                for i, c in enumerate(cells)) + "</tr>"

    body = []
    for k, f in fitted.items():
        gen = f.model.generative
        body.append(row([MODELS[k], "generative" if gen else "discriminative", f"{f.train_accuracy:.1%}",
                         f"{f.accuracy:.1%}", f"{f.log_loss:.3f}", f"{f.nll:.3f}" if gen else "no p(x)",
                         "yes: integrate x₂ out" if gen else "no: needs both x₁ and x₂"]))
    return (f"<table class='pg-table' id='primer-results'><thead>{row(head, 'th')}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            f"<p>{len(data.y_train):,} training and {len(data.y_test):,} held-out points. Log-loss is "
            "−log p(y | x) per held-out point, NLL is −log p(x) per held-out point (nats, lower is better).</p>")


def _missing(res: dict, x1: float) -> tuple[dict, dict, str]:
    """The missing-coordinate figures and their one-line reading at x₁."""
    data, fitted = res["data"], res["fitted"]
    box = data.box
    x1 = float(np.clip(x1, box[0], box[1]))
    x1s = np.linspace(box[0], box[1], MISSING_POINTS)
    x2s = np.linspace(box[2], box[3], MISSING_POINTS)
    gens = {k: f.model for k, f in fitted.items() if f.model.generative}
    if gens:
        fig_m = missing_figure(x1s, {k: (SHORT[k], m.proba_missing(x1s)) for k, m in gens.items()}, x1)
    else:
        fig_m = plots.message_figure("pick naive Bayes or QDA: only a generative model can integrate x₂ out",
                                     axes=False, height=340)
    pts = np.stack([np.full_like(x2s, x1), x2s], 1)
    curves = {k: (SHORT[k], f.model.predict_proba(pts)) for k, f in fitted.items()}
    marg = {k: (f"{SHORT[k]}, x₂ ∫ out", float(m.proba_missing(x1))) for k, m in gens.items()}
    fig_s = slice_figure(x2s, curves, marg, x1)
    parts = [f"<b>{SHORT[k]}</b>: p(y=1 | x₁={x1:.2f}) = {v:.2f}" for k, (_, v) in marg.items()]
    if len(gens) == 2:
        parts[-1] += " (the same: a Gaussian's marginal of x₁ ignores the correlation QDA adds)"
    for k, f in fitted.items():
        if not f.model.generative:
            p = curves[k][1]
            parts.append(f"<b>{SHORT[k]}</b>: cannot answer without x₂ — over x₂ ∈ [{box[2]:.1f}, {box[3]:.1f}] "
                         f"its p(y=1 | x₁, x₂) runs from {p.min():.2f} to {p.max():.2f}")
    return fig_m, fig_s, " · ".join(parts)


def _publish(st: PrimerState, status: str, figs: dict | None = None, texts: dict | None = None) -> None:
    st.channel.publish(StaticSource(Frame(figs or {}, status, texts or {}, True)))


def fit(st: PrimerState, dataset, n_per_class, seed, keys, x1):
    """The Fit button: fit, score and draw every picked model; returns the x₁ slider's new range."""
    try:
        keys = [k for k in MODELS if k in (keys or [])]
        if not keys:
            _publish(st, "Pick at least one model.")
            return gr.skip()
        try:
            n_per_class, seed, x1 = int(n_per_class), int(seed or 0), float(x1 or 0.0)
        except (TypeError, ValueError):
            raise ValueError("points per class, seed and x₁ must be numbers") from None
        t0 = time.perf_counter()
        data = make_labelled(str(dataset), n_per_class, seed)
        fitted = fit_all(data, keys, seed)
        xs, ys, pts = grid(data.box, GRID)
        figs = {}
        for k, _ in BOUNDARY_PANELS:
            if k in fitted:
                f = fitted[k]
                figs[k] = boundary_figure(xs, ys, f.model.predict_proba(pts), data.x_test, data.y_test, data.box,
                                          f"{MODELS[k]} — test accuracy {f.accuracy:.1%}")
            else:
                figs[k] = plots.message_figure(f"{MODELS[k]}: not picked", data.box, MODELS[k], height=400)
        rng = np.random.default_rng(seed + 1)
        for k in GENERATIVE:
            if k in fitted:
                m = fitted[k].model
                xs_, ys_ = m.sample(400, rng)
                figs[f"px-{k}"] = density_figure(xs, ys, m.log_prob(pts), xs_, ys_, m.means, m.covs, data.box,
                                                 f"{SHORT[k]}: p(x) and samples — NLL {fitted[k].nll:.3f}")
            else:
                figs[f"px-{k}"] = plots.message_figure(f"{MODELS[k]}: not picked", data.box, height=400)
        st.result = {"data": data, "fitted": fitted, "figs": figs}
        x1 = float(np.clip(x1, data.box[0], data.box[1]))
        figs["missing"], figs["slice"], reading = _missing(st.result, x1)
        secs = time.perf_counter() - t0
        _publish(st, f"Fitted {len(keys)} model{'s' if len(keys) > 1 else ''} on <b>{LABELLED[data.name].title}</b> "
                     f"(seed {seed}) in {secs:.2f} s.", figs,
                 {"primer-table": _table_html(data, fitted), "primer-reading": reading})
        return gr.update(minimum=round(data.box[0], 2), maximum=round(data.box[1], 2), value=round(x1, 2))
    except Exception as err:  # noqa: BLE001 - a visitor sees one line, never a traceback
        _publish(st, f"<b>Cannot fit:</b> {escape(err)}")
        return gr.skip()


def move_x1(st: PrimerState, x1):
    """The x₁ slider: redraw the missing-coordinate panels from the last fit."""
    try:
        if st.result is None:
            _publish(st, "Press <b>Fit</b> first: the x₁ slider reads the fitted generative models.")
            return
        figs = dict(st.result["figs"])
        figs["missing"], figs["slice"], reading = _missing(st.result, float(x1))
        _publish(st, f"x₂ missing, x₁ = {float(x1):.2f}.", figs, {"primer-reading": reading})
    except Exception as err:  # noqa: BLE001
        _publish(st, f"<b>Cannot redraw:</b> {escape(err)}")


def build() -> LiveArea:
    area = LiveArea("primer", PrimerState)
    markdown(INTRO)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            dataset = gr.Dropdown([(d.title, k) for k, d in LABELLED.items()], value="gaussians", label="dataset",
                                  info="two labelled classes", elem_id="primer-dataset")
            n_per_class = gr.Slider(20, MAX_PER_CLASS // 10, value=300, step=10, label="points per class",
                                    info="70% train, 30% held out", elem_id="primer-npoints")
            seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="primer-seed")
            keys = gr.CheckboxGroup([(v, k) for k, v in MODELS.items()], value=list(MODELS), label="models",
                                    elem_id="primer-models")
            go = gr.Button("Fit", variant="primary", elem_id="primer-fit")
            x1 = gr.Slider(-4, 4, value=0.0, step=0.05, label="x₁ (x₂ missing)",
                           info="classify a point knowing only x₁", elem_id="primer-x1")
        with gr.Column(scale=3):
            status_slot = gr.Column()
            text_block("", elem_id="primer-table")
            for row in (BOUNDARY_PANELS[:2], BOUNDARY_PANELS[2:]):
                with gr.Row():
                    for k, elem in row:
                        with gr.Column(min_width=320):
                            area.panel(k, 400, elem, plots.message_figure("press Fit", title=MODELS[k], height=400))
            with gr.Row():
                for k in GENERATIVE:
                    with gr.Column(min_width=320):
                        area.panel(f"px-{k}", 400, f"primer-plot-px-{k}",
                                   plots.message_figure("press Fit", title=f"{SHORT[k]}: p(x) and samples",
                                                        height=400))
            markdown("**A missing coordinate.** Only $x_1$ is known: a generative model integrates $x_2$ out; a "
                     "discriminative one has no $p(x)$ to do it with, and gives an answer for each $x_2$ instead.")
            text_block("", elem_id="primer-reading")
            with gr.Row():
                with gr.Column(min_width=320):
                    area.panel("missing", 340, "primer-plot-missing",
                               plots.message_figure("press Fit", axes=False, height=340))
                with gr.Column(min_width=320):
                    area.panel("slice", 340, "primer-plot-slice",
                               plots.message_figure("press Fit", axes=False, height=340))
            with status_slot:
                area.status(START, "primer-status")
    inputs = [area.state, dataset, n_per_class, seed, keys, x1]
    go.click(fit, inputs, x1, concurrency_limit=4, concurrency_id="primer", api_name="primer_fit",
             show_progress="hidden")
    x1.release(move_x1, [area.state, x1], None, concurrency_limit=4, concurrency_id="primer",
               api_visibility="private", show_progress="hidden")
    x1.input(move_x1, [area.state, x1], None, concurrency_limit=4, concurrency_id="primer",
             api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    return area
