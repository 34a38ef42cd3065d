"""Adversarial training of an energy-based model with a variational flow (notes 7.6).

For any density q, Jensen's inequality bounds the log partition function from below:

    log Z(θ) = log ∫ q(x) e^{f_θ(x)} / q(x) dx ≥ E_q[f_θ(x) − log q(x)] = E_q[f_θ] + H(q),

with equality when q = p_θ (the gap is KL(q ‖ p_θ)). So the log-likelihood has an **upper** bound,

    E_data[f_θ] − log Z(θ) ≤ E_data[f_θ] − E_q[f_θ] − H(q),

and training is max_θ min_φ of it (notes 7.6): q_φ tightens the bound (maximises E_q f + H(q), which is
minimising KL(q ‖ p_θ), reverse KL to the energy), and f_θ maximises it. The notes' derivation ends with
"+ H(q)"; −∫ q (f − log q) = −E_q f − H(q), so the sign there is a slip: the bound has −H(q).

Here q_φ is a Real NVP flow (models/ebm/fce.py, FlowDensity): its samples are reparametrised, so the gradient
of E_q f reaches φ through f's gradient in x, and its entropy is exact up to Monte Carlo error,
H(q) = −E_q log q over its own samples with their exact log-density (no inverse needed, notes 7.6's point).

References:
    Kim & Bengio (2016), Deep directed generative models with energy-based probability estimation.
    Dai, Almahairi, Bachman, Hovy & Courville (2017), Calibrating energy-based generative adversarial networks.
    Grathwohl, Kelly, Hashemi, Norouzi, Swersky & Duvenaud (2021), No MCMC for me: amortized sampling for fast
    and stable training of energy-based models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import hp, register
from .fce import FLOW_MAX_GRAD_NORM, N_METRIC, FlowPartnerConfig, FlowPartnerEBM


@dataclass
class AdversarialConfig(FlowPartnerConfig):
    flow_steps: int = hp(2, 1, 10, live=True, label="flow updates per energy update",
                         help="q_φ tightens the bound (min over φ) this many times before each update of f_θ")
    reg: float = hp(0.1, 0.0, 10.0, step=0.01, live=True, label="energy penalty α",
                    help="α(f(x)² + f(y)²) on data and flow samples keeps f from running away when q lags; it "
                         "also flattens p_θ a little (0: unbiased, but may diverge on thin data such as moons)")


@register
class AdversarialEBM(FlowPartnerEBM):
    """Adversarial training of an EBM (notes 7.6): max_θ min_φ E_data[f_θ] − E_{q_φ}[f_θ] − H(q_φ), with
    q_φ a Real NVP flow whose entropy is exact (−E_q log q over its own samples).

    * the flow **descends** −(E_q[f_θ] + H(q_φ)) = KL(q_φ ‖ p_θ) − log Z(θ): it chases the energy's density;
    * the energy **descends** E_q[f_θ] − E_data[f_θ] + α(E f(x)² + E f(y)²) on samples y of q held fixed —
      contrastive divergence's gradient (notes 7.3) with the flow's samples as the negatives, no MCMC.

    The penalty is a trade: without it (α = 0) the fixed point is p_θ = q = p_data and a Gaussian is recovered
    (held-out NLL 0.005 nats from the truth at 1,400 steps), but where the flow cannot follow a sharpening
    energy (moons, one flow update per energy update) f runs away; α = 0.1 kept moons, banana and 8 Gaussians
    stable and shrinks f's spread (the Gaussian's covariance comes out ×1.5). At the defaults, 1,500 steps:
    held-out NLL 1.88 nats on banana (truth 1.77; the bound −1.85 above the log-likelihood −1.88), 2.97 on
    8 Gaussians (truth 2.13; the command line's runs).

    Each step: `flow_steps` updates of the flow (the inner min first), then one of the energy. Logged: the
    batch's ``bound`` (data units) and the flow's ``entropy``; held-out (metrics): ``log_z_bound`` =
    E_q f + H(q) ≤ log Z (against the grid's ``log_z_grid``) and ``ll_bound`` = E_data f − log_z_bound ≥ the
    grid-normalised held-out log-likelihood, their gap KL(q ‖ p_θ)."""

    key = "ebm_adv"
    menu_rank = 102  # after flow contrastive estimation
    title = "EBM: adversarial (variational flow)"
    Config = AdversarialConfig
    flow_label = "flow q (variational)"

    def flow_terms(self, n: int, like: torch.Tensor, purpose: str = "train") -> dict[str, torch.Tensor]:
        """n reparametrised samples y of q, and E_q f(y) + H(q) (a lower bound on log Z) from them."""
        y, log_q = self.sample_q(n, like, purpose)
        f_q, entropy = self.f(y).mean(), -log_q.mean()
        return {"y": y, "f_q": f_q, "entropy": entropy, "log_z_bound": f_q + entropy}

    def energy_terms(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The energy's loss E_q f − E_data f + α(f(x)² + f(y)²) on data z and fixed flow samples y."""
        f_pos, f_neg = self.f(z), self.f(y.detach())
        gap = f_neg.mean() - f_pos.mean()
        return {"loss": gap + self.cfg.reg * (f_pos ** 2 + f_neg ** 2).mean(), "f_data": f_pos.mean()}

    def objective(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both players' losses on a batch, summed so that one backward reaches both (inspection and the
        contract's check; :meth:`train_step` steps each player on its own)."""
        q = self.flow_terms(z.shape[0], z)
        e = self.energy_terms(z, q["y"])
        bound = e["f_data"] - q["log_z_bound"] + self.standardizer.log_det()
        return {"loss": e["loss"] - q["log_z_bound"], "energy_loss": e["loss"], "bound": bound.detach()}

    def train_step(self, z: torch.Tensor, optimizers) -> dict[str, float]:
        n = z.shape[0]
        for _ in range(self.cfg.flow_steps):
            q = self.flow_terms(n, z)
            self._descend(-q["log_z_bound"], optimizers["flow"], optimizers, FLOW_MAX_GRAD_NORM)
        with torch.no_grad():
            y, log_q = self.sample_q(n, z)
        e = self.energy_terms(z, y)
        self._descend(e["loss"], optimizers["ebm"], optimizers)
        self._keep_shown(y)
        with torch.no_grad():
            ld = float(self.standardizer.log_det())
            f_q, entropy = float(self.f(y).mean()), float(-log_q.mean())  # the updated f: the bound of now
            f_data = float(self.f(z).mean())
        return {"loss": float(e["loss"].detach()), "bound": f_data - f_q - entropy + ld, "entropy": entropy - ld}

    @torch.no_grad()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """FlowPartnerEBM's, plus the bound with the shown energy on N_METRIC samples of q: ``log_z_bound`` =
        E_q f + H(q) ≤ log Z, ``ll_bound`` = E_test f − log_z_bound ≥ the held-out log-likelihood (f, H in data
        units), ``entropy_q`` = H(q) in data units."""
        out = super().metrics(x_test)
        q = self.flow_terms(N_METRIC, self.lo, "view")
        ld = float(self.standardizer.log_det())
        out["log_z_bound"] = float(q["log_z_bound"])  # log|dz/dx| cancels: E_q f_x + H_x(q) = E_q f + H_z(q)
        out["ll_bound"] = out["f_data"] - out["log_z_bound"]
        out["entropy_q"] = float(q["entropy"]) - ld
        return out
