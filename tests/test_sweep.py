"""Sweeps: a grid of runs in worker processes, to a resumable CSV and an HTML summary."""

import os
from pathlib import Path

import pytest
from test_cli import cli

from models import TrainSettings
from playground import sweep
from playground.datasets import make_split
from playground.session import Session


@pytest.mark.slow  # over 10 s here: worker processes import torch
def test_a_sweep_writes_every_run_resumes_and_matches_a_run_in_this_process(tmp_path):
    out = tmp_path / "runs.csv"
    args = ["sweep", "--models", "mog,realnvp", "--datasets", "8gaussians", "--seeds", "0-1", "--steps", "40",
            "--set", "batch=64,128", "--n", "400", "--workers", "2", "--out", out]
    r = cli(*args)
    assert "8 runs: 0 already" in r.stdout and "8 done" in r.stdout
    rows = sweep.done_rows(out)
    assert len(rows) == 8 and all(row["status"] == "done" for row in rows)
    assert {(row["model"], row["seed"], row["settings"]) for row in rows} == {
        (m, s, f"batch={b}") for m in ("mog", "realnvp") for s in ("0", "1") for b in (64, 128)}
    html = out.with_suffix(".html").read_text()
    assert "realnvp batch=64" in html and "true density" in html
    again = cli(*args)  # nothing left to run: every row is in the CSV
    assert "8 already in" in again.stdout and "0 done" in again.stdout and len(sweep.done_rows(out)) == 8
    # a worker process gives the run this process gives (the same seed, the same run)
    row = next(r for r in rows if r["model"] == "realnvp" and r["seed"] == "1" and r["settings"] == "batch=64")
    sess = Session("realnvp", None, make_split("8gaussians", 400, seed=1), TrainSettings(seed=1, batch=64),
                   device="cpu")
    sess.train_steps(40)
    assert float(row["test_nll"]) == sess.evaluate()["test_nll"]


def _dies_first(job: dict) -> dict:
    """A worker task that kills its own process the first time (`marker` not there yet), then runs."""
    marker = Path(job["marker"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(3)
    return {**job, "settings": sweep.settings_text(job), "status": "done", "test_nll": 1.0}


def _always_dies(job: dict) -> dict:
    os._exit(3)


def test_a_run_whose_worker_dies_is_taken_again_then_written_as_failed(tmp_path):
    jobs = [{**j, "marker": str(tmp_path / "died")} for j in sweep.grid(["mog"], ["moons"], [0], 5)]
    counts = sweep.run_sweep(jobs, tmp_path / "a.csv", workers=1, fn=_dies_first)
    assert counts["retried"] == 1 and counts["done"] == 1
    assert [r["status"] for r in sweep.done_rows(tmp_path / "a.csv")] == ["done"]
    counts = sweep.run_sweep(sweep.grid(["mog"], ["moons"], [0], 5), tmp_path / "b.csv", workers=1, fn=_always_dies)
    assert counts["retried"] == sweep.RETRIES and counts["failed"] == 1
    (row,) = sweep.done_rows(tmp_path / "b.csv")
    assert row["status"] == "failed" and "died" in row["message"]


@pytest.mark.parametrize("args, reason", [
    (["--models", "nosuch"], "unknown model"),
    (["--models", "mog", "--datasets", "nowhere"], "unknown dataset"),
    (["--models", "mog", "--seeds", "a-b"], "--seeds wants"),
    (["--models", "mog", "--set", "K=2,99"], "outside the safe range"),
    (["--models", "mog", "--steps", "0"], "--steps must be"),
])
def test_bad_sweep_arguments_are_one_line_before_anything_runs(tmp_path, args, reason):
    r = cli("sweep", *args, "--out", tmp_path / "x.csv", check=False)
    assert r.returncode == 2 and reason in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.csv").exists()


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of this machine's cores, for this module's Ray tests (a real one, not a mock)."""
    ray = pytest.importorskip("ray")
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    import test_sweep

    cloudpickle.register_pickle_by_value(test_sweep)  # the workers cannot import tests/: ship its functions
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(sweep.ROOT)), "PLAYGROUND_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow  # over 10 s here: Ray starts
def test_a_sweep_on_ray_gives_the_runs_of_the_local_pool_and_survives_a_dying_worker(tmp_path, local_ray):
    jobs = sweep.grid(["mog", "realnvp"], ["8gaussians"], [0, 1], 30, n=400)
    on_ray = sweep.run_sweep(jobs, tmp_path / "ray.csv", ray_address="local")
    assert on_ray["done"] == 4 and on_ray["failed"] == 0
    pool = sweep.run_sweep(jobs, tmp_path / "pool.csv", workers=2)
    assert pool["done"] == 4
    key = (lambda r: (r["model"], r["seed"]))
    ray_rows = {key(r): r["test_nll"] for r in sweep.done_rows(tmp_path / "ray.csv")}
    pool_rows = {key(r): r["test_nll"] for r in sweep.done_rows(tmp_path / "pool.csv")}
    assert ray_rows == pool_rows  # the same seed, the same run, wherever it runs
    dying = [{**j, "marker": str(tmp_path / "died")} for j in sweep.grid(["mog"], ["moons"], [0], 5)]
    counts = sweep.run_sweep(dying, tmp_path / "dying.csv", ray_address="local", fn=_dies_first)
    assert counts["done"] == 1 and (tmp_path / "died").exists()  # Ray took the task again after its worker died
