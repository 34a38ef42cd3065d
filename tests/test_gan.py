"""The GANs (notes ch. 6): conjugates, optimal discriminators, the gradient penalty, clipping, and
that a non-saturating GAN finds the modes of 8 Gaussians."""

import copy
import math

import numpy as np
import pytest
import torch

from models import REGISTRY, TrainSettings, build
from models.fgan import DIVERGENCES
from models.gan import histogram_js
from models.wgan import gradient_penalty
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


def test_ns_gan_covers_the_8_gaussians():
    """Fixed seed, fixed budget (1200 steps, ~2 s): at least 6 of the 8 modes."""
    torch.manual_seed(0)
    data = make_split("8gaussians", 2000, seed=0)
    x = torch.as_tensor(data.train)
    model = build("gan_ns")
    model.init_from_data(x)
    opt = model.configure_optimizers(TrainSettings())
    for _ in range(1200):
        model.step(x[torch.randint(0, len(x), (256,))], opt)
    cov = metrics.mode_coverage(model.sample(2000).numpy(), data.modes, data.mode_std)
    assert cov["modes_covered"] >= 6, cov
    assert cov["high_quality"] > 0.5, cov


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
