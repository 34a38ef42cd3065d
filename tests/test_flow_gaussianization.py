"""Gaussianization flow (models/flows/gaussianization.py, notes 5.4.8) and MintNet (models/flows/mintnet.py,
notes 5.4.7): every layer's log-det against autograd's Jacobian (MintNet's Jacobian triangular with a positive
diagonal), the iterative latent -> data direction undoes the closed-form one (iterations reported), the density
integrates to one, a Gaussian copula is Gaussianized exactly by one rotation and one marginal step set by hand, the
probe's forward densities equal log_prob, and a short maximum-likelihood run on the correlated Gaussian reaches
the true density's held-out NLL."""

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from models import REGISTRY, TrainSettings, build, family_keys
from models.flows.gaussianization import MarginalGaussianization, Rotation
from models.flows.mintnet import MintLayer
from models.flows.model import _warp_inputs, normal_log_prob
from playground.datasets import make_split
from playground.session import Session

KEYS = ["gaussianization", "mintnet"]
LAYERS = {
    "marginal_gaussian": lambda: MarginalGaussianization(4, "gaussian"),
    "marginal_logistic": lambda: MarginalGaussianization(3, "logistic"),
    "marginal_one_kernel": lambda: MarginalGaussianization(1, "gaussian"),
    "rotation": lambda: Rotation(),
    "mint": lambda: MintLayer(16),
    "mint_reversed": lambda: MintLayer(8, reverse=True),
}
ITERATIVE = [k for k in LAYERS if k != "rotation"]


def perturb(module, scale=0.3, seed=1):
    """Move every parameter off its initialisation, so the checks see a real map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def slogdet_of(fn, points):
    """log|det| of fn's 2x2 Jacobian at each point, by autograd."""
    return torch.stack([torch.linalg.slogdet(jacobian(lambda v: fn(v[None])[0], p))[1] for p in points])


def points(n=12, spread=1.5, seed=2):
    g = torch.Generator().manual_seed(seed)
    far = torch.tensor([[4.0, -0.3], [-0.2, -5.0], [6.0, 6.0]])
    return torch.cat([torch.randn(n, 2, generator=g) * spread, far.to(torch.get_default_dtype())])


# --- layers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_layer_log_det_matches_autograd_jacobian(name, float64):
    """The density direction x -> z (the layer's inverse): its log|det ∂z/∂x| against autograd's, and the sampling
    direction's log-det is minus that at the point it lands on."""
    layer = perturb(LAYERS[name]())
    x = points()
    z, log_det = layer.inverse(x)
    assert z.shape == x.shape and log_det.shape == (x.shape[0],)
    assert (z - x).abs().max() > 0.05, "a perturbed layer must move the points"
    torch.testing.assert_close(log_det, slogdet_of(lambda v: layer.inverse(v)[0], x), atol=1e-9, rtol=1e-9)
    back, fwd_det = layer(z)
    torch.testing.assert_close(fwd_det, -log_det, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", ["mint", "mint_reversed"])
def test_mintnet_jacobian_is_triangular_with_a_positive_diagonal(name, float64):
    """MintNet's defining property (notes 5.4.7): the coordinate solved first does not depend on the other one
    (an exact zero above the diagonal, in the layer's order) and the diagonal is positive, so log|det| is the
    sum of the logs of the diagonal."""
    layer = perturb(LAYERS[name](), 0.5)
    i, j = layer.order
    for x in points(6):
        jac = jacobian(lambda v: layer.inverse(v[None])[0][0], x)
        assert jac[i, j] == 0.0
        assert jac[i, i] > 0 and jac[j, j] > 0 and jac[j, i] != 0
        torch.testing.assert_close(layer.inverse(x[None])[1][0], torch.log(jac[i, i] * jac[j, j]))


@pytest.mark.parametrize("name", ITERATIVE)
def test_iterative_direction_undoes_the_closed_form_one(name, float64):
    """forward (latent -> data, the numerical root search) ∘ inverse (data -> latent, closed form) = identity and
    the other way round, to 1e-8 in float64, with opposite log-dets; the iterations each used are recorded
    (Newton steps kept inside a bracket: a handful, where bisection alone needs ~35 for this accuracy)."""
    layer = perturb(LAYERS[name]())
    z = torch.cat([torch.randn(2000, 2, generator=torch.Generator().manual_seed(3)) * 1.5, points()])
    with torch.no_grad():
        x, log_det = layer(z)
        its_forward = layer.last_iterations
        back, inv_det = layer.inverse(x)
        torch.testing.assert_close(back, z, atol=1e-8, rtol=0)
        torch.testing.assert_close(inv_det, -log_det, atol=1e-8, rtol=0)
        z2, _ = layer.inverse(z)
        x2, _ = layer(z2)
        torch.testing.assert_close(x2, z, atol=1e-8, rtol=0)
    print(f"{name}: {its_forward} iterations")
    # one kernel: the bracket [μ + s·z, μ + s·z] is the answer itself, x = μ + s·z, found in no iteration
    assert its_forward <= 12 and (its_forward == 0) == (name == "marginal_one_kernel")


def test_rotation_is_orthogonal_and_exactly_invertible(float64):
    layer = Rotation(0.7)
    r = layer.matrix()
    torch.testing.assert_close(r @ r.T, torch.eye(2))
    x = points()
    z, log_det = layer.inverse(x)
    torch.testing.assert_close(layer(z)[0], x)
    assert torch.equal(log_det, torch.zeros(x.shape[0]))


def test_marginal_gaussianization_is_safe_in_the_tails():
    """Far outside the kernels (float32) z stays finite (|z| ≤ Φ⁻¹(1 − 1e-15) ≈ 7.94), the log-density is finite
    and very low, and the gradients are finite; inside, Φ⁻¹ is taken on the side of the smaller tail, so a
    point 7 standard deviations up keeps its z (a CDF rounded to 1 in float32 would give z = +inf or the clamp)."""
    layer = MarginalGaussianization(1, "gaussian")  # a unit kernel at 0: z = x exactly
    x = torch.tensor([[7.0, -7.0], [1e3, -1e3], [1e15, 0.5]], requires_grad=True)
    z, log_det = layer.inverse(x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    torch.testing.assert_close(z[0], torch.tensor([7.0, -7.0]), atol=1e-4, rtol=0)
    assert float(z.detach().abs().max()) <= 7.95 and float(log_det[1].detach()) < -1e5
    (normal_log_prob(z) + log_det).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())


# --- the Gaussian copula, Gaussianized by hand ------------------------------------------------------

MEAN = torch.tensor([0.7, -1.2], dtype=torch.float64)
STD = torch.tensor([1.6, 0.5], dtype=torch.float64)
RHO = 0.8
COV = torch.outer(STD, STD) * torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64)


def gaussian_log_prob(x):
    return torch.distributions.MultivariateNormal(MEAN, COV).log_prob(x)


def set_marginal(layer, loc, scale):
    with torch.no_grad():
        layer.loc.copy_(torch.as_tensor(loc)[:, None])
        layer.log_scale.copy_(torch.log(torch.as_tensor(scale))[:, None])


def hand_set_flow(first: str, rotate: bool = True):
    """Two blocks set to the known optimum for N(MEAN, COV), data -> latent: marginal 1, rotation 1, marginal 2,
    rotation 2 (the model's layers, z -> x, are these reversed). first = "identity": marginal 1 leaves x as it is
    and rotation 1 turns to COV's principal axes; first = "copula": marginal 1 Gaussianizes each marginal
    exactly (x_d − m_d)/σ_d, leaving the Gaussian copula with correlation ρ, and rotation 1 turns by 45° to the
    copula's principal axes. Marginal 2 then scales each axis by its standard deviation."""
    m = build("gaussianization", layers=2, components=1, average=0.0).double()
    rot2, marg2, rot1, marg1 = m.flow.layers
    if first == "identity":
        set_marginal(marg1, [0.0, 0.0], [1.0, 1.0])
        evals, evecs = torch.linalg.eigh(COV)
        angle = math.atan2(float(evecs[1, 0]), float(evecs[0, 0]))
        mean_1 = MEAN
    else:
        set_marginal(marg1, MEAN, STD)
        evals = torch.tensor([1.0 + RHO, 1.0 - RHO], dtype=torch.float64)
        angle, mean_1 = math.pi / 4, torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        rot1.angle.fill_(angle if rotate else 0.0)
        rot2.angle.fill_(0.4)  # any rotation of N(0, I) is N(0, I)
    loc = mean_1 @ rot1.matrix().detach()  # where the mean goes: z = Rᵀ x, rows
    scale = torch.sqrt(evals) if rotate else (STD if first == "identity" else torch.ones(2, dtype=torch.float64))
    set_marginal(marg2, loc, scale)
    return m


@pytest.mark.parametrize("first", ["identity", "copula"])
def test_gaussian_copula_is_gaussianized_exactly_after_one_rotation(first, float64):
    """Notes 5.4.8: a correlated Gaussian becomes N(0, I) after one rotation to the principal axes and an exact
    marginal Gaussianization. Set by hand (no training), the flow's map x -> z is affine with A Σ Aᵀ = I and
    z(mean) = 0, so its density is exactly N(MEAN, COV)'s; and its samples have that mean and covariance."""
    m = hand_set_flow(first)
    g = torch.Generator().manual_seed(4)
    x = MEAN + torch.randn(300, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(COV).T * 1.5
    with torch.no_grad():
        torch.testing.assert_close(m.log_prob(x), gaussian_log_prob(x), atol=1e-9, rtol=1e-9)
        z0, _ = m.pull(MEAN[None])
    torch.testing.assert_close(z0, torch.zeros(1, 2), atol=1e-9, rtol=0)
    a = jacobian(lambda v: m.pull(v[None])[0][0], x[0])
    torch.testing.assert_close(a @ COV @ a.T, torch.eye(2), atol=1e-9, rtol=0)
    torch.testing.assert_close(jacobian(lambda v: m.pull(v[None])[0][0], x[1]), a)  # the same A everywhere: affine
    s = m.sample(20000).double()
    torch.testing.assert_close(s.mean(0), MEAN, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(s.T), COV, atol=0.08, rtol=0)


@pytest.mark.parametrize("first", ["identity", "copula"])
def test_without_the_rotation_the_marginal_steps_leave_the_correlation(first, float64):
    """The control: the same flow with rotation 1 at 0° has exactly N(0, 1) marginals after marginal 2, but z keeps
    the correlation ρ (A Σ Aᵀ has eigenvalues 1 ± ρ), so it is not N(0, I) and its density is off."""
    m = hand_set_flow(first, rotate=False)
    a = jacobian(lambda v: m.pull(v[None])[0][0], MEAN)
    pushed = a @ COV @ a.T
    # z's covariance is the copula's correlation matrix (turned by rotation 2): eigenvalues 1 ± ρ, not 1 and 1
    torch.testing.assert_close(torch.linalg.eigvalsh(pushed), torch.tensor([1.0 - RHO, 1.0 + RHO]), atol=1e-9, rtol=0)
    x = MEAN[None] + torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        assert abs(float(m.log_prob(x) - gaussian_log_prob(x))) > 0.5


# --- whole flows ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moons():
    return torch.as_tensor(make_split("moons", 1000, seed=0).train)


def perturbed_model(key, data, scale=0.05):
    torch.manual_seed(1)
    m = build(key, layers=4)
    m.init_from_data(data)
    return perturb(m, scale)


@pytest.mark.parametrize("key", KEYS)
def test_whole_flow_log_prob_matches_jacobian_and_round_trips(key, moons, float64):
    """log p(x) = log N(z) + log|det ∂z/∂x| with ∂z/∂x from autograd through every layer and the standardisation,
    and sampling (the iterative direction) lands where the density pass comes back from."""
    m = perturbed_model(key, moons.double()).double()
    flow, std = m.shown, m.standardizer
    x = moons[:8].double()

    def pull(v):
        return flow.inverse(std(v))[0]

    with torch.no_grad():
        torch.testing.assert_close(m.log_prob(x), normal_log_prob(pull(x)) + slogdet_of(pull, x),
                                   atol=1e-8, rtol=1e-8)
        xs, log_q = m.sample_with_log_prob(500)
        torch.testing.assert_close(log_q, m.log_prob(xs), atol=1e-7, rtol=1e-7)
    m.sample(10)
    assert 1 <= m.last_sample_iterations <= 12


@pytest.mark.parametrize("key", KEYS)
def test_density_integrates_to_one(key):
    """After a little training on the moons the exact density sums to 1 over a fine grid holding the data."""
    sess = Session(key, {"layers": 4}, make_split("moons", 1000, seed=0), TrainSettings(lr=5e-3, batch=256, seed=0))
    assert sess.train_steps(100)
    g = torch.linspace(-7, 7, 351)
    pts = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        lp = sess.model.log_prob(pts).double()
    mass = float(torch.exp(lp).sum() * (g[1] - g[0]) ** 2)
    assert mass == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("key", KEYS)
def test_probe_stages_reach_the_model_density_without_an_inverse(key, moons, float64):
    """The layer slider's stages come from the iterative direction (z -> x, layer by layer); the last stage's
    densities, summed forward, equal log_prob at those nodes (the closed-form direction)."""
    m = perturbed_model(key, moons.double()).double()
    with torch.no_grad():
        ex = m.probe(torch.zeros(4, 2), moons[:30].double())
        nodes = torch.as_tensor(ex["stage_nodes"][-1]).double()
        logp = torch.as_tensor(ex["stage_logp"][-1]).double()  # the probe sends float32
        torch.testing.assert_close(logp, m.log_prob(nodes), atol=1e-4, rtol=1e-5)
        _, grid = _warp_inputs("cpu")
        torch.testing.assert_close(torch.as_tensor(ex["stage_nodes"][0]), m.standardizer.inverse(grid))
    assert len(ex["layer_names"]) == len(m.flow.layers) == ex["stage_nodes"].shape[0] - 1


@pytest.mark.parametrize("key", KEYS)
def test_short_training_reaches_the_true_density_on_a_correlated_gaussian(key):
    """300 steps of maximum likelihood on the correlated Gaussian (seeded): the held-out NLL comes within 0.1 nats
    of the true density's, and the solver metrics report a converged inverse."""
    sess = Session(key, {"layers": 4}, make_split("gaussian", 2000, seed=0),
                   TrainSettings(lr=5e-3, batch=256, seed=0))
    assert sess.train_steps(300)
    out = sess.evaluate()
    print(key, {k: round(out[k], 4) for k in ("test_nll", "data_nll", "inverse_iterations", "inverse_error")})
    assert out["test_nll"] == pytest.approx(out["data_nll"], abs=0.1)
    assert out["log_pz"] + out["log_det"] == pytest.approx(-out["loss"], abs=1e-4)
    assert 1 <= out["inverse_iterations"] <= 12 and out["inverse_error"] < 1e-3


# --- registration -----------------------------------------------------------------------------------

def test_registered_in_the_flows_menu_with_their_settings():
    keys = family_keys("flow")
    assert keys.index("nsf") < keys.index("gaussianization") < keys.index("mintnet") < keys.index("iaf_student")
    for key, section in (("gaussianization", "notes 5.4.8"), ("mintnet", "notes 5.4.7")):
        cls = REGISTRY[key]
        assert cls.family == "flow" and cls.density == "exact" and section in cls.__doc__
        assert {"layers", "fit", "average"} <= {s["name"] for s in cls.Config.spec()}
    m = build("gaussianization", layers=3, components=5)
    names = m.flow.names()
    assert len(names) == 6 and names[0].startswith("rotation") and names[1].endswith("(5 gaussian kernels)")
    assert build("mintnet", layers=3).flow.names() == ["MintNet layer (x₁ first)", "MintNet layer (x₂ first)",
                                                      "MintNet layer (x₁ first)"]


@pytest.mark.parametrize("key", KEYS)
def test_metrics_leave_the_runs_generators_alone(key, moons):
    """The solver metrics draw from a generator of their own: the run's view stream is where it was."""
    m = perturbed_model(key, moons)
    state = m.rng("view").get_state()
    out = m.metrics(moons[:100])
    assert set(out) == {"inverse_iterations", "inverse_error"} and np.isfinite(list(out.values())).all()
    assert torch.equal(m.rng("view").get_state(), state)


@pytest.mark.parametrize("key", KEYS)
def test_the_flows_tab_draws_every_panel_and_the_layer_slider(key):
    """The Normalizing flows tab's frame, as the app draws it (the registry gives the tab these models; FlowProbe
    and the flows' view are unchanged): every panel, the slider's stage, and the solver's curve in the metrics."""
    import json

    from playground import plots, views

    sess = Session(key, {"layers": 2}, make_split("moons", 600, seed=0), TrainSettings(batch=128, lr=5e-3))
    snap = list(sess.run(max_steps=30, frame_interval=0.0))[-1]
    figs = views.render(snap, layer=2)
    assert {"main", "samples", "layers", "latent", "curves", "terms", "distance", "perlayer"} == set(figs)
    for fig in figs.values():
        json.loads(plots.to_json(fig))
    depth = len(snap.probe.layer_names)
    assert depth == (4 if key == "gaussianization" else 2)
    assert f"layer 2/{depth}" in figs["layers"]["layout"]["title"]["text"].lower()
    assert np.isfinite(snap.probe.stage_logp).all()
    assert "inverse_iterations" in snap.curves and 1 <= snap.latest["inverse_iterations"] <= 12
