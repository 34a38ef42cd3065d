"""Energy-based models (notes ch. 7): the objectives on energies with known answers, the models'
chains and extras, grid normalisation, and the views."""

import math

import numpy as np
import pytest
import torch

from models import build
from models import ebm_losses as L
from models.ebm import N_TRACKED
from playground import plots, views
from playground.datasets import make_split
from playground.session import Session

TRUE_MEAN = torch.tensor([0.5, -1.0])
TRUE_COV = torch.tensor([[1.5, 0.7], [0.7, 1.0]])


def gaussian_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(TRUE_COV).T + TRUE_MEAN


class QuadraticEnergy(torch.nn.Module):
    """f(x) = −½ (x − μ)ᵀ P (x − μ) with P = A Aᵀ + 1e-3 I (positive definite): a Gaussian's energy."""

    def __init__(self, mean, prec):
        super().__init__()
        self.mean = torch.nn.Parameter(mean.clone())
        self.chol = torch.nn.Parameter(torch.linalg.cholesky(prec).contiguous())

    def prec(self):
        a = torch.tril(self.chol)
        return a @ a.T

    def forward(self, x):
        d = x - self.mean
        return -0.5 * ((d @ self.prec()) * d).sum(1)


def test_exact_score_matching_of_a_gaussian_energy_is_minimised_at_the_true_parameters():
    """For a Gaussian energy the objective is E[½‖P(x−μ)‖²] − tr P, minimised exactly at the sample
    mean and the inverse sample covariance (Hyvärinen 2005, notes 7.4)."""
    x = gaussian_data(20000)
    f = QuadraticEnergy(torch.zeros(2), torch.eye(2))
    opt = torch.optim.LBFGS(f.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = L.exact_score_matching(f, x)
        loss.backward()
        return loss

    opt.step(closure)
    emp_mean, emp_cov = x.mean(0), torch.cov(x.T, correction=0)
    torch.testing.assert_close(f.mean.detach(), emp_mean, atol=1e-3, rtol=0)
    torch.testing.assert_close(f.prec().detach(), torch.linalg.inv(emp_cov), atol=1e-3, rtol=0)
    torch.testing.assert_close(emp_mean, TRUE_MEAN, atol=0.03, rtol=0)  # and those are the truth
    # the value at the optimum is -½ tr P (closed form), and any perturbation is worse
    at_best = L.exact_score_matching(f, x).item()
    assert at_best == pytest.approx(-0.5 * torch.trace(f.prec()).item(), rel=1e-3)
    with torch.no_grad():
        f.mean += torch.tensor([0.1, 0.0])
    assert L.exact_score_matching(f, x).item() > at_best + 1e-3


def test_exact_hessian_trace_against_a_closed_form():
    f = QuadraticEnergy(TRUE_MEAN, torch.linalg.inv(TRUE_COV))
    x = gaussian_data(4000)
    prec = f.prec().detach()
    d = x - TRUE_MEAN
    expected = (0.5 * ((d @ prec) ** 2).sum(1)).mean() - torch.trace(prec)
    torch.testing.assert_close(L.exact_score_matching(f, x), expected, atol=1e-4, rtol=1e-4)


def test_sliced_score_matching_is_unbiased_for_the_exact_objective():
    f = QuadraticEnergy(TRUE_MEAN, torch.linalg.inv(TRUE_COV))
    x = gaussian_data(4000)
    torch.manual_seed(0)
    exact = L.exact_score_matching(f, x).item()
    sliced = L.sliced_score_matching(f, x, n_projections=50).item()
    assert sliced == pytest.approx(exact, abs=0.03)


def test_denoising_score_matching_learns_the_blurred_gaussian():
    """DSM's optimum is the score of data + N(0, σ²I): for Gaussian data, covariance Σ + σ²I."""
    torch.manual_seed(0)
    x = gaussian_data(20000)
    sigma = 0.5
    f = QuadraticEnergy(torch.zeros(2), torch.eye(2))
    opt = torch.optim.Adam(f.parameters(), lr=0.03)
    for _ in range(600):
        opt.zero_grad()
        L.denoising_score_matching(f, x[torch.randint(0, len(x), (2000,))], sigma).backward()
        opt.step()
    cov = torch.linalg.inv(f.prec().detach())
    torch.testing.assert_close(cov, TRUE_COV + sigma ** 2 * torch.eye(2), atol=0.12, rtol=0)


def test_nce_recovers_the_log_partition_function_of_a_known_energy():
    """With f fixed to an unnormalised Gaussian, NCE's free log Z converges to log ∫exp(f) (notes 7.5)."""
    torch.manual_seed(0)
    s = 0.7
    true_log_z = math.log(2 * math.pi * s * s)

    def f(x):
        return -0.5 * (x ** 2).sum(1) / s ** 2

    log_z = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([log_z], lr=0.05)
    for _ in range(400):
        x = s * torch.randn(2000, 2)
        y = 1.5 * torch.randn(2000, 2)
        loss = L.nce_loss(f(x), f(y), L.gaussian_log_prob(x, 1.5), L.gaussian_log_prob(y, 1.5), log_z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert log_z.item() == pytest.approx(true_log_z, abs=0.05)


def test_nce_model_learned_log_z_matches_the_grid():
    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 32}, make_split("gaussian", 3000, seed=0), device="cpu")
    sess.settings.lr = 3e-3
    assert sess.train_steps(1500)
    out = sess.evaluate()
    assert out["log_z_nce"] == pytest.approx(out["log_z_grid"], abs=0.15)
    assert out["test_nll"] < out["data_nll"] + 0.15  # and the density is close to the true one


def test_contrastive_divergence_gradient_is_data_minus_samples():
    """∇θ of the CD loss is −(∇θ f(x_train) − E[∇θ f(x_sample)]) (notes 7.3)."""
    f = QuadraticEnergy(TRUE_MEAN, torch.eye(2))
    x, neg = gaussian_data(64), torch.randn(64, 2)
    L.contrastive_divergence(f(x), f(neg)).backward()
    g = f.mean.grad.clone()
    f.mean.grad = None
    (-f(x).mean()).backward()
    g_data = f.mean.grad.clone()
    f.mean.grad = None
    f(neg).mean().backward()
    torch.testing.assert_close(g, g_data + f.mean.grad)


@pytest.mark.parametrize("cfg", [dict(sampler="langevin", persistent=True), dict(sampler="langevin", persistent=False),
                                 dict(sampler="mala"), dict(sampler="mh")])
def test_cd_variants_train_and_improve_the_likelihood(cfg):
    torch.manual_seed(0)
    sess = Session("ebm_cd", dict(cfg, hidden=32, n_steps=10), make_split("gaussian", 2000, seed=0), device="cpu")
    sess.settings.lr = 3e-3
    before = sess.evaluate()["test_nll"]
    buffer0 = sess.model.buffer.clone()
    assert sess.train_steps(150)
    after = sess.evaluate()
    assert after["test_nll"] < before - 0.1, (before, after)
    if cfg.get("persistent", True):
        assert not torch.equal(sess.model.buffer, buffer0)  # negatives went back into the replay buffer
    else:
        assert torch.equal(sess.model.buffer, buffer0)
    if cfg["sampler"] != "langevin":
        assert 0.0 < after["accept"] <= 1.0 and 0.0 < after["chain_accept"] <= 1.0


def test_grid_normalisation_integrates_to_one_and_gives_the_nll():
    """Z is a sum over the grid: the normalised density sums to 1 and the held-out NLL is
    log Z − E_data[f] (the relation the 'f and log Z' curves show)."""
    torch.manual_seed(0)
    data = make_split("moons", 1500, seed=0)
    sess = Session("ebm_sm", {"hidden": 32}, data, device="cpu")
    sess.train_steps(30)
    snap = sess.snapshot()
    area = (snap.grid_x[1] - snap.grid_x[0]) * (snap.grid_y[1] - snap.grid_y[0])
    assert np.exp(snap.log_density.astype(np.float64)).sum() * area == pytest.approx(1.0, abs=1e-4)
    assert snap.grid_mass == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():
        f = sess.model.log_prob(sess.test_x[:5000])
    lt = snap.latest
    assert lt["test_nll"] == pytest.approx(lt["log_z_grid"] - f.double().mean().item(), abs=1e-4)


@pytest.mark.parametrize("key", ["ebm_cd", "ebm_sm", "ebm_nce"])
def test_display_chains_move_and_are_tracked(key):
    torch.manual_seed(0)
    sess = Session(key, {"hidden": 32}, make_split("8gaussians", 1000, seed=0), device="cpu")
    sess.train_steps(5)
    a = sess.snapshot().probe.chains
    b = sess.snapshot().probe.chains
    k = sess.model.cfg.chain_steps
    assert a.shape[1:] == (N_TRACKED, 2) and len(b) == len(a) + k
    assert not np.allclose(a[-1], b[-1])  # the heads moved between two frames
    heads = sess.model.standardizer.inverse(sess.model.chains[:N_TRACKED]).detach().numpy()
    np.testing.assert_allclose(b[-1], heads, atol=1e-5)


def test_probe_score_field_is_the_gradient_of_log_p():
    torch.manual_seed(0)
    m = build("ebm_sm", hidden=16)
    m.init_from_data(torch.as_tensor(make_split("moons", 500, seed=0).train))
    grid = torch.rand(400, 2) * 6 - 3
    ex = m.probe(grid, grid[:10])
    xy = torch.as_tensor(ex["score_xy"])
    h = 1e-3
    e = torch.tensor([h, 0.0])
    with torch.no_grad():
        fd = (m.log_prob(xy + e) - m.log_prob(xy - e)) / (2 * h)
    np.testing.assert_allclose(ex["score"][:, 0], fd.numpy(), atol=2e-2, rtol=1e-2)


def test_energy_view_is_minus_f_on_the_grid():
    """The view recovers −f from the frame's normalised log-density and log Z (no second grid pass)."""
    from playground.views.ebm import energy_on_grid

    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 16}, make_split("moons", 800, seed=0), device="cpu")
    sess.train_steps(5)
    snap = sess.snapshot()
    with torch.no_grad():
        f = sess.model.log_prob(sess.grid).double().numpy().reshape(snap.log_density.shape)
    np.testing.assert_allclose(energy_on_grid(snap), -f, atol=1e-4)


def test_sample_beyond_the_display_chains_adds_burnt_in_chains():
    torch.manual_seed(0)
    m = build("ebm_nce", hidden=16)
    m.init_from_data(torch.as_tensor(make_split("moons", 500, seed=0).train))
    s = m.sample(1200)
    assert s.shape == (1200, 2) and torch.isfinite(s).all()


@pytest.mark.parametrize("key", ["ebm_cd", "ebm_sm", "ebm_nce"])
def test_views_render_every_panel(key):
    torch.manual_seed(0)
    sess = Session(key, {"hidden": 16}, make_split("moons", 800, seed=0), device="cpu")
    sess.train_steps(3)
    sess.snapshot()
    snap = sess.snapshot()
    figs = views.render(snap)
    assert set(figs) == {"main", "samples", "curves", "energies", "nll", "diag"}
    for fig in figs.values():
        plots.to_json(fig)
    names = [t.get("name", "") for t in figs["main"]["data"]]
    assert any("MCMC chains" in n for n in names)
    assert any("score" in n for n in names) == (key == "ebm_sm")  # arrows by default for SM only
    on = [t.get("name", "") for t in views.render(snap, show_score="on")["main"]["data"]]
    assert any("score" in n for n in on)
    sample_names = [t.get("name", "") for t in figs["samples"]["data"]]
    assert any("negatives" in n for n in sample_names) == (key == "ebm_cd")
    assert any("noise p_n" in n for n in sample_names) == (key == "ebm_nce")


def test_sandbox_loop_runs_on_an_analytic_target_and_on_the_learned_energy():
    """The tab's sandbox frames (no browser): chains advance by `steps per frame` each frame, and the
    learned energy is a frozen copy of the visitor's trained model."""
    from types import SimpleNamespace

    from playground.tabs import ebm as tab

    st = tab.SandboxState()
    assert tab.sandbox_prepare(st, SimpleNamespace(session=None, signature=None), "donut", "mh", -2, 0.5, 1.0,
                               5) is None
    first, second = tab.sandbox_frame(st), tab.sandbox_frame(st)
    assert "Metropolis–Hastings" in first.status and "step <b>10</b>" in second.status
    names = [t.get("name", "") for t in second.figs["plot"]["data"]]
    assert "chain heads" in names and any("MCMC chains" in n for n in names)
    assert len(st.history["ed"]) == 2
    # no model trained yet: the learned target says so
    why = tab.sandbox_prepare(tab.SandboxState(), SimpleNamespace(session=None, signature=None), "learned",
                              "langevin", -2, 0.3, 1.0, 5)
    assert "train an energy-based model" in why
    sess = Session("ebm_nce", {"hidden": 16}, make_split("moons", 600, seed=0), device="cpu")
    sess.train_steps(20)
    st2 = tab.SandboxState()
    assert tab.sandbox_prepare(st2, SimpleNamespace(session=sess, signature=("sig",)), "learned", "mala", -2, 0.3,
                               1.0, 3) is None
    assert "MALA" in tab.sandbox_frame(st2).status and "learned energy" in st2.box.title
    sess.train_steps(5)  # the frozen copy does not follow the training
    x = torch.randn(10, 2)
    with torch.no_grad():
        assert not torch.allclose(st2.box.log_prob(x), sess.model.log_prob(x))


def test_display_chains_catch_up_a_little_per_frame_and_fully_after_a_long_gap():
    """A fast model trains a few hundred steps between frames: its display chains take a few catch-up
    steps (not a full burn-in, which made every frame cost 0.3-0.6 s); after a long run without
    frames (the command line) they re-equilibrate with BURN_IN steps."""
    from models import ebm as E

    m = build("ebm_nce")
    m.init_from_data(torch.as_tensor(make_split("moons", 500, seed=0).train))
    asked = []
    real_run = m.run

    def counting_run(z, n_steps, record=0):
        asked.append(int(n_steps))
        return real_run(z, n_steps, record)

    m.run = counting_run
    steps = m.cfg.chain_steps
    for stale, expected in ((E.STALE_AFTER - 1, [steps]), (250, [min(E.CATCH_UP_MAX, 25), steps]),
                            (E.LONG_GAP + 1, [E.BURN_IN, steps])):
        asked.clear()
        m._stale = stale
        m.advance_chains(steps)
        assert asked == expected, stale
        assert m._stale == 0
    # after the full burn-in the trails restart: the second half of the burn-in plus this frame's steps
    assert len(m.tracker.path) <= E.BURN_IN // 2 + steps + 1
