"""Latent variables tab (notes ch. 4): the mixture of Gaussians (EM or gradients) and the variational
autoencoder (ELBO / IWAE, with its likelihood by checked latent quadrature)."""

from __future__ import annotations

import math

import gradio as gr

from models import family_keys

from ..tabkit import FamilyTab, TabSpec

TITLE = "Latent variables"

VAE_PANELS = (("latent", "Latent space", 470), ("manifold", "Decoder manifold", 470),
              ("posterior", "Posterior of the chosen point", 470), ("estimator", "Estimating p(x)", 470),
              ("svi", "Per-point inference (SVI)", 470))

# Settings that suit each model when it is picked by hand (EM wants the full batch; a VAE small batches)
MODEL_SETTINGS = {"mog": {"lr": 0.01, "batch": 4096}, "vae": {"lr": 3e-3, "batch": 256}}

SPEC = TabSpec(
    key="latent",
    title=TITLE,
    intro="**Latent-variable models** (notes ch. 4): a hidden $z$ explains each point. "
          "Train a mixture of Gaussians by EM or by gradient ascent and watch the components find the data, "
          "or a variational autoencoder and watch its bounds, its latent space and its posteriors.",
    models=family_keys("latent"),
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
