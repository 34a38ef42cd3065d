"""Diffusion and flow matching tab (the family notes 7.3-7.4 lead to): DDPM, a score SDE / NCSN and flow matching,
with the forward process at any noise level, the learned field, reverse trajectories (ODE vs SDE), the quality of
samples against sampling steps, and the exact held-out log-likelihood by the probability-flow ODE."""

from __future__ import annotations

import gradio as gr

from models import family_keys

from ..tabkit import FamilyTab, TabSpec

TITLE = "Diffusion & flow matching"
CURVE_HEIGHT = 320
N_LEVELS = 12  # the noise levels a diffusion model's probe shows (models/diffusion/base.py; a test holds them equal)


def _level_slider() -> gr.Slider:
    return gr.Slider(0, N_LEVELS - 1, value=3, step=1, label="noise level shown (0 = data … 11 = pure noise)",
                     info="the forward-process panel: x_t at this level, and the learned field there",
                     elem_id="diffusion-level", scale=2, min_width=260)


SPEC = TabSpec(
    key="diffusion",
    title=TITLE,
    intro="**Diffusion models and flow matching** — where score matching and Langevin sampling (notes 7.3–7.4) lead. "
          "Noise the data step by step, $x_t = \\alpha_t x_0 + \\sigma_t\\varepsilon$, and train one network to undo "
          "it at every noise level at once; sample by running the noise backwards (a stochastic sampler, or an ODE). "
          "The ODE makes the model a continuous normalizing flow (notes 5.1), so its held-out log-likelihood is "
          "exact up to the solver's error, which is shown: compare it with the flows' on the same data.",
    models=family_keys("diffusion"),
    default_dataset="8gaussians",
    panels=(("noising", "Forward process and learned field", 470), ("main", "Model density (ODE)", 470),
            ("paths", "Reverse trajectories", 470), ("samples", "Samples", 470),
            ("quality", "Quality vs sampling steps", CURVE_HEIGHT), ("levels", "Loss per noise level", CURVE_HEIGHT),
            ("curves", "Held-out log-likelihood", CURVE_HEIGHT), ("loss", "Training loss", CURVE_HEIGHT)),
    options={"level": _level_slider},
    settings={"lr": 3e-3, "batch": 256},
)


def build() -> FamilyTab:
    tab = FamilyTab(SPEC)
    tab.build()
    tab.wire()
    return tab
