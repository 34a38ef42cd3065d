"""The Generative Models Playground: `python app.py` serves it at http://127.0.0.1:7860.

Environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT set the address; PLAYGROUND_CONCURRENCY the number of
trainings that may run at once (default: two per core); PLAYGROUND_THREADS torch's threads (default 1);
PLAYGROUND_WORKERS where runs train (process: a worker process each, the default; ray; thread: inside the web
process); PLAYGROUND_RAY_ADDRESS a Ray cluster to place them on; PLAYGROUND_SESSIONS how many visitors' sessions
gradio keeps in memory (default 1000, the least recently used dropped beyond). `python app.py --share` makes a
temporary public link; `python app.py --ray ADDRESS` (or --ray local) trains every run as a Ray actor.
"""

from __future__ import annotations

import argparse
import importlib
import os

import gradio as gr

from playground import channel, liveplot, visitors, workers
from playground.session import configure_threads, device_label, resolve_device, stop_all, warm_up
from playground.tabs import TABS, coming

TITLE = "Generative Models Playground"
INTRO = """
# Generative Models Playground
Train small deep generative models **live** on 2D data and watch them learn: densities, latent spaces,
flows warping a Gaussian, a generator chasing a discriminator, MCMC chains on an energy surface.
One tab per chapter of the course notes (CS236-style). Every run reports held-out log-likelihood in nats where
the model has one, so families compare on the same data.
"""

CSS = """
.status-line {min-height: 3.2em; font-size: 0.95em;}
.live-plot-box {border: 1px solid #e5e7eb; border-radius: 6px; padding: 2px; background: white;}
.html-container > .live-plot-box {border: none; padding: 0;}
.block.live-plot-box .html-container {padding: 0;}
@media (max-width: 480px) {.block.live-plot-box {padding: 4px;}}
.tab-intro p {margin: 0.2em 0 0.6em 0;}
.explain {font-size: 0.93em;}
.katex-display {overflow-x: auto; overflow-y: hidden;}  /* a wide equation scrolls on a phone, not cut off */
.pg-table {border-collapse: collapse; font-size: 0.9em; margin: 0.4em 0;}
.pg-table th, .pg-table td {padding: 3px 8px; border-bottom: 1px solid #e5e7eb; text-align: left;}
.pg-table .num {text-align: right; font-variant-numeric: tabular-nums;}
.pg-table th, .pg-table td {word-break: normal; overflow-wrap: normal; hyphens: manual;}
.pg-table th {white-space: nowrap;}
.pg-table-wrap {overflow-x: auto; max-width: 100%;}
.log10-readout {color: #1d4ed8; font-weight: 600;}
.pg-settings {color: #555;}
"""
# gradio scopes CSS to the page's content; the page's own side margins (32 px each) are outside it. A phone's width
# is for plots: 10 px there.
HEAD = ("<style>@media (max-width: 480px) {.gradio-container .main.fillable.app "
        "{padding-left: 10px; padding-right: 10px;}}</style>")


def build_app() -> gr.Blocks:
    configure_threads()
    warm_up()
    where = workers.start()  # the first visitors' workers start now, not on their Train
    gr.set_static_paths(liveplot.static_paths())
    # the files visitors download (keep.py) are copied into gradio's cache: removed after an hour, checked hourly
    with gr.Blocks(title=TITLE, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO + f"\nRunning on: **{device_label(resolve_device('auto'))}**, each run {where}.")
        loaders = []  # tabs and live areas with a page-load event (their channel token, a shared link)
        with gr.Tabs() as tabs:
            for name in TABS:
                try:
                    module = importlib.import_module(f"playground.tabs.{name}")
                except ModuleNotFoundError as err:
                    if err.name != f"playground.tabs.{name}":
                        raise
                    module = None
                title = module.TITLE if module else coming.COMING[name][0]
                with gr.Tab(title, id=name, elem_id=f"tab-{name}"):
                    if module:
                        built = module.build()
                        loaders += [b for b in (built if isinstance(built, list) else [built])
                                    if hasattr(b, "load_args")]
                    else:
                        coming.build(name)
        # a shared link (?tab=flows&dataset=moons&...) opens its tab with its settings
        demo.load(_select_tab, None, tabs, api_visibility="private", queue=False)
        for obj in loaders:
            fn, inputs, outputs = obj.load_args()
            demo.load(fn, inputs, outputs, api_visibility="private", queue=False)
        demo.unload(_release_visitor)  # a closed page frees its runs now, not when gradio drops its state in an hour
    demo.queue(default_concurrency_limit=8)
    visitors.start_reaper()  # frees runs idle for PLAYGROUND_IDLE_SECONDS (an API visitor never closes a page)
    return demo


def _release_visitor(request: gr.Request) -> None:
    channel.release_visitor(getattr(request, "session_hash", None))


def _select_tab(request: gr.Request):
    tab = dict(request.query_params).get("tab") if request is not None else None
    return gr.Tabs(selected=tab) if tab in TABS else gr.skip()


# gradio keeps every visitor's session (their states and a per-session copy of the app's configuration: about
# 1.3 MB here) in memory, the least recently used dropped beyond this many; gradio's default, 10,000, lets an API
# client's every call add to the server for good. A dropped visitor's runs are collected with their states (a
# run's worker goes back to the pool as it is collected).
SESSIONS = int(os.environ.get("PLAYGROUND_SESSIONS", "1000"))


def launch_kwargs() -> dict:
    return dict(css=CSS, head=HEAD, footer_links=["gradio", "settings"], run_history=False,
                server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), state_session_capacity=SESSIONS,
                # each training run's relay holds one of gradio's worker threads (40 by default) while it trains
                max_threads=max(40, visitors.TRAIN_CONCURRENCY + 24))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=TITLE)
    ap.add_argument("--share", action="store_true", help="make a temporary public link")
    ap.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    ap.add_argument("--host", default=None, help="address (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    ap.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="train each run as a Ray actor on this cluster ('local': an instance of this machine's cores)")
    ap.add_argument("--workers", choices=workers.MODES, default=None,
                    help="where runs train (default: $PLAYGROUND_WORKERS or process)")
    args = ap.parse_args(argv)
    workers.configure(args.workers, args.ray)
    kw = launch_kwargs()
    if args.port:
        kw["server_port"] = args.port
    if args.host:
        kw["server_name"] = args.host
    try:
        build_app().launch(share=args.share, **kw)  # returns on Ctrl-C, once the server is closed
    finally:
        # Runs still training in gradio's (daemon) worker threads would be inside a torch op when the
        # interpreter finalises: the process aborted with "terminate called without an active exception".
        # Stop them first (session.stop_all, also registered with atexit for other launchers).
        running = stop_all()
        workers.shutdown()
        if running:
            print(f"stopped {running} training run{'s' if running > 1 else ''}")


if __name__ == "__main__":
    main()
