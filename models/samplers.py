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
  min(1, p(x') q(x|x') / (p(x) q(x'|x))), which removes the discretisation bias for any ε and s.

With ``bounds`` (lo, hi) the target is truncated to that box, as the grid truncates an EBM's Z:
MH and MALA reject proposals outside it (exact for the truncated target), unadjusted Langevin
clips its moves to the box.

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


def mh_step(log_prob: LogProb, x: torch.Tensor, lp: torch.Tensor, proposal_std: float, bounds: Bounds = None):
    """One random-walk Metropolis–Hastings step for every chain (notes 7.3.1).

    Returns (x, lp, accepted) with accepted a bool tensor (n,)."""
    with torch.no_grad():
        prop = x + proposal_std * torch.randn_like(x)
        lp_prop = log_prob(prop)
        log_u = torch.log(torch.rand_like(lp).clamp_min(1e-30))
        # always when f(x') >= f(x), else with probability exp(f(x') - f(x)); never out of bounds
        accept = (log_u < (lp_prop - lp)) & _inside(prop, bounds)
        x = torch.where(accept[:, None], prop, x)
        lp = torch.where(accept, lp_prop, lp)
    return x, lp, accept


def langevin_step(log_prob: LogProb, x: torch.Tensor, lp: torch.Tensor, grad: torch.Tensor,
                  step_size: float, noise_scale: float = 1.0, mala: bool = False, bounds: Bounds = None):
    """One Langevin step x' = x + ε∇log p(x) + s√(2ε) z (notes 7.3.2), with the MALA accept/reject
    when ``mala``. Returns (x, lp, grad, accepted); without MALA every move is accepted."""
    eps, s = float(step_size), float(noise_scale)
    mean = x + eps * grad
    prop = mean + s * math.sqrt(2 * eps) * torch.randn_like(x)
    if bounds is not None and not mala:
        prop = torch.maximum(torch.minimum(prop, bounds[1]), bounds[0])
    lp_prop, grad_prop = log_prob_and_score(log_prob, prop)
    if not mala:
        return prop, lp_prop, grad_prop, torch.ones_like(lp_prop, dtype=torch.bool)
    var = 2 * eps * s * s
    back = x - (prop + eps * grad_prop)  # x under the reverse proposal q(x | x')
    fwd = prop - mean
    log_q_back = -(back ** 2).sum(1) / (2 * var)
    log_q_fwd = -(fwd ** 2).sum(1) / (2 * var)
    log_alpha = lp_prop - lp + log_q_back - log_q_fwd
    accept = (torch.log(torch.rand_like(lp).clamp_min(1e-30)) < log_alpha) & _inside(prop, bounds)
    a = accept[:, None]
    return (torch.where(a, prop, x), torch.where(accept, lp_prop, lp), torch.where(a, grad_prop, grad),
            accept)


@dataclass
class ChainRun:
    """The end of a run: final states, the acceptance rate (nan for unadjusted Langevin, which
    accepts everything) and, when asked, the path of the first ``record`` chains (steps+1, k, d)."""

    x: torch.Tensor
    accept_rate: float
    path: torch.Tensor | None = None


def run_chains(log_prob: LogProb, x: torch.Tensor, method: str = "langevin", n_steps: int = 10,
               step_size: float = 0.01, noise_scale: float = 1.0, proposal_std: float = 0.1,
               record: int = 0, bounds: Bounds = None) -> ChainRun:
    """Run all chains in ``x`` (n, d) for n_steps of `method` ("langevin", "mala" or "mh").

    Args:
        log_prob: log p up to a constant, (n, d) -> (n,).
        step_size: Langevin's ε (langevin, mala).
        noise_scale: s multiplying Langevin's noise (1 = the real Langevin dynamics).
        proposal_std: the random-walk proposal's σ (mh).
        record: keep the positions of the first `record` chains at every step.
        bounds: (lo, hi) tensors of shape (d,): truncate the target to this box.
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
            x, lp, acc = mh_step(log_prob, x, lp, proposal_std, bounds)
            n_acc, n_tot = n_acc + int(acc.sum()), n_tot + acc.numel()
            if record:
                path.append(x[:record].clone())
    else:
        lp, grad = log_prob_and_score(log_prob, x)
        for _ in range(int(n_steps)):
            x, lp, grad, acc = langevin_step(log_prob, x, lp, grad, step_size, noise_scale, method == "mala",
                                             bounds)
            n_acc, n_tot = n_acc + int(acc.sum()), n_tot + acc.numel()
            if record:
                path.append(x[:record].clone())
    rate = n_acc / n_tot if (n_tot and method != "langevin") else float("nan")
    return ChainRun(x.detach(), rate, torch.stack(path) if record else None)


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
    (models/targets.py) or a frozen copy of a learned f. Settings may change between calls.

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
        self.reference = self._grid_samples(2000, np.random.default_rng(seed))

    def _grid_samples(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Exact-up-to-discretisation samples of the target: grid cells drawn with probability ∝ p,
        then a uniform point in the cell (inverse-CDF sampling, fine in 2D). The chains' yardstick."""
        lp = self.grid_log_p.reshape(-1)
        p = np.exp(lp - lp.max())
        p /= p.sum()
        cells = rng.choice(len(p), size=n, p=p)
        iy, ix = np.divmod(cells, len(self.grid_x))
        hx, hy = self.grid_x[1] - self.grid_x[0], self.grid_y[1] - self.grid_y[0]
        jitter = rng.random((n, 2)) - 0.5
        pts = np.stack([self.grid_x[ix] + jitter[:, 0] * hx, self.grid_y[iy] + jitter[:, 1] * hy], 1)
        return pts.astype(np.float32)

    def configure(self, method: str, step_size: float, proposal_std: float, noise_scale: float = 1.0) -> None:
        if method != self.method:
            self.accepted = self.proposed = 0
        self.method, self.step_size = method, float(step_size)
        self.proposal_std, self.noise_scale = float(proposal_std), float(noise_scale)

    def advance(self, n_steps: int) -> None:
        k = self.tracker.k
        res = run_chains(self.log_prob, self.x, self.method, n_steps, self.step_size, self.noise_scale,
                         self.proposal_std, record=k, bounds=self.bounds)
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
