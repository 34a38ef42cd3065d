"""Compare tab: several families on the same data, the same time budget, the same metrics."""

from __future__ import annotations

import math

import gradio as gr

from models import REGISTRY, all_keys

from .. import plots, workers
from ..channel import Frame, LiveState, StaticSource
from ..compare import available, compare, default_keys, table
from ..datasets import DATASETS, DataError, make_split
from ..liveplot import LiveArea, escape, text_block
from ..tabkit import TRAIN_CONCURRENCY, markdown
from ..views.compare import metric_bars, samples_grid

TITLE = "Compare"

INTRO = r"""
**Compare families on the same data.** Each model trains for the same wall-clock budget with its
default settings and the same seed; then all are scored on the same held-out points. Held-out NLL
(nats per point, lower is better) exists only where a family has a density — exact for mixtures,
autoregressive models and flows, the latent-integrated marginal for the VAE, the grid-normalised
density for EBMs, the probability-flow ODE for diffusion and flow matching (its solver's error shown) —
while the *energy distance* between samples and held-out data compares every family, GANs included.
Notes 6.1: a good likelihood and good samples are not the same thing.
"""

def _estimate(v, spec: str) -> str:
    return "—" if v is None else plots.estimate_text(v, spec)


def _choices() -> list[tuple[str, str]]:
    keys = all_keys()
    return [(f"{REGISTRY[k].title} ({k})", k) for k in keys]


COLUMNS = ("model", "family", "steps", "held-out NLL (nats)", "energy distance", "MMD²", "modes", "status")
RIGHT = {2, 3, 4, 5, 6}


def _table_html(rows: list[dict], data_nll) -> str:
    """The results as an HTML table (rewritten by the frames as the run goes, not a gradio output)."""
    def f(v, fmt):
        return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    def row(cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}{' class=num' if i in RIGHT else ''}>{escape(c)}</{tag}>"
                                for i, c in enumerate(cells)) + "</tr>"

    body = []
    for r in rows:
        nll = f(r["test_nll"], ".3f") if r["density"] != "none" else "no density"
        if r.get("nll_estimate") is not None and nll != "—":
            nll = f"≈ {nll} (estimate ± {r['nll_estimate']:.2g})"
        elif r.get("ode_err") is not None and nll != "—":
            nll = f"{nll} (ODE: halving its steps moves it {r['ode_err']:.0e})"
        modes = "—" if r["modes_covered"] is None else f"{int(r['modes_covered'])}"
        status = r["status"] + (f": {r['message']}" if r["message"] else "")
        body.append(row([r["title"], r["family"], f"{r['steps']:,}", nll, _estimate(r["energy_distance"], ".3g"),
                         _estimate(r["mmd"], ".2g"), modes, status]))
    foot = f"<p>True density's held-out NLL: <b>{data_nll:.3f}</b> nats.</p>" if data_nll is not None else ""
    return (f"<div class='pg-table-wrap'><table class='pg-table'><thead>{row(COLUMNS, 'th')}</thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>" + foot)


def _frame(status: str, figs: dict | None = None, final: bool = False, table: str | None = None) -> StaticSource:
    return StaticSource(Frame(figs or {}, status, {"compare-table": table} if table is not None else {}, final))


def run(st: LiveState, dataset, n_points, noise, keys, seconds, seed):
    ch = st.channel
    keys = available(list(keys or []))
    if not keys:
        ch.publish(_frame("Pick at least one model."))
        yield
        return
    try:
        lo, hi = DATASETS[dataset].noise_range
        data = make_split(dataset, int(n_points), min(max(float(noise), lo), hi), int(seed or 0))
    except (DataError, KeyError) as err:
        ch.publish(_frame(f"<b>Data error:</b> {escape(err)}"))
        yield
        return
    data_nll = float(-data.log_prob(data.test).mean()) if data.log_prob is not None else None
    samples: dict = {}
    stopped: list[bool] = []
    ch.controls["stop"] = lambda: stopped.append(True)  # Stop, straight from the page
    for entries in compare(keys, data, seconds=float(seconds), seed=int(seed or 0), open_run=workers.open_session):
        if stopped:
            ch.publish(stopped_frame(st))
            break
        rows = table(entries, data_nll)
        for e in entries:
            if e.samples is not None:
                samples[e.key] = e.samples
        busy = [e for e in entries if e.status == "training"]
        done = sum(e.status in ("done", "diverged", "failed") for e in entries)
        if busy:
            status = (f"training <b>{escape(busy[0].title)}</b> ({busy[0].steps:,} steps, "
                      f"{busy[0].seconds:.0f}/{seconds:.0f} s) · {done}/{len(entries)} done")
        else:
            status = f"finished: {done}/{len(entries)} models" if done == len(entries) else "starting…"
        busy = busy or done < len(entries)
        figs = {"samples": samples_grid(rows, samples, data.test[:600], data.box),
                "nll": metric_bars(rows, "test_nll", "Held-out NLL (nats, lower is better)", "NLL",
                                   data_nll, "true density"),
                "distance": metric_bars(rows, "energy_distance", "Energy distance to held-out (lower is better)",
                                        "energy distance", 0.0, "same distribution")}
        st.compare_last = (rows, data_nll, figs, samples, data)  # what Stop shows if it cancels this loop
        ch.publish(_frame(status, figs, final=not busy, table=_table_html(rows, data_nll)))
    yield  # everything went through the channel: a gradio message per tick costs the page 100+ ms


def stopped_frame(st: LiveState) -> StaticSource:
    """After Stop: the last table and figures with every model not finished marked "stopped" (gradio cancels the
    loop, which then publishes nothing more: without this the table still said "training")."""
    last = getattr(st, "compare_last", None)
    if last is None:
        return _frame("<b>stopped</b>: press <b>Run comparison</b> to start again", final=True)
    rows, data_nll, figs, samples, data = last
    rows = [dict(r, status="stopped", message="") if r["status"] in ("training", "pending", "waiting") else r
            for r in rows]
    figs = dict(figs, samples=samples_grid(rows, samples, data.test[:600], data.box))
    done = sum(r["status"] in ("done", "diverged", "failed") for r in rows)
    return _frame(f"<b>stopped</b> with {done}/{len(rows)} models finished: press <b>Run comparison</b> to start "
                  "again", figs, final=True, table=_table_html(rows, data_nll))


def build() -> LiveArea:
    area = LiveArea("compare")
    markdown(INTRO)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            ds = DATASETS["8gaussians"]
            dataset = gr.Dropdown([(d.title, d.name) for d in DATASETS.values()], value=ds.name, label="dataset",
                                  elem_id="compare-dataset")
            n_points = gr.Slider(200, 20000, value=2000, step=100, label="number of points",
                                 elem_id="compare-npoints")
            noise = gr.Slider(ds.noise_range[0], ds.noise_range[1], value=ds.noise, step=0.01, label="noise",
                              elem_id="compare-noise")
            keys = gr.CheckboxGroup(_choices(), value=default_keys(), label="models",
                                    elem_id="compare-models")
            seconds = gr.Slider(2, 120, value=15, step=1, label="seconds of training per model",
                                info="the same wall-clock budget for every model", elem_id="compare-seconds")
            seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="compare-seed")
            with gr.Row():
                go = gr.Button("▶ Run comparison", variant="primary", elem_id="compare-run")
                stop = gr.Button("■ Stop", variant="stop", elem_id="compare-stop")
        with gr.Column(scale=3):
            status_slot = gr.Column()
            text_block("", elem_id="compare-table")
            area.panel("samples", 480, "compare-plot-samples",
                       plots.message_figure("samples appear here as each model finishes", axes=False, height=480))
            with gr.Row():
                with gr.Column(min_width=320):
                    area.panel("nll", 320, "compare-plot-nll",
                               plots.message_figure("held-out NLL", axes=False, height=320))
                with gr.Column(min_width=320):
                    area.panel("distance", 320, "compare-plot-distance",
                               plots.message_figure("energy distance", axes=False, height=320))
            with status_slot:
                area.status("Pick models and press <b>Run comparison</b>.", "compare-status", stop_id="compare-stop")

    def dataset_changed(name):
        d = DATASETS[name]
        return gr.update(minimum=d.noise_range[0], maximum=d.noise_range[1], value=d.noise, info=d.noise_help)

    def stopped(st: LiveState):
        st.channel.publish(stopped_frame(st))

    dataset.input(dataset_changed, dataset, noise, queue=False, api_visibility="private")
    evt = go.click(run, [area.state, dataset, n_points, noise, keys, seconds, seed], None,
                   concurrency_limit=TRAIN_CONCURRENCY, concurrency_id="train", api_name="compare",
                   show_progress="hidden")
    stop.click(stopped, [area.state], None, cancels=[evt], api_name="compare_stop")
    return area
