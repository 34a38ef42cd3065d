"""Compare families on the same data: train several models for the same time budget each and
report the same held-out metrics for all of them.

Exact-likelihood models report their held-out NLL (nats per point, data coordinates), EBMs the NLL
of their grid-normalised density, VAEs the NLL of their latent-integrated marginal; GANs have no
density, so only the sample distances (energy distance, MMD) and mode coverage compare across
all families — which is the point the notes make in 6.1: likelihood and sample quality can disagree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from models import REGISTRY, TrainSettings, compare_keys

from .datasets import DataSplit
from .session import Session, first_line


def default_keys() -> list[str]:
    """A comparison's models when none are named: each family's representatives (Model2D.in_compare), in the
    order of the notes."""
    return compare_keys()


@dataclass
class Entry:
    """One model's result in a comparison (plain numbers and numpy)."""

    key: str
    title: str
    family: str
    density: str
    status: str = "waiting"  # waiting | training | done | diverged | failed
    steps: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None
    message: str = ""


def available(keys: list[str]) -> list[str]:
    return [k for k in keys if k in REGISTRY]


def compare(keys: list[str], data: DataSplit, seconds: float = 10.0, seed: int = 0, device: str = "auto",
            n_samples: int = 1000, progress_every: float = 0.5, open_run=None) -> Iterator[list[Entry]]:
    """Train each model for `seconds` of wall time on `data` (each with its own defaults and the
    same seed) and yield the table of entries as it fills in. `open_run` makes each run (Session's arguments):
    a Session here (None: the command line), or a run in a worker (the app's tab: workers.open_session), one model
    after another, so that each has the same share of a core."""
    open_run = open_run or Session
    entries = [Entry(k, REGISTRY[k].title, REGISTRY[k].family, REGISTRY[k].density) for k in keys]
    yield entries
    for e in entries:
        e.status = "training"
        yield entries
        sess = None
        try:
            sess = open_run(e.key, None, data, TrainSettings(seed=seed), device=device, n_samples=n_samples)
            t0 = time.perf_counter()
            for _ in sess.run(max_seconds=seconds, frames=False, heartbeat=progress_every):
                e.steps, e.seconds = sess.step_count, time.perf_counter() - t0
                yield entries
            e.steps, e.seconds = sess.step_count, time.perf_counter() - t0
            e.metrics = sess.evaluate(n_samples=n_samples)
            e.samples = sess.sample_points(n_samples)
            e.status = "diverged" if sess.status == "diverged" else "done"
            e.message = sess.message if sess.status == "diverged" else ""
        except (RuntimeError, ValueError) as err:  # a model that cannot fit this data says why
            e.status, e.message = "failed", first_line(err)
        finally:
            if sess is not None:
                sess.close()  # a worker's run gives its worker back
        yield entries


def nll_estimate(m: dict) -> float | None:
    """How far off a held-out NLL that is an estimate may be (nats), or None when it is exact: a VAE's
    log p(x) by quadrature some of whose points could not be verified (models/latent/vae.py, quad_exact < 1)."""
    if m.get("test_nll") is None or m.get("quad_exact", 1.0) >= 1.0:
        return None
    return float(m.get("quad_error", float("nan")))


def table(entries: list[Entry], data_nll: float | None = None) -> list[dict]:
    """Rows for display and JSON: NLL where the family has a density, distances for all."""
    rows = []
    for e in entries:
        m = e.metrics
        rows.append({"model": e.key, "title": e.title, "family": e.family, "density": e.density,
                     "status": e.status, "steps": e.steps, "seconds": round(e.seconds, 2),
                     "test_nll": m.get("test_nll"), "energy_distance": m.get("energy_distance"),
                     "mmd": m.get("mmd"), "modes_covered": m.get("modes_covered"),
                     "high_quality": m.get("high_quality"), "message": e.message,
                     "nll_estimate": nll_estimate(m), "ode_err": m.get("ode_err")})
    return rows
