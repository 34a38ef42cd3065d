"""Energy-based models tab (notes ch. 7): contrastive divergence with MCMC, score matching, NCE,
and a sampler sandbox (Langevin / MALA / MH on a fixed target) with animated chains."""

from __future__ import annotations

import time

import gradio as gr

from models import family_keys

from .. import plots
from ..channel import Frame, LiveState, StaticSource
from ..liveplot import LiveArea, escape
from ..sandbox import MALA_MIN_NOISE, METHODS
from ..tabkit import ABANDONED_SECONDS, FamilyTab, TabSpec, markdown
from ..views.ebm import CURVE_HEIGHT, SAMPLER_NAMES, sandbox_curves, sandbox_figure
from ..workers.sandbox import WorkerSandbox

TITLE = "Energy-based models"
SANDBOX_FPS = 10  # the sandbox draws at most this many frames a second

SANDBOX_INTRO = r"""
**Sampler sandbox** — no training: 500 chains run Langevin, MALA or Metropolis–Hastings on a **fixed** target,
an analytic energy or a frozen copy of the model trained above. The heatmap is the target's density; the trails
are 8 chains. The yardstick is exact: samples drawn from the target's grid (a cell by inverse CDF, then the
interpolated density inside it), compared with the chains' states by the energy distance. Every sampler rejects
a move that would leave the drawn box (the chain stays put). Try the donut with MH and a small σ, then
Langevin; U3 with a big Langevin step, then MALA.
"""

SANDBOX_TARGETS = [("Banana", "banana"), ("Donut", "donut"), ("8 Gaussians (multimodal)", "8gaussians"),
                   ("U1: ring, two lobes", "u1"), ("U2: sine wave", "u2"), ("U3: split sine", "u3"),
                   ("U4: sine and step", "u4"), ("Correlated Gaussian", "gaussian"),
                   ("Learned energy (the model above)", "learned")]

SPEC = TabSpec(
    key="ebm",
    title=TITLE,
    intro="**Energy-based models** (notes ch. 7): any function $f_\\theta(x)$ defines "
          "$p_\\theta(x) = e^{f_\\theta(x)}/Z(\\theta)$. Train one by contrastive divergence (MCMC negatives), "
          "score matching, noise-contrastive estimation, or against a normalizing flow (flow contrastive "
          "estimation, adversarial training), and watch the MCMC chains move on the energy surface.",
    models=family_keys("ebm"),
    default_dataset="moons",
    panels=(("main", "Energy and chains", 470), ("samples", "Density and samples", 470),
            ("curves", "Training loss", CURVE_HEIGHT), ("energies", "f and log Z", CURVE_HEIGHT),
            ("nll", "Held-out log-likelihood", CURVE_HEIGHT), ("diag", "Sampler diagnostics", CURVE_HEIGHT)),
    options={"show_score": lambda: gr.Radio(["auto", "on", "off"], value="auto", label="score arrows",
                                            info="auto: on for score matching", elem_id="ebm-score",
                                            scale=0, min_width=260)},
    settings={"lr": 3e-3, "batch": 256},
)


class SandboxState(LiveState, WorkerSandbox):
    """One visitor's sandbox (a SandboxRun whose chains run in a worker: the chains, their settings and curves)
    and the channel their page pulls the sandbox's frames from."""

    def __init__(self):
        WorkerSandbox.__init__(self)

    def release(self) -> None:
        self.reset()
        super().release()


def _stats(s: dict) -> str:
    acc = "—" if s["accept"] != s["accept"] else f"{100 * s['accept']:.0f}%"
    rhat = "—" if s["rhat"] != s["rhat"] else f"{s['rhat']:.2f}"
    return (f"<b>{SAMPLER_NAMES[s['method']]}</b> · step <b>{s['steps']:,}</b> · acceptance {acc} · "
            f"split R-hat (8 chains) {rhat} · energy distance to exact samples <b>{s['ed']:.3f}</b>")


def sandbox_frame(st: SandboxState) -> Frame:
    """Advance the chains by `steps per frame` with the current settings; the figures and the status."""
    s = st.advance()
    return Frame({"plot": sandbox_figure(s), "curves": sandbox_curves(st.history)}, _stats(s), final=False)


def sandbox_run(st: SandboxState, tab_state, target, method, step_log10, mh_scale, noise_scale, steps_per_frame,
                max_seconds: float = 120.0):
    """The sandbox's own loop: a frame each time the page asks for one (at most SANDBOX_FPS a second), so
    the animation runs at the browser's pace and never queues; Stop (straight from the page), Reset, a
    new target, the page leaving or `max_seconds` end it."""
    ch = st.channel
    why = st.prepare(target, getattr(tab_state, "session", None), getattr(tab_state, "signature", None), method,
                     10 ** float(step_log10), float(mh_scale), float(noise_scale), int(steps_per_frame))
    if why is not None:
        ch.publish(StaticSource(Frame({}, f"<b>Cannot run:</b> {escape(why)}")))
        yield
        return
    box, stopped, frame = st.box, [], None
    ch.controls["stop"] = lambda: stopped.append(True)
    t0 = last = time.perf_counter()
    while (time.perf_counter() - t0 < max_seconds and st.box is box and not stopped
           and not ch.abandoned(ABANDONED_SECONDS)):
        now = time.perf_counter()
        if ch.wants_frame() and now - last >= 1.0 / SANDBOX_FPS:
            last = now
            try:
                frame = sandbox_frame(st)
            except (RuntimeError, ValueError) as err:  # its worker died under it: say so, the next Run starts anew
                st.reset()
                ch.publish(StaticSource(Frame({}, f"<b>The chains stopped:</b> {escape(err)}. Press <b>Run chains</b> "
                                                  "to start them again.")))
                yield
                return
            ch.publish(StaticSource(frame))
        else:
            time.sleep(0.01)
    if frame is not None and st.box is box:
        ch.publish(StaticSource(Frame({}, frame.status + " — <b>stopped</b>: press <b>Run chains</b> to go on")))
    yield


def sandbox_reset(st: SandboxState):
    st.reset()
    st.channel.publish(StaticSource(Frame({}, "Sandbox reset: press <b>Run chains</b>.")))


SANDBOX_LIVE = {"ebm-sb-step": ("step_size", lambda v: 10 ** float(v)), "ebm-sb-noise": ("noise_scale", float),
                "ebm-sb-mh": ("proposal_std", float), "ebm-sb-steps": ("steps", int)}


def _set(name: str, conv):
    def handler(st: SandboxState, value):
        if st.settings:
            st.settings[name] = conv(value)
    return handler


def _set_from_page(st: SandboxState, req) -> None:
    """A sandbox slider's new value from the page: the running chains take it at their next frame."""
    if not isinstance(req, dict) or not st.settings:
        return
    name, conv = SANDBOX_LIVE.get(str(req.get("key")), (None, None))
    if name is not None:
        try:
            st.settings[name] = conv(req.get("value"))
        except (TypeError, ValueError):
            pass


def build_sandbox(tab: FamilyTab) -> LiveArea:
    area = LiveArea("ebm-sandbox", SandboxState, on_set=_set_from_page)
    with gr.Accordion("Sampler sandbox: Langevin, MALA and Metropolis–Hastings on a fixed target", open=True):
        markdown(SANDBOX_INTRO)
        sb = area.state
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                target = gr.Dropdown(SANDBOX_TARGETS, value="banana", label="target", elem_id="ebm-sb-target")
                method = gr.Radio([(SAMPLER_NAMES[m], m) for m in METHODS], value="langevin", label="sampler",
                                  elem_id="ebm-sb-method")
                step = gr.Slider(-4, 0, value=-2, step=0.05, label="Langevin step ε (log₁₀)",
                                 info="Langevin and MALA: x ← x + ε∇log p + √(2ε)·s·z", elem_id="ebm-sb-step")
                noise = gr.Slider(0, 1, value=1, step=0.05, label="Langevin noise scale s",
                                  info=f"1 = real Langevin (MALA: s ≥ {MALA_MIN_NOISE})", elem_id="ebm-sb-noise")
                mh = gr.Slider(0.01, 3, value=0.3, step=0.01, label="MH proposal σ",
                               info="Metropolis–Hastings: x' = x + σz", elem_id="ebm-sb-mh")
                per_frame = gr.Slider(1, 50, value=5, step=1, label="steps per frame", elem_id="ebm-sb-steps")
                with gr.Row():
                    run_btn = gr.Button("▶ Run chains", variant="primary", elem_id="ebm-sb-run")
                    stop_btn = gr.Button("■ Stop", variant="stop", elem_id="ebm-sb-stop")
                    reset_btn = gr.Button("Reset", elem_id="ebm-sb-reset")
            with gr.Column(scale=3):
                status_slot = gr.Column()
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=320):
                        area.panel("plot", 470, "ebm-sb-plot",
                                   plots.message_figure("press Run chains", title="Sampler sandbox", height=470))
                    with gr.Column(min_width=320):
                        area.panel("curves", 470, "ebm-sb-curves",
                                   plots.message_figure("press Run chains", title="Sandbox chains", height=470,
                                                        axes=False))
                with status_slot:
                    area.status("Pick a target and a sampler, then press <b>Run chains</b>.", "ebm-sb-info",
                                stop_id="ebm-sb-stop", live={k: k for k in SANDBOX_LIVE})
    run_evt = run_btn.click(sandbox_run, [sb, tab.state, target, method, step, mh, noise, per_frame],
                            None, concurrency_limit=4, concurrency_id="ebm-sandbox",
                            show_progress="hidden", api_name="ebm_sandbox")
    stop_btn.click(None, None, None, cancels=[run_evt], api_visibility="private")
    reset_btn.click(sandbox_reset, [sb], None, cancels=[run_evt], api_visibility="private")
    target.change(sandbox_reset, [sb], None, cancels=[run_evt], api_visibility="private")
    method.change(_set("method", str), [sb, method], None, api_visibility="private", queue=False)
    return area


def build() -> list:
    tab = FamilyTab(SPEC)
    tab.build()
    tab.wire()
    return [tab, build_sandbox(tab)]
