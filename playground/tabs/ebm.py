"""Energy-based models tab (notes ch. 7): contrastive divergence with MCMC, score matching, NCE,
and a sampler sandbox (Langevin / MALA / MH on a fixed target) with animated chains."""

from __future__ import annotations

import copy
import time

import gradio as gr

from models import family_keys
from models.samplers import MALA_MIN_NOISE, METHODS, SamplerSandbox
from models.targets import dataset_log_prob

from .. import metrics, plots
from ..channel import Frame, LiveState, StaticSource
from ..datasets import DATASETS
from ..liveplot import LiveArea, escape
from ..tabkit import ABANDONED_SECONDS, FamilyTab, TabSpec, markdown
from ..views.ebm import CURVE_HEIGHT, SAMPLER_NAMES, sandbox_curves, sandbox_figure

TITLE = "Energy-based models"
SANDBOX_FPS = 10  # the sandbox draws at most this many frames a second

COMMON = r"""
**Top left, the energy** $-f_\theta(x)$ (bright = low energy = likely) with **8 MCMC chains** drawn as trails
and heads: they are the first of 1,000 persistent chains that run the chosen sampler on the current $f_\theta$
and move a few steps every frame. Tick *score arrows* to see $\nabla_x \log p_\theta = \nabla_x f_\theta$
(the direction Langevin's drift pushes; $\log Z$ has no gradient in $x$).
**Top right, the density** $p_\theta(x) = e^{f_\theta(x)}/Z(\theta)$. The partition function
$Z(\theta) = \int e^{f_\theta(x)}\,dx$ is intractable in general, but **in 2D it is a sum**: over the model's
**support box** (the data's range plus 20% on each side, plus the reach of a soft wall beyond which
$e^{f}$ is below $e^{-21}$ of its value at the box), $Z \approx \sum_{\text{cells}} e^{f_\theta}\,\Delta A$ on a
97×97 grid (trapezoid rule; the *f and log Z* title says how much halving that grid moves $\log Z$). So this tab
reports an honest held-out NLL like every other family. The status line's **∫p on grid** is the probability
mass inside the *plot*: below 1 when the support reaches beyond it.
The red dots are **exact samples** of $p_\theta$: a grid cell drawn with its probability (inverse CDF), then a
point inside it from the interpolated density — no Markov chain, so the energy distance, the modes covered and
the Compare table measure $p_\theta$ itself. The chains are there for what they teach: the energy panel's title
gives their **energy distance to exact samples** (near 0 when the chains have mixed; short runs and cold or
stuck samplers stay far).
**One box for every sampler**: a move that would leave the support box is rejected (the chain stays put),
which is exact for Metropolis–Hastings and MALA on the truncated density and leaves unadjusted Langevin with no
point masses on the box's faces.
**What is shown is a weight average**: the estimator trains $f_\theta$ (its negatives and noise see the trained
network), and the energy, density, samples, chains and held-out numbers come from an exponential moving average
of its weights (*weight averaging* = 0.998 per step; 0 shows the trained network). At a constant step size Adam
keeps jittering $f_\theta$ where there is little data, and the held-out NLL feels every such wobble: the average
about halves each estimator's gap to the true entropy (seed 0, 3,000 steps: NCE on the correlated Gaussian
0.028 → 0.009 nats, score matching on banana 0.046 → 0.022, CD on banana 0.11 → 0.06).

**Curves**: the loss; $\mathbb E[f]$ on held-out data and on the chains next to $\log Z$ — the held-out
log-likelihood *is* $\mathbb E_{\text{data}}[f] - \log Z$; the grid-normalised log-likelihood; and the
sampler's health: acceptance rate (MALA, MH), **split R-hat** over the 8 animated chains (near 1 when
their halves agree; far above 1.1 when they sit in different modes), the energy distance of the exact samples
to held-out data, and of the chains to exact samples.
"""

CD_EXPLAIN = r"""
### What you are seeing — contrastive divergence (notes 7.3)
Maximum likelihood for $p_\theta = e^{f_\theta}/Z(\theta)$ has the gradient
$$\nabla_\theta \log p_\theta(x^+) = \nabla_\theta f_\theta(x^+) - \mathbb E_{p_\theta}[\nabla_\theta f_\theta(x^-)]$$
($x^+$ a training point), so each update pushes $f$ **up on the data** and **down on samples of the model**
(the *negatives* $x^-$, purple ×).
The negatives come from MCMC on the current $f_\theta$, $K$ steps per update:
* **Langevin** (7.3.2): $x \leftarrow x + \epsilon \nabla_x f_\theta(x) + \sqrt{2\epsilon}\, z$; exact only as
  $\epsilon \to 0$. A *noise scale* below 1 is the colder shortcut EBM papers use.
* **MALA**: the same move with a Metropolis–Hastings accept/reject, exact for any $\epsilon$ and any noise scale
  $s > 0$ — but a cold proposal ($s < 1$) is refused more often (watch the acceptance), and at $s = 0$ the
  reverse move is impossible ($\log\alpha = 0/0$): MALA uses $s \ge 0.25$.
* **Metropolis–Hastings** (7.3.1): $x' = x + \sigma z$, kept with probability $\min(1, e^{f(x') - f(x)})$ —
  no gradient, so it wanders: watch the chains crawl and the acceptance rate fall as $\sigma$ grows.

*Persistent chains* restart each batch from a **replay buffer** of earlier negatives (a share re-initialised
from uniform noise); off, every batch starts from noise (*short-run* MCMC). The penalty $\alpha(f(x^+)^2 + f(x^-)^2)$
keeps $f$ from drifting (Du & Mordatch 2019).
"""

SM_EXPLAIN = r"""
### What you are seeing — score matching (notes 7.4)
Score matching never samples and never needs $Z$: it fits the **score** $\nabla_x f_\theta$ (white arrows) to the
data's by the Fisher divergence, which integration by parts turns into
$$\mathbb E_{p_{\text{data}}}\big[\tfrac12 \|\nabla_x f_\theta(x)\|^2 + \operatorname{tr}\nabla_x^2 f_\theta(x)\big]$$
* **denoising** (Vincent 2011, the default): blur the data, $\tilde x = x + \sigma\epsilon$, and regress the score
  on the known $-\epsilon/\sigma$ — no Hessian at all; the model learns the *blurred* density (slightly wider
  than the data's), which is also what keeps it from overfitting.
* **exact**: the Hessian trace computed exactly — one extra backward pass per dimension, cheap in 2D, but $d$
  passes in $d$ dimensions (an image has thousands).
* **sliced** (Song et al. 2019): $\operatorname{tr} H$ replaced by $v^\top H v$ for random $v$ with
  $\mathbb E[vv^\top] = I$ — one Hessian-vector product, whatever the dimension (the same optimum as exact).

The chains are only for the pictures (Langevin on the learned $f$). Known weaknesses: the score is blind to how
much mass sits in modes far apart (the score is local) — compare the mode weights on *8 Gaussians*; and with a
flexible network and a finite sample, the **exact** objective can be driven far below zero by making $f$ sharply
peaked on the training points (the $\operatorname{tr}\nabla^2 f$ term rewards curvature there): watch the loss fall
without bound while the held-out NLL gets worse. The blur of **denoising** score matching prevents that, which is
why it is the default: on 8 Gaussians at 3,000 steps it reaches a held-out NLL of 2.4–2.5 nats (the true density:
2.13) against 4.8–7.4 for the exact objective (seeds 0–2); on banana, one connected mode, all three objectives come
within about 0.06 nats of the truth.
"""

NCE_EXPLAIN = r"""
### What you are seeing — noise-contrastive estimation (notes 7.5)
A classifier tells data from **noise** $p_n$ (a Gaussian, white ellipses at 1σ and 2σ) with
$$D(x) = \frac{e^{f_\theta(x)}}{e^{f_\theta(x)} + \nu Z p_n(x)},\qquad
\max_{\theta, Z}\ \mathbb E_{\text{data}}[\log D] + \nu\,\mathbb E_{p_n}[\log(1 - D)],$$
computed with logsumexp as in the notes ($\nu$ noise samples per data point; $\nu = 1$ in the notes).
$\log Z$ is a **free parameter**: nothing forces $Z = \int e^{f}$, yet at the optimum it becomes the partition
function. Watch the curves *log Z learned by NCE* and *log Z on the grid* meet. Noise far wider than the data
makes the task too easy (little signal near the data); noise that misses part of the data leaves it unlearnt.
"""

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
          "score matching or noise-contrastive estimation, and watch the MCMC chains move on the energy surface.",
    models=family_keys("ebm"),
    explain={"ebm_cd": CD_EXPLAIN + COMMON, "ebm_sm": SM_EXPLAIN + COMMON, "ebm_nce": NCE_EXPLAIN + COMMON},
    default_dataset="moons",
    panels=(("main", "Energy and chains", 470), ("samples", "Density and samples", 470),
            ("curves", "Training loss", CURVE_HEIGHT), ("energies", "f and log Z", CURVE_HEIGHT),
            ("nll", "Held-out log-likelihood", CURVE_HEIGHT), ("diag", "Sampler diagnostics", CURVE_HEIGHT)),
    options={"show_score": lambda: gr.Radio(["auto", "on", "off"], value="auto", label="score arrows",
                                            info="auto: on for score matching", elem_id="ebm-score",
                                            scale=0, min_width=260)},
    settings={"lr": 3e-3, "batch": 256},
)


class SandboxState(LiveState):
    """One visitor's sandbox: the chains, what they were built for, their curves, and the channel their
    page pulls the sandbox's frames from."""

    def __init__(self):
        self.box: SamplerSandbox | None = None
        self.signature: tuple | None = None
        self.settings: dict = {}
        self.history: dict[str, list] = {}


def _target(name: str, tab_state) -> tuple:
    """(log_prob, box, title) of a sandbox target; the learned one is a frozen copy of the model."""
    if name == "learned":
        sess = getattr(tab_state, "session", None)
        if sess is None or sess.model.family != "ebm":
            raise ValueError("train an energy-based model above first (then pick the learned energy)")
        model = copy.deepcopy(sess.model).cpu()
        return model.log_prob, sess.data.box, f"learned energy ({sess.model.title}, step {sess.step_count})"
    ds = DATASETS[name]
    b = ds.box
    return dataset_log_prob(name, ds.noise), (-b, b, -b, b), ds.title


def _stats(st: SandboxState, s: dict) -> str:
    ed = metrics.energy_distance(s["x"], s["reference"], max_n=500)
    for k, v in (("step", s["steps"]), ("accept", s["accept"]), ("rhat", s["rhat"]), ("ed", ed)):
        st.history.setdefault(k, []).append(float(v))
    acc = "—" if s["accept"] != s["accept"] else f"{100 * s['accept']:.0f}%"
    rhat = "—" if s["rhat"] != s["rhat"] else f"{s['rhat']:.2f}"
    return (f"<b>{SAMPLER_NAMES[s['method']]}</b> · step <b>{s['steps']:,}</b> · acceptance {acc} · "
            f"split R-hat (8 chains) {rhat} · energy distance to exact samples <b>{ed:.3f}</b>")


def sandbox_prepare(st: SandboxState, tab_state, target, method, step_log10, mh_scale, noise_scale,
                    steps_per_frame) -> str | None:
    """The sandbox's settings and chains for this target (kept when only the sampler changed); a reason
    when the target cannot be run."""
    st.settings = dict(method=method, step_size=10 ** float(step_log10), proposal_std=float(mh_scale),
                       noise_scale=float(noise_scale), steps=int(steps_per_frame))
    sess = getattr(tab_state, "session", None)
    sig = (target, (tab_state.signature, sess.step_count) if target == "learned" and sess else None)
    if st.box is None or st.signature != sig:
        try:
            log_prob, box, title = _target(target, tab_state)
        except (ValueError, KeyError) as err:
            return str(err)
        st.box, st.signature, st.history = SamplerSandbox(log_prob, box, title), sig, {}
    return None


def sandbox_frame(st: SandboxState) -> Frame:
    """Advance the chains by `steps per frame` with the current settings; the figures and the status."""
    cfg, box = st.settings, st.box
    box.configure(cfg["method"], cfg["step_size"], cfg["proposal_std"], cfg["noise_scale"])
    box.advance(cfg["steps"])
    s = box.state()
    return Frame({"plot": sandbox_figure(s), "curves": sandbox_curves(st.history)}, _stats(st, s), final=False)


def sandbox_run(st: SandboxState, tab_state, target, method, step_log10, mh_scale, noise_scale, steps_per_frame,
                max_seconds: float = 120.0):
    """The sandbox's own loop: a frame each time the page asks for one (at most SANDBOX_FPS a second), so
    the animation runs at the browser's pace and never queues; Stop (straight from the page), Reset, a
    new target, the page leaving or `max_seconds` end it."""
    ch = st.channel
    why = sandbox_prepare(st, tab_state, target, method, step_log10, mh_scale, noise_scale, steps_per_frame)
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
            frame = sandbox_frame(st)
            ch.publish(StaticSource(frame))
        else:
            time.sleep(0.01)
    if frame is not None and st.box is box:
        ch.publish(StaticSource(Frame({}, frame.status + " — <b>stopped</b>: press <b>Run chains</b> to go on")))
    yield


def sandbox_reset(st: SandboxState):
    st.box, st.signature, st.history = None, None, {}
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
