"""Ready-made lessons: an experiment one click away, for a teacher's slide or a student's homework.

Each :class:`Lesson` is data — the tab it opens, the settings of its link (the same names a share link uses:
``model``, ``dataset``, a config field by name, ``lr``, ``batch``, ``seed``, ``train``), what to look for and
the course-notes section. Its links are built the way the tabs' "🔗 Link to these settings" builds one: the
lesson's settings are read by :meth:`RunSpec.from_query` over the target tab's defaults, then written back by
:meth:`RunSpec.to_query`, so a lesson's link is exactly a share link (every setting spelled out) and opens for a
first-time visitor as one does (app.py selects the tab, ``FamilyTab.apply_query`` sets its controls).
:func:`check` refuses a lesson whose link would be partly ignored.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from models import REGISTRY, TrainSettings

from .datasets import DATASETS
from .runspec import RunSpec

# the query names that are not a model's config field: what RunSpec.from_query reports them as (`named`)
DATA_NAMES = {"dataset": "data", "noise": "data", "n": "n", "train": "train", "device": "device", "lr": "lr",
              "batch": "batch", "seed": "seed"}


@dataclass(frozen=True)
class Lesson:
    """One ready-made experiment: `query` is the link's settings (without `tab`), `also` more links to
    compare with, as (label, settings) on the same tab; `look_for` (markdown, 3–5 sentences) says what to
    watch, `press` which button or control does it, `notes` the course-notes section."""

    id: str
    title: str
    tab: str
    query: dict[str, Any]
    look_for: str
    press: str
    notes: str
    label: str = "Open this lesson"
    also: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    def links(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, settings) of every link of the lesson, its main one first."""
        return [(self.label, self.query), *self.also]


LESSONS: tuple[Lesson, ...] = (
    Lesson(
        id="em-steps",
        title="EM, one half-step at a time",
        tab="latent",
        query=dict(model="mog", dataset="anisomix", K=5, covariance="full", method="em", batch=4096, seed=0),
        look_for=(
            "Five elongated clusters of unequal weight, and a mixture with $K = 5$ components fitted by EM. "
            "The first press of **Step** is an *E-step*: the points are recoloured by their most responsible "
            "component $r_{nk} = p(z=k \\mid x_n)$, the exact posterior, which makes the ELBO tight; the second is "
            "an *M-step*: every $\\pi_k, \\mu_k, \\Sigma_k$ jumps to its weighted points in closed form. "
            "With the batch above the training set (full-batch EM) no step can lower the training "
            "log-likelihood: watch its curve. Try another seed: EM can settle with two components on one "
            "cluster, a local optimum."),
        press="**Step** (E, then M; the status line names the next half); **▶ Train** runs them on",
        notes="4.1, 4.3.4",
    ),
    Lesson(
        id="mode-collapse",
        title="Mode collapse: minimax GAN vs WGAN-GP",
        tab="gans",
        query=dict(model="gan_minimax", dataset="25gaussians", r1=0.0, average=0.0, beta1=0.5, lr_g=0.001,
                   lr_d=0.004, seed=0),
        label="Minimax GAN, old recipe",
        also=(("WGAN-GP", dict(model="wgan_gp", dataset="25gaussians", seed=0)),),
        look_for=(
            "25 Gaussians on a grid: the classic test of whether a generator covers every mode. This minimax GAN "
            "has the playground's stabilisers switched off (no R1 penalty, no weight averaging, Adam "
            "$\\beta_1 = 0.5$, D's learning rate 4× G's, as older recipes had): watch the samples bunch and the "
            "discriminator's surface chase them from mode to mode. At 2,000 steps it covered 17 of the 25 modes "
            "(seeds 0 and 1); WGAN-GP, whose critic estimates the Wasserstein distance and keeps a useful "
            "gradient where the supports do not overlap, covered all 25 (seed 0). The tab counts the *modes "
            "covered* as it trains."),
        press="**▶ Train** on each link; **one D step** / **one G step** to play the game by hand",
        notes="6.4–6.8",
    ),
    Lesson(
        id="reverse-kl",
        title="Reverse KL is mode-seeking",
        tab="flows",
        query=dict(model="planar", dataset="8gaussians", fit="target", layers=16, seed=0),
        label="Planar flow on 8 Gaussians",
        also=(("Planar flow on U1", dict(model="planar", dataset="u1", fit="target", layers=16, seed=0)),),
        look_for=(
            "The planar flow has no inverse in closed form, so it is fitted to a known **target density** by "
            "reverse KL, $\\mathrm{KL}(q \\,\\|\\, p) = \\mathbb E_q[\\log q - \\log p]$, with samples of the "
            "flow only. That divergence is infinite wherever $q$ puts mass and $p$ has none, and costs nothing "
            "where $p$ has mass and $q$ none: on 8 Gaussians the flow settles on **one** mode, and the loss "
            "(the reverse KL, split in the *Change of variables* panel) stops near $\\log 8 \\approx 2.08$ nats, "
            "the price of missing seven of eight equal modes. On U1, a ring with two lobes, it stays near 0.7 "
            "nats after 1,500 steps: look for the part of the target it leaves out."),
        press="**▶ Train**, then the *layer shown* slider to see the Gaussian bent layer by layer",
        notes="5.3, 5.4.1",
    ),
    Lesson(
        id="score-matching",
        title="Exact score matching sharpens, denoising does not",
        tab="ebm",
        query=dict(model="ebm_sm", dataset="8gaussians", objective="exact", seed=0),
        label="Exact score matching",
        also=(("Denoising score matching",
               dict(model="ebm_sm", dataset="8gaussians", objective="denoising", sigma=0.1, seed=0)),),
        look_for=(
            "Score matching fits $\\nabla_x f_\\theta$ to the data's score without ever computing $Z$. "
            "Its exact objective contains $\\operatorname{tr} \\nabla_x^2 f_\\theta$, which a flexible network "
            "can drive far below zero by making $f$ sharply peaked on the training points: watch the loss fall "
            "without bound while the held-out NLL gets worse. Denoising score matching blurs the data first "
            "and learns the slightly wider density: at 3,000 steps it reaches a held-out NLL of about "
            "2.4–2.5 nats (true density: 2.13) against 4.8–7.4 for the exact objective."),
        press="**▶ Train** on each link and compare the *Held-out log-likelihood* panels",
        notes="7.4",
    ),
    Lesson(
        id="amortisation-gap",
        title="The VAE's amortisation gap",
        tab="latent",
        query=dict(model="vae", dataset="8gaussians", latent_dim=2, seed=0),
        look_for=(
            "One encoder $q_\\phi(z \\mid x)$ serves every point (amortised inference), and the ELBO falls short "
            "of $\\log p(x)$ by $\\mathrm{KL}(q \\,\\|\\, p(z \\mid x))$. Train a while, stop, and move the "
            "*chosen data point* slider: the **Per-point inference (SVI)** panel refines that point's own "
            "Gaussian $q$ by gradient ascent on its own ELBO, starting from the encoder's guess. What SVI gains "
            "is the **amortisation gap**; what is still left below $\\log p(x)$ is the **approximation gap** — "
            "no diagonal Gaussian is the true posterior (the blue one in the posterior panel)."),
        press="**▶ Train**, **■ Stop**, then the *chosen data point* slider",
        notes="4.4.1, 4.4.5, 4.5",
    ),
    Lesson(
        id="mcmc-modes",
        title="MCMC chains stuck between modes",
        tab="ebm",
        query=dict(model="ebm_cd", dataset="8gaussians", sampler="langevin", step_size=0.01, seed=0),
        look_for=(
            "Contrastive divergence draws its negatives by MCMC on the current energy. In the *Sampler "
            "diagnostics* panel the split R-hat of the 8 animated chains stays far above 1.1: each chain sits in "
            "the mode it fell into. Then open the **Sampler sandbox** below, target *8 Gaussians*: Langevin at "
            "$\\log_{10} \\varepsilon = -2$ never leaves its mode (R-hat ≈ 9); at −0.5 the chains hop (R-hat ≈ 1.2) "
            "but sample the wrong, too wide density (energy distance ≈ 0.6); **MALA** at that step is exact "
            "again (≈ 0.03) but refuses 97% of moves, and the chains stick (R-hat ≈ 3)."),
        press="**▶ Train**; in the sandbox: target, **sampler**, the step slider, **▶ Run chains**",
        notes="7.3.1–7.3.2",
    ),
    Lesson(
        id="overfitting",
        title="Overfitting with 50 points, and early stopping",
        tab="autoregressive",
        query=dict(model="made", dataset="moons", K=64, train=50, lr=0.003, batch=64, seed=0),
        look_for=(
            "MADE with 64 bins per coordinate is a very flexible density, trained here on only 50 points while "
            "every held-out point stays. Watch the *Log-likelihood* curves part: the training NLL keeps "
            "falling, the held-out NLL reaches a minimum within a few hundred steps and turns up — the model "
            "memorises the 50 points. Press **↩ Early stop**: the run goes back to the step with the lowest "
            "held-out NLL. Raise *training points kept* (0 keeps all) and the gap closes."),
        press="**▶ Train**, then **↩ Early stop**",
        notes="3.2.5",
    ),
    Lesson(
        id="cycle-consistency",
        title="CycleGAN: what the cycle term buys",
        tab="gans",
        query=dict(model="cyclegan", dataset="8gaussians", source="moons", cycle=1.0, seed=0),
        label="Cycle weight λ = 1",
        also=(("λ = 0", dict(model="cyclegan", dataset="8gaussians", source="moons", cycle=0.0, seed=0)),),
        look_for=(
            "Two datasets and no pairs: $G$ carries moons onto 8 Gaussians, $F$ carries them back. The GAN terms "
            "alone accept any map that lands on the right distribution — a shuffle of the points would do. "
            "With $\\lambda = 0$ the samples may look as good, but the arrows $x \\to G(x)$ lose their order "
            "and the cycle error $\\|F(G(x)) - x\\|_1$ grows several-fold (about 0.24 at $\\lambda = 1$, 2.3 at "
            "$\\lambda = 0$ after 2,000 steps). λ is live: move it while the run trains."),
        press="**▶ Train** on each link, or the *cycle weight λ* slider while it runs",
        notes="6.10",
    ),
    Lesson(
        id="few-step-sampling",
        title="Sampling in few steps: DDPM vs flow matching",
        tab="diffusion",
        query=dict(model="ddpm", dataset="8gaussians", sampler="ancestral", seed=0),
        label="DDPM",
        also=(("Flow matching with reflow",
               dict(model="flow_matching", dataset="8gaussians", reflow_at=2000, seed=0)),),
        look_for=(
            "All these models learn one regression over every noise level, so any sampler may take any number "
            "of steps. The *Quality vs sampling steps* panel plots the energy distance to held-out data against "
            "the network evaluations: DDPM's ancestral sampler needs many steps, DDIM and the probability-flow "
            "ODE far fewer. Flow matching regresses on straight lines from data to noise; after **reflow** "
            "(here at step 2,000) its paths are nearly straight, and a few Euler steps suffice."),
        press="**▶ Train**; the *sampler* control changes the samples panel live",
        notes="4 (latent chain), 5.1 (continuous flows), 7.4",
    ),
)


# --- links ---------------------------------------------------------------------------------------
@cache
def tab_spec(tab: str):
    """The TabSpec of a family tab (KeyError for a tab without one: the primer, the comparison)."""
    from .tabs import TABS

    if tab not in TABS:
        raise KeyError(f"unknown tab '{tab}'")
    spec = getattr(importlib.import_module(f"playground.tabs.{tab}"), "SPEC", None)
    if spec is None:
        raise KeyError(f"tab '{tab}' takes no link settings")
    return spec


def tab_default(tab: str, model: str) -> RunSpec:
    """What the tab's controls show for `model` before anyone touches them (as FamilyTab.default_run)."""
    spec = tab_spec(tab)
    if model not in spec.models:
        raise KeyError(f"tab '{tab}' has no model '{model}'")
    config = {s["name"]: s["default"] for s in REGISTRY[model].Config.spec()}
    config.update(spec.model_defaults.get(model, {}))
    ds = DATASETS[spec.default_dataset]
    return RunSpec(model, config, TrainSettings.make(**spec.settings), dataset=ds.name, noise=ds.noise)


def parse(tab: str, query: dict[str, Any]) -> tuple[RunSpec, set[str], list[str]]:
    """A lesson's settings read as a shared link is (RunSpec.from_query over the tab's defaults)."""
    spec = tab_spec(tab)
    q = {"tab": tab, **{k: _text(v) for k, v in query.items()}}
    model = q.get("model") if q.get("model") in spec.models else spec.models[0]
    return RunSpec.from_query(q, tab_default(tab, model), spec.models, usual=spec.model_settings)


def link(tab: str, query: dict[str, Any]) -> str:
    """The link's query string, "?tab=..&model=..&..": what the tab's share button writes for these settings."""
    run, _, notes = parse(tab, query)
    if notes:
        raise ValueError(f"{tab} link {query}: {' '.join(notes)}")
    return run.to_query(tab)


def check(lesson: Lesson) -> None:
    """Raise ValueError when a link of the lesson names an unknown tab or model, or sets anything the tab
    would ignore (unknown, outside its range, or read under an old name)."""
    for label, query in lesson.links():
        where = f"lesson '{lesson.id}', link '{label}'"
        try:
            spec = tab_spec(lesson.tab)
        except KeyError as err:
            raise ValueError(f"{where}: {err}") from None
        if query.get("model") not in spec.models:
            raise ValueError(f"{where}: tab '{lesson.tab}' has no model '{query.get('model')}'")
        run, named, notes = parse(lesson.tab, query)
        if notes:
            raise ValueError(f"{where}: {' '.join(notes)}")
        unread = {k for k in query if k != "model" and DATA_NAMES.get(k, k) not in named}
        if unread:
            raise ValueError(f"{where}: the tab does not read {', '.join(sorted(unread))}")
        back, _, notes = RunSpec.from_query(dict(parse_qsl(link(lesson.tab, query)[1:])),
                                            tab_default(lesson.tab, run.model), spec.models,
                                            usual=spec.model_settings)
        if notes or back != run:
            raise ValueError(f"{where}: its link does not round-trip ({' '.join(notes)})")


def _text(v: Any) -> str:
    """A setting as a URL carries it (True -> "true")."""
    return str(v).lower() if isinstance(v, bool) else str(v)
