"""The training session: stop/resume, NaN rollback, frames by time, plain-numpy snapshots."""

import dataclasses
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models import TrainSettings
from playground.datasets import make_split
from playground.session import History, Session, Snapshot, resolve_device
from playground.snapshot import MixtureProbe
from playground.tabkit import status_html


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


def _recording(sess, bad_at=None, bad=float("nan"), nan_params=True):
    """Wrap the model's step: record the parameters after every step; the bad_at-th call returns `bad` as
    its loss, with NaN parameters (as a NaN blow-up would) unless nan_params is False."""
    real_step, seen = sess.model.step, {}

    def step(x, opts):
        out = real_step(x, opts)
        n = len(seen) + 1
        if n == bad_at and nan_params:
            with torch.no_grad():
                for p in sess.model.parameters():
                    p.fill_(float("nan"))
        if n == bad_at:
            out["loss"] = bad
        seen[n] = {k: v.clone() for k, v in sess.model.state_dict().items()}
        return out

    sess.model.step = step
    return seen


def test_non_finite_loss_restores_the_last_finite_step_not_the_last_checkpoint(sess):
    """Issue 10: 'stopped at step 32 ... restored step 0' lost 31 good steps. The loss of step 32 came from
    the parameters after step 31, so the last good ones are step 30's: replayed from the checkpoint (step 0)
    with the same random draws, bit for bit."""
    seen = _recording(sess, bad_at=32)
    snaps = list(sess.run(max_steps=100, frames=False))
    assert sess.status == "diverged" and snaps[-1].status == "diverged"
    msg = sess.message.lower()
    assert "nan" in msg and "restored the parameters of step 30" in msg and "checkpoint of step 0" in msg, msg
    assert sess.step_count == 30 and sess.history.n == 30
    for k, v in sess.model.state_dict().items():
        assert torch.equal(v, seen[30][k]), k
    assert all(torch.isfinite(p).all() for p in sess.model.parameters())
    list(sess.run(max_steps=5, frames=False))  # training goes on from there
    assert sess.step_count == 35 and sess.history.n == 35


def test_rollback_stays_at_the_checkpoint_when_a_setting_changed_since(sess):
    seen = _recording(sess, bad_at=20)
    sess.train_steps(10, checkpoint_every=1e9)  # no checkpoint but step 0's
    sess.set_live("lr", 0.02)  # steps 11-19 ran with another rate: a replay would not retrace them
    assert not sess.train_steps(50, checkpoint_every=1e9)
    assert sess.step_count == 0 and sess.history.n == 0 and "step 18 could not be replayed" in sess.message
    assert len(seen) == 20


def test_exploded_but_finite_loss_counts_as_diverged(sess):
    """NICE at the learning-rate slider's maximum went 4.2 -> 1.9e11 -> 1.5e33 nats, all finite, and trained
    on ('diverged': false, held-out NLL 4.3e27). A loss beyond ±1e10 now stops the run like a NaN does."""
    seen = _recording(sess, bad_at=12, bad=4.3e27, nan_params=False)
    assert not sess.train_steps(30, checkpoint_every=1e9)
    assert sess.status == "diverged" and "exploded" in sess.message and "4.3e+27" in sess.message, sess.message
    assert sess.step_count == 10
    for k, v in sess.model.state_dict().items():
        assert torch.equal(v, seen[10][k]), k


def test_nice_at_the_largest_learning_rate_keeps_a_sound_model():
    """Whether it diverges (and keeps step 0) or the model makes that rate safe, what is left is sound."""
    lr_max = TrainSettings.spec()[0]["max"]
    s = Session("nice", None, make_split("8gaussians", 1000, seed=0), TrainSettings(lr=lr_max), device="cpu")
    ok = s.train_steps(30, checkpoint_every=1e9)
    assert ok == (s.status == "done") and (ok or s.step_count == 0), s.message
    m = s.evaluate()
    assert s.check_evaluation(m) and m["test_nll"] < 100 and math.isfinite(m["energy_distance"]), m


def test_an_exploded_evaluation_counts_as_diverged_and_goes_back_to_a_sound_checkpoint(sess):
    sess.train_steps(20)
    sess._checkpoint()
    good = {k: v.clone() for k, v in sess.model.state_dict().items()}
    assert sess.check_evaluation(sess.evaluate())
    with torch.no_grad():
        sess.model.log_diag.fill_(1e3)  # finite parameters, infinite component scales
    m = sess.evaluate()
    assert not sess.check_evaluation(m)
    assert sess.status == "diverged" and "samples" in sess.message and sess.step_count == 20
    for k, v in sess.model.state_dict().items():
        assert torch.equal(v, good[k]), k


def test_an_nll_far_above_a_gaussian_fit_counts_as_diverged(sess):
    """A finite held-out NLL more than NLL_MARGIN nats above the Gaussian fit's is an exploded model (score
    matching at learning rate 0.3 reached 4,900 nats on moons); just under it is not. The Gaussian fit's NLL
    of a large standard normal sample is the entropy 1 + log 2π."""
    from playground.metrics import gaussian_nll
    from playground.session import NLL_MARGIN

    x = np.random.default_rng(0).standard_normal((200000, 2))
    assert gaussian_nll(x[:100000], x[100000:]) == pytest.approx(1 + math.log(2 * math.pi), abs=0.01)
    assert sess.nll_limit == pytest.approx(gaussian_nll(sess.data.train, sess.data.test) + NLL_MARGIN)
    sess.train_steps(10)
    sess._checkpoint()
    m = sess.evaluate()
    assert sess.check_evaluation({**m, "test_nll": sess.nll_limit - 1.0})
    assert not sess.check_evaluation({**m, "test_nll": sess.nll_limit + 1.0})
    assert sess.status == "diverged" and "above a Gaussian fit" in sess.message


def test_exit_while_a_thread_trains_does_not_abort():
    """Ctrl-C on the app: the server stops, the interpreter exits while a daemon thread (gradio's worker) is
    inside a torch op; it used to abort ('terminate called without an active exception', status 134).
    session.stop_all (atexit) stops the run first."""
    code = textwrap.dedent("""
        import threading, time
        import torch
        from models import TrainSettings
        from playground.datasets import make_split
        from playground.session import Session
        torch.set_num_threads(1)
        sess = Session("mog", {"method": "gradient"}, make_split("8gaussians", 2000, seed=0), TrainSettings(),
                       device="cpu")
        started = threading.Event()
        def train():
            for _ in sess.run(max_seconds=120):
                started.set()
        threading.Thread(target=train, daemon=True).start()
        started.wait(60)
        time.sleep(0.5)
        print("exiting at step", sess.step_count, flush=True)
    """)
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "terminate called" not in r.stderr, (r.returncode, r.stderr[-500:])
    assert "exiting at step" in r.stdout


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
    assert s1.event == s2.event == "substep"  # what the status line shows the message for
    html = status_html(s2)
    assert "M-step done" in html
    sess.train_steps(1)
    s3 = sess.snapshot()
    assert s3.event == "" and "M-step" not in status_html(s3)
    s4 = sess.apply(lambda m, x, opts: {"loss": 0.0}, "one D step")
    assert s4.event == "action" and s4.message.startswith("one D step")


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


def test_rollback_keeps_the_learning_rate_set_since_the_checkpoint(sess):
    sess.train_steps(5)
    sess._checkpoint()
    sess.set_live("lr", 0.05)
    sess._restore("test")
    assert all(g["lr"] == 0.05 for o in sess.optimizers.values() for g in o.param_groups)


def test_the_live_grid_is_sized_without_a_models_fixed_cost():
    """An EBM's log_prob pays for log Z once per parameter change (its own grid, cached). That fixed cost
    is paid before the timing that sizes the live density grid, so it no longer forces the grid to its
    40 x 40 minimum (here it is made to take 0.2 s: far beyond the grid's whole 4 ms budget)."""
    from playground.session import MIN_LIVE_RES

    sess = Session("ebm_nce", None, make_split("8gaussians", 500), TrainSettings(seed=0))
    model = sess.model
    real, seen = model.grid_density, {}

    def slow_when_new():
        key = model._state_vector()
        if "key" not in seen or not torch.equal(seen["key"], key):
            time.sleep(0.2)
            seen["key"] = key.clone()
        return real()

    model.grid_density = slow_when_new
    for _ in range(2):
        sess.train_steps(3)
        sess.status = "running"
        sess.snapshot(evaluate=False)
    assert sess.live_res > MIN_LIVE_RES


def test_error_messages_are_one_whole_line():
    from playground.session import first_line

    assert first_line(RuntimeError("linalg.cholesky: not positive-definite\nat frame 3")) == \
        "linalg.cholesky: not positive-definite"
    long = RuntimeError("word " * 100)
    line = first_line(long)
    assert len(line) <= 201 and line.endswith("word…") and "\n" not in line
    assert first_line(ValueError("")) == "ValueError"


def test_a_term_logged_on_some_steps_leaves_gaps_without_warnings():
    """A loss term a model logs on some steps only (NaN on the others) bins to NaN where a bin has none: a
    gap in its curve, and no 'Mean of empty slice' warning from every frame."""
    import warnings

    h = History()
    for i in range(3000):
        h.log_step({"loss": 1.0, "r1": 2.0 if i < 100 else float("nan")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps, r1 = h.curves(max_points=200)["r1"]
    assert np.isfinite(r1[:5]).all() and np.isnan(r1[-5:]).all()


@pytest.mark.parametrize("path", ["step", "substep", "action"])
def test_every_update_path_restores_the_last_good_parameters(path):
    """A training step, a named sub-step (EM's E or M) and a tab's own action go through one guard: an update
    whose terms are NaN leaves the run diverged with the parameters it had before."""
    data = make_split("8gaussians", 400, seed=0)
    sess = Session("mog", {"method": "em"}, data, TrainSettings(seed=0, batch=4096), device="cpu")
    sess.train_steps(1)
    at_1 = {k: v.clone() for k, v in sess.model.state_dict().items()}
    sess.train_steps(1)
    sess._checkpoint()
    at_2 = {k: v.clone() for k, v in sess.model.state_dict().items()}
    # a bad loss from a training step was computed from the parameters after the step before: it goes back one
    # more (replaying step 1 from the first checkpoint); a failed sub-step or action to where it started
    before, step = (at_1, 1) if path == "step" else (at_2, 2)

    original = {"step": sess.model.step, "substep": sess.model.substep}
    spoiled = []

    def spoil(*args, **kw):  # once: a replay after it takes the model's own update again
        if spoiled:
            return original[path](*args, **kw)
        spoiled.append(True)
        with torch.no_grad():
            for t in sess.model.state_dict().values():
                if t.is_floating_point():
                    t.add_(1.0)
        return {"loss": float("nan")}

    if path == "step":
        sess.model.step = spoil
        assert not sess.train_steps(1)
    elif path == "substep":
        sess.model.substep = spoil
        sess.single_step()
    else:
        sess.apply(lambda model, x, opts: spoil(), "spoil")
    assert sess.status == "diverged" and "loss became nan" in sess.message, sess.message
    assert sess.step_count == step
    for k, v in sess.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_stop_marks_a_run_parked_at_a_frame_as_stopped():
    """A run whose consumer went away while it waited at a frame never comes back to its loop: Session.stop
    says so itself (the tab no longer writes the session's status)."""
    sess = Session("mog", None, make_split("moons", 300, seed=0), device="cpu")
    run = sess.run()
    next(run)  # the first frame, before the first step: the loop is parked at its yield
    assert sess.status == "running"
    sess.stop(0.2)
    assert sess.status == "stopped" and sess.message == f"stopped at step {sess.step_count}"
    run.close()


@pytest.mark.parametrize("key", ["mog", "vae", "realnvp", "gan_ns", "ebm_cd"])
def test_the_same_seed_gives_the_same_run_alone_or_with_company(key):
    """Same seed and settings, the same run bit for bit, whether alone or while other visitors' sessions are
    built and trained in the same process (their seeds must not leak into this one's initial weights, its
    batches or its noise)."""
    import threading

    data = make_split("8gaussians", 600, seed=0)

    def train(seed: int, steps: int = 25) -> dict:
        sess = Session(key, None, data, TrainSettings(seed=seed, batch=64), device="cpu", grid_res=16,
                       n_samples=50)
        sess.train_steps(steps)
        sess.snapshot()  # a frame draws too (from its own stream)
        sess.train_steps(steps)
        return {k: v.clone() for k, v in sess.model.state_dict().items()}

    alone = train(3)
    stop = threading.Event()

    def neighbours():  # other visitors: sessions of other seeds built and trained, one after another
        seed = 100
        while not stop.is_set():
            train(seed, steps=2)
            seed += 1

    company = threading.Thread(target=neighbours, daemon=True)
    company.start()
    try:
        together = [train(3) for _ in range(3)]
    finally:
        stop.set()
        company.join(60)
    for run in together:
        for k, v in alone.items():
            assert torch.equal(run[k], v), f"{key}: {k} differs with company"


def test_a_stop_asked_before_training_starts_is_not_lost():
    """The command line's Ctrl-C can land between its "training ..." line and train_steps, which clears
    request_stop's flag as it starts: the `stop` callback it is given is read at every step, that one included
    (a CI run under load trained on for minutes after Ctrl-C)."""
    sess = Session("mog", {"method": "gradient"}, make_split("moons", 400, seed=0), device="cpu")
    sess.request_stop()  # too early: train_steps clears it
    assert sess.train_steps(300, stop=lambda: True)
    assert sess.step_count == 0 and sess.status == "stopped"
    assert sess.train_steps(5) and sess.step_count == 5  # a later run is not stopped by it
