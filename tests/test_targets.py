"""Target densities: the torch versions used for reverse KL and Langevin match the datasets'."""

import numpy as np
import pytest
import torch

from models import targets
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
