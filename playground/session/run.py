"""The training loop: one model, its optimisers, a data split, the step count; stopping, and going back
when it diverges.

``Session.run()`` trains as fast as it can and yields a :class:`Snapshot` (plain numpy, no torch;
built by FrameMaker, drawing.py) about every 0.25 s of elapsed time, so fast
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
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from models import REGISTRY, ConfigError, TrainSettings, build

from .. import metrics
from ..datasets import DataError, DataSplit, make_split
from ..densities import dataset_log_prob
from ..snapshot import Snapshot
from .checkpoints import Checkpoints
from .devices import resolve_device
from .drawing import FrameMaker
from .health import EXPLODED, NLL_MARGIN, bad_evaluation, bad_term, first_line
from .history import History

# frames (snapshot + rendering + encoding) take at most this share of the time while a page watches; beyond it
# they are spaced out. Held-out evaluations have their own, smaller share (MAX_EVAL_SHARE). A run nobody
# watches (the command line, an API client) makes no frames at all.
MAX_FRAME_SHARE = 0.10
MIN_FRAME_INTERVAL = 1 / 12  # at most 12 frames a second, however fast the page draws
MAX_FRAME_GAP = 1.0  # and at least one a second, however costly a frame
CHECKPOINT_INTERVAL = 0.5  # seconds between two copies of the last good parameters (taken with a frame)


# Sessions inside run() or train_steps(): at interpreter exit (Ctrl-C on the app) they are stopped and waited
# for. A daemon thread still inside a torch op when the interpreter finalises is killed as it retakes the GIL
# (pthread_exit unwinding through C++ frames), and the process aborts with "terminate called without an active
# exception" (pytorch/pytorch#38228).
_RUNNING: weakref.WeakSet = weakref.WeakSet()
_RUNNING_LOCK = threading.Lock()
_BUILDING = threading.Lock()  # one session at a time seeds torch's global generator and builds its model


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
        self.gen = torch.Generator(device=self.device).manual_seed(self.settings.seed)
        cfg = config if config is not None else {}
        self.train_x = torch.as_tensor(data.train, device=self.device)
        self.test_x = torch.as_tensor(data.test, device=self.device)
        target = dataset_log_prob(data.name, data.info["noise"]) if data.log_prob is not None and \
            "noise" in data.info else None
        # The initial weights come from torch's global generator (nn.Linear's init draws there), which every session
        # of the process shares: seed it, build and initialise one session at a time, and give the global state
        # back as it was. After this nothing of a run draws from it (the model's own generators, the session's).
        with _BUILDING, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.settings.seed)
            self.model = build(model_key, **(cfg if isinstance(cfg, dict) else cfg.as_dict()))
            self.model.to(self.device)
            self.model.use_target(target, data.name)
            self.source = self._source_domain()
            try:
                self.model.init_from_data(self.train_x)
            except ConfigError:  # a setting the data cannot serve (e.g. fit to target without a density): the tab says
                raise
            except (RuntimeError, ValueError) as err:  # a model that cannot start from these points: one line
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
        self._live_change = 0  # the step of the last live change of a setting (a replay must not cross it)
        self.train_time = 0.0  # seconds spent training
        self.steps_per_sec = 0.0
        self.checkpoints = Checkpoints(self.model, self.optimizers, self.gen, self.device)
        self._checkpoint()
        self.best: dict | None = None  # the held-out minimum so far: {"slot", "step", "test_nll"} (early stopping)
        self.frames = FrameMaker(self.model, data, self.train_x, self.test_x, self.device, grid_res=grid_res,
                                 n_show=n_show, n_samples=n_samples)
        limit = metrics.gaussian_nll(data.train, data.test) + NLL_MARGIN  # beyond it a run has exploded
        self.nll_limit = limit if math.isfinite(limit) else EXPLODED

    def _source_domain(self) -> DataSplit | None:
        """The built-in dataset the model maps from (Model2D.source_domain: a CycleGAN's X), sampled with the run's
        seed (as many points as the data, at least 500) and handed to the model; None for every other model."""
        name = self.model.source_domain()
        if not name:
            return None
        n = max(500, min(len(self.data.train) + len(self.data.test), 20_000))
        split = make_split(name, n, seed=self.settings.seed)
        self.model.use_source(torch.as_tensor(split.train, device=self.device),
                              torch.as_tensor(split.test, device=self.device), name)
        return split

    # --- properties ---------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self.model.key

    # what frames are drawn on (FrameMaker): the grid at rest, its cell, the live grid's size, the true NLL
    grid = property(lambda self: self.frames.grid)
    cell_area = property(lambda self: self.frames.cell_area)
    grid_res = property(lambda self: self.frames.grid_res)
    live_res = property(lambda self: self.frames.live_res)
    n_samples = property(lambda self: self.frames.n_samples)
    data_nll = property(lambda self: self.frames.data_nll)
    last_eval_cpu = property(lambda self: self.frames.last_eval_cpu)  # CPU seconds of the last frame's evaluation
    last_snapshot_cpu = property(lambda self: self.frames.last_snapshot_cpu)  # ... and of the rest of that frame

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
        latest = self.history.latest_terms()
        return {"status": self.status, "step": self.step_count, "message": self.message, "model": self.key,
                "dataset": self.data.name, "steps_per_sec": round(float(self.steps_per_sec), 2),
                "latest": {**{k: v for k, v in self.frames.evals.items() if math.isfinite(v)},
                           **{k: v for k, v in latest.items() if math.isfinite(v)}}}

    def request_stop(self) -> None:
        self._stop = True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the run and wait (up to `timeout`) until it is out of its step. A loop that will not come back
        (its consumer went away while it was parked at a frame) is marked stopped here, at the step it reached."""
        self.request_stop()
        self.wait_idle(timeout)
        if self.status == "running":
            self._say("stopped", f"stopped at step {self.step_count}")

    def close(self) -> None:
        """The visitor is done with this run (a RemoteSession frees its worker here; a local run just stops)."""
        self.stop(1.0)

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

    def _checkpoint(self) -> None:
        """Keep the current parameters, optimizer states and generators as the newest good checkpoint."""
        self.checkpoints.take(self.step_count)

    def _params_finite(self) -> bool:
        """All parameters finite: one reduction over their norms instead of two ops per tensor."""
        params = [p for p in self.model.parameters() if p.numel()]
        if not params:
            return True
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all())

    def _load(self, slot: dict) -> bool:
        """Load a checkpoint (parameters, optimizer states, generators) and its step; False if a generator is
        new since (a replay would draw differently)."""
        complete = self.checkpoints.load(slot)
        self.step_count = slot["step"]
        self._phase, self._phase_batch = 0, None
        return complete

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
        slot = self.checkpoints.at_or_before(target)
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

    def _guarded(self, update: Callable[[], dict[str, float]], failed: int | None,
                 bad: int | None) -> dict[str, float] | None:
        """Run one update and check it: the one place a failure becomes a restore. An update that raises
        (e.g. a covariance no longer positive definite) goes back to step `failed`; one whose terms are bad
        (bad_term: NaN, infinite, exploded) to step `bad` (None: the newest checkpoint). Returns the terms,
        or None after restoring (status "diverged", the message says why and where it went back to)."""
        try:
            terms = update() or {}
        except (RuntimeError, ValueError) as err:
            self._restore(f"the update failed ({first_line(err)})", target=failed)
            return None
        why = bad_term(terms)
        if why:
            self._restore(why, target=bad)
            return None
        return terms

    def _one_step(self) -> bool:
        """One training step; False (after restoring the last good parameters) on failure. An update that
        raised may have half-written the parameters: the ones before it are the last good ones. A bad loss
        came from the parameters after the previous step: go back one more."""
        terms = self._guarded(lambda: self.model.step(self._batch(), self.optimizers),
                              failed=self.step_count, bad=max(self.step_count - 1, 0))
        if terms is None:
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
        for slot in reversed(self.checkpoints.slots):
            self._load(slot)
            with torch.no_grad():
                samples = self.model.sample(500).detach().float().cpu().numpy()
            if bad_evaluation(self.frames.frame_metrics(samples, None), self.nll_limit) is None:
                sound = True
                break
        self.history.truncate(self.step_count)
        self.frames.forget_evaluations()
        self.status, self.event = "diverged", ""
        self.message = (f"stopped at step {failed_at}: {why}. Restored the parameters of step {self.step_count}, "
                        + ("the last known good ones; try a lower learning rate." if sound else
                           "the oldest kept, but they look exploded too: press Reset and lower the learning rate."))
        return False

    def train_steps(self, n: int, checkpoint_every: float = 1.0, stop: Callable[[], bool] | None = None) -> bool:
        """n steps without frames (the command line); False if training diverged. request_stop() or `stop`
        returning True (Ctrl-C on the command line, which may come before this call starts: request_stop's flag is
        reset here) ends it early, with status "stopped"."""
        t0 = last = time.perf_counter()
        self.status = "running"
        self._stop = False
        self._thread = threading.current_thread()
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self._idle.clear()
        try:
            for _ in range(int(n)):
                if self._stop or (stop is not None and stop()):
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
            self.train_time += time.perf_counter() - t0
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
                    self.steps_per_sec = (self.step_count - steps_at_start) / max(now - t_start, 1e-9)
                    cpu = time.thread_time()
                    if (self.step_count > steps_at_start and now - last_checkpoint >= CHECKPOINT_INTERVAL
                            and self._params_finite()):
                        self._checkpoint()  # the frame's cost includes the checkpoint taken with it
                        last_checkpoint = now
                    snap = self.snapshot()
                    if self.frames.evaluated and not self.check_evaluation(self.frames.evals):
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
                        share = self.model.frame_share or MAX_FRAME_SHARE
                        interval = min(max(frame_interval, avg_cost / share), MAX_FRAME_GAP)
                elif heartbeat is not None and now - last_beat >= heartbeat:
                    self.steps_per_sec = (self.step_count - steps_at_start) / max(now - t_start, 1e-9)
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
            self.steps_per_sec = (self.step_count - steps_at_start) / max(elapsed, 1e-9)
            self.train_time += elapsed
            if self._exiting:  # no final frame: its evaluation would still be running as the interpreter exits
                return
            if self._stop:
                self._say("stopped", f"stopped at step {self.step_count}")
            else:
                self._say("done", f"finished at step {self.step_count}")
            self._left.set()  # no more steps: the final frame (full grid, fresh metrics) comes next
            snap = self.snapshot(evaluate=True)
            if not self.check_evaluation(self.frames.evals):
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
        terms = self._guarded(lambda: self.model.substep(self._phase_batch, self._phase, self.optimizers),
                              failed=self.step_count, bad=self.step_count)
        if terms is None:
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
        terms = self._guarded(lambda: fn(self.model, self._batch(), self.optimizers), failed=None, bad=None)
        if terms is None:
            return self.snapshot()
        if counts_as_step:
            self.step_count += 1
            self.history.log_step(terms)
        self._say("stopped", f"{label} (step {self.step_count})", event="action")
        return self.snapshot()

    def note_evaluation(self, values: dict[str, float]) -> None:
        """After a held-out evaluation: keep the state when its held-out NLL is the lowest yet (early stopping,
        notes 3.2.5: the model to keep is the one at the held-out minimum, before it overfits)."""
        v = values.get("test_nll")
        if v is None or not math.isfinite(v):
            return
        if self.best is None or v < self.best["test_nll"]:
            self.best = {"slot": self.checkpoints.capture(self.step_count), "step": self.step_count,
                         "test_nll": float(v)}

    def return_to_best(self) -> Snapshot:
        """Early stopping after the fact: stop, and go back to the state of the lowest held-out NLL seen (its
        parameters, optimiser states, generators, step and history up to it). Raises ValueError when there is
        no evaluated state to go back to."""
        self.stop(2.0)
        best = self.best
        if best is None:
            raise ValueError("no held-out evaluation yet: train first, then return to its best state")
        was_step = self.step_count
        was = self.history.evals.get("test_nll", ([], []))[1]
        now = f"{was[-1]:.3f} nats at step {was_step}" if was else f"step {was_step}"
        self._load(best["slot"])
        self.history.truncate(best["step"])
        self._checkpoint()
        self._say("stopped", f"early stopping: back at step {best['step']}, the held-out minimum "
                             f"({best['test_nll']:.3f} nats; it was {now})", event="early_stop")
        return self.snapshot(evaluate=True)

    def sample_points(self, n: int) -> np.ndarray:
        """n samples of the model as float32 numpy (n, 2)."""
        with torch.no_grad():
            return self.model.sample(int(n)).detach().float().cpu().numpy()

    def export_state(self) -> dict:
        """The newest good checkpoint (parameters, optimiser states, every generator, its step), the settings and
        the history up to it, on the CPU: what a fresh session needs to go on from there (import_state). A worker
        sends it to the web process now and then, so that a crashed worker's run restarts from it."""
        slot = self.checkpoints.slots[-1]
        hist = copy.deepcopy(self.history)
        hist.truncate(slot["step"])
        return {"slot": _slot_on_cpu(slot), "history": hist, "settings": self.settings.as_dict(),
                "config": self.model.cfg.as_dict()}

    def export_best(self) -> dict | None:
        """The early-stopping state (note_evaluation) on the CPU, or None: what a parked run takes along, so that
        ↩ Early stop still goes back to it once the run has a worker again (import_state)."""
        if self.best is None:
            return None
        return {**self.best, "slot": _slot_on_cpu(self.best["slot"])}

    def save_state(self) -> dict:
        """export_state at the current step when the run is not training and its parameters are sound (it is
        checkpointed first); while it trains, at its newest good checkpoint. What a saved model file holds."""
        if self.status not in ("running", "diverged") and self._params_finite():
            self._checkpoint()
        return self.export_state()

    def import_state(self, state: dict) -> None:
        """Go on from an export_state() of a session of the same model and data: its checkpoint, settings,
        config and history. The generators' states are put back only where the device is the same (a CUDA
        generator cannot take a CPU one's state): a run moved to another device draws differently from there."""
        for name, v in state["config"].items():
            if getattr(self.model.cfg, name, v) != v:
                self.set_live(name, v)
        for name in ("lr", "batch"):
            if name in state["settings"]:
                self.set_live(name, state["settings"][name])
        slot = self._slot_here(state["slot"])
        try:
            self._load(slot)
        except RuntimeError:  # generator states of another device: keep this session's own
            self._load({**slot, "rng": self.checkpoints.rng_state()})
        self.history = state["history"]
        self.history.truncate(self.step_count)
        self._checkpoint()
        best = state.get("best")  # a parked run's early-stopping state (export_best); a saved file has none
        if best is not None and best["step"] <= self.step_count:
            self.best = {**best, "slot": self._slot_here(best["slot"])}

    def _slot_here(self, slot: dict) -> dict:
        """A checkpoint slot from the CPU onto this session's device (generator states stay as they are)."""
        return {**slot, "state": {k: v.to(self.device) for k, v in slot["state"].items()},
                "opts": torch.utils._pytree.tree_map(
                    lambda t: t.to(self.device) if isinstance(t, torch.Tensor) and t.dim() else t, slot["opts"])}

    def frozen_model(self, device: str = "cpu"):
        """A copy of the model at the run's newest good checkpoint (consistent while the run trains on: it is
        not copied from under the training thread's updates), gradients off, on `device`: to look at, e.g. the
        EBM tab's sandbox running chains on a learned energy. Its step is checkpoints.newest_step."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.checkpoints.slots[-1]["state"])
        return model.to(device).requires_grad_(False)

    # --- evaluation and frames (FrameMaker) -----------------------------------------------------
    def evaluate(self, test: torch.Tensor | None = None, n_samples: int = 2000) -> dict[str, float]:
        """Final metrics: train/test NLL (nats, data coordinates) where the family has a density, the sample
        distances to held-out data, and the latest loss terms."""
        return self.frames.evaluate(self.history, test, n_samples)

    def snapshot(self, evaluate: bool | None = None) -> Snapshot:
        """A frame of the run now (FrameMaker.snapshot): held-out metrics every EVAL_INTERVAL while running."""
        return self.frames.snapshot(self, evaluate)


def _slot_on_cpu(slot: dict) -> dict:
    """A checkpoint slot (parameters, optimiser states, generators, step) copied onto the CPU."""
    to_cpu = lambda t: t.detach().cpu().clone() if isinstance(t, torch.Tensor) else t
    return {"state": {k: to_cpu(v) for k, v in slot["state"].items()},
            "opts": torch.utils._pytree.tree_map(to_cpu, slot["opts"]),
            "rng": {k: v.cpu() for k, v in slot["rng"].items()}, "step": slot["step"]}
