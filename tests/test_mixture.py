"""The mixture of Gaussians (notes 4.1): a proper density, monotone EM, working gradients."""

import math

import numpy as np
import pytest
import torch

from models import TrainSettings, build
from playground import metrics
from playground.datasets import make_split

COVS = ["full", "diagonal", "spherical"]


def fitted(cov="full", K=8, dataset="8gaussians", method="em", seed=0):
    torch.manual_seed(seed)
    d = make_split(dataset, 2000, seed=seed)
    x = torch.as_tensor(d.train)
    m = build("mog", K=K, covariance=cov, method=method)
    m.init_from_data(x)
    return m, x, d


@pytest.mark.parametrize("cov", COVS)
def test_density_integrates_to_one(cov):
    m, x, _ = fitted(cov, K=5, dataset="moons")
    xs, ys, pts = metrics.make_grid((-9, 9, -9, 9), 400)
    with torch.no_grad():
        lp = m.log_prob(torch.as_tensor(pts))
    assert abs(metrics.grid_mass(lp, metrics.cell_area(xs, ys)) - 1) < 5e-3


def test_log_prob_matches_a_hand_computed_mixture():
    m, x, _ = fitted("full", K=3, dataset="moons")
    pts = x[:10].double()
    w = torch.softmax(m.logits, 0).double()
    cov = m.covariances().double()
    dens = torch.zeros(10, dtype=torch.float64)
    for k in range(3):
        diff = pts - m.means[k].double()
        q = torch.einsum("ni,ij,nj->n", diff, torch.linalg.inv(cov[k]), diff)
        dens += w[k] * torch.exp(-0.5 * q) / (2 * math.pi * torch.sqrt(torch.linalg.det(cov[k])))
    with torch.no_grad():
        torch.testing.assert_close(m.log_prob(x[:10]).double(), torch.log(dens), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("dataset", ["moons", "25gaussians"])
def test_full_batch_em_never_decreases_training_likelihood(cov, dataset):
    m, x, _ = fitted(cov, K=10, dataset=dataset)
    m._full_batch = True
    lls = []
    with torch.no_grad():
        for _ in range(40):
            m.step(x, {})
            lls.append(float(m.log_prob(x).double().mean()))
    diffs = np.diff(lls)
    assert diffs.min() > -1e-5, diffs.min()  # float32 rounding only
    assert lls[-1] > lls[0]


def test_em_covariance_types_are_respected():
    for cov in COVS:
        m, x, _ = fitted(cov, K=4, dataset="moons")
        m._full_batch = True
        m.step(x, {})
        c = m.covariances().detach()
        if cov != "full":
            assert torch.allclose(c[:, 0, 1], torch.zeros(4), atol=1e-6)
        if cov == "spherical":
            assert torch.allclose(c[:, 0, 0], c[:, 1, 1])


def test_em_recovers_the_true_mixture():
    m, x, d = fitted("full", K=8, dataset="8gaussians")
    m._full_batch = True
    for _ in range(60):
        m.step(x, {})
    with torch.no_grad():
        nll = -float(m.log_prob(torch.as_tensor(d.test)).mean())
    true_nll = -float(np.mean(d.log_prob(d.test)))
    assert nll - true_nll < 0.05
    # every true centre has a component mean near it
    dist = torch.cdist(torch.as_tensor(d.modes, dtype=torch.float32), m.means.detach())
    assert dist.min(1).values.max() < 0.25


def test_minibatch_online_em_improves():
    m, x, d = fitted("full", K=8, dataset="moons")
    with torch.no_grad():
        before = float(m.log_prob(x).mean())
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        m._full_batch = False
        m.step(x[torch.randint(0, len(x), (128,), generator=gen)], {})
    with torch.no_grad():
        assert float(m.log_prob(x).mean()) > before + 0.05


def test_gradient_training_improves():
    m, x, d = fitted("full", K=8, dataset="moons", method="gradient")
    opts = m.configure_optimizers(TrainSettings(lr=0.02))
    with torch.no_grad():
        before = float(m.log_prob(x).mean())
    for _ in range(300):
        m.step(x[torch.randint(0, len(x), (256,))], opts)
    with torch.no_grad():
        assert float(m.log_prob(x).mean()) > before + 0.05


def test_kmeans_pp_seeds_cover_the_modes():
    m, x, d = fitted("full", K=8, dataset="8gaussians")
    dist = torch.cdist(torch.as_tensor(d.modes, dtype=torch.float32), m.means.detach())
    # each true mode has a seed within two component standard deviations
    assert (dist.min(1).values < 1.0).sum() >= 7


def test_responsibilities_are_a_posterior():
    m, x, _ = fitted("full", K=5, dataset="moons")
    with torch.no_grad():
        r = m.responsibilities(x[:100])
    assert torch.allclose(r.sum(1), torch.ones(100), atol=1e-5) and (r >= 0).all()


def test_ancestral_samples_follow_their_component():
    m, x, _ = fitted("full", K=3, dataset="moons")
    torch.manual_seed(1)
    s, z = m.sample_labeled(30000)
    w = torch.softmax(m.logits, 0)
    freq = torch.bincount(z, minlength=3).float() / len(z)
    assert torch.allclose(freq, w, atol=0.015)
    for k in range(3):
        sk = s[z == k]
        assert torch.allclose(sk.mean(0), m.means[k].detach(), atol=0.05)
        assert torch.allclose(torch.cov(sk.T), m.covariances()[k].detach(), atol=0.06)


def test_step_button_walks_e_then_m():
    m, x, _ = fitted("full", K=4, dataset="moons")
    m._full_batch = True
    before = m.means.detach().clone()
    m.substep(x, 0, {})  # E: responsibilities only
    assert torch.equal(m.means.detach(), before)
    m.substep(x, 1, {})  # M: parameters move
    assert not torch.allclose(m.means.detach(), before)
