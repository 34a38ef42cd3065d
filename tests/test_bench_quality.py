"""`python -m playground bench quality`: the gap is KL(p* ‖ q) estimated right (0 for the true density,
the closed-form KL for a known other), the references are sound, and the command's output has its shape."""

import json
import math

import numpy as np
import pytest
import torch

from models import REGISTRY
from models.base import BaseConfig, Model2D
from playground import bench_quality as bq
from playground.cli import main
from playground.datasets import DATASETS, make_split
from playground.densities import GAUSS_COV, dataset_log_prob


def test_gap_is_zero_for_the_true_density_and_the_kl_for_another():
    """On the correlated Gaussian N(0, Σ), q = N(0, cΣ) has KL(p ‖ q) = 1/c − 1 + log c in 2D: the gap
    estimate lands within 4 standard errors of it, with the right sign; the true density's gap is 0."""
    noise = DATASETS["gaussian"].noise
    x = bq.eval_points("gaussian", noise, 20_000, 0)
    log_p = bq.true_log_prob("gaussian", noise, x)
    assert bq.gap_terms(log_p, log_p)[0] == 0.0
    c = 1.5
    cov = torch.tensor(GAUSS_COV * noise ** 2 * c)
    log_q = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=cov.dtype), cov).log_prob(
        torch.as_tensor(x, dtype=cov.dtype)).numpy()
    gap, se = bq.gap_terms(log_q, log_p)
    kl = 1 / c - 1 + math.log(c)
    assert abs(gap - kl) < 4 * se and se < 0.01


def test_eval_points_are_fresh_and_seeded():
    a = bq.eval_points("banana", 0.35, 500, 0)
    assert np.array_equal(a, bq.eval_points("banana", 0.35, 500, 0))
    assert not np.array_equal(a, bq.eval_points("banana", 0.35, 500, 1))
    train = make_split("banana", 2000, 0.35, seed=0)
    assert not np.isin(a[:, 0], np.concatenate([train.train, train.test])[:, 0]).any()


def test_em_reference_with_the_true_k_nearly_recovers_the_mixture():
    """Full-covariance EM with 5 components on 1,600 points of the anisotropic mixture: the held-out gap
    is small (the estimation error of ~30 parameters), and far below a single Gaussian's."""
    noise = DATASETS["anisomix"].noise
    data = make_split("anisomix", 2000, noise, seed=0)
    x = bq.eval_points("anisomix", noise, 5000, 0)
    log_p = bq.true_log_prob("anisomix", noise, x)
    five = bq.gap_terms(bq.em_reference(data.train, 5, np.random.default_rng(0))(x), log_p)[0]
    one = bq.gap_terms(bq.em_reference(data.train, 1, np.random.default_rng(0))(x), log_p)[0]
    assert 0 <= five < 0.05 and one > 0.5


class _TrueDensity(Model2D):
    """A 'model' that is the dataset's own density (and sampler): its gap must come out 0."""

    key, family, title, density = "true_density", "latent", "the true density", "exact"
    Config = BaseConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.name = None

    def use_target(self, log_prob, name):
        self.fn, self.name = log_prob, name

    def loss(self, x):
        return {"loss": self.dummy ** 2}

    def log_prob(self, x):
        return self.fn(x.double()).float()

    def sample(self, n):
        ds = DATASETS[self.name]
        return torch.as_tensor(ds.sample(n, np.random.default_rng(0)))


def test_a_model_that_is_the_true_density_gets_zero_gap_through_the_session(monkeypatch):
    monkeypatch.setitem(REGISTRY, "true_density", _TrueDensity)
    for name in ("anisomix", "banana"):
        row = bq._row("true_density", "latent", name, 2, [0], 2000, 2000, "cpu")
        assert row["ours"] == pytest.approx(0.0, abs=1e-5)
        assert row["reference"] == bq.NO_REFERENCE and row["verdict"] == "—"
    assert dataset_log_prob("anisomix", 0.15) is not None


def test_command_output_shape(capsys):
    """A tiny run of every kind of row: flows against zuko, the mixture against EM, a GAN's modes."""
    rc = main(["bench", "quality", "--families", "flows", "--models", "mog,gan_ns", "--datasets",
               "gaussian,25gaussians", "--steps", "3", "--eval-n", "400", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 3 and res["seeds"] == [0] and res["eval_n"] == 400
    rows = {(r["model"], r["dataset"]): r for r in res["rows"]}
    assert set(rows) == {(k, d) for k in ("realnvp", "nice", "maf", "mog") for d in ("gaussian", "25gaussians")} \
        | {("gan_ns", "25gaussians")}
    for k in ("realnvp", "nice", "maf"):
        r = rows[(k, "gaussian")]
        assert r["metric"] == "gap_nats" and r["reference"].startswith("zuko")
        assert isinstance(r["ours"], float) and isinstance(r["reference_value"], float)
        assert r["verdict"] in ("ok", "worse") and isinstance(r["reference_averaged"], float)
    assert "true K=25" in rows[("mog", "25gaussians")]["reference"]
    gan = rows[("gan_ns", "25gaussians")]
    assert gan["metric"] == "modes_covered" and 0 <= gan["ours"] <= 25 and gan["modes_total"] == 25


def test_command_text_table_and_bad_input(capsys):
    assert main(["bench", "quality", "--models", "nice", "--datasets", "banana", "--steps", "2",
                 "--eval-n", "200"]) == 0
    out = capsys.readouterr().out
    assert "gap to the true entropy" in out and "nice" in out and "banana" in out and "zuko" in out
    for argv, msg in [(["--datasets", "moons"], "no known density for: moons"),
                      (["--families", "nope"], "unknown family 'nope'"),
                      (["--models", "nope"], "unknown model 'nope'"),
                      (["--steps", "0"], "--steps")]:
        assert main(["bench", "quality", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and msg in err and "\n" not in err


def _plane_integral(log_q, box: float, res: int = 600) -> float:
    """∫ q over the square [-box, box]² by the midpoint rule."""
    t = (np.arange(res) + 0.5) / res * 2 * box - box
    gx, gy = np.meshgrid(t, t)
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    return float(np.exp(log_q(pts)).sum() * (2 * box / res) ** 2)


def test_kde_reference_is_a_normalised_density_that_learns_a_gaussian():
    """The KDE integrates to 1 over the plane, and on 1,600 points of the correlated Gaussian it comes
    within a few hundredths of a nat of the truth (a wrong normaliser or bandwidth would not)."""
    noise = DATASETS["gaussian"].noise
    data = make_split("gaussian", 2000, noise, seed=0)
    x = bq.eval_points("gaussian", noise, 5000, 0)
    res = bq.kde_reference(data.train, x)
    gap = bq.gap_terms(res["log_q"], bq.true_log_prob("gaussian", noise, x))[0]
    assert 0 < gap < 0.05 and res["h"] > 0
    mass = _plane_integral(lambda p: bq.kde_reference(data.train, p)["log_q"], 6 * noise * 2, 300)
    assert mass == pytest.approx(1.0, abs=0.01)


def test_tabular_reference_and_the_discretisation_floor():
    """MADE's cells: the smoothed-count table is a normalised density (cells plus the broad floor
    Gaussian), its gap is above the floor (the cells of p* itself), and the floor is positive (cells are
    flat where p* is not) and small next to a single Gaussian's gap on banana."""
    noise = DATASETS["banana"].noise
    data = make_split("banana", 2000, noise, seed=0)
    x = bq.eval_points("banana", noise, 5000, 0)
    log_p = bq.true_log_prob("banana", noise, x)
    res = bq.tabular_reference("made", data, x, noise, "banana", 0)
    table, se = bq.gap_terms(res["log_q"], log_p)
    floor = bq.gap_terms(res["floor_log_q"], log_p)[0]
    assert 0 < floor < table - 2 * se and floor < 0.2
    box = float(np.abs(data.train).max()) * 1.3 + 1
    mass = _plane_integral(lambda p: bq.tabular_reference("made", data, p, noise, "banana", 0)["log_q"], 4 * box)
    assert mass == pytest.approx(1.0, abs=0.01)


def test_exact_ml_reference_trains_an_energy_by_its_likelihood():
    """The EBM reference's loss is the exact NLL (log Z as a differentiable grid sum): 300 steps on the
    correlated Gaussian bring the energy net within 0.05 nats of the truth; with the sign of log Z
    flipped (a wrong gradient) it would not."""
    noise = DATASETS["gaussian"].noise
    data = make_split("gaussian", 2000, noise, seed=0)
    x = bq.eval_points("gaussian", noise, 5000, 0)
    res = bq.run_ebm_ml("ebm_nce", data, x, 300, 0)
    assert res["steps"] == 300 and not res["diverged"]
    assert bq.gap_terms(res["log_q"], bq.true_log_prob("gaussian", noise, x))[0] < 0.05


def test_verdict_pairs_the_seeds():
    """Paired per-seed differences: a consistent small excess is worse, a noisy one within noise, and one
    seed has no noise estimate (any excess beyond the tolerance is worse)."""
    assert bq.verdict([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])[0] == "ok"
    assert bq.verdict([1.1, 2.1, 3.1], [1.0, 2.0, 3.0])[0] == "worse"  # +0.1 every time
    v, mean, se = bq.verdict([1.5, 1.6, 3.3], [1.6, 2.1, 2.5])  # -0.1, -0.5, +0.8: +0.067 on average
    assert v == "within noise" and mean == pytest.approx(0.2 / 3) and se == pytest.approx(0.3844, abs=1e-4)
    assert bq.verdict([1.2], [1.0])[0] == "worse" and bq.verdict([1.005], [1.0])[0] == "ok"
