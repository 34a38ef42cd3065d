"""The EBM tab's sampler sandbox with its chains in a worker, like a training run's (500 chains at up to 10 frames
a second took 0.1-0.5 of a core from the web process, shared by every visitor).

:class:`WorkerSandbox` is a SandboxRun whose chains live in a worker from the same pool as the runs: ``prepare``
sends the target there (a closed-form density by name, or the learned energy as its registry key, config and the
parameters of its newest good checkpoint), ``advance`` sends the sampler's current settings and gets the chains'
state and curves back (plain numpy: the figures are drawn by the views, as before). The worker goes back to the
pool on ``reset`` (a new target, Reset, the visitor leaving). In thread mode (no pool) it is the plain SandboxRun.
"""

from __future__ import annotations

import itertools
import threading
import types
from typing import Any

from ..sandbox import SandboxRun
from .core import raise_error
from .local import WorkerGone

CALL_TIMEOUT = 60.0


class WorkerSandbox(SandboxRun):
    def __init__(self):
        super().__init__()
        self._link = None
        self._backend = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __deepcopy__(self, memo):  # gradio copies a fresh state once; a lock cannot be copied
        return type(self)()

    @staticmethod
    def _pool():
        from . import backend

        return backend()

    def _call(self, op: str, *args) -> Any:
        """A request to this sandbox's worker (taken from the pool on first use) and its answer."""
        with self._lock:
            if self._link is None:
                self._backend = self._pool()
                self._link = self._backend.acquire()
            link, rid = self._link, next(self._ids)
            try:
                link.send({"op": op, "id": rid, "args": args})
                while True:
                    msg = link.recv(CALL_TIMEOUT)
                    if msg is None:
                        raise WorkerGone(f"{link.describe()} did not answer within {CALL_TIMEOUT:.0f} s")
                    if msg.get("kind") == "reply" and msg.get("id") == rid:
                        break
            except WorkerGone:
                self._link = None
                self._backend.give_back(link)
                raise
        if "error" in msg:
            raise_error(msg["error"])
        return msg.get("value")

    def prepare(self, target: str, session, session_signature, method: str, step_size: float, proposal_std: float,
                noise_scale: float, steps: int) -> str | None:
        if self._pool() is None:
            return super().prepare(target, session, session_signature, method, step_size, proposal_std, noise_scale,
                                   steps)
        self.settings = dict(method=method, step_size=float(step_size), proposal_std=float(proposal_std),
                             noise_scale=float(noise_scale), steps=int(steps))
        sig = (target, (session_signature, session.step_count) if target == "learned" and session else None)
        if self.box is not None and self.signature == sig:
            return None
        learned = None
        try:
            if target == "learned":
                if session is None or session.model.family != "ebm":
                    return "train an energy-based model above first (then pick the learned energy)"
                model = session.frozen_model()
                learned = {"key": session.model.key, "config": session.model.cfg.as_dict(),
                           "state": model.state_dict(), "step": session.checkpoints.newest_step,
                           "box": tuple(session.data.box)}
            why = self._call("sandbox_prepare", target, learned)
        except (ValueError, KeyError, RuntimeError) as err:  # RuntimeError: WorkerGone, or the worker's own
            return str(err)
        if why:
            return why
        self.box = types.SimpleNamespace(target=target)  # these chains (the tab's loop ends when box changes)
        self.signature, self.history = sig, {}
        return None

    def advance(self) -> dict[str, Any]:
        if self._link is None and self._pool() is None:
            return super().advance()
        state, self.history = self._call("sandbox_advance", dict(self.settings))
        return state

    def reset(self) -> None:
        super().reset()
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            try:
                link.send({"op": "close"})  # the worker drops the chains; the pool may hand it out again
            except WorkerGone:
                pass
            self._backend.give_back(link)


class FrozenHost:
    """What SandboxRun.target needs of a session, in the worker: the learned energy, rebuilt from its parameters."""

    def __init__(self, learned: dict):
        from models import REGISTRY

        self.learned = learned
        self.model = types.SimpleNamespace(family=REGISTRY[learned["key"]].family, key=learned["key"])
        self.checkpoints = types.SimpleNamespace(newest_step=learned["step"])
        self.data = types.SimpleNamespace(box=learned["box"])
        self.step_count = learned["step"]

    def frozen_model(self, device: str = "cpu"):
        from models import build

        model = build(self.learned["key"], **self.learned["config"])
        model.load_state_dict(self.learned["state"])
        return model.to(device).requires_grad_(False)
