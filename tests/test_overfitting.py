"""Overfitting (notes 3.2.5): a run on a few training points keeps every held-out point, its held-out NLL turns
up while the training NLL keeps falling, and early stopping goes back to the held-out minimum — in the session
and through a worker, as the tabs' "↩ Early stop" button does."""

import contextlib

import numpy as np
import pytest
import torch

from models import TrainSettings
from playground import plots
from playground.datasets import DataError
from playground.runspec import RunSpec
from playground.session import Session
from playground.workers.local import WorkerPool
from playground.workers.remote import RemoteSession


def _spec(**kw):
    return RunSpec("made", {"K": 64}, TrainSettings.make(lr=3e-3, batch=64, seed=0), dataset="moons", **kw)


def test_training_points_kept_cut_the_training_set_only():
    full, few = _spec().build_data(), _spec(train_points=50).build_data()
    assert len(few.train) == 50 and np.array_equal(few.train, full.train[:50])
    assert np.array_equal(few.test, full.test)  # every held-out point stays
    assert _spec(train_points=50).data_signature() != _spec().data_signature()
    with pytest.raises(DataError):
        _spec(train_points=-1).check()
    q = _spec(train_points=50).to_query("autoregressive")
    assert "train=50" in q
    from urllib.parse import parse_qsl
    back, named, notes = RunSpec.from_query(dict(parse_qsl(q[1:])), _spec(), ["made"])
    assert back.train_points == 50 and "train" in named and not notes


def _overfit(sess, steps=600):
    for _ in sess.run(max_steps=steps, frame_interval=0.0):
        pass
    return sess.history.evals["test_nll"]


def test_early_stopping_returns_to_the_held_out_minimum():
    spec = _spec(train_points=50)
    sess = Session("made", spec.config, spec.build_data(), spec.settings)
    steps, nll = (list(v) for v in _overfit(sess))
    assert nll[-1] > min(nll) + 0.5  # it overfits: the held-out NLL has turned up
    assert sess.history.evals["train_nll"][1][-1] < sess.history.evals["train_nll"][1][0]
    i = int(np.argmin(nll))
    assert sess.best["step"] == steps[i] and sess.best["test_nll"] == pytest.approx(nll[i])
    kept = {k: v.clone() for k, v in sess.best["slot"]["state"].items()}
    snap = sess.return_to_best()
    assert sess.step_count == steps[i] and sess.status == "stopped" and "early stopping" in sess.message
    assert all(torch.equal(v, sess.model.state_dict()[k]) for k, v in kept.items())
    assert snap.latest["test_nll"] == pytest.approx(nll[i], abs=1e-6)  # the same model, the same held-out points
    assert max(snap.curves["test_nll"][0]) <= steps[i]  # the history goes back with it


def test_the_likelihood_panel_marks_the_held_out_minimum_once_it_has_turned_up():
    def snap(vals):
        vals = np.asarray(vals, np.float32)
        return type("S", (), {"curves": {"test_nll": (np.arange(len(vals)) * 10, vals)}, "data_nll": None})()

    assert plots.best_heldout(snap([3.0, 2.0, 1.5])) is None  # still falling: nothing to stop at
    assert plots.best_heldout(snap([3.0, 1.5, 2.0, 4.0])) == (10, 1.5)
    names = [tr["name"] for tr in plots.likelihood_figure(snap([3.0, 1.5, 2.0, 4.0]))["data"]]
    assert "held-out best (step 10)" in names


def test_without_an_evaluation_there_is_nothing_to_return_to():
    spec = _spec()
    sess = Session("made", spec.config, spec.build_data(), spec.settings)
    with pytest.raises(ValueError, match="no held-out evaluation"):
        sess.return_to_best()


@contextlib.contextmanager
def _overfit_in_a_worker():
    """MADE on 50 points, 400 steps in a worker process: the RemoteSession."""
    spec = _spec(train_points=50)
    pool = WorkerPool(spare=1)
    sess = RemoteSession(pool, "made", spec.config, spec.build_data(), spec.settings)
    try:
        for _ in sess.run(max_steps=400, frame_interval=0.0):
            pass
        yield sess
    finally:
        sess.close()
        pool.close()


def test_early_stopping_through_a_worker():
    with _overfit_in_a_worker() as sess:
        snap = sess.return_to_best()
        assert "early stopping" in sess.message and sess.step_count == snap.step <= 400


def test_a_parked_run_still_returns_to_its_best_state():
    """A run left idle gives its worker back (park) and wakes on the next click: ↩ Early stop then still goes
    back to the held-out minimum seen before it was parked, the same state as without parking."""
    with _overfit_in_a_worker() as sess:
        assert sess.park() and sess.parked
        snap = sess.return_to_best()  # wakes the run in a worker first
        assert "early stopping" in sess.message and sess.step_count == snap.step <= 400
        nll = snap.curves["test_nll"][1]
        assert snap.latest["test_nll"] == pytest.approx(float(np.min(nll)), abs=1e-5)
