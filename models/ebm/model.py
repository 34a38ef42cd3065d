"""Energy-based models p_θ(x) = exp(f_θ(x)) / Z(θ) (notes ch. 7), three ways to train them.

* ``ebm_cd`` — contrastive divergence (7.3) with negatives from short-run Langevin from noise,
  persistent chains with a replay buffer (Du & Mordatch 2019), MALA, or Metropolis–Hastings (7.3.1).
* ``ebm_sm`` — score matching (7.4): denoising (the default), sliced or exact; no sampling in training.
* ``ebm_nce`` — noise-contrastive estimation (7.5) against a Gaussian, with log Z learned.

f_θ is an MLP with a smooth activation (score matching needs second derivatives) on standardised
coordinates z = (x − m) / s, minus a fixed soft wall that is 0 on the data's box B (its range, +20%
each side), −50·d² at distance d outside it up to the support's edge (d = WALL_REACH, −21 nats), and
linear beyond (its slope there, 65 nats per unit): a held-out point far outside the data's range costs
nats in proportion to its distance, not its square (on banana, one of 20,000 held-out points, 11 units out,
cost 6,600 nats, a third of a nat of the mean NLL, under the quadratic wall alone).

**One box for everything** (the model's support): S = B widened by WALL_REACH = 0.65 standardised
units, where the wall is down by 21 nats, so the mass exp(f) leaves beyond S is below ~1e-9 of the
density at B's faces. On S, and only there:

* Z(θ) = ∫_S exp(f_θ) is a sum (notes 7.2: in 2D the partition function is tractable): the trapezoid
  rule on about Z_CELLS² near-square cells over S, i.e. the exact integral of exp(f)'s bilinear
  interpolant;
  ``log_z_err`` (|log Z − log Z on every other node|) says how far off that sum may be. ``log_prob``
  is the normalised log-density f_θ(z(x)) + log|dz/dx| − log Z in data coordinates, so the held-out
  NLL is an honest likelihood and the session's "∫p on grid" is the mass inside the *plot* box,
  which falls below 1 when S reaches beyond it.
* :meth:`sample` draws **exact** samples of that grid density (inverse CDF over cells, then the
  bilinear density inside the cell: :class:`models.samplers.GridDensity`): every sample metric
  (energy distance, MMD, modes, the Compare table) measures p_θ itself, not a Markov chain.
* The MCMC chains (training negatives, the display chains) are truncated to S the same way: a move
  that would leave S is rejected, by every sampler (models/samplers.py).

The model also keeps 1,000 persistent display chains, for what they teach: they move a few steps each
frame (:meth:`probe`), the first 8 are drawn as animated trajectories (split R-hat), and
``chain_energy_distance`` measures how far all of them are from exact samples of p_θ.

Randomness comes from the model's own generators, seeded from the run's seed (the session seeds
torch before building the model): one for training (negatives, noise), one for what is shown
(display chains, exact samples), so frames never change the training's random stream.

References:
    Du & Mordatch (2019), Implicit generation and generalization in energy-based models.
    Nijkamp, Hill, Zhu & Wu (2019), Learning non-convergent non-persistent short-run MCMC toward
    energy-based model.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..base import BaseConfig, Model2D, RunGenerators, Standardizer, hp, register, update_average
from ..nets import mlp
from ..samplers import (
    MALA_MIN_NOISE,
    METHODS,
    ChainTracker,
    GridDensity,
    energy_distance,
    log_prob_and_score,
    run_chains,
)
from . import losses as L

N_CHAINS = 1000  # persistent display chains
N_TRACKED = 8  # the first chains, whose paths are animated
BURN_IN = 300  # steps for chains that lagged far behind the energy (no frames: the command line)
STALE_AFTER = 200  # training steps without a frame after which the display chains catch up
CATCH_UP_EVERY, CATCH_UP_MAX = 10, 8  # ... by one sampler step per 10 training steps, at most 8 steps,
LONG_GAP = 2000  # ... unless f trained this long unseen (the command line): then a full BURN_IN
SCORE_RES = 17  # the score field's arrows: a SCORE_RES x SCORE_RES grid
WALL = 50.0  # steepness of the wall around the data's box (standardised units)
WALL_REACH = 0.65  # the support S is the data's box widened by this: the wall is −50·0.65² ≈ −21 nats there
Z_CELLS = 96  # Z's grid: about Z_CELLS² near-square cells over S (even counts: log_z_err halves it)
AVERAGE_EVERY = 8  # updates between two steps of the weight average (as the flows' and the VAE's)
N_COMPARED = 500  # display chains and exact samples compared by the energy distance (as the frames' own metric)


def wall(d: torch.Tensor) -> torch.Tensor:
    """The wall's height at distance d >= 0 outside the data's box B (standardised units): WALL·d² up to
    the support's edge d = WALL_REACH, then continued linearly with the same slope (C¹), so that points far
    outside every training point cost nats in proportion to their distance. Inside the support S (where Z
    is summed, samples drawn and every chain moves) it is the quadratic wall alone."""
    r = WALL_REACH
    return torch.where(d <= r, WALL * d ** 2, WALL * r * (2 * d - r))


@dataclass
class EnergyConfig(BaseConfig):
    renamed = {"layers": "depth", "act": "activation"}  # their names before the families agreed on them

    hidden: int = hp(64, 8, 256, step=8, label="hidden units", help="width of the energy network f_θ")
    depth: int = hp(2, 1, 4, label="hidden layers", help="depth of the energy network f_θ")
    activation: str = hp("silu", choices=("silu", "softplus", "tanh", "elu"), label="activation",
                         help="smooth, so ∇ₓf and the Hessian exist (ReLU would make tr ∇²f = 0)")
    sampler: str = hp("langevin", choices=METHODS, label="sampler", live=True,
                      help="langevin: x ← x + ε∇f + √(2ε)z; mala: the same with an MH accept/reject; "
                           "mh: random-walk Metropolis–Hastings (moves out of the support box are rejected)")
    step_size: float = hp(0.01, 1e-4, 0.5, log=True, live=True, label="Langevin step ε",
                          help="in standardised units (the data has unit variance)")
    noise_scale: float = hp(1.0, 0.0, 1.0, step=0.05, live=True, label="Langevin noise scale",
                            help="1 = real Langevin; smaller is the colder shortcut EBM papers use "
                                 f"(MALA: at least {MALA_MIN_NOISE}, still exact)")
    mh_scale: float = hp(0.3, 0.01, 2.0, step=0.01, live=True, label="MH proposal σ",
                         help="random-walk proposal x' = x + σz (standardised units)")
    chain_steps: int = hp(4, 1, 50, live=True, label="chain steps per frame",
                          help="how far the displayed chains move between two frames")
    average: float = hp(0.998, 0.0, 0.9999, step=0.0001, label="weight averaging",
                        help="the energy, its density, exact samples, display chains and held-out numbers shown come "
                             "from a moving average of the network's weights (decay per step; 0: the trained weights)")


class EnergyModel(Model2D):
    """The shared part: the energy network, standardisation, the support box and its partition
    function, exact samples, display chains, probe and metrics."""

    family = "ebm"
    density = "quadrature"  # log_prob is normalised by Z on the model's own grid over its support (log_z_err)
    probe_kind = "ebm"
    Config = EnergyConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        c = self.cfg
        self.net = mlp(2, 1, c.hidden, c.depth, c.activation)
        # the weight average that everything shown uses (cfg.average > 0); the training pass uses `net`
        self.net_avg = copy.deepcopy(self.net).requires_grad_(False) if c.average > 0 else None
        self._training_pass, self._avg_pairs = False, None
        self.register_buffer("avg_updates", torch.zeros((), dtype=torch.long))
        self.standardizer = Standardizer()
        self.register_buffer("lo", torch.full((2,), -2.5))  # the data's box B (z units)
        self.register_buffer("hi", torch.full((2,), 2.5))
        self._grid: tuple[tuple, GridDensity] | None = None
        self.register_buffer("chains", self._uniform(N_CHAINS, "view"))
        self.tracker = ChainTracker(N_TRACKED)
        self.chain_accept = float("nan")
        self._stale = 0

    # --- randomness ---------------------------------------------------------------------------
    def rng(self, purpose: str, device=None) -> torch.Generator:
        """The model's generator for `purpose` ("train" or "view"), on the model's device."""
        return RunGenerators.rng(self, purpose, self.lo.device if device is None else device)

    # --- the energy and its normalisation ----------------------------------------------------------
    def f(self, z: torch.Tensor) -> torch.Tensor:
        """f_θ(z) on standardised points, shape (n,): the network minus a fixed wall that is 0 on
        the data's box B and grows as 50·d² outside it (linearly beyond the support: :func:`wall`). No
        method here controls the network where no data, negative or noise ever goes; the wall keeps that
        region's mass out of Z."""
        over = torch.relu(self.lo - z) + torch.relu(z - self.hi)
        return self.energy_net()(z).squeeze(-1) - wall(over).sum(-1)

    def energy_net(self) -> nn.Module:
        """The network f_θ uses: the trained one in a training pass (:meth:`training_pass`: the loss, its
        negatives and noise), else the shown one, its weight average where averaging."""
        return self.net if self._training_pass or self.net_avg is None else self.net_avg

    @contextlib.contextmanager
    def training_pass(self):
        """Within it, f_θ is the trained network (the objective's gradients reach it)."""
        self._training_pass = True
        try:
            yield
        finally:
            self._training_pass = False

    def average_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(averaged, trained) tensors of the weight average."""
        return list(self.net_avg.parameters()), list(self.net.parameters())

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        """One update of the trained network (:meth:`loss`), then every AVERAGE_EVERY updates the average
        follows it (models.base.update_average, as the flows' and the VAE's)."""
        out = super().step(x, optimizers)
        self.after_update()
        return out

    @torch.no_grad()
    def after_update(self) -> None:
        """Count an update of the trained network; every AVERAGE_EVERY, move the weight average."""
        self.avg_updates += 1
        t = int(self.avg_updates)
        if self.net_avg is not None and t % AVERAGE_EVERY == 0:
            if self._avg_pairs is None:
                self._avg_pairs = self.average_pairs()
            update_average(*self._avg_pairs, self.cfg.average, t, AVERAGE_EVERY)

    def support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The support box S = B widened by WALL_REACH (z units): where Z is summed, exact samples
        are drawn and every MCMC chain stays."""
        return self.lo - WALL_REACH, self.hi + WALL_REACH

    def _state_vector(self) -> torch.Tensor:
        """Every number f_θ and the support depend on, flat: the grid's cache key (compared exactly; a
        version counter would not do, fused Adam updates parameters without bumping it)."""
        ts = [*self.energy_net().parameters(), self.lo, self.hi, self.standardizer.shift, self.standardizer.scale]
        return torch.cat([t.detach().reshape(-1) for t in ts])

    def grid_density(self) -> GridDensity:
        """exp(f_θ) on the nodes of about Z_CELLS² near-square cells of S (z units), recomputed only when
        a parameter or the box changed (one grid per frame while training, however often log_prob is
        called)."""
        key = self._state_vector()
        if self._grid is None or self._grid[0].shape != key.shape or not torch.equal(self._grid[0], key):
            lo, hi = self.support()
            cells = GridDensity.cells_for(lo, hi, Z_CELLS ** 2)
            self._grid = (key.clone(), GridDensity.evaluate(self.f, lo, hi, cells))
        return self._grid[1]

    def log_partition(self) -> float:
        """log Z(θ) = log ∫_S exp(f_θ(z)) dz by the trapezoid rule (equal to ∫ exp(f + log|dz/dx|) dx:
        the same number in data coordinates)."""
        return self.grid_density().log_z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised log-density log p_θ(x) = f_θ(z(x)) + log|dz/dx| − log Z(θ) (data units).
        log Z carries no gradient (the score ∇ₓ log p = ∇ₓ f is unchanged)."""
        return self.f(self.standardizer(x)) + self.standardizer.log_det() - self.log_partition()

    def _uniform(self, n: int, purpose: str = "train") -> torch.Tensor:
        """The chains' initial distribution π: uniform over the data's box B (standardised units)."""
        u = torch.rand(n, 2, device=self.lo.device, generator=self.rng(purpose))
        return self.lo + (self.hi - self.lo) * u

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.standardizer.fit(x)
        z = self.standardizer(x)
        lo, hi = z.min(0).values, z.max(0).values
        pad = 0.2 * (hi - lo)
        self.lo.copy_(lo - pad)
        self.hi.copy_(hi + pad)
        self.reset_generators(self.lo.device)
        self.chains.copy_(self._uniform(N_CHAINS, "view"))
        self.tracker.reset()

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._stale += 1
        with self.training_pass():
            return self.objective(self.standardizer(x))

    def objective(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n exact samples of p_θ (data units): the grid density of :meth:`grid_density` sampled by
        inverse CDF (no Markov chain, no burn-in). NaN when f is not finite on the grid."""
        z = self.grid_density().sample(n, self.rng("view")).to(self.lo.dtype)
        return self.standardizer.inverse(z)

    def run(self, z: torch.Tensor, n_steps: int, record: int = 0, purpose: str = "train"):
        """The configured sampler on f_θ from z (standardised units), truncated to the support S (a
        move out of S is rejected), with the model's `purpose` generator."""
        c = self.cfg
        return run_chains(self.f, z, c.sampler, n_steps, c.step_size, c.noise_scale, c.mh_scale, record,
                          bounds=self.support(), generator=self.rng(purpose))

    def catch_up(self) -> None:
        """The display chains sat still while f changed (steps without a frame): a few sampler steps
        (one per 10 training steps, at most 8, so a fast model's frames stay cheap), or a full BURN_IN
        after a long run unseen (the command line)."""
        if self._stale <= STALE_AFTER:
            return
        catch_up = BURN_IN if self._stale > LONG_GAP else min(CATCH_UP_MAX, self._stale // CATCH_UP_EVERY)
        res = self.run(self.chains, catch_up, record=N_TRACKED, purpose="view")
        self.chains.copy_(res.x)
        self.chain_accept = res.accept_rate
        if catch_up == BURN_IN:  # re-equilibrated: the old trails no longer mean anything
            self.tracker.reset()
            self.tracker.add(self.standardizer.inverse(res.path[BURN_IN // 2:]))
        else:
            first = 0 if len(self.tracker.path) == 0 else 1
            self.tracker.add(self.standardizer.inverse(res.path[first:]))
        self._stale = 0

    def advance_display(self) -> None:
        """Each frame (the session calls it): the display chains move `chain_steps` steps."""
        self.advance_chains(self.cfg.chain_steps)

    def advance_chains(self, n_steps: int) -> None:
        """Move the display chains (after catching up); the first N_TRACKED record their path (in data
        units)."""
        self.catch_up()
        self._stale = 0
        res = self.run(self.chains, n_steps, record=N_TRACKED, purpose="view")
        self.chains.copy_(res.x)
        self.chain_accept = res.accept_rate
        first = 0 if len(self.tracker.path) == 0 else 1
        self.tracker.add(self.standardizer.inverse(res.path[first:]))

    # --- what the views show ------------------------------------------------------------------
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """The score field ∇ₓ log p on a coarse grid, the tracked display chains' recent paths (data units;
        advance_display moved them for this frame) and the model's own extras (negatives, noise...). The energy
        −f_θ on the grid is not repeated here: it is −(the session's log-density + log Z)."""
        lo, hi = grid.min(0).values, grid.max(0).values
        axes = [torch.linspace(float(lo[i]), float(hi[i]), SCORE_RES + 2, device=grid.device)[1:-1]
                for i in range(2)]
        gx, gy = torch.meshgrid(axes[0], axes[1], indexing="xy")
        coarse = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        _, score = log_prob_and_score(self.log_prob, coarse)
        out = {"score_xy": coarse.cpu().numpy(), "score": score.float().cpu().numpy(),
               "chains": self.tracker.path.copy()}
        out.update(self.extras())
        return out

    def extras(self) -> dict[str, np.ndarray]:
        return {}

    @torch.no_grad()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """log Z on the support's grid and its error estimate; E[f] on held-out data and on the chains
        (f in data units, as log_prob + log Z, so that E_data[f] − log Z is the held-out
        log-likelihood); how far the display chains are from exact samples of p_θ (energy distance,
        data units); the chains' acceptance rate (MALA, MH) and split R-hat over the animated chains.
        Chains that never ran (no frame yet: the command line, Compare) first take a full BURN_IN."""
        if len(self.tracker.path) == 0:
            self._stale = max(self._stale, LONG_GAP + 1)
        self.catch_up()
        grid = self.grid_density()
        ld = float(self.standardizer.log_det())
        s = self.standardizer
        exact = s.inverse(grid.sample(N_COMPARED, self.rng("view")).to(self.lo.dtype))
        out = {"log_z_grid": grid.log_z, "log_z_err": grid.log_z_err,
               "f_data": float(self.f(s(x_test)).mean()) + ld,
               "f_samples": float(self.f(self.chains).mean()) + ld,
               "chain_energy_distance": energy_distance(s.inverse(self.chains[:N_COMPARED]), exact),
               "rhat": self.tracker.rhat()}
        if self.cfg.sampler != "langevin":
            out["chain_accept"] = self.chain_accept
        return out


# --- contrastive divergence ------------------------------------------------------------------------

@dataclass
class CDConfig(EnergyConfig):
    n_steps: int = hp(20, 1, 200, live=True, label="sampler steps per update K",
                      help="MCMC steps that make each batch of negatives")
    persistent: bool = hp(True, label="persistent chains (replay buffer)", live=True,
                          help="off: every batch of negatives starts from uniform noise (short-run)")
    buffer_size: int = hp(10000, 256, 100000, step=256, label="replay buffer size",
                          help="past negatives kept to restart the chains from")
    reinit: float = hp(0.05, 0.0, 1.0, step=0.01, live=True, label="reinitialisation rate",
                       help="share of each batch restarted from noise instead of the buffer")
    reg: float = hp(0.1, 0.0, 10.0, step=0.01, live=True, label="energy penalty α",
                    help="α(f(x⁺)² + f(x⁻)²) keeps f near 0 (Du & Mordatch 2019)")


@register
class ContrastiveDivergenceEBM(EnergyModel):
    """Contrastive divergence (notes 7.3): ∇θ log p(x) = ∇θ f(x_train) − E_{p_θ}[∇θ f(x_sample)],
    the expectation by MCMC: Langevin (7.3.2), MALA or Metropolis–Hastings (7.3.1), from noise or
    from a replay buffer of persistent chains."""

    key = "ebm_cd"
    in_compare = True  # a representative of its family in a comparison
    title = "EBM: contrastive divergence"
    Config = CDConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.register_buffer("buffer", self._uniform(self.cfg.buffer_size))
        self._negatives = torch.zeros(0, 2)
        self.train_accept = float("nan")

    def init_from_data(self, x: torch.Tensor) -> None:
        super().init_from_data(x)
        self.buffer.copy_(self._uniform(self.cfg.buffer_size))

    def negatives(self, n: int) -> torch.Tensor:
        """n samples of p_θ by the configured MCMC: from the replay buffer (a share restarted from
        noise) when persistent, else from uniform noise."""
        c = self.cfg
        if not c.persistent:
            start, idx = self._uniform(n), None
        else:
            g = self.rng("train")
            idx = torch.randint(0, self.buffer.shape[0], (n,), device=self.buffer.device, generator=g)
            start = self.buffer[idx]
            fresh = torch.rand(n, device=start.device, generator=g) < c.reinit
            start = torch.where(fresh[:, None], self._uniform(n), start)
        res = self.run(start, c.n_steps)
        if idx is not None:
            self.buffer[idx] = res.x
        self.train_accept = res.accept_rate
        self._negatives = res.x[:500].detach()
        return res.x

    def objective(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        neg = self.negatives(z.shape[0])
        f_pos, f_neg = self.f(z), self.f(neg)
        cd = L.contrastive_divergence(f_pos, f_neg)
        penalty = self.cfg.reg * (f_pos ** 2 + f_neg ** 2).mean()
        ld = self.standardizer.log_det()  # f in data units, as in metrics()
        out = {"loss": cd + penalty, "cd": cd.detach(), "f_pos": f_pos.mean().detach() + ld,
               "f_neg": f_neg.mean().detach() + ld}
        if self.cfg.sampler != "langevin":
            out["accept"] = torch.tensor(self.train_accept)
        return out

    def extras(self) -> dict[str, np.ndarray]:
        with torch.no_grad():
            neg = self.standardizer.inverse(self._negatives.to(self.lo.device))
        return {"negatives": neg.float().cpu().numpy()}


# --- score matching ------------------------------------------------------------------------------

@dataclass
class SMConfig(EnergyConfig):
    objective: str = hp("denoising", choices=("denoising", "sliced", "exact"), label="objective", live=True,
                        help="denoising: the score of data blurred by σ (fits; the default); exact: Hessian trace "
                             "(2 backward passes in 2D; overfits the training points); sliced: random projections")
    projections: int = hp(1, 1, 8, label="projections (sliced)", help="random directions v per point")
    sigma: float = hp(0.1, 0.01, 1.0, step=0.01, label="noise σ (denoising)",
                      help="blur of the data, standardised units (the model learns the blurred density)")


@register
class ScoreMatchingEBM(EnergyModel):
    """Score matching (notes 7.4): minimise the Fisher divergence ½E‖∇ₓlog p_data − ∇ₓf_θ‖², which
    integration by parts turns into E[½‖∇ₓf‖² + tr ∇²ₓf] — no partition function, no sampling.

    The default objective is denoising (Vincent 2011, σ = 0.1 standardised units): held-out NLL at
    3,000 steps (seeds 0-2) 2.37-2.53 nats on 8 Gaussians (truth 2.13) and 1.82-1.83 on banana (truth
    1.77). The exact objective, kept as a choice because its failure teaches, drives E[tr ∇²f] down by
    peaking f on the training points: 4.8-7.4 nats on 8 Gaussians (1.79-1.82 on banana); sliced has
    the same optimum and fails the same way (4.7-7.7)."""

    key = "ebm_sm"
    title = "EBM: score matching"
    Config = SMConfig
    def __init__(self, cfg=None):
        super().__init__(cfg)
        # the network's last bias is a constant added to f: it has no score, hence no gradient (7.4)
        self.grad_exempt = (f"net.{len(self.net) - 1}.bias",)

    def objective(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.cfg
        if c.objective == "exact":
            loss = L.exact_score_matching(self.f, z)
        elif c.objective == "sliced":
            loss = L.sliced_score_matching(self.f, z, c.projections, generator=self.rng("train"))
        else:
            loss = L.denoising_score_matching(self.f, z, c.sigma, generator=self.rng("train"))
        return {"loss": loss}


# --- noise-contrastive estimation ------------------------------------------------------------------

@dataclass
class NCEConfig(EnergyConfig):
    noise_std: float = hp(1.5, 0.3, 5.0, step=0.05, label="noise σ", live=True,
                          help="p_n = N(mean, σ²·var) of the data (standardised: N(0, σ²I))")
    noise_ratio: int = hp(1, 1, 16, label="noise samples per data point ν",
                          help="ν = 1 in the notes; more noise gives a lower-variance estimate")


@register
class NoiseContrastiveEBM(EnergyModel):
    """Noise-contrastive estimation (notes 7.5): a classifier D = exp(f)/(exp(f) + ν Z p_n) tells data
    from Gaussian noise; log Z is a free parameter that becomes the partition function."""

    key = "ebm_nce"
    in_compare = True  # a representative of its family in a comparison
    title = "EBM: noise-contrastive estimation"
    Config = NCEConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.log_z = nn.Parameter(torch.zeros(()))
        self.register_buffer("log_z_avg", torch.zeros(()))  # log Z's share of the weight average

    def average_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        shown, trained = super().average_pairs()
        return shown + [self.log_z_avg], trained + [self.log_z]

    def objective(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.cfg
        noise = c.noise_std * torch.randn(c.noise_ratio * z.shape[0], 2, device=z.device, dtype=z.dtype,
                                          generator=self.rng("train"))
        loss = L.nce_loss(self.f(z), self.f(noise), L.gaussian_log_prob(z, c.noise_std),
                          L.gaussian_log_prob(noise, c.noise_std), self.log_z, c.noise_ratio)
        return {"loss": loss, "log_z": self.log_z.detach()}

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        out = super().metrics(x_test)
        log_z = self.log_z if self.net_avg is None else self.log_z_avg  # the shown model's, as log_z_grid is
        out["log_z_nce"] = float(log_z.detach())  # comparable with the session's log_z_grid
        return out

    def extras(self) -> dict[str, np.ndarray]:
        s = self.standardizer
        std = (self.cfg.noise_std * s.scale).detach().cpu().numpy()
        return {"noise_mean": s.shift.detach().cpu().numpy(), "noise_cov": np.diag(std ** 2).astype(np.float32)}
