"""Target densities known in closed form, as energies U(x) with p(x) ∝ exp(-U(x)).

Used where a model is fit to a *density* rather than to data: reverse-KL flows (planar flows, IAF;
notes 5.4.1, 5.4.5), and the EBM tab's sampler sandbox (Langevin / MALA / MH on analytic targets,
notes 7.3). The same formulas serve numpy (to sample and plot the targets as datasets) and torch
(differentiable, for training and for Langevin's gradient), so they are written once.

The four 2D energies U1-U4 are those of Rezende & Mohamed (2015), table 1. U2-U4 are not
integrable along x1 on their own, so, as in the paper's figures, they are confined to the
[-4, 4]^2 box by a soft wall (``ENVELOPE``) that is ~0 inside the box and steep outside.
Their normaliser log Z is computed once on a fine grid (a 2D integral is a sum).

References:
    Rezende & Mohamed (2015), Variational inference with normalizing flows, table 1.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


class _Ops:
    """numpy or torch, by the type of the input: the energies below are written once."""

    def __init__(self, x):
        self.t = isinstance(x, torch.Tensor)

    def exp(self, a):
        return torch.exp(a) if self.t else np.exp(a)

    def log(self, a):
        return torch.log(a) if self.t else np.log(a)

    def sin(self, a):
        return torch.sin(a) if self.t else np.sin(a)

    def sqrt(self, a):
        return torch.sqrt(a) if self.t else np.sqrt(a)

    def logaddexp(self, a, b):
        return torch.logaddexp(a, b) if self.t else np.logaddexp(a, b)

    def sigmoid(self, a):
        return torch.sigmoid(a) if self.t else 1.0 / (1.0 + np.exp(-a))

    def relu(self, a):
        return torch.relu(a) if self.t else np.maximum(a, 0.0)


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
    comps = []
    for w, (m1, m2), a, b, deg in zip(ANISO_WEIGHTS, ANISO_MEANS, ANISO_LONG, ANISO_SHORT, ANISO_ANGLES):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        d1, d2 = x[..., 0] - m1, x[..., 1] - m2
        u1, u2 = c * d1 + s * d2, -s * d1 + c * d2
        sb = noise * b
        comps.append(math.log(w / sum(ANISO_WEIGHTS)) - 0.5 * (u1 / a) ** 2 - 0.5 * (u2 / sb) ** 2
                     - math.log(a) - math.log(sb) - math.log(2 * math.pi))
    if ops.t:
        return torch.logsumexp(torch.stack(comps, -1), -1)
    stacked = np.stack(comps, -1)
    m = stacked.max(-1, keepdims=True)
    return (m + np.log(np.exp(stacked - m).sum(-1, keepdims=True)))[..., 0]


# --- the built-in datasets whose density is known, as torch log-densities ------------------------

def _mixture_log_prob(x: torch.Tensor, centres: torch.Tensor, std: float) -> torch.Tensor:
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    comp = -0.5 * d2 / std ** 2 - 2 * math.log(std) - math.log(2 * math.pi) - math.log(len(centres))
    return torch.logsumexp(comp, 1)


def dataset_log_prob(name: str, noise: float):
    """A differentiable torch log-density for the built-in dataset `name` at noise level `noise`,
    or None when it has none (kept in step with playground.datasets, which tests compare)."""
    if name in ENERGIES:
        return lambda x: log_prob(name, x, noise)
    if name == "8gaussians":
        a = torch.arange(8) * (2 * math.pi / 8)
        c = 2.8 * torch.stack([torch.cos(a), torch.sin(a)], 1)
        return lambda x: _mixture_log_prob(x, c.to(x), noise)
    if name == "25gaussians":
        g = torch.linspace(-3.0, 3.0, 5)
        c = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
        return lambda x: _mixture_log_prob(x, c.to(x), noise)
    if name == "banana":
        def banana(x):
            x1, x2 = x[:, 0], x[:, 1]
            return (-0.5 * x1 ** 2 - 0.5 * math.log(2 * math.pi)
                    - 0.5 * ((x2 - 0.5 * x1 ** 2 + 2.0) / noise) ** 2 - math.log(noise) - 0.5 * math.log(2 * math.pi))
        return banana
    if name == "anisomix":
        return lambda x: aniso_log_prob(x, noise)
    if name == "gaussian":
        cov = torch.tensor([[2.0, 1.2], [1.2, 1.0]]) * noise ** 2

        def gaussian(x):
            return torch.distributions.MultivariateNormal(torch.zeros(2, device=x.device),
                                                          covariance_matrix=cov.to(x)).log_prob(x)
        return gaussian
    return None
