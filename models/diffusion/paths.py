"""Gaussian noising paths x_t = α_t x_0 + σ_t ε (ε ~ N(0, I)), t in [0, 1]: data at t = 0, noise at t = 1.

Every model of the family is one of these paths plus a network; everything else (the probability-flow ODE, its
likelihood, the samplers) is written once for any path, in terms of α, σ and their time derivatives:

* :class:`VPLinear`, :class:`VPCosine` — variance preserving (DDPM, Ho et al. 2020): α² + σ² = 1. The linear
  schedule is Ho et al.'s β_1 = 1e-4 .. β_T = 0.02 over T = 1,000 steps in continuous time (Song et al. 2021,
  eq. 32: β(t) = 0.1 + 19.9 t, log ᾱ(t) = −∫β). The cosine one is Nichol & Dhariwal's (2021, eq. 17),
  ᾱ(t) = cos²(u(t))/cos²(u(0)) with u = (t + s)/(1 + s)·π/2, its angle stopped where ᾱ reaches the linear
  schedule's e^{−10.05} at t = 1 (at ᾱ = 0 the field of the ODE would be infinite there).
* :class:`VE` — variance exploding (NCSN / SMLD, Song & Ermon 2019; Song et al. 2021 eq. 30): α = 1,
  σ(t) = σ_min (σ_max/σ_min)^t, a geometric ladder of noise levels.
* :class:`LinearPath` — flow matching's optimal-transport path / rectified flow (Lipman et al. 2023,
  Liu et al. 2023): α = 1 − t, σ = t, a straight line from each data point to its noise.

Each path also says where its data end is (``t_data``: where σ is small but the field finite), its prior at t = 1
(N(0, prior_std² I), which the model's density is defined from), and a time grid for n solver steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOG_ABAR_END = -(0.1 + 19.9 / 2)  # log ᾱ(1) of the linear VP schedule


class GaussianPath:
    """α_t, σ_t and their derivatives at times t (tensors), plus the path's ends."""

    name = ""
    t_data = 0.0  # the data end: the model's density is that of x at this time
    prior_std = 1.0  # x_1 ~ N(0, prior_std² I)
    spacing = "uniform"  # the solvers' time grid: "uniform" in t, or "edm" (Karras et al. 2022, ρ = 7, in σ/α)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def coeffs(self, t: float) -> tuple[float, float, float, float]:
        """(α, σ, α̇, σ̇) at one time as Python floats (float64 maths), remembered: a sampler's time grid is the same
        every frame, and a step's few scalar products then cost nothing."""
        cache = self.__dict__.setdefault("_coeffs", {})
        got = cache.get(t)
        if got is None:
            tt = torch.tensor([t], dtype=torch.float64)
            got = (float(self.alpha(tt)), float(self.sigma(tt)), float(self.d_alpha(tt)), float(self.d_sigma(tt)))
            if len(cache) > 20000:
                cache.clear()
            cache[t] = got
        return got

    def noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = α_t x_0 + σ_t ε (t: (n,))."""
        return self.alpha(t)[:, None] * x0 + self.sigma(t)[:, None] * eps

    def g2(self, t: torch.Tensor) -> torch.Tensor:
        """The forward SDE's squared diffusion g(t)² = dσ²/dt − 2 (α̇/α) σ² (its drift is (α̇/α) x; Song et al.
        2021 eq. 5, and Kingma et al. 2021 for a general α, σ)."""
        a, s = self.alpha(t), self.sigma(t)
        return 2 * s * self.d_sigma(t) - 2 * self.d_alpha(t) / a * s * s

    def log_snr(self, t: np.ndarray) -> np.ndarray:
        tt = torch.as_tensor(np.asarray(t, np.float64))
        return (2 * torch.log(self.alpha(tt)) - 2 * torch.log(self.sigma(tt))).numpy()

    def times(self, n: int) -> torch.Tensor:
        """n + 1 times from 1 (noise) down to t_data (float64): n solver steps."""
        if self.spacing == "uniform":
            return torch.linspace(1.0, self.t_data, n + 1, dtype=torch.float64)
        return torch.as_tensor(self._edm_times(n))

    def _edm_times(self, n: int) -> np.ndarray:
        """Karras et al. (2022) eq. 5: r_i = (r_max^{1/ρ} + i/n (r_min^{1/ρ} − r_max^{1/ρ}))^ρ in r = σ/α, ρ = 7
        (steps crowd towards the data, where the field bends most), mapped back to t through a fine table."""
        table = np.linspace(self.t_data, 1.0, 4001)
        log_r = -0.5 * self.log_snr(table)  # increasing in t
        rho = 7.0
        r_lo, r_hi = math.exp(log_r[0]), math.exp(log_r[-1])
        r = (r_hi ** (1 / rho) + np.arange(n + 1) / n * (r_lo ** (1 / rho) - r_hi ** (1 / rho))) ** rho
        t = np.interp(np.log(r), log_r, table)
        t[0], t[-1] = 1.0, self.t_data
        return t

    def level_times(self, k: int) -> np.ndarray:
        """k times from t_data to 1 whose log-SNR is evenly spaced (the noise levels a view steps through):
        the first is the data end, the last t = 1."""
        table = np.linspace(self.t_data, 1.0, 4001)
        snr = np.clip(self.log_snr(table), -9.0, 9.0)
        want = np.linspace(snr[0], snr[-1], k)
        t = np.interp(-want, -snr, table)
        t[0], t[-1] = self.t_data, 1.0
        return t


class VPLinear(GaussianPath):
    """Variance preserving, linear β(t) = β_min + t (β_max − β_min) (Ho et al. 2020 in continuous time)."""

    name = "linear"
    t_data = 1e-3  # σ ≈ 0.01 there
    spacing = "edm"
    beta_min, beta_max = 0.1, 20.0

    def _log_abar(self, t):
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return torch.exp(0.5 * self._log_abar(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(self._log_abar(t)))

    def d_alpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t):
        return 0.5 * self.beta(t) * torch.exp(self._log_abar(t)) / self.sigma(t)


class VPCosine(GaussianPath):
    """Variance preserving, Nichol & Dhariwal's cosine ᾱ, stopped at ᾱ(1) = e^{−10.05} (see the module)."""

    name = "cosine"
    t_data = 1e-3
    spacing = "edm"
    s = 0.008

    def __init__(self):
        self.u0 = self.s / (1 + self.s) * math.pi / 2
        self.u1 = math.acos(math.cos(self.u0) * math.exp(0.5 * LOG_ABAR_END))

    def _u(self, t):
        return self.u0 + t * (self.u1 - self.u0)

    def alpha(self, t):
        return torch.cos(self._u(t)) / math.cos(self.u0)

    def sigma(self, t):
        a = self.alpha(t)
        return torch.sqrt((1 - a) * (1 + a))

    def d_alpha(self, t):
        return -torch.sin(self._u(t)) * (self.u1 - self.u0) / math.cos(self.u0)

    def d_sigma(self, t):
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)


class VE(GaussianPath):
    """Variance exploding: α = 1, σ(t) = σ_min (σ_max/σ_min)^t (NCSN's geometric noise levels)."""

    name = "ve"
    spacing = "edm"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 8.0):
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.prior_std = self.sigma_max

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def d_alpha(self, t):
        return torch.zeros_like(t)

    def d_sigma(self, t):
        return self.sigma(t) * self.log_ratio


class LinearPath(GaussianPath):
    """Flow matching's straight path x_t = (1 − t) x_0 + t ε (rectified flow)."""

    name = "linear path"

    def alpha(self, t):
        return 1 - t

    def sigma(self, t):
        return t

    def d_alpha(self, t):
        return -torch.ones_like(t)

    def d_sigma(self, t):
        return torch.ones_like(t)

    def log_snr(self, t):
        t = np.clip(np.asarray(t, np.float64), 1e-12, 1 - 1e-12)
        return 2 * np.log1p(-t) - 2 * np.log(t)
