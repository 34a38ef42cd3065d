"""Target densities: the torch versions used for reverse KL and Langevin match the datasets'."""

import numpy as np
import pytest
import torch

from playground import densities as targets
from playground.datasets import DATASETS

WITH_DENSITY = [n for n, d in DATASETS.items() if d.has_density() and n != "checkerboard"]


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_torch_log_density_matches_the_dataset(name):
    ds = DATASETS[name]
    x = ds.sample(200, np.random.default_rng(0))
    fn = targets.dataset_log_prob(name, ds.noise)
    assert fn is not None
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    lp = fn(xt)
    np.testing.assert_allclose(lp.detach().numpy(), ds.log_prob(x, ds.noise), atol=1e-4)
    lp.sum().backward()  # differentiable: Langevin and reverse KL need the score
    assert torch.isfinite(xt.grad).all()


@pytest.mark.parametrize("name", list(targets.ENERGIES))
def test_energy_targets_are_normalised_and_sampled_faithfully(name):
    g = np.linspace(-6, 6, 601)
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    mass = np.exp(targets.log_prob(name, xx)).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 0.01
    # samples land where the density is: their mean log-density matches the density's own
    # expectation computed on the grid (E_p[log p] = -entropy)
    s = targets.sample(name, 20000, np.random.default_rng(0))
    p = np.exp(targets.log_prob(name, xx))
    expected = (p * targets.log_prob(name, xx)).sum() * (g[1] - g[0]) ** 2
    assert abs(targets.log_prob(name, s).mean() - expected) < 0.05


def test_unknown_dataset_has_no_target():
    assert targets.dataset_log_prob("moons", 0.1) is None


# --- the anisotropic mixture: unequal weights, rotated and elongated components -----------------------

def test_anisomix_density_matches_an_independent_mixture_and_integrates_to_one():
    """The closed form written in each component's own axes equals torch's MixtureSameFamily over
    MultivariateNormal built from aniso_params, and sums to 1 over a grid fine enough for the
    thinnest component (short-axis std 0.12 at the default noise)."""
    noise = DATASETS["anisomix"].noise
    w, mu, cov = targets.aniso_params(noise)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.tensor(w)),
        torch.distributions.MultivariateNormal(torch.tensor(mu), covariance_matrix=torch.tensor(cov)))
    x = torch.tensor(np.random.default_rng(1).uniform(-5, 5, (500, 2)))
    torch.testing.assert_close(targets.aniso_log_prob(x, noise), ref.log_prob(x), atol=1e-10, rtol=1e-10)
    g = np.linspace(-8, 8, 1601)
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    mass = np.exp(DATASETS["anisomix"].log_prob(xx, noise)).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 1e-3


def test_anisomix_is_unequal_and_anisotropic():
    w, _, cov = targets.aniso_params(0.15)
    assert w.max() / w.min() > 4
    eig = np.linalg.eigvalsh(cov)
    assert (np.sqrt(eig[:, 1] / eig[:, 0]) > 2).all()  # every component elongated, up to 10:1
    major = np.linalg.eigh(cov)[1][:, :, 1]  # the long axis of each component
    angles = np.degrees(np.arctan2(major[:, 1], major[:, 0])) % 180
    assert np.ptp(angles) > 45  # and not all along one direction


@pytest.mark.parametrize("noise", [0.15, 0.6])
def test_anisomix_sampler_matches_its_moments(noise):
    """Mean Σ w_k m_k and covariance Σ w_k (Σ_k + m_k m_kᵀ) − mean meanᵀ of the samples, within a few
    standard errors, and the component weights recovered by which component is nearest in density."""
    w, mu, cov = targets.aniso_params(noise)
    x = DATASETS["anisomix"].sample(200_000, np.random.default_rng(0), noise).astype(np.float64)
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
    true_cov = second - np.outer(mean, mean)
    se = np.sqrt(np.diag(true_cov) / len(x))
    assert (np.abs(x.mean(0) - mean) < 5 * se).all()
    np.testing.assert_allclose(np.cov(x.T), true_cov, atol=0.03)
    comp = np.stack([-0.5 * np.einsum("ni,ij,nj->n", x - m, np.linalg.inv(c), x - m) - 0.5 * np.log(np.linalg.det(c))
                     for m, c in zip(mu, cov)], 1)
    frac = np.bincount(comp.argmax(1), minlength=len(w)) / len(x)
    np.testing.assert_allclose(frac, w, atol=0.02 if noise < 0.5 else 0.06)


def test_the_dataset_densities_match_torch_distributions():
    """Written once for numpy and torch, each is checked against an independent reference (float64)."""
    from torch import distributions as Dist

    from playground import densities

    x = torch.randn(300, 2, dtype=torch.float64) * 2
    for name, centres in (("8gaussians", densities.eight_centres()), ("25gaussians", densities.grid_centres())):
        c = torch.as_tensor(centres, dtype=torch.float64)
        ref = Dist.MixtureSameFamily(Dist.Categorical(torch.ones(len(c), dtype=torch.float64)),
                                     Dist.Independent(Dist.Normal(c, 0.3), 1))
        torch.testing.assert_close(densities.DENSITIES[name](x, 0.3), ref.log_prob(x))
    a, b, s1, s = densities.BANANA_A, densities.BANANA_B, densities.BANANA_S1, 0.4
    ref = Dist.Normal(0.0, s1).log_prob(x[:, 0]) + Dist.Normal(a * x[:, 0] ** 2 + b, s).log_prob(x[:, 1])
    torch.testing.assert_close(densities.banana_log_prob(x, s), ref)
    cov = torch.as_tensor(densities.GAUSS_COV, dtype=torch.float64) * 0.7 ** 2
    ref = Dist.MultivariateNormal(torch.zeros(2, dtype=torch.float64), covariance_matrix=cov).log_prob(x)
    torch.testing.assert_close(densities.gaussian_log_prob(x, 0.7), ref)
    np.testing.assert_allclose(densities.gaussian_log_prob(x.numpy(), 0.7), ref.numpy(), rtol=1e-12)


def test_the_densities_module_does_not_import_torch():
    """The data layer and the command line's argument checks load it without torch."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from playground import densities, datasets; "
            "datasets.make_split('u2', 100); densities.DENSITIES['banana'](np.zeros((2, 2)), 0.3); "
            "assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
