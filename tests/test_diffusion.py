"""Diffusion and flow matching (models/diffusion): the Gaussian paths' marginals and derivatives, the network's
forward-mode Jacobian and the field's divergence against autograd, the probability-flow ODE's likelihood and the
samplers driven by an exact-score oracle of a Gaussian mixture, the straight path's velocity between two Gaussians
in closed form, trained models that recover known scores and velocities, reflow's coupled pairs, seeds and the
held-out metrics."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from models import TrainSettings, build
from models.diffusion import base as D
from models.diffusion.models import REFLOW_STEPS
from models.diffusion.net import TimeMLP
from models.diffusion.paths import VE, LinearPath, VPCosine, VPLinear

PATHS = {"vp_linear": VPLinear, "vp_cosine": VPCosine, "ve": lambda: VE(0.01, 8.0), "linear_path": LinearPath}
MODELS = {  # name -> (key, config): every registered diffusion model, and DDPM's second schedule
    "ddpm": ("ddpm", {}),
    "ddpm_cosine": ("ddpm", {"schedule": "cosine"}),
    "score_sde": ("score_sde", {}),
    "flow_matching": ("flow_matching", {}),
}


def perturb(module, scale=0.3):
    """Move every parameter off its initialisation (the output layer starts at zero: a trivial field)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


# --- the paths ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PATHS)
def test_forward_process_has_the_paths_gaussian_marginals(name, float64):
    """x_t = noise(x_0, t, ε) with ε ~ N(0, I) is N(α_t x_0, σ_t² I): its Monte Carlo mean and variance agree
    within 5 standard errors (a swapped α/σ or a squared σ in noise() moves them by many)."""
    path = PATHS[name]()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.7, -1.3])
    n = 20000
    for t in (0.05, 0.3, 0.6, 0.9):
        tt = torch.full((n,), t)
        eps = torch.randn(n, 2, generator=gen)
        xt = path.noise(x0.expand(n, 2), tt, eps)
        a, s = float(path.alpha(tt[:1])), float(path.sigma(tt[:1]))
        se_mean = s / math.sqrt(n)
        assert (xt.mean(0) - a * x0).abs().max() < 5 * se_mean, (name, t)
        se_var = s * s * math.sqrt(2 / (n - 1))
        assert (xt.var(0) - s * s).abs().max() < 5 * se_var, (name, t)


@pytest.mark.parametrize("name", PATHS)
def test_path_derivatives_and_sde_diffusion_match_finite_differences(name, float64):
    """d_alpha, d_sigma are the central differences of alpha, sigma, and g2 = dσ²/dt − 2(α̇/α)σ² by finite
    differences (a wrong chain-rule factor in any of them breaks the ODE's field and the reverse SDE)."""
    path = PATHS[name]()
    t = torch.linspace(0.02, 0.95, 25)
    h = 1e-6
    fd_a = (path.alpha(t + h) - path.alpha(t - h)) / (2 * h)
    fd_s = (path.sigma(t + h) - path.sigma(t - h)) / (2 * h)
    torch.testing.assert_close(path.d_alpha(t), fd_a, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(path.d_sigma(t), fd_s, rtol=1e-6, atol=1e-7)
    fd_var = (path.sigma(t + h) ** 2 - path.sigma(t - h) ** 2) / (2 * h)
    g2 = fd_var - 2 * fd_a / path.alpha(t) * path.sigma(t) ** 2
    torch.testing.assert_close(path.g2(t), g2, rtol=1e-6, atol=1e-7)
    assert (path.g2(t) > 0).all(), "the forward SDE's g² must be positive"


@pytest.mark.parametrize("name", PATHS)
def test_path_ends_and_time_grids(name, float64):
    """VP paths keep α² + σ² = 1; the ends are where each paper puts them; times(n) runs monotonically from 1
    down to t_data, and level_times(k) up from t_data to 1."""
    path = PATHS[name]()
    t = torch.linspace(0.0, 1.0, 101)
    a, s = path.alpha(t), path.sigma(t)
    if name.startswith("vp"):
        torch.testing.assert_close(a ** 2 + s ** 2, torch.ones_like(t), rtol=0, atol=1e-12)
        # both schedules end at the linear one's ᾱ(1) = e^{−(0.1 + 19.9/2)}
        assert float(a[-1]) == pytest.approx(math.exp(-0.5 * (0.1 + 9.95)), rel=1e-9)
        sd = float(path.sigma(torch.tensor([path.t_data])))  # a small, nonzero noise at the data end
        assert sd == pytest.approx(0.0105, rel=0.01) if name == "vp_linear" else 0.005 < sd < 0.01
        assert float(a[0]) == pytest.approx(1.0, abs=1e-12) and float(s[0]) < 1e-6
    elif name == "ve":
        assert float(s[0]) == pytest.approx(0.01) and float(s[-1]) == pytest.approx(8.0)
        assert (a == 1).all() and path.prior_std == 8.0
    else:
        torch.testing.assert_close(a, 1 - t)
        torch.testing.assert_close(s, t)
        assert path.t_data == 0.0 and path.prior_std == 1.0
    assert (torch.diff(s) > 0).all(), "noise must grow with t"
    for n in (1, 2, 7, 32):
        ts = path.times(n)
        assert ts.shape == (n + 1,) and ts.dtype == torch.float64
        assert float(ts[0]) == 1.0 and float(ts[-1]) == pytest.approx(path.t_data, abs=1e-15)
        assert (torch.diff(ts) < 0).all(), (name, n, ts)
    for k in (2, 5, 12):
        lv = path.level_times(k)
        assert lv.shape == (k,) and lv[0] == path.t_data and lv[-1] == 1.0
        assert (np.diff(lv) > 0).all(), (name, k, lv)


# --- the network and the field's divergence ---------------------------------------------------------------

def autograd_jacobian(fn, x):
    """(out, J) with J[i, a, b] = ∂out_a/∂x_b at row i, by autograd (rows are independent)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        rows = [torch.autograd.grad(out[:, a].sum(), x, retain_graph=True)[0] for a in range(out.shape[1])]
    return out.detach(), torch.stack(rows, 1)


@pytest.mark.parametrize("depth", [1, 3])
def test_time_mlp_forward_mode_jacobian_matches_autograd(depth, float64):
    """TimeMLP.with_jacobian's forward-mode J (the ODE's exact divergence) equals autograd's ∂out/∂x, and its
    output equals forward, at several times (a wrong SiLU derivative or a transposed J breaks it)."""
    net = perturb(TimeMLP(hidden=24, depth=depth), 0.5)
    x = torch.randn(12, 2) * 1.5
    for t in (torch.rand(12), torch.full((12,), 0.001), torch.tensor(0.7)):
        out, jac = net.with_jacobian(x, t)
        ref_out, ref_jac = autograd_jacobian(lambda v, t=t: net(v, t), x)
        torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(jac, ref_jac, rtol=1e-10, atol=1e-12)
        assert (jac[:, 0, 1] - jac[:, 1, 0]).abs().max() > 1e-3, "a random net's Jacobian is not symmetric"
    # one 0-d time for every point (the samplers' and the ODE's) is the same time given per point
    t0 = torch.tensor(0.3)
    torch.testing.assert_close(net(x, t0), net(x, t0.expand(12)), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", MODELS)
def test_velocity_and_divergence_match_autograd(name, float64):
    """velocity_and_divergence's (v, tr ∂v/∂z) equals (velocity, autograd's trace of ∂velocity/∂z) of the shown
    (averaged) net, for noise and velocity prediction on every path (the α̇/α and c = σ̇ − α̇σ/α terms)."""
    key, cfg = MODELS[name]
    m = build(key, hidden=24, depth=2, **cfg)
    perturb(m.shown(), 0.5)
    z = torch.randn(10, 2) * 1.5
    for t in (0.01, 0.2, 0.5, 0.9, 1.0):
        tt = torch.full((10,), t)
        v, div = m.velocity_and_divergence(z, tt)
        ref_v, jac = autograd_jacobian(lambda q, tt=tt: m.velocity(q, tt), z)
        torch.testing.assert_close(v, ref_v, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(div, jac.diagonal(dim1=1, dim2=2).sum(1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_one_time_fast_paths_equal_the_per_point_field(name, float64):
    """The samplers' and the ODE's versions at one float time (predict_at, velocity_at, score_at,
    velocity_and_divergence_at, with the path's cached scalar coefficients) equal the per-point ones."""
    key, cfg = MODELS[name]
    m = build(key, hidden=24, depth=2, **cfg)
    perturb(m.shown(), 0.5)
    z = torch.randn(10, 2) * 1.5
    for t in (0.01, 0.5, 1.0):
        tt = torch.full((10,), t)
        for got, want in zip(m.predict_at(z, t), m.predict(z, tt)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.velocity_at(z, t), m.velocity(z, tt), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.score_at(z, t), m.score(z, tt), rtol=1e-12, atol=1e-12)
        for got, want in zip(m.velocity_and_divergence_at(z, t), m.velocity_and_divergence(z, tt)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --- an exact-score oracle of a Gaussian mixture ----------------------------------------------------------

class MixtureOracle(nn.Module):
    """What a model's network would ideally output for data from Σ_k π_k N(μ_k, Σ_k) on `path`: given
    x_t | k ~ N(α μ_k, C_k), C_k = α² Σ_k + σ² I, E[ε | x_t, k] = σ C_k⁻¹(x_t − α μ_k) and
    E[x_0 | x_t, k] = μ_k + α Σ_k C_k⁻¹(x_t − α μ_k), mixed by the posterior weights of k given x_t:
    E[ε | x_t] (noise prediction) or E[ε − x_0 | x_t] (velocity prediction)."""

    def __init__(self, weights, means, covs, path, prediction):
        super().__init__()
        self.log_w = torch.log(torch.as_tensor(weights, dtype=torch.float64))
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        self.path, self.prediction = path, prediction

    def _parts(self, x, t):
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        a = self.path.alpha(t).to(x.dtype)[:, None, None]  # (n, 1, 1)
        s = self.path.sigma(t).to(x.dtype)[:, None, None]
        cov = a[..., None] ** 2 * self.covs + s[..., None] ** 2 * torch.eye(2, dtype=x.dtype)  # (n, K, 2, 2)
        d = x[:, None, :] - a * self.means  # (n, K, 2)
        sol = torch.linalg.solve(cov, d.unsqueeze(-1)).squeeze(-1)  # C_k⁻¹ (x − α μ_k)
        log_n = -0.5 * (d * sol).sum(-1) - 0.5 * torch.logdet(cov) - math.log(2 * math.pi)
        return a, s, sol, self.log_w + log_n  # log π_k N(x; α μ_k, C_k)

    def log_density(self, x, t):
        """log Σ_k π_k N(x; α_t μ_k, α_t² Σ_k + σ_t² I): the exact marginal of x_t."""
        return torch.logsumexp(self._parts(x, torch.as_tensor(t, dtype=x.dtype))[3], 1)

    def forward(self, x, t):
        a, s, sol, log_joint = self._parts(x, t)
        w = torch.softmax(log_joint, 1)[..., None]  # (n, K, 1)
        eps = (w * s * sol).sum(1)
        if self.prediction == "eps":
            return eps
        x0 = (w * (self.means + a * (self.covs @ sol.unsqueeze(-1)).squeeze(-1))).sum(1)
        return eps - x0

    def with_jacobian(self, x, t):
        return autograd_jacobian(lambda v: self.forward(v, t), x)


MIX_W = [0.5, 0.3, 0.2]
MIX_MU = [[-0.6, -0.5], [0.8, 1.0], [1.3, -0.6]]
MIX_COV = [[[0.30, 0.10], [0.10, 0.20]], [[0.15, -0.05], [-0.05, 0.25]], [[0.20, 0.0], [0.0, 0.10]]]


def mixture_samples(n, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(torch.tensor(MIX_W, dtype=torch.float64), n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(torch.tensor(MIX_COV, dtype=torch.float64))
    e = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return torch.tensor(MIX_MU, dtype=torch.float64)[k] + (chol[k] @ e[..., None]).squeeze(-1)


def mixture_moments():
    w, mu, cov = (torch.tensor(v, dtype=torch.float64) for v in (MIX_W, MIX_MU, MIX_COV))
    mean = (w[:, None] * mu).sum(0)
    d = mu - mean
    return mean, (w[:, None, None] * (cov + d[:, :, None] * d[:, None, :])).sum(0)


def oracle_model(name):
    """The model `name` with its network replaced by the exact oracle, standardisation the identity."""
    key, cfg = MODELS[name]
    m = build(key, hidden=16, depth=1, average=0, **cfg)
    m.net = MixtureOracle(MIX_W, MIX_MU, MIX_COV, m.path, m.prediction)
    assert m.shown() is m.net
    assert float(m.standardizer.shift.abs().sum()) == 0 and float((m.standardizer.scale - 1).abs().sum()) == 0
    return m


def test_oracle_is_the_exact_score_of_the_noised_mixture(float64):
    """Sanity of the oracle itself: its noise prediction is −σ ∇log p_t (Tweedie), p_t's log-density's gradient
    by autograd, and its velocity at t = 1 is E[ε] − E[x_0] = x − mixture mean on the straight path."""
    x = torch.randn(20, 2) * 1.5
    path = VPCosine()
    o = MixtureOracle(MIX_W, MIX_MU, MIX_COV, path, "eps")
    for t in (0.05, 0.4, 0.8):
        tt = torch.full((20,), t)
        with torch.enable_grad():
            xr = x.clone().requires_grad_(True)
            grad = torch.autograd.grad(o.log_density(xr, t).sum(), xr)[0]
        torch.testing.assert_close(o(x, tt), -path.sigma(tt)[:, None] * grad, rtol=1e-10, atol=1e-12)
    fm = MixtureOracle(MIX_W, MIX_MU, MIX_COV, LinearPath(), "velocity")
    torch.testing.assert_close(fm(x, torch.ones(20)), x - mixture_moments()[0], rtol=1e-12, atol=1e-12)


def rk4_end(m, x, steps):
    """x_1: the probability-flow ODE from x at t_data to t = 1 (RK4 on model.velocity over path.times)."""
    times = m.path.times(steps).flip(0).tolist()
    z = x.clone()

    def f(zz, t):
        return m.velocity(zz, torch.full((len(zz),), t, dtype=zz.dtype))

    with torch.no_grad():
        for t0, t1 in zip(times[:-1], times[1:]):
            h = t1 - t0
            k1 = f(z, t0)
            k2 = f(z + h / 2 * k1, t0 + h / 2)
            k3 = f(z + h / 2 * k2, t0 + h / 2)
            k4 = f(z + h * k3, t1)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return z


@pytest.mark.parametrize("name, tol_mean, tol_max", [
    ("ddpm", 0.005, 0.02), ("ddpm_cosine", 0.005, 0.02), ("flow_matching", 1e-5, 1e-5), ("score_sde", 0.05, 0.3)])
def test_ode_likelihood_of_the_exact_score_is_the_true_density(name, tol_mean, tol_max, float64):
    """With the exact score the probability-flow ODE carries p_1 to p_{t_data}, so log_prob (RK4, 64 steps) is
    the true log Σ π_k N(x; α μ_k, α² Σ_k + σ² I) at the data end (flow matching: σ = 0, the mixture itself; VE:
    the mixture blurred by σ_min = 0.01). Measured here: |error| ≈ 0.001 on average for VP (the prior N(0, I)
    misses p_1's means α(1) μ_k ≈ 0.007 μ_k), ~1e-8 for flow matching (p_1 = N(0, I) exactly), and for VE
    0.023 on average, 0.13 at worst (N(0, σ_max²) against the mixture blurred by σ_max = 8: ~x_1·mean/64 per
    point), but only 0.0013 in the signed mean (the mismatch is a KL, second order). With that mismatch removed,
    log N(x_1; 0, prior_std²) replaced by log p_1(x_1) at the ODE's own x_1, every path agrees to 1e-4, RK4's
    error. A sign error in the divergence's integral, or in its α̇/α term, is off by nats."""
    m = oracle_model(name)
    x = mixture_samples(300, seed=5)
    got = m.log_prob(x, 64)
    want = m.net.log_density(x, m.path.t_data)
    err = (got - want).abs()
    assert float(err.mean()) < tol_mean and float(err.max()) < tol_max, (float(err.mean()), float(err.max()))
    assert abs(float((got - want).mean())) < 0.005
    x1 = rk4_end(m, x, 64)
    var = m.path.prior_std ** 2
    prior = -0.5 * x1.pow(2).sum(1) / var - math.log(2 * math.pi * var)
    exact = want - m.net.log_density(x1, 1.0) + prior  # log p_t_data(x) with the model's prior in place of p_1
    torch.testing.assert_close(got, exact, rtol=0, atol=2e-4)


SAMPLER_CASES = [  # (model, sampler, steps, standard errors allowed)
    ("ddpm", "ddim", 100, 5), ("ddpm", "ode", 30, 5), ("ddpm", "ancestral", 300, 5),
    ("ddpm_cosine", "ddim", 100, 5), ("ddpm_cosine", "ode", 30, 5), ("ddpm_cosine", "ancestral", 300, 5),
    ("score_sde", "ode", 30, 5), ("score_sde", "sde", 500, 5), ("score_sde", "langevin", 100, 8),
    ("flow_matching", "heun", 30, 5), ("flow_matching", "euler", 100, 5),
]


@pytest.mark.parametrize("name, sampler, steps, k_se", SAMPLER_CASES)
def test_samplers_with_the_exact_score_reproduce_the_mixtures_moments(name, sampler, steps, k_se, float64):
    """Every sampler driven by the exact score draws the mixture at the data end (α(t_data) μ_k, α² Σ_k + σ² I):
    4000 samples' mean and covariance agree within k_se standard errors (measured: under 2 for all but annealed
    Langevin, an approximate sampler at ~3.5; DDIM with 50 steps is already at ~3.6, with 10 at ~17: its
    first-order bias). An ancestral variance off by a factor, DDIM's x̂_0 mixed up with ε̂, or a reverse SDE
    without its g² ∇log p term move them by many."""
    m = oracle_model(name)
    n = 4000
    x = m.sample_with(n, sampler, steps, torch.Generator().manual_seed(11))
    mean, cov = mixture_moments()
    td = torch.tensor([m.path.t_data])
    a, s = float(m.path.alpha(td)), float(m.path.sigma(td))
    mean, cov = a * mean, a * a * cov + s * s * torch.eye(2)
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() < k_se * se_mean).all(), (x.mean(0), mean)
    emp = torch.cov(x.T)
    # the standard error of a sample covariance entry, (C_ii C_jj + C_ij²)/n for a Gaussian (the mixture's
    # kurtosis changes it a little)
    se_cov = torch.sqrt((torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None] + cov ** 2) / n)
    assert ((emp - cov).abs() < k_se * se_cov).all(), (emp, cov)


@pytest.mark.parametrize("name, samplers", [("ddpm", ("ddim", "euler")), ("ddpm_cosine", ("ddim", "euler")),
                                            ("score_sde", ("euler",)), ("flow_matching", ("euler",))])
def test_deterministic_samplers_converge_to_the_same_ode_solution(name, samplers, float64):
    """From the same prior draws, the first-order samplers (DDIM, Euler) approach the ODE's solution by Heun's
    method with many steps at first order (error halves as the steps double), and Heun itself at second order:
    they all integrate the same probability-flow ODE (a DDIM step with a wrong α_s/σ_s, or a field off by a
    term, converges elsewhere or not at all)."""
    m = oracle_model(name)

    def draw(sampler, steps):
        return m.sample_z(300, sampler, steps, torch.Generator().manual_seed(3))[0]

    ref = draw("ode", 400)
    heun = [float((draw("ode", k) - ref).norm(dim=1).mean()) for k in (25, 50)]
    assert heun[1] < 0.002 and heun[0] / heun[1] > 3, heun
    for sampler in samplers:
        errs = [float((draw(sampler, k) - ref).norm(dim=1).mean()) for k in (50, 100, 200)]
        assert errs[-1] < 0.04, (sampler, errs)
        ratios = [errs[0] / errs[1], errs[1] / errs[2]]
        assert all(1.6 < r < 2.5 for r in ratios), (sampler, errs)


# --- flow matching between two Gaussians ------------------------------------------------------------------

FM_M = torch.tensor([1.0, -0.5])
FM_S = 0.5


def two_gaussian_velocity(x, t, m, s):
    """The straight path's velocity from N(m, s² I) (t = 0) to N(0, I) (t = 1): x_t ~ N((1−t) m, v_t I) with
    v_t = (1−t)² s² + t²; E[ε | x_t] = t/v_t (x − (1−t) m) and E[x_0 | x_t] = m + (1−t) s²/v_t (x − (1−t) m)
    (Gaussian conditioning: Cov(ε, x_t) = t I, Cov(x_0, x_t) = (1−t) s² I), so
    v = E[ε − x_0 | x_t] = −m + (t − (1−t) s²)/v_t · (x − (1−t) m): the mean's and the spread's rates."""
    t = t[:, None]
    vt = (1 - t) ** 2 * s ** 2 + t ** 2
    return -m + (t - (1 - t) * s ** 2) / vt * (x - (1 - t) * m)


def test_two_gaussian_velocity_is_the_oracles_and_moves_the_marginals(float64):
    """The closed form above equals the mixture oracle's velocity with one component (at t = 0 and 1 too), and it
    transports x_t's law: E[v] = −m = d/dt of the mean (1−t) m, and 2 E[(x − mean) v] = dv_t/dt per coordinate
    (Monte Carlo over x_t ~ N((1−t) m, v_t I)); a wrong sign or power in the formula breaks one of them."""
    m, s = FM_M.double(), FM_S
    o = MixtureOracle([1.0], [m.tolist()], [[[s * s, 0.0], [0.0, s * s]]], LinearPath(), "velocity")
    x = torch.randn(50, 2) * 1.3 + 0.4
    for t in (0.0, 0.1, 0.35, 0.6, 0.9, 1.0):
        tt = torch.full((50,), t)
        torch.testing.assert_close(o(x, tt), two_gaussian_velocity(x, tt, m, s), rtol=1e-10, atol=1e-12)
    # the field moves x_t's exact law: mean (1−t)m and variance v_t, by linearity with a Gaussian x_t
    for t in (0.2, 0.5, 0.8):
        vt = (1 - t) ** 2 * s ** 2 + t ** 2
        z = (1 - t) * m + math.sqrt(vt) * torch.randn(200000, 2, generator=torch.Generator().manual_seed(1),
                                                      dtype=torch.float64)
        v = two_gaussian_velocity(z, torch.full((len(z),), t), m, s)
        torch.testing.assert_close(v.mean(0), -m, rtol=0, atol=0.02)
        dvar = 2 * ((z - (1 - t) * m) * v).mean(0)
        want = -2 * (1 - t) * s ** 2 + 2 * t
        torch.testing.assert_close(dvar, torch.full((2,), want), rtol=0, atol=0.03)


def test_flow_matching_learns_the_two_gaussian_velocity():
    """A small flow-matching model trained for 400 Adam steps on N(m, s² I) (standardisation the identity, so m
    and s matter) regresses to the closed-form velocity at points of x_t's law for t ≤ 0.7: relative error
    under 0.2 on average (the untrained zero field is off by 100%, the field of N(0, I) data by ~70% on average)."""
    torch.manual_seed(3)
    model = build("flow_matching", hidden=64, depth=2, average=0)
    gen = torch.Generator().manual_seed(4)
    model.init_from_data(FM_M + FM_S * torch.randn(5000, 2, generator=gen))
    model.standardizer.shift.zero_()
    model.standardizer.scale.fill_(1.0)
    opts = model.configure_optimizers(TrainSettings(lr=3e-3, batch=512, seed=0))
    for _ in range(400):
        model.step(FM_M + FM_S * torch.randn(512, 2, generator=gen), opts)
    errs, naive = [], []
    for t in (0.1, 0.3, 0.5, 0.7):
        vt = (1 - t) ** 2 * FM_S ** 2 + t ** 2
        x = (1 - t) * FM_M + math.sqrt(vt) * torch.randn(200, 2, generator=gen)
        tt = torch.full((200,), t)
        want = two_gaussian_velocity(x, tt, FM_M, FM_S)
        with torch.no_grad():
            got = model.velocity(x, tt)
        errs.append(float((got - want).norm(dim=1).mean() / want.norm(dim=1).mean()))
        naive.append(float((two_gaussian_velocity(x, tt, torch.zeros(2), 1.0) - want).norm(dim=1).mean()
                           / want.norm(dim=1).mean()))
    assert np.mean(errs) < 0.2 and max(errs) < 0.3, (errs, naive)
    assert np.mean(naive) > 0.5, naive  # the bound tells this field from a wrong one


# --- a trained DDPM recovers a Gaussian's score -------------------------------------------------------------

def test_trained_ddpm_recovers_the_score_of_a_gaussian():
    """DDPM trained on N(μ, Σ) (1500 steps; standardisation the identity, so that μ and Σ's correlation show)
    learns the noised data's score −(α²Σ + σ²I)⁻¹(z − α μ) at t = 0.3 and 0.6 on points of x_t's law: relative
    error under 0.15, and well under that of the score of N(0, I) data, −z (a wrong sign or σ in score(), or a
    target other than ε, misses by far more)."""
    torch.manual_seed(0)
    mu = torch.tensor([1.5, -1.0])
    cov = torch.tensor([[1.5, 0.7], [0.7, 1.0]])
    chol = torch.linalg.cholesky(cov)
    gen = torch.Generator().manual_seed(1)

    def draw(n):
        return mu + torch.randn(n, 2, generator=gen) @ chol.T

    model = build("ddpm", hidden=64, depth=3, average=0)
    model.init_from_data(draw(2000))
    model.standardizer.shift.zero_()
    model.standardizer.scale.fill_(1.0)
    opts = model.configure_optimizers(TrainSettings(lr=3e-3, batch=512, seed=0))
    for _ in range(1500):
        model.step(draw(512), opts)
    for t in (0.3, 0.6):
        tt = torch.full((400,), t)
        a, s = float(model.path.alpha(tt[:1])), float(model.path.sigma(tt[:1]))
        c = a * a * cov + s * s * torch.eye(2)
        z = a * mu + torch.randn(400, 2, generator=gen) @ torch.linalg.cholesky(c).T
        want = -(z - a * mu) @ torch.linalg.inv(c)
        with torch.no_grad():
            got = model.score(z, tt)
        scale = float(want.norm(dim=1).mean())
        err = float((got - want).norm(dim=1).mean()) / scale
        naive_err = float((-z - want).norm(dim=1).mean()) / scale
        assert err < 0.15 and err < naive_err / 3, (t, err, naive_err)


# --- reflow, seeds, metrics ---------------------------------------------------------------------------------

K_REFLOW = 60


def test_reflow_trains_on_pairs_coupled_by_the_models_ode():
    """flow_matching with reflow_at = k reflows at step k + 1 (not before), sets `reflowed`, and its training
    pairs are coupled: reflow_x0[i] is the Heun ODE image (REFLOW_STEPS steps, t = 1 -> 0) of reflow_eps[i]
    under the net at that moment (recomputed here by an independent Heun loop over model.velocity), and pair()
    draws matching rows of both. Independent pairs, or images of other noise, fail by O(1)."""
    torch.manual_seed(0)
    m = build("flow_matching", hidden=32, depth=2, average=0, reflow_at=K_REFLOW)
    gen = torch.Generator().manual_seed(2)
    side = torch.randint(0, 2, (2000, 1), generator=gen) * 2.0 - 1  # two clusters: far from N(0, I) standardised
    data = side * torch.tensor([3.0, 1.0]) + 0.3 * torch.randn(2000, 2, generator=gen)
    m.init_from_data(data)
    opts = m.configure_optimizers(TrainSettings(lr=1e-2, batch=256, seed=0))
    for _ in range(K_REFLOW):
        m.step(data[torch.randint(0, len(data), (256,), generator=gen)], opts)
        assert not bool(m.reflowed)
    before = copy.deepcopy(m.net.state_dict())
    m.step(data[torch.randint(0, len(data), (256,), generator=gen)], opts)
    assert bool(m.reflowed)
    after = copy.deepcopy(m.net.state_dict())
    m.net.load_state_dict(before)  # the net that drew the pairs
    eps, x0 = m.reflow_eps[:64].clone(), m.reflow_x0[:64].clone()
    assert abs(float(m.reflow_eps.mean())) < 0.05 and abs(float(m.reflow_eps.std()) - 1) < 0.05
    z = eps.clone()
    times = torch.linspace(1.0, 0.0, REFLOW_STEPS + 1).tolist()
    with torch.no_grad():
        for t0, t1 in zip(times[:-1], times[1:]):
            h = t1 - t0
            v0 = m.velocity(z, torch.full((64,), t0))
            v1 = m.velocity(z + h * v0, torch.full((64,), t1))
            z = z + 0.5 * h * (v0 + v1)
        again = m.sample_z(64, "heun", REFLOW_STEPS, torch.Generator(), start=eps)[0]
    torch.testing.assert_close(x0, z, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x0, again, rtol=1e-5, atol=1e-5)
    assert (x0 - eps).norm(dim=1).mean() > 0.3, "the trained ODE moves the noise"
    m.net.load_state_dict(after)
    px0, peps = m.pair(torch.zeros(500, 2), torch.Generator().manual_seed(9))
    rows = torch.cdist(peps, m.reflow_eps).argmin(1)
    torch.testing.assert_close(px0, m.reflow_x0[rows], rtol=0, atol=0)


@pytest.mark.parametrize("key, cfg", [("ddpm", {}), ("score_sde", {}), ("flow_matching", {"reflow_at": 3})])
def test_same_seed_same_run_and_the_global_generator_is_untouched(key, cfg):
    """Two models built after torch.manual_seed(s) and trained on the same batches end with identical weights
    (their noise and times come from the run's own generators), a different seed differs, and neither
    init_from_data nor step ever draws from torch's global generator."""
    data = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)) * 2 + 1

    def run(seed):
        torch.manual_seed(seed)
        m = build(key, hidden=16, depth=2, **cfg)
        state = torch.get_rng_state()
        m.init_from_data(data)
        opts = m.configure_optimizers(TrainSettings(lr=3e-3, batch=128, seed=seed))
        for i in range(6):
            m.step(data[i * 128:(i + 1) * 128], opts)
        assert torch.equal(torch.get_rng_state(), state), "training drew from the global generator"
        return m

    a, b, c = run(7), run(7), run(8)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, r) for p, r in zip(a.net.parameters(), c.net.parameters()))
    if key == "flow_matching":
        assert bool(a.reflowed) and torch.equal(a.reflow_x0, b.reflow_x0)


@pytest.mark.parametrize("key", ["ddpm", "score_sde", "flow_matching"])
def test_metrics_report_the_ode_error_level_losses_and_the_quality_sweep(key):
    """metrics() gives ode_err ≥ 0, LEVEL_BINS finite level losses and q_<sampler>_<steps> for every sampler and
    QUALITY_STEPS entry (a small, briefly trained model)."""
    torch.manual_seed(0)
    m = build(key, hidden=16, depth=1, ode_steps=4)
    data = torch.randn(600, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([2.0, 0.5])
    m.init_from_data(data)
    opts = m.configure_optimizers(TrainSettings(lr=1e-2, batch=128, seed=0))
    for i in range(5):
        m.step(data[i * 100:(i + 1) * 100], opts)
    untrained = build(key, hidden=16, depth=1, ode_steps=4)
    untrained.init_from_data(data)
    assert not any(k.startswith("q_") for k in untrained.metrics(data[:300]))  # a first frame skips the sweep
    out = m.metrics(data[:300])
    want = {"ode_err"} | {f"level_loss_{i}" for i in range(D.LEVEL_BINS)}
    want |= {f"q_{s}_{n}" for s in m.samplers for n in D.QUALITY_STEPS}
    assert set(out) == want
    assert out["ode_err"] >= 0
    assert all(math.isfinite(v) for v in out.values()), out
    assert all(out[f"level_loss_{i}"] > 0 for i in range(D.LEVEL_BINS))
