"""The shared part of the diffusion family: a Gaussian path (paths.py), a time-conditioned network (net.py), and,
written once for every path, the probability-flow ODE, its exact log-likelihood and the samplers.

The models differ only in their path and in what the network predicts:

* ``ddpm`` and ``score_sde`` predict the noise, ε̂(x_t, t) ≈ E[ε | x_t] = −σ_t ∇log p_t(x_t) (Ho et al. 2020;
  Vincent 2011's denoising score matching, notes 7.4, conditioned on the noise level);
* ``flow_matching`` predicts the velocity v̂(x_t, t) ≈ E[ε − x_0 | x_t] (Lipman et al. 2023; Liu et al. 2023).

From either, E[x_0 | x_t] and E[ε | x_t] follow (x_t = α x̂_0 + σ ε̂), and with them the probability-flow ODE
(Song et al. 2021 eq. 13; for a general α, σ: the marginal of the conditional velocity α̇ x_0 + σ̇ ε)

    dx/dt = v(x, t) = α̇_t x̂_0(x, t) + σ̇_t ε̂(x, t),

which carries the prior N(0, prior_std² I) at t = 1 to the model's density at the data end t_data. The model is
therefore a continuous normalizing flow, and its log-likelihood is the change of variables in continuous form
(notes 5.1; Chen et al. 2018, the instantaneous change of variables):

    log p_data-end(x) = log N(x_1; 0, prior_std² I) + ∫_{t_data}^{1} tr ∂v/∂x (x_t, t) dt,

x_t solving the ODE from x at t_data up to t = 1. In 2D the trace is two entries of the exact Jacobian
(TimeMLP.with_jacobian), so the only error is the ODE solver's: classic Runge–Kutta (RK4) on ``ode_steps`` steps,
and :meth:`ode_error` says how far the held-out mean moves when the steps are halved. Everything is computed in
standardised coordinates z = (x − m)/s; the affine map's log|det| brings log p back to the data's own units.

Everything shown (density, samples, probe, held-out numbers) comes from a moving average of the network's weights
(``average``), as in every diffusion paper since Ho et al. (2020); training moves the raw network.

References:
    Ho, Jain & Abbeel (2020), Denoising diffusion probabilistic models.
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), Score-based generative modeling through SDEs.
    Song, Meng & Ermon (2021), Denoising diffusion implicit models.
    Lipman, Chen, Ben-Hamu, Nickel & Le (2023), Flow matching for generative modeling.
    Liu, Gong & Liu (2023), Flow straight and fast: learning to generate and transfer data with rectified flow.
    Karras, Aittala, Aila & Laine (2022), Elucidating the design space of diffusion-based generative models.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..base import BaseConfig, Model2D, RunGenerators, Standardizer, hp, update_average
from ..samplers import energy_distance
from .net import TimeMLP
from .paths import GaussianPath

AVERAGE_EVERY = 4  # steps between two updates of the weight average
N_LEVELS = 12  # noise levels the probe shows (the tab's t slider)
FIELD_RES = 17  # arrows of the field: a FIELD_RES x FIELD_RES grid
NOISED_RES = 48  # the noised data's density q_t on a NOISED_RES² grid
N_NOISED = 300  # noised training points shown per level
N_PATHS = 8  # reverse trajectories shown
MAX_PATH_STEPS = 50
PATHS_REFRESH = 0.5  # seconds a live frame repeats the last trajectories
LEVEL_BINS = 10  # the held-out loss per noise level, in LEVEL_BINS bins of t
QUALITY_STEPS = (1, 2, 4, 8, 16, 32, 64)  # sampler steps of the quality-vs-steps sweep
QUALITY_POINTS = 300  # samples per point of that sweep (its energy distance to held-out data)
SWEEP_EVERY = 5.0  # seconds between two sweeps (evaluations in between leave it out: the panel says its step)
LIVE_ODE_STEPS = 8  # RK4 steps of the density grid of a frame while training runs
REST_ODE_STEPS = 16  # ... and at rest (the held-out NLL always uses ode_steps)
EVAL_POINTS = 1000  # held-out points of an evaluation's loss per level
ODE_CHUNK = 1024  # points per pass of the likelihood ODE
ODE_CHECK_POINTS = 200  # held-out points of the ODE's error check (a systematic error: a few hundred points tell it)
VIEW_SEED = 12345  # the fixed noise of the probe's pictures (not the run's generators: the same every frame)


@dataclass
class DiffusionConfig(BaseConfig):
    hidden: int = hp(64, 16, 512, step=16, label="hidden units", help="width of the time-conditioned network")
    depth: int = hp(3, 1, 6, label="hidden layers", help="depth of the time-conditioned network")
    average: float = hp(0.995, 0.0, 0.9999, step=0.0001, label="weight averaging",
                        help="the density, samples and held-out numbers shown come from a moving average of the "
                             "network's weights (decay per step; 0: the trained weights)")
    ode_steps: int = hp(32, 4, 256, label="likelihood ODE steps", live=True,
                        help="RK4 steps of the probability-flow ODE for log p(x); the error shown compares with "
                             "half as many")


class DiffusionModel(Model2D):
    """A Gaussian path + a time-conditioned network; see the module docstring for the maths.

    Subclasses set :meth:`make_path`, ``prediction`` ("eps" or "velocity") and their samplers."""

    family = "diffusion"
    density = "quadrature"  # log p by the probability-flow ODE: a numerical integral in time, its error reported
    probe_kind = "diffusion"
    Config = DiffusionConfig
    prediction = "eps"
    samplers: tuple[str, ...] = ("ode",)  # what `sampler` offers (the quality sweep runs them all)
    stochastic: str | None = None  # the stochastic sampler the trajectories panel sets against the ODE
    frame_share = 0.3  # it trains to a picture in seconds; a frame (600 samples by up to 100 steps, the probe) costs
    # ~50 ms: 30% of the time keeps ~5 frames a second
    density_refresh = 1.5  # a live frame's density grid (an ODE per point, ~0.1 s) is redrawn at most once a second
    eval_share = 0.15  # the held-out NLL by the ODE is the tab's headline: evaluate it every few seconds
    live_nll_points = 500  # ... on 500 points while running (its standard error: a few hundredths of a nat)

    def __init__(self, cfg=None):
        super().__init__(cfg)
        c = self.cfg
        self.path: GaussianPath = self.make_path()
        self.net = TimeMLP(c.hidden, c.depth)
        self.net_avg = copy.deepcopy(self.net).requires_grad_(False) if c.average > 0 else None
        self.register_buffer("avg_updates", torch.zeros((), dtype=torch.long))
        self.standardizer = Standardizer()
        self._view_cache: tuple | None = None
        self._paths_cache: tuple[float, tuple, dict] | None = None
        self._last_sweep = -math.inf  # when metrics() last ran the quality sweep

    def make_path(self) -> GaussianPath:
        raise NotImplementedError

    # --- randomness and training -----------------------------------------------------------------------
    def rng(self, purpose: str, device=None) -> torch.Generator:
        return RunGenerators.rng(self, purpose, self.standardizer.shift.device if device is None else device)

    def init_from_data(self, x: torch.Tensor) -> None:
        self.standardizer.fit(x)
        self.reset_generators(x.device)

    def shown(self) -> TimeMLP:
        """The network everything shown uses: the weight average when averaging, else the trained one."""
        return self.net if self.net_avg is None else self.net_avg

    def train_times(self, n: int, gen: torch.Generator, device) -> torch.Tensor:
        """t ~ U(t_data, 1) for each point of a batch (continuous time, Kingma et al. 2021: one network for every
        noise level, so any sampler may use any number of steps)."""
        lo = self.path.t_data
        return lo + (1 - lo) * torch.rand(n, generator=gen, device=device)

    def target(self, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """What the network regresses on: ε (noise prediction) or ε − x_0 (velocity)."""
        return eps if self.prediction == "eps" else eps - x0

    def pair(self, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, ε) for a batch of standardised data: independent noise (reflow overrides it with coupled pairs)."""
        return z, torch.randn(z.shape, generator=gen, device=z.device)

    def per_point_loss(self, net, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """||net(x_t, t) − target||² per point (halved over the 2 coordinates: a mean)."""
        xt = self.path.noise(x0, t, eps)
        return (net(xt, t) - self.target(x0, eps)).pow(2).mean(1)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        gen = self.rng("train")
        x0, eps = self.pair(self.standardizer(x), gen)
        t = self.train_times(len(x0), gen, x0.device)
        return {"loss": self.per_point_loss(self.net, x0, eps, t).mean()}

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        out = super().step(x, optimizers)
        self.avg_updates += 1
        k = int(self.avg_updates)
        if self.net_avg is not None and k % AVERAGE_EVERY == 0:
            update_average(list(self.net_avg.parameters()), list(self.net.parameters()), self.cfg.average, k,
                           AVERAGE_EVERY)
        return out

    # --- the field ----------------------------------------------------------------------------------------
    def _t(self, t, z: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(z.shape[0])

    def predict(self, z: torch.Tensor, t: torch.Tensor, net=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂_0, ε̂) = (E[x_0 | x_t = z], E[ε | x_t = z]) from the network's output (standardised units)."""
        out = (net or self.shown())(z, t)
        a, s = self.path.alpha(t)[:, None], self.path.sigma(t)[:, None]
        if self.prediction == "eps":
            return (z - s * out) / a, out
        return z - s * out, z + a * out  # x = α x̂0 + σ ε̂ with v = ε̂ − x̂0 (α = 1 − t, σ = t)

    def velocity(self, z: torch.Tensor, t: torch.Tensor, net=None) -> torch.Tensor:
        """The probability-flow ODE's field dx/dt at (z, t) (see the module docstring)."""
        if self.prediction == "velocity":
            return (net or self.shown())(z, t)
        x0, eps = self.predict(z, t, net)
        return self.path.d_alpha(t)[:, None] * x0 + self.path.d_sigma(t)[:, None] * eps

    def velocity_and_divergence(self, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(v(z, t), tr ∂v/∂z) with the exact 2 x 2 Jacobian. For noise prediction v = (α̇/α) z + c ε̂ with
        c = σ̇ − α̇σ/α, so ∂v/∂z = (α̇/α) I + c ∂ε̂/∂z."""
        out, jac = self.shown().with_jacobian(z, t)
        tr = jac.diagonal(dim1=1, dim2=2).sum(1)
        if self.prediction == "velocity":
            return out, tr
        p = self.path
        a, s, da, ds = p.alpha(t), p.sigma(t), p.d_alpha(t), p.d_sigma(t)
        c = ds - da * s / a
        return (da / a)[:, None] * z + c[:, None] * out, 2 * da / a + c * tr

    def score(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """∇_z log p_t(z) = −ε̂/σ_t (Tweedie; Vincent 2011), standardised units."""
        return -self.predict(z, t)[1] / self.path.sigma(t)[:, None]

    # --- the same at one time t for every point (samplers, the ODE): the path's scalars as Python floats -------
    def _tvec(self, z: torch.Tensor, t: float) -> torch.Tensor:
        return torch.tensor(t, dtype=z.dtype, device=z.device)  # 0-d: one time for every point (TimeMLP)

    def predict_at(self, z: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` at one time t (a float) for every point."""
        a, s, _, _ = self.path.coeffs(t)
        out = self.shown()(z, self._tvec(z, t))
        if self.prediction == "eps":
            return (z - s * out) / a, out
        return z - s * out, z + a * out

    def velocity_at(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """:meth:`velocity` at one time t (a float)."""
        if self.prediction == "velocity":
            return self.shown()(z, self._tvec(z, t))
        _, _, da, ds = self.path.coeffs(t)
        x0, eps = self.predict_at(z, t)
        return da * x0 + ds * eps

    def score_at(self, z: torch.Tensor, t: float) -> torch.Tensor:
        return self.predict_at(z, t)[1] / -self.path.coeffs(t)[1]

    def velocity_and_divergence_at(self, z: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`velocity_and_divergence` at one time t (a float)."""
        out, jac = self.shown().with_jacobian(z, self._tvec(z, t))
        tr = jac.diagonal(dim1=1, dim2=2).sum(1)
        if self.prediction == "velocity":
            return out, tr
        a, s, da, ds = self.path.coeffs(t)
        c = ds - da * s / a
        return (da / a) * z + c * out, 2 * da / a + c * tr

    # --- likelihood -------------------------------------------------------------------------------------
    @torch.no_grad()
    def log_prob_z(self, z: torch.Tensor, steps: int) -> torch.Tensor:
        """log p(z) at the data end, standardised units: RK4 on the augmented ODE (z, ∫ tr ∂v/∂z dt) from t_data
        to 1 over the path's time grid, then the prior's log-density at the end (module docstring)."""
        times = self.path.times(steps).flip(0)  # t_data .. 1
        acc = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        f = self.velocity_and_divergence_at
        for t0, t1 in zip(times[:-1].tolist(), times[1:].tolist()):
            h, tm = t1 - t0, 0.5 * (t0 + t1)
            k1, d1 = f(z, t0)
            k2, d2 = f(z + 0.5 * h * k1, tm)
            k3, d3 = f(z + 0.5 * h * k2, tm)
            k4, d4 = f(z + h * k3, t1)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            acc = acc + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
        var = self.path.prior_std ** 2
        prior = -0.5 * (z.pow(2).sum(1) / var + 2 * math.log(2 * math.pi * var))
        return prior + acc

    def density_steps(self) -> int:
        """RK4 steps of a frame's density grid (grid_log_prob): ode_steps, but at most LIVE_ODE_STEPS in a frame while
        training runs and REST_ODE_STEPS at rest (a 100 x 100 grid at 32 steps costs ~2 s). The held-out numbers
        (log_prob) always get ode_steps."""
        return min(self.cfg.ode_steps, LIVE_ODE_STEPS if self.frame_is_live else REST_ODE_STEPS)

    def log_prob(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """log p(x) in the data's units: the ODE's log p(z) plus log|dz/dx| of the standardisation."""
        steps = self.cfg.ode_steps if steps is None else int(steps)
        z = self.standardizer(x)
        # in chunks: past a few thousand points the Jacobian pass's tensors outgrow the caches (10,000 points at
        # once cost 20x as much per point as 1,000 here)
        lp = torch.cat([self.log_prob_z(z[i:i + ODE_CHUNK], steps) for i in range(0, len(z), ODE_CHUNK)])
        return lp + self.standardizer.log_det()

    def grid_log_prob(self, grid: torch.Tensor) -> torch.Tensor:
        """The frame's density grid with density_steps() RK4 steps (the probe says how many)."""
        return self.log_prob(grid, self.density_steps())

    def ode_error(self, x: torch.Tensor) -> float:
        """|mean log p(x) with ode_steps − the same with half the steps| on (at most ODE_CHECK_POINTS of) x: how far
        the solver's error may move the held-out NLL (RK4's error falls 16-fold per halving once the steps resolve
        the field, so the full-step value's own error is usually far below this)."""
        x = x[:ODE_CHECK_POINTS]
        full = self.log_prob(x, self.cfg.ode_steps).double().mean()
        half = self.log_prob(x, max(2, self.cfg.ode_steps // 2)).double().mean()
        return float((full - half).abs())

    # --- samplers (standardised units; from t = 1 down to t_data) ---------------------------------------
    def sampler_times(self, sampler: str, steps: int) -> torch.Tensor:
        """The sampler's time grid: uniform in t for DDPM's ancestral sampler (Ho et al.) and DDIM (Song et al.'s
        linear subsequence: at 10-20 steps it beat the ODE's grid here, energy distance 0.013 vs 0.024 on 8 Gaussians,
        0.014 vs 0.031 on two moons at 10 steps), else the path's (Karras et al.'s, made for Heun)."""
        if sampler in ("ancestral", "ddim"):
            return torch.linspace(1.0, self.path.t_data, steps + 1, dtype=torch.float64)
        return self.path.times(steps)

    def sample_z(self, n: int, sampler: str, steps: int, gen: torch.Generator, keep_path: int = 0,
                 start: torch.Tensor | None = None):
        """n samples by `sampler` in `steps` steps from prior draws (or from `start`: unit normal draws, scaled to the
        prior here); with keep_path = k also the path of the first k, (steps+1, k, 2), and the times."""
        dev = self.standardizer.shift.device
        noise = torch.randn(n, 2, generator=gen, device=dev) if start is None else start
        z = self.path.prior_std * noise
        times = self.sampler_times(sampler, steps)
        kept = [z[:keep_path].clone()] if keep_path else None
        step = getattr(self, f"_step_{sampler}")
        with torch.no_grad():
            for i, (t0, t1) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
                z = step(z, t0, t1, gen, last=i == steps - 1)
                if kept is not None:
                    kept.append(z[:keep_path].clone())
        return z, (torch.stack(kept) if kept is not None else None), times

    def _step_euler(self, z, t0, t1, gen, last=False):
        return z + (t1 - t0) * self.velocity_at(z, t0)

    def _step_ode(self, z, t0, t1, gen, last=False):
        """Heun's method (Karras et al. 2022, Alg. 1, deterministic): an Euler step, corrected by the field there."""
        h = t1 - t0
        v0 = self.velocity_at(z, t0)
        return z + 0.5 * h * (v0 + self.velocity_at(z + h * v0, t1))

    _step_heun = _step_ode

    def _step_ddim(self, z, t0, t1, gen, last=False):
        """DDIM with η = 0 (Song, Meng & Ermon 2021, eq. 12): x_s = α_s x̂_0 + σ_s ε̂, deterministic."""
        x0, eps = self.predict_at(z, t0)
        a_s, s_s, _, _ = self.path.coeffs(t1)
        return a_s * x0 + s_s * eps

    def _step_ancestral(self, z, t0, t1, gen, last=False):
        """DDPM's ancestral step (Ho et al. 2020, Alg. 2; Kingma et al. 2021 eq. 33 for any α, σ): a draw from
        q(x_s | x_t, x_0 = x̂_0), whose mean blends x_t and x̂_0 and whose variance is σ²_{t|s} σ_s²/σ_t²."""
        a_t, s_t, _, _ = self.path.coeffs(t0)
        a_s, s_s, _, _ = self.path.coeffs(t1)
        x0, _ = self.predict_at(z, t0)
        a_ts = a_t / a_s
        var_ts = s_t ** 2 - a_ts ** 2 * s_s ** 2
        mean = (a_ts * s_s ** 2 / s_t ** 2) * z + (a_s * var_ts / s_t ** 2) * x0
        if last:
            return mean
        return mean + math.sqrt(var_ts * s_s ** 2 / s_t ** 2) * torch.randn(z.shape, generator=gen, device=z.device)

    def _step_sde(self, z, t0, t1, gen, last=False):
        """Euler–Maruyama on the reverse-time SDE dx = [f(x, t) − g² ∇log p_t(x)] dt + g dw̄ (Song et al. 2021
        eq. 6), f = (α̇/α) x, g² = dσ²/dt − 2(α̇/α)σ² (paths.GaussianPath.g2); the last step adds no noise."""
        a, s, da, ds = self.path.coeffs(t0)
        h = t1 - t0  # negative
        g2 = 2 * s * ds - 2 * da / a * s * s
        z = z + h * ((da / a) * z - g2 * self.score_at(z, t0))
        if last:
            return z
        return z + math.sqrt(g2 * -h) * torch.randn(z.shape, generator=gen, device=z.device)

    def _step_langevin(self, z, t0, t1, gen, last=False):
        """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) at the level σ_s of the step's end: K steps
        x ← x + (a/2) ∇log p_s(x) + √a ξ with a = ε σ_s² (their α_i = ε' σ_i²/σ_L²), then, at the last level,
        one denoising step x ← x + σ² ∇log p (Jolicoeur-Martineau et al. 2021; Tweedie's formula)."""
        sig = self.path.coeffs(t1)[1]
        a = self.cfg.langevin_eps * sig ** 2
        for _ in range(self.cfg.langevin_steps):
            z = z + 0.5 * a * self.score_at(z, t1) + math.sqrt(a) * torch.randn(z.shape, generator=gen, device=z.device)
        if last:
            z = z + sig ** 2 * self.score_at(z, t1)
        return z

    def nfe(self, sampler: str, steps: int) -> int:
        """Network evaluations a sampler spends on `steps` steps (the sweep's cost axis)."""
        per = {"ode": 2, "heun": 2, "langevin": getattr(self.cfg, "langevin_steps", 1)}.get(sampler, 1)
        return steps * per + (1 if sampler == "langevin" else 0)

    def sample_with(self, n: int, sampler: str, steps: int, gen: torch.Generator) -> torch.Tensor:
        return self.standardizer.inverse(self.sample_z(n, sampler, steps, gen)[0])

    def sample(self, n: int) -> torch.Tensor:
        return self.sample_with(n, self.cfg.sampler, self.sample_steps(), self.rng("view"))

    def sample_steps(self) -> int:
        return int(self.cfg.sample_steps)

    # --- held-out metrics -------------------------------------------------------------------------------
    @torch.no_grad()
    def level_losses(self, x: torch.Tensor) -> np.ndarray:
        """The held-out loss in LEVEL_BINS equal bins of t (fixed noise and times, the same every evaluation)."""
        gen = torch.Generator(device=x.device).manual_seed(VIEW_SEED)
        z = self.standardizer(x[:EVAL_POINTS])
        lo = self.path.t_data
        edges = torch.linspace(lo, 1.0, LEVEL_BINS + 1)
        out = []
        for b in range(LEVEL_BINS):
            u = torch.rand(len(z), generator=gen, device=z.device)
            t = (edges[b] + (edges[b + 1] - edges[b]) * u).to(z.dtype)
            eps = torch.randn(z.shape, generator=gen, device=z.device)
            out.append(float(self.per_point_loss(self.shown(), z, eps, t).mean()))
        return np.asarray(out)

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """The ODE's error on the held-out NLL (ode_err), the held-out loss per noise level (level_loss_k), and
        the quality-vs-steps sweep: energy distance to held-out data of QUALITY_POINTS samples from each sampler
        at each step count (q_<sampler>_<steps>), with fixed noise so the curve moves only with the model; the sweep
        is left out of an untrained model's metrics and of any within SWEEP_EVERY seconds of the last one."""
        x = x_test[:EVAL_POINTS]
        out = {"ode_err": self.ode_error(x)}
        out.update({f"level_loss_{i}": v for i, v in enumerate(self.level_losses(x))})
        if int(self.avg_updates) == 0:  # untrained (a run's first frame): its samples say nothing yet; skip the sweep
            return out
        if time.monotonic() - self._last_sweep < SWEEP_EVERY:  # a tenth of a second: not at every evaluation
            return out
        self._last_sweep = time.monotonic()
        for sampler in self.samplers:
            for steps in QUALITY_STEPS:
                gen = torch.Generator(device=x.device).manual_seed(VIEW_SEED + steps)
                s = self.sample_with(QUALITY_POINTS, sampler, steps, gen)
                out[f"q_{sampler}_{steps}"] = energy_distance(s, x)
        return out

    # --- what the tab shows -----------------------------------------------------------------------------
    field_label = "score ∇ₓ log p_t(x)"

    def field(self, z: torch.Tensor, t: float) -> torch.Tensor:
        """The arrows at (z, t), data units: the score (noise-predicting models), or −v, the direction a sample
        moves as t runs back to the data (flow matching)."""
        if self.prediction == "velocity":
            return -self.velocity_at(z, t) * self.standardizer.scale
        return self.score_at(z, t) / self.standardizer.scale

    def _noised(self, box: torch.Tensor, points: torch.Tensor, levels: np.ndarray) -> dict[str, np.ndarray]:
        """The forward process on the shown training points, at each level: noised copies x_t = α x_0 + σ ε with
        fixed ε, and the exact density of x_t given those points, q_t(x) = 1/n Σ_i N(z(x); α z_i, σ² I)·|dz/dx|
        (the kernel's σ floored at 0.03 standardised units at the data end, where it would be a spike per point).
        It depends on the data and the path only, so it is made once per run."""
        key = (box.tolist(), points.shape, float(points.sum()), self.standardizer.shift.tolist(),
               self.standardizer.scale.tolist(), tuple(levels.tolist()))
        if self._view_cache is not None and self._view_cache[0] == key:
            return self._view_cache[1]
        s = self.standardizer
        gen = torch.Generator(device=points.device).manual_seed(VIEW_SEED + 7)
        z0 = s(points)
        pick = z0[torch.randperm(len(z0), generator=gen, device=points.device)[:N_NOISED]]
        eps = torch.randn(pick.shape, generator=gen, device=points.device)
        xs = torch.linspace(float(box[0]), float(box[1]), NOISED_RES, device=points.device)
        ys = torch.linspace(float(box[2]), float(box[3]), NOISED_RES, device=points.device)
        gx, gy = torch.meshgrid(xs, ys, indexing="xy")
        zg = s(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
        dens, shown = [], []
        for t in levels.tolist():
            tt = torch.tensor([t], dtype=torch.float64)
            a, sig = float(self.path.alpha(tt)), float(self.path.sigma(tt))
            shown.append(s.inverse(a * pick + sig * eps))
            sd = max(sig, 0.03)
            d2 = torch.cdist(zg, a * z0).pow(2)
            lq = torch.logsumexp(-0.5 * d2 / sd ** 2, 1) - math.log(len(z0)) - math.log(2 * math.pi * sd ** 2)
            dens.append((lq + s.log_det()).reshape(NOISED_RES, NOISED_RES))
        out = {"noised_x": xs.cpu().numpy(), "noised_y": ys.cpu().numpy(),
               "noised_log_density": torch.stack(dens).float().cpu().numpy(),
               "noised_points": torch.stack(shown).float().cpu().numpy()}
        self._view_cache = (key, out)
        return out

    def _paths(self) -> dict[str, np.ndarray]:
        """N_PATHS reverse trajectories from the same prior draws: by the ODE and, where the model has one, by its
        stochastic sampler (fixed noise: the paths change only as the model does), data units. A live frame
        repeats the last ones for PATHS_REFRESH seconds (a hundred tiny network calls: a third of a frame)."""
        steps = min(self.sample_steps(), MAX_PATH_STEPS)
        key = (steps, self.cfg.sampler)
        last = self._paths_cache
        if self.frame_is_live and last is not None and last[1] == key and time.monotonic() - last[0] < PATHS_REFRESH:
            return last[2]
        det = "ddim" if "ddim" in self.samplers else ("heun" if "heun" in self.samplers else "ode")
        out = {}
        for name, sampler in (("ode_paths", det), ("sde_paths", self.stochastic)):
            if sampler is None:
                continue
            gen = torch.Generator(device=self.standardizer.shift.device).manual_seed(VIEW_SEED)
            z, kept, times = self.sample_z(N_PATHS, sampler, steps, gen, keep_path=N_PATHS)
            out[name] = self.standardizer.inverse(kept).float().cpu().numpy()
            out["sde_t" if name == "sde_paths" else "path_t"] = times.float().numpy()
        out["ode_label"], out["sde_label"] = SAMPLER_LABELS[det], SAMPLER_LABELS.get(self.stochastic or "", "")
        self._paths_cache = (time.monotonic(), key, out)
        return out

    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict:
        """The field at each of N_LEVELS noise levels on a FIELD_RES² grid of arrows, the forward process on the
        shown points (_noised), and the reverse trajectories (_paths). Reads the model, changes nothing."""
        lo, hi = grid.min(0).values, grid.max(0).values
        box = torch.stack([lo[0], hi[0], lo[1], hi[1]])
        axes = [torch.linspace(float(lo[i]), float(hi[i]), FIELD_RES + 2, device=grid.device)[1:-1] for i in range(2)]
        gx, gy = torch.meshgrid(axes[0], axes[1], indexing="xy")
        arrows = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        levels = self.path.level_times(N_LEVELS)
        za = self.standardizer(arrows)
        field = torch.stack([self.field(za, t) for t in levels.tolist()])
        tl = torch.as_tensor(levels)
        out = {"field_xy": arrows.cpu().numpy(), "field": field.float().cpu().numpy(),
               "field_label": self.field_label, "level_t": levels.astype(np.float32),
               "level_alpha": self.path.alpha(tl).float().numpy(), "level_sigma": self.path.sigma(tl).float().numpy(),
               "prediction": self.prediction, "path_name": self.path.name,
               "sampler": SAMPLER_LABELS.get(self.cfg.sampler, self.cfg.sampler), "sample_steps": self.sample_steps(),
               "langevin_steps": int(getattr(self.cfg, "langevin_steps", 1)), "ode_steps": int(self.cfg.ode_steps),
               "density_ode_steps": self.density_steps()}
        out.update(self._noised(box, points, levels))
        out.update(self._paths())
        return out


SAMPLER_LABELS = {"ancestral": "ancestral (DDPM)", "ddim": "DDIM (η = 0)", "ode": "probability-flow ODE (Heun)",
                  "sde": "reverse SDE (Euler–Maruyama)", "langevin": "annealed Langevin (NCSN)",
                  "euler": "ODE, Euler", "heun": "ODE, Heun"}
