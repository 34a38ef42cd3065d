"""The VAE (notes 4.2-4.5): its bounds, its gradients, and the exact log p(x) by latent quadrature."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributions as D

from models import TrainSettings, build
from models import vae_quadrature as Q
from models.vae import kl_to_standard_normal
from playground import metrics, plots, views
from playground.datasets import make_split
from playground.session import Session, Snapshot
from playground.views import latent as V

ROOT = Path(__file__).resolve().parent.parent


def train(dataset="moons", steps=1500, **cfg):
    sess = Session("vae", cfg, make_split(dataset, 2000, seed=0), TrainSettings(lr=3e-3, batch=256), device="cpu")
    assert sess.train_steps(steps)
    return sess


@pytest.fixture(scope="module")
def trained():
    return train()


@pytest.fixture(scope="module")
def trained_1d():
    return train(steps=800, latent_dim=1)


def test_kl_term_matches_the_closed_form_for_diagonal_gaussians():
    torch.manual_seed(1)
    m, s = torch.randn(50, 2, dtype=torch.float64), torch.rand(50, 2, dtype=torch.float64) * 2 + 0.05
    ref = D.kl_divergence(D.Normal(m, s), D.Normal(torch.zeros_like(m), torch.ones_like(s))).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(m, s), ref)
    # and it is the KL the model's loss logs: E_q[log q - log p(z)] by Monte Carlo agrees
    z = m + s * torch.randn(20000, 50, 2, dtype=torch.float64)
    mc = (D.Normal(m, s).log_prob(z) - D.Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(mc, ref, atol=0.05)


def test_reparameterised_gradients_match_finite_differences():
    """With eps fixed, the ELBO estimate is a smooth function of all parameters (notes 4.4.3): its
    autograd gradient must match central differences along random directions."""
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("moons", 300, seed=1).train[:64]).double()
    model = build("vae")
    model.init_from_data(x.float())
    model.double()
    params = [p for p in model.parameters() if p.requires_grad]

    def elbo() -> torch.Tensor:
        gen = torch.Generator().manual_seed(7)
        log_px_z, _, kl = model._log_weights(x, 4, gen)
        return (log_px_z.mean(1) - kl).mean()

    grads = torch.autograd.grad(elbo(), params)
    for trial in range(3):
        direction = [torch.randn_like(p) for p in params]
        analytic = sum((g * d).sum() for g, d in zip(grads, direction))
        step = 1e-5
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(step * d)
            up = elbo()
            for p, d in zip(params, direction):
                p.sub_(2 * step * d)
            down = elbo()
            for p, d in zip(params, direction):
                p.add_(step * d)
        numeric = (up - down) / (2 * step)
        assert float(abs(numeric - analytic)) <= 1e-6 * max(1.0, float(abs(analytic))), (trial, numeric, analytic)


def test_elbo_below_iwae_below_exact_log_likelihood_on_a_trained_model(trained):
    model, x = trained.model, trained.test_x
    with torch.no_grad():
        logp = float(model.log_prob(x).double().mean())
        b = model.bounds(x, k=256)
        iwae = {k: float(model.bounds(x, k=k)["iwae"].double().mean()) for k in (1, 8)}
    elbo, iwae[256] = float(b["elbo"].double().mean()), float(b["iwae"].double().mean())
    assert abs(iwae[1] - elbo) < 0.1  # one importance sample: an ELBO estimate (1 sample per point)
    assert elbo < iwae[8] - 0.005 and iwae[8] < iwae[256]  # more samples, a tighter bound
    assert iwae[256] <= logp + 2e-3  # ... but still a lower bound on the exact log p(x)
    assert logp - elbo > 0.005  # the gap KL(q || p(z|x)) is there
    m = model.metrics(x)
    assert {"test_elbo", "test_iwae", "test_kl", "test_recon", "quad_check"} <= set(m)
    assert m["test_elbo"] < m["test_iwae"] <= logp + 2e-3
    assert m["test_elbo"] == pytest.approx(m["test_recon"] - m["test_kl"], abs=1e-4)


@pytest.mark.parametrize("which", ["trained", "trained_1d"])
def test_density_integrates_to_one_over_the_data_plane(which, request):
    sess = request.getfixturevalue(which)
    xs, ys, pts = metrics.make_grid((-9, 9, -9, 9), 300)
    with torch.no_grad():
        lp = sess.model.log_prob(torch.as_tensor(pts))
    assert torch.isfinite(lp).all()
    assert abs(metrics.grid_mass(lp, metrics.cell_area(xs, ys)) - 1) < 0.01


def test_quadrature_agrees_with_a_grid_twice_as_fine(trained):
    model = trained.model
    with torch.no_grad():
        fine = Q.LatentGrid(2, 2 * model.latent.per_axis)
        mu, log_sig = model.decode(fine.nodes)
        xs = model.std(trained.test_x).double()
        ref = Q._dense(xs, Q._node_coefficients(mu.double(), log_sig.double(), fine.subgrid(1).log_w.double()))
        ours = model.log_prob(trained.test_x).double() - model.std.log_det().double()
    assert float((ours - ref).abs().mean()) < 1e-3
    assert model.quadrature()["check"] <= Q.TOL_MEAN


@pytest.mark.parametrize("which", ["trained", "trained_1d"])
def test_pruned_sums_equal_the_full_sum(which, request):
    """The tile pruning (arbitrary points and regular grids) drops under 1e-6 of p(x)."""
    model = request.getfixturevalue(which).model
    data = make_split("moons", 2000, seed=3)
    _, _, pts = metrics.make_grid(data.box, 100)
    with torch.no_grad():
        q = model.quadrature()
        coef = Q._node_coefficients(q["mu"].double(), q["log_sig"].double(), q["grid"].log_w.double())
        for x in (torch.as_tensor(pts), torch.as_tensor(data.train), torch.randn(700, 2) * 3):
            xs = model.std(x)
            full = Q._dense(xs.double(), coef)
            pruned = Q.log_marginal(xs, q["mu"], q["log_sig"], q["grid"]).double()
            assert float((pruned - full).abs().max()) < 5e-4  # float32 rounding of the terms


def test_log_prob_is_differentiable_and_cached_per_weights(trained):
    model = trained.model
    x = trained.test_x[:20].clone().requires_grad_(True)
    lp = model.log_prob(x)
    (g,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with torch.no_grad():
        before = model.log_prob(trained.test_x[:20])
        for p in model.decoder.parameters():  # an in-place change, as a fused optimiser makes
            p.mul_(1.01)
        after = model.log_prob(trained.test_x[:20])
        for p in model.decoder.parameters():
            p.div_(1.01)
    assert not torch.allclose(before, after)


def test_estimators_are_unbiased_for_the_grid_likelihood(trained):
    """Naive Monte Carlo (z uniform) and importance sampling (z ~ q) average to p(x) (notes 4.3.2-4.3.3),
    the IS spread is far smaller, and the mean of log IS estimates (IWAE_k) rises towards log p(x)."""
    snap = trained.snapshot()
    p = snap.probe
    x = snap.train[3].astype(np.float64)
    terms = V.node_terms(p, x)
    log_px = float(V._logsumexp(terms))
    spreads = [V.estimator_spread(terms, V.q_log_mass(p, 3), seed=s) for s in range(20)]
    for key in ("naive", "is"):
        k1000 = np.concatenate([sp[key][:, -1] for sp in spreads])
        assert np.mean(np.exp(k1000 - log_px)) == pytest.approx(1.0, abs=0.15 if key == "naive" else 0.01)
    is_ = np.concatenate([sp["is"] for sp in spreads])
    naive = np.concatenate([sp["naive"] for sp in spreads])
    assert np.std(is_[:, 4]) < 0.2 * np.std(naive[:, 4])  # k = 20
    means = is_.mean(0)
    assert np.all(np.diff(means) > -0.01) and means[-1] <= log_px + 1e-3
    with torch.no_grad():
        assert abs(log_px - float(trained.model.log_prob(torch.as_tensor(x[None]).float()))) < 1e-3


@pytest.mark.parametrize("which", ["trained", "trained_1d"])
def test_views_render_every_panel(which, request):
    sess = request.getfixturevalue(which)
    snap = sess.snapshot()
    for point in (0, 17, 10**6):
        figs = views.render(snap, point=point)
        assert set(figs) == {"main", "samples", "curves", "extra", "latent", "manifold", "posterior", "estimator"}
        for fig in figs.values():
            json.loads(plots.to_json(fig))
    post = V.node_terms(snap.probe, snap.train[17].astype(np.float64))
    assert np.exp(post - V._logsumexp(post)).sum() == pytest.approx(1.0)
    # the gap shown for the chosen point is log p(x) - ELBO = KL(q || p(z|x)) >= 0
    gaps = [float(V._logsumexp(t)) - V.point_elbo(snap.probe, i, t)
            for i, t in ((i, V.node_terms(snap.probe, snap.train[i].astype(np.float64))) for i in range(30))]
    assert min(gaps) > -1e-3
    empty = views.render(Snapshot(step=0, status="idle", message="", model_key="vae", family="latent",
                                  density="exact", box=snap.box, train=snap.train, test=snap.test))
    assert "press Train" in json.dumps(empty["latent"]["layout"]["annotations"])


def test_cli_reports_exact_nll_beside_the_bounds():
    r = subprocess.run([sys.executable, "-m", "playground", "train", "vae", "--dataset", "moons", "--steps", "300",
                        "--json", "--set", "grid=64"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PLAYGROUND_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["metrics"]
    assert {"test_nll", "test_elbo", "test_iwae", "test_kl", "quad_check"} <= set(out)
    assert math.isfinite(out["test_nll"])
    assert out["test_elbo"] < out["test_iwae"] <= -out["test_nll"] + 2e-3
