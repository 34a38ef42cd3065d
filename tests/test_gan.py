"""The GANs (notes ch. 6): conjugates, optimal discriminators, the gradient penalty and its Euclidean cost,
clipping, the R1 penalty and the generator's weight average, and that the default non-saturating GAN
finds the modes of 8 Gaussians with sharp samples."""

import copy
import math

import numpy as np
import pytest
import torch

from models import REGISTRY, TrainSettings, build
from models.gans.fgan import DIVERGENCES
from models.gans.gan import R1_EVERY, histogram_js, r1_penalty
from models.gans.wgan import gradient_penalty
from playground import metrics
from playground.datasets import make_split

GAN_KEYS = ["gan_minimax", "gan_ns", "fgan_kl", "fgan_rkl", "fgan_js", "fgan_pearson", "fgan_hellinger",
            "wgan", "wgan_gp"]
DIVS = sorted(DIVERGENCES)


def test_every_objective_is_registered_without_a_density():
    for key in GAN_KEYS:
        assert key in REGISTRY and REGISTRY[key].family == "gan" and REGISTRY[key].density == "none"


# --- f-divergences (notes 6.7, Nowozin et al. 2016 table 2) ----------------------------------------

@pytest.mark.parametrize("name", DIVS)
def test_conjugate_matches_numerical_sup(name):
    """f*(t) = sup_u (u t - f(u)), by brute force over a fine grid of u, at t in the range of g_f."""
    div = DIVERGENCES[name]
    pos = torch.logspace(-8, 8, 400001, dtype=torch.float64)
    u = torch.cat([-pos.flip(0), pos]) if div.u_domain == "real" else pos
    fu = div.f(u)
    t = div.activation(torch.linspace(-3, 3, 25, dtype=torch.float64))
    numeric = torch.stack([(u * ti - fu).max() for ti in t])
    torch.testing.assert_close(div.conjugate(t), numeric, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", DIVS)
def test_conjugate_of_v_is_conjugate_of_activation(name):
    div = DIVERGENCES[name]
    v = torch.linspace(-4, 4, 81, dtype=torch.float64)
    torch.testing.assert_close(div.conjugate_of_v(v), div.conjugate(div.activation(v)))
    assert torch.isfinite(div.conjugate_of_v(torch.tensor([-30.0, 30.0]))).all()
    one = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(div.f(one).sum(), one)
    assert float(div.f(one.detach())) == pytest.approx(0.0, abs=1e-12)  # f(1) = 0
    assert float(grad) == pytest.approx(div.t_equal)  # the optimal T where p = q is f'(1)


def _gaussians_1d(delta=1.5):
    x = torch.linspace(-14, 14, 200001, dtype=torch.float64)
    p = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    q = torch.exp(-0.5 * (x - delta) ** 2) / math.sqrt(2 * math.pi)
    return x, p, q, float(x[1] - x[0])


@pytest.mark.parametrize("name", DIVS)
def test_variational_bound_is_tight_at_the_optimal_T(name):
    """E_p[T*] - E_q[f*(T*)] = D_f(p||q) at T* = f'(p/q) (notes 6.7), by quadrature on two unit
    Gaussians 1.5 apart, against closed forms; any other T gives less."""
    div = DIVERGENCES[name]
    x, p, q, dx = _gaussians_1d(1.5)
    u = (p / q).requires_grad_(True)
    (t_star,) = torch.autograd.grad(div.f(u).sum(), u)
    u = u.detach()

    def bound(t):
        return float(((p * t - q * div.conjugate(t)) * dx).sum())

    d_f = float((q * div.f(u) * dx).sum())
    closed = {"kl": 1.5**2 / 2, "rkl": 1.5**2 / 2, "pearson": math.exp(1.5**2) - 1,
              "hellinger": 2 * (1 - math.exp(-(1.5**2) / 8))}
    if name in closed:
        assert d_f == pytest.approx(closed[name], rel=1e-4)
    else:  # Nowozin's JS generator is 2 JSD
        m = 0.5 * (p + q)
        jsd = float(((0.5 * p * torch.log(p / m) + 0.5 * q * torch.log(q / m)) * dx).sum())
        assert d_f == pytest.approx(2 * jsd, rel=1e-4)
    assert bound(t_star) == pytest.approx(d_f, rel=1e-4)
    worse = div.activation(0.7 * torch.logit(torch.sigmoid(torch.log(u))))  # some other T in the domain
    assert bound(worse) < d_f


# --- the classic GAN (notes 6.4-6.5) -------------------------------------------------------------------

def _jsd_two_gaussians(delta):
    x, p, q, dx = _gaussians_1d(delta)
    m = 0.5 * (p + q)
    return float(((0.5 * p * torch.log(p / m) + 0.5 * q * torch.log(q / m)) * dx).sum())


def test_minimax_value_at_the_optimal_discriminator_is_js():
    """V(G, D*) = -log 4 + 2 JSD(p, q) at D* = p/(p+q) (notes 6.5), for p = N((-1,0), I) and
    q = N((1,0), I); a trained discriminator without the R1 penalty (which holds D back from D*, whose
    slope is 2 everywhere) approaches it from below."""
    torch.manual_seed(0)
    model = build("gan_minimax", r1=0.0)
    model.init_from_data(torch.randn(1000, 2))  # any standardisation: D* is defined in data space
    shift = torch.tensor([1.0, 0.0])
    real, fake = torch.randn(200000, 2) - shift, torch.randn(200000, 2) + shift
    target = -math.log(4) + 2 * _jsd_two_gaussians(2.0)
    v_star = lambda x: -2 * x[:, 0]  # log p(x) - log q(x)
    v_opt = -float(model.d_loss(v_star(real), v_star(fake)))
    assert v_opt == pytest.approx(target, abs=6e-3)
    assert float(model.divergence(v_star(real), v_star(fake))) == pytest.approx(_jsd_two_gaussians(2.0), abs=3e-3)

    opt = model.configure_optimizers(TrainSettings())
    for group in opt["d"].param_groups:
        group["lr"] = 5e-3
    for _ in range(300):
        model.d_step(torch.randn(512, 2) - shift, opt["d"], fake=torch.randn(512, 2) + shift)
    with torch.no_grad():
        v_trained = -float(model.d_loss(model.critic(real), model.critic(fake)))
    assert v_opt - 0.03 < v_trained < v_opt + 5e-3


def test_minimax_generator_gradient_saturates_when_d_is_sure():
    """Once D rejects the fakes, log(1 - D(G(z))) is flat: the minimax generator's gradient is a small
    fraction of the non-saturating one's at the same parameters (notes 6.4, Goodfellow et al.)."""
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("8gaussians", 2000, seed=0).train)
    mm = build("gan_minimax", lr_d=1e-2, r1=0.0)  # R1 keeps D from becoming this sure
    mm.init_from_data(x)
    opt = mm.configure_optimizers(TrainSettings())
    for _ in range(30):
        mm.d_step(x[torch.randint(0, len(x), (256,))], opt["d"])
    with torch.no_grad():
        d_fake = torch.sigmoid(mm.critic(mm.sample(2000))).mean()
    assert d_fake < 0.05
    ns = build("gan_ns", lr_d=1e-2, r1=0.0)
    ns.load_state_dict(mm.state_dict())
    ns.init_from_data(x)
    norms = {}
    for name, m in (("minimax", mm), ("ns", ns)):
        torch.manual_seed(1)
        norms[name] = m.g_step(512, m.configure_optimizers(TrainSettings())["g"])["g_grad_norm"]
    assert norms["minimax"] < 0.1 * norms["ns"], norms


def test_ns_gan_covers_the_8_gaussians_with_sharp_samples():
    """Fixed seed, fixed budget (600 steps, ~1.5 s): all 8 modes, and more than 84% of the samples within
    3 std of a mode (the defaults give 0.88-0.90 on seeds 0-2; the former ones, leaky ReLU, Adam (0.5,
    0.999), equal learning rates, no R1, no averaging, gave 0.74-0.80). The 25-Gaussian version of this
    check is `python -m playground bench quality --families gan` (too slow for CI)."""
    torch.manual_seed(0)
    data = make_split("8gaussians", 2000, seed=0)
    x = torch.as_tensor(data.train)
    model = build("gan_ns")
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())
    for _ in range(600):
        model.step(x[torch.randint(0, len(x), (256,))], opt)
    cov = metrics.mode_coverage(model.sample(2000).numpy(), data.modes, data.mode_std)
    assert cov["modes_covered"] == 8, cov
    assert cov["high_quality"] > 0.84, cov


# --- the defaults' regularisers: R1 (Mescheder et al. 2018) and the generator's weight average ------------

def test_r1_penalty_of_known_discriminators():
    """v(u) = w·u + b has ∇_u v = w everywhere: R1 = ||w||², whose gradient in w is 2w (the penalty trains D
    through the second-order graph); v(u) = |u|²/2 has ∇_u v = u: R1 = mean |u|²; a flat D costs nothing."""
    d = torch.nn.Linear(2, 1).double()
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[0.6, -2.0]], dtype=torch.float64))
    u = torch.randn(50, 2, dtype=torch.float64)
    r1, v = r1_penalty(d, u)
    assert float(r1.detach()) == pytest.approx(0.36 + 4.0, rel=1e-12)
    torch.testing.assert_close(v, d(u).squeeze(-1).detach(), check_stride=False)
    (g,) = torch.autograd.grad(r1, d.weight)
    torch.testing.assert_close(g, 2 * d.weight.detach())
    r1_quad, _ = r1_penalty(lambda x: 0.5 * (x**2).sum(1, keepdim=True), u)
    torch.testing.assert_close(r1_quad, (u**2).sum(1).mean())
    with torch.no_grad():
        d.weight.zero_()
    assert float(r1_penalty(d, u)[0].detach()) == 0.0


def test_d_step_adds_r1_lazily_on_every_fourth_step():
    """Lazy R1 (Karras et al. 2020, §4): D's update is the gradient of the game's loss plus R1_EVERY·γ/2·R1
    on steps 0, 4, 8, ... and of the game's loss alone on the others (checked through plain SGD); the logged
    d_loss is the game's alone (the curve's "log 4 when D cannot tell" still holds)."""
    torch.manual_seed(0)
    x = torch.randn(400, 2, dtype=torch.float64) * 3 + 1
    gamma, lr = 2.0, 0.1
    model = build("gan_ns", r1=gamma, optimizer="sgd", lr_d=lr).double()
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())["d"]
    real, fake = x[:64], torch.randn(64, 2, dtype=torch.float64)
    params = list(model.discriminator.parameters())
    with_r1 = []
    for i in range(2 * R1_EVERY + 1):
        before = [p.detach().clone() for p in params]
        v = model.critic(torch.cat([real, fake]))
        game = model.d_loss(v[:64], v[64:])
        r1, _ = r1_penalty(model.discriminator, model.norm(real))
        plain = torch.autograd.grad(game, params, retain_graph=True)
        full = torch.autograd.grad(game + R1_EVERY * 0.5 * gamma * r1, params)
        out = model.d_step(real, opt, fake=fake)
        assert out["d_loss"] == pytest.approx(float(game.detach()), rel=1e-9)
        moved = [b - p.detach() for p, b in zip(params, before)]
        with_r1.append(all(torch.allclose(m, lr * g) for m, g in zip(moved, full)))
        assert with_r1[-1] or all(torch.allclose(m, lr * g) for m, g in zip(moved, plain)), i
    assert with_r1 == [i % R1_EVERY == 0 for i in range(2 * R1_EVERY + 1)]


def test_r1_is_taken_in_standardised_coordinates():
    """The same discriminator on data and on data x 10 (each standardised by its own fit) pays the same R1:
    one γ works at every data scale."""
    torch.manual_seed(0)
    x, fake = torch.randn(500, 2, dtype=torch.float64) + 2, torch.randn(64, 2, dtype=torch.float64)
    a = build("gan_ns").double()
    b = build("gan_ns").double()
    b.load_state_dict(a.state_dict())
    a.init_from_data(x)
    b.init_from_data(10 * x)
    ra, rb = a.d_terms(x[:64], fake)["r1"], b.d_terms(10 * x[:64], 10 * fake)["r1"]
    assert float(ra.detach()) > 0
    torch.testing.assert_close(ra, rb)


def test_a_checkpoint_replays_exactly():
    """The state dict holds what the next steps depend on besides the parameters: lazy R1's phase and the
    average's warm-up. Loaded back with the optimisers' and the RNG's states, the same steps give the same
    weights (the session's NaN rollback replays from a checkpoint this way)."""
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("8gaussians", 1000, seed=0).train)
    model = build("gan_ns")
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())
    for _ in range(3):
        model.step(x[:128], opt)
    saved = (copy.deepcopy(model.state_dict()), {k: copy.deepcopy(o.state_dict()) for k, o in opt.items()},
             {k: g.get_state() for k, g in model._gens.items()})
    for _ in range(3):
        model.step(x[:128], opt)
    first = copy.deepcopy(model.state_dict())
    model.load_state_dict(saved[0])
    for k, o in opt.items():
        o.load_state_dict(saved[1][k])
    for k, state in saved[2].items():
        model._gens[k].set_state(state)
    for _ in range(3):
        model.step(x[:128], opt)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, first[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("key", ["gan_ns", "wgan_gp"])
def test_a_run_draws_only_from_its_own_generators(key):
    """z, the critic's extra real batches and WGAN-GP's ε come from the run's "train" generator: another
    session drawing from torch's global generator between steps, or a frame drawing samples and metrics,
    leaves the run's weights bit for bit as they were (the same seed gives the same run whoever else is
    training)."""
    x = torch.as_tensor(make_split("8gaussians", 1000, seed=0).train)

    def run(disturb: bool) -> dict:
        torch.manual_seed(3)
        model = build(key)
        model.init_from_data(x)
        opt = model.configure_optimizers(TrainSettings())
        for i in range(4):
            model.step(x[:128], opt)
            if disturb:
                torch.manual_seed(1000 + i)
                torch.randn(50)
                model.sample(64)
                model.metrics(x[:200])
        return copy.deepcopy(model.state_dict())

    quiet, disturbed = run(False), run(True)
    for k, v in quiet.items():
        torch.testing.assert_close(disturbed[k], v, rtol=0, atol=0, msg=k)


def test_samples_come_from_the_generators_moving_average():
    """After every G update θ̄ ← d_t θ̄ + (1 − d_t) θ with d_t = min(d, (1 + t)/(10 + t)); sample() and the
    manifold use Ḡ, the tracked fakes (what D faces, what the push moves) G itself; Ḡ is saved with the model.
    With average = 0 there is no copy and the samples are G's."""
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("8gaussians", 1000, seed=0).train)
    model = build("gan_ns", average=0.9)
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())
    avg = [p.detach().clone() for p in model.generator.parameters()]
    for t in range(30):
        model.step(x[torch.randint(0, len(x), (128,))], opt)
        d = min(0.9, (1 + t) / (10 + t))
        avg = [d * a + (1 - d) * p.detach() for a, p in zip(avg, model.generator.parameters())]
    for a, p in zip(avg, model.generator_avg.parameters()):
        torch.testing.assert_close(p, a)
    assert not torch.allclose(model.generator_avg[0].weight, model.generator[0].weight)
    state = model.rng("view").get_state()
    s = model.sample(100)
    model.rng("view").set_state(state)
    z = model.prior(100, "view")
    torch.testing.assert_close(s, model.generate(z, model.generator_avg))
    assert not torch.allclose(s, model.generate(z).detach())
    grid = torch.as_tensor(metrics.make_grid((-4, 4, -4, 4), 10)[2])
    ex = model.probe(grid, x[:100])
    torch.testing.assert_close(torch.as_tensor(ex["fake_xy"]), model.generate(model.z_probe).detach())
    line = torch.zeros(48, 2)
    line[:, 0], line[:, 1] = torch.linspace(-2.5, 2.5, 48), -2.5
    torch.testing.assert_close(torch.as_tensor(ex["manifold_u"][0]), model.generate(line, model.generator_avg))
    assert "generator_avg.0.weight" in model.state_dict()
    plain = build("gan_ns", average=0.0)
    plain.init_from_data(x)
    assert plain.generator_avg is None and plain.shown is plain.generator
    state = plain.rng("view").get_state()
    s = plain.sample(100)
    plain.rng("view").set_state(state)
    torch.testing.assert_close(s, plain.generate(plain.prior(100, "view")).detach())


# --- Wasserstein GANs (notes 6.8) ----------------------------------------------------------------------

def test_gradient_penalty_matches_autograd_per_sample():
    """The model's penalty equals lambda E[(||grad f(x_hat)|| - 1)^2] with per-sample gradients from
    torch.func and from central finite differences, at the same x_hat."""
    torch.manual_seed(0)
    model = build("wgan_gp").double()
    model.init_from_data(torch.randn(500, 2, dtype=torch.float64) * 2)
    real, fake = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64) + 1
    eps = torch.rand(64, 1, dtype=torch.float64)
    terms = model.d_terms(real, fake, eps=eps)
    x_hat = eps * real + (1 - eps) * fake
    grads = torch.func.vmap(torch.func.grad(lambda x: model.critic(x[None])[0]))(x_hat)
    expected = ((grads.norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(terms["gp"], expected)
    h = 1e-6
    with torch.no_grad():
        fd = torch.stack([(model.critic(x_hat + h * e) - model.critic(x_hat - h * e)) / (2 * h)
                          for e in torch.eye(2, dtype=torch.float64)], 1)
    torch.testing.assert_close(fd, grads, atol=1e-6, rtol=1e-5)
    # the curve shows the critic's loss alone; the update adds lambda * gp, which trains it (second order)
    plain = model.d_loss(model.critic(real), model.critic(fake))
    torch.testing.assert_close(terms["d_loss"], plain)
    torch.testing.assert_close(terms["penalty"], model.cfg.gp_weight * expected)
    (g,) = torch.autograd.grad(terms["gp"], model.discriminator[0].weight)
    assert g.abs().sum() > 0


def test_gradient_penalty_is_euclidean_the_transport_cost_of_the_papers():
    """Settled: the cost is ||x − y||₂ (Arjovsky et al., Gulrajani et al.), not the notes' ||x − y||₁, so the
    constraint is ||∇f||₂ = 1: f = 0.6 x₁ + 0.8 x₂ pays nothing (under the L1 cost, ||∇f||_∞ = 0.8 would pay
    0.04), f = x₁ + x₂ pays (√2 − 1)² (its ||∇f||_∞ = 1 would pay nothing)."""
    real, fake = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    for w, want in (((0.6, 0.8), 0.0), ((1.0, 1.0), (math.sqrt(2) - 1) ** 2)):
        w = torch.tensor(w, dtype=torch.float64)
        gp, norms = gradient_penalty(lambda x, w=w: x @ w, real, fake)
        assert float(gp) == pytest.approx(want, abs=1e-12)
        torch.testing.assert_close(norms, torch.full((64,), float(w.norm()), dtype=torch.float64))


def test_gradient_penalty_of_a_quadratic_critic():
    """f(x) = |x|^2 / 2 has grad f(x_hat) = x_hat: the penalty is mean((|x_hat| - 1)^2)."""
    real, fake, eps = torch.randn(100, 2), torch.randn(100, 2), torch.rand(100, 1)
    gp, norms = gradient_penalty(lambda x: 0.5 * (x**2).sum(1), real, fake, eps)
    x_hat = eps * real + (1 - eps) * fake
    torch.testing.assert_close(norms, x_hat.norm(dim=1))
    torch.testing.assert_close(gp, ((x_hat.norm(dim=1) - 1) ** 2).mean())


def test_wgan_clipping_keeps_critic_weights_in_range():
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("moons", 1000, seed=0).train)
    model = build("wgan", clip=0.01, lr_d=0.05, lr_g=0.05)
    model.init_from_data(x)
    c = model.cfg.clip
    assert all(p.abs().max() <= c for p in model.discriminator.parameters())  # from the start
    opt = model.configure_optimizers(TrainSettings())
    for _ in range(10):
        model.step(x[torch.randint(0, len(x), (128,))], opt)
    d = torch.cat([p.detach().flatten() for p in model.discriminator.parameters()])
    assert d.abs().max() <= c
    assert (d.abs() == c).float().mean() > 0.2  # the constraint is active, not vacuous
    g = torch.cat([p.detach().flatten() for p in model.generator.parameters()])
    assert g.abs().max() > c  # only the critic is clipped


def test_step_takes_k_critic_steps_then_one_generator_step(monkeypatch):
    model = build("wgan", d_steps=5)
    x = torch.randn(300, 2)
    model.init_from_data(x)
    calls = []
    orig_d, orig_g = model.d_step, model.g_step
    monkeypatch.setattr(model, "d_step", lambda *a, **k: calls.append("d") or orig_d(*a, **k))
    monkeypatch.setattr(model, "g_step", lambda *a, **k: calls.append("g") or orig_g(*a, **k))
    out = model.step(x[:64], model.configure_optimizers(TrainSettings()))
    assert calls == ["d"] * 5 + ["g"]
    assert out["loss"] == out["d_loss"] and {"g_loss", "g_grad_norm"} <= set(out)


def test_each_player_has_its_own_live_learning_rate():
    model = build("gan_ns")
    opts = model.configure_optimizers(TrainSettings(lr=0.5))
    assert opts["d"].param_groups[0]["lr"] == model.cfg.lr_d and opts["g"].param_groups[0]["lr"] == model.cfg.lr_g
    model.live_update("lr_d", 0.01, opts)
    assert opts["d"].param_groups[0]["lr"] == 0.01 and opts["g"].param_groups[0]["lr"] == model.cfg.lr_g
    model.live_update("lr_g", 3e-4, opts)
    assert opts["g"].param_groups[0]["lr"] == 3e-4 and model.cfg.lr_g == 3e-4
    model.live_update("lr", 0.9, opts)  # the shared setting does not apply to GANs
    assert opts["d"].param_groups[0]["lr"] == 0.01
    model.live_update("d_steps", 3, opts)
    assert model.cfg.d_steps == 3
    wgp = build("wgan_gp")
    opts = wgp.configure_optimizers(TrainSettings())
    assert opts["d"].param_groups[0]["betas"] == (wgp.cfg.beta1, wgp.cfg.beta2) == (0.0, 0.9)
    assert isinstance(build("wgan").configure_optimizers(TrainSettings())["d"], torch.optim.RMSprop)


# --- probes and metrics ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["gan_minimax", "fgan_rkl", "wgan_gp"])
def test_push_arrows_lower_each_fakes_generator_loss(key):
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("8gaussians", 1000, seed=0).train)
    model = build(key)
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())
    for _ in range(20):
        model.step(x[torch.randint(0, len(x), (128,))], opt)
    grid = torch.as_tensor(metrics.make_grid((-4, 4, -4, 4), 30)[2])
    ex = model.probe(grid, x[:200])
    assert ex["surface"].shape == (900,) and np.isfinite(ex["surface"]).all()
    fake, push = torch.as_tensor(ex["fake_xy"]), torch.as_tensor(ex["fake_push"])
    step = 1e-3 / push.norm(dim=1, keepdim=True).clamp_min(1e-12)
    with torch.no_grad():
        before = model.g_loss_per_sample(model.critic(fake))
        after = model.g_loss_per_sample(model.critic(fake + step * push))
    assert (after < before).float().mean() > 0.95


@pytest.mark.parametrize("dim,n_traces", [(1, 1), (2, 2), (4, 2)])
def test_generator_manifold_is_the_image_of_a_latent_grid(dim, n_traces):
    model = build("gan_ns", latent_dim=dim)
    model.init_from_data(torch.randn(200, 2))
    man = model.manifold(n_lines=5, n_pts=7)
    assert len(man) == n_traces
    if dim >= 2:
        z = torch.zeros(7, dim)
        z[:, 0] = torch.linspace(-2.5, 2.5, 7)
        z[:, 1] = -2.5  # the first line of constant z2
        torch.testing.assert_close(torch.as_tensor(man["manifold_u"][0]), model.generate(z).detach())
    else:
        assert man["manifold_u"].shape == (1, 200, 2)


def test_histogram_js_is_zero_for_equal_and_one_bit_for_disjoint_samples():
    box = torch.tensor([-4.0, 4.0, -4.0, 4.0])
    a = torch.randn(3000, 2) * 0.5 - 2
    assert histogram_js(a, a.clone(), box) == pytest.approx(0.0, abs=1e-12)
    assert histogram_js(a, a + 4, box) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < histogram_js(a, torch.randn(3000, 2) * 0.5 - 2, box) < 0.1


def test_metrics_report_the_divergence_estimate():
    torch.manual_seed(0)
    x = torch.as_tensor(make_split("8gaussians", 1000, seed=0).train)
    for key in GAN_KEYS:
        m = build(key)
        m.init_from_data(x)
        out = m.metrics(x[:300])
        assert set(out) == {"divergence", "hist_js"} and all(math.isfinite(v) for v in out.values()), key
        assert 0.0 <= out["hist_js"] <= 1.0


def test_fgan_js_with_the_non_saturating_loss_is_the_non_saturating_gan():
    """Same f (Nowozin's JS is 2 JSD up to constants): identical gradients for both players."""
    torch.manual_seed(0)
    a = build("fgan_js")
    b = build("gan_ns")
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    x, fake = torch.randn(64, 2), torch.randn(64, 2)
    for m in (a, b):
        m.zero_grad()
        (m.d_terms(x, fake)["d_loss"] + m.g_loss_per_sample(m.critic(fake)).mean()).backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)
