"""Mixture of Gaussians, the shallow latent-variable model of notes 4.1.

z ~ Categorical(pi),  x | z = k ~ N(mu_k, Sigma_k).

The distribution is ``torch.distributions.MixtureSameFamily`` over ``MultivariateNormal``
components with Cholesky factors, so log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, Sigma_k)]
comes from the library. Two ways to fit it:

* **EM** (Dempster et al. 1977): the E-step computes the responsibilities
  r_nk = p(z = k | x_n) (the exact posterior, for which the ELBO of notes 4.3.4 is tight);
  the M-step maximises the expected complete-data log-likelihood in closed form. Full-batch EM
  never decreases the training log-likelihood. Minibatch EM is the online EM of Cappé & Moulines
  (2009): running averages of the sufficient statistics with step size (t + 2)^-0.6.
* **Gradient ascent** on the average log-likelihood (notes 3.2.2) with Adam, over unconstrained
  parameters: mixture logits, means, log-diagonal and off-diagonal of each Cholesky factor.

References:
    Dempster, Laird & Rubin (1977), Maximum likelihood from incomplete data via the EM algorithm.
    Cappé & Moulines (2009), On-line expectation-maximization algorithm for latent data models.
    Arthur & Vassilvitskii (2007), k-means++: the advantages of careful seeding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import distributions as D
from torch import nn

from .base import BaseConfig, Model2D, hp, register


@dataclass
class MoGConfig(BaseConfig):
    K: int = hp(8, 1, 20, label="components K", help="number of Gaussians in the mixture")
    covariance: str = hp("full", choices=("full", "diagonal", "spherical"), label="covariance",
                         help="full: any ellipse; diagonal: axis-aligned; spherical: circles")
    method: str = hp("em", choices=("em", "gradient"), label="fitting method",
                     help="EM: closed-form E and M steps; gradient: Adam on the log-likelihood")
    reg: float = hp(1e-4, 1e-6, 0.1, log=True, label="covariance floor",
                    help="added to each covariance's diagonal in the M-step (keeps it invertible)")


@register
class MixtureOfGaussians(Model2D):
    key = "mog"
    family = "latent"
    title = "Mixture of Gaussians"
    probe_kind = "mixture"
    density = "exact"
    Config = MoGConfig

    def __init__(self, cfg: MoGConfig | None = None):
        super().__init__(cfg)
        K = self.cfg.K
        self.logits = nn.Parameter(torch.zeros(K))
        self.means = nn.Parameter(torch.randn(K, 2))
        n_diag = 1 if self.cfg.covariance == "spherical" else 2
        self.log_diag = nn.Parameter(torch.zeros(K, n_diag))
        if self.cfg.covariance == "full":
            self.off = nn.Parameter(torch.zeros(K))
        else:
            self.register_parameter("off", None)
        # online-EM sufficient statistics (pi, pi*mu, pi*E[x x^T]) and their step counter
        self.register_buffer("s0", torch.zeros(K))
        self.register_buffer("s1", torch.zeros(K, 2))
        self.register_buffer("s2", torch.zeros(K, 2, 2))
        self.register_buffer("em_t", torch.zeros((), dtype=torch.long))
        self._estep_view: tuple[torch.Tensor, ...] | None = None  # params at the last E-step

    # --- the distribution ---------------------------------------------------------------------
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors L_k (K, 2, 2) with Sigma_k = L_k L_k^T."""
        d = torch.exp(self.log_diag).expand(self.cfg.K, 2)
        L = torch.diag_embed(d)
        if self.off is not None:
            L = L + self._off_matrix()
        return L

    def _off_matrix(self) -> torch.Tensor:
        m = torch.zeros(self.cfg.K, 2, 2, device=self.off.device, dtype=self.off.dtype)
        m[:, 1, 0] = self.off
        return m

    def components(self) -> D.MultivariateNormal:
        return D.MultivariateNormal(self.means, scale_tril=self.scale_tril())

    def distribution(self) -> D.MixtureSameFamily:
        return D.MixtureSameFamily(D.Categorical(logits=self.logits), self.components())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.distribution().log_prob(x)

    def responsibilities(self, x: torch.Tensor, params=None) -> torch.Tensor:
        """r_nk = p(z = k | x_n): the E-step (exact posterior over the latent component)."""
        logits, means, L = params if params is not None else (self.logits, self.means, self.scale_tril())
        comp = D.MultivariateNormal(means, scale_tril=L)
        joint = torch.log_softmax(logits, 0) + comp.log_prob(x[:, None, :])
        return torch.softmax(joint, dim=1)

    def covariances(self) -> torch.Tensor:
        L = self.scale_tril()
        return L @ L.transpose(-1, -2)

    # --- initialisation -----------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """k-means++ seeding of the means; each component takes the covariance and weight of the
        points nearest its seed (Arthur & Vassilvitskii 2007)."""
        K, n = self.cfg.K, x.shape[0]
        centres = [x[torch.randint(n, (1,), device=x.device)].squeeze(0)]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for _ in range(1, K):
            probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
            c = x[torch.multinomial(probs, 1)].squeeze(0)
            centres.append(c)
            d2 = torch.minimum(d2, ((x - c) ** 2).sum(1))
        mu = torch.stack(centres)
        nearest = torch.cdist(x, mu).argmin(1)
        resp = nn.functional.one_hot(nearest, K).to(x.dtype)
        # a soft floor so that a seed with no points still gets a sensible covariance
        resp = 0.98 * resp + 0.02 / K
        self._m_step_from_stats(*self._stats(x, resp), reset_online=True)

    # --- EM -------------------------------------------------------------------------------------
    @staticmethod
    def _stats(x: torch.Tensor, resp: torch.Tensor):
        """Average sufficient statistics: E[r_k], E[r_k x], E[r_k x x^T] over the batch."""
        n = x.shape[0]
        s0 = resp.sum(0) / n
        s1 = resp.T @ x / n
        s2 = torch.einsum("nk,ni,nj->kij", resp, x, x) / n
        return s0, s1, s2

    @torch.no_grad()
    def _m_step_from_stats(self, s0, s1, s2, reset_online: bool = False) -> None:
        """The closed-form M-step from (average) sufficient statistics."""
        nk = s0.clamp_min(1e-12)
        mu = s1 / nk[:, None]
        cov = s2 / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        if self.cfg.covariance == "diagonal":
            cov = torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))
        elif self.cfg.covariance == "spherical":
            var = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1)
            cov = var[:, None, None] * torch.eye(2, device=cov.device, dtype=cov.dtype)
        cov = cov + self.cfg.reg * torch.eye(2, device=cov.device, dtype=cov.dtype)
        self._set_params(torch.log(nk / nk.sum()), mu, cov)
        if reset_online:
            self.s0.copy_(s0)
            self.s1.copy_(s1)
            self.s2.copy_(s2)
            self.em_t.zero_()

    @torch.no_grad()
    def _set_params(self, logits, mu, cov) -> None:
        L = torch.linalg.cholesky(cov.double()).to(mu.dtype)
        self.logits.copy_(logits)
        self.means.copy_(mu)
        diag = torch.diagonal(L, dim1=-2, dim2=-1)
        if self.cfg.covariance == "spherical":
            self.log_diag.copy_(torch.log(diag[:, :1]))
        else:
            self.log_diag.copy_(torch.log(diag))
        if self.off is not None:
            self.off.copy_(L[:, 1, 0])

    @torch.no_grad()
    def e_step(self, x: torch.Tensor) -> torch.Tensor:
        resp = self.responsibilities(x)
        self._estep_view = (self.logits.clone(), self.means.clone(), self.scale_tril().clone())
        return resp

    @torch.no_grad()
    def m_step(self, x: torch.Tensor, resp: torch.Tensor, full_batch: bool) -> None:
        stats = self._stats(x, resp)
        if full_batch:
            self._m_step_from_stats(*stats, reset_online=True)
            return
        rho = float((self.em_t.item() + 2) ** -0.6)
        for buf, new in zip((self.s0, self.s1, self.s2), stats):
            buf.mul_(1 - rho).add_(new, alpha=rho)
        self.em_t += 1
        self._m_step_from_stats(self.s0, self.s1, self.s2)

    # --- the training interface ------------------------------------------------------------------
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative average log-likelihood (notes 3.2.2), the quantity both methods decrease."""
        return {"loss": -self.log_prob(x).mean()}

    def configure_optimizers(self, settings):
        if self.cfg.method == "em":
            return {}
        return super().configure_optimizers(settings)

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        if self.cfg.method == "gradient":
            return super().step(x, optimizers)
        full = bool(getattr(self, "_full_batch", False))
        resp = self.e_step(x)
        self.m_step(x, resp, full)
        with torch.no_grad():
            return {"loss": float(-self.log_prob(x).mean())}

    @property
    def substep_names(self) -> tuple[str, ...]:
        """The Step button walks EM one half at a time: first E, then M."""
        return ("E-step", "M-step") if self.cfg.method == "em" else ()

    def substep(self, x: torch.Tensor, phase: int, optimizers) -> dict[str, float]:
        if phase == 0:
            self._pending = self.e_step(x)
        else:
            resp = getattr(self, "_pending", None)
            if resp is None or resp.shape[0] != x.shape[0]:
                resp = self.e_step(x)
            self.m_step(x, resp, bool(getattr(self, "_full_batch", False)))
            self._pending = None
        with torch.no_grad():
            return {"loss": float(-self.log_prob(x).mean())}

    def sample(self, n: int) -> torch.Tensor:
        return self.sample_labeled(n)[0]

    @torch.no_grad()
    def sample_labeled(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling (notes 4.1): z ~ Cat(pi), then x ~ N(mu_z, Sigma_z); returns (x, z)."""
        z = D.Categorical(logits=self.logits).sample((n,))
        eps = torch.randn(n, 2, device=self.means.device)
        L = self.scale_tril()[z]
        return self.means[z] + (L @ eps[:, :, None])[:, :, 0], z

    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """Component parameters and each shown point's most responsible component. In EM the
        colours are those of the last E-step, so stepping shows E (recolour) and M (move) apart."""
        view = self._estep_view if self.cfg.method == "em" and self._estep_view is not None else None
        resp = self.responsibilities(points, view)
        return {
            "weights": torch.softmax(self.logits, 0).cpu().numpy(),
            "means": self.means.detach().cpu().numpy(),
            "covariances": self.covariances().detach().cpu().numpy(),
            "point_labels": resp.argmax(1).cpu().numpy().astype(np.int32),
            "point_confidence": resp.max(1).values.cpu().numpy(),
        }
