"""Normalizing flows tab (notes ch. 5): planar, NICE, Real NVP, MAF, IAF and a MAF -> IAF
distillation, trained live and seen layer by layer."""

from __future__ import annotations

import gradio as gr

from models import family_keys
from models.flows import TARGET_DATASET_NAMES

from ..datasets import DATASETS
from ..snapshot import FlowProbe, Snapshot
from ..tabkit import FamilyTab, TabSpec, TabState

TITLE = "Normalizing flows"
MAX_LAYERS = 32
TARGET_DATASETS = TARGET_DATASET_NAMES  # what "fit to: target" accepts
TARGET_NOTE = ("**Fit to a target density** (reverse KL) needs a dataset whose density is known in closed form: "
               "8 or 25 Gaussians, Banana, Correlated Gaussian, U1–U4 or Donut (U1–U4 are Rezende & Mohamed's "
               "classic energies). The planar flow only fits targets.")

COMMON = r"""
**Panels.** *Model density*: the exact $p(x)$ from the change of variables (notes 5.1–5.2); the title shows
that it integrates to ≈ 1 on the grid. *Samples*: $x = f(z)$, $z \sim \mathcal N(0, I)$, over held-out data.
*Layer by layer*: a grid of lines and nodes in $z$-space pushed through the first $k$ layers (move the
**layer** slider: 0 is the base Gaussian, the last is the model), each node coloured by its exact density
$\log p_k(z_k) = \log \mathcal N(z_0) - \sum_{j\le k} \log|\det \partial z_j/\partial z_{j-1}|$ — no inverse needed.
*Latent space*: the training data pulled back, $z = f^{-1}(x)$, over the standard normal's circles: when the
flow fits, they look like Gaussian draws (mean $|z|^2 \to 2$) and each part of the data keeps its colour.
*Change of variables*: $\log p(x) = \log \mathcal N(f^{-1}(x)) + \log|\det \partial f^{-1}/\partial x|$,
each term apart — or, fitting a target, $\mathrm{KL}(q\,\|\,p^*) = $ cross-entropy − entropy and the bounds
on $\log Z = 0$.
*Volume change per layer*: $\mathbb E \log|\det|$ of each layer; > 0 spreads mass, < 0 gathers it.

**Fit to data** maximises $\frac1{|D|}\sum_x \log p(x)$ (forward KL, notes 5.3). **Fit to a target**
minimises $\mathrm{KL}(q\,\|\,p^*) = \mathbb E_{z}[\log q(f(z)) - \log p^*(f(z))]$ from the flow's own samples
(reverse KL): it is *mode-seeking* — try 8 Gaussians and watch it settle on a few modes.
**Compiled mode** runs `torch.compile` on the loss: faster steps after a one-off start-up of 20–60 s.
**Weight averaging**: what is shown (density, samples, held-out NLL) is an exponential moving average of the
weights (Polyak averaging); the loss curve is the raw weights'. Set it to 0 to see the raw weights.
**Gradient clipping**: each step's gradient is scaled down to norm 10 when it is longer, so that one batch's spike
cannot throw the flow out of the fit it has found.
"""

EXPLAIN = {
    "planar": r"""
### Planar flow (notes 5.4.1)
Each layer is $f(z) = z + \hat u\, \tanh(w^\top z + b)$: it pushes the plane along $\hat u$ by an amount that
changes across the hyperplane $w^\top z + b = 0$, with $|\det J| = |1 + \tanh'(w^\top z + b)\,\hat u^\top w|$.
It is invertible only when $w^\top \hat u \ge -1$: $\hat u = u + (m(w^\top u) - w^\top u)\,w/\|w\|^2$ with
$m(a) = -1 + \log(1 + e^a)$ guarantees it for any learned $u, w$. There is **no closed-form inverse**, so a planar
flow cannot be fit to data by maximum likelihood: it fits a **target density** by reverse KL (pick U1–U4).
Its density on the grid here comes from inverting each layer numerically (a 1-D root in $w^\top z$).
""",
    "nice": r"""
### NICE (notes 5.4.2)
Additive coupling: keep one coordinate, shift the other by a network of it,
$x_a = z_a,\; x_b = z_b + m_\theta(z_a)$; the inverse subtracts the same shift. The Jacobian is triangular with
ones on the diagonal, so $\det J = 1$: every coupling **preserves volume** (its bar is 0). Only the
**diagonal scaling** $z'_i = s_i z_i$ changes volume. It sits at the **latent end** (the first layer from $z$),
as in the NICE paper (§3.3, "the top layer" of $x \to h$); the notes put it at the data end ($x_i = s_i z_i$).
Both give the same densities; the latent end trained better here. Layers alternate which coordinate is kept.
""",
    "realnvp": r"""
### Real NVP (notes 5.4.3)
Affine coupling: $x_a = z_a,\; x_b = z_b \odot \exp(\alpha_\theta(z_a)) + \mu_\theta(z_a)$, inverse
$z_b = (x_b - \mu_\theta(x_a)) \odot \exp(-\alpha_\theta(x_a))$, and $\log|\det J| = \sum \alpha_\theta(z_a)$: unlike
NICE each layer can **stretch and squeeze** space. $\alpha$ is soft-clamped, $4\tanh(\cdot/4)$, so a scale can
never overflow, and the networks see their input clamped to ±3 standard deviations, so beyond the data each layer is
affine and the tails cannot run away. Both directions take one pass, so it fits data and targets equally fast.
""",
    "maf": r"""
### Masked autoregressive flow (notes 5.4.4)
$x_i = z_i \exp(\alpha_i(x_{<i})) + \mu_i(x_{<i})$ with all $\mu_i, \alpha_i$ from one **MADE** network (notes 3.1.4):
the **density** $x \to z$ takes one pass; **sampling** $z \to x$ is sequential (one pass per coordinate).
The Jacobian is triangular, $\log|\det| = \sum_i \alpha_i$. The order of the coordinates alternates between layers.
""",
    "iaf": r"""
### Inverse autoregressive flow (notes 5.4.5)
The reverse of MAF: $x_i = z_i \exp(\alpha_i(z_{<i})) + \mu_i(z_{<i})$, so **sampling** takes one pass and the
**density** of a given $x$ is sequential. In 2-D sequential means two passes, so IAF trains by maximum
likelihood here too; in high dimension it is used where only its own samples are scored (reverse KL,
variational inference, and the student below).
""",
    "iaf_student": r"""
### Teacher → student, as in Parallel WaveNet (notes 5.4.6)
**Phase 1** (the *teacher steps*): a MAF teacher learns the data by maximum likelihood (left). **Phase 2**: the
teacher is frozen and an IAF student (right) minimises
$\mathrm{KL}(s\,\|\,t) = \mathbb E_{x\sim s}[\log s(x) - \log t(x)]$ using **only its own samples**: $\log s(x)$
comes from the same one-pass sample, $\log t(x)$ from the teacher's one-pass density — neither flow's slow
direction is needed. The KL is mode-seeking: on two moons or 8 Gaussians the student may keep only part of the
teacher (its held-out NLL then explodes where it put no mass); on Banana or Pinwheel it copies the teacher
closely. Early in phase 2 the KL is huge (a fresh student puts mass where the teacher has almost none), hence
the log axis; the student's gradient norm is clipped at 5.
""",
}


def _layer_slider() -> gr.Slider:
    return gr.Slider(0, MAX_LAYERS, value=MAX_LAYERS, step=1, label="layer shown (0 = base Gaussian)",
                     info="the layer-by-layer panel: the grid after the first k layers", elem_id="flows-layer",
                     scale=2, min_width=260)


SPEC = TabSpec(
    key="flows",
    title=TITLE,
    intro="**Normalizing flows** (notes ch. 5): an invertible map $x = f(z)$ of a Gaussian $z$, with an exact "
          "density by the change of variables formula. Train one and watch the grid warp, layer by layer, from "
          "the base Gaussian to the data. " + TARGET_NOTE,
    models=family_keys("flow"),
    explain={k: v + COMMON for k, v in EXPLAIN.items()},
    default_dataset="moons",
    panels=(("main", "Model density", 460), ("samples", "Samples", 460),
            ("layers", "Layer by layer", 460), ("latent", "Latent space", 460),
            ("curves", "Log-likelihood", 320), ("terms", "Change of variables", 320),
            ("distance", "Sample distance", 300), ("perlayer", "Volume change per layer", 300)),
    options={"layer": _layer_slider},
    settings={"lr": 3e-3, "batch": 512},
)


def _needs_target(model: str, fit: str | None) -> bool:
    return model == "planar" or (fit == "target" and model != "iaf_student")


def pick_target_dataset(source: str, dataset: str, needs_target: bool):
    """A target-only choice on data without a density switches to U1 at its own temperature
    (dataset, source, noise)."""
    if needs_target and (source != "Built-in" or dataset not in TARGET_DATASETS):
        return gr.update(value="u1"), gr.update(value="Built-in"), gr.update(value=DATASETS["u1"].noise)
    return gr.skip(), gr.skip(), gr.skip()


def build() -> FamilyTab:
    tab = FamilyTab(SPEC)
    tab.build()
    planar_fit = tab.model_controls["planar"]["fit"].component
    planar_fit.interactive = False  # greyed out: planar flows only fit targets (its help says why)
    slider = tab.options["layer"]
    tab.extra_outputs = [slider]

    def extra_values(st: TabState, snap: Snapshot) -> list:
        """Fit the layer slider to this model's depth when the depth changes."""
        depth = int(snap.probe.stage_lines.shape[0]) - 1 if isinstance(snap.probe, FlowProbe) else None
        if depth is None or getattr(st, "layer_max", None) == depth:
            return [gr.skip()]
        st.layer_max = depth
        return [gr.update(maximum=depth, value=depth)]

    tab.extra_values = extra_values
    tab.wire()
    tab.model_dd.input(lambda m, s, d: pick_target_dataset(s, d, _needs_target(m, None)),
                       [tab.model_dd, tab.source, tab.dataset], [tab.dataset, tab.source, tab.noise],
                       api_visibility="private", queue=False)
    for key in ("nice", "realnvp", "maf", "iaf"):
        fit = tab.model_controls[key]["fit"].component
        fit.input(lambda f, s, d: pick_target_dataset(s, d, f == "target"), [fit, tab.source, tab.dataset],
                  [tab.dataset, tab.source, tab.noise], api_visibility="private", queue=False)
    return tab
