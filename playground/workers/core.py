"""What runs inside a worker: one visitor's Session, driven by messages from the web process.

:class:`WorkerCore` is the same whatever carries its messages (a pipe to a local worker process, or a Ray
actor's method calls): it takes requests (:meth:`handle`, plain dicts with an "op") and sends everything
back through one ``emit`` function:

* ``{"kind": "reply", "id", "value" | "error", "state"}`` answers request ``id``;
* ``{"kind": "frame", "snap", "state"}`` a training frame, made only when the web side said a page wants one
  (``{"op": "want"}``: a credit, spent by the next frame);
* ``{"kind": "beat", "state"}`` every ``heartbeat`` seconds of a run without frames (an API client's progress);
* ``{"kind": "saved", "blob"}`` now and then during a run, the newest good checkpoint (Session.export_state),
  which the web side keeps to restart the run in a new worker if this one dies;
* ``{"kind": "end", "state"}`` when a run has left its loop.

``state`` is the run's small public state (status, step, message...), mirrored by the web side's
RemoteSession. The core imports torch (it trains), never gradio.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from models import ConfigError

from ..datasets import DataError

SAVE_EVERY = 5.0  # seconds between two checkpoints sent to the web side while a run trains
# errors a request may raise that the visitor should read as they are (the web side raises the same class)
USER_ERRORS = {"DataError": DataError, "ConfigError": ConfigError, "ValueError": ValueError, "KeyError": KeyError}


def error_of(err: BaseException) -> tuple[str, str]:
    """(class name, one-line message) of an error, for the web side to raise again (see raise_error)."""
    name = type(err).__name__ if type(err).__name__ in USER_ERRORS else "RuntimeError"
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return name, str(msg)


def raise_error(err: tuple[str, str]) -> None:
    cls = USER_ERRORS.get(err[0], RuntimeError)
    raise cls(err[1])


class WorkerCore:
    """One worker's session and its run.

    Args:
        emit: sends one message to the web side (thread-safe: the run's thread and the request thread use it).
    """

    def __init__(self, emit: Callable[[dict], None]):
        self.emit = emit
        self.session = None
        self.sandbox = None  # the EBM tab's sampler sandbox, when this worker holds one (workers/sandbox.py)
        self._want = threading.Event()
        self._frame_cost = 0.0
        self._runner: threading.Thread | None = None

    # --- requests --------------------------------------------------------------------------------
    def handle(self, msg: dict) -> None:
        """Run one request and reply (requests without an "id" are not answered)."""
        op = msg.get("op")
        fn = getattr(self, f"op_{op}", None)
        reply: dict[str, Any] = {"kind": "reply", "id": msg.get("id")}
        try:
            if fn is None:
                raise ValueError(f"unknown request '{op}'")
            reply["value"] = fn(*msg.get("args", ()), **msg.get("kw", {}))
        except Exception as err:  # noqa: BLE001 - every failure goes back to the web side as one line
            reply["error"] = error_of(err)
            if reply["error"][0] == "RuntimeError":
                reply["trace"] = traceback.format_exc(limit=8)
        if msg.get("id") is not None:
            reply["state"] = self.state()
            self.emit(reply)

    def state(self) -> dict:
        s = self.session
        if s is None:
            return {}
        return {"status": s.status, "message": s.message, "event": s.event, "step": s.step_count,
                "steps_per_sec": float(s.steps_per_sec), "config": s.model.cfg.as_dict(),
                "settings": s.settings.as_dict(), "newest_step": s.checkpoints.newest_step,
                "progress": s.progress(), "running": self._runner is not None and self._runner.is_alive()}

    def op_open(self, model_key: str, config: dict | None, data, settings: dict, device: str,
                kw: dict | None = None, restore: dict | None = None) -> dict:
        """Build the session (and go on from `restore`, an export_state, when given)."""
        from models import TrainSettings

        from ..session import Session

        self.op_close()
        self.session = Session(model_key, config, data, TrainSettings.make(**settings), device=device, **(kw or {}))
        if restore is not None:
            self.session.import_state(restore)
        s = self.session
        return {"key": s.key, "family": s.model.family, "title": s.model.title, "device": str(s.device)}

    def op_close(self) -> None:
        self.sandbox = None
        s, self.session = self.session, None
        if s is not None:
            s.stop(2.0)
            if self._runner is not None:
                self._runner.join(5.0)
        self._runner = None

    def _need(self):
        if self.session is None:
            raise RuntimeError("this worker holds no run")
        return self.session

    def op_set_live(self, name: str, value: Any) -> None:
        self._need().set_live(name, value)

    def op_want(self, frame_cost: float = 0.0) -> None:
        self._frame_cost = float(frame_cost)
        self._want.set()

    def op_stop(self, timeout: float = 1.0) -> bool:
        """Stop the run; once it has taken its last step (within `timeout`), say so at once with a "left"
        message (the page shows the step it stopped at; the final frame, with fresh metrics, follows)."""
        s = self._need()
        s.request_stop()
        left = s.wait_left(timeout)
        if left:
            self.emit({"kind": "left", "state": self.state()})
        return left

    def op_stop_wait(self, timeout: float = 2.0) -> None:
        self._need().stop(timeout)
        if self._runner is not None:
            self._runner.join(timeout)

    def op_snapshot(self, evaluate: bool | None = None):
        return self._need().snapshot(evaluate)

    def op_single_step(self):
        return self._need().single_step()

    def op_apply(self, fn, label: str, counts_as_step: bool = False):
        return self._need().apply(fn, label, counts_as_step)

    def op_return_to_best(self):
        return self._need().return_to_best()

    def op_evaluate(self, n_samples: int = 2000) -> dict:
        return self._need().evaluate(n_samples=n_samples)

    def op_save(self) -> dict:
        """The run's state now, for a RemoteSession that frees this worker while its run sits idle (park)."""
        s = self._need()
        if self._runner is not None and self._runner.is_alive():
            raise RuntimeError("the run is training: it cannot be saved now")
        if s.status != "diverged" and s._params_finite():
            s._checkpoint()
        best = s.export_best()  # ↩ Early stop goes on working after the run wakes
        return s.export_state() if best is None else {**s.export_state(), "best": best}

    def op_sample_points(self, n: int):
        return self._need().sample_points(n)

    def op_import_state(self, state: dict) -> None:
        self._need().import_state(state)

    def op_save_state(self) -> dict:
        return self._need().save_state()

    def op_export(self) -> dict:
        return self._need().export_state()

    def op_frozen(self) -> dict:
        """The newest good checkpoint's parameters (CPU) and its step: the web side builds a frozen copy."""
        s = self._need()
        slot = s.checkpoints.slots[-1]
        return {"state": {k: v.detach().cpu().clone() for k, v in slot["state"].items()}, "step": slot["step"]}

    def op_sandbox_prepare(self, target: str, learned: dict | None) -> str | None:
        """New chains on `target` (a closed-form density's name, or "learned" with the energy's parameters); the
        reason when it cannot be run."""
        from ..sandbox import SandboxRun
        from .sandbox import FrozenHost

        self.sandbox = SandboxRun()
        host = FrozenHost(learned) if learned is not None else None
        return self.sandbox.prepare(target, host, None, "langevin", 0.01, 0.3, 1.0, 1)

    def op_sandbox_advance(self, settings: dict) -> tuple[dict, dict]:
        """The chains `settings["steps"]` steps further with these settings: their state and the curves."""
        sb = self.sandbox
        if sb is None or sb.box is None:
            raise ValueError("no chains here: press Run chains")
        sb.settings = dict(settings)
        return sb.advance(), sb.history

    def op_ping(self) -> str:
        return "pong"

    def op_crash(self) -> None:  # a test's way to kill the worker the hard way, as the OS would
        import os

        os._exit(3)

    # --- the run -----------------------------------------------------------------------------------
    def op_run(self, max_seconds: float | None = None, max_steps: int | None = None,
               heartbeat: float | None = None, frames: bool = True, want: bool = False) -> bool:
        """Start training in a thread of this worker; frames, beats, checkpoints and the end come as messages.
        `want`: a page already waits for a frame (the first comes before the first step)."""
        s = self._need()
        if self._runner is not None and self._runner.is_alive():
            return False
        self._want.set() if want else self._want.clear()
        s._say("running", "training")  # the reply's state says so at once
        self._runner = threading.Thread(target=self._run, args=(s, max_seconds, max_steps, heartbeat, frames),
                                        name="playground-run", daemon=True)
        self._runner.start()
        return True

    def _save(self, s) -> None:
        """Send the web side the run's state as a checkpoint (between two steps: the run's generator is paused
        at a yield, or has ended). Fresh parameters when they are sound, else the newest good checkpoint."""
        if s.status != "diverged" and s._params_finite():
            s._checkpoint()
        self.emit({"kind": "saved", "blob": s.export_state()})

    def _wanted(self) -> bool:
        return self._want.is_set()

    def _run(self, s, max_seconds, max_steps, heartbeat, frames) -> None:
        last_save = time.monotonic()
        try:
            for snap in s.run(max_steps=max_steps, max_seconds=max_seconds, want_frame=self._wanted,
                              frame_cost=lambda: self._frame_cost, heartbeat=heartbeat, frames=frames):
                if snap is None:
                    self.emit({"kind": "beat", "state": self.state()})
                else:
                    self._want.clear()  # the credit is spent: the web side sends another when the page asks
                    self.emit({"kind": "frame", "snap": snap, "state": self.state()})
                if time.monotonic() - last_save >= SAVE_EVERY:
                    self._save(s)
                    last_save = time.monotonic()
            self._save(s)
        except Exception as err:  # noqa: BLE001 - a bug in a run ends it with a message, not a dead worker
            s._say("stopped", f"the run failed: {error_of(err)[1]}")
            self.emit({"kind": "log", "trace": traceback.format_exc(limit=8)})
        finally:
            self.emit({"kind": "end", "state": self.state()})
