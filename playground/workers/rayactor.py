"""Runs as Ray actors: each visitor's run on a worker Ray places anywhere on a cluster; the web process stays.

``python app.py --ray ADDRESS`` (or PLAYGROUND_RAY_ADDRESS) connects to a running cluster ("local" starts an
instance of this machine's cores). Each run is a :class:`SessionActor` holding the same WorkerCore a local
worker process holds. Ray delivers method calls, not a stream, so the messages travel as two calls: ``inbox``
(a request, numbered: a threaded actor may start calls out of order, the core takes them in order) and
``outbox`` (a long poll: the messages the core emitted since the last one). Both carry pickled bytes, so that
a Snapshot's arrays arrive as ordinary writable numpy arrays (Ray would hand them over read-only).

Each actor reserves RAY_CPUS of a node's CPUs (PLAYGROUND_RAY_CPUS, default 0.5): Ray places at most
2 runs per core, and the kernel shares a core among the runs on it. Ray is an optional extra
(requirements-ray.txt).
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
import weakref
from collections import deque
from pathlib import Path

from .local import SPARE, WorkerGone, WorkerPool

ROOT = Path(__file__).resolve().parents[2]
RAY_CPUS = float(os.environ.get("PLAYGROUND_RAY_CPUS", "0.5"))
POLL = 1.0  # seconds one outbox call waits for a message


def ray_init(address: str | None = "local", num_cpus: int | None = None):
    """Connect to Ray once per process (`address` a cluster's, or "local": start an instance of `num_cpus`, by
    default this machine's cores). Its workers find this repository's modules and take one torch thread."""
    import ray

    if not ray.is_initialized():
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                            "PLAYGROUND_THREADS": "1"}}
        local = address in (None, "local")
        ray.init(address=None if local else address, num_cpus=(num_cpus or os.cpu_count()) if local else None,
                 include_dashboard=False, log_to_driver=False, runtime_env=env)
    return ray


class SessionActor:
    """One run's worker as a Ray actor (made a Ray actor class by RayBackend)."""

    def __init__(self):
        from ..session import configure_threads, warm_up
        from .core import WorkerCore

        configure_threads()
        warm_up()
        self._out: deque = deque()
        self._out_ready = threading.Condition()
        self._turn = threading.Condition()
        self._next = 0
        self.core = WorkerCore(self._emit)

    def _emit(self, msg: dict) -> None:
        data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        with self._out_ready:
            self._out.append(data)
            self._out_ready.notify_all()

    def inbox(self, seq: int, data: bytes) -> None:
        """Request number `seq`: taken once every earlier one has been."""
        with self._turn:
            self._turn.wait_for(lambda: self._next == seq)
        try:
            self.core.handle(pickle.loads(data))
        finally:
            with self._turn:
                self._next += 1
                self._turn.notify_all()

    def outbox(self, timeout: float = POLL) -> list[bytes]:
        """What the core emitted since the last call, waiting up to `timeout` for something."""
        with self._out_ready:
            self._out_ready.wait_for(lambda: bool(self._out), timeout)
            out = list(self._out)
            self._out.clear()
        return out

    def ready(self) -> int:
        return os.getpid()


class RayLink:
    """The web side's end of one SessionActor (the same face as local.ProcessLink)."""

    def __init__(self, actor_class, cpus: float = RAY_CPUS):
        import ray

        self._ray = ray
        if not ray.is_initialized():  # shut down meanwhile: a call would start a new instance
            raise WorkerGone("Ray was shut down")
        self.actor = actor_class.options(num_cpus=cpus).remote()
        self._seq = itertools.count()
        self._send_lock = threading.Lock()
        self._buf: deque = deque()
        self._dead: str | None = None
        self.pid: int | None = None
        self.uses = 0
        self.poll_seconds = POLL

    def describe(self) -> str:
        return f"Ray actor (worker process {self.pid})"

    def exit_reason(self) -> str:
        return self._dead or "its Ray actor died"

    def _died(self, err: Exception) -> WorkerGone:
        self._dead = f"its Ray actor died ({type(err).__name__})"
        return WorkerGone(self._dead)

    def wait_ready(self, timeout: float = 120.0) -> None:
        try:
            self.pid = self._ray.get(self.actor.ready.remote(), timeout=timeout)
        except self._ray.exceptions.GetTimeoutError as err:
            self.close()
            raise WorkerGone(f"Ray placed no actor within {timeout:.0f} s (is the cluster full?)") from err
        except (self._ray.exceptions.RayError, SystemExit) as err:  # SystemExit: ray.shutdown() meanwhile
            raise self._died(err) from err

    def _check(self) -> None:
        """Gone when closed, or when Ray was shut down in this process (a call now would start a new instance)."""
        if self._dead is None and not self._ray.is_initialized():
            self._dead = "Ray was shut down"
        if self._dead:
            raise WorkerGone(self._dead)

    def send(self, msg: dict) -> None:
        self._check()
        data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        with self._send_lock:  # numbered in the order sent
            self.actor.inbox.remote(next(self._seq), data)

    def recv(self, timeout: float | None = None) -> dict | None:
        if not self._buf:
            self._check()
            # one long poll of POLL seconds however short `timeout` (it returns as soon as a message is there): a
            # reader looks whether its run still holds the link once per POLL, not ten times a second per run
            try:
                got = self._ray.get(self.actor.outbox.remote(POLL), timeout=POLL + 60)
            except self._ray.exceptions.GetTimeoutError:
                return None
            except self._ray.exceptions.RayError as err:
                raise self._died(err) from err
            except SystemExit as err:  # ray.shutdown() under a waiting reader
                raise self._died(err) from err
            self._buf.extend(got)
        return pickle.loads(self._buf.popleft()) if self._buf else None

    def alive(self) -> bool:
        return self._dead is None and self._ray.is_initialized()

    def close(self, timeout: float = 2.0) -> None:
        if self._dead is None:
            self._dead = "closed"
            if not self._ray.is_initialized():
                return
            try:
                self._ray.kill(self.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


class RayBackend(WorkerPool):
    """Runs as Ray actors on the cluster at `address`, SPARE of them placed ahead."""

    def __init__(self, address: str = "local", spare: int = SPARE, cpus: float = RAY_CPUS):
        ray = ray_init(address)
        actor_class = ray.remote(max_concurrency=8)(SessionActor)
        self.address = address
        self._links: weakref.WeakSet = weakref.WeakSet()

        def start() -> RayLink:
            link = RayLink(actor_class, cpus)
            self._links.add(link)
            return link

        where = "a local instance" if address == "local" else address
        super().__init__(start, spare, label=f"as a Ray actor ({where}, {cpus:g} CPU each)")

    def close(self) -> None:
        """End every actor this backend placed, the runs' too: their readers leave Ray at once (a thread still
        waiting in ray.get while Ray shuts down can take the process with it)."""
        super().close()
        for link in list(self._links):
            link.close()
        time.sleep(0.2)
