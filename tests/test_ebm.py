"""Energy-based models (notes ch. 7): the objectives on energies with known answers, the models'
chains and extras, grid normalisation, and the views."""

import math

import numpy as np
import pytest
import torch

from models import build
from models.ebm import losses as L
from models.ebm import model as E
from models.ebm.model import N_TRACKED
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


def test_nce_with_several_noise_samples_per_point_recovers_log_z():
    """ν = 4 noise samples per data point (Gutmann & Hyvärinen 2010: D = e^f / (e^f + ν Z p_n), the noise
    term weighted by ν): with f fixed to an unnormalised Gaussian, the free log Z still converges to
    log ∫exp(f), from far below and from far above."""
    s, nu = 0.7, 4
    true_log_z = math.log(2 * math.pi * s * s)

    def f(x):
        return -0.5 * (x ** 2).sum(1) / s ** 2

    g = torch.Generator().manual_seed(0)
    for start in (-2.0, 3.0):
        log_z = torch.tensor(start, requires_grad=True)
        opt = torch.optim.Adam([log_z], lr=0.05)
        for _ in range(400):
            x = s * torch.randn(1000, 2, generator=g)
            y = 1.5 * torch.randn(nu * 1000, 2, generator=g)
            loss = L.nce_loss(f(x), f(y), L.gaussian_log_prob(x, 1.5), L.gaussian_log_prob(y, 1.5), log_z, nu)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert log_z.item() == pytest.approx(true_log_z, abs=0.05), start


def test_nce_model_with_noise_ratio_four_learns_its_partition_function():
    """The model with ν = 4: its learned log Z meets the log Z of its grid over the support, and the density
    is close to the true one."""
    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 32, "noise_ratio": 4}, make_split("gaussian", 3000, seed=0), device="cpu")
    assert sess.train_steps(800)
    out = sess.evaluate()
    assert out["log_z_nce"] == pytest.approx(out["log_z_grid"], abs=0.1)
    assert out["test_nll"] < out["data_nll"] + 0.1


def test_nce_model_learned_log_z_matches_the_grid():
    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 32}, make_split("gaussian", 3000, seed=0), device="cpu")
    sess.settings.lr = 3e-3
    assert sess.train_steps(1500)
    out = sess.evaluate()
    assert out["log_z_nce"] == pytest.approx(out["log_z_grid"], abs=0.15)
    assert out["test_nll"] < out["data_nll"] + 0.15  # and the density is close to the true one


def test_default_score_matching_fits_eight_gaussians():
    """The default score-matching objective is one that fits: after 600 steps on 8 Gaussians its held-out
    NLL is within 1 nat of the true density's (the exact objective, the old default, was 1.5 nats away
    at 500 steps and 2.7-5.3 at 3,000, peaking f on the training points)."""
    torch.manual_seed(0)
    sess = Session("ebm_sm", None, make_split("8gaussians", 2000, seed=0), device="cpu")
    assert sess.train_steps(600)
    out = sess.evaluate()
    assert out["test_nll"] < out["data_nll"] + 1.0, (sess.model.cfg.objective, out["test_nll"], out["data_nll"])


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


class GaussianNet(torch.nn.Module):
    """Stands in for f_θ's network: −½‖z − c‖²/σ² (z standardised), a Gaussian whose Z is 2πσ²."""

    def __init__(self, c, sigma):
        super().__init__()
        self.c = torch.nn.Parameter(torch.as_tensor(c, dtype=torch.float32).clone())
        self.sigma = sigma

    def forward(self, z):
        return (-0.5 * ((z - self.c) ** 2).sum(1) / self.sigma ** 2)[:, None]


def gaussian_on_the_plot_edge():
    """An EBM on banana whose f is a Gaussian centred on the plot's top edge (half its mass above the
    plot) but well inside the model's support box (the wall adds nothing): every normalised number
    has a closed form."""
    from models.ebm import model as E

    sess = Session("ebm_nce", {"hidden": 16, "average": 0.0}, make_split("banana", 2000, seed=0), device="cpu")
    m = sess.model  # no weight average: the energy shown is f itself
    st = m.standardizer
    c = st(torch.tensor([[0.0, sess.data.box[3]]]))[0]  # (0, 4) in data units, on the plot's top edge
    lo, hi = m.lo, m.hi  # the data's box B (z units): the wall is 0 inside
    sigma = float(torch.minimum(c - lo, hi - c).min()) / 7
    assert sigma > 0.1 and float(hi[1] + getattr(E, "WALL_REACH", 0.0)) > float(c[1]) + 7 * sigma
    m.net = GaussianNet(c, sigma)
    return sess, c, sigma


def test_partition_function_and_nll_of_a_gaussian_energy_match_their_closed_forms():
    """Z over the model's whole support, not over the plot: with a Gaussian energy half outside the
    plot, log Z = log 2πσ² (z units), the held-out NLL is the Gaussian's, and '∫p on grid' is the mass
    inside the plot (about ½), the same sum over the session's grid of the closed-form density. Summing
    Z over the plot box (the old way) gave a mass of 1 and an NLL log 2 too low."""
    sess, c, sigma = gaussian_on_the_plot_edge()
    m, st = sess.model, sess.model.standardizer
    g = torch.Generator().manual_seed(0)
    x = st.inverse(c + sigma * torch.randn(4000, 2, generator=g))  # points of this Gaussian, data units

    def true_log_p(pts):
        z = st(pts)
        return (-0.5 * ((z - c) ** 2).sum(1) / sigma ** 2 - math.log(2 * math.pi * sigma ** 2)
                + st.log_det()).double()

    with torch.no_grad():
        expected_nll = -true_log_p(x).mean().item()
        assert sess.evaluate(test=x)["test_nll"] == pytest.approx(expected_nll, abs=1e-4)
        snap = sess.snapshot()
        mass_on_grid = torch.exp(true_log_p(sess.grid)).sum().item() * sess.cell_area
        assert snap.grid_mass == pytest.approx(mass_on_grid, abs=1e-4)
        assert 0.4 < snap.grid_mass < 0.65  # half the mass is above the plot
        assert m.log_partition() == pytest.approx(math.log(2 * math.pi * sigma ** 2), abs=1e-4)
        assert snap.latest["log_z_grid"] == pytest.approx(m.log_partition())


def test_partition_function_of_a_network_matches_monte_carlo():
    """log Z of a trained network by the support's grid against an independent estimate: Monte Carlo
    with 200,000 uniform points of the support box, Z ≈ |S|·mean exp(f), within 4 standard errors;
    and the grid's own error estimate is below that tolerance."""
    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 32}, make_split("8gaussians", 2000, seed=0), device="cpu")
    sess.train_steps(300)
    m = sess.model
    lo, hi = m.support()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        u = lo + (hi - lo) * torch.rand(200_000, 2, generator=g)
        w = torch.exp(m.f(u).double())
    vol = float((hi - lo).prod())
    z_mc, se = vol * w.mean().item(), vol * w.std().item() / math.sqrt(len(w))
    assert se / z_mc < 0.02  # a sharp test
    assert math.exp(m.log_partition()) == pytest.approx(z_mc, abs=4 * se)
    assert m.grid_density().log_z_err < 4 * se / z_mc


def test_cached_log_z_follows_every_change_of_the_parameters():
    """log Z is computed once per parameter state: after a training step, a reload or a restore it is the
    support grid's sum for the parameters of that moment, never a stale one."""
    from models.samplers import GridDensity

    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 16}, make_split("moons", 800, seed=0), device="cpu")
    m = sess.model

    def fresh():
        lo, hi = m.support()
        return GridDensity.evaluate(m.f, lo, hi, GridDensity.cells_for(lo, hi, E.Z_CELLS ** 2)).log_z

    first = m.log_partition()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    sess.train_steps(E.AVERAGE_EVERY)  # the shown energy (the weight average) moves every AVERAGE_EVERY steps
    assert m.log_partition() == pytest.approx(fresh(), abs=1e-9) and m.log_partition() != first
    m.load_state_dict(state)
    assert m.log_partition() == pytest.approx(first, abs=1e-9)


def fine_grid_samples(model, n, seed):
    """Exact samples of exp(log_prob) by an independent, simpler sampler: a 400 x 400 grid of cell centres
    over the support box (data units), a cell by its probability, a uniform point in it. (The model's
    support is the data's box B widened by WALL_REACH; 0.65 before it had a name.)"""
    from models.ebm import model as E

    st = model.standardizer
    reach = getattr(E, "WALL_REACH", 0.65)
    lo, hi = st.inverse(model.lo - reach), st.inverse(model.hi + reach)
    k = 400
    ax = [lo[i] + (hi[i] - lo[i]) * (torch.arange(k) + 0.5) / k for i in range(2)]
    gy, gx = torch.meshgrid(ax[1], ax[0], indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        lp = model.log_prob(pts).double()
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(torch.softmax(lp, 0), n, replacement=True, generator=g)
    h = (hi - lo) / k
    return pts[idx] + (torch.rand(n, 2, generator=g) - 0.5) * h


def test_evaluate_measures_exact_samples_of_the_model():
    """evaluate()'s sample metrics measure p_θ: the model's samples match exact samples of its grid
    density (an independent sampler), and so do their distances to held-out data. Display chains that
    took a few Langevin steps each frame (what evaluate() used to measure) are far from both."""
    from playground.metrics import energy_distance

    torch.manual_seed(0)
    sess = Session("ebm_nce", {"hidden": 32}, make_split("8gaussians", 2000, seed=0), device="cpu")
    assert sess.train_steps(600)
    for _ in range(3):
        sess.snapshot()  # a few frames: the display chains move 4 steps each
    m = sess.model
    n = 10000
    ref = fine_grid_samples(m, n, seed=3)
    ed_eval = sess.evaluate()["energy_distance"]  # on 2,000 samples of the model
    assert ed_eval == pytest.approx(energy_distance(ref, sess.test_x), abs=0.02)
    with torch.no_grad():
        assert energy_distance(m.sample(2000), ref, max_n=2000) < 0.01
        s = m.sample(n)
    se = 4 * math.sqrt(2 / n) * ref.std(0)  # 4 standard errors of a difference of two means
    assert ((s.mean(0) - ref.mean(0)).abs() < se).all(), (s.mean(0), ref.mean(0), se)
    torch.testing.assert_close(torch.cov(s.T), torch.cov(ref.T), atol=0.1, rtol=0)


def test_model_samples_come_from_the_runs_own_generator():
    """Exact samples: any number, finite, in the support box, the same for the same run seed, and drawn
    without touching the global RNG."""
    data = torch.as_tensor(make_split("moons", 500, seed=0).train)
    out = []
    for _ in range(2):
        torch.manual_seed(7)
        m = build("ebm_nce", hidden=16)
        m.init_from_data(data)
        state = torch.get_rng_state()
        out.append(m.sample(1500))
        assert torch.equal(torch.get_rng_state(), state)
    assert out[0].shape == (1500, 2) and torch.isfinite(out[0]).all()
    torch.testing.assert_close(out[0], out[1])
    lo, hi = m.support()
    z = m.standardizer(out[0])
    assert ((z >= lo) & (z <= hi)).all()


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
    m = sess.model
    with torch.no_grad():  # f in data units: the network on z(x) plus log|dz/dx|, before any normalisation
        f = (m.f(m.standardizer(sess.grid)) + m.standardizer.log_det()).double().numpy()
    np.testing.assert_allclose(energy_on_grid(snap), -f.reshape(snap.log_density.shape), atol=1e-4)


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
    learned energy is a frozen copy of the visitor's model at its newest good checkpoint."""
    from playground.tabs import ebm as tab

    st = tab.SandboxState()
    assert st.prepare("donut", None, None, "mh", 1e-2, 0.5, 1.0, 5) is None
    first, second = tab.sandbox_frame(st), tab.sandbox_frame(st)
    assert "Metropolis–Hastings" in first.status and "step <b>10</b>" in second.status
    names = [t.get("name", "") for t in second.figs["plot"]["data"]]
    assert "chain heads" in names and any("MCMC chains" in n for n in names)
    assert len(st.history["ed"]) == 2
    # no model trained yet: the learned target says so
    assert "train an energy-based model" in tab.SandboxState().prepare("learned", None, None, "langevin", 1e-2, 0.3,
                                                                        1.0, 5)
    sess = Session("ebm_nce", {"hidden": 16}, make_split("moons", 600, seed=0), device="cpu")
    sess.train_steps(20)
    sess._checkpoint()
    sess.train_steps(40)  # past the checkpoint: the frozen copy is the checkpoint's, not these steps'
    st2 = tab.SandboxState()
    assert st2.prepare("learned", sess, ("sig",), "mala", 1e-2, 0.3, 1.0, 3) is None
    frame = tab.sandbox_frame(st2)
    state = st2.advance()  # the chains' state, from wherever they run (a worker, in the app's default mode)
    assert "MALA" in frame.status and "learned energy" in state["title"] and "step 20" in state["title"]
    ref = Session("ebm_nce", {"hidden": 16}, make_split("moons", 600, seed=0), device="cpu")
    ref.train_steps(20)
    pts = torch.as_tensor(np.stack(np.meshgrid(state["grid_x"], state["grid_y"]), -1).reshape(-1, 2))
    with torch.no_grad():  # the target's grid is the checkpoint's energy, not the last steps'
        np.testing.assert_allclose(state["log_p"].ravel(), ref.model.log_prob(pts).numpy(), rtol=1e-4, atol=1e-4)
        assert not np.allclose(state["log_p"].ravel(), sess.model.log_prob(pts).numpy(), atol=1e-4)
    st2.release()


def test_display_chains_catch_up_a_little_per_frame_and_fully_after_a_long_gap():
    """A fast model trains a few hundred steps between frames: its display chains take a few catch-up
    steps (not a full burn-in, which made every frame cost 0.3-0.6 s); after a long run without
    frames (the command line) they re-equilibrate with BURN_IN steps."""
    from models.ebm import model as E

    m = build("ebm_nce")
    m.init_from_data(torch.as_tensor(make_split("moons", 500, seed=0).train))
    asked = []
    real_run = m.run

    def counting_run(z, n_steps, record=0, **kw):
        asked.append(int(n_steps))
        return real_run(z, n_steps, record, **kw)

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


@pytest.mark.parametrize("key", ["ebm_cd", "ebm_nce", "ebm_sm"])
def test_each_estimator_trains_the_network_and_everything_shown_uses_its_weight_average(key):
    """cfg.average = d: the objective (with CD's negatives) differentiates the trained network only; every
    AVERAGE_EVERY updates the average follows, θ̄ ← d_t^8 θ̄ + (1 − d_t^8) θ, d_t = min(d, (1 + t)/(10 + t))
    (NCE's log Z with it); log p(x), log Z and exact samples come from the average (moving the trained
    network alone changes none of them)."""
    sess = Session(key, {"hidden": 16, "average": 0.9}, make_split("moons", 400, seed=0), device="cpu")
    m = sess.model
    shown, trained = m.average_pairs()
    assert (len(shown) == len(list(m.net.parameters())) + 1) == (key == "ebm_nce")
    expect = [p.detach().clone() for p in trained]
    for t in range(1, 2 * E.AVERAGE_EVERY + 1):
        assert sess.train_steps(1)
        if t % E.AVERAGE_EVERY == 0:
            d = min(0.9, (1.0 + t) / (10.0 + t)) ** E.AVERAGE_EVERY
            expect = [d * e + (1 - d) * p.detach() for e, p in zip(expect, trained)]
        for e, a in zip(expect, shown):
            torch.testing.assert_close(a, e)
    m.zero_grad(set_to_none=True)
    m.loss(sess.train_x[:64])["loss"].backward()
    exempt = m.grad_exempt  # score matching: f's constant has no score, hence no gradient
    assert all(p.grad is not None for n, p in m.net.named_parameters() if f"net.{n}" not in exempt)
    assert all(p.grad is None for p in m.net_avg.parameters())
    x = sess.test_x[:100]
    with torch.no_grad():
        before, log_z = m.log_prob(x), m.log_partition()
        m.reset_generators()
        samples = m.sample(200)
        for p in m.net.parameters():
            p.add_(0.3)
        m.reset_generators()
        torch.testing.assert_close(m.log_prob(x), before)
        torch.testing.assert_close(m.sample(200), samples)
        assert m.log_partition() == log_z
        for p in m.net_avg.parameters():
            p.add_(0.3)
        assert m.log_partition() != log_z


def test_the_wall_is_quadratic_on_the_support_and_linear_beyond():
    """wall(d) = 50 d² up to the support's edge (d = WALL_REACH), then linear with the same slope (C¹): a
    held-out point 11 units outside the data's box costs ~700 nats, not 50·11² ≈ 6,000 (on banana seed 2,
    one such point of 20,000 was a third of a nat of the mean NLL). Inside S, f is the quadratic wall's."""
    r = E.WALL_REACH
    d = torch.tensor([0.0, 0.3, r, r + 1e-6, 2.0, 11.0], dtype=torch.float64, requires_grad=True)
    w = E.wall(d)
    (g,) = torch.autograd.grad(w.sum(), d)
    torch.testing.assert_close(w[:3], E.WALL * d[:3].detach() ** 2)
    assert float((w[3] - w[2]).detach()) == pytest.approx(2 * E.WALL * r * 1e-6, rel=1e-3)  # continuous ...
    torch.testing.assert_close(g[2:], torch.full((4,), 2 * E.WALL * r, dtype=torch.float64))  # ... slope too
    assert 600 < float(w[-1].detach()) < 800
    m = build("ebm_nce", hidden=8, average=0.0)
    z = torch.tensor([[0.0, 0.0], [float(m.hi[0]) + 11.0, 0.0]])
    with torch.no_grad():
        f_net = m.net(z).squeeze(-1)
        torch.testing.assert_close(m.f(z), f_net - E.wall(torch.tensor([0.0, 11.0])))
