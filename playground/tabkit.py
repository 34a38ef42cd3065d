"""The skeleton every tab shares, so a user learns it once (../shared/ARCHITECTURE.md, "Tabs").

Data picker (built-in / draw / CSV) · model picker and its generated controls · Train / Stop /
Step / Reset · a status line · live plots · a "what you are seeing" text. A tab module describes
itself with a :class:`TabSpec` and calls :func:`build_tab`; it can add widgets of its own and wire
them with :meth:`FamilyTab.wire_action` (e.g. the GAN tab's "one D step" button).

Per-visitor state lives in a gr.State whose initial value is a class (called once per visitor),
so several people can train at once without seeing each other's runs.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from models import REGISTRY, ConfigError, TrainSettings

from . import explain, plots, views, workers
from .channel import Frame, LiveState, StaticSource, release_state
from .controls import Control, make_control, make_controls
from .datasets import (
    DATASETS,
    DataError,
    DataSplit,
    make_split,
)
from .drawpad import draw_pad
from .keep import Keeper, free_files, record_frame
from .liveplot import escape, live_bus, live_panel
from .runspec import DEVICES, SOURCES, RunSpec
from .session import Session, Snapshot
from .visitors import _STATES, SLOTS, TRAIN_CONCURRENCY
from .workers.local import WorkerGone

# what starting or using a run may raise that the visitor reads as one line: bad data or settings, and a worker
# that could not be had or stopped under the request (the run itself comes back from its checkpoint)
RUN_ERRORS = (DataError, ConfigError, ValueError, KeyError, WorkerGone)

START = "Pick data and a model, then press <b>Train</b>."
STOPPED = "stopped: press Train to resume"
ABANDONED_SECONDS = 30.0  # a run whose page has not asked for anything this long stops
HEARTBEAT = 1.0  # an API client's progress, in seconds
MAX_RUN_SECONDS = float(os.environ.get("PLAYGROUND_MAX_RUN_SECONDS", "900"))
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def markdown(text: str = "", **kw) -> gr.Markdown:
    """gr.Markdown that renders $inline$ and $$display$$ maths, as the course notes write it."""
    return gr.Markdown(text, latex_delimiters=LATEX, **kw)


@dataclass
class TabSpec:
    """What a tab offers. Each model's "what you are seeing" text is its file in playground/explain
    (`explain` may override one for a tab that shows a model differently)."""

    key: str
    title: str
    intro: str
    models: list[str]
    explain: dict[str, str] = field(default_factory=dict)
    default_dataset: str = "8gaussians"
    panels: tuple[tuple[str, str, int], ...] = (("main", "Model", 440), ("samples", "Samples", 440),
                                                ("curves", "Curves", 300), ("extra", "More curves", 300))
    log_density_option: bool = True
    # extra view options shown next to "log density": name -> a function making the widget. Their
    # values reach the views as keyword arguments (views.render(snap, name=value, ...)), live.
    options: dict[str, Callable[[], gr.components.Component]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # TrainSettings defaults for this tab
    # TrainSettings that suit a model better than the tab's (the latent tab's VAE: small batches), applied
    # when it is picked by hand (the tab wires that) and when a link names it without saying them
    model_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


class TabState(LiveState):
    """One visitor's state in one tab: the session, the settings it was built from, view options, and
    the channel their page pulls frames from."""

    def __init__(self):
        self.session: Session | None = None
        self.signature: tuple | None = None
        self.view_opts: dict[str, Any] = {}
        self.last: Snapshot | None = None
        self.note: str = ""
        self.preview: DataSplit | None = None
        self.waiting = False  # Train was pressed while every training slot was taken (TrainSlots)
        self.skip_train = False  # ... and Stop pressed before it started: gradio's queued Train ends at once
        self.last_active = time.monotonic()  # when its run last trained or was used (release_idle)
        self.freed_note = ""  # said once when an idle run was freed and the next Train starts a new one
        self.lock = threading.Lock()  # publishing a frame: the run's own and Stop's quick one
        # moved on by what replaces a run's state (Step, ↩ Early stop, Reset): a frame of the run from before it
        # is stale and not shown (a stopping run's last frame must not land after the action's own)
        self.epoch = 0
        self.recording = False  # the keep row's "record": frames of the first panel go to recorder (keep.py)
        self.recorder = None
        self.recorded_step: int | None = None
        self.files_dir: str | None = None  # the visitor's downloads (keep.py), removed when they leave
        _STATES.add(self)

    def __deepcopy__(self, memo):  # gradio copies a fresh state once; a lock cannot be copied
        return type(self)()

    def release(self) -> None:
        """The visitor left: stop their run and drop it, its model and its frames (see LiveState.release)."""
        self.free_session()
        self.last = self.preview = self.recorder = None
        free_files(self)
        super().release()

    def free_session(self) -> None:
        sess, self.session, self.signature = self.session, None, None
        if sess is not None:
            sess.close()  # a worker's run gives its worker back


class SnapshotSource:
    """A training frame: the views of one Snapshot, rendered when the page asks (with the view options
    of that moment, so a ticked box shows in the next frame)."""

    def __init__(self, tab: FamilyTab, st: TabState, snap: Snapshot, note: str = ""):
        self.tab, self.st, self.snap, self.note = tab, st, snap, note

    def render(self, visible: set[str]) -> Frame:
        snap = self.snap
        figs = views.render(snap, **self.st.view_opts)
        record_frame(self.st, snap, figs, self.tab.spec.panels[0][0])
        settings = self.st.session.settings if self.st.session is not None else None
        return Frame({k: v for k, v in figs.items() if k in visible}, status_html(snap, self.note, settings),
                     self.tab.texts(snap), final=snap.status != "running")


class FamilyTab:
    """The widgets of one tab and the handlers that connect them to a Session."""

    def __init__(self, spec: TabSpec):
        self.spec = spec
        self.model_controls: dict[str, dict[str, Control]] = {}
        self.model_groups: dict[str, gr.Group] = {}
        self.extra_outputs: list = []

    def explain_text(self, key: str) -> str:
        if key in self.spec.explain:
            return self.spec.explain[key]
        return explain.text(key, REGISTRY[key].family) if key in REGISTRY else ""

    # --- layout -------------------------------------------------------------------------------
    def build(self) -> None:
        spec = self.spec
        p = f"{spec.key}-"
        self.state = gr.State(TabState, delete_callback=release_state)
        markdown(spec.intro, elem_classes=["tab-intro"])
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                self._build_data(p)
                self._build_model(p)
                self._build_training(p)
            with gr.Column(scale=3):
                status_slot = gr.Column()  # the status line (the tab's bus) goes here once its panels exist
                self.info = gr.JSON(visible=False, label="run")  # the run's state for API clients
                with gr.Row():
                    self.train_btn = gr.Button("▶ Train", variant="primary", elem_id=f"{p}train", scale=2)
                    self.stop_btn = gr.Button("■ Stop", variant="stop", elem_id=f"{p}stop")
                    self.step_btn = gr.Button("Step", elem_id=f"{p}step")
                    self.reset_btn = gr.Button("Reset", elem_id=f"{p}reset")
                    self.best_btn = gr.Button("↩ Early stop", elem_id=f"{p}best",
                                              visible=any(REGISTRY[k].density != "none" for k in self.spec.models))
                with gr.Row(elem_classes=["share-row"]):
                    self.share_btn = gr.Button("🔗 Link to these settings", size="sm", scale=0, min_width=200,
                                               elem_id=f"{p}share")
                    self.share_box = gr.Textbox(label="link (copy it: opening it restores this tab's settings)",
                                                visible=False, buttons=["copy"], elem_id=f"{p}sharelink",
                                                interactive=False, scale=4)
                self.keeper = Keeper(self)
                self.keeper.build(p)
                self.options_row = gr.Row()
                with self.options_row:
                    self.log_scale = gr.Checkbox(False, label="log density", elem_id=f"{p}log",
                                                 visible=spec.log_density_option, scale=0, min_width=170)
                    self.options = {name: make() for name, make in spec.options.items()}
                    # these reach the session through the channel, not as a gradio event's input: without
                    # interactive=True gradio would infer them read-only and draw them disabled
                    for comp in (self.log_scale, *self.options.values()):
                        comp.interactive = True
                self.plots: dict[str, gr.HTML] = {}
                panels = list(spec.panels)
                self.initial_figs = {}
                for i in range(0, len(panels), 2):
                    with gr.Row(equal_height=False):
                        for name, title, height in panels[i:i + 2]:
                            with gr.Column(min_width=320):
                                fig = plots.message_figure(f"{title}: press Train", title=title, height=height,
                                                           axes=False)
                                fig["layout"]["height"] = height
                                self.initial_figs[name] = fig
                                self.plots[name] = live_panel(height=height, elem_id=f"{p}plot-{name}")
                first = panels[0][0]
                self.initial_figs[first] = _preview_figure(make_split(spec.default_dataset, 2000, seed=0),
                                                           panels[0][2])
                with status_slot:
                    self.status = live_bus(spec.key, {name: f"{p}plot-{name}" for name, _, _ in spec.panels},
                                           START, elem_id=f"{p}status", stop_id=f"{p}stop", live=self.live_controls(),
                                           train_id=f"{p}train")
                self.explain = markdown(self.explain_text(spec.models[0]), elem_classes=["explain"])

    def _build_data(self, p: str) -> None:
        spec = self.spec
        ds = DATASETS[spec.default_dataset]
        with gr.Accordion("Data", open=True):
            self.source = gr.Radio(list(SOURCES), value="Built-in", label="source", elem_id=f"{p}source")
            self.dataset = gr.Dropdown([(d.title, d.name) for d in DATASETS.values()], value=ds.name,
                                       label="dataset", elem_id=f"{p}dataset", info=ds.description)
            self.n_points = gr.Slider(100, 20000, value=2000, step=100, label="number of points",
                                      info="20% are held out for evaluation", elem_id=f"{p}npoints")
            self.noise = gr.Slider(ds.noise_range[0], ds.noise_range[1], value=ds.noise, step=0.01,
                                   label="noise", info=ds.noise_help, elem_id=f"{p}noise")
            self.train_points = gr.Slider(0, 2000, value=0, step=10, label="training points kept (0 = all)",
                                          info="overfitting (notes 3.2.5): train on a few points, keep every held-out "
                                               "one, and watch the two curves part", elem_id=f"{p}trainpoints")
            with gr.Group(visible=False) as self.draw_group:
                self.sketch = draw_pad(elem_id=f"{p}sketch")
                self.draw_noise = gr.Slider(0.0, 0.5, value=0.08, step=0.01, label="stroke spread",
                                            info="noise around the strokes (plot units)", elem_id=f"{p}drawnoise")
            self.csv = gr.File(label="CSV with two numeric columns (header optional)", visible=False,
                               file_types=[".csv", ".txt", ".tsv"], elem_id=f"{p}csv")
            self.standardise = gr.Checkbox(False, label="standardise (zero mean, unit variance)",
                                           visible=False, elem_id=f"{p}standardise")
            self.data_msg = gr.Markdown("", elem_id=f"{p}datamsg")

    def _build_model(self, p: str) -> None:
        spec = self.spec
        with gr.Accordion("Model", open=True):
            self.model_dd = gr.Dropdown([(REGISTRY[k].title, k) for k in spec.models], value=spec.models[0],
                                        label="model", elem_id=f"{p}model",
                                        visible=len(spec.models) > 1)
            for k in spec.models:
                with gr.Group(visible=(k == spec.models[0])) as group:
                    ctrls = make_controls(REGISTRY[k].Config, elem_prefix=f"{p}{k}-")
                    for name, v in spec.model_defaults.get(k, {}).items():
                        ctrls[name].component.value = ctrls[name].raw(v)
                self.model_controls[k] = ctrls
                self.model_groups[k] = group

    def _build_training(self, p: str) -> None:
        with gr.Accordion("Training", open=True):
            specs = {s["name"]: s for s in TrainSettings.spec()}
            self.settings_controls: dict[str, Control] = {}
            em = any("em" in (f["choices"] or ()) for k in self.spec.models for f in REGISTRY[k].Config.spec())
            for name in ("lr", "batch", "seed"):
                s = dict(specs[name])
                if name == "batch" and not em:  # the EM note belongs to the tabs with an EM model
                    s["help"] = "points per gradient step"
                if name in self.spec.settings:
                    s["default"] = self.spec.settings[name]
                if name == "seed":
                    comp = gr.Number(value=s["default"], precision=0, minimum=0, maximum=s["max"],
                                     label="seed", info=s["help"], elem_id=f"{p}seed")
                    self.settings_controls[name] = Control(name, comp, lambda r: int(r or 0))
                else:
                    self.settings_controls[name] = make_control(s, elem_prefix=p)
            self.device = gr.Dropdown(list(DEVICES), value="auto", label="device",
                                      info="auto: the GPU when there is one, else the CPU",
                                      elem_id=f"{p}device")

    # --- inputs --------------------------------------------------------------------------------
    def inputs(self) -> set:
        """Every control a run is made of, as a set: Gradio then hands a handler one dict keyed by
        component (run_from reads it), not a positional list."""
        comps = {self.state, self.source, self.dataset, self.n_points, self.noise, self.sketch, self.draw_noise,
                 self.csv, self.standardise, self.model_dd, self.device, self.train_points}
        for ctrls in (*self.model_controls.values(), self.settings_controls):
            comps |= {c.component for c in ctrls.values()}
        return comps

    def run_from(self, v: dict) -> RunSpec:
        """The RunSpec the controls show (v: component -> value, as Gradio passes a set of inputs); raises
        DataError or ConfigError with a one-line reason."""
        model = v.get(self.model_dd) or self.spec.models[0]
        if model not in self.model_controls:
            raise ConfigError(f"unknown model '{model}'")
        config = {name: c.value(v[c.component]) for name, c in self.model_controls[model].items()}
        settings = TrainSettings.make(**{name: c.value(v[c.component]) for name, c in self.settings_controls.items()})
        csv = v.get(self.csv)
        path = None if not csv else (csv if isinstance(csv, str) else getattr(csv, "name", str(csv)))
        return RunSpec(model, config, settings, dataset=v[self.dataset], n_points=int(v[self.n_points]),
                       noise=float(v[self.noise]), source=v[self.source], sketch=v.get(self.sketch),
                       draw_noise=float(v.get(self.draw_noise) or 0.0), csv=path,
                       standardise=bool(v.get(self.standardise)), device=v.get(self.device) or "auto",
                       train_points=int(v.get(self.train_points) or 0)).check()

    def default_run(self, model: str | None = None) -> RunSpec:
        """The run the controls show before anyone touches them (for `model`: the tab's first by default)."""
        model = model or self.spec.models[0]
        config = {name: self.spec.model_defaults.get(model, {}).get(name, c.value(c.component.value))
                  for name, c in self.model_controls[model].items()}
        settings = TrainSettings.make(**{n: c.value(c.component.value) for n, c in self.settings_controls.items()})
        ds = DATASETS[self.spec.default_dataset]
        return RunSpec(model, config, settings, dataset=ds.name, noise=ds.noise)

    # --- handlers ------------------------------------------------------------------------------
    def ensure_session(self, st: TabState, run: RunSpec) -> tuple[Session, bool]:
        """The visitor's session for these settings: the current one (resume) or a new one."""
        st.last_active = time.monotonic()
        sig = run.signature()
        if st.session is not None and st.signature == sig:
            st.session.set_live("lr", run.settings.lr)
            st.session.set_live("batch", run.settings.batch)
            for name, v in run.config.items():
                if getattr(st.session.model.cfg, name, v) != v:
                    st.session.set_live(name, v)
            return st.session, False
        data = run.build_data()
        st.free_session()
        st.session = workers.open_session(run.model, run.config, data, run.settings, device=run.device)
        st.signature = sig
        return st.session, True

    def outputs(self) -> list:
        """What a handler returns through Gradio: the run's state as JSON (for API clients) and the tab's
        own extra widgets. The panels and the status line travel through the channel instead."""
        return [self.info] + self.extra_outputs

    def values(self, st: TabState, error: Exception | None = None, extras: bool = False,
               progress: bool = False) -> list:
        """The outputs through gradio: the run's state as JSON (the last frame's, or with progress the
        session's own, for an API client that has no page to draw frames), and the extra widgets."""
        snap, sess = st.last, st.session
        info: dict[str, Any] = {"tab": self.spec.key}
        if error is not None:
            info["error"] = str(error)
        if progress and sess is not None:
            info.update(sess.progress())
        elif snap is not None:
            info.update(status=snap.status, step=snap.step, message=snap.message, model=snap.model_key,
                        dataset=snap.dataset, steps_per_sec=round(float(snap.steps_per_sec), 2),
                        latest={k: float(v) for k, v in snap.latest.items() if np.isfinite(v)})
        if sess is not None:
            info["config"] = sess.model.cfg.as_dict()
        rest = self.extra_values(st, snap) if extras and snap is not None else [gr.skip()] * len(self.extra_outputs)
        return [info] + rest

    def publish(self, st: TabState, snap: Snapshot, note: str = "", epoch: int | None = None) -> None:
        """Show `snap` with `note`; a run's frame carries the `epoch` it started in and is dropped once an action
        has moved st.epoch on."""
        with st.lock:
            if epoch is not None and epoch != st.epoch:
                return
            st.last, st.note = snap, note
            st.channel.publish(SnapshotSource(self, st, snap, note))

    def supersede(self, st: TabState) -> None:
        """What follows replaces the run's state: frames of the run from before are stale (publish)."""
        with st.lock:
            st.epoch += 1

    def stop_now(self, st: TabState, sess: Session | None) -> None:
        """Stop, straight from the page: the loop leaves after the step it is in; the page is told at once
        (the last frame, at the step where training stopped), and the final frame, with the full grid and
        fresh held-out metrics, follows as soon as it is built."""
        if sess is None:
            return
        sess.request_stop()
        if not sess.wait_left(1.0):
            return
        with st.lock:
            last = st.last
            if last is not None and last.status == "running":  # the final frame is not out yet
                quick = dataclasses.replace(last, step=sess.step_count, status="stopped", message=sess.message,
                                            event=sess.event)
                st.channel.publish(SnapshotSource(self, st, quick, STOPPED))

    def show(self, st: TabState, status: str, figs: dict[str, dict] | None = None) -> None:
        """A message in the status line (HTML), with figures for some panels or none."""
        st.channel.publish(StaticSource(Frame(figs or {}, status, final=True)))

    def texts(self, snap: Snapshot) -> dict[str, str]:
        """Text blocks a frame rewrites, {elem_id: html} (a tab's subclass overrides this)."""
        return {}

    def extra_values(self, st: TabState, snap: Snapshot) -> list:
        """Values for outputs a tab added to extra_outputs (a tab's subclass overrides this)."""
        return [gr.skip()] * len(self.extra_outputs)

    def show_error(self, st: TabState, err: Exception) -> list:
        kind = "worker stopped" if isinstance(err, WorkerGone) else type(err).__name__.replace("Error", " error")
        self.show(st, f"<span style='color:#dc2626'>▲</span> <b>{escape(kind)}:</b> {escape(err)}")
        return self.values(st, error=err)

    def queued(self, st: TabState) -> None:
        """Train pressed (the page's channel says so at once, outside gradio's queue): when every training slot
        is taken, say so in the status line; the run starts by itself when one frees up."""
        ahead = SLOTS.queue(st)
        if ahead is not None:
            latest = SLOTS.latest_start(ahead, MAX_RUN_SECONDS)
            when = f", at the latest in {max(1, round(latest / 60))} min" if latest is not None else ""
            self.show(st, f"⏳ <b>waiting for a training slot</b>: {SLOTS.active} runs train at once on this server"
                          f"{f' and {ahead} visitor(s) wait before you' if ahead else ''}. Yours starts by itself "
                          f"when one ends{when} (a run ends when its visitor stops it, at most after "
                          f"{MAX_RUN_SECONDS / 60:.0f} min).")

    def train(self, v: dict):
        st = v[self.state]
        if st.skip_train:  # stopped while it waited for a slot
            st.skip_train = False
            yield self.values(st)
            return
        SLOTS.start(st)
        try:
            yield from self._train(st, v)
        finally:
            SLOTS.end(st)
            st.last_active = time.monotonic()

    def _train(self, st: TabState, v: dict):
        try:
            run = self.run_from(v)
            sess, fresh = self.ensure_session(st, run)
        except RUN_ERRORS as err:
            yield self.show_error(st, err)
            return
        note = "new run" if fresh else "resumed"
        epoch = st.epoch
        if fresh and st.freed_note:
            note, st.freed_note = st.freed_note, ""
        ch = st.channel
        ch.controls["stop"] = lambda: self.stop_now(st, st.session)  # the session of that moment: held by st only
        # Frames reach the page through the channel: gradio hears from the run only at its start (the
        # tab's extra widgets) and its end, since each message through gradio costs the page's main thread
        # 100+ ms with this many components. A client with no page (the API) gets progress once a second.
        api = ch.last_seen is None
        first = True
        ch.on_wait = getattr(sess, "poke", None)  # a run in a worker hears at once that the page waits for a frame
        for snap in sess.run(max_seconds=MAX_RUN_SECONDS, want_frame=ch.wants_frame,
                             frame_cost=lambda: ch.encode_seconds, heartbeat=HEARTBEAT if api else None,
                             stop_when=lambda: ch.abandoned(ABANDONED_SECONDS)):
            if snap is None:
                yield self.values(st, progress=True)
                continue
            if snap.event == "restarted":  # its worker died: the message says what happened and what to press
                note = ""
            self.publish(st, snap, STOPPED if snap.status == "stopped" and note else note, epoch=epoch)
            if first:
                yield self.values(st, extras=True)
                first = False
        ch.on_wait = None
        if sess.status == "done":
            self.publish(st, sess.snapshot(), f"paused after {MAX_RUN_SECONDS:.0f} s: press Train to go on",
                         epoch=epoch)
        yield self.values(st, extras=True)

    def action(self, fn: Callable[[Session], Snapshot | None]):
        """A handler that runs fn on the visitor's session (built from the controls if needed)."""
        def handler(v: dict):
            st = v[self.state]
            try:
                run = self.run_from(v)
                sess, fresh = self.ensure_session(st, run)
                self.supersede(st)
                snap = fn(sess)
            except RUN_ERRORS as err:
                return self.show_error(st, err)
            self.publish(st, snap if snap is not None else sess.snapshot(), "new run" if fresh else "")
            return self.values(st, extras=True)
        return handler

    def wire_action(self, button: gr.Button, fn: Callable[[Session], Snapshot | None], **kw):
        return button.click(self.action(fn), self.inputs(), self.outputs(), cancels=[self.train_evt], **kw)

    def stop(self, st: TabState):
        """Stop the run: the loop leaves at its next step; show the state it stopped in."""
        if SLOTS.leave_queue(st):  # it was still waiting for a slot: it will not start
            st.skip_train = True
            self.show(st, "stopped before it started: press <b>Train</b> to queue again")
        sess = st.session
        if sess is None:
            return self.values(st)
        sess.stop(2.0)
        last = st.last
        if last is None or last.step != sess.step_count or last.status != sess.status:  # not shown yet
            try:
                self.publish(st, sess.snapshot(), STOPPED)
            except WorkerGone as err:
                return self.show_error(st, err)
        return self.values(st, extras=True)

    def reset(self, v: dict):
        st = v[self.state]
        SLOTS.leave_queue(st)
        self.supersede(st)
        st.free_session()
        st.last = None
        return self.preview(v, note="reset: press Train to start a new run")

    def preview(self, v: dict, note: str = ""):
        """Show the chosen data before training (skipped while a run is going)."""
        st = v[self.state]
        if st.session is not None and st.session.status == "running":
            return self.values(st)
        try:
            run = self.run_from(v)
            if st.session is not None and st.last is not None and run.signature() == st.signature:
                self.publish(st, st.last, st.note)  # the controls describe the visitor's run (e.g. just resumed)
                return self.values(st)
            data = run.build_data()
        except (DataError, ConfigError, ValueError, KeyError) as err:
            return self.show_error(st, err)
        st.preview = data
        info = (f"{len(data.train):,} training and {len(data.test):,} held-out points"
                + (" · true density known" if data.log_prob is not None else ""))
        figs = dict(self.initial_figs)
        first, _, height = self.spec.panels[0]
        figs[first] = _preview_figure(data, height)
        self.show(st, f"{escape(note or 'Data ready')} · {escape(info)}. Press <b>Train</b>.", figs)
        return self.values(st)

    def set_option(self, name: str):
        def handler(st: TabState, value):
            st.view_opts[name] = value
            if st.last is not None and not (st.session is not None and st.session.status == "running"):
                st.channel.publish(SnapshotSource(self, st, st.last, st.note))
        return handler

    def live_controls(self) -> dict[str, str]:
        """elem_id -> key of the sliders and checkboxes that change a running session ("lr", "batch", or
        "<model key>.<name>"): the page sends their changes straight to the run (see set_from_page)."""
        out = {self.settings_controls[n].component.elem_id: n for n in ("lr", "batch")}
        for k, ctrls in self.model_controls.items():
            for name, c in ctrls.items():
                if c.live and isinstance(c.component, (gr.Slider, gr.Checkbox)):
                    out[c.component.elem_id] = f"{k}.{name}"
        for name, comp in {"log_scale": self.log_scale, **self.options}.items():  # view options: "view.<name>"
            if isinstance(comp, (gr.Slider, gr.Checkbox, gr.Radio)):
                out[comp.elem_id] = f"view.{name}"
        return out

    def set_from_page(self, st: TabState, req: Any) -> None:
        """A live control's new value from the page ({"key", "value"}: the widget's raw value), for the
        visitor's session if it is of that model. Values outside a control's range are refused."""
        if not isinstance(req, dict):
            return
        key = str(req.get("key", ""))
        model, _, name = key.rpartition(".")
        if model == "view":
            self.set_option(name)(st, req.get("value"))
            return
        sess = st.session
        if sess is None:
            return
        if not model and name in ("lr", "batch"):
            control = self.settings_controls[name]
        elif model == sess.key and name in self.model_controls.get(model, {}):
            control = self.model_controls[model][name]
        else:
            return
        try:
            sess.set_live(name, control.value(req.get("value")))
        except (ConfigError, ValueError, TypeError, WorkerGone):
            pass

    def set_live(self, name: str, control: Control):
        def handler(st: TabState, raw):
            if st.session is not None:
                try:
                    st.session.set_live(name, control.value(raw))
                except (ConfigError, ValueError, WorkerGone):
                    pass
        return handler

    # --- wiring --------------------------------------------------------------------------------
    def wire(self) -> None:
        ins, outs = self.inputs(), self.outputs()
        self.train_evt = self.train_btn.click(self.train, ins, outs, concurrency_limit=TRAIN_CONCURRENCY,
                                              concurrency_id="train", api_name=f"{self.spec.key}_train",
                                              show_progress="hidden")
        self.stop_btn.click(self.stop, [self.state], outs,
                            api_name=f"{self.spec.key}_stop", concurrency_limit=None, show_progress="hidden")
        self.step_btn.click(self.action(lambda s: s.single_step()), ins, outs, cancels=[self.train_evt],
                            api_name=f"{self.spec.key}_step", show_progress="hidden")
        self.reset_btn.click(self.reset, ins, outs, cancels=[self.train_evt], api_name=f"{self.spec.key}_reset",
                             show_progress="hidden")
        # early stopping after the fact (notes 3.2.5): back to the state of the lowest held-out NLL seen
        self.best_btn.click(self.action(lambda s: s.return_to_best()), ins, outs, cancels=[self.train_evt],
                            api_name=f"{self.spec.key}_best", show_progress="hidden")
        live = set(self.live_controls())
        # the view options in live_controls() reach the session through the channel too; others here
        for name, comp in {"log_scale": self.log_scale, **self.options}.items():
            if comp.elem_id not in live:
                comp.change(self.set_option(name), [self.state, comp], None, show_progress="hidden",
                            api_visibility="private", trigger_mode="always_last")
        # the sliders and checkboxes of live_controls() reach the run through the channel; dropdowns here
        for ctrls in self.model_controls.values():
            for name, c in ctrls.items():
                if c.live and c.component.elem_id not in live:
                    c.component.change(self.set_live(name, c), [self.state, c.component], None,
                                       api_visibility="private")
        self.source.change(self._source_changed, [self.source],
                           [self.dataset, self.noise, self.draw_group, self.csv, self.standardise],
                           api_visibility="private", queue=False)
        self.dataset.change(self._dataset_changed, [self.dataset], [self.noise, self.dataset],
                            api_visibility="private", queue=False)
        self.dataset.input(self._dataset_picked, [self.dataset], [self.noise], api_visibility="private",
                           queue=False)
        self.share_btn.click(self.share_query, ins, [self.share_box], api_visibility="private",
                             queue=False).then(
            None, [self.share_box], [self.share_box],
            js="(q) => q.startsWith('?') ? window.location.origin + window.location.pathname + q : q")
        for comp in (self.dataset, self.source, self.standardise, self.csv):
            comp.change(self.preview, ins, outs, show_progress="hidden", api_visibility="private")
        for comp in (self.n_points, self.noise, self.draw_noise, self.train_points):
            comp.release(self.preview, ins, outs, show_progress="hidden", api_visibility="private")
        self.sketch.change(self.preview, ins, outs, show_progress="hidden", api_visibility="private",
                           trigger_mode="always_last")
        self.model_dd.change(self._model_changed, [self.model_dd],
                             list(self.model_groups.values()) + [self.explain], api_visibility="private",
                             queue=False)
        self.keeper.wire()

    def _source_changed(self, source):
        return (gr.update(visible=source == "Built-in"), gr.update(visible=source == "Built-in"),
                gr.update(visible=source == "Draw"), gr.update(visible=source == "Upload CSV"),
                gr.update(visible=source == "Upload CSV"))

    def _dataset_changed(self, name):
        """Any change of dataset (a click or a shared link): the noise slider takes its range."""
        ds = DATASETS.get(name)
        if ds is None:
            return gr.skip(), gr.skip()
        return (gr.update(minimum=ds.noise_range[0], maximum=ds.noise_range[1], info=ds.noise_help),
                gr.update(info=ds.description))

    def _dataset_picked(self, name):
        """A dataset picked by hand starts at its default noise (a shared link keeps its own)."""
        ds = DATASETS.get(name)
        return gr.update(value=ds.noise) if ds else gr.skip()

    # --- shareable settings (TensorFlow Playground style) -----------------------------------------
    def share_query(self, v: dict) -> Any:
        """The current settings as a URL query: ?tab=..&dataset=..&model=..&K=..&lr=.."""
        try:
            run = self.run_from(v)
        except (DataError, ConfigError, ValueError, KeyError) as err:
            return gr.update(value=f"cannot link these settings: {err}", visible=True)
        return gr.update(value=run.to_query(self.spec.key), visible=True)

    def query_outputs(self) -> list:
        """What a shared link may set: the data and device controls, every model's controls, the training
        settings, and the status line (the page's channel token)."""
        comps = [self.source, self.dataset, self.n_points, self.noise, self.model_dd, self.device, self.train_points,
                 self.sketch, self.draw_noise, self.csv, self.standardise]
        for ctrls in (*self.model_controls.values(), self.settings_controls):
            comps += [c.component for c in ctrls.values()]
        return comps + [self.status]

    def load_args(self) -> tuple:
        """(fn, inputs, outputs) of this tab's page-load event (app.py registers it)."""
        return self.on_load, [self.state], self.query_outputs()

    def on_load(self, st: TabState, request: gr.Request):
        """On page load: give the page its channel (the bus's value is the token), show the tab's first
        frame, and put the settings of a shared link (?tab=<this tab>&...) into the controls."""
        st.belongs_to(getattr(request, "session_hash", None))  # released with the visitor's other states
        vals, note = self.apply_query(request)
        st.channel.controls["set"] = lambda req: self.set_from_page(st, req)
        st.channel.controls["queued"] = lambda: self.queued(st)  # Train pressed: the page says so at once
        if not st.channel.has_source:
            self.show(st, escape(note) if note else START, self.initial_figs)
        elif note:
            self.show(st, escape(note))
        return {**vals, self.status: st.channel.token}

    def apply_query(self, request: gr.Request) -> tuple[dict, str]:
        """The settings of a shared link as {component: value} for the controls it sets (RunSpec.from_query
        over the tab's defaults), and a note for the status line: what was ignored (unknown or outside the
        safe range) and any old setting name read as its new one."""
        q = dict(request.query_params) if request is not None else {}
        if q.get("tab") != self.spec.key:
            return {}, ""
        model = q.get("model") if q.get("model") in self.spec.models else self.spec.models[0]
        run, named, notes = RunSpec.from_query(q, self.default_run(model), self.spec.models,
                                               usual=self.spec.model_settings)
        out: dict[Any, Any] = {self.model_dd: run.model}
        if "data" in named:
            out.update({self.source: "Built-in", self.dataset: run.dataset, self.noise: run.clamped_noise()})
        elif "drawing" in named:  # a drawing carried by the link: onto the pad
            out.update({self.source: "Draw", self.sketch: run.sketch, self.draw_noise: run.draw_noise})
        elif "points" in named:  # points carried by the link: a CSV the Upload control holds
            out.update({self.source: "Upload CSV", self.csv: gr.update(value=run.csv, visible=True),
                        self.standardise: gr.update(value=run.standardise, visible=True)})
        if "n" in named:
            out[self.n_points] = run.n_points
        if "train" in named:
            out[self.train_points] = run.train_points
        if "device" in named:
            out[self.device] = run.device
        for name, c in self.model_controls[run.model].items():
            if name in named:
                out[c.component] = c.raw(run.config[name])
        usual = self.spec.model_settings.get(run.model, {})
        for name, c in self.settings_controls.items():
            if name in named or name in usual:
                out[c.component] = c.raw(getattr(run.settings, name))
        return out, " ".join(["Settings loaded from the link. Press Train.", *notes])

    def _model_changed(self, key):
        return [gr.update(visible=(k == key)) for k in self.model_groups] + [self.explain_text(key)]


def _preview_figure(data: DataSplit, height: int = 430) -> dict:
    fig = plots.data_figure(data.train, data.test, data.box, f"Data: {data.info.get('title', data.name)}",
                            uirevision=f"preview-{data.name}")
    fig["layout"]["height"] = height
    return fig


STATUS_COLORS = {"running": "#16a34a", "stopped": "#6b7280", "done": "#2563eb", "diverged": "#dc2626"}


def status_html(snap: Snapshot, note: str = "", settings: TrainSettings | None = None) -> str:
    """One line a user reads at a glance: state, step, speed, loss, held-out metrics, the live settings
    (so a moved slider visibly reaches the run), device; then a note or the model's message."""
    color = STATUS_COLORS.get(snap.status, "#6b7280")
    parts = [f"<span style='color:{color}'>●</span> <b>{escape(snap.status)}</b>", f"step <b>{snap.step:,}</b>"]
    if snap.status == "running" or snap.steps_per_sec:
        parts.append(f"{snap.steps_per_sec:,.0f} steps/s")
    lt = snap.latest
    if "loss" in lt:
        parts.append(f"loss {lt['loss']:.4g}")
    if "test_nll" in lt:
        est = lt.get("quad_exact", 1.0) < 1.0  # a VAE's quadrature could not verify every point
        nll = f"held-out NLL {'≈ ' if est else ''}<b>{lt['test_nll']:.3f}</b> nats"
        if est:
            nll += f" (an estimate, ± {lt.get('quad_error', float('nan')):.2g})"
        if snap.data_nll is not None:
            nll += f" (true density: {snap.data_nll:.3f})"
        parts.append(nll)
    if "energy_distance" in lt:
        parts.append(f"energy distance {plots.estimate_text(lt['energy_distance'])}")
    if snap.grid_mass is not None:
        parts.append(f"∫p on grid ≈ {snap.grid_mass:.3f}")
    if settings is not None:
        lr = "" if snap.family == "gan" else f"lr {settings.lr:.2g} · "  # GANs: a rate per player
        parts.append(f"<span class='pg-settings'>{lr}batch {settings.batch}</span>")
    parts.append(escape(snap.device))
    line = " · ".join(parts)
    msg = snap.message if snap.status == "diverged" or snap.event in ("substep", "restarted", "early_stop") else ""
    if msg and snap.event == "restarted":  # its worker died and a new one took over: worth a glance
        msg = "⚠ " + msg
    extra = " — ".join(escape(x) for x in (note, msg) if x)
    return line + (f"<br>{extra}" if extra else "")


def build_tab(spec: TabSpec) -> FamilyTab:
    tab = FamilyTab(spec)
    tab.build()
    return tab
