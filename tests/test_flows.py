"""Normalizing flows (notes ch. 5): every layer's log-det against autograd's Jacobian, inverses,
densities that integrate to one, MADE's autoregressive property, the planar constraint, both
objectives, the teacher -> student phases, and the layer-by-layer probe."""

import math
import os

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from models import REGISTRY, TrainSettings, build
from models.flows.layers import (
    INPUT_BOUND,
    AdditiveCoupling,
    AffineCoupling,
    DiagonalScaling,
    IAFLayer,
    MAFLayer,
    PlanarLayer,
)
from models.flows.model import AVERAGE_EVERY, TARGET_DATASET_NAMES, _warp_inputs, normal_log_prob
from playground.datasets import DATASETS, make_split
from playground.densities import dataset_log_prob
from playground.session import Session

FLOWS = ["planar", "nice", "realnvp", "maf", "iaf", "iaf_student"]
LAYERS = {
    "planar": lambda: PlanarLayer(),
    "additive_keep0": lambda: AdditiveCoupling(0, 16, 2),
    "additive_keep1": lambda: AdditiveCoupling(1, 16, 1),
    "scaling": lambda: DiagonalScaling(),
    "affine_keep0": lambda: AffineCoupling(0, 16, 2),
    "affine_keep1": lambda: AffineCoupling(1, 16, 3),
    "maf": lambda: MAFLayer(2, 16, 2),
    "maf_reversed": lambda: MAFLayer(2, 16, 2, reverse=True),
    "iaf": lambda: IAFLayer(2, 16, 2),
    "iaf_reversed": lambda: IAFLayer(2, 16, 1, reverse=True),
}


def perturb(module, scale=0.3):
    """Move every parameter off its (identity) initialisation, so the checks see a real map."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def slogdet_of(fn, points):
    """log|det| of fn's 2x2 Jacobian at each point, by autograd."""
    return torch.stack([torch.linalg.slogdet(jacobian(lambda v: fn(v[None])[0], p))[1] for p in points])


# --- layers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_layer_log_det_matches_autograd_jacobian(name, float64):
    layer = perturb(LAYERS[name]())
    z = torch.randn(6, 2) * 1.5
    x, log_det = layer(z)
    assert x.shape == (6, 2) and log_det.shape == (6,)
    assert not torch.allclose(x, z), "a perturbed layer must move the points"
    torch.testing.assert_close(log_det, slogdet_of(lambda v: layer(v)[0], z), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_inverse_round_trip(name, float64):
    layer = perturb(LAYERS[name]())
    z = torch.randn(50, 2) * 1.5
    x, log_det = layer(z)
    if name == "planar":
        with pytest.raises(NotImplementedError, match="no closed-form inverse"):
            layer.inverse(x)
        back, inv_det = layer.solve_inverse(x)
    else:
        back, inv_det = layer.inverse(x)
    torch.testing.assert_close(back, z, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(inv_det, -log_det, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_gradients_match_finite_differences(name, float64):
    """Gradients through each layer (what reverse KL and maximum likelihood follow), both directions."""
    layer = perturb(LAYERS[name]())
    z = torch.randn(4, 2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: torch.cat([layer(v)[0].flatten(), layer(v)[1]]), (z,))
    if name != "planar":
        assert torch.autograd.gradcheck(lambda v: torch.cat([layer.inverse(v)[0].flatten(), layer.inverse(v)[1]]), (z,))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cls", [MAFLayer, IAFLayer])
def test_made_is_autoregressive_by_gradients(cls, reverse):
    """μ_i and α_i may depend only on the coordinates before i in the layer's order (notes 3.1.4):
    checked by the gradients of each output with respect to each input."""
    layer = perturb(cls(2, 32, 2, reverse=reverse), 0.5)
    order = [i - 1 for i in sorted(range(1, 3), key=lambda i: layer.order[i - 1])]  # coordinates, first first
    first, second = order
    v = torch.randn(16, 2, requires_grad=True)
    mu, alpha = layer._params(v)
    for out in (mu, alpha):
        g_first = torch.autograd.grad(out[:, first].sum(), v, retain_graph=True)[0]
        g_second = torch.autograd.grad(out[:, second].sum(), v, retain_graph=True)[0]
        assert torch.all(g_first == 0), "the first coordinate's parameters must be constants"
        assert torch.all(g_second[:, second] == 0), "an output must not see its own input"
        assert g_second[:, first].abs().max() > 0, "the second coordinate must depend on the first"


def test_scales_are_soft_clamped():
    layer = AffineCoupling(0, 8, 1)
    with torch.no_grad():
        layer.net.linears[-1].bias.fill_(1e4)  # a runaway scale output
    x, log_det = layer(torch.randn(10, 2))
    assert torch.isfinite(x).all() and (log_det.abs() <= 4.0 + 1e-5).all()


# --- whole flows ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moons():
    return torch.as_tensor(make_split("moons", 1000, seed=0).train)


def perturbed_model(key, data, scale=0.15):
    torch.manual_seed(1)
    m = build(key)
    m.init_from_data(data)
    return perturb(m, scale)


def flow_parts(model):
    """(forward map z -> standardised u, standardizer) of the flow whose density log_prob gives."""
    if model.key == "iaf_student":
        return model.student, model.standardizer
    return model.shown, model.standardizer


@pytest.mark.parametrize("key", FLOWS)
def test_whole_flow_log_prob_matches_jacobian(key, moons, float64):
    """log p(x) = log N(z) - log|det ∂x/∂z| at x = f(z), with ∂x/∂z from autograd through every
    layer and the standardisation: checks the inverse pass, the summed log-dets and the data units."""
    m = perturbed_model(key, moons.double()).double()
    flow, std = flow_parts(m)
    z = torch.randn(8, 2)

    def f(v):
        return std.inverse(flow(v)[0])

    x = f(z)
    expected = normal_log_prob(z) - slogdet_of(f, z)
    with torch.no_grad():
        torch.testing.assert_close(m.log_prob(x), expected, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("key", FLOWS)
def test_sampling_pass_gives_the_same_density_as_log_prob(key, float64):
    """log q(x) from the sampling pass (what reverse KL and the student use) = log_prob(x) from the
    inverse pass, with the data standardisation fitted (its log-det enters both, with one sign)."""
    data = (torch.randn(500, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0]))
    m = perturbed_model(key, data).double()
    m.standardizer.fit(data)  # also in target mode, where it is the identity otherwise
    assert float(m.standardizer.log_det()) == pytest.approx(-math.log(3.0 * 0.5), abs=0.1)
    torch.manual_seed(3)
    x, log_q = m.sample_with_log_prob(64)
    with torch.no_grad():
        torch.testing.assert_close(log_q.detach(), m.log_prob(x.detach()), atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("key", FLOWS)
def test_density_integrates_to_one(key):
    """After a little training (reverse KL to U1 for planar, data otherwise) the exact density sums
    to 1 over a fine grid holding the data: the change of variables formula normalises it."""
    data = make_split("u1" if key == "planar" else "moons", 1000, seed=0)
    sess = Session(key, {"layers": 4} if key != "iaf_student" else {"layers": 3, "teacher_steps": 100},
                   data, TrainSettings(lr=5e-3, batch=256, seed=0))
    sess.train_steps(150)
    m = sess.model
    g = torch.linspace(-7, 7, 351)
    pts = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        lp = m.log_prob(pts).double()
    mass = float(torch.exp(lp).sum() * (g[1] - g[0]) ** 2)
    assert mass == pytest.approx(1.0, abs=0.02)


def test_planar_constraint_holds_after_huge_learning_rate_steps():
    """wᵀû ≥ -1 (notes 5.4.1) whatever Adam does to u and w, even at the largest allowed lr."""
    torch.manual_seed(0)
    m = build("planar", layers=8)
    m.use_target(dataset_log_prob("u1", 1.0), "u1")
    opts = m.configure_optimizers(TrainSettings(lr=1.0))
    w0 = torch.stack([layer.w.detach().clone() for layer in m.flow.layers])
    for _ in range(60):
        m.step(torch.zeros(256, 2), opts)
        for layer in m.flow.layers:
            assert float(layer.w.detach() @ layer.u_hat().detach()) >= -1.0
    moved = torch.stack([layer.w.detach() for layer in m.flow.layers]) - w0
    assert moved.abs().max() > 1.0  # the steps were huge indeed


def test_fitting_a_target_needs_a_density():
    with pytest.raises(ValueError, match="U1"):
        Session("planar", {}, make_split("moons", 400, seed=0))
    with pytest.raises(ValueError, match="no(ne)? .*closed form"):
        Session("realnvp", {"fit": "target"}, make_split("checkerboard", 400, seed=0))
    Session("realnvp", {"fit": "target"}, make_split("u2", 400, seed=0))  # fine: U2 has a density


def test_target_datasets_listed_are_those_with_a_torch_density():
    have = {n for n, d in DATASETS.items() if dataset_log_prob(n, d.noise) is not None}
    assert set(TARGET_DATASET_NAMES) == have


def test_reverse_kl_fits_a_gaussian_target():
    """Reverse KL to the correlated Gaussian: the KL estimate falls near 0 and the held-out NLL
    reaches the true density's."""
    sess = Session("realnvp", {"fit": "target", "layers": 4, "hidden": 32}, make_split("gaussian", 1000, seed=0),
                   TrainSettings(lr=5e-3, batch=256, seed=0))
    start = sess.model.metrics(sess.test_x)["kl_q_p"]
    assert sess.train_steps(400)
    out = sess.evaluate()
    assert out["kl_q_p"] < 0.05 < start
    assert out["iw_bound"] <= 0.01 and out["ess"] > 0.8
    assert out["test_nll"] == pytest.approx(out["data_nll"], abs=0.08)


@pytest.mark.parametrize("key", ["nice", "maf", "iaf"])
def test_maximum_likelihood_approaches_the_true_density(key):
    sess = Session(key, {"layers": 4, "hidden": 32}, make_split("banana", 2000, seed=0),
                   TrainSettings(lr=5e-3, batch=256, seed=0))
    before = sess.evaluate()["test_nll"]
    assert sess.train_steps(400)
    out = sess.evaluate()
    assert out["test_nll"] < before - 0.5
    assert out["test_nll"] == pytest.approx(out["data_nll"], abs=0.25)
    assert out["log_pz"] + out["log_det"] == pytest.approx(-out["loss"], abs=1e-4)


def test_teacher_then_student():
    """Phase 1 moves only the teacher; phase 2 only the student, lowering KL(s ‖ t)."""
    sess = Session("iaf_student", {"layers": 3, "hidden": 32, "teacher_steps": 150},
                   make_split("banana", 1000, seed=0), TrainSettings(lr=5e-3, batch=256, seed=0))
    m = sess.model

    def snap(flow):
        return [p.detach().clone() for p in flow.parameters()]

    t0, s0 = snap(m.teacher), snap(m.student)
    assert m.phase == "teacher" and m.grad_exempt == ("student.",)
    sess.train_steps(150)
    assert m.phase == "student" and m.grad_exempt == ("teacher.",)
    t1, s1 = snap(m.teacher), snap(m.student)
    assert any(not torch.equal(a, b) for a, b in zip(t0, t1))
    assert all(torch.equal(a, b) for a, b in zip(s0, s1))
    kl_start = m.metrics(sess.test_x)["kl_student_teacher"]
    sess.train_steps(300)
    assert all(torch.equal(a, b) for a, b in zip(t1, snap(m.teacher)))
    out = sess.evaluate()
    assert out["kl_student_teacher"] < min(0.3, kl_start / 3)
    assert out["test_nll"] == pytest.approx(out["teacher_test_nll"], abs=0.3)
    terms = m.loss(sess.train_x[:64])  # phase 2: every student parameter is trained
    terms["loss"].backward()
    assert all(p.grad is not None for p in m.student.parameters())


@pytest.mark.parametrize("key", ["realnvp", "planar", "maf"])
def test_layer_probe_pushes_grid_and_density_forward(key, moons, float64):
    """The probe's last stage is the model: its nodes' densities, got forward without any inverse,
    equal log_prob at those points; stage 0 is the base grid in data units."""
    m = perturbed_model(key, moons.double(), scale=0.05).double()  # well conditioned: a test of the formula
    with torch.no_grad():
        ex = m.probe(torch.zeros(4, 2), moons[:30].double())
        L = len(m.flow.layers)
        assert ex["stage_lines"].shape[0] == ex["stage_nodes"].shape[0] == L + 1
        assert ex["layer_log_det"].shape == (L,) and len(ex["layer_names"]) == L
        nodes = torch.as_tensor(ex["stage_nodes"][-1])
        logp = torch.as_tensor(ex["stage_logp"][-1]).double()  # the probe sends float32
        torch.testing.assert_close(logp, m.log_prob(nodes), atol=1e-4, rtol=1e-5)
        _, grid = _warp_inputs("cpu")
        torch.testing.assert_close(torch.as_tensor(ex["stage_nodes"][0]), m.standardizer.inverse(grid))
        torch.testing.assert_close(torch.as_tensor(ex["stage_logp"][0]).double(),
                                   normal_log_prob(grid) + m.standardizer.log_det(), atol=1e-5, rtol=1e-6)
        z, _ = m.pull(m.standardizer(moons[:30].double()), m.shown)
        np.testing.assert_allclose(ex["latent"], z.numpy(), atol=1e-5)


def test_every_flow_is_registered_with_a_docstring():
    for key in FLOWS:
        cls = REGISTRY[key]
        assert cls.family == "flow" and cls.density == "exact" and "notes 5" in cls.__doc__


@pytest.mark.skipif(os.environ.get("PLAYGROUND_COMPILE_TEST") != "1",
                    reason="torch.compile takes 20-130 s cold here; PLAYGROUND_COMPILE_TEST=1 runs it")
def test_compiled_mode_gives_the_same_loss_and_gradients(moons):
    eager = perturbed_model("realnvp", moons)
    compiled = build("realnvp", compile=True)
    compiled.load_state_dict(eager.state_dict())
    a, b = eager.loss(moons[:256])["loss"], compiled.loss(moons[:256])["loss"]
    assert math.isclose(float(a.detach()), float(b.detach()), rel_tol=1e-4)
    a.backward()
    b.backward()
    ge = torch.cat([p.grad.flatten() for p in eager.flow.parameters()])
    gc = torch.cat([p.grad.flatten() for p in compiled.flow.parameters()])
    assert float((gc - ge).norm() / ge.norm()) < 1e-3  # float32 sums in another order



# --- weight averaging and the start near the identity ---------------------------------------------------

def test_shown_flow_is_the_running_average_of_the_trained_weights():
    """Every 8th step t, θ̄ ← d_t^8 θ̄ + (1 − d_t^8) θ with d_t = min(d, (1 + t)/(10 + t)); log_prob, samples
    and the probe use θ̄, the loss uses θ; with average = 0 there is one set of weights."""
    data = make_split("banana", 500, seed=0)
    sess = Session("realnvp", {"layers": 2, "hidden": 16, "average": 0.9}, data, TrainSettings(seed=0))
    m = sess.model
    assert m.shown is m.averaged and not any(p.requires_grad for p in m.averaged.parameters())
    expect = [p.detach().clone() for p in m.flow.parameters()]
    for t in range(1, 41):
        sess.train_steps(1)
        if t % AVERAGE_EVERY == 0:
            d = min(0.9, (1 + t) / (10 + t)) ** AVERAGE_EVERY
            expect = [d * e + (1 - d) * p.detach() for e, p in zip(expect, m.flow.parameters())]
    for e, a in zip(expect, m.averaged.parameters()):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)
    x = sess.test_x[:50]
    with torch.no_grad():
        z, log_det = m.averaged.inverse(m.standardizer(x))
        torch.testing.assert_close(m.log_prob(x), normal_log_prob(z) + log_det + m.standardizer.log_det())
        assert not torch.allclose(m.log_prob(x), m.pull(m.standardizer(x))[0][:, 0])
    terms = m.loss(x)
    terms["loss"].backward()
    assert all(p.grad is not None for p in m.flow.parameters())
    assert all(p.grad is None for p in m.averaged.parameters())
    raw = build("realnvp", layers=2, average=0.0)
    assert raw.averaged is None and raw.shown is raw.flow


def test_nice_leaves_the_identity_on_independent_coordinates():
    """On the 25-Gaussian grid the standardised coordinates are independent, so at the exact identity
    (a zero output layer) every coupling's expected gradient is 0: NICE stayed at the Gaussian fit
    (NLL 4.35 nats) for 3,000 steps. Started as a random shear, it moves off it."""
    sess = Session("nice", {"layers": 4, "hidden": 32, "average": 0.0}, make_split("25gaussians", 2000, seed=0),
                   TrainSettings(seed=0))
    start = sess.evaluate()["train_nll"]
    assert sess.train_steps(400)
    assert sess.evaluate()["train_nll"] < start - 0.3


@pytest.mark.parametrize("key", ["nice", "realnvp", "maf", "iaf"])
def test_flows_start_as_a_volume_preserving_shear(key):
    """Every layer starts with log-scale outputs at 0 (no random contraction: log|det| = 0 everywhere)
    and shift outputs at PyTorch's default initialisation (not the identity: points move)."""
    torch.manual_seed(0)
    m = build(key)
    z = torch.randn(200, 2)
    with torch.no_grad():
        for layer in m.flow.layers:
            x, log_det = layer(z)
            assert torch.equal(log_det, torch.zeros(200))
            if not isinstance(layer, DiagonalScaling):
                assert (x - z).abs().max() > 0.05


def test_standardizer_brings_any_accepted_spread_to_unit_scale():
    """Spreads of 1e-5 (micrometres in metres) and 1e4 both come out with unit standard deviation (the old
    absolute floor of 1e-3 left the first at 0.01); a flat column (points on a line) gets a finite scale."""
    from models.base import Standardizer

    g = torch.Generator().manual_seed(0)
    for spread, centre in ((1e-5, 0.5), (1.0, 0.0), (1e4, -3e4)):
        x = (torch.randn(2000, 2, generator=g, dtype=torch.float64) * spread + centre).float()
        s = Standardizer()
        s.fit(x)
        torch.testing.assert_close(s(x).std(0), torch.ones(2), rtol=1e-3, atol=1e-3)
    line = torch.stack([torch.linspace(0, 1, 100), torch.full((100,), 3.0)], 1)
    s = Standardizer()
    s.fit(line)
    assert torch.isfinite(s(line)).all() and float(s.scale[1]) == pytest.approx(1e-3 * float(s.scale[0]))


@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling, MAFLayer])
def test_layers_are_affine_beyond_the_conditioner_input_bound(cls):
    """The conditioner sees its inputs clamped to ±INPUT_BOUND (ReluNet): beyond, the transformed coordinate
    gets the same shift and scale whatever the conditioning value (the layer is affine there, so a point far
    from the data cannot be thrown to |z| in the hundreds); inside, the net is the unclamped one."""
    torch.manual_seed(0)
    layer = cls(0) if cls is not MAFLayer else cls(2)
    net = layer.net if cls is not MAFLayer else layer.made
    with torch.no_grad():
        net.linears[-1].weight.normal_()  # a non-zero log-scale too (it starts at 0)
    for sign in (1.0, -1.0):
        far = torch.tensor([[sign * (INPUT_BOUND + 1.0), 0.5], [sign * 40.0, 0.5], [sign * 4000.0, 0.5]])
        with torch.no_grad():
            z, log_det = layer.inverse(far)
        torch.testing.assert_close(z[:, 1], z[:1, 1].expand(3))
        torch.testing.assert_close(log_det, log_det[:1].expand(3))
    h = torch.linspace(-INPUT_BOUND + 0.01, INPUT_BOUND - 0.01, 50)[:, None]
    if cls is MAFLayer:
        h = torch.cat([h, h.flip(0)], 1)
    with torch.no_grad():
        torch.testing.assert_close(net(h), net.net(h).reshape(50, -1))


@pytest.mark.parametrize("fused", [True, False])
def test_gradient_clipping_matches_torchs_and_flows_use_it(fused):
    """models.base.clip_grad_norm (a fused Adam's grad_scale, or clip_grad_norm_) gives the same Adam steps as
    clipping the gradients with torch.nn.utils.clip_grad_norm_ first: a spike is scaled down to max_norm, a small
    gradient is left alone. The flows clip at MAX_GRAD_NORM."""
    from models.base import clip_grad_norm
    from models.flows.model import MAX_GRAD_NORM

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(7)), torch.nn.Parameter(torch.randn(3, 2))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_a, opt_b = torch.optim.Adam(a, lr=0.1, fused=fused), torch.optim.Adam(b, lr=0.1, fused=fused)
    for scale in (1.0, 300.0, 0.01, 50.0):
        grads = [torch.randn_like(p) * scale for p in a]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        clip_grad_norm(opt_a, 5.0)
        torch.nn.utils.clip_grad_norm_(b, 5.0)
        opt_a.step()
        opt_b.step()
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q)
    assert build("realnvp").max_grad_norm == MAX_GRAD_NORM == 10.0
