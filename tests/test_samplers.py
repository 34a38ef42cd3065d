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
