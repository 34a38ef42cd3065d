"""The primer's classifiers (playground/classify.py, notes 2.2): closed forms checked by hand, Bayes' rule
on the true model, Newton's optimum, the missing-coordinate posterior against a numerical integral,
seeds, and the tab's handlers (one-line messages, never a traceback)."""

import math

import numpy as np
import pytest
import torch

from playground.classify import (
    LABELLED,
    MODELS,
    TRUE_GAUSSIANS,
    GaussianClassifier,
    LogisticRegression,
    MLPClassifier,
    fit_all,
    grid,
    make_labelled,
)


def gauss_logpdf(x, mean, cov):
    d = x - mean
    inv = np.linalg.inv(cov)
    return -0.5 * (np.einsum("ni,ij,nj->n", d, inv, d) + math.log(np.linalg.det(cov)) + 2 * math.log(2 * math.pi))


def test_naive_bayes_is_its_closed_form():
    data = make_labelled("moons", 200, seed=3)
    x, y = data.x_train, data.y_train
    nb = GaussianClassifier(full=False).fit(x, y)
    for k in (0, 1):
        xk = x[y == k]
        assert nb.priors[k] == pytest.approx(len(xk) / len(x))
        np.testing.assert_allclose(nb.means[k], xk.mean(0), rtol=1e-12)
        np.testing.assert_allclose(nb.variances[k], ((xk - xk.mean(0)) ** 2).mean(0), atol=2e-6)  # MLE (ddof 0)
        assert nb.covs[k][0, 1] == 0.0 and nb.covs[k][1, 0] == 0.0  # independent given the label
    # p(y=1|x) by hand: product of 1D Gaussians times the prior, normalised
    pts = data.x_test[:50]
    joint = []
    for k in (0, 1):
        m, v = x[y == k].mean(0), x[y == k].var(0) + 1e-6
        lik = np.prod(np.exp(-0.5 * (pts - m) ** 2 / v) / np.sqrt(2 * np.pi * v), 1)
        joint.append(np.mean(y == k) * lik)
    np.testing.assert_allclose(nb.predict_proba(pts), joint[1] / (joint[0] + joint[1]), rtol=1e-9, atol=1e-12)


def test_qda_posterior_is_bayes_rule_on_the_true_model():
    data = make_labelled("gaussians", 20000, seed=0)
    qda = GaussianClassifier(full=True).fit(data.x_train, data.y_train)
    np.testing.assert_allclose(qda.means, TRUE_GAUSSIANS["means"], atol=0.04)
    np.testing.assert_allclose(qda.covs, TRUE_GAUSSIANS["covs"], atol=0.05)
    pts = grid((-3, 3, -3, 3), 25)[2]
    true = [math.log(0.5) + gauss_logpdf(pts, TRUE_GAUSSIANS["means"][k], TRUE_GAUSSIANS["covs"][k]) for k in (0, 1)]
    bayes = 1 / (1 + np.exp(true[0] - true[1]))
    err = np.abs(qda.predict_proba(pts) - bayes)
    px = np.exp(np.logaddexp(*true))
    assert err[px > 0.01].max() < 0.03  # where the data are; far in the tails the odds extrapolate
    assert (err * px).sum() / px.sum() < 0.005
    # and QDA's log p(x) is the mixture over classes of its Gaussians
    lj = qda.log_joint(pts)
    np.testing.assert_allclose(qda.log_prob(pts), np.log(np.exp(lj).sum(1)), rtol=1e-10)


def test_logistic_regression_descends_to_a_zero_gradient():
    for name in LABELLED:
        data = make_labelled(name, 300, seed=1)
        lr = LogisticRegression().fit(data.x_train, data.y_train)
        hist = np.array(lr.loss_history)
        assert len(hist) >= 3 and hist[0] == pytest.approx(math.log(2))
        assert (np.diff(hist) <= 1e-15).all() and hist[-1] < hist[0]
        assert np.abs(lr.gradient(data.x_train, data.y_train)).max() < 1e-8  # autograd at Newton's optimum


def test_mlp_loss_decreases_and_separates_the_moons():
    data = make_labelled("moons", 300, seed=0)
    mlp = MLPClassifier(seed=0).fit(data.x_train, data.y_train)
    assert mlp.loss_history[-1] < 0.2 * mlp.loss_history[0]
    assert fit_all(data, ["mlp"])["mlp"].accuracy > 0.95


def test_generative_posterior_sums_to_one_and_scores():
    data = make_labelled("xor", 300, seed=2)
    pts = grid(data.box, 30)[2]
    for full in (False, True):
        m = GaussianClassifier(full=full).fit(data.x_train, data.y_train)
        lj = m.log_joint(pts)
        post = np.exp(lj - m.log_prob(pts)[:, None])  # p(y | x) for both classes
        np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-12)
        np.testing.assert_allclose(post[:, 1], m.predict_proba(pts), atol=1e-12)
        # p(x) integrates to ~1 over a wide box
        xs, ys, wide = grid((-9, 9, -9, 9), 300)
        mass = np.exp(m.log_prob(wide)).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
        assert mass == pytest.approx(1.0, abs=1e-3)
        x, y = m.sample(4000, np.random.default_rng(0))
        assert x.shape == (4000, 2) and abs(y.mean() - m.priors[1]) < 0.03
        np.testing.assert_allclose(x[y == 1].mean(0), m.means[1], atol=0.1)
    res = fit_all(data, list(MODELS))
    assert res["qda"].accuracy > 0.9 and res["nb"].accuracy < 0.75  # XOR: correlations carry the label
    assert res["nb"].nll is not None and res["logreg"].nll is None


@pytest.mark.parametrize("full", [False, True])
def test_missing_coordinate_posterior_is_the_integral_of_the_joint(full):
    data = make_labelled("gaussians", 300, seed=4)
    m = GaussianClassifier(full=full).fit(data.x_train, data.y_train)
    x2 = np.linspace(-15, 15, 6001)
    for x1 in (-2.0, -0.3, 0.7, 2.5):
        pts = np.stack([np.full_like(x2, x1), x2], 1)
        joint = np.exp(m.log_joint(pts))  # p(x1, x2, y) on the x2 line
        integral = np.trapezoid(joint, x2, axis=0)  # p(x1, y)
        assert m.proba_missing(x1) == pytest.approx(integral[1] / integral.sum(), abs=1e-9)
    # the discriminative models have no p(x) to integrate: they do not offer it
    assert not hasattr(LogisticRegression(), "proba_missing") and not hasattr(MLPClassifier(), "proba_missing")


def test_seeds_repeat_and_the_global_rng_is_untouched():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = fit_all(make_labelled("moons", 150, seed=5), list(MODELS), seed=5)
    b = fit_all(make_labelled("moons", 150, seed=5), list(MODELS), seed=5)
    c = fit_all(make_labelled("moons", 150, seed=6), list(MODELS), seed=6)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    pts = grid((-3, 3, -3, 3), 20)[2]
    for k in MODELS:
        np.testing.assert_array_equal(a[k].model.predict_proba(pts), b[k].model.predict_proba(pts))
        assert a[k].log_loss == b[k].log_loss
        assert not np.array_equal(a[k].model.predict_proba(pts), c[k].model.predict_proba(pts))


def test_bad_input_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_labelled("nope", 100)
    with pytest.raises(ValueError, match="points per class"):
        make_labelled("moons", 3)
    with pytest.raises(ValueError, match="two training points"):
        GaussianClassifier(full=True).fit(np.zeros((5, 2)), np.array([0, 0, 0, 0, 1]))


def test_tab_handlers_show_figures_or_one_line():
    from playground.tabs import primer

    st = primer.PrimerState()
    primer.move_x1(st, 0.5)
    assert "Fit" in st.channel._source.frame.status
    upd = primer.fit(st, "xor", 60, 0, ["nb", "logreg"], 0.5)
    frame = st.channel._source.frame
    assert set(frame.figs) == {"nb", "qda", "logreg", "mlp", "px-nb", "px-qda", "missing", "slice"}
    assert "Fitted 2 models" in frame.status and "held-out NLL" in frame.texts["primer-table"]
    assert "needs both" in frame.texts["primer-table"] and "cannot answer without x₂" in frame.texts["primer-reading"]
    assert upd["minimum"] < 0.5 < upd["maximum"]
    primer.move_x1(st, 1.0)
    assert "x₁ = 1.00" in st.channel._source.frame.status
    for args in (("nope", 60, 0, ["nb"], 0), ("xor", None, 0, ["nb"], 0), ("xor", 60, -3, ["nb"], 0)):
        primer.fit(st, *args)
        status = st.channel._source.frame.status
        assert status.startswith("<b>Cannot fit:</b>") and "\n" not in status and "Traceback" not in status
