"""EBMs trained against a normalizing flow q_φ (models/ebm/fce.py, models/ebm/adversarial.py): flow contrastive
estimation (notes 7.5.1) and adversarial training with the bound log Z ≥ E_q f + H(q) (notes 7.6). Each on a
case with a known answer: a Gaussian recovered, q normalised, the bound above the grid-normalised likelihood,
H(q) against quadrature, each player's sign, and the run's own generators."""

import math

import numpy as np
import pytest
import torch

from models import TrainSettings, build
from playground import plots, views
from playground.datasets import make_split
from playground.session import Session

GAUSS_MEAN = np.zeros(2)
GAUSS_COV = 0.8 ** 2 * np.array([[2.0, 1.2], [1.2, 1.0]])  # playground.datasets.gaussian at its default noise
SMALL = {"hidden": 32, "flow_layers": 4, "flow_hidden": 16}
KEYS = ("ebm_fce", "ebm_adv")


def _model(key, data, seed=0, **cfg):
    torch.manual_seed(seed)
    m = build(key, **{**SMALL, **cfg})
    m.init_from_data(torch.as_tensor(data))
    return m


@pytest.mark.parametrize("key, steps, cfg, tol", [("ebm_fce", 700, {}, 0.08), ("ebm_adv", 1400, {"reg": 0.0}, 0.08)])
def test_each_recovers_a_gaussian(key, steps, cfg, tol):
    """Data from N(μ, Σ): after a few hundred steps the grid-normalised p_θ has held-out NLL near the true
    density's, and its exact samples have the data's mean and covariance (loose tolerances). The adversary
    without its energy penalty, whose α f² flattens p_θ (the covariance ×1.5 at α = 0.1)."""
    torch.manual_seed(0)
    sess = Session(key, {**SMALL, **cfg}, make_split("gaussian", 3000, seed=0), TrainSettings(lr=3e-3, batch=256),
                   device="cpu")
    assert sess.train_steps(steps)
    out = sess.evaluate()
    assert out["test_nll"] < out["data_nll"] + tol, (out["test_nll"], out["data_nll"])
    with torch.no_grad():
        s = sess.model.sample(20000).double().numpy()
    np.testing.assert_allclose(s.mean(0), GAUSS_MEAN, atol=0.1)
    np.testing.assert_allclose(np.cov(s.T), GAUSS_COV, atol=0.2)
    if key == "ebm_fce":  # NCE's free log Z becomes the partition function (notes 7.5)
        assert out["log_z_fce"] == pytest.approx(out["log_z_grid"], abs=0.1)
        assert out["flow_nll"] < out["data_nll"] + 0.3  # the noise flow moved onto the data
    else:  # the bound is tight when q ≈ p_θ
        assert -out["test_nll"] <= out["ll_bound"] < -out["test_nll"] + 0.15


@pytest.mark.parametrize("key", KEYS)
def test_the_flows_density_is_normalised_and_the_same_both_ways(key):
    """q_φ in data units integrates to 1 on a fine grid over a wide box (at init and after training steps),
    the density the views get (probe) is that one, and log q of the inverse pass equals the log q that the
    sampling pass returns with each sample."""
    data = make_split("banana", 1000, seed=0).train
    m = _model(key, data)
    opts = m.configure_optimizers(TrainSettings(lr=3e-3))
    for trained in (False, True):
        if trained:
            for _ in range(30):
                m.step(torch.as_tensor(data[:256]), opts)
        s = m.standardizer
        xs = torch.linspace(-9, 9, 601)
        gx, gy = torch.meshgrid(xs, xs, indexing="xy")
        grid = s.inverse(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))  # ±9 standard deviations
        area = float((xs[1] - xs[0]) ** 2 * s.scale.prod())
        with torch.no_grad():
            lq = m.q_log_prob(grid).double()
            assert float(torch.exp(lq).sum() * area) == pytest.approx(1.0, abs=0.01), trained
            g = torch.Generator().manual_seed(1)
            z, log_q = m.q.sample(2000, g, m.lo)
            torch.testing.assert_close(m.q.log_prob(z), log_q, atol=1e-4, rtol=1e-4)
            shown = grid[::997]
            torch.testing.assert_close(torch.as_tensor(m.probe(shown, shown[:5])["flow_log_density"]),
                                       m.q_log_prob(shown).float())


def _log_z_lower_bound(m, n=20000, seed=2):
    """E_q[f − log q] and its Monte Carlo standard error, on n samples of q from a generator of our own."""
    with torch.no_grad():
        y, log_q = m.q.sample(n, torch.Generator().manual_seed(seed), m.lo)
        v = (m.f(y) - log_q).double()
    return float(v.mean()), float(v.std() / math.sqrt(n))


def test_the_adversarial_bound_is_above_the_grid_normalised_log_likelihood():
    """log Z ≥ E_q f + H(q) (notes 7.6), so E_data f − E_q f − H(q) ≥ E_data f − log Z, the held-out
    log-likelihood normalised on the grid: at init (a loose bound) and after training (a tight one), up to
    4 Monte Carlo standard errors; the metrics' ll_bound is that bound, and their f_data − log_z_grid the
    session's held-out log-likelihood."""
    split = make_split("banana", 2000, seed=0)
    m = _model("ebm_adv", split.train)
    x = torch.as_tensor(split.train)
    test = torch.as_tensor(split.test)
    opts = m.configure_optimizers(TrainSettings(lr=3e-3))
    batches = torch.Generator().manual_seed(0)
    gaps = []
    for steps in (0, 300):
        for _ in range(steps):
            m.step(x[torch.randint(0, len(x), (256,), generator=batches)], opts)
        lower, se = _log_z_lower_bound(m)
        log_z = m.log_partition()
        assert lower <= log_z + 4 * se, (steps, lower, log_z, se)
        out = m.metrics(test)
        with torch.no_grad():
            ll = float(m.log_prob(test).mean())
        assert out["f_data"] - out["log_z_grid"] == pytest.approx(ll, abs=1e-4)
        assert out["ll_bound"] >= ll - 4 * se - 0.01, (steps, out["ll_bound"], ll)  # 4,096 samples: MC noise
        assert out["log_z_bound"] == pytest.approx(lower, abs=6 * se + 0.05)
        gaps.append(out["ll_bound"] - ll)
    assert gaps[1] < gaps[0]  # the flow tightened the bound: KL(q ‖ p_θ) fell


def test_the_flows_entropy_is_minus_its_expected_log_density():
    """H(q) of the flow (what the adversarial bound uses: −E_q log q over its own samples, exact log q from
    the sampling pass) equals −∫ q log q by quadrature of the inverse pass's density on a fine grid."""
    data = make_split("banana", 1000, seed=0).train
    m = _model("ebm_adv", data)
    opts = m.configure_optimizers(TrainSettings(lr=3e-3))
    for _ in range(30):
        m.step(torch.as_tensor(data[:256]), opts)
    with torch.no_grad():
        mc = m.flow_terms(40000, m.lo, "view")
        xs = torch.linspace(-9, 9, 601, dtype=torch.float64)
        gx, gy = torch.meshgrid(xs, xs, indexing="xy")
        z = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        lq = m.q.double().log_prob(z)
        m.q.float()
        quad = float(-(torch.exp(lq) * lq).sum() * (xs[1] - xs[0]) ** 2)
        _, log_q = m.q.sample(40000, torch.Generator().manual_seed(5), m.lo)
    se = float(log_q.std()) / math.sqrt(40000)
    assert float(mc["entropy"]) == pytest.approx(quad, abs=4 * se)
    assert m.metrics(torch.as_tensor(data[:500]))["entropy_q"] == pytest.approx(
        quad - float(m.standardizer.log_det()), abs=4 * se)  # in data units: H_x = H_z − log|dz/dx|


@pytest.mark.parametrize("key", KEYS)
def test_each_player_moves_its_own_objective_the_right_way(key):
    """With the energy frozen (its learning rate 0), steps of the flow alone: FCE's flow ascends NCE's loss −V
    (min over φ of V, notes 7.5.1), the adversarial flow ascends E_q f + H(q) (tightens log Z's bound, 7.6),
    both measured on the same batch and the same base noise. Then with the flow frozen, the energy descends
    its own loss: FCE's −V, the adversary's E_q f − E_data f (+ penalty)."""
    split = make_split("banana", 1000, seed=0)
    m = _model(key, split.train)
    x = torch.as_tensor(split.train[:256])
    z = m.standardizer(x)

    def flow_objective():
        g = torch.Generator().manual_seed(9)
        with torch.no_grad(), m.training_pass():
            y, log_q_y = m.q.sample(256, g, z)
            if key == "ebm_fce":
                return float(m.nce_terms(z, m.q.log_prob(z), y, log_q_y)["loss"])
            return float(m.f(y).mean() - log_q_y.mean())

    def energy_loss():
        g = torch.Generator().manual_seed(11)
        with torch.no_grad(), m.training_pass():
            y, log_q_y = m.q.sample(256, g, z)
            if key == "ebm_fce":
                return float(m.nce_terms(z, m.q.log_prob(z), y, log_q_y)["loss"])
            return float(m.energy_terms(z, y)["loss"])

    opts = {"ebm": torch.optim.Adam(m.ebm_parameters(), lr=0.0), "flow": torch.optim.Adam(m.q.parameters(), lr=3e-3)}
    before = flow_objective()
    for _ in range(40):
        m.step(x, opts)
    assert flow_objective() > before + 0.01
    opts = {"ebm": torch.optim.Adam(m.ebm_parameters(), lr=3e-3), "flow": torch.optim.Adam(m.q.parameters(), lr=0.0)}
    before = energy_loss()
    for _ in range(40):
        m.step(x, opts)
    assert energy_loss() < before - 0.01


@pytest.mark.parametrize("key", KEYS)
def test_same_seed_same_run_and_the_global_rng_is_untouched(key):
    """Two runs from the same seed end with the same parameters bit for bit; a third from another seed does not;
    training, samples, probe and metrics draw nothing from torch's global generator."""
    split = make_split("8gaussians", 800, seed=0)
    x = torch.as_tensor(split.train)

    def run(seed):
        m = _model(key, split.train, seed=seed)
        opts = m.configure_optimizers(TrainSettings(lr=3e-3))
        state = torch.get_rng_state()
        for i in range(5):
            m.step(x[64 * i:64 * (i + 1)], opts)
        m.sample(100)
        m.advance_display()
        m.probe(x[:50], x[:20])
        m.metrics(torch.as_tensor(split.test))
        assert torch.equal(torch.get_rng_state(), state)
        return {k: v.clone() for k, v in m.state_dict().items()}

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if k.startswith("q."))


@pytest.mark.parametrize("key", KEYS)
def test_learning_rates_reach_their_own_player(key):
    m = build(key, **SMALL)
    opts = m.configure_optimizers(TrainSettings(lr=3e-3))
    assert set(opts) == {"ebm", "flow"}
    m.live_update("lr", 1e-4, opts)
    m.live_update("flow_lr", 5e-3, opts)
    assert opts["ebm"].param_groups[0]["lr"] == 1e-4 and opts["flow"].param_groups[0]["lr"] == 5e-3
    assert m.cfg.flow_lr == 5e-3


@pytest.mark.parametrize("key", KEYS + ("ebm_nce",))
def test_views_draw_the_flow_over_the_density_and_the_bound(key):
    """The density panel draws q's contours (and its samples) for the flow-trained EBMs only; the energies
    panel FCE's learned log Z and the adversary's E_q f + H(q); the likelihood panel the adversary's upper
    bound and the flow's own held-out log-likelihood. Every panel renders."""
    torch.manual_seed(0)
    cfg = {"hidden": 16} if key == "ebm_nce" else dict(SMALL)
    sess = Session(key, cfg, make_split("moons", 800, seed=0), device="cpu")
    sess.train_steps(5)
    sess.snapshot()
    snap = sess.snapshot()
    figs = views.render(snap)
    assert set(figs) == {"main", "samples", "curves", "energies", "nll", "diag"}
    for fig in figs.values():
        plots.to_json(fig)
    names = {k: [t.get("name", "") for t in figs[k]["data"]] for k in figs}
    flow = key != "ebm_nce"
    assert any("log q contours" in n for n in names["samples"]) == flow
    assert any("flow q" in n and "samples" in n for n in names["samples"]) == flow
    assert any("log Z learned by FCE" in n for n in names["energies"]) == (key == "ebm_fce")
    assert any(n.startswith("E_q[f] + H(q)") for n in names["energies"]) == (key == "ebm_adv")
    assert any(n.startswith("upper bound") for n in names["nll"]) == (key == "ebm_adv")
    assert any(n == "flow q, held-out" for n in names["nll"]) == flow
    if flow:
        contour = next(t for t in figs["samples"]["data"] if t["type"] == "contour")
        assert contour["z"].shape == (len(snap.grid_y), len(snap.grid_x))
