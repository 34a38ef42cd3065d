"""A placeholder for a topic whose tab is not built yet: says what it will hold."""

from __future__ import annotations

import gradio as gr

COMING = {
    "autoregressive": ("Autoregressive", "p(x₁)·p(x₂|x₁) with FVSBN, NADE, MADE and RNADE (notes ch. 3)."),
    "flows": ("Normalizing flows", "Planar, NICE, RealNVP, MAF and IAF, seen layer by layer (notes ch. 5)."),
    "gans": ("GANs", "Minimax, non-saturating, f-GAN and WGAN with the discriminator surface (notes ch. 6)."),
    "ebm": ("Energy-based models",
            "Contrastive divergence with Langevin / MH chains, score matching, NCE (notes ch. 7)."),
}


def build(name: str) -> None:
    title, what = COMING[name]
    gr.Markdown(f"### {title} — coming soon\n{what}\n\nThe **Latent variables** tab works today.")
