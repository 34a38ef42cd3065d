"""Metrics shared by every family: likelihoods, grid normalisation and sample distances.

* Average negative log-likelihood in nats (notes 3.2.2): -1/|D| sum_x log p(x).
* Grid normalisation (notes 7.2): in 2D the partition function Z = integral of exp(f(x)) dx is a
  sum over a fine grid, log Z ~= logsumexp(f(grid)) + log(cell area), so an energy-based model's
  held-out NLL can be reported like any other model's.
* Sample distances between model samples and held-out data (notes 6.2, two-sample tests):
  the squared MMD with a sum of RBF kernels, and the energy distance. Both are zero when the two
  samples come from one distribution and grow as they differ; neither needs a density.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def as_tensor(x, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device) if device is not None else x
    return torch.as_tensor(np.asarray(x, np.float32), device=device)


@torch.inference_mode()
def batched(fn, x: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """fn over x in chunks (a 200x200 grid in one call can be too much memory for big nets)."""
    if x.shape[0] <= chunk:
        return fn(x)
    return torch.cat([fn(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])


def mean_nll(log_prob: torch.Tensor) -> float:
    """Average negative log-likelihood in nats; inf if any point has zero density."""
    v = -log_prob.double().mean().item()
    return v if math.isfinite(v) else float("inf")


# --- grids ---------------------------------------------------------------------------------------

def make_grid(box, res: int = 100):
    """A res x res grid over box = (xmin, xmax, ymin, ymax): axes xs, ys and points (res*res, 2)
    ordered row by row (y outer), so values.reshape(res, res) is indexed [iy, ix] as a heatmap."""
    xs = np.linspace(box[0], box[1], res, dtype=np.float32)
    ys = np.linspace(box[2], box[3], res, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    return xs, ys, pts


def cell_area(xs: np.ndarray, ys: np.ndarray) -> float:
    return float((xs[1] - xs[0]) * (ys[1] - ys[0]))


def grid_log_normalizer(log_unnorm: torch.Tensor | np.ndarray, area: float) -> float:
    """log Z ~= log sum_cells exp(f) * area: the partition function as a Riemann sum (notes 7.2)."""
    t = torch.as_tensor(log_unnorm).double().reshape(-1)
    return float(torch.logsumexp(t, 0) + math.log(area))


def grid_mass(log_density: np.ndarray | torch.Tensor, area: float) -> float:
    """How much probability a normalised density puts on the grid (should be ~1 inside the box)."""
    return math.exp(grid_log_normalizer(log_density, area))


# --- sample distances ------------------------------------------------------------------------------

def _subsample(x: torch.Tensor, n: int, gen: torch.Generator | None) -> torch.Tensor:
    if x.shape[0] <= n:
        return x
    idx = torch.randperm(x.shape[0], generator=gen)[:n].to(x.device)
    return x[idx]


def _float64(x) -> torch.Tensor:
    """numpy or torch points as a float64 CPU tensor (numpy float64 keeps its digits)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, np.float64))


@torch.inference_mode()
def _pooled(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x and y (float64) stacked, centred on their pooled mean: both distances are translation
    invariant, and cdist's |a|² + |b|² − 2ab form loses every digit in float32 for data far from the
    origin (spread 0.02 around (1000, 1000): |a|² ≈ 2e6 against differences of 4e-4)."""
    z = torch.cat([x, y])
    return z - z.mean(0)


def mmd2(x, y, scales=(0.2, 0.5, 1.0, 2.0), max_n: int = 1000, seed: int = 0) -> float:
    """Unbiased squared MMD with a sum of RBF kernels exp(-|a-b|^2 / (2 s^2)) over `scales`
    (Gretton et al. 2012). Points are subsampled to max_n each; inputs may be numpy or torch."""
    gen = torch.Generator().manual_seed(seed)
    x = _subsample(_float64(x), max_n, gen)
    y = _subsample(_float64(y), max_n, gen)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        return float("nan")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return float("inf")
    z = _pooled(x, y)
    d2 = torch.cdist(z, z).pow_(2)
    k = torch.zeros_like(d2)
    for s in scales:
        k += torch.exp(d2 * (-0.5 / (s * s)))
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


@torch.inference_mode()
def energy_distance(x, y, max_n: int = 1000, seed: int = 0) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (Székely & Rizzo 2013): zero iff the two laws
    are equal. The within-sample terms are U-statistics (unbiased), so on two samples of one law
    the estimate scatters around 0 and can be slightly negative."""
    gen = torch.Generator().manual_seed(seed)
    x = _subsample(_float64(x), max_n, gen)
    y = _subsample(_float64(y), max_n, gen)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        return float("nan")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return float("inf")
    z = _pooled(x, y)
    d = torch.cdist(z, z)
    dxy = d[:n, n:].mean()
    dxx = d[:n, :n].sum() / (n * (n - 1))
    dyy = d[n:, n:].sum() / (m * (m - 1))
    return float(2 * dxy - dxx - dyy)


# --- mixtures: mode coverage (used by the GAN tab) ------------------------------------------------

def mode_coverage(samples, modes: np.ndarray, std: float, min_count: int | None = None) -> dict:
    """Modes covered and the fraction of high-quality samples (within 3 std of some mode), the
    standard mode-collapse metrics (Srivastava et al. 2017). A mode counts as covered when at
    least `min_count` samples (default: 20% of its fair share, at least 1) land within 3 std."""
    s = np.asarray(samples, np.float64)
    modes = np.asarray(modes, np.float64)
    d = np.sqrt(((s[:, None, :] - modes[None]) ** 2).sum(-1))
    nearest = d.argmin(1)
    good = d[np.arange(len(s)), nearest] <= 3 * std
    counts = np.bincount(nearest[good], minlength=len(modes))
    if min_count is None:
        min_count = max(1, int(0.2 * len(s) / len(modes)))
    return {"modes_covered": int((counts >= min_count).sum()), "modes_total": int(len(modes)),
            "high_quality": float(good.mean()) if len(s) else 0.0}


def gaussian_nll(train: np.ndarray, test: np.ndarray) -> float:
    """The mean NLL (nats) of `test` under the Gaussian fitted to `train` (mean and covariance, float64, the
    covariance floored at 1e-12 of its trace so that points on a line still give a number)."""
    x = np.asarray(train, np.float64)
    mu, cov = x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    cov = cov + np.eye(len(mu)) * max(1e-12 * float(np.trace(cov)), 1e-300)
    d = np.asarray(test, np.float64) - mu
    sol = np.linalg.solve(cov, d.T).T
    _, logdet = np.linalg.slogdet(cov)
    return float(np.mean(0.5 * (d * sol).sum(1)) + 0.5 * logdet + 0.5 * len(mu) * math.log(2 * math.pi))
