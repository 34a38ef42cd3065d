"""Variational autoencoder (notes 4.2-4.5) with its marginal likelihood by checked latent quadrature.

    z ~ N(0, I) in 1 or 2 dimensions,   x | z ~ N(mu_theta(z), diag sigma_theta(z)^2)   (notes 4.2)

The encoder q_phi(z|x) = N(m_phi(x), diag s_phi(x)^2) is amortised inference (notes 4.4.5). Training
maximises the ELBO (notes 4.3.4, 4.5) with the reparameterisation z = m + s * eps (notes 4.4.3):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))   (reconstruction, and KL in closed form)

or, with objective "iwae" (after an ELBO warm-up: see VAE.loss), the importance-weighted bound of Burda
et al. (2016), notes 4.3.3:

    IWAE_k(x) = E[log 1/k sum_i p(x, z_i) / q(z_i|x)],  z_i ~ q(z|x),   ELBO <= IWAE_k <= log p(x).

Because z has 1 or 2 dimensions, the marginal p(x) = integral p(z) p(x|z) dz (notes 4.3.1) is computed
by quadrature (:mod:`models.latent.quadrature`), so ``log_prob`` is the model's log-likelihood, not a bound
(density = "quadrature": normalised by a numerical integral), to within a checked error: held-out NLL,
the density heatmap and the gap log p(x) - ELBO = KL(q(z|x) || p(z|x)) (notes 4.3.4) are the real thing
where the check passes, and labelled estimates where it does not. That gap is the *inference gap* of
Cremer, Li & Duvenaud (2018): the approximation gap (no diagonal Gaussian equals p(z|x)) plus the
amortisation gap (the encoder's q for this x is not the best diagonal Gaussian, notes 4.4.5); the views
name it so.

Accuracy (models/latent/quadrature.py): every point is checked. Shared latent grids (prior weights, the
midpoint rule, exponentially convergent for smooth integrands), from the configured one to 2, 4, ...
times finer, serve each point on the first that grids of twice its spacing and a twin half a cell away
confirm within TOL_POINT = 0.05 nats; a point whose posterior is narrower than all of them (a small
decoder sigma) gets its own grid, centred and scaled on its posterior (importance-weighted quadrature
around a Laplace approximation, refined until a grid of twice the spacing agrees). The
metrics report ``quad_error`` (the mean of the points' error estimates, a generous bound on the NLL's
quadrature error), ``quad_unverified`` (the share of points that could not be verified), ``quad_exact``
(1 when all are verified and log p(x) is not below the ELBO / IWAE_k) and ``quad_check`` (the shared
grid's own agreement: above TOL_MEAN the density heatmap, which uses that grid alone, is an
approximation, and the view says so). Checked in tests/test_vae.py against closed forms (a linear
decoder) and brute force (the smallest sigma and the largest grid the sliders allow).

The model works in standardised data coordinates (a :class:`Standardizer`) and adds its log-Jacobian,
so every number it reports (NLL, ELBO, IWAE, reconstruction) is in nats in the data's own coordinates.

References:
    Kingma & Welling (2014), Auto-encoding variational Bayes.
    Rezende, Mohamed & Wierstra (2014), Stochastic backpropagation and approximate inference.
    Burda, Grosse & Salakhutdinov (2016), Importance weighted autoencoders.
    Cremer, Li & Duvenaud (2018), Inference suboptimality in variational autoencoders.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), Improved variational inference with
        inverse autoregressive flow (free bits).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..base import BaseConfig, Model2D, Standardizer, hp, register, update_average
from ..nets import mlp
from . import quadrature as quad
from .quadrature import LatentGrid, checked_log_marginal, gaussian_log_prob, log_marginal, regular_grid_axes

LOG_2PI = math.log(2 * math.pi)
METRIC_SEED = 1234  # common random numbers: the held-out bounds move with the model, not the dice
MAX_METRIC_POINTS = 2000
N_REF = 32
AVERAGE_EVERY = 8  # updates between two steps of the weight average (as the flows')


@dataclass
class VAEConfig(BaseConfig):
    renamed = {"layers": "depth"}  # its name before the families agreed on it

    latent_dim: int = hp(2, 1, 2, label="latent dimension",
                         help="1: the decoder draws a curve; 2: a sheet. log p(x) integrates over this latent grid")
    enc_hidden: int = hp(64, 8, 256, step=8, label="encoder width", help="units per hidden layer of q(z|x)")
    dec_hidden: int = hp(64, 8, 256, step=8, label="decoder width", help="units per hidden layer of p(x|z)")
    depth: int = hp(2, 1, 4, label="hidden layers", help="of the encoder and of the decoder")
    activation: str = hp("tanh", choices=("tanh", "silu", "elu", "softplus", "relu"), label="activation",
                         help="smooth activations give smooth posteriors (and accurate quadrature); tanh's "
                              "saturation lets the decoder tear the prior into separate modes")
    decoder_var: str = hp("learned", choices=("learned", "fixed"), label="decoder variance",
                          help="learned: σ(z) is a network output (above the floor); fixed: σ everywhere")
    sigma: float = hp(0.08, 0.02, 1.0, log=True, label="decoder σ (fixed) / floor (learned)",
                      help="in data units; a small σ makes p(z|x) narrow (more latent grid needed)")
    objective: str = hp("iwae", choices=("elbo", "iwae"), label="training objective",
                        help="elbo: 1 sample, KL in closed form, free bits; iwae: the k-sample bound (k = training "
                             "samples below), after the ELBO warm-up")
    elbo_warmup: int = hp(500, 0, 5000, step=100, label="ELBO warm-up (steps, objective iwae)",
                          help="objective iwae: the first steps train on the ELBO with free bits, so that no "
                               "latent dimension collapses before the decoder uses it; IWAE_k after them")
    train_k: int = hp(4, 1, 64, label="training samples k (objective iwae)",
                      help="importance samples per point of the training bound: a step costs about 1.6x an ELBO "
                           "step at k = 4 and 3-4x at 16, for little more fit at equal steps")
    free_bits: float = hp(0.5, 0.0, 1.0, step=0.05, label="free bits (nats per latent dimension)",
                          help="objective elbo: each latent dimension's KL(q‖p(z)), averaged over the batch, "
                               "counts only above this (Kingma et al. 2016), so the KL term cannot switch a "
                               "dimension off before the decoder uses it; 0: the plain ELBO")
    average: float = hp(0.99, 0.0, 0.9999, step=0.0001, label="weight averaging",
                        help="the density, samples, views and held-out numbers shown come from a moving average of "
                             "the networks' weights (decay per step; 0: the trained weights themselves): Adam's "
                             "jitter averages out (8 Gaussians, 3,000 steps: 0.08 nats from the truth, 0.13 without)")
    k: int = hp(16, 1, 256, label="samples k (IWAE)", live=True,
                help="importance samples of the held-out IWAE bound in the curves and metrics")
    grid: int = hp(64, 32, 192, step=16, label="latent grid (nodes per axis)",
                   help="finest shared quadrature grid for log p(x) and the heatmap (2D: grid², 1D: 16·grid "
                        "nodes); a coarser sub-grid is used while it is accurate, and a point whose posterior it "
                        "cannot resolve gets its own grid")


@register
class VAE(Model2D):
    """A Gaussian VAE with a 1D or 2D latent space; ``log_prob`` integrates over the latent space by checked
    quadrature (a shared grid, or a grid per point around its posterior)."""

    key = "vae"
    in_compare = True  # a representative of its family in a comparison
    family = "latent"
    title = "Variational autoencoder (VAE)"
    probe_kind = "vae"
    density = "quadrature"
    Config = VAEConfig

    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__(cfg)
        c = self.cfg
        d = c.latent_dim
        self.std = Standardizer(2)
        self.encoder = mlp(2, 2 * d, c.enc_hidden, c.depth, c.activation)
        self.decoder = mlp(d, 4 if c.decoder_var == "learned" else 2, c.dec_hidden, c.depth, c.activation)
        self.latent = LatentGrid(d, c.grid if d == 2 else 16 * c.grid)
        self.register_buffer("ref", torch.zeros(N_REF, 2))  # standardised points that pick the grid's stride
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # training updates (the warm-up)
        self.encoder_avg = self.decoder_avg = None  # the weight average (cfg.average > 0), made after init
        self._training_pass, self._avg_pairs = False, None
        with torch.no_grad():  # start with a broad decoder (sigma near 1 in standardised units)
            self.decoder[-1].bias.zero_()
            self.encoder[-1].bias.zero_()
        if c.average > 0:
            self.encoder_avg = copy.deepcopy(self.encoder).requires_grad_(False)
            self.decoder_avg = copy.deepcopy(self.decoder).requires_grad_(False)

    # --- the two networks ---------------------------------------------------------------------
    def _nets(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(encoder, decoder) in use: the trained ones inside :meth:`loss`, else the shown ones (the weight
        averages where averaging; cfg.average = 0: the trained ones)."""
        if self._training_pass or self.encoder_avg is None:
            return self.encoder, self.decoder
        return self.encoder_avg, self.decoder_avg

    def encode(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) for standardised x: mean m (n, d) and standard deviation s (n, d)."""
        out = self._nets()[0](xs)
        m, raw = out.chunk(2, dim=-1)
        return m, F.softplus(raw - 1.0) + 1e-4

    def sigma_floor(self) -> torch.Tensor:
        """The decoder's σ (fixed) or its floor (learned), per axis in standardised units."""
        return self.cfg.sigma / self.std.scale

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x|z) in standardised coordinates: mean mu (.., 2) and log standard deviation (.., 2)."""
        out = self._nets()[1](z)
        floor = self.sigma_floor()
        if self.cfg.decoder_var == "fixed":
            return out, torch.log(floor).expand_as(out)
        mu, raw = out.chunk(2, dim=-1)
        return mu, torch.log(floor + F.softplus(raw + 0.5))

    # --- bounds ----------------------------------------------------------------------------------
    def _log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
                     per_dim: bool = False):
        """k reparameterised samples z = m + s * eps (notes 4.4.3) per point, and their terms:
        log p(x|z) (n, k) in data coordinates, log p(z) - log q(z|x) (n, k), and the closed-form KL (n,),
        or (n, d) per latent dimension with per_dim."""
        xs = self.std(x)
        m, s = self.encode(xs)
        eps = torch.randn((x.shape[0], k, m.shape[1]), generator=generator, device=x.device, dtype=x.dtype)
        z = m[:, None] + s[:, None] * eps
        mu, log_sig = self.decode(z)
        log_px_z = gaussian_log_prob(xs[:, None], mu, log_sig) + self.std.log_det()
        log_pz = -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI
        log_qz = -0.5 * (eps ** 2).sum(-1) - torch.log(s).sum(-1)[:, None] - 0.5 * z.shape[-1] * LOG_2PI
        return log_px_z, log_pz - log_qz, kl_to_standard_normal(m, s, per_dim)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """-ELBO (notes 4.5) with one sample and the KL in closed form, or -IWAE_k; both in nats per point.
        Logged: recon = -E_q[log p(x|z)], kl = KL(q(z|x) || p(z)) and batch_elbo = -(recon + kl).

        With the ELBO and free bits lambda > 0 (Kingma et al. 2016, "free bits"), the KL counts per latent
        dimension d only above lambda: loss = recon + sum_d max(lambda, KL_d), KL_d its batch average. Where
        every KL_d exceeds lambda (a trained model using all its dimensions) this is -ELBO exactly; below,
        the KL term no longer pushes that dimension to the prior, which is how a 2D VAE with a learned
        decoder variance otherwise loses a dimension early (posterior collapse: on banana, two seeds of
        three ended 0.35 nats above the true entropy with z2 unused, against 0.03 with free bits).

        Objective iwae trains on that ELBO for the first `elbo_warmup` updates, then on IWAE_k with
        k = `train_k` samples (Burda et al. 2016). IWAE from the first step collapses as the plain ELBO does
        (banana: 0.36 nats above the true entropy), while the ELBO leaves the factorised q's holes between
        separated modes (8 Gaussians: 0.39 nats); warmed up, IWAE gets both (8 Gaussians 0.09-0.14, 0.08
        with the weight average). k = 16 gets 0.03-0.05 nats closer at equal steps (`bench quality`, held-out
        gap to the true entropy, 3,000 steps, 3 seeds, both averaged: 8 Gaussians 0.077 against 0.043,
        checkerboard 0.29 against 0.24) for 3-4x the cost of an ELBO step where k = 4 costs 1.6x; at equal
        time k = 16 is behind (1,000 steps, seed 0: 8 Gaussians 0.12, checkerboard 0.41, 25 Gaussians 1.11
        against ours 0.22).

        IWAE (k = 4) is the default. Its decoder is sharper, so the configured latent grid resolves fewer
        posteriors (its check against twice its spacing, 8 Gaussians at 3,000 steps: 1.63 nats against
        0.08 with the ELBO): a heatmap at rest then walks on to finer global grids (:meth:`quadrature`), and
        the held-out log p(x) stays checked either way (per-point grids)."""
        iwae_now = self.training_on_iwae
        k = self.cfg.train_k if iwae_now else 1
        self._training_pass = True  # the trained networks, not their average
        try:
            log_px_z, log_ratio, kl = self._log_weights(x, k, self.rng("train", x.device), per_dim=True)
        finally:
            self._training_pass = False
        recon = -log_px_z.mean()
        kl_dim = kl.mean(0)
        terms = {"recon": recon, "kl": kl_dim.sum(), "batch_elbo": -(recon + kl_dim.sum())}
        if iwae_now:
            iwae = torch.logsumexp(log_px_z + log_ratio, 1) - math.log(k)
            terms["loss"] = -iwae.mean()
        else:
            terms["loss"] = recon + torch.clamp(kl_dim, min=self.cfg.free_bits).sum()
        return terms

    @property
    def training_on_iwae(self) -> bool:
        """Whether the next update trains on IWAE_k: objective iwae, past its ELBO warm-up."""
        return self.cfg.objective == "iwae" and int(self.updates) >= self.cfg.elbo_warmup

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        """One update of the trained networks; every AVERAGE_EVERY updates their weight average follows
        (models.base.update_average: θ̄ ← d_t^8 θ̄ + (1 − d_t^8) θ, as the flows average theirs)."""
        out = super().step(x, optimizers)
        self.updates += 1
        t = int(self.updates)
        if self.encoder_avg is not None and t % AVERAGE_EVERY == 0:
            if self._avg_pairs is None:
                self._avg_pairs = ([*self.encoder_avg.parameters(), *self.decoder_avg.parameters()],
                                   [*self.encoder.parameters(), *self.decoder.parameters()])
            update_average(*self._avg_pairs, self.cfg.average, t, AVERAGE_EVERY)
        return out

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
        session's test_nll), and how far the held-out log p(x) may be off (see :meth:`quadrature_report`)."""
        x = x_test[:MAX_METRIC_POINTS]
        b = self.bounds(x)
        out = {"test_elbo": b["elbo"].mean(), "test_iwae": b["iwae"].mean(), "test_recon": b["recon"].mean(),
               "test_kl": b["kl"].mean()}
        out = {k: float(v) for k, v in out.items()}
        out.update(self.quadrature_report(x, b))
        return out

    def quadrature_report(self, x: torch.Tensor, b: dict | None = None) -> dict[str, float]:
        """How far the log p(x) of points x may be off, from the same computation as :meth:`log_prob`
        (reused when log_prob last ran on x, or on a tensor that x begins, at the same weights):

        * quad_error: the mean over points of each point's error estimate (nats): a generous bound on the
          quadrature's error in the mean log p(x), i.e. in the NLL;
        * quad_unverified: the share of points whose value could not be verified (see
          :class:`models.vae_quadrature.Marginal`): then the NLL is an estimate, off by up to quad_error;
        * quad_adaptive: the share of points that needed their own grid (the global one was too coarse);
        * quad_check: the global grid's agreement with a grid of twice its spacing (nats, on reference
          points): above TOL_MEAN the density heatmap, which uses the global grid, is an approximation;
        * quad_exact: 1 when every point is verified and the mean log p(x) is neither below the ELBO nor,
          beyond three standard errors, below IWAE_k (notes 4.3.3-4.3.4); else 0: the NLL is an estimate.
        """
        diag = self._diagnostics_for(x)
        with torch.no_grad():
            b = b or self.bounds(x)
        lp, elbo, iwae = diag["log_p"].double(), b["elbo"].double(), b["iwae"].double()
        slack = 3.0 * float(iwae.std()) / math.sqrt(max(1, iwae.shape[0])) + 1e-4
        consistent = float(lp.mean()) >= float(elbo.mean()) - 1e-4 and float(lp.mean()) >= float(iwae.mean()) - slack
        unverified = float((~diag["verified"]).float().mean())
        return {"quad_error": float(diag["error"].double().mean()), "quad_unverified": unverified,
                "quad_adaptive": float(diag["adaptive"].float().mean()),
                "quad_check": float(self.quadrature()["check"]),
                "quad_exact": float(unverified == 0.0 and consistent)}

    def _diagnostics_for(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-point diagnostics of log_prob on x: from the last call when x is (a prefix of) its input
        at the same weights, else computed now."""
        last = getattr(self, "_last_marginal", None)
        if not (last is not None and last["key"] == self._fingerprint() and x.shape[0] <= last["x"].shape[0]
                and x.device == last["x"].device and torch.equal(x, last["x"][:x.shape[0]])):
            with torch.no_grad():
                self.log_prob(x)
            last = self._last_marginal
        return {k: last[k][:x.shape[0]] for k in ("log_p", "error", "verified", "adaptive")}

    # --- the marginal likelihood ------------------------------------------------------------------
    def quadrature(self) -> dict:
        """The global latent grid in use at the current weights: its sub-grid (stride), the decoder there
        (mu, log_sig, standardised units) and the convergence check (nats: above TOL_MEAN even the finest
        global grid is too coarse for the posteriors). Resolution on demand, in two steps: the coarsest
        sub-grid of the configured grid that a sub-grid of twice its spacing confirms
        (:meth:`LatentGrid.choose_stride`), or, where even the configured grid's finest fails, the first of
        its 2x, 4x, ... finer versions (up to FINE_NODES nodes) that passes; a narrow posterior (a small
        decoder sigma, IWAE training) so keeps the density heatmap exact where a finer grid resolves it.
        A live frame (:attr:`frame_is_live`) keeps to the configured grid: on 256^2 nodes the decoder pass,
        the check and an 80^2 heatmap cost 0.1-0.3 s where the frame's budget is a tenth of the run's time.
        The search starts at the last choice (the weights move little between frames) and moves back to a
        coarser grid when the finer one's half-resolution passes. Cached while the weights stay the same:
        a frame asks for it several times."""
        store = self._store()
        slot = "quad_live" if self.frame_is_live else "quad"
        if slot in store:
            return store[slot]
        grids = self._global_grids()
        finer = len(grids) > 1
        if self.frame_is_live:  # a live frame keeps to the configured grid: finer ones cost 0.1-0.3 s a frame
            grids = grids[:1]
        factors = [f for f, _ in grids]
        last_f, last_s = getattr(self, "_last_choice", (1, None))
        i = factors.index(last_f) if last_f in factors else 0
        seen = set()
        with torch.no_grad():
            while True:
                seen.add(i)
                factor, grid = grids[i]
                stride, check, ok = grid.choose_stride(lambda index, g=grid: self._decode_index(g, index),
                                                       self.ref, start=last_s if factor == last_f else 1)
                if ok and stride > 1 and i > 0 and i - 1 not in seen:
                    i -= 1  # twice the spacing suffices: the coarser global grid may do
                elif not ok and i + 1 < len(grids) and i + 1 not in seen:
                    i += 1
                else:
                    break
        self._last_choice = (factor, stride)
        sg = grid.subgrid(stride)
        mu, log_sig = self._decode_index(grid, sg.index)
        store[slot] = {"key": store["key"], "stride": stride, "factor": factor, "check": check, "grid": sg,
                       "lattice": grid, "nodes": grid.nodes[sg.index], "spacing": grid.h * stride, "mu": mu,
                       "log_sig": log_sig, "finer_at_rest": bool(not ok and self.frame_is_live and finer)}
        return store[slot]

    def _global_grids(self) -> list[tuple[int, LatentGrid]]:
        """(factor, grid): the configured grid, then its versions with 2, 4, ... times the nodes per axis, up
        to FINE_NODES nodes."""
        out = [(1, self.latent)]
        for factor in (2, 4, 8):
            if (factor * self.latent.per_axis) ** self.latent.dim > quad.FINE_NODES[self.latent.dim]:
                break
            out.append((factor, self._extra_grid(factor)))
        return out

    def _store(self) -> dict:
        """What is computed once per set of weights (the decoder on the global grids' nodes, the grid in
        use): cleared when the fingerprint changes."""
        key = self._fingerprint()
        store = getattr(self, "_per_weights", None)
        if store is None or store["key"] != key:
            store = self._per_weights = {"key": key, "full": {}, "decoded": {}}
        return store

    @torch.no_grad()
    def _decode_index(self, grid: LatentGrid, index: torch.Tensor, store: dict | None = None):
        """The decoder (mu, log_sig) at nodes `index` of `grid`, each node decoded at most once per set of
        weights (sub-grids share their nodes: a coarser sub-grid of a decoded one costs nothing)."""
        full = (store or self._store())["full"]
        if id(grid) not in full:
            n = grid.nodes.shape[0]
            full[id(grid)] = (grid.nodes.new_empty(n, 2), grid.nodes.new_empty(n, 2),
                              torch.zeros(n, dtype=torch.bool, device=grid.nodes.device))
        mu, log_sig, done = full[id(grid)]
        missing = index[~done[index]]
        if missing.numel():
            mu[missing], log_sig[missing] = self.decode(grid.nodes[missing])
            done[missing] = True
        return mu[index], log_sig[index]

    def _decoded(self, stride: int, offset: int | tuple = 0, grid: LatentGrid | None = None,
                 store: dict | None = None) -> tuple:
        """(SubGrid, nodes, mu, log_sig) of a sub-grid of the global grid (or of `grid`): cached at the
        current weights (`store`, :meth:`_store`) when gradients are off, decoded afresh (differentiable)
        when they are on."""
        grid = self.latent if grid is None else grid
        sg = grid.subgrid(stride, offset)
        nodes = grid.nodes[sg.index]
        if torch.is_grad_enabled():
            return (sg, nodes, *self.decode(nodes))
        store = store or self._store()
        key = (id(grid), stride, offset)
        if key not in store["decoded"]:
            store["decoded"][key] = (sg, nodes, *self._decode_index(grid, sg.index, store))
        return store["decoded"][key]

    def _levels(self, stride: int, factor: int = 1, store: dict | None = None) -> list:
        """The global grids a point is tried on, coarse to fine (see checked_log_marginal), from the one in
        use (:meth:`quadrature`: `stride` of the grid with `factor` times the configured nodes per axis):
        the finer sub-grids of the configured grid, then grids of 2, 4, ... times its nodes per axis (made
        when first needed) up to FINE_NODES nodes; each with two of its sub-grids of twice the spacing and
        its twin half a cell away. Sharing one decoder pass between all points, they are cheap where a
        posterior is just too narrow or has sharp edges, and they see every mode of a posterior."""

        def level(s: int, f: int = 1):
            grid = self.latent if f == 1 else self._extra_grid(f)
            coarse = ((self._decoded(2 * s, 0, grid, store), self._decoded(2 * s, (s, 0), grid, store))
                      if 2 * s in grid.strides else (None, None))
            twin = (self._decoded(s, s // 2, grid, store) if s > 1
                    else self._decoded(1, 0, self._extra_grid(f, True), store))
            return self._decoded(s, 0, grid, store), *coarse, twin

        levels = [(lambda s=s: level(s)) for s in self.latent.strides if s <= stride] if factor == 1 else []
        levels += [(lambda f=f: level(1, f)) for f, _ in self._global_grids()[1:] if f >= factor]
        return levels

    def _extra_grid(self, factor: int, twin: bool = False) -> LatentGrid:
        """A global grid with `factor` times the nodes per axis of the configured one, or its twin half a cell
        away (made when first needed, not saved)."""
        grids = self.__dict__.setdefault("_extra_grids", {})
        grid = grids.get((factor, twin))
        if grid is None or grid.nodes.device != self.latent.nodes.device:
            grid = LatentGrid(self.latent.dim, factor * self.latent.per_axis, shift=quad.SHIFT + 0.5 * twin)
            grids[(factor, twin)] = grid = grid.to(self.latent.nodes.device)
        return grid

    def _remote(self, stride: int, store: dict | None = None) -> tuple:
        """The global sub-grid (at most REMOTE_NODES nodes) that sums the latent space outside a point's own
        grid."""
        strides = self.latent.strides
        fits = [s for s in strides if s >= stride and self.latent.subgrid(s).size <= quad.REMOTE_NODES]
        return self._decoded(min(fits) if fits else max(strides), 0, None, store)

    @torch.no_grad()
    def _fingerprint(self) -> tuple:
        """Changes whenever the networks, the standardiser or the reference points change (fused Adam
        updates in place without bumping tensors' version counters, so the values are summed)."""
        enc, dec = self._nets()
        flat = torch.cat([p.reshape(-1) for p in (*dec.parameters(), *enc.parameters(),
                                                   self.std.scale, self.std.shift, self.ref)]).double()
        ramp = torch.linspace(1.0, 2.0, flat.shape[0], dtype=flat.dtype, device=flat.device)
        return float(flat.sum()), float((flat * ramp).sum()), flat.device.type

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log integral p(z) p(x|z) dz (notes 4.3.1) by quadrature, in data coordinates.

        Each point is checked (:func:`models.vae_quadrature.checked_log_marginal`): it gets the global
        latent grid's value where a grid of twice its spacing agrees within TOL_POINT nats, else adaptive
        quadrature around its own posterior; the per-point error estimates are kept for
        :meth:`quadrature_report`. A regular grid of points (the density heatmap) gets the global grid
        in use alone (:meth:`quadrature`: up to FINE_NODES nodes), one decoder pass shared by all points,
        which keeps live frames cheap: there it is an approximation where the quadrature check exceeds
        TOL_MEAN on even the finest global grid (the view says so). Differentiable when
        gradients are on."""
        q = self.quadrature()
        xs = self.std(x)
        if xs.shape[0] >= 4 * quad.BLOCK and regular_grid_axes(xs) is not None:
            mu, log_sig = q["mu"], q["log_sig"]
            if torch.is_grad_enabled():
                mu, log_sig = self.decode(q["nodes"])
            return log_marginal(xs, mu, log_sig, q["grid"]) + self.std.log_det()
        store = self._store()
        coarse = q["stride"] if q["factor"] == 1 else 1
        m = checked_log_marginal(xs, self._levels(coarse, q["factor"], store), self.encode, self.decode,
                                 self._remote(coarse, store))
        log_p = m.log_p + self.std.log_det()
        self._last_marginal = {"key": q["key"], "x": x.detach(), "log_p": log_p.detach(), "error": m.error,
                               "verified": m.verified, "adaptive": m.adaptive}
        return log_p

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
        dev = self.std.scale.device
        g = self.rng("view", dev)
        z = torch.randn(n, self.cfg.latent_dim, device=dev, generator=g)
        mu, log_sig = self.decode(z)
        return self.std.inverse(mu + torch.exp(log_sig) * torch.randn(mu.shape, device=dev, generator=g))

    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """Everything the VAE views draw (see playground/views/latent.py), as numpy."""
        from .vae_probe import probe_vae

        return probe_vae(self, points)


def kl_to_standard_normal(m: torch.Tensor, s: torch.Tensor, per_dim: bool = False) -> torch.Tensor:
    """KL(N(m, diag s^2) || N(0, I)) = 1/2 sum_d (m^2 + s^2 - 1 - 2 log s), per row (notes 4.5); with
    per_dim, the terms of the sum."""
    kl = 0.5 * (m ** 2 + s ** 2 - 1.0 - 2.0 * torch.log(s))
    return kl if per_dim else kl.sum(-1)
