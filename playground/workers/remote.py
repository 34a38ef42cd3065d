"""The web side of a run that trains in a worker: :class:`RemoteSession` stands where a Session would.

The tab talks to it as to a Session (run, stop, step, set_live, snapshot, progress...); each call becomes a
message to the worker's :class:`~playground.workers.core.WorkerCore`, and one reader thread per run takes the
worker's messages: replies, frames (Snapshots: plain numpy), progress beats, checkpoints, the end of a run.
The session's small public state (status, step, message, config, settings) is mirrored from every message,
so reading it never waits for the worker.

A worker that dies (killed, crashed, out of memory) is replaced: a new one builds the same model on the same
data and goes on from the last checkpoint the old one sent (every SAVE_EVERY seconds of training); the tab
shows what happened and from which step it goes on. Nothing here imports gradio.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import types
import weakref
from typing import Any

from models import REGISTRY, TrainSettings, build

from ..snapshot import Snapshot
from .core import raise_error
from .local import WorkerGone

READ_POLL = 1.0  # seconds a reader waits for a message before it looks whether its run still holds the link
POLL = 0.5  # seconds a run's relay waits for a message before it looks whether its visitor left (a page that
# wants a frame wakes it at once: poke)
CALL_TIMEOUT = 60.0  # a request the worker has not answered in this long: the worker is treated as gone
MAX_RESTARTS = 3  # restarts in a row without a frame in between: beyond this the run is given up


def _read(ref: weakref.ref, link, backend) -> None:
    """The reader thread of one link: every message the worker sends while its run (held weakly: a run nobody
    holds any more is collected, and its worker comes back here) holds the link. When the run lets go of it
    (closed, parked, or a new worker replaced a dead one), the link goes back to the pool from here."""
    while True:
        run = ref()
        if run is None or link is not run.link:
            break
        del run  # not held while waiting
        try:
            msg = link.recv(READ_POLL)
        except WorkerGone as gone:
            run = ref()
            if run is not None and link is run.link and not run._closed:
                run._lost(link, str(gone))  # gives the dead link back itself
                return
            break
        run = ref()
        if msg is not None and run is not None and link is run.link:
            run._take(msg)
            if msg.get("kind") == "reply" and msg.get("id") == run._close_rid:
                break  # the worker has let go of this run: it is the pool's again, now
        del run
    backend.give_back(link)


class ModelInfo:
    """What the web side knows of the worker's model: its key, family, title and current Config."""

    def __init__(self, key: str, family: str, title: str, config: dict):
        self.key, self.family, self.title = key, family, title
        self.cfg = REGISTRY[key].Config(**config)

    def update(self, config: dict) -> None:
        for name, v in config.items():
            if getattr(self.cfg, name, None) != v:
                setattr(self.cfg, name, v)


class RemoteSession:
    """A Session whose model trains in a worker (a local process or a Ray actor, from `backend`).

    Args mirror Session's; `backend` has ``acquire() -> link`` and ``give_back(link)``, a link has
    ``send(msg)``, ``recv(timeout)`` (raising WorkerGone), ``alive()``, ``describe()`` and ``exit_reason()``.
    """

    def __init__(self, backend, model_key: str, config: dict | None, data, settings: TrainSettings | None = None,
                 device: str = "auto", **kw):
        if model_key not in REGISTRY:
            raise KeyError(f"unknown model '{model_key}'")
        self.backend = backend
        self.data = data
        self.settings = TrainSettings.make(**(settings or TrainSettings()).as_dict())
        self._spec = (model_key, dict(config or {}), data, device, kw)
        self._ids = itertools.count(1)
        self._pending: dict[int, list] = {}
        self._frames: queue.Queue = queue.Queue()
        self._blob: dict | None = None  # the newest checkpoint the worker sent (export_state)
        self._left = threading.Event()
        self._ended = threading.Event()
        self._left.set()
        self._ended.set()
        self._closed = False
        self._close_rid: int | None = None
        self.parked = False  # its worker was freed while it sat idle (park); the next call takes a new one
        self._wake_lock = threading.Lock()
        self.restarts = 0  # restarts in a row (reset by a frame)
        self.status, self.message, self.event = "idle", "ready: press Train", ""
        self.step_count, self.steps_per_sec = 0, 0.0
        self.checkpoints = types.SimpleNamespace(newest_step=0)
        self._progress: dict = {}
        self.link = None
        self._connect(None)

    # --- the link --------------------------------------------------------------------------------
    def _connect(self, restore: dict | None) -> None:
        link = self.backend.acquire()
        self.link = link
        self._reader_link = link
        self._reader = threading.Thread(target=_read, args=(weakref.ref(self), link, self.backend),
                                        name="playground-relay", daemon=True)
        self._reader.start()
        model_key, config, data, device, kw = self._spec
        try:
            info = self._call("open", model_key, config, data, self.settings.as_dict(), device, kw, restore)
        except BaseException:
            self._drop_link()
            raise
        self.device = info["device"]
        self.model = ModelInfo(info["key"], info["family"], info["title"], self._config)

    def _drop_link(self) -> None:
        """Let go of the worker: its reader thread gives it back to the pool as it leaves (one reader per link: a
        new run's reader must not share a connection with the last one's)."""
        self.link = None

    def _take(self, msg: dict) -> None:
        kind = msg.get("kind")
        if msg.get("state"):
            self._mirror(msg["state"])
        if kind == "reply":
            slot = self._pending.get(msg.get("id"))
            if slot is not None:
                slot[1] = msg
                slot[0].set()
            if msg.get("trace"):
                print(msg["trace"], file=sys.stderr)
        elif kind == "saved":
            self._blob = msg["blob"]
        elif kind == "left":
            self._left.set()
        elif kind in ("frame", "beat", "end"):
            if kind == "frame":
                self.restarts = 0
            if kind == "end":
                self._left.set()
                self._ended.set()
            self._frames.put(msg)
        elif kind == "log":
            print(msg.get("trace", ""), file=sys.stderr)

    def _mirror(self, s: dict) -> None:
        self.status, self.message, self.event = s["status"], s["message"], s["event"]
        self.step_count, self.steps_per_sec = s["step"], s["steps_per_sec"]
        self._config = s["config"]
        if hasattr(self, "model"):
            self.model.update(s["config"])
        for name in ("lr", "batch"):
            setattr(self.settings, name, s["settings"][name])
        self.checkpoints.newest_step = s["newest_step"]
        self._progress = s["progress"]

    def park(self) -> bool:
        """Free the worker of a run that is not training, keeping its state here (a checkpoint of its current
        parameters, optimiser states and generators: a few hundred KB); the next call takes a worker from the pool
        and goes on exactly where it was. False if it is training or has no worker."""
        with self._wake_lock:
            if self.link is None or self._closed or not self._ended.is_set():
                return False
            try:
                self._blob = self._call("save")
                self._call("close", timeout=5.0)
            except (WorkerGone, RuntimeError):
                return False
            self.parked = True
            self._drop_link()
        if self._reader is not threading.current_thread():
            self._reader.join(getattr(self._reader_link, "poll_seconds", READ_POLL) + 1.0)
        return True

    def _wake(self) -> None:
        """A parked run's worker again, from its kept state."""
        with self._wake_lock:
            if self.parked and self.link is None and not self._closed:
                status, message, event = self.status, self.message, self.event
                self._connect(self._blob)
                self.parked = False
                self.status, self.message, self.event = status, message, event

    def _send(self, op: str, *args, **kw) -> None:
        if self.parked:
            self._wake()
        link = self.link
        if link is None:
            raise WorkerGone("this run's worker was freed")
        link.send({"op": op, "args": args, "kw": kw})

    def _call(self, op: str, *args, timeout: float = CALL_TIMEOUT, **kw) -> Any:
        """A request and its answer (a user's error raised again here as its own class)."""
        if self.parked and op not in ("open", "save", "close"):
            self._wake()
        link = self.link
        if link is None:
            raise WorkerGone("this run's worker was freed")
        rid = next(self._ids)
        if op == "close":
            self._close_rid = rid
        slot = [threading.Event(), None]
        self._pending[rid] = slot
        try:
            link.send({"op": op, "id": rid, "args": args, "kw": kw})
            if not slot[0].wait(timeout):
                raise WorkerGone(f"{link.describe()} did not answer '{op}' within {timeout:.0f} s")
        finally:
            self._pending.pop(rid, None)
        reply = slot[1]
        if reply is None or reply.get("lost"):
            raise WorkerGone(reply.get("lost") if reply else "the worker is gone")
        if "error" in reply:
            raise_error(reply["error"])
        return reply.get("value")

    def _lost(self, link, why: str) -> None:
        """The worker died: answer whoever waits, start a new one from the last checkpoint, and tell the run."""
        for slot in list(self._pending.values()):
            slot[1] = {"lost": f"{link.describe()} stopped ({why})"}
            slot[0].set()
        self.link = None
        self.backend.give_back(link)
        step = self._blob["slot"]["step"] if self._blob else 0
        self.restarts += 1
        try:
            if self.restarts > MAX_RESTARTS:
                raise WorkerGone(f"it stopped {MAX_RESTARTS} times in a row")
            self._connect(self._blob)
            self.status, self.event = "stopped", "restarted"
            self.message = (f"the worker process training this run stopped ({why}); a new one took over from the "
                            f"checkpoint of step {step:,}: press Train to go on")
        except (WorkerGone, OSError, RuntimeError) as err:
            self.link = None
            self.status, self.event = "stopped", "restarted"
            self.message = (f"the worker training this run stopped ({why}) and could not be restarted ({err}): "
                            "press Reset")
        self._left.set()
        self._ended.set()
        self._frames.put({"kind": "gone"})

    def close(self) -> None:
        """Free the run: the worker drops the session and goes back to the pool."""
        if self._closed:
            return
        self._closed = True
        link = self.link
        if link is not None:
            try:
                self._call("close", timeout=5.0)
            except (WorkerGone, RuntimeError):
                pass
            self._drop_link()
            if self._reader is not threading.current_thread():  # it gives the worker back as it leaves
                self._reader.join(getattr(link, "poll_seconds", READ_POLL) + 1.0)

    def __del__(self):
        """A run dropped without a close (its visitor's state went without a goodbye): the worker lets go of it and
        goes back to the pool (the reader, which holds the run only weakly, hands it back). Never blocks."""
        link, self.link = getattr(self, "link", None), None
        if link is not None and not self._closed:
            try:
                link.send({"op": "close"})
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass

    # --- Session's face ------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self.model.key

    def progress(self) -> dict[str, Any]:
        return dict(self._progress) if self._progress else {"status": self.status, "step": self.step_count}

    def set_live(self, name: str, value: Any) -> None:
        if name in ("lr", "batch"):
            value = TrainSettings.coerce(name, value)
            setattr(self.settings, name, value)
        else:
            setattr(self.model.cfg, name, value)
        self._send("set_live", name, value)

    def request_stop(self) -> None:
        try:
            self._send("stop")
        except WorkerGone:
            pass

    def stop(self, timeout: float = 2.0) -> None:
        self.request_stop()
        self.wait_idle(timeout)
        if self.status == "running":
            self.status, self.message = "stopped", f"stopped at step {self.step_count}"

    def wait_left(self, timeout: float) -> bool:
        return self._left.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        return self._ended.wait(timeout)

    def snapshot(self, evaluate: bool | None = None) -> Snapshot:
        return self._call("snapshot", evaluate)

    def single_step(self) -> Snapshot:
        return self._call("single_step")

    def apply(self, fn, label: str, counts_as_step: bool = False) -> Snapshot:
        """fn travels by name (a module-level function of the model's family), as pickle sends functions."""
        return self._call("apply", fn, label, counts_as_step)

    def return_to_best(self) -> Snapshot:
        return self._call("return_to_best")

    def evaluate(self, test=None, n_samples: int = 2000) -> dict[str, float]:
        if test is not None:
            raise ValueError("a worker's run is evaluated on its own held-out points")
        return self._call("evaluate", n_samples)

    def export_state(self) -> dict:
        return self._call("export")

    def save_state(self) -> dict:
        """Session.save_state in the worker (a parked run: the state it was parked with)."""
        return self._blob if self.parked and self._blob is not None else self._call("save_state")

    def import_state(self, state: dict) -> None:
        """Go on from `state` (an export_state) in the worker; it is also what a restarted worker starts from."""
        self._call("import_state", state)  # every reply brings the worker's state (step, settings) back here
        self._blob = state

    def sample_points(self, n: int):
        return self._call("sample_points", n)

    def frozen_model(self, device: str = "cpu"):
        """A copy of the model at the worker's newest good checkpoint, built here, gradients off."""
        got = self._call("frozen")
        model = build(self.model.key, **self.model.cfg.as_dict())
        model.load_state_dict(got["state"])
        self.checkpoints.newest_step = got["step"]
        return model.to(device).requires_grad_(False)

    def kill_worker(self) -> None:
        """End the worker the hard way (tests, and the load benchmark's crash check)."""
        try:
            self._send("crash")
        except WorkerGone:
            pass

    def poke(self) -> None:
        """The page wants a frame: wake the relay (run) to pass the credit on at once."""
        self._frames.put({"kind": "poke"})

    def run(self, max_steps: int | None = None, max_seconds: float | None = None, frame_interval: float | None = None,
            frames: bool = True, want_frame=None, frame_cost=None, heartbeat: float | None = None, stop_when=None):
        """Session.run's contract, with the loop in the worker: Snapshots as frames come, None at beats. A page
        that wants a frame (want_frame) gives the worker one credit; a closed generator (gradio cancelled the
        event) stops the run."""
        while not self._frames.empty():
            self._frames.get_nowait()
        self._left.clear()
        self._ended.clear()
        wants = bool(frames and (want_frame is None or want_frame()))
        try:
            started = self._call("run", max_seconds=max_seconds, max_steps=max_steps, heartbeat=heartbeat,
                                 frames=frames, want=wants)
        except WorkerGone:
            started = False
        if not started:
            self._left.set()
            self._ended.set()
            if self.link is None or not self._frames.empty():  # lost on the way: say so with a frame
                yield from self._after_loss()
            return
        asked, stopping, done = wants, False, False
        try:
            while True:
                if stop_when is not None and not stopping and stop_when():
                    self.request_stop()
                    stopping = True
                if frames and not asked and (want_frame is None or want_frame()):
                    try:
                        self._send("want", frame_cost() if frame_cost is not None else 0.0)
                    except WorkerGone:
                        pass
                    asked = True
                try:
                    msg = self._frames.get(timeout=POLL)
                except queue.Empty:
                    continue
                kind = msg["kind"]
                if kind == "poke":
                    continue
                if kind == "frame":
                    asked = False
                    yield msg["snap"]
                elif kind == "beat":
                    yield None
                elif kind == "end":
                    done = True
                    return
                elif kind == "gone":
                    done = True
                    yield from self._after_loss()
                    return
        finally:
            if not done:  # the consumer went away (a cancelled event): the run stops with it
                self.stop(2.0)

    def _after_loss(self):
        """The frame that tells a restarted (or lost) run's visitor what happened."""
        status, message, event = self.status, self.message, self.event
        snap = None
        if self.link is not None:
            try:
                snap = self.snapshot()
            except (WorkerGone, RuntimeError):
                snap = None
        self.status, self.message, self.event = status, message, event
        if snap is not None:
            import dataclasses

            yield dataclasses.replace(snap, status=status, message=message, event=event)
