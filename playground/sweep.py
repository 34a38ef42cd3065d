"""Sweeps for researchers: a grid of runs (models x datasets x seeds x settings) in a local pool of worker
processes, one torch thread each, written row by row to a tidy CSV, with an HTML summary.

Each run is a plain dict in and a plain dict out (:func:`run_one`), so a pool of processes can take it: the runs
use both cores where the app's threads share one interpreter. A worker that dies (killed, out of memory) breaks
the pool: the runs it had are taken again in a fresh pool, up to RETRIES times each, then written as failed.
Rows are appended as they finish, so a sweep that is stopped resumes from its CSV: the runs already there (same
model, dataset, seed, steps and settings) are skipped.

On Ray (``ray_address``: a cluster's address, or "local" for an instance of this machine's cores started here),
each run is a Ray task (one CPU, retried by Ray when its worker dies): the same :func:`run_one`, placed anywhere on
the cluster. Every node needs this checkout at the same path (the tasks import ``playground`` from it).
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

RETRIES = 2  # a run whose worker died is taken again this many times
FIELDS = ["model", "dataset", "seed", "steps", "settings", "status", "test_nll", "train_nll", "data_nll",
          "energy_distance", "mmd", "loss", "seconds", "message"]


def grid(models: list[str], datasets: list[str], seeds: list[int], steps: int,
         sets: dict[str, list[str]] | None = None, n: int = 2000) -> list[dict]:
    """The runs of a sweep: every model x dataset x seed x combination of the --set values."""
    sets = sets or {}
    names = sorted(sets)
    combos = [dict(zip(names, values)) for values in itertools.product(*(sets[k] for k in names))] or [{}]
    return [{"model": m, "dataset": d, "seed": int(s), "steps": int(steps), "n": int(n), "set": combo}
            for m in models for d in datasets for s in seeds for combo in combos]


def settings_text(job: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(job["set"].items()))


def job_key(row: dict) -> tuple:
    return (str(row["model"]), str(row["dataset"]), int(row["seed"]), int(row["steps"]),
            row["settings"] if "settings" in row else settings_text(row))


def run_one(job: dict) -> dict:
    """One run in this process: data, session, `steps` steps, held-out evaluation (a worker's task)."""
    from models import REGISTRY, ConfigError, TrainSettings

    from .datasets import DataError, make_split
    from .session import Session, configure_threads

    configure_threads()
    row = {"model": job["model"], "dataset": job["dataset"], "seed": job["seed"], "steps": job["steps"],
           "settings": settings_text(job)}
    t0 = time.perf_counter()
    try:
        cfg_cls = REGISTRY[job["model"]].Config
        cfg, train = {}, {}
        for k, v in job["set"].items():
            if k in ("lr", "batch"):
                train[k] = TrainSettings.coerce(k, v)
            else:
                name = cfg_cls.canonical(k)[0]
                cfg[name] = cfg_cls.coerce(name, v)
        settings = TrainSettings.make(seed=job["seed"], **train)
        data = make_split(job["dataset"], job["n"], seed=job["seed"])
        sess = Session(job["model"], cfg, data, settings, device="cpu")
        ok = sess.train_steps(job["steps"])
        m = sess.evaluate()
        row.update(status="done" if ok else "diverged", message="" if ok else sess.message,
                   **{k: m.get(k) for k in ("test_nll", "train_nll", "data_nll", "energy_distance", "mmd", "loss")})
    except (ConfigError, DataError, KeyError, ValueError, RuntimeError) as err:
        row.update(status="failed", message=f"{type(err).__name__}: {err}"[:300])
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def done_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_sweep(jobs: list[dict], out: Path, workers: int | None = None, fn: Callable[[dict], dict] = run_one,
              progress: Callable[[dict], None] | None = None, ray_address: str | None = None) -> dict:
    """Run the jobs not in `out` yet, `workers` processes at once (default: the cores), appending each row to
    `out` as it finishes; returns counts. A broken pool (a worker died) is replaced, and its unfinished runs
    are taken again up to RETRIES times, then written as failed."""
    out = Path(out)
    have = {job_key(r) for r in done_rows(out)}
    todo = [j for j in jobs if job_key(j) not in have]
    workers = max(1, int(workers or os.cpu_count() or 1))
    tries = {id(j): 0 for j in todo}
    new_file = not out.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"jobs": len(jobs), "skipped": len(jobs) - len(todo), "done": 0, "failed": 0, "retried": 0}
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new_file:
            writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in FIELDS})
            f.flush()
            counts["done" if row.get("status") in ("done", "diverged") else "failed"] += 1
            if progress is not None:
                progress(row)

        if ray_address:
            _run_on_ray(todo, fn, write, ray_address, workers, counts)
            return counts
        pending = list(todo)
        while pending:
            lost: list[dict] = []  # runs whose worker died (the whole pool breaks with it)
            with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(fn, j): j for j in pending}
                while futures:
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        job = futures.pop(fut)
                        try:
                            row = fut.result()
                        except BrokenProcessPool:
                            lost.append(job)
                            continue
                        except Exception as err:  # noqa: BLE001 - a run's own failure is its row, not the sweep's end
                            row = {**job, "settings": settings_text(job), "status": "failed",
                                   "message": f"{type(err).__name__}: {err}"[:300]}
                        write(row)
            pending = []
            for job in lost:
                tries[id(job)] += 1
                if tries[id(job)] > RETRIES:
                    write({**job, "settings": settings_text(job), "status": "failed",
                           "message": f"its worker died {tries[id(job)]} times"})
                else:
                    counts["retried"] += 1
                    pending.append(job)
    return counts


ROOT = Path(__file__).resolve().parent.parent


def _run_on_ray(jobs: list[dict], fn: Callable[[dict], dict], write: Callable[[dict], None], address: str,
                workers: int | None, counts: dict) -> None:
    """The runs as Ray tasks (one CPU each, RETRIES retries when a worker dies), written as they finish."""
    from .workers.rayactor import ray_init

    ray = ray_init(address, num_cpus=workers)
    task = ray.remote(num_cpus=1, max_retries=RETRIES)(fn)
    refs = {task.remote(job): job for job in jobs}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            job = refs.pop(ref)
            try:
                row = ray.get(ref)
            except ray.exceptions.RayError as err:  # its worker died RETRIES + 1 times, or the task failed
                row = {**job, "settings": settings_text(job), "status": "failed",
                       "message": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
            write(row)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def summary_html(rows: list[dict], path: Path) -> None:
    """An HTML page: held-out NLL and energy distance by model, one panel per dataset, every seed a point and
    the mean a bar (plotly, its library embedded: the page works offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    datasets = sorted({r["dataset"] for r in rows})
    label = (lambda r: f"{r['model']} {r['settings']}".strip())  # a model under each combination of settings
    groups = sorted({label(r) for r in rows})
    fig = make_subplots(rows=2, cols=len(datasets), subplot_titles=[f"{d}: held-out NLL (nats)" for d in datasets]
                        + [f"{d}: energy distance" for d in datasets], vertical_spacing=0.18)
    for c, d in enumerate(datasets, 1):
        for r_i, metric in enumerate(("test_nll", "energy_distance"), 1):
            for g in groups:
                vals = [_float(r[metric]) for r in rows if r["dataset"] == d and label(r) == g
                        and r.get("status") == "done"]
                vals = [v for v in vals if math.isfinite(v)]
                if not vals:
                    continue
                fig.add_trace(go.Bar(x=[g], y=[sum(vals) / len(vals)], name=g, showlegend=False, opacity=0.5,
                                     marker_color="#4c78a8"), r_i, c)
                fig.add_trace(go.Scatter(x=[g] * len(vals), y=vals, mode="markers", showlegend=False,
                                         marker={"color": "#111", "size": 6}, name=f"{g} (seeds)"), r_i, c)
        truth = [_float(r.get("data_nll")) for r in rows if r["dataset"] == d]
        truth = [v for v in truth if math.isfinite(v)]
        if truth:  # the data's own entropy: no model can score below it on average
            fig.add_hline(y=sum(truth) / len(truth), line_dash="dash", line_color="#c0392b", row=1, col=c,
                          annotation_text="true density", annotation_position="top left")
    fig.update_layout(title="Sweep: mean over seeds (bars) and each seed (points); lower is better",
                      height=760, width=max(700, 380 * len(datasets)), template="plotly_white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def seeds_arg(text: str) -> list[int]:
    """'0-9' or '0,3,5' (or both: '0-2,7')."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def iter_rows(path: Path) -> Iterator[dict]:
    yield from done_rows(path)
