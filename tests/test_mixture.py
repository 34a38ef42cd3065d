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
    m.full_batch = True
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
        m.full_batch = True
        m.step(x, {})
        c = m.covariances().detach()
        if cov != "full":
            assert torch.allclose(c[:, 0, 1], torch.zeros(4), atol=1e-6)
        if cov == "spherical":
            assert torch.allclose(c[:, 0, 0], c[:, 1, 1])


def test_em_recovers_the_true_mixture():
    m, x, d = fitted("full", K=8, dataset="8gaussians")
    m.full_batch = True
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
        m.full_batch = False
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


def _inertia(x, labels):
    return sum(float(((x[labels == k] - x[labels == k].mean(0)) ** 2).sum()) for k in labels.unique())


@pytest.mark.parametrize("dataset", ["checkerboard", "25gaussians"])
def test_kmeans_start_takes_the_best_of_its_refined_seedings(dataset):
    """kmeans_init: Lloyd's iterations never increase the within-cluster sum of squares of a seeding, and
    the start is the best of the five refined seedings (the same random stream drawn one at a time)."""
    from models.latent.mixture import kmeans_init

    x = torch.as_tensor(make_split(dataset, 1500, seed=0).train)
    torch.manual_seed(1)
    raw = [_inertia(x, kmeans_init(x, 8, 1, 0)) for _ in range(5)]
    torch.manual_seed(1)
    refined = [_inertia(x, kmeans_init(x, 8, 1, 10)) for _ in range(5)]  # the same five seedings, refined
    torch.manual_seed(1)
    best = _inertia(x, kmeans_init(x, 8, 5, 10))
    assert all(r <= q + 1e-6 for r, q in zip(refined, raw))
    assert best == pytest.approx(min(refined), rel=1e-9) and best < min(raw)


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
    m.full_batch = True
    before = m.means.detach().clone()
    m.substep(x, 0, {})  # E: responsibilities only
    assert torch.equal(m.means.detach(), before)
    m.substep(x, 1, {})  # M: parameters move
    assert not torch.allclose(m.means.detach(), before)


# --- issue 10: the data's scale --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["em", "gradient"])
@pytest.mark.parametrize("centre, spread", [((37.77, -122.42), 0.02), ((1000.0, 1000.0), 1.0)])
def test_default_mixture_fits_gps_like_data_and_points_far_from_the_origin(method, centre, spread):
    """Issue 10: a GPS-like CSV or points around (1000, 1000) crashed the default model at its first step (EM's
    E[x x^T] - mu mu^T cancels in float32: 1426.6 - 1426.6 for a variance of 4e-4; Cholesky failed)."""
    from models import TrainSettings
    from playground.datasets import split_array
    from playground.session import Session

    x = np.random.default_rng(0).normal(centre, spread, (1500, 2))
    sess = Session("mog", {"method": method}, split_array(x, "gps.csv"), TrainSettings(lr=0.03), device="cpu")
    assert sess.train_steps(150), sess.message
    m = sess.evaluate()
    gauss_nll = math.log(2 * math.pi) + 1 + 2 * math.log(spread)  # the true density's entropy
    assert abs(m["test_nll"] - gauss_nll) < 0.2, (m["test_nll"], gauss_nll)


@pytest.mark.parametrize("cov", COVS)
def test_em_follows_the_data_scale(cov):
    """Affine equivariance: EM on a*x + b retraces EM on x (its floor is a fraction of the data's variance,
    its statistics are computed in the standardised frame), so log p moves by exactly -2 log a."""
    d = make_split("moons", 1000, seed=0)
    x = torch.as_tensor(d.train)
    a, b = 1e3, torch.tensor([5e3, -2e3])
    fits = []
    for xs in (x, (x.double() * a + b).float()):
        torch.manual_seed(0)
        m = build("mog", K=6, covariance=cov)
        m.init_from_data(xs)
        m.full_batch = True
        for _ in range(15):
            m.step(xs, {})
        fits.append(m)
    with torch.no_grad():
        lp0 = fits[0].log_prob(x).double()
        lp1 = fits[1].log_prob((x.double() * a + b).float()).double()
    assert (lp0 - lp1 - 2 * math.log(a)).abs().max() < 1e-3
    torch.testing.assert_close(fits[1].means.double(), fits[0].means.double() * a + b.double(), rtol=0, atol=0.5)


def test_gradient_mode_has_a_covariance_floor():
    """Without a floor the likelihood is unbounded (Bishop 2006, 9.2.1): a component shrinking onto a point
    sends log p there to +infinity. The Cholesky diagonal is at least sqrt(reg) (units of the data's variance),
    so every component's density is at most 1 / (2 pi reg s^2)."""
    m, x, _ = fitted("full", K=4, dataset="moons", method="gradient")
    with torch.no_grad():
        m.log_diag.fill_(-60.0)  # what gradient ascent drives a collapsing component towards
        lp = m.log_prob(m.means.detach())
    s2 = float(x.double().var(0, unbiased=False).mean())
    bound = -math.log(2 * math.pi * m.cfg.reg * s2)
    assert math.isfinite(float(lp.max())) and float(lp.max()) <= bound + 1e-3


def test_the_session_runs_exact_em_when_the_batch_holds_every_point():
    """Batch >= the training set: the session tells the model (Model2D.full_batch), whose M-step is then
    exact; two session steps equal two full-batch EM steps from the same start (the stepwise average of
    minibatch EM, rho_t = (t + 2)^-0.6, would differ)."""
    import copy

    from playground.session import Session

    sess = Session("mog", {"method": "em"}, make_split("8gaussians", 400, seed=0), TrainSettings(batch=4096, seed=0),
                   device="cpu")
    ref = copy.deepcopy(sess.model)
    ref.full_batch = True
    for _ in range(2):
        ref.step(sess.train_x, {})
    assert sess.train_steps(2) and sess.model.full_batch
    for (name, a), b in zip(sess.model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
