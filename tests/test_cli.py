"""The command line: `python -m playground ...` run in this process (playground.cli.main(argv), its output
captured), with smoke tests that run it as a newcomer would, in a subprocess (each of those pays torch's
import, 2-7 s here), and fresh processes that check that a bad command line is refused before torch is
imported."""

import csv
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from playground.cli import main

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, check=True):
    """main(argv) here: its exit status (argparse's SystemExit included), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    r = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


def cli_process(*args, check=True):
    """`python -m playground ARGS` in a subprocess, as a newcomer types it."""
    r = subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PLAYGROUND_THREADS": "1"})
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


def write(path, rows, header="x,y"):
    path.write_text("\n".join(([header] if header else []) + [f"{a},{b}" for a, b in rows]))
    return str(path)


def test_list_json():
    out = json.loads(cli_process("list", "--json").stdout)  # smoke test: the module runs as a program
    keys = {m["key"]: m for m in out["models"]}
    assert "mog" in keys
    hp = {h["name"]: h for h in keys["mog"]["hyperparameters"]}
    assert hp["K"]["min"] == 1 and hp["K"]["max"] == 32 and hp["K"]["default"] == 8
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
    (["bench", "load", "--visitors", "four"], "comma-separated integers"),
    (["bench", "load", "--visitors", "0"], "between 1 and 64"),
])
def test_bad_arguments_exit_with_one_line(args, reason):
    r = (cli_process if args == ["train", "nosuchmodel"] else cli)(*args, check=False)  # one end to end
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_csv_exits_with_the_reason(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n" + "1,2\n" * 12 + "3,hello\n")
    r = cli("train", "mog", "--data", str(bad), check=False)
    assert r.returncode == 2 and "not a number" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # over 10 s here: it starts the app
def test_bench_load_trains_visitors_at_once_through_the_api():
    """bench load: the app in its own process, each tab alone, then two visitors at once through gradio_client;
    every visitor trains and stops, and the server's CPU and memory are read."""
    out = json.loads(cli("bench", "load", "--visitors", "2", "--seconds", "1.5", "--json").stdout)
    assert set(out["alone_steps_per_sec"]) == {"latent", "flows", "gans", "ebm"}
    assert all(v > 0 for v in out["alone_steps_per_sec"].values())
    (row,) = out["rows"]
    assert row["visitors"] == 2 and 0 < row["server_cores"] <= out["cores_here"] + 0.5
    assert row["memory_mb_before"] > 50 and row["memory_mb_after"] > 50
    assert [r["tab"] for r in row["results"]] == ["latent", "flows"]
    for r in row["results"]:
        assert r["started"] and r["steps_per_sec"] > 0 and r["stop_s"] < 30 and "error" not in r, r
        assert r["share_of_alone"] == pytest.approx(r["steps_per_sec"] / out["alone_steps_per_sec"][r["tab"]])


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


def test_ctrl_c_stops_training_and_prints_the_metrics():
    """Ctrl-C used to end `train` with a KeyboardInterrupt traceback and nothing printed; it now stops after
    the current step and prints the metrics of what it has (exit status 130)."""
    import select
    import signal

    p = subprocess.Popen([sys.executable, "-m", "playground", "train", "mog", "--set", "method=gradient",
                          "--steps", "100000000", "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PLAYGROUND_THREADS": "1"})
    try:
        # a line is printed once the data and the model are ready, just before training
        ready, _, _ = select.select([p.stderr], [], [], 120)
        first = p.stderr.readline() if ready else ""
        assert first.startswith("training mog"), first
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and "Traceback" not in err, err
    res = json.loads(out)
    assert res["interrupted"] and not res["diverged"] and res["message"].startswith("stopped at step")
    assert isinstance(res["metrics"]["test_nll"], float) and res["steps"] < 100000000


def test_save_samples_into_a_missing_folder_is_refused_before_training(tmp_path):
    """It used to train, then crash with a traceback before printing the metrics."""
    target = tmp_path / "missing" / "samples.csv"
    r = cli("train", "mog", "--steps", "20", "--save-samples", str(target), "--json", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == f"error: --save-samples {target}: the folder {target.parent} does " \
                                                 "not exist"


def test_exploded_run_reports_diverged():
    """NICE at the learning-rate slider's maximum: its loss was finite but 1.9e11 nats at step 2, and the command
    line reported "diverged": false with a held-out NLL of 1e34. Diverged now, with the last good model's metrics
    (the exploded-but-finite rule itself: test_session)."""
    lr_max = [s for s in json.loads(cli("list", "--json").stdout)["training"] if s["name"] == "lr"][0]["max"]
    r = cli("train", "nice", "--lr", str(lr_max), "--steps", "50", "--json", check=False)
    out = json.loads(r.stdout)  # diverged (the last good model's metrics), or a model that made the rate safe
    assert r.returncode == (1 if out["diverged"] else 0)
    assert not out["diverged"] or "Restored the parameters of step 0" in out["message"]
    assert out["metrics"]["test_nll"] < 100 and isinstance(out["metrics"]["energy_distance"], float)


@pytest.mark.parametrize("rows, reason", [
    ([(float(i), float(i % 3)) for i in range(19)] + [(1.0, 1e308)], "row 21, column 2: 1e+308 does not fit"),
    ([(1e-300 * i, 1e-300 * (i % 3)) for i in range(20)], "spread over only 4.1e-300"),
])
def test_csv_values_float32_cannot_train_on_exit_with_one_line(tmp_path, rows, reason):
    """Values beyond float32's range crashed the command line with a traceback (and ~1e-300 gave 'math domain
    error' in the app); they are refused with the row and column, or the reason (more cases: test_datasets)."""
    path = write(tmp_path / "big.csv", [(repr(a), repr(b)) for a, b in rows])
    r = cli("train", "mog", "--data", path, "--steps", "5", check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and reason in lines[0], r.stderr
    assert lines[0].startswith(f"error: {path}: ")


# --- a bad command line is refused before torch is imported ---------------------------------------------------

RUN_MAIN = """import json, sys
from playground.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    out.append({"code": code, "torch": "torch" in sys.modules, "models": "models" in sys.modules})
print(json.dumps(out))
"""


def main_in_fresh_process(*argvs, cwd=ROOT, cache=None, pythonpath=None):
    """main(argv) for each argv in turn, in one new Python process: per call its exit status and whether torch
    and `models` were imported by then; and the process's stderr lines."""
    env = {**os.environ, "PLAYGROUND_THREADS": "1"}
    if cache is not None:
        env["PLAYGROUND_CACHE_DIR"] = str(cache)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    r = subprocess.run([sys.executable, "-c", RUN_MAIN, json.dumps([list(a) for a in argvs])], cwd=cwd,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr.strip().splitlines()


BAD_COMMAND_LINES = [
    ([], "the following arguments are required: {list,train,sample,eval,record,compare,bench,sweep}"),
    (["--bogus"], "the following arguments are required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train"], "name a model to train, or --resume FILE.pt"),
    (["train", "mog", "--steps", "ten"], "invalid int value: 'ten'"),
    (["train", "mog", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["train", "mog", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "mog", "--steps", "-1"], "--steps must be >= 0"),
    (["bench", "mog", "--repeats", "many"], "invalid int value: 'many'"),
    (["compare", "--seconds", "soon"], "invalid float value: 'soon'"),
]


def test_a_bad_command_line_is_refused_without_importing_torch():
    """argparse's errors (and the checks that need no model) come before torch and the models are imported, so
    they take a fraction of a second instead of torch's import (2 s here). Each call in a fresh process (one
    process for all of them: torch stays out, or the test fails at the first call that imports it)."""
    results, lines = main_in_fresh_process(*[argv for argv, _ in BAD_COMMAND_LINES])
    assert len(lines) == len(BAD_COMMAND_LINES), lines  # one line each
    for (argv, reason), res, line in zip(BAD_COMMAND_LINES, results, lines):
        assert res == {"code": 2, "torch": False, "models": False}, (argv, res)
        assert line.startswith("error: ") and reason in line, (argv, line)


def test_an_unknown_model_is_refused_from_the_registrys_keys_without_torch(tmp_path):
    """The keys come from the real registry, remembered by the command line whenever it imports the models, and
    are used only while no source file of `models` has changed since: a model added later is known at once
    (here: a copy of `models` with a new model file), and the remembered list never drifts from the registry."""
    src = tmp_path / "src"  # `models` is this copy (the current folder comes first), playground this checkout's
    import shutil

    shutil.copytree(ROOT / "models", src / "models", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    run = lambda *argvs: main_in_fresh_process(*argvs, cwd=src, cache=cache, pythonpath=ROOT)  # noqa: E731

    (cold,), (cold_line,) = run(["train", "nosuch"])
    assert cold == {"code": 2, "torch": True, "models": True}  # nothing remembered yet: the registry decides
    (warm,), (warm_line,) = run(["train", "nosuch"])
    assert warm == {"code": 2, "torch": False, "models": False}
    assert warm_line == cold_line  # the same keys as the real registry's
    from models import REGISTRY

    ours = sorted(k for k, c in REGISTRY.items() if c.__module__.split(".")[0] == "models")
    assert cold_line == f"error: unknown model 'nosuch' (known: {', '.join(ours)})"

    (src / "models" / "latent" / "zz_extra.py").write_text(  # a new model: a file in its family's package
        "from ..base import register\nfrom .mixture import MixtureOfGaussians\n\n\n"
        "@register\nclass Extra(MixtureOfGaussians):\n    key = 'zz_extra'\n    in_compare = False\n")
    (added, unknown), lines = run(["train", "zz_extra", "--steps", "-1"], ["train", "nosuch"])
    assert added == {"code": 2, "torch": True, "models": True}  # a source changed: the registry decides again
    assert lines[0] == "error: --steps must be >= 0 and --samples >= 1"  # known: refused for its --steps only
    assert "zz_extra" in lines[1]
    (again,), (line,) = run(["train", "nosuch"])
    assert again == {"code": 2, "torch": False, "models": False} and line == lines[1]


# --- old hyperparameter names ----------------------------------------------------------------------------------

def test_list_shows_the_current_names_and_the_renamed_ones():
    models = {m["key"]: m for m in json.loads(cli("list", "--json").stdout)["models"]}
    names = lambda key: [h["name"] for h in models[key]["hyperparameters"]]  # noqa: E731
    assert names("ebm_cd")[:3] == ["hidden", "depth", "activation"]
    assert {"g_depth", "d_depth"} <= set(names("gan_ns")) and not {"g_layers", "d_layers"} & set(names("gan_ns"))
    assert "depth" in names("vae") and "layers" not in names("vae")
    assert models["ebm_cd"]["renamed"] == {"layers": "depth", "act": "activation"}
    assert {"layers", "depth"} <= set(names("realnvp")) and models["realnvp"]["renamed"] == {}  # flows: as they were


def test_set_takes_an_old_name_as_its_new_one_with_a_note_once():
    new = cli("train", "made", "--steps", "3", "--set", "depth=3", "--set", "hidden=16", "--json")
    old = cli("train", "made", "--steps", "3", "--set", "layers=3", "--set", "hidden=16", "--set", "layers=3", "--json")
    assert json.loads(old.stdout)["config"] == json.loads(new.stdout)["config"]
    assert json.loads(old.stdout)["config"]["depth"] == 3
    assert "note:" not in new.stderr
    assert [ln for ln in old.stderr.splitlines() if ln.startswith("note:")] == ["note: 'layers' is now 'depth'"]


@pytest.mark.parametrize("args, reason", [
    (["train", "made", "--set", "layers=9"], "depth: 9 is outside the safe range [1, 4] ('layers' is now 'depth')"),
    (["train", "ebm_cd", "--set", "act=relu"], "activation: 'relu' is not one of"),
    (["train", "mog", "--set", "layers=2"], "unknown setting 'layers' for mog"),
    (["bench", "gan_ns", "--set", "g_layers=0"], "g_depth: 0 is outside the safe range"),
])
def test_an_old_name_with_a_bad_value_or_for_another_model_is_refused_in_one_line(args, reason):
    r = cli(*args, check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and reason in lines[0], r.stderr
