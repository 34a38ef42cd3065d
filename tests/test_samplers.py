"""Langevin, MALA and Metropolis–Hastings recover a known Gaussian (notes 7.3.1–7.3.2), and the
split R-hat tells mixed chains from stuck ones."""

import math

import numpy as np
import pytest
import torch

from models.samplers import ChainTracker, log_prob_and_score, run_chains, split_rhat

MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
PREC = torch.linalg.inv(COV)


def gaussian_energy(x):
    """A quadratic f(x) = -½ (x-μ)ᵀ Σ⁻¹ (x-μ): p ∝ exp(f) is N(μ, Σ)."""
    d = x - MEAN
    return -0.5 * ((d @ PREC) * d).sum(1)


def moments(x):
    return x.mean(0), torch.cov(x.T)


@pytest.mark.parametrize("method,kw,tol", [
    ("langevin", dict(step_size=0.02, n_steps=600), 0.04),  # unadjusted: bias O(ε) in the covariance
    ("mala", dict(step_size=0.2, n_steps=300), 0.03),  # big steps, exact thanks to the accept/reject
    ("mh", dict(proposal_std=0.8, n_steps=400), 0.03),
])
def test_sampler_recovers_gaussian_mean_and_covariance(method, kw, tol):
    torch.manual_seed(0)
    x0 = 3.0 * torch.randn(4000, 2)  # far from the target: the chains must travel
    run = run_chains(gaussian_energy, x0, method, **kw)
    mean, cov = moments(run.x)
    torch.testing.assert_close(mean, MEAN, atol=tol, rtol=0)
    torch.testing.assert_close(cov, COV, atol=2 * tol, rtol=0)
    if method == "langevin":
        assert math.isnan(run.accept_rate)
    else:
        assert 0.2 < run.accept_rate < 0.95


def test_unadjusted_langevin_is_biased_for_big_steps_and_mala_fixes_it():
    """ULA with a big ε samples a wider distribution; MALA's correction removes the bias."""
    torch.manual_seed(1)
    x0 = torch.randn(4000, 2) @ torch.linalg.cholesky(COV).T + MEAN
    ula = run_chains(gaussian_energy, x0, "langevin", n_steps=200, step_size=0.3)
    mala = run_chains(gaussian_energy, x0, "mala", n_steps=200, step_size=0.3)
    tr = torch.trace(COV)
    assert torch.trace(moments(ula.x)[1]) > 1.15 * tr
    assert abs(torch.trace(moments(mala.x)[1]) - tr) < 0.06 * tr


def test_score_is_the_input_gradient_even_under_inference_mode():
    x = torch.randn(5, 2)
    with torch.inference_mode():
        lp, g = log_prob_and_score(gaussian_energy, x)
    torch.testing.assert_close(lp, gaussian_energy(x))
    torch.testing.assert_close(g, -(x - MEAN) @ PREC)


def test_recorded_paths_follow_the_first_chains():
    torch.manual_seed(0)
    run = run_chains(gaussian_energy, torch.zeros(50, 2), "mh", n_steps=30, proposal_std=0.5, record=4)
    assert run.path.shape == (31, 4, 2)
    torch.testing.assert_close(run.path[-1], run.x[:4])
    assert (run.path[1:] != run.path[:-1]).any()


def test_split_rhat_near_one_when_mixed_and_large_when_stuck():
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(400, 8, 2))
    assert split_rhat(mixed) < 1.05
    stuck = mixed * 0.1 + np.arange(8)[None, :, None]  # each chain in its own place
    assert split_rhat(stuck) > 2.0
    drifting = mixed * 0.1 + np.linspace(0, 5, 400)[:, None, None]  # a trend: halves disagree
    assert split_rhat(drifting) > 2.0
    assert math.isnan(split_rhat(mixed[:4]))


def test_tracker_keeps_a_window_of_recent_steps():
    tr = ChainTracker(k=3, window=10)
    for i in range(5):
        tr.add(np.full((4, 3, 2), i, np.float32))
    assert tr.path.shape == (10, 3, 2)
    assert tr.path[-1, 0, 0] == 4 and tr.path[0, 0, 0] == 2


def test_sandbox_chains_reach_the_target_and_report_their_state():
    from models.samplers import SamplerSandbox
    from playground.metrics import energy_distance

    torch.manual_seed(0)
    sb = SamplerSandbox(gaussian_energy, (-4, 4, -4, 4), "gaussian", n_chains=400)
    start = sb.state()
    assert start["steps"] == 0 and start["paths"].shape == (1, 8, 2)
    sb.configure("mala", 0.1, 0.3)
    sb.advance(150)
    s = sb.state()
    assert s["steps"] == 150 and s["paths"].shape == (151, 8, 2)
    assert 0.3 < s["accept"] < 1.0
    # the grid's exact samples are the yardstick: moments of N(MEAN, COV)
    ref = torch.as_tensor(s["reference"])
    torch.testing.assert_close(ref.mean(0), MEAN, atol=0.08, rtol=0)
    assert energy_distance(s["x"], s["reference"]) < 0.02 < energy_distance(start["x"], s["reference"])


def test_mala_with_a_noise_scale_below_one_still_samples_the_target():
    """MALA's proposal N(x + ε∇f, 2εs²I) with s ≠ 1: the accept/reject uses the same s in q(x|x'), so
    N(μ, Σ) stays the chains' distribution (a q with variance 2ε, the s = 1 one, shrinks the covariance
    to about a third in this run). Cold proposals mix slowly from far away, hence the start at p."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4000, 2, generator=g) @ torch.linalg.cholesky(COV).T + MEAN
    run = run_chains(gaussian_energy, x0, "mala", n_steps=400, step_size=0.2, noise_scale=0.5, generator=g)
    mean, cov = moments(run.x)
    torch.testing.assert_close(mean, MEAN, atol=0.05, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.06, rtol=0)
    assert 0.3 < run.accept_rate < 0.95
    assert (run.x != x0).any(1).float().mean() > 0.95


def test_mala_with_zero_noise_scale_does_not_freeze():
    """s = 0 made the proposal variance 0 and log α = 0/0 = NaN: every move was rejected. MALA floors s
    at MALA_MIN_NOISE, so its chains move, accept a fair share, and still sample N(μ, Σ)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4000, 2, generator=g) @ torch.linalg.cholesky(COV).T + MEAN  # at the target already
    run = run_chains(gaussian_energy, x0, "mala", n_steps=300, step_size=0.05, noise_scale=0.0, generator=g)
    assert torch.isfinite(run.x).all()
    assert run.accept_rate > 0.2, run.accept_rate
    assert (run.x != x0).any(1).float().mean() > 0.9  # nearly every chain moved
    mean, cov = moments(run.x)
    torch.testing.assert_close(mean, MEAN, atol=0.05, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.1, rtol=0)


@pytest.mark.parametrize("method,kw,tol", [("langevin", dict(step_size=0.002), 0.02),
                                           ("mala", dict(step_size=0.01), 0.01), ("mh", dict(proposal_std=0.3), 0.01)])
def test_every_sampler_rejects_moves_out_of_the_box(method, kw, tol):
    """f(x) = 4·x₁ on the box [0, 1]²: the truncated density piles up against the face x₁ = 1. A move
    that would leave the box is rejected by every sampler, so no chain sits *on* the face (clipping put a
    point mass there) and the chains' mean is the truncated exponential's, 1/(1 − e⁻⁴) − 1/4."""
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.zeros(2), torch.ones(2)
    x0 = torch.rand(4000, 2, generator=g)
    run = run_chains(lambda x: 4.0 * x[:, 0], x0, method, n_steps=400, bounds=(lo, hi), generator=g, **kw)
    assert ((run.x >= lo) & (run.x <= hi)).all()
    assert (run.x[:, 0] == 1.0).float().mean() < 0.001  # no point mass on the face
    expected = 1 / (1 - math.exp(-4)) - 0.25
    assert run.x[:, 0].mean().item() == pytest.approx(expected, abs=tol)
    assert run.x[:, 1].mean().item() == pytest.approx(0.5, abs=0.02)  # uniform in x₂


def test_a_generator_makes_the_chains_reproducible_and_leaves_the_global_rng_alone():
    x0 = torch.zeros(100, 2)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    runs = [run_chains(gaussian_energy, x0, m, n_steps=5, generator=torch.Generator().manual_seed(3))
            for m in ("mala", "mala", "mh", "langevin")]
    torch.testing.assert_close(runs[0].x, runs[1].x)
    assert torch.equal(torch.get_rng_state(), before)


def test_grid_density_integrates_and_samples_a_gaussian_exactly():
    """exp(f) of N(μ, Σ) on a grid of a box that holds it: log Z is log(2π|Σ|^½) (the trapezoid rule on a
    smooth, vanishing integrand), and the grid's exact samples have the Gaussian's moments."""
    from models.samplers import GridDensity

    lo, hi = torch.tensor([-4.0, -5.0]), torch.tensor([6.0, 4.0])
    grid = GridDensity.evaluate(gaussian_energy, lo, hi, 96)
    true_log_z = math.log(2 * math.pi) + 0.5 * math.log(torch.linalg.det(COV).item())
    assert grid.log_z == pytest.approx(true_log_z, abs=1e-5)  # f in float32
    assert grid.log_z_err < 1e-3
    x = grid.sample(40000, torch.Generator().manual_seed(0))
    assert ((x >= lo) & (x <= hi)).all()
    mean, cov = moments(x)
    torch.testing.assert_close(mean, MEAN, atol=0.02, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.03, rtol=0)


def test_grid_density_sampler_inverts_the_bilinear_cdf():
    """Inside a cell the sampler draws from the bilinear density of the 4 corners: on a 1-cell grid with
    corner weights (1, 3, 0, 2), the offsets' means are those of that density (∫∫ s·p / ∫∫ p)."""
    from models.samplers import GridDensity, _linear_icdf

    u = torch.linspace(0, 0.999, 50, dtype=torch.float64)
    for a, b in ((1.0, 3.0), (2.0, 2.0), (0.0, 1.0), (1.0, 0.0)):
        t = _linear_icdf(torch.full_like(u, a), torch.full_like(u, b), u)
        cdf = (a * t + (b - a) * t * t / 2) / ((a + b) / 2)  # F(t) of p ∝ a(1 − t) + b t
        torch.testing.assert_close(cdf, u)
    w = torch.tensor([[1.0, 3.0], [0.0, 2.0]]).log()  # w[y, x]: w00 = 1, w10 = 3, w01 = 0, w11 = 2
    grid = GridDensity(w, torch.zeros(2), torch.ones(2))
    assert grid.log_z == pytest.approx(math.log(6 / 4))
    x = grid.sample(200000, torch.Generator().manual_seed(0)).double()
    # mean of s under p ∝ Σ w_ij s^i(1-s)^(1-i) t^j(1-t)^(1-j): ∫ s p = (w00+w01)/12·... computed exactly:
    ws = {(0, 0): 1.0, (1, 0): 3.0, (0, 1): 0.0, (1, 1): 2.0}
    z = sum(ws.values()) / 4
    es = sum(v * (1 / 3 if i else 1 / 6) * 0.5 for (i, j), v in ws.items()) / z
    et = sum(v * (1 / 3 if j else 1 / 6) * 0.5 for (i, j), v in ws.items()) / z
    assert x[:, 0].mean().item() == pytest.approx(es, abs=3e-3)
    assert x[:, 1].mean().item() == pytest.approx(et, abs=3e-3)
