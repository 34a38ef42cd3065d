"""`python -m playground bench`: the same training run timed bare and inside the live session.

Bare: Session.train_steps(N) with no frames. Live: Session.run(max_steps=N) with every frame
rendered to figures and encoded to JSON exactly as the app sends them (views.render + to_json).
The two alternate `repeats` times in one process and the median ratio live/bare is reported,
so a noisy shared machine affects both sides alike. Target: ratio >= 0.95.
"""

from __future__ import annotations

import statistics
import time

import torch

from . import plots, views
from .datasets import DataSplit
from .session import Session, configure_threads

# model key -> function(cfg, data, settings, seconds, device) -> {name: figure}; see flows for an example
REFERENCES: dict = {}


def _bare(key, cfg, data, settings, device, steps=None, seconds=None) -> tuple[int, float]:
    sess = Session(key, cfg, data, settings, device=device)
    sess.train_steps(20)  # warm-up: first calls allocate and dispatch slowly
    t0 = time.perf_counter()
    if steps is None:
        n = 0
        while time.perf_counter() - t0 < seconds:
            sess.train_steps(10)
            n += 10
        steps = n
    else:
        sess.train_steps(steps)
    if sess.device.type == "cuda":
        torch.cuda.synchronize()
    return steps, time.perf_counter() - t0


def _live(key, cfg, data, settings, device, steps) -> tuple[float, int]:
    sess = Session(key, cfg, data, settings, device=device)
    sess.train_steps(20)
    for fig in views.render(sess.snapshot()).values():  # warm-up of the frame path (first calls are slow)
        plots.to_json(fig)
    sess.history = type(sess.history)()
    frames = 0
    t0 = time.perf_counter()
    for snap in sess.run(max_steps=steps):
        for fig in views.render(snap).values():
            plots.to_json(fig)
        frames += 1
    if sess.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, frames


def bench(key: str, cfg: dict, data: DataSplit, settings, seconds: float = 4.0, repeats: int = 3,
          device: str = "auto") -> dict:
    threads = configure_threads()
    ratios, bare_rates, live_rates, fps = [], [], [], []
    steps = None
    for _ in range(max(1, repeats)):
        steps, t_bare = _bare(key, cfg, data, settings, device, steps=steps, seconds=seconds)
        t_live, frames = _live(key, cfg, data, settings, device, steps)
        bare_rates.append(steps / t_bare)
        live_rates.append(steps / t_live)
        fps.append(frames / t_live)
        ratios.append(t_bare / t_live)
    res = {"model": key, "dataset": data.name, "device": str(Session(key, cfg, data, settings, device=device).device),
           "threads": threads, "steps": steps, "repeats": len(ratios),
           "bare_steps_per_second": round(statistics.median(bare_rates), 2),
           "live_steps_per_second": round(statistics.median(live_rates), 2),
           "frames_per_second": round(statistics.median(fps), 2),
           "ratio": round(statistics.median(ratios), 4), "ratios": [round(r, 4) for r in ratios]}
    if key in REFERENCES:
        res["references"] = REFERENCES[key](cfg, data, settings, seconds, device)
    return res
