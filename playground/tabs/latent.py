"""Latent variables tab (notes ch. 4): the mixture of Gaussians (EM or gradients) and the variational
autoencoder (ELBO / IWAE, with its likelihood by checked latent quadrature)."""

from __future__ import annotations

import math

import gradio as gr

from models import family_keys

from ..tabkit import FamilyTab, TabSpec

TITLE = "Latent variables"

MOG_EXPLAIN = r"""
### What you are seeing — mixture of Gaussians (notes 4.1)
The model is a latent-variable model $z \to x$: pick a component $z \sim \mathrm{Cat}(\pi)$, then draw
$x \sim \mathcal N(\mu_z, \Sigma_z)$, so $p(x) = \sum_k \pi_k\, \mathcal N(x;\mu_k,\Sigma_k)$.

* **Left, the density** $p(x)$ as a heatmap (tick *log density* to see the tails), each component's
  mean (× sized by its weight $\pi_k$) with its 1σ (solid) and 2σ (dashed) ellipse, and the training
  points coloured by their most responsible component $\arg\max_k p(z=k\mid x)$ — the latent $z$ the model infers.
* **Right, samples** drawn ancestrally: $z$ first, then $x$, coloured by $z$, over the held-out data.
* **Curves**: the average log-likelihood $\frac1{|D|}\sum_x \log p(x)$ on training and held-out points
  (notes 3.2.2). The dashed line is the *true* density's value when the dataset has one in closed form:
  the gap to it is the KL divergence from the data to the model, up to sampling noise.

**EM** alternates an *E-step* — the responsibilities $r_{nk} = p(z=k\mid x_n)$, the exact posterior, which
makes the ELBO of notes 4.3.4 tight — and an *M-step* that refits every $\pi_k, \mu_k, \Sigma_k$ to its
weighted points in closed form. With the batch at least the training set, every step can only raise the
training log-likelihood. Press **Step** to walk through it: the first press recolours the points (E),
the second moves the Gaussians (M). **Gradient** ascent instead follows $\nabla_\theta \log p(x)$ with Adam
over unconstrained parameters (mixture logits, means, Cholesky factors).
"""

VAE_EXPLAIN = r"""
### What you are seeing — variational autoencoder (notes 4.2–4.5)
A VAE is an infinite mixture of Gaussians: $z \sim \mathcal N(0, I)$ in 1 or 2 dimensions, then
$x \mid z \sim \mathcal N(\mu_\theta(z), \mathrm{diag}\,\sigma_\theta(z)^2)$ with $\mu_\theta, \sigma_\theta$ a
neural net (the **decoder**). Its likelihood $p(x) = \int p(z)\,p(x\mid z)\,dz$ is intractable in general
(4.3.1), so an **encoder** $q_\phi(z\mid x) = \mathcal N(m_\phi(x), \mathrm{diag}\,s_\phi(x)^2)$ — amortised
inference (4.4.5) — gives the **ELBO** (4.3.4, 4.5), trained with the reparameterisation
$z = m + s\odot\epsilon$ (4.4.3):
$$\log p(x) \;\ge\; \mathrm{IWAE}_k \;\ge\; \mathrm{ELBO}
= \mathbb E_{q}[\log p(x\mid z)] - \mathrm{KL}(q(z\mid x)\,\|\,p(z)),
\qquad \log p(x) - \mathrm{ELBO} = \mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x)).$$
That last gap is the **inference gap** (Cremer et al. 2018): the *approximation gap* — no diagonal Gaussian
is exactly $p(z\mid x)$ — plus the *amortisation gap* — one encoder for all $x$ does not find the best
Gaussian for each. Here $z$ has only 1 or 2 dimensions, so the playground also computes the **true**
$\log p(x)$ by quadrature, summing $p(z_j)\,p(x\mid z_j)$ over latent grid nodes, and checks every point
against a grid of twice the spacing. A point whose posterior is narrower than the shared grid (small
decoder $\sigma$) gets a grid of its own, centred and scaled on its posterior. The **log p(x)** curve's
legend says whether every point passed (an error bound in nats) or the value is an **estimate ± error**;
the heatmap uses one shared grid for all its pixels (while training, the configured one; when training stops,
up to 16 times as many nodes if that one is too coarse) and says when it is only an approximation.

* **Training** (*objective = iwae*, the default) starts on the ELBO with **free bits** (Kingma et al. 2016;
  *free bits* = 0.5 nats): each latent dimension's KL, averaged over the batch, counts only above that floor.
  A decoder with a learned $\sigma$ can otherwise explain the data as noise early on, and the KL term then
  switches a latent dimension off for good (*posterior collapse*: on *banana*, $z_2$ unused and 0.35 nats
  lost; set free bits to 0 with *objective = elbo* to watch it). After that warm-up (500 steps) it maximises
  **IWAE**$_k$ with $k$ = 4 samples (Burda et al. 2016), which lets $q$ leave holes the ELBO cannot: on
  8 Gaussians the held-out gap to the true entropy is 0.09-0.14 nats where the ELBO stops at 0.37-0.39, for
  about 1.6x the cost of an ELBO step. *objective = elbo* keeps the ELBO throughout. What you see (density,
  samples, views, held-out numbers) comes from a moving average of the networks' weights (*weight averaging*,
  0.99 per step; 0 shows the trained weights), which smooths out Adam's jitter.
* **Density** $p(x)$ (heatmap) and **samples** $z \sim p(z)$, $x \sim p(x\mid z)$ over held-out data.
* **Bounds**: held-out $\log p(x)$, the **IWAE** bound with $k$ importance samples
  $\log \frac1k\sum_i p(x, z_i)/q(z_i\mid x)$ (Burda et al. 2016; *samples k* here is the held-out bound's,
  16 by default) and the ELBO;
  next to them the ELBO's two terms and the **gaps** $\log p - \mathrm{ELBO} = \mathrm{KL}(q\,\|\,p(z\mid x))$
  (approximation + amortisation gap) and $\log p - \mathrm{IWAE}_k$, which shrink as the encoder learns.
* **Latent space**: the encoder means $m(x)$ of the training points, each coloured by where its $x$ lies
  (the same colours as in the decoder panel), over the aggregate posterior $q(z) = \frac1n\sum_i q(z\mid x_i)$
  (blue) and the prior's 1, 2, 3σ circles: the prior term pulls $q(z)$ towards $p(z)$.
* **Decoder manifold**: a latent grid (or the latent line) mapped through $\mu_\theta$ — how the decoder
  folds the prior onto the data. A direction the decoder ignores collapses: its posterior stays the prior.
* **Chosen point** (slider): its true posterior $p(z\mid x) = p(z)p(x\mid z)/p(x)$ on the grid (blue) and
  $q(z\mid x)$ (red ellipses): their KL is the inference gap for this $x$ — partly because $p(z\mid x)$ is not
  Gaussian (approximation), partly because the encoder misses the best Gaussian (amortisation). Where the
  shared grid is too coarse for this posterior, the panel says its numbers are rough.
* **Estimating** $p(x)$ (4.3.2–4.3.3) for that point from $k$ latent samples, repeated 40 times (median and
  10–90% band): *naive* Monte Carlo with $z$ uniform, $|\mathcal Z|\frac1k\sum_i p(x, z_i)$, misses the small
  region where $p(x, z)$ lives; *importance sampling* from $q(z\mid x)$, $\frac1k\sum_i p(x,z_i)/q(z_i\mid x)$, is
  close from $k = 1$. The mean of its log is exactly $\mathrm{IWAE}_k$ ($k=1$: the ELBO), below $\log p(x)$ by
  Jensen. Here $z$ ranges over the latent grid's nodes, as in the notes' sums over $z$.
"""

VAE_PANELS = (("latent", "Latent space", 470), ("manifold", "Decoder manifold", 470),
              ("posterior", "Posterior of the chosen point", 470), ("estimator", "Estimating p(x)", 470))

# Settings that suit each model when it is picked by hand (EM wants the full batch; a VAE small batches)
MODEL_SETTINGS = {"mog": {"lr": 0.01, "batch": 4096}, "vae": {"lr": 3e-3, "batch": 256}}

SPEC = TabSpec(
    key="latent",
    title=TITLE,
    intro="**Latent-variable models** (notes ch. 4): a hidden $z$ explains each point. "
          "Train a mixture of Gaussians by EM or by gradient ascent and watch the components find the data, "
          "or a variational autoencoder and watch its bounds, its latent space and its posteriors.",
    models=family_keys("latent"),
    explain={"mog": MOG_EXPLAIN, "vae": VAE_EXPLAIN},
    default_dataset="8gaussians",
    panels=(("main", "Density and components", 460), ("samples", "Samples", 460),
            ("curves", "Log-likelihood", 300), ("extra", "Sample distance", 300)) + VAE_PANELS,
    options={"point": lambda: gr.Slider(0, 999, value=0, step=1, label="chosen data point (index)",
                                        info="the VAE's posterior and estimator panels show this training point",
                                        elem_id="latent-point", visible=False, scale=1, min_width=260)},
    settings=MODEL_SETTINGS["mog"],
    model_settings=MODEL_SETTINGS,
)


def _show_model(key: str) -> list:
    """The VAE's own panels and its point slider are shown only while the VAE is picked."""
    return [gr.update(visible=key == "vae") for _ in range(len(VAE_PANELS) + 1)]


def _model_settings(key: str) -> list:
    s = MODEL_SETTINGS.get(key)
    if s is None:
        return [gr.skip(), gr.skip()]
    return [round(math.log10(s["lr"]), 2), s["batch"]]


def build() -> FamilyTab:
    tab = FamilyTab(SPEC)
    tab.build()
    vae_only = [tab.plots[name] for name, _, _ in VAE_PANELS] + [tab.options["point"]]
    for comp in vae_only:
        comp.visible = False
    tab.wire()
    tab.model_dd.change(_show_model, [tab.model_dd], vae_only, api_visibility="private", queue=False)
    # picked by hand (not by a shared link, which brings its own settings): that model's usual settings
    tab.model_dd.input(_model_settings, [tab.model_dd],
                       [tab.settings_controls["lr"].component, tab.settings_controls["batch"].component],
                       api_visibility="private", queue=False)
    return tab
