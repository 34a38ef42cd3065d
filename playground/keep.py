"""Keep a run: the row under every training tab's buttons that saves the model, exports samples, data, curves and a
recorded animation, and resumes a saved model (issue 15).

* **Save model** writes the run as one file (playground/saving.py): weights, optimiser and generator states, the
  data points, the settings and the history. **Resume from a file** reads one back (refused with its reason when it
  is not a playground model, another version, changed, or of another tab), puts the controls back to its settings
  and its data, and shows it at its step: Train goes on from there with the same next steps as never stopping.
* **Samples / Data / Curves** are CSV files: the model's samples, the training and held-out points (drawn or
  uploaded data included, with a `split` column), and every recorded curve.
* **Record** keeps the first panel's frames while it trains (playground/recording.py: at most RECORD_FRAMES, evenly
  spread over the run); **Animation** exports them as one self-contained HTML file (Plotly frames, a Play button
  and a step slider, working offline), as an animated GIF for slides and as an MP4 video (a tenth of the GIF's size
  or less; it needs the optional imageio-ffmpeg, requirements-video.txt, and says so without it).

The files of a visitor are written to a folder of their own, removed when they leave (TabState.release) and when
they ask for the next file; Gradio serves a copy from its cache, which the app bounds (app.py, delete_cache).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from models import REGISTRY, ConfigError

from . import recording, saving, workers
from .datasets import DATASETS, DataError
from .liveplot import escape
from .runspec import RunSpec
from .workers.local import WorkerGone

if TYPE_CHECKING:
    from .tabkit import FamilyTab, TabState

RECORD_FRAMES = 60  # frames an exported animation holds at most (evenly spread over the run)
N_EXPORT_SAMPLES = 2000
FILE_ERRORS = (saving.ModelFileError, DataError, ConfigError, ValueError, KeyError, OSError, WorkerGone,
               recording.VideoUnavailable)


def _folder(st: TabState) -> str:
    """The visitor's own folder for the files they download (made on first use, emptied before each new file)."""
    folder = getattr(st, "files_dir", None)
    if folder and os.path.isdir(folder):
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
    else:
        folder = tempfile.mkdtemp(prefix="playground-files-")
        st.files_dir = folder
    return folder


def free_files(st: TabState) -> None:
    folder, st.files_dir = getattr(st, "files_dir", None), None
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def _stamp(st: TabState) -> str:
    sess = st.session
    return f"{sess.key}-step{sess.step_count}" if sess is not None else "run"


def spec_dict(run: RunSpec) -> dict:
    """The run spec's data fields a saved file keeps (to put the tab's controls back)."""
    return {"source": run.source, "dataset": run.dataset, "n_points": int(run.n_points),
            "noise": None if run.noise is None else float(run.noise), "train_points": int(run.train_points),
            "draw_noise": float(run.draw_noise), "standardise": bool(run.standardise), "device": run.device}


class Keeper:
    """The keep row of one tab: its widgets, built under the tab's buttons, and their handlers."""

    def __init__(self, tab: FamilyTab):
        self.tab = tab

    def build(self, p: str) -> None:
        with gr.Accordion("Keep this run: save, export, record, resume", open=False, elem_id=f"{p}keep"):
            with gr.Row(elem_classes=["keep-row"]):
                self.save_btn = gr.Button("💾 Save model", size="sm", elem_id=f"{p}save", scale=0, min_width=130)
                self.samples_btn = gr.Button("Samples (CSV)", size="sm", elem_id=f"{p}samplescsv", scale=0,
                                             min_width=120)
                self.data_btn = gr.Button("Data (CSV)", size="sm", elem_id=f"{p}datacsv", scale=0, min_width=110)
                self.curves_btn = gr.Button("Curves (CSV)", size="sm", elem_id=f"{p}curvescsv", scale=0,
                                            min_width=110)
                self.upload = gr.UploadButton("⬆ Resume a saved model", size="sm", file_types=[".pt"],
                                              elem_id=f"{p}resume", scale=0, min_width=200)
            with gr.Row(elem_classes=["keep-row"]):
                self.record = gr.Checkbox(False, label="⏺ record the first panel while training",
                                          elem_id=f"{p}record", scale=0, min_width=280, interactive=True)
                self.html_btn = gr.Button("Animation (HTML)", size="sm", elem_id=f"{p}animhtml", scale=0,
                                          min_width=140)
                self.gif_btn = gr.Button("Animation (GIF)", size="sm", elem_id=f"{p}animgif", scale=0, min_width=130)
                self.mp4_btn = gr.Button("Video (MP4)", size="sm", elem_id=f"{p}animmp4", scale=0, min_width=110)
            self.file = gr.File(label="your file (click its name to download)", visible=False, interactive=False,
                                elem_id=f"{p}keepfile")
            self.msg = gr.Markdown("", elem_id=f"{p}keepmsg")

    def wire(self) -> None:
        tab = self.tab
        ins = tab.inputs()
        outs = [self.file, self.msg]
        for btn, fn in ((self.save_btn, self.save_model), (self.samples_btn, self.samples_csv),
                        (self.data_btn, self.data_csv), (self.curves_btn, self.curves_csv),
                        (self.html_btn, self.animation_html), (self.gif_btn, self.animation_gif),
                        (self.mp4_btn, self.animation_mp4)):
            btn.click(self._guard(fn), ins, outs, api_visibility="private", show_progress="minimal")
        self.record.change(self.set_record, [tab.state, self.record], [self.msg], api_visibility="private",
                           queue=False)
        resume_outs = tab.query_outputs() + [self.msg]  # the data controls (csv included), model and settings
        self.upload.upload(self.resume, [tab.state, self.upload], resume_outs, api_visibility="private",
                           show_progress="minimal")

    # --- files out ------------------------------------------------------------------------------
    def _guard(self, fn):
        def handler(v: dict):
            st = v[self.tab.state]
            try:
                path, note = fn(st, v)
            except FILE_ERRORS as err:
                return gr.update(visible=False), f"⚠ {escape(str(err).splitlines()[0] if str(err) else err)}"
            return gr.update(value=path, visible=True), note
        return handler

    def _session(self, st: TabState):
        if st.session is None:
            raise ValueError("nothing trained yet: press Train first")
        return st.session

    def save_model(self, st: TabState, v: dict) -> tuple[str, str]:
        sess = self._session(st)
        run = self.tab.run_from(v)
        path = os.path.join(_folder(st), f"{_stamp(st)}.pt")
        step = saving.save(sess, path, spec=spec_dict(run))
        size = os.path.getsize(path)
        return path, (f"Saved {sess.key} at step {step} ({size / 1024:.0f} KB): weights, optimiser and random "
                      f"states, the data and the curves. **Resume a saved model** (any tab of its family) or "
                      f"`python -m playground train --resume {os.path.basename(path)}` goes on from there.")

    def samples_csv(self, st: TabState, v: dict) -> tuple[str, str]:
        sess = self._session(st)
        pts = sess.sample_points(N_EXPORT_SAMPLES)
        path = os.path.join(_folder(st), f"{_stamp(st)}-samples.csv")
        np.savetxt(path, pts, delimiter=",", header="x,y", comments="", fmt="%.7g")
        return path, f"{len(pts):,} samples of {sess.key} at step {sess.step_count}."

    def data_csv(self, st: TabState, v: dict) -> tuple[str, str]:
        data = st.session.data if st.session is not None else self.tab.run_from(v).build_data()
        path = os.path.join(_folder(st), f"data-{data.name.replace('.', '_')}.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("x,y,split\n")
            for part, pts in (("train", data.train), ("held-out", data.test)):
                for x, y in np.asarray(pts, np.float64):
                    f.write(f"{x:.7g},{y:.7g},{part}\n")
        return path, f"{len(data.train):,} training and {len(data.test):,} held-out points ({escape(data.name)})."

    def curves_csv(self, st: TabState, v: dict) -> tuple[str, str]:
        if st.last is None:
            raise ValueError("no curves yet: press Train first")
        path = os.path.join(_folder(st), f"{_stamp(st)}-curves.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write(recording.curves_csv(st.last))
        return path, f"{len(st.last.curves)} curves up to step {st.last.step}."

    def _frames(self, st: TabState) -> list:
        rec = getattr(st, "recorder", None)
        if rec is None or len(rec) < 2:
            raise ValueError("nothing recorded: tick 'record', press Train, and export once it has drawn a few frames")
        return rec.frames

    def animation_html(self, st: TabState, v: dict) -> tuple[str, str]:
        frames = self._frames(st)
        title = f"{self.tab.spec.title}: {_stamp(st)}"
        path = os.path.join(_folder(st), f"{_stamp(st)}-animation.html")
        with open(path, "w", encoding="utf-8") as f:
            f.write(recording.to_html(frames, title))
        return path, (f"{len(frames)} frames (steps {frames[0][0]}–{frames[-1][0]}) as one HTML file that plays "
                      f"offline: open it in a browser and press Play.")

    def animation_gif(self, st: TabState, v: dict) -> tuple[str, str]:
        frames = self._frames(st)
        path = os.path.join(_folder(st), f"{_stamp(st)}-animation.gif")
        n = recording.to_gif(frames, path)
        return path, f"{n} frames as an animated GIF ({os.path.getsize(path) / 1024:.0f} KB), for slides."

    def animation_mp4(self, st: TabState, v: dict) -> tuple[str, str]:
        frames = self._frames(st)
        path = os.path.join(_folder(st), f"{_stamp(st)}-animation.mp4")
        n = recording.to_mp4(frames, path)
        return path, (f"{n} frames as an MP4 video ({os.path.getsize(path) / 1024:.0f} KB, H.264), for slides; "
                      "the last frame is held a second.")

    # --- recording ------------------------------------------------------------------------------
    def set_record(self, st: TabState, on: bool) -> str:
        st.recording = bool(on)
        if on:
            if getattr(st, "recorder", None) is None:
                st.recorder = recording.Recorder(RECORD_FRAMES)
            return (f"Recording the first panel: its frames are kept while it trains (at most {RECORD_FRAMES}, "
                    f"evenly spread over the run).")
        return "Recording paused: what was recorded is kept for the export." if getattr(st, "recorder", None) else ""

    # --- a file in ------------------------------------------------------------------------------
    def resume(self, st: TabState, upload: Any) -> dict:
        tab = self.tab
        skip = {c: gr.skip() for c in tab.query_outputs()}
        path = upload if isinstance(upload, str) else getattr(upload, "name", None)
        try:
            if not path:
                raise saving.ModelFileError("no file")
            blob = saving.read(path)
            key = blob["key"]
            if key not in tab.spec.models:
                home = REGISTRY[key].family
                raise saving.ModelFileError(f"this file holds a {REGISTRY[key].title} ({key}) run: open it in the "
                                            f"tab of its family ({home})")
            run = self._run_of(blob, st)
            sess = saving.restore(blob, device=run.device, open_session=workers.open_session)
        except FILE_ERRORS as err:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            return {**skip, self.msg: f"⚠ could not resume: {escape(text)}"}
        from .visitors import SLOTS

        SLOTS.leave_queue(st)
        st.free_session()
        st.session, st.signature, st.last_active = sess, run.signature(), time.monotonic()
        st.recorder = recording.Recorder(RECORD_FRAMES) if getattr(st, "recording", False) else None
        snap = sess.snapshot(evaluate=True)
        tab.publish(st, snap, f"resumed from {os.path.basename(path)} at step {sess.step_count}: press Train to go on")
        return {**self._controls(run), self.msg: f"Resumed **{escape(REGISTRY[key].title)}** at step "
                                                 f"{sess.step_count} on {escape(sess.data.name)}. Press **Train**."}

    def _run_of(self, blob: dict, st: TabState) -> RunSpec:
        """The run spec the file's run was made of: its data fields, or (points of one's own) a CSV of its points,
        so that the controls describe the run and Train goes on with it."""
        fields = saving.spec_fields(blob)
        cfg_cls = REGISTRY[blob["key"]].Config
        config = dataclasses.asdict(cfg_cls.make(**blob["config"]))
        from models import TrainSettings

        settings = TrainSettings.make(**blob["settings"])
        data = blob["data"]
        source = fields.get("source", "Built-in")
        dataset = fields.get("dataset", data["name"])
        if source == "Built-in" and dataset in DATASETS:
            return RunSpec(blob["key"], config, settings, dataset=dataset,
                           n_points=int(fields.get("n_points", len(data["train"]) + len(data["test"]))),
                           noise=fields.get("noise"), train_points=int(fields.get("train_points", 0)),
                           device=fields.get("device", "auto")).check()
        # drawn or uploaded points: the saved ones, as a CSV the Upload control holds (a new run re-splits them)
        pts = np.concatenate([data["train"].numpy(), data["test"].numpy()])
        path = os.path.join(_folder(st), f"{os.path.splitext(data['name'])[0] or 'points'}.csv")
        np.savetxt(path, pts, delimiter=",", header="x,y", comments="", fmt="%.9g")
        return RunSpec(blob["key"], config, settings, source="Upload CSV", csv=path,
                       standardise=False, device=fields.get("device", "auto")).check()

    def _controls(self, run: RunSpec) -> dict:
        tab = self.tab
        out: dict = {tab.model_dd: run.model, tab.source: run.source, tab.device: run.device,
                     tab.train_points: run.train_points}
        if run.source == "Built-in":
            out.update({tab.dataset: run.dataset, tab.n_points: run.n_points, tab.noise: run.clamped_noise()})
        else:
            out.update({tab.csv: gr.update(value=run.csv, visible=True), tab.standardise: False})
        for name, c in tab.model_controls[run.model].items():
            out[c.component] = c.raw(run.config[name])
        for name, c in tab.settings_controls.items():
            out[c.component] = c.raw(getattr(run.settings, name))
        return out


def record_frame(st: TabState, snap, figs: dict, first: str) -> None:
    """Keep a frame of the first panel when recording (called as frames are drawn for the page)."""
    rec = getattr(st, "recorder", None)
    if rec is None or first not in figs or not getattr(st, "recording", False):
        return
    if getattr(st, "recorded_step", None) == snap.step:  # the same frame drawn again (a view option changed)
        return
    st.recorded_step = snap.step
    rec.add(int(snap.step), figs[first])


__all__ = ["Keeper", "RECORD_FRAMES", "free_files", "record_frame", "spec_dict"]
