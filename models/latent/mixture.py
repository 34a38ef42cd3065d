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

Scale. Both work in the data's own standardised frame x~ = (x - m) / s, m the training mean and s the
root mean variance of the two columns (one number, so spherical and diagonal components stay so):
GPS degrees (37.77 +- 0.02) or points around (1000, 1000) fit as well as the built-in sets. In raw
float32 coordinates the M-step's E[x x^T] - mu mu^T cancels catastrophically there (1426.6 - 1426.6 for
a variance of 4e-4) and the Cholesky factorisation failed. log p(x) = log p~(x~) - 2 log s stays in data
coordinates (change of variables, notes 5.1).

Covariance floor (``reg``), in units of the data's variance (s^2). EM adds reg * I to every M-step
covariance (in the standardised frame), which keeps it invertible when a component holds one point;
the Cholesky factor of each 2 x 2 covariance is then written in closed form (no LAPACK call).
Gradient mode has no M-step: there each Cholesky factor's diagonal entry is sqrt(reg + exp(2 theta)) >=
sqrt(reg), so det Sigma~ >= reg^2 and every component's density, hence the likelihood, is bounded by
1 / (2 pi reg s^2). Without a floor the likelihood is unbounded: a component that shrinks onto one
data point sends it to +infinity (Bishop 2006, Pattern Recognition and Machine Learning, 9.2.1). For
spherical and diagonal covariances the two floors coincide (Sigma~ = D + reg * I); for full ones the
gradient floor bounds the determinant instead of every eigenvalue.

References:
    Dempster, Laird & Rubin (1977), Maximum likelihood from incomplete data via the EM algorithm.
    Cappé & Moulines (2009), On-line expectation-maximization algorithm for latent data models.
    Arthur & Vassilvitskii (2007), k-means++: the advantages of careful seeding.
    Bishop (2006), Pattern Recognition and Machine Learning, 9.2.1 (singularities of the likelihood).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import distributions as D
from torch import nn

from ..base import BaseConfig, Model2D, hp, register


@dataclass
class MoGConfig(BaseConfig):
    K: int = hp(8, 1, 32, label="components K", help="number of Gaussians in the mixture")
    covariance: str = hp("full", choices=("full", "diagonal", "spherical"), label="covariance",
                         help="full: any ellipse; diagonal: axis-aligned; spherical: circles")
    method: str = hp("em", choices=("em", "gradient"), label="fitting method",
                     help="EM: closed-form E and M steps; gradient: Adam on the log-likelihood, which the "
                          "covariance floor keeps bounded")
    reg: float = hp(1e-5, 1e-6, 0.1, log=True, label="covariance floor",
                    help="in units of the data's variance: EM adds it to each covariance's diagonal; gradient "
                         "mode keeps each Cholesky diagonal ≥ √floor, so the likelihood stays bounded")


@register
class MixtureOfGaussians(Model2D):
    key = "mog"
    in_compare = True  # a representative of its family in a comparison
    family = "latent"
    title = "Mixture of Gaussians"
    probe_kind = "mixture"
    density = "exact"
    Config = MoGConfig

    def __init__(self, cfg: MoGConfig | None = None):
        super().__init__(cfg)
        K = self.cfg.K
        # every parameter lives in the standardised frame x~ = (x - shift) / scale (see the module docstring)
        self.logits = nn.Parameter(torch.zeros(K))
        self.loc = nn.Parameter(torch.randn(K, 2))
        n_diag = 1 if self.cfg.covariance == "spherical" else 2
        self.log_diag = nn.Parameter(torch.zeros(K, n_diag))
        if self.cfg.covariance == "full":
            self.off = nn.Parameter(torch.zeros(K))
        else:
            self.register_parameter("off", None)
        self.register_buffer("shift", torch.zeros(2))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("log_det", torch.zeros(()))  # 2 log scale: log p(x) = log p~(x~) - log_det
        # online-EM sufficient statistics (pi, pi*mu, pi*E[x x^T], standardised frame) and their step counter
        self.register_buffer("s0", torch.zeros(K))
        self.register_buffer("s1", torch.zeros(K, 2))
        self.register_buffer("s2", torch.zeros(K, 2, 2))
        self.register_buffer("em_t", torch.zeros((), dtype=torch.long))
        self._estep_view: tuple[torch.Tensor, ...] | None = None  # params at the last E-step

    # --- the distribution ---------------------------------------------------------------------
    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    @property
    def means(self) -> torch.Tensor:
        """Component means (K, 2) in data coordinates."""
        return self.shift + self.scale * self.loc

    def _tril(self) -> torch.Tensor:
        """Cholesky factors of the standardised covariances, their diagonal floored at sqrt(reg)."""
        d = torch.sqrt(self.cfg.reg + torch.exp(2 * self.log_diag)).expand(self.cfg.K, 2)
        L = torch.diag_embed(d)
        if self.off is not None:
            L = L + self._off_matrix()
        return L

    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors L_k (K, 2, 2) with Sigma_k = L_k L_k^T, in data coordinates."""
        return self.scale * self._tril()

    def _off_matrix(self) -> torch.Tensor:
        m = torch.zeros(self.cfg.K, 2, 2, device=self.off.device, dtype=self.off.dtype)
        m[:, 1, 0] = self.off
        return m

    def _std_distribution(self) -> D.MixtureSameFamily:
        comp = D.MultivariateNormal(self.loc, scale_tril=self._tril())
        return D.MixtureSameFamily(D.Categorical(logits=self.logits), comp)

    def components(self) -> D.MultivariateNormal:
        return D.MultivariateNormal(self.means, scale_tril=self.scale_tril())

    def distribution(self) -> D.MixtureSameFamily:
        return D.MixtureSameFamily(D.Categorical(logits=self.logits), self.components())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in data coordinates: the standardised mixture's log-density minus 2 log s."""
        return self._std_distribution().log_prob(self.standardise(x)) - self.log_det

    def responsibilities(self, x: torch.Tensor, params=None) -> torch.Tensor:
        """r_nk = p(z = k | x_n): the E-step (exact posterior over the latent component). `params`:
        (logits, standardised means, standardised Cholesky factors), e.g. those of the last E-step."""
        return self._resp(self.standardise(x), params)

    def _resp(self, xs: torch.Tensor, params=None) -> torch.Tensor:
        logits, loc, L = params if params is not None else (self.logits, self.loc, self._tril())
        comp = D.MultivariateNormal(loc, scale_tril=L)
        joint = torch.log_softmax(logits, 0) + comp.log_prob(xs[:, None, :])
        return torch.softmax(joint, dim=1)

    def covariances(self) -> torch.Tensor:
        L = self.scale_tril()
        return L @ L.transpose(-1, -2)

    # --- initialisation -----------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Fit the standardised frame (in float64) to the training data, then seed the components by
        k-means (:func:`kmeans_init`): each component takes the weight, mean and covariance of its cluster."""
        xd = x.double()
        shift = xd.mean(0)
        scale = torch.sqrt(xd.var(0, unbiased=False).mean())
        if not (torch.isfinite(scale) and scale > 0):
            scale = torch.ones((), dtype=torch.float64, device=x.device)
        self.shift.copy_(shift)
        self.scale.copy_(scale)
        self.log_det.copy_(2 * torch.log(scale))
        x = ((xd - shift) / scale).to(x.dtype)
        nearest = kmeans_init(x, self.cfg.K, generator=self.rng("train", x.device))
        resp = nn.functional.one_hot(nearest, self.cfg.K).to(x.dtype)
        # a soft floor so that a seed with no points still gets a sensible covariance
        resp = 0.98 * resp + 0.02 / self.cfg.K
        self._m_step_from_stats(*self._stats(x, resp), reset_online=True)

    # --- EM -------------------------------------------------------------------------------------
    @staticmethod
    def _stats(x: torch.Tensor, resp: torch.Tensor):
        """Average sufficient statistics of standardised points x: E[r_k], E[r_k x], E[r_k x x^T]."""
        n = x.shape[0]
        s0 = resp.sum(0) / n
        s1 = resp.T @ x / n
        s2 = torch.einsum("nk,ni,nj->kij", resp, x, x) / n
        return s0, s1, s2

    @torch.no_grad()
    def _m_step_from_stats(self, s0, s1, s2, reset_online: bool = False) -> None:
        """The closed-form M-step from (average, standardised) sufficient statistics."""
        nk = s0.clamp_min(1e-12)
        mu = s1 / nk[:, None]
        cov = s2 / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
        self._set_params(torch.log(nk / nk.sum()), mu, cov)
        if reset_online:
            self.s0.copy_(s0)
            self.s1.copy_(s1)
            self.s2.copy_(s2)
            self.em_t.zero_()

    @torch.no_grad()
    def _set_params(self, logits, mu, cov) -> None:
        """Set the standardised parameters from a standardised covariance S (K, 2, 2): Sigma~ = S + reg * I
        (diagonal: S's diagonal; spherical: its mean variance), through the closed-form Cholesky factor of a
        2 x 2 matrix: L00 = sqrt(a + reg), L10 = b / L00, L11^2 = reg + c - L10^2 for S = [[a, b], [b, c]].
        _tril's diagonal sqrt(reg + exp(2 theta)) gives L00 and L11 back with theta = log(a) / 2 and
        log(c - L10^2) / 2. Float32 rounding can leave S slightly indefinite (a point-like component far from
        the data's centre): its variances are clamped at 0 and its correlation into [-1, 1], so Sigma~ is
        always positive definite (det >= reg (a + c + reg))."""
        r = self.cfg.reg
        a, c = cov[:, 0, 0].clamp_min(0), cov[:, 1, 1].clamp_min(0)
        if self.cfg.covariance == "spherical":
            free = (0.5 * (a + c))[:, None]
        elif self.cfg.covariance == "diagonal":
            free = torch.stack([a, c], 1)
        else:
            lim = torch.sqrt(a * c)
            off = torch.minimum(torch.maximum(cov[:, 0, 1], -lim), lim) / torch.sqrt(a + r)
            free = torch.stack([a, c - off * off], 1)
            self.off.copy_(off)
        self.logits.copy_(logits)
        self.loc.copy_(mu)
        self.log_diag.copy_(0.5 * torch.log(free.clamp_min(1e-6 * r)))  # 1e-6 reg: a point-like component

    @torch.no_grad()
    def e_step(self, x: torch.Tensor, standardised: bool = False) -> torch.Tensor:
        view = (self.logits.clone(), self.loc.clone(), self._tril())  # _tril() is a fresh tensor already
        self._estep_view = view
        return self._resp(x if standardised else self.standardise(x), view)

    @torch.no_grad()
    def m_step(self, x: torch.Tensor, resp: torch.Tensor, full_batch: bool, standardised: bool = False) -> None:
        stats = self._stats(x if standardised else self.standardise(x), resp)
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
        full = self.full_batch
        xs = self.standardise(x)
        resp = self.e_step(xs, standardised=True)
        self.m_step(xs, resp, full, standardised=True)
        with torch.no_grad():
            return {"loss": float(self.log_det - self._std_distribution().log_prob(xs).mean())}

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
            self.m_step(x, resp, self.full_batch)
            self._pending = None
        with torch.no_grad():
            return {"loss": float(-self.log_prob(x).mean())}

    def sample(self, n: int) -> torch.Tensor:
        return self.sample_labeled(n)[0]

    @torch.no_grad()
    def sample_labeled(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling (notes 4.1): z ~ Cat(pi), then x ~ N(mu_z, Sigma_z); returns (x, z)."""
        dev = self.loc.device
        g = self.rng("view", dev)
        z = torch.multinomial(torch.softmax(self.logits.detach(), 0), n, replacement=True, generator=g)
        eps = torch.randn(n, 2, device=dev, generator=g)
        L = self._tril()[z]
        return self.shift + self.scale * (self.loc[z] + (L @ eps[:, :, None])[:, :, 0]), z

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


KMEANS_SEEDINGS = 5  # k-means++ seedings tried; the clustering with the least inertia starts EM
KMEANS_ITERS = 10  # Lloyd iterations refining each seeding


@torch.no_grad()
def kmeans_init(x: torch.Tensor, K: int, seedings: int = KMEANS_SEEDINGS, iters: int = KMEANS_ITERS,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Cluster labels (n,) that start EM: the best (least within-cluster sum of squares) of `seedings`
    k-means++ seedings (Arthur & Vassilvitskii 2007), each refined by `iters` Lloyd iterations, as
    scikit-learn's GaussianMixture starts from k-means. EM only climbs to the nearest local maximum of
    the likelihood; one seeding alone left checkerboard's 8 components 0.05 nats short of the best of five
    full EM runs (playground bench quality). Draws from `generator` (the model's "train" stream)."""
    n = x.shape[0]
    best, best_inertia = None, float("inf")
    for _ in range(seedings):
        centres = [x[torch.randint(n, (1,), device=x.device, generator=generator)].squeeze(0)]
        d2 = ((x - centres[0]) ** 2).sum(1)
        for _ in range(1, K):
            probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
            c = x[torch.multinomial(probs, 1, generator=generator)].squeeze(0)
            centres.append(c)
            d2 = torch.minimum(d2, ((x - c) ** 2).sum(1))
        mu = torch.stack(centres)
        for _ in range(iters):
            labels = torch.cdist(x, mu).argmin(1)
            sums = torch.zeros_like(mu).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=K).to(x.dtype)
            mu = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], mu)  # empty: stays
        dist = torch.cdist(x, mu).min(1)
        inertia = float((dist.values ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = dist.indices, inertia
    return best
