"""The training session: stop/resume, NaN rollback, frames by time, plain-numpy snapshots."""

import dataclasses
import math
import time

import numpy as np
import pytest
import torch

from models import TrainSettings
from playground.datasets import make_split
from playground.session import History, Session, Snapshot, resolve_device
from playground.snapshot import MixtureProbe


@pytest.fixture
def sess():
    return Session("mog", {"K": 4, "method": "gradient"}, make_split("moons", 800, seed=0),
                   TrainSettings(lr=0.01, batch=128), device="cpu")


def test_stop_and_resume_keep_the_step_count(sess):
    list(sess.run(max_steps=40))
    assert sess.step_count == 40
    frames = sess.run(frame_interval=0.0)
    for i, _snap in enumerate(frames):
        if i == 3:
            sess.request_stop()
    assert sess.status == "stopped"
    stopped_at = sess.step_count
    assert stopped_at > 40
    list(sess.run(max_steps=25))
    assert sess.step_count == stopped_at + 25
    assert sess.history.n == sess.step_count


def test_frames_come_by_elapsed_time(sess):
    slow_step = sess.model.step

    def step(x, opts):
        time.sleep(0.02)
        return slow_step(x, opts)

    sess.model.step = step
    t0 = time.perf_counter()
    snaps = list(sess.run(max_steps=30, frame_interval=0.1))
    elapsed = time.perf_counter() - t0
    # ~0.6 s of training at one frame per 0.1 s: several frames, far fewer than steps
    assert 3 <= len(snaps) <= 30
    assert len(snaps) <= elapsed / 0.1 + 2


def test_non_finite_loss_stops_and_restores_the_last_good_parameters(sess):
    list(sess.run(max_steps=20))  # a frame at the end checkpoints nothing new; take one now
    sess._checkpoint()
    good = {k: v.clone() for k, v in sess.model.state_dict().items()}
    good_step = sess.step_count
    real_step = sess.model.step
    calls = {"n": 0}

    def exploding(x, opts):
        calls["n"] += 1
        out = real_step(x, opts)
        if calls["n"] == 5:
            with torch.no_grad():
                sess.model.means.fill_(float("nan"))
            out["loss"] = float("nan")
        return out

    sess.model.step = exploding
    snaps = list(sess.run(max_steps=50))
    assert sess.status == "diverged" and snaps[-1].status == "diverged"
    assert "nan" in sess.message.lower() and "restored" in sess.message.lower()
    assert sess.step_count == good_step
    for k, v in sess.model.state_dict().items():
        assert torch.equal(v, good[k]), k
    assert all(torch.isfinite(p).all() for p in sess.model.parameters())


def _adam_state(sess):
    return {k: {i: {n: t.clone() for n, t in st.items()} for i, st in o.state_dict()["state"].items()}
            for k, o in sess.optimizers.items()}


def test_checkpoint_is_a_copy_that_later_steps_and_rollbacks_do_not_touch(sess):
    """Checkpoints refresh kept buffers in place: they must never alias the live parameters or the
    optimiser's moments, before or after a rollback (a later rollback must return the same state)."""
    list(sess.run(max_steps=15))
    for _ in range(2):  # twice: the second refresh writes into the buffers of the first
        sess.train_steps(5)
        sess._checkpoint()
    params = {k: v.clone() for k, v in sess.model.state_dict().items()}
    moments = _adam_state(sess)
    sess.train_steps(10)  # moves parameters and Adam's moments; the checkpoint must not follow
    for round_ in range(2):
        sess._restore("test")
        for k, v in sess.model.state_dict().items():
            assert torch.equal(v, params[k]), (round_, k)
        now = _adam_state(sess)
        for k in moments:
            for i in moments[k]:
                for n, t in moments[k][i].items():
                    assert torch.equal(now[k][i][n], t), (round_, k, i, n)
        sess.train_steps(10)  # training after the rollback must not write into the checkpoint either


def test_failed_closed_form_update_is_caught():
    sess = Session("mog", {"K": 3}, make_split("moons", 500, seed=0), TrainSettings(batch=4096), device="cpu")

    def broken(x, opts):
        raise torch.linalg.LinAlgError("cholesky: the input is not positive-definite")

    sess.model.step = broken
    list(sess.run(max_steps=5))
    assert sess.status == "diverged" and "positive-definite" in sess.message


def test_live_learning_rate_change_reaches_the_optimiser(sess):
    sess.set_live("lr", 0.123)
    assert all(g["lr"] == 0.123 for o in sess.optimizers.values() for g in o.param_groups)
    sess.set_live("batch", 64)
    assert sess._batch().shape[0] == 64
    with pytest.raises(ValueError):
        sess.set_live("lr", 50.0)  # outside the safe range


def test_snapshot_is_plain_numpy(sess):
    list(sess.run(max_steps=10))
    snap = sess.snapshot()
    assert isinstance(snap, Snapshot)

    def check(v, where):
        assert not isinstance(v, torch.Tensor), where
        if dataclasses.is_dataclass(v):  # the probe record
            for f in dataclasses.fields(v):
                check(getattr(v, f.name), f"{where}.{f.name}")
        if isinstance(v, dict):
            for k, x in v.items():
                check(x, f"{where}.{k}")
        if isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                check(x, f"{where}[{i}]")

    for f in dataclasses.fields(snap):
        check(getattr(snap, f.name), f.name)
    assert snap.log_density.shape == (sess.grid_res, sess.grid_res)
    assert 0.8 < snap.grid_mass < 1.01  # a normalised density: at most 1 on the box
    assert snap.samples.shape == (sess.n_samples, 2)
    assert math.isfinite(snap.latest["test_nll"])
    assert isinstance(snap.probe, MixtureProbe) and snap.probe.means.shape == (4, 2)


def test_curves_are_prefix_stable():
    """Frames send only the changed tail of each curve: as training goes on, the decimated curve's
    full bins (means of b = 2^j steps, at their centre steps) stay bitwise the same until b doubles;
    only the last, partial bin changes."""
    rng = np.random.default_rng(0)
    values = (rng.normal(size=(5000, 2)) * [1.0, 1e3]).astype(np.float32)
    h = History()
    got = {}
    for i, (a, big) in enumerate(values, 1):
        h.log_step({"loss": float(a), "big": float(big)} if i > 7 else {"loss": float(a)})  # "big" starts late
        if i in (3000, 3100, 3700, 4800, 5000):
            got[i] = h.curves(max_points=600)
    b, k = 8, 3000 // 8  # the bin size at n = 3000 (the smallest power of two that fits) and its full bins
    for n in (3100, 3700, 4800):  # b stays 8 up to n = 4800 (the old n // max_points went from 5 to 6 at 3600)
        for key in ("loss", "big"):
            s0, v0 = got[3000][key]
            s1, v1 = got[n][key]
            assert s0[:k].tobytes() == s1[:k].tobytes() and v0[:k].tobytes() == v1[:k].tobytes(), (n, key)
    for n in (3000, 3100, 3700, 4800):
        assert len(got[n]["loss"][0]) == -(-n // b) <= 600  # the partial last bin included
    s, v = got[3100]["loss"]
    np.testing.assert_array_equal(s[:3], [4.5, 12.5, 20.5])  # bin centres
    np.testing.assert_allclose(v[1], values[8:16, 0].mean(), rtol=1e-6)
    assert s[-1] == (3096 + 1 + 3100) / 2  # the partial last bin: steps 3097-3100
    assert v[-1] == pytest.approx(values[3096:3100, 0].mean(), rel=1e-5)
    assert got[3000]["big"][1][0] == pytest.approx(values[7, 1])  # a late term's first bin: what it has
    s, v = got[5000]["loss"]  # b doubled to 16
    assert len(s) == 313 and s[0] == 8.5


def test_eval_curves_are_prefix_stable():
    """Per-frame evaluations: every b-th point (b a power of two) and always the last."""
    h = History()
    for i in range(1, 2001):
        h.log_eval(i, {"m": float(i)})
        if i == 500:
            assert h.curves(max_points=600)["m"][0].tolist() == list(range(1, 501))  # not decimated yet
        if i == 1500:
            e0 = h.curves(max_points=600)["m"][0]
    e1 = h.curves(max_points=600)["m"][0]
    assert len(e0) <= 600 and len(e1) <= 600 and e0[-1] == 1500 and e1[-1] == 2000
    assert e0[:-1].tobytes() == e1[: len(e0) - 1].tobytes()
    np.testing.assert_array_equal(e1[:3], [1, 5, 9])  # every 4th


def test_em_step_button_counts_one_step_per_e_and_m():
    sess = Session("mog", {"K": 3}, make_split("moons", 500, seed=0), TrainSettings(batch=4096), device="cpu")
    s1 = sess.single_step()
    assert sess.step_count == 0 and s1.message.startswith("E-step")
    s2 = sess.single_step()
    assert sess.step_count == 1 and s2.message.startswith("M-step")


def test_same_seed_same_run():
    def run():
        s = Session("mog", {"K": 4, "method": "gradient"}, make_split("moons", 600, seed=2),
                    TrainSettings(lr=0.01, batch=64, seed=2), device="cpu")
        s.train_steps(30)
        return s.model.means.detach().clone()

    torch.testing.assert_close(run(), run())


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")
