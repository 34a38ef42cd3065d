"""GANs tab (notes ch. 6): minimax, non-saturating, f-GAN and WGAN, with the game made visible."""

from __future__ import annotations

import gradio as gr

from models import family_keys

from ..liveplot import inline_html, text_block
from ..snapshot import Snapshot
from ..tabkit import FamilyTab, TabSpec
from ..views.gans import CURVE_HEIGHT, DIVERGENCE_LABEL, N_MODES

TITLE = "GANs"

COMMON = r"""
**Left**: the discriminator's view of the plane as a heatmap — green where it says *real*, purple where it
says *fake*, white where it cannot tell — with the real points (green), the generator's samples (purple) and,
on a fixed set of tracked fakes, **arrows** $-\nabla_x \ell_G(x)$: where the generator is being pushed to move
each sample (their length is rescaled every frame; the legend gives the true mean size).
**Right**: the generator's **manifold** — a grid in latent space mapped through $G$ and drawn as warped lines
(latent dimension 1 or 2 shows all of it; higher dimensions a 2D slice).
**Buttons**: *one D step* trains only the discriminator (the heatmap sharpens, the fakes stay), *one G step*
moves only the fakes (along the arrows), *D + G step* does both; **Step** is one full iteration
($k$ D steps, then one G step). Both learning rates can be changed while it trains.

A GAN has **no density** $p(x)$: the generator only samples, so there is no likelihood to report. It is
judged by two-sample tests (notes 6.2): the discriminator's own divergence estimate, a histogram
Jensen–Shannon between real and fake points, and, on 8 / 25 Gaussians, the standard mode-collapse metrics —
**modes covered** (≥ 20% of a fair share of samples within 3σ) and the fraction of **high-quality** samples
(within 3σ of some mode).

**The defaults, and why.** ReLU networks, Adam with $\beta = (0, 0.9)$, and a generator step twice the
discriminator's. The purple samples, the manifold and the mode metrics come from $\bar G$, a **moving average
of the generator's weights** (decay 0.99, Yazıcı et al. 2019): at a constant step size $G$ keeps circling the
equilibrium and its average sits nearer it. The game itself trains $G$: the tracked fakes and their arrows are
$G$'s (*generator weight averaging* = 0 shows $G$'s own samples everywhere). With these, every classic and
f-GAN objective covers 24–25 of the 25 modes of *25 Gaussians* in 3,000 steps (seeds 0–2; the former defaults:
10–18), WGAN-GP 25, weight clipping 15 (`python -m playground bench quality --families gan`); at 1,000 steps
expect about 15–20.
"""

R1 = r"""
**R1 penalty** (on by default, $\gamma = 1$): the discriminator's loss gets
$\frac{\gamma}{2}\,\mathbb E_{p}\|\nabla_x v(x)\|^2$ on real points (Mescheder et al. 2018; $v$ is its raw
output, $x$ in standardised coordinates), on every 4th D step with weight 4 (lazy, Karras et al. 2020). It keeps
$D$ from growing steep on the data, which damps the oscillation that drops modes. It also holds $D$ back from
the optimum of the bound, so the divergence estimate is a looser lower bound and $D$ never becomes sure
enough to starve the minimax generator: set $\gamma = 0$ to see both."""

CLASSIC = r"""
### What you are seeing — {name} (notes 6.4–6.6)
The discriminator $D(x) = \sigma(v(x))$ maximises
$V(G, D) = \mathbb E_{{p}}[\log D(x)] + \mathbb E_{{q}}[\log(1 - D(x))]$.
For a fixed generator the best discriminator is $D^*(x) = \frac{{p(x)}}{{p(x) + q(x)}}$, and then
$V(G, D^*) = -\log 4 + 2\,\mathrm{{JSD}}(p, q)$ (notes 6.5): the curve *JS estimate* is $\frac12(V + \log 4)$
on held-out data, a lower bound on the JSD that is tight at $D^*$.
{gen}
{r1}
"""

MINIMAX_G = r"""The generator **minimises $\mathbb E_q[\log(1 - D(G(z)))]$** — the same $V$ (the true minimax game).
Its gradient at a fake is $D(x)\,\nabla_x v$: where $D$ confidently rejects the fakes ($D \approx 0$),
$\log(1-D)$ is flat and the generator **stalls**. In 2D the generator starts on top of the data, so $D$ is
rarely that sure and Adam rescales small gradients: to see the stall, set the *R1 penalty* to 0 and the
discriminator learning rate to $10^{-2}$, press **one D step** ten to thirty times, then **one G step** — the
*gradient reaching the generator* is about 100× smaller than the non-saturating GAN's at the same point (try
both)."""

NS_G = r"""The generator instead **minimises $-\mathbb E_q[\log D(G(z))]$** (Goodfellow et al. 2014): the same fixed
point, but a strong gradient exactly when $D$ rejects the fakes, so training starts at once. Compare the
*gradient reaching the generator* curve with the minimax GAN's."""

FGAN = r"""
### What you are seeing — f-GAN, {name} (notes 6.7)
For a convex $f$ with $f(1) = 0$, $D_f(p\,\|\,q) = \mathbb E_q[f(p/q)]$, and with the Fenchel conjugate
$f^*(t) = \sup_u\,(ut - f(u))$ every function $T$ gives the lower bound
$$D_f(p\,\|\,q) \ge \mathbb E_{{p}}[T(x)] - \mathbb E_{{q}}[f^*(T(x))],$$
tight at $T^*(x) = f'(p(x)/q(x))$. Here $p$ is the data, $q$ the generator.
The heatmap is $T(x) = g_f(v(x))$, the network's output through the activation that keeps $T$ in the domain of
$f^*$ (Nowozin et al. 2016, table 2); white is $T = f'(1) = {t1}$, its value where $p = q$.

| | |
|---|---|
| $f(u)$ | ${f}$ |
| activation $g_f(v)$ | ${g}$ |
| conjugate $f^*(t)$ | ${fstar}$ |

*Generator loss*: **saddle** minimises the bound itself, $-\mathbb E_q[f^*(T)]$; **non-saturating** maximises
$\mathbb E_q[T]$ (Nowozin et al. §3.2). {note}
{r1}
"""

F_ROWS = {
    "fgan_kl": ("KL(data ‖ model)", r"u\log u", "v", r"e^{t-1}", "1",
                "Mode-covering: missing a mode is infinitely costly. Saddle loss by default."),
    "fgan_rkl": ("reverse KL(model ‖ data)", r"-\log u", r"-e^{-v}", r"-1-\log(-t)", "-1",
                 "Mode-seeking: fakes off the data are infinitely costly, missed modes are cheap (with the defaults it "
                 "still covers all 25 modes of 25 Gaussians in 3,000 steps; with the R1 penalty at 0, 20–24). "
                 "Saddle loss by default (the non-saturating one, $e^{-v}$, explodes where D is sure)."),
    "fgan_js": ("Jensen–Shannon", r"u\log u-(u+1)\log\tfrac{u+1}{2}", r"\log 2-\log(1+e^{-v})",
                r"-\log(2-e^{t})", "0",
                "This $f$ gives $2\\,\\mathrm{JSD}$; the curve shows half the bound. With the non-saturating loss "
                "this is exactly the non-saturating GAN."),
    "fgan_pearson": ("Pearson χ²", r"(u-1)^2", "v", r"\tfrac14 t^2 + t", "0", ""),
    "fgan_hellinger": ("squared Hellinger", r"(\sqrt u-1)^2", r"1-e^{-v}", r"\tfrac{t}{1-t}", "0", ""),
}

WGAN = r"""
### What you are seeing — {name} (notes 6.8)
The Wasserstein-1 distance in its Kantorovich–Rubinstein dual form,
$W_1(p, q) = \inf_{{\gamma \in \Pi(p, q)}} \mathbb E_\gamma \|x - y\|_2
= \sup_{{\|f\|_L \le 1}} \mathbb E_{{p}}[f(x)] - \mathbb E_{{q}}[f(x)]$:
a **critic** $f$ (no sigmoid: the heatmap is its value, white at the midpoint between its mean on real and fake
points) maximises the gap, the generator minimises $-\mathbb E_q[f(G(z))]$. The gap shrinks smoothly even
when the supports of $p$ and $q$ do not overlap, where the JS divergence is stuck at $\log 2$.
{detail}

**Transport cost: Euclidean.** The notes write the cost as $\|x - y\|_1$; its dual constraint is
$|f(x) - f(y)| \le \|x - y\|_1$, i.e. $\|\nabla f\|_\infty \le 1$. Here, as in Arjovsky et al. and Gulrajani et al.,
the cost is $\|x - y\|_2$, whose constraint is $\|\nabla f\|_2 \le 1$ (the norm WGAN-GP's penalty uses).
The two distances bracket each other in 2D, $W_1^{{(2)}} \le W_1^{{(1)}} \le \sqrt 2\, W_1^{{(2)}}$:
two points $(3, 4)$ apart are 5 apart here, 7 under the notes' cost. Distances are in data units.
"""

CLIP = r"""The Lipschitz constraint by **weight clipping**: after every critic step each weight is clipped to
$[-c, c]$ (RMSprop, $k = 5$ critic steps per generator step). That bounds the slope by some unknown $K$, so the
curve estimates $K\cdot W_1$; too small a $c$ gives a nearly linear critic, too large an unconstrained one.
**A failure on purpose**: clipping pushes the critic towards simple functions (Gulrajani et al. 2017, fig. 1),
so on *25 Gaussians* it covers about 15 of the modes in 3,000 steps (12–19 with other clips, optimisers, critic
steps or learning rates) where the gradient penalty covers all 25."""

GP = r"""The constraint by a **gradient penalty** (Gulrajani et al. 2017): the critic's loss gets
$\lambda\,\mathbb E[(\|\nabla_x f(\hat x)\|_2 - 1)^2]$ at points $\hat x = \epsilon x + (1-\epsilon)\tilde x$ between
real and fake pairs (the *critic loss* curve is $\mathbb E_q f - \mathbb E_p f$ alone). The gradient panel shows
$\|\nabla_x f(\hat x)\|$ pulled to 1; where it sits at 1 the critic gap estimates $W_1$ itself. The penalty is
soft: for two point masses a distance $D$ apart the best critic has slope $1 + D/(2\lambda)$ and gap
$D + D^2/(2\lambda)$, so while $p$ and $q$ are far apart the gap over-estimates $W_1$.
Defaults: $\lambda = 1$ and $k = 2$ critic steps (the paper takes 10 and 5 on images; its released code for
the 2D sets, `gan_toy.py`, $\lambda = 0.1$). A unit-slope critic changes by at most 0.3 within 3σ of a mode of
std 0.1: at $\lambda = 10$ that push is too faint, and 4–12 of the 25 modes were covered; 24–25 with these."""


def _explain() -> dict[str, str]:
    out = {"gan_minimax": CLASSIC.format(name="minimax GAN", gen=MINIMAX_G, r1=R1),
           "gan_ns": CLASSIC.format(name="non-saturating GAN", gen=NS_G, r1=R1),
           "wgan": WGAN.format(name="WGAN with weight clipping", detail=CLIP),
           "wgan_gp": WGAN.format(name="WGAN-GP", detail=GP)}
    for key, (name, f, g, fstar, t1, note) in F_ROWS.items():
        out[key] = FGAN.format(name=name, f=f, g=g, fstar=fstar, t1=t1, note=note, r1=R1)
    return {k: v + COMMON for k, v in out.items()}


SPEC = TabSpec(
    key="gans",
    title=TITLE,
    intro="**Generative adversarial networks** (notes ch. 6): a generator $G(z)$ turns noise into points and a "
          "discriminator learns to tell them from the data; each learns from the other. Watch the game: the "
          "discriminator's surface, the generator's push on its samples, and whether it covers every mode.",
    models=family_keys("gan"),
    explain=_explain(),
    default_dataset="8gaussians",
    panels=(("main", "Discriminator", 470), ("samples", "Generator manifold", 470),
            ("curves", "Losses", CURVE_HEIGHT), ("extra", "Divergence estimate", CURVE_HEIGHT),
            ("modes", "Mode coverage", CURVE_HEIGHT), ("grad", "Generator gradient", CURVE_HEIGHT)),
    log_density_option=False,
    options={"show_push": lambda: gr.Checkbox(True, label="show G's push (arrows)", elem_id="gans-push",
                                              scale=0, min_width=200)},
    settings={"batch": 256},
)


def one_d_step(model, x, optimizers) -> dict[str, float]:
    return model.d_step(x, optimizers["d"])


def one_g_step(model, x, optimizers) -> dict[str, float]:
    return model.g_step(x.shape[0], optimizers["g"])


def d_and_g_step(model, x, optimizers) -> dict[str, float]:
    d = model.d_step(x, optimizers["d"])
    return {"loss": d["d_loss"], **d, **model.g_step(x.shape[0], optimizers["g"])}


def info_text(snap: Snapshot) -> str:
    """GANs have no density: say so, and give what measures them instead."""
    lt = snap.latest
    parts = []
    if "divergence" in lt:
        parts.append(f"{DIVERGENCE_LABEL.get(snap.model_key, 'divergence estimate').split(' (')[0]}: "
                     f"**{lt['divergence']:.3g}**")
    if "hist_js" in lt:
        parts.append(f"histogram JS {lt['hist_js']:.2f} bits")
    if "modes_covered" in lt:
        total = N_MODES.get(snap.dataset)
        parts.append(f"modes covered **{lt['modes_covered']:.0f}{f'/{total}' if total else ''}**")
    if "high_quality" in lt:
        parts.append(f"high-quality samples {100 * lt['high_quality']:.0f}%")
    if "g_grad_norm" in lt:
        parts.append(f"gradient reaching G {lt['g_grad_norm']:.2g}")
    text = ("**No density:** a GAN's generator only samples — there is no $p(x)$, so no likelihood (NLL) "
            "to report. It is measured by two-sample tests instead" + (": " + " · ".join(parts) if parts else "."))
    if snap.status == "stopped" and snap.event == "action":
        text += f"  \n_{snap.message}_"
    return text


def build() -> FamilyTab:
    tab = FamilyTab(SPEC)
    tab.build()
    # GANs have a learning rate per player (lr_g, lr_d among the model's controls): hide the shared one
    tab.settings_controls["lr"].component.visible = False
    with tab.options_row:
        d_btn = gr.Button("one D step", elem_id="gans-dstep", size="sm", scale=0, min_width=110)
        g_btn = gr.Button("one G step", elem_id="gans-gstep", size="sm", scale=0, min_width=110)
        both_btn = gr.Button("D + G step", elem_id="gans-both", size="sm", scale=0, min_width=110)
        with gr.Column(scale=1, min_width=640):  # wide enough to wrap onto its own line
            text_block(inline_html("**No density:** a GAN's generator only samples — there is no $p(x)$, so no "
                                   "likelihood (NLL) to report. Press **Train**."), elem_id="gans-info")
    tab.texts = lambda snap: {"gans-info": inline_html(info_text(snap))}
    tab.wire()
    tab.wire_action(d_btn, lambda s: s.apply(one_d_step, "one D step"), show_progress="hidden")
    tab.wire_action(g_btn, lambda s: s.apply(one_g_step, "one G step", counts_as_step=True),
                    show_progress="hidden")
    tab.wire_action(both_btn, lambda s: s.apply(d_and_g_step, "D + G step", counts_as_step=True),
                    show_progress="hidden")
    return tab
