"""Autoregressive models (notes ch. 3): the autoregressive property, exact probabilities on the grid,
nats per unit area that compare with continuous models, sequential sampling, and the tab's frames."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models import TrainSettings, build
from models.autoregressive.discrete import FLOOR, DiscreteAutoregressive, binned_log_prob
from models.autoregressive.rnade import mog_log_prob
from models.nets import MADE, made_degrees
from playground import metrics, plots, views
from playground.datasets import DATASETS, make_split
from playground.session import Session

ROOT = Path(__file__).resolve().parent.parent
DISCRETE = ["fvsbn", "nade", "made"]
ORDERS = ["x1_first", "x2_first"]


def trained(key, order="x1_first", steps=60, dataset="moons", **cfg):
    torch.manual_seed(0)
    d = make_split(dataset, 1500, seed=0)
    m = build(key, order=order, **cfg)
    m.init_from_data(torch.as_tensor(d.train))
    opts = m.configure_optimizers(TrainSettings(lr=1e-2))
    x = torch.as_tensor(d.train)
    for i in range(steps):
        m.step(x[(i * 256) % 1200:(i * 256) % 1200 + 256], opts)
    return m, d


# --- the autoregressive property, by gradients ------------------------------------------------------

def jacobian_mask(fn, x: torch.Tensor) -> torch.Tensor:
    """(n_out, dim) 0/1: does output o depend on input k anywhere in the batch?"""
    x = x.clone().requires_grad_(True)
    out = fn(x).reshape(x.shape[0], -1)
    dep = torch.zeros(out.shape[1], x.shape[1])
    for o in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, o].sum(), x, retain_graph=True)
        dep[o] = (g.abs().sum(0) > 0).float()
    return dep


@pytest.mark.parametrize("dim,layers,seed", [(2, 1, 0), (3, 2, 1), (5, 2, 2), (4, 3, 3)])
def test_made_output_i_depends_exactly_on_earlier_inputs(dim, layers, seed):
    """nets.MADE: out[:, j, i] has a non-zero gradient w.r.t. x_k iff k comes before i in the order."""
    torch.manual_seed(seed)
    order = (torch.randperm(dim) + 1).tolist()
    net = MADE(dim, hidden=4 * dim, layers=layers, out_mult=3, order=order)
    dep = jacobian_mask(net, torch.randn(64, dim)).view(3, dim, dim)  # [j, i, k]
    label = torch.tensor(order)
    allowed = (label[None, :] < label[:, None]).float()  # [i, k]: k earlier than i
    for j in range(3):
        assert torch.equal(dep[j], allowed), (order, dep[j])


@pytest.mark.parametrize("order", ORDERS)
def test_categorical_made_logits_respect_the_order(order):
    """The model's own MADE: the first variable's K logits see no input, the second's see x_first only."""
    m, _ = trained("made", order, steps=5)
    first, second = m.first, m.second
    dep = jacobian_mask(lambda x: m.net(x), torch.rand(32, 2) * 2 - 1).view(m.K, 2, 2)  # [logit, var, input]
    assert dep[:, first].sum() == 0
    assert dep[:, second, second].sum() == 0
    assert dep[:, second, first].all()
    inp, _ = made_degrees(2, m.cfg.hidden, m.cfg.depth, [1, 2] if first == 0 else [2, 1])
    assert inp[first] == 1 and inp[second] == 2


@pytest.mark.parametrize("key", DISCRETE)
def test_first_logits_do_not_depend_on_the_input(key):
    m, _ = trained(key, steps=5)
    u = torch.linspace(-1, 1, 7, requires_grad=True)
    first, second = m.logits(u)
    assert first.shape == (m.K,) and second.shape == (7, m.K)
    (g_first,) = torch.autograd.grad(first.sum(), u, allow_unused=True, retain_graph=True)
    assert g_first is None or g_first.abs().sum() == 0
    (g,) = torch.autograd.grad(second.pow(2).sum(), u)
    assert g.abs().sum() > 0  # the conditional does use x_first


@pytest.mark.parametrize("order", ORDERS)
def test_rnade_marginal_ignores_x_second(order):
    m, d = trained("rnade", order, steps=20)
    x = torch.as_tensor(d.test[:50]).clone().requires_grad_(True)
    z = m.std(x)
    lp_first = mog_log_prob(z[:, m.first], *m.first_params())
    (g,) = torch.autograd.grad(lp_first.sum(), x)
    assert g[:, m.second].abs().max() == 0 and g[:, m.first].abs().max() > 0


# --- exact probabilities on the grid ------------------------------------------------------------------

@pytest.mark.parametrize("key", DISCRETE)
@pytest.mark.parametrize("order", ORDERS)
def test_cell_probabilities_sum_to_one_and_density_integrates(key, order):
    m, _ = trained(key, order)
    with torch.no_grad():
        table = m.log_table().double()
        assert abs(torch.logsumexp(table.flatten(), 0).exp().item() - 1) < 1e-5
        # the density at every cell's centre times the cell area: the cells' mass, less the floor's share
        e = m.edges()
        cx, cy = (e[0][:-1] + e[0][1:]) / 2, (e[1][:-1] + e[1][1:]) / 2
        pts = torch.stack(torch.meshgrid(cx, cy, indexing="xy"), -1).reshape(-1, 2)
        mass = (m.log_prob(pts).double().exp() * m.log_bin_area().double().exp()).sum().item()
        assert 1 - FLOOR <= mass <= 1 + 1e-5
        # and over a wide fine grid, outside the box included, it is a proper density
        xs, ys, grid = metrics.make_grid((-15, 15, -15, 15), 1200)
        assert abs(metrics.grid_mass(m.log_prob(torch.as_tensor(grid)), metrics.cell_area(xs, ys)) - 1) < 1e-2


@pytest.mark.parametrize("order", ORDERS)
def test_rnade_integrates_to_one_and_conditionals_normalise(order):
    m, _ = trained("rnade", order)
    xs, ys, grid = metrics.make_grid((-12, 12, -12, 12), 600)
    b = torch.linspace(-12, 12, 2000)
    with torch.no_grad():
        assert abs(metrics.grid_mass(m.log_prob(torch.as_tensor(grid)), metrics.cell_area(xs, ys)) - 1) < 5e-3
        cond = m.cond_params(torch.linspace(-2, 2, 9))
        dens = mog_log_prob(b[None, :], *(p[:, None, :] for p in cond)).double().exp()
    np.testing.assert_allclose(dens.sum(1).numpy() * float(b[1] - b[0]), 1, atol=1e-3)


@pytest.mark.parametrize("order", ORDERS)
def test_rnade_slice_from_the_grid_is_its_exact_conditional(order):
    """The view reads p(x_second | a) off the joint's grid line minus the probe's marginal: it must equal
    the conditional mixture the net gives at a (the slider then needs no model call)."""
    s = Session("rnade", {"order": order}, make_split("banana", 1500, seed=0), device="cpu")
    s.train_steps(40)
    snap = s.snapshot()
    m = s.model
    first = m.first
    from playground.views.autoregressive import conditional_at
    for i in (10, 50, 87):
        a = float(snap.probe.marg_x[i])
        x, dens = conditional_at(snap, a)
        sh, sc = m.std.shift, m.std.scale
        with torch.no_grad():
            cond = m.cond_params(torch.tensor([(a - sh[first]) / sc[first]]))
            zb = (torch.as_tensor(x) - sh[1 - first]) / sc[1 - first]
            want = (mog_log_prob(zb[None, :], *(p[:, None, :] for p in cond))[0] - torch.log(sc[1 - first])).exp()
        np.testing.assert_allclose(dens, want.numpy(), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("key", DISCRETE)
@pytest.mark.parametrize("order", ORDERS)
def test_probe_heatmap_is_the_density_at_cell_centres(key, order):
    """The drawn cells are oriented [x2 bin, x1 bin] whatever the order, and conditionals normalise."""
    m, _ = trained(key, order)
    with torch.no_grad():
        ex = m.probe(torch.zeros(4, 2), torch.zeros(1, 2))
        e = ex["edges"]
        iy, ix = 3, m.K - 5
        pt = torch.tensor([[(e[0][ix] + e[0][ix + 1]) / 2, (e[1][iy] + e[1][iy + 1]) / 2]])
        lp_bins, inside = binned_log_prob(m.log_table(), m.lo, m.hi, pt, m.first)
    assert inside.all() and abs(float(ex["log_density"][iy, ix]) - float(lp_bins)) < 1e-4
    w_second = np.diff(ex["cond_edges"])
    np.testing.assert_allclose((np.exp(ex["log_cond"].astype(np.float64)) * w_second).sum(1), 1, atol=1e-4)
    np.testing.assert_allclose((np.exp(ex["log_marg"].astype(np.float64)) * np.diff(ex["marg_edges"])).sum(), 1,
                               atol=1e-4)


def test_points_outside_the_box_get_the_floor_not_minus_infinity():
    m, _ = trained("made")
    far = torch.tensor([[50.0, -40.0], [float(m.hi[0]) + 0.01, 0.0]])
    with torch.no_grad():
        lp = m.log_prob(far)
        assert torch.isfinite(lp).all()
        torch.testing.assert_close(lp, m.floor_log_prob(far) + math.log(FLOOR))
        inside = torch.tensor([[0.1, 0.2]])
        lp_bins, ok = binned_log_prob(m.log_table(), m.lo, m.hi, inside, m.first)
        assert ok.all() and abs(float(m.log_prob(inside) - lp_bins)) < 2 * FLOOR


# --- nats per unit area: the discrete NLL matches the continuous one -------------------------------------

class TrueCells(DiscreteAutoregressive):
    """A discrete model whose cells hold the true density's exact mass (the real code path otherwise)."""

    key = ""

    def set_truth(self, log_density, sub: int = 8):
        K, e = self.K, self.edges().double()
        t = (torch.arange(sub, dtype=torch.float64) + 0.5) / sub
        pts = [e[c][:-1, None] + (e[c][1:] - e[c][:-1])[:, None] * t[None] for c in (0, 1)]  # (K, sub) each
        gx = pts[0].reshape(-1)[None, :].expand(K * sub, -1)
        gy = pts[1].reshape(-1)[:, None].expand(-1, K * sub)
        dens = np.exp(log_density(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).numpy()))
        cell = dens.reshape(K, sub, K, sub).mean((1, 3)) * float(torch.exp(self.log_bin_area()))  # [y bin, x bin]
        table = np.log(np.maximum(cell / cell.sum(), 1e-300))
        self.truth = torch.as_tensor(table.T if self.first == 0 else table)  # [first bin, second bin]

    def logits(self, u):
        i = torch.round((u + 1) * self.K / 2 - 0.5).long()
        return torch.logsumexp(self.truth, 1).float(), self.truth[i].float()


@pytest.mark.parametrize("dataset", ["gaussian", "banana"])
def test_discrete_nll_in_nats_per_area_matches_the_continuous_one(dataset):
    """Bin the true density into K x K cells: the cell model's held-out NLL in nats per unit area converges
    to the true continuous NLL as K grows (the gap is the discretisation error), in both orders. The gap is
    positive: averaging a density over a cell loses information (the cell model is the closest piecewise
    constant density, and its cross-entropy exceeds the true entropy)."""
    d = make_split(dataset, 20000, seed=0)
    true_nll = float(-np.mean(d.log_prob(d.test)))
    gaps = {}
    for K in (8, 16, 64):
        for order in ORDERS:
            m = TrueCells(TrueCells.Config(K=K, order=order))
            m.init_from_data(torch.as_tensor(d.train))
            m.set_truth(d.log_prob)
            with torch.no_grad():
                nll = float(-m.log_prob(torch.as_tensor(d.test)).double().mean())
                cells = m.metrics(torch.as_tensor(d.test))
            gaps.setdefault(K, []).append(nll - true_nll)
            if cells["test_outside_box"] == 0:  # the conversion the UI states: per area = per cell + log(area)
                assert abs(nll - (cells["test_discrete_nll"] + cells["log_bin_area"])) < 1e-3
        assert abs(gaps[K][0] - gaps[K][1]) < 1e-4  # the same joint in either order
    # the gap shrinks like the squared bin width (4x finer bins: about 16x smaller) and is small at K = 64
    assert 0 < gaps[64][0] < gaps[16][0] / 6 < gaps[8][0] / 6, gaps
    assert gaps[64][0] < 0.03, gaps


def test_trained_discrete_and_continuous_models_agree_on_a_gaussian():
    """MADE over 48 x 48 cells and RNADE, trained alike, land within 0.1 nats of the true held-out NLL."""
    d = make_split("gaussian", 4000, seed=0)
    out = {}
    for key, cfg in (("made", {"K": 48}), ("rnade", {"K": 3})):
        s = Session(key, cfg, d, TrainSettings(lr=1e-2, batch=512), device="cpu")
        s.train_steps(1200)
        out[key] = s.evaluate()["test_nll"]
    assert abs(out["made"] - s.data_nll) < 0.1 and abs(out["rnade"] - s.data_nll) < 0.1, (out, s.data_nll)


# --- sequential sampling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ORDERS)
def test_discrete_samples_follow_the_table(order):
    m, _ = trained("nade", order, K=16)
    torch.manual_seed(1)
    with torch.no_grad():
        x = m.sample(200_000)
        probs = m.log_table().exp()
    idx = ((x - m.lo) / m.width()).floor().long()
    inside = ((idx >= 0) & (idx < m.K)).all(1)
    assert inside.float().mean() > 1 - 5 * FLOOR
    idx = idx[inside]
    counts = torch.zeros(m.K, m.K)
    counts.index_put_((idx[:, m.first], idx[:, m.second]), torch.ones(len(idx)), accumulate=True)
    assert (counts / len(idx) - probs).abs().max() < 0.004


def test_rnade_samples_match_its_density():
    m, _ = trained("rnade", "x2_first", steps=200)
    torch.manual_seed(1)
    with torch.no_grad():
        x = m.sample(100_000).double()
        xs, ys, grid = metrics.make_grid((-10, 10, -10, 10), 500)
        p = m.log_prob(torch.as_tensor(grid)).double().exp() * metrics.cell_area(xs, ys)
    mean_grid = (p[:, None] * torch.as_tensor(grid).double()).sum(0)
    torch.testing.assert_close(x.mean(0), mean_grid, atol=0.03, rtol=0)


# --- views and the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", DISCRETE + ["rnade"])
def test_frames_render_and_the_slice_reads_a_conditional(key):
    order = "x2_first" if key in ("nade", "rnade") else "x1_first"
    s = Session(key, {"order": order}, make_split("banana", 1500, seed=0), device="cpu")
    s.train_steps(30)
    snap = s.snapshot()
    conds = []
    for pos in (0.0, 0.3, 0.7, 1.0):
        figs = views.render(snap, slice_pos=pos, log_scale=pos > 0.5)
        assert set(figs) == {"main", "factors", "samples", "network", "curves", "extra"}
        for fig in figs.values():
            json.loads(plots.to_json(fig))
        cond = [t for t in figs["factors"]["data"] if t["name"].startswith("model p(") and "|" in t["name"]]
        slice_tr = [t for t in figs["main"]["data"] if t["name"].startswith("slice")][0]
        lo, hi = (snap.box[0], snap.box[1]) if order == "x1_first" else (snap.box[2], snap.box[3])
        a = lo + pos * (hi - lo)
        assert np.allclose(slice_tr["x" if order == "x1_first" else "y"], a, atol=1e-4)
        if cond:
            x, y = np.asarray(cond[0]["x"], np.float64), np.asarray(cond[0]["y"], np.float64)
            assert 0.5 < np.sum(y[:-1] * np.diff(x)) < 1.0 + 1e-3  # a density over the visible range
            conds.append(y)
    assert len(conds) >= 2 and not np.allclose(conds[0][:20], conds[-1][:20])  # another slice, another curve
    demo = {str(t.get("name", ""))[:1]: t for t in views.render(snap)["samples"]["data"]}
    assert len(demo["③"]["x"]) == 4  # four samples drawn step by step: the first draw's line, then the second
    first = 0 if order == "x1_first" else 1
    drawn = np.asarray(demo["①"]["x" if first == 0 else "y"]).reshape(4, 3)[:, 0]
    np.testing.assert_allclose(drawn, snap.samples[:4, first], rtol=1e-6)
    np.testing.assert_allclose(np.stack([demo["③"]["x"], demo["③"]["y"]], 1), snap.samples[:4], rtol=1e-6)


def test_cli_reports_nats_per_area_and_per_cell():
    r = subprocess.run([sys.executable, "-m", "playground", "train", "made", "--dataset", "8gaussians", "--steps", "40",
                        "--set", "K=24", "--set", "order=x2_first", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**__import__("os").environ, "PLAYGROUND_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert m["test_outside_box"] == 0
    assert abs(m["test_nll"] - (m["test_discrete_nll"] + m["log_bin_area"])) < 1e-3
    assert DATASETS["8gaussians"].has_density() and m["test_nll"] > m["data_nll"]
