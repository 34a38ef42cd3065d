"""`python -m playground bench diffusion`: the diffusion family against Real NVP at the same wall time, and its speed.

For each dataset, each model trains for the same number of seconds (bare training steps, no frames: the clock stops
while the sample distance is checked), then reports its held-out NLL in nats on every held-out point (the diffusion
models' by the probability-flow ODE, with how far halving its steps moves it), the true density's, and the energy
distance of 1,000 samples to held-out data. ``seconds_to_recognisable`` is the training time after which the energy
distance of 500 samples first fell below RECOGNISABLE (checked every CHECK_EVERY seconds of training).

Speed, per diffusion model: sampling 1,000 points in 50 steps with each of its samplers, and the NLL of 1,000
held-out points by the ODE at its configured steps (the median of a few repeats).
"""

from __future__ import annotations

import statistics
import time

import torch

from models import TrainSettings

from . import metrics
from .datasets import make_split
from .session import Session

DIFFUSION = ("ddpm", "score_sde", "flow_matching")
REFERENCE = "realnvp"
DATASETS = ("8gaussians", "moons", "banana", "checkerboard")
RECOGNISABLE = 0.01  # energy distance (data units) below which samples look like the data on these sets
CHECK_EVERY = 0.5


def _train(key: str, data, seconds: float, seed: int) -> dict:
    settings = TrainSettings.make(seed=seed, batch=256, lr=3e-3)
    sess = Session(key, {}, data, settings)
    test = torch.as_tensor(data.test)
    gen = torch.Generator().manual_seed(seed)
    clock, recognisable, next_check = 0.0, None, CHECK_EVERY
    while clock < seconds:
        t0 = time.perf_counter()
        sess.train_steps(20)
        clock += time.perf_counter() - t0
        if recognisable is None and clock >= next_check:
            next_check += CHECK_EVERY
            with torch.no_grad():
                model = sess.model
                s = (model.sample_with(500, model.cfg.sampler, model.sample_steps(), gen)
                     if hasattr(model, "sample_with") else model.sample(500))
            if metrics.energy_distance(s, test[:1000]) < RECOGNISABLE:
                recognisable = clock
    ev = sess.evaluate(n_samples=1000)
    out = {"model": key, "steps": sess.step_count, "seconds": round(clock, 2), "test_nll": ev.get("test_nll"),
           "energy_distance": ev.get("energy_distance"), "seconds_to_recognisable": recognisable}
    if "ode_err" in ev:
        out["ode_err"] = ev["ode_err"]
    out["_session"] = sess
    return out


def _median_time(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _speed(sess: Session, test: torch.Tensor) -> dict:
    m = sess.model
    gen = torch.Generator().manual_seed(0)
    out = {f"sample_1000_50_steps_{s}": round(_median_time(lambda s=s: m.sample_with(1000, s, 50, gen)), 4)
           for s in m.samplers}
    x = test[:1000]
    if len(x) < 1000:
        x = x.repeat((1000 + len(x) - 1) // len(x), 1)[:1000]
    out["nll_1000_points"] = round(_median_time(lambda: m.log_prob(x)), 4)
    out["ode_steps"] = m.cfg.ode_steps
    return out


def bench_diffusion(datasets=DATASETS, seconds: float = 10.0, n: int = 10000, seed: int = 0,
                    models=DIFFUSION + (REFERENCE,)) -> dict:
    """The table of the module docstring, as a dict: {"rows": [...], "speed": {model: {...}}, "seconds": s}."""
    rows, speed = [], {}
    for name in datasets:
        data = make_split(name, n, seed=seed)
        true = float(-data.log_prob(data.test).mean()) if data.log_prob is not None else None
        for key in models:
            r = _train(key, data, seconds, seed)
            sess = r.pop("_session")
            r.update(dataset=name, true_nll=true)
            rows.append(r)
            if key in DIFFUSION and key not in speed:
                speed[key] = _speed(sess, torch.as_tensor(data.test))
            sess.close()
    return {"rows": rows, "speed": speed, "seconds": seconds, "n": n, "threads": torch.get_num_threads()}


def print_diffusion(res: dict) -> None:
    print(f"Held-out NLL (nats) after {res['seconds']:g} s of training each, {res['n']:,} points "
          f"(20% held out), {res['threads']} thread(s):")
    print(f"  {'dataset':<13}{'model':<15}{'steps':>7}{'NLL':>9}{'ODE ±':>9}{'true':>8}{'energy d.':>11}"
          f"{'recognisable':>14}")
    for r in res["rows"]:
        err = f"{r['ode_err']:.0e}" if r.get("ode_err") is not None else "exact"
        rec = f"{r['seconds_to_recognisable']:.1f} s" if r["seconds_to_recognisable"] is not None else "—"
        true = f"{r['true_nll']:.3f}" if r["true_nll"] is not None else "—"
        print(f"  {r['dataset']:<13}{r['model']:<15}{r['steps']:>7}{r['test_nll']:>9.3f}{err:>9}{true:>8}"
              f"{r['energy_distance']:>11.4f}{rec:>14}")
    print("Speed (median of 3):")
    for key, s in res["speed"].items():
        samp = ", ".join(f"{k.rsplit('_', 1)[-1]} {v:.3f} s" for k, v in s.items() if k.startswith("sample_"))
        print(f"  {key:<14} 1,000 samples in 50 steps: {samp}; NLL of 1,000 points ({s['ode_steps']} RK4 steps): "
              f"{s['nll_1000_points']:.3f} s")
