"""The command line, run as a newcomer would: `python -m playground ...` in a subprocess."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "PLAYGROUND_THREADS": "1"})
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


def write(path, rows, header="x,y"):
    path.write_text("\n".join(([header] if header else []) + [f"{a},{b}" for a, b in rows]))
    return str(path)


def test_list_json():
    out = json.loads(cli("list", "--json").stdout)
    keys = {m["key"]: m for m in out["models"]}
    assert "mog" in keys
    hp = {h["name"]: h for h in keys["mog"]["hyperparameters"]}
    assert hp["K"]["min"] == 1 and hp["K"]["max"] == 20 and hp["K"]["default"] == 8
    assert set(hp["covariance"]["choices"]) == {"full", "diagonal", "spherical"}
    names = {d["name"] for d in out["datasets"]}
    assert {"8gaussians", "25gaussians", "moons", "circles", "rings", "swissroll", "pinwheel", "2spirals",
            "checkerboard", "banana"} <= names


def test_train_json_reports_metrics():
    out = json.loads(cli("train", "mog", "--dataset", "8gaussians", "--steps", "50", "--batch", "4096",
                         "--set", "K=8", "--json").stdout)
    assert out["model"] == "mog" and out["dataset"] == "8gaussians" and out["steps"] == 50
    assert out["steps_per_second"] > 0 and out["seconds"] > 0
    m = out["metrics"]
    for k in ("train_nll", "test_nll", "mmd", "energy_distance", "loss"):
        assert isinstance(m[k], float), k
    # EM with K=8 on 8 Gaussians gets within 0.1 nats of the true density's held-out NLL
    assert m["test_nll"] - m["data_nll"] < 0.1


def test_own_data_test_data_and_saved_samples(tmp_path):
    rng = np.random.default_rng(0)
    train = write(tmp_path / "train.csv", rng.normal(3, 1, (300, 2)))
    test = write(tmp_path / "test.csv", rng.normal(3, 1, (77, 2)), header=None)
    out_csv = tmp_path / "samples.csv"
    out = json.loads(cli("train", "mog", "--data", train, "--test-data", test, "--steps", "20", "--set", "K=2",
                         "--save-samples", str(out_csv), "--samples", "123", "--json").stdout)
    assert out["n_test"] == 77 and out["n_train"] == 300
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["x1", "x2"] and len(rows) == 124
    s = np.array(rows[1:], float)
    assert abs(s.mean() - 3) < 0.5  # the samples are in the data's coordinates
    # a unit Gaussian's NLL is log(2 pi) + 1 = 2.84 nats; the fit should be close
    assert abs(out["metrics"]["test_nll"] - 2.84) < 0.3


@pytest.mark.parametrize("args, reason", [
    (["train", "nosuchmodel"], "unknown model"),
    (["train", "mog", "--dataset", "nosuchdata"], "unknown dataset"),
    (["train", "mog", "--set", "K=99"], "outside the safe range"),
    (["train", "mog", "--set", "bogus=1"], "unknown setting"),
    (["train", "mog", "--set", "K"], "KEY=VALUE"),
    (["train", "mog", "--steps", "ten"], "invalid int"),
    (["train", "mog", "--data", "/no/such.csv"], "no such file"),
    (["train", "mog", "--device", "tpu"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["bench", "samplers", "--chains", "ten"], "comma-separated integers"),
    (["bench", "samplers", "--chains", "0"], "between 1 and"),
])
def test_bad_arguments_exit_with_one_line(args, reason):
    r = cli(*args, check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_csv_exits_with_the_reason(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n" + "1,2\n" * 12 + "3,hello\n")
    r = cli("train", "mog", "--data", str(bad), check=False)
    assert r.returncode == 2 and "not a number" in r.stderr and "Traceback" not in r.stderr


def test_bench_reports_a_ratio():
    out = json.loads(cli("bench", "mog", "--seconds", "0.5", "--repeats", "1", "--json").stdout)
    assert out["model"] == "mog"
    assert out["bare_steps_per_second"] > 0 and out["live_steps_per_second"] > 0
    assert out["ratio"] == pytest.approx(out["live_steps_per_second"] / out["bare_steps_per_second"], rel=0.05)
    assert out["frames_per_second"] > 0


def test_bench_samplers_times_every_sampler_on_every_target():
    out = json.loads(cli("bench", "samplers", "--chains", "10,50", "--seconds", "0.4", "--json").stdout)
    rows = out["results"]
    assert {(r["target"], r["method"], r["chains"]) for r in rows} == {
        (t, m, n) for t in ("donut", "ebm") for m in ("langevin", "mala", "mh") for n in (10, 50)}
    for r in rows:
        assert r["chain_steps_per_second"] == pytest.approx(r["chains"] * r["steps_per_second"], rel=0.01)
        assert r["steps_per_second"] > 0
        # unadjusted Langevin accepts everything (no rate); MALA and MH report a probability
        assert (r["accept_rate"] is None) == (r["method"] == "langevin")
        if r["accept_rate"] is not None:
            assert 0.0 < r["accept_rate"] <= 1.0
