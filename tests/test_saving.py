"""Saving a run to one file and resuming it: the same next steps as never stopping, every bad file refused with a
one-line reason (never unpickled), and the command line's --save-model / --resume / sample / eval."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models import TrainSettings
from playground import saving
from playground.datasets import make_split, split_array
from playground.session import Session

ROOT = Path(__file__).resolve().parents[1]

# one or two per family: EM's two-phase step, a flow, a GAN and the CycleGAN's source, a VAE, an EBM's persistent
# chains, a diffusion model, an autoregressive model
KEYS = ["mog", "realnvp", "gan_ns", "cyclegan", "vae", "ebm_cd", "ddpm", "made"]


def _params(sess) -> dict:
    return {k: v.detach().clone() for k, v in sess.model.state_dict().items()}


@pytest.mark.parametrize("key", KEYS)
def test_save_then_resume_takes_the_same_next_steps_as_never_stopping(key, tmp_path):
    data = make_split("8gaussians", 600, seed=1)
    a = Session(key, {}, data, TrainSettings(seed=2, batch=64), device="cpu")
    assert a.train_steps(7)
    path = tmp_path / "run.pt"
    assert saving.save(a, path, spec={"dataset": "8gaussians"}) == 7
    assert a.train_steps(5)
    b = saving.restore(saving.read(path), device="cpu")
    assert b.step_count == 7 and b.history.n == 7
    assert b.train_steps(5)
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=0, atol=0, msg=k)
    assert b.step_count == a.step_count == 12
    np.testing.assert_array_equal(b.history.step_terms["loss"][:12], a.history.step_terms["loss"][:12])


def test_the_file_keeps_the_points_the_history_and_the_true_density(tmp_path):
    data = make_split("8gaussians", 500, seed=3)
    a = Session("mog", {"K": 4}, data, TrainSettings(seed=0), device="cpu")
    a.train_steps(3)
    a.snapshot(evaluate=True)
    saving.save(a, tmp_path / "m.pt", spec={"dataset": "8gaussians", "n_points": 500})
    blob = saving.read(tmp_path / "m.pt")
    back = saving.data_from_blob(blob)
    np.testing.assert_array_equal(back.train, data.train)
    np.testing.assert_array_equal(back.test, data.test)
    assert back.log_prob is not None and back.box == data.box
    np.testing.assert_allclose(back.log_prob(data.test[:20]), data.log_prob(data.test[:20]))
    assert saving.spec_fields(blob) == {"dataset": "8gaussians", "n_points": 500}
    h = saving.history_from_plain(blob["history"])
    assert h.evals.keys() == a.history.evals.keys() and h.evals["test_nll"] == a.history.evals["test_nll"]
    # points of one's own (an upload): kept as they are, no density
    own = split_array(np.random.default_rng(0).normal(size=(300, 2)) * 5, "mine.csv", seed=0)
    s = Session("mog", {}, own, TrainSettings(seed=0), device="cpu")
    saving.save(s, tmp_path / "own.pt")
    back = saving.data_from_blob(saving.read(tmp_path / "own.pt"))
    np.testing.assert_array_equal(back.train, own.train)
    assert back.log_prob is None and back.name == "mine.csv"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "good.pt"
    sess = Session("realnvp", {}, make_split("moons", 400, seed=0), TrainSettings(seed=0), device="cpu")
    sess.train_steps(2)
    saving.save(sess, path)
    return path


class _NotPlain:
    def __init__(self):
        self.x = 1


def _rewrite(path, tmp_path, change, redigest: bool = True):
    blob = torch.load(path, weights_only=True)
    change(blob)
    if redigest:
        blob["digest"] = saving.digest(blob)
    out = tmp_path / "bad.pt"
    torch.save(blob, out)
    return out


@pytest.mark.parametrize("case, expect", [
    ("garbage", "not a playground model file, or damaged"),
    ("truncated", "not a playground model file, or damaged"),
    ("empty", "not a playground model file, or damaged"),
    ("object", "never unpickled"),
    ("other_format", "not a playground model file ("),
    ("version", "another version"),
    ("unknown_model", "does not have ('nope')"),
    ("tampered", "changed after it was saved"),
    ("bad_config", "settings are not valid here"),
    ("missing", "incomplete"),
    ("bad_points", "incomplete"),
])
def test_a_bad_file_is_refused_with_its_reason(case, expect, good, tmp_path):
    raw = good.read_bytes()
    if case == "garbage":
        path = tmp_path / "g.pt"
        path.write_bytes(b"PK\x03\x04 this is not a model" * 10)
    elif case == "truncated":
        path = tmp_path / "t.pt"
        path.write_bytes(raw[: len(raw) // 2])
    elif case == "empty":
        path = tmp_path / "e.pt"
        path.write_bytes(b"")
    elif case == "object":
        path = tmp_path / "o.pt"
        torch.save({"format": saving.FORMAT, "payload": _NotPlain()}, path)
    elif case == "other_format":
        path = tmp_path / "f.pt"
        torch.save({"weights": torch.zeros(3)}, path)
    elif case == "version":
        path = _rewrite(good, tmp_path, lambda b: b.update(version=99))
    elif case == "unknown_model":
        path = _rewrite(good, tmp_path, lambda b: b.update(key="nope"))
    elif case == "tampered":
        def change(b):  # one weight nudged: same dtype, same shape
            state = b["slot"]["state"]
            name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
            state[name][0] += 1e-3
        path = _rewrite(good, tmp_path, change, redigest=False)
    elif case == "bad_config":
        path = _rewrite(good, tmp_path, lambda b: b["config"].update(layers=10_000))
    elif case == "missing":
        path = _rewrite(good, tmp_path, lambda b: b.pop("history"))
    else:
        path = _rewrite(good, tmp_path, lambda b: b["data"].update(train=torch.full((5, 2), float("nan"))))
    with pytest.raises(saving.ModelFileError) as err:
        saving.read(path)
    msg = str(err.value)
    assert expect in msg and "\n" not in msg


def test_weights_that_do_not_fit_the_model_are_refused(good, tmp_path):
    def change(b):
        name = next(iter(b["slot"]["state"]))
        b["slot"]["state"][name] = torch.zeros(7, 7, 7)
    blob = saving.read(_rewrite(good, tmp_path, change))
    with pytest.raises(saving.ModelFileError, match="weights do not fit"):
        saving.restore(blob, device="cpu")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "playground", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


def test_the_command_line_saves_resumes_samples_and_evaluates(tmp_path):
    m = tmp_path / "m.pt"
    r = _cli("train", "realnvp", "--dataset", "moons", "--steps", "30", "--seed", "3", "--save-model", m, "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["model_file"] == str(m) and m.is_file()
    r = _cli("train", "--resume", m, "--steps", "20", "--save-model", tmp_path / "m2.pt", "--json")
    assert r.returncode == 0, r.stderr
    resumed = json.loads(r.stdout)
    assert resumed["steps"] == 50 and resumed["model"] == "realnvp" and resumed["dataset"] == "moons"
    straight = json.loads(_cli("train", "realnvp", "--dataset", "moons", "--steps", "50", "--seed", "3",
                               "--json").stdout)
    assert resumed["metrics"]["test_nll"] == pytest.approx(straight["metrics"]["test_nll"], abs=1e-6)
    out = tmp_path / "s.csv"
    r = _cli("sample", tmp_path / "m2.pt", "--n", "250", "--out", out)
    assert r.returncode == 0, r.stderr
    pts = np.loadtxt(out, delimiter=",", skiprows=1)
    assert pts.shape == (250, 2) and np.isfinite(pts).all()
    held = tmp_path / "held.csv"
    np.savetxt(held, make_split("moons", 500, seed=9).test, delimiter=",", header="x,y", comments="")
    r = _cli("eval", tmp_path / "m2.pt", "--data", held, "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["n"] == 100 and ev["step"] == 50 and np.isfinite(ev["metrics"]["test_nll"])
    assert abs(ev["metrics"]["test_nll"] - resumed["metrics"]["test_nll"]) < 0.5  # other held-out points
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nothing")
    for args in (("sample", bad), ("eval", bad, "--data", held), ("train", "--resume", bad)):
        r = _cli(*args)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
        assert "not a playground model file" in r.stderr


def test_the_session_of_a_worker_saves_and_resumes_too(tmp_path):
    """The app runs each visitor's run in a worker process: the file comes from there and goes back there."""
    from playground import workers

    before = workers.configure()
    workers.configure("process")
    try:
        data = make_split("moons", 400, seed=0)
        remote = workers.open_session("realnvp", {}, data, TrainSettings(seed=1), device="cpu")
        local = Session("realnvp", {}, copy.deepcopy(data), TrainSettings(seed=1), device="cpu")
        remote.single_step(), remote.single_step()
        local.train_steps(2)
        saving.save(remote, tmp_path / "r.pt")
        remote.close()
        again = saving.restore(saving.read(tmp_path / "r.pt"), device="cpu", open_session=workers.open_session)
        assert again.step_count == 2
        again.single_step()
        again.single_step()
        local.train_steps(2)
        saving.save(again, tmp_path / "r2.pt")
        got = saving.read(tmp_path / "r2.pt")["slot"]["state"]
        for k, v in local.model.state_dict().items():
            torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)
        again.close()
    finally:
        workers.configure(before)


def test_the_command_line_records_a_panel_as_an_animation(tmp_path):
    from PIL import Image

    gif, page = tmp_path / "run.gif", tmp_path / "run.html"
    r = _cli("record", "mog", "--dataset", "8gaussians", "--steps", "12", "--frames", "4", "--set", "method=gradient",
             "--out", gif, "--size", "240x200")
    assert r.returncode == 0, r.stderr
    with Image.open(gif) as im:
        assert im.size == (240, 200) and 2 <= im.n_frames <= 5
    r = _cli("record", "mog", "--dataset", "8gaussians", "--steps", "12", "--frames", "4", "--set", "method=gradient",
             "--out", page)
    assert r.returncode == 0, r.stderr
    text = page.read_text(encoding="utf-8")
    assert text.count('"name":"') + text.count('"name": "') >= 3
    r = _cli("record", "mog", "--steps", "5", "--out", tmp_path / "run.avi")
    assert r.returncode == 2 and "a .html, .gif or .mp4 file" in r.stderr
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    r = _cli("record", "mog", "--dataset", "8gaussians", "--steps", "12", "--frames", "4", "--set", "method=gradient",
             "--out", tmp_path / "run.mp4", "--size", "240x200")
    assert r.returncode == 0, r.stderr
    reader = ffmpeg.read_frames(str(tmp_path / "run.mp4"))
    assert next(reader)["size"] == (240, 208) and sum(1 for _ in reader) == 4 + 6  # 5 frames, the last held 1 s
