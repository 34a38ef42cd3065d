"""Autoregressive tab (notes ch. 3): p(x1, x2) = p(x1) p(x2 | x1), discrete (FVSBN, NADE, MADE over
K x K bins) and continuous (RNADE), with the conditional at a slice and sequential sampling."""

from __future__ import annotations

import math

import gradio as gr

from models import family_keys

from ..liveplot import inline_html, text_block
from ..snapshot import AutoregressiveProbe, RNADEProbe, Snapshot
from ..tabkit import FamilyTab, TabSpec

TITLE = "Autoregressive"

COMMON = r"""
**Panels.** *Joint*: the model's density with the training points and the **slice** (orange) set by the
slider. *Factors*: the two factors the model is made of — the marginal $p(x_{\text{first}})$ (top) and the
conditional $p(x_{\text{second}}\mid x_{\text{first}} = a)$ at the slice (bottom), each over a histogram of the
training data (for the conditional: the points in the slice's bin or band). Moving the slider needs no
training: it picks another of the conditionals already computed. *Sequential sampling* (notes 3.1.1): for
four samples, the first draw is a dashed line, the conditional it selects is drawn along it, and the star
is the second draw. *Connectivity*: the units and the connections that exist (line width ∝ |weight|).

**Variable order.** The chain rule holds in any order: $p(x_1)p(x_2\mid x_1) = p(x_2)p(x_1\mid x_2)$. A family
whose conditionals can be anything (MADE or NADE with enough units, or RNADE with enough components) can
represent any joint in either order — the factorisation changes the model, not the family's
expressiveness in the limit. A restricted family (FVSBN's linear logits) is a different model in each
order: try both on the banana, where $x_2\mid x_1$ is Gaussian but $x_1\mid x_2$ is bimodal.
"""

DISCRETE = r"""
**Bins and nats.** Each coordinate is cut into $K$ bins over a box fitted to the training data (min/max
padded by 10%), so the model is a distribution over $K^2$ cells and every cell's probability
$P(i,j) = p(i)\,p(j\mid i)$ is exact (the heatmap draws the cells themselves; they sum to 1). To compare
with continuous models the cells become a **density**: pick a cell, then a uniform point inside it, so
$$\log p(x) = \log P(\text{bin}(x)) - \log(\text{bin area})\quad\text{(nats per unit area)},$$
and the reported held-out NLL is the cell NLL $-\log P$ plus $\log$(bin area) — the line under the buttons
shows both. A point outside the box has no cell: the model is the mixture
$(1-10^{-4})\,p_{\text{cells}} + 10^{-4}\,q$ with $q$ a broad Gaussian around the box, still a proper density, so
such a point costs a lot but not $+\infty$. More bins: finer detail, fewer points per cell to learn from.
"""

FVSBN = r"""
### What you are seeing — FVSBN with $K$ categories (notes 3.1.1)
A fully visible sigmoid belief network is logistic regression on the earlier variables,
$\hat x_i = \sigma(\alpha_0^{(i)} + \sum_{j<i}\alpha_j^{(i)}x_j)$. With $K$ categories the sigmoid becomes a softmax:
$p(x_{\text{first}}=i) = \mathrm{softmax}(b_1)_i$ (a free histogram) and
$p(x_{\text{second}}=j\mid x_{\text{first}}) = \mathrm{softmax}(b_2 + a\,u)_j$, where $u\in[-1,1]$ is the first
variable's bin centre. The log-odds are **linear in $u$**: enough for a correlated Gaussian (its conditional
mean is linear), far too rigid for two moons — watch the conditional panel.
"""

NADE = r"""
### What you are seeing — NADE with categorical outputs (notes 3.1.2–3.1.3)
One sigmoid hidden layer whose weights are **tied** across the conditionals: $h_i = \sigma(W_{<i}x_{<i} + c)$,
$p(x_i\mid x_{<i}) = \mathrm{softmax}(A_i h_i + b_i)$ (the categorical "RNADE-style" outputs of 3.1.3). With two
variables $h_{\text{first}} = \sigma(c)$ sees no input and $h_{\text{second}} = \sigma(c + w\,u)$ sees the first
variable's bin centre $u$, so the second conditional is a sum of $H$ sigmoids in $u$ per logit.
"""

MADE = r"""
### What you are seeing — MADE (notes 3.1.4)
An MLP whose weights are multiplied by fixed 0/1 **masks**: every unit gets a label, a hidden unit with
label $k$ may see inputs with label $\le k$, an output for variable $i$ only hidden units with label $<$ label$(i)$,
so output $i$ depends on $x_{<i}$ alone and the network is a valid autoregressive model (a DAG). With two
variables every hidden unit has label 1: they all see $x_{\text{first}}$ only, the first variable's $K$ logits
see nothing (a bias), the second's see every hidden unit. The connectivity panel draws the masks;
switch the order and the input wiring flips.
"""

RNADE = r"""
### What you are seeing — RNADE, the continuous version (notes 3.1.3)
No bins: both factors are mixtures of $K$ Gaussians,
$p(x_{\text{first}}) = \sum_k \pi_k\,\mathcal N(\mu_k, \sigma_k^2)$ with free parameters and
$p(x_{\text{second}}\mid x_{\text{first}}) = \sum_k \pi_k(h)\,\mathcal N(\mu_k(h), \sigma_k(h)^2)$ whose weights,
means and (exponentiated, so positive) standard deviations come from a tanh network $h$ of $x_{\text{first}}$ (mixing
weights are learned, as in Uria et al. 2013). Its log-density is in nats per unit area directly, the same
units as the discrete models' — compare their held-out NLLs on the same data.
"""

SPEC = TabSpec(
    key="autoregressive",
    title=TITLE,
    intro="**Autoregressive models** (notes ch. 3): the chain rule $p(x_1,x_2) = p(x_1)\\,p(x_2\\mid x_1)$ with "
          "each factor a small network. Discrete models (FVSBN, NADE, MADE) put exact probabilities on $K\\times K$ "
          "bins; RNADE uses mixtures of Gaussians. Move the **slice** to read off a conditional.",
    models=family_keys("autoregressive"),
    explain={"fvsbn": FVSBN + DISCRETE + COMMON, "nade": NADE + DISCRETE + COMMON,
             "made": MADE + DISCRETE + COMMON, "rnade": RNADE + COMMON},
    default_dataset="moons",
    panels=(("main", "Joint density", 470), ("factors", "Factors at the slice", 470),
            ("samples", "Sequential sampling", 470), ("network", "Connectivity", 470),
            ("curves", "Log-likelihood", 330), ("extra", "Sample distance", 330)),
    options={"slice_pos": lambda: gr.Slider(0.0, 1.0, value=0.5, step=0.01, elem_id="autoregressive-slice",
                                            label="slice: x_first = a, as a fraction across the plot",
                                            info="0 = left (or bottom) edge, 1 = right (or top); live, no retraining",
                                            scale=2, min_width=320)},
    settings={"lr": 3e-3, "batch": 256},
)


INFO_START = "Held-out NLL is reported in **nats per unit area** for every model. Press **Train**."


def nll_text(snap: Snapshot) -> str:
    """How the held-out NLL is measured: per unit area, and for discrete models per cell as well (plain
    text: it is redrawn every frame, and maths would make the browser typeset it every time)."""
    lt, p = snap.latest, snap.probe
    if "test_nll" not in lt or not isinstance(p, (AutoregressiveProbe, RNADEProbe)):
        return INFO_START
    text = f"Held-out NLL **{lt['test_nll']:.3f}** nats per unit area"
    if isinstance(p, AutoregressiveProbe) and "test_discrete_nll" in lt:
        area = p.log_bin_area
        text += (f" = **{lt['test_discrete_nll']:.3f}** nats per cell (−log P(bin), the discrete model's own) "
                 f"{'+' if area >= 0 else '−'} {abs(area):.3f} (log of the bin area, cells of {math.exp(area):.3g})")
        out = lt.get("test_outside_box", 0.0)
        if out:
            text += (f" for the points inside the bins' box; {100 * out:.1f}% of held-out points fall outside it "
                     "and get the floor density only")
    else:
        text += " (a continuous density: no bins)"
    if snap.data_nll is not None:
        text += f"; the true density scores {snap.data_nll:.3f}"
    return text + "."


def build() -> FamilyTab:
    tab = FamilyTab(SPEC)
    tab.build()
    with tab.options_row:
        with gr.Column(scale=3, min_width=480):
            text_block(inline_html(INFO_START), elem_id="autoregressive-info")
    tab.texts = lambda snap: {"autoregressive-info": inline_html(nll_text(snap))}
    tab.wire()
    return tab
