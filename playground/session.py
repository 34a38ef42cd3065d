"""A training session: one model, its optimisers, a data split, the step count and the history.

``Session.run()`` trains as fast as it can and yields a :class:`Snapshot` (plain numpy, no torch;
defined in playground/snapshot.py and re-exported here) about every 0.25 s of elapsed time, so fast
models are not slowed by drawing and slow models still animate. Sessions hold no global state: a web
visitor owns one in gr.State.

Divergence (the rule the session and the command line share). A run has diverged when

* a step's loss term is NaN or infinite, or beyond ±EXPLODED (1e10, in nats or the loss's own units:
  no model of this playground still learns there; NICE at the largest learning rate goes 4.2 -> 1.9e11
  -> 1.5e33 nats in its first three steps), or a closed-form update fails; or
* a held-out evaluation finds the model's samples non-finite (the energy distance or MMD is not finite),
  a NaN NLL or grid log Z, or a finite NLL beyond ±EXPLODED nats, or more than NLL_MARGIN (1,000) nats above
  the NLL of a Gaussian fitted to the training points (an EBM trained by score matching at learning rate 0.3
  reached 4,900 nats on moons in 2,000 steps, where that Gaussian gives 3.3: a density collapsed onto a few
  spikes, finite but no model). (A held-out NLL of +inf alone is not divergence: an autoregressive model
  puts zero density outside its box.)

It stops the run and keeps the last good model. A bad loss at step t was computed from the parameters
after step t - 1, so the run goes back to step t - 2, the last parameters whose own loss was fine: from
the newest of two checkpoints at or before it (taken at most every CHECKPOINT_INTERVAL, with a frame,
together with every random generator's state) it replays the steps in between, checking that each
replayed loss equals the logged one bit for bit; if one differs (a setting changed since), it stays at
the checkpoint. Replay costs nothing while training goes well. A bad evaluation goes back to the newest
checkpoint whose evaluation is sound.
"""

from __future__ import annotations

import atexit
import copy
import math
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from models import REGISTRY, ConfigError, TrainSettings, build

from . import metrics
from .datasets import DataError, DataSplit
from .snapshot import Snapshot, make_probe

__all__ = ["History", "Session", "Snapshot", "configure_threads", "device_label", "resolve_device"]

# frames (snapshot + rendering + encoding) take at most this share of the time while a page watches; beyond it
# they are spaced out. Held-out evaluations have their own, smaller share (MAX_EVAL_SHARE). A run nobody
# watches (the command line, an API client) makes no frames at all.
MAX_FRAME_SHARE = 0.10
MIN_FRAME_INTERVAL = 1 / 12  # at most 12 frames a second, however fast the page draws
MAX_FRAME_GAP = 1.0  # and at least one a second, however costly a frame
CHECKPOINT_INTERVAL = 0.5  # seconds between two copies of the last good parameters (taken with a frame)
EVAL_INTERVAL = 1.0  # held-out metrics (NLL, sample distance...) at most once a second while running
MAX_EVAL_SHARE = 0.02  # ... and taking at most this share of the time (frames have their own budget)
LIVE_GRID_SECONDS = 0.004  # the density grid of a frame while running costs about this much (see _fit_live_grid)
MIN_LIVE_RES, MAX_LIVE_RES = 40, 80  # 80 x 80 smoothed by the browser looks as 100 x 100, at 64% of the bytes
EXPLODED = 1e10  # a loss term or an NLL beyond this magnitude counts as diverged (see the module docstring)
NLL_MARGIN = 1000.0  # ... and an NLL this far above a Gaussian fit's (nats per point)


def first_line(err: BaseException, limit: int = 200) -> str:
    """An error's first line for a one-line message: cut at a word boundary, with an ellipsis, when it is
    longer than `limit` characters (torch's messages can run to several hundred)."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].strip() or type(err).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else text[:limit]) + "…"


def bad_term(terms: dict[str, float]) -> str | None:
    """Why a step's loss terms say the run diverged (NaN, infinite or beyond ±EXPLODED), or None."""
    for k, v in terms.items():
        if not math.isfinite(v):
            return f"the {k} became {v}"
        if abs(v) > EXPLODED:
            return f"the {k} reached {v:.3g} (beyond ±{EXPLODED:.0e}: exploded)"
    return None


def bad_evaluation(values: dict[str, float], nll_limit: float = EXPLODED) -> str | None:
    """Why held-out metrics say the model diverged, or None: non-finite samples (their energy distance or MMD
    is not finite: the test points are), a NaN NLL or grid log Z, a finite NLL beyond ±EXPLODED nats, or one
    above `nll_limit` (a Session's: NLL_MARGIN above a Gaussian fit's)."""
    for k in ("energy_distance", "mmd"):
        if k in values and not math.isfinite(values[k]):
            return "the model's samples are no longer finite"
    if "log_z_grid" in values and not math.isfinite(values["log_z_grid"]):
        return f"the grid's log Z became {values['log_z_grid']}"
    for k in ("train_nll", "test_nll"):
        v = values.get(k)
        if v is not None and (math.isnan(v) or (math.isfinite(v) and abs(v) > EXPLODED)):
            return f"the {k.replace('_nll', '')} NLL reached {v:.3g} nats (exploded)"
        if v is not None and math.isfinite(v) and v > nll_limit:
            return (f"the {k.replace('_nll', '')} NLL reached {v:.3g} nats, over {NLL_MARGIN:.0f} above a "
                    "Gaussian fit's (exploded)")
    return None


# Sessions inside run() or train_steps(): at interpreter exit (Ctrl-C on the app) they are stopped and waited
# for. A daemon thread still inside a torch op when the interpreter finalises is killed as it retakes the GIL
# (pthread_exit unwinding through C++ frames), and the process aborts with "terminate called without an active
# exception" (pytorch/pytorch#38228).
_RUNNING: weakref.WeakSet = weakref.WeakSet()
_RUNNING_LOCK = threading.Lock()


def stop_all(timeout: float = 5.0) -> int:
    """Ask every running session to stop for good and wait (up to `timeout` in all) until none is inside torch
    code: a run in a step finishes it and returns without a final frame; a run parked at a frame returns when
    resumed. Returns how many were running. Registered with atexit: the app's Ctrl-C ends without an abort."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for sess in running:
        sess._exiting = True  # a run parked at a frame returns when resumed, without touching torch again
        sess.request_stop()
    deadline = time.monotonic() + timeout
    for sess in running:
        sess.wait_idle(max(0.0, deadline - time.monotonic()))
    # a thread that ends while the interpreter finalises can abort the same way (torch's thread-local state is
    # torn down as statics are): give the threads that ran them a moment to end (a pool's worker, which parks
    # instead, costs this wait once)
    grace = min(0.5, max(0.0, deadline - time.monotonic()))
    for thread in {s._thread for s in running if s._thread is not None}:
        if thread is not threading.current_thread() and thread.is_alive():
            thread.join(grace)
            grace = max(0.0, grace - 0.1)
    return len(running)


atexit.register(stop_all)


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA when available, else the CPU; "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device '{device}' (auto, cpu or cuda)")
    return torch.device(device)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})"


def warm_up() -> None:
    """Pay torch's one-off costs at start-up rather than on the first visitor's Train: the first optimizer
    imports torch._dynamo (1.4 s here)."""
    from models.base import make_adam

    make_adam([torch.zeros(1, requires_grad=True)], 1e-3)


def configure_threads() -> int:
    """One intra-op thread by default: tiny models gain little from two, and lose 4-6x when the
    cores are shared with the web server or another visitor (../shared/PERFORMANCE.md).
    PLAYGROUND_THREADS overrides."""
    n = int(os.environ.get("PLAYGROUND_THREADS", "1"))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


class History:
    """Per-step training terms (a growing numpy buffer) and per-frame evaluation metrics."""

    def __init__(self):
        self.step_terms: dict[str, np.ndarray] = {}
        self.n = 0
        self.evals: dict[str, tuple[list[int], list[float]]] = {}

    def log_step(self, terms: dict[str, float]) -> None:
        if self.n == 0 or any(k not in self.step_terms for k in terms):
            for k in terms:
                self.step_terms.setdefault(k, np.full(max(1024, self.n * 2), np.nan, np.float32))
        cap = len(next(iter(self.step_terms.values()))) if self.step_terms else 0
        if self.n >= cap:
            for k, buf in self.step_terms.items():
                grown = np.full(cap * 2, np.nan, np.float32)
                grown[:cap] = buf
                self.step_terms[k] = grown
        for k, v in terms.items():
            self.step_terms[k][self.n] = v
        self.n += 1

    def truncate(self, n: int) -> None:
        """Forget every step after the first n (a rollback) and every evaluation after step n."""
        n = max(0, min(int(n), self.n))
        for buf in self.step_terms.values():
            buf[n:] = np.nan
        self.n = n
        for steps, vals in self.evals.values():
            keep = sum(1 for st in steps if st <= n)
            del steps[keep:], vals[keep:]

    def log_eval(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            if v is None:
                continue
            steps, vals = self.evals.setdefault(k, ([], []))
            steps.append(step)
            vals.append(float(v))

    def curves(self, max_points: int = 600) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """All series as (steps, values) with at most max_points each, decimated so that from one frame
        to the next a series changes only at its end (the browser is sent just the changed tail).

        Per-step terms: means of bins of b steps, b the smallest power of two that fits, at the bins'
        centre steps. A full bin never changes until b doubles; the last, partial bin is the tail.
        Per-frame evaluations: every b-th point (b again a power of two) and always the last one."""
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        n = self.n
        b = pow2_bin(n, max_points)
        full = n // b
        for k, buf in self.step_terms.items():
            v = buf[:n]
            if b == 1:
                out[k] = (np.arange(1, n + 1, dtype=np.float32), v.astype(np.float32))
                continue
            with warnings.catch_warnings():  # a term logged on some steps only (GANs' r1): a bin without
                warnings.simplefilter("ignore", RuntimeWarning)  # one is NaN, a gap in its curve
                vals = np.nanmean(v[: full * b].reshape(full, b), 1)
                steps = np.arange(full) * b + (b + 1) / 2
                if n > full * b:  # the partial last bin
                    vals = np.append(vals, np.nanmean(v[full * b:]))
                    steps = np.append(steps, (full * b + 1 + n) / 2)
            out[k] = (steps.astype(np.float32), vals.astype(np.float32))
        for k, (s, v) in self.evals.items():
            s_arr, v_arr = np.asarray(s, np.float32), np.asarray(v, np.float32)
            if len(s_arr) > max_points:
                last = len(s_arr) - 1
                idx = np.append(np.arange(0, last, pow2_bin(last, max_points - 1)), last)
                s_arr, v_arr = s_arr[idx], v_arr[idx]
            out[k] = (s_arr, v_arr)
        return out


def pow2_bin(n: int, max_points: int) -> int:
    """The smallest power of two b with ceil(n / b) <= max_points (max_points >= 1)."""
    b = 1
    while -(-n // b) > max_points:
        b *= 2
    return b



def _copy_into(tree: Any, prev: Any) -> Any:
    """A detached copy of a (nested dict / list of) tensors, written into `prev`'s tensors where
    they match in shape, dtype and device (so repeated checkpoints allocate nothing)."""
    if isinstance(tree, torch.Tensor):
        if (isinstance(prev, torch.Tensor) and prev.shape == tree.shape and prev.dtype == tree.dtype
                and prev.device == tree.device):
            return prev.copy_(tree.detach())
        return tree.detach().clone()
    if isinstance(tree, dict):
        prev = prev if isinstance(prev, dict) else {}
        out = type(tree)() if type(tree) is not dict else {}
        for k, v in tree.items():
            out[k] = _copy_into(v, prev.get(k))
        return out
    if isinstance(tree, (list, tuple)):
        prev = prev if isinstance(prev, (list, tuple)) and len(prev) == len(tree) else [None] * len(tree)
        return type(tree)(_copy_into(v, q) for v, q in zip(tree, prev))
    return copy.deepcopy(tree)


class Session:
    """One training run of one model on one data split.

    Args:
        model_key: a key of models.REGISTRY.
        config: the model's hyperparameters (dict or its Config).
        data: the train / held-out split.
        settings: learning rate, batch size and seed.
        device: "auto", "cpu" or "cuda".
        grid_res: the density grid is grid_res x grid_res over the data's box.
        n_show: at most this many data points are drawn; n_samples model samples per frame (the sample
            distance of the curves uses 500 of them).
    """

    def __init__(self, model_key: str, config: dict | None, data: DataSplit,
                 settings: TrainSettings | None = None, device: str = "auto", grid_res: int = 100,
                 n_show: int = 1000, n_samples: int = 600):
        if model_key not in REGISTRY:
            raise KeyError(f"unknown model '{model_key}'")
        self.settings = settings or TrainSettings()
        self.data = data
        self.device = resolve_device(device)
        self.grid_res, self.n_show, self.n_samples = int(grid_res), int(n_show), int(n_samples)
        torch.manual_seed(self.settings.seed)
        self.gen = torch.Generator(device=self.device).manual_seed(self.settings.seed)
        cfg = config if config is not None else {}
        self.model = build(model_key, **(cfg if isinstance(cfg, dict) else cfg.as_dict()))
        self.model.to(self.device)
        self.train_x = torch.as_tensor(data.train, device=self.device)
        self.test_x = torch.as_tensor(data.test, device=self.device)
        from models.targets import dataset_log_prob

        target = dataset_log_prob(data.name, data.info["noise"]) if data.log_prob is not None and \
            "noise" in data.info else None
        self.model.use_target(target, data.name)
        try:
            self.model.init_from_data(self.train_x)
        except ConfigError:  # a setting the data cannot serve (e.g. fit to target without a density): the tab says so
            raise
        except (RuntimeError, ValueError) as err:  # a model that cannot start from these points: one line, no trace
            raise DataError(f"{model_key} could not be initialised on these points "
                            f"({first_line(err)}); try standardising them") from None
        self.optimizers = self.model.configure_optimizers(self.settings)
        self.step_count = 0
        self.history = History()
        self._say("idle", "ready: press Train")
        self._stop = False
        self._exiting = False  # set by stop_all at interpreter exit
        self._thread: threading.Thread | None = None  # the thread of the current (or last) run
        self._idle = threading.Event()
        self._left = threading.Event()  # set when run() has taken its last step
        self._idle.set()
        self._phase = 0  # position within a step's named sub-steps (EM: E, then M)
        self._phase_batch: torch.Tensor | None = None
        self._slots: list[dict] = []  # the two newest checkpoints, oldest first (see _checkpoint)
        self._live_change = 0  # the step of the last live change of a setting (a replay must not cross it)
        self._train_time = 0.0
        self._rate = 0.0
        self._evals: dict[str, float] = {}  # the last held-out metrics (see snapshot)
        self._next_eval = -math.inf
        self.last_eval_cpu = 0.0
        self.last_snapshot_cpu = 0.0
        self._checkpoint()
        xs, ys, pts = metrics.make_grid(data.box, self.grid_res)
        self.grid_x, self.grid_y = xs, ys
        self.grid = torch.as_tensor(pts, device=self.device)
        self._grids: dict[int, tuple] = {self.grid_res: (xs, ys, self.grid, metrics.cell_area(xs, ys))}
        self.live_res = self.grid_res  # the grid of frames while running (see _grid_for)
        self.cell_area = metrics.cell_area(xs, ys)
        self._test_sub = data.test[:500]
        self.data_nll = (float(-np.mean(data.log_prob(data.test))) if data.log_prob is not None else None)
        limit = metrics.gaussian_nll(data.train, data.test) + NLL_MARGIN  # beyond it a run has exploded
        self.nll_limit = limit if math.isfinite(limit) else EXPLODED

    # --- properties ---------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self.model.key

    def set_live(self, name: str, value: Any) -> None:
        """Change a live setting (learning rate, batch size, or a model's live hyperparameter)
        while the run goes on."""
        if name in ("lr", "batch"):
            value = TrainSettings.coerce(name, value)
            if getattr(self.settings, name) != value:
                self._live_change = self.step_count
            setattr(self.settings, name, value)
            if name == "batch":
                return
        elif getattr(self.model.cfg, name, None) != value:
            self._live_change = self.step_count
        self.model.live_update(name, value, self.optimizers)

    def progress(self) -> dict[str, Any]:
        """Where the run is, without building a frame: status, step, speed and the last step's terms."""
        h = self.history
        latest = {k: float(buf[h.n - 1]) for k, buf in h.step_terms.items()} if h.n else {}
        return {"status": self.status, "step": self.step_count, "message": self.message, "model": self.key,
                "dataset": self.data.name, "steps_per_sec": round(float(self._rate), 2),
                "latest": {**{k: v for k, v in self._evals.items() if math.isfinite(v)},
                           **{k: v for k, v in latest.items() if math.isfinite(v)}}}

    def request_stop(self) -> None:
        self._stop = True

    def _say(self, status: str, message: str, event: str = "") -> None:
        """Set the run's status, its one-line message and what produced it (Snapshot.event: "substep",
        "action" or "")."""
        self.status, self.message, self.event = status, message, event

    def wait_left(self, timeout: float) -> bool:
        """Wait until run() has taken its last step (True) or timeout (False)."""
        return self._left.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run() loop is inside a training step (True) or timeout (False)."""
        return self._idle.wait(timeout)

    # --- training -----------------------------------------------------------------------------
    def _batch(self) -> torch.Tensor:
        n = self.train_x.shape[0]
        full = self.settings.batch >= n
        self.model.full_batch = full
        if full:
            return self.train_x
        idx = torch.randint(0, n, (self.settings.batch,), device=self.device, generator=self.gen)
        return self.train_x[idx]

    def _generators(self) -> list[tuple[str, torch.Generator]]:
        """Every random generator a step may draw from: torch's global one (models draw their noise from it),
        the session's (batches), and the model's own (attributes, or dicts of them, of any submodule)."""
        gens = [("session", self.gen)]
        for mod_name, mod in self.model.named_modules():
            for attr, v in vars(mod).items():
                if isinstance(v, torch.Generator):
                    gens.append((f"{mod_name}.{attr}", v))
                elif isinstance(v, dict):
                    gens += [(f"{mod_name}.{attr}[{k}]", g) for k, g in v.items() if isinstance(g, torch.Generator)]
        return gens

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        state.update({name: g.get_state() for name, g in self._generators()})
        return state

    def _set_rng_state(self, state: dict) -> bool:
        """Put every generator back; False when one exists now that the checkpoint did not know (a replay
        would draw differently)."""
        torch.set_rng_state(state["torch"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], self.device)
        complete = True
        for name, g in self._generators():
            if name in state:
                g.set_state(state[name])
            else:
                complete = False
        return complete

    def _checkpoint(self) -> None:
        """Keep the current parameters, optimizer states and random generators' states as a good checkpoint.
        Two are kept, the older one refreshed in place (a deepcopy per frame cost several ms for a flow with a
        few hundred small tensors; copying into kept buffers costs well under one), so a rollback can reach
        back before the newest (see _restore)."""
        slot = self._slots.pop(0) if len(self._slots) == 2 else {"state": None, "opts": {}}
        slot["state"] = _copy_into(self.model.state_dict(), slot["state"])
        slot["opts"] = {k: _copy_into(o.state_dict(), slot["opts"].get(k)) for k, o in self.optimizers.items()}
        slot["rng"] = self._rng_state()
        slot["step"] = self.step_count
        self._slots.append(slot)

    @property
    def _good_step(self) -> int:
        return self._slots[-1]["step"]

    def _params_finite(self) -> bool:
        """All parameters finite: one reduction over their norms instead of two ops per tensor."""
        params = [p for p in self.model.parameters() if p.numel()]
        if not params:
            return True
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all())

    def _load(self, slot: dict) -> bool:
        """Load a checkpoint (parameters, optimizer states, generators); False if a generator is new since."""
        self.model.load_state_dict(slot["state"])
        for k, o in self.optimizers.items():
            live = [{h: v for h, v in g.items() if h != "params"} for g in o.param_groups]
            # fresh copies: torch's load_state_dict may adopt the tensors it is given as the live state,
            # which would let later steps overwrite the kept checkpoint in place
            o.load_state_dict(_copy_into(slot["opts"][k], None))
            for g, hyper in zip(o.param_groups, live):  # keep the rates set since (the slider shows them)
                g.update(hyper)
        self.step_count = slot["step"]
        self._phase, self._phase_batch = 0, None
        return self._set_rng_state(slot["rng"])

    def _replay(self, slot: dict, target: int) -> int:
        """From checkpoint `slot` (just loaded), take the steps up to `target` again, each checked against the
        logged loss terms (float32, bit for bit). Returns the step reached: `target`, or the checkpoint's step
        (reloaded) when a replayed step differs from the logged one."""
        h = self.history
        for i in range(slot["step"], target):
            try:
                terms = self.model.step(self._batch(), self.optimizers)
            except (RuntimeError, ValueError):
                terms = None
            same = terms is not None and i < h.n and all(
                k in h.step_terms and np.float32(v).tobytes() == h.step_terms[k][i].tobytes()
                for k, v in terms.items())
            if not same:
                self._load(slot)
                return slot["step"]
            self.step_count += 1
        return target

    def _restore(self, why: str, target: int | None = None) -> None:
        """Stop the run as diverged and go back to step `target` (default: the newest checkpoint), the
        newest checkpoint at or before it, replayed forward when possible (see the module docstring)."""
        fits = [sl for sl in self._slots if target is None or sl["step"] <= target] or self._slots[:1]
        slot = fits[-1]
        failed_at = self.step_count + 1
        complete = self._load(slot)
        reached = slot["step"]
        if target is not None and target > reached and complete and self._live_change <= reached:
            reached = self._replay(slot, target)
        self.history.truncate(reached)
        how = (f" (replayed from the checkpoint of step {slot['step']})" if reached > slot["step"] else
               "" if target is None or target <= reached else f" (the checkpoint before it; step {target} could "
               "not be replayed exactly)")
        self.status, self.event = "diverged", ""
        self.message = (f"stopped at step {failed_at}: {why}. Restored the parameters of step {reached}, the last "
                        f"known good ones{how}; try a lower learning rate.")

    def _one_step(self) -> bool:
        """One training step; False (after restoring the last good parameters) on failure."""
        try:
            terms = self.model.step(self._batch(), self.optimizers)
        except (RuntimeError, ValueError) as err:  # e.g. a covariance that is no longer PD
            # the parameters before this update are the last good ones (it may have half-written them)
            self._restore(f"the update failed ({first_line(err)})", target=self.step_count)
            return False
        why = bad_term(terms)
        if why:
            # this step's loss came from the parameters after the previous step: go back one more
            self._restore(why, target=max(self.step_count - 1, 0))
            return False
        self.step_count += 1
        self.history.log_step(terms)
        return True

    def check_evaluation(self, values: dict[str, float]) -> bool:
        """True if held-out metrics (evaluate()'s or a frame's) are sound. Otherwise the run has diverged
        (see bad_evaluation): go back to the newest checkpoint whose own evaluation is sound (or the oldest
        kept), set status "diverged" with the reason, and return False."""
        why = bad_evaluation(values, self.nll_limit)
        if why is None:
            return True
        failed_at, sound = self.step_count, False
        for slot in reversed(self._slots):
            self._load(slot)
            with torch.no_grad():
                samples = self.model.sample(500).detach().float().cpu().numpy()
            if bad_evaluation(self._frame_metrics(samples, None), self.nll_limit) is None:
                sound = True
                break
        self.history.truncate(self.step_count)
        self._evals = {}
        self.status, self.event = "diverged", ""
        self.message = (f"stopped at step {failed_at}: {why}. Restored the parameters of step {self.step_count}, "
                        + ("the last known good ones; try a lower learning rate." if sound else
                           "the oldest kept, but they look exploded too: press Reset and lower the learning rate."))
        return False

    def train_steps(self, n: int, checkpoint_every: float = 1.0) -> bool:
        """n steps without frames (the command line); False if training diverged. request_stop() (Ctrl-C
        on the command line) ends it early, with status "stopped"."""
        t0 = last = time.perf_counter()
        self.status = "running"
        self._stop = False
        self._thread = threading.current_thread()
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._idle.clear()
        try:
            for _ in range(int(n)):
                if self._stop:
                    self._say("stopped", f"stopped at step {self.step_count}")
                    return True
                if not self._one_step():
                    return False
                now = time.perf_counter()
                if now - last > checkpoint_every and self._params_finite():
                    self._checkpoint()
                    last = now
            self._say("done", f"trained {self.step_count} steps")
            return True
        finally:
            self._train_time += time.perf_counter() - t0
            self._idle.set()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)

    def run(self, max_steps: int | None = None, max_seconds: float | None = None,
            frame_interval: float = MIN_FRAME_INTERVAL, frames: bool = True,
            want_frame: Callable[[], bool] | None = None, frame_cost: Callable[[], float] | None = None,
            heartbeat: float | None = None, stop_when: Callable[[], bool] | None = None,
            ) -> Iterator[Snapshot | None]:
        """Train until stopped (or max_steps / max_seconds) and yield a Snapshot whenever a frame is due:

        * the consumer wants one (``want_frame()``: the page is waiting for a frame; default: always),
        * at least ``frame_interval`` after the previous one, and
        * spaced so that frames cost at most MAX_FRAME_SHARE of the time (a moving average of the CPU time of
          the snapshot itself plus ``frame_cost()``, what drawing it costs elsewhere: the channel's
          rendering and encoding), but never more than MAX_FRAME_GAP apart.

        The first frame comes before the first step (a page shows the run at once), the last when the
        loop ends. With ``heartbeat``, None is yielded at least that often between frames (a caller's
        chance to react). ``stop_when()`` true stops the run as Stop does (its page is gone). Training
        never waits for a frame."""
        self._stop = False
        self._idle.clear()
        self._left.clear()
        self._thread = threading.current_thread()
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._say("running", "training")
        target = None if max_steps is None else self.step_count + int(max_steps)
        t_start = time.perf_counter()
        interval = frame_interval
        last_frame = last_beat = t_start - interval
        frames_made, avg_cost = 0, None
        last_checkpoint = t_start
        steps_at_start = self.step_count
        try:
            while not self._stop:
                if target is not None and self.step_count >= target:
                    break
                if stop_when is not None and stop_when():
                    self._stop = True
                    break
                now = time.perf_counter()
                if max_seconds is not None and now - t_start >= max_seconds:
                    break
                if frames and now - last_frame >= interval and (want_frame is None or want_frame()):
                    self._rate = (self.step_count - steps_at_start) / max(now - t_start, 1e-9)
                    cpu = time.thread_time()
                    if (self.step_count > steps_at_start and now - last_checkpoint >= CHECKPOINT_INTERVAL
                            and self._params_finite()):
                        self._checkpoint()  # the frame's cost includes the checkpoint taken with it
                        last_checkpoint = now
                    snap = self.snapshot()
                    if self._evaluated and not self.check_evaluation(self._evals):
                        self._left.set()
                        snap = self.snapshot(evaluate=True)
                        self._idle.set()
                        yield snap
                        return
                    # the CPU this thread spent on the frame (checkpoint + snapshot): on a busy machine the
                    # wall time of a frame and of training steps stretch alike, their CPU shares do not
                    built = time.thread_time() - cpu - self.last_eval_cpu  # evaluations have their own budget
                    self._idle.set()  # suspended at a yield, the model is not being touched
                    yield snap
                    if self._exiting:  # the interpreter is exiting (stop_all): no more torch work
                        return
                    self._idle.clear()
                    last_frame, last_beat = now, time.perf_counter()  # the interval runs from the frame's start
                    cost = built + (frame_cost() if frame_cost is not None else 0.0)
                    frames_made += 1
                    if frames_made > 1:  # the first frame pays for warm-ups: it says little about the rest
                        avg_cost = cost if avg_cost is None else 0.7 * avg_cost + 0.3 * cost
                        interval = min(max(frame_interval, avg_cost / MAX_FRAME_SHARE), MAX_FRAME_GAP)
                elif heartbeat is not None and now - last_beat >= heartbeat:
                    self._rate = (self.step_count - steps_at_start) / max(now - t_start, 1e-9)
                    self._idle.set()
                    yield None
                    if self._exiting:
                        return
                    self._idle.clear()
                    last_beat = time.perf_counter()
                if not self._one_step():
                    self._left.set()
                    snap = self.snapshot(evaluate=True)
                    self._idle.set()
                    yield snap
                    return
            elapsed = time.perf_counter() - t_start
            self._rate = (self.step_count - steps_at_start) / max(elapsed, 1e-9)
            self._train_time += elapsed
            if self._exiting:  # no final frame: its evaluation would still be running as the interpreter exits
                return
            if self._stop:
                self._say("stopped", f"stopped at step {self.step_count}")
            else:
                self._say("done", f"finished at step {self.step_count}")
            self._left.set()  # no more steps: the final frame (full grid, fresh metrics) comes next
            snap = self.snapshot(evaluate=True)
            if not self.check_evaluation(self._evals):
                snap = self.snapshot(evaluate=True)
            self._idle.set()
            yield snap
        finally:
            self._idle.set()
            self._left.set()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            if self.status == "running":
                self._say("stopped", f"stopped at step {self.step_count}")

    def single_step(self) -> Snapshot:
        """One step, or one named sub-step (EM: E-step, then M-step) when the model has them."""
        names = tuple(self.model.substep_names)
        if not names:
            ok = self._one_step()
            if ok:
                self._say("stopped", f"took one step (step {self.step_count})")
            return self.snapshot()
        if self._phase == 0 or self._phase_batch is None:
            self._phase_batch = self._batch()
        try:
            terms = self.model.substep(self._phase_batch, self._phase, self.optimizers)
        except (RuntimeError, ValueError) as err:
            self._restore(f"the update failed ({first_line(err)})", target=self.step_count)
            return self.snapshot()
        done = names[self._phase]
        self._phase = (self._phase + 1) % len(names)
        if self._phase == 0:
            self.step_count += 1
            self.history.log_step(terms)
            self._phase_batch = None
            nxt = f"next: {names[0]} of step {self.step_count + 1}"
        else:
            nxt = f"next: {names[self._phase]}"
        self._say("stopped", f"{done} done ({nxt})", event="substep")
        return self.snapshot()

    def apply(self, fn, label: str, counts_as_step: bool = False) -> Snapshot:
        """Run fn(model, batch, optimizers) -> loss terms once, with the same protection as a
        training step (a non-finite term or a failed update restores the last good parameters).
        For a tab's own buttons, e.g. the GAN tab's "one D step" / "one G step"."""
        self._checkpoint()
        try:
            terms = fn(self.model, self._batch(), self.optimizers) or {}
        except (RuntimeError, ValueError) as err:
            self._restore(f"the update failed ({first_line(err)})")
            return self.snapshot()
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        if bad:
            self._restore(f"the {bad[0]} became {terms[bad[0]]}")
            return self.snapshot()
        if counts_as_step:
            self.step_count += 1
            self.history.log_step(terms)
        self._say("stopped", f"{label} (step {self.step_count})", event="action")
        return self.snapshot()

    # --- evaluation and frames ------------------------------------------------------------------
    def _log_density(self, x: torch.Tensor, log_z: float | None) -> torch.Tensor:
        lp = metrics.batched(self.model.log_prob, x)
        return lp - log_z if log_z is not None else lp

    def _family_metrics(self, test: torch.Tensor, samples) -> dict[str, float]:
        """The model's own metrics plus, on mixture datasets, mode coverage of its samples."""
        out = {k: float(v) for k, v in self.model.metrics(test).items()}
        if self.data.modes is not None and self.data.mode_std:
            s = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
            cov = metrics.mode_coverage(s, self.data.modes, self.data.mode_std)
            out["modes_covered"] = float(cov["modes_covered"])
            out["high_quality"] = cov["high_quality"]
        return out

    def evaluate(self, test: torch.Tensor | None = None, n_samples: int = 2000) -> dict[str, float]:
        """Final metrics: train/test NLL (nats, data coordinates) where the family has a density,
        the sample distances to held-out data, and the latest loss terms."""
        test = self.test_x if test is None else test
        out: dict[str, float] = {}
        log_z = None
        if self.model.density == "unnormalized":
            lz = metrics.batched(self.model.log_prob, self.grid)
            log_z = metrics.grid_log_normalizer(lz, self.cell_area)
            out["log_z_grid"] = log_z
        if self.model.density != "none":
            out["train_nll"] = metrics.mean_nll(self._log_density(self.train_x[:20000], log_z))
            out["test_nll"] = metrics.mean_nll(self._log_density(test, log_z))
        samples = self.model.sample(n_samples).detach()
        out["mmd"] = metrics.mmd2(samples, test)
        out["energy_distance"] = metrics.energy_distance(samples, test)
        out.update(self._family_metrics(test, samples))
        for k, buf in self.history.step_terms.items():
            if self.history.n:
                out[k] = float(buf[self.history.n - 1])
        if self.data_nll is not None and test is self.test_x:
            out["data_nll"] = self.data_nll
        return out

    def _grid(self, res: int) -> tuple:
        """(xs, ys, points, cell area) of the res x res grid over the data's box, made once."""
        if res not in self._grids:
            xs, ys, pts = metrics.make_grid(self.data.box, res)
            self._grids[res] = (xs, ys, torch.as_tensor(pts, device=self.device), metrics.cell_area(xs, ys))
        return self._grids[res]

    def _fit_live_grid(self, res: int, seconds: float) -> None:
        """Frames while running use a grid whose density costs about LIVE_GRID_SECONDS (a flow's density on
        100 x 100 points costs more than a training step ten times over): 80 x 80 for cheap models, down to
        40 x 40 for expensive ones (the browser smooths it). Frames at rest use the full grid_res."""
        per_point = seconds / (res * res)
        fit = int(math.sqrt(LIVE_GRID_SECONDS / max(per_point, 1e-12)) // 8 * 8)
        self.live_res = int(min(self.grid_res, MAX_LIVE_RES, max(MIN_LIVE_RES, fit)))

    def _frame_metrics(self, samples: np.ndarray, log_z: float | None) -> dict[str, float]:
        """The held-out metrics a frame's curves and status line show: train / held-out NLL where the family
        has a density (an EBM's normalised on the full grid), the sample distance, the family's own."""
        m = self.model
        out: dict[str, float] = {}
        if m.density != "none":
            if m.density == "unnormalized":
                if log_z is None:
                    log_z = metrics.grid_log_normalizer(metrics.batched(m.log_prob, self.grid), self.cell_area)
                out["log_z_grid"] = log_z
            out["train_nll"] = metrics.mean_nll(self._log_density(self.train_x[:2000], log_z))
            out["test_nll"] = metrics.mean_nll(self._log_density(self.test_x[:5000], log_z))
        out["energy_distance"] = metrics.energy_distance(samples, self._test_sub, max_n=500)
        out.update(self._family_metrics(self.test_x[:2000], samples))
        return out

    def _draw(self, snap: Snapshot, res: int, frame: dict) -> None:
        """A frame's density on the res x res grid (an EBM's log Z into `frame`), samples and probe."""
        m = self.model
        xs, ys, grid, area = self._grid(res)
        if m.density != "none":
            with torch.inference_mode():  # a per-frame cost that does not grow with the grid (an EBM's log Z
                m.log_prob(grid[:1])  # on its own grid, cached until the parameters change) is paid first,
            t_grid = time.perf_counter()  # outside the timing that sizes the grid
            lp = metrics.batched(m.log_prob, grid)
            self._fit_live_grid(res, time.perf_counter() - t_grid)
            if m.density == "unnormalized":
                log_z = metrics.grid_log_normalizer(lp, area)
                lp = lp - log_z
                frame["log_z_grid"] = log_z
            grid_lp = lp.double().cpu().numpy().reshape(res, res)
            snap.grid_x, snap.grid_y = xs, ys
            snap.log_density = grid_lp.astype(np.float32)
            snap.grid_mass = metrics.grid_mass(grid_lp, area)
        labeled = m.sample_labeled(self.n_samples)
        if labeled is not None:
            s, lab = labeled
            snap.sample_labels = lab.detach().cpu().numpy().astype(np.int32)
        else:
            s = m.sample(self.n_samples)
        snap.samples = s.detach().float().cpu().numpy()
        snap.probe = make_probe(m.probe_kind, m.probe(grid, self.train_x[: self.n_show]))

    def snapshot(self, evaluate: bool | None = None) -> Snapshot:
        """Build a frame: density on the grid, samples and the family's probe record; and, at most every
        EVAL_INTERVAL seconds while running (always when not running, or with evaluate=True), the held-out
        metrics that the curves and the status line show (their CPU time: last_eval_cpu). A frame in between
        repeats the last ones: they would cost as much as the rest of the frame and barely move in a
        fraction of a second."""
        m = self.model
        now, cpu0 = time.perf_counter(), time.thread_time()
        if evaluate is None:
            evaluate = self.status != "running" or not self._evals or now >= self._next_eval
        snap = Snapshot(step=self.step_count, status=self.status, message=self.message,
                        model_key=m.key, family=m.family, density=m.density, box=self.data.box,
                        train=self.data.train[: self.n_show], test=self.data.test[: self.n_show],
                        data_nll=self.data_nll, steps_per_sec=self._rate,
                        elapsed=self._train_time, device=device_label(self.device),
                        dataset=self.data.name, event=self.event)
        frame: dict[str, float] = {}
        res = self.live_res if self.status == "running" else self.grid_res
        m.frame_is_live = self.status == "running"  # the density and probe of a live frame may be cheaper ...
        try:
            self._draw(snap, res, frame)
        finally:
            m.frame_is_live = False  # ... held-out metrics never are
        log_z = frame.get("log_z_grid")
        self.last_eval_cpu = 0.0
        self._evaluated = bool(evaluate)
        if evaluate:
            cpu = time.thread_time()
            self._evals = self._frame_metrics(snap.samples, log_z if res == self.grid_res else None)
            frame.pop("log_z_grid", None)
            if self.step_count > 0 or not self.history.evals:
                self.history.log_eval(self.step_count, self._evals)
            self.last_eval_cpu = time.thread_time() - cpu
            self._next_eval = now + max(EVAL_INTERVAL, self.last_eval_cpu / MAX_EVAL_SHARE)
        snap.curves = self.history.curves()
        snap.latest = {**self._evals, **frame}
        for k, buf in self.history.step_terms.items():
            if self.history.n:
                snap.latest[k] = float(buf[self.history.n - 1])
        self.last_snapshot_cpu = time.thread_time() - cpu0 - self.last_eval_cpu  # the frame's own part
        return snap
