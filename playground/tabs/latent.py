"""Latent variables tab (notes ch. 4): the mixture of Gaussians, trained by EM or by gradients."""

from __future__ import annotations

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

SPEC = TabSpec(
    key="latent",
    title=TITLE,
    intro="**Latent-variable models** (notes ch. 4): a hidden $z$ explains each point. "
          "Train a mixture of Gaussians by EM or by gradient ascent and watch the components find the data.",
    models=["mog"],
    explain={"mog": MOG_EXPLAIN},
    default_dataset="8gaussians",
    panels=(("main", "Density and components", 460), ("samples", "Samples", 460),
            ("curves", "Log-likelihood", 300), ("extra", "Sample distance", 300)),
    settings={"lr": 0.01, "batch": 4096},
)


def build() -> FamilyTab:
    tab = FamilyTab(SPEC)
    tab.build()
    tab.wire()
    return tab
