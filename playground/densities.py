"""The densities known in closed form: every built-in dataset's that has one, and the analytic energies.

One place, written once for numpy and torch (by the input's type): the datasets (numpy) sample and score
with them, and the session hands the same formulas in torch to a model fit to a *density* rather than to
data (reverse-KL flows: planar, IAF; notes 5.4.1, 5.4.5) and to the EBM tab's sampler sandbox (Langevin /
MALA / MH on analytic targets, notes 7.3). This module does not import torch: a torch tensor can only
reach it once torch is loaded, so numpy users (the data layer, the command line's argument checks) never
pay for it.

The energies U(x) give p(x) ∝ exp(-U(x)).
The four 2D energies U1-U4 are those of Rezende & Mohamed (2015), table 1. U2-U4 are not
integrable along x1 on their own, so, as in the paper's figures, they are confined to the
[-4, 4]^2 box by a soft wall (``ENVELOPE``) that is ~0 inside the box and steep outside.
Their normaliser log Z is computed once on a fine grid (a 2D integral is a sum).

References:
    Rezende & Mohamed (2015), Variational inference with normalizing flows, table 1.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache

import numpy as np

LOG_2PI = math.log(2 * math.pi)


class _Ops:
    """numpy or torch, by the type of the input: the densities below are written once. numpy input is
    taken in float64."""

    def __init__(self, x):
        torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
        self.t = torch is not None and isinstance(x, torch.Tensor)
        self.m = torch if self.t else np

    def asarray(self, x):
        return x if self.t else np.asarray(x, np.float64)

    def exp(self, a):
        return self.m.exp(a)

    def log(self, a):
        return self.m.log(a)

    def sin(self, a):
        return self.m.sin(a)

    def sqrt(self, a):
        return self.m.sqrt(a)

    def logaddexp(self, a, b):
        return self.m.logaddexp(a, b)

    def sigmoid(self, a):
        return self.m.sigmoid(a) if self.t else 1.0 / (1.0 + np.exp(-a))

    def relu(self, a):
        return self.m.relu(a) if self.t else np.maximum(a, 0.0)

    def stack(self, items, dim: int):
        return self.m.stack(items, dim) if self.t else np.stack(items, dim)

    def logsumexp(self, a, dim: int):
        if self.t:
            return self.m.logsumexp(a, dim)
        m = a.max(dim, keepdims=True)
        return np.squeeze(m + np.log(np.exp(a - m).sum(dim, keepdims=True)), dim)


def _wall(x, ops):
    """A soft wall: 0 inside [-4, 4]^2, growing quadratically (steeply) outside it."""
    over1 = ops.relu(abs(x[..., 0]) - 4.0)
    over2 = ops.relu(abs(x[..., 1]) - 4.0)
    return 50.0 * (over1 ** 2 + over2 ** 2)


def u1(x):
    ops = _Ops(x)
    z1, z2 = x[..., 0], x[..., 1]
    r = ops.sqrt(z1 ** 2 + z2 ** 2 + 1e-12)
    return 0.5 * ((r - 2.0) / 0.4) ** 2 - ops.logaddexp(-0.5 * ((z1 - 2.0) / 0.6) ** 2,
                                                        -0.5 * ((z1 + 2.0) / 0.6) ** 2)


def _w1(z1, ops):
    return ops.sin(2 * math.pi * z1 / 4.0)


def u2(x):
    ops = _Ops(x)
    z1, z2 = x[..., 0], x[..., 1]
    return 0.5 * ((z2 - _w1(z1, ops)) / 0.4) ** 2 + _wall(x, ops)


def u3(x):
    ops = _Ops(x)
    z1, z2 = x[..., 0], x[..., 1]
    w1 = _w1(z1, ops)
    w2 = 3.0 * ops.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    return -ops.logaddexp(-0.5 * ((z2 - w1) / 0.35) ** 2, -0.5 * ((z2 - w1 + w2) / 0.35) ** 2) + _wall(x, ops)


def u4(x):
    ops = _Ops(x)
    z1, z2 = x[..., 0], x[..., 1]
    w1 = _w1(z1, ops)
    w3 = 3.0 * ops.sigmoid((z1 - 1.0) / 0.3)
    return -ops.logaddexp(-0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + w3) / 0.35) ** 2) + _wall(x, ops)


def donut(x):
    """A ring of radius 2.5 (a classic hard case for random-walk MH: the mass is a thin curve)."""
    ops = _Ops(x)
    r = ops.sqrt(x[..., 0] ** 2 + x[..., 1] ** 2 + 1e-12)
    return 0.5 * ((r - 2.5) / 0.25) ** 2


ENERGIES = {"u1": u1, "u2": u2, "u3": u3, "u4": u4, "donut": donut}
TITLES = {"u1": "U1 (ring, two lobes)", "u2": "U2 (sine wave)", "u3": "U3 (split sine)",
          "u4": "U4 (sine and step)", "donut": "Donut"}

GRID_HALF, GRID_RES = 6.0, 1201  # where the normalisers are computed


@lru_cache(maxsize=64)
def log_normalizer(name: str, temperature: float = 1.0) -> float:
    """log Z = log ∫ exp(-U(x)/T) dx over [-6, 6]^2 (the walls make the outside negligible)."""
    g = np.linspace(-GRID_HALF, GRID_HALF, GRID_RES)
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    f = -ENERGIES[name](xx) / temperature
    m = f.max()
    return float(m + np.log(np.exp(f - m).sum() * (g[1] - g[0]) ** 2))


def log_prob(name: str, x, temperature: float = 1.0):
    """The normalised log-density of an energy target (numpy in, numpy out; torch in, torch out)."""
    x = _Ops(x).asarray(x)
    return -ENERGIES[name](x) / temperature - log_normalizer(name, float(temperature))


def sample(name: str, n: int, rng: np.random.Generator, temperature: float = 1.0, res: int = 600) -> np.ndarray:
    """Exact-up-to-discretisation samples: pick grid cells with probability ∝ their density, then a
    uniform point inside the cell (inverse-CDF sampling on a fine grid, fine in 2D)."""
    half = GRID_HALF
    edges = np.linspace(-half, half, res + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    xx = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2)
    f = -ENERGIES[name](xx) / temperature
    p = np.exp(f - f.max())
    p /= p.sum()
    cells = rng.choice(len(p), size=n, p=p)
    h = edges[1] - edges[0]
    return (xx[cells] + (rng.random((n, 2)) - 0.5) * h).astype(np.float32)


# --- an unequal-weight mixture of rotated, elongated Gaussians ("anisomix") ---------------------
# Component k: weight w_k, mean m_k, covariance R(θ_k) diag(a_k², (s·b_k)²) R(θ_k)ᵀ, where a_k is the
# long-axis std, s the dataset's noise level and b_k a per-component factor of the short axis.
# The common case the symmetric sets (equal weights, round components) miss.

ANISO_WEIGHTS = (0.35, 0.25, 0.20, 0.12, 0.08)
ANISO_MEANS = ((-1.6, 1.5), (1.8, 1.4), (0.2, -0.9), (-2.3, -2.4), (2.4, -2.5))
ANISO_LONG = (1.0, 0.75, 1.2, 0.5, 0.6)  # long-axis std a_k
ANISO_SHORT = (1.0, 1.4, 0.8, 1.6, 1.2)  # short-axis std b_k, times the noise level
ANISO_ANGLES = (35.0, -50.0, 8.0, 80.0, 125.0)  # rotation of the long axis, degrees


def aniso_params(noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights (K,), means (K, 2), covariances (K, 2, 2)) of the anisotropic mixture at `noise`."""
    w = np.asarray(ANISO_WEIGHTS, np.float64)
    t = np.deg2rad(ANISO_ANGLES)
    rot = np.stack([np.stack([np.cos(t), -np.sin(t)], 1), np.stack([np.sin(t), np.cos(t)], 1)], 1)
    d = np.stack([np.asarray(ANISO_LONG), noise * np.asarray(ANISO_SHORT)], 1) ** 2
    cov = np.einsum("kij,kj,klj->kil", rot, d, rot)
    return w / w.sum(), np.asarray(ANISO_MEANS, np.float64), cov


def aniso_sample(n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Exact samples: a component k ~ w, then m_k + R_k diag(a_k, s·b_k) ε with ε ~ N(0, I)."""
    w, mu, cov = aniso_params(noise)
    k = rng.choice(len(w), size=n, p=w)
    chol = np.linalg.cholesky(cov)
    return mu[k] + np.einsum("nij,nj->ni", chol[k], rng.standard_normal((n, 2)))


def aniso_log_prob(x, noise: float):
    """log Σ_k w_k N(x; m_k, Σ_k), in closed form (numpy in, numpy out; torch in, torch out).
    Each component's quadratic form is written in its own axes: u = R_kᵀ(x − m_k),
    log N = −u₁²/2a_k² − u₂²/2(s b_k)² − log a_k − log(s b_k) − log 2π."""
    ops = _Ops(x)
    x = ops.asarray(x)
    comps = []
    for w, (m1, m2), a, b, deg in zip(ANISO_WEIGHTS, ANISO_MEANS, ANISO_LONG, ANISO_SHORT, ANISO_ANGLES):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        d1, d2 = x[..., 0] - m1, x[..., 1] - m2
        u1, u2 = c * d1 + s * d2, -s * d1 + c * d2
        sb = noise * b
        comps.append(math.log(w / sum(ANISO_WEIGHTS)) - 0.5 * (u1 / a) ** 2 - 0.5 * (u2 / sb) ** 2
                     - math.log(a) - math.log(sb) - math.log(2 * math.pi))
    return ops.logsumexp(ops.stack(comps, -1), -1)


# --- the other built-in datasets whose density is known -----------------------------------------

def eight_centres() -> np.ndarray:
    a = np.arange(8) * (2 * np.pi / 8)
    return 2.8 * np.stack([np.cos(a), np.sin(a)], 1)


def grid_centres() -> np.ndarray:
    g = np.linspace(-3.0, 3.0, 5)
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


def mixture_log_prob(x, centres: np.ndarray, std: float):
    """log of the equal-weight mixture of isotropic Gaussians N(c_k, std² I)."""
    ops = _Ops(x)
    x = ops.asarray(x)
    c = ops.m.as_tensor(centres, dtype=x.dtype, device=x.device) if ops.t else centres
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    comp = -0.5 * d2 / std ** 2 - 2 * math.log(std) - LOG_2PI - math.log(len(centres))
    return ops.logsumexp(comp, 1)


BANANA_A, BANANA_B, BANANA_S1 = 0.5, -2.0, 1.0


def banana_log_prob(x, noise: float):
    """x1 ~ N(0, S1²), x2 | x1 ~ N(A x1² + B, noise²)."""
    x = _Ops(x).asarray(x)
    x1, x2 = x[:, 0], x[:, 1]
    z1, z2 = x1 / BANANA_S1, (x2 - BANANA_A * x1 ** 2 - BANANA_B) / noise
    return -0.5 * z1 ** 2 - 0.5 * z2 ** 2 - math.log(BANANA_S1) - math.log(noise) - LOG_2PI


GAUSS_COV = np.array([[2.0, 1.2], [1.2, 1.0]])


def gaussian_log_prob(x, noise: float):
    """N(0, noise² GAUSS_COV), its 2x2 precision written out."""
    x = _Ops(x).asarray(x)
    (a, b), (_, d) = GAUSS_COV * noise ** 2
    det = a * d - b * b
    x1, x2 = x[:, 0], x[:, 1]
    return -0.5 * (d * x1 ** 2 - 2 * b * x1 * x2 + a * x2 ** 2) / det - 0.5 * math.log(det) - LOG_2PI


def checkerboard_log_prob(x, noise: float):
    """Uniform on the 8 dark cells of side 2 covering [-4, 4]²; only without noise (numpy)."""
    if noise > 0:
        raise NotImplementedError("closed form only without noise")
    x = np.asarray(x, np.float64)
    i, j = np.floor((x[:, 0] + 4) / 2), np.floor((x[:, 1] + 4) / 2)
    inside = (np.abs(x) < 4).all(1) & ((i + j) % 2 == 0)
    return np.where(inside, -math.log(8 * 4.0), -np.inf)


# the datasets whose density is written above, as functions (x, noise) -> log p(x)
DENSITIES = {
    "8gaussians": lambda x, s: mixture_log_prob(x, eight_centres(), s),
    "25gaussians": lambda x, s: mixture_log_prob(x, grid_centres(), s),
    "banana": banana_log_prob,
    "gaussian": gaussian_log_prob,
    "anisomix": aniso_log_prob,
    "checkerboard": checkerboard_log_prob,
    **{name: (lambda x, t, _n=name: log_prob(_n, x, t)) for name in ENERGIES},
}
DIFFERENTIABLE = tuple(k for k in DENSITIES if k != "checkerboard")  # usable as a target in torch


def dataset_log_prob(name: str, noise: float):
    """The log-density of built-in dataset `name` at noise level `noise` as a function of x (numpy in, numpy
    out; torch in, torch out, differentiable), or None when it has none that a model can be fit to."""
    if name not in DIFFERENTIABLE:
        return None
    fn = DENSITIES[name]
    return lambda x: fn(x, noise)
