"""Neural spline flow (models/flows/spline.py; Durkan et al. 2019): the rational-quadratic spline meets its
knots with the derivatives it was given, its log-det equals autograd's log|det J| (layer and whole flow,
inside and outside the tail bound), the quadratic-root inverse undoes it, it is monotone and the identity
outside [-B, B], the density integrates to one, and a short maximum-likelihood run lowers the held-out NLL."""

import pytest
import torch
from torch.autograd.functional import jacobian

from models import REGISTRY, TrainSettings, build, family_keys
from models.flows.layers import INPUT_BOUND
from models.flows.model import normal_log_prob
from models.flows.spline import MIN_BIN, MIN_DERIVATIVE, RQSplineCoupling, rq_spline, spline_knots
from playground.datasets import make_split
from playground.session import Session

BOUND = 3.0  # the tail bound B of the layers built here (the default)


def perturb(module, scale=0.3, seed=1):
    """Move every parameter well off PyTorch's initialisation, so the spline is far from the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def layer(keep, bins=6, seed=1):
    torch.manual_seed(seed)
    return perturb(RQSplineCoupling(keep, hidden=16, depth=2, bins=bins, bound=BOUND), seed=seed)


def edge_points():
    """Points inside [-B, B]² and points whose coordinates lie beyond B (the tails) or beyond the conditioner's
    input clamp, on either side."""
    g = torch.Generator().manual_seed(2)
    inside = (torch.rand(8, 2, generator=g) * 2 - 1) * (BOUND - 0.2)
    far = torch.tensor([[0.3, BOUND + 0.4], [BOUND + 0.4, -0.7], [-BOUND - 2.0, 1.1], [1.3, -BOUND - 5.0],
                        [INPUT_BOUND + 1.5, 0.2], [-0.4, -INPUT_BOUND - 1.5], [BOUND + 1.0, -BOUND - 1.0]])
    return torch.cat([inside, far.to(inside.dtype)])


def slogdet_of(fn, points):
    """log|det| of fn's 2x2 Jacobian at each point, by autograd."""
    return torch.stack([torch.linalg.slogdet(jacobian(lambda v: fn(v[None])[0], p))[1] for p in points])


# --- the spline itself ------------------------------------------------------------------------------------

def test_spline_meets_its_knots_with_the_given_derivatives(float64):
    """g(x_k) = y_k and g'(x_k) = d_k at every knot, d_0 = d_K = 1, the knots run from -B to B, and every bin
    and derivative respects the 1e-3 floors: the defining properties of the spline of Durkan et al. §3.1."""
    g = torch.Generator().manual_seed(3)
    n, k = 5, 7
    params = torch.randn(n, 3 * k - 1, generator=g) * 2.0
    knots, ds = spline_knots(params, BOUND)
    xs, ys = knots[:, 0], knots[:, 1]
    assert knots.shape == (n, 2, k + 1) and ds.shape == (n, k + 1)
    torch.testing.assert_close(knots[:, :, 0], torch.full((n, 2), -BOUND))
    torch.testing.assert_close(knots[:, :, -1], torch.full((n, 2), BOUND))
    assert (knots.diff(dim=2) >= MIN_BIN * 2 * BOUND * (1 - 1e-9)).all()
    assert (ds >= MIN_DERIVATIVE).all() and torch.equal(ds[:, [0, -1]], torch.ones(n, 2))
    for j in range(k + 1):
        # evaluate each row's spline at its own j-th knot (a hair inside [-B, B] at the ends)
        x = xs[:, j:j + 1].clamp(-BOUND + 1e-12, BOUND - 1e-12)
        y, log_d = rq_spline(x, params, BOUND)
        torch.testing.assert_close(y, ys[:, j:j + 1], atol=1e-9, rtol=0)
        torch.testing.assert_close(log_d.exp(), ds[:, j:j + 1], atol=1e-7, rtol=1e-7)
        back, _ = rq_spline(ys[:, j:j + 1].clamp(-BOUND + 1e-12, BOUND - 1e-12), params, BOUND, inverse=True)
        torch.testing.assert_close(back, x, atol=1e-9, rtol=0)


def test_zero_parameters_are_the_identity(float64):
    """Uniform bins and unit derivatives (a zero network output): g(x) = x, log g' = 0, everywhere."""
    v = torch.linspace(-2 * BOUND, 2 * BOUND, 101)[:, None]
    for inverse in (False, True):
        y, log_d = rq_spline(v, torch.zeros(101, 3 * 8 - 1), BOUND, inverse=inverse)
        torch.testing.assert_close(y, v, atol=1e-12, rtol=0)
        torch.testing.assert_close(log_d, torch.zeros_like(v), atol=1e-12, rtol=0)


# --- one coupling layer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 1])
def test_layer_log_det_matches_autograd_jacobian(keep, float64):
    """(a) log|det ∂x/∂z| of push and log|det ∂z/∂x| of pull against autograd, inside and outside [-B, B]."""
    f = layer(keep)
    z = edge_points()
    x, log_det = f(z)
    assert x.shape == z.shape and log_det.shape == (z.shape[0],)
    inside = z[:, 1 - keep].abs() < BOUND
    assert (x - z)[inside].abs().max() > 0.1, "a perturbed layer must move the points"
    assert log_det[inside].abs().max() > 0.05, "and change volume"
    torch.testing.assert_close(log_det, slogdet_of(lambda v: f(v)[0], z), atol=1e-9, rtol=1e-9)
    _, inv_det = f.inverse(z)
    torch.testing.assert_close(inv_det, slogdet_of(lambda v: f.inverse(v)[0], z), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("keep", [0, 1])
def test_layer_inverse_round_trip(keep):
    """(b) inverse(forward(z)) = z and forward(inverse(x)) = x to 1e-5 in float32, with opposite log-dets (a
    spline whose slopes stay within [0.05, 3.5] here: where g' is tiny, float32 cannot do better than ~1e-7 / g')."""
    torch.manual_seed(1)
    f = perturb(RQSplineCoupling(keep, hidden=16, depth=2, bins=8, bound=BOUND), scale=0.15)
    g = torch.Generator().manual_seed(4)
    z = torch.cat([torch.randn(4000, 2, generator=g) * 1.5, edge_points()])
    with torch.no_grad():
        x, log_det = f(z)
        assert (x - z).abs().max() > 0.5 and log_det.exp().min() < 0.1
        back, inv_det = f.inverse(x)
        torch.testing.assert_close(back, z, atol=1e-5, rtol=0)
        torch.testing.assert_close(inv_det, -log_det, atol=1e-5, rtol=0)
        z2, inv2 = f.inverse(z)
        x2, det2 = f(z2)
        torch.testing.assert_close(x2, z, atol=1e-5, rtol=0)
        torch.testing.assert_close(det2, -inv2, atol=1e-5, rtol=0)


@pytest.mark.parametrize("keep", [0, 1])
def test_layer_inverse_round_trip_far_from_the_identity(keep, float64):
    """(b) the same in float64 for a strongly perturbed spline (slopes down to ~1e-3), to 1e-9."""
    f = layer(keep, bins=8)
    g = torch.Generator().manual_seed(4)
    z = torch.cat([torch.randn(4000, 2, generator=g) * 1.5, edge_points()])
    with torch.no_grad():
        x, log_det = f(z)
        back, inv_det = f.inverse(x)
        z2, inv2 = f.inverse(z)
        x2, det2 = f(z2)
    torch.testing.assert_close(back, z, atol=1e-9, rtol=0)
    torch.testing.assert_close(inv_det, -log_det, atol=1e-9, rtol=0)
    torch.testing.assert_close(x2, z, atol=1e-9, rtol=0)
    torch.testing.assert_close(det2, -inv2, atol=1e-9, rtol=0)


@pytest.mark.parametrize("keep", [0, 1])
def test_layer_gradients_match_finite_differences(keep, float64):
    """What maximum likelihood and reverse KL follow: gradients through both directions."""
    f = layer(keep, bins=4)
    z = edge_points()[[0, 3, 8, 10]].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: torch.cat([f(v)[0].flatten(), f(v)[1]]), (z,))
    assert torch.autograd.gradcheck(lambda v: torch.cat([f.inverse(v)[0].flatten(), f.inverse(v)[1]]), (z,))


@pytest.mark.parametrize("keep", [0, 1])
def test_layer_is_monotone_and_the_identity_outside_the_tail_bound(keep, float64):
    """(c) for a fixed kept coordinate, the transformed one is strictly increasing across the whole line,
    exactly the identity with log-det 0 beyond ±B, continuous there (g(±B) = ±B, g' → 1), and the kept
    coordinate is untouched."""
    f = layer(keep)
    t = torch.linspace(-BOUND - 3.0, BOUND + 3.0, 6001)
    for a in (-4.0, -1.3, 0.0, 0.7, 2.5):
        z = torch.zeros(t.shape[0], 2)
        z[:, keep], z[:, 1 - keep] = a, t
        with torch.no_grad():
            x, log_det = f(z)
        assert torch.equal(x[:, keep], z[:, keep])
        out = x[:, 1 - keep]
        assert (out.diff() > 0).all(), f"not increasing at kept = {a}"
        tails = t.abs() > BOUND
        assert torch.equal(out[tails], t[tails]) and torch.equal(log_det[tails], torch.zeros(int(tails.sum())))
        assert (out[~tails] - t[~tails]).abs().max() > 0.05  # a real spline inside
        edge = torch.tensor([-BOUND + 1e-6, BOUND - 1e-6])  # g(±B) = ±B with g'(±B) = 1: C¹ into the tails
        z = torch.zeros(2, 2)
        z[:, keep], z[:, 1 - keep] = a, edge
        with torch.no_grad():
            x, log_det = f(z)
        assert (x[:, 1 - keep] - edge).abs().max() < 1e-9 and log_det.abs().max() < 1e-3


# --- the whole flow ---------------------------------------------------------------------------------------

def perturbed_model(data, scale=0.2, **cfg):
    torch.manual_seed(0)
    m = build("nsf", **{"layers": 4, "hidden": 16, "bins": 6, **cfg})
    m.init_from_data(data)
    return perturb(m, scale)


@pytest.fixture(scope="module")
def gaussian_data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(1000, 2, generator=g) * torch.tensor([1.8, 0.6]) + torch.tensor([0.5, -1.0])


def test_whole_flow_log_det_and_log_prob_match_jacobian(gaussian_data, float64):
    """(a) the stack's summed log-det of z -> u against autograd, and log p(x) = log N(z) - log|det ∂x/∂z| at
    x = f(z) through the layers and the standardisation, with points far outside the tail bound too."""
    m = perturbed_model(gaussian_data.double()).double()
    flow, std = m.shown, m.standardizer
    z = torch.cat([torch.randn(6, 2) * 1.2, edge_points()[8:]])
    u, log_det = flow(z)
    torch.testing.assert_close(log_det, slogdet_of(lambda v: flow(v)[0], z), atol=1e-8, rtol=1e-8)

    def f(v):
        return std.inverse(flow(v)[0])

    x = f(z)
    with torch.no_grad():
        torch.testing.assert_close(m.log_prob(x), normal_log_prob(z) - slogdet_of(f, z), atol=1e-8, rtol=1e-8)
        back, inv_det = flow.inverse(u)
        torch.testing.assert_close(back, z, atol=1e-9, rtol=0)
        torch.testing.assert_close(inv_det, -log_det, atol=1e-9, rtol=0)
    x_s, log_q = m.sample_with_log_prob(64)  # the sampling pass's density = the density pass's
    with torch.no_grad():
        torch.testing.assert_close(log_q.detach(), m.log_prob(x_s.detach()), atol=1e-8, rtol=1e-8)


def test_density_integrates_to_one(gaussian_data):
    """(d) a randomly initialised, perturbed flow's exact density sums to 1 over a fine grid (a 2D Riemann sum).
    The box holds 5.3 standard deviations of the data each way at least, and beyond ±B a coordinate is never
    transformed, so the mass outside the box is the base Gaussian's there, ~1e-7."""
    m = perturbed_model(gaussian_data, scale=0.1)
    g = torch.linspace(-9.0, 9.0, 401, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        lp = m.log_prob(pts.float()).double()
    mass = float(torch.exp(lp).sum() * (g[1] - g[0]) ** 2)
    assert float(lp.max()) > 0.0  # far from the fitted Gaussian (whose peak is log 1/(2π·1.8·0.6) = -1.9)
    assert mass == pytest.approx(1.0, abs=0.005)


def test_short_training_lowers_the_held_out_nll():
    """(e) 300 steps of maximum likelihood on the banana (seeded run): the held-out NLL falls by well over half
    a nat, to near the true density's, and the logged terms add up to the loss."""
    sess = Session("nsf", {"layers": 4, "hidden": 32}, make_split("banana", 2000, seed=0),
                   TrainSettings(lr=5e-3, batch=128, seed=0), device="cpu")
    before = sess.evaluate()["test_nll"]
    assert sess.train_steps(300)
    out = sess.evaluate()
    assert out["test_nll"] < before - 0.5
    assert out["test_nll"] == pytest.approx(out["data_nll"], abs=0.25)
    assert out["log_pz"] + out["log_det"] == pytest.approx(-out["loss"], abs=1e-4)
    m = sess.model  # (b) the trained flow, in float32, both ways round, in standardised units
    u = m.standardizer(sess.test_x)
    with torch.no_grad():
        z, inv_det = m.pull(u, m.shown)
        u2, log_det = m.shown(z)
        z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(6))
        x, _ = m.shown(z)
        back, _ = m.pull(x, m.shown)
    torch.testing.assert_close(u2, u, atol=1e-5, rtol=0)
    torch.testing.assert_close(log_det, -inv_det, atol=1e-4, rtol=0)
    # z -> x -> z: slopes down to ~0.03 here amplify float32's rounding of x (~5e-6 at worst on this run)
    torch.testing.assert_close(back, z, atol=2e-5, rtol=0)


# --- registration -----------------------------------------------------------------------------------------

def test_registered_in_the_flows_menu_with_its_settings():
    cls = REGISTRY["nsf"]
    assert cls.family == "flow" and cls.density == "exact" and "notes 5" in cls.__doc__
    keys = family_keys("flow")
    assert keys.index("nsf") == keys.index("planar") + 1 and keys[-1] == "iaf_student"
    spec = {s["name"]: s for s in cls.Config.spec()}
    assert {"layers", "hidden", "depth", "fit", "average", "compile", "bins", "tail_bound"} <= set(spec)
    assert spec["bins"]["default"] == 8 and spec["tail_bound"]["default"] == BOUND
    m = build("nsf", bins=5, tail_bound=2.5, layers=3)
    assert [layer.keep for layer in m.flow.layers] == [0, 1, 0]  # alternates, as Real NVP does
    assert all(layer.bins == 5 and layer.bound == 2.5 for layer in m.flow.layers)
    assert m.flow.names()[0] == "RQ spline coupling (x₂ | x₁), 5 bins"
