"""CycleGAN (notes 6.10): the objective at its known optimum, what λ does to the generators' gradient, a map learned
between two Gaussians, the source domain a session hands over, and the GAN tab's two CycleGAN panels."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from models import TrainSettings, build, load
from models.gans.cyclegan import SOURCES
from playground import plots, views
from playground.datasets import DATASETS, make_split
from playground.session import Session

A = torch.tensor([[1.2, 0.4], [-0.5, 0.9]])  # an invertible linear map


def _linear(weight: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.zero_()
    return lin


def _undecided(disc: nn.Sequential) -> None:
    """A discriminator whose last layer is zero: D ≡ sigmoid(0) = 1/2 everywhere."""
    with torch.no_grad():
        disc[-1].weight.zero_()
        disc[-1].bias.zero_()


def _at_the_optimum(scale_f=(1.0, 1.0), **cfg):
    """A CycleGAN whose G is u -> A u and F is u -> S A⁻¹ u, S = diag(scale_f) (standardised coordinates), on
    source points x and data y = G(x): with S = I, G carries X onto Y exactly and F = G⁻¹; both discriminators
    undecided."""
    torch.manual_seed(0)
    model = build("cyclegan", average=0.0, **cfg)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6000, 2, generator=gen) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -3.0])
    model.use_source(x[:5000], x[5000:], "test")
    model.generator, model.inverse_map = _linear(A), _linear(torch.diag(torch.tensor(scale_f)) @ torch.linalg.inv(A))
    opts = model.configure_optimizers(TrainSettings())  # the (G, F) player's parameters are the new networks'
    model.init_from_data(torch.randn(4000, 2, generator=gen) * 3 - 1)  # Y's standardisation: any will do
    with torch.no_grad():
        y = model.generate(x)
    model._train = y[:5000]
    _undecided(model.discriminator)
    _undecided(model.discriminator_x)
    return model, opts, x[:5000], y[:5000]


def _generator_grads(model, x, y) -> torch.Tensor:
    terms = model.generator_objective(x, y)
    grads = torch.autograd.grad(terms["loss"], model._g_params)
    return torch.cat([g.flatten() for g in grads]), terms


def test_the_sources_are_built_in_datasets():
    assert set(SOURCES) <= set(DATASETS)  # the model names them; the playground samples them


def test_at_the_optimum_the_cycle_is_closed_and_every_game_is_at_chance():
    """G pushes X onto Y exactly and F = G⁻¹: both cycle terms are 0, their minimum, each discriminator's loss is
    log 4 and each generator's GAN term log 2 (notes 6.5 applied to both games of 6.10), and the GAN terms give G
    and F no gradient. (The L1 term's own gradient there is sign(rounding error), not 0: Adam would still jitter.)"""
    model, _, x, y = _at_the_optimum(cycle=0.0)
    grads, terms = _generator_grads(model, x[:2000], y[:2000])
    assert float(terms["cycle_loss"].detach()) < 1e-5
    assert float(terms["adv_g"].detach()) == pytest.approx(math.log(2), abs=1e-6)
    assert float(terms["adv_f"].detach()) == pytest.approx(math.log(2), abs=1e-6)
    assert float(grads.abs().max()) < 1e-6
    with torch.no_grad():
        fake_y, fake_x = model.generate(x[:2000]), model.translate_back(y[:2000])
        assert float(model.d_loss(model.critic(y[:2000]), model.critic(fake_y))) == pytest.approx(math.log(4))
        assert float(model.d_loss(model.critic_x(x[:2000]), model.critic_x(fake_x))) == pytest.approx(math.log(4))
    m = model.metrics(y[:1000])
    assert m["cycle_x"] < 1e-4 and m["cycle_y"] < 1e-4
    assert m["divergence"] == pytest.approx(0.0, abs=1e-6) and m["divergence_x"] == pytest.approx(0.0, abs=1e-6)


def test_the_cycle_error_is_the_notes_l1_and_lambda_decides_whether_it_pulls():
    """With F = S G⁻¹, S = diag(1.1, 0.8), the cycle is off: F(G(x)) is S u and G(F(y)) is A S A⁻¹ v (u, v: the
    standardised x, y), so the cycle terms are E‖(S − I) u‖₁ + E‖(A S A⁻¹ − I) v‖₁ and the held-out errors the
    same in data units. With the discriminators undecided the generators' only gradient is λ times the cycle's,
    and λ = 0 has none."""
    model, _, x, y = _at_the_optimum(scale_f=(1.1, 0.8))
    S = torch.diag(torch.tensor([1.1, 0.8]))
    with torch.no_grad():
        u, v = model.norm_x(x), model.norm(y)
        want_x = ((S - torch.eye(2)) @ u.T).T
        want_y = ((A @ S @ torch.linalg.inv(A) - torch.eye(2)) @ v.T).T
        cx, cy = model.cycle_terms(x, y)
        assert float(cx) == pytest.approx(float(want_x.abs().sum(1).mean()), rel=1e-4)
        assert float(cy) == pytest.approx(float(want_y.abs().sum(1).mean()), rel=1e-4)
    ex, ey = model.cycle_errors(x, y)
    assert ex == pytest.approx(float((want_x * model.norm_x.scale).abs().sum(1).mean()), rel=1e-4)
    assert ey == pytest.approx(float((want_y * model.norm.scale).abs().sum(1).mean()), rel=1e-4)
    model.cfg.cycle = 1.0
    g1, t1 = _generator_grads(model, x[:2000], y[:2000])
    model.cfg.cycle = 3.0
    g3, _ = _generator_grads(model, x[:2000], y[:2000])
    model.cfg.cycle = 0.0
    g0, t0 = _generator_grads(model, x[:2000], y[:2000])
    assert float(t1["cycle_loss"].detach()) > 0.05
    assert float(g1.norm()) > 1e-2
    # the same gradient from the notes' formula written out for these linear maps, G = W_G u + b_G, F = W_F v + b_F
    wg, bg, wf, bf = (p.detach().clone().requires_grad_(True) for p in model._g_params)
    gx = u[:2000] @ wg.T + bg
    gy = (v[:2000] @ wf.T + bf) @ wg.T + bg
    explicit = ((gx @ wf.T + bf) - u[:2000]).abs().sum(1).mean() + (gy - v[:2000]).abs().sum(1).mean()
    want = torch.cat([g.flatten() for g in torch.autograd.grad(explicit, [wg, bg, wf, bf])])
    torch.testing.assert_close(g1, want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g3, 3 * g1, rtol=1e-4, atol=1e-6)  # the objective is linear in λ
    assert float(g0.abs().max()) < 1e-6  # λ = 0: nothing pulls F towards G⁻¹ when D is undecided


def _train(cycle: float, steps: int = 1500):
    """Source: a Gaussian; data: the banana (a smooth bijection exists between them)."""
    sess = Session("cyclegan", {"source": "gaussian", "cycle": cycle}, make_split("banana", 2000, seed=0),
                   TrainSettings(seed=0, batch=256), device="cpu")
    sess.train_steps(steps)
    return sess


def test_trained_on_a_pair_with_a_bijection_the_cycle_term_keeps_f_the_inverse_of_g():
    """Gaussian -> banana: at λ = 1 G(x) lands on the banana (held-out energy distance near the noise floor of a
    GAN there) and F(G(x)) stays near x; at λ = 0 the fit is as good but F is no inverse (cycle error ≥ 3x)."""
    with_cycle, without = _train(1.0), _train(0.0)
    m1 = with_cycle.model.metrics(with_cycle.test_x)
    m0 = without.model.metrics(without.test_x)
    assert m1["cycle_x"] < 0.4 and m1["cycle_y"] < 0.4
    assert m0["cycle_x"] > 3 * m1["cycle_x"] and m0["cycle_y"] > 3 * m1["cycle_y"]
    assert m1["hist_js"] < 0.3 and m0["hist_js"] < 0.3  # both fit; only one of them is a bijection
    samples = with_cycle.model.sample(3000)
    test = with_cycle.test_x
    np.testing.assert_allclose(samples.mean(0).numpy(), test.mean(0).numpy(), atol=0.25)
    np.testing.assert_allclose(samples.std(0).numpy(), test.std(0).numpy(), rtol=0.2)


def test_the_session_hands_over_the_source_sampled_with_the_runs_seed(tmp_path):
    split = make_split("8gaussians", 600, seed=0)
    a = Session("cyclegan", {"source": "circles"}, split, TrainSettings(seed=4), device="cpu")
    b = Session("cyclegan", {"source": "circles"}, split, TrainSettings(seed=4), device="cpu")
    c = Session("cyclegan", {"source": "circles"}, split, TrainSettings(seed=5), device="cpu")
    want = make_split("circles", 600, seed=4)
    np.testing.assert_array_equal(a.model.source_train.numpy(), want.train)
    np.testing.assert_array_equal(a.model.source_test.numpy(), want.test)
    torch.testing.assert_close(a.model.source_train, b.model.source_train)
    assert not torch.equal(a.model.source_train, c.model.source_train)
    assert a.model.source_name == "circles" and a.source.name == "circles"
    # saved with the model: a loaded CycleGAN translates the same points without the playground
    a.train_steps(5)
    a.model.save(tmp_path / "m.pt")
    m2 = load(tmp_path / "m.pt")
    torch.testing.assert_close(m2.source_train, a.model.source_train)
    with torch.no_grad():
        torch.testing.assert_close(m2.generate(m2.source_test[:50]),
                                   a.model.generate(a.model.source_test[:50]))
    assert Session("gan_ns", {}, split, TrainSettings(seed=4), device="cpu").source is None


def test_a_model_built_outside_a_session_takes_a_standard_normal_source():
    torch.manual_seed(0)
    model = build("cyclegan")
    model.init_from_data(torch.as_tensor(make_split("moons", 400, seed=0).train))
    assert model.source_train.shape[0] > 1000 and model.source_name == "gaussian"
    assert abs(float(model.source_train.std())) == pytest.approx(1.0, abs=0.1)


@pytest.fixture(scope="module")
def snap():
    sess = Session("cyclegan", {"source": "moons"}, make_split("8gaussians", 800, seed=0),
                   TrainSettings(seed=0, batch=128), device="cpu", grid_res=40, n_show=300, n_samples=300)
    sess.train_steps(30)
    sess.snapshot()
    sess.train_steps(30)
    return sess.snapshot()


def test_the_gan_tab_draws_the_map_and_the_cycle_for_cyclegan(snap):
    figs = views.render(snap)
    assert {"translate", "cycle"} <= set(figs) and not {"latent", "recon"} & set(figs)
    for fig in figs.values():
        plots.to_json(fig)
    p = snap.probe
    assert p.source == "moons" and p.map_from.shape == p.translated.shape == p.cycled.shape == (60, 2)
    tr = {t["name"]: t for t in figs["translate"]["data"]}
    np.testing.assert_array_equal(tr["x (start)"]["x"], p.map_from[:, 0])
    np.testing.assert_array_equal(tr["G(x)"]["x"], p.translated[:, 0])
    assert "moons → 8gaussians" in figs["translate"]["layout"]["title"]["text"]
    arrows = tr["x → G(x)"]
    starts = np.stack([arrows["x"][0::7], arrows["y"][0::7]], 1)  # each arrow: start, end, gap, two head strokes
    np.testing.assert_allclose(starts, p.map_from, rtol=1e-6)
    cyc = {t["name"]: t for t in figs["cycle"]["data"]}
    np.testing.assert_array_equal(cyc["F(G(x))"]["y"], p.cycled[:, 1])
    assert f"{snap.latest['cycle_x']:.3g}" in figs["cycle"]["layout"]["title"]["text"]
    right = [t["name"] for t in figs["extra"]["data"] if t.get("yaxis") == "y2"]
    assert right == ["‖F(G(x)) − x‖₁, held-out x (right axis)", "‖G(F(y)) − y‖₁, held-out y (right axis)"]
    assert "fake Ḡ(x), x ∈ moons" in [t.get("name") for t in figs["main"]["data"]]
    assert any(t.get("name") == "cycle terms (standardised units, before λ)" for t in figs["curves"]["data"])


def test_the_gan_tab_shows_the_cyclegan_panels_only_while_it_is_picked():
    from playground.tabs.gans import _show_model

    for key, want in (("cyclegan", [False, False, True, True]), ("bigan", [True, True, False, False]),
                      ("gan_ns", [False] * 4)):
        assert [u["visible"] for u in _show_model(key)] == want
