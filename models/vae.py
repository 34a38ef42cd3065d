"""Variational autoencoder (notes 4.2-4.5) with its exact marginal likelihood by latent quadrature.

    z ~ N(0, I) in 1 or 2 dimensions,   x | z ~ N(mu_theta(z), diag sigma_theta(z)^2)   (notes 4.2)

The encoder q_phi(z|x) = N(m_phi(x), diag s_phi(x)^2) is amortised inference (notes 4.4.5). Training
maximises the ELBO (notes 4.3.4, 4.5) with the reparameterisation z = m + s * eps (notes 4.4.3):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))   (reconstruction, and KL in closed form)

or, with objective "iwae", the importance-weighted bound of Burda et al. (2016), notes 4.3.3:

    IWAE_k(x) = E[log 1/k sum_i p(x, z_i) / q(z_i|x)],  z_i ~ q(z|x),   ELBO <= IWAE_k <= log p(x).

Because z has 1 or 2 dimensions, the marginal p(x) = integral p(z) p(x|z) dz (notes 4.3.1) is computed
by quadrature on a latent grid (:mod:`models.vae_quadrature`), so ``log_prob`` is the model's real
log-likelihood (density = "exact"), not a bound: held-out NLL, the density heatmap and the gap
log p(x) - ELBO = KL(q(z|x) || p(z|x)) (notes 4.3.4) are all the real thing.

Accuracy of the quadrature (models/vae_quadrature.py): the midpoint rule on a uniform grid converges
exponentially fast for smooth integrands; its error on a Gaussian-shaped posterior of width w is about
2 exp(-2 pi^2 w^2 / h^2) (relative) for node spacing h, so halving h takes an error e to about e^4/8.
The grid in use is the coarsest sub-grid of the configured one whose log p(x) agrees with that of twice
its spacing within 0.05 nats on average on reference points; ``quad_check`` in the metrics is that
agreement (nats), a generous bound on the error of the grid in use. The box [-4.5, 4.5]^d leaves out
< 2e-5 of the prior's mass. Checked on trained models in tests/test_vae.py: within 1e-3 nats of a grid
twice as fine, and the density integrates to 1 over the data plane.

The model works in standardised data coordinates (a :class:`Standardizer`) and adds its log-Jacobian,
so every number it reports (NLL, ELBO, IWAE, reconstruction) is in nats in the data's own coordinates.

References:
    Kingma & Welling (2014), Auto-encoding variational Bayes.
    Rezende, Mohamed & Wierstra (2014), Stochastic backpropagation and approximate inference.
    Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders.
    Cremer, Li & Duvenaud (2018), Inference suboptimality in variational autoencoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .base import BaseConfig, Model2D, Standardizer, hp, register
from .nets import mlp
from .vae_quadrature import LatentGrid, gaussian_log_prob, log_marginal

LOG_2PI = math.log(2 * math.pi)
METRIC_SEED = 1234  # common random numbers: the held-out bounds move with the model, not the dice
MAX_METRIC_POINTS = 2000
N_REF = 32


@dataclass
class VAEConfig(BaseConfig):
    latent_dim: int = hp(2, 1, 2, label="latent dimension",
                         help="1: the decoder draws a curve; 2: a sheet. log p(x) integrates over this latent grid")
    enc_hidden: int = hp(64, 8, 256, step=8, label="encoder width", help="units per hidden layer of q(z|x)")
    dec_hidden: int = hp(64, 8, 256, step=8, label="decoder width", help="units per hidden layer of p(x|z)")
    layers: int = hp(2, 1, 4, label="hidden layers", help="of the encoder and of the decoder")
    activation: str = hp("silu", choices=("silu", "tanh", "elu", "softplus", "relu"), label="activation",
                         help="smooth activations give smooth posteriors (and accurate quadrature)")
    decoder_var: str = hp("learned", choices=("learned", "fixed"), label="decoder variance",
                          help="learned: σ(z) is a network output (above the floor); fixed: σ everywhere")
    sigma: float = hp(0.08, 0.02, 1.0, log=True, label="decoder σ (fixed) / floor (learned)",
                      help="in data units; a small σ makes p(z|x) narrow (more latent grid needed)")
    objective: str = hp("elbo", choices=("elbo", "iwae"), label="training objective",
                        help="elbo: 1 sample, KL in closed form; iwae: the k-sample bound")
    k: int = hp(16, 1, 256, label="samples k (IWAE)", live=True,
                help="importance samples of the IWAE bound (curves, and training with objective iwae)")
    grid: int = hp(64, 32, 192, step=16, label="latent grid (nodes per axis)",
                   help="finest quadrature grid for the exact log p(x) (2D: grid², 1D: 16·grid nodes); "
                        "a coarser sub-grid is used while it is accurate")


@register
class VAE(Model2D):
    """A Gaussian VAE with a 1D or 2D latent space; ``log_prob`` integrates over the latent grid."""

    key = "vae"
    family = "latent"
    title = "Variational autoencoder (VAE)"
    probe_kind = "vae"
    density = "exact"
    Config = VAEConfig

    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__(cfg)
        c = self.cfg
        d = c.latent_dim
        self.std = Standardizer(2)
        self.encoder = mlp(2, 2 * d, c.enc_hidden, c.layers, c.activation)
        self.decoder = mlp(d, 4 if c.decoder_var == "learned" else 2, c.dec_hidden, c.layers, c.activation)
        self.latent = LatentGrid(d, c.grid if d == 2 else 16 * c.grid)
        self.register_buffer("ref", torch.zeros(N_REF, 2))  # standardised points that pick the grid's stride
        with torch.no_grad():  # start with a broad decoder (sigma near 1 in standardised units)
            self.decoder[-1].bias.zero_()
            self.encoder[-1].bias.zero_()

    # --- the two networks ---------------------------------------------------------------------
    def encode(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) for standardised x: mean m (n, d) and standard deviation s (n, d)."""
        out = self.encoder(xs)
        m, raw = out.chunk(2, dim=-1)
        return m, F.softplus(raw - 1.0) + 1e-4

    def sigma_floor(self) -> torch.Tensor:
        """The decoder's σ (fixed) or its floor (learned), per axis in standardised units."""
        return self.cfg.sigma / self.std.scale

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x|z) in standardised coordinates: mean mu (.., 2) and log standard deviation (.., 2)."""
        out = self.decoder(z)
        floor = self.sigma_floor()
        if self.cfg.decoder_var == "fixed":
            return out, torch.log(floor).expand_as(out)
        mu, raw = out.chunk(2, dim=-1)
        return mu, torch.log(floor + F.softplus(raw + 0.5))

    # --- bounds ----------------------------------------------------------------------------------
    def _log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None):
        """k reparameterised samples z = m + s * eps (notes 4.4.3) per point, and their terms:
        log p(x|z) (n, k) in data coordinates, log p(z) - log q(z|x) (n, k), and the closed-form KL (n,)."""
        xs = self.std(x)
        m, s = self.encode(xs)
        eps = torch.randn((x.shape[0], k, m.shape[1]), generator=generator, device=x.device, dtype=x.dtype)
        z = m[:, None] + s[:, None] * eps
        mu, log_sig = self.decode(z)
        log_px_z = gaussian_log_prob(xs[:, None], mu, log_sig) + self.std.log_det()
        log_pz = -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI
        log_qz = -0.5 * (eps ** 2).sum(-1) - torch.log(s).sum(-1)[:, None] - 0.5 * z.shape[-1] * LOG_2PI
        return log_px_z, log_pz - log_qz, kl_to_standard_normal(m, s)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """-ELBO (notes 4.5) with one sample and the KL in closed form, or -IWAE_k; both in nats per point.
        Logged: recon = -E_q[log p(x|z)] and kl = KL(q(z|x) || p(z)), so loss = recon + kl for the ELBO."""
        k = self.cfg.k if self.cfg.objective == "iwae" else 1
        log_px_z, log_ratio, kl = self._log_weights(x, k)
        recon = -log_px_z.mean()
        terms = {"recon": recon, "kl": kl.mean()}
        if self.cfg.objective == "iwae":
            iwae = torch.logsumexp(log_px_z + log_ratio, 1) - math.log(k)
            terms["loss"] = -iwae.mean()
        else:
            terms["loss"] = recon + terms["kl"]
        return terms

    @torch.no_grad()
    def bounds(self, x: torch.Tensor, k: int | None = None, seed: int | None = METRIC_SEED) -> dict[str, torch.Tensor]:
        """Per-point ELBO and IWAE_k with k samples each (notes 4.3.3-4.3.4), their reconstruction and KL
        terms; with a seed, the same noise every call (common random numbers)."""
        k = k or self.cfg.k
        gen = torch.Generator(device=x.device).manual_seed(seed) if seed is not None else None
        log_px_z, log_ratio, kl = self._log_weights(x, k, gen)
        recon = log_px_z.mean(1)
        return {"elbo": recon - kl, "iwae": torch.logsumexp(log_px_z + log_ratio, 1) - math.log(k),
                "recon": recon, "kl": kl}

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """Held-out ELBO, IWAE_k and the ELBO's terms (the view draws log p(x) - ELBO from these and the
        session's test_nll), and the quadrature check (nats)."""
        x = x_test[:MAX_METRIC_POINTS]
        b = self.bounds(x)
        out = {"test_elbo": b["elbo"].mean(), "test_iwae": b["iwae"].mean(), "test_recon": b["recon"].mean(),
               "test_kl": b["kl"].mean(), "quad_check": self.quadrature()["check"]}
        return {k: float(v) for k, v in out.items()}

    # --- the exact marginal likelihood --------------------------------------------------------
    def quadrature(self) -> dict:
        """The latent grid in use at the current weights: its sub-grid (stride), the decoder there
        (mu, log_sig, standardised units) and the convergence check (nats). Cached while the weights
        stay the same: a frame asks for it several times."""
        key = self._fingerprint()
        cached = getattr(self, "_quad", None)
        if cached is not None and cached["key"] == key:
            return cached
        last = cached["stride"] if cached is not None else None
        with torch.no_grad():
            stride, check, decoded = self.latent.choose_stride(self.decode, self.ref, start=last)
        mu, log_sig = decoded[stride]
        self._quad = {"key": key, "stride": stride, "check": check, "grid": self.latent.subgrid(stride),
                      "mu": mu, "log_sig": log_sig}
        return self._quad

    @torch.no_grad()
    def _fingerprint(self) -> tuple:
        """Changes whenever the decoder, the standardiser or the reference points change (fused Adam
        updates in place without bumping tensors' version counters, so the values are summed)."""
        flat = torch.cat([p.reshape(-1) for p in (*self.decoder.parameters(), self.std.scale, self.std.shift,
                                                   self.ref)]).double()
        ramp = torch.linspace(1.0, 2.0, flat.shape[0], dtype=flat.dtype, device=flat.device)
        return float(flat.sum()), float((flat * ramp).sum()), flat.device.type

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log sum_j w_j p(x | z_j) over the latent grid's nodes z_j with prior weights w_j
        (the midpoint rule for the integral of notes 4.3.1), in data coordinates. Differentiable when
        gradients are on (the decoder is then re-run on the nodes)."""
        q = self.quadrature()
        mu, log_sig = q["mu"], q["log_sig"]
        if torch.is_grad_enabled():
            mu, log_sig = self.decode(self.latent.nodes[q["grid"].index])
        return log_marginal(self.std(x), mu, log_sig, q["grid"]) + self.std.log_det()

    # --- training hooks, sampling and the views ------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Standardise to the data; keep reference points (data and a spread around it) on which the
        quadrature's resolution is chosen."""
        self.std.fit(x)
        gen = torch.Generator().manual_seed(0)
        pick = torch.randint(0, x.shape[0], (N_REF - N_REF // 4,), generator=gen).to(x.device)
        spread = (torch.rand(N_REF // 4, 2, generator=gen) * 5.0 - 2.5).to(x.device)
        self.ref.copy_(torch.cat([self.std(x[pick]), spread]))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Ancestral sampling (notes 4.5): z ~ N(0, I), then x ~ N(mu(z), diag sigma(z)^2)."""
        z = torch.randn(n, self.cfg.latent_dim, device=self.std.scale.device)
        mu, log_sig = self.decode(z)
        return self.std.inverse(mu + torch.exp(log_sig) * torch.randn_like(mu))

    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """Everything the VAE views draw (see playground/views/latent.py), as numpy."""
        from .vae_probe import probe_vae

        return probe_vae(self, points)


def kl_to_standard_normal(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """KL(N(m, diag s^2) || N(0, I)) = 1/2 sum_d (m^2 + s^2 - 1 - 2 log s), per row (notes 4.5)."""
    return 0.5 * (m ** 2 + s ** 2 - 1.0 - 2.0 * torch.log(s)).sum(-1)
