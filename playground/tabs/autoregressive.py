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

SPEC = TabSpec(
    key="autoregressive",
    title=TITLE,
    intro="**Autoregressive models** (notes ch. 3): the chain rule $p(x_1,x_2) = p(x_1)\\,p(x_2\\mid x_1)$ with "
          "each factor a small network. Discrete models (FVSBN, NADE, MADE) put exact probabilities on $K\\times K$ "
          "bins; RNADE uses mixtures of Gaussians. Move the **slice** to read off a conditional.",
    models=family_keys("autoregressive"),
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


class AutoregressiveTab(FamilyTab):
    def texts(self, snap: Snapshot) -> dict[str, str]:
        return {"autoregressive-info": inline_html(nll_text(snap))}


def build() -> FamilyTab:
    tab = AutoregressiveTab(SPEC)
    tab.build()
    with tab.options_row:
        with gr.Column(scale=3, min_width=480):
            text_block(inline_html(INFO_START), elem_id="autoregressive-info")
    tab.wire()
    return tab
