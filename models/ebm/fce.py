"""Energy-based models trained against a normalizing flow q_φ (notes 7.5.1 and 7.6), and flow contrastive
estimation itself.

A flow has the two things an EBM's partner needs and a Gaussian lacks: it can be made to look like the data
(it is trained, adversarially), and its log-density log q_φ is exact on any point and on its own samples
(change of variables, notes 5.2). Here q_φ is a small Real NVP (affine couplings, models/flows/layers.py) over
a N(0, I) base, living in the EBM's standardised coordinates z, as f_θ does; q in data units is q(z(x))·|dz/dx|.

:class:`FlowPartnerEBM` is what both models share: the flow, one Adam optimiser per player ("ebm": f_θ with
the run's learning rate, "flow": q_φ with its own `flow_lr`), a :meth:`step` that gives each player its own
objective with its own sign, and what the views show of q (its log-density on the grid, its samples, its
held-out NLL as a density model in its own right). Everything else (the support box, log Z on the grid,
exact samples, display chains, the weight average of f_θ) is :class:`EnergyModel`'s, unchanged.

* ``ebm_fce`` — flow contrastive estimation (notes 7.5.1; Gao et al. 2020): NCE (notes 7.5) whose noise is
  q_φ, the classifier D = e^f / (e^f + ν Z q_φ) with log Z a free parameter;
  min_φ max_{θ,Z} E_data[log D] + ν E_q[log(1 − D)].
* ``ebm_adv`` (models/ebm/adversarial.py) — adversarial training with a variational bound on log Z (7.6).

References:
    Gao, Nijkamp, Kingma, Xu, Dai & Wu (2020), Flow contrastive estimation of energy-based models. CVPR.
    Gutmann & Hyvärinen (2010), Noise-contrastive estimation.
    Dinh, Sohl-Dickstein & Bengio (2017), Density estimation using Real NVP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..base import clip_grad_norm, hp, make_adam, register
from ..flows.layers import AffineCoupling
from ..flows.model import FlowStack, normal_log_prob
from . import losses as L
from .model import EnergyConfig, EnergyModel

FLOW_MAX_GRAD_NORM = 10.0  # the flow's gradient is clipped to this global norm, as the flows' own (models/flows)
N_SHOWN = 300  # samples of q kept from the last update, to draw
N_METRIC = 4096  # samples of q behind a held-out Monte Carlo number (the bound's E_q f and H(q))


class FlowDensity(nn.Module):
    """q_φ: a Real NVP flow z = g_φ(ε), ε ~ N(0, I), alternating affine couplings (notes 5.4.3), in the
    EBM's standardised coordinates. Sampling and the density are each one pass (notes 5.4: couplings are
    cheap both ways), so q gives exact log q on its own samples and on data alike."""

    def __init__(self, layers: int = 6, hidden: int = 32, depth: int = 2):
        super().__init__()
        self.flow = FlowStack([AffineCoupling(i % 2, hidden, depth) for i in range(layers)])

    def sample(self, n: int, generator: torch.Generator, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """n reparametrised samples z = g_φ(ε) and their exact log q_φ(z) = log N(ε) − log|det ∂z/∂ε|: both
        differentiable in φ (the samples carry the gradient of anything evaluated on them)."""
        eps = torch.randn(n, 2, generator=generator, device=like.device, dtype=like.dtype)
        z, log_det = self.flow(eps)
        return z, normal_log_prob(eps) - log_det

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q_φ(z) = log N(g⁻¹(z)) + log|det ∂g⁻¹/∂z| (change of variables, notes 5.2)."""
        eps, log_det = self.flow.inverse(z)
        return normal_log_prob(eps) + log_det


@dataclass
class FlowPartnerConfig(EnergyConfig):
    flow_layers: int = hp(6, 2, 16, label="flow q: coupling layers",
                          help="Real NVP affine couplings of q_φ, alternating which coordinate is kept")
    flow_hidden: int = hp(32, 8, 128, step=8, label="flow q: hidden width", help="units per hidden layer of each "
                                                                                 "coupling network (2 layers)")
    flow_lr: float = hp(1e-3, 1e-5, 0.1, log=True, live=True, label="flow q: learning rate",
                        help="Adam's step size for q_φ (the energy's is the run's learning rate)")


class FlowPartnerEBM(EnergyModel):
    """An energy f_θ trained against a Real NVP q_φ (notes 7.5.1, 7.6): two players, two Adam optimisers, one
    update of each per :meth:`step` (see :meth:`train_step`). Subclasses give :meth:`train_step` and
    :meth:`objective` (the second only for :meth:`loss`, an inspection of both players' terms on a batch)."""

    Config = FlowPartnerConfig
    flow_label = "flow q"  # what the views call q

    def __init__(self, cfg=None):
        super().__init__(cfg)
        c = self.cfg
        self.q = FlowDensity(c.flow_layers, c.flow_hidden)
        self._q_shown = torch.zeros(0, 2)  # samples of q from the last update (standardised), to draw

    # --- two players -------------------------------------------------------------------------------
    def ebm_parameters(self) -> list[nn.Parameter]:
        """What the energy's optimiser moves (f_θ's trained network; FCE adds its log Z)."""
        return list(self.net.parameters())

    def configure_optimizers(self, settings) -> dict[str, torch.optim.Optimizer]:
        """"ebm": f_θ at the run's learning rate; "flow": q_φ at `flow_lr`."""
        return {"ebm": make_adam(self.ebm_parameters(), settings.lr),
                "flow": make_adam(self.q.parameters(), self.cfg.flow_lr)}

    def live_update(self, name: str, value, optimizers) -> None:
        """"lr" is the energy's learning rate only; `flow_lr` the flow's."""
        if name == "lr":
            for group in optimizers["ebm"].param_groups:
                group["lr"] = float(value)
            return
        super().live_update(name, value, optimizers)
        if self.cfg.canonical(name)[0] == "flow_lr" and "flow" in optimizers:
            for group in optimizers["flow"].param_groups:
                group["lr"] = float(self.cfg.flow_lr)

    @staticmethod
    def _descend(loss: torch.Tensor, opt: torch.optim.Optimizer, optimizers, clip: float | None = None) -> None:
        """One step of `opt` down `loss`; every player's gradients are cleared first, so that the other
        player's (which `loss` reaches too) never leak into its next step."""
        for o in optimizers.values():
            o.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            clip_grad_norm(opt, clip)
        opt.step()

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        """One update of each player (:meth:`train_step`, on the trained network), then the weight average of
        f_θ follows as in every EBM (:meth:`EnergyModel.after_update`)."""
        self._stale += 1
        with self.training_pass():
            out = self.train_step(self.standardizer(x), optimizers)
        self.after_update()
        return out

    def train_step(self, z: torch.Tensor, optimizers) -> dict[str, float]:
        raise NotImplementedError

    def sample_q(self, n: int, like: torch.Tensor, purpose: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """n samples of q_φ (standardised) with their log q, from the model's `purpose` generator."""
        return self.q.sample(n, self.rng(purpose), like)

    def _keep_shown(self, y: torch.Tensor) -> None:
        self._q_shown = y[:N_SHOWN].detach().clone()

    # --- what the views show of q ----------------------------------------------------------------------
    def q_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q_φ(x) in data units: log q(z(x)) + log|dz/dx|, a normalised density over the plane."""
        return self.q.log_prob(self.standardizer(x)) + self.standardizer.log_det()

    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """EnergyModel's probe, plus q_φ's log-density on the session grid and its samples of the last update."""
        out = super().probe(grid, points)
        with torch.no_grad():
            out["flow_log_density"] = self.q_log_prob(grid).float().cpu().numpy()
            if len(self._q_shown):
                out["flow_samples"] = self.standardizer.inverse(self._q_shown.to(self.lo.device)).float().cpu().numpy()
        out["flow_label"] = self.flow_label
        return out

    @torch.no_grad()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """EnergyModel's, plus q_φ's own held-out NLL (nats, data units): the flow is a density model too."""
        out = super().metrics(x_test)
        out["flow_nll"] = float(-self.q_log_prob(x_test).mean())
        return out


# --- flow contrastive estimation ---------------------------------------------------------------------

@dataclass
class FCEConfig(FlowPartnerConfig):
    noise_ratio: int = hp(1, 1, 8, label="flow samples per data point ν",
                          help="ν = 1 in the notes; the classifier's prior odds are ν : 1")


@register
class FlowContrastiveEBM(FlowPartnerEBM):
    """Flow contrastive estimation (notes 7.5.1; Gao et al. 2020): noise-contrastive estimation (notes 7.5)
    whose noise p_n is a normalizing flow q_φ, trained against the energy.

    The classifier is D(x) = e^{f(x)} / (e^{f(x)} + ν Z q_φ(x)) (computable because q_φ's density is exact)
    and the value V(θ, Z, φ) = E_data[log D] + ν E_{q_φ}[log(1 − D)], in the notes' logsumexp form
    (losses.nce_loss returns −V). The game is the notes' min_φ max_{θ,Z} V:

    * the energy and log Z **ascend** V (descend the NCE loss −V), on samples of q held fixed — NCE itself;
    * the flow **descends** V (ascends the NCE loss), through its density in D and through its reparametrised
      samples: for the best classifier, V = 2 JS(p_data ‖ q_φ) − log 4 (ν = 1), so q_φ moves towards the data,
      which keeps the classification hard and the noise informative where a fixed Gaussian's is not.

    Whatever q is, NCE's optimum has e^f/Z = p_data and Z the partition function (Gutmann & Hyvärinen 2010):
    the learned log Z (``log_z_fce``) meets the grid's ``log_z_grid``. One update of each player per step,
    the energy first. ``acc`` is the classifier's accuracy on the batch (½ when q matches the data).

    At the defaults, 1,500 steps (the command line): held-out NLL 1.79 nats on banana (truth 1.77; the flow q
    on its own 1.79), 2.69 on 8 Gaussians (truth 2.13; NCE against its fixed Gaussian 2.93)."""

    key = "ebm_fce"
    menu_rank = 101  # after the family's first three (the family's modules register in alphabetical order)
    title = "EBM: flow contrastive estimation"
    Config = FCEConfig
    flow_label = "flow q (FCE's noise)"

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.log_z = nn.Parameter(torch.zeros(()))
        self.register_buffer("log_z_avg", torch.zeros(()))  # log Z's share of the weight average, as NCE's

    def ebm_parameters(self) -> list[nn.Parameter]:
        return [*self.net.parameters(), self.log_z]

    def average_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        shown, trained = super().average_pairs()
        return shown + [self.log_z_avg], trained + [self.log_z]

    def nce_terms(self, z: torch.Tensor, log_q_data: torch.Tensor, y: torch.Tensor,
                  log_q_y: torch.Tensor) -> dict[str, torch.Tensor]:
        """−V on data z and flow samples y, with their log q: the NCE loss, and the classifier's accuracy."""
        c = self.cfg
        f_data, f_noise = self.f(z), self.f(y)
        loss = L.nce_loss(f_data, f_noise, log_q_data, log_q_y, self.log_z, c.noise_ratio)
        with torch.no_grad():  # D > ½ ⇔ f > log ν + log Z + log q
            shift = float(np.log(c.noise_ratio)) + self.log_z
            right = torch.cat([f_data > shift + log_q_data, f_noise <= shift + log_q_y])
        return {"loss": loss, "acc": right.float().mean()}

    def objective(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """−V on a batch, its gradient reaching both players (the energy's sign; :meth:`train_step` trains)."""
        y, log_q_y = self.sample_q(self.cfg.noise_ratio * z.shape[0], z)
        return {**self.nce_terms(z, self.q.log_prob(z), y, log_q_y), "log_z": self.log_z.detach()}

    def train_step(self, z: torch.Tensor, optimizers) -> dict[str, float]:
        """The energy and log Z descend −V on fresh samples of q (held fixed); then the flow ascends −V on
        fresh reparametrised samples (the updated energy held fixed: only the flow's optimiser steps)."""
        n = self.cfg.noise_ratio * z.shape[0]
        with torch.no_grad():  # the flow is held fixed: no graph through it
            y, log_q_y = self.sample_q(n, z)
            log_q_data = self.q.log_prob(z)
        ebm = self.nce_terms(z, log_q_data, y, log_q_y)
        self._descend(ebm["loss"], optimizers["ebm"], optimizers)
        y, log_q_y = self.sample_q(n, z)
        flow = self.nce_terms(z, self.q.log_prob(z), y, log_q_y)
        self._descend(-flow["loss"], optimizers["flow"], optimizers, FLOW_MAX_GRAD_NORM)
        self._keep_shown(y)
        return {"loss": float(ebm["loss"].detach()), "acc": float(ebm["acc"]),
                "flow_loss": float(-flow["loss"].detach()), "log_z": float(self.log_z.detach())}

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        out = super().metrics(x_test)
        log_z = self.log_z if self.net_avg is None else self.log_z_avg  # the shown model's, as log_z_grid is
        out["log_z_fce"] = float(log_z.detach())
        return out
