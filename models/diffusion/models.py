"""The three models of the diffusion family (a path, a prediction and samplers each; base.py has the rest).

* ``ddpm`` — DDPM (Ho et al. 2020): the variance-preserving path (linear or cosine schedule), noise
  prediction, ancestral sampling in T steps, DDIM (Song, Meng & Ermon 2021) or the probability-flow ODE in fewer.
* ``score_sde`` — score-based modelling with the variance-exploding SDE (Song & Ermon 2019; Song et al. 2021):
  denoising score matching (notes 7.4) at every noise level σ_min..σ_max at once, sampled by annealed Langevin
  dynamics (NCSN: the EBM tab's Langevin sampler, one level at a time), the reverse SDE or the ODE.
* ``flow_matching`` — flow matching on the straight path (Lipman et al. 2023) = rectified flow (Liu et al.
  2023): velocity regression, Euler or Heun sampling, optionally one reflow round that straightens the paths.

All three train on the same mean squared error, E_t E_{x_0, ε} ||net(α_t x_0 + σ_t ε, t) − target||², t uniform:
for noise prediction this is Ho et al.'s L_simple, a reweighted ELBO (their eq. 14) and, as ε = −σ_t ∇log q(x_t|x_0),
denoising score matching with weight σ_t² (Vincent 2011; Song & Ermon 2019 eq. 2 with λ(σ) = σ²).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import hp, register
from .base import DiffusionConfig, DiffusionModel
from .paths import VE, LinearPath, VPCosine, VPLinear

REFLOW_PAIRS = 20000  # (noise, sample) pairs a reflow round draws once and then trains on
REFLOW_STEPS = 64  # Heun steps of the ODE that draws them


@dataclass
class DDPMConfig(DiffusionConfig):
    schedule: str = hp("linear", choices=("linear", "cosine"), label="noise schedule",
                       help="linear β(t) (Ho et al.) or cosine ᾱ(t) (Nichol & Dhariwal)")
    T: int = hp(100, 2, 1000, label="T (ancestral steps)", live=True,
                help="steps of DDPM's ancestral sampler (trained in continuous time, so any T works)")
    sampler: str = hp("ancestral", choices=("ancestral", "ddim", "ode"), label="sampler", live=True,
                      help="ancestral: stochastic, T steps; ddim: deterministic, fewer steps; ode: the "
                           "probability-flow ODE by Heun's method")
    ddim_steps: int = hp(20, 1, 500, label="DDIM / ODE steps", live=True,
                         help="steps of the deterministic samplers")


@register
class DDPM(DiffusionModel):
    """Denoising diffusion probabilistic model (Ho et al. 2020), in continuous time; notes 7.4 (denoising score
    matching) conditioned on the noise level, sampled ancestrally or by DDIM, log p(x) by the ODE (notes 5.1)."""

    key = "ddpm"
    title = "DDPM (ε-prediction)"
    Config = DDPMConfig
    menu_rank = 0
    in_compare = True
    samplers = ("ancestral", "ddim", "ode")
    stochastic = "ancestral"

    def make_path(self):
        return VPCosine() if self.cfg.schedule == "cosine" else VPLinear()

    def sample_steps(self) -> int:
        return int(self.cfg.T if self.cfg.sampler == "ancestral" else self.cfg.ddim_steps)


@dataclass
class ScoreSDEConfig(DiffusionConfig):
    sigma_min: float = hp(0.01, 0.001, 0.2, log=True, label="σ_min",
                          help="smallest noise level, standardised units (the model's density is the data's "
                               "blurred by it)")
    sigma_max: float = hp(8.0, 1.0, 50.0, log=True, label="σ_max",
                          help="largest noise level (Song & Ermon: about the largest distance between data points)")
    sampler: str = hp("sde", choices=("langevin", "sde", "ode"), label="sampler", live=True,
                      help="langevin: annealed Langevin over the levels (NCSN); sde: the reverse SDE; ode: "
                           "the probability-flow ODE")
    sample_steps: int = hp(100, 1, 200, label="noise levels / steps", live=True,
                           help="levels of annealed Langevin, or steps of the SDE / ODE")
    langevin_steps: int = hp(5, 1, 10, label="Langevin steps per level", live=True,
                             help="annealed Langevin: steps at each noise level (levels x steps is a frame's cost: "
                                  "at most 2,000 network passes, ~1 s)")
    langevin_eps: float = hp(0.2, 0.001, 1.0, log=True, label="Langevin step ε", live=True,
                             help="step a = ε·σ² at level σ (NCSN's α_i = ε'σ_i²/σ_L²)")


@register
class ScoreSDE(DiffusionModel):
    """Noise-conditional score model on the variance-exploding SDE (Song & Ermon 2019; Song et al. 2021): the
    EBM tab's denoising score matching (notes 7.4) at every σ at once; annealed Langevin, reverse SDE or ODE."""

    key = "score_sde"
    title = "Score SDE / NCSN (VE)"
    Config = ScoreSDEConfig
    menu_rank = 1
    samplers = ("langevin", "sde", "ode")
    stochastic = "sde"

    def make_path(self):
        return VE(self.cfg.sigma_min, self.cfg.sigma_max)


@dataclass
class FlowMatchingConfig(DiffusionConfig):
    sampler: str = hp("euler", choices=("euler", "heun"), label="ODE solver", live=True,
                      help="Euler: one evaluation per step; Heun: two, second order")
    sample_steps: int = hp(50, 1, 1000, label="sampling steps", live=True, help="steps of the ODE solver")
    reflow_at: int = hp(0, 0, 100000, label="reflow at step",
                        help="0: never; else at this step draw 20,000 (noise, sample) pairs with the ODE and train "
                             "on them from then on (rectified flow's reflow: straighter paths, fewer steps)")


@register
class FlowMatching(DiffusionModel):
    """Flow matching on the straight (optimal transport) path, i.e. rectified flow (Lipman et al. 2023; Liu et al.
    2023): a velocity field regressed on ε − x_0, a continuous normalizing flow (notes 5.1) trained without an ODE."""

    key = "flow_matching"
    title = "Flow matching / rectified flow"
    Config = FlowMatchingConfig
    menu_rank = 2
    in_compare = True
    prediction = "velocity"
    samplers = ("euler", "heun")
    field_label = "−v(x, t): where samples move"

    def __init__(self, cfg=None):
        super().__init__(cfg)
        n = REFLOW_PAIRS if self.cfg.reflow_at > 0 else 0
        self.register_buffer("reflow_x0", torch.zeros(n, 2))
        self.register_buffer("reflow_eps", torch.zeros(n, 2))
        self.register_buffer("reflowed", torch.zeros((), dtype=torch.bool))

    def make_path(self):
        return LinearPath()

    @torch.no_grad()
    def reflow(self) -> None:
        """Liu et al.'s reflow: couple each noise draw with where the current ODE takes it, and train on those
        pairs from now on; the straight line between a coupled pair is then (nearly) the ODE's own path."""
        gen = self.rng("train")
        eps = torch.randn(REFLOW_PAIRS, 2, generator=gen, device=self.reflow_eps.device)
        x0, _, _ = self.sample_z(REFLOW_PAIRS, "heun", REFLOW_STEPS, gen, start=eps)
        self.reflow_eps.copy_(eps)
        self.reflow_x0.copy_(x0)
        self.reflowed.fill_(True)

    def pair(self, z, gen):
        if not bool(self.reflowed):
            return super().pair(z, gen)
        idx = torch.randint(0, len(self.reflow_x0), (len(z),), generator=gen, device=z.device)
        return self.reflow_x0[idx], self.reflow_eps[idx]

    def step(self, x, optimizers):
        if self.cfg.reflow_at > 0 and not bool(self.reflowed) and int(self.avg_updates) >= self.cfg.reflow_at:
            self.reflow()
        return super().step(x, optimizers)
