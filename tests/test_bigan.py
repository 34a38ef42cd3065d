"""BiGAN / ALI (notes 6.9): the game's value at its optimum, the encoder learning G⁻¹, every player's gradient,
the run's own random streams, and the views of its codes and reconstructions."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from models import TrainSettings, build
from playground import plots, views
from playground.datasets import make_split
from playground.session import Session

A = torch.tensor([[1.5, 0.5], [-0.3, 0.8]])  # an invertible linear map
B = torch.tensor([1.0, -2.0])


def _linear(weight: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.zero_()
    return lin


def _exact_inverses(scale_e: float = 1.0):
    """A BiGAN whose G is z -> A z and whose E is x -> scale_e · A⁻¹ x (in its standardised coordinates), fitted
    to data drawn from G itself: with scale_e = 1 the joints of (x, E(x)) and (G(z), z) are the same law."""
    torch.manual_seed(0)
    model = build("bigan", r1=0.0, average=0.0)
    model.generator = _linear(A)
    model.encoder = _linear(scale_e * torch.linalg.inv(A))
    model.configure_optimizers(TrainSettings())  # the (E, G) player's parameters are the new networks'
    model.init_from_data(torch.randn(1000, 2) * 3 + 1)  # any standardisation: E(norm(norm⁻¹(G(z)))) = E(G(z))
    with torch.no_grad():
        x = model.generate(torch.randn(20000, 2, generator=torch.Generator().manual_seed(1)))
    model._train = x  # the data: G's own samples
    return model, x


def test_value_is_minus_log_4_when_the_joints_agree_and_d_is_undecided():
    """E = G⁻¹ and data = G(prior): the two joints are one law, the optimal D is 1/2 everywhere and the game's
    value is V = log ½ + log ½ = −log 4 (Goodfellow's optimum; Donahue et al. 2017, Prop. 1 and Thm. 2)."""
    model, x = _exact_inverses()
    with torch.no_grad():
        last = model.discriminator[-1]
        last.weight.zero_()
        last.bias.zero_()  # D ≡ sigmoid(0) = 1/2
        z = model.prior(5000)
        assert float(model.value(x[:5000], z)) == pytest.approx(-math.log(4), abs=1e-6)
        assert float(model.divergence(*model.pairs(x[:5000], z))) == pytest.approx(0.0, abs=1e-6)
        rx, rz = model.inversion_errors(x[:2000], z)
    assert rx < 1e-4 and rz < 1e-5  # E(G(z)) = z and G(E(x)) = x


def test_a_trained_discriminator_cannot_beat_chance_on_equal_joints_but_can_on_unequal_ones():
    """max_D V = −log 4 + 2 JSD(joints): trained on equal joints D stays near 1/2 (V ≈ −log 4, never clearly
    above); with E = ½ A⁻¹ (not G⁻¹) the joints differ and the same training lifts V well above −log 4."""
    def trained_value(scale_e):
        model, x = _exact_inverses(scale_e)
        opt = model.configure_optimizers(TrainSettings())
        g = torch.Generator().manual_seed(2)
        for _ in range(150):
            model.d_step(x[torch.randint(0, len(x), (512,), generator=g)], opt["d"])
        with torch.no_grad():
            return float(model.value(x[:10000], model.prior(10000, "view")))

    equal, unequal = trained_value(1.0), trained_value(0.5)
    assert abs(equal + math.log(4)) < 0.005, equal
    assert unequal > -math.log(4) + 0.5, unequal


def test_d_step_moves_only_d_and_g_step_only_e_and_g():
    torch.manual_seed(0)
    x = torch.randn(1000, 2) @ A.T + B
    model = build("bigan")
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())

    def snap(module):
        return [p.detach().clone() for p in module.parameters()]

    def moved(before, module):
        return [not torch.equal(a, b) for a, b in zip(before, module.parameters())]

    d0, e0, g0 = snap(model.discriminator), snap(model.encoder), snap(model.generator)
    model.d_step(x[:128], opt["d"])
    assert all(moved(d0, model.discriminator)) and not any(moved(e0, model.encoder)) and not any(
        moved(g0, model.generator))
    d1 = snap(model.discriminator)
    model.g_step(128, opt["g"])  # the tab's "one G step": E and G together, on a fresh batch of data
    assert all(moved(e0, model.encoder)) and all(moved(g0, model.generator)) and not any(
        moved(d1, model.discriminator))


def test_every_parameter_gets_a_gradient_from_the_loss():
    torch.manual_seed(0)
    x = torch.randn(500, 2) @ A.T + B
    model = build("bigan")
    model.init_from_data(x)
    terms = model.loss(x[:128])
    terms["loss"].backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {
        "generator", "encoder", "discriminator"}


def _run(seed: int, steps: int, disturb: bool = False, **cfg):
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)) @ A.T + B
    torch.manual_seed(seed)
    model = build("bigan", **cfg)
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        model.step(x[torch.randint(0, len(x), (128,), generator=g)], opt)
        if disturb:
            torch.randn(11)
            model.sample(32)
            model.metrics(x[:200])
    return model, x


def test_same_seed_same_run_and_the_global_generator_untouched():
    """Every draw (z, the extra real batches, the views') comes from the model's own generators: torch's global
    generator is neither read (a disturbed run is bit for bit the same) nor advanced by training or a frame."""
    quiet, x = _run(4, 6)
    disturbed, _ = _run(4, 6, disturb=True)
    for k, v in quiet.state_dict().items():
        assert torch.equal(disturbed.state_dict()[k], v), k
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    opt = quiet.configure_optimizers(TrainSettings())
    quiet.step(x[:128], opt)
    quiet.g_step(64, opt["g"])
    quiet.sample(50)
    quiet.metrics(x[:300])
    quiet.probe(x[:100], x[:100])
    assert torch.equal(torch.random.get_rng_state(), state)


def test_encoder_learns_the_generators_inverse_on_a_linear_gaussian():
    """Data from an invertible linear map of N(0, I): after 800 steps E(G(z)) ≈ z and G(E(x)) ≈ x (loosely:
    the game matches the joints only in distribution; seeded, it gives ‖E(G(z)) − z‖ ≈ 0.3 from 1.25)."""
    model, x = _run(0, 0, g_hidden=32, d_hidden=32, e_hidden=32)
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(2))
    rx0, rz0 = model.inversion_errors(x[:1000], z)
    model, x = _run(0, 800, g_hidden=32, d_hidden=32, e_hidden=32)
    rx, rz = model.inversion_errors(x[:1000], z)
    assert rz < 0.6 and rz < 0.5 * rz0, (rz0, rz)
    assert rx < 0.7 and rx < 0.5 * rx0, (rx0, rx)  # data std is about 1.6 and 0.85 per axis
    m = model.metrics(x[:1000])
    assert {"divergence", "hist_js", "recon_x", "recon_z"} <= set(m) and all(map(math.isfinite, m.values()))


def test_a_checkpoint_replays_exactly():
    model, x = _run(0, 3)
    opt = model.configure_optimizers(TrainSettings())
    saved = (copy.deepcopy(model.state_dict()), {k: g.get_state() for k, g in model._gens.items()})
    for _ in range(3):
        model.step(x[:128], opt)
    first = copy.deepcopy(model.state_dict())
    model2, _ = _run(0, 3)
    opt2 = model2.configure_optimizers(TrainSettings())
    model2.load_state_dict(saved[0])
    for k, s in saved[1].items():
        model2._gens[k].set_state(s)
    for _ in range(3):
        model2.step(x[:128], opt2)
    for k, v in model2.state_dict().items():
        torch.testing.assert_close(v, first[k], rtol=0, atol=0, msg=k)


# --- the views -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snap():
    sess = Session("bigan", {}, make_split("8gaussians", 800, seed=0), TrainSettings(seed=0, batch=128),
                   device="cpu", grid_res=30, n_show=300, n_samples=300)
    sess.train_steps(20)
    sess.snapshot()
    sess.train_steps(10)
    return sess.snapshot()


def test_probe_carries_codes_and_reconstructions(snap):
    p = snap.probe
    assert p.latent_codes.shape == (300, 2) and p.reconstructions.shape == p.recon_from.shape == (60, 2)
    np.testing.assert_allclose(p.recon_from, snap.train[:60], atol=1e-6)
    assert {"recon_x", "recon_z", "divergence"} <= set(snap.latest) and "recon_z" in snap.curves


def test_the_gan_tab_draws_the_encoders_panels_for_bigan_only(snap):
    figs = views.render(snap)
    plain = {"main", "samples", "curves", "extra", "modes", "grad"}  # the family's panels
    assert set(figs) == plain | {"latent", "recon"}
    for fig in figs.values():
        plots.to_json(fig)
    latent = figs["latent"]
    assert [t["name"] for t in latent["data"]] == ["prior N(0, I): 1σ and 2σ circles", "codes E(x) of the data"]
    assert latent["layout"]["xaxis"]["title"]["text"] == "z₁" and "‖E(G(z)) − z‖ = " in latent["layout"]["title"][
        "text"]
    recon = figs["recon"]
    assert [t["name"] for t in recon["data"]] == ["data", "x → G(E(x))", "x (start)", "G(E(x))"]
    seg = recon["data"][1]
    starts = np.stack([seg["x"], seg["y"]], 1).reshape(60, 7, 2)[:, 0]
    ends = np.stack([seg["x"], seg["y"]], 1).reshape(60, 7, 2)[:, 1]
    np.testing.assert_allclose(starts, snap.probe.recon_from, atol=1e-6)  # true-length arrows x -> G(E(x))
    np.testing.assert_allclose(ends, snap.probe.reconstructions, atol=1e-6)
    right = [t["name"] for t in figs["extra"]["data"] if t.get("yaxis") == "y2"]
    assert right == ["‖G(E(x)) − x‖, held-out x (data units) (right axis)", "‖E(G(z)) − z‖, z ~ N(0, I) (right axis)"]
    other = Session("gan_ns", {}, make_split("8gaussians", 400, seed=0), TrainSettings(seed=0, batch=64),
                    device="cpu", grid_res=20)
    other.train_steps(3)
    osnap = other.snapshot()
    assert set(views.render(osnap)) == plain  # other GANs: as before
    assert not any(t.get("yaxis") == "y2" for t in views.render(osnap)["extra"]["data"])
