"""MCMC samplers for unnormalised densities p(x) ∝ exp(f(x)): Langevin, MALA and Metropolis–Hastings.

All chains run as one (n, d) tensor (one forward and one backward per step for all of them,
../shared/PERFORMANCE.md). ``log_prob`` is any differentiable function (n, d) -> (n,) that is
log p up to a constant — an EBM's f_θ (notes 7.2) or a target's −U(x).

* **Random-walk Metropolis–Hastings** (notes 7.3.1): propose x' = x + σ z and accept with
  probability min(1, exp(f(x') − f(x))). Needs no gradient, but moves slowly.
* **Langevin dynamics** (notes 7.3.2): x ← x + ε ∇ₓ log p(x) + √(2ε) z. Unadjusted (ULA), it is
  exact only as ε → 0. A ``noise_scale`` s ≠ 1 (x ← x + ε∇ + s√(2ε) z) is the common EBM-training
  shortcut: it samples a colder distribution, not p.
* **MALA** (Roberts & Tweedie 1996): the Langevin move used as a Metropolis–Hastings proposal
  q(x'|x) = N(x + ε∇log p(x), 2ε s² I), accepted with probability
  min(1, p(x') q(x|x') / (p(x) q(x'|x))), which removes the discretisation bias for any ε and s > 0.
  As s → 0 the proposal becomes deterministic, the reverse move impossible and log α = 0/0: MALA
  floors its noise scale at ``MALA_MIN_NOISE`` = 0.25 (still exact for p, since any s > 0 is; below
  it the acceptance from a uniform start falls under a few percent on the playground's targets at
  ε = 0.01, and the chains look frozen).

With ``bounds`` (lo, hi) the target is truncated to that box, as an EBM's grid truncates its Z.
One rule for every sampler: a move that would leave the box is rejected and the chain stays where
it is for that step. For MH and MALA this is the exact Metropolis–Hastings test of the truncated
target (its density is 0 outside); unadjusted Langevin applies the same rule (no point masses on the
faces, which clipping would create).

Randomness comes from an optional ``torch.Generator`` (the run's own), never from the global RNG
when one is given.

Split R-hat (Gelman et al. 2013, ch. 11.4) is the chain diagnostic: near 1 when every half-chain
has explored the same distribution, above ~1.1 when they disagree (not mixed yet).

References:
    Roberts & Tweedie (1996), Exponential convergence of Langevin distributions and their discrete
    approximations.
    Gelman et al. (2013), Bayesian Data Analysis, 3rd ed., section 11.4.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

METHODS = ("langevin", "mala", "mh")
MALA_MIN_NOISE = 0.25  # MALA's noise scale s is at least this: s = 0 makes q(x|x') = 0 and log α = 0/0
LogProb = Callable[[torch.Tensor], torch.Tensor]


def log_prob_and_score(log_prob: LogProb, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and the score ∇ₓ f(x) (notes 7.4: for an EBM the score is ∇ₓ f, log Z drops out).

    Works when called under inference_mode or no_grad (the views, the session's frames): the
    gradient with respect to x is taken in a local autograd scope; parameters get no .grad."""
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        lp = log_prob(xg)
        (grad,) = torch.autograd.grad(lp.sum(), xg)
    return lp.detach(), grad.detach()


Bounds = tuple[torch.Tensor, torch.Tensor] | None


def _inside(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    if bounds is None:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return ((x >= bounds[0]) & (x <= bounds[1])).all(1)


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _log_uniform(lp: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(lp.shape, generator=generator, device=lp.device, dtype=lp.dtype)
    return torch.log(u.clamp_min(1e-30))


def mh_step(log_prob: LogProb, x: torch.Tensor, lp: torch.Tensor, proposal_std: float, bounds: Bounds = None,
            generator: torch.Generator | None = None):
    """One random-walk Metropolis–Hastings step for every chain (notes 7.3.1).

    Returns (x, lp, accepted) with accepted a bool tensor (n,)."""
    with torch.no_grad():
        prop = x + proposal_std * _randn(x, generator)
        lp_prop = log_prob(prop)
        log_u = _log_uniform(lp, generator)
        # always when f(x') >= f(x), else with probability exp(f(x') - f(x)); never out of bounds
        accept = (log_u < (lp_prop - lp)) & _inside(prop, bounds)
        x = torch.where(accept[:, None], prop, x)
        lp = torch.where(accept, lp_prop, lp)
    return x, lp, accept


def langevin_step(log_prob: LogProb, x: torch.Tensor, lp: torch.Tensor, grad: torch.Tensor,
                  step_size: float, noise_scale: float = 1.0, mala: bool = False, bounds: Bounds = None,
                  generator: torch.Generator | None = None):
    """One Langevin step x' = x + ε∇log p(x) + s√(2ε) z (notes 7.3.2), with the MALA accept/reject
    when ``mala`` (s floored at MALA_MIN_NOISE there). A move out of ``bounds`` is rejected (the chain
    stays). Returns (x, lp, grad, accepted); unadjusted Langevin accepts every move inside the box."""
    eps, s = float(step_size), float(noise_scale)
    if mala:
        s = max(s, MALA_MIN_NOISE)
    mean = x + eps * grad
    prop = mean + s * math.sqrt(2 * eps) * _randn(x, generator)
    lp_prop, grad_prop = log_prob_and_score(log_prob, prop)
    inside = _inside(prop, bounds)
    if mala:
        var = 2 * eps * s * s
        back = x - (prop + eps * grad_prop)  # x under the reverse proposal q(x | x')
        fwd = prop - mean
        log_alpha = lp_prop - lp + ((fwd ** 2).sum(1) - (back ** 2).sum(1)) / (2 * var)
        accept = (_log_uniform(lp, generator) < log_alpha) & inside
    else:
        accept = inside
    a = accept[:, None]
    return (torch.where(a, prop, x), torch.where(accept, lp_prop, lp), torch.where(a, grad_prop, grad),
            accept)


@dataclass
class ChainRun:
    """The end of a run: final states, the acceptance rate (nan for unadjusted Langevin, which has
    no accept/reject test, only the box rule) and, when asked, the path of the first ``record``
    chains (steps+1, k, d)."""

    x: torch.Tensor
    accept_rate: float
    path: torch.Tensor | None = None


def run_chains(log_prob: LogProb, x: torch.Tensor, method: str = "langevin", n_steps: int = 10,
               step_size: float = 0.01, noise_scale: float = 1.0, proposal_std: float = 0.1,
               record: int = 0, bounds: Bounds = None, generator: torch.Generator | None = None) -> ChainRun:
    """Run all chains in ``x`` (n, d) for n_steps of `method` ("langevin", "mala" or "mh").

    Args:
        log_prob: log p up to a constant, (n, d) -> (n,).
        step_size: Langevin's ε (langevin, mala).
        noise_scale: s multiplying Langevin's noise (1 = the real Langevin dynamics; MALA uses at
            least MALA_MIN_NOISE).
        proposal_std: the random-walk proposal's σ (mh).
        record: keep the positions of the first `record` chains at every step.
        bounds: (lo, hi) tensors of shape (d,): truncate the target to this box (moves out of it
            are rejected, whatever the method).
        generator: the run's torch.Generator (None: the global one).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampler '{method}' (one of {', '.join(METHODS)})")
    x = x.detach()
    path = [x[:record].clone()] if record else None
    n_acc, n_tot = 0, 0
    if method == "mh":
        with torch.no_grad():
            lp = log_prob(x)
        for _ in range(int(n_steps)):
            x, lp, acc = mh_step(log_prob, x, lp, proposal_std, bounds, generator)
            n_acc, n_tot = n_acc + int(acc.sum()), n_tot + acc.numel()
            if record:
                path.append(x[:record].clone())
    else:
        lp, grad = log_prob_and_score(log_prob, x)
        for _ in range(int(n_steps)):
            x, lp, grad, acc = langevin_step(log_prob, x, lp, grad, step_size, noise_scale, method == "mala",
                                             bounds, generator)
            n_acc, n_tot = n_acc + int(acc.sum()), n_tot + acc.numel()
            if record:
                path.append(x[:record].clone())
    rate = n_acc / n_tot if (n_tot and method != "langevin") else float("nan")
    return ChainRun(x.detach(), rate, torch.stack(path) if record else None)


# --- exact samples of a 2D density from a grid ------------------------------------------------------

def _linear_icdf(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse CDF on [0, 1] of the density ∝ a(1 − t) + b t (a, b ≥ 0), at u in [0, 1):
    t = u(a + b) / (a + √(a²(1 − u) + u b²)), the root of (b − a)t²/2 + a t = u(a + b)/2 in a form
    that stays exact when a = b (t = u) or a = 0 (t = √u)."""
    den = a + torch.sqrt(a * a * (1 - u) + u * b * b)
    t = u * (a + b) / den.clamp_min(1e-300)
    return torch.where(a + b > 0, t, u).clamp(0.0, 1.0)


class GridDensity:
    """A 2D density p ∝ exp(log f) over a box, known on the nodes of a regular grid and read between
    them as the bilinear interpolant of exp(log f) (notes 7.2: in 2D the partition function is a sum).

    Z is the interpolant's exact integral, the trapezoid rule Σ_cells ΔA·(mean of the 4 corners);
    ``log_z_err`` is |log Z − log Z on every other node| (halving the grid: the finer sum's error is
    smaller than that for smooth f). :meth:`sample` draws exact samples of the normalised interpolant:
    a cell by inverse CDF over the cells' masses, then the point inside it from the bilinear density,
    the x-offset from its marginal and the y-offset from the conditional (two inverse CDFs of linear
    densities). No MCMC, no burn-in: the yardstick chains are measured against.

    Args:
        log_f: (ny + 1, nx + 1) log f on the nodes, row iy at y = lo[1] + iy·hy (y outer, as heatmaps).
        lo, hi: (2,) the box's corners.
    """

    def __init__(self, log_f: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
        self.lo, self.hi = lo.detach().double(), hi.detach().double()
        lf = log_f.detach().double()
        self.shape = (lf.shape[0] - 1, lf.shape[1] - 1)  # cells (ny, nx)
        self.h = (self.hi - self.lo) / torch.tensor([self.shape[1], self.shape[0]], dtype=torch.float64,
                                                    device=self.lo.device)
        # −inf is a weight of 0; +inf or NaN anywhere leave nothing to normalise
        self.finite = not bool((torch.isnan(lf) | (lf == math.inf)).any()) and bool((lf > -math.inf).any())
        self.shift = float(lf.max()) if self.finite else 0.0
        self.w = torch.exp(lf - self.shift) if self.finite else torch.zeros_like(lf)
        self.log_z = self._log_sum(self.w, float(self.h.prod())) if self.finite else float("nan")
        coarse = self._log_sum(self.w[::2, ::2], 4 * float(self.h.prod())) if self.finite else float("nan")
        self.log_z_err = abs(self.log_z - coarse) if all(s % 2 == 0 for s in self.shape) else float("nan")

    @classmethod
    def evaluate(cls, log_f, lo: torch.Tensor, hi: torch.Tensor, cells: int | tuple[int, int]) -> GridDensity:
        """log_f ((n, 2) -> (n,)) on the nodes of the box [lo, hi]: (cells + 1)² of them, or
        (ny + 1) x (nx + 1) for cells = (nx, ny)."""
        nx, ny = (cells, cells) if isinstance(cells, int) else cells
        xs = torch.linspace(float(lo[0]), float(hi[0]), nx + 1, device=lo.device)
        ys = torch.linspace(float(lo[1]), float(hi[1]), ny + 1, device=lo.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        with torch.no_grad():
            v = log_f(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
        return cls(v.reshape(ny + 1, nx + 1), lo, hi)

    @staticmethod
    def cells_for(lo: torch.Tensor, hi: torch.Tensor, total: int) -> tuple[int, int]:
        """(nx, ny), even, with nx·ny ≈ total and cells as square as the box allows (a long box gets
        more cells along its long side, not longer cells)."""
        side = (hi - lo).double().clamp_min(1e-12)
        ratio = float(side[0] / side[1])
        nx = 2 * max(1, round((total * ratio) ** 0.5 / 2))
        ny = 2 * max(1, round((total / ratio) ** 0.5 / 2))
        return nx, ny

    def _log_sum(self, w: torch.Tensor, area: float) -> float:
        cell = (w[:-1, :-1] + w[:-1, 1:] + w[1:, :-1] + w[1:, 1:]).sum() * (area / 4)
        return float(torch.log(cell)) + self.shift if cell > 0 else float("-inf")

    def cell_mass(self) -> torch.Tensor:
        """(ny, nx): each cell's probability under the normalised interpolant (sums to 1)."""
        w = self.w
        c = w[:-1, :-1] + w[:-1, 1:] + w[1:, :-1] + w[1:, 1:]
        return c / c.sum()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples (n, 2) float32 of the normalised interpolant; NaN when it is not finite."""
        dev = self.lo.device
        if not self.finite:
            return torch.full((n, 2), float("nan"), device=dev)
        ny, nx = self.shape
        idx = torch.multinomial(self.cell_mass().reshape(-1), n, replacement=True, generator=generator)
        iy, ix = idx // nx, idx % nx
        w = self.w
        w00, w10, w01, w11 = w[iy, ix], w[iy, ix + 1], w[iy + 1, ix], w[iy + 1, ix + 1]  # w[y, x]
        u = torch.rand(n, 2, generator=generator, device=dev, dtype=torch.float64)
        s = _linear_icdf(w00 + w01, w10 + w11, u[:, 0])
        t = _linear_icdf(w00 * (1 - s) + w10 * s, w01 * (1 - s) + w11 * s, u[:, 1])
        cell = torch.stack([ix + s, iy + t], 1)
        return (self.lo + cell * self.h).float()


@torch.no_grad()
def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2E|X−Y| − E|X−X'| − E|Y−Y'| with unbiased within-sample terms (Székely & Rizzo
    2013; the estimator of playground.metrics, here for models, which never import the playground)."""
    x, y = x.detach().float(), y.detach().float()  # distances in float32, sums in float64
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        return float("nan")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return float("inf")
    dxy = torch.cdist(x, y).double().mean()
    dxx = torch.cdist(x, x).double().sum() / (n * (n - 1))
    dyy = torch.cdist(y, y).double().sum() / (m * (m - 1))
    return float(2 * dxy - dxx - dyy)


def split_rhat(paths: np.ndarray) -> float:
    """Split R-hat of chains (T, m, d): each chain cut in two halves, the potential scale reduction
    sqrt(var⁺ / W) per coordinate (Gelman et al. 2013, eq. 11.3-11.4), the worst coordinate.
    nan when the chains are too short (fewer than 8 steps) or do not move at all."""
    paths = np.asarray(paths, np.float64)
    T = paths.shape[0]
    if T < 8 or paths.ndim != 3:
        return float("nan")
    n = T // 2
    halves = np.concatenate([paths[T - 2 * n:T - n], paths[T - n:]], 1)  # (n, 2m, d)
    means = halves.mean(0)
    w = halves.var(0, ddof=1).mean(0)
    b_over_n = means.var(0, ddof=1)
    var_plus = (n - 1) / n * w + b_over_n
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(var_plus / w)
    r = r[np.isfinite(r)]
    return float(r.max()) if r.size else float("nan")


class ChainTracker:
    """The recent path of a handful of chains, kept on the CPU as numpy for the views (polylines and
    heads) and for split R-hat. ``window`` positions per chain (a ring of the latest steps)."""

    def __init__(self, k: int = 8, window: int = 120):
        self.k, self.window = int(k), int(window)
        self.path = np.zeros((0, self.k, 2), np.float32)

    def reset(self) -> None:
        self.path = np.zeros((0, self.k, 2), np.float32)

    def add(self, steps: torch.Tensor | np.ndarray) -> None:
        """Append positions of shape (t, k, 2) (a ChainRun.path, in the coordinates to draw)."""
        arr = steps.detach().float().cpu().numpy() if isinstance(steps, torch.Tensor) else np.asarray(steps)
        if arr.shape[1:] != (self.k, 2):
            return
        self.path = np.concatenate([self.path, arr.astype(np.float32)], 0)[-self.window:]

    def rhat(self) -> float:
        return split_rhat(self.path)


class SamplerSandbox:
    """Chains on a fixed target, for the EBM tab's sandbox (no training): an analytic energy
    (playground/densities.py) or a frozen copy of a learned f. Settings may change between calls.

    Args:
        log_prob: the target's log-density up to a constant, (n, 2) -> (n,), differentiable.
        box: (xmin, xmax, ymin, ymax): where the chains start (uniformly) and what is drawn.
        n_chains: chains run as one tensor; the first `tracked` are animated.
    """

    def __init__(self, log_prob: LogProb, box, title: str, n_chains: int = 500, tracked: int = 8,
                 grid_res: int = 90, seed: int = 0):
        self.log_prob, self.box, self.title = log_prob, tuple(float(b) for b in box), title
        self.gen = torch.Generator().manual_seed(seed)
        lo = torch.tensor([self.box[0], self.box[2]])
        hi = torch.tensor([self.box[1], self.box[3]])
        self.x = lo + (hi - lo) * torch.rand(n_chains, 2, generator=self.gen)
        self.bounds = (lo, hi)  # the drawn box: a learned energy need not be integrable beyond it
        self.tracker = ChainTracker(tracked, window=400)
        self.tracker.add(self.x[None, :tracked])
        self.steps, self.accepted, self.proposed = 0, 0, 0
        self.method, self.step_size, self.noise_scale, self.proposal_std = "langevin", 0.01, 1.0, 0.3
        gx = np.linspace(self.box[0], self.box[1], grid_res, dtype=np.float32)
        gy = np.linspace(self.box[2], self.box[3], grid_res, dtype=np.float32)
        pts = torch.as_tensor(np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2))
        with torch.no_grad():
            self.grid_log_p = log_prob(pts).reshape(grid_res, grid_res).double().numpy()
        self.grid_x, self.grid_y = gx, gy
        grid = GridDensity(torch.as_tensor(self.grid_log_p), lo, hi)
        self.reference = grid.sample(2000, torch.Generator().manual_seed(seed + 1)).numpy()

    def configure(self, method: str, step_size: float, proposal_std: float, noise_scale: float = 1.0) -> None:
        if method != self.method:
            self.accepted = self.proposed = 0
        self.method, self.step_size = method, float(step_size)
        self.proposal_std, self.noise_scale = float(proposal_std), float(noise_scale)

    def advance(self, n_steps: int) -> None:
        k = self.tracker.k
        res = run_chains(self.log_prob, self.x, self.method, n_steps, self.step_size, self.noise_scale,
                         self.proposal_std, record=k, bounds=self.bounds, generator=self.gen)
        self.x = res.x
        self.tracker.add(res.path[1:])
        self.steps += int(n_steps)
        if self.method != "langevin":
            self.accepted += res.accept_rate * n_steps * len(self.x)
            self.proposed += n_steps * len(self.x)

    def state(self) -> dict:
        """Plain numpy and numbers for the view and the status line."""
        rate = self.accepted / self.proposed if self.proposed else float("nan")
        return {"title": self.title, "box": self.box, "method": self.method, "steps": self.steps,
                "x": self.x.numpy().astype(np.float32), "paths": self.tracker.path.copy(),
                "accept": rate, "rhat": self.tracker.rhat(), "grid_x": self.grid_x, "grid_y": self.grid_y,
                "log_p": self.grid_log_p.astype(np.float32), "reference": self.reference}
