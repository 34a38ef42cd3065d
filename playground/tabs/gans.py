"""GANs tab (notes ch. 6): minimax, non-saturating, f-GAN, WGAN, BiGAN and CycleGAN, with the game made visible."""

from __future__ import annotations

import gradio as gr

from models import family_keys

from .. import plots
from ..liveplot import inline_html, text_block
from ..snapshot import GANProbe, Snapshot
from ..tabkit import FamilyTab, TabSpec
from ..views.gans import CURVE_HEIGHT, N_MODES

TITLE = "GANs"

ENCODER_PANELS = (("latent", "Latent space (BiGAN)", 470), ("recon", "Reconstructions (BiGAN)", 470))
CYCLE_PANELS = (("translate", "Translation x → G(x) (CycleGAN)", 470), ("cycle", "Cycle x → F(G(x)) (CycleGAN)", 470))
OWN_PANELS = {"bigan": ENCODER_PANELS, "cyclegan": CYCLE_PANELS}  # panels shown only while their model is picked

SPEC = TabSpec(
    key="gans",
    title=TITLE,
    intro="**Generative adversarial networks** (notes ch. 6): a generator $G(z)$ turns noise into points and a "
          "discriminator learns to tell them from the data; each learns from the other. Watch the game: the "
          "discriminator's surface, the generator's push on its samples, and whether it covers every mode.",
    models=family_keys("gan"),
    default_dataset="8gaussians",
    panels=(("main", "Discriminator", 470), ("samples", "Generator manifold", 470)) + ENCODER_PANELS + CYCLE_PANELS + (
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
        label = snap.probe.divergence_label if isinstance(snap.probe, GANProbe) else "divergence estimate"
        parts.append(f"{label.split(' (')[0]}: **{plots.estimate_text(lt['divergence'], '.3g')}**")
    if "hist_js" in lt:
        parts.append(f"histogram JS {lt['hist_js']:.2f} bits")
    if "modes_covered" in lt:
        total = N_MODES.get(snap.dataset)
        parts.append(f"modes covered **{lt['modes_covered']:.0f}{f'/{total}' if total else ''}**")
    if "high_quality" in lt:
        parts.append(f"high-quality samples {100 * lt['high_quality']:.0f}%")
    if "g_grad_norm" in lt:
        parts.append(f"gradient reaching G {lt['g_grad_norm']:.2g}")
    if "recon_x" in lt and "recon_z" in lt:  # a GAN with an encoder (BiGAN): how far E is from G⁻¹
        parts.append(f"‖G(E(x)) − x‖ {lt['recon_x']:.2g}, ‖E(G(z)) − z‖ {lt['recon_z']:.2g}")
    if "cycle_x" in lt and "cycle_y" in lt:  # a GAN between two domains (CycleGAN): how far F is from G⁻¹
        parts.append(f"cycle errors ‖F(G(x)) − x‖₁ **{lt['cycle_x']:.2g}**, ‖G(F(y)) − y‖₁ {lt['cycle_y']:.2g}")
    text = ("**No density:** a GAN's generator only samples — there is no $p(x)$, so no likelihood (NLL) "
            "to report. It is measured by two-sample tests instead" + (": " + " · ".join(parts) if parts else "."))
    if snap.status == "stopped" and snap.event == "action":
        text += f"  \n_{snap.message}_"
    return text


class GANTab(FamilyTab):
    def texts(self, snap: Snapshot) -> dict[str, str]:
        return {"gans-info": inline_html(info_text(snap))}


def _show_model(key: str) -> list:
    """A model's own panels (BiGAN's encoder, CycleGAN's map and cycle) are shown only while it is picked."""
    return [gr.update(visible=key == owner) for owner, panels in OWN_PANELS.items() for _ in panels]


def build() -> FamilyTab:
    tab = GANTab(SPEC)
    tab.build()
    own = [tab.plots[name] for panels in OWN_PANELS.values() for name, _, _ in panels]
    for owner, panels in OWN_PANELS.items():
        for name, _, _ in panels:
            tab.plots[name].visible = tab.spec.models[0] == owner
    # GANs have a learning rate per player (lr_g, lr_d among the model's controls): hide the shared one
    tab.settings_controls["lr"].component.visible = False
    with tab.options_row:
        d_btn = gr.Button("one D step", elem_id="gans-dstep", size="sm", scale=0, min_width=110)
        g_btn = gr.Button("one G step", elem_id="gans-gstep", size="sm", scale=0, min_width=110)
        both_btn = gr.Button("D + G step", elem_id="gans-both", size="sm", scale=0, min_width=110)
        with gr.Column(scale=1, min_width=640):  # wide enough to wrap onto its own line
            text_block(inline_html("**No density:** a GAN's generator only samples — there is no $p(x)$, so no "
                                   "likelihood (NLL) to report. Press **Train**."), elem_id="gans-info")
    tab.wire()
    tab.model_dd.change(_show_model, [tab.model_dd], own, api_visibility="private", queue=False)
    tab.wire_action(d_btn, lambda s: s.apply(one_d_step, "one D step"), show_progress="hidden")
    tab.wire_action(g_btn, lambda s: s.apply(one_g_step, "one G step", counts_as_step=True),
                    show_progress="hidden")
    tab.wire_action(both_btn, lambda s: s.apply(d_and_g_step, "D + G step", counts_as_step=True),
                    show_progress="hidden")
    return tab
