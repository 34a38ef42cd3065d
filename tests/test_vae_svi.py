"""Per-point variational inference (notes 4.4.1): gradient steps on one point's own ELBO never lower it, its
gradient is the ELBO's, and on a linear-Gaussian model (whose posterior is Gaussian) it closes the whole gap."""

import numpy as np
import pytest

from playground import vae_svi


def _grid(half=4.5, n=91):
    axis = np.linspace(-half, half, n)
    z1, z2 = np.meshgrid(axis, axis, indexing="xy")
    return np.stack([z1.ravel(), z2.ravel()], 1), axis[1] - axis[0]


def _linear_gaussian(x, W, b, sigma, nodes):
    """log p(x | z) of a linear decoder x ~ N(Wz + b, σ² I)."""
    mu = nodes @ W.T + b
    return (-0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)).sum(1)


def test_the_gradient_is_the_grid_elbos():
    nodes, h = _grid(n=61)
    rng = np.random.default_rng(0)
    recon = -0.5 * ((nodes - [0.7, -0.4]) ** 2 / [0.3, 0.8]).sum(1) + 0.1 * rng.standard_normal(len(nodes))
    m, ls = np.array([0.2, 0.1]), np.log(np.array([0.6, 0.9]))
    _, g_m, g_ls = vae_svi._value_and_grad(nodes, recon, m, ls)
    eps = 1e-6
    for d in range(2):
        e = np.eye(2)[d] * eps
        fd_m = (vae_svi.elbo(nodes, recon, m + e, ls) - vae_svi.elbo(nodes, recon, m - e, ls)) / (2 * eps)
        fd_s = (vae_svi.elbo(nodes, recon, m, ls + e) - vae_svi.elbo(nodes, recon, m, ls - e)) / (2 * eps)
        assert fd_m == pytest.approx(g_m[d], rel=1e-5, abs=1e-7)
        assert fd_s == pytest.approx(g_ls[d], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svi_never_lowers_the_points_elbo_and_closes_a_linear_gaussians_gap(seed):
    """A linear decoder with a diagonal-posterior-friendly W: p(z|x) is Gaussian with a diagonal covariance, so the
    best diagonal q is the posterior itself and the approximation gap is ~0; SVI from a poor q must climb to
    log p(x), never stepping down."""
    rng = np.random.default_rng(seed)
    nodes, h = _grid()
    W = np.diag(rng.uniform(0.8, 1.5, 2))
    b, sigma = rng.normal(0, 0.3, 2), 0.5
    x = rng.normal(0, 1.0, 2)
    recon = _linear_gaussian(x, W, b, sigma, nodes)
    log_w = -0.5 * (nodes ** 2).sum(1) - np.log(2 * np.pi) + 2 * np.log(h)
    terms = log_w + recon
    top = terms.max()
    log_px = float(top + np.log(np.exp(terms - top).sum()))
    out = vae_svi.refine(nodes, recon, np.array([1.5, -1.5]), np.array([1.2, 0.3]), h, iterations=300)
    path = out["path"]
    assert np.all(np.diff(path) >= -1e-12), "an SVI step lowered the ELBO"
    assert path[-1] > path[0] + 0.5  # it got somewhere from the poor start
    assert log_px - path[-1] < 2e-3  # Gaussian posterior: the approximation gap vanishes
    cov = np.linalg.inv(np.eye(2) + W.T @ W / sigma ** 2)  # the exact posterior
    mean = cov @ W.T @ (x - b) / sigma ** 2
    assert np.allclose(out["m"], mean, atol=2e-2) and np.allclose(out["s"], np.sqrt(np.diag(cov)), atol=2e-2)


def test_a_correlated_posterior_leaves_an_approximation_gap():
    """W with off-diagonal mixing: p(z|x) is a correlated Gaussian, the best diagonal q cannot match it, and the
    gap left is KL(q* ‖ p(z|x)) > 0 — SVI removes the amortisation part only."""
    nodes, h = _grid()
    W, b, sigma, x = np.array([[1.0, 0.9], [0.9, 1.0]]), np.zeros(2), 0.3, np.array([0.5, 0.2])
    recon = _linear_gaussian(x, W, b, sigma, nodes)
    log_w = -0.5 * (nodes ** 2).sum(1) - np.log(2 * np.pi) + 2 * np.log(h)
    terms = log_w + recon
    log_px = float(terms.max() + np.log(np.exp(terms - terms.max()).sum()))
    out = vae_svi.refine(nodes, recon, np.zeros(2), np.ones(2), h, iterations=300)
    cov = np.linalg.inv(np.eye(2) + W.T @ W / sigma ** 2)
    # the best diagonal Gaussian for a Gaussian p under KL(q ‖ p) has precision diag(cov⁻¹): its gap in closed form
    prec = np.linalg.inv(cov)
    s2 = 1.0 / np.diag(prec)
    gap = 0.5 * (np.sum(s2 * np.diag(prec)) - 2 + np.log(np.linalg.det(cov)) - np.sum(np.log(s2)))
    assert gap > 0.1
    assert log_px - out["path"][-1] == pytest.approx(gap, abs=5e-3)
