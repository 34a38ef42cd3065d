"""Normalizing flows tab (notes ch. 5): planar, NICE, Real NVP, MAF, IAF and a MAF -> IAF
distillation, trained live and seen layer by layer."""

from __future__ import annotations

import gradio as gr

from models import REGISTRY, family_keys

from ..datasets import DATASETS
from ..densities import DIFFERENTIABLE
from ..snapshot import FlowProbe, Snapshot
from ..tabkit import FamilyTab, TabSpec, TabState

TITLE = "Normalizing flows"
MAX_LAYERS = 32
TARGET_DATASETS = DIFFERENTIABLE  # what "fit to: target" accepts: a density in closed form, in torch
TARGET_NOTE = ("**Fit to a target density** (reverse KL) needs a dataset whose density is known in closed form: "
               "8 or 25 Gaussians, Banana, Correlated Gaussian, U1–U4 or Donut (U1–U4 are Rezende & Mohamed's "
               "classic energies). The planar flow only fits targets.")

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
    default_dataset="moons",
    panels=(("main", "Model density", 460), ("samples", "Samples", 460),
            ("layers", "Layer by layer", 460), ("latent", "Latent space", 460),
            ("curves", "Log-likelihood", 320), ("terms", "Change of variables", 320),
            ("distance", "Sample distance", 300), ("perlayer", "Volume change per layer", 300)),
    options={"layer": _layer_slider},
    settings={"lr": 3e-3, "batch": 512},
)


def _fit_choices(key: str) -> list[str]:
    """What the model's "fit to" control offers ([] when it has none, e.g. the student)."""
    return next((s["choices"] or [] for s in REGISTRY[key].Config.spec() if s["name"] == "fit"), [])


def _needs_target(model: str, fit: str | None) -> bool:
    """A flow that only fits targets (its config offers nothing else: planar), or one set to fit a target."""
    return _fit_choices(model) == ["target"] or (fit == "target" and "target" in _fit_choices(model))


def pick_target_dataset(source: str, dataset: str, needs_target: bool):
    """A target-only choice on data without a density switches to U1 at its own temperature
    (dataset, source, noise)."""
    if needs_target and (source != "Built-in" or dataset not in TARGET_DATASETS):
        return gr.update(value="u1"), gr.update(value="Built-in"), gr.update(value=DATASETS["u1"].noise)
    return gr.skip(), gr.skip(), gr.skip()


class FlowsTab(FamilyTab):
    def extra_values(self, st: TabState, snap: Snapshot) -> list:
        """Fit the layer slider to this model's depth when the depth changes."""
        depth = int(snap.probe.stage_lines.shape[0]) - 1 if isinstance(snap.probe, FlowProbe) else None
        if depth is None or getattr(st, "layer_max", None) == depth:
            return [gr.skip()]
        st.layer_max = depth
        return [gr.update(maximum=depth, value=depth)]


def build() -> FamilyTab:
    tab = FlowsTab(SPEC)
    tab.build()
    for key, ctrls in tab.model_controls.items():
        if "fit" in ctrls and _fit_choices(key) == ["target"]:
            ctrls["fit"].component.interactive = False  # greyed out: it only fits targets (its help says why)
    slider = tab.options["layer"]
    tab.extra_outputs = [slider]  # FlowsTab.extra_values sets its range
    tab.wire()
    tab.model_dd.input(lambda m, s, d: pick_target_dataset(s, d, _needs_target(m, None)),
                       [tab.model_dd, tab.source, tab.dataset], [tab.dataset, tab.source, tab.noise],
                       api_visibility="private", queue=False)
    for key, ctrls in tab.model_controls.items():
        if "fit" not in ctrls or len(_fit_choices(key)) < 2:
            continue
        fit = ctrls["fit"].component
        fit.input(lambda f, s, d: pick_target_dataset(s, d, f == "target"), [fit, tab.source, tab.dataset],
                  [tab.dataset, tab.source, tab.noise], api_visibility="private", queue=False)
    return tab
